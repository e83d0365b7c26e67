#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The warm invocation path (issue 11), against a stack of its own (api, scheduler, one agent;
# see bench/lib.sh). The function is tests/functions/provided-static-hello: a static, std-only
# Rust `provided` bootstrap that speaks the Runtime API on one keep-alive connection and answers
# {"hello":"world"}, so that nearly all the CPU measured is the platform's. Prints, in one run:
#   (1) the HTTP ceiling: GET / on the API (no auth, no database): wrk keep-alive, siege
#       connection-close, sequential on one keep-alive connection;
#   (2) the function, warm: wrk keep-alive req/s, siege connection-close trans/s, sequential
#       p50/p99 on one keep-alive connection;
#   (3) the CPU per invocation of every process on the path: /proc/<pid>/stat utime+stime
#       deltas over each wrk run of (2), divided by the invocations of that run, in µs: api,
#       scheduler, agent, the shim and the bootstrap in the function's containers (found via
#       their cgroup), the containers' containerd-shims, dockerd, containerd, and every process
#       of the bench's PostgreSQL cluster; plus the same processes over an idle window of the
#       same length (what they burn without invocations, per the same invocation count).
# Each figure is the median of BENCH_REPEAT runs; every line carries the load average.
#
# Usage: bench/warm.sh   (as root; about 6 minutes with the defaults)
#   BENCH_REPEAT=3 BENCH_DURATION=10 BENCH_CONNECTIONS=25 BENCH_SEQ_N=2000
# Its own state dir, ports and agent ids, so that it can run beside the other bench scripts:
#   FRESCO_STATE=/work/bench-state-warm, api/scheduler/agent 9910/9911/9912, PostgreSQL 5459,
#   agent id bench-warm-agent-1 (all overridable in the environment).
set -euo pipefail
FRESCO_STATE="${FRESCO_STATE:-/work/bench-state-warm}"
FRESCO_API_PORT="${FRESCO_API_PORT:-9910}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-9911}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-9912}"
FRESCO_PG_PORT="${FRESCO_PG_PORT:-5459}"
BENCH_AGENT_PREFIX="${BENCH_AGENT_PREFIX:-bench-warm-agent}"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${BENCH_DURATION:-10}"
CONNS="${BENCH_CONNECTIONS:-25}"
SEQ_N="${BENCH_SEQ_N:-2000}"
SIEGE_TRIES=3
PY="$(command -v /usr/bin/python3 || command -v python3)"
PROJECT="bench-warm"
TOKEN="bench:$PROJECT:member"
EVENT='{"name": "bench"}'
ANSWER='{"hello":"world"}'
FUNCTION_SRC="$FRESCO_ROOT/tests/functions/provided-static-hello/main.rs"
AGENT_ID="$BENCH_AGENT_PREFIX-1"
CLK_TCK="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
LOADS="$WORK/loads"
cleanup() {
    rm -rf "$WORK"
    bench_stop
}
trap cleanup EXIT

# note_load: keeps the 1-minute load average for the summary's range.
note_load() {
    cut -d' ' -f1 /proc/loadavg >>"$LOADS"
}

# build_function: the bootstrap, compiled by rustc alone (std only, no cargo project) and linked
# statically, zipped as a `provided` code package; prints the zip's path. glibc static-pie on the
# x86_64-unknown-linux-gnu target, as the shim is built (tools/lib/stack.sh): it runs in the
# FROM-scratch `provided` image, and the musl target would have to come from rustup's
# distribution server, which is not one of the sources this project installs from.
build_function() {
    local dir="$WORK/pkg" zip="$WORK/provided-static-hello.zip"
    mkdir -p "$dir"
    rustc --edition 2021 -O -C panic=abort -C strip=symbols -C target-feature=+crt-static \
        --target x86_64-unknown-linux-gnu -o "$dir/bootstrap" "$FUNCTION_SRC" \
        || die "cannot compile $FUNCTION_SRC"
    if LC_ALL=C readelf -l "$dir/bootstrap" | grep -q 'INTERP'; then
        die "the bootstrap is not static (it names a program interpreter)"
    fi
    (cd "$dir" && zip -q "$zip" bootstrap)
    echo "$zip"
}

# create NAME ZIP: a provided function from a code package (replacing one of that name).
create() {
    curl -sS -o /dev/null -X DELETE -H "X-Auth-Token: $TOKEN" "$API/v1/functions/$1"
    curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" \
        -F "metadata={\"name\": \"$1\", \"runtime\": \"provided\", \"handler\": \"bootstrap\"};type=application/json" \
        -F "package=@$2" "$API/v1/functions" || die "cannot create function $1"
}

# siege_median LABEL URL [BODY]: BENCH_REPEAT siege runs with `connection = close` (a new TCP
# connection per transaction), each printed, then the median transaction rate.
siege_median() {
    local label=$1 url=$2 body=${3:-} i rate fails ok hung rates="" target
    cat >"$WORK/siegerc" <<RC
connection = close
protocol = HTTP/1.1
json_output = true
parser = false
logging = false
show-logfile = false
RC
    local args=(-R "$WORK/siegerc" -q -c "$CONNS" -t "${DURATION}S" -b -H "X-Auth-Token: $TOKEN")
    target="$url"
    [ -n "$body" ] && { args+=(--content-type application/json); target="$url POST $body"; }
    out "command: siege -R <rc: connection = close, parser = false, json_output = true> -c $CONNS -t ${DURATION}S -b -H 'X-Auth-Token: $TOKEN'${body:+ --content-type application/json} '$target'"
    for i in $(seq 1 "$BENCH_REPEAT"); do
        # siege 4.0 sometimes never returns from a timed run (JoeDog/siege#66): such a run is
        # stopped and done again, at most SIEGE_TRIES times in all, and the stopped ones counted.
        hung=0
        while :; do
            timeout -k 5 "$((DURATION + 20))" siege "${args[@]}" "$target" >"$WORK/siege.out" 2>&1 || true
            # (`|| true`: with pipefail a report without the field must not end the script.)
            rate=$(grep -o '"transaction_rate":[^,]*' "$WORK/siege.out" | tr -dc '0-9.') || true
            [ -n "$rate" ] && break
            hung=$((hung + 1))
            [ "$hung" -lt "$SIEGE_TRIES" ] || die "siege printed no transaction rate $hung times: $(tail -n 5 "$WORK/siege.out")"
            warn "siege gave no report (hung or failed); running it again"
            sleep 2
        done
        ok=$(grep -o '"successful_transactions":[^,]*' "$WORK/siege.out" | tr -dc '0-9')
        fails=$(grep -o '"failed_transactions":[^,]*' "$WORK/siege.out" | tr -dc '0-9')
        note_load
        out "  $label#$i rps=$rate ok=$ok failed=$fails stopped_hung_runs=$hung $(machine)"
        rates+="$rate"$'\n'
    done
    out "$label median: rps=$(printf '%s' "$rates" | median) $(machine)"
}

# seq_median LABEL MODE ARGS...: BENCH_REPEAT runs of bench/seq.py (one keep-alive connection),
# each printed, then the medians of its figures.
seq_median() {
    local label=$1 i line k values result lines=()
    shift
    out "command: bench/seq.py $*"
    for i in $(seq 1 "$BENCH_REPEAT"); do
        line="$label#$i $("$PY" "$BENCH_DIR/seq.py" "$@") $(machine)"
        note_load
        out "  $line"
        lines+=("$line")
    done
    result="$label median:"
    for k in p50_ms p99_ms overhead_p50_ms overhead_p99_ms; do
        [ -n "$(field "$k" "${lines[0]}")" ] || continue
        values=""
        for line in "${lines[@]}"; do values+="$(field "$k" "$line")"$'\n'; done
        result+=" $k=$(printf '%s' "$values" | median)"
    done
    out "$result $(machine)"
}

# --- the processes on the path ---------------------------------------------------------------

# path_processes: "ROLE PID" for every process a warm invocation crosses.
path_processes() {
    local pid dockerd postmaster id init cg comm role
    for role in api scheduler agent-1; do
        printf '%s %s\n' "${role%-1}" "$(cat "$FRESCO_STATE/run/fresco-$role.pid")"
    done
    # The engine is shared with whoever else uses this Docker: its figures include their work.
    dockerd=$(cat /var/run/docker.pid 2>/dev/null || pgrep -xo dockerd) || die "no dockerd"
    printf 'dockerd %s\n' "$dockerd"
    for pid in $(pgrep -x -P "$dockerd" containerd || true); do printf 'containerd %s\n' "$pid"; done
    postmaster=$(head -n 1 "$FRESCO_PG_DATA/postmaster.pid")
    printf 'postgres %s\n' "$postmaster"
    for pid in $(pgrep -P "$postmaster" || true); do printf 'postgres %s\n' "$pid"; done
    for id in $("$FRESCO_DOCKER" ps -q --no-trunc --filter "label=fresco.agent=$AGENT_ID"); do
        for pid in $(pgrep -f -- "-id $id" || true); do
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd-shim ]; then
                printf 'containerd-shim %s\n' "$pid"
            fi
        done
        init=$("$FRESCO_DOCKER" inspect -f '{{.State.Pid}}' "$id" 2>/dev/null) || continue
        [ "$init" -gt 0 ] || continue
        cg=$(awk -F: '$2 == "pids" { print $3 }' "/proc/$init/cgroup" 2>/dev/null) || continue
        # the container's own cgroup, never the root one (that would be every process)
        case "$cg" in "" | /) continue ;; esac
        [ -r "/sys/fs/cgroup/pids$cg/cgroup.procs" ] || continue
        while read -r pid; do
            comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
            # the container's PID 1 is the shim (/opt/fresco/shim); the function is its child
            if [ "$pid" = "$init" ]; then
                role=shim
            elif [ "$comm" = bootstrap ]; then
                role=function
            else
                role=container-other
            fi
            printf '%s %s\n' "$role" "$pid"
        done <"/sys/fs/cgroup/pids$cg/cgroup.procs"
    done
}

# read_ticks: "ROLE PID" lines on stdin become "ROLE PID TICKS" (utime + stime, threads
# included). Builtins only, so that reading costs the measured processes nothing.
read_ticks() {
    local role pid stat rest f
    while read -r role pid; do
        read -r stat 2>/dev/null <"/proc/$pid/stat" || continue
        rest=${stat##*) }
        read -ra f <<<"$rest"
        printf '%s %s %s\n' "$role" "$pid" "$((f[11] + f[12]))"
    done
}

# cpu_begin PREFIX: lists the processes and reads their ticks (PREFIX.procs, PREFIX.before).
cpu_begin() {
    path_processes | sort -u >"$1.procs"
    read_ticks <"$1.procs" >"$1.before"
}

# cpu_end PREFIX: reads the same processes' ticks at once (before any docker call, which would
# cost dockerd CPU inside the window), then looks for processes born in the window (new
# containers): all of their ticks were spent in it. Writes PREFIX.after.
cpu_end() {
    read_ticks <"$1.procs" >"$1.after"
    path_processes | sort -u | sort - "$1.procs" "$1.procs" | uniq -u | read_ticks >>"$1.after"
}

# cpu_roles PREFIX: "ROLE PROCS TICKS" per role over the window.
cpu_roles() {
    awk 'NR == FNR { before[$2] = $3; next }
         { d = $3 - (($2 in before) ? before[$2] : 0); if (d < 0) d = 0; ticks[$1] += d; procs[$1]++ }
         END { for (r in ticks) print r, procs[r], ticks[r] }' "$1.before" "$1.after"
}

ROLES="api scheduler agent shim function container-other containerd-shim dockerd containerd postgres"

# role_sum ROLESFILE ROLE COLUMN: column 2 (processes) or 3 (ticks) of ROLE, or of all roles
# for "total".
role_sum() {
    awk -v r="$2" -v c="$3" 'r == "total" || $1 == r { s += $c } END { print s + 0 }' "$1"
}

# per_invocation TICKS N: µs of CPU per invocation.
per_invocation() {
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }'
}

# cpu_table RUN...: per role, µs of CPU per invocation in each run (RUN.roles, with the run's
# invocation count in RUN.n), their median, and the idle window's ticks over the median count.
cpu_table() {
    local run role v cells values nmed
    nmed=$(cat "${@/%/.n}" | median)
    cells=""
    for run in "$@"; do cells+=$(printf '%10s' "$(basename "$run")"); done
    out "$(printf '%-16s %5s' process procs)$cells$(printf '%10s%10s' median idle)"
    for role in $ROLES total; do
        cells=""
        values=""
        for run in "$@"; do
            v=$(per_invocation "$(role_sum "$run.roles" "$role" 3)" "$(cat "$run.n")")
            cells+=$(printf '%10s' "$v")
            values+="$v"$'\n'
        done
        out "$(printf '%-16s %5s' "$role" "$(role_sum "$1.roles" "$role" 2)")$cells$(printf '%10s%10s' \
            "$(printf '%s' "$values" | median)" "$(per_invocation "$(role_sum "$WORK/idle.roles" "$role" 3)" "$nmed")")"
    done
}

# --- the run ---------------------------------------------------------------------------------

bench_start 1
ensure_runtimes
started=$SECONDS
: >"$LOADS"
out "== bench/warm.sh $(date -u +%FT%TZ) $(git -C "$FRESCO_ROOT" rev-parse --short HEAD) $(machine)"

ZIP=$(build_function)
create hello-static "$ZIP"
INVOKE="$API/v1/functions/hello-static/invoke"
# The agent registers with its first heartbeat (every 2 s): retry until it is placed.
wait_for 60 "the first invocation (agent registration)" curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" -d "$EVENT" "$INVOKE"
got=$(curl -fsS -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' -d "$EVENT" "$INVOKE")
[ "$got" = "$ANSWER" ] || die "the function answered '$got', not '$ANSWER'"
out "function: tests/functions/provided-static-hello (rustc -O, static, $(stat -c %s "$WORK/pkg/bootstrap") bytes), runtime provided, answers $got"

out "-- (1) HTTP ceiling: GET / on the API (no auth, no database), $CONNS connections, ${DURATION} s per run"
wrk -t2 -c"$CONNS" -d3s "$API/" >/dev/null
wrk_median "ceiling-wrk" -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$BENCH_LUA/report.lua" "$API/"
siege_median "ceiling-siege-close" "$API/"
seq_median "ceiling-seq" get "$API/" "$TOKEN" "$SEQ_N"

out "-- (2) the function warm, $CONNS connections, ${DURATION} s per run"
export BENCH_BODY="$EVENT"
# Warm-up: enough warm containers for $CONNS concurrent invocations (cold starts take seconds
# under load, so two rounds).
for _ in 1 2; do
    wrk -t2 -c"$CONNS" -d5s -s "$BENCH_LUA/post.lua" -H "X-Auth-Token: $TOKEN" "$INVOKE" >/dev/null
done
out "warm containers: $("$FRESCO_DOCKER" ps -q --filter "label=fresco.agent=$AGENT_ID" | wc -l)"

# The idle window: the same processes, no invocations, as long as a wrk run.
cpu_begin "$WORK/idle"
sleep "$DURATION"
cpu_end "$WORK/idle"
cpu_roles "$WORK/idle" >"$WORK/idle.roles"

wrk_args=(-t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$BENCH_LUA/post.lua" -H "X-Auth-Token: $TOKEN" "$INVOKE")
out "command: wrk ${wrk_args[*]}   (BENCH_BODY='$EVENT'), CPU of the path read around each run"
wrk_lines=()
runs=()
for i in $(seq 1 "$BENCH_REPEAT"); do
    run="$WORK/run$i"
    cpu_begin "$run"
    line=$(wrk_once "wrk-invoke#$i" "${wrk_args[@]}")
    cpu_end "$run"
    note_load
    out "  $line"
    wrk_lines+=("$line")
    runs+=("$run")
    field requests "$line" >"$run.n"
    cpu_roles "$run" >"$run.roles"
done
summarize "wrk-invoke" "${wrk_lines[@]}"
siege_median "siege-close-invoke" "$INVOKE" "$EVENT"
"$PY" "$BENCH_DIR/seq.py" invoke "$INVOKE" "$TOKEN" "$EVENT" 200 >/dev/null
seq_median "seq-invoke" invoke "$INVOKE" "$TOKEN" "$EVENT" "$SEQ_N"

out "-- (3) CPU per warm invocation (µs), /proc/<pid>/stat utime+stime over each wrk run / its invocations (CLK_TCK=$CLK_TCK)"
out "   procs: processes seen in run 1; idle: the same processes over ${DURATION} s without invocations, per the median invocation count"
cpu_table "${runs[@]}"
out "warm containers: $("$FRESCO_DOCKER" ps -q --filter "label=fresco.agent=$AGENT_ID" | wc -l)"
out "== load average (1 min) during the runs: $(sort -g "$LOADS" | head -n 1)-$(sort -g "$LOADS" | tail -n 1); done in $((SECONDS - started)) s"
