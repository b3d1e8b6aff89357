//! Bounded cost, end to end with the `noisy-reconciler` guest against the embedded API server: a
//! requeue of 0 waits for the floor, a hot object is held to its rate, a plugin inventing reasons
//! gets a bounded number of Event objects and a repeated event one object with a growing count,
//! a log flood is rate-limited with a counted drop, lists over their limits fail their call with
//! an error naming the field, and one poison object backs off alone while failures on distinct
//! objects still quarantine the plugin.
#![allow(clippy::unwrap_used)]

use crate::support::Fields;
use capstan::contract::ObjectRef;
use capstan::informer::Informers;
use capstan::metrics::Metrics;
use capstan::plugin::{CallError, Limits, Plugin, PluginState, QuarantinePolicy, Runtime};
use capstan::reconcile::{Controller, ControllerConfig};
use capstan_apiserver::RunningServer;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long any awaited state may take (two cores, shared).
const TIMEOUT: Duration = Duration::from_secs(60);

const PLUGIN: &str = "noisy-reconciler";

// ---------------------------------------------------------------------------------------------
// What the host logs about the noisy plugin, from every thread.

/// One log record about the noisy plugin.
#[derive(Debug, Clone)]
struct Record {
    level: tracing::Level,
    fields: HashMap<String, String>,
    at: Instant,
}

impl Record {
    fn get(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Record>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        if fields.get("plugin").is_some_and(|p| p.contains(PLUGIN)) {
            self.0.lock().unwrap().push(Record {
                level: *event.metadata().level(),
                fields,
                at: Instant::now(),
            });
        }
    }
}

/// Every record about the noisy plugin so far (a global subscriber: reconciles run on workers).
fn records() -> Vec<Record> {
    static LOGS: OnceLock<Collect> = OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let collect = Collect::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(collect.clone()),
        )
        .unwrap();
        collect
    });
    logs.0.lock().unwrap().clone()
}

/// Warnings that a reconcile call about `object` failed.
fn call_failures(object: &str) -> Vec<Record> {
    let object = format!("WebApp default/{object}");
    records()
        .into_iter()
        .filter(|r| r.get("message") == "reconcile call failed" && r.get("object") == object)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The environment.

struct Env {
    server: RunningServer,
    client: kube::Client,
    metrics: Metrics,
}

impl Env {
    /// An API server with the WebApp CRD (the example object removed: only a test's own objects
    /// are reconciled).
    async fn start() -> Self {
        records();
        let server = crate::support::apiserver().await;
        let client = server.client().unwrap();
        capstan::manifests::apply_dir(&client, &crate::support::root().join("examples"))
            .await
            .unwrap();
        let env = Self {
            server,
            client,
            metrics: Metrics::new(),
        };
        env.webapps()
            .delete("shop", &DeleteParams::default())
            .await
            .unwrap();
        env
    }

    fn webapps(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
                "webapps",
            ),
        )
    }

    async fn create(&self, name: &str) {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"image": "nginx:1.27", "replicas": 1, "port": 8080}
        }))
        .unwrap();
        self.webapps()
            .create(&PostParams::default(), &app)
            .await
            .unwrap();
    }

    /// The noisy plugin under `limits`, counting into this environment's metrics.
    async fn plugin(&self, limits: Limits) -> Plugin {
        Runtime::new(
            crate::support::runtime_config()
                .limits(limits)
                .metrics(self.metrics.clone()),
        )
        .unwrap()
        .load(&crate::support::guest(PLUGIN))
        .await
        .unwrap()
    }

    /// A controller for `plugin` with fast retries.
    async fn controller(&self, plugin: Plugin) -> Controller {
        let config = ControllerConfig {
            retry: crate::support::fast_retry(),
            metrics: Some(self.metrics.clone()),
            ..ControllerConfig::default()
        };
        Controller::start(
            plugin,
            &Informers::new(self.client.clone()),
            self.client.clone(),
            config,
        )
        .await
        .unwrap()
    }

    /// The sum of the series starting with `prefix`.
    fn sum(&self, prefix: &str) -> f64 {
        crate::support::metric_sum(&self.metrics, prefix)
    }

    /// Reconciles finished by the noisy plugin (every result).
    fn reconciles(&self) -> f64 {
        self.sum(&format!("capstan_reconciles_total{{plugin=\"{PLUGIN}\""))
    }

    /// Events regarding the WebApp `name`.
    async fn events(&self, name: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    async fn status(&self, name: &str) -> Value {
        serde_json::to_value(self.webapps().get(name).await.unwrap()).unwrap()["status"].clone()
    }

    async fn ready(&self, name: &str) {
        eventually(&format!("{name} ready"), async || {
            (self.status(name).await["phase"] == "Ready").then_some(())
        })
        .await;
    }

    async fn shutdown(self) {
        self.server.shutdown().await.unwrap();
    }
}

async fn eventually<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    crate::support::eventually_within(TIMEOUT, what, f).await
}

fn webapp(name: &str) -> (ObjectRef, String) {
    let obj = json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "1", "generation": 1},
        "spec": {"image": "nginx:1.27", "replicas": 1, "port": 8080}
    });
    (ObjectRef::from_json(&obj).unwrap(), obj.to_string())
}

// ---------------------------------------------------------------------------------------------
// Requeues.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeue_of_zero_waits_for_the_floor() {
    let env = Env::start().await;
    let _c = env.controller(env.plugin(Limits::default()).await).await;
    env.create("unique-reason").await;
    let first = eventually("a first reconcile", async || {
        (env.reconciles() >= 1.0).then(Instant::now)
    })
    .await;
    eventually("four more reconciles", async || {
        (env.reconciles() >= 5.0).then_some(())
    })
    .await;
    // Each asked for 0 s; the default floor of 1 s spaces them (the object's own burst would
    // let ten through at once).
    let took = first.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "4 requeues of 0 took {took:?}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_wakes_itself_is_held_to_its_rate() {
    let env = Env::start().await;
    let _c = env.controller(env.plugin(Limits::default()).await).await;
    let started = Instant::now();
    // Every reconcile changes its ConfigMap, whose change queues the object again at once.
    env.create("child-churn").await;
    eventually("sixteen reconciles", async || {
        (env.reconciles() >= 16.0).then_some(())
    })
    .await;
    // A burst of 10, then one a second.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "16 reconciles took {took:?}"
    );
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Events.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_reason_every_reconcile_ends_in_a_bounded_number_of_events() {
    let env = Env::start().await;
    // A low floor, so the hostile pattern runs hot.
    let limits = Limits::default().min_requeue_after(Duration::from_millis(20));
    let _c = env.controller(env.plugin(limits).await).await;
    env.create("unique-reason").await;
    eventually("100 reconciles", async || {
        (env.reconciles() >= 100.0).then_some(())
    })
    .await;
    // Each reconcile asked for two Warning events, one with a reason never seen before.
    let events = eventually("a combined event", async || {
        let events = env.events("unique-reason").await;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("SimilarEventsCombined"))
            .then_some(events)
    })
    .await;
    assert!(events.len() <= 30, "{} Event objects", events.len());
    // And few writes: 25 at once (creates and count increments), then one per 5 minutes.
    let writes: i32 = events
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    assert!(writes <= 26, "{writes} events sent for 200 asked");
    let combined = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SimilarEventsCombined"))
        .unwrap();
    assert!(
        combined
            .note
            .as_deref()
            .unwrap()
            .starts_with("(combined from similar events): "),
        "{combined:?}"
    );
    assert_eq!(combined.type_.as_deref(), Some("Warning"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_repeated_event_is_one_object_with_a_growing_count() {
    let env = Env::start().await;
    let limits = Limits::default().min_requeue_after(Duration::from_millis(20));
    let _c = env.controller(env.plugin(limits).await).await;
    env.create("steady-warning").await;
    let waiting = |events: &[Event]| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Waiting"))
            .cloned()
            .collect()
    };
    eventually("a count of 5", async || {
        let events = env.events("steady-warning").await;
        waiting(&events)
            .iter()
            .any(|e| e.series.as_ref().is_some_and(|s| s.count >= 5))
            .then_some(())
    })
    .await;
    let events = env.events("steady-warning").await;
    assert_eq!(waiting(&events).len(), 1, "{events:?}");
    let warnings = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .count();
    assert_eq!(warnings, 2, "WidgetReady and Ready, once each: {events:?}");
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Logs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_rate_limited_with_a_counted_drop() {
    let env = Env::start().await;
    // 100 MiB go through the host in one call: room for a slow machine.
    let limits = Limits::default().call_timeout(Duration::from_secs(30));
    let _c = env.controller(env.plugin(limits).await).await;
    let started = Instant::now();
    env.create("log-flood").await;
    env.ready("log-flood").await;
    let dropped = format!("capstan_plugin_log_dropped_total{{plugin=\"{PLUGIN}\"}}");
    let dropped_bytes = format!("capstan_plugin_log_dropped_bytes_total{{plugin=\"{PLUGIN}\"}}");
    assert!(env.sum(&dropped) >= 100_000.0, "{}", env.metrics.encode());
    assert!(env.sum(&dropped_bytes) >= 90.0 * 1024.0 * 1024.0);
    let elapsed = started.elapsed().as_secs_f64();
    let lines: Vec<Record> = records()
        .into_iter()
        .filter(|r| r.get("stream") == "stdout")
        .collect();
    // The default budget: 256 KiB at once, then 64 KiB a second.
    let logged: usize = lines.iter().map(|r| r.get("message").len()).sum();
    #[allow(clippy::cast_precision_loss)]
    let budget = (256 << 10) as f64 + (64 << 10) as f64 * elapsed;
    #[allow(clippy::cast_precision_loss)]
    let logged_f = logged as f64;
    assert!(logged_f <= budget, "{logged} bytes logged in {elapsed} s");
    assert!(!lines.is_empty(), "the burst went through");
    assert!(
        lines.iter().all(|r| r.get("message").len() == 1023),
        "one record per line, whatever the writes"
    );
    let warning = records()
        .into_iter()
        .find(|r| {
            r.level == tracing::Level::WARN
                && r.get("message")
                    .contains("plugin log output over its budget")
        })
        .expect("a warning about the drop");
    let counted: u64 = warning.get("dropped_records").parse().unwrap();
    assert!(counted > 0, "{warning:?}");
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Returned lists.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_health_report_fails_its_call_not_the_status_write() {
    let env = Env::start().await;
    let _c = env.controller(env.plugin(Limits::default()).await).await;
    env.create("huge-health").await;
    env.create("fine").await;
    let failure = eventually("the failed health call", async || {
        call_failures("huge-health").into_iter().next()
    })
    .await;
    let error = failure.get("error");
    assert!(
        error.contains("plugin noisy-reconciler")
            && error.contains("WebApp default/huge-health")
            && error.contains(
                "component health: 10000 entries, over the limit of 64 (limits.maxConditions)"
            ),
        "{error}"
    );
    env.ready("fine").await;
    assert!(
        env.status("huge-health").await.get("conditions").is_none(),
        "nothing was written"
    );
    assert!(
        !records()
            .iter()
            .any(|r| r.get("message") == "status update failed"
                && r.get("object") == "WebApp default/huge-health"),
        "no write was tried"
    );
    env.shutdown().await;
}

/// A reconciliation of `obj` that has fetched, with nothing granted.
async fn fetched(
    plugin: &capstan::plugin::Plugin,
    oref: &ObjectRef,
    obj: &str,
) -> capstan::plugin::Reconciliation {
    let mut r = plugin.reconcile(oref, obj).await.unwrap().unwrap();
    r.fetch(capstan::plugin::Grants::default())
        .await
        .unwrap()
        .unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_status_updates_over_their_counts_fail_their_call() {
    let env = Env::start().await;
    let plugin = env.plugin(Limits::default()).await;
    let (oref, obj) = webapp("many-entries");
    let err = fetched(&plugin, &oref, &obj)
        .await
        .plan()
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::InvalidOutput { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "plugin noisy-reconciler: plan-resources on WebApp default/many-entries returned an invalid value: plan: 300 entries, over the limit of 256 (limits.maxPlanEntries)"
    );
    let (oref, obj) = webapp("many-conditions");
    let err = fetched(&plugin, &oref, &obj)
        .await
        .status(&json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "status conditions: 100 entries, over the limit of 64 (limits.maxConditions)"
        ),
        "{err}"
    );
    // The counts are limits: configured higher, the same calls pass.
    let roomy = env
        .plugin(Limits::default().max_plan_entries(300).max_conditions(100))
        .await;
    let (oref, obj) = webapp("many-entries");
    let planned = fetched(&roomy, &oref, &obj).await.plan().await;
    assert_eq!(planned.unwrap().unwrap().len(), 300);
    let (oref, obj) = webapp("many-conditions");
    let update = fetched(&roomy, &oref, &obj)
        .await
        .status(&json!({}))
        .await
        .unwrap();
    assert_eq!(update.conditions.len(), 100);
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Poison objects.

fn quarantine_after(n: u32) -> Limits {
    Limits::default().quarantine(QuarantinePolicy {
        after_failures: n,
        initial_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(10),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_object_backs_off_alone_and_never_quarantines_the_plugin() {
    let env = Env::start().await;
    let controller = env.controller(env.plugin(quarantine_after(3)).await).await;
    // Its own name: the records are the whole binary's, and another test's `poison-pill` running
    // beside this one would interleave its failures with these.
    env.create("poison-backoff").await;
    env.create("fine-a").await;
    let failures = eventually("8 failures of the poison object", async || {
        let f = call_failures("poison-backoff");
        (f.len() >= 8).then_some(f)
    })
    .await;
    // Every retry ran the plugin and trapped: none was refused by a quarantine.
    for f in &failures {
        assert!(f.get("error").contains("trapped"), "{f:?}");
    }
    assert_eq!(controller.plugin().state(), PluginState::Running);
    // It backs off: after a few rounds the retries are far apart.
    let last = failures[7].at - failures[6].at;
    assert!(last >= Duration::from_millis(500), "{last:?}");
    // The plugin serves every other object, old and new.
    env.ready("fine-a").await;
    env.create("fine-b").await;
    env.ready("fine-b").await;
    assert_eq!(controller.plugin().state(), PluginState::Running);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_distinct_objects_still_quarantine_the_plugin() {
    let env = Env::start().await;
    let controller = env.controller(env.plugin(quarantine_after(3)).await).await;
    for name in ["poison-1", "poison-2", "poison-3"] {
        env.create(name).await;
    }
    eventually("quarantine", async || {
        matches!(
            controller.plugin().state(),
            PluginState::Degraded { failures: 3, .. }
        )
        .then_some(())
    })
    .await;
    // Once the quarantine ends, a healthy object is served again.
    env.create("fine-late").await;
    env.ready("fine-late").await;
    env.shutdown().await;
}

/// Every way a reconcile ends is counted by result: `ok` (settled), `requeue` (a component still
/// progressing asks to be looked at again), `error` (the plugin trapped; retried with backoff), `terminal` (a failed
/// component: nothing more until the spec changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_outcomes_are_counted_by_result() {
    let env = Env::start().await;
    let controller = env.controller(env.plugin(Limits::default()).await).await;
    for name in ["fine-a", "steady-warning", "poison-pill", "failed-widget"] {
        env.create(name).await;
    }
    let count = |result: &str| {
        env.sum(&format!(
            "capstan_reconciles_total{{plugin=\"{PLUGIN}\",result=\"{result}\"}}"
        ))
    };
    eventually("every result counted", async || {
        ["ok", "requeue", "error", "terminal"]
            .iter()
            .all(|r| count(r) >= 1.0)
            .then_some(())
    })
    .await;
    // The terminal failure is counted once: it is not retried until its spec changes.
    let terminal = count("terminal");
    crate::support::never_within(
        Duration::from_secs(3),
        "a terminal failure retried",
        async || count("terminal") > terminal,
    )
    .await;
    assert!(count("error") >= 2.0, "the trapping object is retried");
    drop(controller);
    env.shutdown().await;
}
