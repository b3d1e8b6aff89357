
import { get } from "capstan:controller/cache@0.2.0";

const mirrorName = (cm) => `${cm.metadata.name}-mirror`;

// One reconcile of one ConfigMap: it plans a mirror with the same data. The host discards the
// reconciliation (and the instance) afterwards. To return a categorized error from `open`,
// `fetch`, `planResources` or `cleanup`, throw the record itself
// (`throw { category: "invalid-spec", message: "..." }`); any other exception traps the call.
class Reconciliation {
  constructor(cm) {
    this.cm = cm;
    this.mirror = undefined;
  }

  static open(obj) {
    return new Reconciliation(JSON.parse(obj));
  }

  fetch() {
    const found = get(CONFIG_MAP, this.cm.metadata.namespace, mirrorName(this.cm));
    this.mirror = found === undefined ? undefined : JSON.parse(found);
  }

  // Pure: the host applies each entry (server-side apply) with an owner reference.
  planResources() {
    const metadata = { name: mirrorName(this.cm) };
    if (this.cm.metadata.namespace) metadata.namespace = this.cm.metadata.namespace;
    const mirror = { apiVersion: "v1", kind: "ConfigMap", metadata, data: this.cm.data ?? {} };
    return [{ tag: "apply", val: JSON.stringify(mirror) }];
  }

  getComponentHealth() {
    const [state, reason, message] = this.mirror === undefined
      ? ["progressing", "NotFound", "not created yet"]
      : ["ready", "Exists", "created"];
    return [{ component: "Mirror", state, reason, message, errors: [], requeueAfter: undefined }];
  }

  status(computed) {
    return { fields: "{}", conditions: [] };
  }

  cleanup() {
    return { tag: "done" };
  }
}

export const reconciler = { Reconciliation };
