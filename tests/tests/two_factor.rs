//! Two-factor sign-in through SQL (and the operator's break-glass command): enrolment,
//! the two-step login, replay, recovery codes, disabling, and their audit entries.

use fluxbase_tests::admin::{self, as_dashboard, create_admin, login, login_result, sqlstate, LoginResult, PASSWORD};
use fluxbase_tests::authenticator::{away_from_a_step_boundary, Authenticator};
use fluxbase_tests::{fluxbase, run, text, Caller, TestDb};
use postgres::Client;
use totp_rs::Secret;

struct Enrolled {
    token: String,
    app: Authenticator,
    recovery: Vec<String>,
}

/// Signs `email` in and turns 2FA on with the code of the previous step (one of skew),
/// leaving the current and the next steps for the test's own sign-ins.
fn enrol(web: &mut Client, email: &str) -> Enrolled {
    away_from_a_step_boundary();
    let token = login(web, email, PASSWORD, "192.0.2.1").token.unwrap();
    let started = as_dashboard(web, "SELECT secret, otpauth_uri, qr_png_data_uri FROM dashboard_auth.start_two_factor($1, $2)", &[&token, &PASSWORD]).unwrap();
    let app = Authenticator::new(&started[0].get::<_, String>(0));
    let confirmed = as_dashboard(web, "SELECT ok, code, recovery_codes FROM dashboard_auth.confirm_two_factor($1, $2)", &[&token, &app.code(-1)]).unwrap();
    assert!(confirmed[0].get::<_, bool>(0), "confirm: {}", confirmed[0].get::<_, String>(1));
    Enrolled { token, app, recovery: confirmed[0].get(2) }
}

fn second_step(web: &mut Client, challenge: &str, code: &str) -> LoginResult {
    login_result(as_dashboard(web, "SELECT * FROM dashboard_auth.sign_in_second_factor($1, $2)", &[&challenge, &code]).unwrap())
}

/// Both steps: the password, then `code`.
fn sign_in_with(web: &mut Client, email: &str, code: &str) -> LoginResult {
    let pending = challenge(web, email);
    second_step(web, &pending, code)
}

fn challenge(web: &mut Client, email: &str) -> String {
    let first = login(web, email, PASSWORD, "192.0.2.1");
    assert_eq!((first.ok, first.code.as_str()), (false, "second_factor_required"), "{first:?}");
    assert!(first.token.is_none(), "no session after the password step");
    first.challenge.clone().expect("a challenge token")
}

#[test]
fn enrolment_shows_the_secret_once_and_turns_on_only_after_a_confirmed_code() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let started = as_dashboard(&mut web, "SELECT secret, otpauth_uri, qr_png_data_uri FROM dashboard_auth.start_two_factor($1, $2)", &[&token, &PASSWORD]).unwrap();
    let (secret, uri, qr): (String, String, String) = (started[0].get(0), started[0].get(1), started[0].get(2));
    assert!(uri.starts_with("otpauth://totp/Fluxbase:ann%40example.com?") && uri.contains("issuer=Fluxbase"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(qr.starts_with("data:image/png;base64,iVBOR"), "a PNG data URI");

    // Not on yet: the password alone still signs in.
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok);
    let wrong = as_dashboard(&mut web, "SELECT ok, code FROM dashboard_auth.confirm_two_factor($1, '000000')", &[&token]).unwrap();
    assert_eq!((wrong[0].get::<_, bool>(0), wrong[0].get::<_, String>(1)), (false, "wrong_code".to_string()));
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok, "a wrong code turns nothing on");

    away_from_a_step_boundary();
    let app = Authenticator::new(&secret);
    let confirmed = as_dashboard(&mut web, "SELECT ok, recovery_codes FROM dashboard_auth.confirm_two_factor($1, $2)", &[&token, &app.code(0)]).unwrap();
    assert!(confirmed[0].get::<_, bool>(0));
    let codes: Vec<String> = confirmed[0].get(1);
    assert_eq!(codes.len(), 10);
    challenge(&mut web, "ann@example.com");

    // The secret is stored sealed: neither its bytes nor its base32 form are in the row.
    let mut su = db.connect(Caller::Superuser);
    let sealed: Vec<u8> = su.query_one("SELECT totp_secret FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    let raw = Secret::Encoded(secret.clone()).to_bytes().unwrap();
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    let hashes: Vec<String> = su.query("SELECT code_hash FROM dashboard_auth.recovery_codes", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")), "recovery codes are stored as password hashes");
}

#[test]
fn an_enrolment_never_confirmed_expires() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let secret: String = as_dashboard(&mut web, "SELECT secret FROM dashboard_auth.start_two_factor($1, $2)", &[&token, &PASSWORD]).unwrap()[0].get(0);
    db.connect(Caller::Superuser).batch_execute("UPDATE dashboard_auth.dashboard_users SET totp_pending_until = now() - interval '1 second'").unwrap();
    let late = as_dashboard(&mut web, "SELECT code FROM dashboard_auth.confirm_two_factor($1, $2)", &[&token, &Authenticator::new(&secret).code(0)]).unwrap();
    assert_eq!(late[0].get::<_, String>(0), "no_enrolment");
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok);
}

#[test]
fn the_code_step_is_bound_to_its_password_step() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "bob@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let bob = enrol(&mut web, "bob@example.com");

    // Ann's challenge with a valid code of Bob's device: refused.
    let ann_challenge = challenge(&mut web, "ann@example.com");
    assert_eq!(second_step(&mut web, &ann_challenge, &bob.app.code(0)).code, "wrong_code");
    // With her own code: a session, as Ann.
    let signed_in = second_step(&mut web, &ann_challenge, &ann.app.code(0));
    assert!(signed_in.ok, "{signed_in:?}");
    let who: String = as_dashboard(&mut web, "SELECT email FROM dashboard_auth.get_session($1)", &[&signed_in.token()]).unwrap()[0].get(0);
    assert_eq!(who, "ann@example.com");
    // The challenge is spent.
    assert_eq!(second_step(&mut web, &ann_challenge, &ann.app.code(1)).code, "invalid_challenge");
    // An expired challenge, and a made-up one.
    let late = challenge(&mut web, "ann@example.com");
    db.connect(Caller::Superuser).batch_execute("UPDATE dashboard_auth.login_challenges SET expires_at = now() - interval '1 second' WHERE used_at IS NULL").unwrap();
    assert_eq!(second_step(&mut web, &late, &ann.app.code(1)).code, "invalid_challenge");
    assert_eq!(second_step(&mut web, "fbc_made_up", &ann.app.code(1)).code, "invalid_challenge");
    let _ = (ann.token, bob.token);
}

#[test]
fn a_code_accepted_once_is_refused_again() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let code = ann.app.code(0);
    assert!(sign_in_with(&mut web, "ann@example.com", &code).ok);
    let replay = sign_in_with(&mut web, "ann@example.com", &code);
    assert_eq!(replay.code, "wrong_code", "the same code within its window");
    // The next step's code still works (one step of skew).
    assert!(sign_in_with(&mut web, "ann@example.com", &ann.app.code(1)).ok);
}

#[test]
fn two_steps_away_is_refused() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    for offset in [-2, 2] {
        let result = sign_in_with(&mut web, "ann@example.com", &ann.app.code(offset));
        assert_eq!(result.code, "wrong_code", "offset {offset}");
    }
    assert!(sign_in_with(&mut web, "ann@example.com", &ann.app.code(1)).ok, "+1 is accepted");
}

#[test]
fn each_recovery_code_works_once_and_says_how_many_are_left() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let first = &ann.recovery[0];
    assert!(sign_in_with(&mut web, "ann@example.com", &first.to_uppercase()).ok, "case does not matter");
    assert_eq!(sign_in_with(&mut web, "ann@example.com", first).code, "wrong_code", "used once");
    assert!(sign_in_with(&mut web, "ann@example.com", &ann.recovery[1]).ok);
    let remaining: Vec<i64> = db
        .connect(Caller::Superuser)
        .query("SELECT (details->>'remaining')::bigint FROM dashboard_auth.audit_log WHERE action = 'admin.recovery_code_used' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(remaining, [9, 8]);
    let status = as_dashboard(&mut web, "SELECT enabled, recovery_codes_left FROM dashboard_auth.get_two_factor($1)", &[&ann.token]).unwrap();
    assert_eq!((status[0].get::<_, bool>(0), status[0].get::<_, i64>(1)), (true, 8));
}

#[test]
fn regenerating_codes_needs_the_password_and_a_code() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let regenerate = |web: &mut Client, password: &str, code: &str| {
        let row = &as_dashboard(web, "SELECT ok, code, recovery_codes FROM dashboard_auth.regenerate_recovery_codes($1, $2, $3)", &[&ann.token, &password, &code]).unwrap()[0];
        (row.get::<_, bool>(0), row.get::<_, String>(1), row.get::<_, Option<Vec<String>>>(2))
    };
    assert_eq!(regenerate(&mut web, "not the password", &ann.app.code(0)).1, "wrong_password");
    assert_eq!(regenerate(&mut web, PASSWORD, "123456").1, "wrong_code");
    let (ok, _, fresh) = regenerate(&mut web, PASSWORD, &ann.app.code(0));
    assert!(ok);
    let fresh = fresh.unwrap();
    assert_eq!(fresh.len(), 10);
    assert_eq!(sign_in_with(&mut web, "ann@example.com", &ann.recovery[0]).code, "wrong_code", "old codes are void");
    assert!(sign_in_with(&mut web, "ann@example.com", &fresh[0]).ok);
}

#[test]
fn disabling_needs_the_password_and_a_code() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let disable = |web: &mut Client, password: &str, code: &str| -> String {
        as_dashboard(web, "SELECT code FROM dashboard_auth.disable_two_factor($1, $2, $3)", &[&ann.token, &password, &code]).unwrap()[0].get(0)
    };
    assert_eq!(disable(&mut web, "not the password", &ann.app.code(0)), "wrong_password");
    assert_eq!(disable(&mut web, PASSWORD, "654321"), "wrong_code");
    // A recovery code will do, for someone whose device is gone.
    assert_eq!(disable(&mut web, PASSWORD, &ann.recovery[3]), "ok");
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok, "the password alone signs in again");
}

#[test]
fn wrong_codes_count_toward_the_lockout() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let pending = challenge(&mut web, "ann@example.com");
    for guess in ["111111", "222222", "333333", "444444", "555555"] {
        assert_eq!(second_step(&mut web, &pending, guess).code, "wrong_code");
    }
    // Locked: the challenge is over, and even the right code does not sign in.
    assert_eq!(second_step(&mut web, &pending, &ann.app.code(0)).code, "invalid_challenge");
    // The code step ran without an address (NULL, as from psql): that address is locked out.
    let locked: bool = db
        .connect(Caller::Superuser)
        .query_one("SELECT locked_until > now() FROM dashboard_auth.address_lockouts WHERE ip IS NULL", &[])
        .unwrap()
        .get(0);
    assert!(locked);
}

#[test]
fn the_operator_turns_2fa_off_for_a_lost_device() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let output = run(fluxbase().args(["admin", "disable-2fa", "--email", "ann@example.com"]).env("DATABASE_URL", db.url(Caller::Operator, "")));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("ann@example.com has two-factor sign-in off"), "{stdout}");
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.get_session($1)", &[&ann.token])), "28000", "signed out");
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok);
    let recovery: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.recovery_codes", &[]).unwrap().get(0);
    assert_eq!(recovery, 0);
}

#[test]
fn every_step_reaches_the_audit_log() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    sign_in_with(&mut web, "ann@example.com", "000000");
    sign_in_with(&mut web, "ann@example.com", &ann.recovery[0]);
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.regenerate_recovery_codes($1, $2, $3)", &[&ann.token, &PASSWORD, &ann.app.code(0)]).unwrap();
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.disable_two_factor($1, $2, $3)", &[&ann.token, &PASSWORD, &ann.app.code(1)]).unwrap();
    db.connect(Caller::Operator).batch_execute("SELECT dashboard_auth.operator_disable_two_factor('ann@example.com')").unwrap();

    let actions = admin::audit_actions(&db);
    for expected in [
        "admin.2fa_enrolment_started",
        "admin.2fa_enabled",
        "admin.login_failed",
        "admin.recovery_code_used",
        "admin.recovery_codes_regenerated",
        "admin.2fa_disabled",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing from {actions:?}");
    }
    let mut su = db.connect(Caller::Superuser);
    let wrong_code: i64 = su
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'admin.login_failed' AND details->>'reason' = 'wrong_code'", &[])
        .unwrap()
        .get(0);
    assert_eq!(wrong_code, 1);
    let operator_disable: String = su
        .query_one("SELECT actor FROM dashboard_auth.audit_log WHERE action = 'admin.2fa_disabled' AND actor_type = 'operator'", &[])
        .unwrap()
        .get(0);
    assert_eq!(operator_disable, "fluxbase_ops");
    let (valid, _, message) = admin::verify_chain(&mut su);
    assert!(valid, "{message}");
}

#[test]
fn a_reset_link_leads_to_the_code_step_when_2fa_is_on() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann = enrol(&mut web, "ann@example.com");
    let reset: String = db
        .connect(Caller::Operator)
        .query_one("SELECT reset_token FROM dashboard_auth.operator_reset_admin_password('ann@example.com')", &[])
        .unwrap()
        .get(0);
    let redeemed = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, 'a passphrase after the reset')", &[&reset]).unwrap(),
    );
    assert_eq!(redeemed.code, "second_factor_required", "a link alone must not pass 2FA: {redeemed:?}");
    assert!(redeemed.token.is_none());
    let signed_in = second_step(&mut web, redeemed.challenge.as_deref().unwrap(), &ann.app.code(0));
    assert!(signed_in.ok, "{signed_in:?}");
}

/// The outcome of start_two_factor from `ip`: (ok, code, message, whether a secret came back).
fn start_enrolment(web: &mut Client, token: &str, password: &str, ip: &str) -> (bool, String, String, bool) {
    let rows = admin::as_dashboard_from(
        web,
        ip,
        "SELECT ok, code, message, secret IS NOT NULL FROM dashboard_auth.start_two_factor($1, $2)",
        &[&token, &password],
    )
    .unwrap();
    (rows[0].get(0), rows[0].get(1), rows[0].get(2), rows[0].get(3))
}

#[test]
fn enrolling_needs_the_password_again_so_a_stolen_session_cannot_bind_a_device() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let stolen = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();

    // The thief has the session, not the password: refused, returned (not raised), recorded.
    let (ok, code, message, secret) = start_enrolment(&mut web, &stolen, "the thief's best guess", "198.51.100.66");
    assert_eq!((ok, code.as_str(), message.as_str(), secret), (false, "wrong_password", "The password is wrong.", false));
    let mut su = db.connect(Caller::Superuser);
    let pending: bool = su.query_one("SELECT totp_pending_secret IS NOT NULL FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    assert!(!pending, "no secret is waiting to be confirmed");
    let refused: i64 = su
        .query_one(
            "SELECT count(*) FROM dashboard_auth.audit_log
              WHERE action = 'admin.2fa_enrolment_refused' AND details->>'reason' = 'wrong_password' AND ip = '198.51.100.66'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(refused, 1);

    // Wrong passwords count toward the lockout of the address, which ends the sessions.
    for i in 0..4 {
        assert_eq!(start_enrolment(&mut web, &stolen, &format!("guess {i} of the thief"), "198.51.100.66").1, "wrong_password");
    }
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.get_session($1)", &[&stolen])), "28000");
    let locked: i64 = su
        .query_one("SELECT count(*) FROM dashboard_auth.address_lockouts WHERE ip = '198.51.100.66' AND locked_until > now()", &[])
        .unwrap()
        .get(0);
    assert_eq!(locked, 1);

    // The owner, from their own address and with their password, enrols.
    let own = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let (ok, code, _, secret) = start_enrolment(&mut web, &own, PASSWORD, "192.0.2.1");
    assert_eq!((ok, code.as_str(), secret), (true, "ok", true));
}

#[test]
fn an_admin_turns_another_admins_2fa_off_and_ends_their_sessions() {
    let db = TestDb::new();
    let ann_id = create_admin(&db, "ann@example.com", "admin");
    let bob_id = create_admin(&db, "bob@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let bob = enrol(&mut web, "bob@example.com");
    let ann = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let vic = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let off = |web: &mut Client, token: &str, target: &str| {
        admin::as_dashboard_from(web, "192.0.2.1", "SELECT ok, code FROM dashboard_auth.disable_admin_two_factor($1, $2::text::uuid)", &[&token, &target])
    };

    // The list shows who has 2FA on, and since when.
    let listed = as_dashboard(&mut web, "SELECT two_factor_enabled, two_factor_enabled_at IS NOT NULL FROM dashboard_auth.list_admins($1) WHERE email = 'bob@example.com'", &[&ann]).unwrap();
    assert_eq!((listed[0].get::<_, bool>(0), listed[0].get::<_, bool>(1)), (true, true));

    // Viewers are refused; one's own 2FA needs the password and a code; an unknown id is not found.
    assert_eq!(sqlstate(off(&mut web, &vic, &bob_id)), "42501");
    assert_eq!(sqlstate(off(&mut web, &ann, &ann_id)), "22023");
    assert_eq!(sqlstate(off(&mut web, &ann, "00000000-0000-0000-0000-000000000000")), "P0002");

    let done = off(&mut web, &ann, &bob_id).unwrap();
    assert_eq!((done[0].get::<_, bool>(0), done[0].get::<_, String>(1)), (true, "two_factor_disabled".to_string()));
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.get_session($1)", &[&bob.token])), "28000");
    assert!(login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1").ok, "the password alone signs in again");
    let audited: i64 = db
        .connect(Caller::Superuser)
        .query_one(
            "SELECT count(*) FROM dashboard_auth.audit_log
              WHERE action = 'admin.2fa_disabled' AND actor = 'ann@example.com' AND target_id = $1
                AND details->>'by_operator' = 'false' AND (details->>'sessions_revoked')::int = 1 AND ip = '192.0.2.1'",
            &[&bob_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}
