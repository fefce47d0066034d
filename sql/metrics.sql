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

-- Query text as shown to admins and viewers: string literals are hidden, since a query
-- typed into psql may carry a password (ALTER ROLE ... PASSWORD '...', a login call).
CREATE FUNCTION fluxbase_admin.redact_sql(query text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.regexp_replace(query, '''(?:[^'']|'''')*''', '''***''', 'g') $$;

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
-- with what each waits on and who blocks it. Query texts are cut at 1,000 characters.
CREATE FUNCTION fluxbase_admin.list_activity(session_token text DEFAULT NULL)
RETURNS TABLE (pid integer, usename text, application_name text, state text, transaction_age interval,
               query_age interval, wait_event_type text, wait_event text, blocked_by integer[], query text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY
    SELECT a.pid, a.usename::text, a.application_name, a.state,
           pg_catalog.now() - a.xact_start, pg_catalog.now() - a.query_start,
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

CREATE FUNCTION fluxbase_admin.list_metric_history(session_token text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS TABLE (sampled_at timestamptz, figures jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY SELECT m.sampled_at, m.figures FROM fluxbase_admin.metric_samples m
                  WHERE since IS NULL OR m.sampled_at >= since ORDER BY m.sampled_at;
END
$$;

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
    fluxbase_admin.list_metric_history(text, timestamptz),
    fluxbase_admin.report_pool(text, text, integer, integer, integer, integer, integer),
    fluxbase_admin.sample_metrics(),
    fluxbase_admin.list_prometheus_counters()
TO fluxbase_dashboard;
GRANT EXECUTE ON FUNCTION fluxbase_admin.sample_metrics() TO fluxbase_operator;
