//! Kubernetes' RBAC bootstrap policy (`policy/cluster-roles.yaml`, `policy/cluster-role-bindings.yaml`),
//! kept as kube-apiserver keeps it when RBAC is on: every role and binding is created when missing;
//! one that exists and is not annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`
//! gets back the rules, aggregation selectors, subjects, labels and annotations it lacks (nothing
//! is taken away).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{AggregationRule, ClusterRole, ClusterRoleBinding};
use serde::Deserialize as _;
use serde_json::{Value, json};

use super::aggregation;
use super::escalation::covers;
use super::rbac::{CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES};
use crate::cluster::{Cluster, Inner, new_uid, now};
use crate::error::ApiError;

/// The bootstrap ClusterRoles.
const CLUSTER_ROLES_YAML: &str = include_str!("policy/cluster-roles.yaml");
/// The bootstrap ClusterRoleBindings.
const CLUSTER_ROLE_BINDINGS_YAML: &str = include_str!("policy/cluster-role-bindings.yaml");

/// The label on every bootstrap object.
pub const BOOTSTRAP_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
/// The annotation that, set to `"false"`, stops reconciliation of a bootstrap object.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The bootstrap policy cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The embedded policy does not parse (a defect of this build).
    #[error("the embedded bootstrap policy does not parse")]
    Policy(#[source] serde_saphyr::Error),
    /// A bootstrap object cannot be encoded.
    #[error("encoding a bootstrap object")]
    Encode(#[source] serde_json::Error),
    /// The RBAC kinds are not served.
    #[error("the RBAC kinds are not served")]
    NotServed,
    /// Storing an object failed.
    #[error("storing the bootstrap policy")]
    Store(#[source] ApiError),
}

/// The bootstrap ClusterRoles.
///
/// # Errors
/// [`BootstrapError::Policy`] when the embedded policy does not parse.
pub fn cluster_roles() -> Result<Vec<ClusterRole>, BootstrapError> {
    serde_saphyr::from_str(CLUSTER_ROLES_YAML).map_err(BootstrapError::Policy)
}

/// The bootstrap ClusterRoleBindings.
///
/// # Errors
/// [`BootstrapError::Policy`] when the embedded policy does not parse.
pub fn cluster_role_bindings() -> Result<Vec<ClusterRoleBinding>, BootstrapError> {
    serde_saphyr::from_str(CLUSTER_ROLE_BINDINGS_YAML).map_err(BootstrapError::Policy)
}

/// Adds the bootstrap label and annotation.
fn mark(
    labels: &mut Option<BTreeMap<String, String>>,
    annotations: &mut Option<BTreeMap<String, String>>,
) {
    labels
        .get_or_insert_with(BTreeMap::new)
        .insert(BOOTSTRAP_LABEL.0.to_owned(), BOOTSTRAP_LABEL.1.to_owned());
    annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(AUTOUPDATE_ANNOTATION.to_owned(), "true".to_owned());
}

fn merge_maps(
    into: &mut Option<BTreeMap<String, String>>,
    from: Option<&BTreeMap<String, String>>,
) {
    for (k, v) in from.into_iter().flatten() {
        into.get_or_insert_with(BTreeMap::new)
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
}

/// The reconciled role, or None when the stored one needs nothing.
fn reconcile_role(existing: &ClusterRole, expected: &ClusterRole) -> Option<ClusterRole> {
    let mut out = existing.clone();
    merge_maps(&mut out.metadata.labels, expected.metadata.labels.as_ref());
    merge_maps(
        &mut out.metadata.annotations,
        expected.metadata.annotations.as_ref(),
    );
    if let Some(rule) = &expected.aggregation_rule {
        let mut selectors = out
            .aggregation_rule
            .as_ref()
            .and_then(|r| r.cluster_role_selectors.clone())
            .unwrap_or_default();
        for s in rule.cluster_role_selectors.iter().flatten() {
            if !selectors.contains(s) {
                selectors.push(s.clone());
            }
        }
        out.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(selectors),
        });
    } else {
        let mut rules = out.rules.clone().unwrap_or_default();
        for rule in expected.rules.iter().flatten() {
            if !covers(&rules, std::slice::from_ref(rule)).0 {
                rules.push(rule.clone());
            }
        }
        if out.rules.as_ref().is_some() || !rules.is_empty() {
            out.rules = Some(rules);
        }
    }
    (out != *existing).then_some(out)
}

/// The reconciled binding, or None when the stored one needs nothing.
fn reconcile_binding(
    existing: &ClusterRoleBinding,
    expected: &ClusterRoleBinding,
) -> Option<ClusterRoleBinding> {
    let mut out = existing.clone();
    merge_maps(&mut out.metadata.labels, expected.metadata.labels.as_ref());
    merge_maps(
        &mut out.metadata.annotations,
        expected.metadata.annotations.as_ref(),
    );
    out.role_ref = expected.role_ref.clone();
    let mut subjects = out.subjects.clone().unwrap_or_default();
    for s in expected.subjects.iter().flatten() {
        if !subjects.contains(s) {
            subjects.push(s.clone());
        }
    }
    out.subjects = Some(subjects);
    (out != *existing).then_some(out)
}

fn autoupdate(stored: &Value) -> bool {
    stored["metadata"]["annotations"][AUTOUPDATE_ANNOTATION].as_str() != Some("false")
}

/// Stores `object` (a new one gets a uid, creation time and generation; an existing one keeps
/// its identity).
fn store(
    inner: &mut Inner,
    resource: &str,
    kind: &str,
    name: &str,
    object: Value,
    existing: Option<&Value>,
) -> Result<(), BootstrapError> {
    let info = inner.info(resource).ok_or(BootstrapError::NotServed)?;
    let mut object = object;
    object["apiVersion"] = json!(info.api_version());
    object["kind"] = json!(kind);
    match existing {
        Some(old) => {
            for key in ["uid", "creationTimestamp", "generation"] {
                object["metadata"][key] = old["metadata"][key].clone();
            }
        }
        None => {
            object["metadata"]["uid"] = json!(new_uid());
            object["metadata"]["creationTimestamp"] = json!(now());
            object["metadata"]["generation"] = json!(1);
        }
    }
    inner
        .put(&info, (String::new(), name.to_owned()), object)
        .map_err(BootstrapError::Store)?;
    Ok(())
}

/// Creates or reconciles the bootstrap policy, then brings aggregated roles up to date.
///
/// # Errors
/// [`BootstrapError`] when the policy does not parse or cannot be stored.
pub fn ensure(cluster: &Cluster) -> Result<(), BootstrapError> {
    let mut inner = cluster.lock();
    for mut role in cluster_roles()? {
        mark(&mut role.metadata.labels, &mut role.metadata.annotations);
        let name = role.metadata.name.clone().unwrap_or_default();
        let key = (String::new(), name.clone());
        let stored = inner.store.get(CLUSTER_ROLES, &key).cloned();
        let object = match stored.as_deref() {
            None => Some(role),
            Some(stored) if autoupdate(stored) => match ClusterRole::deserialize(stored) {
                Ok(existing) => reconcile_role(&existing, &role),
                Err(_) => Some(role),
            },
            Some(_) => None,
        };
        if let Some(object) = object {
            let value = serde_json::to_value(&object).map_err(BootstrapError::Encode)?;
            store(
                &mut inner,
                CLUSTER_ROLES,
                "ClusterRole",
                &name,
                value,
                stored.as_deref(),
            )?;
            tracing::info!(role = %name, "bootstrap ClusterRole kept");
        }
    }
    for mut binding in cluster_role_bindings()? {
        mark(
            &mut binding.metadata.labels,
            &mut binding.metadata.annotations,
        );
        let name = binding.metadata.name.clone().unwrap_or_default();
        let key = (String::new(), name.clone());
        let stored = inner.store.get(CLUSTER_ROLE_BINDINGS, &key).cloned();
        let object = match stored.as_deref() {
            None => Some(binding),
            Some(stored) if autoupdate(stored) => match ClusterRoleBinding::deserialize(stored) {
                Ok(existing) => reconcile_binding(&existing, &binding),
                Err(_) => Some(binding),
            },
            Some(_) => None,
        };
        if let Some(object) = object {
            let value = serde_json::to_value(&object).map_err(BootstrapError::Encode)?;
            store(
                &mut inner,
                CLUSTER_ROLE_BINDINGS,
                "ClusterRoleBinding",
                &name,
                value,
                stored.as_deref(),
            )?;
            tracing::info!(binding = %name, "bootstrap ClusterRoleBinding kept");
        }
    }
    aggregation::reconcile(&mut inner).map_err(BootstrapError::Store)?;
    let rv = inner.store.resource_version();
    drop(inner);
    cluster.notify(rv);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_parses_and_binds_what_it_defines() {
        let roles = cluster_roles().unwrap();
        let names: Vec<&str> = roles
            .iter()
            .filter_map(|r| r.metadata.name.as_deref())
            .collect();
        for required in [
            "cluster-admin",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
            "admin",
            "edit",
            "view",
        ] {
            assert!(names.contains(&required), "{required}");
        }
        for binding in cluster_role_bindings().unwrap() {
            assert!(
                names.contains(&binding.role_ref.name.as_str()),
                "{:?}",
                binding.metadata.name
            );
        }
    }

    #[test]
    fn ensure_creates_reconciles_and_respects_opt_out() {
        let cluster = Cluster::open(None, 10).unwrap();
        ensure(&cluster).unwrap();
        let get = |resource: &str, name: &str| {
            cluster
                .lock()
                .store
                .get(resource, &(String::new(), name.into()))
                .unwrap()
                .clone()
        };
        let view = get(CLUSTER_ROLES, "view");
        assert!(
            view["rules"].as_array().is_some_and(|r| !r.is_empty()),
            "view is aggregated"
        );
        assert!(
            get(CLUSTER_ROLES, "edit")["rules"]
                .as_array()
                .unwrap()
                .len()
                > view["rules"].as_array().unwrap().len()
        );
        assert_eq!(
            get(CLUSTER_ROLES, "cluster-admin")["metadata"]["labels"][BOOTSTRAP_LABEL.0],
            "rbac-defaults"
        );
        // A bootstrap role that lost a rule gets it back; one opted out is left alone.
        let mut inner = cluster.lock();
        let mut basic = get_inner(&inner, CLUSTER_ROLES, "system:basic-user");
        basic["rules"] = json!([]);
        inner
            .store
            .put(
                CLUSTER_ROLES,
                (String::new(), "system:basic-user".into()),
                basic,
            )
            .unwrap();
        let mut discovery = get_inner(&inner, CLUSTER_ROLE_BINDINGS, "system:discovery");
        discovery["subjects"] = json!([]);
        discovery["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] = json!("false");
        inner
            .store
            .put(
                CLUSTER_ROLE_BINDINGS,
                (String::new(), "system:discovery".into()),
                discovery,
            )
            .unwrap();
        drop(inner);
        ensure(&cluster).unwrap();
        assert_eq!(
            get(CLUSTER_ROLES, "system:basic-user")["rules"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            get(CLUSTER_ROLE_BINDINGS, "system:discovery")["subjects"],
            json!([])
        );
        let rv = cluster.lock().store.resource_version();
        ensure(&cluster).unwrap();
        assert_eq!(
            cluster.lock().store.resource_version(),
            rv,
            "nothing to do twice"
        );
    }

    fn get_inner(inner: &Inner, resource: &str, name: &str) -> Value {
        Value::clone(
            inner
                .store
                .get(resource, &(String::new(), name.into()))
                .unwrap(),
        )
    }
}
