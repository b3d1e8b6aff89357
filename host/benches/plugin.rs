//! Plugin hot paths: a handler call with a 4 KB Deployment, wasm vs the same handler compiled
//! natively; instantiation; loading from the precompiled cache vs compiling.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../tests/support/lib.rs"]
#[allow(dead_code)]
mod support;

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capstan::contract::ObjectRef;
use capstan::plugin::{HandlerEvent, Runtime, RuntimeConfig};
use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{Handler, StatusChannel};
use criterion::{Criterion, criterion_group, criterion_main};
use deployment_handler::DeploymentHandler;

fn handler_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let json = support::deployment_json("web");
    let oref = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let plugin = rt.block_on(async {
        Runtime::new(RuntimeConfig::default())
            .unwrap()
            .load(&support::guest("deployment-handler"))
            .await
            .unwrap()
    });
    let mut group = c.benchmark_group("handler_call_4k_deployment");
    group.bench_function("wasm", |b| {
        b.to_async(&rt).iter(|| async {
            let out = plugin
                .handle(&oref, HandlerEvent::Added(json.clone()))
                .await
                .unwrap();
            assert_eq!(out.on_status_calls, 2);
        });
    });
    // The same call with a tiny object: what is left is call and channel overhead, not decoding.
    let tiny = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"}}"#;
    group.bench_function("wasm_tiny_object", |b| {
        b.to_async(&rt).iter(|| async {
            let out = plugin
                .handle(&oref, HandlerEvent::Added(tiny.to_owned()))
                .await
                .unwrap();
            assert_eq!(out.on_status_calls, 2);
        });
    });
    let status = capstan::status::EventProcessStatus::default();
    group.bench_function("wasm_on_status_only", |b| {
        b.to_async(&rt)
            .iter(|| async { plugin.on_status(&oref, &status).await.unwrap() });
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            // The same work: decode into a typed Deployment, run `added`, then `on_status` per status.
            let dep: Deployment = serde_json::from_str(&json).unwrap();
            let ch = StatusChannel::recorder();
            DeploymentHandler::added(dep, &ch);
            let sdk_ref = capstan_sdk::ObjectRef::of::<Deployment>(Some("default"), "web");
            for (status, _) in ch.recorded() {
                DeploymentHandler::on_status(&sdk_ref, status);
            }
            capstan_sdk::log::captured()
        });
    });
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Every call runs on a fresh instance (one per reconcile, one per event): this is its cost.
    let mut group = c.benchmark_group("describe_call");
    let plugin = rt.block_on(async {
        Runtime::new(RuntimeConfig::default())
            .unwrap()
            .load(&support::guest("deployment-handler"))
            .await
            .unwrap()
    });
    group.bench_function("fresh_instance_per_call", |b| {
        b.to_async(&rt)
            .iter(|| async { plugin.describe().await.unwrap() })
    });
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

criterion_group!(benches, handler_call, instantiate, load);
criterion_main!(benches);
