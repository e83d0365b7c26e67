#!/usr/bin/env bash
# Creates (or refreshes) the virtualenv the client's tests run in, idempotently.
#
#   client/tools/venv.sh            # venv at $FRESCO_CLIENT_VENV (default /opt/fresco-dev/client-venv)
#
# It installs python-openstackclient, osc-lib, keystoneauth1, pytest, requests-mock, fixtures
# (keystoneauth1.fixture needs it) and this
# plugin (editable). A stamp file keyed on pyproject.toml makes a second run a no-op, so
# callers may run it before every test run. Prints the venv's path on its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client_dir="$(cd "${here}/.." && pwd)"
venv="${FRESCO_CLIENT_VENV:-/opt/fresco-dev/client-venv}"
python="${PYTHON:-python3}"

stamp_key="$(cat "${client_dir}/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
stamp="${venv}/.fresco-client-stamp"

# Up to date when the stamp matches and frescoclient is this checkout's (an editable install;
# a plain `pip install client/`, as the DevStack plugin does, would shadow the working tree).
if [[ -x "${venv}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${stamp_key}" ]] \
    && (cd / && "${venv}/bin/python" -c '
import sys, os, frescoclient.osc.plugin, osc_lib, pytest, requests_mock, fixtures
sys.exit(os.path.dirname(os.path.realpath(frescoclient.__file__)) != os.path.realpath(sys.argv[1]))
' "${client_dir}/frescoclient") 2>/dev/null; then
    echo "${venv}"
    exit 0
fi

if [[ ! -x "${venv}/bin/python" ]]; then
    mkdir -p "$(dirname "${venv}")"
    "${python}" -m venv "${venv}"
fi

pip=("${venv}/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --upgrade "pip>=23" "setuptools>=77" wheel
"${pip[@]}" install python-openstackclient osc-lib keystoneauth1 pytest requests-mock fixtures
# No build isolation: setuptools is already in the venv, and a rerun stays offline-friendly.
"${pip[@]}" install --no-build-isolation -e "${client_dir}"

echo "${stamp_key}" >"${stamp}"
echo "${venv}"
