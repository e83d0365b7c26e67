# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
# Shared by the bench/ scripts: an isolated Fresco stack (own state dir, ports, PostgreSQL and
# agent id), wrk/siege/hey wrappers that print one parseable line per run, and medians.
#
# Defaults (override in the environment):
#   FRESCO_STATE=/work/bench-state  FRESCO_API_PORT=9900  FRESCO_SCHEDULER_PORT=9901
#   FRESCO_AGENT_PORT=9902  FRESCO_PG_PORT=5449  CARGO_TARGET_DIR=/work/target-bench
#   BENCH_SKIP_BUILD=1   use the binaries already in CARGO_TARGET_DIR (no cargo run)
#   BENCH_KEEP_PG=1      leave the bench PostgreSQL running on exit (faster reruns)
#   BENCH_REPEAT=3       runs per figure (the median is reported)
#   BENCH_AGENT_CONF     extra lines for the agents' [agent] section (experiments)
#   BENCH_AGENT_PREFIX=bench-agent   agent ids are PREFIX-N (a script with a stack of its own
#                        beside another bench's gives its own prefix)

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRESCO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
FRESCO_STATE="${FRESCO_STATE:-/work/bench-state}"
FRESCO_API_PORT="${FRESCO_API_PORT:-9900}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-9901}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-9902}"
FRESCO_PG_PORT="${FRESCO_PG_PORT:-5449}"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
FRESCO_PROFILE=release
BENCH_REPEAT="${BENCH_REPEAT:-3}"
BENCH_LUA="$BENCH_DIR/lua"
BENCH_AGENT_PREFIX="${BENCH_AGENT_PREFIX:-bench-agent}"
export FRESCO_ROOT FRESCO_STATE FRESCO_API_PORT FRESCO_SCHEDULER_PORT FRESCO_AGENT_PORT \
    FRESCO_PG_PORT CARGO_TARGET_DIR FRESCO_PROFILE BENCH_LUA

# shellcheck source=../tools/lib/common.sh
source "$FRESCO_ROOT/tools/lib/common.sh"
# shellcheck source=../tools/lib/postgres.sh
source "$FRESCO_ROOT/tools/lib/postgres.sh"
# shellcheck source=../tools/lib/docker.sh
source "$FRESCO_ROOT/tools/lib/docker.sh"
# shellcheck source=../tools/lib/stack.sh
source "$FRESCO_ROOT/tools/lib/stack.sh"

API="http://127.0.0.1:$FRESCO_API_PORT"
ADMIN_TOKEN="admin:admin:admin"
BENCH_RESULTS="$FRESCO_STATE/results"
mkdir -p "$BENCH_RESULTS"

# machine: cores and load average, printed next to every figure.
machine() {
    printf 'cores=%s load=%s' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ',')"
}

# out LINE...: prints a result line (stdout) and keeps it in $BENCH_RESULTS/<script>.txt.
out() {
    printf '%s\n' "$*" | tee -a "$BENCH_RESULTS/$(basename "$0" .sh).txt"
}

# median: the median of the numbers on stdin (one per line).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field NAME LINE: the value of NAME=... in a key=value line.
field() {
    printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'
}

# bench_build: release services and the static shim, in the bench's own target dir.
bench_build() {
    [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && return 0
    stack_build
}

# bench_tools: the load generators the scripts use (Debian packages).
bench_tools() {
    ensure_packages wrk siege hey python3 jq zip curl
}

# bench_start [AGENTS]: PostgreSQL (own instance), Docker (shared), runtime images, then the
# services with their own config. The agent id is $BENCH_AGENT_PREFIX-N, never agent-N: an
# agent removes every container labelled with its id at start-up, so two stacks on one Docker
# engine with the same agent id would destroy each other's containers.
bench_start() {
    local agents=${1:-1} n
    [ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and Docker)"
    bench_tools
    pg_start
    docker_start
    "$FRESCO_ROOT/runtimes/build.sh" >/dev/null
    bench_build
    for n in api scheduler; do
        [ -x "$(stack_bin "fresco-$n")" ] || die "$(stack_bin "fresco-$n") is missing: build first"
    done
    stack_config noauth
    # Unlimited quotas: the benchmarks measure the platform, not the default limits
    # (executions_per_minute = 60000 would cap throughput at 1,000/s).
    cat >>"$FRESCO_ETC/fresco.conf" <<CONF

[quota]
functions = -1
code_bytes = -1
concurrent_executions = -1
executions_per_minute = -1
CONF
    "$(stack_bin fresco-api)" --config-file "$FRESCO_ETC/fresco.conf" --db-sync >/dev/null \
        || die "database migration failed"
    stack_run fresco-api "$(stack_bin fresco-api)" --config-file "$FRESCO_ETC/fresco.conf"
    stack_run fresco-scheduler "$(stack_bin fresco-scheduler)" --config-file "$FRESCO_ETC/fresco.conf"
    for n in $(seq 1 "$agents"); do
        stack_agent_config "$n" "$BENCH_AGENT_PREFIX-$n"
        # Extra [agent] options for experiments, e.g. BENCH_AGENT_CONF='log_sync_timeout_ms = 0'.
        [ -n "${BENCH_AGENT_CONF:-}" ] && printf '%s\n' "$BENCH_AGENT_CONF" >>"$FRESCO_ETC/agent-$n.conf"
        grep -q "^agent_id = $BENCH_AGENT_PREFIX-$n\$" "$FRESCO_ETC/agent-$n.conf" || die "cannot set the bench agent id"
        stack_run "fresco-agent-$n" "$(stack_bin fresco-agent)" --config-file "$FRESCO_ETC/agent-$n.conf"
    done
    wait_for 30 "fresco-api" curl -fsS "$API/healthcheck"
    wait_for 30 "fresco-scheduler" curl -fsS "http://127.0.0.1:$FRESCO_SCHEDULER_PORT/healthcheck"
    for n in $(seq 1 "$agents"); do
        wait_for 30 "fresco-agent-$n" curl -fsS "http://127.0.0.1:$((FRESCO_AGENT_PORT + n - 1))/healthcheck"
    done
}

# bench_stop: ends the services this stack started (by pid file), and its PostgreSQL. Agents
# get a minute (they remove their containers on SIGTERM, about 0.1-0.5 s each under load);
# containers still labelled with this stack's agent ids afterwards are removed.
bench_stop() {
    local pidfile pid ids
    for pidfile in "$FRESCO_STATE"/run/fresco-agent-*.pid; do
        pid_alive "$pidfile" || continue
        pid=$(cat "$pidfile")
        say "stopping $(basename "$pidfile" .pid) (pid $pid), waiting for it to remove its containers"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 600); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    stack_stop
    ids=$("$FRESCO_DOCKER" ps -aq --filter label=fresco.agent 2>/dev/null \
        | xargs -r "$FRESCO_DOCKER" inspect -f '{{.Id}} {{index .Config.Labels "fresco.agent"}}' 2>/dev/null \
        | awk -v p="$BENCH_AGENT_PREFIX" '$2 ~ "^" p "-[0-9]+$" { print $1 }')
    if [ -n "$ids" ]; then
        warn "removing $(echo "$ids" | wc -l) container(s) a bench agent left behind"
        echo "$ids" | xargs -r "$FRESCO_DOCKER" rm -f >/dev/null
    fi
    [ "${BENCH_KEEP_PG:-0}" = 1 ] || pg_stop
}

# sql QUERY: runs SQL in the bench database (as the postgres superuser, over the local socket).
sql() {
    pg_psql -d fresco -c "$1"
}

# api METHOD PATH TOKEN [BODY]: a JSON call to the bench API; prints the body, fails on >= 400.
api() {
    local args=(-fsS --max-time 30 -X "$1" -H "X-Auth-Token: $3")
    [ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' -d "$4")
    curl "${args[@]}" "$API$2"
}

# ensure_runtimes: python3 and provided, registered as admin (409 when present is fine).
ensure_runtimes() {
    local spec name image kind
    for spec in "python3 fresco/python3:dev python" "provided fresco/provided:dev provided"; do
        read -r name image kind <<<"$spec"
        curl -sS -o /dev/null -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json' \
            -d "{\"name\": \"$name\", \"image\": \"$image\", \"kind\": \"$kind\"}" "$API/v1/runtimes"
    done
}

# wrk_once LABEL WRK-ARGS...: one wrk run with the report script's done() hook; prints
# "LABEL rps=... p50_ms=... p99_ms=... requests=... errors=... non2xx=... cores=... load=...".
wrk_once() {
    local label=$1 line
    shift
    line=$(wrk "$@" | grep '^BENCH ') || die "wrk failed: wrk $*"
    echo "$label ${line#BENCH } $(machine)"
}

# wrk_median LABEL WRK-ARGS...: BENCH_REPEAT runs, each printed, then the medians.
wrk_median() {
    local label=$1 i line all=()
    shift
    out "command: wrk $*"
    for i in $(seq 1 "$BENCH_REPEAT"); do
        line=$(wrk_once "$label#$i" "$@")
        out "  $line"
        all+=("$line")
    done
    summarize "$label" "${all[@]}"
}

# summarize LABEL LINE...: the median of rps, p50_ms and p99_ms over the lines.
summarize() {
    local label=$1 k values line result="$1 median:"
    shift
    for k in rps p50_ms p99_ms; do
        values=""
        for line in "$@"; do values+="$(field "$k" "$line")"$'\n'; done
        result+=" $k=$(printf '%s' "$values" | median)"
    done
    out "$result $(machine)"
}
