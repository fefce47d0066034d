//! The operators' commands: `fluxbase admin ...`, run as a user runs them.

use std::io::Write;
use std::process::Stdio;

use fluxbase_tests::admin::{as_dashboard, create_admin, login, login_result, PASSWORD};
use fluxbase_tests::{fluxbase, run, text, Caller, TestDb};

/// Runs `fluxbase admin <args>` as the operator role, returning (success, stdout, stderr).
fn admin_cli(db: &TestDb, caller: Caller, args: &[&str]) -> (bool, String, String) {
    let output = run(fluxbase()
        .arg("admin")
        .args(args)
        .env("DATABASE_URL", db.url(caller, ""))
        .env("FLUXBASE_ADMIN_PUBLIC_URL", "https://admin.example.com"));
    let (stdout, stderr) = text(&output);
    (output.status.success(), stdout, stderr)
}

fn link_token(stdout: &str, path: &str) -> String {
    let prefix = format!("https://admin.example.com/{path}?token=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {path} link in:\n{stdout}"))
        .to_string()
}

#[test]
fn create_user_prints_a_one_time_link_from_the_public_url() {
    let db = TestDb::new();
    let (ok, stdout, stderr) =
        admin_cli(&db, Caller::Operator, &["create-user", "--email", "Admin@Example.com", "--name", "Admin User"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("created admin admin@example.com (Admin User)"), "{stdout}");
    assert!(stdout.contains("valid until"), "{stdout}");
    let token = link_token(&stdout, "invite");

    let mut web = db.connect(Caller::Dashboard);
    let redeemed = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, $2)", &[&token, &PASSWORD]).unwrap(),
    );
    assert!(redeemed.ok, "{redeemed:?}");
    assert!(login(&mut web, "admin@example.com", PASSWORD, "192.0.2.1").ok);

    // The operator's role is the actor in the audit log.
    let actor: String = db
        .connect(Caller::Superuser)
        .query_one("SELECT actor FROM dashboard_auth.audit_log WHERE action = 'admin.created'", &[])
        .unwrap()
        .get(0);
    assert_eq!(actor, "fluxbase_ops");
}

#[test]
fn create_user_takes_a_viewer_role_and_a_password_on_stdin() {
    let db = TestDb::new();
    let mut child = fluxbase()
        .args(["admin", "create-user", "--email", "vic@example.com", "--name", "Vic", "--role", "viewer", "--password-stdin"])
        .env("DATABASE_URL", db.url(Caller::Operator, ""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(!stdout.contains("token="), "no link when the password is given: {stdout}");
    let mut web = db.connect(Caller::Dashboard);
    let session = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1");
    assert_eq!(session.role.as_deref(), Some("viewer"));
}

#[test]
fn duplicate_invalid_and_unknown_emails_are_one_line_errors() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let cases: [(&[&str], &str); 5] = [
        (&["create-user", "--email", "ANN@example.com", "--name", "Ann"], "an admin with email ann@example.com exists already"),
        (&["create-user", "--email", "not-an-email", "--name", "X"], "invalid email address"),
        (&["reset-password", "--email", "ghost@example.com"], "no admin with email ghost@example.com"),
        (&["unlock", "--email", "ghost@example.com"], "no admin with email ghost@example.com"),
        (&["delete-user", "--email", "ann@example.com"], "add --yes to confirm"),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = admin_cli(&db, Caller::Operator, args);
        assert!(!ok, "{args:?} should fail");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn reset_password_prints_a_link_and_signs_the_admin_out() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let session = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1");
    let (ok, stdout, stderr) = admin_cli(&db, Caller::Operator, &["reset-password", "--email", "ann@example.com"]);
    assert!(ok, "{stderr}");
    let token = link_token(&stdout, "reset");
    assert!(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.get_session($1)", &[&session.token()]).is_err());
    let redeemed = login_result(
        as_dashboard(&mut web, "SELECT * FROM dashboard_auth.redeem_link($1, 'a fresh passphrase, never reused')", &[&token]).unwrap(),
    );
    assert!(redeemed.ok, "{redeemed:?}");
    assert!(!login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").ok, "the old password is gone");
}

#[test]
fn list_unlock_disable_enable_and_delete() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "bob@example.com", "admin");
    db.connect(Caller::Superuser)
        .batch_execute(
            "INSERT INTO dashboard_auth.address_lockouts (admin_id, ip, lockout_count, locked_until)
             SELECT id, '192.0.2.1', 1, now() + interval '1 hour' FROM dashboard_auth.dashboard_users WHERE email = 'bob@example.com'",
        )
        .unwrap();

    let (ok, stdout, _) = admin_cli(&db, Caller::Operator, &["list-users"]);
    assert!(ok);
    assert!(stdout.lines().next().unwrap().starts_with("EMAIL"), "{stdout}");
    let bob_line = stdout.lines().find(|l| l.starts_with("bob@example.com")).unwrap();
    assert!(bob_line.contains("locked"), "{stdout}");

    assert!(admin_cli(&db, Caller::Operator, &["unlock", "--email", "bob@example.com"]).0);
    let mut web = db.connect(Caller::Dashboard);
    assert!(login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1").ok);

    assert!(admin_cli(&db, Caller::Operator, &["disable", "--email", "bob@example.com"]).0);
    assert!(!login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1").ok);
    assert!(admin_cli(&db, Caller::Operator, &["enable", "--email", "bob@example.com"]).0);
    assert!(login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1").ok);

    let (ok, stdout, stderr) = admin_cli(&db, Caller::Operator, &["delete-user", "--email", "bob@example.com", "--yes"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("bob@example.com deleted"), "{stdout}");
    let (ok, _, stderr) = admin_cli(&db, Caller::Operator, &["delete-user", "--email", "ann@example.com", "--yes"]);
    assert!(!ok);
    assert!(stderr.contains("cannot delete the last active admin"), "{stderr}");

    let audited: Vec<String> = db
        .connect(Caller::Superuser)
        .query("SELECT action FROM dashboard_auth.audit_log WHERE actor_type = 'operator' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audited, ["admin.created", "admin.created", "admin.unlocked", "admin.disabled", "admin.enabled", "admin.deleted"]);
}

#[test]
fn only_operators_may_run_operator_commands() {
    let db = TestDb::new();
    for caller in [Caller::Dashboard, Caller::App] {
        let (ok, _, stderr) = admin_cli(&db, caller, &["create-user", "--email", "x@example.com", "--name", "X"]);
        assert!(!ok);
        assert!(stderr.contains(&format!("the role {} may not run operator commands", caller.user())), "{stderr}");
        assert!(stderr.contains("GRANT fluxbase_operator"), "{stderr}");
    }
    let admins: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    assert_eq!(admins, 0);
}
