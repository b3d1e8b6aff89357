//! The daemon set controller's part: a Pod on each Node the DaemonSet's template fits (its node
//! name, node selector, required node affinity and the taints it tolerates), pinned there by node
//! affinity for the scheduler to bind; rolling updates within `maxUnavailable` or `maxSurge`;
//! the ControllerRevisions of its templates and the status counting it all, as
//! `pkg/controller/daemon` does them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::stateful_set::update_revision;
use super::{
    CONTROLLER_REVISIONS, PODS, REVISION_HASH, Writes, availability, by_creation,
    generate_name_prefix, is_ready, min_ready, name, namespace, random_suffix, template_pod,
};
use crate::strategy::daemon_set::template_generation;

/// The storage key of DaemonSets.
pub(super) const DAEMON_SETS: &str = "daemonsets.apps";

/// The daemon set controller's name in the Events it records.
const DAEMON_SET_CONTROLLER: &str = "daemonset-controller";

/// The label with a daemon Pod's template generation (`DaemonSetTemplateGenerationKey`).
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// `AddOrUpdateDaemonPodTolerations`: what every daemon Pod tolerates, `(key, effect)` with the
/// `Exists` operator; the last only for Pods on the host's network.
const DAEMON_TOLERATIONS: [(&str, &str); 7] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ("node.kubernetes.io/network-unavailable", "NoSchedule"),
];

/// The DaemonSet's part (`owned`: the Pods it controls, none of them being deleted, and its
/// ControllerRevisions; `nodes`: every Node). Returns when a Pod becomes available, if one is
/// waiting out `minReadySeconds`.
pub(super) fn daemon_set_pass(
    writes: &mut Writes<'_>,
    set: &Value,
    (owned, revisions): (&[&Value], &[&Value]),
    nodes: &[&Value],
    now: DateTime<Utc>,
) -> Option<Duration> {
    let (namespace, set_name) = (namespace(set)?, name(set)?);
    let mut revisions = revisions.to_vec();
    revisions.sort_by(|a, b| {
        a["revision"]
            .as_i64()
            .cmp(&b["revision"].as_i64())
            .then_with(|| by_creation(a, b))
    });
    let revision = update_revision(writes, set, &revisions, "DaemonSet")?;
    // A daemon Pod carries the hash alone, the suffix of the revision's name.
    let hash = revision
        .strip_prefix(set_name)
        .and_then(|h| h.strip_prefix('-'))
        .unwrap_or(&revision)
        .to_owned();
    let generation = template_generation(set).ok().flatten();
    let generation_label = generation.map(|g| g.to_string());
    // `IsPodUpdated`: the revision's hash, or the template generation.
    let updated = |pod: &Value| {
        let labels = &pod["metadata"]["labels"];
        labels[REVISION_HASH] == hash.as_str()
            || generation_label
                .as_deref()
                .is_some_and(|g| labels[TEMPLATE_GENERATION_LABEL] == g)
    };
    let mut by_node: HashMap<&str, Vec<&Value>> = HashMap::new();
    for pod in owned {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| scheduled_first(a, b));
    }
    let min_ready = min_ready(set);
    let available = |pod: &Value| availability(&[pod], min_ready, now).0 == 1;
    let mut create: Vec<&str> = Vec::new();
    let mut delete: Vec<&Value> = Vec::new();
    let mut desired_nodes: Vec<&str> = Vec::new();
    // `AllowsSurge`: a surge of one Node's worth.
    let surge_allowed = max_amounts(set, 1).1 > 0;
    for node in nodes {
        let Some(node_name) = name(node) else {
            continue;
        };
        let (should_run, should_continue) = should_run(node, set);
        let pods = by_node.remove(node_name).unwrap_or_default();
        if should_run {
            desired_nodes.push(node_name);
        }
        if should_run && pods.is_empty() {
            create.push(node_name);
        } else if should_continue {
            // Finished Pods go (to be made again); of the running ones the oldest stays, or with
            // a surge the oldest of each revision.
            let mut kept: Vec<&Value> = Vec::new();
            for pod in pods {
                let phase = pod["status"]["phase"].as_str();
                if let Some(phase @ ("Failed" | "Succeeded")) = phase {
                    let (reason, message) = if phase == "Failed" {
                        ("FailedDaemonPod", "will try to kill it")
                    } else {
                        ("SucceededDaemonPod", "will try to delete it")
                    };
                    let text = format!(
                        "Found {} daemon pod {namespace}/{} on node {node_name}, {message}",
                        phase.to_lowercase(),
                        name(pod).unwrap_or_default()
                    );
                    if phase == "Failed" {
                        writes.warning(set, DAEMON_SET_CONTROLLER, reason, text);
                    } else {
                        writes.event(set, DAEMON_SET_CONTROLLER, reason, text);
                    }
                    delete.push(pod);
                } else if kept
                    .iter()
                    .any(|k| !surge_allowed || updated(k) == updated(pod))
                {
                    delete.push(pod);
                } else {
                    kept.push(pod);
                }
            }
            if kept.is_empty() && should_run {
                create.push(node_name);
            }
        } else {
            delete.extend(pods);
        }
    }
    // Pods pinned to Nodes that are gone.
    delete.extend(by_node.into_values().flatten());
    let desired = i64::try_from(desired_nodes.len()).unwrap_or(i64::MAX);
    let rolling = set["spec"]["updateStrategy"]["type"] == "RollingUpdate";
    if rolling {
        let running_on = |node: &str| -> Vec<&Value> {
            owned
                .iter()
                .copied()
                .filter(|p| target_node(p) == Some(node) && !delete.iter().any(|d| same(d, p)))
                .collect()
        };
        let (max_unavailable, max_surge) = max_amounts(set, desired);
        let (mut numbered, mut allowed, mut candidates): (i64, Vec<&Value>, Vec<&Value>) =
            (0, Vec::new(), Vec::new());
        let mut surge_nodes: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for node in &desired_nodes {
            let pods = running_on(node);
            let new: Vec<&Value> = pods.iter().copied().filter(|p| updated(p)).collect();
            let old: Vec<&Value> = pods.iter().copied().filter(|p| !updated(p)).collect();
            if new.len() > 1 || old.len() > 1 {
                numbered += 1;
                continue;
            }
            let (new, old) = (new.first().copied(), old.first().copied());
            if max_surge == 0 {
                match (new, old) {
                    (None, None) | (Some(_), Some(_)) => numbered += 1,
                    (Some(new), None) => numbered += i64::from(!available(new)),
                    (None, Some(old)) if !available(old) => allowed.push(old),
                    (None, Some(old)) => candidates.push(old),
                }
            } else {
                match (new, old) {
                    (_, None) => {}
                    (None, Some(old)) if !available(old) => surge_nodes.0.push(node),
                    (None, Some(_)) => surge_nodes.1.push(node),
                    (Some(new), Some(_)) if !available(new) => numbered += 1,
                    (Some(_), Some(old)) => allowed.push(old),
                }
            }
        }
        if max_surge == 0 {
            let room = usize::try_from((max_unavailable - numbered).max(0)).unwrap_or(0);
            delete.extend(allowed);
            delete.extend(candidates.into_iter().take(room));
        } else {
            let room = usize::try_from((max_surge - numbered).max(0)).unwrap_or(0);
            delete.extend(allowed);
            create.extend(surge_nodes.0);
            create.extend(surge_nodes.1.into_iter().take(room));
        }
    }
    for node in create {
        let pod = daemon_pod(set, namespace, node, &hash, generation);
        let pod_name = name(&pod).unwrap_or_default().to_owned();
        if writes.create(PODS, namespace, pod) {
            let message = format!("Created pod: {pod_name}");
            writes.event(set, DAEMON_SET_CONTROLLER, "SuccessfulCreate", message);
        }
    }
    let mut deleted: Vec<&Value> = Vec::new();
    for pod in delete {
        if deleted.iter().any(|d| same(d, pod)) {
            continue;
        }
        deleted.push(pod);
        if writes.delete(PODS, pod) {
            let message = format!("Deleted pod: {}", name(pod).unwrap_or_default());
            writes.event(set, DAEMON_SET_CONTROLLER, "SuccessfulDelete", message);
        }
    }
    let wake = write_status(writes, set, owned, nodes, (&updated, &available), now);
    truncate_history(writes, set, owned, &revisions, &revision);
    wake
}

/// A question about a Pod (whether it is of the current template, whether it is available).
type PodTest<'a> = &'a dyn Fn(&Value) -> bool;

/// `updateDaemonSetStatus`, from the Pods as the pass found them: per Node that should run a Pod,
/// whether it has one, and whether the oldest is ready, available and of the current template;
/// Pods on Nodes that should not run one are misscheduled.
fn write_status(
    writes: &mut Writes<'_>,
    set: &Value,
    owned: &[&Value],
    nodes: &[&Value],
    (updated, available): (PodTest<'_>, PodTest<'_>),
    now: DateTime<Utc>,
) -> Option<Duration> {
    let (mut desired, mut current, mut misscheduled) = (0_i64, 0_i64, 0_i64);
    let (mut ready, mut up_to_date, mut available_count) = (0_i64, 0_i64, 0_i64);
    let mut ready_pods: Vec<&Value> = Vec::new();
    for node in nodes {
        let mut pods: Vec<&Value> = owned
            .iter()
            .copied()
            .filter(|p| target_node(p) == name(node))
            .collect();
        pods.sort_by(|a, b| scheduled_first(a, b));
        let (should_run, _) = should_run(node, set);
        match pods.first() {
            Some(_) if !should_run => misscheduled += 1,
            None if should_run => desired += 1,
            None => {}
            Some(pod) => {
                desired += 1;
                current += 1;
                if is_ready(pod) {
                    ready += 1;
                    ready_pods.push(pod);
                    available_count += i64::from(available(pod));
                }
                up_to_date += i64::from(updated(pod));
            }
        }
    }
    let mut status = Map::new();
    for (field, value) in [
        ("currentNumberScheduled", current),
        ("numberMisscheduled", misscheduled),
        ("desiredNumberScheduled", desired),
        ("numberReady", ready),
    ] {
        status.insert(field.into(), json!(value));
    }
    status.insert(
        "observedGeneration".into(),
        set["metadata"]["generation"].clone(),
    );
    super::insert_counts(
        &mut status,
        [
            ("updatedNumberScheduled", up_to_date),
            ("numberAvailable", available_count),
            ("numberUnavailable", desired - available_count),
        ],
    );
    if let Some(collisions) = set["status"].get("collisionCount") {
        status.insert("collisionCount".into(), collisions.clone());
    }
    writes.status(DAEMON_SETS, set, Value::Object(status));
    availability(&ready_pods, min_ready(set), now).1
}

/// `cleanupHistory`: the revisions neither current nor a live Pod's, beyond
/// `revisionHistoryLimit`, oldest first.
fn truncate_history(
    writes: &mut Writes<'_>,
    set: &Value,
    owned: &[&Value],
    revisions: &[&Value],
    current: &str,
) {
    let live = |revision: &Value| {
        name(revision) == Some(current)
            || owned.iter().any(|p| {
                p["metadata"]["labels"][REVISION_HASH]
                    == revision["metadata"]["labels"][REVISION_HASH]
            })
    };
    let old: Vec<&Value> = revisions.iter().copied().filter(|r| !live(r)).collect();
    let limit =
        usize::try_from(set["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10)).unwrap_or(0);
    for revision in old.iter().take(old.len().saturating_sub(limit)) {
        writes.delete(CONTROLLER_REVISIONS, revision);
    }
}

/// `maxUnavailable` and `maxSurge` of a rolling update over `desired` Nodes (percentages rounded
/// up); both zero means one unavailable.
fn max_amounts(set: &Value, desired: i64) -> (i64, i64) {
    let rolling = &set["spec"]["updateStrategy"]["rollingUpdate"];
    let scaled = |value: &Value| match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| (p * desired + 99) / 100),
        _ => 0,
    };
    let (unavailable, surge) = (
        scaled(&rolling["maxUnavailable"]),
        scaled(&rolling["maxSurge"]),
    );
    if unavailable == 0 && surge == 0 {
        (1, 0)
    } else {
        (unavailable, surge)
    }
}

/// The daemon Pod of `set` for `node`: the template with the daemon tolerations added, its
/// required node affinity replaced by the Node's name, labelled with the revision's hash and
/// the template generation, named as `generateName: NAME-` would.
fn daemon_pod(
    set: &Value,
    namespace: &str,
    node: &str,
    hash: &str,
    generation: Option<i64>,
) -> Value {
    let prefix = generate_name_prefix(name(set).unwrap_or_default(), "-");
    let mut pod = template_pod(
        set,
        namespace,
        prefix + &random_suffix(),
        ("apps/v1", "DaemonSet"),
    );
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(generation) = generation {
        labels[TEMPLATE_GENERATION_LABEL] = json!(generation.to_string());
    }
    labels[REVISION_HASH] = json!(hash);
    let spec = &mut pod["spec"];
    add_daemon_tolerations(spec);
    let term = json!({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [node]}]});
    let affinity = &mut spec["affinity"];
    if !affinity.is_object() {
        *affinity = json!({});
    }
    let node_affinity = &mut affinity["nodeAffinity"];
    if !node_affinity.is_object() {
        *node_affinity = json!({});
    }
    let required = &mut node_affinity["requiredDuringSchedulingIgnoredDuringExecution"];
    if !required.is_object() {
        *required = json!({});
    }
    required["nodeSelectorTerms"] = json!([term]);
    pod
}

/// `AddOrUpdateDaemonPodTolerations`: each daemon toleration replaces the Pod's toleration of the
/// same key, operator, value and effect, or is added after them.
fn add_daemon_tolerations(spec: &mut Value) {
    let host_network = spec["hostNetwork"] == true;
    let mut tolerations: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let count = if host_network {
        DAEMON_TOLERATIONS.len()
    } else {
        DAEMON_TOLERATIONS.len() - 1
    };
    for (key, effect) in &DAEMON_TOLERATIONS[..count] {
        let toleration = json!({"key": key, "operator": "Exists", "effect": effect});
        let same = |t: &Value| {
            t["key"] == *key
                && t["operator"] == "Exists"
                && t["effect"] == *effect
                && t["value"].as_str().unwrap_or_default().is_empty()
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
    spec["tolerations"] = Value::Array(tolerations);
}

/// `NodeShouldRunDaemonPod`: whether `node` should run a Pod of `set`, and whether one already
/// there may go on running (it tolerates the Node's `NoExecute` taints).
pub(super) fn should_run(node: &Value, set: &Value) -> (bool, bool) {
    let node_name = name(node).unwrap_or_default();
    let spec = &set["spec"]["template"]["spec"];
    if spec["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !node_selector_matches(&spec["nodeSelector"], node)
        || !required_affinity_matches(
            &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            node,
        )
    {
        return (false, false);
    }
    let mut with_defaults = spec.clone();
    add_daemon_tolerations(&mut with_defaults);
    let tolerations = with_defaults["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| effects.iter().any(|e| t["effect"] == *e))
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

/// `Toleration.ToleratesTaint`.
pub(super) fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let effect = text(&toleration["effect"]);
    if !effect.is_empty() && effect != text(&taint["effect"]) {
        return false;
    }
    let key = text(&toleration["key"]);
    if !key.is_empty() && key != text(&taint["key"]) {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or_default() {
        "" | "Equal" => text(&toleration["value"]) == text(&taint["value"]),
        "Exists" => true,
        _ => false,
    }
}

/// Whether every pair of a `nodeSelector` is among the Node's labels.
fn node_selector_matches(selector: &Value, node: &Value) -> bool {
    selector
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| node["metadata"]["labels"][k] == *v)
}

/// Whether a required node affinity (`NodeSelector`: any of its terms) matches the Node; none
/// required matches every Node. A term matches when all its expressions (on labels) and fields
/// (`metadata.name`) do; an empty term matches nothing.
fn required_affinity_matches(required: &Value, node: &Value) -> bool {
    let Some(terms) = required["nodeSelectorTerms"].as_array() else {
        return required.is_null();
    };
    terms.iter().any(|term| {
        let expressions = term["matchExpressions"].as_array();
        let fields = term["matchFields"].as_array();
        if expressions.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
            return false;
        }
        expressions.into_iter().flatten().all(|r| {
            let key = r["key"].as_str().unwrap_or_default();
            requirement_matches(r, node["metadata"]["labels"][key].as_str())
        }) && fields
            .into_iter()
            .flatten()
            .all(|r| r["key"] == "metadata.name" && requirement_matches(r, name(node)))
    })
}

/// A `NodeSelectorRequirement` on a value (`None`: the label is absent).
fn requirement_matches(requirement: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = requirement["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |v: &str| v.parse::<i64>().ok();
    match requirement["operator"].as_str().unwrap_or_default() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(number), values.as_slice()) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if requirement["operator"] == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// `GetTargetNodeName`: the Node a daemon Pod is on, or is pinned to by its node affinity.
pub(super) fn target_node(pod: &Value) -> Option<&str> {
    if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    pinned_node(pod)
}

/// The Node a Pod's required node affinity names alone, as a daemon Pod's does
/// (`matchFields: metadata.name In [NODE]` in its only term).
pub(super) fn pinned_node(pod: &Value) -> Option<&str> {
    let terms = pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()?;
    let [term] = terms.as_slice() else {
        return None;
    };
    let fields = term["matchFields"].as_array()?;
    fields.iter().find_map(|r| {
        let values = r["values"].as_array()?;
        match (r["key"].as_str(), r["operator"].as_str(), values.as_slice()) {
            (Some("metadata.name"), Some("In"), [node]) => node.as_str(),
            _ => None,
        }
    })
}

/// `podByCreationTimestampAndPhase`: bound Pods first, then the oldest, then by name.
fn scheduled_first(a: &Value, b: &Value) -> std::cmp::Ordering {
    let unbound = |p: &Value| p["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    unbound(a).cmp(&unbound(b)).then_with(|| by_creation(a, b))
}

/// Whether two values are the same stored object (by uid).
fn same(a: &Value, b: &Value) -> bool {
    a["metadata"]["uid"] == b["metadata"]["uid"]
}
