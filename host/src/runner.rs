//! `capstan run`: plugins, informers, reconcile controllers and handler dispatch against one API
//! server, with health endpoints, until a shutdown signal.

use crate::bus::Bus;
use crate::contract::{Gvk, ObjectRef};
use crate::dispatch::{Change, ChangeEvent, DispatchConfig, Dispatcher, ObjectChange};
use crate::event::{Context, Event};
use crate::informer::{ChangeKind, Informers};
use crate::plugin::{Plugin, Runtime, RuntimeConfig};
use crate::reconcile::{Controller, ControllerConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Errors that stop `capstan run` from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plugin runtime could not start.
    #[error("cannot start the plugin runtime")]
    Runtime(#[from] crate::plugin::RuntimeError),
    /// The plugins directory could not be read.
    #[error("cannot read plugins directory {path}")]
    Plugins {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be applied.
    #[error("cannot apply manifests")]
    Manifests(#[from] crate::manifests::ManifestError),
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What `capstan run` runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Directory of `*.wasm` plugins.
    pub plugins: PathBuf,
    /// Directory of YAML manifests applied at start.
    pub manifests: Option<PathBuf>,
    /// Precompiled cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Address of `/healthz`, `/readyz` and `/plugins`.
    pub http_listen: Option<SocketAddr>,
    /// Sandbox limits of every plugin call.
    pub limits: crate::plugin::Limits,
    /// Reconcile settings.
    pub controller: ControllerConfig,
}

#[derive(serde::Serialize)]
struct PluginsView {
    loaded: Vec<serde_json::Value>,
    rejected: Vec<serde_json::Value>,
}

/// Run until `shutdown` resolves: then stop taking work, let reconciles in flight finish, return.
pub async fn run(
    config: RunConfig,
    client: kube::Client,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if let Some(dir) = &config.manifests {
        let n = crate::manifests::apply_dir(&client, dir).await?;
        tracing::info!(count = n, dir = %dir.display(), "manifests applied");
    }
    let mut rc = RuntimeConfig::default().limits(config.limits.clone());
    if let Some(dir) = &config.cache_dir {
        rc = rc.cache_dir(dir);
    }
    let runtime = Runtime::new(rc)?;
    let report = runtime
        .load_dir(&config.plugins)
        .await
        .map_err(|source| RunError::Plugins {
            path: config.plugins.clone(),
            source,
        })?;
    for rejected in &report.rejected {
        tracing::error!(reason = %rejected.one_line(), "plugin rejected");
    }
    for p in &report.plugins {
        let i = p.info();
        tracing::info!(plugin = %i.name, version = %i.version, world = %i.world, hash = %&i.hash[..12], "plugin loaded");
    }
    let view = Arc::new(PluginsView {
        loaded: report.plugins.iter().map(|p| serde_json::json!({"info": p.info(), "manifest": p.manifest(), "state": "running"})).collect(),
        rejected: report.rejected.iter().map(|e| serde_json::json!({"path": e.path, "reason": e.one_line()})).collect(),
    });
    let informers = Informers::new(client.clone());
    let mut controllers = Vec::new();
    for plugin in report
        .plugins
        .iter()
        .filter(|p| p.info().world.reconciles())
    {
        match Controller::start(
            plugin.clone(),
            &informers,
            client.clone(),
            config.controller.clone(),
        )
        .await
        {
            Ok(c) => controllers.push(c),
            Err(e) => {
                tracing::error!(plugin = plugin.name(), error = %crate::error_chain(&e), "controller not started")
            }
        }
    }
    let handlers: Vec<Plugin> = report
        .plugins
        .iter()
        .filter(|p| p.info().world.handles())
        .cloned()
        .collect();
    let pumps = start_handlers(&handlers, &informers).await;
    let ready = Arc::new(AtomicBool::new(true));
    let server = match config.http_listen {
        Some(addr) => Some(serve_http(addr, view, ready.clone()).await?),
        None => None,
    };
    tracing::info!(
        controllers = controllers.len(),
        handlers = handlers.len(),
        "capstan running"
    );
    shutdown.await;
    tracing::info!("shutting down: finishing work in flight");
    ready.store(false, Ordering::SeqCst);
    for p in pumps {
        p.abort();
    }
    let stops = controllers
        .into_iter()
        .map(|c| c.shutdown(Duration::from_secs(10)));
    futures::future::join_all(stops).await;
    if let Some(s) = server {
        s.abort();
    }
    Ok(())
}

/// Informer changes of every kind a handler watches become root events on the bus.
async fn start_handlers(
    handlers: &[Plugin],
    informers: &Informers,
) -> Vec<tokio::task::JoinHandle<()>> {
    if handlers.is_empty() {
        return Vec::new();
    }
    let dispatcher = Dispatcher::new(DispatchConfig::default());
    dispatcher.set_plugins(handlers);
    let bus: Bus<ChangeEvent> = Bus::new(crate::bus::DEFAULT_PRESTART_CAPACITY);
    let mut tasks = vec![dispatcher.run(bus.subscribe(4096))];
    let mut kinds: Vec<Gvk> = handlers
        .iter()
        .flat_map(|p| p.manifest().watches.clone())
        .collect();
    kinds.sort();
    kinds.dedup();
    for gvk in kinds {
        let handle = match informers.acquire(&gvk).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(kind = %gvk, error = %crate::error_chain(&e), "cannot watch a kind handlers need");
                continue;
            }
        };
        let (bus, mut changes) = (bus.clone(), handle.subscribe());
        tasks.push(tokio::spawn(async move {
            let _keep = handle;
            while let Some(c) = changes.recv().await {
                // Serialize each object once: the reference and the payload come from one value.
                let Ok(value) = serde_json::to_value(&*c.object) else { continue };
                let Some(object) = ObjectRef::from_json(&value) else { continue };
                let new = Arc::<str>::from(value.to_string());
                let change = match &c.kind {
                    ChangeKind::Added => Change::Added(new),
                    ChangeKind::Updated { old } => {
                        let old = Arc::<str>::from(serde_json::to_string(&**old).unwrap_or_default());
                        Change::Updated { new, old }
                    }
                    ChangeKind::Deleted => Change::Deleted(new),
                };
                let name = object.to_string();
                bus.publish(Event::with_ack(
                    ObjectChange { object, change },
                    Context::new(),
                    || {},
                    move |e| tracing::warn!(object = %name, error = %e, "event not handled by every plugin"),
                ));
            }
        }));
    }
    bus.start();
    tasks
}

async fn serve_http(
    addr: SocketAddr,
    view: Arc<PluginsView>,
    ready: Arc<AtomicBool>,
) -> Result<tokio::task::JoinHandle<()>, RunError> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "stopping")
                    }
                }
            }),
        )
        .route(
            "/plugins",
            get(
                move || async move { axum::Json(serde_json::to_value(&*view).unwrap_or_default()) },
            ),
        );
    tracing::info!(%addr, "http listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    }))
}
