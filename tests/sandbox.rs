//! Sandbox limits: an endless loop is stopped at the deadline, a memory bomb at the memory limit, a
//! panic is a trap; each fails only that call, naming plugin and object, and the plugin goes on.
#![allow(clippy::unwrap_used)]

use capstan::contract::ObjectRef;
use capstan::plugin::{CallError, HandlerEvent, Limits, Plugin, Runtime, RuntimeConfig};
use capstan::status::EventStatus;
use capstan_tests::{deployment_json, guest};
use std::time::{Duration, Instant};

async fn hostile() -> Plugin {
    let limits = Limits::default()
        .call_timeout(Duration::from_millis(500))
        .memory_bytes(32 << 20);
    Runtime::new(RuntimeConfig::default().limits(limits))
        .unwrap()
        .load(&guest("hostile-handler"))
        .await
        .unwrap()
}

fn event(name: &str) -> (ObjectRef, HandlerEvent) {
    let json = deployment_json(name);
    (
        ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap(),
        HandlerEvent::Added(json),
    )
}

async fn still_works(plugin: &Plugin) {
    let (oref, ev) = event("fine");
    assert_eq!(
        plugin.handle(&oref, ev).await.unwrap().status,
        EventStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let plugin = hostile().await;
    let (oref, ev) = event("spin");
    let started = Instant::now();
    let err = plugin.handle(&oref, ev).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped near the 500 ms deadline: {:?}",
        started.elapsed()
    );
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("hostile-handler") && msg.contains("Deployment default/spin"),
        "{msg}"
    );
    still_works(&plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_traps_at_the_limit() {
    let plugin = hostile().await;
    let (oref, ev) = event("bomb");
    let err = plugin.handle(&oref, ev).await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("Deployment default/bomb"), "{err}");
    still_works(&plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_of_that_call_only() {
    let plugin = hostile().await;
    let (oref, ev) = event("panic");
    let err = plugin.handle(&oref, ev).await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    still_works(&plugin).await;
}
