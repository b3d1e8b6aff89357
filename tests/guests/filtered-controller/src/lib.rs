//! A controller (handler and reconciler) of Deployments that declares an event filter: objects
//! in the namespace `prod` whose labels match `app=web,tier!=db`, spec changes only. Tests check
//! that only those changes reach it, that a label change moving an object out of the selection
//! arrives as `deleted` and into it as `added`, that a status-only update does not reach it, and
//! that its reconciler touches only selected objects.
//!
//! Every handler export completes at once. The reconciler plans nothing and reports one
//! component, `App`, ready; its conditions are silent (no Events).

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::serde_json::Value;
use capstan_sdk::{
    Cache, ComponentHealth, Error, EventStatus, Handler, Manifest, Observability, Plan, Plugin,
    Reconciler, StatusChannel,
};

/// The filtered controller.
pub struct Filtered;

impl Plugin for Filtered {
    fn manifest() -> Manifest {
        Manifest::new("filtered-controller", "0.1.0")
            .watches::<Deployment>()
            .in_namespaces(["prod"])
            .with_label_selector("app=web,tier!=db")
            .spec_changes_only()
            .observability(Observability::Silent)
    }
}

impl Handler for Filtered {
    type Object = Value;

    fn added(_: Value, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }

    fn updated(_: Value, _: Value, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }

    fn deleted(_: Value, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }
}

impl Reconciler for Filtered {
    type Object = Value;
    type Observation = ();

    fn fetch(_: &Value, _: &Cache) -> Result<(), Error> {
        Ok(())
    }

    fn plan(_: &Value, _: &()) -> Result<Plan, Error> {
        Ok(Plan::new())
    }

    fn health(_: &Value, _: &()) -> Vec<ComponentHealth> {
        vec![ComponentHealth::ready("App", "Running", "nothing to do")]
    }
}

capstan_sdk::export!(Filtered: Handler + Reconciler);
