//! The one place where browse SQL is written. Identifiers come from the relation's
//! shape (the catalogs) and are always quoted; every value from a request is bound as
//! an element of the single text[] parameter `$1` and cast to its column's base type;
//! operators are the ones of the column type's default btree operator class, named
//! with their schema. No string from a request is ever part of the SQL text.

use super::cursor::{self, Position};
use super::request::{json_text, Filter, Op, SortItem};
use super::shape::{quote_ident, Column, Shape};
use serde_json::{json, Value};

/// Pages hold 1 to this many rows.
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Text, JSON, arrays and XML longer than this many characters (bytea: bytes) come cut short.
pub const PREVIEW_LENGTH: i64 = 2000;
/// Exact counts stop here ("more than 100,000").
pub const COUNT_CAP: i64 = 100_000;

pub struct Request {
    pub filter: Option<Filter>,
    pub sort: Vec<SortItem>,
    pub search: Option<String>,
    pub page_size: i64,
    pub cursor: Option<String>,
}

/// Values bound so far, and the checks that name a column when a value does not fit it.
#[derive(Default)]
pub(super) struct Bindings {
    /// The values; None binds NULL.
    pub(super) params: Vec<Option<String>>,
    pub(super) checks: Vec<Value>,
    /// Field errors found while building (edits): reported together with the checks'.
    pub(super) errors: Vec<Value>,
}

impl Bindings {
    /// `$1[n]`: the value as text.
    fn text(&mut self, value: String) -> String {
        self.params.push(Some(value));
        format!("$1[{}]", self.params.len())
    }

    /// `$1[n]::type`: the value cast to the column's base type.
    pub(super) fn typed(&mut self, value: String, column: &Column) -> String {
        self.typed_as(Some(value), column, &column.cast)
    }

    /// `$1[n]::cast`, checked before anything runs as a value of `column` (None: NULL,
    /// which a NOT NULL domain refuses).
    pub(super) fn typed_as(&mut self, value: Option<String>, column: &Column, cast: &str) -> String {
        self.params.push(value);
        let param = format!("$1[{}]", self.params.len());
        self.checks.push(json!({
            "param": self.params.len(), "column": column.name, "type": column.display_type, "cast": cast,
        }));
        format!("{param}::{cast}")
    }
}

pub(super) fn col(column: &Column) -> String {
    format!("t.{}", quote_ident(&column.name))
}

/// A request value as the text Postgres reads for the column's type. JSON numbers and
/// booleans become their text; objects and arrays are JSON text for json columns, and
/// array literals for array columns.
pub(super) fn value_text(column: &Column, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(format!("column {}: compare with a value, or use is_null", quote_ident(&column.name))),
        Value::Object(_) | Value::Array(_) if column.is_json() => Ok(value.to_string()),
        Value::Array(items) if column.is_array() => Ok(array_literal(items)),
        _ => Err(format!(
            "column {} ({}) takes a single value, not {}",
            quote_ident(&column.name),
            column.display_type,
            json_text(value)
        )),
    }
}

/// `{"a","b \"c\"",NULL}`: every element quoted, so that any text survives.
fn array_literal(items: &[Value]) -> String {
    let elements: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_string(),
            Value::Array(inner) => array_literal(inner),
            Value::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            other => format!("\"{}\"", other.to_string().replace('\\', "\\\\").replace('"', "\\\"")),
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

fn condition(shape: &Shape, b: &mut Bindings, name: &str, op: Op, value: &Value) -> Result<String, String> {
    let column = shape.column(name)?;
    let lhs = col(column);
    let compare = |b: &mut Bindings, operator: &str| -> Result<String, String> {
        Ok(format!("{lhs} {operator} {}", b.typed(value_text(column, value)?, column)))
    };
    Ok(match op {
        Op::IsNull => format!("{lhs} IS NULL"),
        Op::NotNull => format!("{lhs} IS NOT NULL"),
        Op::Eq => compare(b, &column.operators()?.eq)?,
        Op::Lt => compare(b, &column.operators()?.lt)?,
        Op::Lte => compare(b, &column.operators()?.le)?,
        Op::Gt => compare(b, &column.operators()?.gt)?,
        Op::Gte => compare(b, &column.operators()?.ge)?,
        Op::Neq => match &column.operators()?.ne {
            Some(ne) => compare(b, ne)?,
            None => format!("NOT ({})", compare(b, &column.operators()?.eq)?),
        },
        Op::In => {
            let eq = &column.operators()?.eq;
            let items = value.as_array().expect("parse_filter checked that in takes an array");
            let values = items
                .iter()
                .map(|item| Ok(b.typed(value_text(column, item)?, column)))
                .collect::<Result<Vec<_>, String>>()?;
            format!("{lhs} {eq} ANY (ARRAY[{}])", values.join(", "))
        }
        Op::Like | Op::Ilike => {
            if !column.is_text() {
                return Err(format!(
                    "like and ilike work on text columns; {} is {}",
                    quote_ident(&column.name),
                    column.display_type
                ));
            }
            let pattern = match value {
                Value::String(s) => b.text(s.clone()),
                other => return Err(format!("a like pattern is a string, not {}", json_text(other))),
            };
            let operator = if op == Op::Like { "OPERATOR(pg_catalog.~~)" } else { "OPERATOR(pg_catalog.~~*)" };
            format!("{lhs} {operator} {pattern}")
        }
        Op::Contains => {
            if !(column.base == "jsonb" || column.is_array()) {
                return Err(format!(
                    "contains works on jsonb and array columns; {} is {}",
                    quote_ident(&column.name),
                    column.display_type
                ));
            }
            compare(b, "OPERATOR(pg_catalog.@>)")?
        }
    })
}

pub(super) fn filter_sql(shape: &Shape, b: &mut Bindings, filter: &Filter) -> Result<String, String> {
    let group = |b: &mut Bindings, items: &[Filter], joiner: &str| -> Result<String, String> {
        let parts = items.iter().map(|f| filter_sql(shape, b, f)).collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", parts.join(joiner)))
    };
    match filter {
        Filter::All(items) => group(b, items, " AND "),
        Filter::Any(items) => group(b, items, " OR "),
        Filter::Condition { column, op, value } => Ok(format!("({})", condition(shape, b, column, *op, value)?)),
    }
}

/// `ILIKE '%term%'` over every text-like column, with the term's wildcards escaped.
fn search_sql(shape: &Shape, b: &mut Bindings, term: &str) -> Result<String, String> {
    let columns: Vec<&Column> = shape.columns.iter().filter(|c| c.is_text()).collect();
    if columns.is_empty() {
        return Err(format!("{} has no text columns to search", shape.qualified_name()));
    }
    let escaped = term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let pattern = b.text(format!("%{escaped}%"));
    let parts: Vec<String> =
        columns.iter().map(|c| format!("{} OPERATOR(pg_catalog.~~*) {pattern}", col(c))).collect();
    Ok(format!("({})", parts.join(" OR ")))
}

/// Columns equal to one value in every row the filter keeps: an index may start with
/// them and still match the sort.
fn pinned_columns(filter: Option<&Filter>) -> Vec<&str> {
    match filter {
        Some(Filter::Condition { column, op: Op::Eq, .. }) => vec![column.as_str()],
        Some(Filter::All(items)) => items.iter().flat_map(|f| pinned_columns(Some(f))).collect(),
        _ => Vec::new(),
    }
}

/// The index that returns rows in `order` (or exactly reversed), after any leading
/// columns the filter pins to one value.
fn matching_index<'a>(shape: &'a Shape, order: &[SortItem], pinned: &[&str]) -> Option<&'a str> {
    shape.indexes.iter().find_map(|index| {
        let mut columns = index.columns.iter().peekable();
        while columns.peek().is_some_and(|c| c.name.as_deref().is_some_and(|n| pinned.contains(&n))) {
            columns.next();
        }
        let rest: Vec<_> = columns.collect();
        let skipped = index.columns.len() - rest.len();
        // A column the filter pins has one value, so where the order puts it does not
        // matter (`WHERE note = $1 ORDER BY note, id` is served by an index on (note, id)).
        let order: Vec<&SortItem> = order.iter().filter(|o| !pinned.contains(&o.column.as_str())).collect();
        if order.is_empty() {
            return (skipped > 0).then_some(index.name.as_str());
        }
        if rest.len() < order.len() {
            return None;
        }
        let same = |reverse: bool| {
            order.iter().zip(&rest).all(|(item, ic)| {
                ic.name.as_deref() == Some(item.column.as_str())
                    && (ic.descending != reverse) == item.descending
                    && (ic.nulls_first != reverse) == item.nulls_first
            })
        };
        (same(false) || same(true)).then_some(index.name.as_str())
    })
}

fn order_by_sql(shape: &Shape, order: &[SortItem]) -> Result<String, String> {
    let parts = order
        .iter()
        .map(|item| {
            let column = shape.column(&item.column)?;
            column.operators()?;
            Ok(format!(
                "{} {} NULLS {}",
                col(column),
                if item.descending { "DESC" } else { "ASC" },
                if item.nulls_first { "FIRST" } else { "LAST" }
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(parts.join(", "))
}

/// Rows strictly after `values` in `order`. A row comes after when it ties on the first
/// k columns and comes after on column k+1; NULLs sort where `nulls_first` puts them.
fn keyset_sql(shape: &Shape, b: &mut Bindings, order: &[SortItem], values: &[Option<String>]) -> Result<String, String> {
    let columns = order.iter().map(|item| shape.column(&item.column)).collect::<Result<Vec<_>, _>>()?;
    let all_not_null = columns.iter().all(|c| c.not_null) && values.iter().all(Option::is_some);
    let one_direction = order.iter().all(|item| item.descending == order[0].descending);
    let same_operators = columns.iter().all(|c| c.operators().map(|o| &o.gt).ok() == columns[0].operators().map(|o| &o.gt).ok());
    if all_not_null && one_direction && same_operators {
        // A row comparison: a btree index on these columns starts right at the cursor.
        let ops = columns[0].operators()?;
        let op = if order[0].descending { &ops.lt } else { &ops.gt };
        let lhs: Vec<String> = columns.iter().map(|c| col(c)).collect();
        let rhs: Vec<String> = columns
            .iter()
            .zip(values)
            .map(|(c, v)| b.typed(v.clone().expect("all values are set"), c))
            .collect();
        return Ok(format!("(ROW({}) {op} ROW({}))", lhs.join(", "), rhs.join(", ")));
    }
    let mut disjuncts = Vec::new();
    let mut ties: Vec<String> = Vec::new();
    let mut first_bound = None;
    for ((item, column), value) in order.iter().zip(&columns).zip(values) {
        let ops = column.operators()?;
        let c = col(column);
        let (after, equal) = match value {
            None => (item.nulls_first.then(|| format!("{c} IS NOT NULL")), format!("{c} IS NULL")),
            Some(v) => {
                let bound = b.typed(v.clone(), column);
                first_bound.get_or_insert_with(|| bound.clone());
                let cmp = if item.descending { &ops.lt } else { &ops.gt };
                let after = if item.nulls_first || column.not_null {
                    format!("{c} {cmp} {bound}")
                } else {
                    format!("({c} {cmp} {bound} OR {c} IS NULL)")
                };
                (Some(after), format!("{c} {} {bound}", ops.eq))
            }
        };
        if let Some(after) = after {
            let mut conjuncts = ties.clone();
            conjuncts.push(after);
            disjuncts.push(format!("({})", conjuncts.join(" AND ")));
        }
        ties.push(equal);
    }
    if disjuncts.is_empty() {
        return Ok("false".into());
    }
    // A bound on the first column alone lets an index start near the cursor.
    let lead = match (&values[0], columns[0].not_null, first_bound) {
        (Some(_), true, Some(bound)) => {
            let ops = columns[0].operators()?;
            let op = if order[0].descending { &ops.le } else { &ops.ge };
            format!("{} {op} {bound} AND ", col(columns[0]))
        }
        _ => String::new(),
    };
    Ok(format!("({lead}({}))", disjuncts.join(" OR ")))
}

/// A column's value in a page: large values cut to a preview, as JSON.
fn page_value(column: &Column) -> (String, Option<String>) {
    let c = col(column);
    if !column.can_be_large() {
        return (c, None);
    }
    let (long, preview, length) = if column.base == "bytea" {
        let size = format!("pg_catalog.octet_length({c})");
        (format!("{size} > {PREVIEW_LENGTH}"), format!("pg_catalog.substr({c}, 1, {PREVIEW_LENGTH})"), size)
    } else {
        let text = format!("({c})::pg_catalog.text");
        (
            // The byte length is known without reading a stored value; characters are
            // counted only when the bytes say it may be long.
            format!("pg_catalog.octet_length({text}) > {PREVIEW_LENGTH} AND pg_catalog.char_length({text}) > {PREVIEW_LENGTH}"),
            format!("pg_catalog.left({text}, {PREVIEW_LENGTH})"),
            format!("pg_catalog.char_length({text})"),
        )
    };
    (
        format!("CASE WHEN {long} THEN pg_catalog.to_jsonb({preview}) ELSE pg_catalog.to_jsonb({c}) END"),
        Some(format!("CASE WHEN {long} THEN {length} END")),
    )
}

/// A sort value as text that reads back the same in any session: dates and times in
/// ISO 8601 (their JSON form), whatever the DateStyle; everything else in its text form.
fn position_text(column: &Column) -> String {
    if column.category == "D" {
        format!("(pg_catalog.to_jsonb({}) OPERATOR(pg_catalog.#>>) '{{}}'::pg_catalog.text[])", col(column))
    } else {
        format!("({})::pg_catalog.text", col(column))
    }
}

/// Without a key, rows that tie on the sort could come back in a different order for
/// each OFFSET, and pages would repeat and skip rows even while nothing changes. The
/// row's address breaks ties in a table; in a view, every comparable column does.
fn tie_breakers(shape: &Shape, order: &[SortItem]) -> Vec<String> {
    match shape.kind.as_str() {
        "table" | "materialized_view" => vec!["t.ctid".into()],
        "partitioned_table" => vec!["t.tableoid".into(), "t.ctid".into()],
        _ => shape
            .columns
            .iter()
            .filter(|c| c.ops.is_some() && !order.iter().any(|o| o.column == c.name))
            .map(col)
            .collect(),
    }
}

/// A column as one CSV field: NULL is empty, every other value is quoted, so that an
/// empty string and NULL differ as they do in COPY ... CSV.
fn csv_field(column: &Column) -> String {
    let c = col(column);
    format!("CASE WHEN {c} IS NULL THEN '' ELSE '\"' || pg_catalog.replace(({c})::pg_catalog.text, '\"', '\"\"') || '\"' END")
}

pub fn csv_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A notice that a condition or sort entry names a column the relation no longer has.
fn missing_column_notice(shape: &Shape, code: &str, column: &str, notices: &mut Vec<Value>) {
    if notices.iter().any(|n| n["code"] == code && n["column"] == column) {
        return;
    }
    let what = if code == "filter_dropped" { "the filter on it was left out" } else { "the sort on it was left out" };
    notices.push(json!({
        "code": code, "column": column,
        "message": format!("{} has no column {}: {what}", shape.qualified_name(), quote_ident(column)),
    }));
}

/// The filter without its conditions on columns the relation no longer has (a page saved
/// before a column was dropped still opens); a group left empty goes too. Each dropped
/// column is a notice.
fn without_missing_columns(shape: &Shape, filter: &Filter, notices: &mut Vec<Value>) -> Option<Filter> {
    match filter {
        Filter::Condition { column, .. } if shape.column(column).is_err() => {
            missing_column_notice(shape, "filter_dropped", column, notices);
            None
        }
        Filter::Condition { .. } => Some(filter.clone()),
        Filter::All(items) | Filter::Any(items) => {
            let kept: Vec<Filter> = items.iter().filter_map(|f| without_missing_columns(shape, f, notices)).collect();
            match (kept.is_empty(), filter) {
                (true, _) => None,
                (false, Filter::All(_)) => Some(Filter::All(kept)),
                (false, _) => Some(Filter::Any(kept)),
            }
        }
    }
}

/// The order reversed: the rows before a position, nearest first.
fn reversed(order: &[SortItem]) -> Vec<SortItem> {
    order
        .iter()
        .map(|o| SortItem { column: o.column.clone(), descending: !o.descending, nulls_first: !o.nulls_first })
        .collect()
}

/// The statements for one browse request, with their parameters.
pub fn build(shape: &Shape, request: &Request) -> Result<Value, String> {
    if !(1..=MAX_PAGE_SIZE).contains(&request.page_size) {
        return Err(format!("page_size is between 1 and {MAX_PAGE_SIZE}, not {}", request.page_size));
    }
    let mut notices = Vec::new();
    let filter = request.filter.as_ref().and_then(|f| without_missing_columns(shape, f, &mut notices));
    let mut sort = Vec::new();
    for item in &request.sort {
        if shape.column(&item.column).is_ok() {
            sort.push(item.clone());
        } else {
            missing_column_notice(shape, "sort_dropped", &item.column, &mut notices);
        }
    }
    let mut b = Bindings::default();
    let mut conditions = Vec::new();
    if let Some(filter) = &filter {
        conditions.push(filter_sql(shape, &mut b, filter)?);
    }
    if let Some(term) = request.search.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        if term.chars().count() > 1000 {
            return Err("the search term is longer than 1,000 characters".into());
        }
        conditions.push(search_sql(shape, &mut b, term)?);
    }
    for item in &sort {
        shape.column(&item.column)?.operators()?;
    }
    let filter_where = if conditions.is_empty() { "true".to_string() } else { conditions.join(" AND ") };

    // The order: the requested sort, then the key's columns, so that it is total.
    let mut order = sort;
    if let Some(key) = &shape.key {
        for name in &key.columns {
            if !order.iter().any(|o| &o.column == name) {
                order.push(SortItem { column: name.clone(), descending: false, nulls_first: false });
            }
        }
    }
    let foreign_order = order
        .iter()
        .map(|o| shape.column(&o.column))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|c| !c.builtin_order);
    let (method, mut note) = match (&shape.key, foreign_order) {
        (None, _) => ("offset", Some(format!(
            "{} has no primary key or unique NOT NULL key: pages come by offset, which slows with depth and can skip or repeat rows while the data changes",
            shape.qualified_name()))),
        (Some(_), Some(c)) => ("offset", Some(format!(
            "column {} ({}) sorts with an operator class from outside pg_catalog: pages come by offset, which slows with depth",
            quote_ident(&c.name), c.display_type))),
        _ => ("keyset", None),
    };
    let pinned = pinned_columns(filter.as_ref());
    let index = if method == "keyset" { matching_index(shape, &order, &pinned) } else { None };
    if method == "keyset" && index.is_none() {
        note = Some("no index matches this sort: each page reads and sorts all the matching rows, so pages slow down as the table grows".into());
    }
    let signature = json!([
        shape.schema,
        shape.name,
        order.iter().map(|o| json!([o.column, o.descending, o.nulls_first])).collect::<Vec<_>>(),
        method
    ]);

    let mut page_where = filter_where.clone();
    let mut offset = None;
    // A page before a position reads the reversed order from it; read_page turns its
    // rows around.
    let mut backward = false;
    if let Some(text) = &request.cursor {
        match cursor::decode(text, &signature)? {
            Position::After(values) if method == "keyset" && values.len() == order.len() => {
                page_where = format!("{page_where} AND {}", keyset_sql(shape, &mut b, &order, &values)?);
            }
            Position::Before(values) if method == "keyset" && values.len() == order.len() => {
                page_where = format!("{page_where} AND {}", keyset_sql(shape, &mut b, &reversed(&order), &values)?);
                backward = true;
            }
            Position::Offset(rows) if method == "offset" => offset = Some(rows),
            _ => return Err(cursor::decode("", &Value::Null).unwrap_err()),
        }
    }

    let relation = shape.qualified_name();
    let mut order_terms = if order.is_empty() { Vec::new() } else { vec![order_by_sql(shape, &order)?] };
    if shape.key.is_none() {
        order_terms.extend(tie_breakers(shape, &order));
    }
    let order_by = if order_terms.is_empty() { String::new() } else { format!(" ORDER BY {}", order_terms.join(", ")) };
    let page_order_by = if backward { format!(" ORDER BY {}", order_by_sql(shape, &reversed(&order))?) } else { order_by.clone() };
    let mut values = Vec::new();
    let mut lengths = Vec::new();
    for column in &shape.columns {
        let (value, length) = page_value(column);
        values.push(format!("{value} AS {}", quote_ident(&column.name)));
        if let Some(length) = length {
            lengths.push(format!("{length} AS {}", quote_ident(&column.name)));
        }
    }
    let (lengths_join, lengths_value) = if lengths.is_empty() {
        (String::new(), "'{}'::pg_catalog.jsonb".to_string())
    } else {
        (
            format!(" CROSS JOIN LATERAL (SELECT {}) AS l", lengths.join(", ")),
            "pg_catalog.jsonb_strip_nulls(pg_catalog.to_jsonb(l.*))".to_string(),
        )
    };
    let positions: Vec<String> = if method == "keyset" {
        order.iter().map(|o| shape.column(&o.column).map(position_text)).collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let page_sql = format!(
        "SELECT pg_catalog.to_jsonb(v.*) AS row_values, {lengths_value} AS lengths, ARRAY[{}]::pg_catalog.text[] AS position \
         FROM {relation} AS t CROSS JOIN LATERAL (SELECT {}) AS v{lengths_join} WHERE {page_where}{page_order_by} LIMIT {}{}",
        positions.join(", "),
        values.join(", "),
        request.page_size + 1,
        offset.map(|n| format!(" OFFSET {n}")).unwrap_or_default(),
    );
    let csv: Vec<String> = shape.columns.iter().map(csv_field).collect();
    let export_sql = format!(
        "SELECT {} AS line FROM {relation} AS t WHERE {filter_where}{order_by}",
        if csv.is_empty() { "''".to_string() } else { csv.join(" || ',' || ") }
    );
    // One JSON object a line: jsonb's text has no line breaks, whatever the values hold.
    let export_jsonl_sql =
        format!("SELECT pg_catalog.to_jsonb(t.*)::pg_catalog.text AS line FROM {relation} AS t WHERE {filter_where}{order_by}");
    Ok(json!({
        "schema": shape.schema,
        "name": shape.name,
        "kind": shape.kind,
        "estimated_rows": shape.estimated_rows,
        "columns": shape.columns.iter().map(|c| json!({
            "name": c.name, "type": c.display_type, "category": c.category, "base": c.base,
            "sortable": c.ops.is_some(), "filter_ops": c.filter_ops(),
        })).collect::<Vec<_>>(),
        "params": b.params,
        "checks": b.checks,
        "page_size": request.page_size,
        "first_page": request.cursor.is_none(),
        "backward": backward,
        "offset": offset,
        "notices": notices,
        "signature": signature,
        "page_sql": page_sql,
        "count_sql": format!("SELECT pg_catalog.count(*) FROM (SELECT FROM {relation} AS t WHERE {filter_where} LIMIT {}) AS capped", COUNT_CAP + 1),
        "count_cap": COUNT_CAP,
        "estimate_sql": format!("EXPLAIN (FORMAT JSON) SELECT FROM {relation} AS t WHERE {filter_where}"),
        "export_sql": export_sql,
        "export_jsonl_sql": export_jsonl_sql,
        "export_header": shape.columns.iter().map(|c| csv_quote(&c.name)).collect::<Vec<_>>().join(","),
        "paging": {
            "method": method,
            "order": order.iter().map(|o| json!({
                "column": o.column,
                "direction": if o.descending { "desc" } else { "asc" },
                "nulls": if o.nulls_first { "first" } else { "last" },
            })).collect::<Vec<_>>(),
            "key": shape.key.as_ref().map(|k| &k.columns),
            "key_source": shape.key.as_ref().map(|k| &k.source),
            "read_only_reason": super::edits::read_only_reason(shape),
            "index": index,
            "note": note,
        },
    }))
}

/// The cursor of the page before this one: before `position`, its first row (keyset), or
/// the offset a page back; None on the first page of an offset.
pub fn prev_cursor(plan: &Value, position: &[Option<String>]) -> Option<String> {
    let signature = &plan["signature"];
    if plan["paging"]["method"] == "keyset" {
        Some(cursor::encode(signature, &Position::Before(position.to_vec())))
    } else {
        let offset = plan["offset"].as_i64().unwrap_or(0);
        (offset > 0).then(|| cursor::encode(signature, &Position::Offset((offset - plan["page_size"].as_i64().unwrap_or(0)).max(0))))
    }
}

/// The cursor of the page after this one: after `position` (keyset) or the next offset.
pub fn next_cursor(plan: &Value, position: &[Option<String>]) -> String {
    let signature = &plan["signature"];
    if plan["paging"]["method"] == "keyset" {
        cursor::encode(signature, &Position::After(position.to_vec()))
    } else {
        let offset = plan["offset"].as_i64().unwrap_or(0) + plan["page_size"].as_i64().unwrap_or(0);
        cursor::encode(signature, &Position::Offset(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explorer::request::{parse_filter, parse_sort};

    fn shape() -> Shape {
        let ops = |schema: &str| {
            json!({"eq": format!("OPERATOR(\"{schema}\".=)"), "ne": format!("OPERATOR(\"{schema}\".<>)"),
                   "lt": format!("OPERATOR(\"{schema}\".<)"), "le": format!("OPERATOR(\"{schema}\".<=)"),
                   "gt": format!("OPERATOR(\"{schema}\".>)"), "ge": format!("OPERATOR(\"{schema}\".>=)")})
        };
        serde_json::from_value(json!({
            "schema": "shop", "name": "or\"ders", "kind": "table", "estimated_rows": 10,
            "columns": [
                {"name": "id", "type": "bigint", "cast": "\"pg_catalog\".\"int8\"", "category": "N", "base": "int8",
                 "not_null": true, "ops": ops("pg_catalog"), "builtin_order": true},
                {"name": "note", "type": "text", "cast": "\"pg_catalog\".\"text\"", "category": "S", "base": "text",
                 "not_null": false, "ops": ops("pg_catalog"), "builtin_order": true},
                {"name": "tags", "type": "text[]", "cast": "\"pg_catalog\".\"_text\"", "category": "A", "base": "_text",
                 "not_null": false, "ops": ops("pg_catalog"), "builtin_order": true},
                {"name": "doc", "type": "json", "cast": "\"pg_catalog\".\"json\"", "category": "U", "base": "json",
                 "not_null": false, "ops": null},
                {"name": "email", "type": "citext", "cast": "\"public\".\"citext\"", "category": "S", "base": "citext",
                 "not_null": false, "ops": ops("public"), "builtin_order": false}
            ],
            "key": {"columns": ["id"], "source": "primary key"},
            "indexes": [{"name": "by_note", "columns": [
                {"name": "note", "descending": true, "nulls_first": true},
                {"name": "id", "descending": true, "nulls_first": true}]}]
        }))
        .unwrap()
    }

    fn request(filter: Value, sort: Value, cursor: Option<String>) -> Request {
        Request {
            filter: parse_filter(&filter).unwrap(),
            sort: parse_sort(&sort).unwrap(),
            search: None,
            page_size: 10,
            cursor,
        }
    }

    #[test]
    fn values_are_bound_and_never_in_the_sql() {
        let hostile = "x'); DROP TABLE shop.orders; --";
        let plan = build(&shape(), &request(json!({"column": "note", "op": "eq", "value": hostile}), Value::Null, None)).unwrap();
        assert!(!plan["page_sql"].as_str().unwrap().contains("DROP"));
        assert_eq!(plan["params"], json!([hostile]));
        assert!(plan["page_sql"].as_str().unwrap().contains("t.\"note\" OPERATOR(\"pg_catalog\".=) $1[1]::\"pg_catalog\".\"text\""));
        assert!(plan["page_sql"].as_str().unwrap().contains("FROM \"shop\".\"or\"\"ders\" AS t"));
        assert_eq!(plan["checks"][0]["column"], "note");
    }

    #[test]
    fn array_values_become_array_literals() {
        assert_eq!(array_literal(&[json!("a"), json!("b\"c"), Value::Null, json!(3)]), r#"{"a","b\"c",NULL,"3"}"#);
        let plan = build(&shape(), &request(json!({"column": "tags", "op": "contains", "value": ["x,y", "z\\"]}), Value::Null, None)).unwrap();
        assert_eq!(plan["params"], json!([r#"{"x,y","z\\"}"#]));
    }

    #[test]
    fn requests_that_do_not_fit_the_relation_are_refused() {
        let err = |filter: Value, sort: Value| build(&shape(), &request(filter, sort, None)).unwrap_err();
        assert!(err(json!({"column": "id", "op": "like", "value": "1%"}), Value::Null).contains("text columns"));
        assert!(err(json!({"column": "note", "op": "contains", "value": "x"}), Value::Null).contains("jsonb and array"));
        assert!(err(json!({"column": "doc", "op": "eq", "value": "{}"}), Value::Null).contains("cannot be compared"));
        assert!(err(Value::Null, json!([{"column": "doc"}])).contains("cannot be compared or sorted"));
        assert!(err(json!({"column": "id", "op": "eq", "value": [1, 2]}), Value::Null).contains("single value"));
    }

    #[test]
    fn filters_and_sorts_on_missing_columns_are_dropped_with_a_notice() {
        let filter = json!({"and": [{"column": "gone", "op": "eq", "value": 1},
                                    {"or": [{"column": "gone", "op": "is_null"}, {"column": "old", "op": "eq", "value": 2}]},
                                    {"column": "note", "op": "eq", "value": "x"}]});
        let plan = build(&shape(), &request(filter, json!([{"column": "old"}, {"column": "id", "direction": "desc"}]), None)).unwrap();
        assert_eq!(plan["params"], json!(["x"]));
        let notices: Vec<(&str, &str)> = plan["notices"].as_array().unwrap().iter()
            .map(|n| (n["code"].as_str().unwrap(), n["column"].as_str().unwrap())).collect();
        assert_eq!(notices, [("filter_dropped", "gone"), ("filter_dropped", "old"), ("sort_dropped", "old")]);
        assert!(plan["notices"][0]["message"].as_str().unwrap().contains("has no column \"gone\""));
        assert_eq!(plan["paging"]["order"], json!([{"column": "id", "direction": "desc", "nulls": "first"}]));
        // A column that exists but cannot be compared is still an error.
        assert!(build(&shape(), &request(json!({"column": "doc", "op": "eq", "value": "{}"}), Value::Null, None)).is_err());
    }

    #[test]
    fn a_page_before_a_position_reads_the_reversed_order_from_it() {
        let sort = json!([{"column": "note", "direction": "asc", "nulls": "last"}]);
        let first = build(&shape(), &request(Value::Null, sort.clone(), None)).unwrap();
        assert_eq!(first["backward"], false);
        let cursor = prev_cursor(&first, &[Some("m".into()), Some("7".into())]).unwrap();
        let plan = build(&shape(), &request(Value::Null, sort, Some(cursor))).unwrap();
        assert_eq!(plan["backward"], true);
        let sql = plan["page_sql"].as_str().unwrap();
        // Before "m" (nulls last): smaller notes, or the same note and a smaller id; no NULLs.
        assert!(sql.contains("(t.\"note\" OPERATOR(\"pg_catalog\".<) $1[1]::\"pg_catalog\".\"text\")"), "{sql}");
        assert!(sql.contains("t.\"id\" OPERATOR(\"pg_catalog\".<) $1[2]"), "{sql}");
        assert!(sql.contains("ORDER BY t.\"note\" DESC NULLS FIRST, t.\"id\" DESC NULLS FIRST LIMIT 11"), "{sql}");
        // Offsets: a page back, never below 0; none from the first page.
        let by_email = build(&shape(), &request(Value::Null, json!([{"column": "email"}]), None)).unwrap();
        assert_eq!(prev_cursor(&by_email, &[]), None);
        let third = build(&shape(), &request(Value::Null, json!([{"column": "email"}]), Some(cursor::encode(&by_email["signature"], &Position::Offset(25))))).unwrap();
        let back = build(&shape(), &request(Value::Null, json!([{"column": "email"}]), prev_cursor(&third, &[]))).unwrap();
        assert!(back["page_sql"].as_str().unwrap().ends_with("LIMIT 11 OFFSET 15"));
    }

    #[test]
    fn an_index_in_the_same_or_reverse_order_matches() {
        let sort = |s: Value| parse_sort(&s).unwrap();
        let mut order = sort(json!([{"column": "note", "direction": "desc"}, {"column": "id", "direction": "desc"}]));
        assert_eq!(matching_index(&shape(), &order, &[]), Some("by_note"));
        order = sort(json!([{"column": "note"}, {"column": "id"}]));
        assert_eq!(matching_index(&shape(), &order, &[]), Some("by_note"));
        order = sort(json!([{"column": "note", "nulls": "first"}, {"column": "id"}]));
        assert_eq!(matching_index(&shape(), &order, &[]), None);
        order = sort(json!([{"column": "id", "direction": "desc"}]));
        assert_eq!(matching_index(&shape(), &order, &["note"]), Some("by_note"));
        // A pinned column anywhere in the order is no obstacle; the key alone, pinned,
        // needs an index that starts with it.
        order = sort(json!([{"column": "note", "direction": "desc"}, {"column": "id", "direction": "desc"}]));
        assert_eq!(matching_index(&shape(), &order, &["note"]), Some("by_note"));
        order = sort(json!([{"column": "id"}]));
        assert_eq!(matching_index(&shape(), &order, &["id"]), None);
        assert_eq!(matching_index(&shape(), &order, &["note", "id"]), Some("by_note"));
    }

    #[test]
    fn keyset_pages_follow_nulls_and_directions() {
        let first = build(&shape(), &request(Value::Null, json!([{"column": "note", "direction": "desc", "nulls": "last"}]), None)).unwrap();
        assert_eq!(first["paging"]["method"], "keyset");
        // After a NULL note (nulls last): only later NULLs, by id.
        let cursor = next_cursor(&first, &[None, Some("7".into())]);
        let plan = build(&shape(), &request(Value::Null, json!([{"column": "note", "direction": "desc", "nulls": "last"}]), Some(cursor))).unwrap();
        let sql = plan["page_sql"].as_str().unwrap();
        assert!(sql.contains("(t.\"note\" IS NULL AND t.\"id\" OPERATOR(\"pg_catalog\".>) $1[1]::\"pg_catalog\".\"int8\")"), "{sql}");
        // After a value: smaller notes or NULLs, or the same note and a larger id.
        let cursor = next_cursor(&first, &[Some("m".into()), Some("7".into())]);
        let plan = build(&shape(), &request(Value::Null, json!([{"column": "note", "direction": "desc", "nulls": "last"}]), Some(cursor))).unwrap();
        let sql = plan["page_sql"].as_str().unwrap();
        assert!(sql.contains("(t.\"note\" OPERATOR(\"pg_catalog\".<) $1[1]::\"pg_catalog\".\"text\" OR t.\"note\" IS NULL)"), "{sql}");
        assert_eq!(plan["params"], json!(["m", "7"]));
        // One direction, NOT NULL columns: a row comparison an index can start from.
        let by_id = build(&shape(), &request(Value::Null, json!([{"column": "id", "direction": "desc"}]), None)).unwrap();
        let cursor = next_cursor(&by_id, &[Some("7".into())]);
        let plan = build(&shape(), &request(Value::Null, json!([{"column": "id", "direction": "desc"}]), Some(cursor))).unwrap();
        assert!(plan["page_sql"].as_str().unwrap().contains("(ROW(t.\"id\") OPERATOR(\"pg_catalog\".<) ROW($1[1]::\"pg_catalog\".\"int8\"))"));
    }

    #[test]
    fn cursors_do_not_cross_sorts_and_foreign_orderings_page_by_offset() {
        let plan = build(&shape(), &request(Value::Null, json!([{"column": "note"}]), None)).unwrap();
        let cursor = next_cursor(&plan, &[Some("a".into()), Some("1".into())]);
        assert!(build(&shape(), &request(Value::Null, json!([{"column": "id"}]), Some(cursor))).unwrap_err().contains("not valid here"));
        let plan = build(&shape(), &request(Value::Null, json!([{"column": "email"}]), None)).unwrap();
        assert_eq!(plan["paging"]["method"], "offset");
        let next = build(&shape(), &request(Value::Null, json!([{"column": "email"}]), Some(next_cursor(&plan, &[])))).unwrap();
        assert!(next["page_sql"].as_str().unwrap().ends_with("LIMIT 11 OFFSET 10"));
    }

    #[test]
    fn search_escapes_wildcards_and_covers_text_columns() {
        let mut r = request(Value::Null, Value::Null, None);
        r.search = Some(" 50%_off\\ ".into());
        let plan = build(&shape(), &r).unwrap();
        assert_eq!(plan["params"], json!(["%50\\%\\_off\\\\%"]));
        let sql = plan["page_sql"].as_str().unwrap();
        assert!(sql.contains("t.\"note\" OPERATOR(pg_catalog.~~*) $1[1] OR t.\"email\" OPERATOR(pg_catalog.~~*) $1[1]"));
    }
}
