//! Stock levels per SKU and location.

use crate::common::require_text;
use crate::common::Custom;
use crate::error::FieldError;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockLevel {
    pub sku: String,
    /// Warehouse / store / location code.
    #[serde(default = "default_location")]
    pub location: String,
    /// Physically on hand.
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub on_hand: Decimal,
    /// Available to sell (on hand minus reserved, or the ERP's forecast). Defaults to `on_hand`.
    #[serde(default, with = "crate::decimal::option")]
    #[schemars(with = "Option<crate::schema::DecimalString>")]
    pub available: Option<Decimal>,
    /// When the source gives none, derived from the quantities (see [`StockLevel::derived_status`]).
    #[serde(default)]
    pub status: StockStatus,
    /// Available quantity at or below which a derived status is `low` (set it per flow with the mapping,
    /// e.g. `defaults = { "low_stock_threshold" = "5" }`). Without it, a derived status is never `low`.
    #[serde(default, with = "crate::decimal::option")]
    #[schemars(with = "Option<crate::schema::DecimalString>")]
    pub low_stock_threshold: Option<Decimal>,
    /// When a temporarily unavailable item is expected back.
    pub restock_date: Option<NaiveDate>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: Custom,
}

fn default_location() -> String {
    "default".to_owned()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockStatus {
    #[default]
    InStock,
    Low,
    /// Out of stock for now; coming back (see `restock_date`).
    TemporarilyOut,
    /// Permanently out of stock: no longer supplied.
    Discontinued,
    /// Sold now, delivered when restocked.
    Backorder,
    /// Sell what is left, then discontinue.
    EndOfLine,
}

impl StockLevel {
    /// `sku@location`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.sku, self.location)
    }

    pub fn available_or_on_hand(&self) -> Decimal {
        self.available.unwrap_or(self.on_hand)
    }

    /// The status the quantities imply, for sources that give none: nothing available (zero or less,
    /// oversold) → `temporarily_out`; at or below `low_stock_threshold` → `low`; else `in_stock`.
    pub fn derived_status(&self) -> StockStatus {
        let available = self.available_or_on_hand();
        if available <= Decimal::ZERO {
            StockStatus::TemporarilyOut
        } else if self.low_stock_threshold.is_some_and(|low| available <= low) {
            StockStatus::Low
        } else {
            StockStatus::InStock
        }
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        require_text(&self.sku, "sku", errors);
        require_text(&self.location, "location", errors);
        // Negative on-hand does happen in ERPs (oversold); negative *available* is clamped by shops. Both
        // are accepted; what is rejected is a quantity that cannot be a quantity at all.
        if self.low_stock_threshold.is_some_and(|low| low < Decimal::ZERO) {
            errors.push(FieldError::new("low_stock_threshold", "must not be negative"));
        }
        if self.on_hand.scale() > 6 {
            errors.push(FieldError::new("on_hand", "more than 6 decimal places"));
        }
    }
}
