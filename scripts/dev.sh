#!/usr/bin/env bash
# `make run`: installs what is missing, builds and installs the extension, starts a
# local Postgres 15 cluster, prepares the database and the dashboard's two logins (the
# dashboard login and the data login), and runs `fluxbase serve` on port 3001. Safe to run
# again: data is kept across runs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster.sh"
cd "$REPO_ROOT"

DEV_PORT="${FLUXBASE_DEV_PGPORT:-54329}"
DEV_DB=fluxbase
DASHBOARD_ROLE=fluxbase_web
DATA_ROLE=fluxbase_data
export FLUXBASE_ADMIN_PORT="${FLUXBASE_ADMIN_PORT:-3001}"

bash scripts/setup.sh

step "[1/6] Building and installing the extension (release; several minutes the first time)"
run_logged "$LOG_DIR/install-release.log" "see the log; run: cargo pgrx install --release --pg-config $PG_CONFIG" -- \
    cargo pgrx install --release --pg-config "$PG_CONFIG"

step "[2/6] Building fluxbase (release)"
run_logged "$LOG_DIR/build-fluxbase.log" "see the log; run: cargo build --release -p fluxbase" -- \
    cargo build --release -p fluxbase
FLUXBASE="$REPO_ROOT/target/release/fluxbase"

step "[3/6] Starting the development cluster ($FLUXBASE_PG_ROOT/dev)"
mkdir -p "$FLUXBASE_PG_ROOT/dev"
SUPERUSER_PASSWORD=$(credentials_get dev POSTGRES_PASSWORD)
DASHBOARD_PASSWORD=$(credentials_get dev DASHBOARD_PASSWORD)
DATA_PASSWORD=$(credentials_get dev DATA_PASSWORD)
SESSION_SECRET=$(credentials_get dev SESSION_SECRET "$(openssl rand -hex 32)")
ensure_cluster dev "$DEV_PORT" "$SUPERUSER_PASSWORD"
SUPERUSER_URL="postgresql://postgres:${SUPERUSER_PASSWORD}@127.0.0.1:${DEV_PORT}/${DEV_DB}"
DASHBOARD_URL="postgresql://${DASHBOARD_ROLE}:${DASHBOARD_PASSWORD}@127.0.0.1:${DEV_PORT}/${DEV_DB}"
DATA_URL="postgresql://${DATA_ROLE}:${DATA_PASSWORD}@127.0.0.1:${DEV_PORT}/${DEV_DB}"

step "[4/6] Preparing database $DEV_DB"
if [ -z "$(cluster_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DEV_DB'")" ]; then
    cluster_psql -d postgres -c "CREATE DATABASE $DEV_DB" >/dev/null
    info "created database $DEV_DB"
fi
# 0.1.0 is under construction: its install script may change without a new version.
# When it did, keep a dump of the development data, then start the database afresh.
INSTALLED_VERSION=$(cluster_psql -d "$DEV_DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'fluxbase_admin'")
DEFAULT_VERSION=$(cluster_psql -d "$DEV_DB" -tAc "SELECT default_version FROM pg_available_extensions WHERE name = 'fluxbase_admin'")
# The script's lines, sorted: pgrx may write the same objects in another order from one
# build to the next, which is no change to keep the data from.
SCRIPT_HASH=$(sort "$("$PG_CONFIG" --sharedir)/extension/fluxbase_admin--${DEFAULT_VERSION}.sql" | sha256sum | cut -d' ' -f1)
HASH_FILE="$FLUXBASE_PG_ROOT/dev/install-script.sha256"
if [ -n "$INSTALLED_VERSION" ] && [ "$INSTALLED_VERSION" = "$DEFAULT_VERSION" ] \
   && [ "$(cat "$HASH_FILE" 2>/dev/null)" != "$SCRIPT_HASH" ]; then
    BACKUP_DIR="$FLUXBASE_PG_ROOT/dev/backups"
    mkdir -p "$BACKUP_DIR"
    BACKUP="$BACKUP_DIR/$DEV_DB-$(date -u +%Y%m%dT%H%M%SZ).sql"
    info "the install script of fluxbase_admin $DEFAULT_VERSION changed since this database was made"
    as_postgres "$PG_BIN/pg_dump" -h "$CLUSTER_RUN" -p "$CLUSTER_PORT" -d "$DEV_DB" > "$BACKUP" \
        || fail "cannot dump the development database" "see the message above; nothing was dropped"
    info "dumped the development database to $BACKUP"
    cluster_psql -d postgres -c "DROP DATABASE $DEV_DB WITH (FORCE)" -c "CREATE DATABASE $DEV_DB" >/dev/null
    info "recreated database $DEV_DB"
fi
DATABASE_URL="$SUPERUSER_URL" "$FLUXBASE" extension install 2> "$LOG_DIR/extension-install.log" \
    || fail "$(tail -n 1 "$LOG_DIR/extension-install.log")" "see $LOG_DIR/extension-install.log"
echo "$SCRIPT_HASH" > "$HASH_FILE"
# The cluster preloads pg_stat_statements; the analytics pages read it from this database.
cluster_psql -d "$DEV_DB" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null

step "[5/6] Creating the dashboard's two logins: $DASHBOARD_ROLE and $DATA_ROLE (NOINHERIT)"
# The dashboard login: a member of fluxbase_dashboard only. The data login: the roles the
# data plane switches to, and its entry points (fluxbase_admin.prepare_data_login).
ensure_login_role "$DASHBOARD_ROLE" "$DASHBOARD_PASSWORD" "fluxbase_dashboard" NOINHERIT
cluster_psql -d postgres -q -c "SET client_min_messages = error; REVOKE anon, authenticated, service_role, fluxbase_explorer FROM $DASHBOARD_ROLE"
ensure_login_role "$DATA_ROLE" "$DATA_PASSWORD" "anon" NOINHERIT
cluster_psql -d "$DEV_DB" -q -c "SET client_min_messages = warning" -c "SELECT * FROM fluxbase_admin.prepare_data_login('$DATA_ROLE')" > "$LOG_DIR/data-login.log" 2>&1 \
    || fail "cannot prepare the data login $DATA_ROLE" "see $LOG_DIR/data-login.log"

step "[6/6] Starting the dashboard"
info "psql as superuser: runuser -u postgres -- psql -h $CLUSTER_RUN -p $CLUSTER_PORT $DEV_DB"
info "credentials: $FLUXBASE_PG_ROOT/dev/credentials.env"
export DATABASE_URL="$DASHBOARD_URL"
export FLUXBASE_ADMIN_DATA_DATABASE_URL="$DATA_URL"
export FLUXBASE_ADMIN_SESSION_SECRET="$SESSION_SECRET"
# --dev: should the credentials file lose its secret, serve makes one up and warns.
exec "$FLUXBASE" serve --dev
