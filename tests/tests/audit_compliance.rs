//! The audit log as a compliance tool: search (admins and viewers), export (`fluxbase
//! audit export`, JSON Lines and CSV), verification of the hash chain (`fluxbase audit
//! verify` and operator_verify_audit), retention (`fluxbase audit purge`), and the
//! settings overview that says who changed what.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fluxbase_tests::admin::{as_dashboard, create_admin, login, sqlstate, PASSWORD};
use fluxbase_tests::{fluxbase, run, text, Caller, TestDb};
use postgres::types::ToSql;
use postgres::{Client, Row};
use serde_json::Value;

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// What `fluxbase audit ...` did.
#[derive(Debug)]
struct Cli {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn audit_cli(db: &TestDb, caller: Caller, args: &[&str]) -> Cli {
    let output = run(fluxbase().arg("audit").args(args).env("DATABASE_URL", db.url(caller, "sslmode=disable")));
    let (stdout, stderr) = text(&output);
    Cli { code: output.status.code(), stdout, stderr }
}

/// Files in the temp directory, named after the test database, removed when dropped.
struct TempFiles {
    prefix: String,
    made: Vec<PathBuf>,
}

impl TempFiles {
    fn new(db: &TestDb) -> Self {
        TempFiles { prefix: db.name.clone(), made: Vec::new() }
    }

    /// A path that does not exist yet.
    fn path(&mut self, name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{}-{name}", self.prefix));
        let _ = std::fs::remove_file(&path);
        self.made.push(path.clone());
        path
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.made {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// A signed-in admin (or viewer) on a connection of the web login role.
struct Web {
    client: Client,
    token: String,
}

fn sign_in(db: &TestDb, email: &str, role: &str) -> Web {
    create_admin(db, email, role);
    let mut client = db.connect(Caller::Dashboard);
    let token = login(&mut client, email, PASSWORD, "192.0.2.1").token().to_string();
    Web { client, token }
}

impl Web {
    /// `sql` as fluxbase_dashboard, with the session token as $1 before `params`.
    fn call(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&self.token];
        all.extend_from_slice(params);
        as_dashboard(&mut self.client, sql, &all)
    }

    /// Changes the setting runner.row_limit `n` times, to values no other call uses:
    /// `n` settings.changed entries by this admin.
    fn churn(&mut self, tag: u32, n: u32) {
        for i in 0..n {
            let value = (tag * 100 + i + 1).to_string();
            self.call("SELECT * FROM dashboard_auth.set_setting($1, 'runner.row_limit', $2)", &[&value])
                .unwrap_or_else(|e| panic!("set_setting: {e}"));
        }
    }
}

const UTC_FORMAT: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

/// The database's clock now, as `2026-01-01T12:00:00.123456Z`: a fixed-width form that
/// sorts as time does and that Postgres and `fluxbase` both read.
fn db_now(db: &TestDb) -> String {
    db.connect(Caller::Superuser)
        .query_one(&format!("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', {UTC_FORMAT})"), &[])
        .unwrap()
        .get(0)
}

/// A moment between what came before and what comes after, with a margin either side.
fn a_moment_between(db: &TestDb) -> String {
    std::thread::sleep(Duration::from_millis(500));
    let moment = db_now(db);
    std::thread::sleep(Duration::from_millis(500));
    moment
}

/// One row of dashboard_auth.audit_log as the superuser reads it.
#[derive(Debug, Clone)]
struct Entry {
    id: i64,
    /// UTC, `YYYY-MM-DDTHH:MI:SS.ffffffZ`.
    occurred_at: String,
    actor_type: String,
    actor_id: Option<String>,
    actor: String,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    details: Value,
    details_text: String,
    /// The inet's own text form (192.0.2.1), and `ip::text` (192.0.2.1/32).
    ip: Option<String>,
    ip_text: Option<String>,
    user_agent: Option<String>,
    chain_seq: Option<i64>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

fn entries(db: &TestDb) -> Vec<Entry> {
    db.connect(Caller::Superuser)
        .query(
            &format!(
                "SELECT id, to_char(occurred_at AT TIME ZONE 'UTC', {UTC_FORMAT}), actor_type, actor_id::text, actor, action,
                        target_type, target_id, details, details::text, nullif(format('%s', ip), ''), ip::text, user_agent,
                        chain_seq, encode(prev_hash, 'hex'), encode(hash, 'hex')
                   FROM dashboard_auth.audit_log ORDER BY id"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            occurred_at: r.get(1),
            actor_type: r.get(2),
            actor_id: r.get(3),
            actor: r.get(4),
            action: r.get(5),
            target_type: r.get(6),
            target_id: r.get(7),
            details: r.get(8),
            details_text: r.get(9),
            ip: r.get(10),
            ip_text: r.get(11),
            user_agent: r.get(12),
            chain_seq: r.get(13),
            prev_hash: r.get(14),
            hash: r.get(15),
        })
        .collect()
}

fn count_entries(db: &TestDb) -> i64 {
    db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.audit_log", &[]).unwrap().get(0)
}

/// The last entry with this action.
fn last_of(db: &TestDb, action: &str) -> Entry {
    entries(db).into_iter().rev().find(|e| e.action == action).unwrap_or_else(|| panic!("no {action} entry"))
}

/// Newest first, as the search orders them.
fn newest_first(mut list: Vec<Entry>) -> Vec<i64> {
    list.sort_by(|a, b| (&b.occurred_at, b.id).cmp(&(&a.occurred_at, a.id)));
    list.iter().map(|e| e.id).collect()
}

fn admin_id(db: &TestDb, email: &str) -> String {
    db.connect(Caller::Superuser)
        .query_one("SELECT id::text FROM dashboard_auth.dashboard_users WHERE email = $1", &[&email])
        .unwrap()
        .get(0)
}

/// A sign-in with a chosen address and user agent.
fn login_from(client: &mut Client, email: &str, password: &str, ip: &str, user_agent: &str) -> bool {
    let mut tx = client.transaction().unwrap();
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
    tx.execute("SELECT set_config('fluxbase.client_ip', $1, true), set_config('fluxbase.user_agent', $2, true)", &[&ip, &user_agent])
        .unwrap();
    let row = tx.query_one("SELECT ok FROM dashboard_auth.sign_in($1, $2)", &[&email, &password]).unwrap();
    tx.commit().unwrap();
    row.get(0)
}

/// Burns identity values, so that audit_log.id and chain_seq differ from here on and a
/// message that names both can be told apart.
fn offset_ids(db: &TestDb, by: usize) {
    let mut su = db.connect(Caller::Superuser);
    for _ in 0..by {
        let mut tx = su.transaction().unwrap();
        tx.execute("SELECT dashboard_auth.audit('system', NULL, 'test', 'test.discarded')", &[]).unwrap();
        tx.rollback().unwrap();
    }
}

fn set_trigger(su: &mut Client, enabled: bool) {
    su.batch_execute(&format!(
        "ALTER TABLE dashboard_auth.audit_log {} TRIGGER audit_log_append_only",
        if enabled { "ENABLE" } else { "DISABLE" }
    ))
    .unwrap();
}

/// Verification as SQL: (valid, entries, first_invalid_seq, head_seq, head_hash, message).
fn verify_sql(c: &mut Client) -> (bool, i64, Option<i64>, Option<i64>, Option<String>, String) {
    let r = c
        .query_one(
            "SELECT valid, entries, first_invalid_seq, head_seq, head_hash, message FROM dashboard_auth.operator_verify_audit()",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

// ---------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------

struct Filter<'a> {
    actor: Option<&'a str>,
    action: Option<&'a str>,
    target: Option<&'a str>,
    since: Option<&'a str>,
    until: Option<&'a str>,
    /// One of list_audit_groups' action_group.
    group: Option<&'a str>,
}

const NO_FILTER: Filter<'static> = Filter { actor: None, action: None, target: None, since: None, until: None, group: None };

fn search(web: &mut Web, f: &Filter, page_size: i32, cursor: Option<&str>) -> Result<Value, postgres::Error> {
    let rows = web.call(
        "SELECT dashboard_auth.list_audit($1, $2, $3, $4, $5::text::timestamptz, $6::text::timestamptz, $7, $8, $9)",
        &[&f.actor, &f.action, &f.target, &f.since, &f.until, &f.group, &page_size, &cursor],
    )?;
    Ok(rows[0].get(0))
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["rows"].as_array().expect("rows is an array").iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Every match on one page (there must be no next page).
fn search_ids(web: &mut Web, f: &Filter) -> Vec<i64> {
    let page = search(web, f, 1000, None).unwrap_or_else(|e| panic!("list_audit: {e}"));
    assert!(page["next_cursor"].is_null(), "one page holds them all: {page}");
    ids_of(&page)
}

/// Every match, `page_size` at a time, following next_cursor; returns the pages.
fn all_pages(web: &mut Web, f: &Filter, page_size: i32) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = search(web, f, page_size, cursor.as_deref()).unwrap_or_else(|e| panic!("list_audit: {e}"));
        let ids = ids_of(&page);
        assert!(ids.len() <= page_size as usize, "a page holds at most {page_size}: {page}");
        pages.push(ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages.len() < 1000, "paging does not end");
    }
    pages
}

#[test]
fn search_filters_by_actor_action_target_and_time() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let mut bob = sign_in(&db, "bob@example.com", "admin");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let carl: String = ann
        .call("SELECT admin_id::text FROM dashboard_auth.invite_admin($1, 'carl@example.com', 'Carl', 'admin')", &[])
        .unwrap()[0]
        .get(0);
    bob.call("SELECT dashboard_auth.set_admin_role($1, $2::text::uuid, 'viewer')", &[&carl]).unwrap();
    assert!(!login(&mut bob.client, "bob@example.com", "not the password at all", "192.0.2.9").ok);
    ann.churn(1, 2);

    let t1 = a_moment_between(&db);
    ann.churn(2, 3);
    bob.churn(3, 2);
    let t2 = a_moment_between(&db);
    ann.churn(4, 2);

    // Searching the log is itself recorded, once per session: search once first, so that
    // the log holds that entry before the expectations are read from it.
    search_ids(&mut vic, &NO_FILTER);
    let all = entries(&db);
    let expect = |keep: &dyn Fn(&Entry) -> bool| newest_first(all.iter().filter(|e| keep(e)).cloned().collect());

    // Everything, newest first.
    assert_eq!(search_ids(&mut vic, &NO_FILTER), expect(&|_| true), "no filter: every entry, newest first");

    // Actor: exact, case-insensitive.
    let by_ann = search_ids(&mut vic, &Filter { actor: Some("ANN@Example.com"), ..NO_FILTER });
    assert_eq!(by_ann, expect(&|e| e.actor == "ann@example.com"));
    assert!(by_ann.len() >= 9, "ann's sign-in, invite, link and seven settings: {by_ann:?}");
    assert_eq!(search_ids(&mut vic, &Filter { actor: Some("ann"), ..NO_FILTER }), Vec::<i64>::new(), "not a substring match");
    // The operator's (here the superuser's) entries are found by the database role.
    assert_eq!(
        search_ids(&mut vic, &Filter { actor: Some("postgres"), ..NO_FILTER }),
        expect(&|e| e.actor == "postgres"),
    );

    // Action: exact, or a prefix when it ends with a dot.
    let logins = search_ids(&mut vic, &Filter { action: Some("admin.login"), ..NO_FILTER });
    assert_eq!(logins, expect(&|e| e.action == "admin.login"));
    assert_eq!(logins.len(), 3, "three sign-ins; the failed one is admin.login_failed");
    let failed = search_ids(&mut vic, &Filter { action: Some("admin.login_failed"), ..NO_FILTER });
    assert_eq!(failed.len(), 1);
    let admin_prefix = search_ids(&mut vic, &Filter { action: Some("admin."), ..NO_FILTER });
    assert_eq!(admin_prefix, expect(&|e| e.action.starts_with("admin.")));
    let admin_actions: BTreeSet<String> =
        all.iter().filter(|e| admin_prefix.contains(&e.id)).map(|e| e.action.clone()).collect();
    assert_eq!(
        admin_actions,
        ["admin.created", "admin.login", "admin.login_failed", "admin.role_changed"].map(String::from).into(),
    );
    assert_eq!(search_ids(&mut vic, &Filter { action: Some("admin"), ..NO_FILTER }), Vec::<i64>::new(), "no dot: exact only");
    assert_eq!(search_ids(&mut vic, &Filter { action: Some("admin.log"), ..NO_FILTER }), Vec::<i64>::new(), "no dot: exact only");
    assert_eq!(
        search_ids(&mut vic, &Filter { action: Some("settings."), ..NO_FILTER }),
        expect(&|e| e.action == "settings.changed"),
    );

    // Target: the target's id exactly.
    let about_carl = search_ids(&mut vic, &Filter { target: Some(&carl), ..NO_FILTER });
    assert_eq!(about_carl, expect(&|e| e.target_id.as_deref() == Some(carl.as_str())));
    let carl_actions: BTreeSet<String> = all.iter().filter(|e| about_carl.contains(&e.id)).map(|e| e.action.clone()).collect();
    assert_eq!(carl_actions, ["admin.created", "admin.role_changed", "link.created"].map(String::from).into());

    // Time: since inclusive, until exclusive.
    let middle = search_ids(&mut vic, &Filter { since: Some(&t1), until: Some(&t2), ..NO_FILTER });
    assert_eq!(middle, expect(&|e| e.occurred_at >= t1 && e.occurred_at < t2));
    assert_eq!(middle.len(), 5, "the second batch: {middle:?}");
    assert_eq!(
        search_ids(&mut vic, &Filter { since: Some(&t2), ..NO_FILTER }),
        expect(&|e| e.occurred_at >= t2),
    );
    assert_eq!(
        search_ids(&mut vic, &Filter { until: Some(&t1), ..NO_FILTER }),
        expect(&|e| e.occurred_at < t1),
    );
    let at = &all.iter().find(|e| e.id == middle[0]).unwrap().occurred_at;
    assert!(
        search_ids(&mut vic, &Filter { since: Some(at), until: Some(at), ..NO_FILTER }).is_empty(),
        "an empty range finds nothing"
    );

    // Filters combine.
    let bob_middle = search_ids(
        &mut vic,
        &Filter { actor: Some("bob@example.com"), action: Some("settings."), since: Some(&t1), until: None, target: None, group: None },
    );
    assert_eq!(bob_middle, expect(&|e| e.actor == "bob@example.com" && e.action == "settings.changed" && e.occurred_at >= t1));
    assert_eq!(bob_middle.len(), 2);

    // The README's call, with named arguments.
    let readme: Value = vic
        .call(
            "SELECT dashboard_auth.list_audit($1, actor => 'bob@example.com', action => 'admin.',
                                               target => NULL, since => '2001-01-01', until => NULL,
                                               page_size => 50, cursor => NULL)",
            &[],
        )
        .unwrap()[0]
        .get(0);
    assert_eq!(ids_of(&readme), expect(&|e| e.actor == "bob@example.com" && e.action.starts_with("admin.")));
    assert!(readme["next_cursor"].is_null());

    // An entry as the search shows it: every field but the hashes, as in the table.
    let page = search(&mut vic, &Filter { target: Some(&carl), action: Some("admin.role_changed"), ..NO_FILTER }, 10, None).unwrap();
    let shown = &page["rows"][0];
    let entry = all.iter().find(|e| e.action == "admin.role_changed").unwrap();
    assert_eq!(shown["id"].as_i64(), Some(entry.id));
    assert_eq!(shown["actor"], "bob@example.com");
    assert_eq!(shown["actor_type"], "admin");
    assert_eq!(shown["actor_id"].as_str(), entry.actor_id.as_deref());
    assert_eq!(shown["target_type"], "admin");
    assert_eq!(shown["details"], entry.details);
    assert_eq!(shown["details"]["new"], "viewer");
    assert_eq!(shown["chain_seq"].as_i64(), entry.chain_seq);
    assert!(shown.get("hash").is_none() && shown.get("prev_hash").is_none(), "{shown}");
}

#[test]
fn search_pages_with_a_keyset_cursor() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 10);
    let snapshot = newest_first(entries(&db));
    assert!(snapshot.len() >= 12, "{snapshot:?}");

    // Page by page, with new entries arriving between pages: the pages are exactly the
    // entries that existed at the start, newest first, none twice, none left out.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = search(&mut ann, &NO_FILTER, 2, cursor.as_deref()).unwrap();
        let ids = ids_of(&page);
        pages += 1;
        if pages == 1 {
            // Newer than the first page: a keyset cursor never shows them on later pages.
            ann.churn(2, 3);
        }
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(ids.len(), 2, "a page before the last is full");
                cursor = Some(next.to_string());
                seen.extend(ids);
            }
            None => {
                assert!(!ids.is_empty() && ids.len() <= 2);
                seen.extend(ids);
                break;
            }
        }
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(seen, snapshot, "pages of 2: no repeats, no gaps, newest first");
    assert_eq!(pages, snapshot.len().div_ceil(2));

    // With a filter too, and page sizes that do and do not divide the count.
    let all = entries(&db);
    let settings = newest_first(all.iter().filter(|e| e.action == "settings.changed").cloned().collect());
    assert_eq!(settings.len(), 13);
    for size in [1, 3, 13, 14] {
        let pages = all_pages(&mut ann, &Filter { action: Some("settings.changed"), ..NO_FILTER }, size);
        assert_eq!(pages.concat(), settings, "page size {size}");
        assert_eq!(pages.len(), settings.len().div_ceil(size as usize).max(1), "page size {size}");
    }

    // Entries at the very same time (written here by the superuser) are told apart by
    // their id, and the cursor survives a session in another time zone.
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "INSERT INTO dashboard_auth.audit_log (occurred_at, actor_type, actor, action)
         SELECT '2026-01-01 00:00:00.123456+00', 'system', 'test', 'test.same_time' FROM generate_series(1, 5);
         SELECT dashboard_auth.audit_seal(true);",
    )
    .unwrap();
    ann.client.batch_execute("SET TIME ZONE 'America/St_Johns'").unwrap();
    let ties = newest_first(entries(&db).into_iter().filter(|e| e.action == "test.same_time").collect());
    assert_eq!(ties.len(), 5);
    let pages = all_pages(&mut ann, &Filter { action: Some("test.same_time"), ..NO_FILTER }, 2);
    assert_eq!(pages.concat(), ties, "same time: by id, newest first, none twice");
    let everything = newest_first(entries(&db));
    assert_eq!(all_pages(&mut ann, &NO_FILTER, 3).concat(), everything);

    // A bad cursor or page size is refused (22023).
    let mut b64 = |s: &str| -> String {
        su.query_one("SELECT translate(encode(convert_to($1, 'UTF8'), 'base64'), E'\\n', '')", &[&s]).unwrap().get(0)
    };
    let bad = [
        "not a cursor!".to_string(),
        b64("{}"),
        b64("[1, 2]"),
        b64(r#"{"at": "not a time", "id": 5}"#),
        b64(r#"{"at": "2026-01-01T00:00:00Z", "id": "five"}"#),
        b64(r#"{"at": "2026-01-01T00:00:00Z"}"#),
    ];
    for cursor in &bad {
        assert_eq!(sqlstate(ann.call("SELECT dashboard_auth.list_audit($1, cursor => $2)", &[cursor])), "22023", "cursor {cursor:?}");
    }
    for size in [0, -1, 1001] {
        assert_eq!(sqlstate(ann.call("SELECT dashboard_auth.list_audit($1, page_size => $2)", &[&size])), "22023", "page size {size}");
    }
    let null_size: Option<i32> = None;
    assert_eq!(sqlstate(ann.call("SELECT dashboard_auth.list_audit($1, page_size => $2)", &[&null_size])), "22023");
}

#[test]
fn viewers_may_search_and_nobody_without_a_session() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    ann.churn(1, 2);
    let before = newest_first(entries(&db));
    let everything = search_ids(&mut vic, &NO_FILTER);
    assert_eq!(everything, before, "a viewer sees the whole log");
    // The search is recorded once for the session, however many searches follow (a
    // search as you type writes one entry).
    for _ in 0..3 {
        search_ids(&mut vic, &Filter { actor: Some("ann@example.com"), ..NO_FILTER });
    }
    let searched: Vec<Entry> = entries(&db).into_iter().filter(|e| e.action == "audit.searched").collect();
    assert_eq!(searched.len(), 1, "{searched:?}");
    assert_eq!(searched[0].actor, "vic@example.com");

    // No session: an unknown token, a signed-out session, a disabled admin's session.
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT dashboard_auth.list_audit('fbs_not_a_session')", &[])), "28000");
    let null_token: Option<String> = None;
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT dashboard_auth.list_audit($1)", &[&null_token])), "28000");
    let vic_id = admin_id(&db, "vic@example.com");
    let mut vic2 = Web { client: db.connect(Caller::Dashboard), token: login(&mut web, "vic@example.com", PASSWORD, "192.0.2.1").token().to_string() };
    vic.call("SELECT dashboard_auth.sign_out($1)", &[]).unwrap();
    assert_eq!(sqlstate(search(&mut vic, &NO_FILTER, 10, None).map(|_| Vec::new())), "28000", "signed out");
    ann.call("SELECT dashboard_auth.disable_admin($1, $2::text::uuid)", &[&vic_id]).unwrap();
    assert_eq!(sqlstate(search(&mut vic2, &NO_FILTER, 10, None).map(|_| Vec::new())), "28000", "disabled");

    // Only the dashboard's role may call it: not the app's roles, not operators (who read
    // the table itself).
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate(app.query("SELECT dashboard_auth.list_audit($1)", &[&ann.token])), "42501");
    let mut ops = db.connect(Caller::Operator);
    assert_eq!(sqlstate(ops.query("SELECT dashboard_auth.list_audit($1)", &[&ann.token])), "42501");
    // The web role itself without SET ROLE fluxbase_dashboard (it is NOINHERIT).
    assert_eq!(sqlstate(web.query("SELECT dashboard_auth.list_audit($1)", &[&ann.token])), "42501");
}

// ---------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------

const COLUMNS: [&str; 14] = [
    "id", "occurred_at", "actor_type", "actor_id", "actor", "action", "target_type", "target_id", "details", "ip",
    "user_agent", "chain_seq", "prev_hash", "hash",
];

/// A log with awkward values: a user agent holding a quote, a comma and a newline, an
/// IPv6 address, and an anonymous failure (no actor id, no target).
fn awkward_log(db: &TestDb) -> Web {
    offset_ids(db, 3);
    let mut ann = sign_in(db, "ann@example.com", "admin");
    assert!(login_from(&mut ann.client, "ann@example.com", PASSWORD, "2001:db8::7", "Agent \"7\", with comma\nand a second line"));
    assert!(!login_from(&mut ann.client, "ghost@example.com", "wrong password here", "198.51.100.4", "curl/8"));
    ann.call("SELECT * FROM dashboard_auth.set_setting($1, 'runner.row_limit', '77')", &[]).unwrap();
    ann.call("SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '1h')", &[]).unwrap();
    ann
}

fn parse_jsonl(text: &str) -> Vec<Value> {
    assert!(text.is_empty() || text.ends_with('\n'), "the export ends with a newline");
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON: {e}: {line:?}")))
        .collect()
}

/// An exported JSON object checked against the table's row, column by column.
fn assert_json_matches(db: &TestDb, line: &Value, entry: &Entry) {
    let object = line.as_object().expect("each line is an object");
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, COLUMNS.into_iter().collect(), "every column, nothing else");
    let id = entry.id;
    assert_eq!(line["id"].as_i64(), Some(id));
    assert_eq!(line["actor_type"].as_str(), Some(entry.actor_type.as_str()), "{id}");
    assert_eq!(line["actor_id"].as_str(), entry.actor_id.as_deref(), "{id}");
    assert_eq!(line["actor"].as_str(), Some(entry.actor.as_str()), "{id}");
    assert_eq!(line["action"].as_str(), Some(entry.action.as_str()), "{id}");
    assert_eq!(line["target_type"].as_str(), entry.target_type.as_deref(), "{id}");
    assert_eq!(line["target_id"].as_str(), entry.target_id.as_deref(), "{id}");
    assert_eq!(line["details"], entry.details, "{id}");
    assert_eq!(line["ip"].as_str(), entry.ip.as_deref(), "{id}");
    assert_eq!(line["user_agent"].as_str(), entry.user_agent.as_deref(), "{id}");
    assert_eq!(line["chain_seq"].as_i64(), entry.chain_seq, "{id}");
    assert_eq!(line["prev_hash"].as_str(), entry.prev_hash.as_deref(), "{id}");
    assert_eq!(line["hash"].as_str(), entry.hash.as_deref(), "{id}");
    // The time, to the microsecond, whatever zone the export wrote it in.
    let at = line["occurred_at"].as_str().expect("occurred_at is text");
    let same: bool = db
        .connect(Caller::Superuser)
        .query_one("SELECT $1::text::timestamptz = $2::text::timestamptz", &[&at, &entry.occurred_at])
        .unwrap()
        .get(0);
    assert!(same, "entry {id}: exported time {at} is not {}", entry.occurred_at);
}

/// The hash of an exported entry recomputed from the line alone (and the previous hash),
/// the way sql/audit.sql computes it: the export is enough to check the chain.
fn recomputed_hash(c: &mut Client, line: &Value) -> String {
    c.query_one(
        &format!(
            "WITH e AS (SELECT $1::text::jsonb AS j)
             SELECT encode(sha256(decode(j ->> 'prev_hash', 'hex') || convert_to(jsonb_build_array(
                        (j ->> 'chain_seq')::bigint, (j ->> 'id')::bigint,
                        to_char((j ->> 'occurred_at')::timestamptz AT TIME ZONE 'UTC', {UTC_FORMAT}),
                        j ->> 'actor_type', (j ->> 'actor_id')::uuid, j ->> 'actor', j ->> 'action',
                        j ->> 'target_type', j ->> 'target_id', j -> 'details', ((j ->> 'ip')::inet)::text,
                        j ->> 'user_agent')::text, 'UTF8')), 'hex')
               FROM e"
        ),
        &[&line.to_string()],
    )
    .unwrap()
    .get(0)
}

#[test]
fn export_as_json_lines_holds_every_entry_and_column() {
    let db = TestDb::new();
    awkward_log(&db);
    let cli = audit_cli(&db, Caller::Operator, &["export"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let lines = parse_jsonl(&cli.stdout);

    // Same entries as the table (the export's own audit.exported entry included: it is
    // written before the export runs), oldest first, every column as stored.
    let table = entries(&db);
    assert_eq!(
        lines.iter().map(|l| l["id"].as_i64().unwrap()).collect::<Vec<_>>(),
        table.iter().map(|e| e.id).collect::<Vec<_>>(),
    );
    for (line, entry) in lines.iter().zip(&table) {
        assert_json_matches(&db, line, entry);
    }
    let agent = lines.iter().find(|l| l["ip"] == "2001:db8::7").expect("the IPv6 sign-in");
    assert_eq!(agent["user_agent"], "Agent \"7\", with comma\nand a second line");
    let anonymous = lines.iter().find(|l| l["action"] == "admin.login_failed").unwrap();
    assert!(anonymous["actor_id"].is_null() && anonymous["target_id"].is_null(), "{anonymous}");
    assert_eq!(lines.last().unwrap()["action"], "audit.exported");

    // The chain can be checked from the file alone: each line links to the one before,
    // and each hash is the SHA-256 of the line's own content.
    let mut ops = db.connect(Caller::Operator);
    let mut previous = "0".repeat(64);
    for line in &lines {
        assert_eq!(line["prev_hash"].as_str().unwrap(), previous, "entry {} links to the one before", line["id"]);
        assert_eq!(recomputed_hash(&mut ops, line), line["hash"].as_str().unwrap(), "entry {}", line["id"]);
        previous = line["hash"].as_str().unwrap().to_string();
    }
}

/// One CSV field: NULL (empty, unquoted), quoted, or bare text.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Null,
    Quoted(String),
    Bare(String),
}

/// CSV as RFC 4180 has it: commas between fields, newlines between records, and quoted
/// fields that may hold commas, newlines and doubled quotes.
fn parse_csv(text: &str) -> Vec<Vec<Field>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut in_quotes, mut closed) = (false, false, false);
    let mut chars = text.chars().peekable();
    let finish = |field: &mut String, quoted: &mut bool, closed: &mut bool| -> Field {
        let value = std::mem::take(field);
        let made = if *quoted {
            Field::Quoted(value)
        } else if value.is_empty() {
            Field::Null
        } else {
            Field::Bare(value)
        };
        *quoted = false;
        *closed = false;
        made
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                    closed = true;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            ',' => record.push(finish(&mut field, &mut quoted, &mut closed)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(finish(&mut field, &mut quoted, &mut closed));
                records.push(std::mem::take(&mut record));
            }
            '"' => {
                assert!(field.is_empty() && !quoted, "a quote inside a bare field: {field:?}");
                quoted = true;
                in_quotes = true;
            }
            _ => {
                assert!(!closed, "text after a closing quote: {c:?}");
                field.push(c);
            }
        }
    }
    assert!(!in_quotes, "an unterminated quoted field");
    if !record.is_empty() || !field.is_empty() || quoted {
        record.push(finish(&mut field, &mut quoted, &mut closed));
        records.push(record);
    }
    records
}

#[test]
fn the_csv_parser_handles_quotes_commas_and_newlines() {
    let parsed = parse_csv("a,b,c\n\"x, y\",,\"say \"\"hi\"\"\nthere\"\n\"\",1,\r\n");
    assert_eq!(
        parsed,
        vec![
            vec![Field::Bare("a".into()), Field::Bare("b".into()), Field::Bare("c".into())],
            vec![Field::Quoted("x, y".into()), Field::Null, Field::Quoted("say \"hi\"\nthere".into())],
            vec![Field::Quoted(String::new()), Field::Bare("1".into()), Field::Null],
        ]
    );
}

#[test]
fn export_as_csv_quotes_every_value_and_leaves_null_empty() {
    let db = TestDb::new();
    awkward_log(&db);
    let mut files = TempFiles::new(&db);
    let file = files.path("audit.csv");
    let cli = audit_cli(&db, Caller::Operator, &["export", "--format", "csv", "--output", &show(&file)]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    assert_eq!(cli.stdout, "", "with --output, nothing on standard output");
    let content = std::fs::read_to_string(&file).unwrap();
    let records = parse_csv(&content);

    let header: Vec<Field> = COLUMNS.iter().map(|c| Field::Bare(c.to_string())).collect();
    assert_eq!(records[0], header);
    let rows = &records[1..];
    let table = entries(&db);
    assert_eq!(cli.stderr.trim(), format!("exported {} entries to {}", rows.len(), show(&file)));
    assert_eq!(rows.len(), table.len(), "every entry, the export's own record included");
    for (row, e) in rows.iter().zip(&table) {
        assert_eq!(row.len(), 14, "entry {}: {row:?}", e.id);
        let expected: Vec<Option<String>> = vec![
            Some(e.id.to_string()),
            Some(e.occurred_at.clone()),
            Some(e.actor_type.clone()),
            e.actor_id.clone(),
            Some(e.actor.clone()),
            Some(e.action.clone()),
            e.target_type.clone(),
            e.target_id.clone(),
            Some(e.details_text.clone()),
            e.ip_text.clone(),
            e.user_agent.clone(),
            e.chain_seq.map(|s| s.to_string()),
            e.prev_hash.clone(),
            e.hash.clone(),
        ];
        let got: Vec<Option<String>> = row
            .iter()
            .map(|f| match f {
                Field::Null => None,
                Field::Quoted(v) => Some(v.clone()),
                Field::Bare(v) => panic!("entry {}: a value that is not quoted: {v:?}", e.id),
            })
            .collect();
        assert_eq!(got, expected, "entry {}", e.id);
        let details: Value = serde_json::from_str(got[8].as_deref().unwrap()).unwrap();
        assert_eq!(details, e.details);
    }
    let anonymous = rows.iter().zip(&table).find(|(_, e)| e.action == "admin.login_failed").unwrap().0;
    assert_eq!(anonymous[3], Field::Null, "no actor id: empty, unquoted");
    assert_eq!(anonymous[7], Field::Null, "no target id");
    let awkward = rows.iter().find(|r| r[10] == Field::Quoted("Agent \"7\", with comma\nand a second line".into()));
    assert!(awkward.is_some(), "the user agent survives quoting");
    assert_eq!(awkward.unwrap()[9], Field::Quoted("2001:db8::7/128".into()));

    // The file must not exist: a second export to it is refused and leaves it as it was.
    let before = count_entries(&db);
    let again = audit_cli(&db, Caller::Operator, &["export", "--format", "csv", "--output", &show(&file)]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.starts_with("error: cannot create") && again.stderr.contains("must not exist"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), content);
    assert_eq!(count_entries(&db), before, "nothing exported, nothing recorded");
}

#[test]
fn export_filters_by_time_and_is_itself_audited() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 2);
    let t1 = a_moment_between(&db);
    ann.churn(2, 3);
    let t2 = a_moment_between(&db);
    ann.churn(3, 2);
    let table = entries(&db);
    let ids = |keep: &dyn Fn(&Entry) -> bool| table.iter().filter(|e| keep(e)).map(|e| e.id).collect::<Vec<_>>();
    let exported = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["export"];
        all.extend_from_slice(args);
        let cli = audit_cli(&db, Caller::Operator, &all);
        assert_eq!(cli.code, Some(0), "{cli:?}");
        parse_jsonl(&cli.stdout).iter().map(|l| l["id"].as_i64().unwrap()).collect()
    };

    let middle = exported(&["--since", &t1, "--until", &t2]);
    assert_eq!(middle, ids(&|e| e.occurred_at >= t1 && e.occurred_at < t2));
    assert_eq!(middle.len(), 3);
    assert_eq!(exported(&["--until", &t1]), ids(&|e| e.occurred_at < t1));
    let since_t2 = exported(&["--since", &t2]);
    assert!(since_t2.starts_with(&ids(&|e| e.occurred_at >= t2)), "{since_t2:?}");
    // From t2 on, the earlier exports' own records come along.
    let later: Vec<String> = entries(&db).into_iter().filter(|e| since_t2.contains(&e.id) && e.occurred_at >= t2).map(|e| e.action).collect();
    assert_eq!(later.iter().filter(|a| *a == "audit.exported").count(), 3, "{later:?}");
    // CSV takes the same range.
    let cli = audit_cli(&db, Caller::Operator, &["export", "--format", "csv", "--since", &t1, "--until", &t2]);
    let csv_ids: Vec<i64> = parse_csv(&cli.stdout)[1..]
        .iter()
        .map(|r| match &r[0] {
            Field::Quoted(v) => v.parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(csv_ids, middle);

    // Each export is recorded: by the operator's role, with its range, format and destination.
    let mut files = TempFiles::new(&db);
    let file = files.path("range.jsonl");
    let cli = audit_cli(&db, Caller::Operator, &["export", "--since", &t1, "--until", &t2, "--output", &show(&file)]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let record = last_of(&db, "audit.exported");
    assert_eq!((record.actor_type.as_str(), record.actor.as_str()), ("operator", "fluxbase_ops"));
    assert_eq!(record.actor_id, None);
    assert_eq!(record.details["format"], "jsonl");
    assert_eq!(record.details["destination"], show(&file));
    assert_eq!(record.details["entries"], 3);
    let mut su = db.connect(Caller::Superuser);
    let range: (bool, bool) = {
        let r = su
            .query_one(
                "SELECT (details ->> 'since')::timestamptz = $1::text::timestamptz, (details ->> 'until')::timestamptz = $2::text::timestamptz
                   FROM dashboard_auth.audit_log WHERE id = $3",
                &[&t1, &t2, &record.id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(range, (true, true), "the range as given: {}", record.details);
    let stdout_record = entries(&db).into_iter().filter(|e| e.action == "audit.exported").nth(3).unwrap();
    assert_eq!(stdout_record.details["format"], "csv");
    assert_eq!(stdout_record.details["destination"], "standard output");
    let all_csv = entries(&db).into_iter().filter(|e| e.action == "audit.exported").collect::<Vec<_>>();
    assert!(all_csv[0].details["since"].is_string() && all_csv[1].details["since"].is_null(), "no --since: null");

    // A time Postgres cannot read is a one-line error, and nothing is exported or recorded.
    let before = count_entries(&db);
    let cli = audit_cli(&db, Caller::Operator, &["export", "--since", "last tuesday-ish"]);
    assert_eq!(cli.code, Some(1));
    assert_eq!(cli.stdout, "");
    assert_eq!(cli.stderr.lines().count(), 1, "{}", cli.stderr);
    assert!(cli.stderr.starts_with("error: ") && cli.stderr.contains("last tuesday-ish"), "{}", cli.stderr);
    assert_eq!(count_entries(&db), before);

    // Only operators export: the web role and the app role are told so, and the log stays as it was.
    for caller in [Caller::Dashboard, Caller::App] {
        let cli = audit_cli(&db, caller, &["export"]);
        assert_eq!(cli.code, Some(1));
        assert_eq!(cli.stdout, "");
        assert!(cli.stderr.contains(&format!("the role {} may not run operator commands", caller.user())), "{}", cli.stderr);
    }
    assert_eq!(count_entries(&db), before);
}

#[test]
fn the_export_record_counts_what_the_export_holds() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 3);
    let mut files = TempFiles::new(&db);
    let file = files.path("all.jsonl");
    let cli = audit_cli(&db, Caller::Operator, &["export", "--output", &show(&file)]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let lines = parse_jsonl(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(cli.stderr.trim(), format!("exported {} entries to {}", lines.len(), show(&file)));
    let record = last_of(&db, "audit.exported");
    assert_eq!(
        record.details["entries"].as_i64(),
        Some(lines.len() as i64),
        "the record's count and the file's {} lines differ: {}",
        lines.len(),
        record.details
    );
}

/// `fluxbase audit <args>` as the operator, run from `dir`.
fn audit_cli_in(db: &TestDb, dir: &Path, args: &[&str]) -> Cli {
    let output = run(fluxbase().current_dir(dir).arg("audit").args(args).env("DATABASE_URL", db.url(Caller::Operator, "sslmode=disable")));
    let (stdout, stderr) = text(&output);
    Cli { code: output.status.code(), stdout, stderr }
}

/// A new directory in the temp directory, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(db: &TestDb, name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}-{name}", db.name));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_failed_export_leaves_no_file() {
    let db = TestDb::new();
    let mut files = TempFiles::new(&db);
    for (caller, extra) in [(Caller::Operator, vec!["--since", "not a time"]), (Caller::Dashboard, vec![])] {
        let file = files.path(&format!("failed-{}.jsonl", caller.user()));
        let mut args = vec!["export", "--output"];
        let shown = show(&file);
        args.push(&shown);
        args.extend(extra);
        let cli = audit_cli(&db, caller, &args);
        assert_eq!(cli.code, Some(1), "{cli:?}");
        assert!(!file.exists(), "{args:?} failed ({}) but left the file {} behind", cli.stderr.trim(), file.display());
    }
}

/// The export's record names the file by its full path, wherever the command ran.
#[test]
fn the_export_record_names_the_file_by_its_full_path() {
    let db = TestDb::new();
    let dir = TempDir::new(&db, "exports");
    let cli = audit_cli_in(&db, &dir.0, &["export", "--output", "audit.jsonl"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    assert!(dir.0.join("audit.jsonl").exists());
    let record = last_of(&db, "audit.exported");
    assert_eq!(record.details["destination"], show(&dir.0.join("audit.jsonl")), "{}", record.details);
}

#[test]
fn purge_records_the_full_path_of_a_relative_export_file() {
    let db = TestDb::new();
    let dir = TempDir::new(&db, "purges");
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 2);
    let cut = a_moment_between(&db);
    let cli = audit_cli_in(&db, &dir.0, &["purge", "--before", &cut, "--export-to", "old.jsonl", "--yes"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let full = show(&dir.0.join("old.jsonl"));
    assert!(cli.stdout.contains(&format!("entries to {full};")), "{}", cli.stdout);
    assert_eq!(parse_jsonl(&std::fs::read_to_string(dir.0.join("old.jsonl")).unwrap()).len(), 4);
    assert_eq!(last_of(&db, "audit.purged").details["exported_to"], full.as_str());
    assert_eq!(last_of(&db, "audit.exported").details["destination"], full.as_str());
}

// ---------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------

fn parse_intact(stdout: &str) -> (i64, String) {
    let line = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let rest = line.strip_prefix("intact, ").unwrap_or_else(|| panic!("not intact: {line}"));
    let (count, head) = rest.split_once(" entries, head ").unwrap_or_else(|| panic!("{line}"));
    (count.parse().unwrap(), head.to_string())
}

#[test]
fn verify_an_intact_chain_from_the_cli_and_sql() {
    let db = TestDb::new();
    offset_ids(&db, 2);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 4);
    let before = entries(&db);
    let last = before.iter().max_by_key(|e| e.chain_seq).unwrap().clone();

    let cli = audit_cli(&db, Caller::Operator, &["verify"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let (count, head) = parse_intact(&cli.stdout);
    assert_eq!(count, before.len() as i64);
    assert_eq!(Some(head.clone()), last.hash, "the head is the last entry's hash");
    assert_eq!(head.len(), 64);

    // The verification is recorded, after the head it reports.
    let verified = last_of(&db, "audit.verified");
    assert_eq!((verified.actor_type.as_str(), verified.actor.as_str()), ("operator", "fluxbase_ops"));
    assert_eq!(verified.details["valid"], true);
    assert_eq!(verified.details["entries"], count);
    assert_eq!(verified.details["head_hash"], head.as_str());
    assert_eq!(verified.details["head_seq"].as_i64(), last.chain_seq);
    assert_eq!(verified.chain_seq, last.chain_seq.map(|s| s + 1));
    assert_eq!(verified.prev_hash.as_deref(), Some(head.as_str()));

    // SQL, as an operator and as the superuser: each sees the previous verification too.
    for caller in [Caller::Operator, Caller::Superuser] {
        let mut c = db.connect(caller);
        let now = entries(&db);
        let last = now.iter().max_by_key(|e| e.chain_seq).unwrap();
        let (valid, n, first_invalid, head_seq, head_hash, message) = verify_sql(&mut c);
        assert!(valid, "{message}");
        assert_eq!(n, now.len() as i64);
        assert_eq!(first_invalid, None);
        assert_eq!(head_seq, last.chain_seq);
        assert_eq!(head_hash, last.hash);
        assert_eq!(message, format!("intact, {n} entries, head {}", last.hash.as_deref().unwrap()));
        assert_eq!(last_of(&db, "audit.verified").actor, caller.user());
    }

    // Pending entries (a writer that did not get the lock) are sealed first, then verified.
    let mut holder = db.connect(Caller::Superuser);
    let mut tx = holder.transaction().unwrap();
    tx.execute("SELECT dashboard_auth.hold_lock('audit_chain')", &[]).unwrap();
    ann.churn(2, 2);
    let pending: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE chain_seq IS NULL", &[]).unwrap().get(0);
    assert_eq!(pending, 2, "the writers did not wait for the lock");
    tx.rollback().unwrap();
    let cli = audit_cli(&db, Caller::Operator, &["verify"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let sealed = entries(&db);
    assert!(sealed.iter().all(|e| e.chain_seq.is_some()), "verification seals what is pending");
    let (count, head) = parse_intact(&cli.stdout);
    assert_eq!(count, sealed.len() as i64 - 1, "all but the verification's own entry");
    assert_eq!(sealed.iter().find(|e| e.chain_seq == Some(count)).unwrap().hash.as_deref(), Some(head.as_str()));

    // Not from an older snapshot: REPEATABLE READ is refused (25000).
    let mut ops = db.connect(Caller::Operator);
    let mut tx = ops.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).start().unwrap();
    assert_eq!(sqlstate(tx.query("SELECT * FROM dashboard_auth.operator_verify_audit()", &[])), "25000");
    drop(tx);

    // Only operators verify.
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.operator_verify_audit()", &[])), "42501");
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate(app.query("SELECT * FROM dashboard_auth.operator_verify_audit()", &[])), "42501");
    let cli = audit_cli(&db, Caller::Dashboard, &["verify"]);
    assert_eq!(cli.code, Some(1));
    assert!(cli.stderr.contains("the role fluxbase_web may not run operator commands"), "{}", cli.stderr);
}

/// A log of a few entries whose ids are not their chain positions.
fn a_short_log(db: &TestDb) -> Vec<Entry> {
    offset_ids(db, 4);
    let mut ann = sign_in(db, "ann@example.com", "admin");
    ann.churn(1, 5);
    let all = entries(db);
    assert!(all.iter().all(|e| e.chain_seq.is_some() && e.chain_seq != Some(e.id)), "{all:?}");
    all
}

fn entry_at(all: &[Entry], seq: i64) -> &Entry {
    all.iter().find(|e| e.chain_seq == Some(seq)).unwrap()
}

#[test]
fn verify_names_an_altered_entry() {
    let db = TestDb::new();
    let all = a_short_log(&db);
    let victim = entry_at(&all, 4).clone();
    let mut su = db.connect(Caller::Superuser);
    set_trigger(&mut su, false);
    su.execute("UPDATE dashboard_auth.audit_log SET details = details || '{\"new\": \"999\"}' WHERE id = $1", &[&victim.id]).unwrap();
    set_trigger(&mut su, true);

    let expected = format!("entry 4 (audit_log.id {}) does not match its hash: its content was altered", victim.id);
    let cli = audit_cli(&db, Caller::Operator, &["verify"]);
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert_eq!(cli.stdout, "");
    assert_eq!(cli.stderr, format!("error: the audit log is broken: {expected}\n"));

    let mut ops = db.connect(Caller::Operator);
    let (valid, n, first_invalid, head_seq, head_hash, message) = verify_sql(&mut ops);
    assert!(!valid);
    assert_eq!(first_invalid, Some(4));
    assert_eq!(n, 3, "the entries before it check out");
    assert_eq!((head_seq, head_hash), (None, None), "no head for a broken chain");
    assert_eq!(message, expected);

    // A failed verification is recorded like any other.
    let verified = last_of(&db, "audit.verified");
    assert_eq!(verified.details["valid"], false);
    assert_eq!(verified.details["first_invalid_seq"], 4);

    // Altering the content and sealing it again: the entry after it no longer links.
    let other = entry_at(&all, 2).clone();
    set_trigger(&mut su, false);
    su.execute("UPDATE dashboard_auth.audit_log SET details = $2 WHERE id = $1", &[&victim.id, &victim.details]).unwrap();
    su.execute(
        "UPDATE dashboard_auth.audit_log a SET actor = 'mallory@example.com' WHERE id = $1",
        &[&other.id],
    )
    .unwrap();
    su.execute(
        "UPDATE dashboard_auth.audit_log a SET hash = dashboard_auth.audit_entry_hash(a.prev_hash, a.chain_seq, a) WHERE id = $1",
        &[&other.id],
    )
    .unwrap();
    set_trigger(&mut su, true);
    let third = entry_at(&all, 3);
    let (valid, _, first_invalid, _, _, message) = verify_sql(&mut ops);
    assert!(!valid);
    assert_eq!(first_invalid, Some(3));
    assert_eq!(message, format!("entry 3 (audit_log.id {}) does not match its hash: the entry before it was altered or removed", third.id));
}

#[test]
fn verify_finds_a_deleted_entry() {
    let db = TestDb::new();
    let all = a_short_log(&db);
    let mut su = db.connect(Caller::Superuser);
    set_trigger(&mut su, false);
    su.execute("DELETE FROM dashboard_auth.audit_log WHERE id = $1", &[&entry_at(&all, 3).id]).unwrap();
    set_trigger(&mut su, true);

    let cli = audit_cli(&db, Caller::Operator, &["verify"]);
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert_eq!(cli.stderr, "error: the audit log is broken: entry 3 of the chain is missing\n");
    let mut ops = db.connect(Caller::Operator);
    let (valid, n, first_invalid, _, _, message) = verify_sql(&mut ops);
    assert!(!valid);
    assert_eq!((n, first_invalid), (2, Some(3)));
    assert_eq!(message, "entry 3 of the chain is missing");

    // The first entries, with no purge that recorded their removal.
    set_trigger(&mut su, false);
    su.execute("DELETE FROM dashboard_auth.audit_log WHERE chain_seq IN (1, 2)", &[]).unwrap();
    set_trigger(&mut su, true);
    let (valid, _, first_invalid, _, _, message) = verify_sql(&mut ops);
    assert!(!valid);
    assert_eq!(first_invalid, Some(1));
    assert_eq!(message, "entries 1 to 3 are missing, and no purge recorded their removal");
    let cli = audit_cli(&db, Caller::Operator, &["verify"]);
    assert_eq!(cli.code, Some(1));
    assert!(cli.stderr.contains("entries 1 to 3 are missing"), "{}", cli.stderr);
}

// ---------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------

/// `purged N entries (chain A to B), exported first with M entries to FILE; the chain goes on from HASH`
fn parse_purged(stdout: &str) -> (i64, i64, i64, i64, String, String) {
    let line = stdout.trim_end();
    let rest = line.strip_prefix("purged ").unwrap_or_else(|| panic!("{line}"));
    let (removed, rest) = rest.split_once(" entries (chain ").unwrap();
    let (from, rest) = rest.split_once(" to ").unwrap();
    let (to, rest) = rest.split_once("), exported first with ").unwrap();
    let (written, rest) = rest.split_once(" entries to ").unwrap();
    let (file, hash) = rest.split_once("; the chain goes on from ").unwrap();
    (removed.parse().unwrap(), from.parse().unwrap(), to.parse().unwrap(), written.parse().unwrap(), file.to_string(), hash.to_string())
}

/// Purges before `cut` with the CLI and checks everything a purge promises. Returns the
/// purge's entry.
fn purge_and_check(db: &TestDb, cut: &str, file: &Path) -> Entry {
    let before = entries(db);
    let first_kept = before.iter().filter(|e| e.occurred_at.as_str() >= cut).filter_map(|e| e.chain_seq).min().unwrap();
    let removed: Vec<&Entry> = before.iter().filter(|e| e.chain_seq.is_some_and(|s| s < first_kept)).collect();
    assert!(!removed.is_empty());
    assert!(removed.iter().all(|e| e.occurred_at.as_str() < cut));
    let (from_seq, to_seq) = (removed.iter().filter_map(|e| e.chain_seq).min().unwrap(), first_kept - 1);
    let last_hash = entry_at(&before, to_seq).hash.clone().unwrap();

    let cli = audit_cli(db, Caller::Operator, &["purge", "--before", cut, "--export-to", &show(file), "--yes"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let (n, from, to, written, shown_file, hash) = parse_purged(&cli.stdout);
    assert_eq!((n, from, to), (removed.len() as i64, from_seq, to_seq), "{}", cli.stdout);
    assert_eq!(shown_file, show(file));
    assert_eq!(hash, last_hash);

    // The file holds every removed entry, as it was (JSON Lines, hashes included).
    let lines = parse_jsonl(&std::fs::read_to_string(file).unwrap());
    assert_eq!(written, lines.len() as i64);
    let exported: HashMap<i64, &Value> = lines.iter().map(|l| (l["id"].as_i64().unwrap(), l)).collect();
    for entry in &removed {
        let line = exported.get(&entry.id).unwrap_or_else(|| panic!("removed entry {} is not in the file", entry.id));
        assert_json_matches(db, line, entry);
    }
    assert!(lines.iter().all(|l| before.iter().any(|e| e.id == l["id"].as_i64().unwrap() && e.occurred_at.as_str() < cut)), "only entries before the cut");

    // The table no longer has them; everything else is still there.
    let after = entries(db);
    for entry in &removed {
        assert!(after.iter().all(|e| e.id != entry.id), "entry {} is still there", entry.id);
    }
    for entry in before.iter().filter(|e| !removed.iter().any(|r| r.id == e.id)) {
        assert!(after.iter().any(|e| e.id == entry.id && e.hash == entry.hash), "entry {} was kept as it was", entry.id);
    }

    // The export was recorded, then the purge, by the operator's role.
    let exported_record = last_of(db, "audit.exported");
    assert_eq!(exported_record.details["destination"], show(file));
    assert!(exported_record.details["since"].is_null());
    let purged = last_of(db, "audit.purged");
    assert_eq!((purged.actor_type.as_str(), purged.actor.as_str()), ("operator", "fluxbase_ops"));
    assert!(purged.id > exported_record.id);
    assert_eq!(purged.details["removed_from_seq"], from_seq);
    assert_eq!(purged.details["removed_to_seq"], to_seq);
    assert_eq!(purged.details["removed_count"], removed.len() as i64);
    assert_eq!(purged.details["last_hash"], last_hash.as_str());
    assert_eq!(purged.details["exported_to"], show(file));
    let same_cut: bool = db
        .connect(Caller::Superuser)
        .query_one("SELECT (details ->> 'before')::timestamptz = $1::text::timestamptz FROM dashboard_auth.audit_log WHERE id = $2", &[&cut, &purged.id])
        .unwrap()
        .get(0);
    assert!(same_cut, "{}", purged.details);

    // The rest verifies, from the CLI and in SQL.
    let cli = audit_cli(db, Caller::Operator, &["verify"]);
    assert_eq!(cli.code, Some(0), "after the purge: {cli:?}");
    let mut ops = db.connect(Caller::Operator);
    let (valid, n, _, head_seq, _, message) = verify_sql(&mut ops);
    assert!(valid, "{message}");
    let now = entries(db);
    assert_eq!(n, now.len() as i64 - 1, "every entry left but this verification's own");
    assert_eq!(head_seq, now.iter().filter_map(|e| e.chain_seq).max().map(|s| s - 1));
    assert_eq!(now.iter().filter_map(|e| e.chain_seq).min(), Some(to_seq + 1), "the chain goes on where the purge ended");
    purged
}

#[test]
fn purge_exports_then_removes_old_entries_and_the_chain_still_verifies() {
    let db = TestDb::new();
    let mut files = TempFiles::new(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 4);
    let cut1 = a_moment_between(&db);
    ann.churn(2, 3);
    let first = purge_and_check(&db, &cut1, &files.path("purge1.jsonl"));
    assert_eq!(first.details["removed_from_seq"], 1);
    assert_eq!(first.details["removed_count"], 6, "the admin's creation, sign-in and four settings");

    // A second purge later: it removes the first purge's own entries too, and the chain
    // still starts where the recorded purge says.
    let cut2 = a_moment_between(&db);
    ann.churn(3, 2);
    let second = purge_and_check(&db, &cut2, &files.path("purge2.jsonl"));
    assert_eq!(second.details["removed_from_seq"], 7);
    assert!(entries(&db).iter().all(|e| e.id != first.id), "the first purge's entry went with the second");

    // Nothing older than the date: nothing done, no file written.
    let empty = files.path("nothing.jsonl");
    let before = count_entries(&db);
    let cli = audit_cli(&db, Caller::Operator, &["purge", "--before", "2001-01-01", "--export-to", &show(&empty), "--yes"]);
    assert_eq!(cli.code, Some(0), "{cli:?}");
    assert_eq!(cli.stdout.trim(), "nothing to purge: no entry is older than 2001-01-01");
    assert!(!empty.exists());
    assert_eq!(count_entries(&db), before);

    // The export file must be new: an existing one is refused before anything is removed.
    let taken = files.path("taken.jsonl");
    std::fs::write(&taken, "keep me\n").unwrap();
    let cut3 = a_moment_between(&db);
    let cli = audit_cli(&db, Caller::Operator, &["purge", "--before", &cut3, "--export-to", &show(&taken), "--yes"]);
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(cli.stderr.contains("must not exist"), "{}", cli.stderr);
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me\n");
    assert_eq!(count_entries(&db), before);
    let (valid, _, _, _, _, message) = verify_sql(&mut db.connect(Caller::Operator));
    assert!(valid, "{message}");
}

#[test]
fn only_operators_may_purge() {
    let db = TestDb::new();
    let mut files = TempFiles::new(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 3);
    let cut = a_moment_between(&db);
    let before = entries(&db);
    let to_seq = before.iter().filter_map(|e| e.chain_seq).max().unwrap();
    let last_hash = entry_at(&before, to_seq).hash.clone().unwrap();
    let purge_sql = "SELECT dashboard_auth.operator_purge_audit($1::text::timestamptz, $2, $3, '/tmp/elsewhere.jsonl')";

    // The web role and an app role may not call the purge (or its range).
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, purge_sql, &[&cut, &to_seq, &last_hash])), "42501");
    assert_eq!(sqlstate(web.query(purge_sql, &[&cut, &to_seq, &last_hash])), "42501");
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.operator_plan_audit_purge(now())", &[])), "42501");
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate(app.query(purge_sql, &[&cut, &to_seq, &last_hash])), "42501");
    // The function is granted to fluxbase_operator alone (and kept by its owner).
    let grantees: Vec<String> = db
        .connect(Caller::Superuser)
        .query(
            "SELECT DISTINCT coalesce(r.rolname, 'PUBLIC')
               FROM pg_proc p CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               LEFT JOIN pg_roles r ON r.oid = a.grantee
              WHERE p.oid = 'dashboard_auth.operator_purge_audit(timestamptz, bigint, text, text)'::regprocedure
                AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(grantees, ["fluxbase_operator"]);

    // A plain DELETE is refused: to the operator, and by the trigger to the superuser;
    // so are UPDATE and TRUNCATE.
    let mut ops = db.connect(Caller::Operator);
    assert_eq!(sqlstate(ops.query("DELETE FROM dashboard_auth.audit_log", &[])), "42501");
    assert_eq!(sqlstate(ops.query("UPDATE dashboard_auth.audit_log SET actor = 'x'", &[])), "42501");
    assert_eq!(sqlstate(ops.query("INSERT INTO dashboard_auth.audit_purges_in_progress VALUES (pg_current_xact_id())", &[])), "42501");
    let mut su = db.connect(Caller::Superuser);
    for (sql, op) in [
        ("DELETE FROM dashboard_auth.audit_log WHERE chain_seq = 1", "delete"),
        ("UPDATE dashboard_auth.audit_log SET details = '{}' WHERE chain_seq = 1", "update"),
        ("TRUNCATE dashboard_auth.audit_log", "truncate"),
    ] {
        let err = su.execute(sql, &[]).unwrap_err();
        let db_error = err.as_db_error().unwrap();
        assert_eq!(db_error.code().code(), "42501", "{sql}");
        assert_eq!(db_error.message(), format!("the audit log is append-only: {op} is refused"));
    }

    // The CLI: without --yes nothing happens; as the web role it is refused.
    let file = files.path("refused.jsonl");
    let cli = audit_cli(&db, Caller::Operator, &["purge", "--before", &cut, "--export-to", &show(&file)]);
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert_eq!(cli.stderr.lines().count(), 1);
    assert!(cli.stderr.starts_with("error: purging removes entries for good: add --yes to confirm"), "{}", cli.stderr);
    assert!(!file.exists());
    let cli = audit_cli(&db, Caller::Dashboard, &["purge", "--before", &cut, "--export-to", &show(&file), "--yes"]);
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(cli.stderr.contains("the role fluxbase_web may not run operator commands"), "{}", cli.stderr);
    assert!(!file.exists());

    let after = entries(&db);
    assert_eq!(after.len(), before.len(), "nothing removed, nothing recorded");
    assert!(after.iter().zip(&before).all(|(a, b)| a.id == b.id && a.hash == b.hash));
}

#[test]
fn purge_refuses_a_range_that_is_not_the_one_exported() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 3);
    let cut = a_moment_between(&db);
    ann.churn(2, 2);
    let mut ops = db.connect(Caller::Operator);
    let range = ops.query_one("SELECT from_seq, to_seq, entries, last_hash FROM dashboard_auth.operator_plan_audit_purge($1::text::timestamptz)", &[&cut]).unwrap();
    let (from_seq, to_seq, n, last_hash): (i64, i64, i64, String) = (range.get(0), range.get(1), range.get(2), range.get(3));
    assert_eq!((from_seq, to_seq, n), (1, 5, 5));
    let before = count_entries(&db);
    let purge = |ops: &mut Client, before: &str, to: i64, hash: &str, file: &str| {
        sqlstate(ops.query(
            "SELECT dashboard_auth.operator_purge_audit($1::text::timestamptz, $2, $3, $4)",
            &[&before, &to, &hash, &file],
        ))
    };
    assert_eq!(purge(&mut ops, &cut, to_seq, "00", "/tmp/x.jsonl"), "55000", "another hash");
    assert_eq!(purge(&mut ops, &cut, to_seq + 2, entry_at(&entries(&db), to_seq + 2).hash.as_deref().unwrap(), "/tmp/x.jsonl"), "55000", "entries after the date");
    assert_eq!(purge(&mut ops, &cut, to_seq, &last_hash, " "), "22023", "no file named");
    assert_eq!(sqlstate(ops.query("SELECT * FROM dashboard_auth.operator_plan_audit_purge(NULL)", &[])), "22023");
    assert_eq!(count_entries(&db), before);
}

#[test]
fn purge_refuses_a_missing_date() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 3);
    let all = entries(&db);
    let to_seq = all.iter().filter_map(|e| e.chain_seq).max().unwrap();
    let last_hash = entry_at(&all, to_seq).hash.clone().unwrap();
    let mut ops = db.connect(Caller::Operator);
    let outcome = ops.query("SELECT dashboard_auth.operator_purge_audit(NULL, $1, $2, '/tmp/x.jsonl')::text", &[&to_seq, &last_hash]);
    let count = count_entries(&db);
    assert_eq!(
        outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string()).as_deref(),
        Some("22023"),
        "purged without a date: {:?}; {count} entries left",
        outcome.map(|rows| rows[0].get::<_, String>(0))
    );
}

/// A purge never takes the newest entry: the chain goes on from it, so the purge's own
/// entry links to what came before and a head kept elsewhere can still be checked.
#[test]
fn purging_everything_keeps_the_newest_entry_and_the_chain_goes_on() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    ann.churn(1, 2);
    std::thread::sleep(Duration::from_millis(50));
    let mut ops = db.connect(Caller::Operator);
    let newest: (i64, String) = {
        let row = db
            .connect(Caller::Superuser)
            .query_one("SELECT chain_seq, encode(hash, 'hex') FROM dashboard_auth.audit_log ORDER BY chain_seq DESC LIMIT 1", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    let range = ops.query_one("SELECT to_seq, entries, last_hash FROM dashboard_auth.operator_plan_audit_purge(clock_timestamp())", &[]).unwrap();
    let (to_seq, n, last_hash): (i64, i64, String) = (range.get(0), range.get(1), range.get(2));
    assert_eq!((to_seq, n), (newest.0 - 1, newest.0 - 1), "every entry but the newest");
    ops.execute("SELECT dashboard_auth.operator_purge_audit(clock_timestamp(), $1, $2, '/tmp/all.jsonl')", &[&to_seq, &last_hash]).unwrap();
    let purged = last_of(&db, "audit.purged");
    assert_eq!(purged.details["removed_to_seq"], to_seq);
    assert_eq!(
        (purged.chain_seq, purged.prev_hash.as_deref()),
        (Some(newest.0 + 1), Some(newest.1.as_str())),
        "the purge's entry continues the chain after the newest entry"
    );
    let (valid, _, _, head_seq, _, message) = verify_sql(&mut ops);
    assert!(valid, "{message}");
    assert_eq!(head_seq, Some(newest.0 + 1));
}

// ---------------------------------------------------------------------------------
// Settings overview
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct SettingRow {
    key: String,
    value: String,
    default_value: String,
    is_default: bool,
    description: String,
    changed_by: Option<String>,
    changed_at: Option<String>,
}

fn settings(web: &mut Web) -> Vec<SettingRow> {
    web.call(
        &format!(
            "SELECT key, value, default_value, is_default, description, changed_by,
                    to_char(changed_at AT TIME ZONE 'UTC', {UTC_FORMAT})
               FROM dashboard_auth.list_settings($1)"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| SettingRow {
        key: r.get(0),
        value: r.get(1),
        default_value: r.get(2),
        is_default: r.get(3),
        description: r.get(4),
        changed_by: r.get(5),
        changed_at: r.get(6),
    })
    .collect()
}

fn setting<'a>(rows: &'a [SettingRow], key: &str) -> &'a SettingRow {
    rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no setting {key}"))
}

#[test]
fn list_settings_says_who_changed_a_setting_and_when() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let mut bob = sign_in(&db, "bob@example.com", "admin");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");

    // Untouched: every setting at its default, changed by nobody.
    let fresh = settings(&mut vic);
    let defined: i64 =
        db.connect(Caller::Superuser).query_one("SELECT count(*) FROM dashboard_auth.setting_definitions()", &[]).unwrap().get(0);
    assert!(defined >= 16, "{defined}");
    assert_eq!(fresh.len() as i64, defined, "{:?}", fresh.iter().map(|r| &r.key).collect::<Vec<_>>());
    let keys: Vec<&str> = fresh.iter().map(|r| r.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by key");
    for row in &fresh {
        assert!(row.is_default && row.value == row.default_value, "{row:?}");
        assert_eq!((row.changed_by.as_deref(), row.changed_at.as_deref()), (None, None), "{row:?}");
        assert!(!row.description.is_empty(), "{row:?}");
    }
    assert_eq!(setting(&fresh, "session.idle_timeout").default_value, "30m");

    let t0 = db_now(&db);
    ann.call("SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '1h')", &[]).unwrap();
    let t1 = db_now(&db);
    let rows = settings(&mut vic);
    let idle = setting(&rows, "session.idle_timeout");
    assert_eq!((idle.value.as_str(), idle.default_value.as_str(), idle.is_default), ("1h", "30m", false));
    assert_eq!(idle.changed_by.as_deref(), Some("ann@example.com"));
    let at = idle.changed_at.clone().expect("a change time");
    assert!(t0 <= at && at <= t1, "{t0} <= {at} <= {t1}");
    for row in rows.iter().filter(|r| r.key != "session.idle_timeout") {
        assert!(row.is_default && row.changed_by.is_none() && row.changed_at.is_none(), "{row:?}");
    }
    let entry = last_of(&db, "settings.changed");
    assert_eq!((entry.actor.as_str(), entry.target_id.as_deref()), ("ann@example.com", Some("session.idle_timeout")));

    // Another admin changes it again: the overview names the latest.
    std::thread::sleep(Duration::from_millis(20));
    bob.call("SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '2h')", &[]).unwrap();
    let rows = settings(&mut ann);
    let idle = setting(&rows, "session.idle_timeout");
    assert_eq!((idle.value.as_str(), idle.changed_by.as_deref()), ("2h", Some("bob@example.com")));
    assert!(idle.changed_at.clone().unwrap() > at, "the time of the latest change");

    // Back to the default (reset, or set to the default value): a default again.
    ann.call("SELECT * FROM dashboard_auth.set_setting($1, 'lockout.max_failures', '7')", &[]).unwrap();
    ann.call("SELECT * FROM dashboard_auth.reset_setting($1, 'lockout.max_failures')", &[]).unwrap();
    bob.call("SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '30m')", &[]).unwrap();
    for row in settings(&mut vic) {
        assert!(row.is_default && row.value == row.default_value && row.changed_by.is_none(), "{row:?}");
    }

    // Viewers read but do not change; nobody reads without a session.
    assert_eq!(sqlstate(vic.call("SELECT * FROM dashboard_auth.set_setting($1, 'session.idle_timeout', '1h')", &[])), "42501");
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.list_settings('fbs_nobody')", &[])), "28000");
}

// ---------------------------------------------------------------------------------
// Action groups
// ---------------------------------------------------------------------------------

/// list_audit_groups(): (action_group, label, entries), in the order a page shows them.
fn audit_groups(c: &mut Client) -> Vec<(String, String, Vec<String>)> {
    c.query("SELECT action_group, label, actions FROM dashboard_auth.list_audit_groups()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The groups whose most specific matching entry matches `action` (an entry is an action,
/// or a prefix ending in a dot), as the README says; exactly one when the groups are right.
fn groups_of(groups: &[(String, String, Vec<String>)], action: &str) -> BTreeSet<String> {
    let matches = |entry: &String| entry == action || (entry.ends_with('.') && action.starts_with(entry.as_str()));
    let best = groups.iter().flat_map(|g| g.2.iter()).filter(|e| matches(e)).map(|e| e.len()).max();
    groups
        .iter()
        .filter(|g| g.2.iter().any(|e| matches(e) && Some(e.len()) == best))
        .map(|g| g.0.clone())
        .collect()
}

/// Every `'x.y'` literal (lower case, dotted; or a prefix ending in a dot) in the text:
/// each quote is tried as an opening one, so an apostrophe in a comment cannot hide one.
fn dotted_literals(text: &str) -> Vec<String> {
    let quotes: Vec<usize> = text.match_indices('\'').map(|(i, _)| i).collect();
    quotes
        .windows(2)
        .map(|w| &text[w[0] + 1..w[1]])
        .filter(|s| {
            s.contains('.')
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
                && !s.contains("..")
        })
        .map(str::to_string)
        .collect()
}

/// The audit actions the extension may write, read from its source: every dotted literal
/// in sql/ and in extension/src (outside its tests), but those that are names of another
/// kind: schema-qualified objects, settings, and the custom settings the extension reads
/// (fluxbase.*, request.jwt.*).
fn actions_in_the_source(su: &mut Client) -> BTreeSet<String> {
    // Dotted literals that are not actions, and why.
    const NOT_ACTIONS: [(&str, &str); 1] = [("u.created_at", "a sort expression of auth.list_users")];
    let schemas: BTreeSet<String> = su.query("SELECT nspname::text FROM pg_namespace", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let settings: BTreeSet<String> =
        su.query("SELECT key FROM dashboard_auth.setting_definitions()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let root = fluxbase_tests::repo_root();
    let mut files = Vec::new();
    let mut dirs = vec![root.join("sql"), root.join("extension/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "sql" || x == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 20, "the source was found: {files:?}");
    let mut found = BTreeSet::new();
    for path in files {
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.extension().is_some_and(|x| x == "rs") {
            // The Rust tests name tables and settings of their own.
            if let Some(at) = text.find("#[cfg(test)]").into_iter().chain(text.find("#[cfg(any(test")).min() {
                text.truncate(at);
            }
        }
        for literal in dotted_literals(&text) {
            let first = literal.split('.').next().unwrap();
            if schemas.contains(first)
                || settings.contains(&literal)
                || ["fluxbase", "request"].contains(&first)
                || NOT_ACTIONS.iter().any(|(n, _)| *n == literal)
            {
                continue;
            }
            found.insert(literal);
        }
    }
    found
}

#[test]
fn every_action_the_extension_writes_belongs_to_exactly_one_group() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    let groups = audit_groups(&mut su);
    let names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["sign_in", "accounts", "users", "impersonation", "explorer", "sql", "analytics", "settings", "audit"]);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (group, label, entries) in &groups {
        assert!(!label.is_empty() && !entries.is_empty(), "{group}");
        for entry in entries {
            if !seen.insert(entry.clone()) {
                problems.push(format!("{entry} is listed twice"));
            }
        }
    }

    let actions = actions_in_the_source(&mut su);
    // The scan finds what it must: literal actions, and the prefixes of computed ones.
    for known in ["admin.login", "sql.run.", "impersonated.", "explorer.export", "audit.exported", "snippet.saved"] {
        assert!(actions.contains(known), "{known} not found in the source: {actions:?}");
    }
    for action in &actions {
        // A prefix ('sql.run.' || status) stands for what follows it: whatever that is, the
        // most specific entry decides (a longer entry may take some of them elsewhere).
        let probe = if action.ends_with('.') { format!("{action}anything") } else { action.clone() };
        let found = groups_of(&groups, &probe);
        if found.len() != 1 {
            problems.push(format!("{action}: in the groups {found:?}, not exactly one"));
            continue;
        }
        let in_db: Option<String> = su.query_one("SELECT dashboard_auth.audit_group_of($1)", &[&probe]).unwrap().get(0);
        if in_db.as_ref() != found.iter().next() {
            problems.push(format!("{action}: audit_group_of says {in_db:?}, the rule says {found:?}"));
        }
    }
    assert!(problems.is_empty(), "{}\n(groups: sql/audit_compliance.sql, list_audit_groups)", problems.join("\n"));
    // Spot checks of the most specific entry winning.
    assert_eq!(groups_of(&groups, "admin.login"), BTreeSet::from(["sign_in".to_string()]));
    assert_eq!(groups_of(&groups, "admin.created"), BTreeSet::from(["accounts".to_string()]));
    assert_eq!(groups_of(&groups, "impersonated.sql.run.result"), BTreeSet::from(["impersonation".to_string()]));
}

#[test]
fn search_filters_by_action_group() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    assert!(!login_from(&mut ann.client, "ann@example.com", "not the password at all", "192.0.2.9", "curl/8"));
    ann.churn(1, 2);
    ann.call("SELECT * FROM dashboard_auth.invite_admin($1, 'carl@example.com', 'Carl', 'viewer')", &[]).unwrap();
    ann.call("SELECT * FROM fluxbase_admin.save_sql_snippet($1, 'one', 'SELECT 1')", &[]).unwrap();
    let mut su = db.connect(Caller::Superuser);
    let groups = audit_groups(&mut su);
    let all = entries(&db);
    let of = |action: &str| groups_of(&groups, action).into_iter().next();
    assert!(all.iter().all(|e| of(&e.action).is_some()), "every entry has a group: {:?}", all.iter().map(|e| &e.action).collect::<Vec<_>>());

    for (group, _, _) in &groups {
        let found = search_ids(&mut vic, &Filter { group: Some(group), ..NO_FILTER });
        // The search's own entry (audit.searched, once per session) comes after the first page.
        let expected: Vec<i64> = newest_first(all.iter().filter(|e| of(&e.action).as_deref() == Some(group)).cloned().collect());
        let found: Vec<i64> = found.into_iter().filter(|id| all.iter().any(|e| e.id == *id)).collect();
        assert_eq!(found, expected, "group {group}");
    }
    let sign_ins = search_ids(&mut vic, &Filter { group: Some("sign_in"), ..NO_FILTER });
    let actions: BTreeSet<String> = all.iter().filter(|e| sign_ins.contains(&e.id)).map(|e| e.action.clone()).collect();
    assert_eq!(actions, BTreeSet::from(["admin.login".to_string(), "admin.login_failed".to_string()]));
    let sql = search_ids(&mut ann, &Filter { group: Some("sql"), ..NO_FILTER });
    assert_eq!(sql.len(), 1, "the snippet");
    // With the other filters.
    let bob_settings = search_ids(&mut vic, &Filter { group: Some("settings"), actor: Some("bob@example.com"), ..NO_FILTER });
    assert!(bob_settings.is_empty());
    // The search records the group it was asked for.
    let searched = entries(&db).into_iter().find(|e| e.action == "audit.searched" && e.actor == "vic@example.com").unwrap();
    assert_eq!(searched.details["action_group"], "sign_in", "the first search of the session: {}", searched.details);

    // An unknown group is a bad call, not an empty page.
    let err = search(&mut vic, &Filter { group: Some("logins"), ..NO_FILTER }, 10, None).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22023");
    assert!(err.as_db_error().unwrap().message().contains("unknown action group 'logins'"), "{err:?}");
    // The groups are for anyone who searches, and for operators.
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.list_audit_groups()", &[]).unwrap().len(), groups.len());
    let mut ops = db.connect(Caller::Operator);
    assert_eq!(audit_groups(&mut ops), groups);
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate(app.query("SELECT * FROM dashboard_auth.list_audit_groups()", &[])), "42501");
}

// ---------------------------------------------------------------------------------
// Export and verification with a session
// ---------------------------------------------------------------------------------

/// export_audit with the session: the lines, or the error.
fn export_with_session(web: &mut Web, since: Option<&str>, until: Option<&str>, format: &str) -> Result<Vec<String>, postgres::Error> {
    let rows = web.call(
        "SELECT line FROM dashboard_auth.export_audit($1, $2::text::timestamptz, $3::text::timestamptz, $4) AS line",
        &[&since, &until, &format],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[test]
fn export_with_a_session_gives_the_operators_lines_and_is_audited() {
    let db = TestDb::new();
    let mut ann = awkward_log(&db);
    ann.churn(1, 2);
    let t1 = a_moment_between(&db);
    ann.churn(2, 2);
    let table = entries(&db);

    // JSON Lines: every entry, as the operator's export has it, and nothing after it.
    let lines = export_with_session(&mut ann, None, None, "jsonl").unwrap();
    let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(parsed.len(), table.len());
    for (line, entry) in parsed.iter().zip(&table) {
        assert_json_matches(&db, line, entry);
    }
    let mut ops = db.connect(Caller::Operator);
    let operators: Vec<String> = ops
        .query("SELECT line FROM dashboard_auth.operator_export_audit(NULL, $1::text::timestamptz, 'jsonl') AS line", &[&t1])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let until_t1 = export_with_session(&mut ann, None, Some(&t1), "jsonl").unwrap();
    assert_eq!(until_t1, operators, "one implementation");

    // The export is recorded in the same call, by the admin, after the lines are read:
    // never in its own output.
    let record = last_of(&db, "audit.exported");
    assert_eq!((record.actor_type.as_str(), record.actor.as_str()), ("admin", "ann@example.com"));
    assert_eq!(record.details["format"], "jsonl");
    assert_eq!(record.details["lines"].as_i64(), Some(until_t1.len() as i64));
    assert_eq!(record.details["entries"].as_i64(), Some(until_t1.len() as i64));
    assert!(record.details["since"].is_null() && record.details["until"].is_string(), "{}", record.details);

    // CSV: the header first, then a row an entry, as the operator's CSV.
    let csv = export_with_session(&mut ann, Some(&t1), None, "csv").unwrap();
    let header: String = ops.query_one("SELECT dashboard_auth.operator_get_audit_export_header()", &[]).unwrap().get(0);
    assert_eq!(csv[0], header);
    let records = parse_csv(&(csv.join("\n") + "\n"));
    let ids: Vec<i64> = records[1..]
        .iter()
        .map(|r| match &r[0] {
            Field::Quoted(v) => v.parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    let from_t1: Vec<i64> = entries(&db).iter().filter(|e| e.occurred_at >= t1).map(|e| e.id).collect();
    assert_eq!(ids, from_t1[..ids.len()].to_vec());
    assert_eq!(ids.len(), from_t1.len() - 1, "all but this export's own record");
    let record = last_of(&db, "audit.exported");
    assert_eq!(record.details["format"], "csv");
    assert_eq!(record.details["lines"].as_i64(), Some(csv.len() as i64), "the header counts as a line");
    assert_eq!(record.details["entries"].as_i64(), Some(csv.len() as i64 - 1));

    // Viewers have the export capability (they search the whole log anyway).
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    assert!(!export_with_session(&mut vic, None, None, "jsonl").unwrap().is_empty());
    assert_eq!(last_of(&db, "audit.exported").actor, "vic@example.com");

    // Bad calls are errors, and nothing is recorded.
    let before = count_entries(&db);
    for (since, until, format) in [(None, None, "xml"), (Some(t1.as_str()), Some(t1.as_str()), "csv")] {
        let err = export_with_session(&mut ann, since, until, format).unwrap_err();
        assert_eq!(err.code().unwrap().code(), "22023", "{format}: {err:?}");
    }
    let null_format: Option<&str> = None;
    assert_eq!(
        sqlstate(ann.call("SELECT * FROM dashboard_auth.export_audit($1, NULL, NULL, $2)", &[&null_format])),
        "22023"
    );
    assert_eq!(count_entries(&db), before);
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.export_audit('fbs_nobody', NULL, NULL, 'csv')", &[])), "28000");
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate(app.query("SELECT * FROM dashboard_auth.export_audit($1, NULL, NULL, 'csv')", &[&ann.token])), "42501");
}

#[test]
fn verify_with_a_session_viewers_too_is_audited_as_theirs() {
    let db = TestDb::new();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    ann.churn(1, 3);
    let verify = |web: &mut Web| -> Result<(bool, i64, Option<i64>, Option<String>, String), postgres::Error> {
        let rows = web.call("SELECT valid, entries, first_invalid_seq, head_hash, message FROM dashboard_auth.verify_audit($1)", &[])?;
        Ok((rows[0].get(0), rows[0].get(1), rows[0].get(2), rows[0].get(3), rows[0].get(4)))
    };

    let before = entries(&db);
    let (valid, count, first_invalid, head, message) = verify(&mut vic).unwrap();
    assert!(valid, "{message}");
    assert_eq!((count, first_invalid), (before.len() as i64, None));
    let last = before.iter().max_by_key(|e| e.chain_seq).unwrap();
    assert_eq!(head, last.hash);
    let record = last_of(&db, "audit.verified");
    assert_eq!((record.actor_type.as_str(), record.actor.as_str()), ("admin", "vic@example.com"));
    assert_eq!(record.details["valid"], true);
    assert_eq!(record.details["entries"], count);
    assert_eq!(record.details["head_hash"].as_str(), head.as_deref());
    // The same verdict as the operator's.
    let (op_valid, op_count, ..) = verify_sql(&mut db.connect(Caller::Operator));
    assert!(op_valid);
    assert_eq!(op_count, count + 1, "the session's own verification, chained since");

    // An altered entry is found, and that verdict is recorded too.
    let mut su = db.connect(Caller::Superuser);
    let altered = before.iter().find(|e| e.action == "settings.changed").unwrap();
    set_trigger(&mut su, false);
    su.execute("UPDATE dashboard_auth.audit_log SET details = '{\"forged\": true}' WHERE id = $1", &[&altered.id]).unwrap();
    set_trigger(&mut su, true);
    let (valid, _, first_invalid, _, message) = verify(&mut ann).unwrap();
    assert!(!valid);
    assert_eq!(first_invalid, altered.chain_seq, "{message}");
    let record = last_of(&db, "audit.verified");
    assert_eq!((record.actor.as_str(), record.details["valid"].clone()), ("ann@example.com", Value::Bool(false)));
    assert_eq!(record.details["first_invalid_seq"].as_i64(), altered.chain_seq);

    // Not from an older snapshot; not without a session; not for the app.
    let mut tx = ann.client.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).start().unwrap();
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").unwrap();
    assert_eq!(sqlstate(tx.query("SELECT * FROM dashboard_auth.verify_audit($1)", &[&ann.token])), "25000");
    drop(tx);
    let mut web = db.connect(Caller::Dashboard);
    assert_eq!(sqlstate(as_dashboard(&mut web, "SELECT * FROM dashboard_auth.verify_audit('fbs_nobody')", &[])), "28000");
    let mut app = db.connect(Caller::App);
    assert_eq!(sqlstate(app.query("SELECT * FROM dashboard_auth.verify_audit($1)", &[&ann.token])), "42501");
}
