//! Reconcile throughput: N WebApps with a no-op plan reconciled once, by Capstan running the
//! `noop-webapp` guest and by a native kube-runtime `Controller` doing the same work (decode the
//! object, compute the status, patch it), one after the other in one process, each round against a
//! fresh embedded API server. Also the memory per object in Capstan's informer cache (and, for
//! context, in a kube-runtime reflector store).
//!
//! `cargo bench -p capstan --bench reconcile` reconciles 10 000 WebApps per round; under
//! `cargo test` (no `--bench` argument) 200, so the test run stays quick. Criterion times one round:
//! from the controller's start, its initial list and watch included, until every WebApp has its
//! status written. Rates and memory are printed to stderr.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/all/support.rs"]
#[allow(dead_code)]
mod support;

use capstan::contract::Gvk;
use capstan::informer::Informers;
use capstan::plugin::{Plugin, Runtime, RuntimeConfig};
use capstan::reconcile::{Controller, ControllerConfig};
use criterion::{Criterion, SamplingMode, criterion_main};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Config as KubeControllerConfig};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{Controller as KubeController, reflector, watcher};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const GROUP: &str = "examples.capstan.dev";
const VERSION: &str = "v1alpha1";
/// WebApps per round with `cargo bench`.
const FULL: usize = 10_000;
/// WebApps per round under `cargo test`.
const QUICK: usize = 200;
/// Reconciles at once, in both controllers.
const CONCURRENCY: usize = 8;
/// Creates in flight while setting up a round.
const CREATES_IN_FLIGHT: usize = 32;

#[path = "../apiserver/benches/support/cpu.rs"]
mod cpu;
#[path = "../apiserver/benches/support/memory.rs"]
#[allow(dead_code)]
mod memory;
#[path = "../apiserver/benches/support/server.rs"]
#[allow(dead_code)]
mod server;
use server::Server;

/// The `capstan` binary's allocator, counting live heap bytes: the memory of a cache is the
/// growth of live bytes while it fills ([`memory`]).
#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

/// Live heap bytes and resident set size at one moment.
#[derive(Debug, Clone, Copy)]
struct Memory {
    heap: usize,
    rss: u64,
}

impl Memory {
    fn now() -> Self {
        Self {
            heap: memory::live_bytes(),
            rss: memory::rss_bytes(),
        }
    }

    /// Measured after transient work (responses, decoding buffers) has had time to finish.
    async fn settled() -> Self {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Self::now()
    }

    /// Growth since `before`, per object: (heap, RSS).
    fn per_object(self, before: Self, n: usize) -> (i64, i64) {
        let heap = self.heap.wrapping_sub(before.heap).cast_signed() as i64;
        let rss = self.rss.cast_signed() - before.rss.cast_signed();
        (heap / n as i64, rss / n as i64)
    }
}

/// How long a round may take before the benchmark gives up.
fn deadline(n: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(20) * u32::try_from(n).unwrap()
}

/// Poll `done` every 5 ms until it holds (panics after `deadline(n)`).
async fn wait_until(what: &str, n: usize, done: impl Fn() -> bool) {
    let end = Instant::now() + deadline(n);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The WebApp CustomResourceDefinition alone (the example file also holds a WebApp).
fn crd_yaml() -> String {
    let text = std::fs::read_to_string(support::root().join("examples/webapp-crd.yaml")).unwrap();
    text.split("\n---")
        .find(|doc| doc.contains("kind: CustomResourceDefinition"))
        .unwrap()
        .to_owned()
}

fn webapp(i: usize) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "WebApp",
        "metadata": {"name": format!("app-{i:05}"), "namespace": "default", "labels": {"app": format!("app-{i:05}"), "tier": "web"}},
        "spec": {"image": "nginx:1.27", "replicas": 2, "port": 8080},
    }))
    .unwrap()
}

/// A fresh embedded API server with the WebApp CRD and `n` WebApps.
struct Env {
    server: Server,
    client: kube::Client,
    resource: ApiResource,
}

impl Env {
    async fn start(n: usize) -> Self {
        let (server, client) = Server::start(Some(env!("CARGO_BIN_EXE_capstan"))).await;
        let dir = support::tempdir();
        std::fs::write(dir.path().join("webapp-crd.yaml"), crd_yaml()).unwrap();
        capstan::manifests::apply_dir(&client, dir.path())
            .await
            .unwrap();
        // The kind is served a moment after its CRD is stored.
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, "WebApp");
        let end = Instant::now() + Duration::from_secs(10);
        let resource = loop {
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok((resource, _)) => break resource,
                Err(e) if Instant::now() > end => panic!("WebApp is not served: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let env = Self {
            server,
            client,
            resource,
        };
        let api = env.api();
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &webapp(i))
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(CREATES_IN_FLIGHT)
            .collect::<()>()
            .await;
        env
    }

    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), "default", &self.resource)
    }

    async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Memory figures of one round.
#[derive(Debug, Clone, Copy)]
struct CacheMemory {
    /// Capstan informer cache: live heap bytes per object.
    heap: i64,
    /// Capstan informer cache: RSS growth per object.
    rss: i64,
    /// One object as cached (managedFields dropped), as JSON.
    json: usize,
    /// The same object as served (managedFields included), as JSON.
    json_served: usize,
}

/// What a round took: its time, this process's CPU time, and the server's when it is a process of
/// its own.
#[derive(Debug, Clone, Copy)]
struct Took {
    elapsed: Duration,
    cpu: Duration,
    server_cpu: Option<Duration>,
}

impl Took {
    /// From a start read by [`Took::start`].
    fn since(start: (Instant, Duration, Option<Duration>), server: &Server) -> Self {
        let (started, cpu, server_cpu) = start;
        Self {
            elapsed: started.elapsed(),
            cpu: cpu::cpu_time() - cpu,
            server_cpu: server
                .cpu_time()
                .zip(server_cpu)
                .map(|(end, start)| end - start),
        }
    }

    fn start(server: &Server) -> (Instant, Duration, Option<Duration>) {
        (Instant::now(), cpu::cpu_time(), server.cpu_time())
    }
}

/// One Capstan round: returns the time from the controller's start until every WebApp's status is
/// written with the CPU time used meanwhile, and the memory of a filled informer cache (measured
/// before, untimed).
async fn capstan_round(n: usize, plugin: &Plugin) -> (Took, CacheMemory) {
    let env = Env::start(n).await;
    let gvk = Gvk::new(GROUP, VERSION, "WebApp");

    // Memory per cached object: a cache of its own, filled, measured and dropped.
    let memory = {
        let before = Memory::settled().await;
        let informers = Informers::new(env.client.clone());
        let handle = informers.acquire(&gvk).await.unwrap();
        wait_until("the informer cache", n, || {
            handle.is_synced() && handle.len() == n
        })
        .await;
        let after = Memory::settled().await;
        let (heap, rss) = after.per_object(before, n);
        let cached = handle.get(Some("default"), "app-00000").unwrap();
        let served = env.api().get("app-00000").await.unwrap();
        CacheMemory {
            heap,
            rss,
            json: serde_json::to_vec(&*cached).unwrap().len(),
            json_served: serde_json::to_vec(&served).unwrap().len(),
        }
    };

    let informers = Informers::new(env.client.clone());
    let metrics = capstan::metrics::Metrics::new();
    let config = ControllerConfig {
        concurrency: CONCURRENCY,
        resync: Duration::from_secs(3600),
        metrics: Some(metrics.clone()),
        ..ControllerConfig::default()
    };
    let start = Took::start(&env.server);
    let started = start.0;
    let controller = Controller::start(plugin.clone(), &informers, env.client.clone(), config)
        .await
        .unwrap();
    // The controller's own informer: counting its changes costs no extra watch.
    let handle = informers.acquire(&gvk).await.unwrap();
    let mut changes = handle.subscribe();
    let mut written = HashSet::with_capacity(n);
    let end = started + deadline(n);
    while written.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        let change = tokio::time::timeout(left, changes.recv())
            .await
            .unwrap_or_else(|_| panic!("capstan: {} of {n} statuses written", written.len()))
            .expect("the informer runs");
        if change
            .object
            .data
            .pointer("/status/observedGeneration")
            .is_some()
            && let Some(name) = &change.object.metadata.name
        {
            written.insert(name.clone());
        }
    }
    let took = Took::since(start, &env.server);
    let reconciles: f64 = metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("capstan_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("capstan: {reconciles} reconciles for {n} objects by the last status write");
    controller.shutdown(Duration::from_secs(5)).await;
    drop((changes, handle, informers));
    env.shutdown().await;
    (took, memory)
}

/// The WebApp as a native controller types it.
#[derive(Deserialize)]
struct WebApp {
    metadata: ObjectMeta,
    #[allow(dead_code)]
    spec: WebAppSpec,
    #[serde(default)]
    status: Option<WebAppStatus>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct WebAppSpec {
    image: String,
    #[serde(default)]
    replicas: i32,
    port: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebAppStatus {
    observed_generation: Option<i64>,
}

struct NativeContext {
    api: Api<DynamicObject>,
    n: usize,
    patched: AtomicUsize,
    errors: AtomicUsize,
    finished: tokio::sync::Notify,
}

/// What Capstan's host does for the plugin, minus the wasm: decode the object into a typed
/// struct, compute the status Capstan writes for it (the same five conditions, phase,
/// observedGeneration) and patch it unless it is already written.
async fn native_reconcile(
    obj: Arc<DynamicObject>,
    ctx: Arc<NativeContext>,
) -> Result<Action, kube::Error> {
    let app: WebApp = serde_json::to_value(&*obj)
        .and_then(serde_json::from_value)
        .map_err(kube::Error::SerdeError)?;
    let generation = app.metadata.generation;
    if app.status.and_then(|s| s.observed_generation) == generation {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let condition = |kind: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": now, "observedGeneration": generation,
        })
    };
    let status = json!({
        "status": "Ready",
        "phase": "Ready",
        "lastPhaseTransitionTime": now,
        "observedGeneration": generation,
        "conditions": [
            condition("AppReady", "Running", "nothing to do"),
            condition("AuthValid", "AuthValid", "no authentication errors"),
            condition("ConfigValid", "ConfigValid", "configuration is valid"),
            condition("DependenciesReachable", "Reachable", "dependencies are reachable"),
            condition("Ready", "AllComponentsReady", "all components are ready"),
        ],
    });
    let name = app.metadata.name.unwrap_or_default();
    ctx.api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?;
    if ctx.patched.fetch_add(1, Ordering::Relaxed) + 1 == ctx.n {
        ctx.finished.notify_one();
    }
    Ok(Action::await_change())
}

fn native_error(_: Arc<DynamicObject>, _: &kube::Error, ctx: Arc<NativeContext>) -> Action {
    ctx.errors.fetch_add(1, Ordering::Relaxed);
    Action::requeue(Duration::from_millis(100))
}

/// One native round: returns the time from the controller's start until every WebApp's status is
/// patched with the CPU time used meanwhile, and the live heap bytes per object of a kube-runtime
/// reflector store (measured before, untimed).
async fn native_round(n: usize) -> (Took, i64) {
    let env = Env::start(n).await;
    let api = env.api();

    let reflector_heap = {
        let before = Memory::settled().await;
        let writer = Writer::<DynamicObject>::new(env.resource.clone());
        let store = writer.as_reader();
        let task = tokio::spawn(
            reflector(writer, watcher(api.clone(), watcher::Config::default()))
                .for_each(|_| async {}),
        );
        wait_until("the reflector store", n, || store.len() == n).await;
        let after = Memory::settled().await;
        task.abort();
        after.per_object(before, n).0
    };

    let ctx = Arc::new(NativeContext {
        api: api.clone(),
        n,
        patched: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        finished: tokio::sync::Notify::new(),
    });
    let start = Took::start(&env.server);
    let controller =
        KubeController::new_with(api, watcher::Config::default(), env.resource.clone())
            .with_config(
                KubeControllerConfig::default().concurrency(u16::try_from(CONCURRENCY).unwrap()),
            )
            .run(native_reconcile, native_error, ctx.clone())
            .for_each(|_| async {});
    let task = tokio::spawn(controller);
    if tokio::time::timeout(deadline(n), ctx.finished.notified())
        .await
        .is_err()
    {
        panic!(
            "native: {} of {n} statuses patched ({} errors)",
            ctx.patched.load(Ordering::Relaxed),
            ctx.errors.load(Ordering::Relaxed)
        );
    }
    let took = Took::since(start, &env.server);
    task.abort();
    let _ = task.await;
    let errors = ctx.errors.load(Ordering::Relaxed);
    if errors > 0 {
        eprintln!("native: {errors} reconcile errors (retried)");
    }
    env.shutdown().await;
    (took, reflector_heap)
}

/// The server's CPU time of a round, when it was read.
fn server_note(cpu: Option<Duration>) -> String {
    cpu.map(|cpu| format!(", the server {cpu:.2?} CPU"))
        .unwrap_or_default()
}

fn median<T: Copy + PartialOrd>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sorted[sorted.len() / 2]
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn benches(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { FULL } else { QUICK };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let plugin = rt.block_on(async {
        Runtime::new(RuntimeConfig::default())
            .unwrap()
            .load(&support::guest("noop-webapp"))
            .await
            .unwrap()
    });

    let (mut capstan, mut native) = (Vec::new(), Vec::new());
    let (mut capstan_cpu, mut native_cpu) = (Vec::new(), Vec::new());
    let (mut capstan_server_cpu, mut native_server_cpu) = (Vec::new(), Vec::new());
    let (mut memory, mut reflector_heap) = (Vec::new(), Vec::new());
    let mut group = c.benchmark_group(format!("reconcile_{n}_webapps"));
    // One round per sample, the fewest samples criterion takes, one warm-up round.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    group.bench_function("capstan", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, m) = rt.block_on(capstan_round(n, &plugin));
                let (elapsed, cpu) = (took.elapsed, took.cpu);
                eprintln!(
                    "capstan: {n} WebApps reconciled in {elapsed:.2?} = {:.0}/s, {cpu:.2?} CPU{}",
                    rate(n, elapsed),
                    server_note(took.server_cpu),
                );
                capstan.push(elapsed);
                capstan_cpu.push(cpu);
                capstan_server_cpu.extend(took.server_cpu);
                memory.push(m);
                total += elapsed;
            }
            total
        });
    });
    group.bench_function("native", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, heap) = rt.block_on(native_round(n));
                let (elapsed, cpu) = (took.elapsed, took.cpu);
                eprintln!(
                    "native: {n} WebApps reconciled in {elapsed:.2?} = {:.0}/s, {cpu:.2?} CPU{}",
                    rate(n, elapsed),
                    server_note(took.server_cpu),
                );
                native.push(elapsed);
                native_cpu.push(cpu);
                native_server_cpu.extend(took.server_cpu);
                reflector_heap.push(heap);
                total += elapsed;
            }
            total
        });
    });
    group.finish();

    if capstan.is_empty() || native.is_empty() {
        return; // --list, or a filter that skipped one side
    }
    let (capstan, native) = (median(&capstan), median(&native));
    let (capstan_cpu, native_cpu) = (median(&capstan_cpu), median(&native_cpu));
    let server = if Server::wanted_as_process() {
        "the controller's alone: the API server is a process of its own"
    } else {
        "the controller's and the API server's, in one process"
    };
    eprintln!(
        "reconcile_{n}: CPU per reconcile ({server}): capstan {:.1} µs, native {:.1} µs, ratio {:.2}",
        capstan_cpu.as_secs_f64() * 1e6 / n as f64,
        native_cpu.as_secs_f64() * 1e6 / n as f64,
        native_cpu.as_secs_f64() / capstan_cpu.as_secs_f64(),
    );
    if !capstan_server_cpu.is_empty() && !native_server_cpu.is_empty() {
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / n as f64;
        eprintln!(
            "reconcile_{n}: the API server's CPU per reconcile: serving capstan {:.1} µs, serving native {:.1} µs",
            per(median(&capstan_server_cpu)),
            per(median(&native_server_cpu)),
        );
    }
    let heap = median(&memory.iter().map(|m| m.heap).collect::<Vec<_>>());
    let first = memory[0];
    eprintln!(
        "reconcile_{n}: capstan {:.0}/s ({capstan:.2?}), native {:.0}/s ({native:.2?}), ratio {:.2}; \
         cache {heap} bytes/object live heap ({} bytes/object RSS, first round), \
         JSON {} bytes cached ({} as served with managedFields); \
         kube-runtime reflector store {} bytes/object live heap; medians of {} and {} rounds",
        rate(n, capstan),
        rate(n, native),
        native.as_secs_f64() / capstan.as_secs_f64(),
        first.rss,
        first.json,
        first.json_served,
        median(&reflector_heap),
        memory.len(),
        reflector_heap.len(),
    );
}

/// Criterion entry points.
mod entry {
    #![allow(missing_docs)] // criterion_group! generates an undocumented public fn.
    criterion::criterion_group!(reconcile, super::benches);
}
criterion_main!(entry::reconcile);
