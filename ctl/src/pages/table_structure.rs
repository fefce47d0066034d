//! `GET /tables/{schema}/{table}/structure`: a table's Structure tab, from
//! `fluxbase_admin.describe_table` and `fluxbase_admin.get_realtime`. Names come from the
//! path (percent-decoded) and are bound, never spliced; an unknown table is the 404 page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use serde::Deserialize;

use crate::pages::tables::{call_rows, human_bytes, human_count, kind_words, rls_words, structure_href};
use crate::pages::Frame;
use crate::state::AppState;
use crate::web::errors::PageError;
use crate::web::session::SignedIn;

#[derive(Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    pub default: Option<String>,
    pub generated: Option<String>,
    pub identity: Option<String>,
    pub description: Option<String>,
    /// Part of the primary key (filled in after reading).
    #[serde(skip)]
    pub key: bool,
}

#[derive(Deserialize)]
pub struct Target {
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
}

#[derive(Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub references: Target,
    #[serde(skip)]
    pub href: String,
}

#[derive(Deserialize)]
pub struct ReferencedBy {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub referenced_columns: Vec<String>,
    #[serde(skip)]
    pub href: String,
}

#[derive(Deserialize)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub primary: bool,
    pub definition: String,
}

#[derive(Deserialize)]
pub struct Policy {
    pub name: String,
    pub command: String,
    pub permissive: bool,
    pub roles: Option<Vec<String>>,
    pub using: Option<String>,
    pub with_check: Option<String>,
}

#[derive(Deserialize)]
pub struct Rls {
    pub enabled: bool,
    pub forced: bool,
    pub policies: Vec<Policy>,
}

#[derive(Deserialize)]
pub struct Grant {
    pub grantee: String,
    pub privileges: Vec<String>,
}

#[derive(Deserialize)]
pub struct Described {
    pub schema: String,
    pub name: String,
    pub kind: Option<String>,
    pub estimated_rows: Option<i64>,
    pub total_bytes: Option<i64>,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    pub primary_key: Option<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    pub referenced_by: Vec<ReferencedBy>,
    pub indexes: Vec<Index>,
    pub rls: Rls,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

#[derive(Template, WebTemplate)]
#[template(path = "table_structure.html")]
pub struct StructurePage {
    frame: Frame,
    t: Described,
    realtime: bool,
    kind: String,
    rows: Option<String>,
    size: String,
    rls: &'static str,
    href: String,
    rows_href: String,
}

pub async fn page(
    who: SignedIn,
    State(state): State<AppState>,
    Path((schema, table)): Path<(String, String)>,
) -> Result<StructurePage, PageError> {
    let rows = call_rows(
        &state,
        &who.context,
        "SELECT fluxbase_admin.describe_table($1, $2, $3)::text AS described,
                fluxbase_admin.get_realtime($1, $2, $3) AS realtime",
        &[&who.token(), &schema, &table],
    )
    .await?;
    let row = rows.into_iter().next().ok_or(PageError::NotFound)?;
    let text: Option<String> = row.get("described");
    let text = text.ok_or(PageError::NotFound)?;
    let mut t: Described = serde_json::from_str(&text).map_err(|e| PageError::Internal(anyhow::anyhow!("describe_table: {e}")))?;
    for column in &mut t.columns {
        column.key = t.primary_key.as_ref().is_some_and(|key| key.contains(&column.name));
    }
    for fk in &mut t.foreign_keys {
        fk.href = structure_href(&fk.references.schema, &fk.references.table);
    }
    for r in &mut t.referenced_by {
        r.href = structure_href(&r.schema, &r.table);
    }
    let title = format!("{}.{} · Structure", t.schema, t.name);
    Ok(StructurePage {
        frame: Frame::signed_in(&who, &title, "tables"),
        realtime: row.get("realtime"),
        kind: t.kind.as_deref().map(kind_words).unwrap_or_default(),
        rows: t.estimated_rows.map(human_count),
        size: human_bytes(t.total_bytes),
        rls: rls_words(t.rls.enabled, t.rls.forced),
        href: structure_href(&t.schema, &t.name),
        rows_href: crate::pages::table_rows::rows_href(&t.schema, &t.name),
        t,
    })
}
