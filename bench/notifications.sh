#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# OpenStack notification triggers and the cron pass (issue 13), against a stack of its own
# (api, scheduler; see bench/lib.sh) and a RabbitMQ. Prints, in one run:
#   (1) sustained consumption: BENCH_NOTIFICATIONS notifications (default 10,000) of 100
#       projects, each with 10 notification triggers (1,000 in all, created through the API),
#       each notification matching one trigger, are published into the consumer's durable
#       queue while the scheduler is stopped (raw AMQP publisher: kombu, in the exact
#       oslo.messaging v2 envelope), then the scheduler starts and consumes them; the rate is
#       executions queued per second between the first and the last commit (PostgreSQL's
#       created_at of the executions), with the consumer's batches from /metrics. No agent
#       runs: the executions stay queued, the figure is the consumer's alone;
#   (2) the cron pass's cost per pass with 100, 1,000 and 10,000 cron triggers (inserted with
#       SQL), 10 of them due every second and the others not due, over BENCH_CRON_SECONDS
#       (default 20): the scheduler's own figures (fresco_scheduler_cron_passes_total and
#       fresco_scheduler_cron_pass_microseconds_total; one pass = one fenced transaction);
#   (3) notification -> execution start: an agent starts, the function is warmed, then
#       BENCH_LATENCY_N (default 100) notifications are published with the real oslo.messaging
#       Notifier one every 100 ms, each carrying the time it was handed to the Notifier; the
#       latency is the execution's started_at (the dispatcher claimed it and sends it to the
#       agent) minus that time, p50 and p99 over the series.
#
# Usage: bench/notifications.sh   (as root; about 5 minutes)
#   BENCH_AMQP_URL   a running RabbitMQ to use (e.g. the test one: FRESCO_TEST_AMQP_URL);
#                    without it the script starts tools/lib/rabbitmq.sh under its own state
#                    directory, on port 5693
# Its own state dir, ports and agent ids: FRESCO_STATE=/work/bench-state-notify, api/
# scheduler/agent 9930/9931/9932, PostgreSQL 5479, agent id bench-notify-agent-1; exchange
# bench_nova, queue fresco-bench-notifications.
set -euo pipefail
FRESCO_STATE="${FRESCO_STATE:-/work/bench-state-notify}"
FRESCO_API_PORT="${FRESCO_API_PORT:-9930}"
FRESCO_SCHEDULER_PORT="${FRESCO_SCHEDULER_PORT:-9931}"
FRESCO_AGENT_PORT="${FRESCO_AGENT_PORT:-9932}"
FRESCO_PG_PORT="${FRESCO_PG_PORT:-5479}"
BENCH_AGENT_PREFIX="${BENCH_AGENT_PREFIX:-bench-notify-agent}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5693}"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../tools/lib/rabbitmq.sh
source "$FRESCO_ROOT/tools/lib/rabbitmq.sh"

N="${BENCH_NOTIFICATIONS:-10000}"
PROJECTS=100
KINDS=10
CRON_SECONDS="${BENCH_CRON_SECONDS:-20}"
LATENCY_N="${BENCH_LATENCY_N:-100}"
PREFIX="bench-n"
EXCHANGE="bench_nova"
QUEUE="fresco-bench-notifications"
SCHEDULER_URL="http://127.0.0.1:$FRESCO_SCHEDULER_PORT"
WORK="$(mktemp -d)"
OWN_RABBIT=0
cleanup() {
    rm -rf "$WORK"
    bench_stop
    [ "$OWN_RABBIT" = 1 ] && rabbitmq_stop
    return 0
}
trap cleanup EXIT

if [ -n "${BENCH_AMQP_URL:-}" ]; then
    AMQP="$BENCH_AMQP_URL"
    rabbitmq_venv
else
    rabbitmq_start
    OWN_RABBIT=1
    AMQP="$RABBITMQ_URL"
fi
PYTHON="$RABBITMQ_VENV/bin/python"

bench_start 0
cat >>"$FRESCO_ETC/fresco.conf" <<CONF

[notifications]
transport_url = $AMQP
exchanges = $EXCHANGE
topics = notifications
queue = $QUEUE
CONF

# scalar QUERY: one value from the bench database.
scalar() {
    pg_psql -d fresco -c "$1"
}

# triggered_at_least N [started]: whether N executions queued by triggers exist (started ones).
triggered_at_least() {
    local where="trigger_id IS NOT NULL"
    [ "${2:-}" = started ] && where+=" AND started_at IS NOT NULL"
    [ "$(scalar "SELECT count(*) FROM executions WHERE $where")" -ge "$1" ]
}

# metric NAME: a sample of the scheduler's /metrics (0 when absent).
metric() {
    curl -fsS "$SCHEDULER_URL/metrics" | awk -v m="$1" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

scheduler_stop() {
    stop_pidfile "$FRESCO_STATE/run/fresco-scheduler.pid" fresco-scheduler
}

scheduler_start() {
    stack_run fresco-scheduler "$(stack_bin fresco-scheduler)" --config-file "$FRESCO_ETC/fresco.conf"
    wait_for 30 "fresco-scheduler" curl -fsS "$SCHEDULER_URL/healthcheck"
    wait_for 30 "the scheduler's leadership" sh -c \
        "curl -fsS '$SCHEDULER_URL/metrics' | grep -qx 'fresco_scheduler_leader 1'"
}

# The scheduler again, now with [notifications]: its consumer declares the queue.
scheduler_stop
scheduler_start
ensure_runtimes
(cd "$FRESCO_ROOT/tests/functions/python-echo" && zip -q "$WORK/echo.zip" ./*.py)
scalar "DELETE FROM triggers; DELETE FROM executions WHERE trigger_id IS NOT NULL" >/dev/null
say "creating $PROJECTS functions and $((PROJECTS * KINDS)) notification triggers"
for p in $(seq 1 "$PROJECTS"); do
    token="bench:$PREFIX-$p:member"
    # A run before this one left its function (and with it its triggers): start afresh.
    curl -sS -o /dev/null -X DELETE -H "X-Auth-Token: $token" "$API/v1/functions/echo"
    curl -fsS -o /dev/null -H "X-Auth-Token: $token" \
        -F 'metadata={"name": "echo", "runtime": "python3", "handler": "main.handler", "memory_mb": 128};type=application/json' \
        -F "package=@$WORK/echo.zip" "$API/v1/functions" || die "cannot create the function of $PREFIX-$p"
    for k in $(seq 0 $((KINDS - 1))); do
        api POST /v1/triggers "$token" \
            "{\"name\": \"t$k\", \"type\": \"notification\", \"function\": \"echo\", \"event_types\": [\"bench.event.$k\"]}" \
            >/dev/null || die "cannot create trigger t$k of $PREFIX-$p"
    done
done
[ "$(scalar "SELECT count(*) FROM triggers WHERE kind = 'notification'")" = $((PROJECTS * KINDS)) ] \
    || die "the triggers are not all there"

out "== notifications: sustained consumption ($N notifications, $PROJECTS projects, $((PROJECTS * KINDS)) triggers)"
scheduler_stop
out "command: $PYTHON bench/notify_load.py preload <amqp> $EXCHANGE $QUEUE $N $PREFIX $PROJECTS $KINDS"
out "  publish (raw AMQP, kombu): $("$PYTHON" "$BENCH_DIR/notify_load.py" preload "$AMQP" "$EXCHANGE" "$QUEUE" "$N" "$PREFIX" "$PROJECTS" "$KINDS")"
scheduler_start
wait_for 600 "$N executions queued by the consumer" triggered_at_least "$N"
line=$(scalar "SELECT count(*), round(extract(epoch FROM max(created_at) - min(created_at))::numeric, 3),
    (SELECT count(*) FROM executions e2 WHERE e2.trigger_id IS NOT NULL
       AND e2.created_at = (SELECT min(created_at) FROM executions WHERE trigger_id IS NOT NULL))
    FROM executions WHERE trigger_id IS NOT NULL")
IFS='|' read -r queued span first <<<"$line"
batches=$(metric fresco_scheduler_notification_batches_total)
rate=$(awk -v n="$queued" -v f="$first" -v s="$span" 'BEGIN { if (s > 0) printf "%.0f", (n - f) / s; else print "nan" }')
out "  consumed: executions=$queued first_commit_to_last_s=$span rate_per_s=$rate batches=$batches mean_batch=$(awk -v n="$queued" -v b="$batches" 'BEGIN { if (b > 0) printf "%.1f", n / b; else print "nan" }') $(machine)"
[ "$queued" = "$N" ] || warn "expected $N executions, found $queued"
scalar "DELETE FROM executions WHERE trigger_id IS NOT NULL" >/dev/null

out "== cron: cost per pass (10 triggers due every second, the others not due; ${CRON_SECONDS} s each)"
for count in 100 1000 10000; do
    scalar "DELETE FROM triggers WHERE kind = 'cron'; DELETE FROM executions WHERE trigger_id IS NOT NULL;" >/dev/null
    scalar "INSERT INTO triggers (id, project_id, name, kind, function_id, cron, timezone, next_run_at, enabled, input)
        SELECT gen_random_uuid(), f.project_id, 'c' || g, 'cron', f.id,
               CASE WHEN g <= 10 THEN '* * * * * *' ELSE '0 0 1 1 *' END, 'UTC',
               CASE WHEN g <= 10 THEN now() ELSE '2099-01-01' END, true, '{}'
        FROM generate_series(1, $count) g
        JOIN functions f ON f.project_id = '$PREFIX-' || (g % $PROJECTS + 1) AND f.name = 'echo'" >/dev/null
    passes0=$(metric fresco_scheduler_cron_passes_total)
    micros0=$(metric fresco_scheduler_cron_pass_microseconds_total)
    fired0=$(metric 'fresco_scheduler_cron_ticks_total{outcome="fired"}')
    sleep "$CRON_SECONDS"
    passes=$(( $(metric fresco_scheduler_cron_passes_total) - passes0 ))
    micros=$(( $(metric fresco_scheduler_cron_pass_microseconds_total) - micros0 ))
    fired=$(( $(metric 'fresco_scheduler_cron_ticks_total{outcome="fired"}') - fired0 ))
    out "  triggers=$count passes=$passes ticks_fired=$fired mean_pass_ms=$(awk -v m="$micros" -v p="$passes" 'BEGIN { if (p > 0) printf "%.3f", m / p / 1000; else print "nan" }') $(machine)"
done
scalar "DELETE FROM triggers WHERE kind = 'cron'; DELETE FROM executions WHERE trigger_id IS NOT NULL;" >/dev/null

out "== notification -> execution start ($LATENCY_N notifications, one every 100 ms, oslo.messaging Notifier)"
stack_agent_config 1 "$BENCH_AGENT_PREFIX-1"
stack_run fresco-agent-1 "$(stack_bin fresco-agent)" --config-file "$FRESCO_ETC/agent-1.conf"
wait_for 30 "fresco-agent-1" curl -fsS "http://127.0.0.1:$FRESCO_AGENT_PORT/healthcheck"
wait_for 30 "the agent up at the scheduler" sh -c \
    "curl -fsS '$SCHEDULER_URL/metrics' | grep -qx 'fresco_scheduler_agents_up 1'"
for _ in 1 2 3; do
    api POST "/v1/functions/echo/invoke" "bench:$PREFIX-1:member" '{}' >/dev/null
done
out "command: $PYTHON bench/notify_load.py paced <amqp> $EXCHANGE $LATENCY_N 0.1 $PREFIX-1"
"$PYTHON" "$BENCH_DIR/notify_load.py" paced "$AMQP" "$EXCHANGE" "$LATENCY_N" 0.1 "$PREFIX-1" >/dev/null
wait_for 120 "$LATENCY_N executions started" triggered_at_least "$LATENCY_N" started
line=$(scalar "WITH l AS (
        SELECT extract(epoch FROM started_at) * 1000
               - (convert_from(input, 'UTF8')::jsonb -> 'payload' ->> 'sent_at')::float8 * 1000 AS ms
        FROM executions WHERE trigger_id IS NOT NULL AND started_at IS NOT NULL)
    SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2),
           round(min(ms)::numeric, 2), round(max(ms)::numeric, 2) FROM l")
IFS='|' read -r count p50 p99 min max <<<"$line"
out "  started=$count p50_ms=$p50 p99_ms=$p99 min_ms=$min max_ms=$max $(machine)"
