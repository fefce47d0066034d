//! The SQL runner (`sql/sql_runner.sql`): what Rust does for it. It reads a statement
//! with Postgres's own parser to refuse what a run may not do, redacts secrets for the
//! audit log and the history, and describes a result's columns.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};
use std::ffi::{CStr, CString};

/// `PASSWORD '...'` (also `E'...'` and dollar-quoted) with the literal replaced by
/// `'***'`, so that the audit log and the history never hold a password.
pub fn redact_secrets(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password") {
        let start = search + found;
        let mut i = start + "password".len();
        search = i;
        let word_start = start == 0 || !is_word(bytes[start - 1]);
        if !word_start || bytes.get(i).is_some_and(|b| is_word(*b)) {
            continue;
        }
        while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        let Some(end) = literal_end(sql, i) else { continue };
        out.push_str(&sql[copied..i]);
        out.push_str("'***'");
        copied = end;
        search = end;
    }
    out.push_str(&sql[copied..]);
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Where the string literal starting at `i` ends (exclusive), if one starts there.
fn literal_end(sql: &str, i: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    match bytes.get(i)? {
        b'\'' => quoted_end(bytes, i + 1, false),
        b'e' | b'E' if bytes.get(i + 1) == Some(&b'\'') => quoted_end(bytes, i + 2, true),
        b'$' => {
            let tag_end = i + 1 + sql[i + 1..].find('$')?;
            let tag = &sql[i..=tag_end];
            if !tag[1..tag.len() - 1].bytes().all(is_word) {
                return None;
            }
            let close = sql[tag_end + 1..].find(tag)?;
            Some(tag_end + 1 + close + tag.len())
        }
        _ => None,
    }
}

fn quoted_end(bytes: &[u8], mut i: usize, backslashes: bool) -> Option<usize> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslashes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    // An unterminated literal: redact to the end rather than leak it.
    Some(bytes.len())
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
}

pgrx::extension_sql_file!(
    "../../sql/sql_runner.sql",
    name = "sql_runner",
    requires = ["impersonation", "settings", redact_secrets, classify_statement, portal_columns]
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn password_literals_are_redacted_in_every_quoting() {
        assert_eq!(redact_secrets("ALTER ROLE a PASSWORD 'se''cret' VALID UNTIL 'x'"), "ALTER ROLE a PASSWORD '***' VALID UNTIL 'x'");
        assert_eq!(redact_secrets("create role b with encrypted password E'a\\'b' login"), "create role b with encrypted password '***' login");
        assert_eq!(redact_secrets("ALTER USER c PASSWORD $p$x'y$p$;"), "ALTER USER c PASSWORD '***';");
        assert_eq!(redact_secrets("SELECT password FROM t WHERE password = 'x'"), "SELECT password FROM t WHERE password = 'x'");
        assert_eq!(redact_secrets("ALTER ROLE d PASSWORD 'unterminated"), "ALTER ROLE d PASSWORD '***'");
        assert_eq!(redact_secrets("ALTER ROLE ü PASSWORD 'ß'"), "ALTER ROLE ü PASSWORD '***'");
    }

    #[test]
    fn role_changes_through_set_config_are_seen() {
        assert!(sets_role_by_function("SELECT set_config('role', 'postgres', true)"));
        assert!(sets_role_by_function("select pg_catalog.SET_CONFIG ( 'Role' , 'x', false)"));
        assert!(sets_role_by_function("SELECT set_config(E'session_authorization', 'x', false)"));
        assert!(!sets_role_by_function("SELECT set_config('search_path', 'x', true)"));
    }
}
