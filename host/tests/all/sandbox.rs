//! Sandbox limits: an endless loop is stopped at the deadline, a memory bomb at the memory limit, a
//! panic is a trap; each fails only that call, naming plugin and object, and the plugin goes on.
#![allow(clippy::unwrap_used)]

use crate::support::{deployment_json, guest};
use capstan::contract::ObjectRef;
use capstan::plugin::{CallError, HandlerEvent, Limits, Plugin, Runtime};
use capstan::status::EventStatus;
use std::time::{Duration, Instant};

async fn hostile() -> Plugin {
    let limits = Limits::default()
        .call_timeout(Duration::from_millis(500))
        .memory_bytes(32 << 20);
    Runtime::new(crate::support::runtime_config().limits(limits))
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

fn added(name: &str, labels: serde_json::Value) -> (ObjectRef, HandlerEvent) {
    let json = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": labels}
    })
    .to_string();
    (
        ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap(),
        HandlerEvent::Added(json),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_failing_is_quarantined_then_comes_back() {
    use capstan::plugin::{PluginState, QuarantinePolicy};
    let limits = Limits::default().quarantine(QuarantinePolicy {
        after_failures: 2,
        initial_backoff: Duration::from_millis(400),
        max_backoff: Duration::from_secs(5),
    });
    let plugin = Runtime::new(crate::support::runtime_config().limits(limits))
        .unwrap()
        .load(&guest("hostile-handler"))
        .await
        .unwrap();
    // One poison object failing again and again does not quarantine the plugin...
    for _ in 0..5 {
        let (oref, ev) = event("panic");
        assert!(matches!(
            plugin.handle(&oref, ev).await.unwrap_err(),
            CallError::Trap { .. }
        ));
    }
    assert_eq!(plugin.state(), PluginState::Running);
    // ...failures on two distinct objects with no success in between do.
    let (oref, ev) = event("trap");
    assert!(matches!(
        plugin.handle(&oref, ev).await.unwrap_err(),
        CallError::Trap { .. }
    ));
    assert!(matches!(
        plugin.state(),
        PluginState::Degraded { failures: 2, .. }
    ));
    // Refused without running, even for an object it would handle.
    let (oref, ev) = event("fine");
    let err = plugin.handle(&oref, ev).await.unwrap_err();
    assert!(matches!(err, CallError::Quarantined { .. }), "{err}");
    assert!(err.to_string().contains("hostile-handler"), "{err}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    // The trial call succeeds: running again.
    still_works(&plugin).await;
    assert_eq!(plugin.state(), PluginState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_grants_nothing_unless_configured_and_read_only_means_read_only() {
    use capstan::plugin::{DirGrant, PluginSettings, WasiGrants};
    let dir = crate::support::tempdir();
    std::fs::write(dir.path().join("greeting"), "hello from the host").unwrap();
    let plugin = Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&guest("fs-handler"))
        .await
        .unwrap();
    let report = |p: capstan::plugin::Plugin| async move {
        let (oref, ev) = added("fs", serde_json::json!({}));
        let out = p.handle(&oref, ev).await.unwrap();
        let msgs = out.statuses[0].0.messages.clone();
        let get = |k: &str| {
            msgs.iter()
                .find(|m| m.key == k)
                .map(|m| m.value.clone())
                .unwrap()
        };
        (get("read"), get("write"), get("env"))
    };
    let (read, write, env) = report(plugin.clone()).await;
    assert!(read.starts_with("error"), "nothing granted: {read}");
    assert!(write.starts_with("error"), "{write}");
    assert_eq!(env, "unset");

    let settings = PluginSettings {
        wasi: WasiGrants {
            dirs: vec![DirGrant {
                host: dir.path().to_owned(),
                guest: "/config".into(),
                writable: false,
            }],
            env: [("GREETING".to_owned(), "hi".to_owned())].into(),
        },
        ..PluginSettings::default()
    };
    let (read, write, env) = report(plugin.configure(&settings, None)).await;
    assert_eq!(read, "hello from the host");
    assert!(write.starts_with("error"), "read-only grant: {write}");
    assert!(!dir.path().join("out").exists());
    assert_eq!(env, "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_bounds_a_call_by_work_not_time() {
    let limits = Limits::default()
        .call_timeout(Duration::from_secs(30))
        .fuel(Some(5_000_000));
    let plugin = Runtime::new(crate::support::runtime_config().fuel(true).limits(limits))
        .unwrap()
        .load(&guest("cpu-handler"))
        .await
        .unwrap();
    let (oref, ev) = added("cpu", serde_json::json!({"work": "1000"}));
    assert_eq!(
        plugin.handle(&oref, ev).await.unwrap().status,
        EventStatus::Completed
    );
    let (oref, ev) = added("cpu", serde_json::json!({"work": "1000000000"}));
    let started = Instant::now();
    let err = plugin.handle(&oref, ev).await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("fuel"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_narrows_what_the_manifest_may_touch() {
    use capstan::contract::{AccessRule, Gvk, Verb};
    use capstan::plugin::PluginSettings;
    let plugin = Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&guest("webapp"))
        .await
        .unwrap();
    let dep = Gvk::new("apps", "v1", "Deployment");
    assert!(plugin.manifest().owns.contains(&dep));
    let narrowed = plugin.configure(
        &PluginSettings {
            allow: Some(vec![AccessRule::new(
                Gvk::new("", "v1", "Service"),
                vec![Verb::Patch],
            )]),
            ..PluginSettings::default()
        },
        None,
    );
    assert!(
        !narrowed.manifest().owns.contains(&dep),
        "Deployments not allowed"
    );
    assert!(
        narrowed.declared_manifest().owns.contains(&dep),
        "as declared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_grants_go_to_the_bound_file_and_content_not_the_declared_name() {
    use capstan::plugin::{Binding, DirGrant, GrantEntry, PluginSettings, WasiGrants};
    let secret = crate::support::tempdir();
    std::fs::write(secret.path().join("greeting"), "hello from the host").unwrap();
    let real = std::fs::read(guest("fs-handler")).unwrap();
    let entry = GrantEntry {
        name: "fs-handler".into(),
        binding: Binding {
            file: Some("fs-handler.wasm".into()),
            sha256: Some(capstan::plugin::content_hash(&real)),
        },
        settings: PluginSettings {
            wasi: WasiGrants {
                dirs: vec![DirGrant {
                    host: secret.path().to_owned(),
                    guest: "/config".into(),
                    writable: false,
                }],
                env: [("GREETING".to_owned(), "hi".to_owned())].into(),
            },
            ..PluginSettings::default()
        },
    };
    let runtime = Runtime::new(crate::support::runtime_config().grant(entry)).unwrap();
    let plugins = crate::support::tempdir();
    let load = |file: &str, bytes: &[u8]| {
        let path = plugins.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let runtime = runtime.clone();
        async move { runtime.load(&path).await.unwrap() }
    };
    let sees = |p: Plugin| async move {
        let (oref, ev) = event("fs");
        let out = p.handle(&oref, ev).await.unwrap();
        let msgs = out.statuses[0].0.messages.clone();
        let env = msgs.iter().find(|m| m.key == "env").unwrap().value.clone();
        let read = msgs.iter().find(|m| m.key == "read").unwrap().value.clone();
        (read, env)
    };

    // The bound file with the bound content: granted.
    let p = load("fs-handler.wasm", &real).await;
    assert!(p.grant().bound);
    assert_eq!(
        sees(p).await,
        ("hello from the host".to_owned(), "hi".to_owned())
    );

    // The same content under another file name: the file does not match.
    let p = load("copy.wasm", &real).await;
    assert_eq!(p.name(), "fs-handler");
    assert!(!p.grant().bound);
    let reason = p.grant().reason.clone().unwrap();
    assert!(
        reason.contains("bound to file fs-handler.wasm with sha256"),
        "{reason}"
    );
    let (read, env) = sees(p).await;
    assert!(read.starts_with("error"), "{read}");
    assert_eq!(env, "unset");

    // Other content (declaring the same name) in the bound file: the digest does not match.
    let other = crate::support::with_custom_section(&real, b"rebuilt by someone else");
    let p = load("fs-handler.wasm", &other).await;
    assert!(!p.grant().bound);
    assert_eq!(sees(p).await.1, "unset");
}
