//! Orders placed on the shop, imported into the business system exactly once.

use crate::common::{Address, Custom, require_text};
use crate::customer::looks_like_email;
use crate::error::FieldError;
use crate::money::Currency;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The shop's order number: the natural key written into the target so a retry can find it.
    pub number: String,
    pub placed_at: DateTime<Utc>,
    #[serde(default)]
    pub status: OrderStatus,
    #[serde(default)]
    pub customer: OrderCustomer,
    /// The buyer's own reference (purchase-order number).
    pub customer_reference: Option<String>,
    pub currency: Currency,
    /// True when unit prices, shipping and discounts include tax (then `totals.tax` is the tax contained).
    pub prices_include_tax: bool,
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipping: Vec<ShippingLine>,
    /// Order-level discounts (coupons, promotions, redeemed loyalty points).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discounts: Vec<Discount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coupons: Vec<String>,
    pub loyalty: Option<Loyalty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<Payment>,
    pub totals: OrderTotals,
    pub billing_address: Option<Address>,
    pub shipping_address: Option<Address>,
    pub notes: Option<String>,
    /// When the shop cancelled the order (`status` is then `cancelled`).
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Money the shop gave back after the order was placed, each refund once (by its `id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<Refund>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: Custom,
}

/// Where the order stands in the shop. Which statuses an order may be *imported* in is a flow setting
/// (`[flows.X.orders] import_statuses`); once imported, later statuses are changes of the order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, not yet paid or authorised.
    #[default]
    Pending,
    /// Paid or authorised: ready to fulfil.
    Confirmed,
    Processing,
    PartiallyShipped,
    Shipped,
    Completed,
    Cancelled,
    /// Part of the money was given back (see `refunds`); the rest of the order stands.
    PartiallyRefunded,
    /// All the money was given back.
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Processing,
        OrderStatus::PartiallyShipped,
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
        OrderStatus::PartiallyRefunded,
        OrderStatus::Refunded,
    ];

    /// Paid (or authorised) and not cancelled: what a business books by default.
    pub fn is_paid(&self) -> bool {
        !matches!(self, OrderStatus::Pending | OrderStatus::Cancelled)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Processing => "processing",
            OrderStatus::PartiallyShipped => "partially_shipped",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
        }
    }
}

/// Money given back on an order: which lines (and how many of each), shipping, an adjustment, with the
/// tax contained. Amounts are positive and follow the order's `prices_include_tax`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    /// The shop's refund id: a refund is booked once per id.
    pub id: String,
    pub refunded_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<RefundLine>,
    /// Shipping given back (tax mode per the order's `prices_include_tax`).
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub shipping: Decimal,
    /// Tax on `shipping`.
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub shipping_tax: Decimal,
    /// Any other amount given back (goodwill), tax-free; negative when the shop kept a fee.
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub adjustment: Decimal,
    /// All tax given back (lines and shipping).
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub tax: Decimal,
    /// What the buyer got back.
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub total: Decimal,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundLine {
    pub sku: String,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub quantity: Decimal,
    /// The amount given back for these units (tax mode per the order's `prices_include_tax`).
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
    /// Tax contained in (or added to) `amount`.
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub tax: Decimal,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCustomer {
    /// Account code in the business system, when the buyer is a known (B2B) customer.
    pub code: Option<String>,
    /// `true`: bought as a guest, the e-mail address unverified; `false`: a registered shop account. Absent
    /// when the shop does not say, and then treated like a guest (an ERP never matches the buyer to an
    /// existing customer by that e-mail unless configured to).
    pub guest: Option<bool>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub tax_id: Option<String>,
    pub phone: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: String,
    pub name: Option<String>,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub quantity: Decimal,
    /// Price of one unit before discounts (tax mode per `prices_include_tax`).
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub unit_price: Decimal,
    /// Discount on the whole line (not per unit).
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub discount: Decimal,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taxes: Vec<TaxLine>,
    /// quantity × unit_price − discount, as the shop computed it.
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub total: Decimal,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxLine {
    /// e.g. `GST`, `VAT 19%`.
    pub name: String,
    /// Rate as a fraction (0.10 for 10 %).
    #[serde(default, with = "crate::decimal::option")]
    #[schemars(with = "Option<crate::schema::DecimalString>")]
    pub rate: Option<Decimal>,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingLine {
    pub method: String,
    pub carrier: Option<String>,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taxes: Vec<TaxLine>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Discount {
    #[serde(default)]
    pub kind: DiscountKind,
    /// Coupon / voucher code, when one was entered.
    pub code: Option<String>,
    pub description: Option<String>,
    /// Positive amount taken off the order.
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscountKind {
    #[default]
    Promotion,
    Coupon,
    /// Loyalty points redeemed as money off.
    Loyalty,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loyalty {
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub points_used: Decimal,
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub points_earned: Decimal,
}

#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub method: String,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
    pub reference: Option<String>,
    /// `authorized`, `settled`, `declined`, `refunded`...
    pub status: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderTotals {
    /// Sum of line totals.
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub subtotal: Decimal,
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub shipping: Decimal,
    /// Sum of order-level discounts (positive).
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub discount: Decimal,
    /// All tax on the order (added on top, or contained when prices include tax).
    #[serde(default, with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub tax: Decimal,
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub total: Decimal,
}

impl Order {
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        require_text(&self.number, "number", errors);
        if self.lines.is_empty() {
            errors.push(FieldError::new("lines", "an order needs at least one line"));
        }
        if let Some(email) = &self.customer.email
            && !looks_like_email(email)
        {
            errors.push(FieldError::new("customer.email", format!("{email:?} is not an e-mail address")));
        }
        for (i, line) in self.lines.iter().enumerate() {
            require_text(&line.sku, &format!("lines[{i}].sku"), errors);
            if line.quantity <= Decimal::ZERO {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    format!("must be positive (got {})", line.quantity),
                ));
            }
            if line.unit_price.is_sign_negative() && !line.unit_price.is_zero() {
                errors.push(FieldError::new(format!("lines[{i}].unit_price"), "must not be negative"));
            }
        }
        for (i, d) in self.discounts.iter().enumerate() {
            if d.amount.is_sign_negative() && !d.amount.is_zero() {
                errors.push(FieldError::new(format!("discounts[{i}].amount"), "is the amount taken off: must not be negative"));
            }
        }
        for (field, addr) in [("billing_address", &self.billing_address), ("shipping_address", &self.shipping_address)] {
            if let Some(a) = addr {
                a.validate(field, errors);
            }
        }
        errors.extend(self.reconcile());
        self.validate_refunds(errors);
    }

    /// Each refund adds up (lines + shipping + adjustment, + tax when prices exclude it = total), names
    /// SKUs of the order, and no more units of a SKU are refunded than were ordered. Checked arithmetic:
    /// amounts come from outside.
    fn validate_refunds(&self, errors: &mut Vec<FieldError>) {
        let c = self.currency;
        let mut ids = std::collections::HashSet::new();
        let mut refunded: BTreeMap<&str, Decimal> = BTreeMap::new();
        let overflow = |field: String| FieldError::new(field, "amounts too large to add up");
        for (i, r) in self.refunds.iter().enumerate() {
            let f = |name: &str| format!("refunds[{i}].{name}");
            if r.id.trim().is_empty() {
                errors.push(FieldError::new(f("id"), "a refund needs the shop's id (it is booked once per id)"));
            } else if !ids.insert(r.id.as_str()) {
                errors.push(FieldError::new(f("id"), format!("refund {:?} is listed twice", r.id)));
            }
            let mut parts = Some(r.shipping).and_then(|s| s.checked_add(r.adjustment));
            let mut tax = Some(r.shipping_tax);
            for (j, l) in r.lines.iter().enumerate() {
                if !self.lines.iter().any(|o| o.sku == l.sku) {
                    errors.push(FieldError::new(format!("refunds[{i}].lines[{j}].sku"), format!("{:?} is not a SKU of this order", l.sku)));
                }
                if l.quantity.is_sign_negative() || l.amount.is_sign_negative() {
                    errors.push(FieldError::new(format!("refunds[{i}].lines[{j}]"), "quantity and amount are given back: they must not be negative"));
                }
                let sum = refunded.entry(l.sku.as_str()).or_default();
                *sum = sum.checked_add(l.quantity).unwrap_or(Decimal::MAX);
                parts = parts.and_then(|p| p.checked_add(l.amount));
                tax = tax.and_then(|t| t.checked_add(l.tax));
            }
            let (Some(parts), Some(tax)) = (parts, tax) else {
                errors.push(overflow(f("total")));
                continue;
            };
            if c.round(tax) != c.round(r.tax) {
                errors.push(FieldError::new(f("tax"), format!("is {} but its lines and shipping carry {}", r.tax, c.round(tax))));
            }
            let expected = if self.prices_include_tax { Some(parts) } else { parts.checked_add(r.tax) };
            match expected {
                Some(e) if c.round(e) != c.round(r.total) => {
                    errors.push(FieldError::new(f("total"), format!("is {} but lines + shipping + adjustment{} give {}", r.total, if self.prices_include_tax { "" } else { " + tax" }, c.round(e))));
                }
                Some(_) => {}
                None => errors.push(overflow(f("total"))),
            }
        }
        for (sku, qty) in refunded {
            let ordered: Decimal = self.lines.iter().filter(|l| l.sku == sku).fold(Decimal::ZERO, |a, l| a.checked_add(l.quantity).unwrap_or(Decimal::MAX));
            if qty > ordered && ordered > Decimal::ZERO {
                errors.push(FieldError::new("refunds", format!("{qty} of {sku} refunded but {ordered} ordered")));
            }
        }
    }

    /// Checks that the totals agree with the parts, to the currency's minor unit:
    /// lines → subtotal, shipping lines → shipping, discounts → discount, tax lines → tax (when given),
    /// and subtotal + shipping − discount (+ tax when prices exclude it) = total.
    ///
    /// All arithmetic is checked: the amounts come from outside, and a sum or product beyond `Decimal`'s
    /// range (about 7.9 × 10²⁸) is an error naming the field, never a panic.
    pub fn reconcile(&self) -> Vec<FieldError> {
        let c = self.currency;
        let mut errors = Vec::new();
        let mut check = |field: String, expected: Option<Decimal>, actual: Decimal, how: &str| {
            let Some(expected) = expected else {
                errors.push(FieldError::new(field, format!("cannot be checked: {how} is out of range (the amounts are too large)")));
                return;
            };
            if c.round(expected) != c.round(actual) {
                let off = actual.checked_sub(expected).map(|d| format!(" (off by {})", c.round(d))).unwrap_or_default();
                errors.push(FieldError::new(field, format!("is {} but {how} gives {}{off}", c.round(actual), c.round(expected))));
            }
        };
        for (i, l) in self.lines.iter().enumerate() {
            let expected = l.quantity.checked_mul(l.unit_price).and_then(|gross| gross.checked_sub(l.discount));
            check(format!("lines[{i}].total"), expected, l.total, "quantity × unit_price − discount");
        }
        check("totals.subtotal".into(), checked_sum(self.lines.iter().map(|l| l.total)), self.totals.subtotal, "the sum of line totals");
        check("totals.shipping".into(), checked_sum(self.shipping.iter().map(|s| s.amount)), self.totals.shipping, "the sum of shipping lines");
        check("totals.discount".into(), checked_sum(self.discounts.iter().map(|d| d.amount)), self.totals.discount, "the sum of discounts");
        let has_tax_lines = self.lines.iter().any(|l| !l.taxes.is_empty()) || self.shipping.iter().any(|s| !s.taxes.is_empty());
        if has_tax_lines {
            let tax = checked_sum(self.lines.iter().flat_map(|l| &l.taxes).chain(self.shipping.iter().flat_map(|s| &s.taxes)).map(|t| t.amount));
            check("totals.tax".into(), tax, self.totals.tax, "the sum of tax lines");
        }
        let t = &self.totals;
        let before_tax = t.subtotal.checked_add(t.shipping).and_then(|s| s.checked_sub(t.discount));
        let expected_total = if self.prices_include_tax { before_tax } else { before_tax.and_then(|s| s.checked_add(t.tax)) };
        let how = if self.prices_include_tax { "subtotal + shipping − discount" } else { "subtotal + shipping − discount + tax" };
        check("totals.total".into(), expected_total, t.total, how);
        errors
    }
}

/// The sum of `amounts`, or `None` when it leaves `Decimal`'s range.
fn checked_sum(amounts: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    amounts.into_iter().try_fold(Decimal::ZERO, Decimal::checked_add)
}
