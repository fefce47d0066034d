//! Edits: the statements for updating, inserting and deleting rows, written by the same
//! rules as the browse builder: identifiers from the catalog, quoted; every value bound
//! in the one text[] parameter and cast to its column's declared type (a domain's checks
//! run); rows addressed by their primary key, or by a filter whose row count the caller
//! states.
//!
//! Payloads (JSON):
//! - update: `{"keys": [{"id": 1}, ...], "set": {"title": "x"}}`
//! - insert: `{"rows": [{"title": "x"}, ...]}` (columns left out take their defaults)
//! - delete: `{"keys": [{"id": 1}, ...]}`
//! - update_where: `{"filter": ..., "expected_count": 12, "set": {...}}`
//! - delete_where: `{"filter": ..., "expected_count": 12}`

use super::builder::{col, filter_sql, value_text, Bindings};
use super::request::{json_text, parse_filter};
use super::shape::{quote_ident, Column, Shape};
use serde_json::{json, Map, Value};

/// Rows one edit may address at most.
pub const MAX_ROWS: usize = 1000;

/// Why rows of this relation cannot be edited, or None.
pub fn read_only_reason(shape: &Shape) -> Option<String> {
    match shape.kind.as_str() {
        "table" | "partitioned_table" => {}
        kind => {
            return Some(format!(
                "{} is a {}: only tables are edited here",
                shape.qualified_name(),
                kind.replace('_', " ")
            ))
        }
    }
    match &shape.key {
        Some(key) if key.source.starts_with("primary key") => None,
        _ => Some(format!(
            "{} has no primary key: a row cannot be addressed safely, so it is read-only",
            shape.qualified_name()
        )),
    }
}

/// A value for a column that is written: cast to the declared type, so that a domain's
/// checks and the column's length limit apply as in any INSERT.
fn written(b: &mut Bindings, column: &Column, value: &Value) -> Result<String, String> {
    let cast = column.checked_cast.as_deref().unwrap_or(if column.declared_cast.is_empty() { &column.cast } else { &column.declared_cast });
    if value.is_null() {
        if column.not_null {
            b.errors.push(json!({
                "field": column.name, "fields": [column.name], "code": "not_null", "sqlstate": "23502", "type": column.display_type,
                "message": format!("column {} may not be NULL", quote_ident(&column.name)),
            }));
        }
        // Cast and checked too: a NOT NULL domain refuses it, by the column's name.
        return Ok(b.typed_as(None, column, cast));
    }
    let text = value_text(column, value)?;
    // An explicit cast would cut a long text to the column's length; the INSERT would
    // refuse it without naming the column. Say so here, by name.
    if let Some(max) = column.max_length.filter(|max| text.chars().count() as i64 > *max) {
        b.errors.push(json!({
            "field": column.name, "fields": [column.name], "code": "type", "sqlstate": "22001", "value": text, "type": column.display_type,
            "message": format!("value too long for {} ({} characters, at most {max})", column.display_type, text.chars().count()),
        }));
    }
    Ok(b.typed_as(Some(text), column, cast))
}

fn object<'a>(payload: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    payload.get(key).and_then(Value::as_object).ok_or_else(|| format!("the edit needs \"{key}\": an object of column values"))
}

fn rows<'a>(payload: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    let rows = payload
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the edit needs \"{key}\": an array of objects"))?;
    if rows.is_empty() || rows.len() > MAX_ROWS {
        return Err(format!("\"{key}\" holds 1 to {MAX_ROWS} rows, not {}", rows.len()));
    }
    Ok(rows)
}

/// `SET "a" = ..., "b" = ...`, refusing what cannot be written.
fn assignments(shape: &Shape, b: &mut Bindings, set: &Map<String, Value>) -> Result<String, String> {
    if set.is_empty() {
        return Err("\"set\" names no column to change".into());
    }
    let parts = set
        .iter()
        .map(|(name, value)| {
            let column = writable(shape, name)?;
            Ok(format!("{} = {}", quote_ident(&column.name), written(b, column, value)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(parts.join(", "))
}

fn writable<'a>(shape: &'a Shape, name: &str) -> Result<&'a Column, String> {
    let column = shape.column(name)?;
    if column.generated {
        return Err(format!("column {} is generated: Postgres computes it", quote_ident(name)));
    }
    if column.identity.as_deref() == Some("always") {
        return Err(format!("column {} is an identity GENERATED ALWAYS: Postgres assigns it", quote_ident(name)));
    }
    Ok(column)
}

/// `(t."id" = $1[1]::int8) OR (...)`: the rows named by their primary keys.
pub(super) fn keys_sql(shape: &Shape, b: &mut Bindings, keys: &[Value]) -> Result<String, String> {
    let key = &shape.key.as_ref().expect("editable relations have a primary key").columns;
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].contains(k) {
            return Err(format!("the key {} is given twice", json_text(k)));
        }
    }
    let parts = keys
        .iter()
        .map(|k| {
            let k = k.as_object().ok_or_else(|| format!("each key is an object such as {{\"id\": 1}}, not {}", json_text(k)))?;
            if k.len() != key.len() || key.iter().any(|c| !k.contains_key(c)) {
                return Err(format!(
                    "each key gives exactly the primary key's columns ({}), not {}",
                    key.join(", "),
                    json_text(&Value::Object(k.clone()))
                ));
            }
            let conds = key
                .iter()
                .map(|name| {
                    let column = shape.column(name)?;
                    let ops = column.operators()?;
                    Ok(format!("{} {} {}", col(column), ops.eq, b.typed(value_text(column, &k[name])?, column)))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(format!("({})", conds.join(" AND ")))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(parts.join(" OR "))
}

/// The statements of one edit: `lock_sql` reads and locks the rows it will change (their
/// values before), `apply_sql` changes them and returns them after; both give
/// `(rows jsonb, count bigint)`.
pub fn build_edit(shape: &Shape, operation: &str, payload: &Value) -> Result<Value, String> {
    if let Some(reason) = read_only_reason(shape) {
        return Err(reason);
    }
    let relation = shape.qualified_name();
    let mut b = Bindings::default();
    let collect = |inner: String| {
        format!("SELECT pg_catalog.jsonb_agg(r.row), pg_catalog.count(*) FROM ({inner}) AS r")
    };
    let (lock_where, expected, apply) = match operation {
        "update" | "delete" => {
            let keys = rows(payload, "keys")?;
            let predicate = keys_sql(shape, &mut b, keys)?;
            let apply = if operation == "update" {
                let set = assignments(shape, &mut b, object(payload, "set")?)?;
                format!("UPDATE {relation} AS t SET {set} WHERE {predicate} RETURNING pg_catalog.to_jsonb(t.*) AS row")
            } else {
                format!("DELETE FROM {relation} AS t WHERE {predicate} RETURNING pg_catalog.to_jsonb(t.*) AS row")
            };
            // A delete needs no lock first: it returns the rows as they were, and a count
            // that differs undoes it (SELECT ... FOR UPDATE would need UPDATE rights).
            (if operation == "update" { Some(predicate) } else { None }, Some(keys.len() as i64), apply)
        }
        "update_where" | "delete_where" => {
            let filter = parse_filter(payload.get("filter").unwrap_or(&Value::Null))?
                .ok_or("a filtered edit needs a filter; to change every row, say so with a filter that matches them")?;
            let expected = payload
                .get("expected_count")
                .and_then(Value::as_i64)
                .filter(|n| *n >= 0)
                .ok_or("a filtered edit needs \"expected_count\": how many rows the filter matched when you looked")?;
            let predicate = filter_sql(shape, &mut b, &filter)?;
            let apply = if operation == "update_where" {
                let set = assignments(shape, &mut b, object(payload, "set")?)?;
                format!("UPDATE {relation} AS t SET {set} WHERE {predicate} RETURNING pg_catalog.to_jsonb(t.*) AS row")
            } else {
                format!("DELETE FROM {relation} AS t WHERE {predicate} RETURNING pg_catalog.to_jsonb(t.*) AS row")
            };
            (if operation == "update_where" { Some(predicate) } else { None }, Some(expected), apply)
        }
        "insert" => {
            let new_rows = rows(payload, "rows")?;
            let mut names: Vec<&str> = Vec::new();
            for row in new_rows {
                let row = row.as_object().ok_or_else(|| format!("each row is an object of column values, not {}", json_text(row)))?;
                for name in row.keys() {
                    writable(shape, name)?;
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
            }
            let columns: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
            let values = new_rows
                .iter()
                .map(|row| {
                    let row = row.as_object().expect("checked above");
                    let cells = names
                        .iter()
                        .map(|name| match row.get(*name) {
                            None => Ok("DEFAULT".to_string()),
                            Some(v) => written(&mut b, shape.column(name)?, v),
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    Ok(format!("({})", cells.join(", ")))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let apply = if names.is_empty() {
                // Every column from its default, once per row: a query of no columns
                // leaves all of them to their defaults.
                format!(
                    "INSERT INTO {relation} AS t SELECT FROM pg_catalog.generate_series(1, {}) RETURNING pg_catalog.to_jsonb(t.*) AS row",
                    new_rows.len()
                )
            } else {
                format!(
                    "INSERT INTO {relation} AS t ({}) VALUES {} RETURNING pg_catalog.to_jsonb(t.*) AS row",
                    columns.join(", "),
                    values.join(", ")
                )
            };
            (None, None, apply)
        }
        other => {
            return Err(format!(
                "unknown edit {}: use update, insert, delete, update_where or delete_where",
                json_text(&Value::from(other))
            ))
        }
    };
    let lock_sql = lock_where.map(|predicate| {
        collect(format!("SELECT pg_catalog.to_jsonb(t.*) AS row FROM {relation} AS t WHERE {predicate} FOR UPDATE"))
    });
    Ok(json!({
        "schema": shape.schema,
        "name": shape.name,
        "operation": operation,
        "key": shape.key.as_ref().map(|k| &k.columns),
        "params": b.params,
        "checks": b.checks,
        "errors": b.errors,
        "lock_sql": lock_sql,
        "expected_count": expected,
        "apply_sql": format!("WITH changed AS ({apply}) SELECT pg_catalog.jsonb_agg(changed.row), pg_catalog.count(*) FROM changed"),
    }))
}
