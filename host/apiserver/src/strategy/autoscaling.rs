//! What Kubernetes' registry strategy does to HorizontalPodAutoscalers (`autoscaling/v2`, and
//! `autoscaling/v1` through its v2 form): the defaults of `pkg/apis/autoscaling/v{1,2}/defaults.go`,
//! the empty status of a new HPA, and `pkg/apis/autoscaling/validation`'s rules with their paths
//! and messages. HPAs carry no `metadata.generation` in v1.32.

use serde_json::{Value, json};

use super::validate::Change;
use crate::autoscaler_versions::{DEFAULT_CPU_UTILIZATION, to_v2};
use crate::error::FieldCause;

/// `MaxPeriodSeconds` of a scaling policy.
const MAX_PERIOD_SECONDS: i64 = 1800;
/// `MaxStabilizationWindowSeconds`.
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;

/// The defaults of `version`'s form: v1 defaults only `minReplicas` (its CPU target is defaulted
/// by the conversion); v2 also the CPU metric of an HPA that names none and, when a behavior is
/// given, each of its rules (`GenerateHPAScaleUpRules`, `GenerateHPAScaleDownRules`).
pub(super) fn defaults(object: &mut Value, version: &str, creating: bool) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    if creating {
        // `PrepareForCreate`: an empty status, whose desired count v2 always writes.
        map.insert("status".into(), json!({"desiredReplicas": 0}));
    }
    let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec.insert("minReplicas".into(), json!(1));
    }
    if version != "v2" {
        return;
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]),
        );
    }
    if let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let scale_up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        let scale_down = json!({"selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]});
        for (key, default) in [("scaleUp", scale_up), ("scaleDown", scale_down)] {
            let mut rules = default;
            if let Some(given) = behavior.get(key).and_then(Value::as_object) {
                for (field, value) in given.iter().filter(|(_, v)| !v.is_null()) {
                    rules[field] = value.clone();
                }
            }
            behavior.insert(key.into(), rules);
        }
    }
}

/// The field errors of an HPA in `version`'s form (a v1 HPA is validated in its v2 form, as
/// kube-apiserver validates the internal type: a v1 CPU target's error names
/// `spec.metrics[0].resource.target.averageUtilization`).
pub(super) fn check(
    version: &str,
    old: Option<&Value>,
    object: &Value,
    change: Change,
) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    if change == Change::Status {
        for key in ["currentReplicas", "desiredReplicas"] {
            if object["status"][key].as_i64().is_some_and(|n| n < 0) {
                errs.push(FieldCause::invalid_value(
                    &format!("status.{key}"),
                    &object["status"][key],
                    "must be greater than or equal to 0",
                ));
            }
        }
        return errs;
    }
    let converted;
    let object = if version == "v1" {
        converted = to_v2(object.clone());
        &converted
    } else {
        object
    };
    let spec = &object["spec"];
    // `HPAScaleToZero` is off: at least 1, unless the stored HPA already had 0.
    let old_min = old.map(|o| {
        if version == "v1" {
            to_v2(o.clone())["spec"]["minReplicas"].as_i64()
        } else {
            o["spec"]["minReplicas"].as_i64()
        }
    });
    let lower = if old_min == Some(Some(0)) { 0 } else { 1 };
    let min = spec["minReplicas"].as_i64();
    if let Some(min) = min.filter(|m| *m < lower) {
        errs.push(FieldCause::invalid_value(
            "spec.minReplicas",
            &json!(min),
            format!("must be greater than or equal to {lower}"),
        ));
    }
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max < 1 {
        errs.push(FieldCause::invalid_value(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(FieldCause::invalid_value(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    object_reference(&spec["scaleTargetRef"], "spec.scaleTargetRef", &mut errs);
    let metrics = spec["metrics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if min == Some(0)
        && !metrics
            .iter()
            .any(|m| m["type"] == "Object" || m["type"] == "External")
    {
        errs.push(FieldCause::forbidden(
            "spec.metrics",
            "must specify at least one Object or External metric to support scaling to zero replicas",
        ));
    }
    for (i, metric) in metrics.iter().enumerate() {
        metric_spec(metric, &format!("spec.metrics[{i}]"), &mut errs);
    }
    if let Some(behavior) = spec["behavior"].as_object() {
        for key in ["scaleUp", "scaleDown"] {
            if let Some(rules) = behavior.get(key).filter(|r| r.is_object()) {
                scaling_rules(rules, &format!("spec.behavior.{key}"), &mut errs);
            }
        }
    }
    errs
}

/// `IsValidPathSegmentName`'s messages.
fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// `ValidateCrossVersionObjectReference`: a kind and a name, each a path segment.
fn object_reference(reference: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    for key in ["kind", "name"] {
        let value = reference[key].as_str().unwrap_or_default();
        let field = format!("{path}.{key}");
        if value.is_empty() {
            errs.push(FieldCause::required(&field, ""));
        } else {
            for message in path_segment_errors(value) {
                errs.push(FieldCause::invalid(&field, value, message));
            }
        }
    }
}

/// `validateMetricSpec`: a known type with its source, and only it.
fn metric_spec(metric: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    const TYPES: [&str; 5] = [
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    let kind = metric["type"].as_str().unwrap_or_default();
    if kind.is_empty() {
        errs.push(FieldCause::required(
            &format!("{path}.type"),
            "must specify a metric source type",
        ));
    } else if !TYPES.contains(&kind) {
        errs.push(FieldCause::not_supported(
            &format!("{path}.type"),
            &metric["type"],
            &TYPES,
        ));
    }
    let sources = [
        ("Object", "object"),
        ("Pods", "pods"),
        ("Resource", "resource"),
        ("External", "external"),
        ("ContainerResource", "containerResource"),
    ];
    for (source_type, key) in sources {
        let present = metric[key].is_object();
        if source_type == kind && !present {
            errs.push(FieldCause::required(
                &format!("{path}.{key}"),
                "must populate information for the given metric source",
            ));
        } else if source_type != kind && present && !kind.is_empty() {
            errs.push(FieldCause::forbidden(
                &format!("{path}.{key}"),
                "must populate the given metric source only",
            ));
        }
    }
    let source_path = |key: &str| format!("{path}.{key}");
    match kind {
        "Resource" | "ContainerResource" => {
            let key = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let source = &metric[key];
            if !source.is_object() {
                return;
            }
            let path = source_path(key);
            if source["name"].as_str().unwrap_or_default().is_empty() {
                errs.push(FieldCause::required(
                    &format!("{path}.name"),
                    "must specify a resource name",
                ));
            }
            if kind == "ContainerResource"
                && source["container"].as_str().unwrap_or_default().is_empty()
            {
                errs.push(FieldCause::required(
                    &format!("{path}.container"),
                    "must specify a container",
                ));
            }
            let target = &source["target"];
            let (utilization, value) = (
                !target["averageUtilization"].is_null(),
                !target["averageValue"].is_null(),
            );
            if !utilization && !value {
                errs.push(FieldCause::required(
                    &format!("{path}.target.averageUtilization"),
                    "must set either a target raw value or a target utilization",
                ));
            }
            if utilization && value {
                errs.push(FieldCause::forbidden(
                    &format!("{path}.target.averageValue"),
                    "may not set both a target raw value and a target utilization",
                ));
            }
            metric_target(target, &format!("{path}.target"), errs);
        }
        "Pods" | "Object" | "External" => {
            let key = source_key(kind);
            let source = &metric[key];
            if !source.is_object() {
                return;
            }
            let path = source_path(key);
            if kind == "Object" {
                object_reference(
                    &source["describedObject"],
                    &format!("{path}.describedObject"),
                    errs,
                );
            }
            let name = source["metric"]["name"].as_str().unwrap_or_default();
            let name_path = format!("{path}.metric.name");
            if name.is_empty() {
                errs.push(FieldCause::required(
                    &name_path,
                    "must specify a metric name",
                ));
            } else {
                for message in path_segment_errors(name) {
                    errs.push(FieldCause::invalid(&name_path, name, message));
                }
            }
            let target = &source["target"];
            metric_target(target, &format!("{path}.target"), errs);
            let (value, average) = (
                !target["value"].is_null(),
                !target["averageValue"].is_null(),
            );
            let target_path = format!("{path}.target.averageValue");
            match kind {
                "Pods" if !average => errs.push(FieldCause::required(
                    &target_path,
                    "must specify a positive target averageValue",
                )),
                "Object" if !value && !average => errs.push(FieldCause::required(
                    &target_path,
                    "must set either a target value or averageValue",
                )),
                "External" if !value && !average => errs.push(FieldCause::required(
                    &target_path,
                    "must set either a target value for metric or a per-pod target",
                )),
                "External" if value && average => errs.push(FieldCause::forbidden(
                    &format!("{path}.target.value"),
                    "may not set both a target value for metric and a per-pod target",
                )),
                _ => {}
            }
        }
        _ => {}
    }
}

/// The key of a metric type's source.
fn source_key(kind: &str) -> &'static str {
    match kind {
        "Pods" => "pods",
        "Object" => "object",
        _ => "external",
    }
}

/// `validateMetricTarget`: a known type, positive values, a utilization of at least 1.
fn metric_target(target: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let kind = target["type"].as_str().unwrap_or_default();
    if kind.is_empty() {
        errs.push(FieldCause::required(
            &format!("{path}.type"),
            "must specify a metric target type",
        ));
    } else if !["Utilization", "Value", "AverageValue"].contains(&kind) {
        errs.push(FieldCause::invalid_value(
            &format!("{path}.type"),
            &target["type"],
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for key in ["value", "averageValue"] {
        if let Some(text) = target[key].as_str()
            && (text.starts_with('-') || text.trim_start_matches(['0', '.']).is_empty())
        {
            errs.push(FieldCause::invalid(
                &format!("{path}.{key}"),
                text,
                "must be positive",
            ));
        }
    }
    if let Some(utilization) = target["averageUtilization"].as_i64().filter(|u| *u < 1) {
        errs.push(FieldCause::invalid_value(
            &format!("{path}.averageUtilization"),
            &json!(utilization),
            "must be greater than 0",
        ));
    }
}

/// `validateScalingRules`: the window, the policy selection and each policy.
fn scaling_rules(rules: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    if let Some(window) = rules["stabilizationWindowSeconds"].as_i64() {
        let field = format!("{path}.stabilizationWindowSeconds");
        if window < 0 {
            errs.push(FieldCause::invalid_value(
                &field,
                &json!(window),
                "must be greater than or equal to zero",
            ));
        } else if window > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(FieldCause::invalid_value(
                &field,
                &json!(window),
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    let select = &rules["selectPolicy"];
    if !select.is_null() && !["Max", "Min", "Disabled"].iter().any(|p| select == p) {
        errs.push(FieldCause::not_supported(
            &format!("{path}.selectPolicy"),
            select,
            &["Disabled", "Max", "Min"],
        ));
    }
    let policies = rules["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if policies.is_empty() {
        errs.push(FieldCause::required(
            &format!("{path}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, policy) in policies.iter().enumerate() {
        let at = format!("{path}.policies[{i}]");
        let kind = &policy["type"];
        if !["Pods", "Percent"].iter().any(|t| kind == t) {
            errs.push(FieldCause::not_supported(
                &format!("{at}.type"),
                kind,
                &["Percent", "Pods"],
            ));
        }
        let value = policy["value"].as_i64().unwrap_or(0);
        if value <= 0 {
            errs.push(FieldCause::invalid_value(
                &format!("{at}.value"),
                &json!(value),
                "must be greater than zero",
            ));
        }
        let period = policy["periodSeconds"].as_i64().unwrap_or(0);
        if period <= 0 {
            errs.push(FieldCause::invalid_value(
                &format!("{at}.periodSeconds"),
                &json!(period),
                "must be greater than zero",
            ));
        } else if period > MAX_PERIOD_SECONDS {
            errs.push(FieldCause::invalid_value(
                &format!("{at}.periodSeconds"),
                &json!(period),
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// Whether `map` has `key`, not `null`.
    fn has(map: &Map<String, Value>, key: &str) -> bool {
        map.get(key).is_some_and(|v| !v.is_null())
    }

    fn hpa(spec: Value) -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"}, "spec": spec})
    }

    fn texts(errs: &[FieldCause]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_v2_hpa_gets_one_replica_cpu_at_80_percent_and_its_behavior_filled_in() {
        let mut h = hpa(
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}),
        );
        defaults(&mut h, "v2", true);
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(h["status"], json!({"desiredReplicas": 0}));
        let behavior = &h["spec"]["behavior"];
        assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(behavior["scaleDown"]["selectPolicy"], "Max");
        assert_eq!(behavior["scaleUp"]["policies"].as_array().unwrap().len(), 2);
        let mut plain = hpa(json!({"maxReplicas": 3}));
        defaults(&mut plain, "v2", false);
        assert!(!has(plain["spec"].as_object().unwrap(), "behavior"));
        assert!(
            check("v2", None, &h, Change::Object).is_empty(),
            "{:?}",
            texts(&check("v2", None, &h, Change::Object))
        );
    }

    #[test]
    fn bounds_references_metrics_and_policies_are_checked_with_their_messages() {
        let h = hpa(
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "a/b"},
            "minReplicas": 0, "maxReplicas": 0,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 0}}}],
            "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}}}),
        );
        assert_eq!(
            texts(&check("v2", None, &h, Change::Object)),
            [
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.scaleTargetRef.name: Invalid value: \"a/b\": may not contain '/'",
                "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
                "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800",
            ]
        );
        // A v1 HPA is validated in its v2 form.
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 2, "targetCPUUtilizationPercentage": 0}});
        assert_eq!(
            texts(&check("v1", None, &v1, Change::Object)),
            [
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"
            ]
        );
    }
}
