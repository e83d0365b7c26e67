#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Invocation benchmarks against a stack of its own (api, scheduler, one agent; see bench/lib.sh):
#   (a) warm sequential latency: total, the agent's handler time (x-execution-duration-ms) and
#       their difference (the platform's share), beside no-op baselines on the same connection;
#   (b) throughput at 25 connections, siege and wrk;
#   (c) cold start (first invocation of a new function), python and provided;
#   (d) async: enqueue-to-start at a low rate, then 10,000 async invocations, all completed.
#
# Usage: bench/invoke.sh   (as root; about 5 minutes)
#   BENCH_SEQ_N=2000 BENCH_COLD_N=10 BENCH_ASYNC_N=10000 BENCH_REPEAT=3 BENCH_DURATION=10
#   BENCH_PARTS="a b c d"   the parts to run
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SEQ_N="${BENCH_SEQ_N:-2000}"
COLD_N="${BENCH_COLD_N:-10}"
ASYNC_N="${BENCH_ASYNC_N:-10000}"
DURATION="${BENCH_DURATION:-10}"
PY="$(command -v /usr/bin/python3 || command -v python3)"
PARTS=" ${BENCH_PARTS:-a b c d} "
PROJECT="bench-inv"
TOKEN="bench:$PROJECT:member"
EVENT='{"name": "bench"}'
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
    bench_stop
}
trap cleanup EXIT

bench_start 1
ensure_runtimes
started=$SECONDS
out "== bench/invoke.sh $(date -u +%FT%TZ) $(git -C "$FRESCO_ROOT" rev-parse --short HEAD) $(machine)"

# package DIR: a zip of tests/functions/DIR, printed path.
package() {
    local zip="$WORK/$1.zip"
    [ -f "$zip" ] || (cd "$FRESCO_ROOT/tests/functions/$1" && zip -q -r "$zip" .)
    echo "$zip"
}
# create NAME RUNTIME DIR [HANDLER]: a function from a code directory (replacing one of that name).
create() {
    curl -sS -o /dev/null -X DELETE -H "X-Auth-Token: $TOKEN" "$API/v1/functions/$1"
    curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" \
        -F "metadata={\"name\": \"$1\", \"runtime\": \"$2\", \"handler\": \"${4:-main.handler}\"};type=application/json" \
        -F "package=@$(package "$3")" "$API/v1/functions" || die "cannot create function $1"
}
# pctl P: the P-th percentile of the numbers on stdin.
pctl() {
    sort -g | awk -v p="$1" '{ v[NR] = $1 } END { k = int(p / 100 * NR + 0.5); if (k < 1) k = 1; print v[k] }'
}

create hello python3 python-hello
INVOKE="$API/v1/functions/hello/invoke"
# The agent registers with its first heartbeat (every 2 s): retry until it is placed.
wait_for 60 "the first invocation (agent registration)" curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" -d "$EVENT" "$INVOKE"

# --- (a) warm sequential latency -------------------------------------------------------------
if [[ $PARTS == *" a "* ]]; then
out "-- (a) warm sequential latency, $SEQ_N invocations on one keep-alive connection (target: overhead p50 <= 1 ms, p99 <= 5 ms)"
"$PY" "$BENCH_DIR/seq.py" invoke "$INVOKE" "$TOKEN" "$EVENT" 200 >/dev/null
out "command: bench/seq.py invoke $INVOKE $TOKEN '$EVENT' $SEQ_N"
out "command: bench/seq.py get $API/ $TOKEN $SEQ_N   and   bench/seq.py get $API/v1/functions/hello $TOKEN $SEQ_N"
seq_lines=()
for i in $(seq 1 "$BENCH_REPEAT"); do
    out "  noop-version-doc#$i $("$PY" "$BENCH_DIR/seq.py" get "$API/" "$TOKEN" "$SEQ_N") $(machine)"
    out "  noop-get-function#$i $("$PY" "$BENCH_DIR/seq.py" get "$API/v1/functions/hello" "$TOKEN" "$SEQ_N") $(machine)"
    line="invoke-warm#$i $("$PY" "$BENCH_DIR/seq.py" invoke "$INVOKE" "$TOKEN" "$EVENT" "$SEQ_N") $(machine)"
    out "  $line"
    seq_lines+=("$line")
done
result="invoke-warm median:"
for k in p50_ms p99_ms handler_p50_ms handler_p99_ms overhead_p50_ms overhead_p99_ms; do
    values=""
    for line in "${seq_lines[@]}"; do values+="$(field "$k" "$line")"$'\n'; done
    result+=" $k=$(printf '%s' "$values" | median)"
done
out "$result $(machine)"
fi

# --- (b) throughput --------------------------------------------------------------------------
if [[ $PARTS == *" b "* ]]; then
out "-- (b) throughput at 25 connections, ${DURATION} s per run (target >= 5000 rps)"
export BENCH_BODY="$EVENT"
# Warm-up: enough warm containers for 25 concurrent invocations (their cold starts take
# seconds under load, so two rounds).
for _ in 1 2; do
    wrk -t2 -c25 -d5s -s "$BENCH_LUA/post.lua" -H "X-Auth-Token: $TOKEN" "$INVOKE" >/dev/null
done
cat >"$WORK/siegerc" <<RC
connection = keep-alive
protocol = HTTP/1.1
json_output = true
parser = false
logging = false
show-logfile = false
RC
out "command: siege -R <rc: connection = keep-alive, parser = false> -c 25 -t ${DURATION}S -b -H 'X-Auth-Token: $TOKEN' --content-type application/json '$INVOKE POST $EVENT'"
siege_rates=""
for i in $(seq 1 "$BENCH_REPEAT"); do
    siege -R "$WORK/siegerc" -q -c 25 -t "${DURATION}S" -b -H "X-Auth-Token: $TOKEN" \
        --content-type application/json "$INVOKE POST $EVENT" >"$WORK/siege.out" 2>&1 || true
    rate=$(grep -o '"transaction_rate":[^,]*' "$WORK/siege.out" | tr -dc '0-9.')
    fails=$(grep -o '"failed_transactions":[^,]*' "$WORK/siege.out" | tr -dc '0-9')
    longest=$(grep -o '"longest_transaction":[^,]*' "$WORK/siege.out" | tr -dc '0-9.')
    out "  siege#$i rps=$rate failed=$fails longest_s=$longest $(machine)"
    siege_rates+="$rate"$'\n'
done
out "siege median: rps=$(printf '%s' "$siege_rates" | median) $(machine)"
wrk_median "wrk-invoke" -t2 -c25 -d"${DURATION}s" --latency -s "$BENCH_LUA/post.lua" -H "X-Auth-Token: $TOKEN" "$INVOKE"
out "warm containers after the throughput runs: $("$FRESCO_DOCKER" ps -q --filter "label=fresco.agent=$BENCH_AGENT_PREFIX-1" | wc -l)"
fi

# --- (c) cold start --------------------------------------------------------------------------
# cold RUNTIME DIR HANDLER: COLD_N new functions, each invoked once; prints the times (ms).
cold() {
    local runtime=$1 dir=$2 handler=$3 i name headers times="" handler_times="" cold_count=0
    for i in $(seq 1 "$COLD_N"); do
        name="cold-$runtime-$i"
        create "$name" "$runtime" "$dir" "$handler"
        headers="$WORK/cold.headers"
        t=$(curl -fsS -o /dev/null -D "$headers" -w '%{time_total}' -H "X-Auth-Token: $TOKEN" \
            -H 'Content-Type: application/json' -d "$EVENT" "$API/v1/functions/$name/invoke") || die "cold invocation of $name failed"
        grep -qiE '^x-execution-cold: (cold|prewarmed)' "$headers" && cold_count=$((cold_count + 1))
        times+="$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')"$'\n'
        handler_times+="$(awk -F': ' 'tolower($1) == "x-execution-duration-ms" { print $2 + 0 }' "$headers")"$'\n'
        sleep 0.2
    done
    out "cold-$runtime n=$COLD_N cold=$cold_count p50_ms=$(printf '%s' "$times" | pctl 50) max_ms=$(printf '%s' "$times" | pctl 100) handler_p50_ms=$(printf '%s' "$handler_times" | pctl 50) all_ms=$(printf '%s' "$times" | paste -sd, -) $(machine)"
}
if [[ $PARTS == *" c "* ]]; then
out "-- (c) cold start: $COLD_N new functions per runtime, each invoked once (targets p50: python <= 200 ms, provided <= 150 ms)"
out "command: create cold-<runtime>-<i> from tests/functions/<dir>, then curl -w %{time_total} -d '$EVENT' $API/v1/functions/cold-<runtime>-<i>/invoke"
cold python3 python-hello main.handler
cold provided provided-echo bootstrap
fi

# --- (d) async -------------------------------------------------------------------------------
if [[ $PARTS == *" d "* ]]; then
create hello-async python3 python-hello
fid=$(api GET /v1/functions/hello-async "$TOKEN" | jq -r .function.id)
curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" -d "$EVENT" "$API/v1/functions/hello-async/invoke"
ASYNC="$API/v1/functions/hello-async/invoke?async=true"
# wait_async N DEADLINE_S: until N async executions of the function are finished.
wait_async() {
    local n=$1 deadline=$((SECONDS + $2)) done_count
    while :; do
        done_count=$(sql "SELECT count(*) FROM executions WHERE function_id = '$fid' AND is_async AND finished_at IS NOT NULL")
        [ "$done_count" -ge "$n" ] && return 0
        [ $SECONDS -ge $deadline ] && { warn "only $done_count of $n async executions finished"; return 1; }
        sleep 0.2
    done
}
out "-- (d) async enqueue-to-start at a low rate: 50 invocations 100 ms apart, started_at - created_at from GET /v1/executions"
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" -d "$EVENT" "$ASYNC"
    sleep 0.1
done
wait_async 50 60 || true
api GET "/v1/executions?function_id=$fid&limit=1000" "$TOKEN" >"$WORK/executions.json"
"$PY" - "$WORK/executions.json" >"$WORK/lag" <<'PYEOF'
import json, sys
from datetime import datetime
d = json.load(open(sys.argv[1]))
for e in d["executions"]:
    if e["is_async"] and e["started_at"]:
        c = datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
        s = datetime.fromisoformat(e["started_at"].replace("Z", "+00:00"))
        print("%.3f" % ((s - c).total_seconds() * 1000))
PYEOF
out "async-lag-idle n=$(wc -l <"$WORK/lag") p50_ms=$(pctl 50 <"$WORK/lag") p99_ms=$(pctl 99 <"$WORK/lag") $(machine)"

out "-- (d) $ASYNC_N async invocations: accepted (202) and all completed"
out "command: hey -n $ASYNC_N -c 25 -m POST -T application/json -d '$EVENT' -H 'X-Auth-Token: $TOKEN' '$ASYNC'"
sql "DELETE FROM executions WHERE function_id = '$fid'"
t0=$(date +%s.%N)
hey -n "$ASYNC_N" -c 25 -m POST -T application/json -d "$EVENT" -H "X-Auth-Token: $TOKEN" "$ASYNC" >"$WORK/hey.out" 2>&1
t1=$(date +%s.%N)
accepted=$(awk '/\[202\]/ { print $2 }' "$WORK/hey.out")
accept_rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/hey.out")
out "async-accept n=$ASYNC_N accepted=${accepted:-0} accept_rps=$accept_rps accept_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') status: $(grep -A5 'Status code distribution' "$WORK/hey.out" | grep -o '\[[0-9]*\][^[]*' | tr -s ' \n' ' ') $(machine)"
wait_async "$ASYNC_N" 600 || true
t2=$(date +%s.%N)
stats=$(sql "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status NOT IN ('succeeded', 'queued', 'running')),
        round(extract(epoch FROM max(finished_at) - min(created_at))::numeric, 2),
        round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)))::numeric, 1),
        round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)))::numeric, 1),
        round(avg(attempts)::numeric, 3)
        FROM executions WHERE function_id = '$fid' AND is_async" | tr '|' ' ')
read -r ok bad span lag50 lag99 attempts <<<"$stats"
out "async-burst n=$ASYNC_N succeeded=$ok failed=$bad first_created_to_last_finished_s=$span wall_s=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }') completed_per_s=$(awk -v n="$ok" -v s="$span" 'BEGIN { printf "%.0f", n / s }') enqueue_to_start_p50_ms=$lag50 p99_ms=$lag99 mean_attempts=$attempts $(machine)"
fi
out "== done in $((SECONDS - started)) s"
