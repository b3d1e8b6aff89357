
    def test_added_reports_the_keys_and_closes(self):
        channel = FakeStatusSender()
        out = app.Handler().added(json.dumps(config_map("settings")), channel)
        self.assertEqual(out, types.EventStatus.COMPLETED)
        self.assertEqual([kind for kind, _ in channel.sent], ["send-close"])
        messages = {m.key: m.value for m in channel.sent[0][1].messages}
        self.assertEqual(messages, {"name": "settings", "keys": "1"})
