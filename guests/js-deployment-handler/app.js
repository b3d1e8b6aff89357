// The deployment handler in JavaScript: the `deployment-handler` example's twin. It reports
// progress on each Deployment event's status channel and logs what `on-status` receives.

import { log } from "capstan:controller/log@0.2.0";
import { eventStatus, gvk, manifest } from "./capstan-plugin.js";

const DEPLOYMENT = gvk("apps", "v1", "Deployment");

export const plugin = {
  describe() {
    return manifest("js-deployment-handler", "0.1.0", { watches: [DEPLOYMENT], objectKind: DEPLOYMENT });
  },
};

export const handler = {
  added(obj, status) {
    const dep = JSON.parse(obj);
    // A Deployment named `crash` throws, uncaught: the call traps, this event fails, and the
    // plugin goes on serving every other event (docs/PLUGINS.md, "Errors").
    if (dep.metadata.name === "crash") throw new Error(`cannot handle ${dep.metadata.name}`);
    console.log(`added ${dep.metadata.name}:`, `${dep.spec?.replicas ?? 1} replicas`);
    // Progress first, then the final status; `sendClose` also calls `onStatus`.
    status.send(eventStatus({ status: "processing", messages: { deployment: dep.metadata.name } }));
    status.sendClose(eventStatus({ messages: { replicas: dep.spec?.replicas ?? 1 } }));
    return "completed";
  },

  updated(newObj, oldObj, status) {
    const [n, o] = [JSON.parse(newObj), JSON.parse(oldObj)];
    if (JSON.stringify(n.spec) === JSON.stringify(o.spec)) {
      // Nothing to do: close without calling `onStatus`.
      status.skipClose(eventStatus({ status: "skip" }));
      return "skip";
    }
    status.sendClose(eventStatus({ messages: { deployment: n.metadata.name } }));
    return "completed";
  },

  deleted(obj, status) {
    status.sendClose(eventStatus({ messages: { deleted: JSON.parse(obj).metadata.name } }));
    return "completed";
  },

  onStatus(ref, s) {
    const messages = s.messages.map((m) => `${m.key}=${m.value}`).join(",");
    log("info", "deployment status", [["name", ref.name], ["status", s.status], ["messages", messages]]);
  },
};
