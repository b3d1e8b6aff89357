//! Benchmarks of the embedded API server through kube-rs: list and watch of 10 000 ConfigMaps,
//! server-side apply latency (median and p99), and memory per stored object (the RSS delta, and
//! the live heap bytes the allocator counts); and the write path of kinds with a registry strategy
//! or a schema: server-side apply of a Deployment (a changed replica count each time: decode,
//! defaults, validation) and of a custom resource with a structural schema; and, in process, the
//! server-side apply merge and field tracking of that Deployment alone
//! (`apply::server_side_apply`), without HTTP or storage, and the whole write path of that apply
//! (`Cluster::patch` and the answer's encoding), without HTTP.
//!
//! With `CAPSTAN_BENCH_SERVER=process CAPSTAN_BENCH_SERVER_BIN=<a capstan binary>` the end-to-end
//! benchmarks talk to a `capstan apiserver` process of their own ([`server`]) and print its CPU
//! time per request, so that the servers of two builds are compared under one client; the memory
//! per object is then that process's RSS delta.

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_main};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

#[path = "support/cpu.rs"]
#[allow(dead_code)]
mod cpu;
#[path = "support/memory.rs"]
#[allow(dead_code)]
mod memory;
#[path = "support/server.rs"]
mod server;
use server::Server;

/// The `capstan` binary's allocator, counting live heap bytes until the setup has stored its
/// objects ([`memory`]).
#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

const OBJECTS: usize = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// Benchmarks `request` as `name` in `group`; when the server is a process of its own, also
/// prints the server's CPU time per request over all of criterion's iterations (warm-up included).
fn timed(
    group: &mut BenchmarkGroup<'_, WallTime>,
    server: &Server,
    name: &str,
    mut request: impl FnMut(),
) {
    let (mut requests, mut spent) = (0u64, Duration::ZERO);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let cpu = server.cpu_time();
            let started = Instant::now();
            for _ in 0..iters {
                request();
            }
            let elapsed = started.elapsed();
            if let Some(used) = server.cpu_time().zip(cpu).map(|(end, start)| end - start) {
                requests += iters;
                spent += used;
            }
            elapsed
        });
    });
    if requests > 0 {
        eprintln!(
            "{name}: the API server's CPU per request {:.1} µs ({requests} requests)",
            spent.as_secs_f64() * 1e6 / requests as f64
        );
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (server, client) = rt.block_on(Server::start(None));
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let before = server.rss_bytes().unwrap_or_else(memory::rss_bytes);
    let live_before = memory::live_bytes();
    let started = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..OBJECTS)
            .map(|i| {
                let api = api.clone();
                async move {
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "metadata": {"name": format!("cm-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                        "data": {"key": format!("value-{i}"), "other": "some configuration text"},
                    }))
                    .expect("configmap");
                    api.create(&PostParams::default(), &cm).await.expect("create");
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    });
    let created_in = started.elapsed();
    // Off for the timed benchmarks, whose threads would otherwise share the counter.
    let live = memory::live_bytes().wrapping_sub(live_before).cast_signed();
    memory::stop_counting();
    let after = server.rss_bytes().unwrap_or_else(memory::rss_bytes);
    eprintln!(
        "created {OBJECTS} configmaps in {created_in:?} ({:.1} µs each, 16 in flight); RSS delta {} KiB = {} bytes/object",
        created_in.as_secs_f64() * 1e6 / OBJECTS as f64,
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) / OBJECTS as u64,
    );
    if let Server::InProcess(_) = server {
        eprintln!(
            "live heap delta {} KiB = {} bytes/object",
            live / 1024,
            live / OBJECTS as isize
        );
    }

    let mut group = c.benchmark_group("apiserver");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    timed(&mut group, &server, "list_10k_configmaps", || {
        rt.block_on(async {
            assert_eq!(
                api.list(&ListParams::default())
                    .await
                    .expect("list")
                    .items
                    .len(),
                OBJECTS
            )
        })
    });
    timed(&mut group, &server, "watch_sees_10k_configmaps", || {
        rt.block_on(async {
            let stream = api
                .watch(&WatchParams::default().timeout(60), "0")
                .await
                .expect("watch");
            let mut stream = stream.boxed();
            let mut seen = 0;
            while seen < OBJECTS {
                match stream.try_next().await.expect("event") {
                    Some(WatchEvent::Added(_)) => seen += 1,
                    Some(_) => {}
                    None => panic!("watch ended after {seen}"),
                }
            }
        });
    });
    // Creates, one at a time, in a namespace of their own (the 10 000 above stay as listed).
    let created: Api<ConfigMap> = Api::namespaced(client.clone(), "created");
    rt.block_on(async {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let namespace =
            serde_json::from_value(json!({"metadata": {"name": "created"}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
    });
    let mut i = 0u64;
    timed(&mut group, &server, "create_configmap", || {
        i += 1;
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
            "data": {"key": format!("value-{i}"), "other": "some configuration text"},
        }))
        .expect("configmap");
        rt.block_on(created.create(&PostParams::default(), &cm))
            .expect("create");
    });
    let mut n = 0u64;
    let mut apply = || {
        n += 1;
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"n": n.to_string()}});
        rt.block_on(api.patch(
            "applied",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(config),
        ))
        .expect("apply");
    };
    timed(&mut group, &server, "server_side_apply", &mut apply);

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let mut replicas = 0u64;
    timed(&mut group, &server, "server_side_apply_deployment", || {
        replicas = (replicas + 1) % 50;
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                     "env": [{"name": "A", "value": "1"}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}}});
        rt.block_on(deployments.patch(
            "web",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(config),
        ))
        .expect("apply deployment");
    });

    // The same Deployment with Kubernetes' defaults written out: the stored object is the same
    // whether or not the server defaults, which separates the cost of a larger object from the
    // cost of defaulting and validating it.
    let mut replicas = 0u64;
    timed(
        &mut group,
        &server,
        "server_side_apply_deployment_defaulted",
        || {
            replicas = (replicas + 1) % 50;
            let env = json!([{"name": "A", "value": "1"}]);
            let config = defaulted_deployment("web-defaulted", replicas, env);
            rt.block_on(deployments.patch(
                "web-defaulted",
                &PatchParams::apply("bench").force(),
                &Patch::Apply(config),
            ))
            .expect("apply deployment");
        },
    );

    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "webapps.bench.capstan.dev"},
        "spec": {"group": "bench.capstan.dev", "scope": "Namespaced",
            "names": {"kind": "WebApp", "plural": "webapps", "singular": "webapp"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["image", "port"], "properties": {
                        "image": {"type": "string", "minLength": 1},
                        "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            ),
            "customresourcedefinitions",
        ),
    );
    rt.block_on(crds.patch(
        "webapps.bench.capstan.dev",
        &PatchParams::apply("bench").force(),
        &Patch::Apply(crd),
    ))
    .expect("crd");
    std::thread::sleep(Duration::from_millis(200));
    let webapps: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("bench.capstan.dev", "v1", "WebApp"),
            "webapps",
        ),
    );
    let mut port = 1u64;
    timed(
        &mut group,
        &server,
        "server_side_apply_custom_resource",
        || {
            port = port % 60000 + 1;
            let config = json!({"apiVersion": "bench.capstan.dev/v1", "kind": "WebApp",
            "metadata": {"name": "shop"}, "spec": {"image": "nginx:1.27", "port": port}});
            rt.block_on(webapps.patch(
                "shop",
                &PatchParams::apply("bench").force(),
                &Patch::Apply(config),
            ))
            .expect("apply webapp");
        },
    );
    group.finish();

    let mut samples: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            apply();
            t.elapsed()
        })
        .collect();
    samples.sort();
    eprintln!(
        "server-side apply over 1000 calls: median {:?}, p99 {:?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
    rt.block_on(server.shutdown());
}

/// The apply configuration of Deployment `name` (label `app: name`) with Kubernetes' defaults
/// written out: one container with a port, `env` and a readiness probe.
fn defaulted_deployment(name: &str, replicas: u64, env: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "schedulerName": "default-scheduler", "securityContext": {},
                "terminationGracePeriodSeconds": 30, "containers": [
                {"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                 "terminationMessagePath": "/dev/termination-log",
                 "terminationMessagePolicy": "File",
                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                 "env": env,
                 "readinessProbe": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                    "failureThreshold": 3, "periodSeconds": 10, "successThreshold": 1,
                    "timeoutSeconds": 1}}]}}}})
}

/// Server-side apply of a Deployment in process: merge by list keys, the field sets of the
/// configuration, of the changes and of the previous apply, and `managedFields` read and written.
fn in_process(c: &mut Criterion) {
    use capstan_apiserver::apply::{FieldScope, Writer, server_side_apply};
    use capstan_apiserver::fieldtype::Node;

    let config = |replicas: u64| {
        let env = json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        defaulted_deployment("web", replicas, env)
    };
    let writer = |manager| Writer {
        manager,
        api_version: "apps/v1",
        subresource: "",
        now: "2026-12-06T00:00:00Z",
        scope: FieldScope::NoStatus,
        types: Node::builtin("Deployment"),
    };
    // The live object: applied by `bench`, with a status the Deployment controller wrote.
    let live = server_side_apply(None, config(1), &writer("bench"), false).expect("apply");
    let mut live =
        server_side_apply(Some(&live), config(2), &writer("bench"), false).expect("apply");
    let old = live.clone();
    live["status"] = json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2,
        "availableReplicas": 2, "updatedReplicas": 2});
    let status = Writer {
        subresource: "status",
        scope: FieldScope::StatusOnly,
        ..writer("kube-controller-manager")
    };
    capstan_apiserver::apply::record_update(Some(&old), &mut live, &status);
    let configs: Vec<_> = (0..50).map(config).collect();
    let mut replicas = 0;
    c.bench_function("in_process/server_side_apply_deployment", |b| {
        // The configuration is taken by value, as the server hands over the one it decoded;
        // its copy is made outside the timing.
        b.iter_batched(
            || {
                replicas = (replicas + 1) % configs.len();
                configs[replicas].clone()
            },
            |config| server_side_apply(Some(&live), config, &writer("bench"), true).expect("apply"),
            criterion::BatchSize::SmallInput,
        );
    });
}

/// A server-side apply of a Deployment through the whole write path, in process: decode, merge,
/// strategy (typed decode, defaults, validation), admission, storage and the answer's encoding,
/// without HTTP, so a profile of it shows the server's own work.
fn write_path(c: &mut Criterion) {
    use capstan_apiserver::cluster::Cluster;
    use capstan_apiserver::patch::PatchKind;
    use capstan_apiserver::verbs::{Target, WriteOptions, present};

    let cluster = Cluster::open(None, 100_000).expect("cluster");
    let info = cluster
        .lock()
        .info("deployments.apps")
        .expect("deployments");
    let target = Target {
        info: info.clone(),
        namespace: Some("default".into()),
        name: Some("web".into()),
        subresource: None,
    };
    let opts = WriteOptions {
        manager: "bench".into(),
        force: true,
        user: Some(k8s_openapi::api::authentication::v1::UserInfo {
            username: Some("admin".into()),
            groups: Some(vec!["system:masters".into()]),
            ..Default::default()
        }),
        ..WriteOptions::default()
    };
    let env = json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
    let bodies: Vec<Vec<u8>> = (0..50)
        .map(|r| serde_json::to_vec(&defaulted_deployment("web", r, env.clone())).expect("body"))
        .collect();
    let mut replicas = 0;
    c.bench_function("in_process/write_path_apply_deployment", |b| {
        b.iter(|| {
            replicas = (replicas + 1) % bodies.len();
            let (object, _) = cluster
                .patch(&target, PatchKind::Apply, &bodies[replicas], &opts)
                .expect("apply");
            serde_json::to_vec(&present(&info, &object)).expect("encode")
        });
    });
}

/// The whole write path of a ConfigMap's create in process (`Cluster::create`: strategy,
/// validation, admission, managed fields, storage and history) and the encoding of the answer,
/// without HTTP; objects accumulate as in the end-to-end create.
fn create_path(c: &mut Criterion) {
    use capstan_apiserver::cluster::Cluster;
    use capstan_apiserver::verbs::{DeleteOptions, Target, WriteOptions};

    let cluster = Cluster::open(None, 100_000).expect("cluster");
    let info = cluster.lock().info("configmaps").expect("configmaps");
    let target = Target {
        info,
        namespace: Some("default".into()),
        name: None,
        subresource: None,
    };
    let opts = WriteOptions {
        manager: "bench".into(),
        ..WriteOptions::default()
    };
    let remove = Target {
        name: Some(String::new()),
        ..target.clone()
    };
    c.bench_function("in_process/create_configmap", |b| {
        // Only the creates are timed; the objects are deleted after each batch, so that the
        // store does not fill up to its quota.
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for i in 0..iters {
                let body = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                    "data": {"key": format!("value-{i}"), "other": "some configuration text"},
                });
                let started = Instant::now();
                let object = cluster.create(&target, body, &opts).expect("create");
                std::hint::black_box(serde_json::to_vec(&*object).expect("encode"));
                elapsed += started.elapsed();
            }
            for i in 0..iters {
                let target = Target {
                    name: Some(format!("cm-{i}")),
                    ..remove.clone()
                };
                cluster.delete(&target, &DeleteOptions::default()).expect("delete");
            }
            elapsed
        });
    });
}

/// Criterion entry points.
mod entry {
    #![allow(missing_docs)] // criterion_group! generates an undocumented public fn.
    // `benches` first: its setup reads the memory the stored objects take, before any other
    // benchmark has grown the heap.
    criterion::criterion_group!(
        apiserver,
        super::benches,
        super::in_process,
        super::write_path,
        super::create_path
    );
}
criterion_main!(entry::apiserver);
