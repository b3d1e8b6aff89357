//! The reconcile loop (seed 003): informers feed a queue; each key goes through fetch, plan,
//! apply (server-side apply with owner references) and status from component health.

mod conditions;
mod queue;

pub use conditions::{ComputedCondition, ComputedStatus, OverallState, Verdict, compute, render};
pub use queue::WorkQueue;

use crate::contract::{
    CategorizedError, ComponentHealth, ErrorCategory, Gvk, HealthState, ObjectRef, PlanEntry,
};
use crate::dispatch::RetryPolicy;
use crate::informer::{InformerError, InformerHandle, Informers, owner_refs};
use crate::plugin::{CacheReader, CallError, Grants, Plugin};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            resync: Duration::from_secs(300),
            grace: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// Cache reads for the fetch phase, served from the informers of the plugin's kinds.
struct InformerCache {
    handles: HashMap<Gvk, InformerHandle>,
}

impl InformerCache {
    fn handle(&self, gvk: &Gvk) -> Result<&InformerHandle, CategorizedError> {
        self.handles.get(gvk).ok_or_else(|| CategorizedError {
            category: ErrorCategory::Infrastructure,
            message: format!("no informer for {gvk}"),
        })
    }
}

impl CacheReader for InformerCache {
    fn get(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, CategorizedError> {
        Ok(self
            .handle(gvk)?
            .get(namespace, name)
            .and_then(|o| serde_json::to_string(&*o).ok()))
    }

    fn list(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<String>, CategorizedError> {
        let objects = self
            .handle(gvk)?
            .list(namespace, label_selector)
            .map_err(|e| CategorizedError {
                category: ErrorCategory::InvalidSpec,
                message: e.to_string(),
            })?;
        Ok(objects
            .iter()
            .filter_map(|o| serde_json::to_string(&**o).ok())
            .collect())
    }
}

struct Shared {
    plugin: Plugin,
    client: kube::Client,
    handles: HashMap<Gvk, InformerHandle>,
    cache: Arc<InformerCache>,
    queue: WorkQueue<ObjectKey>,
    config: ControllerConfig,
    field_manager: String,
    first_infra_error: Mutex<HashMap<ObjectKey, Instant>>,
    /// The status this controller last wrote per object, with the object's uid: fresher than the
    /// informer cache right after a write, so transitions are judged against what was written.
    written: Mutex<HashMap<ObjectKey, (String, Value)>>,
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

fn key_of(gvk: &Gvk, obj: &DynamicObject) -> Option<ObjectKey> {
    Some(ObjectKey {
        gvk: gvk.clone(),
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone()?,
    })
}

impl Controller {
    /// Start informers for every kind the plugin watches, owns or reads, and the reconcile workers.
    pub async fn start(
        plugin: Plugin,
        informers: &Informers,
        client: kube::Client,
        config: ControllerConfig,
    ) -> Result<Self, ReconcileError> {
        if !plugin.info().world.reconciles() {
            return Err(ReconcileError::NotAReconciler(plugin.name().to_owned()));
        }
        let m = plugin.manifest().clone();
        let mut kinds: Vec<Gvk> = m.watches.iter().chain(&m.owns).cloned().collect();
        kinds.extend(m.access.iter().map(|(g, _)| g.clone()));
        kinds.sort();
        kinds.dedup();
        let mut handles = HashMap::new();
        for gvk in kinds {
            let handle =
                informers
                    .acquire(&gvk)
                    .await
                    .map_err(|source| ReconcileError::Informer {
                        plugin: plugin.name().to_owned(),
                        gvk: gvk.clone(),
                        source,
                    })?;
            handles.insert(gvk, handle);
        }
        let shared = Arc::new(Shared {
            field_manager: format!("capstan-{}", plugin.name()),
            cache: Arc::new(InformerCache {
                handles: handles.clone(),
            }),
            queue: WorkQueue::new(config.retry.clone()),
            plugin,
            client,
            handles,
            config,
            first_infra_error: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        });
        let mut tasks = Vec::new();
        // Changes of watched kinds queue the object; changes of owned kinds queue their owner.
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
                    if watched && let Some(key) = key_of(&gvk, &change.object) {
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
            let s = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(s.config.resync);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    for gvk in &s.plugin.manifest().watches {
                        if let Some(h) = s.handles.get(gvk)
                            && let Ok(objects) = h.list(None, None)
                        {
                            objects
                                .iter()
                                .filter_map(|o| key_of(gvk, o))
                                .for_each(|k| s.queue.add(k));
                        }
                    }
                }
            }));
        }
        let watch_tasks = tasks.len();
        for _ in 0..shared.config.concurrency.max(1) {
            let s = shared.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(key) = s.queue.next().await {
                    reconcile(&s, &key).await;
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

    /// The plugin this controller runs.
    pub fn plugin(&self) -> &Plugin {
        &self.shared.plugin
    }

    /// Keys waiting.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue.len()
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
                plugin = self.shared.plugin.name(),
                "reconciles still running after the grace period"
            );
        }
    }
}

fn category_of(e: &kube::Error) -> ErrorCategory {
    match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ErrorCategory::Auth,
        kube::Error::Api(s) if s.code == 400 || s.code == 422 || s.code == 404 => {
            ErrorCategory::InvalidSpec
        }
        _ => ErrorCategory::Infrastructure,
    }
}

fn error_health(component: &str, error: CategorizedError) -> ComponentHealth {
    ComponentHealth {
        component: component.to_owned(),
        state: if error.category == ErrorCategory::MissingDownstreamDependency {
            HealthState::Progressing
        } else {
            HealthState::Failed
        },
        reason: format!("{:?}", error.category),
        message: error.message.clone(),
        errors: vec![error],
        requeue_after: None,
    }
}

async fn resource_for(s: &Shared, gvk: &Gvk) -> Result<ApiResource, CategorizedError> {
    if let Some(h) = s.handles.get(gvk) {
        return Ok(h.api_resource().clone());
    }
    let gvk_k = kube::api::GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
    kube::discovery::pinned_kind(&s.client, &gvk_k)
        .await
        .map(|(ar, _)| ar)
        .map_err(|e| CategorizedError {
            category: category_of(&e),
            message: format!("cannot resolve {gvk}: {e}"),
        })
}

fn api(s: &Shared, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(s.client.clone(), ns, ar),
        None => Api::all_with(s.client.clone(), ar),
    }
}

/// Apply or delete one plan entry.
async fn apply_entry(
    s: &Shared,
    owner: &DynamicObject,
    owner_ref: &ObjectRef,
    entry: PlanEntry,
) -> Result<(), CategorizedError> {
    let (mut obj, with_owner) = match entry {
        PlanEntry::Apply(v) => (v, true),
        PlanEntry::ApplyWithoutOwnerRef(v) => (v, false),
        PlanEntry::Delete(r) => {
            let ar = resource_for(s, &r.gvk).await?;
            return match api(s, &ar, r.namespace.as_deref())
                .delete(&r.name, &DeleteParams::background())
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(CategorizedError {
                    category: category_of(&e),
                    message: format!("cannot delete {r}: {e}"),
                }),
            };
        }
    };
    let target = ObjectRef::from_json(&obj).ok_or_else(|| CategorizedError {
        category: ErrorCategory::InvalidSpec,
        message: "planned object lacks apiVersion, kind or metadata.name".into(),
    })?;
    let ar = resource_for(s, &target.gvk).await?;
    let namespace = target
        .namespace
        .clone()
        .or_else(|| owner_ref.namespace.clone());
    if let (Some(ns), true) = (&namespace, target.namespace.is_none()) {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if with_owner {
        obj["metadata"]["ownerReferences"] = json!([{
            "apiVersion": owner_ref.gvk.api_version(),
            "kind": owner_ref.gvk.kind,
            "name": owner_ref.name,
            "uid": owner.metadata.uid.clone().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
    }
    let params = PatchParams::apply(&s.field_manager).force();
    api(s, &ar, namespace.as_deref())
        .patch(&target.name, &params, &Patch::Apply(&obj))
        .await
        .map(|_| ())
        .map_err(|e| CategorizedError {
            category: category_of(&e),
            message: format!("cannot apply {target}: {e}"),
        })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// One reconcile of one key: fetch, plan, apply, health, status.
async fn reconcile(s: &Shared, key: &ObjectKey) {
    let plugin = &s.plugin;
    let Some(obj) = s
        .handles
        .get(&key.gvk)
        .and_then(|h| h.get(key.namespace.as_deref(), &key.name))
    else {
        s.queue.forget(key);
        lock(&s.written).remove(key);
        return;
    };
    let Ok(value) = serde_json::to_value(&*obj) else {
        return;
    };
    let Some(oref) = ObjectRef::from_json(&value) else {
        return;
    };
    let json = value.to_string();
    let started = Instant::now();
    let grants = Grants {
        cache: Some(s.cache.clone()),
        pod_logs: None,
    };
    let call_failed = |e: CallError| {
        tracing::warn!(plugin = plugin.name(), object = %oref, error = %e, "reconcile call failed");
        s.queue.add_with_backoff(key.clone());
    };
    let mut health = Vec::new();
    let observation = match plugin.fetch(&oref, &json, grants).await {
        Ok(Ok(obs)) => Some(obs),
        Ok(Err(e)) => {
            health.push(error_health("Fetch", e));
            None
        }
        Err(e) => return call_failed(e),
    };
    if let Some(obs) = &observation {
        match plugin.plan(&oref, &json, obs).await {
            Ok(Ok(entries)) => {
                for entry in entries {
                    if let Err(e) = apply_entry(s, &obj, &oref, entry).await {
                        health.push(error_health("Apply", e));
                    }
                }
            }
            Ok(Err(e)) => health.push(error_health("Plan", e)),
            Err(e) => return call_failed(e),
        }
        match plugin.health(&oref, &json, obs).await {
            Ok(h) => health.extend(h),
            Err(e) => return call_failed(e),
        }
    }
    let infra = health
        .iter()
        .flat_map(|h| &h.errors)
        .any(|e| e.category == ErrorCategory::Infrastructure);
    let in_grace = {
        let mut first = lock(&s.first_infra_error);
        if infra {
            first
                .entry(key.clone())
                .or_insert_with(Instant::now)
                .elapsed()
                < s.config.grace
        } else {
            first.remove(key);
            false
        }
    };
    let computed = compute(&health, in_grace);
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let written = lock(&s.written)
        .get(key)
        .filter(|(u, _)| *u == uid)
        .map(|(_, v)| v.clone());
    let current = written.unwrap_or_else(|| value.get("status").cloned().unwrap_or(Value::Null));
    let previous = current.get("conditions");
    let (conditions, transitioned) = render(
        &computed.conditions,
        previous,
        obj.metadata.generation,
        &now_rfc3339(),
    );
    for t in &transitioned {
        if let Some(c) = computed.conditions.iter().find(|c| &c.condition_type == t) {
            tracing::info!(plugin = plugin.name(), object = %oref, condition = %t, status = ?c.status, reason = %c.reason, "condition changed");
        }
    }
    let status = json!({
        "status": computed.state.as_str(),
        "observedGeneration": obj.metadata.generation,
        "conditions": conditions,
    });
    let unchanged = ["status", "observedGeneration", "conditions"]
        .iter()
        .all(|f| current.get(f) == status.get(f));
    if !unchanged && let Ok(ar) = resource_for(s, &key.gvk).await {
        let patch = json!({ "status": status });
        if let Err(e) = api(s, &ar, key.namespace.as_deref())
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(plugin = plugin.name(), object = %oref, error = %e, "status update failed");
            s.queue.add_with_backoff(key.clone());
            return;
        }
        lock(&s.written).insert(key.clone(), (uid, status));
    }
    tracing::debug!(plugin = plugin.name(), object = %oref, state = computed.state.as_str(), elapsed = ?started.elapsed(), "reconciled");
    match computed.verdict {
        Verdict::Requeue => {
            s.queue.add_with_backoff(key.clone());
        }
        Verdict::Settled | Verdict::Fail => s.queue.forget(key),
    }
}
