//! The headers every response carries, and the Content Security Policy's reports.
//!
//! The policy allows our own scripts, styles and images only: no inline script or style,
//! no third party, no framing. A browser that blocks something posts a report to
//! `/csp-report`; it is logged at warn. With FLUXBASE_ADMIN_TEST_PAGES=1 the reports are
//! also counted for the browser tests (`GET /__test/csp-reports`), next to a page that
//! breaks the policy on purpose (`GET /__test/inline-script`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;
use crate::web::errors::PageError;

pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
    report-uri /csp-report";
const HSTS: &str = "max-age=31536000";
const KEPT_REPORTS: usize = 50;

/// Middleware: the security headers on every response, pages, assets, errors and the API.
pub async fn headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if state.https() {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

/// The reports this copy has received: how many, and the last few.
#[derive(Default)]
pub struct CspReports {
    count: AtomicU64,
    last: Mutex<VecDeque<Value>>,
}

impl CspReports {
    fn record(&self, report: Value) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() == KEPT_REPORTS {
            last.pop_front();
        }
        last.push_back(report);
    }

    fn snapshot(&self) -> Value {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        json!({ "count": self.count.load(Ordering::Relaxed), "reports": last.iter().collect::<Vec<_>>() })
    }
}

/// The violations in a report body, in one shape: the older `application/csp-report`
/// (`{"csp-report": {...}}`) and the Reporting API's `application/reports+json` (a list
/// of `{"type": "csp-violation", "body": {...}}`).
fn violations(body: &Value) -> Vec<Value> {
    let one = |report: &Value, blocked: &str, directive: &str, effective: &str, document: &str| {
        json!({
            "blocked_uri": report.get(blocked).cloned().unwrap_or(Value::Null),
            "directive": report.get(effective).or_else(|| report.get(directive)).cloned().unwrap_or(Value::Null),
            "document_uri": report.get(document).cloned().unwrap_or(Value::Null),
        })
    };
    if let Some(report) = body.get("csp-report") {
        return vec![one(report, "blocked-uri", "violated-directive", "effective-directive", "document-uri")];
    }
    body.as_array()
        .map(|list| {
            list.iter()
                .filter(|r| r.get("type").and_then(Value::as_str) == Some("csp-violation"))
                .filter_map(|r| r.get("body"))
                .map(|report| one(report, "blockedURL", "violatedDirective", "effectiveDirective", "documentURL"))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /csp-report`. No session and no CSRF: a browser sends it on its own, and it
/// changes nothing but a log line and a counter.
pub async fn csp_report(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(media.as_str(), "application/csp-report" | "application/reports+json" | "application/json") {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for violation in violations(&parsed) {
        tracing::warn!(
            blocked_uri = %violation["blocked_uri"],
            directive = %violation["directive"],
            document_uri = %violation["document_uri"],
            "Content Security Policy violation"
        );
        state.csp_reports().record(violation);
    }
    StatusCode::NO_CONTENT
}

/// `GET /__test/csp-reports` (FLUXBASE_ADMIN_TEST_PAGES=1 only): `{"count", "reports"}`.
pub async fn test_csp_reports(State(state): State<AppState>) -> Response {
    if !state.test_pages() {
        return PageError::NotFound.into_response();
    }
    Json(state.csp_reports().snapshot()).into_response()
}

/// `GET /__test/inline-script` (FLUXBASE_ADMIN_TEST_PAGES=1 only): a page that breaks the
/// policy on purpose, with an inline script and an inline style, so that the browser
/// tests can prove they notice.
pub async fn test_inline_script(State(state): State<AppState>) -> Response {
    if !state.test_pages() {
        return PageError::NotFound.into_response();
    }
    Html(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Inline script (test page)</title>\n\
         <style>body { color: red; }</style></head>\n<body><h1 style=\"color: red\">This page breaks the CSP on purpose</h1>\n\
         <script>document.body.dataset.inline = 'ran';</script></body></html>\n",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_report_formats_give_the_blocked_uri_and_the_directive() {
        let old = json!({"csp-report": {"blocked-uri": "inline", "violated-directive": "script-src-elem", "document-uri": "http://x/a"}});
        assert_eq!(violations(&old), vec![json!({"blocked_uri": "inline", "directive": "script-src-elem", "document_uri": "http://x/a"})]);
        let new = json!([{"type": "csp-violation", "body": {"blockedURL": "inline", "effectiveDirective": "style-src-attr", "documentURL": "http://x/b"}},
                         {"type": "deprecation", "body": {}}]);
        assert_eq!(violations(&new), vec![json!({"blocked_uri": "inline", "directive": "style-src-attr", "document_uri": "http://x/b"})]);
    }
}
