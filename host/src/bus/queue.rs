//! Bounded per-subscriber queue: a ring buffer behind a short mutex, with an async receiver.
//!
//! Publishing to a queue is one uncontended lock/unlock pair around a `VecDeque` push (plus a
//! wake-up when the receiver is parked): cheaper than a general-purpose channel, and the counters
//! live under the same lock for free. No user code runs under the lock: an event that is refused
//! is handed back to the caller, and events discarded on close are dropped after unlocking (an
//! event's `Drop` may run arbitrary callbacks, which may publish again).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use super::{BusError, SubscriptionId};

/// Initial allocation of a queue's ring buffer; it grows on demand up to the capacity.
const INITIAL_ALLOCATION: usize = 16;

/// Result of [`Queue::offer`].
pub(super) enum Offer<E> {
    /// The event is buffered.
    Delivered,
    /// The buffer is full: the event is handed back, with the subscriber's total drop count.
    Full(E, u64),
    /// The receiver is gone: the event is handed back.
    Closed(E),
}

struct Inner<E> {
    buffer: VecDeque<E>,
    waker: Option<Waker>,
    delivered: u64,
    dropped: u64,
    /// The [`super::Subscription`] was dropped: refuse events.
    receiver_gone: bool,
    /// The bus was dropped: no event will come anymore.
    disconnected: bool,
}

/// The queue of one subscriber, shared by the bus (producers) and the subscription (consumer).
pub(super) struct Queue<E> {
    pub(super) id: SubscriptionId,
    pub(super) capacity: usize,
    inner: Mutex<Inner<E>>,
}

/// Counters of a queue, see [`Queue::counters`].
pub(super) struct Counters {
    pub(super) buffered: usize,
    pub(super) delivered: u64,
    pub(super) dropped: u64,
}

impl<E> Queue<E> {
    pub(super) fn new(id: SubscriptionId, capacity: usize) -> Self {
        Self {
            id,
            capacity,
            inner: Mutex::new(Inner {
                buffer: VecDeque::with_capacity(capacity.min(INITIAL_ALLOCATION)),
                waker: None,
                delivered: 0,
                dropped: 0,
                receiver_gone: false,
                disconnected: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<E>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers `event` if there is room; never waits for the consumer.
    #[inline]
    pub(super) fn offer(&self, event: E) -> Offer<E> {
        let mut inner = self.lock();
        if inner.receiver_gone {
            return Offer::Closed(event);
        }
        if inner.buffer.len() >= self.capacity {
            inner.dropped += 1;
            return Offer::Full(event, inner.dropped);
        }
        inner.buffer.push_back(event);
        inner.delivered += 1;
        let waker = inner.waker.take();
        drop(inner);
        if let Some(waker) = waker {
            waker.wake();
        }
        Offer::Delivered
    }

    /// Takes the next event, registering `cx` for a wake-up if there is none.
    pub(super) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        // Participate in tokio's cooperative scheduling, like tokio's own channels.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut inner = self.lock();
        if let Some(event) = inner.buffer.pop_front() {
            coop.made_progress();
            return Poll::Ready(Some(event));
        }
        if inner.disconnected {
            return Poll::Ready(None);
        }
        match &mut inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes the next event without waiting.
    pub(super) fn try_recv(&self) -> Result<E, BusError> {
        let mut inner = self.lock();
        match inner.buffer.pop_front() {
            Some(event) => Ok(event),
            None if inner.disconnected => Err(BusError::Closed),
            None => Err(BusError::Empty),
        }
    }

    /// The receiver is gone: refuse further events and return the buffered ones, for the caller
    /// to drop outside any lock.
    pub(super) fn close_receiver(&self) -> VecDeque<E> {
        let mut inner = self.lock();
        inner.receiver_gone = true;
        inner.waker = None;
        std::mem::take(&mut inner.buffer)
    }

    /// The bus is gone: wake the receiver so it can drain and see the end.
    pub(super) fn disconnect(&self) {
        let waker = {
            let mut inner = self.lock();
            inner.disconnected = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(super) fn counters(&self) -> Counters {
        let inner = self.lock();
        Counters {
            buffered: inner.buffer.len(),
            delivered: inner.delivered,
            dropped: inner.dropped,
        }
    }
}
