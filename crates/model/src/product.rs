//! Products. One record per sellable SKU; variants of one product share `group` (the parent or
//! template code) and differ by `options`. Shop connectors assemble groups into products with variants.

use crate::common::{Custom, require_non_negative, require_text};
use crate::error::FieldError;
use crate::money::Price;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stock-keeping unit: the product's stable key.
    pub sku: String,
    /// Parent / template / style code shared by the variants of one product.
    pub group: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub short_description: Option<String>,
    /// Names and descriptions in other languages, keyed by language code (`de`, `fr`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, Translation>,
    /// Category paths from the root, e.g. `[["Garden", "Tools", "Spades"]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Vec<String>>,
    pub brand: Option<String>,
    pub barcode: Option<String>,
    /// Variant options, e.g. `{"Color": "Blue", "Size": "L"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    pub weight: Option<Weight>,
    #[serde(default)]
    pub status: ProductStatus,
    /// Tax class / accounting category (e.g. `GST`, `reduced`).
    pub tax_class: Option<String>,
    /// Base selling price.
    pub price: Option<Price>,
    /// Recommended retail price.
    pub rrp: Option<Price>,
    pub cost: Option<Price>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: Custom,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Translation {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub kind: MediaKind,
    pub url: String,
    pub title: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    /// A PDF or other document (specification sheet, installation instructions).
    Document,
    /// A link to a video (YouTube, Vimeo, a file).
    Video,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub value: Decimal,
    /// `kg`, `g`, `lb` or `oz`.
    pub unit: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    #[default]
    Active,
    /// Not yet published.
    Draft,
    /// No longer sold; shops hide or disable it.
    Discontinued,
}

impl Product {
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        require_text(&self.sku, "sku", errors);
        require_text(&self.name, "name", errors);
        for (field, price) in [("price", &self.price), ("rrp", &self.rrp), ("cost", &self.cost)] {
            if let Some(p) = price {
                require_non_negative(p.amount, &format!("{field}.amount"), errors);
            }
        }
        for (i, path) in self.categories.iter().enumerate() {
            if path.is_empty() || path.iter().any(|s| s.trim().is_empty()) {
                errors.push(FieldError::new(format!("categories[{i}]"), "category path has an empty level"));
            }
        }
        for (i, m) in self.media.iter().enumerate() {
            require_text(&m.url, &format!("media[{i}].url"), errors);
        }
        if let Some(w) = &self.weight {
            require_non_negative(w.value, "weight.value", errors);
            if !matches!(w.unit.as_str(), "kg" | "g" | "lb" | "oz") {
                errors.push(FieldError::new("weight.unit", format!("{:?} is not one of kg, g, lb, oz", w.unit)));
            }
        }
    }
}
