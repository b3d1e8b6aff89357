//! Health inspectors for common kinds: Deployments, Jobs, PersistentVolumeClaims and Pods (with logs).

use crate::health::{ComponentHealth, Error, ErrorCategory, HealthState};
use crate::pod_logs::PodLogs;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PersistentVolumeClaim, Pod,
};

/// How many lines of a failing container's log [`pod_with_logs`] reads.
pub const LOG_TAIL_LINES: u32 = 50;

/// The longest log line [`categorize_log`] returns, in characters.
pub const MAX_LOG_LINE_CHARS: usize = 256;

/// The state a component is in when what is wrong with it has this category.
///
/// | Category | State | Why |
/// |---|---|---|
/// | infrastructure | degraded | transient; the host requeues with backoff |
/// | missing-downstream-dependency | progressing | transient; expected to self-heal |
/// | auth, invalid-spec, missing-upstream-dependency, resource-exhaustion | failed | needs a user |
fn state_for(category: ErrorCategory) -> HealthState {
    match category {
        ErrorCategory::Infrastructure => HealthState::Degraded,
        ErrorCategory::MissingDownstreamDependency => HealthState::Progressing,
        ErrorCategory::Auth
        | ErrorCategory::InvalidSpec
        | ErrorCategory::MissingUpstreamDependency
        | ErrorCategory::ResourceExhaustion => HealthState::Failed,
    }
}

/// A component in the state its category implies, carrying one error with the same message.
fn categorized(
    component: &str,
    category: ErrorCategory,
    reason: &str,
    message: String,
) -> ComponentHealth {
    ComponentHealth::new(component, state_for(category), reason, message.clone())
        .with_error(Error::new(category, message))
}

/// A progressing component waiting for something the controller creates.
fn waiting_for(component: &str, reason: &str, message: String) -> ComponentHealth {
    categorized(
        component,
        ErrorCategory::MissingDownstreamDependency,
        reason,
        message,
    )
}

fn not_found(component: &str, what: &str) -> ComponentHealth {
    ComponentHealth::progressing(component, "NotFound", "not created yet").with_error(Error::new(
        ErrorCategory::MissingDownstreamDependency,
        format!("{what} not found"),
    ))
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    let lower = haystack.to_lowercase();
    needles.iter().any(|n| lower.contains(n))
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Health of a Deployment: ready when every desired replica is updated and available.
pub fn deployment(component: &str, found: Option<&Deployment>) -> ComponentHealth {
    let Some(dep) = found else {
        return not_found(component, "deployment");
    };
    let desired = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = dep.status.clone().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if available >= desired && updated >= desired {
        ComponentHealth::ready(
            component,
            "Available",
            format!("{available}/{desired} replicas available"),
        )
    } else {
        ComponentHealth::progressing(
            component,
            "RollingOut",
            format!("{available}/{desired} replicas available, {updated} updated"),
        )
    }
}

/// Health of an object that is ready as soon as it exists (a Service, a ConfigMap).
pub fn exists<T>(component: &str, found: Option<&T>) -> ComponentHealth {
    match found {
        Some(_) => ComponentHealth::ready(component, "Exists", "created"),
        None => not_found(component, component),
    }
}

/// Health of a Job, from its conditions and pod counts.
///
/// | Job | State | Reason | Error category |
/// |---|---|---|---|
/// | missing | progressing | `NotFound` | missing-downstream-dependency |
/// | `Complete=True` | ready | `Complete` | — |
/// | `Failed=True` (or `FailureTarget=True`) | failed | the condition's reason | see below |
/// | `Suspended=True` | progressing | `Suspended` | — |
/// | pods active | progressing | `Running` | missing-downstream-dependency |
/// | no pod active yet | progressing | `Pending` | missing-downstream-dependency |
///
/// A failed Job is terminal: Kubernetes has already retried as its spec allows, and the host
/// reconciling again cannot change the outcome. Every failure reason therefore maps to
/// invalid-spec, the category whose host reaction (stop, fail the resource until its spec
/// changes) and remedy (change the spec) match a terminal failure. Transient categories
/// (infrastructure, missing-downstream-dependency) would promise a self-healing that cannot
/// happen; auth and resource-exhaustion would name a cause the Job's status does not show — to
/// find it, inspect the Job's pods with [`pod`] or [`pod_with_logs`].
///
/// | Failure reason | Category | Meaning |
/// |---|---|---|
/// | `BackoffLimitExceeded` | invalid-spec | pods failed more often than `spec.backoffLimit` allows |
/// | `DeadlineExceeded` | invalid-spec | the Job ran longer than `spec.activeDeadlineSeconds` |
/// | `PodFailurePolicy` | invalid-spec | a pod failure matched a `FailJob` rule |
/// | `MaxFailedIndexesExceeded`, `FailedIndexes` | invalid-spec | indexes exhausted `spec.backoffLimitPerIndex` |
/// | anything else | invalid-spec | the condition's message |
pub fn job(component: &str, found: Option<&Job>) -> ComponentHealth {
    let Some(job) = found else {
        return not_found(component, "job");
    };
    let status = job.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let count = |f: fn(&k8s_openapi::api::batch::v1::JobStatus) -> Option<i32>| {
        status.and_then(f).unwrap_or(0)
    };
    let (active, succeeded, failed) = (
        count(|s| s.active),
        count(|s| s.succeeded),
        count(|s| s.failed),
    );
    if holds("Complete").is_some() {
        return ComponentHealth::ready(
            component,
            "Complete",
            format!("completed: {succeeded} succeeded, {failed} failed"),
        );
    }
    if let Some(c) = holds("Failed").or_else(|| holds("FailureTarget")) {
        let reason = non_empty(c.reason.as_deref()).unwrap_or("Failed");
        let detail = non_empty(c.message.as_deref()).unwrap_or(job_failure_meaning(reason));
        return ComponentHealth::failed(
            component,
            reason,
            format!("{detail} ({succeeded} succeeded, {failed} failed)"),
        )
        .with_error(Error::new(
            // Every terminal failure needs a spec change: see the table above.
            ErrorCategory::InvalidSpec,
            format!("job failed: {reason}: {detail}"),
        ));
    }
    if holds("Suspended").is_some() {
        return ComponentHealth::progressing(component, "Suspended", "job is suspended");
    }
    if active > 0 {
        waiting_for(
            component,
            "Running",
            format!("job running: {active} active, {succeeded} succeeded, {failed} failed"),
        )
    } else {
        waiting_for(
            component,
            "Pending",
            format!("job has no active pod yet: {succeeded} succeeded, {failed} failed"),
        )
    }
}

fn job_failure_meaning(reason: &str) -> &'static str {
    match reason {
        "BackoffLimitExceeded" => "pods failed more often than spec.backoffLimit allows",
        "DeadlineExceeded" => "job ran longer than spec.activeDeadlineSeconds",
        "PodFailurePolicy" => "a pod failure matched a FailJob rule of spec.podFailurePolicy",
        "MaxFailedIndexesExceeded" | "FailedIndexes" => {
            "indexes failed more often than spec.backoffLimitPerIndex allows"
        }
        _ => "job failed",
    }
}

/// Health of a PersistentVolumeClaim, from its phase, resize conditions and allocation status.
///
/// | Claim | State | Reason | Error category |
/// |---|---|---|---|
/// | missing | progressing | `NotFound` | missing-downstream-dependency |
/// | `Pending` (or no status yet) | progressing | `Pending` | missing-downstream-dependency |
/// | `Lost` | failed | `Lost` | missing-upstream-dependency |
/// | `Bound`, storage resize `*ResizeInfeasible` | failed | `ResizeInfeasible` | invalid-spec |
/// | `Bound`, `ControllerResizeError` / `NodeResizeError` mentioning quota, exceeded or insufficient | failed | the condition type | resource-exhaustion |
/// | `Bound`, other `ControllerResizeError` / `NodeResizeError` | degraded | the condition type | infrastructure |
/// | `Bound`, `Resizing` / `FileSystemResizePending`, or a resize in progress | progressing | the condition type or `Resizing` | missing-downstream-dependency |
/// | `Bound` | ready | `Bound` | — |
///
/// `Lost` means the claim's PersistentVolume no longer exists: the data is gone and Kubernetes
/// never recovers a lost claim by itself. It is not an infrastructure error (requeueing cannot
/// help) nor resource exhaustion (nothing ran out): an object the claim depends on and the
/// controller does not create is missing, and a user must restore or replace it — the host's
/// reaction to missing-upstream-dependency.
pub fn pvc(component: &str, found: Option<&PersistentVolumeClaim>) -> ComponentHealth {
    let Some(claim) = found else {
        return not_found(component, "persistentvolumeclaim");
    };
    let Some(status) = claim.status.as_ref() else {
        return waiting_for(component, "Pending", "claim has no status yet".to_owned());
    };
    match status.phase.as_deref().unwrap_or("Pending") {
        "Bound" => bound_claim(component, status),
        "Lost" => {
            let volume = claim
                .spec
                .as_ref()
                .and_then(|s| non_empty(s.volume_name.as_deref()))
                .unwrap_or("<unknown>");
            categorized(
                component,
                ErrorCategory::MissingUpstreamDependency,
                "Lost",
                format!("claim lost its PersistentVolume {volume}: the volume no longer exists"),
            )
        }
        _ => waiting_for(
            component,
            "Pending",
            "waiting for a volume to be provisioned and bound".to_owned(),
        ),
    }
}

fn bound_claim(
    component: &str,
    status: &k8s_openapi::api::core::v1::PersistentVolumeClaimStatus,
) -> ComponentHealth {
    let resize = status
        .allocated_resource_statuses
        .as_ref()
        .and_then(|s| s.get("storage"))
        .map(String::as_str);
    if let Some(r @ ("ControllerResizeInfeasible" | "NodeResizeInfeasible")) = resize {
        return categorized(
            component,
            ErrorCategory::InvalidSpec,
            "ResizeInfeasible",
            format!("the requested storage size cannot be provided: {r}"),
        );
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let holding = |types: &[&str]| {
        conditions
            .iter()
            .find(|c| c.status == "True" && types.contains(&c.type_.as_str()))
    };
    if let Some(c) = holding(&["ControllerResizeError", "NodeResizeError"]) {
        let message = non_empty(c.message.as_deref()).unwrap_or("volume resize failed");
        let category = if contains_any(message, &["quota", "exceeded", "insufficient"]) {
            ErrorCategory::ResourceExhaustion
        } else {
            ErrorCategory::Infrastructure
        };
        return categorized(
            component,
            category,
            &c.type_,
            format!("resize failed: {message}"),
        );
    }
    if let Some(c) = holding(&["Resizing", "FileSystemResizePending"]) {
        let message = non_empty(c.message.as_deref()).unwrap_or("volume is being resized");
        return waiting_for(component, &c.type_, message.to_owned());
    }
    if let Some(r @ ("ControllerResizeInProgress" | "NodeResizePending" | "NodeResizeInProgress")) =
        resize
    {
        return waiting_for(
            component,
            "Resizing",
            format!("volume is being resized: {r}"),
        );
    }
    let capacity = status
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.as_str());
    ComponentHealth::ready(
        component,
        "Bound",
        match capacity {
            Some(c) => format!("bound, capacity {c}"),
            None => "bound".to_owned(),
        },
    )
}

/// Health of a Pod, categorized from its status alone. The first row that matches wins.
///
/// | Pod | State | Reason | Error category |
/// |---|---|---|---|
/// | missing | progressing | `NotFound` | missing-downstream-dependency |
/// | `status.reason=Evicted`, message naming a resource (ephemeral-storage, disk, memory, …) | failed | `Evicted` | resource-exhaustion |
/// | `status.reason=Evicted`, otherwise | degraded | `Evicted` | infrastructure |
/// | phase `Succeeded` | ready | `Succeeded` | — |
/// | a container (init containers first) waiting in `ImagePullBackOff` / `ErrImagePull` / `ErrImageNeverPull`, message with unauthorized, authentication required, denied or forbidden | failed | the waiting reason | auth |
/// | the same, message with a network failure or rate limit (timeout, connection refused, no such host, toomanyrequests, …) | degraded | the waiting reason | infrastructure |
/// | the same, otherwise (image not found) | failed | the waiting reason | missing-upstream-dependency |
/// | a container waiting in `InvalidImageName` | failed | `InvalidImageName` | invalid-spec |
/// | a container waiting in `CreateContainerConfigError` about a missing Secret, ConfigMap or key | failed | `CreateContainerConfigError` | missing-upstream-dependency |
/// | a container waiting in `CreateContainerConfigError`, otherwise | failed | `CreateContainerConfigError` | invalid-spec |
/// | a container terminated `OOMKilled`, or last terminated `OOMKilled` and not running ready now | failed | `OOMKilled` | resource-exhaustion |
/// | `PodScheduled=False` reason `Unschedulable`, message with `Insufficient` | failed | `Unschedulable` | resource-exhaustion |
/// | `PodScheduled=False` reason `Unschedulable`, otherwise | progressing | `Unschedulable` | missing-downstream-dependency |
/// | phase `Failed`, reason `DeadlineExceeded` | failed | `DeadlineExceeded` | invalid-spec |
/// | phase `Failed`, otherwise | failed | `status.reason` or `Failed` | — (cause unknown; see [`pod_with_logs`]) |
/// | a container in `CrashLoopBackOff` | degraded | `CrashLoopBackOff` | — (cause unknown) |
/// | phase `Running` and `Ready=True` | ready | `Running` | — |
/// | a container terminated with a non-zero exit code | degraded | `ContainerFailed` | — |
/// | a container not ready after restarts | degraded | `NotReady` | — |
/// | otherwise (scheduling, pulling, starting) | progressing | a container's waiting reason, or the phase | missing-downstream-dependency |
///
/// An uncategorized crash loop is degraded, not failed: the kubelet keeps restarting the
/// container and a failed component would make the host stop applying until the spec changes,
/// while the cause (a dependency still starting, say) may heal by itself. [`pod_with_logs`]
/// finds the cause in the container's log and fails the component when it needs a user.
pub fn pod(component: &str, found: Option<&Pod>) -> ComponentHealth {
    let Some(pod) = found else {
        return not_found(component, "pod");
    };
    let name = pod_name(pod);
    let default_status = k8s_openapi::api::core::v1::PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&default_status);
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let pod_reason = non_empty(status.reason.as_deref());
    let pod_message = non_empty(status.message.as_deref());

    if pod_reason == Some("Evicted") {
        let message = format!(
            "pod {name} was evicted: {}",
            pod_message.unwrap_or("no message")
        );
        let category = if pod_message.is_some_and(|m| {
            contains_any(
                m,
                &[
                    "ephemeral",
                    "storage",
                    "disk",
                    "memory",
                    "emptydir",
                    "low on resource",
                    "pressure",
                    "pids",
                ],
            )
        }) {
            ErrorCategory::ResourceExhaustion
        } else {
            ErrorCategory::Infrastructure
        };
        return categorized(component, category, "Evicted", message);
    }
    if phase == "Succeeded" {
        return ComponentHealth::ready(component, "Succeeded", format!("pod {name} completed"));
    }
    if let Some(h) = container_statuses(pod).find_map(|c| container_problem(component, &name, c)) {
        return h;
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if let Some(c) = conditions.iter().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        let detail = non_empty(c.message.as_deref()).unwrap_or("no node fits");
        let message = format!("pod {name} cannot be scheduled: {detail}");
        return if detail.contains("Insufficient") {
            categorized(
                component,
                ErrorCategory::ResourceExhaustion,
                "Unschedulable",
                message,
            )
        } else {
            waiting_for(component, "Unschedulable", message)
        };
    }
    if phase == "Failed" {
        let reason = pod_reason.unwrap_or("Failed");
        let detail = pod_message
            .map(str::to_owned)
            .or_else(|| failing(pod).map(describe_failure))
            .unwrap_or_else(|| "pod failed".to_owned());
        let message = format!("pod {name} failed: {detail}");
        return if reason == "DeadlineExceeded" {
            categorized(component, ErrorCategory::InvalidSpec, reason, message)
        } else {
            ComponentHealth::failed(component, reason, message)
        };
    }
    if let Some(c) = container_statuses(pod).find(|c| waiting_reason(c) == Some("CrashLoopBackOff"))
    {
        return ComponentHealth::new(
            component,
            HealthState::Degraded,
            "CrashLoopBackOff",
            format!("pod {name}: {}", describe_failure(c)),
        );
    }
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if phase == "Running" && ready {
        return ComponentHealth::ready(
            component,
            "Running",
            format!("pod {name} is running and ready"),
        );
    }
    if let Some(c) = failing(pod) {
        let reason = if terminated(c.state.as_ref()).is_some() {
            "ContainerFailed"
        } else {
            "NotReady"
        };
        return ComponentHealth::new(
            component,
            HealthState::Degraded,
            reason,
            format!("pod {name}: {}", describe_failure(c)),
        );
    }
    let reason =
        container_statuses(pod)
            .find_map(waiting_reason)
            .unwrap_or(if phase == "Running" {
                "NotReady"
            } else {
                phase
            });
    waiting_for(
        component,
        reason,
        format!("pod {name} is not ready yet ({phase}, {reason})"),
    )
}

/// Health of a Pod like [`pod`], refined by the log of its failing container.
///
/// When [`pod`] finds the pod failing without naming a cause — a crash loop, a container
/// terminated with an error, a container not ready after restarts, a failed pod — this reads the
/// last [`LOG_TAIL_LINES`] lines of the log of the [`failing_container`] and categorizes them with
/// [`categorize_log`]. A category found sets the state (failed for auth, invalid-spec,
/// missing-upstream-dependency and resource-exhaustion; degraded for infrastructure; a failed pod
/// stays failed), appends the log line to the message and attaches the error. A log read error
/// or a log without a recognized line leaves the result of [`pod`] unchanged.
///
/// Reading logs needs [`crate::Manifest::with_pod_logs`]; see [`PodLogs`].
pub fn pod_with_logs(component: &str, found: Option<&Pod>, logs: &PodLogs) -> ComponentHealth {
    let base = pod(component, found);
    let Some(p) = found else {
        return base;
    };
    let categorized_already = base
        .errors
        .iter()
        .any(|e| e.category != ErrorCategory::MissingDownstreamDependency);
    if base.state == HealthState::Ready || categorized_already {
        return base;
    }
    let (Some(container), Some(namespace), Some(name)) = (
        failing_container(p),
        non_empty(p.metadata.namespace.as_deref()),
        non_empty(p.metadata.name.as_deref()),
    ) else {
        return base;
    };
    let Ok(text) = logs.read(namespace, name, Some(container), Some(LOG_TAIL_LINES)) else {
        return base;
    };
    let Some((category, line)) = categorize_log(&text) else {
        return base;
    };
    let state = if base.state == HealthState::Failed {
        HealthState::Failed
    } else {
        state_for(category)
    };
    let mut health = ComponentHealth {
        state,
        message: format!("{}; log: {line}", base.message),
        ..base
    };
    health
        .errors
        .retain(|e| e.category != ErrorCategory::MissingDownstreamDependency);
    health.with_error(Error::new(
        category,
        format!("container {container} of pod {namespace}/{name}: {line}"),
    ))
}

/// The name of the first failing container of a pod (init containers first): one waiting in
/// `CrashLoopBackOff`, terminated with a non-zero exit code, or not ready after restarts.
///
/// Use it in `fetch` to read the log [`pod_with_logs`] would read, and keep it in the observation.
pub fn failing_container(pod: &Pod) -> Option<&str> {
    failing(pod).map(|c| c.name.as_str())
}

/// Categorize a log by its most recent recognized failure line: the category and the line,
/// trimmed and cut to [`MAX_LOG_LINE_CHARS`] characters. Lines are searched from the last one up.
///
/// Within one line the categories are tried in this order (matching is case-insensitive; an
/// HTTP status code counts only as a separate word on a line that also says http, status, code,
/// error or response):
///
/// | Category | Line contains |
/// |---|---|
/// | resource-exhaustion | no space left on device, disk quota exceeded, quota exceeded, out of memory, OutOfMemory, cannot allocate memory, MemoryError, insufficient storage, disk full |
/// | auth | permission denied, unauthorized, forbidden, access denied, AccessDenied, authentication failed/required, invalid/bad credentials, not authorized, SignatureDoesNotMatch, InvalidAccessKeyId, ExpiredToken; status 401, 403 |
/// | infrastructure | connection refused/reset, timed out, i/o timeout, handshake timeout, deadline exceeded, TimeoutError/TimeoutException, no such host, name or service not known, name resolution, could not resolve, name does not resolve, network is unreachable, no route to host, service unavailable, bad gateway, gateway timeout; status 502, 503, 504 |
/// | missing-upstream-dependency | not found, NotFound, no such file or directory, does not exist, NoSuchKey, NoSuchBucket, manifest unknown; status 404 |
pub fn categorize_log(text: &str) -> Option<(ErrorCategory, String)> {
    text.lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find_map(|line| {
            categorize_line(line).map(|c| (c, line.chars().take(MAX_LOG_LINE_CHARS).collect()))
        })
}

/// What each category's lines contain: phrases and HTTP status codes, in order of precedence.
const LOG_PATTERNS: &[(ErrorCategory, &[&str], &[&str])] = &[
    (
        ErrorCategory::ResourceExhaustion,
        &[
            "no space left on device",
            "disk quota exceeded",
            "quota exceeded",
            "quotaexceeded",
            "out of memory",
            "outofmemory",
            "cannot allocate memory",
            "memoryerror",
            "insufficient storage",
            "disk full",
        ],
        &["507"],
    ),
    (
        ErrorCategory::Auth,
        &[
            "permission denied",
            "unauthorized",
            "unauthorised",
            "forbidden",
            "access denied",
            "accessdenied",
            "authentication failed",
            "authentication required",
            "invalid credentials",
            "bad credentials",
            "not authorized",
            "signaturedoesnotmatch",
            "invalidaccesskeyid",
            "expiredtoken",
        ],
        &["401", "403"],
    ),
    (
        ErrorCategory::Infrastructure,
        &[
            "connection refused",
            "connection reset",
            "timed out",
            "i/o timeout",
            "handshake timeout",
            "deadline exceeded",
            "timeouterror",
            "timeoutexception",
            "no such host",
            "name or service not known",
            "name resolution",
            "could not resolve",
            "name does not resolve",
            "network is unreachable",
            "no route to host",
            "service unavailable",
            "bad gateway",
            "gateway timeout",
        ],
        &["502", "503", "504"],
    ),
    (
        ErrorCategory::MissingUpstreamDependency,
        &[
            "not found",
            "notfound",
            "no such file or directory",
            "does not exist",
            "nosuchkey",
            "nosuchbucket",
            "manifest unknown",
        ],
        &["404"],
    ),
];

fn categorize_line(line: &str) -> Option<ErrorCategory> {
    let lower = line.to_lowercase();
    let http = ["http", "status", "code", "error", "response"]
        .iter()
        .any(|w| lower.contains(w));
    let has_code = |codes: &[&str]| {
        http && lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| codes.contains(&word))
    };
    LOG_PATTERNS
        .iter()
        .find(|(_, phrases, codes)| phrases.iter().any(|p| lower.contains(p)) || has_code(codes))
        .map(|(category, _, _)| *category)
}

fn pod_name(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("<unnamed>");
    match non_empty(pod.metadata.namespace.as_deref()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Init containers first, then the app containers.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_deref());
    let app = status.and_then(|s| s.container_statuses.as_deref());
    init.unwrap_or_default()
        .iter()
        .chain(app.unwrap_or_default().iter())
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| non_empty(w.reason.as_deref()))
}

fn waiting_message(c: &ContainerStatus) -> &str {
    c.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| non_empty(w.message.as_deref()))
        .unwrap_or("")
}

fn terminated(state: Option<&ContainerState>) -> Option<&ContainerStateTerminated> {
    state.and_then(|s| s.terminated.as_ref())
}

fn oom_killed(t: Option<&ContainerStateTerminated>) -> bool {
    t.and_then(|t| t.reason.as_deref()) == Some("OOMKilled")
}

fn running_ready(c: &ContainerStatus) -> bool {
    c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn is_failing(c: &ContainerStatus) -> bool {
    if let Some(t) = terminated(c.state.as_ref()) {
        return t.exit_code != 0;
    }
    waiting_reason(c) == Some("CrashLoopBackOff") || (!c.ready && c.restart_count > 0)
}

fn failing(pod: &Pod) -> Option<&ContainerStatus> {
    container_statuses(pod).find(|c| is_failing(c))
}

/// "container web exited with code 1 (Error) after 3 restarts", from the current or last state.
fn describe_failure(c: &ContainerStatus) -> String {
    let exit = terminated(c.state.as_ref()).or_else(|| terminated(c.last_state.as_ref()));
    let mut text = format!("container {}", c.name);
    text.push_str(if waiting_reason(c) == Some("CrashLoopBackOff") {
        " is crash-looping"
    } else if terminated(c.state.as_ref()).is_some() {
        " exited"
    } else {
        " is not ready"
    });
    if let Some(t) = exit {
        let reason = non_empty(t.reason.as_deref()).unwrap_or("Error");
        text.push_str(&format!(", last exit code {} ({reason})", t.exit_code));
        if let Some(m) = non_empty(t.message.as_deref()) {
            text.push_str(&format!(": {m}"));
        }
    }
    text.push_str(&format!(", {} restarts", c.restart_count));
    text
}

/// A container problem whose category the status tells: image pulls, config errors, OOM kills.
fn container_problem(component: &str, pod: &str, c: &ContainerStatus) -> Option<ComponentHealth> {
    let say = |reason: &str, detail: &str| {
        if detail.is_empty() {
            format!("container {} of pod {pod}: {reason}", c.name)
        } else {
            format!("container {} of pod {pod}: {reason}: {detail}", c.name)
        }
    };
    if let Some(reason) = waiting_reason(c) {
        let detail = waiting_message(c);
        let category = match reason {
            "ImagePullBackOff" | "ErrImagePull" | "ErrImageNeverPull" => {
                Some(image_pull_category(detail))
            }
            "InvalidImageName" => Some(ErrorCategory::InvalidSpec),
            "CreateContainerConfigError" => Some(
                if detail.is_empty()
                    || contains_any(
                        detail,
                        &[
                            "not found",
                            "couldn't find",
                            "does not exist",
                            "secret",
                            "configmap",
                        ],
                    )
                {
                    ErrorCategory::MissingUpstreamDependency
                } else {
                    ErrorCategory::InvalidSpec
                },
            ),
            _ => None,
        };
        if let Some(category) = category {
            return Some(categorized(
                component,
                category,
                reason,
                say(reason, detail),
            ));
        }
    }
    let current = terminated(c.state.as_ref());
    if oom_killed(current) || (!running_ready(c) && oom_killed(terminated(c.last_state.as_ref()))) {
        return Some(categorized(
            component,
            ErrorCategory::ResourceExhaustion,
            "OOMKilled",
            say(
                "OOMKilled",
                &format!("out of memory, {} restarts", c.restart_count),
            ),
        ));
    }
    None
}

/// The category of an image pull failure, from the kubelet's message.
fn image_pull_category(message: &str) -> ErrorCategory {
    if contains_any(
        message,
        &[
            "unauthorized",
            "authentication required",
            "denied",
            "forbidden",
        ],
    ) {
        ErrorCategory::Auth
    } else if contains_any(
        message,
        &[
            "timeout",
            "timed out",
            "connection refused",
            "connection reset",
            "no such host",
            "network is unreachable",
            "no route to host",
            "toomanyrequests",
            "rate limit",
            "service unavailable",
        ],
    ) {
        ErrorCategory::Infrastructure
    } else {
        ErrorCategory::MissingUpstreamDependency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    fn obj<T: DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn categories(h: &ComponentHealth) -> Vec<ErrorCategory> {
        h.errors.iter().map(|e| e.category).collect()
    }

    fn assert_health(
        h: &ComponentHealth,
        state: HealthState,
        reason: &str,
        cats: &[ErrorCategory],
    ) {
        assert_eq!(h.state, state, "{h:?}");
        assert_eq!(h.reason, reason, "{h:?}");
        assert_eq!(categories(h), cats, "{h:?}");
    }

    use ErrorCategory::*;
    use HealthState::{Degraded, Failed, Progressing, Ready};

    // ---- deployment / exists ----

    fn dep(replicas: i32, available: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                available_replicas: Some(available),
                updated_replicas: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn deployment_health_follows_replicas() {
        assert_eq!(
            deployment("Deployment", Some(&dep(3, 3))).state,
            HealthState::Ready
        );
        assert_eq!(
            deployment("Deployment", Some(&dep(3, 1))).state,
            HealthState::Progressing
        );
        let missing = deployment("Deployment", None);
        assert_eq!(
            missing.errors[0].category,
            ErrorCategory::MissingDownstreamDependency
        );
        assert_eq!(missing.errors[0].message, "deployment not found");
    }

    #[test]
    fn health_module_reexports_the_inspectors() {
        assert_eq!(
            crate::health::deployment("D", Some(&dep(1, 1))),
            deployment("D", Some(&dep(1, 1)))
        );
        assert_eq!(
            crate::health::exists::<Deployment>("Service", None),
            exists::<Deployment>("Service", None)
        );
    }

    #[test]
    fn exists_is_ready_when_found() {
        assert_health(&exists("Service", Some(&())), Ready, "Exists", &[]);
        let missing = exists::<()>("Service", None);
        assert_health(
            &missing,
            Progressing,
            "NotFound",
            &[MissingDownstreamDependency],
        );
        assert_eq!(missing.errors[0].message, "Service not found");
    }

    // ---- job ----

    fn job_with(status: Value) -> Job {
        obj(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "dl", "namespace": "ns"}, "status": status}))
    }

    fn job_condition(type_: &str, reason: &str, message: &str) -> Job {
        job_with(json!({"failed": 2, "succeeded": 0, "conditions": [
            {"type": type_, "status": "True", "reason": reason, "message": message}
        ]}))
    }

    #[test]
    fn missing_job_is_progressing() {
        assert_health(
            &job("DownloadJob", None),
            Progressing,
            "NotFound",
            &[MissingDownstreamDependency],
        );
    }

    #[test]
    fn complete_job_is_ready() {
        let h = job(
            "DownloadJob",
            Some(&job_with(json!({"succeeded": 1, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"}
            ]}))),
        );
        assert_health(&h, Ready, "Complete", &[]);
        assert!(h.message.contains("1 succeeded"));
    }

    #[test]
    fn failed_job_is_failed_with_invalid_spec_per_reason() {
        for reason in [
            "BackoffLimitExceeded",
            "DeadlineExceeded",
            "PodFailurePolicy",
            "MaxFailedIndexesExceeded",
            "FailedIndexes",
            "SomethingNew",
        ] {
            let h = job(
                "DownloadJob",
                Some(&job_condition("Failed", reason, "Job has failed")),
            );
            assert_health(&h, Failed, reason, &[InvalidSpec]);
            assert!(h.errors[0].message.contains(reason));
            assert!(h.message.contains("2 failed"), "{h:?}");
        }
    }

    #[test]
    fn failure_target_counts_as_failed_and_meaning_fills_missing_message() {
        let h = job(
            "DownloadJob",
            Some(&job_with(json!({"conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}
            ]}))),
        );
        assert_health(&h, Failed, "DeadlineExceeded", &[InvalidSpec]);
        assert!(h.message.contains("activeDeadlineSeconds"), "{h:?}");
        let no_reason = job(
            "DownloadJob",
            Some(&job_with(
                json!({"conditions": [{"type": "Failed", "status": "True"}]}),
            )),
        );
        assert_health(&no_reason, Failed, "Failed", &[InvalidSpec]);
    }

    #[test]
    fn false_conditions_are_ignored() {
        let h = job(
            "DownloadJob",
            Some(&job_with(json!({"active": 1, "conditions": [
                {"type": "Failed", "status": "False"},
                {"type": "Complete", "status": "False"}
            ]}))),
        );
        assert_health(&h, Progressing, "Running", &[MissingDownstreamDependency]);
    }

    #[test]
    fn running_pending_and_suspended_jobs_progress() {
        let running = job("J", Some(&job_with(json!({"active": 2, "failed": 1}))));
        assert_health(
            &running,
            Progressing,
            "Running",
            &[MissingDownstreamDependency],
        );
        assert!(running.message.contains("2 active"));
        assert_health(
            &job("J", Some(&job_with(json!({})))),
            Progressing,
            "Pending",
            &[MissingDownstreamDependency],
        );
        let no_status: Job = obj(json!({"metadata": {"name": "j"}}));
        assert_health(
            &job("J", Some(&no_status)),
            Progressing,
            "Pending",
            &[MissingDownstreamDependency],
        );
        assert_health(
            &job(
                "J",
                Some(&job_with(json!({"conditions": [
                    {"type": "Suspended", "status": "True", "reason": "JobSuspended"}
                ]}))),
            ),
            Progressing,
            "Suspended",
            &[],
        );
    }

    // ---- pvc ----

    fn claim(status: Value) -> PersistentVolumeClaim {
        obj(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "ns"},
            "spec": {"volumeName": "pv-1"}, "status": status}))
    }

    #[test]
    fn missing_and_pending_claims_progress() {
        assert_health(
            &pvc("Storage", None),
            Progressing,
            "NotFound",
            &[MissingDownstreamDependency],
        );
        assert_health(
            &pvc("Storage", Some(&claim(json!({"phase": "Pending"})))),
            Progressing,
            "Pending",
            &[MissingDownstreamDependency],
        );
        let no_status: PersistentVolumeClaim = obj(json!({"metadata": {"name": "d"}}));
        assert_health(
            &pvc("Storage", Some(&no_status)),
            Progressing,
            "Pending",
            &[MissingDownstreamDependency],
        );
    }

    #[test]
    fn bound_claim_is_ready_with_capacity() {
        let h = pvc(
            "Storage",
            Some(&claim(
                json!({"phase": "Bound", "capacity": {"storage": "10Gi"}}),
            )),
        );
        assert_health(&h, Ready, "Bound", &[]);
        assert_eq!(h.message, "bound, capacity 10Gi");
        let h = pvc("Storage", Some(&claim(json!({"phase": "Bound"}))));
        assert_eq!(h.message, "bound");
    }

    #[test]
    fn lost_claim_fails_as_missing_upstream() {
        let h = pvc("Storage", Some(&claim(json!({"phase": "Lost"}))));
        assert_health(&h, Failed, "Lost", &[MissingUpstreamDependency]);
        assert!(h.message.contains("pv-1"));
    }

    #[test]
    fn claim_resize_states() {
        let bound_with = |extra: Value| {
            let mut status = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
            if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            pvc("Storage", Some(&claim(status)))
        };
        assert_health(
            &bound_with(
                json!({"allocatedResourceStatuses": {"storage": "ControllerResizeInfeasible"}}),
            ),
            Failed,
            "ResizeInfeasible",
            &[InvalidSpec],
        );
        assert_health(
            &bound_with(
                json!({"conditions": [{"type": "ControllerResizeError", "status": "True",
                "message": "exceeded quota: storage limit"}]}),
            ),
            Failed,
            "ControllerResizeError",
            &[ResourceExhaustion],
        );
        assert_health(
            &bound_with(
                json!({"conditions": [{"type": "NodeResizeError", "status": "True",
                "message": "rpc error: connection lost"}]}),
            ),
            Degraded,
            "NodeResizeError",
            &[Infrastructure],
        );
        assert_health(
            &bound_with(
                json!({"conditions": [{"type": "FileSystemResizePending", "status": "True"}]}),
            ),
            Progressing,
            "FileSystemResizePending",
            &[MissingDownstreamDependency],
        );
        assert_health(
            &bound_with(
                json!({"conditions": [{"type": "Resizing", "status": "True", "message": "resizing"}]}),
            ),
            Progressing,
            "Resizing",
            &[MissingDownstreamDependency],
        );
        assert_health(
            &bound_with(json!({"allocatedResourceStatuses": {"storage": "NodeResizePending"}})),
            Progressing,
            "Resizing",
            &[MissingDownstreamDependency],
        );
        assert_health(
            &bound_with(json!({"conditions": [{"type": "Resizing", "status": "False"}]})),
            Ready,
            "Bound",
            &[],
        );
    }

    // ---- pod ----

    fn pod_with(status: Value) -> Pod {
        obj(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop"}, "status": status}))
    }

    fn waiting(reason: &str, message: &str) -> Pod {
        pod_with(json!({"phase": "Pending", "containerStatuses": [{
            "name": "web", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}
        }]}))
    }

    fn container(state: Value, last: Value, ready: bool, restarts: i32) -> Value {
        json!({"name": "web", "image": "img", "imageID": "", "ready": ready,
            "restartCount": restarts, "state": state, "lastState": last})
    }

    fn running_pod(containers: Value, ready: bool) -> Pod {
        pod_with(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": containers}))
    }

    fn crash_loop(last_reason: &str, exit_code: i32) -> Pod {
        running_pod(
            json!([container(
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}),
                json!({"terminated": {"exitCode": exit_code, "reason": last_reason}}),
                false,
                5
            )]),
            false,
        )
    }

    #[test]
    fn missing_pod_progresses() {
        assert_health(
            &pod("Pod", None),
            Progressing,
            "NotFound",
            &[MissingDownstreamDependency],
        );
    }

    #[test]
    fn image_pull_failures_are_categorized_by_message() {
        let cases = [
            (
                "ErrImagePull",
                "failed to pull image: 401 Unauthorized",
                Failed,
                Auth,
            ),
            (
                "ImagePullBackOff",
                "Back-off pulling image: authentication required",
                Failed,
                Auth,
            ),
            (
                "ErrImagePull",
                "pull access denied for foo, repository does not exist or may require 'docker login'",
                Failed,
                Auth,
            ),
            (
                "ImagePullBackOff",
                "Back-off pulling image \"nginx:nope\"",
                Failed,
                MissingUpstreamDependency,
            ),
            (
                "ErrImagePull",
                "rpc error: manifest for nginx:nope not found: manifest unknown",
                Failed,
                MissingUpstreamDependency,
            ),
            ("ErrImageNeverPull", "", Failed, MissingUpstreamDependency),
            (
                "ErrImagePull",
                "dial tcp: lookup registry.local: no such host",
                Degraded,
                Infrastructure,
            ),
            (
                "ErrImagePull",
                "toomanyrequests: You have reached your pull rate limit",
                Degraded,
                Infrastructure,
            ),
            (
                "InvalidImageName",
                "couldn't parse image reference",
                Failed,
                InvalidSpec,
            ),
        ];
        for (reason, message, state, category) in cases {
            let h = pod("Pod", Some(&waiting(reason, message)));
            assert_health(&h, state, reason, &[category]);
            assert!(
                h.message.contains("container web of pod shop/web-0"),
                "{h:?}"
            );
        }
    }

    #[test]
    fn create_container_config_errors() {
        for message in [
            "secret \"db-creds\" not found",
            "configmap \"cfg\" not found",
            "couldn't find key password in Secret shop/db",
            "",
        ] {
            assert_health(
                &pod("Pod", Some(&waiting("CreateContainerConfigError", message))),
                Failed,
                "CreateContainerConfigError",
                &[MissingUpstreamDependency],
            );
        }
        assert_health(
            &pod(
                "Pod",
                Some(&waiting(
                    "CreateContainerConfigError",
                    "container has runAsNonRoot and image will run as root",
                )),
            ),
            Failed,
            "CreateContainerConfigError",
            &[InvalidSpec],
        );
    }

    #[test]
    fn init_container_problems_come_first() {
        let p = pod_with(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull", "message": "403 Forbidden"}}}],
            "containerStatuses": [{"name": "web", "image": "img", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        let h = pod("Pod", Some(&p));
        assert_health(&h, Failed, "ErrImagePull", &[Auth]);
        assert!(h.message.contains("container init"));
    }

    #[test]
    fn oom_kills_are_resource_exhaustion() {
        assert_health(
            &pod("Pod", Some(&crash_loop("OOMKilled", 137))),
            Failed,
            "OOMKilled",
            &[ResourceExhaustion],
        );
        let terminated_now = pod_with(json!({"phase": "Failed", "containerStatuses": [container(
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), json!({}), false, 0)]}));
        assert_health(
            &pod("Pod", Some(&terminated_now)),
            Failed,
            "OOMKilled",
            &[ResourceExhaustion],
        );
        // Recovered: running and ready again after an earlier OOM kill.
        let recovered = running_pod(
            json!([container(
                json!({"running": {}}),
                json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
                true,
                1
            )]),
            true,
        );
        assert_health(&pod("Pod", Some(&recovered)), Ready, "Running", &[]);
    }

    #[test]
    fn evictions() {
        let evicted = |message: &str| {
            pod(
                "Pod",
                Some(&pod_with(
                    json!({"phase": "Failed", "reason": "Evicted", "message": message}),
                )),
            )
        };
        for m in [
            "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi",
            "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.",
            "The node had condition: [DiskPressure].",
            "The node was low on resource: memory.",
        ] {
            assert_health(&evicted(m), Failed, "Evicted", &[ResourceExhaustion]);
        }
        assert_health(
            &evicted("node is shutting down"),
            Degraded,
            "Evicted",
            &[Infrastructure],
        );
    }

    #[test]
    fn unschedulable_pods() {
        let unschedulable = |message: &str| {
            pod(
                "Pod",
                Some(&pod_with(
                    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                    "status": "False", "reason": "Unschedulable", "message": message}]}),
                )),
            )
        };
        assert_health(
            &unschedulable("0/3 nodes are available: 3 Insufficient memory."),
            Failed,
            "Unschedulable",
            &[ResourceExhaustion],
        );
        assert_health(
            &unschedulable(
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            ),
            Progressing,
            "Unschedulable",
            &[MissingDownstreamDependency],
        );
    }

    #[test]
    fn succeeded_and_ready_pods_are_ready() {
        assert_health(
            &pod("Pod", Some(&pod_with(json!({"phase": "Succeeded"})))),
            Ready,
            "Succeeded",
            &[],
        );
        let p = running_pod(
            json!([container(json!({"running": {}}), json!({}), true, 0)]),
            true,
        );
        assert_health(&pod("Pod", Some(&p)), Ready, "Running", &[]);
    }

    #[test]
    fn failed_pods() {
        let deadline = pod_with(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert_health(
            &pod("Pod", Some(&deadline)),
            Failed,
            "DeadlineExceeded",
            &[InvalidSpec],
        );
        let errored = pod_with(json!({"phase": "Failed", "containerStatuses": [container(
            json!({"terminated": {"exitCode": 2, "reason": "Error"}}), json!({}), false, 0)]}));
        let h = pod("Pod", Some(&errored));
        assert_health(&h, Failed, "Failed", &[]);
        assert!(h.message.contains("exit code 2"), "{h:?}");
    }

    #[test]
    fn crash_loops_and_failing_containers_are_degraded() {
        let h = pod("Pod", Some(&crash_loop("Error", 1)));
        assert_health(&h, Degraded, "CrashLoopBackOff", &[]);
        assert!(h.message.contains("crash-looping"), "{h:?}");
        assert!(h.message.contains("exit code 1"), "{h:?}");
        let exited = running_pod(
            json!([container(
                json!({"terminated": {"exitCode": 3}}),
                json!({}),
                false,
                0
            )]),
            false,
        );
        assert_health(&pod("Pod", Some(&exited)), Degraded, "ContainerFailed", &[]);
        let not_ready = running_pod(
            json!([container(
                json!({"running": {}}),
                json!({"terminated": {"exitCode": 1}}),
                false,
                2
            )]),
            false,
        );
        assert_health(&pod("Pod", Some(&not_ready)), Degraded, "NotReady", &[]);
    }

    #[test]
    fn starting_pods_progress() {
        assert_health(
            &pod("Pod", Some(&waiting("ContainerCreating", ""))),
            Progressing,
            "ContainerCreating",
            &[MissingDownstreamDependency],
        );
        assert_health(
            &pod("Pod", Some(&pod_with(json!({})))),
            Progressing,
            "Pending",
            &[MissingDownstreamDependency],
        );
        let no_status: Pod = obj(json!({"metadata": {"name": "p"}}));
        assert_health(
            &pod("Pod", Some(&no_status)),
            Progressing,
            "Pending",
            &[MissingDownstreamDependency],
        );
        let starting = running_pod(
            json!([container(json!({"running": {}}), json!({}), false, 0)]),
            false,
        );
        assert_health(
            &pod("Pod", Some(&starting)),
            Progressing,
            "NotReady",
            &[MissingDownstreamDependency],
        );
    }

    #[test]
    fn failing_container_is_found() {
        assert_eq!(failing_container(&crash_loop("Error", 1)), Some("web"));
        let ok = running_pod(
            json!([container(json!({"running": {}}), json!({}), true, 0)]),
            true,
        );
        assert_eq!(failing_container(&ok), None);
        let completed_init = pod_with(json!({"phase": "Running",
            "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        assert_eq!(failing_container(&completed_init), None);
    }

    // ---- logs ----

    #[test]
    fn categorize_log_recognizes_common_failures() {
        let cases = [
            ("open /models/x: permission denied", Auth),
            (
                "botocore.exceptions.ClientError: An error occurred (403) when calling HeadObject",
                Auth,
            ),
            ("HTTP error 401 while fetching token", Auth),
            (
                "huggingface_hub.errors: 401 Client Error: Unauthorized for url",
                Auth,
            ),
            ("Error: Forbidden", Auth),
            (
                "write /data/blob: no space left on device",
                ResourceExhaustion,
            ),
            (
                "OSError: [Errno 122] Disk quota exceeded",
                ResourceExhaustion,
            ),
            (
                "torch.OutOfMemoryError: CUDA out of memory",
                ResourceExhaustion,
            ),
            ("fatal: cannot allocate memory", ResourceExhaustion),
            (
                "FileNotFoundError: [Errno 2] No such file or directory: '/cfg'",
                MissingUpstreamDependency,
            ),
            (
                "repository Not Found for url: https://hf.co/x",
                MissingUpstreamDependency,
            ),
            (
                "HTTP status 404 for s3://bucket/key",
                MissingUpstreamDependency,
            ),
            (
                "dial tcp 10.0.0.5:5432: connect: connection refused",
                Infrastructure,
            ),
            ("read tcp: i/o timeout", Infrastructure),
            ("dial tcp: lookup db.shop.svc: no such host", Infrastructure),
            (
                "requests.exceptions.ConnectTimeout: connection timed out",
                Infrastructure,
            ),
            ("upstream returned status 503", Infrastructure),
        ];
        for (line, category) in cases {
            assert_eq!(
                categorize_log(line),
                Some((category, line.to_owned())),
                "{line}"
            );
        }
    }

    #[test]
    fn categorize_log_ignores_unrecognized_and_bare_numbers() {
        assert_eq!(categorize_log(""), None);
        assert_eq!(
            categorize_log("starting server\nlistening on :8080\n"),
            None
        );
        assert_eq!(categorize_log("downloaded 404 files"), None);
        assert_eq!(categorize_log("processed 401 rows in 403 ms"), None);
    }

    #[test]
    fn categorize_log_prefers_the_most_recent_line_and_trims() {
        let log = "connection refused\nretrying\n   Error: no space left on device   \n\nbye\n";
        assert_eq!(
            categorize_log(log),
            Some((
                ResourceExhaustion,
                "Error: no space left on device".to_owned()
            ))
        );
        // Within a line, resource exhaustion beats auth beats infrastructure beats not found.
        assert_eq!(
            categorize_log("permission denied: no space left on device").map(|c| c.0),
            Some(ResourceExhaustion)
        );
        assert_eq!(
            categorize_log("403 forbidden: connection refused").map(|c| c.0),
            Some(Auth)
        );
        assert_eq!(
            categorize_log("service not found: connection refused").map(|c| c.0),
            Some(Infrastructure)
        );
    }

    #[test]
    fn categorize_log_cuts_long_lines() {
        let line = format!("{} no space left on device", "é".repeat(400));
        let (category, found) = categorize_log(&line).unwrap();
        assert_eq!(category, ResourceExhaustion);
        assert_eq!(found.chars().count(), MAX_LOG_LINE_CHARS);
    }

    fn logs(text: &str) -> PodLogs {
        PodLogs::from_map(Default::default()).with_log("shop", "web-0", text)
    }

    #[test]
    fn pod_with_logs_categorizes_a_crash_loop_from_its_log() {
        let p = crash_loop("Error", 1);
        let h = pod_with_logs(
            "Pod",
            Some(&p),
            &logs("loading model\nPermissionError: [Errno 13] Permission denied: '/models'\n"),
        );
        assert_health(&h, Failed, "CrashLoopBackOff", &[Auth]);
        assert!(h.message.contains("Permission denied"), "{h:?}");
        assert!(
            h.errors[0]
                .message
                .contains("container web of pod shop/web-0")
        );
        let h = pod_with_logs("Pod", Some(&p), &logs("dial tcp: connection refused"));
        assert_health(&h, Degraded, "CrashLoopBackOff", &[Infrastructure]);
    }

    #[test]
    fn pod_with_logs_keeps_failed_pods_failed_and_reads_only_the_tail() {
        let failed = pod_with(json!({"phase": "Failed", "containerStatuses": [container(
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}), json!({}), false, 0)]}));
        let h = pod_with_logs("Pod", Some(&failed), &logs("GET http://x: i/o timeout"));
        assert_health(&h, Failed, "Failed", &[Infrastructure]);
        // The culprit is more than LOG_TAIL_LINES lines back: not read.
        let old = format!("no space left on device\n{}", "ok\n".repeat(60));
        assert_health(
            &pod_with_logs("Pod", Some(&failed), &logs(&old)),
            Failed,
            "Failed",
            &[],
        );
    }

    #[test]
    fn pod_with_logs_refines_not_ready_after_restarts() {
        let not_ready = running_pod(
            json!([container(
                json!({"running": {}}),
                json!({"terminated": {"exitCode": 1}}),
                false,
                2
            )]),
            false,
        );
        let h = pod_with_logs(
            "Pod",
            Some(&not_ready),
            &logs("Error: secret key.json: no such file or directory"),
        );
        assert_health(&h, Failed, "NotReady", &[MissingUpstreamDependency]);
    }

    #[test]
    fn pod_with_logs_falls_back_to_pod() {
        let crashing = crash_loop("Error", 1);
        // Read errors are ignored.
        let refused = PodLogs::from_map(Default::default()).with_error(
            "shop",
            "web-0",
            Error::new(Auth, "plugin may not read pod logs"),
        );
        assert_eq!(
            pod_with_logs("Pod", Some(&crashing), &refused),
            pod("Pod", Some(&crashing))
        );
        // No recognized line.
        assert_eq!(
            pod_with_logs("Pod", Some(&crashing), &logs("bye")),
            pod("Pod", Some(&crashing))
        );
        // Status already names the cause: logs are not consulted.
        let oom = crash_loop("OOMKilled", 137);
        assert_eq!(
            pod_with_logs("Pod", Some(&oom), &logs("permission denied")),
            pod("Pod", Some(&oom))
        );
        // Healthy, starting or missing pods are not inspected.
        let ok = running_pod(
            json!([container(json!({"running": {}}), json!({}), true, 0)]),
            true,
        );
        assert_health(
            &pod_with_logs("Pod", Some(&ok), &logs("permission denied")),
            Ready,
            "Running",
            &[],
        );
        let starting = waiting("ContainerCreating", "");
        assert_eq!(
            pod_with_logs("Pod", Some(&starting), &logs("permission denied")),
            pod("Pod", Some(&starting))
        );
        assert_eq!(
            pod_with_logs("Pod", None, &logs("permission denied")),
            pod("Pod", None)
        );
    }
}
