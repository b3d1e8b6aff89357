#!/bin/sh
# Build the plugin component: ./build.sh [OUT.wasm]   (needs componentize-py: requirements.txt)
set -eu
cd "$(dirname "$0")"
componentize-py -d "${CAPSTAN_WIT:-../../wit}" -w reconciler-plugin componentize app -o "${1:-py_webapp.wasm}"
