//! Forgets to close its status channel on added; closes twice on deleted (the second must fail cleanly).

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{
    ChannelError, EventProcessStatus, EventStatus, Handler, Manifest, Plugin, StatusChannel,
};

struct Forgetful;

impl Plugin for Forgetful {
    fn manifest() -> Manifest {
        Manifest::new("forgetful-handler", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for Forgetful {
    type Object = Deployment;

    fn added(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let _ = EventProcessStatus::new()
            .with_status(EventStatus::Processing)
            .send(ch);
        EventStatus::Completed
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }

    fn deleted(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let first = EventProcessStatus::new().send_close(ch);
        let second = EventProcessStatus::new().skip_close(ch);
        match (first, second) {
            (Ok(()), Err(ChannelError::Closed)) => EventStatus::Completed,
            _ => EventStatus::Failure,
        }
    }
}

capstan_sdk::export!(Forgetful: Handler);
