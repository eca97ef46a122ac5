//! What Tryton answers, decoded: every JSON value (at any depth) through the decoders the Tryton
//! connector reads answers with (Decimal / datetime / date objects, booleans, text, dotted fields,
//! `plain` for custom fields) and the error-shape classifier. Never a panic.
#![no_main]
use ferry_connectors::tryton::rpc::{as_bool, as_date, as_datetime, as_decimal, as_text, classify_fault, dotted, plain};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn walk(v: &Value, depth: usize) {
    let _ = as_decimal(v);
    let _ = as_datetime(v);
    let _ = as_date(v);
    let _ = as_bool(v);
    let _ = as_text(Some(v));
    let _ = classify_fault(v);
    if depth > 64 {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, depth + 1)),
        Value::Object(map) => {
            for path in ["template.code", "template.category.name", "country.code", "id"] {
                let _ = dotted(map, path);
            }
            map.values().for_each(|i| walk(i, depth + 1));
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let plain = plain(&value);
    // `plain` yields JSON that serialises (no NaN, nothing unrepresentable).
    let _ = serde_json::to_string(&plain).expect("plain JSON serialises");
    walk(&value, 0);
});
