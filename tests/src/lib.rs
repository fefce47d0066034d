//! The one harness for out-of-process tests.
//!
//! It reuses the test cluster that `scripts/test-cluster.sh` starts (and starts it when
//! it is not running), gives each test a fresh database made from the template database
//! `fluxbase_template` (which already has the extension, so parallel tests never race on
//! the cluster-wide roles), connects as each kind of caller, and runs the `fluxbase`
//! binary as a user would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use postgres;
use postgres::{Client, NoTls};

/// The template every test database is copied from.
pub const TEMPLATE: &str = "fluxbase_template";
/// The test cluster is local and throwaway: its passwords are fixed (scripts/test-cluster.sh).
pub const PASSWORD: &str = "fluxbase-test";

/// The four kinds of caller of architecture.md, each a login role of the test cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `postgres`: installs the extension, the operator of last resort.
    Superuser,
    /// `fluxbase_web`: the web binary's dashboard login (NOINHERIT, a member of
    /// `fluxbase_dashboard` only).
    Dashboard,
    /// `fluxbase_data`: the web binary's data login (NOINHERIT, a member of the roles the
    /// data plane switches to), made by `fluxbase_admin.prepare_data_login`.
    Data,
    /// `fluxbase_ops`: a person granted `fluxbase_operator`.
    Operator,
    /// `app_user`: one of the application's own connections (a member of `authenticated`).
    App,
}

impl Caller {
    pub fn user(self) -> &'static str {
        match self {
            Caller::Superuser => "postgres",
            Caller::Dashboard => "fluxbase_web",
            Caller::Data => "fluxbase_data",
            Caller::Operator => "fluxbase_ops",
            Caller::App => "app_user",
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn port() -> u16 {
    std::env::var("FLUXBASE_TEST_PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(54330)
}

fn connect_to(dbname: &str, caller: Caller) -> Result<Client, postgres::Error> {
    connect_as(dbname, caller.user())
}

/// A connection to `dbname` as any login role of the test cluster, throwaway roles
/// included (they share its fixed password).
pub fn connect_as(dbname: &str, user: &str) -> Result<Client, postgres::Error> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port())
        .user(user)
        .password(PASSWORD)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
}

/// A login role of the cluster made for one test, with the cluster's test password.
/// Roles are cluster-wide: when the guard goes, also when the test panics, what the role
/// owns in the test database is dropped, and then the role. Declare it after the TestDb,
/// so that it goes first, while the database exists.
pub struct TestRole {
    pub db: String,
    pub name: String,
}

impl TestRole {
    /// `CREATE ROLE <prefix>_<random> LOGIN <attributes>`.
    pub fn create(db: &TestDb, prefix: &str, attributes: &str) -> Self {
        let name = format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        admin_connection()
            .batch_execute(&format!("CREATE ROLE {name} LOGIN {attributes} PASSWORD '{PASSWORD}'"))
            .unwrap_or_else(|e| panic!("create role {name}: {e}"));
        TestRole { db: db.name.clone(), name }
    }

    pub fn connect(&self) -> Client {
        connect_as(&self.db, &self.name).unwrap_or_else(|e| panic!("connect as {}: {e}", self.name))
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        if let Ok(mut c) = connect_as(&self.db, "postgres") {
            let _ = c.batch_execute(&format!("REASSIGN OWNED BY {0} TO postgres; DROP OWNED BY {0} CASCADE", self.name));
        }
        let _ = admin_connection().batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

/// Starts the test cluster and builds the template when either is missing. `make test`
/// does this before any test runs; this covers `cargo test` run on its own.
fn ensure_cluster() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let ready = connect_to("postgres", Caller::Superuser)
            .and_then(|mut c| c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEMPLATE]))
            .map(|row| row.is_some())
            .unwrap_or(false);
        if !ready {
            let status = Command::new("bash")
                .arg(repo_root().join("scripts/test-cluster.sh"))
                .status()
                .expect("run scripts/test-cluster.sh");
            assert!(status.success(), "scripts/test-cluster.sh failed: the test cluster is not available");
        }
    });
}

/// A superuser connection to the cluster's `postgres` database.
pub fn admin_connection() -> Client {
    ensure_cluster();
    connect_to("postgres", Caller::Superuser).expect("connect to the test cluster as postgres")
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// A fresh database with the extension installed, copied from the template.
    pub fn new() -> Self {
        Self::create(TEMPLATE)
    }

    /// A fresh database without the extension, for install tests.
    pub fn without_extension() -> Self {
        Self::create("template0")
    }

    fn create(template: &str) -> Self {
        let name = format!("fluxbase_test_{}", uuid::Uuid::new_v4().simple());
        admin_connection()
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .unwrap_or_else(|e| panic!("create test database from {template}: {e}"));
        TestDb { name }
    }

    pub fn connect(&self, caller: Caller) -> Client {
        connect_to(&self.name, caller).unwrap_or_else(|e| panic!("connect as {}: {e}", caller.user()))
    }

    /// A connection that also collects the server's notices and warnings.
    pub fn connect_collecting_notices(&self, caller: Caller) -> (Client, Arc<Mutex<Vec<String>>>) {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = notices.clone();
        let client = postgres::Config::new()
            .host("127.0.0.1")
            .port(port())
            .user(caller.user())
            .password(PASSWORD)
            .dbname(&self.name)
            .notice_callback(move |n| sink.lock().unwrap().push(format!("{}: {}", n.severity(), n.message())))
            .connect(NoTls)
            .expect("connect collecting notices");
        (client, notices)
    }

    /// `postgresql://user:pass@127.0.0.1:port/db`, plus `extra` query parameters.
    pub fn url(&self, caller: Caller, extra: &str) -> String {
        let mut url = format!("postgresql://{}:{}@127.0.0.1:{}/{}", caller.user(), PASSWORD, port(), self.name);
        if !extra.is_empty() {
            url.push('?');
            url.push_str(extra);
        }
        url
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = connect_to("postgres", Caller::Superuser) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The `fluxbase` binary under test: `$FLUXBASE_BIN`, else the workspace's debug build.
pub fn fluxbase_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FLUXBASE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug/fluxbase");
    assert!(path.exists(), "{} is missing: build it with cargo build -p fluxbase", path.display());
    path
}

/// A `fluxbase` command with none of the caller's FLUXBASE_* or DATABASE_URL settings,
/// so that each test states exactly what it configures.
pub fn fluxbase() -> Command {
    let mut cmd = Command::new(fluxbase_bin());
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("FLUXBASE_ADMIN_") || key_str == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `fluxbase` to completion with a deadline.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn fluxbase");
    wait_with_deadline(child, Duration::from_secs(60))
}

fn wait_with_deadline(mut child: Child, deadline: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for fluxbase").is_some() {
            return child.wait_with_output().expect("collect fluxbase output");
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect fluxbase output");
            panic!(
                "fluxbase did not finish within {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets FLUXBASE_ADMIN_DATA_DATABASE_URL, unless the command has one, to DATABASE_URL's
/// address with the test cluster's data login (`fluxbase_data`).
pub fn with_data_login(cmd: &mut Command) -> &mut Command {
    let envs: Vec<(String, Option<String>)> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
        .collect();
    let has = |key: &str| envs.iter().any(|(k, _)| k == key);
    if has("FLUXBASE_ADMIN_DATA_DATABASE_URL") {
        return cmd;
    }
    if let Some((_, Some(url))) = envs.iter().find(|(k, _)| k == "DATABASE_URL") {
        if let Some((scheme, rest)) = url.split_once("://") {
            let after_user = rest.find([':', '@']).map_or("", |i| &rest[i..]);
            let data_url = format!("{scheme}://{}{after_user}", Caller::Data.user());
            let data_url = data_url.replacen(&format!("{}@", Caller::Data.user()), &format!("{}:{PASSWORD}@", Caller::Data.user()), 1);
            cmd.env("FLUXBASE_ADMIN_DATA_DATABASE_URL", data_url);
        }
    }
    cmd
}

/// A running `fluxbase serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub base_url: String,
    pub output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `fluxbase serve` against `db` as the dashboard's login role, on a free port.
    pub fn start(db: &TestDb) -> Self {
        Self::start_with(fluxbase().env("DATABASE_URL", db.url(Caller::Dashboard, "sslmode=disable")))
    }

    /// Starts a prepared `fluxbase` command with `serve --port 0` and waits until it listens.
    /// Without a data login URL of its own, it gets DATABASE_URL's with the data login.
    pub fn start_with(cmd: &mut Command) -> Self {
        with_data_login(cmd);
        let mut child = cmd
            .args(["serve", "--port", "0"])
            .env("FLUXBASE_ADMIN_SESSION_SECRET", "test-secret-test-secret-test-secret-0123")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fluxbase serve");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (tx, output) = (tx.clone(), output.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&line);
                    output.lock().unwrap().push('\n');
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let base_url = addr.trim().to_string();
                        return Server { child, base_url, output };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("fluxbase serve did not start; output:\n{}", output.lock().unwrap());
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The first line of the server's output that contains `needle`, waiting for it up to
    /// 10 s: the output is read by threads of its own, so a line logged while a request
    /// was answered may arrive a moment after the answer.
    pub fn output_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = self.output.lock().unwrap().clone();
            if let Some(line) = output.lines().find(|line| line.contains(needle)) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no line with {needle} in the server's output:\n{output}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    /// GET `path` with an optional bearer token, returning the status and the body.
    pub fn get_text(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let mut request = Self::agent().get(&self.url(path));
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    }

    /// GET `path`, returning the status and the body parsed as JSON.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get_text(path, None);
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}: {body}")))
    }

    /// GET `path` with a bearer token, returning the status and the body parsed as JSON.
    pub fn get_json_with(&self, path: &str, bearer: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get_text(path, Some(bearer));
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}: {body}")))
    }

    /// POST `body` as JSON to `path` with an optional bearer token, returning the status
    /// and the answer parsed as JSON.
    pub fn post_json(&self, path: &str, bearer: Option<&str>, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let mut request = Self::agent().post(&self.url(path));
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.send_json(body).unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON: {e}: {text}")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// stdout and stderr of a finished command, as text.
pub fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

pub mod admin;
pub mod authenticator;
pub mod browser;
pub mod data_plane;
pub mod fixtures;

/// The first column of every row a query returns, as text.
pub fn strings(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Vec<String> {
    client
        .query(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}
