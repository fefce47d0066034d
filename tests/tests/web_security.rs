//! The web dashboard's security over HTTP, against the real binary: the session cookie's
//! flags, CSRF and same-origin posts, Bearer requests, the security headers, hashed
//! assets, the session secret, error pages without internals, and `next=`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fluxbase_tests::admin::{as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::authenticator::{away_from_a_step_boundary, Authenticator};
use fluxbase_tests::{fluxbase, run, text, with_data_login, Caller, Server, TestDb};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; report-uri /csp-report";
const EMAIL: &str = "ann@example.com";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect()
    }

    /// `name=value` of the set cookie called `name`, for a Cookie header.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_string())
    }

    fn location(&self) -> &str {
        self.header("location").unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
    }

    /// The value of the hidden input `name` in the page.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).unwrap_or_else(|| panic!("no field {name}: {}", self.body)) + marker.len();
        self.body[start..].split('"').next().unwrap().to_string()
    }
}

/// No redirects followed, no status as an error, cookies by hand.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Answer { status, headers, body }
}

fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent().get(&server.url(path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    answer(request.call().unwrap_or_else(|e| panic!("GET {path}: {e}")))
}

fn post_form(server: &Server, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
    let mut request = agent().post(&server.url(path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    answer(request.send_form(form.iter().copied()).unwrap_or_else(|e| panic!("POST {path}: {e}")))
}

/// The origin a browser on the dashboard's public URL (http://localhost:<port>) sends.
fn origin(server: &Server) -> String {
    server.base_url.replace("127.0.0.1", "localhost")
}

/// Signs in through the page and returns the `Cookie` header of the session.
fn sign_in(server: &Server, origin: &str, cookie_name: &str) -> String {
    let answer = post_form(server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD), ("next", "")], &[("Origin", origin)]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location(), "/tables");
    answer.cookie(cookie_name).unwrap_or_else(|| panic!("no {cookie_name} cookie: {:?}", answer.set_cookies()))
}

fn assert_security_headers(answer: &Answer, what: &str) {
    assert_eq!(answer.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(answer.header("referrer-policy"), Some("same-origin"), "{what}");
}

#[test]
fn the_session_cookie_is_http_only_strict_and_its_token_never_in_a_page() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start(&db);
    let answer = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD)], &[("Origin", &origin(&server))]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let set_cookie = answer.set_cookies().into_iter().find(|c| c.starts_with("fluxbase_session=")).expect("session cookie").to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{flag}: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: no Secure: {set_cookie}");
    assert_eq!(answer.header("strict-transport-security"), None);
    let cookie = answer.cookie("fluxbase_session").unwrap();
    let token = cookie.trim_start_matches("fluxbase_session=").rsplit_once('.').unwrap().0.to_string();
    assert!(token.starts_with("fbs_"), "{token}");

    let page = get(&server, "/tables", &[("Cookie", &cookie)]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(EMAIL) && page.body.contains("id=\"who-role\""), "{}", page.body);
    assert!(!page.body.contains(&token), "the session token is in the page");

    // A cookie whose signature is not ours is no session.
    let forged = format!("fluxbase_session={token}.{}", "0".repeat(64));
    let refused = get(&server, "/tables", &[("Cookie", &forged)]);
    assert_eq!(refused.status, 303);
    assert_eq!(refused.location(), "/sign-in?next=%2Ftables");
}

#[test]
fn posts_need_the_csrf_token_and_a_same_origin() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start(&db);
    let origin = origin(&server);
    let cookie = sign_in(&server, &origin, "fluxbase_session");
    let csrf = get(&server, "/tables", &[("Cookie", &cookie)]).hidden("csrf");
    assert_eq!(csrf.len(), 64, "{csrf}");

    let forbidden = |answer: Answer, what: &str| {
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        assert!(answer.set_cookies().is_empty(), "{what}");
    };
    forbidden(post_form(&server, "/sign-out", &[], &[("Cookie", &cookie), ("Origin", &origin)]), "no token");
    forbidden(post_form(&server, "/sign-out", &[("csrf", &"0".repeat(64))], &[("Cookie", &cookie), ("Origin", &origin)]), "wrong token");
    forbidden(post_form(&server, "/sign-out", &[("csrf", "not hex")], &[("Cookie", &cookie), ("Origin", &origin)]), "junk token");
    forbidden(
        post_form(
            &server,
            "/sign-out",
            &[("csrf", &csrf)],
            &[("Cookie", &cookie), ("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        ),
        "cross-site, right token",
    );
    forbidden(post_form(&server, "/sign-out", &[("csrf", &csrf)], &[("Cookie", &cookie), ("Origin", "https://evil.example")]), "other origin");
    forbidden(post_form(&server, "/sign-out", &[("csrf", &csrf)], &[("Cookie", &cookie)]), "no origin at all");
    // A sign-in posted from another site does not happen either.
    forbidden(
        post_form(
            &server,
            "/sign-in",
            &[("email", EMAIL), ("password", PASSWORD)],
            &[("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        ),
        "cross-site sign-in",
    );
    // The session survived all of that.
    assert_eq!(get(&server, "/tables", &[("Cookie", &cookie)]).status, 200);

    // The token, from this dashboard (the browser's Sec-Fetch-Site): signed out.
    let out = post_form(&server, "/sign-out", &[("csrf", &csrf)], &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location(), "/sign-in?reason=signed_out");
    assert!(out.set_cookies().iter().any(|c| c.starts_with("fluxbase_session=;") && c.contains("Max-Age=0")), "{:?}", out.set_cookies());
    // The old cookie now leads to sign-in, saying why, and back to the page after.
    let after = get(&server, "/audit", &[("Cookie", &cookie)]);
    assert_eq!(after.status, 303);
    assert_eq!(after.location(), "/sign-in?next=%2Faudit&reason=signed_out");
    let page = get(&server, "/sign-in?next=%2Faudit&reason=signed_out", &[]);
    assert!(page.body.contains("You are signed out."), "{}", page.body);
    assert_eq!(page.hidden("next"), "/audit");
}

#[test]
fn bearer_requests_ignore_cookies_and_need_no_csrf_token() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start(&db);
    let token = login(&mut db.connect(Caller::Dashboard), EMAIL, PASSWORD, "192.0.2.1").token().to_string();
    let (status, body) = server.get_json_with("/api/sql/history", &token);
    assert_eq!(status, 200, "{body}");
    let mut response = agent()
        .post(&server.url("/api/sql/runs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Cookie", "fluxbase_session=junk")
        .header("Origin", "https://evil.example")
        .send_json(serde_json::json!({"statement": "SELECT 1 AS one"}))
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
}

#[test]
fn an_https_public_url_makes_the_cookies_secure_and_host_only_and_sends_hsts() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start_with(
        fluxbase()
            .env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=disable"))
            .env("FLUXBASE_ADMIN_PUBLIC_URL", "https://admin.example.com"),
    );
    // Behind the proxy that ends TLS, the browser's origin is the public one.
    let answer = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD)], &[("Origin", "https://admin.example.com")]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let set_cookie = answer.set_cookies().into_iter().find(|c| c.starts_with("__Host-fluxbase_session=")).expect("__Host- cookie").to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(set_cookie.contains(flag), "{flag}: {set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    assert_eq!(answer.header("strict-transport-security"), Some("max-age=31536000"));
    // The origin of plain http is not this dashboard's any more.
    let refused = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD)], &[("Origin", &origin(&server))]);
    assert_eq!(refused.status, 403);
    // HSTS on every answer, the API's and the errors' too.
    for path in ["/sign-in", "/healthz", "/no-such-page", "/api/sql/history"] {
        assert_eq!(get(&server, path, &[]).header("strict-transport-security"), Some("max-age=31536000"), "{path}");
    }
    let cookie = answer.cookie("__Host-fluxbase_session").unwrap();
    assert_eq!(get(&server, "/tables", &[("Cookie", &cookie)]).status, 200);
}

#[test]
fn every_answer_carries_the_security_headers_and_assets_are_hashed_and_immutable() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let page = get(&server, "/sign-in", &[]);
    assert_eq!(page.status, 200);
    assert_security_headers(&page, "page");
    assert!(page.body.contains("<form id=\"sign-in\""), "{}", page.body);
    assert!(page.body.contains("<title>Sign in · Fluxbase Admin</title>"), "{}", page.body);

    let mut assets = Vec::new();
    for marker in ["rel=\"stylesheet\" href=\"", "<script type=\"module\" src=\""] {
        let start = page.body.find(marker).unwrap_or_else(|| panic!("{marker}: {}", page.body)) + marker.len();
        assets.push(page.body[start..].split('"').next().unwrap().to_string());
    }
    assert!(assets[0].starts_with("/assets/app.") && assets[0].ends_with(".css") && assets[0].len() > "/assets/app..css".len() + 8, "{assets:?}");
    assert!(assets[1].starts_with("/assets/theme.") && assets[1].ends_with(".js"), "{assets:?}");
    for (url, content_type) in assets.iter().zip(["text/css", "text/javascript"]) {
        let asset = get(&server, url, &[]);
        assert_eq!(asset.status, 200, "{url}");
        assert_security_headers(&asset, url);
        assert!(asset.header("content-type").unwrap().starts_with(content_type), "{url}");
        assert_eq!(asset.header("cache-control"), Some("public, max-age=31536000, immutable"), "{url}");
    }
    assert_eq!(get(&server, "/assets/app.css", &[]).status, 404, "only hashed names");

    let missing = get(&server, "/no-such-page", &[]);
    assert_eq!(missing.status, 404);
    assert_security_headers(&missing, "404");
    assert!(missing.body.contains("Page not found"), "{}", missing.body);

    let api = get(&server, "/api/sql/history", &[]);
    assert_eq!(api.status, 401);
    assert_security_headers(&api, "API");
    let api_missing = get(&server, "/api/nothing", &[]);
    assert_eq!(api_missing.status, 404);
    assert!(api_missing.body.contains("\"not_found\""), "{}", api_missing.body);
    assert_security_headers(&get(&server, "/healthz", &[]), "healthz");
    // A signed-out visitor is sent to sign in, back to the page after.
    let guarded = get(&server, "/settings", &[]);
    assert_eq!(guarded.status, 303);
    assert_eq!(guarded.location(), "/sign-in?next=%2Fsettings");
    assert_eq!(get(&server, "/", &[]).location(), "/sign-in");
}

#[test]
fn next_only_returns_to_a_path_on_this_site() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start(&db);
    let origin = origin(&server);
    for evil in ["https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"] {
        let page = get(&server, &format!("/sign-in?next={}", urlencode(evil)), &[]);
        assert_eq!(page.hidden("next"), "", "{evil}");
        let answer = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD), ("next", evil)], &[("Origin", &origin)]);
        assert_eq!(answer.status, 303);
        assert_eq!(answer.location(), "/tables", "{evil}");
    }
    let answer = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD), ("next", "/audit?x=1")], &[("Origin", &origin)]);
    assert_eq!(answer.location(), "/audit?x=1");
    // A reason the dashboard does not know puts no words on the page.
    let page = get(&server, "/sign-in?reason=%3Cb%3Ecall+this+number%3C%2Fb%3E", &[]);
    assert!(!page.body.contains("call this number"), "{}", page.body);
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn a_wrong_password_and_an_unknown_email_get_the_same_page() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start(&db);
    let origin = origin(&server);
    let wrong = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", "not it at all")], &[("Origin", &origin)]);
    let unknown = post_form(&server, "/sign-in", &[("email", "zed@example.com"), ("password", "not it at all")], &[("Origin", &origin)]);
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, 200);
        assert!(answer.set_cookies().is_empty());
        assert!(answer.body.contains("id=\"form-error\"") && answer.body.contains("Invalid email or password."), "{}", answer.body);
    }
}

#[test]
fn the_setup_link_creates_the_first_admin_signed_in_and_then_the_page_is_gone() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let output = server.output.lock().unwrap().clone();
    let link = output.lines().find_map(|l| l.split_whitespace().find(|w| w.contains("/setup?token="))).expect("setup link printed").to_string();
    let path = &link[link.find("/setup").unwrap()..];
    let token = path.trim_start_matches("/setup?token=");

    assert!(get(&server, "/setup?token=wrong", &[]).body.contains("id=\"link-invalid\""));
    let page = get(&server, path, &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form id=\"setup\"") && page.body.contains("Create Admin Account"), "{}", page.body);
    let origin = origin(&server);
    let weak = post_form(&server, "/setup", &[("token", token), ("email", EMAIL), ("name", "Ann"), ("password", "password")], &[("Origin", &origin)]);
    assert_eq!(weak.status, 200);
    assert!(weak.body.contains("id=\"form-error\""), "{}", weak.body);
    let done = post_form(&server, "/setup", &[("token", token), ("email", EMAIL), ("name", "Ann"), ("password", PASSWORD)], &[("Origin", &origin)]);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/tables");
    let cookie = done.cookie("fluxbase_session").expect("signed in");
    assert!(get(&server, "/tables", &[("Cookie", &cookie)]).body.contains("id=\"who-name\">Ann<"));
    assert_eq!(get(&server, path, &[]).status, 404);
    assert_eq!(get(&server, "/setup", &[]).status, 404);
}

#[test]
fn error_pages_show_a_reference_and_no_internals() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let server = Server::start(&db);
    let cookie = sign_in(&server, &origin(&server), "fluxbase_session");
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(&format!("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", db.name)).unwrap();
    su.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'fluxbase_web'",
        &[],
    )
    .unwrap();
    let page = get(&server, "/tables", &[("Cookie", &cookie)]);
    let sign_in = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD)], &[("Origin", &origin(&server))]);
    su.batch_execute(&format!("GRANT CONNECT ON DATABASE {} TO PUBLIC", db.name)).unwrap();
    for answer in [&page, &sign_in] {
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_security_headers(answer, "error page");
        assert!(answer.header("content-type").unwrap().starts_with("text/html"));
        for internal in ["127.0.0.1", "localhost", "54330", db.name.as_str(), "fluxbase_web", "SELECT", "dashboard_auth", "panicked"] {
            assert!(!answer.body.contains(internal), "the page names {internal}: {}", answer.body);
        }
        let marker = "<code id=\"error-reference\">";
        let start = answer.body.find(marker).unwrap_or_else(|| panic!("no reference: {}", answer.body)) + marker.len();
        let reference = answer.body[start..].split('<').next().unwrap().to_string();
        let line = server.output_line(&reference);
        assert!(line.contains(&db.name), "the log names the database: {line}");
    }
}

#[test]
fn serve_refuses_a_missing_or_weak_secret_and_dev_makes_one_with_a_warning() {
    let db = TestDb::new();
    let serve = || {
        let mut cmd = fluxbase();
        cmd.env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=disable")).env_remove("FLUXBASE_ADMIN_SESSION_SECRET").args(["serve", "--port", "0"]);
        with_data_login(&mut cmd);
        cmd
    };
    let output = run(&mut serve());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("FLUXBASE_ADMIN_SESSION_SECRET is not set") && stderr.contains("openssl rand -hex 32") && stderr.contains("--dev"), "{stderr}");

    let output = run(serve().env("FLUXBASE_ADMIN_SESSION_SECRET", "0123456789abcdef0123456789abcde"));
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("at least 32 characters"), "{stderr}");
    assert!(!stderr.contains("0123456789abcdef"), "the secret is echoed: {stderr}");

    // --dev: starts, and says that sessions will not outlive the process.
    let mut child = serve().arg("--dev").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("listening on")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(seen.contains("listening on"), "--dev did not start:\n{seen}");
    assert!(seen.contains("warning: --dev without FLUXBASE_ADMIN_SESSION_SECRET"), "{seen}");
}

#[test]
fn the_test_pages_exist_only_when_asked_for_and_count_csp_reports() {
    let db = TestDb::new();
    let plain = Server::start(&db);
    assert_eq!(get(&plain, "/__test/inline-script", &[]).status, 404);
    assert_eq!(get(&plain, "/__test/csp-reports", &[]).status, 404);
    drop(plain);

    let server = Server::start_with(fluxbase().env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=disable")).env("FLUXBASE_ADMIN_TEST_PAGES", "1"));
    let page = get(&server, "/__test/inline-script", &[]);
    assert_eq!(page.status, 200);
    assert_security_headers(&page, "test page");
    assert!(page.body.contains("<script>"));
    let report = r#"{"csp-report": {"document-uri": "http://localhost/__test/inline-script", "blocked-uri": "inline", "violated-directive": "script-src-elem"}}"#;
    let status = agent()
        .post(&server.url("/csp-report"))
        .header("Content-Type", "application/csp-report")
        .send(report)
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 204);
    let seen = get(&server, "/__test/csp-reports", &[]);
    let seen: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(seen["count"], 1, "{seen}");
    assert_eq!(seen["reports"][0]["directive"], "script-src-elem", "{seen}");
    let line = server.output_line("Content Security Policy violation");
    assert!(line.contains("script-src-elem"), "{line}");
}

#[test]
fn two_factor_sign_in_and_a_reset_link_go_through_the_code_step() {
    let db = TestDb::new();
    create_admin(&db, EMAIL, "admin");
    let mut web = db.connect(Caller::Dashboard);
    away_from_a_step_boundary();
    let token = login(&mut web, EMAIL, PASSWORD, "192.0.2.1").token().to_string();
    let started = as_dashboard(&mut web, "SELECT secret FROM dashboard_auth.start_two_factor($1, $2)", &[&token, &PASSWORD]).unwrap();
    let app = Authenticator::new(&started[0].get::<_, String>(0));
    let confirmed = as_dashboard(&mut web, "SELECT ok, recovery_codes FROM dashboard_auth.confirm_two_factor($1, $2)", &[&token, &app.code(-1)]).unwrap();
    assert!(confirmed[0].get::<_, bool>(0));
    let recovery: Vec<String> = confirmed[0].get(1);
    let server = Server::start(&db);
    let origin = origin(&server);

    let password_step = post_form(&server, "/sign-in", &[("email", EMAIL), ("password", PASSWORD), ("next", "/sql")], &[("Origin", &origin)]);
    assert_eq!(password_step.status, 303, "{}", password_step.body);
    assert_eq!(password_step.location(), "/sign-in/code?next=%2Fsql");
    assert!(password_step.cookie("fluxbase_session").is_none(), "no session before the code");
    let challenge = password_step.cookie("fluxbase_challenge").expect("challenge cookie");
    assert!(password_step.set_cookies().iter().any(|c| c.starts_with("fluxbase_challenge=") && c.contains("HttpOnly") && c.contains("SameSite=Strict")));

    let page = get(&server, "/sign-in/code?next=%2Fsql", &[("Cookie", &challenge)]);
    assert_eq!(page.status, 200);
    for expected in ["<form id=\"second-factor\"", "inputmode=\"numeric\"", "autocomplete=\"one-time-code\"", "id=\"use-recovery-code\""] {
        assert!(page.body.contains(expected), "{expected}: {}", page.body);
    }
    assert_eq!(get(&server, "/sign-in/code", &[]).location(), "/sign-in?reason=challenge_expired");
    let wrong = post_form(&server, "/sign-in/code", &[("code", "000000"), ("next", "/sql")], &[("Cookie", &challenge), ("Origin", &origin)]);
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("id=\"form-error\""), "{}", wrong.body);
    let signed_in = post_form(&server, "/sign-in/code", &[("code", &app.code(0)), ("next", "/sql")], &[("Cookie", &challenge), ("Origin", &origin)]);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), "/sql");
    let cookie = signed_in.cookie("fluxbase_session").expect("signed in");
    assert_eq!(get(&server, "/sql", &[("Cookie", &cookie)]).status, 200);

    // A reset link: a new password, then the code step, here with a recovery code.
    let mut su = db.connect(Caller::Superuser);
    let reset: String = su.query_one("SELECT reset_token FROM dashboard_auth.operator_reset_admin_password($1)", &[&EMAIL]).unwrap().get(0);
    let page = get(&server, &format!("/reset?token={reset}"), &[]);
    assert!(page.body.contains("<form id=\"set-password\" method=\"post\" action=\"/reset\"") && page.body.contains(EMAIL), "{}", page.body);
    assert!(get(&server, "/reset?token=nope", &[]).body.contains("id=\"link-invalid\""));
    let new_password = "amber lantern drifts slowly east";
    let redeemed = post_form(&server, "/reset", &[("token", &reset), ("password", new_password)], &[("Origin", &origin)]);
    assert_eq!(redeemed.status, 303, "{}", redeemed.body);
    assert_eq!(redeemed.location(), "/sign-in/code");
    let challenge = redeemed.cookie("fluxbase_challenge").expect("challenge cookie");
    let page = get(&server, "/sign-in/code?method=recovery", &[("Cookie", &challenge)]);
    assert!(page.body.contains("Recovery code") && page.body.contains("id=\"use-authenticator\""), "{}", page.body);
    let done = post_form(&server, "/sign-in/code", &[("code", &recovery[0]), ("method", "recovery")], &[("Cookie", &challenge), ("Origin", &origin)]);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/tables");
    assert!(done.cookie("fluxbase_session").is_some());
}

#[test]
fn a_viewer_sees_only_what_its_capabilities_allow() {
    let db = TestDb::new();
    create_admin(&db, "vic@example.com", "viewer");
    let server = Server::start(&db);
    let answer = post_form(&server, "/sign-in", &[("email", "vic@example.com"), ("password", PASSWORD)], &[("Origin", &origin(&server))]);
    let cookie = answer.cookie("fluxbase_session").expect("signed in");
    let page = get(&server, "/tables", &[("Cookie", &cookie)]);
    for key in ["tables", "settings", "analytics", "sql", "audit"] {
        assert!(page.body.contains(&format!("data-nav=\"{key}\"")), "{key}: {}", page.body);
    }
    assert!(!page.body.contains("data-nav=\"users\""), "{}", page.body);
    assert!(page.body.contains("id=\"who-role\" class=\"badge\">viewer<"), "{}", page.body);
    assert_eq!(get(&server, "/users", &[("Cookie", &cookie)]).status, 403);
}
