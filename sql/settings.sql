-- Settings: only overrides are stored; defaults live in code (extension/src/settings.rs).

CREATE TABLE dashboard_auth.settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,  -- the stored form: seconds, a number, or a list
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_by text NOT NULL
);
COMMENT ON TABLE dashboard_auth.settings IS 'Settings changed from their defaults (see dashboard_auth.list_settings)';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.settings', '');
REVOKE ALL ON dashboard_auth.settings FROM PUBLIC;

-- The value in force: the override, else the default. Internal.
CREATE FUNCTION dashboard_auth.get_setting(setting_key text) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT s.value FROM dashboard_auth.settings s WHERE s.key = setting_key),
        dashboard_auth.setting_default(setting_key),
        dashboard_auth.parse_setting(setting_key, '')  -- raises: unknown setting
    )
$$;

CREATE FUNCTION dashboard_auth.get_setting_int(setting_key text) RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (dashboard_auth.get_setting(setting_key))::bigint $$;

CREATE FUNCTION dashboard_auth.get_setting_interval(setting_key text) RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.make_interval(secs => (dashboard_auth.get_setting(setting_key))::float8) $$;
