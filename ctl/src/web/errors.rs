//! The pages' errors: one type, one page. A failure of the server's own shows a reference
//! and nothing else (no SQL, no address, no trace); the log keeps the detail under that
//! reference. The JSON API uses the same reference ([`log_with_reference`]).

use askama::Template;
use askama_web::WebTemplate;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::pages::Frame;

/// Logs a failure at warn with a fresh reference and returns the reference, which the
/// answer shows so that an operator can find the line.
pub fn log_with_reference(e: &anyhow::Error) -> String {
    let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    tracing::warn!(reference = %reference, error = %format!("{e:#}"), "request failed");
    reference
}

pub enum PageError {
    NotFound,
    /// A form that cannot be read.
    BadRequest,
    /// Refused: another site's post, a missing or wrong CSRF token, a capability the
    /// session lacks. The text says what to do.
    Forbidden(&'static str),
    /// Refused: the session's role lacks what the page needs (`pages::require`).
    NotAllowed(String),
    /// Somewhere else first (sign-in), maybe dropping a cookie.
    Redirect { to: String, set_cookie: Option<String> },
    /// The database cannot be reached.
    Unavailable(anyhow::Error),
    /// Any other failure of the server's own.
    Internal(anyhow::Error),
}

impl PageError {
    pub fn unavailable(e: anyhow::Error) -> Self {
        PageError::Unavailable(e)
    }
}

impl From<tokio_postgres::Error> for PageError {
    fn from(e: tokio_postgres::Error) -> Self {
        let detail = anyhow::anyhow!(crate::db::describe_pg_error(&e));
        if e.as_db_error().is_some() {
            PageError::Internal(detail)
        } else {
            PageError::Unavailable(detail)
        }
    }
}

/// A dashboard `db::call`: its setup failing is the database being unavailable, as in
/// `db::begin`; the statement's own error maps as above.
impl From<crate::db::CallError> for PageError {
    fn from(e: crate::db::CallError) -> Self {
        match e {
            crate::db::CallError::Unavailable(e) => PageError::Unavailable(e),
            crate::db::CallError::Db(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        PageError::Internal(e)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    frame: Frame,
    heading: &'static str,
    message: String,
    reference: Option<String>,
}

fn page(status: StatusCode, title: &'static str, message: String, reference: Option<String>) -> Response {
    let frame = Frame::public(title, None);
    (status, ErrorPage { frame, heading: title, message, reference }).into_response()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotFound => page(
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is no page at this address. Check the link, or go to the start.".into(),
                None,
            ),
            PageError::BadRequest => page(
                StatusCode::BAD_REQUEST,
                "The form could not be read",
                "Part of the form was missing. Open the page again and send the form from there.".into(),
                None,
            ),
            PageError::Forbidden(message) => page(StatusCode::FORBIDDEN, "Not allowed", message.into(), None),
            PageError::NotAllowed(message) => page(StatusCode::FORBIDDEN, "Not allowed", message, None),
            PageError::Redirect { to, set_cookie } => {
                let mut response = (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response();
                if let Some(cookie) = set_cookie.and_then(|c| c.parse().ok()) {
                    response.headers_mut().append(SET_COOKIE, cookie);
                }
                response
            }
            PageError::Unavailable(e) => {
                let reference = log_with_reference(&e);
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database cannot be reached",
                    "The dashboard cannot reach its database right now. Try again in a moment; if it persists, \
                     the server's log has the detail under this reference."
                        .into(),
                    Some(reference),
                )
            }
            PageError::Internal(e) => {
                let reference = log_with_reference(&e);
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete this request. The server's log has the detail under this reference."
                        .into(),
                    Some(reference),
                )
            }
        }
    }
}

/// Every path no route has: a page, or the API's JSON error under `/api/`.
pub async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route").into_response()
    } else {
        PageError::NotFound.into_response()
    }
}
