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

use crate::db::{self, DbRole, RequestContext};
use crate::pages::Frame;
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

/// One statement in its own dashboard transaction, all its rows; `42P01` (no such
/// browsable relation) is the 404 page.
pub async fn call_rows(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, PageError> {
    let mut client = db::checkout(state.pool(), state.database_config()).await.map_err(PageError::unavailable)?;
    let tx = db::begin(&mut client, DbRole::Dashboard, context, db::DEFAULT_STATEMENT_TIMEOUT)
        .await
        .map_err(PageError::unavailable)?;
    let rows = match tx.query(sql, params).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Err(PageError::NotFound),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(rows)
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
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct TablesQuery {
    q: Option<String>,
}

pub async fn page(
    who: SignedIn,
    State(state): State<AppState>,
    Query(query): Query<TablesQuery>,
) -> Result<TablesPage, PageError> {
    let q = query.q.map(|q| q.trim().to_string()).unwrap_or_default();
    let filter: Option<&str> = (!q.is_empty()).then_some(q.as_str());
    let title = if q.is_empty() { "Tables".to_string() } else { format!("Tables matching “{q}”") };
    let mut page = TablesPage {
        frame: Frame::signed_in(&who, &title, "tables"),
        script_url: crate::web::assets::url("tables.js"),
        q: q.clone(), schemas: Vec::new(), shown: 0, error: None };
    let rows = call_rows(
        &state,
        &who.context,
        "SELECT schema, name, kind, estimated_rows, total_bytes, rls_enabled, rls_forced, description, explorer_limits, policies
           FROM fluxbase_admin.list_tables($1)
          WHERE $2::text IS NULL
             OR pg_catalog.strpos(pg_catalog.lower(schema || '.' || name), pg_catalog.lower($2::text)) > 0",
        &[&who.token(), &filter],
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
    for row in rows {
        let schema: String = row.get("schema");
        let name: String = row.get("name");
        let relation = Relation {
            href: crate::pages::table_rows::rows_href(&schema, &name),
            kind: kind_words(row.get("kind")),
            rows: row.get::<_, Option<i64>>("estimated_rows").map(human_count),
            size: human_bytes(row.get("total_bytes")),
            rls: rls_words(row.get("rls_enabled"), row.get("rls_forced")),
            policies: row.get("policies"),
            description: row.get("description"),
            limits: row.get("explorer_limits"),
            name,
        };
        page.shown += 1;
        match page.schemas.last_mut() {
            Some(last) if last.name == schema => last.relations.push(relation),
            _ => page.schemas.push(Schema { name: schema, relations: vec![relation] }),
        }
    }
    Ok(page)
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
