//! The Tables pages in a real browser: the list (schemas, tables and views with their
//! rows, size, RLS and what the explorer cannot read; the name filter, a plain GET form)
//! and a table's Structure tab (columns, key, foreign keys both ways, indexes, policies,
//! grants, real time). Screenshots in light and dark under target/screenshots/web_tables/.

use fluxbase_tests::admin::{create_admin, PASSWORD};
use fluxbase_tests::browser::{Browser, Site};
use fluxbase_tests::Caller;

fn sign_in(browser: &mut Browser, email: &str) {
    browser.visit("/sign-in", "sign-in");
    browser.fill("#sign-in input[name=email]", email);
    browser.fill("#sign-in input[name=password]", PASSWORD);
    browser.click_and_load("#sign-in button:not([type=button])");
}

fn row(name: &str) -> String {
    format!("table.tables-list tr[data-name=\"{name}\"]")
}

const SCHEMA: &str = "
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE, name text);
    COMMENT ON COLUMN shop.customers.email IS 'Where receipts go';
    CREATE TABLE shop.orders (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        customer_id bigint NOT NULL REFERENCES shop.customers (id),
        total numeric(10,2) NOT NULL DEFAULT 0,
        status text NOT NULL DEFAULT 'new',
        created_at timestamptz NOT NULL DEFAULT now());
    COMMENT ON TABLE shop.orders IS 'One row per checkout';
    CREATE INDEX orders_status ON shop.orders (status);
    ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;
    ALTER TABLE shop.orders FORCE ROW LEVEL SECURITY;
    CREATE POLICY orders_read ON shop.orders FOR SELECT USING (status <> 'hidden');
    CREATE POLICY orders_write ON shop.orders FOR INSERT WITH CHECK (total >= 0);
    INSERT INTO shop.customers (email) SELECT 'c' || g || '@example.com' FROM generate_series(1, 1500) g;
    ANALYZE shop.customers;
    CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 100;
    CREATE TABLE public.secrets (id int PRIMARY KEY, value text);
    REVOKE SELECT ON public.secrets FROM fluxbase_explorer;
    CREATE TABLE public.\"o'brien notes\" (id int PRIMARY KEY, body text, customer_id bigint REFERENCES shop.customers (id));
";

#[test]
fn tables_list_filter_and_structure() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    create_admin(&site.db, "vic@example.com", "viewer");

    // Before any app table: the empty state says what is listed and how to make one.
    let mut browser = site.browser("web_tables");
    sign_in(&mut browser, "ann@example.com");
    assert_eq!(browser.path(), "/tables");
    browser.step("empty");
    assert!(browser.exists("#tables-empty"), "no app tables yet: the empty state");
    assert!(browser.text("#tables-empty").contains("CREATE TABLE"), "it says how to create one");

    site.db.connect(Caller::Superuser).batch_execute(SCHEMA).expect("the app's tables");

    browser.visit("/tables", "list");
    assert!(browser.title().starts_with("Tables"), "title: {}", browser.title());
    let schemas = browser.texts("table.tables-list caption");
    assert_eq!(schemas.len(), 2, "two schemas, each its table: {schemas:?}");
    assert!(schemas[0].contains("public") && schemas[1].contains("shop"), "{schemas:?}");
    // Header cells have scope; numbers are right-aligned.
    assert!(browser.exists("table.tables-list thead th[scope=col].num"));

    let orders = browser.text(&row("orders"));
    assert!(orders.contains("forced 2 policies"), "orders: RLS forced: {orders}");
    assert!(orders.contains("2 policies"), "orders: two policies: {orders}");
    assert!(orders.contains("One row per checkout"), "orders: its comment: {orders}");
    let customers = browser.text(&row("customers"));
    assert!(customers.contains("off 0 policies"), "customers: {customers}");
    assert!(customers.contains("1,500"), "customers: estimated rows after ANALYZE: {customers}");
    assert!(customers.contains("kB"), "customers: a human-readable size: {customers}");
    assert!(browser.text(&row("big_orders")).contains("view"), "the view is listed as a view");
    let secrets = browser.text(&row("secrets"));
    assert!(secrets.contains("limited") && secrets.contains("revoked SELECT"), "secrets: unreadable, and why: {secrets}");
    let hostile = browser.attr(&format!("{} a.relation", row("o'brien notes")), "href").unwrap_or_default();
    assert_eq!(hostile, "/tables/public/o%27brien%20notes", "the segments are encoded");

    // The name filter: a GET form, kept in the address.
    browser.fill("#q", "ORD");
    browser.click_and_load("#table-filter button[type=submit]");
    browser.step("filtered");
    assert_eq!(browser.path(), "/tables?q=ORD");
    let names = browser.texts("table.tables-list a.relation");
    assert_eq!(names, vec!["big_orders", "orders"], "only the matching names");
    assert!(browser.text("#status").contains("2 relations match"), "{}", browser.text("#status"));
    browser.visit("/tables?q=nothing-like-this", "filtered-none");
    assert!(browser.text("#tables-empty").contains("No table or view matches"));

    // With JavaScript, the rows filter as you type, and the address follows.
    browser.goto("/tables");
    browser.fill("#q", "secr");
    let visible = browser.js("return Array.from(document.querySelectorAll('tr[data-name]')).filter(r => r.offsetParent !== null).map(r => r.dataset.name)");
    assert_eq!(visible, serde_json::json!(["secrets"]), "filtered as typed");
    assert_eq!(browser.path(), "/tables?q=secr");
    browser.step("typed-filter");

    // The structure tab, through the table's link (its rows) and then the tab.
    browser.goto("/tables?q=orders");
    browser.click_and_load(&format!("{} a.relation", row("orders")));
    assert_eq!(browser.path(), "/tables/shop/orders", "a table's link opens its rows");
    browser.click_and_load(".tabs a[href$='/structure']");
    browser.step("structure-orders");
    assert_eq!(browser.path(), "/tables/shop/orders/structure");
    assert_eq!(browser.text("#table-title"), "shop.orders");
    assert!(browser.title().contains("shop.orders"), "title: {}", browser.title());
    let columns = browser.texts("#columns tbody th");
    assert_eq!(columns[0], "id key", "the key column is marked: {columns:?}");
    assert_eq!(columns.len(), 5, "{columns:?}");
    let total = browser.text("#columns tr[data-column=total]");
    assert!(total.contains("numeric(10,2)") && total.contains("not null") && total.contains('0'), "total: {total}");
    assert!(browser.text("#primary-key").contains("(id)"));
    assert!(browser.text("#rls-state").contains("forced"));
    assert!(browser.text("#policies tr[data-policy=orders_read]").contains("'hidden'"), "the policy's expression");
    assert!(browser.text("#policies tr[data-policy=orders_write]").contains("total >= "), "the check expression");
    assert!(browser.text("#indexes").contains("orders_status"));
    assert!(browser.text("#grants").contains("fluxbase_explorer"), "the grants: {}", browser.text("#grants"));
    assert!(browser.text("#realtime-state").contains("off"));

    // A foreign key leads to the other table, which lists who points at it.
    browser.click_and_load("#foreign-keys a.fk");
    browser.step("structure-customers");
    assert_eq!(browser.path(), "/tables/shop/customers/structure");
    assert!(browser.text("#columns tr[data-column=email]").contains("Where receipts go"), "the column comment");
    let referrers = browser.texts("#referenced-by a.fk");
    assert_eq!(referrers, vec!["public.o'brien notes", "shop.orders"], "referenced by, both");
    browser.click_and_load("#referenced-by a.fk");
    browser.step("structure-hostile-name");
    assert_eq!(browser.text("#table-title"), "public.o'brien notes");

    // An unknown table is the 404 page.
    let problems = browser.visit_collecting_problems("/tables/shop/nope/structure", "unknown-table");
    assert!(browser.exists("#error"), "unknown table: the error page");
    assert!(problems.iter().all(|p| p.contains("404")), "only the 404 itself: {problems:?}");

    // A viewer reads both pages.
    let mut viewer = site.browser("web_tables/viewer");
    sign_in(&mut viewer, "vic@example.com");
    viewer.step("viewer-list");
    assert!(viewer.exists(&row("orders")));
    viewer.visit("/tables/shop/orders/structure", "viewer-structure");
    assert_eq!(viewer.text("#table-title"), "shop.orders");

    // Narrow screens: the list still reads.
    browser.set_viewport(390, 800);
    browser.visit("/tables", "list-narrow");
    browser.set_viewport(fluxbase_tests::browser::WIDTH, fluxbase_tests::browser::HEIGHT);

    // Past 500 relations the list comes in pages, in name order, the filter kept.
    site.db
        .connect(Caller::Superuser)
        .batch_execute("CREATE SCHEMA many; DO $$ BEGIN FOR i IN 1..520 LOOP EXECUTE format('CREATE TABLE many.t_%s (id int)', lpad(i::text, 3, '0')); END LOOP; END $$;")
        .unwrap();
    browser.visit("/tables?q=many.", "list-paged");
    assert_eq!(browser.texts("table.tables-list a.relation").len(), 500);
    assert!(browser.text("#list-count").contains("500 on this page of 520 matching"), "{}", browser.text("#list-count"));
    browser.click_and_load("#list-next");
    let rest = browser.texts("table.tables-list a.relation");
    assert_eq!((rest.len(), rest.first().map(String::as_str)), (20, Some("t_501")), "the next page, after t_500");
    assert!(browser.path().contains("q=many."), "the filter stays: {}", browser.path());
    assert!(browser.exists("#list-first") && !browser.exists("#list-next"));
}
