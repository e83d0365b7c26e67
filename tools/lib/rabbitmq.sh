#!/usr/bin/env bash
# shellcheck shell=bash
# A real, project-local RabbitMQ (Debian's rabbitmq-server) for the notification consumer's
# tests: its own node name, ports and state under $FRESCO_STATE/rabbitmq, listening on
# 127.0.0.1 only (AMQP, Erlang distribution and epmd alike), guest/guest (loopback only).
#
# As a command:  tools/lib/rabbitmq.sh start|stop|status|url
# As a library:  source tools/lib/common.sh; source tools/lib/rabbitmq.sh; rabbitmq_start ...
#
#   start   installs rabbitmq-server when missing (its system service is not started), starts
#           our node in the background and waits until AMQP answers; quick when running
#   stop    ends the node started here, by the pid in its pid file, and its epmd
#   status  says whether it runs (exit 0) or not (exit 3)
#   url     prints the AMQP URL ($RABBITMQ_URL)

if ! declare -F say >/dev/null; then
    # shellcheck source=tools/lib/common.sh
    source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

RABBITMQ_PORT="${RABBITMQ_PORT:-5673}"
RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-$((RABBITMQ_PORT + 20000))}"
RABBITMQ_EPMD_PORT="${RABBITMQ_EPMD_PORT:-4370}"
RABBITMQ_DIR="$FRESCO_STATE/rabbitmq"
RABBITMQ_NODE="fresco-${RABBITMQ_PORT}@localhost"
RABBITMQ_URL="amqp://guest:guest@127.0.0.1:${RABBITMQ_PORT}/%2f"
RABBITMQ_VENV="${RABBITMQ_VENV:-/opt/fresco-dev/oslo-venv}"
export RABBITMQ_PORT RABBITMQ_URL RABBITMQ_VENV

rabbitmq_pidfile() { echo "$RABBITMQ_DIR/$RABBITMQ_NODE.pid"; }

rabbitmq_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$RABBITMQ_PORT") 2>/dev/null; }

# rabbitmq_env: the environment of our node and of the CLI tools that talk to it.
rabbitmq_env() {
    export HOME="$RABBITMQ_DIR" \
        RABBITMQ_NODENAME="$RABBITMQ_NODE" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$RABBITMQ_PORT" \
        RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT" \
        RABBITMQ_CONF_ENV_FILE="$RABBITMQ_DIR/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$RABBITMQ_DIR/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$RABBITMQ_DIR/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_DIR/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$RABBITMQ_DIR/mnesia" \
        RABBITMQ_LOG_BASE="$FRESCO_STATE/logs/rabbitmq" \
        RABBITMQ_PID_FILE="$RABBITMQ_DIR/$RABBITMQ_NODE.pid" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# rabbitmq_venv: oslo.messaging (the real Notifier the tests publish with), in a venv of ours.
rabbitmq_venv() {
    if [ -x "$RABBITMQ_VENV/bin/python" ] \
        && "$RABBITMQ_VENV/bin/python" -c 'import oslo_messaging' >/dev/null 2>&1; then
        return 0
    fi
    say "creating the oslo.messaging venv in $RABBITMQ_VENV"
    ensure_packages python3-venv
    mkdir -p "$(dirname "$RABBITMQ_VENV")"
    python3 -m venv "$RABBITMQ_VENV" || die "cannot create the venv $RABBITMQ_VENV"
    "$RABBITMQ_VENV/bin/pip" install -q oslo.messaging >"$FRESCO_STATE/logs/oslo-pip.log" 2>&1 \
        || die "pip install oslo.messaging failed (see $FRESCO_STATE/logs/oslo-pip.log)"
}

rabbitmq_start() {
    local pidfile
    pidfile=$(rabbitmq_pidfile)
    if pid_alive "$pidfile" && rabbitmq_answers; then
        return 0
    fi
    # Debian's policy-rc.d in containers keeps the package's own service from starting; where
    # there is none, the system node is left as the system runs it (on its own ports).
    ensure_packages rabbitmq-server
    rabbitmq_venv
    mkdir -p "$RABBITMQ_DIR" "$FRESCO_STATE/logs/rabbitmq"
    chmod 700 "$RABBITMQ_DIR"
    : >"$RABBITMQ_DIR/rabbitmq-env.conf"
    printf '[].\n' >"$RABBITMQ_DIR/enabled_plugins"
    printf '[].\n' >"$RABBITMQ_DIR/advanced.config"
    cat >"$RABBITMQ_DIR/rabbitmq.conf" <<EOF
# Written by tools/lib/rabbitmq.sh for development and tests only.
listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT
loopback_users.guest = true
log.file.level = warning
EOF
    if ! pid_alive "$pidfile"; then
        if rabbitmq_answers; then
            die "something else answers on 127.0.0.1:$RABBITMQ_PORT; set RABBITMQ_PORT"
        fi
        say "starting RabbitMQ on $RABBITMQ_URL"
        rm -f "$pidfile"
        (
            rabbitmq_env
            exec setsid /usr/lib/rabbitmq/bin/rabbitmq-server \
                >"$FRESCO_STATE/logs/rabbitmq-server.log" 2>&1 </dev/null
        ) &
        # The node writes its pid file as it boots; until then, the launcher's pid stands in.
        echo $! >"$pidfile.launcher"
    fi
    wait_for 120 "RabbitMQ on 127.0.0.1:$RABBITMQ_PORT" rabbitmq_answers
    pid_alive "$pidfile" || die "RabbitMQ answers but wrote no pid file $pidfile"
    rm -f "$pidfile.launcher"
}

rabbitmq_stop() {
    local pidfile
    pidfile=$(rabbitmq_pidfile)
    stop_pidfile "$pidfile" "RabbitMQ on port $RABBITMQ_PORT"
    rm -f "$pidfile.launcher"
    # The epmd our node started (on its own port): it ends itself when no node is left.
    if command -v epmd >/dev/null; then
        ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
    fi
}

rabbitmq_status() {
    if pid_alive "$(rabbitmq_pidfile)" && rabbitmq_answers; then
        echo "rabbitmq running on $RABBITMQ_URL (pid $(cat "$(rabbitmq_pidfile)"))"
        return 0
    fi
    echo "rabbitmq not running on $RABBITMQ_URL"
    return 3
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        start) rabbitmq_start ;;
        stop) rabbitmq_stop ;;
        status) rabbitmq_status ;;
        url) echo "$RABBITMQ_URL" ;;
        *) die "usage: $0 start|stop|status|url" ;;
    esac
fi
