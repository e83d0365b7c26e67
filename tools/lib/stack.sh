# shellcheck shell=bash
# Building, configuring, starting and stopping a local Fresco stack (api, scheduler, agents)
# on 127.0.0.1. Source common.sh and postgres.sh first. Used by tools/up and the tests.

FRESCO_PROFILE="${FRESCO_PROFILE:-release}"
FRESCO_API_PORT="${FRESCO_API_PORT:-8900}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-8901}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-8902}"
FRESCO_ETC="$FRESCO_STATE/etc"
FRESCO_TARGET="${CARGO_TARGET_DIR:-$FRESCO_ROOT/target}"
FRESCO_SHIM="$FRESCO_TARGET/shim/x86_64-unknown-linux-gnu/release/fresco-shim"
# The openstack CLI with this repository's plugin, installed as the README says, and where a
# link to it goes so that `openstack` is on PATH.
FRESCO_CLI_VENV="${FRESCO_CLI_VENV:-/opt/fresco-dev/cli-venv}"
FRESCO_CLI_LINK_DIR="${FRESCO_CLI_LINK_DIR:-/usr/local/bin}"
export FRESCO_PROFILE FRESCO_API_PORT FRESCO_SCHEDULER_PORT FRESCO_AGENT_PORT FRESCO_ETC

# ensure_toolchain: the system packages a build needs; cargo itself comes with the machine.
ensure_toolchain() {
    ensure_packages build-essential pkg-config libpq-dev openssl curl zip unzip
    command -v cargo >/dev/null || die "cargo is missing: install a Rust toolchain (rustup) first"
}

# stack_build: the three services and the static in-container shim.
stack_build() {
    ensure_toolchain
    local profile_flag=()
    [ "$FRESCO_PROFILE" = release ] && profile_flag=(--release)
    say "building fresco-api, fresco-scheduler, fresco-agent ($FRESCO_PROFILE)"
    (cd "$FRESCO_ROOT" && cargo build -q "${profile_flag[@]}" -p fresco-api -p fresco-scheduler -p fresco-agent) \
        || die "cargo build failed"
    say "building the static runtime shim"
    # The static flag must not reach proc-macros: hence the explicit --target (ENVIRONMENT.md).
    (cd "$FRESCO_ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release -p fresco-shim \
        --target x86_64-unknown-linux-gnu --target-dir "$FRESCO_TARGET/shim") || die "shim build failed"
}

stack_bin() {
    echo "$FRESCO_TARGET/$FRESCO_PROFILE/$1"
}

# stack_key_pair PRIVATE PUBLIC: an Ed25519 key pair (private half 0600), made once.
stack_key_pair() {
    if [ ! -s "$1" ]; then
        (umask 077 && openssl genpkey -algorithm ed25519 -out "$1" 2>/dev/null) || die "cannot generate $1"
    fi
    openssl pkey -in "$1" -pubout -out "$2" || die "cannot derive $2"
}

# stack_keys: the scheduler's ticket key pair, the API's control-plane key pair and the
# directory of enrolled agents (see docs/security.md). No secret is shared with agents.
stack_keys() {
    mkdir -p "$FRESCO_ETC/agents"
    stack_key_pair "$FRESCO_ETC/ticket-signing.pem" "$FRESCO_ETC/ticket-verify.pem"
    stack_key_pair "$FRESCO_ETC/control-plane.pem" "$FRESCO_ETC/control-plane-verify.pem"
    rm -f "$FRESCO_ETC/agent-secret"
}

# stack_enrol_agent ID URL KEY: agent ID gets its own key pair (private half KEY, 0600, for its
# node only) and is enrolled at URL: its public key and URL in $FRESCO_ETC/agents/ID.pem.
stack_enrol_agent() {
    local id=$1 url=$2 key=$3 enrolment
    stack_key_pair "$key" "$key.pub"
    enrolment=$(mktemp "$FRESCO_ETC/agents/.enrol.XXXXXX")
    { echo "# fresco agent enrolment, written by tools/lib/stack.sh"; echo "url = $url"; cat "$key.pub"; } >"$enrolment"
    chmod 0644 "$enrolment"
    mv "$enrolment" "$FRESCO_ETC/agents/$id.pem"
    rm -f "$key.pub"
}

# stack_config [AUTH_STRATEGY]: writes fresco.conf for the control plane (noauth by default).
stack_config() {
    local strategy=${1:-noauth}
    stack_keys
    cat >"$FRESCO_ETC/fresco.conf" <<CONF
# Written by tools/lib/stack.sh for a local development stack. Not for production.
[DEFAULT]
auth_strategy = $strategy
state_path = $FRESCO_STATE

[api]
bind_port = $FRESCO_API_PORT

[database]
connection = $FRESCO_DB_URL
max_pool_size = 32

[oslo_policy]
policy_file = $FRESCO_ETC/policy.yaml

[internal_auth]
# fresco-scheduler reads ticket_signing_key_file and control_plane_verify_key_file;
# fresco-api reads control_plane_key_file and ticket_verify_key_file; both read agent_keys_dir.
ticket_signing_key_file = $FRESCO_ETC/ticket-signing.pem
ticket_verify_key_file = $FRESCO_ETC/ticket-verify.pem
control_plane_key_file = $FRESCO_ETC/control-plane.pem
control_plane_verify_key_file = $FRESCO_ETC/control-plane-verify.pem
agent_keys_dir = $FRESCO_ETC/agents

[scheduler]
bind_port = $FRESCO_SCHEDULER_PORT
urls = http://127.0.0.1:$FRESCO_SCHEDULER_PORT
CONF
    if [ -n "${FRESCO_KEYSTONE_CONF:-}" ]; then
        cat "$FRESCO_KEYSTONE_CONF" >>"$FRESCO_ETC/fresco.conf"
    fi
}

# stack_agent_config N [ID]: config of agent N (port FRESCO_AGENT_PORT + N - 1, own state dir,
# own key, enrolled as ID at its URL; ID defaults to <short hostname>-<port>).
stack_agent_config() {
    local n=$1 port=$((FRESCO_AGENT_PORT + $1 - 1)) id
    id=${2:-"$(hostname -s)-$port"}
    mkdir -p "$FRESCO_STATE/agent-$n"
    stack_keys
    stack_enrol_agent "$id" "http://127.0.0.1:$port" "$FRESCO_ETC/agent-$n.key"
    cat >"$FRESCO_ETC/agent-$n.conf" <<CONF
# Written by tools/lib/stack.sh: agent $n of the local development stack.
[DEFAULT]
state_path = $FRESCO_STATE/agent-$n

[internal_auth]
ticket_verify_key_file = $FRESCO_ETC/ticket-verify.pem
agent_key_file = $FRESCO_ETC/agent-$n.key

[scheduler]
urls = http://127.0.0.1:$FRESCO_SCHEDULER_PORT

[agent]
agent_id = $id
bind_port = $port
api_url = http://127.0.0.1:$FRESCO_API_PORT
shim_path = $FRESCO_SHIM
docker_host = unix:///var/run/docker.sock
# Pre-warmed sandboxes per runtime (128 MB each): first invocations skip the container start.
prewarm_runtimes = python=fresco/python3:dev, provided=fresco/provided:dev
prewarm_size = ${FRESCO_PREWARM_SIZE:-2}
CONF
}

# stack_run NAME CMD...: starts a service in the background unless its pid file says it runs.
stack_run() {
    local name=$1
    shift
    local pidfile="$FRESCO_STATE/run/$name.pid"
    if pid_alive "$pidfile"; then
        return 0
    fi
    say "starting $name"
    "$@" >>"$FRESCO_STATE/logs/$name.log" 2>&1 &
    echo $! >"$pidfile"
}

# stack_start [AGENTS]: migrations, then api, scheduler and AGENTS agents (default 1).
stack_start() {
    local agents=${1:-1} n
    "$(stack_bin fresco-api)" --config-file "$FRESCO_ETC/fresco.conf" --db-sync >/dev/null \
        || die "database migration failed"
    stack_run fresco-api "$(stack_bin fresco-api)" --config-file "$FRESCO_ETC/fresco.conf"
    stack_run fresco-scheduler "$(stack_bin fresco-scheduler)" --config-file "$FRESCO_ETC/fresco.conf"
    for n in $(seq 1 "$agents"); do
        stack_agent_config "$n"
        stack_run "fresco-agent-$n" "$(stack_bin fresco-agent)" --config-file "$FRESCO_ETC/agent-$n.conf"
    done
    stack_wait fresco-api curl -fsS --max-time 5 "http://127.0.0.1:$FRESCO_API_PORT/healthcheck"
    # a standby scheduler answers 503: any answer means it is up
    stack_wait fresco-scheduler curl -sS --max-time 5 "http://127.0.0.1:$FRESCO_SCHEDULER_PORT/healthcheck"
    for n in $(seq 1 "$agents"); do
        stack_wait "fresco-agent-$n" curl -fsS --max-time 5 "http://127.0.0.1:$((FRESCO_AGENT_PORT + n - 1))/healthcheck"
    done
    # A fresh scheduler starts as a standby until it holds the leader lock, and knows an agent
    # only after its first heartbeat: invocations before that would get 503.
    stack_wait fresco-scheduler stack_scheduler_ready "$agents"
}

# stack_wait NAME COMMAND...: retries COMMAND until it succeeds. A generous deadline
# (FRESCO_START_TIMEOUT, default 180 s: a loaded 2-core machine starts slowly), but a service
# whose process has exited fails at once, with the end of its log.
stack_wait() {
    local name=$1 deadline=$((SECONDS + ${FRESCO_START_TIMEOUT:-180}))
    shift
    until "$@" >/dev/null 2>&1; do
        if ! pid_alive "$FRESCO_STATE/run/$name.pid"; then
            tail -n 20 "$FRESCO_STATE/logs/$name.log" >&2 2>/dev/null
            die "$name exited (see $FRESCO_STATE/logs/$name.log)"
        fi
        [ $SECONDS -ge $deadline ] && die "timed out after ${FRESCO_START_TIMEOUT:-180}s waiting for $name: $*"
        sleep 0.2
    done
}

# stack_scheduler_ready N: the scheduler is active and sees at least N agents up.
stack_scheduler_ready() {
    curl -fsS "http://127.0.0.1:$FRESCO_SCHEDULER_PORT/healthcheck" | python3 -c '
import json, sys
health = json.load(sys.stdin)
sys.exit(0 if health.get("role") == "active" and health.get("agents_up", 0) >= int(sys.argv[1]) else 1)
' "$1"
}

stack_stop() {
    local pidfile
    for pidfile in "$FRESCO_STATE"/run/fresco-*.pid; do
        [ -e "$pidfile" ] || continue
        stop_pidfile "$pidfile" "$(basename "$pidfile" .pid)"
    done
}

# stack_register_runtimes: the default runtimes python3 and provided (an existing name answers
# 409 and is left as it is). Needs a noauth API.
stack_register_runtimes() {
    local api="http://127.0.0.1:$FRESCO_API_PORT" spec name image kind
    for spec in "python3 fresco/python3:dev python" "provided fresco/provided:dev provided"; do
        read -r name image kind <<<"$spec"
        curl -fsS -o /dev/null -H "X-Auth-Token: admin:admin:admin" -H 'Content-Type: application/json' \
            -d "{\"name\": \"$name\", \"image\": \"$image\", \"kind\": \"$kind\"}" "$api/v1/runtimes" 2>/dev/null || true
    done
}

# stack_cli_venv: a virtualenv with the openstack CLI and the fresco plugin, made exactly as
# the README says (`python3 -m venv V`, `V/bin/pip install ./client`), fresh whenever client/
# changes and reused as it is otherwise.
stack_cli_venv() {
    ensure_packages python3-venv
    local key stamp="$FRESCO_CLI_VENV/.fresco-client-stamp"
    key=$(cd "$FRESCO_ROOT" && find client -type f ! -path '*/__pycache__/*' ! -path 'client/build/*' \
        ! -path 'client/dist/*' ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    if [ -x "$FRESCO_CLI_VENV/bin/openstack" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    say "installing the openstack CLI in $FRESCO_CLI_VENV: python3 -m venv, pip install ./client"
    rm -rf "$FRESCO_CLI_VENV"
    mkdir -p "$(dirname "$FRESCO_CLI_VENV")"
    python3 -m venv "$FRESCO_CLI_VENV" || die "python3 -m venv $FRESCO_CLI_VENV failed"
    (cd "$FRESCO_ROOT" && "$FRESCO_CLI_VENV/bin/pip" install --quiet --disable-pip-version-check ./client) \
        >>"$FRESCO_STATE/logs/cli-venv.log" 2>&1 || die "pip install ./client failed (see $FRESCO_STATE/logs/cli-venv.log)"
    [ -x "$FRESCO_CLI_VENV/bin/openstack" ] || die "pip install ./client brought no openstack command"
    echo "$key" >"$stamp"
}

# stack_cli_link: puts `openstack` on PATH (a link in FRESCO_CLI_LINK_DIR to the venv's) when
# no other openstack command is there; another one is left alone.
stack_cli_link() {
    local link="$FRESCO_CLI_LINK_DIR/openstack" ours="$FRESCO_CLI_VENV/bin/openstack"
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$ours" ]; then
        return 0
    fi
    if [ -e "$link" ] || [ -L "$link" ] || command -v openstack >/dev/null; then
        return 0
    fi
    mkdir -p "$FRESCO_CLI_LINK_DIR"
    ln -s "$ours" "$link"
}

# stack_cli_command: how to call the venv's openstack from here: `openstack` when that is the
# one on PATH, else its full path.
stack_cli_command() {
    local found
    found=$(command -v openstack 2>/dev/null || true)
    if [ -n "$found" ] && [ "$(readlink -f "$found")" = "$(readlink -f "$FRESCO_CLI_VENV/bin/openstack")" ]; then
        echo openstack
    else
        echo "$FRESCO_CLI_VENV/bin/openstack"
    fi
}

# stack_clouds_yaml CLOUD TOKEN: the clouds.yaml entry CLOUD for this noauth stack, merged into
# the file openstack reads (see tools/lib/clouds_yaml.py); prints that file's path.
stack_clouds_yaml() {
    (cd / && "$FRESCO_CLI_VENV/bin/python" "$FRESCO_ROOT/tools/lib/clouds_yaml.py" "$1" \
        "http://127.0.0.1:$FRESCO_API_PORT" "$2")
}

# stack_cli_setup: the openstack CLI for this noauth stack: the venv, the link on PATH and the
# clouds.yaml cloud fresco-dev (project demo, as a member). Prints the command lines that use
# it, one per line, exactly as they work from any directory (tools/up shows them; the quick
# start test runs them).
stack_cli_setup() {
    local clouds_file os
    stack_cli_venv
    stack_cli_link
    clouds_file=$(stack_clouds_yaml fresco-dev demo:demo:member) || die "cannot write the cloud fresco-dev"
    say "cloud fresco-dev (the openstack CLI against this stack) is in $clouds_file"
    if [ -e "$PWD/clouds.yaml" ] && [ "$(readlink -f "$PWD/clouds.yaml")" != "$(readlink -f "$clouds_file")" ]; then
        warn "$PWD/clouds.yaml exists: openstack reads it instead of $clouds_file when run in $PWD"
    fi
    os=$(stack_cli_command)
    echo "$os --os-cloud fresco-dev function list"
    echo "$os --os-cloud fresco-dev function invoke hello --data '{\"name\": \"you\"}'"
    echo "$os --os-cloud fresco-dev function execution list --limit 5"
}
