//! The explorer's browsing, end to end through the web's two logins (a ticket from the
//! dashboard login as fluxbase_dashboard, the work on the data login that claims it):
//! typed filters and their errors, sorting with NULLs, keyset cursors under concurrent
//! inserts, capped counts, previews of large values, following foreign keys, the paging
//! report, streaming CSV export in flat memory, auditing, impersonated pages and exports,
//! and RLS never hiding rows from the unimpersonated admin.

use fluxbase_tests::admin::{as_dashboard, create_admin, describe, failure, login, PASSWORD};
use fluxbase_tests::data_plane::{claimed, export_claimed, export_lines, ids, Planes};
use fluxbase_tests::{Caller, TestDb, strings};
use postgres::Client;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// A signed-in dashboard admin with the web binary's two logins: tickets on the
/// dashboard login, the work on the data login.
struct Explorer {
    p: Planes,
    token: String,
}

/// One browse request; unset fields take the function's defaults.
#[derive(Default, Clone)]
struct Req {
    filter: Option<Value>,
    sort: Option<Value>,
    search: Option<String>,
    page_size: Option<i32>,
    cursor: Option<String>,
    total: Option<String>,
}

fn req() -> Req {
    Req::default()
}

impl Req {
    fn filter(mut self, filter: Value) -> Self {
        self.filter = Some(filter);
        self
    }
    fn sort(mut self, sort: Value) -> Self {
        self.sort = Some(sort);
        self
    }
    fn search(mut self, term: &str) -> Self {
        self.search = Some(term.to_string());
        self
    }
    fn size(mut self, page_size: i32) -> Self {
        self.page_size = Some(page_size);
        self
    }
    fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
    fn total(mut self, total: &str) -> Self {
        self.total = Some(total.to_string());
        self
    }

    /// The ticket's request for schema.table: only the fields that are set.
    fn request(&self, schema: &str, table: &str) -> Value {
        let mut request = json!({"schema": schema, "table": table});
        let fields = [
            ("filter", self.filter.clone()),
            ("sort", self.sort.clone()),
            ("search", self.search.clone().map(Value::from)),
            ("page_size", self.page_size.map(Value::from)),
            ("cursor", self.cursor.clone().map(Value::from)),
            ("total", self.total.clone().map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                request[key] = value;
            }
        }
        request
    }
}

/// Signs in `email` (created with `role`) on fresh connections of both logins.
fn sign_in(db: &TestDb, email: &str, role: &str) -> Explorer {
    create_admin(db, email, role);
    let mut p = Planes::connect(db);
    let token = login(&mut p.web, email, PASSWORD, "192.0.2.1").token.unwrap();
    Explorer { p, token }
}

impl Explorer {
    fn try_browse(&mut self, schema: &str, table: &str, r: &Req) -> Result<Value, postgres::Error> {
        self.p.browse(&self.token, &r.request(schema, table), None)
    }

    fn browse(&mut self, schema: &str, table: &str, r: &Req) -> Value {
        self.try_browse(schema, table, r).unwrap_or_else(|e| panic!("browse {schema}.{table}: {}", describe(&e)))
    }

    /// Every row of a request, page by page, following next_cursor; the pages' ids.
    fn all_pages(&mut self, schema: &str, table: &str, r: &Req) -> Vec<Vec<i64>> {
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.browse(schema, table, &r.clone().cursor(cursor));
            pages.push(ids(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
            assert!(pages.len() < 1000, "paging does not end");
        }
        pages
    }

    /// An export ticket for schema.table (filter and sort as given).
    fn export_ticket(&mut self, schema: &str, table: &str, filter: Option<Value>, sort: Option<Value>, imp: Option<&str>) -> Result<String, postgres::Error> {
        let r = Req { filter, sort, ..Req::default() };
        self.p.ticket(&self.token, "export", &r.request(schema, table), imp)
    }

    /// A whole export, ticket and all: (header, lines), fetched 1,000 lines at a time.
    fn try_export(&mut self, schema: &str, table: &str, filter: Option<Value>, sort: Option<Value>, imp: Option<&str>) -> Result<(String, Vec<String>), postgres::Error> {
        let ticket = self.export_ticket(schema, table, filter, sort, imp)?;
        export_claimed(&mut self.p.data, &ticket)
    }

    fn export(&mut self, schema: &str, table: &str, filter: Option<Value>, sort: Option<Value>, imp: Option<&str>) -> (String, Vec<String>) {
        self.try_export(schema, table, filter, sort, imp).unwrap_or_else(|e| panic!("export {schema}.{table}: {}", describe(&e)))
    }

    /// Starts impersonating `target` (user mode), committed on its own.
    fn impersonate(&mut self, target: &str) -> String {
        let row = &as_dashboard(
            &mut self.p.web,
            "SELECT ok, code, message, impersonation_id::text FROM auth.start_impersonation($1, 'user', $2, 'ticket 42')",
            &[&self.token, &target],
        )
        .unwrap()[0];
        assert!(row.get::<_, bool>(0), "{}: {}", row.get::<_, String>(1), row.get::<_, String>(2));
        row.get(3)
    }

    /// A page of public.`table` as the impersonated target: its ticket records the intent.
    fn try_browse_as(&mut self, imp: &str, table: &str, r: &Req) -> Result<Value, postgres::Error> {
        self.p.browse(&self.token, &r.request("public", table), Some(imp))
    }
}

/// The SQLSTATE of a failed call.
fn state_of<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> String {
    match result {
        Ok(answer) => panic!("expected an error, got {answer:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")).code().to_string(),
    }
}


fn superuser_ids(db: &TestDb, sql: &str) -> Vec<i64> {
    db.connect(Caller::Superuser).query(sql, &[]).unwrap().iter().map(|r| r.get::<_, i32>(0) as i64).collect()
}

/// A CSV field as read back: None for NULL (an empty, unquoted field), Some for a quoted value.
type Field = Option<String>;

/// A small RFC 4180 reader that tells NULL (empty and unquoted) from an empty string
/// (""), and insists that every non-NULL value is quoted, as the export writes them.
fn parse_csv(text: &str) -> Vec<Vec<Field>> {
    let mut records = Vec::new();
    if text.is_empty() {
        return records;
    }
    let mut record = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let field = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        value.push('"');
                    }
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("an unterminated quoted field in {:?}", &text[..text.len().min(200)]),
                }
            }
            Some(value)
        } else {
            match chars.peek() {
                None | Some(',') | Some('\n') => None,
                Some(c) => panic!("an unquoted value starting with {c:?}: every non-NULL value is quoted"),
            }
        };
        record.push(field);
        match chars.next() {
            Some(',') => continue,
            Some('\n') => {
                records.push(std::mem::take(&mut record));
                if chars.peek().is_none() {
                    break;
                }
            }
            None => {
                records.push(std::mem::take(&mut record));
                break;
            }
            Some(c) => panic!("{c:?} after a field"),
        }
    }
    records
}

/// One exported line, which must be exactly one CSV record.
fn parse_line(line: &str) -> Vec<Field> {
    let mut records = parse_csv(line);
    assert_eq!(records.len(), 1, "one line is one record: {:?}", &line[..line.len().min(200)]);
    records.remove(0)
}

fn q(s: &str) -> Field {
    Some(s.to_string())
}

// ---------------------------------------------------------------------------------
// 1. Filters
// ---------------------------------------------------------------------------------

const ITEMS: &str = r#"
    CREATE TABLE public.items (
        id int PRIMARY KEY, name text, qty int, price numeric(8, 2), born date, flag boolean,
        tags text[], meta jsonb, code varchar(10)
    );
    INSERT INTO public.items VALUES
        (1, 'Apple',     5,    1.50, '2024-01-01', true,  '{red,fruit}',    '{"kind": "fruit", "colors": ["red", "green"]}', 'A-1'),
        (2, 'banana',    NULL, 0.25, '2024-02-10', false, '{yellow,fruit}', '{"kind": "fruit", "colors": ["yellow"]}',      'B_2'),
        (3, 'Cherry',    7,    NULL, '2023-12-31', NULL,  NULL,             NULL,                                           NULL),
        (4, 'date',      0,    3.00, NULL,         true,  '{}',             '{"kind": "nut"}',                              'D%4'),
        (5, NULL,        12,   9.99, '2024-03-05', false, '{green}',        '[]',                                           'E'),
        (6, 'Apple pie', 5,    4.20, '2024-01-01', true,  '{baked}',        '{"kind": "dessert", "colors": ["red"]}',       'a-1');
"#;

fn cond(column: &str, op: &str, value: Value) -> Value {
    json!({"column": column, "op": op, "value": value})
}

#[test]
fn each_filter_operator_returns_exactly_the_matching_rows() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(ITEMS).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let cases: Vec<(Value, Vec<i64>)> = vec![
        (cond("qty", "eq", json!(5)), vec![1, 6]),
        (cond("qty", "eq", json!("5")), vec![1, 6]),
        (cond("qty", "neq", json!(5)), vec![3, 4, 5]),
        (cond("qty", "lt", json!(5)), vec![4]),
        (cond("qty", "lte", json!(5)), vec![1, 4, 6]),
        (cond("qty", "gt", json!(5)), vec![3, 5]),
        (cond("qty", "gte", json!(7)), vec![3, 5]),
        (cond("qty", "in", json!([0, 7, 99])), vec![3, 4]),
        (cond("name", "eq", json!("Apple")), vec![1]),
        (cond("name", "in", json!(["date", "Cherry", "nope"])), vec![3, 4]),
        (cond("name", "like", json!("Apple%")), vec![1, 6]),
        (cond("name", "like", json!("apple%")), vec![]),
        (cond("name", "ilike", json!("apple%")), vec![1, 6]),
        (cond("name", "ilike", json!("%A%")), vec![1, 2, 4, 6]),
        (cond("code", "like", json!("_-1")), vec![1, 6]),
        (cond("code", "ilike", json!("a-%")), vec![1, 6]),
        (json!({"column": "qty", "op": "is_null"}), vec![2]),
        (json!({"column": "price", "op": "not_null"}), vec![1, 2, 4, 5, 6]),
        (json!({"column": "meta", "op": "is_null"}), vec![3]),
        (cond("price", "eq", json!(9.99)), vec![5]),
        (cond("price", "gte", json!("3")), vec![4, 5, 6]),
        (cond("born", "eq", json!("2024-01-01")), vec![1, 6]),
        (cond("born", "gt", json!("2024-01-15")), vec![2, 5]),
        (cond("flag", "eq", json!(true)), vec![1, 4, 6]),
        (cond("flag", "neq", json!(true)), vec![2, 5]),
        (cond("tags", "contains", json!(["fruit"])), vec![1, 2]),
        (cond("tags", "contains", json!(["red", "fruit"])), vec![1]),
        (cond("tags", "contains", json!("{green}")), vec![5]),
        (cond("meta", "contains", json!({"kind": "fruit"})), vec![1, 2]),
        (cond("meta", "contains", json!({"colors": ["red"]})), vec![1, 6]),
        (cond("meta", "eq", json!({"kind": "nut"})), vec![4]),
        // Nesting: (qty = 5 AND flag) OR name IS NULL.
        (
            json!({"or": [{"and": [cond("qty", "eq", json!(5)), cond("flag", "eq", json!(true))]},
                          {"column": "name", "op": "is_null"}]}),
            vec![1, 5, 6],
        ),
        // A top-level array is AND: qty >= 5 AND (born < 2024-01-01 OR price > 5).
        (
            json!([cond("qty", "gte", json!(5)),
                   {"or": [cond("born", "lt", json!("2024-01-01")), cond("price", "gt", json!(5))]}]),
            vec![3, 5],
        ),
        (json!({"and": [cond("name", "ilike", json!("apple%")), {"or": [cond("price", "lt", json!(2))]}]}), vec![1]),
        (json!([]), vec![1, 2, 3, 4, 5, 6]),
    ];
    for (filter, expected) in cases {
        let page = ex.browse("public", "items", &req().filter(filter.clone()));
        assert_eq!(ids(&page), expected, "filter {filter}");
        assert_eq!(page["total"]["count"], expected.len(), "filter {filter}: {}", page["total"]);
    }
}

#[test]
fn a_bad_filter_value_names_its_column_with_a_class_22_sqlstate() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(ITEMS).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let cases = [
        (cond("qty", "eq", json!("five")), "22P02", "qty"),
        (cond("qty", "gt", json!(99999999999i64)), "22003", "qty"),
        (cond("qty", "lte", json!(1.5)), "22P02", "qty"),
        (cond("qty", "in", json!([1, 2, "x"])), "22P02", "qty"),
        (cond("price", "lt", json!("cheap")), "22P02", "price"),
        (cond("price", "eq", json!("1e200000")), "22003", "price"),
        // numeric(8,2): values are cast to the base type, so a value too wide for the
        // column's precision simply matches nothing.
        (cond("price", "eq", json!(123456789)), "", "price"),
        (cond("born", "lt", json!("not a date")), "22007", "born"),
        (cond("born", "gte", json!("2024-13-45")), "22008", "born"),
        (cond("flag", "eq", json!("maybe")), "22P02", "flag"),
        (cond("tags", "contains", json!("red")), "22P02", "tags"),
        (cond("meta", "contains", json!("{bad")), "22P02", "meta"),
        (cond("code", "eq", json!("far too long for varchar")), "", "code"),
        // Inside a group, the bad value is found all the same.
        (json!({"or": [cond("name", "eq", json!("x")), {"and": [cond("born", "eq", json!("yesterday-ish"))]}]}), "22007", "born"),
    ];
    for (filter, code, column) in cases {
        let result = ex.try_browse("public", "items", &req().filter(filter.clone()));
        if code.is_empty() {
            // varchar(10) and numeric(8,2): values are cast to the base type (no type
            // modifier), so a value too long for the column simply matches nothing.
            let page = result.unwrap_or_else(|e| panic!("{filter}: {}", describe(&e)));
            assert_eq!(ids(&page), Vec::<i64>::new());
            continue;
        }
        let (state, message) = match result {
            Ok(page) => panic!("{filter}: expected {code}, got {page}"),
            Err(e) => (e.code().unwrap().code().to_string(), describe(&e)),
        };
        assert_eq!(state, code, "{filter}: {message}");
        assert!(state.starts_with("22"));
        assert!(message.starts_with(&format!("{code} column {column} (")), "{filter}: the error names the column: {message}");
    }
    // The detail gives the value back.
    let err = ex.try_browse("public", "items", &req().filter(cond("qty", "eq", json!("five")))).unwrap_err();
    assert_eq!(err.as_db_error().unwrap().detail(), Some("The value given was 'five'."));
}

#[test]
fn bad_filter_shapes_are_refused_with_22023_and_unknown_tables_with_42p01() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(ITEMS).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let cases = [
        (cond("qty", "like", json!("1%")), "like and ilike work on text columns; \"qty\" is integer"),
        (cond("born", "ilike", json!("2024%")), "like and ilike work on text columns; \"born\" is date"),
        (cond("name", "contains", json!("App")), "contains works on jsonb and array columns"),
        (cond("qty", "between", json!(1)), "unknown filter operator \"between\""),
        (json!({"column": "qty", "op": "eq"}), "needs a value"),
        (json!({"column": "qty", "op": "is_null", "value": 1}), "takes no value"),
        (cond("qty", "in", json!(5)), "\"in\" takes an array"),
        (cond("qty", "in", json!([])), "\"in\" takes an array"),
        (cond("qty", "eq", json!({"a": 1})), "takes a single value"),
        (cond("name", "like", json!(5)), "a like pattern is a string"),
        (json!({"or": []}), "needs at least one condition"),
        (json!("qty = 1"), "a filter is a condition"),
        (json!({"column": "qty", "op": "eq", "value": 1, "sql": "true"}), "unknown key \"sql\""),
    ];
    for (filter, says) in cases {
        let (state, message) = failure(ex.try_browse("public", "items", &req().filter(filter.clone())));
        assert_eq!(state, "22023", "{filter}: {message}");
        assert!(message.contains(says), "{filter}: {message}");
    }
    for r in [
        req().sort(json!([{"column": "qty", "direction": "up"}])),
        req().sort(json!([{"column": "qty"}, {"column": "qty"}])),
        req().sort(json!([{"column": "meta", "nulls": "middle"}])),
        req().size(0),
        req().size(1001),
        req().total("lots"),
        req().cursor(Some("not a cursor".into())),
    ] {
        let (state, message) = failure(ex.try_browse("public", "items", &r));
        assert_eq!(state, "22023", "{message}");
    }
    for (schema, table) in [("public", "nope"), ("public", "ITEMS"), ("auth", "users"), ("dashboard_auth", "sessions"), ("pg_catalog", "pg_authid")] {
        let (state, message) = failure(ex.try_browse(schema, table, &req()));
        assert_eq!(state, "42P01", "{schema}.{table}: {message}");
    }
}

#[test]
fn a_date_filter_value_means_the_same_in_the_check_the_page_and_the_export() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.days (id int PRIMARY KEY, d date, ts timestamp);
             INSERT INTO public.days VALUES (1, '2024-01-02', '2024-01-02 10:00'), (2, '2024-02-01', '2024-02-01 10:00'),
                                            (3, '2005-03-04', '2005-03-04 00:00'), (4, '2003-04-05', '2003-04-05 00:00');",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    // The data login's connection (where values are read) has the server's default
    // DateStyle, which reads 03/04/05 as 2005-03-04 (id 3).
    let style: String = ex.p.data.query_one("SHOW DateStyle", &[]).unwrap().get(0);
    assert_eq!(style, "ISO, MDY");
    let meant: String = ex.p.data.query_one("SELECT '03/04/05'::date::text", &[]).unwrap().get(0);
    assert_eq!(meant, "2005-03-04");

    let filter = cond("d", "eq", json!("03/04/05"));
    let exported: Vec<i64> = ex.export("public", "days", Some(filter.clone()), None, None).1.iter().map(|l| parse_line(l)[0].as_deref().unwrap().parse().unwrap()).collect();
    let page = ex.browse("public", "days", &req().filter(filter));
    // Read one way everywhere (ideally the session's, [3]): the page and the export agree.
    assert_eq!(ids(&page), exported, "the page and the export of one request read 03/04/05 alike");
    assert!(ids(&page) == [3] || ids(&page) == [4]);

    // A value the check accepts does not fail later without naming its column.
    match ex.try_browse("public", "days", &req().filter(cond("d", "eq", json!("01/02/2024")))) {
        Ok(page) => assert_eq!(ids(&page), [1]),
        Err(e) => assert!(
            e.as_db_error().is_some_and(|d| d.message().starts_with("column d (date)")),
            "the error names the column: {}",
            describe(&e)
        ),
    }
}

#[test]
fn plan_browse_binds_every_request_value_as_a_parameter() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(ITEMS).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let hostile = "x'); DROP TABLE public.items; --";
    let filter = json!({"or": [cond("name", "eq", json!(hostile)), cond("code", "ilike", json!(hostile))]});
    let plan: Value = as_dashboard(
        &mut ex.p.web,
        "SELECT fluxbase_admin.plan_browse($1, 'public', 'items', $2, NULL, $3, 10)",
        &[&ex.token, &filter, &hostile],
    )
    .unwrap()[0]
        .get(0);
    let page_sql = plan["page_sql"].as_str().unwrap();
    assert!(!page_sql.contains("DROP TABLE"), "{page_sql}");
    assert!(page_sql.contains("LIMIT 11"), "{page_sql}");
    let params: Vec<&str> = plan["params"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(params[..2], [hostile, hostile]);
    assert_eq!(params[2], "%x'); DROP TABLE public.items; --%");
    // And the page runs: no row matches, the table is still there.
    let page = ex.browse("public", "items", &req().filter(filter).search(hostile));
    assert_eq!(ids(&page), Vec::<i64>::new());
    assert_eq!(ids(&ex.browse("public", "items", &req())).len(), 6);
}

// ---------------------------------------------------------------------------------
// 2. Sorting and paging a sort with NULLs
// ---------------------------------------------------------------------------------

const PEOPLE: &str = r#"
    CREATE TABLE public.people (id int PRIMARY KEY, team text, score int, rank int NOT NULL, name text NOT NULL);
    INSERT INTO public.people VALUES
        (1, 'a', 10, 2, 'kim'), (2, 'b', NULL, 1, 'lee'), (3, NULL, 5, 3, 'ada'), (4, 'a', NULL, 1, 'bo'),
        (5, 'b', 10, 2, 'kip'), (6, 'a', 3, 3, 'cy'), (7, NULL, NULL, 1, 'di'), (8, 'c', 7, 2, 'ed'),
        (9, 'b', 3, 3, 'fay'), (10, 'a', 10, 1, 'gus'), (11, NULL, 5, 2, 'hal'), (12, 'c', NULL, 3, 'ivy');
"#;

#[test]
fn sorting_on_several_columns_puts_nulls_first_or_last_as_asked() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(PEOPLE).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let cases: Vec<(Value, Vec<i64>)> = vec![
        (json!([]), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        (json!([{"column": "id", "direction": "desc"}]), vec![12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        // Postgres's defaults: ascending puts NULLs last, descending first.
        (json!([{"column": "score"}]), vec![6, 9, 3, 11, 8, 1, 5, 10, 2, 4, 7, 12]),
        (json!([{"column": "score", "direction": "desc"}]), vec![2, 4, 7, 12, 1, 5, 10, 8, 3, 11, 6, 9]),
        (json!([{"column": "score", "direction": "asc", "nulls": "first"}]), vec![2, 4, 7, 12, 6, 9, 3, 11, 8, 1, 5, 10]),
        (json!([{"column": "score", "direction": "desc", "nulls": "last"}]), vec![1, 5, 10, 8, 3, 11, 6, 9, 2, 4, 7, 12]),
        (
            json!([{"column": "team", "direction": "asc", "nulls": "first"}, {"column": "score", "direction": "desc", "nulls": "last"}]),
            vec![3, 11, 7, 1, 10, 6, 4, 5, 9, 2, 8, 12],
        ),
        (
            json!([{"column": "score", "direction": "desc", "nulls": "last"}, {"column": "team", "direction": "desc", "nulls": "first"}]),
            vec![5, 1, 10, 8, 3, 11, 9, 6, 7, 12, 2, 4],
        ),
        (
            json!([{"column": "team", "nulls": "last"}, {"column": "rank", "direction": "desc"}, {"column": "id", "direction": "desc"}]),
            vec![6, 1, 10, 4, 9, 5, 2, 12, 8, 3, 11, 7],
        ),
        (json!([{"column": "rank"}, {"column": "name"}]), vec![4, 7, 10, 2, 8, 11, 1, 5, 3, 6, 9, 12]),
        (json!({"column": "rank", "direction": "desc"}), vec![3, 6, 9, 12, 1, 5, 8, 11, 2, 4, 7, 10]),
    ];
    for (sort, expected) in cases {
        let page = ex.browse("public", "people", &req().sort(sort.clone()));
        assert_eq!(ids(&page), expected, "sort {sort}");
        assert!(page["next_cursor"].is_null());
    }
    // The order reported is the sort, completed by the key.
    let page = ex.browse("public", "people", &req().sort(json!([{"column": "score", "direction": "desc"}])));
    assert_eq!(
        page["paging"]["order"],
        json!([{"column": "score", "direction": "desc", "nulls": "first"}, {"column": "id", "direction": "asc", "nulls": "last"}])
    );
}

#[test]
fn paging_a_nullable_sort_yields_every_row_once_in_the_order_of_one_big_page() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(PEOPLE).unwrap();
    // More rows, with plenty of ties and NULLs on both sort columns.
    su.batch_execute(
        "INSERT INTO public.people
         SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE chr(97 + g % 3) END,
                CASE WHEN g % 4 = 0 THEN NULL ELSE g % 6 END, g % 3, 'p' || (g % 7)
           FROM generate_series(13, 60) g",
    )
    .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let mut sorts = Vec::new();
    for team_dir in ["asc", "desc"] {
        for team_nulls in ["first", "last"] {
            for score_dir in ["asc", "desc"] {
                for score_nulls in ["first", "last"] {
                    sorts.push(json!([{"column": "team", "direction": team_dir, "nulls": team_nulls},
                                      {"column": "score", "direction": score_dir, "nulls": score_nulls}]));
                }
            }
        }
    }
    // Key column inside the sort, NOT NULL columns (the row-comparison path) and text.
    sorts.push(json!([{"column": "score", "nulls": "first"}, {"column": "id", "direction": "desc"}]));
    sorts.push(json!([{"column": "rank"}, {"column": "name"}]));
    sorts.push(json!([{"column": "rank", "direction": "desc"}, {"column": "name", "direction": "desc"}, {"column": "id", "direction": "desc"}]));
    sorts.push(json!([{"column": "name", "direction": "desc"}, {"column": "team", "nulls": "first"}]));
    for sort in sorts {
        let one_page = ids(&ex.browse("public", "people", &req().sort(sort.clone()).size(1000)));
        assert_eq!(one_page.len(), 60);
        // The database's own ORDER BY agrees with the one big page.
        let order_by: Vec<String> = sort
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {} NULLS {}", s["column"].as_str().unwrap(), s["direction"].as_str().unwrap_or("asc"),
                             s["nulls"].as_str().unwrap_or(if s["direction"] == "desc" { "first" } else { "last" })))
            .collect();
        let oracle = superuser_ids(&db, &format!("SELECT id FROM public.people ORDER BY {}, id", order_by.join(", ")));
        assert_eq!(one_page, oracle, "sort {sort}");
        for size in [1, 4, 7] {
            let pages = ex.all_pages("public", "people", &req().sort(sort.clone()).size(size));
            assert!(pages.iter().all(|p| p.len() <= size as usize && !p.is_empty()), "sort {sort}, size {size}: {pages:?}");
            assert_eq!(pages.len(), 60usize.div_ceil(size as usize), "sort {sort}, size {size}");
            let paged: Vec<i64> = pages.concat();
            assert_eq!(paged, one_page, "sort {sort}, page size {size}");
        }
    }
}

// ---------------------------------------------------------------------------------
// 3. Search
// ---------------------------------------------------------------------------------

#[test]
fn search_matches_text_columns_case_insensitively_with_literal_wildcards() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            r"CREATE TABLE public.notes (id int PRIMARY KEY, title text, body varchar(100), code char(8), n int, tags text[]);
              INSERT INTO public.notes VALUES
                (1, 'Hello World', 'first', 'AB', 1, '{hello}'),
                (2, 'hello', 'contains 100% sure', NULL, 2, NULL),
                (3, 'other', 'under_score', 'xy', 3, NULL),
                (4, 'x', 'HELLO again', NULL, 4, NULL),
                (5, '100 percent', 'underXscore', 'Zz9', 5, NULL),
                (6, NULL, 'Plain', NULL, 42, '{hello}'),
                (7, 'back\slash', NULL, 'Q_1', 7, NULL),
                (8, 'Ünïcode ÉTÉ', NULL, NULL, 8, NULL);",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("hello", vec![1, 2, 4]),
        ("HELLO", vec![1, 2, 4]),
        ("  world ", vec![1]),
        ("100%", vec![2]),
        ("%", vec![2]),
        ("under_score", vec![3]),
        ("_", vec![3, 7]),
        ("ab", vec![1]),
        ("zz9", vec![5]),
        (r"k\s", vec![7]),
        (r"\", vec![7]),
        ("été", vec![8]),
        ("42", vec![]),
        ("", vec![1, 2, 3, 4, 5, 6, 7, 8]),
    ];
    for (term, expected) in cases {
        let page = ex.browse("public", "notes", &req().search(term));
        assert_eq!(ids(&page), expected, "search {term:?}");
    }
    // With a filter too.
    let page = ex.browse("public", "notes", &req().search("hello").filter(cond("id", "gt", json!(1))));
    assert_eq!(ids(&page), [2, 4]);
    // A table without text columns cannot be searched.
    db.connect(Caller::Superuser).batch_execute("CREATE TABLE public.numbers (id int PRIMARY KEY)").unwrap();
    let (state, message) = failure(ex.try_browse("public", "numbers", &req().search("1")));
    assert_eq!(state, "22023");
    assert!(message.contains("no text columns"), "{message}");
}

// ---------------------------------------------------------------------------------
// 4. Cursors under concurrent inserts
// ---------------------------------------------------------------------------------

#[test]
fn a_cursor_neither_repeats_nor_skips_rows_when_rows_are_inserted_between_pages() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.events (id int PRIMARY KEY, v int);
         INSERT INTO public.events SELECT g, g * 10 FROM generate_series(1, 20) g;
         UPDATE public.events SET v = NULL WHERE id IN (19, 20);",
    )
    .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let sort = json!([{"column": "v", "direction": "asc", "nulls": "last"}]);
    let first = ex.browse("public", "events", &req().sort(sort.clone()).size(5));
    assert_eq!(ids(&first), [1, 2, 3, 4, 5]);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();

    // Another connection inserts rows before the cursor (v 5, 35), tying with it (v 50,
    // a higher id: after it), and after it (v 55, NULL).
    su.batch_execute("INSERT INTO public.events VALUES (101, 5), (102, 35), (103, 50), (104, 55), (105, NULL), (0, 50)").unwrap();

    let second = ex.browse("public", "events", &req().sort(sort.clone()).size(5).cursor(Some(cursor.clone())));
    assert_eq!(ids(&second), [103, 104, 6, 7, 8], "v 50 (id 103, after the cursor's id 5), 55, 60, 70, 80");
    let mut rest = ids(&second);
    let mut next = second["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = next {
        let page = ex.browse("public", "events", &req().sort(sort.clone()).size(5).cursor(Some(c)));
        rest.extend(ids(&page));
        next = page["next_cursor"].as_str().map(str::to_string);
    }
    assert_eq!(rest, [103, 104, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 105]);
    for id in ids(&first) {
        assert!(!rest.contains(&id), "row {id} of page 1 repeats");
    }
    for id in 6..=20 {
        assert_eq!(rest.iter().filter(|&&r| r == id).count(), 1, "pre-existing row {id} read once");
    }
    for id in [101, 102, 0] {
        assert!(!rest.contains(&id), "row {id} sorts before the cursor");
    }
    // The same cursor still reads the same way on another connection, and a cursor is
    // refused for another sort.
    let mut other = Explorer { p: Planes::connect(&db), token: ex.token.clone() };
    assert_eq!(ids(&other.browse("public", "events", &req().sort(sort).size(5).cursor(Some(cursor.clone())))), [103, 104, 6, 7, 8]);
    let (state, message) = failure(other.try_browse("public", "events", &req().size(5).cursor(Some(cursor.clone()))));
    assert_eq!(state, "22023");
    assert!(message.contains("cursor is not valid"), "{message}");

    // A cursor is opaque but not trusted: altered values are bound and checked like any
    // other value, and a wrong number of them is refused.
    let doc: Value = serde_json::from_str(
        &su.query_one(
            "SELECT convert_from(decode(rpad(translate($1, '-_', '+/'), (length($1) + 3) / 4 * 4, '='), 'base64'), 'UTF8')",
            &[&cursor],
        )
        .unwrap()
        .get::<_, String>(0),
    )
    .unwrap();
    assert_eq!(doc["v"], json!(["50", "5"]), "the last row's sort values: v, then the key");
    let encode = |doc: &Value, su: &mut Client| -> String {
        su.query_one(
            "SELECT rtrim(translate(replace(encode(convert_to($1, 'UTF8'), 'base64'), E'\\n', ''), '+/', '-_'), '=')",
            &[&doc.to_string()],
        )
        .unwrap()
        .get(0)
    };
    let mut altered = doc.clone();
    altered["v"] = json!(["50'); DROP TABLE public.events; --", "5"]);
    let (state, message) = failure(ex.try_browse("public", "events", &req().sort(json!([{"column": "v", "direction": "asc", "nulls": "last"}])).size(5).cursor(Some(encode(&altered, &mut su)))));
    assert_eq!(state, "22P02", "{message}");
    assert!(message.starts_with("column v (integer)"), "{message}");
    altered["v"] = json!(["50"]);
    let (state, _) = failure(ex.try_browse("public", "events", &req().sort(json!([{"column": "v", "direction": "asc", "nulls": "last"}])).size(5).cursor(Some(encode(&altered, &mut su)))));
    assert_eq!(state, "22023");
    altered["v"] = json!([null, "7"]);
    let from_null = ex.browse("public", "events", &req().sort(json!([{"column": "v", "direction": "asc", "nulls": "last"}])).size(5).cursor(Some(encode(&altered, &mut su))));
    assert_eq!(ids(&from_null), [19, 20, 105], "after a NULL (nulls last): only the NULLs with a higher id");
    let events: i64 = su.query_one("SELECT count(*) FROM public.events", &[]).unwrap().get(0);
    assert_eq!(events, 26);
}

#[test]
fn a_cursor_made_on_one_connection_reads_back_on_another_with_other_settings() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.typed (id int PRIMARY KEY, ts timestamptz, f float8, n numeric, u uuid, b bytea, iv interval, d date, j jsonb, tags text[]);
             INSERT INTO public.typed
             SELECT g,
                    CASE WHEN g % 5 = 0 THEN NULL ELSE timestamptz '2024-03-10 01:59:59.123456+00' + (g % 7) * interval '37 minutes 0.5 seconds' END,
                    CASE WHEN g % 6 = 0 THEN NULL ELSE (g % 4) / 3.0::float8 + 0.1 END,
                    CASE WHEN g % 4 = 0 THEN NULL ELSE (g % 5) * 1.10 END,
                    CASE WHEN g % 7 = 0 THEN NULL ELSE md5((g % 3)::text)::uuid END,
                    CASE WHEN g % 3 = 0 THEN NULL ELSE decode(lpad(to_hex(g % 4), 4, '0'), 'hex') END,
                    CASE WHEN g % 5 = 1 THEN NULL ELSE (g % 6) * interval '-1 day +2 hours 3 minutes' END,
                    CASE WHEN g % 8 = 0 THEN NULL ELSE date '1999-12-30' + g % 5 END,
                    CASE WHEN g % 9 = 0 THEN NULL ELSE jsonb_build_object('k', g % 3) END,
                    CASE WHEN g % 10 = 0 THEN NULL ELSE ARRAY['t' || (g % 2), 'x'] END
               FROM generate_series(1, 40) g;",
        )
        .unwrap();
    let mut a = sign_in(&db, "ann@example.com", "admin");
    let mut b = Explorer { p: Planes::connect(&db), token: a.token.clone() };
    // Both of b's logins; the data login's settings are the ones the pages are read with.
    let settings = "SET TimeZone = 'Pacific/Chatham'; SET DateStyle = 'SQL, DMY'; SET extra_float_digits = -2; SET IntervalStyle = 'sql_standard'; SET bytea_output = 'escape'";
    b.p.web.batch_execute(settings).unwrap();
    b.p.data.batch_execute(settings).unwrap();
    for column in ["ts", "f", "n", "u", "b", "iv", "d", "j", "tags"] {
        for (direction, nulls) in [("asc", "last"), ("desc", "last"), ("asc", "first")] {
            let sort = json!([{"column": column, "direction": direction, "nulls": nulls}]);
            let whole = ids(&a.browse("public", "typed", &req().sort(sort.clone()).size(1000)));
            let mut paged = Vec::new();
            let mut cursor = None;
            for turn in 0.. {
                let explorer = if turn % 2 == 0 { &mut a } else { &mut b };
                let page = explorer
                    .try_browse("public", "typed", &req().sort(sort.clone()).size(3).cursor(cursor))
                    .unwrap_or_else(|e| panic!("sort {sort}, page {turn}: {}", describe(&e)));
                paged.extend(ids(&page));
                cursor = page["next_cursor"].as_str().map(String::from);
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(paged, whole, "sort {sort}: pages alternating between the two connections");
        }
    }
}

#[test]
fn offset_paging_of_a_table_without_a_key_shows_every_row_once_when_the_sort_has_ties() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.heap_ties (id int, grp int);
             INSERT INTO public.heap_ties SELECT g, g % 3 FROM generate_series(1, 300) g;
             ANALYZE public.heap_ties;",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let sort = json!([{"column": "grp"}]);
    let first = ex.browse("public", "heap_ties", &req().sort(sort.clone()).size(7));
    assert_eq!(first["paging"]["method"], "offset");
    let pages = ex.all_pages("public", "heap_ties", &req().sort(sort).size(7));
    let mut seen: Vec<i64> = pages.concat();
    assert_eq!(seen.len(), 300);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 300, "every row once");
}

// ---------------------------------------------------------------------------------
// 5. Counts
// ---------------------------------------------------------------------------------

#[test]
fn exact_counts_stop_at_100000_and_small_tables_count_exactly() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.big (id int PRIMARY KEY, v int);
             INSERT INTO public.big SELECT g, g % 10 FROM generate_series(1, 100050) g;
             CREATE TABLE public.small (id int PRIMARY KEY);
             INSERT INTO public.small SELECT generate_series(1, 30);
             ANALYZE public.big, public.small;",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");

    let page = ex.browse("public", "big", &req().size(10).total("exact"));
    assert_eq!(ids(&page), (1..=10).collect::<Vec<_>>());
    let total = &page["total"];
    assert_eq!(total["kind"], "at_least", "{total}");
    assert_eq!(total["count"], 100_000, "{total}");
    assert_eq!(total["text"], "more than 100,000 rows", "{total}");
    let estimate = total["estimate"].as_i64().unwrap_or_else(|| panic!("an estimate with the capped count: {total}"));
    assert!((90_000..=110_000).contains(&estimate), "{total}");

    // Under the cap, exact is exact, also with a filter and on a later page.
    let filtered = ex.browse("public", "big", &req().size(10).total("exact").filter(cond("id", "lte", json!(12345))));
    assert_eq!(filtered["total"], json!({"kind": "exact", "count": 12345, "text": "12,345 rows"}));
    let later = ex.browse("public", "big", &req().size(10).total("exact").filter(cond("v", "eq", json!(3))).cursor(None));
    assert_eq!(later["total"], json!({"kind": "exact", "count": 10005, "text": "10,005 rows"}));
    let page2 = ex.browse("public", "big", &req().size(10).total("exact").filter(cond("v", "eq", json!(3))).cursor(later["next_cursor"].as_str().map(String::from)));
    assert_eq!(page2["total"]["count"], 10005);
    assert_eq!(ids(&page2)[0], 103);

    let estimated = ex.browse("public", "big", &req().size(10).total("estimate"));
    assert_eq!(estimated["total"]["kind"], "estimate", "{}", estimated["total"]);
    let count = estimated["total"]["count"].as_i64().unwrap();
    assert!((90_000..=110_000).contains(&count), "{}", estimated["total"]);
    assert!(estimated["total"]["text"].as_str().unwrap().starts_with("about "), "{}", estimated["total"]);
    let estimated = ex.browse("public", "big", &req().size(10).total("estimate").filter(cond("v", "eq", json!(3))));
    let count = estimated["total"]["count"].as_i64().unwrap();
    assert!((5_000..=20_000).contains(&count), "the filter is estimated too: {}", estimated["total"]);
    // auto: a big table is estimated, a small one counted.
    assert_eq!(ex.browse("public", "big", &req().size(10))["total"]["kind"], "estimate");
    assert_eq!(ex.browse("public", "small", &req().size(10))["total"], json!({"kind": "exact", "count": 30, "text": "30 rows"}));
    assert_eq!(ex.browse("public", "small", &req().size(10).total("exact"))["total"], json!({"kind": "exact", "count": 30, "text": "30 rows"}));
    // The first page holding every row is exact whatever was asked, even on the big table.
    assert_eq!(ex.browse("public", "small", &req().total("estimate"))["total"], json!({"kind": "exact", "count": 30, "text": "30 rows"}));
    let one = ex.browse("public", "big", &req().total("estimate").filter(cond("id", "eq", json!(7))));
    assert_eq!(one["total"], json!({"kind": "exact", "count": 1, "text": "1 row"}));
    assert!(ex.browse("public", "small", &req().size(10).total("none"))["total"].is_null());
}

// A table never analysed has no planner figure (reltuples = -1); auto counts it rather
// than showing the planner's guess (about 1,270 rows for these 60).
#[test]
fn auto_counts_a_small_table_exactly_before_it_is_first_analysed() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.fresh (id int PRIMARY KEY, s text) WITH (autovacuum_enabled = false);
             INSERT INTO public.fresh SELECT g, 'x' FROM generate_series(1, 60) g;",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let reltuples: f32 = db.connect(Caller::Superuser).query_one("SELECT reltuples FROM pg_class WHERE relname = 'fresh'", &[]).unwrap().get(0);
    assert_eq!(reltuples, -1.0, "never analysed");
    let page = ex.browse("public", "fresh", &req());
    assert_eq!(ids(&page).len(), 50);
    assert_eq!(page["total"], json!({"kind": "exact", "count": 60, "text": "60 rows"}));
}

// ---------------------------------------------------------------------------------
// 6. Previews of large values
// ---------------------------------------------------------------------------------

#[test]
fn large_values_come_as_previews_with_their_full_length() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.blobs (id int PRIMARY KEY, t text, j jsonb, b bytea, a text[], n int);
         INSERT INTO public.blobs VALUES
           (1, repeat('x', 10000),
               (SELECT jsonb_object_agg('key' || g, repeat('v', 50)) FROM generate_series(1, 100) g),
               decode(repeat('ab', 5000), 'hex'), (SELECT array_agg(repeat('e', 100)) FROM generate_series(1, 30)), 1),
           (2, 'short', '{\"small\": true}', '\\x0102', '{a,b}', 2),
           (3, repeat('é', 1500), NULL, decode(repeat('cd', 2000), 'hex'), NULL, 3),
           (4, repeat('é', 2500), ('\"' || repeat('s', 2100) || '\"')::jsonb, decode(repeat('ef', 2001), 'hex'), NULL, 4);",
    )
    .unwrap();
    let json_text: String = su.query_one("SELECT j::text FROM public.blobs WHERE id = 1", &[]).unwrap().get(0);
    let array_text: String = su.query_one("SELECT a::text FROM public.blobs WHERE id = 1", &[]).unwrap().get(0);
    assert!(json_text.chars().count() > 2000 && array_text.len() > 2000);
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let page = ex.browse("public", "blobs", &req());
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);

    let big = &rows[0];
    assert_eq!(big["values"]["t"], "x".repeat(2000));
    assert_eq!(big["values"]["j"], json_text.chars().take(2000).collect::<String>(), "jsonb comes as a preview of its text");
    assert_eq!(big["values"]["b"], format!("\\x{}", "ab".repeat(2000)));
    assert_eq!(big["values"]["a"], array_text.chars().take(2000).collect::<String>());
    assert_eq!(big["values"]["n"], 1);
    assert_eq!(
        big["truncated"],
        json!({"t": 10000, "j": json_text.chars().count(), "b": 5000, "a": array_text.chars().count()})
    );

    assert_eq!(rows[1]["values"], json!({"id": 2, "t": "short", "j": {"small": true}, "b": "\\x0102", "a": ["a", "b"], "n": 2}));
    assert_eq!(rows[1]["truncated"], json!({}));
    // Characters, not bytes: 1,500 two-byte characters are whole; 2,000 bytes of bytea too.
    assert_eq!(rows[2]["values"]["t"], "é".repeat(1500));
    assert_eq!(rows[2]["values"]["b"], format!("\\x{}", "cd".repeat(2000)));
    assert_eq!(rows[2]["truncated"], json!({}));
    assert_eq!(rows[3]["values"]["t"], "é".repeat(2000));
    assert_eq!(rows[3]["values"]["j"], format!("\"{}", "s".repeat(1999)));
    assert_eq!(rows[3]["values"]["b"], format!("\\x{}", "ef".repeat(2000)));
    assert_eq!(rows[3]["truncated"], json!({"t": 2500, "j": 2102, "b": 2001}));
}

// ---------------------------------------------------------------------------------
// 7. Following foreign keys
// ---------------------------------------------------------------------------------

const SHOP: &str = r#"
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text NOT NULL);
    CREATE TABLE shop.addresses (customer_id bigint REFERENCES shop.customers, label text, city text,
                                 PRIMARY KEY (customer_id, label));
    CREATE TABLE shop.orders (
        id bigint PRIMARY KEY,
        customer_id bigint CONSTRAINT orders_customer_fk REFERENCES shop.customers (id),
        ship_customer bigint, ship_label text,
        user_id uuid CONSTRAINT orders_user_fk REFERENCES auth.users (id),
        CONSTRAINT orders_ship_fk FOREIGN KEY (ship_customer, ship_label) REFERENCES shop.addresses
    );
    INSERT INTO shop.customers VALUES (1, 'one@example.com'), (2, 'two@example.com'), (3, 'three@example.com');
    INSERT INTO shop.addresses VALUES (2, 'home', 'Oslo'), (2, 'work', 'Bergen'), (3, 'home', 'Turku');
    INSERT INTO shop.orders VALUES (10, 2, 2, 'work', NULL), (11, NULL, NULL, NULL, NULL);
"#;

fn follow(ex: &mut Explorer, fk: &str, row: &Value) -> Result<Value, postgres::Error> {
    ex.p.follow(&ex.token, &json!({"schema": "shop", "table": "orders", "foreign_key": fk, "row": row}), None)
}

/// The row of shop.orders with `id`, as a page gives it.
fn order_row(ex: &mut Explorer, id: i64) -> Value {
    ex.browse("shop", "orders", &req().filter(cond("id", "eq", json!(id))))["rows"][0]["values"].clone()
}

#[test]
fn following_a_foreign_key_returns_the_referenced_row() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(SHOP).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let order = order_row(&mut ex, 10);
    let customer = follow(&mut ex, "orders_customer_fk", &order).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!((customer["schema"].clone(), customer["name"].clone()), (json!("shop"), json!("customers")));
    assert_eq!(customer["rows"], json!([{"values": {"id": 2, "email": "two@example.com"}, "truncated": {}}]));
    assert_eq!(customer["followed"], json!({"schema": "shop", "table": "orders", "foreign_key": "orders_customer_fk"}));
    assert!(customer["next_cursor"].is_null());
    // Two columns.
    let address = follow(&mut ex, "orders_ship_fk", &order).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(address["name"], "addresses");
    assert_eq!(address["rows"], json!([{"values": {"customer_id": 2, "label": "work", "city": "Bergen"}, "truncated": {}}]));
}

#[test]
fn following_a_null_foreign_key_or_one_into_a_hidden_schema_is_refused() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(SHOP).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    // A NULL key refers to nothing.
    let null_order = order_row(&mut ex, 11);
    let (state, message) = failure(follow(&mut ex, "orders_customer_fk", &null_order));
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains("customer_id"), "{message}");
    assert_eq!(failure(follow(&mut ex, "orders_customer_fk", &json!({"id": 10}))).0, "22023", "a missing key is NULL");
    assert_eq!(failure(follow(&mut ex, "orders_ship_fk", &json!({"ship_customer": 2, "ship_label": null}))).0, "22023");
    // A value that does not fit names the referenced column.
    let (state, message) = failure(follow(&mut ex, "orders_customer_fk", &json!({"customer_id": "two"})));
    assert_eq!(state, "22P02", "{message}");
    assert!(message.starts_with("column id (bigint)"), "{message}");
    // A key into a schema the explorer does not show.
    let user_id: String = db
        .connect(Caller::Superuser)
        .query_one("INSERT INTO auth.users (email, confirmed_at) VALUES ('joe@example.com', now()) RETURNING id::text", &[])
        .unwrap()
        .get(0);
    let (state, message) = failure(follow(&mut ex, "orders_user_fk", &json!({"id": 10, "user_id": user_id})));
    assert_eq!(state, "42P01", "{message}");
    assert!(message.contains("auth"), "{message}");
}

#[test]
fn following_an_unknown_foreign_key_is_refused() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(SHOP).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let order = order_row(&mut ex, 10);
    // Unknown names, another table's key, a constraint that is not a foreign key.
    for fk in ["nope", "addresses_customer_id_fkey", "orders_pkey", "ORDERS_CUSTOMER_FK", ""] {
        let (state, message) = failure(follow(&mut ex, fk, &order));
        assert_eq!(state, "42704", "{fk}: {message}");
        assert!(message.contains("has no foreign key"), "{message}");
    }
    // And a table the explorer does not show has no keys to follow.
    let (state, _) = failure(ex.p.follow(
        &ex.token,
        &json!({"schema": "auth", "table": "users", "foreign_key": "users_pkey", "row": {}}),
        None,
    ));
    assert_eq!(state, "42P01");
}

// ---------------------------------------------------------------------------------
// 8. The paging report
// ---------------------------------------------------------------------------------

#[test]
fn keyset_paging_names_the_index_that_matches_the_sort_or_says_none_does() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.logs (id int PRIMARY KEY, at int, kind text, msg text);
             CREATE INDEX logs_at ON public.logs (at, id);
             CREATE INDEX logs_kind_at ON public.logs (kind, at DESC NULLS LAST, id DESC);
             INSERT INTO public.logs SELECT g, g % 7, CASE WHEN g % 2 = 0 THEN 'x' ELSE 'y' END, 'm' || g FROM generate_series(1, 40) g;",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let paging = |ex: &mut Explorer, r: Req| ex.browse("public", "logs", &r.size(5))["paging"].clone();

    let p = paging(&mut ex, req());
    assert_eq!((p["method"].clone(), p["index"].clone(), p["note"].clone()), (json!("keyset"), json!("logs_pkey"), Value::Null));
    assert_eq!(p["key"], json!(["id"]));
    assert_eq!(p["key_source"], "primary key logs_pkey");
    assert_eq!(paging(&mut ex, req().sort(json!([{"column": "id", "direction": "desc"}])))["index"], "logs_pkey", "read backwards");
    let p = paging(&mut ex, req().sort(json!([{"column": "at"}])));
    assert_eq!((p["index"].clone(), p["note"].clone()), (json!("logs_at"), Value::Null));
    assert_eq!(paging(&mut ex, req().sort(json!([{"column": "at", "direction": "desc"}, {"column": "id", "direction": "desc"}])))["index"], "logs_at");
    // Pinned by the filter: kind = 'x', then at desc nulls last, id desc (or all reversed).
    let pinned = req().filter(cond("kind", "eq", json!("x")));
    let p = paging(&mut ex, pinned.clone().sort(json!([{"column": "at", "direction": "desc", "nulls": "last"}, {"column": "id", "direction": "desc"}])));
    assert_eq!(p["index"], "logs_kind_at", "{p}");
    assert_eq!(paging(&mut ex, pinned.clone().sort(json!([{"column": "at", "nulls": "first"}])))["index"], "logs_kind_at");

    for sort in [
        json!([{"column": "msg"}]),
        json!([{"column": "at", "nulls": "first"}]),
        json!([{"column": "at", "direction": "desc"}]),
        json!([{"column": "at", "direction": "desc", "nulls": "last"}, {"column": "id", "direction": "desc"}]),
    ] {
        let p = paging(&mut ex, req().sort(sort.clone()));
        assert_eq!(p["method"], "keyset", "{sort}");
        assert!(p["index"].is_null(), "{sort}: {p}");
        assert!(p["note"].as_str().unwrap_or("").starts_with("no index matches this sort"), "{sort}: {p}");
    }
}

#[test]
fn tables_without_a_key_and_views_page_by_offset_with_a_note() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.loose (id int, label text);
             INSERT INTO public.loose SELECT g, 'l' || g FROM generate_series(1, 11) g;
             CREATE VIEW public.loose_view AS SELECT id, label FROM public.loose WHERE id > 2;
             CREATE TABLE public.coded (id int, code text NOT NULL UNIQUE, maybe text UNIQUE);
             INSERT INTO public.coded VALUES (1, 'c', 'z'), (2, 'a', NULL), (3, 'b', 'y');",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");

    let sort = json!([{"column": "id", "direction": "desc"}]);
    let page = ex.browse("public", "loose", &req().sort(sort.clone()).size(4));
    let p = &page["paging"];
    assert_eq!(p["method"], "offset");
    assert!(p["key"].is_null() && p["index"].is_null(), "{p}");
    assert!(p["note"].as_str().unwrap().contains("\"public\".\"loose\" has no primary key or unique NOT NULL key"), "{p}");
    let pages = ex.all_pages("public", "loose", &req().sort(sort.clone()).size(4));
    assert_eq!(pages, [vec![11, 10, 9, 8], vec![7, 6, 5, 4], vec![3, 2, 1]]);

    let view = ex.browse("public", "loose_view", &req().sort(json!([{"column": "id"}])).size(4));
    assert_eq!(view["kind"], "view");
    assert_eq!(view["paging"]["method"], "offset");
    assert!(view["paging"]["key"].is_null());
    assert!(view["paging"]["note"].as_str().unwrap().contains("has no primary key or unique NOT NULL key"), "{}", view["paging"]);
    assert_eq!(ex.all_pages("public", "loose_view", &req().sort(json!([{"column": "id"}])).size(4)), [vec![3, 4, 5, 6], vec![7, 8, 9, 10], vec![11]]);
    // A view's count: its first page of all rows is exact; later, counted on request.
    assert_eq!(view["total"]["kind"], "estimate", "{}", view["total"]);
    assert_eq!(ex.browse("public", "loose_view", &req().size(4).total("exact"))["total"]["count"], 9);

    // A unique index on a NOT NULL column is a key (a nullable one is not).
    let coded = ex.browse("public", "coded", &req().size(2));
    assert_eq!(coded["paging"]["method"], "keyset");
    assert_eq!(coded["paging"]["key"], json!(["code"]));
    assert_eq!(coded["paging"]["key_source"], "unique index coded_code_key");
    assert_eq!(coded["paging"]["index"], "coded_code_key");
    assert_eq!(ex.all_pages("public", "coded", &req().size(2)), [vec![2, 3], vec![1]]);
}

#[test]
fn hostile_table_and_column_names_are_browsed_filtered_sorted_and_exported_as_data() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            r#"CREATE TABLE public."Weird ""Name""; DROP TABLE public.keep; --" ("select" int PRIMARY KEY, "MixedCase" text, "a,""b" text);
               CREATE TABLE public.keep (id int);
               INSERT INTO public."Weird ""Name""; DROP TABLE public.keep; --" VALUES (1, 'One', 'x'), (2, 'two', NULL), (3, 'Three', 'y');"#,
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let table = "Weird \"Name\"; DROP TABLE public.keep; --";
    let page = ex.browse(
        "public",
        table,
        &req().filter(json!({"or": [cond("MixedCase", "ilike", json!("t%")), cond("a,\"b", "eq", json!("x"))]}))
            .sort(json!([{"column": "select", "direction": "desc"}]))
            .search("o"),
    );
    assert_eq!(page["name"], table);
    let selected: Vec<i64> = page["rows"].as_array().unwrap().iter().map(|r| r["values"]["select"].as_i64().unwrap()).collect();
    assert_eq!(selected, [2, 1]);
    assert_eq!(page["rows"][1]["values"]["a,\"b"], "x");
    assert_eq!(page["paging"]["key"], json!(["select"]));
    let (state, message) = failure(ex.try_browse("public", table, &req().filter(cond("select", "eq", json!("x")))));
    assert_eq!(state, "22P02");
    assert!(message.starts_with("column \"select\" (integer)"), "{message}");
    let (header, lines) = ex.export("public", table, None, None, None);
    assert_eq!(parse_line(&header), [q("select"), q("MixedCase"), q("a,\"b")]);
    assert_eq!(parse_line(&lines[1]), [q("2"), q("two"), None]);
    let kept: i64 = db.connect(Caller::Superuser).query_one("SELECT count(*) FROM pg_class WHERE relname = 'keep'", &[]).unwrap().get(0);
    assert_eq!(kept, 1);
}

#[test]
fn partitioned_tables_materialized_views_and_uncomparable_columns_browse() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.measures (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
             CREATE TABLE public.measures_n PARTITION OF public.measures FOR VALUES IN ('n');
             CREATE TABLE public.measures_s PARTITION OF public.measures FOR VALUES IN ('s');
             INSERT INTO public.measures SELECT g, CASE WHEN g % 2 = 0 THEN 'n' ELSE 's' END, g % 4 FROM generate_series(1, 30) g;
             INSERT INTO public.measures VALUES (1, 'n', NULL);
             ANALYZE public.measures;
             CREATE MATERIALIZED VIEW public.measure_totals AS SELECT region, sum(v) AS total FROM public.measures GROUP BY region;
             CREATE UNIQUE INDEX ON public.measure_totals (region);
             CREATE TABLE public.odd (id int PRIMARY KEY, gone text, j json, p point, x xml, t text);
             ALTER TABLE public.odd DROP COLUMN gone;
             INSERT INTO public.odd VALUES (1, (SELECT json_agg(g) FROM generate_series(1, 1000) g), '(1,2)', '<a>b</a>', 'one'),
                                           (2, '{\"k\": 1}', NULL, NULL, 'two');",
        )
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");

    let page = ex.browse("public", "measures", &req().size(4));
    assert_eq!(page["kind"], "partitioned_table");
    assert_eq!(page["paging"]["method"], "keyset");
    assert_eq!(page["paging"]["key"], json!(["id", "region"]));
    assert_eq!(page["paging"]["index"], "measures_pkey");
    assert_eq!(page["total"], json!({"kind": "exact", "count": 31, "text": "31 rows"}), "counted: the partitions hold 31 rows");
    let sort = json!([{"column": "v", "direction": "desc", "nulls": "last"}]);
    let whole = ids(&ex.browse("public", "measures", &req().sort(sort.clone()).size(100)));
    assert_eq!(whole.len(), 31);
    assert_eq!(ex.all_pages("public", "measures", &req().sort(sort).size(4)).concat(), whole);
    // Partitions are browsed through their parent.
    assert_eq!(failure(ex.try_browse("public", "measures_n", &req())).0, "42P01");

    let totals = ex.browse("public", "measure_totals", &req().sort(json!([{"column": "region"}])));
    assert_eq!(totals["kind"], "materialized_view");
    assert_eq!(totals["rows"].as_array().unwrap().iter().map(|r| r["values"]["region"].clone()).collect::<Vec<_>>(), [json!("n"), json!("s")]);

    let odd = ex.browse("public", "odd", &req());
    let names: Vec<&str> = odd["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "j", "p", "x", "t"], "no dropped column");
    assert_eq!(odd["rows"][0]["values"]["p"], "(1,2)");
    assert_eq!(odd["rows"][0]["values"]["x"], "<a>b</a>");
    assert!(odd["rows"][0]["truncated"]["j"].as_i64().unwrap() > 2000, "{}", odd["rows"][0]["truncated"]);
    assert_eq!(odd["rows"][1]["values"]["j"], json!({"k": 1}));
    for r in [
        req().filter(cond("j", "eq", json!({"k": 1}))),
        req().filter(cond("j", "contains", json!({"k": 1}))),
        req().filter(cond("p", "lt", json!("(0,0)"))),
        req().sort(json!([{"column": "p"}])),
        req().sort(json!([{"column": "j"}])),
    ] {
        let (state, message) = failure(ex.try_browse("public", "odd", &r));
        assert_eq!(state, "22023", "{message}");
    }
    assert_eq!(ids(&ex.browse("public", "odd", &req().filter(json!({"column": "p", "op": "is_null"})))), [2]);
    assert_eq!(ids(&ex.browse("public", "odd", &req().search("TWO"))), [2]);
}

// ---------------------------------------------------------------------------------
// 9. CSV export
// ---------------------------------------------------------------------------------

#[test]
fn a_200_mb_export_streams_in_flat_memory_and_reads_back_as_csv() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.wide (id int PRIMARY KEY, body text, note text);
         INSERT INTO public.wide SELECT g, left(repeat(md5(g::text), 63), 2000), 'n' || g FROM generate_series(1, 100000) g;
         UPDATE public.wide SET body = E'say \"hi\", then\\nbye, \"\"twice\"\"' WHERE id = 1;
         UPDATE public.wide SET note = NULL WHERE id = 2;
         UPDATE public.wide SET note = '' WHERE id = 3;
         -- The explorer's role (which an export's transaction stays in) cannot read
         -- pg_backend_memory_contexts; this reads it for the backend that calls it.
         CREATE FUNCTION public.backend_memory_bytes() RETURNS bigint LANGUAGE sql SECURITY DEFINER
             SET search_path = pg_catalog AS $$ SELECT sum(total_bytes)::bigint FROM pg_catalog.pg_backend_memory_contexts $$;
         REVOKE EXECUTE ON FUNCTION public.backend_memory_bytes() FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION public.backend_memory_bytes() TO fluxbase_explorer;",
    )
    .unwrap();
    su.batch_execute("VACUUM ANALYZE public.wide").unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let ticket = ex.export_ticket("public", "wide", None, None, None).unwrap();

    let mut tx = ex.p.data.transaction().unwrap();
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
    let opened = tx.query_one("SELECT portal::text, header FROM fluxbase_admin.open_export()", &[]).unwrap();
    assert_eq!(opened.get::<_, String>(0), "fluxbase_export");
    let header: String = opened.get(1);
    assert_eq!(parse_line(&header), [q("id"), q("body"), q("note")]);
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut fetches = 0;
    let mut peak = 0i64;
    let mut previous_id = 0i64;
    let mut specials = Vec::new();
    loop {
        let batch = tx.query("FETCH 1000 FROM fluxbase_export", &[]).unwrap();
        if batch.is_empty() {
            break;
        }
        fetches += 1;
        for row in &batch {
            let line: String = row.get(0);
            bytes += line.len() + 1;
            count += 1;
            let fields = parse_line(&line);
            assert_eq!(fields.len(), 3, "line {count}");
            let id: i64 = fields[0].as_deref().unwrap().parse().unwrap();
            assert_eq!(id, previous_id + 1, "in key order, none missing");
            previous_id = id;
            if id <= 3 || id == 77_777 {
                specials.push(fields);
            }
        }
        if fetches % 25 == 0 {
            let used: i64 = tx.query_one("SELECT public.backend_memory_bytes()", &[]).unwrap().get(0);
            peak = peak.max(used);
            assert!(used < 64 * 1024 * 1024, "backend memory after {count} lines: {used} bytes");
        }
    }
    tx.commit().unwrap();
    assert_eq!(fetches, 100);
    assert!(peak > 0);
    eprintln!("exported {count} lines, {bytes} bytes; backend memory peaked at {peak} bytes");
    assert_eq!(count, 100_000);
    assert!(bytes > 200_000_000, "{bytes} bytes exported");

    assert_eq!(specials[0], [q("1"), q("say \"hi\", then\nbye, \"\"twice\"\""), q("n1")]);
    assert_eq!(specials[1][2], None, "NULL is an empty field");
    assert_eq!(specials[2][2], q(""), "an empty string is \"\"");
    let md5: String = su.query_one("SELECT left(repeat(md5('77777'), 63), 2000)", &[]).unwrap().get(0);
    assert_eq!(specials[3], [q("77777"), Some(md5), q("n77777")]);

    // Audited once, when its ticket was issued; the ticket opens it once.
    let exports: Vec<String> = strings(&mut su, "SELECT target_id FROM dashboard_auth.audit_log WHERE action = 'explorer.export'", &[]);
    assert_eq!(exports, ["public.wide"]);
    let err = export_claimed(&mut ex.p.data, &ticket).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000", "{}", describe(&err));
    assert!(err.as_db_error().unwrap().message().contains("unknown, spent or expired"), "{}", describe(&err));
}

#[test]
fn an_export_follows_its_filter_and_sort_and_reads_back_as_one_csv_document() {
    let db = TestDb::new();
    db.connect(Caller::Superuser).batch_execute(ITEMS).unwrap();
    db.connect(Caller::Superuser)
        .batch_execute(r#"UPDATE public.items SET name = E'multi\nline, "quoted"' WHERE id = 4; UPDATE public.items SET code = '' WHERE id = 5"#)
        .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let ticket = ex
        .export_ticket(
            "public",
            "items",
            Some(json!({"or": [cond("qty", "gte", json!(5)), cond("name", "ilike", json!("%line%"))]})),
            Some(json!([{"column": "qty", "direction": "desc", "nulls": "last"}])),
            None,
        )
        .unwrap();
    let (header, lines) = export_claimed(&mut ex.p.data, &ticket).unwrap();
    assert_eq!(lines.len(), 5);
    let document = format!("{header}\n{}\n", lines.join("\n"));
    let records = parse_csv(&document);
    assert_eq!(records.len(), 6, "a header and five rows, newlines inside values notwithstanding");
    assert_eq!(
        records[0],
        ["id", "name", "qty", "price", "born", "flag", "tags", "meta", "code"].map(q).to_vec()
    );
    let column = |i: usize| records[1..].iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    assert_eq!(column(0), ["5", "3", "1", "6", "4"].map(q).to_vec(), "qty desc nulls last, then id");
    assert_eq!(records[5][1], q("multi\nline, \"quoted\""));
    assert_eq!(records[1][1], None, "NULL name");
    assert_eq!(records[1][8], q(""), "empty code");
    assert_eq!(records[2][3], None, "NULL price");
    assert_eq!(records[3][6], q("{red,fruit}"));
    assert_eq!(records[3][3], q("1.50"));
    // Another opener refuses it (its transaction rolls back, claim and all), and it does
    // not open twice.
    let ticket2 = ex.export_ticket("public", "items", None, None, None).unwrap();
    let err = claimed(&mut ex.p.data, &ticket2, "SELECT fluxbase_admin.browse()::text", &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "55000", "{}", describe(&err));
    assert_eq!(export_claimed(&mut ex.p.data, &ticket2).unwrap().1.len(), 6, "the refused opener did not use it up");
    assert_eq!(state_of(export_claimed(&mut ex.p.data, &ticket)), "28000", "spent");
    // A ticket of a session that signed out since is refused.
    let mut other = sign_in(&db, "bob@example.com", "admin");
    let ticket3 = other.export_ticket("public", "items", None, None, None).unwrap();
    as_dashboard(&mut other.p.web, "SELECT dashboard_auth.sign_out($1)", &[&other.token]).unwrap();
    let err = export_claimed(&mut other.p.data, &ticket3).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000", "{}", describe(&err));
    assert!(err.as_db_error().unwrap().message().contains("session"), "{}", describe(&err));
    // A bad value is refused when the export opens (the ticket recorded its intent); an
    // unknown table is refused by the ticket, and nothing is recorded.
    let (state, message) = failure(
        ex.try_export("public", "items", Some(cond("qty", "eq", json!("five"))), None, None).map(|(header, _)| header),
    );
    assert_eq!(state, "22P02", "{message}");
    assert!(message.starts_with("column qty (integer)"), "{message}");
    assert_eq!(state_of(ex.export_ticket("public", "nope", None, None, None)), "42P01");
    let recorded: i64 = db
        .connect(Caller::Superuser)
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action = 'explorer.export'", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, 4, "one for each export ticket issued");
}

// ---------------------------------------------------------------------------------
// 10. Viewers and the browse audit
// ---------------------------------------------------------------------------------

fn browse_audits(db: &TestDb) -> Vec<(String, String)> {
    db.connect(Caller::Superuser)
        .query("SELECT actor_id::text, target_id FROM dashboard_auth.audit_log WHERE action = 'explorer.browse' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn a_viewer_browses_and_exports_and_each_table_is_audited_once_per_session() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(ITEMS).unwrap();
    su.batch_execute(PEOPLE).unwrap();
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let vic_id: String = su.query_one("SELECT id::text FROM dashboard_auth.dashboard_users WHERE email = 'vic@example.com'", &[]).unwrap().get(0);

    assert_eq!(ids(&vic.browse("public", "items", &req())), [1, 2, 3, 4, 5, 6]);
    assert_eq!(ids(&vic.browse("public", "items", &req().filter(cond("qty", "eq", json!(5))))), [1, 6]);
    assert_eq!(browse_audits(&db).len(), 1, "two browses of one table in one session: one entry");
    vic.browse("public", "people", &req().size(3));
    assert_eq!(browse_audits(&db).len(), 2, "another table: another entry");
    // A failed browse of a table records nothing.
    assert!(vic.try_browse("public", "nope", &req()).is_err());
    assert_eq!(browse_audits(&db).len(), 2);

    let (_, lines) = vic.export("public", "items", None, None, None);
    assert_eq!(lines.len(), 6);

    // A new sign-in is a new session: the same table is audited again, once.
    let token = login(&mut vic.p.web, "vic@example.com", PASSWORD, "192.0.2.1").token.unwrap();
    vic.token = token;
    vic.browse("public", "items", &req());
    vic.browse("public", "items", &req().sort(json!([{"column": "qty"}])));
    let audits = browse_audits(&db);
    assert_eq!(audits.len(), 3, "{audits:?}");
    assert!(audits.iter().all(|(actor, _)| actor == &vic_id), "{audits:?}");
    let items: Vec<&(String, String)> = audits.iter().filter(|(_, target)| target.contains("items")).collect();
    assert_eq!(items.len(), 2);
    let details: Value = su
        .query_one("SELECT details FROM dashboard_auth.audit_log WHERE action = 'explorer.browse' ORDER BY id LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(details, json!({"schema": "public", "table": "items", "kind": "table"}));
    // A signed-out token browses nothing.
    let (state, _) = failure(Explorer { p: Planes::connect(&db), token: "fbs_not_a_session".into() }.try_browse("public", "items", &req()));
    assert_eq!(state, "28000");
}

#[test]
fn the_browse_audit_names_the_relation_schema_qualified_and_quoted() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(ITEMS).unwrap();
    su.batch_execute(r#"CREATE TABLE public."Mixed Case" (id int PRIMARY KEY)"#).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    ex.browse("public", "items", &req());
    ex.browse("public", "Mixed Case", &req());
    let row = su
        .query_one("SELECT target_type, target_id FROM dashboard_auth.audit_log WHERE action = 'explorer.browse' ORDER BY id LIMIT 1", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "relation");
    let targets: Vec<String> = browse_audits(&db).into_iter().map(|(_, t)| t).collect();
    // The brief: target_id is "schema"."table", quoted.
    assert_eq!(targets, ["public.items", r#"public."Mixed Case""#]);
}

// ---------------------------------------------------------------------------------
// 11. Impersonation
// ---------------------------------------------------------------------------------

/// The shared RLS fixture, plus a third private todo of joe's. Returns joe's id.
fn todos(db: &TestDb) -> String {
    let (joe, _) = fluxbase_tests::fixtures::rls_todos(db);
    fluxbase_tests::fixtures::add_private_todo(db, &joe, "joe third");
    joe
}

fn titles(page: &Value) -> Vec<String> {
    page["rows"].as_array().unwrap().iter().map(|r| r["values"]["title"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_impersonated_browse_sees_only_the_targets_rows_and_is_audited() {
    let db = TestDb::new();
    let joe = todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    // Unimpersonated, RLS hides nothing.
    let all = ann.browse("public", "todos", &req());
    assert_eq!(titles(&all), ["joe private", "joe public", "bea private", "nobody public", "joe third"]);

    let imp = ann.impersonate("joe@example.com");
    assert_eq!(ids(&ann.browse("public", "todos", &req())).len(), 5, "browse is unimpersonated even while an impersonation runs");
    let page = ann.try_browse_as(&imp, "todos", &req()).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(titles(&page), ["joe private", "joe public", "joe third"]);
    assert_eq!(page["total"], json!({"kind": "exact", "count": 3, "text": "3 rows"}));
    assert_eq!(page["impersonation_id"], imp.as_str());
    assert!(page["rows"].as_array().unwrap().iter().all(|r| r["values"]["owner"] == joe.as_str()));

    // Paged, filtered and counted as joe.
    let first = ann.try_browse_as(&imp, "todos", &req().size(2).total("exact")).unwrap();
    assert_eq!(titles(&first), ["joe private", "joe public"]);
    assert_eq!(first["total"]["count"], 3, "counted as joe: {}", first["total"]);
    let second = ann
        .try_browse_as(&imp, "todos", &req().size(2).total("exact").cursor(first["next_cursor"].as_str().map(String::from)))
        .unwrap();
    assert_eq!(titles(&second), ["joe third"]);
    assert!(second["next_cursor"].is_null());
    let searched = ann.try_browse_as(&imp, "todos", &req().search("private")).unwrap();
    assert_eq!(titles(&searched), ["joe private"]);

    // The data login is itself again afterwards, without claims.
    let row = ann.p.data.query_one("SELECT current_user::text, coalesce(current_setting('request.jwt.claims', true), '')", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("fluxbase_data".into(), String::new()));

    // Audited: each page's intent, recorded by its ticket (a read records no result).
    let su = &mut db.connect(Caller::Superuser);
    let entries: Vec<(String, Option<String>, Value)> = su
        .query(
            "SELECT action, target_id, details FROM dashboard_auth.audit_log WHERE action LIKE 'impersonated.explorer.browse.%' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let actions: Vec<&str> = entries.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(actions, ["impersonated.explorer.browse.intent"; 4]);
    for (_, target, details) in &entries {
        assert_eq!(target.as_deref(), Some(imp.as_str()));
        assert_eq!((details["schema"].as_str(), details["table"].as_str()), (Some("public"), Some("todos")), "{details}");
        assert_eq!(details["claims_sub"], joe.as_str(), "{details}");
        assert_eq!(details["as_role"], "authenticated", "{details}");
    }

    // An impersonation that is not the admin's (or not active) is refused by the ticket;
    // one that ends between the ticket and the claim is refused by the claim.
    let (state, message) = failure(ann.try_browse_as("00000000-0000-0000-0000-000000000000", "todos", &req()));
    assert_eq!(state, "FB001", "{message}");
    let ticket = ann.p.ticket(&ann.token, "browse", &req().request("public", "todos"), Some(&imp)).unwrap();
    as_dashboard(&mut ann.p.web, "SELECT auth.end_impersonation($1)", &[&ann.token]).unwrap();
    let (state, message) = failure(claimed(&mut ann.p.data, &ticket, "SELECT fluxbase_admin.browse()::text", &[]).map(|rows| rows.len()));
    assert_eq!(state, "FB001", "{message}");
    assert!(message.contains("not active"), "{message}");
    let (state, _) = failure(ann.try_browse_as(&imp, "todos", &req()));
    assert_eq!(state, "FB001");
    // Unimpersonated, browse still shows everything.
    assert_eq!(ids(&ann.browse("public", "todos", &req())).len(), 5);
}

#[test]
fn a_viewer_cannot_browse_as_an_impersonated_user() {
    let db = TestDb::new();
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    // No ticket for the admin's impersonation: not a page, not an export, not psql.
    let (state, message) = failure(vic.try_browse_as(&imp, "todos", &req()));
    assert_eq!(state, "42501", "{message}");
    let (state, message) = failure(vic.try_export("public", "todos", None, None, Some(&imp)).map(|(header, _)| header));
    assert_eq!(state, "42501", "{message}");
    let (state, message) = failure(vic.p.ticket(&vic.token, "impersonate", &json!({"read_only": true}), Some(&imp)));
    assert_eq!(state, "42501", "{message}");
    let recorded: i64 = db
        .connect(Caller::Superuser)
        .query_one("SELECT count(*) FROM dashboard_auth.audit_log WHERE action LIKE 'impersonated.%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0, "no intent and no result");
}

#[test]
fn an_impersonated_export_sees_only_the_targets_rows() {
    let db = TestDb::new();
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let (header, lines) = ann.export("public", "todos", None, Some(json!([{"column": "title", "direction": "desc"}])), Some(&imp));
    let recorded: Vec<(String, String)> = db
        .connect(Caller::Superuser)
        .query("SELECT action, target_id FROM dashboard_auth.audit_log WHERE action LIKE '%export%' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(recorded, [("impersonated.explorer.export.intent".to_string(), imp.clone())]);
    assert_eq!(header, r#""id","owner","title","public""#);
    let titles: Vec<Field> = lines.iter().map(|l| parse_line(l)[2].clone()).collect();
    assert_eq!(titles, ["joe third", "joe public", "joe private"].map(q).to_vec());
    let row = ann.p.data.query_one("SELECT current_user::text", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "fluxbase_data");
    // The same table unimpersonated: every row.
    assert_eq!(ann.export("public", "todos", None, None, None).1.len(), 5);
}

// ---------------------------------------------------------------------------------
// 12. RLS never hides rows from the unimpersonated admin
// ---------------------------------------------------------------------------------

#[test]
fn forced_row_level_security_hides_nothing_from_the_unimpersonated_admin() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "DO $$ BEGIN CREATE ROLE explorer_browse_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         CREATE TABLE public.secrets (id int PRIMARY KEY, s text);
         INSERT INTO public.secrets SELECT g, 's' || g FROM generate_series(1, 7) g;
         ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.secrets FORCE ROW LEVEL SECURITY;
         CREATE POLICY nothing ON public.secrets USING (false);
         GRANT SELECT ON public.secrets TO authenticated;
         ALTER TABLE public.secrets OWNER TO explorer_browse_owner;",
    )
    .unwrap();
    // The application's own role sees nothing, as the policy says.
    let seen: i64 = db.connect(Caller::App).query_one("SELECT count(*) FROM public.secrets", &[]).unwrap().get(0);
    assert_eq!(seen, 0);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let page = ann.browse("public", "secrets", &req().size(5).total("exact"));
    assert_eq!(ids(&page), [1, 2, 3, 4, 5]);
    assert_eq!(page["total"]["count"], 7);
    let rest = ann.browse("public", "secrets", &req().size(5).cursor(page["next_cursor"].as_str().map(String::from)));
    assert_eq!(ids(&rest), [6, 7]);
    assert_eq!(ids(&ann.browse("public", "secrets", &req().filter(cond("s", "eq", json!("s3"))))), [3]);
    assert_eq!(ann.export("public", "secrets", None, None, None).1.len(), 7);
    // The owner itself would see nothing: FORCE applies to it.
    su.batch_execute("SET ROLE explorer_browse_owner").unwrap();
    let owner_sees: i64 = su.query_one("SELECT count(*) FROM public.secrets", &[]).unwrap().get(0);
    su.batch_execute("RESET ROLE").unwrap();
    assert_eq!(owner_sees, 0);
}

// ---------------------------------------------------------------------------------
// 13. A column that is gone: notices instead of errors
// ---------------------------------------------------------------------------------

#[test]
fn a_filter_or_sort_on_a_column_that_was_dropped_is_left_out_with_a_notice() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(ITEMS).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    // A page saved with a filter and a sort on qty, and a filter on name.
    let saved = req()
        .filter(json!({"and": [cond("qty", "gte", json!(5)), cond("name", "ilike", json!("%e%"))]}))
        .sort(json!([{"column": "qty", "direction": "desc"}]));
    let before = ex.browse("public", "items", &saved);
    assert_eq!(ids(&before), [3, 1, 6], "qty 7, then the two 5s by id: {before}");
    assert_eq!(before["notices"], json!([]));

    su.batch_execute("ALTER TABLE public.items DROP COLUMN qty").unwrap();
    let after = ex.browse("public", "items", &saved);
    assert_eq!(ids(&after), [1, 3, 4, 6], "only the name filter is left, sorted by the key: {after}");
    assert_eq!(
        after["notices"],
        json!([
            {"code": "filter_dropped", "column": "qty", "message": "\"public\".\"items\" has no column \"qty\": the filter on it was left out"},
            {"code": "sort_dropped", "column": "qty", "message": "\"public\".\"items\" has no column \"qty\": the sort on it was left out"},
        ])
    );
    assert_eq!(after["paging"]["order"], json!([{"column": "id", "direction": "asc", "nulls": "last"}]));
    // An "or" whose every branch is gone leaves no condition; a group keeps its others.
    let page = ex.browse("public", "items", &req().filter(json!({"or": [cond("qty", "eq", json!(1)), cond("gone", "is_null", Value::Null)]})));
    assert_eq!(ids(&page), [1, 2, 3, 4, 5, 6]);
    assert_eq!(page["notices"].as_array().unwrap().len(), 2, "{page}");
    // A column that exists is still checked: its errors are not notices.
    let (state, message) = failure(ex.try_browse("public", "items", &req().filter(cond("born", "ilike", json!("2024%")))));
    assert_eq!(state, "22023", "{message}");
    // An export would hold other rows than were asked for: it is refused, naming the column.
    let (state, message) = failure(ex.try_export("public", "items", Some(cond("qty", "eq", json!(5))), None, None).map(|(h, _)| h));
    assert_eq!(state, "22023", "{message}");
    assert!(message.starts_with("public.items has no column qty: the export's filter"), "{message}");
    assert_eq!(ex.export("public", "items", Some(cond("name", "eq", json!("date"))), None, None).1.len(), 1);
}

// ---------------------------------------------------------------------------------
// 14. Previous pages
// ---------------------------------------------------------------------------------

/// Walks every page forwards, then from the last page backwards by prev_cursor: the
/// pages must come back the same, and the first page has no prev_cursor.
fn forwards_then_backwards(ex: &mut Explorer, table: &str, r: &Req) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut page = ex.browse("public", table, r);
    assert!(page["prev_cursor"].is_null(), "the first page has no previous: {page}");
    loop {
        pages.push(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => page = ex.browse("public", table, &r.clone().cursor(Some(next.to_string()))),
            None => break,
        }
        assert!(!page["prev_cursor"].is_null(), "a later page has a previous: {page}");
    }
    let mut back = pages.len() - 1;
    while let Some(prev) = page["prev_cursor"].as_str().map(str::to_string) {
        page = ex.browse("public", table, &r.clone().cursor(Some(prev)));
        back -= 1;
        assert_eq!(ids(&page), pages[back], "page {back} read backwards");
        assert!(!page["next_cursor"].is_null(), "a page read backwards has a next: {page}");
    }
    assert_eq!(back, 0, "paging backwards stops at the first page");
    pages
}

#[test]
fn prev_cursor_pages_backwards_through_the_same_pages_by_keyset_and_by_offset() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.events (id int PRIMARY KEY, v int, tag text);
         INSERT INTO public.events SELECT g, (g % 7) * 10, CASE WHEN g % 3 = 0 THEN NULL ELSE 't' || (g % 4) END
           FROM generate_series(1, 23) g;
         UPDATE public.events SET v = NULL WHERE id IN (4, 11, 19);
         CREATE TABLE public.nokey (id int, v int);
         INSERT INTO public.nokey SELECT g, g FROM generate_series(1, 12) g;",
    )
    .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    for sort in [
        json!([{"column": "v", "direction": "asc", "nulls": "last"}]),
        json!([{"column": "v", "direction": "desc", "nulls": "first"}]),
        json!([{"column": "tag", "direction": "asc", "nulls": "first"}, {"column": "v", "direction": "desc", "nulls": "last"}]),
        json!([{"column": "id", "direction": "desc"}]),
    ] {
        let pages = forwards_then_backwards(&mut ex, "events", &req().sort(sort.clone()).size(4));
        assert_eq!(pages.concat().len(), 23, "{sort}");
    }
    let pages = forwards_then_backwards(&mut ex, "nokey", &req().sort(json!([{"column": "id"}])).size(5));
    assert_eq!(pages, [vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10], vec![11, 12]]);
    // A previous cursor belongs to its sort like a next one.
    let sort = json!([{"column": "v", "direction": "asc", "nulls": "last"}]);
    let first = ex.browse("public", "events", &req().sort(sort.clone()).size(4));
    let second = ex.browse("public", "events", &req().sort(sort).size(4).cursor(first["next_cursor"].as_str().map(String::from)));
    let (state, message) = failure(ex.try_browse("public", "events", &req().size(4).cursor(second["prev_cursor"].as_str().map(String::from))));
    assert_eq!(state, "22023", "{message}");
}

#[test]
fn forward_three_pages_and_back_two_neither_repeats_nor_skips_rows_inserted_in_between() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.events (id int PRIMARY KEY, v int);
         INSERT INTO public.events SELECT g, g * 10 FROM generate_series(1, 20) g;",
    )
    .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let r = req().sort(json!([{"column": "v"}])).size(5);
    let p1 = ex.browse("public", "events", &r);
    let p2 = ex.browse("public", "events", &r.clone().cursor(p1["next_cursor"].as_str().map(String::from)));
    let p3 = ex.browse("public", "events", &r.clone().cursor(p2["next_cursor"].as_str().map(String::from)));
    assert_eq!([ids(&p1), ids(&p2), ids(&p3)], [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]]);
    assert!(p1["prev_cursor"].is_null());

    // Back one: the second page again.
    let back1 = ex.browse("public", "events", &r.clone().cursor(p3["prev_cursor"].as_str().map(String::from)));
    assert_eq!(ids(&back1), ids(&p2));
    // Rows arrive: one among the first page's (v 25), one among the third's (v 125).
    su.batch_execute("INSERT INTO public.events VALUES (101, 25), (102, 125)").unwrap();
    // Back two: the five rows before the second page, the new one among them, and row 1
    // is one page further back.
    let back2 = ex.browse("public", "events", &r.clone().cursor(back1["prev_cursor"].as_str().map(String::from)));
    assert_eq!(ids(&back2), [2, 101, 3, 4, 5]);
    let start = ex.browse("public", "events", &r.clone().cursor(back2["prev_cursor"].as_str().map(String::from)));
    assert_eq!(ids(&start), [1]);
    assert!(start["prev_cursor"].is_null(), "nothing before row 1: {start}");
    // Forwards again from the second page: the new row of the third page is read once.
    let again = ex.browse("public", "events", &r.clone().cursor(back1["next_cursor"].as_str().map(String::from)));
    assert_eq!(ids(&again), [11, 12, 102, 13, 14]);
    let next = ex.browse("public", "events", &r.clone().cursor(start["next_cursor"].as_str().map(String::from)));
    assert_eq!(ids(&next), ids(&back2), "forwards from the first page: the page read backwards");
}

// ---------------------------------------------------------------------------------
// 15. JSON Lines export
// ---------------------------------------------------------------------------------

#[test]
fn a_json_lines_export_has_one_object_a_line_that_reads_back_as_the_rows() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        r#"CREATE TABLE public."odd ""table""" (id int PRIMARY KEY, "a,b" text, doc json, tags text[], amount numeric, at timestamptz, raw bytea);
           INSERT INTO public."odd ""table""" VALUES
             (1, E'line one\nline two', E'{"k":\n  "v"}', '{"x,y","z\"q"}', 12345678901234567890.123456789, '2024-05-06 07:08:09+00', '\x00ff'),
             (2, NULL, NULL, NULL, NULL, NULL, NULL),
             (3, E'tab\tquote" back\\ slash ünï', '[1, 2.50, null]', '{}', -0.5, '1999-12-31 23:59:59.999999+00', '');"#,
    )
    .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let request = json!({"schema": "public", "table": "odd \"table\"", "format": "jsonl", "sort": [{"column": "id", "direction": "desc"}]});
    let ticket = ex.p.ticket(&ex.token, "export", &request, None).unwrap();
    let (header, lines) = export_lines(&mut ex.p.data, &ticket).unwrap();
    assert_eq!(header, None, "JSON Lines have no header");
    assert_eq!(lines.len(), 3);
    let expected: Vec<Value> = su
        .query(r#"SELECT to_jsonb(t) FROM public."odd ""table""" t ORDER BY id DESC"#, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (line, row) in lines.iter().zip(&expected) {
        assert!(!line.contains('\n'), "one line: {line:?}");
        let read: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(&read, row);
    }
    let first: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(first["a,b"], "line one\nline two");
    assert_eq!(first["doc"], json!({"k": "v"}));
    assert!(lines[2].contains(r#""amount": 12345678901234567890.123456789"#), "every digit: {}", lines[2]);
    // Recorded with its format; an unknown format is refused.
    let format: Value = su
        .query_one("SELECT details -> 'format' FROM dashboard_auth.audit_log WHERE action = 'explorer.export'", &[])
        .unwrap()
        .get(0);
    assert_eq!(format, "jsonl");
    let (state, message) = failure(ex.p.ticket(&ex.token, "export", &json!({"schema": "public", "table": "odd \"table\"", "format": "xml"}), None));
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains("use csv or jsonl"), "{message}");
    // A viewer exports JSON Lines too; CSV stays the default.
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let ticket = vic.p.ticket(&vic.token, "export", &request, None).unwrap();
    assert_eq!(export_lines(&mut vic.p.data, &ticket).unwrap().1.len(), 3);
    assert_eq!(vic.export("public", "odd \"table\"", None, None, None).0, r#""id","a,b","doc","tags","amount","at","raw""#);
}

// ---------------------------------------------------------------------------------
// 16. One cell in full
// ---------------------------------------------------------------------------------

#[test]
fn one_cells_full_value_is_read_by_table_key_and_column() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.docs (id int, lang text, body text, blob bytea, n int, PRIMARY KEY (id, lang));
         INSERT INTO public.docs VALUES (1, 'en', repeat('ab', 2500) || 'é', decode(repeat('00', 3000), 'hex'), 7),
                                        (2, 'en', 'short', NULL, NULL);
         CREATE TABLE public.loose (id int, body text);
         INSERT INTO public.loose VALUES (1, 'x');",
    )
    .unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let page = ex.browse("public", "docs", &req());
    assert_eq!(page["rows"][0]["truncated"]["body"], 5001);
    assert_eq!(page["rows"][0]["values"]["body"].as_str().unwrap().chars().count(), 2000);

    let cell = |ex: &mut Explorer, column: &str, key: Value| {
        ex.p.cell(&ex.token, &json!({"schema": "public", "table": "docs", "column": column, "key": key}), None)
    };
    let full = cell(&mut ex, "body", json!({"id": 1, "lang": "en"})).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(full["found"], true);
    assert_eq!(full["value"].as_str().unwrap(), format!("{}é", "ab".repeat(2500)));
    assert_eq!(full["length"], 5001);
    assert_eq!((full["column"].as_str(), full["type"].as_str(), full["table"].as_str()), (Some("body"), Some("text"), Some("docs")));
    let blob = cell(&mut ex, "blob", json!({"id": 1, "lang": "en"})).unwrap();
    assert_eq!(blob["value"].as_str().unwrap(), format!("\\x{}", "00".repeat(3000)));
    assert_eq!(blob["length"], 3000);
    let small = cell(&mut ex, "n", json!({"id": 1, "lang": "en"})).unwrap();
    assert_eq!((small["value"].clone(), small["length"].clone()), (json!(7), Value::Null));
    let null = cell(&mut ex, "blob", json!({"id": 2, "lang": "en"})).unwrap();
    assert_eq!((null["found"].clone(), null["value"].clone()), (json!(true), Value::Null));
    let missing = cell(&mut ex, "body", json!({"id": 3, "lang": "en"})).unwrap();
    assert_eq!((missing["found"].clone(), missing["value"].clone()), (json!(false), Value::Null));

    // Refused clearly: an unknown column, a key that is not the table's, a table without a
    // key (at the ticket, 22023), and a key value that does not fit (at the read).
    for (request, says) in [
        (json!({"schema": "public", "table": "docs", "column": "nope", "key": {"id": 1, "lang": "en"}}), "has no column \"nope\""),
        (json!({"schema": "public", "table": "docs", "column": "body", "key": {"id": 1}}), "primary key's columns"),
        (json!({"schema": "public", "table": "docs", "column": "body"}), "each key is an object"),
        (json!({"schema": "public", "table": "docs", "key": {"id": 1, "lang": "en"}}), "names no column"),
        (json!({"schema": "public", "table": "loose", "column": "body", "key": {"id": 1}}), "has no primary key or unique NOT NULL key"),
    ] {
        let (state, message) = failure(ex.p.ticket(&ex.token, "cell", &request, None));
        assert_eq!(state, "22023", "{request}: {message}");
        assert!(message.contains(says), "{request}: {message}");
    }
    let (state, message) = failure(cell(&mut ex, "body", json!({"id": "one", "lang": "en"})));
    assert_eq!(state, "22P02", "{message}");
    assert!(message.starts_with("column id (integer)"), "{message}");
    let (state, _) = failure(ex.p.ticket(&ex.token, "cell", &json!({"schema": "public", "table": "nope", "column": "x", "key": {}}), None));
    assert_eq!(state, "42P01");

    // A viewer reads cells too. Reading a cell is reading the table: audited once per
    // session and table, as a page is.
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let seen = vic.p.cell(&vic.token, &json!({"schema": "public", "table": "docs", "column": "body", "key": {"id": 2, "lang": "en"}}), None).unwrap();
    assert_eq!(seen["value"], "short");
    vic.p.cell(&vic.token, &json!({"schema": "public", "table": "docs", "column": "n", "key": {"id": 2, "lang": "en"}}), None).unwrap();
    let reads: Vec<(String, String)> = su
        .query("SELECT actor, target_id FROM dashboard_auth.audit_log WHERE action = 'explorer.browse' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(reads, [("ann@example.com".to_string(), "public.docs".to_string()), ("vic@example.com".to_string(), "public.docs".to_string())]);
}

#[test]
fn an_impersonated_cell_read_sees_only_what_the_targets_rls_shows() {
    let db = TestDb::new();
    let joe = todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let cell = |ann: &mut Explorer, id: i64, imp: Option<&str>| {
        ann.p.cell(&ann.token, &json!({"schema": "public", "table": "todos", "column": "title", "key": {"id": id}}), imp).unwrap()
    };
    let own = cell(&mut ann, 1, Some(&imp));
    assert_eq!((own["found"].clone(), own["value"].clone(), own["impersonation_id"].clone()), (json!(true), json!("joe private"), json!(imp)));
    let beas = cell(&mut ann, 3, Some(&imp));
    assert_eq!((beas["found"].clone(), beas["value"].clone()), (json!(false), Value::Null), "bea's row is hidden from joe");
    assert_eq!(cell(&mut ann, 3, None)["value"], "bea private", "unimpersonated, RLS hides nothing");
    let intents: Vec<Value> = db
        .connect(Caller::Superuser)
        .query("SELECT details FROM dashboard_auth.audit_log WHERE action = 'impersonated.explorer.cell.intent' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(intents.len(), 2);
    assert_eq!(intents[0]["claims_sub"], joe.as_str());
    // A viewer cannot read as the admin's impersonation.
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let (state, _) = failure(vic.p.cell(&vic.token, &json!({"schema": "public", "table": "todos", "column": "title", "key": {"id": 1}}), Some(&imp)));
    assert_eq!(state, "42501");
}

// ---------------------------------------------------------------------------------
// 17. Rows as an INSERT statement and as JSON
// ---------------------------------------------------------------------------------

const ODD: &str = r#"
    CREATE SCHEMA "we""ird";
    CREATE TYPE "we""ird"."mo od" AS ENUM ('ok', 'it''s "bad"');
    CREATE TABLE "we""ird"."ta""ble; --" (
        "id" bigint GENERATED ALWAYS AS IDENTITY,
        "k""ey" text NOT NULL,
        "Select" text,
        "n,um" numeric,
        "f" double precision,
        "at" timestamptz,
        "d" date,
        "span" interval,
        "tags" text[],
        "doc" jsonb,
        "raw" bytea,
        "mood" "we""ird"."mo od",
        "len" int GENERATED ALWAYS AS (length("Select")) STORED,
        "by_default" int GENERATED BY DEFAULT AS IDENTITY,
        PRIMARY KEY ("k""ey")
    );
    INSERT INTO "we""ird"."ta""ble; --" ("k""ey", "Select", "n,um", "f", "at", "d", "span", "tags", "doc", "raw", "mood") VALUES
      ('a', E'it''s a "quote"\\ and\nnew line; DROP TABLE x; --', 12345678901234567890.000000001, 0.1, '2024-02-29 23:59:59.123456+05:30',
       '0044-03-15', '1 year 2 mons 3 days 04:05:06.5', '{"x,y","z\"q",NULL}', '{"k": [1, "\u00e9", null]}', '\x00ff27', 'it''s "bad"'),
      ('b''); --', NULL, NULL, 'Infinity', NULL, NULL, NULL, '{}', 'null', '', 'ok'),
      ('c', '$$ dollar $$ E''\\x'' ünï 🦀', -0, -1.5e-300, '-infinity', 'infinity', '-3 days', NULL, '"s"', NULL, NULL);
"#;

#[test]
fn chosen_rows_come_as_an_insert_statement_that_reproduces_them_and_as_json() {
    let db = TestDb::new();
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(ODD).unwrap();
    let mut ex = sign_in(&db, "ann@example.com", "admin");
    let table = "ta\"ble; --";
    let keys = json!([{"k\"ey": "c"}, {"k\"ey": "a"}, {"k\"ey": "b'); --"}, {"k\"ey": "zzz"}]);
    let copy = ex.p.copy(&ex.token, &json!({"schema": "we\"ird", "table": table, "keys": keys}), None)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!((copy["count"].clone(), copy["missing"].clone()), (json!(3), json!(1)), "{copy}");
    // JSON: every column, in the key's order.
    let expected: Vec<Value> = su
        .query(r#"SELECT to_jsonb(t) FROM "we""ird"."ta""ble; --" t ORDER BY "k""ey""#, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(copy["rows"], json!(expected));
    // The statement: the table's columns in order, without identity ALWAYS and generated ones.
    let statement = copy["statement"].as_str().unwrap().to_string();
    assert!(
        statement.starts_with(r#"INSERT INTO "we""ird"."ta""ble; --" ("k""ey", "Select", "n,um", "f", "at", "d", "span", "tags", "doc", "raw", "mood", "by_default") VALUES"#),
        "{statement}"
    );
    assert_eq!(copy["columns"], json!(["k\"ey", "Select", "n,um", "f", "at", "d", "span", "tags", "doc", "raw", "mood", "by_default"]));
    // Run into an empty copy of the table, in a session with other date and number
    // settings, it reproduces the rows.
    su.batch_execute(
        r#"ALTER TABLE "we""ird"."ta""ble; --" RENAME TO original;
           CREATE TABLE "we""ird"."ta""ble; --" (LIKE "we""ird".original INCLUDING ALL);
           SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'; SET extra_float_digits = -3; SET TimeZone = 'America/New_York';"#,
    )
    .unwrap();
    su.batch_execute(&statement).unwrap_or_else(|e| panic!("{}: {statement}", describe(&e)));
    su.batch_execute("RESET ALL").unwrap();
    let same: Vec<(Value, Value)> = su
        .query(
            r#"SELECT to_jsonb(c) - 'id', to_jsonb(o) - 'id' FROM "we""ird"."ta""ble; --" c
                 FULL JOIN "we""ird".original o USING ("k""ey") ORDER BY "k""ey""#,
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(same.len(), 3);
    for (copied, original) in same {
        assert_eq!(copied, original);
    }
    let exact: bool = su
        .query_one(
            r#"SELECT bool_and(c."f" IS NOT DISTINCT FROM o."f" AND c."at" IS NOT DISTINCT FROM o."at" AND c."span" = o."span"
                                AND c."raw" IS NOT DISTINCT FROM o."raw")
                 FROM "we""ird"."ta""ble; --" c JOIN "we""ird".original o USING ("k""ey")"#,
            &[],
        )
        .unwrap()
        .get(0);
    assert!(exact, "floats, times, intervals and bytes read back exactly");

    // Audited each time (a small export); a viewer may copy, as it may export.
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let seen = vic.p.copy(&vic.token, &json!({"schema": "we\"ird", "table": "original", "keys": [{"k\"ey": "a"}]}), None).unwrap();
    assert_eq!(seen["count"], 1);
    let recorded: Vec<(String, String, Value)> = su
        .query("SELECT actor, target_id, details FROM dashboard_auth.audit_log WHERE action = 'explorer.copy' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(recorded.len(), 2);
    assert_eq!((recorded[0].0.as_str(), recorded[0].2["keys"].clone()), ("ann@example.com", json!(4)));
    assert_eq!(recorded[1].1, r#""we""ird".original"#);
    // No row found: no statement.
    let none = ex.p.copy(&ex.token, &json!({"schema": "we\"ird", "table": "original", "keys": [{"k\"ey": "zzz"}]}), None).unwrap();
    assert_eq!((none["count"].clone(), none["statement"].clone(), none["rows"].clone()), (json!(0), Value::Null, json!([])));
    // Refused: no keys, too many, a key of other columns, a table without a key.
    su.batch_execute("CREATE TABLE public.loose (id int)").unwrap();
    for (request, says) in [
        (json!({"schema": "we\"ird", "table": "original", "keys": []}), "1 to 1000 keys"),
        (json!({"schema": "we\"ird", "table": "original"}), "1 to 1000 keys"),
        (json!({"schema": "we\"ird", "table": "original", "keys": (0..1001).map(|i| json!({"k\"ey": i.to_string()})).collect::<Vec<_>>()}), "1 to 1000 keys"),
        (json!({"schema": "we\"ird", "table": "original", "keys": [{"id": 1}]}), "primary key's columns"),
        (json!({"schema": "public", "table": "loose", "keys": [{"id": 1}]}), "has no primary key or unique NOT NULL key"),
    ] {
        let (state, message) = failure(ex.p.ticket(&ex.token, "copy", &request, None));
        assert_eq!(state, "22023", "{message}");
        assert!(message.contains(says), "{message}");
    }
}

#[test]
fn an_impersonated_copy_holds_only_the_rows_the_target_sees() {
    let db = TestDb::new();
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let keys = json!({"schema": "public", "table": "todos", "keys": [{"id": 1}, {"id": 3}]});
    let copy = ann.p.copy(&ann.token, &keys, Some(&imp)).unwrap();
    assert_eq!((copy["count"].clone(), copy["missing"].clone()), (json!(1), json!(1)));
    assert_eq!(copy["rows"][0]["title"], "joe private");
    assert!(!copy["statement"].as_str().unwrap().contains("bea"));
    assert_eq!(ann.p.copy(&ann.token, &keys, None).unwrap()["count"], 2);
}
