//! Hostile guests: a trap, a panic, an endless loop, a log or plan far over the size limit, a
//! malformed plan, invalid JSON, status channel abuse. Each fails only that call, with an error
//! naming the plugin and the object (or a categorized result); the plugin serves the next call, and
//! another plugin of the same runtime keeps working.
#![allow(clippy::unwrap_used)]

use crate::support::{Fields, deployment_json, guest};
use capstan::contract::{CategorizedError, ErrorCategory, HealthState, ObjectRef};
use capstan::dispatch::{
    Change, ChangeEvent, DispatchConfig, DispatchError, Dispatcher, ObjectChange, RetryPolicy,
};
use capstan::event::{Context, Event};
use capstan::plugin::{CallError, Grants, HandlerEvent, Limits, Plugin, Reconciliation, Runtime};
use capstan::status::{Delivery, EventStatus, Message};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The call deadline of every test but the log flood.
const DEADLINE: Duration = Duration::from_millis(500);
/// The host's value limit, set explicitly (it is also the default).
const MAX_VALUE: usize = 4 << 20;

/// A hostile plugin and a well-behaved one (echo-handler), loaded in the same runtime.
struct Host {
    hostile: Plugin,
    other: Plugin,
}

async fn host(hostile: &str, deadline: Duration) -> Host {
    let limits = Limits::default()
        .call_timeout(deadline)
        .memory_bytes(64 << 20)
        .max_value_bytes(MAX_VALUE);
    let rt = Runtime::new(crate::support::runtime_config().limits(limits)).unwrap();
    Host {
        hostile: rt.load(&guest(hostile)).await.unwrap(),
        other: rt.load(&guest("echo-handler")).await.unwrap(),
    }
}

fn deployment(name: &str) -> (ObjectRef, String) {
    let json = deployment_json(name);
    (
        ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap(),
        json,
    )
}

fn webapp(name: &str) -> (ObjectRef, String) {
    let obj = serde_json::json!({
        "apiVersion": "examples.capstan.dev/v1alpha1",
        "kind": "WebApp",
        "metadata": {
            "name": name, "namespace": "default", "uid": "7d1f0c2a-0000-4000-8000-000000000002",
            "resourceVersion": "7", "generation": 1
        },
        "spec": {"image": "nginx:1.27", "replicas": 2}
    });
    (ObjectRef::from_json(&obj).unwrap(), obj.to_string())
}

/// The message names the plugin and the object.
fn names(err: &CallError, plugin: &str, object: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("plugin {plugin}")) && msg.contains(object),
        "the error names {plugin} and {object}: {msg}"
    );
}

impl Host {
    /// The hostile handler handles an ordinary event normally.
    async fn handler_still_works(&self) {
        let (oref, obj) = deployment("fine");
        let out = self
            .hostile
            .handle(&oref, HandlerEvent::Added(obj))
            .await
            .unwrap();
        assert_eq!(out.status, EventStatus::Completed);
        assert_eq!(out.statuses.len(), 1);
        assert_eq!(out.statuses[0].1, Delivery::SendClose);
        assert!(!out.left_open);
    }

    /// The hostile reconciler serves every phase of an ordinary object normally.
    async fn reconciler_still_works(&self) {
        let (oref, obj) = webapp("fine");
        let mut r = fetched(&self.hostile, &oref, &obj).await;
        assert!(r.plan().await.unwrap().unwrap().is_empty());
        let health = r.health().await.unwrap();
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].state, HealthState::Ready);
        let status = r.status(&serde_json::json!({})).await.unwrap();
        assert_eq!(status.fields, serde_json::json!({}));
    }

    /// The other plugin of the runtime is untouched.
    async fn other_still_works(&self) {
        let (oref, obj) = deployment("neighbour");
        let out = self
            .other
            .handle(&oref, HandlerEvent::Added(obj))
            .await
            .unwrap();
        assert_eq!(out.status, EventStatus::Completed);
        assert_eq!(out.statuses.len(), 2, "one send and one send-close");
        assert_eq!(out.on_status_calls, 2);
        assert!(out.on_status_errors.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Handler plugin.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_only_that_call() {
    let host = host("hostile-handler", DEADLINE).await;
    let (oref, obj) = deployment("trap");
    let err = host
        .hostile
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap_err();
    let CallError::Trap { export, reason, .. } = &err else {
        panic!("a trap, not {err:?}");
    };
    assert_eq!(*export, "added");
    assert!(reason.contains("unreachable"), "{reason}");
    names(&err, "hostile-handler", "Deployment default/trap");
    host.handler_still_works().await;
    host.other_still_works().await;
}

/// Collects the host's "log record over the size limit dropped" warnings, with their fields.
#[derive(Clone, Default)]
struct Dropped(Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Dropped {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = std::collections::HashMap::new();
        event.record(&mut Fields(&mut fields));
        if fields
            .get("message")
            .is_some_and(|m| m.contains("over the size limit dropped"))
        {
            self.0.lock().unwrap().push(fields);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_160_mb_log_flood_is_dropped_record_by_record() {
    use tracing_subscriber::layer::SubscriberExt;
    let dropped = Dropped::default();
    // The handler call runs on this thread (the test's task), so a thread-local subscriber sees
    // the host's log import.
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(dropped.clone()));
    // 20 records of 8 MiB are copied out of the guest (about 50 ms): give the call some slack.
    let host = host("hostile-handler", Duration::from_secs(2)).await;
    let (oref, obj) = deployment("log-flood");
    let started = Instant::now();
    let out = host
        .hostile
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status, EventStatus::Completed);
    assert!(out.left_open, "log-flood never closes its channel");
    let dropped = dropped.0.lock().unwrap().clone();
    assert_eq!(
        dropped.len(),
        20,
        "every 8 MiB record is dropped: {elapsed:?}"
    );
    for d in &dropped {
        assert_eq!(d.get("plugin").map(String::as_str), Some("hostile-handler"));
        assert_eq!(
            d.get("object").map(String::as_str),
            Some("Deployment default/log-flood")
        );
        let size: usize = d["size"].parse().unwrap();
        assert!(size > 8 << 20, "{size}");
    }
    host.handler_still_works().await;
    host.other_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_after_close_are_typed_errors_not_statuses() {
    let host = host("hostile-handler", DEADLINE).await;
    let (oref, obj) = deployment("send-after-close");
    let out = host
        .hostile
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    assert_eq!(
        out.status,
        EventStatus::Completed,
        "the guest saw ChannelError::Closed for send, send-close and skip-close after closing"
    );
    assert_eq!(
        out.statuses.len(),
        1,
        "only the closing status went through"
    );
    let (status, delivery) = &out.statuses[0];
    assert_eq!(*delivery, Delivery::SendClose);
    assert_eq!(status.messages, vec![Message::new("phase", "close")]);
    assert_eq!(out.on_status_calls, 1);
    assert!(out.on_status_errors.is_empty());
    assert!(!out.left_open);
    host.handler_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_flood_is_bounded_by_the_deadline() {
    const FLOOD: usize = 100_000;
    let host = host("hostile-handler", DEADLINE).await;
    let (oref, obj) = deployment("status-flood");
    let started = Instant::now();
    let result = host.hostile.handle(&oref, HandlerEvent::Added(obj)).await;
    let elapsed = started.elapsed();
    match result {
        // 100 000 on-status calls within 500 ms: every one of them accounted for, in order.
        Ok(out) => {
            assert_eq!(out.status, EventStatus::Completed);
            assert!(out.left_open, "closed by the host");
            assert_eq!(out.statuses.len(), FLOOD);
            assert_eq!(out.on_status_calls, FLOOD);
            assert!(out.on_status_errors.is_empty());
            assert!(
                out.statuses
                    .iter()
                    .enumerate()
                    .all(|(i, (s, d))| *d == Delivery::Send && s.messages[0].value == i.to_string())
            );
        }
        // Otherwise the deadline stops it, and the channel's backlog does not outlive the call.
        Err(err) => {
            assert!(matches!(err, CallError::Timeout { .. }), "{err}");
            names(&err, "hostile-handler", "Deployment default/status-flood");
            assert!(
                elapsed < Duration::from_secs(5),
                "ended near the 500 ms deadline: {elapsed:?}"
            );
        }
    }
    host.handler_still_works().await;
    host.other_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_handler_fails_its_event_after_bounded_retries_and_others_go_on() {
    let host = host("hostile-handler", DEADLINE).await;
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let seen = deliveries.clone();
    let policy = RetryPolicy {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        default_max_retry: 2,
        jitter: 0.0,
    };
    let dispatcher = Dispatcher::new(
        DispatchConfig::default()
            .retry(policy)
            .on_delivery(move |d| seen.lock().unwrap().push(d.clone())),
    );
    dispatcher.set_plugins(&[host.hostile.clone(), host.other.clone()]);

    let (object, json) = deployment("trap");
    let outcome: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    let (ok, failed) = (outcome.clone(), outcome.clone());
    let root: ChangeEvent = Event::with_ack(
        ObjectChange {
            object,
            change: Change::Added(Arc::from(json)),
        },
        Context::new().with_trace_id("trap"),
        move || *ok.lock().unwrap() = Some(Ok(())),
        move |e| *failed.lock().unwrap() = Some(Err(capstan::error_chain(&e))),
    );
    assert_eq!(
        dispatcher.dispatch(root),
        2,
        "both plugins watch Deployments"
    );
    for _ in 0..200 {
        if deliveries.lock().unwrap().len() == 2 && outcome.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deliveries = deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2, "one final delivery per plugin");
    let hostile = deliveries
        .iter()
        .find(|d| d.plugin == "hostile-handler")
        .unwrap();
    assert_eq!(hostile.attempts, 3, "one call and two retries");
    assert!(
        matches!(
            &hostile.result,
            Err(DispatchError::Call {
                attempts: 3,
                source: CallError::Trap { .. }
            })
        ),
        "{:?}",
        hostile.result
    );
    let other = deliveries
        .iter()
        .find(|d| d.plugin == "echo-handler")
        .unwrap();
    assert_eq!(other.attempts, 1);
    assert_eq!(
        other.result.as_ref().unwrap().status,
        EventStatus::Completed
    );
    let outcome = outcome.lock().unwrap().clone();
    let Some(Err(error)) = outcome else {
        panic!("the root event fails: {outcome:?}");
    };
    assert!(
        error.contains("plugin hostile-handler") && error.contains("Deployment default/trap"),
        "{error}"
    );
    host.handler_still_works().await;
}

// ---------------------------------------------------------------------------------------------
// Reconciler plugin.

/// A reconciliation of `obj` that has fetched, with nothing granted.
async fn fetched(plugin: &Plugin, oref: &ObjectRef, obj: &str) -> Reconciliation {
    let mut r = plugin.reconcile(oref, obj).await.unwrap().unwrap();
    r.fetch(Grants::default()).await.unwrap().unwrap();
    r
}

async fn plan_error(name: &str) -> (Host, CallError) {
    plan_error_within(name, DEADLINE).await
}

async fn plan_error_within(name: &str, deadline: Duration) -> (Host, CallError) {
    let host = host("hostile-reconciler", deadline).await;
    let (oref, obj) = webapp(name);
    let err = fetched(&host.hostile, &oref, &obj)
        .await
        .plan()
        .await
        .unwrap_err();
    names(
        &err,
        "hostile-reconciler",
        &format!("WebApp default/{name}"),
    );
    (host, err)
}

fn invalid_reason(err: &CallError, export: &str) -> String {
    match err {
        CallError::InvalidOutput {
            export: e, reason, ..
        } => {
            assert_eq!(*e, export);
            reason.clone()
        }
        other => panic!("invalid output, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_object_that_is_not_json_is_invalid_output() {
    let (host, err) = plan_error("bad-json").await;
    let reason = invalid_reason(&err, "plan-resources");
    assert!(reason.contains("not JSON"), "{reason}");
    host.reconciler_still_works().await;
    host.other_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_object_without_a_name_is_invalid_output() {
    let (host, err) = plan_error("no-name").await;
    let reason = invalid_reason(&err, "plan-resources");
    assert!(reason.contains("metadata.name"), "{reason}");
    host.reconciler_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_48_mib_plan_is_refused_over_the_value_limit() {
    // Building 48 MiB in a fresh instance (its memory grown page by page) takes a while on a busy
    // machine: the deadline is not what this test is about.
    let (host, err) = plan_error_within("huge-plan", Duration::from_secs(10)).await;
    let reason = invalid_reason(&err, "plan-resources");
    assert!(
        reason.contains(&format!("over the {MAX_VALUE}-byte limit")),
        "{reason}"
    );
    let bytes: usize = reason.split(' ').next().unwrap().parse().unwrap();
    assert!(bytes >= 48 << 20, "the whole plan was measured: {reason}");
    host.reconciler_still_works().await;
    host.other_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_planning_is_a_trap() {
    let (host, err) = plan_error("panic").await;
    assert!(
        matches!(
            &err,
            CallError::Trap {
                export: "plan-resources",
                ..
            }
        ),
        "{err}"
    );
    host.reconciler_still_works().await;
    host.other_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_plan_is_stopped_at_the_deadline() {
    // Timed from the call, not from loading (compiling the guests takes long on a busy machine).
    let host = host("hostile-reconciler", DEADLINE).await;
    let (oref, obj) = webapp("spin");
    let mut r = fetched(&host.hostile, &oref, &obj).await;
    let started = Instant::now();
    let err = r.plan().await.unwrap_err();
    names(&err, "hostile-reconciler", "WebApp default/spin");
    assert!(
        matches!(
            &err,
            CallError::Timeout {
                export: "plan-resources",
                timeout_ms: 500,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped near the deadline: {:?}",
        started.elapsed()
    );
    host.reconciler_still_works().await;
    host.other_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_error_is_a_categorized_result_not_a_crash() {
    let host = host("hostile-reconciler", DEADLINE).await;
    let (oref, obj) = webapp("fetch-error");
    let mut r = host.hostile.reconcile(&oref, &obj).await.unwrap().unwrap();
    let out = r.fetch(Grants::default()).await.unwrap();
    assert_eq!(
        out,
        Err(CategorizedError {
            category: ErrorCategory::Auth,
            message: "credentials of fetch-error were rejected".into(),
        })
    );
    host.reconciler_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_observation_stays_in_the_guest() {
    // Contract 0.2: what fetch observed never crosses the boundary, so its size costs the host
    // nothing; the guest's own memory limit bounds it, and the later phases use it.
    let host = host("hostile-reconciler", DEADLINE).await;
    let (oref, obj) = webapp("huge-observation");
    let mut r = fetched(&host.hostile, &oref, &obj).await;
    let health = r.health().await.unwrap();
    assert_eq!(health.len(), 1);
    host.reconciler_still_works().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_fields_that_are_not_json_are_invalid_output() {
    let host = host("hostile-reconciler", DEADLINE).await;
    let (oref, obj) = webapp("bad-status");
    let err = fetched(&host.hostile, &oref, &obj)
        .await
        .status(&serde_json::json!({"phase": "Ready"}))
        .await
        .unwrap_err();
    names(&err, "hostile-reconciler", "WebApp default/bad-status");
    let reason = invalid_reason(&err, "status");
    assert!(reason.contains("not JSON"), "{reason}");
    host.reconciler_still_works().await;
    host.other_still_works().await;
}
