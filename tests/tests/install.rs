//! CREATE EXTENSION, DROP EXTENSION and the roles, as a psql user does them.

use fluxbase_tests::{Caller, TestDb};

const SCHEMAS: [&str; 3] = ["auth", "dashboard_auth", "fluxbase_admin"];
const ROLES: [&str; 5] = ["fluxbase_dashboard", "fluxbase_operator", "anon", "authenticated", "service_role"];

fn schema_names(client: &mut postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1) ORDER BY 1",
            &[&SCHEMAS.to_vec()],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// How many objects in the database are members of the extension.
fn member_count(client: &mut postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
              WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                AND e.extname = 'fluxbase_admin'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn create_extension_makes_the_three_schemas_and_the_roles() {
    let db = TestDb::without_extension();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("CREATE EXTENSION fluxbase_admin").unwrap();
    assert_eq!(schema_names(&mut su), ["auth", "dashboard_auth", "fluxbase_admin"]);
    let version: String = su
        .query_one("SELECT extversion FROM pg_extension WHERE extname = 'fluxbase_admin'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, "0.1.0");

    for role in ROLES {
        let row = su
            .query_one("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
            .unwrap_or_else(|e| panic!("role {role} is missing: {e}"));
        let (can_login, is_super): (bool, bool) = (row.get(0), row.get(1));
        assert!(!can_login && !is_super, "{role} must be a group role without LOGIN or SUPERUSER");
    }
    let (bypass, inherit): (bool, bool) = {
        let row = su.query_one("SELECT rolbypassrls, rolinherit FROM pg_roles WHERE rolname = 'service_role'", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert!(bypass, "service_role bypasses RLS, as in Supabase");
    assert!(!inherit);
    let inherits: bool = su.query_one("SELECT bool_or(rolinherit) FROM pg_roles WHERE rolname IN ('anon', 'authenticated')", &[]).unwrap().get(0);
    assert!(!inherits, "anon and authenticated are NOINHERIT");
}

#[test]
fn a_second_database_installs_cleanly_and_reports_the_roles_it_adopted() {
    // The template's install already made the roles: this is the cluster's second database.
    let db = TestDb::without_extension();
    let (mut su, notices) = db.connect_collecting_notices(Caller::Superuser);
    su.batch_execute("CREATE EXTENSION fluxbase_admin").unwrap();
    assert_eq!(schema_names(&mut su).len(), 3);

    let notices = notices.lock().unwrap().join("\n");
    assert!(notices.contains("adopted existing roles"), "no report of adopted roles in: {notices}");
    for role in ROLES {
        assert!(notices.contains(role), "{role} missing from: {notices}");
    }
    // The test cluster's dashboard login is a member of fluxbase_dashboard: the report names it.
    assert!(notices.contains("fluxbase_dashboard (made by an earlier install; members: fluxbase_web)"), "{notices}");
}

#[test]
fn a_role_the_extension_did_not_make_is_adopted_unchanged_and_named_as_foreign() {
    // Roles are cluster-wide; simulate a cluster where another tool made `anon` by
    // clearing the extension's marker, and restore it afterwards.
    let db = TestDb::without_extension();
    let (mut su, notices) = db.connect_collecting_notices(Caller::Superuser);
    let comment: Option<String> = su
        .query_one("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'anon'", &[])
        .unwrap()
        .get(0);
    su.batch_execute("COMMENT ON ROLE anon IS NULL").unwrap();
    let created = su.batch_execute("CREATE EXTENSION fluxbase_admin");
    su.execute("SELECT 1", &[]).unwrap();
    if let Some(comment) = comment {
        su.execute(&format!("COMMENT ON ROLE anon IS '{}'", comment.replace('\'', "''")), &[]).unwrap();
    }
    created.unwrap();
    let notices = notices.lock().unwrap().join("\n");
    assert!(notices.contains("anon (not made by fluxbase_admin;"), "{notices}");
}

#[test]
fn drop_extension_removes_everything_and_create_works_again() {
    let db = TestDb::without_extension();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("CREATE EXTENSION fluxbase_admin").unwrap();
    assert!(member_count(&mut su) > 5);

    su.batch_execute("DROP EXTENSION fluxbase_admin").unwrap();
    assert!(schema_names(&mut su).is_empty(), "schemas left behind after DROP EXTENSION");
    let leftovers: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin') OR p.proname = 'get_library_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);

    su.batch_execute("CREATE EXTENSION fluxbase_admin").unwrap();
    assert_eq!(schema_names(&mut su).len(), 3);
    su.batch_execute("DROP EXTENSION fluxbase_admin; CREATE EXTENSION fluxbase_admin").unwrap();
    assert_eq!(schema_names(&mut su).len(), 3);
}

#[test]
fn drop_extension_refuses_while_an_application_policy_calls_auth_uid() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.notes (id bigint PRIMARY KEY, owner uuid NOT NULL, body text);
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_notes ON public.notes USING (owner = auth.uid());",
    )
    .unwrap();
    let err = su.batch_execute("DROP EXTENSION fluxbase_admin").unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code(), &postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST);
    assert!(db_err.detail().unwrap_or("").contains("policy own_notes"), "{db_err:?}");
    // Nothing was dropped.
    assert_eq!(schema_names(&mut su).len(), 3);
}

#[test]
fn a_foreign_auth_schema_is_refused_and_left_untouched() {
    let db = TestDb::without_extension();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE SCHEMA auth;
         CREATE TABLE auth.users (id int PRIMARY KEY, email text);
         INSERT INTO auth.users VALUES (1, 'kept@example.com');",
    )
    .unwrap();
    let err = su.batch_execute("CREATE EXTENSION fluxbase_admin").unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code(), &postgres::error::SqlState::DUPLICATE_SCHEMA);
    assert!(db_err.message().contains("schema auth already exists"), "{}", db_err.message());
    assert!(db_err.hint().unwrap_or("").contains("ALTER SCHEMA auth RENAME"), "{db_err:?}");

    let email: String = su.query_one("SELECT email FROM auth.users WHERE id = 1", &[]).unwrap().get(0);
    assert_eq!(email, "kept@example.com");
    let installed: i64 = su.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'fluxbase_admin'", &[]).unwrap().get(0);
    assert_eq!(installed, 0);
    let others: i64 = su
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname IN ('dashboard_auth', 'fluxbase_admin')", &[])
        .unwrap()
        .get(0);
    assert_eq!(others, 0, "a refused install leaves nothing behind");
}
