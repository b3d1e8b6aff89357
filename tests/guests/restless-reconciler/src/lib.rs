//! A reconciler for `WebApp` whose plan never stands still, by the object's name:
//!
//! - a name ending in `-counting`: it plans a ConfigMap `<name>-stamp` whose `count` is one more
//!   than the one it observed: deterministic (the same input plans the same), but every plan
//!   carried out calls for another: `capstan render --check` must find it not idempotent;
//! - any other name: the ConfigMap is stamped with the time of the call (WASI's wall clock), so two
//!   renders of the same input differ: not deterministic.

use capstan_sdk::k8s_openapi::api::core::v1::ConfigMap;
use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use capstan_sdk::serde_json::Value;
use capstan_sdk::{
    Cache, ComponentHealth, Error, Fetched, Gvk, Manifest, Plan, Plugin, Reconciler,
};
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
    /// The count the stamp ConfigMap holds, if any.
    type Observation = Option<u64>;

    fn fetch(obj: &Value, cache: &Cache) -> Result<Self::Observation, Error> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("app");
        let stamp: Fetched<ConfigMap> =
            cache.get(obj["metadata"]["namespace"].as_str(), &format!("{name}-stamp"));
        Ok(stamp
            .found()
            .and_then(|c| c.data.as_ref()?.get("count")?.parse().ok()))
    }

    fn plan(obj: &Value, count: &Self::Observation) -> Result<Plan, Error> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("app");
        let data = if name.ends_with("-counting") {
            ("count", (count.unwrap_or(0) + 1).to_string())
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            ("rendered-at", now.to_string())
        };
        let stamped = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{name}-stamp")),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(data.0.to_owned(), data.1)])),
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
