//! The database explorer: the catalog (`sql/explorer_catalog.sql`) and browsing
//! (`sql/explorer_browse.sql`). Rust holds the one query builder; SQL reads the
//! catalogs, checks sessions, runs the statements and audits.

mod builder;
mod cursor;
mod request;
mod shape;

pgrx::extension_sql_file!("../../../sql/explorer_catalog.sql", name = "explorer_catalog", requires = ["admin_auth"]);

#[pgrx::pg_schema]
mod fluxbase_admin {
    use pgrx::prelude::*;
    use pgrx::JsonB;

    fn invalid(reason: String) -> ! {
        pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, reason);
    }

    /// The statements and parameters for one browse request on the relation `shape`
    /// describes (fluxbase_admin.relation_shape). A request that does not fit the
    /// relation is refused with the reason (22023).
    #[pg_extern(immutable, parallel_safe)]
    ///
    /// The filter and sort come as jsonb's text: read here, a number keeps every digit
    /// (serde_json's arbitrary precision), and JSON too deep to read is a refusal, not an
    /// internal error.
    fn build_browse(
        shape: JsonB,
        filter: Option<&str>,
        sort: Option<&str>,
        search: Option<&str>,
        page_size: Option<i32>,
        cursor: Option<&str>,
    ) -> JsonB {
        let shape: super::shape::Shape =
            serde_json::from_value(shape.0).unwrap_or_else(|e| invalid(format!("malformed relation shape: {e}")));
        let read = |what: &str, text: Option<&str>| -> serde_json::Value {
            text.map_or(serde_json::Value::Null, |t| {
                serde_json::from_str(t).unwrap_or_else(|e| invalid(format!("the {what} cannot be read: {e}")))
            })
        };
        let request = super::builder::Request {
            filter: super::request::parse_filter(&read("filter", filter)).unwrap_or_else(|e| invalid(e)),
            sort: super::request::parse_sort(&read("sort", sort)).unwrap_or_else(|e| invalid(e)),
            search: search.map(str::to_string),
            page_size: page_size.map_or(50, i64::from),
            cursor: cursor.filter(|c| !c.trim().is_empty()).map(str::to_string),
        };
        JsonB(super::builder::build(&shape, &request).unwrap_or_else(|e| invalid(e)))
    }

    /// The cursor of the page after the one `plan` read, whose last row sorts at `position`.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn next_page_cursor(plan: JsonB, position: Vec<Option<String>>) -> String {
        super::builder::next_cursor(&plan.0, &position)
    }
}

pgrx::extension_sql_file!(
    "../../../sql/explorer_browse.sql",
    name = "explorer_browse",
    requires = ["explorer_catalog", "impersonation", build_browse, next_page_cursor]
);
