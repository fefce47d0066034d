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
//!   re-`PREPARE` a named one), and are reset with `DISCARD ALL` before reuse.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client};

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

/// Opens a transaction working as `role`, with `statement_timeout` and the request's
/// context set on it.
pub async fn begin<'a>(
    client: &'a mut deadpool_postgres::ClientWrapper,
    role: DbRole,
    context: &RequestContext,
    timeout: Duration,
) -> Result<deadpool_postgres::Transaction<'a>> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.batch_execute(&format!(
        "{}; SET LOCAL statement_timeout = {}",
        role.set_local(),
        timeout.as_millis()
    ))
    .await
    .map_err(pg_error)?;
    // Bound parameters, never text spliced into SQL: the user agent is the client's own.
    let client_ip = context.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let user_agent = context.user_agent.as_deref().unwrap_or("");
    tx.query_typed(
        "SELECT pg_catalog.set_config('fluxbase.client_ip', $1, true),
                pg_catalog.set_config('fluxbase.user_agent', $2, true),
                pg_catalog.set_config('fluxbase.public_url', $3, true)",
        &[(&client_ip, Type::TEXT), (&user_agent, Type::TEXT), (&context.public_url, Type::TEXT)],
    )
    .await
    .map_err(pg_error)?;
    Ok(tx)
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

/// A pool of connections as the login role in DATABASE_URL. Recycling runs a full
/// reset (`SET SESSION AUTHORIZATION DEFAULT; RESET ALL; ...`) before reuse, so even a
/// session-level setting that slipped through cannot reach the next request.
pub fn pool(settings: &DatabaseSettings, max_size: usize) -> Result<Pool> {
    build_pool(settings, max_size, RecyclingMethod::Clean)
}

/// A pool of the data login's connections: `DISCARD ALL` before each reuse drops
/// everything app code may have left in the session (settings, prepared statements,
/// temporary tables, listeners, advisory locks).
pub fn data_pool(settings: &DatabaseSettings, max_size: usize) -> Result<Pool> {
    build_pool(settings, max_size, RecyclingMethod::Custom("DISCARD ALL".into()))
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
