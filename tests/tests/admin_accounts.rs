//! Admin accounts through SQL, as each kind of caller: setup, sign-in, lockout,
//! sessions, links, management, settings and privileges.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fluxbase_tests::admin::{self, as_dashboard, as_dashboard_from, create_admin, login, login_result, sqlstate, PASSWORD};
use fluxbase_tests::{Caller, TestDb, strings};

fn setup_link(db: &TestDb) -> String {
    let mut web = db.connect(Caller::Dashboard);
    as_dashboard(&mut web, "SELECT token FROM dashboard_auth.create_setup_link()", &[]).unwrap()[0].get(0)
}

#[test]
fn first_run_setup_creates_the_first_admin_and_signs_them_in() {
    let db = TestDb::new();
    let mut web = db.connect(Caller::Dashboard);
    let needs: bool = as_dashboard(&mut web, "SELECT dashboard_auth.needs_setup()", &[]).unwrap()[0].get(0);
    assert!(needs);
    let token = setup_link(&db);

    let weak = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.complete_setup($1, 'ada@example.com', 'Ada', 'password123')", &[&token]).unwrap(),
    );
    assert_eq!(weak.code, "weak_password", "{weak:?}");

    let done = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.complete_setup($1, ' Ada@Example.com ', 'Ada', $2)", &[&token, &PASSWORD]).unwrap(),
    );
    assert!(done.ok, "{done:?}");
    assert_eq!(done.role.as_deref(), Some("admin"));
    let who = as_dashboard(&mut web, "SELECT email, role FROM dashboard_auth.get_session($1)", &[&done.token()]).unwrap();
    assert_eq!(who[0].get::<_, String>(0), "ada@example.com");

    // The link is spent, setup is closed, and no new setup link can be made.
    let again = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.complete_setup($1, 'eve@example.com', 'Eve', $2)", &[&token, &PASSWORD]).unwrap(),
    );
    assert_eq!(again.code, "already_set_up");
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.create_setup_link()", &[])), "55000");
    let actions = admin::audit_actions(&db);
    for action in ["link.created", "admin.setup", "admin.login", "link.redeem_failed"] {
        assert!(actions.contains(&action.to_string()), "{action} missing from {actions:?}");
    }
}

#[test]
fn a_made_up_setup_token_does_nothing() {
    let db = TestDb::new();
    let _real = setup_link(&db);
    let mut web = db.connect(Caller::Dashboard);
    let result = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.complete_setup('fbl_guess', 'eve@example.com', 'Eve', $1)", &[&PASSWORD]).unwrap(),
    );
    assert_eq!(result.code, "invalid_link");
    let admins: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    assert_eq!(admins, 0);
}

#[test]
fn two_setups_racing_exactly_one_wins() {
    for _round in 0..3 {
        let db = TestDb::new();
        let tokens = [setup_link(&db), setup_link(&db)];
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let barrier = barrier.clone();
                let mut web = db.connect(Caller::Dashboard);
                std::thread::spawn(move || {
                    let email = format!("racer{i}@example.com");
                    barrier.wait();
                    login_result(
                        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.complete_setup($1, $2, 'Racer', $3)", &[&token, &email, &PASSWORD])
                            .unwrap(),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.ok).count();
        assert_eq!(winners, 1, "{results:?}");
        assert!(results.iter().any(|r| r.code == "already_set_up"), "{results:?}");
        let admins: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
        assert_eq!(admins, 1);
    }
}

#[test]
fn unknown_wrong_locked_and_disabled_get_the_same_answer() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "dis@example.com", "admin");
    create_admin(&db, "lock@example.com", "admin");
    create_admin(&db, "slow@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("SELECT dashboard_auth.operator_disable_admin('dis@example.com');
                      INSERT INTO dashboard_auth.address_lockouts (admin_id, ip, lockout_count, locked_until)
                      SELECT id, '192.0.2.10', 1, now() + interval '1 hour' FROM dashboard_auth.dashboard_users WHERE email = 'lock@example.com';
                      UPDATE dashboard_auth.dashboard_users SET throttled_until = now() + interval '1 hour' WHERE email = 'slow@example.com'")
        .unwrap();
    let mut web = db.connect(Caller::Dashboard);
    let answers = [
        login(&mut web, "nobody@example.com", PASSWORD, "192.0.2.10"),
        login(&mut web, "ann@example.com", "not the password at all", "192.0.2.10"),
        login(&mut web, "lock@example.com", PASSWORD, "192.0.2.10"),
        login(&mut web, "slow@example.com", PASSWORD, "192.0.2.10"),
        login(&mut web, "dis@example.com", PASSWORD, "192.0.2.10"),
    ];
    for answer in &answers {
        assert_eq!(answer.answer(), (false, "invalid_credentials", "Invalid email or password."), "{answer:?}");
        assert!(answer.token.is_none() && answer.role.is_none());
    }
    // The reasons are recorded for the operator, not told to the caller.
    let reasons: Vec<String> = strings(&mut su, "SELECT reason FROM dashboard_auth.login_attempts ORDER BY id", &[]);
    assert_eq!(reasons, ["unknown_email", "wrong_password", "locked", "throttled", "disabled"]);
}

#[test]
fn unknown_emails_take_about_as_long_as_wrong_passwords() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let mut time = |email: &str, i: usize| {
        let started = Instant::now();
        // A fresh address each time, so the per-address limit stays out of the way.
        login(&mut web, email, "not the password at all", &format!("198.51.100.{i}"));
        started.elapsed()
    };
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for i in 0..8 {
        unknown.push(time("nobody@example.com", 2 * i));
        wrong.push(time("ann@example.com", 2 * i + 1));
    }
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[4].as_secs_f64(), wrong[4].as_secs_f64());
    // Both pay one argon2 run (~20 ms); a skipped hash would be ten times faster.
    assert!(u > w / 3.0 && u < w * 3.0, "median unknown {u:.4}s vs wrong password {w:.4}s");
    assert!(u > 0.005, "an unknown email must still cost a hash: {u:.4}s");
}

fn locked_for(su: &mut postgres::Client, ip: &str) -> Option<f64> {
    su.query_opt(
        "SELECT extract(epoch FROM locked_until - now())::float8 FROM dashboard_auth.address_lockouts WHERE ip = $1::text::inet",
        &[&ip],
    )
    .unwrap()
    .and_then(|row| row.get(0))
}

#[test]
fn lockout_after_five_failures_escalates_and_a_success_resets_it() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let mut su = db.connect(Caller::Superuser);
    // One address throughout: its own rate limit stays out of the way.
    su.batch_execute("INSERT INTO dashboard_auth.settings (key, value, updated_by) VALUES ('lockout.ip_max_failures', '1000', 'test')").unwrap();
    for _ in 0..4 {
        login(&mut web, "ann@example.com", "wrong password number", "203.0.113.9");
    }
    assert_eq!(locked_for(&mut su, "203.0.113.9"), None, "four failures do not lock");
    login(&mut web, "ann@example.com", "wrong password number", "203.0.113.9");
    let first = locked_for(&mut su, "203.0.113.9").expect("locked after five failures");
    assert!((14.0 * 60.0..=15.0 * 60.0).contains(&first), "first lockout lasts 15 min, got {first}s");
    // Locked: even the right password is refused from that address, with the same answer.
    assert_eq!(login(&mut web, "ann@example.com", PASSWORD, "203.0.113.9").code, "invalid_credentials");

    // The lockout runs out (simulated), and five more failures lock for twice as long.
    su.batch_execute("UPDATE dashboard_auth.address_lockouts SET locked_until = now() - interval '1 second'").unwrap();
    for _ in 0..5 {
        login(&mut web, "ann@example.com", "wrong password number", "203.0.113.9");
    }
    let second = locked_for(&mut su, "203.0.113.9").expect("locked again");
    assert!((29.0 * 60.0..=30.0 * 60.0).contains(&second), "second lockout lasts 30 min, got {second}s");

    // After it, a successful sign-in from that address resets its escalation.
    su.batch_execute("UPDATE dashboard_auth.address_lockouts SET locked_until = now() - interval '1 second'").unwrap();
    assert!(login(&mut web, "ann@example.com", PASSWORD, "203.0.113.9").ok);
    let rows: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.address_lockouts", &[]).unwrap().get(0);
    assert_eq!(rows, 0);
    let locks: i64 = su
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'admin.locked' AND details->>'ip' = '203.0.113.9'", &[])
        .unwrap()
        .get(0);
    assert_eq!(locks, 2);

    // The escalation decays: a day after a lock ended, the next lock is the first again.
    for _ in 0..5 {
        login(&mut web, "ann@example.com", "wrong password number", "203.0.113.9");
    }
    su.batch_execute("UPDATE dashboard_auth.address_lockouts SET locked_until = now() - interval '25 hours', lockout_count = 6").unwrap();
    for _ in 0..5 {
        login(&mut web, "ann@example.com", "wrong password number", "203.0.113.9");
    }
    let decayed = locked_for(&mut su, "203.0.113.9").expect("locked once more");
    assert!((14.0 * 60.0..=15.0 * 60.0).contains(&decayed), "after a quiet day, 15 min again, got {decayed}s");
}

#[test]
fn an_attacker_who_knows_the_email_locks_out_only_their_own_address() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let mut su = db.connect(Caller::Superuser);
    // Before the fix, these guesses locked the account itself, for good.
    for _ in 0..10 {
        assert_eq!(login(&mut web, "ann@example.com", "mallory guesses again", "198.51.100.66").code, "invalid_credentials");
    }
    assert!(locked_for(&mut su, "198.51.100.66").is_some(), "the attacker's address is locked out");
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.20").ok, "the admin, from another address, signs in");
    // The attacker's address stays locked, even with the right password.
    assert_eq!(login(&mut web, "ann@example.com", PASSWORD, "198.51.100.66").code, "invalid_credentials");

    // The list shows the lock of one address, and an admin lifts it.
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.20").token.unwrap();
    let row = &as_dashboard(&mut web, "SELECT status, locked_addresses, locked_until > now() FROM dashboard_auth.list_admins($1)", &[&token]).unwrap()[0];
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, bool>(2)), ("locked".to_string(), 1, true));
}

#[test]
fn the_account_slows_down_under_many_addresses_but_is_never_locked_and_the_slowdown_decays() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("INSERT INTO dashboard_auth.settings (key, value, updated_by) VALUES ('lockout.account_max_failures', '5', 'test')").unwrap();
    let mut web = db.connect(Caller::Dashboard);
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok, "the admin's usual address");
    // One guess from each of five addresses: no address is locked, the account slows down.
    for i in 0..5 {
        login(&mut web, "ann@example.com", "a botnet's guess", &format!("198.51.100.{}", 10 + i));
    }
    let throttled = |su: &mut postgres::Client| -> Option<f64> {
        su.query_one("SELECT extract(epoch FROM throttled_until - now())::float8 FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0)
    };
    let backoff = throttled(&mut su).expect("the account is slowed down");
    assert!((0.0..=10.0).contains(&backoff), "one check each 10s, got {backoff}s");
    assert_eq!(su.query_one("SELECT count(*) FROM dashboard_auth.address_lockouts WHERE locked_until > now()", &[]).unwrap().get::<_, i64>(0), 0);

    // Within the backoff, even the right password from a fresh address is refused, alike.
    let refused = login(&mut web, "ann@example.com", PASSWORD, "203.0.113.50");
    assert_eq!(refused.answer(), (false, "invalid_credentials", "Invalid email or password."));
    assert!(throttled(&mut su).unwrap() <= backoff, "a refusal does not extend the slowdown");
    // The admin's own address is let through.
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok);
    // After the backoff, a fresh address with the right password gets in: never a lockout.
    su.batch_execute("UPDATE dashboard_auth.dashboard_users SET throttled_until = now() - interval '1 second'").unwrap();
    assert!(login(&mut web, "ann@example.com", PASSWORD, "203.0.113.50").ok);

    // The slowdown decays: once the window has passed, one more failure does not bring it back.
    su.batch_execute("UPDATE dashboard_auth.dashboard_users SET failure_window_from = now() - interval '16 minutes'").unwrap();
    login(&mut web, "ann@example.com", "a late guess", "198.51.100.99");
    assert!(throttled(&mut su).map_or(true, |left| left < 0.0), "no slowdown after a single new failure");
    let reasons: Vec<String> = strings(&mut su, "SELECT reason FROM dashboard_auth.login_attempts WHERE ip = '203.0.113.50' ORDER BY id", &[]);
    assert_eq!(reasons, ["throttled", "ok"]);
    let audited: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'admin.throttled'", &[]).unwrap().get(0);
    assert_eq!(audited, 1);
}

#[test]
fn failures_are_counted_per_ip_address_in_the_database() {
    let db = TestDb::new();
    let admin_id = create_admin(&db, "ann@example.com", "admin");
    let _ = admin_id;
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.set_setting($1, 'lockout.ip_max_failures', '5')", &[&token]).unwrap();

    // Five failures from one address, each against a different (unknown) account.
    for i in 0..5 {
        let r = login(&mut web, &format!("guess{i}@example.com"), "some guess or other", "192.0.2.66");
        assert_eq!(r.code, "invalid_credentials");
    }
    // That address is now refused, even with right credentials; another address is not.
    let refused = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.66");
    assert_eq!(refused.code, "rate_limited", "{refused:?}");
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.67").ok);

    // A second copy of fluxbase (another connection) sees the same count: it lives in the database.
    let mut other_web = db.connect(Caller::Dashboard);
    assert_eq!(login(&mut other_web, "ann@example.com", PASSWORD, "192.0.2.66").code, "rate_limited");
}

#[test]
fn a_failed_logins_record_survives() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let failed = login(&mut web, "ann@example.com", "not the password at all", "192.0.2.5");
    assert!(!failed.ok);
    // The transaction committed: the attempt, the counter and the audit entry are there.
    let mut su = db.connect(Caller::Superuser);
    let (attempts, failures, audited): (i64, i32, i64) = {
        let row = su
            .query_one(
                "SELECT (SELECT count(*) FROM dashboard_auth.login_attempts WHERE NOT succeeded AND ip = '192.0.2.5'),
                        (SELECT failed_attempts FROM dashboard_auth.dashboard_users),
                        (SELECT count(*) FROM dashboard_auth.audit_log
                          WHERE action = 'admin.login_failed' AND ip = '192.0.2.5' AND details->>'reason' = 'wrong_password')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((attempts, failures, audited), (1, 1, 1));
}

#[test]
fn hashes_with_older_parameters_are_upgraded_at_the_next_login() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    // argon2id of PASSWORD at m=4096,t=3,p=1 (older, weaker parameters).
    su.execute("UPDATE dashboard_auth.dashboard_users SET password_hash = $1", &[&OLD_PARAMETERS_HASH]).unwrap();
    let mut web = db.connect(Caller::Dashboard);
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok, "old hashes still verify");
    let stored: String = su.query_one("SELECT password_hash FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok, "and the new hash verifies");
}

const OLD_PARAMETERS_HASH: &str = include_str!("old_parameters_hash.txt");

fn get_session(web: &mut postgres::Client, token: &str) -> Result<Vec<postgres::Row>, postgres::Error> {
    as_dashboard(web, "SELECT * FROM dashboard_auth.get_session($1)", &[&token])
}

#[test]
fn idle_and_absolute_expiry_end_a_session() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let mut su = db.connect(Caller::Superuser);

    let idle = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    assert!(get_session(&mut web, idle.token()).is_ok());
    su.execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '31 minutes' WHERE token_hash = sha256(convert_to($1, 'UTF8'))", &[&idle.token()]).unwrap();
    assert_eq!(sqlstate(get_session(&mut web, idle.token())), "28000", "idle for 31 min (default 30 min)");

    let absolute = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    su.execute("UPDATE dashboard_auth.sessions SET expires_at = now() - interval '1 second' WHERE token_hash = sha256(convert_to($1, 'UTF8'))", &[&absolute.token()]).unwrap();
    assert_eq!(sqlstate(get_session(&mut web, absolute.token())), "28000", "past its absolute expiry");

    // Activity keeps a session alive: a recent request resets the idle clock.
    let active = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    su.execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '29 minutes' WHERE token_hash = sha256(convert_to($1, 'UTF8'))", &[&active.token()]).unwrap();
    assert!(get_session(&mut web, active.token()).is_ok());
    let seen: f64 = su.query_one("SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM dashboard_auth.sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))", &[&active.token()]).unwrap().get(0);
    assert!(seen < 60.0, "get_session marked the session seen: {seen}s ago");

    assert_eq!(sqlstate(get_session(&mut web, "fbs_made_up")), "28000", "an unknown token");
}

fn session_seconds(su: &mut postgres::Client, token: &str) -> f64 {
    su.query_one(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM dashboard_auth.sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
        &[&token],
    )
    .unwrap()
    .get(0)
}

#[test]
fn the_lifetime_comes_from_the_binary_or_else_from_the_setting() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let mut su = db.connect(Caller::Superuser);

    let default = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    assert_eq!(session_seconds(&mut su, default.token()), 24.0 * 3600.0);

    // What fluxbase serve passes when FLUXBASE_ADMIN_SESSION_TIMEOUT=8h.
    let passed = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.sign_in('ann@example.com', $1, interval '8 hours')", &[&PASSWORD]).unwrap(),
    );
    assert_eq!(session_seconds(&mut su, passed.token()), 8.0 * 3600.0);
    assert_eq!(
        sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.sign_in('ann@example.com', $1, interval '8 days')", &[&PASSWORD])),
        "22023",
        "over 7 days is refused"
    );

    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.set_setting($1, 'session.lifetime', '30m')", &[&default.token()]).unwrap();
    let from_setting = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    assert_eq!(session_seconds(&mut su, from_setting.token()), 30.0 * 60.0);
}

#[test]
fn viewers_are_refused_everything_that_changes_something() {
    let db = TestDb::new();
    let admin_id = create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let viewer = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1");
    assert_eq!(viewer.role.as_deref(), Some("viewer"));
    let token = viewer.token().to_string();
    let id: &(dyn postgres::types::ToSql + Sync) = &admin_id;
    let calls: [(&str, Vec<&(dyn postgres::types::ToSql + Sync)>); 7] = [
        ("SELECT * FROM dashboard_auth.invite_admin($1, 'new@example.com', 'New')", vec![&token]),
        ("SELECT dashboard_auth.set_admin_role($1, $2::text::uuid, 'viewer')", vec![&token, id]),
        ("SELECT dashboard_auth.disable_admin($1, $2::text::uuid)", vec![&token, id]),
        ("SELECT dashboard_auth.enable_admin($1, $2::text::uuid)", vec![&token, id]),
        ("SELECT dashboard_auth.delete_admin($1, $2::text::uuid)", vec![&token, id]),
        ("SELECT * FROM dashboard_auth.set_setting($1, 'session.lifetime', '8h')", vec![&token]),
        ("SELECT * FROM dashboard_auth.reset_setting($1, 'session.lifetime')", vec![&token]),
    ];
    for (sql, params) in &calls {
        assert_eq!(sqlstate(as_dashboard(&mut web, sql, params)), "42501", "{sql}");
    }
    // Reading is allowed.
    for sql in [
        "SELECT * FROM dashboard_auth.get_session($1)",
        "SELECT * FROM dashboard_auth.list_admins($1)",
        "SELECT * FROM dashboard_auth.list_settings($1)",
    ] {
        assert!(as_dashboard(&mut web, sql, &[&token]).is_ok(), "{sql}");
    }
    let admins: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.dashboard_users WHERE role = 'admin' AND disabled_at IS NULL", &[]).unwrap().get(0);
    assert_eq!(admins, 1, "nothing changed");
}

#[test]
fn a_link_works_once_and_before_its_expiry() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let invite: String = su
        .query_one("SELECT invite_token FROM dashboard_auth.operator_create_admin('new@example.com', 'New Admin')", &[])
        .unwrap()
        .get(0);
    let mut web = db.connect(Caller::Dashboard);
    let info = as_dashboard(&mut web, "SELECT kind, email FROM dashboard_auth.get_link($1)", &[&invite]).unwrap();
    assert_eq!((info[0].get::<_, String>(0), info[0].get::<_, String>(1)), ("invite".into(), "new@example.com".into()));

    let redeem = |web: &mut postgres::Client, token: &str, password: &str| {
        login_result(as_dashboard_from(web, "192.0.2.7", "SELECT * FROM dashboard_auth.redeem_link($1, $2)", &[&token, &password]).unwrap())
    };
    assert_eq!(redeem(&mut web, &invite, "short").code, "weak_password", "a refused password does not spend the link");
    let first = redeem(&mut web, &invite, PASSWORD);
    assert!(first.ok, "{first:?}");
    assert_eq!(redeem(&mut web, &invite, PASSWORD).code, "invalid_link", "a link works once");
    assert!(login(&mut web, "new@example.com", PASSWORD, "192.0.2.7").ok);

    // A reset link that has expired.
    let reset: String = su
        .query_one("SELECT reset_token FROM dashboard_auth.operator_reset_admin_password('new@example.com')", &[])
        .unwrap()
        .get(0);
    su.batch_execute("UPDATE dashboard_auth.one_time_tokens SET expires_at = now() - interval '1 second' WHERE kind = 'reset'").unwrap();
    assert_eq!(redeem(&mut web, &reset, "another good passphrase here").code, "invalid_link");
    assert!(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.get_link($1)", &[&reset]).unwrap().is_empty());
    // Both refusals are in the audit log.
    let failures: Vec<String> = strings(&mut su, "SELECT details->>'reason' FROM dashboard_auth.audit_log WHERE action = 'link.redeem_failed' ORDER BY id", &[]);
    assert_eq!(failures, ["used", "expired"]);
}

#[test]
fn a_reset_and_a_password_change_end_the_other_sessions() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let laptop = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let phone = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.2");

    let change = |web: &mut postgres::Client, token: &str, current: &str, new: &str| -> (bool, String) {
        let row = &as_dashboard(web, "SELECT ok, code FROM dashboard_auth.change_password($1, $2, $3)", &[&token, &current, &new]).unwrap()[0];
        (row.get(0), row.get(1))
    };
    assert_eq!(change(&mut web, laptop.token(), "not my password", "brand new passphrase ok"), (false, "wrong_password".into()));
    assert_eq!(change(&mut web, laptop.token(), PASSWORD, "ann"), (false, "weak_password".into()));
    assert_eq!(change(&mut web, laptop.token(), PASSWORD, "brand new passphrase ok"), (true, "ok".into()));
    assert!(get_session(&mut web, laptop.token()).is_ok(), "the session that changed it stays");
    assert_eq!(sqlstate(get_session(&mut web, phone.token())), "28000", "the others end");
    assert!(login(&mut web, "ann@example.com", "brand new passphrase ok", "192.0.2.1").ok);

    // An operator's reset ends every session, including the current one.
    db.connect(Caller::Operator).query("SELECT * FROM dashboard_auth.operator_reset_admin_password('ann@example.com')", &[]).unwrap();
    assert_eq!(sqlstate(get_session(&mut web, laptop.token())), "28000");
}

#[test]
fn logout_and_logout_everywhere_else() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let a = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let b = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let c = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let others: i32 = as_dashboard(&mut web, "SELECT dashboard_auth.sign_out_others($1)", &[&a.token()]).unwrap()[0].get(0);
    assert_eq!(others, 2);
    assert_eq!(sqlstate(get_session(&mut web, b.token())), "28000");
    assert_eq!(sqlstate(get_session(&mut web, c.token())), "28000");
    as_dashboard(&mut web, "SELECT dashboard_auth.sign_out($1)", &[&a.token()]).unwrap();
    assert_eq!(sqlstate(get_session(&mut web, a.token())), "28000");
    let actions = admin::audit_actions(&db);
    assert!(actions.contains(&"admin.logout_others".to_string()) && actions.contains(&"admin.logout".to_string()), "{actions:?}");
}

#[test]
fn the_last_active_admin_can_be_neither_disabled_nor_deleted_nor_demoted() {
    let db = TestDb::new();
    let ann = create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    for sql in [
        "SELECT dashboard_auth.disable_admin($1, $2::text::uuid)",
        "SELECT dashboard_auth.delete_admin($1, $2::text::uuid)",
        "SELECT dashboard_auth.set_admin_role($1, $2::text::uuid, 'viewer')",
    ] {
        assert_eq!(sqlstate(as_dashboard(&mut web, sql, &[&token, &ann])), "55000", "{sql}");
    }
    let mut ops = db.connect(Caller::Operator);
    for sql in ["SELECT dashboard_auth.operator_disable_admin('ann@example.com')", "SELECT dashboard_auth.operator_delete_admin('ann@example.com')"] {
        let err = ops.batch_execute(sql).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "55000", "{sql}");
        assert!(err.as_db_error().unwrap().message().contains("last active admin"));
    }

    // With a second admin, the first can go.
    let bob = create_admin(&db, "bob@example.com", "admin");
    as_dashboard(&mut web, "SELECT dashboard_auth.disable_admin($1, $2::text::uuid)", &[&token, &bob]).unwrap();
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT dashboard_auth.delete_admin($1, $2::text::uuid)", &[&token, &ann])), "55000", "bob is disabled: ann is still the last");
    as_dashboard(&mut web, "SELECT dashboard_auth.enable_admin($1, $2::text::uuid)", &[&token, &bob]).unwrap();
    as_dashboard(&mut web, "SELECT dashboard_auth.set_admin_role($1, $2::text::uuid, 'viewer')", &[&token, &ann]).unwrap();
    let roles: Vec<(String, String)> = db
        .connect(Caller::Superuser)
        .query("SELECT email, role FROM dashboard_auth.dashboard_users ORDER BY email", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(roles[0], ("ann@example.com".into(), "viewer".into()));
}

#[test]
fn two_admins_disabling_each_other_at_once_leave_one_active() {
    let db = TestDb::new();
    let ann = create_admin(&db, "ann@example.com", "admin");
    let bob = create_admin(&db, "bob@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let ann_token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let bob_token = login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [(ann_token, bob), (bob_token, ann)]
        .into_iter()
        .map(|(token, target)| {
            let barrier = barrier.clone();
            let mut web = db.connect(Caller::Dashboard);
            std::thread::spawn(move || {
                barrier.wait();
                as_dashboard(&mut web, "SELECT dashboard_auth.disable_admin($1, $2::text::uuid)", &[&token, &target]).is_ok()
            })
        })
        .collect();
    let _ = handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>();
    let active: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.dashboard_users WHERE disabled_at IS NULL", &[]).unwrap().get(0);
    assert_eq!(active, 1);
}

#[test]
fn the_password_policy_gives_reasons_a_person_can_act_on() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let cases = [
        ("short", "at least 12 characters"),
        ("password1234", "most common passwords"),
        ("jane.doe.is.my.password", "email address"),
    ];
    for (password, reason) in cases {
        let err = su
            .query("SELECT * FROM dashboard_auth.operator_create_admin('jane.doe@example.com', 'Jane', 'admin', $1)", &[&password])
            .unwrap_err();
        let message = err.as_db_error().unwrap().message().to_string();
        assert!(message.contains(reason), "{password}: {message}");
        assert_eq!(err.code().unwrap().code(), "22023");
    }
}

#[test]
fn bad_input_is_refused_clearly_and_writes_nothing() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    let before: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.audit_log", &[]).unwrap().get(0);
    let cases: [(&str, &str, &str); 5] = [
        ("SELECT * FROM dashboard_auth.operator_create_admin('not an email', 'X')", "22023", "invalid email address"),
        ("SELECT * FROM dashboard_auth.operator_create_admin('a@b', 'X')", "22023", "invalid email address"),
        ("SELECT * FROM dashboard_auth.operator_create_admin('ANN@example.com', 'Again')", "23505", "exists already"),
        ("SELECT * FROM dashboard_auth.operator_create_admin('new@example.com', 'X', 'root')", "22023", "invalid role"),
        ("SELECT * FROM dashboard_auth.operator_reset_admin_password('ghost@example.com')", "P0002", "no admin with email"),
    ];
    for (sql, code, message) in cases {
        let err = su.query(sql, &[]).unwrap_err();
        assert_eq!(err.code().unwrap().code(), code, "{sql}: {err}");
        assert!(err.as_db_error().unwrap().message().contains(message), "{sql}: {err}");
    }
    let after: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.audit_log", &[]).unwrap().get(0);
    let admins: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    assert_eq!((after, admins), (before, 1), "nothing half-written");
}

#[test]
fn settings_are_validated_audited_and_only_overrides_are_stored() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let set = |web: &mut postgres::Client, key: &str, value: &str| {
        as_dashboard(web, "SELECT value FROM dashboard_auth.set_setting($1, $2, $3)", &[&token, &key, &value])
    };
    let refused = [
        ("password.min_length", "8", "between 12 and 128"),
        ("session.lifetime", "forever", "is not a duration"),
        ("session.idle_timeout", "30", "has no unit"),
        ("no.such.setting", "1", "unknown setting"),
    ];
    for (key, value, reason) in refused {
        let err = set(&mut web, key, value).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22023");
        assert!(err.as_db_error().unwrap().message().contains(reason), "{key}={value}: {err}");
    }
    assert_eq!(set(&mut web, "password.min_length", "16").unwrap()[0].get::<_, String>(0), "16");
    assert_eq!(set(&mut web, "session.idle_timeout", "1h 30m").unwrap()[0].get::<_, String>(0), "1h30m");

    let mut su = db.connect(Caller::Superuser);
    let stored: Vec<(String, i64)> = su
        .query("SELECT key, value::bigint FROM dashboard_auth.settings ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored, [("password.min_length".into(), 16), ("session.idle_timeout".into(), 5400)]);
    let change = su
        .query_one("SELECT actor, details FROM dashboard_auth.audit_log WHERE action = 'settings.changed' ORDER BY id LIMIT 1", &[])
        .unwrap();
    assert_eq!(change.get::<_, String>(0), "ann@example.com");
    assert_eq!(change.get::<_, serde_json::Value>(1), serde_json::json!({"old": "12", "new": "16"}));

    // Back to the default: the override row goes away.
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.reset_setting($1, 'password.min_length')", &[&token]).unwrap();
    set(&mut web, "session.idle_timeout", "30m").unwrap();
    let rows: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.settings", &[]).unwrap().get(0);
    assert_eq!(rows, 0);
}

#[test]
fn the_sessions_query_from_the_docs_works_for_an_operator() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let rows = db.connect(Caller::Operator).query("SELECT * FROM dashboard_auth.sessions ORDER BY created_at DESC;", &[]).unwrap();
    assert_eq!(rows.len(), 1);
    let ip: Option<std::net::IpAddr> = rows[0].get("ip");
    assert_eq!(ip, Some("192.0.2.1".parse().unwrap()));
}

#[test]
fn a_burst_of_logins_still_leaves_one_verifiable_chain() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let mut web = db.connect(Caller::Dashboard);
            std::thread::spawn(move || {
                for j in 0..4 {
                    let password = if j % 2 == 0 { PASSWORD } else { "wrong password here" };
                    login(&mut web, "ann@example.com", password, &format!("10.{i}.{j}.1"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut ops = db.connect(Caller::Operator);
    let (valid, entries, message) = admin::verify_chain(&mut ops);
    assert!(valid, "{message}");
    assert!(entries >= 25, "{entries}");
}

#[test]
fn an_open_transaction_elsewhere_does_not_block_a_login() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "bob@example.com", "admin");
    // An operator in psql: BEGIN, an audited command, and the transaction stays open.
    let mut psql = db.connect(Caller::Operator);
    let mut open = psql.transaction().unwrap();
    open.batch_execute("SELECT dashboard_auth.operator_unlock_admin('bob@example.com')").unwrap();

    let mut web = db.connect(Caller::Dashboard);
    web.batch_execute("SET statement_timeout = '5s'").unwrap();
    let started = Instant::now();
    let result = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    assert!(result.ok, "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    open.commit().unwrap();

    // Once it commits, the entries it held back are sealed and the chain verifies.
    let (valid, _, message) = admin::verify_chain(&mut db.connect(Caller::Operator));
    assert!(valid, "{message}");
    let pending: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE chain_seq IS NULL", &[]).unwrap().get(0);
    assert_eq!(pending, 0);
}

#[test]
fn the_audit_log_refuses_changes_from_everyone() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    for sql in [
        "UPDATE dashboard_auth.audit_log SET actor = 'someone else'",
        "DELETE FROM dashboard_auth.audit_log",
        "TRUNCATE dashboard_auth.audit_log",
        // Not even a forged seal of an already sealed entry.
        "UPDATE dashboard_auth.audit_log SET chain_seq = chain_seq + 100",
    ] {
        let err = su.batch_execute(sql).unwrap_err();
        assert!(err.as_db_error().unwrap().message().contains("append-only"), "{sql}: {err}");
    }
    let mut ops = db.connect(Caller::Operator);
    let err = ops.batch_execute("DELETE FROM dashboard_auth.audit_log").unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let (valid, _, message) = admin::verify_chain(&mut ops);
    assert!(valid, "{message}");
}

#[test]
fn verification_finds_a_tampered_entry() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "bob@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    // A superuser can switch the guard off; verification still catches the change.
    su.batch_execute(
        "ALTER TABLE dashboard_auth.audit_log DISABLE TRIGGER audit_log_append_only;
         UPDATE dashboard_auth.audit_log SET details = '{\"email\": \"mallory@example.com\"}' WHERE chain_seq = 1;
         ALTER TABLE dashboard_auth.audit_log ENABLE TRIGGER audit_log_append_only;",
    )
    .unwrap();
    let row = su.query_one("SELECT valid, first_invalid_seq FROM dashboard_auth.operator_verify_audit()", &[]).unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, Option<i64>>(1)), (false, Some(1)));
}

#[test]
fn admin_changes_refuse_an_old_snapshot_rather_than_race() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "bob@example.com", "admin");
    let mut ops = db.connect(Caller::Operator);
    let mut tx = ops.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).start().unwrap();
    let err = tx.batch_execute("SELECT dashboard_auth.operator_disable_admin('bob@example.com')").unwrap_err();
    assert_eq!(err.code().unwrap().code(), "25000", "{err}");
    assert!(err.as_db_error().unwrap().message().contains("READ COMMITTED"), "{err}");
}

#[test]
fn a_stolen_session_cannot_keep_guessing_the_password() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let stolen = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let mut codes = Vec::new();
    for i in 0..5 {
        let guess = format!("guess number {i} for it");
        match as_dashboard(&mut web, "SELECT code FROM dashboard_auth.change_password($1, $2, 'new passphrase that is fine')", &[&stolen.token(), &guess]) {
            Ok(rows) => codes.push(rows[0].get::<_, String>(0)),
            Err(e) => codes.push(e.code().unwrap().code().to_string()),
        }
    }
    assert_eq!(codes, ["wrong_password"; 5]);
    // The fifth wrong guess locked the account, and the lockout ended the session.
    assert_eq!(sqlstate(get_session(&mut web, stolen.token())), "28000");
}

#[test]
fn a_new_password_ends_older_links() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let reset: String = db
        .connect(Caller::Operator)
        .query_one("SELECT reset_token FROM dashboard_auth.operator_reset_admin_password('ann@example.com')", &[])
        .unwrap()
        .get(0);
    let mut web = db.connect(Caller::Dashboard);
    let session = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let changed = as_dashboard(&mut web, "SELECT ok FROM dashboard_auth.change_password($1, $2, 'a brand new passphrase')", &[&session.token(), &PASSWORD]).unwrap();
    assert!(changed[0].get::<_, bool>(0));
    let redeemed = login_result(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, 'takeover passphrase here')", &[&reset]).unwrap());
    assert_eq!(redeemed.code, "invalid_link", "a reset link printed before the change must not work after it");
}

#[test]
fn refusals_of_a_rate_limited_address_do_not_extend_its_ban() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("INSERT INTO dashboard_auth.settings (key, value, updated_by) VALUES ('lockout.ip_max_failures', '5', 'test')").unwrap();
    let mut web = db.connect(Caller::Dashboard);
    for i in 0..5 {
        login(&mut web, &format!("guess{i}@example.com"), "a guess of some kind", "192.0.2.99");
    }
    for _ in 0..3 {
        assert_eq!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.99").code, "rate_limited");
    }
    // The real failures age out of the window; the recent refusals do not keep it banned.
    su.batch_execute("UPDATE dashboard_auth.login_attempts SET attempted_at = now() - interval '16 minutes' WHERE reason <> 'ip_rate_limited'").unwrap();
    assert!(login(&mut web, "ann@example.com", PASSWORD, "192.0.2.99").ok);
}

fn audit_count(su: &mut postgres::Client, action: &str, target: &str) -> i64 {
    su.query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = $1 AND target_id = $2", &[&action, &target]).unwrap().get(0)
}

#[test]
fn an_admin_lists_and_ends_their_own_sessions_only() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let laptop = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let phone = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.2");
    let vic = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.3");
    let list = |web: &mut postgres::Client, token: &str| -> Vec<(String, String, bool)> {
        as_dashboard(web, "SELECT session_id::text, host(ip), current FROM dashboard_auth.list_sessions($1)", &[&token])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let mine = list(&mut web, laptop.token());
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert_eq!((mine[0].1.as_str(), mine[0].2), ("192.0.2.1", true), "this session first: {mine:?}");
    assert_eq!((mine[1].1.as_str(), mine[1].2), ("192.0.2.2", false));
    let agent: String = as_dashboard(&mut web, "SELECT user_agent FROM dashboard_auth.list_sessions($1) WHERE current", &[&laptop.token()]).unwrap()[0].get(0);
    assert_eq!(agent, "fluxbase-tests");
    let vic_sessions = list(&mut web, vic.token());
    assert_eq!(vic_sessions.len(), 1, "a viewer lists their own: {vic_sessions:?}");

    let revoke = |web: &mut postgres::Client, token: &str, id: &str| {
        admin::as_dashboard_from(web, "192.0.2.1", "SELECT ok, code FROM dashboard_auth.revoke_session($1, $2::text::uuid)", &[&token, &id])
    };
    // Another admin's session is refused as an unknown one is; bad input is refused clearly.
    assert_eq!(sqlstate(revoke(&mut web, laptop.token(), &vic_sessions[0].0)), "P0002");
    assert_eq!(sqlstate(revoke(&mut web, laptop.token(), "00000000-0000-0000-0000-000000000000")), "P0002");
    assert_eq!(sqlstate(revoke(&mut web, laptop.token(), "not a uuid")), "22P02");
    assert!(get_session(&mut web, vic.token()).is_ok(), "the viewer's session is untouched");

    // Ending the phone's session, from the laptop.
    let done = revoke(&mut web, laptop.token(), &mine[1].0).unwrap();
    assert_eq!((done[0].get::<_, bool>(0), done[0].get::<_, String>(1)), (true, "revoked".to_string()));
    assert_eq!(sqlstate(get_session(&mut web, phone.token())), "28000");
    assert!(get_session(&mut web, laptop.token()).is_ok());
    assert_eq!(sqlstate(revoke(&mut web, laptop.token(), &mine[1].0)), "P0002", "an ended session is no longer listed nor ended");
    // A viewer may end their own session: it changes nothing but their own sign-in.
    assert!(revoke(&mut web, vic.token(), &vic_sessions[0].0).unwrap()[0].get::<_, bool>(0));
    assert_eq!(sqlstate(get_session(&mut web, vic.token())), "28000");

    let mut su = db.connect(Caller::Superuser);
    let audited: i64 = su
        .query_one(
            "SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'admin.session_revoked' AND actor = 'ann@example.com'
                AND target_id = $1 AND details->>'current' = 'false' AND ip = '192.0.2.1'",
            &[&mine[1].0],
        )
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    let reason: String = su.query_one("SELECT revoked_reason FROM dashboard_auth.sessions WHERE id = $1::text::uuid", &[&mine[1].0]).unwrap().get(0);
    assert_eq!(reason, "revoked_by_owner");
}

/// get_session_health's (valid, reason, revoked_reason, seconds to the idle deadline).
fn health(web: &mut postgres::Client, token: &str) -> (bool, String, Option<String>, Option<f64>) {
    let row = &as_dashboard(
        web,
        "SELECT valid, reason, revoked_reason, extract(epoch FROM idle_expires_at - checked_at)::float8 FROM dashboard_auth.get_session_health($1)",
        &[&token],
    )
    .unwrap()[0];
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[test]
fn session_health_does_not_extend_the_idle_timeout_and_says_why_a_session_ended() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let mut su = db.connect(Caller::Superuser);
    let s = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    su.execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '20 minutes'", &[]).unwrap();
    let (valid, reason, _, idle_left) = health(&mut web, s.token());
    assert_eq!((valid, reason.as_str()), (true, "active"));
    let idle_left = idle_left.unwrap();
    assert!((9.0 * 60.0..=10.0 * 60.0).contains(&idle_left), "10 minutes left of 30, got {idle_left}s");
    // Asking did not count as activity: the session was not marked seen.
    let idle_for: f64 = su.query_one("SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM dashboard_auth.sessions", &[]).unwrap().get(0);
    assert!(idle_for >= 20.0 * 60.0, "last seen {idle_for}s ago");

    // Why a session ended, reported rather than raised.
    su.execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '31 minutes'", &[]).unwrap();
    assert_eq!(health(&mut web, s.token()).1, "idle");
    let expired = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    su.execute("UPDATE dashboard_auth.sessions SET expires_at = now() - interval '1 second' WHERE last_seen_at > now() - interval '1 minute'", &[]).unwrap();
    assert_eq!(health(&mut web, expired.token()).1, "expired");
    let out = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.sign_out($1)", &[&out.token()]).unwrap();
    let (valid, reason, revoked_reason, _) = health(&mut web, out.token());
    assert_eq!((valid, reason.as_str(), revoked_reason.as_deref()), (false, "revoked", Some("logout")));
    assert_eq!(health(&mut web, "fbs_made_up").1, "unknown");
    // A disabled admin's session ends with them.
    create_admin(&db, "bob@example.com", "admin");
    let bob = login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1");
    su.batch_execute("UPDATE dashboard_auth.dashboard_users SET disabled_at = now() WHERE email = 'bob@example.com'").unwrap();
    assert_eq!(health(&mut web, bob.token()).1, "disabled");
}

#[test]
fn admins_unlock_reset_and_reinvite_other_admins() {
    let db = TestDb::new();
    let ann_id = create_admin(&db, "ann@example.com", "admin");
    let bob_id = create_admin(&db, "bob@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut su = db.connect(Caller::Superuser);
    let new_id: String = su
        .query_one("SELECT admin_id::text FROM dashboard_auth.operator_create_admin('new@example.com', 'New', 'viewer')", &[])
        .unwrap()
        .get(0);
    let mut web = db.connect(Caller::Dashboard);
    let ann = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token().to_string();
    let vic = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token().to_string();
    let call = |web: &mut postgres::Client, sql: &str, token: &str, target: &str| {
        admin::as_dashboard_from(web, "192.0.2.1", sql, &[&token, &target])
    };
    const UNLOCK: &str = "SELECT ok, code FROM dashboard_auth.unlock_admin($1, $2::text::uuid)";
    const RESET: &str = "SELECT reset_token, reset_link FROM dashboard_auth.reset_admin_password($1, $2::text::uuid, interval '1 hour')";
    const REINVITE: &str = "SELECT invite_token, invite_link FROM dashboard_auth.reissue_invite($1, $2::text::uuid)";
    for sql in [UNLOCK, RESET, REINVITE] {
        assert_eq!(sqlstate(call(&mut web, sql, &vic, &bob_id)), "42501", "viewers are refused: {sql}");
        assert_eq!(sqlstate(call(&mut web, sql, &ann, "00000000-0000-0000-0000-000000000000")), "P0002", "{sql}");
    }

    // Unlock: bob's address is locked out; an admin lifts it.
    for _ in 0..5 {
        login(&mut web, "bob@example.com", "five wrong passwords", "203.0.113.5");
    }
    assert_eq!(login(&mut web, "bob@example.com", PASSWORD, "203.0.113.5").code, "invalid_credentials");
    let unlocked = call(&mut web, UNLOCK, &ann, &bob_id).unwrap();
    assert_eq!(unlocked[0].get::<_, String>(1), "unlocked");
    assert!(login(&mut web, "bob@example.com", PASSWORD, "203.0.113.5").ok);
    let details: serde_json::Value = su
        .query_one("SELECT details FROM dashboard_auth.audit_log WHERE action = 'admin.unlocked' AND actor = 'ann@example.com'", &[])
        .unwrap()
        .get(0);
    assert_eq!(details["locked_addresses"], 1);

    // Reset: a link (with the public URL set), and bob's sessions end at once.
    let bob_session = login(&mut web, "bob@example.com", PASSWORD, "192.0.2.9");
    let mut tx = web.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard; SET LOCAL fluxbase.public_url = 'https://admin.example.com'").unwrap();
    let row = tx.query_one(RESET, &[&ann, &bob_id]).unwrap();
    tx.commit().unwrap();
    let (reset_token, reset_link): (String, String) = (row.get(0), row.get(1));
    assert_eq!(reset_link, format!("https://admin.example.com/reset?token={reset_token}"));
    assert_eq!(sqlstate(get_session(&mut web, bob_session.token())), "28000");
    assert_eq!(sqlstate(call(&mut web, RESET, &ann, &ann_id)), "22023", "one's own password needs the current one");
    let redeemed = login_result(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, 'a fresh passphrase, never reused')", &[&reset_token]).unwrap());
    assert!(redeemed.ok, "{redeemed:?}");
    assert_eq!(audit_count(&mut su, "admin.password_reset", &bob_id), 1);

    // Reissue: the old invite stops working, the new one works; refused once accepted.
    let old: String = su
        .query_one("SELECT invite_token FROM dashboard_auth.operator_create_admin('late@example.com', 'Late', 'viewer')", &[])
        .unwrap()
        .get(0);
    let late_id: String = su.query_one("SELECT id::text FROM dashboard_auth.dashboard_users WHERE email = 'late@example.com'", &[]).unwrap().get(0);
    let fresh: String = call(&mut web, REINVITE, &ann, &late_id).unwrap()[0].get(0);
    assert_ne!(fresh, old);
    let stale = login_result(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, 'a fresh passphrase, never reused')", &[&old]).unwrap());
    assert_eq!(stale.code, "invalid_link", "the old invite link stops working");
    let fresh_invite: String = call(&mut web, REINVITE, &ann, &new_id).unwrap()[0].get(0);
    let accepted = login_result(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, 'a fresh passphrase, never reused')", &[&fresh_invite]).unwrap());
    assert!(accepted.ok, "{accepted:?}");
    assert_eq!(sqlstate(call(&mut web, REINVITE, &ann, &new_id)), "55000", "refused once accepted");
    assert_eq!(sqlstate(call(&mut web, REINVITE, &ann, &bob_id)), "55000");
    let bad = admin::as_dashboard_from(&mut web, "192.0.2.1", "SELECT * FROM dashboard_auth.reissue_invite($1, $2::text::uuid, interval '1 second')", &[&ann, &late_id]);
    assert_eq!(sqlstate(bad), "22023");
    assert_eq!(audit_count(&mut su, "admin.invite_reissued", &late_id), 1);
    let by_ann: i64 = su
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'admin.invite_reissued' AND actor = 'ann@example.com' AND ip = '192.0.2.1'", &[])
        .unwrap()
        .get(0);
    assert_eq!(by_ann, 2);
}
