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
use crate::server::AppState;

pub const CHANNEL: &str = "fluxbase_realtime";
/// How the listening connection shows in pg_stat_activity.
pub const APPLICATION_NAME: &str = "fluxbase realtime";
/// How often a stream checks that its session is still good.
const SESSION_RECHECK: Duration = Duration::from_secs(30);

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

/// Listens until the connection ends. Returns Ok once it had been listening.
async fn listen_once(settings: &DatabaseSettings, sender: &broadcast::Sender<Value>, reconnected: bool) -> anyhow::Result<()> {
    let mut config = settings.config.clone();
    config.application_name(APPLICATION_NAME);
    let (client, mut connection) = config.connect(db::tls_connector(settings.tls_verify)?).await.map_err(db::pg_error)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let forward = sender.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    if let Ok(event) = serde_json::from_str::<Value>(n.payload()) {
                        let _ = forward.send(event);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = done_tx.send(());
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(db::pg_error)?;
    if reconnected {
        let _ = sender.send(json!({"refetch": "the real-time connection was lost and made again: changes may have been missed"}));
    }
    let _ = done_rx.await;
    Ok(())
}

async fn session_allows(state: &AppState, context: &RequestContext, token: &str, schema: &str, table: &str) -> Result<bool, ApiError> {
    let mut client = db::checkout(state.pool(), state.database_config()).await.map_err(ApiError::internal)?;
    let tx = db::begin(&mut client, DbRole::Dashboard, context, DEFAULT_STATEMENT_TIMEOUT).await.map_err(ApiError::internal)?;
    let on: bool = tx.query_one("SELECT fluxbase_admin.get_realtime($1, $2, $3)", &[&token, &schema, &table]).await?.get(0);
    tx.commit().await?;
    Ok(on)
}

/// `GET /api/realtime/{schema}/{table}`: the table's changes as server-sent events.
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
    let events = futures_util::stream::unfold(
        (
            receiver,
            (state, context),
            token,
            schema,
            table,
            tokio::time::interval_at(tokio::time::Instant::now() + SESSION_RECHECK, SESSION_RECHECK),
        ),
        |(mut receiver, (state, context), token, schema, table, mut recheck)| async move {
            loop {
                let event = tokio::select! {
                    message = receiver.recv() => match message {
                        Ok(event) if event.get("refetch").is_some() => Event::default().event("refetch").data(event.to_string()),
                        Ok(event) if event["schema"] == schema.as_str() && event["table"] == table.as_str() => {
                            Event::default().event("change").data(event.to_string())
                        }
                        Ok(_) => continue,
                        // Events were dropped for a slow reader: the page must look again.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            Event::default().event("refetch").data(r#"{"refetch": "events were missed"}"#)
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = recheck.tick() => match session_allows(&state, &context, &token, &schema, &table).await {
                        Ok(true) => continue,
                        // Signed out, expired, or real time turned off: the stream ends.
                        _ => return None,
                    },
                };
                return Some((Ok(event), (receiver, (state, context), token, schema, table, recheck)));
            }
        },
    );
    Ok(Sse::new(ready.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
