//! The application state: what every route may reach (the two pools, the real-time hub,
//! the settings, the web UI's keys and counters). One `Clone` handle, built once by
//! `fluxbase serve`; pages and API routes take it without importing the server.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::client::TrustedProxies;
use crate::config::ServeSettings;
use crate::db::RequestContext;
use crate::realtime;
use crate::telemetry;
use crate::web::security::CspReports;
use crate::web::session::Keys;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    data_pool: Pool,
    realtime: realtime::Hub,
    settings: ServeSettings,
    /// Where links point (FLUXBASE_ADMIN_PUBLIC_URL, else http://localhost:<bound port>).
    public_url: String,
    /// `scheme://host[:port]` of the public URL, which a same-origin form post names.
    public_origin: String,
    instance_id: String,
    requests: telemetry::RequestCounters,
    keys: Keys,
    csp_reports: CspReports,
    test_pages: bool,
    /// Permits for the sign-in work that hashes or verifies a password (`login_permit`).
    logins: Semaphore,
}

impl AppState {
    pub fn new(pool: Pool, data_pool: Pool, settings: ServeSettings, public_url: String) -> Self {
        let public_origin = url::Url::parse(&public_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| public_url.clone());
        let keys = Keys::new(&settings.session_secret.bytes);
        // The browser tests' pages (an inline script that CSP must block, the reports seen):
        // never on unless asked for.
        let test_pages = std::env::var("FLUXBASE_ADMIN_TEST_PAGES").is_ok_and(|v| v == "1");
        AppState {
            inner: Arc::new(Inner {
                pool,
                data_pool,
                realtime: realtime::Hub::start(settings.database.clone()),
                settings,
                public_url,
                public_origin,
                instance_id: telemetry::instance_id(),
                requests: Default::default(),
                keys,
                csp_reports: CspReports::default(),
                test_pages,
                logins: Semaphore::new(login_permits()),
            }),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn database_config(&self) -> &tokio_postgres::Config {
        &self.inner.settings.database.config
    }

    /// The data login's pool (FLUXBASE_ADMIN_DATA_DATABASE_URL).
    pub fn data_pool(&self) -> &Pool {
        &self.inner.data_pool
    }

    pub fn data_database_config(&self) -> &tokio_postgres::Config {
        &self.inner.settings.data_database.config
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    pub fn requests(&self) -> &telemetry::RequestCounters {
        &self.inner.requests
    }

    pub fn realtime(&self) -> &realtime::Hub {
        &self.inner.realtime
    }

    pub fn metrics_token(&self) -> Option<&str> {
        self.inner.settings.metrics_token.as_deref()
    }

    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    pub fn public_origin(&self) -> &str {
        &self.inner.public_origin
    }

    /// Whether the dashboard is reached over https (directly or through a proxy that ends
    /// TLS): the cookies are then `Secure` and `__Host-`, and HSTS is sent.
    pub fn https(&self) -> bool {
        self.inner.public_url.starts_with("https://")
    }

    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.settings.trusted_proxies
    }

    /// FLUXBASE_ADMIN_SESSION_TIMEOUT, the `valid_for` of new sessions.
    pub fn session_timeout(&self) -> Option<Duration> {
        self.inner.settings.session_timeout
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn csp_reports(&self) -> &CspReports {
        &self.inner.csp_reports
    }

    /// FLUXBASE_ADMIN_TEST_PAGES=1: the `/__test/` pages exist.
    pub fn test_pages(&self) -> bool {
        self.inner.test_pages
    }

    /// A permit to run one call that hashes or verifies a password (sign-in, the second
    /// factor, redeeming a link, setup): hold it for the call, and let it go before the
    /// response is built. Such a call is argon2 in a Postgres backend, tens of
    /// milliseconds of a core and memory of its own, and holds a dashboard connection all
    /// that time. Unbounded, a burst of sign-ins (or someone guessing passwords) would take
    /// every core and every pooled connection, and browsing would starve. Bounded, the
    /// extra logins wait here, in order, holding neither a connection nor a core, and
    /// other requests go on.
    pub async fn login_permit(&self) -> SemaphorePermit<'_> {
        self.inner.logins.acquire().await.expect("the login semaphore is never closed")
    }

    /// The context of this copy's own work, which no client asked for.
    pub fn background_context(&self) -> RequestContext {
        RequestContext::background(self.public_url())
    }
}

/// How many password hashes may run at once: half the cores (at least one), so that the
/// other half is left to browsing even while logins keep arriving. Postgres and this
/// binary share the machine in the usual setup, so the cores seen here are the ones the
/// hashes use.
fn login_permits() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / 2).max(1)
}
