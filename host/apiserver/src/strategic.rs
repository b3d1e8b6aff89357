//! Strategic merge patch, as apimachinery's `strategicpatch` applies it to the built-in kinds: maps
//! merge (a `null` deletes), lists with a patch merge key merge element by element, lists of
//! scalars with the merge strategy take the union, other lists are replaced; and the directives
//! `$patch` (`replace`, `delete`, `merge`), `$setElementOrder/<list>`,
//! `$deleteFromPrimitiveList/<list>` and `$retainKeys` are carried out, never stored.
//!
//! The merge keys are those the Kubernetes API types declare (`patchMergeKey` in
//! `k8s.io/api/*/types.go`) for the kinds served here, looked up by list name; `ports` is keyed by
//! `containerPort` in a container and by `port` in a Service's spec.

use serde_json::{Map, Value};

/// The directive key.
const DIRECTIVE: &str = "$patch";
/// The prefix of a list-order directive.
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// The prefix of a primitive-list deletion directive.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
/// The retain-keys directive.
const RETAIN_KEYS: &str = "$retainKeys";

/// A strategic merge patch cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrategicError {
    /// A `$patch` directive has a value apimachinery does not know.
    #[error("Unknown patch type: {0}")]
    UnknownDirective(String),
    /// A directive's value has the wrong shape.
    #[error("invalid {0} directive: {1}")]
    Malformed(&'static str, String),
}

/// How the list at a path merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Replaced whole (atomic).
    Replace,
    /// Elements merged by this key.
    MergeBy(&'static str),
    /// Scalars: the union.
    Union,
}

/// The strategy of list `field` whose parent is at `parent` (map keys from the root) in an object
/// of `kind`.
fn list_strategy(kind: &str, parent: &[String], field: &str) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "env" => ListStrategy::MergeBy("name"),
        "hostAliases" => ListStrategy::MergeBy("ip"),
        "volumeMounts" => ListStrategy::MergeBy("mountPath"),
        "volumeDevices" => ListStrategy::MergeBy("devicePath"),
        "conditions" => ListStrategy::MergeBy("type"),
        "ownerReferences" => ListStrategy::MergeBy("uid"),
        "finalizers" if parent.last().is_some_and(|p| p == "metadata") => ListStrategy::Union,
        "ports" if kind == "Service" && parent == ["spec"] => ListStrategy::MergeBy("port"),
        // A NetworkPolicy rule's and an Ingress load balancer's ports have no merge key.
        "ports" if matches!(kind, "NetworkPolicy" | "Ingress") => ListStrategy::Replace,
        "ports" if kind != "Service" => ListStrategy::MergeBy("containerPort"),
        _ => ListStrategy::Replace,
    }
}

/// Applies `patch` (a JSON object) to `original`, an object of `kind`.
///
/// # Errors
/// [`StrategicError`] for an unknown or malformed directive.
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, StrategicError> {
    let mut path = Vec::new();
    merge_value(kind, &mut path, Some(original), patch)
}

/// The merge of `patch` into `original` (absent: the patch alone, its directives carried out).
fn merge_value(
    kind: &str,
    path: &mut Vec<String>,
    original: Option<&Value>,
    patch: &Value,
) -> Result<Value, StrategicError> {
    match patch {
        Value::Object(p) => {
            let empty = Map::new();
            let o = match original {
                Some(Value::Object(o)) => o,
                _ => &empty,
            };
            merge_map(kind, path, o, p).map(Value::Object)
        }
        Value::Array(items) => {
            // A list with no original merges into an empty one, so its directives are carried out.
            let field = path.last().cloned().unwrap_or_default();
            let parent = &path[..path.len().saturating_sub(1)];
            let strategy = list_strategy(kind, parent, &field);
            let empty = Vec::new();
            let o = match original {
                Some(Value::Array(o)) => o,
                _ => &empty,
            };
            merge_list(kind, path, o, items, strategy).map(Value::Array)
        }
        other => Ok(other.clone()),
    }
}

fn merge_map(
    kind: &str,
    path: &mut Vec<String>,
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, StrategicError> {
    let mut out = original.clone();
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut replaced = Map::new();
            let without: Map<String, Value> = patch
                .iter()
                .filter(|(k, _)| k.as_str() != DIRECTIVE)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in &without {
                if v.is_null() || k.starts_with('$') {
                    continue;
                }
                path.push(k.clone());
                let merged = merge_value(kind, path, None, v);
                path.pop();
                replaced.insert(k.clone(), merged?);
            }
            return Ok(replaced);
        }
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => return Err(StrategicError::UnknownDirective(other.to_string())),
    }
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        let keep = keep
            .as_array()
            .ok_or_else(|| StrategicError::Malformed(RETAIN_KEYS, keep.to_string()))?;
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let doomed = value.as_array().ok_or_else(|| {
                StrategicError::Malformed("$deleteFromPrimitiveList", value.to_string())
            })?;
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|v| !doomed.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            out.remove(key);
            continue;
        }
        path.push(key.clone());
        let base = out.get(key).cloned();
        let merged = merge_value(kind, path, base.as_ref(), value);
        path.pop();
        out.insert(key.clone(), merged?);
    }
    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let order = order
                .as_array()
                .ok_or_else(|| StrategicError::Malformed("$setElementOrder", order.to_string()))?;
            let strategy = list_strategy(kind, path, field);
            if let Some(Value::Array(list)) = out.get_mut(field) {
                reorder(list, order, strategy);
            }
        }
    }
    Ok(out)
}

/// The value an element is identified by: its merge key's value, or itself (scalars).
fn identity(element: &Value, strategy: ListStrategy) -> Option<&Value> {
    match strategy {
        ListStrategy::MergeBy(key) => element.get(key),
        ListStrategy::Union => Some(element),
        ListStrategy::Replace => None,
    }
}

fn merge_list(
    kind: &str,
    path: &mut Vec<String>,
    original: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
) -> Result<Vec<Value>, StrategicError> {
    let replace = patch
        .iter()
        .any(|e| e.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let elements: Vec<&Value> = patch
        .iter()
        .filter(|e| e.get(DIRECTIVE).and_then(Value::as_str) != Some("replace"))
        .collect();
    if strategy == ListStrategy::Replace || replace {
        return elements
            .into_iter()
            .map(|e| merge_value(kind, path, None, e))
            .collect();
    }
    let mut out: Vec<Value> = original.to_vec();
    for element in elements {
        if let Some(directive) = element.get(DIRECTIVE).filter(|d| *d != "merge") {
            if directive != "delete" {
                return Err(StrategicError::UnknownDirective(directive.to_string()));
            }
            let id = identity(element, strategy);
            out.retain(|o| identity(o, strategy) != id || id.is_none());
            continue;
        }
        let id = identity(element, strategy);
        match out
            .iter_mut()
            .find(|o| id.is_some() && identity(o, strategy) == id)
        {
            Some(existing) if strategy == ListStrategy::Union => {
                *existing = element.clone();
            }
            Some(existing) => {
                let merged = merge_value(kind, path, Some(existing), element)?;
                *existing = merged;
            }
            None => out.push(merge_value(kind, path, None, element)?),
        }
    }
    Ok(out)
}

/// Orders `list` as `order` names its elements (by merge key, or by value for scalars); elements it
/// does not name keep their relative order, after those it does.
fn reorder(list: &mut [Value], order: &[Value], strategy: ListStrategy) {
    let rank = |e: &Value| {
        let id = match strategy {
            ListStrategy::MergeBy(key) => e.get(key),
            _ => Some(e),
        };
        order
            .iter()
            .position(|o| {
                let want = match strategy {
                    ListStrategy::MergeBy(key) => o.get(key),
                    _ => Some(o),
                };
                want.is_some() && want == id
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|e| rank(e));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "finalizers": ["a"]}, "spec": {"replicas": 1, "template": {"spec": {
        "containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "envoy:1"}
        ]}}}})
    }

    #[test]
    fn kubectl_set_image_changes_one_container_and_keeps_the_rest() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["image"], "nginx:2");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
        assert_eq!(containers[1]["name"], "sidecar");
    }

    #[test]
    fn directives_are_carried_out_and_never_stored() {
        let patch = json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
            "containers": [
                {"name": "web", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}]},
                {"name": "new", "image": "x", "$patch": "merge"}
            ]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let containers = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = containers
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "web", "new"]);
        assert_eq!(
            containers[1]["env"],
            json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert!(!out.to_string().contains('$'), "no directive stored: {out}");
    }

    #[test]
    fn replace_and_delete_directives() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "y"}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "y"}])
        );
        let patch =
            json!({"spec": {"template": {"$patch": "replace", "spec": {"containers": []}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["template"], json!({"spec": {"containers": []}}));
        let patch = json!({"spec": {"template": {"$patch": "delete"}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["template"], json!({}));
        let bad = json!({"spec": {"$patch": "explode"}});
        assert!(matches!(
            apply("Deployment", &deployment(), &bad),
            Err(StrategicError::UnknownDirective(_))
        ));
    }

    #[test]
    fn service_ports_merge_by_port_and_atomic_lists_are_replaced() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}],
            "externalIPs": ["1.1.1.1"]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}], "externalIPs": ["2.2.2.2"]}});
        let out = apply("Service", &svc, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        assert_eq!(out["spec"]["externalIPs"], json!(["2.2.2.2"]));
        let out = apply("Service", &svc, &json!({"spec": {"ports": null}})).unwrap();
        assert!(out["spec"].get("ports").is_none());
    }

    #[test]
    fn retain_keys_drops_what_is_not_listed() {
        let d = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply("Deployment", &d, &patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}
