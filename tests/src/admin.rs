//! Helpers for tests of admin accounts: make admins, and call the dashboard's functions
//! the way `fluxbase serve` does (one transaction, `SET LOCAL ROLE fluxbase_dashboard`).

use postgres::types::ToSql;
use postgres::{Client, Row};

use crate::{Caller, TestDb};

/// A password the policy accepts.
pub const PASSWORD: &str = "violet kettle marches north";

/// Creates an admin with a password, as an operator would, and returns its id.
pub fn create_admin(db: &TestDb, email: &str, role: &str) -> String {
    db.connect(Caller::Superuser)
        .query_one(
            "SELECT admin_id::text FROM dashboard_auth.operator_create_admin($1, 'Test Admin', $2, $3)",
            &[&email, &role, &PASSWORD],
        )
        .unwrap_or_else(|e| panic!("create admin {email}: {e}"))
        .get(0)
}

/// Runs one statement in its own transaction as `fluxbase_dashboard`, committing on
/// success (as the web binary does).
pub fn as_dashboard(client: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard")?;
    let rows = tx.query(sql, params)?;
    tx.commit()?;
    Ok(rows)
}

/// As `as_dashboard`, from the client at `ip`: fluxbase serve sets the request's address
/// and user agent per transaction, and the extension reads them from there.
pub fn as_dashboard_from(client: &mut Client, ip: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL ROLE fluxbase_dashboard")?;
    tx.execute(
        "SELECT set_config('fluxbase.client_ip', $1, true), set_config('fluxbase.user_agent', 'fluxbase-tests', true)",
        &[&ip],
    )?;
    let rows = tx.query(sql, params)?;
    tx.commit()?;
    Ok(rows)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResult {
    pub ok: bool,
    pub code: String,
    pub message: String,
    pub token: Option<String>,
    pub role: Option<String>,
    /// Set when the password was right and a second factor is needed.
    pub challenge: Option<String>,
}

impl LoginResult {
    fn from_row(row: &Row) -> Self {
        LoginResult {
            ok: row.get("ok"),
            code: row.get("code"),
            message: row.get("message"),
            token: row.get("session_token"),
            role: row.get("role"),
            challenge: row.get("challenge_token"),
        }
    }

    /// What the caller learns: everything but the session itself.
    pub fn answer(&self) -> (bool, &str, &str) {
        (self.ok, &self.code, &self.message)
    }

    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or_else(|| panic!("no session: {self:?}"))
    }
}

/// `dashboard_auth.sign_in` through the dashboard's role, from `ip`.
pub fn login(client: &mut Client, email: &str, password: &str, ip: &str) -> LoginResult {
    let rows = as_dashboard_from(
        client,
        ip,
        "SELECT * FROM dashboard_auth.sign_in($1, $2)",
        &[&email, &password],
    )
    .unwrap_or_else(|e| panic!("login {email}: {e}"));
    LoginResult::from_row(&rows[0])
}

/// A login function's result row (login, setup, redeem_link).
pub fn login_result(rows: Vec<Row>) -> LoginResult {
    LoginResult::from_row(&rows[0])
}

/// The SQLSTATE of a failed call, as its five-character code.
pub fn sqlstate(result: Result<Vec<Row>, postgres::Error>) -> String {
    match result {
        Ok(rows) => panic!("expected an error, got {} rows", rows.len()),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// Audit actions in order, as the superuser sees them.
pub fn audit_actions(db: &TestDb) -> Vec<String> {
    db.connect(Caller::Superuser)
        .query("SELECT action FROM dashboard_auth.audit_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `operator_verify_audit()`'s verdict and entry count.
pub fn verify_chain(client: &mut Client) -> (bool, i64, String) {
    let row = client.query_one("SELECT valid, entries, message FROM dashboard_auth.operator_verify_audit()", &[]).unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// A database error as its SQLSTATE and messages, for assertion messages.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {} (detail: {:?}, hint: {:?})", d.code().code(), d.message(), d.detail(), d.hint()),
        None => e.to_string(),
    }
}

/// The SQLSTATE and message of a call that must raise.
pub fn failure<T: std::fmt::Display>(result: Result<T, postgres::Error>) -> (String, String) {
    match result {
        Ok(answer) => panic!("expected an error, got {answer}"),
        Err(e) => {
            let d = e.as_db_error().unwrap_or_else(|| panic!("not a server error: {e}"));
            (d.code().code().to_string(), d.message().to_string())
        }
    }
}
