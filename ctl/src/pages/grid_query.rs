//! The grid's view in the address, so that a reload, a bookmark or a link shows the same
//! rows. It is what the filter form submits (it works without JavaScript):
//!
//! - `fc`, `fo`, `fv`: one condition each, repeated in step (column, operator, value);
//! - `match=any` joins the conditions with OR (all of them by default);
//! - `sort=column:asc` (or `:desc`), repeated in order;
//! - `q`: search across the text columns; `size`: rows a page; `cursor`: the page.
//!
//! It becomes a browse request (README, "Browsing"); the extension checks everything.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub column: String,
    pub op: String,
    pub value: String,
}

impl Condition {
    pub fn takes_value(&self) -> bool {
        !matches!(self.op.as_str(), "is_null" | "not_null")
    }

    /// The condition as the browse request words it. `in` takes a comma-separated list;
    /// `contains` takes JSON. Every other value is text, read as Postgres reads it for
    /// the column's type.
    fn request(&self) -> Result<Value, String> {
        let mut condition = json!({"column": self.column, "op": self.op});
        match self.op.as_str() {
            "is_null" | "not_null" => {}
            "in" => {
                condition["value"] = self.value.split(',').map(|v| Value::from(v.trim())).collect();
            }
            "contains" => {
                let value = serde_json::from_str::<Value>(&self.value).map_err(|_| {
                    format!("The value of “contains” on {} is JSON, such as [\"vip\"] or {{\"plan\": \"pro\"}}.", self.column)
                })?;
                condition["value"] = value;
            }
            _ => condition["value"] = Value::from(self.value.clone()),
        }
        Ok(condition)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SortBy {
    pub column: String,
    pub descending: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GridQuery {
    pub conditions: Vec<Condition>,
    pub any: bool,
    pub sort: Vec<SortBy>,
    pub search: String,
    pub page_size: Option<String>,
    pub cursor: Option<String>,
}

impl GridQuery {
    /// Reads the address's query. Unknown fields are ignored; a condition without a
    /// column (the form's blank row) is no condition.
    pub fn parse(raw: Option<&str>) -> GridQuery {
        let mut query = GridQuery::default();
        let (mut columns, mut ops, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            match name.as_ref() {
                "fc" => columns.push(value),
                "fo" => ops.push(value),
                "fv" => values.push(value),
                "match" => query.any = value == "any",
                "sort" => {
                    let (column, descending) = match value.rsplit_once(':') {
                        Some((column, "desc")) => (column.to_string(), true),
                        Some((column, "asc")) => (column.to_string(), false),
                        _ => (value, false),
                    };
                    if !column.is_empty() && !query.sort.iter().any(|s| s.column == column) {
                        query.sort.push(SortBy { column, descending });
                    }
                }
                "q" => query.search = value.trim().to_string(),
                "size" if !value.is_empty() => query.page_size = Some(value),
                "cursor" if !value.is_empty() => query.cursor = Some(value),
                _ => {}
            }
        }
        for (i, column) in columns.into_iter().enumerate() {
            if column.is_empty() {
                continue;
            }
            let op = ops.get(i).cloned().filter(|o| !o.is_empty()).unwrap_or_else(|| "eq".to_string());
            query.conditions.push(Condition { column, op, value: values.get(i).cloned().unwrap_or_default() });
        }
        query
    }

    /// The address's query for this view at `cursor` (None: the first page).
    pub fn to_query(&self, cursor: Option<&str>) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for c in &self.conditions {
            out.append_pair("fc", &c.column).append_pair("fo", &c.op).append_pair("fv", &c.value);
        }
        if self.any && self.conditions.len() > 1 {
            out.append_pair("match", "any");
        }
        for s in &self.sort {
            out.append_pair("sort", &format!("{}:{}", s.column, if s.descending { "desc" } else { "asc" }));
        }
        if !self.search.is_empty() {
            out.append_pair("q", &self.search);
        }
        if let Some(size) = &self.page_size {
            out.append_pair("size", size);
        }
        if let Some(cursor) = cursor {
            out.append_pair("cursor", cursor);
        }
        out.finish()
    }

    /// The view sorted by `column` alone: ascending, or the other way when it already is.
    pub fn sorted_by(&self, column: &str) -> GridQuery {
        let descending = matches!(self.sort.as_slice(), [only] if only.column == column && !only.descending);
        GridQuery { sort: vec![SortBy { column: column.to_string(), descending }], cursor: None, ..self.clone() }
    }

    /// The same view without a filter or search.
    pub fn unfiltered(&self) -> GridQuery {
        GridQuery { conditions: Vec::new(), any: false, search: String::new(), cursor: None, ..self.clone() }
    }

    pub fn is_filtered(&self) -> bool {
        !self.conditions.is_empty() || !self.search.is_empty()
    }

    /// The browse request for `schema.table`, or the reason the address cannot be one.
    pub fn request(&self, schema: &str, table: &str) -> Result<Value, String> {
        let mut request = json!({"schema": schema, "table": table, "total": "auto"});
        if !self.conditions.is_empty() {
            let conditions = self.conditions.iter().map(Condition::request).collect::<Result<Vec<_>, _>>()?;
            request["filter"] = json!({ if self.any { "or" } else { "and" }: conditions });
        }
        if !self.sort.is_empty() {
            request["sort"] = self
                .sort
                .iter()
                .map(|s| json!({"column": s.column, "direction": if s.descending { "desc" } else { "asc" }}))
                .collect();
        }
        if !self.search.is_empty() {
            request["search"] = Value::from(self.search.clone());
        }
        if let Some(size) = &self.page_size {
            let size: i64 = size.parse().map_err(|_| format!("The page size {size:?} is not a number."))?;
            request["page_size"] = Value::from(size);
        }
        if let Some(cursor) = &self.cursor {
            request["cursor"] = Value::from(cursor.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_round_trips() {
        let raw = "fc=status&fo=eq&fv=paid&fc=&fo=eq&fv=&fc=tags&fo=contains&fv=%5B%22vip%22%5D&match=any&sort=a%3Ab%3Adesc&sort=id&q=+smith+&size=100&cursor=abc";
        let query = GridQuery::parse(Some(raw));
        assert_eq!(query.conditions.len(), 2, "the blank row is no condition");
        assert!(query.any);
        assert_eq!(query.sort, vec![SortBy { column: "a:b".into(), descending: true }, SortBy { column: "id".into(), descending: false }]);
        assert_eq!(query.search, "smith");
        assert_eq!(GridQuery::parse(Some(&query.to_query(query.cursor.as_deref()))), query);
        let request = query.request("shop", "orders").unwrap();
        assert_eq!(request["filter"]["or"][1], json!({"column": "tags", "op": "contains", "value": ["vip"]}));
        assert_eq!(request["sort"][0], json!({"column": "a:b", "direction": "desc"}));
        assert_eq!(request["page_size"], 100);
    }

    #[test]
    fn sorting_by_a_header_toggles_and_returns_to_the_first_page() {
        let query = GridQuery::parse(Some("sort=id:asc&cursor=c"));
        let toggled = query.sorted_by("id");
        assert!(toggled.sort[0].descending && toggled.cursor.is_none());
        assert!(!toggled.sorted_by("id").sort[0].descending);
        assert_eq!(query.sorted_by("name").sort, vec![SortBy { column: "name".into(), descending: false }]);
    }

    #[test]
    fn values_are_worded_per_operator() {
        let query = GridQuery::parse(Some("fc=id&fo=in&fv=1,+2&fc=n&fo=is_null&fv=x&fc=doc&fo=contains&fv=nope"));
        assert!(query.request("s", "t").unwrap_err().contains("is JSON"));
        let query = GridQuery::parse(Some("fc=id&fo=in&fv=1,+2&fc=n&fo=is_null"));
        let request = query.request("s", "t").unwrap();
        assert_eq!(request["filter"]["and"][0]["value"], json!(["1", "2"]));
        assert!(request["filter"]["and"][1].get("value").is_none());
    }
}
