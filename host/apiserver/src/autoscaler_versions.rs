//! One HorizontalPodAutoscaler, two APIs: kube-apiserver stores HPAs once, in the internal form
//! `autoscaling/v2` mirrors, and serves `autoscaling/v1` through a conversion
//! (`pkg/apis/autoscaling/v1/conversion.go`): v1 has only a CPU utilization target, so what it
//! cannot say (other metrics, their statuses, the conditions, the scaling behavior) travels in
//! annotations of the v1 form, and comes back from them when a v1 client writes the object.
//! HPAs are stored here in their `autoscaling/v2` form.

use serde_json::{Map, Value, json};

use crate::resource::ResourceInfo;

/// `MetricSpecsAnnotation`: the metrics other than a CPU utilization target.
const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// `MetricStatusesAnnotation`: every current metric.
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// `HorizontalPodAutoscalerConditionsAnnotation`.
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// `BehaviorSpecsAnnotation`: the behavior, as Go encodes the internal type (no JSON tags).
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// `autoscaling.DefaultCPUUtilization`: the target of an HPA that names none.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Whether `info` is `autoscaling/v1`'s HorizontalPodAutoscalers, stored in their v2 form.
#[must_use]
pub fn is_v1(info: &ResourceInfo) -> bool {
    info.group == "autoscaling" && info.version == "v1" && info.kind == "HorizontalPodAutoscaler"
}

/// Whether `metric` (a v2 `MetricSpec`) is the CPU utilization target v1 has a field for.
fn is_cpu_target(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && !metric["resource"]["target"]["averageUtilization"].is_null()
}

/// An object without its `null` fields (Go's `omitempty` on pointers).
fn compact(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A v2 `MetricSpec` as v1's (v2beta1-shaped) `MetricSpec` writes it.
fn spec_to_v1(metric: &Value) -> Value {
    let kind = metric["type"].as_str().unwrap_or_default();
    let target = |source: &Value| source["target"].clone();
    let body = match kind {
        "Resource" | "ContainerResource" => {
            let key = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let source = &metric[key];
            let t = target(source);
            compact(json!({
                "name": source["name"], "container": source["container"],
                "targetAverageUtilization": t["averageUtilization"],
                "targetAverageValue": t["averageValue"],
            }))
        }
        "Pods" => {
            let source = &metric["pods"];
            compact(json!({
                "metricName": source["metric"]["name"],
                "targetAverageValue": target(source)["averageValue"],
                "selector": source["metric"]["selector"],
            }))
        }
        "Object" => {
            let source = &metric["object"];
            let t = target(source);
            compact(json!({
                "target": source["describedObject"],
                "metricName": source["metric"]["name"],
                "targetValue": if t["value"].is_null() { json!("0") } else { t["value"].clone() },
                "selector": source["metric"]["selector"],
                "averageValue": t["averageValue"],
            }))
        }
        "External" => {
            let source = &metric["external"];
            let t = target(source);
            compact(json!({
                "metricName": source["metric"]["name"],
                "metricSelector": source["metric"]["selector"],
                "targetValue": t["value"], "targetAverageValue": t["averageValue"],
            }))
        }
        _ => json!({}),
    };
    let mut out = json!({"type": kind});
    let key = source_key(kind);
    if !key.is_empty() {
        out[key] = body;
    }
    out
}

/// The key of a metric's source (`Resource` → `resource`).
fn source_key(kind: &str) -> &'static str {
    match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => "",
    }
}

/// A v1 (v2beta1-shaped) `MetricSpec` in the v2 form (`Convert_v1_*MetricSource_To_autoscaling_*`).
fn spec_to_v2(metric: &Value) -> Value {
    let kind = metric["type"].as_str().unwrap_or_default();
    let key = source_key(kind);
    let source = &metric[key];
    let body = match kind {
        "Resource" | "ContainerResource" => {
            let target = if source["targetAverageUtilization"].is_null() {
                json!({"type": "AverageValue", "averageValue": source["targetAverageValue"]})
            } else {
                json!({"type": "Utilization", "averageUtilization": source["targetAverageUtilization"]})
            };
            compact(
                json!({"name": source["name"], "container": source["container"],
                "target": target}),
            )
        }
        "Pods" => json!({
            "metric": compact(json!({"name": source["metricName"], "selector": source["selector"]})),
            "target": {"type": "AverageValue", "averageValue": source["targetAverageValue"]},
        }),
        "Object" => {
            let kind = if source["averageValue"].is_null() {
                "Value"
            } else {
                "AverageValue"
            };
            json!({
                "describedObject": source["target"],
                "metric": compact(json!({"name": source["metricName"], "selector": source["selector"]})),
                "target": compact(json!({"type": kind, "value": source["targetValue"],
                    "averageValue": source["averageValue"]})),
            })
        }
        "External" => {
            let kind = if source["targetAverageValue"].is_null() {
                "Value"
            } else {
                "AverageValue"
            };
            json!({
                "metric": compact(json!({"name": source["metricName"],
                    "selector": source["metricSelector"]})),
                "target": compact(json!({"type": kind, "value": source["targetValue"],
                    "averageValue": source["targetAverageValue"]})),
            })
        }
        _ => Value::Null,
    };
    let mut out = json!({"type": kind});
    if !key.is_empty() {
        out[key] = body;
    }
    out
}

/// A v2 `MetricStatus` as v1's `MetricStatus` writes it.
fn status_to_v1(metric: &Value) -> Value {
    let kind = metric["type"].as_str().unwrap_or_default();
    let key = source_key(kind);
    let source = &metric[key];
    let current = &source["current"];
    let body = match kind {
        "Resource" | "ContainerResource" => compact(json!({
            "name": source["name"], "container": source["container"],
            "currentAverageUtilization": current["averageUtilization"],
            "currentAverageValue": current.get("averageValue").cloned().unwrap_or(json!("0")),
        })),
        "Pods" => compact(json!({
            "metricName": source["metric"]["name"],
            "currentAverageValue": current.get("averageValue").cloned().unwrap_or(json!("0")),
            "selector": source["metric"]["selector"],
        })),
        "Object" => compact(json!({
            "target": source["describedObject"], "metricName": source["metric"]["name"],
            "currentValue": current.get("value").cloned().unwrap_or(json!("0")),
            "selector": source["metric"]["selector"], "averageValue": current["averageValue"],
        })),
        "External" => compact(json!({
            "metricName": source["metric"]["name"], "metricSelector": source["metric"]["selector"],
            "currentValue": current.get("value").cloned().unwrap_or(json!("0")),
            "currentAverageValue": current["averageValue"],
        })),
        _ => Value::Null,
    };
    let mut out = json!({"type": kind});
    if !key.is_empty() {
        out[key] = body;
    }
    out
}

/// A v1 `MetricStatus` in the v2 form.
fn status_to_v2(metric: &Value) -> Value {
    let kind = metric["type"].as_str().unwrap_or_default();
    let key = source_key(kind);
    let source = &metric[key];
    let body = match kind {
        "Resource" | "ContainerResource" => compact(json!({
            "name": source["name"], "container": source["container"],
            "current": compact(json!({"averageUtilization": source["currentAverageUtilization"],
                "averageValue": source["currentAverageValue"]})),
        })),
        "Pods" => json!({
            "metric": compact(json!({"name": source["metricName"], "selector": source["selector"]})),
            "current": compact(json!({"averageValue": source["currentAverageValue"]})),
        }),
        "Object" => json!({
            "describedObject": source["target"],
            "metric": compact(json!({"name": source["metricName"], "selector": source["selector"]})),
            "current": compact(json!({"value": source["currentValue"],
                "averageValue": source["averageValue"]})),
        }),
        "External" => json!({
            "metric": compact(json!({"name": source["metricName"],
                "selector": source["metricSelector"]})),
            "current": compact(json!({"value": source["currentValue"],
                "averageValue": source["currentAverageValue"]})),
        }),
        _ => Value::Null,
    };
    let mut out = json!({"type": kind});
    if !key.is_empty() {
        out[key] = body;
    }
    out
}

/// Go's encoding of a JSON value of the internal types: strings quoted, the rest as JSON.
fn go_json(value: &Value) -> String {
    value.to_string()
}

/// The behavior as `json.Marshal` writes the internal `HorizontalPodAutoscalerBehavior`, which
/// has no JSON tags: Go's field names, in declaration order, `null` for what is unset.
fn behavior_annotation(behavior: &Value) -> String {
    let rules = |rules: &Value| -> String {
        if rules.is_null() {
            return "null".to_owned();
        }
        let policies: Vec<String> = rules["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{{\"Type\":{},\"Value\":{},\"PeriodSeconds\":{}}}",
                    go_json(&p["type"]),
                    p["value"].as_i64().unwrap_or(0),
                    p["periodSeconds"].as_i64().unwrap_or(0)
                )
            })
            .collect();
        let policies = if rules["policies"].is_array() {
            format!("[{}]", policies.join(","))
        } else {
            "null".to_owned()
        };
        format!(
            "{{\"StabilizationWindowSeconds\":{},\"SelectPolicy\":{},\"Policies\":{policies}}}",
            go_json(&rules["stabilizationWindowSeconds"]),
            go_json(&rules["selectPolicy"]),
        )
    };
    format!(
        "{{\"ScaleUp\":{},\"ScaleDown\":{}}}",
        rules(&behavior["scaleUp"]),
        rules(&behavior["scaleDown"])
    )
}

/// The behavior an annotation of [`behavior_annotation`]'s form holds, in the v2 form.
fn behavior_from_annotation(text: &str) -> Option<Value> {
    let go: Value = serde_json::from_str(text).ok()?;
    let rules = |rules: &Value| -> Value {
        if !rules.is_object() {
            return Value::Null;
        }
        let policies = rules["Policies"].as_array().map(|ps| {
            ps.iter()
                .map(|p| {
                    json!({"type": p["Type"], "value": p["Value"],
                    "periodSeconds": p["PeriodSeconds"]})
                })
                .collect::<Vec<_>>()
        });
        compact(json!({
            "stabilizationWindowSeconds": rules["StabilizationWindowSeconds"],
            "selectPolicy": rules["SelectPolicy"],
            "policies": policies,
        }))
    };
    let behavior = compact(json!({"scaleUp": rules(&go["ScaleUp"]),
        "scaleDown": rules(&go["ScaleDown"])}));
    // A zero behavior is no behavior.
    behavior
        .as_object()
        .is_some_and(|m| !m.is_empty())
        .then_some(behavior)
}

/// The conditions as v1's `HorizontalPodAutoscalerCondition` list encodes them (Go's field order).
fn conditions_annotation(conditions: &[Value]) -> String {
    let items: Vec<String> = conditions
        .iter()
        .map(|c| {
            let mut fields = vec![
                format!("\"type\":{}", go_json(&c["type"])),
                format!("\"status\":{}", go_json(&c["status"])),
                format!(
                    "\"lastTransitionTime\":{}",
                    go_json(&c["lastTransitionTime"])
                ),
            ];
            for key in ["reason", "message"] {
                if c[key].as_str().is_some_and(|s| !s.is_empty()) {
                    fields.push(format!("\"{key}\":{}", go_json(&c[key])));
                }
            }
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Removes the four round-trip annotations (`DropRoundTripHorizontalPodAutoscalerAnnotations`),
/// returning what they held.
fn take_round_trip(metadata: &mut Map<String, Value>) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    else {
        return taken;
    };
    for key in [METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR] {
        if let Some(value) = annotations.remove(key) {
            taken.insert(key.to_owned(), value);
        }
    }
    if annotations.is_empty() {
        metadata.remove("annotations");
    }
    taken
}

/// A stored (v2) HPA as `autoscaling/v1` shows it.
#[must_use]
pub fn to_v1(object: &Value) -> Value {
    let mut metadata = object["metadata"].as_object().cloned().unwrap_or_default();
    take_round_trip(&mut metadata);
    let spec = &object["spec"];
    let status = &object["status"];
    let metrics: Vec<Value> = spec["metrics"].as_array().cloned().unwrap_or_default();
    let current: Vec<Value> = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let mut annotations = Map::new();
    let other: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_target(m))
        .map(spec_to_v1)
        .collect();
    if !other.is_empty() {
        annotations.insert(METRICS.into(), json!(Value::Array(other).to_string()));
    }
    if !current.is_empty() {
        let statuses: Vec<Value> = current.iter().map(status_to_v1).collect();
        annotations.insert(
            CURRENT_METRICS.into(),
            json!(Value::Array(statuses).to_string()),
        );
    }
    if spec["behavior"].is_object() {
        annotations.insert(
            BEHAVIOR.into(),
            json!(behavior_annotation(&spec["behavior"])),
        );
    }
    if !conditions.is_empty() {
        annotations.insert(CONDITIONS.into(), json!(conditions_annotation(&conditions)));
    }
    if !annotations.is_empty() {
        let entry = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.extend(annotations);
        }
    }
    let mut v1_spec = Map::new();
    for key in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(key) {
            v1_spec.insert(key.into(), v.clone());
        }
    }
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_target(m)) {
        v1_spec.insert(
            "targetCPUUtilizationPercentage".into(),
            cpu["resource"]["target"]["averageUtilization"].clone(),
        );
    }
    let mut v1_status = Map::new();
    for key in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        if let Some(v) = status.get(key) {
            v1_status.insert(key.into(), v.clone());
        }
    }
    // v1's counts are not `omitempty`.
    for key in ["currentReplicas", "desiredReplicas"] {
        v1_status.entry(key).or_insert(json!(0));
    }
    if let Some(cpu) = current.iter().find(|m| {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && !m["resource"]["current"]["averageUtilization"].is_null()
    }) {
        v1_status.insert(
            "currentCPUUtilizationPercentage".into(),
            cpu["resource"]["current"]["averageUtilization"].clone(),
        );
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": v1_spec,
        "status": v1_status,
    })
}

/// An `autoscaling/v1` HPA in its stored v2 form (one already in that form is returned as it is):
/// the metrics of its annotation then its CPU target (CPU at 80 % when there are none), the
/// behavior, statuses and conditions of its annotations; the annotations themselves dropped.
#[must_use]
pub fn to_v2(object: Value) -> Value {
    if object["apiVersion"] != "autoscaling/v1" {
        return object;
    }
    let mut metadata = object["metadata"].as_object().cloned().unwrap_or_default();
    let taken = take_round_trip(&mut metadata);
    let parsed =
        |key: &str| -> Option<Value> { serde_json::from_str(taken.get(key)?.as_str()?).ok() };
    let spec = &object["spec"];
    let status = &object["status"];
    let mut metrics: Vec<Value> = parsed(METRICS)
        .and_then(|m| m.as_array().cloned())
        .map(|ms| ms.iter().map(spec_to_v2).collect())
        .unwrap_or_default();
    if let Some(cpu) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if metrics.is_empty() {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}));
    }
    let mut v2_spec = Map::new();
    for key in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(key) {
            v2_spec.insert(key.into(), v.clone());
        }
    }
    v2_spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(behavior) = taken
        .get(BEHAVIOR)
        .and_then(Value::as_str)
        .and_then(behavior_from_annotation)
    {
        v2_spec.insert("behavior".into(), behavior);
    }
    let mut v2_status = Map::new();
    for key in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        if let Some(v) = status.get(key).filter(|v| !v.is_null()) {
            v2_status.insert(key.into(), v.clone());
        }
    }
    let current = match parsed(CURRENT_METRICS).and_then(|m| m.as_array().cloned()) {
        Some(statuses) => statuses.iter().map(status_to_v2).collect(),
        None => match status
            .get("currentCPUUtilizationPercentage")
            .filter(|v| !v.is_null())
        {
            Some(cpu) => vec![json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}})],
            None => Vec::new(),
        },
    };
    if !current.is_empty() {
        v2_status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(conditions) = parsed(CONDITIONS).filter(Value::is_array) {
        v2_status.insert("conditions".into(), conditions);
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": v2_spec,
    });
    if !v2_status.is_empty() {
        out["status"] = Value::Object(v2_status);
    }
    out
}

/// [`to_v2`] of a write through `autoscaling/v1` over the `stored` object: a status as v1 shows
/// the stored one (a spec write carries the stored status) keeps the stored status, which the v1
/// form cannot carry exactly (its quantities are not optional, its conditions ride in an
/// annotation a client may drop).
#[must_use]
pub fn to_v2_over(object: Value, stored: Option<&Value>) -> Value {
    let unchanged = stored.filter(|stored| to_v1(stored)["status"] == object["status"]);
    let mut out = to_v2(object);
    if let Some(stored) = unchanged {
        match stored.get("status") {
            Some(status) => out["status"] = status.clone(),
            None => {
                if let Some(map) = out.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70}}},
                    {"type": "Pods", "pods": {"metric": {"name": "rps"},
                        "target": {"type": "AverageValue", "averageValue": "100"}}},
                ],
                "behavior": {"scaleDown": {"selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}},
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 40}}}],
                "conditions": [{"type": "AbleToScale", "status": "True",
                    "lastTransitionTime": "2026-12-06T00:00:00Z", "reason": "SucceededGetScale",
                    "message": "the HPA controller was able to get the target's current scale"}]},
        })
    }

    #[test]
    fn v1_shows_the_cpu_target_and_carries_the_rest_in_annotations_both_ways() {
        let v1 = to_v1(&stored());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
        let annotations = &v1["metadata"]["annotations"];
        assert_eq!(annotations["team"], "a");
        assert_eq!(
            annotations[METRICS],
            r#"[{"pods":{"metricName":"rps","targetAverageValue":"100"},"type":"Pods"}]"#
        );
        assert_eq!(
            annotations[BEHAVIOR],
            r#"{"ScaleUp":null,"ScaleDown":{"StabilizationWindowSeconds":null,"SelectPolicy":"Max","Policies":[{"Type":"Percent","Value":100,"PeriodSeconds":15}]}}"#
        );
        assert!(
            annotations[CONDITIONS]
                .as_str()
                .unwrap()
                .starts_with(r#"[{"type":"AbleToScale","status":"True","lastTransitionTime":"#)
        );
        // A v1 client writing back what it read loses nothing: the annotation's metrics come
        // first, then the CPU target, and v1's status quantities are not optional.
        let mut expected = stored();
        let metrics = expected["spec"]["metrics"].as_array_mut().unwrap();
        metrics.rotate_left(1);
        expected["status"]["currentMetrics"][0]["resource"]["current"]["averageValue"] = json!("0");
        assert_eq!(to_v2(v1.clone()), expected);
        // Over the stored object, an unchanged v1 status keeps the stored one.
        assert_eq!(
            to_v2_over(v1, Some(&stored()))["status"],
            stored()["status"]
        );
    }

    #[test]
    fn a_v1_hpa_without_a_target_gets_cpu_at_80_percent() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        let v2 = to_v2(v1);
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert!(v2.get("status").is_none());
        assert_eq!(to_v1(&v2)["spec"]["targetCPUUtilizationPercentage"], 80);
    }
}
