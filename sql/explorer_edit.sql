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

-- ---------------------------------------------------------------------------------
-- Undo: reverting an edit from its audit entry
-- ---------------------------------------------------------------------------------

-- The revert request of an edit's audit entry (issue_ticket, on the dashboard plane):
-- its table and its rows before and after. Edits are recorded as explorer.update,
-- explorer.insert, explorer.delete, explorer.update_where and explorer.delete_where, or,
-- impersonated, as impersonated.explorer.<operation>.result with ok true. An unknown entry
-- is P0002; an entry that is no such edit, 22023.
CREATE FUNCTION fluxbase_admin.revert_request(request jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entry dashboard_auth.audit_log;
    edits text[] := ARRAY['update', 'insert', 'delete', 'update_where', 'delete_where'];
BEGIN
    IF pg_catalog.jsonb_typeof(request -> 'audit_id') IS DISTINCT FROM 'number' THEN
        RAISE EXCEPTION 'a revert needs "audit_id": the id of the edit''s audit entry' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO entry FROM dashboard_auth.audit_log a WHERE a.id = (request ->> 'audit_id')::numeric;
    IF entry.id IS NULL THEN
        RAISE EXCEPTION 'no audit entry %', request ->> 'audit_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT (entry.action = ANY (ARRAY(SELECT 'explorer.' || e FROM pg_catalog.unnest(edits) e))
            OR (entry.action = ANY (ARRAY(SELECT 'impersonated.explorer.' || e || '.result' FROM pg_catalog.unnest(edits) e))
                AND coalesce((entry.details ->> 'ok')::boolean, false)))
       OR pg_catalog.jsonb_typeof(entry.details -> 'before') IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_typeof(entry.details -> 'after') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'audit entry % (%) is not an edit that can be reverted', entry.id, entry.action
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Revert an explorer.update, explorer.insert, explorer.delete, explorer.update_where or explorer.delete_where entry.';
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'schema', entry.details -> 'schema', 'table', entry.details -> 'table', 'operation', 'revert',
        'audit_id', entry.id, 'reverted_operation', entry.details -> 'operation',
        'before', entry.details -> 'before', 'after', entry.details -> 'after');
END
$$;

-- Runs the claimed revert as the explorer role, in a subtransaction, and returns its
-- answer as run_edit does. The rows must be exactly as the edit left them (its "after"),
-- compared under a lock: otherwise nothing changes and the answer is a refusal, code
-- changed_since. Then the inverse: an update sets the rows back to "before" (the columns
-- Postgres computes apart), an insert's rows are deleted, a delete's rows inserted again
-- with their identity values.
CREATE FUNCTION fluxbase_admin.run_revert(request jsonb, bound jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel       oid := fluxbase_admin.browsable_relation(request ->> 'schema', request ->> 'table');
    shape     jsonb := fluxbase_admin.relation_shape(rel);
    relation  text := pg_catalog.format('%I.%I', shape ->> 'schema', shape ->> 'name');
    original  text := request ->> 'reverted_operation';
    before    jsonb := request -> 'before';
    after     jsonb := request -> 'after';
    -- The rows as the edit left them, and the rows to find by their key.
    expected  jsonb := CASE WHEN original LIKE 'delete%' THEN '[]'::jsonb ELSE request -> 'after' END;
    addressed jsonb := CASE WHEN original LIKE 'delete%' THEN request -> 'before' ELSE request -> 'after' END;
    key_names text[];
    key_match text;
    assigned  text;
    inserted  text;
    current   jsonb;
    pair      record;
    one_row   jsonb;
    result_rows jsonb := '[]';
    changed   bigint := 0;
    failure   jsonb;
    state     text;
    message   text;
    detail    text;
BEGIN
    IF pg_catalog.jsonb_typeof(shape -> 'key') IS DISTINCT FROM 'object'
       OR NOT pg_catalog.starts_with(shape -> 'key' ->> 'source', 'primary key') THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'operation', 'revert', 'errors', pg_catalog.jsonb_build_array(
            pg_catalog.jsonb_build_object('code', 'no_key', 'fields', '[]'::jsonb,
                'message', pg_catalog.format('%s has no primary key now: its rows cannot be addressed', relation))));
    END IF;
    key_names := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(shape -> 'key' -> 'columns'));
    -- Names from the catalog, quoted; operators are the key types' own (relation_shape).
    SELECT pg_catalog.string_agg(pg_catalog.format('t.%I %s k.%I', c ->> 'name', c -> 'ops' ->> 'eq', c ->> 'name'), ' AND ')
      INTO key_match
      FROM pg_catalog.jsonb_array_elements(shape -> 'columns') c WHERE c ->> 'name' = ANY (key_names);
    SELECT pg_catalog.string_agg(pg_catalog.format('%I = b.%I', c ->> 'name', c ->> 'name'), ', ')
               FILTER (WHERE coalesce(c ->> 'identity', '') <> 'always'),
           pg_catalog.string_agg(pg_catalog.format('%I', c ->> 'name'), ', ')
      INTO assigned, inserted
      FROM pg_catalog.jsonb_array_elements(shape -> 'columns') c WHERE NOT (c ->> 'generated')::boolean;

    PERFORM fluxbase_admin.enter_role(bound);
    BEGIN
        -- The rows now, locked, against the rows the edit left.
        EXECUTE pg_catalog.format(
            'SELECT coalesce(pg_catalog.jsonb_agg(l.row ORDER BY l.row), ''[]'') FROM (SELECT pg_catalog.to_jsonb(t.*) AS row FROM %s AS t
              WHERE EXISTS (SELECT FROM pg_catalog.jsonb_populate_recordset(NULL::%s, $1) AS k WHERE %s) FOR UPDATE OF t) AS l',
            relation, relation, key_match)
            INTO current USING addressed;
        IF current IS DISTINCT FROM (SELECT coalesce(pg_catalog.jsonb_agg(x ORDER BY x), '[]') FROM pg_catalog.jsonb_array_elements(expected) x) THEN
            RAISE EXCEPTION 'the rows have changed since the edit: nothing was reverted'
                  USING ERRCODE = 'object_not_in_prerequisite_state',
                        DETAIL = pg_catalog.format('%s of the %s rows are as the edit left them.',
                            (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_array_elements(expected) x
                              WHERE x IN (SELECT pg_catalog.jsonb_array_elements(current))),
                            pg_catalog.jsonb_array_length(addressed));
        END IF;
        IF original LIKE 'update%' THEN
            -- Each row after the edit back to its row before, paired by key (an edit of one
            -- row may have changed its key).
            FOR pair IN
                SELECT a.row AS after_row,
                       coalesce((SELECT b.row FROM pg_catalog.jsonb_array_elements(before) b(row)
                                  WHERE NOT EXISTS (SELECT FROM pg_catalog.unnest(key_names) k(name) WHERE b.row -> k.name IS DISTINCT FROM a.row -> k.name)),
                                CASE WHEN pg_catalog.jsonb_array_length(before) = 1 THEN before -> 0 END) AS before_row
                  FROM pg_catalog.jsonb_array_elements(after) a(row)
            LOOP
                IF pair.before_row IS NULL THEN
                    RAISE EXCEPTION 'the edit changed the keys of several rows: they cannot be paired to be reverted'
                          USING ERRCODE = 'object_not_in_prerequisite_state';
                END IF;
                IF assigned IS NOT NULL THEN
                    EXECUTE pg_catalog.format(
                        'UPDATE %s AS t SET %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) AS k, pg_catalog.jsonb_populate_record(NULL::%s, $2) AS b
                          WHERE %s RETURNING pg_catalog.to_jsonb(t.*)', relation, assigned, relation, relation, key_match)
                        INTO one_row USING pair.after_row, pair.before_row;
                    result_rows := result_rows || pg_catalog.jsonb_build_array(one_row);
                    changed := changed + 1;
                END IF;
            END LOOP;
        ELSIF original = 'insert' THEN
            EXECUTE pg_catalog.format(
                'WITH gone AS (DELETE FROM %s AS t USING pg_catalog.jsonb_populate_recordset(NULL::%s, $1) AS k WHERE %s RETURNING t.*)
                 SELECT pg_catalog.count(*) FROM gone', relation, relation, key_match)
                INTO changed USING after;
        ELSE
            EXECUTE pg_catalog.format(
                'WITH back AS (INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pg_catalog.jsonb_populate_recordset(NULL::%s, $1)
                               RETURNING pg_catalog.to_jsonb(t.*) AS row)
                 SELECT coalesce(pg_catalog.jsonb_agg(back.row), ''[]''), pg_catalog.count(*) FROM back',
                relation, inserted, inserted, relation)
                INTO result_rows, changed USING before;
        END IF;
    EXCEPTION WHEN integrity_constraint_violation OR data_exception OR insufficient_privilege
                   OR object_not_in_prerequisite_state OR raise_exception OR feature_not_supported THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
        failure := pg_catalog.jsonb_build_object(
            'code', CASE WHEN state = '55000' AND message LIKE 'the rows have changed%' THEN 'changed_since'
                         WHEN state = '23505' THEN 'unique' WHEN state = '23503' THEN 'foreign_key'
                         WHEN state = '42501' THEN 'permission' ELSE 'error' END,
            'sqlstate', state, 'message', message, 'detail', nullif(detail, ''), 'fields', '[]'::jsonb);
    END;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SET LOCAL ROLE NONE;
    IF failure IS NOT NULL THEN
        RETURN pg_catalog.jsonb_build_object('ok', false, 'operation', 'revert', 'errors', pg_catalog.jsonb_build_array(failure));
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'ok', true, 'operation', 'revert', 'reverted_operation', original, 'count', changed,
        'before', current, 'after', result_rows);
END
$$;

-- The claimed revert (fluxbase_admin.issue_ticket(token, 'revert', {"audit_id": 42}),
-- admins only):
--   BEGIN; SELECT fluxbase_admin.claim_ticket(ticket); SELECT fluxbase_admin.revert_edit(); COMMIT;
-- The answer is an edit's: {"ok": true, "count", "before", "after"}, or {"ok": false,
-- "errors": [...]} with code changed_since when the rows are no longer as the edit left
-- them. Either is recorded (explorer.reverted or explorer.reverted.failed, with the
-- entry's id as reverted_entry) and commits with the revert.
CREATE FUNCTION fluxbase_admin.revert_edit() RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound  jsonb := fluxbase_admin.claimed('revert');
    result jsonb := fluxbase_admin.run_revert(bound -> 'request', bound);
BEGIN
    PERFORM fluxbase_admin.record_result(result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION fluxbase_admin.revert_edit() IS 'Data plane: undoes the edit of the claimed revert ticket, unless its rows have changed since, and records it';
