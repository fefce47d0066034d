//! `/invite?token=` and `/reset?token=`: an admin invite or a password reset
//! (`dashboard_auth.get_link`, `redeem_link`). The page greets the link's holder, takes a
//! new password and signs in, through the code step when two-factor sign-in is on.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::client::ClientContext;
use crate::db::RequestContext;
use crate::pages::{after_sign_in, call_one, call_opt, valid_for, Frame, LoginResult, LOGIN_RESULT_COLUMNS};
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::{theme, SameOriginForm};

#[derive(Clone, Copy)]
pub enum Kind {
    Invite,
    Reset,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Invite => "invite",
            Kind::Reset => "reset",
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "one_time_link.html")]
pub struct OneTimeLinkPage {
    frame: Frame,
    /// `invite` or `reset`: the form posts to `/{kind}`.
    kind: &'static str,
    token: String,
    valid: bool,
    email: String,
    name: String,
    expires: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct LinkForm {
    token: String,
    password: String,
}

async fn render(
    state: &AppState,
    context: &RequestContext,
    headers: &HeaderMap,
    kind: Kind,
    token: String,
    error: Option<String>,
) -> Result<OneTimeLinkPage, PageError> {
    let link = call_opt(
        state,
        context,
        "SELECT email, name, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
           FROM dashboard_auth.get_link($1) WHERE kind = $2",
        &[&token, &kind.name()],
    )
    .await?;
    let title = match kind {
        Kind::Invite => "Accept your invitation",
        Kind::Reset => "Choose a new password",
    };
    Ok(OneTimeLinkPage {
        frame: Frame::public(title, theme(headers)),
        kind: kind.name(),
        valid: link.is_some(),
        email: link.as_ref().map(|r| r.get(0)).unwrap_or_default(),
        name: link.as_ref().map(|r| r.get(1)).unwrap_or_default(),
        expires: link.as_ref().map(|r| r.get(2)).unwrap_or_default(),
        token,
        error,
    })
}

async fn page(state: AppState, context: RequestContext, headers: HeaderMap, kind: Kind, query: LinkQuery) -> Result<OneTimeLinkPage, PageError> {
    render(&state, &context, &headers, kind, query.token.unwrap_or_default(), None).await
}

async fn submit(state: AppState, request: SameOriginForm<LinkForm>, kind: Kind) -> Result<Response, PageError> {
    let SameOriginForm { form, context, headers } = request;
    // Password hashing: one of a bounded number at a time (AppState::login_permit).
    let permit = state.login_permit().await;
    let row = call_one(
        &state,
        &context,
        &format!("SELECT {LOGIN_RESULT_COLUMNS} FROM dashboard_auth.redeem_link($1, $2, $3::text::interval)"),
        &[&form.token, &form.password, &valid_for(&state)],
    )
    .await?;
    drop(permit);
    let result = LoginResult::from(row);
    if let Some(response) = after_sign_in(&state, &result, None, None) {
        return Ok(response);
    }
    Ok(render(&state, &context, &headers, kind, form.token, Some(result.message)).await?.into_response())
}

pub async fn invite_page(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
) -> Result<OneTimeLinkPage, PageError> {
    page(state, context, headers, Kind::Invite, query).await
}

pub async fn reset_page(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
) -> Result<OneTimeLinkPage, PageError> {
    page(state, context, headers, Kind::Reset, query).await
}

pub async fn invite_submit(State(state): State<AppState>, request: SameOriginForm<LinkForm>) -> Result<Response, PageError> {
    submit(state, request, Kind::Invite).await
}

pub async fn reset_submit(State(state): State<AppState>, request: SameOriginForm<LinkForm>) -> Result<Response, PageError> {
    submit(state, request, Kind::Reset).await
}
