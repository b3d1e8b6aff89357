//! The disruption controller's part (`pkg/controller/disruption`): each PodDisruptionBudget's
//! status, how many of the Pods it selects are expected and healthy, and so how many may be
//! disrupted now, which the eviction subresource reads and takes from.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Writes, controller_uid, is_ready, name};
use crate::cluster::{parse_timestamp, timestamp};
use crate::gc;

/// PodDisruptionBudgets' group resource.
pub(super) const DISRUPTION_BUDGETS: &str = "poddisruptionbudgets.policy";

/// `DeletionTimeout`: how long an eviction noted in `disruptedPods` waits for the Pod to go
/// before the Pod counts again.
const DELETION_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// The workloads whose scale a budget's expected Pods come from, by uid (`getExpectedScale`'s
/// finders): a ReplicaSet counts as its Deployment when one controls it.
pub(super) struct Scales<'a> {
    by_uid: HashMap<&'a str, &'a Value>,
}

impl<'a> Scales<'a> {
    /// The controllers among `workloads` (Deployments, ReplicaSets, StatefulSets).
    pub(super) fn new(workloads: impl IntoIterator<Item = &'a Value>) -> Self {
        let by_uid = workloads
            .into_iter()
            .filter_map(|w| Some((w["metadata"]["uid"].as_str()?, w)))
            .collect();
        Self { by_uid }
    }

    /// The controller whose scale stands for `pod`'s (its uid and replicas), if one is known.
    fn of(&self, pod: &Value) -> Option<(&'a str, i64)> {
        let mut controller = *self.by_uid.get(controller_uid(pod)?)?;
        // `getPodReplicaSet`: a ReplicaSet's Deployment, when it has one.
        if controller["kind"] == "ReplicaSet"
            && let Some(deployment) = controller_uid(controller).and_then(|u| self.by_uid.get(u))
        {
            controller = deployment;
        }
        let uid = controller["metadata"]["uid"].as_str()?;
        Some((uid, controller["spec"]["replicas"].as_i64().unwrap_or(1)))
    }
}

/// `GetScaledValueFromIntOrPercent(bound, total, roundUp)`.
fn scaled(bound: &Value, total: i64) -> Option<i64> {
    match bound {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((percent * total + 99) / 100)
        }
        _ => None,
    }
}

/// `UpdateDisruptionAllowedCondition`: the `DisruptionAllowed` condition of `budget`'s status,
/// True (`SufficientPods`) while a disruption is allowed, else False (`InsufficientPods`), its
/// transition time moved only when its status changes.
pub(crate) fn set_disruption_allowed(budget: &mut Value, now: &str) {
    let status = &mut budget["status"];
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) > 0;
    let (value, reason) = if allowed {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let generation = status["observedGeneration"].clone();
    if !status.is_object() {
        *status = json!({});
    }
    let condition = json!({"type": "DisruptionAllowed", "status": value, "reason": reason,
        "message": "", "observedGeneration": generation, "lastTransitionTime": now});
    crate::cluster::set_condition(status, condition);
}

/// The component the disruption controller's Events come from (its recorder's `EventSource`).
const COMPONENT: &str = "controllermanager";

/// Why a budget's expected Pods cannot be counted (`getExpectedScale`'s errors).
fn unscaled(pod: &Value) -> String {
    let controller = pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["controller"] == true);
    // `getScaleController`: a controller of a kind with no scale subresource.
    match controller.map(|c| (&c["apiVersion"], &c["kind"])) {
        Some((v, k)) if v == "batch/v1" && k == "Job" => {
            "jobs.batch does not implement the scale subresource".to_owned()
        }
        Some((v, k)) if v == "apps/v1" && k == "DaemonSet" => {
            "daemonsets.apps does not implement the scale subresource".to_owned()
        }
        _ => format!(
            "found no controllers for pod {:?}",
            name(pod).unwrap_or_default()
        ),
    }
}

/// A label selector as Go's `%v` prints a `*metav1.LabelSelector` (its generated `String()`).
fn selector_string(selector: &Value) -> String {
    if selector.is_null() {
        return "nil".to_owned();
    }
    let mut labels: Vec<(&String, &Value)> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .collect();
    labels.sort_by_key(|(k, _)| *k);
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("{k}: {},", v.as_str().unwrap_or_default()))
        .collect();
    let expressions: String = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e["key"].as_str().unwrap_or_default(),
                e["operator"].as_str().unwrap_or_default(),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

/// One budget's sync (`trySync`) from the Pods of its namespace, those being deleted included:
/// the Pods it selects; how many are expected (its `minAvailable` as an int: the Pods there are;
/// else the scale of their controllers) and must stay healthy; how many are healthy (Ready, not
/// going, not just evicted); the disruptions allowed. A budget whose Pods' controllers cannot be
/// scaled gets the fail-safe status instead (`failSafe`: no disruption allowed, `SyncFailed`).
/// Its Events (`NoPods`, `UnmanagedPods`, `CalculateExpectedPodCountFailed`) are recorded when
/// the sync changes its status: the controller syncs a budget when it or its Pods change, and
/// client-go's recorder folds the repeats of an Event into one.
pub(super) fn budget_pass(
    writes: &mut Writes<'_>,
    budget: &Value,
    pods: &[&Value],
    scales: &Scales<'_>,
    now: DateTime<Utc>,
) {
    let spec = &budget["spec"];
    let namespace = budget["metadata"]["namespace"].as_str();
    let selected: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| p["metadata"]["namespace"].as_str() == namespace)
        .filter(|p| crate::verbs::budget_selects(&spec["selector"], p))
        .collect();
    let mut notes: Vec<(bool, &str, String)> = Vec::new();
    if selected.is_empty() {
        notes.push((false, "NoPods", "No matching pods found".to_owned()));
    }
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    // `getExpectedScale`: each controller's replicas once; a Pod no controller holds is
    // unmanaged and left out.
    let expected_scale = || -> Result<(i64, bool), String> {
        let mut seen = HashSet::new();
        let (mut total, mut unmanaged) = (0, false);
        for pod in &selected {
            if controller_uid(pod).is_none() {
                unmanaged = true;
                continue;
            }
            let (uid, replicas) = scales.of(pod).ok_or_else(|| unscaled(pod))?;
            if seen.insert(uid) {
                total += replicas;
            }
        }
        Ok((total, unmanaged))
    };
    let counted = match (&spec["maxUnavailable"], &spec["minAvailable"]) {
        (max, _) if !max.is_null() => expected_scale().map(|(expected, unmanaged)| {
            let unavailable = scaled(max, expected).unwrap_or(0);
            (expected, (expected - unavailable).max(0), unmanaged)
        }),
        (_, Value::Number(min)) => Ok((count(selected.len()), min.as_i64().unwrap_or(0), false)),
        (_, min @ Value::String(_)) => expected_scale()
            .map(|(expected, unmanaged)| (expected, scaled(min, expected).unwrap_or(0), unmanaged)),
        _ => Ok((0, 0, false)),
    };
    let (expected, desired) = match counted {
        Ok((expected, desired, unmanaged)) => {
            if unmanaged {
                notes.push((
                    true,
                    "UnmanagedPods",
                    format!(
                        "Pods selected by this PodDisruptionBudget (selector: {}) were found to be \
                         unmanaged. As a result, the status of the PDB cannot be calculated \
                         correctly, which may result in undefined behavior. To account for these \
                         pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                        selector_string(&spec["selector"])
                    ),
                ));
            }
            (expected, desired)
        }
        Err(error) => {
            notes.push((
                true,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {error}"),
            ));
            let status = fail_safe(budget, &error, now);
            if writes.status(DISRUPTION_BUDGETS, budget, status) {
                record(writes, budget, notes);
            }
            return;
        }
    };
    // `buildDisruptedPodMap`: an eviction is remembered until its Pod goes, or for two minutes.
    let mut disrupted = Map::new();
    for (pod_name, at) in budget["status"]["disruptedPods"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let present = selected
            .iter()
            .any(|p| name(p) == Some(pod_name.as_str()) && !gc::is_deleting(p));
        let fresh = at
            .as_str()
            .and_then(parse_timestamp)
            .is_some_and(|t| t + DELETION_TIMEOUT > now);
        if present && fresh {
            disrupted.insert(pod_name.clone(), at.clone());
        }
    }
    let healthy = count(
        selected
            .iter()
            .filter(|p| {
                !disrupted.contains_key(name(p).unwrap_or_default())
                    && !gc::is_deleting(p)
                    && is_ready(p)
            })
            .count(),
    );
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let mut body = budget.clone();
    let conditions = budget["status"]["conditions"].clone();
    let mut status = json!({
        "observedGeneration": budget["metadata"]["generation"],
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    if conditions.is_array() {
        status["conditions"] = conditions;
    }
    body["status"] = status;
    set_disruption_allowed(&mut body, &timestamp(now));
    let status = body["status"].take();
    if writes.status(DISRUPTION_BUDGETS, budget, status) {
        record(writes, budget, notes);
    }
}

/// Records a sync's Events about `budget` (Warning when flagged, else Normal).
fn record(writes: &mut Writes<'_>, budget: &Value, notes: Vec<(bool, &str, String)>) {
    for (warning, reason, message) in notes {
        if warning {
            writes.warning(budget, COMPONENT, reason, message);
        } else {
            writes.event(budget, COMPONENT, reason, message);
        }
    }
}

/// `failSafe`: `budget`'s status with no disruption allowed and its `DisruptionAllowed`
/// condition False for `SyncFailed`, saying why; the rest of the status as it was.
fn fail_safe(budget: &Value, error: &str, now: DateTime<Utc>) -> Value {
    let mut status = budget["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["disruptionsAllowed"] = json!(0);
    let mut condition = json!({"type": "DisruptionAllowed", "status": "False",
        "reason": "SyncFailed", "message": error, "lastTransitionTime": timestamp(now)});
    if let Some(generation) = status["observedGeneration"].as_i64() {
        condition["observedGeneration"] = json!(generation);
    }
    // `SetStatusCondition`: the transition time moves only when the status does.
    crate::cluster::set_condition(&mut status, condition);
    status
}
