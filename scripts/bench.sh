#!/usr/bin/env bash
# `make bench`: figures for the speed goals, printed as medians; nothing is asserted.
# Builds in release, starts its own cluster (port 54331, /var/lib/postgresql/fluxbase/bench)
# and makes its own data: a database with 5,000 tables for the analytics functions and
# the catalog, and a 1,000,000-row table for the explorer's paging.
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
    script=$(printf "SELECT session_token AS tok FROM dashboard_auth.sign_in('bench@example.com', 'violet kettle marches north') \\\\gset\n%s\n\\\\timing on\n" "$1")
    for _ in $(seq 1 "$RUNS"); do script+=$'\n'"$1"; done
    cluster_psql -d fluxbase_bench -o /dev/null <<<"$script" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n \
        | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.1f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

step "Measuring ($RUNS runs each, medians)"
printf '\n%-52s %12s\n' "analytics on 5,000 tables" "median ms"
printf '%-52s %12s\n' "----------------------------------------------------" "------------"
for entry in \
    "get_metrics|SELECT fluxbase_admin.get_metrics(:'tok');" \
    "list_table_sizes, top 100|SELECT count(*) FROM fluxbase_admin.list_table_sizes(:'tok');" \
    "list_table_sizes, all 5,000|SELECT count(*) FROM fluxbase_admin.list_table_sizes(:'tok', top => 10000);" \
    "list_schema_sizes|SELECT count(*) FROM fluxbase_admin.list_schema_sizes(:'tok');" \
    "list_activity|SELECT count(*) FROM fluxbase_admin.list_activity(:'tok');" \
    "list_maintenance, top 100|SELECT count(*) FROM fluxbase_admin.list_maintenance(:'tok');" \
    "list_index_usage, top 100 of 10,000|SELECT count(*) FROM fluxbase_admin.list_index_usage(:'tok');" \
    "list_bloat, top 100 of 15,000|SELECT count(*) FROM fluxbase_admin.list_bloat(:'tok');" \
    "a metric sample's figures|SELECT fluxbase_admin.headline_figures();" \
    "explorer catalog|SELECT count(*) FROM fluxbase_admin.list_tables(:'tok');"; do
    printf '%-52s %12s\n' "${entry%%|*}" "$(median_ms "${entry#*|}")"
done

step "Making the data: a table of 1,000,000 rows"
cluster_psql -d fluxbase_bench >/dev/null <<'SQL'
DROP TABLE IF EXISTS public.bench_orders;
CREATE TABLE public.bench_orders (
    id bigint PRIMARY KEY, kind text NOT NULL, customer integer NOT NULL,
    created_at timestamptz NOT NULL, amount numeric(12, 2) NOT NULL, note text);
-- 95% of the rows are kind 'order', so that a filtered page can be 900,000 rows deep.
INSERT INTO public.bench_orders
SELECT g, CASE WHEN g % 20 = 0 THEN 'refund' ELSE 'order' END, g % 5000,
       timestamptz '2020-01-01' + (g * 97 % 1000000) * interval '1 minute', (g % 10000) / 100.0,
       'note ' || g
  FROM generate_series(1, 1000000) g;
CREATE INDEX bench_orders_kind_created ON public.bench_orders (kind, created_at DESC, id);
VACUUM ANALYZE public.bench_orders;
SQL

# The data plane's login, as make run makes it (README, "Two logins").
DATA_PASSWORD=$(credentials_get bench DATA_PASSWORD)
ensure_login_role fluxbase_data "$DATA_PASSWORD" "anon" NOINHERIT >/dev/null
cluster_psql -d fluxbase_bench -c "SET client_min_messages = warning" -c "SELECT * FROM fluxbase_admin.prepare_data_login('fluxbase_data')" >/dev/null

# median COLUMN...: the median of a column of numbers on stdin.
median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.2f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# data_plane_ms OPERATION REQUEST CALL: a page the way fluxbase serve gets it, in its
# three parts: the ticket on the dashboard plane, then the claim and the call on the data
# login, each timed by psql over $RUNS tickets (after one warm-up). Prints
# "ticket claim call total" in milliseconds.
data_plane_ms() {
    local issued tickets data_script timings
    issued=$(
        {
            echo "SELECT session_token AS tok FROM dashboard_auth.sign_in('bench@example.com', 'violet kettle marches north') \gset"
            echo '\timing on'
            for _ in $(seq 0 "$RUNS"); do echo "SELECT fluxbase_admin.issue_ticket(:'tok', '$1', '$2');"; done
        } | cluster_psql -d fluxbase_bench -tA 2>&1
    )
    tickets=$(grep '^fbk_' <<<"$issued")
    data_script='\timing on'
    for ticket in $tickets; do
        data_script+=$'\n'"BEGIN;"$'\n'"SELECT fluxbase_admin.claim_ticket('$ticket');"$'\n'"$3"$'\n'"COMMIT;"
    done
    timings=$(PGPASSWORD="$DATA_PASSWORD" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" \
                  -U fluxbase_data -d fluxbase_bench -o /dev/null <<<"$data_script" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    local ticket_ms claim_ms call_ms
    ticket_ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$issued" | tail -n +3 | median)
    claim_ms=$(awk 'NR > 4 && NR % 4 == 2' <<<"$timings" | median)
    call_ms=$(awk 'NR > 4 && NR % 4 == 3' <<<"$timings" | median)
    printf '%s %s %s %s' "$ticket_ms" "$claim_ms" "$call_ms" \
        "$(awk -v a="$ticket_ms" -v b="$claim_ms" -v c="$call_ms" 'BEGIN { printf "%.2f", a + b + c }')"
}

# The same filter and sort for every figure: kind = 'order', newest first (indexed).
browse_args="'public', 'bench_orders', '{\"column\": \"kind\", \"op\": \"eq\", \"value\": \"order\"}', '[{\"column\": \"created_at\", \"direction\": \"desc\"}]'"
request_base='"schema": "public", "table": "bench_orders", "filter": {"column": "kind", "op": "eq", "value": "order"}, "sort": [{"column": "created_at", "direction": "desc"}]'
deep=900000
# The cursor a reader would hold after paging down to row $deep, made from that row's
# sort values; the paging itself is not timed.
cursor=$(cluster_psql -d fluxbase_bench -tA <<SQL
SELECT fluxbase_admin.next_page_cursor(fluxbase_admin.plan_for($browse_args, NULL, 50, NULL),
                                       ARRAY[created_at::text, id::text])
  FROM (SELECT created_at, id FROM public.bench_orders WHERE kind = 'order'
         ORDER BY created_at DESC, id OFFSET $((deep - 1)) LIMIT 1) last_row;
SQL
)
printf '\n%-52s %8s %8s %8s %8s\n' "explorer paging, 1,000,000 rows (50-row pages)" "ticket" "claim" "page" "total"
printf '%-52s %8s %8s %8s %8s\n' "----------------------------------------------------" "--------" "--------" "--------" "--------"
for entry in \
    "first page|{$request_base, \"total\": \"none\"}" \
    "first page with its total (planner's estimate)|{$request_base}" \
    "first page with an exact count (capped at 100,000)|{$request_base, \"total\": \"exact\"}" \
    "keyset page ${deep} rows deep|{$request_base, \"cursor\": \"$cursor\", \"total\": \"none\"}"; do
    # shellcheck disable=SC2046
    printf '%-52s %8s %8s %8s %8s\n' "${entry%%|*}" $(data_plane_ms browse "${entry#*|}" "SELECT fluxbase_admin.browse();")
done
printf '%-52s %8s %8s %8s %8s\n' "OFFSET page ${deep} rows deep (plain SQL, for scale)" "" "" \
    "$(median_ms "SELECT * FROM public.bench_orders WHERE kind = 'order' ORDER BY created_at DESC, id LIMIT 50 OFFSET $deep;")" ""
echo
info "The goal: the deep keyset page within 1.5x of the first page. Times in ms, medians of $RUNS."
