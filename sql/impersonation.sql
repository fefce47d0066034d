-- Impersonation: view the database as an app user, as anonymous, or as the service role,
-- to debug Row Level Security.
--
-- Starting is committed on its own and audited. Applying happens inside the caller's
-- transaction, in two parts: a definer function checks the session and builds the
-- claims (auth.impersonation_context), and an invoker function sets them and switches
-- role (auth.apply_impersonation), because SET ROLE is refused inside a definer
-- function. Both are transaction-local, so a pooled connection is never left
-- impersonated.

CREATE TABLE auth.impersonation_sessions (
    id             uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    admin_id       uuid REFERENCES dashboard_auth.dashboard_users (id) ON DELETE SET NULL,
    admin_email    text NOT NULL,
    mode           text NOT NULL CHECK (mode IN ('user', 'anon', 'service')),
    target_user_id uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    target_email   text,
    target_role    text NOT NULL,
    target_banned  boolean NOT NULL DEFAULT false,
    reason         text NOT NULL CHECK (pg_catalog.btrim(reason) <> ''),
    ip             inet,
    user_agent     text,
    started_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    end_reason     text,
    -- False once ended, replaced by the admin's next session, or past its expiry (the
    -- next impersonation call records the expiry).
    active         boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX impersonation_sessions_one_active ON auth.impersonation_sessions (admin_id) WHERE active;
CREATE INDEX impersonation_sessions_started_at ON auth.impersonation_sessions (started_at);
CREATE INDEX impersonation_sessions_target ON auth.impersonation_sessions (target_user_id);
COMMENT ON TABLE auth.impersonation_sessions IS 'Every impersonation: who, as whom, why, and for how long';
SELECT pg_catalog.pg_extension_config_dump('auth.impersonation_sessions', '');
REVOKE ALL ON auth.impersonation_sessions FROM PUBLIC;

-- Users with what an admin needs to see at a glance (auth.list_users and
-- auth.get_user read it). It is defined here, after the table it counts
-- impersonations in.
CREATE VIEW auth.user_overview AS
SELECT u.id, u.email, u.role,
       auth.user_status(u.banned_until, u.confirmed_at) AS status,
       u.last_sign_in_at,
       (SELECT pg_catalog.count(*) FROM auth.sessions s
         WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > pg_catalog.now()) AS active_sessions,
       (SELECT pg_catalog.count(*) FROM auth.impersonation_sessions i WHERE i.target_user_id = u.id) AS times_impersonated,
       u.banned_until, u.ban_reason, u.app_metadata, u.user_metadata, u.invited_at, u.confirmed_at, u.created_at
  FROM auth.users u;

CREATE TYPE auth.impersonation_result AS (
    ok               boolean,
    code             text,
    message          text,
    impersonation_id uuid,
    expires_at       timestamptz
);

-- What apply needs: the role to switch to and the claims to set.
CREATE TYPE auth.impersonation_context AS (
    role   text,
    claims jsonb
);

-- Records expiry: sessions past their end stop being active.
CREATE FUNCTION auth.expire_impersonations() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE auth.impersonation_sessions i SET active = false, ended_at = i.expires_at, end_reason = 'expired'
     WHERE i.active AND i.expires_at <= pg_catalog.now()
$$;

-- Why a role may not be impersonated in user or anonymous mode, or NULL: the rules of
-- auth.forbidden_user_role, and for users the allow-list.
CREATE FUNCTION auth.forbidden_target_role(role text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(auth.forbidden_user_role(role),
        CASE WHEN role <> 'anon' AND NOT role = ANY (auth.allowed_user_roles())
             THEN pg_catalog.format('role %s is not in the allow-list (setting users.extra_roles)', role) END)
$$;

-- ---------------------------------------------------------------------------------
-- Starting and ending (fluxbase_dashboard; an admin session, not a viewer)
-- ---------------------------------------------------------------------------------

-- Starts impersonating. Call it in a transaction of its own: the session and its audit
-- entry then commit whatever happens to the work that follows. Modes: 'user' (target is
-- the user's id or email), 'anon' and 'service' (no target; service bypasses RLS on
-- purpose). A refused target is returned with its reason, and audited.
CREATE FUNCTION auth.start_impersonation(
    session_token text, mode text, target text, reason text,
    valid_for interval DEFAULT NULL
) RETURNS auth.impersonation_result
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The client, as fluxbase serve sets it per transaction (NULL from psql).
    client_ip    inet := dashboard_auth.request_ip();
    client_agent text := dashboard_auth.request_user_agent();
    who       dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    actor     dashboard_auth.actor := dashboard_auth.session_actor(who);
    longest   interval := dashboard_auth.get_setting_interval('impersonation.max_duration');
    account   auth.users;
    role_name text;
    refusal   text;
    started   auth.impersonation_sessions;
BEGIN
    -- A viewer's attempt is refused and recorded: returned, not raised, so that the
    -- record commits.
    IF NOT dashboard_auth.may(who, 'impersonate') THEN
        PERFORM dashboard_auth.audit_by(actor, 'impersonation.refused', 'user', NULL,
            pg_catalog.jsonb_build_object('mode', start_impersonation.mode, 'target', target, 'reason', reason,
                                          'refusal', 'viewers are read-only: this needs an admin'));
        RETURN ROW(false, 'forbidden', 'viewers are read-only: this needs an admin', NULL, NULL)::auth.impersonation_result;
    END IF;
    IF start_impersonation.mode IS NULL OR start_impersonation.mode NOT IN ('user', 'anon', 'service') THEN
        RAISE EXCEPTION 'unknown mode %: use user, anon or service', coalesce(pg_catalog.quote_literal(start_impersonation.mode), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_impersonation.reason IS NULL OR pg_catalog.btrim(start_impersonation.reason) = '' THEN
        RAISE EXCEPTION 'impersonation needs a reason, such as a ticket number'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM dashboard_auth.check_interval(valid_for, interval '1 minute', longest, 'impersonation length', false,
                                          'The longest is the setting impersonation.max_duration.');
    -- One start at a time per admin, so that "one active session" holds under races.
    PERFORM dashboard_auth.hold_lock('impersonation:' || who.admin_id::text);
    PERFORM auth.expire_impersonations();

    IF start_impersonation.mode = 'user' THEN
        SELECT * INTO account FROM auth.users u
         WHERE u.id::text = pg_catalog.btrim(target) OR pg_catalog.lower(u.email) = pg_catalog.lower(pg_catalog.btrim(target));
        IF account.id IS NULL THEN
            refusal := pg_catalog.format('no app user %s', coalesce(pg_catalog.quote_literal(target), 'given'));
        ELSIF EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users d WHERE pg_catalog.lower(d.email) = pg_catalog.lower(account.email)) THEN
            refusal := pg_catalog.format('%s is a dashboard admin: admins cannot be impersonated', account.email);
        ELSE
            refusal := auth.forbidden_target_role(account.role);
        END IF;
        role_name := account.role;
    ELSIF start_impersonation.mode = 'anon' THEN
        role_name := 'anon';
        refusal := auth.forbidden_target_role('anon');
    ELSE
        role_name := 'service_role';
    END IF;

    IF refusal IS NOT NULL THEN
        PERFORM dashboard_auth.audit_by(actor, 'impersonation.refused', 'user', account.id::text,
            pg_catalog.jsonb_build_object('mode', start_impersonation.mode, 'target', target, 'reason', reason,
                                          'refusal', refusal));
        RETURN ROW(false, 'forbidden_target', refusal, NULL, NULL)::auth.impersonation_result;
    END IF;

    -- One active session per admin: a new one ends the last.
    UPDATE auth.impersonation_sessions i SET active = false, ended_at = pg_catalog.now(), end_reason = 'replaced'
     WHERE i.admin_id = who.admin_id AND i.active;
    INSERT INTO auth.impersonation_sessions (admin_id, admin_email, mode, target_user_id, target_email, target_role,
                                             target_banned, reason, ip, user_agent, expires_at)
    VALUES (who.admin_id, who.email, start_impersonation.mode, account.id, account.email, role_name,
            coalesce(account.banned_until > pg_catalog.now(), false), pg_catalog.btrim(start_impersonation.reason),
            client_ip, pg_catalog.left(client_agent, 500),
            pg_catalog.now() + coalesce(valid_for, longest))
    RETURNING * INTO started;
    PERFORM dashboard_auth.audit('admin', who.admin_id, who.email, 'impersonation.started', 'impersonation',
        started.id::text,
        pg_catalog.jsonb_build_object('mode', started.mode, 'target_user_id', started.target_user_id,
                                      'target_email', started.target_email, 'target_role', started.target_role,
                                      'target_banned', started.target_banned, 'reason', started.reason,
                                      'expires_at', started.expires_at),
        client_ip, client_agent);
    RETURN ROW(true, 'ok',
               CASE WHEN started.target_banned THEN 'Impersonating a banned user, for debugging.'
                    ELSE 'Impersonation started.' END,
               started.id, started.expires_at)::auth.impersonation_result;
END
$$;
COMMENT ON FUNCTION auth.start_impersonation(text, text, text, text, interval) IS 'Starts viewing the database as a user, anon or the service role; commit it on its own';

CREATE FUNCTION auth.end_impersonation(session_token text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who   dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    ended auth.impersonation_sessions;
BEGIN
    PERFORM auth.expire_impersonations();
    UPDATE auth.impersonation_sessions i SET active = false, ended_at = pg_catalog.now(), end_reason = 'ended'
     WHERE i.admin_id = who.admin_id AND i.active
    RETURNING * INTO ended;
    IF ended.id IS NOT NULL THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'impersonation.ended', 'impersonation', ended.id::text,
            pg_catalog.jsonb_build_object('mode', ended.mode, 'target_user_id', ended.target_user_id));
    END IF;
    RETURN ended.id IS NOT NULL;
END
$$;

-- ---------------------------------------------------------------------------------
-- Applying (inside the caller's transaction)
-- ---------------------------------------------------------------------------------

-- The check: the admin's session, and their active, unexpired impersonation. Returns the
-- role and the claims, shaped as PostgREST's.
CREATE FUNCTION auth.impersonation_context(session_token text, impersonation_id uuid) RETURNS auth.impersonation_context
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'impersonate');
    found_session auth.impersonation_sessions;
    account auth.users;
    claims  jsonb;
BEGIN
    SELECT * INTO found_session FROM auth.impersonation_sessions i
     WHERE i.id = impersonation_context.impersonation_id AND i.admin_id = who.admin_id;
    IF found_session.id IS NULL OR NOT found_session.active OR found_session.expires_at <= pg_catalog.now() THEN
        RAISE EXCEPTION 'impersonation session % is not active: it ended or expired', coalesce(impersonation_id::text, 'NULL')
              USING ERRCODE = 'FB001', HINT = 'Start a new one with auth.start_impersonation.';
    END IF;
    -- The target's role is checked again where it is applied, at the claim: its attributes
    -- or memberships may have changed since the start, and a refusal there is returned
    -- and recorded (a refusal raised here could not be).
    claims := pg_catalog.jsonb_build_object(
        'role', found_session.target_role,
        'aal', 'aal1',
        'session_id', found_session.id,
        'exp', pg_catalog.floor(pg_catalog.date_part('epoch', found_session.expires_at))::bigint,
        'iat', pg_catalog.floor(pg_catalog.date_part('epoch', found_session.started_at))::bigint,
        'is_anonymous', found_session.mode = 'anon');
    IF found_session.mode = 'user' THEN
        SELECT * INTO account FROM auth.users u WHERE u.id = found_session.target_user_id;
        IF account.id IS NULL THEN
            RAISE EXCEPTION 'the impersonated user no longer exists' USING ERRCODE = 'no_data_found';
        END IF;
        claims := claims || pg_catalog.jsonb_build_object(
            'sub', account.id, 'email', account.email,
            'app_metadata', account.app_metadata, 'user_metadata', account.user_metadata);
    END IF;
    RETURN ROW(found_session.target_role, claims)::auth.impersonation_context;
END
$$;

-- The switch, for psql: on the data login, after claiming an 'impersonate' ticket, the
-- transaction becomes the impersonated role with its claims until it ends:
--   dashboard login: SELECT fluxbase_admin.issue_ticket(token, 'impersonate', '{"read_only": true}', impersonation_id);
--   data login:      BEGIN; SELECT fluxbase_admin.claim_ticket('fbk_...'); SELECT auth.apply_impersonation();
--                    SELECT * FROM todos; ROLLBACK;
CREATE FUNCTION auth.apply_impersonation() RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound jsonb := fluxbase_admin.claimed('impersonate');
    kept  text := pg_catalog.current_setting('search_path');
BEGIN
    PERFORM fluxbase_admin.enter_role(bound);
    -- The caller's own search_path stays as it was.
    PERFORM pg_catalog.set_config('search_path', kept, true);
    RETURN bound -> 'claims';
END
$$;
COMMENT ON FUNCTION auth.apply_impersonation() IS 'Data plane, inside a transaction that claimed an impersonate ticket: become the impersonated role with its claims until the transaction ends';

-- ---------------------------------------------------------------------------------
-- Recording work done under impersonation (the explorer and the SQL runner call these)
-- ---------------------------------------------------------------------------------

-- The intent, committed in its own short transaction before the work, so that the
-- record survives the work failing. Returns the entry's id for the result.
CREATE FUNCTION auth.record_impersonated_intent(session_token text, impersonation_id uuid, action text, details jsonb DEFAULT '{}'::jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'impersonate');
    context auth.impersonation_context := auth.impersonation_context(session_token, impersonation_id);
BEGIN
    IF action IS NULL OR action !~ '^[a-z_]+(\.[a-z_]+)*$' THEN
        RAISE EXCEPTION 'invalid action %: use a dotted lower-case name such as explorer.update', pg_catalog.quote_literal(action)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'impersonated.' || action || '.intent', 'impersonation',
        impersonation_id::text,
        coalesce(details, '{}'::jsonb) || pg_catalog.jsonb_build_object('as_role', context.role, 'claims_sub', context.claims ->> 'sub'));
END
$$;

-- ---------------------------------------------------------------------------------
-- Reading impersonations (any session: the audit log shows viewers the same)
-- ---------------------------------------------------------------------------------

-- The caller's active impersonation, for the banner after a reload: one row, or none.
CREATE FUNCTION auth.get_impersonation(session_token text DEFAULT NULL)
RETURNS TABLE (impersonation_id uuid, mode text, target_user_id uuid, target_email text, target_role text,
               reason text, started_at timestamptz, expires_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.id, i.mode, i.target_user_id, i.target_email, i.target_role, i.reason, i.started_at, i.expires_at
      FROM dashboard_auth.check_session(session_token) w
      JOIN auth.impersonation_sessions i ON i.admin_id = w.admin_id
     WHERE i.active AND i.expires_at > pg_catalog.now()
$$;
COMMENT ON FUNCTION auth.get_impersonation(text) IS 'The caller''s active impersonation: one row, or none';

-- Every impersonation, newest first, one page at a time:
--   admin_email: the admin's email exactly, case-insensitive
--   target:      the target user's id or email (case-insensitive), or the role (anon,
--                service_role, ...)
--   since/until: started in [since, until)
-- Returns {"rows": [...], "next_cursor": text or null}; a row's active is false once it
-- ended or expired. Reading it is audited once per session (impersonation.listed).
CREATE FUNCTION auth.list_impersonations(
    session_token text DEFAULT NULL, admin_email text DEFAULT NULL, target text DEFAULT NULL,
    since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL, page_size integer DEFAULT 50, cursor text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who        dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    after      jsonb;
    after_at   timestamptz;
    after_id   uuid;
    entries    jsonb;
BEGIN
    PERFORM dashboard_auth.check_page_size(page_size);
    after := dashboard_auth.decode_cursor(cursor, 2);
    BEGIN
        after_at := (after ->> 0)::timestamptz;
        after_id := (after ->> 1)::uuid;
    EXCEPTION WHEN OTHERS THEN
        PERFORM dashboard_auth.refuse_cursor();
    END;
    WITH page AS (
        SELECT i.* FROM auth.impersonation_sessions i
         WHERE (list_impersonations.admin_email IS NULL
                OR pg_catalog.lower(i.admin_email) = pg_catalog.lower(pg_catalog.btrim(list_impersonations.admin_email)))
           AND (list_impersonations.target IS NULL
                OR i.target_user_id::text = pg_catalog.btrim(list_impersonations.target)
                OR pg_catalog.lower(i.target_email) = pg_catalog.lower(pg_catalog.btrim(list_impersonations.target))
                OR i.target_role = pg_catalog.btrim(list_impersonations.target))
           AND (since IS NULL OR i.started_at >= since)
           AND (until IS NULL OR i.started_at < until)
           AND (after_at IS NULL OR (i.started_at, i.id) < (after_at, after_id))
         ORDER BY i.started_at DESC, i.id DESC
         LIMIT page_size + 1
    )
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', p.id, 'admin_id', p.admin_id, 'admin_email', p.admin_email, 'mode', p.mode,
               'target_user_id', p.target_user_id, 'target_email', p.target_email, 'target_role', p.target_role,
               'target_banned', p.target_banned, 'reason', p.reason, 'ip', p.ip, 'user_agent', p.user_agent,
               'started_at', p.started_at, 'expires_at', p.expires_at,
               'ended_at', coalesce(p.ended_at, CASE WHEN p.expires_at <= pg_catalog.now() THEN p.expires_at END),
               'end_reason', coalesce(p.end_reason, CASE WHEN p.expires_at <= pg_catalog.now() THEN 'expired' END),
               'active', p.active AND p.expires_at > pg_catalog.now())
               ORDER BY p.started_at DESC, p.id DESC)
      INTO entries
      FROM page p;
    PERFORM dashboard_auth.audit_read(who, 'impersonation.listed', 'impersonation', NULL,
        pg_catalog.jsonb_build_object('admin_email', list_impersonations.admin_email, 'target', list_impersonations.target,
                                      'since', since, 'until', until));
    RETURN dashboard_auth.page_of(entries, page_size, ARRAY['started_at', 'id']);
END
$$;
COMMENT ON FUNCTION auth.list_impersonations(text, text, text, timestamptz, timestamptz, integer, text) IS 'A page of impersonations, newest first, filtered by admin, target and time';

GRANT SELECT ON auth.impersonation_sessions TO fluxbase_operator;
GRANT EXECUTE ON FUNCTION
    auth.start_impersonation(text, text, text, text, interval),
    auth.end_impersonation(text),
    auth.get_impersonation(text),
    auth.list_impersonations(text, text, text, timestamptz, timestamptz, integer, text)
TO fluxbase_dashboard;
-- impersonation_context and record_impersonated_intent are internal: issue_ticket calls
-- them, so that a page needs one call per impersonated read or edit.
