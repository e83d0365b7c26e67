#!/usr/bin/env bash
# End-to-end test of the openstack function commands against a running Fresco stack.
#
#   OS_AUTH_URL=http://127.0.0.1:5000/v3 OS_USERNAME=admin OS_PASSWORD=... \
#   OS_PROJECT_NAME=admin [OS_FUNCTION_ENDPOINT=http://127.0.0.1:8900] \
#   client/tests/functional/run.sh
#
# Creates (or reuses) the client venv, puts its `openstack` (with this plugin) first on PATH
# and runs e2e.py; see the top of e2e.py for every variable and the scenario. Exit status:
# 0 all steps passed, 1 a step failed, 2 the environment is incomplete.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$("${here}/../../tools/venv.sh" | tail -n 1)"
export PATH="${venv}/bin:${PATH}"
exec "${venv}/bin/python" "${here}/e2e.py" "$@"
