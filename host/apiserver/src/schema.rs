//! Structural schemas of custom resources, applied to a write as apiextensions-apiserver does:
//! prune the fields the schema does not declare (unless `x-kubernetes-preserve-unknown-fields`),
//! drop `null`s where the schema is not `nullable`, apply `default`s, then validate (type, enum,
//! minimum/maximum, length, items, pattern, required, set uniqueness) with kube-openapi's messages,
//! e.g. `spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0`.
//!
//! `x-kubernetes-validations` rules are evaluated with the `cel` crate, `self` bound to the value at
//! the rule's node and `oldSelf` to the stored one on an update (a rule that reads `oldSelf` is a
//! transition rule, skipped on a create); a failed rule reads `spec: Invalid value: "object":
//! <message>` (the `messageExpression`'s string when it gives one, else `message`, else `failed
//! rule: <rule>`), its `reason` and `fieldPath` respected.
//!
//! String `format`s are checked by [`crate::format`]. Not carried out: the Kubernetes CEL
//! libraries beyond the standard one (`quantity()`, `url()`, `isSorted()`...), and the cost
//! limits.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::Inner;
use crate::error::FieldCause;
use crate::resource::{CRD_RESOURCE, ResourceInfo};

/// The `openAPIV3Schema` of a custom resource's version, from its CRD.
#[must_use]
pub fn of_custom_resource<'a>(inner: &'a Inner, info: &ResourceInfo) -> Option<&'a Value> {
    let name = format!("{}.{}", info.plural, info.group);
    let crd = inner.store.get(CRD_RESOURCE, &(String::new(), name))?;
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == info.version.as_str())?
        .pointer("/schema/openAPIV3Schema")
}

/// What a schema did to an object.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Paths of the fields dropped because the schema does not declare them.
    pub unknown: Vec<String>,
    /// Validation errors.
    pub errors: Vec<FieldCause>,
}

/// Prunes, defaults and validates `object` (a custom resource) against `schema`, its version's
/// `openAPIV3Schema`; `old` is the stored object of an update.
#[must_use]
pub fn apply(schema: &Value, object: &mut Value, old: Option<&Value>) -> Outcome {
    let mut out = Outcome::default();
    prune(schema, object, "", true, &mut out.unknown);
    default(schema, object);
    validate(schema, object, "", true, &mut out.errors);
    rules(schema, object, old, "", true, &mut out.errors);
    out
}

/// A JSON value of `schema` as CEL sees it: integers are `int`, objects maps with string keys. An
/// object's properties are named as CEL names them (`x-name` is `x__dash__name`,
/// [`crate::cel_library::escaping`]); a map's keys (`additionalProperties`) stay as they are.
fn cel_value(value: &Value, schema: Option<&Value>) -> cel::Value {
    match value {
        Value::Array(items) => {
            let items_schema = schema.and_then(|s| s.get("items"));
            cel::Value::from(
                items
                    .iter()
                    .map(|v| cel_value(v, items_schema))
                    .collect::<Vec<_>>(),
            )
        }
        Value::Object(map) => {
            let values = schema
                .and_then(|s| s.get("additionalProperties"))
                .filter(|a| a.is_object());
            let properties = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            cel::Value::from(
                map.iter()
                    .map(|(k, v)| match (values, properties) {
                        (Some(values), _) => (k.clone(), cel_value(v, Some(values))),
                        (None, Some(properties)) => (
                            crate::cel_library::escaping::escape(k).unwrap_or_else(|| k.clone()),
                            cel_value(v, properties.get(k)),
                        ),
                        (None, None) => (k.clone(), cel_value(v, None)),
                    })
                    .collect::<std::collections::HashMap<String, cel::Value>>(),
            )
        }
        scalar => crate::cel_library::scalar(scalar),
    }
}

/// Evaluates the `x-kubernetes-validations` rules of `schema` and of the schemas under it.
fn rules(
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldCause>,
) {
    if value.is_null() {
        return;
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(err) = evaluate(schema, rule, value, old, path) {
            errs.push(err);
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if root && key == "metadata" {
                    continue;
                }
                if let Some(sub) = properties.and_then(|p| p.get(key)).or(additional) {
                    let old_child = old.and_then(|o| o.get(key));
                    rules(sub, child, old_child, &join(path, key), false, errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    rules(sub, item, None, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        _ => {}
    }
}

/// One rule's failure, if it fails.
fn evaluate(
    schema: &Value,
    rule: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
) -> Option<FieldCause> {
    let text = rule.get("rule").and_then(Value::as_str)?;
    let transition = text.contains("oldSelf");
    let optional_old = flag(rule, "optionalOldSelf");
    if transition && old.is_none() && !optional_old {
        return None;
    }
    let field = match rule.get("fieldPath").and_then(Value::as_str) {
        Some(extra) => format!("{path}{extra}"),
        None => path.to_owned(),
    };
    let type_shown = json!(
        schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object")
    );
    let failed = |detail: String| {
        let reason = rule.get("reason").and_then(Value::as_str);
        Some(match reason {
            Some("FieldValueForbidden") => FieldCause::forbidden(&field, &detail),
            Some("FieldValueRequired") => FieldCause::required(&field, &detail),
            Some("FieldValueDuplicate") => FieldCause::other_typed(
                crate::error::CauseType::ValueDuplicate,
                &field,
                format!("Duplicate value: {detail}"),
            ),
            _ => FieldCause::invalid_value(&field, &type_shown, detail),
        })
    };
    let env = crate::cel_library::env();
    let program = match env.compile(text) {
        Ok(p) => p,
        Err(e) => return failed(format!("compilation failed: {e}")),
    };
    let mut context = cel::Context::with_env(Arc::clone(&env));
    context.add_variable_from_value("self", cel_value(value, Some(schema)));
    if transition {
        let old_value = old.map_or(cel::Value::Null, |o| cel_value(o, Some(schema)));
        context.add_variable_from_value("oldSelf", old_value);
    }
    // `ruleMessageOrDefault`, unless `messageExpression` gives a non-empty one-line string (an
    // expression that fails or gives anything else falls back to it, as kube-apiserver does).
    let message = || {
        let fixed = || {
            rule.get("message")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map_or_else(|| format!("failed rule: {text}"), str::to_owned)
        };
        let Some(expression) = rule.get("messageExpression").and_then(Value::as_str) else {
            return fixed();
        };
        match env.compile(expression).map(|p| p.execute(&context)) {
            Ok(Ok(cel::Value::String(m))) if !m.trim().is_empty() && !m.contains('\n') => {
                m.to_string()
            }
            _ => fixed(),
        }
    };
    match program.execute(&context) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => failed(message()),
        Ok(other) => failed(format!("rule did not evaluate to a bool: {other:?}")),
        Err(e) => failed(format!(
            "{}: {}",
            message(),
            crate::cel_library::error_text(&e)
        )),
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether `key` of an object is kept whatever the schema says: a resource's (root or embedded)
/// `apiVersion`, `kind` and `metadata`.
fn resource_field(schema: &Value, root: bool, key: &str) -> bool {
    (root || flag(schema, "x-kubernetes-embedded-resource"))
        && matches!(key, "apiVersion" | "kind" | "metadata")
}

fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            map.retain(|key, child| {
                let field = join(path, key);
                if root && key == "metadata" {
                    return true;
                }
                let sub = properties.and_then(|p| p.get(key)).or(match additional {
                    Some(Value::Object(_)) => additional,
                    _ => None,
                });
                match sub {
                    Some(sub) => {
                        if child.is_null() && !flag(sub, "nullable") {
                            return false;
                        }
                        prune(sub, child, &field, false, unknown);
                        true
                    }
                    None if resource_field(schema, root, key) => true,
                    None if preserve || additional == Some(&Value::Bool(true)) => true,
                    None => {
                        unknown.push(field);
                        false
                    }
                }
            });
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in properties {
                    if let Some(d) = sub.get("default")
                        && map.get(key).is_none_or(Value::is_null)
                    {
                        map.insert(key.clone(), d.clone());
                    }
                }
                for (key, child) in map.iter_mut() {
                    if let Some(sub) = properties.get(key) {
                        default(sub, child);
                    }
                }
            } else if let Some(sub @ Value::Object(_)) = schema.get("additionalProperties") {
                for child in map.values_mut() {
                    default(sub, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    default(sub, item);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, want: &str) -> bool {
    let actual = type_name(value);
    actual == want || (want == "number" && actual == "integer")
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

/// A number as kube-openapi prints a bound: integral values without a fraction.
fn bound(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

#[allow(clippy::too_many_lines)]
fn validate(schema: &Value, value: &Value, path: &str, root: bool, errs: &mut Vec<FieldCause>) {
    let invalid = |errs: &mut Vec<FieldCause>, detail: String| {
        errs.push(FieldCause::invalid_value(path, value, detail));
    };
    if value.is_null() {
        if !flag(schema, "nullable")
            && !root
            && let Some(t) = schema.get("type").and_then(Value::as_str)
        {
            errs.push(FieldCause::invalid_value(
                path,
                &json!("null"),
                format!("{path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(type_name(value), "integer" | "string") {
            errs.push(FieldCause::invalid_value(
                path,
                &json!(type_name(value)),
                format!(
                    "{path} in body must be of type integer,string: {:?}",
                    type_name(value)
                ),
            ));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !has_type(value, t)
    {
        errs.push(FieldCause::invalid_value(
            path,
            &json!(type_name(value)),
            format!("{path} in body must be of type {t}: {:?}", type_name(value)),
        ));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options
            .iter()
            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
            .collect();
        let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
        errs.push(FieldCause::not_supported(path, value, &refs));
    }
    if let Some(n) = value.as_f64() {
        let exclusive_min = flag(schema, "exclusiveMinimum");
        let exclusive_max = flag(schema, "exclusiveMaximum");
        if let Some(min) = number(schema, "minimum") {
            if exclusive_min && n <= min {
                invalid(
                    errs,
                    format!("{path} in body should be greater than {}", bound(min)),
                );
            } else if n < min {
                invalid(
                    errs,
                    format!(
                        "{path} in body should be greater than or equal to {}",
                        bound(min)
                    ),
                );
            }
        }
        if let Some(max) = number(schema, "maximum") {
            if exclusive_max && n >= max {
                invalid(
                    errs,
                    format!("{path} in body should be less than {}", bound(max)),
                );
            } else if n > max {
                invalid(
                    errs,
                    format!(
                        "{path} in body should be less than or equal to {}",
                        bound(max)
                    ),
                );
            }
        }
    }
    if let Some(s) = value.as_str() {
        let chars = s.chars().count();
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && (chars as u64) < min
        {
            invalid(
                errs,
                format!("{path} in body should be at least {min} chars long"),
            );
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && (chars as u64) > max
        {
            errs.push(FieldCause::too_long(
                path,
                usize::try_from(max).unwrap_or(usize::MAX),
            ));
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && !crate::format::valid(format, s)
        {
            invalid(
                errs,
                format!("{path} in body must be of type {format}: {s:?}"),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match crate::pattern::compiled(pattern) {
                Some(re) if !re.is_match(s) => {
                    invalid(errs, format!("{path} in body should match '{pattern}'"));
                }
                Some(_) => {}
                None => invalid(errs, format!("{path} has an invalid pattern '{pattern}'")),
            }
        }
    }
    match value {
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                invalid(
                    errs,
                    format!("{path} in body should have at least {min} items"),
                );
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                errs.push(FieldCause::other_typed(
                    crate::error::CauseType::ValueTooMany,
                    path,
                    format!("Too many: {len}: must have at most {max} items"),
                ));
            }
            let set = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set")
                || flag(schema, "uniqueItems");
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if set && items[..i].contains(item) {
                    errs.push(FieldCause::duplicate(&item_path, item));
                }
                if let Some(sub) = schema.get("items") {
                    validate(sub, item, &item_path, false, errs);
                }
            }
        }
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if map.get(required).is_none_or(Value::is_null) {
                    errs.push(FieldCause::required(&join(path, required), ""));
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if root && key == "metadata" {
                    continue;
                }
                let sub = properties.and_then(|p| p.get(key)).or(additional);
                if let Some(sub) = sub {
                    validate(sub, child, &join(path, key), false, errs);
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && map.len() as u64 > max
            {
                errs.push(FieldCause::other_typed(
                    crate::error::CauseType::ValueTooMany,
                    path,
                    format!("Too many: {}: must have at most {max} items", map.len()),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "minLength": 1, "pattern": "^[a-z0-9./:-]+$"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "tier": {"type": "string", "enum": ["web", "worker"], "default": "web"},
                "ports": {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "note": {"type": "string", "nullable": true},
                "size": {"x-kubernetes-int-or-string": true}
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }})
    }

    #[test]
    fn cel_rules_with_self_and_old_self() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable", "reason": "FieldValueForbidden"},
                {"rule": "self.tags.all(t, t.startsWith('team-'))", "fieldPath": ".tags"},
                {"rule": "has(self.mode) || self.max < 10"}
            ],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"},
                "mode": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}}});
        let mut ok = json!({"spec": {"min": 1, "max": 2, "name": "a", "tags": ["team-x"]}});
        assert!(apply(&schema, &mut ok, None).errors.is_empty());
        let mut bad = json!({"spec": {"min": 30, "max": 20, "name": "b", "tags": ["x"]}});
        let old = json!({"spec": {"min": 1, "max": 2, "name": "a", "tags": []}});
        let out = apply(&schema, &mut bad, Some(&old));
        assert_eq!(
            texts(&out),
            [
                "spec: Invalid value: \"object\": min must not exceed max",
                "spec: Forbidden: name is immutable",
                "spec.tags: Invalid value: \"object\": failed rule: self.tags.all(t, t.startsWith('team-'))",
                "spec: Invalid value: \"object\": failed rule: has(self.mode) || self.max < 10",
            ]
        );
        let mut created = json!({"spec": {"min": 1, "max": 2, "name": "b", "tags": []}});
        assert!(
            apply(&schema, &mut created, None).errors.is_empty(),
            "a transition rule is skipped on a create"
        );
    }

    fn texts(out: &Outcome) -> Vec<String> {
        out.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_object_is_defaulted_and_unknown_fields_are_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"image": "nginx:1", "typo": 1, "labels": {"a": "b"}, "extra": {"any": {"thing": 1}},
                "note": null, "size": "50%", "tier": null},
            "other": true});
        let out = apply(&schema(), &mut o, None);
        assert!(out.errors.is_empty(), "{:?}", texts(&out));
        assert_eq!(out.unknown, ["other", "spec.typo"]);
        assert_eq!(
            o,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "labels": {"x": "y"}},
                "spec": {"image": "nginx:1", "labels": {"a": "b"}, "extra": {"any": {"thing": 1}},
                    "note": null, "size": "50%", "replicas": 1, "tier": "web"}})
        );
    }

    #[test]
    fn each_rule_has_kube_openapis_message() {
        let mut o = json!({"spec": {"replicas": -1, "tier": "db", "ports": [1, 2, 3],
            "tags": ["a", "a"], "image": "UPPER", "labels": {"a": 1}, "size": true}});
        let out = apply(&schema(), &mut o, None);
        assert_eq!(
            texts(&out),
            [
                "spec.image: Invalid value: \"UPPER\": spec.image in body should match '^[a-z0-9./:-]+$'",
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.ports: Too many: 3: must have at most 2 items",
                "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
                "spec.size: Invalid value: \"boolean\": spec.size in body must be of type integer,string: \"boolean\"",
                "spec.tags[1]: Duplicate value: \"a\"",
                "spec.tier: Unsupported value: \"db\": supported values: \"web\", \"worker\"",
            ]
        );
        let mut o = json!({"spec": {"replicas": "3"}});
        let out = apply(&schema(), &mut o, None);
        assert_eq!(
            texts(&out),
            [
                "spec.image: Required value",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ]
        );
    }
}
