-- The audit log as a compliance tool: search, export and verification (with a session,
-- or as an operator), export as CSV or JSON Lines, and retention (operators only). The
-- chain's check is dashboard_auth.check_audit_chain (sql/audit.sql).

-- The groups of actions a search can filter on, in the order a page shows them. An entry
-- is an action (admin.login) or a prefix ending in a dot (admin.); the most specific
-- entry that matches an action decides its group, so that admin.login is a sign-in while
-- the other admin. actions are accounts. Every action the extension writes belongs to
-- exactly one group (tests/tests/audit_compliance.rs checks sql/ for them).
CREATE FUNCTION dashboard_auth.list_audit_groups()
RETURNS TABLE (action_group text, label text, actions text[])
-- A definer, as every function of dashboard_auth the dashboard may call; it reads nothing.
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('sign_in', 'Sign-in', ARRAY['admin.login', 'admin.login_failed', 'admin.logout', 'admin.logout_others',
                                        'admin.locked', 'admin.throttled', 'admin.password_rehashed',
                                        'admin.recovery_code_used', 'admin.session_revoked', 'session.']),
           ('accounts', 'Admin accounts', ARRAY['admin.', 'link.']),
           ('users', 'App users', ARRAY['user.', 'users.']),
           ('impersonation', 'Impersonation', ARRAY['impersonation.', 'impersonated.']),
           ('explorer', 'Explorer', ARRAY['explorer.']),
           ('sql', 'SQL runner', ARRAY['sql.', 'snippet.']),
           ('analytics', 'Analytics', ARRAY['backend.']),
           ('settings', 'Settings', ARRAY['settings.']),
           ('audit', 'Audit log', ARRAY['audit.'])
$$;

-- The group of an action (list_audit_groups), or NULL when none has it.
CREATE FUNCTION dashboard_auth.audit_group_of(action text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.action_group
      FROM dashboard_auth.list_audit_groups() g, pg_catalog.unnest(g.actions) AS e(entry)
     WHERE e.entry = action OR (pg_catalog.right(e.entry, 1) = '.' AND pg_catalog.starts_with(action, e.entry))
     ORDER BY pg_catalog.length(e.entry) DESC
     LIMIT 1
$$;

-- Entries newest first, filtered by actor, action, target and time, one page at a time:
--   actor:  the actor exactly (an admin's email or a database role), case-insensitive
--   action: an action (admin.created), or a prefix ending in a dot (explorer.)
--   target: the target's id exactly (a user id, "public.orders", ...)
--   action_group: one of list_audit_groups (sign_in, accounts, sql, ...)
--   cursor: next_cursor of the previous page
-- Returns {"rows": [...], "next_cursor": text or null}.
CREATE FUNCTION dashboard_auth.list_audit(
    session_token text DEFAULT NULL, actor text DEFAULT NULL, action text DEFAULT NULL, target text DEFAULT NULL,
    since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL, action_group text DEFAULT NULL,
    page_size integer DEFAULT 50, cursor text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after    jsonb;
    after_at timestamptz;
    after_id bigint;
    entries  jsonb;
    who      dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
BEGIN
    PERFORM dashboard_auth.check_page_size(page_size);
    IF list_audit.action_group IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM dashboard_auth.list_audit_groups() g WHERE g.action_group = list_audit.action_group) THEN
        RAISE EXCEPTION 'unknown action group %', pg_catalog.quote_literal(list_audit.action_group)
              USING ERRCODE = 'invalid_parameter_value', HINT = 'dashboard_auth.list_audit_groups() lists them.';
    END IF;
    after := dashboard_auth.decode_cursor(cursor, 2);
    BEGIN
        after_at := (after ->> 0)::timestamptz;
        after_id := (after ->> 1)::bigint;
    EXCEPTION WHEN OTHERS THEN
        PERFORM dashboard_auth.refuse_cursor();
    END;
    WITH page AS (
        SELECT a.* FROM dashboard_auth.audit_log a
         WHERE (list_audit.actor IS NULL OR pg_catalog.lower(a.actor) = pg_catalog.lower(list_audit.actor))
           AND (list_audit.action IS NULL
                OR a.action = list_audit.action
                OR (list_audit.action LIKE '%.' AND pg_catalog.starts_with(a.action, list_audit.action)))
           AND (list_audit.target IS NULL OR a.target_id = list_audit.target)
           AND (list_audit.action_group IS NULL OR dashboard_auth.audit_group_of(a.action) = list_audit.action_group)
           AND (since IS NULL OR a.occurred_at >= since)
           AND (until IS NULL OR a.occurred_at < until)
           AND (after_at IS NULL OR (a.occurred_at, a.id) < (after_at, after_id))
         ORDER BY a.occurred_at DESC, a.id DESC
         LIMIT page_size + 1
    )
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', p.id, 'occurred_at', p.occurred_at, 'actor_type', p.actor_type, 'actor_id', p.actor_id,
               'actor', p.actor, 'action', p.action, 'target_type', p.target_type, 'target_id', p.target_id,
               'details', p.details, 'ip', p.ip, 'user_agent', p.user_agent, 'chain_seq', p.chain_seq)
               ORDER BY p.occurred_at DESC, p.id DESC)
      INTO entries
      FROM page p;
    -- Reading the log is recorded too, once per session (after the page is read, so that
    -- the first search does not find itself).
    PERFORM dashboard_auth.audit_read(who, 'audit.searched', 'audit_log', NULL,
        pg_catalog.jsonb_build_object('actor', list_audit.actor, 'action', list_audit.action,
                                      'target', list_audit.target, 'since', since, 'until', until,
                                      'action_group', list_audit.action_group));
    RETURN dashboard_auth.page_of(entries, page_size, ARRAY['occurred_at', 'id']);
END
$$;

-- The export's lines, in the log's order, for entries in [since, until): JSON Lines
-- (every column, hashes in hex) or CSV rows (the header is operator_get_audit_export_header). An
-- invoker SQL function, so that a cursor over it streams: operators read the table.
CREATE FUNCTION dashboard_auth.operator_export_audit(since timestamptz, until timestamptz, format text)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT CASE format
               WHEN 'jsonl' THEN pg_catalog.jsonb_build_object(
                   'id', a.id, 'occurred_at', a.occurred_at, 'actor_type', a.actor_type, 'actor_id', a.actor_id,
                   'actor', a.actor, 'action', a.action, 'target_type', a.target_type, 'target_id', a.target_id,
                   'details', a.details, 'ip', a.ip, 'user_agent', a.user_agent, 'chain_seq', a.chain_seq,
                   'prev_hash', pg_catalog.encode(a.prev_hash, 'hex'), 'hash', pg_catalog.encode(a.hash, 'hex'))::text
               ELSE pg_catalog.array_to_string(ARRAY(
                   SELECT CASE WHEN v IS NULL THEN '' ELSE '"' OPERATOR(pg_catalog.||) pg_catalog.replace(v, '"', '""') OPERATOR(pg_catalog.||) '"' END
                     FROM pg_catalog.unnest(ARRAY[
                         a.id::text, pg_catalog.to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                         a.actor_type, a.actor_id::text, a.actor, a.action, a.target_type, a.target_id, a.details::text,
                         a.ip::text, a.user_agent, a.chain_seq::text, pg_catalog.encode(a.prev_hash, 'hex'),
                         pg_catalog.encode(a.hash, 'hex')]) WITH ORDINALITY AS f(v, n)
                    ORDER BY f.n), ',')
           END
      FROM dashboard_auth.audit_log a
     WHERE (since IS NULL OR a.occurred_at >= since) AND (until IS NULL OR a.occurred_at < until)
     ORDER BY a.id
$$;

CREATE FUNCTION dashboard_auth.operator_get_audit_export_header() RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'id,occurred_at,actor_type,actor_id,actor,action,target_type,target_id,details,ip,user_agent,chain_seq,prev_hash,hash' $$;

-- Records an export before it runs (operators): what range, what format, and where to.
CREATE FUNCTION dashboard_auth.operator_record_audit_export(since timestamptz, until timestamptz, format text, destination text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF format IS NULL OR format NOT IN ('csv', 'jsonl') THEN
        RAISE EXCEPTION 'format is csv or jsonl, not %', coalesce(pg_catalog.quote_literal(format), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN dashboard_auth.audit('operator', NULL, session_user::text, 'audit.exported', NULL, NULL,
        pg_catalog.jsonb_build_object('since', since, 'until', until, 'format', format, 'destination', destination,
            -- This entry is exported too when the range takes it in.
            'entries', (SELECT pg_catalog.count(*) FROM dashboard_auth.audit_log a
                         WHERE (since IS NULL OR a.occurred_at >= since) AND (until IS NULL OR a.occurred_at < until))
                       + CASE WHEN (since IS NULL OR pg_catalog.clock_timestamp() >= since)
                               AND (until IS NULL OR pg_catalog.clock_timestamp() < until) THEN 1 ELSE 0 END));
END
$$;

-- The export with a session (the capability export, which viewers have too): the lines
-- of operator_export_audit, the CSV header first. Audited in the same call, after the
-- lines are read, with the range, the format and how many lines there were; the entry is
-- therefore never in its own export.
CREATE FUNCTION dashboard_auth.export_audit(session_token text, since timestamptz, until timestamptz, format text)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'export');
    entries bigint;
BEGIN
    IF export_audit.format IS NULL OR export_audit.format NOT IN ('csv', 'jsonl') THEN
        RAISE EXCEPTION 'format is csv or jsonl, not %', coalesce(pg_catalog.quote_literal(export_audit.format), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF since >= until THEN
        RAISE EXCEPTION 'since (%) must be before until (%)', since, until USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF export_audit.format = 'csv' THEN
        RETURN NEXT dashboard_auth.operator_get_audit_export_header();
    END IF;
    RETURN QUERY SELECT * FROM dashboard_auth.operator_export_audit(since, until, export_audit.format);
    GET DIAGNOSTICS entries = ROW_COUNT;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'audit.exported', 'audit_log', NULL,
        pg_catalog.jsonb_build_object('since', since, 'until', until, 'format', export_audit.format, 'entries', entries,
                                      'lines', entries + CASE WHEN export_audit.format = 'csv' THEN 1 ELSE 0 END));
    RETURN;
END
$$;

-- Verifies the chain with a session (any: viewers too), audited as the admin's.
CREATE FUNCTION dashboard_auth.verify_audit(session_token text DEFAULT NULL)
RETURNS TABLE (valid boolean, entries bigint, pending bigint, first_invalid_seq bigint,
               head_seq bigint, head_hash text, message text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    verdict record;
BEGIN
    SELECT * INTO verdict FROM dashboard_auth.check_audit_chain();
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'audit.verified', 'audit_log', NULL,
        dashboard_auth.audit_verified_details(verdict.valid, verdict.entries, verdict.first_invalid_seq,
                                              verdict.head_seq, verdict.head_hash));
    RETURN QUERY SELECT verdict.valid, verdict.entries, verdict.pending, verdict.first_invalid_seq,
                        verdict.head_seq, verdict.head_hash, verdict.message;
END
$$;

-- The range a purge before `before` would remove: the chain's oldest entries, up to the
-- first one at or after `before` (the chain stays one piece), and never the newest
-- entry, from which the chain goes on.
CREATE FUNCTION dashboard_auth.operator_plan_audit_purge(before timestamptz)
RETURNS TABLE (from_seq bigint, to_seq bigint, entries bigint, last_hash text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_seq bigint;
    stop_seq  bigint;
BEGIN
    IF before IS NULL THEN
        RAISE EXCEPTION 'purge needs a date: entries before it are removed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM dashboard_auth.audit_seal(true);
    SELECT pg_catalog.min(a.chain_seq) INTO first_seq FROM dashboard_auth.audit_log a WHERE a.chain_seq IS NOT NULL;
    SELECT pg_catalog.min(a.chain_seq) INTO stop_seq FROM dashboard_auth.audit_log a
     WHERE a.chain_seq IS NOT NULL AND a.occurred_at >= before;
    to_seq := LEAST(coalesce(stop_seq, (SELECT pg_catalog.max(a.chain_seq) + 1 FROM dashboard_auth.audit_log a)),
                               (SELECT pg_catalog.max(a.chain_seq) FROM dashboard_auth.audit_log a)) - 1;
    from_seq := first_seq;
    IF first_seq IS NULL OR to_seq < first_seq THEN
        from_seq := NULL; to_seq := NULL; entries := 0;
    ELSE
        entries := to_seq - from_seq + 1;
        SELECT pg_catalog.encode(a.hash, 'hex') INTO last_hash FROM dashboard_auth.audit_log a WHERE a.chain_seq = to_seq;
    END IF;
    RETURN NEXT;
END
$$;

-- Retention (operators): removes the chain's oldest entries, up to `to_seq`, that
-- operator_plan_audit_purge gave, after the caller exported them to `exported_to`, and
-- appends a sealing entry that carries the removed range and its last hash, so that the
-- rest of the chain still verifies. Refused (55000) if that range is no longer the
-- chain's start, is not all older than `before`, or its last hash differs.
CREATE FUNCTION dashboard_auth.operator_purge_audit(before timestamptz, to_seq bigint, last_hash text, exported_to text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    from_seq bigint;
    removed  bigint;
    entry    bigint;
BEGIN
    IF exported_to IS NULL OR pg_catalog.btrim(exported_to) = '' THEN
        RAISE EXCEPTION 'export the range first and say where: exported_to names the file'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF before IS NULL THEN
        RAISE EXCEPTION 'purge needs a date: entries before it are removed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One purge at a time, and no sealing while it runs.
    PERFORM dashboard_auth.hold_lock('audit_chain');
    SELECT pg_catalog.min(a.chain_seq) INTO from_seq FROM dashboard_auth.audit_log a WHERE a.chain_seq IS NOT NULL;
    IF from_seq IS NULL OR to_seq IS NULL OR to_seq < from_seq
       OR NOT EXISTS (SELECT 1 FROM dashboard_auth.audit_log a
                       WHERE a.chain_seq = to_seq AND pg_catalog.encode(a.hash, 'hex') = last_hash)
       OR EXISTS (SELECT 1 FROM dashboard_auth.audit_log a
                   WHERE a.chain_seq BETWEEN from_seq AND to_seq AND a.occurred_at >= before)
       -- The newest entry stays: the chain goes on from it.
       OR to_seq >= (SELECT pg_catalog.max(a.chain_seq) FROM dashboard_auth.audit_log a) THEN
        RAISE EXCEPTION 'the range to purge is not the one exported: ask operator_plan_audit_purge again and export again'
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO dashboard_auth.audit_purges_in_progress VALUES (pg_catalog.pg_current_xact_id());
    DELETE FROM dashboard_auth.audit_log a WHERE a.chain_seq BETWEEN from_seq AND to_seq;
    GET DIAGNOSTICS removed = ROW_COUNT;
    entry := dashboard_auth.audit('operator', NULL, session_user::text, 'audit.purged', NULL, NULL,
        pg_catalog.jsonb_build_object('before', before, 'removed_from_seq', from_seq, 'removed_to_seq', to_seq,
                                      'removed_count', removed, 'last_hash', last_hash, 'exported_to', exported_to));
    DELETE FROM dashboard_auth.audit_purges_in_progress p WHERE p.xact = pg_catalog.pg_current_xact_id();
    PERFORM dashboard_auth.audit_seal(true);
    RETURN pg_catalog.jsonb_build_object('removed', removed, 'from_seq', from_seq, 'to_seq', to_seq,
                                         'last_hash', last_hash, 'entry', entry);
END
$$;

GRANT EXECUTE ON FUNCTION
    dashboard_auth.list_audit(text, text, text, text, timestamptz, timestamptz, text, integer, text),
    dashboard_auth.export_audit(text, timestamptz, timestamptz, text),
    dashboard_auth.verify_audit(text)
TO fluxbase_dashboard;
GRANT EXECUTE ON FUNCTION dashboard_auth.list_audit_groups() TO fluxbase_dashboard, fluxbase_operator;
GRANT EXECUTE ON FUNCTION
    dashboard_auth.operator_export_audit(timestamptz, timestamptz, text),
    dashboard_auth.operator_get_audit_export_header(),
    dashboard_auth.operator_record_audit_export(timestamptz, timestamptz, text, text),
    dashboard_auth.operator_plan_audit_purge(timestamptz),
    dashboard_auth.operator_purge_audit(timestamptz, bigint, text, text)
TO fluxbase_operator;
