//! The browser's session: the signed cookie, the CSRF token derived from it, and the
//! one guard every signed-in page takes ([`SignedIn`] for reads, [`SignedInForm`] for
//! posts). The extension decides whether a session is good (`dashboard_auth.get_session`);
//! here the cookie is only read, checked for our signature and handed on.
//!
//! - The cookie holds the session token and a MAC of it, `HttpOnly`, `SameSite=Strict`,
//!   `Path=/`; under an https public URL also `Secure`, with the `__Host-` prefix.
//! - A post needs a same-origin `Origin` or `Sec-Fetch-Site: same-origin` (every post,
//!   signed in or not: [`SameOriginForm`]), and, signed in, the CSRF token: the hidden
//!   field `csrf`, or the header `X-CSRF-Token` for `fetch`.
//! - Requests with `Authorization: Bearer` (the JSON API) never read the cookie: they
//!   need no CSRF token.

use std::time::{Duration, SystemTime};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac256, Digest};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::client::ClientContext;
use crate::db::{self, RequestContext};
use crate::state::AppState;
use crate::web::errors::PageError;

const SESSION_COOKIE: &str = "fluxbase_session";
const CHALLENGE_COOKIE: &str = "fluxbase_challenge";
/// How long the code step of a two-factor sign-in may wait; the extension's challenge
/// expires on its own, this only keeps the cookie from outliving it by much.
const CHALLENGE_MAX_AGE: Duration = Duration::from_secs(600);
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The keys derived from FLUXBASE_ADMIN_SESSION_SECRET. BLAKE2s keyed with a hash of
/// the secret: any length of secret, one 32-byte MAC key.
pub struct Keys {
    mac_key: [u8; 32],
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Keys { mac_key: Blake2s256::digest(secret).into() }
    }

    fn mac(&self, purpose: &str, value: &str) -> Blake2sMac256 {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.mac_key).expect("a 32-byte key fits BLAKE2s");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac
    }

    fn sign(&self, purpose: &str, value: &str) -> String {
        hex(&self.mac(purpose, value).finalize().into_bytes())
    }

    fn verify(&self, purpose: &str, value: &str, tag_hex: &str) -> bool {
        unhex(tag_hex).is_some_and(|tag| self.mac(purpose, value).verify_slice(&tag).is_ok())
    }

    /// `value.tag`: what a cookie carries.
    fn seal(&self, purpose: &str, value: &str) -> String {
        format!("{value}.{}", self.sign(purpose, value))
    }

    fn open(&self, purpose: &str, sealed: &str) -> Option<String> {
        let (value, tag) = sealed.rsplit_once('.')?;
        self.verify(purpose, value, tag).then(|| value.to_string())
    }

    /// The CSRF token of a session: a MAC of its token, so no server state and nothing
    /// to learn about the session from it.
    pub fn csrf_token(&self, session_token: &str) -> String {
        self.sign("csrf", session_token)
    }

    fn csrf_ok(&self, session_token: &str, submitted: &str) -> bool {
        self.verify("csrf", session_token, submitted.trim())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// A cookie's name: `__Host-` under https, which browsers accept only with `Secure`,
/// `Path=/` and no `Domain`, so no other site or subdomain can set it.
fn cookie_name(state: &AppState, base: &str) -> String {
    if state.https() {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

fn set_cookie(state: &AppState, base: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut cookie = format!("{}={value}; Path=/; HttpOnly; SameSite=Strict", cookie_name(state, base));
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if state.https() {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The `Set-Cookie` of a new session, living as long as the session may.
pub fn session_cookie(state: &AppState, token: &str, expires_at: Option<SystemTime>) -> String {
    let max_age = expires_at.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    set_cookie(state, SESSION_COOKIE, &state.keys().seal("session", token), max_age)
}

pub fn clear_session_cookie(state: &AppState) -> String {
    set_cookie(state, SESSION_COOKIE, "", Some(Duration::ZERO))
}

/// The `Set-Cookie` that carries a two-factor challenge to the code step: the token
/// never sits in a page. With it, signed alike, the email typed at the password step, so
/// that the code step can say which account it is for: `<token>!<email, form-encoded>`
/// (a token is base64url, an encoded email has no `!`).
pub fn challenge_cookie(state: &AppState, challenge_token: &str, email: Option<&str>) -> String {
    let value = match email {
        Some(email) => format!("{challenge_token}!{}", encode(email)),
        None => challenge_token.to_string(),
    };
    set_cookie(state, CHALLENGE_COOKIE, &state.keys().seal("challenge", &value), Some(CHALLENGE_MAX_AGE))
}

pub fn clear_challenge_cookie(state: &AppState) -> String {
    set_cookie(state, CHALLENGE_COOKIE, "", Some(Duration::ZERO))
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// The session token from the cookie, if the cookie carries our signature.
pub fn session_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    cookie(headers, &cookie_name(state, SESSION_COOKIE)).and_then(|sealed| state.keys().open("session", sealed))
}

/// The challenge token from the cookie, if the cookie carries our signature, and the email
/// typed with it (when the sign-in form gave one).
pub fn challenge(state: &AppState, headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let value = cookie(headers, &cookie_name(state, CHALLENGE_COOKIE)).and_then(|sealed| state.keys().open("challenge", sealed))?;
    Some(split_challenge(value))
}

fn split_challenge(value: String) -> (String, Option<String>) {
    match value.split_once('!') {
        Some((token, email)) => {
            let email = url::form_urlencoded::parse(format!("e={email}").as_bytes()).next().map(|(_, v)| v.into_owned());
            (token.to_string(), email.filter(|e| !e.is_empty()))
        }
        None => (value, None),
    }
}

/// The theme the visitor chose (theme.js sets the cookie), so the page is drawn in it
/// from the first paint.
pub fn theme(headers: &HeaderMap) -> Option<&'static str> {
    match cookie(headers, "theme") {
        Some("light") => Some("light"),
        Some("dark") => Some("dark"),
        _ => None,
    }
}

/// A post from a page of this dashboard: the browser says so with `Sec-Fetch-Site`,
/// or, when it sends no such header, with an `Origin` that is the public URL's.
pub fn check_same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), PageError> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let same = match fetch_site {
        Some(site) => site == "same-origin",
        None => origin.is_some_and(|o| o.trim_end_matches('/') == state.public_origin()),
    };
    if same {
        Ok(())
    } else {
        Err(PageError::Forbidden("This form came from another site, or your browser did not say where it came from. Open the page again and send the form from there."))
    }
}

/// A relative path on this site to return to after signing in; anything else (another
/// site, `//host`, `/\host`, a scheme) is dropped, so a link cannot send someone away.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2000
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && !next.starts_with("/sign-in")
        && !next.starts_with("/sign-out");
    ok.then(|| next.to_string())
}

pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A signed-in admin, as `dashboard_auth.get_session` describes the session. Every
/// guarded page takes it; without a good session the page is never reached.
pub struct SignedIn {
    token: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub capabilities: Vec<String>,
    /// For the forms of the page (`<input type="hidden" name="csrf">`).
    pub csrf: String,
    pub context: RequestContext,
    pub theme: Option<&'static str>,
}

impl SignedIn {
    /// The session token, for the extension's functions: never put it in a page.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn may(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// Where to go back after signing in: the page asked for, when it was a read.
fn return_path(parts: &Parts) -> Option<String> {
    if parts.method != Method::GET {
        return None;
    }
    safe_next(parts.uri.path_and_query().map(|pq| pq.as_str()))
}

fn to_sign_in(next: Option<String>, reason: Option<&str>, clear: Option<String>) -> PageError {
    let mut query = Vec::new();
    if let Some(next) = next.filter(|n| n != "/") {
        query.push(format!("next={}", encode(&next)));
    }
    if let Some(reason) = reason {
        query.push(format!("reason={}", encode(reason)));
    }
    let to = if query.is_empty() { "/sign-in".to_string() } else { format!("/sign-in?{}", query.join("&")) };
    PageError::Redirect { to, set_cookie: clear }
}

/// The checks that need no database: the cookie's signature and, for a post, the
/// origin and the CSRF token.
fn session_from_parts(parts: &Parts, state: &AppState, csrf_field: Option<&str>) -> Result<String, PageError> {
    let Some(token) = session_token(state, &parts.headers) else {
        // Under a stale cookie signed with another secret, sign-in too.
        return Err(to_sign_in(return_path(parts), None, None));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_same_origin(state, &parts.headers)?;
        let submitted = csrf_field.or_else(|| parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        if !submitted.is_some_and(|s| state.keys().csrf_ok(&token, s)) {
            return Err(PageError::Forbidden(
                "This form has expired or did not come from this dashboard. Open the page again and send the form from there.",
            ));
        }
    }
    Ok(token)
}

/// One call of `dashboard_auth.get_session`; a session that is gone sends the browser to
/// sign in, with the reason `get_session_health` gives.
async fn load(parts: &mut Parts, state: &AppState, token: String) -> Result<SignedIn, PageError> {
    let ClientContext(context) = ClientContext::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
    // One round trip each (`db::call`).
    async fn call(state: &AppState, context: &RequestContext, sql: &str, token: &str) -> Result<Vec<tokio_postgres::Row>, db::CallError> {
        db::call(state.pool(), state.database_config(), context, db::DEFAULT_STATEMENT_TIMEOUT, sql, &[&token]).await
    }
    let answer = call(state, &context, "SELECT email, name, role, capabilities FROM dashboard_auth.get_session($1)", &token).await;
    match answer {
        Ok(rows) => {
            let row = rows.first().ok_or_else(|| PageError::unavailable(anyhow::anyhow!("get_session returned no row")))?;
            Ok(SignedIn {
                csrf: state.keys().csrf_token(&token),
                token,
                email: row.get(0),
                name: row.get(1),
                role: row.get(2),
                capabilities: row.get(3),
                context,
                theme: theme(&parts.headers),
            })
        }
        Err(db::CallError::Db(e)) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {
            let health = call(state, &context, "SELECT reason, revoked_reason FROM dashboard_auth.get_session_health($1)", &token).await?;
            let reason = match health.first().map(|row| (row.get::<_, Option<String>>(0), row.get::<_, Option<String>>(1))) {
                Some((Some(reason), Some(revoked))) if reason == "revoked" && revoked == "logout" => "signed_out".to_string(),
                Some((Some(reason), _)) if reason != "valid" => reason,
                _ => "unknown".to_string(),
            };
            Err(to_sign_in(return_path(parts), Some(&reason), Some(clear_session_cookie(state))))
        }
        Err(e) => Err(e.into()),
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = session_from_parts(parts, state, None)?;
        load(parts, state, token).await
    }
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// A signed-in post: the session, the origin and the CSRF field checked, and the form.
pub struct SignedInForm<T> {
    pub who: SignedIn,
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for SignedInForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| PageError::BadRequest)?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::BadRequest)?;
        let token = session_from_parts(&parts, state, field.csrf.as_deref())?;
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::BadRequest)?;
        let who = load(&mut parts, state, token).await?;
        Ok(SignedInForm { who, form })
    }
}

/// A post before signing in (sign-in, setup, the links, the code step): the origin is
/// checked, there is no session to derive a CSRF token from.
pub struct SameOriginForm<T> {
    pub form: T,
    pub context: RequestContext,
    pub headers: HeaderMap,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for SameOriginForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        check_same_origin(state, &parts.headers)?;
        let ClientContext(context) = ClientContext::from_request_parts(&mut parts, state).await.unwrap_or_else(|e| match e {});
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| PageError::BadRequest)?;
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::BadRequest)?;
        Ok(SameOriginForm { form, context, headers: parts.headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_purpose() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let sealed = keys.seal("session", "fbs_abc");
        assert_eq!(keys.open("session", &sealed).as_deref(), Some("fbs_abc"));
        assert_eq!(keys.open("challenge", &sealed), None);
        assert_eq!(Keys::new(b"another secret, another secret!!").open("session", &sealed), None);
        assert_eq!(keys.open("session", "fbs_abc.00"), None);
        assert_eq!(keys.open("session", "fbs_abd.".to_string().as_str()), None);
        let csrf = keys.csrf_token("fbs_abc");
        assert!(keys.csrf_ok("fbs_abc", &csrf));
        assert!(!keys.csrf_ok("fbs_abd", &csrf));
        assert!(!keys.csrf_ok("fbs_abc", "zz"));
    }

    #[test]
    fn a_challenge_cookie_carries_the_typed_email() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let value = format!("fbc_a-b_c!{}", encode("ann+x y@example.com"));
        assert!(!value.contains([';', ',', ' ', '"', '\\']), "a cookie value: {value}");
        let sealed = keys.seal("challenge", &value);
        let opened = keys.open("challenge", &sealed).unwrap();
        assert_eq!(split_challenge(opened), ("fbc_a-b_c".to_string(), Some("ann+x y@example.com".to_string())));
        assert_eq!(split_challenge("fbc_abc".to_string()), ("fbc_abc".to_string(), None));
    }

    #[test]
    fn next_is_a_path_on_this_site_or_nothing() {
        for good in ["/tables", "/tables?schema=public&x=%2F", "/audit#top"] {
            assert_eq!(safe_next(Some(good)).as_deref(), Some(good));
        }
        for bad in ["https://evil.example", "//evil.example", "/\\evil.example", "evil", "javascript:alert(1)", "/sign-in?next=/x", "/a\nb", ""] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
    }
}
