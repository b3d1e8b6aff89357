//! The deployment controller's part: a Deployment's ReplicaSets rolled out (`rolloutRolling`,
//! `rolloutRecreate`), scaled (`sync`'s `scale`, in proportion), cleaned up, and its status and
//! conditions, as `pkg/controller/deployment` does them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{
    ALPHANUMS, DEPLOYMENT_CONTROLLER, DEPLOYMENTS, REPLICA_SETS, REVISION, REVISION_HISTORY,
    TEMPLATE_HASH, Writes, by_creation, controller_reference, insert_counts, min_ready, name,
    namespace,
};
use crate::cluster::{parse_timestamp, timestamp};
use crate::gc;

/// The Deployment's part (`owned`: the ReplicaSets it controls), as the deployment controller's
/// `rolloutRolling` and `rolloutRecreate` do it, one step a pass: the new ReplicaSet is created
/// or scaled up within `maxSurge`, else the old ones are scaled down within `maxUnavailable`
/// (those with unavailable Pods first), so a rollout proceeds as the new Pods become available;
/// `Recreate` scales the old ones to zero and creates the new one once their Pods are gone.
/// Then the status sums the ReplicaSets', and the Progressing condition says whether the rollout
/// moved within `progressDeadlineSeconds`; returns when that deadline passes, if it may.
pub(super) fn deployment_pass(
    writes: &mut Writes<'_>,
    deployment: &Value,
    owned: &[&Value],
    now: DateTime<Utc>,
) -> Option<Duration> {
    let (Some(namespace), Some(name)) = (namespace(deployment), name(deployment)) else {
        return None;
    };
    let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let new = owned
        .iter()
        .copied()
        .find(|rs| rs["metadata"]["labels"][TEMPLATE_HASH].as_str() == Some(hash.as_str()));
    let mut old: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|rs| !new.is_some_and(|n| std::ptr::eq(*rs, n)))
        .collect();
    old.sort_by(|a, b| by_creation(a, b));
    // `getNewReplicaSet` keeps the new ReplicaSet's `minReadySeconds` the Deployment's, and its
    // revision the newest: a template that returns (`kubectl rollout undo`) takes its old
    // ReplicaSet back as revision max + 1, the revisions it had kept in
    // `deployment.kubernetes.io/revision-history` (`SetNewReplicaSetAnnotations`).
    let next_revision = old.iter().filter_map(|rs| revision(rs)).max().unwrap_or(0) + 1;
    if let Some(rs) = new {
        let mut body = rs.clone();
        let mut changed = false;
        if min_ready(rs) != min_ready(deployment) {
            body["spec"]["minReadySeconds"] = json!(min_ready(deployment));
            changed = true;
        }
        if let Some(was) = revision(rs).filter(|&was| was < next_revision) {
            let annotations = &mut body["metadata"]["annotations"];
            annotations[REVISION] = json!(next_revision.to_string());
            let history = match annotations[REVISION_HISTORY].as_str() {
                Some(kept) if !kept.is_empty() => format!("{kept},{was}"),
                _ => was.to_string(),
            };
            annotations[REVISION_HISTORY] = json!(history);
            changed = true;
        }
        if changed {
            writes.update("update", REPLICA_SETS, body);
        }
    }
    let recreate = deployment["spec"]["strategy"]["type"] == "Recreate";
    let (surge, unavailable) = fenceposts(deployment, wanted);
    let spec = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
    let available_of = |rs: &Value| rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
    let old_specs: i64 = old.iter().map(|rs| spec(rs)).sum();
    let paused = deployment["spec"]["paused"] == true;
    // `DeploymentComplete` of the status before this pass: when old ReplicaSets may be cleaned up.
    let was_complete = {
        let status = &deployment["status"];
        let count = |field: &str| status[field].as_i64().unwrap_or(0);
        count("updatedReplicas") == wanted
            && count("replicas") == wanted
            && count("availableReplicas") == wanted
            && status["observedGeneration"].as_i64()
                >= deployment["metadata"]["generation"].as_i64()
    };
    let mut scaled = false;
    let mut created = false;
    if paused || is_scaling_event(owned, wanted) {
        // `sync`: no rollout while paused, nor in the pass that follows a change of `replicas`.
        scaled = scale(writes, deployment, (new, &old), wanted, surge);
    } else if recreate {
        // `rolloutRecreate`: the old ones down first; the new one only once their Pods are gone.
        for rs in old.iter().filter(|rs| spec(rs) != 0) {
            scaled |= scale_with_event(writes, deployment, rs, 0);
        }
        let old_pods: i64 = old
            .iter()
            .map(|rs| rs["status"]["replicas"].as_i64().unwrap_or(0))
            .sum();
        if !scaled && old_pods == 0 {
            match new {
                None => {
                    create_new_replica_set(
                        writes,
                        deployment,
                        next_revision,
                        (namespace, name),
                        &hash,
                        wanted,
                    );
                    created = true;
                }
                Some(rs) if spec(rs) != wanted => {
                    scaled = scale_with_event(writes, deployment, rs, wanted);
                }
                Some(_) => {}
            }
        }
    } else {
        // `reconcileNewReplicaSet`: up to the wanted count, within `maxSurge` of all Pods.
        let grow = |current: i64, new_spec: i64| {
            let room = wanted + surge - current;
            if room <= 0 {
                new_spec
            } else {
                new_spec + room.min(wanted - new_spec)
            }
        };
        let new_spec;
        let new_available;
        (new_spec, new_available, scaled) = match new {
            None => {
                let size = grow(old_specs, 0);
                create_new_replica_set(
                    writes,
                    deployment,
                    next_revision,
                    (namespace, name),
                    &hash,
                    size,
                );
                created = true;
                (size, 0, false)
            }
            Some(rs) if spec(rs) > wanted => (
                spec(rs),
                available_of(rs),
                scale_with_event(writes, deployment, rs, wanted),
            ),
            Some(rs) if spec(rs) < wanted => {
                let size = grow(old_specs + spec(rs), spec(rs));
                let scaled = size != spec(rs) && scale_with_event(writes, deployment, rs, size);
                (spec(rs), available_of(rs), scaled)
            }
            Some(rs) => (spec(rs), available_of(rs), false),
        };
        if !scaled && old_specs > 0 {
            scaled = scale_down_old(
                writes,
                deployment,
                &old,
                (new_spec, new_available),
                wanted - unavailable,
            );
        }
    }
    if paused || (!scaled && was_complete) {
        clean_up(writes, deployment, &old);
    }
    // `SetDeploymentRevision`: the Deployment carries its new ReplicaSet's revision (what
    // `kubectl rollout undo` replaces along with the template). Its status follows in the pass
    // this write brings.
    let new_revision = if created {
        Some(next_revision)
    } else {
        new.and_then(revision).map(|r| r.max(next_revision))
    };
    if let Some(new_revision) = new_revision.map(|r| r.to_string())
        && deployment["metadata"]["annotations"][REVISION].as_str() != Some(new_revision.as_str())
    {
        let mut body = deployment.clone();
        body["metadata"]["annotations"][REVISION] = json!(new_revision);
        writes.update("update", DEPLOYMENTS, body);
        return None;
    }
    let count = |rs: &Value, field: &str| rs["status"][field].as_i64().unwrap_or(0);
    let sum = |field: &str| owned.iter().map(|rs| count(rs, field)).sum::<i64>();
    let replicas = sum("replicas");
    let updated = new.map_or(0, |rs| count(rs, "replicas"));
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let new_name = format!("{name}-{hash}");
    let complete = new.is_some() && updated == wanted && replicas == wanted && available == wanted;
    // `calculateStatus`: unavailable counts against the ReplicaSets' wanted sizes.
    let unavailable_replicas = (owned.iter().map(|rs| spec(rs)).sum::<i64>() - available).max(0);
    let old_status = &deployment["status"];
    let mut status = Map::new();
    status.insert(
        "observedGeneration".into(),
        deployment["metadata"]["generation"].clone(),
    );
    insert_counts(
        &mut status,
        [
            ("replicas", replicas),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", unavailable_replicas),
        ],
    );
    let available_condition = if available >= wanted - unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_owned(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_owned(),
        )
    };
    let at = timestamp(now);
    let (progressing, wake) = progressing(
        deployment,
        (paused, created, complete),
        (&status, &new_name),
        now,
    );
    let progressing = match progressing {
        Progressing::Keep(current) => current.clone(),
        Progressing::Set(reason) => condition(old_status, "Progressing", reason, &at, false),
        Progressing::Progressed(reason) => condition(old_status, "Progressing", reason, &at, true),
    };
    status.insert(
        "conditions".into(),
        json!([
            condition(old_status, "Available", available_condition, &at, false),
            progressing,
        ]),
    );
    writes.status(DEPLOYMENTS, deployment, Value::Object(status));
    wake
}

/// What becomes of a Deployment's Progressing condition in a pass.
pub(super) enum Progressing<'a> {
    /// Left as it is: no progress, and the deadline (if any) has not passed.
    Keep(&'a Value),
    /// Set to this status, reason and message (its times kept while they stay the same).
    Set((&'static str, &'static str, String)),
    /// Set, with `lastUpdateTime` now: the rollout moved.
    Progressed((&'static str, &'static str, String)),
}

/// The Progressing condition as the deployment controller keeps it: `checkPausedConditions`
/// (paused, resumed), `getNewReplicaSet` (created, found), then `syncRolloutStatus`: complete,
/// progressing (more updated, ready or available Pods, fewer old ones: `DeploymentProgressing`)
/// or, `progressDeadlineSeconds` after the last progress, `ProgressDeadlineExceeded`
/// (`DeploymentTimedOut`). Also returns how long until that deadline, while it can still pass.
pub(super) fn progressing<'a>(
    deployment: &'a Value,
    (paused, created, complete): (bool, bool, bool),
    (new_status, new_name): (&Map<String, Value>, &str),
    now: DateTime<Utc>,
) -> (Progressing<'a>, Option<Duration>) {
    let old_status = &deployment["status"];
    let current = old_status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing");
    let reason_of = |c: Option<&'a Value>| c.and_then(|c| c["reason"].as_str()).unwrap_or_default();
    if paused {
        let paused = (
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".to_owned(),
        );
        return (Progressing::Set(paused), None);
    }
    if complete {
        let message = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
        return (
            Progressing::Set(("True", "NewReplicaSetAvailable", message)),
            None,
        );
    }
    let old = |field: &str| old_status[field].as_i64().unwrap_or(0);
    let new = |field: &str| new_status.get(field).and_then(Value::as_i64).unwrap_or(0);
    let moved = new("updatedReplicas") > old("updatedReplicas")
        || new("replicas") - new("updatedReplicas") < old("replicas") - old("updatedReplicas")
        || new("readyReplicas") > old("readyReplicas")
        || new("availableReplicas") > old("availableReplicas");
    if moved {
        let message = format!("ReplicaSet \"{new_name}\" is progressing.");
        return (
            Progressing::Progressed(("True", "ReplicaSetUpdated", message)),
            None,
        );
    }
    if reason_of(current) == "DeploymentPaused" {
        let resumed = (
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".to_owned(),
        );
        return (Progressing::Progressed(resumed), None);
    }
    if created {
        let message = format!("Created new replica set \"{new_name}\"");
        return (
            Progressing::Progressed(("True", "NewReplicaSetCreated", message)),
            None,
        );
    }
    let Some(current) = current else {
        let message = format!("Found new replica set \"{new_name}\"");
        return (
            Progressing::Progressed(("True", "FoundNewReplicaSet", message)),
            None,
        );
    };
    // `DeploymentTimedOut`: none without a deadline, none once complete, and strictly after it.
    let deadline = deployment["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .filter(|&d| d != i64::from(i32::MAX));
    let since = current["lastUpdateTime"].as_str().and_then(parse_timestamp);
    match (deadline, since, reason_of(Some(current))) {
        (Some(deadline), Some(since), reason) if reason != "NewReplicaSetAvailable" => {
            let due = since + chrono::Duration::seconds(deadline);
            if reason == "ProgressDeadlineExceeded" || now > due {
                let message = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
                let timed_out = ("False", "ProgressDeadlineExceeded", message);
                (Progressing::Set(timed_out), None)
            } else {
                let wait = (due - now).to_std().unwrap_or_default() + Duration::from_secs(1);
                (Progressing::Keep(current), Some(wait))
            }
        }
        _ => (Progressing::Keep(current), None),
    }
}

/// `scaleReplicaSet`: the new size (and the Deployment's sizes in the annotations), then the
/// deployment controller's event saying so. Returns whether it was written.
pub(super) fn scale_with_event(
    writes: &mut Writes<'_>,
    deployment: &Value,
    rs: &Value,
    replicas: i64,
) -> bool {
    let from = rs["spec"]["replicas"].as_i64().unwrap_or(0);
    let mut body = rs.clone();
    body["spec"]["replicas"] = json!(replicas);
    set_replicas_annotations(&mut body, deployment);
    if body == *rs {
        return false;
    }
    let scaled = writes.update("scale", REPLICA_SETS, body) && from != replicas;
    if scaled {
        scaling_event(
            writes,
            deployment,
            name(rs).unwrap_or_default(),
            from,
            replicas,
        );
    }
    scaled
}

/// `isScalingEvent`: an active ReplicaSet records another `desired-replicas` than the
/// Deployment's `replicas` (it was scaled since that ReplicaSet was last sized).
pub(super) fn is_scaling_event(replica_sets: &[&Value], wanted: i64) -> bool {
    replica_sets.iter().any(|rs| {
        rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0
            && desired_replicas(rs).is_some_and(|desired| desired != wanted)
    })
}

/// A ReplicaSet's `deployment.kubernetes.io/desired-replicas`.
pub(super) fn desired_replicas(rs: &Value) -> Option<i64> {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"]
        .as_str()?
        .parse()
        .ok()
}

/// `sync`'s `scale`: the one active ReplicaSet (or, with none, the new one, else the newest old
/// one: `FindActiveOrLatest`) takes `replicas`; with several, a saturated new ReplicaSet leaves
/// the old ones none, else a rolling Deployment spreads the change over them in proportion to
/// their sizes (`GetReplicaSetProportion`), the largest first (newer first when scaling up,
/// older first when scaling down), the largest taking what rounding leaves. `old` is oldest first.
pub(super) fn scale(
    writes: &mut Writes<'_>,
    deployment: &Value,
    (new, old): (Option<&Value>, &[&Value]),
    wanted: i64,
    surge: i64,
) -> bool {
    let spec = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
    let mut active: Vec<&Value> = old
        .iter()
        .copied()
        .chain(new)
        .filter(|rs| spec(rs) > 0)
        .collect();
    if active.len() <= 1 {
        let latest = active.pop().or(new).or_else(|| old.last().copied());
        return match latest {
            Some(rs) if spec(rs) != wanted => scale_with_event(writes, deployment, rs, wanted),
            _ => false,
        };
    }
    // `IsSaturated`.
    if let Some(rs) = new
        && spec(rs) == wanted
        && desired_replicas(rs) == Some(wanted)
        && rs["status"]["availableReplicas"].as_i64().unwrap_or(0) == wanted
    {
        let mut scaled = false;
        for rs in old.iter().filter(|rs| spec(rs) > 0) {
            scaled |= scale_with_event(writes, deployment, rs, 0);
        }
        return scaled;
    }
    if deployment["spec"]["strategy"]["type"] == "Recreate" {
        return false;
    }
    let allowed = if wanted > 0 { wanted + surge } else { 0 };
    let to_add = allowed - active.iter().map(|rs| spec(rs)).sum::<i64>();
    if to_add != 0 {
        active.sort_by(|a, b| {
            spec(b).cmp(&spec(a)).then_with(|| {
                if to_add > 0 {
                    by_creation(b, a)
                } else {
                    by_creation(a, b)
                }
            })
        });
    }
    let status_replicas = deployment["status"]["replicas"].as_i64().unwrap_or(0);
    let mut added = 0;
    let mut sizes: Vec<i64> = active
        .iter()
        .map(|rs| {
            let size = spec(rs);
            if to_add == 0 || to_add == added {
                return size;
            }
            // `getReplicaSetFraction`: its share of the new maximum, against the maximum it was
            // sized for (the Deployment's replicas when it records none).
            let fraction = if wanted == 0 {
                -size
            } else {
                let before = rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"]
                    .as_str()
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(status_replicas);
                if before == 0 {
                    0
                } else {
                    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                    let resized = ((size * allowed) as f64 / before as f64).round() as i64;
                    resized - size
                }
            };
            let left = to_add - added;
            let proportion = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
            added += proportion;
            size + proportion
        })
        .collect();
    if let Some(largest) = sizes.first_mut().filter(|_| to_add != 0) {
        *largest = (*largest + to_add - added).max(0);
    }
    let mut scaled = false;
    for (rs, size) in active.iter().zip(sizes) {
        scaled |= scale_with_event(writes, deployment, rs, size);
    }
    scaled
}

/// The deployment controller's `ScalingReplicaSet` event about `deployment`.
pub(super) fn scaling_event(
    writes: &mut Writes<'_>,
    deployment: &Value,
    rs: &str,
    from: i64,
    to: i64,
) {
    let direction = if from < to { "up" } else { "down" };
    writes.event(
        deployment,
        DEPLOYMENT_CONTROLLER,
        "ScalingReplicaSet",
        format!("Scaled {direction} replica set {rs} from {from} to {to}"),
    );
}

/// `getNewReplicaSet`'s creation of the new ReplicaSet with `replicas`, and its event.
pub(super) fn create_new_replica_set(
    writes: &mut Writes<'_>,
    deployment: &Value,
    revision: u64,
    (namespace, name): (&str, &str),
    hash: &str,
    replicas: i64,
) {
    let replica_set = new_replica_set(deployment, namespace, name, hash, replicas, revision);
    if writes.create(REPLICA_SETS, namespace, replica_set) && replicas > 0 {
        scaling_event(writes, deployment, &format!("{name}-{hash}"), 0, replicas);
    }
}

/// `reconcileOldReplicaSets`: scale the old ReplicaSets (`old`, oldest first) down as far as
/// keeping `min_available` Pods available allows, counting the new ReplicaSet's (`spec`,
/// `available`) Pods not yet available as unavailable; those with unavailable Pods give them up
/// first (`cleanupUnhealthyReplicas`), then the oldest give up available ones
/// (`scaleDownOldReplicaSetsForRollingUpdate`).
pub(super) fn scale_down_old(
    writes: &mut Writes<'_>,
    deployment: &Value,
    old: &[&Value],
    (new_spec, new_available): (i64, i64),
    min_available: i64,
) -> bool {
    let spec = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
    let available_of = |rs: &Value| rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
    let all_pods: i64 = old.iter().map(|rs| spec(rs)).sum::<i64>() + new_spec;
    let max_scaled_down = all_pods - min_available - (new_spec - new_available);
    if max_scaled_down <= 0 {
        return false;
    }
    let mut sizes: Vec<i64> = old.iter().map(|rs| spec(rs)).collect();
    let mut cleaned = 0;
    for (rs, size) in old.iter().zip(sizes.iter_mut()) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = *size - available_of(rs);
        if *size == 0 || unhealthy == 0 {
            continue;
        }
        if unhealthy < 0 {
            // A status from before its last scaling (more available than wanted): the
            // controller's "invalid request to scale down" error; a later pass, after the
            // ReplicaSet's status has caught up, scales it.
            return false;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        *size -= down;
        cleaned += down;
    }
    let available: i64 = old.iter().map(|rs| available_of(rs)).sum::<i64>() + new_available;
    let mut budget = available - min_available;
    for size in &mut sizes {
        if budget <= 0 {
            break;
        }
        if *size == 0 {
            continue;
        }
        let down = (*size).min(budget);
        *size -= down;
        budget -= down;
    }
    let mut scaled = false;
    for (rs, size) in old.iter().zip(sizes) {
        if size != spec(rs) {
            scaled |= scale_with_event(writes, deployment, rs, size);
        }
    }
    scaled
}

/// `cleanupDeployment`: of the old ReplicaSets beyond `revisionHistoryLimit` (10 by default),
/// the oldest revisions are deleted, those scaled down to no Pods and observed.
pub(super) fn clean_up(writes: &mut Writes<'_>, deployment: &Value, old: &[&Value]) {
    let Some(limit) = deployment["spec"]["revisionHistoryLimit"].as_i64() else {
        return;
    };
    let mut cleanable: Vec<&Value> = old
        .iter()
        .copied()
        .filter(|rs| !gc::is_deleting(rs))
        .collect();
    let excess =
        usize::try_from(i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - limit).unwrap_or(0);
    cleanable.sort_by_key(|rs| revision(rs).unwrap_or(0));
    for rs in cleanable.into_iter().take(excess) {
        let idle = rs["status"]["replicas"].as_i64().unwrap_or(0) == 0
            && rs["spec"]["replicas"].as_i64().unwrap_or(0) == 0
            && rs["metadata"]["generation"].as_i64() <= rs["status"]["observedGeneration"].as_i64();
        if idle {
            writes.delete(REPLICA_SETS, rs);
        }
    }
}

/// The new ReplicaSet of a Deployment: its template and selector with the template's hash.
pub(super) fn new_replica_set(
    deployment: &Value,
    namespace: &str,
    name: &str,
    hash: &str,
    replicas: i64,
    revision: u64,
) -> Value {
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["labels"][TEMPLATE_HASH] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][TEMPLATE_HASH] = json!(hash);
    let mut replica_set = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": namespace,
            "labels": template["metadata"]["labels"].clone(),
            "annotations": {REVISION: revision.to_string()},
            "ownerReferences": [controller_reference(deployment, "apps/v1", "Deployment")],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    });
    set_replicas_annotations(&mut replica_set, deployment);
    if min_ready(deployment) > 0 {
        replica_set["spec"]["minReadySeconds"] = json!(min_ready(deployment));
    }
    replica_set
}

/// `SetReplicasAnnotations`: a Deployment's ReplicaSet records the Deployment's `replicas` and
/// the most Pods its rollout may run (`replicas` + `maxSurge`), whatever its own size.
pub(super) fn set_replicas_annotations(replica_set: &mut Value, deployment: &Value) {
    let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let (surge, _) = fenceposts(deployment, wanted);
    let annotations = &mut replica_set["metadata"]["annotations"];
    annotations["deployment.kubernetes.io/desired-replicas"] = json!(wanted.to_string());
    annotations["deployment.kubernetes.io/max-replicas"] = json!((wanted + surge).to_string());
}

/// A condition of a Deployment's status, keeping its times while its status, reason and message
/// stay the same (so a pass that changes nothing writes nothing).
pub(super) fn condition(
    old_status: &Value,
    kind: &str,
    (status, reason, message): (&str, &str, String),
    at: &str,
    progressed: bool,
) -> Value {
    let old = old_status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind);
    let same = |field: &str, value: &str| old.is_some_and(|c| c[field].as_str() == Some(value));
    let time = at;
    let transition = match old {
        Some(c) if same("status", status) => c["lastTransitionTime"].clone(),
        _ => json!(time),
    };
    let update = match old {
        Some(c)
            if !progressed
                && same("status", status)
                && same("reason", reason)
                && same("message", &message) =>
        {
            c["lastUpdateTime"].clone()
        }
        _ => json!(time),
    };
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": update,
        "lastTransitionTime": transition,
    })
}

/// `maxSurge` and `maxUnavailable` of a Deployment as counts of `replicas`, as
/// `ResolveFenceposts` resolves them: 25 % each by default, a percentage of surge rounding up
/// and of unavailable down, at least one unavailable when both are 0, unavailable at most
/// `replicas`; both 0 for `Recreate` and for no replicas (`MaxUnavailable`, `MaxSurge`).
pub(super) fn fenceposts(deployment: &Value, replicas: i64) -> (i64, i64) {
    let strategy = &deployment["spec"]["strategy"];
    if strategy["type"] == "Recreate" || replicas <= 0 {
        return (0, 0);
    }
    let scaled = |value: &Value, round_up: bool| match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| {
                let exact = replicas * p;
                if round_up {
                    (exact + 99) / 100
                } else {
                    exact / 100
                }
            }),
        _ => {
            let exact = replicas * 25;
            if round_up {
                (exact + 99) / 100
            } else {
                exact / 100
            }
        }
    };
    let rolling = &strategy["rollingUpdate"];
    let surge = scaled(&rolling["maxSurge"], true);
    let mut unavailable = scaled(&rolling["maxUnavailable"], false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// The hash of a Pod template, written as apimachinery's `SafeEncodeString` writes one: FNV-1a
/// of the template's JSON (sorted keys), its decimal digits mapped onto [`ALPHANUMS`].
#[must_use]
pub(super) fn template_hash(template: &Value) -> String {
    let text = template.to_string();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// A ReplicaSet's `deployment.kubernetes.io/revision`.
pub(super) fn revision(replica_set: &Value) -> Option<u64> {
    replica_set["metadata"]["annotations"][REVISION]
        .as_str()?
        .parse()
        .ok()
}
