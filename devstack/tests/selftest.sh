#!/usr/bin/env bash
# Checks the DevStack harness's failure reporting from the outside: `run.sh selftest` with a
# check failed on purpose (FRESCO_HARNESS_FAIL_CHECK) must exit non-zero, print the failing
# check's log tail and the tail of each service's log, keep its directory with those logs and
# stop the service it started; the same run without the injected failure must pass and
# remove its directory. Takes seconds; uses no port. Prints "N passed, N failed" last.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PASSED=0
FAILED=0
expect() {
    local desc=$1
    shift
    if "$@"; then
        PASSED=$((PASSED + 1))
        printf 'PASS  %s\n' "$desc"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL  %s\n' "$desc"
    fi
}
contains() { grep -qF -- "$2" <<<"$1"; }

out=$(FRESCO_HARNESS_FAIL_CHECK="may be failed" "$HERE/run.sh" selftest 2>&1)
rc=$?
while IFS= read -r line; do printf '    | %s\n' "$line"; done <<<"$out"
dir=$(sed -n 's/^harness files kept in //p' <<<"$out")
pid=$(sed -n 's/^harness-selftest pid //p' "$dir/checks/02.log" 2>/dev/null)
expect "a failed check makes the harness exit 1" test "$rc" -eq 1
expect "the summary counts it" test "$(tail -n 1 <<<"$out")" == "devstack harness (selftest): 2 passed, 1 failed"
expect "the failing check's log tail is printed" contains "$out" "    | selftest-check-output: what the check printed"
expect "the injection is named" contains "$out" "failed on purpose: FRESCO_HARNESS_FAIL_CHECK=may be failed"
expect "the failed checks are listed at the end" contains "$out" "  selftest: a check that may be failed on purpose (log: $dir/checks/03.log)"
expect "the service's log tail is printed" contains "$out" "--- $dir/logs/harness-selftest.log
    | starting harness-selftest: sleep 600"
expect "the directory is kept" test -d "$dir"
expect "it holds the check's log" grep -qF "selftest-check-output" "$dir/checks/03.log"
expect "it holds the service's log" grep -qF "starting harness-selftest: sleep 600" "$dir/logs/harness-selftest.log"
expect "the service was started" test -n "$pid"
expect "and stopped" bash -c "! kill -0 '$pid' 2>/dev/null"
[[ -n "$dir" && "$dir" == /tmp/fdh.* ]] && rm -rf "$dir"

out=$("$HERE/run.sh" selftest 2>&1)
rc=$?
dir=$(sed -n 's/^harness directory: //p' <<<"$out")
expect "without the injection it passes" test "$rc" -eq 0
expect "and says so" test "$(tail -n 1 <<<"$out")" == "devstack harness (selftest): 3 passed, 0 failed"
expect "and removes its directory" test -n "$dir" -a ! -e "$dir"
no_logs() { ! contains "$out" "the services' logs"; }
expect "and prints no logs" no_logs

echo "devstack harness selftest: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
