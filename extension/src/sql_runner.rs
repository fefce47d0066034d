//! The SQL runner (`sql/sql_runner.sql`): what Rust does for it. It reads a statement
//! with Postgres's own parser to refuse what a run may not do, redacts secrets for the
//! audit log and the history, and describes a result's columns.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};
use std::ffi::{CStr, CString};

/// The statement with the string literal after each `PASSWORD` keyword shown as
/// `'***'`, so that the audit log and the history never hold a password. It reads the
/// text as Postgres's lexer does: comments, quoted identifiers and every kind of string
/// literal (`'...'`, `E'...'`, `U&'...'`, `$tag$...$tag$`, and literals continued on the
/// next line) are tokens, so a keyword inside a comment or a string is no keyword.
pub fn redact_secrets(sql: &str) -> String {
    let tokens = lex(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        i += 1;
        if !(t.kind == Kind::Word && sql[t.start..t.end].eq_ignore_ascii_case("password")) {
            continue;
        }
        // The literal: the next token that is not a comment, with its continuations.
        let mut j = i;
        while j < tokens.len() && tokens[j].kind == Kind::Comment {
            j += 1;
        }
        if j >= tokens.len() || tokens[j].kind != Kind::Literal {
            continue;
        }
        let start = tokens[j].start;
        let mut end = tokens[j].end;
        while j + 1 < tokens.len() && tokens[j + 1].kind == Kind::Literal && sql[end..tokens[j + 1].start].contains('\n') {
            j += 1;
            end = tokens[j].end;
        }
        out.push_str(&sql[copied..start]);
        out.push_str("'***'");
        copied = end;
        i = j + 1;
    }
    out.push_str(&sql[copied..]);
    out
}

/// The statement with every string literal shown as `'***'`, for query texts shown to
/// admins and viewers (`list_activity`, `list_statements`): a query typed into psql may
/// carry a password or a token in any literal. The same lexer as `redact_secrets`, so
/// `$tag$...$tag$`, `E'...'` with backslash escapes and `U&'...'` are literals too, and a
/// text cut short (`track_activity_query_size`) is redacted to its end.
pub fn redact_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for t in lex(sql).iter().filter(|t| t.kind == Kind::Literal) {
        out.push_str(&sql[copied..t.start]);
        out.push_str("'***'");
        copied = t.end;
    }
    out.push_str(&sql[copied..]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Literal,
    Comment,
    Other,
}

struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// SQL's tokens, as far as redaction needs them. Unterminated comments and literals run
/// to the end of the text, as Postgres would read them (and then refuse them).
fn lex(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let kind = match b[i] {
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                Kind::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Comments nest in Postgres.
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                Kind::Comment
            }
            b'\'' => {
                i = quoted_end(b, i + 1, b'\'', false);
                Kind::Literal
            }
            b'e' | b'E' if b.get(i + 1) == Some(&b'\'') => {
                i = quoted_end(b, i + 2, b'\'', true);
                Kind::Literal
            }
            b'u' | b'U' if b.get(i + 1) == Some(&b'&') && b.get(i + 2) == Some(&b'\'') => {
                i = quoted_end(b, i + 3, b'\'', false);
                Kind::Literal
            }
            b'"' => {
                i = quoted_end(b, i + 1, b'"', false);
                Kind::Other
            }
            b'$' => match dollar_tag(sql, i) {
                Some(tag) => {
                    i = sql[i + tag.len()..].find(tag).map_or(b.len(), |n| i + tag.len() + n + tag.len());
                    Kind::Literal
                }
                None => {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    Kind::Other
                }
            },
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                    i += 1;
                }
                Kind::Word
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        tokens.push(Token { kind, start, end: i });
    }
    tokens
}

/// The end (exclusive) of a quoted token whose body starts at `i`; `''` (or `""`) is a
/// quote inside it, and with `backslashes` a backslash escapes the next byte.
fn quoted_end(b: &[u8], mut i: usize, quote: u8, backslashes: bool) -> usize {
    while i < b.len() {
        if backslashes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote && b.get(i + 1) == Some(&quote) {
            i += 2;
        } else if b[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `$tag$` (or `$$`) starting at `i`, if one does.
fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let rest = &sql[i + 1..];
    let close = rest.find('$')?;
    let tag = &rest[..close];
    // As Postgres's scanner: letters, digits (not first), `_`, and any non-ASCII character.
    let valid = tag.is_empty()
        || (!tag.starts_with(|c: char| c.is_ascii_digit())
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()));
    valid.then(|| &sql[i..i + close + 2])
}

/// A `set_config('role', ...)` or `set_config('session_authorization', ...)` call
/// written with a literal name. A computed name escapes this check; the runner's check
/// of the current role after the statement catches it.
fn sets_role_by_function(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.match_indices("set_config").any(|(at, _)| {
        let rest = lower[at + "set_config".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('(') else { return false };
        let rest = rest.trim_start();
        let rest = rest.strip_prefix("e'").or_else(|| rest.strip_prefix('\''));
        rest.and_then(|r| r.split('\'').next()).is_some_and(|name| {
            matches!(name.trim(), "role" | "session_authorization")
        })
    })
}

/// What a statement is, and why a run may not execute it (NULL when it may).
/// Syntax errors are left to the execution, which reports them with their position.
fn classify(sql: &str) -> Value {
    let text = CString::new(sql).expect("text has no NUL");
    let statements: Vec<*mut pg_sys::RawStmt> = unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        pgrx::PgList::<pg_sys::RawStmt>::from_pg(list).iter_ptr().collect()
    };
    let refuse = |command: &str, reason: String| json!({"statements": statements.len(), "command": command, "refusal": reason});
    match statements.len() {
        0 => return refuse("", "the statement is empty".into()),
        1 => {}
        n => return refuse("", format!("one statement at a time: this text holds {n}")),
    }
    let node = unsafe { (*statements[0]).stmt };
    let command = unsafe { CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(node))) }
        .to_string_lossy()
        .into_owned();
    let tag = unsafe { (*node).type_ };
    let refusal = match tag {
        pg_sys::NodeTag::T_TransactionStmt => Some(format!(
            "{command} is refused: each run is one transaction, committed or rolled back by the runner"
        )),
        pg_sys::NodeTag::T_VariableSetStmt => {
            let set = node as *mut pg_sys::VariableSetStmt;
            let name = unsafe { (*set).name };
            let name = if name.is_null() { String::new() } else { unsafe { CStr::from_ptr(name) }.to_string_lossy().to_lowercase() };
            let reset_all = unsafe { (*set).kind } == pg_sys::VariableSetKind::VAR_RESET_ALL;
            (reset_all || name == "role" || name == "session_authorization")
                .then(|| format!("changing the role or session authorization ({command} {name}) is refused: the run keeps its role").replace("  ", " ").replace(" )", ")"))
        }
        pg_sys::NodeTag::T_DiscardStmt => Some("DISCARD is refused: it would reset the run's role".into()),
        pg_sys::NodeTag::T_SelectStmt if unsafe { !(*(node as *mut pg_sys::SelectStmt)).intoClause.is_null() } => {
            Some("SELECT ... INTO is not supported here: write CREATE TABLE ... AS SELECT".into())
        }
        _ if sets_role_by_function(sql) => Some("set_config('role', ...) is refused: the run keeps its role".into()),
        _ => None,
    };
    let returns_rows = unsafe {
        match tag {
            pg_sys::NodeTag::T_SelectStmt => (*(node as *mut pg_sys::SelectStmt)).intoClause.is_null(),
            pg_sys::NodeTag::T_InsertStmt => !(*(node as *mut pg_sys::InsertStmt)).returningList.is_null(),
            pg_sys::NodeTag::T_UpdateStmt => !(*(node as *mut pg_sys::UpdateStmt)).returningList.is_null(),
            pg_sys::NodeTag::T_DeleteStmt => !(*(node as *mut pg_sys::DeleteStmt)).returningList.is_null(),
            pg_sys::NodeTag::T_ExplainStmt | pg_sys::NodeTag::T_VariableShowStmt => true,
            _ => false,
        }
    };
    let explainable = matches!(
        tag,
        pg_sys::NodeTag::T_SelectStmt
            | pg_sys::NodeTag::T_InsertStmt
            | pg_sys::NodeTag::T_UpdateStmt
            | pg_sys::NodeTag::T_DeleteStmt
            | pg_sys::NodeTag::T_MergeStmt
            | pg_sys::NodeTag::T_ExecuteStmt
            | pg_sys::NodeTag::T_CreateTableAsStmt
            | pg_sys::NodeTag::T_DeclareCursorStmt
    );
    json!({
        "statements": 1,
        "command": command,
        "refusal": refusal,
        "returns_rows": returns_rows,
        "explainable": explainable,
        "is_explain": tag == pg_sys::NodeTag::T_ExplainStmt,
    })
}

/// The result columns (name and type) of the open cursor `portal`, read from its
/// description: nothing is executed, so any role may ask.
fn portal_columns(portal: &str) -> Value {
    let name = CString::new(portal).expect("portal names have no NUL");
    unsafe {
        let found = pg_sys::GetPortalByName(name.as_ptr());
        if found.is_null() || (*found).tupDesc.is_null() {
            return json!([]);
        }
        let desc = (*found).tupDesc;
        let attrs = std::slice::from_raw_parts((*desc).attrs.as_ptr(), (*desc).natts as usize);
        Value::Array(
            attrs
                .iter()
                .filter(|a| !a.attisdropped)
                .map(|a| {
                    let name = CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned();
                    let type_name = CStr::from_ptr(pg_sys::format_type_with_typemod(a.atttypid, a.atttypmod)).to_string_lossy().into_owned();
                    json!({"name": name, "type": type_name})
                })
                .collect(),
        )
    }
}

#[pg_schema]
mod fluxbase_admin {
    use super::*;

    #[pg_extern(immutable, strict, parallel_safe)]
    fn redact_secrets(sql: &str) -> String {
        super::redact_secrets(sql)
    }

    /// Every string literal as `'***'` (internal: the metric functions show query texts so).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn redact_sql(query: &str) -> String {
        super::redact_literals(query)
    }

    /// {statements, command, refusal, returns_rows, explainable, is_explain}
    #[pg_extern(volatile, strict)]
    fn classify_statement(sql: &str) -> JsonB {
        JsonB(super::classify(sql))
    }

    /// [{name, type}]: the columns of the open cursor `portal`.
    #[pg_extern(stable, strict)]
    fn portal_columns(portal: &str) -> JsonB {
        JsonB(super::portal_columns(portal))
    }

    /// A keyed MAC of a statement's text: what the history keeps and the claim checks, so
    /// that the run executes exactly the text recorded. Keyed with the cluster's sealing
    /// key, which lives outside every dump: a dump of the history gives no way to test a
    /// guess at a redacted password. Internal: only the extension's definer functions call it.
    #[pg_extern(stable, strict)]
    fn statement_mac(statement: &str) -> Vec<u8> {
        let Ok(key) = crate::two_factor::sealing_key().map_err(|e| {
            pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, e);
        }) else {
            unreachable!("ereport(ERROR) does not return")
        };
        super::statement_mac(&key, statement).to_vec()
    }
}

/// BLAKE2s keyed with the sealing key, over a domain-separated statement text.
fn statement_mac(key: &[u8; 32], statement: &str) -> [u8; 32] {
    use blake2::digest::{KeyInit, Mac};
    let mut mac = <blake2::Blake2sMac256 as KeyInit>::new_from_slice(key).expect("a 32-byte key fits BLAKE2s");
    mac.update(b"fluxbase_admin sql_runs statement\0");
    mac.update(statement.as_bytes());
    mac.finalize().into_bytes().into()
}

pgrx::extension_sql_file!(
    "../../sql/sql_runner.sql",
    name = "sql_runner",
    requires = ["impersonation", "settings", "data_plane", redact_secrets, classify_statement, portal_columns, statement_mac]
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn password_literals_are_redacted_in_every_quoting() {
        for (sql, redacted) in [
            ("ALTER ROLE a PASSWORD 'se''cret' VALID UNTIL 'x'", "ALTER ROLE a PASSWORD '***' VALID UNTIL 'x'"),
            ("create role b with encrypted password E'a\\'b' login", "create role b with encrypted password '***' login"),
            ("ALTER USER c PASSWORD $p$x'y$p$;", "ALTER USER c PASSWORD '***';"),
            ("ALTER ROLE d PASSWORD U&'hunter2'", "ALTER ROLE d PASSWORD '***'"),
            ("ALTER ROLE d PASSWORD /* the new one */ 'hunter2'", "ALTER ROLE d PASSWORD /* the new one */ '***'"),
            ("ALTER ROLE d PASSWORD 'hun'\n'ter2' LOGIN", "ALTER ROLE d PASSWORD '***' LOGIN"),
            ("ALTER ROLE d PASSWORD 'unterminated", "ALTER ROLE d PASSWORD '***'"),
            ("ALTER ROLE ü PASSWORD 'ß'", "ALTER ROLE ü PASSWORD '***'"),
            ("ALTER ROLE x PASSWORD $€$hunter2$€$", "ALTER ROLE x PASSWORD '***'"),
            // Not a keyword: in a comment, a string, an identifier, or a column compared.
            ("SELECT password FROM t WHERE password = 'x'", "SELECT password FROM t WHERE password = 'x'"),
            ("/* password '*/ DELETE FROM t /*' */", "/* password '*/ DELETE FROM t /*' */"),
            ("SELECT 'password ''x''', \"password\" FROM t", "SELECT 'password ''x''', \"password\" FROM t"),
            ("-- password 'x'\nSELECT 1", "-- password 'x'\nSELECT 1"),
        ] {
            assert_eq!(redact_secrets(sql), redacted, "{sql}");
        }
    }

    #[test]
    fn every_literal_is_redacted_in_query_texts() {
        for (sql, redacted) in [
            ("SELECT 'a''b', 1", "SELECT '***', 1"),
            ("SELECT $$secret$$, $t$it's $$ still$t$ FROM x", "SELECT '***', '***' FROM x"),
            ("SELECT E'it\\'s secret' AS e", "SELECT '***' AS e"),
            ("SELECT e'\\\\', U&'d\\0061t', x'1f', b'01'", "SELECT '***', '***', x'***', b'***'"),
            ("SELECT \"it's\" FROM t -- 'not a literal'\n", "SELECT \"it's\" FROM t -- 'not a literal'\n"),
            ("SELECT $1, $2::text, a$b FROM t", "SELECT $1, $2::text, a$b FROM t"),
            ("SELECT 'cut sho", "SELECT '***'"),
        ] {
            assert_eq!(redact_literals(sql), redacted, "{sql}");
        }
    }

    #[test]
    fn role_changes_through_set_config_are_seen() {
        assert!(sets_role_by_function("SELECT set_config('role', 'postgres', true)"));
        assert!(sets_role_by_function("select pg_catalog.SET_CONFIG ( 'Role' , 'x', false)"));
        assert!(sets_role_by_function("SELECT set_config(E'session_authorization', 'x', false)"));
        assert!(!sets_role_by_function("SELECT set_config('search_path', 'x', true)"));
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn classify(sql: &str) -> serde_json::Value {
        Spi::get_one_with_args::<pgrx::JsonB>("SELECT fluxbase_admin.classify_statement($1)", &[sql.into()])
            .unwrap()
            .unwrap()
            .0
    }

    #[pg_test]
    fn statements_are_read_with_the_postgres_parser() {
        assert!(classify("select 1; select 2")["refusal"].as_str().unwrap().contains("one statement at a time"));
        assert!(classify("-- only a comment")["refusal"].as_str().unwrap().contains("empty"));
        for refused in ["BEGIN", "commit", "SAVEPOINT a", "SET ROLE postgres", "set local role postgres", "RESET ROLE",
                        "SET SESSION AUTHORIZATION postgres", "RESET ALL", "DISCARD ALL", "SELECT set_config('role', 'x', true)"] {
            assert!(classify(refused)["refusal"].is_string(), "{refused}");
        }
        // A semicolon inside a string is not a second statement.
        let one = classify("SELECT 'a; b', $$c;d$$");
        assert_eq!((one["refusal"].clone(), one["command"].clone()), (serde_json::Value::Null, serde_json::json!("SELECT")));
        assert_eq!(classify("SET work_mem = '8MB'")["refusal"], serde_json::Value::Null);
        assert_eq!(classify("UPDATE t SET a = 1 RETURNING a")["returns_rows"], true);
        assert_eq!(classify("UPDATE t SET a = 1")["returns_rows"], false);
        assert!(classify("SELECT 1 INTO new_table")["refusal"].as_str().unwrap().contains("CREATE TABLE ... AS"));
        assert_eq!(classify("CREATE TABLE x (a int)")["explainable"], false);
    }

    #[pg_test]
    fn the_runner_role_is_never_a_superuser() {
        let refusal = |role: &str| {
            Spi::get_one_with_args::<String>("SELECT fluxbase_admin.forbidden_runner_role($1)", &[role.into()]).unwrap()
        };
        assert_eq!(refusal("service_role"), None);
        assert!(refusal("postgres").unwrap().contains("superuser"));
        assert!(refusal("fluxbase_operator").is_some());
        assert!(refusal("no_such_role").unwrap().contains("does not exist"));
        Spi::run("CREATE ROLE runner_helper; GRANT fluxbase_operator TO runner_helper").unwrap();
        assert!(refusal("runner_helper").unwrap().contains("a member of, fluxbase_operator"));
    }
}
