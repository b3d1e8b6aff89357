//! `/openapi/v2`: the Swagger 2.0 document of the built-in kinds, as JSON or in the protobuf
//! encoding of gnostic's `openapi.v2.Document`, which is the only form kubectl asks for (its
//! client-side validation reads it, e.g. for the items of a `kind: List`).
//!
//! The definitions are the built-in kinds' schemas of `/openapi/v3` (k8s-openapi's, via schemars)
//! rewritten for Swagger 2.0: references point into `#/definitions/`, a lone `allOf` reference is
//! the reference itself, and a schema the v2 form cannot hold (several types, an array without
//! one item schema, a dangling reference) becomes an arbitrary value, which kubectl accepts as
//! anything, so that one odd schema never makes the whole document unreadable. Each served version
//! of a custom resource is published as kube-apiserver's CRD OpenAPI builder publishes it for v2
//! (`BuildOpenAPIV2`): its `openAPIV3Schema` made v2-compatible (`ToStructuralOpenAPIV2`), with
//! `apiVersion`, `kind` and a `metadata` reference added, and its list kind beside it.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use schemars::JsonSchema;

use super::{KUBE_MINOR, builtin_schema, crd_definition_name};
use crate::cluster::Inner;
use crate::resource::ResourceInfo;

/// `TypeMeta`'s `apiVersion`, as kube-openapi's generated definitions describe it.
const API_VERSION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
/// `TypeMeta`'s `kind`.
const KIND: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
/// The `metadata` of a custom resource (`swaggerPartialObjectMetadataDescriptions`).
const OBJECT_METADATA: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
/// The `metadata` of its list.
const LIST_METADATA: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The media type of the protobuf form as kube-openapi's handler answers it (kubectl asks with
/// the older `...spec.v2@v1.0+protobuf`, which Go's `mime` cannot parse as a `Content-Type`).
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Whether an `Accept` header asks for the protobuf form.
#[must_use]
pub fn wants_protobuf(accept: &str) -> bool {
    accept.split(',').any(|range| {
        range
            .trim()
            .starts_with("application/com.github.proto-openapi.spec.v2")
    })
}

/// The document as Swagger 2.0 JSON.
#[must_use]
pub fn document(inner: &Inner) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    let mut custom = Vec::new();
    let core = (String::new(), vec!["v1".to_owned()]);
    for (group, versions) in std::iter::once(core).chain(inner.registry.groups()) {
        for version in versions {
            for r in inner.registry.resources(&group, &version) {
                if let Some(name) = builtin_schema(&mut generator, (&r.group, &r.version), &r.kind)
                {
                    kinds.push((
                        name,
                        json!({"group": r.group, "version": r.version, "kind": r.kind}),
                    ));
                } else if let Some(schema) = crate::schema::of_custom_resource(inner, &r) {
                    custom.push((r, schema));
                }
            }
        }
    }
    generator.subschema_for::<ObjectMeta>();
    generator.subschema_for::<ListMeta>();
    let object_meta = format!("#/definitions/{}", ObjectMeta::schema_name());
    let list_meta = format!("#/definitions/{}", ListMeta::schema_name());
    let schemas = generator.take_definitions(true);
    let known: BTreeSet<&str> = schemas.keys().map(String::as_str).collect();
    let mut definitions: Map<String, Value> = schemas
        .iter()
        .map(|(name, schema)| (name.clone(), to_v2(schema, &known)))
        .collect();
    for (name, gvk) in kinds {
        if let Some(Value::Object(def)) = definitions.get_mut(&name) {
            let list = def
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Value::Array(list) = list
                && !list.contains(&gvk)
            {
                list.push(gvk);
            }
        }
    }
    for (r, schema) in custom {
        let name = crd_definition_name(&r.group, &r.version, &r.kind);
        let list = crd_definition_name(&r.group, &r.version, &r.list_kind);
        let list_schema = json!({
            "description": format!("{} is a list of {}", r.list_kind, r.kind),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"description": API_VERSION, "type": "string"},
                "kind": {"description": KIND, "type": "string"},
                "items": {
                    "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural),
                    "type": "array",
                    "items": {"$ref": format!("#/definitions/{name}")},
                },
                "metadata": {"description": LIST_METADATA, "$ref": list_meta},
            },
            "x-kubernetes-group-version-kind": [gvk(&r, &r.list_kind)],
        });
        definitions.insert(name, custom_resource(&r, schema, &object_meta, &known));
        definitions.insert(list, list_schema);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": {},
        "definitions": definitions,
    })
}

fn gvk(r: &ResourceInfo, kind: &str) -> Value {
    json!({"group": r.group, "version": r.version, "kind": kind})
}

/// A custom resource's definition (`buildKubeNative` for v2): a schema that keeps unknown fields
/// at its root is a bare object (properties would make kubectl refuse the fields it does not
/// list); any other is made v2-compatible, then gets `apiVersion`, `kind` and `metadata`.
fn custom_resource(
    r: &ResourceInfo,
    schema: &Value,
    object_meta: &str,
    known: &BTreeSet<&str>,
) -> Value {
    let mut out = if schema["x-kubernetes-preserve-unknown-fields"] == true {
        json!({"type": "object"})
    } else {
        let mut structural = schema.clone();
        structural_v2(&mut structural);
        let mut out = to_v2(&structural, known);
        with_type_meta(&mut out, object_meta);
        embedded_resources(&mut out, object_meta);
        out
    };
    out["x-kubernetes-group-version-kind"] = json!([gvk(r, &r.kind)]);
    out
}

/// `apiVersion`, `kind` and `metadata` among the properties of `schema` (an object).
fn with_type_meta(schema: &mut Value, object_meta: &str) {
    if let Some(map) = schema.as_object_mut() {
        map.insert("type".into(), json!("object"));
        let properties = map.entry("properties").or_insert_with(|| json!({}));
        properties["apiVersion"] = json!({"description": API_VERSION, "type": "string"});
        properties["kind"] = json!({"description": KIND, "type": "string"});
        properties["metadata"] = json!({"description": OBJECT_METADATA, "$ref": object_meta});
    }
}

/// `addEmbeddedProperties`: an `x-kubernetes-embedded-resource` object (unless it keeps unknown
/// fields) gets the type meta and metadata too, and requires `kind` and `apiVersion`.
fn embedded_resources(schema: &mut Value, object_meta: &str) {
    for child in schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        embedded_resources(child, object_meta);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = schema.get_mut(key).filter(|c| c.is_object()) {
            embedded_resources(child, object_meta);
        }
    }
    if schema["x-kubernetes-embedded-resource"] == true
        && schema["x-kubernetes-preserve-unknown-fields"] != true
    {
        with_type_meta(schema, object_meta);
        let required = schema
            .as_object_mut()
            .map(|m| m.entry("required").or_insert_with(|| json!([])));
        if let Some(Value::Array(required)) = required {
            for field in ["kind", "apiVersion"] {
                if !required.iter().any(|r| r == field) {
                    required.push(json!(field));
                }
            }
        }
    }
}

/// `ToStructuralOpenAPIV2`, on a CRD's schema as JSON: the junctors go (`allOf`, `oneOf`, `anyOf`,
/// `not`); a nullable value loses its type, items and properties (kubectl cannot read a typed
/// value that may be null) and leaves its parent's `required`; a value that keeps unknown fields
/// loses its items and properties; an array left without items loses its type.
fn structural_v2(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    for junctor in ["allOf", "oneOf", "anyOf", "not"] {
        map.remove(junctor);
    }
    if map.remove("nullable") == Some(Value::Bool(true)) {
        for key in ["type", "items", "properties"] {
            map.remove(key);
        }
    }
    if map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        map.remove("items");
        map.remove("properties");
    }
    if map.get("type").and_then(Value::as_str) == Some("array") && !map.contains_key("items") {
        map.remove("type");
    }
    let nullable: Vec<String> = map
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, p)| p["nullable"] == true)
        .map(|(name, _)| name.clone())
        .collect();
    if map
        .get("additionalProperties")
        .is_some_and(|a| a["nullable"] == true)
    {
        map.remove("required");
    } else if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|r| r.as_str().is_none_or(|r| !nullable.iter().any(|n| n == r)));
        if required.is_empty() {
            map.remove("required");
        }
    }
    for child in map
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        structural_v2(child);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get_mut(key) {
            structural_v2(child);
        }
    }
}

/// The document in gnostic's protobuf encoding.
#[must_use]
pub fn protobuf(document: &Value) -> Vec<u8> {
    let definitions = named(&document["definitions"]);
    let doc = wire::Document {
        swagger: "2.0".into(),
        info: Some(wire::Info {
            title: "Kubernetes".into(),
            version: format!("v1.{KUBE_MINOR}.0"),
        }),
        paths: Some(wire::Paths {}),
        definitions: Some(wire::Definitions {
            additional_properties: definitions,
        }),
    };
    prost::Message::encode_to_vec(&doc)
}

/// One OpenAPI v3 schema (as `/openapi/v3` serves it) as Swagger 2.0; `known` names the
/// definitions a reference may point to.
fn to_v2(schema: &Value, known: &BTreeSet<&str>) -> Value {
    let Some(map) = schema.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    if let Some(description) = map.get("description").filter(|d| d.is_string()) {
        out.insert("description".into(), description.clone());
    }
    for (key, value) in map {
        if key.starts_with("x-kubernetes-") {
            out.insert(key.clone(), value.clone());
        }
    }
    let lone_all_of = map
        .get("allOf")
        .and_then(Value::as_array)
        .filter(|all| all.len() == 1)
        .and_then(|all| all[0].get("$ref"));
    if let Some(reference) = map.get("$ref").or(lone_all_of).and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        if known.contains(name) {
            out.insert("$ref".into(), json!(format!("#/definitions/{name}")));
        }
        return Value::Object(out);
    }
    let properties = map.get("properties").and_then(Value::as_object);
    match map.get("type").and_then(Value::as_str) {
        Some("array") => {
            if let Some(items) = map.get("items").filter(|i| i.is_object()) {
                out.insert("type".into(), json!("array"));
                out.insert("items".into(), to_v2(items, known));
            }
        }
        Some(primitive @ ("string" | "integer" | "number" | "boolean")) => {
            out.insert("type".into(), json!(primitive));
            if let Some(format) = map.get("format").filter(|f| f.is_string()) {
                out.insert("format".into(), format.clone());
            }
        }
        Some("object") | None if properties.is_some() => {
            out.insert("type".into(), json!("object"));
            let converted: Map<String, Value> = properties
                .into_iter()
                .flatten()
                .map(|(name, p)| (name.clone(), to_v2(p, known)))
                .collect();
            out.insert("properties".into(), Value::Object(converted));
            if let Some(required) = map.get("required").filter(|r| r.is_array()) {
                out.insert("required".into(), required.clone());
            }
        }
        Some("object") => {
            out.insert("type".into(), json!("object"));
            if let Some(values) = map.get("additionalProperties").filter(|a| a.is_object()) {
                out.insert("additionalProperties".into(), to_v2(values, known));
            }
        }
        _ => {}
    }
    Value::Object(out)
}

/// A JSON object of schemas (definitions, properties) as gnostic's ordered named schemas.
fn named(schemas: &Value) -> Vec<wire::NamedSchema> {
    schemas
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, schema)| wire::NamedSchema {
            name: name.clone(),
            value: Some(to_wire(schema)),
        })
        .collect()
}

/// A Swagger 2.0 schema (as [`to_v2`] writes it) as gnostic's message.
fn to_wire(schema: &Value) -> wire::Schema {
    let text = |key: &str| schema[key].as_str().unwrap_or_default().to_owned();
    wire::Schema {
        xref: text("$ref"),
        format: text("format"),
        description: text("description"),
        required: schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        additional_properties: schema.get("additionalProperties").map(|values| {
            wire::AdditionalPropertiesItem {
                oneof: Some(wire::Additional::Schema(Box::new(to_wire(values)))),
            }
        }),
        r#type: schema["type"].as_str().map(|t| wire::TypeItem {
            value: vec![t.to_owned()],
        }),
        items: schema.get("items").map(|items| wire::ItemsItem {
            schema: vec![to_wire(items)],
        }),
        properties: schema["properties"].is_object().then(|| wire::Properties {
            additional_properties: named(&schema["properties"]),
        }),
        vendor_extension: schema
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.starts_with("x-"))
            .map(|(key, value)| wire::NamedAny {
                name: key.clone(),
                // kube-openapi reads an extension's value as YAML, of which JSON is a subset.
                value: Some(wire::Any {
                    yaml: value.to_string(),
                }),
            })
            .collect(),
    }
}

/// The messages of gnostic's `openapi.v2` package this server writes, with the fields it fills
/// (names and field numbers as in gnostic's `openapiv2/OpenAPIv2.proto`).
mod wire {
    /// `openapi.v2.Document`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        /// The Swagger version.
        #[prost(string, tag = "1")]
        pub swagger: String,
        /// Title and version.
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        /// The operations (none are published).
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        /// The schemas by name.
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    /// `openapi.v2.Info`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        /// The API's title.
        #[prost(string, tag = "1")]
        pub title: String,
        /// The API's version.
        #[prost(string, tag = "2")]
        pub version: String,
    }

    /// `openapi.v2.Paths`, empty.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {}

    /// `openapi.v2.Definitions`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        /// The schemas, in order.
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    /// `openapi.v2.NamedSchema`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        /// The key.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The schema.
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    /// `openapi.v2.Schema`, the fields kubectl reads.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        /// `$ref`.
        #[prost(string, tag = "1")]
        pub xref: String,
        /// `format`.
        #[prost(string, tag = "2")]
        pub format: String,
        /// `description`.
        #[prost(string, tag = "4")]
        pub description: String,
        /// `required`.
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        /// `additionalProperties`.
        #[prost(message, optional, tag = "21")]
        pub additional_properties: Option<AdditionalPropertiesItem>,
        /// `type`.
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        /// `items`.
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        /// `properties`.
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        /// The `x-` extensions.
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// `openapi.v2.AdditionalPropertiesItem`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        /// A schema or a boolean.
        #[prost(oneof = "Additional", tags = "1")]
        pub oneof: Option<Additional>,
    }

    /// The schema of `AdditionalPropertiesItem`'s oneof (the boolean is never written).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Additional {
        /// The values' schema.
        #[prost(message, tag = "1")]
        Schema(Box<Schema>),
    }

    /// `openapi.v2.TypeItem`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        /// The type names.
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    /// `openapi.v2.ItemsItem`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        /// The items' schema.
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    /// `openapi.v2.Properties`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        /// The properties, in order.
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    /// `openapi.v2.NamedAny`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        /// The extension's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its value.
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// `openapi.v2.Any`, by its YAML text.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// The value as YAML.
        #[prost(string, tag = "2")]
        pub yaml: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;

    #[test]
    fn kinds_carry_their_group_version_kind_and_references_resolve() {
        let cluster = Cluster::open(None, 100).unwrap();
        let doc = document(&cluster.lock());
        let defs = doc["definitions"].as_object().unwrap();
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        // kube-openapi refuses the whole document over one reference it cannot resolve, or an
        // array without exactly one item schema.
        fn check(v: &Value, defs: &Map<String, Value>) {
            if let Some(r) = v["$ref"].as_str() {
                let name = r.strip_prefix("#/definitions/").unwrap();
                assert!(defs.contains_key(name), "{r}");
            }
            if v["type"] == "array" {
                assert!(v["items"].is_object(), "{v}");
            }
            for child in v["properties"].as_object().into_iter().flatten() {
                check(child.1, defs);
            }
            for key in ["items", "additionalProperties"] {
                if v[key].is_object() {
                    check(&v[key], defs);
                }
            }
        }
        for def in defs.values() {
            check(def, defs);
        }
    }

    #[test]
    fn the_protobuf_form_decodes_with_the_definitions() {
        let cluster = Cluster::open(None, 100).unwrap();
        let doc = document(&cluster.lock());
        let bytes = protobuf(&doc);
        let decoded: wire::Document = prost::Message::decode(bytes.as_slice()).unwrap();
        let defs = decoded.definitions.unwrap().additional_properties;
        assert_eq!(defs.len(), doc["definitions"].as_object().unwrap().len());
        let config_map = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.ConfigMap")
            .and_then(|d| d.value.as_ref())
            .unwrap();
        assert_eq!(config_map.r#type.as_ref().unwrap().value, ["object"]);
        let gvk = &config_map.vendor_extension[0];
        assert_eq!(gvk.name, "x-kubernetes-group-version-kind");
        assert_eq!(
            gvk.value.as_ref().unwrap().yaml,
            r#"[{"group":"","kind":"ConfigMap","version":"v1"}]"#
        );
    }

    #[test]
    fn a_custom_resource_is_published_as_the_crd_builder_publishes_it_for_v2() {
        let cluster = Cluster::open(None, 100).unwrap();
        let mut inner = cluster.lock();
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size", "note"],
                            "oneOf": [{"required": ["size"]}],
                            "properties": {
                                "size": {"type": "integer", "minimum": 0},
                                "note": {"type": "string", "nullable": true},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                    "properties": {"a": {"type": "string"}}},
                                "tags": {"type": "array", "x-kubernetes-preserve-unknown-fields": true,
                                    "items": {"type": "string"}},
                                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                    "properties": {"spec": {"type": "object"}}},
                            },
                        },
                    },
                }}}]},
        });
        inner
            .store
            .put(
                crate::resource::CRD_RESOURCE,
                (String::new(), "gadgets.example.com".into()),
                crd.clone(),
            )
            .unwrap();
        inner.registry.set_crd(&crd).unwrap();
        let doc = document(&inner);
        let defs = doc["definitions"].as_object().unwrap();
        let gadget = &defs["com.example.v1.Gadget"];
        assert_eq!(
            gadget["x-kubernetes-group-version-kind"],
            json!([{"group": "example.com", "version": "v1", "kind": "Gadget"}])
        );
        assert_eq!(
            gadget["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(gadget["properties"]["kind"]["type"], "string");
        let spec = &gadget["properties"]["spec"];
        assert_eq!(
            spec["required"],
            json!(["size"]),
            "a nullable field is not required"
        );
        assert!(spec.get("oneOf").is_none());
        assert_eq!(spec["properties"]["size"]["type"], "integer");
        assert!(
            spec["properties"]["note"].get("type").is_none(),
            "nullable: untyped"
        );
        assert_eq!(
            spec["properties"]["extra"],
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );
        assert!(
            spec["properties"]["tags"].get("type").is_none(),
            "an array without items"
        );
        let template = &spec["properties"]["template"];
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        assert!(template["properties"]["metadata"]["$ref"].is_string());
        let list = &defs["com.example.v1.GadgetList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.v1.Gadget"
        );
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "GadgetList"
        );
        assert!(
            defs[list["properties"]["metadata"]["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/definitions/")]
            .is_object()
        );
    }

    #[test]
    fn kubectl_accept_header_asks_for_protobuf() {
        assert!(wants_protobuf(PROTOBUF));
        assert!(wants_protobuf(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(!wants_protobuf("application/json"));
    }
}
