//! Domain-agnostic in-process event bus: non-blocking pub/sub with counted drops.
//!
//! # Model
//!
//! * [`Bus::subscribe`] creates a [`Subscription`] with its own bounded buffer. Dropping the
//!   subscription unsubscribes it (and drops what it had buffered).
//! * [`Bus::publish`] never blocks and never awaits. The event is offered to every subscriber; a
//!   subscriber whose buffer is full misses it, and the miss is counted for that subscriber
//!   ([`Subscription::dropped`], [`Bus::stats`]). Dropped events are not replayed: consumers are
//!   expected to be level-triggered (re-list or re-sync after a gap).
//! * An event published while there is no subscriber is dropped (there is nobody to count it for).
//!
//! # Cost
//!
//! Publishing snapshots the subscriber list (an `Arc<[..]>` cloned under a mutex that is released
//! before any delivery), then pushes the event (cloned, except for the last subscriber, which gets
//! the original) into each subscriber's bounded queue: O(subscribers). Each push takes only that
//! subscriber's queue lock, for the duration of a ring-buffer push; no lock is held across anything
//! that can wait, and no user code (an event's `Drop`, a waker) runs under a lock.
//!
//! # Logging
//!
//! Drops are logged with `tracing::warn!` when the per-subscriber drop count reaches a
//! power of two (1, 2, 4, 8, ...): the first drop is always visible and a persistently slow subscriber
//! produces a logarithmic, not linear, number of log lines. Exact counts are always in [`Bus::stats`].

mod queue;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use queue::{Offer, Queue};

/// Largest subscriber buffer; larger requests are clamped.
pub const MAX_SUBSCRIBER_BUFFER: usize = 1 << 30;

/// Errors of the event bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// [`Subscription::try_recv`] found no buffered event.
    #[error("subscription buffer is empty")]
    Empty,
    /// The bus has been dropped and the subscription buffer is drained.
    #[error("event bus is closed")]
    Closed,
}

/// Identifier of a subscription, unique within its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    /// The raw numeric id.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

type Snapshot<E> = Arc<[Arc<Queue<E>>]>;

struct Shared<E> {
    subscribers: Mutex<Snapshot<E>>,
    next_id: AtomicU64,
    retired_delivered: AtomicU64,
    retired_dropped: AtomicU64,
}

impl<E> Shared<E> {
    #[inline]
    fn subscribers(&self) -> MutexGuard<'_, Snapshot<E>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn snapshot(&self) -> Snapshot<E> {
        Arc::clone(&self.subscribers())
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        let old = {
            let mut list = self.subscribers();
            let Some(queue) = list.iter().find(|queue| queue.id == id) else {
                return;
            };
            let counters = queue.counters();
            self.retired_delivered
                .fetch_add(counters.delivered, Ordering::Relaxed);
            self.retired_dropped
                .fetch_add(counters.dropped, Ordering::Relaxed);
            let new: Snapshot<E> = list.iter().filter(|q| q.id != id).cloned().collect();
            std::mem::replace(&mut *list, new)
        };
        drop(old);
    }
}

impl<E> Drop for Shared<E> {
    fn drop(&mut self) {
        let list = self
            .subscribers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for queue in list.iter() {
            queue.disconnect();
        }
    }
}

/// Offers `event` to one queue; a refused event is returned for the caller to drop.
#[inline]
fn offer<E>(queue: &Queue<E>, event: E) -> Option<E> {
    match queue.offer(event) {
        Offer::Delivered => None,
        Offer::Full(event, dropped) => {
            if dropped.is_power_of_two() {
                tracing::warn!(
                    subscriber = %queue.id,
                    capacity = queue.capacity,
                    dropped,
                    "event bus subscriber buffer full, dropping event"
                );
            }
            Some(event)
        }
        // The subscription is being dropped concurrently; it no longer wants events.
        Offer::Closed(event) => Some(event),
    }
}

/// Offers `event` to every queue: clones for all but the last, which receives the original.
/// Refused events are passed to `refused` (dropping them may run user code).
#[inline]
fn fan_out<E: Clone>(queues: &[Arc<Queue<E>>], event: E, mut refused: impl FnMut(E)) {
    if let Some((last, rest)) = queues.split_last() {
        for queue in rest {
            if let Some(event) = offer(queue, event.clone()) {
                refused(event);
            }
        }
        if let Some(event) = offer(last, event) {
            refused(event);
        }
    } else {
        refused(event);
    }
}

/// A cheap-to-clone handle to an event bus carrying events of type `E`.
///
/// All clones share the same subscribers and state. When every `Bus` handle is dropped, the
/// subscriptions drain what they buffered and then [`Subscription::recv`] returns `None`.
pub struct Bus<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Clone for Bus<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: Clone + Send + 'static> Default for Bus<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> fmt::Debug for Bus<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.shared.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl<E: Clone + Send + 'static> Bus<E> {
    /// Creates a bus with no subscriber.
    #[must_use]
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                subscribers: Mutex::new(Arc::from(Vec::new())),
                next_id: AtomicU64::new(1),
                retired_delivered: AtomicU64::new(0),
                retired_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Subscribes with a buffer of `buffer` events (clamped to `1..=MAX_SUBSCRIBER_BUFFER`).
    ///
    /// The subscription receives every event published after this call returns that fits in its
    /// buffer.
    #[must_use]
    pub fn subscribe(&self, buffer: usize) -> Subscription<E> {
        let capacity = buffer.clamp(1, MAX_SUBSCRIBER_BUFFER);
        let id = SubscriptionId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let queue = Arc::new(Queue::new(id, capacity));
        let old = {
            let mut list = self.shared.subscribers();
            let new: Snapshot<E> = list
                .iter()
                .cloned()
                .chain(Some(Arc::clone(&queue)))
                .collect();
            std::mem::replace(&mut *list, new)
        };
        drop(old);
        Subscription {
            queue,
            bus: Arc::downgrade(&self.shared),
        }
    }

    /// Publishes `event` to every current subscriber; never blocks and never awaits.
    #[inline]
    pub fn publish(&self, event: E) {
        fan_out(&self.shared.snapshot(), event, drop);
    }

    /// Number of current subscribers.
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        self.shared.snapshot().len()
    }

    /// A snapshot of the bus counters, for metrics and logs.
    #[must_use]
    pub fn stats(&self) -> BusStats {
        // Hold the list lock so that no subscriber moves to the retired totals meanwhile.
        let list = self.shared.subscribers();
        let subscribers: Vec<SubscriberStats> = list
            .iter()
            .map(|queue| {
                let counters = queue.counters();
                SubscriberStats {
                    id: queue.id,
                    capacity: queue.capacity,
                    buffered: counters.buffered,
                    delivered: counters.delivered,
                    dropped: counters.dropped,
                }
            })
            .collect();
        let delivered_total = self.shared.retired_delivered.load(Ordering::Relaxed)
            + subscribers.iter().map(|s| s.delivered).sum::<u64>();
        let dropped_total = self.shared.retired_dropped.load(Ordering::Relaxed)
            + subscribers.iter().map(|s| s.dropped).sum::<u64>();
        drop(list);
        BusStats {
            subscribers,
            delivered_total,
            dropped_total,
        }
    }
}

/// Counters of one subscriber, as reported by [`Bus::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStats {
    /// The subscription.
    pub id: SubscriptionId,
    /// Its buffer size.
    pub capacity: usize,
    /// Events currently waiting in its buffer.
    pub buffered: usize,
    /// Events accepted into its buffer since it subscribed.
    pub delivered: u64,
    /// Events it missed because its buffer was full.
    pub dropped: u64,
}

/// Counters of a bus, as reported by [`Bus::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusStats {
    /// Per current subscriber counters.
    pub subscribers: Vec<SubscriberStats>,
    /// Events delivered, over every subscriber that ever existed.
    pub delivered_total: u64,
    /// Events dropped for full buffers, over every subscriber that ever existed.
    pub dropped_total: u64,
}

/// The receiving end of a subscription; dropping it unsubscribes.
pub struct Subscription<E> {
    queue: Arc<Queue<E>>,
    bus: Weak<Shared<E>>,
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counters = self.queue.counters();
        f.debug_struct("Subscription")
            .field("id", &self.queue.id)
            .field("capacity", &self.queue.capacity)
            .field("buffered", &counters.buffered)
            .field("dropped", &counters.dropped)
            .finish_non_exhaustive()
    }
}

impl<E> Subscription<E> {
    /// This subscription's id.
    #[must_use]
    pub fn id(&self) -> SubscriptionId {
        self.queue.id
    }

    /// Waits for the next event; `None` once the bus is dropped and the buffer is drained.
    ///
    /// Cancel safe: dropping the future loses no event.
    pub async fn recv(&mut self) -> Option<E> {
        std::future::poll_fn(|cx| self.queue.poll_recv(cx)).await
    }

    /// Takes the next buffered event without waiting.
    ///
    /// # Errors
    ///
    /// [`BusError::Empty`] when nothing is buffered, [`BusError::Closed`] when the bus is gone and
    /// the buffer is drained.
    pub fn try_recv(&mut self) -> Result<E, BusError> {
        self.queue.try_recv()
    }

    /// Events this subscription missed because its buffer was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.queue.counters().dropped
    }

    /// Events accepted into this subscription's buffer.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.queue.counters().delivered
    }

    /// Events currently buffered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.counters().buffered
    }

    /// Whether no event is buffered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer size.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        let buffered = self.queue.close_receiver();
        if let Some(shared) = self.bus.upgrade() {
            shared.unsubscribe(self.queue.id);
        }
        // Dropped only now, outside any lock: an event's `Drop` may publish again.
        drop(buffered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct TestEvent(String);

    #[tokio::test]
    async fn basic_pub_sub() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(10);
        bus.publish(TestEvent("hello".into()));
        assert_eq!(sub.recv().await, Some(TestEvent("hello".into())));
        assert_eq!(sub.try_recv(), Err(BusError::Empty));
        assert_eq!(sub.delivered(), 1);
        assert_eq!(sub.dropped(), 0);
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event() {
        let bus = Bus::new();
        let mut a = bus.subscribe(10);
        let mut b = bus.subscribe(10);
        assert_ne!(a.id(), b.id());
        for i in 0..5 {
            bus.publish(i);
        }
        for sub in [&mut a, &mut b] {
            for i in 0..5 {
                assert_eq!(sub.recv().await, Some(i));
            }
        }
    }

    #[tokio::test]
    async fn slow_subscriber_drops_are_counted_per_subscriber() {
        let bus = Bus::new();
        let mut slow = bus.subscribe(2);
        let mut fast = bus.subscribe(100);
        for i in 0..10 {
            bus.publish(i);
        }
        assert_eq!(slow.dropped(), 8);
        assert_eq!(slow.delivered(), 2);
        assert_eq!(fast.dropped(), 0);
        assert_eq!(fast.delivered(), 10);
        // The slow subscriber keeps the oldest events it had room for.
        assert_eq!(slow.try_recv(), Ok(0));
        assert_eq!(slow.try_recv(), Ok(1));
        assert_eq!(slow.try_recv(), Err(BusError::Empty));
        for i in 0..10 {
            assert_eq!(fast.try_recv(), Ok(i));
        }
        let stats = bus.stats();
        assert_eq!(stats.dropped_total, 8);
        assert_eq!(stats.delivered_total, 12);
        let slow_stats = stats
            .subscribers
            .iter()
            .find(|s| s.id == slow.id())
            .expect("slow subscriber listed");
        assert_eq!((slow_stats.delivered, slow_stats.dropped), (2, 8));
        // After draining, the slow subscriber receives again.
        bus.publish(10);
        assert_eq!(slow.try_recv(), Ok(10));
    }

    #[tokio::test]
    async fn zero_buffer_is_clamped_not_a_panic() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(0);
        assert_eq!(sub.capacity(), 1);
        bus.publish(1);
        bus.publish(2);
        assert_eq!(sub.try_recv(), Ok(1));
        assert_eq!(sub.dropped(), 1);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes_and_keeps_totals() {
        let bus = Bus::new();
        let sub = bus.subscribe(1);
        let keep = bus.subscribe(10);
        assert_eq!(bus.subscriber_count(), 2);
        bus.publish(1);
        bus.publish(2);
        drop(sub);
        assert_eq!(bus.subscriber_count(), 1);
        let stats = bus.stats();
        assert_eq!(stats.subscribers.len(), 1);
        assert_eq!(stats.subscribers[0].id, keep.id());
        assert_eq!(stats.subscribers[0].buffered, 2);
        assert_eq!(stats.delivered_total, 3);
        assert_eq!(stats.dropped_total, 1);
    }

    #[tokio::test]
    async fn dropping_the_bus_closes_subscriptions_after_drain() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(4);
        bus.publish(7);
        drop(bus);
        assert_eq!(sub.recv().await, Some(7));
        assert_eq!(sub.recv().await, None);
        assert_eq!(sub.try_recv(), Err(BusError::Closed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publish() {
        const TASKS: u64 = 8;
        const PER_TASK: u64 = 500;
        let bus = Bus::new();
        let mut sub = bus.subscribe((TASKS * PER_TASK) as usize);
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    for i in 0..PER_TASK {
                        bus.publish((t, i));
                        if i % 50 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("publisher task");
        }
        let mut next = vec![0u64; TASKS as usize];
        for _ in 0..TASKS * PER_TASK {
            let (t, i) = sub.try_recv().expect("every event buffered");
            assert_eq!(next[t as usize], i, "per-publisher order");
            next[t as usize] += 1;
        }
        assert_eq!(sub.dropped(), 0);
        assert_eq!(sub.try_recv(), Err(BusError::Empty));
    }

    /// Several publisher threads, several subscribers consuming concurrently: every event not
    /// counted as dropped arrives exactly once per subscriber, in publish order per publisher.
    #[test]
    fn concurrent_stress_exactly_once_in_order() {
        const PUBLISHERS: u64 = 4;
        const PER_PUBLISHER: u64 = 20_000;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let bus: Bus<(u64, u64)> = Bus::new();
        // Small buffers force drops; a large one should see (almost) everything.
        let subs: Vec<_> = [8usize, 64, 1024, 100_000]
            .into_iter()
            .map(|n| bus.subscribe(n))
            .collect();
        let consumers: Vec<_> = subs
            .into_iter()
            .map(|mut sub| {
                runtime.spawn(async move {
                    let mut seen: HashMap<u64, Vec<u64>> = HashMap::new();
                    while let Some((p, i)) = sub.recv().await {
                        seen.entry(p).or_default().push(i);
                    }
                    (seen, sub.delivered(), sub.dropped())
                })
            })
            .collect();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for i in 0..PER_PUBLISHER {
                        bus.publish((p, i));
                    }
                })
            })
            .collect();
        for publisher in publishers {
            publisher.join().expect("publisher thread");
        }
        drop(bus); // closes the subscriptions once drained
        let total = PUBLISHERS * PER_PUBLISHER;
        for consumer in consumers {
            let (seen, delivered, dropped) = runtime.block_on(consumer).expect("consumer task");
            let received: u64 = seen.values().map(|v| v.len() as u64).sum();
            assert_eq!(received, delivered, "every delivered event is received");
            assert_eq!(received + dropped, total, "nothing unaccounted for");
            for (p, seq) in &seen {
                assert!(
                    seq.windows(2).all(|w| w[0] < w[1]),
                    "publisher {p}: events out of order or duplicated"
                );
            }
        }
    }

    /// An event whose strong count tells how many copies of events are alive anywhere.
    type Tracked = Arc<()>;

    /// One million events through every path of the bus: nothing accumulates. Any event kept by a
    /// leak (buffer, snapshot, subscriber list) keeps a clone of `token` alive and fails the test.
    #[test]
    fn memory_does_not_grow_over_a_million_events() {
        const EVENTS: u64 = 1_000_000;
        let token = Arc::new(());
        let bus: Bus<Tracked> = Bus::new();
        // Nobody subscribed: the events are dropped at once.
        for _ in 0..EVENTS / 4 {
            bus.publish(Arc::clone(&token));
            assert_eq!(Arc::strong_count(&token), 1);
        }
        let mut idle = bus.subscribe(64); // never reads
        let mut reader = bus.subscribe(16); // reads every event
        while reader.try_recv().is_ok() {}
        let mut churned = 0u64;
        for i in 0..EVENTS {
            bus.publish(Arc::clone(&token));
            assert!(reader.try_recv().is_ok());
            if i % 1000 == 0 {
                // Subscribe/unsubscribe churn must not grow the subscriber list.
                let temp = bus.subscribe(8);
                bus.publish(Arc::clone(&token));
                assert!(reader.try_recv().is_ok());
                drop(temp);
                churned += 1;
            }
            // Live events: at most the idle buffer, plus our token.
            assert!(Arc::strong_count(&token) <= 64 + 1, "events leak");
        }
        let stats = bus.stats();
        assert_eq!(stats.subscribers.len(), 2);
        assert_eq!(idle.len(), 64);
        assert_eq!(idle.dropped(), EVENTS + churned - 64);
        assert!(churned > 0);
        while idle.try_recv().is_ok() {}
        assert_eq!(Arc::strong_count(&token), 1, "every event is freed");
        drop((idle, reader, bus));
        assert_eq!(Arc::strong_count(&token), 1);
    }

    #[tokio::test]
    async fn pending_recv_ends_when_the_bus_is_dropped() {
        let bus: Bus<u32> = Bus::new();
        let mut sub = bus.subscribe(1);
        let waiter = tokio::spawn(async move { sub.recv().await });
        tokio::task::yield_now().await;
        drop(bus);
        assert_eq!(waiter.await.expect("waiter task"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn recv_waits_for_a_publish() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(1);
        let publisher = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            publisher.publish(42);
        });
        assert_eq!(sub.recv().await, Some(42));
    }
}
