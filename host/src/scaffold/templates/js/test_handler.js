
test("added reports the keys and closes", () => {
  const ch = new StatusSender();
  assert.equal(app.handler.added(configMap("settings"), ch), "completed");
  assert.deepEqual(ch.sent.map((s) => s.kind), ["send-close"]);
  assert.deepEqual(ch.sent[0].status.messages, [{ key: "name", value: "settings" }, { key: "keys", value: "1" }]);
});
