#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# What a shadow version costs the caller (issue 14): sequential invocations through an alias
# without a shadow and through one whose shadow version gets a copy of every invocation
# (shadow_percent 100), alternated round by round in one run, against a stack of its own (api,
# scheduler, one agent; see bench/lib.sh). The function is tests/functions/provided-static-hello
# (as bench/warm.sh), versions 1 and 2 of it; alias `plain` -> 1, alias `shadowed` -> 1 with
# shadow 2. Prints each round's p50/p99 of both (bench/seq.py on one keep-alive connection),
# the medians over the rounds, their difference (shadowed - plain) and ratio, and the
# comparison's counts at the end (the copies did run and were compared).
#
# Usage: bench/shadow.sh   (as root)
#   BENCH_ROUNDS=6 BENCH_SEQ_N=1000
# Its own state dir, ports, PostgreSQL and agent id, so that it can run beside the others:
#   FRESCO_STATE=/work/bench-state-shadow, api/scheduler/agent 9920/9921/9922, PostgreSQL 5469,
#   agent id bench-shadow-agent-1, CARGO_TARGET_DIR=<repo>/target/bench.
set -euo pipefail
FRESCO_STATE="${FRESCO_STATE:-/work/bench-state-shadow}"
FRESCO_API_PORT="${FRESCO_API_PORT:-9920}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-9921}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-9922}"
FRESCO_PG_PORT="${FRESCO_PG_PORT:-5469}"
BENCH_AGENT_PREFIX="${BENCH_AGENT_PREFIX:-bench-shadow-agent}"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/bench}"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${BENCH_ROUNDS:-6}"
SEQ_N="${BENCH_SEQ_N:-1000}"
PY="$(command -v /usr/bin/python3 || command -v python3)"
PROJECT="bench-shadow"
TOKEN="bench:$PROJECT:member"
EVENT='{"name": "bench"}'
FUNCTION_SRC="$FRESCO_ROOT/tests/functions/provided-static-hello/main.rs"
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
    bench_stop
}
trap cleanup EXIT

# build_function: the static bootstrap zipped as a `provided` package (as bench/warm.sh).
build_function() {
    local dir="$WORK/pkg" zip="$WORK/provided-static-hello.zip"
    mkdir -p "$dir"
    rustc --edition 2021 -O -C panic=abort -C strip=symbols -C target-feature=+crt-static \
        --target x86_64-unknown-linux-gnu -o "$dir/bootstrap" "$FUNCTION_SRC" \
        || die "cannot compile $FUNCTION_SRC"
    (cd "$dir" && zip -q "$zip" bootstrap)
    echo "$zip"
}

# seq_line LABEL ALIAS: one sequential run through the alias; prints the seq.py line.
seq_line() {
    echo "$1 $("$PY" "$BENCH_DIR/seq.py" invoke "$API/v1/functions/hello/invoke?alias=$2" \
        "$TOKEN" "$EVENT" "$SEQ_N") $(machine)"
}

bench_start 1
ensure_runtimes
out "== bench/shadow.sh $(date -u +%FT%TZ) $(git -C "$FRESCO_ROOT" rev-parse --short HEAD) $(machine)"
ZIP=$(build_function)
curl -sS -o /dev/null -X DELETE -H "X-Auth-Token: $TOKEN" "$API/v1/functions/hello"
curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" \
    -F "metadata={\"name\": \"hello\", \"runtime\": \"provided\", \"handler\": \"bootstrap\"};type=application/json" \
    -F "package=@$ZIP" "$API/v1/functions" || die "cannot create the function"
# No limit on queued copies: every copy is queued and compared (none skipped).
api PUT "/v1/quotas/$PROJECT" "$ADMIN_TOKEN" '{"queued_executions": -1}' >/dev/null
api POST /v1/functions/hello/versions "$TOKEN" '{}' >/dev/null
api POST /v1/functions/hello/versions "$TOKEN" '{}' >/dev/null
api POST /v1/functions/hello/aliases "$TOKEN" '{"name": "plain", "version": 1}' >/dev/null
api POST /v1/functions/hello/aliases "$TOKEN" \
    '{"name": "shadowed", "version": 1, "shadow_version": 2, "shadow_percent": 100}' >/dev/null
wait_for 60 "the first invocation (agent registration)" curl -fsS -o /dev/null \
    -H "X-Auth-Token: $TOKEN" -d "$EVENT" "$API/v1/functions/hello/invoke?alias=plain"
# Warm both paths (and the shadow version's sandbox).
"$PY" "$BENCH_DIR/seq.py" invoke "$API/v1/functions/hello/invoke?alias=plain" "$TOKEN" "$EVENT" 200 >/dev/null
"$PY" "$BENCH_DIR/seq.py" invoke "$API/v1/functions/hello/invoke?alias=shadowed" "$TOKEN" "$EVENT" 200 >/dev/null

out "command: bench/seq.py invoke $API/v1/functions/hello/invoke?alias={plain,shadowed} '$TOKEN' '$EVENT' $SEQ_N, alternated, $ROUNDS rounds"
plain_p50="" plain_p99="" shadow_p50="" shadow_p99=""
for i in $(seq 1 "$ROUNDS"); do
    line=$(seq_line "plain#$i" plain)
    out "  $line"
    plain_p50+="$(field p50_ms "$line")"$'\n'
    plain_p99+="$(field p99_ms "$line")"$'\n'
    line=$(seq_line "shadowed#$i" shadowed)
    out "  $line"
    shadow_p50+="$(field p50_ms "$line")"$'\n'
    shadow_p99+="$(field p99_ms "$line")"$'\n'
done
p50a=$(printf '%s' "$plain_p50" | median)
p99a=$(printf '%s' "$plain_p99" | median)
p50b=$(printf '%s' "$shadow_p50" | median)
p99b=$(printf '%s' "$shadow_p99" | median)
out "plain median: p50_ms=$p50a p99_ms=$p99a"
out "shadowed median: p50_ms=$p50b p99_ms=$p99b"
out "$(awk -v a="$p50a" -v b="$p50b" -v c="$p99a" -v d="$p99b" 'BEGIN {
    printf "shadow cost: p50 %+.3f ms (ratio %.3f), p99 %+.3f ms (ratio %.3f)", b - a, b / a, d - c, d / c }')"
# The copies run after their callers were answered: wait for the queue to drain, then show
# what was compared.
for _ in $(seq 1 120); do
    left=$(pg_psql -d fresco -tAc "SELECT count(*) FROM executions WHERE status IN ('queued', 'running')")
    [ "$left" = 0 ] && break
    sleep 1
done
out "comparison: $(api GET /v1/functions/hello/aliases/shadowed/comparison "$TOKEN" \
    | jq -c '.comparison | {same, different, shadow_error, primary_error, skipped}')"
