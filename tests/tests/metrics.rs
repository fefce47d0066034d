//! Analytics and monitoring: each metric checked against a known state, sampling and its
//! one-sampler lock, the pool heartbeats of two running copies, and GET /metrics.

use std::time::{Duration, Instant};

use fluxbase_tests::admin::{as_dashboard, create_admin, login, sqlstate, PASSWORD};
use fluxbase_tests::{fluxbase, Caller, Server, TestDb, PASSWORD as DB_PASSWORD};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

struct Viewer {
    web: Client,
    token: String,
}

/// Metrics are for admins and viewers alike: read them as a viewer.
fn viewer(db: &TestDb) -> Viewer {
    create_admin(db, "ann@example.com", "admin");
    create_admin(db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    Viewer { web, token }
}

impl Viewer {
    fn call(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&self.token];
        all.extend_from_slice(params);
        as_dashboard(&mut self.web, sql, &all).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    fn overview(&mut self) -> serde_json::Value {
        self.call("SELECT fluxbase_admin.get_metrics($1)", &[])[0].get(0)
    }
}

fn connect_as_app(db: &TestDb, application: &str) -> Client {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(std::env::var("FLUXBASE_TEST_PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(54330))
        .user("app_user")
        .password(DB_PASSWORD)
        .dbname(&db.name)
        .application_name(application)
        .connect(NoTls)
        .unwrap()
}

#[test]
fn extra_connections_are_counted() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let application = format!("metrics-test-{}", db.name);
    let before: i64 = viewer.call("SELECT in_use FROM fluxbase_admin.get_connections($1)", &[])[0].get(0);
    let extra: Vec<Client> = (0..5).map(|_| connect_as_app(&db, &application)).collect();
    let rows = viewer.call("SELECT backends, usename FROM fluxbase_admin.list_backends($1) WHERE application_name = $2", &[&application]);
    let counted: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
    assert_eq!(counted, 5);
    assert_eq!(rows[0].get::<_, String>(1), "app_user");
    let row = &viewer.call("SELECT in_use, max_connections, superuser_reserved_connections, available_to_others FROM fluxbase_admin.get_connections($1)", &[])[0];
    let (in_use, max, reserved, available): (i64, i32, i32, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(in_use >= before + 5 - 2, "{in_use} vs {before} (other tests come and go)");
    assert_eq!(max, 200);
    assert_eq!(reserved, 3);
    assert_eq!(available, (max - reserved) as i64 - in_use);
    drop(extra);
}

#[test]
fn a_table_of_known_size_shows_in_storage() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.items (id int PRIMARY KEY, note text);
         INSERT INTO shop.items SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g;
         INSERT INTO shop.items VALUES (0, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g));
         DELETE FROM shop.items WHERE id <= 100;
         ANALYZE shop.items;",
    )
    .unwrap();
    let expected = su
        .query_one(
            "SELECT pg_relation_size('shop.items'), pg_indexes_size('shop.items'),
                    pg_total_relation_size(reltoastrelid)
               FROM pg_class WHERE oid = 'shop.items'::regclass",
            &[],
        )
        .unwrap();
    let row = &viewer.call("SELECT heap_bytes, index_bytes, toast_bytes, estimated_rows, dead_tuples, total_bytes, exact FROM fluxbase_admin.list_table_sizes($1, 'shop')", &[])[0];
    assert!(row.get::<_, bool>(6), "exact sizes when nothing holds the table");
    assert_eq!(row.get::<_, i64>(0), expected.get::<_, i64>(0));
    assert_eq!(row.get::<_, i64>(1), expected.get::<_, i64>(1));
    assert_eq!(row.get::<_, i64>(2), expected.get::<_, i64>(2));
    assert!(row.get::<_, i64>(2) > 0, "the big value went to TOAST");
    assert_eq!(row.get::<_, i64>(3), 9900, "10,001 rows less the 101 deleted");
    let total = row.get::<_, i64>(5);
    assert!(total >= row.get::<_, i64>(0) + row.get::<_, i64>(1));
    let schemas = viewer.call("SELECT tables, estimated_bytes FROM fluxbase_admin.list_schema_sizes($1) WHERE schema = 'shop'", &[]);
    assert_eq!(schemas[0].get::<_, i64>(0), 1);
    let estimated = schemas[0].get::<_, i64>(1);
    assert!(estimated >= expected.get::<_, i64>(0), "the catalog's estimate after ANALYZE covers the heap: {estimated}");

    // A table someone holds ACCESS EXCLUSIVE is not waited for: its row says it is an estimate.
    let mut holder = db.connect(Caller::Superuser);
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE shop.items IN ACCESS EXCLUSIVE MODE").unwrap();
    let started = Instant::now();
    let row = &viewer.call("SELECT exact, heap_bytes FROM fluxbase_admin.list_table_sizes($1, 'shop')", &[])[0];
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!row.get::<_, bool>(0));
    assert!(row.get::<_, i64>(1) > 0);
    tx.rollback().unwrap();
}

#[test]
fn query_texts_never_show_string_literals() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let application = format!("secretive-{}", db.name);
    let mut app = connect_as_app(&db, &application);
    let running = std::thread::spawn(move || app.batch_execute("SELECT pg_sleep(1.5), 'hunter2-is-my-password'").is_ok());
    let deadline = Instant::now() + Duration::from_secs(10);
    let query: String = loop {
        let rows = viewer.call("SELECT query FROM fluxbase_admin.list_activity($1) WHERE application_name = $2", &[&application]);
        if let Some(row) = rows.first() {
            break row.get(0);
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!query.contains("hunter2"), "{query}");
    assert!(query.contains("'***'"), "{query}");
    assert!(running.join().unwrap());
}

#[test]
fn statements_come_from_pg_stat_statements_or_a_note_says_how() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let missing = viewer.call("SELECT available, note FROM fluxbase_admin.list_statements($1)", &[]);
    assert!(!missing[0].get::<_, bool>(0));
    let note: String = missing[0].get(1);
    assert!(note.contains("CREATE EXTENSION pg_stat_statements") && note.contains("shared_preload_libraries"), "{note}");

    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("CREATE EXTENSION pg_stat_statements").unwrap();
    let mut app = connect_as_app(&db, "probe");
    for _ in 0..3 {
        app.query("SELECT pg_sleep(0.01) AS fluxbase_metrics_probe", &[]).unwrap();
    }
    let rows = viewer.call(
        "SELECT ranking, calls, total_ms, mean_ms FROM fluxbase_admin.list_statements($1, 50) WHERE query LIKE '%fluxbase_metrics_probe%'",
        &[],
    );
    assert_eq!(rows.len(), 2, "in both rankings");
    for row in rows {
        assert_eq!(row.get::<_, i64>(1), 3);
        assert!(row.get::<_, f64>(3) >= 10.0, "mean at least the 10 ms slept");
    }
}

#[test]
fn a_lock_wait_is_seen_with_its_blocker() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("CREATE TABLE public.contended (id int); GRANT SELECT ON public.contended TO app_user;").unwrap();
    let mut holder = db.connect(Caller::Superuser);
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE public.contended IN ACCESS EXCLUSIVE MODE").unwrap();
    let holder_pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);

    let application = format!("lock-waiter-{}", db.name);
    let mut waiter = connect_as_app(&db, &application);
    let waiting = std::thread::spawn(move || waiter.query("SELECT * FROM public.contended", &[]).is_ok());

    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let rows = viewer.call(
            "SELECT blocked_by, wait_event_type FROM fluxbase_admin.list_activity($1) WHERE application_name = $2",
            &[&application],
        );
        // The lock manager lists the waiter a moment before the backend reports its wait event,
        // so wait for both rather than catch the gap between them.
        let blocked = |r: &&Row| !r.get::<_, Vec<i32>>(0).is_empty() && r.get::<_, Option<String>>(1).is_some();
        if let Some(row) = rows.first().filter(blocked) {
            break (row.get::<_, Vec<i32>>(0), row.get::<_, Option<String>>(1));
        }
        assert!(Instant::now() < deadline, "the waiter never showed as blocked");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(seen, (vec![holder_pid], Some("Lock".to_string())));
    // The holder shows as the longest open transaction of this database's backends.
    let activity = viewer.call("SELECT pid, transaction_age FROM fluxbase_admin.list_activity($1) WHERE pid = $2", &[&holder_pid]);
    assert_eq!(activity.len(), 1);
    tx.rollback().unwrap();
    assert!(waiting.join().unwrap());
}

#[test]
fn sessions_and_impersonations_are_counted() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut web = db.connect(Caller::Dashboard);
    let admin = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    db.connect(Caller::Superuser).batch_execute("INSERT INTO auth.users (email, confirmed_at) VALUES ('joe@example.com', now())").unwrap();
    let before = viewer.overview();
    assert_eq!(before["dashboard_sessions"], 2);
    assert_eq!(before["impersonations"], 0);
    as_dashboard(&mut web, "SELECT * FROM auth.start_impersonation($1, 'user', 'joe@example.com', 'ticket 9')", &[&admin]).unwrap();
    assert_eq!(viewer.overview()["impersonations"], 1);
}

#[test]
fn samples_are_taken_when_due_by_one_caller_and_kept_for_the_retention() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut su = db.connect(Caller::Superuser);
    let sample = |c: &mut Client| -> bool { c.query_one("SELECT fluxbase_admin.sample_metrics()", &[]).unwrap().get(0) };
    assert!(sample(&mut su));
    assert!(!sample(&mut su), "not due again within metrics.sample_interval");
    let history = viewer.call("SELECT figures FROM fluxbase_admin.list_metric_history($1)", &[]);
    assert_eq!(history.len(), 1);
    let figures: serde_json::Value = history[0].get(0);
    for key in ["connections", "dashboard_sessions", "database_bytes", "cache_hit_ratio"] {
        assert!(figures.get(key).is_some(), "{key} missing from {figures}");
    }

    // Retention: a sample older than metrics.retention (7d) goes at the next sample.
    su.batch_execute(
        "INSERT INTO fluxbase_admin.metric_samples VALUES (now() - interval '8 days', '{}');
         UPDATE fluxbase_admin.metric_samples SET sampled_at = sampled_at - interval '2 minutes';",
    )
    .unwrap();
    assert!(sample(&mut su));
    let ages: Vec<bool> = su
        .query("SELECT sampled_at > now() - interval '7 days' FROM fluxbase_admin.metric_samples", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ages, [true, true]);

    // One sampler at a time: while one caller's transaction holds the lock, another
    // returns at once without sampling.
    su.batch_execute("UPDATE fluxbase_admin.metric_samples SET sampled_at = sampled_at - interval '1 hour'").unwrap();
    let mut first = db.connect(Caller::Superuser);
    let mut tx = first.transaction().unwrap();
    assert!(tx.query_one("SELECT fluxbase_admin.sample_metrics()", &[]).unwrap().get::<_, bool>(0));
    let mut second = db.connect(Caller::Superuser);
    let started = Instant::now();
    assert!(!sample(&mut second));
    assert!(started.elapsed() < Duration::from_secs(2), "the other caller does not wait");
    tx.commit().unwrap();
    let count: i64 = su.query_one("SELECT count(*) FROM fluxbase_admin.metric_samples", &[]).unwrap().get(0);
    assert_eq!(count, 3);
}

fn serve_with_metrics(db: &TestDb, token: Option<&str>) -> Server {
    let mut cmd = fluxbase();
    cmd.env("DATABASE_URL", db.url(Caller::Dashboard, "")).env("FLUXBASE_ADMIN_HEARTBEAT_INTERVAL", "1s");
    if let Some(token) = token {
        cmd.env("FLUXBASE_ADMIN_METRICS_TOKEN", token);
    }
    Server::start_with(&mut cmd)
}

#[test]
fn two_running_copies_report_their_pools_and_sample_once() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let _a = serve_with_metrics(&db, None);
    let _b = serve_with_metrics(&db, None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pools = viewer.call("SELECT instance_id, max_size FROM fluxbase_admin.list_pools($1)", &[]);
        if pools.len() == 2 {
            assert!(pools.iter().all(|r| r.get::<_, i32>(1) == 8));
            break;
        }
        assert!(Instant::now() < deadline, "two copies never both reported: {}", pools.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both copies offer to sample every second; the interval (1m) allows one sample.
    std::thread::sleep(Duration::from_secs(3));
    let samples: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM fluxbase_admin.metric_samples", &[]).unwrap().get(0);
    assert_eq!(samples, 1);
    // A copy that stops reporting drops out.
    db.connect(Caller::Superuser)
        .batch_execute("UPDATE fluxbase_admin.pool_reports SET reported_at = now() - interval '1 minute' WHERE instance_id = (SELECT min(instance_id) FROM fluxbase_admin.pool_reports)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let pools = viewer.call("SELECT instance_id FROM fluxbase_admin.list_pools($1) WHERE reported_at < now() - interval '20 seconds'", &[]);
    assert!(pools.is_empty(), "a stale copy is not listed");
}

#[test]
fn the_metrics_endpoint_needs_its_token_and_speaks_prometheus() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let off = serve_with_metrics(&db, None);
    assert_eq!(off.get_text("/metrics", None).0, 404, "off without a token configured");
    drop(off);

    let token = "metrics-token-0123456789";
    let server = serve_with_metrics(&db, Some(token));
    assert_eq!(server.get_text("/metrics", None).0, 401);
    assert_eq!(server.get_text("/metrics", Some("wrong-token-0123456789")).0, 401);

    let mut web = db.connect(Caller::Dashboard);
    let admin = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    login(&mut web, "ann@example.com", "wrong password here", "192.0.2.1");
    db.connect(Caller::Superuser).batch_execute("INSERT INTO auth.users (email, confirmed_at) VALUES ('joe@example.com', now())").unwrap();
    as_dashboard(&mut web, "SELECT * FROM auth.start_impersonation($1, 'anon', NULL, 'ticket 1')", &[&admin]).unwrap();
    for _ in 0..3 {
        assert_eq!(server.get_json("/healthz").0, 200);
    }

    let (status, body) = server.get_text("/metrics", Some(token));
    assert_eq!(status, 200, "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} missing from:\n{body}"))
    };
    assert_eq!(value("fluxbase_pool_max_connections", &[]), 8.0);
    assert!(value("fluxbase_http_requests_total", &[("route", "/healthz"), ("status", "200")]) >= 3.0);
    assert_eq!(value("fluxbase_admin_logins_total", &[("outcome", "ok")]), 1.0);
    assert_eq!(value("fluxbase_admin_logins_total", &[("outcome", "wrong_password")]), 1.0);
    assert_eq!(value("fluxbase_impersonations_active", &[]), 1.0);
    assert_eq!(value("fluxbase_database_up", &[]), 1.0);
}

#[test]
fn app_roles_cannot_read_metrics_and_sessions_are_checked() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    assert!(viewer.overview().is_object(), "viewers may read metrics");
    let mut app = db.connect(Caller::App);
    let err = app.query("SELECT fluxbase_admin.get_metrics('fbs_x')", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT fluxbase_admin.get_metrics('fbs_made_up')", &[])), "28000");
}

/// The first row's `ok`, `code` and `message` of an outcome.
fn outcome(rows: &[Row]) -> (bool, String, String) {
    (rows[0].get("ok"), rows[0].get("code"), rows[0].get("message"))
}

/// Waits until `check` holds, polling: statistics reach other backends when the backend
/// that counted them goes idle.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dollar_quoted_and_escape_string_literals_are_hidden_too() {
    // The regular expression this replaced took E'it\'s' to end at the backslash and
    // knew nothing of $$...$$: both secrets showed.
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let application = format!("secretive-{}", db.name);
    let mut app = connect_as_app(&db, &application);
    let running = std::thread::spawn(move || {
        app.batch_execute(r"SELECT E'it\'s hunter4-escaped', pg_sleep(1.5), $$hunter2-dollar$$, $tag$it's hunter3$tag$").is_ok()
    });
    let mut query = String::new();
    eventually("the query shows in list_activity", || {
        let rows = viewer.call("SELECT query FROM fluxbase_admin.list_activity($1) WHERE application_name = $2", &[&application]);
        rows.first().map(|r| query = r.get(0)).is_some()
    });
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!query.contains(secret), "{secret} shows in {query}");
    }
    assert_eq!(query, "SELECT '***', pg_sleep(1.5), '***', '***'");
    assert!(running.join().unwrap());
}

#[test]
fn idle_transactions_show_how_long_they_have_been_idle() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let application = format!("idler-{}", db.name);
    let mut app = connect_as_app(&db, &application);
    let mut tx = app.transaction().unwrap();
    tx.query_one("SELECT 1", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let rows = viewer.call(
        "SELECT state, extract(epoch FROM idle_for)::float8, extract(epoch FROM transaction_age)::float8, database
           FROM fluxbase_admin.list_activity($1) WHERE application_name = $2",
        &[&application],
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "idle in transaction");
    let idle: f64 = rows[0].get(1);
    assert!(idle >= 0.3 && idle <= rows[0].get::<_, f64>(2), "idle {idle} s, within the transaction's age");
    assert_eq!(rows[0].get::<_, String>(3), db.name);
    // A running query is not idle.
    tx.rollback().unwrap();
    let running = std::thread::spawn(move || app.batch_execute("SELECT pg_sleep(1)").is_ok());
    eventually("the running query shows", || {
        let rows = viewer.call("SELECT state, idle_for IS NULL FROM fluxbase_admin.list_activity($1) WHERE application_name = $2", &[&application]);
        rows.first().is_some_and(|r| r.get::<_, String>(0) == "active" && r.get::<_, bool>(1))
    });
    assert!(running.join().unwrap());
}

#[test]
fn an_admin_cancels_and_terminates_app_backends_and_each_is_audited() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut web = db.connect(Caller::Dashboard);
    let admin = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let application = format!("long-runner-{}", db.name);
    let mut app = connect_as_app(&db, &application);
    let pid: i32 = app.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);

    // A viewer is refused, and the query runs on.
    let viewer_token = viewer.token.clone();
    assert_eq!(sqlstate(as_dashboard(&mut viewer.web, "SELECT * FROM fluxbase_admin.cancel_backend($1, $2)", &[&viewer_token, &pid])), "42501");
    assert_eq!(sqlstate(as_dashboard(&mut viewer.web, "SELECT * FROM fluxbase_admin.terminate_backend($1, $2)", &[&viewer_token, &pid])), "42501");

    let running = std::thread::spawn(move || {
        let code = app.batch_execute("SELECT pg_sleep(30), 'hunter2-in-flight'").err().and_then(|e| e.code().map(|c| c.code().to_string()));
        (code, app)
    });
    eventually("the query runs", || {
        let rows = viewer.call("SELECT state FROM fluxbase_admin.list_activity($1) WHERE pid = $2", &[&pid]);
        rows.first().is_some_and(|r| r.get::<_, String>(0) == "active")
    });
    let started = Instant::now();
    let cancelled = as_dashboard(&mut web, "SELECT * FROM fluxbase_admin.cancel_backend($1, $2)", &[&admin, &pid]).unwrap();
    let (ok, code, message) = outcome(&cancelled);
    assert!(ok && code == "cancelled", "{code}: {message}");
    let (error, mut app) = running.join().unwrap();
    assert_eq!(error.as_deref(), Some("57014"), "the query was cancelled");
    assert!(started.elapsed() < Duration::from_secs(10));
    app.query_one("SELECT 1", &[]).expect("the connection stays");

    let terminated = as_dashboard(&mut web, "SELECT * FROM fluxbase_admin.terminate_backend($1, $2)", &[&admin, &pid]).unwrap();
    let (ok, code, message) = outcome(&terminated);
    assert!(ok && code == "terminated", "{code}: {message}");
    eventually("the connection is closed", || app.query_one("SELECT 1", &[]).is_err());

    let mut su = db.connect(Caller::Superuser);
    let entries = su
        .query("SELECT action, actor, target_type, target_id, details FROM dashboard_auth.audit_log WHERE action LIKE 'backend.%' ORDER BY id", &[])
        .unwrap();
    let actions: Vec<String> = entries.iter().map(|r| r.get(0)).collect();
    assert_eq!(actions, ["backend.cancelled", "backend.terminated"], "viewers' refusals raise and leave nothing");
    for entry in &entries {
        assert_eq!(entry.get::<_, String>(1), "ann@example.com");
        assert_eq!((entry.get::<_, String>(2), entry.get::<_, String>(3)), ("backend".to_string(), pid.to_string()));
        let details: serde_json::Value = entry.get(4);
        assert_eq!(details["usename"], "app_user");
        assert_eq!(details["application_name"], application.as_str());
    }
    let query = entries[0].get::<_, serde_json::Value>(4)["query"].as_str().unwrap().to_string();
    assert_eq!(query, "SELECT pg_sleep(30), '***'", "the audit log keeps the query without its literals");
    assert_eq!(entries[0].get::<_, serde_json::Value>(4)["signal"], "cancel");
}

#[test]
fn backends_an_admin_must_not_reach_are_refused_and_recorded() {
    let db = TestDb::new();
    let _viewer = viewer(&db);
    let mut web = db.connect(Caller::Dashboard);
    let admin = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let pid_of = |c: &mut Client| -> i32 { c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0) };
    let own = pid_of(&mut web);
    let mut targets: Vec<(&str, Client)> = vec![
        ("dashboard_connection", db.connect(Caller::Dashboard)),
        ("dashboard_connection", db.connect(Caller::Data)),
        ("operator_connection", db.connect(Caller::Operator)),
        ("superuser", db.connect(Caller::Superuser)),
        ("other_database", fluxbase_tests::connect_as("postgres", "app_user").unwrap()),
    ];
    let mut expected = vec![("own_connection".to_string(), own)];
    for (code, client) in targets.iter_mut() {
        expected.push((code.to_string(), pid_of(client)));
    }
    let checkpointer: i32 = db
        .connect(Caller::Superuser)
        .query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'", &[])
        .unwrap()
        .get(0);
    expected.push(("not_a_client".to_string(), checkpointer));

    for (code, pid) in &expected {
        for function in ["terminate_backend", "cancel_backend"] {
            let rows = as_dashboard(&mut web, &format!("SELECT * FROM fluxbase_admin.{function}($1, $2)"), &[&admin, pid]).unwrap();
            let (ok, got, message) = outcome(&rows);
            assert_eq!((ok, got.as_str()), (false, code.as_str()), "{function} {pid}: {message}");
            if code == "superuser" {
                assert!(message.contains(&format!("pg_{}({pid})", function)), "{message}");
            }
        }
    }
    for (code, client) in targets.iter_mut() {
        client.query_one("SELECT 1", &[]).unwrap_or_else(|e| panic!("{code}: the connection was touched: {e}"));
    }
    web.query_one("SELECT 1", &[]).unwrap();

    // Each refusal is recorded, with its reason.
    let recorded: Vec<(String, String, String)> = db
        .connect(Caller::Superuser)
        .query(
            "SELECT target_id, details->>'code', details->>'signal' FROM dashboard_auth.audit_log
              WHERE action = 'backend.refused' AND actor = 'ann@example.com' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let wanted: Vec<(String, String, String)> = expected
        .iter()
        .flat_map(|(code, pid)| ["terminate", "cancel"].map(|signal| (pid.to_string(), code.clone(), signal.to_string())))
        .collect();
    assert_eq!(recorded, wanted);

    // Wrong calls raise.
    let none: Option<i32> = None;
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM fluxbase_admin.cancel_backend($1, $2)", &[&admin, &none])), "22023");
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM fluxbase_admin.terminate_backend($1, 2147483647)", &[&admin])), "P0002");
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM fluxbase_admin.cancel_backend('fbs_made_up', 1)", &[])), "28000");
}

#[test]
fn index_usage_tells_unused_indexes_from_the_ones_something_needs() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.items (id int PRIMARY KEY, code text, note text, sku text, CONSTRAINT items_sku_key UNIQUE (sku));
         CREATE UNIQUE INDEX items_code ON shop.items (code);
         CREATE INDEX items_note ON shop.items (note);
         CREATE INDEX items_idle ON shop.items (lower(note));
         CREATE TABLE shop.lines (id int, item_code text REFERENCES shop.items (code));
         INSERT INTO shop.items SELECT g, 'c' || g, 'n' || g, 's' || g FROM generate_series(1, 1000) g;
         ANALYZE shop.items;
         SET enable_seqscan = off; SET enable_bitmapscan = off;
         SELECT * FROM shop.items WHERE note = 'n5';
         SELECT pg_stat_force_next_flush();",
    )
    .unwrap();
    let usage = |viewer: &mut Viewer, unused_only: bool| -> Vec<(String, i64, bool, Option<String>, bool)> {
        viewer
            .call(
                "SELECT index, scans, is_unique, constraint_name, unused FROM fluxbase_admin.list_index_usage($1, 'shop', $2) ORDER BY index",
                &[&unused_only],
            )
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    };
    eventually("the scan of items_note is counted", || usage(&mut viewer, false).iter().any(|r| r.0 == "items_note" && r.1 >= 1));
    let rows = usage(&mut viewer, false);
    let flags: Vec<(&str, bool, Option<&str>, bool)> = rows.iter().map(|r| (r.0.as_str(), r.2, r.3.as_deref(), r.4)).collect();
    assert_eq!(
        flags,
        [
            ("items_code", true, Some("lines_item_code_fkey"), false),
            ("items_idle", false, None, true),
            ("items_note", false, None, false),
            ("items_pkey", true, Some("items_pkey"), false),
            ("items_sku_key", true, Some("items_sku_key"), false),
        ]
    );
    let unused: Vec<String> = usage(&mut viewer, true).into_iter().map(|r| r.0).collect();
    assert_eq!(unused, ["items_idle"]);
    let sizes = viewer.call("SELECT estimated_bytes FROM fluxbase_admin.list_index_usage($1, 'shop', top => 1)", &[]);
    assert_eq!(sizes.len(), 1);
    let block: i64 = su.query_one("SELECT current_setting('block_size')::bigint", &[]).unwrap().get(0);
    assert!(sizes[0].get::<_, i64>(0) >= 2 * block, "a metapage and a leaf at least");
    assert_eq!(sqlstate(as_dashboard(&mut viewer.web, "SELECT * FROM fluxbase_admin.list_index_usage($1, NULL, false, 0)", &[&viewer.token])), "22023");
    assert_eq!(sqlstate(as_dashboard(&mut viewer.web, "SELECT * FROM fluxbase_admin.list_index_usage($1, NULL, NULL)", &[&viewer.token])), "22023");
}

#[test]
fn bloat_estimates_grow_with_dead_space_and_say_when_they_cannot_estimate() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.items (id int PRIMARY KEY, note text);
         INSERT INTO shop.items SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g;
         ANALYZE shop.items;
         CREATE TABLE shop.named (id int, label name);
         INSERT INTO shop.named SELECT g, 'n' || g FROM generate_series(1, 100) g;
         ANALYZE shop.named;",
    )
    .unwrap();
    let bloat = |viewer: &mut Viewer| -> Vec<(String, Option<String>, i64, Option<i64>, Option<f64>, bool)> {
        viewer
            .call(
                "SELECT \"table\", index, actual_bytes, bloat_bytes, bloat_ratio::float8, estimable FROM fluxbase_admin.list_bloat($1, 'shop')",
                &[],
            )
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    };
    let ratio = |rows: &[(String, Option<String>, i64, Option<i64>, Option<f64>, bool)], table: &str, index: Option<&str>| -> f64 {
        let row = rows.iter().find(|r| r.0 == table && r.1.as_deref() == index).unwrap_or_else(|| panic!("{table} {index:?} in {rows:?}"));
        assert!(row.5, "{row:?} is estimable");
        row.4.unwrap()
    };
    let fresh = bloat(&mut viewer);
    assert!(ratio(&fresh, "items", None) < 0.1, "a freshly filled table is dense: {fresh:?}");
    assert!(ratio(&fresh, "items", Some("items_pkey")) < 0.25, "{fresh:?}");
    let heap: i64 = su.query_one("SELECT pg_relation_size('shop.items')", &[]).unwrap().get(0);
    assert_eq!(fresh.iter().find(|r| r.0 == "items" && r.1.is_none()).unwrap().2, heap);
    // A column of type name: no estimate, and the row says so.
    let named = fresh.iter().find(|r| r.0 == "named" && r.1.is_none()).unwrap();
    assert_eq!((named.3, named.4, named.5), (None, None, false));
    assert!(!fresh.last().unwrap().5, "rows without an estimate come last");

    // Nine rows in ten deleted and vacuumed: the pages stay, the rows are gone.
    su.batch_execute("DELETE FROM shop.items WHERE id % 10 <> 0").unwrap();
    su.batch_execute("VACUUM shop.items").unwrap();
    let bloated = bloat(&mut viewer);
    assert!(ratio(&bloated, "items", None) > 0.8, "{bloated:?}");
    assert!(ratio(&bloated, "items", Some("items_pkey")) > 0.7, "{bloated:?}");
    assert_eq!(bloated[0].0, "items", "the most bloated first: {bloated:?}");
    assert_eq!(sqlstate(as_dashboard(&mut viewer.web, "SELECT * FROM fluxbase_admin.list_bloat($1, NULL, 10001)", &[&viewer.token])), "22023");
}

#[test]
fn maintenance_shows_vacuum_and_analyze_by_hand_and_what_waits_for_them() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.items (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
         CREATE TABLE shop.quiet (id int) WITH (autovacuum_enabled = false);
         INSERT INTO shop.items SELECT generate_series(1, 1000);
         -- counted before the analyze below, which is then the last to see them
         SELECT pg_stat_force_next_flush();",
    )
    .unwrap();
    su.batch_execute("VACUUM shop.items").unwrap();
    su.batch_execute("ANALYZE shop.items").unwrap();
    su.batch_execute("ANALYZE shop.items").unwrap();
    su.batch_execute("DELETE FROM shop.items WHERE id <= 100; SELECT pg_stat_force_next_flush()").unwrap();
    let maintenance = |viewer: &mut Viewer| {
        viewer.call(
            "SELECT \"table\", dead_tuples, modified_since_analyze, last_vacuum IS NOT NULL, vacuum_count, last_analyze IS NOT NULL,
                    analyze_count, last_autovacuum IS NULL AND last_autoanalyze IS NULL, autovacuum_count + autoanalyze_count, live_tuples
               FROM fluxbase_admin.list_maintenance($1, 'shop')",
            &[],
        )
    };
    eventually("the deletes are counted", || maintenance(&mut viewer).first().is_some_and(|r| r.get::<_, i64>(1) == 100));
    let rows = maintenance(&mut viewer);
    let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(tables, ["items", "quiet"], "most dead tuples first");
    let items = &rows[0];
    assert_eq!(items.get::<_, i64>(2), 100, "changed since the last analyze");
    assert!(items.get::<_, bool>(3));
    assert_eq!(items.get::<_, i64>(4), 1);
    assert!(items.get::<_, bool>(5));
    assert_eq!(items.get::<_, i64>(6), 2);
    assert!(items.get::<_, bool>(7));
    assert_eq!(items.get::<_, i64>(8), 0);
    assert_eq!(items.get::<_, i64>(9), 900);
    let quiet = &rows[1];
    assert!(!quiet.get::<_, bool>(3) && !quiet.get::<_, bool>(5), "never vacuumed nor analyzed");
    assert_eq!(sqlstate(as_dashboard(&mut viewer.web, "SELECT * FROM fluxbase_admin.list_maintenance($1, NULL, NULL)", &[&viewer.token])), "22023");
}

#[test]
fn the_history_comes_in_buckets_for_an_hour_a_day_and_a_week() {
    let db = TestDb::new();
    let mut viewer = viewer(&db);
    // Three samples in one minute half an hour ago, one twenty minutes before them, one
    // two hours ago; "label" is not a number and is left out of the buckets.
    db.connect(Caller::Superuser)
        .batch_execute(
            "INSERT INTO fluxbase_admin.metric_samples
             SELECT date_trunc('minute', now()) - interval '30 minutes' + s.at, s.f::jsonb
               FROM (VALUES (interval '1 second', '{\"connections\": 2, \"cache_hit_ratio\": 0.9, \"label\": \"x\"}'),
                            (interval '2 seconds', '{\"connections\": 4, \"cache_hit_ratio\": 0.95, \"label\": \"x\"}'),
                            (interval '3 seconds', '{\"connections\": 9, \"cache_hit_ratio\": 1, \"label\": \"x\"}'),
                            (interval '-20 minutes', '{\"connections\": 7}'),
                            (interval '-90 minutes', '{\"connections\": 1}')) s(at, f);",
        )
        .unwrap();
    let history = |viewer: &mut Viewer, period: &str| -> Vec<(i32, serde_json::Value, serde_json::Value)> {
        viewer
            .call("SELECT samples, figures, peaks FROM fluxbase_admin.list_metric_history($1, period => $2)", &[&period])
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let hour = history(&mut viewer, "1h");
    let counts: Vec<i32> = hour.iter().map(|b| b.0).collect();
    assert_eq!(counts, [1, 3], "oldest first; the sample two hours ago is out of the hour");
    assert_eq!(hour[1].1, serde_json::json!({"connections": 5, "cache_hit_ratio": 0.95}), "averages");
    assert_eq!(hour[1].2["connections"], 9, "peaks");
    assert_eq!(hour[0].1["connections"], 7);
    let day: Vec<i32> = history(&mut viewer, "24h").iter().map(|b| b.0).collect();
    assert_eq!(day, [1, 1, 3], "ten-minute buckets");
    let week: i32 = history(&mut viewer, "7d").iter().map(|b| b.0).sum();
    assert_eq!(week, 5);
    // Without a period: every sample, each a bucket of one.
    let raw = viewer.call("SELECT samples, figures = peaks FROM fluxbase_admin.list_metric_history($1, now() - interval '1 hour')", &[]);
    assert_eq!(raw.len(), 4);
    assert!(raw.iter().all(|r| r.get::<_, i32>(0) == 1 && r.get::<_, bool>(1)));

    let token = viewer.token.clone();
    for wrong in [
        "SELECT * FROM fluxbase_admin.list_metric_history($1, period => '2h')",
        "SELECT * FROM fluxbase_admin.list_metric_history($1, now() - interval '1 day', '24h')",
    ] {
        assert_eq!(sqlstate(as_dashboard(&mut viewer.web, wrong, &[&token])), "22023", "{wrong}");
    }
}
