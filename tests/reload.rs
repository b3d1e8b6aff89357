//! Hot reload: plugins are swapped live with no lost or doubled event, broken files change
//! nothing but an error, removed files unload, and `capstan run` shows it all at `/plugins`.
#![allow(clippy::unwrap_used)]

use capstan::contract::ObjectRef;
use capstan::dispatch::{Change, ChangeEvent, DispatchConfig, Dispatcher, ObjectChange};
use capstan::event::{Context, Event};
use capstan::plugin::{PluginEvent, Registry, Reloader, Runtime, RuntimeConfig};
use capstan_tests::{deployment_json, guest, tempdir};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn event(name: &str, failed: &Arc<AtomicUsize>) -> ChangeEvent {
    let json = deployment_json(name);
    let object = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let f = failed.clone();
    Event::with_ack(
        ObjectChange {
            object,
            change: Change::Added(Arc::from(json)),
        },
        Context::new(),
        || {},
        move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        },
    )
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<PluginEvent>) -> PluginEvent {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a plugin event")
        .expect("channel open")
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_lose_and_double_no_event() {
    let (v1, v2) = (guest("echo-handler"), guest("echo-handler-v2"));
    let cache = tempdir();
    let plugins = tempdir();
    let file = plugins.path().join("echo.wasm");
    capstan_tests::drop_in(&v1, &file);
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());

    let deliveries: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let seen = deliveries.clone();
    let dispatcher = Dispatcher::new(DispatchConfig::default().queue(8).on_delivery(move |d| {
        seen.lock()
            .unwrap()
            .push((d.object.name.clone(), d.version.clone(), d.result.is_ok()))
    }));
    for e in reloader.scan().await.unwrap() {
        let PluginEvent::Loaded(p) = e else {
            panic!("first scan loads")
        };
        dispatcher.upsert(&p);
    }

    // Events stream in, paced, for as long as the file flips between the two versions.
    let failed = Arc::new(AtomicUsize::new(0));
    let swapping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = {
        let (d, failed, swapping) = (dispatcher.clone(), failed.clone(), swapping.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while swapping.load(Ordering::SeqCst) {
                d.dispatch(event(&format!("e-{n}"), &failed)).await;
                n += 1;
                if n.is_multiple_of(4) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            n
        })
    };
    let mut versions = Vec::new();
    for i in 0..100 {
        capstan_tests::drop_in(if i % 2 == 0 { &v2 } else { &v1 }, &file);
        match reloader.sync(&file).await {
            Some(PluginEvent::Replaced { old, new }) => {
                assert_ne!(old.info().version, new.info().version);
                versions.push(new.info().version.clone());
                dispatcher.upsert(&new);
            }
            other => panic!("swap {i}: expected a replacement, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    swapping.store(false, Ordering::SeqCst);
    let published = producer.await.unwrap();
    assert!(
        published > 200,
        "events streamed during the swaps: {published}"
    );
    wait_for("every event delivered", || {
        deliveries.lock().unwrap().len() >= published
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let deliveries = deliveries.lock().unwrap();
    assert_eq!(deliveries.len(), published, "no event doubled");
    let mut by_event: HashMap<&str, usize> = HashMap::new();
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for (name, version, ok) in deliveries.iter() {
        assert!(ok, "{name} failed on {version}");
        *by_event.entry(name).or_default() += 1;
        *by_version.entry(version).or_default() += 1;
    }
    assert_eq!(by_event.len(), published, "every event handled");
    assert!(
        by_event.values().all(|n| *n == 1),
        "each by exactly one version"
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(
        by_version.values().all(|n| *n > 10) && by_version.len() == 2,
        "both versions handled events: {by_version:?}"
    );
    assert_eq!(versions.len(), 100);
    // From the precompiled cache, each swap after the first two skips compilation.
    assert_eq!(
        reloader.registry().plugins()[0].info().origin,
        capstan::plugin::Origin::Cached
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_watch_loads_swaps_rejects_and_unloads() {
    let plugins = tempdir();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let reloader =
        Reloader::new(runtime, Registry::new(), plugins.path()).debounce(Duration::from_millis(50));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    assert!(reloader.scan().await.unwrap().is_empty());
    let file = plugins.path().join("echo.wasm");

    capstan_tests::drop_in(&guest("echo-handler"), &file);
    let PluginEvent::Loaded(p) = next(&mut rx).await else {
        panic!("loaded")
    };
    assert_eq!(p.info().version, "0.1.0");

    // Editor droppings and temporary files are ignored.
    std::fs::write(plugins.path().join(".echo.wasm.swp"), b"junk").unwrap();
    std::fs::write(plugins.path().join("echo.wasm~"), b"junk").unwrap();

    capstan_tests::drop_in(&guest("echo-handler-v2"), &file);
    let PluginEvent::Replaced { old, new } = next(&mut rx).await else {
        panic!("replaced")
    };
    assert_eq!(
        (old.info().version.as_str(), new.info().version.as_str()),
        ("0.1.0", "0.2.0")
    );

    // A broken file, a core module, a wrong world: rejected, naming the file; 0.2.0 serves on.
    for (bytes, reason) in [
        (b"not wasm at all".to_vec(), "not a WebAssembly file"),
        (b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module"),
        (
            std::fs::read(guest("echo-handler")).unwrap()[..5000].to_vec(),
            "invalid component",
        ),
        (
            std::fs::read(guest("wrong-world")).unwrap(),
            "not a capstan plugin",
        ),
        (std::fs::read(guest("future-contract")).unwrap(), "0.9.0"),
        (
            std::fs::read(guest("trap-describe")).unwrap(),
            "describe failed",
        ),
    ] {
        std::fs::write(&file, &bytes).unwrap();
        wait_for("the rejection", || {
            reloader
                .registry()
                .view()
                .rejected
                .iter()
                .any(|r| r.reason.contains(reason) && r.reason.contains("echo.wasm"))
        })
        .await;
        let view = reloader.registry().view();
        assert_eq!(view.loaded.len(), 1);
        assert_eq!(
            view.loaded[0].version, "0.2.0",
            "the previous version keeps serving"
        );
        assert!(
            view.loaded[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains(reason)
        );
        // Clear the rejection record by reloading a good version between bad ones.
        capstan_tests::drop_in(&guest("echo-handler-v2"), &file);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        rx.try_recv().is_err(),
        "no event for rejected or identical files"
    );

    std::fs::remove_file(&file).unwrap();
    let PluginEvent::Unloaded(p) = next(&mut rx).await else {
        panic!("unloaded")
    };
    assert_eq!(p.name(), "echo-handler");
    assert!(reloader.registry().view().loaded.is_empty());
}
