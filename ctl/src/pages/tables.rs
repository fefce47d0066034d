//! `GET /tables?q=`: the database explorer's list. Schemas, then their tables and views,
//! with estimated rows, size, RLS and what the explorer cannot do, from
//! `fluxbase_admin.list_tables`. `q` filters by name (bound, never spliced).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::db::{self, CallError, RequestContext};
use crate::pages::Frame;
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

/// One statement in its own dashboard transaction (one round trip, `db::call`), all its
/// rows; `42P01` (no such browsable relation) is the 404 page.
pub async fn call_rows(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, PageError> {
    match db::call(state.pool(), state.database_config(), context, db::DEFAULT_STATEMENT_TIMEOUT, sql, params).await {
        Ok(rows) => Ok(rows),
        Err(CallError::Db(e)) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Err(PageError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// A path segment, percent-encoded (everything but unreserved characters).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The link to a relation's structure tab.
pub fn structure_href(schema: &str, table: &str) -> String {
    format!("/tables/{}/{}/structure", segment(schema), segment(table))
}

/// Bytes as people read them (display only): `8 kB`, `1.2 MB`.
pub fn human_bytes(bytes: Option<i64>) -> String {
    let Some(bytes) = bytes else { return String::new() };
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 && value.fract() >= 0.05 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A count with thousands separators (display only): `1,234,567`.
pub fn human_count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// `materialized_view` → `materialized view`.
pub fn kind_words(kind: &str) -> String {
    kind.replace('_', " ")
}

/// RLS as words: `off`, `on` or `forced`.
pub fn rls_words(enabled: bool, forced: bool) -> &'static str {
    match (enabled, forced) {
        (false, _) => "off",
        (true, false) => "on",
        (true, true) => "forced",
    }
}

pub struct Relation {
    pub name: String,
    pub kind: String,
    pub href: String,
    pub rows: Option<String>,
    pub size: String,
    pub rls: &'static str,
    pub policies: i64,
    pub description: Option<String>,
    pub limits: Option<String>,
}

pub struct Schema {
    pub name: String,
    pub relations: Vec<Relation>,
}

#[derive(Template, WebTemplate)]
#[template(path = "tables.html")]
pub struct TablesPage {
    frame: Frame,
    /// The filter-as-you-type module (the GET form works without it).
    script_url: String,
    q: String,
    schemas: Vec<Schema>,
    shown: usize,
    /// Relations matching the filter, on every page, in words.
    total: String,
    first_href: Option<String>,
    next_href: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct TablesQuery {
    q: Option<String>,
    cursor: Option<String>,
}

/// One relation of a `list_tables` page.
#[derive(Deserialize)]
struct Listed {
    schema: String,
    name: String,
    kind: String,
    estimated_rows: Option<i64>,
    total_bytes: Option<i64>,
    rls_enabled: bool,
    rls_forced: bool,
    description: Option<String>,
    explorer_limits: Option<String>,
    policies: i64,
}

#[derive(Deserialize)]
struct ListPage {
    rows: Vec<Listed>,
    next_cursor: Option<String>,
    total: i64,
}

/// Relations a page of the list shows.
const PAGE_SIZE: i32 = 500;

pub async fn page(
    who: SignedIn,
    State(state): State<AppState>,
    Query(query): Query<TablesQuery>,
) -> Result<TablesPage, PageError> {
    let q = query.q.map(|q| q.trim().to_string()).unwrap_or_default();
    let filter: Option<&str> = (!q.is_empty()).then_some(q.as_str());
    let cursor = query.cursor.filter(|c| !c.is_empty());
    let title = if q.is_empty() { "Tables".to_string() } else { format!("Tables matching “{q}”") };
    let mut page = TablesPage {
        frame: Frame::signed_in(&who, &title, "tables"),
        script_url: crate::web::assets::url("tables.js"),
        q: q.clone(),
        schemas: Vec::new(),
        shown: 0,
        total: String::new(),
        first_href: cursor.is_some().then(|| list_href(&q, None)),
        next_href: None,
        error: None,
    };
    let rows = call_rows(
        &state,
        &who.context,
        "SELECT fluxbase_admin.list_tables($1, $2, $3, $4)::text",
        &[&who.token(), &filter, &PAGE_SIZE, &cursor],
    )
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e @ PageError::Redirect { .. }) => return Err(e),
        Err(PageError::Unavailable(e)) => {
            tracing::warn!("tables: {e:#}");
            page.error = Some("The database did not answer. Try again in a moment.".into());
            return Ok(page);
        }
        Err(PageError::Internal(e)) => {
            tracing::warn!("tables: {e:#}");
            page.error = Some("The list of tables could not be read.".into());
            return Ok(page);
        }
        Err(e) => return Err(e),
    };
    let text: String = rows.first().map(|row| row.get(0)).unwrap_or_default();
    let listed: ListPage = serde_json::from_str(&text).map_err(|e| PageError::Internal(anyhow::anyhow!("list_tables: {e}")))?;
    page.total = human_count(listed.total);
    page.next_href = listed.next_cursor.as_deref().map(|c| list_href(&q, Some(c)));
    for row in listed.rows {
        let relation = Relation {
            href: crate::pages::table_rows::rows_href(&row.schema, &row.name),
            kind: kind_words(&row.kind),
            rows: row.estimated_rows.map(human_count),
            size: human_bytes(row.total_bytes),
            rls: rls_words(row.rls_enabled, row.rls_forced),
            policies: row.policies,
            description: row.description,
            limits: row.explorer_limits,
            name: row.name,
        };
        page.shown += 1;
        match page.schemas.last_mut() {
            Some(last) if last.name == row.schema => last.relations.push(relation),
            _ => page.schemas.push(Schema { name: row.schema, relations: vec![relation] }),
        }
    }
    Ok(page)
}

/// The list's address: the name filter and the page.
fn list_href(q: &str, cursor: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if !q.is_empty() {
        query.append_pair("q", q);
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    let query = query.finish();
    if query.is_empty() { "/tables".to_string() } else { format!("/tables?{query}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_helpers() {
        assert_eq!(human_bytes(Some(8192)), "8 kB");
        assert_eq!(human_bytes(Some(1_300_000)), "1.2 MB");
        assert_eq!(human_bytes(Some(100)), "100 bytes");
        assert_eq!(human_count(1234567), "1,234,567");
        assert_eq!(human_count(12), "12");
        assert_eq!(structure_href("a b", "it's/x"), "/tables/a%20b/it%27s%2Fx/structure");
    }
}
