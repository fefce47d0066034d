//! `GET /`: to the tables when signed in, to sign-in when not.

use axum::response::{IntoResponse, Response};

use crate::pages::see_other;
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

pub async fn page(who: Result<SignedIn, PageError>) -> Response {
    match who {
        Ok(_) => see_other("/tables", Vec::new()),
        Err(PageError::Redirect { set_cookie, .. }) => see_other("/sign-in", set_cookie.into_iter().collect()),
        Err(e) => e.into_response(),
    }
}
