//! Starting and stopping the server: the builder, the listener, the credentials and the client
//! helpers.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use k8s_openapi::api::authentication::v1::UserInfo;

use crate::auth::{Authenticator, BearerToken, TokenError};
use crate::authz::bootstrap::{self, BootstrapError};
use crate::authz::{Authorizer, Mode};
use crate::cluster::Cluster;
use crate::connection::{self, DEFAULT_HEADER_READ_TIMEOUT};
use crate::handler::{AppState, DEFAULT_MAX_BODY_BYTES, handle};
use crate::service_account_tokens::Signer;
use crate::store::StoreError;
use crate::tls::{Authority, TlsError};
use crate::tokenfile::{self, TokenFileError};
use crate::user;

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
    /// The bearer token could not be generated, or the one given is not usable.
    #[error("the bearer token")]
    Token(#[source] TokenError),
    /// The service account signing key could not be made.
    #[error("the service account signing key")]
    SigningKey(#[source] crate::service_account_tokens::TokenError),
    /// A static token user's token is not usable.
    #[error("the token of static user {user:?}")]
    TokenUser {
        /// The user's name.
        user: String,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// The token file cannot be used.
    #[error("the token file {path}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TokenFileError,
    },
    /// The RBAC bootstrap policy cannot be kept.
    #[error("the RBAC bootstrap policy")]
    Bootstrap(#[source] BootstrapError),
    /// The TLS authority or serving certificate could not be made.
    #[error("the TLS identity")]
    Tls(#[source] TlsError),
    /// The kubeconfig file could not be written.
    #[error("writing the kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
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

/// Configures an [`ApiServer`]. `Debug` does not show a given token.
#[derive(Clone)]
#[must_use]
pub struct ApiServerBuilder {
    state_dir: Option<PathBuf>,
    watch_history: usize,
    watch_history_window: Duration,
    watch_history_bytes: u64,
    quota_bytes: u64,
    bookmark_interval: Duration,
    max_body_bytes: usize,
    header_read_timeout: Duration,
    token: Option<String>,
    authority: Option<Authority>,
    authorization: Mode,
    token_users: Vec<(String, UserInfo)>,
    token_auth_file: Option<PathBuf>,
    simulate_workloads: Option<Duration>,
}

impl Default for ApiServerBuilder {
    fn default() -> Self {
        Self {
            state_dir: None,
            watch_history: DEFAULT_WATCH_HISTORY,
            watch_history_window: crate::store::DEFAULT_HISTORY_WINDOW,
            watch_history_bytes: crate::store::DEFAULT_HISTORY_BYTES,
            quota_bytes: crate::store::DEFAULT_QUOTA_BYTES,
            bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            token: None,
            authority: None,
            authorization: Mode::default(),
            token_users: Vec::new(),
            token_auth_file: None,
            simulate_workloads: None,
        }
    }
}

impl std::fmt::Debug for ApiServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerBuilder")
            .field("state_dir", &self.state_dir)
            .field("watch_history", &self.watch_history)
            .field("watch_history_window", &self.watch_history_window)
            .field("watch_history_bytes", &self.watch_history_bytes)
            .field("quota_bytes", &self.quota_bytes)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("authority", &self.authority)
            .field("authorization", &self.authorization)
            .field(
                "token_users",
                &self
                    .token_users
                    .iter()
                    .map(|(_, u)| user::name(u))
                    .collect::<Vec<_>>(),
            )
            .field("token_auth_file", &self.token_auth_file)
            .field("simulate_workloads", &self.simulate_workloads)
            .finish()
    }
}

impl ApiServerBuilder {
    /// Persist state in this directory (None: in memory only).
    pub fn state_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.state_dir = dir;
        self
    }

    /// Simulate the workloads (see [`crate::workloads`]): Deployments get ReplicaSets and Pods,
    /// and Pods become Running and Ready `ready_after` their creation. Off by default: nothing
    /// else changes an object behind its writer's back.
    pub fn simulate_workloads(mut self, ready_after: Option<Duration>) -> Self {
        self.simulate_workloads = ready_after;
        self
    }

    /// Number of change events kept for watches resuming from a resource version; older versions
    /// get 410 Expired.
    pub fn watch_history(mut self, events: usize) -> Self {
        self.watch_history = events.max(1);
        self
    }

    /// How long change events are kept (5 min by default, etcd's compaction interval in
    /// kube-apiserver): a watch from, a `resourceVersionMatch=Exact` list at, or a continue token
    /// of a version whose later changes are older than this gets 410 Expired.
    pub fn watch_history_window(mut self, window: Duration) -> Self {
        self.watch_history_window = window;
        self
    }

    /// How many bytes of JSON the kept change events' objects may take together (32 MiB by
    /// default); past it the oldest go early, and watches from them get 410 Expired.
    pub fn watch_history_bytes(mut self, bytes: u64) -> Self {
        self.watch_history_bytes = bytes;
        self
    }

    /// How many bytes of JSON the stored objects may take together (256 MiB by default, as
    /// etcd's `--quota-backend-bytes`): a create or update that would grow them past it is
    /// answered 500 `etcdserver: mvcc: database space exceeded` and changes nothing; reads,
    /// deletions and writes that shrink an object still pass, and writes pass again once
    /// deletions made room.
    pub fn quota_bytes(mut self, bytes: u64) -> Self {
        self.quota_bytes = bytes;
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

    /// How long a client may take to send a request head (request line and headers), counted
    /// from when the server starts waiting for it; slower clients are disconnected. Also the
    /// longest a keep-alive connection stays open idle.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Use this bearer token instead of a random one (for example to keep one kubeconfig valid
    /// across restarts on the same state directory). Checked by [`ApiServerBuilder::build`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Use this certificate authority instead of a new one (for example
    /// [`RunningServer::authority`] of an earlier server, so that its clients keep trusting the
    /// server across a restart).
    pub fn authority(mut self, authority: Authority) -> Self {
        self.authority = Some(authority);
        self
    }

    /// How requests are authorized: [`Mode::AlwaysAllow`] (the default: every authenticated
    /// request is allowed) or [`Mode::Rbac`] (roles and bindings decide, as kube-apiserver's
    /// `--authorization-mode=RBAC`; the bootstrap policy is created at build).
    pub fn authorization(mut self, mode: Mode) -> Self {
        self.authorization = mode;
        self
    }

    /// Also accept `token` as `user` (kube-apiserver's static tokens; `system:authenticated` is
    /// added to its groups). The server's own token stays the admin's. Checked by
    /// [`ApiServerBuilder::build`].
    pub fn token_user(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.token_users.push((token.into(), user));
        self
    }

    /// Also accept the users of this token file (kube-apiserver's `--token-auth-file`: CSV lines
    /// `token,user,uid[,"group1,group2"]`), read by [`ApiServerBuilder::build`].
    pub fn token_auth_file(mut self, path: Option<PathBuf>) -> Self {
        self.token_auth_file = path;
        self
    }

    /// Loads the state (if any), makes the bearer token (random unless one was given) and the
    /// certificate authority (new unless one was given), adds the static token users, keeps the
    /// RBAC bootstrap policy when RBAC is on, and builds the server.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the state directory cannot be read or compacted,
    /// [`ServerError::Token`] when no token can be generated or the given one is not usable,
    /// [`ServerError::TokenUser`] or [`ServerError::TokenFile`] when a static user's token or the
    /// token file is not usable, [`ServerError::Tls`] when no authority can be made,
    /// [`ServerError::Bootstrap`] when the bootstrap policy cannot be stored.
    pub fn build(self) -> Result<ApiServer, ServerError> {
        let token = match &self.token {
            Some(given) => BearerToken::new(given.clone()),
            None => BearerToken::generate(),
        }
        .map_err(ServerError::Token)?;
        let mut authenticator = Authenticator::new(token.clone());
        for (given, who) in &self.token_users {
            let token =
                BearerToken::new(given.clone()).map_err(|source| ServerError::TokenUser {
                    user: user::name(who).to_owned(),
                    source,
                })?;
            authenticator.add(token, who.clone());
        }
        if let Some(path) = &self.token_auth_file {
            let users = tokenfile::read(path).map_err(|source| ServerError::TokenFile {
                path: path.clone(),
                source,
            })?;
            for (token, who) in users {
                authenticator.add(token, who);
            }
        }
        let authority = match &self.authority {
            Some(given) => given.clone(),
            None => Authority::open(self.state_dir.as_deref()).map_err(ServerError::Tls)?,
        };
        let cluster = Cluster::open(self.state_dir.as_deref(), self.watch_history)
            .map_err(ServerError::Store)?;
        {
            let mut inner = cluster.lock();
            inner.store.set_history_window(self.watch_history_window);
            inner.store.set_history_bytes(self.watch_history_bytes);
            inner.store.set_quota(self.quota_bytes);
        }
        if self.authorization == Mode::Rbac {
            bootstrap::ensure(&cluster).map_err(ServerError::Bootstrap)?;
        }
        let signer = Signer::open(self.state_dir.as_deref()).map_err(ServerError::SigningKey)?;
        Ok(ApiServer {
            cluster: Arc::new(cluster),
            token,
            authenticator: Arc::new(authenticator),
            signer: Arc::new(signer),
            authorizer: Authorizer::new(self.authorization),
            authority,
            config: self,
        })
    }
}

/// An embedded Kubernetes-compatible API server.
#[derive(Debug)]
pub struct ApiServer {
    cluster: Arc<Cluster>,
    token: BearerToken,
    authenticator: Arc<Authenticator>,
    /// Signs and checks service account tokens.
    signer: Arc<Signer>,
    authorizer: Authorizer,
    authority: Authority,
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
    /// A builder with defaults: in memory, 100 000 events (32 MiB of JSON) of watch history,
    /// 256 MiB of stored objects, 3 MiB bodies.
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder::default()
    }

    /// Number of stored objects.
    #[must_use]
    pub fn object_count(&self) -> usize {
        self.cluster.lock().store.len()
    }

    /// The bearer token every request but the health probes must carry.
    #[must_use]
    pub fn token(&self) -> &str {
        self.token.as_str()
    }

    /// The certificate authority clients must trust.
    #[must_use]
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    fn acceptor(&self, addr: SocketAddr) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
        let config = self
            .authority
            .server_config(addr)
            .map_err(ServerError::Tls)?;
        Ok(tokio_rustls::TlsAcceptor::from(config))
    }

    fn router(&self, addr: SocketAddr, shutdown: watch::Receiver<bool>) -> axum::Router {
        let state = AppState {
            cluster: self.cluster.clone(),
            addr,
            max_body_bytes: self.config.max_body_bytes,
            bookmark_interval: self.config.bookmark_interval,
            authenticator: self.authenticator.clone(),
            signer: self.signer.clone(),
            authorizer: self.authorizer,
            simulated_controllers: self.config.simulate_workloads.is_some(),
            shutdown,
        };
        axum::Router::new().fallback(handle).with_state(state)
    }

    /// Starts the simulated workloads' controller when asked, until `shutdown`.
    fn spawn_workloads(&self, shutdown: &watch::Receiver<bool>) {
        if let Some(ready_after) = self.config.simulate_workloads {
            tokio::spawn(crate::workloads::run(
                self.cluster.clone(),
                ready_after,
                self.authority.clone(),
                shutdown.clone(),
            ));
        }
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
        let tls = self.acceptor(bound)?;
        self.advertise(bound);
        let (tx, rx) = watch::channel(false);
        let router = self.router(bound, rx.clone());
        self.spawn_workloads(&rx);
        tracing::info!(addr = %bound, "api server listening");
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        connection::serve(listener, tls, router, self.config.header_read_timeout, rx).await;
        Ok(())
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
        let tls = self.acceptor(bound)?;
        self.advertise(bound);
        let (tx, rx) = watch::channel(false);
        let router = self.router(bound, rx.clone());
        self.spawn_workloads(&rx);
        let header_read_timeout = self.config.header_read_timeout;
        let task = tokio::spawn(async move {
            connection::serve(listener, tls, router, header_read_timeout, rx).await;
            Ok(())
        });
        tracing::info!(addr = %bound, "api server listening");
        Ok(RunningServer {
            cluster: self.cluster.clone(),
            addr: bound,
            token: self.token,
            authority: self.authority,
            shutdown: tx,
            task,
        })
    }

    /// The `kubernetes` Service and its endpoints, at the bound address
    /// ([`crate::kubernetes_service`]); a failure is logged, and the server serves anyway.
    fn advertise(&self, bound: SocketAddr) {
        if let Err(error) = crate::kubernetes_service::ensure(&self.cluster, bound) {
            tracing::warn!(%error, "cannot write the kubernetes Service and its endpoints");
        }
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
    token: BearerToken,
    authority: Authority,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://ADDR`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The certificate authority that signed the server's certificate; clients trust it
    /// ([`RunningServer::client`] and the kubeconfig do already; raw clients can use
    /// [`Authority::client_config`]).
    #[must_use]
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The bearer token every request but the health probes must carry
    /// (`Authorization: Bearer TOKEN`). [`RunningServer::client`], [`RunningServer::kube_config`]
    /// and [`RunningServer::kubeconfig_yaml`] carry it already.
    #[must_use]
    pub fn token(&self) -> &str {
        self.token.as_str()
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

    /// A kube configuration for this server: its URL, its certificate authority as the only root
    /// and its bearer token; namespace `default`.
    ///
    /// # Errors
    /// [`ServerError::Url`] (not expected for a socket address).
    pub fn kube_config(&self) -> Result<kube::Config, ServerError> {
        self.kube_config_with_token(self.token())
    }

    /// [`RunningServer::kube_config`] with another bearer token (a static token user's).
    ///
    /// # Errors
    /// [`ServerError::Url`] (not expected for a socket address).
    pub fn kube_config_with_token(&self, token: &str) -> Result<kube::Config, ServerError> {
        let uri = self.url().parse().map_err(ServerError::Url)?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(vec![self.authority.certificate_der().to_vec()]);
        config.auth_info.token = Some(token.to_owned().into());
        Ok(config)
    }

    /// A kube client that authenticates with `token` (a static token user's).
    ///
    /// # Errors
    /// [`ServerError::Client`] when the client cannot be built.
    pub fn client_with_token(&self, token: &str) -> Result<kube::Client, ServerError> {
        kube::Client::try_from(self.kube_config_with_token(token)?).map_err(ServerError::Client)
    }

    /// [`RunningServer::kubeconfig_yaml`] with another bearer token (a static token user's).
    #[must_use]
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        kubeconfig_yaml(&self.url(), self.authority.certificate_pem(), token)
    }

    /// A kube client for this server.
    ///
    /// # Errors
    /// [`ServerError::Client`] when the client cannot be built.
    pub fn client(&self) -> Result<kube::Client, ServerError> {
        kube::Client::try_from(self.kube_config()?).map_err(ServerError::Client)
    }

    /// A kubeconfig that `kubectl --kubeconfig FILE` uses as is; it holds the bearer token, so
    /// keep it private (see [`RunningServer::write_kubeconfig`]).
    #[must_use]
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url(), self.authority.certificate_pem(), self.token())
    }

    /// Writes [`RunningServer::kubeconfig_yaml`] to `path`, readable by its owner only: a new file
    /// is created next to it with mode 0600, written, synced and renamed over `path` (so an
    /// existing file, or a symbolic link, at `path` is replaced, never written through).
    ///
    /// # Errors
    /// [`ServerError::Kubeconfig`] when the file cannot be created, written or renamed.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), ServerError> {
        let failed = |source| ServerError::Kubeconfig {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kubeconfig-").suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut file = builder.tempfile_in(dir).map_err(failed)?;
        file.write_all(self.kubeconfig_yaml().as_bytes())
            .map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        file.persist(path).map_err(|e| failed(e.error))?;
        Ok(())
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

/// A kubeconfig for a server URL whose certificate `ca_pem` signed, with a bearer-token user and a
/// current context (namespace `default`).
#[must_use]
pub fn kubeconfig_yaml(url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine as _;
    let token = serde_json::Value::from(token);
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: capstan\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
users:\n- name: capstan\n  user:\n    token: {token}\ncontexts:\n- name: capstan\n  context:\n    cluster: capstan\n    user: capstan\n    namespace: default\n\
current-context: capstan\npreferences: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses() {
        let yaml = kubeconfig_yaml("https://127.0.0.1:1234", "PEM", "t0k-en_");
        let v: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:1234"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(v["users"][0]["user"]["token"], "t0k-en_");
        assert_eq!(v["current-context"], "capstan");
    }

    #[test]
    fn debug_output_hides_the_credentials() {
        let server = ApiServer::builder().token("s3cret-token").build().unwrap();
        let text = format!("{server:?}");
        assert!(!text.contains("s3cret-token"), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
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
