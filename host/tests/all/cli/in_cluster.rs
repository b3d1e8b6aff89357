//! `capstan run` as it runs in its image: in-cluster configuration from the ServiceAccount files
//! and the `KUBERNETES_SERVICE_*` environment, plugins on a read-only volume, the precompiled cache
//! on the one writable path, a configuration file, JSON logs, probes, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;

use crate::support;

/// The host process, killed if the test ends before it exits (a failed assertion).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_only(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_in_cluster_as_in_its_image() {
    let server = support::apiserver().await;
    let admin = server.client().unwrap();
    let root = support::tempdir();
    let at = |p: &str| root.path().join(p);
    // The pod's ServiceAccount mount.
    let sa = at("serviceaccount");
    std::fs::create_dir(&sa).unwrap();
    std::fs::write(sa.join("token"), server.token()).unwrap();
    std::fs::write(sa.join("ca.crt"), server.authority().certificate_pem()).unwrap();
    std::fs::write(sa.join("namespace"), "capstan-system\n").unwrap();
    // The volumes: plugins and configuration read-only, the cache the only writable path.
    for d in ["plugins", "manifests", "etc", "cache", "home"] {
        std::fs::create_dir(at(d)).unwrap();
    }
    std::fs::copy(support::guest("webapp"), at("plugins/webapp.wasm")).unwrap();
    std::fs::copy(
        support::root().join("examples/webapp-crd.yaml"),
        at("manifests/webapp.yaml"),
    )
    .unwrap();
    std::fs::write(
        at("etc/config.yaml"),
        "defaults:\n  callTimeoutMs: 4000\nplugins:\n  webapp:\n    file: webapp.wasm\n",
    )
    .unwrap();
    for d in ["plugins", "manifests", "etc", "home"] {
        read_only(&at(d));
    }
    let port = support::free_port();
    let stderr = std::fs::File::create(at("stderr.log")).unwrap();
    let mut host = Child(
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .current_dir(at("home"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", at("home"))
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", server.addr().port().to_string())
            .args(["--log-format", "json", "run", "--plugins"])
            .arg(at("plugins"))
            .arg("--manifests")
            .arg(at("manifests"))
            .arg("--cache-dir")
            .arg(at("cache"))
            .arg("--config")
            .arg(at("etc/config.yaml"))
            .arg("--service-account-dir")
            .arg(&sa)
            .args(["--http-listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );

    // The sample WebApp from the manifests is reconciled: its Deployment and Service exist (no
    // kubelet here makes the Deployment ready).
    let webapps: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
            "webapps",
        ),
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reconciled = deployments.get_opt("shop").await.ok().flatten().is_some()
            && webapps
                .get_opt("shop")
                .await
                .ok()
                .flatten()
                .and_then(|w| w.data.pointer("/status/conditions").cloned())
                .and_then(|c| c.as_array().cloned())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "ServiceReady" && c["status"] == "True")
                });
        if reconciled {
            break;
        }
        let exited = host.0.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "shop not reconciled (host exit: {exited:?}); host log:\n{}",
                std::fs::read_to_string(at("stderr.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = support::http_get(port, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // The precompiled plugin went to the cache volume.
    assert!(
        std::fs::read_dir(at("cache")).unwrap().next().is_some(),
        "nothing cached in the cache volume"
    );

    // SIGTERM: work in flight finishes and the process exits 0, well within a pod's 30 s grace.
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &host.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = host.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(25),
        "shutdown took {:?}",
        sent.elapsed()
    );
    // JSON logs: every line is one JSON object; the in-cluster start is logged with the pod's
    // namespace.
    let log = std::fs::read_to_string(at("stderr.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "in-cluster configuration"
                && l["namespace"] == "capstan-system"),
        "{log}"
    );
}
