//! The database explorer: the catalog (`sql/explorer_catalog.sql`), browsing
//! (`sql/explorer_browse.sql`), edits (`sql/explorer_edit.sql`) and real-time updates
//! (`sql/explorer_realtime.sql`). Rust holds the one builder of statements; SQL reads
//! the catalogs, checks sessions, runs the statements and audits.

mod builder;
mod cache;
mod cursor;
mod edits;
mod request;
mod rows;
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
        browse_plan(&shape, filter, sort, search, page_size, cursor)
    }

    /// As build_browse, for relation `rel` by its oid, from the shape this backend keeps
    /// (cache.rs) instead of one read from the catalogs and handed over as JSON: what
    /// plan_for calls on every page.
    #[pg_extern(stable)]
    fn build_browse_for(
        rel: pg_sys::Oid,
        filter: Option<&str>,
        sort: Option<&str>,
        search: Option<&str>,
        page_size: Option<i32>,
        cursor: Option<&str>,
    ) -> JsonB {
        let cached = super::cache::shape(rel).unwrap_or_else(|| invalid(format!("no relation has oid {}", rel.to_u32())));
        let shape = cached.shape.as_ref().unwrap_or_else(|e| invalid(e.clone()));
        let mut plan = browse_plan(shape, filter, sort, search, page_size, cursor);
        // The relation itself, for what browse() reads beside the page (relation_links).
        plan.0["oid"] = serde_json::json!(rel.to_u32());
        plan
    }

    /// What relation `rel` looks like to the builder (see shape.rs), as JSON: read from
    /// the catalogs by read_relation_shape once, then kept by this backend until a change
    /// to the relation, its indexes, or the types, schemas and operators it names
    /// invalidates it (cache.rs). NULL when no relation has that oid.
    #[pg_extern(stable, strict)]
    fn relation_shape(rel: pg_sys::Oid) -> Option<JsonB> {
        super::cache::shape(rel).map(|cached| JsonB(cached.json.clone()))
    }

    /// Relation `rel`'s foreign keys both ways (read_relation_links), kept with its shape
    /// until a change to it or to a relation they join it to. NULL when no relation has
    /// that oid.
    #[pg_extern(stable, strict)]
    fn relation_links(rel: pg_sys::Oid) -> Option<JsonB> {
        super::cache::shape(rel).map(|cached| JsonB(cached.links.clone()))
    }

    fn browse_plan(
        shape: &super::shape::Shape,
        filter: Option<&str>,
        sort: Option<&str>,
        search: Option<&str>,
        page_size: Option<i32>,
        cursor: Option<&str>,
    ) -> JsonB {
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
        JsonB(super::builder::build(shape, &request).unwrap_or_else(|e| invalid(e)))
    }

    /// The statements and parameters of one edit (see edits.rs) on the relation `shape`
    /// describes. An edit that does not fit is refused with the reason: a read-only
    /// relation with 55000, a malformed payload with 22023.
    #[pg_extern(immutable, parallel_safe)]
    fn build_edit(shape: JsonB, operation: &str, payload: Option<&str>) -> JsonB {
        let shape: super::shape::Shape =
            serde_json::from_value(shape.0).unwrap_or_else(|e| invalid(format!("malformed relation shape: {e}")));
        if let Some(reason) = super::edits::read_only_reason(&shape) {
            pgrx::ereport!(ERROR, PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, reason);
        }
        let payload: serde_json::Value = payload.map_or(serde_json::Value::Null, |t| {
            serde_json::from_str(t).unwrap_or_else(|e| invalid(format!("the edit cannot be read: {e}")))
        });
        JsonB(super::edits::build_edit(&shape, operation, &payload).unwrap_or_else(|e| invalid(e)))
    }

    /// The cursor of the page after the one `plan` read, whose last row sorts at `position`.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn next_page_cursor(plan: JsonB, position: Vec<Option<String>>) -> String {
        super::builder::next_cursor(&plan.0, &position)
    }

    /// The cursor of the page before the one `plan` read, whose first row sorts at
    /// `position`; NULL before an offset page that is the first.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn prev_page_cursor(plan: JsonB, position: Vec<Option<String>>) -> Option<String> {
        super::builder::prev_cursor(&plan.0, &position)
    }

    fn shape_of(shape: JsonB) -> super::shape::Shape {
        serde_json::from_value(shape.0).unwrap_or_else(|e| invalid(format!("malformed relation shape: {e}")))
    }

    /// The statement that reads one cell of the relation `shape` describes in full, by
    /// the row's key (see rows.rs). Refused (22023) for a relation without a key or a
    /// column it does not have.
    #[pg_extern(immutable, parallel_safe)]
    fn build_cell(shape: JsonB, column_name: Option<&str>, key: Option<JsonB>) -> JsonB {
        let column = column_name.unwrap_or_else(|| invalid("the request names no column: give \"column\"".into()));
        let key = key.map_or(serde_json::Value::Null, |k| k.0);
        JsonB(super::rows::build_cell(&shape_of(shape), column, &key).unwrap_or_else(|e| invalid(e)))
    }

    /// The statement that reads rows by their keys as JSON and as an INSERT statement's
    /// tuples (see rows.rs). Refused (22023) for a relation without a key.
    #[pg_extern(immutable, parallel_safe)]
    fn build_copy(shape: JsonB, payload: Option<JsonB>) -> JsonB {
        let payload = payload.map_or(serde_json::Value::Null, |p| p.0);
        JsonB(super::rows::build_copy(&shape_of(shape), &payload).unwrap_or_else(|e| invalid(e)))
    }
}

pgrx::extension_sql_file!(
    "../../../sql/explorer_browse.sql",
    name = "explorer_browse",
    requires = ["explorer_catalog", "impersonation", build_browse, build_browse_for, relation_shape, relation_links, next_page_cursor, prev_page_cursor, build_cell, build_copy]
);

pgrx::extension_sql_file!(
    "../../../sql/explorer_edit.sql",
    name = "explorer_edit",
    requires = ["explorer_browse", build_edit]
);

// sql/explorer_realtime.sql is pulled in by realtime.rs, which holds its event MACs.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn the_shape_comes_from_the_catalogs() {
        Spi::run(
            "CREATE DOMAIN public.positive AS integer CHECK (VALUE > 0);
             CREATE TABLE public.items (id bigint PRIMARY KEY, code public.positive NOT NULL, doc json, tags text[]);
             CREATE INDEX items_code_id ON public.items (code DESC, id);",
        )
        .unwrap();
        let shape = Spi::get_one::<pgrx::JsonB>("SELECT fluxbase_admin.relation_shape('public.items'::regclass)").unwrap().unwrap().0;
        assert_eq!(shape["key"]["columns"], serde_json::json!(["id"]));
        let code = &shape["columns"][1];
        // A domain is compared as its base type, so its CHECK never runs on a request value.
        assert_eq!((code["cast"].as_str(), code["type"].as_str()), (Some("pg_catalog.int4"), Some("public.positive")));
        assert_eq!(code["ops"]["eq"], "OPERATOR(pg_catalog.=)");
        assert_eq!(code["builtin_order"], true);
        assert!(shape["columns"][2]["ops"].is_null(), "json has no ordering");
        assert_eq!(shape["indexes"][1]["columns"][0], serde_json::json!({"name": "code", "descending": true, "nulls_first": true}));
    }

    #[pg_test]
    fn a_plan_binds_values_and_checks_them_against_their_column() {
        Spi::run("CREATE TABLE public.n (id int PRIMARY KEY, body text)").unwrap();
        let plan = Spi::get_one::<pgrx::JsonB>(
            "SELECT fluxbase_admin.plan_for('public', 'n', '{\"column\": \"body\", \"op\": \"eq\", \"value\": \"x'' OR 1=1 --\"}', NULL, NULL, 50, NULL)",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(plan["params"], serde_json::json!(["x' OR 1=1 --"]));
        assert!(!plan["page_sql"].as_str().unwrap().contains("OR 1=1"));
    }

    #[pg_test(error = "column id (integer): invalid input syntax for type integer: \"ten\"")]
    fn a_value_that_does_not_fit_names_its_column() {
        Spi::run("CREATE TABLE public.n (id int PRIMARY KEY)").unwrap();
        Spi::run("SELECT fluxbase_admin.plan_for('public', 'n', '{\"column\": \"id\", \"op\": \"eq\", \"value\": \"ten\"}', NULL, NULL, 50, NULL)")
            .unwrap();
    }
}
