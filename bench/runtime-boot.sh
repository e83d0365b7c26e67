#!/usr/bin/env bash
# The Python runtime's boot (issue 12), inside the runtime image, without the platform: how
# long the interpreter takes to start, to import `json`, and to run the bootstrap up to its
# first Runtime API request (the bootstrap is started without $AWS_LAMBDA_RUNTIME_API, so it
# stops right after its imports). Each figure is the mean over BENCH_N starts in one container,
# the commands alternated over BENCH_ROUNDS rounds, so a busy machine slows them alike.
# Compare images (e.g. before and after a bootstrap change) by naming both.
#
# Usage: bench/runtime-boot.sh [IMAGE...]   (default: fresco/python3:${FRESCO_RUNTIME_TAG:-dev})
#   BENCH_N=30 BENCH_ROUNDS=3
set -euo pipefail
N="${BENCH_N:-30}"
ROUNDS="${BENCH_ROUNDS:-3}"
DOCKER="${DOCKER:-docker}"
if [ "$#" -eq 0 ]; then
    set -- "fresco/python3:${FRESCO_RUNTIME_TAG:-dev}"
fi

# Mean microseconds per start of COMMAND, N times in one container of IMAGE (no network).
per_start_us() {
    local image="$1" command="$2"
    # shellcheck disable=SC2016 # expanded by the container's shell
    "$DOCKER" run --rm --network none -e N="$N" -e COMMAND="$command" "$image" sh -c '
        s=$(date +%s%N); i=0
        while [ "$i" -lt "$N" ]; do sh -c "$COMMAND" >/dev/null 2>&1 || true; i=$((i + 1)); done
        e=$(date +%s%N); echo $(( (e - s) / N / 1000 ))'
}

commands=("python3 -c pass" "python3 -c 'import json'" "python3 /var/runtime/bootstrap")
declare -A results
for _ in $(seq "$ROUNDS"); do
    for image in "$@"; do
        for command in "${commands[@]}"; do
            results["$image|$command"]+="$(per_start_us "$image" "$command") "
        done
    done
done
printf '%-32s %-32s %s\n' image command "us per start (each round)"
for image in "$@"; do
    for command in "${commands[@]}"; do
        printf '%-32s %-32s %s\n' "$image" "$command" "${results["$image|$command"]}"
    done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
