//! Declares an event filter whose label selector does not parse (`app in (web`): the host
//! refuses it at load, naming the plugin and the selector.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct BadSelector;

impl Plugin for BadSelector {
    fn manifest() -> Manifest {
        Manifest::new("bad-selector", "0.1.0")
            .watches::<Deployment>()
            .with_label_selector("app in (web")
    }
}

impl Handler for BadSelector {
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

capstan_sdk::export!(BadSelector: Handler);
