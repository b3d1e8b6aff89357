// Unit tests, run natively with fakes for the host imports: `npm test`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { handler, plugin } from "../app.js";
import { StatusSender, logged } from "./host.mjs";

const deployment = (name, replicas) =>
  JSON.stringify({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name, namespace: "default" }, spec: { replicas } });

test("the manifest watches Deployments, every other field at its default", () => {
  const m = plugin.describe();
  assert.equal(m.name, "js-deployment-handler");
  assert.deepEqual(m.watches, [{ group: "apps", version: "v1", kind: "Deployment" }]);
  assert.equal(m.statusMode, "automatic");
  assert.deepEqual(m.events, { namespaces: [], labelSelector: undefined, changes: "all" });
});

test("added reports progress, then closes with the replicas", () => {
  const ch = new StatusSender();
  assert.equal(handler.added(deployment("web", 3), ch), "completed");
  assert.deepEqual(ch.sent.map((s) => [s.kind, s.status.status]), [["send", "processing"], ["send-close", "completed"]]);
  assert.deepEqual(ch.sent[1].status.messages, [{ key: "replicas", value: "3" }]);
});

test("an update that leaves the spec alone is skipped without on-status", () => {
  const ch = new StatusSender();
  assert.equal(handler.updated(deployment("web", 3), deployment("web", 3), ch), "skip");
  assert.deepEqual(ch.sent.map((s) => s.kind), ["skip-close"]);
});

test("on-status logs the messages", () => {
  handler.onStatus({ name: "web" }, { status: "completed", messages: [{ key: "replicas", value: "3" }] });
  assert.deepEqual(logged.at(-1).fields, [["name", "web"], ["status", "completed"], ["messages", "replicas=3"]]);
});
