#!/usr/bin/env bash
# Test harness for the Fresco DevStack plugin, outside a DevStack tree.
#
#   devstack/tests/run.sh [keystone|full|selftest]          (default: keystone)
#
# keystone  Starts a real Keystone (from $KEYSTONE_VENV, sqlite, fernet, uwsgi on 127.0.0.1),
#           then runs the plugin's Keystone-only work - configure_fresco and
#           create_fresco_accounts, the Keystone half of `stack post-config` - and checks the
#           catalog entry, the service user and its role (and that it can log in), the config
#           file (every option it writes exists in common/src/conf/sections.rs), the ticket and
#           control-plane keys, the agent's own key and enrolment, idempotency, a compute-only
#           node's config (its own key only), internal TLS certificates, the refusals (mysql,
#           a compute node without the controller's verify key) and `clean` with
#           FRESCO_CLEAN_KEYSTONE.
# full      All of the above, then the real phases through plugin.sh - stack pre-install,
#           install (cargo build --release), post-config (PostgreSQL database + --db-sync),
#           extra (runtime images, run_process, runtime registration), test-config (smoke
#           test) - against a PostgreSQL the harness starts and a Docker engine (the running
#           one, or one started by the plugin with run_process), checks the running services,
#           /healthcheck and an invocation through the endpoint registered in the catalog,
#           then unstack and clean. Needs the whole stack built; takes minutes.
# selftest  The harness's own failure reporting, in seconds and without Keystone: a service
#           started with run_process, a passing check and a check failed on purpose
#           (FRESCO_HARNESS_FAIL_CHECK); devstack/tests/selftest.sh runs it and checks that the
#           directory is kept and the logs are printed.
#
# When a check fails, its log's last lines are printed at once; at the end the harness prints
# the failed checks and the last lines of every service's log (fresco-*, keystone, postgres)
# and keeps its directory. Waits are on readiness (an answer, a pid still alive) with generous
# wall-clock deadlines (HARNESS_START_TIMEOUT, default 300 s: CI's two cores are often loaded
# 10 and more), and a service that dies fails its wait at once.
#
# The DevStack helper functions come from fake-devstack-functions.sh (minimal, real-acting
# re-implementations, marked as such). Everything lands under one prefix directory instead of
# /etc, /usr/local and /opt/stack. Parameters (environment):
#   FRESCO_HARNESS_DIR     prefix directory (default: a new temp dir, removed at the end)
#   FRESCO_HARNESS_KEEP=1  keep the prefix directory (logs, config) after the run (it is
#                          always kept when a check failed)
#   FRESCO_HARNESS_FAIL_CHECK=TEXT  fail every check whose description contains TEXT after
#                          running it (to see the failure reporting work)
#   HARNESS_START_TIMEOUT  seconds a service may take to become ready (default 300)
#   HARNESS_LOG_LINES      lines of each log printed on failure (default 25)
#   KEYSTONE_VENV          venv with keystone, uwsgi, python-openstackclient
#                          (default /opt/fresco-dev/keystone-venv)
#   FRESCO_CLIENT_VENV     venv with the openstack CLI and this repo's client plugin
#                          (default /opt/fresco-dev/client-venv; created by client/tools/venv.sh)
#   HARNESS_KEYSTONE_PORT  (default 5599)   HARNESS_PG_PORT (default 15432)
#   FRESCO_API_PORT, FRESCO_SCHEDULER_PORT, FRESCO_AGENT_PORT (default 18900, 18901, 18902)
#   HARNESS_CARGO_TARGET_DIR  cargo target dir for `full` (default /opt/fresco-dev/devstack-target)
# Only 127.0.0.1 is used. Every process the harness starts is stopped by its PID at the end.
# The last line is "N passed, N failed"; the exit status is non-zero when any check failed.
# shellcheck source-path=SCRIPTDIR
# Subshells that change the environment are deliberate: each phase runs as its own process,
# as stack.sh runs each plugin phase, and a DevStack `die` must end only that phase.
# shellcheck disable=SC2030,SC2031
set -uo pipefail

MODE=${1:-keystone}
case "$MODE" in keystone|full|selftest) ;; *) echo "usage: $0 [keystone|full|selftest]" >&2; exit 2 ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
KEYSTONE_VENV=${KEYSTONE_VENV:-/opt/fresco-dev/keystone-venv}
FRESCO_CLIENT_VENV=${FRESCO_CLIENT_VENV:-/opt/fresco-dev/client-venv}
HARNESS_KEYSTONE_PORT=${HARNESS_KEYSTONE_PORT:-5599}
HARNESS_PG_PORT=${HARNESS_PG_PORT:-15432}
HARNESS_CARGO_TARGET_DIR=${HARNESS_CARGO_TARGET_DIR:-/opt/fresco-dev/devstack-target}
HARNESS_START_TIMEOUT=${HARNESS_START_TIMEOUT:-300}
HARNESS_LOG_LINES=${HARNESS_LOG_LINES:-25}

if [[ -n "${FRESCO_HARNESS_DIR:-}" ]]; then
    H=$FRESCO_HARNESS_DIR
    mkdir -p "$H"
else
    # short: the agent's unix socket paths live under it (108-byte limit)
    H=$(mktemp -d /tmp/fdh.XXXXXX)
fi
chmod 0755 "$H"

PASSED=0
FAILED=0
CHECKS=0
CHECK_LOG=""
FAILED_CHECKS=()
KEYSTONE_PID=""
PG_STARTED=""

say() { printf '\n### %s\n' "$*"; }

# indent: the lines of stdin, set off as quoted output.
indent() { sed 's/^/    | /'; }

# check_log DESCRIPTION: CHECK_LOG names a new log file for the next check (its content is
# also appended to checks.log once the check is done).
check_log() {
    CHECKS=$((CHECKS + 1))
    mkdir -p "$H/checks"
    CHECK_LOG=$(printf '%s/checks/%02d.log' "$H" "$CHECKS")
    printf '### check %d: %s\n' "$CHECKS" "$1" >"$CHECK_LOG"
}

# passed / failed DESCRIPTION LOG [REASON]: count and print the outcome; a failure prints the
# last lines of the check's log right away.
passed() {
    PASSED=$((PASSED + 1))
    printf 'PASS  %s\n' "$1"
    cat "$2" >>"$H/checks.log"
}
failed() {
    FAILED=$((FAILED + 1))
    FAILED_CHECKS+=("$1 (log: $2)")
    printf 'FAIL  %s%s   (log: %s)\n' "$1" "${3:+   ($3)}" "$2"
    tail -n "$HARNESS_LOG_LINES" "$2" | indent
    cat "$2" >>"$H/checks.log"
}

# injected DESCRIPTION LOG: true when FRESCO_HARNESS_FAIL_CHECK asks this check to fail.
injected() {
    [[ -n "${FRESCO_HARNESS_FAIL_CHECK:-}" && "$1" == *"$FRESCO_HARNESS_FAIL_CHECK"* ]] || return 1
    echo "failed on purpose: FRESCO_HARNESS_FAIL_CHECK=$FRESCO_HARNESS_FAIL_CHECK" >>"$2"
}

# check DESCRIPTION COMMAND...: run the command (output to the check's own log), count and
# print the outcome. It runs in this shell, so what it sets stays set.
check() {
    local desc=$1 log
    shift
    check_log "$desc"
    log=$CHECK_LOG
    if "$@" >>"$log" 2>&1 && ! injected "$desc" "$log"; then
        passed "$desc" "$log"
    else
        failed "$desc" "$log"
    fi
}

# check_fails DESCRIPTION PATTERN COMMAND...: the command must fail and print PATTERN.
check_fails() {
    local desc=$1 pattern=$2 log rc=0
    shift 2
    check_log "$desc"
    log=$CHECK_LOG
    "$@" >>"$log" 2>&1 || rc=$?
    if [[ $rc -eq 0 ]]; then
        failed "$desc" "$log" "it succeeded"
    elif ! grep -qF -- "$pattern" "$log"; then
        failed "$desc" "$log" "no '$pattern' in its output"
    elif injected "$desc" "$log"; then
        failed "$desc" "$log"
    else
        passed "$desc" "$log"
    fi
}

# wait_ready WHAT SECONDS PID COMMAND...: retry COMMAND until it succeeds; fail at once when
# process PID is gone, and after SECONDS of wall-clock time.
wait_ready() {
    local what=$1 limit=$2 pid=$3 started=$SECONDS
    shift 3
    until "$@" >/dev/null 2>&1; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            echo "$what: its process ($pid) exited before it was ready"
            return 1
        fi
        if ((SECONDS - started >= limit)); then
            echo "$what: not ready after ${limit}s"
            return 1
        fi
        sleep 0.5
    done
    echo "$what ready after $((SECONDS - started))s"
}

# show_failure_logs: what to read when something failed: the failed checks, and the last lines
# of every service's log.
show_failure_logs() {
    local f
    say "failed checks"
    for f in "${FAILED_CHECKS[@]}"; do
        echo "  $f"
    done
    say "the services' logs (last $HARNESS_LOG_LINES lines each)"
    for f in "$H"/logs/*.log "$H"/keystone/uwsgi.log "$H"/keystone/manage.log \
        "$H"/keystone-venv.log "$H"/pg/postgres.log; do
        [[ -s "$f" ]] || continue
        echo "--- $f"
        tail -n "$HARNESS_LOG_LINES" "$f" | indent
    done
}

finish() {
    local rc=$?
    say "stopping what the harness started"
    if [[ -d "$H/run" ]]; then
        local pidfile
        for pidfile in "$H"/run/*.pid; do
            [[ -f "$pidfile" ]] || continue
            (source_devstack && stop_process "$(basename "$pidfile" .pid)")
        done
    fi
    if [[ -n "$KEYSTONE_PID" ]] && kill -0 "$KEYSTONE_PID" 2>/dev/null; then
        kill "$KEYSTONE_PID"
        wait "$KEYSTONE_PID" 2>/dev/null
        echo "keystone (uwsgi pid $KEYSTONE_PID) stopped"
    fi
    if [[ -n "$PG_STARTED" ]]; then
        local pgpid
        pgpid=$(head -n 1 "$H/pg/data/postmaster.pid" 2>/dev/null)
        if [[ -n "$pgpid" ]] && kill -0 "$pgpid" 2>/dev/null; then
            kill -INT "$pgpid"
            wait "$pgpid" 2>/dev/null
            echo "postgresql (pid $pgpid) stopped"
        fi
    fi
    if [[ $FAILED -ne 0 || $rc -ne 0 ]]; then
        show_failure_logs
    fi
    if [[ $FAILED -eq 0 && $rc -eq 0 && -z "${FRESCO_HARNESS_KEEP:-}" && -z "${FRESCO_HARNESS_DIR:-}" ]]; then
        rm -rf "$H"
    else
        echo "harness files kept in $H"
    fi
    echo
    echo "devstack harness ($MODE): $PASSED passed, $FAILED failed"
    # an EXIT trap keeps the script's status unless it exits itself
    if [[ $FAILED -ne 0 ]]; then
        exit 1
    fi
    exit "$rc"
}
trap finish EXIT

# ---------------------------------------------------------------------------------------------
# The Keystone venv, created when missing (a fresh machine): keystone, uwsgi and the CLI.
ensure_keystone_venv() {
    if [[ -x "$KEYSTONE_VENV/bin/keystone-manage" && -x "$KEYSTONE_VENV/bin/uwsgi" ]]; then
        return 0
    fi
    echo "creating $KEYSTONE_VENV (keystone, uwsgi, python-openstackclient)"
    python3 -m venv "$KEYSTONE_VENV" &&
        "$KEYSTONE_VENV/bin/pip" install --quiet --disable-pip-version-check \
            keystone python-openstackclient uwsgi >>"$H/keystone-venv.log" 2>&1
}

# A real Keystone on 127.0.0.1 (sqlite, fernet), started here and stopped by PID at the end.
start_keystone() {
    local k="$H/keystone" site
    mkdir -p "$k"
    site=$("$KEYSTONE_VENV/bin/python" -c 'import keystone, os; print(os.path.dirname(keystone.__file__))')
    cat >"$k/keystone.conf" <<EOF
[database]
connection = sqlite:///$k/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = $k/fernet-keys
[fernet_receipts]
key_repository = $k/fernet-keys
[credential]
key_repository = $k/credential-keys
[resource]
# As DevStack's lib/keystone: the cloud admin project, so tokens carry is_admin_project.
admin_project_name = admin
admin_project_domain_name = Default
EOF
    local km=("$KEYSTONE_VENV/bin/keystone-manage" --config-file "$k/keystone.conf")
    "${km[@]}" db_sync >>"$k/manage.log" 2>&1 || return 1
    "${km[@]}" fernet_setup --keystone-user root --keystone-group root >>"$k/manage.log" 2>&1 || return 1
    "${km[@]}" credential_setup --keystone-user root --keystone-group root >>"$k/manage.log" 2>&1 || return 1
    "${km[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
        --bootstrap-admin-url "$KEYSTONE_SERVICE_URI/v3" \
        --bootstrap-internal-url "$KEYSTONE_SERVICE_URI/v3" \
        --bootstrap-public-url "$KEYSTONE_SERVICE_URI/v3" \
        --bootstrap-region-id RegionOne >>"$k/manage.log" 2>&1 || return 1
    OS_KEYSTONE_CONFIG_FILES="$k/keystone.conf" "$KEYSTONE_VENV/bin/uwsgi" \
        --http-socket "127.0.0.1:$HARNESS_KEYSTONE_PORT" --wsgi-file "$site/wsgi/api.py" \
        --master --processes 2 --die-on-term --need-app \
        --add-header "Connection: close" >>"$k/uwsgi.log" 2>&1 </dev/null &
    KEYSTONE_PID=$!
    wait_ready keystone "$HARNESS_START_TIMEOUT" "$KEYSTONE_PID" \
        curl -fsS --max-time 5 -o /dev/null "$KEYSTONE_SERVICE_URI/v3"
}

# The clouds DevStack writes to /etc/openstack/clouds.yaml, for the harness's Keystone.
write_clouds_yaml() {
    cat >"$OS_CLIENT_CONFIG_FILE" <<EOF
clouds:
  devstack:
    auth: {auth_url: "$KEYSTONE_SERVICE_URI", username: demo, password: "$ADMIN_PASSWORD", project_name: demo, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
    identity_api_version: 3
  devstack-admin:
    auth: {auth_url: "$KEYSTONE_SERVICE_URI", username: admin, password: "$ADMIN_PASSWORD", project_name: admin, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
    identity_api_version: 3
  devstack-system-admin:
    auth: {auth_url: "$KEYSTONE_SERVICE_URI", username: admin, password: "$ADMIN_PASSWORD", system_scope: all, user_domain_id: default}
    region_name: RegionOne
    identity_api_version: 3
EOF
}

# What DevStack's own keystone setup makes before plugins run: the service and demo projects.
devstack_keystone_accounts() {
    local os=(openstack --os-cloud devstack-system-admin)
    "${os[@]}" project create service --domain default --or-show -f value -c id &&
        "${os[@]}" project create demo --domain default --or-show -f value -c id &&
        "${os[@]}" user create demo --domain default --password "$ADMIN_PASSWORD" --or-show -f value -c id &&
        "${os[@]}" role add member --user demo --user-domain default --project demo --project-domain default
}

# ---------------------------------------------------------------------------------------------
# The DevStack environment: globals stack.sh would set, all under $H.
export ADMIN_PASSWORD=harness-admin-secret
export SERVICE_PASSWORD=harness-service-secret
export KEYSTONE_SERVICE_URI="http://127.0.0.1:$HARNESS_KEYSTONE_PORT"
export OS_CLIENT_CONFIG_FILE="$H/clouds.yaml"
export PATH="$FRESCO_CLIENT_VENV/bin:$PATH"
export PIP="$FRESCO_CLIENT_VENV/bin/pip"
unset OS_CLOUD OS_AUTH_URL OS_FUNCTION_ENDPOINT OS_USERNAME OS_PASSWORD OS_PROJECT_NAME

devstack_env() {
    export DEST="$H/opt/stack" DATA_DIR="$H/opt/stack/data" STACK_USER
    STACK_USER=$(id -un)
    export LOGDIR="$H/logs" SERVICE_DIR="$H/run"
    export SERVICE_HOST=127.0.0.1 HOST_IP=127.0.0.1 SERVICE_PROTOCOL=http SERVICE_LISTEN_ADDRESS=127.0.0.1
    export SERVICE_PROJECT_NAME=service SERVICE_DOMAIN_NAME=Default REGION_NAME=RegionOne
    export SERVICE_TIMEOUT=$HARNESS_START_TIMEOUT ENABLE_DEBUG_LOG_LEVEL=True
    export DATABASE_TYPE=postgresql DATABASE_HOST=127.0.0.1 DATABASE_USER=fresco_harness
    export DATABASE_PASSWORD=harness-db-secret
    export ENABLED_SERVICES=key
    export FRESCO_DIR="$REPO"
    # a name of its own: the agent labels its containers with it (fresco.agent=<host>)
    export FRESCO_HOST="fdh-$$"
    export FRESCO_CONF_DIR="$H/etc/fresco" FRESCO_BIN_DIR="$H/usr/local/bin"
    export FRESCO_LIBEXEC_DIR="$H/usr/local/libexec/fresco" FRESCO_STATE_DIR="$H/var/lib/fresco"
    export FRESCO_API_PORT=${FRESCO_API_PORT:-18900} FRESCO_SCHEDULER_PORT=${FRESCO_SCHEDULER_PORT:-18901}
    export FRESCO_AGENT_PORT=${FRESCO_AGENT_PORT:-18902}
    export FRESCO_DB_PORT=$HARNESS_PG_PORT FRESCO_CARGO_TARGET_DIR=$HARNESS_CARGO_TARGET_DIR
    mkdir -p "$DEST" "$DATA_DIR" "$LOGDIR" "$SERVICE_DIR" "$H/etc"
}

# source_devstack: the fake DevStack helpers, then the plugin's settings and lib, as stack.sh
# would (settings is read for every enabled plugin before any phase).
source_devstack() {
    # shellcheck source=fake-devstack-functions.sh
    source "$HERE/fake-devstack-functions.sh"
    # shellcheck source=../settings
    source "$REPO/devstack/settings"
    # shellcheck source=../lib/fresco
    source "$REPO/devstack/lib/fresco"
}

# in_devstack CODE: run shell code in a subshell with the plugin loaded (a die ends only it).
in_devstack() {
    (source_devstack && eval "$1")
}

# phase ARGS...: source plugin.sh with a phase, as stack.sh/unstack.sh/clean.sh do.
phase() {
    # shellcheck source=../plugin.sh
    (source_devstack && source "$REPO/devstack/plugin.sh" "$@")
}

# shellcheck source=fake-devstack-functions.sh
conf_get() { (source "$HERE/fake-devstack-functions.sh" && iniget "$1" "$2" "$3"); }

ostack() { openstack --os-cloud devstack-system-admin "$@"; }

# ---------------------------------------------------------------------------------------------
# Checks on Keystone and the config file.
endpoint_count() {  # endpoint_count INTERFACE: endpoints of the function service
    ostack endpoint list --service function --interface "$1" --region RegionOne -f value -c ID | wc -l
}

check_catalog() {
    local url="http://127.0.0.1:$FRESCO_API_PORT"
    ostack service show function -f value -c name | grep -qx fresco &&
        [[ "$(endpoint_count public)" == 1 && "$(endpoint_count internal)" == 1 ]] &&
        ostack endpoint list --service function -f value -c URL | sort -u | grep -qx "$url" &&
        # a normal user's token carries it in its catalog
        openstack --os-cloud devstack catalog show function -f value -c endpoints | grep -q "$url"
}

check_service_user() {
    ostack role assignment list --user fresco --user-domain Default --project service \
        --project-domain Default --names -f value -c Role | grep -qx service &&
        openstack --os-auth-url "$KEYSTONE_SERVICE_URI" --os-username fresco \
            --os-password "$SERVICE_PASSWORD" --os-project-name service \
            --os-user-domain-name Default --os-project-domain-name Default \
            --os-identity-api-version 3 token issue -f value -c id | grep -q .
}

check_conf_values() {
    local c="$FRESCO_CONF_DIR/fresco.conf"
    [[ "$(conf_get "$c" database connection)" == "postgresql://fresco_harness:harness-db-secret@127.0.0.1:$HARNESS_PG_PORT/fresco" ]] &&
        [[ "$(conf_get "$c" keystone_authtoken auth_url)" == "$KEYSTONE_SERVICE_URI/v3" ]] &&
        [[ "$(conf_get "$c" keystone_authtoken username)" == fresco ]] &&
        [[ "$(conf_get "$c" keystone_authtoken password)" == "$SERVICE_PASSWORD" ]] &&
        [[ "$(conf_get "$c" keystone_authtoken project_name)" == service ]] &&
        [[ "$(conf_get "$c" DEFAULT auth_strategy)" == keystone ]] &&
        [[ "$(conf_get "$c" api bind_port)" == "$FRESCO_API_PORT" ]] &&
        [[ "$(conf_get "$c" api public_url)" == "http://127.0.0.1:$FRESCO_API_PORT" ]] &&
        [[ "$(conf_get "$c" scheduler urls)" == "http://127.0.0.1:$FRESCO_SCHEDULER_PORT" ]] &&
        [[ "$(conf_get "$c" agent api_url)" == "http://127.0.0.1:$FRESCO_API_PORT" ]] &&
        [[ "$(conf_get "$c" agent shim_path)" == "$FRESCO_LIBEXEC_DIR/fresco-shim" ]] &&
        [[ "$(conf_get "$c" internal_auth agent_key_file)" == "$FRESCO_CONF_DIR/agent-key.pem" ]] &&
        [[ "$(conf_get "$c" internal_auth agent_keys_dir)" == "$FRESCO_CONF_DIR/agents" ]] &&
        [[ "$(conf_get "$c" internal_auth control_plane_key_file)" == "$FRESCO_CONF_DIR/control-plane.pem" ]] &&
        [[ -z "$(conf_get "$c" internal_auth agent_secret)" ]]
}

# Every [section] option the plugin wrote is declared in common/src/conf/sections.rs.
check_conf_options_known() {
    python3 - "$REPO/common/src/conf/sections.rs" "$FRESCO_CONF_DIR/fresco.conf" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
known = {}
for m in re.finditer(r'pub struct \w+\("(\w+)"\)\s*\{(.*?)\n    \}', src, re.S):
    known[m.group(1)] = set(re.findall(r'^\s+(\w+):\s*[^=\n]+=\s*"', m.group(2), re.M))
assert len(known) >= 9, "parsed only %s from sections.rs" % sorted(known)
section, bad, count = None, [], 0
for line in open(sys.argv[2]):
    line = line.strip()
    if not line or line.startswith(("#", ";")):
        continue
    if line.startswith("["):
        section = line.strip("[]")
        continue
    option = line.split("=", 1)[0].strip()
    count += 1
    if option not in known.get(section, ()):
        bad.append("[%s] %s" % (section, option))
print("%d options written, unknown: %s" % (count, bad))
sys.exit(1 if bad or count < 20 else 0)
PY
}

check_ticket_keys() {
    local s="$FRESCO_CONF_DIR/ticket-signing.pem" v="$FRESCO_CONF_DIR/ticket-verify.pem"
    local cp="$FRESCO_CONF_DIR/control-plane.pem" cpv="$FRESCO_CONF_DIR/control-plane-verify.pem"
    openssl pkey -in "$s" -noout -text | grep -q ED25519 &&
        [[ "$(stat -c %a "$s")" == 600 ]] &&
        cmp -s <(openssl pkey -in "$s" -pubout) "$v" &&
        openssl pkey -in "$cp" -noout -text | grep -q ED25519 &&
        [[ "$(stat -c %a "$cp")" == 600 ]] &&
        cmp -s <(openssl pkey -in "$cp" -pubout) "$cpv" &&
        ! cmp -s "$s" "$cp" &&
        [[ "$(conf_get "$FRESCO_CONF_DIR/fresco.conf" internal_auth ticket_signing_key_file)" == "$s" ]] &&
        [[ "$(conf_get "$FRESCO_CONF_DIR/fresco.conf" internal_auth ticket_verify_key_file)" == "$v" ]] &&
        [[ "$(conf_get "$FRESCO_CONF_DIR/fresco.conf" internal_auth control_plane_verify_key_file)" == "$cpv" ]]
}

# This node's agent: its own key (0600) and its enrolment (URL and public half) on the
# controller, under its agent id.
check_agent_enrolment() {
    local k="$FRESCO_CONF_DIR/agent-key.pem" e="$FRESCO_CONF_DIR/agents/$FRESCO_HOST.pem"
    local url="http://127.0.0.1:$FRESCO_AGENT_PORT"
    openssl pkey -in "$k" -noout -text | grep -q ED25519 &&
        [[ "$(stat -c %a "$k")" == 600 ]] &&
        [[ "$(conf_get "$FRESCO_CONF_DIR/fresco.conf" agent advertise_url)" == "$url" ]] &&
        grep -qx "url = $url" "$e" &&
        cmp -s <(openssl pkey -in "$k" -pubout) <(sed -n '/-----BEGIN/,$p' "$e")
}

# A compute-only node: just the agent, pointed at the controller, with the controller's public
# ticket key and a key of its own (no secret of the controller's, nobody else's key).
check_compute_node_config() {
    local d="$H/compute/etc/fresco" verify
    verify=$(cat "$FRESCO_CONF_DIR/ticket-verify.pem")
    (
        export ENABLED_SERVICES=n-cpu FRESCO_CONF_DIR=$d FRESCO_CONF_FILE=$d/fresco.conf
        export FRESCO_TICKET_VERIFY_KEY=$verify FRESCO_HOST=compute-node-1
        export FRESCO_STATE_DIR="$H/compute/state" SERVICE_HOST=127.0.0.9 HOST_IP=127.0.0.10
        # shellcheck source=fake-devstack-functions.sh
        source "$HERE/fake-devstack-functions.sh"
        # a compute node's local.conf disables two services; settings' enable_service
        # must not bring them back
        disable_service fresco-api fresco-scheduler
        # shellcheck source=../settings
        source "$REPO/devstack/settings"
        is_service_enabled fresco-agent && ! is_service_enabled fresco-api fresco-scheduler || exit 1
        # shellcheck source=../lib/fresco
        source "$REPO/devstack/lib/fresco"
        fresco_check_prerequisites && configure_fresco
    ) || return 1
    local c="$d/fresco.conf"
    [[ "$(conf_get "$c" agent api_url)" == "http://127.0.0.9:$FRESCO_API_PORT" ]] &&
        [[ "$(conf_get "$c" scheduler urls)" == "http://127.0.0.9:$FRESCO_SCHEDULER_PORT" ]] &&
        [[ "$(conf_get "$c" agent advertise_url)" == "http://127.0.0.10:$FRESCO_AGENT_PORT" ]] &&
        [[ "$(conf_get "$c" internal_auth agent_key_file)" == "$d/agent-key.pem" ]] &&
        [[ "$(stat -c %a "$d/agent-key.pem")" == 600 ]] &&
        ! cmp -s "$d/agent-key.pem" "$FRESCO_CONF_DIR/agent-key.pem" &&
        grep -qx "url = http://127.0.0.10:$FRESCO_AGENT_PORT" "$d/agent-enrolment.pem" &&
        cmp -s <(openssl pkey -in "$d/agent-key.pem" -pubout) <(sed -n '/-----BEGIN/,$p' "$d/agent-enrolment.pem") &&
        cmp -s "$d/ticket-verify.pem" "$FRESCO_CONF_DIR/ticket-verify.pem" &&
        [[ ! -e "$d/ticket-signing.pem" && ! -e "$d/control-plane.pem" && ! -e "$d/agents" ]] &&
        [[ -z "$(conf_get "$c" internal_auth ticket_signing_key_file)" ]] &&
        [[ -z "$(conf_get "$c" internal_auth control_plane_key_file)" ]] &&
        ! grep -q '^\[database\]' "$c" && ! grep -q '^\[keystone_authtoken\]' "$c"
}

# FRESCO_INTERNAL_TLS=True on a controller: a CA, a certificate for this node signed by it (for
# the names the node is reached at), [internal_tls] set, and https URLs everywhere.
check_internal_tls_config() {
    local d="$H/tls/etc/fresco"
    (
        export FRESCO_CONF_DIR=$d FRESCO_CONF_FILE=$d/fresco.conf FRESCO_INTERNAL_TLS=True
        export FRESCO_STATE_DIR="$H/tls/state" HOST_IP=127.0.0.1
        unset FRESCO_API_URL FRESCO_SCHEDULER_URL FRESCO_SCHEDULER_URLS FRESCO_AGENT_ADVERTISE_URL
        source_devstack && fresco_check_prerequisites && configure_fresco
    ) || return 1
    local c="$d/fresco.conf"
    [[ "$(conf_get "$c" internal_tls ca_file)" == "$d/tls/ca.pem" ]] &&
        [[ "$(conf_get "$c" internal_tls cert_file)" == "$d/tls/cert.pem" ]] &&
        [[ "$(conf_get "$c" internal_tls key_file)" == "$d/tls/cert.key" ]] &&
        [[ "$(stat -c %a "$d/tls/cert.key")" == 600 && "$(stat -c %a "$d/tls/ca.key")" == 600 ]] &&
        openssl verify -CAfile "$d/tls/ca.pem" "$d/tls/cert.pem" &&
        openssl x509 -in "$d/tls/cert.pem" -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1' &&
        [[ "$(conf_get "$c" scheduler urls)" == "https://127.0.0.1:$FRESCO_SCHEDULER_PORT" ]] &&
        [[ "$(conf_get "$c" agent api_url)" == "https://127.0.0.1:$FRESCO_API_PORT" ]] &&
        [[ "$(conf_get "$c" agent advertise_url)" == "https://127.0.0.1:$FRESCO_AGENT_PORT" ]] &&
        [[ "$(conf_get "$c" api public_url)" == "https://127.0.0.1:$FRESCO_API_PORT" ]]
}

compute_node_without_verify_key() {
    (
        export ENABLED_SERVICES=n-cpu FRESCO_CONF_DIR="$H/compute2"
        # shellcheck source=fake-devstack-functions.sh
        source "$HERE/fake-devstack-functions.sh"
        disable_service fresco-api fresco-scheduler
        # shellcheck source=../settings
        source "$REPO/devstack/settings"
        # shellcheck source=../lib/fresco
        source "$REPO/devstack/lib/fresco"
        fresco_check_prerequisites
    )
}

run_keystone_checks() {
    say "keystone: the plugin's Keystone and configuration work (post-config without the database)"
    check "configure_fresco writes $FRESCO_CONF_DIR/fresco.conf" in_devstack configure_fresco
    check "create_fresco_accounts registers the user, service and endpoints" in_devstack create_fresco_accounts
    check "catalog: service type function named fresco, one public and one internal endpoint" check_catalog
    check "service user fresco has the service role on project service and can log in" check_service_user
    check "config: database, keystone_authtoken, api, scheduler, agent, internal_auth values" check_conf_values
    check "config: every option written is declared in common/src/conf/sections.rs" check_conf_options_known
    check "ticket and control-plane keys: ed25519, private keys 0600, verify keys their public halves" check_ticket_keys
    check "this node's agent: its own key (0600), enrolled with its URL and public key" check_agent_enrolment
    local key_before
    key_before=$(cat "$FRESCO_CONF_DIR/agent-key.pem")
    check "second configure + create_fresco_accounts run succeeds" in_devstack "configure_fresco && create_fresco_accounts"
    check "idempotent: still one endpoint per interface after a second run" check_catalog
    check "idempotent: the agent's key is kept across runs" \
        test "$key_before" == "$(cat "$FRESCO_CONF_DIR/agent-key.pem")"
    check "idempotent: the agent is still enrolled with its key" check_agent_enrolment
    check "compute-only node: agent config points at SERVICE_HOST, its own key only, no database, no control-plane key" check_compute_node_config
    check_fails "compute-only node without the controller's ticket verify key is refused" \
        "needs the controller's ticket verify key" compute_node_without_verify_key
    check "FRESCO_INTERNAL_TLS=True: a CA, this node's certificate, [internal_tls], https URLs" check_internal_tls_config
    check_fails "DATABASE_TYPE=mysql is refused" "fresco needs postgresql" \
        in_devstack "DATABASE_TYPE=mysql; fresco_check_prerequisites"
}

run_clean_checks() {
    say "clean: FRESCO_CLEAN_KEYSTONE=True removes the catalog entries, the user and the files"
    check "before clean: the function service, the fresco user and the config exist" \
        fresco_made_things_exist
    check "plugin.sh clean" phase_clean
    check "clean: no function service left in the catalog" bash -c '! openstack --os-cloud devstack-system-admin service show function'
    check "clean: no fresco user left" bash -c '! openstack --os-cloud devstack-system-admin user show --domain Default fresco'
    check "clean: $FRESCO_CONF_DIR removed" test ! -e "$FRESCO_CONF_DIR"
}

fresco_made_things_exist() {
    ostack service show function >/dev/null &&
        ostack user show --domain Default fresco >/dev/null &&
        test -s "$FRESCO_CONF_DIR/fresco.conf"
}

phase_clean() {
    (export FRESCO_CLEAN_KEYSTONE=True ENABLED_SERVICES="$ENABLED_SERVICES,fresco-api,fresco-scheduler,fresco-agent"
     # shellcheck source=../plugin.sh
     source_devstack && source "$REPO/devstack/plugin.sh" clean)
}

# ---------------------------------------------------------------------------------------------
# full: PostgreSQL and Docker, then every phase through plugin.sh.
start_postgres() {
    local pgbin
    pgbin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [[ -x "$pgbin/initdb" ]] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql"; return 1; }
    mkdir -p "$H/pg/sock"
    chown -R postgres:postgres "$H/pg"
    runuser -u postgres -- "$pgbin/initdb" -D "$H/pg/data" -A trust -U postgres >>"$H/pg/initdb.log" 2>&1 || return 1
    runuser -u postgres -- "$pgbin/postgres" -D "$H/pg/data" -k "$H/pg/sock" -p "$HARNESS_PG_PORT" \
        -c listen_addresses=127.0.0.1 >>"$H/pg/postgres.log" 2>&1 </dev/null &
    PG_STARTED=1
    wait_ready postgresql "$HARNESS_START_TIMEOUT" $! \
        psql -h 127.0.0.1 -p "$HARNESS_PG_PORT" -U postgres -c 'select 1' || return 1
    # What DevStack's postgresql setup does: a superuser role for DATABASE_USER.
    psql -h 127.0.0.1 -p "$HARNESS_PG_PORT" -U postgres -c \
        "CREATE ROLE $DATABASE_USER WITH SUPERUSER LOGIN PASSWORD '$DATABASE_PASSWORD'" >/dev/null
}

check_services_running() {
    local svc pid
    for svc in fresco-api fresco-scheduler fresco-agent; do
        pid=$(cat "$SERVICE_DIR/$svc.pid" 2>/dev/null) || { echo "$svc: no pidfile"; return 1; }
        kill -0 "$pid" || { echo "$svc (pid $pid) is not running"; return 1; }
        echo "$svc runs (pid $pid)"
    done
}

check_invoke_through_catalog() {
    local d="$H/fn" out
    mkdir -p "$d"
    printf 'def handler(event, context):\n    return {"sum": event["a"] + event["b"]}\n' >"$d/main.py"
    openstack --os-cloud devstack function create harness-add --runtime python3 --code-dir "$d" -f value -c id &&
        out=$(openstack --os-cloud devstack function invoke harness-add --data '{"a": 2, "b": 40}' -f json) &&
        echo "$out" && [[ "$out" == *'"sum": 42'* && "$out" == *'"status": "succeeded"'* ]] &&
        openstack --os-cloud devstack function delete harness-add
}

# The client's end-to-end scenario, as the DevStack admin, the endpoint from the catalog.
run_client_e2e() {
    (
        unset OS_FUNCTION_ENDPOINT OS_CLOUD
        export OS_AUTH_URL="$KEYSTONE_SERVICE_URI/v3" OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASSWORD"
        export OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
        export OS_REGION_NAME=RegionOne FRESCO_E2E_PYTHON_IMAGE="fresco/python3:${FRESCO_RUNTIME_TAG:-devstack}"
        "$REPO/client/tests/functional/run.sh"
    ) | tee -a "$H/e2e.log"
}

check_services_stopped() {
    local f
    for f in "$SERVICE_DIR"/fresco-*.pid; do
        [[ -e "$f" ]] && { echo "pidfile left: $f ($(cat "$f"))"; return 1; }
    done
    # nothing listens on the API's port any more (a refused connection, not a slow answer)
    if curl -sS --max-time 30 -o /dev/null -w 'HTTP %{http_code}\n' "http://127.0.0.1:$FRESCO_API_PORT/healthcheck"; then
        echo "something still answers on 127.0.0.1:$FRESCO_API_PORT:"
        ss -ltnp "sport = :$FRESCO_API_PORT" 2>/dev/null || true
        return 1
    fi
}

run_full() {
    say "full: PostgreSQL and Docker for the plugin"
    check "postgresql started on 127.0.0.1:$HARNESS_PG_PORT with the DevStack database user" start_postgres
    export PGPASSWORD=$DATABASE_PASSWORD PGPORT=$HARNESS_PG_PORT
    if /usr/bin/docker info >/dev/null 2>&1; then
        export FRESCO_DOCKER_MANAGE=external
        echo "using the docker engine already running"
    else
        export FRESCO_DOCKER_MANAGE=run_process FRESCO_DOCKER_HOST="unix://$H/docker.sock"
        export FRESCO_DOCKER_DATA_ROOT="$H/docker"
        echo "the plugin starts its own dockerd (run_process) on $FRESCO_DOCKER_HOST"
    fi
    export FRESCO_SMOKE_TEST=True
    ENABLED_SERVICES="$ENABLED_SERVICES,fresco-api,fresco-scheduler,fresco-agent"
    say "full: plugin.sh stack phases"
    check "stack pre-install" phase stack pre-install
    check "stack install (toolchain, cargo build --release, binaries, shim, docker, client)" phase stack install
    check "stack post-config (config, keystone accounts, database, --db-sync)" phase stack post-config
    check "fresco database exists with tables after --db-sync" bash -c \
        "psql -h 127.0.0.1 -U $DATABASE_USER -d fresco -tAc \"select count(*) from information_schema.tables where table_schema='public'\" | grep -qv '^0$'"
    check "stack extra (runtime images, services started, runtimes registered)" phase stack extra
    check "fresco-api, fresco-scheduler, fresco-agent running (run_process pids alive)" check_services_running
    check "GET /healthcheck through the registered endpoint" \
        curl -fsS "http://127.0.0.1:$FRESCO_API_PORT/healthcheck"
    check "runtimes python3 and provided registered" bash -c \
        'openstack --os-cloud devstack function runtime list -f value -c Name | sort | tr "\n" " " | grep -q "provided python3"'
    check "stack test-config (smoke test: create, invoke, delete)" phase stack test-config
    check "invocation through the catalog endpoint as a project member" check_invoke_through_catalog
    check "client e2e scenario (client/tests/functional) through the catalog, two projects" run_client_e2e
    say "full: unstack and clean"
    check "unstack" phase unstack
    check "unstack: services stopped, API no longer answers" check_services_stopped
    check "unstack: no container labelled fresco.agent=$FRESCO_HOST left" bash -c \
        "test -z \"\$(DOCKER_HOST=${FRESCO_DOCKER_HOST:-unix:///var/run/docker.sock} /usr/bin/docker ps -aq --filter label=fresco.agent=$FRESCO_HOST)\""
    run_clean_checks
}

# ---------------------------------------------------------------------------------------------
# selftest: the reporting itself. A service started the way the plugin starts one (its log has
# run_process's "starting harness-selftest: ..." line), a passing check, and a check whose
# command passes and prints a marker, failed by FRESCO_HARNESS_FAIL_CHECK when that names it.
selftest_service_runs() {
    local pid
    pid=$(cat "$SERVICE_DIR/harness-selftest.pid") && kill -0 "$pid" && echo "harness-selftest pid $pid"
}

run_selftest() {
    say "selftest: the harness's failure reporting"
    check "selftest: a service started with run_process" in_devstack \
        "ENABLED_SERVICES=harness-selftest; run_process harness-selftest 'sleep 600'"
    check "selftest: the service runs" selftest_service_runs
    check "selftest: a check that may be failed on purpose" \
        bash -c 'echo "selftest-check-output: what the check printed"'
}

devstack_env
mkdir -p "$H/run"
echo "harness directory: $H"
if [[ "$MODE" == selftest ]]; then
    run_selftest
    exit 0
fi
[[ -x "$FRESCO_CLIENT_VENV/bin/openstack" ]] || "$REPO/client/tools/venv.sh" >/dev/null || exit 1
say "keystone on $KEYSTONE_SERVICE_URI (from $KEYSTONE_VENV)"
if ! ensure_keystone_venv || ! start_keystone; then
    # its logs are printed on the way out
    echo "keystone did not start"
    FAILED=$((FAILED + 1))
    FAILED_CHECKS+=("keystone did not start (logs: $H/keystone/)")
    exit 1
fi
echo "keystone uwsgi master pid $KEYSTONE_PID"
write_clouds_yaml
check "keystone answers and DevStack's base accounts (service, demo) exist" devstack_keystone_accounts
ENABLED_SERVICES="$ENABLED_SERVICES,fresco-api,fresco-scheduler,fresco-agent"
run_keystone_checks
if [[ "$MODE" == keystone ]]; then
    run_clean_checks
else
    run_full
fi
