//! Storage object in-use protection: the `StorageObjectInUseProtection` admission plugin gives
//! every new PersistentVolumeClaim the `kubernetes.io/pvc-protection` finalizer and every new
//! PersistentVolume `kubernetes.io/pv-protection`, and kube-controller-manager's pvc-protection
//! and pv-protection controllers remove them from a claim being deleted that no scheduled,
//! running Pod uses, and from a volume being deleted that is not bound. These run whether or not
//! the workloads are simulated: a cluster always has them.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::Inner;
use crate::error::ApiError;

/// The claims' finalizer.
pub const CLAIM_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The volumes' finalizer.
pub const VOLUME_FINALIZER: &str = "kubernetes.io/pv-protection";
const CLAIMS: &str = "persistentvolumeclaims";
const VOLUMES: &str = "persistentvolumes";
const PODS: &str = "pods";

/// The admission plugin, on a claim or volume being created: its finalizer, added once.
pub(crate) fn admit(object: &mut Value, finalizer: &str) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let finalizers = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if finalizers.is_null() {
        *finalizers = json!([]);
    }
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

/// The two controllers' pass: every claim and volume being deleted that nothing holds loses its
/// protection finalizer (and is removed with it, when it was the last). Returns whether any did.
///
/// # Errors
/// [`ApiError::Storage`] when a write is not durable.
pub(crate) fn release(inner: &mut Inner) -> Result<bool, ApiError> {
    let mut work: Vec<(&'static str, (String, String), &'static str)> = Vec::new();
    for (key, claim) in inner.store.list(CLAIMS, None, None) {
        if waiting(claim, CLAIM_FINALIZER) && !claim_in_use(inner, claim) {
            work.push((CLAIMS, key.clone(), CLAIM_FINALIZER));
        }
    }
    for (key, volume) in inner.store.list(VOLUMES, None, None) {
        // `isVolumeInUse`: a bound volume is in use.
        if waiting(volume, VOLUME_FINALIZER) && volume["status"]["phase"] != "Bound" {
            work.push((VOLUMES, key.clone(), VOLUME_FINALIZER));
        }
    }
    let released = !work.is_empty();
    for (resource, key, finalizer) in work {
        crate::gc::release(inner, &(resource.to_owned(), key), finalizer)?;
    }
    Ok(released)
}

/// Whether `object` is being deleted and still carries `finalizer`.
fn waiting(object: &Arc<Value>, finalizer: &str) -> bool {
    crate::gc::is_deleting(object) && crate::gc::finalizers(object).iter().any(|f| f == finalizer)
}

/// `podUsesPVC`: a Pod of the claim's namespace that is scheduled (the kubelet will not start one
/// whose claim is being deleted) and has not finished, and names the claim as a volume or as its
/// generic ephemeral volume (`<pod>-<volume>`).
fn claim_in_use(inner: &Inner, claim: &Value) -> bool {
    let namespace = claim["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = claim["metadata"]["name"].as_str().unwrap_or_default();
    inner
        .store
        .list(PODS, Some(namespace), None)
        .any(|(_, pod)| {
            let scheduled = pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let finished = matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            scheduled
                && !finished
                && pod["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|volume| {
                        volume["persistentVolumeClaim"]["claimName"] == name
                            || (!volume["ephemeral"].is_null()
                                && volume["name"]
                                    .as_str()
                                    .is_some_and(|v| format!("{pod_name}-{v}") == name))
                    })
        })
}

/// Whether a write of `resource` can free a protected object: a Pod that changed, or a volume.
#[must_use]
pub(crate) fn may_release(resource: &str) -> bool {
    matches!(resource, PODS | VOLUMES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_once_after_the_others() {
        let mut claim = json!({"metadata": {"name": "data", "finalizers": ["example.com/keep"]}});
        admit(&mut claim, CLAIM_FINALIZER);
        admit(&mut claim, CLAIM_FINALIZER);
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["example.com/keep", CLAIM_FINALIZER])
        );
        let mut volume = json!({"metadata": {"name": "pv"}});
        admit(&mut volume, VOLUME_FINALIZER);
        assert_eq!(volume["metadata"]["finalizers"], json!([VOLUME_FINALIZER]));
    }
}
