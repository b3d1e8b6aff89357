//! `capstan run`: plugins (hot-reloaded), informers, reconcile controllers and handler dispatch
//! against one API server, with `/metrics`, `/plugins` and health endpoints, until a shutdown signal.

use crate::bus::Bus;
use crate::config::Config;
use crate::contract::{Gvk, ObjectRef};
use crate::dispatch::{Change, ChangeEvent, DispatchConfig, Dispatcher, ObjectChange};
use crate::event::{Context, Event};
use crate::identity::Impersonation;
use crate::informer::{Change as InformerChange, ChangeKind, InformerHandle, Informers};
use crate::leader::{ElectionConfig, Elector, Fence};
use crate::metrics::{Metrics, PluginStateLabel};
use crate::plugin::{
    Limits, Plugin, PluginEvent, PluginState, Registry, Reloader, Runtime, RuntimeConfig,
};
use crate::reconcile::{Clients, Controller, ControllerConfig};
use crate::shard::{Audit, EventRouter, Gate, ShardConfig, Sharder};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Errors that stop `capstan run` from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plugin runtime could not start.
    #[error("cannot start the plugin runtime")]
    Runtime(#[from] crate::plugin::RuntimeError),
    /// The plugins directory could not be read or watched.
    #[error("cannot load plugins")]
    Plugins(#[from] crate::plugin::ReloadError),
    /// A manifest could not be applied.
    #[error("cannot apply manifests")]
    Manifests(#[from] crate::manifests::ManifestError),
    /// The leader election settings are invalid.
    #[error("cannot start leader election")]
    Leader(#[from] crate::leader::LeaderError),
    /// The sharding settings are invalid.
    #[error("cannot start sharding")]
    Shard(#[from] crate::shard::ShardError),
    /// The shard audit log cannot be opened.
    #[error("cannot start sharding")]
    Audit(#[from] crate::shard::AuditError),
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
    /// Directory of `*.wasm` plugins, watched for changes.
    pub plugins: PathBuf,
    /// Directory of YAML manifests applied at start.
    pub manifests: Option<PathBuf>,
    /// Precompiled cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Address of `/metrics`, `/healthz`, `/readyz` and `/plugins`.
    pub http_listen: Option<SocketAddr>,
    /// Sandbox limits of every plugin call (before the configuration file's per-plugin sections).
    pub limits: Limits,
    /// Reconcile settings.
    pub controller: ControllerConfig,
    /// The configuration file's contents.
    pub config: Config,
    /// Whether to watch the plugins directory and reload on changes. Default true.
    pub hot_reload: bool,
    /// Act for each plugin as its own ServiceAccount (Kubernetes impersonation), so the API
    /// server enforces the plugin's grant too. Default none: requests carry the host's identity.
    pub impersonation: Option<Impersonation>,
    /// How long shutdown waits for work in flight before it gives up on it. Default 10 s; keep
    /// it below the pod's termination grace period.
    pub shutdown_timeout: Duration,
    /// Serve only while holding this Lease (leader election); stand by otherwise. Default none:
    /// this replica always serves.
    pub leader_election: Option<ElectionConfig>,
    /// With leader election: keep the informers of the loaded plugins' kinds running while
    /// standing by, so a takeover starts from warm caches. Default true.
    pub warm_standby: bool,
    /// Work only on this replica's shard of the objects, on the ring of these shard Leases
    /// (active-active; exclusive with `leader_election`). Default none.
    pub sharding: Option<ShardConfig>,
    /// With sharding: append each reconcile's interval to this file ([`crate::shard::audit`]).
    pub shard_audit: Option<PathBuf>,
}

impl RunConfig {
    /// Run the plugins of `dir` with default settings.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins: dir.into(),
            manifests: None,
            cache_dir: None,
            http_listen: None,
            limits: Limits::default(),
            controller: ControllerConfig::default(),
            config: Config::default(),
            hot_reload: true,
            impersonation: None,
            shutdown_timeout: Duration::from_secs(10),
            leader_election: None,
            warm_standby: true,
            sharding: None,
            shard_audit: None,
        }
    }
}

/// Run until `shutdown` resolves: then stop taking work, let work in flight finish, return.
/// `/metrics`, `/healthz`, `/readyz` and `/plugins` are served on `config.http_listen`, if set.
pub async fn run(
    config: RunConfig,
    client: kube::Client,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let http = match config.http_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Listen { addr, source })?,
        ),
        None => None,
    };
    run_with_listener(config, client, http, shutdown).await
}

/// [`run`], serving the HTTP endpoints on a listener the caller bound (`config.http_listen` is
/// not read): bind port 0, read the address it got, and nothing can take the port in between.
///
/// With [`RunConfig::leader_election`] the plugins are loaded (and precompiled) at once, then the
/// replica campaigns for the Lease: while it holds it, it applies `config.manifests`, runs the
/// controllers and handler dispatch, and `/readyz` answers 200; while it stands by, none of them
/// run and `/readyz` answers 503. At shutdown the work in flight finishes first, then the Lease
/// is released.
pub async fn run_with_listener(
    config: RunConfig,
    client: kube::Client,
    http: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if let Some(sharding) = &config.sharding {
        sharding.validate()?;
    }
    if let Some(election) = &config.leader_election {
        election.validate()?;
    } else if let Some(dir) = &config.manifests {
        apply_manifests(&client, dir).await?;
    }
    let metrics = Metrics::new();
    let limits = config.config.default_limits(&config.limits);
    let mut rc = RuntimeConfig::default()
        .limits(limits.clone())
        .fuel(config.config.runtime.fuel)
        .compile_tiers(config.config.runtime.compile_tiers)
        .metrics(metrics.clone());
    if let Some(kib) = config.config.runtime.max_wasm_stack_ki_b {
        rc = rc.max_wasm_stack(kib << 10);
    }
    if let Some(bytes) = config.config.max_plugin_bytes() {
        rc = rc.max_plugin_bytes(bytes);
    }
    for entry in config.config.grant_entries(&limits) {
        rc = rc.grant(entry);
    }
    if let Some(dir) = &config.cache_dir {
        rc = rc.cache_dir(dir);
    }
    let runtime = Runtime::new(rc)?;
    let registry = Registry::new();
    let (events, mut changes) = mpsc::unbounded_channel();
    // Plugins served from the baseline compiler are swapped for their optimized versions as
    // those are compiled: the swaps arrive on `changes`, after the scan's own events.
    let artifacts = runtime.clone();
    let reloader = Reloader::new(runtime, registry.clone(), &config.plugins)
        .metrics(metrics.clone())
        .tier_up(events.clone());
    // Watch first, then scan: a change in between is seen by both, and the second sync of an
    // unchanged file does nothing.
    let _watch = if config.hot_reload {
        Some(reloader.watch(events)?)
    } else {
        None
    };
    // A candidate campaigns only once its plugins are loaded: a standby is warm.
    let fence = config.leader_election.as_ref().map(|_| Fence::new());
    let mut supervisor = Supervisor::new(client.clone(), &config, metrics.clone());
    if let Some(fence) = &fence {
        supervisor = supervisor.standby(fence.clone(), config.warm_standby);
    }
    // Sharding: every replica runs every plugin, on what its gate grants, writing through a
    // fence open while its shard Lease is renewed.
    let shard = match &config.sharding {
        Some(sharding) => {
            let audit = match &config.shard_audit {
                Some(path) => Some(Audit::open(path, &sharding.lease.identity)?),
                None => None,
            };
            let (gate, fence) = (Gate::new(audit), Fence::new());
            // Undelivered handler events are kept long enough for a dead owner's share to
            // move: its lease lapses, then a few rounds to drain, acknowledge and widen.
            let lease = &sharding.lease;
            let window = lease.lease_duration * 2 + lease.retry_period * 4;
            supervisor = supervisor.sharded(fence.clone(), gate.clone(), window);
            Some((gate, fence))
        }
        None => None,
    };
    // Each plugin serves as soon as it is compiled, not when the slowest is.
    let (ready, mut scanned) = mpsc::unbounded_channel();
    let (scan, ()) = tokio::join!(reloader.scan_into(ready), async {
        while let Some(event) = scanned.recv().await {
            supervisor.apply(event).await;
        }
    });
    scan?;
    let elector = match &config.leader_election {
        Some(election) => Some(Elector::start(
            client.clone(),
            election.clone(),
            fence.clone().unwrap_or_default(),
            Some(metrics.clone()),
        )?),
        None => None,
    };
    let sharder = match (&config.sharding, shard) {
        (Some(sharding), Some((gate, fence))) => Some(Sharder::start(
            client.clone(),
            sharding.clone(),
            gate,
            fence,
            Some(metrics.clone()),
        )?),
        _ => None,
    };
    let serving = Arc::new(AtomicU8::new(if elector.is_some() {
        Serving::Standby
    } else if sharder.is_some() {
        Serving::Joining
    } else {
        Serving::Active
    } as u8));
    metrics.set_leader(elector.is_none() && sharder.is_none());
    let server = http.map(|listener| {
        serve_http(
            listener,
            HttpState {
                registry: registry.clone(),
                metrics: metrics.clone(),
                serving: serving.clone(),
                supervisor: supervisor.gauges.clone(),
            },
        )
    });
    tracing::info!(
        plugins = registry.plugins().len(),
        hot_reload = config.hot_reload,
        leader_election = elector.is_some(),
        "capstan running"
    );
    let mut leading = elector.as_ref().map(Elector::leading);
    let mut membership = sharder.as_ref().map(Sharder::membership);
    let mut failed = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(event) = changes.recv() => supervisor.apply(event).await,
            member = membership_change(&mut membership) => {
                let state = if member { Serving::Active } else { Serving::Joining };
                serving.store(state as u8, Ordering::SeqCst);
            }
            lead = leadership_change(&mut leading) => {
                if lead {
                    if let (Some(dir), Some(fence)) = (&config.manifests, &fence)
                        && let Err(e) = apply_manifests(&fence.client(client.clone()), dir).await
                    {
                        failed = Some(e);
                        break;
                    }
                    supervisor.activate().await;
                    serving.store(Serving::Active as u8, Ordering::SeqCst);
                } else {
                    serving.store(Serving::Standby as u8, Ordering::SeqCst);
                    supervisor.deactivate().await;
                }
            }
        }
    }
    tracing::info!("shutting down: finishing work in flight");
    serving.store(Serving::Stopping as u8, Ordering::SeqCst);
    supervisor.shutdown(config.shutdown_timeout).await;
    // Compiled plugins still being written to the precompiled cache are, so a restart finds them.
    let _ = tokio::task::spawn_blocking(move || artifacts.flush_cache()).await;
    // Only now that nothing works under it may the Lease go (client-go's ReleaseOnCancel).
    if let Some(elector) = elector {
        elector.release().await;
    }
    if let Some(sharder) = sharder {
        sharder.release().await;
    }
    if let Some(s) = server {
        s.abort();
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Apply the manifests of `dir` through `client`.
async fn apply_manifests(client: &kube::Client, dir: &std::path::Path) -> Result<(), RunError> {
    let n = crate::manifests::apply_dir(client, dir).await?;
    tracing::info!(count = n, dir = %dir.display(), "manifests applied");
    Ok(())
}

/// The next value of `leading` once it changes; `false` (and no more values) if the elector ended;
/// never without an elector.
async fn leadership_change(leading: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = leading.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_ok() {
        return *rx.borrow_and_update();
    }
    *leading = None;
    false
}

/// Whether this replica serves as a ring member, once that changes; never without sharding.
async fn membership_change(
    membership: &mut Option<watch::Receiver<crate::shard::Membership>>,
) -> bool {
    let Some(rx) = membership.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *membership = None;
        return false;
    }
    rx.borrow_and_update().serving
}

/// What `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Serving {
    /// Controllers and handlers run: 200.
    Active,
    /// Standing by for the Lease: 503.
    Standby,
    /// Sharding, not (yet, or no longer) a ring member that works: 503.
    Joining,
    /// Shutting down: 503.
    Stopping,
}

/// Reads a controller's queue depth.
type DepthProbe = Box<dyn Fn() -> usize + Send + Sync>;

/// What the metrics endpoint reads from the supervisor at scrape time.
#[derive(Clone, Default)]
struct Gauges {
    queue_depths: Arc<std::sync::Mutex<HashMap<String, DepthProbe>>>,
    /// With sharding: objects each controller may work on.
    owned: Arc<std::sync::Mutex<HashMap<String, DepthProbe>>>,
    bus: Arc<std::sync::Mutex<Option<Bus<ChangeEvent>>>>,
    bus_dropped_seen: Arc<std::sync::atomic::AtomicU64>,
}

/// An informer of a kind handlers watch, and the task that publishes its changes on the bus.
struct Pump {
    /// The informer: its cache is what the dispatcher's resyncs read.
    handle: InformerHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pumps by kind, shared with the dispatcher's resync source.
type Pumps = Arc<std::sync::Mutex<HashMap<Gvk, Pump>>>;

/// Applies plugin events: starts, swaps and stops controllers, handler routes and informers.
///
/// A supervisor made a [`standby`](Self::standby) keeps track of the loaded plugins but runs none
/// of them until [`activate`](Self::activate)d (this replica leads), and stops them all again on
/// [`deactivate`](Self::deactivate) (it lost the Lease). Its clients' writes pass its [`Fence`].
pub struct Supervisor {
    client: kube::Client,
    /// `client` behind the fence, if any: what controllers write through.
    writer: kube::Client,
    fence: Option<Fence>,
    /// With sharding: what this replica may work on.
    gate: Option<Gate>,
    /// With sharding: how long handler events outside the grant are kept for a hand-over.
    event_window: Duration,
    impersonation: Option<Impersonation>,
    informers: Informers,
    base: ControllerConfig,
    reconcile: HashMap<String, crate::config::ReconcileSection>,
    controllers: HashMap<String, Controller>,
    dispatcher: Dispatcher,
    bus: Bus<ChangeEvent>,
    dispatch_task: tokio::task::JoinHandle<()>,
    pumps: Pumps,
    metrics: Metrics,
    gauges: Gauges,
    /// Whether the plugins run (always, without leader election).
    active: bool,
    /// The loaded plugins by name, as the events applied so far tell.
    known: BTreeMap<String, Plugin>,
    /// While standing by with warm informers: a handle on each kind the known plugins need.
    warm: Option<HashMap<Gvk, InformerHandle>>,
    /// How long a deactivation waits for reconciles in flight.
    grace: Duration,
}

impl Supervisor {
    /// A supervisor with no plugins yet, talking to `client`.
    pub fn new(client: kube::Client, config: &RunConfig, metrics: Metrics) -> Self {
        let pumps = Pumps::default();
        let source = pumps.clone();
        let dispatcher = Dispatcher::new(DispatchConfig::default().source(move |gvk| {
            let handle = source.lock().ok()?.get(gvk)?.handle.clone();
            Some(
                handle
                    .list(None, None)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|o| object_json(o))
                    .collect(),
            )
        }));
        let bus: Bus<ChangeEvent> = Bus::new();
        let dispatch_task = dispatcher.run(bus.subscribe(4096));
        let gauges = Gauges::default();
        if let Ok(mut b) = gauges.bus.lock() {
            *b = Some(bus.clone());
        }
        Self {
            informers: Informers::new(client.clone()),
            writer: client.clone(),
            client,
            fence: None,
            gate: None,
            event_window: Duration::ZERO,
            impersonation: config.impersonation.clone(),
            base: config.controller.clone(),
            reconcile: config
                .config
                .plugins
                .iter()
                .map(|(n, p)| (n.clone(), p.reconcile.clone()))
                .collect(),
            controllers: HashMap::new(),
            dispatcher,
            bus,
            dispatch_task,
            pumps,
            metrics,
            gauges,
            active: true,
            known: BTreeMap::new(),
            warm: None,
            grace: config.shutdown_timeout,
        }
    }

    /// Stand by until [`activate`](Self::activate)d, and from then on write only through `fence`
    /// (the leader's). With `warm_informers`, the informers of the kinds the loaded plugins need
    /// run while standing by.
    #[must_use]
    pub fn standby(mut self, fence: Fence, warm_informers: bool) -> Self {
        self.writer = fence.client(self.client.clone());
        self.fence = Some(fence);
        self.active = false;
        self.warm = warm_informers.then(HashMap::new);
        self
    }

    /// Work only on what `gate` grants (sharding), and write only through `fence` (open while
    /// this replica's shard Lease is renewed), keeping the handler events of other replicas'
    /// objects for `event_window` in case they move here. The plugins run at once.
    #[must_use]
    pub fn sharded(mut self, fence: Fence, gate: Gate, event_window: Duration) -> Self {
        self.event_window = event_window;
        // The reconciled kinds' caches hold only this replica's shard.
        self.informers = Informers::builder(self.client.clone())
            .shard_by(gate.targets())
            .build();
        self.writer = fence.client(self.client.clone());
        self.fence = Some(fence);
        self.gate = Some(gate);
        self
    }

    /// Whether the plugins run.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Start every loaded plugin's controller and handler route (this replica leads now).
    pub async fn activate(&mut self) {
        if self.active {
            return;
        }
        self.active = true;
        tracing::info!(
            plugins = self.known.len(),
            "serving: starting controllers and handler dispatch"
        );
        for plugin in self.known.values().cloned().collect::<Vec<_>>() {
            self.serve(&plugin).await;
        }
        // The controllers and pumps hold their informers now.
        if let Some(warm) = &mut self.warm {
            warm.clear();
        }
    }

    /// Stop every controller (reconciles in flight get the shutdown grace; their writes are
    /// fenced already) and handler route (this replica no longer leads). Warm informers keep
    /// running.
    pub async fn deactivate(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        tracing::info!("standing by: stopping controllers and handler dispatch");
        self.warm_up().await;
        for plugin in self.dispatcher.plugins() {
            self.dispatcher.remove(plugin.name());
        }
        if let Ok(mut pumps) = self.pumps.lock() {
            pumps.clear();
        }
        if let Ok(mut q) = self.gauges.queue_depths.lock() {
            q.clear();
        }
        let grace = self.grace;
        let stops = self
            .controllers
            .drain()
            .map(|(_, c)| c.shutdown(grace))
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
    }

    /// While standing by with warm informers: hold the informers of exactly the kinds the known
    /// plugins need (a kind that cannot be watched yet is tried again at the next plugin event).
    async fn warm_up(&mut self) {
        let Some(mut warm) = self.warm.take() else {
            return;
        };
        let mut needed: Vec<Gvk> = self
            .known
            .values()
            .flat_map(|p| {
                let m = p.manifest();
                let mut kinds = m.watches.clone();
                if p.info().world.reconciles() {
                    kinds.extend(crate::reconcile::kinds_of(m));
                }
                kinds
            })
            .collect();
        needed.sort();
        needed.dedup();
        warm.retain(|gvk, _| needed.contains(gvk));
        for gvk in needed {
            if warm.contains_key(&gvk) {
                continue;
            }
            match self.informers.acquire(&gvk).await {
                Ok(handle) => {
                    warm.insert(gvk, handle);
                }
                Err(e) => {
                    tracing::debug!(kind = %gvk, error = %crate::error_chain(&e), "standby: kind not watched yet");
                }
            }
        }
        self.warm = Some(warm);
    }

    /// The shared informers (to see which kinds are watched).
    pub fn informers(&self) -> &Informers {
        &self.informers
    }

    fn controller_config(&self, plugin: &Plugin) -> ControllerConfig {
        let mut c = self.base.clone();
        c.metrics = Some(self.metrics.clone());
        c.gate = self.gate.clone();
        // Like every part of a configuration entry, only for the file it is bound to.
        if let Some(r) = plugin
            .grant()
            .bound_entry()
            .and_then(|entry| self.reconcile.get(entry))
        {
            if let Some(prune) = r.prune {
                c.prune = prune;
            }
            for (phase, secs) in &r.phase_timeouts_seconds {
                c.phase_timeouts
                    .insert(phase.clone(), Duration::from_secs(*secs));
            }
            c.scope = r.scope();
        }
        c
    }

    /// Apply one plugin event (while standing by, only note it).
    pub async fn apply(&mut self, event: PluginEvent) {
        match &event {
            PluginEvent::Loaded(p) => {
                self.known.insert(p.name().to_owned(), p.clone());
            }
            PluginEvent::Replaced { old, new } => {
                self.known.remove(old.name());
                self.known.insert(new.name().to_owned(), new.clone());
            }
            PluginEvent::Unloaded(p) => {
                self.known.remove(p.name());
            }
        }
        if !self.active {
            match &event {
                PluginEvent::Loaded(p) => self.publish_info(p),
                PluginEvent::Replaced { old, new } => {
                    self.publish_info(new);
                    if old.name() != new.name() {
                        self.metrics.remove_plugin(old.name());
                    }
                }
                PluginEvent::Unloaded(p) => self.metrics.remove_plugin(p.name()),
            }
            self.warm_up().await;
            return;
        }
        match event {
            PluginEvent::Loaded(p) => {
                self.publish_info(&p);
                self.serve(&p).await;
            }
            PluginEvent::Replaced { old, new } => {
                self.publish_info(&new);
                match (old.info().world.reconciles(), new.info().world.reconciles()) {
                    (true, true) => {
                        let swapped = match self.controllers.get(new.name()) {
                            Some(c) => c.swap(new.clone()).is_ok(),
                            None => false,
                        };
                        if !swapped {
                            self.stop_controller(old.name()).await;
                            self.start_controller(new.clone()).await;
                        }
                    }
                    (true, false) => self.stop_controller(old.name()).await,
                    (false, true) => self.start_controller(new.clone()).await,
                    (false, false) => {}
                }
                if new.info().world.handles() {
                    self.dispatcher.upsert(&new);
                    self.dispatcher.resync(Some(new.name()));
                } else {
                    self.dispatcher.remove(old.name());
                }
                if old.name() != new.name() {
                    self.dispatcher.remove(old.name());
                    self.metrics.remove_plugin(old.name());
                }
                self.sync_pumps().await;
            }
            PluginEvent::Unloaded(p) => {
                self.stop_controller(p.name()).await;
                self.dispatcher.remove(p.name());
                self.sync_pumps().await;
                self.metrics.remove_plugin(p.name());
            }
        }
    }

    /// Run a loaded plugin: its controller, its handler route.
    async fn serve(&mut self, p: &Plugin) {
        if p.info().world.reconciles() {
            self.start_controller(p.clone()).await;
        }
        if p.info().world.handles() {
            self.dispatcher.upsert(p);
            // The kinds already watched come from their caches; a kind watched from now on comes
            // from its new informer's initial list, through the bus.
            self.dispatcher.resync(Some(p.name()));
            self.sync_pumps().await;
        }
    }

    fn publish_info(&self, p: &Plugin) {
        let i = p.info();
        self.metrics
            .set_plugin_info(&i.name, &i.version, &i.hash, i.tier.as_str());
        self.metrics
            .set_plugin_state(&i.name, PluginStateLabel::Running);
    }

    async fn start_controller(&mut self, plugin: Plugin) {
        let name = plugin.name().to_owned();
        let config = self.controller_config(&plugin);
        // Writes on the plugin's behalf and the host's own (Events) pass the fence, if any.
        let clients = match &self.impersonation {
            None => Clients::from(self.writer.clone()),
            Some(i) => match i.client_for(&name) {
                Ok(acting) => Clients {
                    host: self.writer.clone(),
                    plugin: match &self.fence {
                        Some(fence) => fence.client(acting),
                        None => acting,
                    },
                },
                Err(e) => {
                    tracing::error!(plugin = %name, error = %crate::error_chain(&e), "controller not started");
                    return;
                }
            },
        };
        match Controller::start(plugin, &self.informers, clients, config).await {
            Ok(c) => {
                let depth = c.depth_probe();
                if let Ok(mut q) = self.gauges.queue_depths.lock() {
                    q.insert(name.clone(), Box::new(depth));
                }
                if self.gate.is_some()
                    && let Ok(mut o) = self.gauges.owned.lock()
                {
                    o.insert(name.clone(), Box::new(c.owned_probe()));
                }
                self.controllers.insert(name, c);
            }
            Err(e) => {
                tracing::error!(plugin = %name, error = %crate::error_chain(&e), "controller not started")
            }
        }
    }

    async fn stop_controller(&mut self, name: &str) {
        if let Ok(mut q) = self.gauges.queue_depths.lock() {
            q.remove(name);
        }
        if let Ok(mut o) = self.gauges.owned.lock() {
            o.remove(name);
        }
        if let Some(c) = self.controllers.remove(name) {
            c.shutdown(Duration::from_secs(10)).await;
        }
    }

    /// Informer pumps for exactly the kinds the handler plugins watch now.
    async fn sync_pumps(&mut self) {
        let mut needed: Vec<Gvk> = self
            .dispatcher
            .plugins()
            .iter()
            .flat_map(|p| p.manifest().watches.clone())
            .collect();
        needed.sort();
        needed.dedup();
        if let Ok(mut pumps) = self.pumps.lock() {
            pumps.retain(|gvk, _| {
                let keep = needed.contains(gvk);
                if !keep {
                    tracing::info!(kind = %gvk, "no handler watches this kind any more: informer stopped");
                }
                keep
            });
        }
        for gvk in needed {
            if self.pumps.lock().is_ok_and(|p| p.contains_key(&gvk)) {
                continue;
            }
            match self.informers.acquire(&gvk).await {
                Ok(handle) => {
                    let (bus, changes) = (self.bus.clone(), handle.subscribe());
                    let task = match &self.gate {
                        None => tokio::spawn(pump(changes, bus)),
                        Some(gate) => {
                            let router =
                                EventRouter::new(gate.clone(), gvk.to_string(), self.event_window);
                            tokio::spawn(sharded_pump(changes, bus, router, gate.clone()))
                        }
                    };
                    if let Ok(mut pumps) = self.pumps.lock() {
                        pumps.insert(gvk, Pump { handle, task });
                    }
                }
                Err(e) => {
                    tracing::error!(kind = %gvk, error = %crate::error_chain(&e), "cannot watch a kind handlers need")
                }
            }
        }
    }

    /// Stop taking work and let what is in flight finish (up to `grace` per controller).
    pub async fn shutdown(mut self, grace: Duration) {
        if let Ok(mut pumps) = self.pumps.lock() {
            pumps.clear();
        }
        let stops = self
            .controllers
            .drain()
            .map(|(_, c)| c.shutdown(grace))
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
        self.dispatch_task.abort();
    }
}

/// Publish every change of a kind to the handler bus.
async fn pump(mut changes: mpsc::UnboundedReceiver<InformerChange>, bus: Bus<ChangeEvent>) {
    while let Some(c) = changes.recv().await {
        if let Some(event) = change_event(&c.object, &c.kind) {
            bus.publish(event);
        }
    }
}

/// With sharding: publish the changes of the objects this replica owns (by their controller
/// owner's uid, for a child), and at a hand-over the ones its previous owner had not.
async fn sharded_pump(
    mut changes: mpsc::UnboundedReceiver<InformerChange>,
    bus: Bus<ChangeEvent>,
    mut router: EventRouter<InformerChange>,
    gate: Gate,
) {
    let mut widened = gate.epochs();
    let deliver = |c: InformerChange| {
        let meta = &c.object.metadata;
        gate.record_event(
            &c.gvk,
            meta.uid.as_deref().unwrap_or_default(),
            meta.resource_version.as_deref().unwrap_or_default(),
        );
        if let Some(event) = change_event(&c.object, &c.kind) {
            bus.publish(event);
        }
    };
    loop {
        let due = tokio::select! {
            change = changes.recv() => {
                let Some(c) = change else { return };
                let (hash, rv) = (routing_hash(&c.object), c.object.metadata.resource_version.clone());
                router.offer(hash, rv, c)
            }
            Ok(()) = widened.changed() => router.catch_up(),
        };
        for c in due {
            deliver(c);
        }
    }
}

/// The shard hash an object's events route by: its controller owner's uid, else its own.
fn routing_hash(object: &kube::api::DynamicObject) -> u64 {
    let owner = object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str());
    let uid = owner.or(object.metadata.uid.as_deref()).unwrap_or_default();
    crate::shard::key_hash(uid)
}

/// An object's reference and JSON, serialized once (the reference and the text come from one
/// value): the same text for the same object, whether it comes from an event or from the cache.
fn object_json(object: &kube::api::DynamicObject) -> Option<(ObjectRef, Arc<str>)> {
    let value = serde_json::to_value(object).ok()?;
    let object = ObjectRef::from_json(&value)?;
    Some((object, Arc::from(value.to_string())))
}

/// An informer change as a root event for the handler bus.
fn change_event(object: &kube::api::DynamicObject, kind: &ChangeKind) -> Option<ChangeEvent> {
    let (object, new) = object_json(object)?;
    let change = match kind {
        ChangeKind::Added => Change::Added(new),
        ChangeKind::Updated { old } => {
            let old = Arc::<str>::from(serde_json::to_string(&**old).unwrap_or_default());
            Change::Updated { new, old }
        }
        ChangeKind::Deleted => Change::Deleted(new),
    };
    let name = object.to_string();
    Some(Event::with_ack(
        ObjectChange { object, change },
        Context::new(),
        || {},
        move |e| tracing::warn!(object = %name, error = %e, "event not handled by every plugin"),
    ))
}

#[derive(Clone)]
struct HttpState {
    registry: Registry,
    metrics: Metrics,
    serving: Arc<AtomicU8>,
    supervisor: Gauges,
}

impl HttpState {
    /// Refresh the gauges that are read rather than pushed, then encode.
    fn scrape(&self) -> String {
        for p in self.registry.plugins() {
            let state = match p.state() {
                PluginState::Running => PluginStateLabel::Running,
                PluginState::Degraded { .. } => PluginStateLabel::Degraded,
            };
            self.metrics.set_plugin_state(p.name(), state);
        }
        if let Ok(q) = self.supervisor.queue_depths.lock() {
            for (name, depth) in q.iter() {
                self.metrics.set_queue_depth(name, depth());
            }
        }
        if let Ok(o) = self.supervisor.owned.lock() {
            for (name, owned) in o.iter() {
                self.metrics.set_shard_objects_owned(name, owned());
            }
        }
        if let Ok(b) = self.supervisor.bus.lock()
            && let Some(bus) = b.as_ref()
        {
            let total = bus.stats().dropped_total;
            let seen = self
                .supervisor
                .bus_dropped_seen
                .swap(total, Ordering::SeqCst);
            if total > seen {
                self.metrics.bus_dropped("full", total - seen);
            }
        }
        self.metrics.encode()
    }
}

fn serve_http(listener: tokio::net::TcpListener, state: HttpState) -> tokio::task::JoinHandle<()> {
    use axum::routing::get;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "http listening");
    }
    let (serving, plugins, metrics) = (state.serving.clone(), state.clone(), state);
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            // Ready means serving: a standby (leader election) answers 503 like a stopping host.
            get(move || {
                let serving = serving.load(Ordering::SeqCst);
                async move {
                    use axum::http::StatusCode;
                    if serving == Serving::Active as u8 {
                        (StatusCode::OK, "ready")
                    } else if serving == Serving::Standby as u8 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "standby: another replica leads",
                        )
                    } else if serving == Serving::Joining as u8 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "sharding: not a working member of the ring",
                        )
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "stopping")
                    }
                }
            }),
        )
        .route(
            "/plugins",
            get(move || async move { axum::Json(plugins.registry.view()) }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
                    metrics.scrape(),
                )
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    })
}
