//! Advanced prices: price-list entries for everyone, a customer group or a single customer, with
//! quantity breaks and validity dates. Base price and RRP live on the product.

use crate::common::{Custom, require_non_negative, require_text};
use crate::error::FieldError;
use crate::money::Price;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceListEntry {
    /// The price list (e.g. `TRADE`, `WHOLESALE`, `CUST-1001`).
    pub price_list: String,
    pub sku: String,
    /// Who the price applies to.
    #[serde(default)]
    pub applies_to: PriceScope,
    /// Quantity break: the price applies from this quantity on (1 when absent).
    #[serde(default = "one", with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub min_quantity: Decimal,
    pub price: Price,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: Custom,
}

fn one() -> Decimal {
    Decimal::ONE
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "code", rename_all = "snake_case")]
pub enum PriceScope {
    /// Everyone who is given this price list.
    #[default]
    All,
    /// A customer group (trade, wholesale, VIP).
    CustomerGroup(String),
    /// A single customer, by customer code.
    Customer(String),
}

impl PriceListEntry {
    /// `price_list/sku/min_quantity`: one entry per list, SKU and quantity break.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.price_list, self.sku, self.min_quantity.normalize())
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        require_text(&self.price_list, "price_list", errors);
        require_text(&self.sku, "sku", errors);
        require_non_negative(self.price.amount, "price.amount", errors);
        if self.min_quantity <= Decimal::ZERO {
            errors.push(FieldError::new("min_quantity", format!("must be positive (got {})", self.min_quantity)));
        }
        if let (Some(from), Some(to)) = (self.valid_from, self.valid_to)
            && to < from
        {
            errors.push(FieldError::new("valid_to", format!("{to} is before valid_from {from}")));
        }
    }
}
