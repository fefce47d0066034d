//! `GET /tables/{schema}/{table}`: a table's rows, the grid. One call of the API: a browse
//! (a ticket and its claim, as the JSON route makes it), whose answer has the foreign
//! keys both ways for the links; `describe_table` only when the request was refused. The
//! view lives in the address (`grid_query`). Everything the grid knows of a column (its type, whether it sorts, the filter
//! operators it takes) comes from the browse answer; `grid.js` adds the keyboard, copying,
//! "show all", the JSON panel and the time-zone toggle.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, RawQuery, State};
use serde_json::Value;

use crate::explorer::{self, Executor, HandOffError};
use crate::pages::grid_query::{Condition, GridQuery};
use crate::pages::table_structure::{Described, ForeignKey, ReferencedBy};
use crate::pages::tables::{call_rows, human_count, segment, structure_href};
use crate::pages::Frame;
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

/// The words for each filter operator, in the order the form offers them.
const OPERATOR_WORDS: [(&str, &str); 12] = [
    ("eq", "="),
    ("neq", "≠"),
    ("lt", "<"),
    ("lte", "≤"),
    ("gt", ">"),
    ("gte", "≥"),
    ("in", "in list"),
    ("like", "like"),
    ("ilike", "like (any case)"),
    ("contains", "contains"),
    ("is_null", "is NULL"),
    ("not_null", "is not NULL"),
];

/// Page sizes the form offers (the extension takes 1 to 1,000).
const PAGE_SIZES: [&str; 6] = ["25", "50", "100", "250", "500", "1000"];

pub fn rows_href(schema: &str, table: &str) -> String {
    format!("/tables/{}/{}", segment(schema), segment(table))
}

pub struct GridColumn {
    pub name: String,
    pub type_name: String,
    /// `aria-sort`: `ascending`/`descending` on the first sort column, else None.
    pub aria_sort: Option<&'static str>,
    /// Its place in a sort of several columns (1-based) and direction, for the header.
    pub sorted: Option<(usize, &'static str)>,
    /// Sorting by this header (None: the type cannot be sorted).
    pub sort_href: Option<String>,
    pub key: bool,
    /// `number`, `time`, `json`, or `text`: how its cells are drawn and filtered.
    pub kind: &'static str,
    pub filter_ops: Vec<String>,
}

pub struct Cell {
    /// What is shown: the value as text, cut when the page cut it.
    pub text: String,
    pub null: bool,
    pub empty: bool,
    /// The full length of a value the page cut short.
    pub full_length: Option<String>,
    /// A JSON value, compact, for the side panel (None when cut: the panel loads it).
    pub json: Option<String>,
    /// A `timestamptz` in ISO form, for the time-zone toggle.
    pub instant: Option<String>,
    /// The referenced row, for a foreign-key cell.
    pub link: Option<String>,
}

pub struct RefLink {
    pub label: String,
    pub href: String,
}

pub struct GridRow {
    /// The row's key as JSON (`{"id": 7}`), for "show all" and copying; None without a key.
    pub key_json: Option<String>,
    /// The key as words, for the row header and its checkbox's label.
    pub label: String,
    pub cells: Vec<Cell>,
    pub referenced_by: Vec<RefLink>,
}

/// One condition of the filter form, with the operators its column takes.
pub struct FormCondition {
    pub condition: Condition,
    pub ops: Vec<(&'static str, &'static str)>,
    /// Its column is among the grid's (else the form offers it on its own).
    pub known: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "table_rows.html")]
pub struct RowsPage {
    frame: Frame,
    script_url: String,
    schema: String,
    table: String,
    href: String,
    structure_href: String,
    query: GridQuery,
    /// The form's conditions: the address's, less those whose column is gone.
    conditions: Vec<FormCondition>,
    /// Every column with its operators, for the form's blank row and for `grid.js`.
    columns: Vec<GridColumn>,
    operator_words: &'static [(&'static str, &'static str)],
    page_sizes: &'static [&'static str],
    page_size: String,
    rows: Vec<GridRow>,
    has_key: bool,
    total_text: Option<String>,
    paging_note: Option<String>,
    notices: Vec<String>,
    error: Option<String>,
    first_href: Option<String>,
    prev_href: Option<String>,
    next_href: Option<String>,
    clear_href: String,
    api_base: String,
}

fn column_kind(column: &Value) -> &'static str {
    let base = column["base"].as_str().unwrap_or("");
    match (column["category"].as_str().unwrap_or(""), base) {
        (_, "json" | "jsonb") => "json",
        (_, "timestamptz") => "time",
        ("N", _) => "number",
        _ => "text",
    }
}

/// A value's text in a link's filter: strings as they are, anything else as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn filter_href(schema: &str, table: &str, pairs: &[(&str, &Value)]) -> String {
    let query = GridQuery {
        conditions: pairs
            .iter()
            .map(|(column, value)| Condition { column: column.to_string(), op: "eq".into(), value: value_text(value) })
            .collect(),
        ..GridQuery::default()
    };
    format!("{}?{}", rows_href(schema, table), query.to_query(None))
}

fn cell(column: &GridColumn, value: Option<&Value>, full_length: Option<i64>) -> Cell {
    let value = value.unwrap_or(&Value::Null);
    let text = value_text(value);
    Cell {
        null: value.is_null(),
        empty: value.as_str() == Some(""),
        full_length: full_length.map(human_count),
        json: (column.kind == "json" && full_length.is_none() && !value.is_null()).then(|| value.to_string()),
        instant: (column.kind == "time").then(|| value.as_str().map(str::to_string)).flatten(),
        link: None,
        text: if value.is_null() { String::new() } else { text },
    }
}

fn error_words(e: HandOffError) -> Result<String, PageError> {
    match e {
        HandOffError::Db(db) => match db.as_db_error() {
            Some(d) if d.code().code() == "42P01" => Err(PageError::NotFound),
            // A request that does not fit the table, a value that does not fit its column,
            // a cursor of another sort: the extension's own words, shown above the form.
            Some(d) if d.code().code().starts_with("22") || d.code().code().starts_with("42") => Ok(d.message().to_string()),
            _ => Err(HandOffError::Db(db).into()),
        },
        other => Err(other.into()),
    }
}

pub async fn page(
    who: SignedIn,
    State(state): State<AppState>,
    Path((schema, table)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<RowsPage, PageError> {
    let query = GridQuery::parse(raw.as_deref());
    let href = rows_href(&schema, &table);
    let mut page = RowsPage {
        frame: Frame::signed_in(&who, &format!("{schema}.{table}"), "tables"),
        script_url: crate::web::assets::url("grid.js"),
        structure_href: structure_href(&schema, &table),
        clear_href: format!("{href}?{}", query.unfiltered().to_query(None)),
        api_base: format!("/api{href}"),
        href,
        schema,
        table,
        query: query.clone(),
        conditions: Vec::new(),
        columns: Vec::new(),
        operator_words: &OPERATOR_WORDS,
        page_sizes: &PAGE_SIZES,
        page_size: query.page_size.clone().unwrap_or_else(|| "50".into()),
        rows: Vec::new(),
        has_key: false,
        total_text: None,
        paging_note: None,
        notices: Vec::new(),
        error: None,
        first_href: None,
        prev_href: None,
        next_href: None,
    };

    // One call of the API: the page (with its foreign keys both ways), a ticket and its
    // claim. An unknown table is the ticket's 42P01, the 404 page.
    let answer = match query.request(&page.schema, &page.table) {
        Err(words) => Err(words),
        Ok(request) => match explorer::hand_off(&state, &who.context, who.token(), "browse", &request, Executor::Browse).await {
            Ok(text) => Ok(text),
            Err(e) => Err(error_words(e)?),
        },
    };
    match answer {
        Ok(text) => {
            let answer: Value = serde_json::from_str(&text).map_err(|e| PageError::Internal(anyhow::anyhow!("browse: {e}")))?;
            fill(&mut page, &answer);
        }
        Err(words) => refused(&mut page, &state, &who, words).await?,
    }
    Ok(page)
}

/// A request the table refused: the extension's words above the form, which still shows
/// every condition, so that the one at fault can be fixed, and every column (from the
/// structure, a second call only on this path) for a new one.
async fn refused(page: &mut RowsPage, state: &AppState, who: &SignedIn, words: String) -> Result<(), PageError> {
    let described = call_rows(state, &who.context, "SELECT fluxbase_admin.describe_table($1, $2, $3)::text", &[&who.token(), &page.schema, &page.table])
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.get::<_, Option<String>>(0))
        .ok_or(PageError::NotFound)?;
    let described: Described =
        serde_json::from_str(&described).map_err(|e| PageError::Internal(anyhow::anyhow!("describe_table: {e}")))?;
    page.error = Some(words);
    page.columns = described
        .columns
        .iter()
        .map(|c| GridColumn {
            name: c.name.clone(),
            type_name: c.type_name.clone(),
            aria_sort: None,
            sorted: None,
            sort_href: None,
            key: described.primary_key.as_ref().is_some_and(|key| key.contains(&c.name)),
            kind: "text",
            filter_ops: OPERATOR_WORDS.iter().map(|(op, _)| op.to_string()).collect(),
        })
        .collect();
    page.conditions = page
        .query
        .conditions
        .iter()
        .map(|c| FormCondition {
            known: page.columns.iter().any(|column| column.name == c.column),
            condition: c.clone(),
            ops: OPERATOR_WORDS.to_vec(),
        })
        .collect();
    if page.query.cursor.is_some() {
        page.first_href = Some(format!("{}?{}", page.href, page.query.to_query(None)));
    }
    Ok(())
}

/// Draws the browse answer: the columns (key columns first), the rows and their links,
/// the total, the paging links and the notices.
fn fill(page: &mut RowsPage, answer: &Value) {
    let query = &page.query;
    let links = |field: &str| answer.get(field).cloned().unwrap_or(Value::Array(Vec::new()));
    let foreign_keys: Vec<ForeignKey> = serde_json::from_value(links("foreign_keys")).unwrap_or_default();
    let referenced_by: Vec<ReferencedBy> = serde_json::from_value(links("referenced_by")).unwrap_or_default();
    let key: Vec<String> = answer["paging"]["key"]
        .as_array()
        .map(|k| k.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    page.has_key = !key.is_empty();
    let empty = Vec::new();
    let mut columns: Vec<GridColumn> = answer["columns"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let place = query.sort.iter().position(|s| s.column == name);
            let direction = |i: usize| if query.sort[i].descending { "descending" } else { "ascending" };
            GridColumn {
                type_name: c["type"].as_str().unwrap_or_default().to_string(),
                aria_sort: place.filter(|&i| i == 0).map(direction),
                sorted: place.map(|i| (i + 1, direction(i))),
                sort_href: c["sortable"]
                    .as_bool()
                    .unwrap_or(false)
                    .then(|| format!("{}?{}", page.href, query.sorted_by(&name).to_query(None))),
                key: key.contains(&name),
                kind: column_kind(c),
                filter_ops: c["filter_ops"]
                    .as_array()
                    .map(|ops| ops.iter().filter_map(|o| o.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                name,
            }
        })
        .collect();
    // The key first, so that the sticky first column names the row.
    columns.sort_by_key(|c| if c.key { key.iter().position(|k| *k == c.name).unwrap_or(0) } else { usize::MAX });

    page.conditions = query
        .conditions
        .iter()
        .filter_map(|condition| {
            let column = columns.iter().find(|c| c.name == condition.column)?;
            let ops = OPERATOR_WORDS.iter().copied().filter(|(op, _)| column.filter_ops.iter().any(|o| o == op)).collect();
            Some(FormCondition { condition: condition.clone(), ops, known: true })
        })
        .collect();

    for row in answer["rows"].as_array().unwrap_or(&empty) {
        let values = &row["values"];
        let key_json = page.has_key.then(|| {
            let key_values: serde_json::Map<String, Value> = key.iter().map(|k| (k.clone(), values[k].clone())).collect();
            Value::Object(key_values).to_string()
        });
        let label = if page.has_key {
            key.iter().map(|k| value_text(&values[k])).collect::<Vec<_>>().join(", ")
        } else {
            String::new()
        };
        let mut cells: Vec<Cell> = columns
            .iter()
            .map(|c| cell(c, values.get(&c.name), row["truncated"][&c.name].as_i64()))
            .collect();
        for fk in &foreign_keys {
            let pairs: Vec<(&str, &Value)> =
                fk.references.columns.iter().zip(&fk.columns).map(|(to, from)| (to.as_str(), &values[from])).collect();
            if pairs.iter().any(|(_, v)| v.is_null()) {
                continue;
            }
            if let Some(i) = columns.iter().position(|c| Some(&c.name) == fk.columns.first()) {
                cells[i].link = Some(filter_href(&fk.references.schema, &fk.references.table, &pairs));
            }
        }
        let referenced_by = referenced_by
            .iter()
            .filter_map(|r| {
                let pairs: Vec<(&str, &Value)> =
                    r.columns.iter().zip(&r.referenced_columns).map(|(from, to)| (from.as_str(), &values[to])).collect();
                (!pairs.iter().any(|(_, v)| v.is_null())).then(|| RefLink {
                    label: format!("{}.{} ({})", r.schema, r.table, r.columns.join(", ")),
                    href: filter_href(&r.schema, &r.table, &pairs),
                })
            })
            .collect();
        page.rows.push(GridRow { key_json, label, cells, referenced_by });
    }
    page.columns = columns;

    page.total_text = answer["total"]["text"].as_str().map(str::to_string);
    page.paging_note = answer["paging"]["note"].as_str().map(str::to_string);
    page.notices = answer["notices"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|n| n["message"].as_str().map(str::to_string))
        .collect();
    let at = |cursor: Option<&str>| format!("{}?{}", page.href, query.to_query(cursor));
    if query.cursor.is_some() {
        page.first_href = Some(at(None));
    }
    page.prev_href = answer["prev_cursor"].as_str().map(|c| at(Some(c)));
    page.next_href = answer["next_cursor"].as_str().map(|c| at(Some(c)));
}
