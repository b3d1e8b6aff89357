//! `capstan run --leader-elect`: two processes against one embedded API server, one serving and
//! one warm standby; the leader is SIGKILLed and the standby reconciles the next change within
//! lease duration + 2 s; a SIGTERMed leader releases its Lease.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;

use crate::support;

/// The timings of these tests: lease 3 s, renew deadline 2 s, retry period 0.5 s.
const LEASE_SECONDS: u64 = 3;

/// A `capstan run --leader-elect` process, killed if the test ends first.
struct Host {
    child: std::process::Child,
    name: &'static str,
    port: u16,
    log: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    /// Start host `name` (its `$HOSTNAME`, so its identity is `name_<random>`) on the plugins
    /// of `dir`.
    fn start(
        name: &'static str,
        dir: &Path,
        kubeconfig: &Path,
        timing: [&str; 3],
        cache: &Path,
    ) -> Self {
        let port = support::free_port();
        let log = dir.parent().unwrap().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .env("HOSTNAME", name)
            .args(["run", "--plugins"])
            .arg(dir)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--http-listen", &format!("127.0.0.1:{port}")])
            .args(["--leader-elect", "--leader-elect-namespace", "default"])
            .args(["--leader-elect-lease-name", "capstan-test"])
            .args(["--leader-elect-lease-duration-seconds", timing[0]])
            .args(["--leader-elect-renew-deadline-seconds", timing[1]])
            .args(["--leader-elect-retry-period-seconds", timing[2]])
            .arg("--no-hot-reload")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            name,
            port,
            log,
        }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = support::http_get(self.port, path)?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// `/readyz`'s status, once the host answers.
    fn readyz(&self) -> Option<u16> {
        self.get("/readyz").map(|(s, _)| s)
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .and_then(|v| v.parse().ok())
    }

    /// Whether the host has loaded `plugin` (its standby is warm).
    fn loaded(&self, plugin: &str) -> bool {
        self.get("/plugins")
            .is_some_and(|(s, body)| s == 200 && body.contains(&format!("\"name\":\"{plugin}\"")))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

/// Poll `ok` every 20 ms until it holds or `bound` passes; panics with `what` and the logs.
async fn until<F: std::future::Future<Output = bool>>(
    bound: Duration,
    what: &str,
    hosts: &[&Host],
    mut ok: impl FnMut() -> F,
) -> Instant {
    let deadline = Instant::now() + bound;
    loop {
        if ok().await {
            return Instant::now();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = hosts
                .iter()
                .map(|h| format!("--- {} ---\n{}", h.name, h.log()))
                .collect();
            panic!("{what}: not within {bound:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Env {
    server: capstan_apiserver::RunningServer,
    admin: kube::Client,
    root: tempfile::TempDir,
    plugins: PathBuf,
    kubeconfig: PathBuf,
}

impl Env {
    /// The embedded server with the WebApp CRD and the `shop` WebApp, and a plugins directory
    /// holding the `webapp` reconciler.
    async fn start() -> Self {
        let server = support::apiserver().await;
        let admin = server.client().unwrap();
        let root = support::tempdir();
        let plugins = root.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::copy(support::guest("webapp"), plugins.join("webapp.wasm")).unwrap();
        let manifests = root.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::copy(
            support::root().join("examples/webapp-crd.yaml"),
            manifests.join("webapp.yaml"),
        )
        .unwrap();
        capstan::manifests::apply_dir(&admin, &manifests)
            .await
            .unwrap();
        let kubeconfig = root.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Self {
            server,
            admin,
            root,
            plugins,
            kubeconfig,
        }
    }

    fn host(&self, name: &'static str, timing: [&str; 3]) -> Host {
        // Each replica has its own precompiled cache, as each pod has.
        let cache = self.root.path().join(format!("cache-{name}"));
        Host::start(name, &self.plugins, &self.kubeconfig, timing, &cache)
    }

    fn webapps(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.admin.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
                "webapps",
            ),
        )
    }

    async fn replicas(&self) -> Option<i32> {
        Api::<Deployment>::namespaced(self.admin.clone(), "default")
            .get_opt("shop")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec?.replicas)
    }

    async fn set_replicas(&self, n: i32) {
        self.webapps()
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": n}})),
            )
            .await
            .unwrap();
    }

    async fn holder(&self) -> Option<String> {
        Api::<Lease>::namespaced(self.admin.clone(), "default")
            .get_opt("capstan-test")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    }
}

const FAST: [&str; 3] = ["3", "2", "0.5"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_is_replaced_by_the_warm_standby_within_the_lease_duration() {
    let env = Env::start().await;
    let a = env.host("host-a", FAST);
    // The first to come up leads; start the other once it does, so which one is known.
    until(
        Duration::from_secs(120),
        "host-a reconciles shop",
        &[&a],
        || async { env.replicas().await == Some(2) },
    )
    .await;
    assert_eq!(a.readyz(), Some(200));
    let mut b = env.host("host-b", FAST);
    until(
        Duration::from_secs(120),
        "host-b loads its plugin and stands by",
        &[&a, &b],
        || async { b.loaded("webapp") && b.readyz() == Some(503) },
    )
    .await;
    let (_, body) = b.get("/readyz").unwrap();
    assert!(body.contains("standby"), "{body}");
    assert!(env.holder().await.unwrap().starts_with("host-a_"));

    // While b stands by, a alone reconciles: b never runs its reconciler.
    env.set_replicas(3).await;
    until(
        Duration::from_secs(10),
        "a reconciles 3",
        &[&a, &b],
        || async { env.replicas().await == Some(3) },
    )
    .await;
    assert_eq!(a.metric("capstan_leader"), Some(1.0));
    assert_eq!(b.metric("capstan_leader"), Some(0.0));
    let b_reconciles = b.metric(r#"capstan_reconciles_total{plugin="webapp",result="ok"}"#);
    assert_eq!(b_reconciles, None, "the standby reconciled");

    // SIGKILL: nothing is released; b takes over once the lease expires.
    let mut a = a;
    let killed = Instant::now();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    env.set_replicas(4).await;
    let reconciled = until(
        Duration::from_secs(LEASE_SECONDS + 2),
        "the standby reconciles the change after the leader's SIGKILL",
        &[&a, &b],
        || async { env.replicas().await == Some(4) },
    )
    .await;
    let failover = reconciled - killed;
    assert!(
        failover >= Duration::from_millis(LEASE_SECONDS * 1000 - 1000),
        "reconciled {failover:?} after the kill: before the dead leader's lease expired"
    );
    assert_eq!(b.readyz(), Some(200));
    assert_eq!(b.metric("capstan_leader"), Some(1.0));
    assert_eq!(
        b.metric(r#"capstan_leader_transitions_total{transition="acquired"}"#),
        Some(1.0)
    );
    assert!(env.holder().await.unwrap().starts_with("host-b_"));

    // SIGTERM: b finishes, releases the Lease and exits 0.
    let pid = b.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.exited() {
        assert!(Instant::now() < deadline, "b did not exit: {}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.child.wait().unwrap().success(), "{}", b.log());
    assert_eq!(env.holder().await.as_deref(), Some(""), "not released");
    env.server.shutdown().await.unwrap();
}

/// Failover times over repeated SIGKILLs of the leader (docs/PERFORMANCE.md): each round kills
/// the leader, changes the WebApp, measures until the change is reconciled, and starts a new
/// standby. `CAPSTAN_FAILOVER_KILLS` rounds (default 5); `CAPSTAN_FAILOVER_TIMING` is
/// `lease,renew,retry` in seconds (default `3,2,0.5`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test -p capstan --test all failover_times -- --ignored --nocapture"]
async fn failover_times() {
    let kills: usize = std::env::var("CAPSTAN_FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let timing_text =
        std::env::var("CAPSTAN_FAILOVER_TIMING").unwrap_or_else(|_| "3,2,0.5".to_owned());
    let timing: Vec<&'static str> = timing_text
        .split(',')
        .map(|s| &*Box::leak(s.to_owned().into_boxed_str()))
        .collect();
    let timing = [timing[0], timing[1], timing[2]];
    let lease: u64 = timing[0].parse().unwrap();
    let env = Env::start().await;
    let names = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];
    let mut leader = env.host(names[0], timing);
    until(
        Duration::from_secs(120),
        "first leader reconciles",
        &[&leader],
        || async { env.replicas().await == Some(2) },
    )
    .await;
    let mut times = Vec::new();
    for round in 0..kills {
        let standby = env.host(names[(round + 1) % names.len()], timing);
        until(
            Duration::from_secs(120),
            "the standby is warm",
            &[&leader, &standby],
            || async { standby.loaded("webapp") && standby.readyz() == Some(503) },
        )
        .await;
        // Kill at a random point of the renew cycle.
        tokio::time::sleep(Duration::from_millis(fastrand_ms(1000))).await;
        let killed = Instant::now();
        leader.child.kill().unwrap();
        leader.child.wait().unwrap();
        let want = 10 + i32::try_from(round).unwrap();
        env.set_replicas(want).await;
        let done = until(
            Duration::from_secs(lease * 3 + 10),
            "failover",
            &[&leader, &standby],
            || async { env.replicas().await == Some(want) },
        )
        .await;
        times.push(done - killed);
        println!("round {round}: {:?}", done - killed);
        leader = standby;
    }
    times.sort();
    let ms = |d: &Duration| d.as_millis();
    println!(
        "failover over {kills} kills, timing {timing_text}: min {} ms, median {} ms, max {} ms",
        ms(&times[0]),
        ms(&times[times.len() / 2]),
        ms(&times[times.len() - 1])
    );
    drop(leader);
    env.server.shutdown().await.unwrap();
}

/// Milliseconds in `0..max` from the clock (no RNG dependency in this test binary).
fn fastrand_ms(max: u64) -> u64 {
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis(),
    ) % max
}
