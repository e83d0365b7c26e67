#!/usr/bin/env bash
# shellcheck shell=bash
# A real, project-local Keystone for development and tests (sqlite, fernet tokens), served by
# uwsgi on 127.0.0.1:$KEYSTONE_PORT only, with its state in $FRESCO_STATE/keystone.
#
# As a command:  tools/lib/keystone.sh start|seed|stop|status|env-file|token USER [PROJECT]
# As a library:  source tools/lib/common.sh; source tools/lib/keystone.sh; keystone_start ...
#
#   start   creates the venv if missing, writes the config, bootstraps once, starts uwsgi in
#           the background (pid file per port) and waits until it answers; quick when running
#   seed    the cloud admin project in keystone.conf ([resource] admin_project_name = admin, so
#           tokens carry is_admin_project; a running Keystone is restarted once to read it),
#           service users (fresco, fresco-reauth: role service in project service), two test
#           projects (fresco-test-a, fresco-test-b) with one user per role (reader, member,
#           admin) and a system-scoped reader (fresco-system-reader); writes every name, id and
#           password to the env file (see env-file)
#   stop    ends the uwsgi started for $KEYSTONE_PORT, by the pid in its pid file, nothing else
#   status  says whether it runs (exit 0) or not (exit 3)
#   token   prints a token for a seeded user, scoped to PROJECT (default: none = unscoped)
#
# Several instances may share one state dir (same database and keys, so they accept each
# other's tokens): set KEYSTONE_PORT to start a second one; it has its own pid file.
# Passwords are derived from a random secret kept in the state dir (mode 0600), so seeding is
# idempotent and re-seeding never changes a password (which would revoke tokens).

if ! declare -F say >/dev/null; then
    # shellcheck source=tools/lib/common.sh
    source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

KEYSTONE_PORT="${KEYSTONE_PORT:-5000}"
KEYSTONE_VENV="${KEYSTONE_VENV:-/opt/fresco-dev/keystone-venv}"
KEYSTONE_DIR="$FRESCO_STATE/keystone"
KEYSTONE_CONF="$KEYSTONE_DIR/keystone.conf"
KEYSTONE_ENV_FILE="$KEYSTONE_DIR/credentials.env"
KEYSTONE_URL="http://127.0.0.1:${KEYSTONE_PORT}/v3"
KEYSTONE_SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
export KEYSTONE_PORT KEYSTONE_VENV KEYSTONE_ENV_FILE KEYSTONE_URL

keystone_pidfile() { echo "$KEYSTONE_DIR/uwsgi-${KEYSTONE_PORT}.pid"; }

keystone_answers() { curl -fsS --max-time 2 -o /dev/null "$KEYSTONE_URL" 2>/dev/null; }

# keystone_password NAME: the password of a seeded user (stable for this state dir).
keystone_password() {
    printf '%s:%s' "$(cat "$KEYSTONE_DIR/secret")" "$1" | sha256sum | cut -c1-32
}

# keystone_admin_project_conf: makes keystone.conf name the cloud admin project (admin, in
# Default), as DevStack does, so that Keystone marks tokens scoped to it is_admin_project and
# every other project's admin is just that project's admin. Returns 0 when it changed the file.
keystone_admin_project_conf() {
    [ -f "$KEYSTONE_CONF" ] || return 1
    grep -q '^admin_project_name = admin$' "$KEYSTONE_CONF" && return 1
    printf '[resource]\nadmin_project_name = admin\nadmin_project_domain_name = Default\n' >>"$KEYSTONE_CONF"
    return 0
}

# keystone_admin_project_active: a token of the bootstrap admin on the admin project carries
# is_admin_project = true (the running Keystone reads the admin project from its config).
keystone_admin_project_active() {
    local body
    body="{\"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {\"name\": \"admin\", \"domain\": {\"id\": \"default\"}, \"password\": \"$(keystone_password admin)\"}}}, \"scope\": {\"project\": {\"name\": \"admin\", \"domain\": {\"id\": \"default\"}}}}}"
    curl -fsS --max-time 10 -H 'Content-Type: application/json' -d "$body" \
        "$KEYSTONE_URL/auth/tokens?nocatalog" | tr -d ' ' | grep -q '"is_admin_project":true'
}

# keystone_reload: makes the Keystone this script runs read its config again: uwsgi's graceful
# reload (SIGHUP to the master named in our pid file: the socket stays open, requests wait for
# the new workers), or a restart when that does not take.
keystone_reload() {
    local pidfile
    pidfile=$(keystone_pidfile)
    if pid_alive "$pidfile" && kill -HUP "$(cat "$pidfile")" 2>/dev/null; then
        for _ in $(seq 1 300); do
            keystone_admin_project_active 2>/dev/null && return 0
            sleep 0.2
        done
    fi
    keystone_stop
    keystone_start
}

keystone_venv() {
    if [ -x "$KEYSTONE_VENV/bin/uwsgi" ] && [ -x "$KEYSTONE_VENV/bin/keystone-manage" ] \
        && "$KEYSTONE_VENV/bin/python" -c 'import keystone.wsgi.api' >/dev/null 2>&1; then
        return 0
    fi
    say "creating the Keystone venv in $KEYSTONE_VENV (about a minute)"
    ensure_packages python3-venv python3-dev gcc
    mkdir -p "$(dirname "$KEYSTONE_VENV")"
    python3 -m venv "$KEYSTONE_VENV" || die "cannot create the venv $KEYSTONE_VENV"
    "$KEYSTONE_VENV/bin/pip" install -q keystone python-openstackclient uwsgi \
        >"$FRESCO_STATE/logs/keystone-pip.log" 2>&1 \
        || die "pip install keystone failed (see $FRESCO_STATE/logs/keystone-pip.log)"
}

keystone_manage() {
    OS_KEYSTONE_CONFIG_FILES="$KEYSTONE_CONF" "$KEYSTONE_VENV/bin/keystone-manage" \
        --config-file "$KEYSTONE_CONF" "$@" >>"$FRESCO_STATE/logs/keystone-manage.log" 2>&1 \
        || die "keystone-manage $1 failed (see $FRESCO_STATE/logs/keystone-manage.log)"
}

# keystone_bootstrap: config, database, keys and the admin user, once per state dir.
keystone_bootstrap() {
    mkdir -p "$KEYSTONE_DIR"
    chmod 700 "$KEYSTONE_DIR"
    if [ ! -s "$KEYSTONE_DIR/secret" ]; then
        (umask 077 && head -c 32 /dev/urandom | sha256sum | cut -c1-40 >"$KEYSTONE_DIR/secret")
    fi
    if [ ! -f "$KEYSTONE_CONF" ]; then
        cat >"$KEYSTONE_CONF" <<EOF
# Written by tools/lib/keystone.sh for development and tests only.
[DEFAULT]
log_file = $FRESCO_STATE/logs/keystone.log
[database]
connection = sqlite:///$KEYSTONE_DIR/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = $KEYSTONE_DIR/fernet-keys
[credential]
key_repository = $KEYSTONE_DIR/credential-keys
[cache]
enabled = false
[identity]
# Dev and tests only: cheap bcrypt keeps seeding and service authentication fast.
password_hash_rounds = 4
EOF
    fi
    keystone_admin_project_conf || true
    if [ -f "$KEYSTONE_DIR/bootstrapped" ]; then
        # Keystone warns on every token when its key repositories are readable by others.
        chmod 700 "$KEYSTONE_DIR/fernet-keys" "$KEYSTONE_DIR/credential-keys"
        return 0
    fi
    say "bootstrapping Keystone in $KEYSTONE_DIR"
    mkdir -p "$KEYSTONE_DIR/fernet-keys" "$KEYSTONE_DIR/credential-keys"
    keystone_manage db_sync
    keystone_manage fernet_setup --keystone-user root --keystone-group root
    keystone_manage credential_setup --keystone-user root --keystone-group root
    keystone_manage bootstrap --bootstrap-password "$(keystone_password admin)" \
        --bootstrap-admin-url "$KEYSTONE_URL" --bootstrap-internal-url "$KEYSTONE_URL" \
        --bootstrap-public-url "$KEYSTONE_URL" --bootstrap-region-id RegionOne
    chmod 700 "$KEYSTONE_DIR/fernet-keys" "$KEYSTONE_DIR/credential-keys"
    touch "$KEYSTONE_DIR/bootstrapped"
}

keystone_start() {
    local pidfile
    pidfile=$(keystone_pidfile)
    if pid_alive "$pidfile" && keystone_answers; then
        return 0
    fi
    keystone_venv
    keystone_bootstrap
    if ! pid_alive "$pidfile"; then
        if keystone_answers; then
            die "something else answers on 127.0.0.1:$KEYSTONE_PORT; set KEYSTONE_PORT"
        fi
        say "starting Keystone on $KEYSTONE_URL"
        # uwsgi's --http-socket closes every connection after its answer without saying so;
        # "Connection: close" tells clients not to reuse it (or their next request is reset).
        rm -f "$pidfile"
        OS_KEYSTONE_CONFIG_FILES="$KEYSTONE_CONF" "$KEYSTONE_VENV/bin/uwsgi" \
            --http-socket "127.0.0.1:$KEYSTONE_PORT" \
            --wsgi-file "$("$KEYSTONE_VENV/bin/python" -c 'import keystone.wsgi.api as m; print(m.__file__)' 2>/dev/null)" \
            --master --processes 2 --die-on-term --no-orphans --need-app \
            --add-header 'Connection: close' \
            --pidfile "$pidfile" --daemonize "$FRESCO_STATE/logs/keystone-uwsgi-$KEYSTONE_PORT.log" \
            || die "uwsgi did not start (see $FRESCO_STATE/logs/keystone-uwsgi-$KEYSTONE_PORT.log)"
    fi
    wait_for 60 "Keystone on $KEYSTONE_URL" keystone_answers
}

keystone_stop() {
    stop_pidfile "$(keystone_pidfile)" "Keystone on port $KEYSTONE_PORT"
}

keystone_status() {
    if pid_alive "$(keystone_pidfile)" && keystone_answers; then
        echo "keystone running on $KEYSTONE_URL (pid $(cat "$(keystone_pidfile)"))"
        return 0
    fi
    echo "keystone not running on $KEYSTONE_URL"
    return 3
}

# --- REST helpers for seeding ----------------------------------------------------------------

# json EXPR: evaluates a Python expression over the JSON document `d` read from stdin.
json() {
    "$KEYSTONE_VENV/bin/python" -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# keystone_issue USER PASSWORD [PROJECT]: prints a token (unscoped without PROJECT).
keystone_issue() {
    local scope="" body
    if [ -n "${3:-}" ]; then
        scope=", \"scope\": {\"project\": {\"name\": \"$3\", \"domain\": {\"id\": \"default\"}}}"
    fi
    body="{\"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {\"name\": \"$1\", \"domain\": {\"id\": \"default\"}, \"password\": \"$2\"}}}$scope}}"
    curl -fsS --max-time 10 -D - -o /dev/null -H 'Content-Type: application/json' \
        -d "$body" "$KEYSTONE_URL/auth/tokens" | tr -d '\r' | awk 'tolower($1) == "x-subject-token:" { print $2 }'
}

# ks METHOD PATH [BODY]: an admin REST call; prints the response body.
ks() {
    local args=(-fsS --max-time 10 -X "$1" -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json')
    [ -n "${3:-}" ] && args+=(-d "$3")
    curl "${args[@]}" "$KEYSTONE_URL$2"
}

# lookup KIND NAME: the id of NAME in the listing of KIND (users, projects, roles) read once.
lookup() {
    local listing
    case $1 in
        users) listing=$SEED_USERS ;;
        projects) listing=$SEED_PROJECTS ;;
        roles) listing=$SEED_ROLES ;;
    esac
    printf '%s' "$listing" | json "next((x['id'] for x in d['$1'] if x['name'] == '$2'), '')"
}

# ensure_named KIND NAME BODY: prints the id of the project or user NAME, creating it if needed.
ensure_named() {
    local kind=$1 name=$2 body=$3 id
    id=$(lookup "${kind}s" "$name")
    if [ -z "$id" ]; then
        id=$(ks POST "/${kind}s" "{\"$kind\": $body}" | json "d['$kind']['id']") || die "cannot create $kind $name"
    fi
    echo "$id"
}

role_id() {
    local id
    id=$(lookup roles "$1")
    [ -n "$id" ] || die "role $1 missing"
    echo "$id"
}

# ensure_user NAME PROJECT_ID ROLE_ID: the user exists (with its derived password) and holds
# ROLE there; prints its id.
ensure_user() {
    local id
    id=$(ensure_named user "$1" "{\"name\": \"$1\", \"domain_id\": \"default\", \"password\": \"$(keystone_password "$1")\"}")
    ks PUT "/projects/$2/users/$id/roles/$3" >/dev/null || die "cannot grant role to $1"
    echo "$id"
}

keystone_seed() {
    keystone_start
    if keystone_admin_project_conf; then
        # An older state dir: the running Keystone must read the admin project once.
        say "keystone.conf now names the cloud admin project: reloading Keystone on $KEYSTONE_URL"
        keystone_reload
    fi
    local stamp="$KEYSTONE_DIR/seeded-$KEYSTONE_PORT"
    if [ -f "$stamp" ] && [ -f "$KEYSTONE_ENV_FILE" ] \
        && grep -q '^FRESCO_SYSTEM_READER_USER=' "$KEYSTONE_ENV_FILE" \
        && [ -n "$(keystone_issue fresco "$(keystone_password fresco)" service 2>/dev/null)" ]; then
        return 0
    fi
    say "seeding Keystone (service users, test projects and users)"
    ADMIN_TOKEN=$(keystone_issue admin "$(keystone_password admin)" admin)
    [ -n "$ADMIN_TOKEN" ] || die "cannot authenticate as admin on $KEYSTONE_URL"
    local service reader member admin project id env reauth
    SEED_USERS=$(ks GET '/users?domain_id=default')
    SEED_PROJECTS=$(ks GET '/projects?domain_id=default')
    SEED_ROLES=$(ks GET '/roles')
    service=$(role_id service)
    reader=$(role_id reader)
    member=$(role_id member)
    admin=$(role_id admin)
    env=$(mktemp "$KEYSTONE_DIR/env.XXXXXX")
    {
        echo "# Written by tools/lib/keystone.sh seed: a dev/test Keystone on loopback."
        echo "KEYSTONE_URL=$KEYSTONE_URL"
        echo "KEYSTONE_PORT=$KEYSTONE_PORT"
        echo "KEYSTONE_SCRIPT=$KEYSTONE_SCRIPT"
        echo "FRESCO_STATE=$FRESCO_STATE"
        echo "KEYSTONE_ADMIN_USER=admin"
        echo "KEYSTONE_ADMIN_PASSWORD=$(keystone_password admin)"
        echo "KEYSTONE_ADMIN_PROJECT=admin"
    } >"$env"
    id=$(ensure_named project service '{"name": "service", "domain_id": "default", "description": "OpenStack services"}')
    ensure_user fresco "$id" "$service" >/dev/null
    reauth=$(ensure_user fresco-reauth "$id" "$service")
    {
        echo "FRESCO_SERVICE_PROJECT=service"
        echo "FRESCO_SERVICE_USER=fresco"
        echo "FRESCO_SERVICE_PASSWORD=$(keystone_password fresco)"
        echo "FRESCO_REAUTH_USER=fresco-reauth"
        echo "FRESCO_REAUTH_USER_ID=$reauth"
        echo "FRESCO_REAUTH_PASSWORD=$(keystone_password fresco-reauth)"
    } >>"$env"
    for project in a b; do
        id=$(ensure_named project "fresco-test-$project" "{\"name\": \"fresco-test-$project\", \"domain_id\": \"default\"}")
        echo "FRESCO_TEST_PROJECT_${project^^}=fresco-test-$project" >>"$env"
        echo "FRESCO_TEST_PROJECT_${project^^}_ID=$id" >>"$env"
        ensure_user "fresco-test-$project-reader" "$id" "$reader" >/dev/null
        ensure_user "fresco-test-$project-member" "$id" "$member" >/dev/null
        ensure_user "fresco-test-$project-admin" "$id" "$admin" >/dev/null
        for role in reader member admin; do
            {
                echo "FRESCO_TEST_${project^^}_${role^^}_USER=fresco-test-$project-$role"
                echo "FRESCO_TEST_${project^^}_${role^^}_PASSWORD=$(keystone_password "fresco-test-$project-$role")"
            } >>"$env"
        done
    done
    # A system-scoped reader: reads across the cloud, changes nothing.
    id=$(ensure_named user fresco-system-reader "{\"name\": \"fresco-system-reader\", \"domain_id\": \"default\", \"password\": \"$(keystone_password fresco-system-reader)\"}")
    ks PUT "/system/users/$id/roles/$reader" >/dev/null || die "cannot grant the system reader role"
    {
        echo "FRESCO_SYSTEM_READER_USER=fresco-system-reader"
        echo "FRESCO_SYSTEM_READER_PASSWORD=$(keystone_password fresco-system-reader)"
    } >>"$env"
    chmod 600 "$env"
    mv "$env" "$KEYSTONE_ENV_FILE"
    touch "$stamp"
    say "Keystone seeded; credentials in $KEYSTONE_ENV_FILE"
}

keystone_main() {
    case "${1:-}" in
        start) keystone_start ;;
        seed) keystone_seed ;;
        stop) keystone_stop ;;
        status) keystone_status ;;
        env-file) echo "$KEYSTONE_ENV_FILE" ;;
        token)
            [ -n "${2:-}" ] || die "usage: $0 token USER [PROJECT]"
            keystone_issue "$2" "$(keystone_password "$2")" "${3:-}"
            ;;
        *) die "usage: $0 start|seed|stop|status|env-file|token USER [PROJECT]" ;;
    esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    keystone_main "$@"
fi
