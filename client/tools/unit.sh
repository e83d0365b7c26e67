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
# `pip install ./client` (the quick start, DevStack) builds in the tree and leaves an egg-info
# with the entry points of that moment; pytest puts this directory on sys.path, so a stale one
# would hide the venv's metadata (seen: new commands missing after pyproject.toml changed).
rm -rf "${client_dir}"/*.egg-info "${client_dir}/build"
set +e
"${venv}/bin/python" -m pytest -p no:cacheprovider tests/unit "$@"
rc=$?
set -e
if [[ ${rc} -eq 5 ]]; then
    echo "client unit tests: no test ran" >&2
    exit 1
fi
exit "${rc}"
