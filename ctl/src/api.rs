//! What the JSON API's routes share: the dashboard session from the `Authorization:
//! Bearer` header, and one shape for errors, `{"error": {"code", "message", ...}}`, with
//! an HTTP status that follows the SQLSTATE.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An API error: a status and the JSON body that explains it.
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.body }))).into_response()
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, body: json!({ "code": code, "message": message.into() }) }
    }

    /// A database error: the server's SQLSTATE, message, detail and hint. Errors
    /// that are not the database's own (a lost connection) are a 503.
    pub fn from_pg(e: &tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            return ApiError::internal(anyhow::anyhow!(crate::db::describe_pg_error(e)));
        };
        let code = db.code().code();
        let status = match code {
            "28000" => StatusCode::UNAUTHORIZED,
            "42501" => StatusCode::FORBIDDEN,
            "P0002" | "42P01" | "42704" => StatusCode::NOT_FOUND,
            "55000" => StatusCode::CONFLICT,
            c if c.starts_with("22") => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            body: json!({ "code": code, "message": db.message(), "detail": db.detail(), "hint": db.hint() }),
        }
    }

    /// A failure of the server's own (no database, a lost connection). Its detail names
    /// the database's address and the server's internals, so it goes to the log only; the
    /// client gets a reference to find it there.
    pub fn internal(e: anyhow::Error) -> Self {
        // One mechanism for the API and the pages (crate::web::errors).
        let reference = crate::web::errors::log_with_reference(&e);
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("The dashboard cannot reach its database right now. Try again; if it persists, the server's log has the detail under reference {reference}."),
        );
        error.body["reference"] = json!(reference);
        error
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::from_pg(&e)
    }
}

/// The dashboard session token from `Authorization: Bearer <token>`. The extension
/// checks it; here it is only read.
pub fn session_token(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "28000", "sign in first: send Authorization: Bearer <session token>"))
}
