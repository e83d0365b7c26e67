#!/usr/bin/env bash
# Runs the client's unit tests in the client venv (created first if needed).
#
#   client/tools/unit.sh [pytest args...]
#
# Exits non-zero when a test fails, and also when no test ran (pytest's exit code 5 is a
# failure here, never a pass).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client_dir="$(cd "${here}/.." && pwd)"
venv="$("${here}/venv.sh" | tail -n 1)"

cd "${client_dir}"
set +e
"${venv}/bin/python" -m pytest -p no:cacheprovider tests/unit "$@"
rc=$?
set -e
if [[ ${rc} -eq 5 ]]; then
    echo "client unit tests: no test ran" >&2
    exit 1
fi
exit "${rc}"
