//! Python and JavaScript plugins, first-class: the `py-webapp` reconciler (componentize-py) and
//! the `js-deployment-handler` (componentize-js) examples load in `capstan run` against the
//! embedded API server and do their job beside each other; their stdout and stderr become one log
//! record per line; an uncaught exception fails only that call for that object, never the plugin.
//!
//! The guests are built by `capstan-test-artifacts` when their toolchain is installed; without
//! it these tests say so and pass, unless `CAPSTAN_REQUIRE_TOOLCHAINS=1` (`.ci/run`), where the
//! build fails instead.
#![allow(clippy::unwrap_used)]

use crate::support::{Fields, polyglot_guest, root, tempdir};
use capstan::contract::{CategorizedError, Gvk, HealthState, ObjectRef};
use capstan::plugin::{
    CacheReader, CallError, Grants, HandlerEvent, Planned, PluginState, Runtime,
};
use capstan::runner::{RunConfig, run_with_listener};
use capstan::status::EventStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, PostParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every log record of the current thread, as its fields.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Logs {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

impl Logs {
    /// The messages `plugin` wrote on `stream`, one a record.
    fn lines(&self, plugin: &str, stream: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|f| {
                f.get("plugin").map(String::as_str) == Some(plugin)
                    && f.get("stream").map(String::as_str) == Some(stream)
            })
            .map(|f| f["message"].clone())
            .collect()
    }
}

fn webapp(name: &str, image: &str) -> (ObjectRef, String) {
    let obj = serde_json::json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"image": image, "replicas": 2, "port": 8080}
    });
    (ObjectRef::from_json(&obj).unwrap(), obj.to_string())
}

fn deployment(name: &str) -> (ObjectRef, String) {
    let json = crate::support::deployment_json(name);
    (
        ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap(),
        json,
    )
}

/// A cache with nothing in it.
struct Empty;

impl CacheReader for Empty {
    fn get(&self, _: &Gvk, _: Option<&str>, _: &str) -> Result<Option<String>, CategorizedError> {
        Ok(None)
    }

    fn list(
        &self,
        _: &Gvk,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<String>, CategorizedError> {
        Ok(Vec::new())
    }
}

fn empty_cache() -> Grants {
    Grants {
        cache: Some(Arc::new(Empty)),
        pod_logs: None,
    }
}

/// The plan of one reconcile of `obj` with an empty cache, or how the call failed.
async fn plan(
    plugin: &capstan::plugin::Plugin,
    (oref, obj): (ObjectRef, String),
) -> Result<Vec<Planned>, CallError> {
    let mut r = plugin.reconcile(&oref, &obj).await?.unwrap();
    r.fetch(empty_cache()).await?.unwrap();
    Ok(r.plan().await?.unwrap())
}

/// How long the first reconcile may take: both components compiled on a loaded machine.
const COLD: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "current_thread")]
async fn python_prints_one_record_a_line_and_an_exception_costs_one_call() {
    use tracing_subscriber::layer::SubscriberExt;
    let Some(path) = polyglot_guest("py-webapp") else {
        return;
    };
    let logs = Logs::default();
    // Calls run on this thread: a thread-local subscriber sees the guest's output.
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
    let rt = Runtime::new(crate::support::runtime_config()).unwrap();
    let plugin = rt.load(&path).await.unwrap();
    assert_eq!(plugin.name(), "py-webapp");

    let planned = plan(&plugin, webapp("shop", "nginx:1.27")).await.unwrap();
    let kinds: Vec<_> = planned
        .iter()
        .map(|e| match e {
            Planned::Apply(v) => (
                v["kind"].as_str().unwrap().to_owned(),
                v["metadata"]["name"].clone(),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Deployment".to_owned(), "shop".into()),
            ("Service".to_owned(), "shop".into())
        ]
    );
    // `print(..., end=" ")` then `print(...)`: two writes, one line, one record.
    assert_eq!(
        logs.lines("py-webapp", "stdout"),
        ["planning shop: image nginx:1.27"]
    );

    // An uncaught exception traps the call, the traceback is logged line by line...
    let err = plan(&plugin, webapp("crash", "crash")).await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("WebApp default/crash"), "{err}");
    let stderr = logs.lines("py-webapp", "stderr");
    assert!(
        stderr
            .iter()
            .any(|l| l == "RuntimeError: cannot plan crash"),
        "the exception, alone on its record: {stderr:#?}"
    );
    assert!(stderr.iter().all(|l| !l.contains('\n')), "{stderr:#?}");
    // ...and the plugin serves the next object as before.
    assert_eq!(plugin.state(), PluginState::Running);
    let again = plan(&plugin, webapp("after", "nginx:1.27")).await.unwrap();
    assert_eq!(again.len(), 2);

    // A categorized error is a result, not a failure of the plugin.
    let (oref, obj) = webapp("bad", "");
    let mut r = plugin.reconcile(&oref, &obj).await.unwrap().unwrap();
    r.fetch(empty_cache()).await.unwrap().unwrap();
    let refused = r.plan().await.unwrap().unwrap_err();
    assert_eq!(
        refused.category,
        capstan::contract::ErrorCategory::InvalidSpec
    );
    let health = r.health().await.unwrap();
    assert!(
        health.iter().all(|h| h.state == HealthState::Progressing),
        "{health:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn javascript_logs_one_record_a_line_and_an_exception_costs_one_event() {
    use tracing_subscriber::layer::SubscriberExt;
    let Some(path) = polyglot_guest("js-deployment-handler") else {
        return;
    };
    let logs = Logs::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
    let rt = Runtime::new(crate::support::runtime_config()).unwrap();
    let plugin = rt.load(&path).await.unwrap();

    let (oref, obj) = deployment("web");
    let out = plugin
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    assert_eq!(out.status, EventStatus::Completed);
    assert_eq!(
        logs.lines("js-deployment-handler", "stdout"),
        ["added web: 3 replicas"]
    );

    let (oref, obj) = deployment("crash");
    let err = plugin
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(
        err.to_string().contains("Deployment default/crash"),
        "{err}"
    );
    assert_eq!(plugin.state(), PluginState::Running);

    let (oref, obj) = deployment("after");
    let out = plugin
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    assert_eq!(out.status, EventStatus::Completed);
}

/// `capstan run` with the two examples: the Python reconciler plans the sample WebApp's children,
/// the JavaScript handler handles the Deployment it created; objects that make each throw fail
/// alone, and both plugins keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_examples_serve_in_capstan_run() {
    let (Some(py), Some(js)) = (
        polyglot_guest("py-webapp"),
        polyglot_guest("js-deployment-handler"),
    ) else {
        return;
    };
    let server = crate::support::apiserver().await;
    let client = server.client().unwrap();
    let plugins = tempdir();
    std::fs::copy(&py, plugins.path().join("py-webapp.wasm")).unwrap();
    std::fs::copy(&js, plugins.path().join("js-deployment-handler.wasm")).unwrap();
    let manifests = tempdir();
    std::fs::copy(
        root().join("examples/webapp-crd.yaml"),
        manifests.path().join("webapp.yaml"),
    )
    .unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let mut config = RunConfig::new(plugins.path());
    config.manifests = Some(manifests.path().to_owned());
    config.cache_dir = Some(crate::support::precompiled_cache_dir());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let host = tokio::spawn(run_with_listener(
        config,
        client.clone(),
        Some(http),
        async {
            let _ = stopped.await;
        },
    ));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let exists = async |name: &str| {
        tokio::time::sleep(Duration::from_millis(50)).await;
        deployments.get(name).await.is_ok() && services.get(name).await.is_ok()
    };
    // The first wait covers compiling both components (about 8 s each on one core) when the
    // precompiled cache is cold.
    crate::support::eventually_within(
        COLD,
        "py-webapp plans shop's Deployment and Service",
        async || exists("shop").await.then_some(()),
    )
    .await;
    let metric = async |line: &str| -> u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let body = crate::support::http_get(addr.port(), "/metrics").unwrap_or_default();
        body.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let handled =
        r#"capstan_plugin_calls_total{plugin="js-deployment-handler",export="added",outcome="ok"}"#;
    crate::support::eventually_within(
        COLD,
        "js-deployment-handler handles shop's Deployment",
        async || (metric(handled).await >= 1).then_some(()),
    )
    .await;

    // A WebApp and a Deployment that make each plugin throw...
    let webapps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
            "webapps",
        ),
    );
    let create_webapp = async |name: &str, image: &str| {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
            "metadata": {"name": name}, "spec": {"image": image, "port": 80}
        }))
        .unwrap();
        webapps.create(&PostParams::default(), &obj).await.unwrap();
    };
    create_webapp("crash", "crash").await;
    let trapped = r#"capstan_plugin_calls_total{plugin="js-deployment-handler",export="added",outcome="error"}"#;
    let crash: Deployment =
        serde_json::from_str(&crate::support::deployment_json("crash")).unwrap();
    let mut crash = crash;
    crash.metadata.uid = None;
    crash.metadata.resource_version = None;
    crash.status = None;
    deployments
        .create(&PostParams::default(), &crash)
        .await
        .unwrap();
    crate::support::eventually(
        "the JavaScript handler traps on the crash Deployment",
        async || (metric(trapped).await >= 1).then_some(()),
    )
    .await;
    let failed = r#"capstan_reconciles_total{plugin="py-webapp",result="error"}"#;
    crate::support::eventually("the Python reconciler fails the crash WebApp", async || {
        (metric(failed).await >= 1).then_some(())
    })
    .await;

    // ...cost only those objects: the next of each is served, and both plugins are running.
    let ok_before = metric(handled).await;
    create_webapp("after", "nginx:1.27").await;
    crate::support::eventually("py-webapp plans the next WebApp", async || {
        exists("after").await.then_some(())
    })
    .await;
    crate::support::eventually(
        "js-deployment-handler handles the next Deployment",
        async || (metric(handled).await > ok_before).then_some(()),
    )
    .await;
    let plugins = crate::support::http_get(addr.port(), "/plugins").unwrap();
    let (_, body) = plugins.split_once("\r\n\r\n").unwrap();
    let plugins: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(plugins["loaded"].as_array().unwrap().len(), 2, "{plugins}");
    for p in plugins["loaded"].as_array().unwrap() {
        assert_eq!(p["state"], "running", "{p}");
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), host)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.shutdown().await.unwrap();
}
