//! Asks for a retry on every event, bounded by max-retry 3.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventProcessStatus, EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct Retry;

impl Plugin for Retry {
    fn manifest() -> Manifest {
        Manifest::new("retry-handler", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for Retry {
    type Object = Deployment;

    fn added(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let _ = EventProcessStatus::new()
            .with_status(EventStatus::Retry)
            .with_retry()
            .with_max_retry(3)
            .with_error("backend unavailable")
            .send_close(ch);
        EventStatus::Retry
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }

    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }
}

capstan_sdk::export!(Retry: Handler);
