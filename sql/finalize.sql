-- fluxbase_admin finalize: runs after every other object exists.
--
-- EXECUTE is revoked from PUBLIC on every function of the extension's schemas, then
-- granted on purpose, to the one kind of caller that needs it (architecture.md,
-- "Callers and privileges").

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dashboard_auth, auth, fluxbase_admin FROM PUBLIC;

-- Claim helpers: they read only the caller's own settings, and any role's policies may
-- call them, as in PostgREST and Supabase.
GRANT EXECUTE ON FUNCTION auth.jwt(), auth.claim(text), auth.uid(), auth.role(), auth.email() TO PUBLIC;

GRANT EXECUTE ON FUNCTION fluxbase_admin.get_library_version() TO fluxbase_dashboard, fluxbase_operator;

-- Operators read dashboard_auth (the seed's audit queries) and take its backup with
-- pg_dump -t 'dashboard_auth.*'. No other role reads these tables: the dashboard reaches
-- them only through the definer functions, so it never sees a hash.
GRANT SELECT ON ALL TABLES IN SCHEMA dashboard_auth TO fluxbase_operator;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA dashboard_auth TO fluxbase_operator;

-- Operators read the app users' tables too (backups, audits in psql).
GRANT SELECT ON ALL TABLES IN SCHEMA auth TO fluxbase_operator;

-- The views operators read (live_sessions) call the settings readers; settings are no secret.
GRANT EXECUTE ON FUNCTION dashboard_auth.get_setting(text), dashboard_auth.get_setting_int(text),
    dashboard_auth.get_setting_interval(text) TO fluxbase_operator;

-- The explorer role's grants on the app schemas that exist now; later objects get theirs
-- from the event trigger fluxbase_explorer_grants.
SELECT fluxbase_admin.sync_explorer_grants();
