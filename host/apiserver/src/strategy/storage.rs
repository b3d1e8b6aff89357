//! What Kubernetes' registry strategies and admission do to storage: StorageClasses
//! (`SetDefaults_StorageClass`, `ValidateStorageClass` and its update rules), PersistentVolumes
//! (`SetDefaults_PersistentVolume`, the Pending phase and its transition time on create, the main
//! rules of `ValidatePersistentVolumeSpec`, the immutable source) and the `DefaultStorageClass`
//! admission plugin on PersistentVolumeClaims.

use serde_json::{Map, Value, json};

use super::validate::Change;
use crate::cluster::{Inner, now};
use crate::error::FieldCause;
use crate::validation;

/// The storage key of StorageClasses.
pub(crate) const STORAGE_CLASSES: &str = "storageclasses.storage.k8s.io";
/// `IsDefaultStorageClassAnnotation`.
pub(crate) const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// `BetaIsDefaultStorageClassAnnotation`.
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// `BetaStorageClassAnnotation`: a claim's class before `storageClassName`.
pub(crate) const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// `maxProvisionerParameterLen`.
const MAX_PARAMETERS: usize = 512;
/// `maxProvisionerParameterSize` (256 kB).
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;
/// The sources a PersistentVolume may name, one of them.
const VOLUME_SOURCES: [&str; 22] = [
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// Whether a StorageClass is marked as a default one (`IsDefaultAnnotation`: exactly `"true"`).
pub(crate) fn is_default_class(class: &Value) -> bool {
    let annotations = &class["metadata"]["annotations"];
    annotations[DEFAULT_CLASS] == "true" || annotations[BETA_DEFAULT_CLASS] == "true"
}

/// `GetDefaultClass`: of the classes marked default, the newest, ties to the first name.
pub(crate) fn default_class<'a>(classes: impl Iterator<Item = &'a Value>) -> Option<&'a Value> {
    classes.filter(|c| is_default_class(c)).max_by(|a, b| {
        let created = |c: &Value| {
            c["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_owned)
        };
        created(a).cmp(&created(b)).then_with(|| {
            b["metadata"]["name"]
                .as_str()
                .cmp(&a["metadata"]["name"].as_str())
        })
    })
}

/// The class a claim or volume names (`GetPersistentVolumeClaimClass`,
/// `GetPersistentVolumeClass`): the beta annotation when present, else `storageClassName`.
pub(crate) fn class_name(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"][BETA_CLASS]
        .as_str()
        .or_else(|| object["spec"]["storageClassName"].as_str())
}

/// `PersistentVolumeClaimHasClass`: a `storageClassName` (even `""`) or the beta annotation.
pub(crate) fn claim_has_class(claim: &Value) -> bool {
    !claim["spec"]["storageClassName"].is_null()
        || !claim["metadata"]["annotations"][BETA_CLASS].is_null()
}

/// The `DefaultStorageClass` admission plugin, on a claim being created that names no class: it
/// gets the default StorageClass, if there is one.
pub(super) fn admit_claim(inner: &Inner, claim: &mut Value) {
    if claim_has_class(claim) {
        return;
    }
    let classes: Vec<&Value> = inner
        .store
        .list(STORAGE_CLASSES, None, None)
        .map(|(_, c)| &**c)
        .collect();
    if let Some(name) =
        default_class(classes.into_iter()).and_then(|c| c["metadata"]["name"].as_str())
        && let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("storageClassName".into(), json!(name));
    }
}

/// `SetDefaults_StorageClass`: reclaim `Delete`, binding `Immediate`.
pub(super) fn class_defaults(map: &mut Map<String, Value>) {
    for (key, value) in [
        ("reclaimPolicy", "Delete"),
        ("volumeBindingMode", "Immediate"),
    ] {
        if map.get(key).is_none_or(Value::is_null) {
            map.insert(key.into(), json!(value));
        }
    }
}

/// `SetDefaults_PersistentVolume` and `PrepareForCreate`: reclaim `Retain`, `Filesystem`, an
/// unset host path type; a new volume `Pending` since now.
pub(super) fn volume_defaults(map: &mut Map<String, Value>, creating: bool) {
    if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
        if spec
            .get("persistentVolumeReclaimPolicy")
            .is_none_or(|p| p.is_null() || p == "")
        {
            spec.insert("persistentVolumeReclaimPolicy".into(), json!("Retain"));
        }
        if spec.get("volumeMode").is_none_or(Value::is_null) {
            spec.insert("volumeMode".into(), json!("Filesystem"));
        }
        if let Some(host_path) = spec.get_mut("hostPath").and_then(Value::as_object_mut)
            && host_path.get("type").is_none_or(Value::is_null)
        {
            host_path.insert("type".into(), json!(""));
        }
    }
    if creating {
        map.insert(
            "status".into(),
            json!({"phase": "Pending", "lastPhaseTransitionTime": now()}),
        );
    }
}

/// The PersistentVolume status strategy: a new phase gets a new transition time, unless the
/// writer set one.
pub(super) fn volume_status(old: Option<&Value>, object: &mut Value) {
    let Some(old) = old else {
        return;
    };
    let (before, after) = (&old["status"], &object["status"]);
    let time = if before["phase"] == after["phase"] {
        if after["lastPhaseTransitionTime"].is_null() {
            before["lastPhaseTransitionTime"].clone()
        } else {
            return;
        }
    } else if after["lastPhaseTransitionTime"].is_null()
        || after["lastPhaseTransitionTime"] == before["lastPhaseTransitionTime"]
    {
        json!(now())
    } else {
        return;
    };
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut)
        && !time.is_null()
    {
        status.insert("lastPhaseTransitionTime".into(), time);
    }
}

/// The field errors of a StorageClass or PersistentVolume.
pub(super) fn check(
    kind: &str,
    old: Option<&Value>,
    object: &Value,
    change: Change,
) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    match (kind, change) {
        ("StorageClass", Change::Object) => storage_class(object, old, &mut errs),
        ("PersistentVolume", Change::Object) => persistent_volume(object, old, &mut errs),
        _ => {}
    }
    errs
}

/// `ValidateStorageClass` and `ValidateStorageClassUpdate`.
fn storage_class(class: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let provisioner = class["provisioner"].as_str().unwrap_or_default();
    if provisioner.is_empty() {
        errs.push(FieldCause::required("provisioner", ""));
    } else if let Err(e) = validation::qualified_name(&provisioner.to_lowercase()) {
        errs.push(FieldCause::invalid("provisioner", provisioner, e));
    }
    if let Some(parameters) = class["parameters"].as_object() {
        if parameters.len() > MAX_PARAMETERS {
            errs.push(FieldCause::too_long("parameters", MAX_PARAMETERS));
        } else {
            let mut size = 0;
            for (key, value) in parameters {
                if key.is_empty() {
                    errs.push(FieldCause::invalid(
                        "parameters",
                        key,
                        "field can not be empty.",
                    ));
                }
                size += key.len() + value.as_str().map_or(0, str::len);
            }
            if size > MAX_PARAMETERS_SIZE {
                errs.push(FieldCause::too_long("parameters", MAX_PARAMETERS_SIZE));
            }
        }
    }
    let policy = &class["reclaimPolicy"];
    if policy
        .as_str()
        .is_some_and(|p| !p.is_empty() && p != "Delete" && p != "Retain")
    {
        errs.push(FieldCause::not_supported(
            "reclaimPolicy",
            policy,
            &["Delete", "Retain"],
        ));
    }
    let mode = &class["volumeBindingMode"];
    if mode.is_null() {
        errs.push(FieldCause::required("volumeBindingMode", ""));
    } else if mode != "Immediate" && mode != "WaitForFirstConsumer" {
        errs.push(FieldCause::not_supported(
            "volumeBindingMode",
            mode,
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
    let Some(old) = old else {
        return;
    };
    for key in ["parameters", "provisioner", "reclaimPolicy"] {
        if old[key] != class[key] {
            errs.push(FieldCause::forbidden(
                key,
                &format!("updates to {key} are forbidden."),
            ));
        }
    }
    if old["volumeBindingMode"] != *mode {
        errs.push(FieldCause::invalid_value(
            "volumeBindingMode",
            mode,
            "field is immutable",
        ));
    }
}

/// The main rules of `ValidatePersistentVolumeSpec`, and on update its immutable source and mode.
fn persistent_volume(volume: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    const MODES: [&str; 4] = [
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    let spec = &volume["spec"];
    let modes = spec["accessModes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldCause::required("spec.accessModes", ""));
    }
    for mode in modes {
        if !MODES.iter().any(|m| mode == m) {
            errs.push(FieldCause::not_supported("spec.accessModes", mode, &MODES));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod")
        && modes.iter().any(|m| m != "ReadWriteOncePod")
    {
        errs.push(FieldCause::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    let capacity = spec["capacity"].as_object();
    if capacity.is_none_or(Map::is_empty) {
        errs.push(FieldCause::required("spec.capacity", ""));
    }
    if capacity.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        errs.push(FieldCause::other_typed(
            crate::error::CauseType::ValueNotSupported,
            "spec.capacity",
            format!(
                "Unsupported value: {}: supported values: \"storage\"",
                go_resource_list(capacity)
            ),
        ));
    }
    let policy = &spec["persistentVolumeReclaimPolicy"];
    if policy
        .as_str()
        .is_some_and(|p| !p.is_empty() && !["Delete", "Recycle", "Retain"].contains(&p))
    {
        errs.push(FieldCause::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &["Delete", "Recycle", "Retain"],
        ));
    }
    let mut sources = 0;
    for source in VOLUME_SOURCES {
        if !spec[source].is_object() {
            continue;
        }
        if sources > 0 {
            errs.push(FieldCause::forbidden(
                &format!("spec.{source}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        sources += 1;
        match source {
            "hostPath" => {
                let path = spec["hostPath"]["path"].as_str().unwrap_or_default();
                if path.is_empty() {
                    errs.push(FieldCause::required("spec.hostPath.path", ""));
                } else if path.split('/').any(|segment| segment == "..") {
                    errs.push(FieldCause::invalid(
                        "spec.hostPath.path",
                        path,
                        "must not contain '..'",
                    ));
                }
            }
            "local" if spec["nodeAffinity"].is_null() => errs.push(FieldCause::required(
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            )),
            _ => {}
        }
    }
    if sources == 0 {
        errs.push(FieldCause::required("spec", "must specify a volume type"));
    }
    let mode = &spec["volumeMode"];
    if !mode.is_null() && mode != "Filesystem" && mode != "Block" {
        errs.push(FieldCause::not_supported(
            "spec.volumeMode",
            mode,
            &["Block", "Filesystem"],
        ));
    }
    let Some(old) = old else {
        return;
    };
    let source_of = |spec: &Value| -> Map<String, Value> {
        VOLUME_SOURCES
            .iter()
            .filter_map(|s| Some(((*s).to_owned(), spec.get(*s)?.clone())))
            .collect()
    };
    if source_of(&old["spec"]) != source_of(spec) {
        errs.push(FieldCause::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    if old["spec"]["volumeMode"] != *mode {
        errs.push(FieldCause::invalid_value(
            "volumeMode",
            mode,
            "field is immutable",
        ));
    }
}

/// A resource list as `field.Error` prints a `core.ResourceList` (`%#v` of the map).
fn go_resource_list(list: Option<&Map<String, Value>>) -> String {
    let entries: Vec<String> = list
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k:?}:{}", v.as_str().unwrap_or_default()))
        .collect();
    format!("core.ResourceList{{{}}}", entries.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(errs: &[FieldCause]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_storage_class_is_defaulted_and_its_provisioner_parameters_and_policy_never_change() {
        let mut class = json!({"metadata": {"name": "fast"}, "provisioner": "example.com/disk",
            "parameters": {"type": "ssd"}});
        class_defaults(class.as_object_mut().unwrap());
        assert_eq!(class["reclaimPolicy"], "Delete");
        assert_eq!(class["volumeBindingMode"], "Immediate");
        assert!(check("StorageClass", None, &class, Change::Object).is_empty());
        let mut changed = class.clone();
        changed["parameters"]["type"] = json!("hdd");
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(
            texts(&check(
                "StorageClass",
                Some(&class),
                &changed,
                Change::Object
            )),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
        let bad =
            json!({"provisioner": "", "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"});
        assert_eq!(
            texts(&check("StorageClass", None, &bad, Change::Object)),
            [
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
    }

    #[test]
    fn a_volume_needs_modes_a_storage_capacity_and_one_source_that_never_changes() {
        let mut volume = json!({"metadata": {"name": "pv1"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}});
        volume_defaults(volume.as_object_mut().unwrap(), true);
        assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(volume["spec"]["volumeMode"], "Filesystem");
        assert_eq!(volume["spec"]["hostPath"]["type"], "");
        assert_eq!(volume["status"]["phase"], "Pending");
        assert!(check("PersistentVolume", None, &volume, Change::Object).is_empty());
        let empty = json!({"spec": {}});
        assert_eq!(
            texts(&check("PersistentVolume", None, &empty, Change::Object)),
            [
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec.capacity: Unsupported value: core.ResourceList{}: supported values: \"storage\"",
                "spec: Required value: must specify a volume type",
            ]
        );
        let mut moved = volume.clone();
        moved["spec"]["hostPath"]["path"] = json!("/elsewhere");
        assert_eq!(
            texts(&check(
                "PersistentVolume",
                Some(&volume),
                &moved,
                Change::Object
            )),
            [
                "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
            ]
        );
    }

    #[test]
    fn the_default_class_is_the_newest_marked_one() {
        let class = |name: &str, at: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": at,
                "annotations": {DEFAULT_CLASS: if default { "true" } else { "false" }}}})
        };
        let classes = [
            class("a", "2026-01-01T00:00:00Z", true),
            class("b", "2026-02-01T00:00:00Z", true),
            class("c", "2026-03-01T00:00:00Z", false),
            class("d", "2026-02-01T00:00:00Z", true),
        ];
        let chosen = default_class(classes.iter()).unwrap();
        assert_eq!(
            chosen["metadata"]["name"], "b",
            "newest, then the first name"
        );
        let mut claim = json!({"spec": {"storageClassName": ""}});
        assert!(claim_has_class(&claim), "an empty class is a class");
        claim["spec"] = json!({});
        assert!(!claim_has_class(&claim));
    }
}
