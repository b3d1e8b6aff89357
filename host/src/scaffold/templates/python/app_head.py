"""{{name}}: {{kind_description}}.

Build: ./build.sh (componentize-py, requirements.txt); test natively: ./test.sh.
"""

import json

from wit_world import exports
from wit_world.imports import log, types

from capstan_plugin import event_status, gvk, manifest

CONFIG_MAP = gvk("", "v1", "ConfigMap")
# The label of the ConfigMaps this plugin takes (a reconciler's mirrors do not carry it).
MIRROR_LABEL = "example.capstan.dev/mirror"


class Plugin(exports.Plugin):
    def describe(self):
        # Every field not named here has its default (capstan_plugin.manifest).
        return manifest(
            "{{name}}",
            "0.1.0",
            watches=[CONFIG_MAP],
            object_kind=CONFIG_MAP,{{manifest_extra}}
        )
