//! Real-time updates: one LISTEN connection for every subscriber of this copy of
//! `fluxbase serve`, fanned out to server-sent event streams, one per table and page.
//!
//! The connection is its own, not the pool's: a pooled connection is reset between
//! requests, and LISTEN must outlive them. When it is lost it is made again, and every
//! stream gets a `refetch` event, since changes may have been missed in between.
//!
//! `GET /api/realtime/{schema}/{table}` (Authorization: Bearer <session token>) streams
//! `ready`, then `change` events (`{"schema", "table", "change"}`) and `refetch`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use crate::api::{self, ApiError};
use crate::client::ClientContext;
use crate::config::DatabaseSettings;
use crate::db::{self, DbRole, RequestContext, DEFAULT_STATEMENT_TIMEOUT};
use crate::realtime_events::{Budget, EventKey};
use crate::state::AppState;

pub const CHANNEL: &str = "fluxbase_realtime";
/// How the listening connection shows in pg_stat_activity.
pub const APPLICATION_NAME: &str = "fluxbase realtime";
/// How often, at most, a stream checks that its session is still good; sooner when the
/// session's idle deadline comes first, so that the stream ends with the session.
const SESSION_RECHECK: Duration = Duration::from_secs(10);

/// The fan-out: each stream subscribes to it.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Value>,
}

impl Hub {
    /// Starts listening in the background; the hub works while the listener reconnects.
    pub fn start(settings: DatabaseSettings) -> Hub {
        let (sender, _) = broadcast::channel(1024);
        tokio::spawn(listen_forever(settings, sender.clone()));
        Hub { sender }
    }
}

async fn listen_forever(settings: DatabaseSettings, sender: broadcast::Sender<Value>) {
    let mut connected_before = false;
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&settings, &sender, connected_before).await {
            Ok(()) => {
                connected_before = true;
                backoff = Duration::from_millis(200);
                tracing::warn!("the real-time connection was lost; listening again");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot listen for real-time changes; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Listens until the connection ends. Returns Ok once it had been listening. Only events
/// the database made reach the streams (realtime_events.rs).
async fn listen_once(settings: &DatabaseSettings, sender: &broadcast::Sender<Value>, reconnected: bool) -> anyhow::Result<()> {
    let mut config = settings.config.clone();
    config.application_name(APPLICATION_NAME);
    let (client, mut connection) = config.connect(db::tls_connector(settings.tls_verify)?).await.map_err(db::pg_error)?;
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    let _ = notified.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let key = {
        client.batch_execute(&format!("BEGIN; {}", DbRole::Dashboard.set_local())).await.map_err(db::pg_error)?;
        let hex: String = client.query_one("SELECT fluxbase_admin.get_realtime_key()", &[]).await.map_err(db::pg_error)?.get(0);
        client.batch_execute("COMMIT").await.map_err(db::pg_error)?;
        EventKey::from_hex(&hex)?
    };
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(db::pg_error)?;
    if reconnected {
        let _ = sender.send(json!({"refetch": "the real-time connection was lost and made again: changes may have been missed"}));
    }
    // Until the connection ends (the task drops its end of the channel).
    while let Some(payload) = notifications.recv().await {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        match key.check(&payload, now_ms) {
            Some(event) => {
                let _ = sender.send(event);
            }
            None => tracing::debug!("dropped a real-time event the database did not make"),
        }
    }
    Ok(())
}

async fn session_allows(state: &AppState, context: &RequestContext, token: &str, schema: &str, table: &str) -> Result<bool, ApiError> {
    let mut client = db::checkout(state.pool(), state.database_config()).await.map_err(ApiError::internal)?;
    let tx = db::begin(&mut client, DbRole::Dashboard, context, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let on: bool = tx.query_one("SELECT fluxbase_admin.get_realtime($1, $2, $3)", &[&token, &schema, &table]).await?.get(0);
    tx.commit().await?;
    Ok(on)
}

/// What a stream's periodic check found.
enum Recheck {
    /// Go on, and look again after this long.
    Continue(Duration),
    /// The session ended (the health check's reason) or real time was turned off.
    End(String),
}

/// The session's health, which does not count as activity: an open tab must not keep an
/// idle session alive. Real time being still on is asked of get_realtime, which marks the
/// session seen; the transaction is rolled back so that this mark is undone.
async fn recheck(state: &AppState, context: &RequestContext, token: &str, schema: &str, table: &str) -> Result<Recheck, ApiError> {
    let mut client = db::checkout(state.pool(), state.database_config()).await.map_err(ApiError::internal)?;
    let tx = db::begin(&mut client, DbRole::Dashboard, context, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let row = tx
        .query_one(
            "SELECT h.valid, h.reason, extract(epoch FROM h.idle_expires_at - h.checked_at)::float8,
                    CASE WHEN h.valid THEN fluxbase_admin.get_realtime($1, $2, $3) END
               FROM dashboard_auth.get_session_health($1) h",
            &[&token, &schema, &table],
        )
        .await?;
    tx.rollback().await?;
    let (valid, reason, idle_left, on): (bool, String, Option<f64>, Option<bool>) = (row.get(0), row.get(1), row.get(2), row.get(3));
    Ok(match (valid, on) {
        (false, _) => Recheck::End(reason),
        (true, Some(false)) => Recheck::End("realtime_off".into()),
        // Just past the idle deadline, so that the next check finds the session ended.
        _ => Recheck::Continue(Duration::from_secs_f64(idle_left.unwrap_or(0.0).max(0.0) + 0.5).min(SESSION_RECHECK)),
    })
}

/// One open stream: what it listens to, when it next checks its session, and its share
/// of events (`folded`: some were held back, and one `refetch` stands for them).
struct Watch {
    receiver: broadcast::Receiver<Value>,
    state: AppState,
    context: RequestContext,
    token: String,
    schema: String,
    table: String,
    next_check: tokio::time::Instant,
    budget: Budget,
    folded: bool,
}

/// `GET /api/realtime/{schema}/{table}`: the table's changes as server-sent events.
/// When the session ends, a last `session_ended` event says why (get_session_health's
/// reason, or `realtime_off`), and the stream ends.
pub async fn stream(
    State(state): State<AppState>,
    ClientContext(context): ClientContext,
    headers: HeaderMap,
    Path((schema, table)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let token = api::session_token(&headers)?;
    if !session_allows(&state, &context, &token, &schema, &table).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "55000",
            "real time is off for this table: turn it on with fluxbase_admin.set_realtime",
        ));
    }
    let receiver = state.realtime().sender.subscribe();
    let ready = futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let start = tokio::time::Instant::now();
    let watch = Watch { receiver, state, context, token, schema, table, next_check: start + SESSION_RECHECK, budget: Budget::new(start), folded: false };
    // None: the last event (session_ended) has gone out.
    let events = futures_util::stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        loop {
            let event = tokio::select! {
                message = watch.receiver.recv() => match message {
                    Ok(event) if event.get("refetch").is_some() => Event::default().event("refetch").data(event.to_string()),
                    Ok(event) if event["schema"] == watch.schema.as_str() && event["table"] == watch.table.as_str() => {
                        Event::default().event("change").data(event.to_string())
                    }
                    Ok(_) => continue,
                    // Events were dropped for a slow reader: the page must look again.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Event::default().event("refetch").data(r#"{"refetch": "events were missed"}"#)
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                // The events held back while the budget was spent, as one.
                _ = tokio::time::sleep_until(watch.budget.next_at()), if watch.folded => {
                    watch.folded = false;
                    watch.budget.take(tokio::time::Instant::now());
                    let folded = Event::default().event("refetch").data(r#"{"refetch": "changes came faster than a page fetches: look again"}"#);
                    return Some((Ok(folded), Some(watch)));
                }
                _ = tokio::time::sleep_until(watch.next_check) => {
                    match recheck(&watch.state, &watch.context, &watch.token, &watch.schema, &watch.table).await {
                        Ok(Recheck::Continue(after)) => {
                            watch.next_check = tokio::time::Instant::now() + after;
                            continue;
                        }
                        // Signed out, expired, idle, or real time turned off: say why, then end.
                        Ok(Recheck::End(reason)) => {
                            let last = Event::default().event("session_ended").data(json!({"reason": reason}).to_string());
                            return Some((Ok(last), None));
                        }
                        Err(_) => return None,
                    }
                }
            };
            if !watch.budget.take(tokio::time::Instant::now()) {
                watch.folded = true;
                continue;
            }
            return Some((Ok(event), Some(watch)));
        }
    });
    Ok(Sse::new(ready.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
