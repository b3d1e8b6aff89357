//! Tiered compilation: a new plugin serves from the baseline compiler (Winch) at once and is
//! swapped for its optimized (Cranelift) version with no event lost; each tier's artifacts are
//! cached apart; a plugin Winch cannot compile is compiled optimized, saying why.
#![allow(clippy::unwrap_used)]

use crate::support::{deployment_json, guest, never_within, polyglot_guest, tempdir, wait_for};
use capstan::contract::ObjectRef;
use capstan::dispatch::{Change, ChangeEvent, DispatchConfig, Dispatcher, ObjectChange};
use capstan::event::{Context, Event};
use capstan::plugin::{
    CompileTiers, Origin, PluginEvent, Registry, RejectReason, Reloader, Runtime, RuntimeConfig,
    Tier,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// A runtime configuration with tiering on, as `capstan run` has by default.
fn tiered() -> RuntimeConfig {
    RuntimeConfig::default().compile_tiers(CompileTiers::Tiered)
}

/// Hand `plugin` one added Deployment.
async fn handle(
    plugin: &capstan::plugin::Plugin,
) -> Result<capstan::plugin::HandlerOutcome, capstan::plugin::CallError> {
    let json = deployment_json("x");
    let object = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    plugin
        .handle(&object, capstan::plugin::HandlerEvent::Added(json))
        .await
}

/// The precompiled artifacts in `dir`.
fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_serves_on_the_baseline_tier_then_swaps_to_optimized_losing_no_event() {
    let cache = tempdir();
    let plugins = tempdir();
    let file = plugins.path().join("echo.wasm");
    crate::support::drop_in(&guest("echo-handler"), &file);
    let runtime = Runtime::new(tiered().cache_dir(cache.path())).unwrap();
    assert!(runtime.tiered());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let registry = Registry::new();
    let reloader = Reloader::new(runtime, registry.clone(), plugins.path()).tier_up(tx);

    let deliveries: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let seen = deliveries.clone();
    let dispatcher = Dispatcher::new(DispatchConfig::default().on_delivery(move |d| {
        seen.lock()
            .unwrap()
            .push((d.object.name.clone(), d.result.is_ok()))
    }));
    let first = reloader.scan().await.unwrap();
    let [PluginEvent::Loaded(baseline)] = first.as_slice() else {
        panic!("the scan loads the plugin: {first:?}")
    };
    assert_eq!(baseline.info().tier, Tier::Baseline);
    assert_eq!(baseline.info().origin, Origin::Compiled);
    assert_eq!(registry.view().loaded[0].tier, Tier::Baseline);
    dispatcher.upsert(baseline);

    // Events stream in, paced, from before the swap to after it.
    let failed = Arc::new(AtomicUsize::new(0));
    let streaming = Arc::new(AtomicBool::new(true));
    let producer = {
        let (d, failed, streaming) = (dispatcher.clone(), failed.clone(), streaming.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while streaming.load(Ordering::SeqCst) {
                d.dispatch(event(&format!("e-{n}"), &failed));
                n += 1;
                if n.is_multiple_of(4) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            n
        })
    };
    let swap = tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("the optimized version is swapped in")
        .expect("channel open");
    let PluginEvent::Replaced { old, new } = swap else {
        panic!("a replacement, got {swap:?}")
    };
    assert_eq!(old.info().tier, Tier::Baseline);
    assert_eq!(new.info().tier, Tier::Optimized);
    assert_eq!(new.info().hash, old.info().hash, "the same plugin");
    let before = deliveries.lock().unwrap().len();
    dispatcher.upsert(&new);
    wait_for("events delivered after the swap", || {
        deliveries.lock().unwrap().len() > before + 100
    })
    .await;
    streaming.store(false, Ordering::SeqCst);
    let published = producer.await.unwrap();
    assert!(before > 0, "events were handled on the baseline tier");
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
    let deliveries = deliveries.lock().unwrap().clone();
    let mut by_event: HashMap<&str, usize> = HashMap::new();
    for (name, ok) in &deliveries {
        assert!(ok, "{name} failed");
        *by_event.entry(name.as_str()).or_default() += 1;
    }
    assert_eq!(by_event.len(), published, "every event handled");
    assert!(by_event.values().all(|n| *n == 1), "each exactly once");
    assert_eq!(failed.load(Ordering::SeqCst), 0);

    let view = registry.view();
    assert_eq!(view.loaded[0].tier, Tier::Optimized);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["loaded"][0]["tier"], "optimized");

    // Only the optimized artifact stays; a restart uses it with no baseline step at all.
    assert_eq!(
        artifacts(cache.path()).len(),
        1,
        "the baseline artifact is dropped"
    );
    let again = Runtime::new(tiered().cache_dir(cache.path()))
        .unwrap()
        .load(&file)
        .await
        .unwrap();
    assert_eq!(again.info().tier, Tier::Optimized);
    assert_eq!(again.info().origin, Origin::Cached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_caches_apart_and_never_loads_the_others_artifact() {
    let cache = tempdir();
    let tiered_cached = || tiered().cache_dir(cache.path());
    let optimized_only = || RuntimeConfig::default().cache_dir(cache.path());
    let echo = guest("echo-handler");

    let first = Runtime::new(tiered_cached()).unwrap();
    let baseline = first.load(&echo).await.unwrap();
    assert_eq!(
        (baseline.info().tier, baseline.info().origin),
        (Tier::Baseline, Origin::Compiled)
    );
    // Written off the loading path.
    first.flush_cache();
    let found = artifacts(cache.path());
    assert_eq!(found.len(), 1, "one artifact: {found:?}");
    let winch_artifact = found[0].clone();
    let cached = Runtime::new(tiered_cached())
        .unwrap()
        .load(&echo)
        .await
        .unwrap();
    assert_eq!(
        (cached.info().tier, cached.info().origin),
        (Tier::Baseline, Origin::Cached),
        "the baseline artifact serves a restart before the optimized one exists"
    );

    // The optimizing engine does not take the baseline artifact: it compiles its own.
    let rt = Runtime::new(optimized_only()).unwrap();
    assert!(!rt.tiered());
    let optimized = rt.load(&echo).await.unwrap();
    assert_eq!(
        (optimized.info().tier, optimized.info().origin),
        (Tier::Optimized, Origin::Compiled)
    );
    rt.flush_cache();
    let names: Vec<_> = artifacts(cache.path());
    assert_eq!(names.len(), 2, "one artifact per tier: {names:?}");
    let cranelift_artifact = names.iter().find(|p| **p != winch_artifact).unwrap();

    // Even under the optimized artifact's name, the baseline artifact is refused (its tag
    // names the tier), deleted and compiled again.
    std::fs::copy(&winch_artifact, cranelift_artifact).unwrap();
    let rt = Runtime::new(optimized_only()).unwrap();
    let refused = rt.load(&echo).await.unwrap();
    rt.flush_cache();
    assert_eq!(
        (refused.info().tier, refused.info().origin),
        (Tier::Optimized, Origin::Compiled)
    );
    let out = handle(&refused).await;
    assert!(out.is_ok(), "the recompiled plugin runs: {out:?}");

    // With an optimized artifact cached, a tiered runtime starts on it: no baseline compile.
    let started = Runtime::new(tiered_cached())
        .unwrap()
        .load(&echo)
        .await
        .unwrap();
    assert_eq!(
        (started.info().tier, started.info().origin),
        (Tier::Optimized, Origin::Cached)
    );
}

/// A core module section holding a function that tail-calls another (`return_call`), a
/// proposal wasmtime's baseline compiler does not implement, appended to `component`: the
/// module is compiled with the component but never instantiated.
fn with_tail_call(component: &[u8]) -> Vec<u8> {
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type 0: [] -> []
        0x03, 0x03, 0x02, 0x00, 0x00, // two functions of type 0
        0x0a, 0x09, 0x02, // code: two bodies
        0x04, 0x00, 0x12, 0x01, 0x0b, // f0: return_call f1
        0x02, 0x00, 0x0b, // f1: nothing
    ];
    let mut out = component.to_vec();
    out.push(0x01); // core module section
    out.push(u8::try_from(module.len()).unwrap());
    out.extend_from_slice(module);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_the_baseline_compiler_refuses_runs_optimized_and_says_why() {
    let plugins = tempdir();
    let file = plugins.path().join("echo.wasm");
    let bytes = with_tail_call(&std::fs::read(guest("echo-handler")).unwrap());
    std::fs::write(&file, &bytes).unwrap();

    // Tail calls are not the baseline compiler's: without a fallback the file would be refused.
    let runtime = Runtime::new(tiered()).unwrap();
    assert!(runtime.tiered());
    let plugin = runtime.load(&file).await.unwrap();
    assert_eq!(plugin.info().tier, Tier::Optimized);
    let why = plugin
        .info()
        .baseline_error
        .clone()
        .expect("the reason is kept");
    assert!(why.contains("tail call"), "{why}");
    let out = handle(&plugin).await;
    assert!(out.is_ok(), "it serves: {out:?}");

    // `/plugins` says why.
    let registry = Registry::new();
    let reloader = Reloader::new(
        Runtime::new(tiered()).unwrap(),
        registry.clone(),
        plugins.path(),
    );
    reloader.scan().await.unwrap();
    let json = serde_json::to_value(registry.view()).unwrap();
    assert_eq!(json["loaded"][0]["tier"], "optimized");
    assert!(
        json["loaded"][0]["baseline_error"]
            .as_str()
            .is_some_and(|e| e.contains("tail call")),
        "{json}"
    );

    // What fails on either tier is refused as before, with the optimizing compiler's reason.
    let truncated = &bytes[..bytes.len() / 2];
    let refused = Runtime::new(tiered())
        .unwrap()
        .load_bytes(&file, truncated.to_vec())
        .await
        .unwrap_err();
    assert!(matches!(refused, RejectReason::Compile(_)), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_into_the_directory_is_loaded_without_waiting_out_the_debounce() {
    let plugins = tempdir();
    let cache = tempdir();
    let runtime = Runtime::new(tiered().cache_dir(cache.path())).unwrap();
    // Warm the cache, so the time below is the watch's, not the compiler's.
    runtime.load(&guest("echo-handler")).await.unwrap();
    let reloader =
        Reloader::new(runtime, Registry::new(), plugins.path()).debounce(Duration::from_secs(30));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    crate::support::drop_in(&guest("echo-handler"), &plugins.path().join("echo.wasm"));
    let loaded = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("loaded well within the 30 s debounce")
        .unwrap();
    assert!(matches!(loaded, PluginEvent::Loaded(_)), "{loaded:?}");
}

/// A host starting with new plugins serves each as soon as it is compiled, not when the slowest
/// is, unless a file still compiling could take its name (it sorts first and its name is not
/// known): an 18 MB Python plugin takes seconds on the baseline compiler, a Rust one a blink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_each_plugin_serves_once_compiled_unless_a_file_compiling_could_take_its_name() {
    let Some(python) = polyglot_guest("py-webapp") else {
        return;
    };
    let plain = std::fs::read(&python).unwrap();
    // The Python plugin's name in its component, as `capstan annotate` writes it.
    let manifest = Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&python)
        .await
        .unwrap()
        .manifest()
        .clone();
    let annotated = capstan::plugin::embed_manifest(&plain, &manifest).unwrap();
    for embedded in [true, false] {
        let plugins = tempdir();
        // `a-python.wasm` sorts before `b-echo.wasm`: were it to declare `echo-handler`, the
        // name would be its own.
        let bytes = if embedded { &annotated } else { &plain };
        std::fs::write(plugins.path().join("a-python.wasm"), bytes).unwrap();
        std::fs::copy(guest("echo-handler"), plugins.path().join("b-echo.wasm")).unwrap();
        // No precompiled cache: both are compiled.
        let runtime = Runtime::new(tiered()).unwrap();
        let reloader = Reloader::new(runtime, Registry::new(), plugins.path());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let scan = tokio::spawn({
            let reloader = reloader.clone();
            async move { reloader.scan_into(tx).await }
        });
        let mut order = Vec::new();
        while let Some(event) = rx.recv().await {
            let PluginEvent::Loaded(p) = event else {
                panic!("only loads: {event:?}")
            };
            assert_eq!(p.info().tier, Tier::Baseline);
            order.push(p.name().to_owned());
        }
        scan.await.unwrap().unwrap();
        let (fast, slow) = ("echo-handler".to_owned(), manifest.name.clone());
        if embedded {
            assert_eq!(order, [fast, slow], "the Rust plugin serves first");
        } else {
            assert_eq!(
                order,
                [slow, fast],
                "the Rust plugin waits for the file sorting first"
            );
        }
    }
}

/// One run: a fresh plugins directory watched by a fresh runtime (no precompiled cache), the
/// component copied beside it and renamed in; the time until its first call (`describe`, on a
/// fresh instance) returned, and the tier it ran on.
async fn file_to_first_call(component: &std::path::Path, tiers: CompileTiers) -> (Duration, Tier) {
    let plugins = tempdir();
    let runtime = Runtime::new(RuntimeConfig::default().compile_tiers(tiers)).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    let staged = plugins.path().join(".incoming.wasm.tmp");
    std::fs::copy(component, &staged).unwrap();
    let started = std::time::Instant::now();
    std::fs::rename(&staged, plugins.path().join("plugin.wasm")).unwrap();
    let Some(PluginEvent::Loaded(plugin)) = rx.recv().await else {
        panic!("the plugin loads")
    };
    plugin.describe().await.unwrap();
    (started.elapsed(), plugin.info().tier)
}

/// Measures, not a check: `cargo test -p capstan --test all -- --ignored --nocapture
/// tier::measure` prints the median of 5 runs per guest and tier (webapp; and the Python example
/// when `CAPSTAN_BENCH_PY_WEBAPP` names its component). `host/benches/tier.rs` is the criterion
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn measure_file_to_first_call() {
    let mut guests = vec![("webapp", guest("webapp"))];
    if let Some(py) = std::env::var_os("CAPSTAN_BENCH_PY_WEBAPP") {
        guests.push(("py-webapp", py.into()));
    }
    for (name, path) in guests {
        let size = std::fs::metadata(&path).unwrap().len();
        for tiers in [CompileTiers::Tiered, CompileTiers::OptimizedOnly] {
            let mut runs = Vec::new();
            let mut tier = None;
            for _ in 0..5 {
                let (took, t) = file_to_first_call(&path, tiers).await;
                runs.push(took);
                tier = Some(t);
            }
            runs.sort();
            println!(
                "{name} ({size} bytes) {tiers:?} on {:?}: median {:?}, runs {:?}",
                tier.unwrap(),
                runs[runs.len() / 2],
                runs
            );
        }
    }
}
