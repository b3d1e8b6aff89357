//! The replica set controller's part: a ReplicaSet's Pods made and removed to its size, and its
//! status counting them; the replication manager does the same for a ReplicationController
//! (kube-controller-manager runs the replica set controller's code for both).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{
    PODS, REPLICA_SET_CONTROLLER, REPLICA_SETS, REPLICATION_CONTROLLERS, Writes, availability,
    by_creation, insert_counts, is_ready, min_ready, name, namespace, new_pod,
};

/// A kind whose objects keep a number of Pods from their template.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replicated {
    /// Where its objects are stored (their status is written there).
    storage: &'static str,
    /// Its `apiVersion` and kind, in the Pods' controller references.
    kind: (&'static str, &'static str),
    /// The component its Events come from.
    controller: &'static str,
}

/// ReplicaSets, by the replica set controller.
pub(super) const REPLICA_SET: Replicated = Replicated {
    storage: REPLICA_SETS,
    kind: ("apps/v1", "ReplicaSet"),
    controller: REPLICA_SET_CONTROLLER,
};

/// ReplicationControllers, by the replication manager (`replication-controller`).
pub(super) const REPLICATION_CONTROLLER: Replicated = Replicated {
    storage: REPLICATION_CONTROLLERS,
    kind: ("v1", "ReplicationController"),
    controller: "replication-controller",
};

/// The part of a ReplicaSet or ReplicationController of `kind` (`owned`: the Pods it controls):
/// as many Pods as it wants (the newest removed first), and its status counting them.
pub(super) fn replica_set_pass(
    writes: &mut Writes<'_>,
    kind: Replicated,
    replica_set: &Value,
    mut owned: Vec<&Value>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let namespace = namespace(replica_set)?;
    let wanted = replica_set["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    owned.sort_by(|a, b| by_creation(a, b));
    let have = i64::try_from(owned.len()).unwrap_or(i64::MAX);
    for _ in have..wanted {
        let pod = new_pod(replica_set, namespace, kind.kind);
        let pod_name = name(&pod).unwrap_or_default().to_owned();
        if writes.create(PODS, namespace, pod) {
            let message = format!("Created pod: {pod_name}");
            writes.event(replica_set, kind.controller, "SuccessfulCreate", message);
        }
    }
    let keep = usize::try_from(wanted)
        .unwrap_or(usize::MAX)
        .min(owned.len());
    for extra in owned.drain(keep..) {
        if writes.delete(PODS, extra) {
            let message = format!("Deleted pod: {}", name(extra).unwrap_or_default());
            writes.event(replica_set, kind.controller, "SuccessfulDelete", message);
        }
    }
    let ready = i64::try_from(owned.iter().filter(|p| is_ready(p)).count()).unwrap_or(0);
    let (available, wake) = availability(&owned, min_ready(replica_set), now);
    let replicas = i64::try_from(owned.len()).unwrap_or(0);
    let mut status = Map::new();
    status.insert("replicas".into(), json!(replicas));
    insert_counts(
        &mut status,
        [
            ("fullyLabeledReplicas", replicas),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ],
    );
    status.insert(
        "observedGeneration".into(),
        replica_set["metadata"]["generation"].clone(),
    );
    writes.status(kind.storage, replica_set, Value::Object(status));
    wake
}
