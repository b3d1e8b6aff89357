//! Kubernetes access at the boundary: a planned write is checked against the plugin's manifest
//! before anything is sent to the API server.

use crate::contract::{CategorizedError, ErrorCategory, Gvk, Manifest, Verb};

/// Whether the manifest lets the plugin `verb` objects of `gvk`: kinds it owns may be applied and
/// deleted; other kinds need an access rule with `patch` or `create` (apply) or `delete`.
pub fn allowed(manifest: &Manifest, gvk: &Gvk, verb: Verb) -> bool {
    if manifest.owns.contains(gvk) {
        return true;
    }
    let wanted: &[Verb] = match verb {
        Verb::Patch | Verb::Create => &[Verb::Patch, Verb::Create],
        Verb::Delete => &[Verb::Delete],
        _ => return false,
    };
    manifest
        .access
        .iter()
        .any(|a| &a.gvk == gvk && a.verbs.iter().any(|v| wanted.contains(v)))
}

/// Check one planned write (`patch` for an apply, `delete`) of `object`, a `gvk`; a refusal is an
/// `Auth` error naming the plugin, the verb and the object.
pub fn check(
    plugin: &str,
    manifest: &Manifest,
    verb: Verb,
    gvk: &Gvk,
    object: &str,
) -> Result<(), CategorizedError> {
    if allowed(manifest, gvk, verb) {
        return Ok(());
    }
    let (word, needs) = match verb {
        Verb::Delete => ("delete", "delete"),
        _ => ("apply", "patch or create"),
    };
    Err(CategorizedError {
        category: ErrorCategory::Auth,
        message: format!(
            "plugin {plugin} may not {word} {object}: it neither owns {gvk} nor was granted {needs} on it"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::AccessRule;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("web", "1");
        m.owns = vec![Gvk::new("apps", "v1", "Deployment")];
        let rule = |gvk, verbs| AccessRule { gvk, verbs };
        m.access = vec![
            rule(Gvk::new("", "v1", "Secret"), vec![Verb::Get, Verb::Delete]),
            rule(Gvk::new("x.dev", "v1", "Cluster"), vec![Verb::Patch]),
            rule(Gvk::new("", "v1", "ConfigMap"), vec![Verb::Create]),
        ];
        m
    }

    fn check_apply(m: &Manifest, group: &str, kind: &str) -> Result<(), CategorizedError> {
        check(
            "web",
            m,
            Verb::Patch,
            &Gvk::new(group, "v1", kind),
            &format!("{kind} ns/a"),
        )
    }

    fn check_delete(m: &Manifest, group: &str, kind: &str) -> Result<(), CategorizedError> {
        check(
            "web",
            m,
            Verb::Delete,
            &Gvk::new(group, "v1", kind),
            &format!("{kind} ns/a"),
        )
    }

    #[test]
    fn owned_kinds_may_be_applied_and_deleted() {
        let m = manifest();
        assert!(check_apply(&m, "apps", "Deployment").is_ok());
        assert!(check_delete(&m, "apps", "Deployment").is_ok());
    }

    #[test]
    fn access_rules_grant_their_verbs_only() {
        let m = manifest();
        assert!(check_apply(&m, "x.dev", "Cluster").is_ok());
        assert!(
            check_apply(&m, "", "ConfigMap").is_ok(),
            "create allows apply"
        );
        assert!(check_delete(&m, "", "Secret").is_ok());
        let e = check_apply(&m, "", "Secret").unwrap_err();
        assert_eq!(e.category, ErrorCategory::Auth);
        assert!(
            e.message.contains("plugin web may not apply Secret ns/a"),
            "{}",
            e.message
        );
        let e = check_delete(&m, "x.dev", "Cluster").unwrap_err();
        assert!(
            e.message.contains("may not delete Cluster ns/a"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let m = manifest();
        let e = check_apply(&m, "", "Service").unwrap_err();
        assert_eq!(e.category, ErrorCategory::Auth);
        assert!(
            e.message
                .contains("neither owns v1/Service nor was granted patch or create"),
            "{}",
            e.message
        );
    }
}
