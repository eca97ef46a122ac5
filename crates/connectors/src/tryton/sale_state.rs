//! Where a sale stands in Tryton, and how Ferry drives it on: the state machine behind create-once orders.
//!
//! Tryton's sale: draft → quotation → confirmed → processing → done, and cancelled aside (from draft or
//! quotation; a confirmed sale goes back to draft first). Ferry creates a sale in draft, compares Tryton's
//! amounts with the shop's, then presses `quote` and `confirm` up to the configured `order_state`. A run
//! can stop between any two of those calls; the next attempt finds the sale by its web id, reads its state
//! here and carries on from there (see `ferry_engine::create_once`). The buttons are safe to press twice:
//! Tryton's workflow transitions skip records already past them.
//!
//! Once imported, an order that changes in the shop is applied while Tryton allows it: cancelled → the
//! sale is cancelled (draft, quotation, confirmed); edited (lines, addresses, customer) → the sale goes
//! back to draft, is rewritten and moved on again. Otherwise the order is parked with a message saying
//! what a person must do (a return, a credit note), never ignored.

use super::OrderState;
use super::rpc::as_text;
use ferry_engine::diff::{FieldChange, diff};
use serde_json::{Map, Value};

/// The fields read to place a sale in its life: its state, and its lines (replaced when the order is edited).
pub(super) const SALE_FIELDS: &[&str] = &["state", "lines"];

/// A sale's state as Tryton names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SaleState {
    Draft,
    Quotation,
    Confirmed,
    Processing,
    Done,
    Cancelled,
}

impl SaleState {
    pub fn parse(row: &Map<String, Value>) -> Option<SaleState> {
        Some(match as_text(row.get("state"))?.as_str() {
            "draft" => SaleState::Draft,
            "quotation" => SaleState::Quotation,
            "confirmed" => SaleState::Confirmed,
            "processing" => SaleState::Processing,
            "done" => SaleState::Done,
            "cancelled" => SaleState::Cancelled,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SaleState::Draft => "draft",
            SaleState::Quotation => "quotation",
            SaleState::Confirmed => "confirmed",
            SaleState::Processing => "processing",
            SaleState::Done => "done",
            SaleState::Cancelled => "cancelled",
        }
    }

    /// The buttons that take a sale from here to the configured end state, in order. A sale at or past it
    /// (a person may have moved it on in Tryton), or cancelled there, needs none.
    pub fn steps_to(self, end: OrderState) -> &'static [&'static str] {
        match (self, end) {
            (SaleState::Draft, OrderState::Quotation) => &["quote"],
            (SaleState::Draft, OrderState::Confirmed) => &["quote", "confirm"],
            (SaleState::Quotation, OrderState::Confirmed) => &["confirm"],
            _ => &[],
        }
    }

    /// The sale can still be rewritten or cancelled by Ferry (it goes back to draft first). Tryton lets a
    /// confirmed sale return to draft; once processing, shipments and invoices exist.
    pub fn is_editable(self) -> bool {
        matches!(self, SaleState::Draft | SaleState::Quotation | SaleState::Confirmed)
    }
}

/// The parts of an order that make up the sale itself. Status, payments, tracking and custom fields
/// change as the shop works the order and need nothing in the sale.
const SALE_CONTENT: &[&str] =
    &["lines", "shipping", "discounts", "billing_address", "shipping_address", "customer", "currency", "prices_include_tax", "totals", "customer_reference", "notes"];

/// What changed in the order's sale content since Tryton received it.
pub(super) fn content_changes(previous: &Value, current: &Value) -> Vec<FieldChange> {
    let pick = |v: &Value| -> Value {
        let mut m = Map::new();
        for f in SALE_CONTENT {
            if let Some(x) = v.get(*f) {
                m.insert((*f).to_owned(), x.clone());
            }
        }
        Value::Object(m)
    };
    diff(&pick(previous), &pick(current))
}

/// `lines[0].quantity: 2 → 1; shipping_address.city: "Perth" → "Fremantle"` (the first few).
pub(super) fn describe_changes(changes: &[FieldChange]) -> String {
    let show = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_else(|| "(absent)".into());
    let mut parts: Vec<String> = changes.iter().take(8).map(|c| format!("{}: {} → {}", c.path, show(&c.old), show(&c.new))).collect();
    if changes.len() > 8 {
        parts.push(format!("… and {} more", changes.len() - 8));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_lead_from_any_state_to_the_configured_one_and_never_back() {
        assert_eq!(SaleState::Draft.steps_to(OrderState::Confirmed), ["quote", "confirm"]);
        assert_eq!(SaleState::Quotation.steps_to(OrderState::Confirmed), ["confirm"]);
        assert_eq!(SaleState::Draft.steps_to(OrderState::Quotation), ["quote"]);
        assert!(SaleState::Quotation.steps_to(OrderState::Quotation).is_empty());
        assert!(SaleState::Processing.steps_to(OrderState::Confirmed).is_empty());
        assert!(SaleState::Quotation.steps_to(OrderState::Draft).is_empty(), "a sale ahead of the setting is left alone");
        assert!(SaleState::Cancelled.steps_to(OrderState::Confirmed).is_empty(), "a sale cancelled in Tryton stays cancelled");
    }

    #[test]
    fn status_and_payment_changes_are_not_sale_edits() {
        let before = json!({"number": "W1", "status": "confirmed", "lines": [{"sku": "A", "quantity": "2"}], "payments": []});
        let shipped = json!({"number": "W1", "status": "shipped", "lines": [{"sku": "A", "quantity": "2"}], "payments": [{"method": "card"}]});
        assert!(content_changes(&before, &shipped).is_empty());
        let edited = json!({"number": "W1", "status": "confirmed", "lines": [{"sku": "A", "quantity": "1"}]});
        let changes = content_changes(&before, &edited);
        assert_eq!(changes.len(), 1);
        assert_eq!(describe_changes(&changes), "lines[0].quantity: \"2\" → \"1\"");
    }

    #[test]
    fn states_parse_from_tryton_rows() {
        let row = |s: &str| json!({"state": s}).as_object().cloned().unwrap();
        assert_eq!(SaleState::parse(&row("processing")), Some(SaleState::Processing));
        assert_eq!(SaleState::parse(&row("unknown")), None);
        assert!(SaleState::Confirmed.is_editable() && !SaleState::Processing.is_editable());
    }
}
