//! The reconcile loop (seeds 003 and 004): informers feed a queue; each key goes through fetch,
//! health, plan, apply (server-side apply with owner references, pruning) and status (conditions,
//! phases, terminal failures, events), with finalizers, owner waits and hot plugin swaps.
//!
//! # Event filters
//!
//! A plugin's manifest may declare an event filter ([`crate::informer::Selection`]): only objects
//! in its namespaces whose labels match its selector are queued and reconciled. An update that
//! moves an object into the selection queues it; one that moves it out queues it once, and the
//! reconcile finds it outside the selection and forgets it (its queue state and what the
//! controller kept about it), as a label-selected watch would report it deleted. Updates of a
//! selected object queue it when the generation predicate ([`crate::informer::predicate`]) finds
//! more than a status change, whatever the filter's `changes` (a reconciler's own status writes
//! would otherwise requeue it). An object being deleted that carries the plugin's finalizer is
//! reconciled (cleaned up) whatever the filter, so that a filter never blocks a deletion.

mod access;
mod action;
mod applied;
mod apply;
mod cache;
mod conditions;
mod events;
mod finalizer;
mod phase;
mod pipeline;
mod plan;
mod queue;
mod scope;
mod status;
mod world;

pub use access::allowed;
pub use action::{Action, AttemptError, error_policy, settle};
pub use apply::{controlled_by, split_status};
pub use conditions::{ComputedCondition, ComputedStatus, OverallState, Verdict, compute, render};
pub use events::{CONTROLLER as EVENT_CONTROLLER, level as event_level};
pub use finalizer::{CLEANUP_CONDITION, name as finalizer_name};
pub use phase::{Failure, Phase, PhaseRecord, Timed, failure_of, time_phase};
pub use pipeline::OWNER_CONDITION;
pub use plan::{Refusal, Step};
pub use queue::{KeyRate, WorkQueue};
pub use scope::{ALL_NAMESPACES, Scope, ScopeGrant};
pub use status::{Draft, Evaluation, terminal};
pub use world::World;

// What `capstan render` runs of a reconcile (crate::render): the same code as a controller's.
pub(crate) use apply::{errors_health, prunable, set_owner};
pub(crate) use cache::InformerCache;
pub(crate) use finalizer::has as has_finalizer;
pub(crate) use phase::rfc3339;
pub(crate) use pipeline::{owner_condition, refused_health, requeue_after};
pub(crate) use plan::Checker;
pub(crate) use scope::ScopedCache;
pub(crate) use status::{Basis, changes, merged, patch as status_patch};

use crate::contract::{ErrorCategory, Gvk, Manifest};
use crate::dispatch::RetryPolicy;
use crate::informer::{
    ChangeKind, InformerError, InformerHandle, Informers, Seen, owner_refs, predicate,
};
use crate::plugin::Plugin;
use kube::api::DynamicObject;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Errors starting a controller.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The plugin is not a reconciler.
    #[error("plugin {0} does not export a reconciler")]
    NotAReconciler(String),
    /// An informer for one of the plugin's kinds could not start.
    #[error("plugin {plugin}: cannot watch {gvk}")]
    Informer {
        /// Plugin.
        plugin: String,
        /// Kind.
        gvk: Gvk,
        /// Cause.
        #[source]
        source: InformerError,
    },
}

/// Why a running controller cannot take a new plugin: stop it and start a new controller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "plugin {plugin} cannot be swapped in place: {reason}; stop this controller and start a new one"
)]
pub struct SwapError {
    /// The plugin's name.
    pub plugin: String,
    /// What differs.
    pub reason: String,
}

/// The clients a controller talks through: the host's own, and the one acting for the plugin.
///
/// Everything the host does *on the plugin's behalf* goes through `plugin`: applying and deleting
/// children, pruning, status and finalizer writes on the reconciled object, pod-log reads. With
/// impersonation (see [`crate::identity::Impersonation`]) that client carries the plugin's
/// ServiceAccount, so the API server enforces the plugin's grant a second time. The host's own
/// work (events about the object) goes through `host`. A bare [`kube::Client`] converts into
/// both roles (no impersonation).
#[derive(Clone)]
pub struct Clients {
    /// The host's own identity.
    pub host: kube::Client,
    /// The identity requests on the plugin's behalf carry.
    pub plugin: kube::Client,
}

impl From<kube::Client> for Clients {
    fn from(client: kube::Client) -> Self {
        Self {
            host: client.clone(),
            plugin: client,
        }
    }
}

/// The identity of a reconciled object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// Kind.
    pub gvk: Gvk,
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// Controller configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Reconciles running at once. Default 4.
    pub concurrency: usize,
    /// Every object is reconciled again this often. Default 5 minutes.
    pub resync: Duration,
    /// Infrastructure errors show as Progressing for this long before they count. Default 10 s.
    pub grace: Duration,
    /// Backoff of failed reconciles.
    pub retry: RetryPolicy,
    /// Delete children the plugin applied before but no longer plans (objects of owned kinds
    /// whose controller owner reference is the reconciled object). Default true.
    pub prune: bool,
    /// Phase timeouts by phase name (`Creating`, ...), over the manifest's. Default none.
    pub phase_timeouts: HashMap<String, Duration>,
    /// Namespaces and cluster-scoped kinds granted beyond the reconciled object's namespace.
    /// Default none.
    pub scope: ScopeGrant,
    /// Count reconciles and their duration here.
    pub metrics: Option<crate::metrics::Metrics>,
    /// With sharding: reconcile only the objects this gate grants (by uid; an object not in the
    /// cache is only forgotten), and requeue every object when the grant widens. Default none.
    pub gate: Option<crate::shard::Gate>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            resync: Duration::from_secs(300),
            grace: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            prune: true,
            phase_timeouts: HashMap::new(),
            scope: ScopeGrant::default(),
            metrics: None,
            gate: None,
        }
    }
}

/// The status this controller last wrote for an object.
struct Written {
    /// The object's uid.
    uid: String,
    /// The object's resourceVersion when it was read for that reconcile.
    seen: Option<String>,
    /// The status after the write.
    status: Value,
}

struct Shared {
    plugin: RwLock<Plugin>,
    /// The client acting for the plugin ([`Clients::plugin`]).
    client: kube::Client,
    handles: HashMap<Gvk, InformerHandle>,
    cache: Arc<InformerCache>,
    queue: WorkQueue<ObjectKey>,
    config: ControllerConfig,
    field_manager: String,
    events: events::Events,
    first_infra_error: Mutex<HashMap<ObjectKey, Instant>>,
    /// Fresher than the informer cache right after a write, so transitions are judged against
    /// what was written; used while the cache still holds the version that was read.
    written: Mutex<HashMap<ObjectKey, Written>>,
    /// Objects that failed terminally, by uid and generation (the stored status says so too,
    /// except in manual mode).
    failed: Mutex<HashMap<ObjectKey, (String, Option<i64>)>>,
    /// Sharding: keys the gate refused (their changes came while another replica held them),
    /// by shard hash and when, for [`PARKED_FOR`]: reconciled first if the grant widens to them
    /// (the changes made while their owner died or moved).
    parked: Mutex<HashMap<ObjectKey, (u64, Instant)>>,
    /// The last apply of each child, to skip one that cannot change it.
    applied: applied::Applied,
}

/// How long a key the shard gate refused is remembered (see `Shared::parked`): longer than a
/// lease duration plus the rounds of a hand-over.
const PARKED_FOR: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The current plugin; a reconcile keeps the one it started with.
    fn plugin(&self) -> Plugin {
        self.plugin
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The object `namespace/name` of kind `gvk` in its informer's cache, if that kind is watched
    /// and the object cached.
    fn cached(&self, gvk: &Gvk, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        self.handles.get(gvk)?.get(namespace, name)
    }

    /// The stored status of `obj`: what this controller wrote, while the cache has not caught up.
    fn stored_status(&self, key: &ObjectKey, obj: &DynamicObject) -> Value {
        let uid = obj.metadata.uid.as_deref().unwrap_or_default();
        lock(&self.written)
            .get(key)
            .filter(|w| w.uid == uid && w.seen == obj.metadata.resource_version)
            .map(|w| w.status.clone())
            .unwrap_or_else(|| obj.data.get("status").cloned().unwrap_or(Value::Null))
    }

    /// The object is gone: forget what this controller kept about it (its queue state goes with
    /// [`Action::Forget`]).
    fn forget_object(&self, key: &ObjectKey) {
        lock(&self.written).remove(key);
        lock(&self.failed).remove(key);
        lock(&self.first_infra_error).remove(key);
        self.applied.forget_owner(key);
    }

    fn failed(&self, key: &ObjectKey, uid: &str, generation: Option<i64>) -> bool {
        lock(&self.failed)
            .get(key)
            .is_some_and(|(u, g)| u == uid && *g == generation)
    }

    fn remember_failure(&self, key: &ObjectKey, uid: &str, generation: Option<i64>, failed: bool) {
        let mut f = lock(&self.failed);
        if failed {
            f.insert(key.clone(), (uid.to_owned(), generation));
        } else {
            f.remove(key);
        }
    }

    /// Whether the infrastructure errors in `health` are still within the grace period.
    fn in_grace(&self, key: &ObjectKey, health: &[crate::contract::ComponentHealth]) -> bool {
        let infra = health
            .iter()
            .flat_map(|h| &h.errors)
            .any(|e| e.category == ErrorCategory::Infrastructure);
        let mut first = lock(&self.first_infra_error);
        if infra {
            first
                .entry(key.clone())
                .or_insert_with(Instant::now)
                .elapsed()
                < self.config.grace
        } else {
            first.remove(key);
            false
        }
    }

    /// Whether this controller handles `obj` for `plugin`: the plugin's event filter selects it,
    /// or it is being deleted and carries the plugin's finalizer (cleanup must run).
    fn in_scope(&self, plugin: &Plugin, obj: &DynamicObject) -> bool {
        plugin.selection().selects(obj)
            || (obj.metadata.deletion_timestamp.is_some()
                && finalizer::has(obj, &finalizer_name(plugin.name())))
    }

    /// Queue every watched object the plugin selects (level-triggered: resync), or with
    /// `everything` every watched object (swaps: an object the new version no longer selects is
    /// then forgotten by its reconcile).
    fn requeue_all(&self, watches: &[Gvk], everything: bool) {
        let plugin = self.plugin();
        for gvk in watches {
            if let Some(h) = self.handles.get(gvk)
                && let Ok(objects) = h.list(None, None)
            {
                objects
                    .iter()
                    .filter(|o| everything || self.in_scope(&plugin, o))
                    .filter_map(|o| key_of(gvk, o))
                    .for_each(|k| self.queue.add(k));
            }
        }
    }

    /// The shard hash and uid of the cached object `key`, if the cache holds it.
    fn shard_of(&self, key: &ObjectKey) -> Option<(u64, String)> {
        let obj = self
            .handles
            .get(&key.gvk)?
            .get(key.namespace.as_deref(), &key.name)?;
        let uid = obj.metadata.uid.clone()?;
        Some((crate::shard::key_hash(&uid), uid))
    }

    /// The grant widened by `gained`: queue what it adds, those whose spec is ahead of their
    /// status first (`metadata.generation` above `status.observedGeneration`: changed since their
    /// last reconcile, by whoever held them), then the keys the gate refused lately, most
    /// recent first (changes it saw while another replica held them), then the rest.
    fn requeue_gained(&self, watches: &[Gvk], gained: &crate::shard::Ranges) {
        if gained.is_empty() {
            return;
        }
        let plugin = self.plugin();
        let (mut stale, mut rest) = (Vec::new(), Vec::new());
        for gvk in watches {
            let Some(h) = self.handles.get(gvk) else {
                continue;
            };
            for o in h.list(None, None).unwrap_or_default() {
                let mine = o
                    .metadata
                    .uid
                    .as_deref()
                    .is_some_and(|u| gained.contains(crate::shard::key_hash(u)));
                if !mine || !self.in_scope(&plugin, &o) {
                    continue;
                }
                let Some(key) = key_of(gvk, &o) else {
                    continue;
                };
                let observed = o.data["status"]["observedGeneration"].as_i64();
                if o.metadata.generation.is_some() && observed < o.metadata.generation {
                    stale.push(key);
                } else {
                    rest.push(key);
                }
            }
        }
        let parked: Vec<ObjectKey> = {
            let mut parked = lock(&self.parked);
            let mut keys: Vec<(Instant, ObjectKey)> = parked
                .iter()
                .filter(|(_, (h, _))| gained.contains(*h))
                .map(|(k, (_, at))| (*at, k.clone()))
                .collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.0));
            parked.retain(|_, (h, at)| !gained.contains(*h) && at.elapsed() < PARKED_FOR);
            keys.into_iter().map(|(_, k)| k).collect()
        };
        tracing::info!(
            plugin = plugin.name(),
            stale = stale.len(),
            parked = parked.len(),
            share = gained.share(),
            "sharding: objects gained; reconciling those changed meanwhile first"
        );
        // A key queued already stays where it is: the order holds.
        for key in stale.into_iter().chain(parked).chain(rest) {
            self.queue.add(key);
        }
    }

    /// Objects of the watched kinds the gate grants now.
    fn owned(&self, watches: &[Gvk]) -> usize {
        let Some(gate) = &self.config.gate else {
            return 0;
        };
        let grant = gate.grant();
        watches
            .iter()
            .filter_map(|gvk| self.handles.get(gvk))
            .flat_map(|h| h.list(None, None).unwrap_or_default())
            .filter(|o| {
                o.metadata
                    .uid
                    .as_deref()
                    .is_some_and(|u| grant.contains(crate::shard::key_hash(u)))
            })
            .count()
    }

    /// Whether `change` of a watched object calls for a reconcile (see the module documentation).
    fn calls_for_reconcile(&self, change: &crate::informer::Change) -> bool {
        let plugin = self.plugin();
        match &change.kind {
            ChangeKind::Added | ChangeKind::Deleted => self.in_scope(&plugin, &change.object),
            ChangeKind::Updated { old } => match Seen::of(
                self.in_scope(&plugin, old),
                self.in_scope(&plugin, &change.object),
            ) {
                Seen::Nothing => false,
                // In: reconcile it; out: its reconcile finds it outside and forgets it.
                Seen::Added | Seen::Deleted => true,
                // An update the generation predicate finds unchanged is, nearly always, this
                // controller's own status write coming back.
                Seen::Updated => predicate::changed(old, &change.object),
            },
        }
    }
}

/// A running controller for one reconciler plugin; stops when dropped or on [`Controller::stop`].
pub struct Controller {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The first `watch_tasks` tasks pump changes and resyncs; the rest are workers.
    watch_tasks: usize,
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.shared.queue.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How often one object may be reconciled for `plugin`: after a burst, once per its
/// `min_requeue_after`, whatever queues it.
fn key_rate(plugin: &Plugin) -> KeyRate {
    KeyRate {
        every: plugin.limits().min_requeue_after,
        ..KeyRate::default()
    }
}

fn key_of(gvk: &Gvk, obj: &DynamicObject) -> Option<ObjectKey> {
    Some(ObjectKey {
        gvk: gvk.clone(),
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone()?,
    })
}

/// Every kind a manifest needs an informer for: watched, owned, and named in access rules.
pub(crate) fn kinds_of(m: &Manifest) -> Vec<Gvk> {
    let mut kinds: Vec<Gvk> = m.watches.iter().chain(&m.owns).cloned().collect();
    kinds.extend(m.access.iter().map(|a| a.gvk.clone()));
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Why a controller running `current` cannot run `new` in place, if it cannot: the name, the
/// watched, owned and accessed kinds, the finalizer and the owner kind waited for must match.
pub fn swap_incompatibility(current: &Manifest, new: &Manifest) -> Option<String> {
    let set = |v: &[Gvk]| v.iter().cloned().collect::<BTreeSet<_>>();
    let access = |m: &Manifest| {
        m.access
            .iter()
            .map(|a| a.gvk.clone())
            .collect::<BTreeSet<_>>()
    };
    if current.name != new.name {
        Some(format!("the name changes to {}", new.name))
    } else if set(&current.watches) != set(&new.watches) {
        Some("the watched kinds change".into())
    } else if set(&current.owns) != set(&new.owns) {
        Some("the owned kinds change".into())
    } else if access(current) != access(new) {
        Some("the kinds of the access rules change".into())
    } else if current.finalizer != new.finalizer {
        Some("the finalizer changes".into())
    } else if current.wait_for_owner != new.wait_for_owner {
        Some("the owner kind waited for changes".into())
    } else {
        None
    }
}

impl Controller {
    /// Start informers for every kind the plugin watches, owns or reads, and the reconcile workers;
    /// requests on the plugin's behalf go through `clients.plugin` (see [`Clients`]).
    pub async fn start(
        plugin: Plugin,
        informers: &Informers,
        clients: impl Into<Clients>,
        config: ControllerConfig,
    ) -> Result<Self, ReconcileError> {
        let Clients {
            host,
            plugin: client,
        } = clients.into();
        if !plugin.info().world.reconciles() {
            return Err(ReconcileError::NotAReconciler(plugin.name().to_owned()));
        }
        let m = plugin.manifest().clone();
        let mut handles = HashMap::new();
        for gvk in kinds_of(&m) {
            // Sharding: a kind reconciled here, and nothing else, is cached for this replica's
            // shard only (its uid decides); owned and read kinds are cached whole.
            let primary = m.watches.contains(&gvk)
                && !m.owns.contains(&gvk)
                && !m.access.iter().any(|a| a.gvk == gvk);
            let acquired = if config.gate.is_some() && primary {
                informers.acquire_shard(&gvk).await
            } else {
                informers.acquire(&gvk).await
            };
            let handle = acquired.map_err(|source| ReconcileError::Informer {
                plugin: plugin.name().to_owned(),
                gvk: gvk.clone(),
                source,
            })?;
            handles.insert(gvk, handle);
        }
        let shared = Arc::new(Shared {
            field_manager: format!("capstan-{}", plugin.name()),
            events: events::Events::new(host, plugin.name()),
            cache: Arc::new(InformerCache {
                handles: handles.clone(),
            }),
            queue: WorkQueue::new(config.retry.clone()).with_key_rate(key_rate(&plugin)),
            plugin: RwLock::new(plugin),
            client,
            handles,
            config,
            first_infra_error: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            applied: applied::Applied::default(),
        });
        let mut tasks = Vec::new();
        // Changes of watched kinds queue the object; changes of owned kinds queue their owner.
        // The kinds are fixed for the controller's life (a swap keeps them).
        for (gvk, handle) in &shared.handles {
            let watched = m.watches.contains(gvk);
            let owned = m.owns.contains(gvk);
            if !watched && !owned {
                continue;
            }
            let (mut changes, s, gvk) = (handle.subscribe(), shared.clone(), gvk.clone());
            let watches = m.watches.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(change) = changes.recv().await {
                    if watched
                        && s.calls_for_reconcile(&change)
                        && let Some(key) = key_of(&gvk, &change.object)
                    {
                        s.queue.add(key);
                    }
                    if owned {
                        for (owner_gvk, namespace, name) in owner_refs(&change.object) {
                            if watches.contains(&owner_gvk) {
                                s.queue.add(ObjectKey {
                                    gvk: owner_gvk,
                                    namespace,
                                    name,
                                });
                            }
                        }
                    }
                }
            }));
        }
        // Periodic resync: level-triggered, every object again.
        {
            let (s, watches) = (shared.clone(), m.watches.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(s.config.resync);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    s.requeue_all(&watches, false);
                }
            }));
        }
        // The API server is back after an outage: what failed meanwhile is retried now, not
        // after a backoff that grew while it was away.
        {
            let (s, mut recovered) = (shared.clone(), informers.recoveries());
            tasks.push(tokio::spawn(async move {
                while recovered.changed().await.is_ok() {
                    let n = s.queue.retry_failed_now();
                    if n > 0 {
                        tracing::info!(
                            plugin = s.plugin().name(),
                            objects = n,
                            "API server back: retrying failed reconciles now"
                        );
                    }
                }
            }));
        }
        // Sharding: objects this replica may work on from now on are reconciled at once.
        if let Some(gate) = &shared.config.gate {
            let (s, watches, mut gained) = (shared.clone(), m.watches.clone(), gate.gained());
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                // What was granted before this task listened.
                s.requeue_gained(&watches, &gate.grant());
                loop {
                    let new = match gained.recv().await {
                        Ok(new) => new,
                        Err(RecvError::Lagged(_)) => gate.grant(),
                        Err(RecvError::Closed) => break,
                    };
                    s.requeue_gained(&watches, &new);
                }
            }));
        }
        let watch_tasks = tasks.len();
        for _ in 0..shared.config.concurrency.max(1) {
            let s = shared.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(key) = s.queue.next().await {
                    // Sharding: only what the gate grants; the work counts as in flight until
                    // its outcome is settled.
                    let work = match (&s.config.gate, s.shard_of(&key)) {
                        (Some(gate), Some((hash, uid))) => match gate.begin(hash, &uid) {
                            Some(work) => Some(work),
                            None => {
                                let mut parked = lock(&s.parked);
                                parked.retain(|_, (_, at)| at.elapsed() < PARKED_FOR);
                                parked.insert(key.clone(), (hash, Instant::now()));
                                drop(parked);
                                s.forget_object(&key);
                                s.queue.forget(&key);
                                s.queue.done(&key);
                                continue;
                            }
                        },
                        _ => None,
                    };
                    let started = Instant::now();
                    let outcome = pipeline::reconcile(&s, &key).await;
                    if let Err(e) = &outcome {
                        tracing::debug!(plugin = s.plugin().name(), error = %e, "reconcile failed: backing off");
                    }
                    let result = settle(&s.queue, &key, outcome);
                    if let Some(m) = &s.config.metrics {
                        m.reconcile(s.plugin().name(), result, started.elapsed());
                    }
                    drop(work);
                    s.queue.done(&key);
                }
            }));
        }
        Ok(Self {
            shared,
            tasks,
            watch_tasks,
        })
    }

    /// The plugin this controller runs now.
    pub fn plugin(&self) -> Plugin {
        self.shared.plugin()
    }

    /// Run `plugin` from now on (hot reload): reconciles in flight finish on the old plugin, later
    /// ones use the new one, and every watched object is queued again.
    ///
    /// # Errors
    /// [`SwapError`] when the new plugin is not a reconciler or its manifest differs in what the
    /// controller was started for (name, kinds, finalizer, owner kind): the caller should stop
    /// this controller and start a new one.
    pub fn swap(&self, plugin: Plugin) -> Result<(), SwapError> {
        let current = self.shared.plugin();
        let reason = if plugin.info().world.reconciles() {
            swap_incompatibility(current.manifest(), plugin.manifest())
        } else {
            Some("it does not export a reconciler".into())
        };
        if let Some(reason) = reason {
            return Err(SwapError {
                plugin: current.name().to_owned(),
                reason,
            });
        }
        let watches = plugin.manifest().watches.clone();
        self.shared.queue.set_key_rate(key_rate(&plugin));
        *self
            .shared
            .plugin
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plugin;
        tracing::info!(
            plugin = current.name(),
            "plugin swapped: every object is reconciled again"
        );
        self.shared.requeue_all(&watches, true);
        Ok(())
    }

    /// Keys waiting.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue.len()
    }

    /// A probe of [`queue_depth`](Self::queue_depth) that outlives borrows (for metrics).
    pub fn depth_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let queue = self.shared.queue.clone();
        move || queue.len()
    }

    /// A probe of how many objects of the watched kinds the shard gate grants now (0 without
    /// sharding), for metrics.
    pub fn owned_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let (shared, watches) = (
            self.shared.clone(),
            self.plugin().manifest().watches.clone(),
        );
        move || shared.owned(&watches)
    }

    /// Stop taking work; reconciles in flight finish.
    pub fn stop(&self) {
        self.shared.queue.close();
    }

    /// Stop taking work and wait (up to `grace`) for the reconciles in flight.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shared.queue.close();
        let tasks = std::mem::take(&mut self.tasks);
        let (workers, others): (Vec<_>, Vec<_>) = tasks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| *i >= self.watch_tasks);
        for (_, t) in others {
            t.abort();
        }
        let all = futures::future::join_all(workers.into_iter().map(|(_, t)| t));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                plugin = self.shared.plugin().name(),
                "reconciles still running after the grace period"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::AccessRule;
    use crate::contract::Verb;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("web", "1");
        m.watches = vec![Gvk::new("x.dev", "v1", "WebApp")];
        m.owns = vec![
            Gvk::new("apps", "v1", "Deployment"),
            Gvk::new("", "v1", "Service"),
        ];
        m.access = vec![AccessRule::new(
            Gvk::new("", "v1", "Secret"),
            vec![Verb::Get],
        )];
        m
    }

    #[tokio::test(start_paused = true)]
    async fn a_phase_deadline_requeues_the_key_when_it_is_due() {
        let since: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:20Z".parse().unwrap();
        let previous = PhaseRecord {
            phase: Phase::Creating,
            since,
        };
        let limits = HashMap::from([("Creating".to_owned(), Duration::from_secs(60))]);
        let timed = time_phase(Phase::Creating, Some(&previous), now, &limits);
        let left = timed.time_left.unwrap();
        assert_eq!(left, Duration::from_secs(41));
        let q: WorkQueue<&str> = WorkQueue::new(RetryPolicy::default());
        q.add_after("app", left);
        // An earlier requeue-after of a component wins; the deadline is asked again after it.
        q.add_after("app", Duration::from_secs(90));
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.next().await, Some("app"));
    }

    #[test]
    fn a_plugin_with_the_same_kinds_swaps_in_place() {
        let current = manifest();
        let mut new = manifest();
        new.version = "2".into();
        new.owns.reverse();
        new.access = vec![AccessRule::new(
            Gvk::new("", "v1", "Secret"),
            vec![Verb::Get, Verb::Delete],
        )];
        new.phase_timeouts = vec![crate::contract::PhaseTimeout {
            phase: "Creating".into(),
            seconds: 60,
        }];
        new.status_mode = crate::contract::StatusMode::Decorate;
        assert_eq!(swap_incompatibility(&current, &new), None);
    }

    #[test]
    fn other_kinds_finalizer_or_owner_need_a_new_controller() {
        let current = manifest();
        type Change = (&'static str, fn(&mut Manifest));
        let changes: [Change; 6] = [
            ("name", |m| m.name = "other".into()),
            ("watched", |m| m.watches.push(Gvk::new("", "v1", "Pod"))),
            ("owned", |m| {
                m.owns.pop();
            }),
            ("access", |m| m.access.clear()),
            ("finalizer", |m| m.finalizer = true),
            ("owner", |m| {
                m.wait_for_owner = Some(Gvk::new("x.dev", "v1", "Cluster"));
            }),
        ];
        for (what, change) in changes {
            let mut new = manifest();
            change(&mut new);
            let reason = swap_incompatibility(&current, &new);
            assert!(reason.is_some(), "{what}");
        }
        let e = SwapError {
            plugin: "web".into(),
            reason: "the owned kinds change".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugin web cannot be swapped in place: the owned kinds change; stop this controller and start a new one"
        );
    }
}
