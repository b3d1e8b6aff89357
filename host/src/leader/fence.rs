//! The leader's write fence: a deadline on the local monotonic clock until which this replica is
//! known to hold the leader Lease (the send time of its last successful renew plus the renew
//! deadline), and clients whose writes pass only before it.
//!
//! The elector moves the deadline forward on every renew and closes the fence when leadership is
//! lost or released. A write (any request but `GET`, `HEAD` and `OPTIONS`) sent through a
//! [`Fence::client`] is refused once the deadline has passed, even if the task that sends it was
//! never told that leadership ended (it is stuck, or the elector is starved); a write still waiting
//! for its response when the deadline passes is abandoned. Reads always pass: a standby keeps its
//! informers warm.
//!
//! Why this is enough: another replica takes the Lease only after it has seen the Lease unchanged
//! for the lease duration, counted from when *it* saw the last renew, which is after that renew was
//! sent. The fence closes the renew deadline after the send, so the margin between the last write
//! this replica can start and the earliest takeover is at least `lease duration - renew deadline`
//! (5 s with the defaults), the same margin client-go's elector relies on. It tolerates clock
//! *rates* that differ by less than that ratio, and any clock offset (no wall-clock time is
//! compared). A request already sent cannot be recalled: one that reaches the API server later
//! than the margin after it was sent still lands, which no client-side fence can prevent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Why a write did not go out.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The fence was closed when the write was made: this replica is not (or no longer known to
    /// be) the leader.
    #[error("write refused: this replica does not hold the leader Lease")]
    NotLeader,
    /// The fence closed while the write waited for its response; the write was abandoned.
    #[error("write abandoned: the leader Lease lapsed while it was in flight")]
    Lapsed,
}

/// Whether, and until when, this replica may write. Cheap to clone; every clone is the same fence.
#[derive(Debug, Clone)]
pub struct Fence {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The instant deadlines are counted from.
    origin: Instant,
    /// The deadline, in nanoseconds after `origin`; 0 when closed.
    until: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

impl Fence {
    /// A closed fence: no write passes until [`open_until`](Self::open_until).
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                until: AtomicU64::new(0),
            }),
        }
    }

    /// Let writes pass until `deadline` (replacing any earlier deadline).
    pub fn open_until(&self, deadline: Instant) {
        let nanos = deadline
            .saturating_duration_since(self.inner.origin)
            .as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        self.inner.until.store(nanos, Ordering::SeqCst);
    }

    /// Refuse writes from now on.
    pub fn close(&self) {
        self.inner.until.store(0, Ordering::SeqCst);
    }

    /// The deadline, or `None` when the fence is closed (it may have passed already).
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        match self.inner.until.load(Ordering::SeqCst) {
            0 => None,
            nanos => Some(self.inner.origin + Duration::from_nanos(nanos)),
        }
    }

    /// How long writes still pass: `None` when closed or past the deadline.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        let left = self.deadline()?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// Whether a write made now would pass.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.remaining().is_some()
    }

    /// `client`, with every write behind this fence (reads pass as they are).
    #[must_use]
    pub fn client(&self, client: kube::Client) -> kube::Client {
        let namespace = client.default_namespace().to_owned();
        kube::Client::new(
            Fenced {
                client,
                fence: self.clone(),
            },
            namespace,
        )
    }
}

/// Whether a request only reads.
fn reads_only(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service behind a fenced client: checks the fence, then sends through the inner client.
#[derive(Clone)]
struct Fenced {
    client: kube::Client,
    fence: Fence,
}

type Response = http::Response<kube::client::Body>;

impl tower::Service<http::Request<kube::client::Body>> for Fenced {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner client queues requests itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.client.clone();
        if reads_only(request.method()) {
            return Box::pin(async move { client.send(request).await.map_err(Into::into) });
        }
        if !self.fence.is_open() {
            return Box::pin(std::future::ready(Err(FenceError::NotLeader.into())));
        }
        let fence = self.fence.clone();
        Box::pin(async move {
            let send = client.send(request);
            tokio::pin!(send);
            // Renews move the deadline while the write is in flight: wait for the current one.
            loop {
                let Some(deadline) = fence.deadline().filter(|d| *d > Instant::now()) else {
                    return Err(FenceError::Lapsed.into());
                };
                tokio::select! {
                    response = &mut send => return response.map_err(Into::into),
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};

    fn configmap(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_fence_is_open_only_before_its_deadline() {
        let fence = Fence::new();
        assert!(!fence.is_open());
        assert_eq!(fence.deadline(), None);
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.is_open());
        let other = fence.clone();
        other.close();
        assert!(!fence.is_open(), "clones share one fence");
        fence.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.is_open(), "a deadline in the past lets nothing pass");
        assert!(fence.deadline().is_some());
    }

    #[tokio::test]
    async fn writes_pass_only_while_open_and_reads_always() {
        let server = capstan_apiserver::ApiServer::builder()
            .build()
            .unwrap()
            .start_loopback()
            .await
            .unwrap();
        let fence = Fence::new();
        let fenced = fence.client(server.client().unwrap());
        let api: Api<ConfigMap> = Api::namespaced(fenced, "default");

        let refused = api
            .create(&PostParams::default(), &configmap("closed"))
            .await
            .unwrap_err();
        let kube::Error::Service(source) = &refused else {
            panic!("not refused by the fence: {refused:?}");
        };
        assert!(
            matches!(source.downcast_ref(), Some(FenceError::NotLeader)),
            "{source}"
        );
        // Nothing reached the server; reads pass while closed.
        assert!(api.get_opt("closed").await.unwrap().is_none());

        fence.open_until(Instant::now() + Duration::from_secs(30));
        api.create(&PostParams::default(), &configmap("open"))
            .await
            .unwrap();
        assert!(api.get_opt("open").await.unwrap().is_some());

        fence.open_until(Instant::now() + Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            api.create(&PostParams::default(), &configmap("lapsed"))
                .await
                .is_err(),
            "a deadline that passed refuses writes without anyone closing the fence"
        );
        assert!(api.get_opt("lapsed").await.unwrap().is_none());
        server.shutdown().await.unwrap();
    }
}
