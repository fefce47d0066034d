//! The admin backup of the README: `pg_dump -t 'dashboard_auth.*'` by an operator,
//! restored into a fresh database that has the extension.

use std::process::Command;

use fluxbase_tests::admin::{self, as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::{Caller, TestDb, PASSWORD as DB_PASSWORD};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn pg_tool(tool: &str, db: &TestDb, caller: Caller) -> Command {
    let mut cmd = Command::new(format!("{PG_BIN}/{tool}"));
    cmd.env("PGPASSWORD", DB_PASSWORD).arg(db.url(caller, "").replace(&format!(":{DB_PASSWORD}@"), "@"));
    cmd
}

#[test]
fn a_backup_restores_into_a_fresh_database_and_the_admin_signs_in() {
    let source = TestDb::new();
    create_admin(&source, "ann@example.com", "admin");
    let mut web = source.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    login(&mut web, "ann@example.com", "a wrong password here", "192.0.2.1");
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '1h')", &[&token]).unwrap();
    as_dashboard(&mut web, "SELECT * FROM dashboard_auth.invite_admin($1, 'vic@example.com', 'Vic', 'viewer')", &[&token]).unwrap();

    // The README's command, run by an operator (not a superuser).
    let dump = pg_tool("pg_dump", &source, Caller::Operator).args(["-t", "dashboard_auth.*"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(dump.status.success(), "pg_dump failed: {stderr}");
    let sql = String::from_utf8(dump.stdout).unwrap();
    for table in ["dashboard_users", "sessions", "login_attempts", "one_time_tokens", "settings", "audit_log"] {
        assert!(sql.contains(&format!("COPY dashboard_auth.{table} ")), "{table} missing from the dump");
    }
    assert!(!sql.contains(&token), "a session token must never reach a backup");

    // Restored as a user would: psql -f admin_backup.sql, stopping at the first error.
    let target = TestDb::new();
    let file = std::env::temp_dir().join(format!("{}-admin_backup.sql", target.name));
    std::fs::write(&file, &sql).unwrap();
    let restore = pg_tool("psql", &target, Caller::Superuser)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(restore.status.success(), "restore failed: {}", String::from_utf8_lossy(&restore.stderr));

    let mut ops = target.connect(Caller::Operator);
    let (valid, entries, message) = admin::verify_chain(&mut ops);
    assert!(valid, "{message}");
    assert!(entries >= 5, "{entries}");

    let mut restored_web = target.connect(Caller::Dashboard);
    let again = login(&mut restored_web, "ann@example.com", PASSWORD, "192.0.2.1");
    assert!(again.ok, "{again:?}");
    // Sessions, settings and new entries continue where the backup left off.
    assert!(as_dashboard(&mut restored_web, "SELECT * FROM dashboard_auth.get_session($1)", &[&token]).is_ok());
    let idle: String = as_dashboard(
        &mut restored_web,
        "SELECT value FROM dashboard_auth.list_settings($1) WHERE key = 'session.idle_timeout'",
        &[&again.token()],
    )
    .unwrap()[0]
        .get(0);
    assert_eq!(idle, "1h");
    let (valid, _, message) = admin::verify_chain(&mut ops);
    assert!(valid, "after new entries: {message}");
}
