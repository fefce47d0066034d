//! Real-time events only the database can make. Any role may `NOTIFY fluxbase_realtime`,
//! so each event the trigger sends carries a MAC, keyed with a key derived from the
//! cluster's sealing key; `fluxbase serve` asks for that key once (its dashboard login may,
//! no other role) and drops every event whose MAC does not check. The MAC also covers the
//! event's time, so that a copied event goes stale within seconds.

use blake2::digest::{KeyInit, Mac};

pgrx::extension_sql_file!(
    "../../sql/explorer_realtime.sql",
    name = "explorer_realtime",
    requires = ["explorer_catalog", realtime_event_mac, realtime_event_key]
);

#[pgrx::pg_schema]
mod fluxbase_admin {
    use pgrx::prelude::*;

    /// The MAC of one change event, as hex; NULL when the sealing key cannot be read, so
    /// that a missing key never fails the application's write (the event is then dropped
    /// by the listener). Internal: only the trigger function calls it.
    #[pg_extern(stable, strict)]
    fn realtime_event_mac(schema: &str, table: &str, change: &str, at_ms: i64) -> Option<String> {
        let key = super::event_key().ok()?;
        Some(super::hex(&super::event_mac(&key, schema, table, change, at_ms)))
    }

    /// The key that checks events, as hex. Internal: fluxbase_admin.get_realtime_key, for
    /// the dashboard login, calls it.
    #[pg_extern(stable)]
    fn realtime_event_key() -> String {
        let Ok(key) = super::event_key().map_err(|e| {
            pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, e);
        }) else {
            unreachable!("ereport(ERROR) does not return")
        };
        super::hex(&key)
    }
}

/// A key of its own for events, so that the one the binary holds checks nothing else
/// (statement MACs, sealed secrets).
fn event_key() -> Result<[u8; 32], String> {
    let sealing = crate::two_factor::sealing_key()?;
    let mut mac = <blake2::Blake2sMac256 as KeyInit>::new_from_slice(&sealing).expect("a 32-byte key fits BLAKE2s");
    mac.update(b"fluxbase_admin realtime event key");
    Ok(mac.finalize().into_bytes().into())
}

/// The MAC over an event's fields, each ended by a NUL so that no two events share a
/// message. `fluxbase serve` computes the same (ctl/src/realtime.rs).
fn event_mac(key: &[u8; 32], schema: &str, table: &str, change: &str, at_ms: i64) -> [u8; 32] {
    let mut mac = <blake2::Blake2sMac256 as KeyInit>::new_from_slice(key).expect("a 32-byte key fits BLAKE2s");
    for field in [schema, table, change, &at_ms.to_string()] {
        mac.update(field.as_bytes());
        mac.update(b"\0");
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn every_field_and_the_time_are_covered() {
        let key = [7u8; 32];
        let base = event_mac(&key, "public", "todos", "insert", 1);
        assert_ne!(base, event_mac(&key, "public", "todos", "insert", 2));
        assert_ne!(base, event_mac(&key, "public", "todos", "delete", 1));
        assert_ne!(base, event_mac(&key, "publi", "ctodos", "insert", 1), "fields are separated");
        assert_ne!(base, event_mac(&[8u8; 32], "public", "todos", "insert", 1));
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
