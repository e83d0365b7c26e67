#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Authentication overhead on a token-cache hit: GET /v1/functions/{id} through a fresco-api in
# keystone mode (a real Keystone on 127.0.0.1:$KEYSTONE_PORT, default 5500, state in the bench
# state dir) and through the bench's noauth fresco-api, alternately in one run, against the
# same database. Reports the throughput and latency ratios and the Keystone calls made (from
# Keystone's uwsgi request log).
#
# Usage: bench/auth.sh   (as root; about 2-3 minutes, plus a one-time Keystone bootstrap)
#   KEYSTONE_PORT=5500 BENCH_KEYSTONE_API_PORT=9910 BENCH_DURATION=10s BENCH_CONNECTIONS=32
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KEYSTONE_PORT="${KEYSTONE_PORT:-5500}"
# shellcheck source=../tools/lib/keystone.sh
source "$FRESCO_ROOT/tools/lib/keystone.sh"

DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-32}"
KS_API_PORT="${BENCH_KEYSTONE_API_PORT:-9910}"
KS_API="http://127.0.0.1:$KS_API_PORT"
UWSGI_LOG="$FRESCO_STATE/logs/keystone-uwsgi-$KEYSTONE_PORT.log"
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
    bench_stop
    keystone_stop
}
trap cleanup EXIT

bench_start 0
keystone_seed
set -a
# shellcheck disable=SC1090
source "$KEYSTONE_ENV_FILE"
set +a
started=$SECONDS
out "== bench/auth.sh $(date -u +%FT%TZ) $(git -C "$FRESCO_ROOT" rev-parse --short HEAD) $(machine)"

# A second fresco-api, keystone mode, same database.
sed -e 's/^auth_strategy = .*/auth_strategy = keystone/' -e "s/^bind_port = $FRESCO_API_PORT\$/bind_port = $KS_API_PORT/" \
    "$FRESCO_ETC/fresco.conf" >"$FRESCO_ETC/fresco-keystone.conf"
cat >>"$FRESCO_ETC/fresco-keystone.conf" <<CONF

[keystone_authtoken]
auth_url = $KEYSTONE_URL
www_authenticate_uri = $KEYSTONE_URL
username = $FRESCO_SERVICE_USER
password = $FRESCO_SERVICE_PASSWORD
user_domain_name = Default
project_name = $FRESCO_SERVICE_PROJECT
project_domain_name = Default
CONF
chmod 600 "$FRESCO_ETC/fresco-keystone.conf"
stack_run fresco-api-keystone "$(stack_bin fresco-api)" --config-file "$FRESCO_ETC/fresco-keystone.conf"
wait_for 30 "fresco-api (keystone mode)" curl -fsS "$KS_API/healthcheck"

project="$FRESCO_TEST_PROJECT_A_ID"
noauth_token="bench:$project:member"
curl -sS -o /dev/null -X DELETE -H "X-Auth-Token: $noauth_token" "$API/v1/functions/authbench"
fid=$(api POST /v1/functions "$noauth_token" '{"name": "authbench", "image": "fresco/python3:dev"}' | jq -r .function.id)
user_token=$(keystone_issue "$FRESCO_TEST_A_MEMBER_USER" "$FRESCO_TEST_A_MEMBER_PASSWORD" "$FRESCO_TEST_PROJECT_A")
[ -n "$user_token" ] || die "cannot get a Keystone token for $FRESCO_TEST_A_MEMBER_USER"

# keystone_calls: requests Keystone has logged so far (validations, service authentications).
keystone_calls() {
    printf 'validate=%s authenticate=%s' "$(grep -c 'GET /v3/auth/tokens' "$UWSGI_LOG" || true)" \
        "$(grep -c 'POST /v3/auth/tokens' "$UWSGI_LOG" || true)"
}
before=$(keystone_calls)
curl -fsS -o /dev/null -H "X-Auth-Token: $user_token" "$KS_API/v1/functions/$fid" || die "the keystone-mode API refused the token"
out "first request (cache miss): Keystone calls before: $before, after: $(keystone_calls)"

out "-- GET /v1/functions/{id}: keystone mode (cached token) vs noauth, alternating, $BENCH_REPEAT runs each (target ratio <= 1.05)"
out "command: wrk -t2 -c$CONNS -d$DURATION --latency -s bench/lua/report.lua -H 'X-Auth-Token: <token>' <api>/v1/functions/$fid"
wrk -t2 -c"$CONNS" -d3s -s "$BENCH_LUA/report.lua" -H "X-Auth-Token: $user_token" "$KS_API/v1/functions/$fid" >/dev/null
wrk -t2 -c"$CONNS" -d3s -s "$BENCH_LUA/report.lua" -H "X-Auth-Token: $noauth_token" "$API/v1/functions/$fid" >/dev/null
noauth_lines=()
keystone_lines=()
for i in $(seq 1 "$BENCH_REPEAT"); do
    line=$(wrk_once "noauth#$i" -t2 -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_LUA/report.lua" \
        -H "X-Auth-Token: $noauth_token" "$API/v1/functions/$fid")
    out "  $line"
    noauth_lines+=("$line")
    before=$(keystone_calls)
    line=$(wrk_once "keystone#$i" -t2 -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_LUA/report.lua" \
        -H "X-Auth-Token: $user_token" "$KS_API/v1/functions/$fid")
    out "  $line keystone_calls_before=($before) after=($(keystone_calls))"
    keystone_lines+=("$line")
done
summarize noauth "${noauth_lines[@]}"
summarize keystone "${keystone_lines[@]}"
n=$(grep '^noauth median' "$BENCH_RESULTS/auth.txt" | tail -n 1)
k=$(grep '^keystone median' "$BENCH_RESULTS/auth.txt" | tail -n 1)
out "auth-ratio rps(noauth/keystone)=$(awk -v a="$(field rps "$n")" -v b="$(field rps "$k")" 'BEGIN { printf "%.3f", a / b }') p50(keystone/noauth)=$(awk -v a="$(field p50_ms "$k")" -v b="$(field p50_ms "$n")" 'BEGIN { printf "%.3f", a / b }') p99(keystone/noauth)=$(awk -v a="$(field p99_ms "$k")" -v b="$(field p99_ms "$n")" 'BEGIN { printf "%.3f", a / b }') keystone_calls_total=($(keystone_calls))"
out "== done in $((SECONDS - started)) s"
