//! The plan a reconciler returns: objects to apply (with or without owner reference) and to delete.

use crate::Error;
use crate::manifest::Gvk;
use serde::Serialize;

/// A reference to one object, for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Its type.
    pub gvk: Gvk,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a k8s-openapi object kind by namespace and name.
    pub fn of<K: k8s_openapi::Resource>(namespace: Option<&str>, name: &str) -> Self {
        Self {
            gvk: Gvk::of::<K>(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

/// One planned action.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanEntry {
    /// Server-side apply with an owner reference to the reconciled object.
    Apply(serde_json::Value),
    /// Server-side apply without an owner reference.
    ApplyWithoutOwnerRef(serde_json::Value),
    /// Delete.
    Delete(ObjectRef),
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
        let value = to_object(obj)?;
        self.entries.push(PlanEntry::Apply(value));
        Ok(self)
    }

    /// Apply `obj` without an owner reference: it survives its owner.
    pub fn apply_without_owner_ref(&mut self, obj: &impl Serialize) -> Result<&mut Self, Error> {
        let value = to_object(obj)?;
        self.entries.push(PlanEntry::ApplyWithoutOwnerRef(value));
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

    /// The objects planned for apply (with or without owner reference), for assertions in tests.
    pub fn applied(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.entries.iter().filter_map(|e| match e {
            PlanEntry::Apply(v) | PlanEntry::ApplyWithoutOwnerRef(v) => Some(v),
            PlanEntry::Delete(_) => None,
        })
    }

    /// Consume the plan into its entries.
    pub fn into_entries(self) -> Vec<PlanEntry> {
        self.entries
    }
}

fn to_object(obj: &impl Serialize) -> Result<serde_json::Value, Error> {
    let value = serde_json::to_value(obj)
        .map_err(|e| Error::invalid_spec(format!("cannot serialize planned object: {e}")))?;
    let has = |ptr: &str| value.pointer(ptr).and_then(|v| v.as_str()).is_some();
    if !(has("/apiVersion") && has("/kind") && has("/metadata/name")) {
        return Err(Error::invalid_spec(
            "planned object needs apiVersion, kind and metadata.name",
        ));
    }
    Ok(value)
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
