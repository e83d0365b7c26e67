#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# REST API benchmarks on loopback, against a stack of its own (see bench/lib.sh for ports and
# state): GET /v1/functions/{id} over 10,000 seeded functions, POST /v1/functions (unique
# names), and keyset list paging at 1,000 and 100,000 rows. Every figure is printed with its
# command, the machine's load average, and the median of BENCH_REPEAT runs.
#
# Usage: bench/api.sh   (as root; about 3-4 minutes including the build check and seeding)
#   BENCH_DURATION=10s BENCH_THREADS=2 BENCH_CONNECTIONS=32 BENCH_REPEAT=3
#   BENCH_PARTS="read write list"   the parts to run
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${BENCH_DURATION:-10s}"
THREADS="${BENCH_THREADS:-2}"
CONNS="${BENCH_CONNECTIONS:-32}"
PY="$(command -v /usr/bin/python3 || command -v python3)"
PARTS=" ${BENCH_PARTS:-read write list} "
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
    bench_stop
}
trap cleanup EXIT

bench_start 0

# seed PROJECT N WITH_CODE: exactly N functions in PROJECT, inserted in one SQL statement
# (created_at 1 ms apart, so the paging order is the insertion order). WITH_CODE=1 gives each
# a code package (one shared row), like functions created from a zip.
seed() {
    local project=$1 n=$2 with_code=$3 have code="NULL"
    have=$(sql "SELECT count(*) FROM functions WHERE project_id = '$project'")
    [ "$have" = "$n" ] && return 0
    say "seeding $n functions in project $project"
    sql "DELETE FROM functions WHERE project_id = '$project'"
    if [ "$with_code" = 1 ]; then
        sql "INSERT INTO code_packages (project_id, sha256, format, size, content)
             VALUES ('$project', repeat('ab', 32), 'zip', 4, '\\x504b0506') ON CONFLICT DO NOTHING"
        code="repeat('ab', 32)"
    fi
    sql "INSERT INTO functions (id, project_id, name, image, handler, memory_mb, timeout_s, code_sha256, created_at, updated_at)
         SELECT gen_random_uuid(), '$project', 'f-' || g, 'fresco/python3:dev', 'main.handler', 128, 3, $code,
                timestamptz '2026-01-01' + g * interval '1 ms', timestamptz '2026-01-01' + g * interval '1 ms'
         FROM generate_series(1, $n) g"
}
started=$SECONDS
seed bench-read 10000 0
seed bench-page-1k 1000 1
seed bench-page-100k 100000 1
seed bench-page-1k-image 1000 0
sql "ANALYZE functions" >/dev/null
out "== bench/api.sh $(date -u +%FT%TZ) $(git -C "$FRESCO_ROOT" rev-parse --short HEAD) $(machine)"
out "seeded: $(sql "SELECT count(*) FROM functions") functions in the bench database ($((SECONDS - started)) s)"

# --- 1. GET /v1/functions/{id} -------------------------------------------------------------
if [[ $PARTS == *" read "* ]]; then
sql "SELECT id FROM functions WHERE project_id = 'bench-read' ORDER BY random() LIMIT 2000" >"$WORK/ids"
export BENCH_IDS="$WORK/ids" BENCH_PATH_PREFIX="/v1/functions/"
READ_TOKEN="bench:bench-read:member"
wrk -t"$THREADS" -c"$CONNS" -d3s -s "$BENCH_LUA/get_ids.lua" -H "X-Auth-Token: $READ_TOKEN" "$API/" >/dev/null
out "-- GET / (version document: no auth, no database; the HTTP ceiling of this machine)"
wrk_median "get-version-doc" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_LUA/report.lua" "$API/"
out "-- GET /v1/functions/{id}: 2,000 random ids of 10,000, noauth token (target >= 10000 rps at p99 <= 5 ms)"
wrk_median "get-function" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_LUA/get_ids.lua" \
    -H "X-Auth-Token: $READ_TOKEN" "$API/"
out "-- the same at 8 connections (latency at lower concurrency)"
wrk_median "get-function-c8" -t"$THREADS" -c8 -d"$DURATION" --latency -s "$BENCH_LUA/get_ids.lua" \
    -H "X-Auth-Token: $READ_TOKEN" "$API/"

fi

# --- 2. POST /v1/functions ---------------------------------------------------------------
if [[ $PARTS == *" write "* ]]; then
export BENCH_BODY='{"name": "%NAME%", "image": "fresco/python3:dev"}'
out "-- POST /v1/functions into an empty project (JSON image functions, unique names)"
create_project="bench-create-$(date +%s)"
for i in $(seq 1 "$BENCH_REPEAT"); do
    BENCH_RUN="e$i$RANDOM" wrk_once "post-function-empty#$i" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -s "$BENCH_LUA/post_unique.lua" -H "X-Auth-Token: bench:$create_project-$i:member" "$API/v1/functions"
done >"$WORK/post-empty"
while read -r l; do out "  $l"; done <"$WORK/post-empty"
out "command: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s bench/lua/post_unique.lua -H 'X-Auth-Token: bench:<new project>:member' $API/v1/functions (BENCH_BODY='$BENCH_BODY')"
mapfile -t lines <"$WORK/post-empty"
summarize "post-function-empty" "${lines[@]}"
out "created: $(sql "SELECT count(*) FROM functions WHERE project_id LIKE '$create_project-%'") functions"
sql "DELETE FROM functions WHERE project_id LIKE 'bench-create-%'"
out "-- POST /v1/functions into a project that already holds 100,000 functions"
for i in $(seq 1 "$BENCH_REPEAT"); do
    BENCH_RUN="f$i$RANDOM" wrk_once "post-function-100k#$i" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -s "$BENCH_LUA/post_unique.lua" -H "X-Auth-Token: bench:bench-page-100k:member" "$API/v1/functions"
done >"$WORK/post-full"
while read -r l; do out "  $l"; done <"$WORK/post-full"
mapfile -t lines <"$WORK/post-full"
summarize "post-function-100k" "${lines[@]}"
# Put the 100k project back to exactly 100,000 rows for the paging figures (after the
# creations still queued behind the project lock when wrk stopped).
sleep 5
sql "DELETE FROM functions WHERE project_id = 'bench-page-100k' AND name LIKE 'b%'"

fi

# --- 3. list paging ------------------------------------------------------------------------
if [[ $PARTS == *" list "* ]]; then
# marker_at PROJECT ROW: the id of the ROW-th function in paging order.
marker_at() {
    sql "SELECT id FROM functions WHERE project_id = '$1' ORDER BY created_at, id OFFSET $(($2 - 1)) LIMIT 1"
}
out "-- GET /v1/functions?limit=100&marker=<deep marker>: the last page of 1,000 vs of 100,000 rows, one connection (latency = service time)"
m1k=$(marker_at bench-page-1k 900)
m100k=$(marker_at bench-page-100k 99900)
m1ki=$(marker_at bench-page-1k-image 900)
# Interleaved (1k, 100k, 1k, 100k, ...) so each pair sees the same machine load; the ratio
# is taken per pair, and its median reported.
list_args=(-t1 -c1 -d"$DURATION" --latency -s "$BENCH_LUA/report.lua")
out "command: wrk ${list_args[*]} -H 'X-Auth-Token: bench:<project>:member' '$API/v1/functions?limit=100&marker=<id of row 900 | 99,900>'"
l1=() l100=() ratios=""
for i in $(seq 1 "$BENCH_REPEAT"); do
    a=$(wrk_once "list-deep-1k#$i" "${list_args[@]}" -H "X-Auth-Token: bench:bench-page-1k:member" "$API/v1/functions?limit=100&marker=$m1k")
    b=$(wrk_once "list-deep-100k#$i" "${list_args[@]}" -H "X-Auth-Token: bench:bench-page-100k:member" "$API/v1/functions?limit=100&marker=$m100k")
    out "  $a"
    out "  $b"
    l1+=("$a")
    l100+=("$b")
    ratios+="$(awk -v a="$(field p50_ms "$b")" -v b="$(field p50_ms "$a")" 'BEGIN { printf "%.3f", a / b }')"$'\n'
done
summarize "list-deep-1k" "${l1[@]}"
summarize "list-deep-100k" "${l100[@]}"
out "list-deep p50 ratio 100k/1k per pair: $(printf '%s' "$ratios" | paste -sd, -) median=$(printf '%s' "$ratios" | median)"
out "-- the same page of 1,000 functions without code packages (no per-row code lookup)"
wrk_median "list-deep-1k-nocode" "${list_args[@]}" -H "X-Auth-Token: bench:bench-page-1k-image:member" "$API/v1/functions?limit=100&marker=$m1ki"
out "-- the keyset query alone (EXPLAIN ANALYZE in PostgreSQL, no HTTP): the index range scan after the deep marker"
for p in bench-page-1k bench-page-100k; do
    m=$([ "$p" = bench-page-1k ] && echo "$m1k" || echo "$m100k")
    out "sql-keyset $p $(sql "EXPLAIN ANALYZE SELECT * FROM functions WHERE project_id = '$p' AND (created_at, id) > (SELECT created_at, id FROM functions WHERE id = '$m') ORDER BY created_at, id LIMIT 101" | grep -o 'Execution Time: .*') $(machine)"
done
out "-- following next links page by page (one keep-alive connection): all of 1,000 and of 100,000 rows"
out "command: bench/seq.py walk '$API/v1/functions?limit=100' bench:<project>:member"
for i in $(seq 1 "$BENCH_REPEAT"); do
    out "walk-1k#$i $("$PY" "$BENCH_DIR/seq.py" walk "$API/v1/functions?limit=100" "bench:bench-page-1k:member") $(machine)"
    out "walk-100k#$i $("$PY" "$BENCH_DIR/seq.py" walk "$API/v1/functions?limit=100" "bench:bench-page-100k:member") $(machine)"
done
fi
out "== done in $((SECONDS - started)) s"
