//! `GET /settings`: the instance's settings. The editor arrives in a later issue.

use askama::Template;
use askama_web::WebTemplate;

use crate::pages::Frame;
use crate::web::session::SignedIn;

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    frame: Frame,
}

pub async fn page(who: SignedIn) -> SettingsPage {
    SettingsPage { frame: Frame::signed_in(&who, "Settings", "settings") }
}
