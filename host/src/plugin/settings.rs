//! Per-plugin settings from the host's configuration: limits, WASI grants, Kubernetes access.

use super::limits::Limits;
use super::wasi::WasiGrants;
use crate::contract::{Gvk, Manifest, Verb};

/// What the operator allows a plugin, on top of what its manifest asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSettings {
    /// Sandbox limits; `None` keeps the runtime's defaults.
    pub limits: Option<Limits>,
    /// WASI grants (nothing by default).
    pub wasi: WasiGrants,
    /// Kubernetes access allowed: `None` allows what the manifest declares; `Some(rules)` allows
    /// only the declared kinds and verbs that the rules also name.
    pub allow: Option<Vec<(Gvk, Vec<Verb>)>>,
    /// Whether pod logs may be read (when the manifest asks). Default true.
    pub pod_logs: Option<bool>,
}

impl PluginSettings {
    /// The manifest narrowed to what configuration allows: watched and owned kinds need `watch`
    /// (and, for owned kinds, `patch`) in the rules; access rules keep only allowed verbs.
    pub fn narrow(&self, manifest: &Manifest) -> Manifest {
        let mut m = manifest.clone();
        if let Some(rules) = &self.allow {
            let allowed = |gvk: &Gvk, verb: Verb| {
                rules
                    .iter()
                    .any(|(g, verbs)| g == gvk && verbs.contains(&verb))
            };
            m.owns.retain(|g| allowed(g, Verb::Patch));
            m.access = m
                .access
                .iter()
                .map(|(g, verbs)| {
                    let kept = verbs.iter().copied().filter(|v| allowed(g, *v)).collect();
                    (g.clone(), kept)
                })
                .filter(|(_, verbs): &(Gvk, Vec<Verb>)| !verbs.is_empty())
                .collect();
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

    #[test]
    fn rules_narrow_owned_kinds_and_verbs() {
        let cm = Gvk::new("", "v1", "ConfigMap");
        let secret = Gvk::new("", "v1", "Secret");
        let dep = Gvk::new("apps", "v1", "Deployment");
        let mut m = Manifest::new("p", "1");
        m.owns = vec![dep.clone(), cm.clone()];
        m.access = vec![(secret.clone(), vec![Verb::Get, Verb::Delete])];
        m.pod_logs = true;
        let s = PluginSettings {
            allow: Some(vec![
                (dep.clone(), vec![Verb::Get, Verb::Patch]),
                (secret.clone(), vec![Verb::Get]),
            ]),
            pod_logs: Some(false),
            ..PluginSettings::default()
        };
        let n = s.narrow(&m);
        assert_eq!(n.owns, vec![dep]);
        assert_eq!(n.access, vec![(secret, vec![Verb::Get])]);
        assert!(!n.pod_logs);
        assert_eq!(
            PluginSettings::default().narrow(&m),
            m,
            "no rules: as declared"
        );
    }
}
