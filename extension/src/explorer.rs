//! The database explorer. Part 1 so far: the catalog (`sql/explorer_catalog.sql`).
//! Browsing (the one query builder, keyset pages, CSV export) is still to come.

pgrx::extension_sql_file!("../../sql/explorer_catalog.sql", name = "explorer_catalog", requires = ["admin_auth"]);
