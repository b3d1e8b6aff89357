//! Kubernetes protobuf messages turned into the JSON object Kubernetes would have read from the
//! same request sent as JSON, so that a protobuf body then goes through exactly the JSON path
//! (defaulting, validation, storage).
//!
//! Why this way: no well-kept crate ships serde for Kubernetes' protobuf messages (`k8s-pb`'s
//! prost types have neither serde nor descriptors; `k8s-rs-pb` is an experiment on another
//! protobuf runtime). So the messages are read generically: Kubernetes' own `generated.proto`
//! files (v1.33, the version the server reports; vendored in `proto/` with their license headers)
//! are compiled at build time by `protox` (pure Rust, no `protoc`) into a descriptor set, a body
//! is decoded as a `prost-reflect` `DynamicMessage`, and a walk writes its JSON with Kubernetes'
//! JSON mapping:
//! - field names are the `.proto` names, which go-to-protobuf takes from the JSON names;
//! - `meta.v1.Time` is RFC 3339 in seconds and `MicroTime` in microseconds (an empty one is the
//!   zero time, `null`), `intstr.IntOrString` an integer or a string, `resource.Quantity` its
//!   string, `runtime.RawExtension` and `meta.v1.FieldsV1` the JSON they hold, `bytes` base64;
//! - a message standing for a named Go slice (`authorization.v1.ExtraValue`) is the list of its
//!   `items`;
//! - a field embedded with `json:",inline"` (`Volume.volumeSource`, `Probe.handler`, ...) has its
//!   fields written into its parent;
//! - Go writes a non-pointer scalar to protobuf even when it is the zero value, and reads it back
//!   as "not set": such a zero is left out, as Go's JSON encoding (`omitempty`) leaves it out. The
//!   zero of a pointer field (`replicas: 0`, `automountServiceAccountToken: false`) or of a field
//!   without `omitempty` is kept. The `.proto` files cannot tell these apart, Kubernetes' Go types
//!   can: `proto/go_fields.txt` lists them, written by `proto/go_fields.py` from the Go types of
//!   the same release;
//! - empty lists and maps are left out (protobuf cannot tell them from absent ones either).
//!
//! Unknown field numbers are skipped, as Go's generated unmarshalers skip them.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use base64::Engine as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage as _, Value,
};
use serde_json::{Map, Value as Json};

/// The descriptor set `build.rs` compiled from `proto/`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.binpb"));

/// What Kubernetes' Go types say about fields (see the module doc).
static GO_FIELDS: &str = include_str!("../proto/go_fields.txt");

const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";

/// A protobuf message cannot be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum ProtoJsonError {
    /// No message of the kind is known: the kind is not served as protobuf.
    #[error("protobuf is not supported for {api_version}, Kind={kind}")]
    UnknownKind {
        /// The `apiVersion` asked for.
        api_version: String,
        /// The `kind` asked for.
        kind: String,
    },
    /// The bytes do not decode as the message.
    #[error("the protobuf {message} does not decode")]
    Decode {
        /// The message's full name.
        message: String,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
    /// An embedded JSON document (`RawExtension`, `FieldsV1`) is not JSON.
    #[error("the embedded object in {message} is not valid json")]
    EmbeddedJson {
        /// The message holding it.
        message: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A timestamp is out of range.
    #[error("the time in {message} is out of range")]
    Time {
        /// `Time` or `MicroTime`.
        message: String,
    },
    /// A floating-point value is not finite (JSON has no NaN or infinity).
    #[error("the number in field {field} is not finite")]
    NotFinite {
        /// The field's full name.
        field: String,
    },
}

/// The compiled descriptors and the Go facts about their fields.
struct Catalogue {
    pool: DescriptorPool,
    /// `package.Message.field` of scalars whose zero value is written (see the module doc).
    keep_zero: HashSet<String>,
    /// `package.Message.field` of fields inlined into their parent.
    inline: HashSet<String>,
    /// `package.Message` of messages standing for a named Go slice.
    slices: HashSet<String>,
    /// `package.Message.field` to the JSON name, where it is not the field's name.
    json_names: HashMap<String, String>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // The descriptor set is this crate's own build output: failing to read it is a build defect,
    // caught by every test that reads a protobuf body.
    let pool = DescriptorPool::decode(DESCRIPTORS).expect("build.rs wrote a valid descriptor set");
    let mut keep_zero = HashSet::new();
    let mut inline = HashSet::new();
    let mut slices = HashSet::new();
    let mut json_names = HashMap::new();
    for line in GO_FIELDS.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once(' ') {
            Some(("keep", field)) => keep_zero.insert(field.to_string()),
            Some(("inline", field)) => inline.insert(field.to_string()),
            Some(("slice", message)) => slices.insert(message.to_string()),
            Some(("json", renamed)) => {
                if let Some((field, name)) = renamed.split_once(' ') {
                    json_names.insert(field.to_string(), name.to_string());
                }
                false
            }
            _ => false,
        };
    }
    Catalogue {
        pool,
        keep_zero,
        inline,
        slices,
        json_names,
    }
});

/// The protobuf package of a built-in `apiVersion` (`v1` → `k8s.io.api.core.v1`, `apps/v1` →
/// `k8s.io.api.apps.v1`, `rbac.authorization.k8s.io/v1` → `k8s.io.api.rbac.v1`), as the
/// directory layout of `k8s.io/api` has it; only the groups vendored, so that a custom resource
/// group never maps to a built-in package.
fn package(api_version: &str) -> Option<String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let directory = match group {
        "" => "core",
        "apps" => "apps",
        "batch" => "batch",
        "autoscaling" => "autoscaling",
        "rbac.authorization.k8s.io" => "rbac",
        "events.k8s.io" => "events",
        "coordination.k8s.io" => "coordination",
        "scheduling.k8s.io" => "scheduling",
        "policy" => "policy",
        "networking.k8s.io" => "networking",
        "discovery.k8s.io" => "discovery",
        "authentication.k8s.io" => "authentication",
        "authorization.k8s.io" => "authorization",
        "certificates.k8s.io" => "certificates",
        _ => return None,
    };
    Some(format!("k8s.io.api.{directory}.{version}"))
}

/// The message of a built-in kind, if the server has it.
fn message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let package = package(api_version)?;
    CATALOGUE
        .pool
        .get_message_by_name(&format!("{package}.{kind}"))
}

/// The `runtime.Unknown` envelope of a protobuf body (after the `k8s\0` prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unknown {
    /// `typeMeta.apiVersion`.
    pub api_version: String,
    /// `typeMeta.kind`.
    pub kind: String,
    /// The encoded object.
    pub raw: Vec<u8>,
    /// How `raw` is compressed (empty: not).
    pub content_encoding: String,
}

/// Decodes the `runtime.Unknown` envelope.
///
/// # Errors
/// [`ProtoJsonError::Decode`] when the bytes are not such a message.
pub fn unknown(bytes: &[u8]) -> Result<Unknown, ProtoJsonError> {
    const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
    // Every descriptor set has it: meta.v1 imports runtime.
    let descriptor =
        CATALOGUE
            .pool
            .get_message_by_name(UNKNOWN)
            .ok_or_else(|| ProtoJsonError::UnknownKind {
                api_version: "runtime".into(),
                kind: "Unknown".into(),
            })?;
    let message =
        DynamicMessage::decode(descriptor, bytes).map_err(|source| ProtoJsonError::Decode {
            message: UNKNOWN.into(),
            source,
        })?;
    let text = |m: &DynamicMessage, name: &str| {
        m.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let type_meta = message
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned());
    Ok(Unknown {
        api_version: type_meta
            .as_ref()
            .map(|t| text(t, "apiVersion"))
            .unwrap_or_default(),
        kind: type_meta
            .as_ref()
            .map(|t| text(t, "kind"))
            .unwrap_or_default(),
        raw: message
            .get_field_by_name("raw")
            .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
            .unwrap_or_default(),
        content_encoding: text(&message, "contentEncoding"),
    })
}

/// Whether objects of `kind` in `api_version` can be read from protobuf.
#[must_use]
pub fn supports(api_version: &str, kind: &str) -> bool {
    message(api_version, kind).is_some()
}

/// The JSON object of a protobuf-encoded `kind` of `api_version` (the payload of the envelope,
/// without the `k8s\0` prefix), with `apiVersion` and `kind` set.
///
/// # Errors
/// [`ProtoJsonError`] when the kind is not known or the bytes are not such a message.
pub fn object(api_version: &str, kind: &str, raw: &[u8]) -> Result<Json, ProtoJsonError> {
    let descriptor = message(api_version, kind).ok_or_else(|| ProtoJsonError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let decoded = DynamicMessage::decode(descriptor.clone(), raw).map_err(|source| {
        ProtoJsonError::Decode {
            message: descriptor.full_name().to_string(),
            source,
        }
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Json::String(api_version.into()));
    object.insert("kind".into(), Json::String(kind.into()));
    fields_into(&decoded, &mut object)?;
    Ok(Json::Object(object))
}

/// The JSON of one message: a special type's own form, else an object of its fields.
fn message_json(message: &DynamicMessage) -> Result<Json, ProtoJsonError> {
    let name = message.descriptor().full_name().to_string();
    let field = |n: &str| {
        message
            .get_field_by_name(n)
            .map(std::borrow::Cow::into_owned)
    };
    match name.as_str() {
        TIME | MICRO_TIME => {
            if message.fields().next().is_none() {
                // Go reads an empty Time as the zero time, which JSON writes as null.
                return Ok(Json::Null);
            }
            let seconds = field("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
            let nanos = if name == MICRO_TIME {
                let nanos = field("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
                // Go truncates to microseconds; negative nanos are out of range.
                u32::try_from(nanos - nanos % 1000).map_err(|_| ProtoJsonError::Time {
                    message: name.clone(),
                })?
            } else {
                // Go keeps only the seconds of a Time read from protobuf.
                0
            };
            let format = if name == MICRO_TIME {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            } else {
                "%Y-%m-%dT%H:%M:%SZ"
            };
            let time = chrono::DateTime::from_timestamp(seconds, nanos)
                .ok_or(ProtoJsonError::Time { message: name })?;
            Ok(Json::String(time.format(format).to_string()))
        }
        INT_OR_STRING => {
            let kind = field("type").and_then(|v| v.as_i64()).unwrap_or(0);
            Ok(if kind == 1 {
                Json::String(
                    field("strVal")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                )
            } else {
                Json::from(field("intVal").and_then(|v| v.as_i32()).unwrap_or(0))
            })
        }
        QUANTITY => Ok(Json::String(
            field("string")
                .and_then(|v| v.as_str().map(str::to_string))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "0".into()),
        )),
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = field(if name == RAW_EXTENSION { "raw" } else { "Raw" })
                .and_then(|v| v.as_bytes().cloned())
                .unwrap_or_default();
            if raw.is_empty() {
                return Ok(Json::Null);
            }
            serde_json::from_slice(&raw).map_err(|source| ProtoJsonError::EmbeddedJson {
                message: name,
                source,
            })
        }
        _ if CATALOGUE.slices.contains(&name) => {
            // `items, if empty, will result in an empty slice`.
            let items = field("items").unwrap_or(Value::List(Vec::new()));
            value_json(&items, &format!("{name}.items"))
        }
        _ => {
            let mut object = Map::new();
            fields_into(message, &mut object)?;
            Ok(Json::Object(object))
        }
    }
}

/// Writes the set fields of `message` into `object` (see the module doc for what is left out).
fn fields_into(
    message: &DynamicMessage,
    object: &mut Map<String, Json>,
) -> Result<(), ProtoJsonError> {
    let catalogue = &*CATALOGUE;
    let parent = message.descriptor().full_name().to_string();
    for (field, value) in message.fields() {
        let key = format!("{parent}.{}", field.name());
        let json = match value {
            Value::List(items) => {
                if items.is_empty() {
                    continue;
                }
                Json::Array(
                    items
                        .iter()
                        .map(|item| value_json(item, &key))
                        .collect::<Result<_, _>>()?,
                )
            }
            Value::Map(entries) => {
                if entries.is_empty() {
                    continue;
                }
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(map_key(k), value_json(v, &key)?);
                }
                Json::Object(map)
            }
            Value::Message(inner) if catalogue.inline.contains(&key) => {
                // Its fields are the parent's in JSON.
                fields_into(inner, object)?;
                continue;
            }
            Value::Message(inner) => message_json(inner)?,
            scalar => {
                if scalar.is_default(&field.kind()) && !catalogue.keep_zero.contains(&key) {
                    continue;
                }
                value_json(scalar, &key)?
            }
        };
        let name = catalogue
            .json_names
            .get(&key)
            .map_or_else(|| field.name().to_string(), Clone::clone);
        object.insert(name, json);
    }
    Ok(())
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

/// The JSON of one value of the field `field` (its full name, for errors).
fn value_json(value: &Value, field: &str) -> Result<Json, ProtoJsonError> {
    let finite = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| ProtoJsonError::NotFinite {
                field: field.to_string(),
            })
    };
    Ok(match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) | Value::EnumNumber(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(f) => finite(f64::from(*f))?,
        Value::F64(f) => finite(*f)?,
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Message(m) => message_json(m)?,
        Value::List(items) => Json::Array(
            items
                .iter()
                .map(|item| value_json(item, field))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                map.insert(map_key(k), value_json(v, field)?);
            }
            Json::Object(map)
        }
    })
}

/// Which kinds the descriptor set has, for the tests.
#[cfg(test)]
fn kinds(package: &str) -> Vec<String> {
    CATALOGUE
        .pool
        .all_messages()
        .filter(|m| m.package_name() == package)
        .map(|m| m.name().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_set_has_the_served_kinds() {
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Service"),
            ("v1", "Pod"),
            ("v1", "Namespace"),
            ("v1", "ServiceAccount"),
            ("v1", "PersistentVolumeClaim"),
            ("v1", "Event"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("apps/v1", "ReplicaSet"),
            ("batch/v1", "Job"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("events.k8s.io/v1", "Event"),
            ("coordination.k8s.io/v1", "Lease"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
            ("policy/v1", "PodDisruptionBudget"),
            ("policy/v1", "Eviction"),
            ("networking.k8s.io/v1", "Ingress"),
            ("networking.k8s.io/v1", "IngressClass"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("v1", "Endpoints"),
            ("autoscaling/v1", "Scale"),
            ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ] {
            assert!(supports(api_version, kind), "{api_version} {kind}");
        }
        assert!(!supports("example.com/v1", "Widget"));
        assert!(!supports("apps.example.com/v1", "Deployment"));
        assert!(!supports("v1", "Nothing"));
        assert!(!supports("v1", "meta.v1.ObjectMeta"));
        assert!(kinds("k8s.io.api.apps.v1").contains(&"DeploymentSpec".to_string()));
    }

    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::coordination::v1 as coordination;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::RawExtension;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    use prost::Message as _;
    use serde_json::json;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    /// A Deployment as Go's marshaller writes it: every non-pointer scalar present, zero or not.
    fn deployment() -> apps::Deployment {
        let container = core::Container {
            name: s("web"),
            image: s("nginx"),
            // Non-pointer strings Go writes even when empty.
            image_pull_policy: s(""),
            termination_message_path: s(""),
            working_dir: s(""),
            stdin: Some(false),
            resources: Some(core::ResourceRequirements {
                limits: [("cpu".to_string(), Quantity { string: s("500m") })].into(),
                ..Default::default()
            }),
            ports: vec![core::ContainerPort {
                name: s("http"),
                container_port: Some(8080),
                host_port: Some(0),
                protocol: s(""),
                host_ip: s(""),
            }],
            readiness_probe: Some(core::Probe {
                handler: Some(core::ProbeHandler {
                    http_get: Some(core::HttpGetAction {
                        path: s("/healthz"),
                        port: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: s("http"),
                        }),
                        host: s(""),
                        scheme: s(""),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                period_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: s("web"),
                namespace: s(""),
                generate_name: s(""),
                labels: [("app".to_string(), "web".to_string())].into(),
                creation_timestamp: Some(meta::Time::default()),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                // A pointer: an explicit zero is meaningful.
                replicas: Some(0),
                min_ready_seconds: Some(0),
                paused: Some(false),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: s(""),
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_surge: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(2),
                            str_val: s(""),
                        }),
                        max_unavailable: None,
                    }),
                }),
                selector: Some(meta::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    match_expressions: vec![],
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta::default()),
                    spec: Some(core::PodSpec {
                        containers: vec![container],
                        volumes: vec![core::Volume {
                            name: s("config"),
                            volume_source: Some(core::VolumeSource {
                                config_map: Some(core::ConfigMapVolumeSource {
                                    local_object_reference: Some(core::LocalObjectReference {
                                        name: s("settings"),
                                    }),
                                    default_mode: Some(420),
                                    optional: Some(false),
                                    items: vec![],
                                }),
                                ..Default::default()
                            }),
                        }],
                        host_network: Some(false),
                        automount_service_account_token: Some(false),
                        restart_policy: s(""),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(apps::DeploymentStatus::default()),
        }
    }

    #[test]
    fn a_deployment_reads_as_go_would_write_its_json() {
        let raw = deployment().encode_to_vec();
        let read = object("apps/v1", "Deployment", &raw).unwrap();
        assert_eq!(
            read,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web",
                    "labels": {"app": "web"},
                    "creationTimestamp": null,
                },
                "spec": {
                    "replicas": 0,
                    "strategy": {"rollingUpdate": {"maxSurge": 2}},
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {},
                        "spec": {
                            "containers": [{
                                "name": "web",
                                "image": "nginx",
                                "resources": {"limits": {"cpu": "500m"}},
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                },
                            }],
                            "volumes": [{
                                "name": "config",
                                "configMap": {"name": "settings", "defaultMode": 420, "optional": false},
                            }],
                            "automountServiceAccountToken": false,
                        },
                    },
                },
                "status": {},
            })
        );
    }

    #[test]
    fn a_field_go_names_apart_from_its_protobuf_name_takes_its_json_name() {
        use k8s_pb::api::networking::v1 as networking;
        let class = networking::IngressClass {
            spec: Some(networking::IngressClassSpec {
                controller: s("example.com/ingress"),
                parameters: Some(networking::IngressClassParametersReference {
                    a_pi_group: s("example.com"),
                    kind: s("Params"),
                    name: s("p"),
                    scope: s("Cluster"),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let read = object(
            "networking.k8s.io/v1",
            "IngressClass",
            &class.encode_to_vec(),
        )
        .unwrap();
        assert_eq!(
            read["spec"]["parameters"],
            json!({"apiGroup": "example.com", "kind": "Params", "name": "p", "scope": "Cluster"})
        );
    }

    #[test]
    fn bytes_times_and_embedded_json_take_their_json_forms() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: s("password"),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(5),
                }),
                ..Default::default()
            }),
            data: [
                ("password".to_string(), b"s3cr3t".to_vec()),
                ("empty".to_string(), Vec::new()),
            ]
            .into(),
            r#type: s("Opaque"),
            ..Default::default()
        };
        let read = object("v1", "Secret", &secret.encode_to_vec()).unwrap();
        assert_eq!(read["data"], json!({"password": "czNjcjN0", "empty": ""}));
        assert_eq!(read["type"], "Opaque");
        // Go keeps only the seconds of a Time read from protobuf.
        assert_eq!(
            read["metadata"]["creationTimestamp"],
            "2023-11-14T22:13:20Z"
        );

        let lease = coordination::Lease {
            spec: Some(coordination::LeaseSpec {
                holder_identity: s("me"),
                renew_time: Some(meta::MicroTime {
                    seconds: Some(1_700_000_000),
                    nanos: Some(123_456_789),
                }),
                lease_duration_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let read = object("coordination.k8s.io/v1", "Lease", &lease.encode_to_vec()).unwrap();
        assert_eq!(
            read["spec"],
            json!({
                "holderIdentity": "me",
                "renewTime": "2023-11-14T22:13:20.123456Z",
                "leaseDurationSeconds": 0,
            })
        );

        let revision = apps::ControllerRevision {
            data: Some(RawExtension {
                raw: Some(br#"{"spec":{"x":[1,2]}}"#.to_vec()),
            }),
            revision: Some(3),
            ..Default::default()
        };
        let read = object("apps/v1", "ControllerRevision", &revision.encode_to_vec()).unwrap();
        assert_eq!(read["data"], json!({"spec": {"x": [1, 2]}}));
        assert_eq!(read["revision"], 3);
        let revision = apps::ControllerRevision {
            data: Some(RawExtension {
                raw: Some(b"\x00not json".to_vec()),
            }),
            ..Default::default()
        };
        assert!(matches!(
            object("apps/v1", "ControllerRevision", &revision.encode_to_vec()),
            Err(ProtoJsonError::EmbeddedJson { .. })
        ));
    }

    #[test]
    fn hostile_bytes_are_errors_never_panics() {
        let raw = deployment().encode_to_vec();
        // Every truncation of a valid message either decodes (a prefix can be a whole message)
        // or is a decode error.
        for end in 0..raw.len() {
            match object("apps/v1", "Deployment", &raw[..end]) {
                Ok(_) | Err(ProtoJsonError::Decode { .. }) => {}
                Err(e) => panic!("{end}: {e}"),
            }
        }
        assert!(matches!(
            object("apps/v1", "Deployment", &raw[..raw.len() - 1]),
            Err(ProtoJsonError::Decode { .. })
        ));
        // A length far past the end.
        let huge = [0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            object("v1", "ConfigMap", &huge),
            Err(ProtoJsonError::Decode { .. })
        ));
        // Groups nested past any sane depth.
        let deep: Vec<u8> = std::iter::repeat_n(0xfb_u8, 100_000)
            .chain([0x07])
            .collect(); // field 1000... as start-group tags
        assert!(object("v1", "ConfigMap", &deep).is_err());
        // A string that is not UTF-8.
        let bad_utf8 = [0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        assert!(matches!(
            object("v1", "ConfigMap", &bad_utf8),
            Err(ProtoJsonError::Decode { .. })
        ));
        // A wire type that does not match the field's (data, a map, as a varint).
        assert!(object("v1", "ConfigMap", &[0x10, 0x01]).is_err());
        // A time out of range.
        let lease = coordination::Lease {
            spec: Some(coordination::LeaseSpec {
                acquire_time: Some(meta::MicroTime {
                    seconds: Some(i64::MAX),
                    nanos: Some(0),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            object("coordination.k8s.io/v1", "Lease", &lease.encode_to_vec()),
            Err(ProtoJsonError::Time { .. })
        ));
        // Kinds not known.
        for (api_version, kind) in [("v1", "Nothing"), ("example.com/v1", "Widget"), ("v1", "")] {
            assert!(matches!(
                object(api_version, kind, &[]),
                Err(ProtoJsonError::UnknownKind { .. })
            ));
        }
    }

    #[test]
    fn unknown_field_numbers_are_skipped_as_go_skips_them() {
        let config_map = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: s("settings"),
                ..Default::default()
            }),
            data: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let mut raw = config_map.encode_to_vec();
        // Field 999 (varint) and field 1000 (length-delimited) are not ConfigMap's.
        raw.extend([0xb8, 0x3e, 0x2a, 0xc2, 0x3e, 0x03, b'a', b'b', b'c']);
        let read = object("v1", "ConfigMap", &raw).unwrap();
        assert_eq!(
            read,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings"},
                "data": {"a": "1"},
            })
        );
    }

    #[test]
    fn every_go_field_names_a_field_of_the_descriptors() {
        // A line of go_fields.txt that names nothing would mean the two drifted apart.
        for line in GO_FIELDS.lines().filter(|l| !l.starts_with('#')) {
            let (how, path) = line.split_once(' ').unwrap();
            // A renamed field's line ends with its JSON name.
            let path = if how == "json" {
                path.split_once(' ').unwrap().0
            } else {
                path
            };
            if how == "slice" {
                let descriptor = CATALOGUE.pool.get_message_by_name(path);
                assert!(
                    descriptor.is_some_and(|d| d.get_field_by_name("items").is_some()),
                    "{path} is not a message of items"
                );
                continue;
            }
            let (message, field) = path.rsplit_once('.').unwrap();
            let Some(descriptor) = CATALOGUE.pool.get_message_by_name(message) else {
                continue; // a Go struct that is not a message of the vendored files
            };
            assert!(
                descriptor.get_field_by_name(field).is_some(),
                "{path} is not a field"
            );
        }
    }
}
