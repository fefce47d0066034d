//! The SQL runner (sql/sql_runner.sql) driven as `fluxbase serve` drives it across the
//! two planes: start_sql_run on the dashboard login (which returns a ticket), then on the
//! data login BEGIN / SET LOCAL statement_timeout / claim / SAVEPOINT / execute_sql, then
//! record_result and COMMIT for a write, or ROLLBACK TO SAVEPOINT, COMMIT and finish_sql_run
//! on the dashboard login for a read or a failure; and what each run leaves in the audit
//! log, the history and the connections.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use fluxbase_tests::admin::{self, create_admin, login, PASSWORD};
use fluxbase_tests::data_plane::for_each_data_login as data_logins;
use fluxbase_tests::{Caller, TestDb};
use postgres::error::{DbError, ErrorPosition};
use postgres::Client;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// The harness: a fixture, the three steps, and what the superuser sees afterwards
// ---------------------------------------------------------------------------------

/// An admin's two connections: the dashboard login (already `SET ROLE
/// fluxbase_dashboard` for the session) and the data login.
struct Conns {
    web: Client,
    data: Client,
}

/// A test database with `public.items` (20 rows, `note` NULL on odd ids) granted to
/// service_role, the runner's default role, and an admin signed in.
struct Ctx {
    db: TestDb,
    c: Conns,
    token: String,
}

fn setup() -> Ctx {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.items (id integer PRIMARY KEY, name text NOT NULL, note text);
             INSERT INTO public.items
             SELECT g, 'item ' || g, CASE WHEN g % 2 = 0 THEN 'even' END FROM generate_series(1, 20) g;
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.items TO service_role;",
        )
        .unwrap();
    let (c, token) = sign_in(&db, "ann@example.com", "admin");
    Ctx { db, c, token }
}

/// Creates an admin (or viewer) and returns its connections and its session token.
fn sign_in(db: &TestDb, email: &str, role: &str) -> (Conns, String) {
    create_admin(db, email, role);
    let mut web = dashboard(db);
    let token = login(&mut web, email, PASSWORD, "192.0.2.1").token().to_string();
    (Conns { web, data: db.connect(Caller::Data) }, token)
}

/// A connection as the web login role, switched to fluxbase_dashboard for the session.
fn dashboard(db: &TestDb) -> Client {
    let mut web = db.connect(Caller::Dashboard);
    web.batch_execute("SET ROLE fluxbase_dashboard").unwrap();
    web
}

/// What start_sql_run answered.
#[derive(Debug, Clone)]
struct Begun {
    ok: bool,
    code: String,
    message: String,
    run_id: Option<String>,
    run_as: Option<String>,
    read_only: Option<bool>,
    timeout_ms: Option<i64>,
    row_limit: Option<i32>,
    ticket: Option<String>,
}

impl Begun {
    fn run_id(&self) -> &str {
        self.run_id.as_deref().unwrap_or_else(|| panic!("no run: {self:?}"))
    }
    fn ticket(&self) -> &str {
        self.ticket.as_deref().unwrap_or_else(|| panic!("no ticket: {self:?}"))
    }
}

/// How a run went wrong: refused by start_sql_run, or a Postgres error from a step.
#[derive(Debug)]
enum RunError {
    Refused { code: String, message: String },
    Failed(postgres::Error),
}

impl RunError {
    fn sqlstate(&self) -> String {
        match self {
            RunError::Failed(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| panic!("not a server error: {e}")),
            RunError::Refused { code, message } => panic!("expected a Postgres error, the run was refused ({code}): {message}"),
        }
    }

    fn db_error(&self) -> &DbError {
        match self {
            RunError::Failed(e) => e.as_db_error().unwrap_or_else(|| panic!("not a server error: {e}")),
            RunError::Refused { code, message } => panic!("expected a Postgres error, the run was refused ({code}): {message}"),
        }
    }

    /// (code, message) of a refusal.
    fn refusal(&self) -> (&str, &str) {
        match self {
            RunError::Refused { code, message } => (code, message),
            RunError::Failed(e) => panic!("expected a refusal, the run failed: {e:?}"),
        }
    }
}

/// Step 1, on the dashboard login: start_sql_run in a transaction of its own (it commits the
/// intent and the ticket).
fn begin(c: &mut Conns, token: &str, sql: &str, writes: bool, explain: Option<&str>, impersonation: Option<&str>) -> Begun {
    let row = c
        .web
        .query_one(
            "SELECT ok, code, message, run_id::text, run_as, read_only, timeout_ms, row_limit, ticket
               FROM fluxbase_admin.start_sql_run($1, $2, $3, $4, $5::text::uuid)",
            &[&token, &sql, &writes, &explain, &impersonation],
        )
        .unwrap_or_else(|e| panic!("start_sql_run {sql:?}: {e:?}"));
    Begun {
        ok: row.get(0),
        code: row.get(1),
        message: row.get(2),
        run_id: row.get(3),
        run_as: row.get(4),
        read_only: row.get(5),
        timeout_ms: row.get(6),
        row_limit: row.get(7),
        ticket: row.get(8),
    }
}

/// Step 2, on the data login: opens the run's transaction, sets its timeout, claims the
/// ticket, sets the savepoint and runs the statement. The transaction stays open (also
/// on failure): `close` ends it.
fn execute_open(c: &mut Conns, begun: &Begun, sql: &str) -> Result<Value, postgres::Error> {
    c.data.batch_execute(&format!("BEGIN; SET LOCAL statement_timeout = {}", begun.timeout_ms.expect("a timeout")))?;
    c.data.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&begun.ticket(), &sql])?;
    c.data.batch_execute("SAVEPOINT run")?;
    let row = c.data.query_one("SELECT fluxbase_admin.execute_sql($1)", &[&sql])?;
    Ok(row.get(0))
}

/// Records how a run ended on the dashboard login and returns the status the extension
/// decided (from the error's code, never its message).
fn finish(c: &mut Conns, token: &str, run_id: &str, outcome: &Value) -> String {
    c.web
        .query_one("SELECT fluxbase_admin.finish_sql_run($1, $2::text::uuid, $3)", &[&token, &run_id, outcome])
        .unwrap_or_else(|e| panic!("finish_sql_run {outcome}: {e:?}"))
        .get(0)
}

/// Undoes the statement and commits the claim; when the claim itself failed (no
/// savepoint), rolls everything back.
fn undo(c: &mut Conns) {
    if c.data.batch_execute("ROLLBACK TO SAVEPOINT run; COMMIT").is_err() {
        c.data.batch_execute("ROLLBACK").unwrap();
    }
}

/// Step 3: a write that succeeded records its result in its own transaction, which
/// commits; a read, or any failure, is rolled back to the savepoint, committed, and then
/// finished on the dashboard login.
fn close(c: &mut Conns, token: &str, begun: &Begun, writes: bool, result: Result<Value, postgres::Error>) -> Result<Value, RunError> {
    let run_id = begun.run_id();
    match result {
        Ok(value) => {
            let outcome = json!({"row_count": value["row_count"], "affected": value["affected"], "truncated": value["truncated"]});
            if writes {
                c.data
                    .execute("SELECT fluxbase_admin.record_result($1)", &[&outcome])
                    .unwrap_or_else(|e| panic!("record_result {outcome}: {e:?}"));
                c.data.batch_execute("COMMIT").unwrap();
            } else {
                undo(c);
                assert_eq!(finish(c, token, run_id, &outcome), "succeeded");
            }
            Ok(value)
        }
        Err(e) => {
            undo(c);
            let (code, message) = match e.as_db_error() {
                Some(db) => (db.code().code().to_string(), db.message().to_string()),
                None => (String::new(), e.to_string()),
            };
            // As fluxbase serve records them: the extension decides the status.
            finish(c, token, run_id, &json!({"error_code": code, "error_message": message}));
            Err(RunError::Failed(e))
        }
    }
}

/// A whole run of `sql`: the three steps, done properly whatever happens.
fn run(c: &mut Conns, token: &str, sql: &str, writes: bool, explain: Option<&str>) -> Result<Value, RunError> {
    run_as(c, token, sql, writes, explain, None)
}

/// A whole run, optionally under an impersonation.
fn run_as(c: &mut Conns, token: &str, sql: &str, writes: bool, explain: Option<&str>, impersonation: Option<&str>) -> Result<Value, RunError> {
    let begun = begin(c, token, sql, writes, explain, impersonation);
    if !begun.ok {
        assert!(begun.run_id.is_none(), "a refused run has no id: {begun:?}");
        assert!(begun.ticket.is_none(), "a refused run has no ticket: {begun:?}");
        return Err(RunError::Refused { code: begun.code, message: begun.message });
    }
    let result = execute_open(c, &begun, sql);
    close(c, token, &begun, writes, result)
}

fn ok(result: Result<Value, RunError>) -> Value {
    result.unwrap_or_else(|e| panic!("the run failed: {e:?}"))
}

/// The result's rows as plain vectors of optional text.
fn rows(result: &Value) -> Vec<Vec<Option<String>>> {
    result["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {result}"))
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_str().map(str::to_string)).collect())
        .collect()
}

/// The superuser's view of a single value.
fn su_one<T: for<'a> postgres::types::FromSql<'a>>(db: &TestDb, sql: &str) -> T {
    db.connect(Caller::Superuser).query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e:?}")).get(0)
}

/// The details of every audit entry with `action`, oldest first.
fn audit_details(db: &TestDb, action: &str) -> Vec<Value> {
    db.connect(Caller::Superuser)
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = $1 ORDER BY id", &[&action])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One line of the caller's history.
#[derive(Debug, Clone)]
struct Past {
    run_id: String,
    statement: String,
    mode: String,
    status: String,
    row_count: Option<i64>,
    affected: Option<i64>,
    truncated: Option<bool>,
    error_code: Option<String>,
}

fn history(c: &mut Conns, token: &str, page_size: i32) -> Vec<Past> {
    history_page(c, token, page_size, None).0
}

/// One page of the caller's history, and its next_cursor.
fn history_page(c: &mut Conns, token: &str, page_size: i32, cursor: Option<&str>) -> (Vec<Past>, Option<String>) {
    searched_page(c, token, None, page_size, cursor).unwrap()
}

/// One page of the caller's history of statements holding `search`, and its next_cursor.
fn searched_page(
    c: &mut Conns,
    token: &str,
    search: Option<&str>,
    page_size: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Past>, Option<String>), postgres::Error> {
    let page: serde_json::Value = c
        .web
        .query_one("SELECT fluxbase_admin.list_sql_runs($1, $2, $3, $4)", &[&token, &search, &page_size, &cursor])?
        .get(0);
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let runs = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Past {
            run_id: text(&r["run_id"]).unwrap(),
            statement: text(&r["statement"]).unwrap(),
            mode: text(&r["mode"]).unwrap(),
            status: text(&r["status"]).unwrap(),
            row_count: r["row_count"].as_i64(),
            affected: r["affected"].as_i64(),
            truncated: r["truncated"].as_bool(),
            error_code: text(&r["error_code"]),
        })
        .collect();
    Ok((runs, text(&page["next_cursor"])))
}

fn set_setting(c: &mut Conns, token: &str, key: &str, value: &str) -> Result<(), postgres::Error> {
    c.web.query("SELECT * FROM dashboard_auth.set_setting($1, $2, $3)", &[&token, &key, &value]).map(|_| ())
}

fn items_fingerprint(db: &TestDb) -> String {
    su_one(db, "SELECT string_agg(id || ':' || name || ':' || coalesce(note, '-'), ',' ORDER BY id) FROM public.items")
}


/// Cluster-wide roles for the fixtures, made once (other runs of the suite may have made
/// them); one test at a time, since concurrent changes to one role fail.
fn ensure_role(db: &TestDb, name: &str, attributes: &str) {
    static ROLES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = ROLES.lock().unwrap_or_else(|e| e.into_inner());
    db.connect(Caller::Superuser)
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {name} {attributes}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
             ALTER ROLE {name} {attributes};"
        ))
        .unwrap();
}

// ---------------------------------------------------------------------------------
// Reads and writes
// ---------------------------------------------------------------------------------

#[test]
fn a_read_returns_every_column_and_a_write_commits_for_everyone() {
    let Ctx { db, mut c, token } = setup();

    let sql = "SELECT id, name AS label, note, id * 10 AS label FROM public.items WHERE id IN (1, 2) ORDER BY id";
    let begun = begin(&mut c, &token, sql, false, None, None);
    assert!(begun.ok, "{begun:?}");
    assert_eq!(begun.code, "ok");
    assert_eq!(begun.run_as.as_deref(), Some("service_role"));
    assert_eq!(begun.read_only, Some(true));
    assert_eq!(begun.timeout_ms, Some(30_000), "the default runner.timeout is 30s");
    assert_eq!(begun.row_limit, Some(1000), "the default runner.row_limit");
    let result = execute_open(&mut c, &begun, sql);
    let read = close(&mut c, &token, &begun, false, result).unwrap();
    assert_eq!(
        read["columns"],
        json!([{"name": "id", "type": "integer"}, {"name": "label", "type": "text"},
               {"name": "note", "type": "text"}, {"name": "label", "type": "integer"}]),
        "both columns named label are kept, in order"
    );
    assert_eq!(
        rows(&read),
        vec![
            vec![Some("1".into()), Some("item 1".into()), None, Some("10".into())],
            vec![Some("2".into()), Some("item 2".into()), Some("even".into()), Some("20".into())],
        ]
    );
    assert_eq!(read["row_count"], 2);
    assert_eq!(read["truncated"], false);
    assert_eq!(read["command"], "SELECT");
    assert_eq!(read["run_as"], "service_role");
    assert_eq!(read["run_id"], begun.run_id());
    assert!(read["plan"].is_null());

    let updated = ok(run(&mut c, &token, "UPDATE public.items SET name = upper(name) WHERE id <= 3 RETURNING id, name", true, None));
    assert_eq!(updated["command"], "UPDATE");
    assert_eq!(updated["affected"], 3);
    assert_eq!(updated["row_count"], 3);
    let mut changed = rows(&updated);
    changed.sort();
    assert_eq!(
        changed,
        vec![
            vec![Some("1".into()), Some("ITEM 1".into())],
            vec![Some("2".into()), Some("ITEM 2".into())],
            vec![Some("3".into()), Some("ITEM 3".into())],
        ]
    );

    let inserted = ok(run(&mut c, &token, "INSERT INTO public.items (id, name) VALUES (21, 'new'), (22, 'newer')", true, None));
    assert_eq!(inserted["command"], "INSERT");
    assert_eq!(inserted["affected"], 2);
    assert_eq!(inserted["rows"], json!([]));
    assert_eq!(inserted["columns"], json!([]));

    // Committed: another connection sees both writes.
    let mut other = db.connect(Caller::Superuser);
    let upper: i64 = other.query_one("SELECT count(*) FROM public.items WHERE name LIKE 'ITEM %'", &[]).unwrap().get(0);
    assert_eq!(upper, 3);
    let new: Vec<String> = other.query("SELECT name FROM public.items WHERE id > 20 ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(new, ["new", "newer"]);

    let past = history(&mut c, &token, 10);
    assert_eq!(past.iter().map(|p| (p.mode.as_str(), p.status.as_str())).collect::<Vec<_>>(),
               [("write", "succeeded"), ("write", "succeeded"), ("read", "succeeded")]);
    assert_eq!(past[0].affected, Some(2));
    assert_eq!(past[1].affected, Some(3));
    assert_eq!(past[2].row_count, Some(2));
    let actions = admin::audit_actions(&db);
    assert_eq!(actions.iter().filter(|a| *a == "sql.run.intent").count(), 3, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "sql.run.succeeded").count(), 3, "{actions:?}");
}

#[test]
fn an_update_in_a_read_run_fails_read_only_and_changes_nothing() {
    let Ctx { db, mut c, token } = setup();
    let before = items_fingerprint(&db);
    let err = run(&mut c, &token, "UPDATE public.items SET name = 'gone' RETURNING id", false, None).unwrap_err();
    assert_eq!(err.sqlstate(), "25006", "{err:?}");
    let err = run(&mut c, &token, "DELETE FROM public.items", false, None).unwrap_err();
    assert_eq!(err.sqlstate(), "25006", "{err:?}");
    // Turning the read-only mode off from inside the statement is not possible either.
    let err = run(&mut c, &token, "SELECT set_config('transaction_read_only', 'off', true)", false, None).unwrap_err();
    assert_eq!(err.sqlstate(), "25001", "{err:?}");
    assert_eq!(items_fingerprint(&db), before);
    let past = history(&mut c, &token, 3);
    assert!(past.iter().all(|p| p.status == "failed" && p.mode == "read"), "{past:?}");
    assert_eq!(past[2].error_code.as_deref(), Some("25006"));
}

#[test]
fn a_viewer_is_refused_a_write_but_may_read() {
    let Ctx { db, mut c, token } = setup();
    let (mut viewer, vtoken) = sign_in(&db, "vic@example.com", "viewer");
    let before = items_fingerprint(&db);

    let err = run(&mut viewer, &vtoken, "UPDATE public.items SET name = 'viewer was here'", true, None).unwrap_err();
    let (code, message) = err.refusal();
    assert_eq!(code, "forbidden", "{message}");
    assert!(message.contains("read-only"), "{message}");
    let refused = audit_details(&db, "sql.refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["statement"], "UPDATE public.items SET name = 'viewer was here'");
    assert_eq!(refused[0]["mode"], "write");
    assert!(refused[0]["refusal"].as_str().unwrap().contains("read-only"), "{:?}", refused[0]);
    assert_eq!(items_fingerprint(&db), before);
    let runs: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.sql_runs");
    assert_eq!(runs, 0, "a refused run is not in the history");

    // Nor may a viewer run as an impersonated user (whatever the id).
    let err = run_as(&mut viewer, &vtoken, "SELECT 1", false, None, Some("00000000-0000-0000-0000-000000000001")).unwrap_err();
    assert_eq!(err.refusal().0, "forbidden");
    assert_eq!(audit_details(&db, "sql.refused").len(), 2);

    let read = ok(run(&mut viewer, &vtoken, "SELECT count(*) AS n FROM public.items", false, None));
    assert_eq!(rows(&read), vec![vec![Some("20".into())]]);
    assert_eq!(read["run_as"], "service_role");
    let past = history(&mut viewer, &vtoken, 10);
    assert_eq!(past.len(), 1);
    assert_eq!((past[0].mode.as_str(), past[0].status.as_str()), ("read", "succeeded"));
    // The viewer's runs are their own: the admin's history is empty.
    assert!(history(&mut c, &token, 10).is_empty());
}

#[test]
fn several_statements_transaction_control_and_role_changes_are_refused_and_audited() {
    let Ctx { db, mut c, token } = setup();
    let before = items_fingerprint(&db);
    let refused = [
        "UPDATE public.items SET name = 'one'; UPDATE public.items SET name = 'two'",
        "SELECT 1; SELECT 2",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "SET ROLE fluxbase_dashboard",
        "SET LOCAL ROLE fluxbase_dashboard",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION fluxbase_web",
        "RESET ALL",
        "DISCARD ALL",
        "SELECT set_config('role', 'fluxbase_dashboard', false)",
        "select pg_catalog.SET_CONFIG ( 'Role' , 'fluxbase_dashboard', true)",
    ];
    for sql in refused {
        for writes in [false, true] {
            let err = run(&mut c, &token, sql, writes, None).unwrap_err();
            let (code, message) = err.refusal();
            assert_eq!(code, "refused", "{sql}: {message}");
        }
    }
    let audited = audit_details(&db, "sql.refused");
    assert_eq!(audited.len(), refused.len() * 2, "{audited:?}");
    for (i, sql) in refused.iter().enumerate() {
        for j in 0..2 {
            let entry = &audited[i * 2 + j];
            assert_eq!(entry["statement"], *sql, "{entry}");
            assert!(entry["refusal"].as_str().is_some_and(|r| !r.is_empty()), "{entry}");
        }
    }
    assert!(audited[0]["refusal"].as_str().unwrap().contains("one statement at a time"), "{}", audited[0]);
    let runs: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.sql_runs");
    assert_eq!(runs, 0, "nothing refused was begun");
    assert!(!admin::audit_actions(&db).iter().any(|a| a == "sql.run.intent"));
    assert_eq!(items_fingerprint(&db), before);
    let role: String = c.web.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(role, "fluxbase_dashboard");
}

#[test]
fn a_role_change_the_check_misses_is_caught_and_rolled_back() {
    let Ctx { db, mut c, token } = setup();
    // The data login may switch to the explorer role (BYPASSRLS): a run must not.
    let sql = "SELECT set_config(lower('ROLE'), 'fluxbase_explorer', true)";
    let begun = begin(&mut c, &token, sql, false, None, None);
    assert!(begun.ok, "a computed name passes the static check: {begun:?}");
    let result = execute_open(&mut c, &begun, sql);
    let err = close(&mut c, &token, &begun, false, result).unwrap_err();
    assert_eq!(err.sqlstate(), "FB002", "{err:?}");
    assert!(err.db_error().message().contains("changed the current role"), "{err:?}");

    let sql = "WITH x AS (INSERT INTO public.items (id, name) VALUES (50, 'sneaky') RETURNING 1)
               SELECT set_config(lower('ROLE'), 'fluxbase_explorer', true) FROM x";
    let err = run(&mut c, &token, sql, true, None).unwrap_err();
    assert_eq!(err.sqlstate(), "FB002", "{err:?}");
    let sneaky: i64 = su_one(&db, "SELECT count(*) FROM public.items WHERE id = 50");
    assert_eq!(sneaky, 0, "the write in the same statement is rolled back");

    let role: String = c.data.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(role, "fluxbase_data");
    let past = history(&mut c, &token, 2);
    assert!(past.iter().all(|p| p.status == "rolled_back" && p.error_code.as_deref() == Some("FB002")), "{past:?}");
    assert_eq!(audit_details(&db, "sql.run.rolled_back").len(), 2);
}

/// The runner is no sandbox (architecture.md, "Not a sandbox"): the role check compares
/// the role after the statement, so a statement that switches to another role of the
/// login role and back, with a computed set_config name, is not caught. What makes it
/// accountable is that its full text is in the audit log before it runs. This test pins
/// both facts down, so that a stronger guard shows up here when it comes.
#[test]
fn a_role_switched_and_back_within_the_statement_is_in_the_audit_log() {
    let Ctx { db, mut c, token } = setup();
    set_setting(&mut c, &token, "runner.role", "anon").unwrap();
    let plain = run(&mut c, &token, "SELECT count(*) FROM public.items", false, None).unwrap_err();
    assert_eq!(plain.sqlstate(), "42501", "anon may not read items: {plain:?}");
    let sql = "SELECT set_config(lower('ROLE'), 'service_role', true) AS up,
                      query_to_xml('SELECT count(*) AS n FROM public.items', false, false, '') AS secret,
                      set_config(lower('ROLE'), 'anon', true) AS down";
    let result = run(&mut c, &token, sql, false, None);
    assert!(result.is_ok(), "a stronger guard caught it: update this test and the README: {result:?}");
    let recorded: Vec<String> = db
        .connect(Caller::Superuser)
        .query("SELECT details->>'statement' FROM dashboard_auth.audit_log WHERE action = 'sql.run.intent'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(recorded.iter().any(|s| s == sql), "the statement's text is not in the audit log: {recorded:?}");
}

// ---------------------------------------------------------------------------------
// Limits: timeout, row limit
// ---------------------------------------------------------------------------------

#[test]
fn a_statement_past_the_timeout_is_cancelled_and_recorded_as_failed() {
    let Ctx { db: _db, mut c, token } = setup();
    set_setting(&mut c, &token, "runner.timeout", "1s").unwrap();
    let sql = "SELECT pg_sleep(5)";
    let begun = begin(&mut c, &token, sql, false, None, None);
    assert_eq!(begun.timeout_ms, Some(1000), "{begun:?}");
    let started = Instant::now();
    let result = execute_open(&mut c, &begun, sql);
    let elapsed = started.elapsed();
    let err = close(&mut c, &token, &begun, false, result).unwrap_err();
    assert_eq!(err.sqlstate(), "57014", "{err:?}");
    assert!(err.db_error().message().contains("statement timeout"), "{err:?}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "cancelled after {elapsed:?}");
    let past = history(&mut c, &token, 1);
    assert_eq!(past[0].run_id, begun.run_id());
    assert_eq!(past[0].status, "failed");
    assert_eq!(past[0].error_code.as_deref(), Some("57014"));
}

#[test]
fn the_row_limit_cuts_the_rows_but_a_write_counts_every_change() {
    let Ctx { db, mut c, token } = setup();
    set_setting(&mut c, &token, "runner.row_limit", "5").unwrap();
    let sql = "SELECT generate_series(1, 20) AS n";
    let begun = begin(&mut c, &token, sql, false, None, None);
    assert_eq!(begun.row_limit, Some(5));
    let result = execute_open(&mut c, &begun, sql);
    let read = close(&mut c, &token, &begun, false, result).unwrap();
    assert_eq!(rows(&read), (1..=5).map(|n| vec![Some(n.to_string())]).collect::<Vec<_>>());
    assert_eq!(read["row_count"], 5);
    assert_eq!(read["truncated"], true);

    // Exactly the limit is not truncated.
    let five = ok(run(&mut c, &token, "SELECT generate_series(1, 5)", false, None));
    assert_eq!((five["row_count"].clone(), five["truncated"].clone()), (json!(5), json!(false)));

    let write = ok(run(&mut c, &token, "UPDATE public.items SET note = 'touched' RETURNING id", true, None));
    assert_eq!(write["row_count"], 5);
    assert_eq!(write["truncated"], true);
    assert_eq!(write["affected"], 20, "{write}");
    let touched: i64 = su_one(&db, "SELECT count(*) FROM public.items WHERE note = 'touched'");
    assert_eq!(touched, 20, "the whole update ran and committed");
    let past = history(&mut c, &token, 1);
    assert_eq!((past[0].row_count, past[0].affected, past[0].truncated), (Some(5), Some(20), Some(true)));
}

// ---------------------------------------------------------------------------------
// Errors, EXPLAIN
// ---------------------------------------------------------------------------------

#[test]
fn an_error_reports_its_position_and_the_history_keeps_the_run() {
    let Ctx { db: _db, mut c, token } = setup();
    let sql = "SELECT idd FROM public.items";
    let err = run(&mut c, &token, sql, false, None).unwrap_err();
    assert_eq!(err.sqlstate(), "42703", "{err:?}");
    match err.db_error().position() {
        Some(ErrorPosition::Internal { position, query }) => {
            assert_eq!(*position, 8, "1-based position of idd");
            assert_eq!(query, sql);
        }
        other => panic!("expected an internal position, got {other:?}"),
    }
    // A syntax error (which the classifier leaves to the run) too.
    let sql = "SELECT id FROM public.items WHERE";
    let err = run(&mut c, &token, sql, false, None).unwrap_err();
    assert_eq!(err.sqlstate(), "42601", "{err:?}");
    match err.db_error().position() {
        Some(ErrorPosition::Internal { position, query }) => {
            assert_eq!(*position as usize, sql.len() + 1, "at the end of the text");
            assert_eq!(query, sql);
        }
        other => panic!("expected an internal position, got {other:?}"),
    }
    let past = history(&mut c, &token, 10);
    assert_eq!(past.len(), 2);
    assert_eq!(past[1].statement, "SELECT idd FROM public.items");
    assert_eq!(past[1].status, "failed");
    assert_eq!(past[1].error_code.as_deref(), Some("42703"));
}

#[test]
fn explain_shows_the_plan_and_analyze_runs_read_only() {
    let Ctx { db, mut c, token } = setup();
    let before = items_fingerprint(&db);
    let plan = ok(run(&mut c, &token, "SELECT * FROM public.items WHERE note IS NULL", false, Some("plan")));
    let text = plan["plan"].as_str().unwrap_or_else(|| panic!("no plan in {plan}"));
    assert!(text.contains("Scan"), "{text}");
    assert!(!text.contains("actual time"), "a plan without ANALYZE: {text}");
    assert_eq!(plan["columns"], json!([{"name": "QUERY PLAN", "type": "text"}]));

    let analyzed = ok(run(&mut c, &token, "SELECT * FROM public.items WHERE note IS NULL", false, Some("analyze")));
    let text = analyzed["plan"].as_str().unwrap();
    assert!(text.contains("actual time"), "{text}");

    let err = run(&mut c, &token, "UPDATE public.items SET name = 'analyzed'", false, Some("analyze")).unwrap_err();
    assert_eq!(err.sqlstate(), "25006", "{err:?}");
    assert_eq!(items_fingerprint(&db), before, "EXPLAIN ANALYZE in a read run changes nothing");

    let err = run(&mut c, &token, "CREATE TABLE public.explained (id int)", true, Some("plan")).unwrap_err();
    let (code, message) = err.refusal();
    assert_eq!(code, "refused");
    assert!(message.contains("CREATE TABLE"), "{message}");
    let err = run(&mut c, &token, "EXPLAIN SELECT 1", false, Some("plan")).unwrap_err();
    assert_eq!(err.refusal().0, "refused");
    let exists: bool = su_one(&db, "SELECT to_regclass('public.explained') IS NOT NULL");
    assert!(!exists);
    let refused = audit_details(&db, "sql.refused");
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["explain"], "plan");
    // An unknown explain mode is a bad call, not a refusal.
    let err = c
        .web
        .query("SELECT * FROM fluxbase_admin.start_sql_run($1, 'SELECT 1', false, 'verbose')", &[&token])
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22023");
}

#[test]
fn explain_analyze_of_a_write_counts_the_rows_it_changed() {
    let Ctx { db, mut c, token } = setup();
    let result = ok(run(&mut c, &token, "UPDATE public.items SET note = 'analyzed' WHERE id <= 3", true, Some("analyze")));
    let changed: i64 = su_one(&db, "SELECT count(*) FROM public.items WHERE note = 'analyzed'");
    assert_eq!(changed, 3, "EXPLAIN ANALYZE in a write run runs and commits the write");
    assert!(
        result["affected"] == json!(3) || result["affected"].is_null(),
        "affected is {} for {} plan lines; the update changed 3 rows",
        result["affected"],
        result["row_count"]
    );
}

#[test]
fn select_into_creates_its_table_or_is_refused_up_front() {
    let Ctx { db: _db, mut c, token } = setup();
    match run(&mut c, &token, "SELECT id, name INTO TEMP items_copy FROM public.items", true, None) {
        Ok(result) => assert_eq!(result["affected"], 20, "{result}"),
        Err(RunError::Refused { code, .. }) => assert_eq!(code, "refused"),
        Err(e) => panic!("SELECT INTO neither ran nor was refused: {}", e.db_error().message()),
    }
}

// ---------------------------------------------------------------------------------
// Cancel, history
// ---------------------------------------------------------------------------------

#[test]
fn a_run_is_cancelled_from_another_connection_by_its_admin_only() {
    let Ctx { db, c, token } = setup();
    let (mut bob, bob_token) = sign_in(&db, "bob@example.com", "admin");
    let (tx, rx) = mpsc::channel::<String>();
    let runner_token = token.clone();
    let runner = std::thread::spawn(move || {
        let mut c = c;
        let sql = "SELECT pg_sleep(30)";
        let begun = begin(&mut c, &runner_token, sql, false, None, None);
        assert!(begun.ok, "{begun:?}");
        tx.send(begun.run_id().to_string()).unwrap();
        let started = Instant::now();
        let result = execute_open(&mut c, &begun, sql);
        let elapsed = started.elapsed();
        (close(&mut c, &runner_token, &begun, false, result), elapsed, c)
    });
    let run_id = rx.recv_timeout(Duration::from_secs(10)).expect("the run began");
    std::thread::sleep(Duration::from_secs(1));

    // Another admin cannot see, let alone cancel, ann's run.
    let err = bob.web.query("SELECT fluxbase_admin.cancel_sql_run($1, $2::text::uuid)", &[&bob_token, &run_id]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "P0002", "{err:?}");

    let mut other = dashboard(&db);
    let cancelled: bool = other
        .query_one("SELECT fluxbase_admin.cancel_sql_run($1, $2::text::uuid)", &[&token, &run_id])
        .unwrap()
        .get(0);
    assert!(cancelled, "the cancel was sent");
    let (result, elapsed, mut c) = runner.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.sqlstate(), "57014", "{err:?}");
    assert!(err.db_error().message().contains("user request"), "{err:?}");
    assert!(elapsed < Duration::from_secs(5), "cancelled after {elapsed:?}");

    let again: bool = other
        .query_one("SELECT fluxbase_admin.cancel_sql_run($1, $2::text::uuid)", &[&token, &run_id])
        .unwrap()
        .get(0);
    assert!(!again, "a finished run is not cancelled");
    let past = history(&mut c, &token, 1);
    assert_eq!((past[0].run_id.as_str(), past[0].status.as_str()), (run_id.as_str(), "cancelled"));
    let cancels = audit_details(&db, "sql.cancel");
    assert_eq!(cancels.iter().map(|d| d["cancelled"].clone()).collect::<Vec<_>>(), [json!(true), json!(false)]);
    // The connection works normally afterwards.
    let after = ok(run(&mut c, &token, "SELECT 42", false, None));
    assert_eq!(rows(&after), vec![vec![Some("42".into())]]);
}

#[test]
fn the_history_lists_runs_newest_first_and_keeps_the_last_100() {
    let Ctx { db, mut c, token } = setup();
    ok(run(&mut c, &token, "SELECT 1", false, None));
    run(&mut c, &token, "SELECT idd FROM public.items", false, None).unwrap_err();
    ok(run(&mut c, &token, "UPDATE public.items SET note = 'x' WHERE id = 1", true, None));
    run(&mut c, &token, "SELECT 1; SELECT 2", false, None).unwrap_err(); // refused: not in the history
    let past = history(&mut c, &token, 100);
    assert_eq!(
        past.iter().map(|p| (p.statement.as_str(), p.mode.as_str(), p.status.as_str())).collect::<Vec<_>>(),
        [
            ("UPDATE public.items SET note = 'x' WHERE id = 1", "write", "succeeded"),
            ("SELECT idd FROM public.items", "read", "failed"),
            ("SELECT 1", "read", "succeeded"),
        ]
    );
    let (first, cursor) = history_page(&mut c, &token, 2, None);
    assert_eq!(first.len(), 2, "page_size is honoured");
    let (rest, end) = history_page(&mut c, &token, 2, cursor.as_deref());
    assert_eq!(rest.iter().map(|p| p.statement.as_str()).collect::<Vec<_>>(), ["SELECT 1"], "the next page goes on where the first ended");
    assert_eq!(end, None, "the last page has no next_cursor");

    for i in 0..105 {
        ok(run(&mut c, &token, &format!("SELECT {i}"), false, None));
    }
    let past = history(&mut c, &token, 1000);
    assert_eq!(past.len(), 100, "at most 100 are kept");
    assert_eq!(past[0].statement, "SELECT 104");
    assert_eq!(past[99].statement, "SELECT 5");
    assert!(past.iter().all(|p| p.status == "succeeded"));
    let kept: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.sql_runs");
    assert_eq!(kept, 100, "older runs are deleted, not only hidden");
}

#[test]
fn explain_as_json_gives_one_plan_tree() {
    let Ctx { db, mut c, token } = setup();
    let before = items_fingerprint(&db);
    let plan = ok(run(&mut c, &token, "SELECT * FROM public.items WHERE note IS NULL", false, Some("plan_json")));
    assert_eq!(plan["columns"], json!([{"name": "QUERY PLAN", "type": "json"}]));
    // The plan is the JSON value itself, not its text: [{"Plan": {"Node Type", "Plans": [...]}}].
    let root = &plan["plan"][0]["Plan"];
    assert!(root["Node Type"].as_str().unwrap_or_else(|| panic!("no plan tree in {plan}")).contains("Scan"), "{plan}");
    assert!(root["Output"].is_array(), "VERBOSE, as the text plan: {root}");
    assert!(root.get("Actual Total Time").is_none(), "a plan without ANALYZE: {root}");
    assert_eq!(rows(&plan).len(), 1, "EXPLAIN gives one JSON value");

    let analyzed = ok(run(&mut c, &token, "SELECT count(*) FROM public.items", false, Some("analyze_json")));
    let root = &analyzed["plan"][0]["Plan"];
    assert!(root["Actual Total Time"].is_number(), "{analyzed}");
    assert!(analyzed["plan"][0]["Execution Time"].is_number(), "{analyzed}");
    assert!(root["Plans"][0]["Node Type"].is_string(), "a tree: the aggregate over its scan: {root}");
    // The text modes still give text.
    assert!(ok(run(&mut c, &token, "SELECT 1", false, Some("plan")))["plan"].is_string());

    // EXPLAIN ANALYZE runs the statement: a read run stays read-only in JSON too.
    let err = run(&mut c, &token, "UPDATE public.items SET name = 'analyzed'", false, Some("analyze_json")).unwrap_err();
    assert_eq!(err.sqlstate(), "25006", "{err:?}");
    assert_eq!(items_fingerprint(&db), before);
    let err = run(&mut c, &token, "CREATE TABLE public.explained (id int)", true, Some("plan_json")).unwrap_err();
    assert_eq!(err.refusal().0, "refused");

    // The mode is in the intent and the history.
    let intents = audit_details(&db, "sql.run.intent");
    assert_eq!(intents[0]["explain"], "plan_json");
    let past: Value = c.web.query_one("SELECT fluxbase_admin.list_sql_runs($1)", &[&token]).unwrap().get(0);
    let modes: Vec<&str> = past["rows"].as_array().unwrap().iter().filter_map(|r| r["explain"].as_str()).collect();
    assert_eq!(modes, ["analyze_json", "plan", "analyze_json", "plan_json"]);
    // A format by another name is a bad call.
    for bad in ["json", "plan_yaml", "PLAN_JSON"] {
        let err = c.web.query("SELECT * FROM fluxbase_admin.start_sql_run($1, 'SELECT 1', false, $2)", &[&token, &bad]).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22023", "{bad}");
        assert!(err.as_db_error().unwrap().message().contains("plan_json"), "{err:?}");
    }
}

#[test]
fn the_history_is_searched_by_a_literal_part_of_the_statement_ignoring_case() {
    let Ctx { db, mut c, token } = setup();
    for sql in [
        "SELECT name FROM public.items WHERE name LIKE 'item 1%'",
        "select count(*) from public.ITEMS",
        "SELECT 'a_b' AS underscored",
        "SELECT 'ab' AS plain",
        "SELECT 1",
    ] {
        ok(run(&mut c, &token, sql, false, None));
    }
    let found = |c: &mut Conns, search: &str| -> Vec<String> {
        searched_page(c, &token, Some(search), 100, None).unwrap().0.into_iter().map(|p| p.statement).collect()
    };
    assert_eq!(
        found(&mut c, "Items"),
        ["select count(*) from public.ITEMS", "SELECT name FROM public.items WHERE name LIKE 'item 1%'"],
        "newest first, ignoring case"
    );
    assert_eq!(found(&mut c, "%"), ["SELECT name FROM public.items WHERE name LIKE 'item 1%'"], "% is a percent sign");
    assert_eq!(found(&mut c, "'a_b'"), ["SELECT 'a_b' AS underscored"], "_ is an underscore");
    assert_eq!(found(&mut c, "a_b"), ["SELECT 'a_b' AS underscored"]);
    assert!(found(&mut c, "no such text").is_empty());
    // No search, or an empty one: everything.
    assert_eq!(found(&mut c, "").len(), 5);
    assert_eq!(searched_page(&mut c, &token, None, 100, None).unwrap().0.len(), 5);

    // Pages of a search.
    let (first, cursor) = searched_page(&mut c, &token, Some("select"), 2, None).unwrap();
    assert_eq!(first.len(), 2);
    let (second, cursor) = searched_page(&mut c, &token, Some("select"), 2, cursor.as_deref()).unwrap();
    let (third, end) = searched_page(&mut c, &token, Some("select"), 2, cursor.as_deref()).unwrap();
    assert_eq!((second.len(), third.len(), end), (2, 1, None));

    // Each admin searches their own history; a password is not there to be found.
    let (mut viewer, vtoken) = sign_in(&db, "vic@example.com", "viewer");
    assert!(searched_page(&mut viewer, &vtoken, Some("items"), 10, None).unwrap().0.is_empty());
    ensure_role(&db, "sqlr_search_target", "NOLOGIN");
    run(&mut c, &token, "ALTER ROLE sqlr_search_target PASSWORD 'findme-secret'", true, None).unwrap_err();
    assert!(found(&mut c, "findme").is_empty(), "the history holds the redacted text only");
    assert_eq!(found(&mut c, "sqlr_search_target").len(), 1);

    // Bad paging and no session are errors.
    let err = searched_page(&mut c, &token, Some("select"), 0, None).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22023");
    let err = searched_page(&mut c, "fbs_nobody", Some("select"), 10, None).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000");
}

// ---------------------------------------------------------------------------------
// Saved snippets
// ---------------------------------------------------------------------------------

/// save_sql_snippet: (ok, code, message, snippet_id).
fn save_snippet(c: &mut Conns, token: &str, name: &str, sql: &str) -> Result<(bool, String, String, String), postgres::Error> {
    let row = c
        .web
        .query_one("SELECT ok, code, message, snippet_id::text FROM fluxbase_admin.save_sql_snippet($1, $2, $3)", &[&token, &name, &sql])?;
    Ok((row.get(0), row.get(1), row.get(2), row.get(3)))
}

/// The caller's snippets: (id, name, statement).
fn snippets(c: &mut Conns, token: &str) -> Vec<(String, String, String)> {
    c.web
        .query("SELECT snippet_id::text, name, statement FROM fluxbase_admin.list_sql_snippets($1)", &[&token])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn snippets_are_saved_replaced_listed_and_deleted_by_their_owner_only() {
    let Ctx { db, mut c, token } = setup();
    let (ok_, code, message, first) = save_snippet(&mut c, &token, "  Recent items ", "SELECT * FROM public.items ORDER BY id DESC").unwrap();
    assert!(ok_ && code == "saved", "{code}: {message}");
    assert!(message.contains("Recent items"), "{message}");
    let (_, code, _, again) = save_snippet(&mut c, &token, "Recent items", "SELECT * FROM public.items ORDER BY id DESC LIMIT 5").unwrap();
    assert_eq!((code.as_str(), again.as_str()), ("replaced", first.as_str()), "the same name replaces, keeping the id");
    let (_, _, _, second) = save_snippet(&mut c, &token, "counts", "SELECT count(*) FROM public.items").unwrap();
    assert_eq!(
        snippets(&mut c, &token),
        [
            (second.clone(), "counts".to_string(), "SELECT count(*) FROM public.items".to_string()),
            (first.clone(), "Recent items".to_string(), "SELECT * FROM public.items ORDER BY id DESC LIMIT 5".to_string()),
        ],
        "by name, ignoring case; the name trimmed"
    );

    // Viewers keep snippets of their own (they run read-only SQL); nobody sees another's.
    let (mut viewer, vtoken) = sign_in(&db, "vic@example.com", "viewer");
    assert!(snippets(&mut viewer, &vtoken).is_empty());
    let (_, code, _, vics) = save_snippet(&mut viewer, &vtoken, "counts", "SELECT 42").unwrap();
    assert_eq!(code, "saved", "the same name is another admin's own");
    assert_eq!(snippets(&mut viewer, &vtoken), [(vics.clone(), "counts".to_string(), "SELECT 42".to_string())]);
    assert_eq!(snippets(&mut c, &token).len(), 2);
    let err = viewer.web.query("SELECT * FROM fluxbase_admin.delete_sql_snippet($1, $2::text::uuid)", &[&vtoken, &first]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "P0002", "another admin's snippet is not found");
    assert_eq!(snippets(&mut c, &token).len(), 2);

    let row = c
        .web
        .query_one("SELECT ok, code FROM fluxbase_admin.delete_sql_snippet($1, $2::text::uuid)", &[&token, &second])
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, String>(1)), (true, "deleted".to_string()));
    assert_eq!(snippets(&mut c, &token).len(), 1);
    let err = c.web.query("SELECT * FROM fluxbase_admin.delete_sql_snippet($1, $2::text::uuid)", &[&token, &second]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "P0002", "deleted once");

    // Audited: who, which snippet, its name and statement.
    let saved = audit_details(&db, "snippet.saved");
    assert_eq!(saved.len(), 4);
    assert_eq!(saved[0]["name"], "Recent items");
    assert_eq!(saved[0]["replaced"], false);
    assert_eq!(saved[1]["replaced"], true);
    assert_eq!(saved[1]["statement"], "SELECT * FROM public.items ORDER BY id DESC LIMIT 5");
    let deleted: Vec<(String, String, Value)> = db
        .connect(Caller::Superuser)
        .query("SELECT actor, target_id, details FROM dashboard_auth.audit_log WHERE action = 'snippet.deleted'", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(deleted, [("ann@example.com".to_string(), second.clone(), json!({"name": "counts"}))]);
    let target: String = su_one(&db, "SELECT target_type FROM dashboard_auth.audit_log WHERE action = 'snippet.saved' LIMIT 1");
    assert_eq!(target, "sql_snippet");
}

#[test]
fn a_snippet_is_refused_bad_input_and_a_password() {
    let Ctx { db, mut c, token } = setup();
    for (name, sql) in [
        ("", "SELECT 1"),
        ("   ", "SELECT 1"),
        (&"n".repeat(201)[..], "SELECT 1"),
        ("empty", ""),
        ("blank", "  \n "),
        ("secret", "ALTER ROLE x PASSWORD 'hunter2'"),
        ("secret too", "CREATE ROLE y LOGIN PASSWORD $p$hunter2$p$"),
    ] {
        let err = save_snippet(&mut c, &token, name, sql).unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{name:?} {sql:?}: {err:?}");
    }
    let err = save_snippet(&mut c, &token, "secret", "ALTER ROLE x PASSWORD 'hunter2'").unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("PASSWORD"), "{err:?}");
    let huge = format!("SELECT '{}'", "x".repeat(100_000));
    assert_eq!(save_snippet(&mut c, &token, "huge", &huge).unwrap_err().code().unwrap().code(), "22023");
    let nothing: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.sql_snippets");
    assert_eq!(nothing, 0);
    let leaks: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.audit_log WHERE details::text LIKE '%hunter2%'");
    assert_eq!(leaks, 0);
    // The word password that is no keyword before a literal is fine.
    let (_, code, ..) = save_snippet(&mut c, &token, "columns", "SELECT password FROM public.items").unwrap();
    assert_eq!(code, "saved");
    let (_, code, ..) = save_snippet(&mut c, &token, "columns", "SELECT 'password' AS word").unwrap();
    assert_eq!(code, "replaced");

    // No session: every snippet function says so.
    for sql in [
        "SELECT * FROM fluxbase_admin.list_sql_snippets('fbs_nobody')",
        "SELECT * FROM fluxbase_admin.save_sql_snippet('fbs_nobody', 'a', 'SELECT 1')",
        "SELECT * FROM fluxbase_admin.delete_sql_snippet('fbs_nobody', gen_random_uuid())",
    ] {
        assert_eq!(c.web.query(sql, &[]).unwrap_err().code().unwrap().code(), "28000", "{sql}");
    }
    // Only the dashboard's role calls them.
    let mut app = db.connect(Caller::App);
    let err = app.query("SELECT * FROM fluxbase_admin.list_sql_snippets($1)", &[&token]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
}

// ---------------------------------------------------------------------------------
// Audit: redaction, impersonation, intents that survive
// ---------------------------------------------------------------------------------

#[test]
fn a_password_never_reaches_the_audit_log_or_the_history() {
    let Ctx { db, mut c, token } = setup();
    ensure_role(&db, "sqlr_pw_target", "NOLOGIN");
    let sql = "ALTER ROLE sqlr_pw_target PASSWORD 'hunter2'";
    let err = run(&mut c, &token, sql, true, None).unwrap_err();
    assert_eq!(err.sqlstate(), "42501", "service_role cannot change another role's password: {err:?}");
    let redacted = "ALTER ROLE sqlr_pw_target PASSWORD '***'";

    let leaks: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.audit_log WHERE details::text LIKE '%hunter2%'");
    assert_eq!(leaks, 0, "no audit entry holds the password");
    let intents = audit_details(&db, "sql.run.intent");
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["statement"], redacted);
    let leaks: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.sql_runs WHERE statement LIKE '%hunter2%' OR error_message LIKE '%hunter2%'");
    assert_eq!(leaks, 0);
    let past = history(&mut c, &token, 10);
    assert_eq!(past.len(), 1);
    assert_eq!(past[0].statement, redacted);
    assert_eq!(past[0].status, "failed");

    // A refused statement is redacted too.
    run(&mut c, &token, "ALTER ROLE sqlr_pw_target PASSWORD 'hunter2'; SELECT 1", true, None).unwrap_err();
    let refused = audit_details(&db, "sql.refused");
    assert_eq!(refused[0]["statement"], "ALTER ROLE sqlr_pw_target PASSWORD '***'; SELECT 1");
    let leaks: i64 = su_one(&db, "SELECT count(*) FROM dashboard_auth.audit_log WHERE details::text LIKE '%hunter2%'");
    assert_eq!(leaks, 0);
}

#[test]
fn every_spelling_of_a_password_literal_is_redacted() {
    let Ctx { db, mut c, token } = setup();
    ensure_role(&db, "sqlr_pw_target", "NOLOGIN");
    for sql in [
        "ALTER ROLE sqlr_pw_target PASSWORD U&'hunter2'",
        "ALTER ROLE sqlr_pw_target PASSWORD /* the new one */ 'hunter2'",
        "ALTER ROLE sqlr_pw_target PASSWORD 'hun'\n'ter2'",
    ] {
        let err = run(&mut c, &token, sql, true, None).unwrap_err();
        assert_eq!(err.sqlstate(), "42501", "{sql}: {err:?}");
    }
    let leaked: Vec<String> = db
        .connect(Caller::Superuser)
        .query("SELECT details->>'statement' FROM dashboard_auth.audit_log WHERE details::text ~ 'hunter2|ter2'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(leaked.is_empty(), "passwords in the audit log: {leaked:?}");
}

#[test]
fn the_statement_that_runs_is_the_one_recorded() {
    let Ctx { db, mut c, token } = setup();
    let recorded = "/* password 'x' */ SELECT 1";
    let executed = "/* password '*/ INSERT INTO public.items (id, name) VALUES (60, $h$hidden$h$); /*' */ SELECT 1";
    let begun = begin(&mut c, &token, recorded, true, None, None);
    assert!(begun.ok, "{begun:?}");
    let result = execute_open(&mut c, &begun, executed);
    let outcome = close(&mut c, &token, &begun, true, result);
    let hidden: i64 = su_one(&db, "SELECT count(*) FROM public.items WHERE id = 60");
    assert_eq!(hidden, 0, "a statement other than the recorded one ran: {outcome:?}");
    assert_eq!(outcome.unwrap_err().sqlstate(), "22023");

    // One statement alone: the audit text must still show what it does.
    let sql = "/* password '*/ DELETE FROM public.items WHERE id = 20 /*' */";
    ok(run(&mut c, &token, sql, true, None));
    let intents = audit_details(&db, "sql.run.intent");
    let last = intents.last().unwrap();
    assert!(last["statement"].as_str().unwrap().contains("DELETE"), "the audit log hides the statement: {last}");
}

/// The shared RLS fixture. Returns joe's id.
fn todos_fixture(db: &TestDb) -> String {
    fluxbase_tests::fixtures::rls_todos(db).0
}

fn start_impersonation(c: &mut Conns, token: &str, mode: &str, target: Option<&str>) -> String {
    let row = c
        .web
        .query_one(
            "SELECT ok, code, message, impersonation_id::text FROM auth.start_impersonation($1, $2, $3, 'ticket 42')",
            &[&token, &mode, &target],
        )
        .unwrap();
    let (started, code, message): (bool, String, String) = (row.get(0), row.get(1), row.get(2));
    assert!(started, "{code}: {message}");
    row.get(3)
}

#[test]
fn an_impersonated_run_sees_only_the_targets_rows_and_is_audited_as_such() {
    let Ctx { db, mut c, token } = setup();
    let joe = todos_fixture(&db);
    let impersonation = start_impersonation(&mut c, &token, "user", Some("joe@example.com"));

    let sql = "SELECT title, auth.uid()::text AS uid, current_user::text AS who FROM public.todos ORDER BY title";
    let begun = begin(&mut c, &token, sql, false, None, Some(&impersonation));
    assert!(begun.ok, "{begun:?}");
    assert_eq!(begun.run_as.as_deref(), Some("authenticated"));
    let result = execute_open(&mut c, &begun, sql);
    let read = close(&mut c, &token, &begun, false, result).unwrap();
    assert_eq!(read["run_as"], "authenticated");
    assert_eq!(
        rows(&read),
        vec![
            vec![Some("joe private".into()), Some(joe.clone()), Some("authenticated".into())],
            vec![Some("joe public".into()), Some(joe.clone()), Some("authenticated".into())],
        ]
    );
    // A write run under impersonation is held to the user's policies.
    let err = run_as(&mut c, &token, "UPDATE public.todos SET owner = NULL RETURNING title", true, None, Some(&impersonation)).unwrap_err();
    assert_eq!(err.sqlstate(), "42501", "{err:?}");
    let titles: i64 = su_one(&db, "SELECT count(*) FROM public.todos WHERE owner IS NULL");
    assert_eq!(titles, 1, "nothing changed");

    let intents = audit_details(&db, "impersonated.sql.run.intent");
    assert_eq!(intents.len(), 2, "{intents:?}");
    assert_eq!(intents[0]["statement"], sql);
    assert_eq!(intents[0]["run_id"], begun.run_id());
    assert_eq!(intents[0]["as_role"], "authenticated");
    assert_eq!(intents[0]["claims_sub"], joe.as_str());
    let results = audit_details(&db, "impersonated.sql.run.result");
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0]["run_id"], begun.run_id());
    assert_eq!(results[0]["status"], "succeeded");
    assert_eq!(results[0]["row_count"], 2);
    assert_eq!(results[1]["status"], "failed");
    assert_eq!(results[1]["error_code"], "42501");
    let intent_id: i64 = su_one(&db, "SELECT min(id) FROM dashboard_auth.audit_log WHERE action = 'impersonated.sql.run.intent'");
    assert_eq!(results[0]["intent_id"], intent_id);
    let actions = admin::audit_actions(&db);
    assert!(!actions.iter().any(|a| a.starts_with("sql.run.")), "no plain sql.run entries: {actions:?}");
    let past = history(&mut c, &token, 10);
    assert_eq!(past.len(), 2);
    assert_eq!(past[1].statement, sql);
}

#[test]
fn the_intent_of_a_failing_statement_survives() {
    let Ctx { db, mut c, token } = setup();
    let sql = "INSERT INTO public.items (id, name) VALUES (1, 'duplicate')";
    let err = run(&mut c, &token, sql, true, None).unwrap_err();
    assert_eq!(err.sqlstate(), "23505", "{err:?}");
    let intents = audit_details(&db, "sql.run.intent");
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["statement"], sql);
    assert_eq!(intents[0]["command"], "INSERT");
    assert_eq!(intents[0]["mode"], "write");
    let failed = audit_details(&db, "sql.run.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error_code"], "23505");
    let intent_id: i64 = su_one(&db, "SELECT id FROM dashboard_auth.audit_log WHERE action = 'sql.run.intent'");
    assert_eq!(failed[0]["intent_id"], intent_id);

    // Even when the caller never finishes (a crash after the rollback), the intent stays.
    let sql = "UPDATE public.items SET id = 1 WHERE id = 2";
    let begun = begin(&mut c, &token, sql, true, None, None);
    let err = execute_open(&mut c, &begun, sql).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    c.data.batch_execute("ROLLBACK").unwrap();
    let intents = audit_details(&db, "sql.run.intent");
    assert_eq!(intents.len(), 2);
    assert_eq!(intents[1]["statement"], sql);
    let past = history(&mut c, &token, 1);
    assert_eq!(past[0].status, "running", "unfinished: the history shows it as such");
}

// ---------------------------------------------------------------------------------
// The runner role, and the connection afterwards
// ---------------------------------------------------------------------------------

#[test]
fn the_runner_role_is_never_a_superuser_or_one_with_createrole() {
    let Ctx { db, mut c, token } = setup();
    ensure_role(&db, "sqlr_creator", "NOLOGIN CREATEROLE");
    ensure_role(&db, "sqlr_creator_member", "NOLOGIN");
    ensure_role(&db, "sqlr_later", "NOLOGIN NOCREATEROLE");
    db.connect(Caller::Superuser).batch_execute("GRANT sqlr_creator TO sqlr_creator_member").unwrap();
    for role in ["postgres", "sqlr_creator", "sqlr_creator_member", "no_such_role_sqlr"] {
        let err = set_setting(&mut c, &token, "runner.role", role).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22023", "{role}: {err:?}");
    }
    let role: String = c
        .web
        .query_one("SELECT value FROM dashboard_auth.list_settings($1) WHERE key = 'runner.role'", &[&token])
        .unwrap()
        .get(0);
    assert_eq!(role, "service_role", "the setting is unchanged");

    // A role that gains CREATEROLE after being chosen is refused at the next run, and a
    // run begun before is refused when it executes. Choosing it needs every data login to
    // be a member first; the membership is taken back at once (the data login is
    // cluster-wide, and a membership no database lists makes other databases' claims
    // refuse it; a data login that reaches CREATEROLE would be refused everywhere).
    let mut su = db.connect(Caller::Superuser);
    data_logins(&mut su, "GRANT sqlr_later TO %I");
    let chosen = set_setting(&mut c, &token, "runner.role", "sqlr_later");
    data_logins(&mut su, "REVOKE sqlr_later FROM %I");
    chosen.unwrap();
    let early = begin(&mut c, &token, "SELECT 1", false, None, None);
    assert!(early.ok, "{early:?}");
    su.batch_execute("ALTER ROLE sqlr_later CREATEROLE").unwrap();
    let refused = run(&mut c, &token, "SELECT 1", false, None);
    let executed = execute_open(&mut c, &early, "SELECT 1");
    su.batch_execute("ALTER ROLE sqlr_later NOCREATEROLE").unwrap();
    let err = refused.unwrap_err();
    let (code, message) = err.refusal();
    assert_eq!(code, "refused");
    assert!(message.contains("CREATEROLE"), "{message}");
    let err = close(&mut c, &token, &early, false, executed).unwrap_err();
    assert_eq!(err.sqlstate(), "42501", "{err:?}");
    assert!(err.db_error().message().contains("CREATEROLE"), "{err:?}");
}

#[test]
fn the_runner_role_is_never_the_operators_or_the_dashboards_role() {
    let Ctx { db: _db, mut c, token } = setup();
    let mut accepted = Vec::new();
    for role in ["fluxbase_operator", "fluxbase_dashboard", "pg_execute_server_program"] {
        match set_setting(&mut c, &token, "runner.role", role) {
            Err(e) => assert_eq!(e.code().unwrap().code(), "22023", "{role}: {e:?}"),
            Ok(()) => accepted.push(role),
        }
    }
    assert!(accepted.is_empty(), "accepted as runner.role: {accepted:?}");
}

#[test]
fn a_connection_is_clean_after_a_run() {
    let Ctx { db, mut c, token } = setup();
    todos_fixture(&db);
    // The claims: unset before any transaction set them, '' afterwards (Postgres keeps the
    // placeholder variable); both mean "no claims".
    let state = |conn: &mut Client| -> (String, String, Option<String>) {
        let row = conn
            .query_one(
                "SELECT current_user::text, current_setting('search_path'), nullif(current_setting('request.jwt.claims', true), '')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let before = state(&mut c.data);
    assert_eq!(before.0, "fluxbase_data");
    let web_before = state(&mut c.web);
    assert_eq!(web_before.0, "fluxbase_dashboard");

    // Inside the run's transaction, right after the statement: back to the data login.
    let sql = "UPDATE public.items SET note = current_user WHERE id = 1 RETURNING note";
    let begun = begin(&mut c, &token, sql, true, None, None);
    let result = execute_open(&mut c, &begun, sql);
    let (role, path): (String, String) = c
        .data
        .query_one("SELECT current_user::text, current_setting('search_path')", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(role, "fluxbase_data");
    assert_eq!(path, before.1);
    let written = close(&mut c, &token, &begun, true, result).unwrap();
    assert_eq!(rows(&written), vec![vec![Some("service_role".into())]]);
    assert_eq!(state(&mut c.data), before);

    // An impersonated write sets claims and the role for its transaction only.
    let impersonation = start_impersonation(&mut c, &token, "user", Some("joe@example.com"));
    let sql = "UPDATE public.todos SET title = title || '!' RETURNING current_setting('request.jwt.claims')::jsonb ->> 'email'";
    let begun = begin(&mut c, &token, sql, true, None, Some(&impersonation));
    let result = execute_open(&mut c, &begun, sql);
    let inside: String = c.data.query_one("SELECT current_user::text", &[]).map(|r| r.get(0)).unwrap();
    assert_eq!(inside, "fluxbase_data", "back to the data login inside the transaction");
    let written = close(&mut c, &token, &begun, true, result).unwrap();
    assert_eq!(rows(&written), vec![vec![Some("joe@example.com".into())]; 2]);
    assert_eq!(state(&mut c.data), before, "claims, role and search_path are back after COMMIT");
    assert_eq!(state(&mut c.web), web_before, "the dashboard login never switched");

    // A temporary table made by a write run stays in the session until DISCARD ALL (which
    // fluxbase serve runs when the connection goes back to its pool): recorded, not asserted.
    ok(run(&mut c, &token, "CREATE TEMP TABLE sqlr_scratch (x int)", true, None));
    let temp: bool = c.data.query_one("SELECT to_regclass('pg_temp.sqlr_scratch') IS NOT NULL", &[]).unwrap().get(0);
    eprintln!("after a write run with CREATE TEMP TABLE, the temporary table is still there: {temp}");
    assert_eq!(state(&mut c.data), before);

    // So do session-level settings that a committed write run makes, even the role when a
    // DO block sets it: recorded here for the report, not asserted.
    ok(run(&mut c, &token, "SELECT set_config('statement_timeout', '4242', false)", true, None));
    let timeout: String = c.data.query_one("SELECT current_setting('statement_timeout')", &[]).unwrap().get(0);
    eprintln!("after a write run with set_config('statement_timeout', '4242', false): statement_timeout = {timeout}");
    ok(run(&mut c, &token, "DO $$ BEGIN SET ROLE service_role; END $$", true, None));
    let role: String = c.data.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    eprintln!("after a write run of DO $$ BEGIN SET ROLE service_role; END $$: current_user = {role}");
}
