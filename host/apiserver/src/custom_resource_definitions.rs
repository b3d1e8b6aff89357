//! The definitions themselves: `SetDefaults_CustomResourceDefinition` (the conversion strategy
//! `None`, `names.singular` and `names.listKind` from the kind, a webhook service's port 443) and
//! the parts of `ValidateCustomResourceDefinitionSpec` (`apiextensions-apiserver`'s
//! `pkg/apis/apiextensions/validation`) CRD authors meet: the group, the scope, the versions (names,
//! unique, exactly one storage version, a schema each), the names, and the conversion, with
//! kube-apiserver's messages and its internal field paths (`spec.conversion.webhookClientConfig`).
//! A definition that converts through a webhook is served, but this server calls no webhook:
//! requests to a version other than the storage version are refused as a cluster refuses them
//! when its webhook cannot be reached ([`webhook_refusal`]).

use serde_json::{Value, json};

use crate::error::{ApiError, FieldCause};
use crate::resource::ResourceInfo;
use crate::validation::{dns1035_label, dns1123_subdomain};

/// `SetDefaults_CustomResourceDefinition` and `SetDefaults_ServiceReference`.
pub fn defaults(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let conversion = spec
        .entry("conversion")
        .or_insert_with(|| json!({"strategy": "None"}));
    if let Some(service) = conversion
        .pointer_mut("/webhook/clientConfig/service")
        .and_then(Value::as_object_mut)
    {
        service.entry("port").or_insert(json!(443));
    }
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !kind.is_empty() {
            let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
            if empty(names.get("singular")) {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
            if empty(names.get("listKind")) {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
        }
    }
}

/// Go's `%#v` of the definition's versions stands in `spec.versions` errors; this is its type.
const VERSIONS_PRINTED: &str = "[]apiextensions.CustomResourceDefinitionVersion{...}";

/// The field errors of a definition's spec (after [`defaults`]).
#[must_use]
pub fn validate(object: &Value) -> Vec<FieldCause> {
    let spec = &object["spec"];
    let mut errs = Vec::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let group = text(&spec["group"]);
    if group.is_empty() {
        errs.push(FieldCause::required("spec.group", ""));
    } else if let Err(e) = dns1123_subdomain(&group) {
        errs.push(FieldCause::invalid("spec.group", &group, e));
    } else if !group.contains('.') {
        errs.push(FieldCause::invalid(
            "spec.group",
            &group,
            "should be a domain with at least one dot",
        ));
    }
    match spec["scope"].as_str().unwrap_or_default() {
        "" => errs.push(FieldCause::required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldCause::not_supported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = spec["versions"].as_array().map_or(&[][..], Vec::as_slice);
    let mut names = std::collections::HashSet::new();
    let mut unique = true;
    for (i, version) in versions.iter().enumerate() {
        let name = text(&version["name"]);
        unique &= names.insert(name.clone());
        if let Err(e) = dns1035_label(&name) {
            errs.push(FieldCause::invalid(
                &format!("spec.versions[{i}].name"),
                &name,
                e,
            ));
        }
        let schema = &version["schema"]["openAPIV3Schema"];
        if schema.is_object() {
            // `ValidateStructural` sorts its errors by their text.
            let mut structural = Vec::new();
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            structural_causes(&path, schema, Level::Root, &mut structural);
            completeness_causes(&path, schema, &mut structural);
            structural.sort_by_key(|c| format!("{}: {}", c.field, c.message));
            errs.extend(structural);
        } else {
            errs.push(FieldCause::required(
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
        selectable_causes(i, version, &mut errs);
        scale_causes(i, &version["subresources"]["scale"], &mut errs);
        for (j, column) in version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            column_causes(
                &format!("spec.versions[{i}].additionalPrinterColumns[{j}]"),
                column,
                &mut errs,
            );
        }
    }
    if !unique {
        errs.push(FieldCause::invalid_printed(
            "spec.versions",
            VERSIONS_PRINTED,
            "must contain unique version names",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldCause::invalid_printed(
            "spec.versions",
            VERSIONS_PRINTED,
            "must have exactly one version marked as storage version",
        ));
    }
    names_causes(&spec["names"], &mut errs);
    conversion_causes(&spec["conversion"], &mut errs);
    errs
}

/// A version's `selectableFields`: at most 8, each a simple path (no array notation) to a field of
/// type string, integer or boolean that its schema declares, outside `metadata`, none twice.
fn selectable_causes(i: usize, version: &Value, errs: &mut Vec<FieldCause>) {
    let path = format!("spec.versions[{i}].selectableFields");
    let Some(fields) = version["selectableFields"]
        .as_array()
        .filter(|f| !f.is_empty())
    else {
        return;
    };
    let schema = &version["schema"]["openAPIV3Schema"];
    if !schema.is_object() {
        errs.push(FieldCause::invalid(
            &path,
            "",
            "may only be set when `version.schema.openAPIV3Schema` is not included",
        ));
        return;
    }
    if fields.len() > 8 {
        errs.push(FieldCause::other_typed(
            crate::error::CauseType::ValueTooMany,
            &path,
            format!("Too many: {}: must have at most 8 items", fields.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, field) in fields.iter().enumerate() {
        let at = format!("{path}[{j}].jsonPath");
        let Some(json_path) = field["jsonPath"].as_str().filter(|p| !p.is_empty()) else {
            errs.push(FieldCause::required(&at, ""));
            continue;
        };
        if !seen.insert(json_path) {
            errs.push(FieldCause::duplicate(&at, &json!(json_path)));
            continue;
        }
        let segments: Option<Vec<&str>> = json_path
            .strip_prefix('.')
            .map(|rest| rest.split('.').collect())
            .filter(|s: &Vec<&str>| {
                s.iter()
                    .all(|seg| !seg.is_empty() && !seg.contains(['[', ']', '*', '@', '$', '\\']))
            });
        let Some(segments) = segments else {
            errs.push(FieldCause::invalid(
                &at,
                json_path,
                "must be a simple JSON path without array notation, such as .spec.color",
            ));
            continue;
        };
        if segments.first() == Some(&"metadata") {
            errs.push(FieldCause::invalid(
                &at,
                json_path,
                "must not point to metadata fields",
            ));
            continue;
        }
        let node = segments
            .iter()
            .try_fold(schema, |node, seg| node["properties"].get(*seg));
        let scalar = node
            .is_some_and(|n| matches!(n["type"].as_str(), Some("string" | "integer" | "boolean")));
        if !scalar {
            errs.push(FieldCause::invalid(
                &at,
                json_path,
                "must point to a field of type string, boolean or integer in the schema",
            ));
        }
    }
}

/// Where a schema stands in its tree (`validateStructuralInvariants`' levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// The types a schema may name.
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// `validateStructuralInvariants` (`apiextensions-apiserver/pkg/apiserver/schema/validation.go`)
/// and the type check of `ValidateCustomResourceDefinitionOpenAPISchema`: every object field and
/// array item has a type (unless it is `x-kubernetes-int-or-string` or preserves unknown fields),
/// an array has items, the root is an object without `additionalProperties` and a `metadata` that
/// says only `name` and `generateName`, `kind` and `apiVersion` of a resource are strings, and
/// the extensions agree.
fn structural_causes(path: &str, schema: &Value, level: Level, errs: &mut Vec<FieldCause>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    let flag = |key: &str| schema[key].as_bool() == Some(true);
    let kind = schema["type"].as_str().unwrap_or_default();
    let embedded = flag("x-kubernetes-embedded-resource");
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    if !kind.is_empty() && !TYPES.contains(&kind) {
        errs.push(FieldCause::not_supported(
            &format!("{path}.type"),
            &json!(kind),
            &TYPES,
        ));
    }
    if kind == "array" && !map.contains_key("items") {
        errs.push(FieldCause::required(
            &format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(items) = schema.get("items") {
        structural_causes(&format!("{path}.items"), items, Level::Item, errs);
    }
    for (key, property) in schema["properties"].as_object().into_iter().flatten() {
        structural_causes(
            &format!("{path}.properties[{key}]"),
            property,
            Level::Field,
            errs,
        );
    }
    if let Some(additional) = schema.get("additionalProperties") {
        if level == Level::Root {
            errs.push(FieldCause::forbidden(
                &format!("{path}.additionalProperties"),
                "must not be used at the root",
            ));
        }
        if additional.is_object() {
            structural_causes(
                &format!("{path}.additionalProperties"),
                additional,
                Level::Field,
                errs,
            );
        }
    }
    if int_or_string && preserve {
        errs.push(FieldCause::invalid_value(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldCause::invalid_value(
            &format!("{path}.x-kubernetes-embedded-resource"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    // The value validations (`anyOf`, `allOf`, `oneOf`, `not`), except the two shapes that
    // spell out `x-kubernetes-int-or-string`.
    junctor_causes(
        path,
        schema,
        int_or_string_any_of(schema),
        schema["allOf"][0].is_object() && int_or_string_any_of(&schema["allOf"][0]),
        errs,
    );
    if embedded && kind != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if kind.is_empty() {
            errs.push(FieldCause::required(&format!("{path}.type"), detail));
        } else {
            errs.push(FieldCause::invalid(&format!("{path}.type"), kind, detail));
        }
    } else if kind.is_empty() && !int_or_string && !preserve {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldCause::required(&format!("{path}.type"), detail));
    }
    if embedded && map.contains_key("additionalProperties") {
        errs.push(FieldCause::forbidden(
            &format!("{path}.additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if level == Level::Root && !kind.is_empty() && kind != "object" {
        errs.push(FieldCause::invalid(
            &format!("{path}.type"),
            kind,
            "must be object at the root",
        ));
    }
    let properties = &schema["properties"];
    if level == Level::Root || embedded {
        for (key, want) in [
            ("kind", "string"),
            ("apiVersion", "string"),
            ("metadata", "object"),
        ] {
            if let Some(property) = properties.get(key)
                && property["type"].as_str().unwrap_or_default() != want
            {
                errs.push(FieldCause::invalid(
                    &format!("{path}.properties[{key}].type"),
                    property["type"].as_str().unwrap_or_default(),
                    format!("must be {want}"),
                ));
            }
        }
    }
    if level == Level::Root
        && let Some(metadata) = properties.get("metadata").and_then(Value::as_object)
    {
        let names_only = metadata["properties"]
            .as_object()
            .is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName"));
        let other_keys = metadata
            .keys()
            .any(|k| !["type", "properties", "default"].contains(&k.as_str()));
        if !names_only || other_keys {
            errs.push(FieldCause::forbidden(
                &format!("{path}.properties[metadata]"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !preserve && properties.as_object().is_none_or(serde_json::Map::is_empty) {
        errs.push(FieldCause::required(
            &format!("{path}.properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// `validateSimpleJSONPath`: a path in dot notation from the root.
/// Whether `schema`'s `anyOf` is exactly `[{type: integer}, {type: string}]`
/// (`isIntOrStringAnyOfPattern`).
fn int_or_string_any_of(schema: &Value) -> bool {
    schema["anyOf"] == json!([{"type": "integer"}, {"type": "string"}])
}

/// `validateValueValidation`: the schemas under `schema`'s logical junctors, each checked by
/// [`nested_causes`] (`skip_any_of` and `skip_first_all_of_any_of` leave out the int-or-string
/// shapes), and its `pattern`, which must compile.
fn junctor_causes(
    path: &str,
    schema: &Value,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    errs: &mut Vec<FieldCause>,
) {
    for junctor in junctors(schema) {
        let skip = match (junctor.key, junctor.index) {
            ("anyOf", _) if skip_any_of => continue,
            ("allOf", Some(0)) => skip_first_all_of_any_of,
            _ => false,
        };
        let at = format!("{path}{}", junctor.suffix());
        nested_causes(&at, junctor.schema, skip, errs);
    }
    if let Some(pattern) = schema["pattern"].as_str()
        && let Some(error) = crate::pattern::error(pattern)
    {
        errs.push(FieldCause::invalid(
            &format!("{path}.pattern"),
            pattern,
            format!("must be a valid regular expression, but isn't: {error}"),
        ));
    }
}

/// `validateNestedValueValidation` with a CRD's options: a schema under a logical junctor only
/// validates values; what gives a structure (a type, additional properties, a default, the
/// extensions) or describes it (a title, a description, external docs) belongs to the structural
/// part of the schema, and `metadata` is never named there.
fn nested_causes(path: &str, schema: &Value, skip_any_of: bool, errs: &mut Vec<FieldCause>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    junctor_causes(path, schema, skip_any_of, false, errs);
    if let Some(items) = map.get("items") {
        nested_causes(&format!("{path}.items"), items, false, errs);
    }
    for (key, property) in schema["properties"].as_object().into_iter().flatten() {
        nested_causes(&format!("{path}.properties[{key}]"), property, false, errs);
    }
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    };
    let set = |key: &str| map.get(key).is_some_and(|v| !v.is_null());
    let on = |key: &str| map.get(key).and_then(Value::as_bool) == Some(true);
    let listed = |key: &str| {
        map.get(key)
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
    };
    let forbidden = [
        ("type", text("type"), "must be empty to be structural"),
        (
            "additionalProperties",
            set("additionalProperties"),
            "must be undefined to be structural",
        ),
        (
            "default",
            set("default"),
            "must be undefined to be structural",
        ),
        ("title", text("title"), "must be empty to be structural"),
        (
            "description",
            text("description"),
            "must be empty to be structural",
        ),
        ("nullable", on("nullable"), "must be false to be structural"),
        (
            "externalDocs",
            set("externalDocs"),
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-preserve-unknown-fields",
            on("x-kubernetes-preserve-unknown-fields"),
            "must be false to be structural",
        ),
        (
            "x-kubernetes-embedded-resource",
            on("x-kubernetes-embedded-resource"),
            "must be false to be structural",
        ),
        (
            "x-kubernetes-int-or-string",
            on("x-kubernetes-int-or-string"),
            "must be false to be structural",
        ),
        (
            "x-kubernetes-list-map-keys",
            listed("x-kubernetes-list-map-keys"),
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            set("x-kubernetes-list-type"),
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-map-type",
            set("x-kubernetes-map-type"),
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-validations",
            listed("x-kubernetes-validations"),
            "must be empty to be structural",
        ),
    ];
    for (key, _, detail) in forbidden.into_iter().filter(|(_, present, _)| *present) {
        errs.push(FieldCause::forbidden(&format!("{path}.{key}"), detail));
    }
    if schema["properties"].get("metadata").is_some() {
        errs.push(FieldCause::forbidden(
            &format!("{path}.properties[metadata]"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralCompleteness`: every field or item a value validation under the root's
/// logical junctors names must be specified in the structural part of the schema too.
fn completeness_causes(path: &str, root: &Value, errs: &mut Vec<FieldCause>) {
    for junctor in junctors(root) {
        let at = format!("{path}{}", junctor.suffix());
        nested_completeness(&at, junctor.schema, Some(root), path, errs);
    }
}

/// One schema under a logical junctor: `not`, or an entry of `allOf`, `anyOf` or `oneOf`.
struct Junctor<'a> {
    key: &'static str,
    /// The entry's index; `None` for `not`.
    index: Option<usize>,
    schema: &'a Value,
}

impl Junctor<'_> {
    /// Its path below the schema holding it (`.not`, `.anyOf[0]`).
    fn suffix(&self) -> String {
        match self.index {
            Some(i) => format!(".{}[{i}]", self.key),
            None => format!(".{}", self.key),
        }
    }
}

/// The schemas under `schema`'s logical junctors, in the order
/// `validateValueValidationCompleteness` visits them.
fn junctors(schema: &Value) -> Vec<Junctor<'_>> {
    let mut out: Vec<Junctor<'_>> = schema
        .get("not")
        .map(|not| Junctor {
            key: "not",
            index: None,
            schema: not,
        })
        .into_iter()
        .collect();
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, nested) in schema[key].as_array().into_iter().flatten().enumerate() {
            out.push(Junctor {
                key,
                index: Some(i),
                schema: nested,
            });
        }
    }
    out
}

/// `validateNestedValueValidationCompleteness`: `nested` (at `v_path`) against the structural
/// schema `structural` (at `s_path`).
fn nested_completeness(
    v_path: &str,
    nested: &Value,
    structural: Option<&Value>,
    s_path: &str,
    errs: &mut Vec<FieldCause>,
) {
    if !nested.is_object() {
        return;
    }
    let Some(structural) = structural else {
        errs.push(FieldCause::required(
            s_path,
            &format!("because it is defined in {v_path}"),
        ));
        return;
    };
    for junctor in junctors(nested) {
        let at = format!("{v_path}{}", junctor.suffix());
        nested_completeness(&at, junctor.schema, Some(structural), s_path, errs);
    }
    if let Some(items) = nested.get("items") {
        nested_completeness(
            &format!("{v_path}.items"),
            items,
            structural.get("items"),
            &format!("{s_path}.items"),
            errs,
        );
    }
    for (key, property) in nested["properties"].as_object().into_iter().flatten() {
        nested_completeness(
            &format!("{v_path}.properties[{key}]"),
            property,
            structural["properties"].get(key),
            &format!("{s_path}.properties[{key}]"),
            errs,
        );
    }
}

fn simple_path_cause(path: &str, value: &str) -> Option<FieldCause> {
    if value.is_empty() {
        Some(FieldCause::invalid(path, value, "must not be empty"))
    } else if !value.starts_with('.') {
        Some(FieldCause::invalid(
            path,
            value,
            "must be a simple json path starting with .",
        ))
    } else {
        None
    }
}

/// `ValidateCustomResourceDefinitionSubresources` for a version's scale subresource: the replica
/// paths required, under `.spec.` and `.status.`.
fn scale_causes(i: usize, scale: &Value, errs: &mut Vec<FieldCause>) {
    if !scale.is_object() {
        return;
    }
    for (key, under) in [
        ("specReplicasPath", ".spec."),
        ("statusReplicasPath", ".status."),
    ] {
        let path = format!("spec.versions[{i}].subresources.scale.{key}");
        let value = scale[key].as_str().unwrap_or_default();
        if value.is_empty() {
            errs.push(FieldCause::required(&path, ""));
        } else if let Some(cause) = simple_path_cause(&path, value) {
            errs.push(cause);
        } else if !value.starts_with(under) {
            errs.push(FieldCause::invalid(
                &path,
                value,
                format!(
                    "should be a json path under {}",
                    under.trim_end_matches('.')
                ),
            ));
        }
    }
}

/// `ValidateCustomResourceColumnDefinition`: a name, a known type and format, a path.
fn column_causes(path: &str, column: &Value, errs: &mut Vec<FieldCause>) {
    const TYPES: &str = "boolean,date,integer,number,string";
    const FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";
    if column["name"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldCause::required(&format!("{path}.name"), ""));
    }
    match column["type"].as_str().unwrap_or_default() {
        "" => errs.push(FieldCause::required(
            &format!("{path}.type"),
            &format!("must be one of {TYPES}"),
        )),
        kind if !TYPES.split(',').any(|t| t == kind) => errs.push(FieldCause::invalid(
            &format!("{path}.type"),
            kind,
            format!("must be one of {TYPES}"),
        )),
        _ => {}
    }
    if let Some(format) = column["format"].as_str().filter(|f| !f.is_empty())
        && !FORMATS.split(',').any(|f| f == format)
    {
        errs.push(FieldCause::invalid(
            &format!("{path}.format"),
            format,
            format!("must be one of {FORMATS}"),
        ));
    }
    let json_path = column["jsonPath"].as_str().unwrap_or_default();
    if json_path.is_empty() {
        errs.push(FieldCause::required(&format!("{path}.jsonPath"), ""));
    } else if let Some(cause) = simple_path_cause(&format!("{path}.jsonPath"), json_path) {
        errs.push(cause);
    }
}

/// The required names and `ValidateCustomResourceDefinitionNames`.
fn names_causes(names: &Value, errs: &mut Vec<FieldCause>) {
    let text = |key: &str| names[key].as_str().unwrap_or_default().to_owned();
    let (plural, singular, kind, list_kind) = (
        text("plural"),
        text("singular"),
        text("kind"),
        text("listKind"),
    );
    for (key, value) in [
        ("plural", &plural),
        ("singular", &singular),
        ("kind", &kind),
        ("listKind", &list_kind),
    ] {
        if value.is_empty() {
            errs.push(FieldCause::required(&format!("spec.names.{key}"), ""));
        }
    }
    for (key, value) in [("plural", &plural), ("singular", &singular)] {
        if !value.is_empty()
            && let Err(e) = dns1035_label(value)
        {
            errs.push(FieldCause::invalid(&format!("spec.names.{key}"), value, e));
        }
    }
    for (key, value) in [("kind", &kind), ("listKind", &list_kind)] {
        if !value.is_empty()
            && let Err(e) = dns1035_label(&value.to_lowercase())
        {
            errs.push(FieldCause::invalid(
                &format!("spec.names.{key}"),
                value,
                format!("may have mixed case, but should otherwise match: {e}"),
            ));
        }
    }
    for key in ["shortNames", "categories"] {
        for (i, item) in names[key].as_array().into_iter().flatten().enumerate() {
            let item = item.as_str().unwrap_or_default();
            if let Err(e) = dns1035_label(item) {
                errs.push(FieldCause::invalid(
                    &format!("spec.names.{key}[{i}]"),
                    item,
                    e,
                ));
            }
        }
    }
    if !kind.is_empty() && kind == list_kind {
        errs.push(FieldCause::invalid(
            "spec.names.listKind",
            &list_kind,
            "kind and listKind may not be the same",
        ));
    }
}

/// `ValidateCustomResourceConversion`, its paths the internal type's (`webhookClientConfig`,
/// `conversionReviewVersions` directly under `spec.conversion`).
fn conversion_causes(conversion: &Value, errs: &mut Vec<FieldCause>) {
    const PATH: &str = "spec.conversion";
    let client = &conversion["webhook"]["clientConfig"];
    match conversion["strategy"].as_str().unwrap_or_default() {
        "" => errs.push(FieldCause::required(&format!("{PATH}.strategy"), "")),
        "None" => {
            if client.is_object() {
                errs.push(FieldCause::forbidden(
                    &format!("{PATH}.webhookClientConfig"),
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => {
            let config = format!("{PATH}.webhookClientConfig");
            if !client.is_object() {
                errs.push(FieldCause::required(
                    &config,
                    "required when strategy is set to Webhook",
                ));
            } else if client["url"].is_string() == client["service"].is_object() {
                errs.push(FieldCause::required(
                    &config,
                    "exactly one of url or service is required",
                ));
            } else if let Some(url) = client["url"].as_str() {
                url_causes(&format!("{config}.url"), url, errs);
            } else {
                service_causes(&format!("{config}.service"), &client["service"], errs);
            }
            let versions: Vec<&str> = conversion["webhook"]["conversionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let path = format!("{PATH}.conversionReviewVersions");
            if versions.is_empty() {
                errs.push(FieldCause::required(
                    &path,
                    "must contain at least one version",
                ));
            } else if !versions.iter().any(|v| ["v1", "v1beta1"].contains(v)) {
                errs.push(FieldCause::invalid_printed(
                    &path,
                    &crate::error::go_strings(
                        &versions.iter().map(|v| json!(v)).collect::<Vec<_>>(),
                    ),
                    "must include at least one of v1, v1beta1",
                ));
            }
        }
        other => errs.push(FieldCause::not_supported(
            &format!("{PATH}.strategy"),
            &json!(other),
            &["None", "Webhook"],
        )),
    }
}

/// `ValidateWebhookURL` (for a server that must be reached by https).
fn url_causes(path: &str, url: &str, errs: &mut Vec<FieldCause>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        errs.push(FieldCause::invalid(path, url, "host must be specified"));
        return;
    };
    if scheme != "https" {
        errs.push(FieldCause::invalid(
            path,
            url,
            "'https' is the only allowed URL scheme",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        errs.push(FieldCause::invalid(path, url, "host must be specified"));
    }
    if authority.contains('@') {
        errs.push(FieldCause::invalid(
            path,
            url,
            "user information is not permitted in the URL",
        ));
    }
    if url.contains('#') {
        errs.push(FieldCause::invalid(
            path,
            url,
            "fragments are not permitted in the URL",
        ));
    }
    if url.contains('?') {
        errs.push(FieldCause::invalid(
            path,
            url,
            "query parameters are not permitted in the URL",
        ));
    }
}

/// `ValidateWebhookService`: a name and a namespace, a path that starts with `/`, a port in range.
fn service_causes(path: &str, service: &Value, errs: &mut Vec<FieldCause>) {
    for (key, detail) in [
        ("name", "service name is required"),
        ("namespace", "service namespace is required"),
    ] {
        if service[key].as_str().is_none_or(str::is_empty) {
            errs.push(FieldCause::required(&format!("{path}.{key}"), detail));
        }
    }
    if let Some(p) = service["path"].as_str()
        && !p.is_empty()
        && !p.starts_with('/')
    {
        errs.push(FieldCause::invalid(
            &format!("{path}.path"),
            p,
            "must start with a '/'",
        ));
    }
    if let Some(port) = service["port"].as_i64()
        && !(1..=65535).contains(&port)
    {
        errs.push(FieldCause::invalid_value(
            &format!("{path}.port"),
            &json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
}

/// The update of a definition (after [`validate`]): `PrepareForUpdate` keeps the versions ever
/// stored (`status.storedVersions`, the new storage version added), and
/// `ValidateCustomResourceDefinitionUpdate` keeps the group and plural (and, once established,
/// as here always, the scope and kind) and requires every stored version in `spec.versions`.
pub fn update(old: &Value, object: &mut Value) -> Vec<FieldCause> {
    let mut stored: Vec<Value> = old["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(storage) = storage_version(object).map(|v| json!(v))
        && !stored.contains(&storage)
    {
        stored.push(storage);
    }
    let names: Vec<&Value> = object["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| &v["name"])
        .collect();
    let mut errs = Vec::new();
    for (path, pointer) in [
        ("spec.group", "/spec/group"),
        ("spec.names.plural", "/spec/names/plural"),
        ("spec.scope", "/spec/scope"),
        ("spec.names.kind", "/spec/names/kind"),
    ] {
        let (new, before) = (object.pointer(pointer), old.pointer(pointer));
        if new != before {
            errs.push(FieldCause::invalid_value(
                path,
                new.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
    for (i, name) in stored.iter().enumerate() {
        if !names.contains(&name) {
            errs.push(FieldCause::invalid_value(
                &format!("status.storedVersions[{i}]"),
                name,
                "must appear in spec.versions",
            ));
        }
    }
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("storedVersions".into(), Value::Array(stored));
    }
    errs
}

/// Whether `crd` converts through a webhook, and then its storage version.
#[must_use]
pub fn webhook_storage_version(crd: &Value) -> Option<String> {
    if crd["spec"]["conversion"]["strategy"] != "Webhook" {
        return None;
    }
    storage_version(crd).map(str::to_owned)
}

/// The definition's storage version: the version marked `storage` ([`validate`] requires
/// exactly one).
#[must_use]
pub fn storage_version(crd: &Value) -> Option<&str> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .and_then(|v| v["name"].as_str())
}

/// The refusal of a request to `info`, a version of a definition that converts through a
/// webhook to its storage version `storage`: the answer of a cluster whose conversion webhook
/// cannot be reached (500, `conversion webhook for GROUP/VERSION, Kind=KIND failed: ...`).
#[must_use]
pub fn webhook_refusal(info: &ResourceInfo, storage: &str) -> ApiError {
    ApiError::Internal(format!(
        "conversion webhook for {}, Kind={} failed: this API server calls no conversion webhooks; \
         request version {storage:?}, the storage version, which needs no conversion",
        info.api_version(),
        info.kind
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(spec: Value) -> Value {
        let mut object = json!({"metadata": {"name": "widgets.example.com"}, "spec": spec});
        defaults(&mut object);
        object
    }

    fn causes(object: &Value) -> Vec<String> {
        validate(object)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_definition_is_defaulted_and_validated_as_kubernetes_does() {
        let schema = json!({"openAPIV3Schema": {"type": "object"}});
        let good = crd(json!({"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": schema}]}));
        assert_eq!(good["spec"]["names"]["singular"], "widget");
        assert_eq!(good["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(good["spec"]["conversion"], json!({"strategy": "None"}));
        assert!(causes(&good).is_empty(), "{:?}", causes(&good));
        let bad = crd(json!({"group": "example", "scope": "Everywhere",
            "names": {"plural": "Widgets", "kind": "Widget", "listKind": "Widget"},
            "versions": [{"name": "v1", "storage": true, "schema": schema},
                {"name": "v1", "storage": true}],
            "conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "http://x?a=b"}}}}));
        assert_eq!(
            causes(&bad),
            [
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
                "spec.scope: Unsupported value: \"Everywhere\": supported values: \"Cluster\", \"Namespaced\"",
                "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required",
                "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must contain unique version names",
                "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version",
                "spec.names.plural: Invalid value: \"Widgets\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.names.listKind: Invalid value: \"Widget\": kind and listKind may not be the same",
                "spec.conversion.webhookClientConfig.url: Invalid value: \"http://x?a=b\": 'https' is the only allowed URL scheme",
                "spec.conversion.webhookClientConfig.url: Invalid value: \"http://x?a=b\": query parameters are not permitted in the URL",
                "spec.conversion.conversionReviewVersions: Required value: must contain at least one version",
            ]
        );
    }
}
