//! The whole path: bus -> dispatcher -> wasm handler -> on-status, in events per second, side by
//! side with the same handler compiled natively behind the same bus and event trees.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/all/support.rs"]
#[allow(dead_code)]
mod support;

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capstan::bus::Bus;
use capstan::contract::ObjectRef;
use capstan::dispatch::{Change, ChangeEvent, DispatchConfig, Dispatcher, ObjectChange};
use capstan::event::{Context, Event};
use capstan::plugin::{Limits, Runtime, RuntimeConfig};
use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{Handler, StatusChannel};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deployment_handler::DeploymentHandler;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const EVENTS: usize = 2000;

fn events(
    json: &Arc<str>,
    object: &ObjectRef,
    done: &Arc<(AtomicUsize, tokio::sync::Notify)>,
) -> Vec<ChangeEvent> {
    (0..EVENTS)
        .map(|i| {
            let mut object = object.clone();
            object.name = format!("web-{i}");
            let d = done.clone();
            Event::with_ack(
                ObjectChange {
                    object,
                    change: Change::Added(json.clone()),
                },
                Context::new(),
                move || {
                    if d.0.fetch_add(1, Ordering::SeqCst) + 1 == EVENTS {
                        d.1.notify_one();
                    }
                },
                |e| panic!("event failed: {e}"),
            )
        })
        .collect()
}

fn whole_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let json: Arc<str> = Arc::from(support::deployment_json("web"));
    let object = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    let limits = Limits::default();
    let plugin = rt.block_on(async {
        Runtime::new(RuntimeConfig::default().limits(limits))
            .unwrap()
            .load(&support::guest("deployment-handler"))
            .await
            .unwrap()
    });
    let mut group = c.benchmark_group("bus_handler_on_status");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);

    group.bench_function("wasm", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let done = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
                (events(&json, &object, &done), done)
            },
            |(evs, done)| {
                let plugin = plugin.clone();
                async move {
                    let dispatcher = Dispatcher::new(DispatchConfig::default());
                    dispatcher.set_plugins(&[plugin]);
                    let bus: Bus<ChangeEvent> = Bus::new();
                    let task = dispatcher.run(bus.subscribe(EVENTS));
                    for e in evs {
                        bus.publish(e);
                    }
                    done.1.notified().await;
                    drop(bus);
                    task.await.unwrap();
                }
            },
            criterion::BatchSize::PerIteration,
        );
    });

    group.bench_function("native", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let done = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
                (events(&json, &object, &done), done)
            },
            |(evs, done)| async move {
                let bus: Bus<ChangeEvent> = Bus::new();
                let mut sub = bus.subscribe(EVENTS);
                let task = tokio::spawn(async move {
                    while let Some(mut event) = sub.recv().await {
                        let Change::Added(obj) = &event.payload().change else {
                            unreachable!()
                        };
                        let dep: Deployment = serde_json::from_str(obj).unwrap();
                        let ch = StatusChannel::recorder();
                        DeploymentHandler::added(dep, &ch);
                        let r = capstan_sdk::ObjectRef::of::<Deployment>(
                            Some("default"),
                            &event.payload().object.name,
                        );
                        for (s, _) in ch.recorded() {
                            DeploymentHandler::on_status(&r, s);
                        }
                        capstan_sdk::log::captured();
                        event.ack();
                    }
                });
                for e in evs {
                    bus.publish(e);
                }
                done.1.notified().await;
                drop(bus);
                task.await.unwrap();
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, whole_path);
criterion_main!(benches);
