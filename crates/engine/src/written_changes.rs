//! What a written record changed, field by field, for the run's per-record outcomes (the dashboard's run
//! page): kept only for the records a run lists (`run::MAX_WRITES_LISTED`), so a large first load pays
//! for a thousand diffs at most.

use crate::diff::diff;
use serde_json::Value;

/// The changes from `old` (what the target last acknowledged; `None` for a record created now) to the
/// record's new canonical JSON, as `[{path, old, new}]`; `None` when the new JSON does not parse.
pub fn changes(old: Option<&Value>, new_canonical: &str) -> Option<Value> {
    let new: Value = serde_json::from_str(new_canonical).ok()?;
    let empty = Value::Object(Default::default());
    let mut list = diff(old.unwrap_or(&empty), &new);
    // The canonical hash leaves `updated_at` out (it is not content); the diff does too.
    list.retain(|c| c.path != "updated_at");
    serde_json::to_value(list).ok()
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
        let created = changes(None, r#"{"sku":"B","name":"Bolt"}"#).unwrap();
        assert_eq!(created, json!([{"path": "sku", "old": null, "new": "B"}, {"path": "name", "old": null, "new": "Bolt"}]));
        assert_eq!(changes(None, "not json"), None);
    }
}
