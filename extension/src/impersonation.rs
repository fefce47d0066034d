//! Impersonation (`sql/impersonation.sql`): view the database as an app user, as
//! anonymous, or as the service role, to debug Row Level Security. The check is a
//! definer function; the role switch is an invoker function, since Postgres refuses
//! SET ROLE inside a definer function.

pgrx::extension_sql_file!("../../sql/impersonation.sql", name = "impersonation", requires = ["app_users"]);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn superusers_and_rls_bypassers_are_forbidden_targets() {
        let superuser = Spi::get_one::<String>("SELECT auth.forbidden_target_role(current_user::text)").unwrap();
        assert!(superuser.unwrap().contains("is a superuser"));
        let service = Spi::get_one::<String>("SELECT auth.forbidden_target_role('service_role')").unwrap();
        assert!(service.unwrap().contains("bypasses row level security"));
        let fine = Spi::get_one::<String>("SELECT auth.forbidden_target_role('authenticated')").unwrap();
        assert_eq!(fine, None);
        let unknown = Spi::get_one::<String>("SELECT auth.forbidden_target_role('no_such_role')").unwrap();
        assert!(unknown.unwrap().contains("does not exist"));
    }
}
