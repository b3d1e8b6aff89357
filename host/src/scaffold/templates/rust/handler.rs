use capstan_sdk::{EventProcessStatus, EventStatus, Handler, ObjectRef, StatusChannel, log};

impl Handler for {{Type}} {
    type Object = ConfigMap;

    fn added(cm: ConfigMap, status: &StatusChannel<'_>) -> EventStatus {
        let keys = cm.data.as_ref().map_or(0, |d| d.len());
        // `send_close` sends a last status (the host calls `on_status` with it) and closes.
        let _ = EventProcessStatus::new()
            .with_message("name", cm.metadata.name.unwrap_or_default())
            .with_message("keys", keys.to_string())
            .send_close(status);
        EventStatus::Completed
    }

    fn updated(new: ConfigMap, old: ConfigMap, status: &StatusChannel<'_>) -> EventStatus {
        if new.data == old.data {
            let _ = EventProcessStatus::new()
                .with_status(EventStatus::Skip)
                .skip_close(status);
            return EventStatus::Skip;
        }
        Self::added(new, status)
    }

    fn deleted(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Completed
    }

    fn on_status(obj: &ObjectRef, status: EventProcessStatus) {
        let messages: Vec<String> = status
            .messages
            .iter()
            .map(|m| format!("{}={}", m.key, m.value))
            .collect();
        log::info("configmap handled", &[("name", &obj.name), ("messages", &messages.join(","))]);
    }
}
