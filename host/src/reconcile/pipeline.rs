//! One reconcile of one key: the deletion, terminal-failure and owner gates, the finalizer, fetch,
//! health, plan, access, apply, prune, status, events and requeue.

use super::action::{Action, AttemptError};
use super::apply::{self, api, category_of, delete, errors_health, execute, prune, resource_for};
use super::conditions::{ComputedCondition, Verdict};
use super::finalizer;
use super::phase::rfc3339;
use super::plan::{Checker, Refusal, Step};
use super::scope::{Scope, ScopedCache, ScopedPodLogs};
use super::status::{self, Basis, Evaluation, changes, merged, patch};
use super::{ObjectKey, Shared, Written, lock};
use crate::contract::{
    CategorizedError, ComponentHealth, ConditionStatus, Gvk, Manifest, ObjectRef,
};
use crate::plugin::{CallError, Grants, KubePodLogs, Planned, Plugin, PodLogReader};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The reason of the `Ready` condition written instead of a status the API server refused.
pub const STATUS_REFUSED: &str = "StatusRefused";

/// The condition telling whether the owner reference a plugin waits for is there.
pub const OWNER_CONDITION: &str = "OwnerReferenceSet";

/// Reconcile `key` once with the current plugin; what comes next is the caller's to do
/// ([`super::action::settle`]).
pub(super) async fn reconcile(s: &Shared, key: &ObjectKey) -> Result<Action, AttemptError> {
    let plugin = s.plugin();
    let Some(obj) = s.cached(&key.gvk, key.namespace.as_deref(), &key.name) else {
        s.forget_object(key);
        return Ok(Action::Forget);
    };
    if !s.in_scope(&plugin, &obj) {
        // Outside the plugin's event filter (it may have left it): as if it were gone.
        tracing::debug!(plugin = plugin.name(), object = %key.name, "outside the plugin's event filter: forgotten");
        s.forget_object(key);
        return Ok(Action::Forget);
    }
    // An object the cache holds is valid JSON with a name; nothing to do otherwise. It is
    // serialized once, for the guest; the host reads the typed object.
    let Some(oref) = ObjectRef::of(&obj) else {
        return Ok(Action::await_change());
    };
    let Ok(json) = serde_json::to_string(&*obj) else {
        return Ok(Action::await_change());
    };
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let stored = s.stored_status(key, &obj);
    if obj.metadata.deletion_timestamp.is_some() {
        return finalizer::finalize(s, &plugin, key, &obj, &oref, &json, &stored).await;
    }
    let generation = obj.metadata.generation;
    if status::terminal(&stored, generation) || s.failed(key, &uid, generation) {
        tracing::debug!(plugin = plugin.name(), object = %oref, "failed terminally: no action until the spec changes");
        return Ok(Action::Terminal);
    }
    let manifest = plugin.manifest();
    let mut limits: HashMap<String, Duration> = manifest.phase_limits().collect();
    limits.extend(s.config.phase_timeouts.clone());
    Run {
        s,
        plugin: &plugin,
        key,
        obj: &obj,
        oref: &oref,
        json: &json,
        uid: &uid,
        stored: &stored,
        generation,
        now: Timestamp::now(),
        limits,
    }
    .run()
    .await
}

/// The name of the first owner reference of `kind` (group and kind; any version).
pub fn owner_of(obj: &DynamicObject, kind: &Gvk) -> Option<String> {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| {
            let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            o.kind == kind.kind && group == kind.group
        })
        .map(|o| o.name.clone())
}

/// The `OwnerReferenceSet` condition of a plugin that waits for an owner of some kind: `Ok(None)`
/// when it waits for none, `Err(kind)` while `obj` has no owner of that kind.
pub(crate) fn owner_condition<'m>(
    manifest: &'m Manifest,
    obj: &DynamicObject,
) -> Result<Option<ComputedCondition>, &'m Gvk> {
    let Some(kind) = &manifest.wait_for_owner else {
        return Ok(None);
    };
    let name = owner_of(obj, kind).ok_or(kind)?;
    Ok(Some(ComputedCondition::new(
        OWNER_CONDITION,
        ConditionStatus::True,
        "OwnerReferenceSet",
        &format!("owned by {} {name}", kind.kind),
        manifest.observability,
    )))
}

/// The health of the `Apply` phase when the plan is refused: one error a refusal.
pub(crate) fn refused_health(plugin: &str, refused: &[Refusal]) -> ComponentHealth {
    errors_health(
        "Apply",
        refused
            .iter()
            .map(|r| CategorizedError {
                category: r.category(),
                message: format!("plugin {plugin}: plan refused, nothing applied: {r}"),
            })
            .collect(),
    )
}

/// When the components ask to be reconciled again: the soonest of their `requeue_after`, never
/// sooner than `floor` (the plugin's `min_requeue_after`: a request of 0 does not spin).
pub fn requeue_after(health: &[ComponentHealth], floor: Duration) -> Option<Duration> {
    health
        .iter()
        .filter_map(ComponentHealth::requeue_delay)
        .min()
        .map(|after| after.max(floor))
}

struct Run<'a> {
    s: &'a Shared,
    plugin: &'a Plugin,
    key: &'a ObjectKey,
    obj: &'a DynamicObject,
    oref: &'a ObjectRef,
    json: &'a str,
    uid: &'a str,
    stored: &'a Value,
    generation: Option<i64>,
    now: Timestamp,
    limits: HashMap<String, Duration>,
}

impl Run<'_> {
    fn call_failed(&self, e: CallError) -> Result<Action, AttemptError> {
        tracing::warn!(plugin = self.plugin.name(), object = %self.oref, error = %e, "reconcile call failed");
        Err(AttemptError::Call(e))
    }

    async fn run(self) -> Result<Action, AttemptError> {
        let manifest = self.plugin.manifest();
        let owner_condition = match owner_condition(manifest, self.obj) {
            Ok(c) => c,
            Err(kind) => return self.pending(kind).await,
        };
        if manifest.finalizer {
            let name = finalizer::name(self.plugin.name());
            if !finalizer::has(self.obj, &name)
                && let Err(e) = finalizer::add(self.s, self.key, self.obj, &name).await
            {
                tracing::warn!(plugin = self.plugin.name(), object = %self.oref, error = %e, "cannot add the finalizer");
                return Err(AttemptError::Finalizer(e));
            }
        }
        let mut health = Vec::new();
        // The object crosses into the plugin once: every phase below runs on this reconciliation.
        let mut observed = match self.plugin.reconcile(self.oref, self.json).await {
            Ok(Ok(mut r)) => match r.fetch(self.grants()).await {
                Ok(Ok(())) => Some(r),
                Ok(Err(e)) => {
                    health.push(errors_health("Fetch", vec![e]));
                    None
                }
                Err(e) => return self.call_failed(e),
            },
            Ok(Err(e)) => {
                health.push(errors_health("Fetch", vec![e]));
                None
            }
            Err(e) => return self.call_failed(e),
        };
        if let Some(r) = observed.as_mut() {
            match r.health().await {
                Ok(h) => health.extend(h),
                Err(e) => return self.call_failed(e),
            }
        }
        // Stop apply: a terminal verdict or a timed-out phase applies nothing.
        let before = self.evaluate(&health, true, owner_condition.clone());
        if !before.terminal()
            && let Some(r) = observed.as_mut()
        {
            match r.plan().await {
                Ok(Ok(entries)) => {
                    if !self.apply(entries, &mut health).await {
                        tracing::debug!(plugin = self.plugin.name(), object = %self.oref, "gone while reconciled");
                        return Ok(Action::Forget);
                    }
                }
                Ok(Err(e)) => health.push(errors_health("Plan", vec![e])),
                Err(e) => return self.call_failed(e),
            }
        }
        let in_grace = self.s.in_grace(self.key, &health);
        let eval = self.evaluate(&health, in_grace, owner_condition);
        let now = rfc3339(self.now);
        let draft = match self.basis().draft(&eval, observed.as_mut()).await {
            Ok(draft) => draft,
            Err(e) => return self.call_failed(e),
        };
        let (doc, report) = draft.render(self.stored, self.generation, &now);
        if self.write(&doc, draft.complete).await.is_err() {
            return Err(AttemptError::StatusWrite);
        }
        self.s.events.report(self.plugin.name(), self.oref, &report);
        self.s
            .remember_failure(self.key, self.uid, self.generation, eval.terminal());
        if let Some(failure) = &eval.failure {
            tracing::warn!(plugin = self.plugin.name(), object = %self.oref, reason = %failure.reason, message = %failure.message, "failed terminally: no action until the spec changes");
            if observed.is_some() {
                self.propagate(&doc).await;
            }
        }
        Ok(self.next(&eval, &health))
    }

    /// What the fetch phase may read: the informer caches and (when the manifest asks) pod logs,
    /// both within the object's scope.
    fn grants(&self) -> Grants {
        let manifest = self.plugin.manifest();
        let scope = self.scope();
        Grants {
            cache: Some(Arc::new(ScopedCache {
                inner: self.s.cache.clone(),
                scope: scope.clone(),
            })),
            // Refused at the boundary unless the manifest (as configuration allows) asks for it.
            pod_logs: manifest.pod_logs.then(|| {
                let owned: Vec<_> = manifest
                    .owns
                    .iter()
                    .filter_map(|g| self.s.handles.get(g))
                    .collect();
                Arc::new(ScopedPodLogs::new(
                    Arc::new(KubePodLogs::new(
                        self.s.client.clone(),
                        self.plugin.limits().max_value_bytes,
                    )),
                    self.s.client.clone(),
                    scope,
                    self.uid.to_owned(),
                    &owned,
                )) as Arc<dyn PodLogReader>
            }),
        }
    }

    /// What this reconcile's status is computed from (see [`Basis`]).
    fn basis(&self) -> Basis<'_> {
        let manifest = self.plugin.manifest();
        Basis {
            observability: manifest.observability,
            mode: manifest.status_mode,
            stored: self.stored,
            generation: self.generation,
            now: self.now,
            limits: &self.limits,
        }
    }

    fn evaluate(
        &self,
        health: &[ComponentHealth],
        in_grace: bool,
        owner_condition: Option<ComputedCondition>,
    ) -> Evaluation {
        self.basis().evaluate(health, in_grace, owner_condition)
    }

    /// Where this reconcile may read and write.
    fn scope(&self) -> Scope {
        Scope::new(self.oref.namespace.clone(), self.s.config.scope.clone())
    }

    /// The plan checker of this reconcile, in `scope`.
    fn checker<'a>(&'a self, scope: &'a Scope) -> Checker<'a> {
        Checker {
            world: self.s,
            plugin: self.plugin.name(),
            manifest: self.plugin.manifest(),
            owner: self.obj,
            owner_ref: self.oref,
            scope,
        }
    }

    /// Check the plan (see [`super::plan`]; a refusal applies nothing), apply it, and prune the
    /// children it no longer holds when every entry applied. Returns false when the object turned
    /// out to be gone (its children just applied are deleted again).
    async fn apply(&self, entries: Vec<Planned>, health: &mut Vec<ComponentHealth>) -> bool {
        let manifest = self.plugin.manifest();
        let scope = self.scope();
        let checker = self.checker(&scope);
        let steps = match checker.check(entries).await {
            Ok(steps) => steps,
            Err(refused) => {
                for r in &refused {
                    tracing::warn!(plugin = self.plugin.name(), object = %self.oref, refusal = %r, "plan refused: nothing of it is applied");
                }
                health.push(refused_health(self.plugin.name(), &refused));
                return true;
            }
        };
        let planned: HashSet<ObjectRef> = steps.iter().map(|s| s.target().clone()).collect();
        // The children this reconcile wrote to (an apply skipped as unchanged wrote nothing).
        let mut created: Vec<ObjectRef> = Vec::new();
        let mut errors = Vec::new();
        for step in steps {
            let child =
                matches!(step, Step::Apply { owned: true, .. }).then(|| step.target().clone());
            match execute(self.s, self.obj, self.oref, self.key, step).await {
                Ok(true) => created.extend(child),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        if !created.is_empty() {
            match self.live().await {
                Ok(true) => {}
                Ok(false) => {
                    self.collect(&created).await;
                    return false;
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            health.push(errors_health("Apply", errors));
        } else if self.s.config.prune {
            let errors = prune(self.s, &manifest.owns, self.obj, &planned).await;
            if !errors.is_empty() {
                health.push(errors_health("Prune", errors));
            }
        }
        true
    }

    /// Whether the object still exists (same uid), read live after its children were applied: the
    /// informer cache may still hold an owner that was just deleted (the garbage collector's
    /// deletion of a child requeues it at once), and a child applied for it would dangle. Read
    /// after the apply, a live owner collects the children when it goes.
    async fn live(&self) -> Result<bool, CategorizedError> {
        let (ar, _) = resource_for(self.s, &self.key.gvk).await?;
        match api(self.s, &ar, self.key.namespace.as_deref())
            .get_opt(&self.key.name)
            .await
        {
            Ok(Some(o)) => Ok(o.metadata.uid.as_deref() == Some(self.uid)),
            Ok(None) => Ok(false),
            Err(e) => Err(CategorizedError {
                category: category_of(&e),
                message: format!("cannot read {}: {e}", self.oref),
            }),
        }
    }

    /// The owner went while its children were applied: delete them, as its garbage collection
    /// would have.
    async fn collect(&self, children: &[ObjectRef]) {
        for child in children {
            tracing::info!(plugin = self.plugin.name(), object = %self.oref, %child, "owner gone: deleting a child applied for it");
            if let Err(e) = delete(self.s, child, None).await {
                tracing::warn!(plugin = self.plugin.name(), object = %self.oref, error = %e.message, "cannot delete a child of a gone owner");
            }
        }
    }

    /// Waiting for the owner: status only (phase `Pending`, `OwnerReferenceSet=False`).
    async fn pending(&self, kind: &Gvk) -> Result<Action, AttemptError> {
        let (eval, draft) = self.basis().waiting_for_owner(kind, OWNER_CONDITION);
        let (doc, report) = draft.render(self.stored, self.generation, &rfc3339(self.now));
        if self.write(&doc, draft.complete).await.is_err() {
            return Err(AttemptError::StatusWrite);
        }
        self.s.events.report(self.plugin.name(), self.oref, &report);
        self.s
            .remember_failure(self.key, self.uid, self.generation, eval.terminal());
        Ok(if eval.terminal() {
            Action::Terminal
        } else {
            Action::Done {
                requeue_after: eval.timed.time_left,
            }
        })
    }

    /// A terminal failure still reaches the objects the plugin reports to (its owner, say): the
    /// object carrying its failed status is reconciled once more (fetch and plan), and only the
    /// status-only entries of its plan are applied.
    async fn propagate(&self, doc: &Map<String, Value>) {
        let mut failed = self.obj.clone();
        failed.data["status"] = Value::Object(doc.clone());
        let Ok(json) = serde_json::to_string(&failed) else {
            return;
        };
        let planned = async {
            let mut r = match self.plugin.reconcile(self.oref, &json).await? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = r.fetch(self.grants()).await? {
                return Ok(Err(e));
            }
            r.plan().await
        };
        let entries = match planned.await {
            Ok(Ok(entries)) => entries,
            Ok(Err(_)) => return,
            Err(e) => {
                tracing::warn!(plugin = self.plugin.name(), object = %self.oref, error = %e, "cannot propagate the failure");
                return;
            }
        };
        let scope = self.scope();
        let checker = self.checker(&scope);
        let mut steps = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            match checker.check(vec![entry]).await {
                Ok(s) => steps.extend(s.into_iter().filter(|s| matches!(s, Step::Status { .. }))),
                Err(refused) => {
                    for r in refused {
                        tracing::warn!(plugin = self.plugin.name(), object = %self.oref, entry = index, refusal = %r, "cannot propagate the failure");
                    }
                }
            }
        }
        for step in steps {
            if let Err(e) = execute(self.s, self.obj, self.oref, self.key, step).await {
                tracing::warn!(plugin = self.plugin.name(), object = %self.oref, error = %e.message, "cannot propagate the failure");
            }
        }
    }

    /// What comes after a reconcile that ran to its end: nothing more for a terminal failure;
    /// else the soonest of the components' `requeue_after` and the phase deadline, with backoff
    /// while the verdict is to requeue.
    fn next(&self, eval: &Evaluation, health: &[ComponentHealth]) -> Action {
        if eval.terminal() {
            return Action::Terminal;
        }
        let asked = requeue_after(health, self.plugin.limits().min_requeue_after);
        let requeue_after = match (asked, eval.timed.time_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match eval.computed.verdict {
            Verdict::Requeue => Action::Requeue { requeue_after },
            Verdict::Settled | Verdict::Fail => Action::Done { requeue_after },
        }
    }

    async fn write(&self, doc: &Map<String, Value>, complete: bool) -> Result<Option<String>, ()> {
        write_status(
            self.s,
            self.key,
            self.oref,
            self.obj,
            self.stored,
            doc,
            complete,
        )
        .await
    }
}

/// Write `doc` as the status of `obj` unless nothing changes (`complete`: keys of the stored
/// status it lacks are removed). Returns the new resourceVersion when written.
pub(super) async fn write_status(
    s: &Shared,
    key: &ObjectKey,
    oref: &ObjectRef,
    obj: &DynamicObject,
    stored: &Value,
    doc: &Map<String, Value>,
    complete: bool,
) -> Result<Option<String>, ()> {
    if !changes(doc, stored, complete) {
        return Ok(None);
    }
    let patch = patch(doc, stored, complete);
    let (ar, _) = resource_for(s, &key.gvk).await.map_err(|e| {
        tracing::warn!(plugin = %s.field_manager, object = %oref, error = %e.message, "status update failed");
    })?;
    match apply::patch_status(s, &ar, key.namespace.as_deref(), &key.name, &patch).await {
        Ok(resource_version) => {
            lock(&s.written).insert(
                key.clone(),
                Written {
                    uid: obj.metadata.uid.clone().unwrap_or_default(),
                    seen: obj.metadata.resource_version.clone(),
                    status: merged(stored, &patch),
                },
            );
            Ok(resource_version)
        }
        Err(e) => {
            tracing::warn!(plugin = %s.field_manager, object = %oref, error = %e, "status update failed");
            if category_of(&e) == crate::contract::ErrorCategory::Auth {
                // The status cannot carry the refusal (writing it is what was refused): say it in
                // an event, which the host publishes with its own identity.
                let condition = ComputedCondition::new(
                    "AuthValid",
                    ConditionStatus::False,
                    "AuthFailed",
                    &format!("the status of this object cannot be written: {e}"),
                    crate::contract::Observability::Warning,
                );
                s.events
                    .report(s.plugin().name(), oref, &[(condition, true)]);
            }
            if let kube::Error::Api(st) = &e
                && matches!(st.code, 400 | 413 | 422)
            {
                // The computed status itself is refused (too large, invalid): say so in a status
                // small enough to be written; the object backs off.
                let now = rfc3339(Timestamp::now());
                let condition = json!({
                    "type": "Ready", "status": "False", "reason": STATUS_REFUSED,
                    "message": format!("the status computed for this object was refused by the API server ({}): {}", st.code, st.message.chars().take(512).collect::<String>()),
                    "lastTransitionTime": now, "observedGeneration": obj.metadata.generation,
                });
                let small = json!({"status": {"conditions": [condition]}});
                if let Err(e) = api(s, &ar, key.namespace.as_deref())
                    .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&small))
                    .await
                {
                    tracing::warn!(plugin = %s.field_manager, object = %oref, error = %e, "cannot report the refused status");
                }
            }
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soonest_requeue_after_wins() {
        let h = |after: Option<u32>| ComponentHealth {
            component: "C".into(),
            state: crate::contract::HealthState::Progressing,
            reason: "R".into(),
            message: "m".into(),
            errors: vec![],
            requeue_after: after,
        };
        let floor = Duration::from_secs(1);
        assert_eq!(
            requeue_after(&[h(None), h(Some(30)), h(Some(5))], floor),
            Some(Duration::from_secs(5))
        );
        assert_eq!(requeue_after(&[h(None)], floor), None);
    }

    #[test]
    fn a_requeue_sooner_than_the_floor_waits_for_the_floor() {
        let h = |after: u32| ComponentHealth {
            component: "C".into(),
            state: crate::contract::HealthState::Progressing,
            reason: "R".into(),
            message: "m".into(),
            errors: vec![],
            requeue_after: Some(after),
        };
        let floor = Duration::from_secs(1);
        assert_eq!(requeue_after(&[h(0)], floor), Some(floor), "0 is not now");
        assert_eq!(
            requeue_after(&[h(0), h(30)], Duration::from_secs(10)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            requeue_after(&[h(3)], floor),
            Some(Duration::from_secs(3)),
            "above the floor: as asked"
        );
    }

    #[test]
    fn owners_match_by_group_and_kind() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "x.dev/v1", "kind": "InfraCluster",
            "metadata": {"name": "a", "ownerReferences": [
                {"apiVersion": "other.dev/v1", "kind": "Cluster", "name": "wrong", "uid": "1"},
                {"apiVersion": "x.dev/v1beta1", "kind": "Cluster", "name": "demo", "uid": "2"}
            ]}
        }))
        .unwrap();
        assert_eq!(
            owner_of(&obj, &Gvk::new("x.dev", "v1", "Cluster")).as_deref(),
            Some("demo")
        );
        assert_eq!(owner_of(&obj, &Gvk::new("x.dev", "v1", "Machine")), None);
    }
}
