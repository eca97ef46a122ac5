//! Shipments sent back to the shop: carrier, tracking and what was shipped.

use crate::common::{Custom, require_text};
use crate::error::FieldError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    /// The business system's shipment number: the stable key.
    pub number: String,
    /// The shop order number this shipment fulfils.
    pub order_number: String,
    pub carrier: Option<String>,
    pub service: Option<String>,
    pub tracking_code: Option<String>,
    pub tracking_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<ShipmentLine>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: Custom,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentLine {
    pub sku: String,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub quantity: Decimal,
}

impl Shipment {
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        require_text(&self.number, "number", errors);
        require_text(&self.order_number, "order_number", errors);
        for (i, l) in self.lines.iter().enumerate() {
            require_text(&l.sku, &format!("lines[{i}].sku"), errors);
            if l.quantity <= Decimal::ZERO {
                errors.push(FieldError::new(format!("lines[{i}].quantity"), format!("must be positive (got {})", l.quantity)));
            }
        }
    }
}
