# Local Postgres 15 clusters for development and tests, owned by the postgres user.
# Sourced after lib.sh. One cluster per name, under $FLUXBASE_PG_ROOT/<name>:
#   data/            the data directory
#   run/             the Unix socket
#   postgresql.log   the server log
#   credentials.env  passwords of the cluster's login roles (mode 600)
# shellcheck shell=bash

# cluster_paths NAME: sets CLUSTER_ROOT, CLUSTER_DATA, CLUSTER_RUN, CLUSTER_LOG.
cluster_paths() {
    CLUSTER_ROOT="$FLUXBASE_PG_ROOT/$1"
    CLUSTER_DATA="$CLUSTER_ROOT/data"
    CLUSTER_RUN="$CLUSTER_ROOT/run"
    CLUSTER_LOG="$CLUSTER_ROOT/postgresql.log"
}

# psql as the superuser over the cluster's socket; extra arguments go to psql.
cluster_psql() {
    as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER_RUN" -p "$CLUSTER_PORT" "$@"
}

# ensure_cluster NAME PORT SUPERUSER_PASSWORD [fast]
# Creates the cluster on first use, (re)writes its settings, and starts it, or restarts
# it when a setting that needs a restart changed. "fast" trades durability for speed
# (fsync off): for the test cluster only.
ensure_cluster() {
    local name="$1" password="$3" mode="${4:-}"
    CLUSTER_PORT="$2"
    cluster_paths "$name"
    mkdir -p "$CLUSTER_ROOT" "$CLUSTER_RUN"
    chown postgres:postgres "$FLUXBASE_PG_ROOT" "$CLUSTER_ROOT" "$CLUSTER_RUN" 2>/dev/null || true

    if [ ! -f "$CLUSTER_DATA/PG_VERSION" ]; then
        info "creating cluster $name in $CLUSTER_DATA"
        local pwfile
        pwfile=$(as_postgres mktemp)
        printf '%s\n' "$password" | as_postgres tee "$pwfile" >/dev/null
        as_postgres "$PG_BIN/initdb" -D "$CLUSTER_DATA" -U postgres --pwfile="$pwfile" \
            --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
            > "$LOG_DIR/initdb-$name.log" 2>&1 \
            || { as_postgres rm -f "$pwfile"; fail "initdb failed" "see $LOG_DIR/initdb-$name.log; remove $CLUSTER_ROOT to start over" "$LOG_DIR/initdb-$name.log"; }
        as_postgres rm -f "$pwfile"
        # A self-signed certificate, so that sslmode=require can be used and tested.
        as_postgres openssl req -new -x509 -days 3650 -nodes -subj "/CN=localhost" \
            -keyout "$CLUSTER_DATA/server.key" -out "$CLUSTER_DATA/server.crt" >/dev/null 2>&1 \
            || fail "cannot make the cluster's TLS certificate" "check that openssl is installed"
        as_postgres chmod 600 "$CLUSTER_DATA/server.key"
        echo "include 'fluxbase.conf'" | as_postgres tee -a "$CLUSTER_DATA/postgresql.conf" >/dev/null
    fi

    local conf
    conf=$(cat <<CONF
# Written by scripts/cluster.sh on every start; edits are lost.
port = $CLUSTER_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_RUN'
shared_preload_libraries = 'pg_stat_statements'
# fluxbase_admin's hooks (data_plane.rs) in every backend from its start, not only once a
# backend first calls the extension. Per session, so that a reinstalled library is used
# by the next connection.
session_preload_libraries = 'fluxbase_admin'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
max_connections = 200
CONF
)
    if [ "$mode" = fast ]; then
        conf+=$'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off'
    fi
    local changed=no
    if [ "$(cat "$CLUSTER_DATA/fluxbase.conf" 2>/dev/null)" != "$conf" ]; then
        printf '%s\n' "$conf" | as_postgres tee "$CLUSTER_DATA/fluxbase.conf" >/dev/null
        changed=yes
    fi

    if as_postgres "$PG_BIN/pg_ctl" -D "$CLUSTER_DATA" status >/dev/null 2>&1; then
        if [ "$changed" = yes ]; then
            info "settings changed: restarting cluster $name"
            as_postgres "$PG_BIN/pg_ctl" -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 60 restart >/dev/null \
                || fail "the cluster did not restart" "see $CLUSTER_LOG" "$CLUSTER_LOG"
        else
            info "cluster $name already running on port $CLUSTER_PORT"
        fi
    else
        info "starting cluster $name on port $CLUSTER_PORT"
        as_postgres "$PG_BIN/pg_ctl" -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 60 start >/dev/null \
            || fail "the cluster did not start" "see $CLUSTER_LOG; is port $CLUSTER_PORT taken? (ss -ltnp | grep $CLUSTER_PORT)" "$CLUSTER_LOG"
    fi
}

# ensure_login_role ROLE PASSWORD GRANTED_ROLES INHERIT|NOINHERIT
# Creates or updates a login role and grants it the given roles (comma-separated).
ensure_login_role() {
    cluster_psql -d postgres -v role="$1" -v password="$2" <<SQL
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" LOGIN $4 PASSWORD :'password';
GRANT $3 TO :"role";
SQL
}

# credentials_get NAME KEY DEFAULT: reads (or creates and stores) a password of a cluster.
credentials_get() {
    local file="$FLUXBASE_PG_ROOT/$1/credentials.env" value
    value=$(sed -n "s/^$2=//p" "$file" 2>/dev/null | head -n 1)
    if [ -z "$value" ]; then
        value="${3:-$(openssl rand -hex 16)}"
        mkdir -p "$(dirname "$file")"
        echo "$2=$value" >> "$file"
        chmod 600 "$file"
    fi
    printf '%s' "$value"
}
