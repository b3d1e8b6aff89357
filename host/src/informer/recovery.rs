//! Recovery from an API server outage: one readiness probe shared by every watcher, which wakes
//! them all (each after its own small jitter) as soon as the server answers again, instead of
//! leaving each to sleep out a backoff that grew while the server was away.
//!
//! kube-runtime's default watcher backoff grows from 0.8 s to 30 s during an outage, so after a
//! 30 s outage a watcher may wait most of 30 s more before it lists again (44-57 s were measured
//! against a real kube-apiserver). Here a watcher that fails backs off as before, but waits for
//! whichever comes first: its backoff, or the probe's news that the server is ready again. The
//! probe (`GET /readyz`, which Kubernetes allows without credentials) runs only while some watcher
//! is failing, every [`PROBE_INTERVAL`] with jitter, and wakes the watchers only after it has seen
//! the server not ready: a watch refused for another reason (RBAC, a removed kind) keeps its
//! backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the probe asks a failing server whether it is ready (± half of it, at random).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// At most this long between the server's recovery and a given watcher's retry, beyond
/// [`PROBE_INTERVAL`]: each watcher waits a random part of it, so they do not relist at once.
pub const RESUME_SPREAD: Duration = Duration::from_millis(500);

/// Whether the API server came back: shared by the watchers of one [`super::Informers`].
#[derive(Clone)]
pub(crate) struct Recovery {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    /// Bumped each time the server is seen ready after it was not.
    recovered: tokio::sync::watch::Sender<u64>,
    probing: AtomicBool,
}

/// What a failing watcher waits on: its backoff or the server's recovery.
pub(crate) struct Waiter {
    recovered: tokio::sync::watch::Receiver<u64>,
}

impl Recovery {
    /// Recovery probing through `client`.
    pub(crate) fn new(client: kube::Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                recovered: tokio::sync::watch::Sender::new(0),
                probing: AtomicBool::new(false),
            }),
        }
    }

    /// A receiver whose value changes each time the server is seen ready after an outage.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.recovered.subscribe()
    }

    /// A watcher failed: subscribe before the probe starts, so that no recovery is missed.
    pub(crate) fn failed(&self) -> Waiter {
        let waiter = Waiter {
            recovered: self.inner.recovered.subscribe(),
        };
        if !self.inner.probing.swap(true, Ordering::AcqRel) {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                probe(&inner).await;
                inner.probing.store(false, Ordering::Release);
            });
        }
        waiter
    }
}

impl Waiter {
    /// Sleep `backoff`, or less if the server recovers first (then a random part of
    /// [`RESUME_SPREAD`] more).
    pub(crate) async fn wait(mut self, backoff: Duration) {
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            changed = self.recovered.changed() => {
                if changed.is_ok() {
                    tokio::time::sleep(RESUME_SPREAD.mul_f64(fastrand::f64())).await;
                }
            }
        }
    }
}

/// Whether the server answers `GET /readyz` with a success.
async fn ready(client: &kube::Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    client.request_text(request).await.is_ok()
}

/// Probe until the server is ready; if it was not at some point, tell the watchers. Gives up
/// (quietly) once it is ready, or after the first probe if it was ready all along.
async fn probe(inner: &Inner) {
    let mut was_down = false;
    loop {
        if ready(&inner.client).await {
            if was_down {
                tracing::info!("the API server is ready again: watchers resume");
                inner.recovered.send_modify(|n| *n += 1);
            }
            return;
        }
        if !was_down {
            tracing::warn!("the API server is not ready: probing it until it is");
        }
        was_down = true;
        tokio::time::sleep(PROBE_INTERVAL.mul_f64(0.5 + fastrand::f64())).await;
    }
}
