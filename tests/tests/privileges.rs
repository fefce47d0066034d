//! Who may call what (architecture.md, "Callers and privileges"), checked over the
//! catalog for every function, so later functions are held to the same rules.

use fluxbase_tests::{Caller, TestDb};

#[test]
fn every_security_definer_function_pins_its_search_path() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let unpinned: Vec<String> = su
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
               JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'fluxbase_admin'
              WHERE p.prosecdef
                AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unpinned.is_empty(), "SECURITY DEFINER without a pinned search_path: {unpinned:?}");
}

#[test]
fn public_may_execute_none_of_the_extensions_functions() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let open: Vec<String> = su
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin')
                AND (p.proacl IS NULL
                     OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(open.is_empty(), "executable by PUBLIC: {open:?}");
}

#[test]
fn app_roles_reach_the_claim_helpers_but_not_the_admin_schemas() {
    let db = TestDb::new();
    let mut app = db.connect(Caller::App);
    app.batch_execute("SET ROLE authenticated").unwrap();
    let uid: Option<String> = app.query_one("SELECT auth.uid()::text", &[]).unwrap().get(0);
    assert_eq!(uid, None);
    let err = app.query_one("SELECT fluxbase_admin.library_version()", &[]).unwrap_err();
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
    let err = web.query_one("SELECT fluxbase_admin.library_version()", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    let mut tx = web.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
    let version: String = tx.query_one("SELECT fluxbase_admin.library_version()", &[]).unwrap().get(0);
    assert_eq!(version, "0.1.0");
    tx.commit().unwrap();

    // Nothing of the switch survives the transaction.
    let role: String = web.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(role, "fluxbase_web");
}

#[test]
fn an_operator_reaches_the_admin_schemas() {
    let db = TestDb::new();
    let mut ops = db.connect(Caller::Operator);
    let version: String = ops.query_one("SELECT fluxbase_admin.library_version()", &[]).unwrap().get(0);
    assert_eq!(version, "0.1.0");
}
