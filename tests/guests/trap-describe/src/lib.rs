//! Panics in describe.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct Trap;

impl Plugin for Trap {
    fn manifest() -> Manifest {
        panic!("describe refuses")
    }
}

impl Handler for Trap {
    type Object = Deployment;
    fn added(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }
    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }
    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }
}

capstan_sdk::export!(Trap: Handler);
