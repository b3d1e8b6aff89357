//! A handler of Deployments that takes 100 ms over every event (it sleeps on the WASI monotonic
//! clock, burning no CPU): the slow plugin of the head-of-line blocking tests.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};
use std::time::Duration;

/// The slow handler.
pub struct Slow;

fn slowly() -> EventStatus {
    std::thread::sleep(Duration::from_millis(100));
    EventStatus::Completed
}

impl Plugin for Slow {
    fn manifest() -> Manifest {
        Manifest::new("slow-handler", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for Slow {
    type Object = Deployment;

    fn added(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        slowly()
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        slowly()
    }

    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        slowly()
    }
}

capstan_sdk::export!(Slow: Handler);
