# shellcheck shell=bash
# A project-local PostgreSQL for development and tests: data in $FRESCO_STATE/pg, listening
# on 127.0.0.1:$FRESCO_PG_PORT only. Source common.sh first.

FRESCO_PG_PORT="${FRESCO_PG_PORT:-5439}"
FRESCO_PG_PASSWORD="${FRESCO_PG_PASSWORD:-fresco-dev}"
FRESCO_PG_DATA="$FRESCO_STATE/pg/data"
FRESCO_PG_RUN="$FRESCO_STATE/pg/run"
FRESCO_DB_URL="postgresql://fresco:${FRESCO_PG_PASSWORD}@127.0.0.1:${FRESCO_PG_PORT}/fresco"
export FRESCO_PG_PORT FRESCO_DB_URL

pg_bin() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] || die "no PostgreSQL server binaries found"
    echo "$dir"
}

pg_psql() {
    runuser -u postgres -- psql -h "$FRESCO_PG_RUN" -p "$FRESCO_PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"
}

pg_start() {
    ensure_packages postgresql libpq-dev pkg-config
    local bin
    bin=$(pg_bin)
    mkdir -p "$FRESCO_STATE/pg"
    chown postgres:postgres "$FRESCO_STATE/pg"
    if [ ! -f "$FRESCO_PG_DATA/PG_VERSION" ]; then
        say "initialising PostgreSQL in $FRESCO_PG_DATA"
        local pwfile="$FRESCO_STATE/pg/.initdb-pw"
        (umask 077 && echo "$FRESCO_PG_PASSWORD" >"$pwfile") && chown postgres "$pwfile"
        rm -rf "$FRESCO_PG_DATA"
        runuser -u postgres -- "$bin/initdb" -D "$FRESCO_PG_DATA" -A scram-sha-256 -U postgres \
            --pwfile="$pwfile" >"$FRESCO_STATE/logs/initdb.log" 2>&1 \
            || die "initdb failed (see $FRESCO_STATE/logs/initdb.log)"
        rm -f "$pwfile"
        # Local socket connections (only root and postgres can reach the directory) are trusted.
        sed -i 's/^local\(.*\)scram-sha-256/local\1trust/' "$FRESCO_PG_DATA/pg_hba.conf"
    fi
    install -d -o postgres -g postgres "$FRESCO_PG_RUN"
    if ! runuser -u postgres -- "$bin/pg_ctl" -D "$FRESCO_PG_DATA" status >/dev/null 2>&1; then
        say "starting PostgreSQL on 127.0.0.1:$FRESCO_PG_PORT"
        runuser -u postgres -- "$bin/pg_ctl" -D "$FRESCO_PG_DATA" -w -t 60 -l "$FRESCO_STATE/pg/postgres.log" start \
            -o "-p $FRESCO_PG_PORT -k $FRESCO_PG_RUN -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" \
            >/dev/null || die "PostgreSQL did not start (see $FRESCO_STATE/pg/postgres.log)"
    fi
    if [ "$(pg_psql -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'fresco'")" != 1 ]; then
        pg_psql -d postgres -c "CREATE ROLE fresco LOGIN CREATEDB PASSWORD '$FRESCO_PG_PASSWORD'"
    fi
    if [ "$(pg_psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'fresco'")" != 1 ]; then
        pg_psql -d postgres -c "CREATE DATABASE fresco OWNER fresco"
    fi
}

pg_stop() {
    local bin
    bin=$(pg_bin)
    if [ -f "$FRESCO_PG_DATA/PG_VERSION" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$FRESCO_PG_DATA" status >/dev/null 2>&1; then
        say "stopping PostgreSQL"
        runuser -u postgres -- "$bin/pg_ctl" -D "$FRESCO_PG_DATA" -w -m fast stop >/dev/null
    fi
}
