-- The claim helpers that Row Level Security policies call. They read the claims the
-- way PostgREST and Supabase set them (`request.jwt.claims` as JSON, with the older
-- one-setting-per-claim form as a fallback), so existing policies work unchanged.
-- Stable, with an empty search_path, NULL when unset, and executable by everyone.

CREATE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claims', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claim', true), '')
    )::jsonb
$$;
COMMENT ON FUNCTION auth.jwt() IS 'The current request''s JWT claims, or NULL outside a request';

CREATE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb OPERATOR(pg_catalog.->>) 'sub'
    )::uuid
$$;
COMMENT ON FUNCTION auth.uid() IS 'The current user''s id (claim sub), or NULL';

CREATE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb OPERATOR(pg_catalog.->>) 'role'
    )
$$;
COMMENT ON FUNCTION auth.role() IS 'The current request''s role claim, or NULL';

CREATE FUNCTION auth.email() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.email', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb OPERATOR(pg_catalog.->>) 'email'
    )
$$;
COMMENT ON FUNCTION auth.email() IS 'The current user''s email claim, or NULL';
