//! Admin accounts: first-run setup, sign-in with lockout, sessions with absolute and idle
//! timeouts, one-time links, admin management and the operators' break-glass commands.
//!
//! The rules are SQL (`sql/admin_accounts.sql`, `sql/admin_auth.sql`), since they are
//! mostly locking, row changes and audit; the cryptography they call is Rust
//! (`passwords`, `tokens`).

pgrx::extension_sql_file!(
    "../../sql/admin_accounts.sql",
    name = "admin_accounts",
    requires = ["settings"]
);
pgrx::extension_sql_file!(
    "../../sql/admin_auth.sql",
    name = "admin_auth",
    requires = [
        "admin_accounts",
        "audit",
        "settings",
        passwords::dashboard_auth::hash_password,
        passwords::dashboard_auth::verify_password,
        passwords::dashboard_auth::password_needs_rehash,
        passwords::dashboard_auth::password_problem,
        tokens::dashboard_auth::new_token,
        session_binding::dashboard_auth::bind_session_hash,
        session_binding::dashboard_auth::unbind_session,
        session_binding::dashboard_auth::bound_session_hash,
    ]
);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    const PASSWORD: &str = "violet kettle marches north";

    fn create_admin(email: &str) {
        Spi::run_with_args(
            "SELECT * FROM dashboard_auth.operator_create_admin($1, 'Test Admin', 'admin', $2)",
            &[email.into(), PASSWORD.into()],
        )
        .expect("create admin");
    }

    fn login(email: &str, password: &str) -> (bool, String) {
        Spi::get_two_with_args::<bool, String>(
            "SELECT ok, code FROM dashboard_auth.sign_in($1, $2)",
            &[email.into(), password.into()],
        )
        .map(|(ok, code)| (ok.unwrap(), code.unwrap()))
        .expect("login")
    }

    #[pg_test]
    fn a_created_admin_signs_in_and_a_wrong_password_is_refused() {
        create_admin("ann@example.com");
        assert_eq!(login("ANN@example.com ", PASSWORD), (true, "ok".into()));
        assert_eq!(login("ann@example.com", "wrong password entirely"), (false, "invalid_credentials".into()));
        assert_eq!(login("nobody@example.com", PASSWORD), (false, "invalid_credentials".into()));
    }

    #[pg_test]
    fn stored_hashes_are_argon2id_at_owasp_minimum() {
        create_admin("ann@example.com");
        let hash = Spi::get_one::<String>("SELECT password_hash FROM dashboard_auth.dashboard_users").unwrap().unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    }

    #[pg_test]
    fn sessions_store_only_a_hash_of_the_token() {
        create_admin("ann@example.com");
        let token = Spi::get_one::<String>(
            "SELECT session_token FROM dashboard_auth.sign_in('ann@example.com', 'violet kettle marches north')",
        )
        .unwrap()
        .unwrap();
        let stored = Spi::get_one_with_args::<bool>(
            "SELECT token_hash = sha256(convert_to($1, 'UTF8')) FROM dashboard_auth.sessions",
            &[token.as_str().into()],
        )
        .unwrap();
        assert_eq!(stored, Some(true));
        let leaked = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM dashboard_auth.sessions s WHERE position(convert_to($1, 'UTF8') in s.token_hash) > 0",
            &[token.as_str().into()],
        )
        .unwrap();
        assert_eq!(leaked, Some(0));
    }

    #[pg_test(error = "invalid email address: 'not-an-email'")]
    fn malformed_emails_are_refused() {
        create_admin("not-an-email");
    }
}
