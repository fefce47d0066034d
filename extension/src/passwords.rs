//! Admin passwords: argon2id hashing at OWASP's minimum, the upgrade of hashes made with
//! older parameters, and the password policy.
//!
//! These functions are internal: `EXECUTE` is revoked from `PUBLIC` and granted to no
//! one, so only the extension's `SECURITY DEFINER` functions (owned by the superuser
//! who installed it) call them.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// A hash of a random password nobody knows, with the current parameters. An unknown
/// email is verified against it, so that it takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$4bqDJYNwp2mDBpPAxR+5Eg$GFCWIMC7MWYhq1sf6PbZGqxMhbYzWtSZLCdi1B2h6Qg";

/// Passwords longer than this are refused before hashing: argon2 accepts any length,
/// but hashing megabytes on every login is a denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    hasher().hash_password(password.as_bytes(), &salt).expect("argon2 hashing").to_string()
}

/// Verifies `password` against `stored` (a PHC string of any argon2 variant and
/// parameters). A missing or unreadable hash is checked against the dummy hash, so
/// every path costs one argon2 run, and is refused.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let candidate = stored.and_then(|s| PasswordHash::new(s).ok());
    match candidate {
        Some(parsed) if password.len() <= MAX_PASSWORD_BYTES => {
            // Verification takes the parameters from the stored hash itself.
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
        }
        _ => {
            // Same cost as a real check; an over-long password is not hashed in full.
            let dummy = PasswordHash::new(DUMMY_HASH).expect("valid dummy hash");
            let bounded = &password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)];
            let _ = Argon2::default().verify_password(bounded, &dummy);
            false
        }
    }
}

/// True when `stored` was made with another algorithm or other parameters than the
/// current ones: the next successful login replaces it.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return true };
    let current = format!("m={MEMORY_KIB},t={ITERATIONS},p={PARALLELISM}");
    parsed.algorithm.as_str() != "argon2id"
        || parsed.version != Some(Version::V0x13.into())
        || parsed.params.to_string() != current
}

/// Why `password` is not acceptable for the account `email`, in words a person can act
/// on; `None` when it is acceptable.
pub fn problem(password: &str, email: &str, min_length: usize) -> Option<String> {
    let length = password.chars().count();
    if length < min_length {
        return Some(format!("Use at least {min_length} characters (this one has {length})."));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!("Use at most {MAX_PASSWORD_BYTES} bytes."));
    }
    let lowered = password.to_lowercase();
    let local_part = email.split('@').next().unwrap_or("").to_lowercase();
    if local_part.chars().count() >= 3 && lowered.contains(&local_part) {
        return Some("Do not include your email address's name in the password.".into());
    }
    let estimate = zxcvbn::zxcvbn(password, &[email, &local_part]);
    if is_common(&estimate) {
        return Some("This is one of the most common passwords; choose one that is not.".into());
    }
    if u8::from(estimate.score()) < 3 {
        let advice = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "It is too easy to guess.".into());
        return Some(format!(
            "{advice} Add more words or characters that do not follow a pattern."
        ));
    }
    None
}

/// The whole password is one entry of the common-passwords list (allowing for
/// capitals and l33t substitutions).
fn is_common(estimate: &zxcvbn::Entropy) -> bool {
    use zxcvbn::matching::patterns::MatchPattern;
    match estimate.sequence() {
        // zxcvbn keeps its dictionary type private; its name is all we can compare.
        [only] => matches!(
            &only.pattern,
            MatchPattern::Dictionary(d) if format!("{:?}", d.dictionary_name) == "Passwords"
        ),
        _ => false,
    }
}

#[pgrx::pg_schema]
mod dashboard_auth {
    use pgrx::prelude::*;

    /// argon2id hash of `password` with the current parameters and a random salt.
    #[pg_extern(volatile, strict, parallel_safe)]
    fn hash_password(password: &str) -> String {
        super::hash(password)
    }

    /// Verifies `password` against a stored hash; a NULL hash costs the same and fails.
    #[pg_extern(immutable, parallel_safe)]
    fn verify_password(password: Option<&str>, stored: Option<&str>) -> bool {
        super::verify(password.unwrap_or(""), stored) && password.is_some()
    }

    #[pg_extern(immutable, strict, parallel_safe)]
    fn password_needs_rehash(stored: &str) -> bool {
        super::needs_rehash(stored)
    }

    /// Why a password is not acceptable, or NULL when it is.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn password_problem(password: &str, email: &str, min_length: i32) -> Option<String> {
        super::problem(password, email, min_length.max(0) as usize)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn hashes_carry_the_current_parameters_and_verify() {
        let stored = hash("a long enough passphrase");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("a long enough passphrase", Some(&stored)));
        assert!(!verify("a long enough passphrasf", Some(&stored)));
        assert!(!needs_rehash(&stored));
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters() {
        assert!(!needs_rehash(DUMMY_HASH));
        assert!(!verify("", Some(DUMMY_HASH)));
        assert!(!verify("anything", None));
    }

    #[test]
    fn older_parameters_need_a_rehash() {
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 1, 1, None).unwrap());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = weak.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(needs_rehash(&old));
        assert!(verify("pw", Some(&old)), "old hashes still verify until upgraded");
    }

    #[test]
    fn the_policy_explains_each_refusal() {
        let email = "jane.doe@example.com";
        assert!(problem("short", email, 12).unwrap().contains("at least 12"));
        assert!(problem("Jane.Doe-was-here-2024!", email, 12).unwrap().contains("email"));
        assert!(problem("password1234", email, 12).unwrap().contains("common"));
        assert!(problem("qwertyuiop123", email, 12).is_some());
        assert_eq!(problem("violet kettle marches north", email, 12), None);
        assert!(problem(&"x".repeat(2000), email, 12).is_some());
    }
}
