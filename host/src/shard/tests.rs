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
