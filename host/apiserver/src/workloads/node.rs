//! The simulated node: kube-scheduler's binding, and a kubelet's (or kwok's) Node, Lease, Pod
//! statuses and Events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{LEASES, NODE, NODE_IP, NODE_LEASES, SCHEDULER, Writes, name, namespace};
use crate::cluster::{Cluster, now, parse_timestamp, timestamp};

/// The scheduler's part: `pod` is bound to `node` through `pods/binding`, as
/// kube-scheduler's default binder does, and a `Scheduled` Event says so.
pub(super) fn bind(writes: &mut Writes<'_>, pod: &Value, node: &str) {
    if writes.bind(pod, node) {
        let message = format!(
            "Successfully assigned {}/{} to {node}",
            namespace(pod).unwrap_or_default(),
            name(pod).unwrap_or_default()
        );
        writes.event(pod, SCHEDULER, "Scheduled", message);
    }
}

/// The kubelet's Events for a Pod whose containers it started (`kuberuntime_container.go`
/// `startContainer`, the image manager): for each container, the image already present, created,
/// started, about the container's field path.
pub(super) fn started(writes: &mut Writes<'_>, pod: &Value) {
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
pub(super) fn simulated_node() -> Value {
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
pub(super) fn node_lease(node: &Value, now: DateTime<Utc>) -> Value {
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
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": micro_time(now)},
    })
}

/// How often a kubelet renews its node Lease: a quarter of its 40 s duration
/// (`nodeLeaseRenewIntervalFraction`), so the node lifecycle controller never finds it stale.
pub(super) const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// The kubelet's heartbeat (`nodelease` controller): the Lease's `renewTime` moved to `now` once
/// [`LEASE_RENEW_INTERVAL`] has passed since it (or it cannot be read); returns how long until
/// the next renewal.
pub(super) fn renew_lease(writes: &mut Writes<'_>, lease: &Value, now: DateTime<Utc>) -> Duration {
    let due = lease["spec"]["renewTime"]
        .as_str()
        .and_then(parse_timestamp)
        .map(|t| t + LEASE_RENEW_INTERVAL);
    match due {
        Some(due) if due > now => (due - now).to_std().unwrap_or(LEASE_RENEW_INTERVAL),
        _ => {
            let mut body = lease.clone();
            body["spec"]["renewTime"] = json!(micro_time(now));
            body["spec"]["holderIdentity"] = json!(NODE);
            writes.update("renew", LEASES, body);
            LEASE_RENEW_INTERVAL
        }
    }
}

/// The kubelet's heartbeat at `now`: the node Lease renewed when due; how long until the next
/// renewal (`None` before the Lease exists).
pub(super) fn heartbeat(cluster: &Cluster, now: DateTime<Utc>) -> Option<Duration> {
    let lease = {
        let inner = cluster.lock();
        let key = (NODE_LEASES.to_owned(), NODE.to_owned());
        inner.store.get(LEASES, &key).cloned()?
    };
    Some(renew_lease(&mut Writes::new(cluster), &lease, now))
}

/// A `MicroTime`: RFC 3339 with microseconds.
fn micro_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The status a kubelet posts while it creates a Pod's containers: Pending, scheduled and
/// initialized but not ready, each container waiting with `ContainerCreating` (what `kubectl get
/// pods` shows as its STATUS).
pub(super) fn creating_status(pod: &Value, now: DateTime<Utc>) -> Value {
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
pub(super) fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["spec"]["containers"].as_array().into_iter().flatten()
}

/// The runtime's id of `container` of `pod` (made up, stable: the Pod's uid and the name).
pub(super) fn container_id(pod: &Value, container: &Value) -> String {
    format!(
        "containerd://{}-{}",
        pod["metadata"]["uid"].as_str().unwrap_or_default(),
        container["name"].as_str().unwrap_or_default()
    )
}

/// The status of a Pod whose containers all started and are ready.
pub(super) fn running_status(pod: &Value, now: DateTime<Utc>) -> Value {
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

/// A stable Pod IP in 10.244.0.0/16 from the Pod's uid.
pub(super) fn pod_ip(uid: &str) -> String {
    let sum = uid
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", (sum >> 8) % 256, sum % 254 + 1)
}
