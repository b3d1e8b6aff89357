//! Whether an update changed more than an object's status: kube-runtime's generation predicate,
//! with the metadata a controller acts on that the generation does not count. The reconcile loop
//! queues an object on such updates only, and handler plugins that ask for spec changes only
//! (`changes: spec` in their manifest's event filter) receive only those.
//!
//! The API server bumps `metadata.generation` on every change of the spec and never on a write of
//! the status subresource, so an update whose generation stayed the same is nearly always the
//! controller's own status write coming back. Changes the generation does not count but a
//! reconcile must see still pass: deletion (`deletionTimestamp`), finalizers, owner references,
//! labels and annotations. An object without a generation (a kind the server does not version
//! that way) falls back to comparing everything outside `status`.

use kube::api::DynamicObject;
use serde_json::Value;

/// Whether the update from `old` to `new` changed more than the status: the generation, the
/// deletion, finalizers, owner references, labels or annotations (without a generation: anything
/// outside `status`).
#[must_use]
pub fn changed(old: &DynamicObject, new: &DynamicObject) -> bool {
    let (o, n) = (&old.metadata, &new.metadata);
    match (o.generation, n.generation) {
        (Some(a), Some(b)) => {
            a != b
                || o.deletion_timestamp != n.deletion_timestamp
                || o.finalizers != n.finalizers
                || o.owner_references != n.owner_references
                || o.labels != n.labels
                || o.annotations != n.annotations
        }
        _ => !only_status_changed(old, new),
    }
}

/// Whether two versions of an object differ only in `status` (and what every write changes:
/// resourceVersion, managedFields).
fn only_status_changed(old: &DynamicObject, new: &DynamicObject) -> bool {
    let meta = |o: &DynamicObject| {
        let mut m = o.metadata.clone();
        m.resource_version = None;
        m.managed_fields = None;
        m
    };
    let (Some(a), Some(b)) = (old.data.as_object(), new.data.as_object()) else {
        return false;
    };
    let outside_status =
        |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != "status").count();
    let same_outside_status = outside_status(a) == outside_status(b)
        && a.iter()
            .filter(|(k, _)| *k != "status")
            .all(|(k, v)| b.get(k) == Some(v));
    same_outside_status && meta(old) == meta(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn obj(generation: Option<i64>, rv: &str, extra: Value) -> DynamicObject {
        let mut v = serde_json::json!({
            "apiVersion": "x.dev/v1", "kind": "WebApp",
            "metadata": {"name": "a", "namespace": "d", "resourceVersion": rv},
            "spec": {"image": "nginx"}, "status": {"phase": "Creating"}
        });
        if let Some(g) = generation {
            v["metadata"]["generation"] = g.into();
        }
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                m.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_status_write_with_the_same_generation_is_not_a_change() {
        let base = obj(Some(1), "1", serde_json::json!({}));
        let status = obj(
            Some(1),
            "2",
            serde_json::json!({"status": {"phase": "Ready"}}),
        );
        assert!(!changed(&base, &status));
        let spec = obj(
            Some(2),
            "3",
            serde_json::json!({"spec": {"image": "httpd"}}),
        );
        assert!(changed(&base, &spec), "a new generation is a change");
    }

    #[test]
    fn metadata_a_controller_acts_on_is_a_change_whatever_the_generation() {
        let base = obj(Some(1), "1", serde_json::json!({}));
        type Edit = fn(&mut DynamicObject);
        let edits: [(&str, Edit); 5] = [
            ("deletion", |o| {
                o.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
            }),
            ("finalizers", |o| {
                o.metadata.finalizers = Some(vec!["x/y".into()])
            }),
            ("owner references", |o| {
                o.metadata.owner_references = Some(vec![OwnerReference::default()]);
            }),
            ("labels", |o| {
                o.metadata.labels = Some([("a".into(), "b".into())].into());
            }),
            ("annotations", |o| {
                o.metadata.annotations = Some([("a".into(), "b".into())].into());
            }),
        ];
        for (what, edit) in edits {
            let mut new = base.clone();
            new.metadata.resource_version = Some("2".into());
            edit(&mut new);
            assert!(changed(&base, &new), "{what}");
        }
    }

    #[test]
    fn without_a_generation_everything_outside_status_counts() {
        let base = obj(None, "1", serde_json::json!({}));
        let status = obj(None, "2", serde_json::json!({"status": {"phase": "Ready"}}));
        assert!(!changed(&base, &status));
        let spec = obj(None, "3", serde_json::json!({"spec": {"image": "httpd"}}));
        assert!(changed(&base, &spec));
        let added = obj(None, "4", serde_json::json!({"extra": 1}));
        assert!(changed(&base, &added));
    }
}
