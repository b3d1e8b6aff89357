"""Unit tests, run natively (./test.sh): the host's imports are replaced by fakes."""

import json
import unittest

from wit_world.imports import log, types

import app

try:
    from wit_world.imports import cache
except ImportError:  # a handler's world imports no cache
    cache = None


def config_map(name):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"greeting": "hello"},
    }


class FakeStatusSender:
    """The host's status channel: records what is sent."""

    def __init__(self):
        self.sent = []

    def send(self, status):
        self.sent.append(("send", status))

    def send_close(self, status):
        self.sent.append(("send-close", status))

    def skip_close(self, status):
        self.sent.append(("skip-close", status))


class PluginTest(unittest.TestCase):
    def setUp(self):
        self.saved = log.log
        self.logged = []
        log.log = lambda level, message, fields: self.logged.append((level, message, fields))
        if cache is not None:
            self.saved_get = cache.get
            # What the cache holds: JSON text by (kind, namespace, name).
            self.objects = {}
            cache.get = lambda gvk, ns, name: self.objects.get((gvk.kind, ns, name))

    def tearDown(self):
        log.log = self.saved
        if cache is not None:
            cache.get = self.saved_get

    def test_manifest_watches_config_maps(self):
        m = app.Plugin().describe()
        self.assertEqual(m.name, "{{name}}")
        self.assertEqual([w.kind for w in m.watches], ["ConfigMap"])
