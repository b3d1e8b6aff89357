
// One call per event, on an instance of its own.
export const handler = {
  added(obj, status) {
    const cm = JSON.parse(obj);
    // `sendClose` sends a last status (the host calls `onStatus` with it) and closes.
    status.sendClose(eventStatus({ messages: { name: cm.metadata.name, keys: Object.keys(cm.data ?? {}).length } }));
    return "completed";
  },

  updated(newObj, oldObj, status) {
    if (JSON.stringify(JSON.parse(newObj).data) === JSON.stringify(JSON.parse(oldObj).data)) {
      status.skipClose(eventStatus({ status: "skip" }));
      return "skip";
    }
    return handler.added(newObj, status);
  },

  deleted(obj, status) {
    return "completed";
  },

  onStatus(ref, s) {
    const messages = s.messages.map((m) => `${m.key}=${m.value}`).join(",");
    log("info", "configmap handled", [["name", ref.name], ["messages", messages]]);
  },
};
