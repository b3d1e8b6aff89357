//! Ring membership against the embedded API server: replicas converge to a partition, a joining
//! replica gains objects only after the others gave them up, a released or expired Lease hands
//! its objects over.

#![allow(clippy::unwrap_used)]

use super::*;
use capstan_apiserver::{ApiServer, RunningServer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const NS: &str = "default";

async fn server() -> (RunningServer, kube::Client) {
    let server = ApiServer::builder()
        .build()
        .unwrap()
        .start_loopback()
        .await
        .unwrap();
    let client = server.client().unwrap();
    (server, client)
}

fn config(identity: &str) -> ShardConfig {
    let mut c = ShardConfig::new(NS);
    c.lease = c.lease.identity(identity).timing(
        Duration::from_secs(2),
        Duration::from_millis(1500),
        Duration::from_millis(200),
    );
    c
}

fn start(client: &kube::Client, identity: &str) -> Sharder {
    Sharder::start(
        client.clone(),
        config(identity),
        Gate::new(None),
        Fence::new(),
        None,
    )
    .unwrap()
}

/// Sample hashes (object uids).
fn hashes() -> Vec<u64> {
    (0..3000)
        .map(|i| key_hash(&format!("{:016x}-uid", key_hash(&format!("seed-{i}")))))
        .collect()
}

/// Waits until every replica serves with `n` members and their grants partition the samples.
async fn partitioned(replicas: &[&Sharder], n: usize) {
    let sample = hashes();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let serving = replicas.iter().all(|r| {
            let m = r.membership.borrow();
            m.serving && m.members.len() == n
        });
        let whole = sample
            .iter()
            .all(|h| replicas.iter().filter(|r| r.gate.owns(*h)).count() == 1);
        if serving && whole {
            return;
        }
        assert!(Instant::now() < deadline, "no partition among {n} replicas");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails the test if any sample hash is granted to two replicas at once, checked continuously.
fn watch_overlap(replicas: Vec<Gate>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let overlap = Arc::new(AtomicBool::new(false));
    let seen = overlap.clone();
    let task = tokio::spawn(async move {
        let sample = hashes();
        loop {
            let grants: Vec<Ranges> = replicas.iter().map(Gate::grant).collect();
            for h in &sample {
                if grants.iter().filter(|g| g.contains(*h)).count() > 1 {
                    seen.store(true, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (overlap, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_partition_and_a_joiner_takes_over_without_overlap() {
    let (server, client) = server().await;
    let a = start(&client, "a");
    let b = start(&client, "b");
    partitioned(&[&a, &b], 2).await;
    let (overlap, watcher) = watch_overlap(vec![a.gate(), b.gate()]);
    // A unit of work in flight on a's part delays the hand-over until it ends.
    let hash = hashes().into_iter().find(|h| a.gate.owns(*h)).unwrap();
    let work = a.gate.begin(hash, "busy").unwrap();
    let c = start(&client, "c");
    let (overlap_c, watcher_c) = watch_overlap(vec![a.gate(), b.gate(), c.gate()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ring = Ring::new(&["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect());
    if ring.owner(hash) == Some("c") {
        assert!(!c.gate.owns(hash), "c waits while a still works on it");
    }
    drop(work);
    partitioned(&[&a, &b, &c], 3).await;
    for h in hashes() {
        let owner = ring.owner(h).unwrap();
        let gate = match owner {
            "a" => &a.gate,
            "b" => &b.gate,
            _ => &c.gate,
        };
        assert!(gate.owns(h), "the ring's owner holds {h:#x}");
    }
    assert!(!overlap.load(Ordering::SeqCst));
    assert!(
        !overlap_c.load(Ordering::SeqCst),
        "never two grants at once"
    );

    // Released: the others take c's share at their next rounds.
    c.release().await;
    partitioned(&[&a, &b], 2).await;
    // Dropped (a crash): b takes a's share once a's Lease expired.
    let gone = Instant::now();
    drop(a);
    partitioned(&[&b], 1).await;
    assert!(
        gone.elapsed() < Duration::from_secs(5),
        "{:?}",
        gone.elapsed()
    );
    assert!(!overlap_c.load(Ordering::SeqCst));
    watcher.abort();
    watcher_c.abort();
    server.shutdown().await.unwrap();
}

#[test]
fn ring_names_must_be_dns_labels() {
    let mut c = config("x");
    assert!(c.validate().is_ok());
    assert_eq!(c.lease_name(), format!("capstan-{:016x}", key_hash("x")));
    c.lease.name = "Not_A_Label".into();
    assert!(matches!(c.validate(), Err(ShardError::RingName(_))));
}

/// Cache per replica for 1, 2 and 3 shards over 10 000 ConfigMaps (docs/PERFORMANCE.md): each
/// replica's sharded informer holds the objects of its ring share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test -p capstan --lib cache_per_shard -- --ignored --nocapture"]
async fn cache_per_shard() {
    use crate::contract::Gvk;
    use crate::informer::Informers;
    use k8s_openapi::api::core::v1::ConfigMap;
    let (server, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let total = 10_000usize;
    futures::future::join_all((0..8).map(|worker| {
        let api = api.clone();
        async move {
            for i in (worker..total).step_by(8) {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench", "i": i.to_string()}},
                    "data": {"k": "x".repeat(100)},
                }))
                .unwrap();
                api.create(&PostParams::default(), &cm).await.unwrap();
            }
        }
    }))
    .await;
    let gvk = Gvk::new("", "v1", "ConfigMap");
    for n in 1..=3usize {
        let members: BTreeSet<String> = (0..n).map(|i| format!("replica-{i}")).collect();
        let ring = Ring::new(&members);
        let mut counts = Vec::new();
        for member in &members {
            let (_tx, rx) = watch::channel(ring.ranges_of(member));
            let informers = Informers::builder(client.clone()).shard_by(rx).build();
            let handle = informers.acquire_shard(&gvk).await.unwrap();
            handle.synced().await;
            let json: usize = handle
                .list(None, None)
                .unwrap()
                .iter()
                .map(|o| serde_json::to_vec(&**o).unwrap().len())
                .sum();
            counts.push((handle.len(), json));
        }
        let max = counts.iter().map(|c| c.0).max().unwrap();
        println!(
            "{n} shard(s): objects cached per replica {:?} (JSON bytes {:?}); the largest is {:.3} of all, goal <= {:.3}",
            counts.iter().map(|c| c.0).collect::<Vec<_>>(),
            counts.iter().map(|c| c.1).collect::<Vec<_>>(),
            max as f64 / total as f64,
            1.2 / n as f64
        );
    }
    server.shutdown().await.unwrap();
}
