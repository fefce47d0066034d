-- Browsing: pages of a table or view with typed filters, sorting, search, keyset
-- cursors and totals; following foreign keys; CSV export.
--
-- The SQL itself is written in one place, the Rust builder fluxbase_admin.build_browse,
-- from the relation's shape (read here from the catalogs) and the request. The executors
-- are data-plane functions (see data_plane.sql): invoker functions run by the data login
-- after it claimed a ticket. They read the request from the claim and switch, around
-- each piece of work that touches app objects, to the claim's role: fluxbase_explorer
-- (BYPASSRLS, explicit grants on app schemas), so the admin sees every row as in
-- Supabase Studio, or the impersonated target with its claims, so RLS shows exactly what
-- the target sees. Planning reads only the catalogs, as the data login.

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
-- Read from the catalogs on every call: callers use fluxbase_admin.relation_shape(oid),
-- which keeps each backend's shapes until Postgres invalidates them (cache.rs).
CREATE FUNCTION fluxbase_admin.read_relation_shape(rel oid) RETURNS jsonb
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
-- ---------------------------------------------------------------------------------
-- Switching to the claim's role (data plane)
-- ---------------------------------------------------------------------------------

-- Becomes the claim's role with its claims (none for the explorer role), for the rest of
-- the transaction or until SET LOCAL ROLE NONE, and gives app code the session's own
-- search_path: policies, triggers and defaults may name tables without a schema. The
-- builder's SQL names everything with its schema, so it reads the same either way.
-- Called as the data login (SET ROLE checks the session user's memberships).
CREATE FUNCTION fluxbase_admin.enter_role(bound jsonb) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    -- Read as the data login: the role switched to may not use this schema.
    app_search_path text := fluxbase_admin.session_search_path();
BEGIN
    PERFORM pg_catalog.set_config('request.jwt.claims', coalesce(bound ->> 'claims', ''), true);
    -- The legacy one-setting-per-claim form too, so that an older claim set earlier in the
    -- session cannot show through (auth.claim falls back to it).
    PERFORM pg_catalog.set_config('request.jwt.claim', '', true);
    PERFORM pg_catalog.set_config('request.jwt.claim.sub', coalesce(bound -> 'claims' ->> 'sub', ''), true);
    PERFORM pg_catalog.set_config('request.jwt.claim.email', coalesce(bound -> 'claims' ->> 'email', ''), true);
    PERFORM pg_catalog.set_config('request.jwt.claim.role', coalesce(bound -> 'claims' ->> 'role', ''), true);
    EXECUTE pg_catalog.format('SET LOCAL ROLE %I', bound ->> 'run_as');
    PERFORM pg_catalog.set_config('search_path', app_search_path, true);
END
$$;
-- No SET clause above: a function's own SET would undo the search_path on return. Every
-- name in it is schema-qualified, and it is called with search_path pinned.

-- The claimed request, checked to be of `operation`.
CREATE FUNCTION fluxbase_admin.claimed(operation text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound jsonb := fluxbase_admin.bound_request();
BEGIN
    IF bound ->> 'operation' IS DISTINCT FROM claimed.operation THEN
        RAISE EXCEPTION 'the claimed ticket is for %, not %', bound ->> 'operation', claimed.operation
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN bound;
END
$$;

-- ---------------------------------------------------------------------------------
-- Planning (internal)
-- ---------------------------------------------------------------------------------

-- Every bound value of a plan that does not fit its column, as field errors: each
-- value is cast to the type its check names (the column's type, or a domain, whose
-- checks run). Browsing raises the first; an edit reports them all. A cast may run app
-- code (a type's input function, a domain's check), so given a claim it runs as the
-- claim's role, and switches back before returning.
CREATE FUNCTION fluxbase_admin.value_errors(plan jsonb, bound jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    value_check jsonb;
    value       text;
    errors      jsonb := '[]';
    failed_constraint text;
    all_fit     boolean;
BEGIN
    IF pg_catalog.jsonb_array_length(plan -> 'checks') = 0 THEN
        RETURN errors;
    END IF;
    IF bound IS NOT NULL THEN
        PERFORM fluxbase_admin.enter_role(bound);
    END IF;
    -- Every value in one statement, $1[1]::cast1, $1[2]::cast2, ...: one round of
    -- planning and one subtransaction a request. Only when one does not fit, each alone
    -- below, to name it. The casts are type names from the catalogs (relation_shape),
    -- never request text; the values are bound. (A target list holds at most 1664
    -- entries: many more values, as a copy of many keys may bring, go one by one.)
    all_fit := false;
    IF pg_catalog.jsonb_array_length(plan -> 'checks') <= 1000 THEN BEGIN
        EXECUTE 'SELECT ' || (SELECT pg_catalog.string_agg(pg_catalog.format('$1[%s]::%s', x.n, x.c ->> 'cast'), ', ' ORDER BY x.n)
                                FROM pg_catalog.jsonb_array_elements(plan -> 'checks') WITH ORDINALITY AS x(c, n))
          USING ARRAY(SELECT plan -> 'params' ->> ((x.c ->> 'param')::integer - 1)
                        FROM pg_catalog.jsonb_array_elements(plan -> 'checks') WITH ORDINALITY AS x(c, n) ORDER BY x.n);
        all_fit := true;
    EXCEPTION WHEN data_exception OR check_violation OR not_null_violation THEN
        all_fit := false;
    END; END IF;
    FOR value_check IN SELECT c FROM pg_catalog.jsonb_array_elements(plan -> 'checks') c WHERE NOT all_fit LOOP
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
    IF bound IS NOT NULL THEN
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        SET LOCAL ROLE NONE;
    END IF;
    RETURN errors;
END
$$;

-- The plan for a request on schema_name.relation_name. A bound value that does not fit
-- its column is refused here, naming the column, before anything runs. Given a claim,
-- the values are checked as its role.
CREATE FUNCTION fluxbase_admin.plan_for(
    schema_name text, relation_name text, filter jsonb, sort jsonb, search text, page_size integer, cursor text,
    bound jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN fluxbase_admin.checked_plan(
        fluxbase_admin.build_browse_for(fluxbase_admin.browsable_relation(schema_name, relation_name),
                                        filter::text, sort::text, search, page_size, cursor),
        bound);
END
$$;

-- The plan of a browse request, for a signed-in admin: the statements the explorer would
-- run, with their parameters. Catalog work only: values are not checked against their
-- columns here, since a cast may run app code, which the dashboard plane never does.
CREATE FUNCTION fluxbase_admin.plan_browse(
    session_token text, schema_name text, relation_name text, filter jsonb DEFAULT NULL, sort jsonb DEFAULT NULL,
    search text DEFAULT NULL, page_size integer DEFAULT 50, cursor text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN fluxbase_admin.build_browse_for(fluxbase_admin.browsable_relation(schema_name, relation_name),
                                           filter::text, sort::text, search, page_size, cursor);
END
$$;

-- ---------------------------------------------------------------------------------
-- Running a page (data plane)
-- ---------------------------------------------------------------------------------

-- Runs a plan's page and total as the claim's role with its claims, and switches back to
-- the data login before it returns. An invoker function: whatever plan it is handed, it
-- can do no more than its caller could with plain SQL. Request values are read in the
-- caller's DateStyle, as plan_for checked them and as an export reads them; cursor
-- positions are written so that any style reads them back (dates and times in ISO 8601,
-- intervals in one fixed style, floats exactly).
CREATE FUNCTION fluxbase_admin.read_page(plan jsonb, total text, bound jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp SET "IntervalStyle" = 'postgres' SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $$
DECLARE
    params        text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    page_size     integer := (plan ->> 'page_size')::integer;
    cap           bigint := (plan ->> 'count_cap')::bigint;
    row_values    jsonb;
    lengths       jsonb;
    position      text[];
    last_position text[];
    first_position text[];
    rows          jsonb[] := '{}';
    has_more      boolean := false;
    backward      boolean := coalesce((plan ->> 'backward')::boolean, false);
    turned        text[];
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
    PERFORM fluxbase_admin.enter_role(bound);

    FOR row_values, lengths, position IN EXECUTE plan ->> 'page_sql' USING params LOOP
        IF pg_catalog.cardinality(rows) = page_size THEN
            has_more := true;
            EXIT;
        END IF;
        rows := rows || pg_catalog.jsonb_build_object('values', row_values, 'truncated', lengths);
        IF pg_catalog.cardinality(rows) = 1 THEN
            first_position := position;
        END IF;
        last_position := position;
    END LOOP;
    IF backward THEN
        -- A page before a position came nearest first: put it in the sort's order.
        rows := ARRAY(SELECT r FROM pg_catalog.unnest(rows) WITH ORDINALITY AS u(r, n) ORDER BY u.n DESC);
        turned := first_position;
        first_position := last_position;
        last_position := turned;
    END IF;

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

    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SET LOCAL ROLE NONE;
    RETURN pg_catalog.jsonb_build_object(
        'schema', plan -> 'schema', 'name', plan -> 'name', 'kind', plan -> 'kind',
        'columns', plan -> 'columns',
        'rows', pg_catalog.to_jsonb(rows),
        -- Backwards, there is a next page (the one the cursor came from) and a previous
        -- one while rows were left over; forwards, the other way round.
        'next_cursor', CASE WHEN has_more OR (backward AND last_position IS NOT NULL)
                            THEN fluxbase_admin.next_page_cursor(plan, last_position) END,
        'prev_cursor', CASE WHEN backward AND has_more THEN fluxbase_admin.prev_page_cursor(plan, first_position)
                            WHEN NOT backward AND NOT (plan ->> 'first_page')::boolean
                                 AND (first_position IS NOT NULL OR plan -> 'paging' ->> 'method' = 'offset')
                            THEN fluxbase_admin.prev_page_cursor(plan, coalesce(first_position, '{}')) END,
        'total', totals,
        'paging', plan -> 'paging',
        'notices', plan -> 'notices',
        'impersonation_id', bound -> 'impersonation_id');
END
$$;


-- One page of the claimed browse (or follow) ticket:
--   BEGIN; SELECT fluxbase_admin.claim_ticket(ticket); SELECT fluxbase_admin.browse(); COMMIT;
-- The request (fluxbase_admin.issue_ticket):
--   filter: {"column": "status", "op": "eq", "value": "paid"}, {"and": [...]}, {"or": [...]}
--   sort:   [{"column": "created_at", "direction": "desc", "nulls": "last"}]
--   search: text matched (ILIKE) against every text-like column
--   cursor: next_cursor of the previous page, or prev_cursor of the next
--   total:  auto (exact when the table is small, else the planner's estimate), exact
--           (counted up to 100,000), estimate or none
CREATE FUNCTION fluxbase_admin.browse() RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound jsonb := fluxbase_admin.claimed('browse');
    req   jsonb := bound -> 'request';
    plan  jsonb := fluxbase_admin.plan_for(req ->> 'schema', req ->> 'table', req -> 'filter', req -> 'sort',
                                           req ->> 'search', coalesce((req ->> 'page_size')::integer, 50),
                                           req ->> 'cursor', bound);
    page  jsonb := fluxbase_admin.read_page(plan, coalesce(req ->> 'total', 'auto'), bound);
BEGIN
    IF req ? 'followed' THEN
        page := page || pg_catalog.jsonb_build_object('followed', req -> 'followed');
    END IF;
    -- The foreign keys both ways, so that a page's cells and rows can link (catalogs only).
    RETURN page || fluxbase_admin.relation_links((plan ->> 'oid')::oid);
END
$$;
COMMENT ON FUNCTION fluxbase_admin.browse() IS 'Data plane: one page of the claimed browse ticket, filtered, sorted and searched, with a keyset cursor to the next';

-- ---------------------------------------------------------------------------------
-- Rows by their key: one cell in full, and rows as an INSERT statement and as JSON
-- ---------------------------------------------------------------------------------

-- A plan whose bound values (the key's) all fit their columns, checked as the claim's
-- role; the first that does not is raised, naming its column, as plan_for does.
CREATE FUNCTION fluxbase_admin.checked_plan(plan jsonb, bound jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first jsonb := fluxbase_admin.value_errors(plan, bound) -> 0;
BEGIN
    IF first IS NOT NULL THEN
        RAISE EXCEPTION 'column % (%): %', pg_catalog.quote_ident(first ->> 'field'), first ->> 'type', first ->> 'message'
              USING ERRCODE = first ->> 'sqlstate',
                    DETAIL = pg_catalog.format('The value given was %s.', pg_catalog.quote_literal(pg_catalog.left(first ->> 'value', 200)));
    END IF;
    RETURN plan;
END
$$;

-- One cell's full value, for "show all" (a page cuts values over 2,000 characters), from
-- the claimed cell ticket {schema, table, column, key}:
--   BEGIN; SELECT fluxbase_admin.claim_ticket(ticket); SELECT fluxbase_admin.read_cell(); COMMIT;
-- Read as the claim's role: impersonated, the target's RLS applies, and a row it may not
-- see is not found. Returns {schema, table, column, type, key, found, value, length}
-- (length: characters, or bytes for bytea, of the values a page may cut short).
CREATE FUNCTION fluxbase_admin.read_cell() RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp SET "IntervalStyle" = 'postgres' SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $$
DECLARE
    bound  jsonb := fluxbase_admin.claimed('cell');
    req    jsonb := bound -> 'request';
    plan   jsonb := fluxbase_admin.checked_plan(fluxbase_admin.build_cell(
                        fluxbase_admin.relation_shape(fluxbase_admin.browsable_relation(req ->> 'schema', req ->> 'table')),
                        req ->> 'column', req -> 'key'), bound);
    cell_value  jsonb;
    cell_length bigint;
    matched     bigint;
BEGIN
    PERFORM fluxbase_admin.enter_role(bound);
    EXECUTE plan ->> 'sql' INTO cell_value, cell_length
        USING ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    GET DIAGNOSTICS matched = ROW_COUNT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SET LOCAL ROLE NONE;
    RETURN pg_catalog.jsonb_build_object(
        'schema', plan -> 'schema', 'table', plan -> 'name', 'column', plan -> 'column', 'type', plan -> 'type',
        'key', req -> 'key', 'found', matched > 0, 'value', cell_value, 'length', cell_length,
        'impersonation_id', bound -> 'impersonation_id');
END
$$;
COMMENT ON FUNCTION fluxbase_admin.read_cell() IS 'Data plane: one cell''s full value, by table, key and column, from the claimed cell ticket';

-- Chosen rows as an INSERT statement and as JSON, from the claimed copy ticket {schema,
-- table, keys: [{"id": 1}, ...]}:
--   BEGIN; SELECT fluxbase_admin.claim_ticket(ticket); SELECT fluxbase_admin.copy_rows(); COMMIT;
-- Read as the claim's role. The statement names the table's columns in order, except
-- those Postgres computes (generated, identity GENERATED ALWAYS), and writes each value as
-- a literal that reads back the same in any session (dates in ISO, floats exactly).
-- Returns {schema, table, columns, count, missing, rows, statement}; statement is NULL
-- when no key matched.
CREATE FUNCTION fluxbase_admin.copy_rows() RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp SET "DateStyle" = 'ISO, YMD' SET "IntervalStyle" = 'postgres'
SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $$
DECLARE
    bound  jsonb := fluxbase_admin.claimed('copy');
    req    jsonb := bound -> 'request';
    plan   jsonb := fluxbase_admin.checked_plan(fluxbase_admin.build_copy(
                        fluxbase_admin.relation_shape(fluxbase_admin.browsable_relation(req ->> 'schema', req ->> 'table')),
                        req), bound);
    found_rows jsonb;
    tuples     text;
    counted    bigint;
BEGIN
    PERFORM fluxbase_admin.enter_role(bound);
    EXECUTE plan ->> 'sql' INTO found_rows, tuples, counted
        USING ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SET LOCAL ROLE NONE;
    RETURN pg_catalog.jsonb_build_object(
        'schema', plan -> 'schema', 'table', plan -> 'name', 'columns', plan -> 'columns',
        'count', counted, 'missing', (plan ->> 'requested')::bigint - counted,
        'rows', coalesce(found_rows, '[]'::jsonb),
        'statement', CASE WHEN counted = 0 THEN NULL
                          WHEN pg_catalog.jsonb_array_length(plan -> 'columns') = 0
                          THEN pg_catalog.rtrim(pg_catalog.repeat((plan ->> 'insert') || E';\n', counted::integer), E'\n')
                          ELSE (plan ->> 'insert') || E'\n    ' || tuples || ';' END,
        'impersonation_id', bound -> 'impersonation_id');
END
$$;
COMMENT ON FUNCTION fluxbase_admin.copy_rows() IS 'Data plane: the claimed copy ticket''s rows as an INSERT statement and as JSON';

-- ---------------------------------------------------------------------------------
-- Export (CSV or JSON Lines): recorded by the ticket, then streamed through a cursor
-- ---------------------------------------------------------------------------------

-- Opens the claimed export as a cursor of lines: CSV, header apart (the request's
-- "format": "csv", the default), or JSON Lines ("jsonl": one object a line, the columns
-- as keys, no header). In one transaction:
--   BEGIN; SELECT fluxbase_admin.claim_ticket(ticket);
--   SELECT * FROM fluxbase_admin.open_export();  FETCH 1000 FROM fluxbase_export; ...  COMMIT;
-- Rows are produced as they are fetched, so memory stays flat however large the table.
-- The transaction stays the claim's role until it ends, so that fetching runs as it. A
-- filter or sort on a column the table no longer has, which a page drops with a notice,
-- refuses an export (22023): it would export other rows than were asked for.
CREATE FUNCTION fluxbase_admin.open_export(portal_name text DEFAULT 'fluxbase_export')
RETURNS TABLE (portal refcursor, header text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound  jsonb := fluxbase_admin.claimed('export');
    req    jsonb := bound -> 'request';
    plan   jsonb := fluxbase_admin.plan_for(req ->> 'schema', req ->> 'table', req -> 'filter', req -> 'sort',
                                            req ->> 'search', 1, NULL, bound);
    opened refcursor := coalesce(portal_name, 'fluxbase_export');
    jsonl  boolean := coalesce(req ->> 'format', 'csv') = 'jsonl';
BEGIN
    IF pg_catalog.jsonb_array_length(plan -> 'notices') > 0 THEN
        RAISE EXCEPTION '%.% has no column %: the export''s % on it cannot be left out, as a page''s is',
                        pg_catalog.quote_ident(plan ->> 'schema'), pg_catalog.quote_ident(plan ->> 'name'),
                        pg_catalog.quote_ident(plan -> 'notices' -> 0 ->> 'column'),
                        CASE plan -> 'notices' -> 0 ->> 'code' WHEN 'sort_dropped' THEN 'sort' ELSE 'filter' END
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Remove the filter or sort on the missing column and export again.';
    END IF;
    PERFORM fluxbase_admin.enter_role(bound);
    OPEN opened FOR EXECUTE plan ->> CASE WHEN jsonl THEN 'export_jsonl_sql' ELSE 'export_sql' END
         USING ARRAY(SELECT pg_catalog.jsonb_array_elements_text(plan -> 'params'));
    RETURN QUERY SELECT opened, CASE WHEN NOT jsonl THEN plan ->> 'export_header' END;
END
$$;
COMMENT ON FUNCTION fluxbase_admin.open_export(text) IS 'Data plane: opens the claimed export as a cursor of CSV or JSON Lines lines';

GRANT EXECUTE ON FUNCTION fluxbase_admin.plan_browse(text, text, text, jsonb, jsonb, text, integer, text) TO fluxbase_dashboard;
