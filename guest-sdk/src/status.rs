//! Event statuses and the per-event status channel of seed 000.

use std::cell::RefCell;

/// The outcome of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventStatus {
    /// Not relevant; skipped.
    Skip,
    /// Process the event again.
    Retry,
    /// Retried as often as allowed; given up.
    MaxRetryReached,
    /// Fully processed.
    #[default]
    Completed,
    /// Processing failed.
    Failure,
    /// Processing is under way.
    Processing,
    /// Processing succeeded in part.
    PartialCompleted,
}

/// Why a status could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// The channel was already closed by `send_close` or `skip_close`.
    Closed,
    /// The event the channel belongs to has ended.
    Expired,
    /// The status is larger than the host accepts.
    TooLarge,
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Closed => "status channel already closed",
            Self::Expired => "event already ended",
            Self::TooLarge => "status too large",
        })
    }
}

impl std::error::Error for ChannelError {}

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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use]
pub struct EventProcessStatus {
    /// The status; [`EventStatus::Completed`] by default.
    pub status: EventStatus,
    /// Key/value messages in the order they were added.
    pub messages: Vec<(String, String)>,
    /// Whether the host should re-queue the event.
    pub retry: bool,
    /// How many times the event may be retried; 0 means the host default.
    pub max_retry: u32,
    /// An error description.
    pub error: Option<String>,
}

impl EventProcessStatus {
    /// A `Completed` status with no message, no retry and no error.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the status.
    pub fn with_status(mut self, status: EventStatus) -> Self {
        self.status = status;
        self
    }

    /// Add a key/value message.
    pub fn with_message(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.messages.push((key.into(), value.into()));
        self
    }

    /// Ask the host to re-queue the event (with backoff).
    pub fn with_retry(mut self) -> Self {
        self.retry = true;
        self
    }

    /// Bound the retries: after `count` of them, `on_status` receives `MaxRetryReached`.
    pub fn with_max_retry(mut self, count: u32) -> Self {
        self.max_retry = count;
        self
    }

    /// Attach an error.
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
    #[cfg(feature = "handler")]
    Host(&'a crate::wit::capstan::controller::status_channel::StatusSender),
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

    #[cfg(feature = "handler")]
    #[doc(hidden)]
    pub fn from_host(
        handle: &'a crate::wit::capstan::controller::status_channel::StatusSender,
    ) -> Self {
        Self {
            inner: Inner::Host(handle),
        }
    }

    /// Statuses recorded by a [`StatusChannel::recorder`] (empty for a host channel).
    pub fn recorded(&self) -> Vec<(EventProcessStatus, Delivery)> {
        match &self.inner {
            Inner::Recorder(r, _) => r.borrow().sent.clone(),
            #[cfg(feature = "handler")]
            Inner::Host(_) => Vec::new(),
        }
    }

    /// Whether a recorder channel was closed.
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            Inner::Recorder(r, _) => r.borrow().closed,
            #[cfg(feature = "handler")]
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
            #[cfg(feature = "handler")]
            Inner::Host(handle) => crate::glue::deliver(handle, status, how),
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
        assert_eq!(
            s.messages,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            (s.retry, s.max_retry, s.error.as_deref()),
            (true, 3, Some("boom"))
        );
    }
}
