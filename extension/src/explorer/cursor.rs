//! The page cursor: opaque to callers, base64url of a small JSON document. It carries
//! the order it belongs to, so that a cursor is never applied to another sort, and
//! either a row's sort values (keyset: the last row of the page before, or the first row
//! of the page after when paging backwards) or a row offset (the fallback).

use base64::Engine;
use serde_json::{json, Value};

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// The sort values of the last row of the previous page, as text; None is NULL.
    After(Vec<Option<String>>),
    /// The sort values of the first row of the next page: the page before it.
    Before(Vec<Option<String>>),
    /// Rows to skip.
    Offset(i64),
}

pub fn encode(order: &Value, position: &Position) -> String {
    let doc = match position {
        Position::After(values) => json!({"o": order, "v": values}),
        Position::Before(values) => json!({"o": order, "b": values}),
        Position::Offset(rows) => json!({"o": order, "n": rows}),
    };
    ENGINE.encode(doc.to_string())
}

const INVALID: &str = "the cursor is not valid here: it belongs to another table or sort, or was altered; start from the first page";

pub fn decode(cursor: &str, order: &Value) -> Result<Position, String> {
    let bytes = ENGINE.decode(cursor.trim()).map_err(|_| INVALID.to_string())?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| INVALID.to_string())?;
    if doc.get("o") != Some(order) {
        return Err(INVALID.into());
    }
    if let Some(rows) = doc.get("n") {
        return rows.as_i64().filter(|n| *n >= 0).map(Position::Offset).ok_or_else(|| INVALID.to_string());
    }
    let (values, backward) = match (doc.get("v"), doc.get("b")) {
        (Some(values), None) => (values, false),
        (None, Some(values)) => (values, true),
        _ => return Err(INVALID.into()),
    };
    let values = values
        .as_array()
        .ok_or_else(|| INVALID.to_string())?
        .iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(INVALID.to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if backward { Position::Before(values) } else { Position::After(values) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_order() {
        let order = json!(["public", "t", [["id", false, false]], "keyset"]);
        let after = Position::After(vec![Some("42".into()), None]);
        assert_eq!(decode(&encode(&order, &after), &order), Ok(after));
        let before = Position::Before(vec![None, Some("7".into())]);
        assert_eq!(decode(&encode(&order, &before), &order), Ok(before));
        let offset = Position::Offset(150);
        assert_eq!(decode(&encode(&order, &offset), &order), Ok(offset));
        let other = json!(["public", "t", [["id", true, false]], "keyset"]);
        assert!(decode(&encode(&other, &Position::Offset(1)), &order).is_err());
        assert!(decode("not a cursor'; --", &order).is_err());
        assert!(decode(&ENGINE.encode(r#"{"o":["public","t",[["id",false,false]],"keyset"],"n":-5}"#), &order).is_err());
    }
}
