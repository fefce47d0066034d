//! `fluxbase serve`: checks that the database is ready, then serves the dashboard.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServeSettings;
use crate::db::{self, DbRole, RequestContext};
use crate::realtime;
use crate::sql_runner;
use crate::telemetry;

/// Connections the dashboard keeps open at most. Small on purpose: an admin dashboard
/// must never crowd out the application it administers.
const POOL_SIZE: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

// The state lives in its own module; this name stays for the routes that import it here.
pub use crate::state::AppState;

pub async fn serve(settings: ServeSettings) -> Result<()> {
    let pool = db::pool(&settings.database, POOL_SIZE)?;
    let data_pool = db::data_pool(&settings.data_database, POOL_SIZE)?;
    let extension_version = preflight(&pool, &data_pool, &settings).await?;

    if settings.session_secret.ephemeral {
        eprintln!(
            "warning: --dev without FLUXBASE_ADMIN_SESSION_SECRET: using a random secret, so admins are \
             signed out when fluxbase restarts and several copies cannot share sessions"
        );
    }

    let addr = SocketAddr::new(settings.bind, settings.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: choose another port with --port or FLUXBASE_ADMIN_PORT")
    })?;
    let bound = listener.local_addr().context("cannot read the listening address")?;
    let public_url = settings.public_url_for(bound.port());

    let setup_link = setup_link_if_needed(&pool, &settings, &public_url).await?;

    let heartbeat = settings.heartbeat_interval;
    let state = AppState::new(pool, data_pool, settings, public_url.clone());
    if state.test_pages() {
        eprintln!("warning: FLUXBASE_ADMIN_TEST_PAGES=1: serving the browser tests' pages under /__test/");
    }
    tokio::spawn(telemetry::run_ticker(state.clone(), heartbeat));
    let app = router(state);

    match setup_link {
        Some((link, expires)) => {
            println!("fluxbase serve: no admin exists yet. Create the first one with this one-time link (valid until {expires}):");
            println!("fluxbase serve: {link}");
        }
        None => println!("fluxbase serve: open {public_url}"),
    }
    // Last, so that whoever waits for this line has seen everything above it.
    println!("fluxbase serve: extension fluxbase_admin {extension_version}, listening on http://{bound}");

    // The peer's address is the client's, or the trusted proxy's (crate::client).
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the web server stopped")?;
    println!("fluxbase serve: stopped");
    Ok(())
}

pub fn router(state: AppState) -> Router {
    let bounded = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(telemetry::metrics))
        .route("/api/sql/runs/{run_id}/cancel", post(sql_runner::cancel))
        .route("/api/sql/history", get(sql_runner::history))
        .route("/api/tables", get(crate::tables_api::list))
        .route("/api/tables/{schema}/{table}", get(crate::tables_api::structure))
        .route("/api/tables/{schema}/{table}/rows", get(crate::tables_api::rows))
        .route("/api/tables/{schema}/{table}/cell", get(crate::tables_api::cell))
        .route("/api/tables/{schema}/{table}/copy", get(crate::tables_api::copy))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    // A SQL run is bounded by the runner's own statement timeout (runner.timeout), and an
    // event stream lasts as long as its page.
    let runs = Router::new()
        .route("/api/sql/runs", post(sql_runner::run))
        .route("/api/realtime/{schema}/{table}", get(realtime::stream));
    bounded
        .merge(runs)
        .merge(crate::web::router())
        .merge(crate::pages::router())
        .fallback(crate::web::errors::not_found)
        // Every response, the API's and the errors' included, gets the security headers.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::web::security::headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), telemetry::count_requests))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Checks, before listening, everything that would otherwise fail on the first request:
/// the connection, the extension, and the login role's right to switch roles.
async fn preflight(pool: &Pool, data_pool: &Pool, settings: &ServeSettings) -> Result<String> {
    let config = &settings.database.config;
    let target = db::describe_target(config);
    let mut client = db::checkout(pool, config).await?;

    let version = installed_extension_version(&client).await?;
    let Some(version) = version else {
        bail!(
            "the fluxbase_admin extension is not installed in {target}: run `fluxbase extension install` \
             with a superuser's DATABASE_URL, or CREATE EXTENSION fluxbase_admin in psql"
        );
    };

    let login_role: String = client.query_one("SELECT session_user::text", &[]).await.map_err(db::pg_error)?.get(0);
    // No request and no links yet: an empty context.
    let context = RequestContext::default();
    if let Err(e) = db::begin(&mut client, DbRole::Dashboard, &context, db::DEFAULT_STATEMENT_TIMEOUT).await {
        bail!(
            "the login role {login_role} cannot switch to fluxbase_dashboard ({e}): as a superuser, run \
             GRANT fluxbase_dashboard TO {login_role}"
        );
    }
    let data_config = &settings.data_database.config;
    let mut data_client = db::DataConnection::checkout(data_pool, data_config).await?;
    let data_role: String =
        data_client.query_typed("SELECT session_user::text", &[]).await.map_err(db::pg_error)?[0].get(0);
    data_client.reset().await.map_err(db::pg_error)?;
    drop(data_client);

    // One membership check for both logins (fluxbase_admin.list_login_problems): a login that
    // holds more than its plane needs would let app code reach the dashboard's powers.
    let tx = db::begin(&mut client, DbRole::Dashboard, &context, db::DEFAULT_STATEMENT_TIMEOUT).await?;
    let mut problems = Vec::new();
    for (login, plane, variable) in [(&login_role, "dashboard", "DATABASE_URL"), (&data_role, "data", "FLUXBASE_ADMIN_DATA_DATABASE_URL")] {
        for row in tx
            .query("SELECT role, problem, fix FROM fluxbase_admin.list_login_problems($1, $2)", &[login, &plane])
            .await
            .map_err(db::pg_error)?
        {
            let (role, problem, fix): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            problems.push(format!("{variable} logs in as {login}, the {plane} login: {role}: {problem} (fix: {fix})"));
        }
    }
    tx.commit().await.map_err(db::pg_error)?;
    if login_role == data_role {
        problems.push(format!("DATABASE_URL and FLUXBASE_ADMIN_DATA_DATABASE_URL both log in as {login_role}: use two logins"));
    }
    if !problems.is_empty() {
        bail!(
            "the database logins are not safe to serve with (README, \"Two logins\"): {}",
            problems.join("; ")
        );
    }
    Ok(version)
}

/// While no admin exists, a one-time setup link: the setup page works only through it,
/// so whoever merely reaches the port first does not become the admin. The extension
/// builds the link from the public URL (dashboard_auth.one_time_link).
async fn setup_link_if_needed(pool: &Pool, settings: &ServeSettings, public_url: &str) -> Result<Option<(String, String)>> {
    let mut client = db::checkout(pool, &settings.database.config).await?;
    let context = RequestContext::background(public_url);
    let tx = db::begin(&mut client, DbRole::Dashboard, &context, db::DEFAULT_STATEMENT_TIMEOUT).await?;
    let needs_setup: bool = tx.query_one("SELECT dashboard_auth.needs_setup()", &[]).await.map_err(db::pg_error)?.get(0);
    if !needs_setup {
        return Ok(None);
    }
    let row = tx
        .query_one(
            "SELECT link, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
               FROM dashboard_auth.create_setup_link()",
            &[],
        )
        .await
        .map_err(db::pg_error)?;
    tx.commit().await.map_err(db::pg_error)?;
    Ok(Some((row.get(0), row.get(1))))
}

async fn installed_extension_version(client: &impl deadpool_postgres::GenericClient) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'fluxbase_admin'",
            &[],
        )
        .await
        .map_err(db::pg_error)?;
    Ok(row.map(|r| r.get(0)))
}

/// `GET /healthz`: that the service is up, its version and the installed extension's
/// version. Nothing more: it answers without a session.
async fn healthz(State(state): State<AppState>) -> Response {
    match extension_version_as_dashboard(&state).await {
        Ok(Some(extension_version)) => Json(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "extension_version": extension_version,
        }))
        .into_response(),
        Ok(None) => unavailable("the fluxbase_admin extension is not installed"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "health check failed");
            unavailable("the database is unreachable")
        }
    }
}

async fn extension_version_as_dashboard(state: &AppState) -> Result<Option<String>> {
    let mut client = db::checkout(state.pool(), state.database_config()).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, &state.background_context(), Duration::from_secs(5)).await?;
    let version = installed_extension_version(&tx).await?;
    tx.commit().await.map_err(db::pg_error)?;
    Ok(version)
}

fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "version": env!("CARGO_PKG_VERSION"), "reason": reason })),
    )
        .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
