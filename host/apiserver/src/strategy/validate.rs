//! Validation of built-in kinds, after Kubernetes' `pkg/apis/{apps,core}/validation`: the rules a
//! kubectl user or a controller meets first (workload specs and statuses, pod templates, Service
//! ports, ConfigMap and Secret keys and sizes), with apimachinery's field paths and messages.

use std::collections::{BTreeSet, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Map, Value, json};

use crate::error::FieldCause;
use crate::selector::Selector;
use crate::validation;

/// `MaxSecretSize`: the most data a ConfigMap or Secret holds (1 MiB).
const MAX_DATA_BYTES: usize = 1024 * 1024;

/// What a write changes, as the registry strategy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A create, or an update of the main resource.
    Object,
    /// A write of the status subresource.
    Status,
    /// A pod's node, written by `pods/binding` (which checks what it writes itself).
    Binding,
    /// A CertificateSigningRequest's approval conditions, written by its `/approval`.
    Approval,
}

/// The field errors of `object` of `group`/`kind` (`old` for an update).
pub(super) fn check(
    group: &str,
    kind: &str,
    old: Option<&Value>,
    object: &Value,
    change: Change,
) -> Vec<FieldCause> {
    let mut errs = Vec::new();
    match (group, kind, change) {
        ("apps", "Deployment", Change::Object) => {
            workload(object, old, &mut errs);
            deployment_strategy(&object["spec"], &mut errs);
            deployment_timing(&object["spec"], &mut errs);
        }
        ("apps", "Deployment" | "ReplicaSet", Change::Status) => {
            replica_status(&object["status"], kind == "ReplicaSet", &mut errs);
        }
        ("apps", "ReplicaSet", Change::Object) => workload(object, old, &mut errs),
        ("apps", "StatefulSet", Change::Object) => workload(object, old, &mut errs),
        ("apps", "DaemonSet", Change::Object) => daemon_set(object, old, &mut errs),
        ("apps", "DaemonSet", Change::Status) => daemon_set_status(object, old, &mut errs),
        ("batch", "Job", Change::Object) => job(object, old, &mut errs),
        ("batch", "CronJob", Change::Object) => cron_job(object, old, &mut errs),
        // `ValidateControllerRevisionCreate` / `ValidateControllerRevisionUpdate`.
        ("apps", "ControllerRevision", Change::Object) => {
            nonnegative(&object["revision"], "revision", &mut errs);
            if object.get("data").is_none_or(Value::is_null) {
                errs.push(FieldCause::required("data", "data is mandatory"));
            }
            if let Some(old) = old
                && old["data"] != object["data"]
            {
                errs.push(FieldCause::invalid_value(
                    "data",
                    &object["data"],
                    "field is immutable",
                ));
            }
        }
        ("batch", "Job", Change::Status) => {
            for key in ["active", "succeeded", "failed"] {
                nonnegative(&object["status"][key], &format!("status.{key}"), &mut errs);
            }
        }
        ("", "Pod", Change::Object) => {
            pod_spec(&object["spec"], "spec", &mut errs);
            let restart = &object["spec"]["restartPolicy"];
            if !["Always", "OnFailure", "Never"]
                .iter()
                .any(|p| restart == p)
            {
                errs.push(FieldCause::not_supported(
                    "spec.restartPolicy",
                    restart,
                    &["Always", "OnFailure", "Never"],
                ));
            }
            if let Some(old) = old {
                pod_update(&old["spec"], &object["spec"], &mut errs);
            }
        }
        ("", "Service", Change::Object) => service(object, old, &mut errs),
        ("", "ReplicationController", Change::Object) => replication_controller(object, &mut errs),
        ("", "ReplicationController", Change::Status) => {
            replica_status(&object["status"], true, &mut errs);
        }
        // `ValidatePodTemplate`: the template's pod spec.
        ("", "PodTemplate", Change::Object) => {
            pod_spec(&object["template"]["spec"], "template.spec", &mut errs);
        }
        ("policy", "PodDisruptionBudget", Change::Object) => {
            disruption_budget(&object["spec"], &mut errs);
        }
        ("policy", "PodDisruptionBudget", Change::Status) => {
            for key in [
                "disruptionsAllowed",
                "currentHealthy",
                "desiredHealthy",
                "expectedPods",
            ] {
                nonnegative(&object["status"][key], &format!("status.{key}"), &mut errs);
            }
        }
        // `ValidateEndpointSlice`: an address type, and one that never changes.
        ("discovery.k8s.io", "EndpointSlice", Change::Object) => {
            const TYPES: [&str; 3] = ["IPv4", "IPv6", "FQDN"];
            let address_type = &object["addressType"];
            if address_type.is_null() {
                errs.push(FieldCause::required("addressType", ""));
            } else if !TYPES.iter().any(|t| address_type == t) {
                errs.push(FieldCause::not_supported(
                    "addressType",
                    address_type,
                    &TYPES,
                ));
            } else if let Some(old) = old
                && old["addressType"] != *address_type
            {
                errs.push(FieldCause::invalid_value(
                    "addressType",
                    address_type,
                    "field is immutable",
                ));
            }
        }
        ("networking.k8s.io", kind, change) => {
            super::networking::check(kind, old, object, change, &mut errs);
        }
        ("", "ConfigMap", Change::Object) => data(object, old, "binaryData", &mut errs),
        ("", "Secret", Change::Object) => {
            data(object, old, "stringData", &mut errs);
            if let Some(old) = old
                && old["type"] != object["type"]
            {
                errs.push(FieldCause::invalid_value(
                    "type",
                    &object["type"],
                    "field is immutable",
                ));
            }
        }
        _ => {}
    }
    errs
}

/// `ValidateCronJobCreate` / `ValidateCronJobUpdate`: a schedule robfig/cron parses (no `TZ`
/// in it), a time zone of IANA's shape that this machine knows, a concurrency policy, counts not
/// negative, a Job template whose Pods end (`OnFailure` or `Never`) and whose selector is left to
/// the server; a new CronJob's name leaves room for the Jobs' suffix (52 characters).
fn cron_job(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    let schedule = spec["schedule"].as_str().unwrap_or_default();
    if schedule.is_empty() {
        errs.push(FieldCause::required("spec.schedule", ""));
    } else {
        if let Err(e) = schedule.parse::<crate::cron::Schedule>() {
            errs.push(FieldCause::invalid("spec.schedule", schedule, e));
        }
        let allow_tz = old.is_some_and(|o| {
            o["spec"]["schedule"]
                .as_str()
                .is_some_and(|s| s.contains("TZ"))
        });
        if schedule.contains("TZ") {
            let detail = if !allow_tz {
                Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
            } else if !spec["timeZone"].is_null() {
                Some("cannot use both timeZone field and TZ or CRON_TZ in schedule")
            } else {
                None
            };
            if let Some(detail) = detail {
                errs.push(FieldCause::invalid("spec.schedule", schedule, detail));
            }
        }
    }
    nonnegative(
        &spec["startingDeadlineSeconds"],
        "spec.startingDeadlineSeconds",
        errs,
    );
    let zone_changed = old.is_none_or(|o| o["spec"]["timeZone"] != spec["timeZone"]);
    if zone_changed && let Some(zone) = spec["timeZone"].as_str() {
        cron_time_zone(zone, errs);
    }
    let policy = &spec["concurrencyPolicy"];
    match policy.as_str() {
        Some("Allow" | "Forbid" | "Replace") => {}
        None | Some("") => errs.push(FieldCause::required("spec.concurrencyPolicy", "")),
        Some(_) => errs.push(FieldCause::not_supported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative(&spec[key], &format!("spec.{key}"), errs);
    }
    // `ValidateJobTemplateSpec`.
    let job_spec = &spec["jobTemplate"]["spec"];
    let path = "spec.jobTemplate.spec";
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
    ] {
        nonnegative(&job_spec[key], &format!("{path}.{key}"), errs);
    }
    let pod = &job_spec["template"]["spec"];
    pod_spec(pod, &format!("{path}.template.spec"), errs);
    let restart = &pod["restartPolicy"];
    if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldCause::not_supported(
            &format!("{path}.template.spec.restartPolicy"),
            restart,
            &["OnFailure", "Never"],
        ));
    }
    if !job_spec["selector"].is_null() {
        errs.push(FieldCause::invalid_value(
            &format!("{path}.selector"),
            &job_spec["selector"],
            "`selector` will be auto-generated",
        ));
    }
    if job_spec["manualSelector"] == true {
        errs.push(FieldCause::not_supported(
            &format!("{path}.manualSelector"),
            &job_spec["manualSelector"],
            &["nil", "false"],
        ));
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if old.is_none() && name.len() > 52 {
        errs.push(FieldCause::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
}

/// `validateTimeZone`: IANA's naming rules, not `Local`, and a zone this machine's time zone
/// database has (Go's `time.LoadLocation`, as kube-apiserver reads it).
fn cron_time_zone(zone: &str, errs: &mut Vec<FieldCause>) {
    let field = "spec.timeZone";
    if zone.is_empty() {
        errs.push(FieldCause::invalid(
            field,
            zone,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |part: &str| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-_+".contains(&c))
    };
    if !zone.split('/').all(part_ok) {
        errs.push(FieldCause::invalid(
            field,
            zone,
            format!("unknown time zone {zone}"),
        ));
        return;
    }
    if zone.eq_ignore_ascii_case("Local") {
        errs.push(FieldCause::invalid(
            field,
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if zone != "UTC" && jiff::tz::TimeZone::get(zone).is_err() {
        errs.push(FieldCause::invalid(
            field,
            zone,
            format!("unknown time zone {zone}"),
        ));
    }
}

/// What `ValidatePodUpdate` lets an update of a pod's spec change.
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: an update of a pod's spec may change its images, shorten (or set) its
/// active deadline, add tolerations, remove scheduling gates and set a negative grace period to
/// 1; anything else is forbidden. The message ends with the fields that differ, where
/// kube-apiserver prints a Go diff of the two specs.
fn pod_update(old: &Value, new: &Value, errs: &mut Vec<FieldCause>) {
    let len = |spec: &Value, list: &str| spec[list].as_array().map_or(0, Vec::len);
    for list in ["containers", "initContainers"] {
        if len(new, list) != len(old, list) {
            errs.push(FieldCause::forbidden(
                &format!("spec.{list}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    let deadline = "spec.activeDeadlineSeconds";
    match (
        new["activeDeadlineSeconds"].as_i64(),
        old["activeDeadlineSeconds"].as_i64(),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldCause::invalid_value(
                deadline,
                &json!(n),
                "must be between 0 and 2147483647, inclusive",
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldCause::invalid_value(
                deadline,
                &json!(n),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(FieldCause::invalid_value(
            deadline,
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    // `validateOnlyAddedTolerations`: an existing toleration stays, but for its seconds.
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let kept: Vec<Value> = list(new, "tolerations").map(without_seconds).collect();
    if list(old, "tolerations").any(|t| !kept.contains(&without_seconds(t))) {
        errs.push(FieldCause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    // `validateOnlyDeletedSchedulingGates`.
    let gates: Vec<&Value> = list(old, "schedulingGates").collect();
    if let Some(added) = list(new, "schedulingGates").find(|g| !gates.contains(g)) {
        errs.push(FieldCause::forbidden(
            "spec.schedulingGates",
            &format!(
                "only deletion is allowed, but found new scheduling gate '{}'",
                added["name"].as_str().unwrap_or_default()
            ),
        ));
    }
    let mut munged = new.clone();
    for list in ["containers", "initContainers"] {
        if let Some(items) = munged[list].as_array_mut() {
            for (i, c) in items.iter_mut().enumerate() {
                c["image"] = old[list][i]["image"].clone();
            }
        }
    }
    for field in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
        munged[field] = old[field].clone();
    }
    if old["terminationGracePeriodSeconds"]
        .as_i64()
        .is_some_and(|s| s < 0)
        && munged["terminationGracePeriodSeconds"] == 1
    {
        munged["terminationGracePeriodSeconds"] = old["terminationGracePeriodSeconds"].clone();
    }
    let mut changed = Vec::new();
    differing("spec", old, &munged, &mut changed);
    if !changed.is_empty() {
        errs.push(FieldCause::forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\nchanged: {}",
                changed.join(", ")
            ),
        ));
    }
}

/// The elements of the list `field` of `spec` (none when absent or not a list).
fn list<'a>(spec: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    spec[field].as_array().into_iter().flatten()
}

/// Whether a value is what Go's semantic equality takes for unset: null, an empty list or map.
fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The paths under `path` where `a` and `b` differ, an unset value equal to an absent one
/// (`apiequality.Semantic.DeepEqual`).
fn differing(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differing(&format!("{path}.{k}"), u, v, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differing(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if unset(a) && unset(b) => {}
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

/// `ValidateNonnegativeField`.
fn nonnegative(value: &Value, field: &str, errs: &mut Vec<FieldCause>) {
    if value.as_i64().is_some_and(|v| v < 0) {
        errs.push(FieldCause::invalid_value(
            field,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// A Deployment's, ReplicaSet's or StatefulSet's spec: replicas, selector, pod template.
fn workload(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    nonnegative(&spec["replicas"], "spec.replicas", errs);
    nonnegative(&spec["minReadySeconds"], "spec.minReadySeconds", errs);
    let selector = &spec["selector"];
    let labels = &spec["template"]["metadata"]["labels"];
    if selector.is_null() {
        errs.push(FieldCause::required("spec.selector", ""));
    } else {
        let empty = selector["matchLabels"]
            .as_object()
            .is_none_or(Map::is_empty)
            && selector["matchExpressions"]
                .as_array()
                .is_none_or(Vec::is_empty);
        label_selector(selector, "spec.selector", errs);
        if empty {
            errs.push(FieldCause::invalid_value(
                "spec.selector",
                selector,
                "empty selector is invalid for deployment",
            ));
        } else {
            match parse_label_selector(selector) {
                Ok(sel) => {
                    if !sel.matches_labels(&spec["template"]) {
                        errs.push(FieldCause::invalid_value(
                            "spec.template.metadata.labels",
                            labels,
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                Err(_) => errs.push(FieldCause::invalid_value(
                    "spec.selector",
                    selector,
                    "invalid label selector",
                )),
            }
        }
        if let Some(old) = old
            && !old["spec"]["selector"].is_null()
            && old["spec"]["selector"] != *selector
        {
            errs.push(FieldCause::invalid_value(
                "spec.selector",
                selector,
                "field is immutable",
            ));
        }
    }
    let template = &spec["template"];
    if template.is_null() {
        errs.push(FieldCause::required("spec.template", ""));
        return;
    }
    controller_template(template, "ReplicaSet", errs);
}

/// The pod template of a controller that keeps its Pods running (`ValidatePodTemplateSpecFor*`):
/// the pod spec, restart policy `Always`, no active deadline (`kind` in that refusal's message).
fn controller_template(template: &Value, kind: &str, errs: &mut Vec<FieldCause>) {
    pod_spec(&template["spec"], "spec.template.spec", errs);
    let restart = &template["spec"]["restartPolicy"];
    if *restart != "Always" {
        errs.push(FieldCause::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["Always"],
        ));
    }
    if !template["spec"]["activeDeadlineSeconds"].is_null() {
        errs.push(FieldCause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// `ValidateReplicationControllerSpec`: the counts at least zero, a selector (a map of labels) the
/// template's labels match, the template's pod spec with restart policy `Always` and no active
/// deadline (`ValidatePodTemplateSpecForRC`).
fn replication_controller(object: &Value, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    nonnegative(&spec["minReadySeconds"], "spec.minReadySeconds", errs);
    let selector = spec["selector"].as_object().filter(|s| !s.is_empty());
    if selector.is_none() {
        errs.push(FieldCause::required("spec.selector", ""));
    }
    nonnegative(&spec["replicas"], "spec.replicas", errs);
    let template = &spec["template"];
    if template.is_null() {
        errs.push(FieldCause::required("spec.template", ""));
        return;
    }
    let labels = &template["metadata"]["labels"];
    if let Some(selector) = selector
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        errs.push(FieldCause::invalid_value(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        ));
    }
    controller_template(template, "ReplicationController", errs);
}

/// `ValidateDaemonSetSpec` and, on update, the immutable selector: the selector (a missing one
/// selects nothing, so the template's labels do not match it; an empty one is refused), the pod
/// template (restart policy `Always`, no active deadline), the update strategy and the counts.
fn daemon_set(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    let selector = &spec["selector"];
    let template = &spec["template"];
    let labels = &template["metadata"]["labels"];
    label_selector(selector, "spec.selector", errs);
    match parse_label_selector(selector) {
        _ if selector.is_null() => errs.push(FieldCause::invalid_value(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        )),
        Ok(sel) => {
            if !sel.matches_labels(template) {
                errs.push(FieldCause::invalid_value(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                ));
            }
            if sel.is_empty() {
                errs.push(FieldCause::invalid_value(
                    "spec.selector",
                    selector,
                    "empty selector is invalid for daemonset",
                ));
            }
        }
        // `LabelSelectorAsSelector` failed: what `label_selector` reported says why.
        Err(_) => {}
    }
    controller_template(template, "DaemonSet", errs);
    nonnegative(&spec["minReadySeconds"], "spec.minReadySeconds", errs);
    nonnegative(
        &spec["revisionHistoryLimit"],
        "spec.revisionHistoryLimit",
        errs,
    );
    daemon_set_update_strategy(&spec["updateStrategy"], errs);
    if let Some(old) = old
        && old["spec"]["selector"] != *selector
    {
        errs.push(FieldCause::invalid_value(
            "spec.selector",
            selector,
            "field is immutable",
        ));
    }
}

/// `ValidateDaemonSetUpdateStrategy` and `ValidateRollingUpdateDaemonSet`: `OnDelete`, or
/// `RollingUpdate` with exactly one of `maxUnavailable` and `maxSurge` above zero.
fn daemon_set_update_strategy(strategy: &Value, errs: &mut Vec<FieldCause>) {
    const PATH: &str = "spec.updateStrategy.rollingUpdate";
    match strategy["type"].as_str() {
        Some("OnDelete") => {}
        Some("RollingUpdate") => {
            let rolling = &strategy["rollingUpdate"];
            if rolling.is_null() {
                errs.push(FieldCause::required(PATH, ""));
                return;
            }
            let mut amount = |key: &str| {
                let field = format!("{PATH}.{key}");
                let value = &rolling[key];
                let parsed = int_or_percent(value, &field, errs);
                if let Some((v, true)) = parsed
                    && v > 100
                {
                    errs.push(FieldCause::invalid_int_or_string(
                        &field,
                        value,
                        "must not be greater than 100%",
                    ));
                }
                // `getIntOrPercentValue`: a malformed percentage counts as zero.
                parsed.is_some_and(|(v, _)| v != 0)
            };
            let unavailable = amount("maxUnavailable");
            let surge = amount("maxSurge");
            if unavailable && surge {
                errs.push(FieldCause::invalid_int_or_string(
                    &format!("{PATH}.maxSurge"),
                    &rolling["maxSurge"],
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !unavailable && !surge {
                errs.push(FieldCause::required(
                    &format!("{PATH}.maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        _ => errs.push(FieldCause::not_supported(
            "spec.updateStrategy",
            strategy,
            &["RollingUpdate", "OnDelete"],
        )),
    }
}

/// `ValidateDaemonSetStatusUpdate`: every count at least zero, the collision count never lower.
fn daemon_set_status(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let status = &object["status"];
    for key in [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
        "observedGeneration",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberUnavailable",
        "collisionCount",
    ] {
        nonnegative(&status[key], &format!("status.{key}"), errs);
    }
    if let Some(old) = old
        && let Some(before) = old["status"]["collisionCount"].as_i64()
        && status["collisionCount"]
            .as_i64()
            .is_none_or(|now| now < before)
    {
        errs.push(FieldCause::invalid_value(
            "status.collisionCount",
            &json!(status["collisionCount"].as_i64().unwrap_or(0)),
            "cannot be decremented",
        ));
    }
}

/// `maxParallelismForIndexedJob`.
const MAX_INDEXED_PARALLELISM: i64 = 100_000;

/// `ValidateJob` / `ValidateJobUpdate` (batch/v1): the counts, the completion mode (an Indexed
/// Job needs `completions`, and its last Pod's hostname `NAME-(completions-1)` must be a DNS
/// label), the restart policy (`OnFailure` or `Never`), the selector matching the template; on
/// update, what `ValidateJobSpecUpdate` keeps fixed: `completions` (an Indexed Job may change it
/// together with `parallelism`), the selector, the completion mode and the template (whose
/// scheduling directives a suspended Job that never started may change).
fn job(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonnegative(&spec[key], &format!("spec.{key}"), errs);
    }
    let per_index = !spec["backoffLimitPerIndex"].is_null();
    if !spec["maxFailedIndexes"].is_null() && !per_index {
        errs.push(FieldCause::required(
            "spec.backoffLimitPerIndex",
            "when maxFailedIndexes is specified",
        ));
    }
    let mode = &spec["completionMode"];
    let indexed = *mode == "Indexed";
    if !mode.is_null() && !indexed && *mode != "NonIndexed" {
        errs.push(FieldCause::not_supported(
            "spec.completionMode",
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if indexed {
        if spec["completions"].is_null() {
            errs.push(FieldCause::required(
                "spec.completions",
                "when completion mode is Indexed",
            ));
        }
        if spec["parallelism"]
            .as_i64()
            .is_some_and(|p| p > MAX_INDEXED_PARALLELISM)
        {
            errs.push(FieldCause::invalid_value(
                "spec.parallelism",
                &spec["parallelism"],
                format!(
                    "must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion mode is Indexed"
                ),
            ));
        }
        per_index_limits(spec, errs);
        if let Some(completions) = spec["completions"].as_i64().filter(|c| *c > 0)
            && old.is_none()
        {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let hostname = format!("{name}-{}", completions - 1);
            if validation::dns1123_label(&hostname).is_err() {
                errs.push(FieldCause::invalid(
                    "metadata.name",
                    name,
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    } else {
        for key in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if !spec[key].is_null() {
                errs.push(FieldCause::invalid_value(
                    &format!("spec.{key}"),
                    &spec[key],
                    "requires indexed completion mode",
                ));
            }
        }
    }
    let policy = &spec["successPolicy"];
    if !policy.is_null() {
        if indexed {
            success_policy(policy, spec["completions"].as_i64(), errs);
        } else {
            errs.push(FieldCause::invalid_value(
                "spec.successPolicy",
                policy,
                "requires indexed completion mode",
            ));
        }
    }
    let template = &spec["template"];
    if spec["podFailurePolicy"].is_object() {
        pod_failure_policy(
            &spec["podFailurePolicy"],
            &template["spec"],
            per_index,
            errs,
        );
    }
    let replacement = &spec["podReplacementPolicy"];
    if spec["podFailurePolicy"].is_object() {
        if !replacement.is_null() && *replacement != "Failed" {
            errs.push(FieldCause::not_supported(
                "spec.podReplacementPolicy",
                replacement,
                &["Failed"],
            ));
        }
    } else if !replacement.is_null()
        && *replacement != "Failed"
        && *replacement != "TerminatingOrFailed"
    {
        errs.push(FieldCause::not_supported(
            "spec.podReplacementPolicy",
            replacement,
            &["Failed", "TerminatingOrFailed"],
        ));
    }
    pod_spec(&template["spec"], "spec.template.spec", errs);
    let restart = &template["spec"]["restartPolicy"];
    if restart.is_null() || *restart == "Always" || *restart == "" {
        errs.push(FieldCause::required(
            "spec.template.spec.restartPolicy",
            r#"valid values: "OnFailure", "Never""#,
        ));
    } else if *restart != "OnFailure" && *restart != "Never" {
        errs.push(FieldCause::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["OnFailure", "Never"],
        ));
    } else if spec["podFailurePolicy"].is_object() && *restart != "Never" {
        errs.push(FieldCause::invalid_value(
            "spec.template.spec.restartPolicy",
            restart,
            r#"only "Never" is supported when podFailurePolicy is specified"#,
        ));
    }
    if spec["selector"].is_null() {
        errs.push(FieldCause::required("spec.selector", ""));
    } else if {
        let before = errs.len();
        label_selector(&spec["selector"], "spec.selector", errs);
        errs.len() == before
    } && !selects_template(&spec["selector"], template)
    {
        errs.push(FieldCause::invalid_value(
            "spec.template.metadata.labels",
            &template["metadata"]["labels"],
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(old) = old {
        job_update(spec, old, indexed, errs);
    }
}

/// `ValidatePodDisruptionBudgetSpec`: at most one of `minAvailable` and `maxUnavailable`, each
/// a non-negative int or a percent up to 100 %, and a valid selector.
fn disruption_budget(spec: &Value, errs: &mut Vec<FieldCause>) {
    let (min, max) = (&spec["minAvailable"], &spec["maxUnavailable"]);
    if !min.is_null() && !max.is_null() {
        // kube-apiserver prints the spec as Go's `%#v` of a struct of pointers here.
        errs.push(FieldCause::other(
            "spec",
            "Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, bound) in [("minAvailable", min), ("maxUnavailable", max)] {
        let path = format!("spec.{key}");
        match bound {
            Value::Null => {}
            Value::Number(n) => {
                if n.as_i64().is_some_and(|n| n < 0) {
                    errs.push(FieldCause::invalid_value(
                        &path,
                        bound,
                        "must be greater than or equal to 0",
                    ));
                }
            }
            Value::String(text) => match percent(text) {
                None => errs.push(FieldCause::invalid_int_or_string(
                    &path,
                    bound,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
                Some(p) if p > 100 => {
                    errs.push(FieldCause::invalid_int_or_string(
                        &path,
                        bound,
                        "must not be greater than 100%",
                    ));
                }
                Some(_) => {}
            },
            other => errs.push(FieldCause::invalid_value(&path, other, "must be an int or a percent")),
        }
    }
    if spec["selector"].is_object() {
        label_selector(&spec["selector"], "spec.selector", errs);
    }
}

/// The number of a percent string (`[0-9]+%`).
fn percent(text: &str) -> Option<u64> {
    let digits = text.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// `maxFailedIndexesForIndexedJob`, `completionsSoftLimit`, `parallelismLimitForHighCompletions`
/// and `maxFailedIndexesLimitForHighCompletions`.
const PER_INDEX_LIMITS: (i64, i64, i64, i64) = (100_000, 100_000, 10_000, 10_000);

/// `validateJobSpec`'s bounds of an Indexed Job's `maxFailedIndexes` (at most `completions`, and
/// 100 000), and, above 100 000 completions with `backoffLimitPerIndex`, `maxFailedIndexes`
/// required and it and `parallelism` at most 10 000.
fn per_index_limits(spec: &Value, errs: &mut Vec<FieldCause>) {
    let (max_failed, soft_completions, high_parallelism, high_max_failed) = PER_INDEX_LIMITS;
    let (completions, max) = (spec["completions"].as_i64(), &spec["maxFailedIndexes"]);
    if let Some(n) = max.as_i64() {
        if completions.is_some_and(|c| n > c) {
            errs.push(FieldCause::invalid_value(
                "spec.maxFailedIndexes",
                max,
                "must be less than or equal to completions",
            ));
        }
        if n > max_failed {
            errs.push(FieldCause::invalid_value(
                "spec.maxFailedIndexes",
                max,
                format!("must be less than or equal to {max_failed}"),
            ));
        }
    }
    if completions.is_some_and(|c| c > soft_completions) && !spec["backoffLimitPerIndex"].is_null()
    {
        let above = format!(
            "when completions are above {soft_completions} and used with backoff limit per index"
        );
        if max.is_null() {
            errs.push(FieldCause::required(
                "spec.maxFailedIndexes",
                &format!("must be specified when completions is above {soft_completions}"),
            ));
        }
        let parallelism = &spec["parallelism"];
        if parallelism.as_i64().is_some_and(|p| p > high_parallelism) {
            errs.push(FieldCause::invalid_value(
                "spec.parallelism",
                parallelism,
                format!("must be less than or equal to {high_parallelism} {above}"),
            ));
        }
        if max.as_i64().is_some_and(|n| n > high_max_failed) {
            errs.push(FieldCause::invalid_value(
                "spec.maxFailedIndexes",
                max,
                format!("must be less than or equal to {high_max_failed} {above}"),
            ));
        }
    }
}

/// `maxPodFailurePolicyRules`, `maxPodFailurePolicyOnExitCodesValues`,
/// `maxPodFailurePolicyOnPodConditionsPatterns`.
const MAX_POD_FAILURE_POLICY: (usize, usize, usize) = (20, 255, 20);

/// `field.TooMany(path, n, max)`.
fn too_many(path: &str, n: usize, max: usize) -> FieldCause {
    FieldCause::other_typed(
        crate::error::CauseType::ValueTooMany,
        path,
        format!("Too many: {n}: must have at most {max} items"),
    )
}

/// `validatePodFailurePolicy`: at most 20 rules, each with a known action (`FailIndex` only with
/// `backoffLimitPerIndex`) and exactly one of `onExitCodes` (an
/// operator, a container of the template if named, 1–255 ordered, distinct values, no 0 for
/// `In`) and `onPodConditions` (at most 20 patterns, a qualified type, a status).
fn pod_failure_policy(
    policy: &Value,
    pod_spec: &Value,
    per_index: bool,
    errs: &mut Vec<FieldCause>,
) {
    let (max_rules, max_values, max_patterns) = MAX_POD_FAILURE_POLICY;
    let rules = policy["rules"].as_array().map_or(&[][..], Vec::as_slice);
    if rules.len() > max_rules {
        errs.push(too_many(
            "spec.podFailurePolicy.rules",
            rules.len(),
            max_rules,
        ));
    }
    let containers: HashSet<&str> = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|key| pod_spec[key].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.podFailurePolicy.rules[{i}]");
        let action = &rule["action"];
        let actions = ["Count", "FailIndex", "FailJob", "Ignore"];
        if action.is_null() || *action == "" {
            errs.push(FieldCause::required(
                &format!("{path}.action"),
                r#"valid values: ["Count" "FailIndex" "FailJob" "Ignore"]"#,
            ));
        } else if *action == "FailIndex" {
            if !per_index {
                errs.push(FieldCause::invalid_value(
                    &format!("{path}.action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
        } else if !action.as_str().is_some_and(|a| actions.contains(&a)) {
            errs.push(FieldCause::not_supported(
                &format!("{path}.action"),
                action,
                &actions,
            ));
        }
        let codes = rule.get("onExitCodes").filter(|c| !c.is_null());
        let patterns = rule["onPodConditions"].as_array().filter(|p| !p.is_empty());
        if let Some(codes) = codes {
            on_exit_codes(
                codes,
                &format!("{path}.onExitCodes"),
                &containers,
                max_values,
                errs,
            );
        }
        if let Some(patterns) = patterns {
            let path = format!("{path}.onPodConditions");
            if patterns.len() > max_patterns {
                errs.push(too_many(&path, patterns.len(), max_patterns));
            }
            for (j, pattern) in patterns.iter().enumerate() {
                let kind = pattern["type"].as_str().unwrap_or_default();
                if let Err(e) = validation::qualified_name(kind) {
                    errs.push(FieldCause::invalid(&format!("{path}[{j}].type"), kind, e));
                }
                let status = &pattern["status"];
                let statuses = ["False", "True", "Unknown"];
                if status.is_null() || *status == "" {
                    errs.push(FieldCause::required(
                        &format!("{path}[{j}].status"),
                        r#"valid values: ["False" "True" "Unknown"]"#,
                    ));
                } else if !status.as_str().is_some_and(|s| statuses.contains(&s)) {
                    errs.push(FieldCause::not_supported(
                        &format!("{path}[{j}].status"),
                        status,
                        &statuses,
                    ));
                }
            }
        }
        match (codes.is_some(), patterns.is_some()) {
            (true, true) => errs.push(FieldCause::other(
                &path,
                "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (false, false) => errs.push(FieldCause::other(
                &path,
                "Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
    }
}

/// `validatePodFailurePolicyRuleOnExitCodes`.
fn on_exit_codes(
    codes: &Value,
    path: &str,
    containers: &HashSet<&str>,
    max_values: usize,
    errs: &mut Vec<FieldCause>,
) {
    let operator = &codes["operator"];
    if operator.is_null() || *operator == "" {
        errs.push(FieldCause::required(
            &format!("{path}.operator"),
            r#"valid values: ["In" "NotIn"]"#,
        ));
    } else if *operator != "In" && *operator != "NotIn" {
        errs.push(FieldCause::not_supported(
            &format!("{path}.operator"),
            operator,
            &["In", "NotIn"],
        ));
    }
    if let Some(name) = codes["containerName"].as_str()
        && !containers.contains(name)
    {
        errs.push(FieldCause::invalid(
            &format!("{path}.containerName"),
            name,
            "must be one of the container or initContainer names in the pod template",
        ));
    }
    let values = codes["values"].as_array().map_or(&[][..], Vec::as_slice);
    let values_path = format!("{path}.values");
    // The values as apimachinery prints an `[]int32` (`%#v`).
    let go_values = format!(
        "[]int32{{{}}}",
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if values.is_empty() {
        errs.push(FieldCause::other(
            &values_path,
            format!("Invalid value: {go_values}: at least one value is required"),
        ));
    } else if values.len() > max_values {
        errs.push(too_many(&values_path, values.len(), max_values));
    }
    let mut seen = HashSet::new();
    let mut ordered = true;
    for (j, value) in values.iter().enumerate() {
        let code = value.as_i64().unwrap_or_default();
        if *operator == "In" && code == 0 {
            errs.push(FieldCause::invalid_value(
                &format!("{values_path}[{j}]"),
                value,
                "must not be 0 for the In operator",
            ));
        }
        if !seen.insert(code) {
            errs.push(FieldCause::duplicate(&format!("{values_path}[{j}]"), value));
        }
        if j > 0 && values[j - 1].as_i64().unwrap_or_default() > code {
            ordered = false;
        }
    }
    if !ordered {
        errs.push(FieldCause::other(
            &values_path,
            format!("Invalid value: {go_values}: must be ordered"),
        ));
    }
}

/// `maxSuccessPolicyRule`.
const MAX_SUCCESS_POLICY_RULES: usize = 20;

/// `validateSuccessPolicy`: one to 20 rules, each with `succeededIndexes` (in the format of
/// `completedIndexes`, below `completions`) or `succeededCount` (at most `completions`, and at
/// most the indexes the rule names).
fn success_policy(policy: &Value, completions: Option<i64>, errs: &mut Vec<FieldCause>) {
    let rules = policy["rules"].as_array().map_or(&[][..], Vec::as_slice);
    if rules.is_empty() {
        errs.push(FieldCause::required(
            "spec.successPolicy.rules",
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if rules.len() > MAX_SUCCESS_POLICY_RULES {
        errs.push(FieldCause::other_typed(
            crate::error::CauseType::ValueTooMany,
            "spec.successPolicy.rules",
            format!(
                "Too many: {}: must have at most {MAX_SUCCESS_POLICY_RULES} items",
                rules.len()
            ),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.successPolicy.rules[{i}]");
        let (indexes, count) = (&rule["succeededIndexes"], &rule["succeededCount"]);
        if indexes.is_null() && count.is_null() {
            errs.push(FieldCause::required(
                &path,
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let mut total = None;
        if let Some(text) = indexes.as_str() {
            match count_indexes(text, completions.unwrap_or(0)) {
                Ok(n) => total = Some(n),
                Err(e) => errs.push(FieldCause::invalid(
                    &format!("{path}.succeededIndexes"),
                    text,
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(n) = count.as_i64() {
            let field = format!("{path}.succeededCount");
            nonnegative(count, &field, errs);
            if let Some(completions) = completions.filter(|c| n > *c) {
                errs.push(FieldCause::invalid_value(
                    &field,
                    count,
                    format!(
                        "must be less than or equal to {completions} (the number of specified completions)"
                    ),
                ));
            }
            if let Some(total) = total.filter(|t| n > *t) {
                errs.push(FieldCause::invalid_value(
                    &field,
                    count,
                    format!(
                        "must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"
                    ),
                ));
            }
        }
    }
}

/// `validateIndexesFormat`: how many indexes `text` (`1,3-5`) names, each interval increasing and
/// below `completions`; or why it cannot be read.
fn count_indexes(text: &str, completions: i64) -> Result<i64, String> {
    let mut last: Option<i64> = None;
    let mut total = 0;
    if text.is_empty() {
        return Ok(0);
    }
    for interval in text.split(',') {
        let limits: Vec<&str> = interval.split('-').collect();
        if limits.len() > 2 {
            return Err(format!(
                "the fragment {interval:?} violates the requirement that an index interval can have at most two parts separated by '-'"
            ));
        }
        let mut bounds = Vec::with_capacity(2);
        for limit in &limits {
            let index = limit
                .parse::<i32>()
                .map_err(|_| format!("cannot convert string to integer for index: {limit:?}"))?;
            let index = i64::from(index);
            if index >= completions {
                return Err(format!("too large index: {limit:?}"));
            }
            if let Some(previous) = last.filter(|p| *p >= index) {
                return Err(format!(
                    "non-increasing order, previous: {previous}, current: {index}"
                ));
            }
            last = Some(index);
            bounds.push(index);
        }
        total += match bounds[..] {
            [first, second] => second - first + 1,
            _ => 1,
        };
    }
    Ok(total)
}

/// `ValidateJobSpecUpdate`'s immutable fields of a Job's `spec` against `old`.
fn job_update(spec: &Value, old: &Value, indexed: bool, errs: &mut Vec<FieldCause>) {
    let old_spec = &old["spec"];
    let template = &spec["template"];
    let completions = &spec["completions"];
    if *completions != old_spec["completions"] {
        if !indexed {
            errs.push(FieldCause::invalid_value(
                "spec.completions",
                completions,
                "field is immutable",
            ));
        } else if !completions.is_null() && *completions != spec["parallelism"] {
            errs.push(FieldCause::invalid_value(
                "spec.completions",
                completions,
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    }
    for key in [
        "selector",
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        if spec[key] != old_spec[key] {
            errs.push(FieldCause::invalid_value(
                &format!("spec.{key}"),
                &spec[key],
                "field is immutable",
            ));
        }
    }
    // `AllowMutableSchedulingDirectives`: a suspended Job that never started.
    let mutable_scheduling = old_spec["suspend"] == true && old["status"]["startTime"].is_null();
    let mut old_template = old_spec["template"].clone();
    if mutable_scheduling {
        take_scheduling_directives(&mut old_template, template);
    }
    if *template != old_template {
        errs.push(FieldCause::invalid_value(
            "spec.template",
            template,
            "field is immutable",
        ));
    }
}

/// `validatePodTemplateUpdate`'s allowance: `old` takes `new`'s labels, annotations, node
/// selector, tolerations, scheduling gates and node affinity, so that only other changes differ.
fn take_scheduling_directives(old_template: &mut Value, template: &Value) {
    for (path, key) in [
        ("/metadata", "labels"),
        ("/metadata", "annotations"),
        ("/spec", "nodeSelector"),
        ("/spec", "tolerations"),
        ("/spec", "schedulingGates"),
    ] {
        let new = template.pointer(path).and_then(|m| m.get(key)).cloned();
        if let Some(Value::Object(map)) = old_template.pointer_mut(path) {
            match new {
                Some(value) => map.insert(key.to_owned(), value),
                None => map.remove(key),
            };
        }
    }
    let node_affinity = template["spec"]["affinity"].get("nodeAffinity").cloned();
    if let Some(Value::Object(pod)) = old_template.get_mut("spec") {
        match (pod.get_mut("affinity"), node_affinity) {
            (Some(Value::Object(affinity)), value) => {
                match value {
                    Some(value) => affinity.insert("nodeAffinity".to_owned(), value),
                    None => affinity.remove("nodeAffinity"),
                };
                // An affinity left empty was only a node affinity, which may go.
                if affinity.is_empty() && template["spec"]["affinity"].is_null() {
                    pod.remove("affinity");
                }
            }
            (_, Some(value)) => {
                pod.insert("affinity".to_owned(), json!({"nodeAffinity": value}));
            }
            (_, None) => {}
        }
    }
}

/// `ValidateLabelSelector` (`metav1validation`): each `matchLabels` key a qualified name and
/// value a label value; each expression's operator known, with values for `In`/`NotIn` and
/// none for `Exists`/`DoesNotExist`, its key a qualified name and its values label values.
pub(super) fn label_selector(selector: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let labels_path = format!("{path}.matchLabels");
    for (key, value) in selector["matchLabels"].as_object().into_iter().flatten() {
        if let Err(e) = validation::qualified_name(key) {
            errs.push(FieldCause::invalid(&labels_path, key, e));
        }
        let text = value.as_str().unwrap_or_default();
        if let Err(e) = validation::label_value(text) {
            errs.push(FieldCause::invalid(&labels_path, text, e));
        }
    }
    for (i, expression) in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = expression["values"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        match expression["operator"].as_str() {
            Some("In" | "NotIn") if values.is_empty() => errs.push(FieldCause::required(
                &format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Some("Exists" | "DoesNotExist") if !values.is_empty() => {
                errs.push(FieldCause::forbidden(
                    &format!("{at}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            _ => errs.push(FieldCause::invalid(
                &format!("{at}.operator"),
                expression["operator"].as_str().unwrap_or_default(),
                "not a valid selector operator",
            )),
        }
        let key = expression["key"].as_str().unwrap_or_default();
        if let Err(e) = validation::qualified_name(key) {
            errs.push(FieldCause::invalid(&format!("{at}.key"), key, e));
        }
        for (n, value) in values.iter().enumerate() {
            let text = value.as_str().unwrap_or_default();
            if let Err(e) = validation::label_value(text) {
                errs.push(FieldCause::invalid(&format!("{at}.values[{n}]"), text, e));
            }
        }
    }
}

/// `selector` (a `LabelSelector` as JSON) as a selector, or why it is not one (the decode's or
/// the selector's error, as a field error's detail).
fn parse_label_selector(selector: &Value) -> Result<Selector, String> {
    serde_json::from_value::<LabelSelector>(selector.clone())
        .map_err(|e| e.to_string())
        .and_then(|s| Selector::from_label_selector(&s).map_err(|e| e.to_string()))
}

/// Whether `selector` (a `LabelSelector`) selects the labels of the Pod `template`; a selector
/// that does not parse selects nothing.
fn selects_template(selector: &Value, template: &Value) -> bool {
    Selector::label_selector_selects(selector, template)
}

/// `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`.
fn deployment_strategy(spec: &Value, errs: &mut Vec<FieldCause>) {
    let strategy = &spec["strategy"];
    match strategy["type"].as_str() {
        Some("Recreate") => {
            if !strategy["rollingUpdate"].is_null() {
                errs.push(FieldCause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            let rolling = &strategy["rollingUpdate"];
            let surge = int_or_percent(
                &rolling["maxSurge"],
                "spec.strategy.rollingUpdate.maxSurge",
                errs,
            );
            let unavailable = int_or_percent(
                &rolling["maxUnavailable"],
                "spec.strategy.rollingUpdate.maxUnavailable",
                errs,
            );
            if surge.is_some_and(|(v, _)| v == 0) && unavailable.is_some_and(|(v, _)| v == 0) {
                errs.push(FieldCause::invalid_int_or_string(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &rolling["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some((v, true)) = unavailable
                && v > 100
            {
                errs.push(FieldCause::invalid_int_or_string(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &rolling["maxUnavailable"],
                    "must not be greater than 100%",
                ));
            }
        }
        _ => errs.push(FieldCause::not_supported(
            "spec.strategy",
            strategy,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// An int-or-percent value (`(value, is_percent)`), or its error.
fn int_or_percent(value: &Value, field: &str, errs: &mut Vec<FieldCause>) -> Option<(i64, bool)> {
    match value {
        Value::Number(n) => {
            let v = n.as_i64()?;
            nonnegative(value, field, errs);
            Some((v, false))
        }
        Value::String(s) => match s.strip_suffix('%').and_then(|d| d.parse::<i64>().ok()) {
            Some(v) if v >= 0 => Some((v, true)),
            _ => {
                errs.push(FieldCause::invalid_int_or_string(
                    field,
                    value,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                None
            }
        },
        _ => None,
    }
}

/// `revisionHistoryLimit` and `progressDeadlineSeconds`.
fn deployment_timing(spec: &Value, errs: &mut Vec<FieldCause>) {
    nonnegative(
        &spec["revisionHistoryLimit"],
        "spec.revisionHistoryLimit",
        errs,
    );
    let deadline = &spec["progressDeadlineSeconds"];
    nonnegative(deadline, "spec.progressDeadlineSeconds", errs);
    if let Some(d) = deadline.as_i64()
        && d <= spec["minReadySeconds"].as_i64().unwrap_or(0)
    {
        errs.push(FieldCause::invalid_value(
            "spec.progressDeadlineSeconds",
            deadline,
            "must be greater than minReadySeconds",
        ));
    }
}

/// `ValidateDeploymentStatus` / `ValidateReplicaSetStatus`: counts are non-negative and no count
/// exceeds the replicas; available never exceeds ready.
fn replica_status(status: &Value, replica_set: bool, errs: &mut Vec<FieldCause>) {
    for key in [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "fullyLabeledReplicas",
        "collisionCount",
    ] {
        nonnegative(&status[key], &format!("status.{key}"), errs);
    }
    let count = |k: &str| status[k].as_i64().unwrap_or(0);
    let bounded: &[&str] = if replica_set {
        &["fullyLabeledReplicas", "readyReplicas", "availableReplicas"]
    } else {
        &["updatedReplicas", "readyReplicas", "availableReplicas"]
    };
    for key in bounded {
        if count(key) > count("replicas") {
            errs.push(FieldCause::invalid_value(
                &format!("status.{key}"),
                &json!(count(key)),
                "cannot be greater than status.replicas",
            ));
        }
    }
    if count("availableReplicas") > count("readyReplicas") {
        errs.push(FieldCause::invalid_value(
            "status.availableReplicas",
            &json!(count("availableReplicas")),
            "cannot be greater than readyReplicas",
        ));
    }
}

/// `ValidateLabels`: each key of `map` a qualified name, each value a label value, the errors
/// at `path`.
pub(crate) fn labels(map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldCause>) {
    for (key, value) in map {
        if let Err(e) = validation::qualified_name(key) {
            errs.push(FieldCause::invalid(path, key, e));
        }
        let value = value.as_str().unwrap_or_default();
        if let Err(e) = validation::label_value(value) {
            errs.push(FieldCause::invalid(path, value, e));
        }
    }
}

/// The taint effects a toleration may name (`validateTaintEffect`).
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// `ValidateTolerations`: a key (when given) a qualified name, an empty key only with `Exists`,
/// `tolerationSeconds` only with `NoExecute`, an `Equal` value a label value and an `Exists` one
/// empty, and a known operator and effect.
pub(crate) fn tolerations(tolerations: &[Value], path: &str, errs: &mut Vec<FieldCause>) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let at = |field: &str| format!("{path}[{i}].{field}");
        let text = |field: &str| toleration[field].as_str().unwrap_or_default();
        let (key, operator, value, effect) =
            (text("key"), text("operator"), text("value"), text("effect"));
        if !key.is_empty()
            && let Err(e) = validation::qualified_name(key)
        {
            errs.push(FieldCause::invalid(&at("key"), key, e));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldCause::invalid(
                &at("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and \
                 all keys\"",
            ));
        }
        if !toleration["tolerationSeconds"].is_null() && effect != "NoExecute" {
            errs.push(FieldCause::invalid(
                &at("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                if let Err(e) = validation::label_value(value) {
                    errs.push(FieldCause::invalid(&at("operator"), value, e));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldCause::invalid_printed(
                        &at("operator"),
                        &go_toleration(toleration),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldCause::not_supported(
                &at("operator"),
                &Value::String(other.to_owned()),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldCause::not_supported(
                &at("effect"),
                &Value::String(effect.to_owned()),
                &TAINT_EFFECTS,
            ));
        }
    }
}

/// A toleration as Go's `%#v` prints the internal `core.Toleration` in a field error (the
/// seconds' pointer as nil or its value, where Go would print an address).
fn go_toleration(toleration: &Value) -> String {
    let text = |field: &str| toleration[field].as_str().unwrap_or_default().to_owned();
    let seconds = toleration["tolerationSeconds"]
        .as_i64()
        .map_or_else(|| "(*int64)(nil)".to_owned(), |s| format!("(*int64)({s})"));
    format!(
        "core.Toleration{{Key:{:?}, Operator:{:?}, Value:{:?}, Effect:{:?}, TolerationSeconds:{seconds}}}",
        text("key"),
        text("operator"),
        text("value"),
        text("effect")
    )
}

/// A pod spec's containers: at least one; each named (a DNS-1123 label, unique) with an image;
/// its tolerations ([`tolerations`]).
fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    if let Some(list) = spec["tolerations"].as_array() {
        tolerations(list, &format!("{path}.tolerations"), errs);
    }
    let containers = spec["containers"].as_array().filter(|c| !c.is_empty());
    let Some(containers) = containers else {
        errs.push(FieldCause::required(&format!("{path}.containers"), ""));
        return;
    };
    let mut names = BTreeSet::new();
    let init = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (list, key) in [(&init, "initContainers"), (containers, "containers")] {
        for (i, c) in list.iter().enumerate() {
            let field = format!("{path}.{key}[{i}]");
            match c["name"].as_str().filter(|n| !n.is_empty()) {
                None => errs.push(FieldCause::required(&format!("{field}.name"), "")),
                Some(name) => {
                    if let Err(e) = validation::dns1123_label(name) {
                        errs.push(FieldCause::invalid(&format!("{field}.name"), name, e));
                    }
                    if !names.insert(name.to_owned()) {
                        errs.push(FieldCause::duplicate(&format!("{field}.name"), &c["name"]));
                    }
                }
            }
            if c["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
                errs.push(FieldCause::required(&format!("{field}.image"), ""));
            }
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let port = &p["containerPort"];
                if !port.as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
                    errs.push(FieldCause::invalid_value(
                        &format!("{field}.ports[{j}].containerPort"),
                        port,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
}

/// `ValidateService`: ports (required unless headless or ExternalName, in range, named when
/// several, unique), type, protocol, and the immutable cluster IP.
fn service(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !TYPES.contains(&kind) {
        errs.push(FieldCause::not_supported(
            "spec.type",
            &spec["type"],
            &TYPES,
        ));
        return;
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if kind == "ExternalName" {
        if spec["externalName"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldCause::required("spec.externalName", ""));
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldCause::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = p["name"].as_str().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldCause::required(&format!("{field}.name"), ""));
        } else if !name.is_empty() {
            if let Err(e) = validation::dns1123_label(name) {
                errs.push(FieldCause::invalid(&format!("{field}.name"), name, e));
            }
            if !names.insert(name.to_owned()) {
                errs.push(FieldCause::duplicate(&format!("{field}.name"), &p["name"]));
            }
        }
        if !p["port"].as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
            errs.push(FieldCause::invalid_value(
                &format!("{field}.port"),
                &p["port"],
                "must be between 1 and 65535, inclusive",
            ));
        }
        let protocol = &p["protocol"];
        if !["TCP", "UDP", "SCTP"].iter().any(|s| protocol == s) {
            errs.push(FieldCause::not_supported(
                &format!("{field}.protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if kind == "ClusterIP" && p["nodePort"].as_i64().is_some_and(|n| n != 0) {
            errs.push(FieldCause::forbidden(
                &format!("{field}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if let Some(old) = old {
        let (was, is) = (&old["spec"]["clusterIP"], &spec["clusterIP"]);
        let both_need_ip = old["spec"]["type"] != "ExternalName" && kind != "ExternalName";
        if both_need_ip && !was.is_null() && was != is {
            errs.push(FieldCause::invalid_value(
                "spec.clusterIPs[0]",
                is,
                "may not change once set",
            ));
        }
    }
}

/// `ValidateConfigMap` / `ValidateSecret`: keys are config keys, not repeated across `data` and
/// `other`, and the data fits in 1 MiB; an immutable one keeps its data.
fn data(object: &Value, old: Option<&Value>, other: &str, errs: &mut Vec<FieldCause>) {
    let mut total = 0usize;
    for bag in ["data", "binaryData"] {
        for (key, value) in object[bag].as_object().into_iter().flatten() {
            if let Err(detail) = config_key(key) {
                errs.push(FieldCause::invalid(&format!("{bag}[{key}]"), key, detail));
            }
            if bag == "data" && !object[other][key].is_null() && other == "binaryData" {
                errs.push(FieldCause::invalid(
                    &format!("data[{key}]"),
                    key,
                    "duplicate of key present in binaryData",
                ));
            }
            let text = value.as_str().unwrap_or_default();
            total += if bag == "binaryData" {
                decoded_len(text)
            } else {
                text.len()
            };
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldCause::too_long("", MAX_DATA_BYTES));
    }
    if let Some(old) = old
        && old["immutable"] == json!(true)
    {
        if object["immutable"] != json!(true) {
            errs.push(FieldCause::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for bag in ["data", "binaryData"] {
            if old[bag] != object[bag] {
                errs.push(FieldCause::forbidden(
                    bag,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
}

/// The number of bytes base64 `text` decodes to (`binaryData` counts its bytes, not its text).
fn decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// `IsConfigMapKey`: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.`, `..` or `..`-prefixed.
fn config_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > 253 {
        return Err("must be no more than 253 characters");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        );
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Err("must not be '.' or '..' or start with '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "a"}},
                "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "x"}]}}}})
    }

    fn texts(errs: &[FieldCause]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn label_selectors_are_checked_as_metav1_validation_checks_them() {
        let mut errs = Vec::new();
        label_selector(
            &json!({"matchLabels": {"bad key": "ok", "ok": "bad value!"},
            "matchExpressions": [
                {"key": "a", "operator": "Exists", "values": ["x"]},
                {"key": "b", "operator": "NotIn"},
                {"key": "c", "operator": "Near"},
                {"key": "d", "operator": "In", "values": ["fine", "not fine"]},
            ]}),
            "spec.selector",
            &mut errs,
        );
        let texts = texts(&errs);
        assert_eq!(texts.len(), 6, "{texts:#?}");
        assert!(texts[0].starts_with(
            "spec.selector.matchLabels: Invalid value: \"bad key\": name part must consist of"
        ));
        assert!(texts[1].starts_with(
            "spec.selector.matchLabels: Invalid value: \"bad value!\": a valid label must be"
        ));
        assert_eq!(
            texts[2..5],
            [
                "spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
        assert!(texts[5].starts_with(
            "spec.selector.matchExpressions[3].values[1]: Invalid value: \"not fine\""
        ));
    }

    fn job(suspend: bool, spec: Value) -> Value {
        let mut job = json!({"metadata": {"name": "j"},
            "spec": {"suspend": suspend, "completions": 1, "parallelism": 1,
                "selector": {"matchLabels": {"job-name": "j"}},
                "template": {"metadata": {"labels": {"job-name": "j"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
            "status": {}});
        if let (Some(fields), Value::Object(given)) =
            (job["spec"]["template"]["spec"].as_object_mut(), spec)
        {
            fields.extend(given);
        }
        job
    }

    #[test]
    fn a_suspended_job_that_never_started_may_change_only_where_it_runs() {
        let check = |old: &Value, new: &Value| {
            texts(&super::check(
                "batch",
                "Job",
                Some(old),
                new,
                Change::Object,
            ))
        };
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}});
        let placed = json!({"nodeSelector": {"disk": "ssd"}, "affinity": affinity,
            "tolerations": [{"key": "k", "operator": "Exists"}]});
        let plain = job(true, json!({}));
        // Node selector, node affinity and tolerations come and go while it is suspended.
        assert_eq!(
            check(&plain, &job(true, placed.clone())),
            Vec::<String>::new()
        );
        assert_eq!(
            check(&job(true, placed.clone()), &plain),
            Vec::<String>::new()
        );
        // An affinity other than the node's is still fixed.
        let pod_affinity = json!({"affinity": {"podAffinity": {}}});
        let errs = check(&plain, &job(true, pod_affinity));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.template: Invalid value: ")),
            "{errs:?}"
        );
        // So is the image; and once it ran (a start time) or unsuspended, nothing may change.
        let mut image = plain.clone();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        assert!(
            check(&plain, &image)
                .iter()
                .any(|e| e.ends_with("field is immutable"))
        );
        let mut started = plain.clone();
        started["status"]["startTime"] = json!("2026-12-06T00:00:00Z");
        let errs = check(&started, &job(true, placed.clone()));
        assert!(
            errs.iter().any(|e| e.starts_with("spec.template: ")),
            "{errs:?}"
        );
        let running = job(false, json!({}));
        let errs = check(&running, &job(false, placed));
        assert!(
            errs.iter().any(|e| e.starts_with("spec.template: ")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_pod_failure_policy_is_validated_as_validate_pod_failure_policy_does() {
        let check = |policy: Value, restart: &str| {
            let mut object = job(false, json!({"restartPolicy": restart}));
            object["spec"]["podFailurePolicy"] = policy;
            object["spec"]["podReplacementPolicy"] = json!("Failed");
            texts(&super::check("batch", "Job", None, &object, Change::Object))
        };
        let valid = json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [1, 42]}}]});
        assert_eq!(check(valid.clone(), "Never"), Vec::<String>::new());
        assert_eq!(
            check(valid, "OnFailure"),
            [
                r#"spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is specified"#
            ]
        );
        let errs = check(
            json!({"rules": [
                {"action": "Retry", "onExitCodes": {"containerName": "nope", "operator": "In", "values": [3, 0, 3]}},
                {"action": "FailIndex", "onPodConditions": [{"type": "Bad Type", "status": "Maybe"}]},
                {"action": "Count"},
                {"onExitCodes": {"operator": "NotIn", "values": []}, "onPodConditions": [{"type": "Ready", "status": "False"}]}]}),
            "Never",
        );
        assert_eq!(
            errs,
            [
                r#"spec.podFailurePolicy.rules[0].action: Unsupported value: "Retry": supported values: "Count", "FailIndex", "FailJob", "Ignore""#,
                r#"spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: "nope": must be one of the container or initContainer names in the pod template"#,
                "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Invalid value: 0: must not be 0 for the In operator",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Duplicate value: 3",
                "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{3, 0, 3}: must be ordered",
                r#"spec.podFailurePolicy.rules[1].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set"#,
                r#"spec.podFailurePolicy.rules[1].onPodConditions[0].type: Invalid value: "Bad Type": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#,
                r#"spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown""#,
                "spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
                r#"spec.podFailurePolicy.rules[3].action: Required value: valid values: ["Count" "FailIndex" "FailJob" "Ignore"]"#,
                "spec.podFailurePolicy.rules[3].onExitCodes.values: Invalid value: []int32{}: at least one value is required",
                "spec.podFailurePolicy.rules[3]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            ]
        );
    }

    #[test]
    fn backoff_limit_per_index_bounds_are_checked_as_validate_job_spec_does() {
        let check = |fields: Value| {
            let mut object = job(false, json!({}));
            object["spec"]["completionMode"] = json!("Indexed");
            if let (Some(spec), Value::Object(fields)) = (object["spec"].as_object_mut(), fields) {
                spec.extend(fields);
            }
            texts(&super::check("batch", "Job", None, &object, Change::Object))
        };
        assert_eq!(
            check(
                json!({"completions": 10, "backoffLimitPerIndex": 1, "maxFailedIndexes": 10,
                "podReplacementPolicy": "Failed",
                "podFailurePolicy": {"rules": [{"action": "FailIndex",
                    "onExitCodes": {"operator": "In", "values": [3]}}]}})
            ),
            Vec::<String>::new(),
            "FailIndex with backoffLimitPerIndex"
        );
        assert_eq!(
            check(json!({"completions": 10, "maxFailedIndexes": 11})),
            [
                "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
                "spec.maxFailedIndexes: Invalid value: 11: must be less than or equal to completions",
            ]
        );
        assert_eq!(
            check(
                json!({"completions": 200_000, "parallelism": 20_000, "backoffLimitPerIndex": 1})
            ),
            [
                "spec.maxFailedIndexes: Required value: must be specified when completions is above 100000",
                "spec.parallelism: Invalid value: 20000: must be less than or equal to 10000 when completions are above 100000 and used with backoff limit per index",
            ]
        );
    }

    #[test]
    fn success_policy_indexes_are_read_as_validate_indexes_format_reads_them() {
        assert_eq!(count_indexes("", 3), Ok(0));
        assert_eq!(count_indexes("0,2-4,6", 7), Ok(5));
        assert_eq!(
            count_indexes("1-2-3", 7),
            Err("the fragment \"1-2-3\" violates the requirement that an index interval can have at most two parts separated by '-'".to_owned())
        );
        assert_eq!(
            count_indexes("a", 7),
            Err("cannot convert string to integer for index: \"a\"".to_owned())
        );
        assert_eq!(
            count_indexes("7", 7),
            Err("too large index: \"7\"".to_owned())
        );
        assert_eq!(
            count_indexes("3,1", 7),
            Err("non-increasing order, previous: 3, current: 1".to_owned())
        );
        assert_eq!(
            count_indexes("2-2", 7),
            Err("non-increasing order, previous: 2, current: 2".to_owned())
        );
    }

    #[test]
    fn a_valid_deployment_passes() {
        assert!(check("apps", "Deployment", None, &deployment(), Change::Object).is_empty());
    }

    #[test]
    fn deployments_break_the_rules_kubernetes_checks() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "b"});
        d["spec"]["template"]["spec"]["containers"] = json!([]);
        assert_eq!(
            texts(&check("apps", "Deployment", None, &d, Change::Object)),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
                "spec.template.spec.containers: Required value",
            ]
        );
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "c", "image": "x"}, {"name": "c"}]);
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            texts(&check("apps", "Deployment", None, &d, Change::Object)),
            [
                "spec.template.spec.containers[1].name: Duplicate value: \"c\"",
                "spec.template.spec.containers[1].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
        let mut d = deployment();
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 0, "maxUnavailable": "0%"});
        assert_eq!(
            texts(&check("apps", "Deployment", None, &d, Change::Object)),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0"
            ]
        );
        let old = deployment();
        let mut d = deployment();
        d["spec"]["selector"] = json!({"matchLabels": {"app": "a", "tier": "web"}});
        d["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
        assert_eq!(
            texts(&check("apps", "Deployment", Some(&old), &d, Change::Object)),
            [
                "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"a\",\"tier\":\"web\"}}: field is immutable"
            ]
        );
    }

    #[test]
    fn deployment_status_counts_are_ordered() {
        let d = json!({"status": {"replicas": 2, "readyReplicas": 1, "availableReplicas": 2}});
        assert_eq!(
            texts(&check("apps", "Deployment", None, &d, Change::Status)),
            ["status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"]
        );
        let d = json!({"status": {"replicas": 1, "readyReplicas": -1}});
        assert_eq!(
            texts(&check("apps", "Deployment", None, &d, Change::Status)),
            [
                "status.readyReplicas: Invalid value: -1: must be greater than or equal to 0",
                "status.availableReplicas: Invalid value: 0: cannot be greater than readyReplicas",
            ],
            "as Go compares the zero value"
        );
    }

    #[test]
    fn services_need_valid_ports() {
        let s = json!({"spec": {"type": "ClusterIP", "ports": []}});
        assert_eq!(
            texts(&check("", "Service", None, &s, Change::Object)),
            ["spec.ports: Required value"]
        );
        let s = json!({"spec": {"type": "ClusterIP", "clusterIP": "None"}});
        assert!(
            check("", "Service", None, &s, Change::Object).is_empty(),
            "headless"
        );
        let s = json!({"spec": {"type": "ClusterIP", "ports": [
            {"port": 80, "protocol": "TCP"}, {"port": 70000, "protocol": "HTTP"}]}});
        assert_eq!(
            texts(&check("", "Service", None, &s, Change::Object)),
            [
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
                "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
    }

    #[test]
    fn config_maps_and_secrets_hold_at_most_one_mebibyte() {
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        let cm = json!({"data": {"k": big}});
        assert_eq!(
            texts(&check("", "ConfigMap", None, &cm, Change::Object)),
            ["Too long: may not be more than 1048576 bytes"]
        );
        // binaryData counts its bytes, not its base64 text.
        let under = "A".repeat(MAX_DATA_BYTES / 3 * 4);
        let cm = json!({"binaryData": {"plugin.wasm": under}});
        assert!(check("", "ConfigMap", None, &cm, Change::Object).is_empty());
        let over = "A".repeat((MAX_DATA_BYTES / 3 + 1) * 4);
        let cm = json!({"binaryData": {"plugin.wasm": over}});
        assert_eq!(check("", "ConfigMap", None, &cm, Change::Object).len(), 1);
        let cm = json!({"data": {"bad/key": "v", "..x": "v"}});
        assert_eq!(check("", "ConfigMap", None, &cm, Change::Object).len(), 2);
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let cm = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(
            texts(&check("", "ConfigMap", Some(&old), &cm, Change::Object)),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let old = json!({"type": "Opaque", "data": {}});
        let s = json!({"type": "kubernetes.io/tls", "data": {}});
        assert_eq!(
            texts(&check("", "Secret", Some(&old), &s, Change::Object)),
            ["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
    }
}
