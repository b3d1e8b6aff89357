//! The API verbs on stored objects: get, list, create, update, patch, apply and delete.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::admission::Admission;
use crate::apply::{self, ApplyError, FieldScope, Writer};
use crate::cluster::{Cluster, Inner, new_uid, now};
use crate::error::{ApiError, FieldCause};
use crate::event_versions;
use crate::fieldtype::Node;
use crate::gc::{self, Propagation};
use crate::patch::{self, PatchKind};
use crate::resource::{CRD_RESOURCE, NAMESPACE_RESOURCE, ResourceInfo};
use crate::selector::Selector;
use crate::store::ObjectKey;
use crate::strategy::{self, Change};
use crate::validation::{self, DNS1123_LABEL_MAX_LENGTH, NameRule};

/// Length of the random suffix of a generated name (apiserver's `SimpleNameGenerator`).
const GENERATED_SUFFIX_LENGTH: usize = 5;
/// Longest `generateName` prefix kept: a generated name fits in a DNS-1123 label.
const MAX_GENERATED_PREFIX_LENGTH: usize = DNS1123_LABEL_MAX_LENGTH - GENERATED_SUFFIX_LENGTH;

/// The object (or collection) a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub info: Arc<ResourceInfo>,
    /// Namespace from the path (None: cluster-scoped or all namespaces).
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `fieldManager` (or derived from the user agent).
    pub manager: String,
    /// `dryRun=All`: compute, do not store.
    pub dry_run: bool,
    /// `force` for apply.
    pub force: bool,
    /// A check the built object passes before it is stored (dry runs included).
    pub admission: Option<Arc<dyn Admission>>,
    /// `fieldValidation`: what an unknown field in the body costs.
    pub field_validation: FieldValidation,
    /// Warnings for the client (`Warning` headers), such as the unknown fields dropped.
    pub warnings: Warnings,
    /// Who asks, for an API request: its writes pass the `ValidatingAdmissionPolicy` plugin (the
    /// server's own controllers' writes, with none, do not).
    pub user: Option<k8s_openapi::api::authentication::v1::UserInfo>,
    /// The server's authorizer, which admission policies' `authorizer` asks.
    pub authorizer: crate::authz::Authorizer,
    /// What admission sees of a write through a subresource that stands for the object in
    /// another kind: `scale` (an `autoscaling/v1` Scale, new and old).
    pub subresource_view: Option<SubresourceView>,
}

/// A subresource request as admission sees it, when its body is not the object.
#[derive(Debug, Clone)]
pub struct SubresourceView {
    /// The subresource (`scale`).
    pub subresource: &'static str,
    /// The requested state, in the subresource's kind.
    pub object: Value,
    /// The current state, in the subresource's kind.
    pub old: Value,
}

/// The `fieldValidation` directive of a write: unknown fields are dropped from the stored object
/// whatever it is; it decides whether the client hears of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them with a warning each (kube-apiserver's default).
    #[default]
    Warn,
    /// Refuse the write (400), kubectl's default.
    Strict,
}

impl FieldValidation {
    /// The directive named by the query parameter (`None`: absent).
    ///
    /// # Errors
    /// The unsupported value, when it is not `Ignore`, `Warn` or `Strict`.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") => Ok(Self::default()),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(other.to_owned()),
        }
    }
}

/// Warnings a write collects for its response (shared, so a clone of the options adds to them).
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    /// Adds one.
    pub fn push(&self, text: String) {
        if let Ok(mut w) = self.0.lock() {
            w.push(text);
        }
    }

    /// Those collected so far.
    #[must_use]
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

impl WriteOptions {
    /// Answers the unknown fields dropped from a body of `info`'s kind as the directive says.
    fn unknown_fields(
        &self,
        info: &ResourceInfo,
        unknown: Vec<String>,
    ) -> Result<(), strategy::Refusal> {
        if unknown.is_empty() {
            return Ok(());
        }
        match self.field_validation {
            FieldValidation::Ignore => Ok(()),
            FieldValidation::Warn => {
                for field in unknown {
                    self.warnings.push(format!("unknown field {field:?}"));
                }
                Ok(())
            }
            FieldValidation::Strict => Err(strategy::Refusal::Decode(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                unknown
                    .iter()
                    .map(|f| format!("unknown field {f:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                kind = info.kind,
                version = info.version,
            ))),
        }
    }

    fn admit(
        &self,
        inner: &Inner,
        target: &Target,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
        if let Some(admission) = &self.admission {
            admission.admit(inner, target, old, new)?;
        }
        let Some(user) = &self.user else {
            return Ok(());
        };
        if let Some(old) = old
            && crate::certificates::is_csr(&target.info)
        {
            crate::certificates::admit_signer_verbs(
                inner,
                self.authorizer,
                user,
                target.subresource.as_deref(),
                old,
                new,
            )?;
        }
        let view = self.subresource_view.as_ref();
        let request = crate::admission_policy::Request {
            operation: if old.is_some() {
                crate::admission_policy::Operation::Update
            } else {
                crate::admission_policy::Operation::Create
            },
            info: &target.info,
            subresource: view
                .map(|v| v.subresource)
                .or(target.subresource.as_deref()),
            namespace: target.namespace.as_deref().unwrap_or_default(),
            name: meta_str(new, "name").unwrap_or_default(),
            object: Some(view.map_or(new, |v| &v.object)),
            old: view.map(|v| &v.old).or(old),
            user,
            authorizer: self.authorizer,
            dry_run: self.dry_run,
        };
        let mut warnings = Vec::new();
        let result = crate::admission_policy::admit(inner, &request, &mut warnings);
        for warning in warnings {
            self.warnings.push(warning);
        }
        result
    }
}

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
    /// `shardSelector` (KEP-5866).
    pub shards: crate::shard::ShardSelector,
    /// `limit` (0: all).
    pub limit: usize,
    /// `continue` token.
    pub continue_token: Option<String>,
    /// Which version of the state to read (ignored with a continue token, which carries its own).
    pub read: ReadAt,
}

/// Which version of the state a list reads: `resourceVersion` with `resourceVersionMatch`, as
/// kube-apiserver's list semantics define them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadAt {
    /// The newest state (no `resourceVersion`, or `"0"`: any state, served newest here).
    #[default]
    Latest,
    /// A state at least as new as this version (`resourceVersion=N`, alone or with
    /// `resourceVersionMatch=NotOlderThan`): the newest, or 504 when `N` is in the future.
    NotOlderThan(u64),
    /// Exactly the state at this version (`resourceVersionMatch=Exact`): rebuilt from the kept
    /// history, 410 when it is no longer kept.
    Exact(u64),
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// How dependents are handled, if the request says (else the object's finalizers and its
    /// kind decide: [`Propagation::default_for`]).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Who asks, for an API request: its deletes pass the `ValidatingAdmissionPolicy` plugin.
    pub user: Option<k8s_openapi::api::authentication::v1::UserInfo>,
    /// The server's authorizer, which admission policies' `authorizer` asks.
    pub authorizer: crate::authz::Authorizer,
    /// Warnings for the client (`Warning` headers).
    pub warnings: Warnings,
}

/// A page of objects.
#[derive(Debug)]
pub struct ListPage {
    /// The objects.
    pub items: Vec<Arc<Value>>,
    /// Resource version of the list.
    pub resource_version: u64,
    /// Token for the next page.
    pub continue_token: Option<String>,
    /// How many objects the later pages hold: known, as etcd's count, only for a list without
    /// selectors (`ListMeta.remainingItemCount`).
    pub remaining_item_count: Option<u64>,
}

/// A continue token: the version the first page was read at (every later page reads the same
/// state, as an etcd read at that revision does) and the last key returned.
fn encode_token(rv: u64, key: &ObjectKey) -> String {
    let raw = format!("{rv}\u{0}{}\u{0}{}", key.0, key.1);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str) -> Result<(u64, ObjectKey), ApiError> {
    let bad = || ApiError::BadRequest("invalid continue token".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\u{0}');
    let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let rv = rv.parse().map_err(|_| bad())?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

impl Target {
    fn resource_name(&self) -> String {
        self.info.group_resource()
    }

    fn key(&self) -> Result<ObjectKey, ApiError> {
        let name = self.name.clone().ok_or(ApiError::MethodNotAllowed)?;
        Ok((
            if self.info.namespaced {
                self.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            name,
        ))
    }

    fn not_found(&self) -> ApiError {
        ApiError::NotFound {
            resource: self.resource_name(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    fn scope(&self) -> FieldScope {
        // A CertificateSigningRequest's approval is a write of its status.
        if matches!(self.subresource.as_deref(), Some("status" | "approval")) {
            FieldScope::StatusOnly
        } else if self.subresource.as_deref() == Some("binding") {
            // A binding sets the node and the `PodScheduled` condition in one write.
            FieldScope::All
        } else if self.info.status_subresource {
            FieldScope::NoStatus
        } else {
            FieldScope::All
        }
    }

    fn invalid(&self, name: &str, causes: Vec<FieldCause>) -> ApiError {
        ApiError::Invalid {
            kind: self.info.kind.clone(),
            group: self.info.group.clone(),
            name: name.to_string(),
            causes,
        }
    }
}

/// etcd3's `OptimisticLockErrorMsg`: a write from a stale `resourceVersion` (409).
pub const OPTIMISTIC_LOCK_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// The handlers' `checkName`: a body naming another object than the URL (400).
fn name_mismatch(body: &str, url: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "the name of the object ({body}) does not match the name on the URL ({url})"
    ))
}

/// `rest.EnsureObjectNamespaceMatchesRequestNamespace` (400).
fn namespace_mismatch() -> ApiError {
    ApiError::BadRequest(
        "the namespace of the provided object does not match the namespace sent on the request"
            .into(),
    )
}

/// The object with the `apiVersion` served at the target and its kind (objects are stored once per
/// resource), borrowed when it already has them.
#[must_use]
pub fn present<'a>(info: &ResourceInfo, object: &'a Value) -> Cow<'a, Value> {
    if event_versions::is_events_api(info) && object["apiVersion"] == "v1" {
        return Cow::Owned(event_versions::to_events_api(object));
    }
    if crate::autoscaler_versions::is_v1(info) && object["apiVersion"] != "autoscaling/v1" {
        return Cow::Owned(crate::autoscaler_versions::to_v1(object));
    }
    let api_version = info.api_version();
    if object["apiVersion"].as_str() == Some(api_version.as_str())
        && object["kind"].as_str() == Some(info.kind.as_str())
    {
        return Cow::Borrowed(object);
    }
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(info.kind.clone()));
    }
    Cow::Owned(out)
}

/// The stored object at `key`, in the form `info`'s API shows it (what a write starts from).
fn stored(inner: &Inner, info: &ResourceInfo, key: &ObjectKey) -> Option<Arc<Value>> {
    let object = inner.store.get(&info.storage_resource(), key)?;
    Some(match present(info, object) {
        Cow::Borrowed(_) => Arc::clone(object),
        Cow::Owned(shown) => Arc::new(shown),
    })
}

fn meta(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let Value::Object(root) = object else {
        unreachable!("made an object above")
    };
    let entry = root.entry("metadata").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    let Value::Object(m) = entry else {
        unreachable!("made an object above")
    };
    m
}

fn meta_str<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"][key].as_str().filter(|s| !s.is_empty())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..GENERATED_SUFFIX_LENGTH]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// A name from a `generateName` prefix, as apiserver's `SimpleNameGenerator` makes it: the prefix
/// cut to [`MAX_GENERATED_PREFIX_LENGTH`] bytes (at a character boundary), then a random suffix.
pub(crate) fn generated_name(prefix: &str) -> String {
    let mut end = prefix.len().min(MAX_GENERATED_PREFIX_LENGTH);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &prefix[..end], random_suffix())
}

/// The metadata errors of a new object (`ValidateObjectMeta`): the `generateName` prefix and the
/// name by the kind's rule, the namespace of a namespaced kind as a DNS-1123 label.
fn metadata_causes(
    info: &ResourceInfo,
    name: &str,
    generate_name: Option<&str>,
    namespace: &str,
) -> Vec<FieldCause> {
    let rule = NameRule::for_kind(&info.group, &info.kind);
    let mut causes = Vec::new();
    if let Some(prefix) = generate_name
        && let Err(e) = rule.check_prefix(prefix)
    {
        causes.push(FieldCause::invalid("metadata.generateName", prefix, e));
    }
    if name.is_empty() {
        causes.push(FieldCause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Err(e) = rule.check(name) {
        causes.push(FieldCause::invalid("metadata.name", name, e));
    }
    if info.namespaced {
        if namespace.is_empty() {
            causes.push(FieldCause::required("metadata.namespace", ""));
        } else if let Err(e) = validation::dns1123_label(namespace) {
            causes.push(FieldCause::invalid("metadata.namespace", namespace, e));
        }
    }
    causes
}

/// `ValidateLabels` and `ValidateAnnotations` of `ValidateObjectMeta`: label keys qualified names
/// and values label values; annotation keys qualified names (lower-cased, as apimachinery checks
/// them) and all annotations at most 256 KiB.
fn label_causes(object: &Value) -> Vec<FieldCause> {
    const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;
    let mut causes = Vec::new();
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        strategy::labels(labels, "metadata.labels", &mut causes);
    }
    let annotations = object["metadata"]["annotations"].as_object();
    let mut size = 0;
    for (key, value) in annotations.into_iter().flatten() {
        if let Err(e) = validation::qualified_name(&key.to_lowercase()) {
            causes.push(FieldCause::invalid("metadata.annotations", key, e));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        causes.push(FieldCause::too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE_LIMIT_BYTES,
        ));
    }
    causes
}

/// Whether `a` and `b` have the same spec: every top-level field but metadata, status, apiVersion
/// and kind equal (what bumps `metadata.generation`).
fn same_spec(a: &Value, b: &Value) -> bool {
    equal_except(a, b, &["metadata", "status", "apiVersion", "kind"])
}

/// Whether `a` and `b` are equal but for the fields `skip` names (compared without copying).
fn equal_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &'_ Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

fn check_type(info: &ResourceInfo, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a json object".into(),
        ));
    }
    if let Some(kind) = body["kind"].as_str().filter(|k| !k.is_empty())
        && kind != info.kind
    {
        return Err(ApiError::BadRequest(format!(
            "kind {kind} does not match the expected kind {}",
            info.kind
        )));
    }
    if let Some(version) = body["apiVersion"].as_str().filter(|k| !k.is_empty())
        && version != info.api_version()
    {
        return Err(ApiError::BadRequest(format!(
            "the api version in the data ({version}) does not match the expected api version ({})",
            info.api_version()
        )));
    }
    if !body["metadata"].is_null() && !body["metadata"].is_object() {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    Ok(())
}

fn normalize_kind_specific(
    info: &ResourceInfo,
    object: &mut Value,
    create: bool,
) -> Result<(), Vec<FieldCause>> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Secret") => {
            if let Some(Value::Object(string_data)) =
                object.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let data = object
                    .as_object_mut()
                    .map(|m| m.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(data)) = data {
                    for (k, v) in string_data {
                        let text = v.as_str().unwrap_or_default();
                        data.insert(
                            k,
                            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                        );
                    }
                }
            }
            Ok(())
        }
        // On a create, the strategy's `PrepareForCreate` sets them, after the decoded body's
        // fields are recorded for its writer (`strategy::prepare`).
        ("", "Namespace") if !create => {
            crate::namespace::prepare(object);
            Ok(())
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            crate::custom_resource_definitions::defaults(object);
            let causes = crate::custom_resource_definitions::validate(object);
            if !causes.is_empty() {
                return Err(causes);
            }
            let resources = crate::resource::crd_resources(object)
                .map_err(|e| vec![FieldCause::other("", e.to_string())])?;
            // Validated above: exactly one version is the storage version.
            let storage = crate::custom_resource_definitions::storage_version(object)
                .unwrap_or_default()
                .to_owned();
            let time = now();
            let condition = |t: &str, reason: &str| json!({"type": t, "status": "True", "lastTransitionTime": time, "reason": reason, "message": ""});
            if let (Some(map), false) = (object.as_object_mut(), resources.is_empty()) {
                let names = map
                    .get("spec")
                    .map(|s| s["names"].clone())
                    .unwrap_or_default();
                map.insert(
                    "status".into(),
                    json!({
                        "acceptedNames": names,
                        "conditions": [condition("NamesAccepted", "NoConflicts"), condition("Established", "InitialNamesAccepted")],
                        "storedVersions": [storage],
                    }),
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// How the objects of `info` merge: built-in kinds by the Kubernetes API types' markers, custom
/// resources by their CRD's schema.
fn types<'a>(inner: &'a Inner, info: &'a ResourceInfo) -> Node<'a> {
    if strategy::is_builtin(info) {
        Node::builtin(&info.kind)
    } else {
        crate::schema::of_custom_resource(inner, info)
            .map_or(Node::Deduced, |schema| Node::custom(&info.kind, schema))
    }
}

fn writer<'a>(
    target: &Target,
    opts: &'a WriteOptions,
    api_version: &'a str,
    time: &'a str,
    types: Node<'a>,
) -> Writer<'a> {
    Writer {
        types,
        manager: &opts.manager,
        api_version,
        subresource: match target.subresource.as_deref() {
            Some("approval") => "approval",
            _ if target.scope() == FieldScope::StatusOnly => "status",
            _ => "",
        },
        now: time,
        scope: target.scope(),
    }
}

/// The `ResourceQuota` plugin's charge for a created object (namespaced objects only).
fn charge_quotas(
    inner: &mut Inner,
    target: &Target,
    stored: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    match (
        target.info.namespaced,
        stored["metadata"]["namespace"].as_str(),
    ) {
        (true, Some(namespace)) => {
            let namespace = namespace.to_owned();
            crate::quota::charge_admitted(inner, &target.info, &namespace, stored, old)
        }
        _ => Ok(()),
    }
}

/// Builds the object to store for a create (server fields set). `managed` skips field tracking
/// when the caller (apply) already did it.
fn prepare_create(
    inner: &Inner,
    target: &Target,
    mut object: Value,
    opts: &WriteOptions,
    managed: bool,
) -> Result<(ObjectKey, Value), ApiError> {
    check_type(&target.info, &object)?;
    let info = &target.info;
    let namespace = if info.namespaced {
        let ns = target
            .namespace
            .clone()
            .ok_or_else(|| ApiError::BadRequest("a namespace is required".into()))?;
        if meta_str(&object, "namespace").is_some_and(|n| !n.is_empty() && n != ns) {
            return Err(namespace_mismatch());
        }
        ns
    } else {
        String::new()
    };
    let generate_name = meta_str(&object, "generateName").map(str::to_string);
    let name = match (meta_str(&object, "name"), generate_name.as_deref()) {
        (Some(n), _) => n.to_string(),
        (None, Some(prefix)) => generated_name(prefix),
        (None, None) => String::new(),
    };
    if let Some(url) = target.name.as_deref().filter(|n| *n != name) {
        return Err(name_mismatch(&name, url));
    }
    let mut causes = metadata_causes(info, &name, generate_name.as_deref(), &namespace);
    causes.extend(label_causes(&object));
    if !causes.is_empty() {
        return Err(target.invalid(&name, causes));
    }
    if info.namespaced {
        match inner
            .store
            .get(NAMESPACE_RESOURCE, &(String::new(), namespace.clone()))
        {
            None => {
                return Err(ApiError::NotFound {
                    resource: "namespaces".into(),
                    name: namespace,
                });
            }
            Some(ns) if gc::is_deleting(ns) => {
                return Err(ApiError::NamespaceTerminating {
                    group: info.group.clone(),
                    resource: info.plural.clone(),
                    name,
                    namespace,
                });
            }
            Some(_) => {}
        }
    }
    let key = (namespace.clone(), name.clone());
    if inner.store.get(&info.storage_resource(), &key).is_some() {
        return Err(ApiError::AlreadyExists {
            resource: target.resource_name(),
            name,
        });
    }
    // `PrepareForCreate` resets the status, except a Node's: a kubelet registers its node with
    // its status (`nodeStrategy` allows every field on create).
    if info.status_subresource
        && !(info.group.is_empty() && info.kind == "Node")
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    if crate::certificates::is_csr(info) {
        crate::certificates::requested_by(&mut object, opts.user.as_ref());
    }
    normalize_kind_specific(info, &mut object, true)
        .map_err(|causes| target.invalid(&name, causes))?;
    // Identity before the strategy, which may use it (a Job's generated selector).
    let uid = json!(new_uid());
    let m = meta(&mut object);
    m.insert("name".into(), json!(name));
    m.insert("uid".into(), uid.clone());
    let time = now();
    let api_version = info.api_version();
    // The writer owns the fields of the decoded, defaulted body, recorded before admission and
    // allocation change it, as kube-apiserver's create handler runs its field manager (an
    // apply's own fields are recorded by the apply).
    let mut record = |object: &mut Value| {
        if managed {
            return;
        }
        meta(object).remove("managedFields");
        if !opts.manager.is_empty() {
            let create_target = Target {
                subresource: None,
                ..target.clone()
            };
            let writer = writer(
                &create_target,
                opts,
                &api_version,
                &time,
                types(inner, &target.info),
            );
            apply::record_update(None, object, &writer);
        }
    };
    strategy::prepare(
        inner,
        info,
        (&namespace, &name),
        None,
        &mut object,
        Change::Object,
        &mut record,
    )
    .and_then(|unknown| opts.unknown_fields(info, unknown))
    .map_err(|r| r.into_api_error(info, &name))?;
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(info.kind.clone()));
    }
    let m = meta(&mut object);
    m.insert("name".into(), json!(name));
    if info.namespaced {
        m.insert("namespace".into(), json!(namespace));
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), uid);
    m.insert("creationTimestamp".into(), json!(time));
    if strategy::tracks_generation(info) {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    for key in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(key);
    }
    Ok((key, object))
}

/// The finalizers `new` adds to `old` when `old` is being deleted (sorted), if any.
fn finalizers_added_while_deleting(old: &Value, new: &Value) -> Option<Vec<String>> {
    old["metadata"]["deletionTimestamp"].as_str()?;
    let list = |v: &Value| -> std::collections::BTreeSet<String> {
        v["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let before = list(old);
    let added: Vec<String> = list(new).difference(&before).cloned().collect();
    (!added.is_empty()).then_some(added)
}

/// Builds the object to store for an update of `old` (server fields kept, status rules applied,
/// generation bumped on spec changes).
///
/// `record` is called once on it as kube-apiserver's field manager sees it, decoded and
/// defaulted, before the strategy and admission change it (an update's writer owns what it
/// changed there; an apply records its own fields and passes a no-op). The result carries the
/// managed fields `record` wrote, or none.
fn prepare_update(
    inner: &Inner,
    target: &Target,
    old: &Value,
    new: Value,
    opts: &WriteOptions,
    record: &mut dyn FnMut(&mut Value),
) -> Result<Value, ApiError> {
    check_type(&target.info, &new)?;
    let name = target.name.clone().unwrap_or_default();
    if let Some(body) = meta_str(&new, "name").filter(|n| *n != name) {
        return Err(name_mismatch(body, &name));
    }
    if target.info.namespaced
        && let Some(body) = meta_str(&new, "namespace").filter(|n| !n.is_empty())
        && Some(body) != target.namespace.as_deref()
    {
        return Err(namespace_mismatch());
    }
    let causes = label_causes(&new);
    if !causes.is_empty() {
        return Err(target.invalid(&name, causes));
    }
    if let Some(added) = finalizers_added_while_deleting(old, &new) {
        // ValidateNoNewFinalizers: an object being deleted takes no new finalizer.
        return Err(target.invalid(
            &name,
            vec![FieldCause::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    crate::error::go_strings(
                        &added.iter().map(|f| json!(f)).collect::<Vec<_>>()
                    )
                ),
            )],
        ));
    }
    if let Some(rv) = meta_str(&new, "resourceVersion")
        && Some(rv) != meta_str(old, "resourceVersion")
    {
        return Err(ApiError::Conflict {
            resource: target.resource_name(),
            name,
            message: OPTIMISTIC_LOCK_MESSAGE.to_owned(),
        });
    }
    let mut out = match target.scope() {
        FieldScope::StatusOnly => {
            let mut out = old.clone();
            if let Some(map) = out.as_object_mut() {
                match new.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            out
        }
        scope => {
            let mut out = new;
            if scope == FieldScope::NoStatus
                && let Some(map) = out.as_object_mut()
            {
                match old.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            out
        }
    };
    if target.info.group_resource() == CRD_RESOURCE
        || target.info.group_resource() == NAMESPACE_RESOURCE
    {
        let status = old.get("status").cloned();
        normalize_kind_specific(&target.info, &mut out, false)
            .map_err(|causes| target.invalid(&name, causes))?;
        if target.scope() == FieldScope::StatusOnly
            && let (Some(s), Some(map)) = (status, out.as_object_mut())
        {
            map.insert("status".into(), s);
        } else if target.info.group_resource() == CRD_RESOURCE {
            let causes = crate::custom_resource_definitions::update(old, &mut out);
            if !causes.is_empty() {
                return Err(target.invalid(&name, causes));
            }
        }
    } else {
        normalize_kind_specific(&target.info, &mut out, false)
            .map_err(|causes| target.invalid(&name, causes))?;
    }
    if let Some(map) = out.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::String(target.info.api_version()),
        );
        map.insert("kind".into(), Value::String(target.info.kind.clone()));
    }
    if target.info.group == "rbac.authorization.k8s.io"
        && target.info.kind.ends_with("RoleBinding")
        && out.get("roleRef") != old.get("roleRef")
    {
        // ValidateRoleBindingUpdate: a binding is never repointed at another role.
        let role_ref = old.get("roleRef").map(Value::to_string).unwrap_or_default();
        return Err(target.invalid(
            &name,
            vec![FieldCause::other(
                "roleRef",
                format!("Invalid value: {role_ref}: cannot change roleRef"),
            )],
        ));
    }
    let change = if target.subresource.as_deref() == Some("approval") {
        Change::Approval
    } else if target.scope() == FieldScope::StatusOnly {
        Change::Status
    } else if target.subresource.as_deref() == Some("binding") {
        Change::Binding
    } else {
        Change::Object
    };
    if crate::certificates::is_csr(&target.info) {
        crate::certificates::prepare_update(old, &mut out, change, &now());
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    meta(&mut out).remove("managedFields");
    strategy::prepare(
        inner,
        &target.info,
        (&namespace, &name),
        Some(old),
        &mut out,
        change,
        record,
    )
    .and_then(|unknown| opts.unknown_fields(&target.info, unknown))
    .map_err(|r| r.into_api_error(&target.info, &name))?;
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    let bumped = if same_spec(old, &out) {
        generation
    } else {
        generation + 1
    };
    let old_meta = &old["metadata"];
    let m = meta(&mut out);
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(key) {
            Some(v) => m.insert(key.into(), v.clone()),
            None => m.remove(key),
        };
    }
    if strategy::tracks_generation(&target.info) {
        m.insert("generation".into(), json!(bumped));
    } else {
        m.remove("generation");
    }
    Ok(out)
}

/// Whether two versions are the same object: equal but for what every write changes (the
/// resourceVersion, managed-fields timestamps).
fn same_persisted_content(a: &Value, b: &Value) -> bool {
    let (am, bm) = (&a["metadata"], &b["metadata"]);
    let same_managers = match (am.get("managedFields"), bm.get("managedFields")) {
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal_except(x, y, &["time"]))
        }
        (x, y) => x == y,
    };
    equal_except(a, b, &["metadata"])
        && equal_except(am, bm, &["resourceVersion", "managedFields"])
        && same_managers
}

/// Stores an updated object, removing it instead when it is being deleted and has no finalizers.
/// A write that changes nothing is not persisted: the object, its resourceVersion and its
/// watchers are left alone, as Kubernetes does for no-op updates and applies.
fn commit_update(
    inner: &mut Inner,
    target: &Target,
    key: ObjectKey,
    old: &Value,
    object: Value,
) -> Result<Arc<Value>, ApiError> {
    if same_persisted_content(old, &object)
        && let Some(stored) = inner.store.get(&target.info.storage_resource(), &key)
    {
        return Ok(stored.clone());
    }
    if gc::ready_to_remove(&object) {
        let removed = inner.remove_now(&target.info.storage_resource(), &key)?;
        gc::collect(inner)?;
        return Ok(removed.unwrap_or_else(|| Arc::new(object)));
    }
    store_written(inner, target, key, object)
}

/// Stores a created or updated object; when it has owner references, the garbage collector
/// then looks at them ([`gc::check_owners`]). The writer is answered with the object as written.
fn store_written(
    inner: &mut Inner,
    target: &Target,
    key: ObjectKey,
    object: Value,
) -> Result<Arc<Value>, ApiError> {
    let stored = inner.put(&target.info, key.clone(), object)?;
    if stored["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
    {
        gc::check_owners(inner, &(target.info.storage_resource(), key))?;
    }
    if target.info.group.is_empty()
        && let Some(namespace) = stored["metadata"]["namespace"].as_str()
    {
        crate::api_services::refresh(inner, &target.info.plural, namespace)
            .map_err(ApiError::from)?;
    }
    // A Pod that finished or a volume no longer bound may free a claim or volume being deleted.
    if target.info.group.is_empty()
        && crate::storage_protection::may_release(&target.info.plural)
        && crate::storage_protection::release(inner)?
    {
        gc::collect(inner)?;
    }
    Ok(stored)
}

impl Cluster {
    /// Reads one object.
    ///
    /// # Errors
    /// [`ApiError::NotFound`].
    pub fn get(&self, target: &Target) -> Result<Arc<Value>, ApiError> {
        let key = target.key()?;
        let inner = self.lock();
        stored(&inner, &target.info, &key).ok_or_else(|| target.not_found())
    }

    /// Lists objects matching the selectors, one page at a time, at the version `opts.read` (or
    /// the continue token) asks for.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for a bad continue token, [`ApiError::TooLargeResourceVersion`]
    /// for a future version, [`ApiError::ListExpired`] and [`ApiError::ContinueExpired`] for a
    /// version no longer kept.
    pub fn list(&self, target: &Target, opts: &ListOptions) -> Result<ListPage, ApiError> {
        let token = opts
            .continue_token
            .as_deref()
            .map(decode_token)
            .transpose()?;
        let inner = self.lock();
        let current = inner.store.resource_version();
        let gr = target.info.storage_resource();
        let ns = if target.info.namespaced {
            target.namespace.as_deref()
        } else {
            None
        };
        let (at, after) = match (&token, opts.read) {
            (Some((rv, _)), _) if *rv > current => {
                return Err(ApiError::BadRequest("invalid continue token".into()));
            }
            (Some((rv, key)), _) => (*rv, Some(key)),
            (None, ReadAt::Latest) => (current, None),
            (None, ReadAt::NotOlderThan(rv) | ReadAt::Exact(rv)) if rv > current => {
                return Err(ApiError::TooLargeResourceVersion {
                    requested: rv,
                    current,
                });
            }
            (None, ReadAt::NotOlderThan(_)) => (current, None),
            (None, ReadAt::Exact(rv)) => (rv, None),
        };
        let past = if at < current {
            match inner.store.objects_at(&gr, at) {
                Ok(objects) => Some(objects),
                Err(_) => {
                    return Err(match after {
                        Some(key) => ApiError::ContinueExpired {
                            token: encode_token(current, key),
                        },
                        None => ApiError::ListExpired,
                    });
                }
            }
        } else {
            None
        };
        let objects: Box<dyn Iterator<Item = (&ObjectKey, &Arc<Value>)>> = match &past {
            Some(objects) => Box::new(crate::store::range(objects, ns, after)),
            None => Box::new(inner.store.list(&gr, ns, after)),
        };
        let unfiltered = opts.labels.is_empty() && opts.fields.is_empty() && opts.shards.is_empty();
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining_item_count = None;
        let mut last: Option<&ObjectKey> = None;
        let mut objects = objects;
        while let Some((key, object)) = objects.next() {
            if !opts.labels.matches_labels(object)
                || !opts.fields.matches_fields(object)
                || !opts.shards.matches(object)
            {
                continue;
            }
            if opts.limit > 0 && items.len() == opts.limit {
                continue_token = last.map(|k| encode_token(at, k));
                if unfiltered {
                    remaining_item_count = Some(1 + objects.count() as u64);
                }
                break;
            }
            items.push(object.clone());
            last = Some(key);
        }
        Ok(ListPage {
            items,
            resource_version: at,
            continue_token,
            remaining_item_count,
        })
    }

    /// Creates an object.
    ///
    /// # Errors
    /// [`ApiError`] for invalid objects, existing names, missing namespaces or storage failures.
    pub fn create(
        &self,
        target: &Target,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        // `rest.BeforeCreate`.
        if meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::BadRequest(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        let mut inner = self.lock();
        let (key, object) = prepare_create(&inner, target, body, opts, false)?;
        opts.admit(&inner, target, None, &object)?;
        if opts.dry_run {
            return Ok(Arc::new(object));
        }
        let stored = store_written(&mut inner, target, key, object)?;
        charge_quotas(&mut inner, target, &stored, None)?;
        self.notify(inner.store.resource_version());
        Ok(stored)
    }

    /// `pods/binding` (`BindingREST.Create`): puts the pod `target` names on the node `binding`
    /// names, unless it is being deleted or already has a node (409 on `pods/binding`), merges the
    /// binding's annotations and marks the pod `PodScheduled`.
    ///
    /// # Errors
    /// [`ApiError`] for a binding of another name (400), an invalid target (422), a missing pod,
    /// a pod that cannot be bound (409) or a failed write.
    pub fn bind(
        &self,
        target: &Target,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        let key = target.key()?;
        if binding["metadata"]["name"].as_str() != Some(key.1.as_str()) {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Binding object".into(),
            ));
        }
        // `ValidatePodBinding`.
        let node = binding["target"]["name"].as_str().unwrap_or_default();
        let mut causes = Vec::new();
        if !matches!(binding["target"]["kind"].as_str(), None | Some("" | "Node")) {
            causes.push(FieldCause::not_supported(
                "target.kind",
                &binding["target"]["kind"],
                &["Node", "<empty>"],
            ));
        }
        if node.is_empty() {
            causes.push(FieldCause::required("target.name", ""));
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                kind: "Binding".into(),
                group: String::new(),
                name: key.1.clone(),
                causes,
            });
        }
        let pod = {
            let inner = self.lock();
            stored(&inner, &target.info, &key).ok_or_else(|| target.not_found())?
        };
        let refused = |message: String| ApiError::Conflict {
            resource: "pods/binding".into(),
            name: key.1.clone(),
            message,
        };
        if gc::is_deleting(&pod) {
            return Err(refused(format!(
                "pod {} is being deleted, cannot be assigned to a host",
                key.1
            )));
        }
        if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(refused(format!(
                "pod {} is already assigned to node {current:?}",
                key.1
            )));
        }
        if pod["spec"]["schedulingGates"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
        {
            return Err(refused(format!(
                "pod {} has non-empty .spec.schedulingGates",
                key.1
            )));
        }
        let mut body = (*pod).clone();
        body["spec"]["nodeName"] = json!(node);
        for (k, v) in binding["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            body["metadata"]["annotations"][k] = v.clone();
        }
        let mut conditions: Vec<Value> = body["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"] != "PodScheduled")
            .cloned()
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
        body["status"]["conditions"] = json!(conditions);
        // Written as the binding, node and condition in one write (`GuaranteedUpdate`): the
        // strategy lets it set the node, as no other update may.
        let binding_target = Target {
            subresource: Some("binding".into()),
            ..target.clone()
        };
        self.update(&binding_target, body, opts).map(drop)
    }

    /// Replaces an object (optimistic concurrency on `metadata.resourceVersion`).
    ///
    /// # Errors
    /// [`ApiError`] for missing objects, conflicts, invalid objects or storage failures.
    pub fn update(
        &self,
        target: &Target,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let key = target.key()?;
        let mut inner = self.lock();
        let old = stored(&inner, &target.info, &key).ok_or_else(|| target.not_found())?;
        self.write(&mut inner, target, key, &old, body, opts)
    }

    fn write(
        &self,
        inner: &mut Inner,
        target: &Target,
        key: ObjectKey,
        old: &Value,
        new: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let api_version = target.info.api_version();
        let time = now();
        let writer = writer(
            target,
            opts,
            &api_version,
            &time,
            types(inner, &target.info),
        );
        let mut record = |object: &mut Value| apply::record_update(Some(old), object, &writer);
        let object = prepare_update(inner, target, old, new, opts, &mut record)?;
        opts.admit(inner, target, Some(old), &object)?;
        if opts.dry_run {
            return Ok(Arc::new(object));
        }
        let stored = commit_update(inner, target, key, old, object)?;
        charge_quotas(inner, target, &stored, Some(old))?;
        self.notify(inner.store.resource_version());
        Ok(stored)
    }

    /// Patches an object; server-side apply creates it when missing. Returns the object and whether
    /// it was created.
    ///
    /// # Errors
    /// [`ApiError`] for malformed patches, conflicts, invalid results or storage failures.
    pub fn patch(
        &self,
        target: &Target,
        kind: PatchKind,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let key = target.key()?;
        let mut inner = self.lock();
        let old = stored(&inner, &target.info, &key);
        if kind == PatchKind::Apply {
            return self.apply(&mut inner, target, key, old.as_deref(), body, opts);
        }
        if kind == PatchKind::StrategicMerge && !strategy::is_builtin(&target.info) {
            // kube-apiserver serves strategic merge patch for built-in kinds only.
            return Err(ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                    .into(),
            ));
        }
        let old = old.ok_or_else(|| target.not_found())?;
        let patched =
            patch::apply_patch(kind, &target.info.kind, &old, body).map_err(|e| match e {
                patch::PatchError::Apply(source) => ApiError::Unprocessable(Box::new(source)),
                other => ApiError::BadRequest(format!(
                    "{other}: {}",
                    std::error::Error::source(&other)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )),
            })?;
        Ok((
            self.write(&mut inner, target, key, &old, patched, opts)?,
            false,
        ))
    }

    fn apply(
        &self,
        inner: &mut Inner,
        target: &Target,
        key: ObjectKey,
        old: Option<&Value>,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        if opts.manager.is_empty() {
            return Err(ApiError::BadRequest(
                "fieldManager is required for apply requests".into(),
            ));
        }
        let applied = patch::decode_yaml(body).map_err(|e| ApiError::BadRequest(format!("{e}")))?;
        check_type(&target.info, &applied)?;
        if applied["apiVersion"].as_str().is_none_or(str::is_empty)
            || applied["kind"].as_str().is_none_or(str::is_empty)
        {
            return Err(ApiError::BadRequest(
                "apiVersion and kind are required in an apply configuration".into(),
            ));
        }
        if let Some(body) = meta_str(&applied, "name").filter(|n| *n != key.1) {
            return Err(name_mismatch(body, &key.1));
        }
        let api_version = target.info.api_version();
        let time = now();
        let w = writer(
            target,
            opts,
            &api_version,
            &time,
            types(inner, &target.info),
        );
        let merged =
            apply::server_side_apply(old, applied, &w, opts.force).map_err(|e| match e {
                ApplyError::Conflict(c) => ApiError::ApplyConflict(c),
            })?;
        let (object, created) = match old {
            None => {
                if target.scope() == FieldScope::StatusOnly {
                    return Err(target.not_found());
                }
                let mut merged = merged;
                let m = meta(&mut merged);
                m.insert("name".into(), json!(key.1));
                let (_, object) = prepare_create(inner, target, merged, opts, true)?;
                (object, true)
            }
            Some(old) => {
                let mut merged = merged;
                let managed = meta(&mut merged).remove("managedFields");
                let mut object = prepare_update(inner, target, old, merged, opts, &mut |_| {})?;
                if let Some(managed) = managed.filter(|m| !m.is_null()) {
                    meta(&mut object).insert("managedFields".into(), managed);
                }
                (object, false)
            }
        };
        opts.admit(inner, target, old.filter(|_| !created), &object)?;
        if opts.dry_run {
            return Ok((Arc::new(object), created));
        }
        let stored = match old {
            Some(old) if !created => {
                let stored = commit_update(inner, target, key, old, object)?;
                charge_quotas(inner, target, &stored, Some(old))?;
                stored
            }
            _ => {
                let stored = store_written(inner, target, key, object)?;
                charge_quotas(inner, target, &stored, None)?;
                stored
            }
        };
        self.notify(inner.store.resource_version());
        Ok((stored, created))
    }

    /// Deletes an object (marks it while finalizers remain) and collects its dependents.
    ///
    /// # Errors
    /// [`ApiError`] for missing objects, failed preconditions or storage failures.
    pub fn delete(&self, target: &Target, opts: &DeleteOptions) -> Result<Arc<Value>, ApiError> {
        let key = target.key()?;
        let mut inner = self.lock();
        let gr = target.info.storage_resource();
        let old = stored(&inner, &target.info, &key).ok_or_else(|| target.not_found())?;
        // The `NamespaceLifecycle` admission plugin's immortal namespaces.
        if gr == NAMESPACE_RESOURCE && crate::namespace::IMMORTAL.contains(&key.1.as_str()) {
            return Err(ApiError::Forbidden {
                group: String::new(),
                resource: NAMESPACE_RESOURCE.to_owned(),
                name: key.1.clone(),
                message: "this namespace may not be deleted".to_owned(),
            });
        }
        if gr == crate::priority_classes::RESOURCE
            && let Err(error) = crate::priority_classes::check_delete(&key.1)
        {
            return Err(ApiError::Forbidden {
                group: target.info.group.clone(),
                resource: target.info.plural.clone(),
                name: key.1.clone(),
                message: error.to_string(),
            });
        }
        // `rest.BeforeDelete`: a conflict named by the kind, with what was expected and found.
        let precondition = |want: &Option<String>, field: &str, what: &str, hint: &str| match want {
            Some(w) if Some(w.as_str()) != meta_str(&old, field) => Err(ApiError::Conflict {
                resource: crate::error::qualified_kind(&target.info.kind, &target.info.group),
                name: key.1.clone(),
                message: format!(
                    "the {what} in the precondition ({w}) does not match the {what} in record ({}). \
                     The object might have been {hint}",
                    meta_str(&old, field).unwrap_or_default()
                ),
            }),
            _ => Ok(()),
        };
        precondition(&opts.uid, "uid", "UID", "deleted and then recreated")?;
        precondition(
            &opts.resource_version,
            "resourceVersion",
            "ResourceVersion",
            "modified",
        )?;
        if let Some(user) = &opts.user {
            let request = crate::admission_policy::Request {
                operation: crate::admission_policy::Operation::Delete,
                info: &target.info,
                subresource: None,
                namespace: &key.0,
                name: &key.1,
                object: None,
                old: Some(&old),
                user,
                authorizer: opts.authorizer,
                dry_run: opts.dry_run,
            };
            let mut warnings = Vec::new();
            let result = crate::admission_policy::admit(&inner, &request, &mut warnings);
            for warning in warnings {
                opts.warnings.push(warning);
            }
            result?;
        }
        if opts.dry_run {
            return Ok(old);
        }
        let info = &target.info;
        let policy = opts.propagation.unwrap_or_else(|| {
            Propagation::default_for(&info.group, &info.version, &info.kind, &old)
        });
        let result = gc::delete(&mut inner, &(gr, key), &old, policy)?;
        self.notify(inner.store.resource_version());
        Ok(result)
    }

    /// `POST pods/{name}/eviction` (`EvictionREST.Create`): a running Pod is evicted only if
    /// the PodDisruptionBudget selecting it allows a disruption (`checkAndDecrement`: 429 while
    /// its status is not current or allows none; the budget's allowance is taken and the Pod
    /// noted in `disruptedPods`); an unready Pod goes without taking from the budget when the
    /// budget's `unhealthyPodEvictionPolicy` or its health allows; a terminal, pending or
    /// deleting Pod goes at once. The Pod gets the `DisruptionTarget` condition (reason
    /// `EvictionByEvictionAPI`, "Eviction API: evicting") and is deleted with the eviction's
    /// `delete` options.
    ///
    /// # Errors
    /// [`ApiError`] for a name that differs from the URL's, a missing Pod, a budget that refuses
    /// (429) or that is not alone (500), failed preconditions or storage failures.
    pub fn evict(
        &self,
        target: &Target,
        eviction: &Value,
        write: &WriteOptions,
        delete: &DeleteOptions,
    ) -> Result<(), ApiError> {
        let key = target.key()?;
        if eviction["metadata"]["name"].as_str() != Some(key.1.as_str()) {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Eviction object".into(),
            ));
        }
        let pod_target = Target {
            subresource: None,
            ..target.clone()
        };
        let mut delete = delete.clone();
        delete.dry_run |= write.dry_run;
        let pod = {
            let inner = self.lock();
            stored(&inner, &target.info, &key).ok_or_else(|| target.not_found())?
        };
        if !can_ignore_budget(&pod) {
            self.take_from_budget(&pod, &mut delete, write)?;
        }
        if !delete.dry_run {
            // `addConditionAndDeletePod`: the condition on the latest Pod, the preconditions
            // checked against it first (a dry-run delete checks them).
            let status_target = Target {
                subresource: Some("status".into()),
                ..target.clone()
            };
            let mut attempts = 0;
            let updated = loop {
                let dry = DeleteOptions {
                    dry_run: true,
                    ..delete.clone()
                };
                let mut pod = (*self.delete(&pod_target, &dry)?).clone();
                disruption_target(&mut pod, &now());
                match self.update(&status_target, pod, write) {
                    Err(ApiError::Conflict { .. }) if attempts < 5 => attempts += 1,
                    result => break result?,
                }
            };
            if delete.resource_version.is_some() {
                // The condition's write moved the version the caller named on.
                delete.resource_version = meta_str(&updated, "resourceVersion").map(str::to_owned);
            }
        }
        self.delete(&pod_target, &delete)?;
        Ok(())
    }

    /// The eviction's part of the PodDisruptionBudget selecting `pod`, if one does.
    fn take_from_budget(
        &self,
        pod: &Value,
        delete: &mut DeleteOptions,
        write: &WriteOptions,
    ) -> Result<(), ApiError> {
        let namespace = meta_str(pod, "namespace").unwrap_or_default();
        let (info, budgets) = {
            let inner = self.lock();
            let Some(info) = inner.info(DISRUPTION_BUDGETS) else {
                return Ok(());
            };
            let budgets: Vec<Arc<Value>> = inner
                .store
                .list(&info.storage_resource(), Some(namespace), None)
                .map(|(_, b)| b.clone())
                .filter(|b| budget_selects(&b["spec"]["selector"], pod))
                .collect();
            (info, budgets)
        };
        let budget = match budgets.as_slice() {
            [] => return Ok(()),
            [budget] => budget,
            _ => {
                return Err(ApiError::Failure {
                    code: 500,
                    message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                });
            }
        };
        let name = meta_str(budget, "name").unwrap_or_default().to_owned();
        let status = &budget["status"];
        let count = |key: &str| status[key].as_i64().unwrap_or(0);
        if !crate::workloads::is_ready(pod) {
            // An unready Pod does not count as healthy: it may go without taking from the
            // budget, if the policy says so or the application is healthy without it.
            let always = budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
            let healthy =
                count("currentHealthy") >= count("desiredHealthy") && count("desiredHealthy") > 0;
            if always || healthy {
                if delete.resource_version.is_none() {
                    delete.resource_version = meta_str(pod, "resourceVersion").map(str::to_owned);
                }
                return Ok(());
            }
        }
        let refused = |cause: String, retry_after| ApiError::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            cause: ("DisruptionBudget".into(), cause),
            retry_after,
        };
        if status["observedGeneration"].as_i64().unwrap_or(0)
            < budget["metadata"]["generation"].as_i64().unwrap_or(0)
        {
            return Err(refused(
                format!("The disruption budget {name} is still being processed by the server."),
                10,
            ));
        }
        let forbidden = |message: &str| ApiError::Forbidden {
            group: "policy".into(),
            resource: "poddisruptionbudget".into(),
            name: name.clone(),
            message: message.into(),
        };
        let allowed = count("disruptionsAllowed");
        if allowed < 0 {
            return Err(forbidden("pdb disruptions allowed is negative"));
        }
        let disrupted = status["disruptedPods"].as_object().map_or(0, Map::len);
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(refused(
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    count("desiredHealthy"),
                    count("currentHealthy")
                ),
                0,
            ));
        }
        if delete.dry_run {
            return Ok(());
        }
        // Taken: one disruption fewer, the Pod noted until the disruption controller sees it go.
        let mut body = (**budget).clone();
        body["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if allowed == 1 {
            crate::workloads::set_disruption_allowed(&mut body, &now());
        }
        let pod_name = meta_str(pod, "name").unwrap_or_default();
        if !body["status"]["disruptedPods"].is_object() {
            body["status"]["disruptedPods"] = json!({});
        }
        body["status"]["disruptedPods"][pod_name] = json!(now());
        let status_target = Target {
            info,
            namespace: Some(namespace.to_owned()),
            name: Some(name.clone()),
            subresource: Some("status".into()),
        };
        self.update(&status_target, body, write)?;
        Ok(())
    }

    /// `PUT /api/v1/namespaces/{name}/finalize`: sets the namespace's `spec.finalizers` and nothing
    /// else (the finalize strategy keeps metadata and status); a terminating namespace left with no
    /// finalizers at all is removed, as the namespace controller then deletes it.
    ///
    /// # Errors
    /// [`ApiError`] for a missing namespace, a stale `resourceVersion`, an invalid finalizer name
    /// or storage failures.
    pub fn finalize_namespace(
        &self,
        target: &Target,
        body: &Value,
    ) -> Result<Arc<Value>, ApiError> {
        check_type(&target.info, body)?;
        let key = target.key()?;
        if let Some(named) = meta_str(body, "name").filter(|n| *n != key.1) {
            return Err(name_mismatch(named, &key.1));
        }
        let finalizers: Vec<Value> = body["spec"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut causes = Vec::new();
        for (i, f) in finalizers.iter().enumerate() {
            let field = format!("spec.finalizers[{i}]");
            let name = f.as_str().unwrap_or_default();
            // `validateFinalizerName`: a standard finalizer, or a qualified name with a prefix.
            if name != crate::namespace::FINALIZER && !name.contains('/') {
                causes.push(FieldCause::invalid(
                    &field,
                    name,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            } else if let Err(e) = validation::qualified_name(name) {
                causes.push(FieldCause::invalid(&field, name, e));
            }
        }
        if !causes.is_empty() {
            return Err(target.invalid(&key.1, causes));
        }
        let mut inner = self.lock();
        let old = inner
            .store
            .get(NAMESPACE_RESOURCE, &key)
            .cloned()
            .ok_or_else(|| target.not_found())?;
        if let Some(rv) = meta_str(body, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::Conflict {
                resource: target.resource_name(),
                name: key.1.clone(),
                message: OPTIMISTIC_LOCK_MESSAGE.to_owned(),
            });
        }
        let mut updated = (*old).clone();
        updated["spec"]["finalizers"] = Value::Array(finalizers);
        let located = (NAMESPACE_RESOURCE.to_owned(), key.clone());
        let stored = gc::put_raw(&mut inner, &located, updated)?;
        if gc::is_deleting(&stored)
            && !crate::namespace::has_spec_finalizers(&stored)
            && gc::finalizers(&stored).is_empty()
        {
            inner.remove_now(NAMESPACE_RESOURCE, &key)?;
        }
        self.notify(inner.store.resource_version());
        Ok(stored)
    }

    /// Deletes every object matching the list options. Returns the deleted (or marked) objects.
    ///
    /// # Errors
    /// [`ApiError`] for storage failures.
    pub fn delete_collection(
        &self,
        target: &Target,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let page = self.list(
            target,
            &ListOptions {
                limit: 0,
                continue_token: None,
                ..list.clone()
            },
        )?;
        let mut out = Vec::new();
        for object in page.items {
            let t = Target {
                name: meta_str(&object, "name").map(str::to_string),
                namespace: meta_str(&object, "namespace").map(str::to_string),
                ..target.clone()
            };
            match self.delete(&t, opts) {
                Ok(o) => out.push(o),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// PodDisruptionBudgets' group resource.
const DISRUPTION_BUDGETS: &str = "poddisruptionbudgets.policy";

/// `MaxDisruptedPodSize`: evictions a budget may note before the disruption controller confirms
/// them.
const MAX_DISRUPTED_PODS: usize = 2000;

/// `canIgnorePDB`: a Pod that finished, has not started or is going is evicted without a budget.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || gc::is_deleting(pod)
}

/// Whether a budget's `selector` selects `pod` (an invalid selector selects nothing, a missing
/// one nothing either; an empty one everything).
pub(crate) fn budget_selects(selector: &Value, pod: &Value) -> bool {
    !selector.is_null() && crate::selector::Selector::label_selector_selects(selector, pod)
}

/// `podutil.UpdatePodCondition` with the eviction's `DisruptionTarget` condition: its transition
/// time kept when it was True already.
fn disruption_target(pod: &mut Value, now: &str) {
    let condition = json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now, "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting"});
    let Some(status) = pod
        .as_object_mut()
        .map(|p| p.entry("status").or_insert(json!({})))
    else {
        return;
    };
    crate::cluster::set_condition(status, condition);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eviction_adds_its_condition_once_and_keeps_when_it_turned_true() {
        let mut pod = json!({"metadata": {"name": "p"}});
        disruption_target(&mut pod, "2026-12-06T00:00:00Z");
        let condition = &pod["status"]["conditions"][0];
        assert_eq!(condition["reason"], "EvictionByEvictionAPI");
        assert_eq!(condition["lastTransitionTime"], "2026-12-06T00:00:00Z");
        disruption_target(&mut pod, "2026-12-06T00:05:00Z");
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1, "updated in place");
        assert_eq!(conditions[0]["lastTransitionTime"], "2026-12-06T00:00:00Z");
        pod["status"]["conditions"][0]["status"] = json!("False");
        disruption_target(&mut pod, "2026-12-06T00:10:00Z");
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"], "2026-12-06T00:10:00Z",
            "a transition from False"
        );
    }

    #[test]
    fn persisted_content_ignores_only_the_resource_version_and_managers_times() {
        let a = json!({"kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "1",
            "managedFields": [{"manager": "m", "time": "t1", "fieldsV1": {"f:data": {}}}]},
            "data": {"x": "1"}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        b["metadata"]["managedFields"][0]["time"] = json!("t2");
        assert!(same_persisted_content(&a, &b));
        for change in [
            json!({"data": {"x": "2"}}),
            json!({"metadata": {"labels": {"a": "b"}}}),
            json!({"metadata": {"managedFields": [{"manager": "n"}]}}),
            json!({"metadata": {"managedFields": null}}),
            json!({"metadata": null}),
            json!({"status": {}}),
        ] {
            let mut c = b.clone();
            json_patch::merge(&mut c, &change);
            assert!(!same_persisted_content(&a, &c), "{change}");
            assert!(!same_persisted_content(&c, &a), "{change}");
        }
    }

    #[test]
    fn the_spec_is_everything_but_metadata_status_and_type() {
        let a =
            json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"x": 1}});
        let b = json!({"metadata": {"name": "b"}, "status": {"s": 1}, "spec": {"x": 1}});
        assert!(same_spec(&a, &b));
        assert!(!same_spec(&a, &json!({"spec": {"x": 2}})));
        assert!(!same_spec(&a, &json!({"spec": {"x": 1}, "data": {}})));
        assert!(!same_spec(&json!({"spec": {"x": 1}, "data": {}}), &a));
    }

    fn target(cluster: &Cluster, group: &str, plural: &str, name: Option<&str>) -> Target {
        let info = cluster.lock().registry.lookup(group, "v1", plural).unwrap();
        Target {
            info,
            namespace: Some("default".into()),
            name: name.map(str::to_string),
            subresource: None,
        }
    }

    fn opts() -> WriteOptions {
        WriteOptions {
            manager: "test".into(),
            ..WriteOptions::default()
        }
    }

    #[test]
    fn an_object_being_deleted_takes_no_new_finalizer() {
        let cluster = Cluster::open(None, 100).unwrap();
        let t = target(&cluster, "", "configmaps", None);
        cluster
            .create(
                &t,
                json!({"metadata": {"name": "cm", "finalizers": ["a"]}}),
                &opts(),
            )
            .unwrap();
        let t = target(&cluster, "", "configmaps", Some("cm"));
        let deleting = cluster.delete(&t, &DeleteOptions::default()).unwrap();
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
        let err = cluster
            .patch(
                &t,
                PatchKind::Merge,
                br#"{"metadata": {"finalizers": ["a", "b"]}}"#,
                &opts(),
            )
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "ConfigMap \"cm\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b\"}"
        );
        let (kept, _) = cluster
            .patch(
                &t,
                PatchKind::Merge,
                br#"{"metadata": {"finalizers": []}}"#,
                &opts(),
            )
            .unwrap();
        assert!(kept["metadata"]["deletionTimestamp"].is_string());
    }

    #[test]
    fn create_update_conflict_and_generation() {
        let cluster = Cluster::open(None, 100).unwrap();
        let t = target(&cluster, "apps", "deployments", None);
        let created = cluster
            .create(
                &t,
                json!({"metadata": {"name": "web"}, "spec": {"replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
                    "status": {"x": 1}}),
                &opts(),
            )
            .unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        assert!(created.get("status").is_none());
        let t = target(&cluster, "apps", "deployments", Some("web"));
        let mut next = (*created).clone();
        next["spec"]["replicas"] = json!(2);
        let updated = cluster.update(&t, next.clone(), &opts()).unwrap();
        assert_eq!(updated["metadata"]["generation"], 2);
        let err = cluster.update(&t, next, &opts()).unwrap_err();
        assert_eq!(err.code(), 409);
        let status_target = Target {
            subresource: Some("status".into()),
            ..t.clone()
        };
        let (patched, _) = cluster
            .patch(
                &status_target,
                PatchKind::Merge,
                br#"{"status": {"replicas": 2, "ready": 2}, "spec": {"replicas": 9}}"#,
                &opts(),
            )
            .unwrap();
        assert_eq!(patched["status"]["replicas"], 2);
        assert!(
            patched["status"].get("ready").is_none(),
            "a field DeploymentStatus does not have is dropped"
        );
        assert_eq!(patched["spec"]["replicas"], 2);
        assert_eq!(patched["metadata"]["generation"], 2);
    }

    #[test]
    fn a_write_that_changes_nothing_is_not_persisted() {
        let cluster = Cluster::open(None, 100).unwrap();
        let t = target(&cluster, "", "configmaps", Some("cm"));
        let config = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}"#;
        let apply = WriteOptions {
            force: true,
            ..opts()
        };
        let (first, created) = cluster.patch(&t, PatchKind::Apply, config, &apply).unwrap();
        assert!(created);
        let rv = first["metadata"]["resourceVersion"].clone();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (again, _) = cluster.patch(&t, PatchKind::Apply, config, &apply).unwrap();
        assert_eq!(again["metadata"]["resourceVersion"], rv, "a no-op apply");
        let (merged, _) = cluster
            .patch(&t, PatchKind::Merge, br#"{"data": {"a": "1"}}"#, &opts())
            .unwrap();
        assert_eq!(
            merged["metadata"]["resourceVersion"], rv,
            "a no-op merge patch"
        );
        let (changed, _) = cluster
            .patch(&t, PatchKind::Merge, br#"{"data": {"a": "2"}}"#, &opts())
            .unwrap();
        assert_ne!(changed["metadata"]["resourceVersion"], rv);
    }

    #[test]
    fn list_pages_and_selectors() {
        let cluster = Cluster::open(None, 100).unwrap();
        let t = target(&cluster, "", "configmaps", None);
        for i in 0..5 {
            let body = json!({"metadata": {"name": format!("c{i}"), "labels": {"even": (i % 2 == 0).to_string()}}});
            cluster.create(&t, body, &opts()).unwrap();
        }
        let mut opts = ListOptions {
            limit: 2,
            ..ListOptions::default()
        };
        let mut names = Vec::new();
        loop {
            let page = cluster.list(&t, &opts).unwrap();
            names.extend(
                page.items
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
            );
            match page.continue_token {
                Some(token) => opts.continue_token = Some(token),
                None => break,
            }
        }
        assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
        let even = ListOptions {
            labels: Selector::parse("even=true").unwrap(),
            ..ListOptions::default()
        };
        assert_eq!(cluster.list(&t, &even).unwrap().items.len(), 3);
    }

    #[test]
    fn a_paged_list_reads_one_state_until_its_version_is_dropped() {
        let cluster = Cluster::open(None, 100).unwrap();
        let t = target(&cluster, "", "configmaps", None);
        for i in 0..5 {
            let body = json!({"metadata": {"name": format!("c{i}")}, "data": {"v": "1"}});
            cluster.create(&t, body, &opts()).unwrap();
        }
        let names = |page: &ListPage| -> Vec<String> {
            page.items
                .iter()
                .map(|o| {
                    format!(
                        "{}={}",
                        o["metadata"]["name"].as_str().unwrap(),
                        o["data"]["v"].as_str().unwrap()
                    )
                })
                .collect()
        };
        let first = cluster
            .list(
                &t,
                &ListOptions {
                    limit: 2,
                    ..ListOptions::default()
                },
            )
            .unwrap();
        assert_eq!(names(&first), ["c0=1", "c1=1"]);
        let at = first.resource_version;
        // Changes after the first page: an insert among the rest, an update and a delete.
        cluster
            .create(
                &t,
                json!({"metadata": {"name": "c1a"}, "data": {"v": "1"}}),
                &opts(),
            )
            .unwrap();
        let mut named = t.clone();
        named.name = Some("c2".into());
        cluster
            .patch(
                &named,
                PatchKind::Merge,
                br#"{"data": {"v": "2"}}"#,
                &opts(),
            )
            .unwrap();
        named.name = Some("c3".into());
        cluster.delete(&named, &DeleteOptions::default()).unwrap();

        let rest = cluster
            .list(
                &t,
                &ListOptions {
                    continue_token: first.continue_token.clone(),
                    ..ListOptions::default()
                },
            )
            .unwrap();
        assert_eq!(
            names(&rest),
            ["c2=1", "c3=1", "c4=1"],
            "the first page's state"
        );
        assert_eq!(rest.resource_version, at);
        let exact = cluster
            .list(
                &t,
                &ListOptions {
                    read: ReadAt::Exact(at),
                    ..ListOptions::default()
                },
            )
            .unwrap();
        assert_eq!(exact.items.len(), 5);
        let newest = cluster
            .list(
                &t,
                &ListOptions {
                    read: ReadAt::NotOlderThan(at),
                    ..ListOptions::default()
                },
            )
            .unwrap();
        assert_eq!(names(&newest), ["c0=1", "c1=1", "c1a=1", "c2=2", "c4=1"]);
        let current = newest.resource_version;
        for read in [
            ReadAt::NotOlderThan(current + 1),
            ReadAt::Exact(current + 1),
        ] {
            let err = cluster
                .list(
                    &t,
                    &ListOptions {
                        read,
                        ..ListOptions::default()
                    },
                )
                .unwrap_err();
            assert_eq!((err.code(), err.reason()), (504, "Timeout"), "{err}");
        }

        // Once the changes after the first page are dropped from the history, its token expires
        // and the answer carries a token for the rest of the current state.
        cluster
            .lock()
            .store
            .set_history_window(std::time::Duration::ZERO);
        std::thread::sleep(std::time::Duration::from_millis(5));
        cluster
            .create(
                &t,
                json!({"metadata": {"name": "z"}, "data": {"v": "1"}}),
                &opts(),
            )
            .unwrap();
        let err = cluster
            .list(
                &t,
                &ListOptions {
                    continue_token: first.continue_token.clone(),
                    ..ListOptions::default()
                },
            )
            .unwrap_err();
        assert_eq!((err.code(), err.reason()), (410, "Expired"));
        let status = err.to_status();
        let token = status["metadata"]["continue"].as_str().unwrap().to_owned();
        let rest = cluster
            .list(
                &t,
                &ListOptions {
                    continue_token: Some(token),
                    ..ListOptions::default()
                },
            )
            .unwrap();
        assert_eq!(
            names(&rest),
            ["c1a=1", "c2=2", "c4=1", "z=1"],
            "the inconsistent remainder"
        );
        let err = cluster
            .list(
                &t,
                &ListOptions {
                    read: ReadAt::Exact(at),
                    ..ListOptions::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.code(), 410);
        assert_eq!(
            err.to_string(),
            "The resourceVersion for the provided list is too old."
        );
    }

    #[test]
    fn create_requires_namespace_and_valid_name() {
        let cluster = Cluster::open(None, 100).unwrap();
        let mut t = target(&cluster, "", "configmaps", None);
        assert_eq!(
            cluster
                .create(&t, json!({"metadata": {"name": "Bad_Name"}}), &opts())
                .unwrap_err()
                .code(),
            422
        );
        t.namespace = Some("missing".into());
        assert_eq!(
            cluster
                .create(&t, json!({"metadata": {"name": "ok"}}), &opts())
                .unwrap_err()
                .code(),
            404
        );
    }

    #[test]
    fn secret_string_data() {
        let cluster = Cluster::open(None, 100).unwrap();
        let t = target(&cluster, "", "secrets", None);
        let s = cluster
            .create(
                &t,
                json!({"metadata": {"name": "s"}, "stringData": {"a": "hi"}}),
                &opts(),
            )
            .unwrap();
        assert_eq!(s["data"]["a"], "aGk=");
    }
}
