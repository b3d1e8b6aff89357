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
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let condition = json!({"type": "DisruptionAllowed", "status": value, "reason": reason,
        "message": "", "observedGeneration": generation, "lastTransitionTime": now});
    match conditions
        .iter_mut()
        .find(|c| c["type"] == "DisruptionAllowed")
    {
        Some(old) => {
            let mut condition = condition;
            if old["status"] == value {
                condition["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            *old = condition;
        }
        None => conditions.push(condition),
    }
}

/// One budget's status from the Pods of its namespace (`trySync`): the Pods it selects; how many
/// are expected (its `minAvailable` as an int: the Pods there are; else the scale of their
/// controllers) and must stay healthy; how many are healthy (Ready, not going, not just
/// evicted); the disruptions allowed. A budget whose Pods' controllers are not all known keeps
/// its status, as the controller fails that sync.
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
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    // `getExpectedScale`: each controller's replicas once; a Pod no controller holds is
    // unmanaged and left out.
    let expected_scale = || -> Option<i64> {
        let mut seen = HashSet::new();
        let mut total = 0;
        for pod in &selected {
            if controller_uid(pod).is_none() {
                continue;
            }
            let (uid, replicas) = scales.of(pod)?;
            if seen.insert(uid) {
                total += replicas;
            }
        }
        Some(total)
    };
    let (expected, desired) = match (&spec["maxUnavailable"], &spec["minAvailable"]) {
        (max, _) if !max.is_null() => {
            let Some(expected) = expected_scale() else {
                return;
            };
            let unavailable = scaled(max, expected).unwrap_or(0);
            (expected, (expected - unavailable).max(0))
        }
        (_, Value::Number(min)) => (count(selected.len()), min.as_i64().unwrap_or(0)),
        (_, min @ Value::String(_)) => {
            let Some(expected) = expected_scale() else {
                return;
            };
            (expected, scaled(min, expected).unwrap_or(0))
        }
        _ => (0, 0),
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
    writes.status(DISRUPTION_BUDGETS, budget, status);
}
