//! Analytics and monitoring (`sql/metrics.sql`): sessions, connections, query
//! performance, storage, the sampled history, and each dashboard copy's pool heartbeat.

// redact_sql: the runner's lexer (sql_runner.rs) hides the string literals of query texts.
pgrx::extension_sql_file!("../../sql/metrics.sql", name = "metrics", requires = ["impersonation", redact_sql]);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn the_headline_figures_describe_this_database() {
        let figures = Spi::get_one::<pgrx::JsonB>("SELECT fluxbase_admin.headline_figures()").unwrap().unwrap().0;
        assert!(figures["connections"].as_i64().unwrap() >= 1);
        assert!(figures["database_bytes"].as_i64().unwrap() > 0);
        assert_eq!(figures["impersonations"], 0);
    }

    #[pg_test]
    fn a_sample_is_taken_once_per_interval() {
        assert_eq!(Spi::get_one::<bool>("SELECT fluxbase_admin.sample_metrics()").unwrap(), Some(true));
        assert_eq!(Spi::get_one::<bool>("SELECT fluxbase_admin.sample_metrics()").unwrap(), Some(false));
    }
}
