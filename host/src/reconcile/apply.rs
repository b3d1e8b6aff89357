//! Applying a plan: server-side apply with owner references, `status` through the status
//! subresource, deletes, and pruning of children no longer planned.

use super::Shared;
use crate::contract::{
    CategorizedError, ComponentHealth, ErrorCategory, Gvk, HealthState, ObjectRef, PlanEntry,
};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
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
pub(super) fn errors_health(component: &str, errors: Vec<CategorizedError>) -> ComponentHealth {
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
            .map_or_else(String::new, |e| format!("{:?}", e.category)),
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

/// Whether a plan entry writes nothing but status (how a plugin reports to another object, such
/// as its owner).
pub fn status_only(entry: &PlanEntry) -> bool {
    match entry {
        PlanEntry::Apply(v) | PlanEntry::ApplyWithoutOwnerRef(v) => {
            matches!(split_status(v.clone()), (None, Some(_)))
        }
        PlanEntry::Delete(_) => false,
    }
}

/// The object a plan entry is about, with the owner's namespace for namespaced kinds that name
/// none (the namespace is fixed once the kind is resolved; this is for pruning).
pub fn planned_object(entry: &PlanEntry, owner_namespace: Option<&str>) -> Option<ObjectRef> {
    let mut r = match entry {
        PlanEntry::Apply(v) | PlanEntry::ApplyWithoutOwnerRef(v) => ObjectRef::from_json(v)?,
        PlanEntry::Delete(r) => r.clone(),
    };
    if r.namespace.is_none() {
        r.namespace = owner_namespace.map(str::to_owned);
    }
    r.uid = None;
    Some(r)
}

/// Apply or delete one plan entry on behalf of `owner`.
pub(super) async fn apply_entry(
    s: &Shared,
    owner: &DynamicObject,
    owner_ref: &ObjectRef,
    entry: PlanEntry,
) -> Result<(), CategorizedError> {
    let (obj, with_owner) = match entry {
        PlanEntry::Apply(v) => (v, true),
        PlanEntry::ApplyWithoutOwnerRef(v) => (v, false),
        PlanEntry::Delete(r) => return delete(s, &r).await,
    };
    let target = ObjectRef::from_json(&obj).ok_or_else(|| CategorizedError {
        category: ErrorCategory::InvalidSpec,
        message: "planned object lacks apiVersion, kind or metadata.name".into(),
    })?;
    let (ar, namespaced) = resource_for(s, &target.gvk).await?;
    let namespace = if namespaced {
        target
            .namespace
            .clone()
            .or_else(|| owner_ref.namespace.clone())
    } else {
        None
    };
    let (main, status) = split_status(obj);
    let params = PatchParams::apply(&s.field_manager).force();
    let api = api(s, &ar, namespace.as_deref());
    let set_namespace = |mut v: Value| {
        if let Some(ns) = &namespace
            && let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), json!(ns));
        }
        v
    };
    if let Some(mut main) = main.map(set_namespace) {
        if with_owner {
            main["metadata"]["ownerReferences"] = json!([{
                "apiVersion": owner_ref.gvk.api_version(),
                "kind": owner_ref.gvk.kind,
                "name": owner_ref.name,
                "uid": owner.metadata.uid.clone().unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }]);
        }
        api.patch(&target.name, &params, &Patch::Apply(&main))
            .await
            .map_err(|e| CategorizedError {
                category: category_of(&e),
                message: format!("cannot apply {target}: {e}"),
            })?;
    }
    if let Some(status) = status.map(set_namespace) {
        api.patch_status(&target.name, &params, &Patch::Apply(&status))
            .await
            .map_err(|e| CategorizedError {
                category: category_of(&e),
                message: format!("cannot apply the status of {target}: {e}"),
            })?;
    }
    Ok(())
}

/// Delete one object; an object already gone is fine.
pub(super) async fn delete(s: &Shared, r: &ObjectRef) -> Result<(), CategorizedError> {
    let (ar, namespaced) = resource_for(s, &r.gvk).await?;
    let namespace = r.namespace.as_deref().filter(|_| namespaced);
    match api(s, &ar, namespace)
        .delete(&r.name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(CategorizedError {
            category: category_of(&e),
            message: format!("cannot delete {r}: {e}"),
        }),
    }
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
            tracing::info!(plugin = %s.field_manager, child = %r, "pruning a child no longer planned");
            if let Err(e) = delete(s, &r).await {
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
        assert!(status_only(&PlanEntry::ApplyWithoutOwnerRef(json!({
            "apiVersion": "v1", "kind": "Cluster", "metadata": {"name": "c"}, "status": {}
        }))));
    }

    #[test]
    fn planned_objects_default_to_the_owner_namespace() {
        let e = PlanEntry::Apply(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}),
        );
        let r = planned_object(&e, Some("ns")).unwrap();
        assert_eq!(r.to_string(), "Service ns/s");
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
