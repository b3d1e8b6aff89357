// Fakes for the host imports (`capstan:controller/*`), for running the plugin natively under
// node: `node --import ./test/register.mjs --test`. What the plugin logs lands in `logged`.

export const logged = [];

export function log(level, message, fields) {
  logged.push({ level, message, fields });
}

/** A status channel that records what is sent, as the host's `status-sender` resource. */
export class StatusSender {
  constructor() {
    this.sent = [];
    this.closed = false;
  }
  #push(kind, status) {
    if (this.closed) throw { tag: "closed" };
    this.sent.push({ kind, status });
  }
  send(status) { this.#push("send", status); }
  sendClose(status) { this.#push("send-close", status); this.closed = true; }
  skipClose(status) { this.#push("skip-close", status); this.closed = true; }
}
