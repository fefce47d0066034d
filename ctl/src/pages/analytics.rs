//! `GET /analytics`: usage metrics. The charts arrive in a later issue.

use askama::Template;
use askama_web::WebTemplate;

use crate::pages::Frame;
use crate::web::session::SignedIn;

#[derive(Template, WebTemplate)]
#[template(path = "analytics.html")]
pub struct AnalyticsPage {
    frame: Frame,
}

pub async fn page(who: SignedIn) -> AnalyticsPage {
    AnalyticsPage { frame: Frame::signed_in(&who, "Analytics", "analytics") }
}
