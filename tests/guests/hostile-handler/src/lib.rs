//! Misbehaves on demand, by the object's name: `spin` loops forever, `bomb` allocates without end,
//! `panic` panics; anything else is handled normally.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventProcessStatus, EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct Hostile;

impl Plugin for Hostile {
    fn manifest() -> Manifest {
        Manifest::new("hostile-handler", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for Hostile {
    type Object = Deployment;

    fn added(dep: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        match dep.metadata.name.as_deref() {
            Some("spin") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("bomb") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("panic") => panic!("hostile plugin panics"),
            _ => {
                let _ = EventProcessStatus::new().send_close(ch);
                EventStatus::Completed
            }
        }
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }

    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }
}

capstan_sdk::export!(Hostile);
