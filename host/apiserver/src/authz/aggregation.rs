//! ClusterRole aggregation, as kube-controller-manager's `clusterroleaggregation` controller keeps
//! it: the rules of a ClusterRole with an `aggregationRule` are the rules of every other ClusterRole
//! its selectors match (in name order, without repeats). Run after every change of a ClusterRole,
//! to a fixed point, so aggregated roles are current when the write is answered.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use serde::Deserialize as _;
use serde_json::Value;

use super::rbac::CLUSTER_ROLES;
use crate::cluster::Inner;
use crate::error::ApiError;
use crate::selector::Selector;

/// The rules `role` aggregates from `roles` (None when it has no aggregation rule). Selectors that
/// cannot be used select nothing.
fn aggregated(role: &ClusterRole, roles: &[ClusterRole]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        let selector = match Selector::from_label_selector(selector) {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(role = ?role.metadata.name, %error, "unusable aggregation selector");
                continue;
            }
        };
        for other in roles {
            if other.metadata.name == role.metadata.name {
                continue;
            }
            let labels = serde_json::json!({"metadata": {"labels": other.metadata.labels}});
            if !selector.matches_labels(&labels) {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Brings the rules of every aggregated ClusterRole up to date; returns whether any changed.
/// Stored ClusterRoles that cannot be read take no part. Rounds are bounded by the number of
/// aggregated roles (a chain of aggregations settles in that many; a cycle only grows).
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub fn reconcile(inner: &mut Inner) -> Result<bool, ApiError> {
    let mut changed = false;
    let rounds = inner.store.list(CLUSTER_ROLES, None, None).count() + 1;
    for _ in 0..rounds {
        let roles: Vec<ClusterRole> = inner
            .store
            .list(CLUSTER_ROLES, None, None)
            .filter_map(|(_, v)| ClusterRole::deserialize(v.as_ref()).ok())
            .collect();
        let mut updates = Vec::new();
        for role in &roles {
            let Some(rules) = aggregated(role, &roles) else {
                continue;
            };
            if rules != role.rules.clone().unwrap_or_default() {
                updates.push((role.metadata.name.clone().unwrap_or_default(), rules));
            }
        }
        if updates.is_empty() {
            return Ok(changed);
        }
        for (name, rules) in updates {
            let key = (String::new(), name);
            let Some(stored) = inner.store.get(CLUSTER_ROLES, &key) else {
                continue;
            };
            let mut object = Value::clone(stored);
            object["rules"] = serde_json::to_value(&rules).unwrap_or_default();
            inner
                .store
                .put(CLUSTER_ROLES, key, object)
                .map_err(ApiError::from)?;
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use serde_json::json;

    fn put(inner: &mut Inner, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        inner
            .store
            .put(CLUSTER_ROLES, (String::new(), name), object)
            .unwrap();
    }

    fn rules(inner: &Inner, name: &str) -> Value {
        inner
            .store
            .get(CLUSTER_ROLES, &(String::new(), name.into()))
            .unwrap()["rules"]
            .clone()
    }

    #[test]
    fn aggregated_roles_follow_the_roles_they_select() {
        let cluster = Cluster::open(None, 10).unwrap();
        let mut inner = cluster.lock();
        let pods = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let cms = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]});
        put(
            &mut inner,
            json!({"metadata": {"name": "top"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-top": "true"}}]}}),
        );
        put(
            &mut inner,
            json!({"metadata": {"name": "mid", "labels": {"to-top": "true"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-mid": "true"}}]}}),
        );
        put(
            &mut inner,
            json!({"metadata": {"name": "a", "labels": {"to-mid": "true"}}, "rules": [pods]}),
        );
        put(
            &mut inner,
            json!({"metadata": {"name": "b", "labels": {"to-mid": "true", "to-top": "true"}}, "rules": [pods, cms]}),
        );
        put(
            &mut inner,
            json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        );
        assert!(reconcile(&mut inner).unwrap());
        assert_eq!(rules(&inner, "mid"), json!([pods, cms]));
        assert_eq!(
            rules(&inner, "top"),
            json!([pods, cms]),
            "through mid, without repeats"
        );
        assert!(!reconcile(&mut inner).unwrap(), "settled");
        // A role that stops matching takes its rules away.
        put(
            &mut inner,
            json!({"metadata": {"name": "b"}, "rules": [pods, cms]}),
        );
        assert!(reconcile(&mut inner).unwrap());
        assert_eq!(rules(&inner, "mid"), json!([pods]));
        assert_eq!(rules(&inner, "top"), json!([pods]));
    }
}
