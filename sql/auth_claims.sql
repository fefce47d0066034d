-- The claim helpers that Row Level Security policies call. They read the claims the
-- way PostgREST and Supabase set them (`request.jwt.claims` as JSON, or the older
-- one-setting-per-claim form), so existing policies work unchanged.

CREATE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claims', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claim', true), '')
    )::jsonb
$$;
COMMENT ON FUNCTION auth.jwt() IS 'The current request''s JWT claims, or NULL outside a request';

CREATE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        auth.jwt() ->> 'sub'
    )::uuid
$$;
COMMENT ON FUNCTION auth.uid() IS 'The current user''s id (claim sub), or NULL';

CREATE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
        auth.jwt() ->> 'role'
    )
$$;
COMMENT ON FUNCTION auth.role() IS 'The current request''s role claim, or NULL';

CREATE FUNCTION auth.email() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.email', true), ''),
        auth.jwt() ->> 'email'
    )
$$;
COMMENT ON FUNCTION auth.email() IS 'The current user''s email claim, or NULL';
