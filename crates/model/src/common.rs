//! Pieces shared by several entities.

use crate::error::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Business-specific fields carried along untouched (configured per business, never recompiled).
pub type Custom = BTreeMap<String, serde_json::Value>;

/// A postal address. `country` is ISO 3166-1 alpha-2.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Stable id of this address within its customer (the ERP's address id or a label such as "warehouse").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub street: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Usable as a billing (invoice) address.
    #[serde(default)]
    pub billing: bool,
    /// Usable as a delivery (shipping) address.
    #[serde(default)]
    pub delivery: bool,
    #[serde(default)]
    pub default_billing: bool,
    #[serde(default)]
    pub default_delivery: bool,
}

impl Address {
    pub(crate) fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if let Some(country) = &self.country
            && (country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()))
        {
            errors.push(FieldError::new(
                format!("{field}.country"),
                format!("{country:?} is not an ISO 3166-1 alpha-2 code (e.g. AU, DE)"),
            ));
        }
    }
}

pub(crate) fn require_text(value: &str, field: &str, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "is required and must not be empty"));
    }
}

pub(crate) fn require_non_negative(value: rust_decimal::Decimal, field: &str, errors: &mut Vec<FieldError>) {
    if value.is_sign_negative() && !value.is_zero() {
        errors.push(FieldError::new(field, format!("must not be negative (got {value})")));
    }
}
