//! What a written record changed, field by field, for the run's per-record outcomes (the dashboard's run
//! page): kept only for the records a run lists (`run::MAX_WRITES_LISTED`), so a large first load pays
//! for a thousand diffs at most.

use crate::diff::{FieldChange, diff};
use serde_json::Value;

/// The changes from `old` (what the target last acknowledged; `None` for a record created now) to the
/// record's new canonical JSON, as `[{path, old, new}]`; `None` when the new JSON does not parse.
pub fn changes(old: Option<&Value>, new_canonical: &str) -> Option<Value> {
    let new: Value = serde_json::from_str(new_canonical).ok()?;
    let mut list = match old {
        Some(old) => diff(old, &new),
        None => {
            let mut leaves = Vec::new();
            new_leaves(String::new(), &new, &mut leaves);
            leaves
        }
    };
    // The canonical hash leaves `updated_at` out (it is not content); the diff does too.
    list.retain(|c| c.path != "updated_at");
    serde_json::to_value(list).ok()
}

/// Every leaf of a created record, each as a field that is new (`price.amount`, not one `price` object).
fn new_leaves(path: String, value: &Value, out: &mut Vec<FieldChange>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::Object(o) if !o.is_empty() => o.iter().for_each(|(k, v)| new_leaves(join(k), v, out)),
        Value::Array(a) if !a.is_empty() => a.iter().enumerate().for_each(|(i, v)| new_leaves(format!("{path}[{i}]"), v, out)),
        Value::Null => {}
        leaf => out.push(FieldChange { path, old: None, new: Some(leaf.clone()) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_lists_the_fields_that_changed_and_a_create_lists_every_field() {
        let old = json!({"sku": "A", "price": {"amount": "19.90", "currency": "AUD"}, "updated_at": "x"});
        let new = r#"{"sku":"A","price":{"amount":"21.00","currency":"AUD"},"updated_at":"y"}"#;
        assert_eq!(changes(Some(&old), new), Some(json!([{"path": "price.amount", "old": "19.90", "new": "21.00"}])));
        let created = changes(None, r#"{"sku":"B","price":{"amount":"2.50"},"tags":["x"],"note":null}"#).unwrap();
        let paths: Vec<&str> = created.as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["price.amount", "sku", "tags[0]"], "a created record's leaves, each new");
        assert_eq!(created[0], json!({"path": "price.amount", "old": null, "new": "2.50"}));
        assert_eq!(changes(None, "not json"), None);
    }
}
