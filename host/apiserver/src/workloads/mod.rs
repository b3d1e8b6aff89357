//! Simulated workloads (opt-in, `ApiServerBuilder::simulate_workloads`): what
//! kube-controller-manager's workload controllers, kube-scheduler and a kubelet (or kwok, with its
//! fake node) do with Deployments, ReplicaSets, Jobs, StatefulSets, DaemonSets and their Pods, so
//! that `kubectl rollout status` finishes and a controller waiting for available replicas sees
//! them. One module per controller (`deployment`, `replica_set`, `job`, `stateful_set`,
//! `daemon_set`, `cron_job`, `disruption`, `endpoints`, `autoscaler`, `volumes`, `quota`) and
//! one for the node (`node`); this one runs the passes and holds what they share.
//!
//! It is a controller like theirs: each pass reads the objects, and writes through the same verbs
//! as any client (optimistic concurrency, field manager `kube-controller-manager`) only what
//! differs from what it wants, so a pass that finds nothing to do writes nothing. A conflict with
//! another writer is left to the next pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::cluster::{Cluster, now, parse_timestamp};
use crate::error::ApiError;
use crate::gc;
use crate::strategy::storage::STORAGE_CLASSES;
use crate::verbs::{DeleteOptions, Target, WriteOptions};

mod autoscaler;
mod cron_job;
mod daemon_set;
mod deployment;
mod disruption;
mod endpoints;
mod job;
mod node;
mod quota;
mod replica_set;
mod stateful_set;
mod volumes;

use autoscaler::{AUTOSCALERS, autoscaler_pass};
use cron_job::{CRON_JOBS, cron_job_pass, jobs_of};
use daemon_set::{DAEMON_SETS, daemon_set_pass, pinned_node, tolerates};
use deployment::deployment_pass;
pub(crate) use disruption::set_disruption_allowed;
use disruption::{DISRUPTION_BUDGETS, Scales, budget_pass};
use endpoints::{ENDPOINT_SLICES, ENDPOINTS, SERVICES, endpoints_pass};
use job::{
    has_tracking_finalizer, job_pass, release_tracked_pod, runs_to_completion, stopped_status,
    succeeded_status, ttl_expiry,
};
use node::{bind, creating_status, heartbeat, node_lease, running_status, simulated_node, started};
use quota::quota_pass;
use replica_set::{REPLICA_SET, REPLICATION_CONTROLLER, replica_set_pass};
use stateful_set::stateful_set_pass;
use volumes::{VOLUMES, claims_ready, default_storage_class, volume_pass};

/// The storage key of Deployments.
const DEPLOYMENTS: &str = "deployments.apps";

/// The storage key of ReplicaSets.
const REPLICA_SETS: &str = "replicasets.apps";
/// Where ReplicationControllers are stored.
const REPLICATION_CONTROLLERS: &str = "replicationcontrollers";

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
/// The root CA publisher ([`crate::root_ca`]) runs with them, publishing `authority`'s
/// certificate, and the signers of CertificateSigningRequests ([`crate::certificates`]), which
/// issue from it.
pub async fn run(
    cluster: Arc<Cluster>,
    ready_delay: Duration,
    authority: crate::tls::Authority,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = cluster.subscribe();
    let ca = authority.certificate_pem().to_owned();
    loop {
        crate::root_ca::pass(&cluster, &ca, &mut Writes::new(&cluster));
        crate::certificates::pass(&cluster, &authority, &mut Writes::new(&cluster));
        let now = Utc::now();
        let due = pass(&cluster, ready_delay, now);
        // The kubelet's heartbeat comes due on its own clock.
        let due = match (due, heartbeat(&cluster, now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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
    // One read of everything, so that no pass sees an owner without its newest Pods.
    let ((deployments, replica_sets, replication_controllers, jobs), rest) = {
        let inner = cluster.lock();
        let read = |gr: &str, deleting: bool| -> Vec<Arc<Value>> {
            inner
                .store
                .list(gr, None, None)
                .map(|(_, o)| o.clone())
                .filter(|o| gc::is_deleting(o) == deleting)
                .collect()
        };
        (
            (
                read(DEPLOYMENTS, false),
                read(REPLICA_SETS, false),
                read(REPLICATION_CONTROLLERS, false),
                read(JOBS, false),
            ),
            (
                read(STATEFUL_SETS, false),
                read(CONTROLLER_REVISIONS, false),
                read(PODS, false),
                read(PODS, true),
                read(DISRUPTION_BUDGETS, false),
            ),
        )
    };
    let (stateful_sets, revisions, pods, deleting_pods, budgets) = rest;
    // The Pods being deleted that the job controller still tracks.
    let tracked_deleting: Vec<Arc<Value>> = deleting_pods
        .iter()
        .filter(|pod| has_tracking_finalizer(pod))
        .cloned()
        .collect();
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
            // The kubelet's Lease, made once (`run` renews it).
            if !lease {
                writes.create(LEASES, NODE_LEASES, node_lease(&node, now));
            }
            node["spec"]["unschedulable"] != true && !gc::is_deleting(&node)
        }
        None => {
            // A new cluster, as kind makes one: its node, and its default StorageClass.
            let registered = writes.create(NODES, "", simulated_node());
            if registered && !writes.exists(STORAGE_CLASSES, "", "standard") {
                writes.create(STORAGE_CLASSES, "", default_storage_class());
            }
            registered
        }
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
        if let Some(wait) = replica_set_pass(&mut writes, REPLICA_SET, replica_set, owned, now) {
            wake_in(wait);
        }
    }
    for controller in &replication_controllers {
        let owned = controlled(&pods_of, controller);
        let kind = REPLICATION_CONTROLLER;
        if let Some(wait) = replica_set_pass(&mut writes, kind, controller, owned, now) {
            wake_in(wait);
        }
    }
    // Pods being deleted matter to the job controller alone, while they carry its finalizer.
    let deleting_of = by_controller(&tracked_deleting);
    for job in &jobs {
        let owned = (controlled(&pods_of, job), controlled(&deleting_of, job));
        if let Some(wait) = job_pass(&mut writes, job, (&owned.0, &owned.1), now) {
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
    // The kubelet stops a deleted Job Pod that a finalizer holds: it fails (a terminal phase
    // before it goes), which is what a Job replacing only failed Pods waits for.
    for pod in &tracked_deleting {
        if !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        ) {
            writes.status(PODS, pod, stopped_status(pod, now));
        }
    }
    // An orphan Pod (its Job gone, or going) loses the finalizer uncounted (`enqueueOrphanPod`).
    let job_uids: HashSet<&str> = jobs
        .iter()
        .filter_map(|job| job["metadata"]["uid"].as_str())
        .collect();
    for pod in pods.iter().chain(&tracked_deleting) {
        if has_tracking_finalizer(pod)
            && controller_uid(pod).is_none_or(|uid| !job_uids.contains(uid))
        {
            release_tracked_pod(&mut writes, pod);
        }
    }
    // The disruption controller, from the Pods as this pass read them.
    if !budgets.is_empty() {
        let scales = Scales::new(
            deployments
                .iter()
                .chain(&replica_sets)
                .chain(&stateful_sets)
                .map(|w| &**w),
        );
        // `getPodsForPdb` lists every Pod the budget selects, those being deleted too.
        let all_pods: Vec<&Value> = pods.iter().chain(&deleting_pods).map(|p| &**p).collect();
        for budget in &budgets {
            budget_pass(&mut writes, budget, &all_pods, &scales, now);
        }
    }
    // The cron job controller, over the Jobs as this pass read them.
    let cron_jobs = list_all(cluster, CRON_JOBS);
    if !cron_jobs.is_empty() {
        let all_jobs: Vec<&Value> = jobs.iter().map(|j| &**j).collect();
        for cron_job in &cron_jobs {
            let owned = jobs_of(cron_job, &all_jobs);
            if let Some(due) = cron_job_pass(&mut writes, cron_job, &owned, now) {
                wake_in(due);
            }
        }
    }
    // The endpoints and endpoint slice controllers, from the Pods as this pass read them.
    let (services, endpoints, slices) = (
        list_all(cluster, SERVICES),
        list_all(cluster, ENDPOINTS),
        list_all(cluster, ENDPOINT_SLICES),
    );
    if !services.is_empty() || !endpoints.is_empty() {
        fn refs(objects: &[Arc<Value>]) -> Vec<&Value> {
            objects.iter().map(|o| &**o).collect()
        }
        let every_pod: Vec<&Value> = pods.iter().chain(&deleting_pods).map(|p| &**p).collect();
        let (services, endpoints, slices) = (refs(&services), refs(&endpoints), refs(&slices));
        let read = endpoints::Read {
            services: &services,
            pods: &every_pod,
            endpoints: &endpoints,
            slices: &slices,
        };
        endpoints_pass(&mut writes, &read);
    }
    for set in &stateful_sets {
        let owned = (controlled(&pods_of, set), controlled(&revisions_of, set));
        if let Some(wait) = stateful_set_pass(&mut writes, set, (&owned.0, &owned.1), now) {
            wake_in(wait);
        }
    }
    // The daemon set controller, over every Node (those being deleted left out).
    let daemon_sets = list_all(cluster, DAEMON_SETS);
    let nodes: Vec<Arc<Value>> = list_all(cluster, NODES)
        .into_iter()
        .filter(|n| !gc::is_deleting(n))
        .collect();
    let node_refs: Vec<&Value> = nodes.iter().map(|n| &**n).collect();
    for set in daemon_sets.iter().filter(|s| !gc::is_deleting(s)) {
        let owned = (controlled(&pods_of, set), controlled(&revisions_of, set));
        if let Some(wait) = daemon_set_pass(&mut writes, set, (&owned.0, &owned.1), &node_refs, now)
        {
            wake_in(wait);
        }
    }
    // The persistent volume controller and the provisioner.
    let (classes, volumes, claims) = (
        list_all(cluster, STORAGE_CLASSES),
        list_all(cluster, VOLUMES),
        list_all(cluster, CLAIMS),
    );
    let classes: Vec<&Value> = classes.iter().map(|c| &**c).collect();
    let volumes: Vec<&Value> = volumes.iter().map(|v| &**v).collect();
    let claims: Vec<&Value> = claims
        .iter()
        .map(|c| &**c)
        .filter(|c| !gc::is_deleting(c))
        .collect();
    let storage = volumes::Read {
        classes: &classes,
        volumes: &volumes,
        claims: &claims,
    };
    volume_pass(&mut writes, &storage);
    // The resource quota controller, over what the other controllers made.
    quota_pass(&mut writes, cluster);
    // The horizontal pod autoscaler controller, after the workloads it scales.
    for hpa in list_all(cluster, AUTOSCALERS)
        .iter()
        .filter(|h| !gc::is_deleting(h))
    {
        autoscaler_pass(&mut writes, hpa, now);
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
            if pod["spec"]["schedulerName"].as_str().unwrap_or(SCHEDULER) == SCHEDULER
                && let Some(node) = placement(pod, &node_refs, schedulable)
                && claims_ready(&mut writes, pod, node, &storage)
            {
                bind(&mut writes, pod, node);
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

/// The Node the scheduler binds `pod` to: the one its required node affinity names alone (a
/// daemon Pod's), if it exists and takes Pods (cordoned, only a Pod tolerating
/// `node.kubernetes.io/unschedulable`); otherwise the simulated Node, unless cordoned.
fn placement<'a>(pod: &'a Value, nodes: &[&Value], schedulable: bool) -> Option<&'a str> {
    let Some(pinned) = pinned_node(pod) else {
        return schedulable.then_some(NODE);
    };
    let node = nodes.iter().find(|n| name(n) == Some(pinned))?;
    let unschedulable = json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
    let takes = node["spec"]["unschedulable"] != true
        || pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| tolerates(t, &unschedulable));
    takes.then_some(pinned)
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

/// Five characters of [`ALPHANUMS`], as `generateName` appends.
fn random_suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(ALPHANUMS[usize::from(*b) % ALPHANUMS.len()]))
        .collect()
}

/// Every stored object of `gr`.
fn list_all(cluster: &Cluster, gr: &str) -> Vec<Arc<Value>> {
    cluster
        .lock()
        .store
        .list(gr, None, None)
        .map(|(_, o)| o.clone())
        .collect()
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

/// Inserts each `(field, count)` in a status, leaving out zero counts as Go's `omitempty` does.
fn insert_counts<const N: usize>(status: &mut Map<String, Value>, counts: [(&str, i64); N]) {
    for (field, value) in counts.into_iter().filter(|(_, v)| *v != 0) {
        status.insert(field.into(), json!(value));
    }
}

/// `podutil.IsPodReady`: the Pod's `Ready` condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
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

/// An object's namespace, empty for a cluster-scoped one (a Node, a PersistentVolume).
fn namespace_or_cluster(object: &Value) -> &str {
    namespace(object).unwrap_or_default()
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
        self.create_object(gr, namespace, object).is_some()
    }

    /// Creates `object`; the object stored, if it was created.
    fn create_object(&mut self, gr: &str, namespace: &str, object: Value) -> Option<Arc<Value>> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let target = self.target(gr, namespace, None, false)?;
        match self.cluster.create(&target, object, &self.options) {
            Ok(created) => Some(created),
            Err(error) => {
                self.report("create", gr, namespace, &name, Err(error));
                None
            }
        }
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

    /// Whether an Event of `reason` about `regarding` (by uid) is recorded.
    fn has_event(&self, regarding: &Value, reason: &str) -> bool {
        let Some(namespace) = namespace(regarding) else {
            return false;
        };
        let uid = &regarding["metadata"]["uid"];
        self.cluster
            .lock()
            .store
            .list(EVENTS, Some(namespace), None)
            .any(|(_, e)| e["reason"] == reason && e["involvedObject"]["uid"] == *uid)
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
        // client-go's `EventCorrelator`: an Event like one recorded before (same source, object,
        // type, reason and message) adds to that one's count instead of being recorded again.
        let same = |seen: &Value| {
            ["source", "type", "reason", "message"]
                .iter()
                .all(|f| seen[f] == event[f])
                && [
                    "kind",
                    "namespace",
                    "name",
                    "uid",
                    "apiVersion",
                    "fieldPath",
                ]
                .iter()
                .all(|f| seen["involvedObject"][f] == event["involvedObject"][f])
        };
        let before = self
            .cluster
            .lock()
            .store
            .list(EVENTS, Some(namespace), None)
            .map(|(_, e)| e)
            .find(|e| same(e))
            .cloned();
        match before {
            Some(before) => {
                let mut again = (*before).clone();
                again["count"] = json!(before["count"].as_i64().unwrap_or(1) + 1);
                again["lastTimestamp"] = json!(at);
                self.update("count again", EVENTS, again);
            }
            None => {
                self.create(EVENTS, namespace, event);
            }
        }
    }

    /// Writes `status` over `object`'s when it differs; whether it was written.
    pub(crate) fn status(&mut self, gr: &str, object: &Value, status: Value) -> bool {
        if object["status"] == status {
            return false;
        }
        let (namespace, Some(name)) = (namespace_or_cluster(object), name(object)) else {
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

    /// Binds `pod` to `node` through `pods/binding`; whether it was bound.
    fn bind(&mut self, pod: &Value, node: &str) -> bool {
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
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let result = self.cluster.bind(&target, &binding, &self.options);
        self.report("bind", PODS, namespace, name, result)
    }

    /// Replaces an object with `body`, from the `resourceVersion` it carries (`what` names the
    /// write in a warning); whether it was written.
    pub(crate) fn update(&mut self, what: &str, gr: &str, body: Value) -> bool {
        let (namespace, Some(name)) = (namespace_or_cluster(&body), name(&body)) else {
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
        let (namespace, Some(name)) = (namespace_or_cluster(object), name(object)) else {
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
    use super::{deployment::*, job::*, node::*};
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
        let mut object = list_all(cluster, gr)
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
        let web = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        });
        with_spec(web, spec)
    }

    /// `object` with `spec`'s fields set in its spec.
    fn with_spec(mut object: Value, spec: Value) -> Value {
        if let (Some(fields), Value::Object(given)) = (object["spec"].as_object_mut(), spec) {
            fields.extend(given);
        }
        object
    }

    /// A Job `name` with `spec`'s fields, its Pod template one `busybox` container that is not
    /// restarted.
    fn job(name: &str, spec: Value) -> Value {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        });
        with_spec(job, spec)
    }

    /// The StatefulSet `db` (`app: db`, one `postgres:16` container) with `spec`'s fields.
    fn db(spec: Value) -> Value {
        let db = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}},
        });
        with_spec(db, spec)
    }

    /// Passes until one writes nothing; panics if that takes more than 60.
    fn settle(cluster: &Cluster, at: DateTime<Utc>) {
        settle_with(cluster, Duration::ZERO, at);
    }

    /// [`settle`] with Pods Ready `ready_delay` after their creation.
    fn settle_with(cluster: &Cluster, ready_delay: Duration, at: DateTime<Utc>) {
        for _ in 0..60 {
            let before = cluster.lock().store.resource_version();
            pass(cluster, ready_delay, at);
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
        let spec = json!({"replicas": replicas, "strategy": strategy});
        create(&cluster, DEPLOYMENTS, web(spec));
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        });
        for _ in 0..60 {
            let before = cluster.lock().store.resource_version();
            pass(&cluster, Duration::ZERO, at);
            let sizes = |image: &str| -> i64 {
                list_all(&cluster, REPLICA_SETS)
                    .iter()
                    .filter(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == image)
                    .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0))
                    .sum()
            };
            let ready: Vec<String> = list_all(&cluster, PODS)
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
                let images: Vec<String> = list_all(&cluster, PODS)
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
            let mut sets: Vec<(String, i64)> = list_all(&cluster, REPLICA_SETS)
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
        let progressing = || list_all(&cluster, DEPLOYMENTS)[0]["status"]["conditions"][1].clone();

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
        assert_eq!(list_all(&cluster, PODS).len(), 3);

        // Back to an old template (a rollback): its ReplicaSet serves again as the newest
        // revision, and keeps the one it had.
        change(&|spec| spec["template"]["spec"]["containers"][0]["image"] = json!("nginx:2"));
        assert_eq!(
            replica_sets(),
            [("nginx:2".to_owned(), 3), ("nginx:3".to_owned(), 0)]
        );
        let back = list_all(&cluster, REPLICA_SETS)
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
        let web = &list_all(&cluster, DEPLOYMENTS)[0];
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
        let progressing = || list_all(&cluster, DEPLOYMENTS)[0]["status"]["conditions"][1].clone();
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
        let hash = list_all(&cluster, REPLICA_SETS)[0]["metadata"]["name"].clone();
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
        // (A second ahead: creation times are whole seconds, and a Pod made after a second
        // boundary would not be due yet at the exact `now`.)
        let start = Utc::now() + chrono::Duration::seconds(1);
        settle(&cluster, start);
        let rs = &list_all(&cluster, REPLICA_SETS)[0];
        assert_eq!(rs["spec"]["minReadySeconds"], 30, "the Deployment's");
        assert_eq!(rs["status"]["readyReplicas"], 2);
        assert_eq!(rs["status"].get("availableReplicas"), None);
        let wake = pass(&cluster, Duration::ZERO, start).expect("a wake-up");
        assert!(wake > Duration::from_secs(25), "{wake:?}");
        let web = &list_all(&cluster, DEPLOYMENTS)[0];
        assert_eq!(web["status"]["unavailableReplicas"], 2);
        assert_eq!(web["status"]["conditions"][0]["status"], "False");
        settle(&cluster, start + chrono::Duration::seconds(31));
        assert_eq!(
            list_all(&cluster, REPLICA_SETS)[0]["status"]["availableReplicas"],
            2
        );
        let web = &list_all(&cluster, DEPLOYMENTS)[0];
        assert_eq!(web["status"]["availableReplicas"], 2);
        assert_eq!(
            web["status"]["conditions"][0]["reason"],
            "MinimumReplicasAvailable"
        );
    }

    #[test]
    fn each_stateful_pod_gets_its_own_claims_which_outlive_it() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let mut set = db(json!({"replicas": 2,
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}]}));
        set["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "config", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]);
        create(&cluster, STATEFUL_SETS, set);
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let claims: BTreeMap<String, Arc<Value>> = list_all(&cluster, CLAIMS)
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
        let pod = list_all(&cluster, PODS)
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
        let events: Vec<String> = list_all(&cluster, EVENTS)
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
        assert_eq!(list_all(&cluster, PODS).len(), 1);
        assert_eq!(list_all(&cluster, CLAIMS).len(), 2);
    }

    #[test]
    fn claims_go_with_their_pod_or_their_set_as_the_retention_policy_says() {
        let claim_names = |cluster: &Cluster| -> Vec<String> {
            let mut names: Vec<String> = list_all(cluster, CLAIMS)
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
            let set = db(json!({"replicas": 2,
                "persistentVolumeClaimRetentionPolicy":
                    {"whenDeleted": when_deleted, "whenScaled": when_scaled},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]}));
            create(&cluster, STATEFUL_SETS, set);
            let at = Utc::now() + chrono::Duration::seconds(5);
            settle(&cluster, at);
            let owners = |cluster: &Cluster, claim: &str| -> Vec<String> {
                let claim = list_all(cluster, CLAIMS)
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
            let set = list_all(&cluster, STATEFUL_SETS)[0].clone();
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
        let mut set = db(json!({"replicas": 1, "revisionHistoryLimit": 1}));
        set["metadata"]["annotations"] = json!({"note": "kept"});
        set["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a");
        create(&cluster, STATEFUL_SETS, set);
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        // Revision number and image of each ControllerRevision, by name.
        let history = |cluster: &Cluster| -> BTreeMap<String, (i64, String)> {
            list_all(cluster, CONTROLLER_REVISIONS)
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
        let pod = &list_all(&cluster, PODS)[0];
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
        let set = &list_all(&cluster, STATEFUL_SETS)[0];
        assert_eq!(set["status"]["updateRevision"], b.as_str());
        assert_eq!(set["status"]["currentRevision"], b.as_str());
    }

    #[test]
    fn a_stateful_set_partition_keeps_the_lower_ordinals_at_their_revision() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let partition = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        create(
            &cluster,
            STATEFUL_SETS,
            db(json!({"replicas": 3, "updateStrategy": partition})),
        );
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let old = list_all(&cluster, STATEFUL_SETS)[0]["status"]["currentRevision"].clone();
        edit_spec(&cluster, STATEFUL_SETS, "db", |spec| {
            spec["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
        });
        settle(&cluster, at);
        let images: BTreeMap<String, String> = list_all(&cluster, PODS)
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
        let db = &list_all(&cluster, STATEFUL_SETS)[0];
        assert_eq!(db["status"]["updatedReplicas"], 1);
        assert_eq!(
            db["status"]["currentRevision"], old,
            "not every Pod is updated"
        );
        assert_ne!(db["status"]["updateRevision"], old);
        // A Pod below the partition that is deleted comes back at its revision's template.
        let pod = list_all(&cluster, PODS)
            .into_iter()
            .find(|p| p["metadata"]["name"] == "db-0")
            .unwrap();
        assert!(Writes::new(&cluster).delete(PODS, &pod));
        settle(&cluster, at);
        let again = list_all(&cluster, PODS)
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
        let mut pi = job("pi", json!({"completions": 3, "parallelism": 2}));
        pi["spec"]["template"]["spec"]["containers"] = json!([{"name": "pi", "image": "perl"}]);
        create(&cluster, JOBS, pi);
        // Two at a time: the first pass starts two Pods.
        pass(&cluster, Duration::ZERO, Utc::now());
        assert_eq!(list_all(&cluster, PODS).len(), 2);
        let pi = &list_all(&cluster, JOBS)[0];
        assert_eq!(pi["status"]["active"], 2);
        assert!(pi["status"]["startTime"].is_string());
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));

        let pods = list_all(&cluster, PODS);
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
        let pi = &list_all(&cluster, JOBS)[0];
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
            list_all(&cluster, EVENTS)
                .iter()
                .fold(BTreeMap::new(), |mut m, e| {
                    *m.entry(e["reason"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                    m
                });
        assert_eq!(reasons.get("SuccessfulCreate"), Some(&3), "{reasons:?}");
        assert_eq!(reasons.get("Completed"), Some(&1), "{reasons:?}");

        // A suspended Job starts nothing.
        let suspended = job("later", json!({"suspend": true}));
        cluster
            .create(
                &target(&cluster, JOBS, None),
                suspended,
                &WriteOptions::default(),
            )
            .unwrap();
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(list_all(&cluster, PODS).len(), 3);
        let later = |cluster: &Cluster| {
            list_all(cluster, JOBS)
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
        edit_spec(&cluster, JOBS, "later", |spec| {
            spec["suspend"] = json!(false)
        });
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
        assert_eq!(list_all(&cluster, PODS).len(), 4);
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
            let mut sizes: Vec<(i64, String, String)> = list_all(cluster, REPLICA_SETS)
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
        let events: Vec<String> = list_all(&cluster, "events")
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
            list_all(&cluster, "events")
                .iter()
                .any(|e| e["message"].as_str().unwrap().ends_with("from 11 to 5")),
            "the proportional step first"
        );
    }

    /// The Pod `name`, if it is there.
    fn pod(cluster: &Cluster, name: &str) -> Option<Arc<Value>> {
        list_all(cluster, PODS)
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Evicts the Pod `name` through `pods/eviction`, as `kubectl drain` does.
    fn evict(cluster: &Cluster, name: &str) -> Result<(), ApiError> {
        let target = Target {
            subresource: Some("eviction".into()),
            ..target(cluster, PODS, Some(name))
        };
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name}});
        cluster.evict(
            &target,
            &eviction,
            &WriteOptions::default(),
            &DeleteOptions::default(),
        )
    }

    /// Deletes `name` of `gr` as a client would, with `propagation`.
    fn delete(cluster: &Cluster, gr: &str, name: &str, propagation: Option<gc::Propagation>) {
        let options = DeleteOptions {
            propagation,
            ..DeleteOptions::default()
        };
        cluster
            .delete(&target(cluster, gr, Some(name)), &options)
            .unwrap();
    }

    #[test]
    fn a_job_counts_each_finished_pod_once_through_its_tracking_finalizer() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let spec = json!({"completions": 2, "parallelism": 1, "backoffLimit": 1});
        create(&cluster, JOBS, job("work", spec));
        let start = Utc::now();
        pass(&cluster, Duration::ZERO, start);
        let first = list_all(&cluster, PODS)[0].clone();
        assert_eq!(first["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        let first_name = first["metadata"]["name"].as_str().unwrap();
        let uid = first["metadata"]["uid"].clone();

        // Deleted while it runs: it stays until the controller has it in
        // `uncountedTerminatedPods` and lets it go; then it counts as failed, and a
        // replacement runs.
        delete(&cluster, PODS, first_name, None);
        assert!(pod(&cluster, first_name).is_some_and(|p| gc::is_deleting(&p)));
        pass(&cluster, Duration::ZERO, start);
        assert!(pod(&cluster, first_name).is_none(), "its finalizer removed");
        let work = &list_all(&cluster, JOBS)[0];
        assert_eq!(
            work["status"]["uncountedTerminatedPods"],
            json!({"failed": [uid]})
        );
        assert_eq!(work["status"].get("failed"), None, "not counted yet");
        assert_eq!(work["status"]["active"], 1, "a replacement");
        pass(&cluster, Duration::ZERO, start);
        let work = &list_all(&cluster, JOBS)[0];
        assert_eq!(work["status"]["failed"], 1);
        assert_eq!(work["status"]["uncountedTerminatedPods"], json!({}));

        settle(&cluster, start + chrono::Duration::seconds(5));
        let work = &list_all(&cluster, JOBS)[0];
        assert_eq!(work["status"]["succeeded"], 2);
        assert_eq!(
            work["status"]["failed"], 1,
            "one failure is within the limit"
        );
        assert!(finished_condition(work).is_some_and(|c| c["type"] == "Complete"));
        let pods = list_all(&cluster, PODS);
        assert_eq!(pods.len(), 2);
        assert!(
            pods.iter()
                .all(|p| p["metadata"].get("finalizers").is_none()),
            "every Pod counted and let go"
        );

        // A counted Pod deleted later changes nothing: no count drops, no work runs again.
        let done = pods[0]["metadata"]["name"].as_str().unwrap().to_owned();
        delete(&cluster, PODS, &done, None);
        settle(&cluster, start + chrono::Duration::seconds(10));
        assert_eq!(list_all(&cluster, JOBS)[0]["status"]["succeeded"], 2);
        assert_eq!(list_all(&cluster, PODS).len(), 1);
    }

    #[test]
    fn a_pass_takes_at_most_500_finished_pods_into_the_status() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let spec = json!({"completions": 510, "parallelism": 510});
        create(&cluster, JOBS, job("wide", spec));
        let at = Utc::now() + chrono::Duration::seconds(5);
        let mut most = 0;
        for _ in 0..20 {
            pass(&cluster, Duration::ZERO, at);
            let wide = &list_all(&cluster, JOBS)[0];
            let pending = wide["status"]["uncountedTerminatedPods"]["succeeded"]
                .as_array()
                .map_or(0, Vec::len);
            most = most.max(pending);
            if finished_condition(wide).is_some() {
                break;
            }
        }
        assert_eq!(most, 500, "MaxUncountedPods at once");
        let wide = &list_all(&cluster, JOBS)[0];
        assert_eq!(wide["status"]["succeeded"], 510);
        assert!(finished_condition(wide).is_some_and(|c| c["type"] == "Complete"));
    }

    #[test]
    fn a_job_whose_pods_fail_beyond_its_backoff_limit_fails() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(&cluster, JOBS, job("once", json!({"backoffLimit": 0})));
        let start = Utc::now();
        pass(&cluster, Duration::ZERO, start);
        let first = list_all(&cluster, PODS)[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        delete(&cluster, PODS, &first, None);
        settle(&cluster, start);
        let once = &list_all(&cluster, JOBS)[0];
        let conditions: Vec<(&str, &str, &str)> = once["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let field = |f: &str| c[f].as_str().unwrap_or_default();
                (field("type"), field("reason"), field("message"))
            })
            .collect();
        let limit = |kind| {
            (
                kind,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        };
        assert_eq!(conditions, [limit("FailureTarget"), limit("Failed")]);
        assert_eq!(once["status"]["failed"], 1);
        assert!(list_all(&cluster, PODS).is_empty(), "nothing replaced it");
        let warned = list_all(&cluster, EVENTS)
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "BackoffLimitExceeded");
        assert!(warned);
    }

    #[test]
    fn a_pod_failure_policy_ignores_an_eviction_and_fails_the_job_on_a_kill() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let policy = json!({"backoffLimit": 0, "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [137]}}]}});
        create(&cluster, JOBS, job("careful", policy));
        // Pods that take a minute to start: each one is still there when it is evicted.
        let (start, slow) = (Utc::now(), Duration::from_secs(60));
        settle_with(&cluster, slow, start);
        let first = list_all(&cluster, PODS)[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        // Evicted (as `kubectl drain` does): the kubelet stops it, the policy ignores the
        // failure, a replacement runs.
        evict(&cluster, &first).unwrap();
        pass(&cluster, slow, start);
        let stopped = pod(&cluster, &first).unwrap();
        assert_eq!(
            stopped["status"]["phase"], "Failed",
            "stopped, not yet counted"
        );
        assert_eq!(
            stopped["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            137
        );
        assert_eq!(
            list_all(&cluster, PODS).len(),
            1,
            "no replacement while it terminates"
        );
        settle_with(&cluster, slow, start);
        assert!(pod(&cluster, &first).is_none());
        let careful = &list_all(&cluster, JOBS)[0];
        assert_eq!(careful["status"].get("failed"), None, "ignored");
        assert!(finished_condition(careful).is_none());
        let pods = list_all(&cluster, PODS);
        assert_eq!(pods.len(), 1, "replaced");

        // Deleted outright: killed with 137 and no DisruptionTarget, so the FailJob rule.
        let second = pods[0]["metadata"]["name"].as_str().unwrap().to_owned();
        delete(&cluster, PODS, &second, None);
        settle_with(&cluster, slow, start);
        let careful = &list_all(&cluster, JOBS)[0];
        let failed = finished_condition(careful).unwrap();
        assert_eq!(failed["type"], "Failed");
        assert_eq!(failed["reason"], "PodFailurePolicy");
        assert_eq!(
            failed["message"],
            format!(
                "Container c for pod default/{second} failed with exit code 137 matching FailJob rule at index 1"
            )
        );
        assert_eq!(careful["status"]["failed"], 1);
    }

    #[test]
    fn a_disruption_budget_counts_healthy_pods_and_evictions_take_from_it() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(&cluster, DEPLOYMENTS, web(json!({"replicas": 3})));
        let budget = |name: &str, bound: Value| {
            let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}}});
            with_spec(budget, bound)
        };
        create(
            &cluster,
            DISRUPTION_BUDGETS,
            budget("web", json!({"minAvailable": 2})),
        );
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let status = |cluster: &Cluster| list_all(cluster, DISRUPTION_BUDGETS)[0]["status"].clone();
        let now = status(&cluster);
        assert_eq!(
            (
                &now["expectedPods"],
                &now["currentHealthy"],
                &now["desiredHealthy"],
                &now["disruptionsAllowed"],
                &now["observedGeneration"],
            ),
            (&json!(3), &json!(3), &json!(2), &json!(1), &json!(1))
        );
        assert_eq!(now["conditions"][0]["type"], "DisruptionAllowed");
        assert_eq!(now["conditions"][0]["status"], "True");
        assert_eq!(now["conditions"][0]["reason"], "SufficientPods");

        // One eviction is allowed and taken; the next is refused until the replacement is ready.
        let names: Vec<String> = list_all(&cluster, PODS)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        evict(&cluster, &names[0]).unwrap();
        let taken = status(&cluster);
        assert_eq!(taken["disruptionsAllowed"], 0);
        assert!(taken["disruptedPods"][&names[0]].is_string());
        assert_eq!(taken["conditions"][0]["reason"], "InsufficientPods");
        let refused = evict(&cluster, &names[1]).unwrap_err();
        assert_eq!(refused.code(), 429);
        assert_eq!(
            refused.to_status()["details"]["causes"][0],
            json!({"reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 3 currently"})
        );
        assert!(pod(&cluster, &names[1]).is_some(), "refused: still there");
        settle(&cluster, at + chrono::Duration::seconds(5));
        assert_eq!(status(&cluster)["disruptionsAllowed"], 1);
        assert_eq!(
            status(&cluster).get("disruptedPods"),
            None,
            "the evicted Pod is gone"
        );

        // A percentage reads the controllers' scale, rounded up: 34 % of 3 may be unavailable.
        create(
            &cluster,
            DISRUPTION_BUDGETS,
            budget("pct", json!({"maxUnavailable": "34%"})),
        );
        settle(&cluster, at + chrono::Duration::seconds(10));
        let pct = list_all(&cluster, DISRUPTION_BUDGETS)
            .into_iter()
            .find(|b| b["metadata"]["name"] == "pct")
            .unwrap();
        assert_eq!(pct["status"]["expectedPods"], 3);
        assert_eq!(pct["status"]["desiredHealthy"], 1);
        // Two budgets select these Pods now: the eviction subresource refuses.
        assert_eq!(evict(&cluster, &names[1]).unwrap_err().code(), 500);
    }

    #[test]
    fn a_disruption_budget_records_why_it_cannot_count_and_fails_safe() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let budget = |name: &str, app: &str, bound: Value| {
            let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": app}}}});
            with_spec(budget, bound)
        };
        let budget_named = |cluster: &Cluster, name: &str| {
            list_all(cluster, DISRUPTION_BUDGETS)
                .into_iter()
                .find(|b| b["metadata"]["name"] == name)
                .unwrap()
        };
        let events_of = |cluster: &Cluster, name: &str| -> Vec<(String, String, String)> {
            list_all(cluster, "events")
                .iter()
                .filter(|e| {
                    e["involvedObject"]["kind"] == "PodDisruptionBudget"
                        && e["involvedObject"]["name"] == name
                })
                .map(|e| {
                    assert_eq!(e["source"]["component"], "controllermanager");
                    let text = |f: &str| e[f].as_str().unwrap().to_owned();
                    (text("type"), text("reason"), text("message"))
                })
                .collect()
        };
        let at = Utc::now() + chrono::Duration::seconds(5);

        // Nothing selected: `NoPods`, once (the passes settle: no Event on every pass).
        create(
            &cluster,
            DISRUPTION_BUDGETS,
            budget("none", "nothing", json!({"minAvailable": 1})),
        );
        settle(&cluster, at);
        settle(&cluster, at + chrono::Duration::seconds(1));
        assert_eq!(
            events_of(&cluster, "none"),
            [(
                "Normal".into(),
                "NoPods".into(),
                "No matching pods found".into()
            )]
        );

        // A Pod no controller holds, under a percentage: `UnmanagedPods`, left out of the count.
        let bare = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bare", "namespace": "default", "labels": {"app": "bare"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        create(&cluster, PODS, bare);
        create(
            &cluster,
            DISRUPTION_BUDGETS,
            budget("bare", "bare", json!({"maxUnavailable": "50%"})),
        );
        settle(&cluster, at);
        assert_eq!(budget_named(&cluster, "bare")["status"]["expectedPods"], 0);
        assert_eq!(
            events_of(&cluster, "bare"),
            [(
                "Warning".into(),
                "UnmanagedPods".into(),
                "Pods selected by this PodDisruptionBudget (selector: \
                 &LabelSelector{MatchLabels:map[string]string{app: bare,},\
                 MatchExpressions:[]LabelSelectorRequirement{},}) were found to be unmanaged. As \
                 a result, the status of the PDB cannot be calculated correctly, which may result \
                 in undefined behavior. To account for these pods please set \".spec.minAvailable\" \
                 field of the PDB to an integer value."
                    .into()
            )]
        );

        // A Job's Pods under a percentage cannot be scaled: the budget fails safe.
        create(&cluster, JOBS, job("batch", json!({"parallelism": 1})));
        settle_with(&cluster, Duration::from_secs(60), at);
        let job_pod = list_all(&cluster, PODS)
            .into_iter()
            .find(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("batch-")
            })
            .unwrap();
        let job_label = job_pod["metadata"]["labels"]["batch.kubernetes.io/job-name"].clone();
        let failing = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "jobs", "namespace": "default"},
            "spec": {"minAvailable": "50%",
                "selector": {"matchLabels": {"batch.kubernetes.io/job-name": job_label}}}});
        create(&cluster, DISRUPTION_BUDGETS, failing);
        settle_with(&cluster, Duration::from_secs(60), at);
        let status = budget_named(&cluster, "jobs")["status"].clone();
        assert_eq!(status["disruptionsAllowed"], 0);
        let condition = &status["conditions"][0];
        assert_eq!(
            (
                &condition["type"],
                &condition["status"],
                &condition["reason"],
                &condition["message"]
            ),
            (
                &json!("DisruptionAllowed"),
                &json!("False"),
                &json!("SyncFailed"),
                &json!("jobs.batch does not implement the scale subresource")
            )
        );
        assert_eq!(
            events_of(&cluster, "jobs"),
            [(
                "Warning".into(),
                "CalculateExpectedPodCountFailed".into(),
                "Failed to calculate the number of expected pods: jobs.batch does not implement \
                 the scale subresource"
                    .into()
            )]
        );

        // An int `minAvailable` expects every Pod selected, one being deleted included.
        create(&cluster, DEPLOYMENTS, web(json!({"replicas": 2})));
        create(
            &cluster,
            DISRUPTION_BUDGETS,
            budget("web", "web", json!({"minAvailable": 1})),
        );
        settle(&cluster, at);
        let held = list_all(&cluster, PODS)
            .into_iter()
            .find(|p| p["metadata"]["labels"]["app"] == "web")
            .unwrap();
        let name = held["metadata"]["name"].as_str().unwrap().to_owned();
        let mut holding = (*held).clone();
        holding["metadata"]["finalizers"] = json!(["example.com/hold"]);
        cluster
            .update(
                &target(&cluster, PODS, Some(&name)),
                holding,
                &WriteOptions::default(),
            )
            .unwrap();
        delete(&cluster, PODS, &name, None);
        settle(&cluster, at + chrono::Duration::seconds(1));
        let status = budget_named(&cluster, "web")["status"].clone();
        assert_eq!(
            (&status["expectedPods"], &status["currentHealthy"]),
            (&json!(3), &json!(2)),
            "the held Pod is expected, not healthy; its replacement is both"
        );
    }

    #[test]
    fn a_service_gets_endpoints_and_a_slice_of_its_pods_and_loses_them_with_it() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let mut deployment = web(json!({"replicas": 3}));
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"name": "http", "containerPort": 8080}]);
        create(&cluster, DEPLOYMENTS, deployment);
        let service = |name: &str, spec: Value| {
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default", "labels": {"tier": "front"}},
                "spec": spec})
        };
        create(
            &cluster,
            SERVICES,
            service(
                "web",
                json!({"selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": "http"}]}),
            ),
        );
        // A Service without a selector keeps the Endpoints its user writes.
        create(
            &cluster,
            SERVICES,
            service("external", json!({"ports": [{"port": 5432}]})),
        );
        create(
            &cluster,
            ENDPOINTS,
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "external", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]}),
        );
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let endpoints = |cluster: &Cluster, name: &str| {
            list_all(cluster, ENDPOINTS)
                .into_iter()
                .find(|e| e["metadata"]["name"] == name)
        };
        let mut ips: Vec<String> = list_all(&cluster, PODS)
            .iter()
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_owned())
            .collect();
        ips.sort();
        let web_endpoints = endpoints(&cluster, "web").expect("the controller made them");
        let subset = &web_endpoints["subsets"][0];
        let listed: Vec<&str> = subset["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip"].as_str().unwrap())
            .collect();
        assert_eq!(listed, ips, "every ready Pod, by address");
        assert_eq!(subset["ports"], json!([{"port": 8080, "protocol": "TCP"}]));
        assert_eq!(subset["addresses"][0]["targetRef"]["kind"], "Pod");
        assert_eq!(subset["addresses"][0]["nodeName"], NODE);
        assert_eq!(
            web_endpoints["metadata"]["labels"],
            json!({"tier": "front"})
        );
        assert_eq!(
            endpoints(&cluster, "external").unwrap()["subsets"][0]["addresses"][0]["ip"],
            "192.0.2.10",
            "not the controller's"
        );
        let slices = list_all(&cluster, ENDPOINT_SLICES);
        assert_eq!(slices.len(), 1, "one slice, of the selecting Service");
        let slice = &slices[0];
        assert!(
            slice["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-")
        );
        assert_eq!(
            slice["metadata"]["labels"],
            json!({"tier": "front", "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"})
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["ports"],
            json!([{"name": "", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(slice["endpoints"].as_array().unwrap().len(), 3);
        assert_eq!(
            slice["endpoints"][0]["conditions"],
            json!({"ready": true, "serving": true, "terminating": false})
        );

        // A Pod that stops being ready moves to the unready addresses.
        let pod = list_all(&cluster, PODS)[0].clone();
        let mut unready = (*pod).clone();
        unready["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        let status = Target {
            subresource: Some("status".into()),
            ..target(&cluster, PODS, pod["metadata"]["name"].as_str())
        };
        cluster
            .update(&status, unready, &WriteOptions::default())
            .unwrap();
        pass(&cluster, Duration::ZERO, at);
        let web_endpoints = endpoints(&cluster, "web").unwrap();
        let subset = &web_endpoints["subsets"][0];
        assert_eq!(subset["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(
            subset["notReadyAddresses"][0]["ip"], pod["status"]["podIP"],
            "{subset}"
        );

        // The Service goes: its Endpoints with it, its slice as what it owns.
        delete(&cluster, SERVICES, "web", None);
        settle(&cluster, at);
        assert!(endpoints(&cluster, "web").is_none());
        assert!(list_all(&cluster, ENDPOINT_SLICES).is_empty());
        assert!(endpoints(&cluster, "external").is_some());
    }

    #[test]
    fn a_cron_job_starts_a_job_per_scheduled_time_and_keeps_its_history() {
        use crate::cluster::timestamp;
        use chrono::Timelike as _;
        let cluster = Cluster::open(None, 10_000).unwrap();
        let cron_job = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": "*/5 * * * *", "successfulJobsHistoryLimit": 2,
                "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        // Created well inside a five-minute window, so the first due time is the window's end.
        let to_boundary = |t: DateTime<Utc>| i64::from((5 - t.minute() % 5) * 60 - t.second());
        if to_boundary(Utc::now()) < 3 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let start = Utc::now();
        create(&cluster, CRON_JOBS, cron_job);
        let cron = |cluster: &Cluster| list_all(cluster, CRON_JOBS)[0].clone();
        let jobs = |cluster: &Cluster| -> Vec<String> {
            let mut names: Vec<String> = list_all(cluster, JOBS)
                .iter()
                .map(|j| j["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        };
        // Nothing is due before the first multiple of five minutes.
        let to_due = to_boundary(start);
        settle_with(&cluster, Duration::from_secs(3600), start);
        assert!(jobs(&cluster).is_empty());

        // Once due: one Job, named after the minute, active, with the scheduled time.
        let due = start + chrono::Duration::seconds(to_due);
        settle_with(&cluster, Duration::from_secs(3600), due);
        let names = jobs(&cluster);
        assert_eq!(names, [format!("tick-{}", due.timestamp() / 60)]);
        let job = list_all(&cluster, JOBS)[0].clone();
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["metadata"]["labels"]["app"], "tick");
        assert_eq!(
            job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
            timestamp(due.with_second(0).unwrap())
        );
        let status = cron(&cluster)["status"].clone();
        assert_eq!(status["active"][0]["name"], names[0]);
        assert_eq!(
            status["lastScheduleTime"],
            timestamp(due.with_second(0).unwrap())
        );

        // It completes: out of the active list, its success recorded and seen.
        settle(&cluster, due + chrono::Duration::seconds(30));
        let status = cron(&cluster)["status"].clone();
        assert!(status.get("active").is_none(), "{status}");
        assert!(status["lastSuccessfulTime"].is_string());
        let reasons: Vec<String> = list_all(&cluster, "events")
            .iter()
            .filter(|e| e["involvedObject"]["kind"] == "CronJob")
            .map(|e| e["reason"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(reasons, ["SuccessfulCreate", "SawCompletedJob"]);

        // Three more runs, an hour apart: the missed times are not all made up, only the latest
        // runs; two successful Jobs are kept.
        for hour in 1..=3 {
            let at = due + chrono::Duration::hours(hour);
            settle(&cluster, at);
            settle(&cluster, at + chrono::Duration::seconds(30));
        }
        let names = jobs(&cluster);
        assert_eq!(names.len(), 2, "{names:?}");
        let last = due + chrono::Duration::hours(3);
        assert!(
            names.contains(&format!("tick-{}", last.timestamp() / 60)),
            "{names:?}"
        );

        // Suspended, nothing new starts.
        edit_spec(&cluster, CRON_JOBS, "tick", |spec| {
            spec["suspend"] = json!(true)
        });
        settle(&cluster, last + chrono::Duration::hours(1));
        assert_eq!(jobs(&cluster), names);
    }

    #[test]
    fn a_cron_job_that_missed_a_year_of_runs_starts_only_the_latest() {
        use crate::cluster::timestamp;
        let cluster = Cluster::open(None, 10_000).unwrap();
        let cron_job = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "often", "namespace": "default"},
            "spec": {"schedule": "* * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        create(&cluster, CRON_JOBS, cron_job);
        // As a state directory restored a year later would have it.
        let mut stale = (*list_all(&cluster, CRON_JOBS)[0]).clone();
        stale["status"] =
            json!({"lastScheduleTime": timestamp(Utc::now() - chrono::Duration::days(365))});
        let status = Target {
            subresource: Some("status".into()),
            ..target(&cluster, CRON_JOBS, Some("often"))
        };
        cluster
            .update(&status, stale, &WriteOptions::default())
            .unwrap();
        let now = Utc::now();
        pass(&cluster, Duration::from_secs(3600), now);
        let jobs = list_all(&cluster, JOBS);
        assert_eq!(jobs.len(), 1, "one Job, not one per missed minute");
        assert_eq!(
            jobs[0]["metadata"]["name"],
            format!("often-{}", now.timestamp() / 60)
        );
        let warning = list_all(&cluster, "events")
            .into_iter()
            .find(|e| e["reason"] == "TooManyMissedTimes")
            .expect("the controller says so");
        assert!(
            warning["message"]
                .as_str()
                .unwrap()
                .starts_with("too many missed start times: 10001."),
            "{warning}"
        );
    }

    #[test]
    fn an_index_that_fails_past_its_backoff_limit_is_not_run_again_and_fails_the_job() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1});
        create(&cluster, JOBS, job("per", spec));
        let (start, slow) = (Utc::now(), Duration::from_secs(60));
        settle_with(&cluster, slow, start);
        let index_pod = |cluster: &Cluster, index: i64| {
            list_all(cluster, PODS)
                .into_iter()
                .find(|p| completion_index(p) == Some(index) && !gc::is_deleting(p))
        };
        let count = |pod: &Value| {
            pod["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"].clone()
        };
        let first = index_pod(&cluster, 1).unwrap();
        assert_eq!(count(&first), "0");
        // Index 1 fails once: it runs again, its count carried on.
        delete(
            &cluster,
            PODS,
            first["metadata"]["name"].as_str().unwrap(),
            None,
        );
        settle_with(&cluster, slow, start);
        let second = index_pod(&cluster, 1).expect("index 1 runs again");
        assert_eq!(count(&second), "1");
        let per = &list_all(&cluster, JOBS)[0];
        assert_eq!(per["status"]["failedIndexes"], "");
        assert_eq!(per["status"]["failed"], 1);
        // Twice: past its limit of one, the index fails and is not run again.
        delete(
            &cluster,
            PODS,
            second["metadata"]["name"].as_str().unwrap(),
            None,
        );
        settle_with(&cluster, slow, start);
        assert!(index_pod(&cluster, 1).is_none());
        let per = &list_all(&cluster, JOBS)[0];
        assert_eq!(per["status"]["failedIndexes"], "1");
        assert_eq!(per["status"]["failed"], 2);
        assert!(
            finished_condition(per).is_none(),
            "indexes 0 and 2 still run"
        );
        // The others succeed: the Job fails for its failed index.
        settle(&cluster, start + chrono::Duration::minutes(5));
        let per = &list_all(&cluster, JOBS)[0];
        assert_eq!(per["status"]["completedIndexes"], "0,2");
        let failed = finished_condition(per).unwrap();
        assert_eq!(
            (&failed["type"], &failed["reason"], &failed["message"]),
            (
                &json!("Failed"),
                &json!("FailedIndexes"),
                &json!("Job has failed indexes")
            )
        );
    }

    #[test]
    fn an_orphaned_job_pod_loses_the_tracking_finalizer() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(&cluster, JOBS, job("left", json!({})));
        pass(&cluster, Duration::ZERO, Utc::now());
        delete(&cluster, JOBS, "left", Some(gc::Propagation::Orphan));
        settle(&cluster, Utc::now());
        let pods = list_all(&cluster, PODS);
        assert_eq!(pods.len(), 1, "kept");
        assert_eq!(pods[0]["metadata"].get("ownerReferences"), None);
        assert_eq!(pods[0]["metadata"].get("finalizers"), None);
    }

    #[test]
    fn an_indexed_job_runs_each_index_once_and_lists_them_completed() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let mut idx = job(
            "idx",
            json!({"completions": 3, "parallelism": 2, "completionMode": "Indexed"}),
        );
        idx["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "c", "image": "busybox"},
            {"name": "d", "image": "busybox", "env": [{"name": "JOB_COMPLETION_INDEX", "value": "mine"}]}]);
        create(&cluster, JOBS, idx);
        pass(&cluster, Duration::ZERO, Utc::now());
        let pods = list_all(&cluster, PODS);
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
        let pods = list_all(&cluster, PODS);
        let mut indexes: Vec<i64> = pods.iter().filter_map(|p| completion_index(p)).collect();
        indexes.sort_unstable();
        assert_eq!(indexes, [0, 1, 2], "each index once");
        let idx = &list_all(&cluster, JOBS)[0];
        assert_eq!(idx["status"]["completedIndexes"], "0-2");
        assert_eq!(idx["status"]["succeeded"], 3);
        assert!(finished_condition(idx).is_some_and(|c| c["type"] == "Complete"));
    }

    #[test]
    fn an_indexed_job_meeting_its_success_policy_completes_and_stops_the_rest() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        // Four indexes, two at a time; the first rule wants index 3, the second 0 and 1.
        let lead = job(
            "lead",
            json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed",
                "successPolicy": {"rules": [
                    {"succeededIndexes": "3", "succeededCount": 1},
                    {"succeededIndexes": "0-1"}]}}),
        );
        create(&cluster, JOBS, lead);
        let start = Utc::now() + chrono::Duration::seconds(1);
        pass(&cluster, Duration::from_secs(1), start);
        // Indexes 0 and 1 run and succeed; the rule at index 1 is met before 2 and 3 are done.
        settle(&cluster, start + chrono::Duration::seconds(5));
        let lead = &list_all(&cluster, JOBS)[0];
        let conditions: Vec<(String, String, String)> = lead["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let field = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
                (field("type"), field("reason"), field("message"))
            })
            .collect();
        let rule = |kind: &str| {
            (
                kind.to_owned(),
                "SuccessPolicy".to_owned(),
                "Matched rules at index 1".to_owned(),
            )
        };
        assert_eq!(conditions, [rule("SuccessCriteriaMet"), rule("Complete")]);
        let status = &lead["status"];
        assert_eq!(status.get("active"), None);
        assert_eq!(
            status.get("failed"),
            None,
            "stopped Pods do not count as failed"
        );
        assert_eq!(
            status["completedIndexes"], "0,1",
            "it ended before indexes 2 and 3"
        );
        assert_eq!(status["succeeded"], 2);
        assert!(
            list_all(&cluster, PODS)
                .iter()
                .all(|p| p["status"]["phase"] == "Succeeded"),
            "no Pod left running"
        );
    }

    #[test]
    fn an_indexed_job_removes_a_pod_repeating_an_index_and_replaces_none_that_succeeded() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let idx = json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed"});
        create(&cluster, JOBS, job("idx", idx));
        let job = list_all(&cluster, JOBS)[0].clone();
        // A Pod of index 1 made by someone else, before the controller's first pass.
        let mut stray = indexed_pod(&job, "default", 1);
        stray["metadata"]["name"] = json!("stray");
        create(&cluster, PODS, stray);
        pass(&cluster, Duration::ZERO, Utc::now());
        let mut pods: Vec<i64> = list_all(&cluster, PODS)
            .iter()
            .filter_map(|p| completion_index(p))
            .collect();
        pods.sort_unstable();
        assert_eq!(pods, [0, 1], "index 1 is taken: only index 0 is started");
        let mut second = indexed_pod(&job, "default", 1);
        second["metadata"]["name"] = json!("second");
        create(&cluster, PODS, second);
        pass(&cluster, Duration::ZERO, Utc::now());
        let names: Vec<String> = list_all(&cluster, PODS)
            .iter()
            .filter(|p| completion_index(p) == Some(1))
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names.len(), 1, "one Pod per index: {names:?}");
    }

    #[test]
    fn a_job_past_its_active_deadline_fails_and_its_pods_are_deleted() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(
            &cluster,
            JOBS,
            job("slow", json!({"activeDeadlineSeconds": 10})),
        );
        // Its Pod would take two minutes: the deadline comes first, and the pass says when.
        let start = Utc::now();
        let delay = Duration::from_secs(60);
        pass(&cluster, delay, start);
        let wake = pass(&cluster, delay, start).unwrap();
        assert!(
            wake > Duration::from_secs(8) && wake <= Duration::from_secs(10),
            "{wake:?}"
        );
        assert_eq!(list_all(&cluster, PODS).len(), 1);
        for _ in 0..3 {
            pass(&cluster, delay, start + chrono::Duration::seconds(11));
        }
        assert!(
            list_all(&cluster, PODS).is_empty(),
            "its active Pod is deleted"
        );
        let slow = &list_all(&cluster, JOBS)[0];
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
        let warned = list_all(&cluster, EVENTS)
            .iter()
            .filter(|e| e["type"] == "Warning" && e["reason"] == "DeadlineExceeded")
            .count();
        assert_eq!(warned, 1, "one Warning Event");
    }

    #[test]
    fn a_finished_job_with_a_ttl_is_deleted_with_its_pods_once_the_ttl_runs_out() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(
            &cluster,
            JOBS,
            job("once", json!({"ttlSecondsAfterFinished": 60})),
        );
        let now = Utc::now();
        settle(&cluster, now + chrono::Duration::seconds(5));
        assert_eq!(
            list_all(&cluster, JOBS).len(),
            1,
            "finished, its TTL running"
        );
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
        assert!(list_all(&cluster, JOBS).is_empty());
        assert!(
            list_all(&cluster, PODS).is_empty(),
            "Foreground: its Pods went first"
        );
    }

    /// A Node `name` with `labels` and `spec`, ready.
    fn worker(name: &str, labels: Value, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels}, "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn a_daemon_set_runs_a_pod_on_each_node_it_fits_and_rolls_within_max_unavailable() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let node_target = |name: Option<&str>| Target {
            info: cluster.lock().info(NODES).unwrap(),
            namespace: None,
            name: name.map(str::to_owned),
            subresource: None,
        };
        let nodes = [
            worker("worker-1", json!({"role": "worker"}), json!({})),
            // A taint the daemon Pods do not tolerate.
            worker(
                "worker-2",
                json!({"role": "worker"}),
                json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
            ),
            // Cordoned: daemon Pods tolerate `node.kubernetes.io/unschedulable`.
            worker(
                "worker-3",
                json!({"role": "worker"}),
                json!({"unschedulable": true}),
            ),
        ];
        for node in nodes {
            cluster
                .create(&node_target(None), node, &WriteOptions::default())
                .unwrap();
        }
        let agent = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}},
        });
        create(&cluster, DAEMON_SETS, agent);
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let placed = |cluster: &Cluster| -> BTreeMap<String, String> {
            list_all(cluster, PODS)
                .iter()
                .map(|p| {
                    assert_eq!(
                        p["spec"]["nodeName"].as_str(),
                        pinned_node(p),
                        "bound where it is pinned"
                    );
                    (
                        p["spec"]["nodeName"].as_str().unwrap().to_owned(),
                        p["spec"]["containers"][0]["image"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    )
                })
                .collect()
        };
        let all_on = |image: &str, nodes: &[&str]| -> BTreeMap<String, String> {
            nodes
                .iter()
                .map(|n| ((*n).to_owned(), image.to_owned()))
                .collect()
        };
        assert_eq!(
            placed(&cluster),
            all_on("agent:1", &[NODE, "worker-1", "worker-3"])
        );
        let set = list_all(&cluster, DAEMON_SETS)[0].clone();
        assert_eq!(
            set["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
            "1"
        );
        assert_eq!(
            set["status"],
            json!({"currentNumberScheduled": 3, "numberMisscheduled": 0,
                "desiredNumberScheduled": 3, "numberReady": 3, "observedGeneration": 1,
                "updatedNumberScheduled": 3, "numberAvailable": 3})
        );
        let pod = &list_all(&cluster, PODS)[0];
        assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "1");
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("agent-")
        );
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 6, "{tolerations:?}");
        assert!(
            tolerations.contains(&json!({"key": "node.kubernetes.io/unschedulable",
            "operator": "Exists", "effect": "NoSchedule"}))
        );

        // A new template: one Node at a time is without an available Pod (maxUnavailable 1).
        edit_spec(&cluster, DAEMON_SETS, "agent", |spec| {
            spec["template"]["spec"]["containers"][0]["image"] = json!("agent:2");
        });
        for _ in 0..60 {
            let before = cluster.lock().store.resource_version();
            pass(&cluster, Duration::ZERO, at);
            let running = list_all(&cluster, PODS)
                .iter()
                .filter(|p| is_ready(p) && !gc::is_deleting(p))
                .count();
            assert!(running >= 2, "{running} of 3 Pods ready mid-rollout");
            if cluster.lock().store.resource_version() == before {
                break;
            }
        }
        assert_eq!(
            placed(&cluster),
            all_on("agent:2", &[NODE, "worker-1", "worker-3"])
        );
        let set = list_all(&cluster, DAEMON_SETS)[0].clone();
        assert_eq!(
            set["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
            "2"
        );
        assert_eq!(set["status"]["updatedNumberScheduled"], 3);
        assert_eq!(list_all(&cluster, CONTROLLER_REVISIONS).len(), 2);

        // A node selector the simulated Node does not match: its Pod goes.
        edit_spec(&cluster, DAEMON_SETS, "agent", |spec| {
            spec["template"]["spec"]["nodeSelector"] = json!({"role": "worker"});
        });
        settle(&cluster, at);
        assert_eq!(
            placed(&cluster),
            all_on("agent:2", &["worker-1", "worker-3"])
        );
        // A Node that goes takes its Pod with it.
        cluster
            .delete(&node_target(Some("worker-1")), &DeleteOptions::default())
            .unwrap();
        settle(&cluster, at);
        assert_eq!(placed(&cluster), all_on("agent:2", &["worker-3"]));
        let set = list_all(&cluster, DAEMON_SETS)[0].clone();
        assert_eq!(set["status"]["desiredNumberScheduled"], 1);
        assert_eq!(set["status"]["numberAvailable"], 1);
    }

    #[test]
    fn an_autoscaler_keeps_its_target_within_its_bounds_without_metrics() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(&cluster, DEPLOYMENTS, web(json!({"replicas": 1})));
        let hpa = |name: &str, target: &str| {
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": target}, "minReplicas": 2, "maxReplicas": 3}})
        };
        create(&cluster, AUTOSCALERS, hpa("web", "web"));
        create(&cluster, AUTOSCALERS, hpa("lost", "nowhere"));
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        let replicas =
            |cluster: &Cluster| list_all(cluster, DEPLOYMENTS)[0]["spec"]["replicas"].clone();
        assert_eq!(replicas(&cluster), 2);
        let status = |cluster: &Cluster, name: &str| {
            list_all(cluster, AUTOSCALERS)
                .iter()
                .find(|h| h["metadata"]["name"] == name)
                .unwrap()["status"]
                .clone()
        };
        let web = status(&cluster, "web");
        assert_eq!(web["currentReplicas"], 2);
        assert_eq!(web["desiredReplicas"], 2);
        assert_eq!(web["conditions"][1]["reason"], "FailedGetResourceMetric");
        assert_eq!(web["currentMetrics"], json!([{"type": ""}]));
        assert!(web["lastScaleTime"].is_string());
        let lost = status(&cluster, "lost");
        assert_eq!(lost["conditions"][0]["reason"], "FailedGetScale");
        assert_eq!(
            lost["conditions"][0]["message"],
            "the HPA controller was unable to get the target's current scale: deployments.apps \"nowhere\" not found"
        );
        // Scaled past the maximum by hand: back to it.
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["replicas"] = json!(7)
        });
        settle(&cluster, at);
        assert_eq!(replicas(&cluster), 3);
        let rescales: Vec<String> = list_all(&cluster, EVENTS)
            .iter()
            .filter(|e| e["reason"] == "SuccessfulRescale")
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            rescales,
            [
                "New size: 2; reason: Current number of replicas below Spec.MinReplicas",
                "New size: 3; reason: Current number of replicas above Spec.MaxReplicas"
            ]
        );
    }

    #[test]
    fn a_claim_gets_a_volume_on_its_pods_node_and_loses_it_with_the_claim() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let at = Utc::now() + chrono::Duration::seconds(5);
        // The first pass registers the node and kind's default class.
        pass(&cluster, Duration::ZERO, at);
        let cluster_target = |gr: &str, name: Option<&str>| Target {
            info: cluster.lock().info(gr).unwrap(),
            namespace: None,
            name: name.map(str::to_owned),
            subresource: None,
        };
        let claim = |name: &str, spec: Value| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": "default"}, "spec": spec})
        };
        create(
            &cluster,
            CLAIMS,
            claim(
                "data",
                json!({"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}),
            ),
        );
        settle(&cluster, at);
        let claim_of = |cluster: &Cluster, name: &str| {
            list_all(cluster, CLAIMS)
                .into_iter()
                .find(|c| c["metadata"]["name"] == name)
                .unwrap()
        };
        let data = claim_of(&cluster, "data");
        assert_eq!(data["spec"]["storageClassName"], "standard");
        assert_eq!(
            data["status"]["phase"], "Pending",
            "waits for its first consumer"
        );
        assert!(list_all(&cluster, VOLUMES).is_empty());
        create(
            &cluster,
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "user", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
        );
        settle(&cluster, at);
        let data = claim_of(&cluster, "data");
        assert_eq!(data["status"]["phase"], "Bound");
        let volume_name = format!("pvc-{}", data["metadata"]["uid"].as_str().unwrap());
        assert_eq!(data["spec"]["volumeName"], volume_name.as_str());
        let user = pod(&cluster, "user").unwrap();
        assert_eq!(user["spec"]["nodeName"], NODE);
        assert!(is_ready(&user));
        // A volume made by hand is bound to a claim of its class, and kept when it goes.
        cluster
            .create(
                &cluster_target(VOLUMES, None),
                json!({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": "manual"},
                    "spec": {"storageClassName": "manual", "capacity": {"storage": "5Gi"},
                        "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/srv"}}}),
                &WriteOptions::default(),
            )
            .unwrap();
        create(
            &cluster,
            CLAIMS,
            claim(
                "fits",
                json!({"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "2Gi"}}}),
            ),
        );
        settle(&cluster, at);
        assert_eq!(claim_of(&cluster, "fits")["spec"]["volumeName"], "manual");
        for name in ["fits", "data"] {
            delete(&cluster, CLAIMS, name, None);
        }
        settle(&cluster, at);
        let volumes: Vec<(String, String)> = list_all(&cluster, VOLUMES)
            .iter()
            .map(|v| {
                (
                    v["metadata"]["name"].as_str().unwrap().to_owned(),
                    v["status"]["phase"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            volumes,
            [("manual".to_owned(), "Released".to_owned())],
            "the provisioned volume went with its claim (Delete), the other is kept (Retain)"
        );
    }

    #[test]
    fn a_daemon_set_with_a_surge_starts_the_new_pod_before_the_old_one_goes() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        let agent = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}},
        });
        create(&cluster, DAEMON_SETS, agent);
        let at = Utc::now() + chrono::Duration::seconds(5);
        settle(&cluster, at);
        assert_eq!(list_all(&cluster, PODS).len(), 1);
        edit_spec(&cluster, DAEMON_SETS, "agent", |spec| {
            spec["template"]["spec"]["containers"][0]["image"] = json!("agent:2");
        });
        // The new Pod is created while the old one still runs and is ready.
        pass(&cluster, Duration::from_secs(60), Utc::now());
        let images: BTreeSet<String> = list_all(&cluster, PODS)
            .iter()
            .filter(|p| !gc::is_deleting(p))
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(images, BTreeSet::from(["agent:1".into(), "agent:2".into()]));
        settle(&cluster, at);
        let pods = list_all(&cluster, PODS);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0]["spec"]["containers"][0]["image"], "agent:2");
    }

    #[test]
    fn a_stateful_set_starts_its_pods_in_order_rolls_a_new_template_and_scales_down_from_the_top() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(&cluster, STATEFUL_SETS, db(json!({"replicas": 3})));
        // OrderedReady: db-1 waits for db-0 to be Running and Ready.
        pass(&cluster, Duration::from_secs(60), Utc::now());
        let names = |cluster: &Cluster| {
            let mut n: Vec<String> = list_all(cluster, PODS)
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&cluster), ["db-0"]);
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(names(&cluster), ["db-0", "db-1", "db-2"]);
        let pod = &list_all(&cluster, PODS)[0];
        assert_eq!(pod["spec"]["hostname"], pod["metadata"]["name"]);
        assert_eq!(pod["spec"]["subdomain"], "db");
        let db = &list_all(&cluster, STATEFUL_SETS)[0];
        let revision = db["status"]["updateRevision"].as_str().unwrap().to_owned();
        assert!(revision.starts_with("db-"));
        assert_eq!(db["status"]["currentRevision"], revision.as_str());
        assert_eq!(db["status"]["readyReplicas"], 3);
        assert_eq!(db["status"]["currentReplicas"], 3);
        assert_eq!(pod["metadata"]["labels"][REVISION_HASH], revision.as_str());

        // A new template: every Pod is replaced at the new revision.
        edit_spec(&cluster, STATEFUL_SETS, "db", |spec| {
            spec["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
        });
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        let db = &list_all(&cluster, STATEFUL_SETS)[0];
        let new_revision = db["status"]["updateRevision"].as_str().unwrap();
        assert_ne!(new_revision, revision);
        assert_eq!(db["status"]["currentRevision"], new_revision);
        assert_eq!(db["status"]["updatedReplicas"], 3);
        for pod in list_all(&cluster, PODS) {
            assert_eq!(pod["metadata"]["labels"][REVISION_HASH], new_revision);
            assert_eq!(pod["spec"]["containers"][0]["image"], "postgres:17");
        }

        // Scale down: the highest ordinals go.
        edit_spec(&cluster, STATEFUL_SETS, "db", |spec| {
            spec["replicas"] = json!(1)
        });
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(names(&cluster), ["db-0"]);
        assert_eq!(
            list_all(&cluster, STATEFUL_SETS)[0]["status"]["replicas"],
            1
        );
    }

    #[test]
    fn a_deployment_converges_then_a_pass_writes_nothing() {
        let cluster = Cluster::open(None, 10_000).unwrap();
        create(&cluster, DEPLOYMENTS, web(json!({"replicas": 2})));
        settle(&cluster, Utc::now() + chrono::Duration::seconds(5));

        let replica_sets = list_all(&cluster, REPLICA_SETS);
        assert_eq!(replica_sets.len(), 1);
        let rs = &replica_sets[0];
        let hash = rs["metadata"]["labels"][TEMPLATE_HASH].as_str().unwrap();
        assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(rs["status"]["readyReplicas"], 2);
        let pods = list_all(&cluster, PODS);
        assert_eq!(pods.len(), 2);
        for pod in &pods {
            assert_eq!(controller_uid(pod), rs["metadata"]["uid"].as_str());
            assert_eq!(pod["status"]["phase"], "Running");
            assert!(is_ready(pod));
            assert_eq!(pod["metadata"]["labels"][TEMPLATE_HASH], hash);
        }
        let web = &list_all(&cluster, DEPLOYMENTS)[0];
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
        edit_spec(&cluster, DEPLOYMENTS, "web", |spec| {
            spec["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        });
        settle(&cluster, Utc::now() + chrono::Duration::seconds(10));
        let replica_sets = list_all(&cluster, REPLICA_SETS);
        assert_eq!(replica_sets.len(), 2);
        let replicas: BTreeMap<Option<u64>, Option<i64>> = replica_sets
            .iter()
            .map(|rs| (revision(rs), rs["spec"]["replicas"].as_i64()))
            .collect();
        assert_eq!(
            replicas,
            BTreeMap::from([(Some(1), Some(0)), (Some(2), Some(2))])
        );
        let pods = list_all(&cluster, PODS);
        assert_eq!(pods.len(), 2);
        assert!(
            pods.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
        );

        // What `kubectl describe` shows: the controllers' Events, in their words.
        let events = list_all(&cluster, EVENTS);
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
        let created = created_at(&list_all(&cluster, PODS)[0]).unwrap();
        // The first pass registers the node and binds the pod (the write wakes the next pass).
        assert_eq!(pass(&cluster, Duration::from_secs(30), created), None);
        let node = &list_all(&cluster, NODES)[0];
        assert_eq!(node["metadata"]["name"], NODE);
        assert_eq!(node["status"]["allocatable"]["pods"], "110");
        assert_eq!(list_all(&cluster, PODS)[0]["spec"]["nodeName"], NODE);
        let scheduled: Vec<Arc<Value>> = list_all(&cluster, EVENTS)
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
        let creating = &list_all(&cluster, PODS)[0];
        assert_eq!(creating["status"]["phase"], "Pending");
        assert_eq!(
            creating["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        // The node's Lease follows in the pass after the node.
        let node = &list_all(&cluster, NODES)[0];
        let lease = &list_all(&cluster, LEASES)[0];
        assert_eq!(lease["metadata"]["namespace"], NODE_LEASES);
        assert_eq!(lease["spec"]["holderIdentity"], NODE);
        assert_eq!(
            lease["metadata"]["ownerReferences"][0]["uid"],
            node["metadata"]["uid"]
        );
        // The kubelet's heartbeat: renewed 10 s after its last renewal, not before; a pass says
        // when the next is due.
        let renewed = |cluster: &Cluster| {
            list_all(cluster, LEASES)[0]["spec"]["renewTime"]
                .as_str()
                .and_then(parse_timestamp)
                .unwrap()
        };
        let first = renewed(&cluster);
        let lease = list_all(&cluster, LEASES)[0].clone();
        let soon = renew_lease(
            &mut Writes::new(&cluster),
            &lease,
            first + chrono::Duration::seconds(4),
        );
        assert_eq!(soon, Duration::from_secs(6));
        assert_eq!(renewed(&cluster), first);
        let later = first + chrono::Duration::seconds(11);
        assert_eq!(heartbeat(&cluster, later), Some(LEASE_RENEW_INTERVAL));
        let at = (renewed(&cluster) - later).num_microseconds().unwrap();
        assert_eq!(at, 0, "renewed at the pass's time, to the microsecond");

        assert!(!is_ready(&list_all(&cluster, PODS)[0]));
        let due = pass(
            &cluster,
            Duration::from_secs(30),
            created + chrono::Duration::seconds(30),
        );
        assert_eq!(due, None);
        let pod = &list_all(&cluster, PODS)[0];
        assert!(is_ready(pod));
        assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true);
        assert_eq!(pod["status"]["hostIP"], NODE_IP);
        let kubelet: Vec<(String, String)> = list_all(&cluster, EVENTS)
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
        let pod = &list_all(&cluster, PODS)[0];
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
