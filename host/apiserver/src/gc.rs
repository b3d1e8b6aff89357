//! Deletion: finalizers, propagation policies and garbage collection through ownerReferences.
//!
//! As kube-apiserver's registry (`shouldOrphanDependents`, `deletionFinalizersForGarbageCollection`)
//! and kube-controller-manager's garbage collector (`attemptToDeleteItem`) do: an explicit policy
//! wins, then an `orphan` or `foregroundDeletion` finalizer already on the object, then the kind's
//! default (Orphan for `batch/v1` Jobs, Background for the rest); Orphan and Foreground work
//! through their finalizers, which watchers see; a dependent none of whose owners exists (by
//! kind, name and uid) is collected, and one with some live owners loses the dangling references.
//!
//! Simplification: the collector runs synchronously, after each removal and after each write of
//! an object with owner references (no controller lag).

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
/// The finalizer that keeps an owner until its dependents' references to it are removed.
pub const ORPHAN: &str = "orphan";

/// How dependents are handled when an owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete the owner now; dependents are collected afterwards (the default of most kinds).
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
    /// The policy of a delete that names none (`shouldOrphanDependents`): the object's own
    /// `orphan` or `foregroundDeletion` finalizer, else its kind's default. Only `batch/v1` Jobs
    /// (of the kinds served here) orphan by default, "for backwards compatibility"
    /// (`jobStrategy.DefaultGarbageCollectionPolicy`).
    #[must_use]
    pub fn default_for(group: &str, version: &str, kind: &str, object: &Value) -> Self {
        let fins = finalizers(object);
        if fins.iter().any(|f| f == ORPHAN) {
            Self::Orphan
        } else if fins.iter().any(|f| f == FOREGROUND) {
            Self::Foreground
        } else if (group, version, kind) == ("batch", "v1", "Job") {
            Self::Orphan
        } else {
            Self::Background
        }
    }

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
            .map_err(ApiError::from),
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
    if at.0 == NAMESPACE_RESOURCE {
        if policy == Propagation::Orphan {
            orphan_dependents(inner, &owner_uid)?;
        }
        if namespace::has_spec_finalizers(object) {
            // A namespace turns Terminating; the namespace controller's pass (in `collect`)
            // empties and then removes it.
            let result = if is_deleting(object) {
                Arc::new(object.clone())
            } else {
                put_raw(inner, at, namespace::mark(object))?
            };
            collect(inner)?;
            return Ok(inner.store.get(&at.0, &at.1).cloned().unwrap_or(result));
        }
    }
    // The policy's finalizer replaces the other's (`deletionFinalizersForGarbageCollection`).
    let mut fins: Vec<String> = finalizers(object)
        .into_iter()
        .filter(|f| f != ORPHAN && f != FOREGROUND)
        .collect();
    match policy {
        Propagation::Orphan if at.0 != NAMESPACE_RESOURCE => fins.push(ORPHAN.to_string()),
        Propagation::Foreground => fins.push(FOREGROUND.to_string()),
        _ => {}
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
    if fins.iter().any(|f| f == ORPHAN) {
        // The collector's part: the dependents lose their references, then the finalizer goes
        // (and the object with it, if it was the last).
        orphan_dependents(inner, &owner_uid)?;
        release(inner, at, ORPHAN)?;
    }
    collect(inner)?;
    Ok(result)
}

/// Removes the references to `owner_uid` from its dependents.
fn orphan_dependents(inner: &mut Inner, owner_uid: &str) -> Result<(), ApiError> {
    for (loc, dependent) in dependents_of(inner, owner_uid) {
        drop_references(inner, &loc, &dependent, &[owner_uid])?;
    }
    Ok(())
}

/// Stores `object` at `at` without its owner references to `uids`.
fn drop_references(
    inner: &mut Inner,
    at: &Located,
    object: &Value,
    uids: &[&str],
) -> Result<(), ApiError> {
    let refs: Vec<Value> = object["metadata"]["ownerReferences"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|r| !uids.contains(&r["uid"].as_str().unwrap_or_default()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut updated = object.clone();
    set_meta(&mut updated, "ownerReferences", Value::Array(refs));
    put_raw(inner, at, updated)?;
    Ok(())
}

/// Removes the collector's `finalizer` from the object at `at`, and the object with it when no
/// finalizer is left and it is being deleted.
pub(crate) fn release(inner: &mut Inner, at: &Located, finalizer: &str) -> Result<(), ApiError> {
    let Some(current) = inner.store.get(&at.0, &at.1).cloned() else {
        return Ok(());
    };
    let fins: Vec<String> = finalizers(&current)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    if fins.is_empty() && is_deleting(&current) {
        inner.remove_now(&at.0, &at.1)?;
    } else {
        let mut released = (*current).clone();
        set_meta(&mut released, "finalizers", json!(fins));
        put_raw(inner, at, released)?;
    }
    Ok(())
}

/// The collector's look at the owners of the object just written at `at` (`attemptToDeleteItem`):
/// an owner reference is live when an object of its kind and name (in the dependent's namespace,
/// for a namespaced kind) has its uid, dangling when none has; references to kinds not served
/// here are left alone. With no live owner the object is deleted (as its own `orphan` or
/// `foregroundDeletion` finalizer says, else Background); with some, the dangling references are
/// removed.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub(crate) fn check_owners(inner: &mut Inner, at: &Located) -> Result<(), ApiError> {
    let Some(object) = inner.store.get(&at.0, &at.1).cloned() else {
        return Ok(());
    };
    let Some(refs) = object["metadata"]["ownerReferences"].as_array() else {
        return Ok(());
    };
    if refs.is_empty() || is_deleting(&object) {
        return Ok(());
    }
    let mut live = 0;
    let mut dangling: Vec<&str> = Vec::new();
    for r in refs {
        let api_version = r["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = r["kind"].as_str().unwrap_or_default();
        let Some(info) = inner
            .registry
            .all()
            .find(|i| i.group == group && i.kind == kind)
            .cloned()
        else {
            live += 1;
            continue;
        };
        let namespace = if info.namespaced {
            at.1.0.clone()
        } else {
            String::new()
        };
        let name = r["name"].as_str().unwrap_or_default().to_string();
        let found = inner
            .store
            .get(&info.storage_resource(), &(namespace, name))
            .is_some_and(|owner| uid(owner) == r["uid"].as_str().unwrap_or_default());
        if found {
            live += 1;
        } else {
            dangling.push(r["uid"].as_str().unwrap_or_default());
        }
    }
    if dangling.is_empty() {
        return Ok(());
    }
    if live == 0 {
        let policy = match finalizers(&object) {
            f if f.iter().any(|f| f == ORPHAN) => Propagation::Orphan,
            f if f.iter().any(|f| f == FOREGROUND) => Propagation::Foreground,
            _ => Propagation::Background,
        };
        delete(inner, at, &object, policy)?;
        return Ok(());
    }
    drop_references(inner, at, &object, &dangling)
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

/// Runs garbage collection, the pvc- and pv-protection controllers and the namespace
/// controller's pass to a fixed point: removes dependents whose owners are all gone, deletes
/// dependents of foreground-deleting owners, releases owners whose dependents are gone and claims
/// and volumes nothing holds ([`crate::storage_protection`]), and empties and removes terminating
/// namespaces.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub fn collect(inner: &mut Inner) -> Result<(), ApiError> {
    for _ in 0..1000 {
        collect_dependents(inner)?;
        let released = crate::storage_protection::release(inner)?;
        if !namespace::terminate(inner)? && !released {
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
                release(inner, &loc, FOREGROUND)?;
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

    /// The object at `at`, stored again with `finalizers`.
    fn finalized(inner: &mut Inner, at: &Located, finalizers: Value) -> Value {
        let mut object = (**inner.store.get(&at.0, &at.1).unwrap()).clone();
        object["metadata"]["finalizers"] = finalizers;
        inner
            .store
            .put(&at.0, at.1.clone(), object.clone())
            .unwrap();
        object
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
        let owner = finalized(&mut inner, &at, json!(["example.com/keep"]));
        let marked = delete(&mut inner, &at, &owner, Propagation::Background).unwrap();
        assert!(is_deleting(&marked));
        assert_eq!(inner.store.list("configmaps", None, None).count(), 3);
    }

    #[test]
    fn orphan_answers_the_owner_marked_and_keeps_its_other_finalizers() {
        let (cluster, at) = setup();
        let mut inner = cluster.lock();
        let owner = finalized(&mut inner, &at, json!(["example.com/keep", FOREGROUND]));
        let answered = delete(&mut inner, &at, &owner, Propagation::Orphan).unwrap();
        assert!(is_deleting(&answered));
        assert_eq!(finalizers(&answered), ["example.com/keep", ORPHAN]);
        // The collector's part is done: references gone, its finalizer gone, the other stays.
        let stored = inner.store.get("configmaps", &at.1).unwrap().clone();
        assert_eq!(finalizers(&stored), ["example.com/keep"]);
        let dep = ("default".to_owned(), "dep".to_owned());
        assert!(owner_uids(inner.store.get("configmaps", &dep).unwrap()).is_empty());
    }

    #[test]
    fn the_default_policy_comes_from_finalizers_then_the_kind() {
        let plain = json!({"metadata": {}});
        let with = |f: &str| json!({"metadata": {"finalizers": [f]}});
        assert_eq!(
            Propagation::default_for("batch", "v1", "Job", &plain),
            Propagation::Orphan
        );
        assert_eq!(
            Propagation::default_for("apps", "v1", "Deployment", &plain),
            Propagation::Background
        );
        assert_eq!(
            Propagation::default_for("", "v1", "ConfigMap", &with(ORPHAN)),
            Propagation::Orphan
        );
        assert_eq!(
            Propagation::default_for("batch", "v1", "Job", &with(FOREGROUND)),
            Propagation::Foreground
        );
    }

    #[test]
    fn dangling_owners_are_collected_or_dropped() {
        let (cluster, _) = setup();
        let mut inner = cluster.lock();
        let refs = |uids: &[(&str, &str)]| {
            json!(uids
                .iter()
                .map(|(name, uid)| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}))
                .collect::<Vec<_>>())
        };
        let mut put = |name: &str, owners: Value| {
            let mut object = cm(name, &format!("uid-{name}"), None);
            object["metadata"]["ownerReferences"] = owners;
            let at: Located = ("configmaps".into(), ("default".into(), name.into()));
            inner.store.put(&at.0, at.1.clone(), object).unwrap();
            check_owners(&mut inner, &at).unwrap();
            inner.store.get(&at.0, &at.1).cloned()
        };
        // A missing owner, and an owner of that name with another uid: both dangle.
        assert!(put("a", refs(&[("nobody", "u9")])).is_none());
        assert!(put("b", refs(&[("owner", "not-u1")])).is_none());
        // One live owner keeps it; the dangling reference goes.
        let kept = put("c", refs(&[("nobody", "u9"), ("owner", "u1")])).unwrap();
        assert_eq!(owner_uids(&kept), ["u1"]);
        // Kinds not served here are left alone.
        let unknown =
            json!([{"apiVersion": "example.com/v1", "kind": "Nowhere", "name": "n", "uid": "u"}]);
        assert!(put("d", unknown).is_some());
    }
}
