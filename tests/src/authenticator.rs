//! An authenticator app for the two-factor tests: TOTP codes per RFC 6238 (SHA-1, six
//! digits, 30-second steps), as a phone would compute them.

use std::time::{SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Secret, TOTP};

pub struct Authenticator {
    totp: TOTP,
}

impl Authenticator {
    /// The app after scanning `base32`, the secret an enrolment shows.
    pub fn new(base32: &str) -> Self {
        let secret = Secret::Encoded(base32.to_string()).to_bytes().expect("base32 secret");
        Authenticator { totp: TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, secret) }
    }

    /// The code for the step `offset` steps from now, computed away from a step
    /// boundary, so that the server checks it in the same step.
    pub fn code(&self, offset: i64) -> String {
        away_from_a_step_boundary();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        self.totp.generate((now + offset * 30) as u64)
    }
}

/// Waits until at least 3 s remain in the current 30 s step, so that a code computed
/// now is checked by the server in the same step (its offset then means what it says).
pub fn away_from_a_step_boundary() {
    let into_step = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 30;
    if into_step >= 27 {
        std::thread::sleep(std::time::Duration::from_secs(31 - into_step));
    }
}
