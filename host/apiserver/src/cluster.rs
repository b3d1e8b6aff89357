//! Shared server state: the store and the registry behind one lock, plus change notification.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::authz::aggregation;
use crate::authz::rbac::CLUSTER_ROLES;
use crate::error::ApiError;
use crate::logs::LogStore;
use crate::resource::{CRD_RESOURCE, NAMESPACE_RESOURCE, Registry, ResourceInfo};
use crate::service_accounts;
use crate::store::{ObjectKey, Store, StoreError};

/// Namespaces that always exist.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Store and registry, changed together under one lock.
#[derive(Debug)]
pub struct Inner {
    /// Objects and history.
    pub store: Store,
    /// Served resources.
    pub registry: Registry,
    /// Set when an object was removed, so garbage collection has work.
    pub removed_any: bool,
}

/// The state shared by all requests.
#[derive(Debug)]
pub struct Cluster {
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
    logs: LogStore,
}

/// The current time as RFC 3339 with second precision.
#[must_use]
pub fn now() -> String {
    timestamp(chrono::Utc::now())
}

/// `at` as RFC 3339 with second precision, as `metav1.Time` is written.
#[must_use]
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An RFC 3339 time (a `metav1.Time`), in UTC; `None` when it is not one.
#[must_use]
pub fn parse_timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `apimeta.SetStatusCondition` (and `podutil.UpdatePodCondition`): `condition` replaces the one
/// of its type in `status.conditions` (added when there is none), keeping the old
/// `lastTransitionTime` while the condition's status stays the same.
pub(crate) fn set_condition(status: &mut Value, condition: Value) {
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    match conditions
        .iter_mut()
        .find(|c| c["type"] == condition["type"])
    {
        Some(old) => {
            let mut condition = condition;
            if old["status"] == condition["status"] {
                condition["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            *old = condition;
        }
        None => conditions.push(condition),
    }
}

/// A new object uid.
#[must_use]
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Cluster {
    /// Opens the store (loading `state_dir`), serves stored CRDs and creates the default namespaces.
    ///
    /// # Errors
    /// [`StoreError`] when the state cannot be loaded or written.
    pub fn open(state_dir: Option<&Path>, history_limit: usize) -> Result<Self, StoreError> {
        let store = Store::open(state_dir, history_limit)?;
        let mut registry = Registry::default();
        for (_, crd) in store.list(CRD_RESOURCE, None, None) {
            if let Err(error) = registry.set_crd(crd) {
                tracing::warn!(%error, "stored CustomResourceDefinition is not served");
            }
        }
        let mut inner = Inner {
            store,
            registry,
            removed_any: false,
        };
        for ns in DEFAULT_NAMESPACES {
            let key = (String::new(), (*ns).to_string());
            if inner.store.get(NAMESPACE_RESOURCE, &key).is_none() {
                let object = json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "uid": new_uid(), "creationTimestamp": now(), "generation": 1},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                });
                inner.store.put(NAMESPACE_RESOURCE, key, object)?;
            }
        }
        // Events that an earlier version stored apart under events.k8s.io join the one store.
        let apart = "events.events.k8s.io";
        let moved: Vec<(ObjectKey, Value)> = inner
            .store
            .list(apart, None, None)
            .map(|(k, v)| (k.clone(), crate::event_versions::to_core((**v).clone())))
            .collect();
        for (key, event) in moved {
            inner.store.remove(apart, &key)?;
            if inner
                .store
                .get(crate::event_versions::STORAGE, &key)
                .is_none()
            {
                inner
                    .store
                    .put(crate::event_versions::STORAGE, key, event)?;
            }
        }
        // The service account controller's first pass: namespaces loaded from the state
        // directory hold `default` as well.
        let namespaces: Vec<String> = inner
            .store
            .list(NAMESPACE_RESOURCE, None, None)
            .map(|((_, name), _)| name.clone())
            .collect();
        for ns in namespaces {
            service_accounts::ensure_default(&mut inner, &ns)?;
        }
        crate::priority_classes::bootstrap(&mut inner)?;
        crate::api_services::sync(&mut inner)?;
        let rv = inner.store.resource_version();
        Ok(Self {
            inner: Mutex::new(inner),
            version: watch::Sender::new(rv),
            logs: LogStore::default(),
        })
    }

    /// Locks the state. Never hold the guard across an await.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells watchers that the resource version moved.
    pub fn notify(&self, rv: u64) {
        self.version.send_if_modified(|current| {
            let moved = *current != rv;
            *current = rv;
            moved
        });
    }

    /// Pod logs (not objects: kept apart from the store and never persisted).
    #[must_use]
    pub fn logs(&self) -> &LogStore {
        &self.logs
    }

    /// A receiver woken on every change.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// The store key of a stored object.
fn key_of(object: &Value) -> ObjectKey {
    let text = |k: &str| {
        object["metadata"][k]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (text("namespace"), text("name"))
}

impl Inner {
    /// Resolves a storage key's resource info.
    pub fn info(&self, group_resource: &str) -> Option<Arc<ResourceInfo>> {
        self.registry.by_group_resource(group_resource)
    }

    /// Stores an object, applying CRD side effects.
    ///
    /// # Errors
    /// [`ApiError::Storage`] when the write is not durable; a 500 [`ApiError::Failure`] when it
    /// would take the stored objects past the storage quota.
    pub fn put(
        &mut self,
        info: &ResourceInfo,
        key: ObjectKey,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let object = if crate::event_versions::is_events_api(info) {
            crate::event_versions::to_core(object)
        } else if crate::autoscaler_versions::is_v1(info) {
            let stored = self.store.get(&info.storage_resource(), &key);
            crate::autoscaler_versions::to_v2_over(object, stored.map(|s| &**s))
        } else {
            object
        };
        let stored = self
            .store
            .put(&info.storage_resource(), key, object)
            .map_err(ApiError::from)?;
        if info.group_resource() == CRD_RESOURCE {
            if let Err(error) = self.registry.set_crd(&stored) {
                tracing::warn!(%error, "CustomResourceDefinition is not served");
            }
            crate::api_services::sync(self).map_err(ApiError::from)?;
        }
        if info.group_resource() == NAMESPACE_RESOURCE {
            service_accounts::ensure_default(self, &key_of(&stored).1).map_err(ApiError::from)?;
        }
        if info.group_resource() == CLUSTER_ROLES {
            aggregation::reconcile(self)?;
            if let Some(current) = self.store.get(CLUSTER_ROLES, &key_of(&stored)) {
                return Ok(current.clone());
            }
        }
        Ok(stored)
    }

    /// Removes an object now, with its side effects: a namespace takes its objects along, a CRD its
    /// custom objects and its served kinds.
    ///
    /// # Errors
    /// [`ApiError::Storage`] when the write is not durable.
    pub fn remove_now(
        &mut self,
        group_resource: &str,
        key: &ObjectKey,
    ) -> Result<Option<Arc<Value>>, ApiError> {
        let removed = self
            .store
            .remove(group_resource, key)
            .map_err(ApiError::from)?;
        let Some(removed) = removed else {
            return Ok(None);
        };
        self.removed_any = true;
        crate::api_services::refresh(self, group_resource, &key.0).map_err(ApiError::from)?;
        if group_resource == service_accounts::RESOURCE && key.1 == service_accounts::DEFAULT {
            service_accounts::ensure_default(self, &key.0).map_err(ApiError::from)?;
        }
        if group_resource == CLUSTER_ROLES {
            aggregation::reconcile(self)?;
        }
        if group_resource == CRD_RESOURCE {
            if let Ok(resources) = crate::resource::crd_resources(&removed)
                && let Some(first) = resources.first()
            {
                let gr = first.group_resource();
                let keys: Vec<ObjectKey> = self
                    .store
                    .list(&gr, None, None)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.store.remove(&gr, &k).map_err(ApiError::from)?;
                }
            }
            self.registry.remove_crd(&key.1);
            crate::api_services::sync(self).map_err(ApiError::from)?;
        } else if group_resource == NAMESPACE_RESOURCE {
            let namespaced: Vec<String> = self
                .store
                .resources()
                .filter(|gr| self.info(gr).is_some_and(|i| i.namespaced))
                .cloned()
                .collect();
            for gr in namespaced {
                let keys: Vec<ObjectKey> = self
                    .store
                    .list(&gr, Some(key.1.as_str()), None)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.store.remove(&gr, &k).map_err(ApiError::from)?;
                }
            }
        }
        Ok(Some(removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stored_apart_by_an_earlier_version_join_the_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let key = ("default".to_owned(), "e".to_owned());
        {
            let mut store = Store::open(Some(dir.path()), 10).unwrap();
            let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "e", "namespace": "default"}, "note": "n"});
            store
                .put("events.events.k8s.io", key.clone(), event)
                .unwrap();
        }
        let cluster = Cluster::open(Some(dir.path()), 10).unwrap();
        let inner = cluster.lock();
        assert!(
            inner
                .store
                .list("events.events.k8s.io", None, None)
                .next()
                .is_none()
        );
        let event = inner.store.get("events", &key).unwrap();
        assert_eq!(
            (&event["apiVersion"], &event["message"]),
            (&json!("v1"), &json!("n"))
        );
    }

    #[test]
    fn default_namespaces_exist() {
        let cluster = Cluster::open(None, 10).unwrap();
        let inner = cluster.lock();
        assert_eq!(
            inner.store.list(NAMESPACE_RESOURCE, None, None).count(),
            DEFAULT_NAMESPACES.len()
        );
    }
}
