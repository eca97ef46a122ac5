//! Record keys read from raw JSON, shared by the file connectors.

use ferry_model::Stream;
use serde_json::Value;
use std::str::FromStr;

/// A record's key from its raw JSON, exactly as [`ferry_model::Record::key`] forms it for the parsed record
/// (`sku@location` for stock, `list/sku/min_quantity` with the quantity normalised for prices), so that
/// keys from the file, from the engine and from tombstones always agree. (`ferry_model::key_hint` joins
/// stock keys with `/` and leaves quantities as written, so it cannot be used to match.)
pub fn record_key(stream: Stream, value: &Value) -> Option<String> {
    key_from(stream, |f| value.get(f))
}

pub(crate) fn key_from<'a>(stream: Stream, get: impl Fn(&str) -> Option<&'a Value>) -> Option<String> {
    let text = |field: &str| match get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match stream {
        Stream::Products => text("sku"),
        Stream::Customers => text("code"),
        Stream::Orders | Stream::Shipments => text("number"),
        Stream::Stock => Some(format!("{}@{}", text("sku")?, text("location").unwrap_or_else(|| "default".into()))),
        Stream::Prices => {
            let qty = match text("min_quantity") {
                Some(q) => rust_decimal::Decimal::from_str(&q).map(|d| d.normalize().to_string()).unwrap_or(q),
                None => "1".into(),
            };
            Some(format!("{}/{}/{}", text("price_list")?, text("sku")?, qty))
        }
    }
}

