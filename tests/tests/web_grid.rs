//! A table's rows in a real browser: the grid. Types in the headers, sorting (shift-click
//! adds a column, aria-sort), typed filters and search kept in the address, a filter on a
//! dropped column as a notice, a bad value as the extension's message, keyset paging with
//! the total, NULL against the empty string, long values cut with "show all", JSON in the
//! side panel, UTC or local times, the WAI-ARIA grid keyboard, selecting and copying rows
//! (TSV, CSV, JSON, INSERT) and a cell, foreign keys both ways. Screenshots in light and
//! dark under target/screenshots/web_grid/.

use fluxbase_tests::admin::{create_admin, PASSWORD};
use fluxbase_tests::browser::{keys, Browser, Site};
use fluxbase_tests::Caller;
use serde_json::json;

fn sign_in(browser: &mut Browser, email: &str) {
    browser.visit("/sign-in", "sign-in");
    browser.fill("#sign-in input[name=email]", email);
    browser.fill("#sign-in input[name=password]", PASSWORD);
    browser.click_and_load("#sign-in button:not([type=button])");
}

const SCHEMA: &str = "
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text NOT NULL);
    CREATE TABLE shop.orders (
        id bigint PRIMARY KEY,
        customer_id bigint REFERENCES shop.customers (id),
        total numeric(10,2) NOT NULL,
        status text NOT NULL,
        note text,
        doc jsonb,
        placed_at timestamptz NOT NULL);
    INSERT INTO shop.customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 10) g;
    INSERT INTO shop.orders
    SELECT g, 1 + g % 10, g * 1.5, CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'new' END,
           CASE g WHEN 1 THEN NULL WHEN 2 THEN '' WHEN 3 THEN repeat('x', 5000) ELSE 'note ' || g END,
           CASE WHEN g = 4 THEN '{\"tags\": [\"vip\"], \"plan\": {\"name\": \"pro\"}}'::jsonb END,
           timestamptz '2026-03-01 12:00:00+00' + g * interval '1 minute'
      FROM generate_series(1, 120) g;
    CREATE VIEW shop.paid_orders AS SELECT id, total FROM shop.orders WHERE status = 'paid';
";

/// The focused cell of the grid as (row, column) indexes, or None when focus is elsewhere.
fn focused_cell(browser: &Browser) -> Option<(i64, i64)> {
    let at = browser.js(
        "const e = document.activeElement; if (!e.matches('#grid td, #grid th')) return null; \
         return [e.parentElement.rowIndex, e.cellIndex];",
    );
    at.as_array().map(|a| (a[0].as_i64().unwrap(), a[1].as_i64().unwrap()))
}

/// The system clipboard's text, once something is on it.
fn clipboard(browser: &Browser, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = browser.js("return navigator.clipboard.readText()");
        let text = text.as_str().unwrap_or_default();
        if !text.is_empty() {
            return text.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "nothing copied ({what}): {}", browser.text("#grid-status"));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_grid_filters_sorts_pages_and_copies() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    site.db.connect(Caller::Superuser).batch_execute(SCHEMA).expect("the app's tables");
    let mut browser = site.browser("web_grid");
    sign_in(&mut browser, "ann@example.com");

    // The first page: key first, types under the names, the total in words.
    browser.visit("/tables/shop/orders", "first-page");
    assert_eq!(browser.title().split(" · ").next(), Some("shop.orders"), "title: {}", browser.title());
    assert_eq!(browser.attr("#grid", "role").as_deref(), Some("grid"));
    let headers = browser.texts("#grid thead th[data-column]");
    assert!(headers[0].starts_with("id") && headers[0].contains("bigint"), "the key first, with its type: {headers:?}");
    assert!(headers.iter().any(|h| h.contains("placed_at") && h.contains("timestamp with time zone")), "{headers:?}");
    assert_eq!(browser.texts("#grid tbody tr").len(), 50, "50 rows a page");
    let total = browser.text("#grid-total");
    assert!(total.contains("50 rows on this page") && total.contains("120 rows"), "the total: {total}");

    // NULL and the empty string look different, and not by colour alone.
    let row = |id: i64| format!("#grid tbody tr[data-key='{{\"id\":{id}}}']");
    assert_eq!(browser.text(&format!("{} td:nth-child(6)", row(1))).trim(), "NULL", "NULL is a word");
    assert!(browser.exists(&format!("{} td:nth-child(6) .empty", row(2))), "the empty string is a marked blank");
    assert_eq!(browser.text(&format!("{} td:nth-child(6) .empty", row(2))), "empty string", "named for screen readers");

    // A long value is cut, with its full length, and "show all" loads it in full.
    let cut = browser.text(&format!("{} td:nth-child(6) button.show-all", row(3)));
    assert!(cut.contains("5,000"), "the full length: {cut}");
    browser.click(&format!("{} td:nth-child(6) button.show-all", row(3)));
    browser.wait_for("#cell-panel:not([hidden])");
    let shown = browser.js("return document.getElementById('cell-panel-value').textContent.length");
    assert_eq!(shown, json!(5000), "the whole value");
    assert!(browser.text("#cell-panel-meta").contains("5,000 characters"), "{}", browser.text("#cell-panel-meta"));
    browser.step("show-all");
    browser.keyboard(keys::ESCAPE);
    assert!(!browser.is_displayed("#cell-panel"), "Escape closes the panel");

    // JSON opens formatted in the side panel.
    browser.click(&format!("{} button.open-json", row(4)));
    browser.wait_for("#cell-panel:not([hidden])");
    assert_eq!(browser.text("#cell-panel-meta"), "jsonb · row 4", "the panel names the type and the row");
    let formatted = browser.text("#cell-panel-value");
    assert!(formatted.contains("\n") && formatted.contains("\"plan\": {"), "formatted: {formatted}");
    browser.step("json-panel");
    browser.click("#cell-panel-close");

    // Times in UTC, or local time by the toggle (this browser runs in UTC, so the offset shows).
    let time = format!("{} time", row(1));
    assert_eq!(browser.text(&time), "2026-03-01 12:01:00 UTC");
    browser.click("#time-zone");
    assert_eq!(browser.attr("#time-zone", "aria-pressed").as_deref(), Some("true"));
    assert!(browser.text(&time).starts_with("2026-03-01 ") && browser.text(&time).contains(":01:00 "), "{}", browser.text(&time));
    assert!(!browser.text(&time).ends_with("UTC"), "local time names its offset: {}", browser.text(&time));
    browser.click("#time-zone");

    // The keyboard: one Tab stop, arrows, Home/End, PageDown, Ctrl+Home.
    let stops = browser.js("return document.querySelectorAll('#grid [tabindex=\"0\"]').length");
    assert_eq!(stops, json!(1), "the grid is one Tab stop");
    // From the page's top, by Tab alone: the grid is one stop, at its first row's key.
    browser.visit("/tables/shop/orders", "keyboard");
    let mut tabs = 0;
    while focused_cell(&browser).is_none() {
        browser.keyboard(keys::TAB);
        tabs += 1;
        assert!(tabs < 40, "Tab never reached the grid");
    }
    assert_eq!(focused_cell(&browser), Some((1, 1)), "the grid's stop: the first row's key");
    browser.keyboard(&format!("{}{}", keys::RIGHT, keys::RIGHT));
    assert_eq!(focused_cell(&browser), Some((1, 3)));
    browser.keyboard(keys::RIGHT);
    assert_eq!(focused_cell(&browser), Some((1, 4)));
    browser.keyboard(keys::DOWN);
    assert_eq!(focused_cell(&browser), Some((2, 4)));
    browser.keyboard(keys::END);
    assert_eq!(focused_cell(&browser), Some((2, 7)), "End: the row's last cell");
    browser.keyboard(keys::HOME);
    assert_eq!(focused_cell(&browser), Some((2, 0)), "Home: the row's first cell");
    browser.keyboard(keys::PAGE_DOWN);
    assert_eq!(focused_cell(&browser), Some((12, 0)), "PageDown: ten rows on");
    browser.chord(&[keys::CONTROL, keys::HOME]);
    assert_eq!(focused_cell(&browser), Some((0, 0)), "Ctrl+Home: the first cell");
    assert!(browser.focused().focus_visible || browser.focused().outline_style != "none", "focus is visible");
    // Tab leaves the grid in one step.
    browser.keyboard(keys::TAB);
    assert_eq!(focused_cell(&browser), None, "Tab leaves the grid");
    // Enter on a foreign-key cell follows it.
    browser.chord(&[keys::SHIFT, keys::TAB]);
    assert_eq!(focused_cell(&browser), Some((0, 0)), "Shift+Tab comes back to the cell it left");
    browser.chord(&[keys::CONTROL, keys::HOME]);
    browser.keyboard(&format!("{}{}{}", keys::DOWN, keys::RIGHT, keys::RIGHT));
    assert_eq!(focused_cell(&browser), Some((1, 2)), "customer_id of the first row");
    browser.keyboard_and_load(keys::ENTER);
    assert_eq!(browser.path(), "/tables/shop/customers?fc=id&fo=eq&fv=2", "Enter followed the key");
    browser.visit("/tables/shop/orders", "keyboard-back");

    // Selecting rows by keyboard and copying them in each format.
    browser.click(&format!("{} td.key", row(1)));
    browser.keyboard(keys::SPACE);
    browser.keyboard(keys::DOWN);
    browser.keyboard(keys::SPACE);
    assert_eq!(browser.attr(&row(2), "aria-selected").as_deref(), Some("true"));
    assert_eq!(browser.text("#selection-count"), "2 rows selected");
    // Read back from the system clipboard, as a paste would get it.
    browser.cdp("Browser.grantPermissions", json!({"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}));
    let copied = |browser: &Browser, format: &str| -> String {
        browser.js("return navigator.clipboard.writeText('')");
        browser.click(&format!("[data-copy={format}]"));
        clipboard(browser, &format!("rows as {format}"))
    };
    let tsv = copied(&browser, "tsv");
    assert!(tsv.starts_with("id\tcustomer_id\ttotal\tstatus\tnote"), "TSV header: {tsv}");
    assert_eq!(tsv.lines().nth(1).unwrap(), "1\t2\t1.50\tnew\t\t\t2026-03-01T12:01:00+00:00", "TSV row, numbers exact: {tsv}");
    let csv = copied(&browser, "csv");
    assert!(csv.lines().nth(2).unwrap().starts_with("\"2\",\"3\",\"3.00\",\"new\",\"\""), "CSV: NULL empty, '' quoted: {csv}");
    let rows: serde_json::Value = serde_json::from_str(&copied(&browser, "json")).expect("JSON rows");
    assert_eq!(rows[0]["note"], serde_json::Value::Null);
    assert_eq!(rows[1]["note"], json!(""));
    let insert = copied(&browser, "insert");
    assert!(insert.starts_with("INSERT INTO \"shop\".\"orders\""), "{insert}");
    assert!(browser.text("#grid-status").contains("Copied 2 rows as INSERT"), "{}", browser.text("#grid-status"));
    browser.step("selected");
    // Ctrl+C copies the focused cell, in full even when cut.
    browser.click(&format!("{} td:nth-child(6)", row(3)));
    browser.js("return navigator.clipboard.writeText('')");
    browser.chord(&[keys::CONTROL, "c"]);
    assert_eq!(clipboard(&browser, "the cut cell").len(), 5000, "the cut cell, copied in full");

    // Sorting: a header click sorts by it (aria-sort), again turns it; shift-click adds one.
    browser.click_and_load("#grid th[data-column=status] a.sort");
    assert_eq!(browser.attr("#grid th[data-column=status]", "aria-sort").as_deref(), Some("ascending"));
    browser.js_and_load(
        "document.querySelector('#grid th[data-column=total] a.sort')\
         .dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, shiftKey: true}))",
    );
    assert!(browser.path().contains("sort=status%3Aasc&sort=total%3Aasc"), "two sort columns: {}", browser.path());
    assert_eq!(browser.attr("#grid th[data-column=total]", "aria-sort"), None, "aria-sort on the first only");
    assert!(browser.text("#grid th[data-column=total]").contains("2 of 2"), "{}", browser.text("#grid th[data-column=total]"));
    let statuses = browser.texts("#grid tbody td:nth-child(5)");
    assert!(statuses.iter().all(|s| s == "new"), "new sorts before paid: {statuses:?}");
    browser.step("sorted");

    // Keyset paging: next, previous, first, with the sort kept.
    browser.click_and_load("#page-next");
    assert!(browser.path().contains("cursor="), "{}", browser.path());
    let second: Vec<String> = browser.texts("#grid tbody td:nth-child(5)");
    assert_eq!(second.iter().filter(|s| *s == "new").count(), 30, "the rest of the 80 new orders: {second:?}");
    assert_eq!(second[30], "paid", "then the paid ones: {second:?}");
    browser.click_and_load("#page-prev");
    assert_eq!(browser.texts("#grid tbody tr").len(), 50);
    assert!(browser.exists("#page-first"));
    browser.click_and_load("#page-first");
    assert!(!browser.path().contains("cursor="));

    // Typed filters: the column offers its operators; the view is in the address.
    browser.visit("/tables/shop/orders", "unfiltered");
    assert!(!browser.is_displayed("#fc-new"), "no filter yet: the filters are folded away");
    browser.click("#filters-box summary");
    let ops = browser.js(
        "const c = document.getElementById('fc-new'); c.value = 'total'; c.dispatchEvent(new Event('change')); \
         return Array.from(document.getElementById('fo-new').options).map(o => o.value);",
    );
    assert!(!ops.as_array().unwrap().contains(&json!("like")), "no like on numbers: {ops}");
    browser.js("const o = document.getElementById('fo-new'); o.value = 'gte'; o.dispatchEvent(new Event('change'));");
    browser.fill("#fv-new", "150");
    browser.click_and_load("#grid-query button[type=submit]");
    assert!(browser.path().contains("fc=total&fo=gte&fv=150"), "{}", browser.path());
    assert_eq!(browser.texts("#grid tbody tr").len(), 21, "ids 100 to 120");
    browser.step("filtered");
    // With a sort, reloaded from its address (a bookmark, a link sent to a colleague).
    browser.click_and_load("#grid th[data-column=total] a.sort");
    browser.click_and_load("#grid th[data-column=total] a.sort");
    let address = browser.path();
    assert!(address.contains("fc=total") && address.contains("sort=total%3Adesc"), "{address}");
    let shown = browser.texts("#grid tbody th.row-head + td");
    browser.visit(&address, "reloaded");
    assert_eq!(browser.texts("#grid tbody th.row-head + td"), shown, "the same view from the address");
    assert_eq!(shown.first().map(String::as_str), Some("120"), "highest total first");
    assert_eq!(browser.attr("#fv-1", "value").as_deref(), Some("150"), "the filter form shows the filter");
    // A second condition, joined with or, through the address (as a bookmark would).
    browser.visit("/tables/shop/orders?fc=id&fo=eq&fv=1&fc=id&fo=in&fv=2,3&match=any&q=xx", "or-and-search");
    let ids = browser.texts("#grid tbody th.row-head + td");
    assert_eq!(ids, vec!["3"], "(id = 1 or id in (2, 3)) and a text column has 'xx': {ids:?}");
    assert!(browser.text("#clear-filters").contains("Clear"));

    // A filter on a column that is gone is dropped with a notice; a bad value is the
    // extension's message, with the form kept to fix it.
    browser.visit("/tables/shop/orders?fc=gone&fo=eq&fv=1", "dropped-filter");
    assert!(browser.text(".notice").contains("gone"), "{}", browser.text(".notice"));
    assert_eq!(browser.texts("#grid tbody tr").len(), 50, "the rest of the view applies");
    browser.visit("/tables/shop/orders?fc=total&fo=gt&fv=abc", "bad-value");
    let error = browser.text("#grid-error");
    assert!(error.contains("numeric") && error.contains("abc"), "{error}");
    assert_eq!(browser.attr("#fv-1", "value").as_deref(), Some("abc"), "the form keeps the value to fix");

    // Foreign keys: a cell links to the referenced row; a row lists who points at it.
    browser.visit("/tables/shop/orders", "fk");
    browser.click_and_load(&format!("{} a.fk", row(1)));
    assert_eq!(browser.path(), "/tables/shop/customers?fc=id&fo=eq&fv=2");
    assert_eq!(browser.texts("#grid tbody tr").len(), 1);
    browser.click(&format!("{} details.refs summary", row(2)));
    browser.step("referenced-by");
    browser.click_and_load(&format!("{} details.refs a", row(2)));
    assert_eq!(browser.path(), "/tables/shop/orders?fc=customer_id&fo=eq&fv=2");
    assert_eq!(browser.texts("#grid tbody tr").len(), 12, "every order of customer 2");

    // A view has no key: paging by offset says so, and rows cannot be selected.
    browser.visit("/tables/shop/paid_orders", "view");
    assert!(browser.exists("#no-key-note"));
    assert!(browser.text("#paging-note").to_lowercase().contains("offset"), "{}", browser.text("#paging-note"));
    assert!(!browser.exists("#grid input.select-row"));

    // An unknown table is the 404 page.
    let problems = browser.visit_collecting_problems("/tables/shop/nope", "unknown-table");
    assert!(browser.exists("#error"), "unknown table: the error page");
    assert!(problems.iter().all(|p| p.contains("404")), "only the 404 itself: {problems:?}");

    // Empty states.
    site.db.connect(Caller::Superuser).batch_execute("CREATE TABLE shop.empty (id int PRIMARY KEY)").unwrap();
    browser.visit("/tables/shop/empty", "empty-table");
    assert!(browser.text("#grid-empty").contains("no rows yet"));
    browser.visit("/tables/shop/orders?fc=status&fo=eq&fv=none", "no-match");
    assert!(browser.text("#grid-empty").contains("No rows match"));

    // A phone: the grid scrolls inside its frame, the key column stays.
    browser.set_viewport(390, 800);
    browser.visit("/tables/shop/orders", "narrow");

    // A viewer browses, filters and copies (viewers may export).
    create_admin(&site.db, "vic@example.com", "viewer");
    let mut viewer = site.browser("web_grid/viewer");
    sign_in(&mut viewer, "vic@example.com");
    viewer.visit("/tables/shop/orders?fc=status&fo=eq&fv=paid", "viewer-grid");
    assert_eq!(viewer.texts("#grid tbody tr").len(), 40, "every paid order");
    assert!(viewer.exists("[data-copy=csv]"));
}
