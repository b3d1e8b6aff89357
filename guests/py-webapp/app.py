"""A reconciler for WebApp (examples.capstan.dev/v1alpha1) in Python: the `webapp` example's twin.

Per WebApp it plans a Deployment and a Service named after it, and reports their health. The
`reconciliation` resource lives in `reconciler.py` (componentize-py looks up an exported
interface's resources in the module named after the interface).
"""

from wit_world import exports

from capstan_plugin import gvk, manifest

WEBAPP = gvk("examples.capstan.dev", "v1alpha1", "WebApp")
DEPLOYMENT = gvk("apps", "v1", "Deployment")
SERVICE = gvk("", "v1", "Service")


class Plugin(exports.Plugin):
    def describe(self):
        return manifest(
            "py-webapp",
            "0.1.0",
            watches=[WEBAPP],
            owns=[DEPLOYMENT, SERVICE],
            object_kind=WEBAPP,
        )
