//! Test support: the guests' paths (built once per `cargo test` by `capstan-test-artifacts`), an
//! embedded API server, and the helpers the integration tests share.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository root.
#[allow(dead_code)]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The runtime configuration of the tests: the defaults, with a precompiled cache shared by every
/// test of a run (and kept between runs, in the target directory), so that each guest is compiled
/// once per engine configuration rather than once per test.
#[allow(dead_code)]
pub fn runtime_config() -> capstan::plugin::RuntimeConfig {
    capstan::plugin::RuntimeConfig::default().cache_dir(precompiled_cache_dir())
}

/// The precompiled cache of [`runtime_config`], for a `capstan run` in a test.
#[allow(dead_code)]
pub fn precompiled_cache_dir() -> PathBuf {
    // <target>/guests/wasm32-wasip2/<profile>/<guest>.wasm
    Path::new(capstan_test_artifacts::GUESTS[0].1)
        .ancestors()
        .nth(4)
        .expect("guests lie four levels below the target directory")
        .join("capstan-test-precompiled")
}

/// The component built from the guest package `name` (in `guests/` or `tests/guests/`).
///
/// Every guest is built once per `cargo test`, by the build script of `capstan-test-artifacts`.
pub fn guest(name: &str) -> PathBuf {
    let path = capstan_test_artifacts::path(name)
        .unwrap_or_else(|| panic!("no guest package named {name} in guests/ or tests/guests/"));
    assert!(
        path.is_file(),
        "guest {name} not built at {}",
        path.display()
    );
    path.to_owned()
}

/// The component of a Python or JavaScript guest, or `None` (with a note on stderr) when its
/// toolchain was not installed when the guests were built. `.ci/run` installs the toolchains and
/// sets `CAPSTAN_REQUIRE_TOOLCHAINS=1`, so there a missing toolchain fails the build, and this
/// panics rather than skip.
#[allow(dead_code)]
pub fn polyglot_guest(name: &str) -> Option<PathBuf> {
    if let Some(reason) = capstan_test_artifacts::skipped(name) {
        assert!(
            std::env::var("CAPSTAN_REQUIRE_TOOLCHAINS").as_deref() != Ok("1"),
            "CAPSTAN_REQUIRE_TOOLCHAINS=1 but guest {name} was not built: {reason}"
        );
        eprintln!("SKIPPED: guest {name} not built: {reason}");
        return None;
    }
    Some(guest(name))
}

/// kubectl: `$KUBECTL`, else the first `kubectl` on the PATH. Panics without one: a kubectl test
/// fails, never skips (`.ci/run` installs kubectl when it is missing).
#[allow(dead_code)]
pub fn kubectl() -> PathBuf {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return PathBuf::from(k);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl is required by this test: install it, or set KUBECTL")
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Copy the named guests into a fresh plugins directory.
#[allow(dead_code)]
pub fn plugins_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempdir();
    for n in names {
        std::fs::copy(guest(n), dir.path().join(format!("{n}.wasm"))).expect("copy guest");
    }
    dir
}

/// A 4 KB-ish apps/v1 Deployment as JSON, for calls and benchmarks.
#[allow(dead_code)]
pub fn deployment_json(name: &str) -> String {
    let env: Vec<serde_json::Value> = (0..40)
        .map(|i| serde_json::json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-abcdefghij")}))
        .collect();
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "default", "uid": "2f0c7f9e-0000-4000-8000-000000000001",
            "resourceVersion": "12345", "generation": 3,
            "labels": {"app": name, "tier": "web", "team": "platform"},
            "annotations": {"deployment.kubernetes.io/revision": "3"}
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": env,
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}
                }]}
            }
        },
        "status": {"replicas": 3, "availableReplicas": 3, "updatedReplicas": 3, "readyReplicas": 3}
    })
    .to_string()
}

/// Put `from` at `to` as a careful writer does: copy beside it, then rename into place, so a
/// watcher never sees a half-written file.
#[allow(dead_code)]
pub fn drop_in(from: &Path, to: &Path) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, to).expect("rename plugin into place");
}

/// An embedded API server on a free loopback port.
#[allow(dead_code)]
pub async fn apiserver() -> capstan_apiserver::RunningServer {
    capstan_apiserver::ApiServer::builder()
        .build()
        .expect("api server builds")
        .start_loopback()
        .await
        .expect("api server starts")
}

/// `component` with a custom section appended: the same plugin (same name, same behaviour) with
/// another content digest, as an impostor or a rebuilt version would have.
#[allow(dead_code)]
pub fn with_custom_section(component: &[u8], payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"capstan-test";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The SHA-256 of a file's content, in hex, as a configuration entry's `sha256` names it.
#[allow(dead_code)]
pub fn sha256_of(path: &Path) -> String {
    capstan::plugin::content_hash(&std::fs::read(path).expect("read plugin"))
}

/// Retries of failed reconciles for tests: from 100 ms, at most 1 s apart, no jitter.
#[allow(dead_code)]
pub fn fast_retry() -> capstan::dispatch::RetryPolicy {
    capstan::dispatch::RetryPolicy {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
        jitter: 0.0,
        ..capstan::dispatch::RetryPolicy::default()
    }
}

/// The sum of the series of the host's `metrics` whose line starts with `prefix` (a metric name
/// and the start of its labels).
#[allow(dead_code)]
pub fn metric_sum(metrics: &capstan::metrics::Metrics, prefix: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How long [`eventually`] waits.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls `probe` (every 50 ms) until it returns `Some`, for at most [`EVENTUALLY`]; panics naming
/// `what` after that.
#[allow(dead_code)]
pub async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    eventually_within(EVENTUALLY, what, probe).await
}

/// Polls `probe` (every 50 ms) until it returns `Some`, for at most `within`; panics naming `what`
/// after that.
#[allow(dead_code)]
pub async fn eventually_within<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually`] for a condition read without awaiting (an atomic, a lock, a registry view).
#[allow(dead_code)]
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(30), what, async || done().then_some(())).await;
}

/// Asserts that something does NOT happen for `within`: polls `happened` (every 20 ms) for that
/// whole time and panics, naming `what`, the first time it returns true. The negative assertion
/// that replaces "sleep, then check once": it fails as soon as the event shows up, and it watches
/// the whole window, not only its end.
#[allow(dead_code)]
pub async fn never_within(within: Duration, what: &str, mut happened: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        assert!(!happened().await, "{what} (within {within:?})");
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `tracing` visitor that records an event's fields as text, by field name.
#[allow(dead_code)]
pub struct Fields<'a>(pub &'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

/// A loopback port that was free a moment ago (for a child process's listen address), taken
/// below the kernel's ephemeral range: a port the system handed out for `bind(0)` would be handed
/// out again, to the child's own port-0 listeners (its embedded API server) among others.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    for _ in 0..1000 {
        let port = fastrand::u16(low..high);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {low} and {high}");
}

/// The whole response (status line, headers, body) to `GET path` on loopback `port`, or `None` if
/// nothing answers within 5 s.
#[allow(dead_code)]
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
