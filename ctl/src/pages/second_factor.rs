//! `GET /sign-in/code` and `POST /sign-in/code`: the code step of a two-factor sign-in
//! (`dashboard_auth.sign_in_second_factor`), with a code from the authenticator app or,
//! through `?method=recovery`, a recovery code. The challenge travels in a signed,
//! short-lived cookie, never in the page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::pages::{after_sign_in, call_one, see_other, Frame, LoginResult, LOGIN_RESULT_COLUMNS};
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::{challenge, clear_challenge_cookie, encode, safe_next, theme, SameOriginForm};

#[derive(Template, WebTemplate)]
#[template(path = "second_factor.html")]
pub struct SecondFactorPage {
    frame: Frame,
    next: String,
    /// A recovery code instead of the app's code.
    recovery: bool,
    /// The email typed at the password step (it travels with the challenge), if any.
    email: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct CodeQuery {
    next: Option<String>,
    method: Option<String>,
}

fn start_again(state: &AppState, next: Option<&str>) -> Response {
    let to = match next {
        Some(next) => format!("/sign-in?reason=challenge_expired&next={}", encode(next)),
        None => "/sign-in?reason=challenge_expired".to_string(),
    };
    see_other(&to, vec![clear_challenge_cookie(state)])
}

pub async fn page(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<CodeQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    let Some((_, email)) = challenge(&state, &headers) else {
        return start_again(&state, next.as_deref());
    };
    SecondFactorPage {
        frame: Frame::public("Two-factor code", theme(&headers)),
        next: next.unwrap_or_default(),
        recovery: query.method.as_deref() == Some("recovery"),
        email,
        error: None,
    }
    .into_response()
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
    next: Option<String>,
    method: Option<String>,
}

pub async fn submit(State(state): State<AppState>, request: SameOriginForm<CodeForm>) -> Result<Response, PageError> {
    let SameOriginForm { form, context, headers } = request;
    let next = safe_next(form.next.as_deref());
    let Some((challenge, email)) = challenge(&state, &headers) else {
        return Ok(start_again(&state, next.as_deref()));
    };
    // Password hashing: one of a bounded number at a time (AppState::login_permit).
    let permit = state.login_permit().await;
    let row = call_one(
        &state,
        &context,
        &format!("SELECT {LOGIN_RESULT_COLUMNS} FROM dashboard_auth.sign_in_second_factor($1, $2)"),
        &[&challenge, &form.code],
    )
    .await?;
    drop(permit);
    let result = LoginResult::from(row);
    if let Some(response) = after_sign_in(&state, &result, next.as_deref(), None) {
        return Ok(response);
    }
    if result.code == "invalid_challenge" {
        return Ok(start_again(&state, next.as_deref()));
    }
    Ok(SecondFactorPage {
        frame: Frame::public("Two-factor code", theme(&headers)),
        next: next.unwrap_or_default(),
        recovery: form.method.as_deref() == Some("recovery"),
        email,
        error: Some(result.message),
    }
    .into_response())
}
