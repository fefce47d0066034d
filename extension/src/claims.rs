//! The claim helpers (`auth.uid()`, `auth.role()`, `auth.email()`, `auth.jwt()`) that
//! Row Level Security policies call. They are SQL (`sql/auth_claims.sql`) so that the
//! planner can inline them into policies.

pgrx::extension_sql_file!("../../sql/auth_claims.sql", name = "auth_claims", requires = ["bootstrap"]);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn reads_postgrest_json_claims() {
        Spi::run(
            "SELECT set_config('request.jwt.claims',
                '{\"sub\":\"7d0c1f44-5b7e-4f0a-9d35-0d6cf5a1e2b3\",\"role\":\"authenticated\",\"email\":\"ann@example.com\"}',
                true)",
        )
        .expect("set claims");
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.uid()::text").expect("uid"),
            Some("7d0c1f44-5b7e-4f0a-9d35-0d6cf5a1e2b3".to_string())
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.role()").expect("role"),
            Some("authenticated".to_string())
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.email()").expect("email"),
            Some("ann@example.com".to_string())
        );
    }

    #[pg_test]
    fn outside_a_request_every_claim_is_null() {
        assert_eq!(Spi::get_one::<String>("SELECT auth.uid()::text").expect("uid"), None);
        assert_eq!(Spi::get_one::<String>("SELECT auth.role()").expect("role"), None);
    }
}
