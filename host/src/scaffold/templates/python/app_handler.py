

class Handler(exports.Handler):
    """One call per event, on an instance of its own."""

    def added(self, obj, status):
        cm = json.loads(obj)
        keys = len(cm.get("data") or {})
        # `send_close` sends a last status (the host calls `on_status` with it) and closes.
        status.send_close(
            event_status(messages={"name": cm["metadata"]["name"], "keys": str(keys)})
        )
        return types.EventStatus.COMPLETED

    def updated(self, new_obj, old_obj, status):
        if json.loads(new_obj).get("data") == json.loads(old_obj).get("data"):
            status.skip_close(event_status(types.EventStatus.SKIP))
            return types.EventStatus.SKIP
        return self.added(new_obj, status)

    def deleted(self, obj, status):
        return types.EventStatus.COMPLETED

    def on_status(self, obj, status):
        messages = ",".join(f"{m.key}={m.value}" for m in status.messages)
        log.log(log.Level.INFO, "configmap handled", [("name", obj.name), ("messages", messages)])
