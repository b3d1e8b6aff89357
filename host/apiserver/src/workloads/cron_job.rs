//! The cron job controller's part (`pkg/controller/cronjob`, `syncCronJob`): each CronJob's
//! Jobs, one per scheduled time that came (`NAME-<minutes since the epoch>`), its active list,
//! last schedule and last success, its concurrency policy and starting deadline, and the history
//! it keeps of finished Jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::job::finished_condition;
use super::{JOBS, Writes, controller_reference, controller_uid, name, namespace};
use crate::cluster::{parse_timestamp, timestamp};
use crate::cron::Schedule;
use crate::gc;

/// CronJobs' group resource.
pub(super) const CRON_JOBS: &str = "cronjobs.batch";
/// The component its Events come from.
const COMPONENT: &str = "cronjob-controller";
/// The annotation a Job made for a scheduled time carries.
const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this and the controller says so (it still starts the latest).
const MISSED_TIMES_LIMIT: usize = 100;
/// How many missed times a sync counts at most (the count `TooManyMissedTimes` reports).
const COUNT_LIMIT: usize = 10_000;
/// Windows before now in which the latest missed time is looked for once more than
/// [`COUNT_LIMIT`] were missed, shortest first (an hour, a day, a month, a year, five).
const LOOK_BACK_SECONDS: [i64; 5] = [3_600, 86_400, 2_764_800, 31_622_400, 158_112_000];

/// A chrono time as a jiff timestamp (whole seconds).
fn instant(at: DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::from_second(at.timestamp()).ok()
}

/// A jiff timestamp as a chrono time.
fn utc(at: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.as_second(), 0)
}

/// The object reference `status.active` holds for `job`.
fn reference(job: &Value) -> Value {
    json!({"kind": "Job", "namespace": job["metadata"]["namespace"],
        "name": job["metadata"]["name"], "uid": job["metadata"]["uid"],
        "apiVersion": "batch/v1", "resourceVersion": job["metadata"]["resourceVersion"]})
}

/// The Job of `cron_job` for `scheduled` (`getJobFromTemplate2`).
fn job_for(cron_job: &Value, scheduled: Timestamp, zone: &TimeZone) -> Value {
    let template = &cron_job["spec"]["jobTemplate"];
    let cron_name = name(cron_job).unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert(
        "name".into(),
        json!(format!(
            "{cron_name}-{}",
            scheduled.as_second().div_euclid(60)
        )),
    );
    metadata.insert(
        "namespace".into(),
        cron_job["metadata"]["namespace"].clone(),
    );
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        metadata.insert("labels".into(), Value::Object(labels.clone()));
    }
    let mut annotations = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let local = scheduled.to_zoned(zone.clone());
    let offset = local.offset();
    let at = if offset.seconds() == 0 {
        local.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    annotations.insert(SCHEDULED_ANNOTATION.into(), json!(at));
    metadata.insert("annotations".into(), Value::Object(annotations));
    metadata.insert(
        "ownerReferences".into(),
        json!([controller_reference(cron_job, "batch/v1", "CronJob")]),
    );
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
        "spec": template["spec"].clone()})
}

/// Whether `job` finished, and whether it succeeded.
fn finished(job: &Value) -> Option<bool> {
    finished_condition(job).map(|c| c["type"] == "Complete")
}

/// One CronJob's sync at `now`, its Jobs those it controls among `jobs`; returns when it is next
/// due.
pub(super) fn cron_job_pass(
    writes: &mut Writes<'_>,
    cron_job: &Value,
    jobs: &[&Value],
    now: DateTime<Utc>,
) -> Option<Duration> {
    let spec = &cron_job["spec"];
    let mut status = cron_job["status"].as_object().cloned().unwrap_or_default();
    // Finished Jobs leave the active list; the active list loses what is gone.
    let mut active: Vec<Value> = status
        .get("active")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    active.retain(|r| {
        jobs.iter()
            .any(|j| j["metadata"]["uid"] == r["uid"] && finished(j).is_none())
    });
    for job in jobs {
        let Some(succeeded) = finished(job) else {
            continue;
        };
        let was_active = status
            .get("active")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|r| r["uid"] == job["metadata"]["uid"]));
        if was_active {
            writes.event(
                cron_job,
                COMPONENT,
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, status: {}",
                    name(job).unwrap_or_default(),
                    if succeeded { "Complete" } else { "Failed" }
                ),
            );
        }
        let completed = job["status"]["completionTime"].as_str();
        if succeeded && let Some(completed) = completed {
            let later = status
                .get("lastSuccessfulTime")
                .and_then(Value::as_str)
                .is_none_or(|last| parse_timestamp(last) < parse_timestamp(completed));
            if later {
                status.insert("lastSuccessfulTime".into(), json!(completed));
            }
        }
    }
    let mut next_due = None;
    let schedulable = !gc::is_deleting(cron_job) && spec["suspend"] != true;
    if schedulable
        && let Some(due) = schedule(writes, cron_job, jobs, &mut active, &mut status, now)
    {
        next_due = Some(due);
    }
    if active.is_empty() {
        status.remove("active");
    } else {
        status.insert("active".into(), Value::Array(active));
    }
    writes.status(CRON_JOBS, cron_job, Value::Object(status));
    clean_up(writes, cron_job, jobs);
    next_due
}

/// The scheduling part of `syncCronJob`: the time zone and schedule read, the latest time that
/// came since the last schedule started (as the policy and deadline allow); returns when the
/// next time is due.
fn schedule(
    writes: &mut Writes<'_>,
    cron_job: &Value,
    jobs: &[&Value],
    active: &mut Vec<Value>,
    status: &mut Map<String, Value>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let spec = &cron_job["spec"];
    let zone = match spec["timeZone"].as_str() {
        None => TimeZone::UTC,
        Some(name) => match TimeZone::get(name) {
            Ok(zone) => zone,
            Err(error) => {
                writes.warning(
                    cron_job,
                    COMPONENT,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {error}"),
                );
                return None;
            }
        },
    };
    let text = spec["schedule"].as_str().unwrap_or_default();
    let schedule: Schedule = match text.parse() {
        Ok(schedule) => schedule,
        Err(error) => {
            writes.warning(
                cron_job,
                COMPONENT,
                "InvalidSchedule",
                format!("invalid schedule: {text} : {error}"),
            );
            return None;
        }
    };
    let now_at = instant(now)?;
    let deadline = spec["startingDeadlineSeconds"].as_i64();
    // `mostRecentScheduleTime`: from the last schedule (else the creation), no further back than
    // the starting deadline.
    let mut earliest = status
        .get("lastScheduleTime")
        .and_then(Value::as_str)
        .or_else(|| cron_job["metadata"]["creationTimestamp"].as_str())
        .and_then(parse_timestamp)
        .and_then(instant)?;
    if let Some(seconds) = deadline {
        let floor = Timestamp::from_second(now_at.as_second() - seconds).ok()?;
        earliest = earliest.max(floor);
    }
    let (mut latest, missed) = latest_time(&schedule, &zone, earliest, now_at, COUNT_LIMIT);
    if missed > COUNT_LIMIT {
        // Too many to walk: the latest lies in the shortest window before now that has one.
        latest = LOOK_BACK_SECONDS.iter().find_map(|back| {
            let from = Timestamp::from_second(now_at.as_second() - back)
                .ok()?
                .max(earliest);
            latest_time(&schedule, &zone, from, now_at, COUNT_LIMIT).0
        });
    }
    let next = schedule.next_after(now_at, &zone);
    let due = next.and_then(|n| Duration::try_from(n.duration_since(now_at)).ok());
    let Some(scheduled) = latest else {
        return due;
    };
    if missed > MISSED_TIMES_LIMIT {
        writes.warning(
            cron_job,
            COMPONENT,
            "TooManyMissedTimes",
            format!(
                "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            ),
        );
    }
    if let Some(seconds) = deadline
        && scheduled.as_second() + seconds < now_at.as_second()
    {
        let at = utc(scheduled).map(|t| t.to_rfc2822()).unwrap_or_default();
        writes.warning(
            cron_job,
            COMPONENT,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {at}"),
        );
        return due;
    }
    let job = job_for(cron_job, scheduled, &zone);
    let job_name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if jobs.iter().any(|j| name(j) == Some(job_name.as_str())) {
        return due;
    }
    match spec["concurrencyPolicy"].as_str() {
        Some("Forbid") if !active.is_empty() => {
            writes.event(
                cron_job,
                COMPONENT,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid"
                    .to_owned(),
            );
            return due;
        }
        Some("Replace") => {
            for reference in active.drain(..) {
                if let Some(running) = jobs
                    .iter()
                    .find(|j| j["metadata"]["uid"] == reference["uid"])
                    && writes.delete_with(JOBS, running, Some(gc::Propagation::Background))
                {
                    writes.event(
                        cron_job,
                        COMPONENT,
                        "SuccessfulDelete",
                        format!("Deleted job {}", name(running).unwrap_or_default()),
                    );
                }
            }
        }
        _ => {}
    }
    let ns = namespace(cron_job).unwrap_or_default().to_owned();
    if let Some(created) = writes.create_object(JOBS, &ns, job) {
        writes.event(
            cron_job,
            COMPONENT,
            "SuccessfulCreate",
            format!("Created job {job_name}"),
        );
        active.push(reference(&created));
        if let Some(at) = utc(scheduled) {
            status.insert("lastScheduleTime".into(), json!(timestamp(at)));
        }
    }
    due
}

/// The latest time `schedule` fired in `(from, now]` and how many times it did, counted up to
/// one past `cap` (then the latest is not looked for further).
fn latest_time(
    schedule: &Schedule,
    zone: &TimeZone,
    from: Timestamp,
    now: Timestamp,
    cap: usize,
) -> (Option<Timestamp>, usize) {
    let (mut latest, mut count) = (None, 0);
    let mut at = schedule.next_after(from, zone);
    while let Some(t) = at.filter(|t| *t <= now) {
        latest = Some(t);
        count += 1;
        if count > cap {
            break;
        }
        at = schedule.next_after(t, zone);
    }
    (latest, count)
}

/// `cleanupFinishedJobs`: the oldest finished Jobs past the history limits go.
fn clean_up(writes: &mut Writes<'_>, cron_job: &Value, jobs: &[&Value]) {
    let spec = &cron_job["spec"];
    for (succeeded, key) in [
        (true, "successfulJobsHistoryLimit"),
        (false, "failedJobsHistoryLimit"),
    ] {
        let Some(limit) = spec[key].as_u64().and_then(|l| usize::try_from(l).ok()) else {
            continue;
        };
        let mut done: Vec<&Value> = jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(succeeded) && !gc::is_deleting(j))
            .collect();
        if done.len() <= limit {
            continue;
        }
        // By start time, the creation when it has none.
        done.sort_by_key(|j| {
            j["status"]["startTime"]
                .as_str()
                .or_else(|| j["metadata"]["creationTimestamp"].as_str())
                .and_then(parse_timestamp)
        });
        for job in &done[..done.len() - limit] {
            if writes.delete_with(JOBS, job, Some(gc::Propagation::Background)) {
                writes.event(
                    cron_job,
                    COMPONENT,
                    "SuccessfulDelete",
                    format!("Deleted job {}", name(job).unwrap_or_default()),
                );
            }
        }
    }
}

/// The Jobs `cron_job` controls.
pub(super) fn jobs_of<'a>(cron_job: &Value, jobs: &[&'a Value]) -> Vec<&'a Value> {
    let uid = cron_job["metadata"]["uid"].as_str();
    jobs.iter()
        .copied()
        .filter(|j| uid.is_some() && controller_uid(j) == uid)
        .collect()
}
