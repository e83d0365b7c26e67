#!/usr/bin/env bash
# Fuzzes code-package inspection and unpacking (fuzz/fuzz_targets/archive.rs) for a bounded
# time: FRESCO_FUZZ_SECONDS (default 60). Installs cargo-fuzz from crates.io when missing.
# The seed corpus is every attack of common/src/archive/hostile.rs; the inputs of crashes found
# before (fuzz/regressions/) are replayed first. Fails on any crash, leaving the input under
# fuzz/artifacts/archive/: add it to fuzz/regressions/ and turn it into a unit test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../tools/lib/common.sh
source "$ROOT/tools/lib/common.sh"

CARGO_FUZZ_VERSION=0.13.2
seconds="${FRESCO_FUZZ_SECONDS:-60}"

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz >"$FRESCO_STATE/logs/cargo-fuzz-install.log" 2>&1 \
        || die "cargo install cargo-fuzz failed (see $FRESCO_STATE/logs/cargo-fuzz-install.log)"
fi

cd "$ROOT/fuzz"
work="$FRESCO_STATE/fuzz/archive"
rm -rf "$work/seeds"
mkdir -p "$work/corpus" "$work/seeds"
# Only the stable toolchain is installed: no sanitizer (-s none), which needs no nightly flags.
cargo fuzz build -s none archive >"$FRESCO_STATE/logs/fuzz-build.log" 2>&1 \
    || die "building the fuzz target failed (see $FRESCO_STATE/logs/fuzz-build.log)"

mapfile -t regressions < <(find regressions -type f ! -name '*.md' | sort)
if [ ${#regressions[@]} -gt 0 ]; then
    say "replaying ${#regressions[@]} crash input(s) found before"
    cargo fuzz run -s none archive "${regressions[@]}" -- -runs=1 >"$FRESCO_STATE/logs/fuzz-regressions.log" 2>&1 \
        || die "a former crash input fails again (see $FRESCO_STATE/logs/fuzz-regressions.log)"
fi

say "fuzzing archive inspection and unpacking for ${seconds}s"
log="$FRESCO_STATE/logs/fuzz-archive.log"
if ! FRESCO_FUZZ_SEEDS="$work/seeds" cargo fuzz run -s none archive "$work/corpus" "$work/seeds" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "the fuzz target found a crash (input under $ROOT/fuzz/artifacts/archive/, log $log)"
fi
seeds=$(find "$work/seeds" -type f | wc -l)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
say "fuzzing done: ${runs:-?} inputs in ${seconds}s from $seeds seeds, $coverage, no crash"
[ "${runs:-0}" -gt "$seeds" ] || die "the fuzzer ran no more inputs than its seeds (see $log)"
