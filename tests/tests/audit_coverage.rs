//! Audit coverage: one of every administrative action, driven through the public
//! functions as `fluxbase serve` calls them (the web role, SET LOCAL ROLE
//! fluxbase_dashboard, the client's address set per transaction) or as an operator runs
//! them (`fluxbase admin ...`, `fluxbase audit ...`), and for each the entry it must leave
//! in the audit log: the action, the actor, the target and a detail that says what
//! happened. Every action that is missing or wrong is listed at the end.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxbase_tests::admin::PASSWORD;
use fluxbase_tests::data_plane::for_each_data_login as data_logins;
use fluxbase_tests::{fluxbase, run, text, Caller, TestDb};
use postgres::types::ToSql;
use postgres::{Client, Row};
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

/// The client's address and user agent, as fluxbase serve passes them.
const IP: &str = "203.0.113.7";
const AGENT: &str = "coverage-test/1.0";
const BOB_PASSWORD: &str = "bright lantern over the harbour";
const BOB_NEW_PASSWORD: &str = "seven quiet herons at dusk";
const JOE_PASSWORD: &str = "orange submarine at dawn";
const SQL_SECRET: &str = "hunter2-never-in-the-log";

// ---------------------------------------------------------------------------------
// Calling as the web binary and as an operator
// ---------------------------------------------------------------------------------

/// One statement in its own transaction as fluxbase_dashboard, with the request's
/// address and user agent set for the transaction, as fluxbase serve does.
fn web(client: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE fluxbase_dashboard;
         SELECT set_config('fluxbase.client_ip', '{IP}', true), set_config('fluxbase.user_agent', '{AGENT}', true)"
    ))?;
    let rows = tx.query(sql, params)?;
    tx.commit()?;
    Ok(rows)
}

fn web_ok(client: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
    web(client, sql, params).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// A signed-in admin's session on a web connection.
struct Session {
    client: Client,
    token: String,
}

impl Session {
    fn call(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&self.token];
        all.extend_from_slice(params);
        web_ok(&mut self.client, sql, &all)
    }
}

impl Session {
    /// A ticket for data-plane work, from the dashboard login (committed, with the
    /// request's address and user agent, as fluxbase serve takes it).
    fn ticket(&mut self, operation: &str, request: &Value, impersonation: Option<&str>) -> String {
        let request = request.to_string();
        self.call("SELECT fluxbase_admin.issue_ticket($1, $2, $3::text::jsonb, $4::text::uuid)", &[&operation, &request, &impersonation])[0].get(0)
    }
}

/// Claims `ticket` on the data login and runs `sql` (which returns jsonb as text) in the
/// same transaction, committed.
fn on_data(data: &mut Client, ticket: &str, sql: &str) -> Value {
    let rows = fluxbase_tests::data_plane::claimed(data, ticket, sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    serde_json::from_str(&rows[0].get::<_, String>(0)).unwrap()
}


/// `dashboard_auth.sign_in` from the test's address: (ok, code, session, challenge).
fn sign_in(client: &mut Client, email: &str, password: &str) -> (bool, String, Option<String>, Option<String>) {
    let r = &web_ok(
        client,
        "SELECT ok, code, session_token, challenge_token FROM dashboard_auth.sign_in($1, $2)",
        &[&email, &password],
    )[0];
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

fn session(db: &TestDb, email: &str, password: &str) -> Session {
    let mut client = db.connect(Caller::Dashboard);
    let (ok, code, token, _) = sign_in(&mut client, email, password);
    assert!(ok, "sign-in of {email}: {code}");
    Session { client, token: token.unwrap() }
}

/// `fluxbase admin <args>` as the operator role; returns stdout.
fn admin_cli(db: &TestDb, args: &[&str]) -> String {
    let output = run(fluxbase()
        .arg("admin")
        .args(args)
        .env("DATABASE_URL", db.url(Caller::Operator, "sslmode=disable"))
        .env("FLUXBASE_ADMIN_PUBLIC_URL", "https://admin.example.com"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "fluxbase admin {args:?}: {stderr}");
    stdout
}

/// `fluxbase audit <args>` as the operator role; returns stdout.
fn audit_cli(db: &TestDb, args: &[&str]) -> String {
    let output = run(fluxbase().arg("audit").args(args).env("DATABASE_URL", db.url(Caller::Operator, "sslmode=disable")));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "fluxbase audit {args:?}: {stderr}");
    stdout
}

fn link_token(stdout: &str, path: &str) -> String {
    let prefix = format!("https://admin.example.com/{path}?token=");
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {path} link in:\n{stdout}"))
        .to_string()
}

/// An authenticator app (see two_factor.rs): the code `offset` steps from now,
/// computed away from a step boundary.
struct Authenticator(TOTP);

impl Authenticator {
    fn new(base32: &str) -> Self {
        Authenticator(TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, Secret::Encoded(base32.to_string()).to_bytes().unwrap()))
    }

    fn code(&self, offset: i64) -> String {
        let into_step = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 30;
        if into_step >= 27 {
            std::thread::sleep(Duration::from_secs(31 - into_step));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        self.0.generate((now + offset * 30) as u64)
    }
}

/// Starts and confirms 2FA for the session's admin with the previous step's code;
/// returns the app, its secret and the recovery codes.
fn enrol(s: &mut Session) -> (Authenticator, String, Vec<String>) {
    let secret: String = s.call("SELECT secret FROM dashboard_auth.start_two_factor($1, $2)", &[&PASSWORD])[0].get(0);
    let app = Authenticator::new(&secret);
    let r = &s.call("SELECT ok, code, recovery_codes FROM dashboard_auth.confirm_two_factor($1, $2)", &[&app.code(-1)])[0];
    assert!(r.get::<_, bool>(0), "confirm: {}", r.get::<_, String>(1));
    (app, secret, r.get(2))
}

// ---------------------------------------------------------------------------------
// What each action must leave
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Entry {
    id: i64,
    actor_type: String,
    actor: String,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    details: Value,
    ip: Option<String>,
    user_agent: Option<String>,
}

fn entries_after(su: &mut Client, mark: i64) -> Vec<Entry> {
    su.query(
        "SELECT id, actor_type, actor, action, target_type, target_id, details, host(ip), user_agent
           FROM dashboard_auth.audit_log WHERE id > $1 ORDER BY id",
        &[&mark],
    )
    .unwrap()
    .iter()
    .map(|r| Entry {
        id: r.get(0),
        actor_type: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        target_type: r.get(4),
        target_id: r.get(5),
        details: r.get(6),
        ip: r.get(7),
        user_agent: r.get(8),
    })
    .collect()
}

/// A detail an entry must carry: the value at a JSON pointer, or only that it is set.
enum Detail {
    Is(&'static str, Value),
    Set(&'static str),
    Contains(&'static str, &'static str),
}

struct Expect {
    action: &'static str,
    actor_type: &'static str,
    actor: String,
    /// (target_type, target_id); a None id means the entry has no target id.
    target: Option<(&'static str, Option<String>)>,
    details: Vec<Detail>,
    /// The request's address and user agent must be recorded.
    from_client: bool,
}

fn by(actor_type: &'static str, actor: &str, action: &'static str) -> Expect {
    Expect { action, actor_type, actor: actor.to_string(), target: None, details: Vec::new(), from_client: false }
}

impl Expect {
    fn target(mut self, kind: &'static str, id: &str) -> Self {
        self.target = Some((kind, Some(id.to_string())));
        self
    }
    fn no_target_id(mut self, kind: &'static str) -> Self {
        self.target = Some((kind, None));
        self
    }
    fn is(mut self, pointer: &'static str, value: Value) -> Self {
        self.details.push(Detail::Is(pointer, value));
        self
    }
    fn set(mut self, pointer: &'static str) -> Self {
        self.details.push(Detail::Set(pointer));
        self
    }
    fn contains(mut self, pointer: &'static str, part: &'static str) -> Self {
        self.details.push(Detail::Contains(pointer, part));
        self
    }
    fn from_client(mut self) -> Self {
        self.from_client = true;
        self
    }

    fn problems(&self, e: &Entry) -> Vec<String> {
        let mut wrong = Vec::new();
        if e.actor_type != self.actor_type || e.actor != self.actor {
            wrong.push(format!("actor {}/{} instead of {}/{}", e.actor_type, e.actor, self.actor_type, self.actor));
        }
        if let Some((kind, id)) = &self.target {
            if e.target_type.as_deref() != Some(*kind) || e.target_id.as_deref() != id.as_deref() {
                wrong.push(format!("target {:?}/{:?} instead of {kind}/{id:?}", e.target_type, e.target_id));
            }
        }
        for detail in &self.details {
            match detail {
                Detail::Is(pointer, value) => {
                    if e.details.pointer(pointer) != Some(value) {
                        wrong.push(format!("details{pointer} is {:?}, not {value}", e.details.pointer(pointer)));
                    }
                }
                Detail::Set(pointer) => {
                    if e.details.pointer(pointer).is_none_or(Value::is_null) {
                        wrong.push(format!("details{pointer} is not set"));
                    }
                }
                Detail::Contains(pointer, part) => {
                    if !e.details.pointer(pointer).and_then(Value::as_str).is_some_and(|s| s.contains(part)) {
                        wrong.push(format!("details{pointer} does not contain {part:?}"));
                    }
                }
            }
        }
        if self.from_client && (e.ip.as_deref() != Some(IP) || e.user_agent.as_deref() != Some(AGENT)) {
            wrong.push(format!("ip/user agent {:?}/{:?} instead of {IP}/{AGENT}", e.ip, e.user_agent));
        }
        wrong
    }
}

/// The checks: a mark before each step, then what the step must have left.
struct Coverage {
    su: Client,
    mark: i64,
    checked: Vec<String>,
    missing: Vec<String>,
    wrong: Vec<String>,
}

impl Coverage {
    fn new(db: &TestDb) -> Self {
        Coverage { su: db.connect(Caller::Superuser), mark: 0, checked: Vec::new(), missing: Vec::new(), wrong: Vec::new() }
    }

    /// Starts a step: only entries written after this count for it.
    fn step(&mut self) {
        self.mark = self.su.query_one("SELECT coalesce(max(id), 0) FROM dashboard_auth.audit_log", &[]).unwrap().get(0);
    }

    /// The entry `label` must have left since the step began; returns it when found.
    fn expect(&mut self, label: &str, expect: Expect) -> Option<Entry> {
        self.checked.push(format!("{:<40} {label}", expect.action));
        let candidates: Vec<Entry> = entries_after(&mut self.su, self.mark).into_iter().filter(|e| e.action == expect.action).collect();
        if candidates.is_empty() {
            self.missing.push(format!("{} ({label}): no entry", expect.action));
            return None;
        }
        if let Some(found) = candidates.iter().find(|e| expect.problems(e).is_empty()) {
            return Some(found.clone());
        }
        let first = &candidates[0];
        self.wrong.push(format!("{} ({label}), entry {}: {}", expect.action, first.id, expect.problems(first).join("; ")));
        None
    }

    /// How many entries with `action` the step left.
    fn count(&mut self, action: &str) -> usize {
        entries_after(&mut self.su, self.mark).iter().filter(|e| e.action == action).count()
    }
}

#[test]
fn every_administrative_action_is_audited_with_actor_target_and_details() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.orders (id int PRIMARY KEY, status text NOT NULL, qty int NOT NULL DEFAULT 1);
         INSERT INTO public.orders VALUES (1, 'new', 1), (2, 'new', 2), (3, 'paid', 3);
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO service_role, authenticated;
         DO $$ BEGIN CREATE ROLE fluxbase_cov_editor NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
    )
    .unwrap();
    let mut cov = Coverage::new(&db);
    let mut anonymous = db.connect(Caller::Dashboard);
    let mut secrets: Vec<String> =
        vec![PASSWORD.into(), BOB_PASSWORD.into(), BOB_NEW_PASSWORD.into(), JOE_PASSWORD.into(), SQL_SECRET.into()];
    let admin_id = |su: &mut Client, email: &str| -> String {
        su.query_one("SELECT id::text FROM dashboard_auth.dashboard_users WHERE email = $1", &[&email]).unwrap().get(0)
    };

    // ----- Admin accounts ------------------------------------------------------------

    // First-run setup: the setup link (by the web binary's role), then setup itself.
    cov.step();
    let setup_token: String = web_ok(&mut anonymous, "SELECT token FROM dashboard_auth.create_setup_link()", &[])[0].get(0);
    secrets.push(setup_token.clone());
    let setup_link = cov.expect(
        "setup link created",
        by("system", "fluxbase_web", "link.created").no_target_id("admin").is("/kind", json!("setup")).set("/link_id").from_client(),
    );
    cov.step();
    let r = &web_ok(
        &mut anonymous,
        "SELECT ok, code, session_token, admin_id::text FROM dashboard_auth.complete_setup($1, 'ann@example.com', 'Ann', $2)",
        &[&setup_token, &PASSWORD],
    )[0];
    assert!(r.get::<_, bool>(0), "setup: {}", r.get::<_, String>(1));
    let (ann_setup_token, ann): (String, String) = (r.get(2), r.get(3));
    secrets.push(ann_setup_token.clone());
    let mut e = by("admin", "ann@example.com", "admin.setup").target("admin", &ann).from_client();
    if let Some(link) = &setup_link {
        e = e.is("/link_id", link.details["link_id"].clone());
    }
    cov.expect("first admin set up", e);
    cov.expect("signed in by setup", by("admin", "ann@example.com", "admin.login").target("admin", &ann).is("/via", json!("setup")).from_client());
    let cut_for_purge = {
        std::thread::sleep(Duration::from_millis(200));
        let t: String = su.query_one("SELECT clock_timestamp()::text", &[]).unwrap().get(0);
        std::thread::sleep(Duration::from_millis(200));
        t
    };

    // An operator creates an admin (break-glass): an invite link is printed.
    cov.step();
    let stdout = admin_cli(&db, &["create-user", "--email", "carl@example.com", "--name", "Carl"]);
    secrets.push(link_token(&stdout, "invite"));
    let carl = admin_id(&mut su, "carl@example.com");
    cov.expect(
        "operator creates an admin",
        by("operator", "fluxbase_ops", "admin.created").target("admin", &carl).is("/email", json!("carl@example.com")).is("/with_password", json!(false)),
    );
    cov.expect("operator's invite link", by("operator", "fluxbase_ops", "link.created").target("admin", &carl).is("/kind", json!("invite")));

    // A superuser creates one with a password.
    cov.step();
    su.execute("SELECT dashboard_auth.operator_create_admin('dave@example.com', 'Dave', 'admin', $1)", &[&PASSWORD]).unwrap();
    let dave = admin_id(&mut su, "dave@example.com");
    cov.expect(
        "superuser creates an admin with a password",
        by("operator", "postgres", "admin.created").target("admin", &dave).is("/with_password", json!(true)),
    );

    // Ann signs in, and fails once.
    cov.step();
    let mut ann_s = session(&db, "ann@example.com", PASSWORD);
    secrets.push(ann_s.token.clone());
    cov.expect("sign-in", by("admin", "ann@example.com", "admin.login").target("admin", &ann).is("/via", json!("password")).is("/reason", json!("ok")).from_client());
    cov.step();
    assert!(!sign_in(&mut anonymous, "Ann@Example.com", "not her password at all").0);
    cov.expect(
        "failed sign-in",
        by("anonymous", "ann@example.com", "admin.login_failed").target("admin", &ann).is("/reason", json!("wrong_password")).from_client(),
    );

    // Ann invites Bob, who redeems the link.
    cov.step();
    let r = &ann_s.call("SELECT admin_id::text, invite_token FROM dashboard_auth.invite_admin($1, 'bob@example.com', 'Bob', 'admin')", &[])[0];
    let (bob, bob_invite): (String, String) = (r.get(0), r.get(1));
    secrets.push(bob_invite.clone());
    cov.expect(
        "admin invites an admin",
        by("admin", "ann@example.com", "admin.created").target("admin", &bob).is("/email", json!("bob@example.com")).is("/role", json!("admin")).from_client(),
    );
    let invite_link = cov.expect("invite link", by("admin", "ann@example.com", "link.created").target("admin", &bob).is("/kind", json!("invite")).from_client());
    let invite_link_id = invite_link.map(|e| e.details["link_id"].as_str().unwrap_or_default().to_string()).unwrap_or_default();
    cov.step();
    let r = &web_ok(
        &mut anonymous,
        "SELECT ok, code, session_token FROM dashboard_auth.redeem_link($1, $2)",
        &[&bob_invite, &BOB_PASSWORD],
    )[0];
    assert!(r.get::<_, bool>(0), "redeem: {}", r.get::<_, String>(1));
    secrets.push(r.get(2));
    cov.expect(
        "invite redeemed",
        by("admin", "bob@example.com", "link.redeemed").target("link", &invite_link_id).is("/kind", json!("invite")).from_client(),
    );
    cov.expect("signed in by the invite", by("admin", "bob@example.com", "admin.login").target("admin", &bob).is("/via", json!("invite")).from_client());

    // Sign-out, and signing out the other sessions.
    let mut setup_s = Session { client: db.connect(Caller::Dashboard), token: ann_setup_token.clone() };
    let setup_session_id: String = setup_s.call("SELECT session_id::text FROM dashboard_auth.get_session($1)", &[])[0].get(0);
    cov.step();
    setup_s.call("SELECT dashboard_auth.sign_out($1)", &[]);
    cov.expect("sign-out", by("admin", "ann@example.com", "admin.logout").target("session", &setup_session_id).from_client());
    let spare = session(&db, "ann@example.com", PASSWORD);
    secrets.push(spare.token.clone());
    cov.step();
    ann_s.call("SELECT dashboard_auth.sign_out_others($1)", &[]);
    cov.expect(
        "sign out the other sessions",
        by("admin", "ann@example.com", "admin.logout_others").target("admin", &ann).is("/sessions_revoked", json!(1)).from_client(),
    );

    // Role, disable, enable.
    cov.step();
    ann_s.call("SELECT dashboard_auth.set_admin_role($1, $2::text::uuid, 'viewer')", &[&bob]);
    cov.expect(
        "role change",
        by("admin", "ann@example.com", "admin.role_changed").target("admin", &bob).is("/old", json!("admin")).is("/new", json!("viewer")).from_client(),
    );
    cov.step();
    ann_s.call("SELECT dashboard_auth.disable_admin($1, $2::text::uuid)", &[&carl]);
    cov.expect("disable", by("admin", "ann@example.com", "admin.disabled").target("admin", &carl).is("/sessions_revoked", json!(0)).from_client());
    cov.step();
    ann_s.call("SELECT dashboard_auth.enable_admin($1, $2::text::uuid)", &[&carl]);
    cov.expect("enable", by("admin", "ann@example.com", "admin.enabled").target("admin", &carl).from_client());

    // A password reset link (operator), redeemed, then redeemed again.
    cov.step();
    let stdout = admin_cli(&db, &["reset-password", "--email", "bob@example.com"]);
    let bob_reset = link_token(&stdout, "reset");
    secrets.push(bob_reset.clone());
    cov.expect(
        "operator resets a password",
        by("operator", "fluxbase_ops", "admin.password_reset").target("admin", &bob).is("/sessions_revoked", json!(1)),
    );
    let reset_link = cov.expect("reset link", by("operator", "fluxbase_ops", "link.created").target("admin", &bob).is("/kind", json!("reset")));
    let reset_link_id = reset_link.map(|e| e.details["link_id"].as_str().unwrap_or_default().to_string()).unwrap_or_default();
    cov.step();
    let r = &web_ok(
        &mut anonymous,
        "SELECT ok, code, session_token FROM dashboard_auth.redeem_link($1, $2)",
        &[&bob_reset, &BOB_PASSWORD],
    )[0];
    assert!(r.get::<_, bool>(0), "redeem reset: {}", r.get::<_, String>(1));
    let mut bob_s = Session { client: db.connect(Caller::Dashboard), token: r.get(2) };
    secrets.push(bob_s.token.clone());
    cov.expect("reset link redeemed", by("admin", "bob@example.com", "link.redeemed").target("link", &reset_link_id).is("/kind", json!("reset")).from_client());
    cov.step();
    let r = &web_ok(&mut anonymous, "SELECT ok FROM dashboard_auth.redeem_link($1, $2)", &[&bob_reset, &BOB_PASSWORD])[0];
    assert!(!r.get::<_, bool>(0));
    cov.expect(
        "used link redeemed again",
        by("anonymous", "bob@example.com", "link.redeem_failed").target("link", &reset_link_id).is("/reason", json!("used")).from_client(),
    );

    // Bob changes his password (a viewer may), after a wrong try.
    cov.step();
    let r = &bob_s.call("SELECT ok FROM dashboard_auth.change_password($1, 'this is not it at all', $2)", &[&BOB_NEW_PASSWORD])[0];
    assert!(!r.get::<_, bool>(0));
    cov.expect(
        "password change with a wrong password",
        by("admin", "bob@example.com", "admin.password_change_failed").target("admin", &bob).is("/reason", json!("wrong_password")).from_client(),
    );
    cov.step();
    let r = &bob_s.call("SELECT ok, message FROM dashboard_auth.change_password($1, $2, $3)", &[&BOB_PASSWORD, &BOB_NEW_PASSWORD])[0];
    assert!(r.get::<_, bool>(0), "change_password: {}", r.get::<_, String>(1));
    cov.expect("password changed", by("admin", "bob@example.com", "admin.password_changed").target("admin", &bob).is("/sessions_revoked", json!(0)).from_client());

    // A lockout (by the extension itself), lifted by an operator.
    cov.step();
    for _ in 0..5 {
        assert!(!sign_in(&mut anonymous, "dave@example.com", "five wrong passwords in a row").0);
    }
    cov.expect("lockout after five failures", by("system", "fluxbase_admin", "admin.locked").target("admin", &dave).is("/lockout", json!(1)).set("/locked_until"));
    cov.step();
    admin_cli(&db, &["unlock", "--email", "dave@example.com"]);
    cov.expect("operator unlocks", by("operator", "fluxbase_ops", "admin.unlocked").target("admin", &dave));

    // Operator disable/enable, and deletions by an admin and by an operator.
    cov.step();
    admin_cli(&db, &["disable", "--email", "dave@example.com"]);
    cov.expect("operator disables", by("operator", "fluxbase_ops", "admin.disabled").target("admin", &dave).set("/sessions_revoked"));
    cov.step();
    admin_cli(&db, &["enable", "--email", "dave@example.com"]);
    cov.expect("operator enables", by("operator", "fluxbase_ops", "admin.enabled").target("admin", &dave));
    cov.step();
    ann_s.call("SELECT dashboard_auth.delete_admin($1, $2::text::uuid)", &[&carl]);
    cov.expect(
        "admin deletes an admin",
        by("admin", "ann@example.com", "admin.deleted").target("admin", &carl).is("/email", json!("carl@example.com")).from_client(),
    );
    cov.step();
    admin_cli(&db, &["delete-user", "--email", "dave@example.com", "--yes"]);
    cov.expect("operator deletes an admin", by("operator", "fluxbase_ops", "admin.deleted").target("admin", &dave).is("/email", json!("dave@example.com")));

    // ----- Two-factor sign-in ------------------------------------------------------

    cov.step();
    let secret: String = ann_s.call("SELECT secret FROM dashboard_auth.start_two_factor($1, $2)", &[&PASSWORD])[0].get(0);
    secrets.push(secret.clone());
    let app = Authenticator::new(&secret);
    cov.expect("2FA enrolment started", by("admin", "ann@example.com", "admin.2fa_enrolment_started").target("admin", &ann).from_client());
    cov.step();
    let wrong = if app.code(0) == "000000" { "111111" } else { "000000" };
    let r = &ann_s.call("SELECT ok FROM dashboard_auth.confirm_two_factor($1, $2)", &[&wrong])[0];
    assert!(!r.get::<_, bool>(0));
    cov.expect("2FA wrong code at enrolment", by("admin", "ann@example.com", "admin.2fa_code_failed").target("admin", &ann).is("/during", json!("enrolment")).from_client());
    cov.step();
    let r = &ann_s.call("SELECT ok, code, recovery_codes FROM dashboard_auth.confirm_two_factor($1, $2)", &[&app.code(-1)])[0];
    assert!(r.get::<_, bool>(0), "confirm: {}", r.get::<_, String>(1));
    secrets.extend(r.get::<_, Vec<String>>(2));
    cov.expect("2FA enabled", by("admin", "ann@example.com", "admin.2fa_enabled").target("admin", &ann).is("/recovery_codes", json!(10)).from_client());

    // A two-step sign-in.
    cov.step();
    let (ok, code, _, challenge) = sign_in(&mut anonymous, "ann@example.com", PASSWORD);
    assert_eq!((ok, code.as_str()), (false, "second_factor_required"));
    let challenge = challenge.unwrap();
    secrets.push(challenge.clone());
    cov.expect(
        "password step of a 2FA sign-in",
        by("anonymous", "ann@example.com", "admin.login_failed").target("admin", &ann).is("/reason", json!("second_factor_pending")).from_client(),
    );
    cov.step();
    let r = &web_ok(
        &mut anonymous,
        "SELECT ok, code, session_token FROM dashboard_auth.sign_in_second_factor($1, $2)",
        &[&challenge, &app.code(0)],
    )[0];
    assert!(r.get::<_, bool>(0), "second factor: {}", r.get::<_, String>(1));
    secrets.push(r.get(2));
    cov.expect("code step of a 2FA sign-in", by("admin", "ann@example.com", "admin.login").target("admin", &ann).is("/via", json!("totp")).from_client());

    // New recovery codes, then 2FA off with one of them.
    cov.step();
    let r = &ann_s.call("SELECT ok, code, recovery_codes FROM dashboard_auth.regenerate_recovery_codes($1, $2, $3)", &[&PASSWORD, &app.code(1)])[0];
    assert!(r.get::<_, bool>(0), "regenerate: {}", r.get::<_, String>(1));
    let codes: Vec<String> = r.get(2);
    secrets.extend(codes.clone());
    cov.expect(
        "recovery codes regenerated",
        by("admin", "ann@example.com", "admin.recovery_codes_regenerated").target("admin", &ann).is("/recovery_codes", json!(10)).from_client(),
    );
    cov.step();
    let r = &ann_s.call("SELECT ok, code FROM dashboard_auth.disable_two_factor($1, $2, $3)", &[&PASSWORD, &codes[0]])[0];
    assert!(r.get::<_, bool>(0), "disable_two_factor: {}", r.get::<_, String>(1));
    cov.expect("recovery code used", by("admin", "ann@example.com", "admin.recovery_code_used").target("admin", &ann).is("/remaining", json!(9)).from_client());
    cov.expect("2FA disabled by the admin", by("admin", "ann@example.com", "admin.2fa_disabled").target("admin", &ann).from_client());

    // On again, then off by an operator (lost device): every session ends.
    let (_, secret2, codes2) = enrol(&mut ann_s);
    secrets.push(secret2);
    secrets.extend(codes2);
    cov.step();
    admin_cli(&db, &["disable-2fa", "--email", "ann@example.com"]);
    cov.expect(
        "2FA disabled by an operator",
        by("operator", "fluxbase_ops", "admin.2fa_disabled").target("admin", &ann).is("/by_operator", json!(true)).set("/sessions_revoked"),
    );
    let mut ann_s = session(&db, "ann@example.com", PASSWORD);
    secrets.push(ann_s.token.clone());

    // ----- Settings --------------------------------------------------------------------

    cov.step();
    ann_s.call("SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '1h')", &[]);
    cov.expect(
        "setting changed",
        by("admin", "ann@example.com", "settings.changed").target("setting", "session.idle_timeout").is("/old", json!("30m")).is("/new", json!("1h")).from_client(),
    );
    cov.step();
    ann_s.call("SELECT * FROM dashboard_auth.reset_setting($1, 'session.idle_timeout')", &[]);
    cov.expect(
        "setting reset",
        by("admin", "ann@example.com", "settings.changed").target("setting", "session.idle_timeout").is("/old", json!("1h")).is("/new", json!("30m")).from_client(),
    );
    cov.step();
    // Every data login must be a member of a listed role first. The membership is taken
    // back at once: the data login is cluster-wide, and a membership that no database
    // lists makes every other database's claims refuse it.
    data_logins(&mut su, "GRANT fluxbase_cov_editor TO %I");
    let listed = web(&mut ann_s.client, "SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', 'fluxbase_cov_editor')", &[&ann_s.token]);
    data_logins(&mut su, "REVOKE fluxbase_cov_editor FROM %I");
    listed.unwrap();
    cov.expect(
        "extra app user roles",
        by("admin", "ann@example.com", "settings.changed").target("setting", "users.extra_roles").is("/new", json!("fluxbase_cov_editor")).from_client(),
    );

    // ----- App users -------------------------------------------------------------------

    cov.step();
    let r = &ann_s.call("SELECT user_id::text, invite_token FROM auth.invite_user($1, 'joe@example.com')", &[])[0];
    let (joe, joe_invite): (String, String) = (r.get(0), r.get(1));
    secrets.push(joe_invite.clone());
    cov.expect(
        "app user invited",
        by("admin", "ann@example.com", "user.invited").target("user", &joe).is("/email", json!("joe@example.com")).is("/role", json!("authenticated")).from_client(),
    );
    // Joe accepts and signs in (the application's functions, as service_role).
    let mut service = db.connect(Caller::Superuser);
    let app_call = |c: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]| -> Row {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL ROLE service_role").unwrap();
        let row = tx.query_one(sql, params).unwrap();
        tx.commit().unwrap();
        row
    };
    assert!(app_call(&mut service, "SELECT ok FROM auth.accept_invite($1, $2)", &[&joe_invite, &JOE_PASSWORD]).get::<_, bool>(0));
    let joe_sign_in = |c: &mut Client| -> String {
        let r = app_call(c, "SELECT ok, session_token FROM auth.sign_in('joe@example.com', $1)", &[&JOE_PASSWORD]);
        assert!(r.get::<_, bool>(0));
        r.get(1)
    };
    secrets.push(joe_sign_in(&mut service));

    cov.step();
    ann_s.call("SELECT count(*) FROM auth.list_users($1, search => 'joe')", &[]);
    cov.expect("app users listed", by("admin", "ann@example.com", "users.listed").no_target_id("users").is("/search", json!("joe")).from_client());
    cov.step();
    ann_s.call("SELECT * FROM auth.get_user($1, $2::text::uuid)", &[&joe]);
    cov.expect("app user viewed", by("admin", "ann@example.com", "user.viewed").target("user", &joe).from_client());
    cov.step();
    ann_s.call("SELECT auth.set_user_role($1, $2::text::uuid, 'fluxbase_cov_editor')", &[&joe]);
    cov.expect(
        "app user's role changed",
        by("admin", "ann@example.com", "user.role_changed").target("user", &joe).is("/old", json!("authenticated")).is("/new", json!("fluxbase_cov_editor")).from_client(),
    );
    ann_s.call("SELECT auth.set_user_role($1, $2::text::uuid, 'authenticated')", &[&joe]);
    cov.step();
    ann_s.call("SELECT auth.update_user_metadata($1, $2::text::uuid, '{\"plan\": \"pro\"}')", &[&joe]);
    cov.expect(
        "app user's metadata changed",
        by("admin", "ann@example.com", "user.metadata_changed").target("user", &joe).is("/new/app_metadata/plan", json!("pro")).is("/old/app_metadata", json!({})).from_client(),
    );
    cov.step();
    ann_s.call("SELECT auth.ban_user($1, $2::text::uuid, now() + interval '1 day', 'spam')", &[&joe]);
    cov.expect(
        "app user banned",
        by("admin", "ann@example.com", "user.banned").target("user", &joe).is("/reason", json!("spam")).is("/sessions_revoked", json!(1)).set("/until").from_client(),
    );
    cov.step();
    ann_s.call("SELECT auth.unban_user($1, $2::text::uuid)", &[&joe]);
    cov.expect("app user unbanned", by("admin", "ann@example.com", "user.unbanned").target("user", &joe).set("/was_banned_until").from_client());
    secrets.push(joe_sign_in(&mut service));
    cov.step();
    let recovery: String = ann_s.call("SELECT recovery_token FROM auth.reset_user_password($1, $2::text::uuid)", &[&joe])[0].get(0);
    secrets.push(recovery);
    cov.expect("app user's password reset", by("admin", "ann@example.com", "user.password_reset").target("user", &joe).is("/sessions_revoked", json!(1)).from_client());
    secrets.push(joe_sign_in(&mut service));
    cov.step();
    ann_s.call("SELECT auth.revoke_user_sessions($1, $2::text::uuid)", &[&joe]);
    cov.expect("app user's sessions revoked", by("admin", "ann@example.com", "user.sessions_revoked").target("user", &joe).is("/sessions_revoked", json!(1)).from_client());

    // ----- Impersonation ---------------------------------------------------------------

    cov.step();
    let r = &ann_s.call(
        "SELECT ok, message, impersonation_id::text FROM auth.start_impersonation($1, 'user', 'joe@example.com', 'ticket 7')",
        &[],
    )[0];
    assert!(r.get::<_, bool>(0), "start_impersonation: {}", r.get::<_, String>(1));
    let imp: String = r.get(2);
    cov.expect(
        "impersonation started",
        by("admin", "ann@example.com", "impersonation.started")
            .target("impersonation", &imp)
            .is("/target_user_id", json!(joe))
            .is("/reason", json!("ticket 7"))
            .is("/mode", json!("user"))
            .from_client(),
    );
    // Work as the user, on the data plane: each ticket records its intent.
    let mut data = db.connect(Caller::Data);
    cov.step();
    let ticket = ann_s.ticket("browse", &json!({"schema": "public", "table": "orders"}), Some(&imp));
    let intent = cov.expect(
        "work as the user: browse intent",
        by("admin", "ann@example.com", "impersonated.explorer.browse.intent")
            .target("impersonation", &imp)
            .is("/table", json!("orders"))
            .is("/as_role", json!("authenticated"))
            .is("/claims_sub", json!(joe))
            .from_client(),
    );
    let page = on_data(&mut data, &ticket, "SELECT fluxbase_admin.browse()::text");
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(3));
    assert_eq!(page["impersonation_id"], json!(imp));
    assert_eq!(cov.count("impersonated.explorer.browse.result"), 0, "an impersonated read records its intent only");
    cov.step();
    let ticket = ann_s.ticket("export", &json!({"schema": "public", "table": "orders"}), Some(&imp));
    cov.expect(
        "work as the user: export intent",
        by("admin", "ann@example.com", "impersonated.explorer.export.intent").target("impersonation", &imp).is("/format", json!("csv")).is("/as_role", json!("authenticated")).from_client(),
    );
    let (_, lines) = fluxbase_tests::data_plane::export_claimed(&mut data, &ticket).unwrap();
    assert_eq!(lines.len(), 3);
    cov.step();
    let ticket = ann_s.ticket(
        "edit",
        &json!({"schema": "public", "table": "orders", "operation": "update", "payload": {"keys": [{"id": 3}], "set": {"qty": 4}}}),
        Some(&imp),
    );
    let intent = cov.expect(
        "work as the user: edit intent",
        by("admin", "ann@example.com", "impersonated.explorer.update.intent").target("impersonation", &imp).is("/operation", json!("update")).is("/claims_sub", json!(joe)).from_client(),
    ).or(intent);
    let answer = on_data(&mut data, &ticket, "SELECT fluxbase_admin.edit()::text");
    assert_eq!(answer["ok"], true, "{answer}");
    let mut e = by("admin", "ann@example.com", "impersonated.explorer.update.result").target("impersonation", &imp).is("/count", json!(1)).is("/after/0/qty", json!(4)).from_client();
    if let Some(intent) = &intent {
        e = e.is("/intent_id", json!(intent.id));
    }
    cov.expect("work as the user: edit result", e);
    // As the user from psql: an impersonate ticket, then plain SQL and its result.
    cov.step();
    let ticket = ann_s.ticket("impersonate", &json!({"read_only": false}), Some(&imp));
    let intent = cov.expect(
        "work as the user: psql intent",
        by("admin", "ann@example.com", "impersonated.psql.intent").target("impersonation", &imp).is("/read_only", json!(false)).is("/as_role", json!("authenticated")).from_client(),
    );
    {
        let mut tx = data.transaction().unwrap();
        tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
        tx.execute("SELECT auth.apply_impersonation()", &[]).unwrap();
        let n: i64 = tx.query_one("SELECT count(*) FROM public.orders", &[]).unwrap().get(0);
        tx.batch_execute("SET LOCAL ROLE NONE").unwrap();
        tx.execute("SELECT fluxbase_admin.record_result($1)", &[&json!({"rows": n})]).unwrap();
        tx.commit().unwrap();
    }
    let mut e = by("admin", "ann@example.com", "impersonated.psql.result").target("impersonation", &imp).is("/rows", json!(3)).from_client();
    if let Some(intent) = &intent {
        e = e.is("/intent_id", json!(intent.id));
    }
    cov.expect("work as the user: psql result", e);
    // An app user with an admin's email cannot be impersonated: refused, and recorded.
    let twin: String = ann_s.call("SELECT user_id::text FROM auth.invite_user($1, 'bob@example.com')", &[])[0].get(0);
    cov.step();
    let r = &ann_s.call("SELECT ok, code FROM auth.start_impersonation($1, 'user', 'bob@example.com', 'ticket 8')", &[])[0];
    assert_eq!((r.get::<_, bool>(0), r.get::<_, String>(1)), (false, "forbidden_target".to_string()));
    cov.expect(
        "impersonation refused",
        by("admin", "ann@example.com", "impersonation.refused").target("user", &twin).contains("/refusal", "dashboard admin").is("/reason", json!("ticket 8")).from_client(),
    );
    cov.step();
    let ended: bool = ann_s.call("SELECT auth.end_impersonation($1)", &[])[0].get(0);
    assert!(ended);
    cov.expect("impersonation ended", by("admin", "ann@example.com", "impersonation.ended").target("impersonation", &imp).is("/mode", json!("user")).from_client());

    // ----- Explorer ------------------------------------------------------------------------

    cov.step();
    for request in [json!({"schema": "public", "table": "orders"}), json!({"schema": "public", "table": "orders", "page_size": 1})] {
        let ticket = ann_s.ticket("browse", &request, None);
        on_data(&mut data, &ticket, "SELECT fluxbase_admin.browse()::text");
    }
    cov.expect("first read of a table", by("admin", "ann@example.com", "explorer.browse").target("relation", "public.orders").is("/table", json!("orders")).from_client());
    assert_eq!(cov.count("explorer.browse"), 1, "only the first read of a table in a session is recorded");
    cov.step();
    let filter = json!({"column": "status", "op": "eq", "value": "new"});
    let ticket = ann_s.ticket("export", &json!({"schema": "public", "table": "orders", "filter": filter}), None);
    cov.expect(
        "CSV export",
        by("admin", "ann@example.com", "explorer.export").target("relation", "public.orders").is("/format", json!("csv")).is("/filter", filter.clone()).from_client(),
    );
    let (_, lines) = fluxbase_tests::data_plane::export_claimed(&mut data, &ticket).unwrap();
    assert_eq!(lines.len(), 2);
    // An edit: its intent from the ticket, its result with the change.
    let mut edit = |cov: &mut Coverage, s: &mut Session, op: &'static str, payload: Value, ok: bool, label: &str, result: Expect| {
        cov.step();
        let ticket = s.ticket("edit", &json!({"schema": "public", "table": "orders", "operation": op, "payload": payload}), None);
        let intent_action: &'static str = Box::leak(format!("explorer.{op}.intent").into_boxed_str());
        let intent = cov.expect(
            &format!("{label}: intent"),
            by("admin", "ann@example.com", intent_action).target("relation", "public.orders").is("/operation", json!(op)).from_client(),
        );
        let answer = on_data(&mut data, &ticket, "SELECT fluxbase_admin.edit()::text");
        assert_eq!(answer["ok"], ok, "{op}: {answer}");
        let result = match &intent {
            Some(intent) => result.is("/intent_id", json!(intent.id)),
            None => result,
        };
        cov.expect(label, result.target("relation", "public.orders").from_client());
    };
    edit(&mut cov, &mut ann_s, "update", json!({"keys": [{"id": 1}], "set": {"status": "shipped"}}), true, "edit: update",
         by("admin", "ann@example.com", "explorer.update").is("/count", json!(1)).is("/before/0/status", json!("new")).is("/after/0/status", json!("shipped")));
    edit(&mut cov, &mut ann_s, "insert", json!({"rows": [{"id": 100, "status": "new", "qty": 5}]}), true, "edit: insert",
         by("admin", "ann@example.com", "explorer.insert").is("/after/0/id", json!(100)));
    edit(&mut cov, &mut ann_s, "delete", json!({"keys": [{"id": 2}]}), true, "edit: delete",
         by("admin", "ann@example.com", "explorer.delete").is("/before/0/id", json!(2)));
    edit(&mut cov, &mut ann_s, "update_where", json!({"filter": {"column": "status", "op": "eq", "value": "paid"}, "expected_count": 1, "set": {"qty": 9}}), true,
         "edit: update by filter", by("admin", "ann@example.com", "explorer.update_where").is("/count", json!(1)).is("/after/0/qty", json!(9)));
    edit(&mut cov, &mut ann_s, "delete_where", json!({"filter": {"column": "id", "op": "eq", "value": 100}, "expected_count": 1}), true,
         "edit: delete by filter", by("admin", "ann@example.com", "explorer.delete_where").is("/count", json!(1)).is("/before/0/id", json!(100)));
    edit(&mut cov, &mut ann_s, "update", json!({"keys": [{"id": 3}], "set": {"status": null}}), false, "edit: failed",
         by("admin", "ann@example.com", "explorer.update.failed").is("/errors/0/code", json!("not_null")).is("/count", Value::Null));
    cov.step();
    ann_s.call("SELECT fluxbase_admin.set_realtime($1, 'public', 'orders', true)", &[]);
    cov.expect("real time on", by("admin", "ann@example.com", "explorer.realtime_on").target("relation", "public.orders").is("/table", json!("orders")).from_client());
    cov.step();
    ann_s.call("SELECT fluxbase_admin.set_realtime($1, 'public', 'orders', false)", &[]);
    cov.expect("real time off", by("admin", "ann@example.com", "explorer.realtime_off").target("relation", "public.orders").from_client());

    // ----- SQL runner ----------------------------------------------------------------------

    // A read run: the three steps on one connection.
    let statement = "SELECT count(*) FROM public.orders";
    cov.step();
    let r = &ann_s.call("SELECT ok, message, run_id::text, timeout_ms, ticket FROM fluxbase_admin.start_sql_run($1, $2)", &[&statement])[0];
    assert!(r.get::<_, bool>(0), "start_sql_run: {}", r.get::<_, String>(1));
    let (run_id, timeout, ticket): (String, i64, String) = (r.get(2), r.get(3), r.get(4));
    let intent = cov.expect(
        "SQL run: intent",
        by("admin", "ann@example.com", "sql.run.intent").target("sql_run", &run_id).is("/statement", json!(statement)).is("/mode", json!("read")).is("/run_as", json!("service_role")).from_client(),
    );
    {
        // The run itself, on the data login.
        data.batch_execute(&format!("BEGIN; SET LOCAL statement_timeout = {timeout}")).unwrap();
        data.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&ticket, &statement]).unwrap();
        data.batch_execute("SAVEPOINT run").unwrap();
        let result: Value = data.query_one("SELECT fluxbase_admin.execute_sql($1)", &[&statement]).unwrap().get(0);
        assert_eq!(result["rows"], json!([["2"]]), "rows 1 and 3 are left after the edits: {result}");
        data.batch_execute("ROLLBACK TO SAVEPOINT run; COMMIT").unwrap();
    }
    ann_s.call("SELECT fluxbase_admin.finish_sql_run($1, $2::text::uuid, '{\"status\": \"succeeded\", \"row_count\": 1}')", &[&run_id]);
    let mut e = by("admin", "ann@example.com", "sql.run.succeeded").target("sql_run", &run_id).is("/row_count", json!(1)).from_client();
    if let Some(intent) = &intent {
        e = e.is("/intent_id", json!(intent.id));
    }
    cov.expect("SQL run: succeeded", e);
    cov.step();
    ann_s.call("SELECT fluxbase_admin.cancel_sql_run($1, $2::text::uuid)", &[&run_id]);
    cov.expect("SQL run: cancel", by("admin", "ann@example.com", "sql.cancel").target("sql_run", &run_id).is("/cancelled", json!(false)).from_client());

    // A write run that fails, with a password in it: recorded, redacted.
    let secret_statement = format!("ALTER ROLE fluxbase_cov_editor PASSWORD '{SQL_SECRET}'");
    cov.step();
    let r = &ann_s.call("SELECT ok, message, run_id::text, ticket FROM fluxbase_admin.start_sql_run($1, $2, true)", &[&secret_statement])[0];
    assert!(r.get::<_, bool>(0), "start_sql_run: {}", r.get::<_, String>(1));
    let (run2, ticket): (String, String) = (r.get(2), r.get(3));
    cov.expect(
        "SQL write run: intent, redacted",
        by("admin", "ann@example.com", "sql.run.intent").target("sql_run", &run2).is("/statement", json!("ALTER ROLE fluxbase_cov_editor PASSWORD '***'")).is("/mode", json!("write")).from_client(),
    );
    {
        data.batch_execute("BEGIN").unwrap();
        data.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&ticket, &secret_statement]).unwrap();
        data.batch_execute("SAVEPOINT run").unwrap();
        let failed = data.query_one("SELECT fluxbase_admin.execute_sql($1)", &[&secret_statement]);
        assert!(failed.is_err(), "service_role may not change a role's password");
        data.batch_execute("ROLLBACK TO SAVEPOINT run; COMMIT").unwrap();
    }
    ann_s.call("SELECT fluxbase_admin.finish_sql_run($1, $2::text::uuid, '{\"status\": \"failed\", \"error_code\": \"42501\"}')", &[&run2]);
    cov.expect("SQL write run: failed", by("admin", "ann@example.com", "sql.run.failed").target("sql_run", &run2).is("/error_code", json!("42501")).from_client());

    // A write run that succeeds records its result in its own transaction, on the data login.
    let write = "UPDATE public.orders SET qty = qty + 1 WHERE id = 3";
    cov.step();
    let r = &ann_s.call("SELECT ok, message, run_id::text, ticket FROM fluxbase_admin.start_sql_run($1, $2, true)", &[&write])[0];
    assert!(r.get::<_, bool>(0), "start_sql_run: {}", r.get::<_, String>(1));
    let (run3, ticket): (String, String) = (r.get(2), r.get(3));
    let intent = cov.expect(
        "SQL write run: intent",
        by("admin", "ann@example.com", "sql.run.intent").target("sql_run", &run3).is("/statement", json!(write)).is("/mode", json!("write")).from_client(),
    );
    {
        data.batch_execute("BEGIN").unwrap();
        data.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&ticket, &write]).unwrap();
        data.batch_execute("SAVEPOINT run").unwrap();
        let result: Value = data.query_one("SELECT fluxbase_admin.execute_sql($1)", &[&write]).unwrap().get(0);
        assert_eq!(result["affected"], 1, "{result}");
        data.execute("SELECT fluxbase_admin.record_result($1)", &[&json!({"status": "succeeded", "row_count": 0, "affected": 1})]).unwrap();
        data.batch_execute("COMMIT").unwrap();
    }
    let mut e = by("admin", "ann@example.com", "sql.run.succeeded").target("sql_run", &run3).is("/affected", json!(1)).from_client();
    if let Some(intent) = &intent {
        e = e.is("/intent_id", json!(intent.id));
    }
    cov.expect("SQL write run: succeeded", e);

    // A viewer's write run is refused, and recorded.
    cov.step();
    let r = &bob_s.call("SELECT ok, code FROM fluxbase_admin.start_sql_run($1, 'DELETE FROM public.orders', true)", &[])[0];
    assert_eq!((r.get::<_, bool>(0), r.get::<_, String>(1)), (false, "forbidden".to_string()));
    cov.expect(
        "SQL run refused to a viewer",
        by("admin", "bob@example.com", "sql.refused").no_target_id("sql").contains("/refusal", "viewers are read-only").is("/statement", json!("DELETE FROM public.orders")).from_client(),
    );

    // The app user is deleted last (impersonation and browsing used it).
    cov.step();
    ann_s.call("SELECT auth.delete_user($1, $2::text::uuid)", &[&joe]);
    cov.expect("app user deleted", by("admin", "ann@example.com", "user.deleted").target("user", &joe).is("/email", json!("joe@example.com")).from_client());

    // ----- The operator's audit commands -------------------------------------------

    cov.step();
    let stdout = audit_cli(&db, &["verify"]);
    assert!(stdout.starts_with("intact, "), "{stdout}");
    cov.expect("audit verified", by("operator", "fluxbase_ops", "audit.verified").is("/valid", json!(true)).set("/head_hash"));
    let file = std::env::temp_dir().join(format!("{}-coverage.jsonl", db.name));
    let purge_file = std::env::temp_dir().join(format!("{}-coverage-purge.jsonl", db.name));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&purge_file);
    cov.step();
    audit_cli(&db, &["export", "--output", &file.display().to_string()]);
    cov.expect(
        "audit exported",
        by("operator", "fluxbase_ops", "audit.exported").is("/format", json!("jsonl")).is("/destination", json!(file.display().to_string())),
    );
    let exported = std::fs::read_to_string(&file).unwrap_or_default();
    cov.step();
    audit_cli(&db, &["purge", "--before", &cut_for_purge, "--export-to", &purge_file.display().to_string(), "--yes"]);
    cov.expect(
        "audit purged",
        by("operator", "fluxbase_ops", "audit.purged").is("/removed_from_seq", json!(1)).set("/removed_to_seq").set("/last_hash").is("/exported_to", json!(purge_file.display().to_string())),
    );
    let stdout = audit_cli(&db, &["verify"]);
    assert!(stdout.starts_with("intact, "), "after the purge: {stdout}");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&purge_file);

    // ----- The whole log -------------------------------------------------------------

    // No secret reached the log: passwords, tokens, links, 2FA secrets, recovery codes.
    let leaks: Vec<String> = secrets.iter().filter(|s| exported.contains(s.as_str())).map(|s| s[..s.len().min(12)].to_string()).collect();
    assert!(!exported.is_empty());

    // Every entry is chained.
    let unsealed: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE chain_seq IS NULL", &[]).unwrap().get(0);

    let expected_actions: BTreeSet<String> = cov.checked.iter().map(|c| c.split_whitespace().next().unwrap().to_string()).collect();
    let logged: BTreeSet<String> = exported
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| l["action"].as_str().unwrap_or_default().to_string())
        .collect();
    let unchecked: Vec<&String> = logged.difference(&expected_actions).collect();

    println!("Checked {} audited actions:", cov.checked.len());
    for line in &cov.checked {
        println!("  {line}");
    }
    if !unchecked.is_empty() {
        println!("In the log but not checked: {unchecked:?}");
    }
    let mut report = String::new();
    for m in &cov.missing {
        report.push_str(&format!("\n  MISSING {m}"));
    }
    for w in &cov.wrong {
        report.push_str(&format!("\n  WRONG   {w}"));
    }
    if !leaks.is_empty() {
        report.push_str(&format!("\n  LEAK    secrets in the log (first characters): {leaks:?}"));
    }
    if unsealed != 0 {
        report.push_str(&format!("\n  UNSEALED {unsealed} entries"));
    }
    println!("{}", if report.is_empty() { "Every action was audited as expected.".to_string() } else { format!("Problems:{report}") });
    assert!(report.is_empty(), "audit coverage problems:{report}");
}
