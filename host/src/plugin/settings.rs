//! Per-plugin settings from the host's configuration: limits, WASI grants, Kubernetes access, and
//! the effective manifest, the declared one narrowed by what configuration allows.

use super::limits::Limits;
use super::wasi::WasiGrants;
use crate::contract::{AccessRule, Gvk, Manifest, Verb};

/// What watching a kind takes: reading it, and being told of its changes.
pub const WATCH_VERBS: [Verb; 3] = [Verb::Get, Verb::List, Verb::Watch];

/// What owning a kind takes: watching children, applying them (server-side apply is a patch) and
/// pruning or deleting them.
pub const OWN_VERBS: [Verb; 5] = [
    Verb::Get,
    Verb::List,
    Verb::Watch,
    Verb::Patch,
    Verb::Delete,
];

/// What the operator allows a plugin, on top of what its manifest asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSettings {
    /// Sandbox limits; `None` keeps the runtime's defaults.
    pub limits: Option<Limits>,
    /// WASI grants (nothing by default).
    pub wasi: WasiGrants,
    /// Kubernetes access allowed: `None` allows what the manifest declares; `Some(rules)` allows
    /// only the declared kinds and verbs that the rules also name.
    pub allow: Option<Vec<AccessRule>>,
    /// Whether pod logs may be read (when the manifest asks). Default true.
    pub pod_logs: Option<bool>,
}

/// Add `verbs` on `gvk` to access rules, merging with a rule of the same kind.
fn add_access(access: &mut Vec<AccessRule>, gvk: &Gvk, verbs: &[Verb]) {
    if verbs.is_empty() {
        return;
    }
    let at = match access.iter().position(|a| &a.gvk == gvk) {
        Some(i) => i,
        None => {
            access.push(AccessRule {
                gvk: gvk.clone(),
                verbs: Vec::new(),
            });
            access.len() - 1
        }
    };
    let kept = &mut access[at].verbs;
    for v in verbs {
        if !kept.contains(v) {
            kept.push(*v);
        }
    }
}

impl PluginSettings {
    /// The effective manifest: what the host enforces. Without an allow list it is the manifest
    /// as declared. With one, every declared request is intersected with it:
    ///
    /// - a watched kind asks for [`WATCH_VERBS`] and an owned kind for [`OWN_VERBS`]; it stays
    ///   watched (or owned) only when the allow list names all of them for it, otherwise what the
    ///   list does name of them becomes an access rule (so a watched kind allowed `get` alone
    ///   can be read but not watched, and an owned kind allowed no `delete` is applied but never
    ///   pruned or deleted);
    /// - an access rule keeps only the verbs the list names for its kind; an empty one goes.
    ///
    /// `podLogs: false` turns pod logs off even when the manifest asks.
    pub fn narrow(&self, manifest: &Manifest) -> Manifest {
        let mut m = manifest.clone();
        if let Some(rules) = &self.allow {
            let kept = |gvk: &Gvk, wanted: &[Verb]| -> Vec<Verb> {
                wanted
                    .iter()
                    .copied()
                    .filter(|v| rules.iter().any(|a| &a.gvk == gvk && a.verbs.contains(v)))
                    .collect()
            };
            let mut access = Vec::new();
            let whole = |kinds: &[Gvk], wanted: &[Verb], access: &mut Vec<_>| {
                let mut out = Vec::new();
                for g in kinds {
                    let k = kept(g, wanted);
                    if k.len() == wanted.len() {
                        out.push(g.clone());
                    } else {
                        add_access(access, g, &k);
                    }
                }
                out
            };
            m.watches = whole(&manifest.watches, &WATCH_VERBS, &mut access);
            m.owns = whole(&manifest.owns, &OWN_VERBS, &mut access);
            for a in &manifest.access {
                add_access(&mut access, &a.gvk, &kept(&a.gvk, &a.verbs));
            }
            m.access = access;
        }
        if self.pod_logs == Some(false) {
            m.pod_logs = false;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::AccessRule;

    fn dep() -> Gvk {
        Gvk::new("apps", "v1", "Deployment")
    }
    fn secret() -> Gvk {
        Gvk::new("", "v1", "Secret")
    }
    fn cm() -> Gvk {
        Gvk::new("", "v1", "ConfigMap")
    }

    fn allow(rules: Vec<AccessRule>) -> PluginSettings {
        PluginSettings {
            allow: Some(rules),
            ..PluginSettings::default()
        }
    }

    #[test]
    fn no_rules_keep_the_manifest_as_declared() {
        let mut m = Manifest::new("p", "1");
        m.watches = vec![secret()];
        m.owns = vec![dep()];
        m.pod_logs = true;
        assert_eq!(PluginSettings::default().narrow(&m), m);
    }

    #[test]
    fn a_watched_kind_needs_get_list_and_watch() {
        let mut m = Manifest::new("p", "1");
        m.watches = vec![secret(), cm()];
        let n = allow(vec![AccessRule::new(cm(), WATCH_VERBS.to_vec())]).narrow(&m);
        assert_eq!(n.watches, vec![cm()], "Secret is not in the allow list");
        assert!(n.access.is_empty());
        assert!(!n.may_read(&secret()), "nor may it be read");
        let n = allow(vec![
            AccessRule::new(cm(), WATCH_VERBS.to_vec()),
            AccessRule::new(secret(), vec![Verb::Get, Verb::Patch]),
        ])
        .narrow(&m);
        assert_eq!(n.watches, vec![cm()], "get alone does not make a watch");
        assert_eq!(n.access, vec![AccessRule::new(secret(), vec![Verb::Get])]);
        assert!(n.may_read(&secret()));
    }

    #[test]
    fn an_owned_kind_keeps_only_the_allowed_owner_verbs() {
        let mut m = Manifest::new("p", "1");
        m.owns = vec![dep(), cm()];
        let full = allow(vec![
            AccessRule::new(
                dep(),
                vec![
                    Verb::Get,
                    Verb::List,
                    Verb::Watch,
                    Verb::Patch,
                    Verb::Delete,
                    Verb::Update,
                ],
            ),
            AccessRule::new(cm(), vec![Verb::Get, Verb::List, Verb::Watch, Verb::Patch]),
        ]);
        let n = full.narrow(&m);
        assert_eq!(n.owns, vec![dep()], "owned: applied, pruned, deleted");
        // ConfigMaps are no longer owned (so never pruned) and may be applied but not deleted.
        assert_eq!(
            n.access,
            vec![AccessRule::new(
                cm(),
                vec![Verb::Get, Verb::List, Verb::Watch, Verb::Patch]
            )]
        );
        let n = allow(vec![AccessRule::new(dep(), vec![Verb::Get, Verb::Patch])]).narrow(&m);
        assert!(n.owns.is_empty());
        assert_eq!(
            n.access,
            vec![AccessRule::new(dep(), vec![Verb::Get, Verb::Patch])]
        );
    }

    #[test]
    fn access_rules_keep_only_allowed_verbs_and_pod_logs_can_be_refused() {
        let mut m = Manifest::new("p", "1");
        m.watches = vec![cm()];
        m.access = vec![
            AccessRule::new(secret(), vec![Verb::Get, Verb::Delete]),
            AccessRule::new(dep(), vec![Verb::Patch]),
        ];
        m.pod_logs = true;
        let s = PluginSettings {
            allow: Some(vec![
                AccessRule::new(cm(), WATCH_VERBS.to_vec()),
                AccessRule::new(secret(), vec![Verb::Get]),
            ]),
            pod_logs: Some(false),
            ..PluginSettings::default()
        };
        let n = s.narrow(&m);
        assert_eq!(n.access, vec![AccessRule::new(secret(), vec![Verb::Get])]);
        assert!(!n.pod_logs);
        let n = PluginSettings {
            pod_logs: Some(false),
            ..PluginSettings::default()
        }
        .narrow(&m);
        assert!(!n.pod_logs, "off even without an allow list");
        assert_eq!(n.access, m.access);
    }
}
