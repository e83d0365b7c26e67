# shellcheck shell=bash
#
# ============================================================================================
#  HARNESS ONLY - NOT DEVSTACK. Minimal re-implementations of the DevStack helper functions
#  that devstack/plugin.sh and devstack/lib/fresco call, so the plugin's phases can run outside
#  a DevStack tree (devstack/tests/run.sh). Each follows the semantics of the function of the
#  same name in DevStack (functions-common, inc/ini-config, inc/python, lib/databases/postgresql)
#  and acts for real: the Keystone helpers call the real `openstack` CLI against a real
#  Keystone (clouds devstack-system-admin / devstack-admin in OS_CLIENT_CONFIG_FILE),
#  recreate_database talks to a real PostgreSQL, run_process starts real processes.
#  Differences from DevStack, on purpose: run_process always uses the pidfile way (no systemd),
#  and pip_install uses $PIP (the harness's venv) instead of DevStack's global environment.
# ============================================================================================

: "${ENABLED_SERVICES:=}"
: "${LOGDIR:?LOGDIR must be set by the harness}"
: "${SERVICE_DIR:?SERVICE_DIR must be set by the harness}"

# --- sudo: present on DevStack hosts; on a root-only test machine, run the command directly.
if ! command -v sudo >/dev/null 2>&1; then
    function sudo {
        local user=""
        while [[ $# -gt 0 ]]; do
            case "$1" in
                -E|-H|-n) shift ;;
                -u) user=$2; shift 2 ;;
                --) shift; break ;;
                *) break ;;
            esac
        done
        if [[ -n "$user" && "$user" != "$(id -un)" ]]; then
            runuser -u "$user" -- "$@"
        else
            "$@"
        fi
    }
fi

# --- functions-common: messages and flags
function die {
    local line=$1
    shift
    echo "[ERROR] ${BASH_SOURCE[1]:-}:${line} $*" >&2
    exit 1
}

function echo_summary {
    echo "==> $*"
}

function trueorfalse {
    local default=$1 varname=$2
    local testval=${!varname:-}
    case "$testval" in
        1|[yY]|[yY]es|[yY][eE][sS]|[tT]rue|[tT][rR][uU][eE]|[oO]n) echo True ;;
        0|[nN]|[nN]o|[nN][oO]|[fF]alse|[fF][aA][lL][sS][eE]|[oO]ff) echo False ;;
        "") echo "$default" ;;
        *) die $LINENO "bool value '$testval' for $varname is neither true nor false" ;;
    esac
}

# --- functions-common: services and plugins
function define_plugin {
    DEVSTACK_PLUGINS="${DEVSTACK_PLUGINS:+$DEVSTACK_PLUGINS,}$1"
}

# enable_service: a service disabled with disable_service stays disabled (DevStack records
# it in DISABLED_SERVICES, so local.conf's disable_service wins over a plugin's settings).
function enable_service {
    local svc
    for svc in "$@"; do
        if [[ ",${DISABLED_SERVICES:-}," == *",$svc,"* ]]; then
            echo "WARNING: attempt to enable_service $svc when it has been disabled" >&2
            continue
        fi
        if [[ ",$ENABLED_SERVICES," != *",$svc,"* ]]; then
            ENABLED_SERVICES="${ENABLED_SERVICES:+$ENABLED_SERVICES,}$svc"
        fi
    done
}

function disable_service {
    local svc tmp=",$ENABLED_SERVICES,"
    for svc in "$@"; do
        tmp=${tmp//,$svc,/,}
        if [[ ",${DISABLED_SERVICES:-}," != *",$svc,"* ]]; then
            DISABLED_SERVICES="${DISABLED_SERVICES:+$DISABLED_SERVICES,}$svc"
        fi
    done
    tmp=${tmp#,}
    ENABLED_SERVICES=${tmp%,}
}

# True when any of the named services is enabled.
function is_service_enabled {
    local svc
    for svc in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$svc,"* ]] && return 0
    done
    return 1
}

# --- inc/ini-config
# iniset [-sudo] FILE SECTION OPTION VALUE: set (or add) one option, creating the section.
function iniset {
    if [[ "$1" == "-sudo" ]]; then shift; fi
    local file=$1 section=$2 option=$3 value=$4
    [[ -n "$section" && -n "$option" ]] || die $LINENO "iniset needs a section and an option"
    python3 - "$file" "$section" "$option" "$value" <<'PY'
import os, re, sys
path, section, option, value = sys.argv[1:]
lines = open(path).read().splitlines() if os.path.exists(path) else []
head = re.compile(r"^\s*\[(.+)\]\s*$")
key = re.compile(r"^\s*" + re.escape(option) + r"\s*=")
start = next((i for i, l in enumerate(lines) if (m := head.match(l)) and m.group(1) == section), None)
if start is None:
    if lines and lines[-1].strip():
        lines.append("")
    lines += ["[%s]" % section, "%s = %s" % (option, value)]
else:
    end = next((i for i in range(start + 1, len(lines)) if head.match(lines[i])), len(lines))
    hit = next((i for i in range(start + 1, end) if key.match(lines[i])), None)
    if hit is None:
        last = end
        while last > start + 1 and not lines[last - 1].strip():
            last -= 1
        lines.insert(last, "%s = %s" % (option, value))
    else:
        lines[hit] = "%s = %s" % (option, value)
with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

# iniget FILE SECTION OPTION: the value, empty when absent.
function iniget {
    local file=$1 section=$2 option=$3
    [[ -f "$file" ]] || return 0
    sed -ne "/^\[$section\]/,/^\[.*\]/ { /^${option}[ \t]*=/ p; }" "$file" \
        | head -n 1 | sed -e "s/^${option}[ \t]*=[ \t]*//"
}

# --- functions-common: packages
function install_package {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

# --- inc/python (the harness's pip instead of DevStack's global environment)
function pip_install {
    "${PIP:?PIP must name the harness venv pip}" install --quiet "$@"
}

# --- lib/databases/postgresql
function recreate_database {
    local db=$1
    psql -h"$DATABASE_HOST" -U"$DATABASE_USER" -dtemplate1 -c "DROP DATABASE IF EXISTS $db"
    createdb -h "$DATABASE_HOST" -U"$DATABASE_USER" -l C -T template0 -E utf8 "$db"
}

# --- functions-common: processes (the pidfile way DevStack used before systemd)
# run_process NAME COMMAND [GROUP] [USER]
function run_process {
    local service=$1 command=$2 user=${4:-}
    is_service_enabled "$service" || [[ "$service" == fresco-dockerd ]] || return 0
    mkdir -p "$LOGDIR" "$SERVICE_DIR"
    echo "starting $service: $command" >>"$LOGDIR/$service.log"
    # shellcheck disable=SC2086 # the command line is a string, as in DevStack
    if [[ -n "$user" && "$user" != "$(id -un)" ]]; then
        setsid runuser -u "$user" -- $command >>"$LOGDIR/$service.log" 2>&1 </dev/null &
    else
        setsid $command >>"$LOGDIR/$service.log" 2>&1 </dev/null &
    fi
    echo $! >"$SERVICE_DIR/$service.pid"
}

# stop_process NAME: stop the process run_process started (its PID only).
function stop_process {
    local service=$1 pidfile="$SERVICE_DIR/$1.pid" pid i
    [[ -f "$pidfile" ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

# --- functions-common: Keystone (the same openstack CLI calls DevStack makes)
function get_field {
    local data field
    while read -r data; do
        if [ "$1" -lt 0 ]; then
            field="(\$(NF$1))"
        else
            field="\$$(($1 + 1))"
        fi
        echo "$data" | awk -F'[ \t]*\\|[ \t]*' "{print $field}"
    done
}

function get_or_create_user {
    local email=""
    if [[ -n "${4:-}" ]]; then email="--email=$4"; fi
    # shellcheck disable=SC2086
    openstack --os-cloud devstack-system-admin user create "$1" --password "$2" --domain="$3" \
        $email --or-show -f value -c id
}

function _get_domain_args {
    local domain=""
    if [[ -n "${1:-}" ]]; then domain="$domain --user-domain $1"; fi
    if [[ -n "${2:-}" ]]; then domain="$domain --project-domain $2"; fi
    echo "$domain"
}

function get_or_add_user_project_role {
    local domain_args
    domain_args=$(_get_domain_args "${4:-}" "${5:-}")
    # shellcheck disable=SC2086
    openstack --os-cloud devstack-system-admin role add "$1" --user "$2" --project "$3" $domain_args
    # shellcheck disable=SC2086
    openstack --os-cloud devstack-system-admin role assignment list --role "$1" --user "$2" \
        --project "$3" $domain_args | grep '^|\s[a-f0-9]\+' | get_field 1
}

function get_or_create_service {
    openstack --os-cloud devstack-system-admin service show "$2" -f value -c id 2>/dev/null ||
        openstack --os-cloud devstack-system-admin service create "$2" --name "$1" \
            --description="$3" -f value -c id
}

function _get_or_create_endpoint_with_interface {
    local endpoint_id
    endpoint_id=$(openstack --os-cloud devstack-system-admin endpoint list --service "$1" \
        --interface "$2" --region "$4" -c ID -f value)
    if [[ -z "$endpoint_id" ]]; then
        endpoint_id=$(openstack --os-cloud devstack-system-admin endpoint create "$1" "$2" "$3" \
            --region "$4" -f value -c id)
    fi
    echo "$endpoint_id"
}

# get_or_create_endpoint SERVICE REGION PUBLICURL [ADMINURL] [INTERNALURL]
function get_or_create_endpoint {
    local public_id
    public_id=$(_get_or_create_endpoint_with_interface "$1" public "$3" "$2")
    if [[ -n "${4:-}" ]]; then
        _get_or_create_endpoint_with_interface "$1" admin "$4" "$2" >/dev/null
    fi
    if [[ -n "${5:-}" ]]; then
        _get_or_create_endpoint_with_interface "$1" internal "$5" "$2" >/dev/null
    fi
    echo "$public_id"
}
