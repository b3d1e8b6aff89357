//! Delivering object changes to handler plugins: fan-out as child events, one independent lane
//! per plugin, resyncs from the informer caches, retries, acknowledgement.
//!
//! A change of an object is a root event on the bus. For every loaded handler plugin that watches
//! the object's kind, the dispatcher derives a child event and offers it to the plugin's lane
//! (`lane.rs`) without waiting: a slow, retrying or quarantined plugin never delays another
//! plugin, nor the bus. The plugin's workers take changes from its lane; the changes of one object
//! reach the plugin in order (one worker at a time per object), different objects are handled in
//! parallel. A lane holds at most one waiting change per object (two across a deletion and a
//! recreation): a plugin that falls behind gets the newest state of each object, not every
//! intermediate one, and its backlog is bounded by the number of objects it watches.
//!
//! # Lossless at the level of state
//!
//! Whatever a plugin misses (the bus dropped events for the dispatcher's subscription, or the
//! plugin is loaded after its kinds were watched), a resync repairs from the informer caches
//! ([`DispatchConfig::source`]): every object whose newest state the plugin's lane has not
//! accepted is queued as `updated` (`added` if the lane never had it), and every object it had
//! that the cache no longer holds is queued as `deleted` with the last state it had. The dispatcher
//! resyncs every plugin when its bus subscription reports drops ([`Dispatcher::run`]); the runner
//! resyncs a plugin when it is loaded or swapped ([`Dispatcher::resync`]).
//!
//! # Event filters
//!
//! A plugin's manifest may declare an event filter (namespaces, a label selector, spec changes
//! only). Its route runs it (`filter.rs`, with [`crate::event::filter::apply`]) on each child
//! event before the lane sees it, with the semantics of a label-selected Kubernetes watch: a
//! change outside the selection is dropped and its child acknowledged, an update that moves an
//! object into the selection is `added`, out of it `deleted` with the state it had while it
//! matched; with `changes: spec` a status-only update is dropped. A resync brings the lane to the
//! selected part of the cache: an object outside the selection is never queued, and one the
//! plugin has that left the selection is queued as `deleted`.
//!
//! # Acknowledgement
//!
//! The child is acknowledged when the plugin is done with it (plugins never acknowledge): the root
//! is handled once every plugin is done, and fails, once, on the first plugin that gives up on it.
//! A child whose change is merged into a newer change of the same object is acknowledged at once:
//! the newer change carries its state.
//!
//! # Hot swap
//!
//! A plugin's lane belongs to its name, not to a version. When a version replaces another, the old
//! version finishes the changes it is handling and takes no other; every change still waiting,
//! and every later one, goes to the new version. Per object the order holds across the swap: the
//! new version does not start an object's next change before the old one finished the previous.
//! A removed plugin takes no new change and finishes what waits in its lane.

mod filter;
mod lane;
mod retry;

pub use filter::FilterError;
pub use retry::RetryPolicy;

use crate::bus::{BusError, Subscription};
use crate::contract::{Gvk, ObjectRef};
use crate::event::{Context, Event};
use crate::plugin::{CallError, HandlerEvent, HandlerOutcome, Plugin};
use crate::status::{EventProcessStatus, EventStatus};
use filter::RouteFilter;
use lane::{Item, Lane, Take};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A change of one object, as the bus carries it.
#[derive(Debug, Clone)]
pub struct ObjectChange {
    /// Which object.
    pub object: ObjectRef,
    /// What happened, with the object as JSON.
    pub change: Change,
}

/// What happened to an object.
#[derive(Debug, Clone)]
pub enum Change {
    /// It appeared.
    Added(Arc<str>),
    /// It changed.
    Updated {
        /// The new object.
        new: Arc<str>,
        /// The previous object.
        old: Arc<str>,
    },
    /// It went away; the last known object.
    Deleted(Arc<str>),
}

impl Change {
    fn to_handler_event(&self) -> HandlerEvent {
        match self {
            Self::Added(o) => HandlerEvent::Added(o.to_string()),
            Self::Updated { new, old } => HandlerEvent::Updated {
                new: new.to_string(),
                old: old.to_string(),
            },
            Self::Deleted(o) => HandlerEvent::Deleted(o.to_string()),
        }
    }
}

/// The root events the dispatcher consumes.
pub type ChangeEvent = Event<ObjectChange, Context>;

/// Why a plugin gave up on an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    /// The plugin asked for retries and reached its bound; its `on-status` got `MaxRetryReached`.
    #[error("plugin {plugin}: {object} still asked for a retry after {retries} retries")]
    MaxRetryReached {
        /// Plugin name.
        plugin: String,
        /// Object.
        object: String,
        /// Retries made.
        retries: u32,
    },
    /// Every attempt failed in the host or the sandbox (trap, timeout, ...); the last error.
    #[error("plugin call failed after {attempts} attempts")]
    Call {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: CallError,
    },
    /// The plugin was unloaded before it could handle the event.
    #[error("plugin {plugin} was unloaded before handling {object}")]
    Unloaded {
        /// Plugin name.
        plugin: String,
        /// Object.
        object: String,
    },
}

/// The final word of one plugin on one event.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The plugin.
    pub plugin: String,
    /// The plugin's version that handled the event.
    pub version: String,
    /// The object.
    pub object: ObjectRef,
    /// The change handed to the plugin (the newest state it had when a worker took it).
    pub change: Change,
    /// Handler calls made (1 plus retries).
    pub attempts: u32,
    /// The last outcome, or why the plugin gave up.
    pub result: Result<HandlerOutcome, DispatchError>,
}

/// Called with every [`Delivery`]: for metrics, logs and tests.
pub type DeliveryHook = Arc<dyn Fn(&Delivery) + Send + Sync>;

/// The informer cache of a kind, for resyncs: every cached object's reference and JSON, or `None`
/// when the kind is not cached.
pub type ResyncSource = Arc<dyn Fn(&Gvk) -> Option<Vec<(ObjectRef, Arc<str>)>> + Send + Sync>;

/// Dispatcher configuration.
#[derive(Clone)]
pub struct DispatchConfig {
    workers_per_plugin: usize,
    retry: RetryPolicy,
    hook: Option<DeliveryHook>,
    source: Option<ResyncSource>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            workers_per_plugin: 4,
            retry: RetryPolicy::default(),
            hook: None,
            source: None,
        }
    }
}

impl DispatchConfig {
    /// Events of different objects a plugin handles at once. Default 4.
    #[must_use]
    pub fn workers_per_plugin(mut self, n: usize) -> Self {
        self.workers_per_plugin = n.max(1);
        self
    }

    /// Backoff and bounds of retries.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Observe every delivery.
    #[must_use]
    pub fn on_delivery(mut self, hook: impl Fn(&Delivery) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Where resyncs read the current state of a kind (the informer caches). Without a source,
    /// [`Dispatcher::resync`] does nothing and bus drops are only counted.
    #[must_use]
    pub fn source(
        mut self,
        source: impl Fn(&Gvk) -> Option<Vec<(ObjectRef, Arc<str>)>> + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
}

/// Counters of the dispatcher.
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Root events received.
    pub received: AtomicU64,
    /// Child events delivered to plugins and finished.
    pub completed: AtomicU64,
    /// Child events a plugin gave up on.
    pub failed: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Changes merged into a waiting change of the same object for the same plugin.
    pub coalesced: AtomicU64,
    /// Resyncs of one plugin's kind from the informer cache.
    pub resyncs: AtomicU64,
    /// Changes queued by resyncs (the state a plugin had missed).
    pub resynced: AtomicU64,
    /// Root events the bus dropped for the dispatcher's subscription (each ended in a resync).
    pub bus_dropped: AtomicU64,
    /// Child events a plugin's event filter dropped (acknowledged at once).
    pub filtered: AtomicU64,
}

struct Route {
    plugin: Plugin,
    /// The plugin's event filter; `None` when it takes every change.
    filter: Option<RouteFilter>,
    lane: Arc<Lane>,
    /// Set when a newer version takes over the lane: this version's workers stop.
    retired: Arc<AtomicBool>,
}

struct Inner {
    routes: RwLock<Arc<[Arc<Route>]>>,
    config: DispatchConfig,
    stats: DispatchStats,
}

/// Routes object changes to handler plugins. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    /// A dispatcher with no plugins.
    pub fn new(config: DispatchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                routes: RwLock::new(Arc::from(Vec::new())),
                config,
                stats: DispatchStats::default(),
            }),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &DispatchStats {
        &self.inner.stats
    }

    fn routes(&self) -> Arc<[Arc<Route>]> {
        self.inner
            .routes
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }

    /// Replace the set of plugins, as [`Dispatcher::upsert`] of each and [`Dispatcher::remove`]
    /// of those not in `plugins`.
    pub fn set_plugins(&self, plugins: &[Plugin]) {
        let keep: Vec<&str> = plugins.iter().map(Plugin::name).collect();
        for route in self.routes().iter() {
            if !keep.contains(&route.plugin.name()) {
                self.remove(route.plugin.name());
            }
        }
        for plugin in plugins {
            self.upsert(plugin);
        }
    }

    fn spawn_workers(&self, route: &Arc<Route>) {
        for _ in 0..self.inner.config.workers_per_plugin {
            tokio::spawn(worker(route.clone(), self.inner.clone()));
        }
    }

    /// Add a handler plugin, or replace the one of the same name (hot reload): the old version
    /// finishes the changes it is handling; every change waiting in the plugin's lane, and every
    /// later one, goes to `plugin`, in order per object. Nothing is lost, nothing is delivered to
    /// both. Other plugins are untouched.
    pub fn upsert(&self, plugin: &Plugin) {
        if !plugin.info().world.handles() {
            return;
        }
        let Ok(mut current) = self.inner.routes.write() else {
            return;
        };
        let old = current.iter().find(|r| r.plugin.name() == plugin.name());
        let lane = old.map_or_else(|| Arc::new(Lane::default()), |r| r.lane.clone());
        let route = Arc::new(Route {
            plugin: plugin.clone(),
            filter: RouteFilter::of(plugin.selection()),
            lane,
            retired: Arc::new(AtomicBool::new(false)),
        });
        if let Some(old) = old {
            old.retired.store(true, Ordering::SeqCst);
            old.lane.notify.notify_waiters();
        }
        let routes: Vec<Arc<Route>> = current
            .iter()
            .filter(|r| r.plugin.name() != plugin.name())
            .cloned()
            .chain(Some(route.clone()))
            .collect();
        *current = Arc::from(routes);
        drop(current);
        self.spawn_workers(&route);
    }

    /// Remove the handler plugin named `name`: it gets no new events and finishes those waiting.
    pub fn remove(&self, name: &str) {
        if let Ok(mut current) = self.inner.routes.write() {
            let mut routes = Vec::with_capacity(current.len());
            for r in current.iter() {
                if r.plugin.name() == name {
                    r.lane.close();
                } else {
                    routes.push(r.clone());
                }
            }
            *current = Arc::from(routes);
        }
    }

    /// The handler plugins events go to now.
    pub fn plugins(&self) -> Vec<Plugin> {
        self.routes().iter().map(|r| r.plugin.clone()).collect()
    }

    /// Changes waiting in the lane of the plugin named `name` (not counting those being handled).
    pub fn waiting(&self, name: &str) -> usize {
        self.routes()
            .iter()
            .find(|r| r.plugin.name() == name)
            .map_or(0, |r| r.lane.waiting())
    }

    /// Fan a root event out to every handler plugin watching its kind, as child events offered to
    /// each plugin's lane (never waiting for a plugin) once the plugin's event filter passed
    /// them; the root itself is acknowledged here, so the tree completes when every child does.
    /// Returns the number of plugins it went to (not counting those whose filter dropped it).
    pub fn dispatch(&self, mut root: ChangeEvent) -> usize {
        self.inner.stats.received.fetch_add(1, Ordering::Relaxed);
        let routes = self.routes();
        let object = &root.payload().object;
        let mut sent = 0;
        let mut replaced = Vec::new();
        for route in routes
            .iter()
            .filter(|r| r.plugin.manifest().watches.contains(&object.gvk))
        {
            let context = root.context().clone().with("plugin", route.plugin.name());
            let child = match root.with_context(context) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, object = %object, "cannot derive a child event");
                    continue;
                }
            };
            let child = match &route.filter {
                None => child,
                Some(f) => match crate::event::filter::apply(f, child) {
                    Ok(Some(child)) => child,
                    Ok(None) => {
                        self.inner.stats.filtered.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        // The child failed with the error, and the root with it.
                        tracing::error!(plugin = route.plugin.name(), object = %object, error = %e, "cannot filter a change");
                        continue;
                    }
                },
            };
            let item = Item {
                change: child.payload().clone(),
                event: Some(child),
            };
            let offered = route.lane.offer(item, &mut replaced);
            self.inner
                .stats
                .coalesced
                .fetch_add(offered.coalesced, Ordering::Relaxed);
            sent += 1;
        }
        root.ack();
        ack_all(replaced);
        sent
    }

    /// Resync the plugin named `only` (every plugin if `None`) from the [`DispatchConfig::source`]:
    /// for each kind it watches, queue what it has not seen of the cached state it selects (see
    /// the module documentation). Returns the number of changes queued.
    pub fn resync(&self, only: Option<&str>) -> u64 {
        let Some(source) = &self.inner.config.source else {
            return 0;
        };
        let mut queued = 0;
        let mut replaced = Vec::new();
        for route in self
            .routes()
            .iter()
            .filter(|r| only.is_none_or(|name| r.plugin.name() == name))
        {
            for gvk in &route.plugin.manifest().watches {
                let Some(mut objects) = source(gvk) else {
                    continue;
                };
                let offered = match &route.filter {
                    None => route
                        .lane
                        .resync(gvk, objects, &|_, _, _| true, &mut replaced),
                    Some(f) => {
                        // An object the filter cannot read is kept: a resync never loses state.
                        objects.retain(|(object, json)| f.selects(object, json).unwrap_or(true));
                        let passes = |object: &ObjectRef, old: &str, new: &str| {
                            f.passes_update(object, old, new).unwrap_or(true)
                        };
                        route.lane.resync(gvk, objects, &passes, &mut replaced)
                    }
                };
                let stats = &self.inner.stats;
                stats.resyncs.fetch_add(1, Ordering::Relaxed);
                stats.resynced.fetch_add(offered.queued, Ordering::Relaxed);
                stats
                    .coalesced
                    .fetch_add(offered.coalesced, Ordering::Relaxed);
                queued += offered.queued;
            }
        }
        ack_all(replaced);
        if queued > 0 {
            tracing::info!(
                plugin = only.unwrap_or("*"),
                queued,
                "resynced from the informer caches"
            );
        }
        queued
    }

    /// Consume root events from a bus subscription until the bus goes away. When the bus reports
    /// that it dropped events for this subscription (checked whenever the buffer is empty, and
    /// after as many events as it holds), the dispatcher catches up: see
    /// [`Dispatcher::catch_up`]. A drop ends in a resync, never in a lost state.
    pub fn run(&self, mut subscription: Subscription<ChangeEvent>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut seen = 0u64;
            let mut since = 0usize;
            loop {
                let event = match subscription.try_recv() {
                    Ok(event) => Some(event),
                    Err(BusError::Empty) => {
                        this.catch_up(&mut subscription, &mut seen);
                        since = 0;
                        subscription.recv().await
                    }
                    Err(_) => None,
                };
                let Some(event) = event else {
                    this.catch_up(&mut subscription, &mut seen);
                    break;
                };
                this.dispatch(event);
                since += 1;
                if since >= subscription.capacity() {
                    this.catch_up(&mut subscription, &mut seen);
                    since = 0;
                }
            }
        })
    }

    /// After drops: skip what the subscription still buffers, then resync every plugin.
    ///
    /// An informer updates its cache before it publishes a change, so every buffered event is
    /// at most as new as the cache the resync reads once the buffer is empty: the resync carries
    /// those states (the skipped events are acknowledged, as a change merged into a newer one is).
    /// Dispatching them after the resync instead would hand a plugin an older state than the one
    /// the resync queued, and with the newer event dropped nothing would bring it back.
    fn catch_up(&self, subscription: &mut Subscription<ChangeEvent>, seen: &mut u64) {
        if subscription.dropped() <= *seen {
            return;
        }
        let mut skipped = 0u64;
        while let Ok(mut event) = subscription.try_recv() {
            event.ack();
            skipped += 1;
        }
        let dropped = subscription.dropped();
        self.inner
            .stats
            .bus_dropped
            .fetch_add(dropped - *seen, Ordering::Relaxed);
        tracing::warn!(
            dropped = dropped - *seen,
            skipped,
            "the bus dropped events for the dispatcher: resyncing every plugin"
        );
        *seen = dropped;
        self.resync(None);
    }
}

/// Acknowledge child events whose state a newer change carries (outside any lock: an
/// acknowledgement may run the root's callbacks).
fn ack_all(events: Vec<ChangeEvent>) {
    for mut e in events {
        e.ack();
    }
}

async fn worker(route: Arc<Route>, inner: Arc<Inner>) {
    let (plugin, lane) = (&route.plugin, &route.lane);
    loop {
        let notified = lane.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if route.retired.load(Ordering::SeqCst) {
            return;
        }
        let (key, item) = match lane.take() {
            Take::Item(key, item) => (key, item),
            Take::Empty => {
                notified.await;
                continue;
            }
            Take::Closed => return,
        };
        let Item { change, event } = item;
        if !plugin.manifest().watches.contains(&change.object.gvk) {
            // Queued for an older version that watched this kind; this one does not.
            lane.done(key);
            ack_all(event.into_iter().collect());
            continue;
        }
        let delivery = deliver(plugin, &change, &inner).await;
        // The hook sees a delivery before its event is acknowledged: whoever waits on the
        // acknowledgement (of the root event it is part of) then finds the delivery recorded.
        if let Some(hook) = &inner.config.hook {
            hook(&delivery);
        }
        match &delivery.result {
            Ok(_) => {
                inner.stats.completed.fetch_add(1, Ordering::Relaxed);
                if let Some(mut e) = event {
                    e.ack();
                }
            }
            Err(e) => {
                inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = plugin.name(), object = %delivery.object, error = %e, "event failed");
                if let Some(mut event) = event {
                    event.fail(e.clone());
                }
            }
        }
        // Only now may the object's next change start: per object, deliveries (and what the
        // hook sees of them) keep their order.
        lane.done(key);
    }
}

/// Handle one change, retrying as the plugin asks (`with-retry`, bounded by `with-max-retry`) or
/// as the policy allows after failed calls.
async fn deliver(plugin: &Plugin, change: &ObjectChange, inner: &Inner) -> Delivery {
    let policy = &inner.config.retry;
    let object = &change.object;
    let mut attempt: u32 = 0;
    let result = loop {
        attempt += 1;
        let outcome = plugin
            .handle(object, change.change.to_handler_event())
            .await;
        let retries = attempt - 1;
        match outcome {
            Ok(out) => {
                let asked = out
                    .statuses
                    .iter()
                    .rev()
                    .find(|(s, _)| s.retry)
                    .map(|(s, _)| s.clone());
                let wants_retry = asked.is_some() || out.status == EventStatus::Retry;
                if !wants_retry {
                    break Ok(out);
                }
                let bound = asked
                    .as_ref()
                    .map(|s| s.max_retry)
                    .filter(|m| *m > 0)
                    .unwrap_or(policy.default_max_retry);
                if retries >= bound {
                    let last = asked.unwrap_or_default();
                    let give_up = EventProcessStatus {
                        status: EventStatus::MaxRetryReached,
                        retry: false,
                        max_retry: bound,
                        ..last
                    };
                    if let Err(e) = plugin.on_status(object, &give_up).await {
                        tracing::warn!(error = %e, "on-status with MaxRetryReached failed");
                    }
                    break Err(DispatchError::MaxRetryReached {
                        plugin: plugin.name().to_owned(),
                        object: object.to_string(),
                        retries,
                    });
                }
            }
            Err(CallError::Quarantined { retry_in_ms, .. }) => {
                // The plugin is out of service for a while: the event waits for it, and the
                // wait is not an attempt.
                attempt -= 1;
                tokio::time::sleep(Duration::from_millis(retry_in_ms.max(10))).await;
                continue;
            }
            Err(e) => {
                if retries >= policy.default_max_retry {
                    break Err(DispatchError::Call {
                        attempts: attempt,
                        source: e,
                    });
                }
                tracing::debug!(error = %e, attempt, "retrying after a failed call");
            }
        }
        inner.stats.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(policy.backoff(attempt)).await;
    };
    Delivery {
        plugin: plugin.name().to_owned(),
        version: plugin.info().version.clone(),
        object: object.clone(),
        change: change.change.clone(),
        attempts: attempt,
        result,
    }
}
