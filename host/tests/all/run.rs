//! `capstan run` end to end: the embedded API server, the example plugins, hot reload through the
//! plugins directory, and what `/plugins` and `/metrics` show; SIGTERM-style shutdown returns Ok.
#![allow(clippy::unwrap_used)]

use crate::support::{guest, root, tempdir};
use capstan::runner::{RunConfig, run_with_listener};
use kube::api::{Api, PostParams};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

async fn wait_for(addr: SocketAddr, path: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    // A deadline, not a pause: generous, for cold compiles on a loaded machine.
    for _ in 0..2400 {
        if let Some(body) = get(addr, path).await {
            if ok(&body) {
                return body;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what} at {path}; last:\n{last}");
}

fn plugins_json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

fn version_of(v: &serde_json::Value, name: &str) -> Option<String> {
    v["loaded"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["version"].as_str().unwrap_or_default().to_owned())
}

/// `capstan run` in the background; send on the sender to stop it.
fn spawn_host(
    config: RunConfig,
    client: &kube::Client,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), capstan::runner::RunError>>,
) {
    spawn_host_serving(config, client, None)
}

/// [`spawn_host`] serving its HTTP endpoints on `http`.
fn spawn_host_serving(
    config: RunConfig,
    client: &kube::Client,
    http: Option<tokio::net::TcpListener>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), capstan::runner::RunError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let host = tokio::spawn(run_with_listener(config, client.clone(), http, async {
        let _ = stopped.await;
    }));
    (stop, host)
}

/// Once the sample `Cluster` and `InfraCluster` named `demo` exist, make the Cluster the
/// InfraCluster's owner, as Cluster API's Cluster controller would; returns the InfraCluster API.
async fn own_demo_infracluster(client: &kube::Client) -> Api<kube::api::DynamicObject> {
    use kube::api::{DynamicObject, Patch, PatchParams};
    let ar = |kind: &str, plural: &str| {
        kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", kind),
            plural,
        )
    };
    let infra: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ar("InfraCluster", "infraclusters"),
    );
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ar("Cluster", "clusters"));
    let mut uid = None;
    for _ in 0..200 {
        if let (Ok(c), Ok(_)) = (clusters.get("demo").await, infra.get("demo").await) {
            uid = c.metadata.uid;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    infra
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"ownerReferences": [{
                "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "Cluster",
                "name": "demo", "uid": uid.expect("the sample Cluster exists")}]}})),
        )
        .await
        .unwrap();
    infra
}

/// A listener on a loopback port the system picks, and the address it got.
async fn http_listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_hot_reloads_and_reports_plugins_and_metrics() {
    let server = crate::support::apiserver().await;
    let client = server.client().unwrap();
    let plugins = tempdir();
    let manifests = tempdir();
    std::fs::copy(
        root().join("examples/webapp-crd.yaml"),
        manifests.path().join("webapp.yaml"),
    )
    .unwrap();
    let echo = plugins.path().join("echo.wasm");
    crate::support::drop_in(&guest("echo-handler"), &echo);
    crate::support::drop_in(&guest("webapp"), &plugins.path().join("webapp.wasm"));
    let (http, addr) = http_listener().await;
    let mut config = RunConfig::new(plugins.path());
    config.manifests = Some(manifests.path().to_owned());
    let (stop, host) = spawn_host_serving(config, &client, Some(http));

    let body = wait_for(addr, "/plugins", "both plugins", |b| {
        let v = plugins_json(b);
        version_of(&v, "echo-handler").is_some() && version_of(&v, "webapp").is_some()
    })
    .await;
    let v = plugins_json(&body);
    assert_eq!(version_of(&v, "echo-handler").as_deref(), Some("0.1.0"));
    assert_eq!(v["loaded"][0]["state"], "running");

    // The WebApp from the manifests is reconciled; a Deployment reaches the handler.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let dep = |name: &str| {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap()
    };
    deployments
        .create(&PostParams::default(), &dep("by-hand"))
        .await
        .unwrap();
    let metrics = wait_for(addr, "/metrics", "handler and reconcile metrics", |b| {
        b.contains(
            r#"capstan_plugin_calls_total{plugin="echo-handler",export="added",outcome="ok"}"#,
        ) && b.contains(r#"capstan_reconciles_total{plugin="webapp",result="ok"}"#)
    })
    .await;
    for family in [
        "capstan_reconcile_duration_seconds",
        "capstan_plugin_call_duration_seconds",
        "capstan_queue_depth",
        "capstan_plugin_state",
        "capstan_plugin_info",
        "capstan_plugin_reloads_total",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }

    // Settled means quiet: a no-op apply of unchanged children must not requeue their owner.
    let webapp_reconciles = |m: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(r#"capstan_reconciles_total{plugin="webapp",result="ok"}"#))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = webapp_reconciles(&get(addr, "/metrics").await.unwrap());
    crate::support::never_within(
        Duration::from_secs(2),
        &format!("reconcile loop: more than 2 reconciles after {before}"),
        async || webapp_reconciles(&get(addr, "/metrics").await.unwrap()) - before > 2,
    )
    .await;

    // A new version dropped in replaces the old one, live.
    crate::support::drop_in(&guest("echo-handler-v2"), &echo);
    wait_for(addr, "/plugins", "version 0.2.0", |b| {
        version_of(&plugins_json(b), "echo-handler").as_deref() == Some("0.2.0")
    })
    .await;
    deployments
        .create(&PostParams::default(), &dep("after-swap"))
        .await
        .unwrap();
    wait_for(addr, "/metrics", "an event handled by 0.2.0", |b| {
        b.contains(r#"capstan_plugin_info{plugin="echo-handler",version="0.2.0""#)
            && b.lines().any(|l| {
                l.starts_with(r#"capstan_plugin_calls_total{plugin="echo-handler",export="added",outcome="ok"}"#)
                    && l.ends_with(" 3")
            })
    })
    .await;

    // A broken file changes nothing but an error: 0.2.0 keeps serving.
    std::fs::write(&echo, b"\0asm\x01\0\0\0").unwrap();
    let body = wait_for(addr, "/plugins", "the rejection", |b| {
        plugins_json(b)["rejected"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    })
    .await;
    let v = plugins_json(&body);
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module"),
        "{v}"
    );
    assert_eq!(version_of(&v, "echo-handler").as_deref(), Some("0.2.0"));

    // A removed file unloads its plugin; the reconciler is untouched.
    std::fs::remove_file(&echo).unwrap();
    wait_for(addr, "/plugins", "the unload", |b| {
        let v = plugins_json(b);
        version_of(&v, "echo-handler").is_none() && version_of(&v, "webapp").is_some()
    })
    .await;
    wait_for(addr, "/metrics", "reload counts", |b| {
        b.contains(r#"capstan_plugin_reloads_total{result="unloaded"} 1"#)
            && b.contains(r#"capstan_plugin_reloads_total{result="rejected"}"#)
    })
    .await;
    assert_eq!(get(addr, "/readyz").await.as_deref(), Some("ready"));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), host)
        .await
        .expect("run returns after the shutdown signal")
        .unwrap()
        .unwrap();
    server.shutdown().await.unwrap();
}

/// kubectl (`$KUBECTL`, else on the PATH): the test fails without it (`.ci/run` installs it).
fn kubectl() -> String {
    crate::support::kubectl().to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_ready_and_phase_of_a_seed_004_resource() {
    let kubectl = kubectl();
    let server = crate::support::apiserver().await;
    let client = server.client().unwrap();
    let (plugins, manifests, kc) = (tempdir(), tempdir(), tempdir());
    let kubeconfig = kc.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    std::fs::copy(
        root().join("examples/infra-cluster.yaml"),
        manifests.path().join("infra.yaml"),
    )
    .unwrap();
    crate::support::drop_in(
        &guest("infra-cluster"),
        &plugins.path().join("infra-cluster.wasm"),
    );
    let mut config = RunConfig::new(plugins.path());
    config.manifests = Some(manifests.path().to_owned());
    let (stop, host) = spawn_host(config, &client);

    let get = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(kc.path().join("cache"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let wait_kubectl = |args: &'static [&'static str], want: &'static str| async move {
        for _ in 0..400 {
            if get(args).contains(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kubectl {args:?} never showed {want}: {}", get(args));
    };
    // No owner yet: the host leaves it Pending.
    wait_kubectl(&["get", "infraclusters", "demo"], "Pending").await;

    // The owner reference appears (as Cluster API's Cluster controller would set it).
    own_demo_infracluster(&client).await;

    wait_kubectl(&["get", "infraclusters", "demo"], "Ready").await;
    let table = get(&["get", "infraclusters", "demo"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(col("READY"), "true", "{table}");
    assert_eq!(col("PHASE"), "Ready", "{table}");
    // Status propagated to the owner, through its status subresource.
    wait_kubectl(
        &[
            "get",
            "clusters.examples.capstan.dev",
            "demo",
            "-o",
            "jsonpath={.status.infrastructureReady}",
        ],
        "true",
    )
    .await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), host)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_holds_deletion_until_cleanup_even_across_a_restart() {
    use kube::api::DeleteParams;
    let server = crate::support::apiserver().await;
    let client = server.client().unwrap();
    let (plugins, manifests) = (tempdir(), tempdir());
    std::fs::copy(
        root().join("examples/infra-cluster.yaml"),
        manifests.path().join("infra.yaml"),
    )
    .unwrap();
    crate::support::drop_in(
        &guest("infra-cluster"),
        &plugins.path().join("infra-cluster.wasm"),
    );
    let start = |manifests: Option<std::path::PathBuf>| {
        let mut config = RunConfig::new(plugins.path());
        config.manifests = manifests;
        spawn_host(config, &client)
    };
    let (stop, host) = start(Some(manifests.path().to_owned()));
    let infra = own_demo_infracluster(&client).await;
    let finalizer = "capstan.dev/infra-cluster".to_owned();
    let mut ready = false;
    for _ in 0..400 {
        let o = infra.get("demo").await.unwrap();
        if o.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&finalizer))
            && o.data["status"]["phase"] == "Ready"
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "finalizer added and Ready: {:?}",
        infra.get("demo").await.unwrap()
    );

    // The host is down: the deletion waits on the finalizer.
    stop.send(()).unwrap();
    host.await.unwrap().unwrap();
    infra
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    crate::support::never_within(
        Duration::from_millis(500),
        "the deletion went through with the host down",
        async || {
            infra
                .get_opt("demo")
                .await
                .unwrap()
                .is_none_or(|held| held.metadata.deletion_timestamp.is_none())
        },
    )
    .await;

    // Back up: cleanup runs, the finalizer goes, and so does the object.
    let (stop, host) = start(None);
    let mut gone = false;
    for _ in 0..400 {
        if infra.get_opt("demo").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "deleted after cleanup: {:?}",
        infra.get_opt("demo").await
    );
    stop.send(()).unwrap();
    host.await.unwrap().unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informers_follow_the_kinds_loaded_plugins_need() {
    use capstan::contract::Gvk;
    use capstan::plugin::{PluginEvent, Runtime};
    let server = crate::support::apiserver().await;
    let dir = tempdir();
    let mut supervisor = capstan::runner::Supervisor::new(
        server.client().unwrap(),
        &RunConfig::new(dir.path()),
        capstan::metrics::Metrics::new(),
    );
    let runtime = Runtime::new(crate::support::runtime_config()).unwrap();
    let echo = runtime.load(&guest("echo-handler")).await.unwrap();
    let deployments = Gvk::new("apps", "v1", "Deployment");
    assert!(supervisor.informers().running().is_empty());

    supervisor.apply(PluginEvent::Loaded(echo.clone())).await;
    assert_eq!(supervisor.informers().running(), vec![deployments.clone()]);

    let v2 = runtime.load(&guest("echo-handler-v2")).await.unwrap();
    supervisor
        .apply(PluginEvent::Replaced {
            old: echo,
            new: v2.clone(),
        })
        .await;
    assert_eq!(supervisor.informers().running(), vec![deployments]);

    supervisor.apply(PluginEvent::Unloaded(v2)).await;
    for _ in 0..100 {
        if supervisor.informers().running().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        supervisor.informers().running().is_empty(),
        "no plugin needs Deployments: {:?}",
        supervisor.informers().running()
    );
    supervisor.shutdown(Duration::from_secs(5)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_shows_each_grant_and_the_effective_and_requested_manifests() {
    let server = crate::support::apiserver().await;
    let client = server.client().unwrap();
    let plugins = tempdir();
    // An impostor: fs-handler's code in a file the configuration did not bind.
    std::fs::copy(guest("fs-handler"), plugins.path().join("evil.wasm")).unwrap();
    std::fs::copy(
        guest("echo-handler"),
        plugins.path().join("echo-handler.wasm"),
    )
    .unwrap();
    let file = capstan::config::Config::parse(
        r#"
plugins:
  fs-handler:
    file: fs-handler.wasm
    wasi: { env: { GREETING: hi } }
  echo-handler:
    file: echo-handler.wasm
    kubernetes:
      allow: [{ group: "", version: v1, kind: ConfigMap, verbs: [get, list, watch] }]
"#,
    )
    .unwrap();
    file.check().unwrap();
    let (http, addr) = http_listener().await;
    let mut config = RunConfig::new(plugins.path());
    config.config = file;
    let (stop, host) = spawn_host_serving(config, &client, Some(http));
    let body = wait_for(addr, "/plugins", "both plugins", |b| {
        plugins_json(b)["loaded"]
            .as_array()
            .is_some_and(|l| l.len() == 2)
    })
    .await;
    let v = plugins_json(&body);
    let plugin = |name: &str| {
        v["loaded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let fs = plugin("fs-handler");
    assert!(fs["path"].as_str().unwrap().ends_with("evil.wasm"));
    assert_eq!(fs["grant"]["bound"], false);
    assert_eq!(fs["grant"]["entry"], "fs-handler");
    let reason = fs["grant"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("bound to file fs-handler.wasm, not to file evil.wasm"),
        "{reason}"
    );
    assert_eq!(fs["grant"]["env"], serde_json::json!([]), "nothing lent");

    let echo = plugin("echo-handler");
    assert_eq!(echo["grant"]["bound"], true);
    assert_eq!(echo["grant"]["reason"], serde_json::Value::Null);
    assert_eq!(
        echo["effective_manifest"]["watches"],
        serde_json::json!([]),
        "Deployments are not in the allow list"
    );
    assert_eq!(
        echo["requested_manifest"]["watches"][0]["kind"],
        "Deployment"
    );
    stop.send(()).unwrap();
    host.await.unwrap().unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_kind_left_out_of_the_allow_list_is_never_watched() {
    use capstan::contract::{AccessRule, Gvk, Verb};
    use capstan::plugin::{Binding, GrantEntry, PluginEvent, PluginSettings, Runtime, WATCH_VERBS};
    let server = crate::support::apiserver().await;
    let dir = tempdir();
    let mut supervisor = capstan::runner::Supervisor::new(
        server.client().unwrap(),
        &RunConfig::new(dir.path()),
        capstan::metrics::Metrics::new(),
    );
    let file = dir.path().join("echo-handler.wasm");
    std::fs::copy(guest("echo-handler"), &file).unwrap();
    let deployments = Gvk::new("apps", "v1", "Deployment");
    let allowing = |rules: Vec<AccessRule>| {
        Runtime::new(crate::support::runtime_config().grant(GrantEntry {
            name: "echo-handler".into(),
            binding: Binding::file("echo-handler.wasm"),
            settings: PluginSettings {
                allow: Some(rules),
                ..PluginSettings::default()
            },
        }))
        .unwrap()
    };
    // Deployments allowed only `get` and `list`: readable, but not watched.
    let echo = allowing(vec![
        AccessRule::new(Gvk::new("", "v1", "ConfigMap"), WATCH_VERBS.to_vec()),
        AccessRule::new(deployments.clone(), vec![Verb::Get, Verb::List]),
    ])
    .load(&file)
    .await
    .unwrap();
    assert!(echo.grant().bound);
    assert!(echo.manifest().watches.is_empty());
    assert_eq!(
        echo.declared_manifest().watches,
        std::slice::from_ref(&deployments)
    );
    supervisor.apply(PluginEvent::Loaded(echo.clone())).await;
    assert!(
        supervisor.informers().running().is_empty(),
        "no informer, so no Deployment event reaches it: {:?}",
        supervisor.informers().running()
    );
    // With `watch` allowed too, it is watched.
    let watched = allowing(vec![AccessRule::new(
        deployments.clone(),
        WATCH_VERBS.to_vec(),
    )])
    .load(&file)
    .await
    .unwrap();
    supervisor
        .apply(PluginEvent::Replaced {
            old: echo,
            new: watched,
        })
        .await;
    assert_eq!(supervisor.informers().running(), vec![deployments]);
    supervisor.shutdown(Duration::from_secs(5)).await;
    server.shutdown().await.unwrap();
}
