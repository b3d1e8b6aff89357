//! A handler of Deployments that keeps a global: a `static` counter of the calls its instance
//! received, incremented by every export it implements. It proves that no state crosses events:
//! with one instance per event, every event starts from 0.
//!
//! It reports the counter:
//! - `added`, `updated` and `deleted` each send-close one status with the message
//!   `calls=<n>`, the count including that call: always `calls=1` with a fresh instance per event
//!   (a reused instance would report 2, 3, ...), and return `Completed`;
//! - `on-status`, which runs on the event's instance after the handler returns, logs
//!   `stateful-handler on-status` with the field `calls=<n>` (`calls=2`: the event's call and
//!   this one) and the `calls` message it received.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{
    EventProcessStatus, EventStatus, Handler, Manifest, ObjectRef, Plugin, StatusChannel, log,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// Calls this instance received.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Count one call; the count including it.
fn count() -> u32 {
    CALLS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Count the event and report the count on its channel.
fn report(ch: &StatusChannel<'_>) -> EventStatus {
    let calls = count();
    match EventProcessStatus::new()
        .with_message("calls", calls.to_string())
        .send_close(ch)
    {
        Ok(()) => EventStatus::Completed,
        Err(_) => EventStatus::Failure,
    }
}

/// The stateful handler.
pub struct Stateful;

impl Plugin for Stateful {
    fn manifest() -> Manifest {
        Manifest::new("stateful-handler", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for Stateful {
    type Object = Deployment;

    fn added(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        report(ch)
    }

    fn updated(_: Deployment, _: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        report(ch)
    }

    fn deleted(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        report(ch)
    }

    fn on_status(_: &ObjectRef, status: EventProcessStatus) {
        let calls = count().to_string();
        let sent = status
            .messages
            .iter()
            .find(|m| m.key == "calls")
            .map_or("", |m| m.value.as_str());
        log::info(
            "stateful-handler on-status",
            &[("calls", &calls), ("sent", sent)],
        );
    }
}

capstan_sdk::export!(Stateful: Handler);
