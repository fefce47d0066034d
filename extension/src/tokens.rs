//! Secret tokens: sessions and one-time links. Each carries 256 random bits from the
//! operating system, and only its SHA-256 is stored (`dashboard_auth.token_hash`).

use base64::Engine;

/// `<prefix>_<43 characters of base64url>`: the prefix tells a leaked token's kind at a glance.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("{prefix}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[pgrx::pg_schema]
mod dashboard_auth {
    use pgrx::prelude::*;

    #[pg_extern(volatile, strict, parallel_safe)]
    fn new_token(prefix: &str) -> String {
        super::new_token(prefix)
    }
}

#[cfg(test)]
mod unit_tests {
    #[test]
    fn tokens_are_long_prefixed_and_distinct() {
        let a = super::new_token("fbs");
        let b = super::new_token("fbs");
        assert!(a.starts_with("fbs_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
    }
}
