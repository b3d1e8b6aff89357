//! The cluster as `capstan render` sees it: the objects it was given (`--observed`), held in
//! fixed informers ([`InformerHandle::fixed`]) so the plugin's cache reads and the host's plan
//! checks read them through the same code as a controller's live informers.

use crate::contract::{CategorizedError, ErrorCategory, Gvk, ObjectRef};
use crate::informer::InformerHandle;
use crate::reconcile::World;
use capstan_apiserver::resource::{Registry, ResourceInfo};
use futures::future::BoxFuture;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// An observed object that cannot stand for a Kubernetes object.
#[derive(Debug, thiserror::Error)]
pub enum ObservedError {
    /// It lacks `apiVersion`, `kind` or `metadata.name`.
    #[error("observed object {index}: apiVersion, kind and metadata.name are required")]
    Incomplete {
        /// Position among the observed objects, from 0.
        index: usize,
    },
    /// It does not parse as a Kubernetes object.
    #[error("observed object {index} ({object}) is not a Kubernetes object")]
    Invalid {
        /// Position among the observed objects, from 0.
        index: usize,
        /// `Kind namespace/name`.
        object: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A CustomResourceDefinition among them is not valid.
    #[error("observed CustomResourceDefinition {name} is not valid")]
    Crd {
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: capstan_apiserver::resource::CrdError,
    },
}

/// The observed objects, by kind, and the kinds they make known: the built-in kinds of the
/// embedded API server and those of every CustomResourceDefinition among them.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Objects by kind, then `(namespace, name)`: one object a key, the last given wins.
    objects: BTreeMap<Gvk, BTreeMap<(Option<String>, String), Value>>,
    registry: Registry,
}

/// The kind of an object (from `apiVersion` and `kind`).
pub(crate) fn gvk_of(obj: &Value) -> Option<Gvk> {
    ObjectRef::from_json(obj).map(|r| r.gvk)
}

impl Observed {
    /// Observe `objects`. Objects of namespaced kinds (and of unknown kinds) without a namespace
    /// are in `default`, as `kubectl apply` would put them.
    ///
    /// # Errors
    /// [`ObservedError`] naming the first object that is not a Kubernetes object.
    pub fn new(objects: impl IntoIterator<Item = Value>) -> Result<Self, ObservedError> {
        let objects: Vec<Value> = objects.into_iter().collect();
        let mut registry = Registry::default();
        for obj in &objects {
            if gvk_of(obj).is_some_and(|g| {
                g.group == "apiextensions.k8s.io" && g.kind == "CustomResourceDefinition"
            }) {
                registry.set_crd(obj).map_err(|source| ObservedError::Crd {
                    name: obj["metadata"]["name"].as_str().unwrap_or_default().into(),
                    source,
                })?;
            }
        }
        let mut observed = Self {
            objects: BTreeMap::new(),
            registry,
        };
        for (index, obj) in objects.into_iter().enumerate() {
            observed.insert(index, obj)?;
        }
        Ok(observed)
    }

    /// Add (or replace) one object, its namespace defaulted (see [`Observed::new`]); returns its
    /// reference.
    ///
    /// # Errors
    /// [`ObservedError`] when it is not a Kubernetes object.
    pub fn insert(&mut self, index: usize, mut obj: Value) -> Result<ObjectRef, ObservedError> {
        let Some(mut r) = ObjectRef::from_json(&obj) else {
            return Err(ObservedError::Incomplete { index });
        };
        if let Err(source) = serde_json::from_value::<DynamicObject>(obj.clone()) {
            return Err(ObservedError::Invalid {
                index,
                object: r.to_string(),
                source,
            });
        }
        if self.namespaced(&r.gvk).unwrap_or(true) {
            if r.namespace.is_none() {
                r.namespace = Some("default".into());
                obj["metadata"]["namespace"] = Value::String("default".into());
            }
        } else if r.namespace.take().is_some()
            && let Some(meta) = obj["metadata"].as_object_mut()
        {
            meta.remove("namespace");
        }
        self.objects
            .entry(r.gvk.clone())
            .or_default()
            .insert((r.namespace.clone(), r.name.clone()), obj);
        Ok(r)
    }

    /// Every observed object, by kind, namespace and name.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.objects.values().flat_map(BTreeMap::values)
    }

    /// The observed object `r` refers to (its uid ignored).
    pub fn get(&self, r: &ObjectRef) -> Option<&Value> {
        self.objects
            .get(&r.gvk)?
            .get(&(r.namespace.clone(), r.name.clone()))
    }

    fn info(&self, gvk: &Gvk) -> Option<&ResourceInfo> {
        self.registry
            .all()
            .find(|r| r.group == gvk.group && r.version == gvk.version && r.kind == gvk.kind)
            .map(AsRef::as_ref)
    }

    /// Whether objects of `gvk` are namespaced: as served (a built-in kind, or one of an observed
    /// CustomResourceDefinition), else as its observed objects are; `None` for a kind neither
    /// knows.
    pub fn namespaced(&self, gvk: &Gvk) -> Option<bool> {
        if let Some(info) = self.info(gvk) {
            return Some(info.namespaced);
        }
        let objects = self.objects.get(gvk)?;
        objects.keys().next().map(|(ns, _)| ns.is_some())
    }

    /// The resource of `gvk` (its plural as served, else guessed as kube does).
    fn resource(&self, gvk: &Gvk) -> ApiResource {
        let query = GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
        match self.info(gvk) {
            Some(info) => ApiResource::from_gvk_with_plural(&query, &info.plural),
            None => ApiResource::from_gvk(&query),
        }
    }

    /// Fixed informers of `kinds`, holding the observed objects of each (an unknown kind counts
    /// as namespaced).
    pub(crate) fn informers(&self, kinds: &[Gvk]) -> HashMap<Gvk, InformerHandle> {
        kinds
            .iter()
            .map(|gvk| {
                let objects = self
                    .objects
                    .get(gvk)
                    .into_iter()
                    .flat_map(BTreeMap::values)
                    .filter_map(|v| serde_json::from_value::<DynamicObject>(v.clone()).ok());
                let handle = InformerHandle::fixed(
                    gvk,
                    self.resource(gvk),
                    self.namespaced(gvk).unwrap_or(true),
                    objects,
                );
                (gvk.clone(), handle)
            })
            .collect()
    }
}

/// The observed cluster as a plan checker sees it, for one plugin (its field manager).
pub(crate) struct ObservedWorld<'a> {
    /// The objects.
    pub(crate) observed: &'a Observed,
    /// `capstan-<plugin>`.
    pub(crate) field_manager: String,
}

impl World for ObservedWorld<'_> {
    fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// As discovery would answer: a kind neither served nor observed cannot be resolved.
    fn namespaced<'a>(&'a self, gvk: &'a Gvk) -> BoxFuture<'a, Result<bool, CategorizedError>> {
        let known = self.observed.namespaced(gvk).ok_or_else(|| CategorizedError {
            category: ErrorCategory::InvalidSpec,
            message: format!(
                "cannot resolve {gvk}: neither a built-in kind nor one of an observed CustomResourceDefinition or object"
            ),
        });
        Box::pin(std::future::ready(known))
    }

    /// The observed objects keep their managed fields: what a live read would give.
    fn existing<'a>(
        &'a self,
        target: &'a ObjectRef,
        _managed: bool,
    ) -> BoxFuture<'a, Result<Option<DynamicObject>, CategorizedError>> {
        let found = self
            .observed
            .get(target)
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_default_by_the_kind_scope() {
        let o = Observed::new([
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}}),
        ])
        .unwrap();
        let cm = ObjectRef {
            gvk: Gvk::new("", "v1", "ConfigMap"),
            namespace: Some("default".into()),
            name: "a".into(),
            uid: None,
        };
        assert!(
            o.get(&cm).is_some(),
            "a ConfigMap without namespace is in default"
        );
        let ns = ObjectRef {
            gvk: Gvk::new("", "v1", "Namespace"),
            namespace: None,
            name: "n".into(),
            uid: None,
        };
        assert!(o.get(&ns).unwrap()["metadata"].get("namespace").is_none());
        assert_eq!(o.namespaced(&Gvk::new("x.dev", "v1", "Thing")), None);
    }

    #[test]
    fn crds_make_their_kinds_known() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.x.dev"},
            "spec": {"group": "x.dev", "scope": "Cluster",
                "names": {"plural": "things", "singular": "thing", "kind": "Thing", "listKind": "ThingList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        let o = Observed::new([crd]).unwrap();
        assert_eq!(o.namespaced(&Gvk::new("x.dev", "v1", "Thing")), Some(false));
        assert!(matches!(
            Observed::new([json!({"kind": "ConfigMap"})]),
            Err(ObservedError::Incomplete { index: 0 })
        ));
    }
}
