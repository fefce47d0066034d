-- Admin authentication and management: first-run setup, sign-in with lockout,
-- sessions, one-time links, admin management and the operators' break-glass commands.
--
-- Conventions (see README, "SQL API"):
-- * Functions the dashboard calls for a signed-in admin take the session token first.
--   `viewer` sessions are refused by every function that changes the system.
-- * Break-glass functions are named operator_* and need fluxbase_operator or a superuser.
-- * A call that is wrong raises an error with a documented SQLSTATE. An attempt that must
--   be recorded even when it fails (sign-in, redeeming a link, setup, changing a
--   password) returns an outcome instead, because an error would roll the record back.
-- * Every function here is SECURITY DEFINER with a pinned search_path and
--   schema-qualified names; EXECUTE is granted per function at the end of this file.

-- ---------------------------------------------------------------------------------
-- Internal helpers (no grants: only the definer functions below call them)
-- ---------------------------------------------------------------------------------

-- Who did something, for the audit log.
CREATE TYPE dashboard_auth.actor AS (actor_type text, actor_id uuid, actor text);

CREATE FUNCTION dashboard_auth.operator_actor() RETURNS dashboard_auth.actor
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ROW('operator', NULL::uuid, session_user::text)::dashboard_auth.actor $$;

CREATE FUNCTION dashboard_auth.session_actor(a dashboard_auth.session_admin) RETURNS dashboard_auth.actor
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ROW('admin', a.admin_id, a.email)::dashboard_auth.actor $$;

-- The client's address and user agent of the current request. `fluxbase serve` sets them
-- per transaction (set_config('fluxbase.client_ip', ..., true)); they only annotate the
-- audit log and never decide anything.
CREATE FUNCTION dashboard_auth.request_ip() RETURNS inet
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN nullif(pg_catalog.current_setting('fluxbase.client_ip', true), '')::inet;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION dashboard_auth.request_user_agent() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.left(nullif(pg_catalog.current_setting('fluxbase.user_agent', true), ''), 500) $$;

-- An audit entry by `who`, with the current request's address and user agent.
CREATE FUNCTION dashboard_auth.audit_by(
    who dashboard_auth.actor, action text, target_type text, target_id text, details jsonb DEFAULT '{}'::jsonb
) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT dashboard_auth.audit(who.actor_type, who.actor_id, who.actor, action, target_type, target_id,
                                details, dashboard_auth.request_ip(), dashboard_auth.request_user_agent())
$$;

-- Serialises changes to the set of admins: the setup race and the last-admin guard.
-- Only under READ COMMITTED does each statement after the lock see what the previous
-- holder committed; an older snapshot could let two callers each remove "another" admin.
CREATE FUNCTION dashboard_auth.lock_admin_set() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'changes to admins need a READ COMMITTED transaction, not %',
                        pg_catalog.current_setting('transaction_isolation')
              USING ERRCODE = 'invalid_transaction_state',
                    HINT = 'Run it outside BEGIN ISOLATION LEVEL REPEATABLE READ / SERIALIZABLE.';
    END IF;
    PERFORM dashboard_auth.hold_lock('admin_set');
END
$$;

-- Ends an admin's unused one-time links: after a password is set by any means, an older
-- link (printed to a terminal, sitting in a mailbox) must not take the account over.
CREATE FUNCTION dashboard_auth.expire_links(admin uuid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE dashboard_auth.one_time_tokens t SET used_at = pg_catalog.now()
     WHERE t.admin_id = admin AND t.used_at IS NULL
$$;

CREATE FUNCTION dashboard_auth.token_hash(token text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8')) $$;

-- A trimmed, lower-cased email address, or an error a person can act on.
CREATE FUNCTION dashboard_auth.normalize_email(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := pg_catalog.lower(pg_catalog.btrim(raw));
BEGIN
    IF normalized IS NULL
       OR pg_catalog.length(normalized) > 254
       OR normalized !~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:].]+(\.[^@[:space:][:cntrl:].]+)+$' THEN
        RAISE EXCEPTION 'invalid email address: %', coalesce(pg_catalog.quote_literal(raw), 'NULL')
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an address such as admin@example.com.';
    END IF;
    RETURN normalized;
END
$$;

CREATE FUNCTION dashboard_auth.normalize_name(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trimmed text := pg_catalog.btrim(raw);
BEGIN
    IF trimmed IS NULL OR trimmed = '' OR pg_catalog.length(trimmed) > 200 THEN
        RAISE EXCEPTION 'invalid name: give a name of 1 to 200 characters'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN trimmed;
END
$$;

CREATE FUNCTION dashboard_auth.check_role(role text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL OR role NOT IN ('admin', 'viewer') THEN
        RAISE EXCEPTION 'invalid role %: use admin or viewer', coalesce(pg_catalog.quote_literal(role), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN role;
END
$$;

-- One range check for every interval a caller passes (session lifetimes, link validity,
-- impersonation durations): NULL passes unless required, and a refusal names the range.
CREATE FUNCTION dashboard_auth.check_interval(value interval, low interval, high interval, what text,
                                              required boolean DEFAULT false, hint text DEFAULT '')
RETURNS interval
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (value IS NULL AND required) OR value < low OR value > high THEN
        RAISE EXCEPTION '% % is out of range: it must be between % and %', what, coalesce(value::text, 'NULL'), low, high
              USING ERRCODE = 'invalid_parameter_value', HINT = coalesce(hint, '');
    END IF;
    RETURN value;
END
$$;

-- The outcome of an attempt that succeeded (README, "Conventions": results). A refusal
-- that must be recorded is an outcome too, with ok = false.
CREATE FUNCTION dashboard_auth.done(code text, message text) RETURNS dashboard_auth.outcome
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ROW(true, code, message)::dashboard_auth.outcome $$;

-- Paging, one style for every paged list (README, "Conventions"): a page_size between 1
-- and 1000, an opaque cursor in, next_cursor out. A cursor is the last row's sort key
-- (a jsonb array) in base64: opaque to callers, checked on the way back in.
CREATE FUNCTION dashboard_auth.check_page_size(page_size integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'page_size is between 1 and 1000, not %', coalesce(page_size::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN page_size;
END
$$;

-- A cursor that does not decode, or whose sort key does not fit the list.
CREATE FUNCTION dashboard_auth.refuse_cursor() RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
        RAISE EXCEPTION 'the cursor is not valid here: start from the first page'
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Pass the next_cursor of the previous page of the same list, unchanged.';
END
$$;

CREATE FUNCTION dashboard_auth.encode_cursor(sort_key jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(sort_key::text, 'UTF8'), 'base64'), E'\n', '') $$;

-- A page from up to page_size + 1 rows read in the list's order (the extra row says
-- another page follows): {"rows": the first page_size, "next_cursor": the last kept row's
-- key_fields as a cursor, or null}.
CREATE FUNCTION dashboard_auth.page_of(found jsonb, page_size integer, key_fields text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_array_length(coalesce(found, '[]')) <= page_size
                THEN pg_catalog.jsonb_build_object('rows', coalesce(found, '[]'), 'next_cursor', NULL)
                ELSE pg_catalog.jsonb_build_object(
                         'rows', found - page_size,
                         'next_cursor', dashboard_auth.encode_cursor(
                             (SELECT pg_catalog.jsonb_agg(found -> (page_size - 1) -> k.field ORDER BY k.n)
                                FROM pg_catalog.unnest(key_fields) WITH ORDINALITY AS k(field, n)))) END
$$;

-- The sort key of a cursor, an array of `arity` elements; NULL for NULL (the first page).
CREATE FUNCTION dashboard_auth.decode_cursor(cursor text, arity integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sort_key jsonb;
BEGIN
    IF cursor IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        sort_key := pg_catalog.convert_from(pg_catalog.decode(cursor, 'base64'), 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        sort_key := NULL;
    END;
    IF pg_catalog.jsonb_typeof(sort_key) IS DISTINCT FROM 'array' OR pg_catalog.jsonb_array_length(sort_key) <> arity THEN
        PERFORM dashboard_auth.refuse_cursor();
    END IF;
    RETURN sort_key;
END
$$;

-- A session lifetime asked for by the caller (fluxbase serve passes
-- FLUXBASE_ADMIN_SESSION_TIMEOUT): at least a minute, at most 7 days.
CREATE FUNCTION dashboard_auth.check_session_lifetime(lifetime interval) RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.check_interval(lifetime, interval '1 minute', interval '7 days', 'session lifetime') $$;

CREATE FUNCTION dashboard_auth.check_link_validity(valid_for interval) RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.check_interval(valid_for, interval '5 minutes', interval '7 days', 'link validity', true) $$;

-- Why a new password is refused, or NULL. Admins and app users share the policy; each
-- has its own minimum-length setting.
CREATE FUNCTION dashboard_auth.new_password_problem(password text, email text,
                                                    min_length_setting text DEFAULT 'password.min_length')
RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN password IS NULL THEN 'A password is needed.'
                ELSE dashboard_auth.password_problem(password, email,
                         dashboard_auth.get_setting_int(min_length_setting)::int) END
$$;

-- Admins who can sign in and manage: role admin, enabled, with a password.
CREATE FUNCTION dashboard_auth.active_admin_count(excluding uuid) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.count(*) FROM dashboard_auth.dashboard_users u
     WHERE u.role = 'admin' AND u.disabled_at IS NULL AND u.password_hash IS NOT NULL
       AND u.id IS DISTINCT FROM excluding
$$;

-- Refuses a change that would leave no active admin. Call with lock_admin_set() held.
CREATE FUNCTION dashboard_auth.guard_last_admin(target uuid, change text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users u
                WHERE u.id = target AND u.role = 'admin' AND u.disabled_at IS NULL AND u.password_hash IS NOT NULL)
       AND dashboard_auth.active_admin_count(target) = 0 THEN
        RAISE EXCEPTION 'cannot % the last active admin', change
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Create or enable another admin first.';
    END IF;
END
$$;

-- Revokes an admin's sessions, except `keep`; returns how many.
CREATE FUNCTION dashboard_auth.revoke_sessions(admin uuid, reason text, keep uuid DEFAULT NULL) RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    WITH revoked AS (
        UPDATE dashboard_auth.sessions s SET revoked_at = pg_catalog.now(), revoked_reason = reason
         WHERE s.admin_id = admin AND s.revoked_at IS NULL AND s.expires_at > pg_catalog.now()
           AND s.id IS DISTINCT FROM keep
        RETURNING 1)
    SELECT pg_catalog.count(*)::int FROM revoked
$$;

-- A sign-in that did not give a session: ok false, a code and a message for a person.
CREATE FUNCTION dashboard_auth.refusal(code text, message text) RETURNS dashboard_auth.login_result
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ROW(false, code, message, NULL, NULL, NULL, NULL, NULL)::dashboard_auth.login_result $$;

-- The end of a successful sign-in: the address's lockout reset, the attempt recorded,
-- and a new session.
CREATE FUNCTION dashboard_auth.complete_sign_in(
    admin uuid, typed_email text, ip inet, user_agent text, via text, lifetime interval
) RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- This address starts afresh. The account's slowdown stays: it decays by itself, and
    -- a success must not give strangers a new round of fast guesses.
    DELETE FROM dashboard_auth.address_lockouts l
     WHERE l.admin_id = complete_sign_in.admin AND l.ip IS NOT DISTINCT FROM complete_sign_in.ip;
    UPDATE dashboard_auth.dashboard_users u
       SET last_login_at = pg_catalog.now(), updated_at = pg_catalog.now()
     WHERE u.id = complete_sign_in.admin;
    PERFORM dashboard_auth.record_login(typed_email, complete_sign_in.admin, complete_sign_in.ip,
                                        complete_sign_in.user_agent, true, 'ok', via);
    RETURN dashboard_auth.issue_session(complete_sign_in.admin, complete_sign_in.ip, complete_sign_in.user_agent, lifetime);
END
$$;

-- A new session for an admin who just proved who they are.
CREATE FUNCTION dashboard_auth.issue_session(admin uuid, ip inet, user_agent text, lifetime interval)
RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token  text := dashboard_auth.new_token('fbs');
    result dashboard_auth.login_result;
BEGIN
    INSERT INTO dashboard_auth.sessions (admin_id, token_hash, expires_at, ip, user_agent)
    VALUES (issue_session.admin, dashboard_auth.token_hash(token),
            pg_catalog.now() + coalesce(issue_session.lifetime, dashboard_auth.get_setting_interval('session.lifetime')),
            issue_session.ip, pg_catalog.left(issue_session.user_agent, 500))
    RETURNING expires_at INTO result.expires_at;
    result.ok := true;
    result.code := 'ok';
    result.message := 'Signed in.';
    result.session_token := token;
    result.admin_id := issue_session.admin;
    SELECT u.role INTO result.role FROM dashboard_auth.dashboard_users u WHERE u.id = issue_session.admin;
    RETURN result;
END
$$;

-- Records a sign-in attempt in login_attempts and the audit log.
CREATE FUNCTION dashboard_auth.record_login(
    typed_email text, admin uuid, ip inet, user_agent text, succeeded boolean, reason text, via text DEFAULT 'password'
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO dashboard_auth.login_attempts (email, admin_id, ip, user_agent, succeeded, reason)
    VALUES (pg_catalog.left(typed_email, 254), record_login.admin, record_login.ip,
            pg_catalog.left(record_login.user_agent, 500), record_login.succeeded, record_login.reason);
    PERFORM dashboard_auth.audit(
        CASE WHEN record_login.succeeded THEN 'admin' ELSE 'anonymous' END,
        record_login.admin, pg_catalog.left(typed_email, 254),
        CASE WHEN record_login.succeeded THEN 'admin.login' ELSE 'admin.login_failed' END,
        'admin', record_login.admin::text,
        pg_catalog.jsonb_build_object('reason', record_login.reason, 'via', record_login.via),
        record_login.ip, pg_catalog.left(record_login.user_agent, 500));
END
$$;

-- ---------------------------------------------------------------------------------
-- Lockout (README, "Signing in"): a lock per account and client address, so that whoever
-- knows an admin's email locks out only their own address; and a slowdown of the account
-- as a whole, never a lock, so that guesses spread over many addresses stay few.
-- ---------------------------------------------------------------------------------

-- Whether this address is locked out of this admin's account now.
CREATE FUNCTION dashboard_auth.address_locked(admin uuid, ip inet) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM dashboard_auth.address_lockouts l
                    WHERE l.admin_id = address_locked.admin AND l.ip IS NOT DISTINCT FROM address_locked.ip
                      AND l.locked_until > pg_catalog.now())
$$;

-- Whether a password check for this admin must wait: the account is slowed down and was
-- checked within lockout.account_backoff. An address the admin signed in from in the last
-- 30 days is let through, so that a slowdown by strangers does not keep its owner waiting.
CREATE FUNCTION dashboard_auth.account_throttled(admin uuid, ip inet) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users u
                    WHERE u.id = account_throttled.admin AND u.throttled_until > pg_catalog.now())
       AND NOT EXISTS (SELECT 1 FROM dashboard_auth.login_attempts a
                        WHERE a.admin_id = account_throttled.admin AND a.ip = account_throttled.ip AND a.succeeded
                          AND a.attempted_at > pg_catalog.now() - interval '30 days')
$$;

-- The two rules of every failure counter (per address and per account, for admins and
-- app users alike), in one place:
-- a failure counts within lockout.window, and one after the window starts again at 1;
CREATE FUNCTION dashboard_auth.next_failure(failures integer, window_from timestamptz)
RETURNS TABLE (failed integer, since timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN fresh THEN 1 ELSE failures + 1 END,
           CASE WHEN fresh THEN pg_catalog.now() ELSE window_from END
      FROM (SELECT window_from IS NULL
                   OR window_from <= pg_catalog.now() - dashboard_auth.get_setting_interval('lockout.window') AS fresh) w
$$;

-- and an address's lock lasts lockout.duration, doubled with each further lock up to
-- 24 hours; a day after the last lock ended, the next is the first again.
CREATE FUNCTION dashboard_auth.next_lock(lock_count integer, locked_until timestamptz)
RETURNS TABLE (lockouts integer, until timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN decayed THEN 1 ELSE lock_count + 1 END,
           pg_catalog.now() + LEAST(dashboard_auth.get_setting_interval('lockout.duration')
                                        * (2 ^ CASE WHEN decayed THEN 0 ELSE LEAST(lock_count, 16) END),
                                    interval '24 hours')
      FROM (SELECT locked_until IS NULL OR locked_until < pg_catalog.now() - interval '24 hours' AS decayed) d
$$;

-- Counts a wrong password or code for an admin from an address. After
-- lockout.max_failures within lockout.window, the address is locked out of the account
-- for lockout.duration, twice as long each time in a row, up to 24 hours. After
-- lockout.account_max_failures from all addresses, each failure makes the next check for
-- the account wait lockout.account_backoff. True when this failure locked the address.
CREATE FUNCTION dashboard_auth.count_failure(admin uuid, ip inet) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    window_start timestamptz := pg_catalog.now() - dashboard_auth.get_setting_interval('lockout.window');
    failures     integer;
    lockouts     integer;
    until        timestamptz;
    was_throttled timestamptz;
BEGIN
    INSERT INTO dashboard_auth.address_lockouts AS l (admin_id, ip, failed_attempts, failure_window_from)
    VALUES (count_failure.admin, count_failure.ip, 1, pg_catalog.now())
    ON CONFLICT ON CONSTRAINT address_lockouts_key DO UPDATE
       SET (failed_attempts, failure_window_from) =
           (SELECT f.failed, f.since FROM dashboard_auth.next_failure(l.failed_attempts, l.failure_window_from) f)
    RETURNING l.failed_attempts INTO failures;
    IF failures >= dashboard_auth.get_setting_int('lockout.max_failures') THEN
        UPDATE dashboard_auth.address_lockouts l
           SET (lockout_count, locked_until) =
               (SELECT n.lockouts, n.until FROM dashboard_auth.next_lock(l.lockout_count, l.locked_until) n),
               failed_attempts = 0,
               failure_window_from = NULL
         WHERE l.admin_id = count_failure.admin AND l.ip IS NOT DISTINCT FROM count_failure.ip
        RETURNING l.lockout_count, l.locked_until INTO lockouts, until;
        PERFORM dashboard_auth.audit('system', NULL, 'fluxbase_admin', 'admin.locked', 'admin', count_failure.admin::text,
            pg_catalog.jsonb_build_object('lockout', lockouts, 'locked_until', until, 'ip', count_failure.ip));
    END IF;

    -- The account as a whole: one atomic update, so that concurrent failures all count.
    UPDATE dashboard_auth.dashboard_users u
       SET (failed_attempts, failure_window_from) =
           (SELECT f.failed, f.since FROM dashboard_auth.next_failure(u.failed_attempts, u.failure_window_from) f)
     WHERE u.id = count_failure.admin
    RETURNING u.failed_attempts, u.throttled_until INTO failures, was_throttled;
    IF failures >= dashboard_auth.get_setting_int('lockout.account_max_failures') THEN
        UPDATE dashboard_auth.dashboard_users u
           SET throttled_until = pg_catalog.now() + dashboard_auth.get_setting_interval('lockout.account_backoff')
         WHERE u.id = count_failure.admin;
        -- Audited when a slowdown begins, not at every failure during it.
        IF was_throttled IS NULL OR was_throttled <= window_start THEN
            PERFORM dashboard_auth.audit('system', NULL, 'fluxbase_admin', 'admin.throttled', 'admin', count_failure.admin::text,
                pg_catalog.jsonb_build_object('failures', failures));
        END IF;
    END IF;
    RETURN until IS NOT NULL;
END
$$;

-- Clears an admin's locks and slowdown (an unlock, or a password set through a link).
CREATE FUNCTION dashboard_auth.clear_lockouts(admin uuid) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cleared integer;
BEGIN
    DELETE FROM dashboard_auth.address_lockouts l WHERE l.admin_id = clear_lockouts.admin AND l.locked_until > pg_catalog.now();
    GET DIAGNOSTICS cleared = ROW_COUNT;
    DELETE FROM dashboard_auth.address_lockouts l WHERE l.admin_id = clear_lockouts.admin;
    UPDATE dashboard_auth.dashboard_users u
       SET failed_attempts = 0, failure_window_from = NULL, throttled_until = NULL, updated_at = pg_catalog.now()
     WHERE u.id = clear_lockouts.admin;
    RETURN cleared;
END
$$;

-- The one definition of a session that is still good: not revoked, within its absolute
-- lifetime and the idle timeout, and its admin not disabled. check_session and the
-- metrics both read it.
CREATE VIEW dashboard_auth.live_sessions AS
SELECT s.id, s.admin_id, s.token_hash, s.created_at, s.last_seen_at, s.expires_at, u.email, u.name, u.role
  FROM dashboard_auth.sessions s
  JOIN dashboard_auth.dashboard_users u ON u.id = s.admin_id
 WHERE s.revoked_at IS NULL
   AND s.expires_at > pg_catalog.now()
   AND s.last_seen_at > pg_catalog.now() - dashboard_auth.get_setting_interval('session.idle_timeout')
   AND u.disabled_at IS NULL;

-- The admin behind a session token, or an error (28000) when the token is unknown,
-- revoked, expired (absolute or idle) or its admin is disabled. Marks the session seen.
CREATE FUNCTION dashboard_auth.check_session(token text) RETURNS dashboard_auth.session_admin
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- NULL: the session this connection signed in with (dashboard_auth.use_session).
    hash   bytea := CASE WHEN check_session.token IS NULL THEN dashboard_auth.bound_session_hash()
                         ELSE dashboard_auth.token_hash(check_session.token) END;
    found_session dashboard_auth.live_sessions;
    result dashboard_auth.session_admin;
BEGIN
    IF hash IS NULL THEN
        RAISE EXCEPTION 'no session: pass a session token, or sign this connection in with dashboard_auth.use_session'
              USING ERRCODE = 'invalid_authorization_specification', HINT = 'Sign in again.';
    END IF;
    SELECT * INTO found_session FROM dashboard_auth.live_sessions s WHERE s.token_hash = hash;
    IF found_session.id IS NULL THEN
        RAISE EXCEPTION 'the session is invalid or has expired'
              USING ERRCODE = 'invalid_authorization_specification', HINT = 'Sign in again.';
    END IF;
    -- Idle time is kept to the second without writing on every call.
    IF found_session.last_seen_at < pg_catalog.now() - interval '5 seconds' THEN
        UPDATE dashboard_auth.sessions s SET last_seen_at = pg_catalog.now() WHERE s.id = found_session.id;
    END IF;
    result := ROW(found_session.id, found_session.admin_id, found_session.email, found_session.name,
                  found_session.role, found_session.expires_at);
    RETURN result;
END
$$;

-- What each admin role may do: the one matrix. The functions enforce it
-- (require_capability, may) and get_session lists it, so that a page hides what the server
-- would refuse and never copies the rules. Reading (browse, read-only SQL, analytics, the
-- audit log, settings) needs no capability: every session may.
CREATE FUNCTION dashboard_auth.role_capabilities(role text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE role
        WHEN 'admin' THEN ARRAY['edit', 'export', 'impersonate', 'manage_users', 'manage_admins', 'change_settings', 'run_writes',
                                'manage_backends']
        WHEN 'viewer' THEN ARRAY['export']
        ELSE '{}'::text[] END
$$;

-- Whether a signed-in admin may do `capability`.
CREATE FUNCTION dashboard_auth.may(who dashboard_auth.session_admin, capability text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT capability = ANY (dashboard_auth.role_capabilities(who.role)) $$;

-- As check_session, and refuses (42501) a session whose role lacks `capability`: every
-- viewer is refused the same way, wherever it is.
CREATE FUNCTION dashboard_auth.require_capability(token text, capability text) RETURNS dashboard_auth.session_admin
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(token);
BEGIN
    IF NOT dashboard_auth.may(who, capability) THEN
        RAISE EXCEPTION 'viewers are read-only: this needs an admin'
              USING ERRCODE = 'insufficient_privilege',
                    DETAIL = pg_catalog.format('It needs the capability %s, which the role %s does not have.', capability, who.role);
    END IF;
    RETURN who;
END
$$;

-- Reads worth auditing are recorded once per session, kind and subject: the first page of
-- a table, the user list, one user's record, the audit log's search. A search as you
-- type writes one row, not one a keystroke. Rows go with their session.
CREATE TABLE dashboard_auth.session_reads (
    session_id    uuid NOT NULL REFERENCES dashboard_auth.sessions (id) ON DELETE CASCADE,
    action        text NOT NULL,
    subject       text NOT NULL DEFAULT '',
    first_read_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (session_id, action, subject)
);
COMMENT ON TABLE dashboard_auth.session_reads IS 'What each admin session has read, audited the first time';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.session_reads', '');
REVOKE ALL ON dashboard_auth.session_reads FROM PUBLIC;

-- Audits a read the first time this session makes it (action and subject), with the
-- details of that first time.
CREATE FUNCTION dashboard_auth.audit_read(who dashboard_auth.session_admin, action text, target_type text,
                                          target_id text, details jsonb DEFAULT '{}'::jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO dashboard_auth.session_reads (session_id, action, subject)
    VALUES (who.session_id, audit_read.action, coalesce(target_id, ''))
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), audit_read.action, target_type, target_id, details);
    END IF;
END
$$;

-- The one place a one-time link is built, for admins (setup, invite, reset) and app users
-- (user_invite, user_recovery): the dashboard's public address from the setting
-- fluxbase.public_url, which fluxbase serve and the operator commands set per
-- transaction, the page of the link's kind, and the token. NULL without an address (a
-- psql session): the caller then hands out the token alone.
CREATE FUNCTION dashboard_auth.one_time_link(kind text, token text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := pg_catalog.rtrim(pg_catalog.btrim(pg_catalog.current_setting('fluxbase.public_url', true)), '/');
    page text := CASE one_time_link.kind
                     WHEN 'setup' THEN '/setup'
                     WHEN 'invite' THEN '/invite'
                     WHEN 'reset' THEN '/reset'
                     WHEN 'user_invite' THEN '/accept-invite'
                     WHEN 'user_recovery' THEN '/recover' END;
BEGIN
    IF page IS NULL THEN
        RAISE EXCEPTION 'unknown kind of link %', coalesce(pg_catalog.quote_literal(kind), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(base, '') = '' THEN
        RETURN NULL;
    END IF;
    -- A link is handed to a person who clicks it: nothing but an http(s) address.
    IF base !~* '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'fluxbase.public_url must be an absolute http(s) address, not %', pg_catalog.quote_literal(base)
              USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an address such as https://admin.example.com.';
    END IF;
    RETURN base || page || '?token=' || token;
END
$$;

-- A one-time link. An invite or reset replaces that admin's unused links of the same
-- kind; setup links (admin NULL) live side by side, so that each copy of fluxbase serve
-- can print its own, and all of them die when setup completes.
CREATE FUNCTION dashboard_auth.issue_link(kind text, admin uuid, valid_for interval, who dashboard_auth.actor)
RETURNS TABLE (token text, link text, expires_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    link_id uuid;
BEGIN
    PERFORM dashboard_auth.check_link_validity(valid_for);
    UPDATE dashboard_auth.one_time_tokens t SET used_at = pg_catalog.now()
     WHERE t.admin_id = issue_link.admin AND t.kind = issue_link.kind AND t.used_at IS NULL;
    token := dashboard_auth.new_token('fbl');
    INSERT INTO dashboard_auth.one_time_tokens (kind, token_hash, admin_id, created_by, expires_at)
    VALUES (issue_link.kind, dashboard_auth.token_hash(token), issue_link.admin, who.actor, pg_catalog.now() + valid_for)
    RETURNING id, one_time_tokens.expires_at INTO link_id, expires_at;
    PERFORM dashboard_auth.audit_by(who, 'link.created', 'admin', issue_link.admin::text,
        pg_catalog.jsonb_build_object('kind', issue_link.kind, 'link_id', link_id, 'expires_at', expires_at));
    link := dashboard_auth.one_time_link(issue_link.kind, token);
    RETURN NEXT;
END
$$;

-- ---------------------------------------------------------------------------------
-- Shared admin management (called by the session-checked and the operator functions)
-- ---------------------------------------------------------------------------------

CREATE FUNCTION dashboard_auth.manage_create_admin(
    who dashboard_auth.actor, email text, name text, role text, password text, valid_for interval
) RETURNS TABLE (admin_id uuid, invite_token text, invite_link text, expires_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := dashboard_auth.normalize_email(manage_create_admin.email);
    problem    text;
BEGIN
    PERFORM dashboard_auth.check_role(manage_create_admin.role);
    IF manage_create_admin.password IS NOT NULL THEN
        problem := dashboard_auth.new_password_problem(manage_create_admin.password, normalized);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'password refused: %', problem USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    PERFORM dashboard_auth.lock_admin_set();
    IF EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users u WHERE pg_catalog.lower(u.email) = normalized) THEN
        RAISE EXCEPTION 'an admin with email % exists already', normalized
              USING ERRCODE = 'unique_violation', HINT = 'Reset that admin''s password instead.';
    END IF;
    INSERT INTO dashboard_auth.dashboard_users (email, name, role, password_hash, password_changed_at)
    VALUES (normalized, dashboard_auth.normalize_name(manage_create_admin.name), manage_create_admin.role,
            CASE WHEN manage_create_admin.password IS NOT NULL
                 THEN dashboard_auth.hash_password(manage_create_admin.password) END,
            CASE WHEN manage_create_admin.password IS NOT NULL THEN pg_catalog.now() END)
    RETURNING id INTO admin_id;
    PERFORM dashboard_auth.audit_by(who, 'admin.created', 'admin', admin_id::text,
        pg_catalog.jsonb_build_object('email', normalized, 'role', manage_create_admin.role,
                                      'with_password', manage_create_admin.password IS NOT NULL));
    IF manage_create_admin.password IS NULL THEN
        SELECT l.token, l.link, l.expires_at INTO invite_token, invite_link, expires_at
          FROM dashboard_auth.issue_link('invite', admin_id, valid_for, who) l;
    END IF;
    RETURN NEXT;
END
$$;

CREATE FUNCTION dashboard_auth.manage_set_role(who dashboard_auth.actor, target uuid, role text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_role text;
BEGIN
    PERFORM dashboard_auth.check_role(manage_set_role.role);
    PERFORM dashboard_auth.lock_admin_set();
    SELECT u.role INTO old_role FROM dashboard_auth.dashboard_users u WHERE u.id = target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no admin with id %', target USING ERRCODE = 'no_data_found';
    END IF;
    IF old_role = manage_set_role.role THEN
        RETURN;
    END IF;
    IF manage_set_role.role <> 'admin' THEN
        PERFORM dashboard_auth.guard_last_admin(target, 'demote');
    END IF;
    UPDATE dashboard_auth.dashboard_users u SET role = manage_set_role.role, updated_at = pg_catalog.now() WHERE u.id = target;
    PERFORM dashboard_auth.audit_by(who, 'admin.role_changed', 'admin', target::text,
        pg_catalog.jsonb_build_object('old', old_role, 'new', manage_set_role.role));
END
$$;

CREATE FUNCTION dashboard_auth.manage_set_disabled(who dashboard_auth.actor, target uuid, disabled boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_disabled boolean;
    revoked integer := 0;
BEGIN
    PERFORM dashboard_auth.lock_admin_set();
    SELECT u.disabled_at IS NOT NULL INTO was_disabled FROM dashboard_auth.dashboard_users u WHERE u.id = target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no admin with id %', target USING ERRCODE = 'no_data_found';
    END IF;
    IF was_disabled = disabled THEN
        RETURN;
    END IF;
    IF disabled THEN
        PERFORM dashboard_auth.guard_last_admin(target, 'disable');
        revoked := dashboard_auth.revoke_sessions(target, 'disabled');
    END IF;
    UPDATE dashboard_auth.dashboard_users u
       SET disabled_at = CASE WHEN disabled THEN pg_catalog.now() END, updated_at = pg_catalog.now()
     WHERE u.id = target;
    PERFORM dashboard_auth.audit_by(who, CASE WHEN disabled THEN 'admin.disabled' ELSE 'admin.enabled' END,
        'admin', target::text, pg_catalog.jsonb_build_object('sessions_revoked', revoked));
END
$$;

CREATE FUNCTION dashboard_auth.manage_delete_admin(who dashboard_auth.actor, target uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone dashboard_auth.dashboard_users;
BEGIN
    PERFORM dashboard_auth.lock_admin_set();
    PERFORM dashboard_auth.guard_last_admin(target, 'delete');
    DELETE FROM dashboard_auth.dashboard_users u WHERE u.id = target RETURNING * INTO gone;
    IF gone.id IS NULL THEN
        RAISE EXCEPTION 'no admin with id %', target USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM dashboard_auth.audit_by(who, 'admin.deleted', 'admin', target::text,
        pg_catalog.jsonb_build_object('email', gone.email, 'role', gone.role));
END
$$;

-- A reset link; the admin's sessions end at once, so a thief's session ends too.
CREATE FUNCTION dashboard_auth.manage_reset_password(who dashboard_auth.actor, target uuid, valid_for interval)
RETURNS TABLE (reset_token text, reset_link text, expires_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    revoked integer;
BEGIN
    PERFORM 1 FROM dashboard_auth.dashboard_users u WHERE u.id = target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no admin with id %', target USING ERRCODE = 'no_data_found';
    END IF;
    revoked := dashboard_auth.revoke_sessions(target, 'password_reset');
    SELECT l.token, l.link, l.expires_at INTO reset_token, reset_link, expires_at
      FROM dashboard_auth.issue_link('reset', target, valid_for, who) l;
    PERFORM dashboard_auth.audit_by(who, 'admin.password_reset', 'admin', target::text,
        pg_catalog.jsonb_build_object('sessions_revoked', revoked));
    RETURN NEXT;
END
$$;

-- Lifts every lock of an admin's account and its slowdown.
CREATE FUNCTION dashboard_auth.manage_unlock(who dashboard_auth.actor, target uuid) RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cleared integer;
BEGIN
    PERFORM 1 FROM dashboard_auth.dashboard_users u WHERE u.id = target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no admin with id %', coalesce(target::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    cleared := dashboard_auth.clear_lockouts(target);
    PERFORM dashboard_auth.audit_by(who, 'admin.unlocked', 'admin', target::text,
        pg_catalog.jsonb_build_object('locked_addresses', cleared));
    RETURN dashboard_auth.done('unlocked', 'The admin is unlocked.');
END
$$;

-- A new invite link for an admin who has not accepted yet; the older link stops working
-- (issue_link replaces an admin's unused links of the same kind).
CREATE FUNCTION dashboard_auth.manage_reissue_invite(who dashboard_auth.actor, target uuid, valid_for interval)
RETURNS TABLE (invite_token text, invite_link text, expires_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    account dashboard_auth.dashboard_users;
BEGIN
    PERFORM dashboard_auth.check_link_validity(valid_for);
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = target FOR UPDATE;
    IF account.id IS NULL THEN
        RAISE EXCEPTION 'no admin with id %', coalesce(target::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    IF account.password_hash IS NOT NULL THEN
        RAISE EXCEPTION '% has accepted the invite already', account.email
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Send a password reset link instead.';
    END IF;
    IF account.disabled_at IS NOT NULL THEN
        RAISE EXCEPTION '% is disabled: an invite link would not work', account.email
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Enable the admin first.';
    END IF;
    SELECT l.token, l.link, l.expires_at INTO invite_token, invite_link, expires_at
      FROM dashboard_auth.issue_link('invite', target, valid_for, who) l;
    PERFORM dashboard_auth.audit_by(who, 'admin.invite_reissued', 'admin', target::text,
        pg_catalog.jsonb_build_object('expires_at', expires_at));
    RETURN NEXT;
END
$$;

-- Refuses an admin action on one's own account that would skip the proof it needs
-- (the current password, a second factor): a stolen session must not take it over.
CREATE FUNCTION dashboard_auth.refuse_self(who dashboard_auth.session_admin, target uuid, instead text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF who.admin_id = target THEN
        RAISE EXCEPTION 'this is for other admins'' accounts, not your own'
              USING ERRCODE = 'invalid_parameter_value', HINT = instead;
    END IF;
END
$$;

-- Admins as the dashboard and operators see them: no secrets. 'locked' means that some
-- address is locked out of the account (locked_until: the last of those locks to end);
-- throttled_until is the account's slowdown, which never locks anyone out.
CREATE VIEW dashboard_auth.admin_overview AS
SELECT u.id AS admin_id, u.email, u.name, u.role,
       CASE WHEN u.disabled_at IS NOT NULL THEN 'disabled'
            WHEN u.password_hash IS NULL THEN 'invited'
            WHEN l.locked_until IS NOT NULL THEN 'locked'
            ELSE 'active' END AS status,
       l.locked_until, u.last_login_at, u.created_at,
       u.totp_enabled_at IS NOT NULL AS two_factor_enabled, u.totp_enabled_at AS two_factor_enabled_at,
       coalesce(l.locked_addresses, 0) AS locked_addresses,
       CASE WHEN u.throttled_until > pg_catalog.now() THEN u.throttled_until END AS throttled_until
  FROM dashboard_auth.dashboard_users u
  LEFT JOIN LATERAL (
      SELECT pg_catalog.max(a.locked_until) AS locked_until, pg_catalog.count(*)::int AS locked_addresses
        FROM dashboard_auth.address_lockouts a
       WHERE a.admin_id = u.id AND a.locked_until > pg_catalog.now()
      HAVING pg_catalog.count(*) > 0) l ON true;

-- The admin with this email, or an error (P0002).
CREATE FUNCTION dashboard_auth.admin_id_by_email(email text) RETURNS uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id uuid;
BEGIN
    SELECT u.id INTO found_id FROM dashboard_auth.dashboard_users u
     WHERE pg_catalog.lower(u.email) = dashboard_auth.normalize_email(admin_id_by_email.email);
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'no admin with email %', pg_catalog.lower(pg_catalog.btrim(admin_id_by_email.email))
              USING ERRCODE = 'no_data_found', HINT = 'List the admins with: fluxbase admin list-users';
    END IF;
    RETURN found_id;
END
$$;

-- ---------------------------------------------------------------------------------
-- Before a session: first-run setup, sign-in, one-time links (fluxbase_dashboard)
-- ---------------------------------------------------------------------------------

CREATE FUNCTION dashboard_auth.needs_setup() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT NOT EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users) $$;
COMMENT ON FUNCTION dashboard_auth.needs_setup() IS 'True while no admin exists: first-run setup is open';

CREATE FUNCTION dashboard_auth.create_setup_link(valid_for interval DEFAULT interval '24 hours')
RETURNS TABLE (token text, link text, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.lock_admin_set();
    IF EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users) THEN
        RAISE EXCEPTION 'setup is closed: an admin exists already'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Sign in, or have an operator run: fluxbase admin create-user --email ... --name ...';
    END IF;
    RETURN QUERY SELECT l.token, l.link, l.expires_at
                   FROM dashboard_auth.issue_link('setup', NULL, valid_for,
                            ROW('system', NULL, session_user::text)::dashboard_auth.actor) l;
END
$$;
COMMENT ON FUNCTION dashboard_auth.create_setup_link(interval) IS 'A one-time link to create the first admin; only while no admin exists';

CREATE FUNCTION dashboard_auth.complete_setup(
    setup_token text, email text, name text, password text,
    valid_for interval DEFAULT NULL
) RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The client, as fluxbase serve sets it per transaction (NULL from psql).
    client_ip    inet := dashboard_auth.request_ip();
    client_agent text := dashboard_auth.request_user_agent();
    link       dashboard_auth.one_time_tokens;
    normalized text;
    clean_name text;
    problem    text;
    new_admin  uuid;
    failure    text;
BEGIN
    PERFORM dashboard_auth.check_session_lifetime(valid_for);
    -- Two setups racing: the lock makes one wait, and it then finds the admin the other made.
    PERFORM dashboard_auth.lock_admin_set();
    SELECT * INTO link FROM dashboard_auth.one_time_tokens t
     WHERE t.token_hash = dashboard_auth.token_hash(setup_token) AND t.kind = 'setup' FOR UPDATE;
    failure := CASE WHEN EXISTS (SELECT 1 FROM dashboard_auth.dashboard_users) THEN 'already_set_up'
                    WHEN link.id IS NULL OR link.used_at IS NOT NULL OR link.expires_at <= pg_catalog.now() THEN 'invalid_link' END;
    IF failure IS NOT NULL THEN
        PERFORM dashboard_auth.audit('anonymous', NULL, pg_catalog.left(coalesce(complete_setup.email, ''), 254), 'link.redeem_failed',
            'link', link.id::text, pg_catalog.jsonb_build_object('kind', 'setup', 'reason', failure), client_ip,
            pg_catalog.left(client_agent, 500));
        RETURN dashboard_auth.refusal(failure,
                   CASE failure WHEN 'already_set_up' THEN 'An admin account exists already. Sign in instead.'
                        ELSE 'This setup link is invalid, expired or already used: ask whoever runs the dashboard for a new one.' END);
    END IF;
    BEGIN
        normalized := dashboard_auth.normalize_email(complete_setup.email);
        clean_name := dashboard_auth.normalize_name(complete_setup.name);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN dashboard_auth.refusal('invalid_input', SQLERRM);
    END;
    problem := dashboard_auth.new_password_problem(complete_setup.password, normalized);
    IF problem IS NOT NULL THEN
        RETURN dashboard_auth.refusal('weak_password', problem);
    END IF;
    INSERT INTO dashboard_auth.dashboard_users (email, name, role, password_hash, password_changed_at, last_login_at)
    VALUES (normalized, clean_name, 'admin', dashboard_auth.hash_password(complete_setup.password), pg_catalog.now(), pg_catalog.now())
    RETURNING id INTO new_admin;
    -- Every other setup link dies with this one.
    UPDATE dashboard_auth.one_time_tokens t SET used_at = pg_catalog.now() WHERE t.kind = 'setup' AND t.used_at IS NULL;
    PERFORM dashboard_auth.audit('admin', new_admin, normalized, 'admin.setup', 'admin', new_admin::text,
        pg_catalog.jsonb_build_object('link_id', link.id), client_ip, pg_catalog.left(client_agent, 500));
    PERFORM dashboard_auth.record_login(normalized, new_admin, client_ip, client_agent, true, 'ok', 'setup');
    RETURN dashboard_auth.issue_session(new_admin, client_ip, client_agent, valid_for);
END
$$;
COMMENT ON FUNCTION dashboard_auth.complete_setup(text, text, text, text, interval) IS 'Creates the first admin through a setup link and signs them in';

CREATE FUNCTION dashboard_auth.sign_in(
    email text, password text, valid_for interval DEFAULT NULL
) RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The client, as fluxbase serve sets it per transaction (NULL from psql).
    client_ip    inet := dashboard_auth.request_ip();
    client_agent text := dashboard_auth.request_user_agent();
    typed       text := pg_catalog.lower(pg_catalog.btrim(coalesce(sign_in.email, '')));
    account     dashboard_auth.dashboard_users;
    password_ok boolean;
    reason      text;
    ip_failures bigint;
    upgraded    text;
BEGIN
    PERFORM dashboard_auth.check_session_lifetime(valid_for);
    -- An address with too many recent failures is refused before any hashing.
    IF client_ip IS NOT NULL THEN
        SELECT pg_catalog.count(*) INTO ip_failures FROM dashboard_auth.login_attempts a
         WHERE a.ip = client_ip AND NOT a.succeeded AND a.reason NOT IN ('ip_rate_limited', 'second_factor_pending')
           AND a.attempted_at > pg_catalog.now() - dashboard_auth.get_setting_interval('lockout.window');
        IF ip_failures >= dashboard_auth.get_setting_int('lockout.ip_max_failures') THEN
            PERFORM dashboard_auth.record_login(typed, NULL, client_ip, client_agent, false, 'ip_rate_limited');
            RETURN dashboard_auth.refusal('rate_limited', 'Too many failed sign-ins from your address. Try again later.');
        END IF;
    END IF;

    -- No row lock: it would make attempts on a real account queue behind each other (a
    -- timing signal, and a way to hold up its owner's sign-in). The failure counter is
    -- one atomic UPDATE, and the hash upgrade below checks that the hash is unchanged.
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE pg_catalog.lower(u.email) = typed;
    -- Exactly one argon2 run on every path (against a dummy hash when there is no
    -- account or no password yet), so the answer's timing says nothing either.
    password_ok := dashboard_auth.verify_password(sign_in.password, account.password_hash);
    reason := CASE WHEN account.id IS NULL THEN 'unknown_email'
                   WHEN account.disabled_at IS NOT NULL THEN 'disabled'
                   WHEN dashboard_auth.address_locked(account.id, client_ip) THEN 'locked'
                   WHEN dashboard_auth.account_throttled(account.id, client_ip) THEN 'throttled'
                   WHEN account.password_hash IS NULL THEN 'no_password'
                   WHEN NOT password_ok THEN 'wrong_password'
                   ELSE 'ok' END;
    -- Only a checked password counts: refusals while locked or slowed down do not, so
    -- that they never make a lock or a slowdown last longer.
    IF reason = 'wrong_password' THEN
        PERFORM dashboard_auth.count_failure(account.id, client_ip);
    END IF;
    IF reason <> 'ok' THEN
        PERFORM dashboard_auth.record_login(typed, account.id, client_ip, client_agent, false, reason);
        -- One answer for every refusal: no way to tell which emails are admins.
        RETURN dashboard_auth.refusal('invalid_credentials', 'Invalid email or password.');
    END IF;

    IF dashboard_auth.password_needs_rehash(account.password_hash) THEN
        upgraded := dashboard_auth.hash_password(sign_in.password);
        -- Only if the hash is still the one just checked (no password change meanwhile).
        UPDATE dashboard_auth.dashboard_users u SET password_hash = upgraded, updated_at = pg_catalog.now()
         WHERE u.id = account.id AND u.password_hash = account.password_hash;
        PERFORM dashboard_auth.audit('system', NULL, 'fluxbase_admin', 'admin.password_rehashed', 'admin', account.id::text,
            '{}'::jsonb, client_ip, pg_catalog.left(client_agent, 500));
    END IF;
    -- With two-factor sign-in on, the password step gives no session: only a challenge
    -- for the code step, bound to this account and this password check.
    IF account.totp_enabled_at IS NOT NULL THEN
        RETURN dashboard_auth.issue_challenge(account.id, typed, client_ip, client_agent, valid_for);
    END IF;
    RETURN dashboard_auth.complete_sign_in(account.id, typed, client_ip, client_agent, 'password', valid_for);
END
$$;
COMMENT ON FUNCTION dashboard_auth.sign_in(text, text, interval) IS 'Signs an admin in; failures are returned (and recorded), never raised';

-- What a one-time link is for, so a page can greet its holder; no rows when the link
-- is invalid, expired or used.
CREATE FUNCTION dashboard_auth.get_link(link_token text)
RETURNS TABLE (kind text, email text, name text, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.kind, u.email, u.name, t.expires_at
      FROM dashboard_auth.one_time_tokens t
      LEFT JOIN dashboard_auth.dashboard_users u ON u.id = t.admin_id
     WHERE t.token_hash = dashboard_auth.token_hash(link_token)
       AND t.used_at IS NULL AND t.expires_at > pg_catalog.now()
       AND (t.admin_id IS NULL OR u.disabled_at IS NULL)
$$;

-- Sets a password through an invite or reset link, and signs the admin in.
CREATE FUNCTION dashboard_auth.redeem_link(
    link_token text, new_password text,
    valid_for interval DEFAULT NULL
) RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The client, as fluxbase serve sets it per transaction (NULL from psql).
    client_ip    inet := dashboard_auth.request_ip();
    client_agent text := dashboard_auth.request_user_agent();
    link    dashboard_auth.one_time_tokens;
    account dashboard_auth.dashboard_users;
    problem text;
    revoked integer;
BEGIN
    PERFORM dashboard_auth.check_session_lifetime(valid_for);
    SELECT * INTO link FROM dashboard_auth.one_time_tokens t
     WHERE t.token_hash = dashboard_auth.token_hash(link_token) AND t.kind IN ('invite', 'reset') FOR UPDATE;
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = link.admin_id FOR UPDATE;
    IF link.id IS NULL OR link.used_at IS NOT NULL OR link.expires_at <= pg_catalog.now()
       OR account.id IS NULL OR account.disabled_at IS NOT NULL THEN
        PERFORM dashboard_auth.audit('anonymous', account.id, coalesce(account.email, 'unknown'), 'link.redeem_failed',
            'link', link.id::text,
            pg_catalog.jsonb_build_object('kind', link.kind, 'reason',
                CASE WHEN link.id IS NULL THEN 'unknown' WHEN link.used_at IS NOT NULL THEN 'used'
                     WHEN link.expires_at <= pg_catalog.now() THEN 'expired' ELSE 'disabled' END),
            client_ip, pg_catalog.left(client_agent, 500));
        RETURN dashboard_auth.refusal('invalid_link', 'This link is invalid, expired or already used. Ask for a new one.');
    END IF;
    problem := dashboard_auth.new_password_problem(new_password, account.email);
    IF problem IS NOT NULL THEN
        RETURN dashboard_auth.refusal('weak_password', problem);
    END IF;
    UPDATE dashboard_auth.dashboard_users u
       SET password_hash = dashboard_auth.hash_password(new_password), password_changed_at = pg_catalog.now(),
           last_login_at = pg_catalog.now(), updated_at = pg_catalog.now()
     WHERE u.id = account.id;
    -- The link proves the mailbox: every lock and the slowdown end with the new password.
    PERFORM dashboard_auth.clear_lockouts(account.id);
    PERFORM dashboard_auth.expire_links(account.id);
    revoked := dashboard_auth.revoke_sessions(account.id, 'password_reset');
    PERFORM dashboard_auth.audit('admin', account.id, account.email, 'link.redeemed', 'link', link.id::text,
        pg_catalog.jsonb_build_object('kind', link.kind, 'sessions_revoked', revoked),
        client_ip, pg_catalog.left(client_agent, 500));
    -- A link proves the mailbox (or the terminal), not the device: with 2FA on, the
    -- new password leads to the code step, like any sign-in.
    IF account.totp_enabled_at IS NOT NULL THEN
        RETURN dashboard_auth.issue_challenge(account.id, account.email, client_ip, client_agent, valid_for);
    END IF;
    RETURN dashboard_auth.complete_sign_in(account.id, account.email, client_ip, client_agent, link.kind, valid_for);
END
$$;
COMMENT ON FUNCTION dashboard_auth.redeem_link(text, text, interval) IS 'Sets a password through an invite or reset link and signs the admin in';

-- ---------------------------------------------------------------------------------
-- With a session (fluxbase_dashboard): the first argument is the session token
-- ---------------------------------------------------------------------------------

CREATE TYPE dashboard_auth.session_info AS (
    session_id   uuid,
    admin_id     uuid,
    email        text,
    name         text,
    role         text,
    expires_at   timestamptz,
    -- What this session may do (dashboard_auth.role_capabilities): edit, export,
    -- impersonate, manage_users, manage_admins, change_settings, run_writes, manage_backends.
    capabilities text[]
);

-- Who this session is, and what it may do.
CREATE FUNCTION dashboard_auth.get_session(session_token text DEFAULT NULL) RETURNS dashboard_auth.session_info
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(w.session_id, w.admin_id, w.email, w.name, w.role, w.expires_at,
               dashboard_auth.role_capabilities(w.role))::dashboard_auth.session_info
      FROM dashboard_auth.check_session(session_token) w
$$;

-- Signs this connection in with a session, in a statement of its own, so that later
-- statements pass NULL for the token and it never sits in their text, where functions
-- they run could read it (current_query(), pg_stat_activity). The session is kept in the
-- backend's memory, which no SQL can read, until end_session() or the connection ends;
-- each call still checks it, so an expired or revoked session stops working at once.
--   SELECT * FROM dashboard_auth.use_session('fbs_...');
--   SELECT * FROM fluxbase_admin.list_tables(NULL);
CREATE FUNCTION dashboard_auth.use_session(session_token text) RETURNS dashboard_auth.session_admin
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(coalesce(session_token, ''));
BEGIN
    PERFORM dashboard_auth.bind_session_hash(dashboard_auth.token_hash(session_token));
    RETURN who;
END
$$;

-- Forgets the session this connection signed in with (it stays valid elsewhere: sign out
-- with dashboard_auth.sign_out(NULL) to end it). True when one was bound.
CREATE FUNCTION dashboard_auth.end_session() RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.unbind_session() $$;

CREATE FUNCTION dashboard_auth.sign_out(session_token text DEFAULT NULL) RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
BEGIN
    UPDATE dashboard_auth.sessions s SET revoked_at = pg_catalog.now(), revoked_reason = 'logout' WHERE s.id = who.session_id;
    IF session_token IS NULL THEN
        PERFORM dashboard_auth.unbind_session();
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.logout', 'session', who.session_id::text);
    RETURN dashboard_auth.done('signed_out', 'You are signed out.');
END
$$;

CREATE FUNCTION dashboard_auth.sign_out_others(session_token text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    revoked integer;
BEGIN
    revoked := dashboard_auth.revoke_sessions(who.admin_id, 'logout_others', who.session_id);
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.logout_others', 'admin', who.admin_id::text,
        pg_catalog.jsonb_build_object('sessions_revoked', revoked));
    RETURN revoked;
END
$$;
COMMENT ON FUNCTION dashboard_auth.sign_out_others(text) IS 'Ends every other session of the signed-in admin; returns how many';

-- The signed-in admin's own sessions that are still good, the newest seen first.
CREATE FUNCTION dashboard_auth.list_sessions(session_token text DEFAULT NULL)
RETURNS TABLE (session_id uuid, created_at timestamptz, last_seen_at timestamptz, idle_expires_at timestamptz,
               expires_at timestamptz, ip inet, user_agent text, current boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
BEGIN
    RETURN QUERY
    SELECT s.id, s.created_at, s.last_seen_at,
           LEAST(s.last_seen_at + dashboard_auth.get_setting_interval('session.idle_timeout'), s.expires_at),
           s.expires_at, s.ip, s.user_agent, s.id = who.session_id
      FROM dashboard_auth.live_sessions l
      JOIN dashboard_auth.sessions s ON s.id = l.id
     WHERE l.admin_id = who.admin_id
     ORDER BY s.id = who.session_id DESC, s.last_seen_at DESC, s.id;
END
$$;
COMMENT ON FUNCTION dashboard_auth.list_sessions(text) IS 'The signed-in admin''s own live sessions: when made and last seen, address, user agent, and which is this one';

-- Ends one of the signed-in admin's own sessions (this one too: that is signing out).
-- Another admin's session is refused as an unknown one is: no way to learn its id exists.
CREATE FUNCTION dashboard_auth.revoke_session(session_token text, session_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who   dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    ended dashboard_auth.sessions;
BEGIN
    UPDATE dashboard_auth.sessions s SET revoked_at = pg_catalog.now(), revoked_reason = 'revoked_by_owner'
     WHERE s.id = revoke_session.session_id AND s.admin_id = who.admin_id
       AND s.id IN (SELECT l.id FROM dashboard_auth.live_sessions l)
    RETURNING * INTO ended;
    IF ended.id IS NULL THEN
        RAISE EXCEPTION 'you have no live session with id %', coalesce(revoke_session.session_id::text, 'NULL')
              USING ERRCODE = 'no_data_found', HINT = 'List your sessions with dashboard_auth.list_sessions.';
    END IF;
    IF ended.id = who.session_id AND session_token IS NULL THEN
        PERFORM dashboard_auth.unbind_session();
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.session_revoked', 'session', ended.id::text,
        pg_catalog.jsonb_build_object('current', ended.id = who.session_id, 'ip', ended.ip));
    RETURN dashboard_auth.done('revoked', CASE WHEN ended.id = who.session_id THEN 'This session is ended: you are signed out.'
                                               ELSE 'The session is ended.' END);
END
$$;
COMMENT ON FUNCTION dashboard_auth.revoke_session(text, uuid) IS 'Ends one of the signed-in admin''s own sessions';

-- Whether a session is still good, without counting as activity: an open page or event
-- stream asks it, so that it does not keep an idle session alive. For a session that
-- ended it says why (revoked, with revoked_reason; idle; expired; disabled; unknown)
-- instead of raising. checked_at is the server's clock, for a page's countdown.
CREATE FUNCTION dashboard_auth.get_session_health(session_token text DEFAULT NULL)
RETURNS TABLE (valid boolean, reason text, revoked_reason text, idle_expires_at timestamptz,
               expires_at timestamptz, checked_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hash        bytea := CASE WHEN session_token IS NULL THEN dashboard_auth.bound_session_hash()
                              ELSE dashboard_auth.token_hash(session_token) END;
    session_row dashboard_auth.sessions;
    account     dashboard_auth.dashboard_users;
BEGIN
    SELECT * INTO session_row FROM dashboard_auth.sessions s WHERE s.token_hash = hash;
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = session_row.admin_id;
    checked_at := pg_catalog.now();
    IF session_row.id IS NOT NULL THEN
        expires_at := session_row.expires_at;
        idle_expires_at := LEAST(session_row.last_seen_at + dashboard_auth.get_setting_interval('session.idle_timeout'),
                                 session_row.expires_at);
        revoked_reason := session_row.revoked_reason;
    END IF;
    -- The order of check_session's view (live_sessions): the first reason that applies.
    reason := CASE WHEN session_row.id IS NULL THEN 'unknown'
                   WHEN session_row.revoked_at IS NOT NULL THEN 'revoked'
                   WHEN account.disabled_at IS NOT NULL THEN 'disabled'
                   WHEN session_row.expires_at <= checked_at THEN 'expired'
                   WHEN session_row.last_seen_at + dashboard_auth.get_setting_interval('session.idle_timeout') <= checked_at THEN 'idle'
                   ELSE 'active' END;
    valid := reason = 'active';
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION dashboard_auth.get_session_health(text) IS 'Whether a session is still good and until when, or why it ended; does not count as activity';

-- Changing one's own password needs the current one and ends the other sessions.
-- Viewers may change their own password: it changes nothing but their account.
CREATE FUNCTION dashboard_auth.change_password(session_token text, current_password text, new_password text)
RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    account dashboard_auth.dashboard_users;
    problem text;
    revoked integer;
BEGIN
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = who.admin_id;
    -- A stolen session must not become a way to guess the password: wrong guesses count
    -- toward the lockout of the address, and a lockout ends every session of the account.
    IF dashboard_auth.address_locked(who.admin_id, dashboard_auth.request_ip()) THEN
        RETURN ROW(false, 'locked', 'Too many wrong passwords. Try again later.')::dashboard_auth.outcome;
    END IF;
    IF NOT dashboard_auth.verify_password(current_password, account.password_hash) THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.password_change_failed', 'admin',
            who.admin_id::text, '{"reason": "wrong_password"}'::jsonb);
        IF dashboard_auth.count_failure(who.admin_id, dashboard_auth.request_ip()) THEN
            PERFORM dashboard_auth.revoke_sessions(who.admin_id, 'locked');
        END IF;
        RETURN ROW(false, 'wrong_password', 'The current password is wrong.')::dashboard_auth.outcome;
    END IF;
    problem := dashboard_auth.new_password_problem(new_password, who.email);
    IF problem IS NOT NULL THEN
        RETURN ROW(false, 'weak_password', problem)::dashboard_auth.outcome;
    END IF;
    UPDATE dashboard_auth.dashboard_users u
       SET password_hash = dashboard_auth.hash_password(new_password), password_changed_at = pg_catalog.now(),
           updated_at = pg_catalog.now()
     WHERE u.id = who.admin_id;
    PERFORM dashboard_auth.expire_links(who.admin_id);
    revoked := dashboard_auth.revoke_sessions(who.admin_id, 'password_changed', who.session_id);
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.password_changed', 'admin',
        who.admin_id::text, pg_catalog.jsonb_build_object('sessions_revoked', revoked));
    RETURN ROW(true, 'ok', 'Password changed. Your other sessions have been signed out.')::dashboard_auth.outcome;
END
$$;

CREATE FUNCTION dashboard_auth.list_admins(session_token text DEFAULT NULL)
RETURNS SETOF dashboard_auth.admin_overview
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY SELECT * FROM dashboard_auth.admin_overview o ORDER BY o.created_at, o.email;
END
$$;

CREATE FUNCTION dashboard_auth.invite_admin(
    session_token text, email text, name text, role text DEFAULT 'admin', valid_for interval DEFAULT interval '24 hours'
) RETURNS TABLE (admin_id uuid, invite_token text, invite_link text, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'manage_admins');
BEGIN
    RETURN QUERY SELECT * FROM dashboard_auth.manage_create_admin(
        dashboard_auth.session_actor(who), invite_admin.email, invite_admin.name, invite_admin.role, NULL, valid_for);
END
$$;
COMMENT ON FUNCTION dashboard_auth.invite_admin(text, text, text, text, interval) IS 'Invites an admin or viewer; returns the one-time link''s token, and the link when fluxbase.public_url is set';

CREATE FUNCTION dashboard_auth.set_admin_role(session_token text, admin_id uuid, role text) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_set_role(dashboard_auth.session_actor(dashboard_auth.require_capability(session_token, 'manage_admins')), admin_id, role); SELECT dashboard_auth.done('role_changed', 'The admin''s role is changed.') $$;

CREATE FUNCTION dashboard_auth.disable_admin(session_token text, admin_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_set_disabled(dashboard_auth.session_actor(dashboard_auth.require_capability(session_token, 'manage_admins')), admin_id, true); SELECT dashboard_auth.done('disabled', 'The admin is disabled and signed out.') $$;

CREATE FUNCTION dashboard_auth.enable_admin(session_token text, admin_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_set_disabled(dashboard_auth.session_actor(dashboard_auth.require_capability(session_token, 'manage_admins')), admin_id, false); SELECT dashboard_auth.done('enabled', 'The admin is enabled.') $$;

CREATE FUNCTION dashboard_auth.delete_admin(session_token text, admin_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_delete_admin(dashboard_auth.session_actor(dashboard_auth.require_capability(session_token, 'manage_admins')), admin_id); SELECT dashboard_auth.done('deleted', 'The admin is deleted.') $$;

CREATE FUNCTION dashboard_auth.unlock_admin(session_token text, admin_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_unlock(dashboard_auth.session_actor(dashboard_auth.require_capability(session_token, 'manage_admins')), admin_id) $$;
COMMENT ON FUNCTION dashboard_auth.unlock_admin(text, uuid) IS 'Lifts every lock of an admin''s account and its slowdown';

-- A reset link for another admin; their sessions end at once. Not for one's own account:
-- that needs the current password (change_password), or a stolen session could take it.
CREATE FUNCTION dashboard_auth.reset_admin_password(session_token text, admin_id uuid,
                                                    valid_for interval DEFAULT interval '24 hours')
RETURNS TABLE (reset_token text, reset_link text, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'manage_admins');
BEGIN
    PERFORM dashboard_auth.refuse_self(who, reset_admin_password.admin_id,
        'Change your own password with dashboard_auth.change_password.');
    RETURN QUERY SELECT r.reset_token, r.reset_link, r.expires_at
                   FROM dashboard_auth.manage_reset_password(dashboard_auth.session_actor(who),
                            reset_admin_password.admin_id, valid_for) r;
END
$$;
COMMENT ON FUNCTION dashboard_auth.reset_admin_password(text, uuid, interval) IS 'Ends another admin''s sessions and returns a one-time reset link''s token, and the link when fluxbase.public_url is set';

CREATE FUNCTION dashboard_auth.reissue_invite(session_token text, admin_id uuid,
                                              valid_for interval DEFAULT interval '24 hours')
RETURNS TABLE (invite_token text, invite_link text, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'manage_admins');
BEGIN
    RETURN QUERY SELECT r.invite_token, r.invite_link, r.expires_at
                   FROM dashboard_auth.manage_reissue_invite(dashboard_auth.session_actor(who),
                            reissue_invite.admin_id, valid_for) r;
END
$$;
COMMENT ON FUNCTION dashboard_auth.reissue_invite(text, uuid, interval) IS 'A new invite link for an admin who has not accepted yet; the old link stops working';

-- Every setting with its value and what a page needs to type its input: kind
-- (duration, integer, roles, role), the least and greatest value as written, the allowed
-- values in words, and the unit.
CREATE FUNCTION dashboard_auth.list_settings(session_token text DEFAULT NULL)
RETURNS TABLE (key text, value text, default_value text, is_default boolean, description text,
               changed_by text, changed_at timestamptz, kind text, min_value text, max_value text,
               allowed text, unit text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY
    SELECT d.key,
           dashboard_auth.format_setting(d.key, coalesce(s.value, d.default_value)),
           dashboard_auth.format_setting(d.key, d.default_value),
           s.key IS NULL,
           d.description,
           s.updated_by,
           s.updated_at,
           d.kind, d.min_value, d.max_value, d.allowed, d.unit
      FROM dashboard_auth.setting_definitions() d
      LEFT JOIN dashboard_auth.settings s ON s.key = d.key
     ORDER BY d.key;
END
$$;

-- Sets a setting (validated; the reason comes back when it is refused). A value equal to
-- the default removes the override, so that only overrides are ever stored.
CREATE FUNCTION dashboard_auth.set_setting(session_token text, setting_key text, new_value text)
RETURNS TABLE (key text, value text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who        dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'change_settings');
    parsed     jsonb := dashboard_auth.parse_setting(setting_key, new_value);
    old_value  jsonb := dashboard_auth.get_setting(setting_key);
    default_of jsonb;
BEGIN
    SELECT d.default_value INTO default_of FROM dashboard_auth.setting_definitions() d WHERE d.key = setting_key;
    IF parsed = default_of THEN
        DELETE FROM dashboard_auth.settings s WHERE s.key = setting_key;
    ELSE
        INSERT INTO dashboard_auth.settings AS s (key, value, updated_by) VALUES (setting_key, parsed, who.email)
        ON CONFLICT ON CONSTRAINT settings_pkey
        DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.now(), updated_by = EXCLUDED.updated_by;
    END IF;
    IF setting_key IN ('runner.role', 'users.extra_roles') THEN
        -- Every data login must still be able to switch to these roles, and no more.
        PERFORM fluxbase_admin.check_data_logins();
    END IF;
    IF parsed IS DISTINCT FROM old_value THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'settings.changed', 'setting', setting_key,
            pg_catalog.jsonb_build_object('old', dashboard_auth.format_setting(setting_key, old_value),
                                          'new', dashboard_auth.format_setting(setting_key, parsed)));
    END IF;
    key := setting_key;
    value := dashboard_auth.format_setting(setting_key, parsed);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION dashboard_auth.set_setting(text, text, text) IS 'Changes a setting; an invalid value is refused with the reason (22023)';

CREATE FUNCTION dashboard_auth.reset_setting(session_token text, setting_key text)
RETURNS TABLE (key text, value text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM dashboard_auth.set_setting(session_token, setting_key,
        (SELECT dashboard_auth.format_setting(d.key, d.default_value)
           FROM dashboard_auth.setting_definitions() d WHERE d.key = setting_key))
$$;

-- ---------------------------------------------------------------------------------
-- Break-glass commands (fluxbase_operator or a superuser), audited with the database role
-- ---------------------------------------------------------------------------------

CREATE FUNCTION dashboard_auth.operator_create_admin(
    email text, name text, role text DEFAULT 'admin', password text DEFAULT NULL,
    valid_for interval DEFAULT interval '24 hours'
) RETURNS TABLE (admin_id uuid, invite_token text, invite_link text, expires_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM dashboard_auth.manage_create_admin(dashboard_auth.operator_actor(), email, name, role, password, valid_for)
$$;
COMMENT ON FUNCTION dashboard_auth.operator_create_admin(text, text, text, text, interval) IS 'Creates an admin; without a password, returns a one-time invite link''s token, and the link when fluxbase.public_url is set';

CREATE FUNCTION dashboard_auth.operator_reset_admin_password(email text, valid_for interval DEFAULT interval '24 hours')
RETURNS TABLE (admin_id uuid, reset_token text, reset_link text, expires_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT target, r.reset_token, r.reset_link, r.expires_at
      FROM dashboard_auth.admin_id_by_email(email) target,
           dashboard_auth.manage_reset_password(dashboard_auth.operator_actor(), target, valid_for) r
$$;
COMMENT ON FUNCTION dashboard_auth.operator_reset_admin_password(text, interval) IS 'Ends the admin''s sessions and returns a one-time reset link''s token, and the link when fluxbase.public_url is set';

CREATE FUNCTION dashboard_auth.operator_list_admins() RETURNS SETOF dashboard_auth.admin_overview
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM dashboard_auth.admin_overview o ORDER BY o.created_at, o.email $$;

CREATE FUNCTION dashboard_auth.operator_unlock_admin(email text) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_unlock(dashboard_auth.operator_actor(), dashboard_auth.admin_id_by_email(email)) $$;

CREATE FUNCTION dashboard_auth.operator_disable_admin(email text) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_set_disabled(dashboard_auth.operator_actor(), dashboard_auth.admin_id_by_email(email), true); SELECT dashboard_auth.done('disabled', 'The admin is disabled and signed out.') $$;

CREATE FUNCTION dashboard_auth.operator_enable_admin(email text) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_set_disabled(dashboard_auth.operator_actor(), dashboard_auth.admin_id_by_email(email), false); SELECT dashboard_auth.done('enabled', 'The admin is enabled.') $$;

CREATE FUNCTION dashboard_auth.operator_delete_admin(email text) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_delete_admin(dashboard_auth.operator_actor(), dashboard_auth.admin_id_by_email(email)); SELECT dashboard_auth.done('deleted', 'The admin is deleted.') $$;

-- ---------------------------------------------------------------------------------
-- Who may call what
-- ---------------------------------------------------------------------------------

GRANT EXECUTE ON FUNCTION
    dashboard_auth.needs_setup(),
    dashboard_auth.create_setup_link(interval),
    dashboard_auth.complete_setup(text, text, text, text, interval),
    dashboard_auth.sign_in(text, text, interval),
    dashboard_auth.get_link(text),
    dashboard_auth.redeem_link(text, text, interval),
    dashboard_auth.get_session(text),
    dashboard_auth.use_session(text),
    dashboard_auth.end_session(),
    dashboard_auth.sign_out(text),
    dashboard_auth.sign_out_others(text),
    dashboard_auth.list_sessions(text),
    dashboard_auth.revoke_session(text, uuid),
    dashboard_auth.get_session_health(text),
    dashboard_auth.change_password(text, text, text),
    dashboard_auth.list_admins(text),
    dashboard_auth.invite_admin(text, text, text, text, interval),
    dashboard_auth.set_admin_role(text, uuid, text),
    dashboard_auth.disable_admin(text, uuid),
    dashboard_auth.enable_admin(text, uuid),
    dashboard_auth.delete_admin(text, uuid),
    dashboard_auth.unlock_admin(text, uuid),
    dashboard_auth.reset_admin_password(text, uuid, interval),
    dashboard_auth.reissue_invite(text, uuid, interval),
    dashboard_auth.list_settings(text),
    dashboard_auth.set_setting(text, text, text),
    dashboard_auth.reset_setting(text, text)
TO fluxbase_dashboard;

GRANT EXECUTE ON FUNCTION
    dashboard_auth.operator_create_admin(text, text, text, text, interval),
    dashboard_auth.operator_reset_admin_password(text, interval),
    dashboard_auth.operator_list_admins(),
    dashboard_auth.operator_unlock_admin(text),
    dashboard_auth.operator_disable_admin(text),
    dashboard_auth.operator_enable_admin(text),
    dashboard_auth.operator_delete_admin(text)
TO fluxbase_operator;
