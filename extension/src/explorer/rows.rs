//! Rows addressed by their key, for reading rather than changing: one cell's full value
//! (a page cuts large values short), and chosen rows as an `INSERT` statement and as
//! JSON. Written by the browse builder's rules: identifiers from the catalog, quoted;
//! the key's values bound in the one text[] parameter and cast to their columns' types.
//!
//! Requests (JSON, through fluxbase_admin.issue_ticket):
//! - cell: `{"schema", "table", "column": "body", "key": {"id": 1}}`
//! - copy: `{"schema", "table", "keys": [{"id": 1}, ...]}`

use super::builder::{col, Bindings};
use super::edits::{keys_sql, MAX_ROWS};
use super::request::json_text;
use super::shape::{quote_ident, Shape};
use serde_json::{json, Value};

/// The key's columns, or why rows of this relation cannot be addressed one by one.
fn key_columns<'a>(shape: &'a Shape, what: &str) -> Result<&'a [String], String> {
    shape.key.as_ref().map(|k| k.columns.as_slice()).ok_or_else(|| {
        format!(
            "{} has no primary key or unique NOT NULL key: {what} cannot be addressed",
            shape.qualified_name()
        )
    })
}

/// The statement that reads one cell in full: `(value jsonb, length bigint)`, no row when
/// the key matches none. The length is in characters (bytes for bytea), for the values a
/// page may cut short.
pub fn build_cell(shape: &Shape, column: &str, key: &Value) -> Result<Value, String> {
    key_columns(shape, "a single cell")?;
    let column = shape.column(column)?;
    let mut b = Bindings::default();
    let predicate = keys_sql(shape, &mut b, std::slice::from_ref(key))?;
    let c = col(column);
    let length = if column.base == "bytea" {
        format!("pg_catalog.octet_length({c})::pg_catalog.int8")
    } else if column.can_be_large() {
        format!("pg_catalog.char_length(({c})::pg_catalog.text)::pg_catalog.int8")
    } else {
        "NULL::pg_catalog.int8".to_string()
    };
    Ok(json!({
        "schema": shape.schema,
        "name": shape.name,
        "column": column.name,
        "type": column.display_type,
        "params": b.params,
        "checks": b.checks,
        "sql": format!("SELECT pg_catalog.to_jsonb({c}), {length} FROM {} AS t WHERE {predicate}", shape.qualified_name()),
    }))
}

/// The statement that reads chosen rows as JSON and as the tuples of an `INSERT`:
/// `(rows jsonb, tuples text, count bigint)`, in the key's order. The statement's columns
/// are the table's in order, without those Postgres computes (generated, identity
/// GENERATED ALWAYS); each value is written as a literal (quote_nullable), which the
/// column reads back as the same value.
pub fn build_copy(shape: &Shape, payload: &Value) -> Result<Value, String> {
    let key = key_columns(shape, "a row")?;
    let keys = payload
        .get("keys")
        .and_then(Value::as_array)
        .filter(|keys| !keys.is_empty() && keys.len() <= MAX_ROWS)
        .ok_or_else(|| {
            format!(
                "\"keys\" is an array of 1 to {MAX_ROWS} keys such as {{\"id\": 1}}, not {}",
                json_text(payload.get("keys").unwrap_or(&Value::Null))
            )
        })?;
    let mut b = Bindings::default();
    let predicate = keys_sql(shape, &mut b, keys)?;
    let relation = shape.qualified_name();
    let inserted: Vec<_> =
        shape.columns.iter().filter(|c| !c.generated && c.identity.as_deref() != Some("always")).collect();
    let tuple = if inserted.is_empty() {
        "NULL::pg_catalog.text".to_string()
    } else {
        let literals: Vec<String> = inserted.iter().map(|c| format!("pg_catalog.quote_nullable({})", col(c))).collect();
        format!("'(' || {} || ')'", literals.join(" || ', ' || "))
    };
    let order: Vec<String> = key.iter().map(|name| Ok(col(shape.column(name)?))).collect::<Result<_, String>>()?;
    let insert = if inserted.is_empty() {
        format!("INSERT INTO {relation} DEFAULT VALUES")
    } else {
        let names: Vec<String> = inserted.iter().map(|c| quote_ident(&c.name)).collect();
        format!("INSERT INTO {relation} ({}) VALUES", names.join(", "))
    };
    Ok(json!({
        "schema": shape.schema,
        "name": shape.name,
        "columns": inserted.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "params": b.params,
        "checks": b.checks,
        "requested": keys.len(),
        "insert": insert,
        "sql": format!(
            "SELECT pg_catalog.jsonb_agg(r.row ORDER BY r.n), pg_catalog.string_agg(r.tuple, E',\\n    ' ORDER BY r.n), pg_catalog.count(*) \
             FROM (SELECT pg_catalog.to_jsonb(t.*) AS row, {tuple} AS tuple, pg_catalog.row_number() OVER (ORDER BY {}) AS n \
             FROM {relation} AS t WHERE {predicate}) AS r",
            order.join(", ")
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(key: bool) -> Shape {
        let ops = json!({"eq": "OPERATOR(\"pg_catalog\".=)", "ne": "OPERATOR(\"pg_catalog\".<>)", "lt": "OPERATOR(\"pg_catalog\".<)",
                         "le": "OPERATOR(\"pg_catalog\".<=)", "gt": "OPERATOR(\"pg_catalog\".>)", "ge": "OPERATOR(\"pg_catalog\".>=)"});
        serde_json::from_value(json!({
            "schema": "s", "name": "t\"x", "kind": "table", "estimated_rows": null,
            "columns": [
                {"name": "id", "type": "bigint", "cast": "\"pg_catalog\".\"int8\"", "category": "N", "base": "int8",
                 "not_null": true, "ops": ops, "builtin_order": true, "identity": "always"},
                {"name": "body", "type": "text", "cast": "\"pg_catalog\".\"text\"", "category": "S", "base": "text",
                 "not_null": false, "ops": ops, "builtin_order": true},
                {"name": "len", "type": "integer", "cast": "\"pg_catalog\".\"int4\"", "category": "N", "base": "int4",
                 "not_null": false, "ops": ops, "builtin_order": true, "generated": true}
            ],
            "key": if key { json!({"columns": ["id"], "source": "primary key"}) } else { Value::Null },
        }))
        .unwrap()
    }

    #[test]
    fn a_cell_is_read_by_its_key_with_the_value_bound() {
        let plan = build_cell(&shape(true), "body", &json!({"id": "1' OR true --"})).unwrap();
        assert_eq!(plan["params"], json!(["1' OR true --"]));
        assert!(!plan["sql"].as_str().unwrap().contains("OR true"));
        assert!(build_cell(&shape(false), "body", &json!({"id": 1})).unwrap_err().contains("no primary key or unique"));
        assert!(build_cell(&shape(true), "nope", &json!({"id": 1})).unwrap_err().contains("has no column \"nope\""));
        assert!(build_cell(&shape(true), "body", &json!({"body": 1})).unwrap_err().contains("exactly"));
    }

    #[test]
    fn a_copy_leaves_out_the_columns_postgres_computes() {
        let plan = build_copy(&shape(true), &json!({"keys": [{"id": 2}, {"id": 1}]})).unwrap();
        assert_eq!(plan["columns"], json!(["body"]));
        assert_eq!(plan["insert"], "INSERT INTO \"s\".\"t\"\"x\" (\"body\") VALUES");
        assert!(build_copy(&shape(true), &json!({"keys": []})).unwrap_err().contains("1 to"));
        assert!(build_copy(&shape(false), &json!({"keys": [{"id": 1}]})).is_err());
    }
}
