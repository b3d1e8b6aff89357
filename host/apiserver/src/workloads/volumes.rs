//! The persistent volume controller's part, and a local-path provisioner as kind runs one: kind's
//! default StorageClass `standard` (`rancher.io/local-path`, `WaitForFirstConsumer`), claims
//! bound to the smallest matching Available volume or provisioned a `pvc-<uid>` volume on the node
//! their first Pod is scheduled to, the binding written on both sides, and volumes released (and,
//! for the provisioner's own with the `Delete` policy, deleted) when their claim goes; as
//! `pkg/controller/volume/persistentvolume`, sig-storage-lib-external-provisioner and
//! rancher/local-path-provisioner do it.

use serde_json::{Value, json};

use super::{CLAIMS, NODE, Writes, name, namespace};
use crate::quantity::Quantity;
use crate::strategy::storage::{claim_has_class, class_name, default_class};

/// The storage key of PersistentVolumes.
pub(super) const VOLUMES: &str = "persistentvolumes";

/// The simulated provisioner (local-path-provisioner, as kind installs it).
const PROVISIONER: &str = "rancher.io/local-path";

/// The PV controller's name in the Events it records.
const VOLUME_CONTROLLER: &str = "persistentvolume-controller";

/// `AnnSelectedNode`: the node the scheduler chose for a delayed-binding claim's first Pod.
pub(super) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// `AnnStorageProvisioner` and its beta form: the provisioner the controller hands a claim to.
const STORAGE_PROVISIONER: [&str; 2] = [
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
];

/// `AnnBindCompleted`, `AnnBoundByController`, `AnnDynamicallyProvisioned`.
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// kind's default StorageClass (`pkg/build/nodeimage/const_storage.go`).
pub(super) fn default_storage_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard",
            "annotations": {crate::strategy::storage::DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    })
}

/// What the volume pass reads.
pub(super) struct Read<'a> {
    /// Every StorageClass.
    pub classes: &'a [&'a Value],
    /// Every PersistentVolume.
    pub volumes: &'a [&'a Value],
    /// Every PersistentVolumeClaim not being deleted.
    pub claims: &'a [&'a Value],
}

impl Read<'_> {
    /// The class a claim names (`storageClassName`, or the beta annotation first).
    fn class_of(&self, claim: &Value) -> Option<&Value> {
        let name = class_name(claim)?;
        self.classes
            .iter()
            .copied()
            .find(|c| c["metadata"]["name"] == name)
    }
}

/// Whether a class delays binding until a Pod is scheduled.
fn delays_binding(class: Option<&Value>) -> bool {
    class.is_some_and(|c| c["volumeBindingMode"] == "WaitForFirstConsumer")
}

/// Whether `pod`'s claims let the scheduler bind it to `node` now: each exists and is bound, or
/// waits for its first consumer (then it is given `node` as its selected node, and the Pod waits
/// for the volume). A Pod with an unbound claim that does not wait stays Pending, as the
/// scheduler's `VolumeBinding` filter keeps it.
pub(super) fn claims_ready(
    writes: &mut Writes<'_>,
    pod: &Value,
    node: &str,
    read: &Read<'_>,
) -> bool {
    let Some(namespace) = namespace(pod) else {
        return true;
    };
    let mut ready = true;
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(claim_name) = volume["persistentVolumeClaim"]["claimName"].as_str() else {
            continue;
        };
        let Some(claim) = read
            .claims
            .iter()
            .copied()
            .find(|c| namespace_name(c) == (namespace, claim_name))
        else {
            ready = false;
            continue;
        };
        if claim["status"]["phase"] == "Bound" {
            continue;
        }
        ready = false;
        if delays_binding(read.class_of(claim))
            && claim["metadata"]["annotations"][SELECTED_NODE].is_null()
        {
            let mut body = claim.clone();
            body["metadata"]["annotations"][SELECTED_NODE] = json!(node);
            writes.update("update", CLAIMS, body);
        }
    }
    ready
}

/// One pass of the controller and the provisioner over every volume and claim.
pub(super) fn volume_pass(writes: &mut Writes<'_>, read: &Read<'_>) {
    for volume in read.volumes {
        sync_volume(writes, volume, read);
    }
    for claim in read.claims {
        sync_claim(writes, claim, read);
    }
}

/// `syncVolume`: a volume bound to a claim that is gone is released (and the provisioner deletes
/// its own once released, under `Delete`); a bound one is `Bound`; an unused one `Available`.
fn sync_volume(writes: &mut Writes<'_>, volume: &Value, read: &Read<'_>) {
    if !volume["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let reference = &volume["spec"]["claimRef"];
    let phase = volume["status"]["phase"].as_str().unwrap_or_default();
    let wanted = match reference["uid"].as_str() {
        Some(uid) => {
            let claim = read.claims.iter().find(|c| {
                namespace_name(c)
                    == (
                        reference["namespace"].as_str().unwrap_or_default(),
                        reference["name"].as_str().unwrap_or_default(),
                    )
            });
            match claim {
                Some(claim) if claim["metadata"]["uid"] == uid => "Bound",
                _ if phase == "Failed" => return,
                _ => {
                    if phase == "Released"
                        && volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
                        && volume["metadata"]["annotations"][PROVISIONED_BY] == PROVISIONER
                    {
                        writes.delete(VOLUMES, volume);
                        return;
                    }
                    "Released"
                }
            }
        }
        None => "Available",
    };
    if phase != wanted {
        let mut status = volume["status"].clone();
        status["phase"] = json!(wanted);
        if let Some(map) = status.as_object_mut() {
            map.remove("lastPhaseTransitionTime");
        }
        writes.status(VOLUMES, volume, status);
    }
}

/// `syncClaim` for a claim not yet bound: bound to the volume that names it, else to the best
/// Available volume, else given the default class, else provisioned by its class's provisioner.
fn sync_claim(writes: &mut Writes<'_>, claim: &Value, read: &Read<'_>) {
    let uid = claim["metadata"]["uid"].as_str().unwrap_or_default();
    let volume_name = claim["spec"]["volumeName"].as_str().unwrap_or_default();
    if !volume_name.is_empty() {
        // `syncBoundClaim`: the claim's status follows its volume.
        if let Some(volume) = read.volumes.iter().find(|v| name(v) == Some(volume_name))
            && volume["spec"]["claimRef"]["uid"] == uid
            && claim["status"]["phase"] != "Bound"
        {
            let mut status = claim["status"].clone();
            status["phase"] = json!("Bound");
            status["accessModes"] = volume["spec"]["accessModes"].clone();
            status["capacity"] = volume["spec"]["capacity"].clone();
            writes.status(CLAIMS, claim, status);
        }
        return;
    }
    // A volume already names this claim (provisioned for it, or matched on an earlier pass).
    if let Some(volume) = read
        .volumes
        .iter()
        .find(|v| v["spec"]["claimRef"]["uid"] == uid)
    {
        let mut body = claim.clone();
        body["spec"]["volumeName"] = volume["metadata"]["name"].clone();
        let annotations = &mut body["metadata"]["annotations"];
        if annotations[BOUND_BY_CONTROLLER].is_null() {
            annotations[BOUND_BY_CONTROLLER] = json!("yes");
        }
        annotations[BIND_COMPLETED] = json!("yes");
        writes.update("bind", CLAIMS, body);
        return;
    }
    let class = read.class_of(claim);
    let selected = claim["metadata"]["annotations"][SELECTED_NODE].as_str();
    let delayed = delays_binding(class);
    if (!delayed || selected.is_some())
        && let Some(volume) = best_match(claim, read.volumes)
    {
        let mut body = volume.clone();
        body["spec"]["claimRef"] = claim_reference(claim);
        if body["metadata"]["annotations"][BOUND_BY_CONTROLLER].is_null() {
            body["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
        }
        writes.update("bind", VOLUMES, body);
        return;
    }
    if !claim_has_class(claim) {
        // The retroactive default class.
        if let Some(default) = default_class(read.classes.iter().copied()) {
            let mut body = claim.clone();
            body["spec"]["storageClassName"] = default["metadata"]["name"].clone();
            writes.update("update", CLAIMS, body);
        } else {
            once(
                writes,
                claim,
                ("Normal", "FailedBinding"),
                "no persistent volumes available for this claim and no storage class is set",
            );
        }
        return;
    }
    if class_name(claim).is_some_and(str::is_empty) {
        once(
            writes,
            claim,
            ("Normal", "FailedBinding"),
            "no persistent volumes available for this claim and no storage class is set",
        );
        return;
    }
    let Some(class) = class else {
        once(
            writes,
            claim,
            ("Warning", "ProvisioningFailed"),
            &format!(
                "storageclass.storage.k8s.io {:?} not found",
                class_name(claim).unwrap_or_default()
            ),
        );
        return;
    };
    if delayed && selected.is_none() {
        once(
            writes,
            claim,
            ("Normal", "WaitForFirstConsumer"),
            "waiting for first consumer to be created before binding",
        );
        return;
    }
    let provisioner = class["provisioner"].as_str().unwrap_or_default();
    if claim["metadata"]["annotations"][STORAGE_PROVISIONER[1]] != provisioner {
        let mut body = claim.clone();
        for key in STORAGE_PROVISIONER {
            body["metadata"]["annotations"][key] = json!(provisioner);
        }
        if writes.update("update", CLAIMS, body) {
            writes.event(
                claim,
                VOLUME_CONTROLLER,
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                ),
            );
        }
        return;
    }
    if provisioner == PROVISIONER {
        provision(writes, claim, class, selected.unwrap_or(NODE));
    }
}

/// The local-path provisioner's `Provision` for `claim` on `node`, with the library's Events.
fn provision(writes: &mut Writes<'_>, claim: &Value, class: &Value, node: &str) {
    let (Some(namespace), Some(claim_name)) = (namespace(claim), name(claim)) else {
        return;
    };
    let uid = claim["metadata"]["uid"].as_str().unwrap_or_default();
    let modes = claim["spec"]["accessModes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let refusal = if !claim["spec"]["selector"].is_null() {
        Some("claim.Spec.Selector is not supported")
    } else if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        Some("NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes")
    } else {
        None
    };
    let component = format!("{PROVISIONER}_local-path-provisioner");
    if let Some(message) = refusal {
        once(writes, claim, ("Warning", "ProvisioningFailed"), message);
        return;
    }
    let volume_name = format!("pvc-{uid}");
    if writes.exists(VOLUMES, "", &volume_name) {
        return;
    }
    writes.event(
        claim,
        &component,
        "Provisioning",
        format!(
            "External provisioner is provisioning volume for claim \"{namespace}/{claim_name}\""
        ),
    );
    let volume = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name, "annotations": {
            "local.path.provisioner/selected-node": node, PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
            "accessModes": modes,
            "volumeMode": "Filesystem",
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "hostPath": {"path": format!("/var/local-path-provisioner/{volume_name}_{namespace}_{claim_name}"),
                "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": claim_reference(claim),
            "storageClassName": class["metadata"]["name"],
        },
    });
    if writes.create(VOLUMES, "", volume) {
        writes.event(
            claim,
            &component,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {volume_name}"),
        );
    }
}

/// `reference.GetReference` of a claim: what a volume's `claimRef` holds.
fn claim_reference(claim: &Value) -> Value {
    json!({"kind": "PersistentVolumeClaim", "namespace": claim["metadata"]["namespace"],
        "name": claim["metadata"]["name"], "uid": claim["metadata"]["uid"], "apiVersion": "v1",
        "resourceVersion": claim["metadata"]["resourceVersion"]})
}

/// `FindMatchingVolume` for the PV controller: of the Available volumes no other claim holds, of
/// the claim's class and volume mode, at least its size, matching its selector, within the
/// tightest set of access modes that holds the claim's, the smallest.
fn best_match<'a>(claim: &Value, volumes: &[&'a Value]) -> Option<&'a Value> {
    let wanted_class = class_name(claim).unwrap_or_default();
    let request = claim["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .and_then(|q| Quantity::parse(q).ok())
        .unwrap_or(Quantity::from_nanos(0));
    let mode = |v: &Value| v.as_str().unwrap_or("Filesystem").to_owned();
    let wanted_modes: Vec<&Value> = claim["spec"]["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let selector = &claim["spec"]["selector"];
    volumes
        .iter()
        .copied()
        .filter(|v| v["status"]["phase"] == "Available")
        .filter(|v| v["metadata"]["deletionTimestamp"].is_null())
        .filter(|v| {
            v["spec"]["claimRef"].is_null()
                || (v["spec"]["claimRef"]["uid"].is_null()
                    && namespace_name_of(&v["spec"]["claimRef"]) == namespace_name(claim))
        })
        .filter(|v| class_name(v).unwrap_or_default() == wanted_class)
        .filter(|v| mode(&v["spec"]["volumeMode"]) == mode(&claim["spec"]["volumeMode"]))
        .filter(|v| {
            let modes = v["spec"]["accessModes"].as_array();
            wanted_modes
                .iter()
                .all(|m| modes.is_some_and(|ms| ms.contains(m)))
        })
        .filter(|v| {
            selector.is_null() || crate::selector::Selector::label_selector_selects(selector, v)
        })
        .filter_map(|v| {
            let size = v["spec"]["capacity"]["storage"]
                .as_str()
                .and_then(|q| Quantity::parse(q).ok())?;
            (size >= request).then_some((
                v["spec"]["accessModes"].as_array().map_or(0, Vec::len),
                size,
                v,
            ))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, _, v)| v)
}

/// An object's namespace and name.
fn namespace_name(object: &Value) -> (&str, &str) {
    (
        namespace(object).unwrap_or_default(),
        name(object).unwrap_or_default(),
    )
}

/// A reference's namespace and name.
fn namespace_name_of(reference: &Value) -> (&str, &str) {
    (
        reference["namespace"].as_str().unwrap_or_default(),
        reference["name"].as_str().unwrap_or_default(),
    )
}

/// Records an Event about `claim` unless one of that reason is already recorded about it (the
/// controller repeats them each sync; a cluster's recorder folds the repeats into a count).
fn once(writes: &mut Writes<'_>, claim: &Value, (kind, reason): (&str, &str), message: &str) {
    if writes.has_event(claim, reason) {
        return;
    }
    if kind == "Warning" {
        writes.warning(claim, VOLUME_CONTROLLER, reason, message.to_owned());
    } else {
        writes.event(claim, VOLUME_CONTROLLER, reason, message.to_owned());
    }
}
