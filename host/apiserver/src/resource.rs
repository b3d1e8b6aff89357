//! Served resource types: the built-in kinds and the ones defined by CustomResourceDefinitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean or date.
    pub column_type: String,
    /// Optional OpenAPI format.
    pub format: String,
    /// Simple JSONPath into the object, such as `.spec.replicas`.
    pub json_path: String,
    /// Description.
    pub description: String,
    /// 0 for the default view, higher for `-o wide`.
    pub priority: i64,
}

/// A served resource (one group, version and plural name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// List kind.
    pub list_kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories such as `all`.
    pub categories: Vec<String>,
    /// Whether the `/status` subresource exists.
    pub status_subresource: bool,
    /// Printer columns for table output (empty: name and age).
    pub printer_columns: Vec<PrinterColumn>,
    /// The `/scale` subresource, when the kind has one.
    pub scale: Option<ScalePaths>,
    /// For a version of a CustomResourceDefinition that converts through a webhook, other than its
    /// storage version: the storage version (requests to this one are refused, since no webhook
    /// is called).
    pub conversion_webhook: Option<String>,
    /// A custom resource version's `selectableFields`, as field selector keys (`spec.color`).
    pub selectable_fields: Vec<String>,
}

/// Where a kind keeps what its `/scale` subresource shows (a CRD's `subresources.scale`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`, such as `.spec.replicas`.
    pub spec_replicas: String,
    /// `statusReplicasPath`, such as `.status.replicas`.
    pub status_replicas: String,
    /// `labelSelectorPath` (a string field, for a CRD); `None` for the built-in workloads, whose
    /// selector is `.spec.selector`, a `LabelSelector`.
    pub label_selector: Option<String>,
    /// The built-in selector is a map of labels (a ReplicationController's), not a
    /// `LabelSelector`.
    pub selector_is_map: bool,
}

impl ScalePaths {
    /// The built-in workloads' paths (for tests of other modules).
    #[cfg(test)]
    #[must_use]
    pub fn workload_for_tests() -> Self {
        Self::workload()
    }

    /// The built-in workloads' paths.
    fn workload() -> Self {
        Self {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
            selector_is_map: false,
        }
    }
}

impl ResourceInfo {
    /// `v1` or `group/version`.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`: the resource's name in messages and authorization, and the
    /// storage key shared by all its versions unless [`Self::storage_resource`] says otherwise.
    #[must_use]
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The key of the store that holds this resource's objects: its [`Self::group_resource`],
    /// except for resources one store serves under two APIs (`events.k8s.io`'s Events are
    /// `v1` Events, [`crate::event_versions`]).
    #[must_use]
    pub fn storage_resource(&self) -> String {
        if crate::event_versions::is_events_api(self) {
            crate::event_versions::STORAGE.to_owned()
        } else {
            self.group_resource()
        }
    }
}

/// Resource key of CustomResourceDefinitions.
pub const CRD_RESOURCE: &str = "customresourcedefinitions.apiextensions.k8s.io";
/// Resource key of namespaces.
pub const NAMESPACE_RESOURCE: &str = "namespaces";

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    all: bool,
) -> Arc<ResourceInfo> {
    Arc::new(ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_string()).collect(),
        categories: if all { vec!["all".into()] } else { Vec::new() },
        status_subresource: status,
        printer_columns: Vec::new(),
        conversion_webhook: None,
        selectable_fields: Vec::new(),
        scale: match (group, kind) {
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => Some(ScalePaths::workload()),
            ("", "ReplicationController") => Some(ScalePaths {
                selector_is_map: true,
                ..ScalePaths::workload()
            }),
            _ => None,
        },
    })
}

fn builtins() -> Vec<Arc<ResourceInfo>> {
    let mut all = vec![
        builtin(
            "",
            "v1",
            "PodTemplate",
            "podtemplates",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["rc"],
            true,
            true,
        ),
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            false,
            false,
        ),
        builtin("", "v1", "Secret", "secrets", true, &[], false, false),
        builtin("", "v1", "Service", "services", true, &["svc"], true, true),
        builtin(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            false,
            false,
        ),
        builtin("", "v1", "Pod", "pods", true, &["po"], true, true),
        builtin("", "v1", "Node", "nodes", false, &["no"], true, false),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["pv"],
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "LimitRange",
            "limitranges",
            true,
            &["limits"],
            false,
            false,
        ),
        builtin(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["quota"],
            true,
            false,
        ),
        builtin("", "v1", "Event", "events", true, &["ev"], false, false),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            false,
            false,
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
            false,
            false,
        ),
        // Stored as v2; `crate::autoscaler_versions` serves v1 from it.
        builtin(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["hpa"],
            true,
            true,
        ),
        builtin(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["hpa"],
            true,
            true,
        ),
        builtin("batch", "v1", "Job", "jobs", true, &[], true, true),
        builtin(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            &["cj"],
            true,
            true,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            true,
            false,
        ),
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            true,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            false,
            false,
        ),
        builtin(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
            &["sc"],
            false,
            false,
        ),
        builtin(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
            &["pc"],
            false,
            false,
        ),
        builtin(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
            &["csr"],
            true,
            false,
        ),
        builtin(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            "runtimeclasses",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            false,
            &[],
            true,
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
            &[],
            true,
            false,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
            false,
        ),
    ];
    // The kinds that extend the API are in the `api-extensions` category (`kubectl get
    // api-extensions`), as their strategies' `Categories` say.
    for info in &mut all {
        if matches!(
            info.group.as_str(),
            "apiextensions.k8s.io" | "admissionregistration.k8s.io" | "apiregistration.k8s.io"
        ) {
            Arc::make_mut(info).categories = vec!["api-extensions".into()];
        }
    }
    all
}

/// Why a CustomResourceDefinition cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrdError {
    /// A required field is missing or empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// The object name is not `plural.group`.
    #[error("metadata.name must be spec.names.plural+\".\"+spec.group")]
    Name,
    /// `spec.scope` is neither Namespaced nor Cluster.
    #[error("spec.scope must be Namespaced or Cluster")]
    Scope,
    /// The group or kind clashes with a built-in resource.
    #[error("spec.group must not be a built-in group")]
    BuiltinGroup,
}

/// The resources one CRD object serves (one per served version).
///
/// # Errors
/// [`CrdError`] when the CRD is not valid.
pub fn crd_resources(crd: &Value) -> Result<Vec<Arc<ResourceInfo>>, CrdError> {
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let group = text(&spec["group"]);
    if group.is_empty() {
        return Err(CrdError::Missing("spec.group"));
    }
    if builtins().iter().any(|b| b.group == group) {
        return Err(CrdError::BuiltinGroup);
    }
    let names = &spec["names"];
    let plural = text(&names["plural"]);
    let kind = text(&names["kind"]);
    if plural.is_empty() {
        return Err(CrdError::Missing("spec.names.plural"));
    }
    if kind.is_empty() {
        return Err(CrdError::Missing("spec.names.kind"));
    }
    if crd["metadata"]["name"].as_str() != Some(format!("{plural}.{group}").as_str()) {
        return Err(CrdError::Name);
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err(CrdError::Scope),
    };
    let singular = names["singular"]
        .as_str()
        .map_or_else(|| kind.to_lowercase(), str::to_string);
    let list_kind = names["listKind"]
        .as_str()
        .map_or_else(|| format!("{kind}List"), str::to_string);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec["versions"]
        .as_array()
        .filter(|v| !v.is_empty())
        .ok_or(CrdError::Missing("spec.versions"))?;
    let webhook_storage = crate::custom_resource_definitions::webhook_storage_version(crd);
    let mut out = Vec::new();
    for version in versions {
        let name = text(&version["name"]);
        let conversion_webhook = webhook_storage.clone().filter(|storage| *storage != name);
        if name.is_empty() {
            return Err(CrdError::Missing("spec.versions[].name"));
        }
        if version["served"].as_bool() == Some(false) {
            continue;
        }
        let printer_columns = version["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: text(&c["name"]),
                        column_type: c["type"].as_str().unwrap_or("string").to_string(),
                        format: text(&c["format"]),
                        json_path: text(&c["jsonPath"]),
                        description: text(&c["description"]),
                        priority: c["priority"].as_i64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Arc::new(ResourceInfo {
            group: group.clone(),
            version: name,
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: version["subresources"]["status"].is_object(),
            printer_columns,
            conversion_webhook,
            selectable_fields: version["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["jsonPath"].as_str())
                .map(|p| p.trim_start_matches('.').to_owned())
                .collect(),
            // Indexing the `Value`, never its map: an absent path is `null`, not a panic.
            scale: Some(&version["subresources"]["scale"])
                .filter(|scale| scale.is_object())
                .map(|scale| ScalePaths {
                    spec_replicas: text(&scale["specReplicasPath"]),
                    status_replicas: text(&scale["statusReplicasPath"]),
                    label_selector: scale["labelSelectorPath"].as_str().map(str::to_owned),
                    selector_is_map: false,
                })
                .filter(|s| !s.spec_replicas.is_empty()),
        }));
    }
    Ok(out)
}

/// The set of served resources.
#[derive(Debug, Clone)]
pub struct Registry {
    builtin: Vec<Arc<ResourceInfo>>,
    crds: BTreeMap<String, Vec<Arc<ResourceInfo>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            builtin: builtins(),
            crds: BTreeMap::new(),
        }
    }
}

impl Registry {
    /// Every served resource, built-ins first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.builtin.iter().chain(self.crds.values().flatten())
    }

    /// The resource served at `group/version/plural`.
    #[must_use]
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Any served version of a storage key (`plural.group`).
    #[must_use]
    pub fn by_group_resource(&self, group_resource: &str) -> Option<Arc<ResourceInfo>> {
        self.all()
            .find(|r| r.group_resource() == group_resource)
            .cloned()
    }

    /// Served groups with their versions, in discovery order (core excluded).
    #[must_use]
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => {
                    versions.push(r.version.clone())
                }
                Some(_) => {}
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups
    }

    /// Resources served in one group version.
    #[must_use]
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.all()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    /// Serves (or re-serves) the kinds of a CRD object.
    ///
    /// # Errors
    /// [`CrdError`] when the CRD is not valid.
    pub fn set_crd(&mut self, crd: &Value) -> Result<(), CrdError> {
        let resources = crd_resources(crd)?;
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.crds.insert(name, resources);
        Ok(())
    }

    /// Stops serving a CRD's kinds.
    pub fn remove_crd(&mut self, name: &str) {
        self.crds.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]
            }
        })
    }

    #[test]
    fn crd_is_served_and_removed() {
        let mut registry = Registry::default();
        registry.set_crd(&crd()).unwrap();
        let info = registry.lookup("example.com", "v1", "widgets").unwrap();
        assert!(info.status_subresource && info.namespaced);
        assert_eq!(info.singular, "widget");
        assert_eq!(info.printer_columns[0].json_path, ".spec.size");
        registry.remove_crd("widgets.example.com");
        assert!(registry.lookup("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn crd_name_must_match() {
        let mut bad = crd();
        bad["metadata"]["name"] = json!("other");
        assert_eq!(crd_resources(&bad), Err(CrdError::Name));
    }

    #[test]
    fn builtins_resolve() {
        let registry = Registry::default();
        assert_eq!(
            registry.lookup("apps", "v1", "deployments").unwrap().kind,
            "Deployment"
        );
        assert!(registry.groups().iter().any(|(g, _)| g == "batch"));
    }

    #[test]
    fn each_builtin_resource_is_served_once() {
        let mut seen = std::collections::HashSet::new();
        for b in builtins() {
            assert!(
                seen.insert((b.group.clone(), b.version.clone(), b.plural.clone())),
                "{}/{} {} is declared twice",
                b.group,
                b.version,
                b.plural
            );
        }
    }
}
