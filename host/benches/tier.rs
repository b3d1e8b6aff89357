//! Compile tiers: the time from a plugin's bytes to a validated plugin ready to serve (compile,
//! link, `describe`), with no precompiled cache, on the baseline compiler (Winch) and on the
//! optimizing compiler (Cranelift), for the webapp example guest (a ~700 KB Rust component);
//! and the time from a plugin file renamed into a watched plugins directory to its first call
//! served (`describe`, on a fresh instance), per tier, for webapp and, when built, the Python
//! example (`polyglot_guest("py-webapp")`, or the component `CAPSTAN_BENCH_PY_WEBAPP` names).
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/all/support.rs"]
#[allow(dead_code)]
mod support;

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capstan::plugin::{
    CompileTiers, PluginEvent, Registry, Reloader, Runtime, RuntimeConfig, Tier,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn compile(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = support::guest("webapp");
    let bytes = std::fs::read(&path).unwrap();
    eprintln!("webapp component: {} bytes", bytes.len());
    let mut group = c.benchmark_group("compile_webapp");
    group.sample_size(10);
    for (name, tiers, tier) in [
        ("baseline", CompileTiers::Tiered, Tier::Baseline),
        ("optimized", CompileTiers::OptimizedOnly, Tier::Optimized),
    ] {
        let runtime = Runtime::new(RuntimeConfig::default().compile_tiers(tiers)).unwrap();
        let p = rt
            .block_on(runtime.load_bytes(&path, bytes.clone()))
            .unwrap();
        assert_eq!(p.info().tier, tier, "compiled on the tier named");
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { runtime.load_bytes(&path, bytes.clone()).await.unwrap() })
        });
    }
    group.finish();
}

/// One run: a fresh plugins directory watched by a fresh runtime (no precompiled cache), the
/// component copied beside it and renamed in; the time until its first call returned.
async fn file_to_first_call(component: &Path, tiers: CompileTiers) -> (Duration, Tier) {
    let plugins = support::tempdir();
    let runtime = Runtime::new(RuntimeConfig::default().compile_tiers(tiers)).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = reloader.watch(tx).unwrap();
    let staged = plugins.path().join(".incoming.wasm.tmp");
    std::fs::copy(component, &staged).unwrap();
    let started = Instant::now();
    std::fs::rename(&staged, plugins.path().join("plugin.wasm")).unwrap();
    let Some(PluginEvent::Loaded(plugin)) = rx.recv().await else {
        panic!("the plugin loads")
    };
    plugin.describe().await.unwrap();
    (started.elapsed(), plugin.info().tier)
}

fn python() -> Option<PathBuf> {
    std::env::var_os("CAPSTAN_BENCH_PY_WEBAPP")
        .map(PathBuf::from)
        .or_else(|| support::polyglot_guest("py-webapp"))
}

fn new_file(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut guests = vec![("webapp", support::guest("webapp"))];
    guests.extend(python().map(|p| ("py_webapp", p)));
    for (name, path) in guests {
        let mut group = c.benchmark_group(format!("file_to_first_call_{name}"));
        group.sample_size(10);
        for (tier_name, tiers, tier) in [
            ("baseline", CompileTiers::Tiered, Tier::Baseline),
            (
                "optimized_only",
                CompileTiers::OptimizedOnly,
                Tier::Optimized,
            ),
        ] {
            group.bench_function(tier_name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let path = path.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let (took, got) = file_to_first_call(&path, tiers).await;
                            assert_eq!(got, tier, "served on the tier named");
                            total += took;
                        }
                        total
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, compile, new_file);
criterion_main!(benches);
