#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# What a hook costs the caller (issue 14: "hooks add one warm invocation each and nothing
# more"), against a stack of its own (api, scheduler, one agent; see bench/lib.sh). The
# function is tests/functions/provided-static-hello (a static, std-only Rust `provided`
# bootstrap answering {"hello":"world"}); the hooks' functions are the same program answering
# {"action":"allow"} (the pre hook) and {"hello":"world"} (the post hook, whose answer is
# ignored). Prints, in one run, the sequential p50/p99 on one keep-alive connection of:
#   (1) the function without hooks (a plain warm invocation);
#   (2) the same with one pre hook attached (two warm invocations in series per call);
#   (3) the same with one post hook attached instead (it runs after the answer);
# then the extra p50 per hook next to the plain warm invocation's p50: the goal is that a pre
# hook adds about one warm invocation and a post hook about nothing.
# Each figure is the median of BENCH_REPEAT runs; every line carries the load average.
#
# Usage: bench/hooks.sh   (as root; a few minutes with the defaults)
#   BENCH_REPEAT=3 BENCH_SEQ_N=2000
# Its own state dir, ports and agent ids, so that it can run beside the other bench scripts:
#   FRESCO_STATE=/work/bench-state-hooks, api/scheduler/agent 9930/9931/9932, PostgreSQL 5479,
#   agent id bench-hooks-agent-1 (all overridable in the environment).
set -euo pipefail
FRESCO_STATE="${FRESCO_STATE:-/work/bench-state-hooks}"
FRESCO_API_PORT="${FRESCO_API_PORT:-9930}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-9931}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-9932}"
FRESCO_PG_PORT="${FRESCO_PG_PORT:-5479}"
BENCH_AGENT_PREFIX="${BENCH_AGENT_PREFIX:-bench-hooks-agent}"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SEQ_N="${BENCH_SEQ_N:-2000}"
PY="$(command -v /usr/bin/python3 || command -v python3)"
PROJECT="bench-hooks"
TOKEN="bench:$PROJECT:member"
OWNER="owner:$PROJECT:admin"
EVENT='{"name": "bench"}'
FUNCTION_SRC="$FRESCO_ROOT/tests/functions/provided-static-hello/main.rs"
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
    bench_stop
}
trap cleanup EXIT

# build_function NAME ANSWER: the static bootstrap answering ANSWER (a JSON text), zipped as a
# `provided` code package; prints the zip's path (as bench/warm.sh builds it).
build_function() {
    local dir="$WORK/$1" zip="$WORK/$1.zip" src="$WORK/$1.rs"
    mkdir -p "$dir"
    # The answer is one constant of the source: `const ANSWER: &[u8] = br#"..."#;`.
    sed "s|^const ANSWER: &\[u8\] = br#\".*\"#;|const ANSWER: \&[u8] = br#\"$2\"#;|" "$FUNCTION_SRC" >"$src"
    grep -qF "br#\"$2\"#" "$src" || die "cannot set the answer of $1"
    rustc --edition 2021 -O -C panic=abort -C strip=symbols -C target-feature=+crt-static \
        --target x86_64-unknown-linux-gnu -o "$dir/bootstrap" "$src" \
        || die "cannot compile $1"
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

# attach KIND FUNCTION: attaches a hook as the project's admin; prints its id.
attach() {
    api POST /v1/hooks "$OWNER" "{\"kind\": \"$1\", \"function\": \"$2\"}" \
        | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["hook"]["id"])'
}

detach() {
    api DELETE "/v1/hooks/$1" "$OWNER" >/dev/null
}

# seq_median LABEL: BENCH_REPEAT runs of bench/seq.py invoke (one keep-alive connection), each
# printed; sets P50 and P99 to the medians.
seq_median() {
    local label=$1 i line p50s="" p99s=""
    out "command: bench/seq.py invoke $INVOKE $TOKEN '$EVENT' $SEQ_N"
    for i in $(seq 1 "$BENCH_REPEAT"); do
        line="$label#$i $("$PY" "$BENCH_DIR/seq.py" invoke "$INVOKE" "$TOKEN" "$EVENT" "$SEQ_N") $(machine)"
        out "  $line"
        p50s+="$(field p50_ms "$line")"$'\n'
        p99s+="$(field p99_ms "$line")"$'\n'
    done
    P50=$(printf '%s' "$p50s" | median)
    P99=$(printf '%s' "$p99s" | median)
    out "$label median: p50_ms=$P50 p99_ms=$P99 $(machine)"
}

bench_start 1
ensure_runtimes
create hello-static "$(build_function hello '{"hello":"world"}')"
create guard-static "$(build_function guard '{"action":"allow"}')"
create audit-static "$(build_function audit '{"hello":"world"}')"
INVOKE="$API/v1/functions/hello-static/invoke"
# Warm every function (and a grant for each) before measuring.
for f in hello-static guard-static audit-static; do
    api POST "/v1/functions/$f/invoke" "$TOKEN" "$EVENT" >/dev/null
done

seq_median "no-hook"
NONE=$P50
PRE=$(attach pre guard-static)
seq_median "pre-hook"
WITH_PRE=$P50
detach "$PRE"
POST=$(attach post audit-static)
seq_median "post-hook"
WITH_POST=$P50
detach "$POST"
# The post hook's own executions: every invocation of (3) ran it once.
sleep 2
out "post hook executions recorded: $(pg_psql -d fresco -tAc \
    "SELECT count(*) FROM executions e JOIN functions f ON f.id = e.function_id WHERE f.name = 'audit-static'")"

extra() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'
}
out "summary: plain warm invocation p50_ms=$NONE;" \
    "pre hook adds p50_ms=$(extra "$WITH_PRE" "$NONE") (one more warm invocation: $NONE);" \
    "post hook adds p50_ms=$(extra "$WITH_POST" "$NONE") (it runs after the answer) $(machine)"
