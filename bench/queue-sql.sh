#!/usr/bin/env bash
# The async queue's SQL, measured with pgbench against a scratch database (created from
# migrations/, dropped on exit) on a running PostgreSQL:
#   1. enqueue throughput: the plain insert, with the code foreign key of the faults_data
#      migration (what the API does while its QueueGauge spares the count), and with an exact
#      count of the project's queue before each insert (what the queued_executions quota would
#      cost without the gauge);
#   2. one claim's latency with a 10,000-row backlog in one project and 5 rows in another: the
#      fair per-project claim (store/src/queue.rs) and, for comparison, the former
#      oldest-first window (which never reaches the second project while the first's oldest
#      rows cannot be placed).
#
# Usage: bench/queue-sql.sh   (about 2 minutes)
#   BENCH_DB_URL   a PostgreSQL URL whose role may CREATE DATABASE
#                  (default: FRESCO_TEST_DATABASE_URL, else the tools/lib/postgres.sh one)
#   BENCH_CLIENTS=8 BENCH_SECONDS=10 BENCH_REPEAT=3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
URL="${BENCH_DB_URL:-${FRESCO_TEST_DATABASE_URL:-postgresql://fresco:fresco-dev@127.0.0.1:5439/fresco}}"
CLIENTS="${BENCH_CLIENTS:-8}"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
REPEAT="${BENCH_REPEAT:-3}"
PGBENCH="$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)"
DB="fresco_bench_queue_$$"
SCRATCH="${URL%/*}/$DB"
WORK="$(mktemp -d)"

cleanup() {
    psql -q "$URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

load() { cut -d' ' -f1 /proc/loadavg; }

psql -q "$URL" -c "CREATE DATABASE $DB" >/dev/null
for migration in "$ROOT"/migrations/*/up.sql; do
    psql -q -v ON_ERROR_STOP=1 "$SCRATCH" -f "$migration" >/dev/null
done
psql -q "$SCRATCH" -c "INSERT INTO code_packages VALUES ('p', 'abc', 'zip', 1, '\\x00')" >/dev/null

INSERT="INSERT INTO executions (id, project_id, function_id, status, is_async, input, input_size, spec, memory_mb)
  VALUES (gen_random_uuid(), 'p', '00000000-0000-0000-0000-000000000001', 'queued', true, '\\x7b7d', 2,
  '{\"code_sha256\": \"abc\", \"project_id\": \"p\", \"memory_mb\": 128, \"timeout_s\": 3}', 128);"
printf '%s\n' "$INSERT" >"$WORK/insert.sql"
printf '%s\n%s\n' \
    "SELECT count(*) FROM (SELECT 1 FROM executions WHERE project_id = 'p' AND status = 'queued' LIMIT 10000) q;" \
    "$INSERT" >"$WORK/count-insert.sql"

FK="ALTER TABLE executions ADD CONSTRAINT executions_code_fkey FOREIGN KEY (project_id, code_sha256) REFERENCES code_packages (project_id, sha256) NOT VALID"
# tps VARIANT SETUP SCRIPT: one run from an empty queue; prints the transactions per second.
tps() {
    psql -q "$SCRATCH" -c "TRUNCATE executions" -c "$2" >/dev/null
    "$PGBENCH" -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -f "$3" "$SCRATCH" 2>/dev/null |
        awk '/^tps/ {print $3}'
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "== enqueue: $CLIENTS clients, ${SECONDS_PER_RUN}s per run, median of $REPEAT (each run starts from an empty queue)"
declare -A runs
for _ in $(seq "$REPEAT"); do
    runs[plain]+="$(tps plain "ALTER TABLE executions DROP CONSTRAINT IF EXISTS executions_code_fkey" "$WORK/insert.sql") "
    runs[fk]+="$(tps fk "$FK" "$WORK/insert.sql") "
    runs[count]+="$(tps count "SELECT 1" "$WORK/count-insert.sql") "
done
for variant in plain fk count; do
    # shellcheck disable=SC2086 # word splitting of the run list is the point
    printf '%s\n' ${runs[$variant]} | median | {
        read -r median
        case $variant in
            plain) label="insert without the code foreign key" ;;
            fk) label="insert with the code foreign key" ;;
            count) label="exact queue count + insert (with the key)" ;;
        esac
        printf 'enqueue %-42s %8.0f tx/s  (runs: %s) load %s\n' "$label:" "$median" "${runs[$variant]% }" "$(load)"
    }
done
final_rows="$(psql -Atq "$SCRATCH" -c "SELECT count(*) FROM executions")"
echo "  (the counted queue grew to $final_rows rows by the end of the last run)"

echo "== claim: project a has 10,000 queued rows (older), project b has 5; 2,000 claims each, rolled back"
psql -q "$SCRATCH" -c "TRUNCATE executions" \
    -c "INSERT INTO executions (id, project_id, function_id, status, is_async, input, input_size, spec, memory_mb, created_at)
        SELECT gen_random_uuid(), 'a', gen_random_uuid(), 'queued', true, '\\x7b7d', 2, '{}', 128,
               now() - interval '1 hour' + i * interval '1 ms' FROM generate_series(1, 10000) i" \
    -c "INSERT INTO executions (id, project_id, function_id, status, is_async, input, input_size, spec, memory_mb)
        SELECT gen_random_uuid(), 'b', gen_random_uuid(), 'queued', true, '\\x7b7d', 2, '{}', 128
        FROM generate_series(1, 5)" \
    -c "ANALYZE executions" >/dev/null
cat >"$WORK/fair.sql" <<'SQL'
BEGIN;
WITH RECURSIVE p(project_id) AS (
  SELECT (SELECT project_id FROM executions WHERE status = 'queued' AND project_id > '' ORDER BY project_id LIMIT 1)
  UNION ALL
  SELECT (SELECT project_id FROM executions WHERE status = 'queued' AND project_id > p.project_id ORDER BY project_id LIMIT 1)
  FROM p WHERE p.project_id IS NOT NULL)
SELECT project_id FROM p WHERE project_id IS NOT NULL LIMIT 32;
SELECT e.id FROM unnest(ARRAY['a', 'b']::text[]) AS p(project_id) CROSS JOIN LATERAL (
  SELECT x.id, x.spec, x.input, x.attempts, x.created_at FROM executions x
  WHERE x.project_id = p.project_id AND x.status = 'queued' AND x.is_async
  ORDER BY x.created_at LIMIT 16 FOR UPDATE OF x SKIP LOCKED) e;
ROLLBACK;
SQL
cat >"$WORK/window.sql" <<'SQL'
BEGIN;
SELECT id, project_id, spec, input, attempts FROM executions
WHERE status = 'queued' AND is_async ORDER BY created_at LIMIT 32 FOR UPDATE SKIP LOCKED;
ROLLBACK;
SQL
claim() {
    "$PGBENCH" -n -c 1 -t 2000 -f "$WORK/$1.sql" "$SCRATCH" 2>/dev/null | awk '/latency average/ {print $4}'
}
printf 'claim %-66s %6s ms  load %s\n' "fair (both projects' oldest rows; 2 statements):" "$(claim fair)" "$(load)"
# The former window needs the former index by creation time alone, which the migration drops:
# with it, the planner reads a project's queue through it (see the third line).
psql -q "$SCRATCH" -c "CREATE INDEX bench_queue_by_time ON executions (created_at) WHERE status = 'queued'" \
    -c "ANALYZE executions" >/dev/null
printf 'claim %-66s %6s ms  load %s\n' "former window (32 oldest rows, all of project a; never reaches b):" "$(claim window)" "$(load)"
printf 'claim %-66s %6s ms  load %s\n' "fair, had the time index been kept:" "$(claim fair)" "$(load)"
