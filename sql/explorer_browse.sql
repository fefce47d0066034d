-- Browsing: pages of a table or view with typed filters, sorting, search, keyset
-- cursors and totals; following foreign keys; CSV export.
--
-- The SQL itself is written in one place, the Rust builder fluxbase_admin.build_browse,
-- from the relation's shape (read here from the catalogs) and the request. Here are the
-- executors:
-- * unimpersonated (fluxbase_admin.browse, open_export): definer functions owned by the
--   extension's owner, so the admin sees every row, as in Supabase Studio;
-- * impersonated (fluxbase_admin.browse_as, open_export_as): invoker functions that
--   switch to the target's role and claims around the statement, so RLS shows exactly
--   what the target sees, and record the work with the impersonation audit mechanism.

-- The default btree operator class of a type: what ORDER BY and indexes use.
CREATE FUNCTION fluxbase_admin.default_btree_opclass(type_oid oid) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT oc.oid
      FROM pg_catalog.pg_type ty,
           pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'
     WHERE ty.oid = type_oid AND oc.opcdefault
       AND (oc.opcintype = ty.oid
            OR (oc.opcintype = 'pg_catalog.anyarray'::pg_catalog.regtype AND ty.typcategory = 'A')
            OR (oc.opcintype = 'pg_catalog.anyenum'::pg_catalog.regtype AND ty.typtype = 'e')
            OR (oc.opcintype = 'pg_catalog.anyrange'::pg_catalog.regtype AND ty.typtype = 'r')
            OR (oc.opcintype = 'pg_catalog.record'::pg_catalog.regtype AND ty.typtype = 'c')
            OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                        WHERE c.castsource = ty.oid AND c.casttarget = oc.opcintype AND c.castmethod = 'b'))
     ORDER BY oc.opcintype = ty.oid DESC, oc.opcintype = 'pg_catalog.text'::pg_catalog.regtype DESC
     LIMIT 1);
END
$$;

-- The operator of btree strategy `strategy` (1 <, 2 <=, 3 =, 4 >=, 5 >) of an operator
-- class, as OPERATOR("schema".op).
CREATE FUNCTION fluxbase_admin.btree_operator(opclass oid, strategy smallint) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, o.oprname)
      FROM pg_catalog.pg_opclass oc
      JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                                 AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = strategy
      JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
      JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
     WHERE oc.oid = opclass);
END
$$;

-- What the builder needs to know about a relation, as JSON (see shape.rs): columns with
-- their base types and comparison operators, the key, the btree indexes and the size.
CREATE FUNCTION fluxbase_admin.relation_shape(rel oid) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- PL/pgSQL, so that this query is planned once per connection, not at every call.
    RETURN (WITH cols AS (
        SELECT a.attnum, a.attname, a.attnotnull, pg_catalog.format_type(a.atttypid, a.atttypmod) AS display_type,
               (SELECT pg_catalog.format('%I.%I', dn.nspname, dt.typname) FROM pg_catalog.pg_type dt
                  JOIN pg_catalog.pg_namespace dn ON dn.oid = dt.typnamespace WHERE dt.oid = a.atttypid) AS declared_cast,
               a.attgenerated <> '' AS generated,
               -- A domain keeps its base type's modifier in typtypmod.
               CASE WHEN bt_of.base IN ('pg_catalog.varchar'::pg_catalog.regtype, 'pg_catalog.bpchar'::pg_catalog.regtype)
                         AND bt_of.typmod > 4 THEN bt_of.typmod - 4 END AS max_length,
               CASE WHEN a.atttypid = 'pg_catalog.numeric'::pg_catalog.regtype AND a.atttypmod >= 0
                    THEN pg_catalog.format_type(a.atttypid, a.atttypmod) END AS checked_cast,
               CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity,
               bt.oid AS base_oid, bt.typname, bt.typcategory, bn.nspname AS base_schema,
               fluxbase_admin.default_btree_opclass(bt.oid) AS opclass
          FROM pg_catalog.pg_attribute a
          CROSS JOIN LATERAL (
              SELECT coalesce(nullif(dt.typbasetype, 0), a.atttypid) AS base,
                     CASE WHEN dt.typtype = 'd' THEN dt.typtypmod ELSE a.atttypmod END AS typmod
                FROM pg_catalog.pg_type dt WHERE dt.oid = a.atttypid) bt_of
          JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) = 'd'
                                                      THEN (SELECT t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)
                                                      ELSE a.atttypid END
          JOIN pg_catalog.pg_namespace bn ON bn.oid = bt.typnamespace
         WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
    ),
    unique_key AS (
        -- The primary key, else the first unique index on NOT NULL plain columns.
        SELECT i.indkey::smallint[] AS attnums,
               CASE WHEN i.indisprimary THEN 'primary key ' ELSE 'unique index ' END || pg_catalog.quote_ident(ic.relname) AS source
          FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = rel AND i.indisunique AND i.indisvalid AND i.indimmediate
           AND i.indpred IS NULL AND i.indexprs IS NULL
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.indkey::smallint[]) k(attnum)
                            JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
                           WHERE NOT a.attnotnull)
         ORDER BY i.indisprimary DESC, i.indnatts, ic.relname
         LIMIT 1
    )
    SELECT pg_catalog.jsonb_build_object(
        'schema', n.nspname, 'name', c.relname,
        'kind', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                               WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' END,
        -- NULL when the planner has no figure yet (a table never vacuumed or analysed).
        'estimated_rows', CASE WHEN c.relkind IN ('r', 'm') AND c.reltuples >= 0 THEN c.reltuples::bigint
                               WHEN c.relkind = 'p' THEN (SELECT pg_catalog.sum(p.reltuples)::bigint
                                                            FROM pg_catalog.pg_partition_tree(rel) pt
                                                            JOIN pg_catalog.pg_class p ON p.oid = pt.relid
                                                           WHERE pt.isleaf AND p.reltuples >= 0) END,
        'columns', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', cols.attname, 'type', cols.display_type,
                       'cast', pg_catalog.format('%I.%I', cols.base_schema, cols.typname),
                       'category', cols.typcategory, 'base', cols.typname, 'not_null', cols.attnotnull,
                       'declared_cast', cols.declared_cast, 'generated', cols.generated, 'identity', cols.identity,
                       'max_length', cols.max_length, 'checked_cast', cols.checked_cast,
                       'builtin_order', coalesce((SELECT oc.opcnamespace = 'pg_catalog'::pg_catalog.regnamespace
                                                    FROM pg_catalog.pg_opclass oc WHERE oc.oid = cols.opclass), false),
                       'ops', CASE WHEN cols.opclass IS NOT NULL THEN pg_catalog.jsonb_build_object(
                           'lt', fluxbase_admin.btree_operator(cols.opclass, 1::smallint),
                           'le', fluxbase_admin.btree_operator(cols.opclass, 2::smallint),
                           'eq', fluxbase_admin.btree_operator(cols.opclass, 3::smallint),
                           'ge', fluxbase_admin.btree_operator(cols.opclass, 4::smallint),
                           'gt', fluxbase_admin.btree_operator(cols.opclass, 5::smallint),
                           'ne', (SELECT pg_catalog.format('OPERATOR(%I.%s)', nn.nspname, neg.oprname)
                                    FROM pg_catalog.pg_opclass oc
                                    JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 3
                                                               AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
                                    JOIN pg_catalog.pg_operator eq ON eq.oid = ao.amopopr
                                    JOIN pg_catalog.pg_operator neg ON neg.oid = eq.oprnegate
                                    JOIN pg_catalog.pg_namespace nn ON nn.oid = neg.oprnamespace
                                   WHERE oc.oid = cols.opclass)) END)
                   ORDER BY cols.attnum)
              FROM cols), '[]'::jsonb),
        'key', (SELECT pg_catalog.jsonb_build_object('columns', fluxbase_admin.column_names(rel, k.attnums), 'source', k.source)
                  FROM unique_key k),
        'indexes', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', ic.relname,
                       'columns', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                              'name', a.attname,
                                              'descending', (i.indoption[k.ord - 1] & 1) <> 0,
                                              'nulls_first', (i.indoption[k.ord - 1] & 2) <> 0)
                                          ORDER BY k.ord)
                                     FROM pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS k(attnum, ord)
                                     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum AND k.attnum > 0
                                    WHERE k.ord <= i.indnkeyatts))
                   ORDER BY i.indisprimary DESC, ic.relname)
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
             WHERE i.indrelid = rel AND i.indisvalid AND i.indpred IS NULL), '[]'::jsonb))
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = rel);
END
$$;

-- Which relations each admin session has browsed: browsing is audited once per table
-- per session. Rows go with their session.
CREATE TABLE dashboard_auth.explorer_reads (
    session_id    uuid NOT NULL REFERENCES dashboard_auth.sessions (id) ON DELETE CASCADE,
    relation      text NOT NULL,
    first_read_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (session_id, relation)
);
REVOKE ALL ON dashboard_auth.explorer_reads FROM PUBLIC;

-- Exports that have been opened: each audited export runs once.
CREATE TABLE dashboard_auth.explorer_exports (
    audit_id  bigint PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON dashboard_auth.explorer_exports FROM PUBLIC;

-- ---------------------------------------------------------------------------------
-- Planning (internal)
-- ---------------------------------------------------------------------------------

-- Every bound value of a plan that does not fit its column, as field errors: each
-- value is cast to the type its check names (the column's type, or a domain, whose
-- checks run). Browsing raises the first; an edit reports them all.
CREATE FUNCTION fluxbase_admin.value_errors(plan jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    value_check jsonb;
    value       text;
    errors      jsonb := '[]';
    failed_constraint text;
BEGIN
    FOR value_check IN SELECT c FROM pg_catalog.jsonb_array_elements(plan -> 'checks') c LOOP
        value := plan -> 'params' ->> ((value_check ->> 'param')::integer - 1);
        BEGIN
            -- The cast is a type name from the catalogs (relation_shape), never request text.
            EXECUTE pg_catalog.format('SELECT $1::%s', value_check ->> 'cast') USING value;
        EXCEPTION WHEN data_exception OR check_violation OR not_null_violation THEN
            GET STACKED DIAGNOSTICS failed_constraint = CONSTRAINT_NAME;
            errors := errors || pg_catalog.jsonb_build_object(
                'field', value_check ->> 'column', 'fields', pg_catalog.jsonb_build_array(value_check ->> 'column'),
                'code', CASE WHEN SQLSTATE LIKE '22%' THEN 'type' WHEN SQLSTATE = '23502' THEN 'not_null' ELSE 'check' END,
                'sqlstate', SQLSTATE, 'message', SQLERRM, 'value', value, 'type', value_check ->> 'type',
                'constraint', nullif(failed_constraint, ''));
        END;
    END LOOP;
    RETURN errors;
END
$$;

-- The plan for a request on schema_name.relation_name. A bound value that does not fit
-- its column is refused here, naming the column, before anything runs.
CREATE FUNCTION fluxbase_admin.plan_for(
    schema_name text, relation_name text, filter jsonb, sort jsonb, search text, page_size integer, cursor text
) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan  jsonb := fluxbase_admin.build_browse(
                       fluxbase_admin.relation_shape(fluxbase_admin.browsable_relation(schema_name, relation_name)),
                       filter::text, sort::text, search, page_size, cursor);
    first jsonb := fluxbase_admin.value_errors(plan) -> 0;
BEGIN
    IF first IS NOT NULL THEN
        RAISE EXCEPTION 'column % (%): %', pg_catalog.quote_ident(first ->> 'field'), first ->> 'type', first ->> 'message'
              USING ERRCODE = first ->> 'sqlstate',
                    DETAIL = pg_catalog.format('The value given was %s.', pg_catalog.quote_literal(pg_catalog.left(first ->> 'value', 200)));
    END IF;
    RETURN plan;
END
$$;

-- The plan of a browse request, for a signed-in admin: the statements the explorer would
-- run, with their parameters. browse_as plans with it; from psql it shows the SQL.
CREATE FUNCTION fluxbase_admin.plan_browse(
    session_token text, schema_name text, relation_name text, filter jsonb DEFAULT NULL, sort jsonb DEFAULT NULL,
    search text DEFAULT NULL, page_size integer DEFAULT 50, cursor text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN fluxbase_admin.plan_for(schema_name, relation_name, filter, sort, search, page_size, cursor);
END
$$;

-- ---------------------------------------------------------------------------------
-- Running a page (the executor both paths share)
-- ---------------------------------------------------------------------------------

-- Runs a plan's page and total as the current role, or, given an impersonation, as the
-- impersonated role with its claims, switching back before it returns. It is an invoker
-- function: whatever plan it is handed, it can do no more than its caller could with
-- plain SQL. Request values are read in the caller's DateStyle, as plan_for checked them
-- and as an export reads them; cursor positions are written so that any style reads them
-- back (dates and times in ISO 8601, intervals in one fixed style, floats exactly).
CREATE FUNCTION fluxbase_admin.read_page(plan jsonb, total text, session_token text, impersonation_id uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp SET "IntervalStyle" = 'postgres' SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $$
DECLARE
    caller        text := current_user;
    params        text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    page_size     integer := (plan ->> 'page_size')::integer;
    cap           bigint := (plan ->> 'count_cap')::bigint;
    row_values    jsonb;
    lengths       jsonb;
    position      text[];
    last_position text[];
    rows          jsonb[] := '{}';
    has_more      boolean := false;
    how           text := coalesce(total, 'auto');
    counted       bigint;
    explained     jsonb;
    estimate      bigint;
    totals        jsonb;
BEGIN
    IF how NOT IN ('auto', 'exact', 'estimate', 'none') THEN
        RAISE EXCEPTION 'total is auto, exact, estimate or none, not %', pg_catalog.quote_literal(total)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF impersonation_id IS NOT NULL THEN
        PERFORM auth.apply_impersonation(session_token, impersonation_id);
        -- The session's own search_path, as the app's connections have it: policies and
        -- the functions they call may name tables without a schema. The page's SQL
        -- names everything with its schema, so it reads the same either way.
        PERFORM pg_catalog.set_config('search_path',
            (SELECT s.reset_val FROM pg_catalog.pg_settings s WHERE s.name = 'search_path'), true);
    END IF;

    FOR row_values, lengths, position IN EXECUTE plan ->> 'page_sql' USING params LOOP
        IF pg_catalog.cardinality(rows) = page_size THEN
            has_more := true;
            EXIT;
        END IF;
        rows := rows || pg_catalog.jsonb_build_object('values', row_values, 'truncated', lengths);
        last_position := position;
    END LOOP;

    IF how = 'auto' THEN
        -- Count small tables, and tables the planner knows nothing about yet (its guess
        -- for those is far off); estimate large tables and views.
        how := CASE WHEN (plan ->> 'estimated_rows')::bigint <= cap THEN 'exact'
                    WHEN plan ->> 'estimated_rows' IS NULL AND plan ->> 'kind' IN ('table', 'materialized_view') THEN 'exact'
                    ELSE 'estimate' END;
    END IF;
    IF how <> 'none' AND (plan ->> 'first_page')::boolean AND NOT has_more THEN
        -- The first page holds every matching row: the count is known for free.
        totals := pg_catalog.jsonb_build_object('kind', 'exact', 'count', pg_catalog.cardinality(rows));
    ELSIF how = 'exact' THEN
        EXECUTE plan ->> 'count_sql' INTO counted USING params;
        IF counted > cap THEN
            EXECUTE plan ->> 'estimate_sql' INTO explained USING params;
            totals := pg_catalog.jsonb_build_object('kind', 'at_least', 'count', cap,
                                                    'estimate', (explained -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint);
        ELSE
            totals := pg_catalog.jsonb_build_object('kind', 'exact', 'count', counted);
        END IF;
    ELSIF how = 'estimate' THEN
        EXECUTE plan ->> 'estimate_sql' INTO explained USING params;
        estimate := (explained -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
        totals := pg_catalog.jsonb_build_object('kind', 'estimate', 'count', estimate);
    END IF;
    IF totals IS NOT NULL THEN
        totals := totals || pg_catalog.jsonb_build_object('text',
            CASE totals ->> 'kind' WHEN 'exact' THEN '' WHEN 'at_least' THEN 'more than ' ELSE 'about ' END
            || pg_catalog.to_char((totals ->> 'count')::bigint, 'FM999,999,999,999,990')
            || CASE WHEN (totals ->> 'count')::bigint = 1 THEN ' row' ELSE ' rows' END);
    END IF;

    IF impersonation_id IS NOT NULL THEN
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', caller);
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'schema', plan -> 'schema', 'name', plan -> 'name', 'kind', plan -> 'kind',
        'columns', plan -> 'columns',
        'rows', pg_catalog.to_jsonb(rows),
        'next_cursor', CASE WHEN has_more THEN fluxbase_admin.next_page_cursor(plan, last_position) END,
        'total', totals,
        'paging', plan -> 'paging',
        'impersonation_id', impersonation_id);
END
$$;

-- Audits the first read of a relation in an admin session.
CREATE FUNCTION fluxbase_admin.audit_first_read(who dashboard_auth.session_admin, plan jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relation text := pg_catalog.format('%I.%I', plan ->> 'schema', plan ->> 'name');
BEGIN
    INSERT INTO dashboard_auth.explorer_reads (session_id, relation) VALUES (who.session_id, relation)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'explorer.browse', 'relation', relation,
            pg_catalog.jsonb_build_object('schema', plan -> 'schema', 'table', plan -> 'name', 'kind', plan -> 'kind'));
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------
-- Browsing (fluxbase_dashboard; viewers may browse)
-- ---------------------------------------------------------------------------------

-- One page of a table or view, as the admin: every row, RLS not hiding any.
--   filter: {"column": "status", "op": "eq", "value": "paid"}, {"and": [...]}, {"or": [...]}
--   sort:   [{"column": "created_at", "direction": "desc", "nulls": "last"}]
--   search: text matched (ILIKE) against every text-like column
--   cursor: next_cursor of the previous page
--   total:  auto (exact when the table is small, else the planner's estimate), exact
--           (counted up to 100,000), estimate or none
CREATE FUNCTION fluxbase_admin.browse(
    session_token text, schema_name text, relation_name text, filter jsonb DEFAULT NULL, sort jsonb DEFAULT NULL,
    search text DEFAULT NULL, page_size integer DEFAULT 50, cursor text DEFAULT NULL, total text DEFAULT 'auto'
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who  dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    plan jsonb := fluxbase_admin.plan_for(schema_name, relation_name, filter, sort, search, page_size, cursor);
BEGIN
    PERFORM fluxbase_admin.audit_first_read(who, plan);
    RETURN fluxbase_admin.read_page(plan, total, NULL, NULL);
END
$$;
COMMENT ON FUNCTION fluxbase_admin.browse(text, text, text, jsonb, jsonb, text, integer, text, text) IS 'One page of a table or view, filtered, sorted and searched, with a keyset cursor to the next';

-- One page as an impersonated user sees it. Record the intent first, in its own
-- transaction, then browse; the result is recorded with the page:
--   SELECT auth.record_impersonated_intent(token, imp, 'explorer.browse', '{"table": "todos"}');
--   SELECT fluxbase_admin.browse_as(token, imp, <intent id>, 'public', 'todos');
CREATE FUNCTION fluxbase_admin.browse_as(
    session_token text, impersonation_id uuid, intent_id bigint, schema_name text, relation_name text,
    filter jsonb DEFAULT NULL, sort jsonb DEFAULT NULL, search text DEFAULT NULL, page_size integer DEFAULT 50,
    cursor text DEFAULT NULL, total text DEFAULT 'auto'
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan jsonb := fluxbase_admin.plan_browse(session_token, schema_name, relation_name, filter, sort, search, page_size, cursor);
    page jsonb;
BEGIN
    IF impersonation_id IS NULL THEN
        RAISE EXCEPTION 'browse_as needs an impersonation; fluxbase_admin.browse shows every row'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    page := fluxbase_admin.read_page(plan, total, session_token, impersonation_id);
    PERFORM auth.record_impersonated_result(session_token, impersonation_id, intent_id,
        pg_catalog.jsonb_build_object('schema', plan -> 'schema', 'table', plan -> 'name',
                                      'rows', pg_catalog.jsonb_array_length(page -> 'rows')));
    RETURN page;
END
$$;

-- The row a foreign key of `row_values` refers to: a page of the referenced table,
-- filtered on the referenced columns.
CREATE FUNCTION fluxbase_admin.follow_foreign_key(
    session_token text, schema_name text, relation_name text, foreign_key text, row_values jsonb
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel    oid;
    fk     pg_catalog.pg_constraint;
    filter jsonb := '[]';
    pair   record;
    target record;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    rel := fluxbase_admin.browsable_relation(schema_name, relation_name);
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
        IF coalesce(row_values -> pair.local_column::text, 'null') = 'null' THEN
            RAISE EXCEPTION 'the row''s % is NULL: it refers to no row', pg_catalog.quote_ident(pair.local_column)
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        filter := filter || pg_catalog.jsonb_build_object('column', pair.referenced_column, 'op', 'eq',
                                                          'value', row_values -> pair.local_column::text);
    END LOOP;
    SELECT n.nspname::text AS schema, c.relname::text AS name INTO target
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = fk.confrelid;
    RETURN fluxbase_admin.browse(session_token, target.schema, target.name, filter, page_size => 1)
        || pg_catalog.jsonb_build_object('followed', pg_catalog.jsonb_build_object(
               'schema', schema_name, 'table', relation_name, 'foreign_key', foreign_key));
END
$$;

-- ---------------------------------------------------------------------------------
-- CSV export: audited first, then streamed through a cursor
-- ---------------------------------------------------------------------------------

-- Records an export of every row of a filtered, sorted view and returns its id. Call it
-- in a transaction of its own, so that the record stays whatever happens to the export.
-- With an impersonation, the export is recorded as that impersonation's intent and runs
-- as the impersonated user.
CREATE FUNCTION fluxbase_admin.start_export(
    session_token text, schema_name text, relation_name text, filter jsonb DEFAULT NULL, sort jsonb DEFAULT NULL,
    search text DEFAULT NULL, impersonation_id uuid DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    plan    jsonb := fluxbase_admin.plan_for(schema_name, relation_name, filter, sort, search, 1, NULL);
    details jsonb := pg_catalog.jsonb_build_object(
                         'schema', plan -> 'schema', 'table', plan -> 'name', 'format', 'csv',
                         'filter', filter, 'sort', sort, 'search', search,
                         'columns', (SELECT pg_catalog.jsonb_agg(c -> 'name') FROM pg_catalog.jsonb_array_elements(plan -> 'columns') c));
BEGIN
    IF impersonation_id IS NOT NULL THEN
        RETURN auth.record_impersonated_intent(session_token, impersonation_id, 'explorer.export', details);
    END IF;
    RETURN dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'explorer.export', 'relation',
                                   pg_catalog.format('%I.%I', plan ->> 'schema', plan ->> 'name'), details);
END
$$;

-- The plan of a recorded export, once: the request is read back from its audit entry,
-- so the export runs exactly what was recorded.
CREATE FUNCTION fluxbase_admin.export_plan(session_token text, export_id bigint) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who   dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    entry dashboard_auth.audit_log;
BEGIN
    SELECT * INTO entry FROM dashboard_auth.audit_log a
     WHERE a.id = export_id AND a.actor_type = 'admin' AND a.actor_id = who.admin_id
       AND a.action IN ('explorer.export', 'impersonated.explorer.export.intent');
    IF entry.id IS NULL THEN
        RAISE EXCEPTION 'no export % of yours', coalesce(export_id::text, 'NULL')
              USING ERRCODE = 'no_data_found', HINT = 'Start one with fluxbase_admin.start_export.';
    END IF;
    IF entry.occurred_at < pg_catalog.now() - interval '10 minutes' THEN
        RAISE EXCEPTION 'export % was started more than 10 minutes ago', export_id
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Start it again.';
    END IF;
    INSERT INTO dashboard_auth.explorer_exports (audit_id) VALUES (export_id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'export % was opened already: each recorded export runs once', export_id
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Start a new one.';
    END IF;
    RETURN fluxbase_admin.plan_for(entry.details ->> 'schema', entry.details ->> 'table', entry.details -> 'filter',
                                   entry.details -> 'sort', entry.details ->> 'search', 1, NULL)
        || pg_catalog.jsonb_build_object('impersonation_id',
               CASE WHEN entry.action LIKE 'impersonated.%' THEN entry.target_id END);
END
$$;

-- Opens a recorded export as a cursor of CSV lines, header apart. In one transaction:
--   SELECT * FROM fluxbase_admin.open_export(token, id);  FETCH 1000 FROM fluxbase_export; ...  COMMIT;
-- Rows are produced as they are fetched, so memory stays flat however large the table.
CREATE FUNCTION fluxbase_admin.open_export(session_token text, export_id bigint, portal_name text DEFAULT 'fluxbase_export')
RETURNS TABLE (portal refcursor, header text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan   jsonb := fluxbase_admin.export_plan(session_token, export_id);
    opened refcursor := portal_name;
BEGIN
    IF plan ->> 'impersonation_id' IS NOT NULL THEN
        RAISE EXCEPTION 'export % runs as an impersonated user: open it with fluxbase_admin.open_export_as', export_id
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    OPEN opened FOR EXECUTE plan ->> 'export_sql' USING ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    RETURN QUERY SELECT opened, plan ->> 'export_header';
END
$$;

-- As open_export, for an export started with an impersonation: the transaction becomes
-- the impersonated user until it ends, so that fetching sees what the target sees.
CREATE FUNCTION fluxbase_admin.open_export_as(session_token text, export_id bigint, portal_name text DEFAULT 'fluxbase_export')
RETURNS TABLE (portal refcursor, header text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan   jsonb := fluxbase_admin.export_plan(session_token, export_id);
    opened refcursor := portal_name;
BEGIN
    IF plan ->> 'impersonation_id' IS NULL THEN
        RAISE EXCEPTION 'export % is not impersonated: open it with fluxbase_admin.open_export', export_id
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM auth.apply_impersonation(session_token, (plan ->> 'impersonation_id')::uuid);
    OPEN opened FOR EXECUTE plan ->> 'export_sql' USING ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    RETURN QUERY SELECT opened, plan ->> 'export_header';
END
$$;

GRANT EXECUTE ON FUNCTION
    fluxbase_admin.browse(text, text, text, jsonb, jsonb, text, integer, text, text),
    fluxbase_admin.browse_as(text, uuid, bigint, text, text, jsonb, jsonb, text, integer, text, text),
    fluxbase_admin.plan_browse(text, text, text, jsonb, jsonb, text, integer, text),
    fluxbase_admin.follow_foreign_key(text, text, text, text, jsonb),
    fluxbase_admin.start_export(text, text, text, jsonb, jsonb, text, uuid),
    fluxbase_admin.open_export(text, bigint, text),
    fluxbase_admin.open_export_as(text, bigint, text),
    -- The invoker paths call these while still fluxbase_dashboard.
    fluxbase_admin.export_plan(text, bigint),
    fluxbase_admin.read_page(jsonb, text, text, uuid),
    fluxbase_admin.next_page_cursor(jsonb, text[])
TO fluxbase_dashboard;
