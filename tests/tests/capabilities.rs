//! Capabilities (API 1.0): `dashboard_auth.get_session` lists what a session may do, computed
//! from the one matrix (`dashboard_auth.role_capabilities`) that the functions enforce.
//!
//! Every function the dashboard may call with a session (first argument `session_token`,
//! in auth, dashboard_auth or fluxbase_admin, executable by fluxbase_dashboard) has a row
//! in `cases()`: the capability it needs (or none: any session may) and a valid way to
//! call it. Each row is called as an admin and as a viewer; a call succeeds exactly when
//! the caller's get_session lists its capability, and is otherwise refused for that reason
//! (42501 "viewers are read-only", or a returned outcome with code 'forbidden').
//! A function found in pg_proc without a row fails the test, and so does a row whose
//! function is gone, so that a new function cannot slip past the matrix.

use std::collections::BTreeSet;

use fluxbase_tests::admin::{as_dashboard, create_admin, describe, login, PASSWORD};
use fluxbase_tests::authenticator::Authenticator;
use fluxbase_tests::{Caller, TestDb};
use postgres::Client;
use serde_json::Value;

const ADMIN_CAPABILITIES: [&str; 8] =
    ["edit", "export", "impersonate", "manage_users", "manage_admins", "change_settings", "run_writes", "manage_backends"];
const VIEWER_CAPABILITIES: [&str; 1] = ["export"];

/// Another password the policy accepts, for change_password.
const NEW_PASSWORD: &str = "amber lantern drifts south quietly";

// ---------------------------------------------------------------------------------
// The world every call runs in: one database with an admin, a viewer, an app user,
// tables to browse and an impersonation the admin keeps active.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Session {
    role: &'static str,
    email: String,
    token: String,
}

struct World {
    db: TestDb,
    su: Client,
    web: Client,
    admin: Session,
    admin_id: String,
    viewer: Session,
    /// An app user (role authenticated): the target of the admin's impersonation.
    joe: String,
    serial: u32,
}

fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl World {
    fn new() -> Self {
        let db = TestDb::new();
        let admin_id = create_admin(&db, "ann@example.com", "admin");
        create_admin(&db, "vic@example.com", "viewer");
        let mut su = db.connect(Caller::Superuser);
        su.batch_execute(
            "CREATE TABLE public.parent (id int PRIMARY KEY, name text);
             INSERT INTO public.parent VALUES (1, 'one');
             CREATE TABLE public.t (id int PRIMARY KEY, parent_id int CONSTRAINT t_parent_fkey REFERENCES public.parent, note text);
             INSERT INTO public.t VALUES (1, 1, 'a row');
             GRANT SELECT ON public.t, public.parent TO authenticated;",
        )
        .unwrap();
        let joe: String = su
            .query_one("INSERT INTO auth.users (email, confirmed_at) VALUES ('joe@example.com', now()) RETURNING id::text", &[])
            .unwrap()
            .get(0);
        let mut web = db.connect(Caller::Dashboard);
        let admin = Session { role: "admin", email: "ann@example.com".into(), token: sign_in(&mut web, "ann@example.com") };
        let viewer = Session { role: "viewer", email: "vic@example.com".into(), token: sign_in(&mut web, "vic@example.com") };
        World { db, su, web, admin, admin_id, viewer, joe, serial: 0 }
    }

    /// `SELECT` every row of `from` (a function call whose `$1` is the session token), as JSON.
    fn q(&mut self, token: &str, from: &str) -> Result<Vec<Value>, postgres::Error> {
        let rows = as_dashboard(&mut self.web, &format!("SELECT coalesce(json_agg(r), '[]')::text FROM {from} r"), &[&token])?;
        let text: String = rows[0].get(0);
        match serde_json::from_str(&text).expect("json_agg gives JSON") {
            Value::Array(items) => Ok(items),
            other => panic!("not an array: {other}"),
        }
    }

    fn next(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    /// An account of `role` of its own, signed in: for calls that end sessions, change the
    /// password or turn on two-factor sign-in, so that the main sessions are untouched.
    fn own_account(&mut self, role: &'static str) -> Session {
        let email = format!("own-{}-{role}@example.com", self.next());
        create_admin(&self.db, &email, role);
        let token = sign_in(&mut self.web, &email);
        Session { role, email, token }
    }

    /// An admin to manage (invited, so never the last active admin), optionally disabled.
    fn spare_admin(&mut self, disabled: bool) -> String {
        let email = format!("spare-{}@example.com", self.next());
        let id: String = self
            .su
            .query_one("SELECT admin_id::text FROM dashboard_auth.operator_create_admin($1, 'Spare Admin', 'admin')", &[&email])
            .unwrap()
            .get(0);
        if disabled {
            self.su.execute("SELECT dashboard_auth.operator_disable_admin($1)", &[&email]).unwrap();
        }
        id
    }

    /// An app user to manage, optionally banned.
    fn spare_user(&mut self, banned: bool) -> String {
        let email = format!("user-{}@example.com", self.next());
        self.su
            .query_one(
                "INSERT INTO auth.users (email, confirmed_at, banned_until, ban_reason)
                 VALUES ($1, now(), CASE WHEN $2 THEN now() + interval '1 day' END, CASE WHEN $2 THEN 'spam' END)
                 RETURNING id::text",
                &[&email, &banned],
            )
            .unwrap()
            .get(0)
    }

    /// The admin's active impersonation of joe, started when there is none (a call may
    /// have ended or replaced it).
    fn impersonation(&mut self) -> String {
        let active = self
            .su
            .query_opt(
                "SELECT id::text FROM auth.impersonation_sessions WHERE admin_id = $1::text::uuid AND active AND expires_at > now()",
                &[&self.admin_id],
            )
            .unwrap();
        if let Some(row) = active {
            return row.get(0);
        }
        let token = self.admin.token.clone();
        let joe = self.joe.clone();
        let rows = as_dashboard(
            &mut self.web,
            "SELECT ok, code, message, impersonation_id::text FROM auth.start_impersonation($1, 'user', $2, 'capabilities test')",
            &[&token, &joe],
        )
        .unwrap_or_else(|e| panic!("start the admin's impersonation: {}", describe(&e)));
        assert!(rows[0].get::<_, bool>(0), "start the admin's impersonation: {}", rows[0].get::<_, String>(2));
        rows[0].get(3)
    }

    /// A read-only SQL run of the session's own, begun and still running.
    fn own_run(&mut self, s: &Session) -> String {
        let rows = self.q(&s.token, "fluxbase_admin.start_sql_run($1, 'SELECT 1', false, NULL, NULL)").unwrap();
        assert_eq!(rows[0]["ok"], true, "begin a run as {}: {}", s.role, rows[0]);
        rows[0]["run_id"].as_str().unwrap().to_string()
    }

    /// An account of `role` with two-factor sign-in on: its session, authenticator and
    /// recovery codes. Confirmed with the previous step's code, leaving the current one.
    fn enrolled(&mut self, role: &'static str) -> (Session, Authenticator, Vec<String>) {
        let own = self.own_account(role);
        let app = self.begin_enrolment(&own);
        let rows = self.q(&own.token, &format!("dashboard_auth.confirm_two_factor($1, {})", lit(&app.code(-1)))).unwrap();
        assert_eq!(rows[0]["ok"], true, "confirm enrolment: {}", rows[0]);
        let recovery = rows[0]["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        (own, app, recovery)
    }

    fn begin_enrolment(&mut self, own: &Session) -> Authenticator {
        let rows = self.q(&own.token, &format!("dashboard_auth.start_two_factor($1, {})", lit(PASSWORD))).unwrap();
        Authenticator::new(rows[0]["secret"].as_str().unwrap())
    }
}

fn sign_in(web: &mut Client, email: &str) -> String {
    login(web, email, PASSWORD, "192.0.2.1").token().to_string()
}

// ---------------------------------------------------------------------------------
// The table: every session function, the capability it needs, and how to call it
// ---------------------------------------------------------------------------------

type Call = fn(&mut World, &Session) -> Result<Vec<Value>, postgres::Error>;

struct Case {
    /// `oid::regprocedure::text` with search_path = pg_catalog.
    function: &'static str,
    /// Tells apart the rows of one function (ticket's operations, start_sql_run's modes).
    label: &'static str,
    /// The capability the call needs, one of get_session's words; None: any session may.
    capability: Option<&'static str>,
    call: Call,
}

fn case(function: &'static str, label: &'static str, capability: Option<&'static str>, call: Call) -> Case {
    Case { function, label, capability, call }
}

const TICKET: &str = "fluxbase_admin.issue_ticket(text,text,jsonb,uuid)";
const SQL_BEGIN: &str = "fluxbase_admin.start_sql_run(text,text,boolean,text,uuid)";

fn cases() -> Vec<Case> {
    vec![
        // dashboard_auth: who the session is, admins, settings, the audit log
        case("dashboard_auth.get_session(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.get_session($1)")),
        case("dashboard_auth.use_session(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.use_session($1)")),
        case("dashboard_auth.list_admins(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.list_admins($1)")),
        case("dashboard_auth.invite_admin(text,text,text,text,interval)", "", Some("manage_admins"), |w, s| {
            let email = format!("invitee-{}@example.com", w.next());
            w.q(&s.token, &format!("dashboard_auth.invite_admin($1, {}, 'Invitee', 'viewer', interval '1 hour')", lit(&email)))
        }),
        case("dashboard_auth.set_admin_role(text,uuid,text)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.set_admin_role($1, {}, 'viewer')", lit(&target)))
        }),
        case("dashboard_auth.disable_admin(text,uuid)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.disable_admin($1, {})", lit(&target)))
        }),
        case("dashboard_auth.enable_admin(text,uuid)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(true);
            w.q(&s.token, &format!("dashboard_auth.enable_admin($1, {})", lit(&target)))
        }),
        case("dashboard_auth.delete_admin(text,uuid)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.delete_admin($1, {})", lit(&target)))
        }),
        case("dashboard_auth.unlock_admin(text,uuid)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.unlock_admin($1, {})", lit(&target)))
        }),
        case("dashboard_auth.reset_admin_password(text,uuid,interval)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.reset_admin_password($1, {}, interval '1 hour')", lit(&target)))
        }),
        case("dashboard_auth.reissue_invite(text,uuid,interval)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.reissue_invite($1, {}, interval '1 hour')", lit(&target)))
        }),
        case("dashboard_auth.disable_admin_two_factor(text,uuid)", "", Some("manage_admins"), |w, s| {
            let target = w.spare_admin(false);
            w.q(&s.token, &format!("dashboard_auth.disable_admin_two_factor($1, {})", lit(&target)))
        }),
        case("dashboard_auth.list_settings(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.list_settings($1)")),
        case("dashboard_auth.set_setting(text,text,text)", "", Some("change_settings"), |w, s| {
            w.q(&s.token, "dashboard_auth.set_setting($1, 'lockout.duration', '20m')")
        }),
        case("dashboard_auth.reset_setting(text,text)", "", Some("change_settings"), |w, s| {
            w.q(&s.token, "dashboard_auth.reset_setting($1, 'lockout.duration')")
        }),
        case("dashboard_auth.list_audit(text,text,text,text,timestamp with time zone,timestamp with time zone,text,integer,text)", "", None, |w, s| {
            w.q(&s.token, "dashboard_auth.list_audit($1, NULL, 'admin.', NULL, now() - interval '1 day', NULL, 'accounts', 10, NULL)")
        }),
        case("dashboard_auth.export_audit(text,timestamp with time zone,timestamp with time zone,text)", "", Some("export"), |w, s| {
            w.q(&s.token, "dashboard_auth.export_audit($1, now() - interval '1 day', NULL, 'csv')")
        }),
        case("dashboard_auth.verify_audit(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.verify_audit($1)")),
        // dashboard_auth: the session's own account (on accounts or sessions of their own)
        case("dashboard_auth.get_two_factor(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.get_two_factor($1)")),
        case("dashboard_auth.start_two_factor(text,text)", "", None, |w, s| {
            let own = w.own_account(s.role);
            w.q(&own.token, &format!("dashboard_auth.start_two_factor($1, {})", lit(PASSWORD)))
        }),
        case("dashboard_auth.confirm_two_factor(text,text)", "", None, |w, s| {
            let own = w.own_account(s.role);
            let app = w.begin_enrolment(&own);
            w.q(&own.token, &format!("dashboard_auth.confirm_two_factor($1, {})", lit(&app.code(0))))
        }),
        case("dashboard_auth.regenerate_recovery_codes(text,text,text)", "", None, |w, s| {
            let (own, app, _) = w.enrolled(s.role);
            w.q(&own.token, &format!("dashboard_auth.regenerate_recovery_codes($1, {}, {})", lit(PASSWORD), lit(&app.code(0))))
        }),
        case("dashboard_auth.disable_two_factor(text,text,text)", "", None, |w, s| {
            let (own, _, recovery) = w.enrolled(s.role);
            w.q(&own.token, &format!("dashboard_auth.disable_two_factor($1, {}, {})", lit(PASSWORD), lit(&recovery[0])))
        }),
        case("dashboard_auth.change_password(text,text,text)", "", None, |w, s| {
            let own = w.own_account(s.role);
            w.q(&own.token, &format!("dashboard_auth.change_password($1, {}, {})", lit(PASSWORD), lit(NEW_PASSWORD)))
        }),
        case("dashboard_auth.sign_out(text)", "", None, |w, s| {
            let second = sign_in(&mut w.web, &s.email);
            w.q(&second, "dashboard_auth.sign_out($1)")
        }),
        case("dashboard_auth.list_sessions(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.list_sessions($1)")),
        case("dashboard_auth.get_session_health(text)", "", None, |w, s| w.q(&s.token, "dashboard_auth.get_session_health($1)")),
        case("dashboard_auth.revoke_session(text,uuid)", "", None, |w, s| {
            let own = w.own_account(s.role);
            let second = sign_in(&mut w.web, &own.email);
            let ids = w.q(&second, "dashboard_auth.list_sessions($1)").unwrap();
            let other = ids.iter().find(|r| r["current"] == false).unwrap()["session_id"].as_str().unwrap().to_string();
            w.q(&second, &format!("dashboard_auth.revoke_session($1, {})", lit(&other)))
        }),
        case("dashboard_auth.sign_out_others(text)", "", None, |w, s| {
            let own = w.own_account(s.role);
            sign_in(&mut w.web, &own.email);
            w.q(&own.token, "dashboard_auth.sign_out_others($1)")
        }),
        // auth: app users (manage_users) and impersonation (impersonate)
        case("auth.list_user_roles(text)", "", Some("manage_users"), |w, s| w.q(&s.token, "auth.list_user_roles($1)")),
        case("auth.unlock_user(text,uuid)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.unlock_user($1, {})", lit(&user)))
        }),
        case("auth.list_users(text,text,text,text,text,boolean,integer,text)", "", Some("manage_users"), |w, s| {
            w.q(&s.token, "auth.list_users($1, 'example', NULL, NULL, 'email', false, 10, NULL)")
        }),
        case("auth.get_user(text,uuid)", "", Some("manage_users"), |w, s| {
            let joe = w.joe.clone();
            w.q(&s.token, &format!("auth.get_user($1, {})", lit(&joe)))
        }),
        case("auth.invite_user(text,text,text,jsonb,interval)", "", Some("manage_users"), |w, s| {
            let email = format!("invited-user-{}@example.com", w.next());
            w.q(&s.token, &format!("auth.invite_user($1, {}, 'authenticated', '{{\"plan\": \"free\"}}', interval '1 day')", lit(&email)))
        }),
        case("auth.set_user_role(text,uuid,text)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.set_user_role($1, {}, 'authenticated')", lit(&user)))
        }),
        case("auth.update_user_metadata(text,uuid,jsonb,jsonb)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.update_user_metadata($1, {}, '{{\"tier\": 2}}', '{{\"name\": \"Sam\"}}')", lit(&user)))
        }),
        case("auth.reset_user_password(text,uuid,interval)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.reset_user_password($1, {}, interval '1 hour')", lit(&user)))
        }),
        case("auth.revoke_user_sessions(text,uuid)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.revoke_user_sessions($1, {})", lit(&user)))
        }),
        case("auth.ban_user(text,uuid,timestamp with time zone,text)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.ban_user($1, {}, now() + interval '1 day', 'spam')", lit(&user)))
        }),
        case("auth.unban_user(text,uuid)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(true);
            w.q(&s.token, &format!("auth.unban_user($1, {})", lit(&user)))
        }),
        case("auth.delete_user(text,uuid)", "", Some("manage_users"), |w, s| {
            let user = w.spare_user(false);
            w.q(&s.token, &format!("auth.delete_user($1, {})", lit(&user)))
        }),
        case("auth.start_impersonation(text,text,text,text,interval)", "", Some("impersonate"), |w, s| {
            let joe = w.joe.clone();
            w.q(&s.token, &format!("auth.start_impersonation($1, 'user', {}, 'ticket 42', interval '10 minutes')", lit(&joe)))
        }),
        case("auth.end_impersonation(text)", "", None, |w, s| {
            w.impersonation();
            w.q(&s.token, "auth.end_impersonation($1)")
        }),
        case("auth.get_impersonation(text)", "", None, |w, s| {
            w.impersonation();
            w.q(&s.token, "auth.get_impersonation($1)")
        }),
        case("auth.list_impersonations(text,text,text,timestamp with time zone,timestamp with time zone,integer,text)", "", None, |w, s| {
            w.q(&s.token, "auth.list_impersonations($1, NULL, 'joe@example.com', now() - interval '1 day', NULL, 10, NULL)")
        }),
        // fluxbase_admin: metrics, the catalog, real time
        case("fluxbase_admin.get_metrics(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.get_metrics($1)")),
        case("fluxbase_admin.list_backends(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_backends($1)")),
        case("fluxbase_admin.list_activity(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_activity($1)")),
        case("fluxbase_admin.get_connections(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.get_connections($1)")),
        case("fluxbase_admin.list_pools(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_pools($1)")),
        case("fluxbase_admin.list_statements(text,integer)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_statements($1, 5)")),
        case("fluxbase_admin.list_table_sizes(text,text,integer)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.list_table_sizes($1, 'public', 10)")
        }),
        case("fluxbase_admin.list_schema_sizes(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_schema_sizes($1)")),
        case("fluxbase_admin.list_metric_history(text,timestamp with time zone,text)", "since", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.list_metric_history($1, now() - interval '1 hour')")
        }),
        case("fluxbase_admin.list_metric_history(text,timestamp with time zone,text)", "period", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.list_metric_history($1, period => '24h')")
        }),
        case("fluxbase_admin.list_maintenance(text,text,integer)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.list_maintenance($1, 'public', 10)")
        }),
        case("fluxbase_admin.list_index_usage(text,text,boolean,integer)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.list_index_usage($1, 'public', false, 10)")
        }),
        case("fluxbase_admin.list_bloat(text,text,integer)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_bloat($1, 'public', 10)")),
        case("fluxbase_admin.cancel_backend(text,integer)", "an app connection", Some("manage_backends"), |w, s| {
            let mut app = w.db.connect(Caller::App);
            let pid: i32 = app.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            w.q(&s.token, &format!("fluxbase_admin.cancel_backend($1, {pid})"))
        }),
        case("fluxbase_admin.terminate_backend(text,integer)", "an app connection", Some("manage_backends"), |w, s| {
            let mut app = w.db.connect(Caller::App);
            let pid: i32 = app.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            w.q(&s.token, &format!("fluxbase_admin.terminate_backend($1, {pid})"))
        }),
        case("fluxbase_admin.list_tables(text,text,integer,text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_tables($1)")),
        case("fluxbase_admin.describe_table(text,text,text)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.describe_table($1, 'public', 't')")
        }),
        case("fluxbase_admin.plan_browse(text,text,text,jsonb,jsonb,text,integer,text)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.plan_browse($1, 'public', 't', NULL, NULL, NULL, 10, NULL)")
        }),
        case("fluxbase_admin.set_realtime(text,text,text,boolean)", "", Some("change_settings"), |w, s| {
            w.q(&s.token, "fluxbase_admin.set_realtime($1, 'public', 't', true)")
        }),
        case("fluxbase_admin.get_realtime(text,text,text)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.get_realtime($1, 'public', 't')")
        }),
        case("fluxbase_admin.list_realtime_tables(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_realtime_tables($1)")),
        // fluxbase_admin: tickets for the data plane, one row per operation
        case(TICKET, "browse", None, |w, s| {
            w.q(&s.token, r#"fluxbase_admin.issue_ticket($1, 'browse', '{"schema": "public", "table": "t"}', NULL)"#)
        }),
        case(TICKET, "follow", None, |w, s| {
            w.q(
                &s.token,
                r#"fluxbase_admin.issue_ticket($1, 'follow', '{"schema": "public", "table": "t", "foreign_key": "t_parent_fkey", "row": {"id": 1, "parent_id": 1}}', NULL)"#,
            )
        }),
        case(TICKET, "export", Some("export"), |w, s| {
            w.q(&s.token, r#"fluxbase_admin.issue_ticket($1, 'export', '{"schema": "public", "table": "t"}', NULL)"#)
        }),
        case(TICKET, "edit", Some("edit"), |w, s| {
            w.q(
                &s.token,
                r#"fluxbase_admin.issue_ticket($1, 'edit', '{"schema": "public", "table": "t", "operation": "update", "payload": {"keys": [{"id": 1}], "set": {"note": "edited"}}}', NULL)"#,
            )
        }),
        case(TICKET, "cell", None, |w, s| {
            w.q(&s.token, r#"fluxbase_admin.issue_ticket($1, 'cell', '{"schema": "public", "table": "t", "column": "note", "key": {"id": 1}}', NULL)"#)
        }),
        case(TICKET, "copy", Some("export"), |w, s| {
            w.q(&s.token, r#"fluxbase_admin.issue_ticket($1, 'copy', '{"schema": "public", "table": "t", "keys": [{"id": 1}]}', NULL)"#)
        }),
        case(TICKET, "revert (an edit's audit entry)", Some("edit"), |w, s| {
            let entry: i64 = w
                .su
                .query_one(
                    r#"SELECT dashboard_auth.audit('admin', NULL, 'ann@example.com', 'explorer.update', 'relation', 'public.t',
                           '{"schema": "public", "table": "t", "operation": "update", "before": [], "after": []}', NULL, NULL)"#,
                    &[],
                )
                .unwrap()
                .get(0);
            w.q(&s.token, &format!(r#"fluxbase_admin.issue_ticket($1, 'revert', '{{"audit_id": {entry}}}', NULL)"#))
        }),
        case(TICKET, "impersonate (the admin's impersonation)", Some("impersonate"), |w, s| {
            let id = w.impersonation();
            w.q(&s.token, &format!(r#"fluxbase_admin.issue_ticket($1, 'impersonate', '{{"read_only": true}}', {})"#, lit(&id)))
        }),
        case(TICKET, "browse with the admin's impersonation", Some("impersonate"), |w, s| {
            let id = w.impersonation();
            w.q(&s.token, &format!(r#"fluxbase_admin.issue_ticket($1, 'browse', '{{"schema": "public", "table": "t"}}', {})"#, lit(&id)))
        }),
        // fluxbase_admin: the SQL runner
        case(SQL_BEGIN, "read", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.start_sql_run($1, 'SELECT * FROM public.t', false, NULL, NULL)")
        }),
        case(SQL_BEGIN, "allow_writes", Some("run_writes"), |w, s| {
            w.q(&s.token, "fluxbase_admin.start_sql_run($1, 'UPDATE public.t SET note = note', true, NULL, NULL)")
        }),
        case(SQL_BEGIN, "read with the admin's impersonation", Some("impersonate"), |w, s| {
            let id = w.impersonation();
            w.q(&s.token, &format!("fluxbase_admin.start_sql_run($1, 'SELECT * FROM public.t', false, NULL, {})", lit(&id)))
        }),
        case("fluxbase_admin.finish_sql_run(text,uuid,jsonb)", "a run of its own", None, |w, s| {
            let run = w.own_run(s);
            w.q(&s.token, &format!(r#"fluxbase_admin.finish_sql_run($1, {}, '{{"row_count": 1, "affected": null, "truncated": false}}')"#, lit(&run)))
        }),
        case("fluxbase_admin.cancel_sql_run(text,uuid)", "a run of its own", None, |w, s| {
            let run = w.own_run(s);
            w.q(&s.token, &format!("fluxbase_admin.cancel_sql_run($1, {})", lit(&run)))
        }),
        case("fluxbase_admin.list_sql_runs(text,text,integer,text)", "", None, |w, s| {
            w.q(&s.token, "fluxbase_admin.list_sql_runs($1, 'select', 10)")
        }),
        // Snippets are each session's own, viewers' too.
        case("fluxbase_admin.list_sql_snippets(text)", "", None, |w, s| w.q(&s.token, "fluxbase_admin.list_sql_snippets($1)")),
        case("fluxbase_admin.save_sql_snippet(text,text,text)", "", None, |w, s| {
            let name = format!("snippet {}", w.next());
            w.q(&s.token, &format!("fluxbase_admin.save_sql_snippet($1, {}, 'SELECT 1')", lit(&name)))
        }),
        case("fluxbase_admin.delete_sql_snippet(text,uuid)", "a snippet of its own", None, |w, s| {
            let name = format!("snippet {}", w.next());
            let saved = w.q(&s.token, &format!("fluxbase_admin.save_sql_snippet($1, {}, 'SELECT 1')", lit(&name))).unwrap();
            let id = saved[0]["snippet_id"].as_str().unwrap().to_string();
            w.q(&s.token, &format!("fluxbase_admin.delete_sql_snippet($1, {})", lit(&id)))
        }),
    ]
}

// ---------------------------------------------------------------------------------
// What a call did
// ---------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Returned without error, and no outcome row says ok = false.
    Succeeded,
    /// Refused for capability reasons: 42501 "viewers are read-only ...", or an outcome
    /// row with ok = false and code 'forbidden'.
    Refused,
    /// Anything else: another error, or an outcome row refusing for another reason (the
    /// table's arguments are meant to be valid, so that is a failure of the call too).
    Failed(String),
}

fn outcome(result: Result<Vec<Value>, postgres::Error>) -> Outcome {
    match result {
        Err(e) => match e.as_db_error() {
            Some(d) if d.code().code() == "42501" && d.message().starts_with("viewers are read-only") => Outcome::Refused,
            _ => Outcome::Failed(describe(&e)),
        },
        Ok(rows) => {
            for row in &rows {
                if let (Some(ok), Some(code)) = (row.get("ok").and_then(Value::as_bool), row.get("code")) {
                    if !ok {
                        return if code == "forbidden" {
                            Outcome::Refused
                        } else {
                            Outcome::Failed(format!("returned ok = false: {row}"))
                        };
                    }
                }
            }
            Outcome::Succeeded
        }
    }
}

fn get_session(w: &mut World, s: &Session) -> Vec<String> {
    let token = s.token.clone();
    let rows = as_dashboard(&mut w.web, "SELECT role, capabilities FROM dashboard_auth.get_session($1)", &[&token]).unwrap();
    assert_eq!(rows[0].get::<_, String>(0), s.role);
    rows[0].get(1)
}

/// The session functions as pg_proc has them: in auth, dashboard_auth or fluxbase_admin,
/// executable by fluxbase_dashboard, with `session_token` as the first argument.
fn session_functions(su: &mut Client) -> BTreeSet<String> {
    let mut tx = su.transaction().unwrap();
    tx.batch_execute("SET LOCAL search_path = pg_catalog").unwrap();
    let rows = tx
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin')
                AND p.proargnames[1] = 'session_token'
                AND has_function_privilege('fluxbase_dashboard', p.oid, 'EXECUTE')",
            &[],
        )
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn whoami_lists_what_each_role_may_do() {
    let mut w = World::new();
    let admin = w.admin.clone();
    let viewer = w.viewer.clone();
    assert_eq!(get_session(&mut w, &admin), ADMIN_CAPABILITIES);
    assert_eq!(get_session(&mut w, &viewer), VIEWER_CAPABILITIES);
    // The same matrix the functions enforce.
    let matrix: Vec<Vec<String>> = ["admin", "viewer"]
        .iter()
        .map(|role| w.su.query_one("SELECT dashboard_auth.role_capabilities($1)", &[role]).unwrap().get(0))
        .collect();
    assert_eq!(matrix, [ADMIN_CAPABILITIES.to_vec(), VIEWER_CAPABILITIES.to_vec()]);
}

#[test]
fn the_table_covers_every_session_function_and_names_only_whoamis_capabilities() {
    let mut w = World::new();
    let in_catalog = session_functions(&mut w.su);
    let cases = cases();
    let in_table: BTreeSet<String> = cases.iter().map(|c| c.function.to_string()).collect();
    let mut problems = Vec::new();
    for missing in in_catalog.difference(&in_table) {
        problems.push(format!("{missing} takes a session but has no row in capabilities.rs: add it, with its capability"));
    }
    for gone in in_table.difference(&in_catalog) {
        problems.push(format!("{gone} has a row in capabilities.rs but is no longer a session function of fluxbase_dashboard"));
    }
    let admin = w.admin.clone();
    let words = get_session(&mut w, &admin);
    for c in &cases {
        if let Some(capability) = c.capability {
            if !words.iter().any(|word| word == capability) {
                problems.push(format!("{} [{}] names {capability}, which is not one of get_session's capabilities {words:?}", c.function, c.label));
            }
        }
    }
    let rows: BTreeSet<(&str, &str)> = cases.iter().map(|c| (c.function, c.label)).collect();
    assert_eq!(rows.len(), cases.len(), "two rows with the same function and label");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_session_call_succeeds_exactly_when_whoami_lists_its_capability() {
    let mut w = World::new();
    let admin = w.admin.clone();
    let viewer = w.viewer.clone();
    let may = [(admin.clone(), get_session(&mut w, &admin)), (viewer.clone(), get_session(&mut w, &viewer))];
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for c in cases() {
        for (session, capabilities) in &may {
            let allowed = c.capability.is_none_or(|needed| capabilities.iter().any(|word| word == needed));
            let expected = if allowed { Outcome::Succeeded } else { Outcome::Refused };
            let got = outcome((c.call)(&mut w, session));
            report.push(format!("{:<7} {} [{}] needs {:?}: {got:?}", session.role, c.function, c.label, c.capability));
            if got != expected {
                problems.push(format!(
                    "as {} ({capabilities:?}): {} [{}] needs {:?}, so it should have {}, but: {got:?}",
                    session.role,
                    c.function,
                    c.label,
                    c.capability,
                    if allowed { "succeeded" } else { "been refused for capability reasons (42501 viewers are read-only / code forbidden)" },
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{} call(s) disagree with get_session:\n{}\n\nall calls:\n{}", problems.len(), problems.join("\n"), report.join("\n"));
}
