//! A reconciler for `WebApp` that does nothing (benchmarks): it owns nothing, fetch observes
//! nothing, the plan is empty and the one component, `App`, is always ready. A reconcile is one
//! reconciliation (open, fetch, health and plan calls) and, the first time, the status write. Conditions are silent, so
//! the host publishes no Events (a native controller doing the same work publishes none either).

use capstan_sdk::serde_json::{Map, Value};
use capstan_sdk::{
    Cache, ComponentHealth, Error, Gvk, Manifest, Observability, Plan, Plugin, Reconciler,
};

/// The no-op WebApp reconciler.
pub struct NoopWebApp;

impl Plugin for NoopWebApp {
    fn manifest() -> Manifest {
        Manifest::new("noop-webapp", "0.1.0")
            .watches_gvk(Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"))
            .observability(Observability::Silent)
    }
}

impl Reconciler for NoopWebApp {
    type Object = Value;
    type Observation = Map<String, Value>;

    fn fetch(_: &Value, _: &Cache) -> Result<Self::Observation, Error> {
        Ok(Map::new())
    }

    fn plan(_: &Value, _: &Self::Observation) -> Result<Plan, Error> {
        Ok(Plan::new())
    }

    fn health(_: &Value, _: &Self::Observation) -> Vec<ComponentHealth> {
        vec![ComponentHealth::ready("App", "Running", "nothing to do")]
    }
}

capstan_sdk::export!(NoopWebApp: Reconciler);
