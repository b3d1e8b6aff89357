//! A reconciler of `WebApp`s that keeps a global: a `static` counter of the calls its instance
//! received, incremented in every phase (`fetch`, `get-component-health`, `plan-resources`,
//! `status`, `cleanup`). It proves that no state crosses reconciles: with one instance per
//! reconcile, every reconcile starts from 0.
//!
//! It reports the counter twice:
//! - `status.calls` (decorate mode): the count when `status` ran; with a fresh instance, every
//!   reconcile writes `calls: 4` (fetch, health, plan, status, in any order after fetch). A reused
//!   instance would write 8, 12, ...;
//! - the message of its one component, `Counter` (ready, reason `Counted`): `calls=<n>`, the count
//!   when health ran (2 with a fresh instance, after fetch).
//!
//! It plans nothing and takes any kind (`serde_json::Value`).

use capstan_sdk::serde_json::{Value, json};
use capstan_sdk::{
    Cache, ComponentHealth, Error, Gvk, Manifest, Plan, Plugin, Reconciler, StatusMode,
    StatusUpdate,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// Calls this instance received, in all phases.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Count one call; the count including it.
fn count() -> u32 {
    CALLS.fetch_add(1, Ordering::Relaxed) + 1
}

/// The stateful reconciler.
pub struct Stateful;

impl Plugin for Stateful {
    fn manifest() -> Manifest {
        Manifest::new("stateful-reconciler", "0.1.0")
            .watches_gvk(Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"))
            .status_mode(StatusMode::Decorate)
    }
}

impl Reconciler for Stateful {
    type Object = Value;
    type Observation = ();

    fn fetch(_: &Value, _: &Cache) -> Result<(), Error> {
        count();
        Ok(())
    }

    fn plan(_: &Value, (): &()) -> Result<Plan, Error> {
        count();
        Ok(Plan::new())
    }

    fn health(_: &Value, (): &()) -> Vec<ComponentHealth> {
        let calls = count();
        vec![ComponentHealth::ready(
            "Counter",
            "Counted",
            format!("calls={calls}"),
        )]
    }

    fn status(_: &Value, (): &(), _: &Value) -> StatusUpdate {
        let calls = count();
        StatusUpdate::new().with_fields(&json!({ "calls": calls }))
    }

    fn cleanup(_: &Value) -> Result<capstan_sdk::CleanupOutcome, Error> {
        count();
        Ok(capstan_sdk::CleanupOutcome::Done)
    }
}

capstan_sdk::export!(Stateful: Reconciler);
