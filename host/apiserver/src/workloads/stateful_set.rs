//! The stateful set controller's part: ordered Pods with stable names, their claims and the
//! retention policy, rolling updates with a partition, and the ControllerRevisions of the set's
//! templates, as `pkg/controller/statefulset` does them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::deployment::template_hash;
use super::{
    CLAIMS, CONTROLLER_REVISIONS, PODS, REVISION_HASH, STATEFUL_SET_CONTROLLER, STATEFUL_SETS,
    Writes, availability, by_creation, controller_reference, insert_counts, is_ready, min_ready,
    name, namespace, template_pod,
};

/// The StatefulSet's part (`owned`: the Pods it controls), as the stateful set controller does it
/// for `OrderedReady` (the default) and `Parallel` Pod management: Pods `NAME-0` to
/// `NAME-(replicas-1)`, created in order, each only once the ones before it are Running and Ready
/// (all at once for `Parallel`); the highest ordinals removed first on scale down; on a new
/// template (the `RollingUpdate` strategy), the highest-ordinal Pod of the old revision deleted
/// while every other is Ready, to be created again at the new one; the status counting them.
/// `owned`: the Pods and the ControllerRevisions it controls.
pub(super) fn stateful_set_pass(
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
    let update_revision = update_revision(writes, set, &revisions, "StatefulSet")?;
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
        for claim_name in claim_names(set, set_name, *ordinal) {
            if let Some(stored) = writes.get(CLAIMS, namespace, &claim_name)
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
    insert_counts(
        &mut status,
        [
            ("readyReplicas", ready),
            ("currentReplicas", current_replicas),
            ("updatedReplicas", updated),
        ],
    );
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

/// `getStatefulSetRevisions` (and the daemon set controller's `constructHistory`): the name of
/// the ControllerRevision of `set`'s current template (`revisions` sorted by revision number;
/// `kind`: the set's, `StatefulSet` or `DaemonSet`). The revision records the template as the patch that
/// restores it (`getPatch`: `{"spec":{"template":{…,"$patch":"replace"}}}`, which `kubectl
/// rollout undo` applies); the newest revision if it records this template, else an older one that
/// does, given the next revision number (a rollback), else a new one, `NAME-HASH`, with the
/// template's labels, the set's annotations and the next number (`newRevision`).
pub(super) fn update_revision(
    writes: &mut Writes<'_>,
    set: &Value,
    revisions: &[&Value],
    kind: &str,
) -> Option<String> {
    let (namespace, set_name) = (namespace(set)?, name(set)?);
    let mut template = set["spec"]["template"].clone();
    go_encoded(&mut template);
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
        "ownerReferences": [controller_reference(set, "apps/v1", kind)],
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

/// `template` as Go's encoding of the typed `PodTemplateSpec` has it, which `getPatch` records and
/// kubectl's `statefulsetMatch` compares byte for byte: the zero `creationTimestamp` written as
/// `null`, and each container's `resources` (a struct, which `omitempty` does not omit) as `{}`.
fn go_encoded(template: &mut Value) {
    let Some(map) = template.as_object_mut() else {
        return;
    };
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.entry("creationTimestamp").or_insert(Value::Null);
    }
    let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(container) = container.as_object_mut() {
                container.entry("resources").or_insert_with(|| json!({}));
            }
        }
    }
}

/// Pod `ordinal` of a StatefulSet at `revision`: named `NAME-ORDINAL`, its hostname that name and
/// its subdomain the governing Service, labelled with its name, index and revision.
pub(super) fn stateful_pod(
    set: &Value,
    namespace: &str,
    name: &str,
    ordinal: i64,
    revision: &str,
) -> Value {
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
pub(super) fn claims(set: &Value, namespace: &str, set_name: &str, ordinal: i64) -> Vec<Value> {
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
                json!(claim_name(template_name, set_name, ordinal)),
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

/// The names of [`claims`], without making the claims.
fn claim_names<'a>(
    set: &'a Value,
    set_name: &'a str,
    ordinal: i64,
) -> impl Iterator<Item = String> + 'a {
    set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |template| {
            let template_name = template["metadata"]["name"].as_str()?;
            Some(claim_name(template_name, set_name, ordinal))
        })
}

/// `getPersistentVolumeClaimName`: `TEMPLATE-SET-ORDINAL`.
fn claim_name(template_name: &str, set_name: &str, ordinal: i64) -> String {
    format!("{template_name}-{set_name}-{ordinal}")
}

/// `updateClaimOwnerRefForSetAndPod`: a claim of `set`'s `pod` is owned as the set's
/// `persistentVolumeClaimRetentionPolicy` says, so the garbage collector deletes it with its
/// owner: by the set for `whenDeleted: Delete` (while the Pod is in range), by the Pod once it is
/// `scaled_down` for `whenScaled: Delete`, by neither for `Retain`. Returns the claim with its
/// owner references changed, if they change.
pub(super) fn claim_owned_for_retention(
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
