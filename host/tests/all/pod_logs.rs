//! The pod-log capability end to end: the `pod-doctor` guest, run by the real reconcile loop
//! against the embedded API server (whose pod logs the test sets, as there is no kubelet),
//! categorizes a crash-looping pod from its log (auth, storage exhausted) or from its status alone
//! (OOM killed), and reads no log when configuration refuses the capability.
#![allow(clippy::unwrap_used)]

use capstan::contract::World;
use capstan::informer::Informers;
use capstan::plugin::{Plugin, PluginSettings, Runtime};
use capstan::reconcile::{Controller, ControllerConfig};
use capstan_apiserver::RunningServer;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long any awaited state may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The WebApp, and the label value of its pod.
const APP: &str = "app1";
/// The pod, and its component condition (`Pod-<name>` + `Ready`).
const POD: &str = "app1-0";
const POD_CONDITION: &str = "Pod-app1-0Ready";

/// An embedded API server serving the WebApp CRD, and a controller running `pod-doctor`.
struct Env {
    server: RunningServer,
    client: kube::Client,
    controller: Controller,
}

impl Env {
    /// Start the server, apply the WebApp CRD (only: not the example WebApp of its file) and run
    /// `plugin` with a fast resync, so pod changes (which do not queue the WebApp) are seen.
    async fn start(plugin: Plugin) -> Self {
        let server = crate::support::apiserver().await;
        let client = server.client().unwrap();
        let crd_file = std::fs::read_to_string(
            crate::support::root()
                .join("examples")
                .join("webapp-crd.yaml"),
        )
        .unwrap();
        let crd = crd_file.split("\n---\n").next().unwrap();
        assert!(crd.contains("kind: CustomResourceDefinition"));
        let dir = crate::support::tempdir();
        std::fs::write(dir.path().join("crd.yaml"), crd).unwrap();
        capstan::manifests::apply_dir(&client, dir.path())
            .await
            .unwrap();
        let config = ControllerConfig {
            resync: Duration::from_millis(200),
            retry: crate::support::fast_retry(),
            ..ControllerConfig::default()
        };
        let controller = Controller::start(
            plugin,
            &Informers::new(client.clone()),
            client.clone(),
            config,
        )
        .await
        .unwrap();
        Self {
            server,
            client,
            controller,
        }
    }

    fn webapps(&self) -> Api<DynamicObject> {
        let gvk = kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp");
        Api::namespaced_with(
            self.client.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(&gvk, "webapps"),
        )
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Create the WebApp `app1`, then its pod `app1-0` (labelled `app=app1`, owned by the WebApp,
    /// one container `web`);
    /// set the container's log when given, then the pod's status through `pods/status`.
    async fn crash(&self, container_status: Value, log: Option<&str>) {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
            "metadata": {"name": APP, "namespace": "default"},
            "spec": {"image": "registry.example/app:1", "replicas": 1, "port": 8080}
        }))
        .unwrap();
        let uid = self
            .webapps()
            .create(&PostParams::default(), &app)
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap();
        // Owned by the WebApp: a plugin reads the logs of its object's pods only.
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": POD, "namespace": "default", "labels": {"app": APP},
                "ownerReferences": [{"apiVersion": "examples.capstan.dev/v1alpha1",
                    "kind": "WebApp", "name": APP, "uid": uid, "controller": true}]},
            "spec": {"containers": [{"name": "web", "image": "registry.example/app:1"}]}
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        // The log first: once the crash loop shows, its log is there.
        if let Some(text) = log {
            self.server.set_pod_log("default", POD, "web", text);
        }
        let status = json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [container_status],
        }});
        self.pods()
            .patch_status(POD, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// The WebApp once its status satisfies `ok`.
    async fn status_until(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let api = self.webapps();
        let deadline = Instant::now() + TIMEOUT;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = serde_json::to_value(api.get(APP).await.unwrap()).unwrap();
            if ok(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; last status: {:#}",
            last["status"]
        );
    }

    async fn shutdown(self) {
        self.controller.shutdown(Duration::from_secs(5)).await;
        self.server.shutdown().await.unwrap();
    }
}

/// `pod-doctor`, checked to be a reconciler asking for pod logs.
async fn pod_doctor() -> Plugin {
    let plugin = Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&crate::support::guest("pod-doctor"))
        .await
        .unwrap();
    assert_eq!(plugin.info().world, World::ReconcilerPlugin);
    assert!(plugin.manifest().pod_logs, "the manifest asks for pod logs");
    plugin
}

/// A container crash-looping after its last run ended with `exit_code` (`reason`).
fn crash_looping(exit_code: i32, reason: &str) -> Value {
    json!({
        "name": "web", "image": "registry.example/app:1", "imageID": "", "ready": false,
        "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff",
            "message": "back-off 5m0s restarting failed container=web"}},
        "lastState": {"terminated": {"exitCode": exit_code, "reason": reason}},
    })
}

fn condition<'a>(obj: &'a Value, t: &str) -> &'a Value {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .unwrap_or(&Value::Null)
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

/// The status the pod's component settles in: its condition shows `reason` and the overall
/// status is `state`.
async fn settled(env: &Env, reason: &str, state: &str) -> Value {
    env.status_until(
        &format!("{POD_CONDITION} with reason {reason}, status {state}"),
        |o| condition(o, POD_CONDITION)["reason"] == reason && o["status"]["status"] == state,
    )
    .await
}

const PERMISSION_DENIED_LOG: &str = "starting app1\nopening the database\n\
    Error: open /data/db: permission denied\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_error_in_the_log_fails_auth() {
    let env = Env::start(pod_doctor().await).await;
    env.crash(crash_looping(1, "Error"), Some(PERMISSION_DENIED_LOG))
        .await;

    let failed = settled(&env, "CrashLoopBackOff", "Failed").await;
    let pod = condition(&failed, POD_CONDITION);
    assert_eq!(pod["status"], "False");
    assert!(
        text(pod, "message").ends_with("; log: Error: open /data/db: permission denied"),
        "{pod}"
    );
    let auth = condition(&failed, "AuthValid");
    assert_eq!(
        (&auth["status"], &auth["reason"]),
        (&json!("False"), &json!("AuthFailed"))
    );
    assert_eq!(
        auth["message"],
        "container web of pod default/app1-0: Error: open /data/db: permission denied"
    );
    assert_eq!(failed["status"]["failureReason"], "AuthFailed");
    assert_eq!(condition(&failed, "Ready")["status"], "False");

    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_in_the_log_is_resource_exhaustion() {
    let env = Env::start(pod_doctor().await).await;
    env.crash(
        crash_looping(1, "Error"),
        Some("writing the cache\nwrite /data/x: no space left on device"),
    )
    .await;

    let failed = settled(&env, "CrashLoopBackOff", "Failed").await;
    let pod = condition(&failed, POD_CONDITION);
    assert_eq!(pod["status"], "False");
    assert!(
        text(pod, "message").ends_with("; log: write /data/x: no space left on device"),
        "{pod}"
    );
    assert_eq!(failed["status"]["failureReason"], "ResourceExhaustion");
    assert_eq!(
        failed["status"]["failureMessage"],
        "container web of pod default/app1-0: write /data/x: no space left on device"
    );
    // Not an auth or configuration problem.
    assert_eq!(condition(&failed, "AuthValid")["status"], "True");
    assert_eq!(condition(&failed, "ConfigValid")["status"], "True");

    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_resource_exhaustion_from_the_status_alone() {
    let env = Env::start(pod_doctor().await).await;
    // No log set: the server answers an empty one.
    env.crash(crash_looping(137, "OOMKilled"), None).await;

    let failed = settled(&env, "OOMKilled", "Failed").await;
    let pod = condition(&failed, POD_CONDITION);
    assert_eq!(pod["status"], "False");
    assert!(!text(pod, "message").contains("log"), "{pod}");
    assert_eq!(failed["status"]["failureReason"], "ResourceExhaustion");
    assert_eq!(condition(&failed, "AuthValid")["status"], "True");

    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_capability_the_log_is_not_read() {
    let settings = PluginSettings {
        pod_logs: Some(false),
        ..PluginSettings::default()
    };
    let plugin = pod_doctor().await.configure(&settings, None);
    assert!(
        !plugin.manifest().pod_logs,
        "configuration refuses pod logs"
    );
    assert!(plugin.declared_manifest().pod_logs);
    let env = Env::start(plugin).await;
    env.crash(crash_looping(1, "Error"), Some(PERMISSION_DENIED_LOG))
        .await;

    // The crash loop is seen, its cause is not: degraded (inspect::pod), not failed.
    let degraded = settled(&env, "CrashLoopBackOff", "Degraded").await;
    let pod = condition(&degraded, POD_CONDITION);
    assert_eq!(pod["status"], "False");
    let message = text(pod, "message");
    assert!(!message.contains("permission denied"), "{message}");
    // The guest tried: the host refused the read.
    assert!(
        message.contains("log unavailable: plugin pod-doctor may not read pod logs"),
        "{message}"
    );
    assert_eq!(condition(&degraded, "AuthValid")["status"], "True");
    assert!(
        degraded["status"]
            .get("failureReason")
            .is_none_or(Value::is_null)
    );

    env.shutdown().await;
}
