#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Cold starts (issue 12), against a stack of its own (api, scheduler, one agent; see
# bench/lib.sh). Prints, in one run:
#   (1) the idle cost of a pre-warmed sandbox: RSS (sum of VmRSS of its processes) and the
#       cgroup's memory usage, for a ready Python and a ready provided sandbox;
#   (2) BENCH_N first invocations, each of a new function, served from a pre-warmed sandbox,
#       for `provided` (tests/functions/provided-static-hello, static, std-only) and `python`
#       (tests/functions/python-hello), the pool refilled (and its refill over) before each;
#   (3) the same with the pools off (agent restarted with no prewarm_runtimes): cold starts;
#   (4) the reference: a bare bollard create+start+wait+remove of a `/bin/true` container with
#       a 128 MB function's settings (agent/examples/bare_container.rs), BENCH_N times.
# For (2) and (3), per runtime: p50 and each value of the client's time (curl time_total of
# the sync invoke), and the medians of what the agent reported: init (sandbox start or claim,
# runtime boot, handler import) and duration (the handler), with the rest (api, scheduler
# grant, code download, http) as client - init - duration.
#
# Usage: bench/cold.sh   (as root; about 3 minutes with the defaults)
#   BENCH_N=10  FRESCO_RUNTIME_TAG (runtime images fresco/python3:TAG, fresco/provided:TAG,
#   built by runtimes/build.sh; default dev)
# Its own state dir, ports and agent ids: FRESCO_STATE=/work/bench-state-cold, api/scheduler/
# agent 9920/9921/9922, PostgreSQL 5469, agent id bench-cold-agent-1.
set -euo pipefail
FRESCO_STATE="${FRESCO_STATE:-/work/bench-state-cold}"
FRESCO_API_PORT="${FRESCO_API_PORT:-9920}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-9921}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-9922}"
FRESCO_PG_PORT="${FRESCO_PG_PORT:-5469}"
BENCH_AGENT_PREFIX="${BENCH_AGENT_PREFIX:-bench-cold-agent}"
TAG="${FRESCO_RUNTIME_TAG:-dev}"
export FRESCO_RUNTIME_TAG="$TAG"
PY_IMAGE="fresco/python3:$TAG"
PR_IMAGE="fresco/provided:$TAG"
# prewarm_max = prewarm_size: each claim is followed by exactly one refill, which the series
# waits out before the next first invocation (a refill starting a container beside a claim
# takes the same two cores; see docs/benchmarks.md).
BENCH_AGENT_CONF="prewarm_runtimes = python=$PY_IMAGE, provided=$PR_IMAGE
prewarm_size = 2
prewarm_max = 2
prewarm_memory_mb = 128"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${BENCH_N:-10}"
PROJECT="bench-cold"
TOKEN="bench:$PROJECT:member"
AGENT_URL="http://127.0.0.1:$FRESCO_AGENT_PORT"
AGENT_ID="$BENCH_AGENT_PREFIX-1"
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
    bench_stop
}
trap cleanup EXIT

# build_static: the std-only static provided bootstrap of bench/warm.sh, zipped; prints the path.
build_static() {
    local dir="$WORK/static" zip="$WORK/provided-static-hello.zip"
    mkdir -p "$dir"
    rustc --edition 2021 -O -C panic=abort -C strip=symbols -C target-feature=+crt-static \
        --target x86_64-unknown-linux-gnu -o "$dir/bootstrap" \
        "$FRESCO_ROOT/tests/functions/provided-static-hello/main.rs" || die "cannot compile the bootstrap"
    (cd "$dir" && zip -q "$zip" bootstrap)
    echo "$zip"
}

# build_python: tests/functions/python-hello, zipped; prints the path.
build_python() {
    local zip="$WORK/python-hello.zip"
    (cd "$FRESCO_ROOT/tests/functions/python-hello" && zip -q "$zip" main.py)
    echo "$zip"
}

# create NAME RUNTIME HANDLER ZIP: a function of 128 MB (replacing one of that name).
create() {
    curl -sS -o /dev/null -X DELETE -H "X-Auth-Token: $TOKEN" "$API/v1/functions/$1"
    curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" \
        -F "metadata={\"name\": \"$1\", \"runtime\": \"$2\", \"handler\": \"$3\", \"memory_mb\": 128};type=application/json" \
        -F "package=@$4" "$API/v1/functions" || die "cannot create function $1"
}

# ready IMAGE: ready pre-warmed sandboxes of IMAGE (128 MB) on the agent.
ready() {
    curl -fsS "$AGENT_URL/healthcheck" | jq -r --arg i "$1" '[.prewarmed[] | select(.image == $i and .memory_mb == 128) | .ready] | add // 0'
}

# at_least IMAGE COUNT: whether the pool of IMAGE holds COUNT ready sandboxes.
at_least() {
    [ "$(ready "$1")" -ge "$2" ]
}

# first_call NAME: invokes NAME once; prints "client_ms start execution_id".
first_call() {
    local out ms start id
    out=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{time_total}' -H "X-Auth-Token: $TOKEN" \
        -H 'Content-Type: application/json' -d '{"name": "bench"}' "$API/v1/functions/$1/invoke") \
        || die "invoking $1 failed"
    grep -q '^HTTP/1.1 200' "$WORK/headers" || die "invoking $1: $(head -n 1 "$WORK/headers") $(cat "$WORK/body")"
    ms=$(awk -v t="$out" 'BEGIN { printf "%.1f", t * 1000 }')
    start=$(awk -F': ' 'tolower($1) == "x-execution-cold" { print $2 }' "$WORK/headers" | tr -d '\r')
    id=$(awk -F': ' 'tolower($1) == "x-execution-id" { print $2 }' "$WORK/headers" | tr -d '\r')
    echo "$ms $start $id"
}

# record ID FIELD: a number from the execution's record (written off the path: waits for it).
record() {
    local value
    for _ in $(seq 1 100); do
        value=$(curl -fsS -H "X-Auth-Token: $TOKEN" "$API/v1/executions/$1" 2>/dev/null | jq -r ".execution.$2 // empty")
        [ -n "$value" ] && { echo "$value"; return 0; }
        sleep 0.1
    done
    die "execution $1 has no $2"
}

# series LABEL PREFIX RUNTIME HANDLER ZIP IMAGE WANT: BENCH_N first invocations of new
# functions PREFIX-1..N; with WANT=prewarmed the pool is refilled before each one.
series() {
    local label=$1 prefix=$2 runtime=$3 handler=$4 zip=$5 image=$6 want=$7 i line ms start id
    local clients="" inits="" durations="" rests="" each="" init duration
    for i in $(seq 1 "$N"); do create "$prefix-$i" "$runtime" "$handler" "$zip"; done
    for i in $(seq 1 "$N"); do
        # A full pool: the last claim's refill is over.
        [ "$want" = prewarmed ] && wait_for 60 "a full $image pool" at_least "$image" 2
        line=$(first_call "$prefix-$i")
        read -r ms start id <<<"$line"
        [ "$start" = "$want" ] || die "$prefix-$i started '$start', not '$want'"
        init=$(record "$id" init_duration_ms)
        duration=$(record "$id" duration_ms)
        clients+="$ms"$'\n'
        inits+="$init"$'\n'
        durations+="$duration"$'\n'
        rests+=$(awk -v c="$ms" -v i="$init" -v d="$duration" 'BEGIN { printf "%.1f", c - i - d }')$'\n'
        each+=" $ms"
    done
    out "$label n=$N p50_ms=$(printf '%s' "$clients" | median) init_p50_ms=$(printf '%s' "$inits" | median) duration_p50_ms=$(printf '%s' "$durations" | median) rest_p50_ms=$(printf '%s' "$rests" | median) $(machine)"
    out "  $label client_ms:$each"
}

# sandbox_memory KIND IMAGE: RSS and cgroup memory of one ready pre-warmed sandbox of KIND.
sandbox_memory() {
    local id rss usage
    id=$("$FRESCO_DOCKER" ps -q --no-trunc --filter "label=fresco.agent=$AGENT_ID" --filter "label=fresco.prewarm=$1" | head -n 1)
    [ -n "$id" ] || die "no pre-warmed $1 sandbox"
    rss=$(while read -r pid; do awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null; done \
        <"/sys/fs/cgroup/memory/docker/$id/cgroup.procs" | awk '{ s += $1 } END { printf "%.1f", s / 1024 }')
    usage=$(awk '{ printf "%.1f", $1 / 1048576 }' "/sys/fs/cgroup/memory/docker/$id/memory.usage_in_bytes" 2>/dev/null || echo nan)
    out "idle pre-warmed $1 sandbox ($2, frozen: $(cat "/sys/fs/cgroup/freezer/docker/$id/freezer.state" 2>/dev/null)): rss_mb=$rss cgroup_usage_mb=$usage (the pool holds 128 MB of capacity per sandbox)"
}

# --- the run ---------------------------------------------------------------------------------

bench_start 1
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    (cd "$FRESCO_ROOT" && cargo build -q --release -p fresco-agent --example bare_container) \
        || die "cannot build agent/examples/bare_container.rs"
fi
BARE="$FRESCO_TARGET/release/examples/bare_container"
started=$SECONDS
out "== bench/cold.sh $(date -u +%FT%TZ) $(git -C "$FRESCO_ROOT" rev-parse --short HEAD) images $PY_IMAGE $PR_IMAGE $(machine)"
for spec in "cold-python $PY_IMAGE python" "cold-provided $PR_IMAGE provided"; do
    read -r name image kind <<<"$spec"
    curl -sS -o /dev/null -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        -d "{\"name\": \"$name\", \"image\": \"$image\", \"kind\": \"$kind\"}" "$API/v1/runtimes"
done
STATIC=$(build_static)
PYZIP=$(build_python)
wait_for 60 "the pools to fill" bash -c "[ \"\$(curl -fsS $AGENT_URL/healthcheck | jq '[.prewarmed[].ready] | add')\" -ge 4 ]"
# The agent's first heartbeat registers it with the scheduler.
sleep 3

out "-- (1) the idle cost of a pre-warmed sandbox"
sandbox_memory python "$PY_IMAGE"
sandbox_memory provided "$PR_IMAGE"

out "-- (2) first invocations from a pre-warmed sandbox (client = curl time_total of the sync invoke; init/duration from the execution record)"
series "prewarmed-provided" pre-static cold-provided bootstrap "$STATIC" "$PR_IMAGE" prewarmed
series "prewarmed-python" pre-python cold-python main.handler "$PYZIP" "$PY_IMAGE" prewarmed

out "-- (3) first invocations with the pools off (agent restarted without prewarm_runtimes)"
stop_pidfile "$FRESCO_STATE/run/fresco-agent-1.pid" fresco-agent-1
printf 'prewarm_runtimes =\n' >>"$FRESCO_ETC/agent-1.conf"
stack_run fresco-agent-1 "$(stack_bin fresco-agent)" --config-file "$FRESCO_ETC/agent-1.conf"
wait_for 30 "fresco-agent-1" curl -fsS "$AGENT_URL/healthcheck"
sleep 3
series "cold-provided" cold-static cold-provided bootstrap "$STATIC" "$PR_IMAGE" cold
series "cold-python" cold-python cold-python main.handler "$PYZIP" "$PY_IMAGE" cold

out "-- (4) the reference: bare bollard create+start+wait+remove (/bin/true, a 128 MB function's settings)"
out "command: $BARE $PR_IMAGE $N"
out "$("$BARE" "$PR_IMAGE" "$N") $(machine)"
out "== done in $((SECONDS - started)) s"
