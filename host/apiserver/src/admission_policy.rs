//! The `ValidatingAdmissionPolicy` admission plugin: each `ValidatingAdmissionPolicyBinding` binds
//! a `ValidatingAdmissionPolicy`'s CEL validations to the requests both match, and a request that
//! fails one is denied, warned about or only audited, as the binding's `validationActions` say.
//!
//! Behaviour from kube-apiserver v1.32 (`k8s.io/apiserver/pkg/admission/plugin/policy/validating`
//! and `.../policy/matching`, `pkg/apis/admissionregistration/validation`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::UserInfo;
use serde_json::{Value, json};

use crate::authz::Authorizer;
use crate::authz::attributes::ResourceRequest;
use crate::cel_library::authz::AuthorizerVal;
use crate::cluster::Inner;
use crate::error::{ApiError, FieldCause};
use crate::resource::ResourceInfo;
use crate::selector::Selector;

/// The policies' storage resource.
pub const POLICIES: &str = "validatingadmissionpolicies.admissionregistration.k8s.io";
/// The bindings' storage resource.
pub const BINDINGS: &str = "validatingadmissionpolicybindings.admissionregistration.k8s.io";
/// The group whose own kinds no policy applies to.
const GROUP: &str = "admissionregistration.k8s.io";

/// A request's operation, as a rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A create (a server-side apply that creates included).
    Create,
    /// An update, patch or apply of an existing object.
    Update,
    /// A delete.
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    fn options_kind(self) -> &'static str {
        match self {
            Self::Create => "CreateOptions",
            Self::Update => "UpdateOptions",
            Self::Delete => "DeleteOptions",
        }
    }
}

/// What the policies see of one request (`admission.Attributes`).
#[derive(Debug)]
pub struct Request<'a> {
    /// The operation.
    pub operation: Operation,
    /// The resource written.
    pub info: &'a ResourceInfo,
    /// The subresource (`status`), if any.
    pub subresource: Option<&'a str>,
    /// The object's namespace ("" for a cluster-scoped one).
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// The object as it would be stored (None for a delete).
    pub object: Option<&'a Value>,
    /// The stored object it replaces or deletes (None for a create).
    pub old: Option<&'a Value>,
    /// Who asks.
    pub user: &'a UserInfo,
    /// What the policies' `authorizer` asks.
    pub authorizer: Authorizer,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Runs every binding that matches `request` (in the order of their names; kube-apiserver's is
/// undefined): `Warn` actions add to `warnings`, and the first denial refuses the request.
///
/// # Errors
/// The first denial, as kube-apiserver answers it: `admission.NewForbidden` with the failed
/// validation's `reason` (`Invalid`, 422, by default) and `ValidatingAdmissionPolicy 'P' with
/// binding 'B' denied request: MESSAGE`.
pub fn admit(inner: &Inner, request: &Request, warnings: &mut Vec<String>) -> Result<(), ApiError> {
    if request.info.group == GROUP {
        return Ok(());
    }
    let mut bindings: Vec<&Arc<Value>> = inner
        .store
        .list(BINDINGS, None, None)
        .map(|(_, b)| b)
        .collect();
    if bindings.is_empty() {
        return Ok(());
    }
    bindings.sort_by(|a, b| name(a).cmp(name(b)));
    let mut context = None;
    let mut denied: Option<(String, &'static str)> = None;
    for binding in bindings {
        let spec = &binding["spec"];
        let Some(policy_name) = spec["policyName"].as_str() else {
            continue;
        };
        let Some(policy) = inner
            .store
            .get(POLICIES, &(String::new(), policy_name.to_owned()))
        else {
            continue;
        };
        let policy_spec = &policy["spec"];
        let Some(matched) = matched_resource(inner, &policy_spec["matchConstraints"], request)
        else {
            continue;
        };
        if !spec["matchResources"].is_null() && !matches(inner, &spec["matchResources"], request) {
            continue;
        }
        // One context per version the object is shown in (the request's, or an equivalent one).
        if context
            .as_ref()
            .is_none_or(|(version, _): &(String, Context)| *version != matched.version)
        {
            context = Some((
                matched.version.clone(),
                Context::new(inner, request, matched),
            ));
        }
        let Some((_, context)) = context.as_ref() else {
            continue;
        };
        let binding_name = name(binding);
        let (message, reason, actions) = match evaluate(inner, context, policy_spec, spec) {
            Decision::Admit => continue,
            // A binding that cannot be configured denies whatever its actions (under `Fail`).
            Decision::Misconfigured(message) => (
                format!("failed to configure binding: {message}"),
                "Invalid",
                vec!["Deny"],
            ),
            // An audit annotation that fails under `Fail` denies whatever the actions.
            Decision::AnnotationError(message) => (message, "Invalid", vec!["Deny"]),
            Decision::Deny { message, reason } => (
                message,
                reason,
                spec["validationActions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect(),
            ),
        };
        if actions.contains(&"Warn") {
            let text = format!(
                "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {message}"
            );
            if !warnings.contains(&text) {
                warnings.push(text);
            }
        }
        if actions.contains(&"Deny") && denied.is_none() {
            denied = Some((
                format!(
                    "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {message}"
                ),
                reason,
            ));
        }
    }
    match denied {
        None => Ok(()),
        Some((message, reason)) => Err(ApiError::Denied {
            group: request.info.group.clone(),
            resource: request.info.plural.clone(),
            name: if request.name.is_empty() {
                "Unknown".to_owned()
            } else {
                request.name.to_owned()
            },
            reason,
            code: reason_code(reason),
            message,
        }),
    }
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// `reasonToCode`.
fn reason_code(reason: &'static str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// The request's CEL variables, built once for all the bindings that match it.
struct Context {
    /// The request's namespace: where a namespaced parameter is looked up when the binding's
    /// `paramRef` names no namespace.
    namespace: String,
    object: cel::Value,
    old_object: cel::Value,
    request: cel::Value,
    namespace_object: cel::Value,
    /// `authorizer`, with the request's resource as its `requestResource`.
    authorizer: AuthorizerVal,
}

impl Context {
    /// The activation's values for `request`, its object shown as `matched` (the request's own
    /// resource, or an equivalent version of it) serves it: `request.kind` and `resource` are
    /// the matched ones, `requestKind` and `requestResource` the request's.
    fn new(inner: &Inner, request: &Request, matched: &ResourceInfo) -> Self {
        let info = request.info;
        let request_kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
        let request_resource =
            json!({"group": info.group, "version": info.version, "resource": info.plural});
        let kind =
            json!({"group": matched.group, "version": matched.version, "kind": matched.kind});
        let resource =
            json!({"group": matched.group, "version": matched.version, "resource": matched.plural});
        let user = request.user;
        let mut user_info = json!({
            "username": user.username.clone().unwrap_or_default(),
            "uid": user.uid.clone().unwrap_or_default(),
            "groups": user.groups.clone().unwrap_or_default(),
        });
        if let Some(extra) = &user.extra {
            user_info["extra"] = json!(extra);
        }
        let request_value = json!({
            "kind": kind,
            "resource": resource,
            "subResource": request.subresource.unwrap_or_default(),
            "requestKind": request_kind,
            "requestResource": request_resource,
            "requestSubResource": request.subresource.unwrap_or_default(),
            "name": request.name,
            "namespace": request.namespace,
            "operation": request.operation.name(),
            "userInfo": user_info,
            "dryRun": request.dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": request.operation.options_kind()},
        });
        // `CreateNamespaceObject`: the namespace's identity, labels, annotations, finalizers,
        // spec and status; none for a cluster-scoped request or one on a Namespace itself.
        let namespace_object = if !is_namespace(info) && !request.namespace.is_empty() {
            inner
                .store
                .get("namespaces", &(String::new(), request.namespace.to_owned()))
                .map_or(cel::Value::Null, |ns| {
                    let mut metadata = serde_json::Map::new();
                    for key in [
                        "name",
                        "generateName",
                        "namespace",
                        "uid",
                        "resourceVersion",
                        "generation",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "labels",
                        "annotations",
                        "finalizers",
                    ] {
                        if let Some(v) = ns["metadata"].get(key) {
                            metadata.insert(key.to_owned(), v.clone());
                        }
                    }
                    cel_value(&json!({
                        "metadata": metadata,
                        "spec": ns.get("spec").cloned().unwrap_or_else(|| json!({})),
                        "status": ns.get("status").cloned().unwrap_or_else(|| json!({})),
                    }))
                })
        } else {
            cel::Value::Null
        };
        // Shown in the matched version when it is an equivalent of the request's resource.
        let show = |o: &Value| {
            if matched.group == info.group && matched.version == info.version {
                cel_value(o)
            } else {
                cel_value(&shown(matched, info, o))
            }
        };
        Self {
            namespace: request.namespace.to_owned(),
            object: request.object.map_or(cel::Value::Null, show),
            old_object: request.old.map_or(cel::Value::Null, show),
            request: converted(&request_value, false),
            namespace_object,
            authorizer: AuthorizerVal::for_request(
                user,
                request.authorizer,
                ResourceRequest {
                    group: info.group.clone(),
                    version: info.version.clone(),
                    resource: info.plural.clone(),
                    subresource: request.subresource.unwrap_or_default().to_owned(),
                    namespace: request.namespace.to_owned(),
                    name: request.name.to_owned(),
                },
            ),
        }
    }

    /// The activation of one expression; match conditions see no `namespaceObject`.
    fn cel(
        &self,
        params: &cel::Value,
        variables: &HashMap<String, cel::Value>,
        with_namespace: bool,
    ) -> cel::Context<'_, '_> {
        let mut context = cel::Context::with_env(crate::cel_library::env());
        context.add_variable_from_value("object", self.object.clone());
        context.add_variable_from_value("oldObject", self.old_object.clone());
        context.add_variable_from_value("request", self.request.clone());
        context.add_variable_from_value("params", params.clone());
        context.add_variable_from_value(
            "namespaceObject",
            if with_namespace {
                self.namespace_object.clone()
            } else {
                cel::Value::Null
            },
        );
        context.add_variable_from_value("variables", cel::Value::from(variables.clone()));
        context.add_variable_as_val("authorizer", Box::new(self.authorizer.clone()));
        context
    }
}

/// A JSON value as a policy's CEL sees it. Built-in kinds' property names that are CEL reserved
/// words are escaped (`object.metadata.__namespace__`); map keys (labels, annotations) are not.
fn cel_value(value: &Value) -> cel::Value {
    converted(value, true)
}

/// `value` with its keys as they are: the `request` variable, whose declared type names its
/// fields `namespace`, `name`, ... (`request.namespace`, as cel-go reads a reserved word after a
/// dot).
fn converted(value: &Value, escape: bool) -> cel::Value {
    match value {
        Value::Array(items) => cel::Value::from(
            items
                .iter()
                .map(|v| converted(v, escape))
                .collect::<Vec<_>>(),
        ),
        Value::Object(map) => cel::Value::from(
            map.iter()
                .map(|(k, v)| {
                    let key =
                        if escape && crate::cel_library::escaping::RESERVED.contains(&k.as_str()) {
                            format!("__{k}__")
                        } else {
                            k.clone()
                        };
                    (key, converted(v, escape))
                })
                .collect::<HashMap<String, cel::Value>>(),
        ),
        scalar => crate::cel_library::scalar(scalar),
    }
}

/// Whether `rules` (a policy's `matchConstraints` or a binding's `matchResources`) select the
/// request, in kube-apiserver's order: the namespace selector, the object selector, no exclude
/// rule, then a resource rule (none at all matches every resource: a binding's `matchResources`
/// may leave them to its policy).
fn matches(inner: &Inner, rules: &Value, request: &Request) -> bool {
    matched_resource(inner, rules, request).is_some()
}

/// The resource `rules` match `request` as: the request's own, or under `matchPolicy:
/// Equivalent` (the default) an equivalent one (same storage: another served version of a custom
/// resource, `autoscaling/v1` and `v2` HPAs, core and `events.k8s.io` Events), which the object is
/// then shown in; None when they do not match.
fn matched_resource<'a>(
    inner: &'a Inner,
    rules: &Value,
    request: &Request<'a>,
) -> Option<&'a ResourceInfo> {
    if !namespace_matches(inner, &rules["namespaceSelector"], request)
        || !object_matches(&rules["objectSelector"], request)
    {
        return None;
    }
    let mut candidates: Vec<&'a ResourceInfo> = vec![request.info];
    if rules["matchPolicy"].as_str() != Some("Exact") {
        let storage = request.info.storage_resource();
        candidates.extend(
            inner
                .registry
                .all()
                .filter(|r| {
                    (r.group != request.info.group || r.version != request.info.version)
                        && r.storage_resource() == storage
                })
                .map(|r| &**r),
        );
    }
    let listed = |list: &str, info: &ResourceInfo| {
        rules[list]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| rule_matches(r, request, info))
    };
    if candidates
        .iter()
        .any(|info| listed("excludeResourceRules", info))
    {
        return None;
    }
    if rules["resourceRules"].as_array().is_none_or(Vec::is_empty) {
        return Some(request.info);
    }
    candidates
        .into_iter()
        .find(|info| listed("resourceRules", info))
}

fn empty_selector(selector: &Value) -> bool {
    selector.is_null() || selector.as_object().is_some_and(serde_json::Map::is_empty)
}

/// Whether `selector` (a `LabelSelector`) selects `object`'s labels; no object matches only an
/// empty selector.
fn selector_matches(selector: &Value, object: Option<&Value>) -> bool {
    empty_selector(selector)
        || object.is_some_and(|o| Selector::label_selector_selects(selector, o))
}

/// `objectSelector`: the object's labels or the old object's; no object does not match.
fn object_matches(selector: &Value, request: &Request) -> bool {
    empty_selector(selector)
        || [request.object, request.old]
            .into_iter()
            .flatten()
            .any(|o| o.get("metadata").is_some() && selector_matches(selector, Some(o)))
}

/// `namespaceSelector`: a cluster-scoped request other than of a Namespace always matches; a
/// Namespace is matched by its own labels.
fn namespace_matches(inner: &Inner, selector: &Value, request: &Request) -> bool {
    if empty_selector(selector) {
        return true;
    }
    let info = request.info;
    if is_namespace(info) {
        return selector_matches(selector, request.object.or(request.old));
    }
    if !info.namespaced || request.namespace.is_empty() {
        return true;
    }
    let namespace = inner
        .store
        .get("namespaces", &(String::new(), request.namespace.to_owned()));
    selector_matches(selector, namespace.map(|ns| &**ns))
}

/// `object`, written through `from`, in the form its equivalent `to` serves: an HPA or an Event
/// converted between its two APIs, a custom resource with the other version's `apiVersion` (its
/// versions share storage without conversion).
fn shown(to: &ResourceInfo, from: &ResourceInfo, object: &Value) -> Value {
    use crate::autoscaler_versions as hpa;
    use crate::event_versions as events;
    if hpa::is_v1(to) && !hpa::is_v1(from) {
        return hpa::to_v1(object);
    }
    if hpa::is_v1(from) && !hpa::is_v1(to) {
        return hpa::to_v2_over(object.clone(), None);
    }
    if events::is_events_api(to) && !events::is_events_api(from) {
        return events::to_events_api(object);
    }
    if events::is_events_api(from) && !events::is_events_api(to) {
        return events::to_core(object.clone());
    }
    let mut copy = object.clone();
    copy["apiVersion"] = json!(to.api_version());
    copy
}

fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "namespaces"
}

/// One `RuleWithOperations`: its scope, operations, groups, versions and resources (`*` every
/// resource without a subresource, `*/*` every one with, `pods/*` a pod's subresources) and
/// resource names.
fn rule_matches(rule: &Value, request: &Request, info: &ResourceInfo) -> bool {
    let listed = |field: &str| {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    };
    let has = |field: &str, value: &str| listed(field).any(|v| v == "*" || v == value);
    let cluster = is_namespace(info) || request.namespace.is_empty();
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => cluster,
        "Namespaced" => !cluster,
        _ => true,
    };
    let subresource = request.subresource.unwrap_or_default();
    let resource_ok = listed("resources").any(|r| {
        let (resource, sub) = r.split_once('/').unwrap_or((r, ""));
        (resource == "*" || resource == info.plural) && (sub == "*" || sub == subresource)
    });
    let names: Vec<&str> = listed("resourceNames").collect();
    scope_ok
        && has("operations", request.operation.name())
        && has("apiGroups", &info.group)
        && has("apiVersions", &info.version)
        && resource_ok
        && (names.is_empty() || names.contains(&request.name))
}

/// What one binding decides.
enum Decision {
    /// Nothing failed (or the binding does not apply).
    Admit,
    /// A validation failed, or an expression failed under `failurePolicy: Fail`: the binding's
    /// actions say what follows.
    Deny {
        /// The validation's message, or the error.
        message: String,
        /// `metav1.StatusReason`.
        reason: &'static str,
    },
    /// The binding cannot be configured (its parameter is missing) under `failurePolicy: Fail`.
    Misconfigured(String),
    /// An audit annotation's expression failed, or gave neither a string nor null, under
    /// `failurePolicy: Fail`.
    AnnotationError(String),
}

/// One binding: its parameters (`CollectParams`), then the policy once per parameter, the first
/// denial answering (a binding that finds no parameter under `Allow` admits).
fn evaluate(inner: &Inner, context: &Context, policy: &Value, binding: &Value) -> Decision {
    let fail = policy["failurePolicy"].as_str() != Some("Ignore");
    let all = match params(inner, policy, binding, &context.namespace) {
        Ok(all) => all,
        Err(message) if fail => return Decision::Misconfigured(message),
        Err(_) => return Decision::Admit,
    };
    crate::cel_library::authz::with_state(inner, || {
        all.iter()
            .map(|params| validate(context, policy, params))
            .find(|decision| !matches!(decision, Decision::Admit))
            .unwrap_or(Decision::Admit)
    })
}

/// `validator.Validate` for one binding and parameter: its match conditions, then every
/// validation in order.
fn validate(context: &Context, policy: &Value, params: &cel::Value) -> Decision {
    let fail = policy["failurePolicy"].as_str() != Some("Ignore");
    let error = |message: String| {
        if fail {
            Decision::Deny {
                message,
                reason: "Invalid",
            }
        } else {
            Decision::Admit
        }
    };
    let env = crate::cel_library::env();
    let run = |expression: &str, cel: &cel::Context| {
        env.compile(expression)
            .map_err(|e| format!("compilation error: {e}"))
            .and_then(|p| {
                p.execute(cel)
                    .map_err(|e| crate::cel_library::error_text(&e))
            })
    };
    // Variables are evaluated in order, each seeing those before it; one that fails is left out,
    // so that only the expressions using it fail.
    let mut variables = HashMap::new();
    for variable in policy["variables"].as_array().into_iter().flatten() {
        if let (Some(name), Some(expression)) =
            (variable["name"].as_str(), variable["expression"].as_str())
            && let Ok(value) = run(expression, &context.cel(params, &variables, true))
        {
            variables.insert(name.to_owned(), value);
        }
    }
    // Match conditions see no `namespaceObject`; one false skips the binding whatever errors.
    let conditions = context.cel(params, &variables, false);
    let mut errors = Vec::new();
    for condition in policy["matchConditions"].as_array().into_iter().flatten() {
        let expression = condition["expression"].as_str().unwrap_or_default();
        let name = condition["name"].as_str().unwrap_or_default();
        match run(expression, &conditions) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Decision::Admit,
            Ok(other) => errors.push(format!(
                "matchCondition '{name}' resulted in an error: expected bool, got {}",
                type_name(&other)
            )),
            Err(e) => errors.push(format!("matchCondition '{name}' resulted in an error: {e}")),
        }
    }
    match errors.len() {
        0 => {}
        1 => return error(errors.remove(0)),
        _ => return error(format!("[{}]", errors.join(", "))),
    }
    let cel = context.cel(params, &variables, true);
    for validation in policy["validations"].as_array().into_iter().flatten() {
        let expression = validation["expression"].as_str().unwrap_or_default();
        match run(expression, &cel) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                return Decision::Deny {
                    message: message(&env, &cel, validation, expression),
                    reason: match validation["reason"].as_str() {
                        Some("Forbidden") => "Forbidden",
                        Some("Unauthorized") => "Unauthorized",
                        Some("RequestEntityTooLarge") => "RequestEntityTooLarge",
                        _ => "Invalid",
                    },
                };
            }
            Ok(other) => {
                return error(format!(
                    "expression '{expression}' resulted in error: expected bool, got {}",
                    type_name(&other)
                ));
            }
            Err(e) => return error(format!("expression '{expression}' resulted in error: {e}")),
        }
    }
    // Audit annotations: a string or null is published to the audit log (this server keeps
    // none); an error or another type denies under `Fail` (`AuditAnnotationActionError`).
    for annotation in policy["auditAnnotations"].as_array().into_iter().flatten() {
        let expression = annotation["valueExpression"].as_str().unwrap_or_default();
        let failure = match run(expression, &cel) {
            Ok(cel::Value::String(_) | cel::Value::Null) => continue,
            Ok(other) => format!(
                "valueExpression '{expression}' resulted in unsupported return type: {}. Return \
                 type must be either string or null.",
                type_name(&other)
            ),
            Err(e) => format!("expression '{expression}' resulted in error: {e}"),
        };
        if fail {
            return Decision::AnnotationError(failure);
        }
    }
    Decision::Admit
}

/// A failed validation's message: its `messageExpression` when that gives a non-empty one-line
/// string of at most 5120 bytes, else its `message`, else `failed expression: EXPRESSION`.
fn message(
    env: &Arc<cel::Env>,
    cel: &cel::Context,
    validation: &Value,
    expression: &str,
) -> String {
    let fixed = || {
        validation["message"]
            .as_str()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map_or_else(
                || format!("failed expression: {}", expression.trim()),
                str::to_owned,
            )
    };
    let Some(text) = validation["messageExpression"].as_str() else {
        return fixed();
    };
    match env.compile(text).map(|p| p.execute(cel)) {
        Ok(Ok(cel::Value::String(m)))
            if !m.trim().is_empty() && m.len() <= 5120 && !m.contains('\n') =>
        {
            m.trim().to_owned()
        }
        _ => fixed(),
    }
}

fn type_name(value: &cel::Value) -> &'static str {
    match value {
        cel::Value::Bool(_) => "bool",
        cel::Value::Int(_) => "int",
        cel::Value::UInt(_) => "uint",
        cel::Value::Float(_) => "double",
        cel::Value::String(_) => "string",
        cel::Value::List(_) => "list",
        cel::Value::Map(_) => "map",
        cel::Value::Null => "null_type",
        _ => "dyn",
    }
}

/// The binding's parameters, as its `paramRef` finds them (`CollectParams`): `[null]` when the
/// policy takes none; a namespaced kind looked up in `paramRef.namespace`, else in the request's
/// `namespace` (an error for a cluster-scoped request); by name one at most, by selector every
/// match (the policy then runs once per parameter); none found is an error under
/// `parameterNotFoundAction: Deny` and admits under `Allow`.
fn params(
    inner: &Inner,
    policy: &Value,
    binding: &Value,
    namespace: &str,
) -> Result<Vec<cel::Value>, String> {
    let kind = &policy["paramKind"];
    let reference = &binding["paramRef"];
    if kind.is_null() || reference.is_null() {
        return Ok(vec![cel::Value::Null]);
    }
    let api_version = kind["apiVersion"].as_str().unwrap_or_default();
    let kind_name = kind["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let Some(info) = inner
        .registry
        .all()
        .find(|r| r.group == group && r.version == version && r.kind == kind_name)
    else {
        return Err(format!(
            "failed to find resource referenced by paramKind: '{api_version}, Kind={kind_name}'"
        ));
    };
    let named_namespace = reference["namespace"].as_str().unwrap_or_default();
    let namespace = if info.namespaced {
        match (named_namespace, namespace) {
            ("", "") => {
                return Err(
                    "cannot use namespaced paramRef in policy binding that matches \
                            cluster-scoped resources"
                        .into(),
                );
            }
            ("", request) => request,
            (named, _) => named,
        }
    } else if named_namespace.is_empty() {
        ""
    } else {
        return Err(
            "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
        );
    };
    let resource = info.storage_resource();
    let found: Vec<Arc<Value>> = match reference["name"].as_str().filter(|n| !n.is_empty()) {
        Some(name) => inner
            .store
            .get(&resource, &(namespace.to_owned(), name.to_owned()))
            .cloned()
            .into_iter()
            .collect(),
        None => inner
            .store
            .list(
                &resource,
                (!namespace.is_empty()).then_some(namespace),
                None,
            )
            .map(|(_, o)| o)
            .filter(|o| selector_matches(&reference["selector"], Some(o)))
            .cloned()
            .collect(),
    };
    if found.is_empty() && reference["parameterNotFoundAction"].as_str() != Some("Allow") {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found
        .into_iter()
        .map(|p| {
            let mut p = (*p).clone();
            p["apiVersion"] = json!(api_version);
            p["kind"] = json!(kind_name);
            cel_value(&p)
        })
        .collect())
}

/// `SetDefaults_ValidatingAdmissionPolicySpec` and of its `matchConstraints`.
pub(crate) fn default_policy(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("failurePolicy").or_insert_with(|| json!("Fail"));
    if let Some(constraints) = spec.get_mut("matchConstraints") {
        default_match_resources(constraints);
    }
}

/// `SetObjectDefaults_ValidatingAdmissionPolicyBinding`: its `matchResources` only (in v1 a
/// `paramRef`'s `parameterNotFoundAction` is required, not defaulted).
pub(crate) fn default_binding(object: &mut Value) {
    if let Some(resources) = object
        .get_mut("spec")
        .and_then(|s| s.get_mut("matchResources"))
    {
        default_match_resources(resources);
    }
}

/// `SetDefaults_MatchResources`: `Equivalent`, and empty selectors; each rule's scope `*`.
fn default_match_resources(resources: &mut Value) {
    let Some(map) = resources.as_object_mut() else {
        return;
    };
    map.entry("matchPolicy")
        .or_insert_with(|| json!("Equivalent"));
    map.entry("namespaceSelector").or_insert_with(|| json!({}));
    map.entry("objectSelector").or_insert_with(|| json!({}));
    for list in ["resourceRules", "excludeResourceRules"] {
        for rule in map
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            rule.entry("scope").or_insert_with(|| json!("*"));
        }
    }
}

/// `ValidateValidatingAdmissionPolicy`: the fields a policy needs, with kube-apiserver's
/// messages (after defaulting).
pub(crate) fn validate_policy(object: &Value) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    let spec = &object["spec"];
    one_of(
        &mut errs,
        "spec.failurePolicy",
        &spec["failurePolicy"],
        &["Fail", "Ignore"],
    );
    let kind = &spec["paramKind"];
    if !kind.is_null() {
        for key in ["apiVersion", "kind"] {
            if kind[key].as_str().is_none_or(str::is_empty) {
                errs.push(FieldCause::required(&format!("spec.paramKind.{key}"), ""));
            }
        }
    }
    let constraints = &spec["matchConstraints"];
    if constraints.is_null() {
        errs.push(FieldCause::required("spec.matchConstraints", ""));
    } else {
        if constraints["resourceRules"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            errs.push(FieldCause::required(
                "spec.matchConstraints.resourceRules",
                "",
            ));
        }
        validate_match_resources(constraints, "spec.matchConstraints", &mut errs);
    }
    let env = crate::cel_library::env();
    let compiles =
        |field: String, expression: Option<&str>, errs: &mut Vec<FieldCause>| match expression
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            None => errs.push(FieldCause::required(&field, "expression is not specified")),
            Some(e) => {
                if let Err(error) = env.compile(e) {
                    errs.push(FieldCause::invalid_value(
                        &field,
                        &json!(e),
                        format!("compilation failed: {error}"),
                    ));
                }
            }
        };
    for (i, condition) in spec["matchConditions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.matchConditions[{i}]");
        if condition["name"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldCause::required(&format!("{field}.name"), ""));
        }
        compiles(
            format!("{field}.expression"),
            condition["expression"].as_str(),
            &mut errs,
        );
    }
    for (i, variable) in spec["variables"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.variables[{i}]");
        match variable["name"].as_str().filter(|n| !n.is_empty()) {
            None => errs.push(FieldCause::required(
                &format!("{field}.name"),
                "name is not specified",
            )),
            Some(name) if !is_cel_identifier(name) => errs.push(FieldCause::invalid_value(
                &format!("{field}.name"),
                &json!(name),
                "name is not a valid CEL identifier",
            )),
            Some(_) => {}
        }
        compiles(
            format!("{field}.expression"),
            variable["expression"].as_str(),
            &mut errs,
        );
    }
    let validations = spec["validations"].as_array().map_or(0, Vec::len);
    let audits = spec["auditAnnotations"].as_array().map_or(0, Vec::len);
    if validations == 0 && audits == 0 {
        for field in ["spec.validations", "spec.auditAnnotations"] {
            errs.push(FieldCause::required(
                field,
                "validations or auditAnnotations must contain at least one item",
            ));
        }
    }
    for (i, validation) in spec["validations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.validations[{i}]");
        compiles(
            format!("{field}.expression"),
            validation["expression"].as_str(),
            &mut errs,
        );
        if let Some(message) = validation["message"].as_str() {
            let problem = if message.trim().is_empty() {
                Some("message must be non-empty if specified")
            } else if message.contains(['\n', '\r']) {
                Some("message must not contain line breaks")
            } else {
                None
            };
            if let Some(problem) = problem {
                errs.push(FieldCause::invalid_value(
                    &format!("{field}.message"),
                    &json!(message),
                    problem,
                ));
            }
        }
        if let Some(text) = validation["messageExpression"].as_str()
            && text.trim().is_empty()
        {
            errs.push(FieldCause::invalid_value(
                &format!("{field}.messageExpression"),
                &json!(text),
                "must be non-empty if specified",
            ));
        }
        one_of(
            &mut errs,
            &format!("{field}.reason"),
            &validation["reason"],
            &["Forbidden", "Invalid", "RequestEntityTooLarge"],
        );
    }
    errs
}

/// A name `variables.NAME` can select: an identifier that is not a CEL reserved word.
fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !crate::cel_library::escaping::RESERVED.contains(&name)
}

/// `ValidateValidatingAdmissionPolicyBinding`.
pub(crate) fn validate_binding(object: &Value) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    let spec = &object["spec"];
    if spec["policyName"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldCause::required("spec.policyName", ""));
    }
    let reference = &spec["paramRef"];
    if !reference.is_null() {
        let named = reference["name"].as_str().is_some_and(|n| !n.is_empty());
        let selected = !reference["selector"].is_null();
        if named && selected {
            for field in ["spec.paramRef.name", "spec.paramRef.selector"] {
                errs.push(FieldCause::forbidden(
                    field,
                    "name and selector are mutually exclusive",
                ));
            }
        } else if !named && !selected {
            errs.push(FieldCause::required(
                "spec.paramRef",
                "one of name or selector must be specified",
            ));
        }
        let action = &reference["parameterNotFoundAction"];
        match action.as_str() {
            None | Some("") => errs.push(FieldCause::required(
                "spec.paramRef.parameterNotFoundAction",
                "",
            )),
            Some("Deny" | "Allow") => {}
            Some(_) => errs.push(FieldCause::not_supported(
                "spec.paramRef.parameterNotFoundAction",
                action,
                &["Deny", "Allow"],
            )),
        }
    }
    if !spec["matchResources"].is_null() {
        validate_match_resources(&spec["matchResources"], "spec.matchResources", &mut errs);
    }
    let actions: Vec<&Value> = spec["validationActions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut seen = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let field = format!("spec.validationActions[{i}]");
        if seen.contains(action) {
            errs.push(FieldCause::duplicate(&field, action));
        } else if !matches!(action.as_str(), Some("Deny" | "Warn" | "Audit")) {
            errs.push(FieldCause::not_supported(
                &field,
                action,
                &["Audit", "Deny", "Warn"],
            ));
        }
        seen.push(action);
    }
    if actions.iter().any(|a| a.as_str() == Some("Deny"))
        && actions.iter().any(|a| a.as_str() == Some("Warn"))
    {
        errs.push(FieldCause::invalid_value(
            "spec.validationActions",
            &json!(actions),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if actions.is_empty() {
        errs.push(FieldCause::required(
            "spec.validationActions",
            "at least one validation action is required",
        ));
    }
    errs
}

/// `validateMatchResources`: the match policy and the rules.
fn validate_match_resources(resources: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let policy = &resources["matchPolicy"];
    match policy.as_str() {
        None => errs.push(FieldCause::required(&format!("{path}.matchPolicy"), "")),
        Some("Equivalent" | "Exact") => {}
        Some(_) => errs.push(FieldCause::not_supported(
            &format!("{path}.matchPolicy"),
            policy,
            &["Equivalent", "Exact"],
        )),
    }
    for list in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in resources[list].as_array().into_iter().flatten().enumerate() {
            validate_rule(rule, &format!("{path}.{list}[{i}]"), errs);
        }
    }
}

/// `validateRuleWithOperations`: every list named, `*` alone, known operations and scopes.
fn validate_rule(rule: &Value, field: &str, errs: &mut Vec<FieldCause>) {
    let list = |key: &str| -> Vec<&str> {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    };
    for (key, what) in [
        ("operations", "operations"),
        ("apiGroups", "API groups"),
        ("apiVersions", "API versions"),
    ] {
        let items = list(key);
        if items.is_empty() {
            errs.push(FieldCause::required(&format!("{field}.{key}"), ""));
        } else if items.len() > 1 && items.contains(&"*") {
            errs.push(FieldCause::invalid_value(
                &format!("{field}.{key}"),
                &json!(items),
                format!("if '*' is present, must not specify other {what}"),
            ));
        }
    }
    for (j, op) in rule["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        one_of(
            errs,
            &format!("{field}.operations[{j}]"),
            op,
            &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
        );
    }
    let resources = list("resources");
    if resources.is_empty() {
        errs.push(FieldCause::required(&format!("{field}.resources"), ""));
    } else if resources.len() > 1 && resources.contains(&"*/*") {
        errs.push(FieldCause::invalid_value(
            &format!("{field}.resources"),
            &json!(resources),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    one_of(
        errs,
        &format!("{field}.scope"),
        &rule["scope"],
        &["*", "Cluster", "Namespaced"],
    );
}

/// `NotSupported` when `value` is set and not one of `supported` (listed as kube-apiserver
/// lists them).
fn one_of(errs: &mut Vec<FieldCause>, field: &str, value: &Value, supported: &[&str]) {
    if !value.is_null() && !value.as_str().is_some_and(|v| supported.contains(&v)) {
        errs.push(FieldCause::not_supported(field, value, supported));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_matches_resources_and_subresources_as_kubernetes_does() {
        let info = crate::resource::Registry::default()
            .lookup("apps", "v1", "deployments")
            .expect("deployments are served");
        let user = UserInfo::default();
        let request = |sub| Request {
            operation: Operation::Create,
            info: &info,
            subresource: sub,
            namespace: "default",
            name: "web",
            object: None,
            old: None,
            user: &user,
            authorizer: Authorizer::default(),
            dry_run: false,
        };
        let rule = |resources: Value| json!({"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": resources});
        assert!(rule_matches(
            &rule(json!(["deployments"])),
            &request(None),
            &info
        ));
        assert!(rule_matches(&rule(json!(["*"])), &request(None), &info));
        assert!(!rule_matches(
            &rule(json!(["*"])),
            &request(Some("status")),
            &info
        ));
        assert!(rule_matches(
            &rule(json!(["*/*"])),
            &request(Some("status")),
            &info
        ));
        assert!(rule_matches(
            &rule(json!(["deployments/status"])),
            &request(Some("status")),
            &info
        ));
        assert!(!rule_matches(
            &rule(json!(["deployments/status"])),
            &request(None),
            &info
        ));
        assert!(!rule_matches(
            &rule(json!(["replicasets"])),
            &request(None),
            &info
        ));
        let mut cluster = rule(json!(["*"]));
        cluster["scope"] = json!("Cluster");
        assert!(!rule_matches(&cluster, &request(None), &info));
    }
}
