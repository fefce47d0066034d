-- fluxbase_admin bootstrap: runs before anything else the extension creates.

-- 0. The install's search path: pg_catalog, then pg_temp, which Postgres never searches
--    for functions or operators. CREATE EXTENSION would otherwise search the creation
--    schema (the first schema of the installer's path, such as "$user" or public), where
--    any role with CREATE could plant an operator or a function that matches an argument
--    type better than pg_catalog's (say postgres.||(text[], text)) and so runs as the
--    installing superuser. Postgres restores the installer's path when the script ends.
--    Every object below is created with its schema named.
SET search_path = pg_catalog, pg_temp;

-- 1. Refuse schemas the extension did not create. The extension owns `auth`,
--    `dashboard_auth` and `fluxbase_admin` outright; writing into an application's
--    own `auth` schema would mix its objects with ours and let DROP EXTENSION eat them.
DO $refuse_foreign_schemas$
DECLARE
    found text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(nspname), ', ' ORDER BY nspname)
      INTO found
      FROM pg_catalog.pg_namespace
     WHERE nspname OPERATOR(pg_catalog.=) ANY (ARRAY['auth', 'dashboard_auth', 'fluxbase_admin']::pg_catalog.name[]);
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'fluxbase_admin cannot be installed: schema % already exists in database %, and the extension did not create it',
                found, pg_catalog.current_database()
              USING ERRCODE = 'duplicate_schema',
                    DETAIL = 'fluxbase_admin creates and owns the schemas auth, dashboard_auth and fluxbase_admin. It leaves existing schemas untouched.',
                    HINT = 'Rename the existing schema (ALTER SCHEMA auth RENAME TO auth_app) or install fluxbase_admin into another database.';
    END IF;
END
$refuse_foreign_schemas$;

-- 2. The schemas. Created here, inside the extension script, so that they are members
--    of the extension and DROP EXTENSION removes them.
CREATE SCHEMA dashboard_auth;
COMMENT ON SCHEMA dashboard_auth IS 'Fluxbase Admin: dashboard admins, their sessions, settings and the audit log';
CREATE SCHEMA auth;
COMMENT ON SCHEMA auth IS 'Fluxbase Admin: the application''s end users, their claims and impersonation';
CREATE SCHEMA fluxbase_admin;
COMMENT ON SCHEMA fluxbase_admin IS 'Fluxbase Admin: the dashboard''s operations (catalog, browse, edits, SQL runner, metrics)';

-- 3. The roles. Roles belong to the cluster, not to a database: a second database's
--    install (or a cluster where Supabase or PostgREST already made `anon`) finds them
--    already there. Existing roles are adopted as they are and reported, never altered,
--    since other databases and applications may rely on their attributes.
--    The report is a WARNING because Postgres runs extension scripts with
--    client_min_messages raised to WARNING: a NOTICE would never reach the installer.
DO $roles$
DECLARE
    wanted  constant text[][] := ARRAY[
        -- name, attributes of a role the extension creates
        ['fluxbase_dashboard', 'NOLOGIN'],            -- the web binary's working role
        ['fluxbase_operator',  'NOLOGIN'],            -- break-glass commands, backups
        ['anon',               'NOLOGIN NOINHERIT'],  -- a request without a user
        ['authenticated',      'NOLOGIN NOINHERIT'],  -- a signed-in end user
        ['service_role',       'NOLOGIN NOINHERIT BYPASSRLS'],  -- the app's backend, as in Supabase
        -- The data plane's role when nobody is impersonated: sees every app row, with
        -- explicit grants on app schemas only (data_plane.sql), never a pg_* role.
        ['fluxbase_explorer',  'NOLOGIN NOINHERIT NOSUPERUSER BYPASSRLS']
    ];
    marker  constant text := 'Created by the fluxbase_admin extension';
    i        int;
    adopted  text[] := '{}';
    members  text;
    origin   text;
BEGIN
    FOR i IN 1 .. pg_catalog.array_length(wanted, 1) LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) wanted[i][1]) THEN
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(m.rolname), ', ' ORDER BY m.rolname)
              INTO members
              FROM pg_catalog.pg_auth_members am
              JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) am.roleid
              JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
             WHERE r.rolname OPERATOR(pg_catalog.=) wanted[i][1];
            SELECT CASE WHEN pg_catalog.starts_with(coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), ''), marker)
                        THEN 'made by an earlier install' ELSE 'not made by fluxbase_admin' END
              INTO origin
              FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) wanted[i][1];
            adopted := pg_catalog.array_append(adopted, pg_catalog.format('%s (%s; members: %s)', wanted[i][1], origin,
                                                                          coalesce(members, 'none')));
        ELSE
            EXECUTE pg_catalog.format('CREATE ROLE %I %s', wanted[i][1], wanted[i][2]);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', wanted[i][1],
                                      pg_catalog.format('%s (%s)', marker, wanted[i][2]));
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(adopted) OPERATOR(pg_catalog.>) 0 THEN
        RAISE WARNING 'fluxbase_admin adopted existing roles: %', pg_catalog.array_to_string(adopted, '; ')
              USING HINT = 'Adopted roles keep their attributes and members. Check that each member should have that role.';
    END IF;
END
$roles$;

-- 4. Schema privileges: USAGE only, never CREATE. The dashboard and operators reach the
--    admin schemas. Everyone reaches `auth`, for the claim helpers that any role's
--    policies may call; its tables and other functions carry their own grants.
REVOKE ALL ON SCHEMA dashboard_auth, auth, fluxbase_admin FROM PUBLIC;
GRANT USAGE ON SCHEMA dashboard_auth, fluxbase_admin TO fluxbase_dashboard, fluxbase_operator;
GRANT USAGE ON SCHEMA auth TO PUBLIC;
