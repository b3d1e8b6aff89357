//! Simulated workloads (opt-in, `ApiServerBuilder::simulate_workloads`): a Deployment gets a
//! ReplicaSet, the ReplicaSet its Pods, every Pod the default scheduler would place is bound to
//! the one simulated Node, and becomes Running and Ready after a short delay, as
//! kube-controller-manager's deployment and replica set controllers, kube-scheduler and a kubelet
//! (or kwok, with its fake node) would make them; the statuses follow, so `kubectl rollout status`
//! finishes and a controller waiting for available replicas sees them.
//!
//! It is a controller like theirs: each pass reads the objects, and writes through the same verbs
//! as any client (optimistic concurrency, field manager `kube-controller-manager`) only what
//! differs from what it wants, so a pass that finds nothing to do writes nothing. A conflict with
//! another writer is left to the next pass. Rollouts replace the old ReplicaSet at once (scaled to
//! zero when the new one is created) instead of surging step by step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::cluster::{Cluster, now, parse_timestamp, timestamp};
use crate::error::ApiError;
use crate::gc;
use crate::verbs::{DeleteOptions, Target, WriteOptions};

/// The storage key of Deployments.
const DEPLOYMENTS: &str = "deployments.apps";
/// The storage key of ReplicaSets.
const REPLICA_SETS: &str = "replicasets.apps";
/// Jobs.
const JOBS: &str = "jobs.batch";
/// StatefulSets.
const STATEFUL_SETS: &str = "statefulsets.apps";
/// The storage key of Pods.
const PODS: &str = "pods";
/// ControllerRevisions, a StatefulSet's history of templates.
const CONTROLLER_REVISIONS: &str = "controllerrevisions.apps";
/// PersistentVolumeClaims, which a StatefulSet's `volumeClaimTemplates` make.
const CLAIMS: &str = "persistentvolumeclaims";
/// The storage key of Nodes.
const NODES: &str = "nodes";
/// The storage key of Leases.
const LEASES: &str = "leases.coordination.k8s.io";
/// Where kubelets keep their node Leases.
const NODE_LEASES: &str = "kube-node-lease";
/// The simulated Node every scheduled Pod runs on.
pub const NODE: &str = "capstan-node";
/// Its address, the `hostIP` of its Pods.
const NODE_IP: &str = "10.0.0.1";
/// The scheduler a Pod names unless it names another (`DefaultSchedulerName`); Pods naming
/// another wait for it, as on a cluster without that scheduler.
const SCHEDULER: &str = "default-scheduler";
/// Where the controllers' Events go (core v1, as client-go's event recorder writes them).
const EVENTS: &str = "events";
/// The deployment controller's event source.
const DEPLOYMENT_CONTROLLER: &str = "deployment-controller";
/// The replica set controller's event source.
const REPLICA_SET_CONTROLLER: &str = "replicaset-controller";
/// The job controller's name in the Events it records.
const JOB_CONTROLLER: &str = "job-controller";
/// The stateful set controller's name in the Events it records.
const STATEFUL_SET_CONTROLLER: &str = "statefulset-controller";
/// The label naming the revision (`NAME-HASH`) of a StatefulSet's Pod.
const REVISION_HASH: &str = "controller-revision-hash";
/// A Deployment's ReplicaSet's revision, which `kubectl rollout history` lists.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions of a ReplicaSet taken back by a rollback, comma-separated.
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The field manager of the writes, as kube-controller-manager's.
const MANAGER: &str = "kube-controller-manager";
/// The label a ReplicaSet and its Pods carry with the hash of their Pod template.
const TEMPLATE_HASH: &str = "pod-template-hash";
/// The characters of generated names and hashes (apimachinery's `rand` alphabet).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// How long a new Pod stays Pending before it is Running and Ready, unless configured.
pub const DEFAULT_POD_READY_DELAY: Duration = Duration::from_secs(1);

/// Runs passes until `shutdown` turns true: after every change of the store, and when a Pending
/// Pod is due to become Ready.
///
/// The root CA publisher ([`crate::root_ca`]) runs with them, publishing `ca` (PEM).
pub async fn run(
    cluster: Arc<Cluster>,
    ready_delay: Duration,
    ca: Arc<str>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = cluster.subscribe();
    loop {
        crate::root_ca::pass(&cluster, &ca, &mut Writes::new(&cluster));
        let due = pass(&cluster, ready_delay, Utc::now());
        let wake = async {
            match due {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = wake => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass over Deployments, ReplicaSets and Pods at `now`. Returns how long until the next
/// Pending Pod is due to become Ready, if any.
fn pass(cluster: &Cluster, ready_delay: Duration, now: DateTime<Utc>) -> Option<Duration> {
    let (deployments, replica_sets, jobs, stateful_sets, revisions, pods) = {
        let inner = cluster.lock();
        let read = |gr: &str| -> Vec<Arc<Value>> {
            inner
                .store
                .list(gr, None, None)
                .map(|(_, o)| o.clone())
                .filter(|o| !gc::is_deleting(o))
                .collect()
        };
        (
            read(DEPLOYMENTS),
            read(REPLICA_SETS),
            read(JOBS),
            read(STATEFUL_SETS),
            read(CONTROLLER_REVISIONS),
            read(PODS),
        )
    };
    let mut writes = Writes::new(cluster);
    let (node, lease) = {
        let inner = cluster.lock();
        let node = inner
            .store
            .get(NODES, &(String::new(), NODE.to_owned()))
            .cloned();
        let lease = inner
            .store
            .get(LEASES, &(NODE_LEASES.to_owned(), NODE.to_owned()))
            .is_some();
        (node, lease)
    };
    // The scheduler's `NodeUnschedulable` filter: a cordoned node takes no new Pods.
    let schedulable = match node {
        Some(node) => {
            if !lease {
                writes.create(LEASES, NODE_LEASES, node_lease(&node));
            }
            node["spec"]["unschedulable"] != true && !gc::is_deleting(&node)
        }
        None => writes.create(NODES, "", simulated_node()),
    };
    // Each ReplicaSet and Pod under its controller, once: a pass stays linear in the objects.
    let sets_of = by_controller(&replica_sets);
    let pods_of = by_controller(&pods);
    let revisions_of = by_controller(&revisions);
    let mut next: Option<Duration> = None;
    let mut wake_in = |wait: Duration| next = Some(next.map_or(wait, |n| n.min(wait)));
    for deployment in &deployments {
        let owned = controlled(&sets_of, deployment);
        if let Some(wait) = deployment_pass(&mut writes, deployment, &owned, now) {
            wake_in(wait);
        }
    }
    for replica_set in &replica_sets {
        let owned = controlled(&pods_of, replica_set);
        if let Some(wait) = replica_set_pass(&mut writes, replica_set, owned, now) {
            wake_in(wait);
        }
    }
    for job in &jobs {
        if let Some(wait) = job_pass(&mut writes, job, &controlled(&pods_of, job), now) {
            wake_in(wait);
        }
        if let Some(expires) = ttl_expiry(job) {
            if expires <= now {
                // The TTL-after-finished controller's delete: Foreground, on the Job's uid.
                writes.delete_with(JOBS, job, Some(gc::Propagation::Foreground));
            } else {
                wake_in((expires - now).to_std().unwrap_or_default());
            }
        }
    }
    for set in &stateful_sets {
        let owned = (controlled(&pods_of, set), controlled(&revisions_of, set));
        if let Some(wait) = stateful_set_pass(&mut writes, set, (&owned.0, &owned.1), now) {
            wake_in(wait);
        }
    }
    for pod in &pods {
        match pod["status"]["phase"].as_str() {
            Some("Succeeded" | "Failed") => continue,
            // A Job's Pod (restart policy Never or OnFailure) runs for as long again, then its
            // containers exit 0, as kwok's pod-complete stage has it.
            Some("Running") => {
                if runs_to_completion(pod) {
                    let due = created_at(pod).unwrap_or(now) + ready_delay * 2;
                    if due <= now {
                        writes.status(PODS, pod, succeeded_status(pod, now));
                    } else {
                        wake_in((due - now).to_std().unwrap_or_default());
                    }
                }
                continue;
            }
            _ => {}
        }
        if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
            if schedulable
                && pod["spec"]["schedulerName"].as_str().unwrap_or(SCHEDULER) == SCHEDULER
            {
                bind(&mut writes, pod);
            }
            continue;
        }
        let created = created_at(pod).unwrap_or(now);
        let due = created + ready_delay;
        if due <= now {
            if writes.status(PODS, pod, running_status(pod, now)) {
                started(&mut writes, pod);
            }
        } else {
            // The kubelet's first status: its containers being created.
            if pod["status"].get("containerStatuses").is_none() {
                writes.status(PODS, pod, creating_status(pod, now));
            }
            wake_in((due - now).to_std().unwrap_or_default());
        }
    }
    next.map(|n| n.max(Duration::from_millis(20)))
}

/// The Deployment's part (`owned`: the ReplicaSets it controls), as the deployment controller's
/// `rolloutRolling` and `rolloutRecreate` do it, one step a pass: the new ReplicaSet is created
/// or scaled up within `maxSurge`, else the old ones are scaled down within `maxUnavailable`
/// (those with unavailable Pods first), so a rollout proceeds as the new Pods become available;
/// `Recreate` scales the old ones to zero and creates the new one once their Pods are gone.
/// Then the status sums the ReplicaSets', and the Progressing condition says whether the rollout
/// moved within `progressDeadlineSeconds`; returns when that deadline passes, if it may.
fn deployment_pass(
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
    for (field, value) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable_replicas),
    ] {
        // Zero counts are omitted, as Go's omitempty does.
        if value != 0 {
            status.insert(field.into(), json!(value));
        }
    }
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
enum Progressing<'a> {
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
fn progressing<'a>(
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
fn scale_with_event(
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
fn is_scaling_event(replica_sets: &[&Value], wanted: i64) -> bool {
    replica_sets.iter().any(|rs| {
        rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0
            && desired_replicas(rs).is_some_and(|desired| desired != wanted)
    })
}

/// A ReplicaSet's `deployment.kubernetes.io/desired-replicas`.
fn desired_replicas(rs: &Value) -> Option<i64> {
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
fn scale(
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
fn scaling_event(writes: &mut Writes<'_>, deployment: &Value, rs: &str, from: i64, to: i64) {
    let direction = if from < to { "up" } else { "down" };
    writes.event(
        deployment,
        DEPLOYMENT_CONTROLLER,
        "ScalingReplicaSet",
        format!("Scaled {direction} replica set {rs} from {from} to {to}"),
    );
}

/// `getNewReplicaSet`'s creation of the new ReplicaSet with `replicas`, and its event.
fn create_new_replica_set(
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
fn scale_down_old(
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
fn clean_up(writes: &mut Writes<'_>, deployment: &Value, old: &[&Value]) {
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

/// The ReplicaSet's part (`owned`: the Pods it controls): as many Pods as it wants (the newest
/// removed first), and its status counting them.
fn replica_set_pass(
    writes: &mut Writes<'_>,
    replica_set: &Value,
    mut owned: Vec<&Value>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let namespace = namespace(replica_set)?;
    let wanted = replica_set["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    owned.sort_by(|a, b| by_creation(a, b));
    let have = i64::try_from(owned.len()).unwrap_or(i64::MAX);
    for _ in have..wanted {
        let pod = new_pod(replica_set, namespace, ("apps/v1", "ReplicaSet"));
        let pod_name = name(&pod).unwrap_or_default().to_owned();
        if writes.create(PODS, namespace, pod) {
            let message = format!("Created pod: {pod_name}");
            writes.event(
                replica_set,
                REPLICA_SET_CONTROLLER,
                "SuccessfulCreate",
                message,
            );
        }
    }
    let keep = usize::try_from(wanted)
        .unwrap_or(usize::MAX)
        .min(owned.len());
    for extra in owned.drain(keep..) {
        if writes.delete(PODS, extra) {
            let message = format!("Deleted pod: {}", name(extra).unwrap_or_default());
            writes.event(
                replica_set,
                REPLICA_SET_CONTROLLER,
                "SuccessfulDelete",
                message,
            );
        }
    }
    let ready = i64::try_from(owned.iter().filter(|p| is_ready(p)).count()).unwrap_or(0);
    let (available, wake) = availability(&owned, min_ready(replica_set), now);
    let replicas = i64::try_from(owned.len()).unwrap_or(0);
    let mut status = Map::new();
    status.insert("replicas".into(), json!(replicas));
    for (field, value) in [
        ("fullyLabeledReplicas", replicas),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        if value != 0 {
            status.insert(field.into(), json!(value));
        }
    }
    status.insert(
        "observedGeneration".into(),
        replica_set["metadata"]["generation"].clone(),
    );
    writes.status(REPLICA_SETS, replica_set, Value::Object(status));
    wake
}

/// `spec.minReadySeconds` of a ReplicaSet, Deployment or StatefulSet.
fn min_ready(object: &Value) -> i64 {
    object["spec"]["minReadySeconds"]
        .as_i64()
        .unwrap_or(0)
        .max(0)
}

/// How many of `pods` are available (`IsPodAvailable`: Ready, for longer than `min_ready`
/// seconds), and how long until the next ready one becomes available.
fn availability(pods: &[&Value], min_ready: i64, now: DateTime<Utc>) -> (i64, Option<Duration>) {
    let mut available = 0;
    let mut wake: Option<Duration> = None;
    for pod in pods.iter().filter(|p| is_ready(p)) {
        let since = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| parse_timestamp(c["lastTransitionTime"].as_str()?));
        let at = since.map(|t| t + chrono::Duration::seconds(min_ready));
        match at {
            _ if min_ready == 0 => available += 1,
            Some(at) if at < now => available += 1,
            Some(at) => {
                let wait = (at - now).to_std().unwrap_or_default() + Duration::from_millis(10);
                wake = Some(wake.map_or(wait, |w| w.min(wait)));
            }
            None => {}
        }
    }
    (available, wake)
}

/// The Job's part (`owned`: the Pods it controls), for a Job not finished: as many Pods running
/// as its parallelism and the completions still wanted allow, its status counting them, and once
/// enough succeeded, `SuccessCriteriaMet` and `Complete`; suspended, none running and the
/// `Suspended` condition, resumed, that condition False and its start time reset.
fn job_pass(
    writes: &mut Writes<'_>,
    job: &Value,
    owned: &[&Value],
    now: DateTime<Utc>,
) -> Option<Duration> {
    let namespace = namespace(job)?;
    let spec = &job["spec"];
    if finished_condition(job).is_some() {
        return None;
    }
    let suspended = spec["suspend"] == true;
    let phase = |p: &&Value| p["status"]["phase"].as_str().map(str::to_owned);
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let succeeded = count(
        owned
            .iter()
            .filter(|p| phase(p).as_deref() == Some("Succeeded"))
            .count(),
    );
    let mut active: Vec<&&Value> = owned
        .iter()
        .filter(|p| !matches!(phase(p).as_deref(), Some("Succeeded" | "Failed")))
        .collect();
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    // An Indexed Job counts the indexes that succeeded (`calculateSucceededIndexes`), those of
    // earlier passes kept in `completedIndexes`, and wants each index below `completions` once.
    let indexed = spec["completionMode"] == "Indexed";
    let completions = spec["completions"].as_i64();
    let mut completed = Intervals::default();
    let mut surplus = Vec::new();
    let succeeded = match completions.filter(|_| indexed) {
        Some(completions) => {
            completed = Intervals::parse(
                job["status"]["completedIndexes"].as_str().unwrap_or(""),
                completions,
            );
            for pod in owned {
                if phase(pod).as_deref() == Some("Succeeded")
                    && let Some(index) = completion_index(pod).filter(|i| *i < completions)
                {
                    completed.insert(index);
                }
            }
            // `appendDuplicatedIndexPodsForRemoval`: an active Pod without an index, beyond
            // `completions` or repeating another's index goes.
            let mut seen = HashSet::new();
            active.retain(|pod| {
                let keep = completion_index(pod).is_some_and(|i| i < completions && seen.insert(i));
                if !keep {
                    surplus.push(**pod);
                }
                keep
            });
            completed.total()
        }
        None => succeeded,
    };
    // With completions, that many Pods must succeed; without (a work queue), one success ends
    // the Job once the others are done.
    let complete = match completions {
        Some(completions) => succeeded >= completions,
        None => succeeded > 0 && active.is_empty(),
    };
    let wanted = match completions {
        _ if suspended => 0,
        Some(completions) => parallelism.min(completions - succeeded).max(0),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    let time = timestamp(now);
    let old = &job["status"];
    let mut conditions: Vec<Value> = old["conditions"].as_array().cloned().unwrap_or_default();
    let mut start = old.get("startTime").cloned();
    // Suspending deletes the active Pods; resuming starts the clock again (`syncJob`).
    let mut deleted = 0;
    if suspended {
        for pod in &active {
            if writes.delete(PODS, pod) {
                deleted += 1;
                let message = format!("Deleted pod: {}", name(pod).unwrap_or_default());
                writes.event(job, JOB_CONTROLLER, "SuccessfulDelete", message);
            }
        }
        let condition = ("True", "JobSuspended", "Job suspended");
        if ensure_condition(&mut conditions, "Suspended", condition, &time) {
            writes.event(job, JOB_CONTROLLER, "Suspended", "Job suspended".to_owned());
        }
    } else {
        let condition = ("False", "JobResumed", "Job resumed");
        if ensure_condition(&mut conditions, "Suspended", condition, &time) {
            writes.event(job, JOB_CONTROLLER, "Resumed", "Job resumed".to_owned());
            start = Some(json!(time));
        }
        start.get_or_insert_with(|| json!(time));
    }
    // `pastActiveDeadline`: the Job fails, its active Pods deleted (and counted as failed).
    let deadline = spec["activeDeadlineSeconds"]
        .as_i64()
        .filter(|_| !suspended)
        .and_then(|seconds| {
            let started = parse_timestamp(start.as_ref()?.as_str()?)?;
            Some(started + chrono::Duration::seconds(seconds))
        });
    let past_deadline = !complete && deadline.is_some_and(|d| d <= now);
    let mut failed = 0;
    if past_deadline {
        for pod in &active {
            if writes.delete(PODS, pod) {
                failed += 1;
                let message = format!("Deleted pod: {}", name(pod).unwrap_or_default());
                writes.event(job, JOB_CONTROLLER, "SuccessfulDelete", message);
            }
        }
    }
    let wanted = if past_deadline { 0 } else { wanted };
    for pod in &surplus {
        if writes.delete(PODS, pod) {
            let message = format!("Deleted pod: {}", name(pod).unwrap_or_default());
            writes.event(job, JOB_CONTROLLER, "SuccessfulDelete", message);
        }
    }
    let missing = usize::try_from(wanted - count(active.len())).unwrap_or(0);
    let new_pods: Vec<Value> = match completions.filter(|_| indexed) {
        Some(completions) => {
            let taken = active.iter().filter_map(|p| completion_index(p)).collect();
            completed
                .first_pending(taken, missing, completions)
                .into_iter()
                .map(|index| indexed_pod(job, namespace, index))
                .collect()
        }
        None => (0..missing)
            .map(|_| new_pod(job, namespace, ("batch/v1", "Job")))
            .collect(),
    };
    let mut created = 0;
    for pod in new_pods {
        let pod_name = name(&pod).unwrap_or_default().to_owned();
        if writes.create(PODS, namespace, pod) {
            created += 1;
            writes.event(
                job,
                JOB_CONTROLLER,
                "SuccessfulCreate",
                format!("Created pod: {pod_name}"),
            );
        }
    }
    let mut status = Map::new();
    if let Some(start) = start {
        status.insert("startTime".into(), start);
    }
    let active_now = count(active.len()) - deleted - failed + created;
    if active_now > 0 && !complete {
        status.insert("active".into(), json!(active_now));
    }
    if succeeded > 0 {
        status.insert("succeeded".into(), json!(succeeded));
    }
    if !completed.0.is_empty() {
        status.insert("completedIndexes".into(), json!(completed.to_string()));
    }
    if failed > 0 {
        status.insert("failed".into(), json!(failed));
    }
    let ready = count(active.iter().filter(|p| is_ready(p)).count());
    status.insert(
        "ready".into(),
        json!(if complete || suspended || past_deadline {
            0
        } else {
            ready
        }),
    );
    status.insert("terminating".into(), json!(0));
    status.insert("uncountedTerminatedPods".into(), json!({}));
    if complete {
        let reached = (
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        ensure_condition(&mut conditions, "SuccessCriteriaMet", reached, &time);
        ensure_condition(&mut conditions, "Complete", reached, &time);
        status.insert("completionTime".into(), json!(time));
    }
    const DEADLINE: (&str, &str, &str) = (
        "True",
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    );
    if past_deadline {
        // `FailureTarget` first, `Failed` once the Pods are gone: here in one write.
        ensure_condition(&mut conditions, "FailureTarget", DEADLINE, &time);
        ensure_condition(&mut conditions, "Failed", DEADLINE, &time);
    }
    if !conditions.is_empty() {
        status.insert("conditions".into(), json!(conditions));
    }
    if writes.status(JOBS, job, Value::Object(status)) {
        // `recordJobFinished`.
        if complete {
            writes.event(job, JOB_CONTROLLER, "Completed", "Job completed".to_owned());
        } else if past_deadline {
            writes.warning(job, JOB_CONTROLLER, DEADLINE.1, DEADLINE.2.to_owned());
        }
    }
    // `syncJob` looks again when the deadline comes.
    deadline
        .filter(|_| !past_deadline && !complete)
        .map(|d| (d - now).to_std().unwrap_or_default())
}

/// A finished Job's `Complete` or `Failed` condition (True), if it has one (`IsJobFinished`).
fn finished_condition(job: &Value) -> Option<&Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| {
        matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
    })
}

/// When a finished Job's `ttlSecondsAfterFinished` runs out (the TTL-after-finished controller's
/// `processTTL`): that many seconds after its `Complete` or `Failed` condition turned True.
fn ttl_expiry(job: &Value) -> Option<DateTime<Utc>> {
    let ttl = job["spec"]["ttlSecondsAfterFinished"].as_i64()?;
    let finished = finished_condition(job)?;
    let at = parse_timestamp(finished["lastTransitionTime"].as_str()?)?;
    Some(at + chrono::Duration::seconds(ttl))
}

/// `ensureJobConditionStatus`: the condition `kind` of `conditions` at `(status, reason,
/// message)`, changed (with its times) only when its status changes; a condition that is not
/// there is added only as True. Returns whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    (status, reason, message): (&str, &str, &str),
    time: &str,
) -> bool {
    let condition = json!({"type": kind, "status": status, "reason": reason, "message": message,
        "lastProbeTime": time, "lastTransitionTime": time});
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == status => false,
        Some(c) => {
            *c = condition;
            true
        }
        None if status == "True" => {
            conditions.push(condition);
            true
        }
        None => false,
    }
}

/// The StatefulSet's part (`owned`: the Pods it controls), as the stateful set controller does it
/// for `OrderedReady` (the default) and `Parallel` Pod management: Pods `NAME-0` to
/// `NAME-(replicas-1)`, created in order, each only once the ones before it are Running and Ready
/// (all at once for `Parallel`); the highest ordinals removed first on scale down; on a new
/// template (the `RollingUpdate` strategy), the highest-ordinal Pod of the old revision deleted
/// while every other is Ready, to be created again at the new one; the status counting them.
/// `owned`: the Pods and the ControllerRevisions it controls.
fn stateful_set_pass(
    writes: &mut Writes<'_>,
    set: &Value,
    (owned, revisions): (&[&Value], &[&Value]),
    now: DateTime<Utc>,
) -> Option<Duration> {
    let (namespace, set_name) = (namespace(set)?, name(set)?);
    let spec = &set["spec"];
    let wanted = spec["replicas"].as_i64().unwrap_or(1).max(0);
    let mut revisions = revisions.to_vec();
    revisions.sort_by(|a, b| {
        a["revision"]
            .as_i64()
            .cmp(&b["revision"].as_i64())
            .then_with(|| by_creation(a, b))
    });
    let update_revision = update_revision(writes, set, &revisions)?;
    let ordinal = |pod: &Value| {
        name(pod)?
            .strip_prefix(set_name)?
            .strip_prefix('-')?
            .parse::<i64>()
            .ok()
    };
    let mut pods: Vec<(i64, &Value)> = owned
        .iter()
        .filter_map(|p| Some((ordinal(p)?, *p)))
        .collect();
    pods.sort_by_key(|(i, _)| *i);
    let parallel = spec["podManagementPolicy"].as_str() == Some("Parallel");
    let revision_of = |pod: &Value| {
        pod["metadata"]["labels"][REVISION_HASH]
            .as_str()
            .map(str::to_owned)
    };
    let event = |writes: &mut Writes<'_>, verb: &str, pod: &str| {
        let reason = if verb == "create" {
            "SuccessfulCreate"
        } else {
            "SuccessfulDelete"
        };
        writes.event(
            set,
            STATEFUL_SET_CONTROLLER,
            reason,
            format!("{verb} Pod {pod} in StatefulSet {set_name} successful"),
        );
    };
    let rolling = spec["updateStrategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    // Ordinals below the partition keep their revision.
    let partition = spec["updateStrategy"]["rollingUpdate"]["partition"]
        .as_i64()
        .unwrap_or(0);
    // `newVersionedStatefulSetPod`: a Pod below the partition is made again at the current
    // revision, from the template its ControllerRevision records.
    let current_set = set["status"]["currentRevision"]
        .as_str()
        .filter(|current| *current != update_revision)
        .and_then(|current| revisions.iter().find(|r| name(r) == Some(current)))
        .and_then(|revision| {
            let mut template = revision["data"]["spec"]["template"].clone();
            template.as_object_mut()?.remove("$patch");
            let mut at_revision = set.clone();
            at_revision["spec"]["template"] = template;
            Some((at_revision, name(revision)?.to_owned()))
        });
    // Missing ordinals, in order; OrderedReady stops at the first Pod not Running and Ready.
    let mut all_ready_so_far = true;
    for i in 0..wanted {
        match pods.iter().find(|(o, _)| *o == i) {
            Some((_, pod)) => all_ready_so_far &= is_ready(pod),
            None if parallel || all_ready_so_far => {
                let (source, revision) = match &current_set {
                    Some((at_revision, revision)) if rolling && i < partition => {
                        (at_revision, revision.as_str())
                    }
                    _ => (set, update_revision.as_str()),
                };
                let pod = stateful_pod(source, namespace, set_name, i, revision);
                let pod_name = format!("{set_name}-{i}");
                // `createPersistentVolumeClaims`: the Pod's claims first, those not there yet;
                // no Pod while one cannot be made.
                let mut claimed = true;
                for claim in claims(set, namespace, set_name, i) {
                    let claim_name = claim["metadata"]["name"].as_str().unwrap_or_default();
                    if writes.exists(CLAIMS, namespace, claim_name) {
                        continue;
                    }
                    let message = format!(
                        "create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"
                    );
                    if writes.create(CLAIMS, namespace, claim) {
                        writes.event(set, STATEFUL_SET_CONTROLLER, "SuccessfulCreate", message);
                    } else {
                        claimed = false;
                    }
                }
                if claimed && writes.create(PODS, namespace, pod) {
                    event(writes, "create", &pod_name);
                }
                all_ready_so_far = false;
            }
            None => break,
        }
    }
    // `UpdatePodClaimForRetentionPolicy`, for every Pod, those about to go included.
    for (ordinal, pod) in &pods {
        for claim in claims(set, namespace, set_name, *ordinal) {
            let claim_name = claim["metadata"]["name"].as_str().unwrap_or_default();
            if let Some(stored) = writes.get(CLAIMS, namespace, claim_name)
                && let Some(body) = claim_owned_for_retention(set, pod, *ordinal >= wanted, &stored)
            {
                writes.update("update", CLAIMS, body);
            }
        }
    }
    // Scale down from the highest ordinal, one at a time unless Parallel.
    let extra: Vec<&(i64, &Value)> = pods.iter().rev().filter(|(i, _)| *i >= wanted).collect();
    for (_, pod) in extra.iter().take(if parallel { usize::MAX } else { 1 }) {
        if writes.delete(PODS, pod) {
            event(writes, "delete", name(pod).unwrap_or_default());
        }
    }
    let current: Vec<&(i64, &Value)> = pods.iter().filter(|(i, _)| *i < wanted).collect();
    let all_ready = current.len() == usize::try_from(wanted).unwrap_or(0)
        && current.iter().all(|(_, p)| is_ready(p));
    if rolling
        && all_ready
        && extra.is_empty()
        && let Some((_, stale)) = current.iter().rev().find(|(i, p)| {
            *i >= partition && revision_of(p).as_deref() != Some(update_revision.as_str())
        })
        && writes.delete(PODS, stale)
    {
        event(writes, "delete", name(stale).unwrap_or_default());
    }
    let count = |f: &dyn Fn(&Value) -> bool| {
        i64::try_from(current.iter().filter(|(_, p)| f(p)).count()).unwrap_or(0)
    };
    let replicas = i64::try_from(current.len()).unwrap_or(0);
    let ready = count(&|p| is_ready(p));
    let updated = count(&|p| revision_of(p).as_deref() == Some(update_revision.as_str()));
    // The current revision moves to the update revision once every Pod runs it.
    let current_revision = if updated == wanted && replicas == wanted {
        update_revision.clone()
    } else {
        set["status"]["currentRevision"]
            .as_str()
            .map_or_else(|| update_revision.clone(), str::to_owned)
    };
    let current_replicas = count(&|p| revision_of(p).as_deref() == Some(current_revision.as_str()));
    let mut status = Map::new();
    status.insert(
        "observedGeneration".into(),
        set["metadata"]["generation"].clone(),
    );
    status.insert("replicas".into(), json!(replicas));
    for (field, value) in [
        ("readyReplicas", ready),
        ("currentReplicas", current_replicas),
        ("updatedReplicas", updated),
    ] {
        if value != 0 {
            status.insert(field.into(), json!(value));
        }
    }
    let current_pods: Vec<&Value> = current.iter().map(|(_, p)| *p).collect();
    let (available, wake) = availability(&current_pods, min_ready(set), now);
    status.insert("availableReplicas".into(), json!(available));
    status.insert("currentRevision".into(), json!(&current_revision));
    status.insert("updateRevision".into(), json!(&update_revision));
    status.insert("collisionCount".into(), json!(0));
    writes.status(STATEFUL_SETS, set, Value::Object(status));
    // `truncateHistory`: revisions neither current, nor the update's, nor a Pod's, beyond
    // `revisionHistoryLimit`, oldest first.
    let live: Vec<String> = pods
        .iter()
        .filter_map(|(_, p)| revision_of(p))
        .chain([current_revision, update_revision])
        .collect();
    let history: Vec<&Value> = revisions
        .iter()
        .copied()
        .filter(|r| !name(r).is_some_and(|n| live.iter().any(|l| l == n)))
        .collect();
    let limit = usize::try_from(spec["revisionHistoryLimit"].as_i64().unwrap_or(10)).unwrap_or(0);
    for revision in history.iter().take(history.len().saturating_sub(limit)) {
        writes.delete(CONTROLLER_REVISIONS, revision);
    }
    wake
}

/// `getStatefulSetRevisions`: the name of the ControllerRevision of `set`'s current template
/// (`revisions` sorted by revision number). The revision records the template as the patch that
/// restores it (`getPatch`: `{"spec":{"template":{…,"$patch":"replace"}}}`, which `kubectl
/// rollout undo` applies); the newest revision if it records this template, else an older one that
/// does, given the next revision number (a rollback), else a new one, `NAME-HASH`, with the
/// template's labels, the set's annotations and the next number (`newRevision`).
fn update_revision(writes: &mut Writes<'_>, set: &Value, revisions: &[&Value]) -> Option<String> {
    let (namespace, set_name) = (namespace(set)?, name(set)?);
    let mut template = set["spec"]["template"].clone();
    template
        .as_object_mut()?
        .insert("$patch".into(), json!("replace"));
    let data = json!({"spec": {"template": template}});
    let next = revisions
        .last()
        .and_then(|r| r["revision"].as_i64())
        .unwrap_or(0)
        + 1;
    match revisions.iter().rposition(|r| r["data"] == data) {
        Some(at) if at + 1 == revisions.len() => return name(revisions[at]).map(str::to_owned),
        Some(at) => {
            let mut body = revisions[at].clone();
            body["revision"] = json!(next);
            writes.update("update", CONTROLLER_REVISIONS, body);
            return name(revisions[at]).map(str::to_owned);
        }
        None => {}
    }
    let hash = template_hash(&data);
    let revision_name = format!("{set_name}-{hash}");
    let mut labels = set["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION_HASH] = json!(hash);
    let mut metadata = json!({
        "name": revision_name, "namespace": namespace, "labels": labels,
        "ownerReferences": [controller_reference(set, "apps/v1", "StatefulSet")],
    });
    if let Some(annotations) = set["metadata"].get("annotations") {
        metadata["annotations"] = annotations.clone();
    }
    let revision = json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": metadata, "data": data, "revision": next,
    });
    writes.create(CONTROLLER_REVISIONS, namespace, revision);
    Some(revision_name)
}

/// Pod `ordinal` of a StatefulSet at `revision`: named `NAME-ORDINAL`, its hostname that name and
/// its subdomain the governing Service, labelled with its name, index and revision.
fn stateful_pod(set: &Value, namespace: &str, name: &str, ordinal: i64, revision: &str) -> Value {
    let pod_name = format!("{name}-{ordinal}");
    let mut pod = template_pod(set, namespace, pod_name.clone(), ("apps/v1", "StatefulSet"));
    let labels = &mut pod["metadata"]["labels"];
    labels[REVISION_HASH] = json!(revision);
    labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
    labels["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
    pod["spec"]["hostname"] = json!(pod_name);
    // `updateStorage`: a volume per claim template, named after it, for the Pod's own claim; the
    // template's other volumes after them.
    let claims = claims(set, namespace, name, ordinal);
    if !claims.is_empty() {
        let templates: Vec<&str> = set["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["metadata"]["name"].as_str())
            .collect();
        let mut volumes: Vec<Value> = templates
            .iter()
            .zip(&claims)
            .map(|(volume, claim)| {
                json!({"name": volume,
                    "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}})
            })
            .collect();
        volumes.extend(
            pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| !v["name"].as_str().is_some_and(|n| templates.contains(&n)))
                .cloned(),
        );
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        pod["spec"]["subdomain"] = json!(service);
    }
    pod
}

/// The PersistentVolumeClaims of a StatefulSet's Pod `ordinal`, one per `volumeClaimTemplates`
/// entry, as `getPersistentVolumeClaims` makes them: named `TEMPLATE-SET-ORDINAL`, in the set's
/// namespace, labelled with the template's labels and the set's `matchLabels`.
fn claims(set: &Value, namespace: &str, set_name: &str, ordinal: i64) -> Vec<Value> {
    set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|template| {
            let template_name = template["metadata"]["name"].as_str()?;
            let mut metadata = template["metadata"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            metadata.insert(
                "name".into(),
                json!(format!("{template_name}-{set_name}-{ordinal}")),
            );
            metadata.insert("namespace".into(), json!(namespace));
            let mut labels = metadata
                .get("labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(selector) = set["spec"]["selector"]["matchLabels"].as_object() {
                labels.extend(selector.clone());
            }
            metadata.insert("labels".into(), Value::Object(labels));
            Some(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata,
                "spec": template["spec"].clone(),
            }))
        })
        .collect()
}

/// `updateClaimOwnerRefForSetAndPod`: a claim of `set`'s `pod` is owned as the set's
/// `persistentVolumeClaimRetentionPolicy` says, so the garbage collector deletes it with its
/// owner: by the set for `whenDeleted: Delete` (while the Pod is in range), by the Pod once it is
/// `scaled_down` for `whenScaled: Delete`, by neither for `Retain`. Returns the claim with its
/// owner references changed, if they change.
fn claim_owned_for_retention(
    set: &Value,
    pod: &Value,
    scaled_down: bool,
    claim: &Value,
) -> Option<Value> {
    let policy = &set["spec"]["persistentVolumeClaimRetentionPolicy"];
    let (when_deleted, when_scaled) = (
        policy["whenDeleted"] == "Delete",
        policy["whenScaled"] == "Delete",
    );
    let by_set = when_deleted && !(when_scaled && scaled_down);
    let by_pod = when_scaled && scaled_down;
    let mut refs: Vec<Value> = claim["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let before = refs.len();
    let mut changed = false;
    for (owner, (api_version, kind), wanted) in [
        (set, ("apps/v1", "StatefulSet"), by_set),
        (pod, ("v1", "Pod"), by_pod),
    ] {
        let uid = owner["metadata"]["uid"].as_str()?;
        let has = refs.iter().any(|r| r["uid"] == uid);
        if wanted && !has {
            refs.push(json!({"apiVersion": api_version, "kind": kind,
                "name": name(owner)?, "uid": uid}));
            changed = true;
        } else if !wanted && has {
            refs.retain(|r| r["uid"] != uid);
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    let mut body = claim.clone();
    let metadata = body["metadata"].as_object_mut()?;
    if refs.is_empty() && before > 0 {
        metadata.remove("ownerReferences");
    } else {
        metadata.insert("ownerReferences".into(), Value::Array(refs));
    }
    Some(body)
}

/// Whether `pod` belongs to a Job and its containers are not restarted on success.
fn runs_to_completion(pod: &Value) -> bool {
    let job_owned = pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"] == true && r["kind"] == "Job" && r["apiVersion"] == "batch/v1");
    job_owned && pod["spec"]["restartPolicy"].as_str() != Some("Always")
}

/// The status of a Pod whose containers all exited 0 (the kubelet's, for restart policy Never or
/// OnFailure): `Succeeded`, each container `terminated` with reason `Completed`, not ready, the
/// conditions a kubelet gives a completed Pod (`PodCompleted`).
fn succeeded_status(pod: &Value, now: DateTime<Utc>) -> Value {
    let time = timestamp(now);
    let mut status = pod["status"].clone();
    let started = status["startTime"]
        .as_str()
        .map_or_else(|| time.clone(), str::to_owned);
    let statuses: Vec<Value> = containers(pod)
        .map(|c| {
            let id = container_id(pod, c);
            json!({
                "name": c["name"], "image": c["image"], "imageID": "", "containerID": id,
                "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                    "startedAt": started, "finishedAt": time, "containerID": id}},
            })
        })
        .collect();
    let condition = |kind: &str, value: &str| {
        let mut c = json!({"type": kind, "status": value, "lastTransitionTime": time});
        // `kubelet/status/generate.go` for a Pod in a terminal phase.
        if matches!(kind, "Initialized" | "Ready" | "ContainersReady") {
            c["reason"] = json!("PodCompleted");
        }
        c
    };
    status["phase"] = json!("Succeeded");
    status["conditions"] = json!([
        condition("PodReadyToStartContainers", "False"),
        condition("Initialized", "True"),
        condition("Ready", "False"),
        condition("ContainersReady", "False"),
        condition("PodScheduled", "True"),
    ]);
    status["containerStatuses"] = json!(statuses);
    status
}

/// The new ReplicaSet of a Deployment: its template and selector with the template's hash.
fn new_replica_set(
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
fn set_replicas_annotations(replica_set: &mut Value, deployment: &Value) {
    let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let (surge, _) = fenceposts(deployment, wanted);
    let annotations = &mut replica_set["metadata"]["annotations"];
    annotations["deployment.kubernetes.io/desired-replicas"] = json!(wanted.to_string());
    annotations["deployment.kubernetes.io/max-replicas"] = json!((wanted + surge).to_string());
}

/// A new Pod of `owner` (a ReplicaSet or a Job: `(apiVersion, kind)`), from its template,
/// named as `generateName: OWNER-` would.
fn new_pod(owner: &Value, namespace: &str, (api_version, kind): (&str, &str)) -> Value {
    let prefix = generate_name_prefix(name(owner).unwrap_or_default(), "-");
    template_pod(
        owner,
        namespace,
        prefix + &random_suffix(),
        (api_version, kind),
    )
}

/// The `generateName` prefix `base` + `suffix`, with `base` cut so that the prefix fits
/// `MaxGeneratedNameLength` (58: a name of 63 once the 5 random characters are added), as
/// `SimpleNameGenerator` and the job controller's `podGenerateNameWithIndex` cut it.
fn generate_name_prefix(base: &str, suffix: &str) -> String {
    const MAX_GENERATED_NAME_LENGTH: usize = 58;
    let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
    let base = base.get(..keep).unwrap_or(base);
    format!("{base}{suffix}")
}

/// The label and annotation holding an Indexed Job's Pod's completion index.
const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// An Indexed Job's Pod for `index`, as the job controller's `manageJob` makes it: named
/// `JOB-INDEX-xxxxx`, the index in the `batch.kubernetes.io/job-completion-index` annotation
/// and label (`PodIndexLabel`, on since 1.28), the hostname `JOB-INDEX`, and every container
/// given `JOB_COMPLETION_INDEX` from that label (`addCompletionIndexEnvVariables`) unless it
/// sets the variable itself.
fn indexed_pod(job: &Value, namespace: &str, index: i64) -> Value {
    let job_name = name(job).unwrap_or_default();
    let prefix = generate_name_prefix(job_name, &format!("-{index}-"));
    let mut pod = template_pod(
        job,
        namespace,
        prefix + &random_suffix(),
        ("batch/v1", "Job"),
    );
    for key in ["annotations", "labels"] {
        if let Some(metadata) = pod["metadata"].as_object_mut() {
            let map = metadata.entry(key).or_insert_with(|| json!({}));
            if let Some(map) = map.as_object_mut() {
                map.insert(COMPLETION_INDEX.into(), json!(index.to_string()));
            }
        }
    }
    let Some(spec) = pod["spec"].as_object_mut() else {
        return pod;
    };
    spec.insert("hostname".into(), json!(format!("{job_name}-{index}")));
    for key in ["initContainers", "containers"] {
        for container in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            let env = container.entry("env").or_insert_with(|| json!([]));
            if let Some(env) = env.as_array_mut()
                && !env.iter().any(|v| v["name"] == "JOB_COMPLETION_INDEX")
            {
                env.push(
                    json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": format!("metadata.labels['{COMPLETION_INDEX}']"),
                    }}}),
                );
            }
        }
    }
    pod
}

/// An Indexed Job's Pod's completion index (`getCompletionIndex`: the annotation, a
/// non-negative integer).
fn completion_index(pod: &Value) -> Option<i64> {
    pod["metadata"]["annotations"][COMPLETION_INDEX]
        .as_str()?
        .parse::<i64>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A set of completion indexes as ordered, disjoint, non-adjacent intervals, as the job
/// controller's `orderedIntervals` holds them and writes them in `completedIndexes` (`1,3-5,7`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Intervals(Vec<(i64, i64)>);

impl Intervals {
    /// `succeededIndexesFromString`: `text`'s intervals below `completions`; a part that does not
    /// parse is skipped.
    fn parse(text: &str, completions: i64) -> Self {
        let mut out = Self::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut limits = part.splitn(2, '-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i64>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next().map(str::parse::<i64>) {
                None => first,
                Some(Ok(last)) => last.min(completions - 1),
                Some(Err(_)) => continue,
            };
            if first <= last {
                out.insert_range(first, last);
            }
        }
        out
    }

    /// Adds `index`.
    fn insert(&mut self, index: i64) {
        self.insert_range(index, index);
    }

    /// Adds `first..=last`, merging it with the intervals it overlaps or touches.
    fn insert_range(&mut self, first: i64, last: i64) {
        let start = self.0.partition_point(|(_, l)| l.saturating_add(1) < first);
        let end = self
            .0
            .partition_point(|(f, _)| *f <= last.saturating_add(1));
        let merged = self.0[start..end]
            .iter()
            .fold((first, last), |(a, b), (f, l)| (a.min(*f), b.max(*l)));
        self.0.splice(start..end, [merged]);
    }

    /// How many indexes the intervals hold.
    fn total(&self) -> i64 {
        self.0.iter().map(|(first, last)| last - first + 1).sum()
    }

    /// `firstPendingIndexes`: the `count` lowest indexes below `completions` neither held here nor
    /// `taken` by an active Pod.
    fn first_pending(&self, taken: Vec<i64>, count: usize, completions: i64) -> Vec<i64> {
        let mut busy = self.clone();
        for index in taken {
            busy.insert(index);
        }
        // Walk the gaps between the busy intervals: bounded by their number and `count`.
        let mut out = Vec::with_capacity(count.min(1024));
        let mut candidate = 0;
        for &(first, last) in busy.0.iter().chain([&(completions, completions)]) {
            while candidate < first.min(completions) && out.len() < count {
                out.push(candidate);
                candidate += 1;
            }
            if out.len() == count || candidate >= completions {
                break;
            }
            candidate = candidate.max(last.saturating_add(1));
        }
        out
    }
}

impl std::fmt::Display for Intervals {
    /// `orderedIntervals.String`: `a-b` for three or more, `a,b` for two, `a` for one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (first, last)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}")?;
            if last > first {
                let sep = if *last == first + 1 { ',' } else { '-' };
                write!(f, "{sep}{last}")?;
            }
        }
        Ok(())
    }
}

/// Pod `name` from `owner`'s Pod template, controlled by it.
fn template_pod(
    owner: &Value,
    namespace: &str,
    name: String,
    (api_version, kind): (&str, &str),
) -> Value {
    let template = &owner["spec"]["template"];
    let mut metadata = template["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    metadata.insert(
        "ownerReferences".into(),
        json!([controller_reference(owner, api_version, kind)]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"].clone(),
    })
}

/// The scheduler's part: `pod` is bound to the simulated Node through `pods/binding`, as
/// kube-scheduler's default binder does, and a `Scheduled` Event says so.
fn bind(writes: &mut Writes<'_>, pod: &Value) {
    if writes.bind(pod) {
        let message = format!(
            "Successfully assigned {}/{} to {NODE}",
            namespace(pod).unwrap_or_default(),
            name(pod).unwrap_or_default()
        );
        writes.event(pod, SCHEDULER, "Scheduled", message);
    }
}

/// The kubelet's Events for a Pod whose containers it started (`kuberuntime_container.go`
/// `startContainer`, the image manager): for each container, the image already present, created,
/// started, about the container's field path.
fn started(writes: &mut Writes<'_>, pod: &Value) {
    for container in containers(pod) {
        let name = container["name"].as_str().unwrap_or_default();
        let image = container["image"].as_str().unwrap_or_default();
        let field_path = format!("spec.containers{{{name}}}");
        for (reason, message) in [
            (
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            ),
            ("Created", format!("Created container: {name}")),
            ("Started", format!("Started container {name}")),
        ] {
            writes.kubelet_event(pod, &field_path, reason, message);
        }
    }
}

/// The Node a kubelet (here, kwok-like) registers: ready, with room for 110 Pods.
fn simulated_node() -> Value {
    let at = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": at, "lastTransitionTime": at})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {
            "kubernetes.io/hostname": NODE,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        }},
        "spec": {},
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "Capstan simulated node",
                "containerRuntimeVersion": "capstan://simulated",
                "kubeletVersion": format!("v1.{}.0-capstan", crate::discovery::KUBE_MINOR),
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    })
}

/// The Lease a kubelet keeps for its node in `kube-node-lease` (owned by the Node, 40 s), which
/// `kubectl describe node` reads; written once, as the simulated node has no heartbeats.
fn node_lease(node: &Value) -> Value {
    let renewed = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": NODE,
            "namespace": NODE_LEASES,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": NODE, "uid": node["metadata"]["uid"],
            }],
        },
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": renewed},
    })
}

/// The status a kubelet posts while it creates a Pod's containers: Pending, scheduled and
/// initialized but not ready, each container waiting with `ContainerCreating` (what `kubectl get
/// pods` shows as its STATUS).
fn creating_status(pod: &Value, now: DateTime<Utc>) -> Value {
    let time = timestamp(now);
    let names: Vec<&str> = containers(pod).filter_map(|c| c["name"].as_str()).collect();
    let not_ready = format!("containers with unready status: [{}]", names.join(" "));
    let statuses: Vec<Value> = containers(pod)
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": "",
                "ready": false, "started": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            })
        })
        .collect();
    let condition = |kind: &str, status: &str| {
        let mut c = json!({"type": kind, "status": status, "lastTransitionTime": time});
        if status == "False" {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(not_ready);
        }
        c
    };
    json!({
        "phase": "Pending",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": time},
            condition("Initialized", "True"),
            condition("Ready", "False"),
            condition("ContainersReady", "False"),
            condition("PodScheduled", "True"),
        ],
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "startTime": time,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
    })
}

/// A Pod's containers (none when its spec has no list).
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["spec"]["containers"].as_array().into_iter().flatten()
}

/// The runtime's id of `container` of `pod` (made up, stable: the Pod's uid and the name).
fn container_id(pod: &Value, container: &Value) -> String {
    format!(
        "containerd://{}-{}",
        pod["metadata"]["uid"].as_str().unwrap_or_default(),
        container["name"].as_str().unwrap_or_default()
    )
}

/// The status of a Pod whose containers all started and are ready.
fn running_status(pod: &Value, now: DateTime<Utc>) -> Value {
    let time = timestamp(now);
    let started = pod["status"]["startTime"]
        .as_str()
        .map_or_else(|| time.clone(), str::to_owned);
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let statuses: Vec<Value> = containers(pod)
        .map(|c| {
            json!({
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "containerID": container_id(pod, c),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            })
        })
        .collect();
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|kind| json!({"type": kind, "status": "True", "lastTransitionTime": time}))
    .collect();
    let ip = pod_ip(uid);
    json!({
        "phase": "Running",
        "conditions": conditions,
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
    })
}

/// A condition of a Deployment's status, keeping its times while its status, reason and message
/// stay the same (so a pass that changes nothing writes nothing).
fn condition(
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
fn fenceposts(deployment: &Value, replicas: i64) -> (i64, i64) {
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
pub fn template_hash(template: &Value) -> String {
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

/// Five characters of [`ALPHANUMS`], as `generateName` appends.
fn random_suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(ALPHANUMS[usize::from(*b) % ALPHANUMS.len()]))
        .collect()
}

/// A stable Pod IP in 10.244.0.0/16 from the Pod's uid.
fn pod_ip(uid: &str) -> String {
    let sum = uid
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", (sum >> 8) % 256, sum % 254 + 1)
}

fn controller_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A ReplicaSet's `deployment.kubernetes.io/revision`.
fn revision(replica_set: &Value) -> Option<u64> {
    replica_set["metadata"]["annotations"][REVISION]
        .as_str()?
        .parse()
        .ok()
}

/// The uid in `object`'s controller reference.
fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}

/// What `owner` controls, from `by` ([`by_controller`]).
fn controlled<'a>(by: &HashMap<&str, Vec<&'a Value>>, owner: &Value) -> Vec<&'a Value> {
    owner["metadata"]["uid"]
        .as_str()
        .and_then(|uid| by.get(uid))
        .cloned()
        .unwrap_or_default()
}

/// `objects` by the uid of their controller (those without one left out).
fn by_controller(objects: &[Arc<Value>]) -> HashMap<&str, Vec<&Value>> {
    let mut by: HashMap<&str, Vec<&Value>> = HashMap::new();
    for object in objects {
        if let Some(uid) = controller_uid(object) {
            by.entry(uid).or_default().push(object);
        }
    }
    by
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Oldest first, then by name (`ReplicaSetsByCreationTimestamp`, and the pods a ReplicaSet
/// keeps).
fn by_creation(a: &Value, b: &Value) -> std::cmp::Ordering {
    a["metadata"]["creationTimestamp"]
        .as_str()
        .cmp(&b["metadata"]["creationTimestamp"].as_str())
        .then_with(|| name(a).cmp(&name(b)))
}

fn created_at(object: &Value) -> Option<DateTime<Utc>> {
    parse_timestamp(object["metadata"]["creationTimestamp"].as_str()?)
}

fn name(object: &Value) -> Option<&str> {
    object["metadata"]["name"].as_str()
}

fn namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
}

/// The writes of one pass, through the verbs every client uses; a failure is logged with the
/// object it concerns and left to the next pass.
pub(crate) struct Writes<'a> {
    cluster: &'a Cluster,
    options: WriteOptions,
}

impl<'a> Writes<'a> {
    pub(crate) fn new(cluster: &'a Cluster) -> Self {
        Self {
            cluster,
            options: WriteOptions {
                manager: MANAGER.to_owned(),
                ..WriteOptions::default()
            },
        }
    }

    fn target(
        &self,
        gr: &str,
        namespace: &str,
        name: Option<&str>,
        status: bool,
    ) -> Option<Target> {
        let info = self.cluster.lock().info(gr)?;
        Some(Target {
            info,
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: name.map(str::to_owned),
            subresource: status.then(|| "status".to_owned()),
        })
    }

    /// Logs a failed write (a conflict, or an object gone or there already, is left to the next
    /// pass quietly); whether the write was done.
    fn report(
        &self,
        what: &str,
        gr: &str,
        namespace: &str,
        name: &str,
        result: Result<(), ApiError>,
    ) -> bool {
        match result {
            Ok(()) => true,
            Err(
                ApiError::Conflict { .. }
                | ApiError::NotFound { .. }
                | ApiError::AlreadyExists { .. },
            ) => false,
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    resource = gr,
                    namespace,
                    name,
                    "simulated workloads: cannot {what}"
                );
                false
            }
        }
    }

    /// The stored `namespace`/`name` of `gr`, if any.
    fn get(&self, gr: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.cluster
            .lock()
            .store
            .get(gr, &(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Whether `gr` holds `name` in `namespace`.
    fn exists(&self, gr: &str, namespace: &str, name: &str) -> bool {
        self.cluster
            .lock()
            .store
            .get(gr, &(namespace.to_owned(), name.to_owned()))
            .is_some()
    }

    /// Creates `object`; whether it was created.
    pub(crate) fn create(&mut self, gr: &str, namespace: &str, object: Value) -> bool {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(target) = self.target(gr, namespace, None, false) else {
            return false;
        };
        let result = self
            .cluster
            .create(&target, object, &self.options)
            .map(drop);
        self.report("create", gr, namespace, &name, result)
    }

    /// Records a Normal Event about `regarding` as client-go's event recorder writes it for a
    /// controller: a core v1 Event named `NAME.<hex nanoseconds>`, with `source.component` and
    /// `reportingComponent` the controller's name, seen once.
    fn event(&mut self, regarding: &Value, component: &str, reason: &str, message: String) {
        self.record(
            regarding,
            None,
            (component, ""),
            ("Normal", reason),
            message,
        );
    }

    /// Records a Warning Event about `regarding` from the controller `component`.
    fn warning(&mut self, regarding: &Value, component: &str, reason: &str, message: String) {
        self.record(
            regarding,
            None,
            (component, ""),
            ("Warning", reason),
            message,
        );
    }

    /// Records a Normal Event of the simulated node's kubelet about a container of `pod`
    /// (`field_path`: `spec.containers{NAME}`), from `kubelet` on the node.
    fn kubelet_event(&mut self, pod: &Value, field_path: &str, reason: &str, message: String) {
        self.record(
            pod,
            Some(field_path),
            ("kubelet", NODE),
            ("Normal", reason),
            message,
        );
    }

    /// Records an Event of type `kind` (`Normal`, `Warning`) about `regarding` (a part of it at
    /// `field_path`) from `source` (component and host).
    fn record(
        &mut self,
        regarding: &Value,
        field_path: Option<&str>,
        (component, host): (&str, &str),
        (kind, reason): (&str, &str),
        message: String,
    ) {
        let (Some(namespace), Some(name)) = (namespace(regarding), name(regarding)) else {
            return;
        };
        let at = now();
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let meta = &regarding["metadata"];
        let mut event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": namespace},
            "involvedObject": {
                "kind": regarding["kind"],
                "namespace": namespace,
                "name": name,
                "uid": meta["uid"],
                "apiVersion": regarding["apiVersion"],
                "resourceVersion": meta["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "source": if host.is_empty() {
                json!({"component": component})
            } else {
                json!({"component": component, "host": host})
            },
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
            "type": kind,
            "reportingComponent": component,
            "reportingInstance": host,
        });
        if let Some(path) = field_path {
            event["involvedObject"]["fieldPath"] = json!(path);
        }
        self.create(EVENTS, namespace, event);
    }

    /// Writes `status` over `object`'s when it differs; whether it was written.
    fn status(&mut self, gr: &str, object: &Value, status: Value) -> bool {
        if object["status"] == status {
            return false;
        }
        let (Some(namespace), Some(name)) = (namespace(object), name(object)) else {
            return false;
        };
        let Some(target) = self.target(gr, namespace, Some(name), true) else {
            return false;
        };
        let mut body = object.clone();
        body["status"] = status;
        let result = self.cluster.update(&target, body, &self.options).map(drop);
        self.report("update the status of", gr, namespace, name, result)
    }

    /// Binds `pod` to the simulated node through `pods/binding`; whether it was bound.
    fn bind(&mut self, pod: &Value) -> bool {
        let (Some(namespace), Some(name)) = (namespace(pod), name(pod)) else {
            return false;
        };
        let Some(target) = self.target(PODS, namespace, Some(name), false) else {
            return false;
        };
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": pod["metadata"]["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        });
        let result = self.cluster.bind(&target, &binding, &self.options);
        self.report("bind", PODS, namespace, name, result)
    }

    /// Replaces an object with `body`, from the `resourceVersion` it carries (`what` names the
    /// write in a warning); whether it was written.
    pub(crate) fn update(&mut self, what: &str, gr: &str, body: Value) -> bool {
        let (Some(namespace), Some(name)) = (namespace(&body), name(&body)) else {
            return false;
        };
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        let Some(target) = self.target(gr, &namespace, Some(&name), false) else {
            return false;
        };
        let result = self.cluster.update(&target, body, &self.options).map(drop);
        self.report(what, gr, &namespace, &name, result)
    }

    /// Deletes `object` (its uid as a precondition); whether it was deleted.
    fn delete(&mut self, gr: &str, object: &Value) -> bool {
        self.delete_with(gr, object, None)
    }

    /// Deletes `object` if it is still the same (its uid), with `propagation` if given, else its
    /// kind's default.
    fn delete_with(
        &mut self,
        gr: &str,
        object: &Value,
        propagation: Option<gc::Propagation>,
    ) -> bool {
        let (Some(namespace), Some(name)) = (namespace(object), name(object)) else {
            return false;
        };
        let Some(target) = self.target(gr, namespace, Some(name), false) else {
            return false;
        };
        let options = DeleteOptions {
            uid: object["metadata"]["uid"].as_str().map(str::to_owned),
            propagation,
            ..DeleteOptions::default()
        };
        let result = self.cluster.delete(&target, &options).map(drop);
        self.report("delete", gr, namespace, name, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn target(cluster: &Cluster, gr: &str, name: Option<&str>) -> Target {
        Target {
            info: cluster.lock().info(gr).unwrap(),
            namespace: Some("default".into()),
            name: name.map(str::to_owned),
            subresource: None,
        }
    }

    /// Creates `object` of `gr` in `default`.
    fn create(cluster: &Cluster, gr: &str, object: Value) {
        cluster
            .create(&target(cluster, gr, None), object, &WriteOptions::default())
            .unwrap();
    }

    /// Writes `name` of `gr` back with `edit` applied to its spec.
    fn edit_spec(cluster: &Cluster, gr: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut object = list(cluster, gr)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .map(|o| (*o).clone())
            .unwrap();
        edit(&mut object["spec"]);
        cluster
            .update(
                &target(cluster, gr, Some(name)),
                object,
                &WriteOptions::default(),
            )
            .unwrap();
    }

    /// Deployment `web` (label `app: web`, one container `c` of image `nginx`), `spec`'s fields
    /// set over that.
    fn web(spec: Value) -> Value {
        let mut web = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        });
        if let (Some(fields), Value::Object(given)) = (web["spec"].as_object_mut(), spec) {
            fields.extend(given);
        }
        web
    }

    fn list(cluster: &Cluster, gr: &str) -> Vec<Arc<Value>> {
        cluster
            .lock()
            .store
            .list(gr, None, None)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Passes until one writes nothing; panics if that takes more than 20.
    fn settle(cluster: &Cluster, at: DateTime<Utc>) {
        for _ in 0..60 {
            let before = cluster.lock().store.resource_version();
            pass(cluster, Duration::ZERO, at);
            if cluster.lock().store.resource_version() == before {
                return;
            }
        }
        panic!("the passes never settled");
    }

    /// A Deployment of `replicas` with `strategy`, converged on image `nginx`, then given image
    /// `nginx:2`; after every pass of its rollout, `check` gets the ReplicaSets' wanted sizes
    /// (old, new) and the ready Pods' images.
    fn roll_out(replicas: i64, strategy: Value, mut check: impl FnMut(i64, i64, &[String])) {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "strategy": strategy,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        });
        let options = WriteOptions::default();
        cluster
            .create(&target(&cluster, DEPLOYMENTS, None), deployment, &options)
            .unwrap();
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let mut changed = (*list(&cluster, DEPLOYMENTS)[0]).clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        cluster
            .update(
                &target(&cluster, DEPLOYMENTS, Some("web")),
                changed,
                &options,
            )
            .unwrap();
        for _ in 0..60 {
            let before = cluster.lock().store.resource_version();
            pass(&cluster, Duration::ZERO, at);
            let sizes = |image: &str| -> i64 {
                list(&cluster, REPLICA_SETS)
                    .iter()
                    .filter(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == image)
                    .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0))
                    .sum()
            };
            let ready: Vec<String> = list(&cluster, PODS)
                .iter()
                .filter(|p| is_ready(p))
                .map(|p| {
                    p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            check(sizes("nginx"), sizes("nginx:2"), &ready);
            if cluster.lock().store.resource_version() == before {
                let images: Vec<String> = list(&cluster, PODS)
                    .iter()
                    .map(|p| {
                        p["spec"]["containers"][0]["image"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect();
                assert_eq!(
                    images,
                    vec!["nginx:2".to_owned(); usize::try_from(replicas).unwrap()]
                );
                assert_eq!((sizes("nginx"), sizes("nginx:2")), (0, replicas));
                return;
            }
        }
        panic!("the rollout never settled");
    }

    #[test]
    fn a_rolling_update_keeps_within_max_surge_and_max_unavailable() {
        // 4 replicas, one Pod of surge, one unavailable: never more than 5 wanted, never fewer
        // than 3 ready, and both versions serve side by side on the way.
        let mut mixed = false;
        roll_out(
            4,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}),
            |old, new, ready| {
                assert!(old + new <= 5, "{old} + {new} wanted");
                assert!(ready.len() >= 3, "{} ready", ready.len());
                mixed |= ready.iter().any(|i| i == "nginx") && ready.iter().any(|i| i == "nginx:2");
            },
        );
        assert!(mixed, "old and new Pods served together during the rollout");
    }

    #[test]
    fn recreate_removes_the_old_pods_before_creating_new_ones() {
        roll_out(3, json!({"type": "Recreate"}), |old, new, ready| {
            assert!(
                old == 0 || new == 0,
                "{old} old and {new} new wanted at once"
            );
            let versions: BTreeSet<&String> = ready.iter().collect();
            assert!(versions.len() <= 1, "never both versions: {ready:?}");
        });
    }

    #[test]
    fn a_paused_deployment_scales_without_rolling_out_and_history_beyond_the_limit_goes() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(
            &cluster,
            DEPLOYMENTS,
            web(json!({"replicas": 2, "revisionHistoryLimit": 1})),
        );
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let change = |edit: &dyn Fn(&mut Value)| {
            edit_spec(&cluster, DEPLOYMENTS, "web", edit);
            settle(&cluster, at);
        };
        let replica_sets = || -> Vec<(String, i64)> {
            let mut sets: Vec<(String, i64)> = list(&cluster, REPLICA_SETS)
                .iter()
                .map(|rs| {
                    let image = &rs["spec"]["template"]["spec"]["containers"][0]["image"];
                    let size = rs["spec"]["replicas"].as_i64().unwrap_or(-1);
                    (image.as_str().unwrap_or_default().to_owned(), size)
                })
                .collect();
            sets.sort();
            sets
        };
        let progressing = || list(&cluster, DEPLOYMENTS)[0]["status"]["conditions"][1].clone();

        // Paused: a new template makes no ReplicaSet, but the one serving follows `replicas`.
        change(&|spec| {
            spec["paused"] = json!(true);
            spec["replicas"] = json!(3);
            spec["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        });
        assert_eq!(replica_sets(), [("nginx".to_owned(), 3)]);
        assert_eq!(progressing()["status"], "Unknown");
        assert_eq!(progressing()["reason"], "DeploymentPaused");
        assert_eq!(progressing()["message"], "Deployment is paused");

        // Resumed: the rollout happens.
        change(&|spec| spec["paused"] = json!(false));
        assert_eq!(
            replica_sets(),
            [("nginx".to_owned(), 0), ("nginx:2".to_owned(), 3)]
        );
        assert_eq!(progressing()["reason"], "NewReplicaSetAvailable");

        // A second rollout: one old ReplicaSet is kept, the oldest revision is deleted.
        change(&|spec| spec["template"]["spec"]["containers"][0]["image"] = json!("nginx:3"));
        assert_eq!(
            replica_sets(),
            [("nginx:2".to_owned(), 0), ("nginx:3".to_owned(), 3)]
        );
        assert_eq!(list(&cluster, PODS).len(), 3);

        // Back to an old template (a rollback): its ReplicaSet serves again as the newest
        // revision, and keeps the one it had.
        change(&|spec| spec["template"]["spec"]["containers"][0]["image"] = json!("nginx:2"));
        assert_eq!(
            replica_sets(),
            [("nginx:2".to_owned(), 3), ("nginx:3".to_owned(), 0)]
        );
        let back = list(&cluster, REPLICA_SETS)
            .into_iter()
            .find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2")
            .unwrap();
        assert_eq!(back["metadata"]["annotations"][REVISION], "4");
        assert_eq!(back["metadata"]["annotations"][REVISION_HISTORY], "2");
        // The Deployment's sizes: 3 replicas, 25 % surge rounded up.
        assert_eq!(
            back["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
            "3"
        );
        assert_eq!(
            back["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
            "4"
        );
        let web = &list(&cluster, DEPLOYMENTS)[0];
        assert_eq!(
            web["metadata"]["annotations"][REVISION], "4",
            "the Deployment's too"
        );
    }

    #[test]
    fn a_rollout_without_progress_for_its_deadline_times_out_until_it_moves_again() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        // Pods for a scheduler that is not there stay Pending: the rollout stalls.
        let mut deployment = web(json!({"replicas": 2, "progressDeadlineSeconds": 10}));
        deployment["spec"]["template"]["spec"]["schedulerName"] = json!("not-running");
        create(&cluster, DEPLOYMENTS, deployment);
        let start = Utc::now();
        settle(&cluster, start);
        let progressing = || list(&cluster, DEPLOYMENTS)[0]["status"]["conditions"][1].clone();
        assert_eq!(progressing()["status"], "True");
        assert_eq!(progressing()["reason"], "ReplicaSetUpdated");
        let wake = pass(&cluster, Duration::ZERO, start).expect("a wake-up at the deadline");
        assert!(
            wake > Duration::from_secs(8) && wake <= Duration::from_secs(11),
            "{wake:?}"
        );
        settle(&cluster, start + chrono::Duration::seconds(9));
        assert_eq!(progressing()["reason"], "ReplicaSetUpdated", "not yet");
        settle(&cluster, start + chrono::Duration::seconds(12));
        let hash = list(&cluster, REPLICA_SETS)[0]["metadata"]["name"].clone();
        assert_eq!(progressing()["status"], "False");
        assert_eq!(progressing()["reason"], "ProgressDeadlineExceeded");
        assert_eq!(
            progressing()["message"],
            format!(
                "ReplicaSet \"{}\" has timed out progressing.",
                hash.as_str().unwrap()
            )
        );
        // A template that can run: a new ReplicaSet, progress, then complete.
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["template"]["spec"]["schedulerName"] = json!("default-scheduler");
        });
        settle(&cluster, start + chrono::Duration::seconds(13));
        assert_eq!(progressing()["status"], "True");
        assert_eq!(progressing()["reason"], "NewReplicaSetAvailable");
    }

    #[test]
    fn pods_count_as_available_only_min_ready_seconds_after_they_are_ready() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(
            &cluster,
            DEPLOYMENTS,
            web(json!({"replicas": 2, "minReadySeconds": 30})),
        );
        // Ready at once (no delay), but not available for 30 s: the pass says when to look again.
        let start = Utc::now();
        settle(&cluster, start);
        let rs = &list(&cluster, REPLICA_SETS)[0];
        assert_eq!(rs["spec"]["minReadySeconds"], 30, "the Deployment's");
        assert_eq!(rs["status"]["readyReplicas"], 2);
        assert_eq!(rs["status"].get("availableReplicas"), None);
        let wake = pass(&cluster, Duration::ZERO, start).expect("a wake-up");
        assert!(wake > Duration::from_secs(25), "{wake:?}");
        let web = &list(&cluster, DEPLOYMENTS)[0];
        assert_eq!(web["status"]["unavailableReplicas"], 2);
        assert_eq!(web["status"]["conditions"][0]["status"], "False");
        settle(&cluster, start + chrono::Duration::seconds(31));
        assert_eq!(
            list(&cluster, REPLICA_SETS)[0]["status"]["availableReplicas"],
            2
        );
        let web = &list(&cluster, DEPLOYMENTS)[0];
        assert_eq!(web["status"]["availableReplicas"], 2);
        assert_eq!(
            web["status"]["conditions"][0]["reason"],
            "MinimumReplicasAvailable"
        );
    }

    #[test]
    fn each_stateful_pod_gets_its_own_claims_which_outlive_it() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres:16"}],
                        "volumes": [{"name": "config", "emptyDir": {}},
                            {"name": "data", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]},
        });
        create(&cluster, STATEFUL_SETS, set);
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let claims: BTreeMap<String, Arc<Value>> = list(&cluster, CLAIMS)
            .into_iter()
            .map(|c| (c["metadata"]["name"].as_str().unwrap().to_owned(), c))
            .collect();
        assert_eq!(
            claims.keys().collect::<Vec<_>>(),
            ["data-db-0", "data-db-1"]
        );
        let claim = &claims["data-db-1"];
        assert_eq!(
            claim["metadata"]["labels"],
            json!({"tier": "db", "app": "db"})
        );
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(claim["metadata"].get("ownerReferences"), None, "Retain");
        let pod = list(&cluster, PODS)
            .into_iter()
            .find(|p| p["metadata"]["name"] == "db-1")
            .unwrap();
        // The claim's volume replaces the template's volume of the same name, and comes first.
        // (The service account admission's token volume follows them.)
        assert_eq!(
            pod["spec"]["volumes"].as_array().unwrap()[..2],
            [
                json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}}),
                json!({"name": "config", "emptyDir": {}})
            ]
        );
        let events: Vec<String> = list(&cluster, EVENTS)
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect();
        assert!(
            events
                .contains(&"create Claim data-db-0 Pod db-0 in StatefulSet db success".to_owned()),
            "{events:?}"
        );
        // Scaled down: the Pod goes, its claim stays (whenScaled: Retain).
        edit_spec(&cluster, STATEFUL_SETS, "db", |spec| {
            spec["replicas"] = json!(1)
        });
        settle(&cluster, at);
        assert_eq!(list(&cluster, PODS).len(), 1);
        assert_eq!(list(&cluster, CLAIMS).len(), 2);
    }

    #[test]
    fn claims_go_with_their_pod_or_their_set_as_the_retention_policy_says() {
        let claim_names = |cluster: &Cluster| -> Vec<String> {
            let mut names: Vec<String> = list(cluster, CLAIMS)
                .iter()
                .map(|c| c["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        };
        for (when_deleted, when_scaled) in [
            ("Delete", "Delete"),
            ("Delete", "Retain"),
            ("Retain", "Delete"),
        ] {
            let cluster = Cluster::open(None, 10_000).unwrap();
            let set = json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"replicas": 2, "serviceName": "db",
                    "persistentVolumeClaimRetentionPolicy":
                        {"whenDeleted": when_deleted, "whenScaled": when_scaled},
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                        "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}}}}]},
            });
            create(&cluster, STATEFUL_SETS, set);
            let at = Utc::now() + chrono::Duration::seconds(5);
            settle(&cluster, at);
            let owners = |cluster: &Cluster, claim: &str| -> Vec<String> {
                let claim = list(cluster, CLAIMS)
                    .into_iter()
                    .find(|c| c["metadata"]["name"] == claim)
                    .unwrap();
                claim["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        format!(
                            "{}/{}",
                            r["kind"].as_str().unwrap(),
                            r["name"].as_str().unwrap()
                        )
                    })
                    .collect()
            };
            let by_set: &[&str] = if when_deleted == "Delete" {
                &["StatefulSet/db"]
            } else {
                &[]
            };
            assert_eq!(
                owners(&cluster, "data-db-1"),
                by_set,
                "{when_deleted}/{when_scaled}"
            );
            edit_spec(&cluster, STATEFUL_SETS, "db", |spec| {
                spec["replicas"] = json!(1)
            });
            settle(&cluster, at);
            let scaled: &[&str] = if when_scaled == "Delete" {
                &["data-db-0"]
            } else {
                &["data-db-0", "data-db-1"]
            };
            assert_eq!(
                claim_names(&cluster),
                scaled,
                "{when_deleted}/{when_scaled}"
            );
            let set = list(&cluster, STATEFUL_SETS)[0].clone();
            assert!(Writes::new(&cluster).delete(STATEFUL_SETS, &set));
            settle(&cluster, at);
            let left: Vec<&str> = match (when_deleted, when_scaled) {
                ("Delete", _) => vec![],
                _ => vec!["data-db-0"],
            };
            assert_eq!(claim_names(&cluster), left, "{when_deleted}/{when_scaled}");
        }
    }

    #[test]
    fn a_stateful_set_keeps_a_revision_per_template_within_its_history_limit() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default", "annotations": {"note": "kept"}},
            "spec": {"replicas": 1, "serviceName": "db", "revisionHistoryLimit": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "a"}]}}},
        });
        create(&cluster, STATEFUL_SETS, set);
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        // Revision number and image of each ControllerRevision, by name.
        let history = |cluster: &Cluster| -> BTreeMap<String, (i64, String)> {
            list(cluster, CONTROLLER_REVISIONS)
                .iter()
                .map(|r| {
                    let template = &r["data"]["spec"]["template"];
                    assert_eq!(template["$patch"], "replace");
                    assert_eq!(r["metadata"]["annotations"]["note"], "kept");
                    assert_eq!(r["metadata"]["labels"]["app"], "db");
                    assert_eq!(r["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
                    (
                        r["metadata"]["name"].as_str().unwrap().to_owned(),
                        (
                            r["revision"].as_i64().unwrap(),
                            template["spec"]["containers"][0]["image"]
                                .as_str()
                                .unwrap()
                                .to_owned(),
                        ),
                    )
                })
                .collect()
        };
        let image = |cluster: &Cluster, image: &str| {
            edit_spec(cluster, STATEFUL_SETS, "db", |spec| {
                spec["template"]["spec"]["containers"][0]["image"] = json!(image);
            });
            settle(cluster, at);
        };
        let first = history(&cluster);
        assert_eq!(first.len(), 1);
        let (a, _) = first.iter().next().unwrap();
        let pod = &list(&cluster, PODS)[0];
        assert_eq!(pod["metadata"]["labels"][REVISION_HASH], a.as_str());
        image(&cluster, "b");
        image(&cluster, "c");
        let numbered: Vec<(i64, String)> = history(&cluster).into_values().collect();
        let mut numbered = numbered;
        numbered.sort();
        assert_eq!(
            numbered,
            [(2, "b".to_owned()), (3, "c".to_owned())],
            "one revision kept beyond the live one: the oldest goes"
        );
        let before = history(&cluster);
        image(&cluster, "b");
        let after = history(&cluster);
        assert_eq!(
            after.len(),
            2,
            "no new revision for a template that comes back"
        );
        let b = before.iter().find(|(_, (_, i))| i == "b").unwrap().0;
        assert_eq!(after[b], (4, "b".to_owned()), "it becomes the newest");
        let set = &list(&cluster, STATEFUL_SETS)[0];
        assert_eq!(set["status"]["updateRevision"], b.as_str());
        assert_eq!(set["status"]["currentRevision"], b.as_str());
    }

    #[test]
    fn a_stateful_set_partition_keeps_the_lower_ordinals_at_their_revision() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}},
        });
        let options = WriteOptions::default();
        cluster
            .create(&target(&cluster, STATEFUL_SETS, None), set, &options)
            .unwrap();
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let mut changed = (*list(&cluster, STATEFUL_SETS)[0]).clone();
        let old = changed["status"]["currentRevision"].clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
        cluster
            .update(
                &target(&cluster, STATEFUL_SETS, Some("db")),
                changed,
                &options,
            )
            .unwrap();
        settle(&cluster, at);
        let images: BTreeMap<String, String> = list(&cluster, PODS)
            .iter()
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap().to_owned();
                (
                    name,
                    p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(
            images,
            BTreeMap::from([
                ("db-0".to_owned(), "postgres:16".to_owned()),
                ("db-1".to_owned(), "postgres:16".to_owned()),
                ("db-2".to_owned(), "postgres:17".to_owned()),
            ])
        );
        let db = &list(&cluster, STATEFUL_SETS)[0];
        assert_eq!(db["status"]["updatedReplicas"], 1);
        assert_eq!(
            db["status"]["currentRevision"], old,
            "not every Pod is updated"
        );
        assert_ne!(db["status"]["updateRevision"], old);
        // A Pod below the partition that is deleted comes back at its revision's template.
        let pod = list(&cluster, PODS)
            .into_iter()
            .find(|p| p["metadata"]["name"] == "db-0")
            .unwrap();
        assert!(Writes::new(&cluster).delete(PODS, &pod));
        settle(&cluster, at);
        let again = list(&cluster, PODS)
            .into_iter()
            .find(|p| p["metadata"]["name"] == "db-0")
            .unwrap();
        assert_ne!(again["metadata"]["uid"], pod["metadata"]["uid"]);
        assert_eq!(again["spec"]["containers"][0]["image"], "postgres:16");
        assert_eq!(again["metadata"]["labels"][REVISION_HASH], old);
    }

    #[test]
    fn a_job_runs_its_pods_to_completion_then_a_pass_writes_nothing() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"completions": 3, "parallelism": 2, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
        });
        cluster
            .create(&target(&cluster, JOBS, None), job, &WriteOptions::default())
            .unwrap();
        // Two at a time: the first pass starts two Pods.
        pass(&cluster, Duration::ZERO, Utc::now());
        assert_eq!(list(&cluster, PODS).len(), 2);
        let pi = &list(&cluster, JOBS)[0];
        assert_eq!(pi["status"]["active"], 2);
        assert!(pi["status"]["startTime"].is_string());
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));

        let pods = list(&cluster, PODS);
        assert_eq!(pods.len(), 3, "three completions, none replaced");
        for pod in &pods {
            assert_eq!(pod["status"]["phase"], "Succeeded");
            assert_eq!(
                pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
                "Completed"
            );
            assert_eq!(
                pod["metadata"]["labels"]["batch.kubernetes.io/job-name"],
                "pi"
            );
            assert!(pod["metadata"]["name"].as_str().unwrap().starts_with("pi-"));
        }
        let pi = &list(&cluster, JOBS)[0];
        assert_eq!(pi["status"]["succeeded"], 3);
        assert!(pi["status"].get("active").is_none());
        assert!(pi["status"]["completionTime"].is_string());
        let conditions: Vec<&str> = pi["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(conditions, ["SuccessCriteriaMet", "Complete"]);
        let reasons: BTreeMap<String, usize> =
            list(&cluster, EVENTS)
                .iter()
                .fold(BTreeMap::new(), |mut m, e| {
                    *m.entry(e["reason"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                    m
                });
        assert_eq!(reasons.get("SuccessfulCreate"), Some(&3), "{reasons:?}");
        assert_eq!(reasons.get("Completed"), Some(&1), "{reasons:?}");

        // A suspended Job starts nothing.
        let suspended = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "later", "namespace": "default"},
            "spec": {"suspend": true, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        });
        cluster
            .create(
                &target(&cluster, JOBS, None),
                suspended,
                &WriteOptions::default(),
            )
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(list(&cluster, PODS).len(), 3);
        let later = |cluster: &Cluster| {
            list(cluster, JOBS)
                .into_iter()
                .find(|j| j["metadata"]["name"] == "later")
                .unwrap()
        };
        let held = later(&cluster);
        assert_eq!(held["status"]["conditions"][0]["type"], "Suspended");
        assert_eq!(held["status"]["conditions"][0]["status"], "True");
        assert_eq!(held["status"]["conditions"][0]["reason"], "JobSuspended");
        assert!(held["status"].get("startTime").is_none());

        // Resumed: the condition turns False, the clock starts, the Pod runs to completion.
        let mut resumed = (*held).clone();
        resumed["spec"]["suspend"] = json!(false);
        cluster
            .update(
                &target(&cluster, JOBS, Some("later")),
                resumed,
                &WriteOptions::default(),
            )
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        let done = later(&cluster);
        let conditions: Vec<(&str, &str)> = done["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("Suspended", "False"),
                ("SuccessCriteriaMet", "True"),
                ("Complete", "True")
            ]
        );
        assert_eq!(done["status"]["conditions"][0]["reason"], "JobResumed");
        assert!(done["status"]["startTime"].is_string());
        assert_eq!(list(&cluster, PODS).len(), 4);
    }

    #[test]
    fn scaling_during_a_rollout_spreads_the_change_in_proportion() {
        // The example of the Deployments documentation ("Proportional scaling"): 10 replicas,
        // maxSurge 3, maxUnavailable 2, a rollout stuck at 8 old and 5 new Pods, then scaled to
        // 15: the 5 more (18 allowed) go 3 to the old ReplicaSet and 2 to the new one.
        let cluster = Cluster::open(None, 10_000).unwrap();
        let strategy = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}});
        create(
            &cluster,
            DEPLOYMENTS,
            web(json!({"replicas": 10, "strategy": strategy})),
        );
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["template"]["spec"]["schedulerName"] = json!("not-running");
        });
        settle(&cluster, Utc::now() + chrono::Duration::seconds(10));
        let sizes = |cluster: &Cluster| {
            let mut sizes: Vec<(i64, String, String)> = list(cluster, REPLICA_SETS)
                .iter()
                .map(|rs| {
                    let annotation = |key: &str| {
                        rs["metadata"]["annotations"][format!("deployment.kubernetes.io/{key}")]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (
                        rs["spec"]["replicas"].as_i64().unwrap(),
                        annotation("desired-replicas"),
                        annotation("max-replicas"),
                    )
                })
                .collect();
            sizes.sort();
            sizes
        };
        let n = |a: i64, d: &str, m: &str| (a, d.to_owned(), m.to_owned());
        assert_eq!(
            sizes(&cluster),
            [n(5, "10", "13"), n(8, "10", "13")],
            "stuck"
        );
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["replicas"] = json!(15)
        });
        settle(&cluster, Utc::now() + chrono::Duration::seconds(15));
        assert_eq!(sizes(&cluster), [n(7, "15", "18"), n(11, "15", "18")]);
        let events: Vec<String> = list(&cluster, "events")
            .iter()
            .filter(|e| e["reason"] == "ScalingReplicaSet")
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            events.iter().any(|m| m.ends_with("from 8 to 11"))
                && events.iter().any(|m| m.ends_with("from 5 to 7")),
            "{events:?}"
        );
        // Down to 5 (8 allowed): 11 × 8 / 18 rounds to 5, 7 × 8 / 18 to 3; then the rollout
        // goes on within maxUnavailable: the old one down to 3 (5 - 2 available), the new one
        // up to 5 (8 in all).
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["replicas"] = json!(5)
        });
        settle(&cluster, Utc::now() + chrono::Duration::seconds(20));
        assert_eq!(sizes(&cluster), [n(3, "5", "8"), n(5, "5", "8")]);
        assert!(
            list(&cluster, "events")
                .iter()
                .any(|e| e["message"].as_str().unwrap().ends_with("from 11 to 5")),
            "the proportional step first"
        );
    }

    #[test]
    fn completed_indexes_parse_merge_and_print_as_the_job_controller_writes_them() {
        let mut set = Intervals::parse("1,3-5,x,7-9", 9);
        assert_eq!(set.0, vec![(1, 1), (3, 5), (7, 8)], "cut at completions");
        assert_eq!(set.to_string(), "1,3-5,7,8");
        set.insert(2);
        set.insert(6);
        assert_eq!(set.to_string(), "1-8");
        assert_eq!(set.total(), 8);
        set.insert(0);
        assert_eq!(set.0, vec![(0, 8)]);
        assert_eq!(Intervals::parse("", 3).to_string(), "");
        assert_eq!(
            Intervals::parse("5,1", 3).0,
            vec![],
            "an index past completions ends it"
        );
        // A hostile status costs nothing for its size.
        let wide = Intervals::parse("0-9223372036854775806", i64::MAX);
        assert_eq!(wide.total(), i64::MAX);
        assert_eq!(wide.first_pending(vec![], 2, i64::MAX), Vec::<i64>::new());
        let some = Intervals::parse("0,2", 6);
        assert_eq!(some.first_pending(vec![3], 2, 6), vec![1, 4]);
        assert_eq!(some.first_pending(vec![], 9, 4), vec![1, 3]);
    }

    #[test]
    fn an_indexed_job_runs_each_index_once_and_lists_them_completed() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "idx", "namespace": "default"},
            "spec": {"completions": 3, "parallelism": 2, "completionMode": "Indexed",
                "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox"},
                    {"name": "d", "image": "busybox", "env": [{"name": "JOB_COMPLETION_INDEX", "value": "mine"}]}]}}},
        });
        cluster
            .create(&target(&cluster, JOBS, None), job, &WriteOptions::default())
            .unwrap();
        pass(&cluster, Duration::ZERO, Utc::now());
        let pods = list(&cluster, PODS);
        let mut indexes: Vec<String> = pods
            .iter()
            .map(|p| {
                let index = p["metadata"]["annotations"][COMPLETION_INDEX]
                    .as_str()
                    .unwrap();
                assert_eq!(p["metadata"]["labels"][COMPLETION_INDEX], index);
                assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
                let name = p["metadata"]["name"].as_str().unwrap();
                assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
                assert_eq!(name.len(), "idx-0-".len() + 5);
                let env = &p["spec"]["containers"][0]["env"][0];
                assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
                assert_eq!(
                    env["valueFrom"]["fieldRef"]["fieldPath"],
                    "metadata.labels['batch.kubernetes.io/job-completion-index']"
                );
                assert_eq!(
                    p["spec"]["containers"][1]["env"],
                    json!([{"name": "JOB_COMPLETION_INDEX", "value": "mine"}]),
                    "a container's own variable is kept"
                );
                index.to_owned()
            })
            .collect();
        indexes.sort();
        assert_eq!(indexes, ["0", "1"], "the lowest pending indexes first");
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        let pods = list(&cluster, PODS);
        let mut indexes: Vec<i64> = pods.iter().filter_map(|p| completion_index(p)).collect();
        indexes.sort_unstable();
        assert_eq!(indexes, [0, 1, 2], "each index once");
        let idx = &list(&cluster, JOBS)[0];
        assert_eq!(idx["status"]["completedIndexes"], "0-2");
        assert_eq!(idx["status"]["succeeded"], 3);
        assert!(finished_condition(idx).is_some_and(|c| c["type"] == "Complete"));
    }

    #[test]
    fn an_indexed_job_removes_a_pod_repeating_an_index_and_replaces_none_that_succeeded() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "idx", "namespace": "default"},
            "spec": {"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox"}]}}},
        });
        create(&cluster, JOBS, job);
        let job = list(&cluster, JOBS)[0].clone();
        // A Pod of index 1 made by someone else, before the controller's first pass.
        let mut stray = indexed_pod(&job, "default", 1);
        stray["metadata"]["name"] = json!("stray");
        create(&cluster, PODS, stray);
        pass(&cluster, Duration::ZERO, Utc::now());
        let mut pods: Vec<i64> = list(&cluster, PODS)
            .iter()
            .filter_map(|p| completion_index(p))
            .collect();
        pods.sort_unstable();
        assert_eq!(pods, [0, 1], "index 1 is taken: only index 0 is started");
        let mut second = indexed_pod(&job, "default", 1);
        second["metadata"]["name"] = json!("second");
        create(&cluster, PODS, second);
        pass(&cluster, Duration::ZERO, Utc::now());
        let names: Vec<String> = list(&cluster, PODS)
            .iter()
            .filter(|p| completion_index(p) == Some(1))
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names.len(), 1, "one Pod per index: {names:?}");
    }

    #[test]
    fn a_job_past_its_active_deadline_fails_and_its_pods_are_deleted() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "slow", "namespace": "default"},
            "spec": {"activeDeadlineSeconds": 10, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        });
        cluster
            .create(&target(&cluster, JOBS, None), job, &WriteOptions::default())
            .unwrap();
        // Its Pod would take two minutes: the deadline comes first, and the pass says when.
        let start = Utc::now();
        let delay = Duration::from_secs(60);
        pass(&cluster, delay, start);
        let wake = pass(&cluster, delay, start).unwrap();
        assert!(
            wake > Duration::from_secs(8) && wake <= Duration::from_secs(10),
            "{wake:?}"
        );
        assert_eq!(list(&cluster, PODS).len(), 1);
        for _ in 0..3 {
            pass(&cluster, delay, start + chrono::Duration::seconds(11));
        }
        assert!(list(&cluster, PODS).is_empty(), "its active Pod is deleted");
        let slow = &list(&cluster, JOBS)[0];
        let status = &slow["status"];
        assert_eq!(status["failed"], 1);
        assert_eq!(status.get("active"), None);
        assert_eq!(status["ready"], 0);
        assert_eq!(
            status.get("completionTime"),
            None,
            "only a complete Job has one"
        );
        let conditions: Vec<(&str, &str, &str, &str)> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let field = |f: &str| c[f].as_str().unwrap_or_default();
                (
                    field("type"),
                    field("status"),
                    field("reason"),
                    field("message"),
                )
            })
            .collect();
        let message = "Job was active longer than specified deadline";
        assert_eq!(
            conditions,
            [
                ("FailureTarget", "True", "DeadlineExceeded", message),
                ("Failed", "True", "DeadlineExceeded", message),
            ]
        );
        let warned = list(&cluster, EVENTS)
            .iter()
            .filter(|e| e["type"] == "Warning" && e["reason"] == "DeadlineExceeded")
            .count();
        assert_eq!(warned, 1, "one Warning Event");
    }

    #[test]
    fn a_finished_job_with_a_ttl_is_deleted_with_its_pods_once_the_ttl_runs_out() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once", "namespace": "default"},
            "spec": {"ttlSecondsAfterFinished": 60, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        });
        cluster
            .create(&target(&cluster, JOBS, None), job, &WriteOptions::default())
            .unwrap();
        let now = Utc::now();
        settle(&cluster, now + chrono::Duration::seconds(5));
        assert_eq!(list(&cluster, JOBS).len(), 1, "finished, its TTL running");
        // A pass before the TTL runs out asks to be woken when it does.
        let wake = pass(
            &cluster,
            Duration::ZERO,
            now + chrono::Duration::seconds(10),
        )
        .unwrap();
        assert!(
            wake > Duration::from_secs(40) && wake <= Duration::from_secs(60),
            "{wake:?}"
        );
        settle(&cluster, now + chrono::Duration::seconds(120));
        assert!(list(&cluster, JOBS).is_empty());
        assert!(
            list(&cluster, PODS).is_empty(),
            "Foreground: its Pods went first"
        );
    }

    #[test]
    fn a_stateful_set_starts_its_pods_in_order_rolls_a_new_template_and_scales_down_from_the_top() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}},
        });
        let options = WriteOptions::default();
        cluster
            .create(&target(&cluster, STATEFUL_SETS, None), set, &options)
            .unwrap();
        // OrderedReady: db-1 waits for db-0 to be Running and Ready.
        pass(&cluster, Duration::from_secs(60), Utc::now());
        let names = |cluster: &Cluster| {
            let mut n: Vec<String> = list(cluster, PODS)
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&cluster), ["db-0"]);
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(names(&cluster), ["db-0", "db-1", "db-2"]);
        let pod = &list(&cluster, PODS)[0];
        assert_eq!(pod["spec"]["hostname"], pod["metadata"]["name"]);
        assert_eq!(pod["spec"]["subdomain"], "db");
        let db = &list(&cluster, STATEFUL_SETS)[0];
        let revision = db["status"]["updateRevision"].as_str().unwrap().to_owned();
        assert!(revision.starts_with("db-"));
        assert_eq!(db["status"]["currentRevision"], revision.as_str());
        assert_eq!(db["status"]["readyReplicas"], 3);
        assert_eq!(db["status"]["currentReplicas"], 3);
        assert_eq!(pod["metadata"]["labels"][REVISION_HASH], revision.as_str());

        // A new template: every Pod is replaced at the new revision.
        let mut changed = (**db).clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
        cluster
            .update(
                &target(&cluster, STATEFUL_SETS, Some("db")),
                changed,
                &options,
            )
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        let db = &list(&cluster, STATEFUL_SETS)[0];
        let new_revision = db["status"]["updateRevision"].as_str().unwrap();
        assert_ne!(new_revision, revision);
        assert_eq!(db["status"]["currentRevision"], new_revision);
        assert_eq!(db["status"]["updatedReplicas"], 3);
        for pod in list(&cluster, PODS) {
            assert_eq!(pod["metadata"]["labels"][REVISION_HASH], new_revision);
            assert_eq!(pod["spec"]["containers"][0]["image"], "postgres:17");
        }

        // Scale down: the highest ordinals go.
        let mut one = (*list(&cluster, STATEFUL_SETS)[0]).clone();
        one["spec"]["replicas"] = json!(1);
        cluster
            .update(&target(&cluster, STATEFUL_SETS, Some("db")), one, &options)
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(names(&cluster), ["db-0"]);
        assert_eq!(list(&cluster, STATEFUL_SETS)[0]["status"]["replicas"], 1);
    }

    #[test]
    fn a_deployment_converges_then_a_pass_writes_nothing() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        });
        let options = WriteOptions::default();
        cluster
            .create(&target(&cluster, DEPLOYMENTS, None), deployment, &options)
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));

        let replica_sets = list(&cluster, REPLICA_SETS);
        assert_eq!(replica_sets.len(), 1);
        let rs = &replica_sets[0];
        let hash = rs["metadata"]["labels"][TEMPLATE_HASH].as_str().unwrap();
        assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(rs["status"]["readyReplicas"], 2);
        let pods = list(&cluster, PODS);
        assert_eq!(pods.len(), 2);
        for pod in &pods {
            assert_eq!(controller_uid(pod), rs["metadata"]["uid"].as_str());
            assert_eq!(pod["status"]["phase"], "Running");
            assert!(is_ready(pod));
            assert_eq!(pod["metadata"]["labels"][TEMPLATE_HASH], hash);
        }
        let web = &list(&cluster, DEPLOYMENTS)[0];
        assert_eq!(web["status"]["availableReplicas"], 2);
        assert_eq!(web["status"]["updatedReplicas"], 2);
        assert_eq!(
            web["status"]["observedGeneration"],
            web["metadata"]["generation"]
        );
        assert_eq!(
            web["status"]["conditions"][1]["reason"],
            "NewReplicaSetAvailable"
        );

        // A new template: a second ReplicaSet takes over, the first goes to zero, a Pod at a
        // time (25 % of 2: one Pod of surge, none unavailable).
        let mut changed = (**web).clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        cluster
            .update(
                &target(&cluster, DEPLOYMENTS, Some("web")),
                changed,
                &options,
            )
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(10));
        let replica_sets = list(&cluster, REPLICA_SETS);
        assert_eq!(replica_sets.len(), 2);
        let replicas: BTreeMap<Option<u64>, Option<i64>> = replica_sets
            .iter()
            .map(|rs| (revision(rs), rs["spec"]["replicas"].as_i64()))
            .collect();
        assert_eq!(
            replicas,
            BTreeMap::from([(Some(1), Some(0)), (Some(2), Some(2))])
        );
        let pods = list(&cluster, PODS);
        assert_eq!(pods.len(), 2);
        assert!(
            pods.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
        );

        // What `kubectl describe` shows: the controllers' Events, in their words.
        let events = list(&cluster, EVENTS);
        let said = |component: &str, reason: &str| -> Vec<String> {
            let mut said: Vec<String> = events
                .iter()
                .filter(|e| e["source"]["component"] == component && e["reason"] == reason)
                .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                .collect();
            said.sort();
            said
        };
        let names: BTreeMap<Option<u64>, String> = replica_sets
            .iter()
            .map(|rs| (revision(rs), name(rs).unwrap_or_default().to_owned()))
            .collect();
        let (first, second) = (&names[&Some(1)], &names[&Some(2)]);
        let mut scaling = vec![
            format!("Scaled up replica set {first} from 0 to 2"),
            format!("Scaled up replica set {second} from 0 to 1"),
            format!("Scaled down replica set {first} from 2 to 1"),
            format!("Scaled up replica set {second} from 1 to 2"),
            format!("Scaled down replica set {first} from 1 to 0"),
        ];
        scaling.sort();
        assert_eq!(said(DEPLOYMENT_CONTROLLER, "ScalingReplicaSet"), scaling);
        assert_eq!(said(REPLICA_SET_CONTROLLER, "SuccessfulCreate").len(), 4);
        assert_eq!(said(REPLICA_SET_CONTROLLER, "SuccessfulDelete").len(), 2);
        let created = events
            .iter()
            .find(|e| e["reason"] == "SuccessfulCreate")
            .unwrap();
        assert_eq!(created["involvedObject"]["kind"], "ReplicaSet");
        assert_eq!(created["type"], "Normal");
        assert_eq!(created["count"], 1);
    }

    #[test]
    fn a_pod_is_bound_to_the_node_then_ready_only_after_the_delay() {
        let cluster = Cluster::open(None, 1000).unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        cluster
            .create(&target(&cluster, PODS, None), pod, &WriteOptions::default())
            .unwrap();
        let created = created_at(&list(&cluster, PODS)[0]).unwrap();
        // The first pass registers the node and binds the pod (the write wakes the next pass).
        assert_eq!(pass(&cluster, Duration::from_secs(30), created), None);
        let node = &list(&cluster, NODES)[0];
        assert_eq!(node["metadata"]["name"], NODE);
        assert_eq!(node["status"]["allocatable"]["pods"], "110");
        assert_eq!(list(&cluster, PODS)[0]["spec"]["nodeName"], NODE);
        let scheduled: Vec<Arc<Value>> = list(&cluster, EVENTS)
            .into_iter()
            .filter(|e| e["reason"] == "Scheduled")
            .collect();
        assert_eq!(scheduled.len(), 1);
        assert_eq!(
            scheduled[0]["message"],
            "Successfully assigned default/p to capstan-node"
        );
        assert_eq!(scheduled[0]["source"]["component"], SCHEDULER);
        let due = pass(&cluster, Duration::from_secs(30), created);
        assert!(due.is_some_and(|d| d > Duration::from_secs(29)), "{due:?}");
        let creating = &list(&cluster, PODS)[0];
        assert_eq!(creating["status"]["phase"], "Pending");
        assert_eq!(
            creating["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        // The node's Lease follows in the pass after the node.
        let node = &list(&cluster, NODES)[0];
        let lease = &list(&cluster, LEASES)[0];
        assert_eq!(lease["metadata"]["namespace"], NODE_LEASES);
        assert_eq!(lease["spec"]["holderIdentity"], NODE);
        assert_eq!(
            lease["metadata"]["ownerReferences"][0]["uid"],
            node["metadata"]["uid"]
        );

        assert!(!is_ready(&list(&cluster, PODS)[0]));
        let due = pass(
            &cluster,
            Duration::from_secs(30),
            created + chrono::Duration::seconds(30),
        );
        assert_eq!(due, None);
        let pod = &list(&cluster, PODS)[0];
        assert!(is_ready(pod));
        assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true);
        assert_eq!(pod["status"]["hostIP"], NODE_IP);
        let kubelet: Vec<(String, String)> = list(&cluster, EVENTS)
            .iter()
            .filter(|e| e["source"]["component"] == "kubelet")
            .map(|e| {
                assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{c}");
                assert_eq!(e["source"]["host"], NODE);
                (
                    e["reason"].as_str().unwrap().to_owned(),
                    e["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut kubelet = kubelet;
        kubelet.sort();
        assert_eq!(
            kubelet,
            [
                ("Created".into(), "Created container: c".into()),
                (
                    "Pulled".into(),
                    "Container image \"nginx\" already present on machine".into()
                ),
                ("Started".into(), "Started container c".into()),
            ]
        );
    }

    #[test]
    fn a_pod_for_another_scheduler_waits_for_it() {
        let cluster = Cluster::open(None, 1000).unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"schedulerName": "elsewhere", "containers": [{"name": "c", "image": "nginx"}]}});
        cluster
            .create(&target(&cluster, PODS, None), pod, &WriteOptions::default())
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(60));
        let pod = &list(&cluster, PODS)[0];
        assert!(pod["spec"].get("nodeName").is_none());
        assert!(!is_ready(pod));
    }

    #[test]
    fn template_hashes_are_stable_and_safe_for_names() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let b = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(template_hash(&a).bytes().all(|c| ALPHANUMS.contains(&c)));
    }

    #[test]
    fn fenceposts_resolve_counts_and_percentages_as_the_deployment_controller() {
        let d = |strategy: Value| json!({"spec": {"strategy": strategy}});
        // 25 % of 8 each; surge rounds up, unavailable down.
        assert_eq!(fenceposts(&d(json!({})), 8), (2, 2));
        assert_eq!(fenceposts(&d(json!({})), 3), (1, 0));
        assert_eq!(fenceposts(&d(json!({})), 1), (1, 0));
        assert_eq!(fenceposts(&d(json!({"type": "Recreate"})), 8), (0, 0));
        assert_eq!(fenceposts(&d(json!({})), 0), (0, 0));
        let rolling = |r: Value| d(json!({"type": "RollingUpdate", "rollingUpdate": r}));
        assert_eq!(
            fenceposts(&rolling(json!({"maxUnavailable": "50%"})), 5),
            (2, 2)
        );
        assert_eq!(
            fenceposts(&rolling(json!({"maxUnavailable": 3, "maxSurge": 0})), 5),
            (0, 3)
        );
        // Both 0: one may be unavailable; never more than the replicas.
        assert_eq!(
            fenceposts(&rolling(json!({"maxUnavailable": 0, "maxSurge": "0%"})), 5),
            (0, 1)
        );
        assert_eq!(
            fenceposts(&rolling(json!({"maxUnavailable": 9})), 5),
            (2, 5)
        );
    }

    #[test]
    fn a_condition_keeps_its_times_while_it_does_not_change() {
        let old = json!({"conditions": [{"type": "Available", "status": "True", "reason": "R",
            "message": "m", "lastUpdateTime": "T1", "lastTransitionTime": "T0"}]});
        let same = condition(&old, "Available", ("True", "R", "m".into()), "T2", false);
        assert_eq!(same["lastUpdateTime"], "T1");
        assert_eq!(same["lastTransitionTime"], "T0");
        let reason = condition(&old, "Available", ("True", "S", "m".into()), "T2", false);
        assert_eq!(reason["lastTransitionTime"], "T0");
        assert_eq!(reason["lastUpdateTime"], "T2");
        let progressed = condition(&old, "Available", ("True", "R", "m".into()), "T2", true);
        assert_eq!(progressed["lastTransitionTime"], "T0");
        assert_eq!(progressed["lastUpdateTime"], "T2");
        let flipped = condition(&old, "Available", ("False", "R", "m".into()), "T2", false);
        assert_eq!(flipped["lastTransitionTime"], "T2");
    }
}
