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
        if let Some(row) = rows.first().filter(|r| !r.get::<_, Vec<i32>>(0).is_empty()) {
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
