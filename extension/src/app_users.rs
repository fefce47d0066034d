//! The application's end users (`sql/app_users.sql`): their accounts and sessions in
//! schema `auth`, the application's own functions (granted to `service_role`), and the
//! admins' user management. Passwords and tokens reuse the admin side's primitives.

pgrx::extension_sql_file!("../../sql/app_users.sql", name = "app_users", requires = ["admin_auth", "two_factor"]);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn a_confirmed_user_signs_in_and_gets_a_hashed_session() {
        Spi::run(
            "INSERT INTO auth.users (email, confirmed_at, password_hash)
             VALUES ('joe@example.com', now(), dashboard_auth.hash_password('orange submarine at dawn'))",
        )
        .unwrap();
        let (ok, token) = Spi::get_two::<bool, String>(
            "SELECT ok, session_token FROM auth.sign_in('JOE@example.com', 'orange submarine at dawn')",
        )
        .unwrap();
        assert_eq!(ok, Some(true));
        let stored = Spi::get_one_with_args::<bool>(
            "SELECT token_hash = dashboard_auth.token_hash($1) FROM auth.sessions",
            &[token.unwrap().as_str().into()],
        )
        .unwrap();
        assert_eq!(stored, Some(true));
        let wrong = Spi::get_one::<String>("SELECT code FROM auth.sign_in('joe@example.com', 'nope')").unwrap();
        assert_eq!(wrong.as_deref(), Some("invalid_credentials"));
    }

    #[pg_test(error = "app_metadata must be a JSON object, not array")]
    fn metadata_must_be_an_object() {
        Spi::run("SELECT auth.check_metadata('[1]'::jsonb, 'app_metadata')").unwrap();
    }
}
