//! Property-based test support for plugin authors (feature `testing`, native builds):
//! [proptest](https://docs.rs/proptest) strategies producing varied Kubernetes metadata (names,
//! namespaces, labels, generations, uids) and replica counts, and [`plan_contract`], which checks
//! that a [`Reconciler`]'s plan is deterministic and idempotent for one object and observed state.
//!
//! ```ignore
//! use capstan_sdk::testing::{object_meta, plan_contract};
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #[test]
//!     fn plans_are_stable(meta in object_meta(), replicas in 0..5i32) {
//!         let app = serde_json::json!({"metadata": meta, "spec": {"replicas": replicas}});
//!         plan_contract::<MyReconciler>(&app, &[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
//!     }
//! }
//! ```
//!
//! The host checks the same contract on the built component, in its sandbox:
//! `capstan render PLUGIN.wasm --object OBJ.yaml --check`.

use crate::plan::PlanEntry;
use crate::{Cache, Error, Reconciler};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// A plan that breaks the contract, or a reconciler that could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The object does not deserialize into the reconciler's object type.
    #[error("the object is not a {0}")]
    Object(&'static str, #[source] serde_json::Error),
    /// `fetch` or `plan` returned an error.
    #[error("the reconciler failed")]
    Reconciler(#[source] Error),
    /// The same object and observed state planned differently.
    #[error("not deterministic: {0}")]
    NotDeterministic(String),
    /// With its planned objects observed, the reconciler planned something else.
    #[error("not idempotent: {0}")]
    NotIdempotent(String),
}

/// A DNS-1123 label (what names and namespaces of most kinds must be), 1 to 63 characters.
pub fn dns_label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
}

/// A namespace: `default`, a short one, or any DNS-1123 label.
pub fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("default".to_owned()), "[a-z]{1,8}", dns_label(),]
}

/// Labels: up to 4, with optional DNS-subdomain prefixes and values of 0 to 63 characters.
pub fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = (
        "([a-z]{1,10}(\\.[a-z]{1,10}){0,2}/)?",
        "[A-Za-z0-9]([A-Za-z0-9_.-]{0,30}[A-Za-z0-9])?",
    )
        .prop_map(|(prefix, name)| format!("{prefix}{name}"));
    let value = "([A-Za-z0-9]([A-Za-z0-9_.-]{0,30}[A-Za-z0-9])?)?";
    prop::collection::btree_map(key, value, 0..4)
}

/// A uid, as the API server gives one.
pub fn uid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
}

/// Metadata of a stored namespaced object: name, namespace, labels, uid, generation.
pub fn object_meta() -> impl Strategy<Value = ObjectMeta> {
    (dns_label(), namespace(), labels(), uid(), 1..50i64).prop_map(
        |(name, namespace, labels, uid, generation)| ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            labels: (!labels.is_empty()).then_some(labels),
            uid: Some(uid),
            generation: Some(generation),
            ..Default::default()
        },
    )
}

/// Replica counts a workload asks for: mostly small, sometimes zero or large.
pub fn replicas() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 1..5i32, 1 => Just(0), 1 => 5..1000i32]
}

/// The plan of `obj` with `observed` in the cache: fetch, then plan.
fn plan_of<R: Reconciler>(
    obj: &R::Object,
    observed: &[Value],
) -> Result<Vec<PlanEntry>, ContractError> {
    let cache = Cache::from_objects(observed.to_vec());
    let observation = R::fetch(obj, &cache).map_err(ContractError::Reconciler)?;
    R::plan(obj, &observation)
        .map(crate::Plan::into_entries)
        .map_err(ContractError::Reconciler)
}

fn describe(entries: &[PlanEntry]) -> String {
    entries
        .iter()
        .map(|e| match e {
            PlanEntry::Apply(j) => format!("apply {j}"),
            PlanEntry::ApplyWithoutOwnerRef(j) => format!("apply (no owner) {j}"),
            PlanEntry::Delete(r) => format!("delete {r:?}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first entry where two plans differ, both ways.
fn first_difference(a: &[PlanEntry], b: &[PlanEntry]) -> String {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    format!(
        "entry {i}: {} then {}",
        describe(a.get(i..=i).unwrap_or_default()),
        describe(b.get(i..=i).unwrap_or_default())
    )
}

/// Check `R`'s plan contract for `obj` (as JSON) with `observed` in the cache: planning twice gives
/// the same plan (deterministic), and planning again with the planned objects in the cache (as the
/// host would observe them once applied) gives the same plan again (idempotent).
///
/// # Errors
/// The [`ContractError`] naming what breaks.
pub fn plan_contract<R: Reconciler>(obj: &Value, observed: &[Value]) -> Result<(), ContractError> {
    let typed: R::Object = serde_json::from_value(obj.clone())
        .map_err(|e| ContractError::Object(std::any::type_name::<R::Object>(), e))?;
    let first = plan_of::<R>(&typed, observed)?;
    let again = plan_of::<R>(&typed, observed)?;
    if first != again {
        return Err(ContractError::NotDeterministic(first_difference(
            &first, &again,
        )));
    }
    let namespace = obj["metadata"]["namespace"].clone();
    let mut applied: Vec<Value> = observed.to_vec();
    for entry in &first {
        if let PlanEntry::Apply(j) | PlanEntry::ApplyWithoutOwnerRef(j) = entry
            && let Ok(mut o) = serde_json::from_str::<Value>(j)
        {
            if o["metadata"]["namespace"].is_null() {
                o["metadata"]["namespace"] = namespace.clone();
            }
            applied.retain(|x| {
                (
                    &x["kind"],
                    &x["metadata"]["namespace"],
                    &x["metadata"]["name"],
                ) != (
                    &o["kind"],
                    &o["metadata"]["namespace"],
                    &o["metadata"]["name"],
                )
            });
            applied.push(o);
        }
    }
    let after = plan_of::<R>(&typed, &applied)?;
    if first != after {
        return Err(ContractError::NotIdempotent(first_difference(
            &first, &after,
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ComponentHealth, Manifest, Plan, Plugin};
    use k8s_openapi::api::core::v1::ConfigMap;

    struct Counter;
    impl Plugin for Counter {
        fn manifest() -> Manifest {
            Manifest::new("counter", "0.1.0")
        }
    }
    /// Plans a ConfigMap holding how many ConfigMaps it observed: not idempotent.
    impl Reconciler for Counter {
        type Object = Value;
        type Observation = usize;
        fn fetch(obj: &Value, cache: &Cache) -> Result<usize, Error> {
            Ok(cache
                .list::<ConfigMap>(obj["metadata"]["namespace"].as_str(), None)
                .map_or(0, |l| l.len()))
        }
        fn plan(_: &Value, seen: &usize) -> Result<Plan, Error> {
            let mut p = Plan::new();
            p.apply(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "count"}, "data": {"seen": seen.to_string()}}))?;
            Ok(p)
        }
        fn health(_: &Value, _: &usize) -> Vec<ComponentHealth> {
            vec![]
        }
    }

    proptest! {
        #[test]
        fn generated_metadata_follows_kubernetes_rules(meta in object_meta()) {
            let name = meta.name.unwrap();
            prop_assert!(!name.is_empty() && name.len() <= 63);
            prop_assert!(!name.starts_with('-') && !name.ends_with('-'));
            prop_assert!(meta.generation.unwrap() >= 1);
        }

        #[test]
        fn a_plan_of_what_it_observed_is_not_idempotent(meta in object_meta()) {
            let obj = serde_json::json!({"metadata": meta});
            let e = plan_contract::<Counter>(&obj, &[]).unwrap_err();
            prop_assert!(matches!(e, ContractError::NotIdempotent(_)), "{e}");
        }
    }
}
