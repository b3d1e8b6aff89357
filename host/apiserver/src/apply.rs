//! Server-side apply and `managedFields` tracking.
//!
//! Simplification: a field set is the set of leaf JSON paths (scalars, lists and empty maps are
//! leaves; lists are atomic, not merged by key). Paths overlap when one is a prefix of the other.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::FieldConflict;

/// A path of map keys from the object root.
pub type FieldPath = Vec<String>;

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldScope {
    /// Everything.
    All,
    /// Everything but `.status` (main resource of a kind with a status subresource).
    NoStatus,
    /// Only `.status` (the status subresource).
    StatusOnly,
}

impl FieldScope {
    fn allows(self, path: &[String]) -> bool {
        let status = path.first().is_some_and(|p| p == "status");
        match self {
            Self::All => true,
            Self::NoStatus => !status,
            Self::StatusOnly => status,
        }
    }
}

/// Server-side apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields set to different values.
    #[error("apply conflicts with other field managers")]
    Conflict(Vec<FieldConflict>),
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// API version the manager used.
    pub api_version: String,
    /// Last change time.
    pub time: String,
    /// `status` or empty.
    pub subresource: String,
    /// Owned fields.
    pub fields: BTreeSet<FieldPath>,
}

/// Who writes, how and when.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// Manager name.
    pub manager: &'a str,
    /// API version used.
    pub api_version: &'a str,
    /// `status` or empty.
    pub subresource: &'a str,
    /// RFC 3339 time.
    pub now: &'a str,
    /// Fields the write may touch.
    pub scope: FieldScope,
}

const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

fn tracked(path: &[String]) -> bool {
    match path {
        [first] if first == "apiVersion" || first == "kind" => false,
        [first, second, ..] if first == "metadata" => !IGNORED_METADATA.contains(&second.as_str()),
        [first] if first == "metadata" => false,
        _ => true,
    }
}

/// Leaf paths of `value` that field tracking considers, within `scope`.
#[must_use]
pub fn leaf_paths(value: &Value, scope: FieldScope) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => {
                out.insert(prefix.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out.retain(|p| tracked(p) && scope.allows(p));
    out
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The value at `path`.
#[must_use]
pub fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

fn set_path(value: &mut Value, path: &[String], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for key in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(last.clone(), new);
    }
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for key in parents {
        match cur.get_mut(key) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last);
    }
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

fn fields_tree(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for path in fields {
        let keys: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
        set_path(&mut root, &keys, json!({}));
    }
    root
}

fn tree_fields(tree: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    if k == "." {
                        out.insert(prefix.clone());
                    } else if let Some(name) = k.strip_prefix("f:") {
                        prefix.push(name.to_string());
                        walk(child, prefix, out);
                        prefix.pop();
                    }
                }
            }
            _ if !prefix.is_empty() => {
                out.insert(prefix.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

/// Reads `metadata.managedFields`.
#[must_use]
pub fn read_managed(object: &Value) -> Vec<ManagedEntry> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| ManagedEntry {
                    manager: text(&e["manager"]),
                    operation: text(&e["operation"]),
                    api_version: text(&e["apiVersion"]),
                    time: text(&e["time"]),
                    subresource: text(&e["subresource"]),
                    fields: tree_fields(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata.managedFields` (entries with no fields are dropped).
pub fn write_managed(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_tree(&e.fields),
            });
            if !e.subresource.is_empty()
                && let Some(map) = v.as_object_mut()
            {
                map.insert("subresource".into(), Value::String(e.subresource.clone()));
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn entry<'e>(
    entries: &'e mut Vec<ManagedEntry>,
    writer: &Writer<'_>,
    operation: &str,
) -> &'e mut ManagedEntry {
    let pos = entries.iter().position(|e| {
        e.manager == writer.manager
            && e.operation == operation
            && e.subresource == writer.subresource
    });
    let index = match pos {
        Some(i) => i,
        None => {
            entries.push(ManagedEntry {
                manager: writer.manager.to_string(),
                operation: operation.to_string(),
                api_version: writer.api_version.to_string(),
                time: writer.now.to_string(),
                subresource: writer.subresource.to_string(),
                fields: BTreeSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[index];
    e.api_version = writer.api_version.to_string();
    e.time = writer.now.to_string();
    e
}

/// Applies the configuration `applied` for `writer` over `live` (or over an empty object on
/// create-on-apply) and returns the merged object with its `managedFields` updated. Server-owned
/// metadata is left for the caller to fix.
///
/// # Errors
/// [`ApplyError::Conflict`] when other managers own fields set to different values and `force` is off.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, ApplyError> {
    let mut base = live.cloned().unwrap_or_else(|| json!({"metadata": {}}));
    let mut entries = read_managed(&base);
    let paths = leaf_paths(applied, writer.scope);
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| e.manager != writer.manager) {
        let mut taken = Vec::new();
        for p in &paths {
            for q in e.fields.iter().filter(|q| overlaps(p, q)) {
                if get_path(applied, p) != get_path(&base, p) {
                    conflicts.push(FieldConflict {
                        manager: e.manager.clone(),
                        field: dotted(p),
                    });
                }
                taken.push(q.clone());
            }
        }
        if force {
            for q in taken {
                e.fields.remove(&q);
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.dedup();
        return Err(ApplyError::Conflict(conflicts));
    }
    let previous = entries
        .iter()
        .find(|e| {
            e.manager == writer.manager
                && e.operation == "Apply"
                && e.subresource == writer.subresource
        })
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous
        .iter()
        .filter(|p| !paths.iter().any(|n| overlaps(n, p)))
    {
        let owned_by_other = entries.iter().any(|e| {
            !(e.manager == writer.manager
                && e.operation == "Apply"
                && e.subresource == writer.subresource)
                && e.fields.iter().any(|q| overlaps(p, q))
        });
        if !owned_by_other {
            remove_path(&mut base, p);
        }
    }
    for p in &paths {
        if let Some(v) = get_path(applied, p) {
            set_path(&mut base, p, v.clone());
        }
    }
    for key in ["apiVersion", "kind"] {
        if let (Some(v), Some(map)) = (applied.get(key), base.as_object_mut()) {
            map.insert(key.into(), v.clone());
        }
    }
    entry(&mut entries, writer, "Apply").fields = paths;
    write_managed(&mut base, &entries);
    Ok(base)
}

/// Records a non-apply write (create, update, patch) by `writer` in `new`'s `managedFields`: the
/// writer takes the fields it changed from other managers; removed fields leave every set.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer<'_>) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let new_paths = leaf_paths(new, writer.scope);
    let changed: BTreeSet<FieldPath> = match old {
        Some(old) => new_paths
            .iter()
            .filter(|p| get_path(old, p) != get_path(new, p))
            .cloned()
            .collect(),
        None => new_paths.clone(),
    };
    if let Some(old) = old {
        let removed: Vec<FieldPath> = leaf_paths(old, writer.scope)
            .into_iter()
            .filter(|p| get_path(new, p).is_none())
            .collect();
        for e in &mut entries {
            e.fields
                .retain(|q| !removed.iter().any(|r| q.starts_with(r)));
        }
    }
    if !changed.is_empty() {
        for e in &mut entries {
            e.fields.retain(|q| !changed.iter().any(|c| overlaps(c, q)));
        }
        entry(&mut entries, writer, "Update").fields.extend(changed);
    }
    write_managed(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            now: "2025-01-01T00:00:00Z",
            scope: FieldScope::NoStatus,
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    #[test]
    fn two_managers_conflict_then_force() {
        let a = server_side_apply(None, &cm(json!({"x": "1"})), &writer("a"), false).unwrap();
        let err =
            server_side_apply(Some(&a), &cm(json!({"x": "2"})), &writer("b"), false).unwrap_err();
        let ApplyError::Conflict(conflicts) = err;
        assert_eq!(conflicts[0].field, ".data.x");
        // Same value: shared ownership, no conflict.
        let shared = server_side_apply(
            Some(&a),
            &cm(json!({"x": "1", "y": "b"})),
            &writer("b"),
            false,
        )
        .unwrap();
        assert_eq!(shared["data"], json!({"x": "1", "y": "b"}));
        let forced =
            server_side_apply(Some(&a), &cm(json!({"x": "2"})), &writer("b"), true).unwrap();
        assert_eq!(forced["data"]["x"], "2");
        let managers: Vec<_> = read_managed(&forced)
            .into_iter()
            .map(|e| e.manager)
            .collect();
        assert_eq!(managers, vec!["b"]);
    }

    #[test]
    fn dropped_fields_are_removed_unless_shared() {
        let a =
            server_side_apply(None, &cm(json!({"x": "1", "y": "2"})), &writer("a"), false).unwrap();
        let a2 = server_side_apply(Some(&a), &cm(json!({"x": "1"})), &writer("a"), false).unwrap();
        assert_eq!(a2["data"], json!({"x": "1"}));
        let b = server_side_apply(Some(&a2), &cm(json!({"x": "1"})), &writer("b"), false).unwrap();
        let a3 = server_side_apply(Some(&b), &cm(json!({"z": "3"})), &writer("a"), false).unwrap();
        assert_eq!(a3["data"], json!({"x": "1", "z": "3"}));
    }

    #[test]
    fn update_takes_ownership() {
        let a = server_side_apply(None, &cm(json!({"x": "1"})), &writer("a"), false).unwrap();
        let mut updated = a.clone();
        updated["data"]["x"] = json!("9");
        record_update(Some(&a), &mut updated, &writer("kubectl-edit"));
        let entries = read_managed(&updated);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].operation, "Update");
        // Now "a" no longer owns x, so dropping it from its config keeps the field.
        let a2 =
            server_side_apply(Some(&updated), &cm(json!({"w": "1"})), &writer("a"), false).unwrap();
        assert_eq!(a2["data"]["x"], "9");
    }

    #[test]
    fn fields_round_trip() {
        let fields: BTreeSet<FieldPath> = [
            vec!["spec".to_string(), "replicas".to_string()],
            vec!["metadata".into(), "labels".into(), "a".into()],
        ]
        .into_iter()
        .collect();
        assert_eq!(tree_fields(&fields_tree(&fields)), fields);
    }
}
