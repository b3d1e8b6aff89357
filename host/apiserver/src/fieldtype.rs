//! How server-side apply merges each field: whether a list is `atomic`, a `set` or a `map` keyed
//! by some of its elements' fields (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`), and
//! whether a map is `granular` or `atomic` (`x-kubernetes-map-type`, `+structType=atomic`).
//!
//! For custom resources the markers come from the CRD's `openAPIV3Schema`; `metadata` is always
//! `ObjectMeta`. For built-in kinds they come from the `+listType`, `+listMapKey`, `+mapType` and
//! `+structType` markers of the Kubernetes API types (`k8s.io/api/*/types.go`, carried as doc
//! comments in the k8s-pb crate's generated types), looked up by field name and the name of the
//! field that holds it. Lists with no marker are atomic, maps granular, as Kubernetes' OpenAPI
//! models them. Where no schema is known, maps are granular and lists atomic
//! (structured-merge-diff's deduced type).

use serde_json::Value;

/// A position in an object's type, as a walk from the root reaches it.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// A built-in kind's field `name` inside the field `parent` (`""` at the root); `element`
    /// when this is an element of the list `name`.
    Builtin {
        /// The object's kind.
        kind: &'a str,
        /// The field's name.
        name: &'a str,
        /// The name of the field whose value holds this one.
        parent: &'a str,
        /// Whether this is an element of the list `name`.
        element: bool,
    },
    /// A custom resource's schema node (`root` at the object root).
    Schema {
        /// The object's kind.
        kind: &'a str,
        /// The `openAPIV3Schema` node.
        schema: &'a Value,
        /// Whether this is the object root.
        root: bool,
    },
    /// No schema: maps granular, lists atomic.
    Deduced,
}

/// Which fields identify an element of a `map` list.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    /// A built-in list's keys.
    Static(&'static [&'static str]),
    /// A CRD schema's `x-kubernetes-list-map-keys`.
    Schema(&'a [Value]),
}

impl Keys<'_> {
    /// The key field names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let (a, b): (&[&str], &[Value]) = match self {
            Self::Static(names) => (names, &[]),
            Self::Schema(values) => (&[], values),
        };
        a.iter().copied().chain(b.iter().filter_map(Value::as_str))
    }
}

/// How a list merges.
#[derive(Debug, Clone, Copy)]
pub enum ListType<'a> {
    /// Replaced whole, owned whole.
    Atomic,
    /// Scalars merged by value.
    Set,
    /// Maps merged by their key fields.
    Map(Keys<'a>),
}

const NAME: &[&str] = &["name"];

impl<'a> Node<'a> {
    /// The root of an object of a built-in `kind`.
    #[must_use]
    pub fn builtin(kind: &'a str) -> Self {
        Self::Builtin {
            kind,
            name: "",
            parent: "",
            element: false,
        }
    }

    /// The root of a custom resource of `kind` with `schema` (its `openAPIV3Schema`).
    #[must_use]
    pub fn custom(kind: &'a str, schema: &'a Value) -> Self {
        Self::Schema {
            kind,
            schema,
            root: true,
        }
    }

    /// The node of field `key` of this map.
    #[must_use]
    pub fn field(self, key: &'a str) -> Self {
        match self {
            Self::Builtin { kind, name, .. } => Self::Builtin {
                kind,
                name: key,
                parent: name,
                element: false,
            },
            Self::Schema { kind, root, .. } if root && key == "metadata" => Self::Builtin {
                kind,
                name: key,
                parent: "",
                element: false,
            },
            Self::Schema { kind, schema, .. } => {
                let child = schema
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                match child {
                    Some(schema) => Self::Schema {
                        kind,
                        schema,
                        root: false,
                    },
                    None => Self::Deduced,
                }
            }
            Self::Deduced => Self::Deduced,
        }
    }

    /// The node of this list's elements.
    #[must_use]
    pub fn element(self) -> Self {
        match self {
            Self::Builtin {
                kind, name, parent, ..
            } => Self::Builtin {
                kind,
                name,
                parent,
                element: true,
            },
            Self::Schema { kind, schema, .. } => match schema.get("items") {
                Some(schema) => Self::Schema {
                    kind,
                    schema,
                    root: false,
                },
                None => Self::Deduced,
            },
            Self::Deduced => Self::Deduced,
        }
    }

    /// How the list at this node merges.
    #[must_use]
    pub fn list_type(self) -> ListType<'a> {
        match self {
            Self::Builtin {
                kind,
                name,
                parent,
                element: false,
            } => builtin_list_type(kind, name, parent),
            Self::Schema { schema, .. } => {
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .filter(|keys| !keys.is_empty())
                        .map_or(ListType::Atomic, |keys| ListType::Map(Keys::Schema(keys))),
                    _ => ListType::Atomic,
                }
            }
            _ => ListType::Atomic,
        }
    }

    /// Whether the map at this node is atomic (replaced and owned whole).
    #[must_use]
    pub fn map_atomic(self) -> bool {
        match self {
            Self::Builtin {
                name,
                parent,
                element,
                ..
            } => builtin_map_atomic(name, parent, element),
            Self::Schema { schema, .. } => {
                schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            Self::Deduced => false,
        }
    }

    /// Whether the field at this node is in the zero value of the Go struct that holds it: a
    /// struct held by value, or a list or map serialized without `omitempty` (as `null`).
    /// kube-apiserver's field manager compares typed objects, and a create against the kind's zero
    /// value (`New()`), so such a field is never added or removed, only what is below it: its
    /// managedFields never mark it as a member (`.`). Custom resources are unstructured: nothing
    /// is in their zero value.
    #[must_use]
    pub fn in_zero_value(self) -> bool {
        match self {
            Self::Builtin {
                kind,
                name,
                parent,
                element: false,
            } => builtin_in_zero_value(kind, name, parent),
            _ => false,
        }
    }

    /// The default of key field `key` of this map list's elements, used in an element's key when
    /// the element omits it (structured-merge-diff's `getAssociativeKeyDefault`).
    #[must_use]
    pub fn key_default(self, key: &str) -> Option<Value> {
        match self {
            Self::Builtin { .. } if key == "protocol" => Some(Value::String("TCP".into())),
            Self::Schema { schema, .. } => schema
                .pointer(&format!("/items/properties/{key}/default"))
                .cloned(),
            _ => None,
        }
    }
}

/// The list types of the built-in kinds (k8s.io/api v1.32 markers).
fn builtin_list_type(kind: &str, name: &str, parent: &str) -> ListType<'static> {
    const CONTAINERS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];
    let map = |keys: &'static [&'static str]| ListType::Map(Keys::Static(keys));
    match name {
        // PodSpec.
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "imagePullSecrets"
        | "volumes"
        | "resourceClaims"
        | "schedulingGates" => map(NAME),
        "hostAliases" => map(&["ip"]),
        "topologySpreadConstraints" => map(&["topologyKey", "whenUnsatisfiable"]),
        // Container.
        "env" if CONTAINERS.contains(&parent) => map(NAME),
        "ports" if CONTAINERS.contains(&parent) => map(&["containerPort", "protocol"]),
        "volumeMounts" if CONTAINERS.contains(&parent) => map(&["mountPath"]),
        "volumeDevices" if CONTAINERS.contains(&parent) => map(&["devicePath"]),
        // ResourceRequirements.
        "claims" if parent == "resources" => map(NAME),
        // ServiceSpec.
        "ports" if kind == "Service" && parent == "spec" => map(&["port", "protocol"]),
        // The status of every kind that has conditions.
        "conditions" if parent == "status" => map(&["type"]),
        "addresses" if kind == "Node" && parent == "status" => map(&["type"]),
        "podIPs" if parent == "status" => map(&["ip"]),
        "podCIDRs" if kind == "Node" && parent == "spec" => ListType::Set,
        "secrets" if kind == "ServiceAccount" && parent.is_empty() => map(NAME),
        // ObjectMeta.
        "finalizers" if parent == "metadata" => ListType::Set,
        "ownerReferences" if parent == "metadata" => map(&["uid"]),
        _ => ListType::Atomic,
    }
}

/// The fields of the built-in kinds' structs that Go serializes even when empty (k8s.io/api
/// v1.32): structs held by value (`Spec DeploymentSpec`, `Template PodTemplateSpec`,
/// `Resources ResourceRequirements`, ...), lists without `omitempty` (`Containers []Container
/// json:"containers"`, `Rules []PolicyRule json:"rules"`) and the status counts without it
/// (`NumberMisscheduled int32 json:"numberMisscheduled"`: a writer that leaves one at 0 has not
/// changed it), on the paths a write reaches from the object's root or from a list element it
/// already has.
fn builtin_in_zero_value(kind: &str, name: &str, parent: &str) -> bool {
    match (parent, name) {
        ("", "metadata" | "spec" | "status" | "roleRef") => true,
        ("", "template") => kind == "PodTemplate",
        ("", "rules") => matches!(kind, "Role" | "ClusterRole"),
        // core/v1's Event (`involvedObject`, `source`) and events.k8s.io/v1's.
        ("", "involvedObject" | "source" | "regarding" | "deprecatedSource") => kind == "Event",
        // A ReplicationController's template is a pointer; the workloads' and a Job's are not.
        ("spec", "template") => kind != "ReplicationController",
        ("spec", "jobTemplate") => kind == "CronJob",
        ("template" | "jobTemplate", "metadata" | "spec") => true,
        ("spec", "containers") => true,
        ("spec", "strategy") => kind == "Deployment",
        ("spec", "updateStrategy") => matches!(kind, "DaemonSet" | "StatefulSet"),
        ("spec", "scaleTargetRef") => kind == "HorizontalPodAutoscaler",
        ("spec", "podSelector") => kind == "NetworkPolicy",
        ("spec", "resources") => kind == "PersistentVolumeClaim",
        ("spec", "limits") => kind == "LimitRange",
        ("status", "loadBalancer") => matches!(kind, "Service" | "Ingress"),
        ("status", "replicas") => kind == "ReplicaSet",
        (
            "status",
            "currentNumberScheduled"
            | "numberMisscheduled"
            | "desiredNumberScheduled"
            | "numberReady",
        ) => kind == "DaemonSet",
        ("status", "disruptionsAllowed" | "currentHealthy" | "desiredHealthy" | "expectedPods") => {
            kind == "PodDisruptionBudget"
        }
        ("status", "desiredReplicas") => kind == "HorizontalPodAutoscaler",
        ("containers" | "initContainers" | "ephemeralContainers", "resources") => true,
        _ => false,
    }
}

/// The atomic maps and structs of the built-in kinds (k8s.io/api v1.32 markers).
fn builtin_map_atomic(name: &str, parent: &str, element: bool) -> bool {
    if element {
        // OwnerReference and LocalObjectReference are `+structType=atomic`.
        return matches!(name, "ownerReferences" | "imagePullSecrets");
    }
    match name {
        // LabelSelector (`+structType=atomic`); a Service's selector is `+mapType=atomic`.
        "selector" | "podSelector" | "namespaceSelector" | "labelSelector" => true,
        // PodSpec.nodeSelector is `+mapType=atomic`.
        "nodeSelector" => true,
        // EnvVarSource's selectors are `+structType=atomic`.
        "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef" | "fileKeyRef" => true,
        // NodeSelector is `+structType=atomic`.
        "requiredDuringSchedulingIgnoredDuringExecution" => parent == "nodeAffinity",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(t: ListType<'_>) -> Option<Vec<String>> {
        match t {
            ListType::Map(k) => Some(k.names().map(str::to_string).collect()),
            _ => None,
        }
    }

    #[test]
    fn builtin_lists_as_kubernetes_marks_them() {
        let pod_spec = Node::builtin("Deployment")
            .field("spec")
            .field("template")
            .field("spec");
        let containers = pod_spec.field("containers");
        assert_eq!(keys(containers.list_type()).unwrap(), ["name"]);
        assert_eq!(
            keys(containers.element().field("ports").list_type()).unwrap(),
            ["containerPort", "protocol"]
        );
        let service_ports = Node::builtin("Service").field("spec").field("ports");
        assert_eq!(
            keys(service_ports.list_type()).unwrap(),
            ["port", "protocol"]
        );
        let finalizers = Node::builtin("ConfigMap")
            .field("metadata")
            .field("finalizers");
        assert!(matches!(finalizers.list_type(), ListType::Set));
        assert!(matches!(
            containers.element().field("args").list_type(),
            ListType::Atomic
        ));
        assert!(
            Node::builtin("Deployment")
                .field("spec")
                .field("selector")
                .map_atomic()
        );
        assert!(
            !Node::builtin("Deployment")
                .field("metadata")
                .field("labels")
                .map_atomic()
        );
    }

    #[test]
    fn custom_resource_markers_come_from_the_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                "items": {"type": "object", "properties": {"id": {"type": "string"}, "proto": {"type": "string", "default": "TCP"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic"}
        }}}});
        let root = Node::custom("Widget", &schema);
        let spec = root.field("spec");
        assert_eq!(keys(spec.field("items").list_type()).unwrap(), ["id"]);
        assert!(matches!(spec.field("tags").list_type(), ListType::Set));
        assert!(spec.field("sel").map_atomic());
        assert!(matches!(
            root.field("metadata").field("finalizers").list_type(),
            ListType::Set
        ));
        assert_eq!(spec.field("items").key_default("proto"), Some(json!("TCP")));
    }
}
