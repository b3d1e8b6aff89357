//! RBAC privilege-escalation prevention, as kube-apiserver's RBAC storage does it
//! (`pkg/registry/rbac`): a user may create or update a Role or ClusterRole only with every
//! permission it grants, or with `escalate` on it; a RoleBinding or ClusterRoleBinding only with
//! every permission of the role it refers to, or with `bind` on that role; an aggregation rule only
//! with every permission there is. Members of `system:masters` are not checked.

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleRef};
use serde::Deserialize as _;
use serde_json::Value;

use super::Authorizer;
use super::attributes::{Attributes, ResourceRequest};
use super::rbac::{
    self, CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, GROUP, ROLE_BINDINGS, ROLES, ResolutionError,
};
use crate::admission::Admission;
use crate::cluster::Inner;
use crate::error::ApiError;
use crate::user;
use crate::verbs::Target;

/// One rule broken down to at most one verb, group, resource and resource name
/// (`BreakdownRule`), or one verb and non-resource URL.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    for group in rule.api_groups.iter().flatten() {
        for resource in rule.resources.iter().flatten() {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..PolicyRule::default()
                };
                match rule.resource_names.as_deref() {
                    Some(names) if !names.is_empty() => {
                        out.extend(names.iter().map(|n| PolicyRule {
                            resource_names: one(n),
                            ..base.clone()
                        }));
                    }
                    _ => out.push(base),
                }
            }
        }
    }
    for url in rule.non_resource_urls.iter().flatten() {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn list(v: Option<&Vec<String>>) -> &[String] {
    v.map_or(&[], Vec::as_slice)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| set.contains(w))
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if owner.iter().any(|r| r == "*") || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        owner.contains(path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| owner.contains(&format!("*/{sub}")))
    })
}

fn urls_cover(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| {
        owner.iter().any(|o| {
            o == path
                || o.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
        })
    })
}

/// `ruleCovers`: whether `owner` covers the broken-down rule `sub`.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = owner.verbs.iter().any(|v| v == "*") || has_all(&owner.verbs, &sub.verbs);
    let owner_groups = list(owner.api_groups.as_ref());
    let groups = owner_groups.iter().any(|g| g == "*")
        || has_all(owner_groups, list(sub.api_groups.as_ref()));
    let resources = resources_cover(list(owner.resources.as_ref()), list(sub.resources.as_ref()));
    let urls = urls_cover(
        list(owner.non_resource_urls.as_ref()),
        list(sub.non_resource_urls.as_ref()),
    );
    let owner_names = list(owner.resource_names.as_ref());
    let sub_names = list(sub.resource_names.as_ref());
    let names = if sub_names.is_empty() {
        owner_names.is_empty()
    } else {
        owner_names.is_empty() || has_all(owner_names, sub_names)
    };
    verbs && groups && resources && urls && names
}

/// `Covers`: whether `owner` rules hold every permission of `servant` rules, and the broken-down
/// rules they do not.
#[must_use]
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// `CompactRules`: rules on one group and one resource (and at most one name) that differ only in
/// their verbs are merged.
fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let is_simple = rule.non_resource_urls.as_ref().is_none_or(Vec::is_empty)
            && list(rule.resource_names.as_ref()).len() <= 1
            && list(rule.api_groups.as_ref()).len() == 1
            && list(rule.resources.as_ref()).len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && list(s.resource_names.as_ref()) == list(rule.resource_names.as_ref())
        }) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a string list: `["a" "b"]`.
fn quoted(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", inner.join(" "))
}

/// `CompactString`: `{APIGroups:["g"], Resources:["r"], ResourceNames:["n"], Verbs:["v"]}`.
fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, items) in [
        ("APIGroups", list(rule.api_groups.as_ref())),
        ("Resources", list(rule.resources.as_ref())),
        ("NonResourceURLs", list(rule.non_resource_urls.as_ref())),
        ("ResourceNames", list(rule.resource_names.as_ref())),
        ("Verbs", rule.verbs.as_slice()),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", quoted(items)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// A write would grant permissions its author does not hold.
#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    /// Some permissions are not held (kube-apiserver's `ConfirmNoEscalation` message).
    #[error(
        "user {user:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}{}",
        quoted(groups),
        missing.join("\n"),
        resolution_suffix(resolution)
    )]
    NotHeld {
        /// The author's user name.
        user: String,
        /// The author's groups.
        groups: Vec<String>,
        /// The missing permissions, compacted, one `CompactString` each, sorted.
        missing: Vec<String>,
        /// The author's bindings whose roles could not be resolved.
        resolution: Vec<String>,
    },
}

fn resolution_suffix(resolution: &[String]) -> String {
    if resolution.is_empty() {
        String::new()
    } else {
        format!("; resolution errors: [{}]", resolution.join(" "))
    }
}

/// `ConfirmNoEscalation`: `user` holds, in `namespace` ("" for cluster scope), every permission
/// of `rules`.
///
/// # Errors
/// [`EscalationError::NotHeld`] with the missing permissions.
pub fn confirm_no_escalation(
    inner: &Inner,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), EscalationError> {
    let (owned, errors) = rbac::rules_for(inner, user, namespace);
    let owned: Vec<PolicyRule> = owned.into_iter().map(|(_, r)| r).collect();
    let (covered, missing) = covers(&owned, rules);
    if covered {
        return Ok(());
    }
    let mut missing: Vec<String> = compact(missing).iter().map(compact_string).collect();
    missing.sort();
    missing.dedup();
    Err(EscalationError::NotHeld {
        user: user::name(user).to_owned(),
        groups: user::groups(user).to_vec(),
        missing,
        resolution: errors.iter().map(ToString::to_string).collect(),
    })
}

/// Every permission there is: what setting an aggregation rule requires.
fn full_authority() -> Vec<PolicyRule> {
    let all = || vec!["*".to_owned()];
    vec![
        PolicyRule {
            verbs: all(),
            api_groups: Some(all()),
            resources: Some(all()),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: all(),
            non_resource_urls: Some(all()),
            ..PolicyRule::default()
        },
    ]
}

/// Whether only what garbage collection changes (owner references, finalizers) differs
/// (`IsOnlyMutatingGCFields`), besides what the server keeps itself.
fn only_gc_fields(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                m.remove(key);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// The escalation check of one requester's writes of RBAC objects (an [`Admission`]).
#[derive(Debug, Clone)]
pub struct EscalationCheck {
    /// The user the write acts as.
    pub user: UserInfo,
    /// The authorizer that decides `escalate` and `bind`.
    pub authorizer: Authorizer,
}

impl EscalationCheck {
    fn allowed(&self, inner: &Inner, verb: &str, request: ResourceRequest) -> bool {
        self.authorizer
            .decide(
                inner,
                &Attributes::resource(self.user.clone(), verb, request),
            )
            .allowed()
    }

    fn forbidden(target: &Target, name: &str, message: impl ToString) -> ApiError {
        ApiError::Forbidden {
            group: target.info.group.clone(),
            resource: target.info.plural.clone(),
            name: name.to_owned(),
            message: message.to_string(),
        }
    }

    fn admit_role(
        &self,
        inner: &Inner,
        target: &Target,
        namespace: &str,
        name: &str,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
        let escalate = ResourceRequest {
            group: GROUP.to_owned(),
            version: "*".to_owned(),
            resource: target.info.plural.clone(),
            subresource: String::new(),
            namespace: namespace.to_owned(),
            name: target.name.clone().unwrap_or_default(),
        };
        if self.allowed(inner, "escalate", escalate) {
            return Ok(());
        }
        let bad = |e: serde_json::Error| {
            ApiError::BadRequest(format!("the {} is not valid: {e}", target.info.kind))
        };
        let cluster_role = target.info.group_resource() == CLUSTER_ROLES;
        let (rules, aggregates) = if cluster_role {
            let role = ClusterRole::deserialize(new).map_err(bad)?;
            let before = old.is_some_and(|o| !o["aggregationRule"].is_null());
            (
                role.rules.unwrap_or_default(),
                role.aggregation_rule.is_some() || before,
            )
        } else {
            (
                Role::deserialize(new)
                    .map_err(bad)?
                    .rules
                    .unwrap_or_default(),
                false,
            )
        };
        confirm_no_escalation(inner, &self.user, namespace, &rules)
            .map_err(|m| Self::forbidden(target, name, m))?;
        if aggregates
            && confirm_no_escalation(inner, &self.user, namespace, &full_authority()).is_err()
        {
            return Err(Self::forbidden(
                target,
                name,
                "must have cluster-admin privileges to use the aggregationRule",
            ));
        }
        Ok(())
    }

    fn admit_binding(
        &self,
        inner: &Inner,
        target: &Target,
        namespace: &str,
        name: &str,
        new: &Value,
    ) -> Result<(), ApiError> {
        let role_ref = RoleRef::deserialize(&new["roleRef"]).map_err(|e| {
            ApiError::BadRequest(format!(
                "the {} has no valid roleRef: {e}",
                target.info.kind
            ))
        })?;
        let resource = match role_ref.kind.as_str() {
            "ClusterRole" => Some("clusterroles"),
            "Role" => Some("roles"),
            _ => None,
        };
        if let Some(resource) = resource {
            let bind = ResourceRequest {
                group: role_ref.api_group.clone(),
                version: String::new(),
                resource: resource.to_owned(),
                subresource: String::new(),
                namespace: namespace.to_owned(),
                name: role_ref.name.clone(),
            };
            if self.allowed(inner, "bind", bind) {
                return Ok(());
            }
        }
        let rules = rbac::role_rules(inner, &role_ref, namespace).map_err(|e| match e {
            ResolutionError::RoleNotFound(role) => ApiError::NotFound {
                resource: ROLES.to_owned(),
                name: role,
            },
            ResolutionError::ClusterRoleNotFound(role) => ApiError::NotFound {
                resource: CLUSTER_ROLES.to_owned(),
                name: role,
            },
            other => ApiError::BadRequest(other.to_string()),
        })?;
        confirm_no_escalation(inner, &self.user, namespace, &rules)
            .map_err(|m| Self::forbidden(target, name, m))
    }
}

impl Admission for EscalationCheck {
    fn admit(
        &self,
        inner: &Inner,
        target: &Target,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
        if user::in_group(&self.user, user::SYSTEM_MASTERS) {
            return Ok(());
        }
        let resource = target.info.group_resource();
        if ![ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS]
            .contains(&resource.as_str())
        {
            return Ok(());
        }
        if old.is_some_and(|o| only_gc_fields(o, new)) {
            return Ok(());
        }
        let namespace = if target.info.namespaced {
            target.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let name = new["metadata"]["name"].as_str().unwrap_or_default();
        if resource == ROLES || resource == CLUSTER_ROLES {
            self.admit_role(inner, target, &namespace, name, old, new)
        } else {
            self.admit_binding(inner, target, &namespace, name, new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            resource_names: (!names.is_empty()).then(|| v(names)),
            non_resource_urls: None,
        }
    }

    #[test]
    fn owners_cover_what_they_hold() {
        let owner = [
            rule(&["get", "list"], &[""], &["pods", "configmaps"], &[]),
            rule(&["get"], &["apps"], &["*/status"], &[]),
            rule(&["update"], &[""], &["secrets"], &["s1"]),
        ];
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods"], &[])]).0);
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods"], &["p1"])]).0);
        assert!(
            covers(
                &owner,
                &[rule(&["get"], &["apps"], &["deployments/status"], &[])]
            )
            .0
        );
        assert!(covers(&owner, &[rule(&["update"], &[""], &["secrets"], &["s1"])]).0);
        let (ok, missing) = covers(
            &owner,
            &[rule(&["get", "delete"], &["", "apps"], &["pods"], &[])],
        );
        assert!(!ok);
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(
            !covers(&owner, &[rule(&["update"], &[""], &["secrets"], &[])]).0,
            "names do not cover all"
        );
        assert!(!covers(&owner, &[rule(&["*"], &[""], &["pods"], &[])]).0);
        let root = full_authority();
        assert!(covers(&root, &[rule(&["escalate"], &["x"], &["y/z"], &["n"])]).0);
        assert!(covers(&root, &owner).0);
    }

    #[test]
    fn missing_rules_are_compacted_and_quoted_as_go_does() {
        let missing = compact(
            [
                rule(&["get"], &[""], &["pods"], &[]),
                rule(&["list"], &[""], &["pods"], &[]),
            ]
            .to_vec(),
        );
        assert_eq!(
            missing.iter().map(compact_string).collect::<Vec<_>>(),
            ["{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}"]
        );
    }

    #[test]
    fn only_garbage_collection_fields() {
        let old =
            serde_json::json!({"metadata": {"name": "r", "resourceVersion": "1"}, "rules": []});
        let mut new = old.clone();
        new["metadata"]["finalizers"] = serde_json::json!(["x"]);
        assert!(only_gc_fields(&old, &new));
        new["rules"] = serde_json::json!([{"verbs": ["*"]}]);
        assert!(!only_gc_fields(&old, &new));
    }
}
