//! The job controller's part (and the TTL-after-finished controller's): a Job's Pods, NonIndexed
//! and Indexed, suspension, the active deadline, completion and the status, as
//! `pkg/controller/job` does them.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::node::{container_id, containers};
use super::{
    JOB_CONTROLLER, JOBS, PODS, Writes, generate_name_prefix, is_ready, name, namespace, new_pod,
    random_suffix, template_pod,
};
use crate::cluster::{parse_timestamp, timestamp};
use crate::gc;

/// The finalizer the job controller puts on its Pods until it has counted them
/// (`batch.JobTrackingFinalizer`).
pub(super) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// How many finished Pods a pass takes into `uncountedTerminatedPods` (`MaxUncountedPods`).
const MAX_UNCOUNTED_PODS: usize = 500;

/// Whether `pod` carries the job controller's [`TRACKING_FINALIZER`].
pub(super) fn has_tracking_finalizer(pod: &Value) -> bool {
    pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

/// Removes the job controller's finalizer from `pod` (`removeTrackingFinalizerPatch`); whether
/// it was removed (a Pod already gone counts as removed).
pub(super) fn release_tracked_pod(writes: &mut Writes<'_>, pod: &Value) -> bool {
    let mut body = pod.clone();
    let Some(metadata) = body["metadata"].as_object_mut() else {
        return false;
    };
    if let Some(Value::Array(finalizers)) = metadata.get_mut("finalizers") {
        finalizers.retain(|f| f != TRACKING_FINALIZER);
        if finalizers.is_empty() {
            metadata.remove("finalizers");
        }
    }
    let gone = |writes: &Writes<'_>| {
        let (Some(namespace), Some(name)) = (namespace(pod), name(pod)) else {
            return true;
        };
        writes
            .get(PODS, namespace, name)
            .is_none_or(|stored| stored["metadata"]["uid"] != pod["metadata"]["uid"])
    };
    writes.update("remove the job tracking finalizer of", PODS, body) || gone(writes)
}

/// `isPodFailed`: a Pod failed, or, unless the Job replaces only failed Pods (it has a
/// `podFailurePolicy`, or `podReplacementPolicy: Failed`), deleted before it succeeded.
fn is_pod_failed(pod: &Value, job: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str();
    phase == Some("Failed")
        || (!only_replace_failed_pods(job) && gc::is_deleting(pod) && phase != Some("Succeeded"))
}

/// `onlyReplaceFailedPods`: a Job with a `podFailurePolicy` or `podReplacementPolicy: Failed`
/// waits for a deleted Pod to fail before it counts or replaces it.
fn only_replace_failed_pods(job: &Value) -> bool {
    job["spec"]["podReplacementPolicy"] == "Failed" || job["spec"]["podFailurePolicy"].is_object()
}

/// What a Job's `podFailurePolicy` says of a failed Pod (`matchPodFailurePolicy`).
#[derive(Debug, PartialEq, Eq)]
enum PolicyVerdict {
    /// No rule matched, or a `Count` rule: the failure counts.
    Count,
    /// An `Ignore` rule: the failure does not count towards the backoff limit.
    Ignore,
    /// A `FailJob` rule: the Job fails with this message.
    FailJob(String),
    /// A `FailIndex` rule (with `backoffLimitPerIndex`): the failure counts and its index fails.
    FailIndex,
}

/// `matchPodFailurePolicy`: the first rule of `job`'s `podFailurePolicy` that `pod` (failed)
/// matches, by a container's non-zero exit code (`onExitCodes`, `In` or `NotIn` its values,
/// of the named container if one is named) or by a condition (`onPodConditions`, status True
/// unless said).
fn match_pod_failure_policy(job: &Value, pod: &Value) -> PolicyVerdict {
    let rules = job["spec"]["podFailurePolicy"]["rules"].as_array();
    let (namespace, name) = (
        namespace(pod).unwrap_or_default(),
        name(pod).unwrap_or_default(),
    );
    for (index, rule) in rules.into_iter().flatten().enumerate() {
        let action = rule["action"].as_str().unwrap_or_default();
        let matched = if let Some(codes) = rule.get("onExitCodes").filter(|c| c.is_object()) {
            matching_exit(pod, codes).map(|(container, code)| {
                format!(
                    "Container {container} for pod {namespace}/{name} failed with exit code \
                     {code} matching {action} rule at index {index}"
                )
            })
        } else if let Some(patterns) = rule["onPodConditions"].as_array() {
            matching_condition(pod, patterns).map(|kind| {
                format!(
                    "Pod {namespace}/{name} has condition {kind} matching {action} rule at \
                     index {index}"
                )
            })
        } else {
            None
        };
        if let Some(message) = matched {
            return match action {
                "Ignore" => PolicyVerdict::Ignore,
                "FailJob" => PolicyVerdict::FailJob(message),
                "FailIndex" if !job["spec"]["backoffLimitPerIndex"].is_null() => {
                    PolicyVerdict::FailIndex
                }
                _ => PolicyVerdict::Count,
            };
        }
    }
    PolicyVerdict::Count
}

/// The annotations counting an index's failures (`JobIndexFailureCountAnnotation`) and its
/// failures a pod failure policy ignored (`JobIndexIgnoredFailureCountAnnotation`).
const INDEX_FAILURE_COUNT: (&str, &str) = (
    "batch.kubernetes.io/job-index-failure-count",
    "batch.kubernetes.io/job-index-ignored-failure-count",
);

/// A Pod's index failure counts (`getIndexFailureCount`, and the ignored ones).
fn index_failure_counts(pod: &Value) -> (i64, i64) {
    let read = |key: &str| {
        pod["metadata"]["annotations"][key]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .unwrap_or(0)
    };
    (read(INDEX_FAILURE_COUNT.0), read(INDEX_FAILURE_COUNT.1))
}

/// `isIndexFailed`: a failed Pod whose failure counts and whose index had failed
/// `backoffLimitPerIndex` times before, or that a `FailIndex` rule matches.
fn is_index_failed(job: &Value, pod: &Value, limit: i64) -> bool {
    if !is_pod_failed(pod, job) {
        return false;
    }
    match match_pod_failure_policy(job, pod) {
        PolicyVerdict::FailIndex => true,
        PolicyVerdict::Ignore => false,
        _ => index_failure_counts(pod).0 >= limit,
    }
}

/// `getNewIndexFailureCounts`: the counts a replacement of `replaced` (failed) starts with.
fn next_index_failure_counts(job: &Value, replaced: &Value) -> (i64, i64) {
    let (failures, ignored) = index_failure_counts(replaced);
    if match_pod_failure_policy(job, replaced) == PolicyVerdict::Ignore {
        (failures, ignored + 1)
    } else {
        (failures + 1, ignored)
    }
}

/// `matchOnExitCodes`: the first container (regular, then init) that terminated with a non-zero
/// exit code the requirement matches: its name and the code.
fn matching_exit<'a>(pod: &'a Value, requirement: &Value) -> Option<(&'a str, i64)> {
    let values: Vec<i64> = requirement["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let operator_in = requirement["operator"] == "In";
    ["containerStatuses", "initContainerStatuses"]
        .into_iter()
        .flat_map(|key| pod["status"][key].as_array().into_iter().flatten())
        .find_map(|status| {
            let name = status["name"].as_str()?;
            if requirement["containerName"]
                .as_str()
                .is_some_and(|wanted| wanted != name)
            {
                return None;
            }
            let code = status["state"]["terminated"]["exitCode"].as_i64()?;
            (code != 0 && values.contains(&code) == operator_in).then_some((name, code))
        })
}

/// `matchOnPodConditions`: the type of the first condition of `pod` a pattern matches.
fn matching_condition<'a>(pod: &'a Value, patterns: &[Value]) -> Option<&'a str> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| {
            patterns.iter().any(|p| {
                p["type"] == condition["type"]
                    && condition["status"] == p["status"].as_str().unwrap_or("True")
            })
        })
        .and_then(|condition| condition["type"].as_str())
}

/// The UIDs of a status's `uncountedTerminatedPods` list `key`.
fn uncounted(status: &Value, key: &str) -> Vec<String> {
    status["uncountedTerminatedPods"][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|uid| uid.as_str().map(str::to_owned))
        .collect()
}

/// The Job's part (`owned`: the Pods it controls, and those of them being deleted that still
/// carry its finalizer), for a Job not finished: as many Pods running as its parallelism and
/// the completions still wanted allow; each finished Pod counted once, as
/// `trackJobStatusAndRemoveFinalizers` does (its UID in `uncountedTerminatedPods`, then its
/// finalizer removed, then, on the next pass, the count); once enough succeeded,
/// `SuccessCriteriaMet` and, when every Pod is counted, `Complete`; past its deadline or its
/// backoff limit (a Pod deleted before it succeeded counts as failed), `FailureTarget` and then
/// `Failed`; suspended, none running and the `Suspended` condition, resumed, that condition
/// False and its start time reset.
pub(super) fn job_pass(
    writes: &mut Writes<'_>,
    job: &Value,
    (owned, deleting): (&[&Value], &[&Value]),
    now: DateTime<Utc>,
) -> Option<Duration> {
    let namespace = namespace(job)?;
    let spec = &job["spec"];
    if finished_condition(job).is_some() {
        for pod in owned.iter().chain(deleting) {
            if has_tracking_finalizer(pod) {
                release_tracked_pod(writes, pod);
            }
        }
        return None;
    }
    let suspended = spec["suspend"] == true;
    let phase = |p: &&Value| p["status"]["phase"].as_str().map(str::to_owned);
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let old = &job["status"];
    let indexed = spec["completionMode"] == "Indexed";
    let completions = spec["completions"].as_i64();
    // `cleanUncountedPodsWithoutFinalizers`: a UID whose Pod no longer carries the finalizer
    // (or is gone) moves from `uncountedTerminatedPods` into its counter.
    let all: Vec<&Value> = owned.iter().chain(deleting).copied().collect();
    let with_finalizer: HashSet<&str> = all
        .iter()
        .filter(|p| has_tracking_finalizer(p))
        .filter_map(|p| p["metadata"]["uid"].as_str())
        .collect();
    let mut counted_succeeded = old["succeeded"].as_i64().unwrap_or(0);
    let mut counted_failed = old["failed"].as_i64().unwrap_or(0);
    let mut uncounted_succeeded = uncounted(old, "succeeded");
    let mut uncounted_failed = uncounted(old, "failed");
    for (list, counter) in [
        (&mut uncounted_succeeded, &mut counted_succeeded),
        (&mut uncounted_failed, &mut counted_failed),
    ] {
        let before = list.len();
        list.retain(|uid| with_finalizer.contains(uid.as_str()));
        *counter += count(before - list.len());
    }
    let has_condition = |kind: &str| {
        old["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == "True")
    };
    let mut active: Vec<&&Value> = owned
        .iter()
        .filter(|p| !matches!(phase(p).as_deref(), Some("Succeeded" | "Failed")))
        .collect();
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    // An Indexed Job counts the indexes that succeeded (`calculateSucceededIndexes`), those of
    // earlier passes kept in `completedIndexes`, and wants each index below `completions` once.
    let mut completed = Intervals::default();
    let mut surplus = Vec::new();
    if let Some(completions) = completions.filter(|_| indexed) {
        completed = Intervals::parse(old["completedIndexes"].as_str().unwrap_or(""), completions);
        for pod in &all {
            if phase(pod).as_deref() == Some("Succeeded")
                && let Some(index) = completion_index(pod).filter(|i| *i < completions)
            {
                completed.insert(index);
            }
        }
        // `appendDuplicatedIndexPodsForRemoval`: an active Pod without an index, beyond
        // `completions` or repeating another's index goes.
        let mut seen = HashSet::new();
        active.retain(|pod| {
            let keep = completion_index(pod).is_some_and(|i| i < completions && seen.insert(i));
            if !keep {
                surplus.push(**pod);
            }
            keep
        });
    }
    // `calculateFailedIndexes`: with `backoffLimitPerIndex`, an index fails once its Pods failed
    // more than that many times (or a `FailIndex` rule matched), and is not run again.
    let per_index = spec["backoffLimitPerIndex"].as_i64().filter(|_| indexed);
    let mut failed_indexes = Intervals::default();
    if let (Some(limit), Some(completions)) = (per_index, completions) {
        failed_indexes = Intervals::parse(old["failedIndexes"].as_str().unwrap_or(""), completions);
        for pod in &all {
            if let Some(index) = completion_index(pod).filter(|i| *i < completions)
                && is_index_failed(job, pod, limit)
            {
                failed_indexes.insert(index);
            }
        }
    }
    // The Pods that finished and still carry the finalizer are recorded (a succeeded index needs
    // no UID) and then lose it; at most `MaxUncountedPods` at once, so the status stays small,
    // the rest on later passes.
    let mut finished: Vec<&Value> = Vec::new();
    let mut recorded: HashSet<String> = uncounted_succeeded
        .iter()
        .chain(&uncounted_failed)
        .cloned()
        .collect();
    let (mut capped, mut indexes_done) = (false, 0);
    for pod in all.iter().copied().filter(|p| has_tracking_finalizer(p)) {
        if recorded.len() + indexes_done >= MAX_UNCOUNTED_PODS {
            capped = true;
            break;
        }
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if phase(&pod).as_deref() == Some("Succeeded") {
            if indexed {
                indexes_done += 1;
            } else if recorded.insert(uid.clone()) {
                uncounted_succeeded.push(uid);
            }
        } else if is_pod_failed(pod, job) {
            let in_range = !indexed
                || completion_index(pod).is_some_and(|i| completions.is_some_and(|c| i < c));
            // A failure the policy ignores loses the finalizer without being counted.
            let counts = match_pod_failure_policy(job, pod) != PolicyVerdict::Ignore;
            if in_range && counts && recorded.insert(uid.clone()) {
                uncounted_failed.push(uid);
            }
        } else {
            continue;
        }
        finished.push(pod);
    }
    let succeeded = if indexed {
        completed.total()
    } else {
        counted_succeeded + count(uncounted_succeeded.len())
    };
    let failed_total = counted_failed + count(uncounted_failed.len());
    // With completions, that many Pods must succeed; without (a work queue), one success ends
    // the Job once the others are done.
    // An Indexed Job's `successPolicy` may end it before every index succeeded
    // (`matchSuccessPolicy`); its Pods still running are then deleted, not counted as failed.
    let policy_met = completions
        .filter(|_| indexed)
        .and_then(|completions| success_policy_met(job, completions, &completed));
    let time = timestamp(now);
    let mut conditions: Vec<Value> = old["conditions"].as_array().cloned().unwrap_or_default();
    let mut start = old.get("startTime").cloned();
    // Suspending deletes the active Pods; resuming starts the clock again (`syncJob`).
    if suspended {
        let condition = ("True", "JobSuspended", "Job suspended");
        if ensure_condition(&mut conditions, "Suspended", condition, &time) {
            writes.event(job, JOB_CONTROLLER, "Suspended", "Job suspended".to_owned());
        }
    } else {
        let condition = ("False", "JobResumed", "Job resumed");
        if ensure_condition(&mut conditions, "Suspended", condition, &time) {
            writes.event(job, JOB_CONTROLLER, "Resumed", "Job resumed".to_owned());
            start = Some(json!(time));
        }
        start.get_or_insert_with(|| json!(time));
    }
    // The failure, once decided, stays (`FailureTarget`); else the backoff limit, then the
    // active deadline (`pastActiveDeadline`).
    let deadline = spec["activeDeadlineSeconds"]
        .as_i64()
        .filter(|_| !suspended)
        .and_then(|seconds| {
            let started = parse_timestamp(start.as_ref()?.as_str()?)?;
            Some(started + chrono::Duration::seconds(seconds))
        });
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    // `getFailJobMessage`: a failed Pod matching a `FailJob` rule fails the Job.
    let fail_job = all.iter().filter(|p| is_pod_failed(p, job)).find_map(|p| {
        match match_pod_failure_policy(job, p) {
            PolicyVerdict::FailJob(message) => Some(message),
            _ => None,
        }
    });
    let failure: Option<(String, String)> = match has_condition("FailureTarget") {
        Some(target) => Some((
            target["reason"].as_str().unwrap_or_default().to_owned(),
            target["message"].as_str().unwrap_or_default().to_owned(),
        )),
        None if has_condition("SuccessCriteriaMet").is_some() => None,
        None if fail_job.is_some() => {
            fail_job.map(|message| ("PodFailurePolicy".to_owned(), message))
        }
        None if failed_total > backoff_limit => Some((
            "BackoffLimitExceeded".to_owned(),
            "Job has reached the specified backoff limit".to_owned(),
        )),
        None if deadline.is_some_and(|d| d <= now) => Some((
            "DeadlineExceeded".to_owned(),
            "Job was active longer than specified deadline".to_owned(),
        )),
        None if per_index.is_some()
            && spec["maxFailedIndexes"]
                .as_i64()
                .is_some_and(|max| failed_indexes.total() > max) =>
        {
            Some((
                "MaxFailedIndexesExceeded".to_owned(),
                "Job has exceeded the specified maximal number of failed indexes".to_owned(),
            ))
        }
        None if per_index.is_some()
            && failed_indexes.total() > 0
            && completions.is_some_and(|c| failed_indexes.total() + completed.total() >= c) =>
        {
            Some((
                "FailedIndexes".to_owned(),
                "Job has failed indexes".to_owned(),
            ))
        }
        None => None,
    };
    let complete = failure.is_none()
        && (has_condition("SuccessCriteriaMet").is_some()
            || policy_met.is_some()
            || match completions {
                Some(completions) => succeeded >= completions,
                None => succeeded > 0 && active.is_empty(),
            });
    let wanted = match completions {
        _ if suspended || policy_met.is_some() || failure.is_some() || complete => 0,
        Some(completions) => parallelism.min(completions - succeeded).max(0),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    let mut deleted = 0;
    if suspended || policy_met.is_some() {
        deleted += delete_pods(writes, job, active.iter().map(|p| **p));
    } else if failure.is_some() {
        // A failing Job's running Pods are deleted and counted as failed.
        let gone = delete_pods(writes, job, active.iter().map(|p| **p));
        deleted += gone;
        counted_failed += gone;
    }
    delete_pods(writes, job, surplus.iter().copied());
    // `CountTerminatingPods`: being deleted and not finished (the Pods deleted in this pass are
    // gone already: their finalizer was removed first).
    let terminating = count(
        deleting
            .iter()
            .filter(|p| !matches!(phase(p).as_deref(), Some("Succeeded" | "Failed")))
            .count(),
    );
    // A Job that replaces only failed Pods waits for its terminating ones.
    let occupied = count(active.len())
        + if only_replace_failed_pods(job) {
            terminating
        } else {
            0
        };
    let missing = usize::try_from(wanted - occupied).unwrap_or(0);
    let new_pods: Vec<Value> = match completions.filter(|_| indexed) {
        Some(completions) => {
            let taken = active.iter().filter_map(|p| completion_index(p)).collect();
            completed
                .union(&failed_indexes)
                .first_pending(taken, missing, completions)
                .into_iter()
                .map(|index| {
                    let mut pod = indexed_pod(job, namespace, index);
                    if per_index.is_some() {
                        // The index's count goes on from the Pod it replaces, the last to fail.
                        let replaced = all
                            .iter()
                            .filter(|p| completion_index(p) == Some(index) && is_pod_failed(p, job))
                            .max_by_key(|p| index_failure_counts(p));
                        let (failures, ignored) =
                            replaced.map_or((0, 0), |p| next_index_failure_counts(job, p));
                        pod["metadata"]["annotations"][INDEX_FAILURE_COUNT.0] =
                            json!(failures.to_string());
                        if ignored > 0 {
                            pod["metadata"]["annotations"][INDEX_FAILURE_COUNT.1] =
                                json!(ignored.to_string());
                        }
                    }
                    pod
                })
                .collect()
        }
        None => (0..missing)
            .map(|_| new_pod(job, namespace, ("batch/v1", "Job")))
            .collect(),
    };
    let mut created = 0;
    for mut pod in new_pods {
        pod["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
        let pod_name = name(&pod).unwrap_or_default().to_owned();
        if writes.create(PODS, namespace, pod) {
            created += 1;
            writes.event(
                job,
                JOB_CONTROLLER,
                "SuccessfulCreate",
                format!("Created pod: {pod_name}"),
            );
        }
    }
    let mut status = Map::new();
    if let Some(start) = start {
        status.insert("startTime".into(), start);
    }
    let active_now = count(active.len()) - deleted + created;
    if active_now > 0 && !complete {
        status.insert("active".into(), json!(active_now));
    }
    let succeeded_counter = if indexed {
        succeeded
    } else {
        counted_succeeded
    };
    if succeeded_counter > 0 {
        status.insert("succeeded".into(), json!(succeeded_counter));
    }
    if !completed.0.is_empty() {
        status.insert("completedIndexes".into(), json!(completed.to_string()));
    }
    if per_index.is_some() {
        status.insert("failedIndexes".into(), json!(failed_indexes.to_string()));
    }
    if counted_failed > 0 {
        status.insert("failed".into(), json!(counted_failed));
    }
    let ready = count(active.iter().filter(|p| is_ready(p)).count());
    let running = !(complete || suspended || failure.is_some());
    status.insert("ready".into(), json!(if running { ready } else { 0 }));
    status.insert("terminating".into(), json!(terminating));
    let mut pending = Map::new();
    for (key, uids) in [
        ("succeeded", &uncounted_succeeded),
        ("failed", &uncounted_failed),
    ] {
        if !uids.is_empty() {
            pending.insert(key.into(), json!(uids));
        }
    }
    // `enactJobFinished`: `Complete` or `Failed` once every finished Pod is counted and none is
    // terminating.
    let settled = pending.is_empty() && terminating == 0 && !capped;
    status.insert("uncountedTerminatedPods".into(), Value::Object(pending));
    let mut finished_now: Option<(&str, String)> = None;
    if complete {
        let reached = match &policy_met {
            Some(message) => ("True", "SuccessPolicy", message.as_str()),
            None => match has_condition("SuccessCriteriaMet") {
                Some(met) => (
                    "True",
                    met["reason"].as_str().unwrap_or_default(),
                    met["message"].as_str().unwrap_or_default(),
                ),
                None => (
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ),
            },
        };
        ensure_condition(&mut conditions, "SuccessCriteriaMet", reached, &time);
        if settled {
            ensure_condition(&mut conditions, "Complete", reached, &time);
            status.insert("completionTime".into(), json!(time));
            finished_now = Some(("Completed", "Job completed".to_owned()));
        }
    }
    if let Some((reason, message)) = &failure {
        let target = ("True", reason.as_str(), message.as_str());
        ensure_condition(&mut conditions, "FailureTarget", target, &time);
        if settled {
            ensure_condition(&mut conditions, "Failed", target, &time);
            finished_now = Some((reason.as_str(), message.clone()));
        }
    }
    if !conditions.is_empty() {
        status.insert("conditions".into(), json!(conditions));
    }
    let status = Value::Object(status);
    let unchanged = job["status"] == status;
    let written = !unchanged && writes.status(JOBS, job, status);
    if written {
        // `recordJobFinished`.
        match finished_now {
            Some(("Completed", message)) => {
                writes.event(job, JOB_CONTROLLER, "Completed", message);
            }
            Some((reason, message)) => writes.warning(job, JOB_CONTROLLER, reason, message),
            None => {}
        }
    }
    // Their UIDs recorded, the finished Pods lose the finalizer (the next pass counts them).
    if unchanged || written {
        for pod in finished {
            release_tracked_pod(writes, pod);
        }
    }
    // `syncJob` looks again when the deadline comes.
    deadline
        .filter(|_| failure.is_none() && !complete)
        .map(|d| (d - now).to_std().unwrap_or_default())
}

/// Deletes `pods` of `job` as `deleteJobPods` does, their finalizer removed first (a Pod the
/// controller deletes is not counted by the deletion), each with the job controller's
/// `SuccessfulDelete` Event; how many were deleted.
fn delete_pods<'v>(
    writes: &mut Writes<'_>,
    job: &Value,
    pods: impl IntoIterator<Item = &'v Value>,
) -> i64 {
    let mut deleted = 0;
    for pod in pods {
        if has_tracking_finalizer(pod) && !release_tracked_pod(writes, pod) {
            continue;
        }
        if writes.delete(PODS, pod) {
            deleted += 1;
            let message = format!("Deleted pod: {}", name(pod).unwrap_or_default());
            writes.event(job, JOB_CONTROLLER, "SuccessfulDelete", message);
        }
    }
    deleted
}

/// `matchSuccessPolicy`: the message of the first rule of `job`'s `successPolicy` that the
/// `succeeded` indexes meet (all of its `succeededIndexes`, or `succeededCount` of them, or
/// `succeededCount` indexes at all), if one does.
fn success_policy_met(job: &Value, completions: i64, succeeded: &Intervals) -> Option<String> {
    if succeeded.0.is_empty() {
        return None;
    }
    let rules = job["spec"]["successPolicy"]["rules"].as_array()?;
    rules.iter().enumerate().find_map(|(index, rule)| {
        let count = rule["succeededCount"].as_i64();
        let met = match rule["succeededIndexes"].as_str() {
            Some(text) => {
                let required = Intervals::parse(text, completions);
                let held = required.overlap(succeeded);
                !required.0.is_empty()
                    && (held == required.total() || count.is_some_and(|c| held >= c))
            }
            None => count.is_some_and(|c| succeeded.total() >= c),
        };
        met.then(|| format!("Matched rules at index {index}"))
    })
}

/// A finished Job's `Complete` or `Failed` condition (True), if it has one (`IsJobFinished`).
pub(super) fn finished_condition(job: &Value) -> Option<&Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| {
        matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
    })
}

/// When a finished Job's `ttlSecondsAfterFinished` runs out (the TTL-after-finished controller's
/// `processTTL`): that many seconds after its `Complete` or `Failed` condition turned True.
pub(super) fn ttl_expiry(job: &Value) -> Option<DateTime<Utc>> {
    let ttl = job["spec"]["ttlSecondsAfterFinished"].as_i64()?;
    let finished = finished_condition(job)?;
    let at = parse_timestamp(finished["lastTransitionTime"].as_str()?)?;
    Some(at + chrono::Duration::seconds(ttl))
}

/// `ensureJobConditionStatus`: the condition `kind` of `conditions` at `(status, reason,
/// message)`, changed (with its times) only when its status changes; a condition that is not
/// there is added only as True. Returns whether anything changed.
pub(super) fn ensure_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    (status, reason, message): (&str, &str, &str),
    time: &str,
) -> bool {
    let condition = json!({"type": kind, "status": status, "reason": reason, "message": message,
        "lastProbeTime": time, "lastTransitionTime": time});
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == status => false,
        Some(c) => {
            *c = condition;
            true
        }
        None if status == "True" => {
            conditions.push(condition);
            true
        }
        None => false,
    }
}

/// Whether `pod` belongs to a Job and its containers are not restarted on success.
pub(super) fn runs_to_completion(pod: &Value) -> bool {
    let job_owned = pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"] == true && r["kind"] == "Job" && r["apiVersion"] == "batch/v1");
    job_owned && pod["spec"]["restartPolicy"].as_str() != Some("Always")
}

/// The status of a Pod whose containers all exited 0 (the kubelet's, for restart policy Never or
/// OnFailure): `Succeeded`, each container `terminated` with reason `Completed`, not ready, the
/// conditions a kubelet gives a completed Pod (`PodCompleted`).
pub(super) fn succeeded_status(pod: &Value, now: DateTime<Utc>) -> Value {
    terminated_status(pod, now, ("Succeeded", "PodCompleted"), (0, "Completed"))
}

/// The status of a deleted Pod once it is stopped (a terminal phase before it goes): `Failed`,
/// with the conditions of a failed Pod, a `DisruptionTarget` condition kept; on a node, each
/// container killed by the kubelet (`SIGKILL`, exit code 137, reason `Error`); never scheduled,
/// no container at all (the pod garbage collector's `gcUnscheduledTerminating`).
pub(super) fn stopped_status(pod: &Value, now: DateTime<Utc>) -> Value {
    let mut status = terminated_status(pod, now, ("Failed", "PodFailed"), (137, "Error"));
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        match pod["status"].get("containerStatuses") {
            Some(unchanged) => status["containerStatuses"] = unchanged.clone(),
            None => {
                if let Some(status) = status.as_object_mut() {
                    status.remove("containerStatuses");
                }
            }
        }
    }
    status
}

/// `pod`'s status in the terminal `phase` (conditions' reason `condition_reason`), every
/// container terminated with `exit_code` and `reason`.
fn terminated_status(
    pod: &Value,
    now: DateTime<Utc>,
    (phase, condition_reason): (&str, &str),
    (exit_code, reason): (i64, &str),
) -> Value {
    let time = timestamp(now);
    let mut status = pod["status"].clone();
    let started = status["startTime"]
        .as_str()
        .map_or_else(|| time.clone(), str::to_owned);
    let statuses: Vec<Value> = containers(pod)
        .map(|c| {
            let id = container_id(pod, c);
            json!({
                "name": c["name"], "image": c["image"], "imageID": "", "containerID": id,
                "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                    "startedAt": started, "finishedAt": time, "containerID": id}},
            })
        })
        .collect();
    let condition = |kind: &str, value: &str| {
        let mut c = json!({"type": kind, "status": value, "lastTransitionTime": time});
        // `kubelet/status/generate.go` for a Pod in a terminal phase.
        if matches!(kind, "Initialized" | "Ready" | "ContainersReady") {
            c["reason"] = json!(condition_reason);
        }
        c
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", "False"),
        condition("Initialized", "True"),
        condition("Ready", "False"),
        condition("ContainersReady", "False"),
        condition("PodScheduled", "True"),
    ];
    conditions.extend(
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"] == "DisruptionTarget")
            .cloned(),
    );
    status["phase"] = json!(phase);
    status["conditions"] = json!(conditions);
    status["containerStatuses"] = json!(statuses);
    status
}

/// The label and annotation holding an Indexed Job's Pod's completion index.
pub(super) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// An Indexed Job's Pod for `index`, as the job controller's `manageJob` makes it: named
/// `JOB-INDEX-xxxxx`, the index in the `batch.kubernetes.io/job-completion-index` annotation
/// and label (`PodIndexLabel`, on since 1.28), the hostname `JOB-INDEX`, and every container
/// given `JOB_COMPLETION_INDEX` from that label (`addCompletionIndexEnvVariables`) unless it
/// sets the variable itself.
pub(super) fn indexed_pod(job: &Value, namespace: &str, index: i64) -> Value {
    let job_name = name(job).unwrap_or_default();
    let prefix = generate_name_prefix(job_name, &format!("-{index}-"));
    let mut pod = template_pod(
        job,
        namespace,
        prefix + &random_suffix(),
        ("batch/v1", "Job"),
    );
    for key in ["annotations", "labels"] {
        if let Some(metadata) = pod["metadata"].as_object_mut() {
            let map = metadata.entry(key).or_insert_with(|| json!({}));
            if let Some(map) = map.as_object_mut() {
                map.insert(COMPLETION_INDEX.into(), json!(index.to_string()));
            }
        }
    }
    let Some(spec) = pod["spec"].as_object_mut() else {
        return pod;
    };
    spec.insert("hostname".into(), json!(format!("{job_name}-{index}")));
    for key in ["initContainers", "containers"] {
        for container in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            let env = container.entry("env").or_insert_with(|| json!([]));
            if let Some(env) = env.as_array_mut()
                && !env.iter().any(|v| v["name"] == "JOB_COMPLETION_INDEX")
            {
                env.push(
                    json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": format!("metadata.labels['{COMPLETION_INDEX}']"),
                    }}}),
                );
            }
        }
    }
    pod
}

/// An Indexed Job's Pod's completion index (`getCompletionIndex`: the annotation, a
/// non-negative integer).
pub(super) fn completion_index(pod: &Value) -> Option<i64> {
    pod["metadata"]["annotations"][COMPLETION_INDEX]
        .as_str()?
        .parse::<i64>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A set of completion indexes as ordered, disjoint, non-adjacent intervals, as the job
/// controller's `orderedIntervals` holds them and writes them in `completedIndexes` (`1,3-5,7`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Intervals(Vec<(i64, i64)>);

impl Intervals {
    /// `succeededIndexesFromString`: `text`'s intervals below `completions`; a part that does not
    /// parse is skipped.
    fn parse(text: &str, completions: i64) -> Self {
        let mut out = Self::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut limits = part.splitn(2, '-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i64>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next().map(str::parse::<i64>) {
                None => first,
                Some(Ok(last)) => last.min(completions - 1),
                Some(Err(_)) => continue,
            };
            if first <= last {
                out.insert_range(first, last);
            }
        }
        out
    }

    /// Adds `index`.
    fn insert(&mut self, index: i64) {
        self.insert_range(index, index);
    }

    /// Adds `first..=last`, merging it with the intervals it overlaps or touches.
    fn insert_range(&mut self, first: i64, last: i64) {
        let start = self.0.partition_point(|(_, l)| l.saturating_add(1) < first);
        let end = self
            .0
            .partition_point(|(f, _)| *f <= last.saturating_add(1));
        let merged = self.0[start..end]
            .iter()
            .fold((first, last), |(a, b), (f, l)| (a.min(*f), b.max(*l)));
        self.0.splice(start..end, [merged]);
    }

    /// How many indexes both `self` and `other` hold (`matchSucceededIndexesRule`'s count).
    fn overlap(&self, other: &Self) -> i64 {
        let (mut mine, mut theirs) = (self.0.iter().peekable(), other.0.iter().peekable());
        let mut held = 0;
        while let (Some(&&(a_first, a_last)), Some(&&(b_first, b_last))) =
            (mine.peek(), theirs.peek())
        {
            held += (a_last.min(b_last) - a_first.max(b_first) + 1).max(0);
            if b_last <= a_last {
                theirs.next();
            }
            if a_last <= b_last {
                mine.next();
            }
        }
        held
    }

    /// The indexes of both.
    fn union(&self, other: &Self) -> Self {
        let mut out = self.clone();
        for &(first, last) in &other.0 {
            out.insert_range(first, last);
        }
        out
    }

    /// How many indexes the intervals hold.
    fn total(&self) -> i64 {
        self.0.iter().map(|(first, last)| last - first + 1).sum()
    }

    /// `firstPendingIndexes`: the `count` lowest indexes below `completions` neither held here nor
    /// `taken` by an active Pod.
    fn first_pending(&self, taken: Vec<i64>, count: usize, completions: i64) -> Vec<i64> {
        let mut busy = self.clone();
        for index in taken {
            busy.insert(index);
        }
        // Walk the gaps between the busy intervals: bounded by their number and `count`.
        let mut out = Vec::with_capacity(count.min(1024));
        let mut candidate = 0;
        for &(first, last) in busy.0.iter().chain([&(completions, completions)]) {
            while candidate < first.min(completions) && out.len() < count {
                out.push(candidate);
                candidate += 1;
            }
            if out.len() == count || candidate >= completions {
                break;
            }
            candidate = candidate.max(last.saturating_add(1));
        }
        out
    }
}

impl std::fmt::Display for Intervals {
    /// `orderedIntervals.String`: `a-b` for three or more, `a,b` for two, `a` for one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (first, last)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}")?;
            if last > first {
                let sep = if *last == first + 1 { ',' } else { '-' };
                write!(f, "{sep}{last}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_parse_merge_and_print_as_the_job_controller_writes_them() {
        let mut set = Intervals::parse("1,3-5,x,7-9", 9);
        assert_eq!(set.0, vec![(1, 1), (3, 5), (7, 8)], "cut at completions");
        assert_eq!(set.to_string(), "1,3-5,7,8");
        set.insert(2);
        set.insert(6);
        assert_eq!(set.to_string(), "1-8");
        assert_eq!(set.total(), 8);
        set.insert(0);
        assert_eq!(set.0, vec![(0, 8)]);
        assert_eq!(Intervals::parse("", 3).to_string(), "");
        assert_eq!(
            Intervals::parse("5,1", 3).0,
            vec![],
            "an index past completions ends it"
        );
        // A hostile status costs nothing for its size.
        let wide = Intervals::parse("0-9223372036854775806", i64::MAX);
        assert_eq!(wide.total(), i64::MAX);
        assert_eq!(wide.first_pending(vec![], 2, i64::MAX), Vec::<i64>::new());
        let some = Intervals::parse("0,2", 6);
        assert_eq!(some.first_pending(vec![3], 2, 6), vec![1, 4]);
        assert_eq!(some.first_pending(vec![], 9, 4), vec![1, 3]);
        // `matchSucceededIndexesRule`'s count of what both hold.
        let rule = Intervals::parse("0-3,6,8-9", 10);
        assert_eq!(rule.overlap(&Intervals::parse("2-6,9", 10)), 4);
        assert_eq!(rule.overlap(&Intervals::parse("4,5,7", 10)), 0);
        assert_eq!(rule.overlap(&rule), rule.total());
    }

    #[test]
    fn pod_failure_policy_rules_match_as_match_pod_failure_policy_does() {
        let job = |rules: Value| json!({"spec": {"podFailurePolicy": {"rules": rules}}});
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {
            "phase": "Failed",
            "conditions": [{"type": "DisruptionTarget", "status": "False"}],
            "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {"name": "ok", "state": {"terminated": {"exitCode": 0}}},
                {"name": "main", "state": {"terminated": {"exitCode": 42}}}]}});
        let verdict = |rules| match_pod_failure_policy(&job(rules), &pod);
        assert_eq!(
            verdict(json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}])),
            PolicyVerdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
                    .into()
            )
        );
        // Exit code 0 never matches, even NotIn; a named container is the only one looked at.
        assert_eq!(
            verdict(json!([
                {"action": "Ignore", "onExitCodes": {"containerName": "ok", "operator": "NotIn", "values": [1]}},
                {"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [42]}},
                {"action": "Count", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1]}}])),
            PolicyVerdict::Count
        );
        // A condition pattern is status True unless it says; the first matching rule wins.
        assert_eq!(
            verdict(
                json!([{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}])
            ),
            PolicyVerdict::Count
        );
        assert_eq!(
            verdict(json!([
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}]},
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}])),
            PolicyVerdict::Ignore
        );
    }
}
