//! `fluxbase serve` over HTTP: health, TLS to Postgres, and the pool under failure.

use fluxbase_tests::{admin, fluxbase, Caller, Server, TestDb};

#[test]
fn healthz_reports_the_installed_extension_version() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (status, body) = server.get_json("/healthz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["extension_version"], "0.1.0");
    assert_eq!(body["version"], "0.1.0");
    // Health says nothing more than that.
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
}

#[test]
fn healthz_says_unavailable_when_the_extension_goes_away() {
    let db = TestDb::new();
    let server = Server::start(&db);
    db.connect(Caller::Superuser).batch_execute("DROP EXTENSION fluxbase_admin").unwrap();
    let (status, body) = server.get_json("/healthz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "the fluxbase_admin extension is not installed");
}

#[test]
fn dropped_database_connections_are_replaced() {
    let db = TestDb::new();
    let server = Server::start(&db);
    assert_eq!(server.get_json("/healthz").0, 200);
    let mut su = db.connect(Caller::Superuser);
    let killed: i64 = su
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE usename = 'fluxbase_web' AND datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the server should have held a pooled connection");
    // Recycling resets each connection before reuse, finds the dead one, and the pool
    // opens a new one: no request sees the failure.
    let statuses: Vec<u16> = (0..3).map(|_| server.get_json("/healthz").0).collect();
    assert_eq!(statuses, [200, 200, 200]);
}

#[test]
fn sslmode_require_connects_over_tls() {
    let db = TestDb::new();
    let server = Server::start_with(fluxbase().env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=require")));
    assert_eq!(server.get_json("/healthz").0, 200);
    let mut su = db.connect(Caller::Superuser);
    let (connections, encrypted): (i64, i64) = {
        let row = su
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a
                   JOIN pg_stat_ssl s ON s.pid = a.pid
                  WHERE a.usename = 'fluxbase_web' AND a.datname = current_database()",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(connections >= 1);
    assert_eq!(connections, encrypted, "every connection of the dashboard must use TLS");
}

#[test]
fn the_first_start_prints_a_setup_link_that_creates_the_first_admin() {
    let db = TestDb::new();
    let server = Server::start_with(
        fluxbase()
            .env("DATABASE_URL", db.url(Caller::Dashboard, ""))
            .env("FLUXBASE_ADMIN_PUBLIC_URL", "https://admin.example.com/"),
    );
    let output = server.output.lock().unwrap().clone();
    let link = output
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("https://admin.example.com/setup?token=")))
        .unwrap_or_else(|| panic!("no setup link printed:\n{output}"))
        .to_string();
    let token = link.split("token=").nth(1).unwrap();

    let mut web = db.connect(Caller::Dashboard);
    let result = admin::login_result(
        admin::as_dashboard(&mut web, "SELECT * FROM dashboard_auth.complete_setup($1, 'ada@example.com', 'Ada', $2)", &[&token, &admin::PASSWORD])
            .unwrap(),
    );
    assert!(result.ok, "{result:?}");
    drop(server);

    // Once an admin exists, a start prints the address and no link.
    let server = Server::start_with(
        fluxbase()
            .env("DATABASE_URL", db.url(Caller::Dashboard, ""))
            .env("FLUXBASE_ADMIN_PUBLIC_URL", "https://admin.example.com/"),
    );
    let output = server.output.lock().unwrap().clone();
    assert!(output.contains("open https://admin.example.com\n"), "{output}");
    assert!(!output.contains("setup?token="), "{output}");
}

#[test]
fn transactions_leave_no_role_or_setting_on_pooled_connections() {
    let db = TestDb::new();
    let server = Server::start(&db);
    for _ in 0..5 {
        assert_eq!(server.get_json("/healthz").0, 200);
    }
    // Between requests, each of the dashboard's connections is idle as its login role:
    // the role switch was transaction-local.
    let mut su = db.connect(Caller::Superuser);
    let rows = su
        .query(
            "SELECT state, backend_type FROM pg_stat_activity
              WHERE usename = 'fluxbase_web' AND datname = current_database()",
            &[],
        )
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let state: Option<String> = row.get(0);
        assert_eq!(state.as_deref(), Some("idle"), "a pooled connection was left in a transaction");
    }
}

#[test]
fn an_internal_error_gives_a_reference_and_keeps_the_database_address_in_the_log() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut su = db.connect(Caller::Superuser);
    // The database stops taking connections and the pooled ones go: the next request
    // cannot reach it.
    su.batch_execute(&format!("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", db.name)).unwrap();
    su.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'fluxbase_web'",
        &[],
    )
    .unwrap();
    let (status, body) = server.get_json_with("/api/sql/history", "fbs_anything");
    su.batch_execute(&format!("GRANT CONNECT ON DATABASE {} TO PUBLIC", db.name)).unwrap();
    assert_eq!(status, 503, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "unavailable", "{body}");
    let reference = error["reference"].as_str().unwrap_or_else(|| panic!("no reference: {body}"));
    let text = body.to_string();
    for secret in ["127.0.0.1", "localhost", "54330", db.name.as_str()] {
        assert!(!text.contains(secret), "the answer names {secret}: {body}");
    }
    assert!(error["message"].as_str().unwrap().contains(reference), "{body}");
    // The log has the reference with the detail an operator needs.
    let log_line = server.output_line(reference);
    assert!(log_line.contains(&db.name), "the log names the database: {log_line}");
}
