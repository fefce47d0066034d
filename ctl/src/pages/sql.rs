//! `GET /sql`: the SQL runner. The editor arrives in a later issue; the JSON API (`/api/sql/runs`) works today.

use askama::Template;
use askama_web::WebTemplate;

use crate::pages::Frame;
use crate::web::session::SignedIn;

#[derive(Template, WebTemplate)]
#[template(path = "sql.html")]
pub struct SqlPage {
    frame: Frame,
}

pub async fn page(who: SignedIn) -> SqlPage {
    SqlPage { frame: Frame::signed_in(&who, "SQL", "sql") }
}
