//! Two and more electors on one Lease of the embedded API server, with short timings.
#![allow(clippy::unwrap_used)]

use super::*;
use k8s_openapi::api::core::v1::ConfigMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

fn config(identity: &str) -> ElectionConfig {
    ElectionConfig::new("default")
        .name("test-lease")
        .identity(identity)
        .timing(LEASE, RENEW, RETRY)
}

async fn server() -> capstan_apiserver::RunningServer {
    capstan_apiserver::ApiServer::builder()
        .build()
        .unwrap()
        .start_loopback()
        .await
        .unwrap()
}

async fn lease(client: &kube::Client) -> LeaseSpec {
    Api::<Lease>::namespaced(client.clone(), "default")
        .get("test-lease")
        .await
        .unwrap()
        .spec
        .unwrap()
}

/// Waits until `elector` leads; returns when.
async fn leads_within(elector: &Elector, bound: Duration) -> Instant {
    let mut leading = elector.leading();
    tokio::time::timeout(bound, leading.wait_for(|l| *l))
        .await
        .unwrap_or_else(|_| panic!("{} did not lead within {bound:?}", elector.identity()))
        .unwrap();
    Instant::now()
}

#[test]
fn timings_are_checked_as_client_go_does() {
    let ok = config("a");
    ok.validate().unwrap();
    let defaults = ElectionConfig::new("ns");
    defaults.validate().unwrap();
    assert_eq!(
        (
            defaults.lease_duration,
            defaults.renew_deadline,
            defaults.retry_period
        ),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    assert_eq!(defaults.name, "capstan");
    let s = Duration::from_secs;
    for (lease, renew, retry) in [
        (s(3), s(3), s(1)),                          // renew deadline not below the lease
        (Duration::from_millis(3500), s(2), s(1)),   // a lease of a fraction of a second
        (s(0), s(0), s(0)),                          // nothing
        (s(15), s(10), Duration::from_millis(8500)), // renew deadline <= 1.2 × retry
        (s(15), s(10), s(0)),                        // no retry period
    ] {
        assert!(
            ok.clone().timing(lease, renew, retry).validate().is_err(),
            "{lease:?} {renew:?} {retry:?} accepted"
        );
    }
    assert!(matches!(
        ok.clone().identity("").validate(),
        Err(LeaderError::Identity)
    ));
}

#[test]
fn identities_are_the_host_name_and_a_random_suffix() {
    let (a, b) = (default_identity(), default_identity());
    assert_ne!(a, b);
    let (host, suffix) = a.rsplit_once('_').unwrap();
    assert!(!host.is_empty());
    assert_eq!(suffix.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_leads_releases_on_shutdown_and_the_other_takes_over_at_once() {
    let server = server().await;
    let client = server.client().unwrap();
    let a = Elector::start(client.clone(), config("a"), Fence::new(), None).unwrap();
    leads_within(&a, Duration::from_secs(5)).await;
    let b = Elector::start(client.clone(), config("b"), Fence::new(), None).unwrap();

    // b stands by for longer than a lease: a renews, b never leads.
    tokio::time::sleep(LEASE + RETRY).await;
    assert!(*a.leading().borrow() && a.fence().is_open());
    assert!(!*b.leading().borrow() && !b.fence().is_open());
    let spec = lease(&client).await;
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    let (acquired, renewed) = (spec.acquire_time.unwrap(), spec.renew_time.unwrap());
    assert!(renewed.0 > acquired.0, "renewals move renewTime only");

    // a shuts down: the Lease is released as client-go's ReleaseOnCancel does, and b takes it at
    // its next try, not after the lease duration.
    let a_fence = a.fence();
    let released = Instant::now();
    a.release().await;
    assert!(!a_fence.is_open());
    let took = leads_within(&b, Duration::from_secs(2)).await;
    assert!(took - released <= RETRY + Duration::from_millis(500));
    let spec = lease(&client).await;
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(spec.acquire_time.unwrap().0 > acquired.0);
    b.release().await;
    let spec = lease(&client).await;
    assert_eq!(spec.holder_identity.as_deref(), Some(""));
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(spec.lease_transitions, Some(1));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_duration_and_not_before_its_fence_closed() {
    let server = server().await;
    let client = server.client().unwrap();
    let a = Elector::start(client.clone(), config("a"), Fence::new(), None).unwrap();
    leads_within(&a, Duration::from_secs(5)).await;
    let b = Elector::start(client.clone(), config("b"), Fence::new(), None).unwrap();
    let c = Elector::start(client.clone(), config("c"), Fence::new(), None).unwrap();
    tokio::time::sleep(RETRY * 3).await;

    // Killed: the task is gone, nothing is released.
    let a_deadline = a.fence().deadline().unwrap();
    let killed = Instant::now();
    drop(a);
    let (mut lb, mut lc) = (b.leading(), c.leading());
    let winner = tokio::time::timeout(LEASE + Duration::from_secs(2), async {
        tokio::select! {
            _ = lb.wait_for(|l| *l) => "b",
            _ = lc.wait_for(|l| *l) => "c",
        }
    })
    .await
    .expect("no standby took over within lease duration + 2 s");
    let took = Instant::now();
    assert!(
        took - killed >= LEASE - RETRY,
        "taken after {:?}: before the lease could expire",
        took - killed
    );
    // The dead leader's fence (had its tasks survived) closed before the Lease changed hands.
    assert!(a_deadline < took);
    tokio::time::sleep(RETRY * 2).await;
    assert_eq!(
        u8::from(*b.leading().borrow()) + u8::from(*c.leading().borrow()),
        1,
        "exactly one leads"
    );
    let spec = lease(&client).await;
    assert_eq!(spec.holder_identity.as_deref(), Some(winner));
    assert_eq!(spec.lease_transitions, Some(1));
    b.release().await;
    c.release().await;
    server.shutdown().await.unwrap();
}

/// What reached the API server through one replica's client: when each request was sent, what it
/// was, and its status.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Request>>>);

/// A request: when it was sent, its method, path and response status (once answered).
type Request = (Instant, http::Method, String, Option<u16>);

/// Records requests (below the fence: only what the fence let out), and while `cut` is set holds
/// every Lease request forever, as a partition between this replica and the API server would.
#[derive(Clone)]
struct Tap {
    log: Log,
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
            let mut entries = log.0.lock().unwrap();
            entries.push((Instant::now(), method, path, None));
            entries.len() - 1
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            log.0.lock().unwrap()[at].3 = Some(response.status().as_u16());
            Ok(response)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_writing_before_its_lease_can_be_taken() {
    let server = server().await;
    let admin = server.client().unwrap();
    let tap = Tap {
        log: Log::default(),
        cut: Arc::new(AtomicBool::new(false)),
    };
    let a_client = kube::client::ClientBuilder::try_from(server.kube_config().unwrap())
        .unwrap()
        .with_layer(&tap)
        .build();
    let a = Elector::start(a_client.clone(), config("a"), Fence::new(), None).unwrap();
    leads_within(&a, Duration::from_secs(5)).await;
    let b = Elector::start(admin.clone(), config("b"), Fence::new(), None).unwrap();

    // a writes on a plugin's behalf as fast as it can, through its fence, never told anything.
    let writer = {
        let api: Api<ConfigMap> = Api::namespaced(a.fence().client(a_client.clone()), "default");
        tokio::spawn(async move {
            let mut refused = 0u32;
            for i in 0u64.. {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some("written-by-a".into()),
                        ..ObjectMeta::default()
                    },
                    data: Some([("n".to_owned(), i.to_string())].into()),
                    ..ConfigMap::default()
                };
                let params = kube::api::PatchParams::apply("plugin").force();
                if api
                    .patch("written-by-a", &params, &kube::api::Patch::Apply(&cm))
                    .await
                    .is_err()
                {
                    refused += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                if refused > 100 {
                    return;
                }
            }
        })
    };
    tokio::time::sleep(RETRY * 3).await;

    // The partition: a's Lease requests hang from now on; its other writes would still land.
    tap.cut.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let took = leads_within(&b, LEASE + RENEW + Duration::from_secs(2)).await;
    assert!(
        took - cut <= LEASE + RETRY + Duration::from_secs(2),
        "b took over {:?} after the cut",
        took - cut
    );
    tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the writer keeps being let through")
        .unwrap();
    assert!(!*a.leading().borrow(), "a still believes it leads");

    let log = tap.log.0.lock().unwrap().clone();
    let last_renew = log
        .iter()
        .filter(|(_, m, p, s)| *m == http::Method::PUT && p.contains("/leases/") && *s == Some(200))
        .map(|(t, ..)| *t)
        .max()
        .expect("a renewed before the cut");
    let writes: Vec<Instant> = log
        .iter()
        .filter(|(_, m, p, _)| *m == http::Method::PATCH && p.contains("/configmaps/"))
        .map(|(t, ..)| *t)
        .collect();
    assert!(
        writes.iter().any(|t| *t > cut),
        "a kept writing after the cut, while it still held the Lease"
    );
    let last_write = writes.into_iter().max().unwrap();
    assert!(
        last_write <= last_renew + RENEW,
        "a wrote {:?} after its last renew, past the renew deadline",
        last_write - last_renew
    );
    assert!(
        last_write < took,
        "a wrote after b took over: both wrote at once"
    );
    b.release().await;
    drop(a);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_deleted_under_a_dead_leader_is_not_taken_before_its_lease_expires() {
    let server = server().await;
    let client = server.client().unwrap();
    let a = Elector::start(client.clone(), config("a"), Fence::new(), None).unwrap();
    leads_within(&a, Duration::from_secs(5)).await;
    let b = Elector::start(client.clone(), config("b"), Fence::new(), None).unwrap();
    tokio::time::sleep(RETRY * 3).await;
    let a_deadline = a.fence().deadline().unwrap();
    drop(a);
    Api::<Lease>::namespaced(client.clone(), "default")
        .delete("test-lease", &Default::default())
        .await
        .unwrap();
    let took = leads_within(&b, LEASE + Duration::from_secs(2)).await;
    assert!(
        took > a_deadline,
        "b created the deleted Lease while a's fence was open"
    );
    assert_eq!(lease(&client).await.holder_identity.as_deref(), Some("b"));
    b.release().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_recreates_a_deleted_lease_and_keeps_leading() {
    let server = server().await;
    let client = server.client().unwrap();
    let a = Elector::start(client.clone(), config("a"), Fence::new(), None).unwrap();
    leads_within(&a, Duration::from_secs(5)).await;
    let b = Elector::start(client.clone(), config("b"), Fence::new(), None).unwrap();
    tokio::time::sleep(RETRY * 3).await;
    Api::<Lease>::namespaced(client.clone(), "default")
        .delete("test-lease", &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(LEASE + RETRY * 2).await;
    assert!(*a.leading().borrow() && !*b.leading().borrow());
    assert_eq!(lease(&client).await.holder_identity.as_deref(), Some("a"));
    a.release().await;
    b.release().await;
    server.shutdown().await.unwrap();
}
