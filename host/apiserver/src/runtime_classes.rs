//! RuntimeClasses (`node.k8s.io/v1`): their validation (`pkg/apis/node/validation`: the handler a
//! DNS-1123 label that never changes, the overhead a list of container resources, the scheduling
//! constraints valid labels and tolerations), and the `RuntimeClass` admission plugin
//! (`plugin/pkg/admission/runtimeclass`) on a pod's creation: the class the pod names must exist,
//! its overhead becomes the pod's (which may not say otherwise, nor set one without a class that
//! defines it), its node selector and tolerations are merged into the pod's.

use serde_json::{Map, Value};

use crate::cluster::Inner;
use crate::error::FieldCause;
use crate::pod_admission::AdmissionError;
use crate::quantity::Quantity;
use crate::validation;

/// Where RuntimeClasses are stored.
const STORAGE: &str = "runtimeclasses.node.k8s.io";

/// The resource names a container may use without a domain (`IsStandardContainerResourceName`),
/// besides `hugepages-*`.
const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// `ValidateRuntimeClass` and, for an update of `old`, `ValidateRuntimeClassUpdate`.
pub(crate) fn validate(class: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let handler = class["handler"].as_str().unwrap_or_default();
    if let Err(e) = validation::dns1123_label(handler) {
        errs.push(FieldCause::invalid("handler", handler, e));
    }
    if let Some(fixed) = class
        .pointer("/overhead/podFixed")
        .and_then(Value::as_object)
    {
        resource_limits(fixed, "overhead.limits", errs);
    }
    if let Some(selector) = class
        .pointer("/scheduling/nodeSelector")
        .and_then(Value::as_object)
    {
        crate::strategy::labels(selector, "scheduling.nodeSelector", errs);
    }
    if let Some(tolerations) = class
        .pointer("/scheduling/tolerations")
        .and_then(Value::as_array)
    {
        crate::strategy::tolerations(tolerations, "scheduling.tolerations", errs);
    }
    if let Some(old) = old
        && old["handler"] != class["handler"]
    {
        errs.push(FieldCause::invalid_value(
            "handler",
            &class["handler"],
            "field is immutable",
        ));
    }
}

/// `ValidateResourceRequirements`'s checks of its limits: each name a container resource
/// (`validateContainerResourceName`), each amount at least zero.
fn resource_limits(limits: &Map<String, Value>, path: &str, errs: &mut Vec<FieldCause>) {
    for (name, amount) in limits {
        let field = format!("{path}[{name}]");
        let simple = !name.contains('/');
        // validateResourceName, then validateContainerResourceName's own checks.
        match validation::qualified_name(name) {
            Err(e) => errs.push(FieldCause::invalid(&field, name, e)),
            Ok(()) if simple && !crate::quota::is_standard_resource(name) => {
                errs.push(FieldCause::invalid(
                    &field,
                    name,
                    "must be a standard resource type or fully qualified",
                ));
            }
            Ok(()) => {}
        }
        if simple {
            if !STANDARD_CONTAINER_RESOURCES.contains(&name.as_str())
                && !name.starts_with("hugepages-")
            {
                errs.push(FieldCause::invalid(
                    &field,
                    name,
                    "must be a standard resource for containers",
                ));
            }
        } else if !name.contains("kubernetes.io/") {
            // `IsExtendedResourceName`: its quota name, `requests.NAME`, must be qualified.
            let extended = !name.starts_with("requests.")
                && validation::qualified_name(&format!("requests.{name}")).is_ok();
            if !extended {
                errs.push(FieldCause::invalid(
                    &field,
                    name,
                    "doesn't follow extended resource name standard",
                ));
            }
        }
        let text = amount.as_str().unwrap_or_default();
        if Quantity::parse(text).is_ok_and(|q| q.nanos() < 0) {
            errs.push(FieldCause::invalid(
                &field,
                text,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// The `RuntimeClass` admission plugin on a new pod's spec: `Admit` (the class exists; its
/// overhead and scheduling constraints are set on the pod) then `Validate` (the pod's overhead
/// is its class's, or it has none).
///
/// # Errors
/// [`AdmissionError`] in the plugin's words, answered 403.
pub(crate) fn admit_pod(
    inner: &Inner,
    spec: &mut Map<String, Value>,
) -> Result<(), AdmissionError> {
    let class = match spec.get("runtimeClassName").and_then(Value::as_str) {
        None => None,
        Some(name) => {
            let key = (String::new(), name.to_owned());
            let class = inner
                .store
                .get(STORAGE, &key)
                .ok_or_else(|| AdmissionError::NoRuntimeClass(name.to_owned()))?;
            Some(class.clone())
        }
    };
    let fixed = class
        .as_deref()
        .and_then(|c| c.pointer("/overhead/podFixed"))
        .filter(|f| !f.is_null());
    match (fixed, spec.get("overhead").filter(|o| !o.is_null())) {
        (Some(fixed), Some(overhead)) if !same_resources(fixed, overhead) => {
            return Err(AdmissionError::OverheadMismatch);
        }
        (Some(fixed), _) => {
            spec.insert("overhead".into(), fixed.clone());
        }
        (None, Some(_)) => return Err(AdmissionError::OverheadWithoutClass),
        (None, None) => {}
    }
    let Some(scheduling) = class
        .as_deref()
        .map(|c| &c["scheduling"])
        .filter(|s| s.is_object())
    else {
        return Ok(());
    };
    if let Some(required) = scheduling["nodeSelector"].as_object() {
        let selector = spec
            .entry("nodeSelector")
            .or_insert_with(|| Value::Object(Map::new()));
        if !selector.is_object() {
            *selector = Value::Object(Map::new());
        }
        if let Some(selector) = selector.as_object_mut() {
            for (key, wanted) in required {
                match selector.get(key) {
                    Some(have) if have != wanted => {
                        return Err(AdmissionError::NodeSelectorConflict {
                            key: key.clone(),
                            class: wanted.as_str().unwrap_or_default().to_owned(),
                            pod: have.as_str().unwrap_or_default().to_owned(),
                        });
                    }
                    _ => {
                        selector.insert(key.clone(), wanted.clone());
                    }
                }
            }
        }
    }
    if let Some(extra) = scheduling["tolerations"].as_array() {
        let own = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let merged = merge_tolerations(own.into_iter().chain(extra.iter().cloned()).collect());
        spec.insert("tolerations".into(), Value::Array(merged));
    }
    Ok(())
}

/// Two resource lists with the same names and equal amounts (`Semantic.DeepEqual` compares
/// quantities by value: `1` and `1000m` are the same).
fn same_resources(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let amount = |v: &Value| v.as_str().and_then(|t| Quantity::parse(t).ok());
    a.len() == b.len()
        && a.iter().all(|(name, x)| {
            b.get(name)
                .is_some_and(|y| x == y || amount(x).is_some_and(|q| amount(y) == Some(q)))
        })
}

/// `tolerations.MergeTolerations`: every toleration of `all` (the pod's, then the class's) that
/// no other one tolerates a superset of, the first of equal ones kept.
fn merge_tolerations(all: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        let covered = merged.iter().any(|kept| is_superset(kept, t))
            || all[i + 1..]
                .iter()
                .any(|later| !same_toleration(t, later) && is_superset(later, t));
        if !covered {
            merged.push(t.clone());
        }
    }
    merged
}

fn field<'a>(toleration: &'a Value, name: &str) -> &'a str {
    toleration[name].as_str().unwrap_or_default()
}

fn same_toleration(a: &Value, b: &Value) -> bool {
    ["key", "operator", "value", "effect"]
        .iter()
        .all(|f| field(a, f) == field(b, f))
        && a["tolerationSeconds"].as_i64() == b["tolerationSeconds"].as_i64()
}

/// `isSuperset`: whether `ss` tolerates every taint `t` does.
fn is_superset(ss: &Value, t: &Value) -> bool {
    if same_toleration(ss, t) {
        return true;
    }
    let (ss_key, ss_operator, ss_effect) =
        (field(ss, "key"), field(ss, "operator"), field(ss, "effect"));
    // An empty key with Exists matches every key and value.
    if field(t, "key") != ss_key && (!ss_key.is_empty() || ss_operator != "Exists") {
        return false;
    }
    // An empty effect matches every effect.
    if field(t, "effect") != ss_effect && !ss_effect.is_empty() {
        return false;
    }
    if ss_effect == "NoExecute"
        && let Some(limit) = ss["tolerationSeconds"].as_i64()
        && t["tolerationSeconds"].as_i64().is_none_or(|s| s > limit)
    {
        return false;
    }
    match ss_operator {
        "Equal" | "" => field(t, "operator") == "Equal" && field(t, "value") == field(ss, "value"),
        "Exists" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn messages(class: &Value, old: Option<&Value>) -> Vec<String> {
        let mut errs = Vec::new();
        validate(class, old, &mut errs);
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn a_class_is_checked_as_kubernetes_checks_it() {
        let good = json!({"handler": "runsc", "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {"nodeSelector": {"sandbox": "gvisor"},
                "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]}});
        assert_eq!(messages(&good, None), Vec::<String>::new());
        let bad = json!({"handler": "Run_SC", "overhead": {"podFixed": {"gpu": "1", "cpu": "-1"}},
            "scheduling": {"nodeSelector": {"a b": "c"},
                "tolerations": [{"operator": "Equal", "value": "x"},
                    {"key": "k", "operator": "Exists", "value": "v"},
                    {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
                    {"key": "k", "operator": "Like", "effect": "Sometimes"}]}});
        let got = messages(&bad, None);
        assert_eq!(got.len(), 10, "{got:#?}");
        assert!(
            got[0].starts_with("handler: Invalid value: \"Run_SC\": a lowercase RFC 1123 label"),
            "{got:#?}"
        );
        assert_eq!(
            got[1],
            "overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"
        );
        assert_eq!(
            got[2],
            "overhead.limits[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified"
        );
        assert_eq!(
            got[3],
            "overhead.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers"
        );
        assert!(
            got[4].starts_with(
                "scheduling.nodeSelector: Invalid value: \"a b\": name part must consist of"
            ),
            "{got:#?}"
        );
        assert_eq!(
            got[5],
            "scheduling.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""
        );
        assert_eq!(
            got[6],
            "scheduling.tolerations[1].operator: Invalid value: core.Toleration{Key:\"k\", Operator:\"Exists\", Value:\"v\", Effect:\"\", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'"
        );
        assert_eq!(
            got[7],
            "scheduling.tolerations[2].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"
        );
        assert_eq!(
            got[8],
            "scheduling.tolerations[3].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\""
        );
        assert_eq!(
            got[9],
            "scheduling.tolerations[3].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
        );
        let changed = json!({"handler": "kata"});
        assert_eq!(
            messages(&changed, Some(&json!({"handler": "runsc"}))),
            ["handler: Invalid value: \"kata\": field is immutable"]
        );
    }

    #[test]
    fn merged_tolerations_keep_only_what_nothing_else_covers() {
        let exists = json!({"key": "a", "operator": "Exists"});
        let equal = json!({"key": "a", "operator": "Equal", "value": "x", "effect": "NoSchedule"});
        let other = json!({"key": "b", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30});
        let longer = json!({"key": "b", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        // `exists` covers `equal` (any effect, any value); the NoExecute toleration held longer
        // covers the shorter one.
        assert_eq!(
            merge_tolerations(vec![
                equal.clone(),
                other.clone(),
                exists.clone(),
                longer.clone(),
                other
            ]),
            vec![exists, longer]
        );
        let all = json!({"operator": "Exists"});
        assert_eq!(merge_tolerations(vec![equal, all.clone()]), vec![all]);
    }
}
