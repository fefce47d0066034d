//! A property test of the database explorer against hostile input: thousands of
//! identifiers and values made of quotes, semicolons, comments, Unicode, names of 63
//! bytes and more, mixed case, reserved words and the names of system and extension
//! schemas, thrown at every entry point the way `fluxbase serve` calls them: tickets
//! (browse, follow, export, edit, impersonate) and the catalog, describe_table and
//! plan_browse on the dashboard login, and browse(), open_export() and edit() on the data
//! login after a claim. Each call must either be
//! handled as data (a success whose result agrees with what the superuser sees through a
//! parameterized query) or be refused with a clear error of an allowed SQLSTATE; nothing
//! may ever be executed: a canary table keeps its one row, no object appears, no data
//! changes, and the connection keeps working.
//!
//! The generator is a seeded xorshift, so every run throws the same cases; a failure
//! names the case (entry point, arguments) so that it can be replayed by hand.

use fluxbase_tests::admin::{as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::data_plane::{claimed, ticket_text, Planes};
use fluxbase_tests::{Caller, TestDb};
use postgres::types::ToSql;
use postgres::Client;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// The deterministic generator
// ---------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn text(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------
// Hostile material
// ---------------------------------------------------------------------------------

/// Pieces that break SQL text when spliced into it, and names that look like the
/// system's or the extension's.
const FRAGMENTS: &[&str] = &[
    "\"", "'", ";", "--", ")", "(", "$1", "$$", "\\", "%", "_", "/*", "*/", " ", ".", ",", "OR 1=1", "' OR '1'='1",
    "'; DROP TABLE public.canary; --", "\"; DROP TABLE public.canary; --", "); INSERT INTO public.canary VALUES (2); --",
    "'||pg_sleep(5)||'", "SELECT pg_sleep(5)", "pg_catalog", "information_schema", "dashboard_auth", "auth",
    "fluxbase_admin", "pg_toast", "pg_temp", "Ünïcødé", "表", "🐘", "é", "e\u{301}", "\u{202e}", "\u{feff}", "\u{200b}",
    "\n", "\t", "\r", "select", "SELECT", "MixedCase", "%I", "%s", "%L", "E'\\x27'", "::text", "$1[1]",
    "OPERATOR(pg_catalog.=)", "NULL", "true",
];

/// Text values: for rows and for filter values, patterns and search terms.
const TEXT_VALUES: &[&str] = &[
    "", " ", "'", "\"", ";", "--", "/*", "*/", ")", "$1", "$$", "\\", "%", "_", "%_\\%", "trailing\\", "OR 1=1",
    "' OR '1'='1", "'; DROP TABLE public.canary; --", "\"; DROP TABLE public.canary; --",
    "'); INSERT INTO public.canary VALUES (2); --", "$$; SELECT pg_sleep(5); $$", "'||pg_sleep(5)||'",
    "pg_catalog", "information_schema", "dashboard_auth", "auth", "fluxbase_admin", "pg_toast", "pg_temp",
    "Ünïcødé 表", "🐘🔥", "caf\u{e9}", "cafe\u{301}", "\u{202e}evil", "\u{feff}bom", "zero\u{200b}width",
    "line\nbreak", "tab\there", "NaN", "infinity", "-infinity", "2024-13-45", "02/01/24", "01/02/2024", "1/2/3",
    "2024-02-01", "1e400", "123456789012345678901234567890", "-0", "0x10", "1_000", "{}", "[]", "{\"a\":1}", "null",
    "true", "{a,b}", "{\"a\",NULL}", "MixedCase", "mixedcase", "MIXEDCASE", "select", "SELECT", "%I", "%s",
    "E'\\x27'", "\\x27", "a\"b", "it's", "  padded  ",
];

/// Values many rows share, so that equality finds several rows.
const COMMON_TEXT: &[&str] = &["MixedCase", "'", "Ünïcødé 表", "'; DROP TABLE public.canary; --", "", "%_\\%"];

/// Numbers as JSON literals: Postgres's jsonb keeps every one of them exactly.
const NUMBER_LITERALS: &[&str] = &[
    "0", "-1", "1", "7", "0.1", "1.50", "123456789012345678901234567890", "99999999999999999999",
    "3.14159265358979323846264338327950288", "1e400", "-1e400", "1e-400", "9223372036854775807",
    "9223372036854775808", "-9223372036854775809", "18446744073709551616", "1E+2", "-0", "1e-30",
];

/// Numeric cell values (numeric column "$1").
const NUMERIC_ROWS: &[&str] = &[
    "0", "-1", "7", "0.1", "123456789012345678901234567890", "99999999999999999999", "100000000000000000000",
    "3.14159265358979323846264338327950288", "3.141592653589793", "NaN", "Infinity", "-Infinity", "1e-30",
    "123456789012345680000000000000",
];

/// Dates (column "order"): the ambiguous ones read differently in MDY and YMD.
const DATE_ROWS: &[&str] = &[
    "2024-02-01", "2002-01-24", "2024-01-02", "2003-01-02", "2001-02-03", "infinity", "-infinity", "1999-12-31",
    "0001-01-01 BC",
];
const DATE_VALUES: &[&str] = &[
    "2024-02-01", "02/01/24", "01/02/2024", "1/2/3", "2024-13-45", "infinity", "-infinity", "epoch", "20240201",
    "2024-02-01; DROP TABLE public.canary", "Feb 1 2024", "0001-01-01 BC", "2002-01-24", "2003-01-02", "",
    "'; DROP TABLE public.canary; --",
];

/// jsonb cells (column "v").
const JSON_ROWS: &[&str] = &[
    r#"{"a": 1}"#, r#"{"a": 123456789012345678901234567890}"#, r#"[1, "x", null]"#,
    r#""'; DROP TABLE public.canary; --""#, r#"{"k": "Ünï 表"}"#, "{}", "null", r#"{"and": [{"column": "x"}]}"#,
    "0.1", "99999999999999999999",
];

/// bigint cells (column "user").
const BIGINT_ROWS: &[&str] = &["0", "42", "-9223372036854775808", "9223372036854775807", "7"];

/// Labels of the hostile enum type.
const ENUM_LABELS: &[&str] = &["it's", "a\"b", "'; DROP TABLE public.canary; --", "Ünï 表", "MixedCase", "mixedcase", " "];

const FILTER_OPS: &[&str] = &["eq", "neq", "lt", "lte", "gt", "gte", "in", "like", "ilike", "is_null", "not_null", "contains"];

/// The schemas the explorer must never show.
const FORBIDDEN: &[&str] = &["pg_catalog", "information_schema", "auth", "dashboard_auth", "fluxbase_admin", "pg_toast"];

fn forbidden_schema(schema: &str) -> bool {
    FORBIDDEN.contains(&schema) || schema.starts_with("pg_temp") || schema.starts_with("pg_toast_temp")
}

/// Refusals that say what is wrong with the request.
fn allowed_code(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("54") || ["42P01", "42703", "42704", "42883"].contains(&code)
}

fn padded(prefix: &str, fill: char, bytes: usize) -> String {
    let mut s = prefix.to_string();
    while s.len() + fill.len_utf8() <= bytes {
        s.push(fill);
    }
    assert_eq!(s.len(), bytes, "{s}");
    s
}

/// Postgres's truncation of an identifier to 63 bytes, at a character boundary.
fn truncated(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if out.len() + c.len_utf8() > 63 {
            break;
        }
        out.push(c);
    }
    out
}

fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn qn(schema: &str, name: &str) -> String {
    format!("{}.{}", qi(schema), qi(name))
}

fn jstr(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A string for a report: exact when short, else its start and length.
fn short(s: &str) -> String {
    let n = s.chars().count();
    if n <= 160 {
        format!("{s:?}")
    } else {
        format!("{:?}…({n} chars)", s.chars().take(80).collect::<String>())
    }
}

fn short_opt(s: &Option<String>) -> String {
    s.as_deref().map(short).unwrap_or_else(|| "NULL".into())
}

/// A Postgres array literal of text, every element quoted (as the fixture inserts it).
fn array_literal(items: &[Option<&str>]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|i| match i {
            None => "NULL".to_string(),
            Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

// base64url without padding, for real and tampered cursors.
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count & 0xff) as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------
// JSON values as raw text (serde_json cannot hold 1e400), with what they are
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum JK {
    Str(String),
    Num,
    Bool,
    Null,
    Obj,
    /// flat: every item a string or null; scalars: every item a string, number or bool.
    Arr { flat: bool, scalars: bool },
}

#[derive(Clone, Debug)]
struct JV {
    raw: String,
    kind: JK,
}

impl JV {
    fn s(text: &str) -> JV {
        JV { raw: jstr(text), kind: JK::Str(text.to_string()) }
    }
    fn num(raw: &str) -> JV {
        JV { raw: raw.to_string(), kind: JK::Num }
    }
    fn raw(raw: &str, kind: JK) -> JV {
        JV { raw: raw.to_string(), kind }
    }
    fn arr(items: &[JV]) -> JV {
        let flat = items.iter().all(|i| matches!(i.kind, JK::Str(_) | JK::Null));
        let scalars = items.iter().all(|i| matches!(i.kind, JK::Str(_) | JK::Num | JK::Bool));
        let raw = format!("[{}]", items.iter().map(|i| i.raw.as_str()).collect::<Vec<_>>().join(", "));
        JV { raw, kind: JK::Arr { flat, scalars } }
    }
}

// ---------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Int,
    BigInt,
    Text,
    Numeric,
    Date,
    Jsonb,
    TextArray,
    Enum,
    Uuid,
}

#[derive(Clone, Debug)]
struct Col {
    name: String,
    kind: Kind,
    /// The type as the superuser's oracle casts to it.
    sql_type: String,
}

fn col(name: &str, kind: Kind, sql_type: &str) -> Col {
    Col { name: name.to_string(), kind, sql_type: sql_type.to_string() }
}

#[derive(Clone, Debug)]
struct Fk {
    name: String,
    local: String,
    target_schema: String,
    target_name: String,
    target_col: String,
}

#[derive(Clone, Debug)]
struct Rel {
    schema: String,
    name: String,
    /// The name as the fixture wrote it, when Postgres cut it to 63 bytes.
    written_as: Option<String>,
    cols: Vec<Col>,
    /// A column of distinct integers identifying rows (not always a key).
    id_col: Option<String>,
    keyed: bool,
    fks: Vec<Fk>,
    rls: bool,
    /// Rows as inserted, as text, in the order of `cols`; row i has id i + 1.
    data: Vec<Vec<Option<String>>>,
}

impl Rel {
    fn col(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|c| c.name == name)
    }
    fn qualified(&self) -> String {
        qn(&self.schema, &self.name)
    }
    fn label(&self) -> String {
        format!("{}.{}", short(&self.schema), short(&self.name))
    }
}

const NAME63_COL: &str = "'); INSERT INTO public.canary VALUES (2); --";

fn std_cols() -> Vec<Col> {
    vec![
        col("select", Kind::Int, "pg_catalog.int4"),
        col("it's \"quoted\"", Kind::Text, "pg_catalog.text"),
        col("Ünïcødé 表", Kind::Text, "pg_catalog.text"),
        col("MixedCase", Kind::Text, "pg_catalog.text"),
        col("mixedcase", Kind::Text, "pg_catalog.text"),
        col("x'; DROP TABLE public.canary; --", Kind::Text, "pg_catalog.text"),
        col("t", Kind::Text, "pg_catalog.text"),
        col(&padded(NAME63_COL, 'z', 63), Kind::Text, "pg_catalog.text"),
        col("$1", Kind::Numeric, "pg_catalog.numeric"),
        col("order", Kind::Date, "pg_catalog.date"),
        col("v", Kind::Jsonb, "pg_catalog.jsonb"),
        col("l", Kind::TextArray, "pg_catalog.text[]"),
        col("user", Kind::BigInt, "pg_catalog.int8"),
    ]
}

fn col_ddl(c: &Col) -> String {
    format!("{} {}{}", qi(&c.name), c.sql_type, if c.name == "select" { " NOT NULL" } else { "" })
}

/// Hostile names for tables in public (some become two tables that differ only in case
/// or in Unicode normalisation).
fn public_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "select", "table", "user", "order", "MixedCase", "mixedcase", "MIXEDCASE", "Ünïcødé 表", "emoji 🐘🔥", "a\"b",
        "it's", "semi;colon", "dash--dash", "/* comment */", "with space", " leading", "trailing ",
        "x'; DROP TABLE public.canary; --", "\"; DROP TABLE public.canary; --", "$1", "$$", "back\\slash",
        "per%cent_under", "t", "v", "l", "pg_catalog", "information_schema", "auth", "dashboard_auth", "fluxbase_admin",
        "public.canary", "pg_sleep(10)", "OR 1=1", "caf\u{e9}", "cafe\u{301}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push(padded("'); INSERT INTO public.canary VALUES (2); --", 'x', 63));
    names.push("表".repeat(21)); // 63 bytes of three-byte characters
    names
}

/// Names longer than 63 bytes: Postgres cuts them, and the explorer must then not find
/// the name as written.
fn long_names() -> Vec<String> {
    vec![padded("long'; DROP TABLE public.canary; --", 'y', 70), "é".repeat(35)]
}

/// Schemas that look like system or extension schemas and are not.
fn hostile_schemas() -> Vec<String> {
    vec![
        "Auth".into(),
        "Dashboard_Auth".into(),
        " pg_catalog".into(),
        "pg_catalog ".into(),
        "pg_toast ".into(),
        "information_schema ".into(),
        "public; drop".into(),
        "fluxbase_admin\"".into(),
        "Ünïcødé 表".into(),
        padded("'; DROP SCHEMA public CASCADE; --", 's', 63),
    ]
}

struct Fixture {
    rels: Vec<Rel>,
    /// Relations of the system and the extension, which must stay unbrowsable.
    system: Vec<(String, String)>,
    /// An app user's id (for the table with a key into auth.users).
    joe: String,
}

fn row_text(rng: &mut Rng) -> Option<String> {
    let r = rng.below(100);
    if r < 8 {
        None
    } else if r < 38 {
        Some(rng.text(COMMON_TEXT).to_string())
    } else if r < 80 {
        Some(rng.text(TEXT_VALUES).to_string())
    } else if r < 96 {
        Some(mix(rng))
    } else {
        Some(match rng.below(3) {
            0 => "x".repeat(2500),
            1 => "'".repeat(2001),
            _ => "表".repeat(2001),
        })
    }
}

fn mix(rng: &mut Rng) -> String {
    let n = rng.range(1, 6);
    (0..n).map(|_| rng.text(FRAGMENTS)).collect()
}

fn row_value(rng: &mut Rng, c: &Col, id: usize) -> Option<String> {
    match c.kind {
        Kind::Int if c.name == "select" => Some(id.to_string()),
        Kind::Int => {
            if rng.chance(15) {
                None
            } else {
                Some(rng.range(1, 10).to_string())
            }
        }
        Kind::Text => row_text(rng),
        Kind::Numeric => (!rng.chance(8)).then(|| rng.text(NUMERIC_ROWS).to_string()),
        Kind::Date => (!rng.chance(10)).then(|| rng.text(DATE_ROWS).to_string()),
        Kind::Jsonb => (!rng.chance(10)).then(|| rng.text(JSON_ROWS).to_string()),
        Kind::TextArray => {
            if rng.chance(10) {
                None
            } else {
                let n = rng.below(4);
                let items: Vec<Option<String>> = (0..n)
                    .map(|_| if rng.chance(15) { None } else { Some(rng.pick(COMMON_TEXT.iter().chain(TEXT_VALUES).copied().collect::<Vec<_>>().as_slice()).to_string()) })
                    .collect();
                let refs: Vec<Option<&str>> = items.iter().map(|i| i.as_deref()).collect();
                Some(array_literal(&refs))
            }
        }
        Kind::BigInt => (!rng.chance(10)).then(|| rng.text(BIGINT_ROWS).to_string()),
        Kind::Enum => (!rng.chance(10)).then(|| rng.text(ENUM_LABELS).to_string()),
        Kind::Uuid => None,
    }
}

fn build_fixture(db: &TestDb) -> Fixture {
    let mut su = db.connect(Caller::Superuser);
    let mut rng = Rng(0x005e_edf1_u64 ^ 0x9e37_79b9_7f4a_7c15);
    let joe: String = su
        .query_one("INSERT INTO auth.users (email, confirmed_at) VALUES ('joe@example.com', now()) RETURNING id::text", &[])
        .unwrap()
        .get(0);

    let mut ddl = String::from("CREATE TABLE public.canary (x int); INSERT INTO public.canary VALUES (1);\n");
    // Schemas whose names start with pg_ are reserved; the superuser may make them anyway.
    ddl.push_str("SET allow_system_table_mods = on;\n");
    for s in hostile_schemas() {
        ddl.push_str(&format!("CREATE SCHEMA {};\n", qi(&s)));
    }
    ddl.push_str("RESET allow_system_table_mods;\n");

    let mut rels: Vec<Rel> = Vec::new();
    let plain = |schema: &str, name: &str, keyed: bool| Rel {
        schema: schema.into(),
        name: name.into(),
        written_as: None,
        cols: std_cols(),
        id_col: Some("select".into()),
        keyed,
        fks: vec![],
        rls: false,
        data: vec![],
    };
    for (i, name) in public_names().iter().enumerate() {
        rels.push(plain("public", name, name == "select" || i % 5 != 4));
    }
    for name in long_names() {
        let mut r = plain("public", &truncated(&name), true);
        r.written_as = Some(name);
        rels.push(r);
    }
    for (i, s) in hostile_schemas().iter().enumerate() {
        for (j, name) in ["users", "pg_authid", "select", "MixedCase"].iter().enumerate() {
            rels.push(plain(s, name, (i + j) % 4 != 3 || *name == "users"));
        }
    }
    let mut child = plain("public", "child \"fk\"", true);
    child.cols.push(col("parent; --", Kind::Int, "pg_catalog.int4"));
    child.cols.push(col("auth user", Kind::Int, "pg_catalog.int4"));
    child.fks = vec![
        Fk {
            name: "fk'; DROP TABLE public.canary; --".into(),
            local: "parent; --".into(),
            target_schema: "public".into(),
            target_name: "select".into(),
            target_col: "select".into(),
        },
        Fk {
            name: "Ünï fk 表".into(),
            local: "auth user".into(),
            target_schema: "Auth".into(),
            target_name: "users".into(),
            target_col: "select".into(),
        },
    ];
    rels.push(child);
    let mut rls = plain("public", "rls \"table\"", true);
    rls.rls = true;
    rels.push(rls);

    // Create the plain tables and fill them.
    for rel in rels.iter_mut() {
        let cols: Vec<String> = rel.cols.iter().map(col_ddl).collect();
        let written = rel.written_as.clone().unwrap_or_else(|| rel.name.clone());
        ddl.push_str(&format!("CREATE TABLE {} ({}", qn(&rel.schema, &written), cols.join(", ")));
        if rel.keyed {
            ddl.push_str(", PRIMARY KEY (\"select\")");
        }
        ddl.push_str(");\n");
        for id in 1..=10 {
            let row: Vec<Option<String>> = rel.cols.iter().map(|c| row_value(&mut rng, c, id)).collect();
            rel.data.push(row);
        }
    }
    // Keys between them, with hostile constraint names.
    for rel in &rels {
        for fk in &rel.fks {
            ddl.push_str(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({});\n",
                rel.qualified(),
                qi(&fk.name),
                qi(&fk.local),
                qn(&fk.target_schema, &fk.target_name),
                qi(&fk.target_col)
            ));
        }
    }
    ddl.push_str(
        "ALTER TABLE public.\"rls \"\"table\"\"\" ENABLE ROW LEVEL SECURITY;
         CREATE POLICY \"even; --\" ON public.\"rls \"\"table\"\"\" FOR SELECT TO authenticated USING (\"select\" % 2 = 0);\n",
    );
    su.batch_execute(&ddl).unwrap_or_else(|e| panic!("fixture DDL: {e}"));

    for rel in &rels {
        let cols: Vec<String> = rel.cols.iter().map(|c| qi(&c.name)).collect();
        let values: Vec<String> = rel.cols.iter().enumerate().map(|(i, c)| format!("${}::text::{}", i + 1, c.sql_type)).collect();
        let insert = format!("INSERT INTO {} ({}) VALUES ({})", rel.qualified(), cols.join(", "), values.join(", "));
        let statement = su.prepare(&insert).unwrap_or_else(|e| panic!("{insert}: {e}"));
        for row in &rel.data {
            let params: Vec<&(dyn ToSql + Sync)> = row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            su.execute(&statement, &params).unwrap_or_else(|e| panic!("insert into {}: {e}", rel.label()));
        }
    }
    // The child's keys refer to existing rows (or are NULL).
    for rel in rels.iter_mut().filter(|r| !r.fks.is_empty()) {
        let qualified = rel.qualified();
        for (i, row) in rel.data.iter_mut().enumerate() {
            for fk in &rel.fks {
                let at = rel.cols.iter().position(|c| c.name == fk.local).unwrap();
                row[at] = if i % 4 == 3 { None } else { Some(((i * 3) % 10 + 1).to_string()) };
                su.execute(
                    &format!("UPDATE {qualified} SET {} = $1::text::int WHERE \"select\" = $2", qi(&fk.local)),
                    &[&row[at], &((i + 1) as i32)],
                )
                .unwrap();
            }
        }
    }

    // Special relations: no columns at all, a view, a materialized view, a hostile enum,
    // and a key into the extension's own auth.users.
    let enum_labels: Vec<String> = ENUM_LABELS.iter().map(|l| format!("'{}'", l.replace('\'', "''"))).collect();
    let enum_type = qn("public; drop", "mood \"; DROP TABLE public.canary; --");
    su.batch_execute(&format!(
        "CREATE TABLE public.\"empty ()\" ();
         INSERT INTO public.\"empty ()\" DEFAULT VALUES; INSERT INTO public.\"empty ()\" DEFAULT VALUES;
         CREATE VIEW public.\"view; DROP TABLE public.canary\" AS SELECT * FROM public.\"select\";
         CREATE MATERIALIZED VIEW public.\"mat \"\"view\"\"\" AS SELECT * FROM public.\"MixedCase\";
         CREATE TYPE {enum_type} AS ENUM ({});
         CREATE TABLE \"public; drop\".\"enum \"\"table\"\"\" (\"select\" int PRIMARY KEY, mood {enum_type}, \"it's \"\"quoted\"\"\" text);
         CREATE TABLE public.\"to auth\" (\"select\" int PRIMARY KEY, uid uuid CONSTRAINT to_auth_users REFERENCES auth.users (id));
         INSERT INTO public.\"to auth\" VALUES (1, '{joe}'), (2, NULL);",
        enum_labels.join(", ")
    ))
    .unwrap();
    let source = |name: &str| rels.iter().find(|r| r.schema == "public" && r.name == name).unwrap().clone();
    let mut view = source("select");
    view.name = "view; DROP TABLE public.canary".into();
    view.keyed = false;
    let mut mat = source("MixedCase");
    mat.name = "mat \"view\"".into();
    mat.keyed = false;
    let empty = Rel {
        schema: "public".into(),
        name: "empty ()".into(),
        written_as: None,
        cols: vec![],
        id_col: None,
        keyed: false,
        fks: vec![],
        rls: false,
        data: vec![vec![], vec![]],
    };
    let mut enum_rel = Rel {
        schema: "public; drop".into(),
        name: "enum \"table\"".into(),
        written_as: None,
        cols: vec![
            col("select", Kind::Int, "pg_catalog.int4"),
            col("mood", Kind::Enum, &enum_type),
            col("it's \"quoted\"", Kind::Text, "pg_catalog.text"),
        ],
        id_col: Some("select".into()),
        keyed: true,
        fks: vec![],
        rls: false,
        data: vec![],
    };
    for id in 1..=10 {
        let row: Vec<Option<String>> = enum_rel.cols.iter().map(|c| row_value(&mut rng, c, id)).collect();
        su.execute(
            &format!("INSERT INTO {} VALUES ($1::text::int, $2::text::{enum_type}, $3)", enum_rel.qualified()),
            &[&row[0], &row[1], &row[2]],
        )
        .unwrap();
        enum_rel.data.push(row);
    }
    let to_auth = Rel {
        schema: "public".into(),
        name: "to auth".into(),
        written_as: None,
        cols: vec![col("select", Kind::Int, "pg_catalog.int4"), col("uid", Kind::Uuid, "pg_catalog.uuid")],
        id_col: Some("select".into()),
        keyed: true,
        fks: vec![Fk {
            name: "to_auth_users".into(),
            local: "uid".into(),
            target_schema: "auth".into(),
            target_name: "users".into(),
            target_col: "id".into(),
        }],
        rls: false,
        data: vec![vec![Some("1".into()), Some(joe.clone())], vec![Some("2".into()), None]],
    };
    let canary = Rel {
        schema: "public".into(),
        name: "canary".into(),
        written_as: None,
        cols: vec![col("x", Kind::Int, "pg_catalog.int4")],
        id_col: Some("x".into()),
        keyed: false,
        fks: vec![],
        rls: false,
        data: vec![vec![Some("1".into())]],
    };
    rels.extend([view, mat, empty, enum_rel, to_auth, canary]);

    // The impersonated role reads everything (RLS aside).
    let mut grants = String::new();
    for s in hostile_schemas().iter().chain(["public".to_string()].iter()) {
        grants.push_str(&format!(
            "GRANT USAGE ON SCHEMA {0} TO authenticated; GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO authenticated;\n",
            qi(s)
        ));
    }
    grants.push_str("ANALYZE;");
    su.batch_execute(&grants).unwrap();

    let system: Vec<(String, String)> = su
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'v', 'm', 'p')
                AND (n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin')
                     OR (n.nspname, c.relname) IN (('pg_catalog', 'pg_authid'), ('pg_catalog', 'pg_class'),
                         ('pg_catalog', 'pg_shadow'), ('pg_catalog', 'pg_proc'), ('information_schema', 'tables'),
                         ('information_schema', 'columns'), ('information_schema', 'role_table_grants')))
              ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let toast: Option<String> =
        su.query_one("SELECT min(relname)::text FROM pg_class WHERE relnamespace = 'pg_toast'::regnamespace AND relkind = 't'", &[]).unwrap().get(0);
    let mut system = system;
    if let Some(t) = toast {
        system.push(("pg_toast".into(), t));
    }
    assert!(system.iter().any(|(s, n)| s == "auth" && n == "users"), "{system:?}");
    Fixture { rels, system, joe }
}

// ---------------------------------------------------------------------------------
// Calls and the judge
// ---------------------------------------------------------------------------------

#[derive(Debug)]
enum Out {
    Ok(Value),
    Err { code: String, message: String },
}

#[derive(Default)]
struct Judge {
    /// kind of violation -> (occurrences, first example)
    violations: BTreeMap<String, (usize, String)>,
    /// entry point -> outcome (ok or SQLSTATE) -> count
    outcomes: BTreeMap<String, BTreeMap<String, usize>>,
    /// (entry point, SQLSTATE) -> the first message and case
    examples: BTreeMap<(String, String), String>,
}

impl Judge {
    fn violation(&mut self, entry: &str, what: &str, detail: String) {
        let slot = self.violations.entry(format!("{entry}: {what}")).or_insert((0, detail));
        slot.0 += 1;
    }

    fn outcome(&mut self, entry: &str, out: &str) {
        *self.outcomes.entry(entry.to_string()).or_default().entry(out.to_string()).or_insert(0) += 1;
    }

    fn cases(&self, entry: &str) -> usize {
        self.outcomes.get(entry).map(|m| m.values().sum()).unwrap_or(0)
    }

    fn report(&self) -> String {
        let mut out = String::from("cases per entry point (outcome: count):\n");
        for (entry, m) in &self.outcomes {
            out.push_str(&format!("  {entry}: {} cases {:?}\n", m.values().sum::<usize>(), m));
        }
        out.push_str("\nthe first refusal of each kind:\n");
        for ((entry, code), example) in &self.examples {
            out.push_str(&format!("  {entry} {code}: {}\n", example.chars().take(300).collect::<String>()));
        }
        if !self.violations.is_empty() {
            out.push_str(&format!("\n{} kinds of violation:\n", self.violations.len()));
            for (what, (n, example)) in &self.violations {
                out.push_str(&format!("\n* {what} ({n}x)\n  first: {example}\n"));
            }
        }
        out
    }
}

struct Explorer {
    db_name: String,
    web: Client,
    data: Client,
    su: Client,
    token: String,
    other_token: String,
    impersonation: String,
    /// Relations in the database at the start: an edit's transaction is rolled back, so
    /// it is checked from inside, before the rollback.
    relations: i64,
    rels: Vec<Rel>,
    system: Vec<(String, String)>,
    pool: Vec<String>,
    rng: Rng,
    judge: Judge,
    /// Real cursors seen, with the request that made them: (rel index, sort, page size, cursor).
    cursors: Vec<(usize, Option<String>, i32, String)>,
    calls: usize,
}

#[derive(Clone, Debug)]
struct Req {
    schema: Option<String>,
    name: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    search: Option<String>,
    page_size: Option<i32>,
    cursor: Option<String>,
    total: Option<String>,
}

impl Req {
    fn on(rel: &Rel) -> Req {
        Req {
            schema: Some(rel.schema.clone()),
            name: Some(rel.name.clone()),
            filter: None,
            sort: None,
            search: None,
            page_size: Some(1000),
            cursor: None,
            total: Some("exact".into()),
        }
    }

    /// The request as a ticket takes it, as JSON text: filter and sort go in as written,
    /// so that Postgres reads the numbers (every digit kept) and refuses what is not JSON.
    fn json(&self) -> String {
        let text = |v: &Option<String>| v.as_deref().map(jstr).unwrap_or("null".into());
        let raw = |v: &Option<String>| v.clone().unwrap_or("null".into());
        format!(
            "{{\"schema\": {}, \"table\": {}, \"filter\": {}, \"sort\": {}, \"search\": {}, \"page_size\": {}, \"cursor\": {}, \"total\": {}}}",
            text(&self.schema),
            text(&self.name),
            raw(&self.filter),
            raw(&self.sort),
            text(&self.search),
            self.page_size.map(|p| p.to_string()).unwrap_or("null".into()),
            text(&self.cursor),
            text(&self.total)
        )
    }

    fn describe(&self) -> String {
        format!(
            "schema={} relation={} filter={} sort={} search={} page_size={:?} cursor={} total={}",
            short_opt(&self.schema),
            short_opt(&self.name),
            self.filter.as_deref().map(short).unwrap_or("NULL".into()),
            self.sort.as_deref().map(short).unwrap_or("NULL".into()),
            short_opt(&self.search),
            self.page_size,
            short_opt(&self.cursor),
            short_opt(&self.total)
        )
    }
}

/// What the superuser's parameterized query says a filter keeps.
enum Expect {
    /// These ids, in no particular order.
    Ids(Vec<i64>),
    /// The value does not fit: the explorer must refuse it.
    Refuse(String),
    /// No oracle for this shape of request: only the generic checks apply.
    Unknown,
}

/// The ids a filter kept and the page, or (the entry point that failed, SQLSTATE, message).
type Kept = Result<(Vec<i64>, Option<Value>), (&'static str, String, String)>;

/// A follow_foreign_key case: schema, relation, key name, row JSON, and the key and value
/// when the oracle can judge the answer.
type FollowCase = (Option<String>, Option<String>, Option<String>, String, Option<(Fk, Option<JV>)>);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Via {
    Browse,
    BrowseAs,
    Export,
}

impl Explorer {
    // --- raw calls ---------------------------------------------------------------

    /// A call on the dashboard login (`data` false) or the data login (`data` true).
    fn timed<T>(&mut self, entry: &str, desc: &str, data: bool, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, (String, String)> {
        self.calls += 1;
        let started = Instant::now();
        let result = f(if data { &mut self.data } else { &mut self.web });
        let took = started.elapsed();
        if took > Duration::from_secs(5) {
            self.judge.violation(entry, "a call took more than 5 s (pg_sleep executed?)", format!("{took:?}: {desc}"));
        }
        match result {
            Ok(v) => Ok(v),
            Err(e) => match e.as_db_error() {
                Some(db) => Err((db.code().code().to_string(), db.message().to_string())),
                None => {
                    self.judge.violation(entry, "the connection failed or was lost (not a server error)", format!("{e}: {desc}"));
                    self.reconnect();
                    Err(("LOST".into(), e.to_string()))
                }
            },
        }
    }

    fn reconnect(&mut self) {
        let db = TestDb { name: self.db_name.clone() };
        self.web = db.connect(Caller::Dashboard);
        self.web.batch_execute("SET statement_timeout = '20s'").unwrap();
        self.data = db.connect(Caller::Data);
        self.data.batch_execute("SET statement_timeout = '20s'").unwrap();
        std::mem::forget(db); // the database belongs to the test, not to this handle
    }

    fn parse_json(&mut self, entry: &str, desc: &str, text: Option<String>) -> Out {
        match text.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(v)) => Out::Ok(v),
            Some(Err(e)) => {
                self.judge.violation(entry, "a success whose result is not JSON", format!("{e}: {desc}"));
                Out::Ok(Value::Null)
            }
            None => Out::Ok(Value::Null),
        }
    }

    fn json_call(&mut self, entry: &str, desc: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Out {
        let result = self.timed(entry, desc, false, |web| as_dashboard(web, sql, params));
        match result {
            Ok(rows) => {
                let text: Option<String> = rows.first().and_then(|r| r.get(0));
                self.parse_json(entry, desc, text)
            }
            Err((code, message)) => Out::Err { code, message },
        }
    }

    /// A ticket for `operation` from the dashboard login; its outcome counts for
    /// `ticket(operation)`.
    fn ticket(&mut self, token: &str, operation: &str, request: &str, imp: Option<&str>, desc: &str) -> Result<String, (String, String)> {
        let entry = format!("ticket({operation})");
        let result = self.timed(&entry, desc, false, |web| ticket_text(web, token, operation, request, imp));
        self.judge.outcome(&entry, match &result {
            Ok(_) => "ok",
            Err((code, _)) => code,
        });
        result
    }

    /// A ticket, then on the data login claim + `sql` (which returns jsonb as text), in
    /// one transaction; the data plane's outcome counts for `data_entry`.
    fn two_planes(&mut self, token: &str, operation: &str, request: &str, imp: Option<&str>, data_entry: &str, sql: &str, desc: &str) -> Out {
        let ticket = match self.ticket(token, operation, request, imp, desc) {
            Ok(t) => t,
            Err((code, message)) => return Out::Err { code, message },
        };
        let result = self.timed(data_entry, desc, true, |data| claimed(data, &ticket, sql, &[]));
        match result {
            Ok(rows) => {
                self.judge.outcome(data_entry, "ok");
                let text: Option<String> = rows.first().and_then(|r| r.get(0));
                self.parse_json(data_entry, desc, text)
            }
            Err((code, message)) => {
                self.judge.outcome(data_entry, &code);
                Out::Err { code, message }
            }
        }
    }

    fn browse(&mut self, token: &str, req: &Req, desc: &str) -> Out {
        self.two_planes(token, "browse", &req.json(), None, "browse()", "SELECT fluxbase_admin.browse()::text", desc)
    }

    fn browse_as(&mut self, token: &str, imp: Option<&str>, req: &Req, desc: &str) -> Out {
        self.two_planes(token, "browse", &req.json(), imp, "browse()", "SELECT fluxbase_admin.browse()::text", desc)
    }

    fn plan(&mut self, token: &str, req: &Req, desc: &str) -> Out {
        self.json_call(
            "plan_browse",
            desc,
            "SELECT fluxbase_admin.plan_browse($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6, $7, $8)::text",
            &[&token, &req.schema, &req.name, &req.filter, &req.sort, &req.search, &req.page_size, &req.cursor],
        )
    }

    /// An export ticket (filter, sort and search of the request).
    fn export_ticket(&mut self, token: &str, req: &Req, desc: &str) -> Result<String, (String, String)> {
        let request = format!(
            "{{\"schema\": {}, \"table\": {}, \"filter\": {}, \"sort\": {}, \"search\": {}}}",
            req.schema.as_deref().map(jstr).unwrap_or("null".into()),
            req.name.as_deref().map(jstr).unwrap_or("null".into()),
            req.filter.clone().unwrap_or("null".into()),
            req.sort.clone().unwrap_or("null".into()),
            req.search.as_deref().map(jstr).unwrap_or("null".into())
        );
        self.ticket(token, "export", &request, None, desc)
    }

    /// claim, open_export and FETCH ALL in one transaction on the data login: (header, lines).
    fn open_export(&mut self, ticket: &str, portal: Option<&str>, desc: &str) -> Result<(String, Vec<String>), (String, String)> {
        let ticket = ticket.to_string();
        let portal = portal.map(str::to_string);
        let result = self.timed("open_export()", desc, true, move |data| {
            let mut tx = data.transaction()?;
            tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket])?;
            let row = tx.query_one("SELECT portal::text, header FROM fluxbase_admin.open_export(coalesce($1, 'fluxbase_export'))", &[&portal])?;
            let name: String = row.get(0);
            let header: String = row.get(1);
            let lines: Vec<String> = tx.query(&format!("FETCH ALL FROM {}", qi(&name)), &[])?.iter().map(|r| r.get(0)).collect();
            tx.commit()?;
            Ok((header, lines))
        });
        self.judge.outcome("open_export()", match &result {
            Ok(_) => "ok",
            Err((code, _)) => code,
        });
        result
    }

    // --- the oracle's side -------------------------------------------------------------

    fn rel_index(&self, schema: &str, name: &str) -> Option<usize> {
        self.rels.iter().position(|r| r.schema == schema && r.name == name)
    }

    /// The ids a superuser's parameterized query keeps, optionally as the impersonated role.
    fn su_ids(&mut self, rel: &Rel, condition: &str, value: Option<&str>, as_authenticated: bool) -> Result<Vec<i64>, String> {
        let id = rel.id_col.as_ref().expect("an id column");
        let sql = format!("SELECT t.{}::int8 FROM {} AS t WHERE {condition}", qi(id), rel.qualified());
        let mut tx = self.su.transaction().unwrap();
        if as_authenticated {
            tx.batch_execute("SET LOCAL ROLE authenticated").unwrap();
        }
        let result = match value {
            Some(v) => tx.query(&sql, &[&v]),
            None => tx.query(&sql, &[]),
        };
        let out = match result {
            Ok(rows) => Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect()),
            Err(e) => Err(e.as_db_error().map(|d| format!("{}: {}", d.code().code(), d.message())).unwrap_or_else(|| panic!("oracle: {e}: {sql}"))),
        };
        let _ = tx.rollback();
        out
    }

    /// The condition a superuser writes for one filter condition; $1 is the value's JSON text.
    fn oracle_condition(c: &Col, op: &str, v: Option<&JV>) -> Result<Option<String>, ()> {
        let lhs = format!("t.{}", qi(&c.name));
        let text = "($1::text::jsonb #>> '{}')";
        let typed = |v: &JV| -> Result<Option<String>, ()> {
            Ok(Some(match (c.kind, &v.kind) {
                (Kind::Jsonb, JK::Str(_)) => format!("{text}::jsonb"),
                (Kind::Jsonb, JK::Null) => return Err(()),
                (Kind::Jsonb, _) => "$1::text::jsonb".into(),
                (Kind::TextArray, JK::Str(_)) => format!("{text}::text[]"),
                (Kind::TextArray, JK::Arr { flat: true, .. }) => "ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb))::text[]".into(),
                (Kind::TextArray, JK::Arr { .. }) => return Ok(None),
                (_, JK::Str(_) | JK::Num | JK::Bool) => format!("{text}::{}", c.sql_type),
                _ => return Err(()),
            }))
        };
        let binary = |operator: &str| -> Result<Option<String>, ()> {
            Ok(typed(v.expect("a value"))?.map(|rhs| format!("{lhs} {operator} {rhs}")))
        };
        match op {
            "eq" => binary("="),
            "neq" => binary("<>"),
            "lt" => binary("<"),
            "lte" => binary("<="),
            "gt" => binary(">"),
            "gte" => binary(">="),
            "is_null" => Ok(Some(format!("{lhs} IS NULL"))),
            "not_null" => Ok(Some(format!("{lhs} IS NOT NULL"))),
            "like" | "ilike" => match (c.kind, &v.expect("a value").kind) {
                (Kind::Text, JK::Str(_)) => Ok(Some(format!("{lhs} {} {text}", if op == "like" { "LIKE" } else { "ILIKE" }))),
                (Kind::Text, _) => Err(()),
                _ => Err(()),
            },
            "contains" => match c.kind {
                Kind::Jsonb | Kind::TextArray => binary("@>"),
                _ => Err(()),
            },
            "in" => match (&v.expect("a value").kind, c.kind) {
                (JK::Arr { scalars: true, .. }, Kind::Int | Kind::BigInt | Kind::Text | Kind::Numeric | Kind::Date | Kind::Enum) => Ok(Some(format!(
                    "{lhs} = ANY (ARRAY(SELECT e #>> '{{}}' FROM jsonb_array_elements($1::text::jsonb) e)::{}[])",
                    c.sql_type
                ))),
                (JK::Arr { .. }, Kind::Int | Kind::BigInt | Kind::Text | Kind::Numeric | Kind::Date | Kind::Enum) => {
                    // An object, array or null among the items.
                    Err(())
                }
                _ => Ok(None),
            },
            _ => Err(()),
        }
    }

    // --- generic checks of a success -------------------------------------------------

    /// A page (browse, browse_as, follow): the right relation, never a system one, rows
    /// that exist with exactly the relation's columns.
    fn check_page(&mut self, entry: &str, desc: &str, requested: Option<(&str, &str)>, page: &Value, page_size: Option<i32>) -> Option<usize> {
        let schema = page["schema"].as_str().unwrap_or_default().to_string();
        let name = page["name"].as_str().unwrap_or_default().to_string();
        if forbidden_schema(&schema) {
            self.judge.violation(entry, "a success on a system or extension schema", format!("answered {schema}.{name}: {desc}"));
            return None;
        }
        if let Some((s, n)) = requested {
            if s != schema || n != name {
                self.judge.violation(entry, "answered for another relation than the one named", format!("asked {}.{}, answered {}.{}: {desc}", short(s), short(n), short(&schema), short(&name)));
            }
        }
        let Some(at) = self.rel_index(&schema, &name) else {
            self.judge.violation(entry, "a success on a relation outside the fixture", format!("{}.{}: {desc}", short(&schema), short(&name)));
            return None;
        };
        let rel = self.rels[at].clone();
        let Some(rows) = page["rows"].as_array() else {
            self.judge.violation(entry, "a page without rows", format!("{desc}: {page}"));
            return None;
        };
        if let Some(size) = page_size {
            if rows.len() > size.max(0) as usize {
                self.judge.violation(entry, "more rows than the page size", format!("{} > {size}: {desc}", rows.len()));
            }
        }
        let expected_cols: BTreeSet<&str> = rel.cols.iter().map(|c| c.name.as_str()).collect();
        let columns: Vec<&str> = page["columns"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default();
        if columns != rel.cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>() {
            self.judge.violation(entry, "the page's columns are not the relation's", format!("{columns:?}: {desc}"));
        }
        for row in rows {
            let keys: BTreeSet<&str> = row["values"].as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            if keys != expected_cols {
                self.judge.violation(entry, "a row's keys are not the relation's columns", format!("{keys:?}: {desc}"));
                break;
            }
            if let Some(id) = &rel.id_col {
                let value = row["values"][id].as_i64();
                if !value.is_some_and(|v| v >= 1 && v as usize <= rel.data.len()) {
                    self.judge.violation(entry, "a row that is not in the relation", format!("{row}: {desc}"));
                    break;
                }
            }
        }
        Some(at)
    }

    /// Hostile text values come back exactly (or cut to their first 2,000 characters).
    fn check_values(&mut self, entry: &str, desc: &str, rel: &Rel, page: &Value) {
        let Some(id_col) = &rel.id_col else { return };
        for row in page["rows"].as_array().into_iter().flatten() {
            let Some(id) = row["values"][id_col].as_i64() else { continue };
            let Some(data) = rel.data.get(id as usize - 1) else { continue };
            for (c, cell) in rel.cols.iter().zip(data) {
                if c.kind != Kind::Text {
                    continue;
                }
                let got = &row["values"][&c.name];
                let ok = match cell {
                    None => got.is_null(),
                    Some(text) if text.chars().count() <= 2000 => got.as_str() == Some(text.as_str()),
                    Some(text) => {
                        got.as_str() == Some(text.chars().take(2000).collect::<String>().as_str())
                            && row["truncated"][&c.name].as_i64() == Some(text.chars().count() as i64)
                    }
                };
                if !ok {
                    self.judge.violation(entry, "a text value did not come back as stored", format!("{}.{} row {id}: stored {}, got {}: {desc}", rel.label(), short(&c.name), short_opt(cell), short(&got.to_string())));
                    return;
                }
            }
        }
    }

    fn check_error(&mut self, entry: &str, desc: &str, code: &str, message: &str, extra: &[&str]) {
        self.judge.outcome(entry, code);
        self.judge.examples.entry((entry.to_string(), code.to_string())).or_insert_with(|| format!("{message} <- {desc}"));
        if code == "LOST" {
            return;
        }
        if code == "42601" {
            self.judge.violation(entry, "a syntax error (request text reached the SQL)", format!("{message}: {desc}"));
        } else if code == "XX000" {
            self.judge.violation(entry, &format!("an internal error XX000: {}", message.chars().take(70).collect::<String>()), format!("{message}: {desc}"));
        } else if !(allowed_code(code) || extra.contains(&code)) {
            self.judge.violation(entry, &format!("SQLSTATE {code} is not an allowed refusal"), format!("{message}: {desc}"));
        }
        if message.trim().is_empty() {
            self.judge.violation(entry, "an error without a message", format!("{code}: {desc}"));
        }
    }

    /// A call with a broken token must be refused as unauthenticated, whatever else it asks.
    fn check_broken_token(&mut self, entry: &str, desc: &str, result: Result<(), (String, String)>) {
        match result {
            Ok(()) => {
                self.judge.outcome(entry, "ok");
                self.judge.violation(entry, "a success with a broken token", desc.to_string());
            }
            Err((code, message)) => {
                self.judge.outcome(entry, &code);
                if code != "28000" && code != "LOST" {
                    self.judge.violation(entry, &format!("a broken token refused with {code}, not 28000"), format!("{message}: {desc}"));
                }
            }
        }
    }

    // --- generators --------------------------------------------------------------------

    fn hostile_ident(&mut self) -> String {
        match self.rng.below(10) {
            0..=5 => {
                let i = self.rng.below(self.pool.len());
                self.pool[i].clone()
            }
            6..=8 => mix(&mut self.rng),
            _ => {
                let base = self.rng.pick(&self.pool).clone();
                let n = self.rng.range(64, 80);
                padded(&base.chars().filter(|c| c.is_ascii()).take(40).collect::<String>(), 'q', n)
            }
        }
    }

    /// A schema and relation to name: mostly real ones (so that the rest of the request
    /// is reached), else near misses, system relations and hostile names.
    fn pick_target(&mut self) -> (Option<String>, Option<String>) {
        let r = self.rng.below(100);
        if r < 55 {
            let rel = self.rng.pick(&self.rels).clone();
            (Some(rel.schema), Some(rel.name))
        } else if r < 65 {
            let rel = self.rng.pick(&self.rels).clone();
            (Some(rel.schema), Some(self.hostile_ident()))
        } else if r < 77 {
            let (s, n) = self.rng.pick(&self.system).clone();
            // The system's own names, or its names in a user schema's place.
            match self.rng.below(4) {
                0 => (Some("public".into()), Some(n)),
                1 => (Some(s.to_uppercase()), Some(n)),
                _ => (Some(s), Some(n)),
            }
        } else if r < 87 {
            let rel = self.rng.pick(&self.rels).clone();
            let near = |rng: &mut Rng, s: &str| -> String {
                match rng.below(7) {
                    0 => s.to_uppercase(),
                    1 => s.to_lowercase(),
                    2 => format!("{s} "),
                    3 => s.trim().to_string(),
                    4 => qi(s),
                    5 => format!(" {s}"),
                    _ => s.chars().skip(1).collect(),
                }
            };
            if let Some(w) = rel.written_as.clone() {
                (Some(rel.schema), Some(w))
            } else if self.rng.chance(50) {
                let s = near(&mut self.rng, &rel.schema);
                (Some(s), Some(rel.name))
            } else {
                let n = near(&mut self.rng, &rel.name);
                (Some(rel.schema), Some(n))
            }
        } else if r < 98 {
            let s = self.hostile_ident();
            let n = self.hostile_ident();
            (Some(s), Some(n))
        } else {
            let rel = self.rng.pick(&self.rels).clone();
            if self.rng.chance(50) {
                (None, Some(rel.name))
            } else {
                (Some(rel.schema), None)
            }
        }
    }

    fn hostile_value(&mut self) -> JV {
        let rng = &mut self.rng;
        match rng.below(20) {
            0..=5 => JV::s(rng.text(TEXT_VALUES)),
            6..=7 => JV::s(&mix(rng)),
            8..=9 => JV::num(rng.text(NUMBER_LITERALS)),
            10 => JV::s(rng.text(DATE_VALUES)),
            11 => JV::raw(if rng.chance(50) { "true" } else { "false" }, JK::Bool),
            12 => JV::raw("null", JK::Null),
            13 => JV::raw(&format!("{{\"a\": {}, \"b\": {}}}", jstr(rng.text(TEXT_VALUES)), rng.text(NUMBER_LITERALS)), JK::Obj),
            14 => {
                let items: Vec<JV> = (0..rng.range(0, 3)).map(|_| JV::s(rng.text(TEXT_VALUES))).collect();
                JV::arr(&items)
            }
            15 => JV::s(&match rng.below(3) {
                0 => "'".repeat(rng.range(100, 5000)),
                1 => "x".repeat(rng.range(1000, 20000)),
                _ => "表🐘".repeat(rng.range(500, 3000)),
            }),
            16 => {
                let depth = rng.range(5, 200);
                JV::raw(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth)), JK::Arr { flat: false, scalars: false })
            }
            17 => JV::raw(&format!("{{\"column\": {}, \"op\": \"eq\", \"value\": 1}}", jstr(rng.text(FRAGMENTS))), JK::Obj),
            _ => JV::s(rng.text(COMMON_TEXT)),
        }
    }

    /// A value that fits the column, or nearly, for a filter the oracle can judge.
    fn value_for(&mut self, rel: &Rel, c: &Col, op: &str) -> JV {
        let at = rel.cols.iter().position(|x| x.name == c.name).unwrap();
        let existing: Vec<String> = rel.data.iter().filter_map(|row| row[at].clone()).collect();
        let rng = &mut self.rng;
        let stored = |rng: &mut Rng| -> Option<String> { (!existing.is_empty()).then(|| rng.pick(&existing).clone()) };
        if op == "in" {
            let n = rng.range(1, 4);
            let items: Vec<JV> = (0..n)
                .map(|_| match c.kind {
                    Kind::Int | Kind::BigInt | Kind::Numeric if rng.chance(50) => JV::num(rng.text(NUMBER_LITERALS)),
                    _ => match stored(rng) {
                        Some(s) if rng.chance(60) => JV::s(&s),
                        _ => JV::s(rng.text(TEXT_VALUES)),
                    },
                })
                .collect();
            return JV::arr(&items);
        }
        if op == "like" || op == "ilike" {
            let base = stored(rng).unwrap_or_default();
            return JV::s(&match rng.below(5) {
                0 => base,
                1 => format!("%{}%", base.chars().take(3).collect::<String>()),
                2 => rng.text(TEXT_VALUES).to_string(),
                3 => "%".into(),
                _ => format!("{}_", base.chars().take(2).collect::<String>()),
            });
        }
        match c.kind {
            Kind::Text | Kind::Enum => match rng.below(10) {
                0..=5 => JV::s(&stored(rng).unwrap_or_default()),
                6..=7 => JV::s(rng.text(TEXT_VALUES)),
                8 => JV::s(rng.text(ENUM_LABELS)),
                _ => JV::s(&mix(rng)),
            },
            Kind::Int | Kind::BigInt => match rng.below(6) {
                0..=1 => JV::num(&stored(rng).unwrap_or("1".into())),
                2 => JV::s(&stored(rng).unwrap_or("1".into())),
                3 => JV::num(rng.text(NUMBER_LITERALS)),
                4 => JV::s(&format!(" {} ", stored(rng).unwrap_or("1".into()))),
                _ => JV::s(rng.text(TEXT_VALUES)),
            },
            Kind::Numeric => match rng.below(6) {
                0..=2 => {
                    let s = stored(rng).unwrap_or("0".into());
                    if s.parse::<f64>().is_ok_and(f64::is_finite) {
                        JV::num(&s)
                    } else {
                        JV::s(&s)
                    }
                }
                3 => JV::num(rng.text(NUMBER_LITERALS)),
                4 => JV::s(&stored(rng).unwrap_or("0".into())),
                _ => JV::s(rng.text(TEXT_VALUES)),
            },
            Kind::Date => match rng.below(3) {
                0 => JV::s(&stored(rng).unwrap_or("2024-02-01".into())),
                _ => JV::s(rng.text(DATE_VALUES)),
            },
            Kind::Jsonb => match rng.below(5) {
                0..=1 => {
                    let s = stored(rng).unwrap_or("{}".into());
                    JV::raw(&s, if s.starts_with('{') { JK::Obj } else if s.starts_with('[') { JK::Arr { flat: false, scalars: false } } else if s.starts_with('"') { JK::Str(serde_json::from_str(&s).unwrap()) } else if s == "null" { JK::Null } else { JK::Num })
                }
                2 => JV::s(&stored(rng).unwrap_or("{}".into())),
                3 => JV::raw(r#"{"a": 1}"#, JK::Obj),
                _ => JV::raw(&format!("{{\"k\": {}}}", jstr(rng.text(TEXT_VALUES))), JK::Obj),
            },
            Kind::TextArray => match rng.below(4) {
                0 => JV::s(&stored(rng).unwrap_or("{}".into())),
                1 => JV::s(rng.text(TEXT_VALUES)),
                _ => {
                    let items: Vec<JV> = (0..rng.range(0, 3))
                        .map(|_| if rng.chance(15) { JV::raw("null", JK::Null) } else { JV::s(rng.text(COMMON_TEXT)) })
                        .collect();
                    JV::arr(&items)
                }
            },
            Kind::Uuid => JV::s(rng.text(TEXT_VALUES)),
        }
    }

    fn column_name(&mut self, rel: Option<&Rel>) -> String {
        match rel {
            Some(r) if !r.cols.is_empty() && self.rng.chance(65) => self.rng.pick(&r.cols).name.clone(),
            _ => match self.rng.below(3) {
                0 => {
                    let c = self.rng.pick(&std_cols()).name.clone();
                    [c.to_uppercase(), format!("{c} "), qi(&c), format!("t.{}", qi(&c))][self.rng.below(4)].clone()
                }
                _ => self.hostile_ident(),
            },
        }
    }

    fn gen_filter(&mut self, rel: Option<&Rel>, depth: usize) -> String {
        let r = self.rng.below(100);
        if depth < 11 && r < 22 {
            let n = self.rng.range(1, 3);
            let children: Vec<String> = (0..n).map(|_| self.gen_filter(rel, depth + 1)).collect();
            let list = format!("[{}]", children.join(", "));
            match self.rng.below(8) {
                0..=2 => format!("{{\"and\": {list}}}"),
                3..=5 => format!("{{\"or\": {list}}}"),
                6 => list,
                _ => [
                    "{\"and\": []}".to_string(),
                    format!("{{\"and\": {}}}", jstr(&rng_text(&mut self.rng))),
                    format!("{{\"or\": {}}}", children[0]),
                    format!("{{\"and\": {list}, \"or\": {list}}}"),
                    format!("{{{}: {list}}}", jstr(&rng_text(&mut self.rng))),
                ][self.rng.below(5)]
                .clone(),
            }
        } else if r < 26 {
            [
                jstr("a = 1"),
                "1".into(),
                "true".into(),
                jstr("'; DROP TABLE public.canary; --"),
                "[1, 2]".into(),
                "{\"column\": 1, \"op\": \"eq\", \"value\": 1}".into(),
            ][self.rng.below(6)]
            .clone()
        } else {
            let column = self.column_name(rel);
            let op = if self.rng.chance(90) { self.rng.text(FILTER_OPS).to_string() } else { rng_text(&mut self.rng) };
            let value = match op.as_str() {
                "is_null" | "not_null" if self.rng.chance(85) => None,
                "in" if self.rng.chance(80) => {
                    let n = match self.rng.below(20) {
                        0 => 0,
                        1 => 1001,
                        _ => self.rng.range(1, 5),
                    };
                    let items: Vec<JV> = (0..n).map(|_| self.hostile_value()).collect();
                    Some(JV::arr(&items).raw)
                }
                _ => Some(self.hostile_value().raw),
            };
            let mut parts = vec![format!("\"column\": {}", jstr(&column)), format!("\"op\": {}", jstr(&op))];
            if let Some(v) = value {
                parts.push(format!("\"value\": {v}"));
            }
            match self.rng.below(30) {
                0 => parts.push(format!("\"sql\": {}", jstr("1=1); DROP TABLE public.canary; --"))),
                1 => {
                    parts.remove(0);
                }
                2 => parts[0] = "\"column\": [\"select\"]".into(),
                _ => {}
            }
            format!("{{{}}}", parts.join(", "))
        }
    }

    fn gen_sort(&mut self, rel: Option<&Rel>) -> String {
        if self.rng.chance(8) {
            return [
                jstr("\"select\" desc; DROP TABLE public.canary; --"),
                "1".into(),
                "null".into(),
                format!("{{\"column\": {}}}", jstr(&self.column_name(rel))),
                "[[\"select\"]]".into(),
                "[\"select\"]".into(),
            ][self.rng.below(6)]
            .clone();
        }
        let n = match self.rng.below(20) {
            0 => 9,
            _ => self.rng.range(0, 3),
        };
        let items: Vec<String> = (0..n)
            .map(|_| {
                let mut parts = vec![format!("\"column\": {}", jstr(&self.column_name(rel)))];
                match self.rng.below(10) {
                    0..=3 => parts.push("\"direction\": \"asc\"".into()),
                    4..=6 => parts.push("\"direction\": \"desc\"".into()),
                    7 => parts.push(format!("\"direction\": {}", jstr(&rng_text(&mut self.rng)))),
                    _ => {}
                }
                match self.rng.below(10) {
                    0..=2 => parts.push("\"nulls\": \"first\"".into()),
                    3..=5 => parts.push("\"nulls\": \"last\"".into()),
                    6 => parts.push(format!("\"nulls\": {}", jstr(&rng_text(&mut self.rng)))),
                    _ => {}
                }
                if self.rng.chance(4) {
                    parts.push("\"collate\": \"C\"".into());
                }
                format!("{{{}}}", parts.join(", "))
            })
            .collect();
        format!("[{}]", items.join(", "))
    }

    fn gen_search(&mut self) -> Option<String> {
        match self.rng.below(20) {
            0..=9 => None,
            10..=14 => Some(self.rng.text(TEXT_VALUES).to_string()),
            15..=16 => Some(mix(&mut self.rng)),
            17 => Some("%".repeat(1001)),
            18 => Some(" \t\n ".into()),
            _ => Some(self.rng.text(COMMON_TEXT).to_string()),
        }
    }

    fn gen_cursor(&mut self) -> Option<String> {
        match self.rng.below(20) {
            0..=15 => None,
            16 => Some(mix(&mut self.rng)),
            17 => {
                let bytes: Vec<u8> = (0..self.rng.range(1, 80)).map(|_| self.rng.next() as u8).collect();
                Some(b64_encode(&bytes))
            }
            18 => Some(b64_encode(format!("{{\"o\": {}, \"v\": [{}]}}", jstr(&mix(&mut self.rng)), jstr(self.rng.text(TEXT_VALUES))).as_bytes())),
            _ => {
                if self.cursors.is_empty() {
                    None
                } else {
                    Some(self.rng.pick(&self.cursors).3.clone())
                }
            }
        }
    }

    fn gen_request(&mut self) -> Req {
        let (schema, name) = self.pick_target();
        let rel = match (&schema, &name) {
            (Some(s), Some(n)) => self.rel_index(s, n).map(|i| self.rels[i].clone()),
            _ => None,
        };
        let filter = match self.rng.below(10) {
            0..=1 => None,
            2 => Some("null".into()),
            _ => Some(self.gen_filter(rel.as_ref(), 1)),
        };
        let sort = if self.rng.chance(45) { Some(self.gen_sort(rel.as_ref())) } else { None };
        let page_size = match self.rng.below(100) {
            0..=84 => Some(self.rng.range(1, 60) as i32),
            85..=87 => None,
            _ => Some(*self.rng.pick(&[0, -1, 1001, 1000, i32::MAX, i32::MIN])),
        };
        let total = match self.rng.below(100) {
            0..=84 => Some(self.rng.pick(&["auto", "exact", "estimate", "none"]).to_string()),
            85..=89 => None,
            _ => Some(self.hostile_ident()),
        };
        Req { schema, name, filter, sort, search: self.gen_search(), page_size, cursor: self.gen_cursor(), total }
    }

    fn broken_token(&mut self) -> String {
        match self.rng.below(6) {
            0 => String::new(),
            1 => format!("{}'", self.token),
            2 => format!("{}; --", self.token),
            3 => self.token.to_uppercase(),
            4 => self.token.chars().rev().collect(),
            _ => mix(&mut self.rng),
        }
    }

    /// Whether a request is well-formed for a real relation: it must then succeed.
    fn benign(req: &Req) -> bool {
        req.filter.is_none()
            && req.sort.is_none()
            && req.search.is_none()
            && req.cursor.is_none()
            && req.page_size.is_none_or(|p| (1..=1000).contains(&p))
            && req.total.as_deref().is_none_or(|t| ["auto", "exact", "estimate", "none"].contains(&t))
    }

    // --- the entry points' cases -------------------------------------------------------

    fn catalog_case(&mut self) {
        let broken = self.rng.chance(50);
        let token = if broken { self.broken_token() } else { self.token.clone() };
        let desc = format!("catalog(token={})", short(&token));
        let result = self.timed("catalog", &desc, false, |web| {
            as_dashboard(web, "SELECT coalesce(jsonb_agg(jsonb_build_array(schema, name, kind)), '[]')::text FROM jsonb_to_recordset(fluxbase_admin.list_tables($1) -> 'rows') AS t(schema text, name text, kind text, rls_enabled boolean, rls_forced boolean, has_primary_key boolean, explorer_limits text)", &[&token])
                .map(|rows| rows[0].get::<_, String>(0))
        });
        if broken {
            self.check_broken_token("catalog", &desc, result.map(|_| ()));
            return;
        }
        match result {
            Ok(text) => {
                self.judge.outcome("catalog", "ok");
                let listed: BTreeSet<(String, String)> = serde_json::from_str::<Vec<(String, String, String)>>(&text)
                    .unwrap()
                    .into_iter()
                    .map(|(s, n, _)| (s, n))
                    .collect();
                let expected: BTreeSet<(String, String)> = self.rels.iter().map(|r| (r.schema.clone(), r.name.clone())).collect();
                if listed != expected {
                    let extra: Vec<_> = listed.difference(&expected).collect();
                    let missing: Vec<_> = expected.difference(&listed).collect();
                    self.judge.violation("catalog", "the list is not exactly the application's relations", format!("extra {extra:?}, missing {missing:?}"));
                }
            }
            Err((code, message)) => {
                self.check_error("catalog", &desc, &code, &message, &[]);
                self.judge.violation("catalog", "a valid session could not list the catalog", format!("{code}: {message}"));
            }
        }
    }

    fn describe_case(&mut self) {
        let broken = self.rng.chance(8);
        let token = if broken { self.broken_token() } else { self.token.clone() };
        let (schema, name) = self.pick_target();
        let desc = format!("describe_table(token={}, schema={}, name={})", short(&token), short_opt(&schema), short_opt(&name));
        let out = self.json_call("describe_table", &desc, "SELECT fluxbase_admin.describe_table($1, $2, $3)::text", &[&token, &schema, &name]);
        if broken {
            self.check_broken_token("describe_table", &desc, match out {
                Out::Ok(_) => Ok(()),
                Out::Err { code, message } => Err((code, message)),
            });
            return;
        }
        let real = match (&schema, &name) {
            (Some(s), Some(n)) => self.rel_index(s, n),
            _ => None,
        };
        match out {
            Out::Ok(v) => {
                self.judge.outcome("describe_table", "ok");
                let (s, n) = (v["schema"].as_str().unwrap_or_default().to_string(), v["name"].as_str().unwrap_or_default().to_string());
                if forbidden_schema(&s) {
                    self.judge.violation("describe_table", "a success on a system or extension schema", desc.clone());
                }
                if Some(&s) != schema.as_ref() || Some(&n) != name.as_ref() {
                    self.judge.violation("describe_table", "described another relation than the one named", format!("got {}.{}: {desc}", short(&s), short(&n)));
                }
                match real {
                    None => self.judge.violation("describe_table", "a success on a relation outside the fixture", desc),
                    Some(at) => {
                        let rel = self.rels[at].clone();
                        let cols: Vec<&str> = v["columns"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default();
                        if cols != rel.cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>() {
                            self.judge.violation("describe_table", "the columns are not the relation's", format!("{cols:?}: {desc}"));
                        }
                        let fks: BTreeSet<&str> = v["foreign_keys"].as_array().map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect()).unwrap_or_default();
                        if fks != rel.fks.iter().map(|f| f.name.as_str()).collect() {
                            self.judge.violation("describe_table", "the foreign keys are not the relation's", format!("{fks:?}: {desc}"));
                        }
                    }
                }
            }
            Out::Err { code, message } => {
                self.check_error("describe_table", &desc, &code, &message, &[]);
                if real.is_some() {
                    self.judge.violation("describe_table", "a real relation, exactly named, was refused", format!("{code}: {message}: {desc}"));
                }
            }
        }
    }

    /// Random requests through browse, plan_browse or browse_as.
    fn random_case(&mut self, entry: &str) {
        let mut req = self.gen_request();
        let broken = self.rng.chance(3);
        let token = if broken { self.broken_token() } else { self.token.clone() };
        let mut imp = Some(self.impersonation.clone());
        let mut extra: Vec<&str> = vec![];
        if entry == "browse_as" {
            match self.rng.below(40) {
                0 => {
                    imp = Some(uuid::Uuid::new_v4().to_string());
                    extra.push("FB001");
                }
                1 => imp = None,
                _ => {}
            }
        }
        if entry == "plan_browse" {
            req.total = None;
        }
        let desc = format!("{entry}(token={}, {}{})", short(&token), req.describe(), if entry == "browse_as" { format!(", impersonation={imp:?}") } else { String::new() });
        let out = match entry {
            "browse" => self.browse(&token, &req, &desc),
            "browse_as" => self.browse_as(&token, imp.as_deref(), &req, &desc),
            _ => self.plan(&token, &req, &desc),
        };
        if broken {
            self.check_broken_token(entry, &desc, match out {
                Out::Ok(_) => Ok(()),
                Out::Err { code, message } => Err((code, message)),
            });
            return;
        }
        let real = match (&req.schema, &req.name) {
            (Some(s), Some(n)) => self.rel_index(s, n),
            _ => None,
        };
        match out {
            Out::Ok(v) => {
                self.judge.outcome(entry, "ok");
                let requested = req.schema.as_deref().zip(req.name.as_deref());
                if entry == "plan_browse" {
                    self.check_plan(&desc, requested, &v);
                } else if let Some(at) = self.check_page(entry, &desc, requested, &v, req.page_size.or(Some(50))) {
                    let rel = self.rels[at].clone();
                    self.check_values(entry, &desc, &rel, &v);
                    if entry == "browse_as" && v["impersonation_id"].as_str() != imp.as_deref() {
                        self.judge.violation(entry, "the page does not name its impersonation", desc.clone());
                    }
                    if let (Some(c), Some(p)) = (v["next_cursor"].as_str(), req.page_size) {
                        if self.cursors.len() < 400 {
                            self.cursors.push((at, req.sort.clone(), p, c.to_string()));
                        }
                    }
                }
            }
            Out::Err { code, message } => {
                self.check_error(entry, &desc, &code, &message, &extra);
                if real.is_some() && Self::benign(&req) && extra.is_empty() && imp.is_some() {
                    self.judge.violation(entry, "a plain request on a real relation was refused", format!("{code}: {message}: {desc}"));
                }
            }
        }
    }

    /// A plan: for the named relation, and its SQL holds no request text: once quoted
    /// identifiers are taken out, only the builder's own literals, no comment and no
    /// second statement remain.
    fn check_plan(&mut self, desc: &str, requested: Option<(&str, &str)>, plan: &Value) {
        let schema = plan["schema"].as_str().unwrap_or_default();
        let name = plan["name"].as_str().unwrap_or_default();
        if forbidden_schema(schema) {
            self.judge.violation("plan_browse", "a plan for a system or extension schema", desc.to_string());
        }
        if let Some((s, n)) = requested {
            if s != schema || n != name {
                self.judge.violation("plan_browse", "planned another relation than the one named", desc.to_string());
            }
        }
        if self.rel_index(schema, name).is_none() {
            self.judge.violation("plan_browse", "a plan for a relation outside the fixture", desc.to_string());
        }
        if !plan["params"].as_array().is_some_and(|p| p.iter().all(Value::is_string)) {
            self.judge.violation("plan_browse", "params are not all text", desc.to_string());
        }
        for key in ["page_sql", "count_sql", "estimate_sql", "export_sql"] {
            let Some(sql) = plan[key].as_str() else {
                self.judge.violation("plan_browse", &format!("no {key}"), desc.to_string());
                continue;
            };
            match strip_sql(sql) {
                Err(e) => self.judge.violation("plan_browse", "SQL that does not lex", format!("{e}: {key}: {}: {desc}", short(sql))),
                Ok((rest, literals)) => {
                    if let Some(bad) = literals.iter().find(|l| !["", "\"", "\"\"", "{}", ","].contains(&l.as_str())) {
                        self.judge.violation("plan_browse", "a string literal in the SQL that the builder does not write", format!("{}: {key}: {desc}", short(bad)));
                    }
                    for token in ["--", "/*", ";", "$$", "E'"] {
                        if rest.contains(token) {
                            self.judge.violation("plan_browse", &format!("{token:?} outside identifiers in the SQL"), format!("{key}: {}: {desc}", short(sql)));
                        }
                    }
                }
            }
        }
    }

    /// One condition the superuser's query can judge, through browse, browse_as or an export.
    fn exact_case(&mut self, via: Via) {
        let candidates: Vec<usize> = (0..self.rels.len()).filter(|&i| self.rels[i].id_col.is_some()).collect();
        let at = *self.rng.pick(&candidates);
        let rel = self.rels[at].clone();
        let c = self.rng.pick(&rel.cols).clone();
        let ops: &[&str] = match c.kind {
            Kind::Text => &["eq", "eq", "eq", "neq", "lt", "lte", "gt", "gte", "in", "like", "ilike", "is_null", "not_null", "contains"],
            Kind::Jsonb | Kind::TextArray => &["eq", "eq", "neq", "lt", "gt", "contains", "contains", "is_null", "like"],
            _ => &["eq", "eq", "eq", "neq", "lt", "lte", "gt", "gte", "in", "is_null", "not_null", "like", "contains"],
        };
        let op = self.rng.pick(ops).to_string();
        let value = (!["is_null", "not_null"].contains(&op.as_str())).then(|| self.value_for(&rel, &c, &op));
        let filter = match &value {
            Some(v) => format!("{{\"column\": {}, \"op\": {}, \"value\": {}}}", jstr(&c.name), jstr(&op), v.raw),
            None => format!("{{\"column\": {}, \"op\": {}}}", jstr(&c.name), jstr(&op)),
        };
        let as_authenticated = via == Via::BrowseAs;
        let expect = match Self::oracle_condition(&c, &op, value.as_ref()) {
            Err(()) => Expect::Refuse("no superuser reading of this value".into()),
            Ok(None) => Expect::Unknown,
            Ok(Some(cond)) => match self.su_ids(&rel, &cond, value.as_ref().map(|v| v.raw.as_str()), as_authenticated) {
                Ok(ids) => Expect::Ids(ids),
                Err(e) => Expect::Refuse(format!("the superuser's query fails: {e}")),
            },
        };
        // Text compared with text is always data: it must never be refused.
        let must_succeed = match (&value, c.kind) {
            (None, _) => true,
            (Some(v), Kind::Text) => matches!(v.kind, JK::Str(_)) && ["eq", "neq", "lt", "lte", "gt", "gte"].contains(&op.as_str())
                || matches!(v.kind, JK::Arr { flat: true, scalars: true }) && op == "in",
            _ => false,
        };
        let mut req = Req::on(&rel);
        req.filter = Some(filter);
        let entry = match via {
            Via::Browse => "browse",
            Via::BrowseAs => "browse_as",
            Via::Export => "export",
        };
        let desc = format!("{entry}({}) on column {} ({:?})", req.describe(), short(&c.name), c.kind);
        if via == Via::Browse && self.rng.chance(35) {
            self.plan_check_case(&req, &format!("plan_browse({}) on column {} ({:?})", req.describe(), short(&c.name), c.kind));
        }
        // Run it.
        let got: Kept = match via {
            Via::Browse | Via::BrowseAs => {
                let token = self.token.clone();
                let out = if via == Via::Browse {
                    self.browse(&token, &req, &desc)
                } else {
                    let imp = self.impersonation.clone();
                    self.browse_as(&token, Some(&imp), &req, &desc)
                };
                match out {
                    Out::Ok(v) => {
                        let ids = v["rows"].as_array().map(|rows| rows.iter().filter_map(|r| r["values"][rel.id_col.as_ref().unwrap()].as_i64()).collect()).unwrap_or_default();
                        Ok((ids, Some(v)))
                    }
                    Out::Err { code, message } => Err((entry, code, message)),
                }
            }
            Via::Export => {
                let token = self.token.clone();
                match self.export_ticket(&token, &req, &desc) {
                    Err((code, message)) => Err(("export", code, message)),
                    Ok(ticket) => {
                        self.judge.outcome("export", "ok");
                        match self.open_export(&ticket, None, &desc) {
                            Err((code, message)) => Err(("open_export", code, message)),
                            Ok((header, lines)) => {
                                self.judge.outcome("open_export", "ok");
                                let expected_header = rel.cols.iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect::<Vec<_>>().join(",");
                                if header != expected_header {
                                    self.judge.violation("open_export", "the CSV header is not the quoted column names", format!("{}: {desc}", short(&header)));
                                }
                                // Lines are compared by count: the ids are not parsed back out of CSV.
                                Ok(((0..lines.len() as i64).collect(), None))
                            }
                        }
                    }
                }
            }
        };
        match (got, expect) {
            (Ok((ids, page)), expect) => {
                if via != Via::Export {
                    self.judge.outcome(entry, "ok");
                    if let Some(p) = &page {
                        self.check_page(entry, &desc, Some((&rel.schema, &rel.name)), p, Some(1000));
                        self.check_values(entry, &desc, &rel, p);
                        let total = p["total"]["count"].as_i64();
                        if total != Some(ids.len() as i64) {
                            self.judge.violation(entry, "the exact total is not the number of rows", format!("total {total:?}, {} rows: {desc}", ids.len()));
                        }
                    }
                }
                match expect {
                    Expect::Ids(mut want) => {
                        let mut ids = ids;
                        ids.sort();
                        want.sort();
                        if via == Via::Export {
                            if ids.len() != want.len() {
                                self.judge.violation(
                                    "open_export",
                                    &format!("a {:?} {op} filter exported another number of rows than the superuser's query keeps", c.kind),
                                    format!("explorer {} lines, superuser rows {want:?}: {desc}", ids.len()),
                                );
                            }
                        } else if ids != want {
                            self.judge.violation(
                                entry,
                                &format!("a {:?} {op} filter kept other rows than the superuser's query", c.kind),
                                format!("explorer {ids:?}, superuser {want:?}: {desc}"),
                            );
                        }
                    }
                    Expect::Refuse(why) => self.judge.violation(
                        entry,
                        &format!("accepted a {:?} {op} value that Postgres refuses", c.kind),
                        format!("{why}; explorer kept {ids:?}: {desc}"),
                    ),
                    Expect::Unknown => {}
                }
            }
            (Err((failed, code, message)), _) => {
                self.check_error(failed, &desc, &code, &message, &[]);
                if must_succeed && code != "LOST" {
                    self.judge.violation(failed, "a text value compared with a text column was refused", format!("{code}: {message}: {desc}"));
                }
            }
        }
    }

    /// Search terms, checked against the superuser's ILIKE over the text columns.
    fn search_case(&mut self) {
        let candidates: Vec<usize> = (0..self.rels.len()).filter(|&i| self.rels[i].id_col.is_some()).collect();
        let rel = self.rels[*self.rng.pick(&candidates)].clone();
        let term = match self.rng.below(6) {
            0..=1 => {
                let texts: Vec<String> = rel.data.iter().flat_map(|row| row.iter().zip(&rel.cols).filter(|(_, c)| c.kind == Kind::Text).filter_map(|(v, _)| v.clone())).collect();
                let t = if texts.is_empty() { "x".to_string() } else { self.rng.pick(&texts).clone() };
                let n = t.chars().count();
                let start = self.rng.below(n.max(1));
                t.chars().skip(start).take(self.rng.range(1, 6)).collect()
            }
            2..=3 => self.rng.text(TEXT_VALUES).to_string(),
            4 => mix(&mut self.rng),
            _ => self.rng.text(COMMON_TEXT).to_string(),
        };
        let mut req = Req::on(&rel);
        req.search = Some(term.clone());
        let desc = format!("browse({}) search", req.describe());
        let trimmed = term.trim();
        let text_cols: Vec<&Col> = rel.cols.iter().filter(|c| c.kind == Kind::Text).collect();
        let expect = if trimmed.is_empty() {
            Some(self.su_ids(&rel, "true", None, false).unwrap())
        } else if text_cols.is_empty() {
            None
        } else {
            // Case-insensitive substring, without LIKE: ILIKE lowers both sides in a UTF-8 database.
            let cond = text_cols.iter().map(|c| format!("strpos(lower(t.{}), lower($1::text)) > 0", qi(&c.name))).collect::<Vec<_>>().join(" OR ");
            Some(self.su_ids(&rel, &cond, Some(trimmed), false).unwrap())
        };
        let token = self.token.clone();
        match self.browse(&token, &req, &desc) {
            Out::Ok(v) => {
                self.judge.outcome("browse", "ok");
                self.check_page("browse", &desc, Some((&rel.schema, &rel.name)), &v, Some(1000));
                self.check_values("browse", &desc, &rel, &v);
                let mut ids: Vec<i64> = v["rows"].as_array().map(|rows| rows.iter().filter_map(|r| r["values"][rel.id_col.as_ref().unwrap()].as_i64()).collect()).unwrap_or_default();
                ids.sort();
                match expect {
                    Some(mut want) => {
                        want.sort();
                        if ids != want {
                            self.judge.violation("browse", "a search kept other rows than the superuser's ILIKE", format!("explorer {ids:?}, superuser {want:?}: {desc}"));
                        }
                    }
                    None => self.judge.violation("browse", "searched a relation without text columns", desc),
                }
            }
            Out::Err { code, message } => {
                self.check_error("browse", &desc, &code, &message, &[]);
                if expect.is_some() {
                    self.judge.violation("browse", "a search term was refused", format!("{code}: {message}: {desc}"));
                }
            }
        }
    }

    /// Pages through a relation by its cursors and compares the whole walk with the
    /// superuser's ORDER BY.
    fn walk_case(&mut self) {
        let candidates: Vec<usize> = (0..self.rels.len()).filter(|&i| self.rels[i].id_col.is_some() && self.rels[i].cols.len() > 1).collect();
        let at = *self.rng.pick(&candidates);
        let rel = self.rels[at].clone();
        let id = rel.id_col.clone().unwrap();
        let n = self.rng.range(1, 2);
        let mut sort: Vec<(String, bool, bool)> = Vec::new();
        for _ in 0..n {
            let c = self.rng.pick(&rel.cols).clone();
            if c.kind == Kind::Uuid || sort.iter().any(|s| s.0 == c.name) {
                continue;
            }
            sort.push((c.name.clone(), self.rng.chance(50), self.rng.chance(50)));
        }
        if !rel.keyed && !sort.iter().any(|s| s.0 == id) {
            sort.push((id.clone(), false, false));
        }
        let sort_json = format!(
            "[{}]",
            sort.iter()
                .map(|(c, d, nf)| format!("{{\"column\": {}, \"direction\": \"{}\", \"nulls\": \"{}\"}}", jstr(c), if *d { "desc" } else { "asc" }, if *nf { "first" } else { "last" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut order: Vec<String> = sort
            .iter()
            .map(|(c, d, nf)| format!("t.{} {} NULLS {}", qi(c), if *d { "DESC" } else { "ASC" }, if *nf { "FIRST" } else { "LAST" }))
            .collect();
        if rel.keyed && !sort.iter().any(|s| s.0 == id) {
            order.push(format!("t.{} ASC NULLS LAST", qi(&id)));
        }
        let want = self.su_ids(&rel, &format!("true ORDER BY {}", order.join(", ")), None, false).unwrap();
        let page_size = self.rng.range(1, 4) as i32;
        let mut req = Req::on(&rel);
        req.sort = Some(sort_json);
        req.page_size = Some(page_size);
        req.total = Some("none".into());
        let mut got: Vec<i64> = Vec::new();
        let token = self.token.clone();
        for _ in 0..=(rel.data.len() + 2) {
            let desc = format!("browse({}) walk", req.describe());
            match self.browse(&token, &req, &desc) {
                Out::Ok(v) => {
                    self.judge.outcome("browse", "ok");
                    self.check_page("browse", &desc, Some((&rel.schema, &rel.name)), &v, Some(page_size));
                    got.extend(v["rows"].as_array().into_iter().flatten().filter_map(|r| r["values"][&id].as_i64()));
                    match v["next_cursor"].as_str() {
                        Some(c) => {
                            if self.cursors.len() < 400 {
                                self.cursors.push((at, req.sort.clone(), page_size, c.to_string()));
                            }
                            req.cursor = Some(c.to_string());
                            if got.len() == page_size as usize {
                                // The plan of the second page binds the cursor's values too.
                                let desc = format!("plan_browse({}) walk", req.describe());
                                self.plan_check_case(&req, &desc);
                            }
                        }
                        None => break,
                    }
                }
                Out::Err { code, message } => {
                    self.check_error("browse", &desc, &code, &message, &[]);
                    self.judge.violation("browse", "a page of a walk by cursor was refused", format!("{code}: {message}: {desc}"));
                    return;
                }
            }
        }
        if got != want {
            self.judge.violation(
                "browse",
                "paging by cursor did not give the superuser's ORDER BY",
                format!("explorer {got:?}, superuser {want:?}: browse({}) walk", req.describe()),
            );
        }
    }

    /// Real cursors, tampered with.
    fn tampered_cursor_case(&mut self) {
        if self.cursors.is_empty() {
            return;
        }
        let (at, sort, page_size, cursor) = self.rng.pick(&self.cursors).clone();
        let mut rel = self.rels[at].clone();
        let doc: Option<Value> = b64_decode(&cursor).and_then(|b| serde_json::from_slice(&b).ok());
        let Some(doc) = doc else {
            self.judge.violation("browse", "a cursor the explorer gave is not base64url JSON", cursor);
            return;
        };
        // must_refuse: the cursor belongs to another order or relation, or is not a cursor.
        let (tampered, must_refuse, what) = match self.rng.below(10) {
            0..=2 => {
                let mut d = doc.clone();
                if let Some(Value::Array(vals)) = d.get_mut("v") {
                    if !vals.is_empty() {
                        let i = self.rng.below(vals.len());
                        vals[i] = if self.rng.chance(80) { Value::String(self.hostile_value_text()) } else { Value::Null };
                    }
                } else if d.get("n").is_some() {
                    d["n"] = Value::String(self.hostile_value_text());
                }
                (b64_encode(d.to_string().as_bytes()), false, "a hostile value")
            }
            3 => {
                let raw = *self.rng.pick(&["-1", "1.5", "\"5\"", "1e30", "9223372036854775807", "null", "[]", "1e400"]);
                let text = doc.to_string();
                let o = doc["o"].to_string();
                let replaced = format!("{{\"o\": {o}, \"n\": {raw}}}");
                let _ = text;
                (b64_encode(replaced.as_bytes()), rel.keyed || raw != "9223372036854775807", "a hostile offset")
            }
            4 => {
                let mut d = doc.clone();
                let schema = self.hostile_ident();
                let changed = d["o"][0].as_str() != Some(schema.as_str());
                d["o"][0] = Value::String(schema);
                (b64_encode(d.to_string().as_bytes()), changed, "another schema in the order")
            }
            5 => {
                // The cursor of one relation on another.
                let other = self.rng.below(self.rels.len());
                rel = self.rels[other].clone();
                (cursor.clone(), other != at, "another relation's cursor")
            }
            6 => {
                let mut chars: Vec<char> = cursor.chars().collect();
                let i = self.rng.below(chars.len());
                chars[i] = *self.rng.pick(&['A', '_', '-', '\'', '"', ';', '=']);
                (chars.into_iter().collect(), false, "a flipped character")
            }
            7 => (format!("  {cursor}\n"), false, "whitespace around"),
            8 => {
                let mut d = doc.clone();
                if let Some(Value::Array(vals)) = d.get_mut("v") {
                    vals.push(Value::String("'; DROP TABLE public.canary; --".into()));
                }
                (b64_encode(d.to_string().as_bytes()), d.get("v").is_some(), "one value too many")
            }
            _ => (cursor[..cursor.len() / 2].to_string(), false, "cut short"),
        };
        let mut req = Req::on(&rel);
        req.sort = sort;
        req.page_size = Some(page_size);
        req.cursor = Some(tampered);
        req.total = Some("auto".into());
        let desc = format!("browse({}) tampered cursor: {what}", req.describe());
        let token = self.token.clone();
        match self.browse(&token, &req, &desc) {
            Out::Ok(v) => {
                self.judge.outcome("browse", "ok");
                self.check_page("browse", &desc, Some((&rel.schema, &rel.name)), &v, Some(page_size));
                if must_refuse {
                    self.judge.violation("browse", &format!("a tampered cursor ({what}) was accepted"), desc);
                }
            }
            Out::Err { code, message } => self.check_error("browse", &desc, &code, &message, &[]),
        }
    }

    /// plan_browse on a request expected to plan; its SQL is checked.
    fn plan_check_case(&mut self, req: &Req, desc: &str) {
        let token = self.token.clone();
        match self.plan(&token, req, desc) {
            Out::Ok(v) => {
                self.judge.outcome("plan_browse", "ok");
                self.check_plan(desc, req.schema.as_deref().zip(req.name.as_deref()), &v);
            }
            Out::Err { code, message } => self.check_error("plan_browse", desc, &code, &message, &[]),
        }
    }

    fn hostile_value_text(&mut self) -> String {
        match self.rng.below(4) {
            0 => mix(&mut self.rng),
            1 => self.rng.text(NUMBER_LITERALS).to_string(),
            2 => self.rng.text(DATE_VALUES).to_string(),
            _ => self.rng.text(TEXT_VALUES).to_string(),
        }
    }

    /// Filters nested and sized past every limit.
    fn deep_filter_cases(&mut self) {
        let rel = self.rels.iter().find(|r| r.schema == "public" && r.name == "select").unwrap().clone();
        let leaf = "{\"column\": \"select\", \"op\": \"is_null\"}";
        let mut cases: Vec<(String, String)> = Vec::new();
        for depth in [8usize, 9, 20, 64, 127, 128, 129, 200, 1000] {
            cases.push((format!("{depth} levels of and"), format!("{}{leaf}{}", "{\"and\": [".repeat(depth - 1), "]}".repeat(depth - 1))));
            cases.push((format!("{depth} levels of bare arrays"), format!("{}{leaf}{}", "[".repeat(depth - 1), "]".repeat(depth - 1))));
            cases.push((
                format!("a condition whose value is nested {depth} deep"),
                format!("{{\"column\": \"v\", \"op\": \"contains\", \"value\": {}1{}}}", "[".repeat(depth), "]".repeat(depth)),
            ));
        }
        cases.push(("101 conditions".into(), format!("[{}]", vec![leaf; 101].join(", "))));
        cases.push(("100 conditions".into(), format!("[{}]", vec![leaf; 100].join(", "))));
        let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        cases.push(("in with 1001 values".into(), format!("{{\"column\": \"select\", \"op\": \"in\", \"value\": [{}]}}", many.join(", "))));
        cases.push(("in with 1000 values".into(), format!("{{\"column\": \"select\", \"op\": \"in\", \"value\": [{}]}}", many[..1000].join(", "))));
        cases.push(("a 1 MB value".into(), format!("{{\"column\": \"t\", \"op\": \"eq\", \"value\": {}}}", jstr(&"'; --".repeat(200_000)))));
        cases.push(("a value of 1e400".into(), "{\"column\": \"$1\", \"op\": \"eq\", \"value\": 1e400}".into()));
        cases.push(("a value of 1e-400".into(), "{\"column\": \"$1\", \"op\": \"eq\", \"value\": 1e-400}".into()));
        cases.push(("an object with a big number".into(), "{\"column\": \"v\", \"op\": \"contains\", \"value\": {\"a\": 1e400}}".into()));
        let token = self.token.clone();
        for (what, filter) in cases {
            let mut req = Req::on(&rel);
            req.filter = Some(filter);
            let desc = format!("browse({}) {what}", req.describe());
            match self.browse(&token, &req, &desc) {
                Out::Ok(v) => {
                    self.judge.outcome("browse", "ok");
                    self.check_page("browse", &desc, Some(("public", "select")), &v, Some(1000));
                }
                Out::Err { code, message } => self.check_error("browse", &desc, &code, &message, &[]),
            }
            // The same through the plan.
            let desc = format!("plan_browse({}) {what}", req.describe());
            match self.plan(&token, &req, &desc) {
                Out::Ok(v) => {
                    self.judge.outcome("plan_browse", "ok");
                    self.check_plan(&desc, Some(("public", "select")), &v);
                }
                Out::Err { code, message } => self.check_error("plan_browse", &desc, &code, &message, &[]),
            }
        }
    }

    /// Sorts nested and sized past every limit.
    fn deep_sort_cases(&mut self) {
        let rel = self.rels.iter().find(|r| r.schema == "public" && r.name == "select").unwrap().clone();
        let token = self.token.clone();
        for depth in [2usize, 63, 64, 65, 200] {
            for sort in [
                format!("{}{{\"column\": \"select\"}}{}", "[".repeat(depth), "]".repeat(depth)),
                format!("[{{\"column\": {}\"select\"{}}}]", "[".repeat(depth), "]".repeat(depth)),
            ] {
                let mut req = Req::on(&rel);
                req.sort = Some(sort);
                let desc = format!("browse({}) a sort nested {depth} deep", req.describe());
                match self.browse(&token, &req, &desc) {
                    Out::Ok(v) => {
                        self.judge.outcome("browse", "ok");
                        self.check_page("browse", &desc, Some(("public", "select")), &v, Some(1000));
                    }
                    Out::Err { code, message } => self.check_error("browse", &desc, &code, &message, &[]),
                }
            }
        }
    }

    fn follow_case(&mut self) {
        let with_fks: Vec<usize> = (0..self.rels.len()).filter(|&i| !self.rels[i].fks.is_empty()).collect();
        let broken = self.rng.chance(3);
        let token = if broken { self.broken_token() } else { self.token.clone() };
        let r = self.rng.below(100);
        // (schema, relation, fk name, row json, the fk and value when the oracle applies)
        let (schema, name, fk_name, row, judged): FollowCase = if r < 60 {
            let rel = self.rels[*self.rng.pick(&with_fks)].clone();
            let fk = self.rng.pick(&rel.fks).clone();
            let at = rel.cols.iter().position(|c| c.name == fk.local).unwrap();
            let local_kind = rel.cols[at].kind;
            let value: Option<JV> = match self.rng.below(10) {
                0..=4 => {
                    let row = self.rng.pick(&rel.data).clone();
                    row[at].as_ref().map(|v| if local_kind == Kind::Int && self.rng.chance(50) { JV::num(v) } else { JV::s(v) })
                }
                5..=7 => Some(self.hostile_value()),
                8 => Some(JV::num(self.rng.text(NUMBER_LITERALS))),
                _ => None,
            };
            let mut fields = Vec::new();
            if let Some(v) = &value {
                fields.push(format!("{}: {}", jstr(&fk.local), v.raw));
            }
            if self.rng.chance(30) {
                fields.push(format!("{}: {}", jstr(&self.hostile_ident()), self.hostile_value().raw));
            }
            let row = match self.rng.below(12) {
                0 => format!("[{}]", value.as_ref().map(|v| v.raw.clone()).unwrap_or_default()),
                1 => value.as_ref().map(|v| v.raw.clone()).unwrap_or("null".into()),
                _ => format!("{{{}}}", fields.join(", ")),
            };
            let object = row.starts_with('{');
            (Some(rel.schema.clone()), Some(rel.name.clone()), Some(fk.name.clone()), row, object.then_some((fk, value)))
        } else if r < 80 {
            let rel = self.rels[*self.rng.pick(&with_fks)].clone();
            let fk = match self.rng.below(4) {
                0 => Some(self.rng.pick(&rel.fks).name.to_uppercase()),
                1 => None,
                _ => Some(self.hostile_ident()),
            };
            (Some(rel.schema), Some(rel.name), fk, "{}".into(), None)
        } else {
            let (s, n) = self.pick_target();
            let fk = if self.rng.chance(50) { self.hostile_ident() } else { "to_auth_users".into() };
            (s, n, Some(fk), format!("{{\"select\": 1, \"uid\": {}}}", jstr(&self.hostile_value_text())), None)
        };
        let desc = format!(
            "follow(token={}, schema={}, relation={}, foreign_key={}, row={})",
            short(&token),
            short_opt(&schema),
            short_opt(&name),
            short_opt(&fk_name),
            short(&row)
        );
        let request = format!(
            "{{\"schema\": {}, \"table\": {}, \"foreign_key\": {}, \"row\": {row}}}",
            schema.as_deref().map(jstr).unwrap_or("null".into()),
            name.as_deref().map(jstr).unwrap_or("null".into()),
            fk_name.as_deref().map(jstr).unwrap_or("null".into())
        );
        let out = self.two_planes(&token, "follow", &request, None, "browse()", "SELECT fluxbase_admin.browse()::text", &desc);
        if broken {
            self.check_broken_token("follow", &desc, match out {
                Out::Ok(_) => Ok(()),
                Out::Err { code, message } => Err((code, message)),
            });
            return;
        }
        match out {
            Out::Ok(v) => {
                self.judge.outcome("follow", "ok");
                let Some(target) = self.check_page("follow", &desc, None, &v, Some(1)) else { return };
                let target = self.rels[target].clone();
                if let Some((fk, value)) = judged {
                    if (target.schema.as_str(), target.name.as_str()) != (fk.target_schema.as_str(), fk.target_name.as_str()) {
                        self.judge.violation("follow", "followed to another relation than the key's", desc.clone());
                    }
                    let tc = target.col(&fk.target_col).unwrap().clone();
                    let Some(value) = value else {
                        self.judge.violation("follow", "followed a row without the key's value", desc);
                        return;
                    };
                    if let Ok(Some(cond)) = Self::oracle_condition(&tc, "eq", Some(&value)) {
                        match self.su_ids(&target, &cond, Some(&value.raw), false) {
                            Ok(want) => {
                                let got: Vec<i64> = v["rows"].as_array().into_iter().flatten().filter_map(|r| r["values"][target.id_col.as_ref().unwrap()].as_i64()).collect();
                                if got.len() != want.len().min(1) || !got.iter().all(|g| want.contains(g)) {
                                    self.judge.violation("follow", "followed to another row than the superuser's query", format!("explorer {got:?}, superuser {want:?}: {desc}"));
                                }
                            }
                            Err(e) => self.judge.violation("follow", "followed with a value Postgres refuses", format!("{e}: {desc}")),
                        }
                    } else {
                        self.judge.violation("follow", "followed with a value that is not a scalar", desc);
                    }
                }
            }
            Out::Err { code, message } => {
                self.check_error("follow", &desc, &code, &message, &[]);
                // A real key, a real row of the child, a value that exists: that must work
                // (unless the key leads into a system schema).
                if let Some((fk, Some(value))) = &judged {
                    // The fixture's referenced keys are integer columns: a value beyond i32
                    // cannot be in them, and is refused as not fitting the column.
                    let plain = matches!(&value.kind, JK::Str(s) if s.parse::<i32>().is_ok()) || (matches!(value.kind, JK::Num) && value.raw.parse::<i32>().is_ok());
                    if plain && !forbidden_schema(&fk.target_schema) {
                        self.judge.violation("follow", "a real key with a real value was refused", format!("{code}: {message}: {desc}"));
                    }
                }
            }
        }
    }

    fn export_case(&mut self) {
        let req = self.gen_request();
        let broken = self.rng.chance(3);
        let token = if broken { self.broken_token() } else { self.token.clone() };
        let desc = format!("export(token={}, {})", short(&token), req.describe());
        let started = self.export_ticket(&token, &req, &desc);
        if broken {
            self.check_broken_token("export", &desc, started.map(|_| ()));
            return;
        }
        let ticket = match started {
            Ok(ticket) => {
                self.judge.outcome("export", "ok");
                ticket
            }
            Err((code, message)) => {
                self.check_error("export", &desc, &code, &message, &[]);
                return;
            }
        };
        let (schema, name) = (req.schema.clone().unwrap_or_default(), req.name.clone().unwrap_or_default());
        if forbidden_schema(&schema) {
            self.judge.violation("export", "an export of a system or extension schema was recorded", desc.clone());
        }
        let Some(at) = self.rel_index(&schema, &name) else {
            self.judge.violation("export", "an export of a relation outside the fixture was recorded", desc);
            return;
        };
        let rel = self.rels[at].clone();
        let portal: Option<String> = match self.rng.below(10) {
            0 => Some("x\"; DROP TABLE public.canary; --".into()),
            1 => Some("Ünïcødé 表".into()),
            2 => None,
            _ => Some("fluxbase_export".into()),
        };
        let desc = format!("{desc} then open_export(portal={})", short_opt(&portal));
        match self.open_export(&ticket, portal.as_deref(), &desc) {
            Ok((header, lines)) => {
                self.judge.outcome("open_export", "ok");
                let expected_header = rel.cols.iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect::<Vec<_>>().join(",");
                if header != expected_header {
                    self.judge.violation("open_export", "the CSV header is not the quoted column names", format!("{}: {desc}", short(&header)));
                }
                if lines.len() > rel.data.len() {
                    self.judge.violation("open_export", "more lines than the relation has rows", format!("{} lines: {desc}", lines.len()));
                }
                let unfiltered = req.filter.as_deref().is_none_or(|f| f == "null") && req.search.as_deref().is_none_or(|s| s.trim().is_empty());
                if unfiltered && lines.len() != rel.data.len() {
                    self.judge.violation("open_export", "an unfiltered export did not give every row", format!("{} lines of {}: {desc}", lines.len(), rel.data.len()));
                }
            }
            Err((code, message)) => self.check_error("open_export", &desc, &code, &message, &[]),
        }
    }

    /// Hostile edits: real and hostile relations, operations, columns and values. The
    /// data plane's transaction is always rolled back, so that the fixture stays as it is;
    /// before the rollback, from inside it, the canary and the relations are checked, so
    /// that nothing executed hides behind the rollback.
    fn edit_case(&mut self) {
        let broken = self.rng.chance(3);
        let token = if broken { self.broken_token() } else { self.token.clone() };
        let (schema, name) = self.pick_target();
        let rel = match (&schema, &name) {
            (Some(s), Some(n)) => self.rel_index(s, n).map(|i| self.rels[i].clone()),
            _ => None,
        };
        let operation = match self.rng.below(12) {
            0..=2 => "update".to_string(),
            3..=4 => "insert".to_string(),
            5..=6 => "delete".to_string(),
            7..=8 => "update_where".to_string(),
            9 => "delete_where".to_string(),
            10 => rng_text(&mut self.rng),
            _ => self.hostile_ident(),
        };
        let mut pair = |x: &mut Self| -> String {
            let column = x.column_name(rel.as_ref());
            let value = match (&rel, x.rng.chance(50)) {
                (Some(r), true) => match r.cols.iter().find(|c| c.name == column).cloned() {
                    Some(c) => x.value_for(r, &c, "eq").raw,
                    None => x.hostile_value().raw,
                },
                _ => x.hostile_value().raw,
            };
            format!("{}: {value}", jstr(&column))
        };
        let object = |x: &mut Self, pair: &mut dyn FnMut(&mut Self) -> String| -> String {
            let n = x.rng.range(0, 3);
            format!("{{{}}}", (0..n).map(|_| pair(x)).collect::<Vec<_>>().join(", "))
        };
        let payload = match (operation.as_str(), self.rng.below(12)) {
            (_, 0) => self.hostile_value().raw,
            ("update", _) => format!("{{\"keys\": [{}], \"set\": {}}}", object(self, &mut pair), object(self, &mut pair)),
            ("insert", _) => format!("{{\"rows\": [{}]}}", object(self, &mut pair)),
            ("delete", _) => format!("{{\"keys\": [{}]}}", object(self, &mut pair)),
            ("update_where", _) => format!(
                "{{\"filter\": {}, \"expected_count\": {}, \"set\": {}}}",
                self.gen_filter(rel.as_ref(), 1),
                self.rng.text(NUMBER_LITERALS),
                object(self, &mut pair)
            ),
            _ => format!("{{\"filter\": {}, \"expected_count\": {}}}", self.gen_filter(rel.as_ref(), 1), self.rng.text(NUMBER_LITERALS)),
        };
        let request = format!(
            "{{\"schema\": {}, \"table\": {}, \"operation\": {}, \"payload\": {payload}}}",
            schema.as_deref().map(jstr).unwrap_or("null".into()),
            name.as_deref().map(jstr).unwrap_or("null".into()),
            jstr(&operation)
        );
        let desc = format!("edit(token={}, request={})", short(&token), short(&request));
        let ticket = self.ticket(&token, "edit", &request, None, &desc);
        if broken {
            self.check_broken_token("edit", &desc, ticket.map(|_| ()));
            return;
        }
        let ticket = match ticket {
            Ok(t) => t,
            Err((code, message)) => return self.check_error("edit", &desc, &code, &message, &["55000"]),
        };
        let result = self.timed("edit()", &desc, true, |data| {
            let mut tx = data.transaction()?;
            tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket])?;
            let answer: String = tx.query_one("SELECT fluxbase_admin.edit()::text", &[])?.get(0);
            tx.batch_execute("SET LOCAL ROLE fluxbase_explorer")?;
            let inside: (String, i64) = tx
                .query_one("SELECT coalesce((SELECT array_agg(x ORDER BY x) FROM public.canary)::text, ''), (SELECT count(*) FROM pg_catalog.pg_class)", &[])
                .map(|r| (r.get(0), r.get(1)))?;
            tx.rollback()?;
            Ok((answer, inside))
        });
        self.judge.outcome("edit()", match &result {
            Ok(_) => "ok",
            Err((code, _)) => code,
        });
        match result {
            Ok((answer, (canary, relations))) => {
                self.judge.outcome("edit", "ok");
                if canary != "{1}" || relations != self.relations {
                    self.judge.violation("edit", "the edit's transaction changed the canary or the relations", format!("canary {canary}, {relations} relations: {desc}"));
                }
                let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
                match v["ok"].as_bool() {
                    None => self.judge.violation("edit", "an answer without ok", format!("{}: {desc}", short(&answer))),
                    Some(true) => {
                        if rel.is_none() || schema.as_deref().is_some_and(forbidden_schema) {
                            self.judge.violation("edit", "an edit of a relation outside the fixture succeeded", desc.clone());
                        }
                    }
                    Some(false) => {
                        for error in v["errors"].as_array().into_iter().flatten() {
                            let code = error["sqlstate"].as_str().unwrap_or_default();
                            if code == "42601" || code == "XX000" {
                                self.judge.violation("edit", &format!("an edit's error {code}"), format!("{error}: {desc}"));
                            }
                            if error["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
                                self.judge.violation("edit", "an edit's error without a message", format!("{error}: {desc}"));
                            }
                        }
                    }
                }
            }
            // 55000: a relation without a key is read-only.
            Err((code, message)) => self.check_error("edit", &desc, &code, &message, &["55000"]),
        }
    }

    /// Hostile tickets on the data login: made up, spent, expired, tampered, claimed twice
    /// in one transaction, for another operation; and hostile impersonate tickets.
    fn hostile_tickets(&mut self) {
        let token = self.token.clone();
        let other = self.other_token.clone();
        let rel = self.rels.iter().find(|r| r.schema == "public" && r.name == "select").unwrap().clone();
        let req = Req::on(&rel);
        let spent = self.export_ticket(&token, &req, "export ticket to spend").unwrap();
        let _ = self.open_export(&spent, None, "first open").unwrap();
        let others = self.export_ticket(&other, &req, "another admin's export ticket").unwrap();
        let _ = self.open_export(&others, None, "another admin's ticket is a bearer ticket, opened by its holder").unwrap();
        let expired = self.export_ticket(&token, &req, "export ticket to expire").unwrap();
        self.su
            .execute("UPDATE dashboard_auth.tickets SET expires_at = clock_timestamp() - interval '1 second' WHERE ticket_hash = dashboard_auth.token_hash($1)", &[&expired])
            .unwrap();
        let fresh = self.export_ticket(&token, &req, "export ticket to tamper with").unwrap();
        let mut cases: Vec<(String, String)> = vec![
            ("spent".into(), spent.clone()),
            ("another admin's, spent".into(), others),
            ("expired".into(), expired),
            ("empty".into(), String::new()),
            ("upper case".into(), fresh.to_uppercase()),
            ("with a quote".into(), format!("{fresh}'")),
            ("with SQL".into(), format!("{fresh}'; DROP TABLE public.canary; --")),
            ("cut short".into(), fresh[..fresh.len() - 1].to_string()),
            ("a session token".into(), token.clone()),
        ];
        for _ in 0..20 {
            cases.push(("hostile text".into(), mix(&mut self.rng)));
        }
        for (what, ticket) in cases {
            let desc = format!("open_export(ticket {what}: {})", short(&ticket));
            match self.open_export(&ticket, None, &desc) {
                Ok((_, lines)) => {
                    self.judge.outcome("claim", "ok");
                    self.judge.violation("claim", "claimed a ticket that is not claimable", format!("{} lines: {desc}", lines.len()));
                }
                Err((code, message)) => {
                    self.judge.outcome("claim", &code);
                    if code != "28000" {
                        self.judge.violation("claim", &format!("a bad ticket refused with {code}, not 28000"), format!("{message}: {desc}"));
                    }
                }
            }
        }
        // A browse ticket for another operation's work, and two tickets in one transaction.
        let browse = self.ticket(&token, "browse", &req.json(), None, "browse ticket").unwrap();
        let result = self.timed("claim", "a browse ticket opened as an export", true, |data| claimed(data, &browse, "SELECT * FROM fluxbase_admin.open_export()", &[]));
        match result {
            Err((code, _)) if code == "55000" => self.judge.outcome("claim", &code),
            other => self.judge.violation("claim", "a browse ticket was used for another operation", format!("{other:?}")),
        }
        // (Refused as the second, whether the first made the transaction read only or not.)
        let edit = format!("{{\"schema\": \"public\", \"table\": \"select\", \"operation\": \"delete\", \"payload\": {{\"keys\": [{{\"select\": 1}}]}}}}");
        for (first_op, first_request, refused) in [("browse", req.json(), "55000"), ("edit", edit, "55000")] {
            let first = self.ticket(&token, first_op, &first_request, None, "first ticket").unwrap();
            let second = self.ticket(&token, "browse", &req.json(), None, "second ticket").unwrap();
            let result = self.timed("claim", "two claims in one transaction", true, |data| {
                let mut tx = data.transaction()?;
                tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&first])?;
                let rows = tx.query("SELECT fluxbase_admin.claim_ticket($1)::text", &[&second])?;
                tx.rollback()?;
                Ok(rows)
            });
            match result {
                Err((code, _)) if code == refused => self.judge.outcome("claim", &code),
                other => self.judge.violation("claim", "two tickets were claimed in one transaction", format!("after {first_op}: {other:?}")),
            }
        }
        // Data-plane work without a claim.
        for sql in ["SELECT fluxbase_admin.browse()::text", "SELECT fluxbase_admin.edit()::text", "SELECT portal::text FROM fluxbase_admin.open_export()", "SELECT auth.apply_impersonation()::text"] {
            match self.timed("claim", sql, true, |data| data.query(sql, &[])) {
                Err((code, _)) if code == "55000" => self.judge.outcome("claim", &code),
                other => self.judge.violation("claim", "data-plane work ran without a claim", format!("{sql}: {other:?}")),
            }
        }
        // Hostile impersonate tickets: the read_only flag, and impersonations that are not
        // the caller's; the ones issued switch the transaction to the target, and back.
        let imp = self.impersonation.clone();
        for i in 0..40 {
            let read_only = match i % 4 {
                0 => "true".to_string(),
                1 => "false".to_string(),
                2 => jstr(self.rng.text(TEXT_VALUES)),
                _ => self.hostile_value().raw,
            };
            let target = match self.rng.below(6) {
                0 => None,
                1 => Some(uuid::Uuid::new_v4().to_string()),
                _ => Some(imp.clone()),
            };
            let request = format!("{{\"read_only\": {read_only}}}");
            let desc = format!("ticket(impersonate, {}, {target:?})", short(&request));
            match self.ticket(&token, "impersonate", &request, target.as_deref(), &desc) {
                Ok(ticket) => {
                    let result = self.timed("apply_impersonation()", &desc, true, |data| {
                        claimed(data, &ticket, "SELECT current_user::text || ' ' || (auth.apply_impersonation() ->> 'sub') || ' ' || current_user::text", &[])
                    });
                    self.judge.outcome("apply_impersonation()", match &result {
                        Ok(_) => "ok",
                        Err((code, _)) => code,
                    });
                    match result {
                        Ok(rows) => {
                            let seen: String = rows[0].get(0);
                            if !seen.starts_with("fluxbase_data ") || !seen.ends_with(" authenticated") {
                                self.judge.violation("impersonate", "an impersonate ticket did not switch to its target", format!("{seen}: {desc}"));
                            }
                        }
                        Err((code, message)) => self.check_error("impersonate", &desc, &code, &message, &[]),
                    }
                }
                Err((code, message)) => self.check_error("impersonate", &desc, &code, &message, &["28000", "FB001"]),
            }
        }
    }

    /// The connection is still the web role's, with no claims left over, and the canary
    /// still has its one row.
    fn health(&mut self, when: &str) {
        for (login, data) in [("fluxbase_web", false), ("fluxbase_data", true)] {
            let conn = if data { &mut self.data } else { &mut self.web };
            match conn.query_one(
                "SELECT current_user::text, session_user::text, coalesce(current_setting('request.jwt.claims', true), ''), current_setting('transaction_read_only')",
                &[],
            ) {
                Ok(row) => {
                    let (cu, su, claims, read_only): (String, String, String, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
                    if cu != login || su != login || !claims.is_empty() || read_only != "off" {
                        self.judge.violation("connection", "the connection kept a role, claims or read-only after a call", format!("{when}: {login}: current_user {cu}, claims {claims:?}, read only {read_only}"));
                        let _ = conn.batch_execute("ROLLBACK; RESET ROLE");
                    }
                }
                Err(e) => {
                    self.judge.violation("connection", "the connection stopped working", format!("{when}: {login}: {e}"));
                    self.reconnect();
                }
            }
        }
        let canary: Vec<i32> = self.su.query("SELECT x FROM public.canary ORDER BY x", &[]).map(|rows| rows.iter().map(|r| r.get(0)).collect()).unwrap_or_default();
        if canary != [1] {
            self.judge.violation("canary", "public.canary changed", format!("{when}: {canary:?}"));
        }
    }
}

fn rng_text(rng: &mut Rng) -> String {
    if rng.chance(50) {
        rng.text(TEXT_VALUES).to_string()
    } else {
        mix(rng)
    }
}

/// Takes the double-quoted identifiers out of SQL text and collects its single-quoted
/// literals; fails on an unterminated one.
fn strip_sql(sql: &str) -> Result<(String, Vec<String>), String> {
    let mut rest = String::new();
    let mut literals = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated {c}")),
                        Some(d) if d == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                                text.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(d) => text.push(d),
                    }
                }
                if c == '\'' {
                    literals.push(text);
                    rest.push_str("''");
                } else {
                    rest.push_str("\"\"");
                }
            }
            _ => rest.push(c),
        }
    }
    Ok((rest, literals))
}

/// Everything a snapshot can compare: the relations, schemas, functions and roles, and
/// every fixture table's contents.
fn snapshot(su: &mut Client, rels: &[Rel]) -> Vec<String> {
    let mut out: Vec<String> = su
        .query(
            "SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname !~ '^pg_(temp|toast_temp)_' AND c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
             UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname !~ '^pg_(temp|toast_temp)_'
             UNION ALL SELECT 'functions ' || count(*) FROM pg_proc
             UNION ALL SELECT 'roles ' || count(*) FROM pg_roles
             UNION ALL SELECT 'admins ' || count(*) FROM dashboard_auth.dashboard_users
             UNION ALL SELECT 'app users ' || count(*) FROM auth.users
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for rel in rels {
        let fp: String = su
            .query_one(&format!("SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {} AS t", rel.qualified()), &[])
            .unwrap()
            .get(0);
        out.push(format!("data {}: {fp}", rel.label()));
    }
    out
}

/// Thousands of hostile identifiers and values at every entry point: each is data or a
/// clear refusal, never executed (the canary, the catalog and the session stay intact).
#[test]
fn hostile_identifiers_and_values_are_data_or_refused_never_executed() {
    let started = Instant::now();
    let db = TestDb::new();
    let fixture = build_fixture(&db);
    create_admin(&db, "ann@example.com", "admin");
    create_admin(&db, "bob@example.com", "admin");
    let mut web = db.connect(Caller::Dashboard);
    web.batch_execute("SET statement_timeout = '20s'").unwrap();
    let token = login(&mut web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let other_token = login(&mut web, "bob@example.com", PASSWORD, "192.0.2.2").token.unwrap();
    let row = &as_dashboard(
        &mut web,
        "SELECT ok, code, message, impersonation_id::text FROM auth.start_impersonation($1, 'user', 'joe@example.com', 'hostile explorer test')",
        &[&token],
    )
    .unwrap()[0];
    assert!(row.get::<_, bool>(0), "{}: {}", row.get::<_, String>(1), row.get::<_, String>(2));
    let impersonation: String = row.get(3);
    let mut data = db.connect(Caller::Data);
    data.batch_execute("SET statement_timeout = '20s'").unwrap();
    let mut su = db.connect(Caller::Superuser);
    let data_style: String = data.query_one("SHOW DateStyle", &[]).unwrap().get(0);
    let su_style: String = su.query_one("SHOW DateStyle", &[]).unwrap().get(0);
    assert_eq!(data_style, su_style, "the oracle reads values as the data connection does");
    let before = snapshot(&mut su, &fixture.rels);
    let relations: i64 = su.query_one("SELECT count(*) FROM pg_catalog.pg_class", &[]).unwrap().get(0);

    let mut pool: Vec<String> = Vec::new();
    for rel in &fixture.rels {
        pool.push(rel.schema.clone());
        pool.push(rel.name.clone());
        pool.extend(rel.written_as.clone());
        pool.extend(rel.cols.iter().map(|c| c.name.clone()));
        pool.extend(rel.fks.iter().map(|f| f.name.clone()));
    }
    for (s, n) in &fixture.system {
        pool.push(s.clone());
        pool.push(n.clone());
    }
    pool.extend(["pg_temp", "pg_temp_1", "pg_toast_temp_1", "PG_CATALOG", "Pg_Catalog", "public", "PUBLIC", "pg_catalog.pg_authid", "auth.users"].map(String::from));
    pool.extend(FRAGMENTS.iter().map(|s| s.to_string()));
    pool.sort();
    pool.dedup();

    let mut x = Explorer {
        db_name: db.name.clone(),
        web,
        data,
        su,
        token,
        other_token,
        impersonation,
        relations,
        rels: fixture.rels.clone(),
        system: fixture.system.clone(),
        pool,
        rng: Rng(0x00f1_0b5e_a11e_57a7),
        judge: Judge::default(),
        cursors: Vec::new(),
        calls: 0,
    };
    let _ = &fixture.joe;

    // The schedule: (what, how many). Interleaved, so that every kind of case meets a
    // connection that has just seen every other kind of failure.
    let schedule: &[(&str, usize)] = &[
        ("catalog", 40),
        ("describe", 500),
        ("browse", 1000),
        ("exact", 800),
        ("search", 150),
        ("walk", 80),
        ("tamper", 300),
        ("plan", 400),
        ("follow", 300),
        ("export", 200),
        ("exact_export", 100),
        ("browse_as", 300),
        ("exact_as", 200),
        ("edit", 300),
    ];
    let mut queue: Vec<&str> = schedule.iter().flat_map(|(what, n)| std::iter::repeat_n(*what, *n)).collect();
    // A fixed shuffle.
    for i in (1..queue.len()).rev() {
        let j = x.rng.below(i + 1);
        queue.swap(i, j);
    }
    x.deep_filter_cases();
    x.deep_sort_cases();
    for (i, what) in queue.iter().enumerate() {
        match *what {
            "catalog" => x.catalog_case(),
            "describe" => x.describe_case(),
            "browse" => x.random_case("browse"),
            "exact" => x.exact_case(Via::Browse),
            "search" => x.search_case(),
            "walk" => x.walk_case(),
            "tamper" => x.tampered_cursor_case(),
            "plan" => x.random_case("plan_browse"),
            "follow" => x.follow_case(),
            "export" => x.export_case(),
            "exact_export" => x.exact_case(Via::Export),
            "browse_as" => x.random_case("browse_as"),
            "exact_as" => x.exact_case(Via::BrowseAs),
            "edit" => x.edit_case(),
            _ => unreachable!(),
        }
        if i % 100 == 99 {
            x.health(&format!("after case {}", i + 1));
        }
    }
    x.hostile_tickets();
    x.health("at the end");

    // Nothing was executed: no object appeared or went, no data changed.
    let after = snapshot(&mut x.su, &x.rels);
    if before != after {
        let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
        let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
        x.judge.violation("database", "objects or data changed", format!("before only {gone:?}; after only {new:?}"));
    }
    // The session still works.
    let rel = x.rels.iter().find(|r| r.schema == "public" && r.name == "select").unwrap().clone();
    let token = x.token.clone();
    match x.browse(&token, &Req::on(&rel), "final browse") {
        Out::Ok(v) if v["rows"].as_array().map(Vec::len) == Some(10) => {}
        other => x.judge.violation("session", "the session no longer browses", format!("{other:?}")),
    }

    let report = x.judge.report();
    eprintln!("{report}\n{} calls in {:?}", x.calls, started.elapsed());
    assert!(x.calls >= 3000, "only {} calls", x.calls);
    for entry in [
        "catalog", "describe_table", "browse", "plan_browse", "follow", "export", "open_export", "browse_as", "edit", "impersonate", "claim",
        "ticket(browse)", "ticket(follow)", "ticket(export)", "ticket(edit)", "ticket(impersonate)",
        "browse()", "open_export()", "edit()", "apply_impersonation()",
    ] {
        assert!(x.judge.cases(entry) > 0, "no case reached {entry}");
    }
    // Each data-plane entry point both answered and refused something.
    for entry in ["browse()", "open_export()", "edit()"] {
        let seen = &x.judge.outcomes[entry];
        assert!(seen.contains_key("ok") && seen.len() > 1, "{entry}: {seen:?}");
    }
    assert!(x.judge.violations.is_empty(), "{report}");
}

// ---------------------------------------------------------------------------------
// The property test's findings, one small reproduction each
// ---------------------------------------------------------------------------------

/// A viewer-free admin session on `db` with `ddl` run first: its two logins and token.
fn session_on(ddl: &str) -> (TestDb, Planes, String) {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(ddl).unwrap();
    create_admin(&db, "ann@example.com", "admin");
    let mut planes = Planes::connect(&db);
    let token = login(&mut planes.web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    (db, planes, token)
}

/// A page of a browse request given as JSON text (numbers keep every digit).
fn page(p: &mut Planes, token: &str, operation: &str, request: &str) -> Result<Value, postgres::Error> {
    let ticket = ticket_text(&mut p.web, token, operation, request, None)?;
    let rows = claimed(&mut p.data, &ticket, "SELECT fluxbase_admin.browse()::text", &[])?;
    Ok(serde_json::from_str(&rows[0].get::<_, String>(0)).unwrap())
}

/// browse with a filter and a sort, as (ids of the rows, or the SQLSTATE and message).
fn browse_ids(p: &mut Planes, token: &str, relation: &str, filter: &str, sort: Option<&str>) -> Result<Vec<i64>, (String, String)> {
    let request = format!(
        "{{\"schema\": \"public\", \"table\": {}, \"filter\": {filter}, \"sort\": {}, \"page_size\": 1000}}",
        jstr(relation),
        sort.unwrap_or("null")
    );
    match page(p, token, "browse", &request) {
        Ok(page) => {
            let mut ids: Vec<i64> = page["rows"].as_array().unwrap().iter().map(|r| r["values"]["id"].as_i64().unwrap()).collect();
            ids.sort();
            Ok(ids)
        }
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
            Err((db.code().code().to_string(), db.message().to_string()))
        }
    }
}

// Found by the property test: following a foreign key once failed on every key with 42883
// (`pg_catalog.unnest(conkey, confkey)`: Postgres expands multi-argument UNNEST only
// when it is not schema-qualified).
#[test]
fn follow_foreign_key_follows_a_key_with_hostile_names() {
    let (_db, mut p, token) = session_on(
        r#"CREATE TABLE public."parent ""p""" ("id" int PRIMARY KEY, "label; --" text);
           CREATE TABLE public."child" ("id" int PRIMARY KEY,
               "parent'; --" int CONSTRAINT "fk'; DROP TABLE public.child; --" REFERENCES public."parent ""p""");
           INSERT INTO public."parent ""p""" VALUES (1, 'one'), (2, 'two; DROP TABLE public.child; --');
           INSERT INTO public."child" VALUES (10, 2);
           CREATE TABLE public."to auth" ("id" int PRIMARY KEY, uid uuid CONSTRAINT to_auth_users REFERENCES auth.users (id));"#,
    );
    let followed = page(
        &mut p,
        &token,
        "follow",
        r#"{"schema": "public", "table": "child", "foreign_key": "fk'; DROP TABLE public.child; --", "row": {"id": 10, "parent'; --": 2}}"#,
    );
    let page_of = match followed {
        Ok(v) => v,
        Err(e) => panic!("following a real key of a real row was refused: {:?}", e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string()))),
    };
    assert_eq!((page_of["schema"].as_str(), page_of["name"].as_str()), (Some("public"), Some("parent \"p\"")));
    assert_eq!(page_of["rows"][0]["values"]["id"], 2);
    assert_eq!(page_of["rows"][0]["values"]["label; --"], "two; DROP TABLE public.child; --");
    assert_eq!(page_of["followed"]["foreign_key"], "fk'; DROP TABLE public.child; --");
    // A key into the extension's own schema leads nowhere: the ticket is refused.
    let err = page(
        &mut p,
        &token,
        "follow",
        r#"{"schema": "public", "table": "to auth", "foreign_key": "to_auth_users", "row": {"id": 1, "uid": "00000000-0000-0000-0000-000000000000"}}"#,
    )
    .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01", "{err:?}");
}

/// JSON numbers in a filter keep every digit (serde_json's arbitrary precision): no
/// value is ever compared as a rounded f64.
#[test]
fn json_numbers_in_a_filter_keep_their_exact_value() {
    let (_db, mut p, token) = session_on(
        r#"CREATE TABLE public.n ("id" int PRIMARY KEY, "$1" numeric, j jsonb);
           INSERT INTO public.n VALUES
             (1, 99999999999999999999, '{"a": 99999999999999999999}'),
             (2, 100000000000000000000, '{"a": 100000000000000000000}'),
             (3, 3.14159265358979323846264338327950288, '{"a": 3.14159265358979323846264338327950288}'),
             (4, 3.141592653589793, '{"a": 3.141592653589793}'),
             (5, 0, '{"a": 0}'),
             (6, 1e-30, '{"a": 1e-30}');"#,
    );
    let cases = [
        (r#"{"column": "$1", "op": "eq", "value": 99999999999999999999}"#, vec![1]),
        (r#"{"column": "$1", "op": "eq", "value": 3.14159265358979323846264338327950288}"#, vec![3]),
        (r#"{"column": "$1", "op": "eq", "value": 1e-30}"#, vec![6]),
        (r#"{"column": "$1", "op": "eq", "value": 1e-400}"#, vec![]),
        (r#"{"column": "$1", "op": "in", "value": [99999999999999999999, 1e-30]}"#, vec![1, 6]),
        (r#"{"column": "j", "op": "contains", "value": {"a": 99999999999999999999}}"#, vec![1]),
        (r#"{"column": "j", "op": "eq", "value": {"a": 3.14159265358979323846264338327950288}}"#, vec![3]),
    ];
    let mut wrong = Vec::new();
    for (filter, want) in cases {
        match browse_ids(&mut p, &token, "n", filter, None) {
            Ok(ids) if ids == want => {}
            other => wrong.push(format!("{filter}: expected {want:?}, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "filters kept other rows than the values written:\n{}", wrong.join("\n"));
}

// Found by the property test: a filter value was once checked in the caller's DateStyle
// and compared in 'ISO, YMD', so '02/01/24' kept 2002-01-24 instead of 2024-02-01. A value
// reads as it does in the caller's session (the data login's, where it is cast), whatever
// its DateStyle, and a cursor made in one DateStyle reads back in another.
#[test]
fn a_date_in_a_filter_reads_as_in_the_callers_session() {
    let (db, mut p, token) = session_on(
        r#"CREATE TABLE public.d ("id" int PRIMARY KEY, "order" date);
           INSERT INTO public.d VALUES (1, '2024-02-01'), (2, '2002-01-24'), (3, '2003-01-02'), (4, '2001-02-03'), (5, '2024-01-02');"#,
    );
    let mut su = db.connect(Caller::Superuser);
    let mut wrong = Vec::new();
    let set_style = |p: &mut Planes, style: &str| {
        p.web.batch_execute(&format!("SET DateStyle = '{style}'")).unwrap();
        p.data.batch_execute(&format!("SET DateStyle = '{style}'")).unwrap();
    };
    for style in ["ISO, MDY", "SQL, DMY", "German, YMD"] {
        set_style(&mut p, style);
        su.batch_execute(&format!("SET DateStyle = '{style}'")).unwrap();
        for value in ["02/01/24", "1/2/3", "01/02/2024", "2024-02-01", "13/01/2024"] {
            let want: Result<Vec<i64>, String> = su
                .query("SELECT id::int8 FROM public.d WHERE \"order\" = $1::text::date ORDER BY 1", &[&value])
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .map_err(|e| e.to_string());
            let filter = format!(r#"{{"column": "order", "op": "eq", "value": {}}}"#, jstr(value));
            match (browse_ids(&mut p, &token, "d", &filter, None), &want) {
                (Ok(ids), Ok(want)) if &ids == want => {}
                (Err((code, message)), Err(_)) if code.starts_with("22") && message.contains("\"order\"") => {}
                (got, want) => wrong.push(format!("{value:?} in DateStyle {style}: the superuser's query gives {want:?}, the explorer {got:?}")),
            }
        }
    }
    // A cursor made in one DateStyle, used in another.
    set_style(&mut p, "SQL, DMY");
    let first = page(&mut p, &token, "browse", r#"{"schema": "public", "table": "d", "sort": [{"column": "order"}], "page_size": 2}"#).unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    set_style(&mut p, "ISO, MDY");
    let second = page(
        &mut p,
        &token,
        "browse",
        &format!(r#"{{"schema": "public", "table": "d", "sort": [{{"column": "order"}}], "page_size": 2, "cursor": {}}}"#, jstr(&cursor)),
    )
    .unwrap();
    let ids = |page: &Value| page["rows"].as_array().unwrap().iter().map(|r| r["values"]["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!((ids(&first), ids(&second)), (vec![4, 2], vec![3, 5]), "pages in date order across DateStyles");
    set_style(&mut p, "ISO, MDY");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// JSON that is too deep to read is refused with a reason (22023), never an internal
/// error; a number beyond f64 is an exact numeric value (1e400 is a valid numeric).
#[test]
fn json_too_deep_or_too_large_is_refused_with_a_reason_not_an_internal_error() {
    let (_db, mut p, token) = session_on(r#"CREATE TABLE public.n ("id" int PRIMARY KEY, "$1" numeric, j jsonb); INSERT INTO public.n VALUES (1, 1, '[1]');"#);
    let leaf = r#"{"column": "id", "op": "is_null"}"#;
    let cases: Vec<(String, String, String)> = vec![
        ("a filter of 9 levels".into(), format!("{}{leaf}{}", r#"{"and": ["#.repeat(8), "]}".repeat(8)), "null".into()),
        ("a filter of 65 levels (64 and-groups)".into(), format!("{}{leaf}{}", r#"{"and": ["#.repeat(64), "]}".repeat(64)), "null".into()),
        ("a contains value nested 128 deep".into(), format!(r#"{{"column": "j", "op": "contains", "value": {}1{}}}"#, "[".repeat(128), "]".repeat(128)), "null".into()),
        ("a sort nested 200 deep".into(), "null".into(), format!("{}{{\"column\": \"id\"}}{}", "[".repeat(200), "]".repeat(200))),
    ];
    let mut wrong = Vec::new();
    for (what, filter, sort) in cases {
        let request = format!(r#"{{"schema": "public", "table": "n", "filter": {filter}, "sort": {sort}}}"#);
        match page(&mut p, &token, "browse", &request) {
            Ok(_) => wrong.push(format!("{what}: accepted")),
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| panic!("{what}: {e}"));
                if !db.code().code().starts_with("22") {
                    wrong.push(format!("{what}: {} {}", db.code().code(), db.message()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "refused without a reason:\n{}", wrong.join("\n"));
    // Numbers beyond f64 are data: no row holds 1e400, and the list still finds 1.
    for (filter, want) in [
        (r#"{"column": "$1", "op": "eq", "value": 1e400}"#, 0),
        (r#"{"column": "$1", "op": "in", "value": [1, -1e400]}"#, 1),
    ] {
        let request = format!(r#"{{"schema": "public", "table": "n", "filter": {filter}}}"#);
        let page = page(&mut p, &token, "browse", &request).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(page["rows"].as_array().unwrap().len(), want, "{filter}");
    }
}
