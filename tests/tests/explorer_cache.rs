//! The per-backend caches of a browse (issue 21): each data-plane backend keeps the shapes
//! of the relations it read (extension/src/explorer/cache.rs) until Postgres invalidates
//! them. Each test browses, changes the relation from another connection, and browses
//! again on the SAME data-plane backend (one connection for every claim), which must
//! read the new shape: a changed column or index is never served from a stale cache. And
//! one backend serves an impersonated page and an unimpersonated one in turn, each with
//! its own rows.

use fluxbase_tests::admin::{as_dashboard, create_admin, describe, failure, login, PASSWORD};
use fluxbase_tests::data_plane::{ids, Planes};
use fluxbase_tests::{Caller, TestDb};
use postgres::Client;
use serde_json::{json, Value};

/// An admin signed in on the two logins; every page is claimed on `p.data`, one backend.
struct Reader {
    p: Planes,
    token: String,
    pid: i32,
}

fn reader(db: &TestDb) -> Reader {
    create_admin(db, "ann@example.com", "admin");
    let mut p = Planes::connect(db);
    let token = login(&mut p.web, "ann@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    let pid = p.data.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    Reader { p, token, pid }
}

impl Reader {
    fn try_page(&mut self, request: Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
        let page = self.p.browse(&self.token, &request, impersonation);
        let pid: i32 = self.p.data.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        assert_eq!(pid, self.pid, "every page is read by the same data-plane backend");
        page
    }

    fn page(&mut self, request: Value) -> Value {
        self.try_page(request.clone(), None).unwrap_or_else(|e| panic!("browse {request}: {}", describe(&e)))
    }
}

fn column_names(page: &Value) -> Vec<String> {
    page["columns"].as_array().unwrap_or_else(|| panic!("no columns in {page}")).iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

fn column<'a>(page: &'a Value, name: &str) -> &'a Value {
    page["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no column {name} in {page}"))
}

fn ddl(su: &mut Client, sql: &str) {
    su.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[test]
fn added_dropped_renamed_and_retyped_columns_are_read_again() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE TABLE public.things (id int PRIMARY KEY, name text, size int, note text);
                  INSERT INTO public.things VALUES (1, 'one', 10, 'a'), (2, 'two', 20, 'b'), (3, 'three', 30, 'c');");
    let mut r = reader(&db);
    let things = json!({"schema": "public", "table": "things"});
    assert_eq!(column_names(&r.page(things.clone())), ["id", "name", "size", "note"]);

    // Added: the new column is in the page, with its default.
    ddl(&mut su, "ALTER TABLE public.things ADD COLUMN extra text NOT NULL DEFAULT 'x'");
    let page = r.page(things.clone());
    assert_eq!(column_names(&page), ["id", "name", "size", "note", "extra"]);
    assert_eq!(page["rows"][0]["values"]["extra"], "x", "{page}");
    let filtered = r.page(json!({"schema": "public", "table": "things", "filter": {"column": "extra", "op": "eq", "value": "x"}}));
    assert_eq!(ids(&filtered), [1, 2, 3]);

    // Renamed: the new name filters and sorts; the old one is gone.
    ddl(&mut su, "ALTER TABLE public.things RENAME COLUMN name TO title");
    let page = r.page(json!({"schema": "public", "table": "things", "filter": {"column": "title", "op": "eq", "value": "two"}}));
    assert_eq!(column_names(&page), ["id", "title", "size", "note", "extra"]);
    assert_eq!(ids(&page), [2]);
    let page = r.page(json!({"schema": "public", "table": "things", "filter": {"column": "name", "op": "eq", "value": "two"}}));
    assert_eq!((ids(&page), &page["notices"][0]["code"]), (vec![1, 2, 3], &json!("filter_dropped")), "{page}");

    // Retyped: integer to text, so that `like` (text only) now applies and values are
    // checked as text.
    let (state, message) = failure(r.try_page(json!({"schema": "public", "table": "things", "filter": {"column": "size", "op": "like", "value": "2%"}}), None)
        .map(|p| p.to_string()));
    assert_eq!(state, "22023", "like on an integer column: {message}");
    ddl(&mut su, "ALTER TABLE public.things ALTER COLUMN size TYPE text USING size::text");
    let page = r.page(json!({"schema": "public", "table": "things", "filter": {"column": "size", "op": "like", "value": "2%"}}));
    assert_eq!(column(&page, "size")["type"], "text", "{page}");
    assert_eq!(ids(&page), [2]);
    ddl(&mut su, "ALTER TABLE public.things ALTER COLUMN size TYPE bigint USING size::bigint");
    let (state, message) = failure(r.try_page(json!({"schema": "public", "table": "things", "filter": {"column": "size", "op": "eq", "value": "big"}}), None)
        .map(|p| p.to_string()));
    assert_eq!(state, "22P02", "a text value for a bigint column: {message}");
    assert!(message.contains("size"), "{message}");

    // Dropped: neither in the columns nor in the rows.
    ddl(&mut su, "ALTER TABLE public.things DROP COLUMN note");
    let page = r.page(things.clone());
    assert_eq!(column_names(&page), ["id", "title", "size", "extra"]);
    assert!(page["rows"][0]["values"].get("note").is_none(), "{page}");
}

#[test]
fn a_filter_on_a_dropped_column_is_not_planned_from_the_old_shape() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE TABLE public.things (id int PRIMARY KEY, note text);
                  INSERT INTO public.things VALUES (1, 'a'), (2, 'b');");
    let mut r = reader(&db);
    let on_note = json!({"schema": "public", "table": "things", "filter": {"column": "note", "op": "eq", "value": "a"}});
    assert_eq!(ids(&r.page(on_note.clone())), [1]);
    ddl(&mut su, "ALTER TABLE public.things DROP COLUMN note");
    // Read with the old shape, the page's SQL would name the dropped column and fail
    // (42703); read again, the filter is dropped with a notice.
    let page = r.page(on_note);
    assert_eq!(ids(&page), [1, 2], "{page}");
    assert_eq!(page["notices"][0]["column"], "note", "{page}");
}

#[test]
fn an_added_or_dropped_index_changes_the_paging() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE TABLE public.logs (id int PRIMARY KEY, at timestamptz NOT NULL);
                  INSERT INTO public.logs SELECT g, timestamptz '2024-01-01' + g * interval '1 hour' FROM generate_series(1, 5) g;");
    let mut r = reader(&db);
    let by_at = json!({"schema": "public", "table": "logs", "sort": [{"column": "at", "direction": "desc"}]});
    let page = r.page(by_at.clone());
    assert!(page["paging"]["index"].is_null(), "no index serves the sort yet: {}", page["paging"]);
    assert_eq!(ids(&page), [5, 4, 3, 2, 1]);

    ddl(&mut su, "CREATE INDEX logs_at ON public.logs (at DESC, id)");
    let page = r.page(by_at.clone());
    assert_eq!(page["paging"]["index"], "logs_at", "{}", page["paging"]);

    ddl(&mut su, "ALTER INDEX public.logs_at RENAME TO logs_by_time");
    let page = r.page(by_at.clone());
    assert_eq!(page["paging"]["index"], "logs_by_time", "a renamed index: {}", page["paging"]);

    ddl(&mut su, "DROP INDEX public.logs_by_time");
    let page = r.page(by_at.clone());
    assert!(page["paging"]["index"].is_null(), "the index is gone: {}", page["paging"]);

    // The key too: without the primary key, a unique index on NOT NULL columns keys the
    // pages, and without either there is no key.
    ddl(&mut su, "ALTER TABLE public.logs DROP CONSTRAINT logs_pkey");
    let page = r.page(by_at.clone());
    assert!(page["paging"]["key"].is_null(), "no key: {}", page["paging"]);
    ddl(&mut su, "CREATE UNIQUE INDEX logs_at_key ON public.logs (at)");
    let page = r.page(by_at);
    assert_eq!(page["paging"]["key"], json!(["at"]), "{}", page["paging"]);
}

#[test]
fn a_renamed_table_or_schema_is_read_under_its_new_name() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY); INSERT INTO shop.orders VALUES (1), (2);");
    let mut r = reader(&db);
    assert_eq!(ids(&r.page(json!({"schema": "shop", "table": "orders"}))), [1, 2]);

    ddl(&mut su, "ALTER TABLE shop.orders RENAME TO purchases");
    let page = r.page(json!({"schema": "shop", "table": "purchases"}));
    assert_eq!((page["name"].as_str(), ids(&page)), (Some("purchases"), vec![1, 2]));

    // A schema's new name changes no row of the table's own: only the syscache callback
    // on pg_namespace forgets the old shape, whose SQL names "shop".
    ddl(&mut su, "ALTER SCHEMA shop RENAME TO store");
    let page = r.page(json!({"schema": "store", "table": "purchases"}));
    assert_eq!((page["schema"].as_str(), ids(&page)), (Some("store"), vec![1, 2]), "{page}");
    let (state, _) = failure(r.try_page(json!({"schema": "shop", "table": "purchases"}), None).map(|p| p.to_string()));
    assert_eq!(state, "42P01");
}

#[test]
fn a_renamed_type_is_read_again() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE DOMAIN public.code AS int CHECK (VALUE > 0); CREATE TABLE public.items (id int PRIMARY KEY, c public.code);
                  INSERT INTO public.items VALUES (1, 7);");
    let mut r = reader(&db);
    let items = json!({"schema": "public", "table": "items"});
    assert_eq!(column(&r.page(items.clone()), "c")["type"], "public.code");
    // Renaming the domain changes pg_type only, no row of the table's: only the syscache
    // callback on pg_type forgets the old shape.
    ddl(&mut su, "ALTER DOMAIN public.code RENAME TO product_code");
    let page = r.page(items.clone());
    assert_eq!(column(&page, "c")["type"], "public.product_code", "{page}");
    let page = r.page(json!({"schema": "public", "table": "items", "filter": {"column": "c", "op": "eq", "value": "7"}}));
    assert_eq!(ids(&page), [1]);
}

#[test]
fn several_values_are_checked_in_one_go_and_the_one_that_does_not_fit_is_named() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE TABLE public.things (id int PRIMARY KEY, size int, born date);
                  INSERT INTO public.things VALUES (1, 10, '2020-01-01'), (2, 20, '2021-01-01');");
    let mut r = reader(&db);
    let fits = json!({"schema": "public", "table": "things",
                      "filter": {"and": [{"column": "id", "op": "in", "value": [1, 2]}, {"column": "size", "op": "gte", "value": 10},
                                         {"column": "born", "op": "lt", "value": "2021-01-01"}]}});
    assert_eq!(ids(&r.page(fits)), [1]);
    let bad = json!({"schema": "public", "table": "things",
                     "filter": {"and": [{"column": "id", "op": "eq", "value": 1}, {"column": "size", "op": "eq", "value": 10},
                                        {"column": "born", "op": "eq", "value": "not a date"}]}});
    let (state, message) = failure(r.try_page(bad, None).map(|p| p.to_string()));
    assert_eq!(state, "22007", "{message}");
    assert!(message.starts_with("column born (date)"), "{message}");
}

#[test]
fn one_backend_serves_impersonated_and_unimpersonated_pages_in_turn() {
    let db = TestDb::new();
    let (joe, _bea) = fluxbase_tests::fixtures::rls_todos(&db);
    let mut r = reader(&db);
    let imp: String = {
        let row = &as_dashboard(
            &mut r.p.web,
            "SELECT ok, code, message, impersonation_id::text FROM auth.start_impersonation($1, 'user', 'joe@example.com', 'ticket 42')",
            &[&r.token],
        )
        .unwrap()[0];
        assert!(row.get::<_, bool>(0), "{}", row.get::<_, String>(2));
        row.get(3)
    };
    let todos = json!({"schema": "public", "table": "todos"});
    let publics = json!({"schema": "public", "table": "todos", "filter": {"column": "title", "op": "like", "value": "%public"}});
    for round in 0..3 {
        // The same SQL each time, as the explorer (BYPASSRLS) and as joe (RLS).
        assert_eq!(ids(&r.page(todos.clone())), [1, 2, 3, 4], "round {round}: the admin sees every row");
        let as_joe = r.try_page(todos.clone(), Some(&imp)).unwrap_or_else(|e| panic!("{}", describe(&e)));
        assert_eq!(ids(&as_joe), [1, 2], "round {round}: joe sees his own rows");
        assert!(as_joe["rows"].as_array().unwrap().iter().all(|row| row["values"]["owner"] == joe.as_str()));
        assert_eq!(ids(&r.page(publics.clone())), [2, 4], "round {round}");
        let as_joe = r.try_page(publics.clone(), Some(&imp)).unwrap_or_else(|e| panic!("{}", describe(&e)));
        assert_eq!(ids(&as_joe), [2], "round {round}");
    }
    // And the backend is itself again afterwards, without claims.
    let row = r.p.data.query_one("SELECT current_user::text, coalesce(current_setting('request.jwt.claims', true), '')", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("fluxbase_data".into(), String::new()));
}

#[test]
fn a_revoked_privilege_is_checked_on_a_cached_shape() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE TABLE public.secrets (id int PRIMARY KEY); INSERT INTO public.secrets VALUES (1);");
    let mut r = reader(&db);
    let secrets = json!({"schema": "public", "table": "secrets"});
    assert_eq!(ids(&r.page(secrets.clone())), [1]);
    ddl(&mut su, "REVOKE SELECT ON public.secrets FROM fluxbase_explorer");
    let (state, message) = failure(r.try_page(secrets.clone(), None).map(|p| p.to_string()));
    assert_eq!(state, "42501", "{message}");
    ddl(&mut su, "GRANT SELECT ON public.secrets TO fluxbase_explorer");
    assert_eq!(ids(&r.page(secrets)), [1]);
}

#[test]
fn foreign_keys_both_ways_are_read_again_when_either_side_changes() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    ddl(&mut su, "CREATE TABLE public.customers (id int PRIMARY KEY);
                  CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int);
                  INSERT INTO public.customers VALUES (1);");
    let mut r = reader(&db);
    let customers = json!({"schema": "public", "table": "customers"});
    let orders = json!({"schema": "public", "table": "orders"});
    assert_eq!(r.page(customers.clone())["referenced_by"], json!([]));
    assert_eq!(r.page(orders.clone())["foreign_keys"], json!([]));

    // A new foreign key on orders: both pages see it (the referenced table gets triggers).
    ddl(&mut su, "ALTER TABLE public.orders ADD CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES public.customers (id)");
    let page = r.page(customers.clone());
    assert_eq!(page["referenced_by"][0]["table"], "orders", "{page}");
    assert_eq!(r.page(orders.clone())["foreign_keys"][0]["references"]["table"], "customers");

    // The referencing side renamed, table and column: the referenced side's links follow.
    ddl(&mut su, "ALTER TABLE public.orders RENAME COLUMN customer_id TO buyer_id; ALTER TABLE public.orders RENAME TO purchases");
    let page = r.page(customers.clone());
    assert_eq!((page["referenced_by"][0]["table"].clone(), page["referenced_by"][0]["columns"].clone()), (json!("purchases"), json!(["buyer_id"])), "{page}");
    // The referenced side renamed: the referencing side's links follow.
    ddl(&mut su, "ALTER TABLE public.customers RENAME TO buyers");
    let page = r.page(json!({"schema": "public", "table": "purchases"}));
    assert_eq!(page["foreign_keys"][0]["references"]["table"], "buyers", "{page}");

    // Dropped: gone from both.
    ddl(&mut su, "ALTER TABLE public.purchases DROP CONSTRAINT orders_customer");
    assert_eq!(r.page(json!({"schema": "public", "table": "buyers"}))["referenced_by"], json!([]));
    assert_eq!(r.page(json!({"schema": "public", "table": "purchases"}))["foreign_keys"], json!([]));
}
