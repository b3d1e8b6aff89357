//! Misbehaves on demand, by the object's name: `spin` loops forever, `bomb` allocates without end,
//! `panic` panics, `trap` executes `unreachable`, `log-flood` pushes 160 MB through the log import in
//! 8 MiB records, `send-after-close` keeps sending on a closed status channel, `status-flood` sends
//! 100 000 statuses without closing; anything else is handled normally.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::log::{self, Level};
use capstan_sdk::{
    ChannelError, EventProcessStatus, EventStatus, Handler, Manifest, Plugin, StatusChannel,
};

/// Size of one flooding log record: over the host's default 4 MiB value limit.
const LOG_RECORD: usize = 8 << 20;
/// Records sent by `log-flood`: 160 MiB in all.
const LOG_RECORDS: usize = 20;
/// Statuses sent by `status-flood`.
const FLOOD: usize = 100_000;

struct Hostile;

impl Plugin for Hostile {
    fn manifest() -> Manifest {
        Manifest::new("hostile-handler", "0.1.0").watches::<Deployment>()
    }
}

fn log_flood() -> EventStatus {
    let record = "x".repeat(LOG_RECORD);
    for i in 0..LOG_RECORDS {
        log::log(Level::Info, &record, &[("record", &i.to_string())]);
    }
    EventStatus::Completed
}

/// Close, then try all three deliveries again: each must be `Err(Closed)`, never a crash.
fn send_after_close(ch: &StatusChannel<'_>) -> EventStatus {
    if EventProcessStatus::new()
        .with_message("phase", "close")
        .send_close(ch)
        .is_err()
    {
        return EventStatus::Failure;
    }
    let after = [
        EventProcessStatus::new()
            .with_message("phase", "after-send")
            .send(ch),
        EventProcessStatus::new()
            .with_message("phase", "after-send-close")
            .send_close(ch),
        EventProcessStatus::new()
            .with_message("phase", "after-skip-close")
            .skip_close(ch),
    ];
    if after.iter().all(|r| *r == Err(ChannelError::Closed)) {
        EventStatus::Completed
    } else {
        EventStatus::Failure
    }
}

/// Send without end (well, 100 000 times) and never close.
fn status_flood(ch: &StatusChannel<'_>) -> EventStatus {
    for i in 0..FLOOD {
        let sent = EventProcessStatus::new()
            .with_status(EventStatus::Processing)
            .with_message("seq", i.to_string())
            .send(ch);
        if sent.is_err() {
            return EventStatus::Failure;
        }
    }
    EventStatus::Completed
}

impl Handler for Hostile {
    type Object = Deployment;

    fn added(dep: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        match dep.metadata.name.as_deref() {
            Some("spin") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("bomb") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("panic") => panic!("hostile plugin panics"),
            Some("trap") => core::arch::wasm32::unreachable(),
            Some("log-flood") => log_flood(),
            Some("send-after-close") => send_after_close(ch),
            Some("status-flood") => status_flood(ch),
            _ => {
                let _ = EventProcessStatus::new().send_close(ch);
                EventStatus::Completed
            }
        }
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }

    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }
}

capstan_sdk::export!(Hostile: Handler);
