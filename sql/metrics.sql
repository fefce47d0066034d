-- Analytics and monitoring: sessions, connections, query performance and storage, a
-- sampled history of the headline figures, and the dashboard copies' pool heartbeats.
--
-- The metric functions take a dashboard session (viewers may read them) and run as the
-- extension's owner, so they see every backend and every statement's text, as
-- pg_read_all_stats would. The dashboard's own reporting (heartbeats, sampling, the
-- Prometheus counters) needs no session.

-- Heartbeats: each running `fluxbase serve` reports its pool here every few seconds.
CREATE TABLE fluxbase_admin.pool_reports (
    instance_id  text PRIMARY KEY,
    hostname     text,
    pid          integer,
    max_size     integer NOT NULL,
    size         integer NOT NULL,
    available    integer NOT NULL,
    waiting      integer NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE fluxbase_admin.pool_reports IS 'Pool status reported by each running fluxbase serve; a copy that stops reporting drops out';
SELECT pg_catalog.pg_extension_config_dump('fluxbase_admin.pool_reports', '');

CREATE TABLE fluxbase_admin.metric_samples (
    sampled_at timestamptz PRIMARY KEY,
    figures    jsonb NOT NULL
);
COMMENT ON TABLE fluxbase_admin.metric_samples IS 'The headline figures over time (fluxbase_admin.sample_metrics)';
SELECT pg_catalog.pg_extension_config_dump('fluxbase_admin.metric_samples', '');

REVOKE ALL ON fluxbase_admin.pool_reports, fluxbase_admin.metric_samples FROM PUBLIC;

-- Query texts are shown to admins and viewers through fluxbase_admin.redact_sql(query)
-- (Rust, sql_runner.rs): every string literal, dollar-quoted and E'...' ones included, as
-- '***', since a query typed into psql may carry a password (ALTER ROLE ... PASSWORD
-- '...', a login call). It reads the text with the SQL runner's lexer: a regular
-- expression cannot tell a quote inside $$...$$ or after a backslash from one that ends a
-- literal.

-- A copy that has not reported for this long has stopped.
CREATE FUNCTION fluxbase_admin.heartbeat_timeout() RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '30 seconds' $$;

-- ---------------------------------------------------------------------------------
-- The figures (internal: the session-checked functions below and the sampler use them)
-- ---------------------------------------------------------------------------------

CREATE FUNCTION fluxbase_admin.headline_figures() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'connections', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend'),
        'max_connections', pg_catalog.current_setting('max_connections')::int,
        'active_queries', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
                            WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_catalog.pg_backend_pid()),
        'dashboard_sessions', (SELECT pg_catalog.count(*) FROM dashboard_auth.live_sessions),
        'app_sessions', (SELECT pg_catalog.count(*) FROM auth.sessions s WHERE s.revoked_at IS NULL AND s.expires_at > pg_catalog.now()),
        'impersonations', (SELECT pg_catalog.count(*) FROM auth.impersonation_sessions i WHERE i.active AND i.expires_at > pg_catalog.now()),
        'database_bytes', pg_catalog.pg_database_size(pg_catalog.current_database()),
        'cache_hit_ratio', (SELECT pg_catalog.round(d.blks_hit::numeric / nullif(d.blks_hit + d.blks_read, 0), 4)
                              FROM pg_catalog.pg_stat_database d WHERE d.datname = pg_catalog.current_database()),
        'transactions_committed', (SELECT d.xact_commit FROM pg_catalog.pg_stat_database d WHERE d.datname = pg_catalog.current_database())
    )
$$;

-- ---------------------------------------------------------------------------------
-- Session-checked metrics (fluxbase_dashboard; viewers may read them)
-- ---------------------------------------------------------------------------------

-- Active sessions: the dashboard's, the app users', impersonations, and the headline figures.
CREATE FUNCTION fluxbase_admin.get_metrics(session_token text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN fluxbase_admin.headline_figures();
END
$$;

-- Database backends by state, application and user.
CREATE FUNCTION fluxbase_admin.list_backends(session_token text DEFAULT NULL)
RETURNS TABLE (state text, application_name text, usename text, backends bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY
    SELECT coalesce(a.state, 'unknown'), coalesce(nullif(a.application_name, ''), '(none)'), coalesce(a.usename::text, '(none)'),
           pg_catalog.count(*)
      FROM pg_catalog.pg_stat_activity a
     WHERE a.backend_type = 'client backend'
     GROUP BY 1, 2, 3
     ORDER BY 4 DESC, 1, 2, 3;
END
$$;

-- The backends doing something: running queries and open transactions, longest first,
-- with what each waits on and who blocks it. `idle_for` is how long a session has been
-- idle in a transaction (it holds its locks and snapshot all that time); NULL for the
-- others. `database` tells this database's backends, the ones cancel_backend and
-- terminate_backend may signal, from the rest of the cluster's. Query texts are cut at
-- 1,000 characters.
CREATE FUNCTION fluxbase_admin.list_activity(session_token text DEFAULT NULL)
RETURNS TABLE (pid integer, database text, usename text, application_name text, state text, transaction_age interval,
               query_age interval, idle_for interval, wait_event_type text, wait_event text, blocked_by integer[],
               query text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY
    SELECT a.pid, a.datname::text, a.usename::text, a.application_name, a.state,
           pg_catalog.now() - a.xact_start, pg_catalog.now() - a.query_start,
           CASE WHEN a.state LIKE 'idle in transaction%' THEN pg_catalog.now() - a.state_change END,
           a.wait_event_type, a.wait_event, pg_catalog.pg_blocking_pids(a.pid),
           pg_catalog.left(fluxbase_admin.redact_sql(a.query), 1000)
      FROM pg_catalog.pg_stat_activity a
     WHERE a.backend_type = 'client backend' AND a.pid <> pg_catalog.pg_backend_pid()
       AND (a.state = 'active' OR a.xact_start IS NOT NULL)
     ORDER BY a.xact_start NULLS LAST, a.query_start;
END
$$;

-- Connections against the server's limits, and each dashboard copy's pool.
CREATE FUNCTION fluxbase_admin.get_connections(session_token text DEFAULT NULL)
RETURNS TABLE (in_use bigint, max_connections integer, superuser_reserved_connections integer, available_to_others bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    in_use := (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'client backend');
    max_connections := pg_catalog.current_setting('max_connections')::int;
    superuser_reserved_connections := pg_catalog.current_setting('superuser_reserved_connections')::int;
    available_to_others := max_connections - superuser_reserved_connections - in_use;
    RETURN NEXT;
END
$$;

CREATE FUNCTION fluxbase_admin.list_pools(session_token text DEFAULT NULL)
RETURNS TABLE (instance_id text, hostname text, pid integer, max_size integer, size integer, available integer,
               waiting integer, reported_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY
    SELECT r.instance_id, r.hostname, r.pid, r.max_size, r.size, r.available, r.waiting, r.reported_at
      FROM fluxbase_admin.pool_reports r
     WHERE r.reported_at > pg_catalog.now() - fluxbase_admin.heartbeat_timeout()
     ORDER BY r.instance_id;
END
$$;

-- Query performance from pg_stat_statements: the top statements by total and by mean
-- time. When the extension is missing or not preloaded, `available` is false and `note`
-- says how to enable it; this never raises.
CREATE FUNCTION fluxbase_admin.list_statements(session_token text DEFAULT NULL, top integer DEFAULT 20)
RETURNS TABLE (available boolean, note text, ranking text, query text, calls bigint, total_ms double precision,
               mean_ms double precision, rows bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    home text;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    IF top IS NULL OR top NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'top must be between 1 and 500' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT n.nspname INTO home FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_stat_statements';
    IF home IS NULL THEN
        RETURN QUERY SELECT false,
            'pg_stat_statements is not installed in this database: add it to shared_preload_libraries in postgresql.conf, restart, then run CREATE EXTENSION pg_stat_statements',
            NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::bigint;
        RETURN;
    END IF;
    BEGIN
        RETURN QUERY EXECUTE pg_catalog.format(
            $q$
            (SELECT true, NULL::text, 'total', pg_catalog.left(fluxbase_admin.redact_sql(s.query), 1000), s.calls, s.total_exec_time, s.mean_exec_time, s.rows
               FROM %1$I.pg_stat_statements s WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
              ORDER BY s.total_exec_time DESC LIMIT $1)
            UNION ALL
            (SELECT true, NULL::text, 'mean', pg_catalog.left(fluxbase_admin.redact_sql(s.query), 1000), s.calls, s.total_exec_time, s.mean_exec_time, s.rows
               FROM %1$I.pg_stat_statements s WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
              ORDER BY s.mean_exec_time DESC LIMIT $1)
            $q$, home)
        USING top;
    EXCEPTION
        WHEN object_not_in_prerequisite_state THEN
            RETURN QUERY SELECT false,
                'pg_stat_statements is installed but not loaded: add it to shared_preload_libraries in postgresql.conf and restart the server',
                NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::bigint;
        WHEN undefined_column OR undefined_function OR undefined_table THEN
            RETURN QUERY SELECT false,
                'this pg_stat_statements is older than PostgreSQL 13''s: run ALTER EXTENSION pg_stat_statements UPDATE',
                NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::bigint;
        WHEN others THEN
            RETURN QUERY SELECT false, 'pg_stat_statements could not be read: ' || SQLERRM,
                NULL::text, NULL::text, NULL::bigint, NULL::float8, NULL::float8, NULL::bigint;
    END;
END
$$;

-- Storage: per table (heap, indexes, TOAST, estimated rows, dead tuples), largest first
-- by the catalog's page counts. Exact sizes are read for the rows shown; a table locked
-- by someone else (ACCESS EXCLUSIVE) is not waited for: its row keeps the catalog's
-- figures, as of the last VACUUM or ANALYZE, and says so (exact = false).
CREATE FUNCTION fluxbase_admin.list_table_sizes(session_token text DEFAULT NULL, schema_name text DEFAULT NULL, top integer DEFAULT 100)
RETURNS TABLE (schema text, "table" text, total_bytes bigint, heap_bytes bigint, index_bytes bigint, toast_bytes bigint,
               estimated_rows bigint, dead_tuples bigint, exact boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '100ms'
AS $$
DECLARE
    block bigint := pg_catalog.current_setting('block_size')::bigint;
    rel   record;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    IF top IS NULL OR top NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'top must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR rel IN
        SELECT * FROM (
            SELECT c.oid, n.nspname::text AS nsp, c.relname::text AS name, c.reltoastrelid, c.relpages::bigint AS heap_pages,
                   c.reltuples, st.n_dead_tup,
                   coalesce((SELECT pg_catalog.sum(ic.relpages) FROM pg_catalog.pg_index i
                               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid), 0)::bigint AS index_pages,
                   coalesce((SELECT t.relpages FROM pg_catalog.pg_class t WHERE t.oid = c.reltoastrelid), 0)::bigint AS toast_pages
              FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_catalog.pg_stat_all_tables st ON st.relid = c.oid
             WHERE c.relkind IN ('r', 'm', 'p')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
               AND n.nspname !~ '^pg_(temp|toast_temp)_'
               AND (schema_name IS NULL OR n.nspname = schema_name)) sized
         ORDER BY sized.heap_pages + sized.index_pages + sized.toast_pages DESC, sized.nsp, sized.name
         LIMIT top
    LOOP
        schema := rel.nsp;
        "table" := rel.name;
        estimated_rows := GREATEST(rel.reltuples, 0)::bigint;
        dead_tuples := rel.n_dead_tup;
        BEGIN
            heap_bytes := pg_catalog.pg_relation_size(rel.oid);
            index_bytes := pg_catalog.pg_indexes_size(rel.oid);
            toast_bytes := coalesce(pg_catalog.pg_total_relation_size(nullif(rel.reltoastrelid, 0)), 0);
            total_bytes := pg_catalog.pg_total_relation_size(rel.oid);
            exact := true;
        EXCEPTION WHEN lock_not_available THEN
            heap_bytes := rel.heap_pages * block;
            index_bytes := rel.index_pages * block;
            toast_bytes := rel.toast_pages * block;
            total_bytes := heap_bytes + index_bytes + toast_bytes;
            exact := false;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Per schema: tables and their size as the catalog estimates it (pages as of the last
-- VACUUM or ANALYZE): no table is opened, so nothing waits on a lock. And the database's
-- exact size.
CREATE FUNCTION fluxbase_admin.list_schema_sizes(session_token text DEFAULT NULL)
RETURNS TABLE (schema text, tables bigint, estimated_bytes bigint, database_bytes bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY
    SELECT n.nspname::text, pg_catalog.count(DISTINCT c.oid) FILTER (WHERE c.relkind IN ('r', 'm', 'p')),
           (pg_catalog.sum(c.relpages) * pg_catalog.current_setting('block_size')::bigint)::bigint,
           pg_catalog.pg_database_size(pg_catalog.current_database())
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm', 'p', 'i')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
       AND n.nspname !~ '^pg_(temp|toast_temp)_'
     GROUP BY n.nspname
     ORDER BY 3 DESC, 1;
END
$$;

-- Vacuum and analyze per table, from the statistics only (no table is opened): when each
-- last ran by hand and by autovacuum, how often since the statistics were reset, and
-- what is waiting for the next run (dead tuples, rows changed since the last analyze).
-- Most dead tuples first.
CREATE FUNCTION fluxbase_admin.list_maintenance(session_token text DEFAULT NULL, schema_name text DEFAULT NULL, top integer DEFAULT 100)
RETURNS TABLE (schema text, "table" text, live_tuples bigint, dead_tuples bigint, modified_since_analyze bigint,
               last_vacuum timestamptz, last_autovacuum timestamptz, vacuum_count bigint, autovacuum_count bigint,
               last_analyze timestamptz, last_autoanalyze timestamptz, analyze_count bigint, autoanalyze_count bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    IF top IS NULL OR top NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'top must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT st.schemaname::text, st.relname::text, st.n_live_tup, st.n_dead_tup, st.n_mod_since_analyze,
           st.last_vacuum, st.last_autovacuum, st.vacuum_count, st.autovacuum_count,
           st.last_analyze, st.last_autoanalyze, st.analyze_count, st.autoanalyze_count
      FROM pg_catalog.pg_stat_all_tables st
     WHERE st.schemaname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
       AND st.schemaname !~ '^pg_(temp|toast_temp)_'
       AND (schema_name IS NULL OR st.schemaname = schema_name)
     ORDER BY st.n_dead_tup DESC, st.n_mod_since_analyze DESC, st.schemaname, st.relname
     LIMIT top;
END
$$;

-- Indexes: size and use, from the catalog and the statistics only (no index is opened,
-- so nothing waits on a lock; sizes are the catalog's page counts, as of the last VACUUM,
-- ANALYZE or CREATE INDEX). An index is unused when no scan used it since the statistics
-- were reset (stats_reset; NULL: never reset) and nothing needs it otherwise: it backs no
-- constraint (its own primary key, unique or exclusion constraint, or another table's
-- foreign key), enforces no uniqueness and is not the replica identity. Scans on a
-- standby are not counted here. Largest first.
CREATE FUNCTION fluxbase_admin.list_index_usage(session_token text DEFAULT NULL, schema_name text DEFAULT NULL,
                                                unused_only boolean DEFAULT false, top integer DEFAULT 100)
RETURNS TABLE (schema text, "table" text, index text, estimated_bytes bigint, scans bigint, tuples_read bigint,
               is_unique boolean, constraint_name text, unused boolean, stats_reset timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reset_at timestamptz := (SELECT pg_catalog.pg_stat_get_db_stat_reset_time(d.oid) FROM pg_catalog.pg_database d
                              WHERE d.datname = pg_catalog.current_database());
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    IF top IS NULL OR top NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'top must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF unused_only IS NULL THEN
        RAISE EXCEPTION 'unused_only must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT u.nsp, u.tbl, u.idx, u.bytes, u.scans, u.tuples_read, u.uniq, u.con,
           u.scans = 0 AND NOT u.uniq AND u.con IS NULL AND NOT u.replident, reset_at
      FROM (SELECT n.nspname::text AS nsp, t.relname::text AS tbl, c.relname::text AS idx,
                   c.relpages::bigint * pg_catalog.current_setting('block_size')::bigint AS bytes,
                   pg_catalog.pg_stat_get_numscans(c.oid) AS scans,
                   pg_catalog.pg_stat_get_tuples_returned(c.oid) AS tuples_read,
                   i.indisunique AS uniq, i.indisreplident AS replident, con.name AS con
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid AND c.relkind = 'i'
              JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
              JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
              -- The constraint it backs: its table's own first, else a foreign key's.
              LEFT JOIN (SELECT k.conindid,
                                (pg_catalog.array_agg(k.conname::text ORDER BY k.contype = 'f', k.conname))[1] AS name
                           FROM pg_catalog.pg_constraint k WHERE k.conindid <> 0 GROUP BY k.conindid) con
                     ON con.conindid = c.oid
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
               AND n.nspname !~ '^pg_(temp|toast_temp)_'
               AND (schema_name IS NULL OR n.nspname = schema_name)) u
     WHERE NOT unused_only OR (u.scans = 0 AND NOT u.uniq AND u.con IS NULL AND NOT u.replident)
     ORDER BY u.bytes DESC, u.nsp, u.tbl, u.idx
     LIMIT top;
END
$$;

-- Bloat: the space a table (with its TOAST) or a btree index takes beyond what its rows
-- need, largest first. An ESTIMATE, in the manner of the well-known estimation queries
-- (ioguix's pgsql-bloat-estimation): it compares the catalog's page count with the pages
-- the rows would fill, from the row count and each column's average width and null
-- fraction (pg_statistic, the last ANALYZE), the tuple and page headers, 8-byte alignment
-- and the fillfactor. No table is opened: it is cheap on thousands of tables and waits on
-- no lock, but it is only as fresh as the last VACUUM or ANALYZE. Expect it to be off by
-- 10-20%: padding between columns is not counted, TOAST is taken as four chunks a page,
-- btree inner pages are left out, and an index that Postgres 13+ deduplicates may need
-- fewer pages than its rows suggest (a negative estimate shows as 0). A relation without
-- statistics for every column (never analyzed, or a column of type name) has estimable =
-- false and no figures. Other index kinds (GIN, GiST, BRIN, hash) are not estimated.
CREATE FUNCTION fluxbase_admin.list_bloat(session_token text DEFAULT NULL, schema_name text DEFAULT NULL, top integer DEFAULT 100)
RETURNS TABLE (schema text, "table" text, index text, actual_bytes bigint, bloat_bytes bigint, bloat_ratio numeric,
               estimable boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    block numeric := pg_catalog.current_setting('block_size')::numeric;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    IF top IS NULL OR top NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'top must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH rels AS (
        SELECT c.oid, n.nspname::text AS nsp, c.relname::text AS tbl, c.reltuples::numeric, c.relpages::numeric AS pages,
               coalesce(t.relpages, 0)::numeric AS toast_pages, GREATEST(coalesce(t.reltuples, 0), 0)::numeric AS toast_rows,
               coalesce((SELECT pg_catalog.substring(o, '^fillfactor=([0-9]+)$')::numeric
                           FROM pg_catalog.unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 100) AS fillfactor
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
         WHERE c.relkind IN ('r', 'm')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
           AND n.nspname !~ '^pg_(temp|toast_temp)_'
           AND (schema_name IS NULL OR n.nspname = schema_name)),
    -- Per table: its columns' widths, and whether every column has statistics.
    row_widths AS (
        SELECT a.attrelid, pg_catalog.count(*) = pg_catalog.count(s.starelid) AS all_stats,
               pg_catalog.bool_or(a.atttypid = 'pg_catalog.name'::pg_catalog.regtype) AS has_name,
               pg_catalog.bool_or(s.stanullfrac > 0) AS has_nulls,
               pg_catalog.max(a.attnum) AS columns,
               pg_catalog.sum((1 - coalesce(s.stanullfrac, 0)::numeric) * coalesce(s.stawidth, 0)) AS data_width
          FROM pg_catalog.pg_attribute a
          JOIN rels r ON r.oid = a.attrelid
          LEFT JOIN pg_catalog.pg_statistic s ON s.starelid = a.attrelid AND s.staattnum = a.attnum AND NOT s.stainherit
         WHERE a.attnum > 0 AND NOT a.attisdropped
         GROUP BY a.attrelid),
    tables AS (
        SELECT r.nsp, r.tbl, NULL::text AS idx, (r.pages + r.toast_pages) AS pages, r.reltuples,
               coalesce(w.all_stats AND NOT w.has_name, false) AS stats_ok,
               -- a row: its line pointer, then header (23 bytes and the null bitmap) and data, each 8-byte aligned
               (4 + pg_catalog.ceil((23 + CASE WHEN w.has_nulls THEN pg_catalog.ceil(w.columns / 8.0) ELSE 0 END) / 8) * 8
                  + pg_catalog.ceil(coalesce(w.data_width, 0) / 8) * 8) AS row_bytes,
               (block - 24) * r.fillfactor / 100 AS room,
               0::numeric AS fixed_pages, pg_catalog.ceil(r.toast_rows / 4) AS extra_pages
          FROM rels r LEFT JOIN row_widths w ON w.attrelid = r.oid),
    -- Per btree index column: a key column's statistics are its table's, an expression's the index's own.
    index_columns AS (
        SELECT i.indexrelid, s.stanullfrac, s.stawidth, s.starelid, ia.atttypid
          FROM pg_catalog.pg_index i
          JOIN rels r ON r.oid = i.indrelid
          CROSS JOIN LATERAL pg_catalog.generate_series(0, i.indnatts - 1) k(pos)
          JOIN pg_catalog.pg_attribute ia ON ia.attrelid = i.indexrelid AND ia.attnum = k.pos + 1
          LEFT JOIN pg_catalog.pg_statistic s
                 ON s.starelid = CASE WHEN i.indkey[k.pos] <> 0 THEN i.indrelid ELSE i.indexrelid END
                AND s.staattnum = CASE WHEN i.indkey[k.pos] <> 0 THEN i.indkey[k.pos] ELSE k.pos + 1 END
                AND NOT s.stainherit),
    indexes AS (
        SELECT r.nsp, r.tbl, c.relname::text AS idx, c.relpages::numeric AS pages, c.reltuples::numeric,
               (pg_catalog.count(*) = pg_catalog.count(ic.starelid)
                AND NOT pg_catalog.bool_or(ic.atttypid = 'pg_catalog.name'::pg_catalog.regtype)) AS stats_ok,
               -- an index entry: its line pointer, then header (8 bytes, 16 with a null bitmap) and data, 8-byte aligned
               (4 + pg_catalog.ceil(((CASE WHEN pg_catalog.bool_or(ic.stanullfrac > 0) THEN 16 ELSE 8 END)
                                    + pg_catalog.sum((1 - coalesce(ic.stanullfrac, 0)::numeric) * coalesce(ic.stawidth, 0))) / 8) * 8) AS row_bytes,
               -- btree pages: page header and btree's 16-byte special space; leaves filled to the fillfactor (90)
               (block - 24 - 16) * coalesce((SELECT pg_catalog.substring(o, '^fillfactor=([0-9]+)$')::numeric
                                               FROM pg_catalog.unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 90) / 100 AS room,
               1::numeric AS fixed_pages, 0::numeric AS extra_pages
          FROM index_columns ic
          JOIN pg_catalog.pg_class c ON c.oid = ic.indexrelid
          JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname = 'btree'
          JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
          JOIN rels r ON r.oid = i.indrelid
         GROUP BY r.nsp, r.tbl, c.oid, c.relname, c.relpages, c.reltuples, c.reloptions),
    estimated AS (
        SELECT e.nsp, e.tbl, e.idx, e.pages,
               -- never analyzed or vacuumed (reltuples -1), or a column without statistics: no estimate;
               -- no rows: every page is surplus, whatever the widths
               (e.reltuples = 0 OR (e.reltuples > 0 AND e.stats_ok)) AS ok,
               e.fixed_pages + e.extra_pages
                 + pg_catalog.ceil(GREATEST(e.reltuples, 0) / GREATEST(pg_catalog.floor(e.room / e.row_bytes), 1)) AS needed
          FROM (SELECT * FROM tables UNION ALL SELECT * FROM indexes) e)
    SELECT x.nsp, x.tbl, x.idx, (x.pages * block)::bigint,
           CASE WHEN x.ok THEN (GREATEST(x.pages - x.needed, 0) * block)::bigint END,
           CASE WHEN x.ok AND x.pages > 0 THEN pg_catalog.round(GREATEST(x.pages - x.needed, 0) / x.pages, 4)
                WHEN x.ok THEN 0 END,
           x.ok
      FROM estimated x
     ORDER BY 5 DESC NULLS LAST, 4 DESC, 1, 2, 3 NULLS FIRST
     LIMIT top;
END
$$;

-- The sampled headline figures. Without `period`, every sample since `since` (NULL: all
-- that are kept), each a bucket of one. With `period` ('1h', '24h' or '7d'), the last
-- hour, day or week in time buckets sized for a chart: a minute, ten minutes, an hour
-- (60, 144 and 168 points). Each bucket has its start, how many samples it holds, the
-- average of each numeric figure (figures) and its highest value (peaks); empty buckets
-- are left out.
CREATE FUNCTION fluxbase_admin.list_metric_history(session_token text DEFAULT NULL, since timestamptz DEFAULT NULL,
                                                   period text DEFAULT NULL)
RETURNS TABLE (sampled_at timestamptz, samples integer, figures jsonb, peaks jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bucket interval := CASE period WHEN '1h' THEN interval '1 minute' WHEN '24h' THEN interval '10 minutes'
                                   WHEN '7d' THEN interval '1 hour' END;
    span   interval := CASE period WHEN '1h' THEN interval '1 hour' WHEN '24h' THEN interval '24 hours'
                                   WHEN '7d' THEN interval '7 days' END;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    IF period IS NULL THEN
        RETURN QUERY SELECT m.sampled_at, 1, m.figures, m.figures FROM fluxbase_admin.metric_samples m
                      WHERE since IS NULL OR m.sampled_at >= since ORDER BY m.sampled_at;
        RETURN;
    END IF;
    IF bucket IS NULL THEN
        RAISE EXCEPTION 'unknown period %: use 1h, 24h or 7d', pg_catalog.quote_literal(period)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF since IS NOT NULL THEN
        RAISE EXCEPTION 'give since or period, not both' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A period covers the last hour, day or week up to now.';
    END IF;
    RETURN QUERY
    WITH binned AS (
        SELECT pg_catalog.date_bin(bucket, m.sampled_at, timestamptz '2000-01-01 00:00:00+00') AS b, m.figures AS f
          FROM fluxbase_admin.metric_samples m
         WHERE m.sampled_at > pg_catalog.now() - span),
    per_figure AS (
        SELECT x.b, e.key, pg_catalog.avg(e.value::numeric) AS mean, pg_catalog.max(e.value::numeric) AS peak
          FROM binned x, pg_catalog.jsonb_each(x.f) e
         WHERE pg_catalog.jsonb_typeof(e.value) = 'number'
         GROUP BY x.b, e.key)
    SELECT c.b, c.n, coalesce(k.means, '{}'::jsonb), coalesce(k.peaks, '{}'::jsonb)
      FROM (SELECT x.b, pg_catalog.count(*)::integer AS n FROM binned x GROUP BY x.b) c
      LEFT JOIN (SELECT p.b, pg_catalog.jsonb_object_agg(p.key, pg_catalog.trim_scale(pg_catalog.round(p.mean, 4))) AS means,
                        pg_catalog.jsonb_object_agg(p.key, p.peak) AS peaks
                   FROM per_figure p GROUP BY p.b) k ON k.b = c.b
     ORDER BY c.b;
END
$$;

-- ---------------------------------------------------------------------------------
-- Cancelling and terminating backends (admins: manage_backends)
-- ---------------------------------------------------------------------------------

-- Signals one of this database's client connections, unless it is one an admin must not
-- reach: the connection making the request, the dashboard's own (its logins are members of
-- fluxbase_dashboard or, the data logins, of fluxbase_explorer: see data_logins()), an
-- operator's (fluxbase_operator: the break-glass way back in), or a superuser's. A session
-- is an admin's, never a database role's, so it cannot be "a superuser too": a superuser's
-- backend is refused here always, and a superuser signals it with pg_cancel_backend(pid)
-- or pg_terminate_backend(pid) in psql. A refused target is returned (ok = false) and
-- audited; every attempt records the target's user, application and query (literals
-- hidden).
CREATE FUNCTION fluxbase_admin.signal_backend(who dashboard_auth.session_admin, target integer, terminate boolean)
RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    verb      text := CASE WHEN terminate THEN 'terminate' ELSE 'cancel' END;
    backend   record;
    code      text;
    refusal   text;
    details   jsonb;
    signalled boolean;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'pid is required: the backend''s process id, as list_activity shows it'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The row comes from this transaction's snapshot of the backends, taken just now.
    SELECT a.pid, a.datname::text AS database, a.backend_type, a.usename::text AS usename, a.application_name,
           a.client_addr, a.state, a.backend_start, a.query,
           coalesce(r.rolsuper, false) AS superuser,
           coalesce(pg_catalog.pg_has_role(a.usesysid, 'fluxbase_dashboard', 'MEMBER')
                    OR pg_catalog.pg_has_role(a.usesysid, 'fluxbase_explorer', 'MEMBER'), false) AS dashboard,
           coalesce(pg_catalog.pg_has_role(a.usesysid, 'fluxbase_operator', 'MEMBER'), false) AS operator
      INTO backend
      FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
     WHERE a.pid = target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no backend has the pid %: it may have ended', target USING ERRCODE = 'no_data_found';
    END IF;
    details := pg_catalog.jsonb_build_object(
        'signal', verb, 'database', backend.database, 'usename', backend.usename,
        'application_name', backend.application_name, 'client_addr', backend.client_addr, 'state', backend.state,
        'backend_start', backend.backend_start, 'query', pg_catalog.left(fluxbase_admin.redact_sql(backend.query), 1000));

    IF target = pg_catalog.pg_backend_pid() THEN
        code := 'own_connection';
        refusal := 'this is the connection making the request';
    ELSIF backend.backend_type IS DISTINCT FROM 'client backend' THEN
        code := 'not_a_client';
        refusal := pg_catalog.format('pid %s is a server process (%s), not a client connection', target,
                                     coalesce(backend.backend_type, 'unknown'));
    ELSIF backend.database IS DISTINCT FROM pg_catalog.current_database() THEN
        code := 'other_database';
        refusal := pg_catalog.format('pid %s is connected to the database %s: only this database''s connections can be signalled here',
                                     target, backend.database);
    ELSIF backend.superuser THEN
        code := 'superuser';
        refusal := pg_catalog.format('pid %s belongs to the superuser %s: only a superuser can %s it, with SELECT pg_%s_backend(%s)',
                                     target, backend.usename, verb, verb, target);
    ELSIF backend.dashboard THEN
        code := 'dashboard_connection';
        refusal := pg_catalog.format('pid %s is one of the dashboard''s own connections (%s)', target, backend.usename);
    ELSIF backend.operator THEN
        code := 'operator_connection';
        refusal := pg_catalog.format('pid %s belongs to %s, an operator (fluxbase_operator)', target, backend.usename);
    ELSE
        signalled := CASE WHEN terminate THEN pg_catalog.pg_terminate_backend(target) ELSE pg_catalog.pg_cancel_backend(target) END;
        IF NOT signalled THEN
            code := 'ended';
            refusal := pg_catalog.format('pid %s could not be signalled: it has ended', target);
        END IF;
    END IF;

    IF code IS NOT NULL THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'backend.refused', 'backend', target::text,
            details || pg_catalog.jsonb_build_object('code', code, 'refusal', refusal));
        RETURN ROW(false, code, refusal)::dashboard_auth.outcome;
    END IF;
    IF terminate THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'backend.terminated', 'backend', target::text, details);
        RETURN dashboard_auth.done('terminated', pg_catalog.format('The connection %s is being closed.', target));
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'backend.cancelled', 'backend', target::text, details);
    RETURN dashboard_auth.done('cancelled', pg_catalog.format('The query running on %s is being cancelled.', target));
END
$$;

-- Cancels the query a backend is running; the connection stays.
CREATE FUNCTION fluxbase_admin.cancel_backend(session_token text, pid integer) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT fluxbase_admin.signal_backend(dashboard_auth.require_capability(session_token, 'manage_backends'), pid, false) $$;

-- Ends a backend's connection, rolling back its open transaction.
CREATE FUNCTION fluxbase_admin.terminate_backend(session_token text, pid integer) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT fluxbase_admin.signal_backend(dashboard_auth.require_capability(session_token, 'manage_backends'), pid, true) $$;

-- ---------------------------------------------------------------------------------
-- The dashboard's own reporting (no session): heartbeats, sampling, Prometheus counters
-- ---------------------------------------------------------------------------------

CREATE FUNCTION fluxbase_admin.report_pool(instance_id text, hostname text, pid integer, max_size integer,
                                           size integer, available integer, waiting integer)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO fluxbase_admin.pool_reports AS r (instance_id, hostname, pid, max_size, size, available, waiting, reported_at)
    VALUES (pg_catalog.left(instance_id, 100), pg_catalog.left(hostname, 255), pid, max_size, size, available, waiting, pg_catalog.now())
    ON CONFLICT ON CONSTRAINT pool_reports_pkey DO UPDATE
       SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, max_size = EXCLUDED.max_size, size = EXCLUDED.size,
           available = EXCLUDED.available, waiting = EXCLUDED.waiting, reported_at = EXCLUDED.reported_at;
    -- Copies gone for a day are forgotten.
    DELETE FROM fluxbase_admin.pool_reports r WHERE r.reported_at < pg_catalog.now() - interval '1 day';
$$;

-- Takes a sample when one is due (metrics.sample_interval) and drops samples older than
-- metrics.retention. Only one caller samples at a time: the others return false at once.
-- fluxbase serve calls it on a timer; pg_cron can instead (see README).
CREATE FUNCTION fluxbase_admin.sample_metrics() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    latest timestamptz;
BEGIN
    IF NOT dashboard_auth.try_lock('metric_sampler') THEN
        RETURN false;
    END IF;
    -- Under the lock, a fresh snapshot sees the last sample committed by another copy.
    SELECT pg_catalog.max(m.sampled_at) INTO latest FROM fluxbase_admin.metric_samples m;
    IF latest IS NOT NULL AND latest > pg_catalog.clock_timestamp() - dashboard_auth.get_setting_interval('metrics.sample_interval')
                                         + interval '50 milliseconds' THEN
        RETURN false;
    END IF;
    INSERT INTO fluxbase_admin.metric_samples (sampled_at, figures)
    VALUES (pg_catalog.clock_timestamp(), fluxbase_admin.headline_figures());
    DELETE FROM fluxbase_admin.metric_samples m
     WHERE m.sampled_at < pg_catalog.now() - dashboard_auth.get_setting_interval('metrics.retention');
    RETURN true;
END
$$;

-- Counters for GET /metrics: sign-ins by outcome and active impersonations.
CREATE FUNCTION fluxbase_admin.list_prometheus_counters()
RETURNS TABLE (metric text, label text, value bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'logins', a.reason, pg_catalog.count(*) FROM dashboard_auth.login_attempts a GROUP BY a.reason
    UNION ALL
    SELECT 'impersonations_active', NULL, pg_catalog.count(*) FROM auth.impersonation_sessions i
     WHERE i.active AND i.expires_at > pg_catalog.now()
$$;

GRANT EXECUTE ON FUNCTION
    fluxbase_admin.get_metrics(text),
    fluxbase_admin.list_backends(text),
    fluxbase_admin.list_activity(text),
    fluxbase_admin.get_connections(text),
    fluxbase_admin.list_pools(text),
    fluxbase_admin.list_statements(text, integer),
    fluxbase_admin.list_table_sizes(text, text, integer),
    fluxbase_admin.list_schema_sizes(text),
    fluxbase_admin.list_maintenance(text, text, integer),
    fluxbase_admin.list_index_usage(text, text, boolean, integer),
    fluxbase_admin.list_bloat(text, text, integer),
    fluxbase_admin.list_metric_history(text, timestamptz, text),
    fluxbase_admin.cancel_backend(text, integer),
    fluxbase_admin.terminate_backend(text, integer),
    fluxbase_admin.report_pool(text, text, integer, integer, integer, integer, integer),
    fluxbase_admin.sample_metrics(),
    fluxbase_admin.list_prometheus_counters()
TO fluxbase_dashboard;
GRANT EXECUTE ON FUNCTION fluxbase_admin.sample_metrics() TO fluxbase_operator;
