//! Shared informers: one kube-rs watcher and one cache per kind, however many plugins use it.
//!
//! [`Informers::acquire`] resolves a [`Gvk`] through API discovery and starts a watcher for it
//! unless one runs already; the returned [`InformerHandle`]s are reference-counted and the watcher
//! stops when the last one is dropped. Reads ([`InformerHandle::get`], [`InformerHandle::list`])
//! are synchronous lookups in an `RwLock`ed map so they can be served from inside plugin calls.
//!
//! Changes are delivered to [`InformerHandle::subscribe`]rs over unbounded channels. This is
//! deliberate: the stream is level-triggered (no subscriber may miss that an object changed), each
//! queued [`Change`] is two `Arc`s and a [`Gvk`], and the expected consumer (the dispatch loop)
//! drains it into a deduplicating work queue. A subscriber that stops reading should drop its
//! receiver, which unsubscribes it at the next change.
//!
//! After every (re)list (the initial one, a 410 `Expired` resume, or recovery from an outage) the
//! fresh state replaces the cache and the *difference* is emitted: `Added` for new objects,
//! `Updated` for changed resourceVersions and `Deleted` for objects that vanished, so deletions
//! during a gap are never forgotten.

mod cache;
pub mod predicate;
mod recovery;
pub mod selection;
mod selector;
pub mod sharded;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{self, Scope, verbs};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use self::cache::Cache;
pub use self::cache::{Change, ChangeKind};
use self::recovery::Recovery;
pub use self::selection::{Seen, Selection, SelectionError};
pub use self::selector::LabelSelector;
use crate::contract::Gvk;
use crate::dispatch::RetryPolicy;

/// Errors of the informer module.
#[derive(Debug, thiserror::Error)]
pub enum InformerError {
    /// The API server does not serve the kind.
    #[error("kind {gvk} is not served by the api server")]
    UnknownKind {
        /// The kind asked for.
        gvk: Gvk,
    },
    /// The API server serves the kind but not its `list` and `watch` verbs.
    #[error("kind {gvk} does not support list and watch")]
    NotWatchable {
        /// The kind asked for.
        gvk: Gvk,
    },
    /// API discovery failed (the server could not be asked).
    #[error("discovering kind {gvk}")]
    Discovery {
        /// The kind asked for.
        gvk: Gvk,
        /// The cause.
        #[source]
        source: Box<kube::Error>,
    },
    /// A label selector could not be parsed.
    #[error("invalid label selector {selector:?}: {reason}")]
    InvalidSelector {
        /// The selector text.
        selector: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Configures [`Informers`].
#[derive(Clone)]
#[must_use]
pub struct InformersBuilder {
    client: kube::Client,
    shards: Option<tokio::sync::watch::Receiver<crate::shard::Ranges>>,
    keep_managed_fields: bool,
    watch_timeout: Option<Duration>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for InformersBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformersBuilder")
            .field("keep_managed_fields", &self.keep_managed_fields)
            .field("watch_timeout", &self.watch_timeout)
            .finish_non_exhaustive()
    }
}

impl InformersBuilder {
    /// Keep `metadata.managedFields` in cached objects (default: dropped, they are often a third
    /// of an object and controllers rarely read them).
    pub fn keep_managed_fields(mut self, keep: bool) -> Self {
        self.keep_managed_fields = keep;
        self
    }

    /// Server-side timeout of each watch request, after which the watcher resumes from the last
    /// seen resourceVersion (default: kube-rs's 290 s; rounded up to whole seconds).
    pub fn watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = Some(timeout);
        self
    }

    /// Backoff of a failing watch, reset by its next success (default: kube-runtime's, 0.8 s
    /// doubling to 30 s, jittered). An outage is cut short by the readiness probe whatever this
    /// is (the informers share one readiness probe that wakes failing watchers).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sharding: what [`Informers::acquire_shard`] watches, the uid hash ranges this replica
    /// owns, as they change (each change relists with the new KEP-5866 shard selector).
    pub fn shard_by(mut self, ranges: tokio::sync::watch::Receiver<crate::shard::Ranges>) -> Self {
        self.shards = Some(ranges);
        self
    }

    /// Builds the registry (no watcher starts until [`Informers::acquire`]).
    pub fn build(self) -> Informers {
        Informers {
            shared: Arc::new(Shared {
                recovery: Recovery::new(self.client.clone()),
                retry: self.retry,
                client: self.client,
                shards: self.shards,
                keep_managed_fields: self.keep_managed_fields,
                watch_timeout: self.watch_timeout,
                running: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }
}

/// The registry of running informers, keyed by [`Gvk`]. Cheap to clone (shared).
#[derive(Clone)]
pub struct Informers {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers")
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

struct Shared {
    client: kube::Client,
    shards: Option<tokio::sync::watch::Receiver<crate::shard::Ranges>>,
    /// Wakes failing watchers when the API server is ready again.
    recovery: Recovery,
    retry: RetryPolicy,
    keep_managed_fields: bool,
    watch_timeout: Option<Duration>,
    /// By kind, and whether the informer holds only this replica's shard.
    running: Mutex<HashMap<(Gvk, bool), Entry>>,
    next_id: AtomicU64,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, HashMap<(Gvk, bool), Entry>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Entry {
    id: u64,
    informer: Weak<Informer>,
}

/// One running informer; stops its watcher when dropped (when its last handle is dropped).
struct Informer {
    id: u64,
    gvk: Gvk,
    sharded: bool,
    resource: ApiResource,
    namespaced: bool,
    cache: Arc<Cache>,
    /// The watcher; `None` for a fixed informer ([`InformerHandle::fixed`]).
    task: Option<AbortHandle>,
    registry: Weak<Shared>,
}

impl Drop for Informer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(registry) = self.registry.upgrade() {
            let mut running = registry.running();
            // A later acquire may already have replaced the entry with a new informer.
            let key = (self.gvk.clone(), self.sharded);
            if running.get(&key).is_some_and(|e| e.id == self.id) {
                running.remove(&key);
            }
        }
        tracing::debug!(gvk = %self.gvk, "informer stopped");
    }
}

impl Informers {
    /// A registry with defaults (managed fields dropped, default watch timeout).
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self::builder(client).build()
    }

    /// A builder for a registry.
    pub fn builder(client: kube::Client) -> InformersBuilder {
        InformersBuilder {
            client,
            shards: None,
            keep_managed_fields: false,
            watch_timeout: None,
            retry: RetryPolicy {
                base: Duration::from_millis(800),
                max: Duration::from_secs(30),
                jitter: 0.5,
                ..RetryPolicy::default()
            },
        }
    }

    /// A receiver whose value changes each time the API server is seen ready again after an
    /// outage (watchers resume then; callers retry what failed meanwhile).
    pub fn recoveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.recovery.subscribe()
    }

    /// A handle on the informer of `gvk`, starting its watcher unless one runs already.
    ///
    /// The kind is resolved through API discovery (plural and scope) when a watcher starts.
    ///
    /// # Errors
    /// [`InformerError::UnknownKind`] when the server does not serve the kind,
    /// [`InformerError::NotWatchable`] when it cannot be listed and watched,
    /// [`InformerError::Discovery`] when discovery fails otherwise.
    pub async fn acquire(&self, gvk: &Gvk) -> Result<InformerHandle, InformerError> {
        self.acquire_as(gvk, false).await
    }

    /// As [`acquire`](Self::acquire), for an informer that holds only the objects whose uid
    /// hashes into this replica's shard ([`InformersBuilder::shard_by`]; every object without
    /// it), listed and watched with a KEP-5866 shard selector. Objects the ranges lose leave its
    /// cache as `Deleted`, objects they gain enter as `Added`. Use it only for kinds keyed by
    /// their own uid (a sharded controller's reconciled kind).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_shard(&self, gvk: &Gvk) -> Result<InformerHandle, InformerError> {
        self.acquire_as(gvk, self.shared.shards.is_some()).await
    }

    async fn acquire_as(&self, gvk: &Gvk, sharded: bool) -> Result<InformerHandle, InformerError> {
        let key = (gvk.clone(), sharded);
        if let Some(handle) = self.existing(&key) {
            return Ok(handle);
        }
        let (resource, namespaced) = self.discover(gvk).await?;
        let mut running = self.shared.running();
        // Another acquire may have started it during discovery.
        if let Some(informer) = running.get(&key).and_then(|e| e.informer.upgrade()) {
            return Ok(InformerHandle { informer });
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cache = Arc::new(Cache::new(gvk.clone(), self.shared.keep_managed_fields));
        let api: Api<DynamicObject> = Api::all_with(self.shared.client.clone(), &resource);
        let mut config = watcher::Config::default();
        if let Some(timeout) = self.shared.watch_timeout {
            let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
            config = config.timeout(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        }
        let recovery = self.shared.recovery.clone();
        let retry = self.shared.retry.clone();
        let task = match (&self.shared.shards, sharded) {
            (Some(ranges), true) => tokio::spawn(run_sharded(
                self.shared.client.clone(),
                resource.clone(),
                ranges.clone(),
                config,
                cache.clone(),
                gvk.clone(),
                (recovery, retry),
            )),
            _ => tokio::spawn(run(
                api,
                config,
                cache.clone(),
                gvk.clone(),
                recovery,
                retry,
            )),
        }
        .abort_handle();
        let informer = Arc::new(Informer {
            id,
            gvk: gvk.clone(),
            sharded,
            resource,
            namespaced,
            cache,
            task: Some(task),
            registry: Arc::downgrade(&self.shared),
        });
        running.insert(
            key,
            Entry {
                id,
                informer: Arc::downgrade(&informer),
            },
        );
        tracing::debug!(%gvk, "informer started");
        Ok(InformerHandle { informer })
    }

    fn existing(&self, key: &(Gvk, bool)) -> Option<InformerHandle> {
        let informer = self.shared.running().get(key)?.informer.upgrade()?;
        Some(InformerHandle { informer })
    }

    async fn discover(&self, gvk: &Gvk) -> Result<(ApiResource, bool), InformerError> {
        let query = GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
        let (resource, caps) = match discovery::pinned_kind(&self.shared.client, &query).await {
            Ok(found) => found,
            Err(kube::Error::Discovery(_)) => {
                return Err(InformerError::UnknownKind { gvk: gvk.clone() });
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(InformerError::UnknownKind { gvk: gvk.clone() });
            }
            Err(source) => {
                return Err(InformerError::Discovery {
                    gvk: gvk.clone(),
                    source: Box::new(source),
                });
            }
        };
        if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) {
            return Err(InformerError::NotWatchable { gvk: gvk.clone() });
        }
        Ok((resource, caps.scope == Scope::Namespaced))
    }

    /// The kinds with a running watcher, sorted.
    #[must_use]
    pub fn running(&self) -> Vec<Gvk> {
        let mut kinds: Vec<Gvk> = self
            .shared
            .running()
            .iter()
            // No upgrade here: dropping a temporary strong reference under the lock could run
            // `Informer::drop`, which takes the lock.
            .filter(|(_, e)| e.informer.strong_count() > 0)
            .map(|((gvk, _), _)| gvk.clone())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// Runs the watcher of one kind into its cache until aborted. A failure backs off by `retry`
/// (reset by the next success), cut short when `recovery` sees the server ready again after an
/// outage.
async fn run(
    api: Api<DynamicObject>,
    config: watcher::Config,
    cache: Arc<Cache>,
    gvk: Gvk,
    recovery: Recovery,
    retry: RetryPolicy,
) {
    let mut events = std::pin::pin!(watcher(api, config));
    let mut failures = 0u32;
    while let Some(event) = events.next().await {
        let error = match event {
            Ok(event) => {
                failures = 0;
                cache.apply(event);
                continue;
            }
            Err(error) => error,
        };
        // Subscribe before anything else can happen, so a recovery is not missed.
        let waiter = recovery.failed();
        if let watcher::Error::WatchError(status) = &error
            && status.code == 410
        {
            // The watcher relists on its next poll; an expired watch is not an outage.
            tracing::info!(%gvk, "watch expired (410), relisting");
            continue;
        }
        failures = failures.saturating_add(1);
        let delay = retry.backoff(failures);
        tracing::warn!(%gvk, %error, retry_in_ms = delay.as_millis() as u64, "watch failed, retrying with backoff");
        waiter.wait(delay).await;
    }
}

/// Runs the watcher of one kind for this replica's shard: with the KEP-5866 selector of the
/// current `ranges` (none while they are everything), starting over (a relist, whose difference
/// the cache emits) each time they change.
async fn run_sharded(
    client: kube::Client,
    resource: ApiResource,
    mut ranges: tokio::sync::watch::Receiver<crate::shard::Ranges>,
    config: watcher::Config,
    cache: Arc<Cache>,
    gvk: Gvk,
    (recovery, retry): (Recovery, RetryPolicy),
) {
    let mut warned = false;
    loop {
        let selector = ranges.borrow_and_update().selector();
        let api: Api<DynamicObject> = match &selector {
            Some(selector) => {
                let sharded = sharded::client(client.clone(), selector);
                let path = format!("{}/{}", resource_prefix(&resource), resource.plural);
                if !warned && !sharded::applied(&sharded, &path).await {
                    warned = true;
                    tracing::warn!(%gvk, "the API server does not apply KEP-5866 shard selectors: this replica caches every object of the kind (its shard gate still limits its work)");
                }
                Api::all_with(sharded, &resource)
            }
            None => Api::all_with(client.clone(), &resource),
        };
        tokio::select! {
            () = run(api, config.clone(), cache.clone(), gvk.clone(), recovery.clone(), retry.clone()) => return,
            changed = ranges.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::debug!(%gvk, "shard ranges changed: relisting");
            }
        }
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
fn resource_prefix(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    }
}

/// A reference-counted handle on the informer of one kind; the watcher stops when the last
/// handle (clone) is dropped.
#[derive(Clone)]
pub struct InformerHandle {
    informer: Arc<Informer>,
}

impl std::fmt::Debug for InformerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerHandle")
            .field("gvk", &self.informer.gvk)
            .field("synced", &self.is_synced())
            .field("len", &self.len())
            .finish()
    }
}

impl InformerHandle {
    /// An informer that watches nothing: its cache holds `objects` (those of kind `gvk`; managed
    /// fields kept), synced, and never changes. `capstan render` serves a plugin's cache reads
    /// and the plan checks from these, as a controller does from live informers.
    #[must_use]
    pub fn fixed(
        gvk: &Gvk,
        resource: ApiResource,
        namespaced: bool,
        objects: impl IntoIterator<Item = DynamicObject>,
    ) -> Self {
        let cache = Arc::new(Cache::new(gvk.clone(), true));
        cache.apply(watcher::Event::Init);
        for object in objects {
            cache.apply(watcher::Event::InitApply(object));
        }
        cache.apply(watcher::Event::InitDone);
        Self {
            informer: Arc::new(Informer {
                id: 0,
                gvk: gvk.clone(),
                resource,
                namespaced,
                cache,
                task: None,
                registry: Weak::new(),
                sharded: false,
            }),
        }
    }

    /// The kind.
    #[must_use]
    pub fn gvk(&self) -> &Gvk {
        &self.informer.gvk
    }

    /// The discovered resource (plural name, apiVersion).
    #[must_use]
    pub fn api_resource(&self) -> &ApiResource {
        &self.informer.resource
    }

    /// Whether the kind is namespaced (otherwise cluster-scoped).
    #[must_use]
    pub fn namespaced(&self) -> bool {
        self.informer.namespaced
    }

    fn scope<'a>(&self, namespace: Option<&'a str>) -> Option<&'a str> {
        namespace.filter(|_| self.informer.namespaced)
    }

    /// The cached object `name` in `namespace` (ignored for cluster-scoped kinds; `None` finds
    /// nothing for namespaced ones).
    #[must_use]
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        self.informer.cache.get(self.scope(namespace), name)
    }

    /// The cached objects in `namespace` (`None`: all; ignored for cluster-scoped kinds) whose
    /// labels match `label_selector` (Kubernetes syntax; `None`: all), sorted by namespace and
    /// name.
    ///
    /// # Errors
    /// [`InformerError::InvalidSelector`] when the selector does not parse.
    pub fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Arc<DynamicObject>>, InformerError> {
        let selector = match label_selector {
            Some(text) => LabelSelector::parse(text)?,
            None => LabelSelector::default(),
        };
        Ok(self.list_selected(namespace, &selector))
    }

    /// As [`list`](Self::list), with a parsed selector.
    #[must_use]
    pub fn list_selected(
        &self,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Vec<Arc<DynamicObject>> {
        self.informer.cache.list(self.scope(namespace), selector)
    }

    /// Number of cached objects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.informer.cache.len()
    }

    /// Whether the cache holds no object.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the initial list has completed.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.informer.cache.is_synced()
    }

    /// Waits until the initial list has completed (forever while the server cannot be listed;
    /// wrap it in a timeout).
    pub async fn synced(&self) {
        self.informer.cache.synced().await;
    }

    /// Number of completed lists: 1 after the initial sync, more after relists (410, outages).
    #[must_use]
    pub fn relists(&self) -> u64 {
        self.informer.cache.relists()
    }

    /// Subscribes to changes: the receiver first gets an `Added` for every object cached at the
    /// time of the call, then every later change, in order, without loss (unbounded). It ends
    /// when the informer stops; it does not keep the informer running.
    #[must_use]
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        self.informer.cache.subscribe()
    }
}

/// The owners of `obj` by `ownerReferences`, the controller owner first: `(kind, namespace,
/// name)`. The namespace is the object's own (owner references cannot cross namespaces); an owner
/// of a cluster-scoped kind ignores it (see [`InformerHandle::get`]).
#[must_use]
pub fn owner_refs(obj: &DynamicObject) -> Vec<(Gvk, Option<String>, String)> {
    let mut refs: Vec<_> = obj.metadata.owner_references.iter().flatten().collect();
    refs.sort_by_key(|r| r.controller != Some(true));
    refs.into_iter()
        .map(|r| {
            let (group, version) = r
                .api_version
                .rsplit_once('/')
                .unwrap_or(("", &r.api_version));
            (
                Gvk::new(group, version, &r.kind),
                obj.metadata.namespace.clone(),
                r.name.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_apiserver::{ApiServer, RunningServer};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
    use serde_json::json;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    fn cm_gvk() -> Gvk {
        Gvk::new("", "v1", "ConfigMap")
    }

    async fn start() -> (RunningServer, kube::Client) {
        let server = ApiServer::builder()
            .build()
            .unwrap()
            .start_loopback()
            .await
            .unwrap();
        let client = server.client().unwrap();
        (server, client)
    }

    /// A server on `addr` (port 0: any) keeping its state in `state`, with a fixed token and
    /// certificate authority, so a client outlives a restart.
    async fn start_at(
        addr: std::net::SocketAddr,
        state: &std::path::Path,
        authority: &capstan_apiserver::tls::Authority,
    ) -> RunningServer {
        ApiServer::builder()
            .state_dir(Some(state.to_owned()))
            .token("outage-test-token")
            .authority(authority.clone())
            .build()
            .unwrap()
            .start(addr)
            .await
            .unwrap()
    }

    /// However long a failing watch's backoff has grown, a change made once the server is back
    /// reaches the cache within 3 s (issue 11: kube-runtime's backoff, grown to up to 30 s
    /// during the outage, kept watchers away that long after it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchers_resume_within_seconds_of_the_server_coming_back() {
        let state = tempfile::tempdir().unwrap();
        let authority = capstan_apiserver::tls::Authority::generate().unwrap();
        let server = start_at("127.0.0.1:0".parse().unwrap(), state.path(), &authority).await;
        let addr = server.addr();
        let client = server.client().unwrap();
        // A backoff as long as an outage can grow kube-runtime's to.
        let informers = Informers::builder(client.clone())
            .retry(RetryPolicy {
                base: Duration::from_secs(20),
                max: Duration::from_secs(20),
                jitter: 0.0,
                ..RetryPolicy::default()
            })
            .build();
        let handle = informers.acquire(&cm_gvk()).await.unwrap();
        create_cm(&client, "default", "before", json!({})).await;
        let seen = async |name: &str| {
            for _ in 0..200 {
                if handle.get(Some("default"), name).is_some() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        };
        assert!(seen("before").await);

        server.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let server = start_at(addr, state.path(), &authority).await;
        let back = tokio::time::Instant::now();
        create_cm(&client, "default", "after", json!({})).await;
        let mut within = None;
        while back.elapsed() < Duration::from_secs(15) {
            if handle.get(Some("default"), "after").is_some() {
                within = Some(back.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let within = within.expect("the change made after the outage reaches the cache");
        assert!(
            within < Duration::from_secs(3),
            "the watch resumed {within:?} after the server came back"
        );
        drop(handle);
        server.shutdown().await.unwrap();
    }

    fn configmap(name: &str, labels: serde_json::Value, value: &str) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "data": {"k": value},
        }))
        .unwrap()
    }

    async fn create_cm(client: &kube::Client, ns: &str, name: &str, labels: serde_json::Value) {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &configmap(name, labels, "v1"))
            .await
            .unwrap();
    }

    async fn set_cm(client: &kube::Client, ns: &str, name: &str, value: &str) {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": value}})),
            )
            .await
            .unwrap();
    }

    async fn delete_cm(client: &kube::Client, ns: &str, name: &str) {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    fn name(object: &DynamicObject) -> &str {
        object.metadata.name.as_deref().unwrap()
    }

    fn data(object: &DynamicObject) -> &str {
        object.data["data"]["k"].as_str().unwrap()
    }

    /// The next change, or a panic after a few seconds.
    async fn next(rx: &mut mpsc::UnboundedReceiver<Change>) -> Change {
        timeout(WAIT, rx.recv())
            .await
            .expect("a change within the timeout")
            .expect("an open channel")
    }

    /// Compact `(verb, name)` form of the next `n` changes, sorted.
    async fn next_n(rx: &mut mpsc::UnboundedReceiver<Change>, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let c = next(rx).await;
            let verb = match c.kind {
                ChangeKind::Added => "added",
                ChangeKind::Updated { .. } => "updated",
                ChangeKind::Deleted => "deleted",
            };
            out.push((verb.to_owned(), name(&c.object).to_owned()));
        }
        out.sort();
        out
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    async fn eventually(mut check: impl FnMut() -> bool) {
        timeout(WAIT, async {
            while !check() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("condition within the timeout");
    }

    /// A sharded informer caches exactly the objects whose uid hashes into its ranges (the
    /// embedded server applies the KEP-5866 selector), and follows the ranges as they change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sharded_informer_caches_only_its_ranges_and_follows_them() {
        use crate::shard::{Ranges, key_hash};
        let (server, client) = start().await;
        for i in 0..120 {
            create_cm(&client, "default", &format!("cm-{i}"), json!({})).await;
        }
        let all: Vec<ConfigMap> = Api::<ConfigMap>::namespaced(client.clone(), "default")
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let half = Ranges::from_intervals(vec![(0, 1 << 63)]);
        let names_in = |r: &Ranges| -> Vec<String> {
            let mut v: Vec<String> = all
                .iter()
                .filter(|c| r.contains(key_hash(c.metadata.uid.as_deref().unwrap())))
                .map(|c| c.metadata.name.clone().unwrap())
                .collect();
            v.sort();
            v
        };
        let (ranges, rx) = tokio::sync::watch::channel(half.clone());
        let informers = Informers::builder(client.clone()).shard_by(rx).build();
        let sharded = informers.acquire_shard(&cm_gvk()).await.unwrap();
        let whole = informers.acquire(&cm_gvk()).await.unwrap();
        let cached = |h: &InformerHandle| -> Vec<String> {
            h.list(Some("default"), None)
                .unwrap()
                .iter()
                .map(|o| name(o).to_owned())
                .collect()
        };
        let expected = names_in(&half);
        assert!(
            expected.len() > 30 && expected.len() < 90,
            "{}",
            expected.len()
        );
        eventually(|| cached(&sharded) == expected).await;
        eventually(|| whole.len() == 120).await;
        let path = "/api/v1/configmaps";
        let selector = half.selector().unwrap();
        assert!(sharded::applied(&sharded::client(client.clone(), &selector), path).await);
        assert!(
            !sharded::applied(&client, path).await,
            "no selector, no shardInfo"
        );

        let other = half.complement();
        ranges.send(other.clone()).unwrap();
        eventually(|| cached(&sharded) == names_in(&other)).await;
        ranges.send(Ranges::all()).unwrap();
        eventually(|| sharded.len() == 120).await;
        drop((sharded, whole));
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn initial_list_then_watch() {
        let (server, client) = start().await;
        create_cm(&client, "default", "before", json!({})).await;
        let informers = Informers::new(client.clone());
        let handle = informers.acquire(&cm_gvk()).await.unwrap();
        assert!(handle.namespaced());
        assert_eq!(handle.api_resource().plural, "configmaps");
        let mut rx = handle.subscribe();
        timeout(WAIT, handle.synced()).await.unwrap();
        assert!(handle.is_synced());
        assert_eq!(handle.relists(), 1);
        create_cm(&client, "default", "after", json!({})).await;
        assert_eq!(
            next_n(&mut rx, 2).await,
            pairs(&[("added", "after"), ("added", "before")])
        );
        assert_eq!(handle.len(), 2);
        let before = handle.get(Some("default"), "before").unwrap();
        assert_eq!(before.types.as_ref().unwrap().api_version, "v1");
        assert_eq!(before.types.as_ref().unwrap().kind, "ConfigMap");

        set_cm(&client, "default", "after", "v2").await;
        let change = next(&mut rx).await;
        let ChangeKind::Updated { old } = &change.kind else {
            panic!("expected an update: {change:?}");
        };
        assert_eq!(change.gvk, cm_gvk());
        assert_eq!((data(old), data(&change.object)), ("v1", "v2"));
        assert_eq!(data(&handle.get(Some("default"), "after").unwrap()), "v2");

        delete_cm(&client, "default", "after").await;
        let change = next(&mut rx).await;
        assert!(matches!(change.kind, ChangeKind::Deleted), "{change:?}");
        assert_eq!(name(&change.object), "after");
        assert!(handle.get(Some("default"), "after").is_none());
        assert_eq!(handle.len(), 1);
        assert!(rx.try_recv().is_err(), "no further changes");
        drop(handle);
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn acquires_share_one_watcher_until_the_last_handle_drops() {
        let (server, client) = start().await;
        let informers = Informers::new(client);
        let gvk = cm_gvk();
        let (a, b) = tokio::join!(informers.acquire(&gvk), informers.acquire(&gvk));
        let (a, b) = (a.unwrap(), b.unwrap());
        let c = informers.clone().acquire(&cm_gvk()).await.unwrap();
        assert!(Arc::ptr_eq(&a.informer, &b.informer));
        assert!(Arc::ptr_eq(&a.informer, &c.informer));
        assert_eq!(informers.running(), vec![cm_gvk()]);
        let task = a.informer.task.clone().unwrap();
        let first_id = a.informer.id;
        let mut rx = a.subscribe();
        drop((a, b));
        assert_eq!(informers.running(), vec![cm_gvk()]);
        assert!(!task.is_finished());
        drop(c);
        assert!(informers.running().is_empty());
        eventually(|| task.is_finished()).await;
        assert!(
            timeout(WAIT, rx.recv()).await.unwrap().is_none(),
            "subscriptions end with the informer"
        );
        let again = informers.acquire(&cm_gvk()).await.unwrap();
        assert_ne!(again.informer.id, first_id, "a new watcher");
        assert_eq!(informers.running(), vec![cm_gvk()]);
        drop(again);
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn custom_resources() {
        let (server, client) = start().await;
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "metadata": {"name": "widgets.examples.capstan.dev"},
            "spec": {
                "group": "examples.capstan.dev",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }))
        .unwrap();
        Api::<CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .unwrap();
        let gvk = Gvk::new("examples.capstan.dev", "v1", "Widget");
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind),
            "widgets",
        );
        let widgets: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "default", &resource);
        let widget = |name: &str| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "examples.capstan.dev/v1", "kind": "Widget",
                "metadata": {"name": name}, "spec": {"size": 3},
            }))
            .unwrap()
        };
        widgets
            .create(&PostParams::default(), &widget("w1"))
            .await
            .unwrap();

        let informers = Informers::new(client);
        let handle = informers.acquire(&gvk).await.unwrap();
        assert_eq!(handle.api_resource().plural, "widgets");
        assert!(handle.namespaced());
        let mut rx = handle.subscribe();
        timeout(WAIT, handle.synced()).await.unwrap();
        widgets
            .create(&PostParams::default(), &widget("w2"))
            .await
            .unwrap();
        assert_eq!(
            next_n(&mut rx, 2).await,
            pairs(&[("added", "w1"), ("added", "w2")])
        );
        let w1 = handle.get(Some("default"), "w1").unwrap();
        assert_eq!(w1.data["spec"]["size"], 3);
        assert_eq!(informers.running(), vec![gvk]);
        drop(handle);
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_kinds_are_clear_errors() {
        let (server, client) = start().await;
        let informers = Informers::new(client);
        for gvk in [
            Gvk::new("", "v1", "Gizmo"),
            Gvk::new("nowhere.example.com", "v1", "Gizmo"),
            Gvk::new("apps", "v9", "Deployment"),
        ] {
            let err = informers.acquire(&gvk).await.unwrap_err();
            assert!(matches!(err, InformerError::UnknownKind { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("kind {gvk} is not served by the api server")
            );
        }
        assert!(informers.running().is_empty());
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn selectors_namespaces_and_get() {
        let (server, client) = start().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in ["ns1", "ns2"] {
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .unwrap();
        }
        create_cm(
            &client,
            "ns1",
            "web",
            json!({"app": "web", "tier": "front"}),
        )
        .await;
        create_cm(&client, "ns1", "db", json!({"app": "db", "tier": "back"})).await;
        create_cm(&client, "ns2", "web", json!({"app": "web", "skip": "yes"})).await;
        create_cm(&client, "ns2", "bare", json!({})).await;
        let informers = Informers::new(client);
        let handle = informers.acquire(&cm_gvk()).await.unwrap();
        timeout(WAIT, handle.synced()).await.unwrap();

        let names = |ns: Option<&str>, selector: Option<&str>| -> Vec<String> {
            handle
                .list(ns, selector)
                .unwrap()
                .iter()
                .map(|o| format!("{}/{}", o.metadata.namespace.as_deref().unwrap(), name(o)))
                .collect()
        };
        assert_eq!(
            names(None, None),
            ["ns1/db", "ns1/web", "ns2/bare", "ns2/web"]
        );
        assert_eq!(names(Some("ns1"), None), ["ns1/db", "ns1/web"]);
        assert_eq!(names(Some("nope"), None), Vec::<String>::new());
        assert_eq!(names(None, Some("app=web")), ["ns1/web", "ns2/web"]);
        assert_eq!(names(None, Some("app!=web")), ["ns1/db", "ns2/bare"]);
        assert_eq!(
            names(None, Some("app in (web,db),!skip")),
            ["ns1/db", "ns1/web"]
        );
        assert_eq!(names(Some("ns2"), Some("app")), ["ns2/web"]);
        assert_eq!(
            names(None, Some("tier notin (front)")),
            ["ns1/db", "ns2/bare", "ns2/web"]
        );
        let err = handle.list(None, Some("app in (web")).unwrap_err();
        assert!(
            matches!(err, InformerError::InvalidSelector { .. }),
            "{err}"
        );

        assert!(handle.get(Some("ns2"), "web").is_some());
        assert!(handle.get(Some("ns2"), "db").is_none());
        assert!(
            handle.get(None, "web").is_none(),
            "namespaced kinds need a namespace"
        );
        assert_eq!(handle.len(), 4);

        // Cluster-scoped kinds ignore the namespace.
        let ns = informers
            .acquire(&Gvk::new("", "v1", "Namespace"))
            .await
            .unwrap();
        assert!(!ns.namespaced());
        timeout(WAIT, ns.synced()).await.unwrap();
        assert!(ns.get(None, "ns1").is_some());
        assert!(ns.get(Some("ignored"), "ns1").is_some());
        assert_eq!(ns.list(Some("ignored"), None).unwrap().len(), ns.len());
        let mut running = informers.running();
        running.sort();
        assert_eq!(running, vec![cm_gvk(), Gvk::new("", "v1", "Namespace")]);
        drop((handle, ns));
        server.shutdown().await.unwrap();
    }

    /// A resume from a compacted resourceVersion gets 410: the watcher relists, the relist of an
    /// unchanged state emits nothing, and watching goes on.
    #[tokio::test]
    async fn relist_after_410_expired() {
        let server = ApiServer::builder()
            .watch_history(2)
            .bookmark_interval(Duration::from_secs(3600))
            .build()
            .unwrap()
            .start_loopback()
            .await
            .unwrap();
        let client = server.client().unwrap();
        let informers = Informers::builder(client.clone())
            .watch_timeout(Duration::from_secs(1))
            .build();
        let handle = informers.acquire(&cm_gvk()).await.unwrap();
        let mut rx = handle.subscribe();
        timeout(WAIT, handle.synced()).await.unwrap();
        create_cm(&client, "default", "a", json!({})).await;
        create_cm(&client, "default", "b", json!({})).await;
        assert_eq!(
            next_n(&mut rx, 2).await,
            pairs(&[("added", "a"), ("added", "b")])
        );
        // Writes to another kind push the configmaps' last version out of the history.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        for i in 0..5 {
            let s: Secret =
                serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).unwrap();
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        // The watch times out after 1 s; its resume is expired; the watcher relists.
        eventually(|| handle.relists() >= 2).await;
        assert!(rx.try_recv().is_err(), "an unchanged relist emits nothing");
        set_cm(&client, "default", "a", "v2").await;
        assert_eq!(next_n(&mut rx, 1).await, pairs(&[("updated", "a")]));
        assert_eq!(handle.len(), 2);
        drop(handle);
        server.shutdown().await.unwrap();
    }

    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The server goes away, the state changes meanwhile (a deletion included) and the server
    /// comes back with an empty watch history: the resume gets 410 and the relist diff reports
    /// every change.
    #[tokio::test]
    async fn outage_changes_are_reported_as_a_diff() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = TempDir(
            std::env::temp_dir().join(format!("capstan-informer-{}-{nanos}", std::process::id())),
        );
        std::fs::create_dir_all(&dir.0).unwrap();
        // One token and one certificate authority for every server on this state, so the
        // informer's client keeps its trust and its credentials across the restart.
        let authority = capstan_apiserver::tls::Authority::generate().unwrap();
        let persistent = || {
            ApiServer::builder()
                .state_dir(Some(dir.0.clone()))
                .token("informer-outage-test")
                .authority(authority.clone())
                .build()
                .unwrap()
        };

        let first = persistent().start_loopback().await.unwrap();
        let addr = first.addr();
        let client = first.client().unwrap();
        for n in ["a", "b", "c"] {
            create_cm(&client, "default", n, json!({})).await;
        }
        let informers = Informers::new(client);
        let handle = informers.acquire(&cm_gvk()).await.unwrap();
        let mut rx = handle.subscribe();
        timeout(WAIT, handle.synced()).await.unwrap();
        assert_eq!(next_n(&mut rx, 3).await.len(), 3);
        first.shutdown().await.unwrap();

        // Changes the informer cannot see, through another server on the same state.
        let editor = persistent().start_loopback().await.unwrap();
        let other = editor.client().unwrap();
        delete_cm(&other, "default", "a").await;
        set_cm(&other, "default", "b", "v2").await;
        create_cm(&other, "default", "d", json!({})).await;
        editor.shutdown().await.unwrap();

        let second = persistent().start(addr).await.unwrap();
        let changes = timeout(Duration::from_secs(10), next_n(&mut rx, 3))
            .await
            .expect("changes after the outage");
        assert_eq!(
            changes,
            pairs(&[("added", "d"), ("deleted", "a"), ("updated", "b")])
        );
        assert!(handle.relists() >= 2);
        let mut names: Vec<_> = handle
            .list(None, None)
            .unwrap()
            .iter()
            .map(|o| name(o).to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["b", "c", "d"]);
        assert_eq!(data(&handle.get(Some("default"), "b").unwrap()), "v2");
        drop(handle);
        second.shutdown().await.unwrap();
    }

    #[test]
    fn owner_refs_put_the_controller_first() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "rs-1", "namespace": "prod", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "uid": "1"},
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "2", "controller": true},
            ]},
        }))
        .unwrap();
        assert_eq!(
            owner_refs(&obj),
            vec![
                (
                    Gvk::new("apps", "v1", "Deployment"),
                    Some("prod".to_owned()),
                    "web".to_owned()
                ),
                (
                    Gvk::new("", "v1", "ConfigMap"),
                    Some("prod".to_owned()),
                    "cfg".to_owned()
                ),
            ]
        );
        let bare: DynamicObject =
            serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert!(owner_refs(&bare).is_empty());
    }

    #[test]
    fn errors_have_sources() {
        use std::error::Error as _;
        let err = InformerError::Discovery {
            gvk: cm_gvk(),
            source: Box::new(kube::Error::LinesCodecMaxLineLengthExceeded),
        };
        assert_eq!(err.to_string(), "discovering kind v1/ConfigMap");
        assert!(err.source().is_some());
    }
}
