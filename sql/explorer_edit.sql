-- Edits: update, insert and delete rows of a table, one by primary key or many at once,
-- each edit in one transaction, all or nothing. The statements come from the Rust
-- builder (fluxbase_admin.build_edit); here are the checks, the executor and the audit.
--
-- An edit is data-plane work (data_plane.sql): fluxbase_admin.issue_ticket records the intent
-- on the dashboard plane, then the data login claims the ticket and fluxbase_admin.edit()
-- runs the statements as fluxbase_explorer, or impersonated as the target, so that RLS
-- and WITH CHECK apply, and records the result, with the rows before and after, in the
-- edit's own transaction.

-- The columns a constraint or unique index covers, for naming the fields of an error.
CREATE FUNCTION fluxbase_admin.constraint_columns(schema_name text, relation_name text, constraint_name text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT fluxbase_admin.column_names(c.conrelid, c.conkey)
           FROM pg_catalog.pg_constraint c
           JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
          WHERE n.nspname = schema_name AND r.relname = relation_name AND c.conname = constraint_name
          LIMIT 1),
        -- A foreign key of another table that refers to this one (a delete or a key change).
        (SELECT fluxbase_admin.column_names(c.confrelid, c.confkey)
           FROM pg_catalog.pg_constraint c
           JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
          WHERE n.nspname = schema_name AND r.relname = relation_name AND c.conname = constraint_name AND c.contype = 'f'
          LIMIT 1),
        (SELECT fluxbase_admin.column_names(i.indrelid, i.indkey::smallint[])
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
          WHERE n.nspname = schema_name AND ic.relname = constraint_name
          LIMIT 1),
        '[]'::jsonb)
$$;

-- The plan of an edit, with every written value checked against its column (as the
-- claim's role, given one): a value that does not fit, or breaks a domain's check, is a
-- field error, all of them at once.
CREATE FUNCTION fluxbase_admin.plan_edit_for(schema_name text, relation_name text, operation text, payload jsonb,
                                             bound jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan jsonb := fluxbase_admin.build_edit(
                      fluxbase_admin.relation_shape(fluxbase_admin.browsable_relation(schema_name, relation_name)),
                      operation, payload::text);
BEGIN
    -- The builder's own field errors (lengths, NULLs), then every value that does not fit.
    RETURN plan || pg_catalog.jsonb_build_object('errors',
        coalesce(plan -> 'errors', '[]') || fluxbase_admin.value_errors(plan, bound));
END
$$;

-- Runs an edit plan as the claim's role, in a subtransaction: a failure changes nothing
-- and comes back as errors naming the fields and the constraint. A filtered edit first
-- locks the rows it matches, and changes nothing unless they are as many as the caller
-- expected. An invoker function: whatever plan it is handed, it can do no more than its
-- caller could with plain SQL. It switches back to the data login before it returns.
CREATE FUNCTION fluxbase_admin.run_edit(plan jsonb, bound jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    params   text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    expected bigint := (plan ->> 'expected_count')::bigint;
    before   jsonb;
    matched  bigint;
    after    jsonb;
    changed  bigint;
    failure  jsonb;
    state    text;
    message  text;
    detail   text;
    column_name text;
    constraint_name text;
BEGIN
    IF pg_catalog.jsonb_array_length(plan -> 'errors') > 0 THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'operation', plan -> 'operation', 'errors', plan -> 'errors');
    END IF;
    PERFORM fluxbase_admin.enter_role(bound);
    BEGIN
        IF plan ->> 'lock_sql' IS NOT NULL THEN
            EXECUTE plan ->> 'lock_sql' INTO before, matched USING params;
            IF matched <> expected THEN
                RAISE EXCEPTION '% now, not the % expected: nothing was changed',
                      CASE WHEN matched = 1 THEN '1 row matches' ELSE matched || ' rows match' END, expected
                      USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
        END IF;
        EXECUTE plan ->> 'apply_sql' INTO after, changed USING params;
        IF plan ->> 'lock_sql' IS NULL AND expected IS NOT NULL AND changed <> expected THEN
            RAISE EXCEPTION '% now, not the % expected: nothing was changed',
                  CASE WHEN changed = 1 THEN '1 row matches' ELSE changed || ' rows match' END, expected
                  USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF plan ->> 'operation' LIKE 'delete%' THEN
            -- A delete returns the rows as they were: they are the before, and there is no after.
            before := after;
            after := '[]';
        END IF;
    EXCEPTION WHEN integrity_constraint_violation OR data_exception OR insufficient_privilege
                   OR object_not_in_prerequisite_state OR raise_exception OR feature_not_supported THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                                column_name = COLUMN_NAME, constraint_name = CONSTRAINT_NAME;
        failure := pg_catalog.jsonb_build_object(
            'code', CASE WHEN state = '23502' THEN 'not_null' WHEN state = '23514' THEN 'check'
                         WHEN state = '23503' THEN 'foreign_key' WHEN state = '23505' THEN 'unique'
                         WHEN state = '23P01' THEN 'exclusion' WHEN state = '42501' THEN 'permission'
                         WHEN state = '55000' THEN 'count_changed' WHEN state LIKE '22%' THEN 'type' ELSE 'error' END,
            'sqlstate', state, 'message', message, 'detail', nullif(detail, ''),
            'column', nullif(column_name, ''), 'constraint', nullif(constraint_name, ''));
    END;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SET LOCAL ROLE NONE;
    IF failure IS NOT NULL THEN
        -- The fields: the column Postgres names, else the constraint's columns.
        failure := failure || pg_catalog.jsonb_build_object('fields',
            CASE WHEN failure ->> 'column' IS NOT NULL THEN pg_catalog.jsonb_build_array(failure ->> 'column')
                 WHEN failure ->> 'constraint' IS NOT NULL
                 THEN fluxbase_admin.constraint_columns(plan ->> 'schema', plan ->> 'name', failure ->> 'constraint')
                 ELSE '[]'::jsonb END);
        RETURN pg_catalog.jsonb_build_object('ok', false, 'operation', plan -> 'operation',
                                             'errors', pg_catalog.jsonb_build_array(failure - 'column'));
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'ok', true, 'operation', plan -> 'operation', 'count', changed,
        'before', coalesce(before, '[]'::jsonb), 'after', coalesce(after, '[]'::jsonb));
END
$$;

-- The claimed edit (fluxbase_admin.issue_ticket(token, 'edit', {"schema", "table", "operation",
-- "payload"}), admins only):
--   BEGIN; SELECT fluxbase_admin.claim_ticket(ticket); SELECT fluxbase_admin.edit(); COMMIT;
-- Operations: update, insert, delete, update_where, delete_where (see explorer/edits.rs),
-- e.g. {"operation": "update", "payload": {"keys": [{"id": 1}], "set": {"done": true}}}.
-- The answer: {"ok": true, "count", "before", "after"} or {"ok": false, "errors": [...]},
-- each error with its fields, code (type, not_null, check, foreign_key, unique,
-- permission, count_changed), message and constraint. The result, with the rows before
-- and after, is recorded against the ticket's intent and commits with the change.
CREATE FUNCTION fluxbase_admin.edit() RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound  jsonb := fluxbase_admin.claimed('edit');
    req    jsonb := bound -> 'request';
    plan   jsonb := fluxbase_admin.plan_edit_for(req ->> 'schema', req ->> 'table', req ->> 'operation', req -> 'payload', bound);
    result jsonb := fluxbase_admin.run_edit(plan, bound);
BEGIN
    PERFORM fluxbase_admin.record_result(result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION fluxbase_admin.edit() IS 'Data plane: runs the claimed edit in one transaction and records its result with it';
