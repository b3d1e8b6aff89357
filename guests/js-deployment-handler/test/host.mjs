// Fakes for the host imports (`capstan:controller/*`), for running a plugin natively under node:
// `node --import ./test/register.mjs --test`. What the plugin logs lands in `logged`; what the
// `cache` interface answers is what a test puts in `objects`.

/** log: every record, as `{ level, message, fields }`. */
export const logged = [];

export function log(level, message, fields) {
  logged.push({ level, message, fields });
}

/** cache: the objects it holds, keyed by `kind/namespace/name`, as JSON-able values. */
export const objects = new Map();

export function get(gvk, namespace, name) {
  const found = objects.get(`${gvk.kind}/${namespace ?? ""}/${name}`);
  return found === undefined ? undefined : JSON.stringify(found);
}

export function list(gvk, options) {
  return [...objects.entries()]
    .filter(([key]) => key.startsWith(`${gvk.kind}/${options.namespace ?? ""}`))
    .map(([, obj]) => JSON.stringify(obj));
}

/** status-channel: a sender that records what is sent, as the host's `status-sender` resource. */
export class StatusSender {
  constructor() {
    this.sent = [];
    this.closed = false;
  }
  #push(kind, status) {
    if (this.closed) throw "closed";
    this.sent.push({ kind, status });
  }
  send(status) { this.#push("send", status); }
  sendClose(status) { this.#push("send-close", status); this.closed = true; }
  skipClose(status) { this.#push("skip-close", status); this.closed = true; }
}
