//! RBAC rules gathered one permission at a time and written as few `PolicyRule`s as say exactly
//! the same: resources of one group with the same verbs (and the same resource names) share a rule.

use k8s_openapi::api::rbac::v1::PolicyRule;
use std::collections::{BTreeMap, BTreeSet};

/// An RBAC verb the derivation grants, in the order rules list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `get`.
    Get,
    /// `list`.
    List,
    /// `watch`.
    Watch,
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
    /// `impersonate`.
    Impersonate,
}

impl Action {
    /// The verb as RBAC spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Impersonate => "impersonate",
        }
    }
}

/// What one rule is about: a resource (`plural` or `plural/subresource`) of a group, limited to
/// some object names or not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    group: String,
    resource: String,
    names: BTreeSet<String>,
}

/// Permissions of one Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    granted: BTreeMap<Target, BTreeSet<Action>>,
}

impl Rules {
    /// Nothing granted.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Grant `actions` on every object of `resource` (`plural` or `plural/subresource`) in `group`.
    pub fn allow(&mut self, group: &str, resource: &str, actions: &[Action]) {
        self.allow_named(group, resource, &[], actions);
    }

    /// Grant `actions` on the objects of `resource` in `group` named `names` (every object when
    /// `names` is empty).
    pub fn allow_named(&mut self, group: &str, resource: &str, names: &[&str], actions: &[Action]) {
        if actions.is_empty() {
            return;
        }
        let target = Target {
            group: group.to_owned(),
            resource: resource.to_owned(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        self.granted
            .entry(target)
            .or_default()
            .extend(actions.iter().copied());
    }

    /// Whether nothing is granted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }

    /// The rules: one per group, verb set and name set, listing its resources; sorted.
    #[must_use]
    pub fn policy_rules(&self) -> Vec<PolicyRule> {
        type Key<'a> = (&'a str, Vec<Action>, &'a BTreeSet<String>);
        let mut grouped: BTreeMap<Key<'_>, BTreeSet<&str>> = BTreeMap::new();
        for (target, actions) in &self.granted {
            grouped
                .entry((
                    target.group.as_str(),
                    actions.iter().copied().collect(),
                    &target.names,
                ))
                .or_default()
                .insert(target.resource.as_str());
        }
        grouped
            .into_iter()
            .map(|((group, actions, names), resources)| PolicyRule {
                api_groups: Some(vec![group.to_owned()]),
                resources: Some(resources.into_iter().map(str::to_owned).collect()),
                resource_names: (!names.is_empty()).then(|| names.iter().cloned().collect()),
                verbs: actions.iter().map(|a| a.as_str().to_owned()).collect(),
                non_resource_urls: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Rules {
        /// The actions granted on every object of `resource` in `group`.
        #[must_use]
        pub fn actions(&self, group: &str, resource: &str) -> BTreeSet<Action> {
            self.granted
                .iter()
                .filter(|(t, _)| t.group == group && t.resource == resource && t.names.is_empty())
                .flat_map(|(_, a)| a.iter().copied())
                .collect()
        }
    }

    #[test]
    fn resources_with_the_same_verbs_share_a_rule() {
        let mut r = Rules::new();
        r.allow("apps", "deployments", &[Action::Get, Action::List]);
        r.allow("apps", "replicasets", &[Action::List, Action::Get]);
        r.allow("apps", "deployments/status", &[Action::Patch]);
        r.allow("", "pods", &[Action::Get]);
        r.allow("apps", "deployments", &[Action::Get]);
        let rules = r.policy_rules();
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert_eq!(rules[0].api_groups.as_deref(), Some(&["".to_owned()][..]));
        let apps_read = &rules[1];
        assert_eq!(
            apps_read.resources.as_deref(),
            Some(&["deployments".to_owned(), "replicasets".to_owned()][..])
        );
        assert_eq!(apps_read.verbs, ["get", "list"]);
        assert_eq!(rules[2].verbs, ["patch"]);
        assert_eq!(
            r.actions("apps", "deployments"),
            [Action::Get, Action::List].into()
        );
    }

    #[test]
    fn named_grants_stay_apart_and_empty_grants_add_nothing() {
        let mut r = Rules::new();
        r.allow_named("", "serviceaccounts", &["a", "b"], &[Action::Impersonate]);
        r.allow("", "serviceaccounts", &[]);
        let rules = r.policy_rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert!(
            r.actions("", "serviceaccounts").is_empty(),
            "a named grant is not a grant on every object"
        );
    }
}
