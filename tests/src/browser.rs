//! The browser harness: real pages in headless Chromium, driven like a user.
//!
//! - [`Site`] is one `fluxbase serve` of the test's own, on a free port, against a fresh
//!   test database, with `FLUXBASE_ADMIN_TEST_PAGES=1` (the CSP report store at
//!   `GET /__test/csp-reports` and the test-only pages).
//! - [`Browser`] is one WebDriver session of Debian's `chromium` through its own
//!   `chromedriver` (on a free port, with a fresh profile), behind a blocking API: the
//!   harness owns a small tokio runtime, so tests read like the synchronous ones.
//! - Every step (a visit, or [`Browser::step`] after an action) saves a full-page
//!   screenshot in light and in dark under `target/screenshots/<test>/<nn>-<step>-{light,dark}.png`,
//!   then fails the test on any problem the page caused since the last step: a CSP
//!   violation (seen by a `securitypolicyviolation` listener installed before the page's
//!   own scripts, by the browser's log, and by the server's report store) or a
//!   JavaScript error (any SEVERE entry of the browser's log: `console.error`, an
//!   uncaught exception, a failed load).
//!
//! No browser is downloaded: `scripts/setup.sh` installs `chromium` and `chromium-driver`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value as Json};

use crate::{fluxbase, repo_root, Caller, Server, TestDb};

/// The viewport every session starts with (the design's reference size).
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 800;

/// How long a page may take to appear, or an element to show up.
const WAIT: Duration = Duration::from_secs(15);

/// A `fluxbase serve` of the test's own. Drop order: the server, then the database.
pub struct Site {
    pub server: Server,
    pub db: TestDb,
    /// `http://localhost:<port>`: the origin the server's links use when no public URL is
    /// set, so that cookies and links agree with what a user opens.
    pub base: String,
}

impl Site {
    /// A fresh database (no admin yet: the server prints its setup link) and its server.
    pub fn start() -> Site {
        Self::start_with(TestDb::new(), |_| {})
    }

    /// The server on `db`, with more settings from `configure`.
    pub fn start_with(db: TestDb, configure: impl FnOnce(&mut Command)) -> Site {
        let mut cmd = fluxbase();
        cmd.env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=disable"))
            .env("FLUXBASE_ADMIN_TEST_PAGES", "1");
        configure(&mut cmd);
        let server = Server::start_with(&mut cmd);
        let port = server.base_url.rsplit(':').next().expect("a port in the listening address").trim_end_matches('/');
        let base = format!("http://localhost:{port}");
        Site { server, db, base }
    }

    /// `path` on this server, as a browser opens it.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// What the server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.server.output.lock().unwrap().clone()
    }

    /// The one-time setup link `fluxbase serve` printed at start (no admin existed).
    pub fn setup_link(&self) -> String {
        self.output()
            .lines()
            .filter_map(|line| line.split_whitespace().find(|word| word.contains("/setup?token=")))
            .next()
            .unwrap_or_else(|| panic!("fluxbase serve printed no setup link; output:\n{}", self.output()))
            .to_string()
    }

    /// The latest CSP reports the server has stored (`GET /__test/csp-reports`), oldest
    /// first. None when the server has no report store.
    pub fn csp_reports(&self) -> Option<Vec<Json>> {
        csp_reports(&self.server.url("/__test/csp-reports")).map(|(_, reports)| reports)
    }

    /// A new browser (its own chromedriver, profile and cookies) for this site. `name`
    /// names its screenshot folder: the test's name, or `<test>/<who>` for a second one.
    pub fn browser(&self, name: &str) -> Browser {
        Browser::open(&self.base, &self.server.url("/__test/csp-reports"), name)
    }
}

/// The server's CSP report store: how many reports it took since it started, and the
/// latest of them. None when it has no store (no FLUXBASE_ADMIN_TEST_PAGES=1).
fn csp_reports(url: &str) -> Option<(usize, Vec<Json>)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    if response.status().as_u16() != 200 {
        return None;
    }
    let body: Json = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    let reports = body["reports"].as_array()?.clone();
    let count = body["count"].as_u64().map_or(reports.len(), |c| c as usize);
    Some((count, reports))
}

/// A WebDriver command fantoccini has no method for: `path` under the session.
#[derive(Debug)]
struct Raw {
    method: http::Method,
    path: String,
    body: Option<Json>,
}

impl WebDriverCompatibleCommand for Raw {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/{}", session_id.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (self.method.clone(), self.body.as_ref().map(Json::to_string))
    }
}

/// Installed before every document's own scripts (CDP `Page.addScriptToEvaluateOnNewDocument`,
/// which the page's CSP does not govern): records each CSP violation the page sees.
const LISTENER: &str = r#"(() => {
  const seen = [];
  Object.defineProperty(window, '__fluxbaseViolations', { value: seen });
  document.addEventListener('securitypolicyviolation', (e) => {
    seen.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} in ${e.sourceFile || e.documentURI}:${e.lineNumber}`);
  });
})();"#;

/// One headless Chromium session. Dropping it closes the browser and its chromedriver,
/// after a last check for problems (which fails the test unless it is already failing).
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
    base: String,
    reports_url: String,
    shots: PathBuf,
    name: String,
    steps: u32,
    seen_reports: usize,
    allowed: Vec<String>,
    color_scheme: &'static str,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn chromedriver_bin() -> String {
    std::env::var("FLUXBASE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_string())
}

/// The workspace's target directory (where `cargo build` puts `fluxbase`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// A name as a file name: letters, digits, `-` and `_`; `/` keeps nesting.
fn file_name(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/' { c } else { '-' })
        .collect()
}

/// Starts chromedriver on a free port and waits until it is ready.
fn start_chromedriver() -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}. Install Debian's chromium and chromium-driver (scripts/setup.sh does), \
                     or set FLUXBASE_CHROMEDRIVER",
                    chromedriver_bin()
                )
            });
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                last = format!("chromedriver exited: {status}");
                break;
            }
            if let Ok(mut response) = agent.get(&format!("http://127.0.0.1:{port}/status")).call() {
                let ready = response
                    .body_mut()
                    .read_json::<Json>()
                    .map(|v| v["value"]["ready"].as_bool() == Some(true))
                    .unwrap_or(false);
                if ready {
                    return (child, port);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        if last.is_empty() {
            last = "chromedriver did not answer /status within 20 s".to_string();
        }
    }
    panic!("cannot start chromedriver: {last}");
}

impl Browser {
    /// A new session against `base` (see [`Site::browser`]).
    pub fn open(base: &str, reports_url: &str, name: &str) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let (driver, port) = start_chromedriver();
        let profile = std::env::temp_dir().join(format!("fluxbase-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("a profile directory");

        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={WIDTH},{HEIGHT}"),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            "--force-color-profile=srgb".into(),
            "--lang=en-US".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if let Ok(extra) = std::env::var("FLUXBASE_CHROMIUM_ARGS") {
            args.extend(extra.split_whitespace().map(String::from));
        }
        let mut options = json!({ "args": args });
        if let Ok(binary) = std::env::var("FLUXBASE_CHROMIUM") {
            options["binary"] = json!(binary);
        } else if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        caps.insert("timeouts".into(), json!({ "pageLoad": 30_000, "script": 30_000, "implicit": 0 }));

        let webdriver = format!("http://127.0.0.1:{port}");
        let client = rt.block_on(async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            ClientBuilder::new(connector).capabilities(caps).connect(&webdriver).await
        });
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                let mut driver = driver;
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("cannot start a Chromium session through chromedriver: {e}");
            }
        };

        let shots = target_dir().join("screenshots").join(file_name(name));
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("create {}: {e}", shots.display()));

        let browser = Browser {
            rt,
            client: Some(client),
            driver,
            profile,
            base: base.to_string(),
            reports_url: reports_url.to_string(),
            shots,
            name: name.to_string(),
            steps: 0,
            seen_reports: 0,
            allowed: Vec::new(),
            color_scheme: "light",
        };
        browser.cdp("Page.enable", json!({}));
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": LISTENER }));
        browser.set_viewport(WIDTH, HEIGHT);
        browser.cdp("Emulation.setEmulatedMedia", json!({ "features": [{ "name": "prefers-color-scheme", "value": "light" }] }));
        let mut browser = browser;
        browser.seen_reports = csp_reports(&browser.reports_url).map_or(0, |(count, _)| count);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    fn raw(&self, method: http::Method, path: &str, body: Option<Json>) -> Json {
        let cmd = Raw { method, path: path.to_string(), body };
        let what = format!("{} {}", cmd.method, cmd.path);
        self.rt.block_on(self.client().issue_cmd(cmd)).unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    /// A Chrome DevTools Protocol command through chromedriver's `goog/cdp/execute`.
    pub fn cdp(&self, cmd: &str, params: Json) -> Json {
        self.raw(http::Method::POST, "goog/cdp/execute", Some(json!({ "cmd": cmd, "params": params })))
    }

    /// The viewport's size in CSS pixels (the screenshots' width).
    pub fn set_viewport(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
    }

    /// `prefers-color-scheme` as the page sees it from now on: "light" or "dark".
    pub fn set_color_scheme(&mut self, scheme: &'static str) {
        self.color_scheme = scheme;
        self.emulate_scheme(scheme);
    }

    fn emulate_scheme(&self, scheme: &str) {
        self.cdp("Emulation.setEmulatedMedia", json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }));
    }

    /// The absolute URL of `path` on the site.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    // ---- steps ----

    /// Opens `path` (or an absolute URL), then records the step `step`.
    pub fn visit(&mut self, path: &str, step: &str) {
        self.goto(path);
        self.step(step);
    }

    /// Opens `path` without recording a step.
    pub fn goto(&self, path: &str) {
        let url = self.url(path);
        self.rt.block_on(self.client().goto(&url)).unwrap_or_else(|e| panic!("open {url}: {e}"));
        self.wait_until_loaded();
    }

    /// Screenshots of the page as it is now, in light and dark, then fails the test on any
    /// problem since the last step.
    pub fn step(&mut self, step: &str) {
        let problems = self.record(step);
        if !problems.is_empty() {
            panic!("{}: step {:02} \"{step}\" on {}:\n  {}", self.name, self.steps, self.path(), problems.join("\n  "));
        }
    }

    /// As [`Browser::visit`], but returns the problems instead of failing: for tests of
    /// the harness itself.
    pub fn visit_collecting_problems(&mut self, path: &str, step: &str) -> Vec<String> {
        self.goto(path);
        self.record(step)
    }

    /// A console error that is expected from now on in this session (a substring of the
    /// log message), such as a page deliberately answering 404.
    pub fn allow_console_error(&mut self, substring: &str) {
        self.allowed.push(substring.to_string());
    }

    fn record(&mut self, step: &str) -> Vec<String> {
        self.steps += 1;
        let stem = format!("{:02}-{}", self.steps, file_name(&step.replace('/', "-")));
        for scheme in ["light", "dark"] {
            self.emulate_scheme(scheme);
            let png = self.full_page_png();
            let file = self.shots.join(format!("{stem}-{scheme}.png"));
            std::fs::write(&file, png).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        }
        self.emulate_scheme(self.color_scheme);
        self.problems()
    }

    /// A PNG of the whole document, not only the viewport.
    pub fn full_page_png(&self) -> Vec<u8> {
        // Two frames, so that the new colour scheme is painted.
        self.js_async("const done = arguments[arguments.length - 1]; requestAnimationFrame(() => requestAnimationFrame(() => done(null)));");
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let content = &metrics["cssContentSize"];
        let viewport = &metrics["cssLayoutViewport"];
        let width = viewport["clientWidth"].as_f64().unwrap_or(WIDTH as f64);
        let height = content["height"].as_f64().unwrap_or(HEIGHT as f64).max(viewport["clientHeight"].as_f64().unwrap_or(0.0));
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height.min(16_000.0), "scale": 1 }
            }),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD.decode(data).expect("a base64 PNG")
    }

    /// Everything wrong since the last call: CSP violations and JavaScript errors.
    pub fn problems(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let violations = self.js("return window.__fluxbaseViolations ? window.__fluxbaseViolations.splice(0) : [];");
        for v in violations.as_array().into_iter().flatten() {
            problems.push(format!("CSP violation: {}", v.as_str().unwrap_or_default()));
        }
        let log = self.raw(http::Method::POST, "se/log", Some(json!({ "type": "browser" })));
        for entry in log.as_array().into_iter().flatten() {
            if entry["level"].as_str() != Some("SEVERE") {
                continue;
            }
            let message = entry["message"].as_str().unwrap_or_default();
            if self.allowed.iter().any(|a| message.contains(a.as_str())) {
                continue;
            }
            let source = entry["source"].as_str().unwrap_or("console");
            problems.push(format!("browser log ({source}): {message}"));
        }
        if let Some((count, reports)) = csp_reports(&self.reports_url) {
            if count > self.seen_reports {
                let new = (count - self.seen_reports).min(reports.len());
                for report in &reports[reports.len() - new..] {
                    problems.push(format!("CSP report to the server: {report}"));
                }
                if new == 0 {
                    problems.push(format!("CSP reports to the server: {}", count - self.seen_reports));
                }
            }
            self.seen_reports = self.seen_reports.max(count);
        }
        problems
    }

    // ---- reading the page ----

    /// The current URL's path and query (`/setup?token=…`).
    pub fn path(&self) -> String {
        let url = self.rt.block_on(self.client().current_url()).expect("the current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub fn title(&self) -> String {
        self.rt.block_on(self.client().title()).expect("the page's title")
    }

    /// Runs `script` in the page (WebDriver's execute: not governed by the page's CSP)
    /// and returns what it returns.
    pub fn js(&self, script: &str) -> Json {
        self.rt.block_on(self.client().execute(script, vec![])).unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// As [`Browser::js`] with an argument (`arguments[0]`).
    pub fn js_with(&self, script: &str, arg: Json) -> Json {
        self.rt.block_on(self.client().execute(script, vec![arg])).unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    fn js_async(&self, script: &str) -> Json {
        self.rt.block_on(self.client().execute_async(script, vec![])).unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    fn find(&self, css: &str) -> fantoccini::elements::Element {
        let found = self.rt.block_on(async {
            self.client().wait().at_most(WAIT).every(Duration::from_millis(50)).for_element(Locator::Css(css)).await
        });
        found.unwrap_or_else(|e| panic!("no element {css} on {} within {WAIT:?}: {e}", self.path()))
    }

    /// Whether an element matches `css` now (no waiting).
    pub fn exists(&self, css: &str) -> bool {
        self.rt.block_on(self.client().find_all(Locator::Css(css))).map(|v| !v.is_empty()).unwrap_or(false)
    }

    /// Waits until an element matches `css`.
    pub fn wait_for(&self, css: &str) {
        self.find(css);
    }

    /// The visible text of the first element matching `css` (waits for it).
    pub fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.rt.block_on(element.text()).unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// The visible texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let elements = self.rt.block_on(self.client().find_all(Locator::Css(css))).unwrap_or_default();
        elements.iter().map(|e| self.rt.block_on(e.text()).unwrap_or_default()).collect()
    }

    /// An attribute of the first element matching `css` (waits for it).
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css);
        self.rt.block_on(element.attr(name)).unwrap_or_else(|e| panic!("attribute {name} of {css}: {e}"))
    }

    /// Whether the first element matching `css` is displayed.
    pub fn is_displayed(&self, css: &str) -> bool {
        let element = self.find(css);
        self.rt.block_on(element.is_displayed()).unwrap_or(false)
    }

    // ---- acting ----

    /// Clears the field matching `css` and types `value` into it.
    pub fn fill(&self, css: &str, value: &str) {
        let element = self.find(css);
        self.rt.block_on(async {
            element.clear().await?;
            element.send_keys(value).await
        })
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks the element matching `css` (no wait for a new page: see
    /// [`Browser::click_and_load`]).
    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.rt.block_on(element.click()).unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clicks the element matching `css` and waits for the next page to load.
    pub fn click_and_load(&self, css: &str) {
        self.mark_document();
        self.click(css);
        self.wait_for_new_document();
    }

    /// Presses keys on the keyboard alone, as a user would (WebDriver key actions): each
    /// character of `text` is typed in turn; use [`keys`] for Tab, Enter and the like.
    pub fn keyboard(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.raw(
            http::Method::POST,
            "actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
        self.raw(http::Method::DELETE, "actions", None);
    }

    /// Presses keys together, as a chord (Ctrl+C): each goes down in turn, then all come up
    /// in reverse order.
    pub fn chord(&self, keys: &[&str]) {
        let mut actions: Vec<Json> = keys.iter().map(|k| json!({ "type": "keyDown", "value": k })).collect();
        actions.extend(keys.iter().rev().map(|k| json!({ "type": "keyUp", "value": k })));
        self.raw(
            http::Method::POST,
            "actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
        self.raw(http::Method::DELETE, "actions", None);
    }

    /// As [`Browser::keyboard`], then waits for the next page to load (Enter on a form).
    pub fn keyboard_and_load(&self, text: &str) {
        self.mark_document();
        self.keyboard(text);
        self.wait_for_new_document();
    }

    /// What has the focus: its tag, id, name and computed outline, for assertions on
    /// keyboard use and visible focus.
    pub fn focused(&self) -> Focused {
        let v = self.js(
            "const e = document.activeElement; const s = getComputedStyle(e); \
             return { tag: e.tagName.toLowerCase(), id: e.id || '', name: e.getAttribute('name') || '', \
                      type: e.getAttribute('type') || '', text: (e.innerText || e.value || '').slice(0, 80), \
                      outline_style: s.outlineStyle, outline_width: s.outlineWidth, box_shadow: s.boxShadow, \
                      focus_visible: e.matches(':focus-visible') };",
        );
        Focused {
            tag: v["tag"].as_str().unwrap_or_default().into(),
            id: v["id"].as_str().unwrap_or_default().into(),
            name: v["name"].as_str().unwrap_or_default().into(),
            kind: v["type"].as_str().unwrap_or_default().into(),
            text: v["text"].as_str().unwrap_or_default().into(),
            outline_style: v["outline_style"].as_str().unwrap_or_default().into(),
            outline_width: v["outline_width"].as_str().unwrap_or_default().into(),
            box_shadow: v["box_shadow"].as_str().unwrap_or_default().into(),
            focus_visible: v["focus_visible"].as_bool().unwrap_or(false),
        }
    }

    /// Runs `script` (which navigates, as a script of the page would) and waits for the
    /// next page to load.
    pub fn js_and_load(&self, script: &str) {
        self.mark_document();
        self.js(script);
        self.wait_for_new_document();
    }

    fn mark_document(&self) {
        self.js("window.__fluxbaseOldDocument = true;");
    }

    fn wait_for_new_document(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            // A script can fail while the old page unloads; then just try again.
            let ready = self
                .rt
                .block_on(self.client().execute(
                    "return !window.__fluxbaseOldDocument && document.readyState === 'complete';",
                    vec![],
                ))
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if ready {
                return;
            }
            if Instant::now() > deadline {
                panic!("no new page within {WAIT:?} (still on {})", self.path());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_until_loaded(&self) {
        let deadline = Instant::now() + WAIT;
        while self.js("return document.readyState;").as_str() != Some("complete") {
            if Instant::now() > deadline {
                panic!("the page did not finish loading within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Keys for [`Browser::keyboard`] (WebDriver's key codes).
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const SPACE: &str = "\u{E00D}";
    pub const PAGE_UP: &str = "\u{E00E}";
    pub const PAGE_DOWN: &str = "\u{E00F}";
    pub const END: &str = "\u{E010}";
    pub const HOME: &str = "\u{E011}";
    pub const LEFT: &str = "\u{E012}";
    pub const UP: &str = "\u{E013}";
    pub const RIGHT: &str = "\u{E014}";
    pub const DOWN: &str = "\u{E015}";
    pub const SHIFT: &str = "\u{E008}";
    pub const CONTROL: &str = "\u{E009}";
}

/// The focused element, as [`Browser::focused`] reads it.
#[derive(Debug, Clone)]
pub struct Focused {
    pub tag: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub text: String,
    pub outline_style: String,
    pub outline_width: String,
    pub box_shadow: String,
    pub focus_visible: bool,
}

impl Focused {
    /// A focus ring a user can see: an outline, or a box shadow in its place.
    pub fn is_visible(&self) -> bool {
        let outline = self.outline_style != "none" && self.outline_width != "0px";
        outline || (self.box_shadow != "none" && !self.box_shadow.is_empty())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if !std::thread::panicking() && self.client.is_some() {
            // The last page's reports reach the server asynchronously.
            std::thread::sleep(Duration::from_millis(200));
            problems = self.problems();
        }
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("{}: after the last step on {}:\n  {}", self.name, self.base, problems.join("\n  "));
        }
    }
}
