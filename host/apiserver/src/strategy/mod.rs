//! What Kubernetes' registry strategies do to a built-in kind on its way to storage: decode it as
//! its Go type would (a field of the wrong type is a 400), default it ([`defaults`]), allocate what
//! the server owns (a Service's cluster IP and node ports, [`service`]), and validate it
//! ([`validate`]); and which kinds count `metadata.generation` at all.

mod autoscaling;
pub(crate) mod daemon_set;
mod defaults;
mod networking;
mod service;
pub(crate) mod storage;
mod validate;

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
    core::v1 as core, discovery::v1 as discovery, networking::v1 as net, node::v1 as node,
    policy::v1 as policy, scheduling::v1 as scheduling, storage::v1 as storage_api,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::Inner;
use crate::error::{ApiError, FieldCause};
use crate::resource::ResourceInfo;

pub(crate) use defaults::items as object_items;
pub(crate) use validate::{Change, labels, tolerations};

/// The groups Kubernetes itself serves here; any other group is a custom resource's.
const BUILTIN_GROUPS: [&str; 17] = [
    "",
    "certificates.k8s.io",
    "apps",
    "autoscaling",
    "batch",
    "policy",
    "networking.k8s.io",
    "discovery.k8s.io",
    "rbac.authorization.k8s.io",
    "events.k8s.io",
    "coordination.k8s.io",
    "scheduling.k8s.io",
    "node.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "apiregistration.k8s.io",
];

/// Why a write is refused before it is stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The body does not decode as the kind (answered 400).
    #[error("{0}")]
    Decode(String),
    /// Field errors (answered 422 with `details.causes`).
    #[error("the object is invalid ({} field errors)", .0.len())]
    Invalid(Vec<FieldCause>),
    /// An admission plugin refuses the pod (answered 403).
    #[error(transparent)]
    Forbidden(#[from] crate::pod_admission::AdmissionError),
    /// The `Priority` admission plugin refuses the PriorityClass (answered 403).
    #[error(transparent)]
    ForbiddenClass(#[from] crate::priority_classes::ClassError),
    /// The `LimitRanger` admission plugin refuses the pod (answered 403).
    #[error(transparent)]
    Limits(#[from] crate::limit_ranges::LimitError),
    /// The `ResourceQuota` admission plugin refuses the object (answered 403).
    #[error(transparent)]
    Quota(#[from] crate::quota::QuotaError),
    /// The `CertificateSubjectRestriction` admission plugin refuses the request (answered 403).
    #[error(transparent)]
    Subject(#[from] crate::certificates::CertificateError),
}

/// Whether the kind is one Kubernetes itself defines (not a custom resource).
#[must_use]
pub(crate) fn is_builtin(info: &ResourceInfo) -> bool {
    is_builtin_group(&info.group)
}

/// Whether Kubernetes itself serves `group` (any other is a custom resource's).
#[must_use]
pub(crate) fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

/// Whether objects of this kind carry `metadata.generation`: custom resources and the kinds whose
/// registry strategy sets it (workloads, ReplicationControllers and PodTemplates, CRDs, admission
/// policies and their bindings); ConfigMaps, Secrets, Services, Pods, Namespaces, RBAC objects,
/// Leases and Events have none.
#[must_use]
pub(crate) fn tracks_generation(info: &ResourceInfo) -> bool {
    (info.group.is_empty() && matches!(info.kind.as_str(), "ReplicationController" | "PodTemplate"))
        || matches!(
            info.group.as_str(),
            "apps"
                | "batch"
                | "policy"
                | "networking.k8s.io"
                | "discovery.k8s.io"
                | "apiextensions.k8s.io"
                | "admissionregistration.k8s.io"
        )
        || !BUILTIN_GROUPS.contains(&info.group.as_str())
}

/// One step of a path into a JSON document.
enum Step {
    /// An object's key.
    Key(String),
    /// A list's index.
    Index(usize),
}

/// The steps of a path serde_ignored reports (wrappers such as `Option` are not steps).
fn steps(path: &serde_ignored::Path<'_>, out: &mut Vec<Step>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            steps(parent, out);
            out.push(Step::Index(*index));
        }
        Path::Map { parent, key } => {
            steps(parent, out);
            out.push(Step::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent, out),
    }
}

/// A path as apimachinery names a field: `spec.template.spec.containers[0].foo`.
fn field_name(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Removes the value at `steps` from `object`.
fn remove(object: &mut Value, steps: &[Step]) {
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut cur = object;
    for step in parents {
        let next = match step {
            Step::Key(k) => cur.get_mut(k.as_str()),
            Step::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Step::Key(k), Some(map)) = (last, cur.as_object_mut()) {
        map.remove(k);
    }
}

/// Decodes `object` as `T`, as the server's codec would before anything else looks at it, and
/// drops the fields `T` does not have (as decoding into a Go struct does), returning their paths.
/// serde_ignored reports the fields the type's deserializer skips, so no re-encoding is needed.
fn decodes_as<T: DeserializeOwned>(
    info: &ResourceInfo,
    object: &mut Value,
) -> Result<Vec<String>, Refusal> {
    let mut ignored: Vec<Vec<Step>> = Vec::new();
    let trees = take_fields_v1(object);
    let decoded: Result<T, _> = serde_ignored::deserialize(&*object, |path| {
        let mut s = Vec::new();
        steps(&path, &mut s);
        ignored.push(s);
    });
    put_back_fields_v1(object, trees);
    decoded.map_err(|e| {
        Refusal::Decode(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
            kind = info.kind,
            version = info.version
        ))
    })?;
    let mut unknown = Vec::with_capacity(ignored.len());
    for path in &ignored {
        unknown.push(field_name(path));
        remove(object, path);
    }
    Ok(unknown)
}

/// Takes the `fieldsV1` trees out of the object's `managedFields` entries, with their positions.
/// A `FieldsV1` holds any JSON value, so it can neither fail to decode nor hold unknown fields;
/// decoding copies the whole tree, a large part of a write's decode.
fn take_fields_v1(object: &mut Value) -> Vec<(usize, Value)> {
    let Some(entries) = object
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    else {
        return Vec::new();
    };
    entries
        .iter_mut()
        .enumerate()
        .filter_map(|(i, e)| Some((i, e.as_object_mut()?.remove("fieldsV1")?)))
        .collect()
}

/// Puts back what [`take_fields_v1`] took (decoding removes no entry, only unknown fields).
fn put_back_fields_v1(object: &mut Value, trees: Vec<(usize, Value)>) {
    let Some(entries) = object
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for (i, tree) in trees {
        if let Some(e) = entries.get_mut(i).and_then(Value::as_object_mut) {
            e.insert("fieldsV1".to_owned(), tree);
        }
    }
}

/// Base64 byte fields as Go stores them: Go's decoder skips `\r` and `\n` (line-wrapped base64, as
/// some generators write it, is accepted) and its encoder writes none.
fn canonical_bytes(info: &ResourceInfo, object: &mut Value) {
    let field = match (info.group.as_str(), info.kind.as_str()) {
        ("", "Secret") => "data",
        ("", "ConfigMap") => "binaryData",
        _ => return,
    };
    for value in object
        .get_mut(field)
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        if let Value::String(s) = value
            && s.contains(['\r', '\n'])
        {
            s.retain(|c| c != '\r' && c != '\n');
        }
    }
}

/// Decodes a built-in kind with its generated type, dropping unknown fields (custom resources and
/// other kinds pass whole).
fn decode(info: &ResourceInfo, object: &mut Value) -> Result<Vec<String>, Refusal> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("apps", "Deployment") => decodes_as::<apps::Deployment>(info, object),
        ("apps", "ReplicaSet") => decodes_as::<apps::ReplicaSet>(info, object),
        ("apps", "StatefulSet") => decodes_as::<apps::StatefulSet>(info, object),
        ("apps", "DaemonSet") => decodes_as::<apps::DaemonSet>(info, object),
        ("autoscaling", "HorizontalPodAutoscaler") if info.version == "v1" => {
            decodes_as::<autoscaling_v1::HorizontalPodAutoscaler>(info, object)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            decodes_as::<autoscaling_v2::HorizontalPodAutoscaler>(info, object)
        }
        ("apps", "ControllerRevision") => decodes_as::<apps::ControllerRevision>(info, object),
        ("batch", "Job") => decodes_as::<batch::Job>(info, object),
        ("batch", "CronJob") => decodes_as::<batch::CronJob>(info, object),
        ("", "Pod") => decodes_as::<core::Pod>(info, object),
        ("", "PodTemplate") => decodes_as::<core::PodTemplate>(info, object),
        ("", "ReplicationController") => decodes_as::<core::ReplicationController>(info, object),
        ("", "Service") => decodes_as::<core::Service>(info, object),
        ("", "Endpoints") => decodes_as::<core::Endpoints>(info, object),
        ("discovery.k8s.io", "EndpointSlice") => {
            decodes_as::<discovery::EndpointSlice>(info, object)
        }
        ("", "ConfigMap") => decodes_as::<core::ConfigMap>(info, object),
        ("", "Secret") => decodes_as::<core::Secret>(info, object),
        ("", "Namespace") => decodes_as::<core::Namespace>(info, object),
        ("", "Node") => decodes_as::<core::Node>(info, object),
        ("", "PersistentVolumeClaim") => decodes_as::<core::PersistentVolumeClaim>(info, object),
        ("", "PersistentVolume") => decodes_as::<core::PersistentVolume>(info, object),
        ("", "LimitRange") => decodes_as::<core::LimitRange>(info, object),
        ("", "ResourceQuota") => decodes_as::<core::ResourceQuota>(info, object),
        ("storage.k8s.io", "StorageClass") => decodes_as::<storage_api::StorageClass>(info, object),
        ("scheduling.k8s.io", "PriorityClass") => {
            decodes_as::<scheduling::PriorityClass>(info, object)
        }
        ("policy", "PodDisruptionBudget") => {
            decodes_as::<policy::PodDisruptionBudget>(info, object)
        }
        ("node.k8s.io", "RuntimeClass") => decodes_as::<node::RuntimeClass>(info, object),
        ("certificates.k8s.io", "CertificateSigningRequest") => decodes_as::<
            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
        >(info, object),
        ("networking.k8s.io", "Ingress") => decodes_as::<net::Ingress>(info, object),
        ("networking.k8s.io", "IngressClass") => decodes_as::<net::IngressClass>(info, object),
        ("networking.k8s.io", "NetworkPolicy") => decodes_as::<net::NetworkPolicy>(info, object),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            decodes_as::<admissionregistration::ValidatingAdmissionPolicy>(info, object)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            decodes_as::<admissionregistration::ValidatingAdmissionPolicyBinding>(info, object)
        }
        ("apiregistration.k8s.io", "APIService") => decodes_as::<
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        >(info, object),
        _ => Ok(Vec::new()),
    }
}

/// Runs the strategy on `object`, a create (`old` None) or an update of `old`, of the object named
/// `key` (namespace, name).
///
/// `decoded` is called once, with the object as kube-apiserver's field manager sees it: decoded
/// and defaulted (defaults are set as the body is decoded there), before admission, allocation
/// and the strategy's own changes (`PrepareForCreate`), whose fields the writer does not own.
///
/// Returns the unknown fields dropped from the body.
///
/// # Errors
/// [`Refusal`] when the object does not decode, cannot get what must be allocated, or is invalid.
pub(crate) fn prepare(
    inner: &Inner,
    info: &ResourceInfo,
    key: (&str, &str),
    old: Option<&Value>,
    object: &mut Value,
    change: Change,
    decoded: &mut dyn FnMut(&mut Value),
) -> Result<Vec<String>, Refusal> {
    canonical_bytes(info, object);
    if !is_builtin(info) {
        let unknown = custom_resource(inner, info, old, object)?;
        decoded(object);
        return Ok(unknown);
    }
    let unknown = decode(info, object)?;
    if info.group == "apps" && info.kind == "DaemonSet" {
        daemon_set::prepare(old, object, change)?;
    }
    if change == Change::Object {
        defaults::apply(&info.group, &info.kind, object, old.is_none());
        // The other kinds' `SetDefaults_*`, which decoding runs.
        if info.group.is_empty() && info.kind == "LimitRange" {
            crate::limit_ranges::defaults(object);
        }
        match (info.group.as_str(), info.kind.as_str()) {
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
                crate::admission_policy::default_policy(object);
            }
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
                crate::admission_policy::default_binding(object);
            }
            ("apiregistration.k8s.io", "APIService") => crate::api_services::defaults(object),
            _ => {}
        }
        if is_priority_class(info) {
            crate::priority_classes::default(object);
        }
        match (
            info.group.as_str(),
            info.kind.as_str(),
            object.as_object_mut(),
        ) {
            ("storage.k8s.io", "StorageClass", Some(map)) => storage::class_defaults(map),
            ("", "PersistentVolume", Some(map)) => storage::volume_defaults(map, old.is_none()),
            _ => {}
        }
        if is_autoscaler(info) {
            autoscaling::defaults(object, &info.version, old.is_none());
        }
    }
    decoded(object);
    if change == Change::Object {
        if old.is_none() && info.group.is_empty() && info.kind == "Namespace" {
            crate::namespace::prepare(object);
        }
        if old.is_none() && info.group == "batch" && info.kind == "Job" {
            defaults::job_selector(object);
        }
        if info.group.is_empty() && info.kind == "Pod" {
            // Mutating admission: `LimitRanger` (on create) before the plugins of
            // `pod_admission`; the QoS class follows what it set.
            if old.is_none() && crate::limit_ranges::admit_pod(inner, key.0, object)? {
                defaults::pod_qos(object);
            }
            crate::pod_admission::admit(inner, key.0, old, object)?;
        }
        if old.is_none() && info.group == "networking.k8s.io" && info.kind == "Ingress" {
            networking::default_class(inner, object);
        }
        match (info.group.as_str(), info.kind.as_str()) {
            ("", "PersistentVolume") if old.is_none() => {
                crate::storage_protection::admit(
                    object,
                    crate::storage_protection::VOLUME_FINALIZER,
                );
            }
            ("", "PersistentVolumeClaim") if old.is_none() => {
                storage::admit_claim(inner, object);
                crate::storage_protection::admit(
                    object,
                    crate::storage_protection::CLAIM_FINALIZER,
                );
            }
            _ => {}
        }
        if info.group.is_empty() && info.kind == "Service" {
            service::keep_allocated(old, object);
            let errs = validate::check(&info.group, &info.kind, old, object, change);
            if !errs.is_empty() {
                return Err(Refusal::Invalid(errs));
            }
            service::allocate(inner, key, old, object).map_err(Refusal::Invalid)?;
            admit_quota(inner, info, key, old, object, change)?;
            return Ok(unknown);
        }
    }
    if is_autoscaler(info) {
        let errs = autoscaling::check(&info.version, old, object, change);
        if !errs.is_empty() {
            return Err(Refusal::Invalid(errs));
        }
        admit_quota(inner, info, key, old, object, change)?;
        return Ok(unknown);
    }
    if change == Change::Status && info.group.is_empty() && info.kind == "PersistentVolume" {
        storage::volume_status(old, object);
    }
    let mut errs = validate::check(&info.group, &info.kind, old, object, change);
    if matches!(
        (info.group.as_str(), info.kind.as_str()),
        ("storage.k8s.io", "StorageClass") | ("", "PersistentVolume")
    ) {
        errs.extend(storage::check(&info.kind, old, object, change));
    }
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "LimitRange") if change == Change::Object => {
            errs.extend(crate::limit_ranges::validate(object));
        }
        ("", "ResourceQuota") => {
            errs.extend(crate::quota::validate(object));
            if change == Change::Object {
                errs.extend(crate::quota::validate_scopes(object, old));
            }
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy")
            if change == Change::Object =>
        {
            errs.extend(crate::admission_policy::validate_policy(object));
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            errs.extend(crate::admission_policy::validate_binding(object));
        }
        ("apiregistration.k8s.io", "APIService") if change == Change::Object => {
            errs.extend(crate::api_services::validate(object));
            if errs.is_empty() {
                crate::api_services::prepare(inner, object);
            }
        }
        _ => {}
    }
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        errs.extend(crate::cel_library::cost::crd_rule_errors(object));
    }
    if is_priority_class(info) && change == Change::Object {
        crate::priority_classes::validate(object, old, &mut errs);
    }
    if info.group == "node.k8s.io" && info.kind == "RuntimeClass" {
        crate::runtime_classes::validate(object, old, &mut errs);
    }
    if crate::certificates::is_csr(info) {
        crate::certificates::validate(object, old, change, &mut errs);
        if errs.is_empty() && old.is_none() {
            crate::certificates::restrict_subject(object)?;
        }
    }
    if !errs.is_empty() {
        return Err(Refusal::Invalid(errs));
    }
    // Validating admission runs after the strategy's validation, as in the generic registry.
    if is_priority_class(info) && change == Change::Object {
        crate::priority_classes::admit(inner, object, old)?;
    }
    admit_quota(inner, info, key, old, object, change)?;
    Ok(unknown)
}

/// The `ResourceQuota` admission plugin, last: on a create, and on an update of a kind whose
/// evaluator charges updates.
fn admit_quota(
    inner: &Inner,
    info: &ResourceInfo,
    key: (&str, &str),
    old: Option<&Value>,
    object: &Value,
    change: Change,
) -> Result<(), Refusal> {
    if change == Change::Object
        && info.namespaced
        && (old.is_none() || crate::quota::charges_updates(info))
    {
        crate::quota::admit(inner, info, key.0, object, old)?;
    }
    Ok(())
}

fn is_autoscaler(info: &ResourceInfo) -> bool {
    info.group == "autoscaling" && info.kind == "HorizontalPodAutoscaler"
}

fn is_priority_class(info: &ResourceInfo) -> bool {
    info.group == "scheduling.k8s.io" && info.kind == "PriorityClass"
}

/// A custom resource goes through its CRD's structural schema ([`crate::schema`]).
fn custom_resource(
    inner: &Inner,
    info: &ResourceInfo,
    old: Option<&Value>,
    object: &mut Value,
) -> Result<Vec<String>, Refusal> {
    let Some(schema) = crate::schema::of_custom_resource(inner, info) else {
        return Ok(Vec::new());
    };
    let outcome = crate::schema::apply(schema, object, old);
    if outcome.errors.is_empty() {
        Ok(outcome.unknown)
    } else {
        Err(Refusal::Invalid(outcome.errors))
    }
}

impl Refusal {
    /// The answer to the client, for the object `name` of `info`.
    pub(crate) fn into_api_error(self, info: &ResourceInfo, name: &str) -> ApiError {
        match self {
            Self::Decode(message) => ApiError::BadRequest(message),
            Self::Forbidden(_)
            | Self::ForbiddenClass(_)
            | Self::Limits(_)
            | Self::Quota(_)
            | Self::Subject(_) => ApiError::Forbidden {
                group: info.group.clone(),
                resource: info.plural.clone(),
                name: name.to_owned(),
                message: self.to_string(),
            },
            Self::Invalid(causes) => ApiError::Invalid {
                kind: info.kind.clone(),
                group: info.group.clone(),
                name: name.to_owned(),
                causes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;
    use serde_json::json;

    #[test]
    fn wrapped_base64_is_accepted_and_stored_unwrapped_as_go_does() {
        let registry = Registry::default();
        let info = registry.lookup("", "v1", "secrets").unwrap();
        let mut secret = json!({"data": {"k": "aGVs\nbG8=\r\n"}});
        canonical_bytes(&info, &mut secret);
        assert_eq!(secret["data"]["k"], "aGVsbG8=");
        assert!(decode(&info, &mut secret).is_ok());
        let mut bad = json!({"data": {"k": "not base64!"}});
        canonical_bytes(&info, &mut bad);
        assert!(
            matches!(decode(&info, &mut bad), Err(Refusal::Decode(m)) if m.starts_with("Secret in version \"v1\" cannot be handled as a Secret"))
        );
    }

    #[test]
    fn unknown_fields_are_dropped_and_named_as_apimachinery_names_them() {
        let registry = Registry::default();
        let info = registry.lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({"metadata": {"name": "d", "nmae": "typo"}, "spec": {"replicas": 2,
            "template": {"spec": {"containers": [{"name": "c", "image": "x", "imagePullPolcy": "Always"}]}},
            "selector": null, "extra": {"a": 1}}});
        let unknown = decode(&info, &mut d).unwrap();
        assert_eq!(
            unknown,
            [
                "metadata.nmae",
                "spec.extra",
                "spec.template.spec.containers[0].imagePullPolcy"
            ]
        );
        assert_eq!(
            d,
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 2, "selector": null,
                "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}})
        );
    }

    #[test]
    fn managed_fields_trees_are_kept_as_they_are_and_their_entries_still_checked() {
        let registry = Registry::default();
        let info = registry.lookup("apps", "v1", "deployments").unwrap();
        let tree = json!({"f:spec": {"f:replicas": {}, "k:{\"x\":1}": {".": {}}}, "odd": [1]});
        let mut d = json!({"metadata": {"name": "d", "managedFields": [
            {"manager": "a", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": tree},
            {"manager": "b", "operation": "Update", "bogus": 1, "fieldsV1": {"f:x": {}}}]}});
        let unknown = decode(&info, &mut d).unwrap();
        assert_eq!(unknown, ["metadata.managedFields[1].bogus"]);
        assert_eq!(d["metadata"]["managedFields"][0]["fieldsV1"], tree);
        assert_eq!(
            d["metadata"]["managedFields"][1],
            json!({"manager": "b", "operation": "Update", "fieldsV1": {"f:x": {}}})
        );
        let mut bad = json!({"metadata": {"name": "d", "managedFields": [
            {"manager": 7, "fieldsV1": {"f:x": {}}}]}});
        assert!(matches!(decode(&info, &mut bad), Err(Refusal::Decode(_))));
        assert_eq!(
            bad["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:x": {}})
        );
    }

    #[test]
    fn generation_is_counted_for_workloads_and_custom_resources_only() {
        let registry = Registry::default();
        for (group, plural, tracked) in [
            ("apps", "deployments", true),
            ("batch", "jobs", true),
            ("", "configmaps", false),
            ("", "secrets", false),
            ("", "services", false),
            ("coordination.k8s.io", "leases", false),
        ] {
            let info = registry.lookup(group, "v1", plural).unwrap();
            assert_eq!(tracks_generation(&info), tracked, "{plural}");
        }
    }
}
