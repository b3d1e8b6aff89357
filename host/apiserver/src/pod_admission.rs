//! The admission plugins of kube-apiserver's default set that change a pod on its way to storage
//! (`plugin/pkg/admission/...`), run after defaulting and before validation: `ServiceAccount`
//! (the pod's account, which must exist, its API access volume and image pull secrets),
//! `DefaultTolerationSeconds` (five minutes on not-ready and unreachable nodes), `Priority`
//! (the priority and preemption policy of the pod's PriorityClass) and `RuntimeClass` (the
//! class's overhead and scheduling constraints, [`crate::runtime_classes`]).

use serde_json::{Map, Value, json};

use crate::cluster::Inner;
use crate::priority_classes::{self, PREEMPT_LOWER_PRIORITY};
use crate::service_accounts;

/// Where the ServiceAccount admission plugin mounts the API access volume
/// (`DefaultAPITokenMountPath`); a container with a mount there keeps it.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the API access volume's generated name (`ServiceAccountVolumeName`).
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The lifetime the projected token asks for (`WarnOnlyBoundTokenExpirationSeconds`).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The annotation that marks a kubelet's mirror pod (`MirrorPodAnnotationKey`).
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The taints `DefaultTolerationSeconds` tolerates for [`TOLERATION_SECONDS`].
const NODE_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
const TOLERATION_SECONDS: i64 = 300;

/// Why a pod is refused (answered 403, `pods "NAME" is forbidden: ...`), in the plugins' words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    /// The pod's ServiceAccount does not exist.
    #[error(
        "error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found"
    )]
    NoServiceAccount {
        /// The pod's namespace.
        namespace: String,
        /// The account it names (or `default`).
        name: String,
    },
    /// A mirror pod names a ServiceAccount.
    #[error("a mirror pod may not reference service accounts")]
    MirrorServiceAccount,
    /// A mirror pod references a Secret.
    #[error("a mirror pod may not reference secrets")]
    MirrorSecrets,
    /// A mirror pod projects a ServiceAccount token.
    #[error("a mirror pod may not use ServiceAccountToken volume projections")]
    MirrorTokenProjection,
    /// The pod names a PriorityClass that does not exist.
    #[error("no PriorityClass with name {0} was found")]
    NoPriorityClass(String),
    /// The pod sets a priority other than its class's.
    #[error(
        "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"
    )]
    Priority {
        /// What the pod says.
        given: i64,
        /// What its class says.
        computed: i64,
    },
    /// The pod sets a preemption policy other than its class's.
    #[error(
        "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"
    )]
    PreemptionPolicy {
        /// What the pod says.
        given: String,
        /// What its class says.
        computed: String,
    },
    /// The pod names a RuntimeClass that does not exist.
    #[error("pod rejected: RuntimeClass {0:?} not found")]
    NoRuntimeClass(String),
    /// The pod's overhead differs from its RuntimeClass's.
    #[error("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")]
    OverheadMismatch,
    /// The pod sets an overhead that no RuntimeClass defines.
    #[error("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead")]
    OverheadWithoutClass,
    /// The pod's node selector and its RuntimeClass's disagree on a label.
    #[error(
        "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {class}; pod.spec.nodeSelector[{key}] = {pod}"
    )]
    NodeSelectorConflict {
        /// The label.
        key: String,
        /// What the class requires.
        class: String,
        /// What the pod says.
        pod: String,
    },
}

/// Runs the plugins on a pod written to `namespace`: a create (`old` None) or an update of `old`.
///
/// # Errors
/// [`AdmissionError`] when a plugin refuses the pod.
pub fn admit(
    inner: &Inner,
    namespace: &str,
    old: Option<&Value>,
    pod: &mut Value,
) -> Result<(), AdmissionError> {
    let mirror = pod["metadata"]["annotations"]
        .get(MIRROR_POD_ANNOTATION)
        .is_some();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    match old {
        None => {
            if mirror {
                check_mirror(spec)?;
            } else {
                service_account(inner, namespace, spec)?;
            }
            default_tolerations(spec);
            priority(inner, spec)?;
            crate::runtime_classes::admit_pod(inner, spec)
        }
        Some(old) => {
            default_tolerations(spec);
            // Priority keeps what it set at creation when an update leaves it out.
            for field in ["priority", "preemptionPolicy"] {
                if spec.get(field).is_none_or(Value::is_null)
                    && let Some(p) = old["spec"].get(field).filter(|p| !p.is_null())
                {
                    spec.insert(field.into(), p.clone());
                }
            }
            Ok(())
        }
    }
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The elements of a list field (none when absent or not a list).
fn list(field: Option<&Value>) -> impl Iterator<Item = &Value> {
    field.and_then(Value::as_array).into_iter().flatten()
}

/// The `ServiceAccount` plugin's checks of a mirror pod: no account, no Secret, no token.
fn check_mirror(spec: &Map<String, Value>) -> Result<(), AdmissionError> {
    if !text(spec, "serviceAccountName").is_empty() {
        return Err(AdmissionError::MirrorServiceAccount);
    }
    if references_secrets(spec) {
        return Err(AdmissionError::MirrorSecrets);
    }
    let projects_token = list(spec.get("volumes"))
        .flat_map(|v| list(v.pointer("/projected/sources")))
        .any(|source| source.get("serviceAccountToken").is_some());
    if projects_token {
        return Err(AdmissionError::MirrorTokenProjection);
    }
    Ok(())
}

/// Whether the pod names a Secret (`VisitPodSecretNames`, for the sources pods here use: image
/// pull secrets, environment, secret and projected volumes, CSI publish secrets).
fn references_secrets(spec: &Map<String, Value>) -> bool {
    let named = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    if list(spec.get("imagePullSecrets")).next().is_some() {
        return true;
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| list(spec.get(k)));
    for c in containers {
        if list(c.get("envFrom")).any(|e| named(e.pointer("/secretRef/name")))
            || list(c.get("env")).any(|e| named(e.pointer("/valueFrom/secretKeyRef/name")))
        {
            return true;
        }
    }
    list(spec.get("volumes")).any(|v| {
        named(v.pointer("/secret/secretName"))
            || named(v.pointer("/csi/nodePublishSecretRef/name"))
            || list(v.pointer("/projected/sources")).any(|s| named(s.pointer("/secret/name")))
    })
}

/// The `ServiceAccount` plugin on a new pod: `default` when it names no account; the account
/// must exist; unless the pod or the account opts out, every container mounts the projected API
/// access volume (token, cluster CA, namespace) at [`TOKEN_MOUNT_PATH`]; a pod with no image pull
/// secrets takes the account's.
fn service_account(
    inner: &Inner,
    namespace: &str,
    spec: &mut Map<String, Value>,
) -> Result<(), AdmissionError> {
    if text(spec, "serviceAccountName").is_empty() {
        spec.insert(
            "serviceAccountName".into(),
            json!(service_accounts::DEFAULT),
        );
    }
    let name = text(spec, "serviceAccountName").to_owned();
    // The v1 alias of the field, as the conversion from the internal type writes it.
    spec.insert("serviceAccount".into(), json!(name));
    let Some(account) = inner.store.get(
        service_accounts::RESOURCE,
        &(namespace.to_owned(), name.clone()),
    ) else {
        return Err(AdmissionError::NoServiceAccount {
            namespace: namespace.to_owned(),
            name,
        });
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    if list(spec.get("imagePullSecrets")).next().is_none()
        && let Some(secrets) = account["imagePullSecrets"].as_array()
        && !secrets.is_empty()
    {
        let names: Vec<Value> = secrets
            .iter()
            .map(|s| json!({"name": s["name"].as_str().unwrap_or_default()}))
            .collect();
        spec.insert("imagePullSecrets".into(), Value::Array(names));
    }
    Ok(())
}

/// `mountServiceAccountToken` with bound tokens: the volume named `kube-api-access-*` the pod
/// has, or a new one; mounted read-only by every init container and container with no mount at
/// [`TOKEN_MOUNT_PATH`]; the volume added only when a container mounts it.
fn mount_token(spec: &mut Map<String, Value>) {
    let existing = list(spec.get("volumes"))
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_owned);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| crate::verbs::generated_name(TOKEN_VOLUME_PREFIX));
    let mut needs_volume = false;
    for key in ["initContainers", "containers"] {
        for container in crate::strategy::object_items(spec, key) {
            let mounted = list(container.get("volumeMounts"))
                .any(|m| m["mountPath"].as_str() == Some(TOKEN_MOUNT_PATH));
            if mounted {
                continue;
            }
            let mount =
                json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
            match container
                .get_mut("volumeMounts")
                .and_then(Value::as_array_mut)
            {
                Some(mounts) => mounts.push(mount),
                None => {
                    container.insert("volumeMounts".into(), json!([mount]));
                }
            }
            needs_volume = true;
        }
    }
    if existing.is_some() || !needs_volume {
        return;
    }
    let volume = json!({
        "name": volume_name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": crate::root_ca::NAME, "items": [{"key": crate::root_ca::DATA_KEY, "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    match spec.get_mut("volumes").and_then(Value::as_array_mut) {
        Some(volumes) => volumes.push(volume),
        None => {
            spec.insert("volumes".into(), json!([volume]));
        }
    }
}

/// `DefaultTolerationSeconds`: a pod that does not tolerate `NoExecute` taints for not-ready or
/// unreachable nodes (by key, or by an empty key or effect, which match all) gets a toleration of
/// [`TOLERATION_SECONDS`] for each.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let missing: Vec<&str> = NODE_TAINTS
        .into_iter()
        .filter(|taint| {
            !list(spec.get("tolerations")).any(|t| {
                let key = t["key"].as_str().unwrap_or_default();
                let effect = t["effect"].as_str().unwrap_or_default();
                (key == *taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !tolerations.is_array() {
        *tolerations = json!([]);
    }
    if let Some(list) = tolerations.as_array_mut() {
        for taint in missing {
            list.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": TOLERATION_SECONDS,
            }));
        }
    }
}

/// `Priority` on a new pod (`admitPod`): the value of its PriorityClass, or without one of the
/// global default class (whose name the pod then takes; 0 and `PreemptLowerPriority` when there is
/// none), which a value in the pod must equal; the class's preemption policy, likewise.
fn priority(inner: &Inner, spec: &mut Map<String, Value>) -> Result<(), AdmissionError> {
    let name = text(spec, "priorityClassName");
    let (computed, policy) = if name.is_empty() {
        match priority_classes::global_default(inner) {
            Some(class) => {
                spec.insert("priorityClassName".into(), json!(class.name));
                (class.value, class.preemption_policy)
            }
            None => (0, Some(PREEMPT_LOWER_PRIORITY.to_owned())),
        }
    } else {
        let class = priority_classes::get(inner, name)
            .ok_or_else(|| AdmissionError::NoPriorityClass(name.to_owned()))?;
        (class.value, class.preemption_policy)
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != computed
    {
        return Err(AdmissionError::Priority { given, computed });
    }
    spec.insert("priority".into(), json!(computed));
    if let Some(policy) = policy {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && given != policy
        {
            return Err(AdmissionError::PreemptionPolicy {
                given: given.to_owned(),
                computed: policy,
            });
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn a_new_pod_gets_the_default_account_its_volume_tolerations_and_priority() {
        let cluster = Cluster::open(None, 10).unwrap();
        let inner = cluster.lock();
        let mut p = pod(json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx",
                "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "own", "emptyDir": {}}],
        }));
        admit(&inner, "default", None, &mut p).unwrap();
        let spec = &p["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        let volume = &spec["volumes"][1];
        let name = volume["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        assert_eq!(
            volume["projected"]["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        let mount = json!([{"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}]);
        assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);
        assert_eq!(spec["containers"][0]["volumeMounts"], mount);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    }

    #[test]
    fn what_the_pod_already_says_is_kept_or_refused() {
        let cluster = Cluster::open(None, 10).unwrap();
        let inner = cluster.lock();
        // An opt-out, a wildcard toleration, a system class.
        let mut p = pod(json!({
            "automountServiceAccountToken": false,
            "containers": [{"name": "a", "image": "nginx"}],
            "tolerations": [{"operator": "Exists"}],
            "priorityClassName": "system-node-critical",
        }));
        admit(&inner, "default", None, &mut p).unwrap();
        assert!(p["spec"].get("volumes").is_none());
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 1);
        assert_eq!(p["spec"]["priority"], 2_000_001_000);

        let refused = |spec: Value| {
            let mut p = pod(spec);
            admit(&inner, "default", None, &mut p)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(json!({"serviceAccountName": "ghost", "containers": []})),
            "error looking up service account default/ghost: serviceaccount \"ghost\" not found"
        );
        assert_eq!(
            refused(json!({"priorityClassName": "high", "containers": []})),
            "no PriorityClass with name high was found"
        );
        assert!(refused(json!({"priority": 7, "containers": []})).starts_with(
            "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0"
        ));
        assert!(
            refused(json!({"preemptionPolicy": "Never", "containers": []}))
                .starts_with("the string value of PreemptionPolicy (Never) must not be provided")
        );
        let mut mirror = pod(json!({"serviceAccountName": "x", "containers": []}));
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "h"});
        assert_eq!(
            admit(&inner, "default", None, &mut mirror),
            Err(AdmissionError::MirrorServiceAccount)
        );
    }

    #[test]
    fn an_update_keeps_the_priority_and_gets_missing_tolerations() {
        let cluster = Cluster::open(None, 10).unwrap();
        let inner = cluster.lock();
        let old = pod(json!({"priority": 5, "containers": []}));
        let mut new = pod(json!({"containers": []}));
        admit(&inner, "default", Some(&old), &mut new).unwrap();
        assert_eq!(new["spec"]["priority"], 5);
        assert_eq!(new["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert!(new["spec"].get("serviceAccountName").is_none());
    }
}
