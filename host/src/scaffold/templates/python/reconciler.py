"""The reconciliation of one ConfigMap: it plans a mirror with the same data.

componentize-py finds an exported interface's resources in the module named after the interface:
this one, `reconciler`.
"""

import json

from wit_world.exports import reconciler
from wit_world.imports import cache, types

from app import CONFIG_MAP
from capstan_plugin import health


def mirror_name(cm):
    return cm["metadata"]["name"] + "-mirror"


class Reconciliation(reconciler.Reconciliation):
    """One reconcile of one object; the host discards it (and the instance) afterwards."""

    def __init__(self, cm):
        self.cm = cm
        self.mirror = None

    @classmethod
    def open(cls, obj):
        return cls(json.loads(obj))

    def fetch(self):
        found = cache.get(CONFIG_MAP, self.cm["metadata"].get("namespace"), mirror_name(self.cm))
        self.mirror = json.loads(found) if found is not None else None

    def plan_resources(self):
        """Pure: the host applies each entry (server-side apply) with an owner reference."""
        mirror = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": mirror_name(self.cm)},
            "data": self.cm.get("data") or {},
        }
        if self.cm["metadata"].get("namespace"):
            mirror["metadata"]["namespace"] = self.cm["metadata"]["namespace"]
        return [types.PlanEntry_Apply(json.dumps(mirror))]

    def get_component_health(self):
        if self.mirror is None:
            return [health("Mirror", types.HealthState.PROGRESSING, "NotFound", "not created yet")]
        return [health("Mirror", types.HealthState.READY, "Exists", "created")]

    def status(self, computed):
        return types.StatusUpdate(fields="{}", conditions=[])

    def cleanup(self):
        return types.CleanupOutcome_Done()
