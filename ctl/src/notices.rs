//! The server's NOTICEs and WARNINGs on pooled connections. Each connection's messages
//! are kept, a few at a time, under its backend's process id, so that a request that
//! knows which backend it used (the SQL runner) can show what its statement said.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use deadpool_postgres::Connect;
use futures_util::StreamExt;
use postgres_native_tls::MakeTlsConnector;
use serde_json::{json, Value};
use tokio_postgres::{AsyncMessage, Client, Config, Error};

/// Messages kept per connection; older ones give way.
const KEPT: usize = 100;

type Buffer = Arc<Mutex<VecDeque<Value>>>;

fn registry() -> &'static Mutex<HashMap<i32, Buffer>> {
    static REGISTRY: OnceLock<Mutex<HashMap<i32, Buffer>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Forgets what backend `pid` said so far.
pub fn clear(pid: i32) {
    if let Some(buffer) = registry().lock().expect("notice registry").get(&pid) {
        buffer.lock().expect("notice buffer").clear();
    }
}

/// What backend `pid` said since the last `clear`, oldest first.
pub fn take(pid: i32) -> Vec<Value> {
    registry()
        .lock()
        .expect("notice registry")
        .get(&pid)
        .map(|buffer| buffer.lock().expect("notice buffer").drain(..).collect())
        .unwrap_or_default()
}

/// deadpool's connect, plus a task that keeps the connection's notices.
pub struct NoticeKeepingConnect {
    pub tls: MakeTlsConnector,
}

impl Connect for NoticeKeepingConnect {
    fn connect(
        &self,
        pg_config: &Config,
    ) -> Pin<Box<dyn Future<Output = Result<(Client, tokio::task::JoinHandle<()>), Error>> + Send + '_>> {
        let tls = self.tls.clone();
        let pg_config = pg_config.clone();
        Box::pin(async move {
            let (client, mut connection) = pg_config.connect(tls).await?;
            let buffer: Buffer = Default::default();
            let kept = buffer.clone();
            let (pid_tx, pid_rx) = tokio::sync::oneshot::channel::<i32>();
            let task = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notice(notice)) => {
                            let mut kept = kept.lock().expect("notice buffer");
                            if kept.len() == KEPT {
                                kept.pop_front();
                            }
                            kept.push_back(json!({
                                "severity": notice.severity(), "code": notice.code().code(),
                                "message": notice.message(), "detail": notice.detail(), "hint": notice.hint(),
                            }));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "database connection error");
                            break;
                        }
                    }
                }
                if let Ok(pid) = pid_rx.await {
                    registry().lock().expect("notice registry").remove(&pid);
                }
            });
            let pid: i32 = client.query_one("SELECT pg_catalog.pg_backend_pid()", &[]).await?.get(0);
            registry().lock().expect("notice registry").insert(pid, buffer);
            let _ = pid_tx.send(pid);
            Ok((client, task))
        })
    }
}
