//! Event trees with acknowledgement: root events, child events and filters.
//!
//! # Lifecycle
//!
//! A receiver creates a **root event**, either fire-and-forget ([`Event::new`]) or with
//! acknowledgement callbacks ([`Event::with_ack`]). As it travels, an event can stay unchanged, get
//! a new payload ([`Event::set_payload`], [`Event::payload_mut`]), and produce **child events**
//! with [`Event::with_context`] (shared payload, copy-on-write, own context).
//! The root and all its descendants form an **event tree**.
//!
//! Every event of a tree must end with [`Event::ack`] (done) or [`Event::fail`] (failed). When every
//! event of the tree has ended, the root is **handled** and the `on_handled` callback runs, exactly
//! once. The first failure runs `on_error` instead, exactly once, and `on_handled` then never runs.
//!
//! # Counting
//!
//! The tree keeps one counter of live (un-ended) events. A child is counted when it is created, and
//! it can only be created from a live parent, which is itself counted: so the counter cannot reach
//! zero while any event of the tree can still produce children, and a tree never completes early,
//! whatever the interleaving of threads.
//!
//! # Dropping an un-acknowledged event
//!
//! Dropping an event that was neither acknowledged nor failed counts as a failure with
//! [`EventError::Dropped`]: nothing is silently lost, the receiver learns that the event was not
//! handled and can retry (the level-triggered principle). Fire-and-forget trees have no callbacks,
//! so dropping their events is harmless.
//!
//! # Callbacks
//!
//! Callbacks run synchronously on the thread that ends the tree (inside `ack`, `fail` or `drop`);
//! keep them short and non-blocking, e.g. send on a channel.
//!
//! # Cloning
//!
//! `Event` implements [`Clone`] so that it can travel on a [`crate::bus::Bus`]: a clone of a live
//! event is a counted child sharing payload and context (like [`Event::with_context`]), so every
//! copy a bus hands out must be acknowledged, and a copy the bus drops for a full buffer fails the
//! tree. A clone of an ended event is itself ended and inert.

pub mod filter;

pub use filter::{Filter, Verdict};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A boxed error from user code (a filter, a sender), as accepted by [`Event::fail`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error, cheap to clone and hand to both a callback and a caller.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of event trees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The event was already acknowledged or failed; it can no longer change or have children.
    #[error("event is already acknowledged")]
    Acknowledged,
    /// An event was dropped without being acknowledged or failed.
    #[error("event was dropped without being acknowledged")]
    Dropped,
    /// An event was failed explicitly.
    #[error("event failed: {0}")]
    Failed(#[source] SharedError),
    /// A filter returned an error for an event.
    #[error("filter rejected event: {0}")]
    Filter(#[source] SharedError),
}

/// Key of the trace id in a [`Context`].
pub const TRACE_ID: &str = "trace_id";
/// Key of the span id in a [`Context`].
pub const SPAN_ID: &str = "span_id";

/// Default event context: a small string map for tracing and logging (trace id, span id, route...).
///
/// Cloning is O(1) (the map is shared); [`Context::with`] copies it on write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    values: Arc<BTreeMap<String, String>>,
}

impl Context {
    /// An empty context.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the context with `key` set to `value`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.values).insert(key.into(), value.into());
        self
    }

    /// Returns the context with its trace id set.
    #[must_use]
    pub fn with_trace_id(self, trace_id: impl Into<String>) -> Self {
        self.with(TRACE_ID, trace_id)
    }

    /// Returns the context with its span id set.
    #[must_use]
    pub fn with_span_id(self, span_id: impl Into<String>) -> Self {
        self.with(SPAN_ID, span_id)
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The trace id, if any.
    #[must_use]
    pub fn trace_id(&self) -> Option<&str> {
        self.get(TRACE_ID)
    }

    /// The span id, if any.
    #[must_use]
    pub fn span_id(&self) -> Option<&str> {
        self.get(SPAN_ID)
    }

    /// All entries, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

const PENDING: u8 = 0;
const HANDLED: u8 = 1;
const FAILED: u8 = 2;

type HandledFn = Box<dyn FnOnce() + Send>;
type ErrorFn = Box<dyn FnOnce(EventError) + Send>;

/// Shared state of an acknowledged tree.
struct Tree {
    /// Events of the tree that are neither acknowledged nor failed.
    live: AtomicUsize,
    state: AtomicU8,
    callbacks: Mutex<Option<(HandledFn, ErrorFn)>>,
}

impl Tree {
    fn take_callbacks(&self) -> Option<(HandledFn, ErrorFn)> {
        self.callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// One event of the tree ended successfully.
    fn release(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1
            && self
                .state
                .compare_exchange(PENDING, HANDLED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && let Some((on_handled, _)) = self.take_callbacks()
        {
            on_handled();
        }
    }

    /// One event of the tree failed. The state flips before the count drops, so a concurrent last
    /// `release` cannot report the tree handled.
    fn fail(&self, error: EventError) {
        if self
            .state
            .compare_exchange(PENDING, FAILED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if let Some((_, on_error)) = self.take_callbacks() {
                on_error(error);
            }
        } else {
            tracing::debug!(%error, "event tree already failed; ignoring further failure");
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The state of an event's tree, as seen by [`Event::tree_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeState {
    /// Fire-and-forget tree: nobody is notified.
    Untracked,
    /// Some events of the tree are still live and nothing failed.
    Pending,
    /// Every event was acknowledged; `on_handled` ran.
    Handled,
    /// An event failed; `on_error` ran.
    Failed,
}

/// An event of an event tree: a payload `P` (shared, copy-on-write) and a context `C`.
///
/// See the [module documentation](self) for the lifecycle and acknowledgement rules.
pub struct Event<P, C = Context> {
    payload: Arc<P>,
    context: C,
    tree: Option<Arc<Tree>>,
    ended: bool,
}

impl<P: fmt::Debug, C: fmt::Debug> fmt::Debug for Event<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("payload", &self.payload)
            .field("context", &self.context)
            .field("acknowledged", &self.ended)
            .field("tree", &self.tree_state())
            .finish()
    }
}

impl<P, C> Event<P, C> {
    /// Creates a fire-and-forget root event: nobody is told when its tree is handled.
    #[must_use]
    pub fn new(payload: P, context: C) -> Self {
        Self {
            payload: Arc::new(payload),
            context,
            tree: None,
            ended: false,
        }
    }

    /// Creates a root event whose tree calls `on_handled` once every event of it is acknowledged,
    /// or `on_error` on the first failure (and then never `on_handled`).
    #[must_use]
    pub fn with_ack(
        payload: P,
        context: C,
        on_handled: impl FnOnce() + Send + 'static,
        on_error: impl FnOnce(EventError) + Send + 'static,
    ) -> Self {
        Self {
            payload: Arc::new(payload),
            context,
            tree: Some(Arc::new(Tree {
                live: AtomicUsize::new(1),
                state: AtomicU8::new(PENDING),
                callbacks: Mutex::new(Some((Box::new(on_handled), Box::new(on_error)))),
            })),
            ended: false,
        }
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// The context.
    #[must_use]
    pub fn context(&self) -> &C {
        &self.context
    }

    /// Whether the event was acknowledged or failed.
    #[must_use]
    pub fn is_acknowledged(&self) -> bool {
        self.ended
    }

    /// The state of the event's tree.
    #[must_use]
    pub fn tree_state(&self) -> TreeState {
        match &self.tree {
            None => TreeState::Untracked,
            Some(tree) => match tree.state.load(Ordering::Acquire) {
                HANDLED => TreeState::Handled,
                FAILED => TreeState::Failed,
                _ => TreeState::Pending,
            },
        }
    }

    /// Replaces the payload (other events sharing the old payload keep it).
    ///
    /// # Errors
    ///
    /// [`EventError::Acknowledged`] if the event was acknowledged or failed.
    pub fn set_payload(&mut self, payload: P) -> Result<(), EventError> {
        self.ensure_live()?;
        self.payload = Arc::new(payload);
        Ok(())
    }

    /// Creates a child event sharing this event's payload (copied on write) with its own context.
    ///
    /// # Errors
    ///
    /// [`EventError::Acknowledged`] if the event was acknowledged or failed.
    pub fn with_context(&self, context: C) -> Result<Self, EventError> {
        self.derive(Arc::clone(&self.payload), context)
    }

    /// Acknowledges the event: it is done and can no longer change or have children.
    ///
    /// Idempotent: returns `true` if this call acknowledged the event, `false` if it was already
    /// acknowledged or failed (nothing is counted twice).
    pub fn ack(&mut self) -> bool {
        if self.ended {
            return false;
        }
        self.ended = true;
        if let Some(tree) = &self.tree {
            tree.release();
        }
        true
    }

    /// Fails the event with `error`: the tree's `on_error` runs if this is its first failure.
    ///
    /// Idempotent like [`Event::ack`]: returns `false` if the event had already ended.
    pub fn fail(&mut self, error: impl Into<BoxError>) -> bool {
        let error: BoxError = error.into();
        self.fail_with(EventError::Failed(SharedError::from(error)))
    }

    /// Fails the event with a prepared [`EventError`]; see [`Event::fail`].
    pub fn fail_with(&mut self, error: EventError) -> bool {
        if self.ended {
            return false;
        }
        self.ended = true;
        if let Some(tree) = &self.tree {
            tree.fail(error);
        }
        true
    }

    fn ensure_live(&self) -> Result<(), EventError> {
        if self.ended {
            Err(EventError::Acknowledged)
        } else {
            Ok(())
        }
    }

    fn derive(&self, payload: Arc<P>, context: C) -> Result<Self, EventError> {
        self.ensure_live()?;
        if let Some(tree) = &self.tree {
            // The parent is live and counted, so the count is at least one: no early completion.
            tree.live.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Self {
            payload,
            context,
            tree: self.tree.clone(),
            ended: false,
        })
    }
}

impl<P: Clone, C> Event<P, C> {
    /// Mutable access to the payload, copying it first if other events share it.
    ///
    /// # Errors
    ///
    /// [`EventError::Acknowledged`] if the event was acknowledged or failed.
    pub fn payload_mut(&mut self) -> Result<&mut P, EventError> {
        self.ensure_live()?;
        Ok(Arc::make_mut(&mut self.payload))
    }
}

impl<P, C: Clone> Clone for Event<P, C> {
    /// A counted child sharing payload and context; see the [module documentation](self).
    fn clone(&self) -> Self {
        if !self.ended
            && let Some(tree) = &self.tree
        {
            tree.live.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            payload: Arc::clone(&self.payload),
            context: self.context.clone(),
            tree: self.tree.clone(),
            ended: self.ended,
        }
    }
}

impl<P, C> Drop for Event<P, C> {
    fn drop(&mut self) {
        if !self.ended && self.tree.is_some() {
            self.fail_with(EventError::Dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    /// Counts callback invocations of one tree.
    #[derive(Default)]
    struct Probe {
        handled: AtomicUsize,
        errors: Mutex<Vec<String>>,
    }

    impl Probe {
        fn root<P>(self: &Arc<Self>, payload: P) -> Event<P> {
            let (h, e) = (Arc::clone(self), Arc::clone(self));
            Event::with_ack(
                payload,
                Context::new().with_trace_id("t-1"),
                move || {
                    h.handled.fetch_add(1, Ordering::SeqCst);
                },
                move |err| e.errors.lock().expect("lock").push(err.to_string()),
            )
        }
        fn handled(&self) -> usize {
            self.handled.load(Ordering::SeqCst)
        }
        fn errors(&self) -> Vec<String> {
            self.errors.lock().expect("lock").clone()
        }
    }

    #[test]
    fn root_alone_is_handled_once_on_ack() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root("p");
        assert_eq!(root.tree_state(), TreeState::Pending);
        assert!(root.ack());
        assert!(!root.ack(), "second ack is a no-op");
        assert_eq!(probe.handled(), 1);
        assert_eq!(root.tree_state(), TreeState::Handled);
        drop(root);
        assert_eq!(probe.handled(), 1);
        assert!(probe.errors().is_empty());
    }

    #[test]
    fn tree_is_handled_only_when_every_event_is_acked() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root(vec![1, 2, 3]);
        let mut a = root
            .with_context(Context::new().with("route", "a"))
            .expect("live");
        let mut b = root
            .with_context(Context::new().with("route", "b"))
            .expect("live");
        let mut grandchild = a.with_context(Context::new()).expect("live");
        grandchild.set_payload(vec![9]).expect("live");
        root.ack();
        assert_eq!(probe.handled(), 0);
        a.ack();
        a.ack();
        assert_eq!(probe.handled(), 0, "double ack does not double count");
        b.ack();
        assert_eq!(probe.handled(), 0);
        grandchild.ack();
        assert_eq!(probe.handled(), 1);
        assert!(probe.errors().is_empty());
    }

    #[test]
    fn children_created_after_other_children_ended_do_not_complete_early() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root(0);
        for _ in 0..10 {
            let mut child = root.with_context(Context::new()).expect("live");
            child.ack();
            assert_eq!(probe.handled(), 0, "root still live");
        }
        root.ack();
        assert_eq!(probe.handled(), 1);
    }

    #[test]
    fn first_failure_reports_once_and_handled_never_fires() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root(0);
        let mut a = root.with_context(Context::new()).expect("live");
        let mut b = root.with_context(Context::new()).expect("live");
        assert!(a.fail("sender unreachable"));
        assert!(!a.fail("again"), "second fail is a no-op");
        assert_eq!(a.tree_state(), TreeState::Failed);
        b.fail("another failure");
        root.ack();
        assert_eq!(probe.handled(), 0);
        assert_eq!(probe.errors(), vec!["event failed: sender unreachable"]);
    }

    #[test]
    fn dropping_an_unacked_event_fails_the_tree() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root(0);
        let child = root.with_context(Context::new()).expect("live");
        drop(child);
        root.ack();
        assert_eq!(probe.handled(), 0);
        assert_eq!(
            probe.errors(),
            vec!["event was dropped without being acknowledged"]
        );
    }

    #[test]
    fn fire_and_forget_needs_no_ack() {
        let mut root = Event::new(String::from("x"), Context::new());
        assert_eq!(root.tree_state(), TreeState::Untracked);
        let child = root.with_context(Context::new()).expect("live");
        drop(child);
        assert!(root.ack());
        assert!(root.set_payload(String::new()).is_err());
    }

    #[test]
    fn acknowledged_event_refuses_changes_and_children() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root(String::from("p"));
        root.ack();
        assert!(root.is_acknowledged());
        assert!(matches!(
            root.set_payload("q".into()),
            Err(EventError::Acknowledged)
        ));
        assert!(matches!(
            root.with_context(Context::new()),
            Err(EventError::Acknowledged)
        ));
        assert!(matches!(root.payload_mut(), Err(EventError::Acknowledged)));
        assert_eq!(
            EventError::Acknowledged.to_string(),
            "event is already acknowledged"
        );
        // A failed event refuses too.
        let mut failed = Event::new(1, ());
        failed.fail("boom");
        assert!(matches!(
            failed.set_payload(2),
            Err(EventError::Acknowledged)
        ));
        assert_eq!(probe.handled(), 1);
    }

    #[test]
    fn with_context_shares_the_payload_and_copies_it_on_write() {
        let mut root = Event::new(vec![1], Context::new().with_trace_id("t"));
        let mut a = root
            .with_context(Context::new().with_span_id("s1"))
            .expect("live");
        let mut b = root
            .with_context(Context::new().with_span_id("s2"))
            .expect("live");
        assert!(Arc::ptr_eq(&root.payload, &a.payload));
        assert!(Arc::ptr_eq(&root.payload, &b.payload));
        a.payload_mut().expect("live").push(2);
        b.payload_mut().expect("live").push(3);
        root.set_payload(vec![0]).expect("live");
        assert_eq!(root.payload(), &vec![0]);
        assert_eq!(a.payload(), &vec![1, 2]);
        assert_eq!(b.payload(), &vec![1, 3]);
        assert_eq!(root.context().trace_id(), Some("t"));
        assert_eq!(a.context().span_id(), Some("s1"));
        assert_eq!(b.context().span_id(), Some("s2"));
        assert_eq!(b.context().trace_id(), None, "contexts are independent");
    }

    #[test]
    fn clone_is_a_counted_child_and_clone_of_ended_is_inert() {
        let probe = Arc::new(Probe::default());
        let mut root = probe.root(0);
        let mut copy = root.clone();
        root.ack();
        let mut inert = root.clone();
        assert!(inert.is_acknowledged());
        assert!(!inert.ack());
        drop(inert);
        assert_eq!(probe.handled(), 0);
        copy.ack();
        assert_eq!(probe.handled(), 1);
        assert!(probe.errors().is_empty());
    }

    #[test]
    fn callbacks_are_released_after_completion() {
        let token = Arc::new(());
        let (t1, t2) = (Arc::clone(&token), Arc::clone(&token));
        let mut root = Event::with_ack(0, (), move || drop(t1), move |_| drop(t2));
        let mut child = root.with_context(()).expect("live");
        root.ack();
        assert_eq!(Arc::strong_count(&token), 3);
        child.ack();
        assert_eq!(Arc::strong_count(&token), 1, "both callbacks freed");
    }

    /// Many threads create, split and end events of one tree concurrently: handled fires exactly
    /// once, and only after the last event ended.
    #[test]
    fn concurrent_acks_handle_exactly_once() {
        for _ in 0..200 {
            let probe = Arc::new(Probe::default());
            let (tx, rx) = mpsc::channel();
            let mut root = probe.root(0u64);
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let child = root.with_context(Context::new()).expect("live");
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        let mut child = child;
                        let mut grandchildren: Vec<_> = (0..8)
                            .map(|i| {
                                let mut g = child.with_context(Context::new()).expect("live");
                                g.set_payload(t * 100 + i).expect("live");
                                g
                            })
                            .collect();
                        child.ack();
                        for g in &mut grandchildren {
                            g.ack();
                        }
                        tx.send(()).expect("main alive");
                    })
                })
                .collect();
            drop(tx);
            root.ack();
            for thread in threads {
                thread.join().expect("thread");
            }
            assert_eq!(rx.iter().count(), 8);
            assert_eq!(probe.handled(), 1);
            assert!(probe.errors().is_empty());
        }
    }

    /// Concurrent failures and acks: exactly one error, never handled.
    #[test]
    fn concurrent_failures_report_exactly_once() {
        for round in 0..200 {
            let probe = Arc::new(Probe::default());
            let mut root = probe.root(0u64);
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let mut child = root.with_context(Context::new()).expect("live");
                    std::thread::spawn(move || {
                        if (t + round) % 3 == 0 {
                            child.fail(format!("worker {t}"));
                        } else {
                            child.ack();
                        }
                    })
                })
                .collect();
            root.ack();
            for thread in threads {
                thread.join().expect("thread");
            }
            assert_eq!(probe.handled(), 0);
            assert_eq!(probe.errors().len(), 1);
        }
    }

    /// Error callbacks that publish on the same bus, run from every place where the bus drops an
    /// event (a full buffer, a dropped subscription), must not deadlock: the bus never drops an
    /// event while holding a lock.
    #[test]
    fn reentrant_publish_from_a_dropped_event_does_not_deadlock() {
        use crate::bus::Bus;
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let bus: Bus<Event<u32>> = Bus::new();
            let errors = Arc::new(AtomicUsize::new(0));
            let root = |n: u32| {
                let (bus, errors) = (bus.clone(), Arc::clone(&errors));
                Event::with_ack(
                    n,
                    Context::new(),
                    || {},
                    move |_| {
                        errors.fetch_add(1, Ordering::SeqCst);
                        bus.publish(Event::new(0, Context::new()));
                    },
                )
            };
            let mut sub = bus.subscribe(1);
            bus.publish(root(1)); // buffered
            bus.publish(root(2)); // full buffer: dropped
            bus.publish(root(3)); // full buffer: dropped
            let subscriber_drop = bus.subscribe(4);
            drop(sub.try_recv()); // root 1, never acknowledged
            bus.publish(root(4));
            drop(subscriber_drop); // drops root 4's copy buffered there
            drop(sub.try_recv());
            done_tx
                .send(errors.load(Ordering::SeqCst))
                .expect("main waits");
        });
        let errors = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("no deadlock");
        assert!(errors >= 4, "every dropped root reported, got {errors}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_travel_on_the_bus() {
        use crate::bus::Bus;
        let probe = Arc::new(Probe::default());
        let bus: Bus<Event<u32>> = Bus::new();
        let subs: Vec<_> = (0..3).map(|_| bus.subscribe(4)).collect();
        bus.publish(probe.root(7));
        let tasks: Vec<_> = subs
            .into_iter()
            .map(|mut sub| {
                tokio::spawn(async move {
                    let mut event = sub.recv().await.expect("event");
                    assert_eq!(*event.payload(), 7);
                    event.ack();
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(probe.handled(), 1);

        // A copy dropped for a full buffer fails the tree: nothing is silently lost.
        let probe = Arc::new(Probe::default());
        let mut sub = bus.subscribe(1);
        assert_eq!(bus.subscriber_count(), 1);
        bus.publish(probe.root(1));
        bus.publish(probe.root(2));
        assert_eq!(
            probe.errors(),
            vec!["event was dropped without being acknowledged"]
        );
        // An event that a subscriber drops un-acked fails its tree as well.
        drop(sub.try_recv());
        assert_eq!(probe.errors().len(), 2);
        assert_eq!(probe.handled(), 0);
    }
}
