"""The WebApp reconciliation: fetch the children, plan them, report their health."""

import json

from wit_world.exports import reconciler
from wit_world.imports import cache, log, types

from app import DEPLOYMENT, SERVICE
from capstan_plugin import error, health


def labels(app):
    return {"app": app["metadata"]["name"]}


def meta(app):
    m = app["metadata"]
    out = {"name": m["name"], "labels": labels(app)}
    if m.get("namespace"):
        out["namespace"] = m["namespace"]
    return out


def deployment(app):
    spec = app["spec"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(app),
        "spec": {
            "replicas": spec.get("replicas", 1),
            "selector": {"matchLabels": labels(app)},
            "template": {
                "metadata": {"labels": labels(app)},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": spec["image"],
                            "ports": [{"containerPort": spec["port"]}],
                        }
                    ]
                },
            },
        },
    }


def service(app):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(app),
        "spec": {"selector": labels(app), "ports": [{"port": app["spec"]["port"]}]},
    }


class Reconciliation(reconciler.Reconciliation):
    """One reconcile of one WebApp; the host discards it (and the instance) afterwards."""

    def __init__(self, app):
        self.app = app
        self.deployment = None
        self.service = None

    @classmethod
    def open(cls, obj):
        return cls(json.loads(obj))

    def fetch(self):
        m = self.app["metadata"]
        ns, name = m.get("namespace"), m["name"]
        found = cache.get(DEPLOYMENT, ns, name)
        self.deployment = json.loads(found) if found is not None else None
        found = cache.get(SERVICE, ns, name)
        self.service = json.loads(found) if found is not None else None

    def plan_resources(self):
        spec = self.app.get("spec", {})
        if not spec.get("image") or spec.get("port", 0) <= 0:
            raise error(
                types.ErrorCategory.INVALID_SPEC,
                "spec.image must be set and spec.port positive",
            )
        # The image named `crash` raises, uncaught: the call traps, this object backs off, and
        # the plugin goes on serving every other WebApp (docs/PLUGINS.md, "Errors").
        if spec["image"] == "crash":
            raise RuntimeError(f"cannot plan {self.app['metadata']['name']}")
        print(f"planning {self.app['metadata']['name']}:", end=" ")
        print(f"image {spec['image']}")
        return [
            types.PlanEntry_Apply(json.dumps(deployment(self.app))),
            types.PlanEntry_Apply(json.dumps(service(self.app))),
        ]

    def get_component_health(self):
        return [deployment_health(self.deployment), service_health(self.service)]

    def status(self, computed):
        return types.StatusUpdate(fields="{}", conditions=[])

    def cleanup(self):
        return types.CleanupOutcome_Done()


def deployment_health(dep):
    if dep is None:
        return health(
            "Deployment",
            types.HealthState.PROGRESSING,
            "NotFound",
            "deployment not created yet",
            errors=[
                types.CategorizedError(
                    types.ErrorCategory.MISSING_DOWNSTREAM_DEPENDENCY, "deployment not found"
                )
            ],
        )
    desired = (dep.get("spec") or {}).get("replicas", 1)
    status = dep.get("status") or {}
    available = status.get("availableReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    if available >= desired and updated >= desired:
        return health(
            "Deployment", types.HealthState.READY, "Available",
            f"{available}/{desired} replicas available",
        )
    return health(
        "Deployment", types.HealthState.PROGRESSING, "RollingOut",
        f"{available}/{desired} replicas available, {updated} updated",
    )


def service_health(svc):
    if svc is None:
        return health(
            "Service", types.HealthState.PROGRESSING, "NotFound", "service not created yet",
            errors=[
                types.CategorizedError(
                    types.ErrorCategory.MISSING_DOWNSTREAM_DEPENDENCY, "service not found"
                )
            ],
        )
    return health("Service", types.HealthState.READY, "Exists", "created")
