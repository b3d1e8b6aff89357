//! The RBAC authorizer, as kube-apiserver's (`plugin/pkg/auth/authorizer/rbac` and
//! `pkg/registry/rbac/validation`): the rules a user holds in a namespace come from the
//! ClusterRoleBindings and that namespace's RoleBindings whose subjects name the user, its groups
//! or its ServiceAccount; a request is allowed when one of those rules matches it.

use std::fmt;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

use super::Decision;
use super::attributes::{Attributes, Target};
use crate::cluster::Inner;
use crate::user;

/// Storage key of Roles.
pub const ROLES: &str = "roles.rbac.authorization.k8s.io";
/// Storage key of ClusterRoles.
pub const CLUSTER_ROLES: &str = "clusterroles.rbac.authorization.k8s.io";
/// Storage key of RoleBindings.
pub const ROLE_BINDINGS: &str = "rolebindings.rbac.authorization.k8s.io";
/// Storage key of ClusterRoleBindings.
pub const CLUSTER_ROLE_BINDINGS: &str = "clusterrolebindings.rbac.authorization.k8s.io";
/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// The `*` of verbs, groups, resources and non-resource URLs.
const ALL: &str = "*";

/// A binding's role cannot be resolved (its rules are then left out: RBAC only ever allows).
#[derive(Debug, thiserror::Error)]
pub enum ResolutionError {
    /// The Role a RoleBinding names does not exist in the binding's namespace.
    #[error("role.rbac.authorization.k8s.io {0:?} not found")]
    RoleNotFound(String),
    /// The ClusterRole a binding names does not exist.
    #[error("clusterrole.rbac.authorization.k8s.io {0:?} not found")]
    ClusterRoleNotFound(String),
    /// The binding names neither a Role nor a ClusterRole.
    #[error("unsupported role reference kind: {0:?}")]
    UnsupportedKind(String),
    /// A stored RBAC object is not of its kind's shape.
    #[error("{resource} {name:?} cannot be read")]
    Malformed {
        /// Its storage key.
        resource: &'static str,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// `errors.NewAggregate(errs).Error()`: one message as is, several (without repeats) in brackets.
#[must_use]
pub fn aggregate(errors: &[ResolutionError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for error in errors {
        let text = error.to_string();
        if !seen.contains(&text) {
            seen.push(text);
        }
    }
    match seen.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The binding a rule comes from, told as kube-apiserver tells it in a reason: `ClusterRoleBinding
/// "b" of ClusterRole "r" to Group "g"` or `RoleBinding "b/ns" of Role "r" to ServiceAccount
/// "sa/ns"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The binding's name (`name/namespace` for a RoleBinding).
    pub binding: String,
    /// Whether it is a RoleBinding.
    pub namespaced: bool,
    /// The role it refers to.
    pub role_ref: RoleRef,
    /// The subject that matched (`Kind "name"`, `ServiceAccount "name/namespace"`).
    pub subject: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.namespaced {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        write!(
            f,
            "{kind} {:?} of {} {:?} to {}",
            self.binding, self.role_ref.kind, self.role_ref.name, self.subject
        )
    }
}

/// `VerbMatches`: `*` or the verb.
#[must_use]
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// `APIGroupMatches`: `*` or the group.
#[must_use]
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups
        .iter()
        .flatten()
        .any(|g| g == ALL || g == group)
}

/// `ResourceMatches`: `*`, the resource (`res` or `res/sub`), or `*/sub` for a subresource.
#[must_use]
pub fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources.iter().flatten().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

/// `ResourceNameMatches`: no names listed, or the name among them.
#[must_use]
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

/// `NonResourceURLMatches`: `*`, the path, or a prefix ending in `*`.
#[must_use]
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().flatten().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
    })
}

/// `RuleAllows`: whether `rule` allows the request.
#[must_use]
pub fn rule_allows(attributes: &Attributes, rule: &PolicyRule) -> bool {
    match &attributes.target {
        Target::Resource(r) => {
            let combined = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            verb_matches(rule, &attributes.verb)
                && api_group_matches(rule, &r.group)
                && resource_matches(rule, &combined, &r.subresource)
                && resource_name_matches(rule, &r.name)
        }
        Target::NonResource { path } => {
            verb_matches(rule, &attributes.verb) && non_resource_url_matches(rule, path)
        }
    }
}

fn read<T: for<'de> serde::Deserialize<'de>>(
    resource: &'static str,
    name: &str,
    value: &Value,
) -> Result<T, ResolutionError> {
    T::deserialize(value).map_err(|source| ResolutionError::Malformed {
        resource,
        name: name.to_owned(),
        source,
    })
}

/// The rules of the role `role_ref` names, for a binding in `namespace` ("" for a
/// ClusterRoleBinding): a Role is looked up in the binding's namespace only, a ClusterRole
/// cluster-wide (`GetRoleReferenceRules`).
///
/// # Errors
/// [`ResolutionError`] when the role does not exist, the kind is neither, or it cannot be read.
pub fn role_rules(
    inner: &Inner,
    role_ref: &RoleRef,
    namespace: &str,
) -> Result<Vec<PolicyRule>, ResolutionError> {
    match role_ref.kind.as_str() {
        "Role" => {
            let key = (namespace.to_owned(), role_ref.name.clone());
            let stored = (!namespace.is_empty())
                .then(|| inner.store.get(ROLES, &key))
                .flatten()
                .ok_or_else(|| ResolutionError::RoleNotFound(role_ref.name.clone()))?;
            Ok(read::<Role>(ROLES, &role_ref.name, stored)?
                .rules
                .unwrap_or_default())
        }
        "ClusterRole" => {
            let key = (String::new(), role_ref.name.clone());
            let stored = inner
                .store
                .get(CLUSTER_ROLES, &key)
                .ok_or_else(|| ResolutionError::ClusterRoleNotFound(role_ref.name.clone()))?;
            Ok(read::<ClusterRole>(CLUSTER_ROLES, &role_ref.name, stored)?
                .rules
                .unwrap_or_default())
        }
        other => Err(ResolutionError::UnsupportedKind(other.to_owned())),
    }
}

/// `appliesToUser`: a User subject by name, a Group by membership, a ServiceAccount by its user
/// name (its namespace defaulting to the binding's; none at all matches nobody).
#[must_use]
pub fn applies_to(user: &UserInfo, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user::name(user) == subject.name,
        "Group" => user::in_group(user, &subject.name),
        "ServiceAccount" => {
            let namespace = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            !namespace.is_empty()
                && user::name(user) == user::service_account_username(namespace, &subject.name)
        }
        _ => false,
    }
}

fn describe(subject: &Subject, binding_namespace: &str) -> String {
    if subject.kind == "ServiceAccount" {
        let namespace = subject
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_namespace);
        format!(
            "{} {:?}",
            subject.kind,
            format!("{}/{namespace}", subject.name)
        )
    } else {
        format!("{} {:?}", subject.kind, subject.name)
    }
}

/// The rules `user` holds in `namespace` ("" for cluster scope: ClusterRoleBindings only), each
/// with the binding it comes from, and the bindings whose roles could not be resolved
/// (`VisitRulesFor`): ClusterRoleBindings first, then the namespace's RoleBindings, each in name
/// order.
#[must_use]
pub fn rules_for(
    inner: &Inner,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<(Source, PolicyRule)>, Vec<ResolutionError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (key, stored) in inner.store.list(CLUSTER_ROLE_BINDINGS, None, None) {
        let binding = match read::<ClusterRoleBinding>(CLUSTER_ROLE_BINDINGS, &key.1, stored) {
            Ok(b) => b,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        let Some(subject) = subjects.iter().find(|s| applies_to(user, s, "")) else {
            continue;
        };
        match role_rules(inner, &binding.role_ref, "") {
            Ok(found) => {
                let source = Source {
                    binding: key.1.clone(),
                    namespaced: false,
                    role_ref: binding.role_ref.clone(),
                    subject: describe(subject, ""),
                };
                rules.extend(found.into_iter().map(|r| (source.clone(), r)));
            }
            Err(e) => errors.push(e),
        }
    }
    if !namespace.is_empty() {
        for (key, stored) in inner.store.list(ROLE_BINDINGS, Some(namespace), None) {
            let binding = match read::<RoleBinding>(ROLE_BINDINGS, &key.1, stored) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            let Some(subject) = subjects.iter().find(|s| applies_to(user, s, namespace)) else {
                continue;
            };
            match role_rules(inner, &binding.role_ref, namespace) {
                Ok(found) => {
                    let source = Source {
                        binding: format!("{}/{namespace}", key.1),
                        namespaced: true,
                        role_ref: binding.role_ref.clone(),
                        subject: describe(subject, namespace),
                    };
                    rules.extend(found.into_iter().map(|r| (source.clone(), r)));
                }
                Err(e) => errors.push(e),
            }
        }
    }
    (rules, errors)
}

/// The RBAC decision on a request: allowed by the first rule that matches (the reason names its
/// binding), else no opinion (the reason lists the bindings that could not be resolved, if any).
#[must_use]
pub fn authorize(inner: &Inner, attributes: &Attributes) -> Decision {
    let namespace = attributes
        .resource_request()
        .map_or("", |r| r.namespace.as_str());
    let (rules, errors) = rules_for(inner, &attributes.user, namespace);
    if let Some((source, _)) = rules.iter().find(|(_, rule)| rule_allows(attributes, rule)) {
        return Decision::Allow(format!("RBAC: allowed by {source}"));
    }
    if errors.is_empty() {
        Decision::NoOpinion(String::new())
    } else {
        Decision::NoOpinion(format!("RBAC: {}", aggregate(&errors)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::attributes::ResourceRequest;
    use crate::cluster::Cluster;
    use serde_json::json;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let list = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect());
        PolicyRule {
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            api_groups: list(groups),
            resources: list(resources),
            resource_names: if names.is_empty() { None } else { list(names) },
            non_resource_urls: None,
        }
    }

    fn request(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes::resource(
            user::named("bob", &[]),
            verb,
            ResourceRequest {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
            },
        )
    }

    #[test]
    fn resource_rules_match_as_kubernetes_matches_them() {
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(rule_allows(
            &request("get", "", "pods", "", "ns", "p"),
            &pods
        ));
        assert!(!rule_allows(
            &request("watch", "", "pods", "", "ns", ""),
            &pods
        ));
        assert!(!rule_allows(
            &request("get", "apps", "pods", "", "ns", "p"),
            &pods
        ));
        assert!(
            !rule_allows(&request("get", "", "pods", "log", "ns", "p"), &pods),
            "a resource does not cover its subresources"
        );
        let star = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &request("escalate", "x.io", "things", "sub", "", "n"),
            &star
        ));
        let any_status = rule(&["get"], &["apps"], &["*/status"], &[]);
        assert!(rule_allows(
            &request("get", "apps", "deployments", "status", "ns", "d"),
            &any_status
        ));
        assert!(!rule_allows(
            &request("get", "apps", "deployments", "", "ns", "d"),
            &any_status
        ));
        assert!(!rule_allows(
            &request("get", "apps", "deployments", "scale", "ns", "d"),
            &any_status
        ));
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(rule_allows(
            &request("get", "", "pods", "log", "ns", "p"),
            &logs
        ));
        assert!(!rule_allows(
            &request("get", "", "pods", "", "ns", "p"),
            &logs
        ));
        let named = rule(&["get", "update"], &[""], &["configmaps"], &["cm1"]);
        assert!(rule_allows(
            &request("get", "", "configmaps", "", "ns", "cm1"),
            &named
        ));
        assert!(!rule_allows(
            &request("get", "", "configmaps", "", "ns", "cm2"),
            &named
        ));
        assert!(
            !rule_allows(&request("list", "", "configmaps", "", "ns", ""), &named),
            "a list names no object"
        );
        assert!(
            !rule_allows(&request("get", "", "ConfigMaps", "", "ns", "cm1"), &named),
            "names are case-sensitive"
        );
    }

    #[test]
    fn non_resource_rules_match_paths_and_prefixes() {
        let rule = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/healthz".into(), "/apis/*".into()]),
            ..PolicyRule::default()
        };
        let path = |verb: &str, p: &str| Attributes {
            user: user::named("bob", &[]),
            verb: verb.into(),
            target: Target::NonResource { path: p.into() },
        };
        assert!(rule_allows(&path("get", "/healthz"), &rule));
        assert!(rule_allows(&path("get", "/apis/apps/v1"), &rule));
        assert!(rule_allows(&path("get", "/apis/"), &rule));
        assert!(!rule_allows(&path("get", "/apis"), &rule));
        assert!(!rule_allows(&path("post", "/healthz"), &rule));
        assert!(!rule_allows(&path("get", "/healthz/x"), &rule));
        assert!(
            !rule_allows(&request("get", "", "healthz", "", "", ""), &rule),
            "a non-resource rule allows no resource"
        );
    }

    fn put(inner: &mut Inner, resource: &str, ns: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        inner
            .store
            .put(resource, (ns.to_owned(), name), object)
            .unwrap();
    }

    #[test]
    fn bindings_resolve_roles_in_their_own_namespace() {
        let cluster = Cluster::open(None, 10).unwrap();
        let mut inner = cluster.lock();
        let reader =
            json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}]);
        put(
            &mut inner,
            ROLES,
            "a",
            json!({"metadata": {"name": "reader", "namespace": "a"}, "rules": reader}),
        );
        put(
            &mut inner,
            CLUSTER_ROLES,
            "",
            json!({"metadata": {"name": "secrets"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}),
        );
        // Role "reader" exists in a only: the binding in b refers to a Role "reader" of b.
        for ns in ["a", "b"] {
            put(
                &mut inner,
                ROLE_BINDINGS,
                ns,
                json!({"metadata": {"name": "rb", "namespace": ns},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
            );
        }
        // A RoleBinding to a ClusterRole grants it in the binding's namespace only.
        put(
            &mut inner,
            ROLE_BINDINGS,
            "a",
            json!({"metadata": {"name": "secrets", "namespace": "a"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "secrets"},
            "subjects": [{"kind": "Group", "name": "dev"}]}),
        );
        let sa = user::named("system:serviceaccount:a:sa", &["system:serviceaccounts"]);
        let as_sa = |verb: &str, resource: &str, ns: &str| Attributes {
            user: sa.clone(),
            ..request(verb, "", resource, "", ns, "x")
        };
        assert_eq!(
            authorize(&inner, &as_sa("get", "configmaps", "a")),
            Decision::Allow("RBAC: allowed by RoleBinding \"rb/a\" of Role \"reader\" to ServiceAccount \"sa/a\"".into())
        );
        assert!(
            !authorize(&inner, &as_sa("get", "configmaps", "")).allowed(),
            "namespaced grants do not reach the cluster scope"
        );
        assert_eq!(
            authorize(&inner, &as_sa("get", "configmaps", "b")),
            Decision::NoOpinion(String::new()),
            "sa of namespace a is not the subject of b's binding"
        );
        let b_sa = Attributes {
            user: user::named("system:serviceaccount:b:sa", &[]),
            ..request("get", "", "configmaps", "", "b", "x")
        };
        assert_eq!(
            authorize(&inner, &b_sa),
            Decision::NoOpinion("RBAC: role.rbac.authorization.k8s.io \"reader\" not found".into())
        );
        let dev = |ns: &str| Attributes {
            user: user::named("carol", &["dev"]),
            ..request("get", "", "secrets", "", ns, "s")
        };
        assert!(authorize(&inner, &dev("a")).allowed());
        assert!(!authorize(&inner, &dev("b")).allowed());
        assert!(!authorize(&inner, &dev("")).allowed());
    }

    #[test]
    fn cluster_bindings_apply_everywhere_and_bad_references_are_reasons() {
        let cluster = Cluster::open(None, 10).unwrap();
        let mut inner = cluster.lock();
        put(
            &mut inner,
            CLUSTER_ROLES,
            "",
            json!({"metadata": {"name": "view"}, "rules": [{"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}]}),
        );
        put(
            &mut inner,
            CLUSTER_ROLE_BINDINGS,
            "",
            json!({"metadata": {"name": "b1"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "bob"}]}),
        );
        put(
            &mut inner,
            CLUSTER_ROLE_BINDINGS,
            "",
            json!({"metadata": {"name": "b0"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "missing"},
            "subjects": [{"kind": "User", "name": "bob"}]}),
        );
        put(
            &mut inner,
            CLUSTER_ROLE_BINDINGS,
            "",
            json!({"metadata": {"name": "b2"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "view"},
            "subjects": [{"kind": "User", "name": "bob"}, {"kind": "ServiceAccount", "name": "nobody"}]}),
        );
        assert_eq!(
            authorize(&inner, &request("get", "", "pods", "", "x", "p")),
            Decision::Allow("RBAC: allowed by ClusterRoleBinding \"b1\" of ClusterRole \"view\" to User \"bob\"".into())
        );
        assert_eq!(
            authorize(&inner, &request("list", "", "pods", "", "x", "")),
            Decision::NoOpinion("RBAC: [clusterrole.rbac.authorization.k8s.io \"missing\" not found, role.rbac.authorization.k8s.io \"view\" not found]".into())
        );
        let bob_case = Attributes {
            user: user::named("Bob", &[]),
            ..request("get", "", "pods", "", "x", "p")
        };
        assert!(
            !authorize(&inner, &bob_case).allowed(),
            "user names are case-sensitive"
        );
    }
}
