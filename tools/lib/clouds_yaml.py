"""Adds (or updates) one cloud for a Fresco development stack to the clouds.yaml that the
openstack CLI reads, without losing the clouds already there.

    python clouds_yaml.py CLOUD ENDPOINT TOKEN

Run with the Python of the CLI's virtualenv (it needs openstacksdk and PyYAML). The cloud uses
keystoneauth's `admin_token` plugin: every request carries TOKEN as X-Auth-Token and goes to
ENDPOINT, which is what an API in `auth_strategy = noauth` mode expects (TOKEN is then
`user:project[:role,role]`).

Which file: the one openstack itself would read outside a directory holding its own
clouds.yaml, so that `openstack --os-cloud CLOUD ...` works from anywhere without flags:
$OS_CLIENT_CONFIG_FILE when set, else the first clouds.yaml/.yml/.json that exists in the
user's and the system's config directories (~/.config/openstack, /etc/openstack, ...), else a
new ~/.config/openstack/clouds.yaml. An existing file is rewritten only when the entry
changes, and its previous content is kept beside it as <file>.before-fresco. Prints the path.
"""

import json
import os
import shutil
import sys

import yaml
from openstack.config import loader


def target_file():
    override = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if override:
        return override
    here = os.getcwd()
    for path in loader.CONFIG_FILES:
        if os.path.dirname(path) == here:
            continue  # the directory tools/up happens to run in is not where users will be
        if os.path.exists(path):
            return path
    return os.path.join(loader.CONFIG_HOME, "clouds.yaml")


def main(cloud, endpoint, token):
    path = target_file()
    entry = {
        "auth_type": "admin_token",
        "auth": {"endpoint": endpoint, "token": token},
        "function_endpoint_override": endpoint,
    }
    config = {}
    if os.path.exists(path):
        with open(path) as f:
            config = (json.load(f) if path.endswith(".json") else yaml.safe_load(f)) or {}
        if not isinstance(config, dict) or not isinstance(config.get("clouds", {}), dict):
            sys.exit("%s does not hold a 'clouds' mapping: not touching it" % path)
    clouds = config.setdefault("clouds", {})
    if clouds.get(cloud) == entry:
        print(path)
        return
    clouds[cloud] = entry
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        shutil.copy2(path, path + ".before-fresco")
    tmp = path + ".tmp-fresco"
    with open(tmp, "w") as f:
        if path.endswith(".json"):
            json.dump(config, f, indent=2)
        else:
            yaml.safe_dump(config, f, default_flow_style=False, sort_keys=False)
    if os.path.exists(path):
        # the same owner and mode as before (a system-wide file stays readable by its users)
        shutil.copymode(path, tmp)
        st = os.stat(path)
        os.chown(tmp, st.st_uid, st.st_gid)
    else:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    print(path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: clouds_yaml.py CLOUD ENDPOINT TOKEN")
    main(*sys.argv[1:])
