//! Scatter-gather request/response over an event bus, correlated by request id.
//!
//! A [`RequestBus<Q, R>`] is a [`Bus`] whose events are [`Request<Q, R>`]s. Responders subscribe like
//! any other subscriber and answer through [`Request::respond`]; the caller of
//! [`RequestBus::request`] gets the responses correlated with its request id.
//!
//! * The pending entry of a request lives exactly as long as the `request` future: it is removed
//!   when the future completes, times out, or is dropped (cancellation). Late responses are refused
//!   with [`BusError::NotPending`].
//! * No lock is held while a responder runs and publishing never blocks, so a responder may itself
//!   call `request` from its handler: the nested request completes, or times out if it waits on a
//!   responder that is busy (for example the caller itself), but never deadlocks the bus.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Bus, BusError, BusStats, Subscription};

/// Upper bound of the response buffer allocated up front for one request.
const PREALLOCATED_RESPONSES: usize = 64;

/// Correlation id of a request, unique within its [`RequestBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CorrelationId(u64);

impl CorrelationId {
    /// The raw numeric id.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

/// Responses collected so far for one pending request.
struct Entry<R> {
    expected: usize,
    responses: Vec<R>,
    done: Option<oneshot::Sender<()>>,
}

/// The table of pending requests of one [`RequestBus`].
struct Pending<R> {
    next_id: AtomicU64,
    entries: Mutex<HashMap<CorrelationId, Entry<R>>>,
}

impl<R> Pending<R> {
    fn entries(&self) -> MutexGuard<'_, HashMap<CorrelationId, Entry<R>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes the pending entry when the request future finishes or is dropped.
struct PendingGuard<'a, R> {
    pending: &'a Pending<R>,
    id: CorrelationId,
}

impl<R> PendingGuard<'_, R> {
    fn take(&self) -> Option<Entry<R>> {
        self.pending.entries().remove(&self.id)
    }
}

impl<R> Drop for PendingGuard<'_, R> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// A request as seen by responders: a correlation id, a shared payload and a way to answer.
///
/// Cloning is cheap (the bus clones it for every subscriber).
pub struct Request<Q, R> {
    id: CorrelationId,
    payload: Arc<Q>,
    pending: Weak<Pending<R>>,
}

impl<Q, R> Clone for Request<Q, R> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            payload: Arc::clone(&self.payload),
            pending: Weak::clone(&self.pending),
        }
    }
}

impl<Q: fmt::Debug, R> fmt::Debug for Request<Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl<Q, R> Request<Q, R> {
    /// The correlation id.
    #[must_use]
    pub fn id(&self) -> CorrelationId {
        self.id
    }

    /// The request payload.
    #[must_use]
    pub fn payload(&self) -> &Q {
        &self.payload
    }

    /// Whether the caller still waits for responses.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.pending
            .upgrade()
            .is_some_and(|pending| pending.entries().contains_key(&self.id))
    }

    /// Answers the request. Each call counts as one response.
    ///
    /// # Errors
    ///
    /// [`BusError::NotPending`] if the caller is gone (completed, timed out or cancelled),
    /// [`BusError::AlreadyComplete`] if the caller already has every expected response.
    pub fn respond(&self, response: R) -> Result<(), BusError> {
        let pending = self
            .pending
            .upgrade()
            .ok_or(BusError::NotPending(self.id))?;
        let mut entries = pending.entries();
        let entry = entries
            .get_mut(&self.id)
            .ok_or(BusError::NotPending(self.id))?;
        if entry.responses.len() >= entry.expected {
            return Err(BusError::AlreadyComplete(self.id));
        }
        entry.responses.push(response);
        if entry.responses.len() == entry.expected
            && let Some(done) = entry.done.take()
        {
            // The receiver only disappears together with the entry, which we hold.
            let _ = done.send(());
        }
        Ok(())
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherOutcome {
    /// Every expected response arrived.
    Complete,
    /// The timeout expired first; the responses hold what did arrive.
    TimedOut,
}

/// The result of [`RequestBus::request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered<R> {
    /// The request's correlation id.
    pub id: CorrelationId,
    /// How many responses the caller asked for.
    pub expected: usize,
    /// The responses, in arrival order.
    pub responses: Vec<R>,
    /// Whether the request completed or timed out.
    pub outcome: GatherOutcome,
}

impl<R> Gathered<R> {
    /// Whether every expected response arrived.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.outcome == GatherOutcome::Complete
    }

    /// How many expected responses are missing.
    #[must_use]
    pub fn missing(&self) -> usize {
        self.expected.saturating_sub(self.responses.len())
    }
}

/// A bus of [`Request<Q, R>`] with scatter-gather [`RequestBus::request`]. Cheap to clone.
pub struct RequestBus<Q, R> {
    bus: Bus<Request<Q, R>>,
    pending: Arc<Pending<R>>,
}

impl<Q, R> Clone for RequestBus<Q, R> {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
            pending: Arc::clone(&self.pending),
        }
    }
}

impl<Q, R> fmt::Debug for RequestBus<Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBus")
            .field("bus", &self.bus)
            .field("pending", &self.pending.entries().len())
            .finish()
    }
}

impl<Q: Send + Sync + 'static, R: Send + 'static> Default for RequestBus<Q, R> {
    fn default() -> Self {
        Self::new(super::DEFAULT_PRESTART_CAPACITY)
    }
}

impl<Q: Send + Sync + 'static, R: Send + 'static> RequestBus<Q, R> {
    /// Creates a request bus; see [`Bus::new`] for `prestart_capacity`.
    #[must_use]
    pub fn new(prestart_capacity: usize) -> Self {
        Self {
            bus: Bus::new(prestart_capacity),
            pending: Arc::new(Pending {
                next_id: AtomicU64::new(1),
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Subscribes a responder; see [`Bus::subscribe`].
    #[must_use]
    pub fn subscribe(&self, buffer: usize) -> Subscription<Request<Q, R>> {
        self.bus.subscribe(buffer)
    }

    /// Starts the underlying bus; see [`Bus::start`].
    pub fn start(&self) -> usize {
        self.bus.start()
    }

    /// The underlying bus.
    #[must_use]
    pub fn bus(&self) -> &Bus<Request<Q, R>> {
        &self.bus
    }

    /// Counters of the underlying bus.
    #[must_use]
    pub fn stats(&self) -> BusStats {
        self.bus.stats()
    }

    /// Number of requests currently waiting for responses.
    #[must_use]
    pub fn pending_requests(&self) -> usize {
        self.pending.entries().len()
    }

    /// Sends `payload` to every subscriber and gathers responses until `expected` arrived or
    /// `timeout` expired, whichever comes first.
    ///
    /// `expected == 0` returns at once without publishing. Dropping the returned future cancels the
    /// request and removes its pending entry. A request published before [`RequestBus::start`] waits
    /// in the pre-start buffer; its timeout runs from now.
    pub async fn request(&self, payload: Q, expected: usize, timeout: Duration) -> Gathered<R> {
        let id = CorrelationId(self.pending.next_id.fetch_add(1, Ordering::Relaxed));
        if expected == 0 {
            return Gathered {
                id,
                expected,
                responses: Vec::new(),
                outcome: GatherOutcome::Complete,
            };
        }
        let (done_tx, done_rx) = oneshot::channel();
        self.pending.entries().insert(
            id,
            Entry {
                expected,
                responses: Vec::with_capacity(expected.min(PREALLOCATED_RESPONSES)),
                done: Some(done_tx),
            },
        );
        let guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        self.bus.publish(Request {
            id,
            payload: Arc::new(payload),
            pending: Arc::downgrade(&self.pending),
        });
        match Instant::now().checked_add(timeout) {
            Some(deadline) => {
                // Either outcome is re-checked against the collected responses below.
                let _ = tokio::time::timeout_at(deadline, done_rx).await;
            }
            None => {
                let _ = done_rx.await;
            }
        }
        let responses = guard
            .take()
            .map(|entry| entry.responses)
            .unwrap_or_default();
        let outcome = if responses.len() >= expected {
            GatherOutcome::Complete
        } else {
            GatherOutcome::TimedOut
        };
        Gathered {
            id,
            expected,
            responses,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spawns a responder answering `answer(payload)` to every request it receives.
    fn spawn_responder<Q, R>(
        bus: &RequestBus<Q, R>,
        answer: impl Fn(&Q) -> R + Send + 'static,
    ) -> tokio::task::JoinHandle<()>
    where
        Q: Send + Sync + 'static,
        R: Send + 'static,
    {
        let mut sub = bus.subscribe(16);
        tokio::spawn(async move {
            while let Some(req) = sub.recv().await {
                let _ = req.respond(answer(req.payload()));
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn request_response_correlation() {
        let bus: RequestBus<u32, (usize, u32)> = RequestBus::new(16);
        for responder in 0..3 {
            spawn_responder(&bus, move |q| (responder, q * 10));
        }
        bus.start();
        let (a, b) = tokio::join!(
            bus.request(1, 3, Duration::from_secs(5)),
            bus.request(2, 3, Duration::from_secs(5)),
        );
        assert_ne!(a.id, b.id);
        for (gathered, q) in [(a, 1), (b, 2)] {
            assert!(gathered.is_complete());
            assert_eq!(gathered.missing(), 0);
            assert_eq!(gathered.responses.len(), 3);
            assert!(gathered.responses.iter().all(|(_, r)| *r == q * 10));
            let mut responders: Vec<_> = gathered.responses.iter().map(|(who, _)| *who).collect();
            responders.sort_unstable();
            assert_eq!(responders, vec![0, 1, 2]);
        }
        assert_eq!(bus.pending_requests(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_with_no_responders() {
        let bus: RequestBus<&'static str, u32> = RequestBus::new(16);
        bus.start();
        let started = Instant::now();
        let gathered = bus.request("anyone?", 2, Duration::from_millis(500)).await;
        assert_eq!(gathered.outcome, GatherOutcome::TimedOut);
        assert!(gathered.responses.is_empty());
        assert_eq!(gathered.missing(), 2);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert_eq!(bus.pending_requests(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_returns_partial_responses() {
        let bus: RequestBus<u32, u32> = RequestBus::new(16);
        spawn_responder(&bus, |q| q + 1);
        let _silent = bus.subscribe(16); // receives, never answers
        bus.start();
        let gathered = bus.request(1, 2, Duration::from_secs(1)).await;
        assert_eq!(gathered.outcome, GatherOutcome::TimedOut);
        assert_eq!(gathered.responses, vec![2]);
        assert_eq!(gathered.missing(), 1);
    }

    /// Seed scenario 7: cancelling a request (dropping its future) cleans up the pending entry and
    /// late responses are refused.
    #[tokio::test(start_paused = true)]
    async fn cancellation_cleans_up_pending_entry() {
        let bus: RequestBus<u32, u32> = RequestBus::new(16);
        let mut responder = bus.subscribe(16);
        bus.start();
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let caller = {
            let bus = bus.clone();
            tokio::spawn(async move {
                tokio::select! {
                    gathered = bus.request(7, 1, Duration::from_secs(60)) => Some(gathered),
                    _ = cancel_rx => None,
                }
            })
        };
        let req = responder.recv().await.expect("request delivered");
        assert!(req.is_pending());
        assert_eq!(bus.pending_requests(), 1);
        cancel_tx.send(()).expect("caller alive");
        assert_eq!(caller.await.expect("caller task"), None);
        assert_eq!(bus.pending_requests(), 0, "no pending entry remains");
        assert!(!req.is_pending());
        assert_eq!(req.respond(70), Err(BusError::NotPending(req.id())));

        // Aborting the task that owns the future cleans up as well.
        let caller = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.request(8, 1, Duration::from_secs(60)).await })
        };
        let req = responder.recv().await.expect("request delivered");
        assert_eq!(bus.pending_requests(), 1);
        caller.abort();
        assert!(caller.await.is_err());
        assert_eq!(bus.pending_requests(), 0);
        assert_eq!(req.respond(80), Err(BusError::NotPending(req.id())));
    }

    #[tokio::test(start_paused = true)]
    async fn extra_and_late_responses_are_refused() {
        let bus: RequestBus<u32, u32> = RequestBus::new(16);
        let mut responder = bus.subscribe(16);
        bus.start();
        let caller = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.request(1, 1, Duration::from_secs(1)).await })
        };
        let req = responder.recv().await.expect("request delivered");
        assert_eq!(req.respond(1), Ok(()));
        assert_eq!(req.respond(2), Err(BusError::AlreadyComplete(req.id())));
        let gathered = caller.await.expect("caller task");
        assert!(gathered.is_complete());
        assert_eq!(gathered.responses, vec![1]);
        assert_eq!(req.respond(3), Err(BusError::NotPending(req.id())));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_expected_and_huge_timeout_do_not_panic() {
        let bus: RequestBus<u32, u32> = RequestBus::new(16);
        let mut responder = bus.subscribe(16);
        bus.start();
        let gathered = bus.request(1, 0, Duration::from_secs(1)).await;
        assert!(gathered.is_complete());
        assert_eq!(responder.try_recv().err(), Some(BusError::Empty));

        let caller = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.request(2, usize::MAX, Duration::MAX).await })
        };
        let req = responder.recv().await.expect("request delivered");
        req.respond(1).expect("pending");
        caller.abort();
        assert!(caller.await.is_err());
        assert_eq!(bus.pending_requests(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn request_before_start_waits_for_replay() {
        let bus: RequestBus<u32, u32> = RequestBus::new(16);
        spawn_responder(&bus, |q| q * 2);
        let caller = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.request(21, 1, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(bus.pending_requests(), 1);
        bus.start();
        let gathered = caller.await.expect("caller task");
        assert!(gathered.is_complete());
        assert_eq!(gathered.responses, vec![42]);
    }

    /// A responder whose handler issues its own request (on another topic and on its own topic)
    /// does not deadlock the bus.
    #[tokio::test(start_paused = true)]
    async fn nested_request_from_a_responder_does_not_deadlock() {
        let outer: RequestBus<u32, u32> = RequestBus::new(16);
        let inner: RequestBus<u32, u32> = RequestBus::new(16);
        spawn_responder(&inner, |q| q + 100);
        // This responder answers outer requests by asking the inner topic, and its own topic too.
        let mut sub = outer.subscribe(16);
        let (outer2, inner2) = (outer.clone(), inner.clone());
        tokio::spawn(async move {
            while let Some(req) = sub.recv().await {
                if *req.payload() == 0 {
                    // A nested request to its own topic: answered by the other responder, while
                    // this one (busy right here) cannot answer, so it times out with one response.
                    let nested = outer2.request(1, 2, Duration::from_secs(1)).await;
                    assert_eq!(nested.outcome, GatherOutcome::TimedOut);
                    assert_eq!(nested.responses, vec![1]);
                    let _ = req.respond(nested.responses.len() as u32);
                } else {
                    let nested = inner2
                        .request(*req.payload(), 1, Duration::from_secs(1))
                        .await;
                    assert!(nested.is_complete());
                    let _ = req.respond(nested.responses[0]);
                }
            }
        });
        spawn_responder(&outer, |q| *q);
        outer.start();
        inner.start();

        let gathered = outer.request(5, 2, Duration::from_secs(5)).await;
        assert!(gathered.is_complete());
        let mut responses = gathered.responses;
        responses.sort_unstable();
        assert_eq!(responses, vec![5, 105]);

        let gathered = outer.request(0, 2, Duration::from_secs(5)).await;
        assert!(gathered.is_complete());
        let mut responses = gathered.responses;
        responses.sort_unstable();
        assert_eq!(responses, vec![0, 1]);
        assert_eq!(outer.pending_requests(), 0);
        assert_eq!(inner.pending_requests(), 0);
    }

    /// A million requests that complete, time out or are cancelled leave no pending entry behind.
    #[tokio::test(start_paused = true)]
    async fn pending_table_stays_empty_over_many_requests() {
        let bus: RequestBus<u64, u64> = RequestBus::new(16);
        let mut responder = bus.subscribe(4);
        bus.start();
        for i in 0..1_000_000u64 {
            match i % 3 {
                0 => {
                    // Completes: answer from the same task once the request is published.
                    let fut = bus.request(i, 1, Duration::from_secs(1));
                    let answer = async {
                        let req = responder.recv().await.expect("request");
                        req.respond(i).expect("pending");
                    };
                    let (gathered, ()) = tokio::join!(fut, answer);
                    assert!(gathered.is_complete());
                }
                1 => {
                    // Cancelled after publishing.
                    let mut fut = Box::pin(bus.request(i, 1, Duration::from_secs(1)));
                    assert!(futures_poll_once(fut.as_mut()).await.is_none());
                    drop(fut);
                    let req = responder.try_recv().expect("published");
                    assert_eq!(req.respond(i), Err(BusError::NotPending(req.id())));
                }
                _ => {
                    // Times out (nobody answers).
                    let gathered = bus.request(i, 1, Duration::from_millis(1)).await;
                    assert!(!gathered.is_complete());
                    drop(responder.try_recv());
                }
            }
            assert_eq!(bus.pending_requests(), 0);
        }
        assert!(responder.is_empty());
    }

    /// Polls a future once, returning its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
        let mut fut = fut;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
