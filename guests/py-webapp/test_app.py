"""Unit tests, run natively (./test.sh): the host's `cache` import is replaced by a fake."""

import json
import unittest

from componentize_py_types import Err
from wit_world.imports import cache, types

import app
import reconciler

SHOP = {
    "apiVersion": "examples.capstan.dev/v1alpha1",
    "kind": "WebApp",
    "metadata": {"name": "shop", "namespace": "default"},
    "spec": {"image": "nginx:1.27", "replicas": 2, "port": 8080},
}


def fake_cache(objects):
    """`cache.get` answering from `objects`, keyed by (kind, namespace, name)."""

    def get(gvk, namespace, name):
        found = objects.get((gvk.kind, namespace, name))
        return json.dumps(found) if found is not None else None

    return get


class WebAppTest(unittest.TestCase):
    def setUp(self):
        self.saved = cache.get
        cache.get = fake_cache({})

    def tearDown(self):
        cache.get = self.saved

    def reconcile(self, webapp):
        r = reconciler.Reconciliation.open(json.dumps(webapp))
        r.fetch()
        return r

    def test_manifest_watches_webapps_and_owns_its_children(self):
        m = app.Plugin().describe()
        self.assertEqual(m.name, "py-webapp")
        self.assertEqual([w.kind for w in m.watches], ["WebApp"])
        self.assertEqual([o.kind for o in m.owns], ["Deployment", "Service"])
        self.assertEqual(m.status_mode, types.StatusMode.AUTOMATIC)

    def test_plans_a_deployment_and_a_service_named_after_the_app(self):
        plan = [json.loads(e.value) for e in self.reconcile(SHOP).plan_resources()]
        self.assertEqual([(o["kind"], o["metadata"]["name"]) for o in plan],
                         [("Deployment", "shop"), ("Service", "shop")])
        self.assertEqual(plan[0]["spec"]["replicas"], 2)
        self.assertEqual(plan[0]["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27")

    def test_missing_children_are_progressing(self):
        states = [h.state for h in self.reconcile(SHOP).get_component_health()]
        self.assertEqual(states, [types.HealthState.PROGRESSING] * 2)

    def test_available_children_are_ready(self):
        dep = {"spec": {"replicas": 2}, "status": {"availableReplicas": 2, "updatedReplicas": 2}}
        cache.get = fake_cache({("Deployment", "default", "shop"): dep,
                                ("Service", "default", "shop"): {}})
        states = [h.state for h in self.reconcile(SHOP).get_component_health()]
        self.assertEqual(states, [types.HealthState.READY] * 2)

    def test_invalid_spec_is_refused_with_its_category(self):
        bad = json.loads(json.dumps(SHOP))
        bad["spec"]["port"] = 0
        with self.assertRaises(Err) as refused:
            self.reconcile(bad).plan_resources()
        self.assertEqual(refused.exception.value.category, types.ErrorCategory.INVALID_SPEC)


if __name__ == "__main__":
    unittest.main()
