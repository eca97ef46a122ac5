//! What Vendure answers, parsed: any JSON as an order (every element, when an array), as a GraphQL
//! answer's errors and as an error result. An order either becomes a record that is valid canonical
//! data, or an invalid item naming the order and field; never a panic.
#![no_main]
use ferry_connectors::vendure::gql::{error_result, parse_errors};
use ferry_connectors::vendure::translate_order;
use ferry_engine::connector::ReadItem;
use ferry_model::{Record, Stream};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn order(v: &Value) {
    for prices_include_tax in [false, true] {
        match translate_order(v, prices_include_tax) {
            ReadItem::Record(r) => {
                Record::parse(Stream::Orders, r.data, &r.position).expect("a translated order is valid canonical data");
            }
            ReadItem::Invalid { position, .. } => assert!(!position.is_empty()),
            ReadItem::Checkpoint(_) => unreachable!("translate yields records or invalid items"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    order(&value);
    if let Value::Array(items) = &value {
        items.iter().for_each(order);
    }
    let _ = parse_errors(&value);
    let _ = error_result(&value, Some("sku"));
});
