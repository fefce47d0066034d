//! The SQL runner's routes. The rules live in the extension (sql/sql_runner.sql); this
//! module only keeps the three steps of a run on one pooled connection, sets the
//! statement's timeout on its transaction, collects the server's notices, and resets
//! the connection before it goes back to the pool.
//!
//! - `POST /api/sql/runs` `{"statement", "allow_writes", "explain", "impersonation_id"}`
//! - `POST /api/sql/runs/{run_id}/cancel`
//! - `GET /api/sql/history`

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use deadpool_postgres::Object;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::error::ErrorPosition;
use uuid::Uuid;

use crate::api::{self, ApiError};
use crate::db::{self, DbRole, DEFAULT_STATEMENT_TIMEOUT};
use crate::notices;
use crate::server::AppState;

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
pub async fn run(State(state): State<AppState>, headers: HeaderMap, Json(request): Json<RunRequest>) -> Result<Json<Value>, ApiError> {
    let token = api::session_token(&headers)?;
    let impersonation_id = request.impersonation_id.as_deref().map(|t| parse_uuid(t, "impersonation_id")).transpose()?;
    tokio::spawn(run_to_the_end(state, token, request, impersonation_id))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the SQL run stopped: {e}")))?
}

async fn run_to_the_end(state: AppState, token: String, request: RunRequest, impersonation_id: Option<Uuid>) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let mut client = connection(&state).await?;

    // 1. The intent, committed before anything runs.
    let tx = db::begin(&mut client, DbRole::Dashboard, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let begun = tx
        .query_one(
            "SELECT ok, code, message, run_id, run_as, read_only, timeout_ms FROM fluxbase_admin.sql_begin($1, $2, $3, $4, $5)",
            &[&token, &request.statement, &request.allow_writes, &request.explain, &impersonation_id],
        )
        .await?;
    tx.commit().await?;
    if !begun.get::<_, bool>("ok") {
        return Ok(Json(json!({
            "ok": false, "code": begun.get::<_, String>("code"), "message": begun.get::<_, String>("message"),
        })));
    }
    let run_id: Uuid = begun.get("run_id");
    let read_only: bool = begun.get("read_only");
    let timeout_ms: i64 = begun.get("timeout_ms");

    // 2. The statement, on the same connection (sql_execute checks that).
    let pid: i32 = client.query_one("SELECT pg_catalog.pg_backend_pid()", &[]).await?.get(0);
    notices::clear(pid);
    let outcome = execute(&mut client, &token, run_id, &request.statement, read_only, timeout_ms).await;

    // 3. A clean connection for the pool's next user: role, settings, temporary objects,
    // prepared statements, listeners. A connection that cannot be reset is not reused.
    if let Err(e) = client.batch_execute("DISCARD ALL").await {
        tracing::warn!(error = %e, "cannot reset a connection after a SQL run; dropping it");
        let _ = deadpool_postgres::Object::take(client);
    }
    let notices = notices::take(pid);
    let took = started.elapsed().as_millis() as u64;
    Ok(Json(match outcome {
        Ok(mut result) => {
            result["ok"] = json!(true);
            result["read_only"] = json!(read_only);
            result["notices"] = json!(notices);
            result["duration_ms"] = json!(took);
            result
        }
        Err(failure) => {
            let mut answer = failure;
            answer["ok"] = json!(false);
            answer["run_id"] = json!(run_id.to_string());
            answer["notices"] = json!(notices);
            answer["duration_ms"] = json!(took);
            answer
        }
    }))
}

/// Steps 2 and 3 of a run: the statement in its own transaction, then the record of how
/// it ended (with a write, in the same transaction; otherwise after the rollback).
/// A failed statement comes back as `Err` with its SQLSTATE, message and position.
async fn execute(client: &mut Object, token: &str, run_id: Uuid, statement: &str, read_only: bool, timeout_ms: i64) -> Result<Value, Value> {
    let transport = |e: tokio_postgres::Error| json!({"code": "unavailable", "message": db::describe_pg_error(&e), "status": "failed"});
    let tx = client.transaction().await.map_err(transport)?;
    tx.batch_execute(&format!("SET LOCAL ROLE fluxbase_dashboard; SET LOCAL statement_timeout = {timeout_ms}"))
        .await
        .map_err(transport)?;
    let executed = tx.query_one("SELECT fluxbase_admin.sql_execute($1, $2, $3)::text", &[&token, &run_id, &statement]).await;
    match executed {
        Ok(row) => {
            let result: Value = serde_json::from_str(row.get(0)).unwrap_or(Value::Null);
            let outcome = json!({
                "status": "succeeded", "row_count": result["row_count"], "affected": result["affected"],
                "truncated": result["truncated"],
            });
            if read_only {
                tx.rollback().await.map_err(transport)?;
                finish(client, token, run_id, &outcome).await.map_err(transport)?;
            } else {
                tx.execute("SELECT fluxbase_admin.sql_finish($1, $2, $3::text::jsonb)", &[&token, &run_id, &outcome.to_string()])
                    .await
                    .map_err(transport)?;
                tx.commit().await.map_err(transport)?;
            }
            Ok(result)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            let failure = describe_failure(&e, statement);
            let outcome = json!({
                "status": failure["status"], "error_code": failure["code"], "error_message": failure["message"],
            });
            // The intent is recorded already; a lost connection only loses this ending.
            if let Err(e) = finish(client, token, run_id, &outcome).await {
                tracing::warn!(error = %e, %run_id, "cannot record how a SQL run ended");
            }
            Err(failure)
        }
    }
}

async fn finish(client: &mut Object, token: &str, run_id: Uuid, outcome: &Value) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard").await?;
    tx.execute("SELECT fluxbase_admin.sql_finish($1, $2, $3::text::jsonb)", &[&token, &run_id, &outcome.to_string()]).await?;
    tx.commit().await
}

/// A failed statement as the runner reports it: SQLSTATE, message, detail, hint, and the
/// position in the statement's own text (1-based characters), and how the run ended.
fn describe_failure(e: &tokio_postgres::Error, statement: &str) -> Value {
    let Some(db) = e.as_db_error() else {
        return json!({"code": "unavailable", "message": db::describe_pg_error(e), "status": "failed"});
    };
    let code = db.code().code();
    let status = match code {
        "57014" if db.message().contains("user request") => "cancelled",
        "42501" if db.message().contains("changed the current role") => "rolled_back",
        _ => "failed",
    };
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
        "position": position, "status": status,
    })
}

/// Cancels a running statement of the caller's, whichever copy of fluxbase serve runs it.
pub async fn cancel(State(state): State<AppState>, headers: HeaderMap, Path(run_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let token = api::session_token(&headers)?;
    let run_id = parse_uuid(&run_id, "run id")?;
    let mut client = connection(&state).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let cancelled: bool = tx.query_one("SELECT fluxbase_admin.sql_cancel($1, $2)", &[&token, &run_id]).await?.get(0);
    tx.commit().await?;
    Ok(Json(json!({ "run_id": run_id.to_string(), "cancelled": cancelled })))
}

/// The caller's last statements, newest first.
pub async fn history(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let token = api::session_token(&headers)?;
    let mut client = connection(&state).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let text: String = tx
        .query_one(
            "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(h) ORDER BY h.started_at DESC), '[]')::text
               FROM fluxbase_admin.sql_history($1) h",
            &[&token],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(Json(json!({ "runs": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null) })))
}
