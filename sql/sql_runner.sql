-- The SQL runner: one statement at a time, as the runner role (setting runner.role,
-- default service_role, never a superuser) or as an impersonated user, read-only unless
-- a write is asked for, with EXPLAIN, cancel and a history.
--
-- A run crosses the two planes (data_plane.sql); fluxbase serve makes these calls, psql
-- can too:
--   1. dashboard login: SELECT * FROM fluxbase_admin.start_sql_run(token, statement, ...);
--      commits the intent and returns the run's id and a ticket;
--   2. data login: BEGIN; SET LOCAL statement_timeout = <timeout_ms>;
--      SELECT fluxbase_admin.claim_ticket(ticket); SAVEPOINT run;
--      SELECT fluxbase_admin.execute_sql(statement);
--   3. write runs:  SELECT fluxbase_admin.record_result(outcome); COMMIT;
--      read runs, and any failure:  ROLLBACK TO SAVEPOINT run; COMMIT;
--      then on the dashboard login: SELECT fluxbase_admin.finish_sql_run(token, run_id, outcome);

CREATE TABLE dashboard_auth.sql_runs (
    id               uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    admin_id         uuid NOT NULL REFERENCES dashboard_auth.dashboard_users (id) ON DELETE CASCADE,
    -- The statement with PASSWORD literals redacted: the history shows this.
    statement        text NOT NULL,
    -- A MAC of the statement as given, keyed with the cluster's sealing key (outside every
    -- dump): the claim accepts only that very text, and a dump gives no way to test a
    -- guess at a redacted password.
    statement_mac    bytea NOT NULL,
    command          text,
    mode             text NOT NULL CHECK (mode IN ('read', 'write')),
    explain          text CHECK (explain IN ('plan', 'analyze', 'plan_json', 'analyze_json')),
    run_as           text NOT NULL,
    impersonation_id uuid,
    intent_id        bigint,
    -- The data-login backend that ran it (set by the claim, NULL until then).
    backend_pid      integer,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'rolled_back')),
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at      timestamptz,
    row_count        bigint,
    affected         bigint,
    truncated        boolean,
    error_code       text,
    error_message    text
);
CREATE INDEX sql_runs_admin_started ON dashboard_auth.sql_runs (admin_id, started_at DESC);
COMMENT ON TABLE dashboard_auth.sql_runs IS 'Each admin''s last 100 SQL runner statements, redacted';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.sql_runs', '');
REVOKE ALL ON dashboard_auth.sql_runs FROM PUBLIC;

-- Runs an admin asked to cancel: a run that then ends with 57014 (canceling statement)
-- was cancelled, not a failure. The extension decides a run's status from this and the
-- error's code, never from a message's text.
CREATE TABLE dashboard_auth.sql_run_cancels (
    run_id       uuid PRIMARY KEY REFERENCES dashboard_auth.sql_runs (id) ON DELETE CASCADE,
    -- NULL: the run ended with 57014 and no cancel was asked for (a timeout).
    requested_at timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.sql_run_cancels', '');
REVOKE ALL ON dashboard_auth.sql_run_cancels FROM PUBLIC;

CREATE TYPE fluxbase_admin.sql_run AS (
    ok               boolean,
    code             text,
    message          text,
    run_id           uuid,
    run_as           text,
    read_only        boolean,
    timeout_ms       bigint,
    row_limit        integer,
    ticket           text
);

-- Why `role` may not be the runner's role, or NULL: it must exist, and neither be nor
-- be able to become a superuser, the dashboard's or operators' role, or a role that
-- reads or writes the server's files or runs programs there.
CREATE FUNCTION fluxbase_admin.forbidden_runner_role(role text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r.oid IS NULL THEN pg_catalog.format('role %s does not exist', pg_catalog.quote_ident(role))
        WHEN r.rolsuper THEN pg_catalog.format('%s is a superuser: the SQL runner never runs as one', r.rolname)
        WHEN r.rolcreaterole THEN pg_catalog.format('%s has CREATEROLE, which can grant itself any role', r.rolname)
        ELSE (SELECT pg_catalog.format('%s is, or is a member of, %s', r.rolname, pg_catalog.string_agg(s.rolname::text, ', ' ORDER BY s.rolname))
                FROM pg_catalog.pg_roles s
               WHERE pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER')
                 AND (s.rolsuper OR s.rolcreaterole
                      OR s.rolname IN ('fluxbase_dashboard', 'fluxbase_operator', 'fluxbase_explorer', 'pg_read_server_files',
                                       'pg_write_server_files', 'pg_execute_server_program'))
              HAVING pg_catalog.count(*) > 0)
    END
      FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = role
$$;

-- `EXPLAIN (...) ` for an explain mode: plan and analyze give the plan as text;
-- plan_json and analyze_json as JSON, a tree a page can draw.
CREATE FUNCTION fluxbase_admin.sql_explain_prefix(explain text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE explain WHEN 'plan' THEN 'EXPLAIN (VERBOSE, FORMAT TEXT) '
                        WHEN 'analyze' THEN 'EXPLAIN (ANALYZE, VERBOSE, BUFFERS, FORMAT TEXT) '
                        WHEN 'plan_json' THEN 'EXPLAIN (VERBOSE, FORMAT JSON) '
                        WHEN 'analyze_json' THEN 'EXPLAIN (ANALYZE, VERBOSE, BUFFERS, FORMAT JSON) '
                        ELSE '' END
$$;

-- Step 1: checks the statement and the caller, and commits the intent (audited, with the
-- redacted text) before anything runs. A refused run is audited too and comes back with
-- ok = false and the reason.
CREATE FUNCTION fluxbase_admin.start_sql_run(
    session_token text, statement text, allow_writes boolean DEFAULT false, explain text DEFAULT NULL,
    impersonation_id uuid DEFAULT NULL
) RETURNS fluxbase_admin.sql_run
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Statements are read, checked and run with one setting of how strings are lexed.
SET standard_conforming_strings = on
AS $$
DECLARE
    who      dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    actor    dashboard_auth.actor := dashboard_auth.session_actor(who);
    redacted text;
    kind     jsonb;
    run_as   text;
    refusal  text;
    code     text := 'refused';
    details  jsonb;
    run      dashboard_auth.sql_runs;
    context  auth.impersonation_context;
BEGIN
    IF statement IS NULL OR pg_catalog.btrim(statement) = '' THEN
        RAISE EXCEPTION 'the statement is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF explain IS NOT NULL AND explain NOT IN ('plan', 'analyze', 'plan_json', 'analyze_json') THEN
        RAISE EXCEPTION 'explain is plan, analyze, plan_json or analyze_json, not %', pg_catalog.quote_literal(explain)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    redacted := fluxbase_admin.redact_secrets(statement);
    BEGIN
        kind := fluxbase_admin.classify_statement(statement);
    EXCEPTION WHEN syntax_error THEN
        -- Left to the run, which reports the error with its position in the text.
        kind := pg_catalog.jsonb_build_object('statements', 1, 'unparsed', true);
    END;

    IF coalesce(allow_writes, false) AND NOT dashboard_auth.may(who, 'run_writes') THEN
        refusal := 'viewers are read-only: a viewer cannot make a write run';
        code := 'forbidden';
    ELSIF impersonation_id IS NOT NULL AND NOT dashboard_auth.may(who, 'impersonate') THEN
        refusal := 'viewers cannot run statements as an impersonated user';
        code := 'forbidden';
    ELSIF kind ->> 'refusal' IS NOT NULL THEN
        refusal := kind ->> 'refusal';
    ELSIF explain IS NOT NULL AND (kind ->> 'is_explain')::boolean THEN
        refusal := 'the statement is an EXPLAIN already: run it without the explain option';
    ELSIF explain IS NOT NULL AND NOT coalesce((kind ->> 'explainable')::boolean, true) THEN
        refusal := pg_catalog.format('EXPLAIN works on SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES and EXECUTE, not %s', kind ->> 'command');
    END IF;
    IF refusal IS NULL THEN
        IF impersonation_id IS NULL THEN
            run_as := dashboard_auth.get_setting('runner.role') #>> '{}';
            refusal := fluxbase_admin.forbidden_runner_role(run_as);
            IF refusal IS NOT NULL THEN
                refusal := 'the runner role is not usable: ' || refusal || ' (setting runner.role)';
            END IF;
        ELSE
            context := auth.impersonation_context(session_token, impersonation_id);
            run_as := context.role;
        END IF;
    END IF;
    details := pg_catalog.jsonb_build_object('statement', redacted, 'command', kind ->> 'command',
                   'mode', CASE WHEN allow_writes THEN 'write' ELSE 'read' END, 'explain', explain, 'run_as', run_as);
    IF refusal IS NOT NULL THEN
        PERFORM dashboard_auth.audit_by(actor, 'sql.refused', 'sql', NULL, details || pg_catalog.jsonb_build_object('refusal', refusal));
        RETURN ROW(false, code, refusal, NULL, run_as, NULL, NULL, NULL, NULL)::fluxbase_admin.sql_run;
    END IF;

    INSERT INTO dashboard_auth.sql_runs (admin_id, statement, statement_mac, command, mode, explain, run_as, impersonation_id)
    VALUES (who.admin_id, redacted, fluxbase_admin.statement_mac(statement), kind ->> 'command', CASE WHEN allow_writes THEN 'write' ELSE 'read' END, explain,
            run_as, impersonation_id)
    RETURNING * INTO run;
    IF impersonation_id IS NOT NULL THEN
        run.intent_id := auth.record_impersonated_intent(session_token, impersonation_id, 'sql.run',
                                                         details || pg_catalog.jsonb_build_object('run_id', run.id));
    ELSE
        run.intent_id := dashboard_auth.audit_by(actor, 'sql.run.intent', 'sql_run', run.id::text, details);
    END IF;
    UPDATE dashboard_auth.sql_runs r SET intent_id = run.intent_id WHERE r.id = run.id;
    -- The history keeps each admin's last 100 statements.
    DELETE FROM dashboard_auth.sql_runs r
     WHERE r.admin_id = who.admin_id
       AND r.id NOT IN (SELECT k.id FROM dashboard_auth.sql_runs k WHERE k.admin_id = who.admin_id
                         ORDER BY k.started_at DESC LIMIT 100);
    RETURN ROW(true, 'ok', 'Claim the ticket on the data login and run it with fluxbase_admin.execute_sql.', run.id, run_as,
               NOT coalesce(allow_writes, false),
               (pg_catalog.date_part('epoch', dashboard_auth.get_setting_interval('runner.timeout')) * 1000)::bigint,
               dashboard_auth.get_setting_int('runner.row_limit')::integer,
               fluxbase_admin.new_ticket(who, 'sql_run',
                   pg_catalog.jsonb_build_object('run_id', run.id,
                       'statement_mac', pg_catalog.encode(run.statement_mac, 'hex'),
                       'explain', explain, 'prefix', fluxbase_admin.sql_explain_prefix(explain),
                       'row_limit', dashboard_auth.get_setting_int('runner.row_limit')),
                   run_as, context.claims, impersonation_id, run.intent_id, NOT coalesce(allow_writes, false))
              )::fluxbase_admin.sql_run;
END
$$;

-- What step 2 needs, from the claim: that the statement is the one recorded, that it is
-- still allowed, and how to run it.
CREATE FUNCTION fluxbase_admin.sql_run_context(statement text) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    bound   jsonb := fluxbase_admin.claimed('sql_run');
    req     jsonb := bound -> 'request';
    kind    jsonb;
    refusal text;
BEGIN
    -- The claim checked the statement against the recorded MAC and bound it.
    IF statement IS DISTINCT FROM req ->> 'statement' THEN
        RAISE EXCEPTION 'the statement is not the one SQL run % recorded', req ->> 'run_id'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF bound ->> 'impersonation_id' IS NULL THEN
        -- Grants and attributes may have changed since the run began.
        refusal := fluxbase_admin.forbidden_runner_role(bound ->> 'run_as');
        IF refusal IS NOT NULL THEN
            RAISE EXCEPTION 'the runner role is not usable: %', refusal USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    BEGIN
        kind := fluxbase_admin.classify_statement(statement);
    EXCEPTION WHEN syntax_error THEN
        kind := '{}';
    END;
    IF kind ->> 'refusal' IS NOT NULL THEN
        RAISE EXCEPTION '%', kind ->> 'refusal' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN bound || pg_catalog.jsonb_build_object(
        'run_id', req -> 'run_id',
        'returns_rows', coalesce((kind ->> 'returns_rows')::boolean, false) OR req ->> 'explain' IS NOT NULL,
        'command', kind ->> 'command', 'prefix', req ->> 'prefix', 'explain', req -> 'explain', 'row_limit', req -> 'row_limit');
END
$$;

-- Step 2, on the data login after the claim: runs the statement as the run's role (the
-- runner role, or the impersonated target with its claims), inside the caller's
-- transaction (whose statement_timeout the caller set), and switches back. A read run's
-- transaction is READ ONLY from the claim on. If the statement changed the current role,
-- the run fails (FB002) and the caller's rollback undoes everything. An invoker
-- function, so that the statement runs with the run role's rights and nothing more.
CREATE FUNCTION fluxbase_admin.execute_sql(statement text) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    context   jsonb := fluxbase_admin.sql_run_context(statement);
    run_id    text := context ->> 'run_id';
    row_limit integer := (context ->> 'row_limit')::integer;
    run_as    text := context ->> 'run_as';
    portal    refcursor := 'fluxbase_sql_run';
    fetched   record;
    rows      jsonb := '[]';
    columns   jsonb := '[]';
    truncated boolean := false;
    affected  bigint;
    more      bigint;
BEGIN
    PERFORM fluxbase_admin.enter_role(context);

    IF (context ->> 'returns_rows')::boolean THEN
        OPEN portal FOR EXECUTE (context ->> 'prefix') || statement;
        -- Fetched here, as the run's role: a query runs as its rows are fetched, so
        -- fetching as anyone else would run its functions with another role's rights.
        -- Each value comes as the text of its JSON form; duplicate column names stay.
        LOOP
            FETCH portal INTO fetched;
            EXIT WHEN NOT FOUND;
            IF pg_catalog.jsonb_array_length(rows) = row_limit THEN
                truncated := true;
                EXIT;
            END IF;
            rows := rows OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(coalesce(
                (SELECT pg_catalog.jsonb_agg(e.value ORDER BY e.ordinality)
                   FROM pg_catalog.json_each_text(pg_catalog.row_to_json(fetched)) WITH ORDINALITY AS e),
                '[]'::pg_catalog.jsonb));
        END LOOP;
        IF context ->> 'command' IN ('INSERT', 'UPDATE', 'DELETE') AND context ->> 'prefix' = '' THEN
            -- A write with RETURNING ran in full; count what it changed beyond the page.
            MOVE FORWARD ALL IN portal;
            GET DIAGNOSTICS more = ROW_COUNT;
            affected := pg_catalog.jsonb_array_length(rows) + CASE WHEN truncated THEN 1 ELSE 0 END + more;
        END IF;
    ELSE
        EXECUTE (context ->> 'prefix') || statement;
        GET DIAGNOSTICS affected = ROW_COUNT;
    END IF;

    IF current_user <> run_as THEN
        -- A code of its own: the run is recorded as rolled back, not as failed.
        RAISE EXCEPTION 'the statement changed the current role from % to %: the run is rolled back', run_as, current_user
              USING ERRCODE = 'FB002';
    END IF;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SET LOCAL ROLE NONE;
    IF (context ->> 'returns_rows')::boolean THEN
        columns := fluxbase_admin.portal_columns('fluxbase_sql_run');
        CLOSE portal;
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'run_id', run_id, 'run_as', run_as, 'command', context ->> 'command', 'columns', columns, 'rows', rows,
        'row_count', pg_catalog.jsonb_array_length(rows), 'truncated', truncated, 'affected', affected,
        -- A text plan is its lines joined; a JSON plan is the one value EXPLAIN gave.
        'plan', CASE WHEN context ->> 'explain' LIKE '%\_json' THEN (rows -> 0 ->> 0)::jsonb
                     WHEN context ->> 'prefix' <> '' THEN
                    pg_catalog.to_jsonb((SELECT pg_catalog.string_agg(r ->> 0, E'\n') FROM pg_catalog.jsonb_array_elements(rows) r)) END);
END
$$;

-- Records how a run ended in the run's history and the audit log. Internal: finish_sql_run
-- (dashboard plane, after a read or a failure) and record_result (data plane, in a
-- write's own transaction) call it.
CREATE FUNCTION fluxbase_admin.close_sql_run(run_id uuid, admin_id uuid, who dashboard_auth.actor, outcome jsonb,
                                              ip inet, user_agent text)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run    dashboard_auth.sql_runs;
    cancel_requested boolean := false;
    ended  text;
BEGIN
    IF outcome ->> 'error_code' = '57014' THEN
        -- Was it a cancel? cancel_sql_run records the request before it signals, in a
        -- transaction that may not have committed yet: inserting the same key waits for
        -- it, and then finds its row.
        INSERT INTO dashboard_auth.sql_run_cancels AS c (run_id, requested_at) VALUES (close_sql_run.run_id, NULL)
        ON CONFLICT ON CONSTRAINT sql_run_cancels_pkey DO UPDATE SET run_id = c.run_id
        RETURNING c.requested_at IS NOT NULL INTO cancel_requested;
    END IF;
    -- How the run ended follows from the error's code, never from its message: FB002 is
    -- the role check's, and a 57014 after a cancel request is the cancel.
    ended := CASE WHEN outcome ->> 'error_code' IS NULL THEN 'succeeded'
                  WHEN outcome ->> 'error_code' = 'FB002' THEN 'rolled_back'
                  WHEN cancel_requested THEN 'cancelled'
                  ELSE 'failed' END;
    UPDATE dashboard_auth.sql_runs r
       SET status = ended, finished_at = pg_catalog.clock_timestamp(),
           row_count = (outcome ->> 'row_count')::bigint, affected = (outcome ->> 'affected')::bigint,
           truncated = (outcome ->> 'truncated')::boolean, error_code = outcome ->> 'error_code',
           error_message = pg_catalog.left(outcome ->> 'error_message', 2000)
     WHERE r.id = close_sql_run.run_id AND r.admin_id = close_sql_run.admin_id AND r.status = 'running'
    RETURNING * INTO run;
    IF run.id IS NULL THEN
        RAISE EXCEPTION 'no running SQL run % of yours', coalesce(run_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    IF run.impersonation_id IS NOT NULL THEN
        RETURN dashboard_auth.audit(who.actor_type, who.actor_id, who.actor, 'impersonated.sql.run.result', 'impersonation',
            run.impersonation_id::text,
            pg_catalog.jsonb_build_object('run_id', run.id, 'status', run.status, 'row_count', run.row_count,
                                          'affected', run.affected, 'error_code', run.error_code, 'intent_id', run.intent_id),
            ip, user_agent);
    END IF;
    RETURN dashboard_auth.audit(who.actor_type, who.actor_id, who.actor, 'sql.run.' || run.status, 'sql_run', run.id::text,
        pg_catalog.jsonb_build_object('intent_id', run.intent_id, 'row_count', run.row_count, 'affected', run.affected,
                                      'error_code', run.error_code),
        ip, user_agent);
END
$$;

-- record_result's part for a SQL run: the write's outcome, in its own transaction.
CREATE FUNCTION fluxbase_admin.record_sql_run_result(spent dashboard_auth.tickets, intent dashboard_auth.audit_log, outcome jsonb)
RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT fluxbase_admin.close_sql_run((spent.request ->> 'run_id')::uuid, spent.admin_id,
               ROW(intent.actor_type, intent.actor_id, intent.actor)::dashboard_auth.actor, outcome, intent.ip, intent.user_agent)
$$;

-- Step 3: records how the run ended and returns its status: succeeded, failed, cancelled
-- (a 57014 after cancel_sql_run) or rolled_back (the role check, FB002). outcome:
-- {"row_count", "affected", "truncated"} for a success, {"error_code", "error_message"}
-- for a failure. On the dashboard login, after the rollback of a read or a failure; a
-- write records its ending with fluxbase_admin.record_result in its own transaction.
CREATE FUNCTION fluxbase_admin.finish_sql_run(session_token text, run_id uuid, outcome jsonb) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
BEGIN
    PERFORM fluxbase_admin.close_sql_run(run_id, who.admin_id, dashboard_auth.session_actor(who), outcome,
                                          dashboard_auth.request_ip(), dashboard_auth.request_user_agent());
    RETURN (SELECT r.status FROM dashboard_auth.sql_runs r WHERE r.id = run_id);
END
$$;

-- Cancels a running statement of the caller's, from any connection. The run's backend is
-- the one whose transaction claimed the run's ticket: the claim's update of the ticket
-- stamps the ticket's row with that transaction (xmax) until it ends, and only the
-- extension's owner can write that table, so no other role can pose as the run.
CREATE FUNCTION fluxbase_admin.cancel_sql_run(session_token text, run_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    run dashboard_auth.sql_runs;
    cancelled boolean := false;
BEGIN
    SELECT * INTO run FROM dashboard_auth.sql_runs r WHERE r.id = run_id AND r.admin_id = who.admin_id;
    IF run.id IS NULL THEN
        RAISE EXCEPTION 'no SQL run % of yours', coalesce(run_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    IF run.status = 'running' THEN
        INSERT INTO dashboard_auth.sql_run_cancels AS c (run_id, requested_at) VALUES (run.id, pg_catalog.clock_timestamp())
        ON CONFLICT ON CONSTRAINT sql_run_cancels_pkey DO UPDATE SET requested_at = coalesce(c.requested_at, EXCLUDED.requested_at);
        SELECT pg_catalog.bool_or(pg_catalog.pg_cancel_backend(l.pid)) INTO cancelled
          FROM dashboard_auth.tickets t
          JOIN pg_catalog.pg_locks l ON l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
                                    AND l.transactionid = t.xmax
         WHERE t.operation = 'sql_run' AND t.request ->> 'run_id' = run.id::text AND t.claimed_at IS NULL
           AND t.xmax <> '0'::xid;
        cancelled := coalesce(cancelled, false);
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'sql.cancel', 'sql_run', run.id::text,
        pg_catalog.jsonb_build_object('cancelled', cancelled));
    RETURN cancelled;
END
$$;

-- The caller's last statements, newest first (at most 100 are kept). search: only the
-- statements that contain it, ignoring case; every character is literal (% and _ too).
CREATE FUNCTION fluxbase_admin.list_sql_runs(session_token text DEFAULT NULL, search text DEFAULT NULL,
                                             page_size integer DEFAULT 50, cursor text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    after   jsonb := dashboard_auth.decode_cursor(cursor, 2);
    after_at timestamptz;
    after_id uuid;
    found   jsonb;
BEGIN
    PERFORM dashboard_auth.check_page_size(page_size);
    BEGIN
        after_at := (after ->> 0)::timestamptz;
        after_id := (after ->> 1)::uuid;
    EXCEPTION WHEN OTHERS THEN
        PERFORM dashboard_auth.refuse_cursor();
    END;
    SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(p) ORDER BY p.started_at DESC, p.run_id DESC), '[]')
      INTO found
      FROM (SELECT r.id AS run_id, r.started_at, r.finished_at, r.statement, r.command, r.mode, r.explain, r.run_as,
                   r.impersonation_id, r.status, r.row_count, r.affected, r.truncated, r.error_code, r.error_message
              FROM dashboard_auth.sql_runs r
             WHERE r.admin_id = who.admin_id
               AND (coalesce(search, '') = '' OR pg_catalog.strpos(pg_catalog.lower(r.statement), pg_catalog.lower(search)) > 0)
               AND (after_at IS NULL OR (r.started_at, r.id) < (after_at, after_id))
             ORDER BY r.started_at DESC, r.id DESC
             LIMIT page_size + 1) p;
    RETURN dashboard_auth.page_of(found, page_size, ARRAY['started_at', 'run_id']);
END
$$;

-- ---------------------------------------------------------------------------------
-- Saved snippets: each admin's own named statements, kept in the admin backup
-- ---------------------------------------------------------------------------------

-- Viewers keep snippets too: they run read-only SQL, and a snippet is only text until it
-- is run, with the run's own checks. A snippet never holds a PASSWORD literal (save
-- refuses it), because the table is in every dump of dashboard_auth.
CREATE TABLE dashboard_auth.sql_snippets (
    id         uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    admin_id   uuid NOT NULL REFERENCES dashboard_auth.dashboard_users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (pg_catalog.btrim(name) = name AND name <> '' AND pg_catalog.length(name) <= 200),
    statement  text NOT NULL CHECK (pg_catalog.length(statement) <= 100000),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    CONSTRAINT sql_snippets_admin_name UNIQUE (admin_id, name)
);
COMMENT ON TABLE dashboard_auth.sql_snippets IS 'Each admin''s saved SQL runner statements, by name';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.sql_snippets', '');
REVOKE ALL ON dashboard_auth.sql_snippets FROM PUBLIC;

-- The caller's snippets, by name.
CREATE FUNCTION fluxbase_admin.list_sql_snippets(session_token text DEFAULT NULL)
RETURNS TABLE (snippet_id uuid, name text, statement text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
BEGIN
    RETURN QUERY
        SELECT s.id, s.name, s.statement, s.created_at, s.updated_at
          FROM dashboard_auth.sql_snippets s
         WHERE s.admin_id = who.admin_id
         ORDER BY pg_catalog.lower(s.name), s.name;
END
$$;

-- Saves a statement under a name of the caller's: a new snippet (code 'saved'), or the
-- one of that name replaced (code 'replaced', same id). Audited with the statement as
-- the history shows it.
CREATE FUNCTION fluxbase_admin.save_sql_snippet(session_token text, name text, statement text)
RETURNS TABLE (ok boolean, code text, message text, snippet_id uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who        dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    clean_name text := pg_catalog.btrim(save_sql_snippet.name);
    saved      dashboard_auth.sql_snippets;
    saved_at   timestamptz := pg_catalog.clock_timestamp();
    created    boolean;
BEGIN
    IF clean_name IS NULL OR clean_name = '' OR pg_catalog.length(clean_name) > 200 THEN
        RAISE EXCEPTION 'a snippet needs a name of 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF save_sql_snippet.statement IS NULL OR pg_catalog.btrim(save_sql_snippet.statement, E' \t\r\n') = '' THEN
        RAISE EXCEPTION 'the statement is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.length(save_sql_snippet.statement) > 100000 THEN
        RAISE EXCEPTION 'a snippet holds at most 100000 characters, not %', pg_catalog.length(save_sql_snippet.statement)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF fluxbase_admin.redact_secrets(save_sql_snippet.statement) <> save_sql_snippet.statement THEN
        RAISE EXCEPTION 'a snippet cannot hold a PASSWORD literal: snippets are kept in the admin backup'
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Save it without the password, and type that in when you run it.';
    END IF;
    INSERT INTO dashboard_auth.sql_snippets AS s (admin_id, name, statement, created_at, updated_at)
    VALUES (who.admin_id, clean_name, save_sql_snippet.statement, saved_at, saved_at)
    ON CONFLICT ON CONSTRAINT sql_snippets_admin_name
    DO UPDATE SET statement = EXCLUDED.statement, updated_at = EXCLUDED.updated_at
    RETURNING s.* INTO saved;
    created := saved.created_at = saved_at;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'snippet.saved', 'sql_snippet', saved.id::text,
        pg_catalog.jsonb_build_object('name', saved.name, 'replaced', NOT created,
                                      'statement', fluxbase_admin.redact_secrets(saved.statement)));
    RETURN QUERY SELECT true, CASE WHEN created THEN 'saved' ELSE 'replaced' END,
                        pg_catalog.format('Snippet %L %s.', saved.name,
                                          CASE WHEN created THEN 'saved' ELSE 'replaced' END),
                        saved.id;
END
$$;

-- Deletes one of the caller's snippets.
CREATE FUNCTION fluxbase_admin.delete_sql_snippet(session_token text, snippet_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who  dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    gone dashboard_auth.sql_snippets;
BEGIN
    DELETE FROM dashboard_auth.sql_snippets s WHERE s.id = delete_sql_snippet.snippet_id AND s.admin_id = who.admin_id
    RETURNING * INTO gone;
    IF gone.id IS NULL THEN
        RAISE EXCEPTION 'no SQL snippet % of yours', coalesce(delete_sql_snippet.snippet_id::text, 'NULL')
              USING ERRCODE = 'no_data_found', HINT = 'fluxbase_admin.list_sql_snippets lists them.';
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'snippet.deleted', 'sql_snippet', gone.id::text,
        pg_catalog.jsonb_build_object('name', gone.name));
    RETURN dashboard_auth.done('deleted', pg_catalog.format('Snippet %L deleted.', gone.name));
END
$$;

GRANT EXECUTE ON FUNCTION
    fluxbase_admin.start_sql_run(text, text, boolean, text, uuid),
    fluxbase_admin.finish_sql_run(text, uuid, jsonb),
    fluxbase_admin.cancel_sql_run(text, uuid),
    fluxbase_admin.list_sql_runs(text, text, integer, text),
    fluxbase_admin.list_sql_snippets(text),
    fluxbase_admin.save_sql_snippet(text, text, text),
    fluxbase_admin.delete_sql_snippet(text, uuid)
TO fluxbase_dashboard;
