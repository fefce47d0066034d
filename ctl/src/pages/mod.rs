//! The dashboard's pages: one module per page, each with its template of the same name
//! in `ctl/templates/`, each calling one to three extension functions and drawing the
//! answer. The frame (`base.html`) is [`Frame`].
//!
//! Navigation, and the capability (from `dashboard_auth.get_session`) each entry needs:
//! Tables, Settings, Analytics, SQL and Audit log are open to every role (viewers read);
//! Users needs `manage_users`, which viewers lack, since every function of user
//! management refuses them.

pub mod analytics;
pub mod audit;
pub mod grid_query;
pub mod home;
pub mod one_time_link;
pub mod second_factor;
pub mod settings;
pub mod setup;
pub mod sign_in;
pub mod sign_out;
pub mod sql;
pub mod table_rows;
pub mod table_structure;
pub mod tables;
pub mod users;

use std::time::Duration;

use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::StatusCode;
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::db::{self, RequestContext};
use crate::state::AppState;
use crate::web::assets;
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::page))
        .route("/sign-in", get(sign_in::page).post(sign_in::submit))
        .route("/sign-in/code", get(second_factor::page).post(second_factor::submit))
        .route("/sign-out", post(sign_out::submit))
        .route("/setup", get(setup::page).post(setup::submit))
        .route("/invite", get(one_time_link::invite_page).post(one_time_link::invite_submit))
        .route("/reset", get(one_time_link::reset_page).post(one_time_link::reset_submit))
        .route("/tables", get(tables::page))
        .route("/tables/{schema}/{table}", get(table_rows::page))
        .route("/tables/{schema}/{table}/structure", get(table_structure::page))
        .route("/users", get(users::page))
        .route("/settings", get(settings::page))
        .route("/analytics", get(analytics::page))
        .route("/sql", get(sql::page))
        .route("/audit", get(audit::page))
}

/// One entry of the navigation.
pub struct NavItem {
    pub key: &'static str,
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// key, label, path, the capability it needs (None: every signed-in admin).
const NAVIGATION: [(&str, &str, &str, Option<&str>); 6] = [
    ("tables", "Tables", "/tables", None),
    ("users", "Users", "/users", Some("manage_users")),
    ("settings", "Settings", "/settings", None),
    ("analytics", "Analytics", "/analytics", None),
    ("sql", "SQL", "/sql", None),
    ("audit", "Audit log", "/audit", None),
];

/// The words for each capability of `dashboard_auth.role_capabilities`, for a page that
/// refuses a session without one: the only place that names them.
const CAPABILITY_WORDS: [(&str, &str); 8] = [
    ("edit", "editing table rows"),
    ("export", "exporting data"),
    ("impersonate", "acting as one of your app's users"),
    ("manage_users", "managing your app's users"),
    ("manage_admins", "managing dashboard admins"),
    ("change_settings", "changing settings"),
    ("run_writes", "running SQL that changes data"),
    ("manage_backends", "managing backends"),
];

fn capability_words(capability: &str) -> &str {
    CAPABILITY_WORDS.iter().find(|(id, _)| *id == capability).map_or(capability, |(_, words)| words)
}

/// A page for sessions with `capability` (as the functions behind it refuse the others):
/// a session without it gets the 403 page, saying in words what its role lacks.
pub fn require(who: &SignedIn, capability: &str) -> Result<(), PageError> {
    if who.may(capability) {
        return Ok(());
    }
    Err(PageError::NotAllowed(format!(
        "This page is for {}, which is not part of the {} role. Ask an admin if you need it.",
        capability_words(capability),
        who.role
    )))
}

/// Who is signed in, as the frame shows it.
pub struct Who {
    pub name: String,
    pub email: String,
    pub role: String,
}

/// What `base.html` draws around every page.
pub struct Frame {
    pub title: String,
    pub css_url: String,
    pub theme_js_url: String,
    pub icon_url: String,
    /// `data-theme` on `<html>`: the visitor's choice, or None to follow the system.
    pub theme: Option<&'static str>,
    pub who: Option<Who>,
    pub nav: Vec<NavItem>,
    /// The sign-out form's CSRF token (empty when signed out).
    pub csrf: String,
}

impl Frame {
    /// A page without a session: sign-in, setup, the links, errors.
    pub fn public(title: &str, theme: Option<&'static str>) -> Self {
        Frame {
            title: title.to_string(),
            css_url: assets::url("app.css"),
            theme_js_url: assets::url("theme.js"),
            icon_url: assets::url("icon.svg"),
            theme,
            who: None,
            nav: Vec::new(),
            csrf: String::new(),
        }
    }

    /// A page of a signed-in admin: the navigation it may use, `active` marked.
    pub fn signed_in(who: &SignedIn, title: &str, active: &str) -> Self {
        let nav = NAVIGATION
            .iter()
            .filter(|(_, _, _, capability)| capability.is_none_or(|c| who.may(c)))
            .map(|&(key, label, href, _)| NavItem { key, label, href, current: key == active })
            .collect();
        Frame {
            who: Some(Who { name: who.name.clone(), email: who.email.clone(), role: who.role.clone() }),
            nav,
            csrf: who.csrf.clone(),
            ..Frame::public(title, who.theme)
        }
    }
}

/// `valid_for` of a new session: FLUXBASE_ADMIN_SESSION_TIMEOUT, or NULL for the
/// database's setting. Bound as text and cast in SQL (`$n::text::interval`).
pub fn valid_for(state: &AppState) -> Option<String> {
    state.session_timeout().map(|d: Duration| format!("{} seconds", d.as_secs()))
}

/// One statement in its own dashboard transaction (one round trip, `db::call`): the
/// pages' calls are one function each.
pub async fn call_opt(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, PageError> {
    let mut rows = db::call(state.pool(), state.database_config(), context, db::DEFAULT_STATEMENT_TIMEOUT, sql, params).await?;
    if rows.len() > 1 {
        return Err(PageError::unavailable(anyhow::anyhow!("{sql} returned more than one row")));
    }
    Ok(rows.pop())
}

pub async fn call_one(
    state: &AppState,
    context: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, PageError> {
    call_opt(state, context, sql, params)
        .await?
        .ok_or_else(|| PageError::Internal(anyhow::anyhow!("{sql} returned no row")))
}

/// 303 to `to`, setting these cookies.
pub fn see_other(to: &str, cookies: Vec<String>) -> Response {
    (
        StatusCode::SEE_OTHER,
        AppendHeaders(cookies.into_iter().map(|c| (SET_COOKIE, c))),
        [(LOCATION, to.to_string())],
    )
        .into_response()
}

/// A sign-in's answer (`dashboard_auth.login_result`), as every page that signs in reads it.
pub struct LoginResult {
    pub ok: bool,
    pub code: String,
    pub message: String,
    pub session_token: Option<String>,
    pub expires_at: Option<std::time::SystemTime>,
    pub challenge_token: Option<String>,
}

pub const LOGIN_RESULT_COLUMNS: &str = "ok, code, message, session_token, expires_at, challenge_token";

impl From<Row> for LoginResult {
    fn from(row: Row) -> Self {
        LoginResult {
            ok: row.get("ok"),
            code: row.get("code"),
            message: row.get("message"),
            session_token: row.get("session_token"),
            expires_at: row.get("expires_at"),
            challenge_token: row.get("challenge_token"),
        }
    }
}

/// Where a sign-in leads: signed in, to `next`; asked for a code, to the code step (with
/// `email`, as typed, so that the code step can name the account); else None, and the page
/// shows the extension's message.
pub fn after_sign_in(state: &AppState, result: &LoginResult, next: Option<&str>, email: Option<&str>) -> Option<Response> {
    use crate::web::session::{challenge_cookie, clear_challenge_cookie, encode, session_cookie};
    if result.ok {
        let token = result.session_token.as_deref()?;
        let to = next.unwrap_or("/tables");
        return Some(see_other(to, vec![session_cookie(state, token, result.expires_at), clear_challenge_cookie(state)]));
    }
    if result.code == "second_factor_required" {
        let challenge = result.challenge_token.as_deref()?;
        let to = match next {
            Some(next) => format!("/sign-in/code?next={}", encode(next)),
            None => "/sign-in/code".to_string(),
        };
        return Some(see_other(&to, vec![challenge_cookie(state, challenge, email)]));
    }
    None
}
