#!/usr/bin/env bash
# The quick start as a new user meets it, driven from the outside:
#  - the openstack CLI installed the way the README says (`python3 -m venv V`,
#    `V/bin/pip install ./client`; the venv is FRESCO_CLI_VENV, made afresh when client/ changes
#    and reused otherwise, so a rerun is quick);
#  - a noauth stack of its own, started by the same functions tools/up uses (tools/lib/stack.sh)
#    with the debug binaries on free loopback ports and a fresh database on the shared
#    PostgreSQL;
#  - the clouds.yaml cloud fresco-dev and the `openstack --os-cloud fresco-dev ...` lines that
#    tools/up prints (stack_cli_setup), run exactly as printed from an unrelated directory, with
#    a HOME of its own (the real ~/.config is not touched) and `openstack` put on a PATH of its
#    own; an existing clouds.yaml keeps its other clouds;
#  - executions listed newest first by `openstack function execution list`;
#  - `openstack function run-local` (the local emulator, the real fresco-agent) printing what
#    `function invoke` answered.
#
# Needs (tools/test provides them): FRESCO_TEST_DATABASE_URL, the debug binaries in
# FRESCO_BIN_DIR (default target/debug), the shim at FRESCO_SHIM_PATH, a Docker engine with the
# runtime images fresco/python3:dev and fresco/provided:dev, PyPI for a first venv.
# Prints "N passed, N failed" last; exits non-zero when a check failed. Keeps its directory
# (logs, config) when one did.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${FRESCO_TEST_DATABASE_URL:?FRESCO_TEST_DATABASE_URL must name the shared PostgreSQL (see tools/test)}"
T=$(mktemp -d /tmp/fqs.XXXXXX) # short: agents put unix sockets below it
chmod 0755 "$T"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The stack's environment, before tools/lib is sourced.
export FRESCO_STATE="$T/state" FRESCO_PROFILE=debug
FRESCO_API_PORT=$(free_port)
FRESCO_SCHEDULER_PORT=$(free_port)
FRESCO_AGENT_PORT=$(free_port)
export FRESCO_API_PORT FRESCO_SCHEDULER_PORT FRESCO_AGENT_PORT
bin_dir=${FRESCO_BIN_DIR:-$ROOT/target/debug}
export CARGO_TARGET_DIR=${bin_dir%/debug}
# shellcheck source=../lib/common.sh
source "$ROOT/tools/lib/common.sh"
# shellcheck source=../lib/stack.sh
source "$ROOT/tools/lib/stack.sh"
FRESCO_SHIM=${FRESCO_SHIM_PATH:-$FRESCO_SHIM}
# `openstack` goes on a PATH of the test's own, not into /usr/local/bin.
export FRESCO_CLI_LINK_DIR="$T/bin"

database="fresco_qs_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
export FRESCO_DB_URL="${FRESCO_TEST_DATABASE_URL%/*}/$database"

PASSED=0
FAILED=0
# check DESCRIPTION COMMAND...: runs it (output to its own log), counts and prints the outcome;
# a failure prints the tail of that log.
check() {
    local desc=$1 log
    shift
    log="$T/check-$((PASSED + FAILED + 1)).log"
    if "$@" >"$log" 2>&1; then
        PASSED=$((PASSED + 1))
        printf 'PASS  %s\n' "$desc"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL  %s   (log: %s)\n' "$desc" "$log"
        tail -n 30 "$log" | sed 's/^/      | /'
    fi
}

finish() {
    stack_stop >/dev/null 2>&1
    psql "$FRESCO_TEST_DATABASE_URL" -qAtc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1
    if [[ $FAILED -eq 0 ]]; then
        rm -rf "$T"
    else
        echo "kept $T; the services' logs:"
        local log
        for log in "$FRESCO_STATE"/logs/fresco-*.log; do
            [[ -f "$log" ]] || continue
            echo "--- tail of $log"
            tail -n 20 "$log"
        done
    fi
    echo "quickstart: $PASSED passed, $FAILED failed"
    [[ $FAILED -eq 0 ]]
}
trap finish EXIT

# The user's environment: a HOME of its own, a PATH with `openstack` only from the link, and
# a working directory that has nothing to do with the repository.
user_env=(env -i "HOME=$T/home" "PATH=$T/bin:/usr/bin:/bin" "LANG=C.UTF-8")
mkdir -p "$T/home" "$T/bin" "$T/elsewhere"
as_user() { (cd "$T/elsewhere" && "${user_env[@]}" bash -c "$1"); }

start_stack() {
    psql "$FRESCO_TEST_DATABASE_URL" -qAtc "CREATE DATABASE $database" &&
        stack_config noauth && stack_start 1 && stack_register_runtimes
}

# An existing clouds.yaml with a cloud of the user's: it must survive.
seed_clouds_yaml() {
    mkdir -p "$T/home/.config/openstack"
    printf 'clouds:\n  mine:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n    region_name: Mine\n' \
        >"$T/home/.config/openstack/clouds.yaml"
}

# As the user's shell would: the same HOME and PATH as the commands run below.
cli_setup() {
    HOME="$T/home" PATH="$T/bin:/usr/bin:/bin" stack_cli_setup >"$T/cli-lines"
}

fresh_venv_has_openstack() {
    [[ -x "$FRESCO_CLI_VENV/bin/openstack" ]] &&
        "$FRESCO_CLI_VENV/bin/pip" show python-frescoclient python-openstackclient >/dev/null &&
        # the plugin's commands are there
        "$FRESCO_CLI_VENV/bin/openstack" function list --help | grep -q -- '--sort-dir'
}

line() { sed -n "${1}p" "$T/cli-lines"; }

# `openstack` itself, unless the system has another openstack command of its own (then the
# venv's full path, which works as printed too).
printed_lines_are_short() {
    local os=openstack
    cat "$T/cli-lines"
    if PATH=/usr/bin:/bin command -v openstack >/dev/null; then
        os="$FRESCO_CLI_VENV/bin/openstack"
    fi
    [[ "$(wc -l <"$T/cli-lines")" -eq 3 ]] &&
        [[ "$(line 1)" == "$os --os-cloud fresco-dev function list" ]]
}

clouds_yaml_merged() {
    local f="$T/home/.config/openstack/clouds.yaml"
    cat "$f"
    "$FRESCO_CLI_VENV/bin/python" - "$f" "$FRESCO_API_PORT" <<'PY'
import sys, yaml
clouds = yaml.safe_load(open(sys.argv[1]))["clouds"]
assert clouds["mine"]["region_name"] == "Mine", clouds
dev = clouds["fresco-dev"]
assert dev["auth_type"] == "admin_token", dev
assert dev["auth"] == {"endpoint": "http://127.0.0.1:%s" % sys.argv[2], "token": "demo:demo:member"}, dev
PY
}

setup_is_idempotent() {
    local before after
    before=$(sha256sum "$T/home/.config/openstack/clouds.yaml")
    cli_setup && after=$(sha256sum "$T/home/.config/openstack/clouds.yaml") && [[ "$before" == "$after" ]]
}

# `function list` as printed, before anything exists: it succeeds (and cliff prints nothing
# for an empty list).
list_as_printed() {
    local out
    out=$(as_user "$(line 1)") || { echo "$out"; return 1; }
    echo "output: [$out]"
    [[ -z "$out" ]]
}

# Then, with a function created by the CLI, the same printed line shows it in a table.
create_hello() {
    local out
    as_user "openstack --os-cloud fresco-dev function create hello --runtime python3 \
        --handler main.handler --code-dir '$ROOT/tests/functions/python-hello' -f value -c name" | grep -qx hello &&
        out=$(as_user "$(line 1)") || return 1
    echo "$out"
    [[ "$out" == *"| ID "*"| Name "* && "$out" == *"| hello "* ]]
}

invoke_as_printed() {
    local out
    out=$(as_user "$(line 2) -f json") || { echo "$out"; return 1; }
    echo "$out"
    [[ "$out" == *'"status": "succeeded"'* && "$out" == *'hello you'* ]]
}

# Three more invocations, one after the other: `execution list` shows the newest first, and
# --sort-dir asc the oldest first.
executions_newest_first() {
    local ids=() i id listed asc expected
    for i in 1 2 3; do
        id=$(as_user "openstack --os-cloud fresco-dev function invoke hello --data '{\"name\": \"n$i\"}' -f value -c execution_id") || return 1
        ids+=("$id")
    done
    # sync records are written in batches off the invocation path: wait until all are listed
    for i in $(seq 1 100); do
        listed=$(as_user "openstack --os-cloud fresco-dev function execution list -f value -c ID") || return 1
        [[ "$(grep -c . <<<"$listed")" -ge 4 ]] && break
        sleep 0.3
    done
    expected=$(printf '%s\n' "${ids[2]}" "${ids[1]}" "${ids[0]}")
    echo "listed:"; echo "$listed"; echo "expected first:"; echo "$expected"
    [[ "$(head -n 3 <<<"$listed")" == "$expected" ]] || return 1
    asc=$(as_user "openstack --os-cloud fresco-dev function execution list --sort-dir asc -f value -c ID") || return 1
    echo "with --sort-dir asc:"; echo "$asc"
    [[ "$(tail -n 3 <<<"$asc")" == "$(printf '%s\n' "${ids[@]}")" ]] || return 1
    listed=$(as_user "$(line 3) -f value -c ID") || return 1
    echo "as printed ($(line 3)):"; echo "$listed"
    [[ "$(head -n 1 <<<"$listed")" == "${ids[2]}" ]]
}

# The local emulator through the CLI: `openstack function run-local` (no cloud, no token)
# runs the same code with the real fresco-agent and shim and prints what the platform's
# invoke answered as its result.
run_local_as_invoked() {
    local platform here
    platform=$(as_user "openstack --os-cloud fresco-dev function invoke hello --data '{\"name\": \"local\"}' -f json -c result") ||
        { echo "$platform"; return 1; }
    here=$(as_user "openstack function run-local --runtime-image fresco/python3:dev --handler main.handler \
        --code-dir '$ROOT/tests/functions/python-hello' --data '{\"name\": \"local\"}' \
        --agent-binary '$bin_dir/fresco-agent' --shim-path '$FRESCO_SHIM'") || { echo "$here"; return 1; }
    echo "platform: $platform"
    echo "local: $here"
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])["result"] != json.loads(sys.argv[2]))' \
        "$platform" "$here"
}

say "quick start test in $T (api :$FRESCO_API_PORT, scheduler :$FRESCO_SCHEDULER_PORT, agent :$FRESCO_AGENT_PORT)"
check "a noauth stack of its own (tools/lib/stack.sh, debug binaries, fresh database)" start_stack
seed_clouds_yaml
check "stack_cli_setup: venv (python3 -m venv + pip install ./client), link, cloud fresco-dev" cli_setup
check "the venv has openstack, python-openstackclient and the fresco plugin" fresh_venv_has_openstack
check "the first printed line is 'openstack --os-cloud fresco-dev function list'" printed_lines_are_short
check "clouds.yaml: fresco-dev added (admin_token, endpoint, noauth token), the user's cloud kept" clouds_yaml_merged
check "a second setup leaves clouds.yaml as it is" setup_is_idempotent
check "the printed 'function list' works as printed, from another directory" list_as_printed
check "openstack function create hello (code dir); the printed 'function list' shows it" create_hello
check "the printed 'function invoke hello' works as printed" invoke_as_printed
check "openstack function execution list: newest first; --sort-dir asc: oldest first" executions_newest_first
check "openstack function run-local (the real fresco-agent, no cloud) prints what function invoke answered" run_local_as_invoked
