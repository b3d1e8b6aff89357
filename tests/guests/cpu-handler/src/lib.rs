//! CPU-bound on purpose: `added` runs as many rounds of xorshift as the object's `work` label
//! says, touching no host import; for measuring what epoch interruption costs running wasm.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct Cpu;

impl Plugin for Cpu {
    fn manifest() -> Manifest {
        Manifest::new("cpu-handler", "0.1.0").watches::<Deployment>()
    }
}

fn work(dep: &Deployment) -> u64 {
    let labels = dep.metadata.labels.clone().unwrap_or_default();
    labels.get("work").and_then(|n| n.parse().ok()).unwrap_or(0)
}

impl Handler for Cpu {
    type Object = Deployment;

    fn added(dep: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..work(&dep) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if std::hint::black_box(x) == 0 {
            EventStatus::Failure
        } else {
            EventStatus::Completed
        }
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }

    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }
}

capstan_sdk::export!(Cpu: Handler);
