//! The SQL runner's routes. The rules live in the extension (sql/sql_runner.sql); this
//! module only carries a run across the two planes: the intent and a ticket from the
//! dashboard login, the statement on the data login (claim, statement, and its result in
//! one transaction), the statement's timeout set on that transaction, and the server's
//! notices.
//!
//! - `POST /api/sql/runs` `{"statement", "allow_writes", "explain", "impersonation_id"}`
//! - `POST /api/sql/runs/{run_id}/cancel`
//! - `GET /api/sql/history?search=&page_size=&cursor=`

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use deadpool_postgres::Object;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::api::{self, ApiError};
use crate::client::ClientContext;
use crate::db::{self, DbRole, RequestContext, DEFAULT_STATEMENT_TIMEOUT};
use crate::notices;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct RunRequest {
    statement: String,
    #[serde(default)]
    allow_writes: bool,
    explain: Option<String>,
    impersonation_id: Option<String>,
}

fn parse_uuid(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text.trim())
        .map_err(|_| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "22023", format!("{what} is not a UUID: {text:?}")))
}

async fn connection(state: &AppState) -> Result<Object, ApiError> {
    db::checkout(state.pool(), state.database_config()).await.map_err(ApiError::internal)
}

/// Runs one statement. The answer is `{"ok": true, ...result}` or, when the statement
/// was refused or failed, `{"ok": false, "code", "message", ...}`; HTTP errors are for
/// the request itself (no session, no database).
///
/// The run is a task of its own: a client that goes away does not leave a statement
/// running on a connection that returns to the pool. Its length is bounded by the
/// runner's statement timeout, not by the server's request timeout.
pub async fn run(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Json(request): Json<RunRequest>,
) -> Result<Json<Value>, ApiError> {
    let token = api::session_token(&headers)?;
    let impersonation_id = request.impersonation_id.as_deref().map(|t| parse_uuid(t, "impersonation_id")).transpose()?;
    tokio::spawn(run_to_the_end(state, context, token, request, impersonation_id))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the SQL run stopped: {e}")))?
}

async fn run_to_the_end(
    state: AppState,
    context: RequestContext,
    token: String,
    request: RunRequest,
    impersonation_id: Option<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();

    // 1. The intent, committed before anything runs, and the ticket for the data plane.
    let mut client = connection(&state).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, &context, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let begun = tx
        .query_one(
            "SELECT ok, code, message, run_id, run_as, read_only, timeout_ms, ticket FROM fluxbase_admin.start_sql_run($1, $2, $3, $4, $5)",
            &[&token, &request.statement, &request.allow_writes, &request.explain, &impersonation_id],
        )
        .await?;
    tx.commit().await?;
    drop(client);
    if !begun.get::<_, bool>("ok") {
        return Ok(Json(json!({
            "ok": false, "code": begun.get::<_, String>("code"), "message": begun.get::<_, String>("message"),
        })));
    }
    let run_id: Uuid = begun.get("run_id");
    let read_only: bool = begun.get("read_only");
    let timeout_ms: i64 = begun.get("timeout_ms");
    let ticket: String = begun.get("ticket");

    // 2. The statement, on the data login.
    let mut data =
        db::DataConnection::checkout(state.data_pool(), state.data_database_config()).await.map_err(ApiError::internal)?;
    let pid: i32 = data.query_typed("SELECT pg_catalog.pg_backend_pid()", &[]).await?[0].get(0);
    notices::clear(pid);
    let outcome = execute(&mut data, &ticket, &request.statement, read_only, timeout_ms).await;
    // The reset before the connection goes back to the pool; one that failed mid-way,
    // or whose reset fails, is closed instead (db::DataConnection).
    if !outcome.as_ref().err().is_some_and(|f| f["code"] == "unavailable") {
        let _ = data.reset().await;
    }
    let notices = notices::take(pid);

    // 3. A read, or a failure, is recorded on the dashboard plane once it is over; the
    // extension decides how the run ended (a write's ending committed with it).
    let (mut answer, ending) = match outcome {
        Ok(mut result) => {
            let ending = result.as_object_mut().and_then(|m| m.remove("outcome"));
            result["ok"] = json!(true);
            result["status"] = json!("succeeded");
            result["read_only"] = json!(read_only);
            (result, read_only.then_some(ending).flatten())
        }
        Err(mut failure) => {
            let ending = failure.as_object_mut().and_then(|m| m.remove("outcome"));
            failure["ok"] = json!(false);
            failure["run_id"] = json!(run_id.to_string());
            failure["status"] = json!("failed");
            (failure, ending)
        }
    };
    if let Some(ending) = ending {
        match finish(&state, &context, &token, run_id, &ending).await {
            Ok(status) => answer["status"] = json!(status),
            // The intent is recorded already; a lost connection only loses this ending.
            Err(e) => tracing::warn!(error = %e, %run_id, "cannot record how a SQL run ended"),
        }
    }
    answer["notices"] = json!(notices);
    answer["duration_ms"] = json!(started.elapsed().as_millis() as u64);
    Ok(Json(answer))
}

/// Step 2 of a run, on the data login: the claim, the statement, and for a write its
/// result, in one transaction. A read, or a failed statement, is rolled back to the
/// savepoint after the claim, so that the spent ticket still commits. Each answer carries
/// the run's `outcome` for the record. A failed statement comes back as `Err` with its
/// SQLSTATE, message and position.
async fn execute(data: &mut Object, ticket: &str, statement: &str, read_only: bool, timeout_ms: i64) -> Result<Value, Value> {
    let transport = |e: tokio_postgres::Error| {
        json!({"code": "unavailable", "message": db::describe_pg_error(&e),
               "outcome": {"error_code": "unavailable", "error_message": db::describe_pg_error(&e)}})
    };
    let tx = data.transaction().await.map_err(transport)?;
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}")).await.map_err(transport)?;
    let claimed = tx
        .query_typed("SELECT fluxbase_admin.claim_ticket($1, $2)::text", &[(&ticket, Type::TEXT), (&statement, Type::TEXT)])
        .await
        .map_err(|e| {
            let failure = describe_failure(&e, statement);
            json!({"code": failure["code"], "message": failure["message"],
                   "outcome": {"error_code": failure["code"], "error_message": failure["message"]}})
        })?;
    let claimed: Value = serde_json::from_str(claimed[0].get(0)).unwrap_or(Value::Null);
    if claimed["ok"] != json!(true) {
        // A refusal the claim recorded (the impersonated target, checked again): keep it.
        tx.commit().await.map_err(transport)?;
        return Err(json!({"code": claimed["code"], "message": claimed["message"],
                          "outcome": {"error_code": "42501", "error_message": claimed["message"]}}));
    }
    tx.batch_execute("SAVEPOINT run").await.map_err(transport)?;
    let executed = tx.query_typed("SELECT fluxbase_admin.execute_sql($1)::text", &[(&statement, Type::TEXT)]).await;
    match executed {
        Ok(rows) => {
            let result: Value = serde_json::from_str(rows[0].get(0)).unwrap_or(Value::Null);
            let outcome = json!({"row_count": result["row_count"], "affected": result["affected"], "truncated": result["truncated"]});
            if read_only {
                tx.batch_execute("ROLLBACK TO SAVEPOINT run").await.map_err(transport)?;
            } else {
                tx.query_typed("SELECT fluxbase_admin.record_result($1::text::jsonb)", &[(&outcome.to_string(), Type::TEXT)])
                    .await
                    .map_err(transport)?;
            }
            tx.commit().await.map_err(transport)?;
            let mut answer = result;
            answer["outcome"] = outcome;
            Ok(answer)
        }
        Err(e) => {
            let mut failure = describe_failure(&e, statement);
            if tx.batch_execute("ROLLBACK TO SAVEPOINT run").await.is_ok() {
                let _ = tx.commit().await;
            }
            failure["outcome"] = json!({"error_code": failure["code"], "error_message": failure["message"]});
            Err(failure)
        }
    }
}

/// Records how a run ended, on the dashboard plane, and returns its status as the
/// extension decided it.
async fn finish(state: &AppState, context: &RequestContext, token: &str, run_id: Uuid, outcome: &Value) -> anyhow::Result<String> {
    let mut client = db::checkout(state.pool(), state.database_config()).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, context, DEFAULT_STATEMENT_TIMEOUT).await?;
    let status: String = tx
        .query_one("SELECT fluxbase_admin.finish_sql_run($1, $2, $3::text::jsonb)", &[&token, &run_id, &outcome.to_string()])
        .await
        .map_err(db::pg_error)?
        .get(0);
    tx.commit().await.map_err(db::pg_error)?;
    Ok(status)
}

/// A failed statement as the runner reports it: SQLSTATE, message, detail, hint, and the
/// position in the statement's own text (1-based characters).
fn describe_failure(e: &tokio_postgres::Error, statement: &str) -> Value {
    let Some(db) = e.as_db_error() else {
        return json!({"code": "unavailable", "message": db::describe_pg_error(e)});
    };
    let code = db.code().code();
    // The statement runs inside the runner's function, so Postgres reports where in it
    // the error is as an internal position; an EXPLAIN prefix is taken off.
    let position = match db.position() {
        Some(ErrorPosition::Internal { position, query }) if query.ends_with(statement) => {
            let prefix = query.chars().count() - statement.chars().count();
            (*position as usize).checked_sub(prefix).filter(|p| *p > 0)
        }
        _ => None,
    };
    json!({
        "code": code, "message": db.message(), "detail": db.detail(), "hint": db.hint(),
        "position": position,
    })
}

/// Cancels a running statement of the caller's, whichever copy of fluxbase serve runs it.
pub async fn cancel(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let token = api::session_token(&headers)?;
    let run_id = parse_uuid(&run_id, "run id")?;
    let mut client = connection(&state).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, &context, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let cancelled: bool = tx.query_one("SELECT fluxbase_admin.cancel_sql_run($1, $2)", &[&token, &run_id]).await?.get(0);
    tx.commit().await?;
    Ok(Json(json!({ "run_id": run_id.to_string(), "cancelled": cancelled })))
}

/// `?search=&page_size=&cursor=` of the history: the extension's search and paging,
/// passed through.
#[derive(Deserialize)]
pub struct HistoryQuery {
    search: Option<String>,
    page_size: Option<i32>,
    cursor: Option<String>,
}

/// The caller's last statements, newest first: one page of `list_sql_runs`, as it is.
pub async fn history(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Query(paging): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let token = api::session_token(&headers)?;
    let mut client = connection(&state).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, &context, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let text: String = tx
        .query_one(
            "SELECT fluxbase_admin.list_sql_runs($1, $2, coalesce($3, 50), $4)::text",
            &[&token, &paging.search, &paging.page_size, &paging.cursor],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(Json(serde_json::from_str::<Value>(&text).map_err(|e| ApiError::internal(e.into()))?))
}
