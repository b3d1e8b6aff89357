//! The reconcile loop end to end against the embedded API server, with the real `webapp` and
//! `infra-cluster` guests: children and owner references, conditions and phases from health,
//! drift, pruning, access refusal, transient and terminal failures, phase timeouts, restarts,
//! events, hot swaps, owner waits, decorated status and status propagation to an owner.
#![allow(clippy::unwrap_used)]

use crate::support::eventually;
use capstan::contract::{AccessRule, Gvk, Verb};
use capstan::informer::Informers;
use capstan::plugin::{Plugin, PluginSettings, Runtime};
use capstan::reconcile::{Controller, ControllerConfig};
use capstan_apiserver::RunningServer;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const GROUP: &str = "examples.capstan.dev";

/// An embedded API server with the examples applied (the WebApp `shop`, the Cluster `demo` with
/// an endpoint, the InfraCluster `demo` without owner).
struct Env {
    server: RunningServer,
    client: kube::Client,
}

impl Env {
    async fn start() -> Self {
        let server = crate::support::apiserver().await;
        let client = server.client().unwrap();
        capstan::manifests::apply_dir(&client, &crate::support::root().join("examples"))
            .await
            .unwrap();
        Self { server, client }
    }

    fn api(&self, ar: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), "default", ar)
    }

    fn custom(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        self.api(&ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(GROUP, "v1alpha1", kind),
            plural,
        ))
    }

    fn webapps(&self) -> Api<DynamicObject> {
        self.custom("WebApp", "webapps")
    }

    fn clusters(&self) -> Api<DynamicObject> {
        self.custom("Cluster", "clusters")
    }

    fn infraclusters(&self) -> Api<DynamicObject> {
        self.custom("InfraCluster", "infraclusters")
    }

    fn deployments(&self) -> Api<DynamicObject> {
        self.api(&ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()))
    }

    fn services(&self) -> Api<DynamicObject> {
        self.api(&ApiResource::erase::<k8s_openapi::api::core::v1::Service>(
            &(),
        ))
    }

    fn configmaps(&self) -> Api<DynamicObject> {
        self.api(&ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()))
    }

    async fn controller(&self, plugin: Plugin, config: ControllerConfig) -> Controller {
        self.controller_with(plugin, config, self.client.clone())
            .await
    }

    /// A controller whose API writes go through `client` (informers use the plain client).
    async fn controller_with(
        &self,
        plugin: Plugin,
        config: ControllerConfig,
        client: kube::Client,
    ) -> Controller {
        Controller::start(plugin, &Informers::new(self.client.clone()), client, config)
            .await
            .unwrap()
    }

    async fn shutdown(self) {
        self.server.shutdown().await.unwrap();
    }
}

async fn load(name: &str) -> Plugin {
    Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&crate::support::guest(name))
        .await
        .unwrap()
}

/// Fast retries, everything else default.
fn fast() -> ControllerConfig {
    ControllerConfig {
        retry: crate::support::fast_retry(),
        ..ControllerConfig::default()
    }
}

/// `fast()` with one worker (keys are reconciled in queue order) and phase `Creating` limited to
/// one second.
fn creating_times_out() -> ControllerConfig {
    ControllerConfig {
        concurrency: 1,
        phase_timeouts: HashMap::from([("Creating".to_owned(), Duration::from_secs(1))]),
        ..fast()
    }
}

/// Another writer sets Deployment `shop` to 7 replicas; the controller sets it back to `planned`.
async fn drift_is_corrected(deployments: &Api<DynamicObject>, planned: i64) {
    deployments
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    eventually("drift corrected", async || {
        (deployments.get("shop").await.unwrap().data["spec"]["replicas"] == planned).then_some(())
    })
    .await;
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// The object once its status satisfies `ok`.
async fn status_until(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, async || {
        let o = get(api, name).await;
        ok(&o).then_some(o)
    })
    .await
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn condition_is(obj: &Value, t: &str, status: &str) -> bool {
    condition(obj, t).is_some_and(|c| c["status"] == status)
}

fn phase(obj: &Value) -> &str {
    obj.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn web_app(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "nginx:1.27", "replicas": 1, "port": 8080}
    }))
    .unwrap()
}

fn service_owned_by(name: &str, owner_uid: &str, controller: bool) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "ownerReferences": [{
            "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp", "name": "shop",
            "uid": owner_uid, "controller": controller
        }]},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap()
}

/// Server-side apply `obj` as the `webapp` plugin's field manager does: an object the plugin
/// created.
async fn applied_by_webapp(api: &Api<DynamicObject>, obj: &DynamicObject) {
    let name = obj.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("capstan-webapp"),
        &Patch::Apply(obj),
    )
    .await
    .unwrap();
}

async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .unwrap();
}

/// Mark the Deployment `name` as rolled out (no deployment controller runs here).
async fn roll_out(env: &Env, name: &str, replicas: i64) {
    let ready = json!({"status": {"replicas": replicas, "availableReplicas": replicas,
                                  "updatedReplicas": replicas, "readyReplicas": replicas}});
    env.deployments()
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
}

/// Create a WebApp and wait until a controller wrote its status: with one worker, every key
/// queued before it has been reconciled by then.
async fn barrier(env: &Env, name: &str) {
    env.webapps()
        .create(&PostParams::default(), &web_app(name))
        .await
        .unwrap();
    status_until(&env.webapps(), name, "the barrier's status", |o| {
        !phase(o).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webapp_is_reconciled_into_a_deployment_and_a_service() {
    let env = Env::start().await;
    let controller = env.controller(load("webapp").await, fast()).await;
    let (deployments, services, webapps) = (env.deployments(), env.services(), env.webapps());
    let uid = webapps.get("shop").await.unwrap().metadata.uid.unwrap();

    let dep = eventually("the deployment", async || {
        deployments.get_opt("shop").await.unwrap()
    })
    .await;
    let owner = &dep.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("WebApp", uid.as_str(), Some(true))
    );
    assert_eq!(dep.data["spec"]["replicas"], 2);
    let managers: Vec<_> = dep
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"capstan-webapp".to_owned()),
        "{managers:?}"
    );
    eventually("the service", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;

    // The Deployment has no available replicas yet: progressing, phase Creating.
    let status = status_until(
        &webapps,
        "shop",
        "a progressing status with the service ready",
        |o| {
            o.pointer("/status/status") == Some(&json!("Progressing"))
                && condition_is(o, "ServiceReady", "True")
        },
    )
    .await;
    assert!(condition_is(&status, "DeploymentReady", "False"));
    assert!(condition_is(&status, "Ready", "False"));
    assert!(condition_is(&status, "ConfigValid", "True"));
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(phase(&status), "Creating");
    assert!(status["status"]["lastPhaseTransitionTime"].is_string());
    assert!(status["status"].get("failureReason").is_none());
    let service_since = condition(&status, "ServiceReady").unwrap()["lastTransitionTime"].clone();

    // Replicas become available; the owner is requeued and becomes Ready.
    roll_out(&env, "shop", 2).await;
    let status = status_until(&webapps, "shop", "a ready status", |o| phase(o) == "Ready").await;
    assert_eq!(status["status"]["status"], "Ready");
    assert!(condition_is(&status, "Ready", "True"));
    assert_eq!(
        condition(&status, "ServiceReady").unwrap()["lastTransitionTime"],
        service_since,
        "unchanged status keeps its transition time"
    );

    // The transition to Ready was recorded as a Normal event by controller capstan.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), "default");
    let event = eventually("a Ready event", async || {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("shop")
                    && e.reason.as_deref() == Some("AllComponentsReady")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(event.reporting_controller.as_deref(), Some("capstan"));
    assert_eq!(event.reporting_instance.as_deref(), Some("webapp"));
    assert_eq!(event.action.as_deref(), Some("Reconcile"));
    assert!(event.note.unwrap().starts_with("Ready is True"));
    // The same Event, as `kubectl describe webapp shop` finds it: a core v1 Event selected by
    // its involved object (one store behind both APIs, as on a cluster).
    let described: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(env.client.clone(), "default");
    let core = described
        .list(&ListParams::default().fields("involvedObject.name=shop,reason=AllComponentsReady"))
        .await
        .unwrap()
        .items;
    assert!(!core.is_empty(), "no core v1 Event for shop");
    assert_eq!(core[0].reporting_component.as_deref(), Some("capstan"));
    assert!(
        core[0]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Ready is True"))
    );

    // A spec change reaches the child; the app was Ready, so it is Updating.
    patch_spec(&webapps, "shop", json!({"replicas": 3})).await;
    eventually("replicas 3", async || {
        (deployments.get("shop").await.unwrap().data["spec"]["replicas"] == 3).then_some(())
    })
    .await;
    status_until(&webapps, "shop", "phase Updating", |o| {
        phase(o) == "Updating" && o["status"]["observedGeneration"] == 2
    })
    .await;

    // Drift on the child is corrected.
    drift_is_corrected(&deployments, 3).await;

    // A child deleted by hand comes back.
    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the service recreated", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;

    // A spec the CRD's schema accepts and the plugin refuses (an empty image) fails the resource
    // terminally: ConfigValid=False, failureReason. (A port of 0 never gets this far: the schema's
    // minimum refuses it, as on a cluster.)
    patch_spec(&webapps, "shop", json!({"image": ""})).await;
    let failed = status_until(&webapps, "shop", "a failed status", |o| {
        phase(o) == "Failed"
    })
    .await;
    assert_eq!(failed["status"]["status"], "Failed");
    assert!(condition_is(&failed, "ConfigValid", "False"));
    assert!(condition_is(&failed, "Ready", "False"));
    assert_eq!(failed["status"]["failureReason"], "InvalidSpec");
    assert!(
        failed["status"]["failureMessage"]
            .as_str()
            .unwrap()
            .contains("spec.port"),
        "{failed}"
    );

    // Fixing the spec clears the failure.
    patch_spec(&webapps, "shop", json!({"image": "nginx:1.27"})).await;
    let fixed = status_until(&webapps, "shop", "the failure cleared", |o| {
        phase(o) != "Failed" && o["status"]["observedGeneration"] == 4
    })
    .await;
    assert!(fixed["status"].get("failureReason").is_none(), "{fixed}");
    assert!(condition_is(&fixed, "ConfigValid", "True"));

    // Deleting the WebApp takes its children with it (garbage collection through owner
    // references); the reconcile their deletion triggers, with the WebApp maybe still in its
    // cache, does not bring them back.
    webapps
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    eventually("children collected", async || {
        (deployments.get_opt("shop").await.unwrap().is_none()
            && services.get_opt("shop").await.unwrap().is_none())
        .then_some(())
    })
    .await;

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_no_longer_planned_are_pruned() {
    let env = Env::start().await;
    let controller = env.controller(load("webapp").await, fast()).await;
    let services = env.services();
    eventually("the service", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;
    let uid = env
        .webapps()
        .get("shop")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();

    // Not controlled by the WebApp (controller=false): not the plugin's to prune.
    services
        .create(
            &PostParams::default(),
            &service_owned_by("shop-shared", &uid, false),
        )
        .await
        .unwrap();
    // Controlled by the WebApp, applied by the plugin (as an earlier version of it would have),
    // and not in its plan: pruned.
    applied_by_webapp(&services, &service_owned_by("shop-extra", &uid, true)).await;
    eventually("the extra service pruned", async || {
        services
            .get_opt("shop-extra")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(services.get_opt("shop-shared").await.unwrap().is_some());
    assert!(
        services.get_opt("shop").await.unwrap().is_some(),
        "planned children stay"
    );

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_can_be_turned_off() {
    let env = Env::start().await;
    let config = ControllerConfig {
        prune: false,
        concurrency: 1,
        ..fast()
    };
    let controller = env.controller(load("webapp").await, config).await;
    let services = env.services();
    eventually("the service", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;
    let uid = env
        .webapps()
        .get("shop")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    applied_by_webapp(&services, &service_owned_by("shop-extra", &uid, true)).await;
    // The extra Service requeued `shop`; a later reconcile (to Ready) has seen it.
    roll_out(&env, "shop", 2).await;
    status_until(&env.webapps(), "shop", "a ready status", |o| {
        phase(o) == "Ready"
    })
    .await;
    barrier(&env, "zz-barrier").await;
    assert!(services.get_opt("shop-extra").await.unwrap().is_some());

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_outside_the_manifest_is_refused_as_auth_and_nothing_is_applied() {
    let env = Env::start().await;
    // The operator allows the WebApp and Deployments, and only reading Services: the Service the
    // plan holds is refused.
    let webapp = Gvk::new(GROUP, "v1alpha1", "WebApp");
    let deployment = Gvk::new("apps", "v1", "Deployment");
    let read = vec![Verb::Get, Verb::List, Verb::Watch];
    let settings = PluginSettings {
        allow: Some(vec![
            AccessRule::new(webapp, read.clone()),
            // Services may be read (so the fetch phase sees none), not applied.
            AccessRule::new(Gvk::new("", "v1", "Service"), read.clone()),
            AccessRule::new(deployment, [read, vec![Verb::Patch, Verb::Delete]].concat()),
        ]),
        ..PluginSettings::default()
    };
    let plugin = load("webapp").await.configure(&settings, None);
    assert!(
        !plugin
            .manifest()
            .owns
            .contains(&Gvk::new("", "v1", "Service"))
    );
    let controller = env.controller(plugin, fast()).await;
    let failed = status_until(&env.webapps(), "shop", "a failed status", |o| {
        phase(o) == "Failed"
    })
    .await;
    let auth = condition(&failed, "AuthValid").unwrap();
    assert_eq!(
        (&auth["status"], &auth["reason"]),
        (&json!("False"), &json!("AuthFailed"))
    );
    let message = auth["message"].as_str().unwrap();
    assert!(
        message.contains("plugin webapp may not apply Service default/shop"),
        "{message}"
    );
    assert!(condition_is(&failed, "ApplyReady", "False"));
    assert_eq!(failed["status"]["failureReason"], "AuthFailed");
    assert!(
        env.deployments().get_opt("shop").await.unwrap().is_none(),
        "a refused plan applies nothing"
    );
    assert!(env.services().get_opt("shop").await.unwrap().is_none());

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Fails PATCH requests to Deployments while set, as if the API server could not be reached.
#[derive(Clone)]
struct Fault(Arc<AtomicBool>);

struct Faulty<S> {
    inner: S,
    on: Arc<AtomicBool>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S> tower::Layer<S> for Fault {
    type Service = Faulty<S>;

    fn layer(&self, inner: S) -> Faulty<S> {
        Faulty {
            inner,
            on: self.0.clone(),
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Faulty<S>
where
    S: tower::Service<http::Request<B>, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.on.load(Ordering::SeqCst)
            && req.method() == http::Method::PATCH
            && req.uri().path().contains("/deployments/")
        {
            return Box::pin(std::future::ready(Err(
                "injected fault: connection refused".into(),
            )));
        }
        Box::pin(self.inner.call(req))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infrastructure_errors_are_retried_and_count_after_the_grace_period() {
    let env = Env::start().await;
    let on = Arc::new(AtomicBool::new(true));
    let faulty = kube::client::ClientBuilder::try_from(env.server.kube_config().unwrap())
        .unwrap()
        .with_layer(&Fault(on.clone()))
        .build();
    let config = ControllerConfig {
        grace: Duration::from_secs(2),
        ..fast()
    };
    let controller = env
        .controller_with(load("webapp").await, config, faulty)
        .await;
    let webapps = env.webapps();

    // Within the grace period: progressing, DependenciesReachable Unknown.
    let retrying = status_until(&webapps, "shop", "a retrying status", |o| {
        condition(o, "DependenciesReachable").is_some_and(|c| c["reason"] == "Retrying")
    })
    .await;
    assert_eq!(retrying["status"]["status"], "Progressing");
    assert!(condition_is(&retrying, "DependenciesReachable", "Unknown"));
    assert_eq!(phase(&retrying), "Creating");
    // After it: degraded, DependenciesReachable False; still not a terminal failure.
    let degraded = status_until(&webapps, "shop", "a degraded status", |o| {
        o.pointer("/status/status") == Some(&json!("Degraded"))
    })
    .await;
    assert!(condition_is(&degraded, "DependenciesReachable", "False"));
    assert!(condition_is(&degraded, "ApplyReady", "False"));
    assert!(degraded["status"].get("failureReason").is_none());
    assert_eq!(phase(&degraded), "Creating");
    assert!(env.deployments().get_opt("shop").await.unwrap().is_none());

    // The API server is back: the backoff requeue alone converges, no other event needed.
    on.store(false, Ordering::SeqCst);
    eventually("the deployment after recovery", async || {
        env.deployments().get_opt("shop").await.unwrap()
    })
    .await;
    status_until(&webapps, "shop", "dependencies reachable again", |o| {
        condition_is(o, "DependenciesReachable", "True")
    })
    .await;

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_timeout_fails_the_object_until_its_spec_changes() {
    let env = Env::start().await;
    let controller = env
        .controller(load("webapp").await, creating_times_out())
        .await;
    let (webapps, services) = (env.webapps(), env.services());
    // The Deployment never becomes available: Creating times out, with no other event.
    let failed = status_until(&webapps, "shop", "a creating timeout", |o| {
        phase(o) == "Failed"
    })
    .await;
    assert_eq!(failed["status"]["failureReason"], "CreatingTimeout");
    assert_eq!(
        failed["status"]["failureMessage"],
        "phase Creating lasted longer than 1s"
    );
    assert_eq!(failed["status"]["status"], "Failed");
    let ready = condition(&failed, "Ready").unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("CreatingTimeout"))
    );
    assert!(services.get_opt("shop").await.unwrap().is_some());

    // No further action: a child deleted by hand stays deleted.
    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    crate::support::never_within(
        Duration::from_millis(300),
        "the child deleted by hand came back",
        async || services.get_opt("shop").await.unwrap().is_some(),
    )
    .await;
    barrier(&env, "zz-barrier").await;
    assert!(services.get_opt("shop").await.unwrap().is_none());
    assert_eq!(
        get(&webapps, "shop").await["status"]["failureReason"],
        "CreatingTimeout"
    );

    // A spec change is tried again.
    patch_spec(&webapps, "shop", json!({"replicas": 4})).await;
    eventually("the service recreated after the spec change", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;
    assert_eq!(
        env.deployments().get("shop").await.unwrap().data["spec"]["replicas"],
        4
    );

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_failure_survives_a_restart() {
    let env = Env::start().await;
    let (webapps, services) = (env.webapps(), env.services());
    let first = env
        .controller(load("webapp").await, creating_times_out())
        .await;
    status_until(&webapps, "shop", "a creating timeout", |o| {
        phase(o) == "Failed"
    })
    .await;
    first.shutdown(Duration::from_secs(5)).await;

    // While no controller runs, a child goes and another WebApp comes (named to be queued last).
    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    let second = env
        .controller(load("webapp").await, creating_times_out())
        .await;
    barrier(&env, "zz-barrier").await;
    // The new controller read the failure from the stored status: nothing was done.
    assert!(services.get_opt("shop").await.unwrap().is_none());
    assert_eq!(
        get(&webapps, "shop").await["status"]["failureReason"],
        "CreatingTimeout"
    );

    patch_spec(&webapps, "shop", json!({"replicas": 3})).await;
    eventually("the service recreated after the spec change", async || {
        services.get_opt("shop").await.unwrap()
    })
    .await;

    second.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_converges() {
    let env = Env::start().await;
    let (webapps, deployments, services) = (env.webapps(), env.deployments(), env.services());
    let first = env.controller(load("webapp").await, fast()).await;
    eventually("the children", async || {
        (deployments.get_opt("shop").await.unwrap().is_some()
            && services.get_opt("shop").await.unwrap().is_some())
        .then_some(())
    })
    .await;
    first.shutdown(Duration::from_secs(5)).await;

    // Changes while no controller runs are not lost.
    patch_spec(&webapps, "shop", json!({"replicas": 4})).await;
    services
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    let second = env.controller(load("webapp").await, fast()).await;
    eventually("converged after the restart", async || {
        (deployments.get("shop").await.unwrap().data["spec"]["replicas"] == 4
            && services.get_opt("shop").await.unwrap().is_some())
        .then_some(())
    })
    .await;
    status_until(&webapps, "shop", "the new generation observed", |o| {
        o["status"]["observedGeneration"] == 2
    })
    .await;

    second.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_with_the_same_kinds_is_swapped_in_place() {
    let env = Env::start().await;
    let controller = env.controller(load("webapp").await, fast()).await;
    let deployments = env.deployments();
    eventually("the deployment", async || {
        deployments.get_opt("shop").await.unwrap()
    })
    .await;

    let reloaded = load("webapp").await;
    controller.swap(reloaded.clone()).unwrap();
    assert_eq!(controller.plugin().info().hash, reloaded.info().hash);

    // Owning fewer kinds needs a new controller.
    let narrowed = reloaded.configure(
        &PluginSettings {
            allow: Some(vec![
                AccessRule::new(
                    Gvk::new(GROUP, "v1alpha1", "WebApp"),
                    vec![Verb::Get, Verb::List, Verb::Watch],
                ),
                AccessRule::new(
                    Gvk::new("apps", "v1", "Deployment"),
                    vec![Verb::Watch, Verb::Patch],
                ),
            ]),
            ..PluginSettings::default()
        },
        None,
    );
    let e = controller.swap(narrowed).unwrap_err();
    assert!(e.to_string().contains("the owned kinds change"), "{e}");
    assert!(e.to_string().contains("start a new one"), "{e}");

    // The swapped-in plugin reconciles.
    patch_spec(&env.webapps(), "shop", json!({"replicas": 5})).await;
    eventually("replicas 5", async || {
        (deployments.get("shop").await.unwrap().data["spec"]["replicas"] == 5).then_some(())
    })
    .await;

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Give the InfraCluster `demo` an owner reference to the Cluster `demo`.
async fn adopt(env: &Env) {
    let uid = env
        .clusters()
        .get("demo")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    env.infraclusters()
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [{
                "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "Cluster",
                "name": "demo", "uid": uid, "controller": true
            }]}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infra_cluster_waits_for_its_owner_and_decorates_its_status() {
    let env = Env::start().await;
    let controller = env.controller(load("infra-cluster").await, fast()).await;
    let infra = env.infraclusters();

    // No owner reference yet: status only, phase Pending, nothing applied.
    let pending = status_until(&infra, "demo", "phase Pending", |o| phase(o) == "Pending").await;
    let owner = condition(&pending, "OwnerReferenceSet").unwrap();
    assert_eq!(
        (&owner["status"], &owner["reason"]),
        (&json!("False"), &json!("WaitingForOwner"))
    );
    assert!(
        env.configmaps()
            .get_opt("demo-vpc")
            .await
            .unwrap()
            .is_none()
    );

    // The owner reference appears: the object proceeds.
    adopt(&env).await;
    let ready = status_until(&infra, "demo", "phase Ready", |o| phase(o) == "Ready").await;
    let status = &ready["status"];
    assert!(condition_is(&ready, "OwnerReferenceSet", "True"));
    assert!(condition_is(&ready, "VpcReady", "True"));
    assert!(condition_is(&ready, "ControlPlaneEndpointReady", "True"));
    assert!(condition_is(&ready, "Ready", "True"));
    assert_eq!(status["status"], "Ready");
    // Decorated by the plugin.
    assert_eq!(status["ready"], true);
    assert!(status["vpcId"].as_str().unwrap().starts_with("vpc-"));
    assert_eq!(status["controlPlaneEndpoint"]["host"], "10.0.0.1");
    assert!(status["failureDomains"].get("eu-west-1a").is_some());
    let vpc = env.configmaps().get("demo-vpc").await.unwrap();
    assert_eq!(
        vpc.metadata.owner_references.unwrap()[0].kind,
        "InfraCluster"
    );

    // The owner's status, through its status subresource.
    status_until(
        &env.clusters(),
        "demo",
        "infrastructure ready on the Cluster",
        |o| o.pointer("/status/infrastructureReady") == Some(&json!(true)),
    )
    .await;

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infra_cluster_times_out_and_reports_the_failure_to_its_cluster() {
    let env = Env::start().await;
    // No endpoint anywhere: the InfraCluster cannot leave phase Creating.
    env.clusters()
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"controlPlaneEndpoint": null}})),
        )
        .await
        .unwrap();
    adopt(&env).await;
    let controller = env
        .controller(load("infra-cluster").await, creating_times_out())
        .await;

    let failed = status_until(&env.infraclusters(), "demo", "a creating timeout", |o| {
        phase(o) == "Failed"
    })
    .await;
    let status = &failed["status"];
    assert_eq!(status["failureReason"], "CreatingTimeout");
    assert!(condition_is(&failed, "ControlPlaneEndpointReady", "False"));
    assert_eq!(
        condition(&failed, "Ready").unwrap()["reason"],
        "CreatingTimeout"
    );
    assert_eq!(status["ready"], false, "decorated on failure too");

    // The failure reaches the owner.
    let cluster = status_until(&env.clusters(), "demo", "the failure on the Cluster", |o| {
        o.pointer("/status/failureReason") == Some(&json!("CreatingTimeout"))
    })
    .await;
    assert_eq!(cluster["status"]["infrastructureReady"], false);

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// A Deployment `name` in `namespace` with `labels`.
fn labelled_deployment(namespace: &str, name: &str, labels: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"run": name}},
            "template": {
                "metadata": {"labels": {"run": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
            }
        }
    }))
    .unwrap()
}

/// The reconciler path of event filters: the `filtered-controller` guest selects Deployments in
/// `prod` labelled `app=web,tier!=db`. Only those are reconciled (get a status); one that starts
/// matching is reconciled; one that stops matching is forgotten, and its later spec changes do
/// not reach the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_reconciles_only_what_its_event_filter_selects() {
    let env = Env::start().await;
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "prod"}})).unwrap();
    Api::all(env.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let prod = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "prod",
        &ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    let pp = PostParams::default();
    for (api, ns, name, labels) in [
        (&prod, "prod", "web", json!({"app": "web"})),
        (&prod, "prod", "db", json!({"app": "web", "tier": "db"})),
        (&env.deployments(), "default", "web", json!({"app": "web"})),
    ] {
        api.create(&pp, &labelled_deployment(ns, name, labels))
            .await
            .unwrap();
    }
    let controller = env
        .controller(load("filtered-controller").await, fast())
        .await;
    let reconciled = |o: &Value| condition_is(o, "Ready", "True");
    status_until(&prod, "web", "prod/web reconciled", reconciled).await;
    crate::support::never_within(
        Duration::from_secs(2),
        "an object outside the selection was reconciled",
        async || {
            condition(&get(&prod, "db").await, "Ready").is_some()
                || condition(&get(&env.deployments(), "web").await, "Ready").is_some()
        },
    )
    .await;

    // Into the selection: reconciled.
    let relabel = |tier: &str| json!({"metadata": {"labels": {"tier": tier}}});
    prod.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(relabel("front")),
    )
    .await
    .unwrap();
    status_until(&prod, "db", "prod/db reconciled once selected", reconciled).await;

    // Out of the selection: forgotten; a spec change no longer reaches the plugin, while one of
    // a selected object does.
    prod.patch("web", &PatchParams::default(), &Patch::Merge(relabel("db")))
        .await
        .unwrap();
    let observed = |o: &Value| o.pointer("/status/observedGeneration").cloned();
    let before = observed(&get(&prod, "web").await);
    patch_spec(&prod, "web", json!({"replicas": 2})).await;
    patch_spec(&prod, "db", json!({"replicas": 2})).await;
    let generation = get(&prod, "db").await["metadata"]["generation"].clone();
    status_until(&prod, "db", "prod/db's new generation observed", |o| {
        observed(o).as_ref() == Some(&generation)
    })
    .await;
    crate::support::never_within(
        Duration::from_secs(1),
        "a spec change of an object outside the selection was reconciled",
        async || observed(&get(&prod, "web").await) != before,
    )
    .await;

    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// A reconcile that plans what it applied last, to children nobody changed since, applies
/// nothing (`capstan_applies_skipped_total` counts it); a child changed by another writer is
/// still applied over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_child_is_not_applied_again_and_drift_still_is() {
    let env = Env::start().await;
    let metrics = capstan::metrics::Metrics::new();
    let skipped =
        || crate::support::metric_sum(&metrics, "capstan_applies_skipped_total{plugin=\"webapp\"");
    let config = ControllerConfig {
        resync: Duration::from_millis(300),
        metrics: Some(metrics.clone()),
        ..fast()
    };
    let controller = env.controller(load("webapp").await, config).await;
    let deployments = env.deployments();
    eventually("the deployment", async || {
        deployments.get_opt("shop").await.unwrap()
    })
    .await;
    // Resyncs plan the same Deployment and Service: both skipped.
    eventually("applies skipped", async || (skipped() >= 4.0).then_some(())).await;

    drift_is_corrected(&deployments, 2).await;
    controller.shutdown(Duration::from_secs(5)).await;
    env.shutdown().await;
}
