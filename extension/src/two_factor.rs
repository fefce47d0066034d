//! Two-factor sign-in for admins: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step
//! of skew each way) with replay refusal, and single-use recovery codes.
//!
//! TOTP secrets must be reversible, so they are sealed with ChaCha20-Poly1305 under a key
//! that lives in the cluster's data directory (`$PGDATA/fluxbase_admin.key`), outside
//! every dump: a stolen `pg_dump` holds no usable secret. The admin's id is the
//! associated data, so a sealed secret cannot be moved to another account.

use std::io::Write;
use std::path::PathBuf;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use totp_rs::{Algorithm, TOTP};

pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: usize = 6;
const SECRET_BYTES: usize = 20;
const KEY_FILE: &str = "fluxbase_admin.key";

fn totp(secret: Vec<u8>, account: &str) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 1, STEP_SECONDS, secret, Some("Fluxbase".into()), account.into())
}

/// The step `code` belongs to, when it is valid at `now` (one step of skew either way)
/// and later than `last_step`: a code accepted once is refused again.
pub fn matching_step(secret: &[u8], code: &str, now: u64, last_step: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generator = totp(secret.to_vec(), "");
    let current = (now / STEP_SECONDS) as i64;
    let mut matched = None;
    // Every candidate is computed and compared in full, so timing says nothing about which matched.
    for step in [current - 1, current, current + 1] {
        if step < 0 || last_step.is_some_and(|last| step <= last) {
            continue;
        }
        let expected = generator.generate(step as u64 * STEP_SECONDS);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            matched = Some(step);
        }
    }
    matched
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn key_path() -> PathBuf {
    // SAFETY: DataDir is set by the postmaster before any backend runs our code, and never changes.
    let dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) };
    PathBuf::from(dir.to_string_lossy().into_owned()).join(KEY_FILE)
}

/// The cluster's sealing key, made on first use. Two backends racing to make it agree:
/// each writes a private file and links it into place, and the loser reads the winner's.
/// It also keys the SQL runner's statement MACs (sql_runner.rs).
pub(crate) fn sealing_key() -> Result<[u8; 32], String> {
    let path = key_path();
    if let Ok(bytes) = std::fs::read(&path) {
        return bytes.try_into().map_err(|_| format!("{} is damaged: it must hold exactly 32 bytes", path.display()));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no random source: {e}"))?;
    let temp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        file.write_all(&key).and_then(|_| file.sync_all()).map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    }
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(key),
        Err(_) => std::fs::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .try_into()
            .map_err(|_| format!("{} is damaged: it must hold exactly 32 bytes", path.display())),
    }
}

/// nonce (12 bytes) || ciphertext, with `admin` as associated data.
pub fn seal(secret: &[u8], admin: &str) -> Result<Vec<u8>, String> {
    let key = sealing_key()?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| format!("no random source: {e}"))?;
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: admin.as_bytes() })
        .map_err(|_| "cannot seal the TOTP secret".to_string())?;
    Ok([nonce.as_slice(), &sealed].concat())
}

pub fn unseal(sealed: &[u8], admin: &str) -> Result<Vec<u8>, String> {
    let key = sealing_key()?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    if sealed.len() < 12 {
        return Err("the sealed TOTP secret is damaged".into());
    }
    let (nonce, body) = sealed.split_at(12);
    cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: admin.as_bytes() }).map_err(|_| {
        format!(
            "the TOTP secret cannot be unsealed with this cluster's key ({}): was it restored from \
             another cluster? Copy that cluster's key file, or have an operator run fluxbase admin disable-2fa",
            key_path().display()
        )
    })
}

/// Ten single-use recovery codes, `xxxxx-xxxxx` in a lowercase alphabet without look-alikes
/// (50 bits each).
pub fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let chars: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

#[pgrx::pg_schema]
mod dashboard_auth {
    use pgrx::prelude::*;

    fn fail(message: String) -> ! {
        pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, message);
    }

    /// A new secret for `admin`: sealed for storage, and shown once as base32, an
    /// otpauth:// URI and a QR code (PNG data URI).
    #[pg_extern(volatile, strict)]
    fn totp_generate(
        admin: pgrx::Uuid,
        email: &str,
    ) -> TableIterator<
        'static,
        (
            name!(sealed, Vec<u8>),
            name!(secret, String),
            name!(otpauth_uri, String),
            name!(qr_png_data_uri, String),
        ),
    > {
        let mut secret = vec![0u8; super::SECRET_BYTES];
        getrandom::fill(&mut secret).unwrap_or_else(|e| fail(format!("no random source: {e}")));
        let sealed = super::seal(&secret, &admin.to_string()).unwrap_or_else(|e| fail(e));
        let generator = super::totp(secret, email);
        let qr = generator.get_qr_base64().unwrap_or_else(|e| fail(format!("cannot draw the QR code: {e}")));
        TableIterator::once((sealed, generator.get_secret_base32(), generator.get_url(), format!("data:image/png;base64,{qr}")))
    }

    /// The step of a valid, unused code for the sealed secret, or NULL.
    #[pg_extern(volatile)]
    fn totp_verify(sealed: &[u8], admin: pgrx::Uuid, code: Option<&str>, last_step: Option<i64>) -> Option<i64> {
        let secret = super::unseal(sealed, &admin.to_string()).unwrap_or_else(|e| fail(e));
        super::matching_step(&secret, code?, super::now(), last_step)
    }

    #[pg_extern(volatile, parallel_safe)]
    fn new_recovery_code() -> String {
        super::recovery_code()
    }
}

pgrx::extension_sql_file!(
    "../../sql/two_factor.sql",
    name = "two_factor",
    requires = ["admin_auth", totp_generate, totp_verify, new_recovery_code]
);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    #[pg_test]
    fn sealed_secrets_open_only_for_their_admin_and_the_key_stays_private() {
        let secret = b"twenty bytes secret!";
        let sealed = super::seal(secret, "admin-a").unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(super::unseal(&sealed, "admin-a").unwrap(), secret);
        assert!(super::unseal(&sealed, "admin-b").is_err(), "bound to its admin");
        let mode = std::fs::metadata(super::key_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 rows, 8 digits, seed "12345678901234567890".
    #[test]
    fn rfc_6238_test_vectors() {
        let seed = b"12345678901234567890".to_vec();
        let generator = TOTP::new_unchecked(Algorithm::SHA1, 8, 1, 30, seed, None, String::new());
        for (time, expected) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(generator.generate(time), expected, "T = {time}");
        }
    }

    fn code_at(secret: &[u8], time: u64) -> String {
        totp(secret.to_vec(), "").generate(time)
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let secret = b"0123456789abcdefghij";
        let now = 1_700_000_000u64;
        let step = (now / 30) as i64;
        for offset in [-1i64, 0, 1] {
            let code = code_at(secret, (now as i64 + offset * 30) as u64);
            assert_eq!(matching_step(secret, &code, now, None), Some(step + offset), "offset {offset}");
        }
        for offset in [-2i64, 2] {
            let code = code_at(secret, (now as i64 + offset * 30) as u64);
            assert_eq!(matching_step(secret, &code, now, None), None, "offset {offset}");
        }
    }

    #[test]
    fn a_code_is_refused_once_its_step_was_used() {
        let secret = b"0123456789abcdefghij";
        let now = 1_700_000_000u64;
        let code = code_at(secret, now);
        let step = matching_step(secret, &code, now, None).unwrap();
        assert_eq!(matching_step(secret, &code, now, Some(step)), None);
        assert_eq!(matching_step(secret, &code, now + 20, Some(step)), None, "still within its window");
    }

    #[test]
    fn malformed_codes_never_match() {
        let secret = b"0123456789abcdefghij";
        for code in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
            assert_eq!(matching_step(secret, code, 1_700_000_000, None), None, "{code:?}");
        }
    }

    #[test]
    fn recovery_codes_look_right() {
        let code = recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert_ne!(code, recovery_code());
    }
}
