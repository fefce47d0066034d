#!/usr/bin/env bash
# Starts (or reuses) the test cluster and rebuilds its template database from the
# extension installed on this host. Tests then make each database with
# CREATE DATABASE ... TEMPLATE fluxbase_template: fast, and no two tests race to create
# the cluster-wide roles.
#
# The test cluster is local and throwaway, so its passwords are fixed (see tests/src/lib.rs).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster.sh"

TEST_PORT="${FLUXBASE_TEST_PGPORT:-54330}"
TEST_PASSWORD="fluxbase-test"

step "Starting the test cluster"
ensure_cluster test "$TEST_PORT" "$TEST_PASSWORD" fast

step "Creating the test login roles (one per kind of caller)"
# The two logins of fluxbase serve (architecture.md, "Two planes"): the dashboard login is
# a member of fluxbase_dashboard only; the data login gets its memberships and grants from
# fluxbase_admin.prepare_data_login in the template below. fluxbase_explorer and the app
# roles come from the extension, so the first install on a new cluster creates them.
cluster_psql -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'fluxbase_dashboard'" -tA | grep -q 1 \
    || { cluster_psql -d postgres -c "CREATE DATABASE fluxbase_roles" && cluster_psql -d fluxbase_roles -c "CREATE EXTENSION fluxbase_admin" \
         && cluster_psql -d postgres -c "DROP DATABASE fluxbase_roles"; } > "$LOG_DIR/test-roles.log" 2>&1
ensure_login_role fluxbase_web "$TEST_PASSWORD" "fluxbase_dashboard" NOINHERIT
cluster_psql -d postgres -q -c "SET client_min_messages = error; REVOKE anon, authenticated, service_role, fluxbase_explorer FROM fluxbase_web" 2>/dev/null || true
ensure_login_role fluxbase_data "$TEST_PASSWORD" "anon" NOINHERIT
ensure_login_role fluxbase_ops "$TEST_PASSWORD" "fluxbase_operator" INHERIT
ensure_login_role app_user "$TEST_PASSWORD" "authenticated" INHERIT
info "superuser postgres, dashboard fluxbase_web, data fluxbase_data, operator fluxbase_ops, app role app_user; password $TEST_PASSWORD; port $TEST_PORT"

step "Building the template database fluxbase_template"
cluster_psql -d postgres <<'SQL' > "$LOG_DIR/test-template.log" 2>&1 || fail "cannot rebuild the template" "see the log; is the extension installed (make install-debug)?" "$LOG_DIR/test-template.log"
-- Databases left by test runs that were killed.
SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database
 WHERE datname LIKE 'fluxbase\_test\_%' \gexec
SELECT 'ALTER DATABASE fluxbase_template IS_TEMPLATE false'
 WHERE EXISTS (SELECT 1 FROM pg_database WHERE datname = 'fluxbase_template') \gexec
DROP DATABASE IF EXISTS fluxbase_template WITH (FORCE);
CREATE DATABASE fluxbase_template;
\c fluxbase_template
CREATE EXTENSION fluxbase_admin;
-- The data login's memberships and grants (per database: copied with the template).
SELECT * FROM fluxbase_admin.prepare_data_login('fluxbase_data');
\c postgres
ALTER DATABASE fluxbase_template IS_TEMPLATE true ALLOW_CONNECTIONS false;
SQL
info "fluxbase_template has fluxbase_admin $(cluster_psql -d postgres -tAc "SELECT default_version FROM pg_available_extensions WHERE name = 'fluxbase_admin'")"

