//! Applying a plan: server-side apply with owner references, `status` through the status
//! subresource, deletes, and pruning of children no longer planned.

use super::applied::Fingerprint;
use super::plan::Step;
use super::{ObjectKey, Shared};
use crate::contract::{
    CategorizedError, ComponentHealth, ErrorCategory, Gvk, HealthState, ObjectRef,
};
use kube::Resource;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::{ApiResource, Scope};
use serde_json::{Value, json};
use std::collections::HashSet;

/// The category of a failed API call: 401/403 auth, 400/404/422 invalid spec, else infrastructure.
pub(super) fn category_of(e: &kube::Error) -> ErrorCategory {
    match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ErrorCategory::Auth,
        kube::Error::Api(s) if s.code == 400 || s.code == 422 || s.code == 404 => {
            ErrorCategory::InvalidSpec
        }
        _ => ErrorCategory::Infrastructure,
    }
}

/// The health of a host-side phase (`Fetch`, `Plan`, `Apply`, ...) that failed with `errors`:
/// progressing for transient errors (infrastructure, missing downstream), failed otherwise.
pub(crate) fn errors_health(component: &str, errors: Vec<CategorizedError>) -> ComponentHealth {
    let transient = errors.iter().all(|e| {
        matches!(
            e.category,
            ErrorCategory::Infrastructure | ErrorCategory::MissingDownstreamDependency
        )
    });
    ComponentHealth {
        component: component.to_owned(),
        state: if transient {
            HealthState::Progressing
        } else {
            HealthState::Failed
        },
        reason: errors
            .first()
            .map_or_else(String::new, |e| e.category.reason().to_owned()),
        message: errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        errors,
        requeue_after: None,
    }
}

/// A kind's API resource and whether it is namespaced: from its informer, else discovery.
pub(super) async fn resource_for(
    s: &Shared,
    gvk: &Gvk,
) -> Result<(ApiResource, bool), CategorizedError> {
    if let Some(h) = s.handles.get(gvk) {
        return Ok((h.api_resource().clone(), h.namespaced()));
    }
    let gvk_k = kube::api::GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
    kube::discovery::pinned_kind(&s.client, &gvk_k)
        .await
        .map(|(ar, caps)| (ar, caps.scope == Scope::Namespaced))
        .map_err(|e| CategorizedError {
            category: category_of(&e),
            message: format!("cannot resolve {gvk}: {e}"),
        })
}

/// An API for a resource, in `namespace` or cluster-wide.
pub(super) fn api(s: &Shared, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(s.client.clone(), ns, ar),
        None => Api::all_with(s.client.clone(), ar),
    }
}

/// Merge-patch the status of `name` with `status`, reading only the new resourceVersion from the
/// response: the rest of the object (its managedFields with it) is skipped, not decoded, since
/// the informer brings the object anyway.
pub(super) async fn patch_status(
    s: &Shared,
    ar: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    status: &Value,
) -> Result<Option<String>, kube::Error> {
    /// The one field a status write's response is read for.
    #[derive(serde::Deserialize)]
    struct Written {
        metadata: WrittenMeta,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WrittenMeta {
        resource_version: Option<String>,
    }
    let mut req = kube::core::Request::new(DynamicObject::url_path(ar, namespace))
        .patch_subresource(
            "status",
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .map_err(kube::Error::BuildRequest)?;
    req.extensions_mut().insert("patch_status");
    let written: Written = s.client.request(req).await?;
    Ok(written.metadata.resource_version)
}

/// A planned object split into what is applied to the main resource (`None` when it holds nothing
/// but `apiVersion`, `kind`, `metadata` and `status`) and what is applied through the status
/// subresource (`None` without `status`).
pub fn split_status(mut obj: Value) -> (Option<Value>, Option<Value>) {
    let Some(map) = obj.as_object_mut() else {
        return (Some(obj), None);
    };
    let Some(status) = map.remove("status") else {
        return (Some(obj), None);
    };
    let meta = map.get("metadata");
    let status_obj = json!({
        "apiVersion": map.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": map.get("kind").cloned().unwrap_or(Value::Null),
        "metadata": {
            "name": meta.and_then(|m| m.get("name")).cloned().unwrap_or(Value::Null),
            "namespace": meta.and_then(|m| m.get("namespace")).cloned().unwrap_or(Value::Null),
        },
        "status": status,
    });
    let only_status = map
        .keys()
        .all(|k| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
    ((!only_status).then_some(obj), Some(status_obj))
}

/// Whether [`split_status`] of `obj` leaves only a status apply (nothing for the main resource).
pub fn status_only(obj: &Value) -> bool {
    obj.as_object().is_some_and(|map| {
        map.contains_key("status")
            && map
                .keys()
                .all(|k| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
    })
}

/// Give an applied child its controller owner reference to the reconciled object (`owner_ref`,
/// with `uid`): the only owner reference a child of a plan carries, replacing any.
pub(crate) fn set_owner(body: &mut Value, owner_ref: &ObjectRef, uid: &str) {
    body["metadata"]["ownerReferences"] = json!([{
        "apiVersion": owner_ref.gvk.api_version(),
        "kind": owner_ref.gvk.kind,
        "name": owner_ref.name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
}

/// Whether pruning deletes `child` (as it is live, with its managed fields) of the object with
/// `uid`: that object controls it and field manager `manager` created it.
pub(crate) fn prunable(child: &DynamicObject, uid: &str, manager: &str) -> bool {
    controlled_by(child, uid) && managed_by(child, manager)
}

/// Carry out one checked step on behalf of `owner` (the object of `key`; see [`super::plan`]).
/// Returns whether it wrote: an apply whose result cannot differ from the child in the cache is
/// skipped (see [`super::applied`]).
pub(super) async fn execute(
    s: &Shared,
    owner: &DynamicObject,
    owner_ref: &ObjectRef,
    key: &ObjectKey,
    step: Step,
) -> Result<bool, CategorizedError> {
    let (target, body, force, status) = match step {
        Step::Delete { target, uid } => {
            s.applied.forget_child(key, &target);
            return delete(s, &target, Some(uid)).await.map(|()| true);
        }
        Step::Apply {
            target,
            mut body,
            owned,
            force,
        } => {
            if owned {
                set_owner(
                    &mut body,
                    owner_ref,
                    owner.metadata.uid.as_deref().unwrap_or_default(),
                );
            }
            (target, body, force, false)
        }
        Step::Status {
            target,
            body,
            force,
        } => (target, body, force, true),
    };
    let fingerprint = (!status).then(|| Fingerprint::of(&body, force));
    if let Some(fingerprint) = fingerprint {
        let cached = s.cached(&target.gvk, target.namespace.as_deref(), &target.name);
        let cached_rv = cached
            .as_ref()
            .and_then(|c| c.metadata.resource_version.as_deref());
        if s.applied.unchanged(key, &target, fingerprint, cached_rv) {
            if let Some(metrics) = &s.config.metrics {
                metrics.apply_skipped(s.plugin().name());
            }
            return Ok(false);
        }
    }
    let (ar, _) = resource_for(s, &target.gvk).await?;
    let api = api(s, &ar, target.namespace.as_deref());
    let mut params = PatchParams::apply(&s.field_manager);
    params.force = force;
    let result = if status {
        api.patch_status(&target.name, &params, &Patch::Apply(&body))
            .await
    } else {
        api.patch(&target.name, &params, &Patch::Apply(&body)).await
    };
    match (&result, fingerprint) {
        (Ok(applied), Some(fingerprint)) => match &applied.metadata.resource_version {
            Some(rv) => s.applied.record(key, &target, fingerprint, rv.clone()),
            None => s.applied.forget_child(key, &target),
        },
        (Err(_), Some(_)) => s.applied.forget_child(key, &target),
        (_, None) => {}
    }
    result.map(|_| true).map_err(|e| {
        let what = if status { "the status of " } else { "" };
        match &e {
            // A field another manager owns, on an object this plugin does not control: reported,
            // never forced.
            kube::Error::Api(st) if st.code == 409 => CategorizedError {
                category: ErrorCategory::Auth,
                message: format!(
                    "cannot apply {what}{target} without taking over fields another manager owns: {e}"
                ),
            },
            _ => CategorizedError {
                category: category_of(&e),
                message: format!("cannot apply {what}{target}: {e}"),
            },
        }
    })
}

/// Delete one object (only while its uid is `uid`, when given); an object already gone is fine.
pub(super) async fn delete(
    s: &Shared,
    r: &ObjectRef,
    uid: Option<String>,
) -> Result<(), CategorizedError> {
    let (ar, namespaced) = resource_for(s, &r.gvk).await?;
    let namespace = r.namespace.as_deref().filter(|_| namespaced);
    let mut params = DeleteParams::background();
    if uid.is_some() {
        params.preconditions = Some(Preconditions {
            uid,
            resource_version: None,
        });
    }
    match api(s, &ar, namespace).delete(&r.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        // The uid changed: the object checked is gone, another one took its name.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(CategorizedError {
            category: category_of(&e),
            message: format!("cannot delete {r}: {e}"),
        }),
    }
}

/// Whether field manager `manager` has applied or updated any field of `obj`.
pub fn managed_by(obj: &DynamicObject, manager: &str) -> bool {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some(manager))
}

/// Whether `obj` is controlled by the object with `uid` (an owner reference with controller=true).
pub fn controlled_by(obj: &DynamicObject, uid: &str) -> bool {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Delete the children of `owner` (objects of owned kinds it controls, from the informer caches)
/// that are not in `planned`. Returns the errors.
pub(super) async fn prune(
    s: &Shared,
    owned: &[Gvk],
    owner: &DynamicObject,
    planned: &HashSet<ObjectRef>,
) -> Vec<CategorizedError> {
    let Some(uid) = owner.metadata.uid.as_deref() else {
        return Vec::new();
    };
    // Cluster-scoped children have no namespace, whatever the plan defaulted.
    let planned: HashSet<ObjectRef> = planned
        .iter()
        .cloned()
        .map(|mut r| {
            if s.handles.get(&r.gvk).is_some_and(|h| !h.namespaced()) {
                r.namespace = None;
            }
            r
        })
        .collect();
    let mut errors = Vec::new();
    for gvk in owned {
        let Some(handle) = s.handles.get(gvk) else {
            continue;
        };
        let Ok(children) = handle.list(owner.metadata.namespace.as_deref(), None) else {
            continue;
        };
        for child in children {
            if !controlled_by(&child, uid) || child.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(name) = child.metadata.name.clone() else {
                continue;
            };
            let r = ObjectRef {
                gvk: gvk.clone(),
                namespace: child.metadata.namespace.clone(),
                name,
                uid: None,
            };
            if planned.contains(&r) {
                continue;
            }
            // Only what this plugin created: another plugin reconciling the same object keeps its
            // children. The caches drop managed fields, so the candidate is read live.
            let live = match api(s, handle.api_resource(), r.namespace.as_deref())
                .get_opt(&r.name)
                .await
            {
                Ok(Some(live)) => live,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(CategorizedError {
                        category: category_of(&e),
                        message: format!("cannot read {r} to prune it: {e}"),
                    });
                    continue;
                }
            };
            if !prunable(&live, uid, &s.field_manager) {
                continue;
            }
            tracing::info!(plugin = %s.field_manager, child = %r, "pruning a child no longer planned");
            if let Err(e) = delete(s, &r, live.metadata.uid.clone()).await {
                errors.push(e);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_goes_through_the_subresource() {
        let (main, status) = split_status(json!({
            "apiVersion": "v1", "kind": "Cluster",
            "metadata": {"name": "c", "namespace": "ns", "labels": {"a": "b"}},
            "status": {"ready": true}
        }));
        assert_eq!(main, None, "nothing but status: no main apply");
        assert_eq!(
            status.unwrap(),
            json!({"apiVersion": "v1", "kind": "Cluster",
                   "metadata": {"name": "c", "namespace": "ns"}, "status": {"ready": true}})
        );
        let (main, status) = split_status(json!({
            "apiVersion": "v1", "kind": "Cluster", "metadata": {"name": "c"},
            "spec": {"x": 1}, "status": {"ready": true}
        }));
        assert_eq!(
            main.unwrap(),
            json!({"apiVersion": "v1", "kind": "Cluster", "metadata": {"name": "c"}, "spec": {"x": 1}})
        );
        assert_eq!(status.unwrap()["status"]["ready"], true);
        let (main, status) = split_status(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        );
        assert!(
            main.is_some() && status.is_none(),
            "no status: a plain apply"
        );
        assert!(status_only(&json!({
            "apiVersion": "v1", "kind": "Cluster", "metadata": {"name": "c"}, "status": {}
        })));
        assert!(!status_only(&json!({
            "apiVersion": "v1", "kind": "Cluster", "metadata": {"name": "c"},
            "spec": {"x": 1}, "status": {}
        })));
        assert!(!status_only(
            &json!({"apiVersion": "v1", "kind": "ConfigMap"})
        ));
    }

    #[test]
    fn phase_errors_are_transient_or_terminal() {
        let transient = errors_health(
            "Apply",
            vec![CategorizedError {
                category: ErrorCategory::Infrastructure,
                message: "timeout".into(),
            }],
        );
        assert_eq!(transient.state, HealthState::Progressing);
        let terminal = errors_health(
            "Apply",
            vec![
                CategorizedError {
                    category: ErrorCategory::Infrastructure,
                    message: "timeout".into(),
                },
                CategorizedError {
                    category: ErrorCategory::Auth,
                    message: "refused".into(),
                },
            ],
        );
        assert_eq!(terminal.state, HealthState::Failed);
        assert_eq!(terminal.message, "timeout; refused");
        assert_eq!(terminal.reason, "Infrastructure");
    }
}
