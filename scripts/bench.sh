#!/usr/bin/env bash
# `make bench`: figures for the speed goals (issue 21), printed as medians; nothing is
# asserted, and the script exits 0 whether the goals are met or not. It builds in release,
# starts its own cluster (port 54331, /var/lib/postgresql/fluxbase/bench) and makes its own
# data: a database with 5,000 tables for the analytics functions and the catalog, and a
# 1,000,000-row table for the explorer's paging. It ends with one summary table (Markdown,
# ready for the README's "Performance" section) of medians and of ratios taken in this run.
#
# Sections, in order: analytics (5,000 tables), browse (the SQL level, the floor, an
# impersonated page), grid (fluxbase serve: the grid's pages and Chromium), load (the same
# server under wrk: the JSON route and the HTML page at 1, 8 and 32 clients, the session
# check's share, logins, memory). BENCH_ONLY=browse,load (any of them, comma-separated)
# runs only those, against the bench cluster and database a full run made, with the
# extension as installed now: for working on a section without remaking the data.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster.sh"
cd "$REPO_ROOT"

BENCH_PORT="${FLUXBASE_BENCH_PGPORT:-54331}"
RUNS="${BENCH_RUNS:-7}"
# How long each load run lasts (pgbench -T, wrk -d), in seconds.
LOAD_SECONDS="${BENCH_SECONDS:-10}"
BENCH_ONLY="${BENCH_ONLY:-}"
for section in ${BENCH_ONLY//,/ }; do
    case "$section" in
        analytics | browse | grid | load) ;;
        *) fail "unknown section $section in BENCH_ONLY" "use any of analytics, browse, grid, load, comma-separated" ;;
    esac
done

# wanted SECTION: whether this run measures SECTION.
wanted() {
    [ -z "$BENCH_ONLY" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]
}

# Every figure the summary uses, by name; what a section did not measure stays unset (n/a).
declare -A FIG=()

# Studio's backend (@supabase/postgres-meta) on this kind of machine: the anchor of issue 21.
STUDIO_FIRST_MS=8.7
STUDIO_DEEP_MS=79
STUDIO_RPS_8=200
STUDIO_RSS_MB=190

# median [DECIMALS]: the median of a column of numbers on stdin (2 decimals by default).
median() {
    sort -n | awk -v d="${1:-2}" '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.*f", d, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# is_num VALUE: whether VALUE is a plain non-negative number (not "n/a" or empty).
is_num() {
    [[ "${1:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]
}

# ratio A B: A / B, with fewer decimals as it grows; n/a unless both are numbers and B > 0.
ratio() {
    if is_num "${1:-}" && is_num "${2:-}" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r >= 100 ? "%.0f" : (r >= 10 ? "%.1f" : "%.2f")), r }'
    else
        printf 'n/a'
    fi
}

# verdict VALUE OP LIMIT: "met" or "missed" (OP is <, <= or >=), or n/a without a value.
verdict() {
    is_num "${1:-}" || { printf 'n/a'; return; }
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { ok = (op == "<" ? v < l : (op == "<=" ? v <= l : v >= l)); printf (ok ? "met" : "missed") }'
}

# both VERDICT VERDICT: met when both are, n/a when either is.
both() {
    if [ "$1" = n/a ] || [ "$2" = n/a ]; then printf 'n/a'
    elif [ "$1" = met ] && [ "$2" = met ]; then printf 'met'
    else printf 'missed'; fi
}

# fig NAME [UNIT]: a figure as printed, with its unit, or n/a.
fig() {
    if is_num "${FIG[$1]:-}"; then printf '%s%s' "${FIG[$1]}" "${2:-}"; else printf 'n/a'; fi
}

# median_ms SQL: runs SQL $RUNS times in one session (after one warm-up run), signed in as
# the bench admin (the token is :'tok'), and prints the median of psql's \timing.
median_ms() {
    local script
    script=$(printf "SELECT session_token AS tok FROM dashboard_auth.sign_in('bench@example.com', 'violet kettle marches north') \\\\gset\n%s\n\\\\timing on\n" "$1")
    for _ in $(seq 1 "$RUNS"); do script+=$'\n'"$1"; done
    cluster_psql -d fluxbase_bench -o /dev/null <<<"$script" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | median
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

# ---- Analytics and the catalog on 5,000 tables ----

bench_analytics() {
    step "Measuring the analytics ($RUNS runs each, medians)"
    printf '\n%-52s %12s\n' "analytics on 5,000 tables" "median ms"
    printf '%-52s %12s\n' "----------------------------------------------------" "------------"
    local entry name ms
    for entry in \
        "get_metrics|metrics|SELECT fluxbase_admin.get_metrics(:'tok');" \
        "list_table_sizes, top 100||SELECT count(*) FROM fluxbase_admin.list_table_sizes(:'tok');" \
        "list_table_sizes, all 5,000|table_sizes_all|SELECT count(*) FROM fluxbase_admin.list_table_sizes(:'tok', top => 10000);" \
        "list_schema_sizes||SELECT count(*) FROM fluxbase_admin.list_schema_sizes(:'tok');" \
        "list_activity||SELECT count(*) FROM fluxbase_admin.list_activity(:'tok');" \
        "list_maintenance, top 100||SELECT count(*) FROM fluxbase_admin.list_maintenance(:'tok');" \
        "list_index_usage, top 100 of 10,000||SELECT count(*) FROM fluxbase_admin.list_index_usage(:'tok');" \
        "list_bloat, top 100 of 15,000||SELECT count(*) FROM fluxbase_admin.list_bloat(:'tok');" \
        "a metric sample's figures||SELECT fluxbase_admin.headline_figures();" \
        "explorer catalog, first page (500 of 5,000)|catalog_first|SELECT fluxbase_admin.list_tables(:'tok');" \
        "explorer catalog, a page of 1,000 of 5,000||SELECT fluxbase_admin.list_tables(:'tok', page_size => 1000);"; do
        name=${entry#*|}; name=${name%%|*}
        ms=$(median_ms "${entry##*|}")
        [ -n "$name" ] && FIG[$name]=$ms
        printf '%-52s %12s\n' "${entry%%|*}" "$ms"
    done
}

# ---- Browse at the SQL level, the floor, and an impersonated page ----

DATA_PASSWORD=$(credentials_get bench DATA_PASSWORD)
# The app user of the impersonated page, and the policy that lets its role read the rows.
BENCH_APP_USER=reader@example.com

# data_plane_ms OPERATION REQUEST CALL [IMPERSONATED_EMAIL]: a page the way fluxbase serve
# gets it, in its three parts: the ticket on the dashboard plane, then the claim and the
# call on the data login, each timed by psql over $RUNS tickets (after one warm-up). With
# an email, the admin first starts impersonating that app user, and every ticket carries
# the impersonation's id. Prints "ticket claim call total" in milliseconds.
data_plane_ms() {
    local issued tickets data_script timings imp_arg="" imp_start=""
    if [ -n "${4:-}" ]; then
        imp_start="SELECT impersonation_id AS imp FROM auth.start_impersonation(:'tok', 'user', '$4', 'make bench') \gset"
        imp_arg=", :'imp'"
    fi
    issued=$(
        {
            echo "SELECT session_token AS tok FROM dashboard_auth.sign_in('bench@example.com', 'violet kettle marches north') \gset"
            echo "$imp_start"
            echo '\timing on'
            for _ in $(seq 0 "$RUNS"); do echo "SELECT fluxbase_admin.issue_ticket(:'tok', '$1', '$2'$imp_arg);"; done
        } | cluster_psql -d fluxbase_bench -tA 2>&1
    )
    tickets=$(grep '^fbk_' <<<"$issued") || { tail -n 5 <<<"$issued" >&2; fail "no tickets were issued" "see psql's answer above"; }
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

# floor_pgbench SQL CLIENTS: the floor, SQL as a prepared statement (pgbench -M prepared)
# over CLIENTS persistent connections (TCP, as fluxbase serve connects) for $LOAD_SECONDS.
# Prints "<median latency ms> <pages/s>".
floor_pgbench() {
    local dir out tps latency
    dir=$(mktemp -d)
    printf '%s\n' "$1" > "$dir/page.sql"
    out=$(cd "$dir" && PGPASSWORD="$(credentials_get bench POSTGRES_PASSWORD)" "$PG_BIN/pgbench" -n -M prepared \
              -f "$dir/page.sql" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -T "$LOAD_SECONDS" -l --log-prefix="$dir/tx" \
              -h 127.0.0.1 -p "$BENCH_PORT" -U postgres fluxbase_bench 2>&1) \
        || { printf '%s\n' "$out" > "$LOG_DIR/bench-pgbench.log"; rm -rf "$dir"
             fail "pgbench failed" "see $LOG_DIR/bench-pgbench.log" "$LOG_DIR/bench-pgbench.log"; }
    printf '%s\n' "$out" >> "$LOG_DIR/bench-pgbench.log"
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
    # The per-transaction log: the third field is the latency in microseconds.
    latency=$(cat "$dir"/tx.* | awk '{ print $3 / 1000 }' | median 3)
    rm -rf "$dir"
    printf '%s %.0f' "$latency" "$tps"
}

# setup_impersonation: an app user (auth.users, through the extension's invite) whose role
# (authenticated) reads bench_orders under RLS, through a policy that calls auth.uid() as
# an app's policies do (wrapped in a SELECT, so it runs once per statement). The explorer
# bypasses RLS, so the other figures do not change. Idempotent.
setup_impersonation() {
    cluster_psql -d fluxbase_bench >/dev/null <<SQL
SET client_min_messages = warning;
GRANT SELECT ON public.bench_orders TO authenticated;
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = 'bench_orders'
                                              AND policyname = 'bench_signed_in_read') THEN
        CREATE POLICY bench_signed_in_read ON public.bench_orders FOR SELECT TO authenticated
            USING ((SELECT auth.uid()) IS NOT NULL);
    END IF;
    IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = 'public.bench_orders'::regclass) THEN
        ALTER TABLE public.bench_orders ENABLE ROW LEVEL SECURITY;
    END IF;
END \$\$;
SELECT NOT EXISTS (SELECT 1 FROM auth.users WHERE email = '$BENCH_APP_USER') AS need_user \gset
\if :need_user
SELECT session_token AS tok FROM dashboard_auth.sign_in('bench@example.com', 'violet kettle marches north') \gset
SELECT * FROM auth.invite_user(:'tok', '$BENCH_APP_USER');
\endif
SQL
}

bench_browse() {
    local cursor deep_row deep_at deep_id page_sql keyset_sql floor_first floor_deep floor_8
    cursor=$(deep_cursor)
    setup_impersonation

    step "Measuring the floor: the same page as JSON from a prepared statement (pgbench, ${LOAD_SECONDS} s each)"
    deep_row=$(cluster_psql -d fluxbase_bench -tA -F '|' -c "SELECT created_at, id FROM public.bench_orders WHERE kind = 'order' ORDER BY created_at DESC, id OFFSET $((deep - 1)) LIMIT 1")
    deep_at=${deep_row%%|*}; deep_id=${deep_row#*|}
    page_sql="SELECT jsonb_agg(to_jsonb(t)) FROM (SELECT id, kind, customer, created_at, amount, note FROM public.bench_orders WHERE kind = 'order'"
    keyset_sql="$page_sql AND created_at <= '$deep_at' AND (created_at < '$deep_at' OR id > $deep_id) ORDER BY created_at DESC, id LIMIT 50) t;"
    page_sql+=" ORDER BY created_at DESC, id LIMIT 50) t;"
    floor_first=$(floor_pgbench "$page_sql" 1)
    floor_deep=$(floor_pgbench "$keyset_sql" 1)
    floor_8=$(floor_pgbench "$page_sql" 8)
    FIG[floor_first]=${floor_first% *}; FIG[floor_deep]=${floor_deep% *}; FIG[floor_rps_8]=${floor_8#* }
    printf '\n%-52s %10s %10s\n' "the floor, 1,000,000 rows (50 rows as JSON)" "median ms" "pages/s"
    printf '%-52s %10s %10s\n' "----------------------------------------------------" "----------" "----------"
    printf '%-52s %10s %10s\n' "first page, 1 connection" $floor_first
    printf '%-52s %10s %10s\n' "keyset page ${deep} rows deep, 1 connection" $floor_deep
    printf '%-52s %10s %10s\n' "first page, 8 clients (2 threads)" $floor_8

    step "Measuring browse at the SQL level ($RUNS pages each after a warm-up, medians)"
    printf '\n%-52s %8s %8s %8s %8s %8s\n' "explorer paging, 1,000,000 rows (50-row pages)" "ticket" "claim" "page" "total" "x floor"
    printf '%-52s %8s %8s %8s %8s %8s\n' "----------------------------------------------------" "--------" "--------" "--------" "--------" "--------"
    local entry label name request floor imp figures total
    for entry in \
        "first page|browse_first|floor_first|{$request_base, \"total\": \"none\"}|" \
        "first page with its total (planner's estimate)||floor_first|{$request_base}|" \
        "first page with an exact count (capped at 100,000)|browse_exact|floor_first|{$request_base, \"total\": \"exact\"}|" \
        "keyset page ${deep} rows deep|browse_deep|floor_deep|{$request_base, \"cursor\": \"$cursor\", \"total\": \"none\"}|" \
        "first page as an app user under RLS (impersonated)|browse_imp|floor_first|{$request_base, \"total\": \"none\"}|$BENCH_APP_USER"; do
        IFS='|' read -r label name floor request imp <<<"$entry"
        figures=$(data_plane_ms browse "$request" "SELECT fluxbase_admin.browse();" "$imp")
        total=${figures##* }
        [ -n "$name" ] && FIG[$name]=$total
        # shellcheck disable=SC2086
        printf '%-52s %8s %8s %8s %8s %8s\n' "$label" $figures "$(ratio "$total" "${FIG[$floor]}")"
    done
    FIG[browse_offset]=$(median_ms "SELECT * FROM public.bench_orders WHERE kind = 'order' ORDER BY created_at DESC, id LIMIT 50 OFFSET $deep;")
    printf '%-52s %8s %8s %8s %8s %8s\n' "OFFSET page ${deep} rows deep (plain SQL, as Studio)" "" "" \
        "${FIG[browse_offset]}" "" "$(ratio "${FIG[browse_offset]}" "${FIG[floor_deep]}")"
    echo
    info "Times in ms, medians of $RUNS; x floor: the total over the floor's page at the same depth (1 connection)."
    info "The impersonated page: $BENCH_APP_USER (role authenticated), policy bench_signed_in_read on bench_orders."
    info "The goal: the first page within 1 ms, the deep keyset page within 1.5x of the first page."
}

# ---- fluxbase serve on the bench database: the grid (issue 20), then the load ----

BENCH_URL=""
BENCH_EMAIL=bench@example.com
BENCH_PASSWORD='violet kettle marches north'
BENCH_GRID_PATH="/tables/public/bench_orders"
# The grid's view and the JSON route's query: the same filter and sort as every page here.
BENCH_VIEW=(--data-urlencode fc=kind --data-urlencode fo=eq --data-urlencode fv=order --data-urlencode sort=created_at:desc)
BENCH_API=(--data-urlencode 'filter={"column":"kind","op":"eq","value":"order"}'
           --data-urlencode 'sort=[{"column":"created_at","direction":"desc"}]' --data-urlencode page_size=50)

# rss_mb FIELD: fluxbase serve's VmRSS (resident now) or VmHWM (its peak), in MB.
rss_mb() {
    awk -v f="$1:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$BENCH_SERVE_PID/status"
}

# start_bench_serve: builds fluxbase (and, for the grid section, the paint timer), makes the
# dashboard login, and runs `fluxbase serve` on a free port, as make run does
# (scripts/dev.sh); sets BENCH_URL, and the figures of its start: the time from its launch
# to the first 200 on /healthz, and its resident memory a second later. Then signs in: a
# bearer token for the JSON route, a session cookie (through the form) for the pages. The
# server stops when this script ends.
start_bench_serve() {
    step "Building fluxbase$(wanted grid && echo " and the grid's paint timer") (release)"
    run_logged "$LOG_DIR/build-fluxbase.log" "see the log; run: cargo build --release -p fluxbase" -- \
        cargo build --release -p fluxbase
    if wanted grid; then
        run_logged "$LOG_DIR/build-grid-paint.log" "see the log; run: cargo build --release -p fluxbase-tests --example grid_paint" -- \
            cargo build --release -p fluxbase-tests --example grid_paint
    fi

    step "Starting fluxbase serve on the bench database"
    local dashboard_password data_password secret serve_log port="" started code=""
    dashboard_password=$(credentials_get bench DASHBOARD_PASSWORD)
    data_password=$(credentials_get bench DATA_PASSWORD)
    secret=$(credentials_get bench SESSION_SECRET "$(openssl rand -hex 32)")
    ensure_login_role fluxbase_web "$dashboard_password" "fluxbase_dashboard" NOINHERIT >/dev/null
    cluster_psql -d postgres -q -c "SET client_min_messages = error; REVOKE anon, authenticated, service_role, fluxbase_explorer FROM fluxbase_web"
    ensure_login_role fluxbase_data "$data_password" "anon" NOINHERIT >/dev/null
    serve_log="$LOG_DIR/bench-serve.log"
    # A heartbeat of 60 s (the longest): its metric samples would otherwise land among
    # the timed requests.
    started=$(date +%s%N)
    DATABASE_URL="postgresql://fluxbase_web:${dashboard_password}@127.0.0.1:${BENCH_PORT}/fluxbase_bench" \
    FLUXBASE_ADMIN_DATA_DATABASE_URL="postgresql://fluxbase_data:${data_password}@127.0.0.1:${BENCH_PORT}/fluxbase_bench" \
    FLUXBASE_ADMIN_SESSION_SECRET="$secret" \
        "$REPO_ROOT/target/release/fluxbase" serve --port 0 --heartbeat-interval 60s > "$serve_log" 2>&1 &
    BENCH_SERVE_PID=$!
    trap 'kill "$BENCH_SERVE_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 3000); do
        port=$(sed -n 's|.*listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$serve_log")
        [ -n "$port" ] && break
        kill -0 "$BENCH_SERVE_PID" 2>/dev/null || fail "fluxbase serve stopped" "see $serve_log" "$serve_log"
        sleep 0.01
    done
    [ -n "$port" ] || fail "fluxbase serve did not start within 30 s" "see $serve_log" "$serve_log"
    # localhost, as the server's own links say (cookies and Origin checks agree with it).
    BENCH_URL="http://localhost:$port"
    for _ in $(seq 1 500); do
        code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$BENCH_URL/healthz" || true)
        [ "$code" = 200 ] && break
        sleep 0.01
    done
    [ "$code" = 200 ] || fail "GET /healthz answered $code" "see $serve_log" "$serve_log"
    FIG[start_ms]=$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.0f", (b - a) / 1000000 }')
    sleep 1
    FIG[rss_idle]=$(rss_mb VmRSS)
    info "listening on $BENCH_URL (log: $serve_log); the first 200 on /healthz ${FIG[start_ms]} ms after launch; resident ${FIG[rss_idle]} MB"

    BENCH_TOKEN=$(cluster_psql -d fluxbase_bench -tA -c "SELECT session_token FROM dashboard_auth.sign_in('$BENCH_EMAIL', '$BENCH_PASSWORD')")
    # The page's session: signed in through the form, as a browser does. The form has no
    # CSRF field (there is no session yet); the same-origin header is what it checks.
    BENCH_JAR=$(mktemp)
    code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -c "$BENCH_JAR" -H 'Sec-Fetch-Site: same-origin' \
               --data-urlencode "email=$BENCH_EMAIL" --data-urlencode "password=$BENCH_PASSWORD" "$BENCH_URL/sign-in")
    [ "$code" = 303 ] || fail "signing in through the form answered $code, not 303" "see $serve_log"
    # The same cookie as a header, for wrk (curl's jar: name and value are the last two fields).
    BENCH_COOKIE=$(awk -F '\t' 'NF >= 7 { print $6 "=" $7 }' "$BENCH_JAR" | head -n 1)
}

ensure_bench_serve() {
    [ -n "$BENCH_URL" ] || start_bench_serve
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
# deep, through the JSON route and the HTML page, the catalog's first page (/tables), then
# the first page in Chromium.
bench_grid() {
    ensure_bench_serve
    local cursor
    cursor=$(deep_cursor)

    step "Measuring the grid ($RUNS requests each after a warm-up, medians of Server-Timing)"
    local json_first json_deep html_first html_deep tables_first
    local api_url="$BENCH_URL/api/tables/public/bench_orders/rows" auth=(-H "Authorization: Bearer $BENCH_TOKEN")
    json_first=$(grid_figures "$api_url" -G "${BENCH_API[@]}" "${auth[@]}")
    json_deep=$(grid_figures "$api_url" -G "${BENCH_API[@]}" --data-urlencode "cursor=$cursor" "${auth[@]}")
    html_first=$(grid_figures "$BENCH_URL$BENCH_GRID_PATH" -G "${BENCH_VIEW[@]}" -b "$BENCH_JAR")
    html_deep=$(grid_figures "$BENCH_URL$BENCH_GRID_PATH" -G "${BENCH_VIEW[@]}" --data-urlencode "cursor=$cursor" -b "$BENCH_JAR")
    tables_first=$(grid_figures "$BENCH_URL/tables" -b "$BENCH_JAR")
    FIG[json_server_first]=${json_first%% *}; FIG[json_server_deep]=${json_deep%% *}
    FIG[html_server_first]=${html_first%% *}; FIG[html_server_deep]=${html_deep%% *}
    FIG[tables_page]=${tables_first%% *}

    printf '\n%-52s %8s %8s %8s %8s\n' "the grid, 1,000,000 rows (50-row pages)" "server" "KB" "served" "rows"
    printf '%-52s %8s %8s %8s %8s\n' "----------------------------------------------------" "--------" "--------" "--------" "--------"
    local entry figures
    for entry in "JSON route, first page|$json_first" "JSON route, keyset page ${deep} rows deep|$json_deep" \
                 "HTML page, first page|$html_first" "HTML page, keyset page ${deep} rows deep|$html_deep" \
                 "the catalog, /tables (5,000 tables), first page|$tables_first"; do
        figures=${entry#*|}
        # shellcheck disable=SC2086
        printf '%-52s %8s %8s %8s %8s\n' "${entry%%|*}" $(awk '{ print $1, $2, $3, $5 }' <<<"$figures")
    done

    step "Measuring the first page in Chromium ($RUNS loads after a warm-up, medians)"
    local paint
    paint=$("$REPO_ROOT/target/release/examples/grid_paint" "$BENCH_URL" "$BENCH_EMAIL" "$BENCH_PASSWORD" \
                "$BENCH_GRID_PATH?fc=kind&fo=eq&fv=order&sort=created_at:desc" "$RUNS" 2> "$LOG_DIR/bench-grid-paint.log") \
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

# CPU time, in ticks of the kernel's clock: fluxbase serve's; the bench cluster's (the
# postmaster, its live children, and the children it has reaped); and the machine's, as
# "busy total" over all cores.
CLOCK_TICKS=$(getconf CLK_TCK)
serve_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$BENCH_SERVE_PID/stat"
}
pg_ticks() {
    local postmaster total child
    postmaster=$(head -n 1 "$CLUSTER_DATA/postmaster.pid")
    total=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$postmaster/stat")
    for child in $(ps -o pid= --ppid "$postmaster"); do
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$child/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
machine_ticks() {
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

# wrk_run CLIENTS SCRIPT URL [WRK_ARGS...]: $LOAD_SECONDS of requests from CLIENTS
# connections (2 threads, 1 for 1 client), with wrk's full output in bench-wrk.log. Prints
# "<p50 ms> <p99 ms> <requests/s> <requests> <non-2xx/3xx answers> <socket errors>
# <CPU ms per request: fluxbase serve> <Postgres> <wrk> <the rest of the machine's busy
# time: whatever else runs on it> <the machine's busy %>".
wrk_run() {
    local clients="$1" script="$2" url="$3" out line s0 p0 m0 s1 p1 m1 TIMEFORMAT='wrk-cpu %U %S'
    shift 3
    # Half a second before each reading: a backend that is exiting (a psql just closed, or a
    # data connection dropped because wrk hung up mid-request) has its time counted nowhere
    # until the postmaster reaps it.
    sleep 0.5
    s0=$(serve_ticks); p0=$(pg_ticks); m0=$(machine_ticks)
    out=$( { time wrk -t "$(( clients < 2 ? 1 : 2 ))" -c "$clients" -d "${LOAD_SECONDS}s" --timeout 10s --latency \
                 -s "$script" "$@" "$url" 2>&1; } 2>&1) || true
    sleep 0.5
    s1=$(serve_ticks); p1=$(pg_ticks); m1=$(machine_ticks)
    printf '== %s, %s clients, %s\n%s\n\n' "$url" "$clients" "$(basename "$script")" "$out" >> "$LOG_DIR/bench-wrk.log"
    line=$(sed -n 's/^wrk-figures //p' <<<"$out")
    [ -n "$line" ] || fail "wrk gave no figures for $url" "see $LOG_DIR/bench-wrk.log" "$LOG_DIR/bench-wrk.log"
    awk -v line="$line" -v wrk_cpu="$(sed -n 's/^wrk-cpu //p' <<<"$out")" -v hz="$CLOCK_TICKS" \
        -v s="$((s1 - s0))" -v p="$((p1 - p0))" \
        -v b="$(( ${m1% *} - ${m0% *} ))" -v t="$(( ${m1#* } - ${m0#* } ))" 'BEGIN {
            split(line, f, " "); split(wrk_cpu, w, " "); n = (f[4] > 0 ? f[4] : 1); ms = 1000 / hz / n
            wrk = (w[1] + w[2]) * hz
            rest = b - s - p - wrk; if (rest < 0) rest = 0
            printf "%.2f %.2f %.0f %d %d %d %.2f %.2f %.2f %.2f %.0f", f[1], f[2], f[3], f[4], f[5], f[6],
                s * ms, p * ms, wrk * ms, rest * ms, (t > 0 ? 100 * b / t : 0)
        }'
}

load_row_format='%-40s %8s %8s %8s %7s %7s %7s %7s %7s %6s\n'
# load_row LABEL FIGURES: one line of the load table from wrk_run's figures.
load_row() {
    # shellcheck disable=SC2086
    set -- "$1" $2
    printf "$load_row_format" "$1" "$2" "$3" "$4" "$(( $6 + $7 ))" "$8" "$9" "${10}" "${11}" "${12}%"
}

# bench_load: the same server under wrk: the JSON route and the HTML page at 1, 8 and 32
# clients; the session check's share of a request; logins alone and beside browsing; and
# fluxbase serve's memory after all of it.
bench_load() {
    ensure_bench_serve
    local report="$LOG_DIR/bench-wrk-report.lua" sign_in="$LOG_DIR/bench-wrk-sign-in.lua"
    # One line of figures at the end of a run (wrk's latencies are in microseconds).
    cat > "$report" <<'LUA'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("wrk-figures %.3f %.3f %.1f %d %d %d\n",
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.requests / (summary.duration / 1000000), summary.requests,
        e.status, e.connect + e.read + e.write + e.timeout))
end
LUA
    # A sign-in through the form, as a browser posts it (the same-origin header is what the
    # form checks); the answer is a 303 to the dashboard.
    { cat <<LUA
wrk.method = "POST"
wrk.body = "email=$(sed 's/@/%40/' <<<"$BENCH_EMAIL")&password=$(tr ' ' '+' <<<"$BENCH_PASSWORD")"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
LUA
      cat "$report"; } > "$sign_in"
    : > "$LOG_DIR/bench-wrk.log"

    local json_url html_url
    json_url=$(curl -sS -o /dev/null -G "${BENCH_API[@]}" -w '%{url_effective}' "$BENCH_URL/api/tables/public/bench_orders/rows")
    html_url=$(curl -sS -o /dev/null -G "${BENCH_VIEW[@]}" -w '%{url_effective}' "$BENCH_URL$BENCH_GRID_PATH")
    local bearer=(-H "Authorization: Bearer $BENCH_TOKEN") cookie=(-H "Cookie: $BENCH_COOKIE")

    step "Timing the session check alone (psql, $RUNS runs, median)"
    FIG[check_session]=$(median_ms "SELECT dashboard_auth.check_session(:'tok');")
    info "dashboard_auth.check_session: ${FIG[check_session]} ms"

    step "Loading the JSON route and the HTML page (wrk, ${LOAD_SECONDS} s each)"
    printf "\n%-40s %35s %31s\n" "" "" "CPU ms per request, and busy"
    printf "$load_row_format" "first page under load (wrk)" "p50 ms" "p99 ms" "req/s" "errors" "serve" "pg" "wrk" "other" "busy"
    printf "$load_row_format" "----------------------------------------" "--------" "--------" "--------" "-------" "-------" "-------" "-------" "-------" "------"
    local clients figures kind
    for kind in json html; do
        for clients in 1 8 32; do
            if [ "$kind" = json ]; then
                figures=$(wrk_run "$clients" "$report" "$json_url" "${bearer[@]}")
                load_row "JSON route, $clients client$([ "$clients" = 1 ] || echo s)" "$figures"
            else
                figures=$(wrk_run "$clients" "$report" "$html_url" "${cookie[@]}")
                load_row "HTML grid page, $clients client$([ "$clients" = 1 ] || echo s)" "$figures"
            fi
            read -r "FIG[${kind}_p50_$clients]" "FIG[${kind}_p99_$clients]" "FIG[${kind}_rps_$clients]" _ <<<"$figures"
        done
    done

    local since made
    since=$(cluster_psql -d fluxbase_bench -tA -c "SELECT now()")
    figures=$(wrk_run 8 "$sign_in" "$BENCH_URL/sign-in")
    load_row "POST /sign-in, 8 clients" "$figures"
    FIG[logins_rps]=$(awk '{ print $3 }' <<<"$figures")
    made=$(cluster_psql -d fluxbase_bench -tA -c "SELECT count(*) FROM dashboard_auth.sessions WHERE created_at >= '$since'")
    # Browsing while 8 logins run, from a second wrk started a second before and ending a
    # second after.
    wrk -t 2 -c 8 -d "$((LOAD_SECONDS + 2))s" --timeout 10s -s "$sign_in" "$BENCH_URL/sign-in" > "$LOG_DIR/bench-wrk-logins.log" 2>&1 &
    local logins_pid=$!
    sleep 1
    figures=$(wrk_run 8 "$report" "$json_url" "${bearer[@]}")
    wait "$logins_pid" || true
    load_row "JSON route, 8 clients, 8 logins beside" "$figures"
    read -r "FIG[json_p50_8_logins]" "FIG[json_p99_8_logins]" "FIG[json_rps_8_logins]" _ <<<"$figures"
    FIG[logins_rps_beside]=$(sed -n 's/^wrk-figures [^ ]* [^ ]* \([0-9.]*\) .*/\1/p' "$LOG_DIR/bench-wrk-logins.log" | awk '{ printf "%.0f", $1 }')

    FIG[rss_load]=$(rss_mb VmRSS)
    FIG[rss_peak]=$(rss_mb VmHWM)
    echo
    info "Latencies are wrk's (at the client, medians and 99th percentiles) over ${LOAD_SECONDS} s; errors: answers"
    info "other than 2xx/3xx, and socket errors. CPU per request in ms: fluxbase serve (serve), the cluster (pg),"
    info "wrk itself, and other work on the machine meanwhile (other); busy: the machine's $(nproc) cores."
    info "Sign-ins: $made sessions made by the ${FIG[logins_rps]}/s run alone; ${FIG[logins_rps_beside]}/s beside browsing (a second wrk, bench-wrk-logins.log)."
    info "fluxbase serve resident: ${FIG[rss_idle]} MB idle after its start, ${FIG[rss_load]} MB after the load, ${FIG[rss_peak]} MB at its peak."
}

# ---- The summary: one table, in Markdown, of this run's medians and ratios ----

# row WHAT OURS COMPARED GOAL: one row of the summary.
# A row this run did not measure (BENCH_ONLY) is left out.
row() {
    [[ "$2" == n/a* ]] && return
    printf '| %s | %s | %s | %s |\n' "$1" "$2" "${3:--}" "${4:--}"
}

# goal TEXT VERDICT FIGURE: one line of the goals, under the table; left out when not measured.
goal() {
    [ "$2" = n/a ] && return
    printf -- '- %s: **%s** (%s)\n' "$1" "$2" "$3"
}

# load_figures KIND CLIENTS: "p50 x ms, p99 y ms, z req/s" of a wrk run.
load_figures() {
    if is_num "${FIG[${1}_rps_$2]:-}"; then
        printf 'p50 %s ms, p99 %s ms, %s req/s' "${FIG[${1}_p50_$2]}" "${FIG[${1}_p99_$2]}" "${FIG[${1}_rps_$2]}"
    else
        printf 'n/a'
    fi
}

summary() {
    local memory share
    memory=$(free -m | awk '$1 == "Mem:" { printf "%.1f GiB", $2 / 1024 }')
    step "Summary"
    echo
    echo "Machine: $(nproc) cores, $memory of memory (free); PostgreSQL $("$PG_BIN/postgres" --version | awk '{ print $3 }'); $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Timings are medians (SQL: $RUNS runs each; wrk: p50 and p99 over ${LOAD_SECONDS} s); every ratio is taken within this run."
    echo "Studio's figures are the anchor of issue 21 (measured once on this kind of machine), not this run's."
    echo
    row "what" "ours" "compared (this run)" "goal"
    echo '|---|---|---|---|'

    row "browse, SQL level: first page (ticket + claim + page)" "$(fig browse_first " ms")" \
        "$(ratio "${FIG[browse_first]:-}" "${FIG[floor_first]:-}")× the floor; $(ratio "${FIG[browse_first]:-}" "$STUDIO_FIRST_MS")× Studio's $STUDIO_FIRST_MS ms" \
        "≤ 1 ms: $(verdict "${FIG[browse_first]:-}" '<=' 1)"
    row "browse, SQL level: keyset page 900,000 deep" "$(fig browse_deep " ms")" \
        "$(ratio "${FIG[browse_deep]:-}" "${FIG[browse_first]:-}")× the first page; $(ratio "${FIG[browse_deep]:-}" "${FIG[floor_deep]:-}")× the floor; $(ratio "${FIG[browse_deep]:-}" "$STUDIO_DEEP_MS")× Studio's $STUDIO_DEEP_MS ms" \
        "≤ 1.5× the first page: $(verdict "$(ratio "${FIG[browse_deep]:-}" "${FIG[browse_first]:-}")" '<=' 1.5)"
    row "browse, SQL level: OFFSET to the same depth (plain SQL, as Studio pages)" "$(fig browse_offset " ms")" \
        "$(ratio "${FIG[browse_offset]:-}" "${FIG[floor_deep]:-}")× the floor's keyset page; $(ratio "${FIG[browse_offset]:-}" "${FIG[browse_deep]:-}")× our keyset page"
    row "browse, SQL level: first page with an exact count (capped at 100,000)" "$(fig browse_exact " ms")" \
        "$(ratio "${FIG[browse_exact]:-}" "${FIG[browse_first]:-}")× the first page; $(ratio "${FIG[browse_exact]:-}" "${FIG[floor_first]:-}")× the floor"
    row "the floor: the same page as JSON, prepared, one connection (pgbench)" \
        "$(fig floor_first " ms") first page; $(fig floor_deep " ms") 900,000 deep" \
        "deep / first $(ratio "${FIG[floor_deep]:-}" "${FIG[floor_first]:-}")×"
    row "the floor at 8 clients (pgbench -c 8 -j 2)" "$(fig floor_rps_8 " pages/s")" \
        "$(ratio "${FIG[floor_rps_8]:-}" "$STUDIO_RPS_8")× Studio's $STUDIO_RPS_8 req/s"
    row "HTTP JSON route, 1 client" "$(load_figures json 1)" \
        "p50 $(ratio "${FIG[json_p50_1]:-}" "${FIG[browse_first]:-}")× the SQL-level first page; $(ratio "${FIG[json_p50_1]:-}" "${FIG[floor_first]:-}")× the floor; $(ratio "${FIG[json_p50_1]:-}" "$STUDIO_FIRST_MS")× Studio's $STUDIO_FIRST_MS ms"
    row "HTTP JSON route, 8 clients" "$(load_figures json 8)" \
        "$(ratio "${FIG[json_rps_8]:-}" "${FIG[floor_rps_8]:-}")× the floor's pages/s; $(ratio "${FIG[json_rps_8]:-}" "$STUDIO_RPS_8")× Studio's $STUDIO_RPS_8 req/s" \
        "≥ 2,000 req/s and p99 < 10 ms: $(both "$(verdict "${FIG[json_rps_8]:-}" '>=' 2000)" "$(verdict "${FIG[json_p99_8]:-}" '<' 10)"); stretch ≥ 0.40× the floor: $(verdict "$(ratio "${FIG[json_rps_8]:-}" "${FIG[floor_rps_8]:-}")" '>=' 0.4)"
    row "HTTP JSON route, 32 clients" "$(load_figures json 32)" \
        "$(ratio "${FIG[json_rps_32]:-}" "${FIG[json_rps_8]:-}")× the req/s at 8 clients; $(ratio "${FIG[json_rps_32]:-}" "${FIG[floor_rps_8]:-}")× the floor's pages/s at 8"
    row "HTML grid page at the server (Server-Timing, first page)" "$(fig html_server_first " ms")" \
        "$(ratio "${FIG[html_server_first]:-}" "${FIG[json_server_first]:-}")× the JSON route's $(fig json_server_first " ms")" \
        "< 5 ms: $(verdict "${FIG[html_server_first]:-}" '<' 5)"
    local clients
    for clients in 1 8 32; do
        row "HTML grid page, $clients client$([ "$clients" = 1 ] || echo s)" "$(load_figures html "$clients")" \
            "$(ratio "${FIG[html_rps_$clients]:-}" "${FIG[json_rps_$clients]:-}")× the JSON route's req/s"
    done
    row "impersonated browse, SQL level (RLS-bound app user, first page)" "$(fig browse_imp " ms")" \
        "$(ratio "${FIG[browse_imp]:-}" "${FIG[browse_first]:-}")× the first page as the explorer; $(ratio "${FIG[browse_imp]:-}" "${FIG[floor_first]:-}")× the floor"
    row "impersonated browse over HTTP" "not measured" "the JSON route takes no impersonation id (ctl/src/tables_api.rs)"
    share=$(awk -v c="${FIG[check_session]:-}" -v r="${FIG[json_p50_1]:-}" 'BEGIN { if (c + 0 > 0 && r + 0 > 0) printf "%.1f", 100 * c / r; else printf "n/a" }')
    row "session check (dashboard_auth.check_session alone, psql)" "$(fig check_session " ms")" \
        "${share}$(is_num "$share" && echo %) of the JSON route's p50 at 1 client" \
        "≤ 5% of a request: $(verdict "$share" '<=' 5)"
    row "logins (POST /sign-in through the form, wrk, 8 clients)" "$(fig logins_rps /s)" \
        "$(fig logins_rps_beside /s) while the JSON route runs at 8 clients"
    row "JSON route p99 at 8 clients while 8 logins run" "$(fig json_p99_8_logins " ms")" \
        "$(ratio "${FIG[json_p99_8_logins]:-}" "${FIG[json_p99_8]:-}")× without logins; $(fig json_rps_8_logins " req/s")" \
        "< 2× without: $(verdict "$(ratio "${FIG[json_p99_8_logins]:-}" "${FIG[json_p99_8]:-}")" '<' 2)"
    row "fluxbase serve resident, idle after its start" "$(fig rss_idle " MB")" \
        "$(ratio "${FIG[rss_idle]:-}" "$STUDIO_RSS_MB")× Studio's $STUDIO_RSS_MB MB" "< 30 MB: $(verdict "${FIG[rss_idle]:-}" '<' 30)"
    row "fluxbase serve resident after the load (peak)" "$(fig rss_load " MB") ($(fig rss_peak " MB"))" \
        "$(ratio "${FIG[rss_peak]:-}" "$STUDIO_RSS_MB")× Studio's $STUDIO_RSS_MB MB (peak)" "< 60 MB: $(verdict "${FIG[rss_peak]:-}" '<' 60)"
    row "fluxbase serve: launch to the first 200 on /healthz (one start)" "$(fig start_ms " ms")"
    row "get_metrics, 5,000 tables" "$(fig metrics " ms")" "" "< 1 s: $(verdict "${FIG[metrics]:-}" '<' 1000)"
    row "list_table_sizes, all 5,000 tables" "$(fig table_sizes_all " ms")" "" "< 1 s: $(verdict "${FIG[table_sizes_all]:-}" '<' 1000)"
    row "the catalog's first page, list_tables (500 of 5,000)" "$(fig catalog_first " ms")" "" "< 50 ms: $(verdict "${FIG[catalog_first]:-}" '<' 50)"
    row "the catalog's first page, HTML /tables at the server" "$(fig tables_page " ms")" \
        "$(ratio "${FIG[tables_page]:-}" "${FIG[catalog_first]:-}")× list_tables alone" "< 50 ms: $(verdict "${FIG[tables_page]:-}" '<' 50)"
    echo
    echo "Goals (issue 21), one line each:"
    echo
    goal "browse at the SQL level, first page ≤ 1 ms" "$(verdict "${FIG[browse_first]:-}" '<=' 1)" "$(fig browse_first " ms")"
    goal "browse at the SQL level, the deep page within 1.5× of the first" \
        "$(verdict "$(ratio "${FIG[browse_deep]:-}" "${FIG[browse_first]:-}")" '<=' 1.5)" "$(ratio "${FIG[browse_deep]:-}" "${FIG[browse_first]:-}")×"
    goal "HTTP JSON route at 8 clients, ≥ 2,000 pages/s (10× Studio's backend)" "$(verdict "${FIG[json_rps_8]:-}" '>=' 2000)" "$(fig json_rps_8 " req/s")"
    goal "HTTP JSON route at 8 clients, p99 under 10 ms" "$(verdict "${FIG[json_p99_8]:-}" '<' 10)" "$(fig json_p99_8 " ms")"
    goal "stretch: HTTP JSON route at 8 clients, ≥ 40% of the floor's pages/s" \
        "$(verdict "$(ratio "${FIG[json_rps_8]:-}" "${FIG[floor_rps_8]:-}")" '>=' 0.4)" "$(ratio "${FIG[json_rps_8]:-}" "${FIG[floor_rps_8]:-}")× the floor"
    goal "HTML grid page under 5 ms at the server" "$(verdict "${FIG[html_server_first]:-}" '<' 5)" "$(fig html_server_first " ms")"
    goal "session check ≤ 5% of a request" "$(verdict "$share" '<=' 5)" "${share}$(is_num "$share" && echo %)"
    goal "browse p99 during logins under 2× its value without them" \
        "$(verdict "$(ratio "${FIG[json_p99_8_logins]:-}" "${FIG[json_p99_8]:-}")" '<' 2)" "$(ratio "${FIG[json_p99_8_logins]:-}" "${FIG[json_p99_8]:-}")×"
    goal "fluxbase serve under 30 MB resident when idle" "$(verdict "${FIG[rss_idle]:-}" '<' 30)" "$(fig rss_idle " MB")"
    goal "fluxbase serve under 60 MB resident under load" "$(verdict "${FIG[rss_peak]:-}" '<' 60)" "$(fig rss_peak " MB") at its peak"
    goal "metrics under 1 s with 5,000 tables" "$(verdict "${FIG[metrics]:-}" '<' 1000)" "$(fig metrics " ms")"
    goal "the catalog under 1 s with 5,000 tables" "$(verdict "${FIG[table_sizes_all]:-}" '<' 1000)" "list_table_sizes of all 5,000: $(fig table_sizes_all " ms")"
    goal "the catalog's first page under 50 ms" \
        "$(both "$(verdict "${FIG[catalog_first]:-}" '<' 50)" "$(verdict "${FIG[tables_page]:-}" '<' 50)")" \
        "list_tables $(fig catalog_first " ms"), /tables $(fig tables_page " ms") at the server"
    echo
    info "Medians on a machine shared with other work: expect 10-20% between runs; compare ratios, not single figures."
    [ -z "$BENCH_ONLY" ] || info "BENCH_ONLY=$BENCH_ONLY: the rows of the other sections are left out; n/a: a figure of another section."
}

# ---- The run ----

if [ -n "$BENCH_ONLY" ]; then
    step "Starting the bench cluster (BENCH_ONLY=$BENCH_ONLY: the data of the last full run)"
    ensure_cluster bench "$BENCH_PORT" "$(credentials_get bench POSTGRES_PASSWORD)" fast
    cluster_psql -d fluxbase_bench -tA -c "SELECT 1 FROM public.bench_orders LIMIT 1" >/dev/null 2>&1 \
        || fail "no bench data" "run make bench once in full (without BENCH_ONLY)"
    wanted analytics && bench_analytics
    wanted browse && bench_browse
    wanted grid && bench_grid
    wanted load && bench_load
    summary
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

bench_analytics

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
ensure_login_role fluxbase_data "$DATA_PASSWORD" "anon" NOINHERIT >/dev/null
cluster_psql -d fluxbase_bench -c "SET client_min_messages = warning" -c "SELECT * FROM fluxbase_admin.prepare_data_login('fluxbase_data')" >/dev/null

bench_browse
bench_grid
bench_load
summary
