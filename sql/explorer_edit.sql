-- Edits: update, insert and delete rows of a table, one by primary key or many at once,
-- each edit in one transaction, all or nothing. The statements come from the Rust
-- builder (fluxbase_admin.build_edit); here are the checks, the executor and the audit.
--
-- Unimpersonated, fluxbase_admin.edit runs as the extension's owner and writes its audit
-- entry, with the rows before and after, in the edit's own transaction. Impersonated,
-- fluxbase_admin.edit_as runs the statements as the target, so RLS and WITH CHECK apply,
-- and records the result against an intent committed before.

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

-- The plan of an edit, with every written value checked against its column: a value
-- that does not fit, or breaks a domain's check, is a field error, all of them at once.
CREATE FUNCTION fluxbase_admin.plan_edit_for(schema_name text, relation_name text, operation text, payload jsonb)
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
        coalesce(plan -> 'errors', '[]') || fluxbase_admin.value_errors(plan));
END
$$;

-- The plan of an edit for a signed-in admin (viewers are refused): edit_as plans with it.
CREATE FUNCTION fluxbase_admin.plan_edit(session_token text, schema_name text, relation_name text, operation text, payload jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.require_admin(session_token);
    RETURN fluxbase_admin.plan_edit_for(schema_name, relation_name, operation, payload);
END
$$;

-- Runs an edit plan as the current role, or with an impersonation as the target, in a
-- subtransaction: a failure changes nothing and comes back as errors naming the fields
-- and the constraint. A filtered edit first locks the rows it matches, and changes
-- nothing unless they are as many as the caller expected. An invoker function: whatever
-- plan it is handed, it can do no more than its caller could with plain SQL.
CREATE FUNCTION fluxbase_admin.run_edit(plan jsonb, session_token text, impersonation_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller   text := current_user;
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
    IF impersonation_id IS NOT NULL THEN
        PERFORM auth.apply_impersonation(session_token, impersonation_id);
        PERFORM pg_catalog.set_config('search_path',
            (SELECT s.reset_val FROM pg_catalog.pg_settings s WHERE s.name = 'search_path'), true);
    END IF;
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
                   OR object_not_in_prerequisite_state OR raise_exception THEN
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
    IF impersonation_id IS NOT NULL THEN
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', caller);
    END IF;
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

-- One edit, as the admin (viewers are refused, 42501):
--   SELECT fluxbase_admin.edit(token, 'public', 'todos', 'update', '{"keys": [{"id": 1}], "set": {"done": true}}');
-- Operations: update, insert, delete, update_where, delete_where (see explorer/edits.rs).
-- The answer: {"ok": true, "count", "before", "after"} or {"ok": false, "errors": [...]},
-- each error with its fields, code (type, not_null, check, foreign_key, unique,
-- permission, count_changed), message and constraint. The audit entry, with the rows
-- before and after, commits with the change.
CREATE FUNCTION fluxbase_admin.edit(session_token text, schema_name text, relation_name text, operation text, payload jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who    dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    plan   jsonb := fluxbase_admin.plan_edit_for(schema_name, relation_name, operation, payload);
    result jsonb := fluxbase_admin.run_edit(plan, NULL, NULL);
BEGIN
    IF (result ->> 'ok')::boolean THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'explorer.' || operation, 'relation',
            pg_catalog.format('%I.%I', plan ->> 'schema', plan ->> 'name'),
            pg_catalog.jsonb_build_object('schema', plan -> 'schema', 'table', plan -> 'name', 'operation', operation,
                                          'count', result -> 'count', 'before', result -> 'before', 'after', result -> 'after'));
    END IF;
    RETURN result;
END
$$;

-- One edit as an impersonated user: RLS and WITH CHECK apply. Record the intent first:
--   SELECT auth.record_impersonated_intent(token, imp, 'explorer.update', '{"table": "todos"}');
--   SELECT fluxbase_admin.edit_as(token, imp, <intent id>, 'public', 'todos', 'update', '{...}');
CREATE FUNCTION fluxbase_admin.edit_as(
    session_token text, impersonation_id uuid, intent_id bigint, schema_name text, relation_name text,
    operation text, payload jsonb
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan   jsonb := fluxbase_admin.plan_edit(session_token, schema_name, relation_name, operation, payload);
    result jsonb;
BEGIN
    IF impersonation_id IS NULL THEN
        RAISE EXCEPTION 'edit_as needs an impersonation; fluxbase_admin.edit edits as the admin'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    result := fluxbase_admin.run_edit(plan, session_token, impersonation_id);
    PERFORM auth.record_impersonated_result(session_token, impersonation_id, intent_id,
        pg_catalog.jsonb_build_object('schema', plan -> 'schema', 'table', plan -> 'name', 'operation', operation)
        || (result - 'operation'));
    RETURN result;
END
$$;

GRANT EXECUTE ON FUNCTION
    fluxbase_admin.edit(text, text, text, text, jsonb),
    fluxbase_admin.edit_as(text, uuid, bigint, text, text, text, jsonb),
    -- edit_as calls these while still fluxbase_dashboard.
    fluxbase_admin.plan_edit(text, text, text, text, jsonb),
    fluxbase_admin.run_edit(jsonb, text, uuid),
    fluxbase_admin.constraint_columns(text, text, text)
TO fluxbase_dashboard;
