//! Installation: the schemas and roles the extension creates or adopts, and the
//! version the loaded library was built as.

use pgrx::prelude::*;

// Runs first: refuses schemas the extension did not create, then creates its own
// schemas and the cluster roles (or adopts existing ones).
pgrx::extension_sql_file!("../../sql/bootstrap.sql", name = "bootstrap", bootstrap);

// Runs last: privileges on everything the extension created.
pgrx::extension_sql_file!("../../sql/finalize.sql", name = "finalize", finalize);

#[pg_schema]
mod fluxbase_admin {
    use pgrx::prelude::*;

    /// The version of the loaded `fluxbase_admin` library. It differs from
    /// `pg_extension.extversion` when a new library was installed on the host but
    /// `ALTER EXTENSION fluxbase_admin UPDATE` has not been run yet.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn get_library_version() -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn library_version_matches_the_installed_extension() {
        let installed = Spi::get_one::<String>(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'fluxbase_admin'",
        )
        .expect("query pg_extension");
        let library = Spi::get_one::<String>("SELECT fluxbase_admin.get_library_version()")
            .expect("call library_version");
        assert_eq!(installed, library);
    }

    #[pg_test]
    fn creates_the_three_schemas() {
        let count = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_catalog.pg_namespace n
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_namespace'::regclass
                AND d.objid = n.oid AND d.deptype = 'e'
               JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
              WHERE e.extname = 'fluxbase_admin'
                AND n.nspname IN ('auth', 'dashboard_auth', 'fluxbase_admin')",
        )
        .expect("count schemas");
        assert_eq!(count, Some(3), "the three schemas must be members of the extension");
    }

    #[pg_test]
    fn creates_the_roles_with_their_attributes() {
        let service_bypasses = Spi::get_one::<bool>(
            "SELECT rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = 'service_role'",
        )
        .expect("read service_role");
        assert_eq!(service_bypasses, Some(true));
        let logins = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_catalog.pg_roles
              WHERE rolname IN ('fluxbase_dashboard', 'fluxbase_operator', 'anon',
                                'authenticated', 'service_role')
                AND (rolcanlogin OR rolsuper)",
        )
        .expect("count login roles");
        assert_eq!(logins, Some(0), "the extension's roles are group roles, never logins");
    }
}
