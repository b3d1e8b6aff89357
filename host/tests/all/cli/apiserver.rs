//! `capstan apiserver` from the command line: it writes a kubeconfig kubectl uses as is, and exits 0
//! on SIGTERM.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support;

#[test]
fn kubectl_talks_to_capstan_apiserver() {
    let bin = support::kubectl();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut server = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["apiserver", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if kubeconfig.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A discovery cache of its own: kubectl's default one is keyed by host and port, so a server
    // another test ran on the same port earlier would answer discovery from the cache (and a 401
    // would then read "Unauthorized" instead of "provide credentials", as it does on a cluster
    // with a warm cache).
    let cache = dir.path().join("cache");
    let kubectl = |args: &[&str]| {
        Command::new(&bin)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .output()
            .unwrap()
    };
    // The kubeconfig holds the bearer token: only its owner may read it.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "kubeconfig mode {mode:o}");
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains("token: "), "{text}");
    let tokenless = dir.path().join("tokenless");
    let wrong: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("token: ") {
                "    token: wrong-token\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&tokenless, wrong).unwrap();
    let refused = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&tokenless)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["get", "namespaces"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("provide credentials"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ns = kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(
        ns.status.success(),
        "{}",
        String::from_utf8_lossy(&ns.stderr)
    );
    assert!(String::from_utf8_lossy(&ns.stdout).contains("namespace/default"));
    // `kubectl create` of built-in kinds sends protobuf, which the embedded server does not speak
    // (it answers 415; see the issue notes); server-side apply is what controllers and the README use.
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo, namespace: default}\ndata: {a: \"1\"}\n").unwrap();
    let created = kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let got = kubectl(&["get", "configmap", "demo", "-o", "jsonpath={.data.a}"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "1");
    // SIGTERM: a clean exit.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
