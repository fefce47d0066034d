//! What the builder knows about a relation: read from the system catalogs by
//! `fluxbase_admin.relation_shape(oid)` (sql/explorer_browse.sql) and handed over as JSON.
//! Every name and operator in it comes from the catalogs, never from a request.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Shape {
    pub schema: String,
    pub name: String,
    pub kind: String,
    /// The planner's row count (pg_class.reltuples) of a table; None for views and
    /// tables never analysed.
    pub estimated_rows: Option<i64>,
    pub columns: Vec<Column>,
    /// The primary key, or a unique index whose columns are all NOT NULL.
    pub key: Option<Key>,
    /// Valid, non-partial btree indexes, their leading plain columns in order.
    #[serde(default)]
    pub indexes: Vec<Index>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    /// The type as a person reads it (`character varying(40)`).
    #[serde(rename = "type")]
    pub display_type: String,
    /// The base type (domains resolved), schema-qualified and quoted, without a type
    /// modifier: what request values are cast to.
    pub cast: String,
    /// `pg_type.typcategory` of the base type: S string, A array, N numeric, ...
    pub category: String,
    /// `pg_type.typname` of the base type (`jsonb`, `bytea`, `int4`, ...).
    pub base: String,
    pub not_null: bool,
    /// The declared type, schema-qualified, without a type modifier: what written values
    /// are cast to, so that a domain's checks run (assignment applies the modifier).
    #[serde(default)]
    pub declared_cast: String,
    /// A generated column (Postgres computes it).
    #[serde(default)]
    pub generated: bool,
    /// The type with its modifier where a cast with it checks what the column would
    /// refuse (`numeric(10,2)`): set only for plain numeric columns.
    #[serde(default)]
    pub checked_cast: Option<String>,
    /// The most characters a `character varying(n)` or `character(n)` column holds
    /// (through a domain too).
    #[serde(default)]
    pub max_length: Option<i64>,
    /// `always` or `by default` for an identity column.
    #[serde(default)]
    pub identity: Option<String>,
    /// The comparison operators of the type's default btree operator class, as
    /// `OPERATOR("schema".op)`; absent when the type has none (json, point, ...).
    pub ops: Option<Operators>,
    /// The default btree operator class lives in pg_catalog: comparisons in a keyset
    /// predicate then order exactly as ORDER BY does, and trusted code runs them.
    #[serde(default)]
    pub builtin_order: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Operators {
    pub eq: String,
    pub ne: Option<String>,
    pub lt: String,
    pub le: String,
    pub gt: String,
    pub ge: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Key {
    pub columns: Vec<String>,
    /// The constraint or index it comes from.
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<IndexColumn>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexColumn {
    /// NULL for an expression: matching stops there.
    pub name: Option<String>,
    pub descending: bool,
    pub nulls_first: bool,
}

impl Shape {
    pub fn column(&self, name: &str) -> Result<&Column, String> {
        self.columns.iter().find(|c| c.name == name).ok_or_else(|| {
            format!("{} has no column {}", self.qualified_name(), quote_ident(name))
        })
    }

    /// `"schema"."name"`, quoted always: safe for any name and exact about case.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl Column {
    pub fn is_text(&self) -> bool {
        self.category == "S"
    }

    pub fn is_array(&self) -> bool {
        self.category == "A"
    }

    pub fn is_json(&self) -> bool {
        self.base == "jsonb" || self.base == "json"
    }

    /// Values that can be large enough to be cut short in a page.
    pub fn can_be_large(&self) -> bool {
        self.is_text() || self.is_array() || self.is_json() || self.base == "xml" || self.base == "bytea"
    }

    /// The filter operators `builder::condition` accepts for this column, for a page that
    /// offers only those: comparisons and `in` need the type's btree operators, `like`
    /// and `ilike` a text column, `contains` jsonb or an array.
    pub fn filter_ops(&self) -> Vec<&'static str> {
        let mut ops = Vec::new();
        if self.ops.is_some() {
            ops.extend(["eq", "neq", "lt", "lte", "gt", "gte", "in"]);
        }
        if self.is_text() {
            ops.extend(["like", "ilike"]);
        }
        if self.base == "jsonb" || self.is_array() {
            ops.push("contains");
        }
        ops.extend(["is_null", "not_null"]);
        ops
    }

    pub fn operators(&self) -> Result<&Operators, String> {
        self.ops.as_ref().ok_or_else(|| {
            format!("column {} ({}) cannot be compared or sorted", quote_ident(&self.name), self.display_type)
        })
    }
}

/// An identifier quoted the way Postgres's quote_ident would when quoting is needed,
/// except that it always quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn identifiers_are_always_quoted_and_quotes_doubled() {
        assert_eq!(quote_ident("id"), "\"id\"");
        assert_eq!(quote_ident("a\"; DROP TABLE x; --"), "\"a\"\"; DROP TABLE x; --\"");
        assert_eq!(quote_ident("Ünï cödé"), "\"Ünï cödé\"");
    }
}
