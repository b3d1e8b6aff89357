//! The `capstan` binary as the image runs it, and `capstan rbac` as the install uses it.
//!
//! The image's entrypoint (read from the Dockerfile) runs with its paths moved under a temporary
//! root: the plugins directory, the configuration file, the cache volume (the host creates its
//! precompiled cache in it); the kubelet's probes get their answers and SIGTERM stops it with exit
//! code 0. `capstan rbac` prints exactly the RBAC deploy/ holds. Not exercised here: the container
//! build itself, a read-only root filesystem, and a cache volume owned by another user (root, as an
//! emptyDir's root is: the reason the entrypoint names a subdirectory).
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;

const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");

/// The Dockerfile's `ENTRYPOINT`, in its exec form.
fn entrypoint() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(support::root().join("Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("the Dockerfile has an ENTRYPOINT");
    serde_json::from_str(line).expect("ENTRYPOINT in exec form (a JSON array)")
}

/// The body of `GET path` on `port`, if it answers 200.
fn get(port: u16, path: &str) -> Option<String> {
    let out = support::http_get(port, path)?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[test]
fn the_binary_runs_as_the_image_runs_it() {
    let args = entrypoint();
    assert_eq!(args[..2], ["/usr/local/bin/capstan", "run"]);
    let flag = |name: &str| {
        let i = args.iter().position(|a| a == name).unwrap();
        args[i + 1].clone()
    };
    assert_eq!(flag("--plugins"), "/plugins");
    assert_eq!(flag("--config"), "/etc/capstan/config.yaml");
    assert_eq!(
        flag("--http-listen"),
        "0.0.0.0:9090",
        "reachable from the kubelet"
    );
    let cache = flag("--cache-dir");
    assert!(
        cache.starts_with("/var/cache/capstan/"),
        "the precompiled cache is a directory the host creates in the cache volume: {cache}"
    );

    // The pod's filesystem, under a temporary root.
    let fs = tempfile::tempdir().unwrap();
    let at = |p: &str| fs.path().join(p.trim_start_matches('/'));
    std::fs::create_dir_all(at("/plugins")).unwrap();
    std::fs::copy(
        support::guest("deployment-handler"),
        at("/plugins/deployment_handler.wasm"),
    )
    .unwrap();
    std::fs::create_dir_all(at("/etc/capstan")).unwrap();
    std::fs::copy(
        support::root().join("deploy/overlays/example/config.yaml"),
        at("/etc/capstan/config.yaml"),
    )
    .unwrap();
    // An emptyDir: world-writable.
    std::fs::create_dir_all(at("/var/cache/capstan")).unwrap();
    std::fs::set_permissions(
        at("/var/cache/capstan"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();

    let port = support::free_port();
    let moved: Vec<String> = args[1..]
        .iter()
        .map(|a| {
            if a == "0.0.0.0:9090" {
                format!("127.0.0.1:{port}")
            } else if a.starts_with('/') {
                at(a).to_string_lossy().into_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    // Not in a pod, no kubeconfig: the host starts its embedded API server.
    let mut host = Command::new(CAPSTAN)
        .args(&moved)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained as the host writes, so a full pipe never blocks its logging.
    let log = std::thread::spawn({
        let mut stderr = host.stderr.take().unwrap();
        move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        if let Some(body) = get(port, "/readyz") {
            break body;
        }
        if let Some(status) = host.try_wait().unwrap() {
            let err = log.join().unwrap_or_default();
            panic!("the host exited ({status}) before it was ready:\n{err}");
        }
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready.trim(), "ready");
    assert!(get(port, "/healthz").is_some());
    assert!(get(port, "/metrics").is_some_and(|m| m.contains("capstan_")));
    let plugins: serde_json::Value = serde_json::from_str(&get(port, "/plugins").unwrap()).unwrap();
    let loaded = &plugins["loaded"][0];
    assert_eq!(loaded["name"], "deployment-handler");
    assert_eq!(
        loaded["grant"]["bound"], true,
        "the configuration file is read, and its entry bound to the plugin's file"
    );
    assert_eq!(loaded["grant"]["memory_bytes"], 32 << 20);
    let precompiled = at(&cache);
    let mode = std::fs::metadata(&precompiled)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "the cache is private");
    // Written off the loading path: soon after the plugin serves.
    let artifact = || {
        std::fs::read_dir(&precompiled)
            .unwrap()
            .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "cwasm"))
    };
    let written = Instant::now() + Duration::from_secs(30);
    while !artifact() && Instant::now() < written {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        artifact(),
        "the plugin was precompiled into the cache volume"
    );

    // The kubelet stops a pod with SIGTERM.
    let pid = libc::pid_t::try_from(host.id()).unwrap();
    // SAFETY: signals the child this test started, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = host.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = log.join().unwrap_or_default();
    assert!(status.success(), "{status}; the host's log:\n{err}");
}

/// `capstan ARGS`: its stdout, stderr and success.
fn capstan(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(CAPSTAN).args(args).output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
}

#[test]
fn capstan_rbac_prints_exactly_the_rbac_deploy_holds() {
    let (base, err, ok) = capstan(&["rbac"]);
    assert!(ok, "{err}");
    assert_eq!(
        base,
        std::fs::read_to_string(support::root().join("deploy/base/rbac.yaml")).unwrap(),
        "deploy/base/rbac.yaml is `capstan rbac > deploy/base/rbac.yaml`"
    );

    // The example plugins, named as the example-plugins image names them.
    let plugins = tempfile::tempdir().unwrap();
    for (package, file) in [
        ("webapp", "webapp.wasm"),
        ("infra-cluster", "infra_cluster.wasm"),
        ("deployment-handler", "deployment_handler.wasm"),
    ] {
        std::fs::copy(support::guest(package), plugins.path().join(file)).unwrap();
    }
    let config = support::root().join("deploy/overlays/example/config.yaml");
    let examples = support::root().join("examples");
    let (overlay, err, ok) = capstan(&[
        "rbac",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--manifests",
        examples.to_str().unwrap(),
        "--omit-base",
        "--no-cache",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        overlay,
        std::fs::read_to_string(support::root().join("deploy/overlays/example/rbac.yaml")).unwrap(),
        "deploy/overlays/example/rbac.yaml: regenerate it as deploy/overlays/example/config.yaml says"
    );
    assert!(
        !overlay.contains("GUESSED"),
        "every kind is built in or has its CRD in examples/"
    );

    // A rejected plugin file: nothing printed, a non-zero exit naming the file.
    std::fs::write(plugins.path().join("broken.wasm"), b"not wasm").unwrap();
    let (out, err, ok) = capstan(&[
        "rbac",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--no-cache",
    ]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("broken.wasm") && err.contains("not a WebAssembly file"),
        "{err}"
    );
    let (_, err, ok) = capstan(&["rbac", "--namespace", "Not_A_Namespace"]);
    assert!(!ok && err.contains("Not_A_Namespace"), "{err}");
}

/// `capstan rbac` reads the pod's configuration on a workstation: WASI directories it grants need
/// not exist there (they do not bear on RBAC), while `capstan run` still refuses such a file.
#[test]
fn capstan_rbac_reads_a_configuration_whose_wasi_directories_are_elsewhere() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(support::guest("webapp"), plugins.path().join("webapp.wasm")).unwrap();
    let config = plugins.path().join("config.yaml");
    std::fs::write(
        &config,
        "plugins:\n  webapp:\n    file: webapp.wasm\n    wasi:\n      dirs:\n        - { host: /nonexistent/only-in-the-pod, guest: /config }\n",
    )
    .unwrap();
    let (out, err, ok) = capstan(&[
        "rbac",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--no-cache",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("capstan-plugin-webapp"), "{out}");
    let (_, err, ok) = capstan(&[
        "run",
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/only-in-the-pod"), "{err}");
}
