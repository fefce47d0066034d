//! `GET /setup?token=` and `POST /setup`: the first admin, through the one-time link that
//! `fluxbase serve` prints while no admin exists (`dashboard_auth.needs_setup`,
//! `get_link`, `complete_setup`). Once an admin exists, the page is gone (404).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::client::ClientContext;
use crate::db::RequestContext;
use crate::pages::{after_sign_in, call_one, see_other, valid_for, Frame, LoginResult, LOGIN_RESULT_COLUMNS};
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::{theme, SameOriginForm};

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
pub struct SetupPage {
    frame: Frame,
    token: String,
    /// The link is good (else the page says to use the printed link).
    link_ok: bool,
    expires: String,
    email: String,
    name: String,
    error: Option<String>,
    /// The field the refusal is about, which gets the focus: `password` for a weak one,
    /// else `email` (empty without a refusal).
    error_field: &'static str,
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Query(query): Query<SetupQuery>,
) -> Result<SetupPage, PageError> {
    let token = query.token.unwrap_or_default();
    let Some(expires) = link_expiry(&state, &context, &token).await? else {
        return Err(PageError::NotFound);
    };
    Ok(SetupPage {
        frame: Frame::public("Create the first admin", theme(&headers)),
        link_ok: expires.is_some(),
        expires: expires.unwrap_or_default(),
        token,
        email: String::new(),
        name: String::new(),
        error: None,
        error_field: "",
    })
}

/// None once an admin exists; else until when the setup link works (None: it does not).
async fn link_expiry(state: &AppState, context: &RequestContext, token: &str) -> Result<Option<Option<String>>, PageError> {
    let row = call_one(
        state,
        context,
        "SELECT dashboard_auth.needs_setup(),
                (SELECT to_char(l.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
                   FROM dashboard_auth.get_link($1) l WHERE l.kind = 'setup')",
        &[&token],
    )
    .await?;
    Ok(row.get::<_, bool>(0).then(|| row.get(1)))
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    email: String,
    name: String,
    password: String,
}

pub async fn submit(State(state): State<AppState>, request: SameOriginForm<SetupForm>) -> Result<Response, PageError> {
    let SameOriginForm { form, context, headers } = request;
    // Password hashing: one of a bounded number at a time (AppState::login_permit).
    let permit = state.login_permit().await;
    let row = call_one(
        &state,
        &context,
        &format!("SELECT {LOGIN_RESULT_COLUMNS} FROM dashboard_auth.complete_setup($1, $2, $3, $4, $5::text::interval)"),
        &[&form.token, &form.email, &form.name, &form.password, &valid_for(&state)],
    )
    .await?;
    drop(permit);
    let result = LoginResult::from(row);
    if let Some(response) = after_sign_in(&state, &result, None, Some(&form.email)) {
        return Ok(response);
    }
    if result.code == "already_set_up" {
        return Ok(see_other("/sign-in", Vec::new()));
    }
    // The refusal keeps the page as it was: the link's expiry too.
    let expires = match link_expiry(&state, &context, &form.token).await? {
        Some(expires) => expires.filter(|_| result.code != "invalid_link"),
        None => return Ok(see_other("/sign-in", Vec::new())),
    };
    Ok(SetupPage {
        frame: Frame::public("Create the first admin", theme(&headers)),
        link_ok: expires.is_some(),
        expires: expires.unwrap_or_default(),
        token: form.token,
        email: form.email,
        name: form.name,
        error: Some(result.message),
        error_field: if result.code == "weak_password" { "password" } else { "email" },
    }
    .into_response())
}
