#!/bin/sh
# Run the unit tests natively, with fakes for the host imports: ./test.sh
set -eu
cd "$(dirname "$0")"
rm -rf .bindings
componentize-py -d "${CAPSTAN_WIT:-../../wit}" -w reconciler-plugin bindings .bindings
PYTHONPATH=.bindings python3 -m unittest -v test_app
