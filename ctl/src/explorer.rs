//! The explorer's hand-off, shared by the JSON routes and the Tables pages: a ticket on
//! the dashboard login (the extension checks the session, the role and the request, and
//! audits), then its claim and one executor on the data login, in one transaction.
//! Requests are JSON bound as one value; executors are a fixed list of statements.

use futures_util::future::join5;
use tokio_postgres::types::{ToSql, Type};

use crate::api::ApiError;
use crate::db::{self, CallError, DataConnection, RequestContext, DEFAULT_STATEMENT_TIMEOUT};
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

impl From<CallError> for HandOffError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Db(e) => HandOffError::Db(e),
            CallError::Unavailable(e) => HandOffError::Unavailable(e),
        }
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

/// One statement on the dashboard login that returns text (JSON), committed: one round
/// trip (`db::call`).
pub async fn on_dashboard(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<String, HandOffError> {
    let rows = db::call(state.pool(), state.database_config(), context, DEFAULT_STATEMENT_TIMEOUT, sql, params).await?;
    match rows.first() {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(HandOffError::Unavailable(anyhow::anyhow!("{sql} returned no row"))),
    }
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
///
/// One round trip after the pool's liveness check, pipelined:
/// `BEGIN; SET LOCAL statement_timeout`, the claim, the
/// executor, `COMMIT`, then `db::RESET_DATA_SESSION`, the connection's reset before it goes back to
/// the pool. Only unnamed statements (`query_typed`, `batch_execute`) on the data login,
/// where app code runs and could tamper with a prepared one. The transaction is explicit,
/// so a failed claim aborts it: the executor after it is refused (`25P02`) without
/// running, and COMMIT ends as a rollback; the claim's error is the one reported.
/// The reset is a message of its own after the transaction, so it runs whatever
/// happened in it; a connection whose reset was not seen to succeed (a lost connection,
/// a request that went away) is closed instead of reused.
pub async fn claim_and_run(state: &AppState, ticket: &str, executor: Executor) -> Result<String, HandOffError> {
    let mut data =
        DataConnection::checkout(state.data_pool(), state.data_database_config()).await.map_err(HandOffError::Unavailable)?;
    let open = format!("BEGIN; SET LOCAL statement_timeout = {}", DEFAULT_STATEMENT_TIMEOUT.as_millis());
    // `join5` polls in order: the messages are written in this order on the first poll.
    let (opened, claimed, ran, committed, reset) = join5(
        data.batch_execute(&open),
        data.query_typed("SELECT fluxbase_admin.claim_ticket($1)::text", &[(&ticket, Type::TEXT)]),
        data.query_typed(executor.statement(), &[]),
        data.batch_execute("COMMIT"),
        data.batch_execute(db::RESET_DATA_SESSION),
    )
    .await;
    if reset.is_ok() {
        data.mark_reset();
    }
    opened?;
    claimed?;
    let rows = ran?;
    committed?;
    match rows.first() {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(HandOffError::Unavailable(anyhow::anyhow!("{} returned no row", executor.statement()))),
    }
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
