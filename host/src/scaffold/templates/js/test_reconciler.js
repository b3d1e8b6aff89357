
test("plans a mirror with the same data", () => {
  objects.clear();
  const r = app.reconciler.Reconciliation.open(configMap("settings"));
  r.fetch();
  const [entry] = r.planResources();
  const mirror = JSON.parse(entry.val);
  assert.equal(mirror.metadata.name, "settings-mirror");
  assert.deepEqual(mirror.data, { greeting: "hello" });
  assert.equal(r.getComponentHealth()[0].state, "progressing", "no mirror yet");
});
