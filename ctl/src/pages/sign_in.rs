//! `GET /sign-in` and `POST /sign-in`: email and password (`dashboard_auth.sign_in`).
//! With two-factor sign-in on, the answer is a challenge, and the code step follows
//! (`second_factor`). A refusal shows the extension's message, which is the same for a
//! wrong password, an unknown email and a locked account.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::pages::{after_sign_in, call_one, valid_for, Frame, LoginResult, LOGIN_RESULT_COLUMNS};
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::{safe_next, theme, SameOriginForm};

#[derive(Template, WebTemplate)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    frame: Frame,
    email: String,
    next: String,
    /// Why you are here (a session that ended), in the status region.
    status: Option<&'static str>,
    /// The extension's refusal.
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    reason: Option<String>,
}

/// The words for each reason a session ends (`dashboard_auth.get_session_health`); an
/// unknown reason shows nothing, so a link cannot put words on this page.
fn reason_message(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "idle" => "You were signed out after a while without activity. Sign in again to continue where you were.",
        "expired" => "Your session reached its full lifetime. Sign in again to continue where you were.",
        "signed_out" => "You are signed out.",
        "revoked" => "Your session was ended: your password changed, the account was locked, or another admin ended it. Sign in again.",
        "disabled" => "This account is disabled. Ask another admin.",
        "unknown" => "Your session is no longer valid. Sign in again.",
        "challenge_expired" => "That sign-in took too long or was already used. Sign in again.",
        _ => return None,
    })
}

pub async fn page(headers: HeaderMap, Query(query): Query<SignInQuery>) -> SignInPage {
    SignInPage {
        frame: Frame::public("Sign in", theme(&headers)),
        email: String::new(),
        next: safe_next(query.next.as_deref()).unwrap_or_default(),
        status: query.reason.as_deref().and_then(reason_message),
        error: None,
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn submit(State(state): State<AppState>, request: SameOriginForm<SignInForm>) -> Result<Response, PageError> {
    let SameOriginForm { form, context, headers } = request;
    let next = safe_next(form.next.as_deref());
    // Password hashing: one of a bounded number at a time (AppState::login_permit).
    let permit = state.login_permit().await;
    let row = call_one(
        &state,
        &context,
        &format!("SELECT {LOGIN_RESULT_COLUMNS} FROM dashboard_auth.sign_in($1, $2, $3::text::interval)"),
        &[&form.email, &form.password, &valid_for(&state)],
    )
    .await?;
    drop(permit);
    let result = LoginResult::from(row);
    if let Some(response) = after_sign_in(&state, &result, next.as_deref(), Some(&form.email)) {
        return Ok(response);
    }
    Ok(SignInPage {
        frame: Frame::public("Sign in", theme(&headers)),
        email: form.email,
        next: next.unwrap_or_default(),
        status: None,
        error: Some(result.message),
    }
    .into_response())
}
