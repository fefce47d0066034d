//! One-time links and the request's context: every link is built in the extension
//! (`dashboard_auth.one_time_link`) from `fluxbase.public_url`, the CLI prints what it
//! built, and `fluxbase serve` tells the extension who is asking, believing
//! `X-Forwarded-For` only from a trusted proxy.

use std::time::Duration;

use fluxbase_tests::admin::{create_admin, login, PASSWORD};
use fluxbase_tests::postgres::types::ToSql;
use fluxbase_tests::postgres::{Client, Row};
use fluxbase_tests::{fluxbase, run, text, with_data_login, Caller, Server, TestDb};
use serde_json::json;

const PUBLIC_URL: &str = "https://admin.example.com/";

/// One statement in its own transaction, as `role` when given, with `fluxbase.public_url`
/// set as a psql user would set it (or not at all); the one row it returns.
fn call(client: &mut Client, role: Option<&str>, public_url: Option<&str>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Row {
    let mut tx = client.transaction().unwrap();
    if let Some(role) = role {
        tx.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
    }
    if let Some(url) = public_url {
        tx.batch_execute(&format!("SET LOCAL fluxbase.public_url = '{url}'")).unwrap();
    }
    let row = tx.query_one(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"));
    tx.commit().unwrap();
    row
}

/// Checks a (token, link) pair: with a public URL, the link is that address (one slash),
/// the page, and the very token of the same row; without one, no link and still a token.
fn assert_link(row: &Row, token_column: &str, link_column: &str, public_url: Option<&str>, page: &str) {
    let token: String = row.get(token_column);
    let link: Option<String> = row.get(link_column);
    assert!(token.len() > 40, "{token_column}: {token}");
    match public_url {
        Some(_) => assert_eq!(link, Some(format!("https://admin.example.com/{page}?token={token}"))),
        None => assert_eq!(link, None, "no public URL, no link"),
    }
}

#[test]
fn every_one_time_link_is_built_from_the_public_url() {
    let db = TestDb::new();
    let mut web = db.connect(Caller::Dashboard);
    let mut ops = db.connect(Caller::Operator);
    let dashboard = Some("fluxbase_dashboard");

    // Setup first: it closes once any admin exists.
    for public_url in [Some(PUBLIC_URL), None] {
        let setup = call(&mut web, dashboard, public_url, "SELECT token, link FROM dashboard_auth.create_setup_link()", &[]);
        assert_link(&setup, "token", "link", public_url, "setup");
    }
    for (i, public_url) in [Some(PUBLIC_URL), None].into_iter().enumerate() {
        let created = call(
            &mut ops,
            None,
            public_url,
            "SELECT invite_token, invite_link FROM dashboard_auth.operator_create_admin($1, 'Carol')",
            &[&format!("carol{i}@example.com")],
        );
        assert_link(&created, "invite_token", "invite_link", public_url, "invite");

        let reset = call(
            &mut ops,
            None,
            public_url,
            "SELECT reset_token, reset_link FROM dashboard_auth.operator_reset_admin_password($1)",
            &[&format!("carol{i}@example.com")],
        );
        assert_link(&reset, "reset_token", "reset_link", public_url, "reset");
    }

    create_admin(&db, "ann@example.com", "admin");
    let session = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token().to_string();
    for (i, public_url) in [Some(PUBLIC_URL), None].into_iter().enumerate() {
        let invited = call(
            &mut web,
            dashboard,
            public_url,
            "SELECT invite_token, invite_link FROM dashboard_auth.invite_admin($1, $2, 'Bob')",
            &[&session, &format!("bob{i}@example.com")],
        );
        assert_link(&invited, "invite_token", "invite_link", public_url, "invite");

        let user = call(
            &mut web,
            dashboard,
            public_url,
            "SELECT user_id::text, invite_token, invite_link FROM auth.invite_user($1, $2)",
            &[&session, &format!("joe{i}@example.com")],
        );
        assert_link(&user, "invite_token", "invite_link", public_url, "accept-invite");

        let user_id: String = user.get("user_id");
        let recovery = call(
            &mut web,
            dashboard,
            public_url,
            "SELECT recovery_token, recovery_link FROM auth.reset_user_password($1, $2::text::uuid)",
            &[&session, &user_id],
        );
        assert_link(&recovery, "recovery_token", "recovery_link", public_url, "recover");
    }
}

#[test]
fn the_link_builder_is_internal_and_refuses_what_is_not_an_address() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let link = |su: &mut Client, url: &str, kind: &str| -> Result<Option<String>, String> {
        let mut tx = su.transaction().unwrap();
        tx.execute("SELECT set_config('fluxbase.public_url', $1, true)", &[&url]).unwrap();
        let result = tx
            .query_one("SELECT dashboard_auth.one_time_link($1, 'fbl_abc')", &[&kind])
            .map(|r| r.get(0))
            .map_err(|e| e.code().map(|c| c.code().to_string()).unwrap_or_default());
        tx.rollback().unwrap();
        result
    };
    // A base with a path keeps it; surrounding blanks and trailing slashes go.
    assert_eq!(link(&mut su, " https://example.com/admin// ", "setup"), Ok(Some("https://example.com/admin/setup?token=fbl_abc".into())));
    assert_eq!(link(&mut su, "http://localhost:3001", "user_recovery"), Ok(Some("http://localhost:3001/recover?token=fbl_abc".into())));
    assert_eq!(link(&mut su, "", "invite"), Ok(None));
    assert_eq!(link(&mut su, "   ", "invite"), Ok(None));
    assert_eq!(link(&mut su, "https://admin.example.com", "recovery"), Err("22023".into()), "an unknown kind");
    for not_an_address in ["admin.example.com", "javascript:alert(1)", "https://", "ftp://admin.example.com"] {
        assert_eq!(link(&mut su, not_an_address, "setup"), Err("22023".into()), "{not_an_address}");
    }

    // Nobody but its own definer functions calls it, and its search_path is pinned.
    let row = su
        .query_one(
            "SELECT has_function_privilege('fluxbase_dashboard', p.oid, 'EXECUTE'),
                    has_function_privilege('fluxbase_operator', p.oid, 'EXECUTE'),
                    has_function_privilege('app_user', p.oid, 'EXECUTE'),
                    p.proconfig::text
               FROM pg_proc p WHERE p.oid = 'dashboard_auth.one_time_link(text, text)'::regprocedure",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2)), (false, false, false));
    assert_eq!(row.get::<_, String>(3), r#"{"search_path=pg_catalog, pg_temp"}"#);
}

/// `fluxbase admin <args>` as the operator; (success, stdout, stderr).
fn admin_cli(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let output = run(fluxbase().arg("admin").args(args).env("DATABASE_URL", db.url(Caller::Operator, "")));
    let (stdout, stderr) = text(&output);
    (output.status.success(), stdout, stderr)
}

/// The token of the link line that starts with `prefix`, checked against the stored
/// one-time tokens: the link printed is the one the extension issued.
fn printed_token(db: &TestDb, stdout: &str, prefix: &str, kind: &str) -> String {
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix} in:\n{stdout}"))
        .to_string();
    let stored: i64 = db
        .connect(Caller::Superuser)
        .query_one(
            "SELECT count(*) FROM dashboard_auth.one_time_tokens WHERE token_hash = dashboard_auth.token_hash($1) AND kind = $2",
            &[&token, &kind],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "{token}");
    token
}

#[test]
fn the_cli_prints_the_link_the_extension_built() {
    let db = TestDb::new();
    let (ok, stdout, stderr) =
        admin_cli(&db, &["create-user", "--email", "ann@example.com", "--name", "Ann", "--public-url", "https://x.example/"]);
    assert!(ok, "{stderr}");
    printed_token(&db, &stdout, "https://x.example/invite?token=", "invite");

    // Without a public URL, the CLI's default address (the dashboard's port on localhost).
    let (ok, stdout, stderr) = admin_cli(&db, &["reset-password", "--email", "ann@example.com", "--port", "4321"]);
    assert!(ok, "{stderr}");
    printed_token(&db, &stdout, "http://localhost:4321/reset?token=", "reset");
}

/// Starts a SQL run as a client behind `forwarded_for`, and returns the address and user
/// agent that the run's audit entry records.
fn audited_client(db: &TestDb, server: &Server, session: &str, forwarded_for: Option<&str>) -> (Option<String>, Option<String>) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into();
    let mut request = agent
        .post(&server.url("/api/sql/runs"))
        .header("Authorization", &format!("Bearer {session}"))
        .header("User-Agent", "links-test/1.0");
    if let Some(header) = forwarded_for {
        request = request.header("X-Forwarded-For", header);
    }
    let mut response = request.send_json(json!({"statement": "SELECT 1"})).unwrap();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(response.status().as_u16(), 200, "{body}");
    let row = db
        .connect(Caller::Superuser)
        .query_one(
            "SELECT host(ip), user_agent FROM dashboard_auth.audit_log WHERE action = 'sql.run.intent' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn serve(db: &TestDb, trusted_proxies: Option<&str>) -> Server {
    let mut cmd = fluxbase();
    cmd.env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=disable"));
    if let Some(list) = trusted_proxies {
        cmd.env("FLUXBASE_ADMIN_TRUSTED_PROXIES", list);
    }
    Server::start_with(&mut cmd)
}

#[test]
fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let session = login(&mut db.connect(Caller::Dashboard), "ann@example.com", PASSWORD, "192.0.2.1").token().to_string();
    let ip = |address: &str| (Some(address.to_string()), Some("links-test/1.0".to_string()));

    let behind_proxy = serve(&db, Some("127.0.0.1, 10.0.0.0/8"));
    assert_eq!(audited_client(&db, &behind_proxy, &session, Some("203.0.113.7")), ip("203.0.113.7"));
    // A client that forges the header's start still gets its own address: the rightmost
    // address that is not a trusted proxy.
    assert_eq!(audited_client(&db, &behind_proxy, &session, Some("198.51.100.1, 203.0.113.7")), ip("203.0.113.7"));
    assert_eq!(audited_client(&db, &behind_proxy, &session, Some("198.51.100.1, 203.0.113.7, 10.0.0.2")), ip("203.0.113.7"));
    // No header, or a malformed one: the peer.
    assert_eq!(audited_client(&db, &behind_proxy, &session, None), ip("127.0.0.1"));
    assert_eq!(audited_client(&db, &behind_proxy, &session, Some("203.0.113.7, bogus")), ip("127.0.0.1"));
    drop(behind_proxy);

    let direct = serve(&db, None);
    assert_eq!(audited_client(&db, &direct, &session, Some("203.0.113.7")), ip("127.0.0.1"));
}

#[test]
fn a_trusted_proxy_list_that_is_not_addresses_stops_serve() {
    let db = TestDb::new();
    let output = run(with_data_login(
        fluxbase()
            .env("DATABASE_URL", db.url(Caller::Dashboard, ""))
            .args(["serve", "--port", "0", "--trusted-proxies", "127.0.0.1,proxy.internal"]),
    ));
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FLUXBASE_ADMIN_TRUSTED_PROXIES (--trusted-proxies)") && stderr.contains("\"proxy.internal\""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
