use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use capstan_sdk::{Cache, ComponentHealth, Error, Fetched, Plan, Reconciler, health};

/// The label of the ConfigMaps this plugin mirrors (its mirrors do not carry it).
pub const MIRROR_LABEL: &str = "example.capstan.dev/mirror";

/// What `fetch` observed: the mirror, if it exists.
#[derive(Debug)]
pub struct Observed {
    mirror: Fetched<ConfigMap>,
}

/// The name of the mirror of `cm`.
fn mirror_name(cm: &ConfigMap) -> String {
    format!("{}-mirror", cm.metadata.name.as_deref().unwrap_or_default())
}

impl Reconciler for {{Type}} {
    type Object = ConfigMap;
    type Observation = Observed;

    fn fetch(cm: &ConfigMap, cache: &Cache) -> Result<Observed, Error> {
        Ok(Observed {
            mirror: cache.get(cm.metadata.namespace.as_deref(), &mirror_name(cm)),
        })
    }

    /// Pure: the mirror, with the source's data. The host applies it (server-side apply) with an
    /// owner reference to the source, so it goes when the source goes.
    fn plan(cm: &ConfigMap, _: &Observed) -> Result<Plan, Error> {
        let mirror = ConfigMap {
            metadata: ObjectMeta {
                name: Some(mirror_name(cm)),
                namespace: cm.metadata.namespace.clone(),
                ..Default::default()
            },
            data: cm.data.clone(),
            ..Default::default()
        };
        let mut plan = Plan::new();
        plan.apply(&mirror)?;
        Ok(plan)
    }

    fn health(_: &ConfigMap, observed: &Observed) -> Vec<ComponentHealth> {
        vec![observed.mirror.inspect(|m| health::exists("Mirror", m))]
    }
}
