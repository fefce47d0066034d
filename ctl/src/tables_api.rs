//! The explorer's JSON routes, for scripts and for `make bench`. The rules live in the
//! extension (sql/explorer_catalog.sql, sql/explorer_browse.sql); this module only
//! carries a request to it and its answer back, as it is.
//!
//! - `GET /api/tables?search=&page_size=&cursor=`: a page of `fluxbase_admin.list_tables`;
//! - `GET /api/tables/{schema}/{table}`: `fluxbase_admin.describe_table`;
//! - `GET /api/tables/{schema}/{table}/rows?filter=&sort=&search=&cursor=&page_size=&total=`:
//!   one page of `fluxbase_admin.browse`, a ticket from the dashboard login claimed on
//!   the data login (as the SQL runner does it).
//!
//! - `GET /api/tables/{schema}/{table}/cell?column=&key=`: one value in full (`read_cell`);
//! - `GET /api/tables/{schema}/{table}/copy?keys=`: rows by key, as JSON and as an
//!   `INSERT` statement (`copy_rows`).
//!
//! They take `Authorization: Bearer <session token>` or the dashboard's session cookie;
//! they are reads, so no CSRF token.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::{self, ApiError};
use crate::client::ClientContext;
use crate::db::RequestContext;
use crate::explorer::{self, Executor};
use crate::state::AppState;

/// The session: the bearer token of a script, or else the browser's signed cookie.
fn session(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    api::session_token(headers).or_else(|missing| crate::web::session::session_token(state, headers).ok_or(missing))
}

/// The extension's JSON text, sent as it is: it is Postgres's own `jsonb` output, so it is
/// neither parsed nor written again here.
pub struct JsonText(String);

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

fn as_json(text: String) -> Result<JsonText, ApiError> {
    Ok(JsonText(text))
}

async fn on_dashboard(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<String, ApiError> {
    Ok(explorer::on_dashboard(state, context, sql, params).await?)
}

#[derive(Deserialize)]
pub struct ListQuery {
    search: Option<String>,
    page_size: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/tables?search=&page_size=&cursor=`: a page of schemas, tables and views,
/// with what the explorer cannot read, as `list_tables` gives it.
pub async fn list(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<JsonText, ApiError> {
    let token = session(&state, &headers)?;
    let (search, page_size, cursor) = (given(query.search), given(query.page_size), given(query.cursor));
    let text = on_dashboard(
        &state,
        &context,
        "SELECT fluxbase_admin.list_tables($1, $2, coalesce($3::text::integer, 500), $4)::text",
        &[&token, &search, &page_size, &cursor],
    )
    .await?;
    as_json(text)
}

/// `GET /api/tables/{schema}/{table}`: the structure, as `describe_table` gives it.
pub async fn structure(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Path((schema, table)): Path<(String, String)>,
) -> Result<JsonText, ApiError> {
    let token = session(&state, &headers)?;
    let text = on_dashboard(&state, &context, "SELECT fluxbase_admin.describe_table($1, $2, $3)::text", &[&token, &schema, &table]).await?;
    as_json(text)
}

/// The query of a browse, each field as it was typed: the extension reads and checks
/// them (a malformed filter is Postgres's JSON error, a page size out of range the
/// extension's). An empty field is an absent one.
#[derive(Deserialize)]
pub struct RowsQuery {
    filter: Option<String>,
    sort: Option<String>,
    search: Option<String>,
    cursor: Option<String>,
    page_size: Option<String>,
    total: Option<String>,
}

fn given(field: Option<String>) -> Option<String> {
    field.filter(|f| !f.is_empty())
}

/// `GET /api/tables/{schema}/{table}/rows`: one page, the extension's JSON as it is.
pub async fn rows(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Path((schema, table)): Path<(String, String)>,
    Query(query): Query<RowsQuery>,
) -> Result<JsonText, ApiError> {
    let token = session(&state, &headers)?;
    let (filter, sort, search) = (given(query.filter), given(query.sort), given(query.search));
    let (cursor, page_size, total) = (given(query.cursor), given(query.page_size), given(query.total));

    // The request is put together by Postgres from bound values, only the fields given.
    issue_and_run(
        &state,
        &context,
        "SELECT fluxbase_admin.issue_ticket($1, 'browse',
                pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                    'schema', $2::text, 'table', $3::text, 'search', $6::text, 'cursor', $7::text,
                    'page_size', $8::text::integer, 'total', $9::text))
                || CASE WHEN $4::text IS NULL THEN '{}'::jsonb ELSE pg_catalog.jsonb_build_object('filter', $4::text::jsonb) END
                || CASE WHEN $5::text IS NULL THEN '{}'::jsonb ELSE pg_catalog.jsonb_build_object('sort', $5::text::jsonb) END)",
        &[&token, &schema, &table, &filter, &sort, &search, &cursor, &page_size, &total],
        Executor::Browse,
    )
    .await
}

/// A ticket issued by `issue` on the dashboard login (its request put together by
/// Postgres from bound values), then claimed on the data login to run `executor`: the
/// executor's JSON as it is.
async fn issue_and_run(
    state: &AppState,
    context: &RequestContext,
    issue: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    executor: Executor,
) -> Result<JsonText, ApiError> {
    let ticket = on_dashboard(state, context, issue, params).await?;
    as_json(explorer::claim_and_run(state, &ticket, executor).await?)
}

#[derive(Deserialize)]
pub struct CellQuery {
    column: String,
    /// The row's key, a JSON object of the key's columns.
    key: String,
}

/// `GET /api/tables/{schema}/{table}/cell?column=&key=`: one value in full ("show all"),
/// `read_cell()` of a `cell` ticket.
pub async fn cell(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Path((schema, table)): Path<(String, String)>,
    Query(query): Query<CellQuery>,
) -> Result<JsonText, ApiError> {
    let token = session(&state, &headers)?;
    issue_and_run(
        &state,
        &context,
        "SELECT fluxbase_admin.issue_ticket($1, 'cell', pg_catalog.jsonb_build_object(
                'schema', $2::text, 'table', $3::text, 'column', $4::text, 'key', $5::text::jsonb))",
        &[&token, &schema, &table, &query.column, &query.key],
        Executor::ReadCell,
    )
    .await
}

#[derive(Deserialize)]
pub struct CopyQuery {
    /// The rows' keys, a JSON array of objects.
    keys: String,
}

/// `GET /api/tables/{schema}/{table}/copy?keys=`: rows by key as JSON and as one
/// `INSERT` statement, `copy_rows()` of a `copy` ticket (audited as `explorer.copy`).
pub async fn copy(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Path((schema, table)): Path<(String, String)>,
    Query(query): Query<CopyQuery>,
) -> Result<JsonText, ApiError> {
    let token = session(&state, &headers)?;
    issue_and_run(
        &state,
        &context,
        "SELECT fluxbase_admin.issue_ticket($1, 'copy', pg_catalog.jsonb_build_object(
                'schema', $2::text, 'table', $3::text, 'keys', $4::text::jsonb))",
        &[&token, &schema, &table, &query.keys],
        Executor::CopyRows,
    )
    .await
}
