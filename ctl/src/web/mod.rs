//! What every page shares: the session cookie, CSRF and the guard (`session`), the
//! security headers and the CSP reports (`security`), the compiled-in assets (`assets`)
//! and the error pages (`errors`). The pages themselves are in `crate::pages`.

pub mod assets;
pub mod errors;
pub mod security;
pub mod session;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// The routes that are not pages: assets, the CSP report endpoint, the test pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .route("/csp-report", post(security::csp_report))
        .route("/__test/csp-reports", get(security::test_csp_reports))
        .route("/__test/inline-script", get(security::test_inline_script))
}
