//! Starting and stopping the server: the builder, the listener and the client helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::handler::{AppState, DEFAULT_MAX_BODY_BYTES, handle};
use crate::store::StoreError;

/// Default number of change events kept for watch resumption.
pub const DEFAULT_WATCH_HISTORY: usize = 100_000;
/// Default period of watch bookmarks.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The state directory could not be loaded.
    #[error("loading the state")]
    Store(#[source] StoreError),
    /// Binding the listener failed.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving http")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("the server task failed")]
    Join(#[source] tokio::task::JoinError),
    /// The kube client could not be built.
    #[error("building a kube client")]
    Client(#[source] kube::Error),
    /// The server URL is not a valid URI.
    #[error("invalid server url")]
    Url(#[source] axum::http::uri::InvalidUri),
}

/// Configures an [`ApiServer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ApiServerBuilder {
    state_dir: Option<PathBuf>,
    watch_history: usize,
    bookmark_interval: Duration,
    max_body_bytes: usize,
}

impl Default for ApiServerBuilder {
    fn default() -> Self {
        Self {
            state_dir: None,
            watch_history: DEFAULT_WATCH_HISTORY,
            bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl ApiServerBuilder {
    /// Persist state in this directory (None: in memory only).
    pub fn state_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.state_dir = dir;
        self
    }

    /// Number of change events kept for watches resuming from a resource version; older versions
    /// get 410 Expired.
    pub fn watch_history(mut self, events: usize) -> Self {
        self.watch_history = events.max(1);
        self
    }

    /// Period of BOOKMARK events on watches that allow them.
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Largest accepted request body (413 above).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Loads the state (if any) and builds the server.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the state directory cannot be read or compacted.
    pub fn build(self) -> Result<ApiServer, ServerError> {
        let cluster = Cluster::open(self.state_dir.as_deref(), self.watch_history)
            .map_err(ServerError::Store)?;
        Ok(ApiServer {
            cluster: Arc::new(cluster),
            config: self,
        })
    }
}

/// An embedded Kubernetes-compatible API server.
#[derive(Debug)]
pub struct ApiServer {
    cluster: Arc<Cluster>,
    config: ApiServerBuilder,
}

/// Binds `addr` and reports the address actually bound (for port 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, bound))
}

impl ApiServer {
    /// A builder with defaults: in memory, 100 000 events of watch history, 3 MiB bodies.
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder::default()
    }

    /// Number of stored objects.
    #[must_use]
    pub fn object_count(&self) -> usize {
        self.cluster.lock().store.len()
    }

    fn router(&self, addr: SocketAddr, shutdown: watch::Receiver<bool>) -> axum::Router {
        let state = AppState {
            cluster: self.cluster.clone(),
            addr,
            max_body_bytes: self.config.max_body_bytes,
            bookmark_interval: self.config.bookmark_interval,
            shutdown,
        };
        axum::Router::new().fallback(handle).with_state(state)
    }

    /// Serves on `addr` until `signal` completes, then shuts down gracefully (watches end).
    ///
    /// # Errors
    /// [`ServerError`] when binding or serving fails.
    pub async fn serve_with_shutdown(
        self,
        addr: SocketAddr,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (listener, bound) = bind(addr).await?;
        let (tx, rx) = watch::channel(false);
        let router = self.router(bound, rx);
        tracing::info!(addr = %bound, "api server listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                signal.await;
                let _ = tx.send(true);
            })
            .await
            .map_err(ServerError::Serve)
    }

    /// Serves on `addr` until the process ends.
    ///
    /// # Errors
    /// [`ServerError`] when binding or serving fails.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), ServerError> {
        self.serve_with_shutdown(addr, std::future::pending()).await
    }

    /// Binds `addr` and serves in a background task.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address cannot be bound.
    pub async fn start(self, addr: SocketAddr) -> Result<RunningServer, ServerError> {
        let (listener, bound) = bind(addr).await?;
        let (tx, rx) = watch::channel(false);
        let router = self.router(bound, rx.clone());
        let mut stop = rx;
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .map_err(ServerError::Serve)
        });
        tracing::info!(addr = %bound, "api server listening");
        Ok(RunningServer {
            cluster: self.cluster.clone(),
            addr: bound,
            shutdown: tx,
            task,
        })
    }

    /// Binds `127.0.0.1:0` and serves in a background task.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when no loopback port can be bound.
    pub async fn start_loopback(self) -> Result<RunningServer, ServerError> {
        self.start(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }
}

/// A server serving in the background.
#[derive(Debug)]
pub struct RunningServer {
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets (replaces) the log of `container` of pod `namespace/pod`, served by
    /// `GET /api/v1/namespaces/{namespace}/pods/{pod}/log` (there is no kubelet to write logs).
    /// The pod need not exist yet; reads answer 404 until it does. Logs are kept in memory only.
    pub fn set_pod_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        text: impl Into<String>,
    ) {
        self.cluster
            .set_pod_log(namespace, pod, container, text.into());
    }

    /// A kube configuration for this server (no credentials, namespace `default`).
    ///
    /// # Errors
    /// [`ServerError::Url`] (not expected for a socket address).
    pub fn kube_config(&self) -> Result<kube::Config, ServerError> {
        let uri = self.url().parse().map_err(ServerError::Url)?;
        Ok(kube::Config::new(uri))
    }

    /// A kube client for this server.
    ///
    /// # Errors
    /// [`ServerError::Client`] when the client cannot be built.
    pub fn client(&self) -> Result<kube::Client, ServerError> {
        kube::Client::try_from(self.kube_config()?).map_err(ServerError::Client)
    }

    /// A kubeconfig that `kubectl --kubeconfig FILE` uses as is.
    #[must_use]
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// Stops accepting requests, ends watches and waits for the server task.
    ///
    /// # Errors
    /// [`ServerError`] when serving had failed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(ServerError::Join)?
    }
}

/// A kubeconfig for a plain-http server URL with a credential-less user and a current context.
#[must_use]
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: capstan\n  cluster:\n    server: {url}\n\
users:\n- name: capstan\n  user: {{}}\ncontexts:\n- name: capstan\n  context:\n    cluster: capstan\n    user: capstan\n    namespace: default\n\
current-context: capstan\npreferences: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses() {
        let yaml = kubeconfig_yaml("http://127.0.0.1:1234");
        let v: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(v["current-context"], "capstan");
    }

    #[tokio::test]
    async fn start_and_shutdown() {
        let server = ApiServer::builder()
            .build()
            .unwrap()
            .start_loopback()
            .await
            .unwrap();
        assert!(server.addr().ip().is_loopback());
        server.shutdown().await.unwrap();
    }
}
