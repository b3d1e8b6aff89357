// Helpers for Capstan plugins written in JavaScript: the contract's defaults, in one place.
//
// The WIT records have no optional fields: every field of a manifest or an event status must be
// given. These functions fill what docs/PLUGINS.md calls the defaults, so that a plugin names
// only what differs. Plain JavaScript with no import: tests load it natively.

/** A group-version-kind; `group` is empty for the core group (ConfigMap, Service...). */
export function gvk(group, version, kind) {
  return { group, version, kind };
}

const MANIFEST_DEFAULTS = {
  watches: [],
  owns: [],
  access: [],
  statusMode: "automatic",
  finalizer: false,
  podLogs: false,
  observability: "info",
  phaseTimeouts: [],
  waitForOwner: undefined,
  objectKind: undefined,
  events: { namespaces: [], labelSelector: undefined, changes: "all" },
};

/** A manifest with every field at its default, then `fields` (camelCase names) over them. */
export function manifest(name, version, fields = {}) {
  for (const key of Object.keys(fields)) {
    if (!(key in MANIFEST_DEFAULTS)) throw new TypeError(`a manifest has no field ${key}`);
  }
  return { name, version, ...structuredClone(MANIFEST_DEFAULTS), ...fields };
}

/** An event-process-status: `completed`, no messages, no retry, host default retries. */
export function eventStatus({ status = "completed", messages = {}, retry = false, maxRetry = 0, error = undefined } = {}) {
  return {
    status,
    messages: Object.entries(messages).map(([key, value]) => ({ key, value: String(value) })),
    retry,
    maxRetry,
    error,
  };
}
