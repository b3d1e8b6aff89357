//! The horizontal pod autoscaler controller's part, on a cluster without a metrics server (none
//! is simulated): it reads the target's scale, keeps the replicas within `minReplicas` and
//! `maxReplicas` through it, and otherwise reports that the metrics cannot be read, with the
//! conditions, status and Events `pkg/controller/podautoscaler` writes then.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Writes, namespace};
use crate::cluster::{set_condition, timestamp};
use crate::error::ApiError;

/// The storage key of HorizontalPodAutoscalers (stored as `autoscaling/v2`).
pub(super) const AUTOSCALERS: &str = "horizontalpodautoscalers.autoscaling";

/// The controller's name in the Events it records.
const AUTOSCALER_CONTROLLER: &str = "horizontal-pod-autoscaler";

/// Why the resource metrics cannot be read: no `metrics.k8s.io` is served.
const NO_METRICS_API: &str = "unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";

/// `reconcileAutoscaler` for one HPA (in its stored v2 form) at `now`.
pub(super) fn autoscaler_pass(writes: &mut Writes<'_>, hpa: &Value, now: DateTime<Utc>) {
    let Some(namespace) = namespace(hpa) else {
        return;
    };
    let spec = &hpa["spec"];
    let target = &spec["scaleTargetRef"];
    let mut status = hpa["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let condition = |kind: &str, state: &str, reason: &str, message: String| {
        json!({"type": kind, "status": state, "lastTransitionTime": timestamp(now),
            "reason": reason, "message": message})
    };
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    let scale = match read_scale(writes, target, namespace) {
        Ok(scale) => scale,
        Err(error) => {
            events.push(("Warning", "FailedGetScale", error.clone()));
            set_condition(
                &mut status,
                condition(
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: {error}"
                    ),
                ),
            );
            write(writes, hpa, status, &events);
            return;
        }
    };
    set_condition(
        &mut status,
        condition(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".to_owned(),
        ),
    );
    let current = scale.replicas;
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    let mut metric_statuses: Option<Value> = None;
    let (desired, reason) = if current == 0 && min != 0 {
        set_condition(
            &mut status,
            condition(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".to_owned(),
            ),
        );
        (0, None)
    } else if current > max {
        (
            max,
            Some("Current number of replicas above Spec.MaxReplicas"),
        )
    } else if current < min {
        (
            min,
            Some("Current number of replicas below Spec.MinReplicas"),
        )
    } else {
        // `computeReplicasForMetrics` with no metrics API: every metric fails to be read.
        let metrics = spec["metrics"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut first: Option<(String, String)> = None;
        for metric in metrics {
            let (reason, error) = metric_error(metric);
            events.push(("Warning", reason, error.clone()));
            first.get_or_insert((reason.to_owned(), error));
        }
        if let Some((reason, error)) = first {
            set_condition(
                &mut status,
                condition(
                    "ScalingActive",
                    "False",
                    &reason,
                    format!("the HPA was unable to compute the replica count: {error}"),
                ),
            );
            let wrapped = metrics
                .first()
                .map(|m| metric_error_wrapped(m, &metric_error(m).1))
                .unwrap_or_default();
            events.push((
                "Warning",
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({n} invalid out of {n}), first error is: {wrapped}",
                    n = metrics.len()
                ),
            ));
            // `setCurrentReplicasAndMetricsInStatus`: a status entry per metric, empty for
            // those that failed.
            metric_statuses = Some(Value::Array(vec![json!({"type": ""}); metrics.len()]));
        }
        let previous = status["desiredReplicas"].as_i64().unwrap_or(0);
        (previous, None)
    };
    let mut rescaled = false;
    if let Some(reason) = reason
        && desired != current
    {
        let body = crate::scale::with_replicas(&scale.paths, &scale.object, desired);
        if writes.update("scale", &scale.storage, body) {
            rescaled = true;
            set_condition(
                &mut status,
                condition(
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                ),
            );
            events.push((
                "Normal",
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            ));
        }
    }
    let Some(map) = status.as_object_mut() else {
        return;
    };
    if current == 0 {
        map.remove("currentReplicas");
    } else {
        map.insert("currentReplicas".into(), json!(current));
    }
    map.insert("desiredReplicas".into(), json!(desired));
    if rescaled {
        map.insert("lastScaleTime".into(), json!(timestamp(now)));
    }
    match metric_statuses {
        Some(statuses) => {
            map.insert("currentMetrics".into(), statuses);
        }
        None if reason.is_some() => {}
        None => {
            map.remove("currentMetrics");
        }
    }
    write(writes, hpa, status, &events);
}

/// Writes the status if it changed, and then the Events of this sync (a sync that changes
/// nothing records nothing again).
fn write(writes: &mut Writes<'_>, hpa: &Value, status: Value, events: &[(&str, &str, String)]) {
    if !writes.status(AUTOSCALERS, hpa, status) {
        return;
    }
    for (kind, reason, message) in events {
        if *kind == "Warning" {
            writes.warning(hpa, AUTOSCALER_CONTROLLER, reason, message.clone());
        } else {
            writes.event(hpa, AUTOSCALER_CONTROLLER, reason, message.clone());
        }
    }
}

/// The Event reason and error of a metric the controller cannot read without a metrics API.
fn metric_error(metric: &Value) -> (&'static str, String) {
    match metric["type"].as_str().unwrap_or_default() {
        kind @ ("Resource" | "ContainerResource") => {
            let key = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let resource = metric[key]["name"].as_str().unwrap_or_default();
            let what = if metric[key]["target"]["averageValue"].is_null() {
                "utilization"
            } else {
                "usage"
            };
            let reason = if kind == "Resource" {
                "FailedGetResourceMetric"
            } else {
                "FailedGetContainerResourceMetric"
            };
            (
                reason,
                format!(
                    "failed to get {resource} {what}: unable to get metrics for resource {resource}: {NO_METRICS_API}"
                ),
            )
        }
        "Pods" => (
            "FailedGetPodsMetric",
            format!(
                "unable to get metric {}: no custom metrics API (custom.metrics.k8s.io) registered",
                metric["pods"]["metric"]["name"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ),
        "Object" => (
            "FailedGetObjectMetric",
            format!(
                "unable to get metric {}: no custom metrics API (custom.metrics.k8s.io) registered",
                metric["object"]["metric"]["name"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ),
        _ => (
            "FailedGetExternalMetric",
            format!(
                "unable to get external metric {}: no external metrics API (external.metrics.k8s.io) registered",
                metric["external"]["metric"]["name"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ),
    }
}

/// `computeReplicasForMetric`'s wrapping of a metric's error.
fn metric_error_wrapped(metric: &Value, error: &str) -> String {
    match metric["type"].as_str().unwrap_or_default() {
        "Resource" => format!(
            "failed to get {} resource metric value: {error}",
            metric["resource"]["name"].as_str().unwrap_or_default()
        ),
        "ContainerResource" => format!(
            "failed to get {} container metric value: {error}",
            metric["containerResource"]["container"]
                .as_str()
                .unwrap_or_default()
        ),
        "Pods" => format!("failed to get pods metric value: {error}"),
        "Object" => format!("failed to get object metric value: {error}"),
        _ => format!("failed to get external metric value: {error}"),
    }
}

/// A target's scale, where it is stored and how to change it.
struct TargetScale {
    /// The target's storage key.
    storage: String,
    /// Its scale paths.
    paths: crate::resource::ScalePaths,
    /// The target as stored.
    object: Value,
    /// Its `spec.replicas` as the Scale shows it.
    replicas: i64,
}

/// The scale of `target` (`scaleTargetRef`) in `namespace`, or the error the controller reports.
fn read_scale(writes: &Writes<'_>, target: &Value, namespace: &str) -> Result<TargetScale, String> {
    let kind = target["kind"].as_str().unwrap_or_default();
    let name = target["name"].as_str().unwrap_or_default();
    let api_version = target["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let inner = writes.cluster.lock();
    let Some(info) = inner
        .registry
        .all()
        .find(|r| r.group == group && r.kind == kind)
        .cloned()
    else {
        return Err(format!("no matches for kind {kind:?} in group {group:?}"));
    };
    let Some(paths) = info.scale.clone() else {
        return Err(format!(
            "{} does not implement the scale subresource",
            info.group_resource()
        ));
    };
    let storage = info.storage_resource();
    let key = (namespace.to_owned(), name.to_owned());
    let Some(object) = inner.store.get(&storage, &key).cloned() else {
        return Err(ApiError::NotFound {
            resource: info.group_resource(),
            name: name.to_owned(),
        }
        .to_string());
    };
    let replicas = crate::scale::of(&paths, &object)["spec"]["replicas"]
        .as_i64()
        .unwrap_or(0);
    Ok(TargetScale {
        storage,
        paths,
        object: (*object).clone(),
        replicas,
    })
}
