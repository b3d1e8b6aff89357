//! Describes itself with a name that is not a DNS label.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct Bad;

impl Plugin for Bad {
    fn manifest() -> Manifest {
        Manifest::new("Bad_Name", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for Bad {
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

capstan_sdk::export!(Bad: Handler);
