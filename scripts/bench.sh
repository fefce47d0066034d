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
# BENCH_ONLY=grid make bench: only the grid's figures (the last section), against the
# bench cluster and database a full run made, with the extension as installed now; for
# working on that section without remaking the data.
BENCH_ONLY="${BENCH_ONLY:-}"

# median: the median of a column of numbers on stdin.
median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.2f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# The same filter and sort for every paging figure: kind = 'order', newest first (indexed).
browse_args="'public', 'bench_orders', '{\"column\": \"kind\", \"op\": \"eq\", \"value\": \"order\"}', '[{\"column\": \"created_at\", \"direction\": \"desc\"}]'"
request_base='"schema": "public", "table": "bench_orders", "filter": {"column": "kind", "op": "eq", "value": "order"}, "sort": [{"column": "created_at", "direction": "desc"}]'
deep=900000
# deep_cursor: the cursor a reader would hold after paging down to row $deep, made from
# that row's sort values; the paging itself is not timed.
deep_cursor() {
    cluster_psql -d fluxbase_bench -tA <<SQL
SELECT fluxbase_admin.next_page_cursor(fluxbase_admin.plan_for($browse_args, NULL, 50, NULL),
                                       ARRAY[created_at::text, id::text])
  FROM (SELECT created_at, id FROM public.bench_orders WHERE kind = 'order'
         ORDER BY created_at DESC, id OFFSET $((deep - 1)) LIMIT 1) last_row;
SQL
}

# ---- The grid (issue 20): fluxbase serve on the bench database, over HTTP and in Chromium ----

# start_bench_serve: builds fluxbase and the paint timer, makes the dashboard login, and
# runs `fluxbase serve` on a free port, as make run does (scripts/dev.sh); sets BENCH_URL.
# The server stops when this script ends.
start_bench_serve() {
    step "Building fluxbase and the grid's paint timer (release)"
    run_logged "$LOG_DIR/build-fluxbase.log" "see the log; run: cargo build --release -p fluxbase" -- \
        cargo build --release -p fluxbase
    run_logged "$LOG_DIR/build-grid-paint.log" "see the log; run: cargo build --release -p fluxbase-tests --example grid_paint" -- \
        cargo build --release -p fluxbase-tests --example grid_paint

    step "Starting fluxbase serve on the bench database"
    local dashboard_password data_password secret serve_log port=""
    dashboard_password=$(credentials_get bench DASHBOARD_PASSWORD)
    data_password=$(credentials_get bench DATA_PASSWORD)
    secret=$(credentials_get bench SESSION_SECRET "$(openssl rand -hex 32)")
    ensure_login_role fluxbase_web "$dashboard_password" "fluxbase_dashboard" NOINHERIT >/dev/null
    cluster_psql -d postgres -q -c "SET client_min_messages = error; REVOKE anon, authenticated, service_role, fluxbase_explorer FROM fluxbase_web"
    ensure_login_role fluxbase_data "$data_password" "anon" NOINHERIT >/dev/null
    serve_log="$LOG_DIR/bench-serve.log"
    # A heartbeat of 60 s (the longest): its metric samples would otherwise land among
    # the timed requests.
    DATABASE_URL="postgresql://fluxbase_web:${dashboard_password}@127.0.0.1:${BENCH_PORT}/fluxbase_bench" \
    FLUXBASE_ADMIN_DATA_DATABASE_URL="postgresql://fluxbase_data:${data_password}@127.0.0.1:${BENCH_PORT}/fluxbase_bench" \
    FLUXBASE_ADMIN_SESSION_SECRET="$secret" \
        "$REPO_ROOT/target/release/fluxbase" serve --port 0 --heartbeat-interval 60s > "$serve_log" 2>&1 &
    BENCH_SERVE_PID=$!
    trap 'kill "$BENCH_SERVE_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 300); do
        port=$(sed -n 's|.*listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$serve_log")
        [ -n "$port" ] && break
        kill -0 "$BENCH_SERVE_PID" 2>/dev/null || fail "fluxbase serve stopped" "see $serve_log" "$serve_log"
        sleep 0.1
    done
    [ -n "$port" ] || fail "fluxbase serve did not start within 30 s" "see $serve_log" "$serve_log"
    # localhost, as the server's own links say (cookies and Origin checks agree with it).
    BENCH_URL="http://localhost:$port"
    curl -fsS --max-time 10 "$BENCH_URL/healthz" >/dev/null || fail "GET /healthz failed" "see $serve_log" "$serve_log"
    info "listening on $BENCH_URL (log: $serve_log)"
}

# grid_get URL CURL_ARGS...: one GET as a browser makes it (offering gzip, br and zstd).
# Prints "<Server-Timing ms> <body bytes, uncompressed> <bytes served> <Content-Encoding or
# none> <grid rows>"; fails unless the answer is a 200.
grid_get() {
    local url="$1" body headers status
    shift
    body=$(mktemp)
    headers=$(curl -sS --max-time 60 --compressed -o "$body" -D - "$@" "$url" -w 'x-bench-served: %{size_download}\n' | tr -d '\r')
    status=$(head -n 1 <<<"$headers" | awk '{ print $2 }')
    if [ "$status" != 200 ]; then
        head -c 500 "$body" >&2; rm -f "$body"
        fail "GET $url answered $status" "see $LOG_DIR/bench-serve.log"
    fi
    # Rows: a JSON page's rows are {"values": {...}, "truncated": {...}}; the HTML grid's
    # rows are the <tr> of its body.
    local rows
    if grep -q '^content-type: application/json' <<<"${headers,,}"; then
        rows=$(grep -o '"values": *{' "$body" | wc -l)
    else
        rows=$(sed -n '/<tbody/,/<\/tbody>/p' "$body" | grep -c '<tr' || true)
    fi
    printf '%s %s %s %s %s\n' \
        "$(sed -n 's/^server-timing:.*dur=\([0-9.]*\).*/\1/Ip' <<<"$headers" | head -n 1)" \
        "$(wc -c < "$body")" \
        "$(sed -n 's/^x-bench-served: //p' <<<"$headers")" \
        "$(sed -n 's/^content-encoding: *//Ip' <<<"$headers" | head -n 1 | grep . || echo none)" \
        "$rows"
    rm -f "$body"
}

# grid_figures URL CURL_ARGS...: $RUNS GETs after one warm-up; prints "<median server ms>
# <KB uncompressed> <KB served> <Content-Encoding> <rows>" (sizes of the last answer).
grid_figures() {
    local answers last
    grid_get "$@" >/dev/null
    answers=$(for _ in $(seq 1 "$RUNS"); do grid_get "$@"; done)
    last=$(tail -n 1 <<<"$answers")
    printf '%s %s\n' "$(awk '{ print $1 }' <<<"$answers" | median)" \
        "$(awk '{ printf "%.1f %.1f %s %s", $2 / 1024, $3 / 1024, $4, $5 }' <<<"$last")"
}

# bench_grid: the grid's figures (issue 20, "Speed"): the first page and the page $deep rows
# deep, through the JSON route and the HTML page, then the first page in Chromium.
bench_grid() {
    start_bench_serve
    local email=bench@example.com password='violet kettle marches north' token jar code
    local grid_path="/tables/public/bench_orders"
    local view=(--data-urlencode fc=kind --data-urlencode fo=eq --data-urlencode fv=order --data-urlencode sort=created_at:desc)
    local api=(--data-urlencode 'filter={"column":"kind","op":"eq","value":"order"}'
               --data-urlencode 'sort=[{"column":"created_at","direction":"desc"}]' --data-urlencode page_size=50)
    token=$(cluster_psql -d fluxbase_bench -tA -c "SELECT session_token FROM dashboard_auth.sign_in('$email', '$password')")
    # The page's session: signed in through the form, as a browser does. The form has no
    # CSRF field (there is no session yet); the same-origin header is what it checks.
    jar=$(mktemp)
    code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -c "$jar" -H 'Sec-Fetch-Site: same-origin' \
               --data-urlencode "email=$email" --data-urlencode "password=$password" "$BENCH_URL/sign-in")
    [ "$code" = 303 ] || fail "signing in through the form answered $code, not 303" "see $LOG_DIR/bench-serve.log"

    step "Measuring the grid ($RUNS requests each after a warm-up, medians of Server-Timing)"
    local json_first json_deep html_first html_deep
    json_first=$(grid_figures "$BENCH_URL/api/tables/public/bench_orders/rows" -G "${api[@]}" -H "Authorization: Bearer $token")
    json_deep=$(grid_figures "$BENCH_URL/api/tables/public/bench_orders/rows" -G "${api[@]}" --data-urlencode "cursor=$cursor" -H "Authorization: Bearer $token")
    html_first=$(grid_figures "$BENCH_URL$grid_path" -G "${view[@]}" -b "$jar")
    html_deep=$(grid_figures "$BENCH_URL$grid_path" -G "${view[@]}" --data-urlencode "cursor=$cursor" -b "$jar")
    rm -f "$jar"

    printf '\n%-52s %8s %8s %8s %8s\n' "the grid, 1,000,000 rows (50-row pages)" "server" "KB" "served" "rows"
    printf '%-52s %8s %8s %8s %8s\n' "----------------------------------------------------" "--------" "--------" "--------" "--------"
    local entry figures
    for entry in "JSON route, first page|$json_first" "JSON route, keyset page ${deep} rows deep|$json_deep" \
                 "HTML page, first page|$html_first" "HTML page, keyset page ${deep} rows deep|$html_deep"; do
        figures=${entry#*|}
        # shellcheck disable=SC2086
        printf '%-52s %8s %8s %8s %8s\n' "${entry%%|*}" $(awk '{ print $1, $2, $3, $5 }' <<<"$figures")
    done

    step "Measuring the first page in Chromium ($RUNS loads after a warm-up, medians)"
    local paint
    paint=$("$REPO_ROOT/target/release/examples/grid_paint" "$BENCH_URL" "$email" "$password" \
                "$grid_path?fc=kind&fo=eq&fv=order&sort=created_at:desc" "$RUNS" 2> "$LOG_DIR/bench-grid-paint.log") \
        || fail "the paint timer failed" "see $LOG_DIR/bench-grid-paint.log" "$LOG_DIR/bench-grid-paint.log"
    printf '\n%-52s %8s\n' "the grid in Chromium, first page" "ms"
    printf '%-52s %8s\n' "----------------------------------------------------" "--------"
    printf '%-52s %8s\n' "navigation start to DOMContentLoaded (#grid parsed)" "$(sed -n 's/^dom_content_loaded //p' <<<"$paint")"
    printf '%-52s %8s\n' "navigation start to first contentful paint" "$(sed -n 's/^first_contentful_paint //p' <<<"$paint")"
    printf '%-52s %8s\n' "navigation start to the load event (grid.js run)" "$(sed -n 's/^load //p' <<<"$paint")"

    echo
    local columns
    columns=$(cluster_psql -d fluxbase_bench -tA -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.bench_orders'::regclass AND attnum > 0 AND NOT attisdropped")
    info "Server time in ms (Server-Timing, to the response's head), medians of $RUNS; KB: the body uncompressed;"
    info "served: the bytes sent, Content-Encoding $(awk '{ print $4 }' <<<"$html_first") (the request offered gzip, br and zstd)."
    info "$(awk -v j1="${json_first%% *}" -v j2="${json_deep%% *}" -v h1="${html_first%% *}" -v h2="${html_deep%% *}" \
        'BEGIN { printf "Deep page / first page: JSON %.2fx, HTML %.2fx (goal: within 1.5x).", j2 / j1, h2 / h1 }')"
    info "$(awk -v h1="${html_first%% *}" 'BEGIN { printf "HTML first page at the server: %.2f ms (goal: under 5 ms: %s).", h1, (h1 < 5 ? "met" : "missed") }')"
    info "$(awk -v kb="$(awk '{ print $2 }' <<<"$html_first")" -v c="$columns" \
        'BEGIN { printf "HTML page of 50 rows of %d columns: %.1f KB (goal: under 100 KB for 50 rows of 10 columns).", c, kb }')"
}

if [ "$BENCH_ONLY" = grid ]; then
    ensure_cluster bench "$BENCH_PORT" "$(credentials_get bench POSTGRES_PASSWORD)" fast
    cursor=$(deep_cursor)
    bench_grid
    exit 0
fi

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

cursor=$(deep_cursor)
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

bench_grid
