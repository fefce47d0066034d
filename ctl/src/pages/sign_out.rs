//! `POST /sign-out`: ends the session (`dashboard_auth.sign_out`), drops the cookie and
//! goes back to sign-in, which says so.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use crate::pages::{call_one, see_other};
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::{clear_session_cookie, SignedInForm};

/// Nothing but the CSRF field, which the guard reads.
#[derive(Deserialize)]
pub struct SignOutForm {}

pub async fn submit(State(state): State<AppState>, SignedInForm { who, form: SignOutForm {} }: SignedInForm<SignOutForm>) -> Result<Response, PageError> {
    call_one(&state, &who.context, "SELECT ok FROM dashboard_auth.sign_out($1)", &[&who.token()]).await?;
    Ok(see_other("/sign-in?reason=signed_out", vec![clear_session_cookie(&state)]))
}
