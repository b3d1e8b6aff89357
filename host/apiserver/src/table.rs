//! `meta.k8s.io/v1` Table output for `kubectl get`, from printer columns.

use serde_json::{Value, json};

use crate::resource::{PrinterColumn, ResourceInfo};

/// Whether an `Accept` header asks for a Table.
#[must_use]
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter.
    #[must_use]
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Evaluates a simple JSONPath: `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`.
#[must_use]
pub fn eval_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = object;
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = after[end + 1..].trim_start_matches('.');
            if let Ok(i) = inner.parse::<usize>() {
                cur = cur.get(i)?;
            } else {
                let cond = inner.strip_prefix("?(@.")?.strip_suffix(')')?;
                let (field, want) = cond.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur.as_array()?.iter().find(|item| {
                    eval_path(item, field.trim()).is_some_and(|v| {
                        v.as_str().map_or_else(|| v.to_string(), str::to_string) == want
                    })
                })?;
            }
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        cur = cur.get(&rest[..end])?;
        rest = rest[end..].strip_prefix('.').unwrap_or(&rest[end..]);
    }
    Some(cur)
}

/// Renders a duration the way kubectl does (`5s`, `3m2s`, `4h`, `2d3h`, `400d`, `3y20d`).
#[must_use]
pub fn human_duration(seconds: i64) -> String {
    // `duration.HumanDuration`: a second part that is zero is left out (`3m`, `7d`, `2y`).
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let y = d / 365;
    let two = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        two(m, "m", s % 60, "s")
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        two(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        two(d, "d", h % 24, "h")
    } else if y < 2 {
        format!("{d}d")
    } else if y < 8 {
        two(y, "y", d % 365, "d")
    } else {
        format!("{y}y")
    }
}

/// The age of an RFC 3339 time as kubectl shows it (`translateTimestampSince`).
#[must_use]
pub fn age(timestamp: &str) -> Value {
    match crate::cluster::parse_timestamp(timestamp) {
        Some(t) => Value::String(human_duration((chrono::Utc::now() - t).num_seconds())),
        None => Value::String("<unknown>".into()),
    }
}

fn columns(info: &ResourceInfo) -> Vec<PrinterColumn> {
    let name = PrinterColumn {
        name: "Name".into(),
        column_type: "string".into(),
        format: "name".into(),
        json_path: ".metadata.name".into(),
        description: "Name must be unique within a namespace.".into(),
        priority: 0,
    };
    let mut cols = vec![name];
    if info.printer_columns.is_empty() {
        cols.push(PrinterColumn {
            name: "Age".into(),
            column_type: "date".into(),
            format: String::new(),
            json_path: ".metadata.creationTimestamp".into(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            priority: 0,
        });
    } else {
        cols.extend(info.printer_columns.iter().cloned());
    }
    cols
}

fn cell(object: &Value, column: &PrinterColumn) -> Value {
    match eval_path(object, &column.json_path) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if column.column_type == "date" => age(s),
        Some(v) => v.clone(),
    }
}

fn row(object: &Value, cols: &[PrinterColumn], include: IncludeObject) -> Value {
    let cells: Vec<Value> = cols.iter().map(|c| cell(object, c)).collect();
    embed(json!({ "cells": cells }), object, include)
}

/// `row` with the object (or its metadata) embedded as `includeObject` asks.
fn embed(mut row: Value, object: &Value, include: IncludeObject) -> Value {
    let embedded = match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        })),
    };
    if let (Some(o), Some(map)) = (embedded, row.as_object_mut()) {
        map.insert("object".into(), o);
    }
    row
}

/// A Table of a built-in kind, with kube-apiserver's columns for it ([`crate::printers`]).
fn builtin_table(
    info: &ResourceInfo,
    builtin: &[crate::printers::Column],
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let name_first = crate::printers::name_first(info);
    let mut definitions = Vec::new();
    if name_first {
        definitions.push(json!({"name": "Name", "type": "string", "format": "name",
            "description": "Name must be unique within a namespace.", "priority": 0}));
    }
    definitions.extend(builtin.iter().map(|c| {
        json!({
            "name": c.name,
            // `date` cells are shown as ages (strings); `timestamp` cells as the time itself.
            "type": match c.column_type {
                "date" => "string",
                "timestamp" => "date",
                other => other,
            },
            "format": if c.name == "Name" { "name" } else { "" },
            "description": "",
            "priority": c.priority,
        })
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = Vec::new();
            if name_first {
                cells.push(crate::printers::name_cell(info, o));
            }
            let form = crate::printers::row_form(info, o);
            cells.extend(builtin.iter().map(|c| match (c.cell)(&form) {
                Value::String(t) if c.column_type == "date" => age(&t),
                other => other,
            }));
            embed(json!({ "cells": cells }), o, include)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// A Table of `objects` with list metadata `list_meta`.
#[must_use]
pub fn table(
    info: &ResourceInfo,
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    // Rows show (and embed) each object as the requested API presents it.
    let shown: Vec<std::borrow::Cow<'_, Value>> = objects
        .iter()
        .map(|o| crate::verbs::present(info, o))
        .collect();
    let objects: Vec<&Value> = shown.iter().map(AsRef::as_ref).collect();
    let objects = objects.as_slice();
    if let Some(builtin) = crate::printers::columns(info) {
        return builtin_table(info, &builtin, objects, list_meta, include);
    }
    let cols = columns(info);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": if c.column_type == "date" { "string" } else { c.column_type.as_str() },
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": objects.iter().map(|o| row(o, &cols, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let obj = json!({"spec": {"size": 3, "items": [{"a": 1}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(eval_path(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(eval_path(&obj, ".spec.items[0].a"), Some(&json!(1)));
        assert_eq!(
            eval_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(eval_path(&obj, ".spec.missing"), None);
    }

    #[test]
    fn accept_and_durations() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3 * 86400 + 7200), "3d2h");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(7 * 86400), "7d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
    }

    #[test]
    fn crd_columns() {
        let info = ResourceInfo {
            group: "g".into(),
            version: "v1".into(),
            kind: "W".into(),
            list_kind: "WList".into(),
            plural: "ws".into(),
            singular: "w".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            status_subresource: false,
            conversion_webhook: None,
            selectable_fields: Vec::new(),
            printer_columns: vec![PrinterColumn {
                name: "Size".into(),
                column_type: "integer".into(),
                format: String::new(),
                json_path: ".spec.size".into(),
                description: String::new(),
                priority: 0,
            }],
            scale: None,
        };
        let obj = json!({"metadata": {"name": "a"}, "spec": {"size": 4}});
        let t = table(&info, &[&obj], json!({}), IncludeObject::Metadata);
        assert_eq!(t["columnDefinitions"][1]["name"], "Size");
        assert_eq!(t["rows"][0]["cells"], json!(["a", 4]));
    }
}
