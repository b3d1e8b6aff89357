//! Plugin hot paths: a handler call with a 4 KB Deployment, wasm vs the same handler compiled
//! natively; instantiation; loading from the precompiled cache vs compiling; and the Rust,
//! Python and JavaScript examples side by side (`polyglot_*`: a handler call, a reconcile, a load
//! from the precompiled cache; each component's size and one cold compile are printed).
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../apiserver/benches/support/cpu.rs"]
#[allow(dead_code)]
mod cpu;
#[path = "../tests/all/support.rs"]
#[allow(dead_code)]
mod support;

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capstan::contract::ObjectRef;
use capstan::plugin::{HandlerEvent, Plugin, Runtime, RuntimeConfig};
use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{Handler, StatusChannel};
use criterion::{Criterion, criterion_group, criterion_main};
use deployment_handler::DeploymentHandler;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The process CPU time a benchmark's calls took, every thread: what a call leaves to the worker
/// that makes instances ahead counts too. Printed per call once the benchmark is done.
#[derive(Default)]
struct CpuMeter {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl CpuMeter {
    /// Time `iters` runs of `call` for criterion, adding up their CPU time.
    async fn run<F, Fut>(&self, iters: u64, mut call: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let (started, cpu) = (Instant::now(), cpu::cpu_time());
        for _ in 0..iters {
            call().await;
        }
        let elapsed = started.elapsed();
        let used = cpu::cpu_time().saturating_sub(cpu);
        self.nanos
            .fetch_add(used.as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(iters, Ordering::Relaxed);
        elapsed
    }

    fn report(&self, name: &str) {
        let calls = self.calls.load(Ordering::Relaxed).max(1);
        let per_call = self.nanos.load(Ordering::Relaxed) as f64 / calls as f64 / 1000.0;
        println!("{name}: CPU per call {per_call:.1} µs (every thread, {calls} calls)");
    }
}

fn load_handler(rt: &tokio::runtime::Runtime) -> Plugin {
    rt.block_on(async {
        Runtime::new(RuntimeConfig::default())
            .unwrap()
            .load(&support::guest("deployment-handler"))
            .await
            .unwrap()
    })
}

fn handler_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let json = support::deployment_json("web");
    let oref = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    // The same call with a tiny object: what is left is call and channel overhead, not decoding.
    let tiny = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"}}"#;
    let plugin = load_handler(&rt);
    let mut group = c.benchmark_group("handler_call_4k_deployment");
    for (name, object) in [("wasm", json.as_str()), ("wasm_tiny_object", tiny)] {
        let meter = CpuMeter::default();
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                meter.run(iters, || async {
                    let out = plugin
                        .handle(&oref, HandlerEvent::Added(object.to_owned()))
                        .await
                        .unwrap();
                    assert_eq!(out.on_status_calls, 2);
                })
            });
        });
        meter.report(name);
    }
    let status = capstan::status::EventProcessStatus::default();
    let meter = CpuMeter::default();
    group.bench_function("wasm_on_status_only", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            meter.run(iters, || async {
                plugin.on_status(&oref, &status).await.unwrap();
            })
        });
    });
    meter.report("wasm_on_status_only");
    let meter = CpuMeter::default();
    group.bench_function("native", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            meter.run(iters, || async {
                // The same work: decode into a typed Deployment, run `added`, then `on_status`
                // per status.
                let dep: Deployment = serde_json::from_str(&json).unwrap();
                let ch = StatusChannel::recorder();
                DeploymentHandler::added(dep, &ch);
                let sdk_ref = capstan_sdk::ObjectRef::of::<Deployment>(Some("default"), "web");
                for (status, _) in ch.recorded() {
                    DeploymentHandler::on_status(&sdk_ref, status);
                }
                std::hint::black_box(capstan_sdk::log::captured());
            })
        });
    });
    meter.report("native");
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Every call runs on a fresh instance (one per reconcile, one per event): this is its cost.
    let mut group = c.benchmark_group("describe_call");
    let plugin = load_handler(&rt);
    let meter = CpuMeter::default();
    group.bench_function("fresh_instance_per_call", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            meter.run(iters, || async {
                plugin.describe().await.unwrap();
            })
        })
    });
    meter.report("fresh_instance_per_call");
    group.finish();
}

fn load(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = support::guest("deployment-handler");
    let cache = support::tempdir();
    let cached = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    rt.block_on(cached.load(&path)).unwrap();
    let uncached = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut group = c.benchmark_group("load_deployment_handler");
    group.sample_size(10);
    group.bench_function("precompiled_cache", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.load(&path).await.unwrap() })
    });
    group.bench_function("compile", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.load(&path).await.unwrap() })
    });
    group.finish();
}

/// A cache with nothing in it, lent to `fetch`.
struct EmptyCache;

impl capstan::plugin::CacheReader for EmptyCache {
    fn get(
        &self,
        _: &capstan::contract::Gvk,
        _: Option<&str>,
        _: &str,
    ) -> Result<Option<String>, capstan::contract::CategorizedError> {
        Ok(None)
    }

    fn list(
        &self,
        _: &capstan::contract::Gvk,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<String>, capstan::contract::CategorizedError> {
        Ok(Vec::new())
    }
}

/// The guest `name`: Rust guests always, Python and JavaScript ones when their toolchain built them.
fn example(name: &str) -> Option<std::path::PathBuf> {
    if capstan_test_artifacts::skipped(name).is_some() {
        return support::polyglot_guest(name);
    }
    Some(support::guest(name))
}

fn polyglot(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = support::tempdir();
    let runtime = Runtime::new(RuntimeConfig::default().cache_dir(cache.path())).unwrap();
    let load = |name: &str| {
        let path = example(name)?;
        let size = std::fs::metadata(&path).unwrap().len();
        // One cold compile (a fresh cache): too slow for criterion's ten samples.
        let cold = support::tempdir();
        let started = std::time::Instant::now();
        rt.block_on(
            Runtime::new(RuntimeConfig::default().cache_dir(cold.path()))
                .unwrap()
                .load(&path),
        )
        .unwrap();
        eprintln!(
            "{name}: component {size} bytes, cold compile and load {:?}",
            started.elapsed()
        );
        let plugin = rt.block_on(runtime.load(&path)).unwrap();
        Some((path, plugin))
    };
    let handlers: Vec<_> = [
        ("rust", "deployment-handler"),
        ("javascript", "js-deployment-handler"),
    ]
    .into_iter()
    .filter_map(|(lang, name)| Some((lang, name, load(name)?)))
    .collect();
    let reconcilers: Vec<_> = [("rust", "webapp"), ("python", "py-webapp")]
        .into_iter()
        .filter_map(|(lang, name)| Some((lang, name, load(name)?)))
        .collect();

    let json = support::deployment_json("web");
    let oref = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let mut group = c.benchmark_group("polyglot_handler_call_4k_deployment");
    for (lang, _, (_, plugin)) in &handlers {
        group.bench_function(*lang, |b| {
            b.to_async(&rt).iter(|| async {
                let out = plugin
                    .handle(&oref, HandlerEvent::Added(json.clone()))
                    .await
                    .unwrap();
                assert_eq!(out.on_status_calls, 2);
            });
        });
    }
    group.finish();

    let app = serde_json::json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": "shop", "namespace": "default", "uid": "u-1"},
        "spec": {"image": "nginx:1.27", "replicas": 2, "port": 8080}
    });
    let app_ref = ObjectRef::from_json(&app).unwrap();
    let app = app.to_string();
    let mut group = c.benchmark_group("polyglot_reconcile_webapp");
    for (lang, _, (_, plugin)) in &reconcilers {
        group.bench_function(*lang, |b| {
            b.to_async(&rt).iter(|| async {
                let mut r = plugin.reconcile(&app_ref, &app).await.unwrap().unwrap();
                let grants = capstan::plugin::Grants {
                    cache: Some(std::sync::Arc::new(EmptyCache)),
                    pod_logs: None,
                };
                r.fetch(grants).await.unwrap().unwrap();
                assert_eq!(r.plan().await.unwrap().unwrap().len(), 2);
                r.health().await.unwrap();
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("polyglot_load_precompiled");
    group.sample_size(10);
    for (_, name, (path, _)) in handlers.iter().chain(&reconcilers) {
        group.bench_function(*name, |b| {
            b.to_async(&rt)
                .iter(|| async { runtime.load(path).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group!(benches, handler_call, instantiate, load, polyglot);
criterion_main!(benches);
