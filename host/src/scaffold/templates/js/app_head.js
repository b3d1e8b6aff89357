// {{name}}: {{kind_description}}.
//
// Build: `npm run build` (componentize-js, package.json); test natively: `npm test`.

import { log } from "capstan:controller/log@0.2.0";
import { eventStatus, gvk, manifest } from "./capstan-plugin.js";

const CONFIG_MAP = gvk("", "v1", "ConfigMap");
// The label of the ConfigMaps this plugin takes (a reconciler's mirrors do not carry it).
const MIRROR_LABEL = "example.capstan.dev/mirror";

export const plugin = {
  describe() {
    // Every field not named here has its default (capstan-plugin.js, `manifest`).
    return manifest("{{name}}", "0.1.0", {
      watches: [CONFIG_MAP],
      objectKind: CONFIG_MAP,{{manifest_extra}}
    });
  },
};
