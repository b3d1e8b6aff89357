//! Hot reload: plugins are swapped live with no lost or doubled event, broken files change
//! nothing but an error, removed files unload, and `capstan run` shows it all at `/plugins`.
#![allow(clippy::unwrap_used)]

use crate::support::{deployment_json, guest, never_within, tempdir, wait_for};
use capstan::contract::ObjectRef;
use capstan::dispatch::{Change, ChangeEvent, DispatchConfig, Dispatcher, ObjectChange};
use capstan::event::{Context, Event};
use capstan::plugin::{PluginEvent, Registry, Reloader, Runtime, RuntimeConfig};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_lose_and_double_no_event() {
    let (v1, v2) = (guest("echo-handler"), guest("echo-handler-v2"));
    let plugins = tempdir();
    let file = plugins.path().join("echo.wasm");
    crate::support::drop_in(&v1, &file);
    // The shared precompiled cache: each version is compiled once per test run, not per test.
    let runtime = Runtime::new(crate::support::runtime_config()).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());

    let deliveries: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let seen = deliveries.clone();
    let dispatcher = Dispatcher::new(DispatchConfig::default().on_delivery(move |d| {
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
                d.dispatch(event(&format!("e-{n}"), &failed));
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
        crate::support::drop_in(if i % 2 == 0 { &v2 } else { &v1 }, &file);
        match reloader.sync(&file).await.pop() {
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
    never_within(
        Duration::from_millis(200),
        "an event was delivered twice",
        async || deliveries.lock().unwrap().len() > published,
    )
    .await;

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
    let runtime = Runtime::new(crate::support::runtime_config()).unwrap();
    let reloader =
        Reloader::new(runtime, Registry::new(), plugins.path()).debounce(Duration::from_millis(50));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    assert!(reloader.scan().await.unwrap().is_empty());
    let file = plugins.path().join("echo.wasm");

    crate::support::drop_in(&guest("echo-handler"), &file);
    let PluginEvent::Loaded(p) = next(&mut rx).await else {
        panic!("loaded")
    };
    assert_eq!(p.info().version, "0.1.0");

    // Editor droppings and temporary files are ignored.
    std::fs::write(plugins.path().join(".echo.wasm.swp"), b"junk").unwrap();
    std::fs::write(plugins.path().join("echo.wasm~"), b"junk").unwrap();

    crate::support::drop_in(&guest("echo-handler-v2"), &file);
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
        crate::support::drop_in(&guest("echo-handler-v2"), &file);
        wait_for("the rejection cleared", || {
            reloader.registry().view().rejected.is_empty()
        })
        .await;
    }

    // The removal is the barrier: its event is the next one, so there was none for the rejected
    // or identical files.
    std::fs::remove_file(&file).unwrap();
    let PluginEvent::Unloaded(p) = next(&mut rx).await else {
        panic!("no event for rejected or identical files; the next one is the unload")
    };
    assert_eq!(p.name(), "echo-handler");
    assert!(reloader.registry().view().loaded.is_empty());
}

/// Write `bytes` at `to` as a careful writer does (beside it, then renamed into place).
fn drop_bytes(bytes: &[u8], to: &std::path::Path) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// A configuration entry for `fs-handler`, bound to the file `fs-handler.wasm`, lending `dir`
/// as `/config` and `GREETING=hi`.
fn fs_handler_grant(dir: &std::path::Path) -> capstan::plugin::GrantEntry {
    use capstan::plugin::{Binding, DirGrant, GrantEntry, PluginSettings, WasiGrants};
    GrantEntry {
        name: "fs-handler".into(),
        binding: Binding::file("fs-handler.wasm"),
        settings: PluginSettings {
            wasi: WasiGrants {
                dirs: vec![DirGrant {
                    host: dir.to_owned(),
                    guest: "/config".into(),
                    writable: false,
                }],
                env: [("GREETING".to_owned(), "hi".to_owned())].into(),
            },
            ..PluginSettings::default()
        },
    }
}

/// What fs-handler can see: the granted file and the granted variable.
async fn sees(p: &capstan::plugin::Plugin) -> (String, String) {
    let json = deployment_json("fs");
    let object = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let out = p
        .handle(&object, capstan::plugin::HandlerEvent::Added(json))
        .await
        .unwrap();
    let messages = out.statuses[0].0.messages.clone();
    let get = |k: &str| {
        messages
            .iter()
            .find(|m| m.key == k)
            .map(|m| m.value.clone())
            .unwrap()
    };
    (get("read"), get("env"))
}

fn unloaded_then_loaded(
    events: [PluginEvent; 2],
) -> (capstan::plugin::Plugin, capstan::plugin::Plugin) {
    match events {
        [PluginEvent::Unloaded(out), PluginEvent::Loaded(into)] => (out, into),
        other => panic!("expected the holder unloaded, then the winner loaded: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_gets_no_grant_and_the_bound_file_keeps_the_name_in_either_order() {
    let secret = tempdir();
    std::fs::write(secret.path().join("greeting"), "hello from the host").unwrap();
    let real = guest("fs-handler");
    // Another component that declares the same name: the impostor.
    let impostor = crate::support::with_custom_section(&std::fs::read(&real).unwrap(), b"impostor");
    let cache = tempdir();
    for impostor_first in [true, false] {
        let plugins = tempdir();
        let runtime = Runtime::new(
            RuntimeConfig::default()
                .cache_dir(cache.path())
                .grant(fs_handler_grant(secret.path())),
        )
        .unwrap();
        let reloader = Reloader::new(runtime, Registry::new(), plugins.path())
            .debounce(Duration::from_millis(50));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _watch = reloader.watch(tx).unwrap();
        assert!(reloader.scan().await.unwrap().is_empty());
        let (evil, bound) = (
            plugins.path().join("evil.wasm"),
            plugins.path().join("fs-handler.wasm"),
        );
        if impostor_first {
            drop_bytes(&impostor, &evil);
            let PluginEvent::Loaded(p) = next(&mut rx).await else {
                panic!("the impostor loads while the name is free")
            };
            assert_eq!(p.name(), "fs-handler");
            assert!(!p.grant().bound);
            let reason = p.grant().reason.clone().unwrap();
            assert!(
                reason.contains("bound to file fs-handler.wasm") && reason.contains("evil.wasm"),
                "{reason}"
            );
            let (read, env) = sees(&p).await;
            assert!(read.starts_with("error"), "no directory lent: {read}");
            assert_eq!(env, "unset", "no environment lent");
            crate::support::drop_in(&real, &bound);
            let (out, into) = unloaded_then_loaded([next(&mut rx).await, next(&mut rx).await]);
            assert_eq!(out.info().path, evil);
            assert_eq!(into.info().path, bound);
        } else {
            crate::support::drop_in(&real, &bound);
            let PluginEvent::Loaded(p) = next(&mut rx).await else {
                panic!("loaded")
            };
            assert_eq!(p.info().path, bound);
            drop_bytes(&impostor, &evil);
            wait_for("the impostor's rejection", || {
                reloader
                    .registry()
                    .view()
                    .rejected
                    .iter()
                    .any(|r| r.path == evil)
            })
            .await;
        }
        // Either way: the bound file holds the name, with its grant; the impostor is refused,
        // naming the file that keeps the name.
        let view = reloader.registry().view();
        assert_eq!(view.loaded.len(), 1, "order {impostor_first}");
        assert_eq!(view.loaded[0].path, bound);
        assert!(view.loaded[0].grant.status.bound);
        assert_eq!(view.loaded[0].grant.env, ["GREETING"], "names, not values");
        let rejected = view.rejected.iter().find(|r| r.path == evil).unwrap();
        assert!(
            rejected
                .reason
                .contains("a plugin named fs-handler is also declared by")
                && rejected.reason.contains("fs-handler.wasm")
                && rejected
                    .reason
                    .contains("the configuration binds the name to it"),
            "{}",
            rejected.reason
        );
        let p = reloader.registry().named("fs-handler").unwrap();
        assert_eq!(
            sees(&p).await,
            ("hello from the host".to_owned(), "hi".to_owned())
        );

        // When the bound file goes, the impostor gets the name back, still without the grant.
        std::fs::remove_file(&bound).unwrap();
        let (out, into) = unloaded_then_loaded([next(&mut rx).await, next(&mut rx).await]);
        assert_eq!(out.info().path, bound);
        assert_eq!(into.info().path, evil);
        assert!(!into.grant().bound);
        assert_eq!(sees(&into).await.1, "unset");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_startup_the_bound_file_wins_and_the_impostor_never_runs() {
    let secret = tempdir();
    let plugins = tempdir();
    let real = guest("fs-handler");
    // `a-evil.wasm` sorts before `fs-handler.wasm`: the name rule, not the order, decides.
    let evil = plugins.path().join("a-evil.wasm");
    std::fs::copy(&real, &evil).unwrap();
    std::fs::copy(&real, plugins.path().join("fs-handler.wasm")).unwrap();
    let runtime =
        Runtime::new(crate::support::runtime_config().grant(fs_handler_grant(secret.path())))
            .unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());
    let events = reloader.scan().await.unwrap();
    match events.as_slice() {
        [PluginEvent::Loaded(p)] => {
            assert_eq!(p.info().path, plugins.path().join("fs-handler.wasm"));
            assert!(p.grant().bound);
        }
        other => panic!("only the bound file loads: {other:?}"),
    }
    let view = reloader.registry().view();
    assert!(view.rejected.iter().any(|r| r.path == evil
        && r.reason.contains("also declared by")
        && r.reason.contains("fs-handler.wasm")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_unbound_files_the_first_file_name_keeps_the_name_in_either_order() {
    let echo = guest("echo-handler");
    let cache = tempdir();
    for a_first in [true, false] {
        let plugins = tempdir();
        let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
        let reloader = Reloader::new(runtime, Registry::new(), plugins.path())
            .debounce(Duration::from_millis(50));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _watch = reloader.watch(tx).unwrap();
        assert!(reloader.scan().await.unwrap().is_empty());
        let (a, b) = (plugins.path().join("a.wasm"), plugins.path().join("b.wasm"));
        if a_first {
            crate::support::drop_in(&echo, &a);
            assert!(matches!(next(&mut rx).await, PluginEvent::Loaded(_)));
            crate::support::drop_in(&echo, &b);
            wait_for("b's rejection", || {
                reloader
                    .registry()
                    .view()
                    .rejected
                    .iter()
                    .any(|r| r.path == b)
            })
            .await;
        } else {
            crate::support::drop_in(&echo, &b);
            assert!(matches!(next(&mut rx).await, PluginEvent::Loaded(_)));
            crate::support::drop_in(&echo, &a);
            let (out, into) = unloaded_then_loaded([next(&mut rx).await, next(&mut rx).await]);
            assert_eq!(
                (out.info().path.clone(), into.info().path.clone()),
                (b.clone(), a.clone())
            );
        }
        let view = reloader.registry().view();
        assert_eq!(view.loaded.len(), 1);
        assert_eq!(view.loaded[0].path, a, "a.wasm sorts first");
        let rejected = view.rejected.iter().find(|r| r.path == b).unwrap();
        assert!(
            rejected
                .reason
                .contains("b.wasm: a plugin named echo-handler is also declared by")
                && rejected.reason.contains("a.wasm")
                && rejected.reason.contains("its file name sorts first"),
            "{}",
            rejected.reason
        );
    }
}

/// A change to the loaded file and a new rival in one batch: the rival takes the name, and the
/// unchanged file read before that keeps the rejection that says why (seen in CI as a race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_lost_its_name_in_the_same_batch_keeps_its_rejection() {
    let echo = guest("echo-handler");
    let plugins = tempdir();
    let cache = tempdir();
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());
    let (a, b) = (plugins.path().join("a.wasm"), plugins.path().join("b.wasm"));
    crate::support::drop_in(&echo, &b);
    assert_eq!(reloader.scan().await.unwrap().len(), 1);
    crate::support::drop_in(&echo, &a);
    let (out, into) = unloaded_then_loaded(
        reloader
            .sync_all([b.clone(), a.clone()])
            .await
            .try_into()
            .unwrap_or_else(|e: Vec<_>| panic!("two events, got {}", e.len())),
    );
    assert_eq!(
        (out.info().path.clone(), into.info().path.clone()),
        (b.clone(), a.clone())
    );
    let view = reloader.registry().view();
    let rejected = view.rejected.iter().find(|r| r.path == b);
    assert!(
        rejected.is_some_and(|r| r.reason.contains("also declared by")),
        "b.wasm lost its name to a.wasm and says so: {:?}",
        view.rejected
    );
    assert!(!view.rejected.iter().any(|r| r.path == a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_directory_refuses_what_is_not_a_plugin_file_and_keeps_watching() {
    let plugins = tempdir();
    let outside = tempdir();
    let cache = tempdir();
    let at = |name: &str| plugins.path().join(name);
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let reloader =
        Reloader::new(runtime, Registry::new(), plugins.path()).debounce(Duration::from_millis(50));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    assert!(reloader.scan().await.unwrap().is_empty());

    std::fs::copy(guest("echo-handler"), outside.path().join("x.wasm")).unwrap();
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Make<'_>, &str)> = vec![
        (
            "fifo.wasm",
            Box::new(|| {
                let ok = std::process::Command::new("mkfifo")
                    .arg(at("fifo.wasm"))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "mkfifo");
            }),
            "not a regular file but a FIFO",
        ),
        (
            "zero.wasm",
            Box::new(|| std::os::unix::fs::symlink("/dev/zero", at("zero.wasm")).unwrap()),
            "a symbolic link to /dev/zero, outside the plugins directory",
        ),
        (
            "out.wasm",
            Box::new(|| {
                std::os::unix::fs::symlink(outside.path().join("x.wasm"), at("out.wasm")).unwrap()
            }),
            "outside the plugins directory",
        ),
        (
            "big.wasm",
            Box::new(|| {
                let f = std::fs::File::create(at("big.wasm")).unwrap();
                f.set_len((64 << 20) + 1).unwrap();
            }),
            "67108865 bytes, over the 67108864-byte cap",
        ),
        (
            "dir.wasm",
            Box::new(|| std::fs::create_dir(at("dir.wasm")).unwrap()),
            "not a regular file but a directory",
        ),
    ];
    for (name, make, reason) in &cases {
        make();
        wait_for(name, || {
            reloader
                .registry()
                .view()
                .rejected
                .iter()
                .any(|r| r.path == at(name) && r.reason.contains(reason))
        })
        .await;
    }
    // The watch lives on: a good plugin dropped in afterwards loads.
    crate::support::drop_in(&guest("echo-handler"), &at("echo.wasm"));
    let PluginEvent::Loaded(p) = next(&mut rx).await else {
        panic!("the good plugin loads")
    };
    assert_eq!(p.name(), "echo-handler");

    // A restart over the same directory: the scan returns, refusing each with its reason.
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let again = Reloader::new(runtime, Registry::new(), plugins.path());
    let events = again.scan().await.unwrap();
    assert_eq!(events.len(), 1, "only echo.wasm loads");
    let view = again.registry().view();
    for (name, _, reason) in &cases {
        assert!(
            view.rejected
                .iter()
                .any(|r| r.path == at(name) && r.reason.contains(reason)),
            "{name}: {:?}",
            view.rejected
        );
    }
}

/// A ConfigMap (or Secret, or projected) volume changes as the kubelet's atomic writer changes it:
/// a new `..<timestamp>` directory, a `..data_tmp` link to it renamed over `..data`, and the
/// visible files linking through `..data`. No visible path changes, yet the new version must be
/// loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_volume_update_is_hot_reloaded() {
    use std::os::unix::fs::symlink;
    let cache = tempdir();
    let plugins = tempdir();
    let dir = plugins.path();
    std::fs::create_dir(dir.join("..2026_12_02_10_00_00.1")).unwrap();
    std::fs::copy(
        guest("echo-handler"),
        dir.join("..2026_12_02_10_00_00.1/echo.wasm"),
    )
    .unwrap();
    symlink("..2026_12_02_10_00_00.1", dir.join("..data")).unwrap();
    symlink("..data/echo.wasm", dir.join("echo.wasm")).unwrap();
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), dir);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    let loaded = reloader.scan().await.unwrap();
    assert!(
        matches!(&loaded[..], [PluginEvent::Loaded(p)] if p.info().version == "0.1.0"),
        "{loaded:?}"
    );

    // The kubelet's update.
    std::fs::create_dir(dir.join("..2026_12_02_10_05_00.2")).unwrap();
    std::fs::copy(
        guest("echo-handler-v2"),
        dir.join("..2026_12_02_10_05_00.2/echo.wasm"),
    )
    .unwrap();
    symlink("..2026_12_02_10_05_00.2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_12_02_10_00_00.1")).unwrap();

    match next(&mut rx).await {
        PluginEvent::Replaced { old, new } => {
            assert_eq!(old.info().version, "0.1.0");
            assert_eq!(new.info().version, "0.2.0");
        }
        other => panic!("expected the new version to replace the old: {other:?}"),
    }
}
