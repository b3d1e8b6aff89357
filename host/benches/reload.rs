//! Hot reload and sandbox costs: swapping a plugin from the precompiled cache, swapping with a cold
//! compile, and what epoch interruption costs a CPU-bound guest.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/all/support.rs"]
#[allow(dead_code)]
mod support;

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capstan::contract::ObjectRef;
use capstan::plugin::{HandlerEvent, PluginEvent, Registry, Reloader, Runtime, RuntimeConfig};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::time::{Duration, Instant};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn swap(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (v1, v2) = (
        support::guest("echo-handler"),
        support::guest("echo-handler-v2"),
    );
    let size_kb = std::fs::metadata(&v1).unwrap().len() / 1024;
    let cache = support::tempdir();
    let plugins = support::tempdir();
    let file = plugins.path().join("echo.wasm");
    support::drop_in(&v1, &file);
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let reloader = Reloader::new(runtime, Registry::new(), plugins.path());
    rt.block_on(reloader.scan()).unwrap();
    // Warm the cache with both versions.
    support::drop_in(&v2, &file);
    assert!(!rt.block_on(reloader.sync(&file)).is_empty());
    let mut flip = false;
    let mut next = || {
        flip = !flip;
        if flip { &v1 } else { &v2 }
    };

    // p50/p99 over 500 swaps, printed next to criterion's figures.
    let mut samples = Vec::new();
    for _ in 0..500 {
        support::drop_in(next(), &file);
        let t = Instant::now();
        let ev = rt.block_on(reloader.sync(&file)).pop();
        samples.push(t.elapsed());
        assert!(matches!(ev, Some(PluginEvent::Replaced { .. })));
    }
    let (p50, p99) = (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    );
    eprintln!(
        "reload/swap_from_cache ({size_kb} KB component, 500 swaps): p50 {p50:?} p99 {p99:?}"
    );

    let mut group = c.benchmark_group("reload");
    group.bench_function("swap_from_cache", |b| {
        b.iter_batched(
            || support::drop_in(next(), &file),
            |()| {
                let ev = rt.block_on(reloader.sync(&file)).pop();
                assert!(matches!(ev, Some(PluginEvent::Replaced { .. })));
            },
            BatchSize::PerIteration,
        );
    });
    // A cold compile: no cache at all, every swap compiles the component.
    let cold = Reloader::new(
        Runtime::new(RuntimeConfig::default()).unwrap(),
        Registry::new(),
        plugins.path(),
    );
    rt.block_on(cold.scan()).unwrap();
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("swap_cold_compile", |b| {
        b.iter_batched(
            || support::drop_in(next(), &file),
            |()| {
                let ev = rt.block_on(cold.sync(&file)).pop();
                assert!(matches!(ev, Some(PluginEvent::Replaced { .. })));
            },
            BatchSize::PerIteration,
        );
    });
    // Compile cost by size: a small raw-bindings component and an SDK-built one, loaded cold.
    for name in ["hostile-reconciler", "echo-handler"] {
        let path = support::guest(name);
        let kb = std::fs::metadata(&path).unwrap().len() / 1024;
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        group.bench_function(format!("cold_load_{kb}KB"), |b| {
            b.iter(|| rt.block_on(runtime.load(&path)).unwrap());
        });
    }
    group.finish();
}

fn epoch_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let json = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cpu", "namespace": "default", "labels": {"work": "20000000"}}
    })
    .to_string();
    let oref = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let load = |epoch: bool| {
        rt.block_on(async {
            Runtime::new(RuntimeConfig::default().epoch_interruption(epoch))
                .unwrap()
                .load(&support::guest("cpu-handler"))
                .await
                .unwrap()
        })
    };
    let (with, without) = (load(true), load(false));
    let mut group = c.benchmark_group("epoch_overhead_cpu_bound_20M_rounds");
    group.sample_size(20);
    for (name, plugin) in [("epoch_on", &with), ("epoch_off", &without)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let out = plugin
                    .handle(&oref, HandlerEvent::Added(json.clone()))
                    .await
                    .unwrap();
                assert_eq!(out.status, capstan::status::EventStatus::Completed);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, swap, epoch_overhead);
criterion_main!(benches);
