//! Which real-time events to believe, and how many a page gets.
//!
//! Any role may `NOTIFY fluxbase_realtime`, so an event counts only when its MAC checks:
//! the database's trigger signs each one (extension/src/realtime.rs) with a key the
//! dashboard login alone may read (`fluxbase_admin.get_realtime_key()`). The MAC covers
//! the event's time, so a copied event goes stale. And a page gets a burst of events, then
//! a few a second; past that they are folded into one `refetch`.

use std::time::Duration;

use blake2::digest::{KeyInit, Mac};
use serde_json::Value;
use tokio::time::Instant;

/// How far an event's time may be from ours: a copy replayed later is dropped, and clocks
/// a little apart still agree.
const MAX_SKEW_MS: i64 = 30_000;

/// The key that checks events.
pub struct EventKey([u8; 32]);

impl EventKey {
    pub fn from_hex(text: &str) -> anyhow::Result<EventKey> {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow::anyhow!("the real-time key is not hex"))?;
        let key = bytes.try_into().map_err(|_| anyhow::anyhow!("the real-time key is not 32 bytes"))?;
        Ok(EventKey(key))
    }

    /// The event in `payload` if the database made it, within `MAX_SKEW_MS` of `now_ms`:
    /// `{"schema", "table", "change"}`. Anything else is None.
    pub fn check(&self, payload: &str, now_ms: i64) -> Option<Value> {
        let event: Value = serde_json::from_str(payload).ok()?;
        let (schema, table, change) = (event["schema"].as_str()?, event["table"].as_str()?, event["change"].as_str()?);
        let at = event["at"].as_i64()?;
        let mac = hex_bytes(event["mac"].as_str()?)?;
        if (now_ms - at).abs() > MAX_SKEW_MS {
            return None;
        }
        let mut expected = <blake2::Blake2sMac256 as KeyInit>::new_from_slice(&self.0).expect("a 32-byte key fits BLAKE2s");
        for field in [schema, table, change, &at.to_string()] {
            expected.update(field.as_bytes());
            expected.update(b"\0");
        }
        // verify_slice compares in constant time.
        expected.verify_slice(&mac).ok()?;
        Some(serde_json::json!({"schema": schema, "table": table, "change": change}))
    }
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// One stream's share of events: a token bucket of `BURST`, refilled at `PER_SECOND`.
pub struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    const BURST: f64 = 10.0;
    const PER_SECOND: f64 = 4.0;

    pub fn new(now: Instant) -> Budget {
        Budget { tokens: Self::BURST, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * Self::PER_SECOND;
        self.tokens = (self.tokens + earned).min(Self::BURST);
        self.at = now;
    }

    /// Whether an event may go out now; it spends a token when it may.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next event may go out.
    pub fn next_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / Self::PER_SECOND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &[u8; 32], schema: &str, table: &str, change: &str, at: i64) -> String {
        let mut mac = <blake2::Blake2sMac256 as KeyInit>::new_from_slice(key).unwrap();
        for field in [schema, table, change, &at.to_string()] {
            mac.update(field.as_bytes());
            mac.update(b"\0");
        }
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        serde_json::json!({"schema": schema, "table": table, "change": change, "at": at, "mac": hex}).to_string()
    }

    #[test]
    fn only_fresh_events_signed_with_the_key_are_believed() {
        let key = EventKey([3u8; 32]);
        let now = 1_700_000_000_000;
        let good = signed(&key.0, "public", "todos", "insert", now - 100);
        assert_eq!(key.check(&good, now), Some(serde_json::json!({"schema": "public", "table": "todos", "change": "insert"})));
        // Another key, another table under the same MAC, a stale copy, no MAC at all.
        assert_eq!(key.check(&signed(&[4u8; 32], "public", "todos", "insert", now), now), None);
        let moved = good.replace("\"todos\"", "\"orders\"");
        assert_eq!(key.check(&moved, now), None);
        assert_eq!(key.check(&good, now + MAX_SKEW_MS + 1_000), None);
        assert_eq!(key.check(r#"{"schema": "public", "table": "todos", "change": "insert"}"#, now), None);
        assert_eq!(key.check(r#"{"refetch": "please"}"#, now), None);
        assert_eq!(key.check("not json", now), None);
        assert!(EventKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(EventKey::from_hex("abc").is_err());
        assert!(EventKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_burst_goes_out_then_a_few_a_second() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        let sent = (0..50).filter(|_| budget.take(start)).count();
        assert_eq!(sent, Budget::BURST as usize);
        assert!(budget.next_at() > start);
        let later = start + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| budget.take(later)).count(), 2, "4 a second");
    }
}
