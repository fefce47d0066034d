-- The claim helpers that Row Level Security policies call. They read the claims the
-- way PostgREST and Supabase set them: `request.jwt.claims` as JSON, with the legacy
-- one-setting-per-claim form (`request.jwt.claim.sub`) as a fallback, so existing
-- policies work unchanged. Stable, with an empty search_path, NULL when unset, and
-- executable by everyone.

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

-- One claim: from request.jwt.claims, else from the legacy request.jwt.claim.<name>.
CREATE FUNCTION auth.claim(name text) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(
        auth.jwt() OPERATOR(pg_catalog.->>) name,
        nullif(pg_catalog.current_setting('request.jwt.claim.' OPERATOR(pg_catalog.||) name, true), '')
    )
$$;
COMMENT ON FUNCTION auth.claim(text) IS 'One claim of the current request, or NULL';

CREATE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
AS $$ SELECT auth.claim('sub')::uuid $$;
COMMENT ON FUNCTION auth.uid() IS 'The current user''s id (claim sub), or NULL';

CREATE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$ SELECT auth.claim('role') $$;
COMMENT ON FUNCTION auth.role() IS 'The current request''s role claim, or NULL';

CREATE FUNCTION auth.email() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$ SELECT auth.claim('email') $$;
COMMENT ON FUNCTION auth.email() IS 'The current user''s email claim, or NULL';
