//! `GET /tables`: the database explorer. The browser of tables arrives in a later issue; until then the page says so.

use askama::Template;
use askama_web::WebTemplate;

use crate::pages::Frame;
use crate::web::session::SignedIn;

#[derive(Template, WebTemplate)]
#[template(path = "tables.html")]
pub struct TablesPage {
    frame: Frame,
}

pub async fn page(who: SignedIn) -> TablesPage {
    TablesPage { frame: Frame::signed_in(&who, "Tables", "tables") }
}
