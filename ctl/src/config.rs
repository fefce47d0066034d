//! Command line and settings. Every setting is a flag with an environment fallback.
//!
//! clap reads the raw strings; `validate` turns them into typed settings with one-line
//! errors that name both the flag and the variable, and never echo a secret (clap's own
//! value errors would print the whole DATABASE_URL, password included).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::client::TrustedProxies;

/// The longest session lifetime `FLUXBASE_ADMIN_SESSION_TIMEOUT` may ask for.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
const MIN_SESSION_SECRET_LEN: usize = 32;
const MIN_METRICS_TOKEN_LEN: usize = 16;

#[derive(Debug, Parser)]
#[command(
    name = "fluxbase",
    version,
    about = "Fluxbase Admin: the admin dashboard for a Postgres backend",
    long_about = "Fluxbase Admin: the admin dashboard for a Postgres backend.\n\n\
        All state and rules live in the fluxbase_admin Postgres extension; this binary \
        serves the web dashboard and runs operator commands by calling its functions."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web dashboard
    Serve(ServeArgs),
    /// Operator commands: create admins, reset passwords, unlock (needs fluxbase_operator)
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
    /// The audit log: verify, export, purge old entries (needs fluxbase_operator)
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Manage the fluxbase_admin extension in a database (needs a superuser)
    #[command(subcommand)]
    Extension(ExtensionCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Create the extension, or update it to the version installed on the database host
    Install(DatabaseArgs),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL, e.g. postgresql://user:pass@localhost:5432/fluxbase.
    /// sslmode=require (or verify-ca, verify-full) uses TLS.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Postgres URL of the data login: a NOINHERIT login that is a member of
    /// fluxbase_explorer, anon, authenticated, service_role and the runner role, and of no
    /// dashboard role (see README, "Two logins"). The explorer and the SQL runner run there.
    #[arg(long, env = "FLUXBASE_ADMIN_DATA_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub data_database_url: Option<String>,

    /// Port to serve the dashboard on (0 picks a free port)
    #[arg(long, env = "FLUXBASE_ADMIN_PORT", default_value = "3001", value_name = "PORT")]
    pub port: String,

    /// Address to bind; keep the default unless a proxy in front needs another
    #[arg(long, env = "FLUXBASE_ADMIN_BIND", default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: String,

    /// Secret that signs the session cookie and CSRF tokens (at least 32 characters),
    /// e.g. from `openssl rand -hex 32`. Required, except with --dev
    #[arg(long, env = "FLUXBASE_ADMIN_SESSION_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub session_secret: Option<String>,

    /// Development mode: without a session secret, make a random one for this process
    /// (admins are signed out when it restarts) and say so
    #[arg(long)]
    pub dev: bool,

    /// Lifetime of a new admin session, e.g. 30m, 8h, 7d (at most 7d).
    /// Unset: the database setting applies (24h unless changed).
    #[arg(long, env = "FLUXBASE_ADMIN_SESSION_TIMEOUT", value_name = "DURATION")]
    pub session_timeout: Option<String>,

    /// Public address of the dashboard, used in printed links and Origin checks
    /// [default: http://localhost:<port>]
    #[arg(long, env = "FLUXBASE_ADMIN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Proxies in front of the dashboard whose X-Forwarded-For is believed: IP addresses or
    /// CIDR ranges separated by commas, e.g. 127.0.0.1,10.0.0.0/8. Unset: the client's
    /// address is the connection's
    #[arg(long, env = "FLUXBASE_ADMIN_TRUSTED_PROXIES", value_name = "ADDRS")]
    pub trusted_proxies: Option<String>,

    /// Bearer token that /metrics requires (at least 16 characters); /metrics is off without it
    #[arg(long, env = "FLUXBASE_ADMIN_METRICS_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub metrics_token: Option<String>,

    /// How often this copy reports its pool and offers to sample metrics (1s to 60s)
    #[arg(long, env = "FLUXBASE_ADMIN_HEARTBEAT_INTERVAL", default_value = "10s", value_name = "DURATION")]
    pub heartbeat_interval: String,
}

/// `fluxbase serve`'s settings, validated.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub database: DatabaseSettings,
    /// The data plane's login (FLUXBASE_ADMIN_DATA_DATABASE_URL).
    pub data_database: DatabaseSettings,
    pub port: u16,
    pub bind: IpAddr,
    pub session_secret: SessionSecret,
    /// Passed as `valid_for` to the functions that start a session (sign-in, setup, links).
    pub session_timeout: Option<Duration>,
    pub public_url: Option<url::Url>,
    pub trusted_proxies: TrustedProxies,
    pub metrics_token: Option<String>,
    pub heartbeat_interval: Duration,
}

#[derive(Clone)]
pub struct SessionSecret {
    /// Signs the session cookie and derives the CSRF tokens (crate::web::session).
    pub bytes: Vec<u8>,
    /// Made up for this process (--dev without a secret).
    pub ephemeral: bool,
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSecret").field("ephemeral", &self.ephemeral).finish_non_exhaustive()
    }
}

/// How to reach Postgres: the parsed connection settings and how strictly to check TLS.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub config: tokio_postgres::Config,
    pub tls_verify: TlsVerify,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::db::describe_target(&self.config))
    }
}

/// libpq's meaning of sslmode: `require` encrypts without checking the certificate,
/// `verify-ca` checks it against the system's roots, `verify-full` checks the host name too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVerify {
    None,
    Ca,
    Full,
}

impl DatabaseArgs {
    pub fn validate(&self) -> Result<DatabaseSettings> {
        let Some(raw) = self.database_url.as_deref().filter(|s| !s.trim().is_empty()) else {
            bail!(
                "DATABASE_URL is not set: pass --database-url or set \
                 DATABASE_URL=postgresql://user:pass@localhost:5432/fluxbase"
            );
        };
        parse_database_url(raw, "DATABASE_URL")
    }
}

/// Parses a libpq-style URL or key=value string. tokio-postgres knows sslmode
/// disable/prefer/require only, so verify-ca and verify-full are mapped onto `require`
/// plus certificate checks done by our TLS connector.
fn parse_database_url(raw: &str, variable: &str) -> Result<DatabaseSettings> {
    let mut tls_verify = TlsVerify::None;
    let mut normalised = raw.to_string();
    for (mode, verify) in [("verify-full", TlsVerify::Full), ("verify-ca", TlsVerify::Ca)] {
        if normalised.contains(&format!("sslmode={mode}")) {
            normalised = normalised.replace(&format!("sslmode={mode}"), "sslmode=require");
            tls_verify = verify;
        }
    }
    let config: tokio_postgres::Config = normalised.parse().map_err(|e: tokio_postgres::Error| {
        // The parser's message names the bad part, never the password.
        anyhow::anyhow!("{variable} is malformed ({e}): expected postgresql://user:pass@host:5432/dbname")
    })?;
    if config.get_hosts().is_empty() {
        bail!("{variable} names no host: expected postgresql://user:pass@host:5432/dbname");
    }
    if config.get_user().is_none() {
        bail!("{variable} names no user: expected postgresql://user:pass@host:5432/dbname");
    }
    Ok(DatabaseSettings { config, tls_verify })
}

impl ServeArgs {
    pub fn validate(&self) -> Result<ServeSettings> {
        let database = self.database.validate()?;
        let Some(data_url) = self.data_database_url.as_deref().filter(|s| !s.trim().is_empty()) else {
            bail!(
                "FLUXBASE_ADMIN_DATA_DATABASE_URL is not set: pass --data-database-url or set it to the data \
                 login's URL, e.g. postgresql://fluxbase_data:pass@localhost:5432/fluxbase (README, \"Two logins\")"
            );
        };
        let data_database = parse_database_url(data_url, "FLUXBASE_ADMIN_DATA_DATABASE_URL")?;
        let port: u16 = self.port.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "FLUXBASE_ADMIN_PORT (--port) must be a port number from 0 to 65535, not {:?}",
                self.port
            )
        })?;
        let bind: IpAddr = self.bind.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "FLUXBASE_ADMIN_BIND (--bind) must be an IP address such as 127.0.0.1 or ::1, not {:?}",
                self.bind
            )
        })?;
        let session_secret = match self.session_secret.as_deref() {
            Some(secret) if secret.len() < MIN_SESSION_SECRET_LEN => bail!(
                "FLUXBASE_ADMIN_SESSION_SECRET (--session-secret) must be at least \
                 {MIN_SESSION_SECRET_LEN} characters; generate one with: openssl rand -hex 32"
            ),
            Some(secret) => Some(SessionSecret { bytes: secret.as_bytes().to_vec(), ephemeral: false }),
            None if self.dev => Some(SessionSecret { bytes: rand::random::<[u8; 32]>().to_vec(), ephemeral: true }),
            // Refused last, so that every malformed setting is named first.
            None => None,
        };
        let session_timeout = self
            .session_timeout
            .as_deref()
            .map(parse_session_timeout)
            .transpose()?;
        let public_url = self.public_url.as_deref().map(parse_public_url).transpose()?;
        let trusted_proxies = TrustedProxies::parse(self.trusted_proxies.as_deref().unwrap_or("")).map_err(|bad| {
            anyhow::anyhow!(
                "FLUXBASE_ADMIN_TRUSTED_PROXIES (--trusted-proxies) must be IP addresses or CIDR ranges separated \
                 by commas, such as 127.0.0.1,10.0.0.0/8; {bad:?} is neither"
            )
        })?;
        let metrics_token = match self.metrics_token.as_deref() {
            Some(token) if token.len() < MIN_METRICS_TOKEN_LEN => bail!(
                "FLUXBASE_ADMIN_METRICS_TOKEN (--metrics-token) must be at least \
                 {MIN_METRICS_TOKEN_LEN} characters; generate one with: openssl rand -hex 24"
            ),
            other => other.map(str::to_owned),
        };
        let heartbeat_interval = humantime::parse_duration(self.heartbeat_interval.trim())
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(60))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "FLUXBASE_ADMIN_HEARTBEAT_INTERVAL (--heartbeat-interval) must be a duration from 1s to 60s, not {:?}",
                    self.heartbeat_interval
                )
            })?;
        let Some(session_secret) = session_secret else {
            bail!(
                "FLUXBASE_ADMIN_SESSION_SECRET is not set: it signs the session cookie; generate one with \
                 `openssl rand -hex 32` and pass it as FLUXBASE_ADMIN_SESSION_SECRET or --session-secret \
                 (or run `fluxbase serve --dev` for a throwaway one)"
            );
        };
        Ok(ServeSettings { database, data_database, port, bind, session_secret, session_timeout, public_url, trusted_proxies, metrics_token, heartbeat_interval })
    }
}

/// `30m`, `8h`, `7d`, `1h 30m`: at least a minute, at most seven days.
pub fn parse_session_timeout(raw: &str) -> Result<Duration> {
    let duration = humantime::parse_duration(raw.trim()).with_context(|| {
        format!(
            "FLUXBASE_ADMIN_SESSION_TIMEOUT (--session-timeout) must be a duration such as 30m, 8h or 7d, not {raw:?}"
        )
    })?;
    if duration < Duration::from_secs(60) {
        bail!("FLUXBASE_ADMIN_SESSION_TIMEOUT (--session-timeout) must be at least 1m, not {raw:?}");
    }
    if duration > MAX_SESSION_TIMEOUT {
        bail!("FLUXBASE_ADMIN_SESSION_TIMEOUT (--session-timeout) may be at most 7d, not {raw:?}");
    }
    Ok(duration)
}

pub fn parse_public_url(raw: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(raw.trim()).map_err(|e| {
        anyhow::anyhow!(
            "FLUXBASE_ADMIN_PUBLIC_URL (--public-url) must be an absolute http(s) URL such as \
             https://admin.example.com ({e}), not {raw:?}"
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        bail!(
            "FLUXBASE_ADMIN_PUBLIC_URL (--public-url) must be an absolute http(s) URL such as \
             https://admin.example.com, not {raw:?}"
        );
    }
    Ok(parsed)
}

/// The address printed in links: the configured public URL, else http://localhost:<port>.
/// One rule for `fluxbase serve` and the operator commands.
pub fn link_base(public_url: Option<&url::Url>, port: u16) -> String {
    match public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_string(),
        None => format!("http://localhost:{port}"),
    }
}

impl ServeSettings {
    pub fn public_url_for(&self, bound_port: u16) -> String {
        link_base(self.public_url.as_ref(), bound_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_in_the_usual_forms() {
        assert_eq!(parse_session_timeout("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_session_timeout("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_session_timeout("7d").unwrap(), MAX_SESSION_TIMEOUT);
        assert_eq!(parse_session_timeout("1h 30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn session_timeouts_out_of_range_or_malformed_are_refused() {
        for bad in ["8d", "30s", "soon", "", "-1h"] {
            let err = parse_session_timeout(bad).unwrap_err().to_string();
            assert!(err.contains("FLUXBASE_ADMIN_SESSION_TIMEOUT"), "{bad}: {err}");
        }
    }

    #[test]
    fn database_url_errors_never_echo_the_password() {
        let err = parse_database_url("postgresql://u:s3cret@host:notaport/db", "DATABASE_URL").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn verify_full_means_require_plus_checks() {
        let settings = parse_database_url("postgresql://u@h/db?sslmode=verify-full", "DATABASE_URL").unwrap();
        assert_eq!(settings.tls_verify, TlsVerify::Full);
        assert_eq!(settings.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }
}
