//! Work on the data plane the way `fluxbase serve` does it (architecture.md, "Two
//! planes"): a ticket from the dashboard login, then a transaction on the data login
//! whose first statement claims it.

use postgres::types::ToSql;
use postgres::{Client, Row};
use serde_json::Value;

use crate::admin::as_dashboard;
use crate::{Caller, TestDb};

/// The two logins of one admin's work.
pub struct Planes {
    pub web: Client,
    pub data: Client,
}

impl Planes {
    pub fn connect(db: &TestDb) -> Self {
        Planes { web: db.connect(Caller::Dashboard), data: db.connect(Caller::Data) }
    }

    /// A ticket for `operation` from the dashboard plane (committed, as the binary does).
    pub fn ticket(&mut self, token: &str, operation: &str, request: &Value, impersonation: Option<&str>) -> Result<String, postgres::Error> {
        let request = request.to_string();
        let rows = as_dashboard(
            &mut self.web,
            "SELECT fluxbase_admin.issue_ticket($1, $2, $3::text::jsonb, $4::text::uuid)",
            &[&token, &operation, &request, &impersonation],
        )?;
        Ok(rows[0].get(0))
    }

    /// Claims `ticket` on the data login and runs `sql` after it, in one transaction that
    /// commits when `sql` succeeds.
    pub fn claimed(&mut self, ticket: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        claimed(&mut self.data, ticket, sql, params)
    }

    /// A ticket, then its work: `sql` runs on the data login after the claim.
    pub fn run(&mut self, token: &str, operation: &str, request: &Value, impersonation: Option<&str>, sql: &str) -> Result<Vec<Row>, postgres::Error> {
        let ticket = self.ticket(token, operation, request, impersonation)?;
        self.claimed(&ticket, sql, &[])
    }

    /// One call that returns jsonb (browse, edit), as a JSON value.
    pub fn json(&mut self, token: &str, operation: &str, request: &Value, impersonation: Option<&str>, sql: &str) -> Result<Value, postgres::Error> {
        let rows = self.run(token, operation, request, impersonation, sql)?;
        let text: String = rows[0].get(0);
        Ok(serde_json::from_str(&text).expect("the function returns JSON"))
    }

    /// A page of a browse (or follow) request.
    pub fn browse(&mut self, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
        self.json(token, "browse", request, impersonation, "SELECT fluxbase_admin.browse()::text")
    }

    /// A follow request's page.
    pub fn follow(&mut self, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
        self.json(token, "follow", request, impersonation, "SELECT fluxbase_admin.browse()::text")
    }

    /// An edit's answer.
    pub fn edit(&mut self, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
        self.json(token, "edit", request, impersonation, "SELECT fluxbase_admin.edit()::text")
    }

    /// One cell in full (read_cell).
    pub fn cell(&mut self, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
        self.json(token, "cell", request, impersonation, "SELECT fluxbase_admin.read_cell()::text")
    }

    /// Rows by their keys as an INSERT statement and as JSON (copy_rows).
    pub fn copy(&mut self, token: &str, request: &Value, impersonation: Option<&str>) -> Result<Value, postgres::Error> {
        self.json(token, "copy", request, impersonation, "SELECT fluxbase_admin.copy_rows()::text")
    }

    /// A revert's answer: `{"audit_id": entry}` undone (revert_edit).
    pub fn revert(&mut self, token: &str, audit_id: i64) -> Result<Value, postgres::Error> {
        self.json(token, "revert", &serde_json::json!({"audit_id": audit_id}), None, "SELECT fluxbase_admin.revert_edit()::text")
    }

    /// A whole export: its header and every CSV line, fetched 1,000 at a time.
    pub fn export(&mut self, token: &str, request: &Value, impersonation: Option<&str>) -> Result<(String, Vec<String>), postgres::Error> {
        let ticket = self.ticket(token, "export", request, impersonation)?;
        export_claimed(&mut self.data, &ticket)
    }
}

/// Claims `ticket` on `data` and runs `sql`, in one transaction.
pub fn claimed(data: &mut Client, ticket: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
    let mut tx = data.transaction()?;
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket])?;
    let rows = tx.query(sql, params)?;
    tx.commit()?;
    Ok(rows)
}

/// Opens a claimed CSV export and reads it to the end.
pub fn export_claimed(data: &mut Client, ticket: &str) -> Result<(String, Vec<String>), postgres::Error> {
    let (header, lines) = export_lines(data, ticket)?;
    Ok((header.expect("a CSV export has a header"), lines))
}

/// Opens a claimed export of any format and reads it to the end: its header (none for
/// JSON Lines) and its lines.
pub fn export_lines(data: &mut Client, ticket: &str) -> Result<(Option<String>, Vec<String>), postgres::Error> {
    let mut tx = data.transaction()?;
    tx.execute("SELECT fluxbase_admin.claim_ticket($1)", &[&ticket])?;
    let opened = tx.query_one("SELECT portal::text, header FROM fluxbase_admin.open_export()", &[])?;
    let portal: String = opened.get(0);
    let header: Option<String> = opened.get(1);
    let mut lines = Vec::new();
    loop {
        let batch = tx.query(&format!("FETCH 1000 FROM \"{}\"", portal.replace('"', "\"\"")), &[])?;
        if batch.is_empty() {
            break;
        }
        lines.extend(batch.iter().map(|r| r.get::<_, String>(0)));
    }
    tx.commit()?;
    Ok((header, lines))
}

/// A ticket whose request is JSON text, cast to jsonb by Postgres (so that numbers keep
/// every digit and malformed or too-deep JSON is refused by Postgres itself), from the
/// dashboard plane, committed.
pub fn ticket_text(web: &mut Client, token: &str, operation: &str, request: &str, impersonation: Option<&str>) -> Result<String, postgres::Error> {
    let rows = as_dashboard(
        web,
        "SELECT fluxbase_admin.issue_ticket($1, $2, $3::text::jsonb, $4::text::uuid)",
        &[&token, &operation, &request, &impersonation],
    )?;
    Ok(rows[0].get(0))
}

/// Runs `statement` (with %I for the login) as a superuser for every data login of the
/// database (fluxbase_admin.data_logins), such as `GRANT editor TO %I` before a test
/// lists `editor` in users.extra_roles.
pub fn for_each_data_login(su: &mut Client, statement: &str) {
    su.batch_execute(&format!(
        "DO $$ DECLARE l text; BEGIN
             FOR l IN SELECT * FROM fluxbase_admin.data_logins() LOOP EXECUTE format('{}', l); END LOOP;
         END $$",
        statement.replace('\'', "''")
    ))
    .unwrap();
}

/// The `id` column of a browse page's rows, in order.
pub fn ids(page: &Value) -> Vec<i64> {
    page["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {page}"))
        .iter()
        .map(|r| r["values"]["id"].as_i64().unwrap_or_else(|| panic!("no id in {r}")))
        .collect()
}
