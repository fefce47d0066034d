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
        assert!(service.unwrap().contains("not an app user's role"));
        let predefined = Spi::get_one::<String>("SELECT auth.forbidden_target_role('pg_read_all_data')").unwrap();
        assert!(predefined.unwrap().contains("not an app user's role"), "pg_ roles are reserved");
        Spi::run("CREATE ROLE t_bypass NOLOGIN BYPASSRLS; CREATE ROLE t_member NOLOGIN; GRANT t_bypass TO t_member").unwrap();
        let bypass = Spi::get_one::<String>("SELECT auth.forbidden_target_role('t_bypass')").unwrap();
        assert!(bypass.unwrap().contains("bypasses row level security"));
        let member = Spi::get_one::<String>("SELECT auth.forbidden_target_role('t_member')").unwrap();
        assert!(member.unwrap().contains("is a member of t_bypass"));
        let fine = Spi::get_one::<String>("SELECT auth.forbidden_target_role('authenticated')").unwrap();
        assert_eq!(fine, None);
        let unknown = Spi::get_one::<String>("SELECT auth.forbidden_target_role('no_such_role')").unwrap();
        assert!(unknown.unwrap().contains("does not exist"));
    }
}
