
    def test_plans_a_mirror_with_the_same_data(self):
        import reconciler

        r = reconciler.Reconciliation.open(json.dumps(config_map("settings")))
        r.fetch()
        [entry] = r.plan_resources()
        mirror = json.loads(entry.value)
        self.assertEqual(mirror["metadata"]["name"], "settings-mirror")
        self.assertEqual(mirror["data"], {"greeting": "hello"})
        [health] = r.get_component_health()
        self.assertEqual(health.state, types.HealthState.PROGRESSING, "no mirror yet")
