//! The audit log: append-only, hash-chained, and never blocking a sign-in
//! (`sql/audit.sql`). Every other module writes to it through `dashboard_auth.audit`.
//! Search, export and retention are in `sql/audit_compliance.sql`.

pgrx::extension_sql_file!("../../sql/audit.sql", name = "audit", requires = ["bootstrap"]);
pgrx::extension_sql_file!("../../sql/audit_compliance.sql", name = "audit_compliance", requires = ["admin_auth"]);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn write(action: &str) {
        Spi::run_with_args(
            "SELECT dashboard_auth.audit('system', NULL, 'test', $1)",
            &[action.into()],
        )
        .expect("write an audit entry");
        // Tests run concurrently, each in a transaction held open to the end: a writer
        // that finds the chain lock taken leaves sealing to later, so wait for it here.
        Spi::run("SELECT dashboard_auth.audit_seal(true)").expect("seal");
    }

    #[pg_test]
    fn entries_are_sealed_into_a_chain_that_verifies() {
        for action in ["a", "b", "c"] {
            write(action);
        }
        let sealed = Spi::get_one::<i64>("SELECT count(*) FROM dashboard_auth.audit_log WHERE chain_seq IS NOT NULL")
            .expect("count");
        assert_eq!(sealed, Some(3));
        let valid = Spi::get_one::<bool>("SELECT valid FROM dashboard_auth.operator_verify_audit()").expect("verify");
        assert_eq!(valid, Some(true));
    }

    #[pg_test]
    fn each_hash_covers_the_previous_one() {
        write("first");
        write("second");
        let linked = Spi::get_one::<bool>(
            "SELECT b.prev_hash = a.hash FROM dashboard_auth.audit_log a
               JOIN dashboard_auth.audit_log b ON b.chain_seq = a.chain_seq + 1
              WHERE a.action = 'first'",
        )
        .expect("compare");
        assert_eq!(linked, Some(true));
    }

    #[pg_test(error = "the audit log is append-only: update is refused")]
    fn updates_are_refused() {
        write("x");
        Spi::run("UPDATE dashboard_auth.audit_log SET action = 'y'").unwrap();
    }

    #[pg_test(error = "the audit log is append-only: delete is refused")]
    fn deletes_are_refused() {
        write("x");
        Spi::run("DELETE FROM dashboard_auth.audit_log").unwrap();
    }

    #[pg_test(error = "the audit log is append-only: truncate is refused")]
    fn truncate_is_refused() {
        Spi::run("TRUNCATE dashboard_auth.audit_log").unwrap();
    }
}
