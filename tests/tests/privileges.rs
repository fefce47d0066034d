//! Who may call what (architecture.md, "Callers and privileges"), checked over the
//! catalog for every function, so later functions are held to the same rules.

use fluxbase_tests::{Caller, TestDb, strings};

#[test]
fn every_security_definer_function_pins_its_search_path() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let unpinned: Vec<String> = strings(&mut su, "SELECT p.oid::regprocedure::text FROM pg_proc p
               JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'fluxbase_admin'
              WHERE p.prosecdef
                AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%')",
            &[]);
    assert!(unpinned.is_empty(), "SECURITY DEFINER without a pinned search_path: {unpinned:?}");
}

#[test]
fn public_may_execute_none_of_the_extensions_functions() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let open: Vec<String> = strings(&mut su, "SELECT p.oid::regprocedure::text FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin')
                -- The claim helpers are everyone's, as in PostgREST and Supabase.
                AND p.oid NOT IN ('auth.uid()'::regprocedure, 'auth.role()'::regprocedure,
                                  'auth.email()'::regprocedure, 'auth.jwt()'::regprocedure,
                                  'auth.claim(text)'::regprocedure)
                AND (p.proacl IS NULL
                     OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))",
            &[]);
    assert!(open.is_empty(), "executable by PUBLIC: {open:?}");
}

#[test]
fn app_roles_reach_the_claim_helpers_but_not_the_admin_schemas() {
    let db = TestDb::new();
    let mut app = db.connect(Caller::App);
    app.batch_execute("SET ROLE authenticated").unwrap();
    let uid: Option<String> = app.query_one("SELECT auth.uid()::text", &[]).unwrap().get(0);
    assert_eq!(uid, None);
    let err = app.query_one("SELECT fluxbase_admin.get_library_version()", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    let schema_usage: Vec<(String, bool)> = app
        .query(
            "SELECT n, has_schema_privilege(current_user, n, 'USAGE')
               FROM unnest(ARRAY['dashboard_auth', 'fluxbase_admin']) n",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(schema_usage.iter().all(|(_, usable)| !usable), "{schema_usage:?}");
}

#[test]
fn the_dashboard_login_role_has_no_rights_until_it_switches_role() {
    let db = TestDb::new();
    let mut web = db.connect(Caller::Dashboard);
    // NOINHERIT: as itself, the login role cannot use what fluxbase_dashboard may.
    let err = web.query_one("SELECT fluxbase_admin.get_library_version()", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    let mut tx = web.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
    let version: String = tx.query_one("SELECT fluxbase_admin.get_library_version()", &[]).unwrap().get(0);
    assert_eq!(version, "0.1.0");
    tx.commit().unwrap();

    // Nothing of the switch survives the transaction.
    let role: String = web.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(role, "fluxbase_web");

    // It may switch to fluxbase_dashboard only: not to the app's roles, nor to the roles
    // of the data plane.
    for role in ["anon", "authenticated", "service_role", "fluxbase_explorer", "fluxbase_operator", "fluxbase_data"] {
        let mut tx = web.transaction().unwrap();
        let err = tx.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap_err();
        assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "SET ROLE {role}: {err}");
    }
}

/// A role's direct memberships, by name.
fn memberships(client: &mut postgres::Client, role: &str) -> Vec<String> {
    client
        .query(
            "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
               JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 ORDER BY 1",
            &[&role],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn each_login_of_the_two_planes_holds_exactly_the_roles_of_its_plane() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    // The dashboard login: NOINHERIT, a member of fluxbase_dashboard only, not of the
    // app's roles, directly or otherwise.
    assert_eq!(memberships(&mut su, "fluxbase_web"), ["fluxbase_dashboard"]);
    // The data login: NOINHERIT, a member of the roles the data plane switches to, and of
    // nothing of the dashboard plane.
    assert_eq!(memberships(&mut su, "fluxbase_data"), ["anon", "authenticated", "fluxbase_explorer", "service_role"]);
    for (login, foreign) in [
        ("fluxbase_web", ["anon", "authenticated", "service_role", "fluxbase_explorer", "fluxbase_operator"]),
        ("fluxbase_data", ["fluxbase_dashboard", "fluxbase_operator", "fluxbase_web", "pg_read_all_data", "pg_write_all_data"]),
    ] {
        let row = su
            .query_one("SELECT rolinherit, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = $1", &[&login])
            .unwrap();
        assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2), row.get::<_, bool>(3)), (false, false, false, false), "{login}");
        for role in foreign {
            let member: bool = su.query_one("SELECT pg_has_role($1, $2, 'MEMBER')", &[&login, &role]).unwrap().get(0);
            assert!(!member, "{login} is a member of {role}");
        }
    }
    // The explorer role: not a login, not a superuser, sees every row (BYPASSRLS), and a
    // member of nothing.
    let row = su
        .query_one("SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = 'fluxbase_explorer'", &[])
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2), row.get::<_, bool>(3)), (false, false, false, true));
    assert!(memberships(&mut su, "fluxbase_explorer").is_empty());
    // And the extension's own check of both logins finds nothing wrong.
    for (login, plane) in [("fluxbase_web", "dashboard"), ("fluxbase_data", "data")] {
        let problems: Vec<String> = strings(&mut su, "SELECT role || ': ' || problem FROM fluxbase_admin.list_login_problems($1, $2)", &[&login, &plane]);
        assert!(problems.is_empty(), "{login}: {problems:?}");
    }
}

#[test]
fn the_data_login_may_call_only_claim_and_record_result_of_the_dashboards_functions() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let definer: Vec<String> = strings(&mut su, "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin') AND p.prosecdef
                AND has_function_privilege('fluxbase_data', p.oid, 'EXECUTE')
              ORDER BY 1",
            &[]);
    assert_eq!(definer, ["fluxbase_admin.claim_ticket(text,text)", "fluxbase_admin.record_result(jsonb)"]);
    // The roles the data plane switches to (and app code runs as) may call none of the
    // dashboard's definer functions (the app's own sign-in functions in auth are theirs);
    // the explorer role none of the extension's.
    for (role, schemas) in [
        ("fluxbase_explorer", vec!["auth", "dashboard_auth", "fluxbase_admin"]),
        ("anon", vec!["dashboard_auth", "fluxbase_admin"]),
        ("authenticated", vec!["dashboard_auth", "fluxbase_admin"]),
        ("service_role", vec!["dashboard_auth", "fluxbase_admin"]),
    ] {
        let reached: Vec<String> = strings(&mut su, "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname::text = ANY ($2) AND p.prosecdef
                    AND has_function_privilege($1, p.oid, 'EXECUTE')",
                &[&role, &schemas]);
        assert!(reached.is_empty(), "{role}: {reached:?}");
    }
    // As itself, the data login is refused the dashboard's functions and cannot become
    // the dashboard's role.
    let mut data = db.connect(Caller::Data);
    for call in [
        "SELECT fluxbase_admin.issue_ticket('fbs_x', 'browse', '{}')",
        "SELECT * FROM dashboard_auth.sign_in('a@example.com', 'x')",
        "SELECT fluxbase_admin.plan_browse('fbs_x', 'public', 't')",
        "SELECT * FROM fluxbase_admin.start_sql_run('fbs_x', 'SELECT 1', false, NULL, NULL)",
        "SET ROLE fluxbase_dashboard",
        "SET ROLE fluxbase_operator",
    ] {
        let err = data.batch_execute(call).unwrap_err();
        assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "fluxbase_data: {call}: {err}");
    }
    // The dashboard's role may run none of the data plane's work.
    let mut web = db.connect(Caller::Dashboard);
    for call in DATA_PLANE_CALLS {
        let mut tx = web.transaction().unwrap();
        tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
        let err = tx.query(call, &[]).unwrap_err();
        assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "fluxbase_dashboard: {call}: {err}");
    }
}

/// The data plane's entry points: nobody but the data login calls them.
const DATA_PLANE_CALLS: [&str; 6] = [
    "SELECT fluxbase_admin.claim_ticket('fbk_x')",
    "SELECT fluxbase_admin.browse()",
    "SELECT fluxbase_admin.edit()",
    "SELECT * FROM fluxbase_admin.open_export()",
    "SELECT fluxbase_admin.execute_sql('SELECT 1')",
    "SELECT auth.apply_impersonation()",
];

#[test]
fn an_operator_reaches_the_admin_schemas() {
    let db = TestDb::new();
    let mut ops = db.connect(Caller::Operator);
    let version: String = ops.query_one("SELECT fluxbase_admin.get_library_version()", &[]).unwrap().get(0);
    assert_eq!(version, "0.1.0");
}

const ADMIN_TABLES: [&str; 6] = ["dashboard_users", "sessions", "login_attempts", "one_time_tokens", "settings", "audit_log"];

#[test]
fn the_dashboard_role_reads_no_table_and_no_hash_directly() {
    let db = TestDb::new();
    let mut web = db.connect(Caller::Dashboard);
    for table in ADMIN_TABLES {
        let mut tx = web.transaction().unwrap();
        tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
        let err = tx.query(&format!("SELECT * FROM dashboard_auth.{table}"), &[]).unwrap_err();
        assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{table}: {err}");
    }
}

#[test]
fn the_dashboard_role_cannot_reach_break_glass_or_internal_functions() {
    let db = TestDb::new();
    let mut web = db.connect(Caller::Dashboard);
    for call in [
        "SELECT * FROM dashboard_auth.operator_create_admin('x@example.com', 'X')",
        "SELECT * FROM dashboard_auth.operator_reset_admin_password('x@example.com')",
        "SELECT * FROM dashboard_auth.operator_list_admins()",
        "SELECT * FROM dashboard_auth.operator_verify_audit()",
        "SELECT dashboard_auth.hash_password('x')",
        "SELECT dashboard_auth.verify_password('x', NULL)",
        "SELECT dashboard_auth.new_token('fbs')",
        "SELECT dashboard_auth.check_session('fbs_x')",
        "SELECT dashboard_auth.audit('admin', NULL, 'forged', 'admin.login')",
        "SELECT dashboard_auth.audit_seal(true)",
        "SELECT dashboard_auth.count_failure(gen_random_uuid(), NULL)",
    ] {
        let mut tx = web.transaction().unwrap();
        tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
        let err = tx.query(call, &[]).unwrap_err();
        assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{call}: {err}");
    }
}

#[test]
fn the_dashboard_role_may_call_exactly_the_pre_session_and_session_checked_functions() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let granted: Vec<String> = strings(&mut su, "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'dashboard_auth'
                AND has_function_privilege('fluxbase_dashboard', p.oid, 'EXECUTE')
              ORDER BY 1",
            &[]);
    let expected = [
        "change_password",
        "complete_setup",
        "confirm_two_factor",
        "create_setup_link",
        "delete_admin",
        "disable_admin",
        "disable_admin_two_factor",
        "disable_two_factor",
        "enable_admin",
        "end_session",
        "export_audit",
        "get_link",
        "get_session",
        "get_session_health",
        "get_two_factor",
        "invite_admin",
        "list_admins",
        "list_audit",
        "list_audit_groups",
        "list_sessions",
        "list_settings",
        "needs_setup",
        "redeem_link",
        "regenerate_recovery_codes",
        "reissue_invite",
        "reset_admin_password",
        "reset_setting",
        "revoke_session",
        "set_admin_role",
        "set_setting",
        "sign_in",
        "sign_in_second_factor",
        "sign_out",
        "sign_out_others",
        "start_two_factor",
        "unlock_admin",
        "use_session",
        "verify_audit",
    ];
    assert_eq!(granted, expected);
    // Each of them checks a session token, or is one of the pre-session functions.
    let definer: Vec<String> = strings(&mut su, "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'dashboard_auth' AND has_function_privilege('fluxbase_dashboard', p.oid, 'EXECUTE')
                AND NOT p.prosecdef",
            &[]);
    assert!(definer.is_empty(), "granted but not SECURITY DEFINER: {definer:?}");
}

#[test]
fn app_roles_reach_nothing_of_the_dashboard() {
    let db = TestDb::new();
    // Every function named here exists: a refusal is not a missing function.
    let mut su = db.connect(Caller::Superuser);
    for signature in [
        "fluxbase_admin.claim_ticket(text,text)", "fluxbase_admin.browse()", "fluxbase_admin.edit()", "fluxbase_admin.open_export(text)",
        "fluxbase_admin.issue_ticket(text, text, jsonb, uuid)", "fluxbase_admin.record_result(jsonb)", "fluxbase_admin.execute_sql(text)",
        "auth.apply_impersonation()", "fluxbase_admin.read_page(jsonb, text, jsonb)",
        "fluxbase_admin.build_browse(jsonb, text, text, text, integer, text)",
    ] {
        let found: Option<String> = su.query_one("SELECT to_regprocedure($1)::text", &[&signature]).unwrap().get(0);
        assert!(found.is_some(), "{signature} does not exist");
    }
    let calls = [
        "SELECT * FROM dashboard_auth.sign_in('a@example.com', 'x')",
        "SELECT dashboard_auth.needs_setup()",
        "SELECT * FROM dashboard_auth.dashboard_users",
        "SELECT * FROM dashboard_auth.audit_log",
        "SELECT * FROM dashboard_auth.tickets",
        "SELECT fluxbase_admin.issue_ticket('x', 'browse', '{}')",
        "SELECT fluxbase_admin.record_result('{}')",
        "SELECT fluxbase_admin.read_page('{}', 'none', NULL)",
        "SELECT fluxbase_admin.build_browse('{}', NULL, NULL, NULL, 1, NULL)",
        DATA_PLANE_CALLS[0],
        DATA_PLANE_CALLS[1],
        DATA_PLANE_CALLS[2],
        DATA_PLANE_CALLS[3],
        DATA_PLANE_CALLS[4],
        DATA_PLANE_CALLS[5],
    ];
    // The application's own login role, as itself.
    let mut app = db.connect(Caller::App);
    for call in calls {
        let err = app.query(call, &[]).unwrap_err();
        assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "app_user: {call}: {err}");
    }
    // And each app role, switched to from a superuser's connection.
    for role in ["anon", "authenticated", "service_role"] {
        for call in calls {
            let mut tx = su.transaction().unwrap();
            tx.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
            let err = tx.query(call, &[]).unwrap_err();
            assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{role}: {call}: {err}");
        }
    }
}

#[test]
fn operators_read_every_admin_table() {
    let db = TestDb::new();
    let mut ops = db.connect(Caller::Operator);
    for table in ADMIN_TABLES {
        ops.query(&format!("SELECT * FROM dashboard_auth.{table} LIMIT 1"), &[])
            .unwrap_or_else(|e| panic!("operator cannot read {table}: {e}"));
    }
}
