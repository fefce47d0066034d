//! The explorer's hand-off, shared by the JSON routes and the Tables pages: a ticket on
//! the dashboard login (the extension checks the session, the role and the request, and
//! audits), then its claim and one executor on the data login, in one transaction.
//! Requests are JSON bound as one value; executors are a fixed list of statements.

use deadpool_postgres::Object;
use tokio_postgres::types::{ToSql, Type};

use crate::api::ApiError;
use crate::db::{self, DbRole, RequestContext, DEFAULT_STATEMENT_TIMEOUT};
use crate::state::AppState;
use crate::web::errors::PageError;

/// What went wrong in a hand-off: the extension's (or Postgres's) refusal, or no database.
#[derive(Debug)]
pub enum HandOffError {
    Db(tokio_postgres::Error),
    Unavailable(anyhow::Error),
}

impl From<tokio_postgres::Error> for HandOffError {
    fn from(e: tokio_postgres::Error) -> Self {
        HandOffError::Db(e)
    }
}

impl From<HandOffError> for ApiError {
    fn from(e: HandOffError) -> Self {
        match e {
            HandOffError::Db(e) => e.into(),
            HandOffError::Unavailable(e) => ApiError::internal(e),
        }
    }
}

impl From<HandOffError> for PageError {
    fn from(e: HandOffError) -> Self {
        match e {
            HandOffError::Db(e) => e.into(),
            HandOffError::Unavailable(e) => PageError::unavailable(e),
        }
    }
}

/// The data-plane functions a claimed ticket may run here.
#[derive(Clone, Copy)]
pub enum Executor {
    Browse,
    ReadCell,
    CopyRows,
}

impl Executor {
    fn statement(self) -> &'static str {
        match self {
            Executor::Browse => "SELECT fluxbase_admin.browse()::text",
            Executor::ReadCell => "SELECT fluxbase_admin.read_cell()::text",
            Executor::CopyRows => "SELECT fluxbase_admin.copy_rows()::text",
        }
    }
}

/// One statement on the dashboard login that returns text (JSON), committed.
pub async fn on_dashboard(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<String, HandOffError> {
    let mut client = db::checkout(state.pool(), state.database_config()).await.map_err(HandOffError::Unavailable)?;
    let tx = db::begin(&mut client, DbRole::Dashboard, context, DEFAULT_STATEMENT_TIMEOUT)
        .await
        .map_err(HandOffError::Unavailable)?;
    let text: String = tx.query_one(sql, params).await?.get(0);
    tx.commit().await?;
    Ok(text)
}

/// A ticket for `operation` with `request` (a JSON object), on the dashboard login.
pub async fn issue_ticket(
    state: &AppState,
    context: &RequestContext,
    token: &str,
    operation: &str,
    request: &serde_json::Value,
) -> Result<String, HandOffError> {
    let request = request.to_string();
    on_dashboard(state, context, "SELECT fluxbase_admin.issue_ticket($1, $2, $3::text::jsonb)", &[&token, &operation, &request]).await
}

/// Claims `ticket` and runs `executor` on the data login; its JSON answer as text.
pub async fn claim_and_run(state: &AppState, ticket: &str, executor: Executor) -> Result<String, HandOffError> {
    let mut data = db::checkout(state.data_pool(), state.data_database_config()).await.map_err(HandOffError::Unavailable)?;
    let answer = run_claimed(&mut data, ticket, executor).await;
    // A connection that failed mid-way is not reused; the pool runs DISCARD ALL before
    // the next use of the others.
    if matches!(&answer, Err(e) if e.as_db_error().is_none()) {
        let _ = Object::take(data);
    }
    Ok(answer?)
}

/// Only unnamed statements (`query_typed`, `batch_execute`) on the data login, where app
/// code runs and could tamper with a prepared one.
async fn run_claimed(data: &mut Object, ticket: &str, executor: Executor) -> Result<String, tokio_postgres::Error> {
    let tx = data.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {}", DEFAULT_STATEMENT_TIMEOUT.as_millis())).await?;
    tx.query_typed("SELECT fluxbase_admin.claim_ticket($1)::text", &[(&ticket, Type::TEXT)]).await?;
    let rows = tx.query_typed(executor.statement(), &[]).await?;
    let text: String = rows[0].get(0);
    tx.commit().await?;
    Ok(text)
}

/// A ticket and its claim: the whole hand-off.
pub async fn hand_off(
    state: &AppState,
    context: &RequestContext,
    token: &str,
    operation: &str,
    request: &serde_json::Value,
    executor: Executor,
) -> Result<String, HandOffError> {
    let ticket = issue_ticket(state, context, token, operation, request).await?;
    claim_and_run(state, &ticket, executor).await
}
