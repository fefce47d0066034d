#!/usr/bin/env bash
# `make bench`: figures for the speed goals, printed as medians; nothing is asserted.
# Builds in release, starts its own cluster (port 54331, /var/lib/postgresql/fluxbase/bench)
# and makes its own data. Today: the analytics functions on a database with 5,000 tables.
# The explorer's paging benchmark joins it with the explorer (issue 7).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster.sh"
cd "$REPO_ROOT"

BENCH_PORT="${FLUXBASE_BENCH_PGPORT:-54331}"
RUNS="${BENCH_RUNS:-7}"

bash scripts/setup.sh

step "Building and installing the extension (release)"
run_logged "$LOG_DIR/install-release.log" "see the log; run: cargo pgrx install --release --pg-config $PG_CONFIG" -- \
    cargo pgrx install --release --pg-config "$PG_CONFIG"

step "Starting the bench cluster"
ensure_cluster bench "$BENCH_PORT" "$(credentials_get bench POSTGRES_PASSWORD)" fast

step "Making the data: a database with 5,000 tables (two indexes each)"
cluster_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS fluxbase_bench WITH (FORCE)" -c "CREATE DATABASE fluxbase_bench" >/dev/null
cluster_psql -d fluxbase_bench >/dev/null <<'SQL'
CREATE EXTENSION fluxbase_admin;
SELECT * FROM dashboard_auth.operator_create_admin('bench@example.com', 'Bench', 'admin', 'violet kettle marches north');
SQL
for batch in $(seq 0 9); do
    cluster_psql -d fluxbase_bench -c "DO \$\$ BEGIN FOR i IN ${batch}001..${batch}500 LOOP
        EXECUTE format('CREATE TABLE public.t_%s (id bigint PRIMARY KEY, code text UNIQUE, body text)', i);
        END LOOP; END \$\$" >/dev/null
    info "$(( (batch + 1) * 500 )) tables"
done
cluster_psql -d fluxbase_bench -c "ANALYZE" >/dev/null

# median_ms SQL: runs SQL $RUNS times in one session (after one warm-up run) and prints
# the median of psql's \timing.
median_ms() {
    local script
    script=$(printf "SELECT session_token AS tok FROM dashboard_auth.login('bench@example.com', 'violet kettle marches north') \\\\gset\n%s\n\\\\timing on\n" "$1")
    for _ in $(seq 1 "$RUNS"); do script+=$'\n'"$1"; done
    cluster_psql -d fluxbase_bench -o /dev/null <<<"$script" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n \
        | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.1f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

step "Measuring ($RUNS runs each, medians)"
printf '\n%-52s %12s\n' "analytics on 5,000 tables" "median ms"
printf '%-52s %12s\n' "----------------------------------------------------" "------------"
for entry in \
    "metrics_overview|SELECT fluxbase_admin.metrics_overview(:'tok');" \
    "metrics_storage, top 100|SELECT count(*) FROM fluxbase_admin.metrics_storage(:'tok');" \
    "metrics_storage, all 5,000|SELECT count(*) FROM fluxbase_admin.metrics_storage(:'tok', top => 10000);" \
    "metrics_schemas|SELECT count(*) FROM fluxbase_admin.metrics_schemas(:'tok');" \
    "metrics_activity|SELECT count(*) FROM fluxbase_admin.metrics_activity(:'tok');" \
    "a metric sample's figures|SELECT fluxbase_admin.headline_figures();" \
    "explorer catalog|SELECT count(*) FROM fluxbase_admin.catalog(:'tok');"; do
    printf '%-52s %12s\n' "${entry%%|*}" "$(median_ms "${entry#*|}")"
done
