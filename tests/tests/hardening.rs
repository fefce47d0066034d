//! Security part 2: the install's pinned search path, row locks only the extension can
//! hold, `use_session` keeping the token out of later statements, keyed MACs in the SQL
//! runner's history, and a static scan of sql/ that keeps the install script naming
//! pg_catalog.
//!
//! Each test says in a comment what regression it catches.

use std::collections::BTreeSet;

use fluxbase_tests::admin::{self, as_dashboard, create_admin, login, PASSWORD as ADMIN_PASSWORD};
use fluxbase_tests::{connect_as, Caller, TestDb, TestRole, strings};
use postgres::{Client, SimpleQueryMessage};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}


/// The SQLSTATE of a call that must fail.
fn sqlstate_of<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// (SQLSTATE, message) of a call that must fail.
fn failure_of<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> (String, String) {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            let d = e.as_db_error().unwrap_or_else(|| panic!("not a server error: {e}"));
            (d.code().code().to_string(), d.message().to_string())
        }
    }
}

/// The rows of a simple-protocol query (every statement of `sql`), as text.
fn simple(client: &mut Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

/// The one value of a simple-protocol query that returns one row of one column.
fn simple_one(client: &mut Client, sql: &str) -> Option<String> {
    let rows = simple(client, sql).unwrap_or_else(|e| panic!("{sql}: {}", admin::describe(&e)));
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

/// A connection that fails a statement after 5 s instead of hanging on a lock.
fn with_deadline(mut client: Client) -> Client {
    client.batch_execute("SET statement_timeout = '5s'").unwrap();
    client
}

// ---------------------------------------------------------------------------------
// 1. The install searches no schema an attacker can write
// ---------------------------------------------------------------------------------

/// The plants: (name, parameters, result type, body after the log insert). Each logs
/// `<schema>.<name>` and then answers as pg_catalog's version would. All but
/// quote_ident, starts_with and the string_agg aggregate (pg_catalog has the exact
/// signature, and pg_catalog is searched first when the path does not name it) and
/// pg_extension_config_dump (only meaningful inside an extension script; it would win
/// over pg_catalog's for two unknown literals) are proved below to win over pg_catalog
/// when their schema is searched.
const PLANTED_FUNCTIONS: &[(&str, &str, &str, &str)] = &[
    ("format", "f text, a text", "text", "RETURN pg_catalog.format(f, a);"),
    ("format", "f text, a text, b text", "text", "RETURN pg_catalog.format(f, a, b);"),
    ("format", "f text, a text, b text, c text", "text", "RETURN pg_catalog.format(f, a, b, c);"),
    ("array_length", "a text[], d integer", "integer", "RETURN pg_catalog.array_length(a, d);"),
    ("cardinality", "a text[]", "integer", "RETURN pg_catalog.cardinality(a);"),
    ("quote_ident", "a text", "text", "RETURN pg_catalog.quote_ident(a);"),
    ("jsonb_build_object", "a text, b text", "jsonb", "RETURN pg_catalog.jsonb_build_object(a, b);"),
    ("jsonb_build_object", "a text, b text, c text, d text", "jsonb", "RETURN pg_catalog.jsonb_build_object(a, b, c, d);"),
    ("array_append", "a text[], b text", "text[]", "RETURN pg_catalog.array_append(a, b);"),
    ("starts_with", "a text, b text", "boolean", "RETURN pg_catalog.starts_with(a, b);"),
    ("concat", "a text, b text", "text", "RETURN pg_catalog.concat(a, b);"),
    ("array_to_string", "a text[], d text", "text", "RETURN pg_catalog.array_to_string(a, d);"),
    ("shobj_description", "o oid, c text", "text", "RETURN pg_catalog.shobj_description(o, c::pg_catalog.name);"),
    (
        "pg_extension_config_dump",
        "t text, c text",
        "void",
        "PERFORM pg_catalog.pg_extension_config_dump(t::pg_catalog.regclass, c); RETURN;",
    ),
];

/// What an attacker with CREATE on a schema plants there.
fn plants(schema: &str) -> String {
    let mut sql = String::new();
    for (name, params, returns, body) in PLANTED_FUNCTIONS {
        sql.push_str(&format!(
            "CREATE FUNCTION {schema}.{name}({params}) RETURNS {returns} LANGUAGE plpgsql SECURITY INVOKER AS $plant$
             BEGIN INSERT INTO public.hijack_log VALUES ('{schema}.{name}'); {body} END $plant$;\n"
        ));
    }
    sql.push_str(&format!(
        "CREATE FUNCTION {schema}.hijack_concat(a text[], b text) RETURNS text[] LANGUAGE plpgsql SECURITY INVOKER AS $plant$
         BEGIN INSERT INTO public.hijack_log VALUES ('{schema}.||'); RETURN pg_catalog.array_append(a, b); END $plant$;
         CREATE OPERATOR {schema}.|| (LEFTARG = text[], RIGHTARG = text, FUNCTION = {schema}.hijack_concat);
         CREATE FUNCTION {schema}.hijack_array_eq(a text[], b text[]) RETURNS boolean LANGUAGE plpgsql SECURITY INVOKER AS $plant$
         BEGIN INSERT INTO public.hijack_log VALUES ('{schema}.='); RETURN a OPERATOR(pg_catalog.=) b; END $plant$;
         CREATE OPERATOR {schema}.= (LEFTARG = text[], RIGHTARG = text[], FUNCTION = {schema}.hijack_array_eq);
         CREATE FUNCTION {schema}.hijack_string_agg_step(state text, v text, d text) RETURNS text LANGUAGE plpgsql SECURITY INVOKER AS $plant$
         BEGIN
             INSERT INTO public.hijack_log VALUES ('{schema}.string_agg');
             RETURN CASE WHEN state IS NULL THEN v ELSE state OPERATOR(pg_catalog.||) d OPERATOR(pg_catalog.||) v END;
         END $plant$;
         CREATE AGGREGATE {schema}.string_agg(text, text) (SFUNC = {schema}.hijack_string_agg_step, STYPE = text);\n"
    ));
    sql
}

/// Calls with the argument types the install uses, each naming the plant it reaches when
/// the plant's schema is searched.
const PROBES: &[(&str, &str)] = &[
    ("SELECT ARRAY['a']::text[] || 'b'::text", "||"),
    ("SELECT ARRAY['a']::text[] = ARRAY['a']::text[]", "="),
    ("SELECT format('%s', 'x')", "format"),
    ("SELECT format('%s %s', 'x'::text, 'y'::text)", "format"),
    ("SELECT format('%s %s %s', 'x'::text, 'y'::text, 'z'::text)", "format"),
    ("SELECT array_length(ARRAY['a']::text[], 1)", "array_length"),
    ("SELECT cardinality(ARRAY['a']::text[])", "cardinality"),
    ("SELECT jsonb_build_object('a'::text, 'b'::text)", "jsonb_build_object"),
    ("SELECT array_append(ARRAY['a']::text[], 'b'::text)", "array_append"),
    ("SELECT concat('a'::text, 'b'::text)", "concat"),
    ("SELECT array_to_string(ARRAY['a']::text[], ',')", "array_to_string"),
    ("SELECT shobj_description(1::oid, 'pg_authid')", "shobj_description"),
];

fn hijack_log(client: &mut Client) -> Vec<String> {
    client
        .query("SELECT name FROM public.hijack_log ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Catches: an install script that searches its creation schema (or public) for any
/// operator or function, e.g. bootstrap.sql losing its first `SET search_path =
/// pg_catalog, pg_temp`, or a part of the script that runs before it or resets it; and an
/// extension object created without its schema named (it would land in "postgres").
#[test]
fn an_install_runs_none_of_an_attackers_planted_operators_or_functions() {
    let db = TestDb::without_extension();
    let role = TestRole::create(&db, "hijacker", "");
    let hijacker = role.name.clone();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(&format!(
        "GRANT CREATE ON DATABASE {db} TO {hijacker};
         GRANT CREATE ON SCHEMA public TO {hijacker};",
        db = db.name
    ))
    .unwrap();

    // The hijacker makes the superuser's "$user" schema, which becomes CREATE
    // EXTENSION's creation schema, and plants in it and in public.
    let mut h = connect_as(&db.name, &hijacker).expect("connect as the hijacker");
    h.batch_execute(
        "CREATE SCHEMA postgres;
         CREATE TABLE public.hijack_log (name text);
         GRANT INSERT ON public.hijack_log TO PUBLIC;",
    )
    .unwrap();
    for schema in ["postgres", "public"] {
        h.batch_execute(&plants(schema)).unwrap_or_else(|e| panic!("plant in {schema}: {}", admin::describe(&e)));
    }
    drop(h);

    // The plants work when their schema is searched: each probe runs a plant as the
    // superuser, in either schema.
    let expected: BTreeSet<&str> = PROBES.iter().map(|(_, name)| *name).collect();
    for schema in ["postgres", "public"] {
        let mut probe = db.connect(Caller::Superuser);
        probe.batch_execute(&format!("SET search_path = {schema}")).unwrap();
        for (sql, _) in PROBES {
            probe.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {}", admin::describe(&e)));
        }
        let logged: BTreeSet<String> = hijack_log(&mut su).into_iter().collect();
        let wanted: BTreeSet<String> = expected.iter().map(|n| format!("{schema}.{n}")).collect();
        assert_eq!(logged, wanted, "the plants in {schema} are reached when {schema} is searched");
        su.batch_execute("TRUNCATE public.hijack_log").unwrap();
    }
    // With the path the installer has, the plants in "postgres" win too.
    let mut probe = db.connect(Caller::Superuser);
    probe.batch_execute("SET search_path = postgres, public; SELECT ARRAY['a'] || 'b'::text; SELECT format('%s', 'x')").unwrap();
    assert_eq!(hijack_log(&mut su), ["postgres.format", "postgres.||"]);
    su.batch_execute("TRUNCATE public.hijack_log").unwrap();
    drop(probe);

    // The install, as a superuser with the default path types it.
    let mut installer = db.connect(Caller::Superuser);
    let (path, creation): (String, String) = {
        let row = installer.query_one("SELECT current_setting('search_path'), current_schema()::text", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((path.as_str(), creation.as_str()), ("\"$user\", public", "postgres"), "the attack's premise");
    installer
        .batch_execute("CREATE EXTENSION fluxbase_admin")
        .unwrap_or_else(|e| panic!("CREATE EXTENSION: {}", admin::describe(&e)));
    let installed: i64 = su.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'fluxbase_admin'", &[]).unwrap().get(0);
    assert_eq!(installed, 1);

    let ran = hijack_log(&mut su);
    assert!(ran.is_empty(), "CREATE EXTENSION ran the attacker's code as the superuser: {ran:?}");

    // Every member object is in the extension's own schemas, none in "postgres" (the
    // creation schema) or public.
    let misplaced: Vec<String> = strings(&mut su, "SELECT o.type || ' ' || o.identity || ' in ' || o.schema
               FROM pg_depend d
               JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
               CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o
              WHERE d.deptype = 'e' AND e.extname = 'fluxbase_admin'
                AND o.schema IS NOT NULL AND o.schema NOT IN ('auth', 'dashboard_auth', 'fluxbase_admin')
              ORDER BY 1",
            &[]);
    assert!(misplaced.is_empty(), "extension objects outside its schemas: {misplaced:?}");
    let in_postgres: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_depend d
               JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
               CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o
              WHERE d.deptype = 'e' AND e.extname = 'fluxbase_admin' AND o.schema = 'postgres'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(in_postgres, 0);

    // The installed extension works, and still runs no plant: a sign-in seals the audit
    // chain (format, jsonb_build_object, || ...).
    create_admin(&db, "ann@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    assert!(login(&mut web, "ann@example.com", ADMIN_PASSWORD, "192.0.2.1").ok);
    let ran = hijack_log(&mut su);
    assert!(ran.is_empty(), "the installed functions ran the attacker's code: {ran:?}");
}

// ---------------------------------------------------------------------------------
// 2. Advisory keys block nothing; the row locks are the extension's alone
// ---------------------------------------------------------------------------------

/// Catches: any return to advisory locks (or any other lock a plain role can take) for
/// the audit chain, the admin set, the metric sampler, an impersonation start or a SQL
/// run; and the lock table or hold_lock/try_lock becoming usable by other roles.
#[test]
fn a_role_holding_every_old_advisory_key_blocks_nothing() {
    let db = TestDb::new();
    let first = create_admin(&db, "ann@example.com", "admin");
    let second = create_admin(&db, "bob@example.com", "admin");
    let mut web = with_deadline(db.connect(Caller::Dashboard));
    let token = login(&mut web, "ann@example.com", ADMIN_PASSWORD, "192.0.2.1").token().to_string();

    // A SQL run begun before the locks, so that its key can be held too.
    let run = &as_dashboard(
        &mut web,
        "SELECT ok, code, message, run_id::text, ticket FROM fluxbase_admin.start_sql_run($1, 'SELECT 1', false)",
        &[&token],
    )
    .unwrap()[0];
    assert!(run.get::<_, bool>(0), "start_sql_run: {} {}", run.get::<_, String>(1), run.get::<_, String>(2));
    let (run_id, ticket): (String, String) = (run.get(3), run.get(4));

    // A plain role holds every old key, for its transaction and for its session.
    let keys = "(VALUES (1179408450, 1), (1179408450, 2), (1179408450, 3),
                        (1179408451, hashtext($1)), (1179408451, hashtext($2)),
                        (1179408452, hashtext($3))) AS keys (k1, k2)";
    let mut app = db.connect(Caller::App);
    app.batch_execute("BEGIN").unwrap();
    app.execute(&format!("SELECT pg_advisory_xact_lock(k1, k2), pg_advisory_lock(k1, k2) FROM {keys}"), &[&first, &second, &run_id])
        .unwrap();
    let app_pid: i32 = app.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let distinct_keys: i64 = app.query_one(&format!("SELECT count(DISTINCT (k1, k2)) FROM {keys}"), &[&first, &second, &run_id]).unwrap().get(0);
    let mut su = with_deadline(db.connect(Caller::Superuser));
    let held: i64 = su
        .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1", &[&app_pid])
        .unwrap()
        .get(0);
    assert_eq!(held, distinct_keys, "the plain role holds every old key");
    // And an operator keeps what it may lock open as well: the lock table, read.
    let mut op_holder = db.connect(Caller::Operator);
    op_holder
        .batch_execute("BEGIN; SELECT * FROM dashboard_auth.locks; LOCK TABLE dashboard_auth.locks IN ACCESS SHARE MODE;")
        .unwrap();

    // A sign-in (seals the audit chain), on its own connection.
    let mut web2 = with_deadline(db.connect(Caller::Dashboard));
    let signed_in = login(&mut web2, "bob@example.com", ADMIN_PASSWORD, "192.0.2.2");
    assert!(signed_in.ok, "{signed_in:?}");

    // An operator disables the second admin (the admin-set lock).
    let mut op = with_deadline(db.connect(Caller::Operator));
    op.execute("SELECT dashboard_auth.operator_disable_admin('bob@example.com')", &[])
        .unwrap_or_else(|e| panic!("operator_disable_admin: {}", admin::describe(&e)));
    // And an admin enables it again through the dashboard (the same lock).
    as_dashboard(&mut web, "SELECT dashboard_auth.enable_admin($1, $2::text::uuid)", &[&token, &second])
        .unwrap_or_else(|e| panic!("enable_admin: {}", admin::describe(&e)));

    // The sampler's lock.
    let sampled: bool = su
        .query_one("SELECT fluxbase_admin.sample_metrics()", &[])
        .unwrap_or_else(|e| panic!("sample_metrics: {}", admin::describe(&e)))
        .get(0);
    assert!(sampled, "sample_metrics took a sample");

    // An impersonation start (the per-admin lock).
    let mut web3 = with_deadline(db.connect(Caller::Dashboard));
    let started = &as_dashboard(
        &mut web3,
        "SELECT ok, code, message FROM auth.start_impersonation($1, 'service', NULL, 'ticket 42')",
        &[&token],
    )
    .unwrap_or_else(|e| panic!("start_impersonation: {}", admin::describe(&e)))[0];
    assert!(started.get::<_, bool>(0), "{}: {}", started.get::<_, String>(1), started.get::<_, String>(2));

    // The SQL run whose key is held: claim, execute, finish, cancel; and a new one.
    let mut data = with_deadline(db.connect(Caller::Data));
    data.batch_execute("BEGIN").unwrap();
    data.execute("SELECT fluxbase_admin.claim_ticket($1, 'SELECT 1')", &[&ticket])
        .unwrap_or_else(|e| panic!("claim: {}", admin::describe(&e)));
    data.batch_execute("SAVEPOINT run").unwrap();
    let result: String = data
        .query_one("SELECT fluxbase_admin.execute_sql('SELECT 1')::text", &[])
        .unwrap_or_else(|e| panic!("execute_sql: {}", admin::describe(&e)))
        .get(0);
    assert!(result.contains("\"row_count\": 1"), "{result}");
    data.batch_execute("ROLLBACK TO SAVEPOINT run; COMMIT").unwrap();
    as_dashboard(
        &mut web,
        "SELECT fluxbase_admin.finish_sql_run($1, $2::text::uuid, '{\"status\": \"succeeded\", \"row_count\": 1}')",
        &[&token, &run_id],
    )
    .unwrap_or_else(|e| panic!("finish_sql_run: {}", admin::describe(&e)));
    let cancelled: bool = as_dashboard(&mut web, "SELECT fluxbase_admin.cancel_sql_run($1, $2::text::uuid)", &[&token, &run_id])
        .unwrap_or_else(|e| panic!("cancel_sql_run: {}", admin::describe(&e)))[0]
        .get(0);
    assert!(!cancelled, "a finished run has nothing to cancel");
    let again = &as_dashboard(&mut web, "SELECT ok FROM fluxbase_admin.start_sql_run($1, 'SELECT 2', false)", &[&token])
        .unwrap_or_else(|e| panic!("start_sql_run: {}", admin::describe(&e)))[0];
    assert!(again.get::<_, bool>(0));

    // The chain is sealed through all of it and verifies.
    let row = op
        .query_one("SELECT valid, pending, message FROM dashboard_auth.operator_verify_audit()", &[])
        .unwrap_or_else(|e| panic!("operator_verify_audit: {}", admin::describe(&e)));
    let (valid, pending, message): (bool, i64, String) = (row.get(0), row.get(1), row.get(2));
    assert!(valid, "{message}");
    assert_eq!(pending, 0, "every entry is sealed: {message}");

    // The plain role and the operator cannot take the new locks.
    let mut app2 = db.connect(Caller::App);
    let mut op2 = db.connect(Caller::Operator);
    for (who, client) in [("app_user", &mut app2), ("the operator", &mut op2)] {
        for sql in [
            "SELECT * FROM dashboard_auth.locks FOR UPDATE",
            "SELECT * FROM dashboard_auth.locks FOR NO KEY UPDATE",
            "SELECT * FROM dashboard_auth.locks FOR SHARE",
            "SELECT * FROM dashboard_auth.locks FOR KEY SHARE",
            "SELECT dashboard_auth.hold_lock('audit_chain')",
            "SELECT dashboard_auth.try_lock('audit_chain')",
            "SELECT dashboard_auth.hold_lock('admin_set')",
            "INSERT INTO dashboard_auth.locks VALUES ('audit_chain')",
            "LOCK TABLE dashboard_auth.locks IN SHARE MODE",
            "LOCK TABLE dashboard_auth.locks IN ROW EXCLUSIVE MODE",
        ] {
            // In a transaction, as LOCK TABLE needs one.
            let mut tx = client.transaction().unwrap();
            let result = tx.batch_execute(sql);
            assert_eq!(sqlstate_of(result), "42501", "{who}: {sql}");
            tx.rollback().unwrap();
        }
    }

    // The control: the lock these calls take is the row lock. While the extension's
    // owner holds it, the operator's call waits, and the deadline fails it (so a block
    // above fails the test rather than hanging it).
    let mut owner = db.connect(Caller::Superuser);
    owner.batch_execute("BEGIN; SELECT dashboard_auth.hold_lock('admin_set')").unwrap();
    op.batch_execute("SET statement_timeout = '1s'").unwrap();
    let blocked = op.execute("SELECT dashboard_auth.operator_disable_admin('bob@example.com')", &[]);
    assert_eq!(sqlstate_of(blocked), "57014", "held by the owner, the admin-set lock makes the operator wait");
    owner.batch_execute("ROLLBACK").unwrap();

    op_holder.batch_execute("COMMIT").unwrap();
    app.batch_execute("COMMIT; SELECT pg_advisory_unlock_all()").unwrap();
}

// ---------------------------------------------------------------------------------
// 3. use_session keeps the token out of later statements
// ---------------------------------------------------------------------------------

/// A dashboard-login connection switched to fluxbase_dashboard for the session, as a
/// psql user does it.
fn psql_dashboard(db: &TestDb) -> Client {
    let mut c = db.connect(Caller::Dashboard);
    c.batch_execute("SET ROLE fluxbase_dashboard").unwrap();
    c
}

/// Catches: check_session(NULL) not using the bound session (or using one bound in
/// another backend), end_session or logout(NULL) leaving the session bound, a failed
/// use_session binding anyway, and the token reaching the text of later statements.
#[test]
fn after_use_session_later_statements_cannot_read_the_token() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE FUNCTION public.snoop() RETURNS text LANGUAGE sql SECURITY INVOKER
             AS $$ SELECT current_query() || ' | ' || coalesce((SELECT string_agg(query, ' | ') FROM pg_stat_activity
                                                                 WHERE pid = pg_backend_pid()), '') $$;
         GRANT EXECUTE ON FUNCTION public.snoop() TO PUBLIC;
         CREATE TABLE public.t (id integer PRIMARY KEY, name text);
         INSERT INTO public.t VALUES (1, 'one');",
    )
    .unwrap();
    create_admin(&db, "ann@example.com", "admin");
    let token = login(&mut db.connect(Caller::Dashboard), "ann@example.com", ADMIN_PASSWORD, "192.0.2.1")
        .token()
        .to_string();
    let secret = token.split_once('_').map(|(_, b64)| b64.to_string()).expect("a prefixed token");
    assert!(secret.len() >= 40, "{token}");

    let mut c = psql_dashboard(&db);
    let pid: i32 = simple_one(&mut c, "SELECT pg_backend_pid()").unwrap().parse().unwrap();
    // A wrong token binds nothing.
    assert_eq!(sqlstate_of(simple(&mut c, "SELECT * FROM dashboard_auth.use_session('fbs_not_a_session')")), "28000");
    let (code, message) = failure_of(simple(&mut c, "SELECT (dashboard_auth.get_session(NULL)).email"));
    assert_eq!(code, "28000");
    assert!(message.contains("no session"), "{message}");

    let bound = simple(&mut c, &format!("SELECT email FROM dashboard_auth.use_session('{token}')")).unwrap();
    assert_eq!(bound, [[Some("ann@example.com".to_string())]]);

    // A later statement: what it can read of its own text and of this backend's activity.
    let rows = simple(&mut c, "SELECT public.snoop(), (dashboard_auth.get_session(NULL)).email").unwrap();
    let (snooped, email) = (rows[0][0].clone().unwrap(), rows[0][1].clone());
    assert!(snooped.contains("public.snoop()"), "the snoop reads the statement's text: {snooped}");
    assert!(!snooped.contains(&token) && !snooped.contains(&secret), "the token leaked to a later statement: {snooped}");
    assert_eq!(email.as_deref(), Some("ann@example.com"));
    // Nor does anyone who reads pg_stat_activity see it now.
    let activity: String = su.query_one("SELECT coalesce(query, '') FROM pg_stat_activity WHERE pid = $1", &[&pid]).unwrap().get(0);
    assert!(!activity.contains(&secret), "{activity}");

    // The dashboard's functions take NULL.
    let tables: i64 = simple_one(&mut c, "SELECT fluxbase_admin.list_tables(NULL) ->> 'total'").unwrap().parse().unwrap();
    assert!(tables >= 1, "catalog(NULL) lists public.t");
    let ticket = simple_one(&mut c, "SELECT fluxbase_admin.issue_ticket(NULL, 'browse', '{\"schema\":\"public\",\"table\":\"t\"}')").unwrap();
    assert!(ticket.starts_with("fbk_"), "{ticket}");
    let mut data = db.connect(Caller::Data);
    let mut tx = data.transaction().unwrap();
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap_or_else(|e| panic!("claim: {}", admin::describe(&e)));
    let page: String = tx.query_one("SELECT fluxbase_admin.browse()::text", &[]).unwrap().get(0);
    assert!(page.contains("one"), "{page}");
    tx.rollback().unwrap();

    // Another connection has no session bound.
    let mut other = psql_dashboard(&db);
    let (code, message) = failure_of(simple(&mut other, "SELECT (dashboard_auth.get_session(NULL)).email"));
    assert_eq!(code, "28000");
    assert!(message.contains("no session"), "{message}");

    // end_session unbinds; the session itself stays good.
    assert_eq!(simple_one(&mut c, "SELECT dashboard_auth.end_session()").as_deref(), Some("t"));
    let (code, message) = failure_of(simple(&mut c, "SELECT (dashboard_auth.get_session(NULL)).email"));
    assert_eq!(code, "28000");
    assert!(message.contains("no session"), "{message}");
    assert_eq!(simple_one(&mut c, "SELECT dashboard_auth.end_session()").as_deref(), Some("f"));
    let still: String = as_dashboard(&mut other, "SELECT (dashboard_auth.get_session($1)).email", &[&token]).unwrap()[0].get(0);
    assert_eq!(still, "ann@example.com");

    // A fresh connection without use_session.
    let mut fresh = psql_dashboard(&db);
    assert_eq!(sqlstate_of(simple(&mut fresh, "SELECT (dashboard_auth.get_session(NULL)).email")), "28000");

    // logout(NULL) ends the bound session and unbinds it.
    simple(&mut fresh, &format!("SELECT email FROM dashboard_auth.use_session('{token}')")).unwrap();
    simple(&mut fresh, "SELECT dashboard_auth.sign_out(NULL)").unwrap_or_else(|e| panic!("logout(NULL): {}", admin::describe(&e)));
    let (code, message) = failure_of(simple(&mut fresh, &format!("SELECT (dashboard_auth.get_session('{token}')).email")));
    assert_eq!(code, "28000");
    assert!(message.contains("invalid or has expired"), "the session ended: {message}");
    let (code, message) = failure_of(simple(&mut fresh, "SELECT (dashboard_auth.get_session(NULL)).email"));
    assert_eq!(code, "28000");
    assert!(message.contains("no session"), "logout(NULL) unbinds: {message}");
    assert_eq!(simple_one(&mut fresh, "SELECT dashboard_auth.end_session()").as_deref(), Some("f"));
    // A ticket for the ended session is refused.
    assert_eq!(sqlstate_of(as_dashboard(&mut other, "SELECT fluxbase_admin.issue_ticket($1, 'browse', '{\"schema\":\"public\",\"table\":\"t\"}')", &[&token])), "28000");
}

// ---------------------------------------------------------------------------------
// 4. The runner's history keeps a keyed MAC
// ---------------------------------------------------------------------------------

/// Catches: the history (or the tickets) keeping an unkeyed digest of the statement, which
/// lets anyone with a dump test password guesses offline; the MAC function becoming
/// callable by the operator, the data login or the dashboard; and the claim accepting a
/// statement other than the one recorded.
#[test]
fn a_dump_of_the_runner_history_cannot_test_a_password_guess() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let mut web = psql_dashboard(&db);
    let token = login(&mut db.connect(Caller::Dashboard), "ann@example.com", ADMIN_PASSWORD, "192.0.2.1")
        .token()
        .to_string();
    let target = format!("nobody_{}", short_id());
    let statement = format!("ALTER ROLE {target} PASSWORD 'hunter2'");
    let redacted = format!("ALTER ROLE {target} PASSWORD '***'");

    let row = web
        .query_one("SELECT ok, code, message, run_id::text, ticket FROM fluxbase_admin.start_sql_run($1, $2, true)", &[&token, &statement])
        .unwrap_or_else(|e| panic!("start_sql_run: {}", admin::describe(&e)));
    assert!(row.get::<_, bool>(0), "{}: {}", row.get::<_, String>(1), row.get::<_, String>(2));
    let (run_id, ticket): (String, String) = (row.get(3), row.get(4));

    // What a dump (or an operator) sees.
    let mut op = db.connect(Caller::Operator);
    let row = op
        .query_one("SELECT statement, statement_mac FROM dashboard_auth.sql_runs WHERE id = $1::text::uuid", &[&run_id])
        .unwrap();
    let (shown, mac): (String, Vec<u8>) = (row.get(0), row.get(1));
    assert_eq!(shown, redacted);
    assert_eq!(mac.len(), 32, "a 256-bit MAC");
    let sha256 = |op: &mut Client, text: &str| -> Vec<u8> {
        op.query_one("SELECT sha256(convert_to($1, 'UTF8'))", &[&text]).unwrap().get(0)
    };
    let domain_separated: Vec<u8> = op
        .query_one("SELECT sha256(convert_to('fluxbase_admin sql_runs statement', 'UTF8') || '\\x00'::bytea || convert_to($1, 'UTF8'))", &[&statement])
        .unwrap()
        .get(0);
    assert_ne!(mac, domain_separated, "the MAC is keyed, not a plain hash of the prefixed text");
    for guess in [statement.clone(), redacted.replace("'***'", "'hunter2'"), redacted.replace("'***'", "'password1'"), redacted.clone()] {
        assert_ne!(mac, sha256(&mut op, &guess), "the history's MAC is an unkeyed SHA-256 of {guess:?}");
    }
    let md5_of_statement: String = op.query_one("SELECT md5($1)", &[&statement]).unwrap().get(0);
    assert!(!mac.iter().map(|b| format!("{b:02x}")).collect::<String>().starts_with(&md5_of_statement[..16]));
    // Nothing else in the dumped tables holds the password either.
    let leaks: i64 = op
        .query_one(
            "SELECT (SELECT count(*) FROM dashboard_auth.sql_runs r WHERE r::text LIKE '%hunter2%')
                  + (SELECT count(*) FROM dashboard_auth.tickets t WHERE t::text LIKE '%hunter2%')
                  + (SELECT count(*) FROM dashboard_auth.audit_log a WHERE a::text LIKE '%hunter2%')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leaks, 0, "the password is in a dumped table");
    // The ticket's copy is the same MAC, not a digest of its own.
    let ticket_mac: Option<String> = op
        .query_one(
            "SELECT request ->> 'statement_mac' FROM dashboard_auth.tickets WHERE request ->> 'run_id' = $1",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(ticket_mac, Some(mac.iter().map(|b| format!("{b:02x}")).collect::<String>()));

    // Nobody outside the extension can compute the MAC to test a guess.
    assert_eq!(sqlstate_of(op.query("SELECT fluxbase_admin.statement_mac('x')", &[])), "42501", "operator");
    let mut data = db.connect(Caller::Data);
    assert_eq!(sqlstate_of(data.query("SELECT fluxbase_admin.statement_mac('x')", &[])), "42501", "data login");
    assert_eq!(sqlstate_of(web.query("SELECT fluxbase_admin.statement_mac('x')", &[])), "42501", "dashboard");
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate_of(app.query("SELECT fluxbase_admin.statement_mac('x')", &[])), "42501", "app_user");
    // Nor the real-time event key or MAC: with either, app code could forge events.
    for internal in ["fluxbase_admin.realtime_event_key()", "fluxbase_admin.realtime_event_mac('public', 't', 'insert', 1)"] {
        let sql = format!("SELECT {internal}");
        assert_eq!(sqlstate_of(op.query(&sql, &[])), "42501", "operator: {internal}");
        assert_eq!(sqlstate_of(data.query(&sql, &[])), "42501", "data login: {internal}");
        assert_eq!(sqlstate_of(web.query(&sql, &[])), "42501", "dashboard: {internal}");
        assert_eq!(sqlstate_of(app.query(&sql, &[])), "42501", "app_user: {internal}");
    }

    // The claim accepts only the very statement recorded.
    for other in [
        Some(format!("ALTER ROLE {target} PASSWORD 'hunter3'")),
        Some(redacted.clone()),
        Some(format!("{statement} ")),
        None,
    ] {
        let mut tx = data.transaction().unwrap();
        let result = tx.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&ticket, &other]);
        assert_eq!(sqlstate_of(result), "22023", "claim with {other:?}");
        tx.rollback().unwrap();
    }
    let mut tx = data.transaction().unwrap();
    tx.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&ticket, &statement])
        .unwrap_or_else(|e| panic!("claim with the recorded statement: {}", admin::describe(&e)));
    tx.rollback().unwrap();
}

// ---------------------------------------------------------------------------------
// 5. A static scan of sql/
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// An unquoted identifier or keyword, lowercased.
    Word(String),
    /// A "quoted identifier".
    Quoted(String),
    /// Any string literal except dollar-quoted ones.
    Str,
    /// A dollar-quoted string; its body is src[body.0..body.1].
    Dollar(usize, usize),
    Num,
    Param,
    Op(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    start: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_op_char(c: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?".contains(&c)
}

/// The end of a quoted literal or identifier opened at `open` (quote `q`).
fn skip_quoted(b: &[u8], open: usize, q: u8, backslashes: bool) -> usize {
    let mut j = open + 1;
    while j < b.len() {
        if backslashes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// SQL's tokens (as Postgres's lexer reads them, far enough for the scan), comments
/// dropped; offsets are from the start of `src` plus `base`.
fn lex(src: &str, base: usize) -> Vec<Tok> {
    let b = src.as_bytes();
    let n = b.len();
    let mut toks = Vec::new();
    let mut i = 0;
    let at = |j: usize| b.get(j).copied().unwrap_or(0);
    while i < n {
        let c = b[i];
        let start = i;
        let kind;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'-' && at(i + 1) == b'-' {
            i = src[i..].find('\n').map_or(n, |k| i + k);
            continue;
        } else if c == b'/' && at(i + 1) == b'*' {
            let mut depth = 0;
            while i < n {
                if b[i] == b'/' && at(i + 1) == b'*' {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && at(i + 1) == b'/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        } else if c == b'\'' {
            i = skip_quoted(b, i, b'\'', false);
            kind = Kind::Str;
        } else if matches!(c, b'e' | b'E') && at(i + 1) == b'\'' {
            i = skip_quoted(b, i + 1, b'\'', true);
            kind = Kind::Str;
        } else if matches!(c, b'b' | b'B' | b'x' | b'X' | b'n' | b'N') && at(i + 1) == b'\'' {
            i = skip_quoted(b, i + 1, b'\'', false);
            kind = Kind::Str;
        } else if matches!(c, b'u' | b'U') && at(i + 1) == b'&' && at(i + 2) == b'\'' {
            i = skip_quoted(b, i + 2, b'\'', false);
            kind = Kind::Str;
        } else if matches!(c, b'u' | b'U') && at(i + 1) == b'&' && at(i + 2) == b'"' {
            i = skip_quoted(b, i + 2, b'"', false);
            kind = Kind::Quoted(src[start + 3..i.saturating_sub(1).max(start + 3)].to_string());
        } else if c == b'"' {
            i = skip_quoted(b, i, b'"', false);
            kind = Kind::Quoted(src[start + 1..i.saturating_sub(1).max(start + 1)].replace("\"\"", "\""));
        } else if c == b'$' && at(i + 1).is_ascii_digit() {
            i += 1;
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
            kind = Kind::Param;
        } else if c == b'$' {
            let mut j = i + 1;
            while j < n && is_ident_char(b[j]) && b[j] != b'$' {
                j += 1;
            }
            if j < n && b[j] == b'$' && !at(i + 1).is_ascii_digit() {
                let tag = &src[i..=j];
                let body_start = j + 1;
                let body_end = src[body_start..].find(tag).map_or(n, |k| body_start + k);
                i = (body_end + tag.len()).min(n);
                kind = Kind::Dollar(base + body_start, base + body_end);
            } else {
                i += 1;
                kind = Kind::Punct('$');
            }
        } else if is_ident_start(c) {
            while i < n && is_ident_char(b[i]) {
                i += 1;
            }
            kind = Kind::Word(src[start..i].to_ascii_lowercase());
        } else if c.is_ascii_digit() || (c == b'.' && at(i + 1).is_ascii_digit()) {
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
            if at(i) == b'.' && at(i + 1) != b'.' {
                i += 1;
                while i < n && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if matches!(at(i), b'e' | b'E') && (at(i + 1).is_ascii_digit() || (matches!(at(i + 1), b'+' | b'-') && at(i + 2).is_ascii_digit())) {
                i += 2;
                while i < n && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            kind = Kind::Num;
        } else if c == b':' && matches!(at(i + 1), b':' | b'=') {
            i += 2;
            kind = Kind::Op(src[start..i].to_string());
        } else if c == b'.' && at(i + 1) == b'.' {
            i += 2;
            kind = Kind::Op("..".into());
        } else if is_op_char(c) {
            let mut j = i;
            while j < n && is_op_char(b[j]) {
                if (b[j] == b'-' && at(j + 1) == b'-') || (b[j] == b'/' && at(j + 1) == b'*') {
                    break;
                }
                j += 1;
            }
            // Postgres: a multi-character operator ends in + or - only if it also holds
            // one of ~ ! @ # % ^ & | ` ?.
            let mut op = &src[i..j];
            if op.len() > 1 && !op.bytes().any(|ch| b"~!@#%^&|`?".contains(&ch)) {
                while op.len() > 1 && (op.ends_with('+') || op.ends_with('-')) {
                    op = &op[..op.len() - 1];
                }
            }
            i += op.len().max(1);
            kind = Kind::Op(op.to_string());
        } else {
            i += 1;
            kind = Kind::Punct(c as char);
        }
        toks.push(Tok { kind, start: base + start });
    }
    toks
}

/// The file's statements, as token lists (split at top-level semicolons).
fn statements(toks: &[Tok]) -> Vec<&[Tok]> {
    toks.split(|t| t.kind == Kind::Punct(';')).filter(|s| !s.is_empty()).collect()
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

fn is_word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok { kind: Kind::Word(x), .. }) if x == w)
}

/// Words that may stand before `(` without being a function found through the search
/// path: SQL and PL/pgSQL syntax, and the parser's special forms (they name pg_catalog
/// themselves). `format` and every other function is not here: they must be qualified.
const SYNTAX_BEFORE_PAREN: &[&str] = &[
    "all", "and", "any", "array", "as", "begin", "between", "by", "case", "cast", "coalesce", "conflict", "constant",
    "declare", "default", "delete", "distinct", "do", "else", "elsif", "end", "except", "execute", "exists", "extract",
    "filter", "for", "foreach", "from", "greatest", "group", "grouping", "having", "if", "in", "insert", "intersect", "into",
    "is", "join", "lateral", "least", "limit", "loop", "materialized", "not", "nullif", "offset", "on", "only", "operator", "or",
    "order", "over", "overlay", "partition", "perform", "position", "query", "raise", "recursive", "return", "returning",
    "row", "select", "set", "some", "strict", "substring", "then", "trim", "union", "update", "using", "values", "when",
    "where", "while", "window", "with", "within",
    // type names with modifiers
    "bit", "char", "character", "dec", "decimal", "float", "interval", "numeric", "time", "timestamp", "varchar", "varying",
];

/// Operators that are looked up through the search path when written bare.
const CHECKED_OPERATORS: &[&str] = &[
    "||", "=", "<>", "!=", "<", ">", "<=", ">=", "~", "~*", "!~", "!~*", "~~", "~~*", "!~~", "!~~*",
];

/// RAISE ... USING option = value: syntax, not an operator.
const RAISE_OPTIONS: &[&str] = &["message", "detail", "hint", "errcode", "column", "constraint", "datatype", "table", "schema"];

/// Offences in a DO block's body: unqualified calls, bare operators, and constructs that
/// look up an operator by name (IN (...), NULLIF, BETWEEN, LIKE, IS DISTINCT FROM, a
/// simple CASE).
fn scan_do_body(src: &str, file: &str, body_start: usize, body_end: usize) -> Vec<String> {
    let toks = lex(&src[body_start..body_end], body_start);
    let mut offences = Vec::new();
    let mut say = |t: &Tok, what: String| offences.push(format!("{file}:{}: {what}", line_of(src, t.start)));
    let mut stmt_start = 0;
    for (i, t) in toks.iter().enumerate() {
        let prev = |k: usize| i.checked_sub(k).map(|j| &toks[j]);
        let next = toks.get(i + 1);
        // A PL/pgSQL statement starts after ; and after the words that open a block or a branch.
        if t.kind == Kind::Punct(';') || ["then", "else", "loop", "begin", "declare"].iter().any(|w| is_word(Some(t), w)) {
            stmt_start = i + 1;
            continue;
        }
        let first_of_stmt = toks.get(stmt_start);
        let calls = matches!(next, Some(Tok { kind: Kind::Punct('('), .. }));
        match &t.kind {
            Kind::Word(w) | Kind::Quoted(w) if calls => {
                let qualified = matches!(prev(1), Some(Tok { kind: Kind::Punct('.'), .. }));
                let syntax = matches!(t.kind, Kind::Word(_)) && SYNTAX_BEFORE_PAREN.contains(&w.as_str());
                if !qualified && !syntax {
                    say(t, format!("unqualified call {w}(...) in a DO block: name its schema (pg_catalog.{w})"));
                }
            }
            _ => {}
        }
        if let Kind::Word(w) = &t.kind {
            let after_loop_var = is_word(prev(2), "for") || is_word(prev(2), "foreach");
            let implicit = match w.as_str() {
                "in" if calls && !after_loop_var => Some("IN (...) compares with a bare ="),
                "nullif" if calls && !matches!(prev(1).map(|p| &p.kind), Some(Kind::Punct('.'))) => Some("NULLIF compares with a bare ="),
                "between" => Some("BETWEEN compares with bare >= and <="),
                "like" | "ilike" => Some("LIKE is the bare operator ~~"),
                "similar" => Some("SIMILAR TO is a bare regular-expression operator"),
                "distinct" if is_word(prev(1), "is") || (is_word(prev(1), "not") && is_word(prev(2), "is")) => {
                    Some("IS DISTINCT FROM compares with a bare =")
                }
                "case" if !is_word(next, "when") => Some("a simple CASE compares with a bare ="),
                _ => None,
            };
            if let Some(why) = implicit {
                say(t, format!("{why}: write OPERATOR(pg_catalog.x) instead"));
            }
        }
        if let Kind::Op(op) = &t.kind {
            if !CHECKED_OPERATORS.contains(&op.as_str()) {
                continue;
            }
            let in_operator_syntax = matches!(prev(1).map(|p| &p.kind), Some(Kind::Punct('.')))
                && matches!(prev(2).map(|p| &p.kind), Some(Kind::Word(_)))
                && matches!(prev(3).map(|p| &p.kind), Some(Kind::Punct('(')))
                && is_word(prev(4), "operator");
            let raise_option = op == "="
                && is_word(first_of_stmt, "raise")
                && matches!(prev(1).map(|p| &p.kind), Some(Kind::Word(o)) if RAISE_OPTIONS.contains(&o.as_str()));
            let diagnostics = op == "=" && is_word(first_of_stmt, "get");
            if !in_operator_syntax && !raise_option && !diagnostics {
                say(t, format!("bare operator {op} in a DO block: write OPERATOR(pg_catalog.{op})"));
            }
        }
    }
    offences
}

/// Offences of one file: (a) for bootstrap.sql, its first statement; (b) DO blocks; (c)
/// SECURITY DEFINER functions without the pinned search path in their header.
/// Returns the offences and (DO blocks, definer functions) seen.
fn scan_file(file: &str, src: &str) -> (Vec<String>, usize, usize) {
    let toks = lex(src, 0);
    let mut offences = Vec::new();
    let (mut do_blocks, mut definers) = (0, 0);
    for stmt in statements(&toks) {
        let line = line_of(src, stmt[0].start);
        let words: Vec<Option<&str>> = stmt
            .iter()
            .map(|t| match &t.kind {
                Kind::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        // (b)
        if words[0] == Some("do") {
            do_blocks += 1;
            match stmt.iter().find_map(|t| match t.kind {
                Kind::Dollar(s, e) => Some((s, e)),
                _ => None,
            }) {
                Some((s, e)) => offences.extend(scan_do_body(src, file, s, e)),
                None => offences.push(format!("{file}:{line}: a DO block without a dollar-quoted body cannot be checked")),
            }
            continue;
        }
        // (c)
        // CREATE [OR REPLACE] FUNCTION | PROCEDURE
        let creates_routine = words[0] == Some("create") && words.iter().take(4).any(|w| matches!(w, Some("function") | Some("procedure")));
        let alters_routine = words[0] == Some("alter") && matches!(words.get(1), Some(Some("function") | Some("procedure") | Some("routine")));
        if !(creates_routine || alters_routine) {
            continue;
        }
        // The header ends at AS followed by the body's string (or at the statement's end).
        let header_end = (0..stmt.len())
            .find(|&i| {
                is_word(stmt.get(i), "as") && matches!(stmt.get(i + 1).map(|t| &t.kind), Some(Kind::Dollar(..) | Kind::Str))
            })
            .unwrap_or(stmt.len());
        let header = &stmt[..header_end];
        let definer = header.windows(2).any(|w| is_word(Some(&w[0]), "security") && is_word(Some(&w[1]), "definer"));
        if !definer {
            continue;
        }
        let name_start = header.iter().position(|t| matches!(&t.kind, Kind::Word(w) if w == "function" || w == "procedure" || w == "routine")).map_or(0, |p| p + 1);
        let name_end = header.iter().skip(name_start).position(|t| t.kind == Kind::Punct('(')).map_or(header.len(), |p| name_start + p);
        let name: String = header[name_start..name_end]
            .iter()
            .map(|t| match &t.kind {
                Kind::Word(w) | Kind::Quoted(w) => w.clone(),
                Kind::Punct(c) => c.to_string(),
                _ => String::new(),
            })
            .collect();
        if alters_routine {
            offences.push(format!("{file}:{line}: ALTER FUNCTION {name} makes a definer outside its CREATE FUNCTION header"));
            continue;
        }
        definers += 1;
        let pinned = header.windows(7).any(|w| {
            is_word(Some(&w[0]), "set")
                && is_word(Some(&w[1]), "search_path")
                && (w[2].kind == Kind::Op("=".into()) || is_word(Some(&w[2]), "to"))
                && is_word(Some(&w[3]), "pg_catalog")
                && w[4].kind == Kind::Punct(',')
                && is_word(Some(&w[5]), "pg_temp")
                && !matches!(w[6].kind, Kind::Punct(',') | Kind::Punct('.'))
        }) || header.len() >= 6 && {
            // The clause may be the header's last tokens.
            let w = &header[header.len() - 6..];
            is_word(Some(&w[0]), "set")
                && is_word(Some(&w[1]), "search_path")
                && (w[2].kind == Kind::Op("=".into()) || is_word(Some(&w[2]), "to"))
                && is_word(Some(&w[3]), "pg_catalog")
                && w[4].kind == Kind::Punct(',')
                && is_word(Some(&w[5]), "pg_temp")
        };
        if !pinned {
            offences.push(format!(
                "{file}:{line}: SECURITY DEFINER function {name} does not declare SET search_path = pg_catalog, pg_temp in its header"
            ));
        }
    }
    (offences, do_blocks, definers)
}

/// (a): the first statement of bootstrap.sql, comments and blank lines skipped.
fn bootstrap_first_statement(src: &str) -> String {
    let toks = lex(src, 0);
    let first = statements(&toks)[0];
    let end = toks.iter().find(|t| t.kind == Kind::Punct(';') && t.start > first[0].start).map_or(src.len(), |t| t.start + 1);
    src[first[0].start..end].to_string()
}

/// Catches: bootstrap.sql no longer pinning the path first; a DO block of the install
/// calling a function or an operator without pg_catalog (defence in depth for the day the
/// pinned path is lost); and a SECURITY DEFINER function whose header does not pin the
/// path (any caller's schema could then shadow what it calls, with its owner's rights).
#[test]
fn install_statements_and_do_blocks_name_pg_catalog() {
    // The scanner itself finds each kind of offence.
    let planted = "-- a comment with format( and || in it\n\
        DO $x$ DECLARE v text := 'a' || 'b'; BEGIN\n\
          PERFORM format('%s', v);\n\
          IF v = 'ab' OR v IN ('x') THEN RAISE NOTICE 'ok' USING HINT = 'fine'; END IF;\n\
          PERFORM pg_catalog.format('%s', v OPERATOR(pg_catalog.||) 'c');\n\
        END $x$;\n\
        CREATE FUNCTION s.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;\n\
        CREATE FUNCTION s.g() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$ SELECT 1 $$;\n\
        CREATE FUNCTION s.h() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;\n\
        CREATE FUNCTION s.i() RETURNS int LANGUAGE sql SET search_path = pg_catalog, pg_temp SECURITY DEFINER AS 'SELECT 1';\n";
    let (found, do_blocks, definers) = scan_file("self-test.sql", planted);
    assert_eq!((do_blocks, definers), (1, 4));
    let expect = [
        "self-test.sql:2: bare operator ||",
        "self-test.sql:3: unqualified call format(",
        "self-test.sql:4: bare operator =",
        "self-test.sql:4: IN (...)",
        "self-test.sql:7: SECURITY DEFINER function s.f ",
        "self-test.sql:8: SECURITY DEFINER function s.g ",
    ];
    for e in expect {
        assert!(found.iter().any(|f| f.starts_with(e)), "the scanner misses {e:?}: {found:#?}");
    }
    assert_eq!(found.len(), expect.len(), "the scanner reports too much: {found:#?}");
    assert_eq!(bootstrap_first_statement("-- x\n\n/* y */\nSET search_path = pg_catalog, pg_temp;\nDO $$ $$;"), "SET search_path = pg_catalog, pg_temp;");
    assert_eq!(bootstrap_first_statement("-- SET search_path = pg_catalog, pg_temp;\nDO $$ $$;\nSET search_path = pg_catalog, pg_temp;"), "DO $$ $$;");

    // The repository's sql/.
    let dir = fluxbase_tests::repo_root().join("sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() > 5, "sql/ holds the install's files: {files:?}");
    let mut offences = Vec::new();
    let (mut do_blocks, mut definers) = (0, 0);
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        let file = format!("sql/{}", path.file_name().unwrap().to_string_lossy());
        if file == "sql/bootstrap.sql" {
            let first = bootstrap_first_statement(&src);
            if first != "SET search_path = pg_catalog, pg_temp;" {
                offences.push(format!("{file}:{}: the first statement is {first:?}, not SET search_path = pg_catalog, pg_temp;", line_of(&src, src.find(&first).unwrap_or(0))));
            }
        }
        let (found, d, s) = scan_file(&file, &src);
        offences.extend(found);
        do_blocks += d;
        definers += s;
    }
    for o in &offences {
        eprintln!("{o}");
    }
    assert!(do_blocks >= 2, "the scan found the install's DO blocks ({do_blocks})");
    assert!(definers >= 50, "the scan found the definer functions ({definers})");
    assert!(offences.is_empty(), "{} offence(s) in sql/:\n{}", offences.len(), offences.join("\n"));
}

#[test]
fn a_sign_in_follows_its_transaction_and_discard_all_forgets_it() {
    let db = TestDb::new();
    create_admin(&db, "ann@example.com", "admin");
    let token = login(&mut db.connect(Caller::Dashboard), "ann@example.com", ADMIN_PASSWORD, "192.0.2.1")
        .token()
        .to_string();
    let mut c = psql_dashboard(&db);
    let get_session = |c: &mut Client| simple(c, "SELECT (dashboard_auth.get_session()).email").map(|rows| rows[0][0].clone());

    // A sign-in in a transaction that rolls back is undone.
    simple(&mut c, &format!("BEGIN; SELECT email FROM dashboard_auth.use_session('{token}'); ROLLBACK")).unwrap();
    assert_eq!(sqlstate_of(get_session(&mut c)), "28000", "a rolled-back use_session stayed bound");

    // Bound for good, then a rolled-back end_session leaves it bound.
    simple(&mut c, &format!("SELECT email FROM dashboard_auth.use_session('{token}')")).unwrap();
    simple(&mut c, "BEGIN; SELECT dashboard_auth.end_session(); ROLLBACK").unwrap();
    assert_eq!(get_session(&mut c).unwrap().as_deref(), Some("ann@example.com"));

    // DISCARD ALL resets the session, the sign-in included: a pooler's next client
    // does not inherit it.
    simple(&mut c, "DISCARD ALL").unwrap();
    simple(&mut c, "SET ROLE fluxbase_dashboard").unwrap();
    assert_eq!(sqlstate_of(get_session(&mut c)), "28000", "DISCARD ALL left the session bound");
}
