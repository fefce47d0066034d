//! The admin backup of the README: `pg_dump -t 'dashboard_auth.*'` by an operator,
//! restored into a fresh database that has the extension.

use std::process::Command;

use fluxbase_tests::admin::{self, as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::data_plane::{export_claimed, Planes};
use fluxbase_tests::{Caller, TestDb, PASSWORD as DB_PASSWORD};
use serde_json::json;

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
    as_dashboard(&mut web, "SELECT * FROM fluxbase_admin.save_sql_snippet($1, 'daily', 'SELECT count(*) FROM pg_class')", &[&token])
        .unwrap();

    // The README's command, run by an operator (not a superuser).
    let dump = pg_tool("pg_dump", &source, Caller::Operator).args(["-t", "dashboard_auth.*"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(dump.status.success(), "pg_dump failed: {stderr}");
    let sql = String::from_utf8(dump.stdout).unwrap();
    for table in ["dashboard_users", "sessions", "login_attempts", "one_time_tokens", "settings", "audit_log", "sql_snippets"] {
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
    // Saved SQL snippets are part of the admin backup.
    let snippets = as_dashboard(&mut restored_web, "SELECT name, statement FROM fluxbase_admin.list_sql_snippets($1)", &[&token]).unwrap();
    assert_eq!(
        snippets.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect::<Vec<_>>(),
        [("daily".to_string(), "SELECT count(*) FROM pg_class".to_string())]
    );
    let (valid, _, message) = admin::verify_chain(&mut ops);
    assert!(valid, "after new entries: {message}");
}

/// architecture.md: every table of the extension, and every sequence, is registered with
/// pg_extension_config_dump, so that a plain pg_dump (and `pg_dump -t 'dashboard_auth.*'`)
/// carries its rows. A table left out would vanish from every backup.
#[test]
fn every_table_and_sequence_of_the_extension_is_registered_for_the_dump() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let rows = su
        .query(
            "SELECT c.oid::regclass::text, c.oid = ANY (coalesce(e.extconfig, '{}'))
               FROM pg_extension e
               JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
                               AND d.classid = 'pg_class'::regclass
               JOIN pg_class c ON c.oid = d.objid
              WHERE e.extname = 'fluxbase_admin' AND c.relkind IN ('r', 'p', 'S', 'm', 'f')
              ORDER BY 1",
            &[],
        )
        .unwrap();
    let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(tables.len() > 20, "the extension's tables were found: {tables:?}");
    for named in ["dashboard_auth.session_reads", "dashboard_auth.tickets", "dashboard_auth.audit_purges_in_progress"] {
        assert!(tables.iter().any(|t| t == named), "{named} is one of them: {tables:?}");
    }
    let missing: Vec<String> = rows.iter().filter(|r| !r.get::<_, bool>(1)).map(|r| r.get(0)).collect();
    assert!(missing.is_empty(), "not registered with pg_extension_config_dump: {missing:?}");
    // And in the admin backup: every dashboard_auth table has its COPY.
    let dump = pg_tool("pg_dump", &db, Caller::Operator).args(["-t", "dashboard_auth.*"]).output().unwrap();
    assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let sql = String::from_utf8(dump.stdout).unwrap();
    for table in tables.iter().filter(|t| t.starts_with("dashboard_auth.") && !t.ends_with("_seq")) {
        assert!(sql.contains(&format!("COPY {table} ")), "{table} is missing from the admin backup");
    }
}

/// An export is spent by its ticket (claimed once, and the claim is in the backup): a
/// restored backup cannot open it again.
#[test]
fn an_export_opened_once_cannot_be_opened_again_after_a_restore() {
    let table = "CREATE TABLE public.notes (id int PRIMARY KEY, body text);
                 INSERT INTO public.notes VALUES (1, 'one'), (2, 'two');";
    let source = TestDb::new();
    source.connect(Caller::Superuser).batch_execute(table).unwrap();
    create_admin(&source, "ann@example.com", "admin");
    let mut planes = Planes::connect(&source);
    let token = login(&mut planes.web, "ann@example.com", PASSWORD, "192.0.2.1").token().to_string();
    let ticket = planes.ticket(&token, "export", &json!({"schema": "public", "table": "notes"}), None).unwrap();
    let (_, lines) = export_claimed(&mut planes.data, &ticket).unwrap();
    assert_eq!(lines.len(), 2);
    let again = export_claimed(&mut planes.data, &ticket).unwrap_err();
    assert_eq!(again.code().unwrap().code(), "28000", "spent: {again:?}");

    let dump = pg_tool("pg_dump", &source, Caller::Operator).args(["-t", "dashboard_auth.*"]).output().unwrap();
    assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let target = TestDb::new();
    target.connect(Caller::Superuser).batch_execute(table).unwrap();
    let file = std::env::temp_dir().join(format!("{}-export_backup.sql", target.name));
    std::fs::write(&file, &dump.stdout).unwrap();
    let restore = pg_tool("psql", &target, Caller::Superuser).args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"]).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(restore.status.success(), "restore failed: {}", String::from_utf8_lossy(&restore.stderr));

    // The restored ticket is the spent one, and the session it came from is live there.
    let spent: bool = target
        .connect(Caller::Superuser)
        .query_one("SELECT bool_and(claimed_at IS NOT NULL) AND count(*) = 1 FROM dashboard_auth.tickets WHERE operation = 'export'", &[])
        .unwrap()
        .get(0);
    assert!(spent, "the ticket was restored with its claim");
    let mut restored = Planes::connect(&target);
    assert!(as_dashboard(&mut restored.web, "SELECT * FROM dashboard_auth.get_session($1)", &[&token]).is_ok());
    let reopened = export_claimed(&mut restored.data, &ticket).unwrap_err();
    assert_eq!(reopened.code().unwrap().code(), "28000", "{reopened:?}");
    assert!(reopened.as_db_error().unwrap().message().contains("spent"), "{reopened:?}");
    // A new export there is a new ticket, as usual.
    let fresh = restored.ticket(&token, "export", &json!({"schema": "public", "table": "notes"}), None).unwrap();
    assert_eq!(export_claimed(&mut restored.data, &fresh).unwrap().1.len(), 2);
}
