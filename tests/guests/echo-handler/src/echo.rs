// The echo handler's code, shared by echo-handler (0.1.0) and echo-handler-v2 (0.2.0).

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventProcessStatus, EventStatus, Handler, Manifest, ObjectRef, Plugin, StatusChannel};

struct Echo;

impl Plugin for Echo {
    fn manifest() -> Manifest {
        Manifest::new("echo-handler", VERSION).watches::<Deployment>()
    }
}

fn count(dep: &Deployment) -> usize {
    let labels = dep.metadata.labels.clone().unwrap_or_default();
    labels.get("statuses").and_then(|n| n.parse().ok()).unwrap_or(1)
}

impl Handler for Echo {
    type Object = Deployment;

    fn added(dep: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let n = count(&dep);
        for i in 0..n {
            let s = EventProcessStatus::new().with_status(EventStatus::Processing).with_message("seq", i.to_string());
            if s.send(ch).is_err() {
                return EventStatus::Failure;
            }
        }
        let _ = EventProcessStatus::new().with_message("seq", n.to_string()).with_error("last").send_close(ch);
        EventStatus::Completed
    }

    fn updated(_: Deployment, _: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let _ = EventProcessStatus::new().with_message("skip", "yes").skip_close(ch);
        EventStatus::Skip
    }

    fn deleted(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let _ = EventProcessStatus::new().with_status(EventStatus::PartialCompleted).send_close(ch);
        EventStatus::Completed
    }

    fn on_status(_: &ObjectRef, status: EventProcessStatus) {
        assert!(status.messages.iter().all(|m| m.key != "skip"), "on-status called for a skip-close");
    }
}

capstan_sdk::export!(Echo: Handler);
