//! The reconcile queue: deduplicated by key, one reconcile of a key at a time, per-key backoff,
//! one pending timer per key (the earliest wins), and a per-key rate: after a burst, a key is
//! worked on at most once per interval, whatever queues it (requeues, watch events, failures).

use crate::dispatch::RetryPolicy;
use crate::rate::TokenBucket;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

struct State<K> {
    queued: VecDeque<K>,
    pending: HashSet<K>,
    active: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
    /// The pending timer of each key: when it fires.
    timers: HashMap<K, Instant>,
    rate: KeyRate,
    /// The rate budget of each key recently queued (full buckets are pruned).
    buckets: HashMap<K, TokenBucket>,
    /// How many buckets were left after the last pruning.
    pruned_to: usize,
    closed: bool,
}

/// How often one key may be worked on: `burst` times at once, then once per `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRate {
    /// Times a key may be queued back to back. Default 10.
    pub burst: u32,
    /// Then once per this interval. Default 1 s.
    pub every: Duration,
}

impl Default for KeyRate {
    fn default() -> Self {
        Self {
            burst: 10,
            every: Duration::from_secs(1),
        }
    }
}

/// Buckets kept before full ones are pruned.
const PRUNE_AT: usize = 1024;

impl<K: Clone + Eq + Hash> State<K> {
    /// Spend one of `key`'s tokens, or tell how long until it has one.
    fn take_token(&mut self, key: &K) -> Result<(), Duration> {
        let rate = self.rate;
        let taken = self
            .buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::one_per(u64::from(rate.burst), rate.every))
            .take_or_wait();
        if self.buckets.len() > PRUNE_AT.max(2 * self.pruned_to) {
            self.buckets.retain(|_, b| !b.is_full());
            self.pruned_to = self.buckets.len();
        }
        taken
    }
}

/// What [`WorkQueue::add`] decided.
enum Added {
    Nothing,
    Queued,
    Later(Duration),
}

/// A work queue of keys. Cheap to clone.
///
/// A key added while queued is not queued twice; a key added while being worked on is queued again
/// when the work is done, so no change is lost and no key is worked on twice at once.
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    policy: RetryPolicy,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            notify: self.notify.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue whose backoff follows `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                queued: VecDeque::new(),
                pending: HashSet::new(),
                active: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                timers: HashMap::new(),
                rate: KeyRate::default(),
                buckets: HashMap::new(),
                pruned_to: 0,
                closed: false,
            })),
            notify: Arc::new(Notify::new()),
            policy,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<K>) -> R) -> R {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// This queue with `rate` as the per-key rate.
    #[must_use]
    pub fn with_key_rate(self, rate: KeyRate) -> Self {
        self.set_key_rate(rate);
        self
    }

    /// Change the per-key rate (the budgets spent so far are forgotten).
    pub fn set_key_rate(&self, rate: KeyRate) {
        self.with(|s| {
            if s.rate != rate {
                s.rate = rate;
                s.buckets.clear();
                s.pruned_to = 0;
            }
        });
    }

    /// Queue a key now, or, when it was queued too often lately, as soon as its rate allows.
    pub fn add(&self, key: K) {
        let added = self.with(|s| {
            if s.closed || s.pending.contains(&key) {
                return Added::Nothing;
            }
            if s.active.contains(&key) {
                s.dirty.insert(key.clone());
                return Added::Nothing;
            }
            match s.take_token(&key) {
                Ok(()) => {
                    s.pending.insert(key.clone());
                    s.queued.push_back(key.clone());
                    Added::Queued
                }
                Err(wait) => Added::Later(wait),
            }
        });
        match added {
            Added::Nothing => {}
            Added::Queued => self.notify.notify_one(),
            Added::Later(wait) => self.add_after(key, wait),
        }
    }

    /// Queue a key after `delay` (requeue-after, phase deadlines, backoff).
    ///
    /// A key has at most one pending timer: an earlier request replaces a later one, a later
    /// request is dropped while an earlier one is pending. Every reconcile asks again for what it
    /// still needs, so nothing is lost, and timers do not pile up on busy keys.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        // A delay too long to represent is never due.
        let Some(at) = Instant::now().checked_add(delay) else {
            return;
        };
        let schedule = self.with(|s| {
            if s.closed || s.timers.get(&key).is_some_and(|t| *t <= at) {
                return false;
            }
            s.timers.insert(key.clone(), at);
            true
        });
        if !schedule {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let current = this.with(|s| {
                let mine = s.timers.get(&key) == Some(&at);
                if mine {
                    s.timers.remove(&key);
                }
                mine
            });
            if current {
                this.add(key);
            }
        });
    }

    /// Queue now every key waiting out a failure backoff (the cause of the failures is gone: the
    /// API server is back after an outage). Requeue-after timers of keys that did not fail stay.
    /// Returns how many keys were queued.
    pub fn retry_failed_now(&self) -> usize {
        let due: Vec<K> = self.with(|s| {
            let due: Vec<K> = s
                .timers
                .keys()
                .filter(|k| s.failures.get(*k).is_some_and(|n| *n > 0))
                .cloned()
                .collect();
            // Their timer tasks find the timer gone and do nothing.
            for k in &due {
                s.timers.remove(k);
            }
            due
        });
        let n = due.len();
        for key in due {
            self.add(key);
        }
        n
    }

    /// How long until the pending timer of `key` fires, if one is pending.
    pub fn scheduled_in(&self, key: &K) -> Option<Duration> {
        self.with(|s| s.timers.get(key).copied())
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Queue a key after its next backoff delay; returns the delay.
    pub fn add_with_backoff(&self, key: K) -> Duration {
        let attempt = self.with(|s| {
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        });
        let delay = self.policy.backoff(attempt);
        self.add_after(key, delay);
        delay
    }

    /// Forget a key's failures (after a success).
    pub fn forget(&self, key: &K) {
        self.with(|s| s.failures.remove(key));
    }

    /// Failures recorded for a key since its last success.
    pub fn failures(&self, key: &K) -> u32 {
        self.with(|s| s.failures.get(key).copied().unwrap_or(0))
    }

    /// The next key to work on; `None` once the queue is closed and drained.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            let got = self.with(|s| match s.queued.pop_front() {
                Some(k) => {
                    s.pending.remove(&k);
                    s.active.insert(k.clone());
                    Some(Some(k))
                }
                None if s.closed => Some(None),
                None => None,
            });
            if let Some(result) = got {
                if !self.with(|s| s.queued.is_empty()) {
                    self.notify.notify_one();
                }
                return result;
            }
            notified.await;
        }
    }

    /// Mark work on a key finished; a key added meanwhile is queued again.
    pub fn done(&self, key: &K) {
        let again = self.with(|s| {
            s.active.remove(key);
            s.dirty.remove(key)
        });
        if again {
            self.add(key.clone());
        }
    }

    /// Keys queued (not being worked on).
    pub fn len(&self) -> usize {
        self.with(|s| s.queued.len())
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop taking keys; workers end once the queue is drained.
    pub fn close(&self) {
        self.with(|s| s.closed = true);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        })
    }

    #[tokio::test]
    async fn keys_are_deduplicated() {
        let q = queue();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_is_never_worked_on_twice_at_once() {
        let q = queue();
        q.add("a");
        let a = q.next().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "re-added while active: held back");
        q.done(&a);
        assert_eq!(q.len(), 1, "queued again once done");
        assert_eq!(q.next().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_per_key_and_resets_on_forget() {
        let q = queue();
        assert_eq!(q.add_with_backoff("a"), Duration::from_millis(200));
        assert_eq!(q.add_with_backoff("a"), Duration::from_millis(400));
        assert_eq!(q.failures(&"a"), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(q.next().await, Some("a"));
        q.forget(&"a");
        assert_eq!(q.add_with_backoff("a"), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_keys_are_retried_at_once_when_asked_and_requeues_keep_their_time() {
        let q = queue();
        // Seven failed attempts: the eighth waits 200 ms * 2^7 = 25.6 s.
        for _ in 0..7 {
            let wait = q.add_with_backoff("failed");
            tokio::time::sleep(wait).await;
            assert_eq!(q.next().await, Some("failed"));
            q.done(&"failed");
        }
        q.add_with_backoff("failed");
        assert!(q.scheduled_in(&"failed").unwrap() > Duration::from_secs(10));
        q.add_after("requeued", Duration::from_secs(30));
        assert_eq!(q.retry_failed_now(), 1);
        assert_eq!(q.next().await, Some("failed"));
        assert_eq!(q.scheduled_in(&"failed"), None);
        assert!(q.is_empty());
        assert!(q.scheduled_in(&"requeued").is_some());
        // The old timer of the retried key does not queue it a second time.
        q.done(&"failed");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(q.next().await, Some("requeued"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_waits() {
        let q = queue();
        q.add_after("later", Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.next().await, Some("later"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_timer_of_a_key_wins() {
        let q = queue();
        q.add_after("k", Duration::from_secs(30));
        q.add_after("k", Duration::from_secs(60));
        assert_eq!(q.scheduled_in(&"k"), Some(Duration::from_secs(30)));
        q.add_after("k", Duration::from_secs(5));
        assert_eq!(q.scheduled_in(&"k"), Some(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(q.next().await, Some("k"));
        q.done(&"k");
        assert_eq!(q.scheduled_in(&"k"), None, "the replaced timer is gone");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(q.is_empty(), "the replaced 30 s timer does not fire");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_delay_queues_now() {
        let q = queue();
        q.add_after("now", Duration::ZERO);
        assert_eq!(q.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_key_is_held_to_its_rate_after_the_burst() {
        let q = queue().with_key_rate(KeyRate {
            burst: 5,
            every: Duration::from_secs(1),
        });
        let started = Instant::now();
        let mut times = Vec::new();
        // A key that queues itself again at once every time it is worked on (a requeue of 0, or
        // a watch event caused by its own reconcile).
        q.add("hot");
        while started.elapsed() < Duration::from_secs(20) {
            let k = q.next().await.unwrap();
            times.push(started.elapsed());
            q.add(k);
            q.done(&k);
        }
        assert!(
            times.iter().take(5).all(|t| *t < Duration::from_millis(1)),
            "the burst goes at once: {times:?}"
        );
        let after_burst = times.len() - 5;
        assert!(
            (19..=21).contains(&after_burst),
            "then one a second: {after_burst} in 20 s"
        );
        for w in times[5..].windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(990), "{w:?}");
        }
        // Another key has its own budget.
        q.add("cold");
        assert_eq!(q.next().await, Some("cold"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_key_is_not_lost_and_budgets_refill() {
        let q = queue().with_key_rate(KeyRate {
            burst: 1,
            every: Duration::from_secs(2),
        });
        q.add("k");
        assert_eq!(q.next().await, Some("k"));
        q.done(&"k");
        q.add("k");
        assert!(q.is_empty(), "over its rate: waits");
        assert!(q.scheduled_in(&"k").is_some());
        assert_eq!(q.next().await, Some("k"), "queued once the budget allows");
        q.done(&"k");
        tokio::time::advance(Duration::from_secs(2)).await;
        q.add("k");
        assert_eq!(q.len(), 1, "a refilled budget queues at once");
    }

    #[tokio::test]
    async fn close_ends_workers_after_draining() {
        let q = queue();
        q.add("a");
        q.close();
        q.add("b");
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_workers_see_each_key_once() {
        let q: WorkQueue<u32> = WorkQueue::new(RetryPolicy::default());
        for i in 0..1000 {
            q.add(i);
        }
        q.close();
        let mut workers = Vec::new();
        for _ in 0..4 {
            let q = q.clone();
            workers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(k) = q.next().await {
                    seen.push(k);
                    q.done(&k);
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }
}
