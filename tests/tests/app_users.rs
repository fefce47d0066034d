//! App users through SQL, as each kind of caller: the application's functions (as
//! service_role) and the admins' user management (through the dashboard's role).

use fluxbase_tests::admin::{self, as_dashboard, create_admin, login, sqlstate, PASSWORD};
use fluxbase_tests::{Caller, TestDb, strings};
use postgres::types::ToSql;
use postgres::{Client, Row};

const USER_PASSWORD: &str = "orange submarine at dawn";

/// One statement as service_role, the application's backend (from the app role's own
/// connection, which is granted service_role here for the test).
fn as_service(db: &TestDb, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
    as_service_from(db, "198.51.100.1", sql, params)
}

/// As `as_service`, for a request from the client at `ip`.
fn as_service_from(db: &TestDb, ip: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
    let mut su = db.connect(Caller::Superuser);
    let mut tx = su.transaction()?;
    // The app's own request context, as an app sets it per transaction.
    tx.batch_execute("SET LOCAL ROLE service_role")?;
    tx.execute("SELECT set_config('fluxbase.client_ip', $1, true), set_config('fluxbase.user_agent', 'app', true)", &[&ip])?;
    let rows = tx.query(sql, params)?;
    tx.commit()?;
    Ok(rows)
}

struct Admin {
    web: Client,
    token: String,
}

fn admin_session(db: &TestDb) -> Admin {
    create_admin(db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    Admin { web, token }
}

impl Admin {
    fn call(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&self.token];
        all.extend_from_slice(params);
        as_dashboard(&mut self.web, sql, &all)
    }

    /// Invites `email` and has the user accept with USER_PASSWORD; returns the user's id.
    fn invite_and_accept(&mut self, db: &TestDb, email: &str) -> String {
        let row = &self.call("SELECT user_id::text, invite_token FROM auth.invite_user($1, $2)", &[&email]).unwrap()[0];
        let (id, token): (String, String) = (row.get(0), row.get(1));
        let accepted = as_service(db, "SELECT ok FROM auth.accept_invite($1, $2)", &[&token, &USER_PASSWORD]).unwrap();
        assert!(accepted[0].get::<_, bool>(0));
        id
    }
}

fn sign_in(db: &TestDb, email: &str, password: &str) -> (bool, String, Option<String>) {
    sign_in_from(db, email, password, "198.51.100.1")
}

fn sign_in_from(db: &TestDb, email: &str, password: &str, ip: &str) -> (bool, String, Option<String>) {
    let row = &as_service_from(db, ip, "SELECT ok, code, session_token FROM auth.sign_in($1, $2)", &[&email, &password]).unwrap()[0];
    (row.get(0), row.get(1), row.get(2))
}

fn overview(admin: &mut Admin, id: &str) -> Row {
    admin
        .call("SELECT status, active_sessions, last_sign_in_at, email FROM auth.get_user($1, $2::text::uuid)", &[&id])
        .unwrap()
        .remove(0)
}

#[test]
fn an_invite_is_accepted_once_and_the_link_uses_the_public_url() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    // fluxbase serve sets the public URL per transaction; psql gets the token alone.
    let mut tx = admin.web.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard; SELECT set_config('fluxbase.public_url', 'https://app.example.com/', true)").unwrap();
    let row = tx
        .query_one("SELECT user_id::text, invite_token, invite_link FROM auth.invite_user($1, 'Joe@Example.com', 'authenticated', '{\"plan\": \"pro\"}')", &[&admin.token])
        .unwrap();
    tx.commit().unwrap();
    let (id, token, link): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(link, format!("https://app.example.com/accept-invite?token={token}"));
    assert_eq!(overview(&mut admin, &id).get::<_, String>(0), "invited");

    let weak = as_service(&db, "SELECT code FROM auth.accept_invite($1, 'short')", &[&token]).unwrap();
    assert_eq!(weak[0].get::<_, String>(0), "weak_password");
    let first = as_service(&db, "SELECT ok FROM auth.accept_invite($1, $2)", &[&token, &USER_PASSWORD]).unwrap();
    assert!(first[0].get::<_, bool>(0));
    let second = as_service(&db, "SELECT code FROM auth.accept_invite($1, $2)", &[&token, &USER_PASSWORD]).unwrap();
    assert_eq!(second[0].get::<_, String>(0), "invalid_link");
    assert_eq!(overview(&mut admin, &id).get::<_, String>(0), "active");
    assert!(sign_in(&db, "joe@example.com", USER_PASSWORD).0);
}

#[test]
fn a_sign_in_shows_in_the_enriched_metadata_and_a_sign_out_ends_it() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    let before = overview(&mut admin, &id);
    assert_eq!(before.get::<_, i64>(1), 0);
    assert!(before.get::<_, Option<std::time::SystemTime>>(2).is_none());

    let (ok, _, token) = sign_in(&db, "joe@example.com", USER_PASSWORD);
    assert!(ok);
    let after = overview(&mut admin, &id);
    assert_eq!(after.get::<_, i64>(1), 1, "one active session");
    assert!(after.get::<_, Option<std::time::SystemTime>>(2).is_some(), "last sign-in set");

    let ended = as_service(&db, "SELECT auth.sign_out($1)", &[&token.unwrap()]).unwrap();
    assert!(ended[0].get::<_, bool>(0));
    assert_eq!(overview(&mut admin, &id).get::<_, i64>(1), 0);
}

#[test]
fn sign_in_refusals_look_alike() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    admin.call("SELECT * FROM auth.invite_user($1, 'pending@example.com')", &[]).unwrap();
    admin.call("SELECT auth.ban_user($1, $2::text::uuid, now() + interval '1 day', 'spam')", &[&id]).unwrap();
    for (email, password) in [
        ("nobody@example.com", USER_PASSWORD),
        ("joe@example.com", USER_PASSWORD),        // banned
        ("pending@example.com", USER_PASSWORD),    // invited, no password yet
    ] {
        let (ok, code, token) = sign_in(&db, email, password);
        assert_eq!((ok, code.as_str(), token), (false, "invalid_credentials", None), "{email}");
    }
}

#[test]
fn a_recovery_link_works_once_and_ends_the_sessions() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    sign_in(&db, "joe@example.com", USER_PASSWORD);
    let row = &admin.call("SELECT recovery_token, sessions_revoked FROM auth.reset_user_password($1, $2::text::uuid)", &[&id]).unwrap()[0];
    let (token, revoked): (String, i32) = (row.get(0), row.get(1));
    assert_eq!(revoked, 1);
    assert_eq!(overview(&mut admin, &id).get::<_, i64>(1), 0);
    let complete = |password: &str| -> String {
        as_service(&db, "SELECT code FROM auth.complete_recovery($1, $2)", &[&token, &password]).unwrap()[0].get(0)
    };
    assert_eq!(complete("a new and better passphrase"), "ok");
    assert_eq!(complete("another new passphrase"), "invalid_link", "used once");
    assert!(!sign_in(&db, "joe@example.com", USER_PASSWORD).0);
    assert!(sign_in(&db, "joe@example.com", "a new and better passphrase").0);
}

#[test]
fn a_ban_revokes_sessions_and_refuses_sign_in_until_lifted() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    sign_in(&db, "joe@example.com", USER_PASSWORD);
    sign_in(&db, "joe@example.com", USER_PASSWORD);
    let revoked: i32 = admin
        .call("SELECT auth.ban_user($1, $2::text::uuid, now() + interval '7 days', ' abuse ')", &[&id])
        .unwrap()[0]
        .get(0);
    assert_eq!(revoked, 2);
    let row = &admin.call("SELECT status, ban_reason FROM auth.get_user($1, $2::text::uuid)", &[&id]).unwrap()[0];
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("banned".into(), "abuse".into()));
    assert!(!sign_in(&db, "joe@example.com", USER_PASSWORD).0);
    admin.call("SELECT auth.unban_user($1, $2::text::uuid)", &[&id]).unwrap();
    assert!(sign_in(&db, "joe@example.com", USER_PASSWORD).0);
    let revoked_now: i32 = admin.call("SELECT auth.revoke_user_sessions($1, $2::text::uuid)", &[&id]).unwrap()[0].get(0);
    assert_eq!(revoked_now, 1);
}

#[test]
fn a_delete_removes_the_sessions_and_keeps_the_audit() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    sign_in(&db, "joe@example.com", USER_PASSWORD);
    admin.call("SELECT auth.delete_user($1, $2::text::uuid)", &[&id]).unwrap();
    let mut su = db.connect(Caller::Superuser);
    let sessions: i64 = su.query_one("SELECT count(*) FROM auth.sessions", &[]).unwrap().get(0);
    assert_eq!(sessions, 0);
    let audited: Vec<String> = strings(&mut su, "SELECT action FROM dashboard_auth.audit_log WHERE target_type = 'user' AND target_id = $1 ORDER BY id", &[&id]);
    assert_eq!(audited, ["user.invited", "user.deleted"]);
    let actor: String = su.query_one("SELECT actor FROM dashboard_auth.audit_log WHERE action = 'user.deleted'", &[]).unwrap().get(0);
    assert_eq!(actor, "ann@example.com");
}

#[test]
fn roles_must_exist_and_be_allow_listed() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    let set_role = |admin: &mut Admin, role: &str| admin.call("SELECT auth.set_user_role($1, $2::text::uuid, $3)", &[&id, &role]);
    assert_eq!(sqlstate(set_role(&mut admin, "editor")), "22023", "not listed");
    assert_eq!(sqlstate(set_role(&mut admin, "service_role")), "22023", "never a user's role");

    db.connect(Caller::Superuser).batch_execute("DO $$ BEGIN CREATE ROLE editor NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$").unwrap();
    let refused = admin.call("SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', 'editor, postgres')", &[]).unwrap_err();
    assert!(refused.as_db_error().unwrap().message().contains("postgres is a superuser"), "{refused}");
    let refused = admin.call("SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', 'no_such_role_here')", &[]).unwrap_err();
    assert!(refused.as_db_error().unwrap().message().contains("does not exist"), "{refused}");
    admin.call("SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', 'editor')", &[]).unwrap();
    set_role(&mut admin, "editor").unwrap();
    let role: String = admin.call("SELECT role FROM auth.get_user($1, $2::text::uuid)", &[&id]).unwrap()[0].get(0);
    assert_eq!(role, "editor");
}

#[test]
fn metadata_is_validated_json_objects() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let id = admin.invite_and_accept(&db, "joe@example.com");
    for bad in ["[1, 2]", "\"plan\"", "42"] {
        let value: serde_json::Value = serde_json::from_str(bad).unwrap();
        let result = admin.call("SELECT auth.update_user_metadata($1, $2::text::uuid, $3)", &[&id, &value]);
        assert_eq!(sqlstate(result), "22023", "{bad}");
    }
    let app = serde_json::json!({"plan": "pro"});
    admin.call("SELECT auth.update_user_metadata($1, $2::text::uuid, app_metadata => $3)", &[&id, &app]).unwrap();
    let row = &admin.call("SELECT app_metadata, user_metadata FROM auth.get_user($1, $2::text::uuid)", &[&id]).unwrap()[0];
    assert_eq!(row.get::<_, serde_json::Value>(0), app);
    assert_eq!(row.get::<_, serde_json::Value>(1), serde_json::json!({}), "untouched");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    admin.invite_and_accept(&db, "joe@example.com");
    let unknown = "00000000-0000-0000-0000-000000000000";
    let cases: [(&str, Vec<&(dyn ToSql + Sync)>, &str, &str); 10] = [
        ("SELECT * FROM auth.get_user($1, $2::text::uuid)", vec![&unknown], "P0002", "no user with id"),
        ("SELECT auth.delete_user($1, $2::text::uuid)", vec![&unknown], "P0002", "no user with id"),
        ("SELECT * FROM auth.invite_user($1, 'JOE@example.com')", vec![], "23505", "exists already"),
        ("SELECT * FROM auth.invite_user($1, 'joe at example')", vec![], "22023", "invalid email address"),
        ("SELECT * FROM auth.invite_user($1, 'new@example.com', 'ghost_role')", vec![], "22023", "not allowed"),
        ("SELECT * FROM auth.list_users($1, sort => 'email; DROP TABLE auth.users')", vec![], "22023", "cannot sort by"),
        ("SELECT * FROM auth.list_users($1, filter_status => 'deleted')", vec![], "22023", "unknown status"),
        ("SELECT * FROM auth.list_users($1, cursor => '\"; DROP TABLE auth.users; --')", vec![], "22023", "cursor is not valid"),
        ("SELECT * FROM auth.list_users($1, cursor => encode('[\"not a time\", \"x\"]', 'base64'))", vec![], "22023", "cursor is not valid"),
        ("SELECT * FROM auth.list_users($1, page_size => 100000)", vec![], "22023", "page_size"),
    ];
    for (sql, params, code, message) in cases {
        let err = admin.call(sql, &params).unwrap_err();
        assert_eq!(err.code().unwrap().code(), code, "{sql}: {err}");
        assert!(err.as_db_error().unwrap().message().contains(message), "{sql}: {err}");
    }
    let joe: String = db.connect(Caller::Superuser).query_one("SELECT id::text FROM auth.users", &[]).unwrap().get(0);
    let past = admin.call("SELECT auth.ban_user($1, $2::text::uuid, now() - interval '1 hour', 'spam')", &[&joe]).unwrap_err();
    assert_eq!(past.code().unwrap().code(), "22023");
    assert!(past.as_db_error().unwrap().message().contains("must end in the future"));
    let users: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM auth.users", &[]).unwrap().get(0);
    assert_eq!(users, 1, "the table is still there, with nothing added");
}

#[test]
fn paging_walks_every_user_once_in_order() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    db.connect(Caller::Superuser)
        .batch_execute(
            "INSERT INTO auth.users (email, created_at, confirmed_at, last_sign_in_at)
             SELECT 'u' || g || '@example.com', now() - (g % 5) * interval '1 hour', now(),
                    CASE WHEN g % 2 = 0 THEN now() - g * interval '1 minute' END
               FROM generate_series(1, 30) g",
        )
        .unwrap();
    for (sort, descending) in [("created_at", true), ("email", false), ("last_sign_in_at", true), ("last_sign_in_at", false)] {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = &admin
                .call(
                    "SELECT p -> 'rows', p ->> 'next_cursor'
                       FROM auth.list_users($1, sort => $2, descending => $3, cursor => $4, page_size => 7) p",
                    &[&sort, &descending, &cursor],
                )
                .unwrap()[0];
            let rows: serde_json::Value = page.get(0);
            seen.extend(rows.as_array().unwrap().iter().map(|r| r["email"].as_str().unwrap().to_string()));
            cursor = page.get(1);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 30, "{sort}: {seen:?}");
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 30, "{sort}: a user twice");
        if sort == "email" {
            let mut sorted = seen.clone();
            sorted.sort();
            assert_eq!(seen, sorted);
        }
    }
    let found = admin.call("SELECT r FROM jsonb_array_elements((auth.list_users($1, search => 'U2')) -> 'rows') r", &[]).unwrap();
    assert_eq!(found.len(), 11, "u2 and u20-u29");
    let invited = admin.call("SELECT r FROM jsonb_array_elements((auth.list_users($1, filter_status => 'invited')) -> 'rows') r", &[]).unwrap();
    assert!(invited.is_empty());
}

#[test]
fn a_deep_page_of_100000_users_is_read_through_the_index() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "INSERT INTO auth.users (email, created_at, confirmed_at)
         SELECT 'u' || g || '@example.com', now() - g * interval '1 second', now() FROM generate_series(1, 100000) g;
         ANALYZE auth.users;",
    )
    .unwrap();
    let cursor: String = admin
        .call("SELECT auth.list_users($1, page_size => 500) ->> 'next_cursor'", &[])
        .unwrap()[0]
        .get(0);
    // The plan of the page query, as auto_explain reports the nested statement.
    let (mut client, notices) = db.connect_collecting_notices(Caller::Superuser);
    client
        .batch_execute("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice;")
        .unwrap();
    let page = client.query("SELECT r ->> 'email' FROM jsonb_array_elements(auth.list_users($1, cursor => $2, page_size => 50) -> 'rows') r", &[&admin.token, &cursor]).unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[0].get::<_, String>(0), "u501@example.com");
    let plans = notices.lock().unwrap().join("\n");
    let page_plan = plans.split("Query Text:").find(|p| p.contains("LIMIT $5")).unwrap_or_else(|| panic!("no plan in {plans}"));
    assert!(page_plan.contains("users_created_at"), "the keyset index is used:\n{page_plan}");
    assert!(!page_plan.contains("Seq Scan on users"), "no scan of the whole table:\n{page_plan}");
}

#[test]
fn callers_reach_only_their_own_functions() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    admin.invite_and_accept(&db, "joe@example.com");
    let mut su = db.connect(Caller::Superuser);
    // anon cannot use the application's functions; app roles cannot use the admins'.
    for (role, sql) in [
        ("anon", "SELECT * FROM auth.sign_in('joe@example.com', 'x')"),
        ("anon", "SELECT * FROM auth.accept_invite('fbu_x', 'x')"),
        ("authenticated", "SELECT * FROM auth.sign_in('joe@example.com', 'x')"),
        ("authenticated", "SELECT * FROM auth.list_users('fbs_x')"),
        ("service_role", "SELECT * FROM auth.list_users('fbs_x')"),
        ("service_role", "SELECT * FROM auth.users"),
    ] {
        let mut tx = su.transaction().unwrap();
        tx.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
        let err = tx.query(sql, &[]).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{role}: {sql}: {err}");
    }
    let mut app = db.connect(Caller::App);
    assert_eq!(app.query("SELECT * FROM auth.list_users('fbs_x')", &[]).unwrap_err().code().unwrap().code(), "42501");

    // A viewer is refused every user-management call.
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let viewer = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM auth.list_users($1)", &[&viewer])), "42501");
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM auth.invite_user($1, 'x@example.com')", &[&viewer])), "42501");
    let listed = admin::audit_actions(&db);
    assert!(listed.iter().all(|a| a != "users.listed"), "refused calls list nothing");
}

#[test]
fn the_claim_helpers_are_everyones_and_pin_an_empty_search_path() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let configs: Vec<(String, Vec<String>)> = su
        .query(
            "SELECT p.proname::text, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'auth' AND p.proname IN ('uid', 'role', 'email', 'jwt', 'claim') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(configs.len(), 5);
    for (name, config) in &configs {
        assert_eq!(config, &vec![r#"search_path="""#.to_string()], "{name}");
    }
    su.batch_execute("DO $$ BEGIN CREATE ROLE claims_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$").unwrap();
    let mut tx = su.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE claims_reader; SELECT set_config('request.jwt.claim.sub', '7d0c1f44-5b7e-4f0a-9d35-0d6cf5a1e2b3', true)").unwrap();
    let uid: String = tx.query_one("SELECT auth.uid()::text", &[]).unwrap().get(0);
    assert_eq!(uid, "7d0c1f44-5b7e-4f0a-9d35-0d6cf5a1e2b3", "the legacy claim, read by a role with no grants");
}

#[test]
fn failed_sign_ins_lock_the_users_address_and_count_per_address() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    admin.invite_and_accept(&db, "joe@example.com");
    for i in 0..5 {
        let (ok, code, _) = sign_in(&db, "joe@example.com", &format!("wrong guess {i}"));
        assert_eq!((ok, code.as_str()), (false, "invalid_credentials"));
    }
    // Locked out from this address: the right password gets the same answer as a wrong one.
    assert_eq!(sign_in(&db, "joe@example.com", USER_PASSWORD).1, "invalid_credentials");
    let mut su = db.connect(Caller::Superuser);
    let reasons: Vec<String> = strings(&mut su, "SELECT reason FROM auth.sign_in_attempts ORDER BY id", &[]);
    assert_eq!(reasons, ["wrong_password", "wrong_password", "wrong_password", "wrong_password", "wrong_password", "locked"]);
    // Before the fix the user was locked out everywhere: another address still gets in.
    assert!(sign_in_from(&db, "joe@example.com", USER_PASSWORD, "203.0.113.40").0, "the user, from another address");
    su.batch_execute("UPDATE auth.address_lockouts SET locked_until = now() - interval '1 second'").unwrap();
    assert!(sign_in(&db, "joe@example.com", USER_PASSWORD).0, "the lock ends");

    // 20 failures from one address (the default) refuse it, whatever the account.
    for i in 0..14 {
        sign_in(&db, &format!("nobody{i}@example.com"), "whatever it is");
    }
    let (ok, code, _) = sign_in(&db, "joe@example.com", USER_PASSWORD);
    assert_eq!((ok, code.as_str()), (false, "rate_limited"));
}

#[test]
fn a_search_as_you_type_is_audited_once_per_session_and_each_user_viewed_once() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let joe = admin.invite_and_accept(&db, "joe@example.com");
    for search in ["j", "jo", "joe", "joe@", "joe@example.com"] {
        admin.call("SELECT * FROM auth.list_users($1, search => $2)", &[&search]).unwrap();
    }
    for _ in 0..3 {
        admin.call("SELECT * FROM auth.get_user($1, $2::text::uuid)", &[&joe]).unwrap();
    }
    let mut su = db.connect(Caller::Superuser);
    let listed: Vec<serde_json::Value> = su
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'users.listed' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed.len(), 1, "one entry for the session's searches: {listed:?}");
    assert_eq!(listed[0]["search"], "j", "with the first request");
    let viewed: i64 = su
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'user.viewed' AND target_id = $1", &[&joe])
        .unwrap()
        .get(0);
    assert_eq!(viewed, 1);

    // Another session of the same admin is audited again.
    let token = login(&mut admin.web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    as_dashboard(&mut admin.web, "SELECT * FROM auth.list_users($1)", &[&token]).unwrap();
    let listed: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'users.listed'", &[]).unwrap().get(0);
    assert_eq!(listed, 2);
}

#[test]
fn the_user_list_gives_its_total_and_the_roles_a_user_may_be_given() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "INSERT INTO auth.users (email, created_at, confirmed_at, banned_until)
         SELECT 'u' || g || '@example.com', now() - g * interval '1 second', CASE WHEN g % 3 <> 0 THEN now() END,
                CASE WHEN g % 10 = 0 THEN now() + interval '1 day' END
           FROM generate_series(1, 120) g",
    )
    .unwrap();
    let total = |admin: &mut Admin, sql: &str| -> serde_json::Value { admin.call(sql, &[]).unwrap()[0].get(0) };
    // A page that holds every match is counted for free; one that does not is counted.
    assert_eq!(
        total(&mut admin, "SELECT auth.list_users($1, search => 'u11') -> 'total'"),
        serde_json::json!({"kind": "exact", "count": 11, "text": "11 users"}),
        "u11 and u110-u119"
    );
    assert_eq!(
        total(&mut admin, "SELECT auth.list_users($1, page_size => 10) -> 'total'"),
        serde_json::json!({"kind": "exact", "count": 120, "text": "120 users"})
    );
    // The status filter counts by the same rule the rows show.
    let banned = total(&mut admin, "SELECT auth.list_users($1, filter_status => 'banned', page_size => 5)");
    assert_eq!(banned["total"]["count"], 12, "{banned}");
    let invited = total(&mut admin, "SELECT auth.list_users($1, filter_status => 'invited', page_size => 5)");
    let invited_rows: i64 = su
        .query_one("SELECT count(*) FROM auth.user_overview WHERE status = 'invited'", &[])
        .unwrap()
        .get(0);
    assert_eq!(invited["total"]["count"], invited_rows, "{invited}");
    let next = invited["next_cursor"].as_str().unwrap().to_string();
    let second = admin.call("SELECT auth.list_users($1, filter_status => 'invited', page_size => 5, cursor => $2)", &[&next]).unwrap()[0]
        .get::<_, serde_json::Value>(0);
    assert_eq!(second["total"], invited["total"], "every page gives the same total");

    // The roles a user may be given, for a picker.
    let roles = |admin: &mut Admin| -> Vec<(String, bool, i64)> {
        admin.call("SELECT role, is_default, users FROM auth.list_user_roles($1)", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
    };
    assert_eq!(roles(&mut admin), [("authenticated".to_string(), true, 120)]);
    su.batch_execute("DO $$ BEGIN CREATE ROLE picker_role NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$").unwrap();
    fluxbase_tests::data_plane::for_each_data_login(&mut su, "GRANT picker_role TO %I");
    let listed = admin.call("SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', 'picker_role')", &[]);
    fluxbase_tests::data_plane::for_each_data_login(&mut su, "REVOKE picker_role FROM %I");
    listed.unwrap();
    su.batch_execute("UPDATE auth.users SET role = 'picker_role' WHERE email = 'u1@example.com'").unwrap();
    assert_eq!(roles(&mut admin), [("authenticated".to_string(), true, 119), ("picker_role".to_string(), false, 1)]);

    // Viewers do not manage users.
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let viewer = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM auth.list_user_roles($1)", &[&viewer])), "42501");
}

#[test]
fn a_users_account_slows_down_under_many_addresses_but_is_never_locked() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    admin.invite_and_accept(&db, "joe@example.com");
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("INSERT INTO dashboard_auth.settings (key, value, updated_by) VALUES ('lockout.account_max_failures', '5', 'test')").unwrap();
    assert!(sign_in_from(&db, "joe@example.com", USER_PASSWORD, "192.0.2.50").0, "joe's usual address");
    for i in 0..5 {
        sign_in_from(&db, "joe@example.com", "a botnet's guess", &format!("198.51.100.{}", 10 + i));
    }
    // Within the backoff, a fresh address is refused like a wrong password; joe's own is not.
    let (ok, code, _) = sign_in_from(&db, "joe@example.com", USER_PASSWORD, "203.0.113.50");
    assert_eq!((ok, code.as_str()), (false, "invalid_credentials"));
    assert!(sign_in_from(&db, "joe@example.com", USER_PASSWORD, "192.0.2.50").0);
    // After the backoff, the fresh address with the right password gets in.
    su.batch_execute("UPDATE auth.users SET throttled_until = now() - interval '1 second'").unwrap();
    assert!(sign_in_from(&db, "joe@example.com", USER_PASSWORD, "203.0.113.50").0);
    let reasons: Vec<String> = strings(&mut su, "SELECT reason FROM auth.sign_in_attempts WHERE ip = '203.0.113.50' ORDER BY id", &[]);
    assert_eq!(reasons, ["throttled", "ok"]);
    let locked: i64 = su.query_one("SELECT count(*) FROM auth.address_lockouts WHERE locked_until > now()", &[]).unwrap().get(0);
    assert_eq!(locked, 0, "one guess per address locks no address");
}

#[test]
fn an_admin_sees_a_users_lockout_and_clears_it() {
    let db = TestDb::new();
    let mut admin = admin_session(&db);
    let joe = admin.invite_and_accept(&db, "joe@example.com");
    let lockout = |admin: &mut Admin| -> serde_json::Value {
        admin.call("SELECT lockout FROM auth.get_user($1, $2::text::uuid)", &[&joe]).unwrap()[0].get(0)
    };
    assert_eq!(lockout(&mut admin), serde_json::json!({"locked_addresses": [], "throttled_until": null}));
    // Wrong passwords from the app's client address lock that address out of the account.
    for _ in 0..5 {
        assert!(!sign_in(&db, "joe@example.com", "not the password").0);
    }
    assert!(!sign_in(&db, "joe@example.com", USER_PASSWORD).0, "the address is locked out");
    let locked = lockout(&mut admin);
    assert_eq!(locked["locked_addresses"][0]["ip"], "198.51.100.1", "{locked}");

    // A viewer may not clear it.
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let viewer = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM auth.unlock_user($1, $2::text::uuid)", &[&viewer, &joe])), "42501");

    let row = &admin.call("SELECT ok, code FROM auth.unlock_user($1, $2::text::uuid)", &[&joe]).unwrap()[0];
    assert_eq!((row.get::<_, bool>(0), row.get::<_, String>(1)), (true, "unlocked".to_string()));
    assert_eq!(lockout(&mut admin)["locked_addresses"], serde_json::json!([]));
    assert!(sign_in(&db, "joe@example.com", USER_PASSWORD).0, "the user signs in again from that address");
    let audited: serde_json::Value = db
        .connect(Caller::Superuser)
        .query_one("SELECT details FROM dashboard_auth.audit_log WHERE action = 'user.unlocked' AND target_id = $1", &[&joe])
        .unwrap()
        .get(0);
    assert_eq!(audited["locked_addresses"], 1, "{audited}");
    // An unknown user is a clear error.
    let unknown = admin.call("SELECT * FROM auth.unlock_user($1, '00000000-0000-0000-0000-000000000000')", &[]).unwrap_err();
    assert_eq!(unknown.code().unwrap().code(), "P0002");
}
