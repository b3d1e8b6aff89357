//! Per-event status channels (seed 000): bounded, closed once, consumed by the host on its own task.
//!
//! The Go original panics on a second close and leaks a goroutine when a handler forgets to close.
//! Here a second close is a typed [`ChannelError::Closed`], and the host closes a channel the handler
//! left open when the handler returns (see [`StatusSender::close_if_open`]).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

/// The capacity of a status channel: `send` waits while this many statuses are unconsumed.
pub const CAPACITY: usize = 5;

pub use crate::contract::{EventProcessStatus, EventStatus, Message};

impl Message {
    /// A key/value message.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Default for EventStatus {
    /// `completed`, as in seed 000.
    fn default() -> Self {
        Self::Completed
    }
}

impl Default for EventProcessStatus {
    /// `completed`, no messages, no retry.
    fn default() -> Self {
        Self {
            status: EventStatus::default(),
            messages: Vec::new(),
            retry: false,
            max_retry: 0,
            error: None,
        }
    }
}

/// How a status was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Delivery {
    /// `send`: `on-status` is called.
    Send,
    /// `send-close`: `on-status` is called and the channel closes.
    SendClose,
    /// `skip-close`: recorded, `on-status` is not called, the channel closes.
    SkipClose,
}

impl Delivery {
    /// Whether the plugin's `on-status` is called for a status delivered this way.
    pub fn calls_on_status(self) -> bool {
        !matches!(self, Self::SkipClose)
    }
}

/// One message on a status channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// The status.
    pub status: EventProcessStatus,
    /// How it was delivered.
    pub delivery: Delivery,
}

/// Why a status could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The channel was closed by `send-close` or `skip-close`.
    #[error("status channel already closed")]
    Closed,
    /// The consumer is gone: the event has ended.
    #[error("event already ended")]
    Expired,
}

/// The sending end of a status channel, held by the host on the plugin's behalf.
#[derive(Debug)]
pub struct StatusSender {
    tx: Option<mpsc::Sender<StatusMessage>>,
    /// Told when a send finds the channel full and waits.
    blocked: Arc<Notify>,
}

/// The receiving end, consumed by the host.
#[derive(Debug)]
pub struct StatusReceiver {
    rx: mpsc::Receiver<StatusMessage>,
    blocked: Arc<Notify>,
}

/// A new status channel with capacity [`CAPACITY`].
pub fn channel() -> (StatusSender, StatusReceiver) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let blocked = Arc::new(Notify::new());
    (
        StatusSender {
            tx: Some(tx),
            blocked: Arc::clone(&blocked),
        },
        StatusReceiver { rx, blocked },
    )
}

impl StatusReceiver {
    /// The next status; `None` once the channel is closed and drained.
    pub async fn recv(&mut self) -> Option<StatusMessage> {
        self.rx.recv().await
    }

    /// Resolves when a send has found the channel full and waits for this end to consume: a
    /// consumer may leave the statuses buffered until then.
    pub async fn sender_waits(&self) {
        self.blocked.notified().await;
    }
}

impl StatusSender {
    /// Deliver a status, waiting while the channel is full.
    pub async fn deliver(
        &mut self,
        status: EventProcessStatus,
        delivery: Delivery,
    ) -> Result<(), ChannelError> {
        let tx = self.tx.as_ref().ok_or(ChannelError::Closed)?;
        match tx.try_send(StatusMessage { status, delivery }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                self.blocked.notify_one();
                tx.send(message).await.map_err(|_| ChannelError::Expired)?;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ChannelError::Expired),
        }
        if delivery != Delivery::Send {
            self.tx = None;
        }
        Ok(())
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.tx.is_none()
    }

    /// Close the channel if the handler left it open; returns whether it was open.
    pub fn close_if_open(&mut self) -> bool {
        self.tx.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn second_close_is_a_typed_error() {
        let (mut tx, mut rx) = channel();
        tx.deliver(EventProcessStatus::default(), Delivery::SendClose)
            .await
            .unwrap();
        assert_eq!(
            tx.deliver(EventProcessStatus::default(), Delivery::SkipClose)
                .await,
            Err(ChannelError::Closed)
        );
        assert_eq!(rx.recv().await.unwrap().delivery, Delivery::SendClose);
        assert!(rx.recv().await.is_none(), "closing drops the sender");
    }

    #[tokio::test(start_paused = true)]
    async fn send_waits_while_full() {
        let (mut tx, mut rx) = channel();
        for _ in 0..CAPACITY {
            tx.deliver(EventProcessStatus::default(), Delivery::Send)
                .await
                .unwrap();
        }
        let blocked = tokio::time::timeout(
            Duration::from_secs(1),
            tx.deliver(EventProcessStatus::default(), Delivery::Send),
        )
        .await;
        assert!(blocked.is_err(), "the sixth send waits");
        tokio::time::timeout(Duration::from_secs(1), rx.sender_waits())
            .await
            .expect("the receiver is told");
        rx.recv().await.unwrap();
        tx.deliver(EventProcessStatus::default(), Delivery::Send)
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_receiver_is_not_told_while_there_is_room() {
        let (mut tx, rx) = channel();
        for _ in 0..CAPACITY {
            tx.deliver(EventProcessStatus::default(), Delivery::Send)
                .await
                .unwrap();
        }
        let told = tokio::time::timeout(Duration::from_secs(1), rx.sender_waits()).await;
        assert!(
            told.is_err(),
            "a full channel alone does not wake the receiver"
        );
    }

    #[tokio::test]
    async fn consumer_gone_is_expired() {
        let (mut tx, rx) = channel();
        drop(rx);
        assert_eq!(
            tx.deliver(EventProcessStatus::default(), Delivery::Send)
                .await,
            Err(ChannelError::Expired)
        );
    }

    #[test]
    fn host_closes_a_channel_left_open() {
        let (mut tx, _rx) = channel();
        assert!(tx.close_if_open());
        assert!(!tx.close_if_open());
        assert!(tx.is_closed());
    }
}
