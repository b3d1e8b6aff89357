//! ResourceQuotas (core v1): their validation (`ValidateResourceQuota`), what each object
//! charges against them (the quota evaluators: object counts, a Pod's compute requests and
//! limits, a Service's node ports and load balancers, a claim's storage), and the
//! `ResourceQuota` admission plugin, which refuses a create that would take a namespace past a
//! quota's `status.hard` or a Pod that does not name what a quota tracks.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cluster::Inner;
use crate::error::FieldCause;
use crate::quantity::{Format, Quantity};
use crate::resource::ResourceInfo;

/// The storage key of ResourceQuotas.
pub const RESOURCE_QUOTAS: &str = "resourcequotas";

/// The resources a quota may name without a domain (`standardQuotaResources` and the compute
/// names).
const STANDARD: [&str; 21] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
    "storage",
    "nvidia.com/gpu",
];

/// Whether `name` is a standard resource name (`IsStandardResourceName`): one of [`STANDARD`]
/// or a huge page size.
pub(crate) fn is_standard_resource(name: &str) -> bool {
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// The resources counted as integers.
const INTEGER: [&str; 9] = [
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// The compute resources a Pod must name when a quota tracks them (`validationSet`).
const REQUIRED: [&str; 6] = [
    "cpu",
    "limits.cpu",
    "limits.memory",
    "memory",
    "requests.cpu",
    "requests.memory",
];

/// Why the `ResourceQuota` plugin refuses a write (answered 403).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    /// The write would take usage past a quota.
    #[error("exceeded quota: {quota}, requested: {requested}, used: {used}, limited: {limited}")]
    Exceeded {
        /// The quota's name.
        quota: String,
        /// What the write asks for, of the exceeded resources.
        requested: String,
        /// What is used of them.
        used: String,
        /// Their limits.
        limited: String,
    },
    /// A Pod does not name a request or limit the quota tracks.
    #[error("failed quota: {quota}: must specify {missing}")]
    Unspecified {
        /// The quota's name.
        quota: String,
        /// Each resource with the containers that lack it.
        missing: String,
    },
    /// The quota's usage is not known yet.
    #[error("status unknown for quota: {quota}, resources: {resources}")]
    StatusUnknown {
        /// The quota's name.
        quota: String,
        /// The resources it tracks for this object.
        resources: String,
    },
}

/// `ValidateResourceQuota`'s rules on `spec.hard` (and the status's lists): each resource a
/// standard quota resource or qualified, each value at least zero, counts whole.
#[must_use]
pub fn validate(object: &Value) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    for (path, list) in [
        ("spec.hard", &object["spec"]["hard"]),
        ("status.hard", &object["status"]["hard"]),
        ("status.used", &object["status"]["used"]),
    ] {
        for (resource, value) in list.as_object().into_iter().flatten() {
            let field = format!("{path}[{resource}]");
            if !resource.contains('/') {
                if let Err(e) = crate::validation::qualified_name(resource) {
                    errs.push(FieldCause::invalid(&field, resource, e));
                }
                if !is_standard_resource(resource) {
                    errs.push(FieldCause::invalid(
                        &field,
                        resource,
                        "must be a standard resource type or fully qualified",
                    ));
                    errs.push(FieldCause::invalid(
                        &field,
                        resource,
                        "must be a standard resource for quota",
                    ));
                }
            }
            let text = value.as_str().unwrap_or_default();
            match Quantity::parse(text) {
                Ok(q) if q.nanos() < 0 => errs.push(FieldCause::invalid(
                    &field,
                    text,
                    "must be greater than or equal to 0",
                )),
                Ok(q) if INTEGER.contains(&resource.as_str()) && q.nanos() % 1_000_000_000 != 0 => {
                    errs.push(FieldCause::invalid(&field, text, "must be an integer"));
                }
                _ => {}
            }
        }
    }
    errs
}

/// Usage by resource name, each with the format its first non-zero amount was written in.
pub type Usage = BTreeMap<String, (Quantity, Format)>;

/// Adds `amount` (as written) of `resource` to `usage`.
fn add(usage: &mut Usage, resource: &str, amount: &str) {
    let Ok(value) = Quantity::parse(amount) else {
        return;
    };
    let entry = usage
        .entry(resource.to_owned())
        .or_insert((Quantity::from_nanos(0), Format::DecimalSi));
    crate::quantity::add(entry, value, Format::of(amount));
}

/// What `object` of `info` charges against a quota (`UsageFunc` of its evaluator): its
/// `count/RESOURCE[.GROUP]` and legacy count, and for Pods that still run their compute
/// requests and limits, for Services their node ports and load balancers, for claims their
/// storage.
#[must_use]
pub fn usage(info: &ResourceInfo, object: &Value) -> Usage {
    let mut usage = Usage::new();
    let count = if info.group.is_empty() {
        format!("count/{}", info.plural)
    } else {
        format!("count/{}.{}", info.plural, info.group)
    };
    add(&mut usage, &count, "1");
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => {
            if matches!(
                object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            ) {
                return usage;
            }
            add(&mut usage, "pods", "1");
            let spec = &object["spec"];
            for (list, prefixes) in [
                ("requests", &["requests.", ""][..]),
                ("limits", &["limits."][..]),
            ] {
                let mut totals: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for container in spec["containers"].as_array().into_iter().flatten() {
                    for (resource, amount) in container["resources"][list]
                        .as_object()
                        .into_iter()
                        .flatten()
                    {
                        totals
                            .entry(resource.clone())
                            .or_default()
                            .push(amount.as_str().unwrap_or("0").to_owned());
                    }
                }
                for (resource, amounts) in totals {
                    if !matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                        if list == "requests" {
                            for amount in &amounts {
                                add(&mut usage, &format!("requests.{resource}"), amount);
                            }
                        }
                        continue;
                    }
                    for prefix in prefixes {
                        for amount in &amounts {
                            add(&mut usage, &format!("{prefix}{resource}"), amount);
                        }
                    }
                }
            }
        }
        ("", "services") => {
            add(&mut usage, "services", "1");
            let ports = object["spec"]["ports"].as_array().map_or(0, Vec::len);
            let (nodeports, balancers) = match object["spec"]["type"].as_str() {
                Some("NodePort") => (ports, 0),
                Some("LoadBalancer") => (ports, 1),
                _ => (0, 0),
            };
            add(&mut usage, "services.nodeports", &nodeports.to_string());
            add(&mut usage, "services.loadbalancers", &balancers.to_string());
        }
        ("", "persistentvolumeclaims") => {
            add(&mut usage, "persistentvolumeclaims", "1");
            let storage = object["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .unwrap_or("0");
            add(&mut usage, "requests.storage", storage);
            if let Some(class) = object["spec"]["storageClassName"]
                .as_str()
                .filter(|c| !c.is_empty())
            {
                let prefix = format!("{class}.storageclass.storage.k8s.io");
                add(&mut usage, &format!("{prefix}/requests.storage"), storage);
                add(&mut usage, &format!("{prefix}/persistentvolumeclaims"), "1");
            }
        }
        ("", legacy @ ("configmaps" | "secrets" | "resourcequotas" | "replicationcontrollers")) => {
            add(&mut usage, legacy, "1");
        }
        _ => {}
    }
    usage
}

/// The scopes a quota may name (`standardResourceQuotaScopes`).
const SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// One scope a quota selects by: `spec.scopes` entries (as `Exists`) and the requirements of
/// `spec.scopeSelector` (`getScopeSelectorsFromQuota`).
struct ScopeRequirement<'a> {
    scope: &'a str,
    operator: &'a str,
    values: Vec<&'a str>,
}

/// The strings of a JSON list (none when it is not one).
fn texts(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn scope_requirements(spec: &Value) -> Vec<ScopeRequirement<'_>> {
    let mut all: Vec<ScopeRequirement<'_>> = texts(&spec["scopes"])
        .into_iter()
        .map(|scope| ScopeRequirement {
            scope,
            operator: "Exists",
            values: Vec::new(),
        })
        .collect();
    for req in spec["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        all.push(ScopeRequirement {
            scope: req["scopeName"].as_str().unwrap_or_default(),
            operator: req["operator"].as_str().unwrap_or_default(),
            values: texts(&req["values"]),
        });
    }
    all
}

/// Whether a quota's scopes and scope selector let it track `object` (`Matches` with the pod
/// evaluator's `podMatchesScopeFunc`): every requirement must hold. Only Pods have scopes:
/// a scoped quota tracks nothing else.
#[must_use]
pub fn tracks(quota: &Value, info: &ResourceInfo, object: &Value) -> bool {
    let requirements = scope_requirements(&quota["spec"]);
    if requirements.is_empty() {
        return true;
    }
    if !(info.group.is_empty() && info.plural == "pods") {
        return false;
    }
    requirements.iter().all(|req| pod_in_scope(object, req))
}

/// `podMatchesScopeFunc`: the pod scopes ignore the operator (validation allows only `Exists`);
/// `PriorityClass` matches the pod's class name as the label `PriorityClass` of a set that holds
/// it only when the pod names one, so `NotIn` and `DoesNotExist` select pods without a class.
fn pod_in_scope(pod: &Value, req: &ScopeRequirement<'_>) -> bool {
    let spec = &pod["spec"];
    let terminating = spec["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|d| d >= 0);
    let best_effort = ["containers", "initContainers"].iter().all(|key| {
        spec[*key].as_array().into_iter().flatten().all(|c| {
            ["requests", "limits"].iter().all(|l| {
                c["resources"][*l]
                    .as_object()
                    .is_none_or(|m| !m.contains_key("cpu") && !m.contains_key("memory"))
            })
        })
    });
    let class = spec["priorityClassName"].as_str().filter(|c| !c.is_empty());
    match req.scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
        "PriorityClass" => match req.operator {
            "Exists" => class.is_some(),
            "DoesNotExist" => class.is_none(),
            "In" => class.is_some_and(|c| req.values.contains(&c)),
            "NotIn" => class.is_none_or(|c| !req.values.contains(&c)),
            _ => false,
        },
        _ => false,
    }
}

/// `usesCrossNamespacePodAffinity`: a pod (anti-)affinity term, required or preferred, that
/// names namespaces or has a namespace selector.
fn cross_namespace_affinity(spec: &Value) -> bool {
    let crosses = |term: &Value| {
        term["namespaces"].as_array().is_some_and(|n| !n.is_empty())
            || !term["namespaceSelector"].is_null()
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let affinity = &spec["affinity"][*kind];
        let list = |key: &str| affinity[key].as_array().into_iter().flatten();
        list("requiredDuringSchedulingIgnoredDuringExecution").any(crosses)
            || list("preferredDuringSchedulingIgnoredDuringExecution")
                .any(|weighted| crosses(&weighted["podAffinityTerm"]))
    })
}

/// `validateResourceQuotaScopes` and `validateScopeSelector`, and on update of `old` the
/// immutable scopes (`ValidateResourceQuotaUpdate`).
#[must_use]
pub fn validate_scopes(object: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let spec = &object["spec"];
    let mut errs = Vec::new();
    let hard: Vec<&str> = spec["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    let scopes = texts(&spec["scopes"]);
    // Go prints a nil slice (no `scopes` in the body) as `(nil)`.
    let go_scopes = if spec["scopes"].is_array() {
        format!(
            "[]core.ResourceQuotaScope{{{}}}",
            scopes
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "[]core.ResourceQuotaScope(nil)".to_owned()
    };
    let conflicting = |set: &[&str]| {
        [
            ["BestEffort", "NotBestEffort"],
            ["Terminating", "NotTerminating"],
        ]
        .iter()
        .filter(|pair| pair.iter().all(|s| set.contains(s)))
        .count()
    };
    for scope in &scopes {
        if !SCOPES.contains(scope) {
            errs.push(FieldCause::invalid_printed(
                "spec.scopes",
                &go_scopes,
                "unsupported scope",
            ));
        }
        for resource in &hard {
            if !scope_valid_for(scope, resource) {
                errs.push(FieldCause::invalid_printed(
                    "spec.scopes",
                    &go_scopes,
                    "unsupported scope applied to resource",
                ));
            }
        }
    }
    for _ in 0..conflicting(&scopes) {
        errs.push(FieldCause::invalid_printed(
            "spec.scopes",
            &go_scopes,
            "conflicting scopes",
        ));
    }
    if !spec["scopeSelector"].is_null() {
        let path = "spec.scopeSelector.matchExpressions";
        let requirements: Vec<ScopeRequirement<'_>> = scope_requirements(spec)
            .into_iter()
            .skip(scopes.len())
            .collect();
        let go_selector = go_scope_selector(&requirements);
        for req in &requirements {
            if !SCOPES.contains(&req.scope) {
                errs.push(FieldCause::invalid(
                    &format!("{path}.scopeName"),
                    req.scope,
                    "unsupported scope",
                ));
            }
            for resource in &hard {
                if !scope_valid_for(req.scope, resource) {
                    errs.push(FieldCause::invalid_printed(
                        path,
                        &go_selector,
                        "unsupported scope applied to resource",
                    ));
                }
            }
            if req.scope != "PriorityClass"
                && SCOPES.contains(&req.scope)
                && req.operator != "Exists"
            {
                errs.push(FieldCause::invalid(
                    &format!("{path}.operator"),
                    req.operator,
                    "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, \
                     ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, \
                     ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                ));
            }
            match req.operator {
                "In" | "NotIn" if req.values.is_empty() => errs.push(FieldCause::required(
                    &format!("{path}.values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope \
                     selector",
                )),
                "Exists" | "DoesNotExist" if !req.values.is_empty() => {
                    errs.push(FieldCause::invalid_printed(
                        &format!("{path}.values"),
                        &go_strings(&req.values),
                        "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope \
                         selector",
                    ));
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errs.push(FieldCause::invalid(
                    &format!("{path}.operator"),
                    other,
                    "not a valid selector operator",
                )),
            }
        }
        let names: Vec<&str> = requirements.iter().map(|r| r.scope).collect();
        for _ in 0..conflicting(&names) {
            errs.push(FieldCause::invalid_printed(
                path,
                &go_scopes,
                "conflicting scopes",
            ));
        }
    }
    if let Some(old) = old {
        let set = |v: &Value| -> std::collections::BTreeSet<String> {
            texts(v).into_iter().map(str::to_owned).collect()
        };
        if set(&old["spec"]["scopes"]) != set(&spec["scopes"]) {
            errs.push(FieldCause::invalid_printed(
                "spec.scopes",
                &go_scopes,
                "field is immutable",
            ));
        }
    }
    errs
}

/// `IsResourceQuotaScopeValidForResource`, for the standard quota resources: the pod scopes
/// apply to the pod count and compute resources, `BestEffort` to the pod count alone.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    const POD_COMPUTE: [&str; 6] = [
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    let standard = STANDARD.contains(&resource) && !resource.contains('/') && resource != "storage";
    if !standard {
        return true;
    }
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => resource == "pods" || POD_COMPUTE.contains(&resource),
        "BestEffort" => resource == "pods",
        _ => true,
    }
}

/// A string slice as Go's `%#v` prints it in a field error.
fn go_strings(values: &[&str]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// A scope selector as Go's `%#v` prints the internal `core.ScopeSelector`.
fn go_scope_selector(requirements: &[ScopeRequirement<'_>]) -> String {
    let items: Vec<String> = requirements
        .iter()
        .map(|r| {
            format!(
                "core.ScopedResourceSelectorRequirement{{ScopeName:{:?}, Operator:{:?}, Values:{}}}",
                r.scope,
                r.operator,
                go_strings(&r.values)
            )
        })
        .collect();
    format!(
        "core.ScopeSelector{{MatchExpressions:[]core.ScopedResourceSelectorRequirement{{{}}}}}",
        items.join(", ")
    )
}

/// Whether the kind's quota evaluator charges updates as well as creates (`Handles`): Services
/// (a type that takes node ports or a load balancer) and claims (a larger request); a Pod's
/// resources cannot change in place here, and object counts only change on create.
#[must_use]
pub fn charges_updates(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.plural.as_str(), "services" | "persistentvolumeclaims")
}

/// The `ResourceQuota` plugin on `object` of `info` being created in `namespace`, or, when it
/// replaces `old`, on what it uses beyond `old` (`SubtractWithNonNegativeResult`).
///
/// # Errors
/// [`QuotaError`] when a quota the object is tracked by would be exceeded, or a Pod names none
/// of a tracked compute resource, or the quota's usage is not known yet.
pub fn admit(
    inner: &Inner,
    info: &ResourceInfo,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), QuotaError> {
    plan(inner, info, namespace, object, old).map(drop)
}

/// Charges the quotas of `namespace` with what the stored `object` of `info` uses, as the
/// admission plugin does once it lets a create through (`Status.Used` raised at once, so that
/// creates between two passes of the resource quota controller cannot pass a limit together).
///
/// # Errors
/// [`QuotaError`] as [`admit`] (the object was admitted under the same lock, so none is
/// expected); [`crate::error::ApiError`] when a quota cannot be written.
pub fn charge_admitted(
    inner: &mut Inner,
    info: &ResourceInfo,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), crate::error::ApiError> {
    let charges = plan(inner, info, namespace, object, old).map_err(|e| {
        crate::error::ApiError::Internal(format!("charging the quota after admission: {e}"))
    })?;
    if charges.is_empty() {
        return Ok(());
    }
    let Some(quota_info) = inner.info(RESOURCE_QUOTAS) else {
        return Ok(());
    };
    for (name, quota) in charges {
        inner.put(&quota_info, (namespace.to_owned(), name), quota)?;
    }
    Ok(())
}

/// The quotas `object` would change, each with its new `status.used`, or why it is refused; an
/// update of `old` is charged what it adds.
fn plan(
    inner: &Inner,
    info: &ResourceInfo,
    namespace: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<Vec<(String, Value)>, QuotaError> {
    let mut charges = Vec::new();
    if old.is_some() && !charges_updates(info) {
        return Ok(charges);
    }
    let mut quotas = inner
        .store
        .list(RESOURCE_QUOTAS, Some(namespace), None)
        .peekable();
    if quotas.peek().is_none() {
        return Ok(charges);
    }
    let mut charged = usage(info, object);
    if let Some(old) = old {
        let before = usage(info, old);
        charged.retain(|resource, (amount, _)| {
            let was = before.get(resource).map_or(0, |(q, _)| q.nanos());
            *amount = Quantity::from_nanos((amount.nanos() - was).max(0));
            amount.nanos() > 0
        });
    }
    for (_, quota) in quotas {
        let hard = quota["status"]["hard"].as_object();
        let Some(hard) = hard.filter(|h| !h.is_empty()) else {
            continue;
        };
        if !tracks(quota, info, object) {
            continue;
        }
        let name = quota["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pod = info.group.is_empty() && info.plural == "pods";
        let tracked: Vec<&str> = hard
            .keys()
            .map(String::as_str)
            .filter(|r| charged.contains_key(*r) || (pod && REQUIRED.contains(r)))
            .collect();
        if tracked.is_empty() {
            continue;
        }
        if pod {
            missing_compute(&name, object, &tracked)?;
        }
        let used = &quota["status"]["used"];
        if tracked.iter().any(|r| used[*r].is_null()) {
            return Err(QuotaError::StatusUnknown {
                quota: name,
                resources: tracked.join(","),
            });
        }
        let mut exceeded: Vec<&str> = Vec::new();
        for resource in &tracked {
            let Some((amount, _)) = charged.get(*resource).filter(|(q, _)| q.nanos() != 0) else {
                continue;
            };
            let parse = |v: &Value| v.as_str().and_then(|t| Quantity::parse(t).ok());
            let (Some(limit), now) = (parse(&hard[*resource]), parse(&used[*resource])) else {
                continue;
            };
            let after = now.map_or(0, Quantity::nanos) + amount.nanos();
            if after > limit.nanos() {
                exceeded.push(resource);
            }
        }
        if !exceeded.is_empty() {
            let list = |f: &dyn Fn(&str) -> String| {
                exceeded
                    .iter()
                    .map(|r| format!("{r}={}", f(r)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let text = |v: &Value| {
                let t = v.as_str().unwrap_or("0");
                Quantity::parse(t).map_or_else(|_| t.to_owned(), |q| q.canonical(Format::of(t)))
            };
            return Err(QuotaError::Exceeded {
                quota: name,
                requested: list(&|r| charged[r].0.canonical(charged[r].1)),
                used: list(&|r| text(&used[r])),
                limited: list(&|r| text(&hard[r])),
            });
        }
        // The new usage, each resource in the format its first non-zero amount had.
        let mut raised = (**quota).clone();
        let mut changed = false;
        for resource in &tracked {
            let Some((amount, format)) = charged.get(*resource).filter(|(q, _)| q.nanos() != 0)
            else {
                continue;
            };
            let before = used[*resource].as_str().unwrap_or("0");
            let Ok(now) = Quantity::parse(before) else {
                continue;
            };
            let mut total = (now, Format::of(before));
            crate::quantity::add(&mut total, *amount, *format);
            raised["status"]["used"][*resource] = serde_json::json!(total.0.canonical(total.1));
            changed = true;
        }
        if changed {
            charges.push((name, raised));
        }
    }
    Ok(charges)
}

/// `podEvaluator.Constraints`: each compute resource the quota tracks, named by every container.
fn missing_compute(quota: &str, pod: &Value, tracked: &[&str]) -> Result<(), QuotaError> {
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for key in ["containers", "initContainers"] {
        for container in pod["spec"][key].as_array().into_iter().flatten() {
            let resources = &container["resources"];
            let has = |list: &str, resource: &str| !resources[list][resource].is_null();
            for required in tracked.iter().copied().filter(|r| REQUIRED.contains(r)) {
                let named = match required.split_once('.') {
                    Some(("limits", resource)) => has("limits", resource),
                    Some((_, resource)) => has("requests", resource),
                    None => has("requests", required),
                };
                if !named {
                    missing
                        .entry(required)
                        .or_default()
                        .push(container["name"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(resource, mut names)| {
            names.sort();
            names.dedup();
            format!("{resource} for: {}", names.join(","))
        })
        .collect();
    Err(QuotaError::Unspecified {
        quota: quota.to_owned(),
        missing: parts.join("; "),
    })
}

/// A quota's status as the resource quota controller writes it: `hard` its spec's, `used` each
/// hard resource's sum over `objects` (those it tracks), zero when nothing is charged.
#[must_use]
pub fn status(quota: &Value, objects: &[(&ResourceInfo, &Value)]) -> Value {
    let hard = quota["spec"]["hard"].clone();
    let mut total = Usage::new();
    for (info, object) in objects {
        if !tracks(quota, info, object) {
            continue;
        }
        for (resource, (amount, format)) in usage(info, object) {
            let entry = total
                .entry(resource)
                .or_insert((Quantity::from_nanos(0), format));
            crate::quantity::add(entry, amount, format);
        }
    }
    let mut used = serde_json::Map::new();
    for resource in hard.as_object().into_iter().flatten().map(|(r, _)| r) {
        let value = total
            .get(resource)
            .map_or_else(|| "0".to_owned(), |(q, f)| q.canonical(*f));
        used.insert(resource.clone(), json!(value));
    }
    json!({"hard": hard, "used": used})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;

    fn info(plural: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::default().lookup("", "v1", plural).unwrap()
    }

    fn pod(name: &str, cpu: Option<&str>) -> Value {
        let resources = cpu.map_or(
            json!({}),
            |c| json!({"requests": {"cpu": c}, "limits": {"cpu": c}}),
        );
        json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "resources": resources}]}})
    }

    #[test]
    fn usage_follows_the_evaluators_and_is_written_as_kubernetes_writes_it() {
        let quota = json!({"spec": {"hard": {"pods": "3", "requests.cpu": "1", "limits.cpu": "2",
            "count/pods": "5", "configmaps": "2"}}});
        let pods = info("pods");
        let (a, b) = (pod("a", Some("250m")), pod("b", Some("250m")));
        let objects = [(&*pods, &a), (&*pods, &b)];
        assert_eq!(
            status(&quota, &objects)["used"],
            json!({"pods": "2", "requests.cpu": "500m", "limits.cpu": "500m", "count/pods": "2",
                "configmaps": "0"})
        );
    }

    #[test]
    fn a_pod_past_the_quota_or_without_what_it_tracks_is_refused() {
        let cluster = crate::cluster::Cluster::open(None, 10_000).unwrap();
        let quotas = info("resourcequotas");
        let pods = info("pods");
        let set_used = |used: &str| {
            let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "q", "namespace": "default"},
                "spec": {"hard": {"requests.cpu": "1"}},
                "status": {"hard": {"requests.cpu": "1"}, "used": {"requests.cpu": used}}});
            cluster
                .lock()
                .put(&quotas, ("default".into(), "q".into()), quota)
                .unwrap();
        };
        let (a, b) = (pod("a", Some("750m")), pod("b", None));
        set_used("0");
        assert_eq!(admit(&cluster.lock(), &pods, "default", &a, None), Ok(()));
        set_used("500m");
        assert_eq!(
            admit(&cluster.lock(), &pods, "default", &a, None)
                .unwrap_err()
                .to_string(),
            "exceeded quota: q, requested: requests.cpu=750m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        set_used("0");
        assert_eq!(
            admit(&cluster.lock(), &pods, "default", &b, None)
                .unwrap_err()
                .to_string(),
            "failed quota: q: must specify requests.cpu for: app"
        );
        // Another namespace's quota does not apply.
        assert_eq!(admit(&cluster.lock(), &pods, "other", &b, None), Ok(()));
    }

    #[test]
    fn a_create_charges_the_quota_at_once() {
        use crate::verbs::{Target, WriteOptions};
        let cluster = crate::cluster::Cluster::open(None, 10_000).unwrap();
        let quotas = info("resourcequotas");
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q", "namespace": "default"},
            "spec": {"hard": {"pods": "1", "requests.cpu": "1"}},
            "status": {"hard": {"pods": "1", "requests.cpu": "1"},
                "used": {"pods": "0", "requests.cpu": "0"}}});
        cluster
            .lock()
            .put(&quotas, ("default".into(), "q".into()), quota)
            .unwrap();
        let target = Target {
            info: info("pods"),
            namespace: Some("default".into()),
            name: None,
            subresource: None,
        };
        let create = |name: &str| {
            let mut p = pod(name, Some("250m"));
            p["apiVersion"] = json!("v1");
            p["kind"] = json!("Pod");
            p["spec"]["containers"][0]["image"] = json!("nginx");
            cluster.create(&target, p, &WriteOptions::default())
        };
        create("a").unwrap();
        // No controller ran: the admission plugin charged the quota itself.
        let stored = cluster
            .lock()
            .store
            .get(RESOURCE_QUOTAS, &("default".into(), "q".into()))
            .cloned()
            .unwrap();
        assert_eq!(
            stored["status"]["used"],
            json!({"pods": "1", "requests.cpu": "250m"})
        );
        let refused = create("b").unwrap_err().to_string();
        assert!(
            refused.contains("exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"),
            "{refused}"
        );
    }

    #[test]
    fn scope_selectors_select_pods_as_the_pod_evaluator_does() {
        let pods = info("pods");
        let quota = |req: Value| json!({"spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [req]}}});
        let classed = json!({"spec": {"priorityClassName": "high", "containers": []}});
        let classless = json!({"spec": {"containers": []}});
        let selects = |req: Value, pod: &Value| tracks(&quota(req), &pods, pod);
        let class = |operator: &str, values: Value| json!({"scopeName": "PriorityClass", "operator": operator, "values": values});
        assert!(selects(class("In", json!(["high"])), &classed));
        assert!(!selects(class("In", json!(["high"])), &classless));
        assert!(!selects(class("NotIn", json!(["high"])), &classed));
        assert!(selects(class("NotIn", json!(["high"])), &classless));
        assert!(selects(class("Exists", json!([])), &classed));
        assert!(!selects(class("Exists", json!([])), &classless));
        assert!(selects(class("DoesNotExist", json!([])), &classless));
        // Every requirement must hold, scopes included; other kinds are never scoped.
        let both = json!({"spec": {"hard": {"pods": "1"}, "scopes": ["Terminating"],
            "scopeSelector": {"matchExpressions": [class("In", json!(["high"]))]}}});
        assert!(!tracks(&both, &pods, &classed));
        let deadline = json!({"spec": {"priorityClassName": "high", "activeDeadlineSeconds": 5, "containers": []}});
        assert!(tracks(&both, &pods, &deadline));
        assert!(!tracks(
            &quota(class("In", json!(["high"]))),
            &info("configmaps"),
            &classed
        ));
        // CrossNamespacePodAffinity: a term naming namespaces or with a namespace selector.
        let cross = json!({"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"});
        let affine = |term: Value| {
            json!({"spec": {"affinity": {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": term}]}}}})
        };
        assert!(selects(
            cross.clone(),
            &affine(json!({"topologyKey": "k", "namespaceSelector": {}}))
        ));
        assert!(selects(
            cross.clone(),
            &affine(json!({"topologyKey": "k", "namespaces": ["other"]}))
        ));
        assert!(!selects(cross, &affine(json!({"topologyKey": "k"}))));
    }

    #[test]
    fn scopes_are_validated_and_never_change() {
        let messages = |spec: Value, old: Option<Value>| -> Vec<String> {
            validate_scopes(
                &json!({"spec": spec}),
                old.map(|s| json!({"spec": s})).as_ref(),
            )
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
        };
        assert_eq!(
            messages(
                json!({"hard": {"pods": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}),
                None
            ),
            [
                "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: conflicting scopes"
            ]
        );
        assert_eq!(
            messages(
                json!({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In"},
                {"scopeName": "PriorityClass", "operator": "Exists", "values": ["a"]},
                {"scopeName": "Nightly", "operator": "Like"}]}}),
                None
            ),
            [
                "spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                "spec.scopeSelector.matchExpressions.values: Invalid value: []string{\"a\"}: must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                "spec.scopeSelector.matchExpressions.scopeName: Invalid value: \"Nightly\": unsupported scope",
                "spec.scopeSelector.matchExpressions.operator: Invalid value: \"Like\": not a valid selector operator",
            ]
        );
        assert_eq!(
            messages(
                json!({"hard": {"pods": "1"}}),
                Some(json!({"hard": {"pods": "1"}, "scopes": ["Terminating"]}))
            ),
            ["spec.scopes: Invalid value: []core.ResourceQuotaScope(nil): field is immutable"]
        );
    }
}
