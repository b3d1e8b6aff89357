//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/{group}`, the resource lists and the
//! OpenAPI documents.

pub mod aggregated;
pub mod openapi_v2;

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::cluster::Inner;
use crate::resource::Registry;
use crate::reviews::{AUTHENTICATION_GROUP, AUTHORIZATION_GROUP, Review};

/// The served groups with their versions: the registry's, then the review groups.
pub(crate) fn served_groups(registry: &Registry) -> Vec<(String, Vec<String>)> {
    let mut groups = registry.groups();
    for group in [AUTHENTICATION_GROUP, AUTHORIZATION_GROUP] {
        groups.push((group.to_owned(), vec!["v1".to_owned()]));
    }
    groups
}

/// The Kubernetes version the server reports.
pub const KUBE_MINOR: &str = "33";

/// `/version`.
#[must_use]
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-capstan"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
#[must_use]
pub fn api_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or_default()})
}

/// `/apis`.
#[must_use]
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = served_groups(registry)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
#[must_use]
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    served_groups(registry)
        .iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| {
            let mut doc = group_doc(g, vs);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of the `status` and `scale` subresources.
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// One served resource of a group version, as both discovery forms describe it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The plural name, the path segment.
    pub plural: String,
    /// The singular name.
    pub singular: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// Its kind.
    pub kind: String,
    /// What can be done to it.
    pub verbs: &'static [&'static str],
    /// kubectl's short names for it.
    pub short_names: Vec<String>,
    /// The categories it belongs to, such as `all`.
    pub categories: Vec<String>,
    /// Its subresources.
    pub subresources: Vec<Subresource>,
}

/// A subresource of an [`Entry`].
#[derive(Debug, Clone)]
pub struct Subresource {
    /// The name, such as `status`.
    pub name: &'static str,
    /// The group, version and kind it answers with.
    pub kind: (String, String, String),
    /// What can be done to it.
    pub verbs: &'static [&'static str],
}

/// The resources served in one group version, the review kinds (create only, never stored)
/// first; empty when the group version is not served.
#[must_use]
pub fn entries(registry: &Registry, group: &str, version: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = if version == "v1" {
        Review::ALL
            .into_iter()
            .filter(|r| r.group() == group)
            .map(|r| Entry {
                plural: r.plural().to_owned(),
                singular: r.kind().to_lowercase(),
                namespaced: r.namespaced(),
                kind: r.kind().to_owned(),
                verbs: &["create"],
                short_names: Vec::new(),
                categories: Vec::new(),
                subresources: Vec::new(),
            })
            .collect()
    } else {
        Vec::new()
    };
    if group.is_empty() && version == "v1" {
        // Computed when read (`src/component_statuses.rs`), never stored.
        out.push(Entry {
            plural: "componentstatuses".into(),
            singular: "componentstatus".into(),
            namespaced: false,
            kind: "ComponentStatus".into(),
            verbs: &["get", "list"],
            short_names: vec!["cs".into()],
            categories: Vec::new(),
            subresources: Vec::new(),
        });
    }
    for r in registry.resources(group, version) {
        let mut subresources = Vec::new();
        let own = (r.group.clone(), r.version.clone(), r.kind.clone());
        if r.status_subresource {
            subresources.push(Subresource {
                name: "status",
                kind: own.clone(),
                verbs: SUBRESOURCE_VERBS,
            });
        }
        if r.scale.is_some() {
            subresources.push(Subresource {
                name: "scale",
                kind: ("autoscaling".into(), "v1".into(), "Scale".into()),
                verbs: SUBRESOURCE_VERBS,
            });
        }
        if r.group.is_empty() && r.plural == "pods" {
            subresources.push(Subresource {
                name: "log",
                kind: own.clone(),
                verbs: &["get"],
            });
            subresources.push(Subresource {
                name: "binding",
                kind: (String::new(), "v1".into(), "Binding".into()),
                verbs: &["create"],
            });
            subresources.push(Subresource {
                name: "eviction",
                kind: ("policy".into(), "v1".into(), "Eviction".into()),
                verbs: &["create"],
            });
        }
        if r.group.is_empty() && r.plural == "serviceaccounts" {
            subresources.push(Subresource {
                name: "token",
                kind: (
                    "authentication.k8s.io".into(),
                    "v1".into(),
                    "TokenRequest".into(),
                ),
                verbs: &["create"],
            });
        }
        if r.group == crate::certificates::GROUP && r.plural == "certificatesigningrequests" {
            subresources.push(Subresource {
                name: "approval",
                kind: own.clone(),
                verbs: SUBRESOURCE_VERBS,
            });
        }
        if r.group.is_empty() && r.plural == "namespaces" {
            subresources.push(Subresource {
                name: "finalize",
                kind: own,
                verbs: &["update"],
            });
        }
        // In name order, as kube-apiserver lists them.
        subresources.sort_by_key(|s| s.name);
        out.push(Entry {
            plural: r.plural.clone(),
            singular: r.singular.clone(),
            namespaced: r.namespaced,
            kind: r.kind.clone(),
            verbs: VERBS,
            short_names: r.short_names.clone(),
            categories: r.categories.clone(),
            subresources,
        });
    }
    out
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
#[must_use]
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let entries = entries(registry, group, version);
    if entries.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for e in entries {
        let mut doc = json!({
            "name": e.plural,
            "singularName": e.singular,
            "namespaced": e.namespaced,
            "kind": e.kind,
            "verbs": e.verbs,
        });
        if !e.short_names.is_empty() {
            doc["shortNames"] = json!(e.short_names);
        }
        if !e.categories.is_empty() {
            doc["categories"] = json!(e.categories);
        }
        out.push(doc);
        for s in e.subresources {
            let mut doc = json!({
                "name": format!("{}/{}", e.plural, s.name),
                "singularName": "",
                "namespaced": e.namespaced,
                "kind": s.kind.2,
                "verbs": s.verbs,
            });
            if s.kind.0 != group || s.kind.1 != version {
                doc["group"] = json!(s.kind.0);
                doc["version"] = json!(s.kind.1);
            }
            out.push(doc);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}),
    )
}

/// `/openapi/v3`: the index of per-group-version documents.
#[must_use]
pub fn openapi_v3_index(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1"}),
    );
    for (group, versions) in registry.groups() {
        for v in versions {
            let key = format!("apis/{group}/{v}");
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}")}),
            );
        }
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/{api/v1|apis/group/version}`: an OpenAPI v3 document listing each kind's
/// operations with its `x-kubernetes-group-version-kind` and the `fieldValidation` parameter,
/// which is what kubectl checks before sending server-side field validation; a custom resource's
/// schema is its CRD's `openAPIV3Schema` (what `kubectl explain` reads), named as kube-apiserver
/// names it (`dev.capstan.examples.v1alpha1.WebApp`); a built-in kind's is its k8s-openapi type's
/// JSON schema (schemars), with every type it refers to, named as Kubernetes names them
/// (`io.k8s.api.apps.v1.Deployment`).
#[must_use]
pub fn openapi_v3_group(inner: &Inner, group: &str, version: &str) -> Option<Value> {
    let registry = &inner.registry;
    let resources = registry.resources(group, version);
    if resources.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in resources {
        if let Some(name) = builtin_schema(&mut generator, (&r.group, &r.version), &r.kind) {
            kinds.push((
                name,
                json!({"group": r.group, "version": r.version, "kind": r.kind}),
            ));
        }
        let ns = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let path = format!("{prefix}{ns}/{}/{{name}}", r.plural);
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let op = |id: &str| {
            json!({
                "operationId": format!("{id}{}", r.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": id,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(path, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        if let Some(schema) = crate::schema::of_custom_resource(inner, &r) {
            let mut schema = schema.clone();
            if let Some(map) = schema.as_object_mut() {
                let properties = map.entry("properties").or_insert_with(|| json!({}));
                if let Some(props) = properties.as_object_mut() {
                    props.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                    props.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                    props.entry("metadata").or_insert_with(
                        || json!({"type": "object", "description": "Standard object's metadata."}),
                    );
                }
                map.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
            }
            schemas.insert(crd_definition_name(&r.group, &r.version, &r.kind), schema);
        }
    }
    // ComponentStatuses are computed, not registered (`src/component_statuses.rs`), and read only.
    if group.is_empty()
        && version == "v1"
        && let Some(name) = builtin_schema(&mut generator, ("", "v1"), "ComponentStatus")
    {
        let gvk = json!({"group": "", "version": "v1", "kind": "ComponentStatus"});
        kinds.push((name, gvk.clone()));
        paths.insert(
            format!("{prefix}/componentstatuses/{{name}}"),
            json!({"get": {"operationId": "readComponentStatus",
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk}}),
        );
    }
    for (name, schema) in generator.take_definitions(true) {
        schemas.insert(name, schema);
    }
    for (name, gvk) in kinds {
        if let Some(Value::Object(def)) = schemas.get_mut(&name) {
            def.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The definition name kube-apiserver gives a custom resource's schema: its group reversed, the
/// version and the kind (`dev.capstan.examples.v1alpha1.WebApp`, `ToRESTFriendlyName`).
pub(crate) fn crd_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// Registers the schema of a built-in kind (and of what it refers to) with `generator`, returning
/// its name; `None` for a kind without a generated type here.
fn builtin_schema(
    generator: &mut schemars::SchemaGenerator,
    (group, version): (&str, &str),
    kind: &str,
) -> Option<String> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admissionregistration, apps::v1 as apps,
        autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, networking::v1 as networking, node::v1 as node, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use schemars::JsonSchema;
    fn add<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> Option<String> {
        generator.subschema_for::<T>();
        Some(T::schema_name().into_owned())
    }
    match (group, kind) {
        ("", "Namespace") => add::<core::Namespace>(generator),
        ("", "ConfigMap") => add::<core::ConfigMap>(generator),
        ("", "Secret") => add::<core::Secret>(generator),
        ("", "Service") => add::<core::Service>(generator),
        ("", "Endpoints") => add::<core::Endpoints>(generator),
        ("discovery.k8s.io", "EndpointSlice") => add::<discovery::EndpointSlice>(generator),
        ("", "ComponentStatus") => add::<core::ComponentStatus>(generator),
        ("", "Pod") => add::<core::Pod>(generator),
        ("", "PodTemplate") => add::<core::PodTemplate>(generator),
        ("", "ReplicationController") => add::<core::ReplicationController>(generator),
        ("", "Node") => add::<core::Node>(generator),
        ("", "PersistentVolumeClaim") => add::<core::PersistentVolumeClaim>(generator),
        ("", "PersistentVolume") => add::<core::PersistentVolume>(generator),
        ("", "LimitRange") => add::<core::LimitRange>(generator),
        ("", "ResourceQuota") => add::<core::ResourceQuota>(generator),
        ("storage.k8s.io", "StorageClass") => add::<storage::StorageClass>(generator),
        ("", "Event") => add::<core::Event>(generator),
        ("", "ServiceAccount") => add::<core::ServiceAccount>(generator),
        ("apps", "Deployment") => add::<apps::Deployment>(generator),
        ("apps", "StatefulSet") => add::<apps::StatefulSet>(generator),
        ("apps", "DaemonSet") => add::<apps::DaemonSet>(generator),
        ("autoscaling", "HorizontalPodAutoscaler") if version == "v1" => {
            add::<autoscaling_v1::HorizontalPodAutoscaler>(generator)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            add::<autoscaling_v2::HorizontalPodAutoscaler>(generator)
        }
        ("apps", "ReplicaSet") => add::<apps::ReplicaSet>(generator),
        ("apps", "ControllerRevision") => add::<apps::ControllerRevision>(generator),
        ("batch", "Job") => add::<batch::Job>(generator),
        ("batch", "CronJob") => add::<batch::CronJob>(generator),
        ("coordination.k8s.io", "Lease") => add::<coordination::Lease>(generator),
        ("scheduling.k8s.io", "PriorityClass") => add::<scheduling::PriorityClass>(generator),
        ("node.k8s.io", "RuntimeClass") => add::<node::RuntimeClass>(generator),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            add::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(generator)
        }
        ("policy", "PodDisruptionBudget") => add::<policy::PodDisruptionBudget>(generator),
        ("networking.k8s.io", "Ingress") => add::<networking::Ingress>(generator),
        ("networking.k8s.io", "IngressClass") => add::<networking::IngressClass>(generator),
        ("networking.k8s.io", "NetworkPolicy") => add::<networking::NetworkPolicy>(generator),
        ("events.k8s.io", "Event") => add::<events::Event>(generator),
        ("rbac.authorization.k8s.io", "Role") => add::<rbac::Role>(generator),
        ("rbac.authorization.k8s.io", "RoleBinding") => add::<rbac::RoleBinding>(generator),
        ("rbac.authorization.k8s.io", "ClusterRole") => add::<rbac::ClusterRole>(generator),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            add::<rbac::ClusterRoleBinding>(generator)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            add::<apiextensions::CustomResourceDefinition>(generator)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            add::<admissionregistration::ValidatingAdmissionPolicy>(generator)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            add::<admissionregistration::ValidatingAdmissionPolicyBinding>(generator)
        }
        ("apiregistration.k8s.io", "APIService") => add::<
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        >(generator),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_apps() {
        let registry = Registry::default();
        let core = resource_list(&registry, "", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/status")
        );
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/log" && r["verbs"] == json!(["get"]))
        );
        let apps = group(&registry, "apps").unwrap();
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(resource_list(&registry, "nope", "v1").is_none());
        let authz = resource_list(&registry, "authorization.k8s.io", "v1").unwrap();
        assert!(
            authz["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "selfsubjectaccessreviews" && r["verbs"] == json!(["create"]))
        );
        assert!(group(&registry, "authentication.k8s.io").is_some());
        assert!(group_list(&registry)["groups"].as_array().unwrap().len() >= 5);
        assert!(openapi_v3_index(&registry)["paths"]["apis/apps/v1"].is_object());
        let cluster = crate::cluster::Cluster::open(None, 100).unwrap();
        let doc = openapi_v3_group(&cluster.lock(), "apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec_ref = deployment.pointer("/properties/spec").unwrap().to_string();
        assert!(
            spec_ref.contains("#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"),
            "{spec_ref}"
        );
        assert!(schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"].is_object());
    }
}
