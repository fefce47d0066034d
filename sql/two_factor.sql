-- Two-factor sign-in for admins: enrolment with confirmation, a sign-in bound to its
-- second step, replay refusal, and single-use recovery codes. The TOTP arithmetic and
-- the sealing of secrets are Rust (extension/src/two_factor.rs).

CREATE TABLE dashboard_auth.recovery_codes (
    id         uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    admin_id   uuid NOT NULL REFERENCES dashboard_auth.dashboard_users (id) ON DELETE CASCADE,
    code_hash  text NOT NULL,  -- argon2id, like a password
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    used_at    timestamptz
);
CREATE INDEX recovery_codes_admin ON dashboard_auth.recovery_codes (admin_id) WHERE used_at IS NULL;
COMMENT ON TABLE dashboard_auth.recovery_codes IS 'Single-use two-factor recovery codes, stored as argon2id hashes';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.recovery_codes', '');

-- The pending second step of a sign-in: made by a correct password, for that account only.
CREATE TABLE dashboard_auth.login_challenges (
    id               uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    admin_id         uuid NOT NULL REFERENCES dashboard_auth.dashboard_users (id) ON DELETE CASCADE,
    token_hash       bytea NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz,
    session_lifetime interval,
    ip               inet,
    user_agent       text
);
COMMENT ON TABLE dashboard_auth.login_challenges IS 'Sign-ins waiting for their second factor; only a hash of the token is kept';
SELECT pg_catalog.pg_extension_config_dump('dashboard_auth.login_challenges', '');

REVOKE ALL ON dashboard_auth.recovery_codes, dashboard_auth.login_challenges FROM PUBLIC;

-- An outcome that may hand out recovery codes (shown once, never stored in the clear).
CREATE TYPE dashboard_auth.recovery_codes_outcome AS (
    ok             boolean,
    code           text,
    message        text,
    recovery_codes text[]
);

-- ---------------------------------------------------------------------------------
-- Internal helpers
-- ---------------------------------------------------------------------------------

-- After a correct password with 2FA on: a challenge valid 5 minutes, and no session.
CREATE FUNCTION dashboard_auth.issue_challenge(admin uuid, typed_email text, ip inet, user_agent text, lifetime interval)
RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token  text := dashboard_auth.new_token('fbc');
    result dashboard_auth.login_result;
BEGIN
    INSERT INTO dashboard_auth.login_challenges (admin_id, token_hash, expires_at, session_lifetime, ip, user_agent)
    VALUES (issue_challenge.admin, dashboard_auth.token_hash(token), pg_catalog.now() + interval '5 minutes',
            lifetime, issue_challenge.ip, pg_catalog.left(issue_challenge.user_agent, 500));
    PERFORM dashboard_auth.record_login(typed_email, issue_challenge.admin, issue_challenge.ip, issue_challenge.user_agent,
                                        false, 'second_factor_pending');
    result := dashboard_auth.refusal('second_factor_required', 'Enter the code from your authenticator app, or a recovery code.');
    result.challenge_token := token;
    RETURN result;
END
$$;

-- Ten new recovery codes for an admin, replacing the old ones; returned once, stored hashed.
CREATE FUNCTION dashboard_auth.replace_recovery_codes(admin uuid) RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    codes text[] := '{}';
    code  text;
BEGIN
    DELETE FROM dashboard_auth.recovery_codes r WHERE r.admin_id = replace_recovery_codes.admin;
    FOR i IN 1 .. 10 LOOP
        code := dashboard_auth.new_recovery_code();
        codes := codes || code;
        INSERT INTO dashboard_auth.recovery_codes (admin_id, code_hash)
        VALUES (replace_recovery_codes.admin, dashboard_auth.hash_password(code));
    END LOOP;
    RETURN codes;
END
$$;

-- Checks and spends a second factor: a TOTP code (6 digits, its step newer than the last
-- accepted one) or, when allowed, a recovery code. Returns 'totp', 'recovery_code' or NULL.
CREATE FUNCTION dashboard_auth.spend_second_factor(admin uuid, code text, allow_recovery boolean)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    account dashboard_auth.dashboard_users;
    step    bigint;
    spare   dashboard_auth.recovery_codes;
    left_over bigint;
    typed   text := pg_catalog.lower(pg_catalog.regexp_replace(coalesce(code, ''), '\s', '', 'g'));
BEGIN
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = spend_second_factor.admin;
    IF account.totp_secret IS NULL THEN
        RETURN NULL;
    END IF;
    IF typed ~ '^[0-9]{6}$' THEN
        step := dashboard_auth.totp_verify(account.totp_secret, account.id, typed, account.totp_last_step);
        -- Atomic: of two requests with the same code, only one moves the step on.
        UPDATE dashboard_auth.dashboard_users u SET totp_last_step = step
         WHERE u.id = account.id AND step IS NOT NULL AND (u.totp_last_step IS NULL OR u.totp_last_step < step);
        RETURN CASE WHEN FOUND THEN 'totp' END;
    END IF;
    IF NOT allow_recovery OR typed !~ '^[a-z0-9]{5}-[a-z0-9]{5}$' THEN
        RETURN NULL;
    END IF;
    FOR spare IN SELECT * FROM dashboard_auth.recovery_codes r
                  WHERE r.admin_id = account.id AND r.used_at IS NULL FOR UPDATE LOOP
        IF dashboard_auth.verify_password(typed, spare.code_hash) THEN
            UPDATE dashboard_auth.recovery_codes r SET used_at = pg_catalog.now() WHERE r.id = spare.id;
            SELECT pg_catalog.count(*) INTO left_over FROM dashboard_auth.recovery_codes r
             WHERE r.admin_id = account.id AND r.used_at IS NULL;
            PERFORM dashboard_auth.audit('admin', account.id, account.email, 'admin.recovery_code_used', 'admin',
                account.id::text, pg_catalog.jsonb_build_object('remaining', left_over),
                dashboard_auth.request_ip(), dashboard_auth.request_user_agent());
            RETURN 'recovery_code';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- A wrong code or password from a signed-in admin: counted toward the lockout of the
-- request's address (and a lockout ends the admin's sessions), and audited.
CREATE FUNCTION dashboard_auth.refuse_factor(who dashboard_auth.session_admin, action text, reason text)
RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), action, 'admin', who.admin_id::text,
        pg_catalog.jsonb_build_object('reason', reason));
    IF dashboard_auth.count_failure(who.admin_id, dashboard_auth.request_ip()) THEN
        PERFORM dashboard_auth.revoke_sessions(who.admin_id, 'locked');
    END IF;
    RETURN ROW(false, reason, CASE reason WHEN 'wrong_password' THEN 'The password is wrong.'
                                          ELSE 'That code is not valid.' END)::dashboard_auth.outcome;
END
$$;

-- ---------------------------------------------------------------------------------
-- Before a session: the second step of a sign-in (fluxbase_dashboard)
-- ---------------------------------------------------------------------------------

CREATE FUNCTION dashboard_auth.sign_in_second_factor(
    challenge_token text, code text
) RETURNS dashboard_auth.login_result
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- The client, as fluxbase serve sets it per transaction (NULL from psql).
    client_ip    inet := dashboard_auth.request_ip();
    client_agent text := dashboard_auth.request_user_agent();
    challenge dashboard_auth.login_challenges;
    account   dashboard_auth.dashboard_users;
    via       text;
BEGIN
    SELECT * INTO challenge FROM dashboard_auth.login_challenges c
     WHERE c.token_hash = dashboard_auth.token_hash(challenge_token) FOR UPDATE;
    -- Locked: concurrent code steps of one account take turns, so each sees the failures
    -- counted before it and none slips past a lockout.
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = challenge.admin_id FOR UPDATE;
    IF challenge.id IS NULL OR challenge.used_at IS NOT NULL OR challenge.expires_at <= pg_catalog.now()
       OR account.disabled_at IS NOT NULL OR dashboard_auth.address_locked(account.id, client_ip)
       OR account.totp_enabled_at IS NULL THEN
        PERFORM dashboard_auth.record_login(coalesce(account.email, 'unknown'), account.id, client_ip,
                                            client_agent, false, 'invalid_challenge', 'totp');
        RETURN dashboard_auth.refusal('invalid_challenge', 'This sign-in has expired or was already used. Sign in again.');
    END IF;
    via := dashboard_auth.spend_second_factor(account.id, code, true);
    IF via IS NULL THEN
        PERFORM dashboard_auth.record_login(account.email, account.id, client_ip,
                                            client_agent, false, 'wrong_code', 'totp');
        -- A lockout of this address ends the challenge too.
        IF dashboard_auth.count_failure(account.id, client_ip) THEN
            UPDATE dashboard_auth.login_challenges c SET used_at = pg_catalog.now() WHERE c.id = challenge.id;
        END IF;
        RETURN dashboard_auth.refusal('wrong_code', 'That code is not valid. Enter the current code from your authenticator app, or a recovery code.');
    END IF;
    UPDATE dashboard_auth.login_challenges c SET used_at = pg_catalog.now() WHERE c.id = challenge.id;
    RETURN dashboard_auth.complete_sign_in(account.id, account.email, client_ip,
                                           client_agent, via, challenge.session_lifetime);
END
$$;
COMMENT ON FUNCTION dashboard_auth.sign_in_second_factor(text, text) IS 'The code step of a two-factor sign-in: the challenge from login and a TOTP or recovery code';

-- ---------------------------------------------------------------------------------
-- With a session (fluxbase_dashboard): an admin's own two-factor settings
-- ---------------------------------------------------------------------------------

CREATE FUNCTION dashboard_auth.get_two_factor(session_token text DEFAULT NULL)
RETURNS TABLE (enabled boolean, enabled_at timestamptz, recovery_codes_left bigint)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.totp_enabled_at IS NOT NULL, u.totp_enabled_at,
           (SELECT pg_catalog.count(*) FROM dashboard_auth.recovery_codes r WHERE r.admin_id = u.id AND r.used_at IS NULL)
      FROM dashboard_auth.dashboard_users u
     WHERE u.id = (dashboard_auth.check_session(session_token)).admin_id
$$;

-- Starts enrolment: a new secret, shown once (base32, otpauth:// URI, QR code). Nothing
-- changes at sign-in until a code from it is confirmed, within 10 minutes. It needs the
-- password again, so that a stolen session cannot bind the thief's device: a wrong one is
-- returned, recorded and counted toward the lockout, like any wrong password.
CREATE FUNCTION dashboard_auth.start_two_factor(session_token text, password text)
RETURNS TABLE (ok boolean, code text, message text, secret text, otpauth_uri text, qr_png_data_uri text,
               expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    account dashboard_auth.dashboard_users;
    refused dashboard_auth.outcome;
    made    record;
BEGIN
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = who.admin_id;
    IF account.totp_enabled_at IS NOT NULL THEN
        RAISE EXCEPTION 'two-factor sign-in is already on for %', who.email
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Turn it off first to enrol another device.';
    END IF;
    IF dashboard_auth.address_locked(who.admin_id, dashboard_auth.request_ip()) THEN
        refused := ROW(false, 'locked', 'Too many wrong passwords. Try again later.')::dashboard_auth.outcome;
    ELSIF NOT dashboard_auth.verify_password(start_two_factor.password, account.password_hash) THEN
        refused := dashboard_auth.refuse_factor(who, 'admin.2fa_enrolment_refused', 'wrong_password');
    END IF;
    IF refused.code IS NOT NULL THEN
        ok := refused.ok;
        code := refused.code;
        message := refused.message;
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT * INTO made FROM dashboard_auth.totp_generate(who.admin_id, who.email);
    expires_at := pg_catalog.now() + interval '10 minutes';
    UPDATE dashboard_auth.dashboard_users u
       SET totp_pending_secret = made.sealed, totp_pending_until = start_two_factor.expires_at, updated_at = pg_catalog.now()
     WHERE u.id = who.admin_id;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.2fa_enrolment_started', 'admin', who.admin_id::text);
    ok := true;
    code := 'ok';
    message := 'Scan the code with your authenticator app, then confirm with a code from it.';
    secret := made.secret;
    otpauth_uri := made.otpauth_uri;
    qr_png_data_uri := made.qr_png_data_uri;
    RETURN NEXT;
END
$$;

-- Confirms enrolment with a code from the new device: 2FA is on from now, and the ten
-- recovery codes are returned, this once.
CREATE FUNCTION dashboard_auth.confirm_two_factor(session_token text, code text)
RETURNS dashboard_auth.recovery_codes_outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    typed   text := confirm_two_factor.code;
    account dashboard_auth.dashboard_users;
    step    bigint;
BEGIN
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = who.admin_id FOR UPDATE;
    IF account.totp_pending_secret IS NULL OR account.totp_pending_until <= pg_catalog.now() THEN
        RETURN ROW(false, 'no_enrolment', 'There is no enrolment waiting, or it expired. Start again.', NULL)::dashboard_auth.recovery_codes_outcome;
    END IF;
    step := dashboard_auth.totp_verify(account.totp_pending_secret, account.id, typed, NULL);
    IF step IS NULL THEN
        PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.2fa_code_failed', 'admin',
            who.admin_id::text, '{"during": "enrolment"}'::jsonb);
        RETURN ROW(false, 'wrong_code', 'That code is not valid. Check the device''s clock and try the next code.', NULL)::dashboard_auth.recovery_codes_outcome;
    END IF;
    UPDATE dashboard_auth.dashboard_users u
       SET totp_secret = u.totp_pending_secret, totp_enabled_at = pg_catalog.now(), totp_last_step = step,
           totp_pending_secret = NULL, totp_pending_until = NULL, updated_at = pg_catalog.now()
     WHERE u.id = who.admin_id;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.2fa_enabled', 'admin', who.admin_id::text,
        '{"recovery_codes": 10}'::jsonb);
    RETURN ROW(true, 'ok', 'Two-factor sign-in is on. Keep the recovery codes somewhere safe: they are shown only now.',
               dashboard_auth.replace_recovery_codes(who.admin_id))::dashboard_auth.recovery_codes_outcome;
END
$$;

-- New recovery codes (the old ones stop working); needs the password and a current code.
CREATE FUNCTION dashboard_auth.regenerate_recovery_codes(session_token text, password text, code text)
RETURNS dashboard_auth.recovery_codes_outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    account dashboard_auth.dashboard_users;
    refused dashboard_auth.outcome;
BEGIN
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = who.admin_id;
    IF account.totp_enabled_at IS NULL THEN
        RETURN ROW(false, 'not_enabled', 'Two-factor sign-in is off.', NULL)::dashboard_auth.recovery_codes_outcome;
    END IF;
    IF NOT dashboard_auth.verify_password(regenerate_recovery_codes.password, account.password_hash) THEN
        refused := dashboard_auth.refuse_factor(who, 'admin.recovery_codes_refused', 'wrong_password');
    ELSIF dashboard_auth.spend_second_factor(who.admin_id, regenerate_recovery_codes.code, false) IS NULL THEN
        refused := dashboard_auth.refuse_factor(who, 'admin.2fa_code_failed', 'wrong_code');
    END IF;
    IF refused.code IS NOT NULL THEN
        RETURN ROW(refused.ok, refused.code, refused.message, NULL)::dashboard_auth.recovery_codes_outcome;
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.recovery_codes_regenerated', 'admin',
        who.admin_id::text, '{"recovery_codes": 10}'::jsonb);
    RETURN ROW(true, 'ok', 'New recovery codes; the old ones no longer work.',
               dashboard_auth.replace_recovery_codes(who.admin_id))::dashboard_auth.recovery_codes_outcome;
END
$$;

-- Turns 2FA off; needs the password and a current code or a recovery code.
CREATE FUNCTION dashboard_auth.disable_two_factor(session_token text, password text, code text)
RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who     dashboard_auth.session_admin := dashboard_auth.check_session(session_token);
    account dashboard_auth.dashboard_users;
BEGIN
    SELECT * INTO account FROM dashboard_auth.dashboard_users u WHERE u.id = who.admin_id;
    IF account.totp_enabled_at IS NULL THEN
        RETURN ROW(false, 'not_enabled', 'Two-factor sign-in is off.')::dashboard_auth.outcome;
    END IF;
    IF NOT dashboard_auth.verify_password(disable_two_factor.password, account.password_hash) THEN
        RETURN dashboard_auth.refuse_factor(who, 'admin.2fa_disable_refused', 'wrong_password');
    END IF;
    IF dashboard_auth.spend_second_factor(who.admin_id, disable_two_factor.code, true) IS NULL THEN
        RETURN dashboard_auth.refuse_factor(who, 'admin.2fa_code_failed', 'wrong_code');
    END IF;
    PERFORM dashboard_auth.clear_second_factor(who.admin_id);
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who), 'admin.2fa_disabled', 'admin', who.admin_id::text);
    RETURN ROW(true, 'ok', 'Two-factor sign-in is off.')::dashboard_auth.outcome;
END
$$;

CREATE FUNCTION dashboard_auth.clear_second_factor(admin uuid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE dashboard_auth.dashboard_users u
       SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL,
           totp_pending_secret = NULL, totp_pending_until = NULL, updated_at = pg_catalog.now()
     WHERE u.id = admin;
    DELETE FROM dashboard_auth.recovery_codes r WHERE r.admin_id = admin;
    UPDATE dashboard_auth.login_challenges c SET used_at = pg_catalog.now() WHERE c.admin_id = admin AND c.used_at IS NULL;
$$;

-- A lost device: another admin's 2FA off and every session of theirs ended, by an
-- operator (break-glass) or an admin with manage_admins.
CREATE FUNCTION dashboard_auth.manage_disable_two_factor(who dashboard_auth.actor, target uuid) RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    revoked integer;
BEGIN
    PERFORM 1 FROM dashboard_auth.dashboard_users u WHERE u.id = target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no admin with id %', coalesce(target::text, 'NULL') USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM dashboard_auth.clear_second_factor(target);
    revoked := dashboard_auth.revoke_sessions(target, CASE who.actor_type WHEN 'operator' THEN '2fa_disabled_by_operator'
                                                                          ELSE '2fa_disabled_by_admin' END);
    PERFORM dashboard_auth.audit_by(who, 'admin.2fa_disabled', 'admin', target::text,
        pg_catalog.jsonb_build_object('sessions_revoked', revoked, 'by_operator', who.actor_type = 'operator'));
    RETURN dashboard_auth.done('two_factor_disabled', 'Two-factor sign-in is off, and every session of the admin is ended.');
END
$$;

-- Break-glass for a lost device: 2FA off and every session of the admin ended.
CREATE FUNCTION dashboard_auth.operator_disable_two_factor(email text) RETURNS dashboard_auth.outcome
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT dashboard_auth.manage_disable_two_factor(dashboard_auth.operator_actor(), dashboard_auth.admin_id_by_email(email)) $$;

-- The same for another admin, from a session with manage_admins. One's own 2FA goes off
-- only with the password and a code (disable_two_factor), or a stolen session could.
CREATE FUNCTION dashboard_auth.disable_admin_two_factor(session_token text, admin_id uuid) RETURNS dashboard_auth.outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'manage_admins');
BEGIN
    PERFORM dashboard_auth.refuse_self(who, disable_admin_two_factor.admin_id,
        'Turn your own off with dashboard_auth.disable_two_factor, with your password and a code.');
    RETURN dashboard_auth.manage_disable_two_factor(dashboard_auth.session_actor(who), disable_admin_two_factor.admin_id);
END
$$;
COMMENT ON FUNCTION dashboard_auth.disable_admin_two_factor(text, uuid) IS 'Turns another admin''s two-factor sign-in off (a lost device) and ends their sessions';

GRANT EXECUTE ON FUNCTION
    dashboard_auth.sign_in_second_factor(text, text),
    dashboard_auth.get_two_factor(text),
    dashboard_auth.start_two_factor(text, text),
    dashboard_auth.confirm_two_factor(text, text),
    dashboard_auth.regenerate_recovery_codes(text, text, text),
    dashboard_auth.disable_two_factor(text, text, text),
    dashboard_auth.disable_admin_two_factor(text, uuid)
TO fluxbase_dashboard;
GRANT EXECUTE ON FUNCTION dashboard_auth.operator_disable_two_factor(text) TO fluxbase_operator;
