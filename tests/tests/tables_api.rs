//! The explorer's JSON routes through `fluxbase serve`: the list of tables, a table's
//! structure, and its pages (a ticket on the dashboard login, claimed on the data login),
//! with the bearer token or the session cookie, and the API's errors.

use fluxbase_tests::admin::{create_admin, login, PASSWORD};
use fluxbase_tests::data_plane::ids;
use fluxbase_tests::{Caller, Server, TestDb};
use serde_json::{json, Value};
use std::time::Duration;

const FIXTURE: &str = r#"
    CREATE TABLE public.items (id int PRIMARY KEY, name text, qty int);
    INSERT INTO public.items VALUES
        (1, 'Apple', 5), (2, 'banana', NULL), (3, 'Cherry', 7), (4, 'date', 0), (5, NULL, 12), (6, 'Apple pie', 5);
    COMMENT ON TABLE public.items IS 'things for sale';
    CREATE SCHEMA "odd ""schema""";
    CREATE TABLE "odd ""schema"""."it's a / ""table""" ("my id" int PRIMARY KEY, "the value" text);
    INSERT INTO "odd ""schema"""."it's a / ""table""" VALUES (1, 'x'), (2, 'y');
"#;

fn signed_in(db: &TestDb, role: &str) -> String {
    create_admin(db, &format!("{role}@example.com"), role);
    let mut web = db.connect(Caller::Dashboard);
    login(&mut web, &format!("{role}@example.com"), PASSWORD, "203.0.113.9").token().to_string()
}

fn setup(role: &str) -> (TestDb, Server, String) {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(FIXTURE).unwrap();
    let token = signed_in(&db, role);
    let server = Server::start(&db);
    (db, server, token)
}

/// A path segment or a query value, percent-encoded.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(server: &Server, path: &str, token: &str) -> Value {
    let (status, body) = server.get_json_with(path, token);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}


#[test]
fn the_list_and_a_structure() {
    let (_db, server, token) = setup("admin");
    let list = get(&server, "/api/tables", &token);
    let tables = list["rows"].as_array().unwrap_or_else(|| panic!("{list}"));
    assert_eq!((list["total"].clone(), list["next_cursor"].clone()), (json!(2), Value::Null), "{list}");
    let items = tables.iter().find(|t| t["schema"] == "public" && t["name"] == "items").unwrap_or_else(|| panic!("{list}"));
    assert_eq!(items["kind"], "table", "{items}");
    assert_eq!(items["has_primary_key"], true, "{items}");
    assert_eq!(items["description"], "things for sale", "{items}");
    assert!(items.get("ordinality").is_none(), "{items}");
    assert!(tables.iter().any(|t| t["schema"] == "odd \"schema\"" && t["name"] == "it's a / \"table\""), "{list}");
    // Paged and searched: "schema.name" in any case, one a page, in schema and name order.
    let first = get(&server, "/api/tables?page_size=1", &token);
    assert_eq!(first["rows"][0]["schema"], "odd \"schema\"", "{first}");
    let cursor = first["next_cursor"].as_str().unwrap_or_else(|| panic!("{first}"));
    let second = get(&server, &format!("/api/tables?page_size=1&cursor={}", enc(cursor)), &token);
    assert_eq!((second["rows"][0]["name"].clone(), second["next_cursor"].clone()), (json!("items"), Value::Null), "{second}");
    let searched = get(&server, "/api/tables?search=PUBLIC.IT", &token);
    assert_eq!((searched["total"].clone(), searched["rows"][0]["name"].clone()), (json!(1), json!("items")), "{searched}");
    let (status, body) = server.get_json_with("/api/tables?page_size=0", &token);
    assert_eq!(status, 422, "{body}");

    let structure = get(&server, "/api/tables/public/items", &token);
    assert_eq!((structure["schema"].clone(), structure["name"].clone()), (json!("public"), json!("items")), "{structure}");
    let columns: Vec<&str> = structure["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["id", "name", "qty"], "{structure}");
    assert_eq!(structure["columns"][0]["type"], "integer");

    let (status, missing) = server.get_json_with("/api/tables/public/nope", &token);
    assert_eq!((status, missing["error"]["code"].clone()), (404, json!("42P01")), "{missing}");
}

#[test]
fn pages_forwards_and_back_with_a_filter_and_a_sort() {
    let (_db, server, token) = setup("admin");
    let first = get(&server, "/api/tables/public/items/rows?page_size=4", &token);
    assert_eq!(ids(&first), [1, 2, 3, 4], "{first}");
    assert!(first["prev_cursor"].is_null(), "{first}");
    let next = first["next_cursor"].as_str().unwrap_or_else(|| panic!("no next page: {first}"));
    let second = get(&server, &format!("/api/tables/public/items/rows?page_size=4&cursor={}", enc(next)), &token);
    assert_eq!(ids(&second), [5, 6], "{second}");
    assert!(second["next_cursor"].is_null(), "{second}");
    let prev = second["prev_cursor"].as_str().unwrap_or_else(|| panic!("no previous page: {second}"));
    let back = get(&server, &format!("/api/tables/public/items/rows?page_size=4&cursor={}", enc(prev)), &token);
    assert_eq!(ids(&back), [1, 2, 3, 4], "{back}");

    // A filter and a sort, as JSON in the query; empty fields are absent ones.
    let filter = json!({"or": [{"column": "qty", "op": "gte", "value": 5}, {"column": "name", "op": "ilike", "value": "%an%"}]});
    let sort = json!([{"column": "qty", "direction": "desc", "nulls": "last"}]);
    let path = format!(
        "/api/tables/public/items/rows?filter={}&sort={}&search=&cursor=&total=exact",
        enc(&filter.to_string()),
        enc(&sort.to_string())
    );
    let page = get(&server, &path, &token);
    assert_eq!(ids(&page), [5, 3, 1, 6, 2], "qty descending, NULLs last: {page}");
    assert_eq!(page["notices"], json!([]), "{page}");
    let searched = get(&server, "/api/tables/public/items/rows?search=apple", &token);
    assert_eq!(ids(&searched), [1, 6], "{searched}");
}

#[test]
fn bad_input_is_a_422_and_a_dropped_column_a_notice() {
    let (db, server, token) = setup("admin");
    for query in [
        format!("filter={}", enc("{\"column\": ")),
        format!("filter={}", enc(&json!({"column": "qty", "op": "between", "value": 1}).to_string())),
        format!("sort={}", enc(&json!([{"column": "qty", "direction": "up"}]).to_string())),
        "page_size=0".to_string(),
        "page_size=1001".to_string(),
        "page_size=many".to_string(),
        "cursor=not%20a%20cursor".to_string(),
        "total=lots".to_string(),
    ] {
        let (status, body) = server.get_json_with(&format!("/api/tables/public/items/rows?{query}"), &token);
        assert_eq!(status, 422, "{query}: {body}");
        assert!(body["error"]["code"].as_str().unwrap().starts_with("22"), "{query}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{query}: {body}");
    }
    let (_, between) = server.get_json_with(
        &format!("/api/tables/public/items/rows?filter={}", enc(&json!({"column": "qty", "op": "between", "value": 1}).to_string())),
        &token,
    );
    assert!(between["error"]["message"].as_str().unwrap().contains("unknown filter operator \"between\""), "{between}");

    db.connect(Caller::Superuser).batch_execute("ALTER TABLE public.items DROP COLUMN qty").unwrap();
    let filter = json!({"column": "qty", "op": "gte", "value": 5});
    let page = get(&server, &format!("/api/tables/public/items/rows?filter={}", enc(&filter.to_string())), &token);
    assert_eq!(ids(&page), [1, 2, 3, 4, 5, 6], "{page}");
    assert_eq!(page["notices"][0]["code"], "filter_dropped", "{page}");
    assert_eq!(page["notices"][0]["column"], "qty", "{page}");
}

#[test]
fn hostile_names_travel_url_encoded() {
    let (_db, server, token) = setup("admin");
    let base = format!("/api/tables/{}/{}", enc("odd \"schema\""), enc("it's a / \"table\""));
    let structure = get(&server, &base, &token);
    assert_eq!((structure["schema"].clone(), structure["name"].clone()), (json!("odd \"schema\""), json!("it's a / \"table\"")), "{structure}");
    let sort = json!([{"column": "my id", "direction": "desc"}]);
    let page = get(&server, &format!("{base}/rows?sort={}", enc(&sort.to_string())), &token);
    let values: Vec<&str> = page["rows"].as_array().unwrap().iter().map(|r| r["values"]["the value"].as_str().unwrap()).collect();
    assert_eq!(values, ["y", "x"], "{page}");
}

#[test]
fn without_a_session_401_and_a_viewer_reads() {
    let (db, server, token) = setup("viewer");
    for path in ["/api/tables", "/api/tables/public/items", "/api/tables/public/items/rows"] {
        let (status, body) = server.get_text(path, None);
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = server.get_json_with(path, "fbs_not_a_session");
        assert_eq!((status, body["error"]["code"].clone()), (401, json!("28000")), "{path}: {body}");
        get(&server, path, &token);
    }
    assert_eq!(ids(&get(&server, "/api/tables/public/items/rows", &token)), [1, 2, 3, 4, 5, 6]);

    // The browser's signed session cookie works as the bearer token does.
    create_admin(&db, "ann@example.com", "admin");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .post(&server.url("/sign-in"))
        .header("Sec-Fetch-Site", "same-origin")
        .send_form([("email", "ann@example.com"), ("password", PASSWORD)])
        .unwrap();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("fluxbase_session="))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", response.headers()))
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut answer = agent.get(&server.url("/api/tables/public/items/rows?page_size=2")).header("Cookie", &cookie).call().unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let page: Value = serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(ids(&page), [1, 2], "{page}");
    let forged = format!("{}0", cookie);
    let answer = agent.get(&server.url("/api/tables")).header("Cookie", &forged).call().unwrap();
    assert_eq!(answer.status().as_u16(), 401);
}

#[test]
fn a_cell_in_full_and_rows_to_copy() {
    let (db, server, token) = setup("viewer");
    db.connect(Caller::Superuser)
        .batch_execute("UPDATE public.items SET name = repeat('long ', 1000) WHERE id = 3")
        .unwrap();
    // The page cuts the long value and gives its length; the cell route gives it whole.
    let page = get(&server, "/api/tables/public/items/rows?page_size=3", &token);
    assert_eq!((page["foreign_keys"].clone(), page["referenced_by"].clone()), (json!([]), json!([])), "links, none here: {page}");
    assert_eq!(page["rows"][2]["truncated"]["name"], 5000, "{page}");
    let key = enc(&json!({"id": 3}).to_string());
    let cell = get(&server, &format!("/api/tables/public/items/cell?column=name&key={key}"), &token);
    assert_eq!((cell["found"].clone(), cell["length"].clone()), (json!(true), json!(5000)), "{cell}");
    assert_eq!(cell["value"].as_str().unwrap().len(), 5000);
    // A key of other columns, an unknown column and a malformed key: 422 with the reason.
    for query in [
        format!("column=name&key={}", enc(&json!({"name": "x"}).to_string())),
        format!("column=nope&key={key}"),
        format!("column=name&key={}", enc("{\"id\": ")),
    ] {
        let (status, body) = server.get_json_with(&format!("/api/tables/public/items/cell?{query}"), &token);
        assert_eq!(status, 422, "{query}: {body}");
    }

    // Copying: rows by key as JSON and as one INSERT, in key order; the viewer may.
    let keys = enc(&json!([{"id": 2}, {"id": 1}, {"id": 99}]).to_string());
    let copy = get(&server, &format!("/api/tables/public/items/copy?keys={keys}"), &token);
    assert_eq!(copy["count"], 2, "{copy}");
    assert_eq!(copy["rows"][0]["id"], 1, "key order: {copy}");
    assert_eq!(copy["rows"][1]["qty"], Value::Null, "{copy}");
    let statement = copy["statement"].as_str().unwrap();
    assert!(statement.starts_with("INSERT INTO \"public\".\"items\""), "{statement}");
    // Run where the rows were deleted, the statement puts them back as they were.
    let mut su = db.connect(Caller::Superuser);
    let before: String = su.query_one("SELECT string_agg(i::text, ';' ORDER BY id) FROM public.items i WHERE id IN (1, 2)", &[]).unwrap().get(0);
    let mut tx = su.transaction().unwrap();
    tx.batch_execute("DELETE FROM public.items WHERE id IN (1, 2)").unwrap();
    tx.batch_execute(statement).unwrap();
    let after: String = tx.query_one("SELECT string_agg(i::text, ';' ORDER BY id) FROM public.items i WHERE id IN (1, 2)", &[]).unwrap().get(0);
    tx.rollback().unwrap();
    assert_eq!(after, before);
    // The copy is audited as explorer.copy.
    let audited: i64 = db
        .connect(Caller::Superuser)
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'explorer.copy'", &[])
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    // Without a session: 401.
    let (status, _) = server.get_text(&format!("/api/tables/public/items/copy?keys={keys}"), None);
    assert_eq!(status, 401);
}
