//! Ferry's canonical commerce model.
//!
//! Every connector translates its system's data to and from these types; the engine only ever moves,
//! maps, hashes and compares them. Plain data: no I/O here.
//!
//! - Money is [`rust_decimal::Decimal`] with a [`Currency`] beside it and an explicit tax-inclusive flag.
//! - Every record has a stable key ([`Record::key`]), an `updated_at` and a `custom` map.
//! - [`Record::parse`] validates and names the record and field of every problem.

pub mod common;
pub mod customer;
pub mod decimal;
pub mod error;
pub mod money;
pub mod order;
pub mod price;
pub mod product;
pub mod schema;
pub mod shipment;
pub mod stock;

pub use common::{Address, Custom};
pub use customer::Customer;
pub use error::{FieldError, RecordError};
pub use money::{Currency, Money, Price};
pub use order::{Discount, DiscountKind, Loyalty, Order, OrderCustomer, OrderLine, OrderStatus, OrderTotals, Payment, Refund, RefundLine, ShippingLine, TaxLine};
pub use price::{PriceListEntry, PriceScope};
pub use product::{Media, MediaKind, Product, ProductStatus, Translation, Weight};
pub use shipment::{Shipment, ShipmentLine};
pub use stock::{StockLevel, StockStatus};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Changes whenever parsing turns the same input into a different canonical record (2: stock without a
/// status gets a derived one). The engine recognises unchanged raw records without parsing them again;
/// this makes it parse everything once more after such a change, so the new meaning reaches the target.
pub const CANONICAL_REVISION: u32 = 2;

/// The kinds of record Ferry syncs. A connector reads and writes streams of one kind each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Products,
    Prices,
    Stock,
    Customers,
    Orders,
    Shipments,
}

impl Stream {
    pub const ALL: [Stream; 6] = [Stream::Products, Stream::Prices, Stream::Stock, Stream::Customers, Stream::Orders, Stream::Shipments];

    pub fn as_str(&self) -> &'static str {
        match self {
            Stream::Products => "products",
            Stream::Prices => "prices",
            Stream::Stock => "stock",
            Stream::Customers => "customers",
            Stream::Orders => "orders",
            Stream::Shipments => "shipments",
        }
    }

    /// The field (or fields) the key is made of, for messages and docs.
    pub fn key_fields(&self) -> &'static [&'static str] {
        match self {
            Stream::Products => &["sku"],
            Stream::Prices => &["price_list", "sku", "min_quantity"],
            Stream::Stock => &["sku", "location"],
            Stream::Customers => &["code"],
            Stream::Orders => &["number"],
            Stream::Shipments => &["number"],
        }
    }

    pub fn json_schema(&self) -> serde_json::Value {
        let schema = match self {
            Stream::Products => schemars::schema_for!(Product),
            Stream::Prices => schemars::schema_for!(PriceListEntry),
            Stream::Stock => schemars::schema_for!(StockLevel),
            Stream::Customers => schemars::schema_for!(Customer),
            Stream::Orders => schemars::schema_for!(Order),
            Stream::Shipments => schemars::schema_for!(Shipment),
        };
        schema.to_value()
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stream::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown stream {s:?}; streams are products, prices, stock, customers, orders, shipments"))
    }
}

/// A validated canonical record of any stream.
// Unboxed on purpose: a record is moved a handful of times per run, and a box would cost an allocation
// per record where the move costs a memcpy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Product(Product),
    Price(PriceListEntry),
    Stock(StockLevel),
    Customer(Customer),
    Order(Order),
    Shipment(Shipment),
}

impl Record {
    pub fn stream(&self) -> Stream {
        match self {
            Record::Product(_) => Stream::Products,
            Record::Price(_) => Stream::Prices,
            Record::Stock(_) => Stream::Stock,
            Record::Customer(_) => Stream::Customers,
            Record::Order(_) => Stream::Orders,
            Record::Shipment(_) => Stream::Shipments,
        }
    }

    /// The stable key: SKU, customer code, order number, `sku@location`, `list/sku/min_qty`.
    pub fn key(&self) -> String {
        match self {
            Record::Product(p) => p.sku.clone(),
            Record::Price(p) => p.key(),
            Record::Stock(s) => s.key(),
            Record::Customer(c) => c.code.clone(),
            Record::Order(o) => o.number.clone(),
            Record::Shipment(s) => s.number.clone(),
        }
    }

    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Record::Product(p) => p.updated_at,
            Record::Price(p) => p.updated_at,
            Record::Stock(s) => s.updated_at,
            Record::Customer(c) => c.updated_at,
            Record::Order(o) => o.updated_at,
            Record::Shipment(s) => s.updated_at,
        }
    }

    /// Replaces `updated_at`, returning the previous value.
    pub fn replace_updated_at(&mut self, at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let slot = match self {
            Record::Product(p) => &mut p.updated_at,
            Record::Price(p) => &mut p.updated_at,
            Record::Stock(s) => &mut s.updated_at,
            Record::Customer(c) => &mut c.updated_at,
            Record::Order(o) => &mut o.updated_at,
            Record::Shipment(s) => &mut s.updated_at,
        };
        std::mem::replace(slot, at)
    }

    /// Parses and validates a JSON value as a record of `stream`. Errors name the record (its key, or
    /// `position` when the key itself is unreadable) and every offending field.
    pub fn parse(stream: Stream, value: serde_json::Value, position: &str) -> Result<Record, RecordError> {
        let record_name = key_hint(stream, &value).unwrap_or_else(|| position.to_owned());
        let fail = |errors: Vec<FieldError>| RecordError { stream: stream.as_str(), record: record_name.clone(), errors };
        let record = match stream {
            Stream::Products => Record::Product(typed(value).map_err(|e| fail(vec![e]))?),
            Stream::Prices => Record::Price(typed(value).map_err(|e| fail(vec![e]))?),
            Stream::Stock => {
                // A source that states no status gets the one its quantities imply, never a blind
                // `in_stock` for an item with nothing on hand.
                let stated = value.get("status").is_some_and(|s| !s.is_null());
                let mut level: stock::StockLevel = typed(value).map_err(|e| fail(vec![e]))?;
                if !stated {
                    level.status = level.derived_status();
                }
                Record::Stock(level)
            }
            Stream::Customers => Record::Customer(typed(value).map_err(|e| fail(vec![e]))?),
            Stream::Orders => Record::Order(typed(value).map_err(|e| fail(vec![e]))?),
            Stream::Shipments => Record::Shipment(typed(value).map_err(|e| fail(vec![e]))?),
        };
        let errors = record.validate();
        if errors.is_empty() { Ok(record) } else { Err(fail(errors)) }
    }

    /// Business-rule checks beyond types; empty when valid.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match self {
            Record::Product(p) => p.validate(&mut errors),
            Record::Price(p) => p.validate(&mut errors),
            Record::Stock(s) => s.validate(&mut errors),
            Record::Customer(c) => c.validate(&mut errors),
            Record::Order(o) => o.validate(&mut errors),
            Record::Shipment(s) => s.validate(&mut errors),
        }
        errors
    }

    /// The canonical JSON form: struct fields in declaration order, maps sorted, decimals normalised,
    /// absent options left out. Equal records always give equal bytes.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("canonical records always serialise")
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let parent = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde reports a missing or unknown field at the object that lacks or has it; the field itself
        // is named only inside the message. Failures carry the full path (`price.amount`), not `price`.
        // (serde_path_to_error already ends the path with an unknown field's name.)
        let field = match named_field(&message) {
            Some(name) if parent == name || parent.ends_with(&format!(".{name}")) => parent,
            Some(name) if parent.is_empty() => name.to_owned(),
            Some(name) => format!("{parent}.{name}"),
            None => parent,
        };
        FieldError::new(field, message)
    })
}

/// The field serde names in "missing field `x`" / "unknown field `x`, expected …" / "duplicate field `x`",
/// anywhere in `message` (a connector's or endpoint's message may quote serde's).
pub fn named_field(message: &str) -> Option<&str> {
    ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.find(prefix).map(|at| &message[at + prefix.len()..]))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty())
}

/// The record's key read straight from raw JSON, exactly as [`Record::key`] forms it for the parsed
/// record (`sku@location` for stock, `list/sku/min_quantity` with the quantity normalised for prices), so
/// keys from a file, from the engine and from tombstones always agree; also names records that do not parse.
pub fn key_hint(stream: Stream, value: &serde_json::Value) -> Option<String> {
    key_from(stream, |f| value.get(f))
}

/// [`key_hint`] over any field getter (a CSV row, a JSON probe).
pub fn key_from<'a>(stream: Stream, get: impl Fn(&str) -> Option<&'a serde_json::Value>) -> Option<String> {
    let text = |field: &str| match get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match stream {
        Stream::Products => text("sku"),
        Stream::Customers => text("code"),
        Stream::Orders | Stream::Shipments => text("number"),
        Stream::Stock => Some(format!("{}@{}", text("sku")?, text("location").unwrap_or_else(|| "default".into()))),
        Stream::Prices => {
            let qty = match text("min_quantity") {
                Some(q) => q.parse::<rust_decimal::Decimal>().map(|d| d.normalize().to_string()).unwrap_or(q),
                None => "1".into(),
            };
            Some(format!("{}/{}/{}", text("price_list")?, text("sku")?, qty))
        }
    }
}

#[cfg(test)]
mod tests;
