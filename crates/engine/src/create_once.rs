//! Create-once records (orders into an ERP) across crashes, faults and later changes.
//!
//! Creating a sale is rarely one call (create → quote → confirm), and a run can die between any two. The
//! engine keeps no half-states of its own; the target knows where its record stands. So:
//! - a key Ferry has no cross-reference for is looked up in the target first (`find_by_key`); a record
//!   found there is handed to `write` with its target id and *resumed* by the connector (driven on to the
//!   configured end state), never assumed done;
//! - a write that failed as a whole (the answer was lost) is retried only after the same look-up, so
//!   records the lost call created are resumed, not created a second time;
//! - a record that changed after it was written (cancelled, edited, refunded) goes to `write` with what
//!   the target last received (`WriteRecord::previous`), and the connector applies what it can;
//! - an order is only *created* in a status the flow imports (`[flows.X.orders] import_statuses`).

use crate::connector::{Connector, ConnectorError, WriteRecord};
use ferry_model::{OrderStatus, Record, Stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A flow's order settings (`[flows.NAME.orders]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPolicy {
    /// Statuses in which a shop order is created in the target. Orders in other statuses are skipped (and
    /// read again when they change). Default: every status but `cancelled` and `refunded`. `pending` is in
    /// the default because file exports often carry no payment status; shops that report unpaid orders
    /// (Vendure's connector reads only paid ones by default) can leave it out.
    #[serde(default = "default_import_statuses")]
    pub import_statuses: Vec<OrderStatus>,
}

impl Default for OrderPolicy {
    fn default() -> Self {
        OrderPolicy { import_statuses: default_import_statuses() }
    }
}

fn default_import_statuses() -> Vec<OrderStatus> {
    OrderStatus::ALL.into_iter().filter(|s| !matches!(s, OrderStatus::Cancelled | OrderStatus::Refunded)).collect()
}

impl OrderPolicy {
    /// Why this record must not be created, if it must not: an order in a status the flow does not import.
    pub fn refuses_to_create(&self, record: &Record) -> Option<String> {
        let Record::Order(order) = record else { return None };
        if self.import_statuses.contains(&order.status) {
            return None;
        }
        let allowed: Vec<&str> = self.import_statuses.iter().map(OrderStatus::as_str).collect();
        Some(format!(
            "not imported: the order is {} in the shop (the flow imports {})",
            order.status.as_str(),
            if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
        ))
    }
}

/// Keys of `batch` without a target id that the target already holds: their target ids. Called before a
/// create, and again before re-sending a create-once batch whose answer was lost.
pub async fn find_existing(target: &Arc<dyn Connector>, stream: Stream, batch: &[WriteRecord]) -> Result<HashMap<String, String>, ConnectorError> {
    let unknown: Vec<String> = batch.iter().filter(|w| w.target_id.is_none()).map(|w| w.key.clone()).collect();
    if unknown.is_empty() {
        return Ok(HashMap::new());
    }
    target.find_by_key(stream, &unknown).await
}

/// Gives the records the target turned out to hold their target id, so `write` resumes them instead of
/// creating them again. Returns how many were found.
pub fn adopt(batch: &mut [WriteRecord], found: &HashMap<String, String>) -> usize {
    let mut adopted = 0;
    for w in batch.iter_mut().filter(|w| w.target_id.is_none()) {
        if let Some(id) = found.get(&w.key) {
            tracing::info!(record = %w.key, target_id = %id, "already in the target: resumed there, not created again");
            w.target_id = Some(id.clone());
            adopted += 1;
        }
    }
    adopted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(status: &str) -> Record {
        Record::parse(
            Stream::Orders,
            json!({"number": "W1", "placed_at": "2026-01-01T00:00:00Z", "status": status, "currency": "AUD", "prices_include_tax": true,
                   "lines": [{"sku": "A", "quantity": "1", "unit_price": "10", "total": "10"}],
                   "totals": {"subtotal": "10", "total": "10"}}),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn cancelled_and_refunded_orders_are_not_created_by_default() {
        let policy = OrderPolicy::default();
        assert!(policy.refuses_to_create(&order("confirmed")).is_none());
        assert!(policy.refuses_to_create(&order("pending")).is_none());
        let why = policy.refuses_to_create(&order("cancelled")).unwrap();
        assert!(why.contains("cancelled") && why.contains("confirmed"), "{why}");
        assert!(policy.refuses_to_create(&order("refunded")).is_some());
    }

    #[test]
    fn a_flow_can_import_paid_orders_only() {
        let policy: OrderPolicy = toml::from_str(r#"import_statuses = ["confirmed", "processing"]"#).unwrap();
        assert!(policy.refuses_to_create(&order("pending")).is_some());
        assert!(policy.refuses_to_create(&order("processing")).is_none());
        assert!(toml::from_str::<OrderPolicy>(r#"import_statuses = ["paid"]"#).is_err(), "unknown statuses are config errors");
    }

    #[test]
    fn found_records_are_adopted_once() {
        let rec = order("confirmed");
        let mut batch = vec![
            WriteRecord { key: "W1".into(), target_id: None, record: rec.clone(), previous: None },
            WriteRecord { key: "W2".into(), target_id: Some("9".into()), record: rec, previous: None },
        ];
        let found = HashMap::from([("W1".to_owned(), "7".to_owned()), ("W2".to_owned(), "8".to_owned())]);
        assert_eq!(adopt(&mut batch, &found), 1);
        assert_eq!(batch[0].target_id.as_deref(), Some("7"));
        assert_eq!(batch[1].target_id.as_deref(), Some("9"), "a known target id is kept");
    }
}
