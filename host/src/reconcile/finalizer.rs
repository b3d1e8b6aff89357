//! Finalizers: `capstan.dev/<plugin>` on the objects of plugins that ask for one, added before
//! anything is applied; on deletion the plugin's `cleanup` runs, then the finalizer goes.

use super::action::{Action, AttemptError};
use super::apply::{api, category_of, resource_for};
use super::conditions::{ComputedCondition, render};
use super::phase::{Phase, PhaseRecord, rfc3339};
use super::pipeline::write_status;
use super::{ObjectKey, Shared};
use crate::contract::{
    CategorizedError, CleanupOutcome, ConditionStatus, ErrorCategory, ObjectRef,
};
use crate::plugin::Plugin;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The condition that tells how cleanup goes while an object is deleted.
pub const CLEANUP_CONDITION: &str = "CleanupComplete";

/// The finalizer of a plugin: `capstan.dev/<plugin>`.
pub fn name(plugin: &str) -> String {
    format!("capstan.dev/{plugin}")
}

fn finalizers(obj: &DynamicObject) -> Vec<String> {
    obj.metadata.finalizers.clone().unwrap_or_default()
}

/// Whether `obj` carries `finalizer`.
pub fn has(obj: &DynamicObject, finalizer: &str) -> bool {
    finalizers(obj).iter().any(|f| f == finalizer)
}

/// The JSON merge patch adding `finalizer` (keeping the others), guarded by the object's
/// resourceVersion so a concurrent change of the list is not lost.
pub fn adding(obj: &DynamicObject, finalizer: &str) -> Value {
    let mut list = finalizers(obj);
    if !list.iter().any(|f| f == finalizer) {
        list.push(finalizer.to_owned());
    }
    json!({"metadata": {"finalizers": list, "resourceVersion": obj.metadata.resource_version}})
}

/// The JSON merge patch removing `finalizer` (keeping the others), guarded by `resource_version`.
pub fn removing(obj: &DynamicObject, finalizer: &str, resource_version: Option<&str>) -> Value {
    let list: Vec<String> = finalizers(obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    json!({"metadata": {"finalizers": list, "resourceVersion": resource_version}})
}

async fn patch_metadata(
    s: &Shared,
    key: &ObjectKey,
    patch: &Value,
) -> Result<DynamicObject, CategorizedError> {
    let (ar, _) = resource_for(s, &key.gvk).await?;
    api(s, &ar, key.namespace.as_deref())
        .patch(&key.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| CategorizedError {
            category: match &e {
                kube::Error::Api(s) if s.code == 409 => ErrorCategory::Infrastructure,
                _ => category_of(&e),
            },
            message: format!("cannot update the finalizers of {}: {e}", key.name),
        })
}

/// Add the plugin's finalizer to `obj`.
pub(super) async fn add(
    s: &Shared,
    key: &ObjectKey,
    obj: &DynamicObject,
    finalizer: &str,
) -> Result<(), CategorizedError> {
    patch_metadata(s, key, &adding(obj, finalizer))
        .await
        .map(|_| ())
}

/// The deletion path of an object with a deletionTimestamp. Objects without this plugin's
/// finalizer are left alone. With it: phase `Deleting`, `cleanup`; `Done` removes the finalizer,
/// `RequeueAfter(s)` calls again after `s` seconds, an error retries with backoff. The
/// [`CLEANUP_CONDITION`] condition tells which.
pub(super) async fn finalize(
    s: &Shared,
    plugin: &Plugin,
    key: &ObjectKey,
    obj: &DynamicObject,
    oref: &ObjectRef,
    json: &str,
    stored: &Value,
) -> Result<Action, AttemptError> {
    let finalizer = name(plugin.name());
    if !has(obj, &finalizer) {
        return Ok(Action::await_change());
    }
    let manifest = plugin.manifest();
    if !manifest.finalizer {
        // The plugin no longer asks for a finalizer: release the object, nothing to clean up.
        let patch = removing(obj, &finalizer, obj.metadata.resource_version.as_deref());
        if let Err(e) = patch_metadata(s, key, &patch).await {
            tracing::warn!(plugin = plugin.name(), object = %oref, error = %e, "cannot remove a finalizer no longer asked for");
            return Err(AttemptError::Finalizer(e));
        }
        return Ok(Action::await_change());
    }
    let cleaned = async {
        match plugin.reconcile(oref, json).await? {
            Ok(mut r) => r.cleanup().await,
            Err(e) => Ok(Err(e)),
        }
    };
    let outcome = match cleaned.await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(plugin = plugin.name(), object = %oref, error = %e, "cleanup call failed");
            return Err(AttemptError::Call(e));
        }
    };
    let observability = manifest.observability;
    let condition = match &outcome {
        Ok(CleanupOutcome::Done) => ComputedCondition::new(
            CLEANUP_CONDITION,
            ConditionStatus::True,
            "CleanupDone",
            "cleanup finished",
            observability,
        ),
        Ok(CleanupOutcome::RequeueAfter(secs)) => ComputedCondition::new(
            CLEANUP_CONDITION,
            ConditionStatus::False,
            "CleanupInProgress",
            &format!("cleanup under way, checked again in {secs}s"),
            observability,
        ),
        Err(e) => ComputedCondition::new(
            CLEANUP_CONDITION,
            ConditionStatus::False,
            e.category.reason(),
            &e.message,
            observability,
        ),
    };
    let now = Timestamp::now();
    let (doc, transitioned) = deleting_status(stored, &condition, obj.metadata.generation, now);
    let resource_version = match write_status(s, key, oref, obj, stored, &doc, false).await {
        Ok(rv) => rv.or_else(|| obj.metadata.resource_version.clone()),
        Err(()) => return Err(AttemptError::StatusWrite),
    };
    s.events
        .report(plugin.name(), oref, &[(condition, transitioned)]);
    match outcome {
        Ok(CleanupOutcome::Done) => {
            let patch = removing(obj, &finalizer, resource_version.as_deref());
            match patch_metadata(s, key, &patch).await {
                Ok(_) => {
                    tracing::info!(plugin = plugin.name(), object = %oref, "cleanup done, finalizer removed");
                    Ok(Action::await_change())
                }
                Err(e) => {
                    tracing::warn!(plugin = plugin.name(), object = %oref, error = %e, "cannot remove the finalizer");
                    Err(AttemptError::Finalizer(e))
                }
            }
        }
        Ok(CleanupOutcome::RequeueAfter(secs)) => {
            let asked = Duration::from_secs(u64::from(secs));
            Ok(Action::Done {
                requeue_after: Some(asked.max(plugin.limits().min_requeue_after)),
            })
        }
        Err(e) => {
            tracing::warn!(plugin = plugin.name(), object = %oref, error = %e, "cleanup failed");
            Err(AttemptError::Cleanup(e))
        }
    }
}

/// The status of an object being deleted: phase `Deleting` and the cleanup condition, the other
/// conditions kept; with whether the cleanup condition transitioned.
pub fn deleting_status(
    stored: &Value,
    condition: &ComputedCondition,
    generation: Option<i64>,
    now: Timestamp,
) -> (Map<String, Value>, bool) {
    let since = match PhaseRecord::from_status(stored) {
        Some(p) if p.phase == Phase::Deleting => p.since,
        _ => now,
    };
    let previous = stored.get("conditions");
    let (rendered, transitioned) = render(
        std::slice::from_ref(condition),
        previous,
        generation,
        &rfc3339(now),
    );
    let mut conditions: Vec<Value> = previous
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some(CLEANUP_CONDITION))
        .cloned()
        .collect();
    conditions.extend(rendered);
    let mut doc = Map::new();
    doc.insert("phase".into(), json!(Phase::Deleting.as_str()));
    doc.insert("lastPhaseTransitionTime".into(), json!(rfc3339(since)));
    doc.insert("conditions".into(), Value::Array(conditions));
    (doc, !transitioned.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Observability;

    fn obj(finalizers: &[&str]) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7",
                         "finalizers": finalizers}
        }))
        .unwrap()
    }

    #[test]
    fn the_finalizer_is_named_after_the_plugin() {
        assert_eq!(name("webapp"), "capstan.dev/webapp");
    }

    #[test]
    fn adding_keeps_other_finalizers_and_guards_the_version() {
        let o = obj(&["example.com/keep"]);
        assert!(!has(&o, "capstan.dev/web"));
        assert_eq!(
            adding(&o, "capstan.dev/web"),
            json!({"metadata": {"finalizers": ["example.com/keep", "capstan.dev/web"], "resourceVersion": "7"}})
        );
        let o = obj(&["capstan.dev/web"]);
        assert!(has(&o, "capstan.dev/web"));
        assert_eq!(
            adding(&o, "capstan.dev/web")["metadata"]["finalizers"],
            json!(["capstan.dev/web"]),
            "added once"
        );
    }

    #[test]
    fn removing_keeps_other_finalizers() {
        let o = obj(&["a/x", "capstan.dev/web", "b/y"]);
        assert_eq!(
            removing(&o, "capstan.dev/web", Some("9")),
            json!({"metadata": {"finalizers": ["a/x", "b/y"], "resourceVersion": "9"}})
        );
    }

    #[test]
    fn deleting_status_keeps_conditions_and_the_phase_time() {
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let stored = json!({
            "phase": "Ready", "lastPhaseTransitionTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "reason": "R", "message": "m",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        });
        let c = ComputedCondition::new(
            CLEANUP_CONDITION,
            ConditionStatus::False,
            "CleanupInProgress",
            "under way",
            Observability::Info,
        );
        let (doc, transitioned) = deleting_status(&stored, &c, Some(1), now);
        assert!(transitioned);
        assert_eq!(doc["phase"], "Deleting");
        assert_eq!(doc["lastPhaseTransitionTime"], "2026-01-01T00:05:00Z");
        let types: Vec<_> = doc["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect();
        assert_eq!(types, [json!("Ready"), json!(CLEANUP_CONDITION)]);
        let stored = super::super::status::merged(&stored, &Value::Object(doc));
        let later: Timestamp = "2026-01-01T00:09:00Z".parse().unwrap();
        let (again, transitioned) = deleting_status(&stored, &c, Some(1), later);
        assert!(!transitioned);
        assert_eq!(again["lastPhaseTransitionTime"], "2026-01-01T00:05:00Z");
        assert_eq!(again["conditions"], stored["conditions"]);
    }
}
