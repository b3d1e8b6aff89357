//! The RBAC resource name (the plural, as in a request path) and scope of a kind, resolved offline:
//! built-in kinds from the k8s-openapi types, custom kinds from the CustomResourceDefinitions
//! given, anything else guessed with kube's pluralization and taken as namespaced.

use crate::contract::Gvk;
use capstan_apiserver::resource::{CrdError, crd_resources};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::DynamicObject;
use std::collections::BTreeMap;

/// Whether a k8s-openapi resource scope is a namespace.
trait Scoped {
    const NAMESPACED: bool;
}

impl Scoped for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scoped for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A built-in kind: group, kind, plural and scope, as k8s-openapi generates them, and whether
/// it has a `status` subresource (which k8s-openapi does not say: from the Kubernetes API).
struct BuiltIn {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    status: bool,
}

const fn builtin<T>(status: bool) -> BuiltIn
where
    T: k8s_openapi::Resource,
    T::Scope: Scoped,
{
    BuiltIn {
        group: T::GROUP,
        kind: T::KIND,
        plural: T::URL_PATH_SEGMENT,
        namespaced: <T::Scope as Scoped>::NAMESPACED,
        status,
    }
}

macro_rules! builtins {
    ($($t:ty => $status:literal),* $(,)?) => { &[$(builtin::<$t>($status)),*] };
}

/// The stable built-in kinds a plugin may name (k8s-openapi's `v1_33` types), each with whether
/// it has a `status` subresource.
static BUILT_IN: &[BuiltIn] = {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, autoscaling::v2 as autoscaling,
        batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
        core::v1 as core, discovery::v1 as discovery, events::v1 as events,
        networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
        scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    builtins![
        core::ConfigMap => false,
        core::Endpoints => false,
        core::Event => false,
        core::LimitRange => false,
        core::Namespace => true,
        core::Node => true,
        core::PersistentVolume => true,
        core::PersistentVolumeClaim => true,
        core::Pod => true,
        core::PodTemplate => false,
        core::ReplicationController => true,
        core::ResourceQuota => true,
        core::Secret => false,
        core::Service => true,
        core::ServiceAccount => false,
        apps::ControllerRevision => false,
        apps::DaemonSet => true,
        apps::Deployment => true,
        apps::ReplicaSet => true,
        apps::StatefulSet => true,
        batch::CronJob => true,
        batch::Job => true,
        autoscaling::HorizontalPodAutoscaler => true,
        policy::PodDisruptionBudget => true,
        networking::Ingress => true,
        networking::IngressClass => false,
        networking::NetworkPolicy => false,
        discovery::EndpointSlice => false,
        events::Event => false,
        coordination::Lease => false,
        rbac::ClusterRole => false,
        rbac::ClusterRoleBinding => false,
        rbac::Role => false,
        rbac::RoleBinding => false,
        storage::CSIDriver => false,
        storage::CSINode => false,
        storage::StorageClass => false,
        storage::VolumeAttachment => true,
        scheduling::PriorityClass => false,
        node::RuntimeClass => false,
        certificates::CertificateSigningRequest => true,
        admission::MutatingWebhookConfiguration => false,
        admission::ValidatingWebhookConfiguration => false,
        apiextensions::CustomResourceDefinition => true,
    ]
};

/// Errors reading CustomResourceDefinitions.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    /// A document of kind CustomResourceDefinition is not a valid one.
    #[error("CustomResourceDefinition {name} is not valid")]
    Crd {
        /// Its name.
        name: String,
        /// Cause.
        #[source]
        source: CrdError,
    },
}

/// Where a kind's plural and scope came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A built-in kind of k8s-openapi.
    BuiltIn,
    /// A CustomResourceDefinition, by its name.
    Crd(String),
    /// Neither: the plural is kube's guess (`ApiResource::from_gvk`) and the kind is taken as
    /// namespaced, so that a wrong guess grants less, never more (a namespaced Role cannot grant
    /// a cluster-scoped kind).
    Guessed,
}

/// A kind as RBAC names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group (empty for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Whether objects of the kind live in namespaces.
    pub namespaced: bool,
    /// Whether it has a `status` subresource (taken to have one when unknown).
    pub status: bool,
    /// Where the plural and scope came from.
    pub origin: Origin,
}

/// Resolves kinds to RBAC resources: built-in kinds, then the CRDs given, then a guess.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Custom kinds by (group, kind).
    crds: BTreeMap<(String, String), Resource>,
}

impl Resources {
    /// Built-in kinds only.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Also resolve the kinds of every `apiextensions.k8s.io/v1` CustomResourceDefinition among
    /// `objects` (a `--manifests` directory), read as the embedded API server reads them; other
    /// objects are passed over.
    ///
    /// # Errors
    /// [`ResourcesError::Crd`] when one is not a valid CustomResourceDefinition.
    pub fn with_crds_in(mut self, objects: &[DynamicObject]) -> Result<Self, ResourcesError> {
        for o in objects {
            let is_crd = o.types.as_ref().is_some_and(|t| {
                t.api_version == "apiextensions.k8s.io/v1" && t.kind == "CustomResourceDefinition"
            });
            if !is_crd {
                continue;
            }
            let name = o.metadata.name.clone().unwrap_or_default();
            // An object read from YAML always serializes; were it not to, it would read as empty.
            let value = serde_json::to_value(o).unwrap_or_default();
            let served = crd_resources(&value).map_err(|source| ResourcesError::Crd {
                name: name.clone(),
                source,
            })?;
            let Some(first) = served.first() else {
                continue;
            };
            self.crds.insert(
                (first.group.clone(), first.kind.clone()),
                Resource {
                    group: first.group.clone(),
                    plural: first.plural.clone(),
                    namespaced: first.namespaced,
                    status: served.iter().any(|r| r.status_subresource),
                    origin: Origin::Crd(name),
                },
            );
        }
        Ok(self)
    }

    /// The resource of `gvk` (any version: RBAC rules name no version).
    #[must_use]
    pub fn resolve(&self, gvk: &Gvk) -> Resource {
        if let Some(b) = BUILT_IN
            .iter()
            .find(|b| b.group == gvk.group && b.kind == gvk.kind)
        {
            return Resource {
                group: b.group.to_owned(),
                plural: b.plural.to_owned(),
                namespaced: b.namespaced,
                status: b.status,
                origin: Origin::BuiltIn,
            };
        }
        if let Some(r) = self.crds.get(&(gvk.group.clone(), gvk.kind.clone())) {
            return r.clone();
        }
        let guess = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            &gvk.group,
            &gvk.version,
            &gvk.kind,
        ));
        Resource {
            group: gvk.group.clone(),
            plural: guess.plural,
            namespaced: true,
            status: true,
            origin: Origin::Guessed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(v: serde_json::Value) -> Vec<DynamicObject> {
        serde_json::from_value(v).expect("objects")
    }

    #[test]
    fn built_in_kinds_come_from_k8s_openapi() {
        let r = Resources::new();
        let deployments = r.resolve(&Gvk::new("apps", "v1", "Deployment"));
        assert_eq!(
            (deployments.plural.as_str(), deployments.namespaced),
            ("deployments", true)
        );
        assert_eq!(deployments.origin, Origin::BuiltIn);
        assert!(deployments.status);
        assert!(!r.resolve(&Gvk::new("", "v1", "ConfigMap")).status);
        let ns = r.resolve(&Gvk::new("", "v1", "Namespace"));
        assert_eq!((ns.plural.as_str(), ns.namespaced), ("namespaces", false));
        let ingresses = r.resolve(&Gvk::new("networking.k8s.io", "v1", "Ingress"));
        assert_eq!(ingresses.plural, "ingresses");
        let endpoints = r.resolve(&Gvk::new("", "v1", "Endpoints"));
        assert_eq!(endpoints.plural, "endpoints");
        let events = r.resolve(&Gvk::new("events.k8s.io", "v1", "Event"));
        assert_eq!(events.group, "events.k8s.io");
    }

    #[test]
    fn custom_kinds_come_from_their_crd_else_a_namespaced_guess() {
        let r = Resources::new()
            .with_crds_in(&objects(serde_json::json!([
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
                {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                 "metadata": {"name": "octopi.x.dev"},
                 "spec": {"group": "x.dev", "scope": "Cluster",
                          "names": {"kind": "Octopus", "plural": "octopi"},
                          "versions": [{"name": "v1", "served": true, "storage": true,
                                        "subresources": {"status": {}}}]}}
            ])))
            .unwrap();
        let octopus = r.resolve(&Gvk::new("x.dev", "v1", "Octopus"));
        assert_eq!(
            (octopus.plural.as_str(), octopus.namespaced),
            ("octopi", false)
        );
        assert_eq!(octopus.origin, Origin::Crd("octopi.x.dev".into()));
        assert!(octopus.status);
        let guessed = r.resolve(&Gvk::new("y.dev", "v1", "Policy"));
        assert_eq!(guessed.origin, Origin::Guessed);
        let known = r
            .clone()
            .with_crds_in(&objects(serde_json::json!([
                {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                 "metadata": {"name": "policies.y.dev"},
                 "spec": {"group": "y.dev", "scope": "Namespaced",
                          "names": {"kind": "Policy", "plural": "policies"},
                          "versions": [{"name": "v1", "served": true, "storage": true}]}}
            ])))
            .unwrap();
        let policy = known.resolve(&Gvk::new("y.dev", "v1", "Policy"));
        assert_eq!(policy.origin, Origin::Crd("policies.y.dev".into()));
        assert!(!policy.status, "no version has a status subresource");
        let broken = objects(serde_json::json!([
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": "bad.y.dev"}, "spec": {"group": "y.dev"}}
        ]));
        let e = r.clone().with_crds_in(&broken).unwrap_err();
        assert!(
            crate::error_chain(&e).contains("bad.y.dev")
                && crate::error_chain(&e).contains("spec.names.plural"),
            "{e}"
        );
        assert_eq!(guessed.plural, "policies");
        assert!(guessed.namespaced, "unknown kinds are taken as namespaced");
        assert_eq!(guessed.origin, Origin::Guessed);
    }
}
