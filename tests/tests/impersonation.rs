//! Impersonation against a real RLS fixture: what each mode sees and may change, the
//! forbidden targets, expiry, and no leaks on a reused connection. Work as the target
//! runs the way the dashboard does it: an 'impersonate' ticket from the dashboard login,
//! then, on the data login, claim + auth.apply_impersonation() and plain SQL.

use fluxbase_tests::admin::{self, as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::data_plane::for_each_data_login as data_logins;
use fluxbase_tests::data_plane::{claimed, ticket_text};
use fluxbase_tests::{Caller, TestDb};
use postgres::types::ToSql;
use postgres::Client;

/// The fixture: see fluxbase_tests::fixtures::rls_todos. Returns (joe's id, bea's id).
fn fixture(db: &TestDb) -> (String, String) {
    fluxbase_tests::fixtures::rls_todos(db)
}

struct Admin {
    web: Client,
    data: Client,
    token: String,
}

fn admin(db: &TestDb) -> Admin {
    create_admin(db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    Admin { web, data: db.connect(Caller::Data), token }
}

impl Admin {
    /// Starts impersonating in a transaction of its own; returns (ok, code, message, id).
    fn start(&mut self, mode: &str, target: Option<&str>, reason: &str) -> (bool, String, String, Option<String>) {
        let row = &as_dashboard(
            &mut self.web,
            "SELECT ok, code, message, impersonation_id::text FROM auth.start_impersonation($1, $2, $3, $4)",
            &[&self.token, &mode, &target, &reason],
        )
        .unwrap()[0];
        (row.get(0), row.get(1), row.get(2), row.get(3))
    }

    fn start_ok(&mut self, mode: &str, target: Option<&str>) -> String {
        let (ok, code, message, id) = self.start(mode, target, "ticket 42");
        assert!(ok, "{code}: {message}");
        id.unwrap()
    }

    /// An 'impersonate' ticket from the dashboard login.
    fn ticket(&mut self, impersonation: &str, read_only: bool) -> Result<String, postgres::Error> {
        ticket_text(&mut self.web, &self.token, "impersonate", &format!("{{\"read_only\": {read_only}}}"), Some(impersonation))
    }

    /// Runs `sql` as the impersonated session, the way the dashboard does: an
    /// 'impersonate' ticket (writes allowed), then one transaction on the data login that
    /// claims it, switches with auth.apply_impersonation() and runs the query; returns
    /// the first column.
    fn run_as(&mut self, impersonation: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<String>, postgres::Error> {
        self.run_with(impersonation, false, sql, params)
    }

    fn run_with(&mut self, impersonation: &str, read_only: bool, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<String>, postgres::Error> {
        let ticket = self.ticket(impersonation, read_only)?;
        let mut tx = self.data.transaction()?;
        tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket])?;
        tx.execute("SELECT auth.apply_impersonation()", &[])?;
        let rows = tx.query(sql, params)?;
        tx.commit()?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}


fn titles(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

#[test]
fn a_user_sees_and_changes_only_their_own_rows() {
    let db = TestDb::new();
    let (joe, bea) = fixture(&db);
    let mut admin = admin(&db);
    let session = admin.start_ok("user", Some("joe@example.com"));
    assert_eq!(titles(admin.run_as(&session, "SELECT title FROM public.todos", &[]).unwrap()), ["joe private", "joe public"]);
    let uid = admin.run_as(&session, "SELECT auth.uid()::text", &[]).unwrap();
    assert_eq!(uid, [joe.clone()]);

    let changed = admin.run_as(&session, "UPDATE public.todos SET title = title || '!' RETURNING title", &[]).unwrap();
    assert_eq!(titles(changed), ["joe private!", "joe public!"], "only joe's rows change");
    // A write outside joe's rows is refused by WITH CHECK.
    let err = admin.run_as(&session, "INSERT INTO public.todos (owner, title) VALUES ($1::text::uuid, 'for bea') RETURNING title", &[&bea]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");
    assert!(err.as_db_error().unwrap().message().contains("row-level security"), "{err:?}");
    let err = admin.run_as(&session, "UPDATE public.todos SET owner = $1::text::uuid RETURNING title", &[&bea]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let bea_rows: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM public.todos WHERE owner = $1::text::uuid", &[&bea]).unwrap().get(0);
    assert_eq!(bea_rows, 1, "nothing written for bea");
    // A read-only ticket (the default) makes the whole transaction read only.
    let err = admin.run_with(&session, true, "UPDATE public.todos SET title = 'ro' RETURNING title", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "25006", "{err:?}");
    assert_eq!(titles(admin.run_with(&session, true, "SELECT title FROM public.todos", &[]).unwrap()), ["joe private!", "joe public!"]);
}

#[test]
fn anonymous_sees_only_public_rows_and_service_sees_everything() {
    let db = TestDb::new();
    fixture(&db);
    let mut admin = admin(&db);
    let anon = admin.start_ok("anon", None);
    assert_eq!(titles(admin.run_as(&anon, "SELECT title FROM public.todos", &[]).unwrap()), ["joe public", "nobody public"]);
    assert_eq!(admin.run_as(&anon, "SELECT current_user::text", &[]).unwrap(), ["anon"]);
    let service = admin.start_ok("service", None);
    assert_eq!(admin.run_as(&service, "SELECT title FROM public.todos", &[]).unwrap().len(), 4, "service mode bypasses RLS on purpose");
}

#[test]
fn the_claims_are_shaped_like_postgrest() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    let session = admin.start_ok("user", Some(&joe));
    let claims: serde_json::Value = serde_json::from_str(&admin.run_as(&session, "SELECT current_setting('request.jwt.claims')", &[]).unwrap()[0]).unwrap();
    for key in ["sub", "role", "email", "app_metadata", "user_metadata", "aal", "session_id", "exp"] {
        assert!(claims.get(key).is_some(), "{key} missing from {claims}");
    }
    assert_eq!(claims["sub"], joe.as_str());
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["session_id"], session.as_str());
    assert_eq!(admin.run_as(&session, "SELECT auth.email()", &[]).unwrap(), ["joe@example.com"]);
}

#[test]
fn forbidden_targets_are_refused_with_a_reason_and_audited() {
    let db = TestDb::new();
    fixture(&db);
    let mut admin = admin(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "DO $$ BEGIN CREATE ROLE imp_bypass NOLOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         DO $$ BEGIN CREATE ROLE imp_unlisted NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         INSERT INTO auth.users (email, confirmed_at) VALUES ('ann@example.com', now());
         INSERT INTO auth.users (email, confirmed_at, role) VALUES ('bypass@example.com', now(), 'imp_bypass');
         INSERT INTO auth.users (email, confirmed_at, role) VALUES ('unlisted@example.com', now(), 'imp_unlisted');
         INSERT INTO auth.users (email, confirmed_at, role) VALUES ('root@example.com', now(), 'postgres');",
    )
    .unwrap();
    let cases = [
        ("ann@example.com", "dashboard admin"),
        ("bypass@example.com", "bypasses row level security"),
        ("unlisted@example.com", "not in the allow-list"),
        ("root@example.com", "is a superuser"),
        ("ghost@example.com", "no app user"),
    ];
    for (target, reason) in cases {
        let (ok, code, message, id) = admin.start("user", Some(target), "ticket 42");
        assert!(!ok && id.is_none(), "{target}");
        assert_eq!(code, "forbidden_target");
        assert!(message.contains(reason), "{target}: {message}");
    }
    let refused: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'impersonation.refused'", &[]).unwrap().get(0);
    assert_eq!(refused, 5);
    let sessions: i64 = su.query_one("SELECT count(*) FROM auth.impersonation_sessions", &[]).unwrap().get(0);
    assert_eq!(sessions, 0);
    // And a call without a reason is wrong, not refused.
    let err = as_dashboard(&mut admin.web, "SELECT * FROM auth.start_impersonation($1, 'anon', NULL, '  ')", &[&admin.token]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22023");
}

#[test]
fn a_banned_user_can_be_impersonated_and_the_audit_says_so() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    db.connect(Caller::Superuser)
        .execute("UPDATE auth.users SET banned_until = now() + interval '1 day', ban_reason = 'spam' WHERE id = $1::text::uuid", &[&joe])
        .unwrap();
    let (ok, _, message, id) = admin.start("user", Some(&joe), "why can't joe see his todos?");
    assert!(ok);
    assert!(message.contains("banned"), "{message}");
    assert_eq!(admin.run_as(&id.unwrap(), "SELECT count(*)::text FROM public.todos", &[]).unwrap(), ["2"]);
    let banned: bool = db
        .connect(Caller::Superuser)
        .query_one("SELECT (details->>'target_banned')::boolean FROM dashboard_auth.audit_log WHERE action = 'impersonation.started'", &[])
        .unwrap()
        .get(0);
    assert!(banned);
}

#[test]
fn sessions_expire_end_and_give_way_to_the_next() {
    let db = TestDb::new();
    let (joe, bea) = fixture(&db);
    let mut admin = admin(&db);
    let first = admin.start_ok("user", Some(&joe));
    let second = admin.start_ok("user", Some(&bea));
    let err = admin.run_as(&first, "SELECT 'x'", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "FB001", "the first ended when the second started: its own code, not sign-in-again");
    assert!(admin.run_as(&second, "SELECT 'x'", &[]).is_ok());

    let ended: bool = as_dashboard(&mut admin.web, "SELECT auth.end_impersonation($1)", &[&admin.token]).unwrap()[0].get(0);
    assert!(ended);
    assert_eq!(admin.run_as(&second, "SELECT 'x'", &[]).unwrap_err().code().unwrap().code(), "FB001", "an ended impersonation has its own code");

    let third = admin.start_ok("anon", None);
    db.connect(Caller::Superuser)
        .execute("UPDATE auth.impersonation_sessions SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid", &[&third])
        .unwrap();
    assert_eq!(admin.run_as(&third, "SELECT 'x'", &[]).unwrap_err().code().unwrap().code(), "FB001", "expired");

    // The seed's query, as an operator.
    let rows = db
        .connect(Caller::Operator)
        .query("SELECT * FROM auth.impersonation_sessions ORDER BY started_at DESC LIMIT 50;", &[])
        .unwrap();
    assert_eq!(rows.len(), 3);
    let reasons: Vec<Option<String>> = rows.iter().map(|r| r.get("end_reason")).collect();
    assert_eq!(reasons, [None, Some("ended".into()), Some("replaced".into())]);
    // The next impersonation call records the expiry.
    admin.start_ok("anon", None);
    let expired: i64 = db.connect(Caller::Operator).query_one("SELECT count(*) FROM auth.impersonation_sessions WHERE end_reason = 'expired' AND NOT active", &[]).unwrap().get(0);
    assert_eq!(expired, 1);
}

#[test]
fn durations_are_capped_by_the_setting() {
    let db = TestDb::new();
    fixture(&db);
    let mut admin = admin(&db);
    let err = as_dashboard(&mut admin.web, "SELECT * FROM auth.start_impersonation($1, 'anon', NULL, 'x', interval '2 hours')", &[&admin.token]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22023");
    let db_error = err.as_db_error().unwrap();
    assert!(db_error.message().contains("out of range"), "{db_error:?}");
    assert!(db_error.hint().unwrap_or("").contains("impersonation.max_duration"), "{db_error:?}");
    let default_minutes: f64 = as_dashboard(
        &mut admin.web,
        "SELECT extract(epoch FROM expires_at - now())::float8 / 60 FROM auth.start_impersonation($1, 'anon', NULL, 'x')",
        &[&admin.token],
    )
    .unwrap()[0]
        .get(0);
    assert!((29.0..=30.0).contains(&default_minutes), "{default_minutes}");
}

#[test]
fn a_viewer_is_refused() {
    let db = TestDb::new();
    fixture(&db);
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let viewer = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    // Refused and recorded: returned, not raised, so that the record commits.
    let row = &as_dashboard(&mut web, "SELECT ok, code, message FROM auth.start_impersonation($1, 'anon', NULL, 'x')", &[&viewer]).unwrap()[0];
    let (ok, code, message): (bool, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((ok, code.as_str()), (false, "forbidden"), "{message}");
    assert!(message.starts_with("viewers are read-only"), "{message}");
    let refused: Vec<serde_json::Value> = db
        .connect(Caller::Superuser)
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'impersonation.refused' AND actor = 'vic@example.com'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["mode"], "anon");
    let started: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM auth.impersonation_sessions", &[]).unwrap().get(0);
    assert_eq!(started, 0);
}

#[test]
fn nothing_leaks_on_a_reused_connection() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    let session = admin.start_ok("user", Some(&joe));
    let state = |c: &mut Client| -> (String, String) {
        let row = c.query_one("SELECT current_user::text, coalesce(current_setting('request.jwt.claims', true), '')", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    for _ in 0..3 {
        assert_eq!(admin.run_as(&session, "SELECT current_user::text", &[]).unwrap(), ["authenticated"]);
        // A failed transaction must not leak either.
        let _ = admin.run_as(&session, "SELECT 1/0", &[]);
        assert_eq!(state(&mut admin.data), ("fluxbase_data".into(), String::new()));
        assert_eq!(state(&mut admin.web), ("fluxbase_web".into(), String::new()));
    }
    // Outside BEGIN ... COMMIT the claim ends with its own statement: nothing is bound
    // for the next one, and nothing is switched.
    let ticket = admin.ticket(&session, true).unwrap();
    admin.data.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
    let err = admin.data.execute("SELECT auth.apply_impersonation()", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "55000", "{err:?}");
    assert_eq!(state(&mut admin.data), ("fluxbase_data".into(), String::new()));
    // Claim and switch in one statement: the switch ends with it.
    let ticket = admin.ticket(&session, true).unwrap();
    admin.data.execute("SELECT fluxbase_admin.claim_ticket($1), auth.apply_impersonation()", &[&ticket]).unwrap();
    assert_eq!(state(&mut admin.data), ("fluxbase_data".into(), String::new()));
    // The ticket was spent by that claim: it cannot be claimed again.
    let err = claimed(&mut admin.data, &ticket, "SELECT auth.apply_impersonation()", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000", "{err:?}");
}

#[test]
fn the_readme_psql_lines_work_as_one_string_too() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    let session = admin.start_ok("user", Some(&joe));
    let ticket = admin.ticket(&session, true).unwrap();
    let mut psql = db.connect(Caller::Data);
    let script = format!(
        "BEGIN; SELECT fluxbase_admin.claim_ticket('{ticket}'); SELECT auth.apply_impersonation(); SELECT title FROM public.todos ORDER BY title; ROLLBACK;"
    );
    let messages = psql.simple_query(&script).unwrap();
    let titles: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned).filter(|t| t.starts_with("joe") || t.starts_with("bea") || t.starts_with("nobody")),
            _ => None,
        })
        .collect();
    assert_eq!(titles, ["joe private", "joe public"]);
    let me: String = psql.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(me, "fluxbase_data");
}

#[test]
fn an_older_legacy_claim_cannot_show_through() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    let anon = admin.start_ok("anon", None);
    // Someone set the legacy per-claim form on this connection earlier, at session level.
    admin.data.execute("SELECT set_config('request.jwt.claim.sub', $1, false)", &[&joe]).unwrap();
    assert_eq!(admin.run_as(&anon, "SELECT coalesce(auth.uid()::text, 'none')", &[]).unwrap(), ["none"]);
    assert_eq!(titles(admin.run_as(&anon, "SELECT title FROM public.todos", &[]).unwrap()), ["joe public", "nobody public"]);
}

#[test]
fn a_role_that_can_reach_privileges_is_never_a_target() {
    let db = TestDb::new();
    fixture(&db);
    let mut admin = admin(&db);
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "DO $$ BEGIN CREATE ROLE imp_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         DO $$ BEGIN CREATE ROLE imp_helper NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT pg_read_all_data TO imp_reader;
         GRANT fluxbase_operator TO imp_helper;
         INSERT INTO auth.users (email, confirmed_at, role) VALUES ('reader@example.com', now(), 'imp_reader'),
                                                                  ('helper@example.com', now(), 'imp_helper');",
    )
    .unwrap();
    for (role, email, member_of) in [("imp_reader", "reader@example.com", "pg_read_all_data"), ("imp_helper", "helper@example.com", "fluxbase_operator")] {
        let err = as_dashboard(&mut admin.web, "SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', $2)", &[&admin.token, &role]).unwrap_err();
        assert!(err.as_db_error().unwrap().message().contains(member_of), "{role}: {err:?}");
        let (ok, _, message, _) = admin.start("user", Some(email), "ticket 5");
        assert!(!ok);
        assert!(message.contains(member_of) || message.contains("allow-list"), "{message}");
    }
    // A role listed while harmless and granted more later is refused where it is applied,
    // at the claim, for a ticket issued before the grant and for one issued after.
    su.batch_execute("DO $$ BEGIN CREATE ROLE imp_later NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
                      REVOKE pg_read_all_data FROM imp_later;
                      GRANT SELECT ON public.todos TO imp_later;
                      INSERT INTO auth.users (email, confirmed_at, role) VALUES ('later@example.com', now(), 'imp_later');")
        .unwrap();
    // The data logins are made members for the setting, then not again: roles are
    // cluster-wide, shared with the tests that run at the same time.
    data_logins(&mut su, "GRANT imp_later TO %I");
    let listed = as_dashboard(&mut admin.web, "SELECT * FROM dashboard_auth.set_setting($1, 'users.extra_roles', 'imp_later')", &[&admin.token]);
    data_logins(&mut su, "REVOKE imp_later FROM %I");
    listed.unwrap();
    let session = admin.start_ok("user", Some("later@example.com"));
    let early = admin.ticket(&session, true).unwrap();
    su.batch_execute("GRANT pg_read_all_data TO imp_later").unwrap();
    let late = admin.ticket(&session, true).unwrap();
    // At the claim the refusal is recorded, so it is returned, not raised, and nothing is
    // bound: the transaction commits the record with the spent ticket.
    let at_claim: serde_json::Value = {
        let mut tx = admin.data.transaction().unwrap();
        let answer: serde_json::Value = tx.query_one("SELECT fluxbase_admin.claim_ticket($1)", &[&early]).unwrap().get(0);
        assert_eq!(answer["code"], "forbidden_target", "{answer}");
        let unbound = tx.query("SELECT auth.apply_impersonation()", &[]).unwrap_err();
        assert_eq!(unbound.code().unwrap().code(), "55000", "nothing bound after a refusal: {unbound:?}");
        drop(tx);
        let mut tx = admin.data.transaction().unwrap();
        let again = tx.query_one("SELECT fluxbase_admin.claim_ticket($1)", &[&early]);
        assert!(again.is_ok(), "the rolled-back claim left the ticket unspent");
        tx.commit().unwrap();
        again.unwrap().get(0)
    };
    let at_late_claim: serde_json::Value = {
        let mut tx = admin.data.transaction().unwrap();
        let answer: serde_json::Value = tx.query_one("SELECT fluxbase_admin.claim_ticket($1)", &[&late]).unwrap().get(0);
        tx.commit().unwrap();
        answer
    };
    su.batch_execute("REVOKE pg_read_all_data FROM imp_later").unwrap();
    assert_eq!(at_late_claim["code"], "forbidden_target", "a ticket issued after the grant: {at_late_claim}");
    assert_eq!((at_claim["ok"].clone(), at_claim["code"].clone()), (serde_json::json!(false), serde_json::json!("forbidden_target")), "{at_claim}");
    assert!(at_claim["message"].as_str().unwrap().contains("pg_read_all_data"), "{at_claim}");
    let refused: Vec<serde_json::Value> = su
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'impersonation.refused' AND details ->> 'at' = 'claim'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(refused.len(), 2, "each committed refusal is recorded once: {refused:?}");
    assert_eq!(refused[0]["target_role"], "imp_later");
}

#[test]
fn intent_survives_a_failing_statement_and_result_commits_with_the_work() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    let session = admin.start_ok("user", Some(&joe));
    // The intent is recorded by the ticket, in its own transaction.
    let ticket = admin.ticket(&session, false).unwrap();
    let intents: Vec<serde_json::Value> = db
        .connect(Caller::Superuser)
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'impersonated.psql.intent'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["read_only"], false);
    assert_eq!(intents[0]["as_role"], "authenticated");
    assert_eq!(intents[0]["claims_sub"], joe.as_str());
    // The work fails (NOT NULL), so its transaction, and a result it would record, roll back.
    let failed = {
        let mut tx = admin.data.transaction().unwrap();
        tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
        tx.execute("SELECT auth.apply_impersonation()", &[]).unwrap();
        tx.query("UPDATE public.todos SET title = NULL RETURNING title", &[])
    };
    assert!(failed.is_err());
    let actions = admin::audit_actions(&db);
    assert!(actions.contains(&"impersonated.psql.intent".to_string()), "{actions:?}");
    assert!(!actions.contains(&"impersonated.psql.result".to_string()), "{actions:?}");

    // A successful run records its result in the same transaction, after switching back
    // to the data login (a write ticket: a read-only one's transaction cannot write the
    // result).
    let ticket = admin.ticket(&session, false).unwrap();
    let intent2: i64 = db
        .connect(Caller::Superuser)
        .query_one("SELECT max(id) FROM dashboard_auth.audit_log WHERE action = 'impersonated.psql.intent'", &[])
        .unwrap()
        .get(0);
    let mut tx = admin.data.transaction().unwrap();
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
    tx.execute("SELECT auth.apply_impersonation()", &[]).unwrap();
    let rows = tx.query("SELECT title FROM public.todos", &[]).unwrap();
    // The target may not record results: only the data login may.
    tx.batch_execute("SAVEPOINT as_target").unwrap();
    let forged = tx.execute("SELECT fluxbase_admin.record_result('{\"rows\": 99}')", &[]);
    assert_eq!(forged.unwrap_err().code().unwrap().code(), "42501");
    tx.batch_execute("ROLLBACK TO SAVEPOINT as_target; SET LOCAL ROLE NONE").unwrap();
    let outcome = serde_json::json!({"rows": rows.len()});
    tx.execute("SELECT fluxbase_admin.record_result($1)", &[&outcome]).unwrap();
    // Once: a second result is refused, and would roll the work back.
    tx.batch_execute("SAVEPOINT twice").unwrap();
    let again = tx.execute("SELECT fluxbase_admin.record_result($1)", &[&outcome]);
    assert_eq!(again.unwrap_err().code().unwrap().code(), "55000");
    tx.batch_execute("ROLLBACK TO SAVEPOINT twice").unwrap();
    tx.commit().unwrap();
    let results: Vec<serde_json::Value> = db
        .connect(Caller::Superuser)
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'impersonated.psql.result'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["rows"], 2);
    assert_eq!(results[0]["intent_id"], intent2);
}

#[test]
fn the_user_list_counts_impersonations() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    admin.start_ok("user", Some(&joe));
    admin.start_ok("user", Some("joe@example.com"));
    let count: i64 = as_dashboard(&mut admin.web, "SELECT times_impersonated FROM auth.get_user($1, $2::text::uuid)", &[&admin.token, &joe])
        .unwrap()[0]
        .get(0);
    assert_eq!(count, 2);
}

#[test]
fn impersonation_works_from_psql_as_written_in_the_readme() {
    let db = TestDb::new();
    fixture(&db);
    create_admin(&db, "ann@example.com", "admin");
    // An operator in psql: sign in, start (committed on its own) and take a ticket on the
    // dashboard login, then look as joe on the data login.
    let mut psql = db.connect(Caller::Dashboard);
    psql.batch_execute("SET ROLE fluxbase_dashboard").unwrap();
    let token: String = psql
        .query_one("SELECT session_token FROM dashboard_auth.sign_in('ann@example.com', $1)", &[&PASSWORD])
        .unwrap()
        .get(0);
    let id: String = psql
        .query_one("SELECT impersonation_id::text FROM auth.start_impersonation($1, 'user', 'joe@example.com', 'ticket 7')", &[&token])
        .unwrap()
        .get(0);
    let ticket: String = psql
        .query_one("SELECT fluxbase_admin.issue_ticket($1, 'impersonate', '{\"read_only\": true}', $2::text::uuid)", &[&token, &id])
        .unwrap()
        .get(0);
    let mut data = db.connect(Caller::Data);
    data.batch_execute("BEGIN").unwrap();
    data.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
    data.execute("SELECT auth.apply_impersonation()", &[]).unwrap();
    let seen: Vec<String> = data.query("SELECT title FROM public.todos", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    data.batch_execute("ROLLBACK").unwrap();
    assert_eq!(titles(seen), ["joe private", "joe public"]);
    let me: String = data.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(me, "fluxbase_data");
    // A superuser is never the data login: its claim is refused.
    let ticket: String = psql
        .query_one("SELECT fluxbase_admin.issue_ticket($1, 'impersonate', '{}', $2::text::uuid)", &[&token, &id])
        .unwrap()
        .get(0);
    let mut su = db.connect(Caller::Superuser);
    let err = su.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err:?}");
}

// ---------------------------------------------------------------------------------
// Reading impersonations: the banner's, and the history
// ---------------------------------------------------------------------------------

/// get_impersonation as `token`: (id, mode, target_email, target_role, reason) of each row.
fn active(web: &mut Client, token: &str) -> Vec<(String, String, Option<String>, String, String)> {
    as_dashboard(
        web,
        "SELECT impersonation_id::text, mode, target_email, target_role, reason, started_at <= now() AND expires_at > now()
           FROM auth.get_impersonation($1)",
        &[&token],
    )
    .unwrap()
    .iter()
    .map(|r| {
        assert!(r.get::<_, bool>(5), "started before now and not expired");
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
    })
    .collect()
}

#[test]
fn the_active_impersonation_is_there_after_a_reload_until_it_ends_or_expires() {
    let db = TestDb::new();
    let (joe, _) = fixture(&db);
    let mut admin = admin(&db);
    assert!(active(&mut admin.web, &admin.token).is_empty());
    let first = admin.start_ok("user", Some(&joe));
    // A reload: a new connection, the same session.
    let mut reloaded = db.connect(Caller::Dashboard);
    let row = active(&mut reloaded, &admin.token);
    assert_eq!(
        row,
        [(first.clone(), "user".to_string(), Some("joe@example.com".to_string()), "authenticated".to_string(), "ticket 42".to_string())]
    );
    let target: Option<String> = as_dashboard(&mut reloaded, "SELECT target_user_id::text FROM auth.get_impersonation($1)", &[&admin.token]).unwrap()[0].get(0);
    assert_eq!(target.as_deref(), Some(joe.as_str()));
    // Replaced by the next one, then ended.
    let second = admin.start_ok("anon", None);
    assert_eq!(active(&mut reloaded, &admin.token)[0].0, second);
    as_dashboard(&mut admin.web, "SELECT auth.end_impersonation($1)", &[&admin.token]).unwrap();
    assert!(active(&mut reloaded, &admin.token).is_empty());
    // Expired, even before anything records the expiry.
    let third = admin.start_ok("service", None);
    assert_eq!(active(&mut reloaded, &admin.token)[0].1, "service");
    db.connect(Caller::Superuser)
        .execute("UPDATE auth.impersonation_sessions SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid", &[&third])
        .unwrap();
    assert!(active(&mut reloaded, &admin.token).is_empty());
    // Another admin's impersonation is not yours; a viewer has none; a bad session is refused.
    admin.start_ok("user", Some(&joe));
    create_admin(&db, "vic@example.com", "viewer");
    let viewer = login(&mut reloaded, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    assert!(active(&mut reloaded, &viewer).is_empty());
    let err = as_dashboard(&mut reloaded, "SELECT * FROM auth.get_impersonation('fbs_nope')", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000");
}

/// list_impersonations as `token` with its filters; the page as JSON.
fn history(web: &mut Client, token: &str, admin_email: Option<&str>, target: Option<&str>, since: Option<&str>, page_size: i32, cursor: Option<&str>) -> Result<serde_json::Value, postgres::Error> {
    let rows = as_dashboard(
        web,
        "SELECT auth.list_impersonations($1, $2, $3, $4::text::timestamptz, NULL, $5, $6)::text",
        &[&token, &admin_email, &target, &since, &page_size, &cursor],
    )?;
    Ok(serde_json::from_str(&rows[0].get::<_, String>(0)).unwrap())
}

fn history_ids(page: &serde_json::Value) -> Vec<String> {
    page["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_history_of_impersonations_is_filtered_and_paged_for_admins_and_viewers() {
    let db = TestDb::new();
    let (joe, bea) = fixture(&db);
    let mut ann = admin(&db);
    let a1 = ann.start_ok("user", Some(&joe));
    let a2 = ann.start_ok("anon", None);
    let a3 = ann.start_ok("user", Some("bea@example.com"));
    create_admin(&db, "bob@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    let bob = login(&mut web, "bob@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let b1: String = as_dashboard(&mut web, "SELECT impersonation_id::text FROM auth.start_impersonation($1, 'user', 'JOE@example.com', 'support')", &[&bob])
        .unwrap()[0]
        .get(0);
    let token = ann.token.clone();

    let all = history(&mut ann.web, &token, None, None, None, 50, None).unwrap();
    assert_eq!(history_ids(&all), [b1.clone(), a3.clone(), a2.clone(), a1.clone()], "newest first");
    assert!(all["next_cursor"].is_null());
    let first = &all["rows"][3];
    assert_eq!((first["admin_email"].as_str(), first["mode"].as_str(), first["target_email"].as_str()), (Some("ann@example.com"), Some("user"), Some("joe@example.com")));
    assert_eq!((first["active"].as_bool(), first["end_reason"].as_str(), first["reason"].as_str()), (Some(false), Some("replaced"), Some("ticket 42")));
    assert_eq!((all["rows"][1]["active"].as_bool(), all["rows"][1]["target_user_id"].as_str()), (Some(true), Some(bea.as_str())));

    let filtered = |web: &mut Client, admin_email: Option<&str>, target: Option<&str>, since: Option<&str>| {
        history_ids(&history(web, &token, admin_email, target, since, 50, None).unwrap())
    };
    assert_eq!(filtered(&mut ann.web, Some(" ANN@example.com"), None, None), [a3.clone(), a2.clone(), a1.clone()]);
    assert_eq!(filtered(&mut ann.web, None, Some("Joe@Example.com"), None), [b1.clone(), a1.clone()]);
    assert_eq!(filtered(&mut ann.web, None, Some(&joe), None), [b1.clone(), a1.clone()]);
    assert_eq!(filtered(&mut ann.web, None, Some("anon"), None), [a2.clone()]);
    assert_eq!(filtered(&mut ann.web, Some("bob@example.com"), Some("bea@example.com"), None), Vec::<String>::new());
    assert!(filtered(&mut ann.web, None, None, Some("2999-01-01")).is_empty());
    let since: String = db
        .connect(Caller::Superuser)
        .query_one("SELECT started_at::text FROM auth.impersonation_sessions WHERE id = $1::text::uuid", &[&a3])
        .unwrap()
        .get(0);
    assert_eq!(filtered(&mut ann.web, None, None, Some(&since)), [b1.clone(), a3.clone()], "since is inclusive");

    // Paged: every row once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = history(&mut ann.web, &token, None, None, None, 3, cursor.as_deref()).unwrap();
        seen.extend(history_ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, history_ids(&all));
    // Bad input: a page size out of range, a cursor from elsewhere, no session.
    for (size, cursor) in [(0, None), (1001, None), (10, Some("not a cursor")), (10, Some("WzEsMl0="))] {
        let err = history(&mut ann.web, &token, None, None, None, size, cursor).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22023", "{size} {cursor:?}: {err}");
    }
    assert_eq!(history(&mut ann.web, "fbs_nope", None, None, None, 10, None).unwrap_err().code().unwrap().code(), "28000");

    // A viewer reads it too, as it reads the audit log. Reading is audited once a session.
    create_admin(&db, "vic@example.com", "viewer");
    let vic = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    assert_eq!(history_ids(&history(&mut web, &vic, None, None, None, 50, None).unwrap()).len(), 4);
    history(&mut web, &vic, None, Some("anon"), None, 50, None).unwrap();
    let listed: Vec<(String, serde_json::Value)> = db
        .connect(Caller::Superuser)
        .query("SELECT actor, details FROM dashboard_auth.audit_log WHERE action = 'impersonation.listed' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let actors: Vec<&str> = listed.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actors, ["ann@example.com", "vic@example.com"]);
    assert_eq!(listed[0].1["admin_email"], serde_json::Value::Null);
}

#[test]
fn following_a_foreign_key_while_impersonated_shows_the_referenced_row_only_when_the_target_may_see_it() {
    let db = TestDb::new();
    let (joe, bea) = fixture(&db);
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.projects (id int PRIMARY KEY, owner uuid, name text);
             ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON public.projects TO authenticated USING (owner = (select auth.uid()));
             CREATE TABLE public.tasks (id int PRIMARY KEY, project_id int CONSTRAINT tasks_project_fk REFERENCES public.projects, title text);
             GRANT SELECT ON public.projects, public.tasks TO authenticated;",
        )
        .unwrap();
    db.connect(Caller::Superuser)
        .execute(
            "INSERT INTO public.projects VALUES (1, $1::text::uuid, 'joe''s'), (2, $2::text::uuid, 'bea''s')",
            &[&joe, &bea],
        )
        .unwrap();
    db.connect(Caller::Superuser).batch_execute("INSERT INTO public.tasks VALUES (10, 1, 'mine'), (11, 2, 'theirs')").unwrap();
    let mut ann = admin(&db);
    let imp = ann.start_ok("user", Some(&joe));
    let mut planes = fluxbase_tests::data_plane::Planes::connect(&db);
    let follow = |planes: &mut fluxbase_tests::data_plane::Planes, project: i64, imp: Option<&str>| {
        planes
            .follow(&ann.token, &serde_json::json!({"schema": "public", "table": "tasks", "foreign_key": "tasks_project_fk", "row": {"id": 1, "project_id": project}}), imp)
            .unwrap_or_else(|e| panic!("{}", admin::describe(&e)))
    };
    let own = follow(&mut planes, 1, Some(&imp));
    assert_eq!(own["rows"][0]["values"]["name"], "joe's", "{own}");
    assert_eq!((own["name"].as_str(), own["impersonation_id"].as_str()), (Some("projects"), Some(imp.as_str())));
    assert_eq!(own["followed"]["foreign_key"], "tasks_project_fk");
    let theirs = follow(&mut planes, 2, Some(&imp));
    assert_eq!(theirs["rows"], serde_json::json!([]), "joe may not see bea's project: {theirs}");
    assert_eq!(follow(&mut planes, 2, None)["rows"][0]["values"]["name"], "bea's", "unimpersonated, RLS hides nothing");
    // Recorded as the impersonation's intents, naming the key followed.
    let intents: Vec<serde_json::Value> = db
        .connect(Caller::Superuser)
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'impersonated.explorer.browse.intent' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(intents.len(), 2);
    assert_eq!(intents[1]["followed"]["foreign_key"], "tasks_project_fk", "{:?}", intents[1]);
    assert_eq!((intents[1]["table"].as_str(), intents[1]["claims_sub"].as_str()), (Some("projects"), Some(joe.as_str())));
}
