//! A handler typed for Deployments that watches ConfigMaps: every event would fail to decode, so
//! the host refuses it at load (its manifest's `object-kind` is not a kind it watches).

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::k8s_openapi::api::core::v1::ConfigMap;
use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};

/// The mistyped handler.
pub struct Mistyped;

impl Plugin for Mistyped {
    fn manifest() -> Manifest {
        Manifest::new("mistyped-handler", "0.1.0").watches::<ConfigMap>()
    }
}

impl Handler for Mistyped {
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

capstan_sdk::export!(Mistyped: Handler);
