//! `GET /audit`: the audit log. The viewer arrives in a later issue.

use askama::Template;
use askama_web::WebTemplate;

use crate::pages::Frame;
use crate::web::session::SignedIn;

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    frame: Frame,
}

pub async fn page(who: SignedIn) -> AuditPage {
    AuditPage { frame: Frame::signed_in(&who, "Audit log", "audit") }
}
