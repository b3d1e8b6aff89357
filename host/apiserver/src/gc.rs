//! Deletion: finalizers, propagation policies and garbage collection through ownerReferences.
//!
//! Simplifications: collection runs synchronously after each removal (no controller lag); a
//! dependent is collected when none of its owners exist; Orphan strips the owner references right
//! away instead of through an `orphan` finalizer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Inner, now};
use crate::error::ApiError;
use crate::namespace;
use crate::resource::NAMESPACE_RESOURCE;
use crate::store::ObjectKey;

/// The finalizer that keeps an owner until its dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";

/// How dependents are handled when an owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete the owner now; dependents are collected afterwards (the default).
    #[default]
    Background,
    /// Delete dependents first; the owner waits with a `foregroundDeletion` finalizer.
    Foreground,
    /// Keep dependents, removing their owner references.
    Orphan,
}

/// An unknown propagation policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GcError {
    /// Not Foreground, Background or Orphan.
    #[error("unknown propagationPolicy {0:?}")]
    UnknownPolicy(String),
}

impl Propagation {
    /// Parses a `propagationPolicy`.
    ///
    /// # Errors
    /// [`GcError::UnknownPolicy`].
    pub fn parse(text: &str) -> Result<Self, GcError> {
        match text {
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            "Orphan" => Ok(Self::Orphan),
            other => Err(GcError::UnknownPolicy(other.to_string())),
        }
    }
}

fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str()).collect())
        .unwrap_or_default()
}

/// The object's `metadata.finalizers`.
pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn set_meta(object: &mut Value, key: &str, value: Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
            meta.remove(key);
        } else {
            meta.insert(key.into(), value);
        }
    }
}

/// Whether an object is marked for deletion.
#[must_use]
pub fn is_deleting(object: &Value) -> bool {
    object["metadata"]["deletionTimestamp"].is_string()
}

/// Whether an object marked for deletion has no finalizers left, so it can be removed.
#[must_use]
pub fn ready_to_remove(object: &Value) -> bool {
    is_deleting(object) && finalizers(object).is_empty()
}

/// The object marked for deletion (a deletion timestamp, grace period 0); unchanged when it
/// already is.
#[must_use]
pub fn marked(object: &Value) -> Value {
    let mut marked = object.clone();
    if !is_deleting(&marked) {
        set_meta(&mut marked, "deletionTimestamp", json!(now()));
        set_meta(&mut marked, "deletionGracePeriodSeconds", json!(0));
    }
    marked
}

/// An object's storage key: its resource and its (namespace, name).
pub type Located = (String, ObjectKey);

fn all_objects(inner: &Inner) -> Vec<(Located, Arc<Value>)> {
    let resources: Vec<String> = inner.store.resources().cloned().collect();
    resources
        .iter()
        .flat_map(|gr| {
            inner
                .store
                .list(gr, None, None)
                .map(move |(k, v)| ((gr.clone(), k.clone()), v.clone()))
        })
        .collect()
}

fn dependents_of(inner: &Inner, owner_uid: &str) -> Vec<(Located, Arc<Value>)> {
    all_objects(inner)
        .into_iter()
        .filter(|(_, o)| owner_uids(o).contains(&owner_uid))
        .collect()
}

/// Stores an object at its location, with the side effects of its kind when it is served.
pub(crate) fn put_raw(
    inner: &mut Inner,
    (gr, key): &Located,
    object: Value,
) -> Result<Arc<Value>, ApiError> {
    match inner.info(gr) {
        Some(info) => inner.put(&info, key.clone(), object),
        None => inner
            .store
            .put(gr, key.clone(), object)
            .map_err(ApiError::Storage),
    }
}

/// Deletes an object with a policy: marks it (deletionTimestamp) while finalizers remain, else
/// removes it; then collects garbage. Returns the marked or removed object.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub fn delete(
    inner: &mut Inner,
    at: &Located,
    object: &Value,
    policy: Propagation,
) -> Result<Arc<Value>, ApiError> {
    let owner_uid = uid(object).to_string();
    if policy == Propagation::Orphan {
        for (loc, dependent) in dependents_of(inner, &owner_uid) {
            let mut updated = (*dependent).clone();
            let refs: Vec<Value> = updated["metadata"]["ownerReferences"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter(|r| r["uid"].as_str() != Some(owner_uid.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            set_meta(&mut updated, "ownerReferences", Value::Array(refs));
            put_raw(inner, &loc, updated)?;
        }
    }
    if at.0 == NAMESPACE_RESOURCE && namespace::has_spec_finalizers(object) {
        // A namespace turns Terminating; the namespace controller's pass (in `collect`) empties
        // and then removes it.
        let result = if is_deleting(object) {
            Arc::new(object.clone())
        } else {
            put_raw(inner, at, namespace::mark(object))?
        };
        collect(inner)?;
        return Ok(inner.store.get(&at.0, &at.1).cloned().unwrap_or(result));
    }
    let mut fins = finalizers(object);
    if policy == Propagation::Foreground && !fins.iter().any(|f| f == FOREGROUND) {
        fins.push(FOREGROUND.to_string());
    }
    let result = if fins.is_empty() {
        let removed = inner.remove_now(&at.0, &at.1)?;
        removed.unwrap_or_else(|| Arc::new(object.clone()))
    } else if is_deleting(object) && fins == finalizers(object) {
        Arc::new(object.clone())
    } else {
        let mut marked = marked(object);
        set_meta(&mut marked, "finalizers", json!(fins));
        put_raw(inner, at, marked)?
    };
    collect(inner)?;
    Ok(result)
}

/// Deletes one object as the garbage collector and the namespace controller do, with no cascade
/// of its own: removes it when it has no finalizers, else marks it.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub(crate) fn delete_one(inner: &mut Inner, at: &Located, object: &Value) -> Result<(), ApiError> {
    if finalizers(object).is_empty() {
        inner.remove_now(&at.0, &at.1)?;
    } else if !is_deleting(object) {
        put_raw(inner, at, marked(object))?;
    }
    Ok(())
}

/// Runs garbage collection and the namespace controller's pass to a fixed point: removes
/// dependents whose owners are all gone, deletes dependents of foreground-deleting owners,
/// releases owners whose dependents are gone, and empties and removes terminating namespaces.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub fn collect(inner: &mut Inner) -> Result<(), ApiError> {
    for _ in 0..1000 {
        collect_dependents(inner)?;
        if !namespace::terminate(inner)? {
            break;
        }
    }
    inner.removed_any = false;
    Ok(())
}

fn collect_dependents(inner: &mut Inner) -> Result<(), ApiError> {
    for _ in 0..1000 {
        let mut changed = false;
        let objects = all_objects(inner);
        let uids: HashMap<&str, &Value> =
            objects.iter().map(|(_, o)| (uid(o), o.as_ref())).collect();
        let mut referenced: HashSet<&str> = HashSet::new();
        let mut work: Vec<(Located, Value, bool)> = Vec::new();
        for (loc, object) in &objects {
            let owners = owner_uids(object);
            referenced.extend(owners.iter().copied());
            if owners.is_empty() || is_deleting(object) {
                continue;
            }
            let live: Vec<&Value> = owners.iter().filter_map(|u| uids.get(u).copied()).collect();
            let orphaned = live.is_empty() && inner.removed_any;
            let foreground = live
                .iter()
                .any(|o| is_deleting(o) && finalizers(o).iter().any(|f| f == FOREGROUND));
            if orphaned || foreground {
                work.push((loc.clone(), (**object).clone(), true));
            }
        }
        for (loc, object) in &objects {
            if is_deleting(object)
                && finalizers(object).iter().any(|f| f == FOREGROUND)
                && !referenced.contains(uid(object))
            {
                work.push((loc.clone(), (**object).clone(), false));
            }
        }
        drop(uids);
        for (loc, object, is_dependent) in work {
            changed = true;
            if is_dependent {
                delete_one(inner, &loc, &object)?;
            } else {
                let fins: Vec<String> = finalizers(&object)
                    .into_iter()
                    .filter(|f| f != FOREGROUND)
                    .collect();
                if fins.is_empty() {
                    inner.remove_now(&loc.0, &loc.1)?;
                } else {
                    let mut released = object;
                    set_meta(&mut released, "finalizers", json!(fins));
                    put_raw(inner, &loc, released)?;
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;

    fn cm(name: &str, uid: &str, owner: Option<&str>) -> Value {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": uid}});
        if let Some(o) = owner {
            v["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": o}]);
        }
        v
    }

    fn setup() -> (Cluster, Located) {
        let cluster = Cluster::open(None, 100).unwrap();
        {
            let mut inner = cluster.lock();
            inner
                .store
                .put(
                    "configmaps",
                    ("default".into(), "owner".into()),
                    cm("owner", "u1", None),
                )
                .unwrap();
            inner
                .store
                .put(
                    "configmaps",
                    ("default".into(), "dep".into()),
                    cm("dep", "u2", Some("u1")),
                )
                .unwrap();
            inner
                .store
                .put(
                    "configmaps",
                    ("default".into(), "grand".into()),
                    cm("grand", "u3", Some("u2")),
                )
                .unwrap();
        }
        (
            cluster,
            ("configmaps".into(), ("default".into(), "owner".into())),
        )
    }

    #[test]
    fn background_cascades() {
        let (cluster, at) = setup();
        let mut inner = cluster.lock();
        let owner = inner.store.get("configmaps", &at.1).unwrap().clone();
        delete(&mut inner, &at, &owner, Propagation::Background).unwrap();
        assert_eq!(inner.store.list("configmaps", None, None).count(), 0);
    }

    #[test]
    fn orphan_keeps_dependents() {
        let (cluster, at) = setup();
        let mut inner = cluster.lock();
        let owner = inner.store.get("configmaps", &at.1).unwrap().clone();
        delete(&mut inner, &at, &owner, Propagation::Orphan).unwrap();
        let names: Vec<_> = inner
            .store
            .list("configmaps", None, None)
            .map(|(k, _)| k.1.clone())
            .collect();
        assert_eq!(names, vec!["dep", "grand"]);
        assert!(
            owner_uids(
                inner
                    .store
                    .get("configmaps", &("default".into(), "dep".into()))
                    .unwrap()
            )
            .is_empty()
        );
    }

    #[test]
    fn foreground_removes_owner_last() {
        let (cluster, at) = setup();
        let mut inner = cluster.lock();
        let owner = inner.store.get("configmaps", &at.1).unwrap().clone();
        delete(&mut inner, &at, &owner, Propagation::Foreground).unwrap();
        assert_eq!(inner.store.list("configmaps", None, None).count(), 0);
    }

    #[test]
    fn finalizer_keeps_object() {
        let (cluster, at) = setup();
        let mut inner = cluster.lock();
        let mut owner = (**inner.store.get("configmaps", &at.1).unwrap()).clone();
        owner["metadata"]["finalizers"] = json!(["example.com/keep"]);
        inner
            .store
            .put("configmaps", at.1.clone(), owner.clone())
            .unwrap();
        let marked = delete(&mut inner, &at, &owner, Propagation::Background).unwrap();
        assert!(is_deleting(&marked));
        assert_eq!(inner.store.list("configmaps", None, None).count(), 3);
    }
}
