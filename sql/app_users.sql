-- The application's end users: accounts, sessions and one-time links in schema `auth`,
-- the application's own functions (granted to service_role), and what admins call to
-- manage users (session-checked, refused to viewers, audited).

CREATE TABLE auth.users (
    id              uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    email           text NOT NULL CHECK (pg_catalog.length(email) BETWEEN 3 AND 254),
    -- The database role this user's requests run as: authenticated, or one listed in
    -- the setting users.extra_roles.
    role            text NOT NULL DEFAULT 'authenticated',
    app_metadata    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (pg_catalog.jsonb_typeof(app_metadata) = 'object'),
    user_metadata   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (pg_catalog.jsonb_typeof(user_metadata) = 'object'),
    password_hash   text,
    invited_at      timestamptz,
    confirmed_at    timestamptz,
    last_sign_in_at timestamptz,
    banned_until    timestamptz,
    ban_reason      text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE UNIQUE INDEX users_email_key ON auth.users (pg_catalog.lower(email));
-- Keyset paging of the admin's user list: one index for each sort it offers.
CREATE INDEX users_created_at ON auth.users (created_at, id);
CREATE INDEX users_email_sort ON auth.users (pg_catalog.lower(email), id);
CREATE INDEX users_last_sign_in_at ON auth.users ((coalesce(last_sign_in_at, '-infinity'::timestamptz)), id);
COMMENT ON TABLE auth.users IS 'The application''s end users (admins are in dashboard_auth.dashboard_users)';
SELECT pg_catalog.pg_extension_config_dump('auth.users', '');

CREATE TABLE auth.sessions (
    id           uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    ip           inet,
    user_agent   text
);
CREATE INDEX sessions_user_id ON auth.sessions (user_id, created_at);
COMMENT ON TABLE auth.sessions IS 'App users'' sessions; only a hash of each token is kept';
SELECT pg_catalog.pg_extension_config_dump('auth.sessions', '');

CREATE TABLE auth.one_time_tokens (
    id         uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    kind       text NOT NULL CHECK (kind IN ('invite', 'recovery')),
    user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
COMMENT ON TABLE auth.one_time_tokens IS 'App users'' invite and recovery links: hashed, expiring, used once';
SELECT pg_catalog.pg_extension_config_dump('auth.one_time_tokens', '');

REVOKE ALL ON auth.users, auth.sessions, auth.one_time_tokens FROM PUBLIC;

-- What the application's functions return.
CREATE TYPE auth.result AS (
    ok            boolean,
    code          text,
    message       text,
    user_id       uuid,
    session_token text,
    expires_at    timestamptz
);

-- ---------------------------------------------------------------------------------
-- Internal helpers
-- ---------------------------------------------------------------------------------

CREATE FUNCTION auth.refusal(code text, message text) RETURNS auth.result
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ROW(false, code, message, NULL, NULL, NULL)::auth.result $$;

-- Why a role can never be an app user's role, or NULL: it does not exist, it is one of
-- the service's or the dashboard's own roles or a predefined pg_ role, it is a superuser,
-- bypasses RLS or creates roles, or it is a member of a role that is or does any of that
-- (a member can SET ROLE to it). Shared by the users.extra_roles setting and impersonation.
CREATE FUNCTION auth.forbidden_user_role(role text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r.oid IS NULL THEN pg_catalog.format('role %s does not exist', role)
        WHEN role IN ('service_role', 'fluxbase_dashboard', 'fluxbase_operator') OR role LIKE 'pg\_%'
            THEN pg_catalog.format('role %s is not an app user''s role', role)
        WHEN r.rolsuper THEN pg_catalog.format('role %s is a superuser', role)
        WHEN r.rolbypassrls THEN pg_catalog.format('role %s bypasses row level security', role)
        WHEN r.rolcreaterole THEN pg_catalog.format('role %s can create roles', role)
        WHEN privileged.rolname IS NOT NULL
            THEN pg_catalog.format('role %s is a member of %s, which is privileged', role, privileged.rolname)
    END
      FROM (SELECT 1) one
      LEFT JOIN pg_catalog.pg_roles r ON r.rolname = role
      LEFT JOIN LATERAL (
          SELECT g.rolname FROM pg_catalog.pg_roles g
           WHERE g.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')
             AND (g.rolsuper OR g.rolbypassrls OR g.rolcreaterole OR g.rolname LIKE 'pg\_%'
                  OR g.rolname IN ('service_role', 'fluxbase_dashboard', 'fluxbase_operator'))
           ORDER BY g.rolname LIMIT 1) privileged ON true
$$;

-- The roles a user may have: authenticated, and those in users.extra_roles.
CREATE FUNCTION auth.check_user_role(role text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    allowed text[] := ARRAY['authenticated'] || ARRAY(
        SELECT pg_catalog.jsonb_array_elements_text(dashboard_auth.setting('users.extra_roles')));
BEGIN
    IF role IS NULL OR NOT role = ANY (allowed) THEN
        RAISE EXCEPTION 'role % is not allowed for app users', coalesce(pg_catalog.quote_literal(role), 'NULL')
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = pg_catalog.format('Allowed: %s. An admin adds roles with the setting users.extra_roles.',
                                             pg_catalog.array_to_string(allowed, ', '));
    END IF;
    -- Checked again here: a listed role may have been granted more since it was listed.
    IF auth.forbidden_user_role(role) IS NOT NULL THEN
        RAISE EXCEPTION '%', auth.forbidden_user_role(role) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN role;
END
$$;

CREATE FUNCTION auth.check_metadata(value jsonb, what text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NOT NULL AND pg_catalog.jsonb_typeof(value) <> 'object' THEN
        RAISE EXCEPTION '% must be a JSON object, not %', what, pg_catalog.jsonb_typeof(value)
              USING ERRCODE = 'invalid_parameter_value', HINT = 'For example {"plan": "pro"}.';
    END IF;
    RETURN value;
END
$$;

-- The user with this id, locked for the change that follows, or an error (P0002).
CREATE FUNCTION auth.user_for_update(target uuid) RETURNS auth.users
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_user auth.users;
BEGIN
    SELECT * INTO found_user FROM auth.users u WHERE u.id = target FOR UPDATE;
    IF found_user.id IS NULL THEN
        RAISE EXCEPTION 'no user with id %', coalesce(target::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    RETURN found_user;
END
$$;

CREATE FUNCTION auth.revoke_user_sessions(target uuid) RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    WITH revoked AS (
        UPDATE auth.sessions s SET revoked_at = pg_catalog.now()
         WHERE s.user_id = target AND s.revoked_at IS NULL AND s.expires_at > pg_catalog.now()
        RETURNING 1)
    SELECT pg_catalog.count(*)::int FROM revoked
$$;

-- A one-time link for a user, replacing their unused links of the same kind. The link
-- is built from the public URL that fluxbase serve sets per transaction
-- (fluxbase.public_url); from psql it is NULL and the token is returned alone.
CREATE FUNCTION auth.issue_user_link(kind text, target uuid, valid_for interval, created_by text)
RETURNS TABLE (token text, link text, expires_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := pg_catalog.rtrim(nullif(pg_catalog.current_setting('fluxbase.public_url', true), ''), '/');
BEGIN
    PERFORM dashboard_auth.check_link_validity(valid_for);
    UPDATE auth.one_time_tokens t SET used_at = pg_catalog.now()
     WHERE t.user_id = target AND t.kind = issue_user_link.kind AND t.used_at IS NULL;
    token := dashboard_auth.new_token('fbu');
    INSERT INTO auth.one_time_tokens (kind, user_id, token_hash, created_by, expires_at)
    VALUES (issue_user_link.kind, target, dashboard_auth.token_hash(token), created_by, pg_catalog.now() + valid_for)
    RETURNING one_time_tokens.expires_at INTO expires_at;
    link := base || CASE issue_user_link.kind WHEN 'invite' THEN '/accept-invite?token=' ELSE '/recover?token=' END || token;
    RETURN NEXT;
END
$$;

-- Redeems an invite or recovery link: sets the password. Shared by accept_invite and
-- complete_recovery; every other session of the user ends.
CREATE FUNCTION auth.redeem_user_link(kind text, link_token text, password text) RETURNS auth.result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    link    auth.one_time_tokens;
    account auth.users;
    problem text;
BEGIN
    SELECT * INTO link FROM auth.one_time_tokens t
     WHERE t.token_hash = dashboard_auth.token_hash(link_token) AND t.kind = redeem_user_link.kind FOR UPDATE;
    IF link.id IS NULL OR link.used_at IS NOT NULL OR link.expires_at <= pg_catalog.now() THEN
        RETURN auth.refusal('invalid_link', 'This link is invalid, expired or already used.');
    END IF;
    SELECT * INTO account FROM auth.users u WHERE u.id = link.user_id FOR UPDATE;
    problem := CASE WHEN password IS NULL THEN 'A password is needed.'
                    ELSE dashboard_auth.password_problem(password, account.email,
                             dashboard_auth.setting_int('users.password_min_length')::int) END;
    IF problem IS NOT NULL THEN
        RETURN auth.refusal('weak_password', problem);
    END IF;
    UPDATE auth.users u
       SET password_hash = dashboard_auth.hash_password(password),
           confirmed_at = coalesce(u.confirmed_at, pg_catalog.now()), updated_at = pg_catalog.now()
     WHERE u.id = account.id;
    UPDATE auth.one_time_tokens t SET used_at = pg_catalog.now() WHERE t.user_id = account.id AND t.used_at IS NULL;
    PERFORM auth.revoke_user_sessions(account.id);
    RETURN ROW(true, 'ok', CASE kind WHEN 'invite' THEN 'Welcome: your password is set.' ELSE 'Your password is changed.' END,
               account.id, NULL, NULL)::auth.result;
END
$$;

-- ---------------------------------------------------------------------------------
-- The application's functions (service_role)
-- ---------------------------------------------------------------------------------

CREATE FUNCTION auth.accept_invite(invite_token text, password text) RETURNS auth.result
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT auth.redeem_user_link('invite', invite_token, password) $$;

CREATE FUNCTION auth.complete_recovery(recovery_token text, new_password text) RETURNS auth.result
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT auth.redeem_user_link('recovery', recovery_token, new_password) $$;

-- Signs a user in: an auth.sessions row and the last sign-in time. An unknown email, a
-- wrong password, an unconfirmed or a banned user get the same answer, in about the
-- same time (one argon2 run on every path).
CREATE FUNCTION auth.sign_in(email text, password text, ip inet DEFAULT NULL, user_agent text DEFAULT NULL)
RETURNS auth.result
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    account     auth.users;
    password_ok boolean;
    checked     text;
    token       text;
    result      auth.result;
BEGIN
    SELECT * INTO account FROM auth.users u WHERE pg_catalog.lower(u.email) = pg_catalog.lower(pg_catalog.btrim(sign_in.email));
    password_ok := dashboard_auth.verify_password(sign_in.password, account.password_hash);
    IF account.id IS NULL OR NOT password_ok OR account.confirmed_at IS NULL
       OR account.banned_until > pg_catalog.now() THEN
        RETURN auth.refusal('invalid_credentials', 'Invalid email or password.');
    END IF;
    -- A ban or a reset committed while the password was being checked wins: re-read the
    -- user, waiting for such a change to finish, and refuse if the hash changed.
    checked := account.password_hash;
    SELECT * INTO account FROM auth.users u WHERE u.id = account.id FOR NO KEY UPDATE;
    IF account.id IS NULL OR account.confirmed_at IS NULL OR account.banned_until > pg_catalog.now()
       OR account.password_hash IS DISTINCT FROM checked THEN
        RETURN auth.refusal('invalid_credentials', 'Invalid email or password.');
    END IF;
    token := dashboard_auth.new_token('fbs');
    INSERT INTO auth.sessions (user_id, token_hash, expires_at, ip, user_agent)
    VALUES (account.id, dashboard_auth.token_hash(token),
            pg_catalog.now() + dashboard_auth.setting_interval('users.session_lifetime'),
            sign_in.ip, pg_catalog.left(sign_in.user_agent, 500))
    RETURNING expires_at INTO result.expires_at;
    UPDATE auth.users u SET last_sign_in_at = pg_catalog.now() WHERE u.id = account.id;
    result.ok := true;
    result.code := 'ok';
    result.message := 'Signed in.';
    result.user_id := account.id;
    result.session_token := token;
    RETURN result;
END
$$;

CREATE FUNCTION auth.sign_out(session_token text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH ended AS (
        UPDATE auth.sessions s SET revoked_at = pg_catalog.now()
         WHERE s.token_hash = dashboard_auth.token_hash(session_token) AND s.revoked_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM ended)
$$;

-- ---------------------------------------------------------------------------------
-- What admins call (fluxbase_dashboard): session-checked, refused to viewers, audited
-- ---------------------------------------------------------------------------------

-- Users with what an admin needs to see at a glance. `times_impersonated` counts
-- impersonation sessions once impersonation exists.
CREATE VIEW auth.user_overview AS
SELECT u.id, u.email, u.role,
       CASE WHEN u.banned_until > pg_catalog.now() THEN 'banned'
            WHEN u.confirmed_at IS NULL THEN 'invited'
            ELSE 'active' END AS status,
       u.last_sign_in_at,
       (SELECT pg_catalog.count(*) FROM auth.sessions s
         WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > pg_catalog.now()) AS active_sessions,
       0::bigint AS times_impersonated,
       u.banned_until, u.ban_reason, u.app_metadata, u.user_metadata, u.invited_at, u.confirmed_at, u.created_at
  FROM auth.users u;

-- A page of users. Filters: search (part of the email), filter_role, filter_status
-- (invited, active, banned). Sort: created_at, email or last_sign_in_at, ascending or not. Paging is by
-- keyset: pass the `cursor` of the last row seen as `after`, so a page costs the same at
-- any depth. Every value is a bound parameter; the sort column comes from a fixed list.
CREATE FUNCTION auth.admin_list_users(
    session_token text,
    search text DEFAULT NULL,
    filter_role text DEFAULT NULL,
    filter_status text DEFAULT NULL,
    sort text DEFAULT 'created_at',
    descending boolean DEFAULT true,
    after text DEFAULT NULL,
    page_size integer DEFAULT 50
) RETURNS TABLE (
    id uuid, email text, role text, status text, last_sign_in_at timestamptz, active_sessions bigint,
    times_impersonated bigint, created_at timestamptz, cursor text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who        dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    sort_key   text;
    sort_type  text;
    after_key  text;
    after_id   uuid;
    direction  text := CASE WHEN descending THEN 'DESC' ELSE 'ASC' END;
    comparison text := CASE WHEN descending THEN '<' ELSE '>' END;
BEGIN
    -- Each sort is an indexed expression (see the indexes on auth.users) and its type;
    -- never a string from the caller. NULL sign-in times sort as the oldest.
    SELECT k.expression, k.type INTO sort_key, sort_type
      FROM (VALUES ('created_at', 'u.created_at', 'timestamptz'),
                   ('email', 'pg_catalog.lower(u.email)', 'text'),
                   ('last_sign_in_at', 'coalesce(u.last_sign_in_at, ''-infinity''::timestamptz)', 'timestamptz'))
           AS k(name, expression, type)
     WHERE k.name = admin_list_users.sort;
    IF sort_key IS NULL THEN
        RAISE EXCEPTION 'cannot sort by %: use created_at, email or last_sign_in_at', pg_catalog.quote_literal(admin_list_users.sort)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF filter_status IS NOT NULL AND filter_status NOT IN ('invited', 'active', 'banned') THEN
        RAISE EXCEPTION 'unknown status %: use invited, active or banned', pg_catalog.quote_literal(filter_status)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 500' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF after IS NOT NULL THEN
        BEGIN
            after_key := (after::jsonb) ->> 0;
            after_id := ((after::jsonb) ->> 1)::uuid;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'invalid cursor: pass the cursor column of a row from the previous page'
                  USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'users.listed', 'users', NULL,
        pg_catalog.jsonb_build_object('search', search, 'role', filter_role, 'status', filter_status,
                                      'sort', admin_list_users.sort, 'after', after));
    RETURN QUERY EXECUTE pg_catalog.format(
        $q$
        SELECT o.id, o.email, o.role, o.status, o.last_sign_in_at, o.active_sessions, o.times_impersonated, o.created_at,
               pg_catalog.jsonb_build_array(%1$s, u.id)::text
          FROM auth.users u
          JOIN auth.user_overview o ON o.id = u.id
         WHERE ($1::text IS NULL OR pg_catalog.strpos(pg_catalog.lower(u.email), pg_catalog.lower($1)) > 0)
           AND ($2::text IS NULL OR u.role = $2)
           AND ($3::text IS NULL OR o.status = $3)
           AND ($4::text IS NULL OR (%1$s, u.id) %2$s ($4::%4$s, $5))
         ORDER BY %1$s %3$s, u.id %3$s
         LIMIT $6
        $q$, sort_key, comparison, direction, sort_type)
    USING search, filter_role, filter_status, after_key, after_id, page_size;
END
$$;
COMMENT ON FUNCTION auth.admin_list_users(text, text, text, text, text, boolean, text, integer) IS 'A page of app users with their status, sessions and last sign-in; keyset paging through the cursor column';

CREATE FUNCTION auth.admin_get_user(session_token text, user_id uuid)
RETURNS TABLE (id uuid, email text, role text, status text, last_sign_in_at timestamptz, active_sessions bigint,
               times_impersonated bigint, banned_until timestamptz, ban_reason text, app_metadata jsonb,
               user_metadata jsonb, invited_at timestamptz, confirmed_at timestamptz, created_at timestamptz,
               recent_sessions jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
BEGIN
    RETURN QUERY
    SELECT o.id, o.email, o.role, o.status, o.last_sign_in_at, o.active_sessions, o.times_impersonated,
           o.banned_until, o.ban_reason, o.app_metadata, o.user_metadata, o.invited_at, o.confirmed_at, o.created_at,
           coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                         'id', s.id, 'created_at', s.created_at, 'expires_at', s.expires_at,
                         'revoked_at', s.revoked_at, 'ip', s.ip, 'user_agent', s.user_agent) ORDER BY s.created_at DESC)
                       FROM (SELECT * FROM auth.sessions s2 WHERE s2.user_id = o.id
                              ORDER BY s2.created_at DESC LIMIT 20) s), '[]'::jsonb)
      FROM auth.user_overview o WHERE o.id = admin_get_user.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user with id %', coalesce(admin_get_user.user_id::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.viewed', 'user', admin_get_user.user_id::text);
END
$$;

CREATE FUNCTION auth.admin_invite_user(
    session_token text, email text, role text DEFAULT 'authenticated', user_metadata jsonb DEFAULT '{}'::jsonb,
    valid_for interval DEFAULT interval '7 days'
) RETURNS TABLE (user_id uuid, invite_token text, invite_link text, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who        dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    normalized text := dashboard_auth.normalize_email(admin_invite_user.email);
BEGIN
    PERFORM auth.check_user_role(admin_invite_user.role);
    PERFORM auth.check_metadata(admin_invite_user.user_metadata, 'user_metadata');
    IF EXISTS (SELECT 1 FROM auth.users u WHERE pg_catalog.lower(u.email) = normalized) THEN
        RAISE EXCEPTION 'a user with email % exists already', normalized
              USING ERRCODE = 'unique_violation', HINT = 'Reset that user''s password instead.';
    END IF;
    INSERT INTO auth.users (email, role, user_metadata, invited_at)
    VALUES (normalized, admin_invite_user.role, coalesce(admin_invite_user.user_metadata, '{}'::jsonb), pg_catalog.now())
    RETURNING id INTO user_id;
    SELECT l.token, l.link, l.expires_at INTO invite_token, invite_link, expires_at
      FROM auth.issue_user_link('invite', user_id, valid_for, who.email) l;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.invited', 'user', user_id::text,
        pg_catalog.jsonb_build_object('email', normalized, 'role', admin_invite_user.role));
    RETURN NEXT;
END
$$;

CREATE FUNCTION auth.admin_set_user_role(session_token text, user_id uuid, role text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_set_user_role.user_id);
BEGIN
    PERFORM auth.check_user_role(admin_set_user_role.role);
    UPDATE auth.users u SET role = admin_set_user_role.role, updated_at = pg_catalog.now() WHERE u.id = account.id;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.role_changed', 'user', account.id::text,
        pg_catalog.jsonb_build_object('old', account.role, 'new', admin_set_user_role.role));
END
$$;

-- Replaces app_metadata and/or user_metadata (NULL leaves one as it is); each must be a
-- JSON object.
CREATE FUNCTION auth.admin_update_user_metadata(
    session_token text, user_id uuid, app_metadata jsonb DEFAULT NULL, user_metadata jsonb DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_update_user_metadata.user_id);
BEGIN
    PERFORM auth.check_metadata(admin_update_user_metadata.app_metadata, 'app_metadata');
    PERFORM auth.check_metadata(admin_update_user_metadata.user_metadata, 'user_metadata');
    UPDATE auth.users u
       SET app_metadata = coalesce(admin_update_user_metadata.app_metadata, u.app_metadata),
           user_metadata = coalesce(admin_update_user_metadata.user_metadata, u.user_metadata),
           updated_at = pg_catalog.now()
     WHERE u.id = account.id;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.metadata_changed', 'user', account.id::text,
        pg_catalog.jsonb_build_object('old', pg_catalog.jsonb_build_object('app_metadata', account.app_metadata, 'user_metadata', account.user_metadata),
                                      'new', pg_catalog.jsonb_build_object('app_metadata', admin_update_user_metadata.app_metadata,
                                                                           'user_metadata', admin_update_user_metadata.user_metadata)));
END
$$;

CREATE FUNCTION auth.admin_reset_user_password(session_token text, user_id uuid, valid_for interval DEFAULT interval '24 hours')
RETURNS TABLE (recovery_token text, recovery_link text, expires_at timestamptz, sessions_revoked integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_reset_user_password.user_id);
BEGIN
    sessions_revoked := auth.revoke_user_sessions(account.id);
    SELECT l.token, l.link, l.expires_at INTO recovery_token, recovery_link, expires_at
      FROM auth.issue_user_link('recovery', account.id, valid_for, who.email) l;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.password_reset', 'user', account.id::text,
        pg_catalog.jsonb_build_object('sessions_revoked', sessions_revoked));
    RETURN NEXT;
END
$$;

CREATE FUNCTION auth.admin_revoke_user_sessions(session_token text, user_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_revoke_user_sessions.user_id);
    revoked integer := auth.revoke_user_sessions(account.id);
BEGIN
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.sessions_revoked', 'user', account.id::text,
        pg_catalog.jsonb_build_object('sessions_revoked', revoked));
    RETURN revoked;
END
$$;

CREATE FUNCTION auth.admin_ban_user(session_token text, user_id uuid, until timestamptz, reason text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_ban_user.user_id);
    revoked integer;
BEGIN
    IF until IS NULL OR until <= pg_catalog.now() THEN
        RAISE EXCEPTION 'a ban must end in the future, not at %', coalesce(until::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value', HINT = 'For a long ban, use a far date such as now() + interval ''100 years''.';
    END IF;
    IF reason IS NULL OR pg_catalog.btrim(reason) = '' THEN
        RAISE EXCEPTION 'a ban needs a reason' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE auth.users u SET banned_until = until, ban_reason = pg_catalog.btrim(reason), updated_at = pg_catalog.now()
     WHERE u.id = account.id;
    revoked := auth.revoke_user_sessions(account.id);
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.banned', 'user', account.id::text,
        pg_catalog.jsonb_build_object('until', until, 'reason', pg_catalog.btrim(reason), 'sessions_revoked', revoked));
    RETURN revoked;
END
$$;

CREATE FUNCTION auth.admin_unban_user(session_token text, user_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_unban_user.user_id);
BEGIN
    UPDATE auth.users u SET banned_until = NULL, ban_reason = NULL, updated_at = pg_catalog.now() WHERE u.id = account.id;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.unbanned', 'user', account.id::text,
        pg_catalog.jsonb_build_object('was_banned_until', account.banned_until));
END
$$;

-- Deletes a user; their sessions and links go with them, the audit entries stay.
CREATE FUNCTION auth.admin_delete_user(session_token text, user_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_admin(session_token);
    account auth.users := auth.user_for_update(admin_delete_user.user_id);
BEGIN
    DELETE FROM auth.users u WHERE u.id = account.id;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'user.deleted', 'user', account.id::text,
        pg_catalog.jsonb_build_object('email', account.email, 'role', account.role));
END
$$;

GRANT EXECUTE ON FUNCTION
    auth.accept_invite(text, text),
    auth.complete_recovery(text, text),
    auth.sign_in(text, text, inet, text),
    auth.sign_out(text)
TO service_role;

GRANT EXECUTE ON FUNCTION
    auth.admin_list_users(text, text, text, text, text, boolean, text, integer),
    auth.admin_get_user(text, uuid),
    auth.admin_invite_user(text, text, text, jsonb, interval),
    auth.admin_set_user_role(text, uuid, text),
    auth.admin_update_user_metadata(text, uuid, jsonb, jsonb),
    auth.admin_reset_user_password(text, uuid, interval),
    auth.admin_revoke_user_sessions(text, uuid),
    auth.admin_ban_user(text, uuid, timestamptz, text),
    auth.admin_unban_user(text, uuid),
    auth.admin_delete_user(text, uuid)
TO fluxbase_dashboard;
