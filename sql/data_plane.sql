-- The two planes (architecture.md, "Two planes"): the application's code never runs
-- with the dashboard's powers.
--
-- * The dashboard plane (the dashboard login, a member of fluxbase_dashboard only):
--   definer functions owned by the extension's owner. They check sessions, audit and
--   keep settings, and never execute an app object.
-- * The data plane (a second NOINHERIT login): everything that touches app objects runs
--   there, in top-level invoker functions, after SET LOCAL ROLE to a role that is never
--   a superuser: fluxbase_explorer unimpersonated, the target's role impersonated, the
--   runner role in the SQL runner.
-- * The hand-off: fluxbase_admin.issue_ticket (dashboard plane) checks the session, records
--   the intent and returns a single-use ticket; the data login's first statement in a
--   transaction is fluxbase_admin.claim_ticket(ticket), which binds the request to the backend
--   (data_plane.rs). The data login may execute exactly two of the dashboard's
--   functions: claim and record_result.
--
-- From psql, as an operator:
--   -- a session on the dashboard login (SET ROLE fluxbase_dashboard):
--   SELECT fluxbase_admin.issue_ticket(token, 'browse', '{"schema": "public", "table": "todos"}');
--   -- a session on the data login, within 30 seconds:
--   BEGIN; SELECT fluxbase_admin.claim_ticket('fbk_...'); SELECT fluxbase_admin.browse(); COMMIT;

-- ---------------------------------------------------------------------------------
-- The explorer role's grants: explicit, on app schemas only
-- ---------------------------------------------------------------------------------

-- The GRANTs the explorer role needs on one object (a schema, a relation or a sequence),
-- or none when the object is not the application's.
CREATE FUNCTION fluxbase_admin.explorer_grants_for(class_id oid, object_id oid) RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
BEGIN
    IF class_id = 'pg_catalog.pg_namespace'::regclass THEN
        IF fluxbase_admin.app_schema(object_id) THEN
            RETURN NEXT pg_catalog.format('GRANT USAGE ON SCHEMA %I TO fluxbase_explorer',
                                          (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = object_id));
        END IF;
        RETURN;
    END IF;
    IF class_id <> 'pg_catalog.pg_class'::regclass THEN
        RETURN;
    END IF;
    SELECT c.relkind, c.relname, n.nspname, n.oid AS nsp INTO rel
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = object_id;
    IF rel.relname IS NULL OR NOT fluxbase_admin.app_schema(rel.nsp)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = object_id AND d.deptype = 'e') THEN
        RETURN;
    END IF;
    IF rel.relkind IN ('r', 'p', 'v', 'm', 'f') THEN
        RETURN NEXT pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %I.%I TO fluxbase_explorer',
                                      rel.nspname, rel.relname);
    ELSIF rel.relkind = 'S' THEN
        RETURN NEXT pg_catalog.format('GRANT USAGE, SELECT ON SEQUENCE %I.%I TO fluxbase_explorer', rel.nspname, rel.relname);
    END IF;
END
$$;

-- Grants the explorer role what it needs on every app schema, relation and sequence, and
-- returns how many GRANTs ran. It repairs everything, including privileges an owner
-- revoked: run it on purpose (operators). New objects are covered as they are created
-- by the event trigger below.
CREATE FUNCTION fluxbase_admin.sync_explorer_grants() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    statement text;
    done      integer := 0;
BEGIN
    FOR statement IN
        SELECT g FROM pg_catalog.pg_namespace n,
               fluxbase_admin.explorer_grants_for('pg_catalog.pg_namespace'::regclass, n.oid) g
        UNION ALL
        SELECT g FROM pg_catalog.pg_class c,
               fluxbase_admin.explorer_grants_for('pg_catalog.pg_class'::regclass, c.oid) g
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND fluxbase_admin.app_schema(c.relnamespace)
    LOOP
        EXECUTE statement;
        done := done + 1;
    END LOOP;
    RETURN done;
END
$$;
COMMENT ON FUNCTION fluxbase_admin.sync_explorer_grants() IS 'Grants the explorer role USAGE on app schemas, DML on their relations and USAGE, SELECT on their sequences';

-- Objects created after install: each new app schema, relation and sequence gets the
-- explorer's grants as it is created. Only CREATE commands: a privilege an owner
-- revoked later stays revoked (the catalog marks it).
CREATE FUNCTION fluxbase_admin.grant_new_objects_to_explorer() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    created   record;
    statement text;
BEGIN
    FOR created IN
        SELECT c.classid, c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
         WHERE NOT c.in_extension AND c.objsubid = 0
           AND c.command_tag IN ('CREATE SCHEMA', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW',
                                 'CREATE MATERIALIZED VIEW', 'CREATE FOREIGN TABLE', 'CREATE SEQUENCE')
    LOOP
        FOR statement IN SELECT g FROM fluxbase_admin.explorer_grants_for(created.classid, created.objid) g LOOP
            EXECUTE statement;
        END LOOP;
    END LOOP;
END
$$;

CREATE EVENT TRIGGER fluxbase_explorer_grants ON ddl_command_end
    WHEN TAG IN ('CREATE SCHEMA', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW',
                 'CREATE MATERIALIZED VIEW', 'CREATE FOREIGN TABLE', 'CREATE SEQUENCE')
    EXECUTE FUNCTION fluxbase_admin.grant_new_objects_to_explorer();

-- ---------------------------------------------------------------------------------
-- The logins of both planes, checked as one
-- ---------------------------------------------------------------------------------

-- The roles the data login must be a member of, each for its reason.
CREATE FUNCTION fluxbase_admin.data_plane_roles() RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT DISTINCT r FROM pg_catalog.unnest(
        ARRAY['fluxbase_explorer', 'anon', 'authenticated', 'service_role', dashboard_auth.get_setting('runner.role') #>> '{}']
        || auth.allowed_user_roles()) r ORDER BY r)
$$;

-- What is wrong with `login` as the login of `plane` ('dashboard' or 'data'): one row a
-- problem, naming the role and the fix; no rows when it is fit. Memberships count
-- directly and through other roles. Refused: a superuser, CREATEROLE or REPLICATION
-- anywhere; any predefined pg_* role; the other plane's roles (for the data login, the
-- dashboard's roles; the dashboard login is a member of fluxbase_dashboard only);
-- INHERIT on the login; settings of its own. A data login that lacks a role it switches
-- to is listed too, with the GRANT that fixes it and `missing` true: that one fails only
-- the work that needs the role, so a claim or a settings change refuses only the
-- others. Roles are cluster-wide while users.extra_roles is per database, so a data
-- login may hold app roles another database needs: those are no problem.
CREATE FUNCTION fluxbase_admin.list_login_problems(login text, plane text)
RETURNS TABLE (role text, problem text, fix text, missing boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    me       pg_catalog.pg_roles;
    wanted   text[];
    held     record;
    name     text;
BEGIN
    IF plane IS NULL OR plane NOT IN ('dashboard', 'data') THEN
        RAISE EXCEPTION 'plane is dashboard or data, not %', coalesce(pg_catalog.quote_literal(plane), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO me FROM pg_catalog.pg_roles r WHERE r.rolname = login;
    IF me.oid IS NULL THEN
        role := login; problem := 'the role does not exist'; missing := false;
        fix := pg_catalog.format('CREATE ROLE %I LOGIN NOINHERIT PASSWORD ''...''', login);
        RETURN NEXT;
        RETURN;
    END IF;
    wanted := CASE plane WHEN 'data' THEN fluxbase_admin.data_plane_roles() ELSE ARRAY['fluxbase_dashboard'] END;
    -- missing: the login lacks a role it switches to; every other problem is one of
    -- holding too much.
    missing := false;
    role := me.rolname;
    IF me.rolsuper THEN problem := 'is a superuser'; fix := pg_catalog.format('ALTER ROLE %I NOSUPERUSER', me.rolname); RETURN NEXT; END IF;
    IF me.rolcreaterole THEN problem := 'has CREATEROLE'; fix := pg_catalog.format('ALTER ROLE %I NOCREATEROLE', me.rolname); RETURN NEXT; END IF;
    IF me.rolreplication THEN problem := 'has REPLICATION'; fix := pg_catalog.format('ALTER ROLE %I NOREPLICATION', me.rolname); RETURN NEXT; END IF;
    IF me.rolinherit THEN
        problem := 'has INHERIT: a login of the dashboard must use its roles only through SET ROLE';
        fix := pg_catalog.format('ALTER ROLE %I NOINHERIT', me.rolname);
        RETURN NEXT;
    END IF;
    IF me.rolconfig IS NOT NULL THEN
        problem := pg_catalog.format('has settings of its own (%s)', pg_catalog.array_to_string(me.rolconfig, ', '));
        fix := pg_catalog.format('ALTER ROLE %I RESET ALL', me.rolname);
        RETURN NEXT;
    END IF;

    -- Every role it reaches, directly or through others, with the direct membership
    -- that leads there.
    FOR held IN
        WITH RECURSIVE reached (oid, via) AS (
            SELECT m.roleid, m.roleid FROM pg_catalog.pg_auth_members m WHERE m.member = me.oid
            UNION
            SELECT m.roleid, r.via FROM pg_catalog.pg_auth_members m JOIN reached r ON m.member = r.oid
        )
        SELECT DISTINCT g.rolname::text AS name, g.rolsuper, g.rolcreaterole, g.rolreplication, g.rolcanlogin,
               v.rolname::text AS via, g.oid = r.via AS direct
          FROM reached r
          JOIN pg_catalog.pg_roles g ON g.oid = r.oid
          JOIN pg_catalog.pg_roles v ON v.oid = r.via
         ORDER BY 1
    LOOP
        role := held.name;
        fix := pg_catalog.format('REVOKE %I FROM %I', held.via, me.rolname);
        problem := CASE
            WHEN held.rolsuper THEN 'is a superuser'
            WHEN held.rolcreaterole THEN 'has CREATEROLE'
            WHEN held.rolreplication THEN 'has REPLICATION'
            WHEN held.name LIKE 'pg\_%' THEN 'is a predefined role, which reads or does more than the dashboard grants'
            WHEN plane = 'data' AND held.name IN ('fluxbase_dashboard', 'fluxbase_operator')
                THEN 'is a role of the dashboard plane: app code on the data login could use it'
            WHEN plane = 'dashboard' AND held.direct AND NOT held.name = ANY (wanted)
                THEN 'is not fluxbase_dashboard: the dashboard login is a member of fluxbase_dashboard only'
        END;
        IF problem IS NOT NULL THEN
            problem := CASE WHEN held.direct THEN 'member of ' ELSE pg_catalog.format('member (through %s) of ', held.via) END
                       || held.name || ', which ' || problem;
            RETURN NEXT;
        END IF;
    END LOOP;

    FOREACH name IN ARRAY wanted LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                        WHERE m.member = me.oid AND g.rolname = name) THEN
            role := name;
            problem := CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = name)
                            THEN pg_catalog.format('%s is not a member of %s, which the %s plane needs', me.rolname, name, plane)
                            ELSE pg_catalog.format('role %s does not exist', name) END;
            fix := pg_catalog.format('GRANT %I TO %I', name, me.rolname);
            missing := true;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION fluxbase_admin.list_login_problems(text, text) IS 'What is wrong with a login of the dashboard or data plane, each with its fix; no rows when it is fit';

-- The data logins of this database: LOGIN roles that are direct members of the explorer
-- role and may claim here (prepare_data_login grants that per database; roles are
-- cluster-wide).
CREATE FUNCTION fluxbase_admin.data_logins() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.rolname::text FROM pg_catalog.pg_auth_members am
      JOIN pg_catalog.pg_roles g ON g.oid = am.roleid AND g.rolname = 'fluxbase_explorer'
      JOIN pg_catalog.pg_roles m ON m.oid = am.member AND m.rolcanlogin AND NOT m.rolsuper
     WHERE pg_catalog.has_function_privilege(m.oid, 'fluxbase_admin.claim_ticket(text, text)', 'EXECUTE')
     ORDER BY 1
$$;

-- Runs when runner.role or users.extra_roles changes. Refuses (42501) the change when a
-- data login of this database would hold too much; warns when one lacks a role it now
-- switches to (the work that needs it fails with Postgres's own message until then).
CREATE FUNCTION fluxbase_admin.check_data_logins() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found record;
BEGIN
    FOR found IN
        SELECT l.login, p.* FROM fluxbase_admin.data_logins() l(login), fluxbase_admin.list_login_problems(l.login, 'data') p
    LOOP
        IF NOT found.missing THEN
            RAISE EXCEPTION 'the data login %: % %', found.login, found.role, found.problem
                  USING ERRCODE = 'insufficient_privilege', HINT = pg_catalog.format('An operator runs: %s', found.fix);
        END IF;
        RAISE WARNING 'the data login %: %', found.login, found.problem
              USING HINT = pg_catalog.format('An operator runs: %s', found.fix);
    END LOOP;
END
$$;

-- Makes `login` (an existing LOGIN role) the data plane's login: NOINHERIT, a member of
-- the roles the data plane switches to, and allowed the data plane's entry points.
-- Superusers only. Returns what is still wrong with it (no rows when it is fit).
CREATE FUNCTION fluxbase_admin.prepare_data_login(login text)
RETURNS TABLE (role text, problem text, fix text, missing boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    granted text;
BEGIN
    EXECUTE pg_catalog.format('ALTER ROLE %I NOINHERIT', login);
    FOREACH granted IN ARRAY fluxbase_admin.data_plane_roles() LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = granted) THEN
            EXECUTE pg_catalog.format('GRANT %I TO %I', granted, login);
        END IF;
    END LOOP;
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA fluxbase_admin TO %I', login);
    -- The data plane's invoker functions, and of the dashboard's definer functions only
    -- claim and record_result. Never bind_claim (only claim binds a request), nor
    -- statement_mac (its key must not be usable to test guesses at a statement), nor the
    -- real-time event MAC and key (app code runs on this login, and could forge events).
    FOR granted IN
        SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'fluxbase_admin'::pg_catalog.regnamespace AND p.prokind = 'f'
           AND p.prorettype <> 'pg_catalog.event_trigger'::pg_catalog.regtype
           AND (NOT p.prosecdef OR p.proname IN ('claim_ticket', 'record_result'))
           AND p.proname NOT IN ('prepare_data_login', 'bind_claim', 'statement_mac', 'realtime_event_mac', 'realtime_event_key')
        UNION ALL
        SELECT 'auth.apply_impersonation()'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', granted, login);
    END LOOP;
    RETURN QUERY SELECT * FROM fluxbase_admin.list_login_problems(login, 'data');
END
$$;
COMMENT ON FUNCTION fluxbase_admin.prepare_data_login(text) IS 'Superusers: makes a LOGIN role the data plane''s login and returns what is still wrong with it';

-- ---------------------------------------------------------------------------------
-- Tickets
-- ---------------------------------------------------------------------------------

CREATE TABLE dashboard_auth.tickets (
    -- SHA-256 of the ticket: the ticket itself is never stored.
    ticket_hash      bytea PRIMARY KEY,
    session_id       uuid NOT NULL REFERENCES dashboard_auth.sessions (id) ON DELETE CASCADE,
    admin_id         uuid NOT NULL,
    operation        text NOT NULL CHECK (operation IN ('browse', 'cell', 'copy', 'export', 'edit', 'revert', 'sql_run', 'impersonate')),
    request          jsonb NOT NULL,
    -- The role the work runs as, and the claims it sees.
    run_as           text NOT NULL,
    claims           jsonb,
    impersonation_id uuid,
    intent_id        bigint,
    read_only        boolean NOT NULL,
    issued_at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    expires_at       timestamptz NOT NULL,
    claimed_at       timestamptz,
    claimed_by_pid   integer,
    result_id        bigint,
    CHECK (expires_at <= issued_at + interval '30 seconds')
);
CREATE INDEX tickets_expires_at ON dashboard_auth.tickets (expires_at);
COMMENT ON TABLE dashboard_auth.tickets IS 'Single-use hand-offs from the dashboard plane to the data plane (hashes only)';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.tickets', '');
REVOKE ALL ON dashboard_auth.tickets FROM PUBLIC;

-- Stores a ticket and returns it. Internal: the dashboard plane's functions call it after
-- checking the session and recording the intent.
CREATE FUNCTION fluxbase_admin.new_ticket(
    who dashboard_auth.session_admin, operation text, request jsonb, run_as text, claims jsonb,
    impersonation_id uuid, intent_id bigint, read_only boolean
) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ticket text := dashboard_auth.new_token('fbk');
    issued timestamptz := pg_catalog.clock_timestamp();
BEGIN
    -- Spent and expired tickets are kept a day: they show which backend claimed what.
    DELETE FROM dashboard_auth.tickets t WHERE t.expires_at < pg_catalog.now() - interval '1 day';
    INSERT INTO dashboard_auth.tickets (ticket_hash, session_id, admin_id, operation, request, run_as, claims,
                                        impersonation_id, intent_id, read_only, issued_at, expires_at)
    VALUES (dashboard_auth.token_hash(ticket), who.session_id, who.admin_id, operation, request, run_as, claims,
            impersonation_id, intent_id, read_only, issued, issued + interval '30 seconds');
    RETURN ticket;
END
$$;

-- The browse request that following `foreign_key` of a row of schema.table makes: a page
-- of the referenced table, filtered on the referenced columns (catalog work only).
CREATE FUNCTION fluxbase_admin.follow_request(request jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schema_name   text := request ->> 'schema';
    relation_name text := request ->> 'table';
    foreign_key   text := request ->> 'foreign_key';
    row_values    jsonb := request -> 'row';
    rel    oid := fluxbase_admin.browsable_relation(schema_name, relation_name);
    fk     pg_catalog.pg_constraint;
    filter jsonb := '[]';
    pair   record;
    target record;
BEGIN
    SELECT * INTO fk FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = rel AND c.contype = 'f' AND c.conname = foreign_key;
    IF fk.oid IS NULL THEN
        RAISE EXCEPTION '%.% has no foreign key %', pg_catalog.quote_ident(schema_name), pg_catalog.quote_ident(relation_name),
                        pg_catalog.quote_ident(coalesce(foreign_key, ''))
              USING ERRCODE = 'undefined_object', HINT = 'fluxbase_admin.describe_table lists them.';
    END IF;
    FOR pair IN
        SELECT la.attname AS local_column, ra.attname AS referenced_column
          FROM ROWS FROM (pg_catalog.unnest(fk.conkey), pg_catalog.unnest(fk.confkey)) AS k(local_attnum, referenced_attnum)
          JOIN pg_catalog.pg_attribute la ON la.attrelid = fk.conrelid AND la.attnum = k.local_attnum
          JOIN pg_catalog.pg_attribute ra ON ra.attrelid = fk.confrelid AND ra.attnum = k.referenced_attnum
    LOOP
        IF pg_catalog.jsonb_typeof(row_values) IS DISTINCT FROM 'object'
           OR coalesce(row_values -> pair.local_column::text, 'null') = 'null' THEN
            RAISE EXCEPTION 'the row''s % is NULL: it refers to no row', pg_catalog.quote_ident(pair.local_column)
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        filter := filter || pg_catalog.jsonb_build_object('column', pair.referenced_column, 'op', 'eq',
                                                          'value', row_values -> pair.local_column::text);
    END LOOP;
    SELECT n.nspname::text AS schema, c.relname::text AS name INTO target
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = fk.confrelid;
    -- The referenced table must be browsable too (not a hidden schema).
    PERFORM fluxbase_admin.browsable_relation(target.schema, target.name);
    RETURN pg_catalog.jsonb_build_object('schema', target.schema, 'table', target.name, 'filter', filter,
               'page_size', 1, 'total', 'none',
               'followed', pg_catalog.jsonb_build_object('schema', schema_name, 'table', relation_name, 'foreign_key', foreign_key));
END
$$;

-- A ticket for work on the data plane, for a signed-in admin. In a transaction of its
-- own: the intent it records commits whatever happens to the work. Operations and their
-- requests (jsonb):
--   browse  {schema, table, filter, sort, search, page_size, cursor, total}  viewers too
--   follow  {schema, table, foreign_key, row}: a browse of the referenced row  viewers too
--   export  {schema, table, filter, sort, search, format}: CSV (the default) or
--           JSON Lines ("jsonl") through a cursor                                 viewers too
--   cell    {schema, table, column, key}: one cell in full (read_cell)          viewers too
--   copy    {schema, table, keys}: rows as INSERT and JSON (copy_rows)          viewers too
--   edit    {schema, table, operation, payload} (see explorer_edit.sql)         admins
--   revert  {audit_id}: undoes a recorded edit (revert_edit)                    admins
--   impersonate  {read_only}: for psql, the transaction becomes the target        admins
-- With an impersonation, the work runs as its target and is recorded as its intent.
-- The ticket expires after 30 seconds and is claimed once.
CREATE FUNCTION fluxbase_admin.issue_ticket(session_token text, operation text, request jsonb DEFAULT '{}', impersonation_id uuid DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who       dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    actor     dashboard_auth.actor := dashboard_auth.session_actor(who);
    req       jsonb := coalesce(request, '{}');
    context   auth.impersonation_context;
    kind      text := issue_ticket.operation;
    run_as    text := 'fluxbase_explorer';
    read_only boolean := true;
    relation  text;
    relation_kind text;
    action    text;
    details   jsonb;
    intent    bigint;
BEGIN
    IF kind IS NULL OR kind NOT IN ('browse', 'follow', 'cell', 'copy', 'export', 'edit', 'revert', 'impersonate') THEN
        RAISE EXCEPTION 'unknown operation %: use browse, follow, cell, copy, export, edit, revert or impersonate',
                        coalesce(pg_catalog.quote_literal(kind), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.jsonb_typeof(req) <> 'object' THEN
        RAISE EXCEPTION 'the request is a JSON object, not %', pg_catalog.jsonb_typeof(req)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind IN ('edit', 'export') THEN
        PERFORM dashboard_auth.require_capability(session_token, kind);
    ELSIF kind = 'copy' THEN
        -- Rows copied out are a small export.
        PERFORM dashboard_auth.require_capability(session_token, 'export');
    ELSIF kind = 'revert' THEN
        PERFORM dashboard_auth.require_capability(session_token, 'edit');
        IF impersonation_id IS NOT NULL THEN
            RAISE EXCEPTION 'a revert runs as the explorer, never impersonated: call it without an impersonation'
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- The entry's table and rows: the data login cannot read the audit log.
        req := fluxbase_admin.revert_request(req);
    END IF;
    IF impersonation_id IS NOT NULL OR kind = 'impersonate' THEN
        PERFORM dashboard_auth.require_capability(session_token, 'impersonate');
    END IF;
    IF impersonation_id IS NOT NULL THEN
        context := auth.impersonation_context(session_token, impersonation_id);
        run_as := context.role;
    ELSIF kind = 'impersonate' THEN
        RAISE EXCEPTION 'an impersonate ticket needs an impersonation' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'follow' THEN
        req := fluxbase_admin.follow_request(req);
        kind := 'browse';
    END IF;

    IF kind = 'impersonate' THEN
        read_only := coalesce((req ->> 'read_only')::boolean, true);
        action := 'psql';
        details := pg_catalog.jsonb_build_object('read_only', read_only);
    ELSE
        IF req ->> 'schema' IS NULL OR req ->> 'table' IS NULL THEN
            RAISE EXCEPTION 'the request names no table: give "schema" and "table"' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        relation := pg_catalog.format('%I.%I', req ->> 'schema', req ->> 'table');
        -- As browsable_relations() names it, read by oid (the view of every relation is
        -- not inlined here: it cost more than the rest of the ticket).
        SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                              WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' END
          INTO relation_kind FROM pg_catalog.pg_class c
         WHERE c.oid = fluxbase_admin.browsable_relation(req ->> 'schema', req ->> 'table');
        details := pg_catalog.jsonb_build_object('schema', req ->> 'schema', 'table', req ->> 'table');
        IF kind = 'edit' THEN
            IF req ->> 'operation' IS NULL OR req ->> 'operation' NOT IN ('update', 'insert', 'delete', 'update_where', 'delete_where') THEN
                RAISE EXCEPTION 'unknown edit operation %: use update, insert, delete, update_where or delete_where',
                                coalesce(pg_catalog.quote_literal(req ->> 'operation'), 'NULL')
                      USING ERRCODE = 'invalid_parameter_value';
            END IF;
            read_only := false;
            action := 'explorer.' || (req ->> 'operation');
            details := details || pg_catalog.jsonb_build_object('operation', req ->> 'operation');
        ELSIF kind = 'revert' THEN
            read_only := false;
            action := 'explorer.reverted';
            details := details || pg_catalog.jsonb_build_object('reverted_entry', req -> 'audit_id',
                                                                  'reverted_operation', req -> 'reverted_operation');
        ELSIF kind IN ('cell', 'copy') THEN
            -- Catalog work only: a table without a key or an unknown column is refused
            -- now, before the data plane.
            IF kind = 'cell' THEN
                PERFORM fluxbase_admin.build_cell(fluxbase_admin.relation_shape(fluxbase_admin.browsable_relation(req ->> 'schema', req ->> 'table')),
                                                  req ->> 'column', req -> 'key');
                action := 'explorer.browse';
                details := details || pg_catalog.jsonb_build_object('kind', relation_kind);
            ELSE
                PERFORM fluxbase_admin.build_copy(fluxbase_admin.relation_shape(fluxbase_admin.browsable_relation(req ->> 'schema', req ->> 'table')),
                                                  req);
                action := 'explorer.copy';
                details := details || pg_catalog.jsonb_build_object('keys', pg_catalog.jsonb_array_length(req -> 'keys'));
            END IF;
        ELSIF kind = 'export' THEN
            IF coalesce(req ->> 'format', 'csv') NOT IN ('csv', 'jsonl') THEN
                RAISE EXCEPTION 'unknown export format %: use csv or jsonl', pg_catalog.quote_literal(req ->> 'format')
                      USING ERRCODE = 'invalid_parameter_value';
            END IF;
            action := 'explorer.export';
            details := details || pg_catalog.jsonb_build_object('format', coalesce(req ->> 'format', 'csv'), 'filter', req -> 'filter',
                                                                  'sort', req -> 'sort', 'search', req -> 'search');
        ELSE
            action := 'explorer.browse';
            details := details || pg_catalog.jsonb_build_object('kind', relation_kind);
            IF req ? 'followed' THEN
                details := details || pg_catalog.jsonb_build_object('followed', req -> 'followed');
            END IF;
        END IF;
    END IF;

    IF impersonation_id IS NOT NULL THEN
        intent := auth.record_impersonated_intent(session_token, impersonation_id,
                                                  CASE WHEN kind = 'cell' THEN 'explorer.cell' ELSE action END, details);
    ELSIF kind IN ('browse', 'cell') THEN
        -- A plain page read, or a cell of it, is audited once per table and session.
        PERFORM dashboard_auth.audit_read(who, 'explorer.browse', 'relation', relation, details);
    ELSIF kind IN ('export', 'copy') THEN
        intent := dashboard_auth.audit_by(actor, action, 'relation', relation, details);
    ELSE
        intent := dashboard_auth.audit_by(actor, action || '.intent', 'relation', relation, details);
    END IF;
    RETURN fluxbase_admin.new_ticket(who, kind, req, run_as, context.claims, impersonation_id, intent, read_only);
END
$$;
COMMENT ON FUNCTION fluxbase_admin.issue_ticket(text, text, jsonb, uuid) IS 'Dashboard plane: checks the session, records the intent and returns a single-use ticket for the data plane';

-- ---------------------------------------------------------------------------------
-- Claiming and recording (the data login's only two dashboard functions)
-- ---------------------------------------------------------------------------------

-- An audit entry for the work of a ticket, by the admin who asked for it and from where:
-- the data plane's own settings say nothing of the request.
CREATE FUNCTION fluxbase_admin.audit_for_intent(intent dashboard_auth.audit_log, action text, target_type text,
                                                target_id text, details jsonb) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT dashboard_auth.audit(intent.actor_type, intent.actor_id, intent.actor, action, target_type, target_id,
                                details, intent.ip, intent.user_agent)
$$;

-- The request claimed in this transaction (data_plane.rs keeps it). Refused (55000) when
-- none is.
CREATE FUNCTION fluxbase_admin.bound_request() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound text := fluxbase_admin.bound_request_text();
BEGIN
    IF bound IS NULL THEN
        RAISE EXCEPTION 'no ticket is claimed in this transaction'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Begin a transaction on the data login and call fluxbase_admin.claim_ticket(ticket) first.';
    END IF;
    RETURN bound::jsonb;
END
$$;

-- The first statement of a data-plane transaction: checks the ticket, the session and
-- the impersonation again, spends the ticket and binds its request to this backend until
-- the transaction ends. A read ticket makes the transaction READ ONLY. A SQL run's ticket
-- is claimed with the statement itself, which must be the text start_sql_run recorded (by
-- its keyed MAC). Returns {ok: true, operation, read_only, impersonated}, or, when the
-- impersonated target is refused now, {ok: false, code: forbidden_target, message} with
-- the refusal audited and nothing bound: commit the transaction to keep the record.
CREATE FUNCTION fluxbase_admin.claim_ticket(ticket text, statement text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spent   dashboard_auth.tickets;
    problem record;
    imp     auth.impersonation_sessions;
    refusal text;
BEGIN
    IF fluxbase_admin.bound_request_text() IS NOT NULL THEN
        RAISE EXCEPTION 'a ticket is claimed in this transaction already: one ticket per transaction'
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Memberships that give too much refuse the claim; a missing one fails where it is
    -- needed, with Postgres's own message.
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'a superuser cannot claim a ticket: the data plane never runs as one'
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Claim it in a session of the data login (FLUXBASE_ADMIN_DATA_DATABASE_URL).';
    END IF;
    -- list_login_problems says which and how to fix it, but walks every membership (most
    -- of a claim's time). First a quick check that finds at least what it refuses: the
    -- login's own attributes and settings, and every role it is a member of, directly or
    -- not (pg_has_role MEMBER: Postgres's cached membership list, kept right by its own
    -- invalidation, and no INHERIT needed), that is a superuser, has CREATEROLE or
    -- REPLICATION, is predefined, or is the dashboard's. Only when it finds something is
    -- the list asked.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles me
                WHERE me.rolname = session_user
                  AND (me.rolsuper OR me.rolcreaterole OR me.rolreplication OR me.rolinherit OR me.rolconfig IS NOT NULL
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles g
                                   WHERE g.oid <> me.oid
                                     AND (g.rolsuper OR g.rolcreaterole OR g.rolreplication OR g.rolname LIKE 'pg\_%'
                                          OR g.rolname IN ('fluxbase_dashboard', 'fluxbase_operator'))
                                     AND pg_catalog.pg_has_role(me.oid, g.oid, 'MEMBER'))))
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles me WHERE me.rolname = session_user) THEN
        SELECT * INTO problem FROM fluxbase_admin.list_login_problems(session_user::text, 'data') p
         WHERE NOT p.missing LIMIT 1;
        IF problem.role IS NOT NULL THEN
            RAISE EXCEPTION 'the data login %: % %', session_user, problem.role, problem.problem
                  USING ERRCODE = 'insufficient_privilege', HINT = pg_catalog.format('An operator runs: %s', problem.fix);
        END IF;
    END IF;
    UPDATE dashboard_auth.tickets t SET claimed_at = pg_catalog.clock_timestamp(), claimed_by_pid = pg_catalog.pg_backend_pid()
     WHERE t.ticket_hash = dashboard_auth.token_hash(claim_ticket.ticket) AND t.claimed_at IS NULL
       AND t.expires_at > pg_catalog.clock_timestamp()
    RETURNING * INTO spent;
    IF spent.ticket_hash IS NULL THEN
        RAISE EXCEPTION 'the ticket is unknown, spent or expired'
              USING ERRCODE = 'invalid_authorization_specification', HINT = 'Ask the dashboard plane for a new one.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM dashboard_auth.live_sessions s WHERE s.id = spent.session_id) THEN
        RAISE EXCEPTION 'the session is invalid or has expired'
              USING ERRCODE = 'invalid_authorization_specification', HINT = 'Sign in again.';
    END IF;
    IF spent.impersonation_id IS NOT NULL THEN
        SELECT * INTO imp FROM auth.impersonation_sessions i WHERE i.id = spent.impersonation_id;
        IF imp.id IS NULL OR NOT imp.active OR imp.expires_at <= pg_catalog.now() THEN
            RAISE EXCEPTION 'impersonation session % is not active: it ended or expired', spent.impersonation_id
                  USING ERRCODE = 'FB001', HINT = 'Start a new one with auth.start_impersonation.';
        END IF;
        -- The target's role is checked again as it is applied: its attributes or
        -- memberships may have changed since the ticket. A refusal is recorded, so it is
        -- returned, not raised: the caller commits it with the spent ticket, and nothing
        -- is bound.
        refusal := CASE WHEN imp.mode <> 'service' THEN auth.forbidden_target_role(imp.target_role) END;
        IF refusal IS NOT NULL THEN
            PERFORM fluxbase_admin.audit_for_intent(intent, 'impersonation.refused', 'impersonation',
                        spent.impersonation_id::text,
                        pg_catalog.jsonb_build_object('at', 'claim', 'operation', spent.operation,
                                                      'target_role', imp.target_role, 'refusal', refusal))
              FROM dashboard_auth.audit_log intent WHERE intent.id = spent.intent_id;
            RETURN pg_catalog.jsonb_build_object('ok', false, 'code', 'forbidden_target',
                       'message', 'impersonation refused: ' || refusal, 'operation', spent.operation);
        END IF;
    END IF;
    IF spent.operation = 'sql_run' THEN
        IF claim_ticket.statement IS NULL
           OR pg_catalog.encode(fluxbase_admin.statement_mac(claim_ticket.statement), 'hex') IS DISTINCT FROM spent.request ->> 'statement_mac' THEN
            RAISE EXCEPTION 'the statement is not the one SQL run % recorded', spent.request ->> 'run_id'
                  USING ERRCODE = 'invalid_parameter_value',
                        HINT = 'Claim a SQL run''s ticket with the very statement given to start_sql_run.';
        END IF;
        UPDATE dashboard_auth.sql_runs r SET backend_pid = pg_catalog.pg_backend_pid()
         WHERE r.id = (spent.request ->> 'run_id')::uuid;
    ELSIF claim_ticket.statement IS NOT NULL THEN
        RAISE EXCEPTION 'only a SQL run''s ticket is claimed with a statement' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM fluxbase_admin.bind_claim(pg_catalog.jsonb_build_object(
        'ticket_hash', pg_catalog.encode(spent.ticket_hash, 'hex'), 'operation', spent.operation,
        'request', spent.request || CASE WHEN claim_ticket.statement IS NULL THEN '{}'::jsonb
                                         ELSE pg_catalog.jsonb_build_object('statement', claim_ticket.statement) END,
        'run_as', spent.run_as, 'claims', spent.claims,
        'impersonation_id', spent.impersonation_id, 'intent_id', spent.intent_id, 'read_only', spent.read_only,
        'backend_pid', pg_catalog.pg_backend_pid())::text);
    IF spent.read_only THEN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
    END IF;
    RETURN pg_catalog.jsonb_build_object('ok', true, 'operation', spent.operation, 'read_only', spent.read_only,
                                         'impersonated', spent.impersonation_id IS NOT NULL);
END
$$;
COMMENT ON FUNCTION fluxbase_admin.claim_ticket(text, text) IS 'Data plane: the first statement of a transaction; spends a ticket and binds its request to this backend';

-- The result of the bound work, written in the work's own transaction so that it commits
-- with it, once: a second call (a forged result from app code, say) finds the intent
-- spent and raises, which rolls the whole transaction back. outcome for an edit: the
-- edit's answer; for a SQL run: {status, row_count, affected, truncated, error_code,
-- error_message}.
CREATE FUNCTION fluxbase_admin.record_result(outcome jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound  jsonb := fluxbase_admin.bound_request();
    spent  dashboard_auth.tickets;
    intent dashboard_auth.audit_log;
    result bigint;
    req    jsonb;
BEGIN
    IF (bound ->> 'backend_pid')::integer IS DISTINCT FROM pg_catalog.pg_backend_pid() THEN
        RAISE EXCEPTION 'the claimed ticket belongs to another backend' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO spent FROM dashboard_auth.tickets t
     WHERE t.ticket_hash = pg_catalog.decode(bound ->> 'ticket_hash', 'hex')
       FOR UPDATE;
    IF spent.result_id IS NOT NULL THEN
        RAISE EXCEPTION 'the result of this ticket is recorded already: the intent is spent'
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF spent.intent_id IS NULL THEN
        RAISE EXCEPTION 'this ticket''s work has no intent to record a result against'
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO intent FROM dashboard_auth.audit_log a WHERE a.id = spent.intent_id;
    req := spent.request;
    IF spent.operation = 'sql_run' THEN
        result := fluxbase_admin.record_sql_run_result(spent, intent, outcome);
    ELSIF spent.impersonation_id IS NOT NULL THEN
        result := fluxbase_admin.audit_for_intent(intent, pg_catalog.regexp_replace(intent.action, '\.intent$', '.result'),
            'impersonation', spent.impersonation_id::text,
            pg_catalog.jsonb_build_object('schema', req -> 'schema', 'table', req -> 'table', 'operation', req -> 'operation',
                                          'intent_id', spent.intent_id)
            || (coalesce(outcome, '{}') - 'operation'));
    ELSE
        result := fluxbase_admin.audit_for_intent(intent,
            CASE WHEN coalesce((outcome ->> 'ok')::boolean, false) THEN pg_catalog.regexp_replace(intent.action, '\.intent$', '')
                 ELSE pg_catalog.regexp_replace(intent.action, '\.intent$', '.failed') END,
            'relation', intent.target_id,
            pg_catalog.jsonb_build_object('schema', req -> 'schema', 'table', req -> 'table', 'operation', req -> 'operation',
                                          'intent_id', spent.intent_id, 'count', outcome -> 'count',
                                          'before', outcome -> 'before', 'after', outcome -> 'after',
                                          'errors', outcome -> 'errors')
            || CASE WHEN spent.operation = 'revert'
                    THEN pg_catalog.jsonb_build_object('reverted_entry', req -> 'audit_id',
                                                       'reverted_operation', req -> 'reverted_operation')
                    ELSE '{}'::jsonb END);
    END IF;
    UPDATE dashboard_auth.tickets t SET result_id = result WHERE t.ticket_hash = spent.ticket_hash;
    RETURN result;
END
$$;
COMMENT ON FUNCTION fluxbase_admin.record_result(jsonb) IS 'Data plane: records the result of the claimed work against its intent, once, in the work''s transaction';

GRANT EXECUTE ON FUNCTION
    fluxbase_admin.issue_ticket(text, text, jsonb, uuid),
    fluxbase_admin.list_login_problems(text, text)
TO fluxbase_dashboard;
GRANT EXECUTE ON FUNCTION
    fluxbase_admin.list_login_problems(text, text),
    fluxbase_admin.sync_explorer_grants()
TO fluxbase_operator;
