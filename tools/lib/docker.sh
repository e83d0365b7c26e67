# shellcheck shell=bash
# A Docker engine for development and tests. Source common.sh first.
#
# The daemon runs with --bridge=none (and no iptables/forwarding/masquerading): containers get
# only their own loopback interface, so no test traffic can leave the machine. The client used
# is /usr/bin/docker (docker.io's, matching the daemon), never a newer one elsewhere on PATH.

FRESCO_DOCKER="${FRESCO_DOCKER:-/usr/bin/docker}"
FRESCO_DOCKERD_PID="$FRESCO_STATE/run/dockerd.pid"
export FRESCO_DOCKER

# docker_running: true when the daemon answers.
docker_running() {
    [ -x "$FRESCO_DOCKER" ] && "$FRESCO_DOCKER" info >/dev/null 2>&1
}

# docker_start: installs docker.io if missing and starts dockerd unless one already answers.
# Also installs what the agent builds sandbox networks with (ip, nsenter, nft).
docker_start() {
    ensure_packages iproute2 util-linux nftables
    if docker_running; then
        return 0
    fi
    ensure_packages docker.io busybox-static debootstrap
    docker_running && return 0
    if pid_alive "$FRESCO_DOCKERD_PID"; then
        say "waiting for dockerd (pid $(cat "$FRESCO_DOCKERD_PID"))"
    else
        say "starting dockerd (--bridge=none; log in $FRESCO_STATE/logs/dockerd.log)"
        # setsid: the daemon must not die with the shell or the test run that started it.
        setsid /usr/sbin/dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
            >>"$FRESCO_STATE/logs/dockerd.log" 2>&1 </dev/null &
        echo $! >"$FRESCO_DOCKERD_PID"
    fi
    wait_for 60 "dockerd to answer (see $FRESCO_STATE/logs/dockerd.log)" docker_running
}

# docker_stop: stops the dockerd that docker_start started (never one started by someone else).
docker_stop() {
    stop_pidfile "$FRESCO_DOCKERD_PID" dockerd
}
