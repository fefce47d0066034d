//! One error vocabulary: every SQLSTATE the extension raises is in the README's list,
//! every `RAISE EXCEPTION` names its code, and no message (which a web page shows as it
//! is) tells its reader to run a command of the binary; hints may.
//!
//! A static read of `sql/` and `extension/src/`: a new code, or a raise without one,
//! fails here until the README says what it means.

use std::collections::BTreeSet;
use std::path::Path;

use fluxbase_tests::repo_root;

/// Postgres's condition names that `sql/` uses, with their SQLSTATEs. A name missing here
/// fails the test: add it, and its code to the README.
const CONDITIONS: &[(&str, &str)] = &[
    ("invalid_parameter_value", "22023"),
    ("unique_violation", "23505"),
    ("invalid_transaction_state", "25000"),
    ("invalid_authorization_specification", "28000"),
    ("external_routine_exception", "38000"),
    ("insufficient_privilege", "42501"),
    ("undefined_object", "42704"),
    ("duplicate_object", "42710"),
    ("wrong_object_type", "42809"),
    ("undefined_table", "42P01"),
    ("duplicate_schema", "42P06"),
    ("object_not_in_prerequisite_state", "55000"),
    ("lock_not_available", "55P03"),
    ("no_data_found", "P0002"),
];

/// The SQLSTATEs the README's table lists (`22xxx` stands for class 22).
fn documented() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("| SQLSTATE | meaning |").expect("the README's SQLSTATE table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.trim_start().starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect()
}

/// `sql` with comments blanked out and each string literal's text kept apart, so that a
/// `;` in a message does not end a statement. Dollar quotes are left alone: function
/// bodies are made of them.
fn code_and_strings(sql: &str) -> (String, Vec<(usize, String)>) {
    let bytes = sql.as_bytes();
    let (mut code, mut strings, mut i) = (String::with_capacity(sql.len()), Vec::new(), 0);
    while i < bytes.len() {
        if bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i] == b'\'' {
            let start = i;
            let mut text = String::new();
            i += 1;
            while i < bytes.len() {
                if bytes[i] == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    text.push('\'');
                    i += 2;
                } else if bytes[i] == b'\'' {
                    break;
                } else {
                    let ch = sql[i..].chars().next().unwrap();
                    text.push(ch);
                    i += ch.len_utf8();
                }
            }
            i += 1;
            code.push_str(&format!("'#{}'", strings.len()));
            strings.push((start, text));
        } else {
            let ch = sql[i..].chars().next().unwrap();
            code.push(ch);
            i += ch.len_utf8();
        }
    }
    (code, strings)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Found {
    codes: Vec<(String, String)>,
    problems: Vec<String>,
}

fn scan_sql(file: &Path, sql: &str, found: &mut Found) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let (code, strings) = code_and_strings(sql);
    let string = |marker: &str| -> Option<&(usize, String)> {
        marker.strip_prefix("'#")?.strip_suffix('\'')?.parse::<usize>().ok().and_then(|n| strings.get(n))
    };
    let upper = code.to_uppercase();
    let mut from = 0;
    while let Some(at) = upper[from..].find("RAISE EXCEPTION") {
        let start = from + at;
        let end = start + code[start..].find(';').expect("a RAISE ends with ;");
        let statement = &code[start..end];
        let statement_upper = statement.to_uppercase();
        let first_string = statement.split_whitespace().nth(2).and_then(|w| string(w.trim_end_matches(',')));
        let place = first_string.map_or_else(|| format!("{name}"), |(offset, _)| format!("{name}:{}", line_of(sql, *offset)));
        match statement_upper.find("ERRCODE") {
            None => found.problems.push(format!("{place}: RAISE EXCEPTION without ERRCODE (it would be P0001)")),
            Some(e) => {
                let value = statement[e + "ERRCODE".len()..].trim_start().trim_start_matches('=').trim_start();
                let token: String = value.chars().take_while(|c| !c.is_whitespace() && *c != ',').collect();
                if token == "first" {
                    // plan_for re-raises a failed cast with the cast's own code.
                    found.codes.push(("22xxx".into(), format!("{place}: the cast's own code")));
                } else if let Some((_, text)) = string(&token) {
                    let sqlstate = CONDITIONS
                        .iter()
                        .find(|(condition, _)| *condition == text)
                        .map(|(_, code)| code.to_string())
                        .or_else(|| (text.len() == 5 && text.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())).then(|| text.clone()));
                    match sqlstate {
                        Some(sqlstate) => found.codes.push((sqlstate, place.clone())),
                        None => found.problems.push(format!("{place}: condition {text} is not in this test's list")),
                    }
                } else {
                    found.problems.push(format!("{place}: ERRCODE = {token} is not a literal"));
                }
            }
        }
        if let Some((_, message)) = first_string {
            for command in ["fluxbase serve", "fluxbase admin", "fluxbase audit", "fluxbase extension"] {
                if message.contains(command) {
                    found.problems.push(format!("{place}: the message names `{command}`; say it in a HINT"));
                }
            }
        }
        from = end;
    }
}

fn scan_rust(file: &Path, source: &str, found: &mut Found) {
    let name = file.strip_prefix(repo_root()).unwrap_or(file).display().to_string();
    for (n, line) in source.lines().enumerate() {
        let place = format!("{name}:{}", n + 1);
        let mut rest = line;
        while let Some(at) = rest.find("ERRCODE_") {
            let ident: String = rest[at + "ERRCODE_".len()..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            let condition = ident.to_lowercase();
            match CONDITIONS.iter().find(|(c, _)| *c == condition) {
                Some((_, code)) => found.codes.push((code.to_string(), place.clone())),
                None => found.problems.push(format!("{place}: ERRCODE_{ident} is not in this test's list")),
            }
            rest = &rest[at + 8..];
        }
        // error! and panics surface as XX000, an internal error no caller can act on.
        if line.contains("pgrx::error!(") || line.trim_start().starts_with("error!(") {
            found.problems.push(format!("{place}: pgrx::error! raises XX000; use ereport! with a listed code"));
        }
    }
}

fn files(dir: &Path, extension: &str, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

#[test]
fn every_sqlstate_the_extension_raises_is_in_the_readme() {
    let mut found = Found { codes: Vec::new(), problems: Vec::new() };
    let (mut sql_files, mut rust_files) = (Vec::new(), Vec::new());
    files(&repo_root().join("sql"), "sql", &mut sql_files);
    files(&repo_root().join("extension/src"), "rs", &mut rust_files);
    for file in &sql_files {
        scan_sql(file, &std::fs::read_to_string(file).unwrap(), &mut found);
    }
    for file in &rust_files {
        scan_rust(file, &std::fs::read_to_string(file).unwrap(), &mut found);
    }
    // The scan read something: a scanner that finds nothing would pass anything.
    assert!(found.codes.len() > 80, "only {} raises found", found.codes.len());

    let listed = documented();
    for (code, place) in &found.codes {
        if !listed.contains(code) {
            found.problems.push(format!("{place}: SQLSTATE {code} is not in the README's list"));
        }
    }
    let raised: BTreeSet<&str> = found.codes.iter().map(|(c, _)| c.as_str()).collect();
    for code in &listed {
        if !raised.contains(code.as_str()) {
            found.problems.push(format!("README lists {code}, which nothing raises"));
        }
    }
    assert!(found.problems.is_empty(), "{}", found.problems.join("\n"));
}

#[test]
fn the_scanner_finds_what_it_must() {
    // A made-up file with each kind of offence, and one clean raise.
    let sql = "CREATE FUNCTION x() RETURNS void LANGUAGE plpgsql AS $$ BEGIN
        RAISE EXCEPTION 'no code; none at all';
        RAISE EXCEPTION 'odd' USING ERRCODE = 'no_such_condition';
        RAISE EXCEPTION 'restart fluxbase serve now' USING ERRCODE = 'invalid_parameter_value';
        RAISE EXCEPTION 'fine: % is wrong', x USING ERRCODE = 'FB001', HINT = 'Run fluxbase admin unlock.';
        -- RAISE EXCEPTION 'in a comment';
    END $$;";
    let mut found = Found { codes: Vec::new(), problems: Vec::new() };
    scan_sql(Path::new("made_up.sql"), sql, &mut found);
    assert_eq!(found.problems.len(), 3, "{:?}", found.problems);
    assert!(found.problems[0].contains("without ERRCODE"), "{:?}", found.problems);
    assert!(found.problems[1].contains("no_such_condition"), "{:?}", found.problems);
    assert!(found.problems[2].contains("fluxbase serve"), "{:?}", found.problems);
    assert_eq!(found.codes.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["22023", "FB001"]);

    let mut found = Found { codes: Vec::new(), problems: Vec::new() };
    scan_rust(Path::new("made_up.rs"), "ereport!(ERROR, PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, m);\nErr(e) => pgrx::error!(\"{e}\"),", &mut found);
    assert_eq!(found.problems.len(), 2, "{:?}", found.problems);
}
