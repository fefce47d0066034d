//! The explorer's edits, end to end through the web's two logins (an edit ticket from
//! the dashboard login, fluxbase_admin.edit() on the data login that claims it), for
//! every operation (update, insert, delete, update_where,
//! delete_where), the field errors a form shows (type, length, domain check, NOT NULL,
//! table CHECK, foreign key, uniqueness, exclusion), all-or-nothing batches, refusals when
//! the rows changed under the caller (count_changed), read-only relations, edits as an
//! impersonated user under RLS, viewers refused, the audit entries, and hostile
//! names and values handled as data.

use fluxbase_tests::admin::{as_dashboard, create_admin, describe, failure, login, PASSWORD};
use fluxbase_tests::data_plane::{claimed, Planes};
use fluxbase_tests::{Caller, TestDb};
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

/// Signs in `email` (created with `role`) on fresh connections of both logins.
fn sign_in(db: &TestDb, email: &str, role: &str) -> Explorer {
    create_admin(db, email, role);
    let mut p = Planes::connect(db);
    let token = login(&mut p.web, email, PASSWORD, "192.0.2.1").token.unwrap();
    Explorer { p, token }
}

/// The edit ticket's request.
fn edit_request(schema: &str, table: &str, operation: &str, payload: Value) -> Value {
    json!({"schema": schema, "table": table, "operation": operation, "payload": payload})
}

impl Explorer {
    fn try_edit(&mut self, schema: &str, table: &str, operation: &str, payload: Value) -> Result<Value, postgres::Error> {
        self.p.edit(&self.token, &edit_request(schema, table, operation, payload), None)
    }

    /// An edit of public.`table` that must be answered (ok or not), not raise.
    fn edit(&mut self, table: &str, operation: &str, payload: Value) -> Value {
        self.try_edit("public", table, operation, payload.clone())
            .unwrap_or_else(|e| panic!("edit {operation} on {table} with {payload}: {}", describe(&e)))
    }

    fn try_browse(&mut self, schema: &str, table: &str) -> Result<Value, postgres::Error> {
        self.p.browse(&self.token, &json!({"schema": schema, "table": table}), None)
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

    /// An edit of public.`table` as the impersonated target: its ticket records the intent.
    fn try_edit_as(&mut self, imp: &str, table: &str, operation: &str, payload: Value) -> Result<Value, postgres::Error> {
        self.p.edit(&self.token, &edit_request("public", table, operation, payload), Some(imp))
    }
}

/// A successful answer: asserts ok and the operation, returns (count, before, after),
/// before and after sorted by `id` when the rows have one.
fn success(answer: &Value, operation: &str) -> (i64, Vec<Value>, Vec<Value>) {
    assert_eq!(answer["ok"], true, "expected success: {answer}");
    assert_eq!(answer["operation"], operation, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    (answer["count"].as_i64().unwrap_or_else(|| panic!("no count in {answer}")), by_id(&answer["before"]), by_id(&answer["after"]))
}

/// A refused answer: asserts not ok, returns its errors.
fn refused(answer: &Value, operation: &str) -> Vec<Value> {
    assert_eq!(answer["ok"], false, "expected errors: {answer}");
    assert_eq!(answer["operation"], operation, "{answer}");
    let errors = answer["errors"].as_array().unwrap_or_else(|| panic!("no errors in {answer}")).clone();
    assert!(!errors.is_empty(), "{answer}");
    errors
}

/// The one error of a refused answer.
fn only_error(answer: &Value, operation: &str) -> Value {
    let errors = refused(answer, operation);
    assert_eq!(errors.len(), 1, "expected exactly one error: {answer}");
    errors[0].clone()
}

/// The error naming `field` (pre-checked values name one `field`).
fn error_for<'a>(errors: &'a [Value], field: &str) -> &'a Value {
    errors.iter().find(|e| e["field"] == field).unwrap_or_else(|| panic!("no error for field {field} in {errors:?}"))
}

fn by_id(rows: &Value) -> Vec<Value> {
    let mut rows = rows.as_array().unwrap_or_else(|| panic!("not an array of rows: {rows}")).clone();
    rows.sort_by_key(|r| r["id"].as_i64().unwrap_or(i64::MAX));
    rows
}

/// A JSON number as f64, whatever its textual form (10.00, 10).
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| v.to_string().parse().unwrap_or_else(|_| panic!("not a number: {v}")))
}

/// The rows of `relation` (a quoted name, read as t), as the superuser sees
/// them: to_jsonb of each, ordered by `order`.
fn table_rows(db: &TestDb, relation: &str, order: &str) -> Vec<Value> {
    db.connect(Caller::Superuser)
        .query(&format!("SELECT to_jsonb(t) FROM {relation} AS t ORDER BY {order}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn orders(db: &TestDb) -> Vec<Value> {
    table_rows(db, "public.orders", "id")
}

fn order(db: &TestDb, id: i64) -> Value {
    orders(db).into_iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no order {id}"))
}

/// The row without the listed keys.
fn without(row: &Value, keys: &[&str]) -> Value {
    let mut row = row.clone();
    for key in keys {
        row.as_object_mut().unwrap().remove(*key);
    }
    row
}

/// The ids of the audit entries whose action is LIKE `pattern`, in order.
fn audit_ids(db: &TestDb, pattern: &str) -> Vec<i64> {
    db.connect(Caller::Superuser)
        .query("SELECT id FROM dashboard_auth.audit_log WHERE action LIKE $1 ORDER BY id", &[&pattern])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The actions of the unimpersonated edits that were done: not their intents, not the
/// failed ones, not browsing.
fn edits_done(db: &TestDb) -> Vec<String> {
    audits(db, "explorer.%")
        .into_iter()
        .map(|(action, ..)| action)
        .filter(|a| a != "explorer.browse" && !a.ends_with(".intent") && !a.ends_with(".failed"))
        .collect()
}

/// (action, target_type, target_id, details) of the audit entries whose action is LIKE `pattern`.
fn audits(db: &TestDb, pattern: &str) -> Vec<(String, Option<String>, Option<String>, Value)> {
    db.connect(Caller::Superuser)
        .query(
            "SELECT action, target_type, target_id, details FROM dashboard_auth.audit_log WHERE action LIKE $1 ORDER BY id",
            &[&pattern],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The shop: customers, and orders with an identity BY DEFAULT key, a foreign key, a
/// varchar(8) with a unique constraint, a domain with a CHECK, a NOT NULL numeric(10,2)
/// with a table CHECK, a generated column and defaults. Orders 1, 2 (customer 1) and 3
/// (customer 2).
fn shop(db: &TestDb) {
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE DOMAIN public.positive_int AS integer CONSTRAINT positive_int_check CHECK (VALUE > 0);
             CREATE TABLE public.customers (
                 id    int PRIMARY KEY,
                 email text NOT NULL CONSTRAINT customers_email_key UNIQUE);
             CREATE TABLE public.orders (
                 id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                 customer_id int CONSTRAINT orders_customer_fk REFERENCES public.customers (id),
                 code        varchar(8) CONSTRAINT orders_code_key UNIQUE,
                 qty         public.positive_int NOT NULL DEFAULT 1,
                 price       numeric(10,2) NOT NULL DEFAULT 0 CONSTRAINT orders_price_nonneg CHECK (price >= 0),
                 total       numeric GENERATED ALWAYS AS (qty * price) STORED,
                 status      text NOT NULL DEFAULT 'new',
                 note        text,
                 placed_on   date NOT NULL DEFAULT DATE '2024-01-01');
             INSERT INTO public.customers VALUES (1, 'a@example.com'), (2, 'b@example.com');
             INSERT INTO public.orders (customer_id, code, qty, price, note) VALUES
                 (1, 'A1', 2, 10, 'first'), (1, 'A2', 1, 5, 'second'), (2, 'B1', 3, 1.5, 'third');",
        )
        .unwrap();
}

fn cond(column: &str, op: &str, value: Value) -> Value {
    json!({"column": column, "op": op, "value": value})
}

// ---------------------------------------------------------------------------------
// 1. Every edit path
// ---------------------------------------------------------------------------------

#[test]
fn updating_one_cell_changes_only_that_cell_and_answers_before_and_after() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let untouched = [order(&db, 2), order(&db, 3)];
    let was = order(&db, 1);

    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"status": "paid"}}));
    let (count, before, after) = success(&answer, "update");
    assert_eq!(count, 1);
    assert_eq!(before, [was.clone()], "before is the row as it was");
    let now = order(&db, 1);
    assert_eq!(now["status"], "paid");
    assert_eq!(without(&now, &["status"]), without(&was, &["status"]), "only the one cell changed");
    assert_eq!(after, [now], "after is the row as it is now");
    assert_eq!([order(&db, 2), order(&db, 3)], untouched, "other rows untouched");
}

#[test]
fn updating_a_whole_row_writes_every_column_given_and_recomputes_the_generated_one() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit(
        "orders",
        "update",
        json!({"keys": [{"id": 2}], "set": {
            "customer_id": 2, "code": "Z9", "qty": 4, "price": "2.25", "status": "shipped", "note": null, "placed_on": "2024-03-05"
        }}),
    );
    let (count, before, after) = success(&answer, "update");
    assert_eq!(count, 1);
    assert_eq!(before[0]["code"], "A2");
    let now = order(&db, 2);
    assert_eq!(now["customer_id"], 2);
    assert_eq!(now["code"], "Z9");
    assert_eq!(now["qty"], 4);
    assert_eq!(num(&now["price"]), 2.25);
    assert_eq!(num(&now["total"]), 9.0, "the generated column follows: {now}");
    assert_eq!(now["status"], "shipped");
    assert!(now["note"].is_null(), "a JSON null writes NULL: {now}");
    assert_eq!(now["placed_on"], "2024-03-05");
    assert_eq!(after, [now]);
}

#[test]
fn inserting_takes_defaults_identity_by_default_and_computes_generated_columns() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");

    // Only some columns given: the others take their defaults, the identity its next value.
    let answer = ann.edit("orders", "insert", json!({"rows": [{"customer_id": 2, "code": "N1", "price": 7.5}]}));
    let (count, before, after) = success(&answer, "insert");
    assert_eq!(count, 1);
    assert!(before.is_empty(), "nothing before an insert: {answer}");
    let id = after[0]["id"].as_i64().unwrap();
    assert!(id > 3, "the identity's next value, not a given one: {id}");
    let row = order(&db, id);
    assert_eq!(after, [row.clone()]);
    assert_eq!(row["qty"], 1, "default");
    assert_eq!(row["status"], "new", "default");
    assert_eq!(row["placed_on"], "2024-01-01", "default");
    assert!(row["note"].is_null());
    assert_eq!(num(&row["total"]), 7.5, "generated: qty * price");

    // An identity BY DEFAULT takes a given value.
    let answer = ann.edit("orders", "insert", json!({"rows": [{"id": 100, "code": "N100", "qty": 3, "price": 2}]}));
    let (_, _, after) = success(&answer, "insert");
    assert_eq!(after[0]["id"], 100);
    assert_eq!(num(&order(&db, 100)["total"]), 6.0);

    // A row of no columns: every column from its default.
    let answer = ann.edit("orders", "insert", json!({"rows": [{}]}));
    let (count, _, after) = success(&answer, "insert");
    assert_eq!(count, 1);
    let row = order(&db, after[0]["id"].as_i64().unwrap());
    assert_eq!((row["qty"].clone(), row["status"].clone(), num(&row["total"])), (json!(1), json!("new"), 0.0));
    assert_eq!(orders(&db).len(), 6);
}

#[test]
fn inserting_into_an_identity_always_or_a_generated_column_is_refused() {
    let db = TestDb::new();
    shop(&db);
    db.connect(Caller::Superuser)
        .batch_execute("CREATE TABLE public.tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, subject text)")
        .unwrap();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let (state, message) = failure(ann.try_edit("public", "tickets", "insert", json!({"rows": [{"id": 5, "subject": "x"}]})));
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains("\"id\"") && message.contains("GENERATED ALWAYS"), "{message}");
    let (state, message) = failure(ann.try_edit("public", "orders", "insert", json!({"rows": [{"code": "G", "total": 5}]})));
    assert_eq!(state, "22023", "{message}");
    assert!(message.contains("\"total\"") && message.contains("generated"), "{message}");
    let (state, message) = failure(ann.try_edit("public", "orders", "update", json!({"keys": [{"id": 1}], "set": {"total": 5}})));
    assert_eq!(state, "22023", "{message}");
    // Without the refused column, the identity ALWAYS assigns the key.
    let answer = ann.edit("tickets", "insert", json!({"rows": [{"subject": "hello"}]}));
    let (_, _, after) = success(&answer, "insert");
    assert_eq!(after[0]["id"], 1);
    assert_eq!(table_rows(&db, "public.tickets", "id"), after);
    assert_eq!(orders(&db).len(), 3, "nothing inserted by the refused edits");
}

#[test]
fn inserting_several_rows_inserts_them_all_with_their_own_defaults() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit(
        "orders",
        "insert",
        json!({"rows": [
            {"code": "M1", "customer_id": 1},
            {"code": "M2", "qty": 5, "price": 2},
            {"code": "M3", "status": "held", "note": "rush"}
        ]}),
    );
    let (count, before, after) = success(&answer, "insert");
    assert_eq!(count, 3);
    assert!(before.is_empty());
    let now: Vec<Value> = orders(&db).into_iter().filter(|r| r["id"].as_i64().unwrap() > 3).collect();
    assert_eq!(after, now);
    let codes: Vec<&str> = now.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["M1", "M2", "M3"]);
    // A column some rows leave out takes its default in those rows.
    assert_eq!((now[0]["customer_id"].clone(), now[1]["customer_id"].clone()), (json!(1), Value::Null));
    assert_eq!((now[0]["qty"].clone(), now[1]["qty"].clone(), now[2]["qty"].clone()), (json!(1), json!(5), json!(1)));
    assert_eq!((now[0]["status"].clone(), now[2]["status"].clone()), (json!("new"), json!("held")));
    assert_eq!(num(&now[1]["total"]), 10.0);
}

#[test]
fn deleting_one_row_by_its_key_removes_only_it() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let was = order(&db, 2);
    let answer = ann.edit("orders", "delete", json!({"keys": [{"id": 2}]}));
    let (count, before, _) = success(&answer, "delete");
    assert_eq!(count, 1);
    assert_eq!(before, [was], "before is the deleted row");
    let ids: Vec<i64> = orders(&db).iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 3]);
}

#[test]
fn a_delete_has_no_rows_after() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit("orders", "delete", json!({"keys": [{"id": 2}]}));
    let (_, before, after) = success(&answer, "delete");
    assert_eq!(before.len(), 1);
    assert!(after.is_empty(), "the deleted row is no longer there: {answer}");
}

#[test]
fn batch_updates_and_deletes_by_a_list_of_keys() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}, {"id": 3}], "set": {"status": "archived", "qty": 9}}));
    let (count, before, after) = success(&answer, "update");
    assert_eq!(count, 2);
    assert_eq!(before.iter().map(|r| r["status"].clone()).collect::<Vec<_>>(), [json!("new"), json!("new")]);
    assert_eq!(after, [order(&db, 1), order(&db, 3)]);
    assert!(after.iter().all(|r| r["status"] == "archived" && r["qty"] == 9), "{after:?}");
    assert_eq!(order(&db, 2)["status"], "new", "the key not listed is untouched");

    let was = [order(&db, 1), order(&db, 2)];
    let answer = ann.edit("orders", "delete", json!({"keys": [{"id": 2}, {"id": 1}]}));
    let (count, before, _) = success(&answer, "delete");
    assert_eq!(count, 2);
    assert_eq!(before, was);
    let ids: Vec<i64> = orders(&db).iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [3]);
}

#[test]
fn update_where_and_delete_where_change_the_rows_of_the_filter_when_the_count_is_right() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit(
        "orders",
        "update_where",
        json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 2, "set": {"status": "bulk"}}),
    );
    let (count, before, after) = success(&answer, "update_where");
    assert_eq!(count, 2);
    assert_eq!(before.iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    assert!(before.iter().all(|r| r["status"] == "new"));
    assert_eq!(after, [order(&db, 1), order(&db, 2)]);
    assert!(after.iter().all(|r| r["status"] == "bulk"));
    assert_eq!(order(&db, 3)["status"], "new");

    // A compound filter; a filter matching no row with expected_count 0 is a no-op.
    let answer = ann.edit(
        "orders",
        "update_where",
        json!({"filter": {"and": [cond("customer_id", "eq", json!(2)), cond("qty", "gt", json!(100))]}, "expected_count": 0, "set": {"status": "x"}}),
    );
    assert_eq!(success(&answer, "update_where").0, 0);

    let was = order(&db, 3);
    let answer = ann.edit("orders", "delete_where", json!({"filter": {"or": [cond("code", "eq", json!("B1")), cond("qty", "gt", json!(50))]}, "expected_count": 1}));
    let (count, before, _) = success(&answer, "delete_where");
    assert_eq!(count, 1);
    assert_eq!(before, [was]);
    let ids: Vec<i64> = orders(&db).iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2]);
}

// ---------------------------------------------------------------------------------
// 2. Validation errors, each naming its field(s) and cause
// ---------------------------------------------------------------------------------

#[test]
fn a_value_of_the_wrong_type_names_its_field_value_and_type() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = orders(&db);
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"price": "ten"}})), "update");
    assert_eq!(error["code"], "type", "{error}");
    assert_eq!(error["sqlstate"], "22P02", "{error}");
    assert_eq!(error["field"], "price", "{error}");
    assert_eq!(error["value"], "ten", "{error}");
    assert_eq!(error["type"], "numeric(10,2)", "{error}");
    assert!(error["message"].as_str().unwrap().contains("numeric"), "{error}");

    let error = only_error(&ann.edit("orders", "insert", json!({"rows": [{"code": "T", "placed_on": "2024-13-45"}]})), "insert");
    assert_eq!((error["code"].as_str(), error["field"].as_str()), (Some("type"), Some("placed_on")), "{error}");
    assert_eq!((error["value"].as_str(), error["type"].as_str()), (Some("2024-13-45"), Some("date")), "{error}");

    // A key of the wrong type names the key column.
    let error = only_error(&ann.edit("orders", "delete", json!({"keys": [{"id": "one"}]})), "delete");
    assert_eq!((error["code"].as_str(), error["field"].as_str(), error["value"].as_str()), (Some("type"), Some("id"), Some("one")), "{error}");
    assert_eq!(error["type"], "bigint");
    assert_eq!(orders(&db), before, "nothing changed");
}

#[test]
fn a_varchar_too_long_names_its_field_and_limit() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"code": "ABCDEFGHIJ"}})), "update");
    assert_eq!(error["code"], "type", "{error}");
    assert_eq!(error["sqlstate"], "22001", "{error}");
    assert_eq!(error["field"], "code", "{error}");
    assert_eq!(error["value"], "ABCDEFGHIJ", "{error}");
    assert_eq!(error["type"], "character varying(8)", "{error}");
    assert!(error["message"].as_str().unwrap().contains("too long"), "{error}");
    // Eight characters fit, multi-byte ones too.
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"code": "ÄÖÜ表🐘xyz"}}));
    success(&answer, "update");
    assert_eq!(order(&db, 1)["code"], "ÄÖÜ表🐘xyz");
}

#[test]
fn a_value_too_long_for_a_varchar_domain_is_refused_not_cut() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE DOMAIN public.short_code AS varchar(5);
             CREATE TABLE public.labels (id int PRIMARY KEY, code public.short_code);
             INSERT INTO public.labels VALUES (1, 'abc');",
        )
        .unwrap();
    // What Postgres itself does with the same value.
    let plain = db.connect(Caller::Superuser).execute("UPDATE public.labels SET code = 'abcdefgh' WHERE id = 1", &[]).unwrap_err();
    assert_eq!(plain.code().unwrap().code(), "22001");
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit("labels", "update", json!({"keys": [{"id": 1}], "set": {"code": "abcdefgh"}}));
    let stored = table_rows(&db, "public.labels", "id")[0]["code"].clone();
    assert_eq!(stored, "abc", "the value was changed to {stored}: {answer}");
    let error = only_error(&answer, "update");
    assert_eq!((error["code"].as_str(), error["field"].as_str(), error["sqlstate"].as_str()), (Some("type"), Some("code"), Some("22001")), "{error}");
}

#[test]
fn a_number_too_large_for_its_numeric_precision_names_its_field() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"price": 123456789012u64}})), "update");
    assert_eq!(error["code"], "type", "{error}");
    assert_eq!(error["sqlstate"], "22003", "{error}");
    assert_eq!(num(&order(&db, 1)["price"]), 10.0);
    let named = error["field"] == "price" || error["fields"] == json!(["price"]);
    assert!(named, "the error names the column price: {error}");
    assert_eq!(error["type"], "numeric(10,2)", "{error}");
}

#[test]
fn a_domain_check_names_its_field_and_constraint() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"qty": 0}})), "update");
    assert_eq!(error["code"], "check", "{error}");
    assert_eq!(error["sqlstate"], "23514", "{error}");
    assert_eq!(error["field"], "qty", "{error}");
    assert_eq!(error["value"], "0", "{error}");
    assert_eq!(error["type"], "public.positive_int", "{error}");
    assert_eq!(error["constraint"], "positive_int_check", "{error}");
    assert!(error["message"].as_str().unwrap().contains("positive_int"), "{error}");
    // In an insert too; a non-integer for the domain is a type error.
    let errors = refused(&ann.edit("orders", "insert", json!({"rows": [{"code": "X1", "qty": -3}, {"code": "X2", "qty": "many"}]})), "insert");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e["code"] == "check" && e["field"] == "qty" && e["value"] == "-3"), "{errors:?}");
    assert!(errors.iter().any(|e| e["code"] == "type" && e["field"] == "qty" && e["value"] == "many"), "{errors:?}");
    assert_eq!(order(&db, 1)["qty"], 2);
    assert_eq!(orders(&db).len(), 3);
}

#[test]
fn not_null_names_its_column() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    // Set to NULL.
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"status": null}})), "update");
    assert_eq!(error["code"], "not_null", "{error}");
    assert_eq!(error["sqlstate"], "23502", "{error}");
    assert_eq!(error["fields"], json!(["status"]), "{error}");
    assert!(error["message"].as_str().unwrap().contains("status"), "{error}");
    assert_eq!(order(&db, 1)["status"], "new");
    // Left out of an insert, with no default.
    let error = only_error(&ann.edit("customers", "insert", json!({"rows": [{"id": 3}]})), "insert");
    assert_eq!((error["code"].as_str(), error["sqlstate"].as_str()), (Some("not_null"), Some("23502")), "{error}");
    assert_eq!(error["fields"], json!(["email"]), "{error}");
    assert_eq!(table_rows(&db, "public.customers", "id").len(), 2);
}

#[test]
fn a_not_null_domain_names_its_column() {
    let db = TestDb::new();
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE DOMAIN public.required_text AS text NOT NULL;
             CREATE TABLE public.notes (id int PRIMARY KEY, body public.required_text);
             INSERT INTO public.notes VALUES (1, 'hello');",
        )
        .unwrap();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("notes", "update", json!({"keys": [{"id": 1}], "set": {"body": null}})), "update");
    assert_eq!((error["code"].as_str(), error["sqlstate"].as_str()), (Some("not_null"), Some("23502")), "{error}");
    assert_eq!(table_rows(&db, "public.notes", "id")[0]["body"], "hello");
    let named = error["field"] == "body" || error["fields"] == json!(["body"]);
    assert!(named, "the error names the column body: {error}");
}

#[test]
fn a_table_check_names_its_constraint_and_field() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"price": -1}})), "update");
    assert_eq!(error["code"], "check", "{error}");
    assert_eq!(error["sqlstate"], "23514", "{error}");
    assert_eq!(error["constraint"], "orders_price_nonneg", "{error}");
    assert_eq!(error["fields"], json!(["price"]), "{error}");
    assert!(error["message"].as_str().unwrap().contains("orders_price_nonneg"), "{error}");
    assert_eq!(num(&order(&db, 1)["price"]), 10.0);
}

#[test]
fn a_foreign_key_names_its_constraint_and_field() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"customer_id": 99}})), "update");
    assert_eq!(error["code"], "foreign_key", "{error}");
    assert_eq!(error["sqlstate"], "23503", "{error}");
    assert_eq!(error["constraint"], "orders_customer_fk", "{error}");
    assert_eq!(error["fields"], json!(["customer_id"]), "{error}");
    assert!(error["detail"].as_str().unwrap_or("").contains("99"), "{error}");
    assert_eq!(order(&db, 1)["customer_id"], 1);
    // Deleting a referenced row: refused, naming the constraint.
    let error = only_error(&ann.edit("customers", "delete", json!({"keys": [{"id": 2}]})), "delete");
    assert_eq!((error["code"].as_str(), error["constraint"].as_str()), (Some("foreign_key"), Some("orders_customer_fk")), "{error}");
    assert_eq!(table_rows(&db, "public.customers", "id").len(), 2);
}

#[test]
fn uniqueness_and_exclusion_name_their_constraint_and_fields() {
    let db = TestDb::new();
    shop(&db);
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.bookings (id int PRIMARY KEY, room int NOT NULL, during tsrange NOT NULL,
                 CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&));
             INSERT INTO public.bookings VALUES (1, 1, '[2024-01-01,2024-01-05)');",
        )
        .unwrap();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let error = only_error(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"code": "A2"}})), "update");
    assert_eq!(error["code"], "unique", "{error}");
    assert_eq!(error["sqlstate"], "23505", "{error}");
    assert_eq!(error["constraint"], "orders_code_key", "{error}");
    assert_eq!(error["fields"], json!(["code"]), "{error}");
    assert_eq!(order(&db, 1)["code"], "A1");
    // The primary key is a unique constraint too.
    let error = only_error(&ann.edit("customers", "insert", json!({"rows": [{"id": 1, "email": "new@example.com"}]})), "insert");
    assert_eq!((error["code"].as_str(), error["constraint"].as_str()), (Some("unique"), Some("customers_pkey")), "{error}");
    assert_eq!(error["fields"], json!(["id"]), "{error}");

    let error = only_error(&ann.edit("bookings", "insert", json!({"rows": [{"id": 2, "room": 1, "during": "[2024-01-03,2024-01-09)"}]})), "insert");
    assert_eq!(error["code"], "exclusion", "{error}");
    assert_eq!(error["sqlstate"], "23P01", "{error}");
    assert_eq!(error["constraint"], "bookings_no_overlap", "{error}");
    assert_eq!(error["fields"], json!(["during"]), "{error}");
    assert_eq!(table_rows(&db, "public.bookings", "id").len(), 1);
}

#[test]
fn several_bad_fields_are_all_reported_at_once() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = orders(&db);
    let answer = ann.edit(
        "orders",
        "update",
        json!({"keys": [{"id": 1}], "set": {"price": "abc", "code": "WAY-TOO-LONG", "qty": 0, "placed_on": "yesterday-ish", "status": "ok"}}),
    );
    let errors = refused(&answer, "update");
    assert_eq!(errors.len(), 4, "one error per bad field: {answer}");
    let price = error_for(&errors, "price");
    assert_eq!((price["code"].as_str(), price["value"].as_str(), price["type"].as_str()), (Some("type"), Some("abc"), Some("numeric(10,2)")));
    let code = error_for(&errors, "code");
    assert_eq!((code["code"].as_str(), code["sqlstate"].as_str(), code["value"].as_str()), (Some("type"), Some("22001"), Some("WAY-TOO-LONG")));
    let qty = error_for(&errors, "qty");
    assert_eq!((qty["code"].as_str(), qty["constraint"].as_str()), (Some("check"), Some("positive_int_check")));
    let placed = error_for(&errors, "placed_on");
    assert_eq!((placed["code"].as_str(), placed["type"].as_str()), (Some("type"), Some("date")));
    assert!(errors.iter().all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty())), "{errors:?}");
    // Across the rows of an insert, too.
    let answer = ann.edit("orders", "insert", json!({"rows": [{"code": "OK1"}, {"code": "X", "price": "n/a"}, {"code": "123456789", "qty": "0"}]}));
    let errors = refused(&answer, "insert");
    assert_eq!(errors.len(), 3, "{answer}");
    assert_eq!(error_for(&errors, "price")["value"], "n/a");
    assert_eq!(error_for(&errors, "code")["value"], "123456789");
    assert_eq!(error_for(&errors, "qty")["code"], "check");
    assert_eq!(orders(&db), before, "nothing changed");
}

// ---------------------------------------------------------------------------------
// 3. All or nothing
// ---------------------------------------------------------------------------------

#[test]
fn a_batch_update_whose_third_row_breaks_a_unique_constraint_changes_nothing() {
    let db = TestDb::new();
    shop(&db);
    db.connect(Caller::Superuser).execute("INSERT INTO public.orders (id, code) VALUES (4, 'TAKEN')", &[]).unwrap();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = orders(&db);
    // Setting one code on three rows: the first may take it, the second cannot.
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}, {"id": 2}, {"id": 3}], "set": {"code": "SAME", "status": "x"}}));
    let error = only_error(&answer, "update");
    assert_eq!((error["code"].as_str(), error["constraint"].as_str()), (Some("unique"), Some("orders_code_key")), "{error}");
    assert_eq!(orders(&db), before, "no row changed");
    // The third row's new value collides with another row: the first two went through
    // inside the statement, and are undone with it.
    db.connect(Caller::Superuser)
        .batch_execute(
            "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_note_key UNIQUE (customer_id, note);
             INSERT INTO public.customers VALUES (3, 'c@example.com');
             INSERT INTO public.orders (id, customer_id, code, note) VALUES (5, 3, 'C1', 'x'), (6, 3, 'C2', 'done');",
        )
        .unwrap();
    let before = orders(&db);
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}, {"id": 3}, {"id": 5}], "set": {"note": "done", "status": "closed"}}));
    let error = only_error(&answer, "update");
    assert_eq!((error["code"].as_str(), error["constraint"].as_str()), (Some("unique"), Some("orders_customer_note_key")), "{error}");
    assert_eq!(error["fields"], json!(["customer_id", "note"]), "both columns of the constraint: {error}");
    assert_eq!(orders(&db), before, "no row changed, not even the first two");
}

#[test]
fn a_batch_insert_whose_third_row_breaks_a_foreign_key_inserts_nothing() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = orders(&db);
    let answer = ann.edit(
        "orders",
        "insert",
        json!({"rows": [{"code": "I1", "customer_id": 1}, {"code": "I2", "customer_id": 2}, {"code": "I3", "customer_id": 42}]}),
    );
    let error = only_error(&answer, "insert");
    assert_eq!((error["code"].as_str(), error["constraint"].as_str()), (Some("foreign_key"), Some("orders_customer_fk")), "{error}");
    assert_eq!(error["fields"], json!(["customer_id"]));
    assert_eq!(orders(&db), before, "nothing inserted");
    // The identity may have moved on, but the next good insert works.
    let answer = ann.edit("orders", "insert", json!({"rows": [{"code": "I1", "customer_id": 1}]}));
    success(&answer, "insert");
    assert_eq!(orders(&db).len(), 4);
}

#[test]
fn a_filtered_edit_whose_count_changed_is_refused_and_changes_nothing() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    // The admin looked when customer 1 had two orders; another one arrived since.
    db.connect(Caller::Superuser).execute("INSERT INTO public.orders (customer_id, code) VALUES (1, 'LATE')", &[]).unwrap();
    let before = orders(&db);
    let answer = ann.edit("orders", "update_where", json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 2, "set": {"status": "bulk"}}));
    let error = only_error(&answer, "update_where");
    assert_eq!(error["code"], "count_changed", "{error}");
    assert_eq!(error["sqlstate"], "55000", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains('3') && message.contains('2'), "says how many match now and were expected: {message}");
    assert_eq!(orders(&db), before);
    let answer = ann.edit("orders", "delete_where", json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 2}));
    assert_eq!(only_error(&answer, "delete_where")["code"], "count_changed");
    // Fewer than expected is refused too.
    let answer = ann.edit("orders", "delete_where", json!({"filter": cond("customer_id", "eq", json!(2)), "expected_count": 2}));
    assert_eq!(only_error(&answer, "delete_where")["code"], "count_changed");
    assert_eq!(orders(&db), before, "nothing changed");
    // With the count as it is now, it goes through.
    let answer = ann.edit("orders", "delete_where", json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 3}));
    assert_eq!(success(&answer, "delete_where").0, 3);
    assert_eq!(orders(&db).len(), 1);
}

#[test]
fn a_keys_batch_with_a_missing_key_is_refused_and_changes_nothing() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = orders(&db);
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}, {"id": 2}, {"id": 999}], "set": {"status": "gone?"}}));
    let error = only_error(&answer, "update");
    assert_eq!((error["code"].as_str(), error["sqlstate"].as_str()), (Some("count_changed"), Some("55000")), "{error}");
    let answer = ann.edit("orders", "delete", json!({"keys": [{"id": 3}, {"id": 999}]}));
    assert_eq!(only_error(&answer, "delete")["code"], "count_changed");
    // A row deleted since the admin looked.
    db.connect(Caller::Superuser).execute("DELETE FROM public.orders WHERE id = 2", &[]).unwrap();
    let before_after_delete = orders(&db);
    assert_eq!(before_after_delete.len(), before.len() - 1);
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 2}], "set": {"status": "x"}}));
    assert_eq!(only_error(&answer, "update")["code"], "count_changed");
    assert_eq!(orders(&db), before_after_delete, "nothing changed");
    assert!(edits_done(&db).is_empty(), "no edit audited as done");
}

// ---------------------------------------------------------------------------------
// 4. Read-only relations
// ---------------------------------------------------------------------------------

#[test]
fn views_materialized_views_and_tables_without_a_primary_key_are_read_only() {
    let db = TestDb::new();
    shop(&db);
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE VIEW public.order_view AS SELECT * FROM public.orders;
             CREATE MATERIALIZED VIEW public.order_totals AS SELECT id, total FROM public.orders;
             CREATE TABLE public.event_log (id int, message text);
             INSERT INTO public.event_log VALUES (1, 'boot');
             CREATE TABLE public.uniquely_keyed (code text NOT NULL UNIQUE, v int);
             INSERT INTO public.uniquely_keyed VALUES ('a', 1);",
        )
        .unwrap();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let cases = [
        ("order_view", "is a view: only tables are edited here", json!({"keys": [{"id": 1}], "set": {"status": "x"}})),
        ("order_totals", "is a materialized view: only tables are edited here", json!({"keys": [{"id": 1}]})),
        ("event_log", "has no primary key", json!({"keys": [{"id": 1}]})),
        ("uniquely_keyed", "has no primary key", json!({"keys": [{"code": "a"}]})),
    ];
    for (relation, reason, keys) in &cases {
        for (operation, payload) in [
            ("update", json!({"keys": keys["keys"], "set": {"v": 1}})),
            ("delete", keys.clone()),
            ("insert", json!({"rows": [{}]})),
            ("delete_where", json!({"filter": cond("id", "is_null", Value::Null), "expected_count": 0})),
        ] {
            let (state, message) = failure(ann.try_edit("public", relation, operation, payload));
            assert_eq!(state, "55000", "{operation} on {relation}: {message}");
            assert!(message.contains(reason), "{operation} on {relation}: {message}");
            assert!(message.contains(&format!("\"public\".\"{relation}\"")), "names the relation: {message}");
        }
        let page = ann.try_browse("public", relation).unwrap_or_else(|e| panic!("browse {relation}: {}", describe(&e)));
        let why = page["paging"]["read_only_reason"].as_str().unwrap_or_else(|| panic!("no read_only_reason for {relation}: {}", page["paging"]));
        assert!(why.contains(reason), "{relation}: {why}");
    }
    let page = ann.try_browse("public", "orders").unwrap();
    assert!(page["paging"]["read_only_reason"].is_null(), "{}", page["paging"]);
    assert_eq!(orders(&db).len(), 3);
    assert_eq!(table_rows(&db, "public.event_log", "id").len(), 1);
    assert_eq!(table_rows(&db, "public.uniquely_keyed", "code"), [json!({"code": "a", "v": 1})]);
    assert!(edits_done(&db).is_empty(), "no edit audited as done");
}

// ---------------------------------------------------------------------------------
// 5. Impersonated edits: RLS USING and WITH CHECK
// ---------------------------------------------------------------------------------

/// The shared RLS fixture, plus a third private todo of joe's. Returns (joe's id, bea's
/// id); rows 1, 2, 5 are joe's, 3 bea's, 4 nobody's.
fn todos(db: &TestDb) -> (String, String) {
    let ids = fluxbase_tests::fixtures::rls_todos(db);
    fluxbase_tests::fixtures::add_private_todo(db, &ids.0, "joe third");
    ids
}

fn todo_rows(db: &TestDb) -> Vec<Value> {
    table_rows(db, "public.todos", "id")
}

#[test]
fn an_impersonated_user_may_update_their_own_row_and_it_is_audited() {
    let db = TestDb::new();
    let (joe, _) = todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let answer = ann
        .try_edit_as(&imp, "todos", "update", json!({"keys": [{"id": 1}], "set": {"title": "joe edited"}}))
        .unwrap_or_else(|e| panic!("impersonated edit: {}", describe(&e)));
    let (count, before, after) = success(&answer, "update");
    assert_eq!(count, 1);
    assert_eq!(before[0]["title"], "joe private");
    assert_eq!(after[0]["title"], "joe edited");
    assert_eq!(after[0]["owner"], joe.as_str());
    let rows = todo_rows(&db);
    assert_eq!(rows[0]["title"], "joe edited");
    assert_eq!(after, [rows[0].clone()]);
    assert_eq!(rows.iter().filter(|r| r["title"] == "joe edited").count(), 1);
    // The data login is itself again.
    let row = ann.p.data.query_one("SELECT current_user::text", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "fluxbase_data");

    let entries = audits(&db, "impersonated.explorer.update.%");
    let intent = audit_ids(&db, "impersonated.explorer.update.intent")[0];
    let actions: Vec<&str> = entries.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(actions, ["impersonated.explorer.update.intent", "impersonated.explorer.update.result"]);
    let (_, target_type, target_id, details) = &entries[1];
    assert_eq!((target_type.as_deref(), target_id.as_deref()), (Some("impersonation"), Some(imp.as_str())));
    assert_eq!(details["intent_id"], intent);
    assert_eq!(details["ok"], true, "{details}");
    assert_eq!(details["table"], "todos");
    assert_eq!(details["schema"], "public");
    assert_eq!(details["operation"], "update");
    assert_eq!(details["count"], 1);
    assert_eq!(details["before"][0]["title"], "joe private", "{details}");
    assert_eq!(details["after"][0]["title"], "joe edited", "{details}");
    // An impersonated edit is not an unimpersonated explorer.update.
    assert!(audits(&db, "explorer.update").is_empty());
}

#[test]
fn an_impersonated_update_that_moves_a_row_out_of_reach_is_refused_by_with_check() {
    let db = TestDb::new();
    let (_, bea) = todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = todo_rows(&db);
    let imp = ann.impersonate("joe@example.com");
    let answer = ann
        .try_edit_as(&imp, "todos", "update", json!({"keys": [{"id": 1}], "set": {"owner": bea}}))
        .unwrap_or_else(|e| panic!("impersonated edit: {}", describe(&e)));
    let error = only_error(&answer, "update");
    assert_eq!(error["code"], "permission", "{error}");
    assert_eq!(error["sqlstate"], "42501", "{error}");
    assert!(error["message"].as_str().unwrap().contains("row-level security"), "{error}");
    assert_eq!(todo_rows(&db), before, "nothing changed");
    // An insert for someone else is refused the same way.
    let answer = ann.try_edit_as(&imp, "todos", "insert", json!({"rows": [{"owner": bea, "title": "for bea"}]})).unwrap();
    assert_eq!(only_error(&answer, "insert")["code"], "permission");
    assert_eq!(todo_rows(&db), before, "nothing inserted");

    let entries = audits(&db, "impersonated.explorer.%");
    let actions: Vec<&str> = entries.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["impersonated.explorer.update.intent", "impersonated.explorer.update.result",
         "impersonated.explorer.insert.intent", "impersonated.explorer.insert.result"]
    );
    let intent = audit_ids(&db, "impersonated.explorer.update.intent")[0];
    let result = &entries[1].3;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["intent_id"], intent);
    assert_eq!(result["errors"][0]["code"], "permission", "{result}");
    assert_eq!(entries[3].3["errors"][0]["sqlstate"], "42501");
    assert!(audits(&db, "explorer.update").is_empty() && audits(&db, "explorer.insert").is_empty());
}

#[test]
fn an_impersonated_update_of_someone_elses_row_matches_no_row() {
    let db = TestDb::new();
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let before = todo_rows(&db);
    let imp = ann.impersonate("joe@example.com");
    // Row 3 is bea's: RLS hides it from joe, so the key matches nothing.
    let answer = ann.try_edit_as(&imp, "todos", "update", json!({"keys": [{"id": 3}], "set": {"title": "hijacked"}})).unwrap();
    let error = only_error(&answer, "update");
    assert_eq!((error["code"].as_str(), error["sqlstate"].as_str()), (Some("count_changed"), Some("55000")), "{error}");
    // A delete of it, and a filter reaching it: joe's rows only.
    let answer = ann.try_edit_as(&imp, "todos", "delete", json!({"keys": [{"id": 3}]})).unwrap();
    assert_eq!(only_error(&answer, "delete")["code"], "count_changed");
    let answer = ann
        .try_edit_as(&imp, "todos", "update_where", json!({"filter": cond("title", "like", json!("%private")), "expected_count": 2, "set": {"title": "x"}}))
        .unwrap();
    let error = only_error(&answer, "update_where");
    assert_eq!(error["code"], "count_changed", "joe sees one private row, not two: {error}");
    assert_eq!(todo_rows(&db), before, "nothing changed");
    // Unimpersonated, the admin sees both.
    let answer = ann.edit("todos", "update_where", json!({"filter": cond("title", "like", json!("%private")), "expected_count": 2, "set": {"public": true}}));
    assert_eq!(success(&answer, "update_where").0, 2);

    let entries = audits(&db, "impersonated.explorer.%");
    let actions: Vec<&str> = entries.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["impersonated.explorer.update.intent", "impersonated.explorer.update.result",
         "impersonated.explorer.delete.intent", "impersonated.explorer.delete.result",
         "impersonated.explorer.update_where.intent", "impersonated.explorer.update_where.result"]
    );
    let intents = audit_ids(&db, "impersonated.explorer.%.intent");
    for (i, intent) in [(1, intents[0]), (3, intents[1]), (5, intents[2])] {
        let result = &entries[i].3;
        assert_eq!(result["ok"], false, "{result}");
        assert_eq!(result["intent_id"], intent);
        assert_eq!(result["errors"][0]["code"], "count_changed", "{result}");
    }
}

#[test]
fn an_impersonated_user_may_delete_a_row_they_may_delete_but_not_update() {
    let db = TestDb::new();
    let (joe, _) = todos(&db);
    db.connect(Caller::Superuser)
        .batch_execute(&format!(
            "CREATE TABLE public.messages (id int PRIMARY KEY, owner uuid NOT NULL, body text);
             ALTER TABLE public.messages ENABLE ROW LEVEL SECURITY;
             CREATE POLICY messages_read ON public.messages FOR SELECT TO authenticated USING (owner = (select auth.uid()));
             CREATE POLICY messages_delete ON public.messages FOR DELETE TO authenticated USING (owner = (select auth.uid()));
             GRANT SELECT, DELETE ON public.messages TO authenticated;
             INSERT INTO public.messages VALUES (1, '{joe}', 'hello'), (2, '{joe}', 'again');"
        ))
        .unwrap();
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    // Joe may delete his message with plain SQL (rolled back here), as psql does it.
    {
        let ticket = ann.p.ticket(&ann.token, "impersonate", &json!({"read_only": false}), Some(&imp)).unwrap();
        let mut tx = ann.p.data.transaction().unwrap();
        tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
        tx.execute("SELECT auth.apply_impersonation()", &[]).unwrap();
        assert_eq!(tx.execute("DELETE FROM public.messages WHERE id = 1", &[]).unwrap(), 1, "joe may delete it");
        tx.rollback().unwrap();
    }
    let answer = ann.try_edit_as(&imp, "messages", "delete", json!({"keys": [{"id": 1}]})).unwrap();
    let ids: Vec<i64> = table_rows(&db, "public.messages", "id").iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(answer["ok"], true, "the delete joe may do goes through: {answer}");
    assert_eq!(ids, [2]);
    // With UPDATE granted but no UPDATE policy.
    db.connect(Caller::Superuser).batch_execute("GRANT UPDATE ON public.messages TO authenticated").unwrap();
    let answer = ann
        .try_edit_as(&imp, "messages", "delete_where", json!({"filter": cond("body", "eq", json!("again")), "expected_count": 1}))
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(table_rows(&db, "public.messages", "id").is_empty());
}

#[test]
fn an_impersonated_edit_needs_an_active_impersonation() {
    let db = TestDb::new();
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let payload = json!({"keys": [{"id": 1}], "set": {"title": "x"}});
    // No impersonation of this admin's: refused by the ticket.
    let (state, message) = failure(ann.try_edit_as("00000000-0000-0000-0000-000000000000", "todos", "update", payload.clone()));
    assert_eq!(state, "FB001", "{message}");
    // Ended between the ticket and the claim: refused by the claim, nothing changed.
    let ticket = ann.p.ticket(&ann.token, "edit", &edit_request("public", "todos", "update", payload.clone()), Some(&imp)).unwrap();
    as_dashboard(&mut ann.p.web, "SELECT auth.end_impersonation($1)", &[&ann.token]).unwrap();
    let (state, message) = failure(claimed(&mut ann.p.data, &ticket, "SELECT fluxbase_admin.edit()::text", &[]).map(|rows| rows.len()));
    assert_eq!(state, "FB001", "{message}");
    assert!(message.contains("not active"), "{message}");
    // Ended: refused by the ticket.
    let (state, message) = failure(ann.try_edit_as(&imp, "todos", "update", payload));
    assert_eq!(state, "FB001", "{message}");
    assert_eq!(todo_rows(&db)[0]["title"], "joe private");
    assert!(audits(&db, "impersonated.%.result").is_empty());
}

// ---------------------------------------------------------------------------------
// 6. Viewers
// ---------------------------------------------------------------------------------

#[test]
fn a_viewer_is_refused_for_edits_plain_and_impersonated() {
    let db = TestDb::new();
    shop(&db);
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let imp = ann.impersonate("joe@example.com");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let before = (orders(&db), todo_rows(&db));
    for (operation, payload) in [
        ("update", json!({"keys": [{"id": 1}], "set": {"status": "x"}})),
        ("insert", json!({"rows": [{"code": "V"}]})),
        ("delete", json!({"keys": [{"id": 1}]})),
        ("update_where", json!({"filter": cond("id", "eq", json!(1)), "expected_count": 1, "set": {"status": "x"}})),
        ("delete_where", json!({"filter": cond("id", "eq", json!(1)), "expected_count": 1})),
    ] {
        let (state, message) = failure(vic.try_edit("public", "orders", operation, payload));
        assert_eq!(state, "42501", "{operation}: {message}");
    }
    // Nor with the admin's impersonation, as an edit or as psql.
    let (state, message) = failure(vic.try_edit_as(&imp, "todos", "update", json!({"keys": [{"id": 1}], "set": {"title": "x"}})));
    assert_eq!(state, "42501", "{message}");
    let (state, message) = failure(vic.p.ticket(&vic.token, "impersonate", &json!({"read_only": false}), Some(&imp)));
    assert_eq!(state, "42501", "{message}");
    assert_eq!((orders(&db), todo_rows(&db)), before, "nothing changed");
    assert!(audits(&db, "explorer.%").iter().all(|(a, ..)| a == "explorer.browse"), "refused before any intent");
    assert!(audits(&db, "impersonated.%").is_empty());
}

// ---------------------------------------------------------------------------------
// 7. Audit
// ---------------------------------------------------------------------------------

#[test]
fn a_successful_edit_is_audited_with_the_rows_before_and_after() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let answer = ann.edit("orders", "update", json!({"keys": [{"id": 1}, {"id": 2}], "set": {"status": "audited"}}));
    success(&answer, "update");
    let answer = ann.edit("orders", "insert", json!({"rows": [{"code": "AU"}]}));
    let new_id = success(&answer, "insert").2[0]["id"].as_i64().unwrap();
    let answer = ann.edit("orders", "delete_where", json!({"filter": cond("code", "eq", json!("AU")), "expected_count": 1}));
    success(&answer, "delete_where");

    let all = audits(&db, "explorer.%");
    let actions: Vec<&str> = all.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["explorer.update.intent", "explorer.update", "explorer.insert.intent", "explorer.insert",
         "explorer.delete_where.intent", "explorer.delete_where"]
    );
    for (action, target_type, target_id, details) in &all {
        assert_eq!((target_type.as_deref(), target_id.as_deref()), (Some("relation"), Some("public.orders")), "{action}");
        assert_eq!((details["schema"].as_str(), details["table"].as_str()), (Some("public"), Some("orders")), "{action}: {details}");
    }
    // Each result names its intent.
    let ids = audit_ids(&db, "explorer.%");
    for i in [1, 3, 5] {
        assert_eq!(all[i].3["intent_id"], ids[i - 1], "{}", all[i].3);
    }
    let entries: Vec<_> = all.into_iter().filter(|(a, ..)| !a.ends_with(".intent")).collect();
    let update = &entries[0].3;
    assert_eq!((update["operation"].as_str(), update["count"].as_i64()), (Some("update"), Some(2)), "{update}");
    let before = by_id(&update["before"]);
    let after = by_id(&update["after"]);
    assert_eq!(before.iter().map(|r| r["status"].clone()).collect::<Vec<_>>(), [json!("new"), json!("new")], "{update}");
    assert_eq!(after.iter().map(|r| r["status"].clone()).collect::<Vec<_>>(), [json!("audited"), json!("audited")], "{update}");
    assert_eq!(after, [order(&db, 1), order(&db, 2)]);
    let insert = &entries[1].3;
    assert_eq!((insert["operation"].as_str(), insert["count"].as_i64()), (Some("insert"), Some(1)));
    assert_eq!(insert["before"], json!([]));
    assert_eq!(insert["after"][0]["id"], new_id);
    assert_eq!(insert["after"][0]["code"], "AU");
    let deleted = &entries[2].3;
    assert_eq!(deleted["count"], 1);
    assert_eq!(deleted["before"][0]["id"], new_id, "{deleted}");

    // The entry commits with the change: rolled back together (the intent stays).
    let request = edit_request("public", "orders", "update", json!({"keys": [{"id": 3}], "set": {"status": "rolled back"}}));
    let ticket = ann.p.ticket(&ann.token, "edit", &request, None).unwrap();
    let mut tx = ann.p.data.transaction().unwrap();
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket]).unwrap();
    let answer: Value = serde_json::from_str(&tx.query_one("SELECT fluxbase_admin.edit()::text", &[]).unwrap().get::<_, String>(0)).unwrap();
    success(&answer, "update");
    tx.rollback().unwrap();
    assert_eq!(order(&db, 3)["status"], "new");
    assert_eq!(edits_done(&db).len(), 3, "no entry for the rolled back edit");
    assert_eq!(audits(&db, "explorer.%.intent").len(), 4, "its intent is recorded all the same");
}

#[test]
fn a_failed_edit_is_audited_as_failed_never_as_done() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let failed = [
        ("update", json!({"keys": [{"id": 1}], "set": {"price": "abc"}})),
        ("update", json!({"keys": [{"id": 1}], "set": {"code": "A2"}})),
        ("insert", json!({"rows": [{"customer_id": 42}]})),
        ("delete", json!({"keys": [{"id": 99}]})),
        ("update_where", json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 7, "set": {"status": "x"}})),
        ("delete_where", json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 7})),
    ];
    let mut refusals = Vec::new();
    for (operation, payload) in failed {
        let answer = ann.edit("orders", operation, payload);
        refusals.push(refused(&answer, operation));
    }
    // Each answered refusal: its intent, then a failed entry with its errors.
    let entries = audits(&db, "explorer.%");
    let actions: Vec<&str> = entries.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["explorer.update.intent", "explorer.update.failed", "explorer.update.intent", "explorer.update.failed",
         "explorer.insert.intent", "explorer.insert.failed", "explorer.delete.intent", "explorer.delete.failed",
         "explorer.update_where.intent", "explorer.update_where.failed", "explorer.delete_where.intent", "explorer.delete_where.failed"]
    );
    let ids = audit_ids(&db, "explorer.%");
    for (i, errors) in refusals.iter().enumerate() {
        let details = &entries[2 * i + 1].3;
        assert_eq!(details["intent_id"], ids[2 * i], "{details}");
        assert_eq!(&details["errors"], &Value::Array(errors.clone()), "{details}");
        assert!(details["after"].is_null() && details["count"].is_null(), "{details}");
    }
    // Raised while planning: the intent only. Refused by the ticket: no entry at all.
    failure(ann.try_edit("public", "orders", "insert", json!({"rows": [{"total": 1}]})));
    failure(ann.try_edit("public", "orders", "upsert", json!({"rows": [{"code": "x"}]})));
    let actions: Vec<String> = audits(&db, "explorer.%").into_iter().skip(12).map(|(a, ..)| a).collect();
    assert_eq!(actions, ["explorer.insert.intent"]);
    assert!(edits_done(&db).is_empty(), "{:?}", edits_done(&db));
    assert_eq!(orders(&db).len(), 3);
}

// ---------------------------------------------------------------------------------
// 8. Hostile input as data
// ---------------------------------------------------------------------------------

const HOSTILE_TABLE: &str = "we\"ird; DROP TABLE public.canary; -- ñ表🐘";
const HOSTILE_KEY: &str = "select";
const HOSTILE_COLUMN: &str = "va\"l'; ue 🚀 --";
const HOSTILE_UNIQUE: &str = "Order";
const HOSTILE_CONSTRAINT: &str = "uq \"Order\"; --";

fn hostile(db: &TestDb) {
    let qi = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    db.connect(Caller::Superuser)
        .batch_execute(&format!(
            "CREATE TABLE public.canary (id int PRIMARY KEY);
             INSERT INTO public.canary VALUES (1);
             CREATE TABLE public.{t} ({k} int PRIMARY KEY, {c} text NOT NULL, {u} varchar(20) CONSTRAINT {uc} UNIQUE, tags text[], doc jsonb);
             INSERT INTO public.{t} VALUES (1, 'one', 'o1', NULL, NULL), (2, 'two', 'o2', NULL, NULL);",
            t = qi(HOSTILE_TABLE),
            k = qi(HOSTILE_KEY),
            c = qi(HOSTILE_COLUMN),
            u = qi(HOSTILE_UNIQUE),
            uc = qi(HOSTILE_CONSTRAINT),
        ))
        .unwrap();
}

fn hostile_rows(db: &TestDb) -> Vec<Value> {
    table_rows(db, &format!("public.\"{}\"", HOSTILE_TABLE.replace('"', "\"\"")), "\"select\"")
}

fn hostile_row(db: &TestDb, key: i64) -> Option<Value> {
    hostile_rows(db).into_iter().find(|r| r[HOSTILE_KEY] == key)
}

fn canary_alive(db: &TestDb) {
    assert_eq!(table_rows(db, "public.canary", "id"), [json!({"id": 1})], "the canary table keeps its one row");
}

#[test]
fn a_table_and_columns_with_hostile_names_are_edited_correctly() {
    let db = TestDb::new();
    hostile(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    // Update, by the reserved-word key.
    let answer = ann.edit(HOSTILE_TABLE, "update", json!({"keys": [{HOSTILE_KEY: 1}], "set": {HOSTILE_COLUMN: "uno", HOSTILE_UNIQUE: "O-1"}}));
    let (count, before, after) = success(&answer, "update");
    assert_eq!(count, 1);
    assert_eq!(before[0][HOSTILE_COLUMN], "one");
    let row = hostile_row(&db, 1).unwrap();
    assert_eq!((row[HOSTILE_COLUMN].as_str(), row[HOSTILE_UNIQUE].as_str()), (Some("uno"), Some("O-1")));
    assert_eq!(after[0], row);
    // Insert.
    let answer = ann.edit(HOSTILE_TABLE, "insert", json!({"rows": [{HOSTILE_KEY: 3, HOSTILE_COLUMN: "three"}]}));
    success(&answer, "insert");
    assert_eq!(hostile_row(&db, 3).unwrap()[HOSTILE_COLUMN], "three");
    // Errors name the hostile fields and constraint.
    let error = only_error(&ann.edit(HOSTILE_TABLE, "update", json!({"keys": [{HOSTILE_KEY: 2}], "set": {HOSTILE_COLUMN: null}})), "update");
    assert_eq!((error["code"].as_str(), error["fields"].clone()), (Some("not_null"), json!([HOSTILE_COLUMN])), "{error}");
    let error = only_error(&ann.edit(HOSTILE_TABLE, "update", json!({"keys": [{HOSTILE_KEY: 2}], "set": {HOSTILE_UNIQUE: "O-1"}})), "update");
    assert_eq!(error["code"], "unique", "{error}");
    assert_eq!(error["constraint"], HOSTILE_CONSTRAINT, "{error}");
    assert_eq!(error["fields"], json!([HOSTILE_UNIQUE]), "{error}");
    let errors = refused(&ann.edit(HOSTILE_TABLE, "update", json!({"keys": [{HOSTILE_KEY: 2}], "set": {HOSTILE_UNIQUE: "x".repeat(21)}})), "update");
    assert_eq!(error_for(&errors, HOSTILE_UNIQUE)["sqlstate"], "22001");
    // Filtered, then by key: delete.
    let answer = ann.edit(HOSTILE_TABLE, "update_where", json!({"filter": cond(HOSTILE_COLUMN, "like", json!("t%")), "expected_count": 2, "set": {HOSTILE_UNIQUE: null}}));
    assert_eq!(success(&answer, "update_where").0, 2);
    let answer = ann.edit(HOSTILE_TABLE, "delete", json!({"keys": [{HOSTILE_KEY: 2}]}));
    assert_eq!(success(&answer, "delete").0, 1);
    let keys: Vec<i64> = hostile_rows(&db).iter().map(|r| r[HOSTILE_KEY].as_i64().unwrap()).collect();
    assert_eq!(keys, [1, 3]);
    // Audited under the quoted name: each edit's intent and its result (four done, three
    // failed).
    assert_eq!(edits_done(&db).len(), 4);
    let entries = audits(&db, "explorer.%");
    assert_eq!(entries.len(), 14);
    assert_eq!(entries.iter().filter(|(a, ..)| a.ends_with(".failed")).count(), 3);
    let expected_target = format!("public.\"{}\"", HOSTILE_TABLE.replace('"', "\"\""));
    assert!(entries.iter().all(|(_, _, target, d)| target.as_deref() == Some(expected_target.as_str()) && d["table"] == HOSTILE_TABLE), "{entries:?}");
    canary_alive(&db);
}

#[test]
fn hostile_values_are_stored_verbatim() {
    let db = TestDb::new();
    hostile(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let values = [
        "'); DROP TABLE public.canary; --",
        "\"; DROP TABLE public.canary; --",
        "$1[1]",
        "$$; SELECT pg_sleep(5); $$",
        "back\\slash\\",
        "NULL",
        "",
        "  padded  ",
        "line\nbreak\ttab",
        "Ünïcødé 表 🐘 e\u{301} \u{202e}rtl",
        "%s %I %L",
    ];
    for (i, value) in values.iter().enumerate() {
        let key = 100 + i as i64;
        let answer = ann.edit(HOSTILE_TABLE, "insert", json!({"rows": [{HOSTILE_KEY: key, HOSTILE_COLUMN: value, "tags": [value, "b,c", "{d}", null], "doc": {"v": value}}]}));
        let (_, _, after) = success(&answer, "insert");
        let row = hostile_row(&db, key).unwrap_or_else(|| panic!("{value:?} not inserted"));
        assert_eq!(row[HOSTILE_COLUMN], *value, "stored verbatim");
        assert_eq!(row["tags"], json!([value, "b,c", "{d}", null]), "array elements verbatim");
        assert_eq!(row["doc"], json!({"v": value}));
        assert_eq!(after[0], row);
        // And as a new value of an update, and as a filter value.
        let answer = ann.edit(HOSTILE_TABLE, "update", json!({"keys": [{HOSTILE_KEY: 1}], "set": {HOSTILE_COLUMN: value}}));
        success(&answer, "update");
        assert_eq!(hostile_row(&db, 1).unwrap()[HOSTILE_COLUMN], *value);
        let answer = ann.edit(HOSTILE_TABLE, "update_where", json!({"filter": cond(HOSTILE_COLUMN, "eq", json!(value)), "expected_count": 2, "set": {"doc": {"seen": true}}}));
        assert_eq!(success(&answer, "update_where").0, 2, "the filter matches the value exactly: {value:?}");
    }
    // A value as a key is a value too.
    let answer = ann.edit(HOSTILE_TABLE, "delete", json!({"keys": [{HOSTILE_KEY: "1; DELETE FROM public.canary"}]}));
    let error = only_error(&answer, "delete");
    assert_eq!((error["code"].as_str(), error["field"].as_str()), (Some("type"), Some(HOSTILE_KEY)), "{error}");
    // A big number keeps every digit.
    db.connect(Caller::Superuser)
        .batch_execute(&format!("ALTER TABLE public.\"{}\" ADD COLUMN big bigint", HOSTILE_TABLE.replace('"', "\"\"")))
        .unwrap();
    let answer = ann.edit(HOSTILE_TABLE, "update", json!({"keys": [{HOSTILE_KEY: 2}], "set": {"big": 9007199254740993i64}}));
    success(&answer, "update");
    let big: i64 = db
        .connect(Caller::Superuser)
        .query_one(&format!("SELECT big FROM public.\"{}\" WHERE \"select\" = 2", HOSTILE_TABLE.replace('"', "\"\"")), &[])
        .unwrap()
        .get(0);
    assert_eq!(big, 9007199254740993);
    canary_alive(&db);
    assert_eq!(hostile_rows(&db).len(), 2 + values.len());
}

// ---------------------------------------------------------------------------------
// Undo: reverting an edit from its audit entry
// ---------------------------------------------------------------------------------

/// The id of the latest audit entry whose action is `action`.
fn last_entry(db: &TestDb, action: &str) -> i64 {
    *audit_ids(db, action).last().unwrap_or_else(|| panic!("no {action} entry"))
}

/// Reverts `entry` as `ex`: the answer, which must not raise.
fn revert(ex: &mut Explorer, entry: i64) -> Value {
    ex.p.revert(&ex.token, entry).unwrap_or_else(|e| panic!("revert {entry}: {}", describe(&e)))
}

#[test]
fn reverting_an_update_sets_the_rows_back_and_a_second_revert_is_refused() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let original = orders(&db);
    success(&ann.edit("orders", "update", json!({"keys": [{"id": 1}, {"id": 2}], "set": {"status": "shipped", "note": null, "qty": 5}})), "update");
    let entry = last_entry(&db, "explorer.update");
    let answer = revert(&mut ann, entry);
    let (count, was, now) = success(&answer, "revert");
    assert_eq!(count, 2);
    assert_eq!(answer["reverted_operation"], "update");
    assert_eq!(was.iter().map(|r| r["status"].clone()).collect::<Vec<_>>(), [json!("shipped"), json!("shipped")]);
    assert_eq!(orders(&db), original, "every column back, the generated total recomputed");
    assert_eq!(now, original[..2].to_vec());
    // Recorded: the intent, then the revert, naming the entry it undid.
    let entries = audits(&db, "explorer.reverted%");
    let actions: Vec<&str> = entries.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(actions, ["explorer.reverted.intent", "explorer.reverted"]);
    let (_, target_type, target_id, details) = &entries[1];
    assert_eq!((target_type.as_deref(), target_id.as_deref()), (Some("relation"), Some("public.orders")));
    assert_eq!((details["reverted_entry"].clone(), details["reverted_operation"].clone()), (json!(entry), json!("update")), "{details}");
    assert_eq!((details["operation"].clone(), details["count"].clone()), (json!("revert"), json!(2)), "{details}");
    assert_eq!(details["before"][0]["status"], "shipped", "{details}");
    assert_eq!(entries[0].3["reverted_entry"], entry);

    // Again: the rows are no longer as the edit left them. Refused, said so, recorded.
    let again = revert(&mut ann, entry);
    let error = only_error(&again, "revert");
    assert_eq!(error["code"], "changed_since", "{error}");
    assert!(error["message"].as_str().unwrap().contains("changed since the edit"), "{error}");
    assert_eq!(orders(&db), original);
    let failed = audits(&db, "explorer.reverted.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].3["reverted_entry"].clone(), failed[0].3["errors"][0]["code"].clone()), (json!(entry), json!("changed_since")));
}

#[test]
fn a_revert_is_refused_when_a_row_changed_since_the_edit_and_changes_nothing() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    success(&ann.edit("orders", "update_where", json!({"filter": cond("customer_id", "eq", json!(1)), "expected_count": 2, "set": {"status": "paid"}})), "update_where");
    let entry = last_entry(&db, "explorer.update_where");
    // Someone else changes one of the two rows afterwards.
    db.connect(Caller::Superuser).batch_execute("UPDATE public.orders SET note = 'changed by someone' WHERE id = 2").unwrap();
    let changed = orders(&db);
    let error = only_error(&revert(&mut ann, entry), "revert");
    assert_eq!(error["code"], "changed_since", "{error}");
    assert_eq!(error["detail"], "1 of the 2 rows are as the edit left them.", "{error}");
    assert_eq!(orders(&db), changed, "neither row was reverted");
    // Put back as the edit left it, the revert goes through.
    db.connect(Caller::Superuser).batch_execute("UPDATE public.orders SET note = 'second' WHERE id = 2").unwrap();
    let (count, ..) = success(&revert(&mut ann, entry), "revert");
    assert_eq!(count, 2);
    assert!(orders(&db).iter().all(|r| r["status"] == "new"));
}

#[test]
fn reverting_an_update_of_a_rows_key_moves_it_back() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let original = orders(&db);
    success(&ann.edit("orders", "update", json!({"keys": [{"id": 3}], "set": {"id": 30, "code": "B9"}})), "update");
    success(&revert(&mut ann, last_entry(&db, "explorer.update")), "revert");
    assert_eq!(orders(&db), original);
}

#[test]
fn reverting_an_insert_deletes_its_rows_and_reverting_a_delete_inserts_them_again() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let original = orders(&db);
    success(&ann.edit("orders", "insert", json!({"rows": [{"id": 10, "customer_id": 2, "code": "N1"}, {"id": 11, "note": "x"}]})), "insert");
    let (count, was, now) = success(&revert(&mut ann, last_entry(&db, "explorer.insert")), "revert");
    assert_eq!((count, was.len(), now.len()), (2, 2, 0));
    assert_eq!(orders(&db), original);

    success(&ann.edit("orders", "delete", json!({"keys": [{"id": 3}, {"id": 1}]})), "delete");
    assert_eq!(orders(&db).len(), 1);
    let (count, was, now) = success(&revert(&mut ann, last_entry(&db, "explorer.delete")), "revert");
    assert_eq!((count, was.len()), (2, 0));
    assert_eq!(now, vec![original[0].clone(), original[2].clone()]);
    assert_eq!(orders(&db), original, "the same ids and values, the generated total recomputed");

    // A delete whose rows came back some other way is refused: they have changed since.
    success(&ann.edit("orders", "delete_where", json!({"filter": cond("status", "eq", json!("new")), "expected_count": 3})), "delete_where");
    let entry = last_entry(&db, "explorer.delete_where");
    db.connect(Caller::Superuser).batch_execute("INSERT INTO public.orders (id, code) VALUES (2, 'Z')").unwrap();
    let error = only_error(&revert(&mut ann, entry), "revert");
    assert_eq!(error["code"], "changed_since", "{error}");
    db.connect(Caller::Superuser).batch_execute("DELETE FROM public.orders").unwrap();
    success(&revert(&mut ann, entry), "revert");
    assert_eq!(orders(&db), original);
    // An insert whose rows are gone already is refused too.
    success(&ann.edit("orders", "insert", json!({"rows": [{"id": 20}]})), "insert");
    db.connect(Caller::Superuser).batch_execute("DELETE FROM public.orders WHERE id = 20").unwrap();
    let error = only_error(&revert(&mut ann, last_entry(&db, "explorer.insert")), "revert");
    assert_eq!(error["code"], "changed_since", "{error}");
}

#[test]
fn an_impersonated_edit_is_reverted_as_the_explorer() {
    let db = TestDb::new();
    todos(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    let original = todo_rows(&db);
    let imp = ann.impersonate("joe@example.com");
    success(&ann.try_edit_as(&imp, "todos", "update", json!({"keys": [{"id": 1}], "set": {"title": "joe edited"}})).unwrap(), "update");
    let entry = last_entry(&db, "impersonated.explorer.update.result");
    let (count, ..) = success(&revert(&mut ann, entry), "revert");
    assert_eq!(count, 1);
    assert_eq!(todo_rows(&db), original);
    // Not while impersonated: a revert runs as the explorer.
    let (state, message) = failure(ann.p.json(&ann.token, "revert", &json!({"audit_id": entry}), Some(&imp), "SELECT fluxbase_admin.revert_edit()::text"));
    assert_eq!(state, "22023", "{message}");
}

#[test]
fn a_revert_needs_an_admin_and_an_edits_audit_entry() {
    let db = TestDb::new();
    shop(&db);
    let mut ann = sign_in(&db, "ann@example.com", "admin");
    success(&ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"status": "x"}})), "update");
    let entry = last_entry(&db, "explorer.update");
    let mut vic = sign_in(&db, "vic@example.com", "viewer");
    let (state, message) = failure(vic.p.revert(&vic.token, entry));
    assert_eq!(state, "42501", "{message}");
    assert_eq!(order(&db, 1)["status"], "x");
    // Entries that are no edit, or a failed one, cannot be reverted; an unknown one is not found.
    let failed_edit = ann.edit("orders", "update", json!({"keys": [{"id": 1}], "set": {"qty": -1}}));
    refused(&failed_edit, "update");
    for action in ["explorer.update.intent", "explorer.update.failed", "admin.login"] {
        let id = last_entry(&db, action);
        let (state, message) = failure(ann.p.revert(&ann.token, id));
        assert_eq!(state, "22023", "{action}: {message}");
        assert!(message.contains("is not an edit that can be reverted"), "{message}");
    }
    let (state, _) = failure(ann.p.revert(&ann.token, 987654321));
    assert_eq!(state, "P0002");
    let (state, message) = failure(ann.p.ticket(&ann.token, "revert", &json!({"audit_id": "1"}), None));
    assert_eq!(state, "22023", "{message}");
    assert!(audits(&db, "explorer.reverted%").is_empty(), "refused tickets record nothing");
}
