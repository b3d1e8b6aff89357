//! Event statuses and the per-event status channel of seed 000.
//!
//! [`EventStatus`], [`EventProcessStatus`], [`Message`] and [`ChannelError`] are the contract's own
//! types (generated from `wit/`); this module adds their builders and the channel.

pub use crate::wit::capstan::controller::status_channel::ChannelError;
use crate::wit::capstan::controller::status_channel::StatusSender;
pub use crate::wit::capstan::controller::types::{EventProcessStatus, EventStatus, Message};
use std::cell::RefCell;

impl Default for EventStatus {
    /// [`EventStatus::Completed`].
    fn default() -> Self {
        Self::Completed
    }
}

/// A status for one event, built with chained calls and sent on the event's [`StatusChannel`].
///
/// ```
/// use capstan_sdk::{EventProcessStatus, EventStatus, StatusChannel};
/// let ch = StatusChannel::recorder();
/// EventProcessStatus::new()
///     .with_status(EventStatus::PartialCompleted)
///     .with_message("vs", "failed on cluster_a due to api server failure.")
///     .skip_close(&ch)
///     .unwrap();
/// assert!(ch.is_closed());
/// ```
impl EventProcessStatus {
    /// A `Completed` status with no message, no retry and no error.
    pub fn new() -> Self {
        Self {
            status: EventStatus::Completed,
            messages: Vec::new(),
            retry: false,
            max_retry: 0,
            error: None,
        }
    }

    /// Set the status.
    #[must_use]
    pub fn with_status(mut self, status: EventStatus) -> Self {
        self.status = status;
        self
    }

    /// Add a key/value message.
    #[must_use]
    pub fn with_message(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.messages.push(Message {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Ask the host to re-queue the event (with backoff).
    #[must_use]
    pub fn with_retry(mut self) -> Self {
        self.retry = true;
        self
    }

    /// Bound the retries: after `count` of them, `on_status` receives `MaxRetryReached`.
    #[must_use]
    pub fn with_max_retry(mut self, count: u32) -> Self {
        self.max_retry = count;
        self
    }

    /// Attach an error.
    #[must_use]
    pub fn with_error(mut self, error: impl std::fmt::Display) -> Self {
        self.error = Some(error.to_string());
        self
    }

    /// Send this status; the host calls the plugin's `on_status` with it.
    pub fn send(self, ch: &StatusChannel<'_>) -> Result<(), ChannelError> {
        ch.deliver(self, Delivery::Send)
    }

    /// Send this status, calling `on_status`, and close the channel.
    pub fn send_close(self, ch: &StatusChannel<'_>) -> Result<(), ChannelError> {
        ch.deliver(self, Delivery::SendClose)
    }

    /// Record this status without calling `on_status`, and close the channel.
    pub fn skip_close(self, ch: &StatusChannel<'_>) -> Result<(), ChannelError> {
        ch.deliver(self, Delivery::SkipClose)
    }
}

impl Default for EventProcessStatus {
    /// [`EventProcessStatus::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// How a status is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `send`.
    Send,
    /// `send_close`.
    SendClose,
    /// `skip_close`.
    SkipClose,
}

/// The status channel of one event. Closing it twice is an error, never a crash.
pub struct StatusChannel<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Host(&'a StatusSender),
    Recorder(RefCell<Recorded>, std::marker::PhantomData<&'a ()>),
}

#[derive(Default)]
struct Recorded {
    sent: Vec<(EventProcessStatus, Delivery)>,
    closed: bool,
}

impl<'a> StatusChannel<'a> {
    /// A channel that records statuses in memory: for testing handlers natively.
    pub fn recorder() -> Self {
        Self {
            inner: Inner::Recorder(RefCell::default(), std::marker::PhantomData),
        }
    }

    /// The channel of the event being handled, lent by the host.
    #[doc(hidden)]
    pub fn from_host(handle: &'a StatusSender) -> Self {
        Self {
            inner: Inner::Host(handle),
        }
    }

    /// Statuses recorded by a [`StatusChannel::recorder`] (empty for a host channel).
    pub fn recorded(&self) -> Vec<(EventProcessStatus, Delivery)> {
        match &self.inner {
            Inner::Recorder(r, _) => r.borrow().sent.clone(),
            Inner::Host(_) => Vec::new(),
        }
    }

    /// Whether a recorder channel was closed.
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            Inner::Recorder(r, _) => r.borrow().closed,
            Inner::Host(_) => false,
        }
    }

    fn deliver(&self, status: EventProcessStatus, how: Delivery) -> Result<(), ChannelError> {
        match &self.inner {
            Inner::Recorder(r, _) => {
                let mut r = r.borrow_mut();
                if r.closed {
                    return Err(ChannelError::Closed);
                }
                r.closed = how != Delivery::Send;
                r.sent.push((status, how));
                Ok(())
            }
            Inner::Host(handle) => match how {
                Delivery::Send => handle.send(&status),
                Delivery::SendClose => handle.send_close(&status),
                Delivery::SkipClose => handle.skip_close(&status),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_defaults_match_seed() {
        let s = EventProcessStatus::new();
        assert_eq!(s.status, EventStatus::Completed);
        assert!(s.messages.is_empty() && !s.retry && s.max_retry == 0 && s.error.is_none());
    }

    #[test]
    fn second_close_is_an_error_not_a_crash() {
        let ch = StatusChannel::recorder();
        EventProcessStatus::new().send(&ch).unwrap();
        EventProcessStatus::new().send_close(&ch).unwrap();
        assert_eq!(
            EventProcessStatus::new().skip_close(&ch),
            Err(ChannelError::Closed)
        );
        assert_eq!(
            EventProcessStatus::new().send(&ch),
            Err(ChannelError::Closed)
        );
        assert_eq!(ch.recorded().len(), 2);
    }

    #[test]
    fn chaining_keeps_order() {
        let s = EventProcessStatus::new()
            .with_status(EventStatus::Failure)
            .with_message("a", "1")
            .with_message("b", "2")
            .with_retry()
            .with_max_retry(3)
            .with_error("boom");
        let messages: Vec<(&str, &str)> = s
            .messages
            .iter()
            .map(|m| (m.key.as_str(), m.value.as_str()))
            .collect();
        assert_eq!(messages, vec![("a", "1"), ("b", "2")]);
        assert_eq!(
            (s.retry, s.max_retry, s.error.as_deref()),
            (true, 3, Some("boom"))
        );
    }
}
