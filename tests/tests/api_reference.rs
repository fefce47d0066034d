//! The README's SQL API reference (`### Reference`: one table per schema) is checked
//! against pg_proc, so that it cannot drift.
//!
//! Every function a caller may call has exactly one row, under its schema's heading:
//!
//! ```text
//! | function | result | caller | SQLSTATEs | what it does |
//! |---|---|---|---|---|
//! | `sign_in(email, password [, valid_for])` | `login_result` | dashboard | `22023` | Signs an admin in; ... |
//! ```
//!
//! - **function**: the name and the IN arguments' names in order, those with defaults in
//!   one `[, ...]` at the end (`([a, b])` when all are optional);
//! - **result**: `pg_get_function_result` without the extension's schemas and
//!   `pg_catalog.`; `TABLE(a x, b y)` is `rows (a, b)`, `SETOF x` is `rows of x`;
//! - **caller**: who holds EXECUTE (read from `proacl`, since a superuser passes
//!   `has_function_privilege` for anything): `dashboard`, `operator`, `data login`,
//!   `app`, `anyone`, or `superuser` when no role is granted it;
//! - **SQLSTATEs**: the codes a caller can get (`-` for none), each one listed in the
//!   README's SQLSTATE table.
//!
//! Which functions must have a row: those granted to `fluxbase_dashboard`,
//! `fluxbase_operator`, `service_role` or `PUBLIC`; the definer functions granted to the
//! data login (`fluxbase_data`, whose grants come from `prepare_data_login` in the test
//! template); the data plane's entry points (below); and `prepare_data_login`. The data
//! login's other invoker functions are the data plane's internals, and triggers are
//! nobody's to call.
//!
//! When the tables and pg_proc disagree, the test prints the tables as they should be,
//! generated from pg_proc, keeping the README's SQLSTATEs and descriptions (`?` for a new
//! row), ready to paste. `FLUXBASE_PRINT_API_REFERENCE=1` prints them when they agree too.

use std::collections::{BTreeMap, BTreeSet};

use fluxbase_tests::{repo_root, Caller, TestDb};

const SCHEMAS: [&str; 3] = ["dashboard_auth", "auth", "fluxbase_admin"];

/// The roles a row's caller names, in the order it names them.
const CALLERS: [(&str, &str); 5] = [
    ("fluxbase_dashboard", "dashboard"),
    ("fluxbase_operator", "operator"),
    ("fluxbase_data", "data login"),
    ("service_role", "app"),
    ("PUBLIC", "anyone"),
];

/// Grants that make a function part of the API by themselves.
const API_GRANTEES: [&str; 4] = ["fluxbase_dashboard", "fluxbase_operator", "service_role", "PUBLIC"];

/// The data plane's entry points: invoker functions the data login calls after a claim.
/// The other invoker functions granted to it are what these call, as the claim's role.
const DATA_PLANE_ENTRY_POINTS: [(&str, &str); 8] = [
    ("fluxbase_admin", "browse"),
    ("fluxbase_admin", "copy_rows"),
    ("fluxbase_admin", "edit"),
    ("fluxbase_admin", "open_export"),
    ("fluxbase_admin", "read_cell"),
    ("fluxbase_admin", "revert_edit"),
    ("fluxbase_admin", "execute_sql"),
    ("auth", "apply_impersonation"),
];

/// Granted to no role, and documented all the same: superusers call them.
const SUPERUSER_FUNCTIONS: [(&str, &str); 1] = [("fluxbase_admin", "prepare_data_login")];

const HEADER: &str = "| function | result | caller | SQLSTATEs | what it does |";
const SEPARATOR: &str = "|---|---|---|---|---|";

// ---------------------------------------------------------------------------------
// pg_proc
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Function {
    schema: String,
    name: String,
    /// `(a, b [, c])`, as a row writes it.
    args: String,
    result: String,
    caller: String,
    /// `schema.name(type, ...)`, for messages.
    identity: String,
    must_document: bool,
}

impl Function {
    fn signature(&self) -> String {
        format!("{}{}", self.name, self.args)
    }
}

/// The argument list as a row writes it: `(a, b [, c, d])`, or `([a, b])` when every
/// argument has a default.
fn format_args(names: &[String], defaults: usize) -> String {
    let split = names.len().saturating_sub(defaults);
    let (required, optional) = names.split_at(split);
    match (required.is_empty(), optional.is_empty()) {
        (_, true) => format!("({})", required.join(", ")),
        (true, false) => format!("([{}])", optional.join(", ")),
        (false, false) => format!("({} [, {}])", required.join(", "), optional.join(", ")),
    }
}

/// Drops the extension's schemas and `pg_catalog.` from the type names in `text`.
fn drop_schemas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        let at_word_start = out.chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '"'));
        if at_word_start {
            for schema in ["dashboard_auth", "fluxbase_admin", "auth", "pg_catalog"] {
                if let Some(after) = rest.strip_prefix(schema).and_then(|r| r.strip_prefix('.')) {
                    rest = after;
                    continue 'outer;
                }
            }
        }
        let ch = rest.chars().next().unwrap();
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// Splits on the commas that are outside parentheses and double quotes.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for ch in text.chars() {
        match ch {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

/// `pg_get_function_result` as a row writes it.
fn normalise_result(raw: Option<&str>) -> String {
    let Some(raw) = raw else { return "-".into() }; // a procedure
    let text = drop_schemas(raw.trim());
    if let Some(columns) = text.strip_prefix("TABLE(").and_then(|t| t.strip_suffix(')')) {
        let names: Vec<String> = split_top_level(columns)
            .iter()
            .map(|column| match column.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default().to_string(),
                None => column.split_whitespace().next().unwrap_or_default().to_string(),
            })
            .collect();
        return format!("rows ({})", names.join(", "));
    }
    if let Some(element) = text.strip_prefix("SETOF ") {
        return format!("rows of {element}");
    }
    text
}

/// The caller column from the grantees of EXECUTE (the owner left out).
fn caller_of(grantees: &[String]) -> String {
    let mut callers: Vec<String> =
        CALLERS.iter().filter(|(role, _)| grantees.iter().any(|g| g == role)).map(|(_, c)| c.to_string()).collect();
    // A grantee the reference has no word for is named as it is, so that it shows.
    let mut others: Vec<String> =
        grantees.iter().filter(|g| !CALLERS.iter().any(|(role, _)| role == g)).cloned().collect();
    others.sort();
    callers.extend(others);
    if callers.is_empty() {
        "superuser".into()
    } else {
        callers.join(", ")
    }
}

fn functions(db: &TestDb) -> Vec<Function> {
    let mut client = db.connect(Caller::Superuser);
    let rows = client
        .query(
            "SELECT n.nspname::text, p.proname::text, p.oid::pg_catalog.regprocedure::text,
                    pg_catalog.pg_get_function_result(p.oid), p.prosecdef,
                    p.prorettype::pg_catalog.regtype::text, p.pronargs::int, p.pronargdefaults::int,
                    p.proargnames, p.proargmodes::text[],
                    ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::pg_catalog.regrole::text END
                            FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                           WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
                           ORDER BY 1)
               FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p')
              ORDER BY 1, 2, 3",
            &[&&SCHEMAS[..]],
        )
        .expect("read pg_proc");
    rows.iter()
        .map(|row| {
            let (schema, name): (String, String) = (row.get(0), row.get(1));
            let result: Option<String> = row.get(3);
            let definer: bool = row.get(4);
            let returns: String = row.get(5);
            let (nargs, ndefaults): (i32, i32) = (row.get(6), row.get(7));
            let arg_names: Option<Vec<String>> = row.get(8);
            let arg_modes: Option<Vec<String>> = row.get(9);
            let grantees: Vec<String> = row.get(10);

            let name_at = |i: usize| {
                arg_names.as_ref().and_then(|n| n.get(i)).filter(|n| !n.is_empty()).cloned().unwrap_or(format!("${}", i + 1))
            };
            let inputs: Vec<String> = match &arg_modes {
                None => (0..nargs as usize).map(name_at).collect(),
                Some(modes) => modes
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| matches!(m.as_str(), "i" | "b" | "v"))
                    .map(|(i, m)| if m == "v" { format!("VARIADIC {}", name_at(i)) } else { name_at(i) })
                    .collect(),
            };
            let granted = |role: &str| grantees.iter().any(|g| g == role);
            let listed = |list: &[(&str, &str)]| list.iter().any(|(s, n)| *s == schema && *n == name);
            let trigger = returns == "trigger" || returns == "event_trigger";
            let must_document = !trigger
                && (API_GRANTEES.iter().any(|g| granted(g))
                    || (definer && granted("fluxbase_data"))
                    || listed(&DATA_PLANE_ENTRY_POINTS)
                    || listed(&SUPERUSER_FUNCTIONS));
            Function {
                args: format_args(&inputs, ndefaults as usize),
                result: normalise_result(result.as_deref()),
                caller: caller_of(&grantees),
                identity: row.get(2),
                schema,
                name,
                must_document,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// README.md
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Row {
    line: usize,
    schema: String,
    name: String,
    /// The argument list as written, `(...)`.
    args: String,
    result: String,
    caller: String,
    sqlstates: String,
    description: String,
}

/// Whitespace does not count when an argument list is compared.
fn args_key(args: &str) -> String {
    args.chars().filter(|c| !c.is_whitespace()).collect()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table row's cells; a `|` inside backticks belongs to its cell.
fn cells(line: &str) -> Vec<String> {
    let (mut cells, mut current, mut code) = (Vec::new(), String::new(), false);
    for ch in line.trim().chars() {
        match ch {
            '`' => {
                code = !code;
                current.push(ch);
            }
            '|' if !code => {
                cells.push(current.trim().to_string());
                current.clear();
            }
            _ => current.push(ch),
        }
    }
    cells.push(current.trim().to_string());
    // The line starts and ends with `|`: drop the empty cells outside them.
    if cells.first().is_some_and(|c| c.is_empty()) {
        cells.remove(0);
    }
    if cells.last().is_some_and(|c| c.is_empty()) {
        cells.pop();
    }
    cells
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').trim().to_string()
}

/// The rows of `### Reference`, and what is wrong with its shape.
fn reference_rows(readme: &str) -> (Vec<Row>, Vec<String>) {
    let (mut rows, mut problems) = (Vec::new(), Vec::new());
    let lines: Vec<&str> = readme.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == "### Reference") else {
        problems.push("README.md has no `### Reference` section (at the end of \"## SQL API\")".into());
        return (rows, problems);
    };
    let mut schema: Option<String> = None;
    let mut seen_schemas = BTreeSet::new();
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let n = i + 1;
        if line.starts_with("## ") || line.starts_with("### ") {
            break;
        }
        if let Some(heading) = line.strip_prefix("#### ") {
            let name = unquote(heading);
            if !SCHEMAS.contains(&name.as_str()) {
                problems.push(format!("README.md:{n}: heading {heading} names no schema of the extension"));
            }
            if !seen_schemas.insert(name.clone()) {
                problems.push(format!("README.md:{n}: a second heading for {heading}"));
            }
            schema = Some(name);
            continue;
        }
        if !line.trim_start().starts_with('|') {
            continue;
        }
        if line.trim_start().starts_with("|---") {
            continue;
        }
        if line.trim_start().starts_with("| function |") {
            if collapse(line) != HEADER {
                problems.push(format!("README.md:{n}: the header should be {HEADER}"));
            }
            continue;
        }
        let Some(schema) = schema.clone() else {
            problems.push(format!("README.md:{n}: a row before any #### `schema` heading"));
            continue;
        };
        let cells = cells(line);
        if cells.len() != 5 {
            problems.push(format!("README.md:{n}: {} cells, not 5: {line}", cells.len()));
            continue;
        }
        let function = unquote(&cells[0]);
        let Some(paren) = function.find('(') else {
            problems.push(format!("README.md:{n}: `{function}` has no argument list (write `name()` for none)"));
            continue;
        };
        rows.push(Row {
            line: n,
            schema,
            name: function[..paren].trim().to_string(),
            args: function[paren..].trim().to_string(),
            result: unquote(&cells[1]),
            caller: collapse(&cells[2]),
            sqlstates: cells[3].clone(),
            description: cells[4].clone(),
        });
    }
    for schema in SCHEMAS {
        if !seen_schemas.contains(schema) {
            problems.push(format!("README.md: ### Reference has no #### `{schema}` table"));
        }
    }
    (rows, problems)
}

/// The codes of a SQLSTATEs cell: `` `28000`, `42501` ``, or `-` for none.
fn sqlstates(cell: &str) -> Vec<String> {
    let text: String = cell.chars().filter(|c| *c != '`').collect();
    if text.trim() == "-" {
        return Vec::new();
    }
    text.split(',').map(|code| code.trim().to_string()).collect()
}

/// The README's SQLSTATE vocabulary (`22xxx` stands for class 22), as error_codes.rs reads it.
fn vocabulary(readme: &str) -> BTreeSet<String> {
    let start = readme.find("| SQLSTATE | meaning |").expect("the README's SQLSTATE table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.trim_start().starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------------------

struct Report {
    problems: Vec<String>,
    /// Per schema, the rows as they should be.
    tables: BTreeMap<String, Vec<String>>,
}

fn compare(functions: &[Function], rows: &[Row], vocabulary: &BTreeSet<String>) -> Report {
    let mut problems = Vec::new();
    let key = |schema: &str, name: &str, args: &str| (schema.to_string(), name.to_string(), args_key(args));
    let by_key: BTreeMap<_, &Function> = functions.iter().map(|f| (key(&f.schema, &f.name, &f.args), f)).collect();

    // Each row against its function.
    let mut matched: BTreeMap<(String, String, String), &Row> = BTreeMap::new();
    for row in rows {
        let place = format!("README.md:{}: `{}.{}{}`", row.line, row.schema, row.name, row.args);
        let k = key(&row.schema, &row.name, &row.args);
        match by_key.get(&k) {
            None => {
                let same_name: Vec<String> = functions
                    .iter()
                    .filter(|f| f.schema == row.schema && f.name == row.name)
                    .map(|f| format!("`{}`", f.signature()))
                    .collect();
                if same_name.is_empty() {
                    problems.push(format!("{place}: no such function"));
                } else {
                    problems.push(format!("{place}: no function with these arguments; pg_proc has {}", same_name.join(", ")));
                }
            }
            Some(function) => {
                if matched.insert(k, row).is_some() {
                    problems.push(format!("{place}: a second row for the same function"));
                }
                if row.result != function.result {
                    problems.push(format!("{place}: result `{}`, but pg_proc says `{}`", row.result, function.result));
                }
                if row.caller != function.caller {
                    problems.push(format!("{place}: caller {}, but the grants say {}", row.caller, function.caller));
                }
            }
        }
        let codes = sqlstates(&row.sqlstates);
        if codes.iter().any(|c| c == "?" || c.is_empty()) {
            problems.push(format!("{place}: fill in its SQLSTATEs (`-` for none)"));
        } else {
            for code in codes.iter().filter(|c| !vocabulary.contains(*c)) {
                problems.push(format!("{place}: SQLSTATE {code} is not in the README's SQLSTATE table"));
            }
        }
        if row.description.is_empty() || row.description == "?" {
            problems.push(format!("{place}: say what it does"));
        }
    }

    // Each function that must be documented against the rows.
    let mut tables: BTreeMap<String, Vec<String>> = SCHEMAS.iter().map(|s| (s.to_string(), Vec::new())).collect();
    for function in functions {
        let k = key(&function.schema, &function.name, &function.args);
        let row = matched.get(&k).copied();
        if row.is_none() && !function.must_document {
            continue;
        }
        if row.is_none() {
            problems.push(format!(
                "`{}.{}` ({}, caller {}) has no row",
                function.schema,
                function.signature(),
                function.identity,
                function.caller
            ));
        }
        // A row whose arguments changed keeps its SQLSTATEs and description when it is
        // the only unmatched row of that name.
        let renamed = || {
            let candidates: Vec<&Row> = rows
                .iter()
                .filter(|r| r.schema == function.schema && r.name == function.name)
                .filter(|r| !by_key.contains_key(&key(&r.schema, &r.name, &r.args)))
                .collect();
            (candidates.len() == 1).then(|| candidates[0])
        };
        let source = row.or_else(renamed);
        let (codes, description) = source.map_or(("?".to_string(), "?".to_string()), |r| {
            (
                if r.sqlstates.is_empty() { "?".to_string() } else { r.sqlstates.clone() },
                if r.description.is_empty() { "?".to_string() } else { r.description.clone() },
            )
        });
        tables.entry(function.schema.clone()).or_default().push(format!(
            "| `{}` | `{}` | {} | {} | {} |",
            function.signature(),
            function.result,
            function.caller,
            codes,
            description
        ));
    }
    Report { problems, tables }
}

fn render(tables: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::new();
    for schema in SCHEMAS {
        out.push_str(&format!("#### `{schema}`\n\n{HEADER}\n{SEPARATOR}\n"));
        for row in tables.get(schema).into_iter().flatten() {
            out.push_str(row);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_readme_reference_matches_pg_proc() {
    let db = TestDb::new();
    let functions = functions(&db);
    assert!(functions.len() > 100, "only {} functions read from pg_proc", functions.len());

    // The lists this test names must name functions that exist, or they rot unseen.
    let mut problems = Vec::new();
    for (schema, name) in DATA_PLANE_ENTRY_POINTS.iter().chain(SUPERUSER_FUNCTIONS.iter()) {
        if !functions.iter().any(|f| f.schema == *schema && f.name == *name) {
            problems.push(format!("{schema}.{name}, named by this test, is not in pg_proc: update the test"));
        }
    }
    for (schema, name) in DATA_PLANE_ENTRY_POINTS {
        for f in functions.iter().filter(|f| f.schema == schema && f.name == name) {
            if !f.caller.split(", ").any(|c| c == "data login") {
                problems.push(format!("{}: a data plane entry point not granted to the data login (caller {})", f.identity, f.caller));
            }
        }
    }

    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (rows, shape_problems) = reference_rows(&readme);
    problems.extend(shape_problems);
    let report = compare(&functions, &rows, &vocabulary(&readme));
    problems.extend(report.problems);
    let tables = render(&report.tables);

    if std::env::var_os("FLUXBASE_PRINT_API_REFERENCE").is_some() {
        println!("{tables}");
    }
    assert!(
        problems.is_empty(),
        "README.md's SQL API reference (### Reference) does not match pg_proc:\n\n{}\n\n\
         The tables as pg_proc has them, with the README's SQLSTATEs and descriptions \
         (`?` where a row is new: read the function in sql/ and fill them in), to paste \
         under ### Reference:\n\n{tables}",
        problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n"),
    );
}

#[test]
fn rows_are_written_and_read_alike() {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(format_args(&[], 0), "()");
    assert_eq!(format_args(&names(&["email", "password", "valid_for"]), 1), "(email, password [, valid_for])");
    assert_eq!(format_args(&names(&["session_token", "page_size", "cursor"]), 3), "([session_token, page_size, cursor])");
    assert_eq!(format_args(&names(&["a", "b"]), 0), "(a, b)");

    assert_eq!(normalise_result(Some("dashboard_auth.login_result")), "login_result");
    assert_eq!(normalise_result(Some("auth.result")), "result");
    assert_eq!(normalise_result(Some("SETOF dashboard_auth.admin_overview")), "rows of admin_overview");
    assert_eq!(normalise_result(Some("SETOF text")), "rows of text");
    assert_eq!(normalise_result(Some("pg_catalog.text[]")), "text[]");
    assert_eq!(
        normalise_result(Some("TABLE(schema text, \"table\" text, total numeric(10,2), at timestamp with time zone)")),
        "rows (schema, table, total, at)"
    );
    assert_eq!(caller_of(&[]), "superuser");
    assert_eq!(caller_of(&names(&["PUBLIC", "fluxbase_dashboard", "fluxbase_data"])), "dashboard, data login, anyone");
    assert_eq!(caller_of(&names(&["authenticated", "service_role"])), "app, authenticated");

    assert_eq!(
        cells("| `f(a [, b])` | `rows (x, y)` | dashboard | `28000`, `42501` | Does `a | b`; then |"),
        ["`f(a [, b])`", "`rows (x, y)`", "dashboard", "`28000`, `42501`", "Does `a | b`; then"]
    );
    assert_eq!(sqlstates("`28000`, `42501`"), ["28000", "42501"]);
    assert_eq!(sqlstates("`28000, 42501`"), ["28000", "42501"]);
    assert!(sqlstates("-").is_empty());

    let readme = format!(
        "## SQL API\n\n### Reference\n\n#### `auth`\n\n{HEADER}\n{SEPARATOR}\n\
         | `uid()` | `uuid` | anyone | - | The user's id |\n\
         | `gone(x)` | `void` | dashboard | `99999` | ? |\n\n## Operator commands\n| `not(a)` | x | y | z | w |\n"
    );
    let (rows, problems) = reference_rows(&readme);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(problems.len(), 2, "{problems:?}"); // no dashboard_auth and no fluxbase_admin table
    let function = |name: &str, args: &str, must: bool| Function {
        schema: "auth".into(),
        name: name.into(),
        args: args.into(),
        result: "uuid".into(),
        caller: "anyone".into(),
        identity: format!("auth.{name}"),
        must_document: must,
    };
    let vocabulary: BTreeSet<String> = ["28000".to_string()].into();
    let report = compare(&[function("uid", "()", true), function("role", "()", true), function("hidden", "()", false)], &rows, &vocabulary);
    // gone: no such function, SQLSTATE 99999, no description; role: no row.
    assert_eq!(report.problems.len(), 4, "{:?}", report.problems);
    assert_eq!(
        report.tables["auth"],
        ["| `uid()` | `uuid` | anyone | - | The user's id |", "| `role()` | `uuid` | anyone | ? | ? |"]
    );
}
