// Unit tests, run natively with fakes for the host imports (test/host.mjs): `npm test`.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as app from "../app.js";
import { StatusSender, objects } from "./host.mjs";

const configMap = (name) =>
  JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "default" }, data: { greeting: "hello" } });

test("the manifest watches ConfigMaps", () => {
  const m = app.plugin.describe();
  assert.equal(m.name, "{{name}}");
  assert.deepEqual(m.watches, [{ group: "", version: "v1", kind: "ConfigMap" }]);
});
