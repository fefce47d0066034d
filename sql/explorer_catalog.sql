-- The explorer's catalog: schemas, tables, views and materialized views, with their
-- columns, keys, indexes, RLS state and policies. Names are looked up as values in the
-- system catalogs, never spliced into SQL. The system schemas, the extension's own
-- schemas and objects that belong to any extension never appear: they have pages of
-- their own (users, audit, metrics) or are not the application's.

-- Schemas of the application: not a system schema, not the extension's, not another
-- extension's. The explorer shows their relations and the explorer role is granted them.
-- No SET clause, so that it inlines; every name is qualified.
CREATE FUNCTION fluxbase_admin.app_schema(schema_oid oid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_namespace n
         WHERE n.oid = schema_oid
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'auth', 'dashboard_auth', 'fluxbase_admin')
           AND n.nspname !~ '^pg_(temp|toast_temp)_[0-9]+$'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                              AND d.objid = n.oid AND d.deptype = 'e'))
$$;

-- Relations the explorer may show. No SET clause, so that the planner inlines it and a
-- lookup by name uses pg_class's index instead of listing every relation; every name in
-- it is schema-qualified, and its callers pin search_path.
CREATE FUNCTION fluxbase_admin.browsable_relations()
RETURNS TABLE (oid oid, schema text, name text, kind text)
LANGUAGE sql STABLE
AS $$
    SELECT c.oid, n.nspname::text, c.relname::text,
           CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                          WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' END
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND NOT c.relispartition
       AND fluxbase_admin.app_schema(n.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')
$$;

-- The relation named schema.name, if the explorer may show it; else an error a person
-- can act on (42P01).
CREATE FUNCTION fluxbase_admin.browsable_relation(schema_name text, relation_name text) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found oid;
BEGIN
    -- Looked up by name through pg_class's index (the casts to name), then compared in
    -- full, because a cast to name cuts a longer text to 63 bytes.
    SELECT c.oid INTO found
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = schema_name::name AND c.relname = relation_name::name
       AND n.nspname::text = schema_name AND c.relname::text = relation_name
       AND EXISTS (SELECT 1 FROM fluxbase_admin.browsable_relations() r WHERE r.oid = c.oid);
    IF found IS NULL THEN
        RAISE EXCEPTION 'no table or view %.% to browse', pg_catalog.quote_ident(coalesce(schema_name, '')),
                        pg_catalog.quote_ident(coalesce(relation_name, ''))
              USING ERRCODE = 'undefined_table',
                    HINT = 'Names are exact (case-sensitive). System schemas and the extension''s own schemas are not browsable here.';
    END IF;
    RETURN found;
END
$$;

-- The names of a relation's columns, in the order of `attnums` (a constraint's keys).
CREATE FUNCTION fluxbase_admin.column_names(rel oid, attnums smallint[]) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_agg(a.attname ORDER BY k.ord)
      FROM pg_catalog.unnest(attnums) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum
$$;

-- A relation's foreign keys both ways, as describe_table and browse() give them:
-- {"foreign_keys": [{name, columns, references {schema, table, columns}}],
--  "referenced_by": [{name, schema, table, columns, referenced_columns}]}. Catalogs only.
-- Read through fluxbase_admin.relation_links(oid), which keeps it with the relation's
-- shape in each backend (extension/src/explorer/cache.rs): the pages' links need it with
-- every page.
CREATE FUNCTION fluxbase_admin.read_relation_links(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'foreign_keys', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', f.conname,
                       'columns', fluxbase_admin.column_names(f.conrelid, f.conkey),
                       'references', pg_catalog.jsonb_build_object(
                           'schema', rn.nspname, 'table', rc.relname,
                           'columns', fluxbase_admin.column_names(f.confrelid, f.confkey)))
                   ORDER BY f.conname)
              FROM pg_catalog.pg_constraint f
              JOIN pg_catalog.pg_class rc ON rc.oid = f.confrelid
              JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
             WHERE f.conrelid = rel AND f.contype = 'f'), '[]'::jsonb),
        'referenced_by', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', f.conname, 'schema', sn.nspname, 'table', sc.relname,
                       'columns', fluxbase_admin.column_names(f.conrelid, f.conkey),
                       'referenced_columns', fluxbase_admin.column_names(f.confrelid, f.confkey))
                   ORDER BY sn.nspname, sc.relname, f.conname)
              FROM pg_catalog.pg_constraint f
              JOIN pg_catalog.pg_class sc ON sc.oid = f.conrelid
              JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
             -- pg_constraint has no index on confrelid; a foreign key depends on the
             -- columns it references, and pg_depend is indexed by what is depended on.
             WHERE f.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d
                              WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = rel
                                AND d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass)
               AND f.confrelid = rel AND f.contype = 'f'), '[]'::jsonb))
$$;

-- A page of the browsable relations, in schema and name order, for the explorer's list
-- (viewers may call it): {"rows": [...], "next_cursor", "total"}. `search` keeps the
-- relations whose "schema.name" holds it, in any case. The filter and the page are cut
-- from the catalog alone; sizes, privileges and policies are read for the page's
-- relations only, since a size reads the relation's files (5,000 tables take a third of
-- a second).
CREATE FUNCTION fluxbase_admin.list_tables(session_token text DEFAULT NULL, search text DEFAULT NULL,
                                           page_size integer DEFAULT 500, cursor text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after  jsonb;
    wanted text := pg_catalog.lower(nullif(pg_catalog.btrim(search), ''));
    matched bigint;
    found  jsonb;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    PERFORM dashboard_auth.check_page_size(page_size);
    after := dashboard_auth.decode_cursor(cursor, 2);
    SELECT pg_catalog.count(*) INTO matched
      FROM fluxbase_admin.browsable_relations() r
     WHERE wanted IS NULL OR pg_catalog.strpos(pg_catalog.lower(r.schema || '.' || r.name), wanted) > 0;
    SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t) ORDER BY t.schema, t.name) INTO found FROM (
    SELECT r.schema, r.name, r.kind,
           CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS estimated_rows,
           CASE WHEN r.kind IN ('view', 'foreign_table') THEN NULL ELSE pg_catalog.pg_total_relation_size(r.oid) END AS total_bytes,
           c.relrowsecurity AS rls_enabled, c.relforcerowsecurity AS rls_forced,
           EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = r.oid AND k.contype = 'p') AS has_primary_key,
           pg_catalog.obj_description(r.oid, 'pg_class') AS description,
           -- What the explorer role (data_plane.sql) cannot do with it, and why; NULL when
           -- it can read and write it. Nothing is silently missing from the explorer.
           CASE
               WHEN NOT pg_catalog.has_schema_privilege(e.oid, c.relnamespace, 'USAGE')
                   THEN 'unreadable: USAGE on its schema was revoked from fluxbase_explorer'
               WHEN NOT pg_catalog.has_table_privilege(e.oid, c.oid, 'SELECT')
                   THEN 'unreadable: its owner revoked SELECT from fluxbase_explorer'
               WHEN c.relkind = 'f' AND NOT EXISTS (
                        SELECT 1 FROM pg_catalog.pg_foreign_table ft
                          JOIN pg_catalog.pg_user_mapping um ON um.umserver = ft.ftserver
                         WHERE ft.ftrelid = c.oid AND um.umuser IN (0, e.oid))
                   THEN 'unreadable: a foreign table whose server has no user mapping for fluxbase_explorer'
               WHEN NOT (pg_catalog.has_table_privilege(e.oid, c.oid, 'INSERT')
                         AND pg_catalog.has_table_privilege(e.oid, c.oid, 'UPDATE')
                         AND pg_catalog.has_table_privilege(e.oid, c.oid, 'DELETE'))
                   THEN 'read-only: its owner revoked '
                        || pg_catalog.array_to_string(ARRAY(
                               SELECT p FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p
                                WHERE NOT pg_catalog.has_table_privilege(e.oid, c.oid, p)), ', ')
                        || ' from fluxbase_explorer'
               ELSE 'no inserts: fluxbase_explorer may not execute ' || (
                        SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('%s (in the default of %s)',
                                                         pr.oid::pg_catalog.regprocedure, a.attname), ', ')
                          FROM pg_catalog.pg_attrdef ad
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
                          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                                                     AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                          JOIN pg_catalog.pg_proc pr ON pr.oid = d.refobjid
                         WHERE ad.adrelid = c.oid AND NOT pg_catalog.has_function_privilege(e.oid, pr.oid, 'EXECUTE'))
           END AS explorer_limits,
           -- Its RLS policies (counted whether RLS is on or not).
           (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy p WHERE p.polrelid = r.oid) AS policies
      FROM (SELECT b.* FROM fluxbase_admin.browsable_relations() b
             WHERE (wanted IS NULL OR pg_catalog.strpos(pg_catalog.lower(b.schema || '.' || b.name), wanted) > 0)
               AND (after IS NULL OR (b.schema, b.name) > (after ->> 0, after ->> 1))
             ORDER BY b.schema, b.name
             LIMIT page_size + 1) r
      JOIN pg_catalog.pg_class c ON c.oid = r.oid
     CROSS JOIN (SELECT g.oid FROM pg_catalog.pg_roles g WHERE g.rolname = 'fluxbase_explorer') e) t;
    RETURN dashboard_auth.page_of(found, page_size, ARRAY['schema', 'name'])
           || pg_catalog.jsonb_build_object('total', matched);
END
$$;

-- One relation in full, as JSON: columns, keys (both directions), indexes, RLS and
-- policies, estimated rows and size.
CREATE FUNCTION fluxbase_admin.describe_table(session_token text, schema_name text, relation_name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel oid;
    described jsonb;
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    rel := fluxbase_admin.browsable_relation(schema_name, relation_name);
    SELECT pg_catalog.jsonb_build_object(
        'schema', n.nspname, 'name', c.relname,
        'kind', (SELECT r.kind FROM fluxbase_admin.browsable_relations() r WHERE r.oid = rel),
        'estimated_rows', CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
        'total_bytes', CASE WHEN c.relkind IN ('v', 'f') THEN NULL ELSE pg_catalog.pg_total_relation_size(rel) END,
        'description', pg_catalog.obj_description(rel, 'pg_class'),
        'columns', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', a.attname, 'position', a.attnum,
                       'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                       'nullable', NOT a.attnotnull,
                       'default', CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END,
                       'generated', CASE WHEN a.attgenerated = 's' THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END,
                       'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
                       'description', pg_catalog.col_description(rel, a.attnum))
                   ORDER BY a.attnum)
              FROM pg_catalog.pg_attribute a
              LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb),
        'primary_key', (
            SELECT fluxbase_admin.column_names(p.conrelid, p.conkey)
              FROM pg_catalog.pg_constraint p WHERE p.conrelid = rel AND p.contype = 'p'),
        'indexes', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', ic.relname, 'unique', i.indisunique, 'primary', i.indisprimary,
                       'definition', pg_catalog.pg_get_indexdef(i.indexrelid))
                   ORDER BY ic.relname)
              FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = rel), '[]'::jsonb),
        'rls', pg_catalog.jsonb_build_object(
            'enabled', c.relrowsecurity, 'forced', c.relforcerowsecurity,
            'policies', coalesce((
                SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                           'name', p.polname,
                           'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                                    WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                           'permissive', p.polpermissive,
                           'roles', (SELECT pg_catalog.jsonb_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(r)::text END)
                                       FROM pg_catalog.unnest(p.polroles) r),
                           'using', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                           'with_check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
                       ORDER BY p.polname)
                  FROM pg_catalog.pg_policy p WHERE p.polrelid = rel), '[]'::jsonb)),
        -- The privileges granted on it, one entry per grantee (owner included).
        'grants', coalesce((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('grantee', g.grantee, 'privileges', g.privileges)
                   ORDER BY g.grantee)
              FROM (SELECT CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(x.grantee)::text END AS grantee,
                           pg_catalog.jsonb_agg(x.privilege_type ORDER BY x.privilege_type) AS privileges
                      FROM pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) x
                     GROUP BY x.grantee) g), '[]'::jsonb))
          || fluxbase_admin.relation_links(rel)
      INTO described
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = rel;
    RETURN described;
END
$$;

GRANT EXECUTE ON FUNCTION fluxbase_admin.list_tables(text, text, integer, text), fluxbase_admin.describe_table(text, text, text) TO fluxbase_dashboard;
