//! The stylesheet, scripts and icon, compiled into the binary (`ctl/assets/`) and served
//! under names that carry a hash of their content (`/assets/app.3f2a….css`), so that a
//! browser may keep each for a year: a changed file is a new name. Templates get the
//! name from [`url`], the one place that knows it.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::web::errors::PageError;

#[derive(Embed)]
#[folder = "assets/"]
struct Files;

struct Asset {
    content_type: &'static str,
    body: std::borrow::Cow<'static, [u8]>,
}

struct Table {
    /// `app.css` -> `/assets/app.<hash>.css`
    urls: HashMap<String, String>,
    /// `app.<hash>.css` -> the file
    by_hashed_name: HashMap<String, Asset>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut urls = HashMap::new();
    let mut by_hashed_name = HashMap::new();
    for name in Files::iter() {
        let Some(file) = Files::get(&name) else { continue };
        let hash: String = file.metadata.sha256_hash()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let hashed = match name.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
            None => format!("{name}.{hash}"),
        };
        urls.insert(name.to_string(), format!("/assets/{hashed}"));
        by_hashed_name.insert(hashed, Asset { content_type: content_type(&name), body: file.data });
    }
    Table { urls, by_hashed_name }
});

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// The URL of an asset by its file name in `ctl/assets/` (`app.css`).
pub fn url(name: &str) -> String {
    TABLE.urls.get(name).cloned().unwrap_or_else(|| {
        debug_assert!(false, "no asset named {name}");
        format!("/assets/{name}")
    })
}

/// `GET /assets/{hashed name}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = TABLE.by_hashed_name.get(&file) else {
        return PageError::NotFound.into_response();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        asset.body.clone(),
    )
        .into_response()
}

/// `GET /favicon.ico`, which a browser asks for on its own (on a JSON answer such as
/// `/healthz`, which links no icon): the hashed icon, by a redirect that is not cached for
/// long, as the hashed name changes with the icon.
pub async fn favicon() -> Response {
    (
        axum::http::StatusCode::FOUND,
        [
            (axum::http::header::LOCATION, HeaderValue::from_str(&url("icon.svg")).expect("an asset URL is a header value")),
            (CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url_that_serves_it() {
        for name in ["app.css", "theme.js", "icon.svg"] {
            let url = url(name);
            let hashed = url.strip_prefix("/assets/").unwrap();
            assert_ne!(hashed, name);
            assert!(TABLE.by_hashed_name.contains_key(hashed), "{url}");
        }
    }

    #[tokio::test]
    async fn favicon_ico_leads_to_the_hashed_icon() {
        let response = favicon().await;
        assert_eq!(response.status(), axum::http::StatusCode::FOUND);
        assert_eq!(response.headers()[axum::http::header::LOCATION], url("icon.svg").as_str());
    }
}
