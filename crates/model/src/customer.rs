//! Customers (B2B accounts and registered shoppers).

use crate::common::{Address, Custom, require_text};
use crate::error::FieldError;
use crate::money::Money;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// The customer's account code in the business system: the stable key.
    pub code: String,
    /// Login and contact e-mail.
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    /// GST / VAT / ABN number.
    pub tax_id: Option<String>,
    pub phone: Option<String>,
    /// Customer group (trade, wholesale, retail) used for group prices.
    pub group: Option<String>,
    /// A price list of this customer's own.
    pub price_list: Option<String>,
    /// Payment terms, e.g. `30 days net`.
    pub payment_terms: Option<String>,
    pub credit_limit: Option<Money>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    #[serde(default = "yes")]
    pub active: bool,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: Custom,
}

fn yes() -> bool {
    true
}

impl Customer {
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        require_text(&self.code, "code", errors);
        if let Some(email) = &self.email
            && !looks_like_email(email)
        {
            errors.push(FieldError::new("email", format!("{email:?} is not an e-mail address")));
        }
        for (i, a) in self.addresses.iter().enumerate() {
            a.validate(&format!("addresses[{i}]"), errors);
        }
        if self.addresses.iter().filter(|a| a.default_delivery).count() > 1 {
            errors.push(FieldError::new("addresses", "more than one default delivery address"));
        }
        if self.addresses.iter().filter(|a| a.default_billing).count() > 1 {
            errors.push(FieldError::new("addresses", "more than one default billing address"));
        }
    }
}

pub(crate) fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}
