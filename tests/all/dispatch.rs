//! End to end over the bus: object changes become root events, every handler plugin watching the
//! kind gets a child event, statuses reach on-status, and each root is handled exactly once.
#![allow(clippy::unwrap_used)]

use capstan::bus::Bus;
use capstan::contract::ObjectRef;
use capstan::dispatch::{
    Change, ChangeEvent, DispatchConfig, DispatchError, Dispatcher, ObjectChange, RetryPolicy,
};
use capstan::event::{Context, Event};
use capstan::plugin::{Plugin, Runtime};
use capstan::status::EventStatus;
use capstan_tests::{deployment_json, guest, wait_for};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn load(names: &[&str]) -> Vec<Plugin> {
    let rt = Runtime::new(capstan_tests::runtime_config()).unwrap();
    let mut plugins = Vec::new();
    for n in names {
        plugins.push(rt.load(&guest(n)).await.unwrap());
    }
    plugins
}

#[derive(Default)]
struct Roots {
    handled: AtomicUsize,
    failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

fn root(name: &str, roots: &Arc<Roots>) -> ChangeEvent {
    let json = deployment_json(name);
    let object = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let (h, f) = (roots.clone(), roots.clone());
    Event::with_ack(
        ObjectChange {
            object,
            change: Change::Added(Arc::from(json)),
        },
        Context::new().with_trace_id(name),
        move || {
            h.handled.fetch_add(1, Ordering::SeqCst);
        },
        move |e| {
            f.failed.fetch_add(1, Ordering::SeqCst);
            f.errors.lock().unwrap().push(format!("{e:#}"));
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watching_plugin_gets_a_child_and_the_root_is_handled_once() {
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let seen = deliveries.clone();
    let dispatcher = Dispatcher::new(
        DispatchConfig::default().on_delivery(move |d| seen.lock().unwrap().push(d.clone())),
    );
    // webapp watches WebApps only: it must not get Deployment events.
    dispatcher.set_plugins(&load(&["deployment-handler", "echo-handler", "webapp"]).await);
    let bus: Bus<ChangeEvent> = Bus::new(100);
    let task = dispatcher.run(bus.subscribe(1000));
    let roots = Arc::new(Roots::default());
    // Published before start: buffered, then replayed.
    for i in 0..50 {
        bus.publish(root(&format!("web-{i}"), &roots));
    }
    bus.start();
    for i in 50..200 {
        bus.publish(root(&format!("web-{i}"), &roots));
    }
    wait_for("200 roots handled", || {
        roots.handled.load(Ordering::SeqCst) == 200
    })
    .await;
    assert_eq!(roots.failed.load(Ordering::SeqCst), 0);
    let deliveries = deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 400, "two handler plugins x 200 events");
    for d in deliveries.iter() {
        let out = d.result.as_ref().unwrap();
        assert_eq!(out.status, EventStatus::Completed);
        assert!(out.on_status_calls >= 1, "statuses reached on-status");
        assert!(d.plugin == "deployment-handler" || d.plugin == "echo-handler");
    }
    assert_eq!(bus.stats().dropped_total, 0);
    drop(bus);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_end_in_max_retry_reached() {
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let seen = deliveries.clone();
    let policy = RetryPolicy {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let dispatcher = Dispatcher::new(
        DispatchConfig::default()
            .retry(policy)
            .on_delivery(move |d| seen.lock().unwrap().push(d.clone())),
    );
    dispatcher.set_plugins(&load(&["retry-handler", "deployment-handler"]).await);
    let roots = Arc::new(Roots::default());
    dispatcher.dispatch(root("flaky", &roots)).await;
    wait_for("the root to fail", || {
        roots.failed.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_for("both deliveries", || deliveries.lock().unwrap().len() == 2).await;
    assert_eq!(
        roots.handled.load(Ordering::SeqCst),
        0,
        "handled never fires after an error"
    );
    let deliveries = deliveries.lock().unwrap();
    let retry = deliveries
        .iter()
        .find(|d| d.plugin == "retry-handler")
        .unwrap();
    assert_eq!(
        retry.attempts, 4,
        "with-max-retry(3): one call and three retries"
    );
    assert!(matches!(
        retry.result,
        Err(DispatchError::MaxRetryReached { retries: 3, .. })
    ));
    assert!(roots.errors.lock().unwrap()[0].contains("retry-handler"));
    assert_eq!(dispatcher.stats().retries.load(Ordering::SeqCst), 3);
    // The other plugin was not held back by the retries.
    assert!(
        deliveries
            .iter()
            .any(|d| d.plugin == "deployment-handler" && d.result.is_ok())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_channel_does_not_stall_the_event() {
    let dispatcher = Dispatcher::new(DispatchConfig::default());
    dispatcher.set_plugins(&load(&["forgetful-handler"]).await);
    let roots = Arc::new(Roots::default());
    assert_eq!(dispatcher.dispatch(root("open", &roots)).await, 1);
    wait_for("the root handled", || {
        roots.handled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_nobody_watches_is_handled_at_once() {
    let dispatcher = Dispatcher::new(DispatchConfig::default());
    dispatcher.set_plugins(&load(&["webapp"]).await);
    let roots = Arc::new(Roots::default());
    assert_eq!(dispatcher.dispatch(root("nobody", &roots)).await, 0);
    assert_eq!(roots.handled.load(Ordering::SeqCst), 1);
}
