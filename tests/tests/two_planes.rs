//! The rule of the two planes (architecture.md, "Two planes"): the application's code
//! never runs with the dashboard's powers.
//!
//! An app role, mallory (CREATE on schema public, nothing else), plants one function,
//! `public.mallory_plant(place)`, in every place Postgres runs app code while the explorer
//! reads or writes a table: a view's column, a BEFORE trigger, a column default, a
//! domain's CHECK, casts from and to an app type, an IMMUTABLE function the planner folds,
//! a policy, an index expression, a CHECK constraint, a generated column, a rule and the
//! operators of a DEFAULT btree operator class. The plant records where it ran and as whom
//! (a row in public.mallory_log in read-write transactions, a WARNING always: read tickets
//! make the transaction READ ONLY), then tries every harm it can, before and after
//! `RESET ROLE`. Admins and viewers then browse, count, export, follow and edit those
//! tables through tickets, plain and impersonated, as `fluxbase serve` does, and the test
//! checks that the plant ran everywhere it can be reached and that every harm failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fluxbase_tests::admin::{as_dashboard, create_admin, describe, login, PASSWORD};
use fluxbase_tests::data_plane::{claimed, export_claimed, Planes};
use fluxbase_tests::postgres::{self, Client};
use fluxbase_tests::{strings, Caller, TestDb, TestRole};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// The scene: a database, mallory, and the places where her code runs
// ---------------------------------------------------------------------------------

/// What mallory, an app role with CREATE on schema public, runs to plant her code.
/// MALLORY stands for her role's name (roles are cluster-wide: each test has its own).
const PLANT: &str = r#"
CREATE TABLE public.mallory_log (place text, who text);
GRANT INSERT ON public.mallory_log TO PUBLIC;

-- Every harm mallory wants, each tried on its own; one that works warns "mallory HARM".
CREATE FUNCTION public.mallory_harms(place text, how text) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $harms$
BEGIN
    BEGIN ALTER ROLE MALLORY SUPERUSER; RAISE WARNING 'mallory HARM at %: superuser%', place, how;
    EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN INSERT INTO dashboard_auth.dashboard_users (email, name, role) VALUES (place || pg_catalog.replace(how, ' ', '.') || '@mallory.example', 'Mallory', 'admin');
          RAISE WARNING 'mallory HARM at %: dashboard user%', place, how;
    EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN CREATE TABLE IF NOT EXISTS public.stolen AS SELECT password_hash FROM dashboard_auth.dashboard_users;
          RAISE WARNING 'mallory HARM at %: stolen%', place, how;
    EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE fluxbase_data PASSWORD 'owned'; RAISE WARNING 'mallory HARM at %: data password%', place, how;
    EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE fluxbase_data SET role = 'service_role'; RAISE WARNING 'mallory HARM at %: data setting%', place, how;
    EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN PERFORM pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a
           WHERE a.pid <> pg_catalog.pg_backend_pid() AND a.datname = pg_catalog.current_database();
    EXCEPTION WHEN OTHERS THEN NULL; END;
END
$harms$;

CREATE FUNCTION public.mallory_plant(place text) RETURNS boolean
LANGUAGE plpgsql SECURITY INVOKER AS $plant$
DECLARE
    me text := current_user;
BEGIN
    BEGIN
        INSERT INTO public.mallory_log (place, who) VALUES (place, current_user);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RAISE WARNING 'mallory ran at % as % (session %)', place, current_user, session_user;
    PERFORM public.mallory_harms(place, '');
    -- The role switch: back to the session's login, then the same harms.
    BEGIN
        RESET ROLE;
        RAISE WARNING 'mallory reset role at % to %', place, current_user;
        PERFORM public.mallory_harms(place, ' after reset');
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', me);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'mallory could not switch at %: %', place, SQLERRM;
    END;
    RETURN true;
END
$plant$;

-- An IMMUTABLE wrapper: index expressions, generated columns and constant folding.
CREATE FUNCTION public.mallory_fold(place text, v text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM public.mallory_plant(place); RETURN v; END $$;

-- base tables
CREATE TABLE public.victims (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO public.victims VALUES (1, 'one'), (2, 'two');

-- a view whose column calls the plant
CREATE VIEW public.planted_view AS SELECT v.id, v.name, public.mallory_plant('view') AS planted FROM public.victims v;
-- the folded IMMUTABLE function in a view
CREATE VIEW public.folded_view AS SELECT v.id, public.mallory_fold('fold', 'const') AS folded FROM public.victims v;

-- a BEFORE trigger
CREATE FUNCTION public.mallory_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM public.mallory_plant('trigger'); RETURN NEW; END $$;
CREATE TABLE public.triggered (id integer PRIMARY KEY, name text);
CREATE TRIGGER mallory BEFORE INSERT OR UPDATE ON public.triggered FOR EACH ROW EXECUTE FUNCTION public.mallory_trigger();

-- a column default
CREATE TABLE public.defaulted (id integer PRIMARY KEY, name text, planted boolean DEFAULT public.mallory_plant('default'));

-- a domain CHECK
CREATE DOMAIN public.planted_text AS text CHECK (public.mallory_plant('domain'));
CREATE TABLE public.domained (id integer PRIMARY KEY, name public.planted_text);

-- an app type with casts and a DEFAULT btree operator class
CREATE TYPE public.mood AS ENUM ('calm', 'angry');
CREATE FUNCTION public.mood_text(m public.mood) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.mallory_plant('cast_text'); RETURN pg_catalog.format('%s', m); END $$;
CREATE FUNCTION public.mood_json(m public.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN PERFORM public.mallory_plant('cast_json'); RETURN pg_catalog.to_json(pg_catalog.format('%s', m)); END $$;
CREATE FUNCTION public.text_mood(t text) RETURNS public.mood LANGUAGE plpgsql AS $$
BEGIN PERFORM public.mallory_plant('cast_from_text');
      RETURN (SELECT m FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::public.mood)) m WHERE pg_catalog.format('%s', m) = t); END $$;
CREATE CAST (public.mood AS text) WITH FUNCTION public.mood_text(public.mood);
CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
CREATE CAST (text AS public.mood) WITH FUNCTION public.text_mood(text);
CREATE FUNCTION public.mood_cmp(a public.mood, b public.mood) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.mallory_plant('operator'); RETURN pg_catalog.enum_cmp(a, b); END $$;
CREATE FUNCTION public.mood_lt(a public.mood, b public.mood) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.mood_cmp(a, b) < 0; END $$;
CREATE FUNCTION public.mood_le(a public.mood, b public.mood) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.mood_cmp(a, b) <= 0; END $$;
CREATE FUNCTION public.mood_eq(a public.mood, b public.mood) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.mood_cmp(a, b) = 0; END $$;
CREATE FUNCTION public.mood_ge(a public.mood, b public.mood) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.mood_cmp(a, b) >= 0; END $$;
CREATE FUNCTION public.mood_gt(a public.mood, b public.mood) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN public.mood_cmp(a, b) > 0; END $$;
CREATE OPERATOR public.< (LEFTARG = public.mood, RIGHTARG = public.mood, FUNCTION = public.mood_lt);
CREATE OPERATOR public.<= (LEFTARG = public.mood, RIGHTARG = public.mood, FUNCTION = public.mood_le);
CREATE OPERATOR public.= (LEFTARG = public.mood, RIGHTARG = public.mood, FUNCTION = public.mood_eq);
CREATE OPERATOR public.>= (LEFTARG = public.mood, RIGHTARG = public.mood, FUNCTION = public.mood_ge);
CREATE OPERATOR public.> (LEFTARG = public.mood, RIGHTARG = public.mood, FUNCTION = public.mood_gt);
CREATE TABLE public.moods (id integer PRIMARY KEY, mood public.mood);
INSERT INTO public.moods VALUES (1, 'calm'), (2, 'angry');

-- a policy, reached only impersonated (the explorer role bypasses RLS)
CREATE TABLE public.policed (id integer PRIMARY KEY, name text);
ALTER TABLE public.policed ENABLE ROW LEVEL SECURITY;
CREATE POLICY mallory ON public.policed USING (public.mallory_plant('policy')) WITH CHECK (public.mallory_plant('policy'));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.policed TO authenticated;
INSERT INTO public.policed VALUES (1, 'one');

-- an index expression
CREATE TABLE public.indexed (id integer PRIMARY KEY, name text);
CREATE INDEX indexed_planted ON public.indexed (public.mallory_fold('index', name));

-- a CHECK constraint
CREATE TABLE public.checked (id integer PRIMARY KEY, name text CHECK (public.mallory_plant('check')));

-- a generated column
CREATE TABLE public.generated (id integer PRIMARY KEY, name text,
                               planted text GENERATED ALWAYS AS (public.mallory_fold('generated', name)) STORED);

-- a rule
-- (an unconditional DO INSTEAD rule with RETURNING: Postgres refuses DO ALSO rules in the
-- data-modifying WITH that the explorer's edits are)
CREATE TABLE public.ruled (id integer PRIMARY KEY, name text);
CREATE TABLE public.ruled_log (id integer, name text, planted boolean);
CREATE RULE mallory AS ON INSERT TO public.ruled
    DO INSTEAD INSERT INTO public.ruled_log VALUES (NEW.id, NEW.name, public.mallory_plant('rule'))
    RETURNING ruled_log.id, ruled_log.name;

-- foreign keys to follow into the planted tables
CREATE TABLE public.pointers (id integer PRIMARY KEY, mood_id integer REFERENCES public.moods (id),
                              policed_id integer REFERENCES public.policed (id));
INSERT INTO public.pointers VALUES (1, 2, 1);
"#;

/// What only a superuser may create (an operator class: Postgres refuses it to anyone
/// else), made of mallory's functions and operators, as a migration run by the
/// database's owner would.
const OPCLASS: &str = "
CREATE OPERATOR CLASS public.mood_ops DEFAULT FOR TYPE public.mood USING btree AS
    OPERATOR 1 public.<, OPERATOR 2 public.<=, OPERATOR 3 public.=, OPERATOR 4 public.>=, OPERATOR 5 public.>,
    FUNCTION 1 public.mood_cmp(public.mood, public.mood);
";


fn ticket(planes: &mut Planes, token: &str, operation: &str, request: &Value, impersonation: Option<&str>) -> Result<String, postgres::Error> {
    planes.ticket(token, operation, request, impersonation)
}

fn browse(planes: &mut Planes, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
    json_call(planes, token, "browse", request, impersonation, "SELECT fluxbase_admin.browse()::text")
}

fn follow(planes: &mut Planes, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
    json_call(planes, token, "follow", request, impersonation, "SELECT fluxbase_admin.browse()::text")
}

fn edit(planes: &mut Planes, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
    json_call(planes, token, "edit", request, impersonation, "SELECT fluxbase_admin.edit()::text")
}

fn export(planes: &mut Planes, token: &str, request: &Value, impersonation: Option<&str>) -> Result<(String, Vec<String>), postgres::Error> {
    let t = ticket(planes, token, "export", request, impersonation)?;
    export_claimed(&mut planes.data, &t)
}

fn json_call(planes: &mut Planes, token: &str, operation: &str, request: &Value, impersonation: Option<&str>, sql: &str) -> Result<Value, postgres::Error> {
    let t = ticket(planes, token, operation, request, impersonation)?;
    let rows = claimed(&mut planes.data, &t, sql, &[])?;
    let text: String = rows[0].get(0);
    Ok(serde_json::from_str(&text).expect("JSON"))
}

/// The database, mallory, two admins (ann, an admin; vic, a viewer), an app user, an
/// impersonation of that user by ann, and the two planes, whose data login collects the
/// server's warnings.
struct Scene {
    planes: Planes,
    warnings: Arc<Mutex<Vec<String>>>,
    ann: String,
    vic: String,
    impersonation: String,
    /// A dashboard connection opened before the attack.
    bystander: Client,
    users_before: i64,
    mallory: TestRole,
    db: TestDb,
}

fn scene() -> Scene {
    let db = TestDb::new();
    let mallory = TestRole::create(&db, "mallory", "");
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {}", mallory.name)).unwrap();
    mallory
        .connect()
        .batch_execute(&PLANT.replace("MALLORY", &mallory.name))
        .unwrap_or_else(|e| panic!("mallory plants: {}", describe(&e)));
    su.batch_execute(OPCLASS).unwrap_or_else(|e| panic!("operator class: {}", describe(&e)));
    // Nothing ran while planting (the tables were empty when the index was made).
    assert_eq!(su.query_one("SELECT count(*) FROM public.mallory_log", &[]).unwrap().get::<_, i64>(0), 0);

    // The explorer role got its grants on mallory's new tables from the event trigger.
    let ungranted: Vec<String> = strings(&mut su, "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v')
                AND NOT (has_table_privilege('fluxbase_explorer', c.oid, 'SELECT')
                         AND has_table_privilege('fluxbase_explorer', c.oid, 'INSERT')
                         AND has_table_privilege('fluxbase_explorer', c.oid, 'UPDATE')
                         AND has_table_privilege('fluxbase_explorer', c.oid, 'DELETE'))",
            &[]);
    assert!(ungranted.is_empty(), "the explorer role has no grants on {ungranted:?}");

    su.execute("INSERT INTO auth.users (email, confirmed_at) VALUES ('joe@example.com', now())", &[]).unwrap();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut web = db.connect(Caller::Dashboard);
    let ann = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token().to_string();
    let vic = login(&mut web, "vic@example.com", PASSWORD, "192.0.2.2").token().to_string();
    let impersonation: String = as_dashboard(
        &mut web,
        "SELECT impersonation_id::text FROM auth.start_impersonation($1, 'user', 'joe@example.com', 'debugging')",
        &[&ann],
    )
    .unwrap()[0]
        .get(0);
    let (data, warnings) = db.connect_collecting_notices(Caller::Data);
    let bystander = db.connect(Caller::Dashboard);
    let users_before: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    Scene { planes: Planes { web, data }, warnings, ann, vic, impersonation, bystander, users_before, mallory, db }
}

/// Where the plant ran and as whom: the rows it wrote (read-write transactions) and the
/// warnings the data login received (every transaction).
fn runs(s: &Scene) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in s.db.connect(Caller::Superuser).query("SELECT place, who FROM public.mallory_log", &[]).unwrap() {
        seen.entry(row.get(0)).or_default().insert(row.get(1));
    }
    for warning in s.warnings.lock().unwrap().iter() {
        if let Some(rest) = warning.strip_prefix("WARNING: mallory ran at ") {
            let (place, rest) = rest.split_once(" as ").expect("place as who");
            let who = rest.split(' ').next().unwrap();
            seen.entry(place.to_string()).or_default().insert(who.to_string());
        }
    }
    seen
}

/// Every harm failed, and the dashboard's connections and logins are as they were.
fn assert_unharmed(s: &mut Scene) {
    let harms: Vec<String> = s.warnings.lock().unwrap().iter().filter(|w| w.contains("mallory HARM")).cloned().collect();
    assert!(harms.is_empty(), "mallory's code did harm: {harms:#?}");
    // The harms were also tried after RESET ROLE, from the data login itself.
    assert!(
        s.warnings.lock().unwrap().iter().any(|w| w.contains("mallory reset role at") && w.ends_with("to fluxbase_data")),
        "no planted code reached RESET ROLE"
    );
    let mut su = s.db.connect(Caller::Superuser);
    let superuser: bool = su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&s.mallory.name]).unwrap().get(0);
    assert!(!superuser, "mallory became a superuser");
    let users: i64 = su.query_one("SELECT count(*) FROM dashboard_auth.dashboard_users", &[]).unwrap().get(0);
    assert_eq!(users, s.users_before, "a dashboard user was added");
    let stolen: i64 = su
        .query_one("SELECT CASE WHEN to_regclass('public.stolen') IS NULL THEN 0 ELSE (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM public.stolen', false, true, '')))[1]::text::bigint END", &[])
        .unwrap()
        .get(0);
    assert_eq!(stolen, 0, "password hashes were copied to public.stolen");
    let config: Option<Vec<String>> = su.query_one("SELECT rolconfig FROM pg_roles WHERE rolname = 'fluxbase_data'", &[]).unwrap().get(0);
    assert_eq!(config, None, "fluxbase_data got settings of its own");
    // The data login still signs in with its password (a fresh connection).
    s.db.connect(Caller::Data).query_one("SELECT 1", &[]).expect("fluxbase_data still logs in with its password");
    s.bystander.query_one("SELECT 1", &[]).expect("the dashboard connection opened before the attack is alive");
    let mut su_roles = su
        .query("SELECT rolname::text FROM pg_roles WHERE rolname IN ('fluxbase_web', 'fluxbase_data', 'fluxbase_explorer') AND rolsuper", &[])
        .unwrap();
    assert!(su_roles.pop().is_none(), "a login of the dashboard became a superuser");
}

/// Nobody the plant ran as is a superuser, the dashboard's role or login, an operator, or
/// the extension's owner.
fn assert_never_privileged(s: &Scene, seen: &BTreeMap<String, BTreeSet<String>>) {
    let mut su = s.db.connect(Caller::Superuser);
    let owner: String = su.query_one("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'fluxbase_admin'", &[]).unwrap().get(0);
    for (place, whos) in seen {
        for who in whos {
            assert!(
                !["postgres", "fluxbase_dashboard", "fluxbase_web", "fluxbase_operator", "fluxbase_ops", owner.as_str()].contains(&who.as_str()),
                "mallory's code ran at {place} as {who}"
            );
            let superuser: bool = su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[who]).unwrap().get(0);
            assert!(!superuser, "mallory's code ran at {place} as the superuser {who}");
            let dashboard: bool = su
                .query_one("SELECT pg_has_role($1, 'fluxbase_dashboard', 'USAGE') OR pg_has_role($1, 'fluxbase_operator', 'USAGE')", &[who])
                .unwrap()
                .get(0);
            assert!(!dashboard, "mallory's code ran at {place} as {who}, which has the dashboard's or operators' rights");
        }
    }
}

/// The places the plant reported in the warnings from `from` on.
fn places_since(s: &Scene, from: usize) -> BTreeSet<String> {
    s.warnings.lock().unwrap()[from..]
        .iter()
        .filter_map(|w| w.strip_prefix("WARNING: mallory ran at "))
        .map(|rest| rest.split(" as ").next().unwrap().to_string())
        .collect()
}

/// Runs one step a user takes and notes which places it reached.
fn step<T>(s: &mut Scene, paths: &mut BTreeMap<String, BTreeSet<String>>, path: &str, work: impl FnOnce(&mut Scene) -> T) -> T {
    let from = s.warnings.lock().unwrap().len();
    let answer = work(s);
    for place in places_since(s, from) {
        paths.entry(place).or_default().insert(path.to_string());
    }
    answer
}

fn request(table: &str) -> Value {
    json!({"schema": "public", "table": table, "total": "exact"})
}

fn ok(answer: Result<Value, postgres::Error>, what: &str) -> Value {
    let answer = answer.unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
    if answer.get("ok").is_some() {
        assert_eq!(answer["ok"], true, "{what}: {answer}");
    }
    answer
}

// ---------------------------------------------------------------------------------
// The rule
// ---------------------------------------------------------------------------------

#[test]
fn the_apps_code_never_runs_with_the_dashboards_powers() {
    let mut s = scene();
    let (ann, vic, imp) = (s.ann.clone(), s.vic.clone(), s.impersonation.clone());
    // place -> the paths that reached it
    let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // A second data-plane connection (fluxbase serve keeps a pool), opened before the attack.
    let mut data_bystander = s.db.connect(Caller::Data);

    // Reads, by the viewer and the admin, unimpersonated (as fluxbase_explorer).
    for (who, token) in [("admin", &ann), ("viewer", &vic)] {
        for table in ["planted_view", "folded_view", "triggered", "defaulted", "domained", "moods", "policed", "indexed",
                      "checked", "generated", "ruled", "pointers"] {
            let page = step(&mut s, &mut paths, &format!("{who} browse"), |s| {
                ok(browse(&mut s.planes, token, &request(table), None), &format!("{who} browse {table}"))
            });
            assert_eq!(page["total"]["kind"], "exact", "{page}");
            step(&mut s, &mut paths, &format!("{who} export"), |s| {
                export(&mut s.planes, token, &json!({"schema": "public", "table": table}), None)
                    .unwrap_or_else(|e| panic!("{who} export {table}: {}", describe(&e)))
            });
        }
        // A filter on the app type (the value is cast from text, then compared with the
        // DEFAULT operator class's operator), counted exactly.
        let page = step(&mut s, &mut paths, &format!("{who} filter"), |s| {
            ok(browse(&mut s.planes, token, &json!({"schema": "public", "table": "moods", "total": "exact",
                          "filter": {"column": "mood", "op": "eq", "value": "angry"}}), None), "browse moods filtered")
        });
        assert_eq!(page["total"]["count"], 1, "{page}");
        // A sort by it: the operator class orders the rows.
        let page = step(&mut s, &mut paths, &format!("{who} sort"), |s| {
            ok(browse(&mut s.planes, token, &json!({"schema": "public", "table": "moods", "total": "exact",
                          "sort": [{"column": "mood", "direction": "desc"}]}), None), "browse moods sorted")
        });
        assert_eq!(page["rows"][0]["values"]["mood"], "angry", "{page}");
        // Following a foreign key into the app type's table.
        let page = step(&mut s, &mut paths, &format!("{who} follow"), |s| {
            ok(follow(&mut s.planes, token, &json!({"schema": "public", "table": "pointers", "foreign_key": "pointers_mood_id_fkey",
                          "row": {"id": 1, "mood_id": 2}}), None), "follow pointers -> moods")
        });
        assert_eq!(page["rows"].as_array().unwrap().len(), 1, "{page}");
        // A search (text columns only).
        step(&mut s, &mut paths, &format!("{who} search"), |s| {
            ok(browse(&mut s.planes, token, &json!({"schema": "public", "table": "planted_view", "search": "o"}), None), "search")
        });
    }

    // Reads impersonated (as authenticated): the explorer role bypasses RLS, the user does not.
    let page = step(&mut s, &mut paths, "impersonated browse", |s| {
        ok(browse(&mut s.planes, &ann, &request("policed"), Some(&imp)), "impersonated browse policed")
    });
    assert_eq!(page["rows"].as_array().unwrap().len(), 1, "{page}");
    step(&mut s, &mut paths, "impersonated export", |s| {
        export(&mut s.planes, &ann, &json!({"schema": "public", "table": "policed"}), Some(&imp))
            .unwrap_or_else(|e| panic!("impersonated export policed: {}", describe(&e)))
    });
    step(&mut s, &mut paths, "impersonated follow", |s| {
        ok(follow(&mut s.planes, &ann, &json!({"schema": "public", "table": "pointers", "foreign_key": "pointers_policed_id_fkey",
                      "row": {"id": 1, "policed_id": 1}}), Some(&imp)), "impersonated follow pointers -> policed")
    });

    // Edits, by the admin (the viewer is refused by ticket()).
    let refused = ticket(&mut s.planes, &vic, "edit",
                         &json!({"schema": "public", "table": "triggered", "operation": "insert", "payload": {"rows": [{"id": 1}]}}), None)
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "42501");
    for (table, row, set) in [
        ("triggered", json!({"id": 1, "name": "a"}), json!({"name": "b"})),
        ("defaulted", json!({"id": 1, "name": "a"}), json!({"name": "b"})),
        ("domained", json!({"id": 1, "name": "a"}), json!({"name": "b"})),
        ("moods", json!({"id": 3, "mood": "angry"}), json!({"mood": "calm"})),
        ("indexed", json!({"id": 1, "name": "a"}), json!({"name": "b"})),
        ("checked", json!({"id": 1, "name": "a"}), json!({"name": "b"})),
        ("generated", json!({"id": 1, "name": "a"}), json!({"name": "b"})),
    ] {
        let insert = json!({"schema": "public", "table": table, "operation": "insert", "payload": {"rows": [row]}});
        step(&mut s, &mut paths, "admin edit insert", |s| ok(edit(&mut s.planes, &ann, &insert, None), &format!("insert into {table}")));
        let update = json!({"schema": "public", "table": table, "operation": "update", "payload": {"keys": [{"id": row["id"]}], "set": set}});
        step(&mut s, &mut paths, "admin edit update", |s| ok(edit(&mut s.planes, &ann, &update, None), &format!("update {table}")));
    }
    // Impersonated: the policy's USING and WITH CHECK run as the user.
    step(&mut s, &mut paths, "impersonated edit insert", |s| {
        ok(edit(&mut s.planes, &ann, &json!({"schema": "public", "table": "policed", "operation": "insert",
                                               "payload": {"rows": [{"id": 2, "name": "b"}]}}), Some(&imp)), "impersonated insert")
    });
    step(&mut s, &mut paths, "impersonated edit update", |s| {
        ok(edit(&mut s.planes, &ann, &json!({"schema": "public", "table": "policed", "operation": "update",
                                               "payload": {"keys": [{"id": 2}], "set": {"name": "c"}}}), Some(&imp)), "impersonated update")
    });
    step(&mut s, &mut paths, "admin edit insert (rule)", |s| {
        ok(edit(&mut s.planes, &ann, &json!({"schema": "public", "table": "ruled", "operation": "insert",
                                               "payload": {"rows": [{"id": 1, "name": "a"}]}}), None), "insert through a rule")
    });

    let seen = runs(&s);
    eprintln!("places reached, as whom: {seen:?}");
    eprintln!("places reached, by which path: {paths:#?}");
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for w in s.warnings.lock().unwrap().iter() {
        *summary.entry(w.split(" at ").next().unwrap_or(w).to_string() + &w.split(" to ").nth(1).map(|t| format!(" to {t}")).unwrap_or_default()).or_default() += 1;
    }
    eprintln!("warnings: {summary:#?}");

    let expect = |place: &str, path: &str| {
        assert!(paths.get(place).is_some_and(|p| p.contains(path)), "{path} did not reach {place}: {paths:#?}");
    };
    for who in ["admin", "viewer"] {
        expect("view", &format!("{who} browse"));
        expect("view", &format!("{who} export"));
        expect("fold", &format!("{who} browse"));
        expect("cast_json", &format!("{who} browse"));
        expect("cast_json", &format!("{who} follow"));
        expect("cast_text", &format!("{who} export"));
        expect("cast_from_text", &format!("{who} filter"));
        expect("operator", &format!("{who} filter"));
        expect("operator", &format!("{who} sort"));
    }
    expect("policy", "impersonated browse");
    expect("policy", "impersonated export");
    expect("policy", "impersonated follow");
    expect("policy", "impersonated edit insert");
    for place in ["trigger", "default", "domain", "index", "check", "generated"] {
        expect(place, "admin edit insert");
    }
    for place in ["trigger", "domain", "index", "check", "generated", "cast_from_text"] {
        expect(place, "admin edit update");
    }
    expect("rule", "admin edit insert (rule)");
    // Rows in mallory_log come from the edits, which are read-write.
    let logged: Vec<String> = s.db.connect(Caller::Superuser)
        .query("SELECT DISTINCT place FROM public.mallory_log ORDER BY 1", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    for place in ["check", "default", "domain", "generated", "index", "policy", "rule", "trigger"] {
        assert!(logged.contains(&place.to_string()), "no row for {place} in mallory_log: {logged:?}");
    }
    // Unimpersonated everything ran as the explorer role; the policy as the user's role.
    for (place, whos) in &seen {
        let expected = if place == "policy" { "authenticated" } else { "fluxbase_explorer" };
        assert_eq!(whos, &BTreeSet::from([expected.to_string()]), "mallory's code ran at {place} as {whos:?}");
    }
    assert_never_privileged(&s, &seen);
    assert_unharmed(&mut s);
    // FINDING (reported, not asserted): app code that does RESET ROLE is back on the data
    // login, which may signal its own backends: pg_terminate_backend kills the data
    // plane's other connections in this database.
    eprintln!("second data connection alive: {:?}", data_bystander.query_one("SELECT 1", &[]).map(|_| ()).map_err(|e| e.to_string()));
}

// ---------------------------------------------------------------------------------
// The hand-off: forged results, replayed and expired tickets
// ---------------------------------------------------------------------------------

/// A database with `public.notes` and a signed-in admin and viewer.
fn notes() -> (TestDb, Planes, String, String) {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute("CREATE TABLE public.notes (id integer PRIMARY KEY, body text NOT NULL);
                        INSERT INTO public.notes VALUES (1, 'first'), (2, 'second');")
        .unwrap();
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "vic@example.com", "viewer");
    let mut planes = Planes::connect(&db);
    let ann = login(&mut planes.web, "ann@example.com", PASSWORD, "192.0.2.1").token().to_string();
    let vic = login(&mut planes.web, "vic@example.com", PASSWORD, "192.0.2.2").token().to_string();
    (db, planes, ann, vic)
}

fn body(db: &TestDb, id: i32) -> String {
    db.connect(Caller::Superuser).query_one("SELECT body FROM public.notes WHERE id = $1", &[&id]).unwrap().get(0)
}

#[test]
fn a_forged_result_fails_the_edit_and_changes_nothing() {
    let (db, mut planes, ann, _) = notes();
    let request = json!({"schema": "public", "table": "notes", "operation": "update",
                         "payload": {"keys": [{"id": 1}], "set": {"body": "changed"}}});
    let t = ticket(&mut planes, &ann, "edit", &request, None).unwrap();
    let actions_before = fluxbase_tests::admin::audit_actions(&db);
    let mut tx = planes.data.transaction().unwrap();
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&t]).unwrap();
    // App code (or anyone on the data login) records a result first...
    tx.execute("SELECT fluxbase_admin.record_result('{}')", &[]).expect("the first result is recorded");
    // ...and the real edit then finds the intent spent: the transaction fails.
    let err = tx.query_one("SELECT fluxbase_admin.edit()::text", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "55000", "{}", describe(&err));
    assert!(describe(&err).contains("recorded already"), "{}", describe(&err));
    drop(tx); // rolled back
    assert_eq!(body(&db, 1), "first", "the row changed");
    let actions_after = fluxbase_tests::admin::audit_actions(&db);
    assert_eq!(actions_after, actions_before, "the forged result or the edit left an audit entry");
    // FINDING (reported, not asserted): the claim is an UPDATE of dashboard_auth.tickets in
    // this very transaction, so the rollback un-spends the ticket: within its 30 seconds
    // the data login can claim it again, and the edit then runs and records its result.
}

#[test]
fn replayed_and_expired_tickets_are_refused() {
    let (db, mut planes, _, vic) = notes();
    // Replayed: a ticket works once.
    let t = ticket(&mut planes, &vic, "browse", &request("notes"), None).unwrap();
    claimed(&mut planes.data, &t, "SELECT fluxbase_admin.browse()::text", &[]).expect("the first claim works");
    let err = claimed(&mut planes.data, &t, "SELECT fluxbase_admin.browse()::text", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000", "{}", describe(&err));
    assert!(describe(&err).contains("unknown, spent or expired"), "{}", describe(&err));

    // Expired: issued and expiring a minute ago (the CHECK keeps them 30 s apart).
    let t = ticket(&mut planes, &vic, "browse", &request("notes"), None).unwrap();
    let moved = db
        .connect(Caller::Superuser)
        .execute(
            "UPDATE dashboard_auth.tickets SET issued_at = issued_at - interval '1 minute', expires_at = expires_at - interval '1 minute'
              WHERE ticket_hash = dashboard_auth.token_hash($1)",
            &[&t],
        )
        .unwrap();
    assert_eq!(moved, 1);
    let err = claimed(&mut planes.data, &t, "SELECT fluxbase_admin.browse()::text", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000", "{}", describe(&err));

    // An export ticket is refused the same way once spent.
    let t = ticket(&mut planes, &vic, "export", &json!({"schema": "public", "table": "notes"}), None).unwrap();
    export_claimed(&mut planes.data, &t).expect("the export runs once");
    let err = export_claimed(&mut planes.data, &t).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000", "{}", describe(&err));
}

// ---------------------------------------------------------------------------------
// The explorer role's grants
// ---------------------------------------------------------------------------------

#[test]
fn a_table_created_after_install_is_browsable_and_editable() {
    let (db, mut planes, ann, _) = notes();
    // notes was created after the extension was installed (in the template); so is this,
    // by an app role rather than the superuser.
    let app = TestRole::create(&db, "app_owner", "");
    db.connect(Caller::Superuser).batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {}", app.name)).unwrap();
    app.connect()
        .batch_execute("CREATE TABLE public.late (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text);
                        INSERT INTO public.late (body) VALUES ('early');")
        .unwrap();
    let granted: bool = db
        .connect(Caller::Superuser)
        .query_one("SELECT has_table_privilege('fluxbase_explorer', 'public.late', 'SELECT, INSERT, UPDATE, DELETE')
                       AND has_sequence_privilege('fluxbase_explorer', 'public.late_id_seq', 'USAGE')", &[])
        .unwrap()
        .get(0);
    assert!(granted, "the event trigger did not grant the explorer role on public.late");
    let page = ok(browse(&mut planes, &ann, &request("late"), None), "browse late");
    assert_eq!(page["rows"][0]["values"]["body"], "early", "{page}");
    let answer = ok(edit(&mut planes, &ann, &json!({"schema": "public", "table": "late", "operation": "insert",
                                                    "payload": {"rows": [{"body": "later"}]}}), None), "insert into late");
    assert_eq!(answer["count"], 1, "{answer}");
    ok(edit(&mut planes, &ann, &json!({"schema": "public", "table": "late", "operation": "update",
                                       "payload": {"keys": [{"id": 1}], "set": {"body": "edited"}}}), None), "update late");
    let page = ok(browse(&mut planes, &ann, &request("late"), None), "browse late again");
    assert_eq!(page["total"]["count"], 2, "{page}");
    assert_eq!(page["rows"][0]["values"]["body"], "edited", "{page}");
    // And the catalog shows no limit on it.
    let limits: Option<String> = as_dashboard(&mut planes.web, "SELECT explorer_limits FROM jsonb_to_recordset(fluxbase_admin.list_tables($1) -> 'rows') AS t(schema text, name text, kind text, rls_enabled boolean, rls_forced boolean, has_primary_key boolean, explorer_limits text) WHERE name = 'late'", &[&ann])
        .unwrap()[0]
        .get(0);
    assert_eq!(limits, None);
}

#[test]
fn a_table_whose_owner_revoked_select_is_marked_in_the_catalog() {
    let (db, mut planes, ann, _) = notes();
    db.connect(Caller::Superuser)
        .batch_execute("CREATE TABLE public.hidden (id integer PRIMARY KEY);
                        REVOKE SELECT ON public.hidden FROM fluxbase_explorer;
                        CREATE TABLE public.readonly (id integer PRIMARY KEY);
                        REVOKE INSERT, DELETE ON public.readonly FROM fluxbase_explorer;")
        .unwrap();
    let rows = as_dashboard(&mut planes.web, "SELECT name, explorer_limits FROM jsonb_to_recordset(fluxbase_admin.list_tables($1) -> 'rows') AS t(schema text, name text, kind text, rls_enabled boolean, rls_forced boolean, has_primary_key boolean, explorer_limits text) WHERE schema = 'public'", &[&ann]).unwrap();
    let limits: BTreeMap<String, Option<String>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(limits["hidden"].as_deref(), Some("unreadable: its owner revoked SELECT from fluxbase_explorer"), "{limits:?}");
    assert_eq!(limits["readonly"].as_deref(), Some("read-only: its owner revoked INSERT, DELETE from fluxbase_explorer"), "{limits:?}");
    assert_eq!(limits["notes"], None, "{limits:?}");
    // Browsing it fails on the data plane with Postgres's own refusal.
    let err = browse(&mut planes, &ann, &request("hidden"), None).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{}", describe(&err));
}

// ---------------------------------------------------------------------------------
// The data login's memberships
// ---------------------------------------------------------------------------------

#[test]
fn a_data_login_that_reads_all_data_is_a_problem() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let problems = su.query("SELECT role, problem FROM fluxbase_admin.list_login_problems('fluxbase_data', 'data')", &[]).unwrap();
    let listed: Vec<(String, String)> = problems.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(listed.is_empty(), "fluxbase_data has problems: {listed:?}");

    let greedy = TestRole::create(&db, "greedy_data", "NOINHERIT");
    su.batch_execute(&format!("GRANT fluxbase_explorer, anon, authenticated, service_role, pg_read_all_data TO {}", greedy.name)).unwrap();
    let problems = su.query("SELECT role, problem, fix FROM fluxbase_admin.list_login_problems($1, 'data')", &[&greedy.name]).unwrap();
    let listed: Vec<(String, String, String)> = problems.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert!(
        listed.iter().any(|(role, problem, fix)| role == "pg_read_all_data" && problem.contains("pg_read_all_data")
                                                 && fix == &format!("REVOKE pg_read_all_data FROM {}", greedy.name)),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 1, "only pg_read_all_data is wrong: {listed:?}");
    // And such a login may not claim a ticket.
    su.batch_execute(&format!("GRANT USAGE ON SCHEMA fluxbase_admin TO {0}; GRANT EXECUTE ON FUNCTION fluxbase_admin.claim_ticket(text, text) TO {0}", greedy.name)).unwrap();
    let err = greedy.connect().query_one("SELECT fluxbase_admin.claim_ticket('fbk_whatever')", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{}", describe(&err));
    assert!(describe(&err).contains("pg_read_all_data"), "{}", describe(&err));
}

// ---------------------------------------------------------------------------------
// The SQL runner: a statement that leaves its role
// ---------------------------------------------------------------------------------

/// Runs `statement` through the SQL runner as fluxbase serve does. Returns Err with the
/// refusal or the error, Ok with execute_sql's answer (a write is committed).
fn run_sql(planes: &mut Planes, token: &str, statement: &str, writes: bool) -> Result<Value, String> {
    let row = as_dashboard(
        &mut planes.web,
        "SELECT ok, code, message, run_id::text, timeout_ms, ticket FROM fluxbase_admin.start_sql_run($1, $2, $3, NULL, NULL)",
        &[&token, &statement, &writes],
    )
    .unwrap_or_else(|e| panic!("start_sql_run: {}", describe(&e)))
    .remove(0);
    let (ok_, code, message): (bool, String, String) = (row.get(0), row.get(1), row.get(2));
    if !ok_ {
        return Err(format!("refused ({code}): {message}"));
    }
    let run_id: String = row.get(3);
    let timeout: i64 = row.get(4);
    let t: String = row.get(5);
    let data = &mut planes.data;
    data.batch_execute(&format!("BEGIN; SET LOCAL statement_timeout = {timeout}")).unwrap();
    data.execute("SELECT fluxbase_admin.claim_ticket($1, $2)", &[&t, &statement]).unwrap_or_else(|e| panic!("claim: {}", describe(&e)));
    data.batch_execute("SAVEPOINT run").unwrap();
    let result = data.query_one("SELECT fluxbase_admin.execute_sql($1)::text", &[&statement]);
    let outcome = match result {
        Ok(row) if writes => {
            let answer: Value = serde_json::from_str(&row.get::<_, String>(0)).unwrap();
            let outcome = json!({"status": "succeeded", "row_count": answer["row_count"], "affected": answer["affected"]}).to_string();
            data.execute("SELECT fluxbase_admin.record_result($1::text::jsonb)", &[&outcome]).unwrap();
            data.batch_execute("COMMIT").unwrap();
            return Ok(answer);
        }
        Ok(row) => {
            data.batch_execute("ROLLBACK TO SAVEPOINT run; COMMIT").unwrap();
            let answer: Value = serde_json::from_str(&row.get::<_, String>(0)).unwrap();
            (json!({"status": "succeeded", "row_count": answer["row_count"]}), Ok(answer))
        }
        Err(e) => {
            let d = describe(&e);
            data.batch_execute("ROLLBACK TO SAVEPOINT run; COMMIT").unwrap();
            (json!({"status": "failed", "error_code": e.code().map(|c| c.code().to_string()), "error_message": d}), Err(d))
        }
    };
    as_dashboard(&mut planes.web, "SELECT fluxbase_admin.finish_sql_run($1, $2::text::uuid, $3::text::jsonb)", &[&token, &run_id, &outcome.0.to_string()])
        .unwrap_or_else(|e| panic!("finish_sql_run: {}", describe(&e)));
    outcome.1
}

#[test]
fn the_runner_cannot_reset_its_role_into_the_data_login() {
    let (db, mut planes, ann, vic) = notes();
    let mut bystander = db.connect(Caller::Dashboard);
    let mut answers = Vec::new();
    for statement in [
        "DO $$ BEGIN RESET ROLE; ALTER ROLE fluxbase_data PASSWORD 'x'; END $$",
        "DO $$ BEGIN RESET ROLE; PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'fluxbase_web'; END $$",
    ] {
        for (token, writes) in [(&vic, false), (&ann, true)] {
            let answer = run_sql(&mut planes, token, statement, writes);
            answers.push(format!("{} {statement}: {answer:?}", if writes { "write" } else { "read" }));
            // Whatever happened, nothing harmful did.
            bystander.query_one("SELECT 1", &[]).expect("the dashboard connection is alive");
            db.connect(Caller::Data).query_one("SELECT 1", &[]).expect("fluxbase_data keeps its password");
            assert!(answer.is_err(), "the run succeeded: {answer:?}");
        }
    }
    eprintln!("{answers:#?}");
    let config: Option<Vec<String>> = db
        .connect(Caller::Superuser)
        .query_one("SELECT rolconfig FROM pg_roles WHERE rolname = 'fluxbase_data'", &[])
        .unwrap()
        .get(0);
    assert_eq!(config, None);
    planes.web.query_one("SELECT 1", &[]).expect("the dashboard connection is alive");
}

// ---------------------------------------------------------------------------------
// An extension bug the scene works around (see `ticket` above)
// ---------------------------------------------------------------------------------

/// fluxbase_admin.new_ticket: `issued_at` is the column default clock_timestamp(),
/// evaluated before the VALUES' own clock_timestamp() + 30 s for `expires_at`, so a
/// tick between them breaks CHECK (expires_at <= issued_at + 30 s) and ticket() raises
/// 23514. It must never. (Seen on 1 of 3 first tickets of fresh connections, and on 6 to 13
/// of 200 tickets issued in a loop in a database full of planted objects; in a fresh
/// database like this one it rarely shows, so this guard passes more often than not.)
#[test]
fn issuance_never_violates_its_own_expiry_check() {
    let (_db, mut planes, ann, _) = notes();
    // 200 tickets in one call on the dashboard plane (as fluxbase serve's login may issue
    // them back to back); each 23514 is counted.
    planes.web.execute("SELECT set_config('twop.token', $1, false)", &[&ann]).unwrap();
    let rows = as_dashboard(
        &mut planes.web,
        "DO $$ DECLARE bad integer := 0; BEGIN
             FOR i IN 1..200 LOOP
                 BEGIN PERFORM fluxbase_admin.issue_ticket(current_setting('twop.token'), 'browse', '{\"schema\": \"public\", \"table\": \"notes\"}');
                 EXCEPTION WHEN check_violation THEN bad := bad + 1; END;
             END LOOP;
             PERFORM set_config('twop.bad', bad::text, false);
         END $$",
        &[],
    );
    rows.unwrap_or_else(|e| panic!("{}", describe(&e)));
    let bad: String = planes.web.query_one("SELECT current_setting('twop.bad', true)", &[]).unwrap().get(0);
    assert_eq!(bad, "0", "{bad} of 200 calls of fluxbase_admin.issue_ticket failed with 23514 tickets_check");
    let _ = ann;
}

#[test]
fn the_data_login_cannot_bind_a_request_of_its_own() {
    let (_db, mut planes, _, _) = notes();
    // Only claim, a definer function that spends a ticket, binds a request: code on the
    // data login that calls the binder itself is refused.
    let err = planes
        .data
        .batch_execute(r#"BEGIN; SELECT fluxbase_admin.bind_claim('{"operation": "edit", "run_as": "service_role"}')"#)
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{}", describe(&err));
    planes.data.batch_execute("ROLLBACK").unwrap();
    let err = planes.data.query_one("SELECT fluxbase_admin.browse()", &[]).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("55000"), "{}", describe(&err));
}
