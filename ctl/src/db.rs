//! Connections to Postgres: the pool, TLS, the per-transaction role, and errors a person
//! can act on.
//!
//! The web binary has two logins (architecture.md, "Two planes"), each `NOINHERIT`
//! (PostgREST's authenticator model), each with a pool of its own:
//! - the dashboard login, a member of `fluxbase_dashboard` only: every transaction starts
//!   with `SET LOCAL ROLE fluxbase_dashboard`;
//! - the data login, a member of the roles the data plane switches to: every transaction
//!   starts by claiming a ticket, and the extension switches role. Its connections never
//!   carry a session token, use unnamed statements only (app code could `DEALLOCATE` and
//!   re-`PREPARE` a named one), and are reset (`RESET_DATA_SESSION`) before reuse.
//!
//! Round trips (issue 21). tokio-postgres pipelines requests: futures polled together
//! write their messages to the connection in the order they are first polled, before any
//! answer comes back. `call` sends a dashboard statement's whole transaction (BEGIN, the
//! role and timeout, the request's context, the statement, COMMIT) in one round trip,
//! with the statement prepared once per connection; the data plane's hand-off does the
//! same with unnamed statements (explorer.rs).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::future::{join, join3};
use futures_util::FutureExt;
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Row};

use crate::config::{DatabaseSettings, TlsVerify};

/// The roles a transaction may switch to. Identifiers are fixed here, never taken
/// from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// The dashboard's own work: pre-session and session-checked functions, metrics.
    Dashboard,
}

impl DbRole {
    pub fn set_local(self) -> &'static str {
        match self {
            DbRole::Dashboard => "SET LOCAL ROLE fluxbase_dashboard",
        }
    }
}

/// Default limit for one statement of the dashboard's own work. Timeouts are set by the
/// caller, on the transaction: a function cannot limit the statement already running.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a dashboard transaction knows of its request. The extension reads it from
/// transaction-local settings: the client annotates the audit log
/// (`dashboard_auth.request_ip()`, `request_user_agent()`), and the public address is where
/// one-time links point (`dashboard_auth.one_time_link`).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The dashboard's public address without a trailing slash; empty: no links.
    pub public_url: String,
}

impl RequestContext {
    /// The context of the binary's own work (heartbeat, metrics, the setup link at
    /// startup): no client.
    pub fn background(public_url: &str) -> Self {
        RequestContext { client_ip: None, user_agent: None, public_url: public_url.to_string() }
    }
}

/// The request's context, bound (never spliced: the user agent is the client's own), set
/// on the transaction only.
const SET_CONTEXT: &str = "SELECT pg_catalog.set_config('fluxbase.client_ip', $1, true),
                pg_catalog.set_config('fluxbase.user_agent', $2, true),
                pg_catalog.set_config('fluxbase.public_url', $3, true)";

fn context_values(context: &RequestContext) -> (String, &str) {
    (context.client_ip.map(|ip| ip.to_string()).unwrap_or_default(), context.user_agent.as_deref().unwrap_or(""))
}

/// Opens a transaction working as `role`, with `statement_timeout` and the request's
/// context set on it: BEGIN, then the settings in one round trip (pipelined). For a
/// transaction of one statement, `call` does it all in one.
pub async fn begin<'a>(
    client: &'a mut deadpool_postgres::ClientWrapper,
    role: DbRole,
    context: &RequestContext,
    timeout: Duration,
) -> Result<deadpool_postgres::Transaction<'a>> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let settings = format!("{}; SET LOCAL statement_timeout = {}", role.set_local(), timeout.as_millis());
    let (client_ip, user_agent) = context_values(context);
    let (set, noted) = join(
        tx.batch_execute(&settings),
        tx.query_typed(SET_CONTEXT, &[(&client_ip, Type::TEXT), (&user_agent, Type::TEXT), (&context.public_url, Type::TEXT)]),
    )
    .await;
    set.map_err(pg_error)?;
    noted.map_err(pg_error)?;
    Ok(tx)
}

/// What went wrong in a `call`: the transaction could not be set up (no database, a lost
/// connection, the role switch refused), or the statement (or its commit) failed.
#[derive(Debug)]
pub enum CallError {
    Unavailable(anyhow::Error),
    Db(tokio_postgres::Error),
}

/// One statement in its own dashboard transaction, as `fluxbase_dashboard`, with the
/// request's context and `timeout`, committed; all its rows.
///
/// One round trip after the pool's liveness check: BEGIN with `SET LOCAL ROLE` and
/// `SET LOCAL statement_timeout` (one simple query), the context's `set_config`s, the
/// statement and COMMIT are written together. A failure aborts the transaction, so what
/// follows it does nothing and the pipelined COMMIT ends as a rollback.
///
/// The statement is prepared once per connection (deadpool's statement cache), which is
/// safe here and only here: on the dashboard login no app code runs (the dashboard
/// plane's functions never execute an app object, architecture.md "Two planes"), so
/// nothing can `DEALLOCATE` or re-`PREPARE` a statement under us, and every setting the
/// binary makes is transaction-local (`SET LOCAL`, `set_config(..., true)`), so the pool
/// needs no reset between uses (`pool`). The cache holds one entry per call site: the
/// text of a statement is fixed in the binary, never built from a request. On a cache
/// miss the Parse goes after the role switch, in the transaction (parse analysis checks
/// `USAGE` on the schemas, which only `fluxbase_dashboard` has): one more round trip.
pub async fn call(
    pool: &Pool,
    config: &tokio_postgres::Config,
    context: &RequestContext,
    timeout: Duration,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, CallError> {
    let client = checkout(pool, config).await.map_err(CallError::Unavailable)?;
    match call_on(&client, context, timeout, sql, params).await {
        // An extension update changed what a cached statement returns: Postgres refuses
        // the old statement (and rolled the transaction back). Forget every connection's
        // statements and run it once more.
        Err(CallError::Db(e)) if stale_statement(&e) => {
            pool.manager().statement_caches.clear();
            call_on(&client, context, timeout, sql, params).await
        }
        answer => answer,
    }
}

fn stale_statement(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        && e.as_db_error().is_some_and(|db| db.message().contains("cached plan must not change result type"))
}

async fn call_on(
    client: &ClientWrapper,
    context: &RequestContext,
    timeout: Duration,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, CallError> {
    let open = format!("BEGIN; {}; SET LOCAL statement_timeout = {}", DbRole::Dashboard.set_local(), timeout.as_millis());
    let (client_ip, user_agent) = context_values(context);
    let mut open_transaction = RollbackUnlessDone { client, done: false };
    // `join3` polls in order, so the messages go in this order. The statement's future
    // sends Bind/Execute and then COMMIT on its first poll when the statement is cached;
    // on a miss, after its Parse is answered.
    let (opened, noted, called) = join3(
        client.batch_execute(&open),
        client.query_typed(SET_CONTEXT, &[(&client_ip, Type::TEXT), (&user_agent, Type::TEXT), (&context.public_url, Type::TEXT)]),
        async {
            let statement = client.prepare_cached(sql).await?;
            Ok::<_, tokio_postgres::Error>(join(client.query(&statement, params), client.batch_execute("COMMIT")).await)
        },
    )
    .await;
    let called = match called {
        Ok(answer) => {
            open_transaction.done = true;
            answer
        }
        // The Parse failed, so COMMIT was never sent: end the transaction here.
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            open_transaction.done = true;
            (Err(e), Ok(()))
        }
    };
    opened.map_err(|e| CallError::Unavailable(pg_error(e)))?;
    noted.map_err(|e| CallError::Unavailable(pg_error(e)))?;
    let rows = called.0.map_err(CallError::Db)?;
    called.1.map_err(CallError::Db)?;
    Ok(rows)
}

/// A transaction whose COMMIT may not have been sent: a request dropped mid-way (its
/// client went away) sends ROLLBACK, as tokio-postgres's `Transaction` does, so that the
/// connection goes back to the pool outside a transaction (the pool does not reset it).
struct RollbackUnlessDone<'a> {
    client: &'a ClientWrapper,
    done: bool,
}

impl Drop for RollbackUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The first poll writes the message; its answer is discarded.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// What a data connection runs before it goes back to the pool: `DISCARD ALL` less
/// `DISCARD PLANS`. It drops everything app code may leave in the session (cursors, the
/// role and settings, prepared statements, listeners, advisory locks, temporary tables,
/// sequence state) but keeps the plans cached in the extension's functions: Postgres
/// replans one itself when what it depends on changes (a table, a temporary table that
/// shadows a name, the search_path, the role for RLS), so throwing them all away made the
/// next request plan claim_ticket and browse() again, about half of its time.
pub const RESET_DATA_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; \
                                      UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// A connection of the data login. It goes back to the pool only once `reset` (or the
/// reset at the end of a pipeline, then `mark_reset`) has run after its last use,
/// so either is the last thing done with it:
/// app code may have left settings, prepared statements, temporary tables that shadow
/// names, listeners or advisory locks in the session. Dropped otherwise (an error
/// mid-way, a lost connection, a request that went away), it is closed, never reused.
pub struct DataConnection {
    object: Option<Object>,
    reset: bool,
}

impl DataConnection {
    pub async fn checkout(pool: &Pool, config: &tokio_postgres::Config) -> Result<Self> {
        Ok(DataConnection { object: Some(checkout(pool, config).await?), reset: false })
    }

    /// `RESET_DATA_SESSION` ran after the last use (the caller saw it succeed).
    pub fn mark_reset(&mut self) {
        self.reset = true;
    }

    /// Runs `RESET_DATA_SESSION`, so that the connection may be reused.
    pub async fn reset(&mut self) -> Result<(), tokio_postgres::Error> {
        self.reset = false;
        self.batch_execute(RESET_DATA_SESSION).await?;
        self.reset = true;
        Ok(())
    }
}

impl std::ops::Deref for DataConnection {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.object.as_ref().expect("a data connection in use")
    }
}

impl std::ops::DerefMut for DataConnection {
    fn deref_mut(&mut self) -> &mut Object {
        self.object.as_mut().expect("a data connection in use")
    }
}

impl Drop for DataConnection {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            if !self.reset {
                // Out of the pool; dropping the client closes the connection.
                drop(Object::take(object));
            }
        }
    }
}

pub fn tls_connector(verify: TlsVerify) -> Result<MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    match verify {
        // libpq's require (and prefer): encrypted, certificate not checked.
        TlsVerify::None => {
            builder.danger_accept_invalid_certs(true).danger_accept_invalid_hostnames(true);
        }
        TlsVerify::Ca => {
            builder.danger_accept_invalid_hostnames(true);
        }
        TlsVerify::Full => {}
    }
    let connector = builder.build().context("cannot set up TLS for the database connection")?;
    Ok(MakeTlsConnector::new(connector))
}

/// A pool of connections as the login role in DATABASE_URL (the dashboard login).
/// Recycling only checks that the connection is alive (deadpool's verified recycling: an
/// empty query), no reset: no app code runs on this login, and every setting the binary
/// makes on it is transaction-local (`begin`, `call`: `SET LOCAL`, `set_config(..., true)`),
/// so a transaction that ended leaves nothing behind, and a full reset
/// (`SET SESSION AUTHORIZATION DEFAULT; RESET ALL; ...`) on every checkout was work for
/// nothing. It keeps the prepared statements of `call` too. The empty query stays: a
/// connection whose backend was ended (a restart, `pg_terminate_backend`) is replaced
/// at checkout instead of failing the request that takes it.
pub fn pool(settings: &DatabaseSettings, max_size: usize) -> Result<Pool> {
    build_pool(settings, max_size, RecyclingMethod::Verified)
}

/// A pool of the data login's connections. Only `DataConnection` takes them, and it lets
/// one back in only after `RESET_DATA_SESSION` (pipelined with the work, on return), which drops
/// everything app code may have left in the session (settings, prepared statements,
/// temporary tables, listeners, advisory locks); one that was not reset is closed. So
/// recycling only checks that the connection is alive (an empty query, as `pool`).
pub fn data_pool(settings: &DatabaseSettings, max_size: usize) -> Result<Pool> {
    build_pool(settings, max_size, RecyclingMethod::Verified)
}

fn build_pool(settings: &DatabaseSettings, max_size: usize, recycling_method: RecyclingMethod) -> Result<Pool> {
    let manager = Manager::from_connect(
        settings.config.clone(),
        crate::notices::NoticeKeepingConnect { tls: tls_connector(settings.tls_verify)? },
        ManagerConfig { recycling_method },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("cannot build the connection pool")
}

/// One connection for a CLI command. The server's NOTICEs (such as the roles an install
/// adopted) are printed to stderr, as psql does.
pub async fn connect_once(settings: &DatabaseSettings) -> Result<Client> {
    let tls = tls_connector(settings.tls_verify)?;
    let (client, mut connection) = settings
        .config
        .connect(tls)
        .await
        .map_err(|e| anyhow::anyhow!(describe_connect_error(&settings.config, &e)))?;
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notice(notice)) => eprintln!("{}: {}", notice.severity(), notice.message()),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: database connection lost: {}", describe_pg_error(&e));
                    break;
                }
            }
        }
    });
    Ok(client)
}

/// `user@host:port/dbname`, never the password.
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        host,
        port,
        config.get_dbname().unwrap_or(config.get_user().unwrap_or("?"))
    )
}

/// A database error as an `anyhow::Error` with `describe_pg_error`'s one-line text:
/// `.map_err(db::pg_error)`.
pub fn pg_error(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!(describe_pg_error(&e))
}

/// The server's own message when there is one, else the error and its causes on one line.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub fn describe_connect_error(config: &tokio_postgres::Config, e: &tokio_postgres::Error) -> String {
    format!(
        "cannot connect to the database {} ({}): check DATABASE_URL and that Postgres is running",
        describe_target(config),
        describe_pg_error(e)
    )
}

/// Takes a connection from the pool, turning a failure into one line naming the target.
pub async fn checkout(pool: &Pool, config: &tokio_postgres::Config) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(pg) => anyhow::anyhow!(describe_connect_error(config, &pg)),
        deadpool_postgres::PoolError::Timeout(_) => anyhow::anyhow!(
            "cannot connect to the database {}: timed out; check DATABASE_URL and that Postgres is running",
            describe_target(config)
        ),
        other => anyhow::anyhow!("cannot use the connection pool: {other}"),
    })
}
