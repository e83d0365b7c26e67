#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds Fresco's runtime images locally, with no registry and no pulls:
#   fresco/python3:$TAG   Debian bookworm minbase (debootstrap + docker import) + the Python runtime client
#   fresco/provided:$TAG  FROM scratch + static busybox; the function brings /var/task/bootstrap
# The debootstrap root filesystem is cached as a tarball under $FRESCO_CACHE (machine-level), and an
# image whose `fresco.content` label already matches its inputs is not rebuilt, so a second run takes
# about a second. Starts the Docker engine (tools/lib/docker.sh) if it is not running.
#
# Usage: runtimes/build.sh [TAG]   (default TAG: $FRESCO_RUNTIME_TAG or "dev")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../tools/lib/common.sh
source "$HERE/../tools/lib/common.sh"
# shellcheck source=../tools/lib/docker.sh
source "$HERE/../tools/lib/docker.sh"

TAG="${1:-${FRESCO_RUNTIME_TAG:-dev}}"
FRESCO_CACHE="${FRESCO_CACHE:-/opt/fresco-dev}"
SUITE=bookworm
INCLUDE=python3
DOCKER="$FRESCO_DOCKER"

# debian_mirror: the Debian mirror apt itself uses (deb822 .sources or one-line sources.list).
debian_mirror() {
    local url
    url=$(
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (uris != "" && suites ~ ("(^| )" suite "( |$)")) { print uris; exit } uris = ""; suites = ""; next }
            /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); split($0, u, " "); uris = u[1] }
            /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
            END { if (uris != "" && suites ~ ("(^| )" suite "( |$)")) print uris }' | head -n 1
    )
    if [ -z "$url" ]; then
        url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite) { print $i; exit } }')
    fi
    [ -n "$url" ] || die "no Debian mirror for $SUITE found in apt's sources lists"
    echo "$url"
}

# image_label IMAGE: the image's fresco.content label, empty when the image is missing.
image_label() {
    "$DOCKER" image inspect --format '{{ index .Config.Labels "fresco.content" }}' "$1" 2>/dev/null || true
}

# content_hash FILE...: a short hash of the build inputs.
content_hash() {
    cat "$@" | sha256sum | cut -c1-16
}

build_python_base() {
    local base="fresco/python3-base:$SUITE" tarball="$FRESCO_CACHE/rootfs/$SUITE-minbase-$INCLUDE.tar"
    if "$DOCKER" image inspect "$base" >/dev/null 2>&1; then
        return 0
    fi
    if [ ! -s "$tarball" ]; then
        local mirror dir
        mirror=$(debian_mirror)
        dir=$(mktemp -d "${TMPDIR:-/tmp}/fresco-rootfs.XXXXXX")
        say "debootstrap --variant=minbase --include=$INCLUDE $SUITE from $mirror (about 30 s)"
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir" "$mirror" \
            >"$FRESCO_STATE/logs/debootstrap.log" 2>&1 \
            || { rm -rf "$dir"; die "debootstrap failed (see $FRESCO_STATE/logs/debootstrap.log)"; }
        # Smaller image: no apt lists or caches, no docs.
        rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
        mkdir -p "$FRESCO_CACHE/rootfs"
        tar -C "$dir" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$dir"
    fi
    say "importing $base"
    "$DOCKER" import "$tarball" "$base" >/dev/null
}

build_python() {
    local image="fresco/python3:$TAG" hash
    hash=$(content_hash "$HERE/python3/Dockerfile.local" "$HERE/python3/bootstrap" <(echo "$SUITE $INCLUDE"))
    if [ "$(image_label "$image")" = "$hash" ]; then
        say "$image is up to date"
        return 0
    fi
    build_python_base
    say "building $image"
    "$DOCKER" build --network none -q -f "$HERE/python3/Dockerfile.local" \
        --build-arg "BASE=fresco/python3-base:$SUITE" --label "fresco.content=$hash" \
        --label fresco.runtime=python -t "$image" "$HERE/python3" >/dev/null
}

build_provided() {
    local image="fresco/provided:$TAG" hash ctx
    [ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
    hash=$(content_hash "$HERE/provided/Dockerfile" /bin/busybox)
    if [ "$(image_label "$image")" = "$hash" ]; then
        say "$image is up to date"
        return 0
    fi
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/fresco-provided.XXXXXX")
    cp "$HERE/provided/Dockerfile" /bin/busybox "$ctx/"
    say "building $image"
    "$DOCKER" build --network none -q --label "fresco.content=$hash" --label fresco.runtime=provided \
        -t "$image" "$ctx" >/dev/null || { rm -rf "$ctx"; die "docker build of $image failed"; }
    rm -rf "$ctx"
}

docker_start
build_python
build_provided
say "runtime images ready: fresco/python3:$TAG fresco/provided:$TAG"
