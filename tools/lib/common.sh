# shellcheck shell=bash
# Shared helpers for Fresco's dev scripts. Source it; it defines paths and small functions.

FRESCO_ROOT="${FRESCO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
FRESCO_STATE="${FRESCO_STATE:-$FRESCO_ROOT/.state}"
export FRESCO_ROOT FRESCO_STATE
mkdir -p "$FRESCO_STATE/logs" "$FRESCO_STATE/run"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG...: installs the Debian packages that are missing (apt-get update once).
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    if [ ! -f "$FRESCO_STATE/.apt-updated" ]; then
        apt-get update -qq >"$FRESCO_STATE/logs/apt.log" 2>&1 || die "apt-get update failed (see $FRESCO_STATE/logs/apt.log)"
        touch "$FRESCO_STATE/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$FRESCO_STATE/logs/apt.log" 2>&1 \
        || die "apt-get install ${missing[*]} failed (see $FRESCO_STATE/logs/apt.log)"
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.1 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && die "timed out after ${seconds}s waiting for $what"
        sleep 0.1
    done
}

# pid_alive PIDFILE: true when the process named in PIDFILE runs and is the one the file was
# written for. After a restart of the machine or of a session the kernel reuses pids: a stale
# file may name someone else's process (seen: a compiler), which must be neither waited on as
# our service nor signalled. Ours started before its file was written; a later owner of the
# pid started after.
pid_alive() {
    local pid started written
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    started=$(process_start_epoch "$pid") || return 1
    written=$(stat -c %Y "$1") || return 1
    [ "$started" -le $((written + 1)) ]
}

# process_start_epoch PID: when the process started, in seconds since the epoch.
process_start_epoch() {
    local stat fields boot
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    read -ra fields <<<"${stat##*) }"
    boot=$(awk '/^btime/ {print $2}' /proc/stat)
    # Field 22, the start time in clock ticks after boot, is the 20th after the name.
    echo $((boot + fields[19] / $(getconf CLK_TCK)))
}

# stop_pidfile PIDFILE NAME: ends the process we started (by its pid) and waits for it.
stop_pidfile() {
    local pidfile=$1 name=$2 pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    rm -f "$pidfile"
}
