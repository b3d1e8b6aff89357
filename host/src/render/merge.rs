//! A rendered plan applied to observed objects the way the API server would: server-side apply
//! (the embedded API server's own merge, managed fields and all) for applies and status applies,
//! deletes and prunes removed, the object's status merge-patched. `capstan render --diff` and the
//! idempotence and convergence checks read the result.

use super::Reconciled;
use super::observed::gvk_of;
use crate::contract::ObjectRef;
use capstan_apiserver::apply::{ApplyError, FieldScope, Writer, server_side_apply};
use capstan_apiserver::fieldtype::Node;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The fixed time merges record in managed fields (so that renders compare byte for byte).
const MERGE_TIME: &str = "1970-01-01T00:00:00Z";

/// Objects by reference (uid left out).
pub type State = BTreeMap<ObjectRef, Value>;

/// The key of an object in a [`State`].
pub(crate) fn key(obj: &Value) -> Option<ObjectRef> {
    ObjectRef::from_json(obj).map(|mut r| {
        r.uid = None;
        r
    })
}

/// A stable uid for an object that has none, from its reference: what `capstan render` gives an
/// object created offline (and an `--object` without one), so owner references can name it.
pub fn derived_uid(r: &ObjectRef) -> String {
    let digest = Sha256::digest(format!(
        "{}/{}/{}/{}",
        r.gvk.api_version(),
        r.gvk.kind,
        r.namespace.as_deref().unwrap_or_default(),
        r.name
    ));
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// How `object`'s lists and maps merge: a built-in kind's (its group has no dot, or is a
/// `*.k8s.io` group, which CRDs may not take) by the Kubernetes API types' markers; a custom
/// kind's schema is not known here, so its maps merge by key and its lists whole.
fn types_of(object: &Value) -> Node<'_> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if !group.contains('.') || group.ends_with(".k8s.io") {
        Node::builtin(object["kind"].as_str().unwrap_or_default())
    } else {
        Node::Deduced
    }
}

/// `desired` server-side applied by `manager` over `live` (or created), with `scope` the fields it
/// may touch; a created object gets a derived uid and generation 1.
///
/// # Errors
/// [`ApplyError::Conflict`] when other managers own fields set to different values and `force`
/// is off.
pub fn apply(
    live: Option<&Value>,
    desired: &Value,
    manager: &str,
    scope: FieldScope,
    force: bool,
) -> Result<Value, ApplyError> {
    let api_version = desired["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: if scope == FieldScope::StatusOnly {
            "status"
        } else {
            ""
        },
        now: MERGE_TIME,
        scope,
        types: types_of(desired),
    };
    let mut merged = server_side_apply(live, desired.clone(), &writer, force)?;
    // What the API server keeps from the request path, not from the merge.
    for field in ["name", "namespace"] {
        if let Some(v) = desired["metadata"].get(field) {
            merged["metadata"][field] = v.clone();
        }
    }
    if live.is_none()
        && let Some(r) = key(desired)
    {
        merged["metadata"]["uid"] = json!(derived_uid(&r));
        merged["metadata"]["generation"] = json!(1);
    }
    if let Some(live) = live
        && live.get("spec") != merged.get("spec")
    {
        // The API server bumps the generation on a spec change.
        let generation = live["metadata"]["generation"].as_i64().unwrap_or(1);
        merged["metadata"]["generation"] = json!(generation + 1);
    }
    Ok(merged)
}

/// The state after `rendered` was carried out on `state`, as a controller would: its applies
/// (forced where the host forces), its status applies, its deletes and prunes, and the object's
/// status. A conflicting apply leaves its object as it was and is returned with it.
pub fn carry_out(
    state: &State,
    rendered: &Reconciled,
    manager: &str,
) -> (State, Vec<(ObjectRef, ApplyError)>) {
    let mut next = state.clone();
    let mut conflicts = Vec::new();
    let mut put = |desired: &Value, scope: FieldScope, force: bool, next: &mut State| {
        let Some(r) = key(desired) else { return };
        match apply(next.get(&r), desired, manager, scope, force) {
            Ok(v) => {
                next.insert(r, v);
            }
            Err(e) => conflicts.push((r, e)),
        }
    };
    for a in &rendered.applies {
        put(&a.object, FieldScope::NoStatus, a.force, &mut next);
    }
    for s in &rendered.status_applies {
        put(&s.object, FieldScope::StatusOnly, s.force, &mut next);
    }
    for r in rendered.deletes.iter().chain(&rendered.prunes) {
        let mut r = r.clone();
        r.uid = None;
        next.remove(&r);
    }
    let mut object = rendered.object.clone();
    object.uid = None;
    if let Some(status) = &rendered.status_patch
        && let Some(obj) = next.get_mut(&object)
    {
        obj["status"] = crate::reconcile::merged(&obj["status"], status);
    }
    (next, conflicts)
}

/// Every object of `state`, each under its key.
pub fn state_of<'a>(objects: impl IntoIterator<Item = &'a Value>) -> State {
    objects
        .into_iter()
        .filter(|o| gvk_of(o).is_some())
        .filter_map(|o| Some((key(o)?, o.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Gvk;

    #[test]
    fn derived_uids_are_stable_and_look_like_uids() {
        let r = ObjectRef {
            gvk: Gvk::new("apps", "v1", "Deployment"),
            namespace: Some("default".into()),
            name: "shop".into(),
            uid: None,
        };
        let uid = derived_uid(&r);
        assert_eq!(uid, derived_uid(&r));
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.matches('-').count(), 4);
        let other = ObjectRef {
            name: "cart".into(),
            ..r
        };
        assert_ne!(uid, derived_uid(&other));
    }

    #[test]
    fn an_apply_keeps_fields_it_does_not_set_and_bumps_the_generation() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "d", "generation": 3, "labels": {"x": "1"}},
            "spec": {"a": 1}});
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "d"}, "spec": {"a": 2}});
        let merged = apply(Some(&live), &desired, "m", FieldScope::NoStatus, false).unwrap();
        assert_eq!(merged["metadata"]["labels"]["x"], "1");
        assert_eq!(merged["spec"]["a"], 2);
        assert_eq!(merged["metadata"]["generation"], 4);
        let again = apply(Some(&merged), &desired, "m", FieldScope::NoStatus, false).unwrap();
        assert_eq!(again, merged, "applying the same again changes nothing");
    }
}
