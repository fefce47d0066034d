//! A browse request as the caller writes it (JSON filter and sort), parsed into a typed
//! form. Parsing checks the shape of the request only; the builder checks it against
//! the relation.
//!
//! Filter: a condition, `{"and": [...]}`, `{"or": [...]}`, or an array (all of them).
//! A condition is `{"column": "status", "op": "eq", "value": "paid"}`.
//! Sort: `[{"column": "created_at", "direction": "desc", "nulls": "last"}, ...]`.

use serde_json::Value;

pub const MAX_FILTER_DEPTH: usize = 8;
pub const MAX_CONDITIONS: usize = 100;
pub const MAX_IN_VALUES: usize = 1000;
pub const MAX_SORT_COLUMNS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Like,
    Ilike,
    IsNull,
    NotNull,
    Contains,
}

impl Op {
    const ALL: [(&'static str, Op); 12] = [
        ("eq", Op::Eq),
        ("neq", Op::Neq),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("in", Op::In),
        ("like", Op::Like),
        ("ilike", Op::Ilike),
        ("is_null", Op::IsNull),
        ("not_null", Op::NotNull),
        ("contains", Op::Contains),
    ];

    fn parse(name: &str) -> Result<Op, String> {
        Op::ALL.iter().find(|(n, _)| *n == name).map(|(_, op)| *op).ok_or_else(|| {
            let names: Vec<&str> = Op::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown filter operator {}: use one of {}", json_text(&Value::from(name)), names.join(", "))
        })
    }

    pub fn takes_value(self) -> bool {
        !matches!(self, Op::IsNull | Op::NotNull)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Condition { column: String, op: Op, value: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortItem {
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
}

/// A JSON value as it appears in an error message, shortened.
pub fn json_text(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

pub fn parse_filter(value: &Value) -> Result<Option<Filter>, String> {
    let mut conditions = 0;
    match value {
        Value::Null => Ok(None),
        Value::Array(items) if items.is_empty() => Ok(None),
        Value::Object(map) if map.is_empty() => Ok(None),
        _ => parse_node(value, 1, &mut conditions).map(Some),
    }
}

fn parse_node(value: &Value, depth: usize, conditions: &mut usize) -> Result<Filter, String> {
    if depth > MAX_FILTER_DEPTH {
        return Err(format!("the filter is nested too deeply (at most {MAX_FILTER_DEPTH} levels)"));
    }
    let mut group = |items: &Value, what: &str| -> Result<Vec<Filter>, String> {
        let items = items.as_array().ok_or_else(|| format!("\"{what}\" takes an array of conditions"))?;
        if items.is_empty() {
            return Err(format!("\"{what}\" needs at least one condition"));
        }
        items.iter().map(|item| parse_node(item, depth + 1, conditions)).collect()
    };
    match value {
        Value::Array(_) => Ok(Filter::All(group(value, "and")?)),
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(items) = map.get("and") {
                    return Ok(Filter::All(group(items, "and")?));
                }
                if let Some(items) = map.get("or") {
                    return Ok(Filter::Any(group(items, "or")?));
                }
            }
            *conditions += 1;
            if *conditions > MAX_CONDITIONS {
                return Err(format!("the filter has too many conditions (at most {MAX_CONDITIONS})"));
            }
            parse_condition(map)
        }
        other => Err(format!(
            "a filter is a condition {{\"column\": ..., \"op\": ..., \"value\": ...}}, an {{\"and\": [...]}} or an {{\"or\": [...]}}, not {}",
            json_text(other)
        )),
    }
}

fn parse_condition(map: &serde_json::Map<String, Value>) -> Result<Filter, String> {
    if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "column" | "op" | "value")) {
        return Err(format!(
            "unknown key {} in a filter condition: a condition has column, op and value",
            json_text(&Value::from(unknown.as_str()))
        ));
    }
    let column = match map.get("column") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err("a filter condition needs \"column\": the column's name".into()),
    };
    let op = match map.get("op") {
        Some(Value::String(name)) => Op::parse(name)?,
        _ => return Err(format!("the condition on {} needs \"op\", such as \"eq\"", json_text(&Value::from(column)))),
    };
    let value = map.get("value").cloned().unwrap_or(Value::Null);
    if op.takes_value() && value.is_null() {
        return Err(format!(
            "the condition on {} needs a value; to find empty cells use \"is_null\"",
            json_text(&Value::from(column))
        ));
    }
    if !op.takes_value() && !value.is_null() {
        return Err(format!("{} takes no value", if op == Op::IsNull { "is_null" } else { "not_null" }));
    }
    if op == Op::In {
        match &value {
            Value::Array(items) if !items.is_empty() && items.len() <= MAX_IN_VALUES => {}
            _ => return Err(format!("\"in\" takes an array of 1 to {MAX_IN_VALUES} values")),
        }
    }
    Ok(Filter::Condition { column, op, value })
}

pub fn parse_sort(value: &Value) -> Result<Vec<SortItem>, String> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        other => return Err(format!("sort is an array of {{\"column\": ..., \"direction\": ...}}, not {}", json_text(other))),
    };
    if items.len() > MAX_SORT_COLUMNS {
        return Err(format!("sort on at most {MAX_SORT_COLUMNS} columns"));
    }
    let mut sort: Vec<SortItem> = Vec::new();
    for item in items {
        let map = item
            .as_object()
            .ok_or_else(|| format!("each sort entry is {{\"column\": ..., \"direction\": ...}}, not {}", json_text(item)))?;
        if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "column" | "direction" | "nulls")) {
            return Err(format!("unknown key {} in a sort entry: use column, direction and nulls", json_text(&Value::from(unknown.as_str()))));
        }
        let column = match map.get("column") {
            Some(Value::String(name)) => name.clone(),
            _ => return Err("each sort entry needs \"column\"".into()),
        };
        let descending = match map.get("direction").and_then(Value::as_str) {
            None if map.get("direction").is_none_or(Value::is_null) => false,
            Some("asc") => false,
            Some("desc") => true,
            _ => return Err(format!("sort direction is \"asc\" or \"desc\", not {}", json_text(&map["direction"]))),
        };
        // Postgres's defaults: NULLs sort as if larger than every value.
        let nulls_first = match map.get("nulls").and_then(Value::as_str) {
            None if map.get("nulls").is_none_or(Value::is_null) => descending,
            Some("first") => true,
            Some("last") => false,
            _ => return Err(format!("sort nulls is \"first\" or \"last\", not {}", json_text(&map["nulls"]))),
        };
        if sort.iter().any(|s| s.column == column) {
            return Err(format!("column {} is in the sort twice", json_text(&Value::from(column))));
        }
        sort.push(SortItem { column, descending, nulls_first });
    }
    Ok(sort)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_nest_and_conditions_parse() {
        let parsed = parse_filter(&json!({"or": [
            {"column": "a", "op": "eq", "value": 1},
            [{"column": "b", "op": "is_null"}, {"column": "c", "op": "in", "value": ["x", "y"]}]
        ]}))
        .unwrap()
        .unwrap();
        let Filter::Any(items) = parsed else { panic!("an or") };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[1], Filter::All(inner) if inner.len() == 2));
        assert_eq!(parse_filter(&json!([])).unwrap(), None);
        assert_eq!(parse_filter(&Value::Null).unwrap(), None);
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let err = |v: Value| parse_filter(&v).unwrap_err();
        assert!(err(json!({"column": "a", "op": "between", "value": 1})).contains("unknown filter operator \"between\""));
        assert!(err(json!({"column": "a", "op": "eq"})).contains("needs a value"));
        assert!(err(json!({"column": "a", "op": "is_null", "value": 3})).contains("takes no value"));
        assert!(err(json!({"column": "a", "op": "in", "value": []})).contains("array of 1 to"));
        assert!(err(json!({"and": []})).contains("at least one"));
        assert!(err(json!({"column": "a", "op": "eq", "value": 1, "sql": "1=1"})).contains("unknown key \"sql\""));
        assert!(err(json!("a = 1")).contains("a filter is a condition"));
        let mut deep = json!({"column": "a", "op": "is_null"});
        for _ in 0..MAX_FILTER_DEPTH {
            deep = json!({"and": [deep]});
        }
        assert!(err(deep).contains("nested too deeply"));
    }

    #[test]
    fn sort_defaults_follow_postgres() {
        let sort = parse_sort(&json!([{"column": "a"}, {"column": "b", "direction": "desc"},
                                      {"column": "c", "direction": "asc", "nulls": "first"}]))
        .unwrap();
        assert_eq!(
            sort,
            vec![
                SortItem { column: "a".into(), descending: false, nulls_first: false },
                SortItem { column: "b".into(), descending: true, nulls_first: true },
                SortItem { column: "c".into(), descending: false, nulls_first: true },
            ]
        );
        assert!(parse_sort(&json!([{"column": "a"}, {"column": "a"}])).unwrap_err().contains("twice"));
        assert!(parse_sort(&json!([{"column": "a", "direction": "up"}])).unwrap_err().contains("\"asc\" or \"desc\""));
    }
}
