//! Delivering object changes to handler plugins: fan-out as child events, retries, acknowledgement.
//!
//! A change of an object is a root event on the bus. For every loaded handler plugin that watches
//! the object's kind, the dispatcher derives a child event and queues it on one of the plugin's
//! workers, chosen by the object's key, so that the changes of one object reach a plugin in order
//! while different objects are handled in parallel. The child is acknowledged when the plugin is
//! done with it (plugins never acknowledge): the root is handled once every plugin is done, and
//! fails, once, on the first plugin that gives up on it.

mod retry;

pub use retry::RetryPolicy;

use crate::bus::Subscription;
use crate::contract::ObjectRef;
use crate::event::{Context, Event};
use crate::plugin::{CallError, HandlerEvent, HandlerOutcome, Plugin};
use crate::status::{EventProcessStatus, EventStatus};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

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
    /// Handler calls made (1 plus retries).
    pub attempts: u32,
    /// The last outcome, or why the plugin gave up.
    pub result: Result<HandlerOutcome, DispatchError>,
}

/// Called with every [`Delivery`]: for metrics, logs and tests.
pub type DeliveryHook = Arc<dyn Fn(&Delivery) + Send + Sync>;

/// Dispatcher configuration.
#[derive(Clone)]
pub struct DispatchConfig {
    workers_per_plugin: usize,
    queue: usize,
    retry: RetryPolicy,
    hook: Option<DeliveryHook>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            workers_per_plugin: 4,
            queue: 1024,
            retry: RetryPolicy::default(),
            hook: None,
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

    /// Events queued per worker before the dispatcher waits (and the bus starts dropping, counted).
    /// Default 1024.
    #[must_use]
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
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
}

struct Route {
    plugin: Plugin,
    workers: Vec<mpsc::Sender<ChangeEvent>>,
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

    /// Replace the set of plugins. Handler plugins get workers; events already queued for a
    /// replaced plugin are still handled by it.
    pub fn set_plugins(&self, plugins: &[Plugin]) {
        let routes: Vec<Arc<Route>> = plugins
            .iter()
            .filter(|p| p.info().world.handles())
            .map(|plugin| self.route(plugin))
            .collect();
        if let Ok(mut current) = self.inner.routes.write() {
            *current = Arc::from(routes);
        }
    }

    fn route(&self, plugin: &Plugin) -> Arc<Route> {
        let workers = (0..self.inner.config.workers_per_plugin)
            .map(|_| {
                let (tx, rx) = mpsc::channel(self.inner.config.queue);
                tokio::spawn(worker(plugin.clone(), rx, self.inner.clone()));
                tx
            })
            .collect();
        Arc::new(Route {
            plugin: plugin.clone(),
            workers,
        })
    }

    /// Add a handler plugin, or replace the one of the same name (hot reload): events dispatched
    /// from now on go to `plugin`; events already queued for the old version are still handled by
    /// it, so none is lost and none is delivered to both. Other plugins are untouched.
    pub fn upsert(&self, plugin: &Plugin) {
        if !plugin.info().world.handles() {
            return;
        }
        let route = self.route(plugin);
        if let Ok(mut current) = self.inner.routes.write() {
            let mut routes: Vec<Arc<Route>> = current
                .iter()
                .filter(|r| r.plugin.name() != plugin.name())
                .cloned()
                .collect();
            routes.push(route);
            *current = Arc::from(routes);
        }
    }

    /// Remove the handler plugin named `name`: it gets no new events and finishes those queued.
    pub fn remove(&self, name: &str) {
        if let Ok(mut current) = self.inner.routes.write() {
            let routes: Vec<Arc<Route>> = current
                .iter()
                .filter(|r| r.plugin.name() != name)
                .cloned()
                .collect();
            *current = Arc::from(routes);
        }
    }

    /// The handler plugins events go to now.
    pub fn plugins(&self) -> Vec<Plugin> {
        self.inner
            .routes
            .read()
            .map(|r| r.iter().map(|r| r.plugin.clone()).collect())
            .unwrap_or_default()
    }

    /// Fan a root event out to every handler plugin watching its kind, as child events; the
    /// root itself is acknowledged here, so the tree completes when every child does. Returns the
    /// number of plugins it went to.
    pub async fn dispatch(&self, root: ChangeEvent) -> usize {
        self.dispatch_filtered(root, None).await
    }

    /// Like [`Dispatcher::dispatch`], to the plugin named `only` alone: used to replay the cache
    /// to a plugin loaded after its kinds were already watched.
    pub async fn dispatch_to(&self, root: ChangeEvent, only: &str) -> usize {
        self.dispatch_filtered(root, Some(only)).await
    }

    async fn dispatch_filtered(&self, mut root: ChangeEvent, only: Option<&str>) -> usize {
        self.inner.stats.received.fetch_add(1, Ordering::Relaxed);
        let routes = self
            .inner
            .routes
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|_| Arc::from(Vec::new()));
        let object = root.payload().object.clone();
        let mut sent = 0;
        for route in routes.iter().filter(|r| {
            r.plugin.manifest().watches.contains(&object.gvk)
                && only.is_none_or(|name| r.plugin.name() == name)
        }) {
            let context = root.context().clone().with("plugin", route.plugin.name());
            let child = match root.with_context(context) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, object = %object, "cannot derive a child event");
                    continue;
                }
            };
            let worker = &route.workers[shard(&object, route.workers.len())];
            if let Err(mpsc::error::SendError(mut child)) = worker.send(child).await {
                child.fail(DispatchError::Unloaded {
                    plugin: route.plugin.name().to_owned(),
                    object: object.to_string(),
                });
            } else {
                sent += 1;
            }
        }
        root.ack();
        sent
    }

    /// Consume root events from a bus subscription until the bus goes away.
    pub fn run(&self, mut subscription: Subscription<ChangeEvent>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                this.dispatch(event).await;
            }
        })
    }
}

fn shard(object: &ObjectRef, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&object.gvk, &object.namespace, &object.name).hash(&mut h);
    (h.finish() % n as u64) as usize
}

async fn worker(plugin: Plugin, mut queue: mpsc::Receiver<ChangeEvent>, inner: Arc<Inner>) {
    while let Some(mut event) = queue.recv().await {
        let delivery = deliver(&plugin, event.payload(), &inner).await;
        match &delivery.result {
            Ok(_) => {
                inner.stats.completed.fetch_add(1, Ordering::Relaxed);
                event.ack();
            }
            Err(e) => {
                inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = plugin.name(), object = %delivery.object, error = %e, "event failed");
                event.fail(e.clone());
            }
        }
        if let Some(hook) = &inner.config.hook {
            hook(&delivery);
        }
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
        attempts: attempt,
        result,
    }
}
