//! The deployment handler of seed 000: it reports progress on each event's status channel.

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{
    EventProcessStatus, EventStatus, Handler, Manifest, ObjectRef, Plugin, StatusChannel, log,
};

/// Handles apps/v1 Deployments.
pub struct DeploymentHandler;

impl Plugin for DeploymentHandler {
    fn manifest() -> Manifest {
        Manifest::new("deployment-handler", "0.1.0").watches::<Deployment>()
    }
}

impl Handler for DeploymentHandler {
    type Object = Deployment;

    fn added(dep: Deployment, status: &StatusChannel<'_>) -> EventStatus {
        let name = dep.metadata.name.unwrap_or_default();
        let replicas = dep.spec.and_then(|s| s.replicas).unwrap_or(1);
        // Progress first, then the final status; `send_close` also calls `on_status`.
        let _ = EventProcessStatus::new()
            .with_status(EventStatus::Processing)
            .with_message("deployment", &name)
            .send(status);
        let _ = EventProcessStatus::new()
            .with_message("replicas", replicas.to_string())
            .send_close(status);
        EventStatus::Completed
    }

    fn updated(new: Deployment, old: Deployment, status: &StatusChannel<'_>) -> EventStatus {
        if new.spec == old.spec {
            // Nothing to do: close without calling `on_status`.
            let _ = EventProcessStatus::new()
                .with_status(EventStatus::Skip)
                .skip_close(status);
            return EventStatus::Skip;
        }
        let _ = EventProcessStatus::new()
            .with_message("deployment", new.metadata.name.unwrap_or_default())
            .send_close(status);
        EventStatus::Completed
    }

    fn deleted(dep: Deployment, status: &StatusChannel<'_>) -> EventStatus {
        let _ = EventProcessStatus::new()
            .with_message("deleted", dep.metadata.name.unwrap_or_default())
            .send_close(status);
        EventStatus::Completed
    }

    fn on_status(obj: &ObjectRef, status: EventProcessStatus) {
        let messages: Vec<String> = status
            .messages
            .iter()
            .map(|m| format!("{}={}", m.key, m.value))
            .collect();
        log::info(
            "deployment status",
            &[
                ("name", &obj.name),
                ("status", &format!("{:?}", status.status)),
                ("messages", &messages.join(",")),
            ],
        );
    }
}

capstan_sdk::export!(DeploymentHandler: Handler);

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_sdk::Delivery;

    #[test]
    fn added_reports_progress_then_closes() {
        let ch = StatusChannel::recorder();
        let status = DeploymentHandler::added(Deployment::default(), &ch);
        assert_eq!(status, EventStatus::Completed);
        let sent = ch.recorded();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0.status, EventStatus::Processing);
        assert_eq!(sent[1].1, Delivery::SendClose);
    }

    #[test]
    fn unchanged_update_is_skipped_silently() {
        let ch = StatusChannel::recorder();
        let dep = Deployment::default();
        assert_eq!(
            DeploymentHandler::updated(dep.clone(), dep, &ch),
            EventStatus::Skip
        );
        assert_eq!(ch.recorded()[0].1, Delivery::SkipClose);
    }
}
