//! `GET /users`: the app's users. Needs `manage_users`; the list arrives in a later issue.

use askama::Template;
use askama_web::WebTemplate;

use crate::pages::{require, Frame};
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
pub struct UsersPage {
    frame: Frame,
}

pub async fn page(who: SignedIn) -> Result<UsersPage, PageError> {
    // The functions behind this page refuse a session without it: so does the page.
    require(&who, "manage_users")?;
    Ok(UsersPage { frame: Frame::signed_in(&who, "Users", "users") })
}
