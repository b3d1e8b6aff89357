//! A reconciler for `WebApp` whose plan is not deterministic: it plans a ConfigMap stamped with
//! the time of the call (WASI's wall clock), so two renders of the same input differ. `capstan
//! render --check` must find it not deterministic.

use capstan_sdk::k8s_openapi::api::core::v1::ConfigMap;
use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use capstan_sdk::serde_json::{Map, Value};
use capstan_sdk::{Cache, ComponentHealth, Error, Gvk, Manifest, Plan, Plugin, Reconciler};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The restless reconciler.
pub struct Restless;

impl Plugin for Restless {
    fn manifest() -> Manifest {
        Manifest::new("restless-reconciler", "0.1.0")
            .watches_gvk(Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"))
            .owns::<ConfigMap>()
    }
}

impl Reconciler for Restless {
    type Object = Value;
    type Observation = Map<String, Value>;

    fn fetch(_: &Value, _: &Cache) -> Result<Self::Observation, Error> {
        Ok(Map::new())
    }

    fn plan(obj: &Value, _: &Self::Observation) -> Result<Plan, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = obj["metadata"]["name"].as_str().unwrap_or("app");
        let stamped = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{name}-stamp")),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("rendered-at".into(), now.to_string())])),
            ..Default::default()
        };
        let mut plan = Plan::new();
        plan.apply(&stamped)?;
        Ok(plan)
    }

    fn health(_: &Value, _: &Self::Observation) -> Vec<ComponentHealth> {
        vec![ComponentHealth::ready("Stamp", "Stamped", "stamped")]
    }
}

capstan_sdk::export!(Restless: Reconciler);
