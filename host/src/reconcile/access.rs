//! Kubernetes access at the boundary: a planned write is checked against the plugin's manifest
//! before anything is sent to the API server.

use crate::contract::{CategorizedError, ErrorCategory, Gvk, Manifest, ObjectRef, PlanEntry, Verb};

/// What a plan entry does to which object.
fn target(entry: &PlanEntry) -> (Verb, Option<ObjectRef>) {
    match entry {
        PlanEntry::Apply(v) | PlanEntry::ApplyWithoutOwnerRef(v) => {
            (Verb::Patch, ObjectRef::from_json(v))
        }
        PlanEntry::Delete(r) => (Verb::Delete, Some(r.clone())),
    }
}

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
        .any(|(g, verbs)| g == gvk && verbs.iter().any(|v| wanted.contains(v)))
}

/// Check one plan entry; a refusal is an `Auth` error naming the plugin, the verb and the object.
pub fn check(plugin: &str, manifest: &Manifest, entry: &PlanEntry) -> Result<(), CategorizedError> {
    let (verb, object) = target(entry);
    // An apply without apiVersion, kind or name is refused later as an invalid spec.
    let Some(object) = object else { return Ok(()) };
    if allowed(manifest, &object.gvk, verb) {
        return Ok(());
    }
    let (word, needs) = match verb {
        Verb::Delete => ("delete", "delete"),
        _ => ("apply", "patch or create"),
    };
    Err(CategorizedError {
        category: ErrorCategory::Auth,
        message: format!(
            "plugin {plugin} may not {word} {object}: it neither owns {} nor was granted {needs} on it",
            object.gvk
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("web", "1");
        m.owns = vec![Gvk::new("apps", "v1", "Deployment")];
        m.access = vec![
            (Gvk::new("", "v1", "Secret"), vec![Verb::Get, Verb::Delete]),
            (Gvk::new("x.dev", "v1", "Cluster"), vec![Verb::Patch]),
            (Gvk::new("", "v1", "ConfigMap"), vec![Verb::Create]),
        ];
        m
    }

    fn apply(api_version: &str, kind: &str) -> PlanEntry {
        PlanEntry::Apply(json!({
            "apiVersion": api_version, "kind": kind, "metadata": {"name": "a", "namespace": "ns"}
        }))
    }

    fn delete(group: &str, kind: &str) -> PlanEntry {
        PlanEntry::Delete(ObjectRef {
            gvk: Gvk::new(group, "v1", kind),
            namespace: Some("ns".into()),
            name: "a".into(),
            uid: None,
        })
    }

    #[test]
    fn owned_kinds_may_be_applied_and_deleted() {
        let m = manifest();
        assert!(check("web", &m, &apply("apps/v1", "Deployment")).is_ok());
        assert!(check("web", &m, &delete("apps", "Deployment")).is_ok());
    }

    #[test]
    fn access_rules_grant_their_verbs_only() {
        let m = manifest();
        assert!(check("web", &m, &apply("x.dev/v1", "Cluster")).is_ok());
        assert!(
            check("web", &m, &apply("v1", "ConfigMap")).is_ok(),
            "create allows apply"
        );
        assert!(check("web", &m, &delete("", "Secret")).is_ok());
        let e = check("web", &m, &apply("v1", "Secret")).unwrap_err();
        assert_eq!(e.category, ErrorCategory::Auth);
        assert!(
            e.message.contains("plugin web may not apply Secret ns/a"),
            "{}",
            e.message
        );
        let e = check("web", &m, &delete("x.dev", "Cluster")).unwrap_err();
        assert!(
            e.message.contains("may not delete Cluster ns/a"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let m = manifest();
        let e = check("web", &m, &apply("v1", "Service")).unwrap_err();
        assert_eq!(e.category, ErrorCategory::Auth);
        assert!(
            e.message
                .contains("neither owns v1/Service nor was granted patch or create"),
            "{}",
            e.message
        );
        let unnamed = PlanEntry::Apply(json!({"kind": "Service"}));
        assert!(
            check("web", &m, &unnamed).is_ok(),
            "refused later as invalid"
        );
    }
}
