//! The SQL runner through `fluxbase serve`: the three steps on one pooled connection, the
//! server's notices, error positions, cancel from a second request, and a connection that
//! is clean when the next request gets it.

use fluxbase_tests::admin::{create_admin, login, PASSWORD};
use fluxbase_tests::{Caller, Server, TestDb};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn signed_in(db: &TestDb, role: &str) -> String {
    create_admin(db, &format!("{role}@example.com"), role);
    let mut web = db.connect(Caller::Dashboard);
    login(&mut web, &format!("{role}@example.com"), PASSWORD, "203.0.113.9").token().to_string()
}

fn fixture(db: &TestDb) {
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.notes (id int PRIMARY KEY, body text);
             INSERT INTO public.notes VALUES (1, 'one'), (2, 'two'), (3, NULL);
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO service_role;",
        )
        .unwrap();
}

fn run(server: &Server, token: &str, body: Value) -> Value {
    let (status, answer) = server.post_json("/api/sql/runs", Some(token), &body);
    assert_eq!(status, 200, "{answer}");
    answer
}

#[test]
fn a_read_and_a_write_run_through_the_binary() {
    let db = TestDb::new();
    fixture(&db);
    let token = signed_in(&db, "admin");
    let server = Server::start(&db);

    let read = run(&server, &token, json!({"statement": "SELECT id, body, id FROM notes ORDER BY id"}));
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["run_as"], "service_role");
    assert_eq!(read["read_only"], true);
    assert_eq!(read["columns"], json!([{"name": "id", "type": "integer"}, {"name": "body", "type": "text"}, {"name": "id", "type": "integer"}]));
    assert_eq!(read["rows"], json!([["1", "one", "1"], ["2", "two", "2"], ["3", null, "3"]]));

    let write = run(&server, &token, json!({"statement": "UPDATE notes SET body = 'x' WHERE id < 3", "allow_writes": true}));
    assert_eq!((write["ok"].clone(), write["affected"].clone(), write["command"].clone()), (json!(true), json!(2), json!("UPDATE")), "{write}");
    let changed: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM notes WHERE body = 'x'", &[]).unwrap().get(0);
    assert_eq!(changed, 2);

    // The same write in a read run changes nothing.
    let refused = run(&server, &token, json!({"statement": "UPDATE notes SET body = 'y'"}));
    assert_eq!((refused["ok"].clone(), refused["code"].clone(), refused["status"].clone()), (json!(false), json!("25006"), json!("failed")), "{refused}");
    let (_, history) = server.get_json_with("/api/sql/history", &token);
    let statuses: Vec<&str> = history["rows"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "succeeded", "succeeded"]);
    // Searched and paged as list_sql_runs is.
    let (status, found) = server.get_json_with("/api/sql/history?search=UPDATE%20notes&page_size=1", &token);
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["rows"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["rows"][0]["statement"], "UPDATE notes SET body = 'y'");
    let cursor = found["next_cursor"].as_str().expect("a second page").replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let (_, rest) = server.get_json_with(&format!("/api/sql/history?search=update%20NOTES&page_size=1&cursor={cursor}"), &token);
    assert_eq!(rest["rows"][0]["statement"], "UPDATE notes SET body = 'x' WHERE id < 3", "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");

    // EXPLAIN in JSON: the plan is a tree, not text.
    let plan = run(&server, &token, json!({"statement": "SELECT * FROM notes", "explain": "plan_json"}));
    assert!(plan["plan"][0]["Plan"]["Node Type"].is_string(), "{plan}");
}

#[test]
fn refusals_errors_and_notices_come_back_as_results() {
    let db = TestDb::new();
    fixture(&db);
    let token = signed_in(&db, "admin");
    let server = Server::start(&db);

    let several = run(&server, &token, json!({"statement": "SELECT 1; DROP TABLE notes"}));
    assert_eq!((several["ok"].clone(), several["code"].clone()), (json!(false), json!("refused")), "{several}");

    let error = run(&server, &token, json!({"statement": "SELECT idd FROM notes"}));
    assert_eq!((error["code"].clone(), error["position"].clone()), (json!("42703"), json!(8)), "{error}");
    let explained = run(&server, &token, json!({"statement": "SELECT idd FROM notes", "explain": "plan"}));
    assert_eq!(explained["position"], 8, "an EXPLAIN's position is in the statement's own text: {explained}");

    let notice = run(&server, &token, json!({"statement": "DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$"}));
    assert_eq!(notice["ok"], true, "{notice}");
    let messages: Vec<&str> = notice["notices"].as_array().unwrap().iter().map(|n| n["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["hello from plpgsql"]);

    let (status, _) = server.post_json("/api/sql/runs", None, &json!({"statement": "SELECT 1"}));
    assert_eq!(status, 401);
    let (status, body) = server.post_json("/api/sql/runs", Some("fbs_not_a_session"), &json!({"statement": "SELECT 1"}));
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("28000")), "{body}");
}

#[test]
fn a_viewer_reads_but_cannot_write() {
    let db = TestDb::new();
    fixture(&db);
    let token = signed_in(&db, "viewer");
    let server = Server::start(&db);
    assert_eq!(run(&server, &token, json!({"statement": "SELECT count(*) FROM notes"}))["rows"], json!([["3"]]));
    let write = run(&server, &token, json!({"statement": "DELETE FROM notes", "allow_writes": true}));
    assert_eq!((write["ok"].clone(), write["code"].clone()), (json!(false), json!("forbidden")), "{write}");
}

#[test]
fn a_running_statement_is_cancelled_from_another_request() {
    let db = TestDb::new();
    let token = signed_in(&db, "admin");
    let server = std::sync::Arc::new(Server::start(&db));
    let started = Instant::now();
    let runner = {
        let (server, token) = (server.clone(), token.clone());
        std::thread::spawn(move || run(&server, &token, json!({"statement": "SELECT pg_sleep(30)"})))
    };
    let run_id = loop {
        let (_, history) = server.get_json_with("/api/sql/history", &token);
        if let Some(running) = history["rows"].as_array().unwrap().iter().find(|r| r["status"] == "running") {
            break running["run_id"].as_str().unwrap().to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Give the statement time to be under way, then cancel it.
    std::thread::sleep(Duration::from_millis(300));
    let (status, cancelled) = server.post_json(&format!("/api/sql/runs/{run_id}/cancel"), Some(&token), &json!({}));
    assert_eq!((status, cancelled["cancelled"].clone()), (200, json!(true)), "{cancelled}");
    let answer = runner.join().unwrap();
    assert_eq!((answer["code"].clone(), answer["status"].clone()), (json!("57014"), json!("cancelled")), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let (_, again) = server.post_json(&format!("/api/sql/runs/{run_id}/cancel"), Some(&token), &json!({}));
    assert_eq!(again["cancelled"], false, "a finished run is not cancelled twice");
}

#[test]
fn a_pooled_connection_is_clean_after_a_run() {
    let db = TestDb::new();
    let token = signed_in(&db, "admin");
    let server = Server::start(&db);
    // A write run leaves a session setting, a temporary table and a prepared statement.
    let dirty = run(
        &server,
        &token,
        json!({"statement": "CREATE TEMP TABLE scratch AS SELECT pg_backend_pid() AS pid, set_config('work_mem', '1234kB', false) AS wm", "allow_writes": true}),
    );
    assert_eq!(dirty["ok"], true, "{dirty}");
    let dirty_pid = {
        // The run's backend, from the history's record of it.
        let mut su = db.connect(Caller::Superuser);
        su.query_one("SELECT backend_pid FROM dashboard_auth.sql_runs WHERE statement LIKE 'CREATE TEMP TABLE scratch%'", &[])
            .unwrap()
            .get::<_, i32>(0)
    };
    let mut reused = false;
    for _ in 0..20 {
        let check = run(
            &server,
            &token,
            json!({"statement": "SELECT pg_backend_pid(), current_setting('work_mem'), current_user, to_regclass('pg_temp.scratch') IS NULL, current_setting('request.jwt.claims', true)"}),
        );
        let row = &check["rows"][0];
        assert_eq!(row[1], "4MB", "work_mem leaked into the next run: {check}");
        assert_eq!(row[2], "service_role");
        assert_eq!(row[3], "true", "the temporary table leaked into the next run: {check}");
        assert!(row[4].is_null() || row[4] == "", "claims leaked: {check}");
        if row[0] == dirty_pid.to_string() {
            reused = true;
            break;
        }
    }
    assert!(reused, "the dirty connection was never handed out again");
}
