//! Leader election in `capstan run`, in process: the leader's Lease requests are cut off (a
//! partition between it and the API server that spares its other requests), and the `webapp`
//! reconciler, kept busy by a WebApp that keeps changing, stops writing before the standby can take
//! the Lease, which then serves.
#![allow(clippy::unwrap_used)]

use crate::support::{guest, root, tempdir};
use capstan::leader::ElectionConfig;
use capstan::runner::{RunConfig, run_with_listener};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);
/// How long a request may take from the fence, which checks a write when it is made, to the tap
/// below the kube client's request buffer, which logs it when that buffer's worker hands it on:
/// a task hop, which a loaded 2-core machine can hold up for milliseconds. A tenth of the margin
/// the fence keeps before a takeover (`LEASE - RENEW`).
const HANDOFF: Duration = Duration::from_millis(100);

/// A request sent to the API server: when, its method, path and status (once answered).
type Request = (Instant, http::Method, String, Option<u16>);

/// Records what a replica's client sends (below its fence: only what the fence let out); while
/// `cut` is set, its Lease requests hang forever.
#[derive(Clone, Default)]
struct Tap {
    log: Arc<Mutex<Vec<Request>>>,
    cut: Arc<AtomicBool>,
}

struct Tapped<S> {
    inner: S,
    tap: Tap,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S> tower::Layer<S> for Tap {
    type Service = Tapped<S>;

    fn layer(&self, inner: S) -> Tapped<S> {
        Tapped {
            inner,
            tap: self.clone(),
        }
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Tapped<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>, Error = BoxError>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<R>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        if self.tap.cut.load(Ordering::SeqCst) && path.contains("/leases") {
            return Box::pin(std::future::pending());
        }
        // Logged when sent (a request abandoned before its response counts too), with its
        // status once it has one.
        let log = self.tap.log.clone();
        let at = {
            let mut entries = log.lock().unwrap();
            entries.push((Instant::now(), method, path, None));
            entries.len() - 1
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            log.lock().unwrap()[at].3 = Some(response.status().as_u16());
            Ok(response)
        })
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    out.split_once("\r\n\r\n")
        .map(|(_, body)| (status, body.to_owned()))
}

/// Poll `ok` every 20 ms until it holds (panics after `bound`); returns when it did.
async fn until<F: std::future::Future<Output = bool>>(
    bound: Duration,
    what: &str,
    mut ok: impl FnMut() -> F,
) -> Instant {
    let deadline = Instant::now() + bound;
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Instant::now()
}

/// A host running the `webapp` plugin with leader election as `identity`; send to stop it.
async fn host(
    identity: &str,
    client: &kube::Client,
    plugins: &std::path::Path,
    manifests: &std::path::Path,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), capstan::runner::RunError>>,
    std::net::SocketAddr,
) {
    let mut config = RunConfig::new(plugins);
    config.hot_reload = false;
    config.manifests = Some(manifests.to_owned());
    config.leader_election = Some(
        ElectionConfig::new("default")
            .name("capstan-test")
            .identity(identity)
            .timing(LEASE, RENEW, RETRY),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_with_listener(
        config,
        client.clone(),
        Some(listener),
        async {
            let _ = stopped.await;
        },
    ));
    (stop, task, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_writing_before_the_standby_takes_over() {
    let server = capstan_apiserver::ApiServer::builder()
        .build()
        .unwrap()
        .start_loopback()
        .await
        .unwrap();
    let admin = server.client().unwrap();
    let plugins = tempdir();
    std::fs::copy(guest("webapp"), plugins.path().join("webapp.wasm")).unwrap();
    let manifests = tempdir();
    std::fs::copy(
        root().join("examples/webapp-crd.yaml"),
        manifests.path().join("webapp.yaml"),
    )
    .unwrap();
    let tap = Tap::default();
    let a_client = kube::client::ClientBuilder::try_from(server.kube_config().unwrap())
        .unwrap()
        .with_layer(&tap)
        .build();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "default");
    let holder = || async {
        leases
            .get_opt("capstan-test")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    let replicas = || async {
        deployments
            .get_opt("shop")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec?.replicas)
    };

    // a leads: it applied the manifests (the CRD and `shop`) and reconciled shop.
    let (stop_a, task_a, addr_a) = host("a", &a_client, plugins.path(), manifests.path()).await;
    until(Duration::from_secs(120), "a reconciles shop", || async {
        replicas().await == Some(2)
    })
    .await;
    assert_eq!(holder().await.as_deref(), Some("a"));
    let (stop_b, task_b, addr_b) = host("b", &admin, plugins.path(), manifests.path()).await;
    until(Duration::from_secs(120), "b stands by", || async {
        get(addr_b, "/readyz").await.is_some_and(|(s, _)| s == 503)
    })
    .await;

    // The WebApp changes every 50 ms: whoever serves keeps writing.
    let webapps: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
            "webapps",
        ),
    );
    let changing = Arc::new(AtomicBool::new(true));
    let driver = {
        let (webapps, changing) = (webapps.clone(), changing.clone());
        tokio::spawn(async move {
            let mut n = 3;
            while changing.load(Ordering::SeqCst) {
                let patch = serde_json::json!({"spec": {"replicas": n}});
                let _ = webapps
                    .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            n - 1
        })
    };
    tokio::time::sleep(RETRY * 3).await;

    // The partition.
    tap.cut.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let took = until(
        LEASE + RENEW + Duration::from_secs(2),
        "b takes over",
        || async { holder().await.as_deref() == Some("b") },
    )
    .await;
    until(Duration::from_secs(5), "b serves", || async {
        get(addr_b, "/readyz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    changing.store(false, Ordering::SeqCst);
    let last = driver.await.unwrap();
    until(
        Duration::from_secs(10),
        "b reconciles the last change",
        || async { replicas().await == Some(last) },
    )
    .await;
    assert!(took - cut <= LEASE + RETRY + Duration::from_secs(2));

    // a stands by again: not ready, not leading, one loss counted.
    let (status, body) = get(addr_a, "/readyz").await.unwrap();
    assert_eq!((status, body.contains("standby")), (503, true), "{body}");
    let (_, metrics) = get(addr_a, "/metrics").await.unwrap();
    assert!(metrics.contains("\ncapstan_leader 0\n"), "{metrics}");
    assert!(
        metrics.contains("capstan_leader_transitions_total{transition=\"lost\"} 1\n"),
        "{metrics}"
    );

    let log = tap.log.lock().unwrap().clone();
    let last_renew = log
        .iter()
        .filter(|(_, m, p, s)| *m == http::Method::PUT && p.contains("/leases/") && *s == Some(200))
        .map(|(t, ..)| *t)
        .max()
        .expect("a renewed before the cut");
    let writes: Vec<Instant> = log
        .iter()
        .filter(|(_, m, p, _)| *m != http::Method::GET && !p.contains("/leases"))
        .map(|(t, ..)| *t)
        .collect();
    assert!(
        writes.iter().any(|t| *t > cut),
        "a wrote nothing on the plugin's behalf after the cut, while it still held the Lease"
    );
    let last_write = writes.into_iter().max().unwrap();
    assert!(
        last_write <= last_renew + RENEW + HANDOFF,
        "a wrote {:?} after its last renew, past the renew deadline (and the hand-off)",
        last_write - last_renew
    );
    assert!(last_write < took, "a wrote after b took the Lease");

    stop_b.send(()).unwrap();
    task_b.await.unwrap().unwrap();
    assert_eq!(holder().await.as_deref(), Some(""), "b released the Lease");
    stop_a.send(()).unwrap();
    task_a.await.unwrap().unwrap();
    server.shutdown().await.unwrap();
}
