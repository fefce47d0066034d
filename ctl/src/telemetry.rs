//! The dashboard's own telemetry: request counters, the pool heartbeat and metric
//! sampling on a timer, and `GET /metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::db::{self, DbRole};
use crate::state::AppState;

/// Requests served, by route and status.
#[derive(Default)]
pub struct RequestCounters {
    counts: Mutex<BTreeMap<(String, u16), u64>>,
}

impl RequestCounters {
    fn record(&self, route: String, status: u16) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((route, status)).or_default() += 1;
    }

    fn snapshot(&self) -> Vec<((String, u16), u64)> {
        let counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Middleware: counts each request under its route pattern (never the raw path, which
/// would let any client grow the label set), and says how long it took (`Server-Timing`).
pub async fn count_requests(State(state): State<AppState>, matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    state.requests().record(route, response.status().as_u16());
    // The time at the server, until the response's head, for the browser's developer
    // tools and for `make bench` (a stream's body comes later).
    let took = format!("app;dur={:.2}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(value) = axum::http::HeaderValue::from_str(&took) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// A name for this copy of fluxbase serve in the pool reports.
pub fn instance_id() -> String {
    format!("{}-{:08x}", hostname(), rand::random::<u32>())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// Every `interval`: report the pool and take a metric sample if one is due. Each in a
/// short transaction of its own; a failure is logged and the loop goes on.
pub async fn run_ticker(state: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "heartbeat or metric sample failed");
        }
    }
}

async fn tick(state: &AppState) -> anyhow::Result<()> {
    let status = state.pool().status();
    let mut client = db::checkout(state.pool(), state.database_config()).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, &state.background_context(), Duration::from_secs(10)).await?;
    tx.execute(
        "SELECT fluxbase_admin.report_pool($1, $2, $3, $4, $5, $6, $7)",
        &[
            &state.instance_id(),
            &hostname(),
            &(std::process::id() as i32),
            &(status.max_size as i32),
            &(status.size as i32),
            &(status.available as i32),
            &(status.waiting as i32),
        ],
    )
    .await
    .map_err(db::pg_error)?;
    tx.execute("SELECT fluxbase_admin.sample_metrics()", &[]).await.map_err(db::pg_error)?;
    tx.commit().await.map_err(db::pg_error)?;
    Ok(())
}

/// `GET /metrics`: off without FLUXBASE_ADMIN_METRICS_TOKEN, and only with it as a
/// bearer token.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = state.metrics_token() else {
        return (StatusCode::NOT_FOUND, "metrics are off: set FLUXBASE_ADMIN_METRICS_TOKEN\n").into_response();
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(offered.as_bytes(), expected.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a valid bearer token is needed\n")
            .into_response();
    }
    let body = render(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

async fn render(state: &AppState) -> String {
    let mut out = String::new();
    let status = state.pool().status();
    family(&mut out, "fluxbase_pool_connections", "gauge", "Connections in this copy's pool, by state.");
    let _ = writeln!(out, "fluxbase_pool_connections{{state=\"idle\"}} {}", status.available);
    let _ = writeln!(out, "fluxbase_pool_connections{{state=\"in_use\"}} {}", status.size.saturating_sub(status.available));
    family(&mut out, "fluxbase_pool_max_connections", "gauge", "The pool's maximum size.");
    let _ = writeln!(out, "fluxbase_pool_max_connections {}", status.max_size);
    family(&mut out, "fluxbase_pool_waiting", "gauge", "Requests waiting for a connection.");
    let _ = writeln!(out, "fluxbase_pool_waiting {}", status.waiting);

    family(&mut out, "fluxbase_http_requests_total", "counter", "HTTP requests served, by route and status.");
    for ((route, code), count) in state.requests().snapshot() {
        let _ = writeln!(out, "fluxbase_http_requests_total{{route=\"{}\",status=\"{code}\"}} {count}", escape_label(&route));
    }

    match database_counters(state).await {
        Ok(rows) => {
            family(&mut out, "fluxbase_database_up", "gauge", "Whether the database answered this scrape.");
            let _ = writeln!(out, "fluxbase_database_up 1");
            family(&mut out, "fluxbase_admin_logins_total", "counter", "Admin sign-in attempts, by outcome.");
            for (metric, label, value) in &rows {
                if metric == "logins" {
                    let _ = writeln!(out, "fluxbase_admin_logins_total{{outcome=\"{}\"}} {value}", escape_label(label.as_deref().unwrap_or("")));
                }
            }
            family(&mut out, "fluxbase_impersonations_active", "gauge", "Impersonation sessions active now.");
            let active = rows.iter().find(|(m, _, _)| m == "impersonations_active").map(|(_, _, v)| *v).unwrap_or(0);
            let _ = writeln!(out, "fluxbase_impersonations_active {active}");
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "metrics: database counters unavailable");
            family(&mut out, "fluxbase_database_up", "gauge", "Whether the database answered this scrape.");
            let _ = writeln!(out, "fluxbase_database_up 0");
        }
    }
    out
}

async fn database_counters(state: &AppState) -> anyhow::Result<Vec<(String, Option<String>, i64)>> {
    let mut client = db::checkout(state.pool(), state.database_config()).await?;
    let tx = db::begin(&mut client, DbRole::Dashboard, &state.background_context(), Duration::from_secs(5)).await?;
    let rows = tx.query("SELECT metric, label, value FROM fluxbase_admin.list_prometheus_counters()", &[]).await.map_err(db::pg_error)?;
    tx.commit().await.map_err(db::pg_error)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}
