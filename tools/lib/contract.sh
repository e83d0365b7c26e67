#!/usr/bin/env bash
# The API contract, checked by schemathesis (PyPI) against a running stack: thousands of
# generated requests to every operation of docs/openapi.yaml; the run fails on any 5xx and on
# any response whose status, content type, headers or body the document does not allow.
#
#   tools/lib/contract.sh            # from tools/test, or by hand (as root, like tools/test)
#
# It starts a noauth stack of its own (api, scheduler, one agent on Docker) on free loopback
# ports, with a database of its own on the shared PostgreSQL server, seeds one runtime and one
# function with code (so invocations really run), runs schemathesis, prints the totals, and
# stops and drops everything it started. Needs the debug binaries (`FRESCO_PROFILE=debug
# stack_build`) and the runtime images (runtimes/build.sh), as tools/test provides.
#
# Knobs: CONTRACT_SEED (default random, printed: rerun with it to reproduce a failure),
# CONTRACT_MAX_EXAMPLES (per operation and phase, default 140), CONTRACT_MIN_REQUESTS (the
# run fails below it, default 5000), CONTRACT_TIME_LIMIT (seconds, default 240),
# CONTRACT_DOCUMENT (default docs/openapi.yaml),
# SCHEMATHESIS_VENV (default /opt/fresco-dev/schemathesis-venv).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
# shellcheck source=postgres.sh
source "$HERE/postgres.sh"
FRESCO_PROFILE="${FRESCO_PROFILE:-debug}"
# shellcheck source=stack.sh
source "$HERE/stack.sh"

SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_VENV="${SCHEMATHESIS_VENV:-/opt/fresco-dev/schemathesis-venv}"
CONTRACT_MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-140}"
CONTRACT_MIN_REQUESTS="${CONTRACT_MIN_REQUESTS:-5000}"
CONTRACT_TIME_LIMIT="${CONTRACT_TIME_LIMIT:-240}"
CONTRACT_DOCUMENT="${CONTRACT_DOCUMENT:-$FRESCO_ROOT/docs/openapi.yaml}"
CONTRACT_SEED="${CONTRACT_SEED:-$(( RANDOM << 15 | RANDOM ))}"
# The cloud admin of noauth: the admin role on the project named admin (docs/security.md).
TOKEN="contract:admin:admin,member"

# contract_venv: schemathesis in its own venv, installed once (a no-op when present).
contract_venv() {
    if [ -x "$SCHEMATHESIS_VENV/bin/schemathesis" ] \
        && [ "$("$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
        return 0
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION in $SCHEMATHESIS_VENV"
    ensure_packages python3-venv
    mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
    [ -x "$SCHEMATHESIS_VENV/bin/python" ] || python3 -m venv "$SCHEMATHESIS_VENV" \
        || die "cannot create the venv $SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/python" -m pip install --disable-pip-version-check -q \
        "schemathesis==$SCHEMATHESIS_VERSION" >"$FRESCO_STATE/logs/schemathesis-pip.log" 2>&1 \
        || die "pip install schemathesis failed (see $FRESCO_STATE/logs/schemathesis-pip.log)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

RUN_DIR=""
DB_NAME=""
cleanup() {
    local pidfile
    if [ -n "$RUN_DIR" ]; then
        for pidfile in "$RUN_DIR"/*.pid; do
            [ -e "$pidfile" ] || continue
            stop_pidfile "$pidfile" "contract $(basename "$pidfile" .pid)"
        done
    fi
    if [ -n "$DB_NAME" ]; then
        psql -q "$FRESCO_DB_URL" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 \
            || warn "cannot drop the contract database $DB_NAME"
    fi
}
trap cleanup EXIT

# start NAME CMD...: a process of this run, its pid in RUN_DIR, its output in RUN_DIR/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

api() {
    local method=$1 path=$2
    shift 2
    curl -fsS -X "$method" -H "X-Auth-Token: $TOKEN" "$@" "http://127.0.0.1:$API_PORT$path"
}

main() {
    contract_venv
    pg_start
    local bin_dir="${FRESCO_BIN_DIR:-$FRESCO_TARGET/$FRESCO_PROFILE}"
    local shim="${FRESCO_SHIM_PATH:-$FRESCO_SHIM}"
    for binary in fresco-api fresco-scheduler fresco-agent; do
        [ -x "$bin_dir/$binary" ] || die "$bin_dir/$binary is missing: build it first (FRESCO_PROFILE=debug stack_build)"
    done
    [ -x "$shim" ] || die "the runtime shim $shim is missing: build it first (stack_build)"
    docker image inspect fresco/python3:dev >/dev/null 2>&1 || die "image fresco/python3:dev is missing: run runtimes/build.sh"

    mkdir -p "$FRESCO_STATE/contract"
    RUN_DIR="$(mktemp -d "$FRESCO_STATE/contract/run.XXXXXX")"
    DB_NAME="fresco_contract_$(date +%s)_$$"
    API_PORT=$(free_port)
    local scheduler_port agent_port db_url
    scheduler_port=$(free_port)
    agent_port=$(free_port)
    psql -q "$FRESCO_DB_URL" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null || die "cannot create database $DB_NAME"
    db_url="${FRESCO_DB_URL%/*}/$DB_NAME"

    # The keys a deployment makes (docs/security.md): the scheduler's ticket key, the API's
    # control-plane key, the agent's own key, enrolled with its URL.
    local name
    for name in ticket-signing control-plane agent; do
        (umask 077 && openssl genpkey -algorithm ed25519 -out "$RUN_DIR/$name.pem" 2>/dev/null)
        openssl pkey -in "$RUN_DIR/$name.pem" -pubout -out "$RUN_DIR/$name.pub.pem"
    done
    mkdir -p "$RUN_DIR/state" "$RUN_DIR/agent" "$RUN_DIR/agents"
    { echo "url = http://127.0.0.1:$agent_port"; cat "$RUN_DIR/agent.pub.pem"; } \
        >"$RUN_DIR/agents/contract-$agent_port.pem"
    cat >"$RUN_DIR/fresco.conf" <<CONF
# Written by tools/lib/contract.sh for one schemathesis run.
[DEFAULT]
auth_strategy = noauth
state_path = $RUN_DIR/state

[api]
bind_host = 127.0.0.1
bind_port = $API_PORT
public_url = http://127.0.0.1:$API_PORT

[database]
connection = $db_url
max_pool_size = 16

[oslo_policy]
policy_file = $RUN_DIR/policy.yaml

[internal_auth]
ticket_signing_key_file = $RUN_DIR/ticket-signing.pem
ticket_verify_key_file = $RUN_DIR/ticket-signing.pub.pem
control_plane_key_file = $RUN_DIR/control-plane.pem
control_plane_verify_key_file = $RUN_DIR/control-plane.pub.pem
agent_keys_dir = $RUN_DIR/agents

[scheduler]
bind_host = 127.0.0.1
bind_port = $scheduler_port
urls = http://127.0.0.1:$scheduler_port
CONF
    cat >"$RUN_DIR/agent.conf" <<CONF
# Written by tools/lib/contract.sh: the agent of one schemathesis run.
[DEFAULT]
state_path = $RUN_DIR/agent

[internal_auth]
ticket_verify_key_file = $RUN_DIR/ticket-signing.pub.pem
agent_key_file = $RUN_DIR/agent.pem

[scheduler]
urls = http://127.0.0.1:$scheduler_port

[agent]
agent_id = contract-$agent_port
bind_host = 127.0.0.1
bind_port = $agent_port
api_url = http://127.0.0.1:$API_PORT
shim_path = $shim
docker_host = unix:///var/run/docker.sock
CONF

    say "contract stack: api :$API_PORT, scheduler :$scheduler_port, agent :$agent_port, database $DB_NAME"
    "$bin_dir/fresco-api" --config-file "$RUN_DIR/fresco.conf" --db-sync >"$RUN_DIR/db-sync.log" 2>&1 \
        || die "database migration failed (see $RUN_DIR/db-sync.log)"
    start api "$bin_dir/fresco-api" --config-file "$RUN_DIR/fresco.conf"
    start scheduler "$bin_dir/fresco-scheduler" --config-file "$RUN_DIR/fresco.conf"
    start agent "$bin_dir/fresco-agent" --config-file "$RUN_DIR/agent.conf"
    wait_for 60 "the contract api" curl -fsS "http://127.0.0.1:$API_PORT/healthcheck"
    FRESCO_SCHEDULER_PORT=$scheduler_port wait_for 60 "an active contract scheduler with its agent" stack_scheduler_ready 1

    # Seed objects the document's examples name, so generated requests reach real ones too.
    (cd "$FRESCO_ROOT/tests/functions/python-hello" && zip -q -r "$RUN_DIR/hello.zip" .)
    api POST /v1/runtimes -H 'content-type: application/json' \
        -d '{"name": "python3", "image": "fresco/python3:dev", "kind": "python"}' >/dev/null
    api POST /v1/functions -F 'metadata={"name": "hello", "runtime": "python3"};type=application/json' \
        -F "package=@$RUN_DIR/hello.zip;type=application/zip" >/dev/null
    api POST /v1/functions/hello/versions -H 'content-type: application/json' -d '{}' >/dev/null
    api POST /v1/functions/hello/aliases -H 'content-type: application/json' \
        -d '{"name": "live", "version": 1}' >/dev/null
    api POST /v1/functions/hello/invoke -d '{"name": "contract"}' >/dev/null \
        || die "the seeded function does not run: see $RUN_DIR/*.log"

    # Two schemathesis processes at once, one worker each, on disjoint halves of the document
    # (the function tree, everything else): processes use both cores where threads share one
    # interpreter lock, and concurrent workers in one process crash CPython 3.11's ast.parse
    # inside hypothesis ("AST constructor recursion depth mismatch").
    say "schemathesis: seed $CONTRACT_SEED, at most $CONTRACT_MAX_EXAMPLES examples per operation and phase, ${CONTRACT_TIME_LIMIT}s at most"
    local started=$SECONDS rc=0 other_rc=0 functions_pid others_pid
    contract_pass functions --include-path-regex '^/v1/functions' &
    functions_pid=$!
    contract_pass others --exclude-path-regex '^/v1/functions' &
    others_pid=$!
    wait "$functions_pid" || rc=$?
    wait "$others_pid" || other_rc=$?
    [ "$rc" -ne 0 ] || rc=$other_rc
    cat "$RUN_DIR/schemathesis-functions.log" "$RUN_DIR/schemathesis-others.log"
    local elapsed=$((SECONDS - started)) totals requests failures
    totals=$(contract_totals "$RUN_DIR"/events-*.ndjson)
    read -r requests failures <<<"$totals"
    say "contract: $requests requests in ${elapsed}s, $failures failures, seed $CONTRACT_SEED (logs: $RUN_DIR)"
    if grep -q 'answering 5[0-9][0-9]' "$RUN_DIR/api.log"; then
        warn "the api answered 5xx $(grep -c 'answering 5[0-9][0-9]' "$RUN_DIR/api.log") times: see $RUN_DIR/api.log"
    fi
    [ "$rc" -ne 124 ] || die "schemathesis did not finish within ${CONTRACT_TIME_LIMIT}s"
    [ "$rc" -eq 0 ] || die "the API breaks its contract (docs/openapi.yaml): see the failures above; reproduce with CONTRACT_SEED=$CONTRACT_SEED"
    [ "$requests" -ge "$CONTRACT_MIN_REQUESTS" ] \
        || die "only $requests requests were sent, fewer than $CONTRACT_MIN_REQUESTS"
    trap - EXIT
    cleanup
    rm -rf "$RUN_DIR"
    echo "contract: $requests passed, 0 failed"
}

# contract_pass NAME FILTER...: one schemathesis run over the operations FILTER selects, every
# phase, its output in RUN_DIR/schemathesis-NAME.log and its events in RUN_DIR/events-NAME.ndjson;
# exits with schemathesis's status (124 past CONTRACT_TIME_LIMIT).
# filter_too_much is a generation heuristic, not a check: binary bodies (PUT .../code) trip it.
contract_pass() {
    local name=$1
    shift
    # From the run's directory: schemathesis keeps a cache (.schemathesis/) in its working directory.
    cd "$RUN_DIR" && timeout --kill-after=10 "$CONTRACT_TIME_LIMIT" "$SCHEMATHESIS_VENV/bin/schemathesis" run \
        "$CONTRACT_DOCUMENT" "$@" \
        --url "http://127.0.0.1:$API_PORT" \
        --header "X-Auth-Token: $TOKEN" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
        --max-examples "$CONTRACT_MAX_EXAMPLES" \
        --seed "$CONTRACT_SEED" \
        --workers 1 \
        --request-timeout 30 \
        --no-color \
        --report ndjson --report-ndjson-path "$RUN_DIR/events-$name.ndjson" \
        --generation-database none \
        --suppress-health-check filter_too_much \
        >"$RUN_DIR/schemathesis-$name.log" 2>&1
}

# contract_totals NDJSON...: "<requests> <failed checks>" over schemathesis's event files.
contract_totals() {
    python3 - "$@" <<'PY'
import json, sys
requests = failures = 0
for path in sys.argv[1:]:
    try:
        events = open(path)
    except FileNotFoundError:
        continue
    with events:
        for line in events:
            for name, body in json.loads(line).items():
                if name != "ScenarioFinished":
                    continue
                # Every request sent is one interaction of a finished scenario.
                recorder = body.get("recorder", {})
                requests += len(recorder.get("interactions", {}))
                for checks in recorder.get("checks", {}).values():
                    failures += sum(1 for check in checks if check.get("status") == "failure")
print(requests, failures)
PY
}

main "$@"
