//! The plan a reconciler returns: objects to apply (with or without owner reference) and to delete.
//!
//! [`PlanEntry`] and [`ObjectRef`] are the contract's own types (generated from `wit/`).

use crate::Error;
use crate::manifest::Gvk;
pub use crate::wit::capstan::controller::types::{ObjectRef, PlanEntry};
use serde::Serialize;

impl ObjectRef {
    /// A reference to a k8s-openapi object kind by namespace and name (no UID).
    pub fn of<K: k8s_openapi::Resource>(namespace: Option<&str>, name: &str) -> Self {
        Self::new(Gvk::of::<K>(), namespace, name)
    }

    /// A reference to an object of any kind by namespace and name (no UID).
    pub fn new(gvk: Gvk, namespace: Option<&str>, name: &str) -> Self {
        Self {
            gvk,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            uid: None,
        }
    }
}

/// What `plan` returns: built with [`Plan::apply`], [`Plan::apply_without_owner_ref`], [`Plan::delete`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    entries: Vec<PlanEntry>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply `obj` with an owner reference: it is garbage-collected with its owner.
    ///
    /// `obj` must serialize with `apiVersion`, `kind` and `metadata.name` (k8s-openapi types do).
    pub fn apply(&mut self, obj: &impl Serialize) -> Result<&mut Self, Error> {
        let json = to_object(obj)?;
        self.entries.push(PlanEntry::Apply(json));
        Ok(self)
    }

    /// Apply `obj` without an owner reference: it survives its owner.
    pub fn apply_without_owner_ref(&mut self, obj: &impl Serialize) -> Result<&mut Self, Error> {
        let json = to_object(obj)?;
        self.entries.push(PlanEntry::ApplyWithoutOwnerRef(json));
        Ok(self)
    }

    /// Delete an object.
    pub fn delete(&mut self, obj: ObjectRef) -> &mut Self {
        self.entries.push(PlanEntry::Delete(obj));
        self
    }

    /// The planned entries, in order.
    pub fn entries(&self) -> &[PlanEntry] {
        &self.entries
    }

    /// The objects planned for apply (with or without owner reference), as JSON, for assertions
    /// in tests.
    pub fn applied(&self) -> impl Iterator<Item = serde_json::Value> + '_ {
        self.entries.iter().filter_map(|e| match e {
            PlanEntry::Apply(json) | PlanEntry::ApplyWithoutOwnerRef(json) => {
                serde_json::from_str(json).ok()
            }
            PlanEntry::Delete(_) => None,
        })
    }

    /// Consume the plan into its entries.
    pub fn into_entries(self) -> Vec<PlanEntry> {
        self.entries
    }
}

/// `obj` as JSON text, once it is known to have `apiVersion`, `kind` and `metadata.name`.
fn to_object(obj: &impl Serialize) -> Result<String, Error> {
    let value = serde_json::to_value(obj)
        .map_err(|e| Error::invalid_spec(format!("cannot serialize planned object: {e}")))?;
    let has = |ptr: &str| value.pointer(ptr).and_then(|v| v.as_str()).is_some();
    if !(has("/apiVersion") && has("/kind") && has("/metadata/name")) {
        return Err(Error::invalid_spec(
            "planned object needs apiVersion, kind and metadata.name",
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn apply_keeps_type_meta() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut plan = Plan::new();
        plan.apply(&cm)
            .unwrap()
            .apply_without_owner_ref(&cm)
            .unwrap();
        plan.delete(ObjectRef::of::<ConfigMap>(Some("ns"), "old"));
        assert_eq!(plan.entries().len(), 3);
        let first = plan.applied().next().unwrap();
        assert_eq!(first["kind"], "ConfigMap");
        assert_eq!(first["apiVersion"], "v1");
    }

    #[test]
    fn nameless_object_is_refused() {
        let mut plan = Plan::new();
        let err = plan.apply(&ConfigMap::default()).unwrap_err();
        assert!(err.message.contains("metadata.name"), "{err}");
    }
}
