//! A reconciler for `WebApp` (examples.capstan.dev/v1alpha1): a Deployment and a Service per app.

use capstan_sdk::crd::{CustomResource, JsonSchema};
use capstan_sdk::k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use capstan_sdk::k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use capstan_sdk::{
    Cache, ComponentHealth, Error, Fetched, Gvk, Manifest, ObjectKind, Plan, Plugin, Reconciler,
    health,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// `#[derive(CustomResource)]` makes the `WebApp` custom resource of its spec; its CRD is
// `examples/webapp-crd.yaml`, generated (the test `the_example_crd_is_generated_from_the_types`).
/// The desired state of a WebApp.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "examples.capstan.dev",
    version = "v1alpha1",
    kind = "WebApp",
    namespaced,
    shortname = "wa",
    status = "WebAppStatus",
    printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.image"}"#,
    printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[kube(crates(
    kube_core = "capstan_sdk::crd::kube_core",
    k8s_openapi = "capstan_sdk::k8s_openapi",
    schemars = "capstan_sdk::crd::schemars",
    serde_json = "capstan_sdk::serde_json"
))]
#[schemars(crate = "capstan_sdk::crd::schemars")]
pub struct WebAppSpec {
    /// Container image.
    pub image: String,
    /// Number of pods.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Port the container listens on and the Service exposes.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn one() -> i32 {
    1
}

/// The status the host writes: conditions and any fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "capstan_sdk::crd::schemars")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct WebAppStatus {}

impl ObjectKind for WebApp {
    /// The host refuses this plugin if it watches anything but WebApps.
    fn object_kind() -> Option<Gvk> {
        Some(Gvk::of_custom::<WebApp>())
    }
}

/// What the reconciler observed: its two children.
#[derive(Debug)]
pub struct Observed {
    deployment: Fetched<Deployment>,
    service: Fetched<Service>,
}

/// The WebApp reconciler.
pub struct WebAppReconciler;

impl Plugin for WebAppReconciler {
    fn manifest() -> Manifest {
        Manifest::new("webapp", "0.1.0")
            .watches_gvk(Gvk::of_custom::<WebApp>())
            .owns::<Deployment>()
            .owns::<Service>()
    }
}

impl Reconciler for WebAppReconciler {
    type Object = WebApp;
    type Observation = Observed;

    fn fetch(app: &WebApp, cache: &Cache) -> Result<Observed, Error> {
        let (ns, name) = (
            app.metadata.namespace.as_deref(),
            app.metadata.name.as_deref().unwrap_or_default(),
        );
        Ok(Observed {
            deployment: cache.get(ns, name),
            service: cache.get(ns, name),
        })
    }

    fn plan(app: &WebApp, _: &Observed) -> Result<Plan, Error> {
        if app.spec.image.is_empty() || app.spec.port <= 0 {
            return Err(Error::invalid_spec(
                "spec.image must be set and spec.port positive",
            ));
        }
        let mut plan = Plan::new();
        plan.apply(&deployment(app))?.apply(&service(app))?;
        Ok(plan)
    }

    fn health(_: &WebApp, observed: &Observed) -> Vec<ComponentHealth> {
        vec![
            observed
                .deployment
                .inspect(|d| health::deployment("Deployment", d)),
            observed.service.inspect(|s| health::exists("Service", s)),
        ]
    }
}

capstan_sdk::export!(WebAppReconciler: Reconciler);

fn meta(app: &WebApp) -> ObjectMeta {
    ObjectMeta {
        name: app.metadata.name.clone(),
        namespace: app.metadata.namespace.clone(),
        labels: Some(labels(app)),
        ..Default::default()
    }
}

fn labels(app: &WebApp) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app".to_owned(),
        app.metadata.name.clone().unwrap_or_default(),
    )])
}

fn deployment(app: &WebApp) -> Deployment {
    let container = Container {
        name: "web".into(),
        image: Some(app.spec.image.clone()),
        ports: Some(vec![ContainerPort {
            container_port: app.spec.port,
            ..Default::default()
        }]),
        ..Default::default()
    };
    Deployment {
        metadata: meta(app),
        spec: Some(DeploymentSpec {
            replicas: Some(app.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels(app)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(app)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(app: &WebApp) -> Service {
    Service {
        metadata: meta(app),
        spec: Some(ServiceSpec {
            selector: Some(labels(app)),
            ports: Some(vec![ServicePort {
                port: app.spec.port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_sdk::HealthState;
    use capstan_sdk::testing;
    use proptest::prelude::*;

    fn app() -> WebApp {
        let mut app = WebApp::new(
            "shop",
            WebAppSpec {
                image: "nginx:1.27".into(),
                replicas: 2,
                port: 8080,
            },
        );
        app.metadata.namespace = Some("default".into());
        app
    }

    /// `examples/webapp-crd.yaml`: the CRD of [`WebApp`], then the sample `shop`. Fails when the
    /// file and the types drift apart; `UPDATE_EXPECT=1 cargo test --manifest-path
    /// guests/Cargo.toml -p webapp` regenerates it.
    #[test]
    fn the_example_crd_is_generated_from_the_types() {
        use capstan_sdk::crd::CustomResourceExt;
        let crd = serde_saphyr::to_string(&WebApp::crd()).unwrap();
        let sample = serde_saphyr::to_string(&app()).unwrap();
        let file = format!(
            "# Generated from the WebApp types of guests/webapp (do not edit by hand: \
             UPDATE_EXPECT=1 cargo test --manifest-path guests/Cargo.toml -p webapp).\n\
             {crd}---\n{sample}"
        );
        expect_test::expect_file![concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/webapp-crd.yaml"
        )]
        .assert_eq(&file);
    }

    #[test]
    fn plans_a_deployment_and_a_service_named_after_the_app() {
        let observed = WebAppReconciler::fetch(&app(), &Cache::from_objects(vec![])).unwrap();
        let plan = WebAppReconciler::plan(&app(), &observed).unwrap();
        let kinds: Vec<_> = plan
            .applied()
            .map(|o| (o["kind"].clone(), o["metadata"]["name"].clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("Deployment".into(), "shop".into()),
                ("Service".into(), "shop".into())
            ]
        );
        let dep = plan.applied().next().unwrap();
        assert_eq!(dep["spec"]["replicas"], 2);
        assert_eq!(
            dep["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
    }

    #[test]
    fn missing_children_are_progressing() {
        let observed = WebAppReconciler::fetch(&app(), &Cache::from_objects(vec![])).unwrap();
        let health = WebAppReconciler::health(&app(), &observed);
        assert!(health.iter().all(|h| h.state == HealthState::Progressing));
    }

    /// WebApps with varied metadata (names, namespaces, labels, generations) and specs.
    fn webapps() -> impl Strategy<Value = WebApp> {
        (
            testing::object_meta(),
            "[a-z]{1,10}(:[0-9]{1,3}(\\.[0-9]{1,3}){0,2})?",
            testing::replicas(),
            1..65535i32,
        )
            .prop_map(|(metadata, image, replicas, port)| WebApp {
                metadata,
                spec: WebAppSpec {
                    image,
                    replicas,
                    port,
                },
                status: None,
            })
    }

    proptest! {
        #[test]
        fn the_plan_is_deterministic_and_idempotent(app in webapps()) {
            let obj = capstan_sdk::serde_json::to_value(&app).unwrap();
            testing::plan_contract::<WebAppReconciler>(&obj, &[])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }

        #[test]
        fn children_carry_the_app_name_namespace_and_replicas(app in webapps()) {
            let observed = WebAppReconciler::fetch(&app, &Cache::from_objects(vec![])).unwrap();
            let plan = WebAppReconciler::plan(&app, &observed).unwrap();
            for child in plan.applied() {
                prop_assert_eq!(&child["metadata"]["name"], app.metadata.name.as_deref().unwrap());
                prop_assert_eq!(
                    &child["metadata"]["namespace"],
                    app.metadata.namespace.as_deref().unwrap()
                );
            }
            let dep = plan.applied().next().unwrap();
            prop_assert_eq!(&dep["spec"]["replicas"], app.spec.replicas);
        }
    }

    #[test]
    fn invalid_spec_is_refused() {
        let mut bad = app();
        bad.spec.port = 0;
        let observed = WebAppReconciler::fetch(&bad, &Cache::from_objects(vec![])).unwrap();
        assert!(WebAppReconciler::plan(&bad, &observed).is_err());
    }
}
