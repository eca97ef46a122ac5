//! Shipments → Medusa fulfilments with tracking, exactly once.
//!
//! The order is found by its number (Medusa's `order_…` id). Its fulfilments are
//! read first: the one whose `metadata.ferry_shipment` is the shipment number (and not cancelled) is the
//! shipment, already written — marked shipped if it is not yet, otherwise `Unchanged`. Only when there
//! is none is a fulfilment created (`POST /admin/orders/{id}/fulfillments`, the shipment number in its
//! metadata, lines by SKU → order items; no lines = everything not yet fulfilled), then marked shipped
//! with the tracking label (`POST …/fulfillments/{id}/shipments`, `labels: [{tracking_number,
//! tracking_url, label_url}]`). A retry after a crash between the two finds the fulfilment by its
//! metadata and only ships it.

use super::Medusa;
use super::rest::CallError;
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Record, Shipment};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

const ORDER_FIELDS: &str = "id,display_id,status,*items,items.detail.fulfilled_quantity,*fulfillments,*fulfillments.labels,*fulfillments.items";

pub(crate) async fn write(m: &Medusa, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    for rec in batch {
        let Record::Shipment(s) = &rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a shipment record")));
            continue;
        };
        outcomes.push(match write_one(m, s).await {
            Ok((id, action)) => WriteOutcome::ok(rec.key, id, action),
            Err(CallError::Connector(e)) => return Err(e),
            Err(CallError::Rejected { status: 0, message, kind }) => WriteOutcome::failed(rec.key, RecordFailure { field: Some(kind), message, retryable: true }),
            Err(e) => WriteOutcome::failed(rec.key, e.for_record(Some("lines"))),
        });
    }
    Ok(outcomes)
}

pub(crate) async fn order_by_number(m: &Medusa, number: &str, fields: &str) -> Result<Option<Value>, ConnectorError> {
    let data = m.rest.get("/admin/orders", &[("id[]", number.to_owned()), ("fields", fields.to_owned()), ("limit", "1".into())]).await?;
    Ok(data["orders"].as_array().and_then(|l| l.first()).cloned())
}

fn existing_fulfillment<'a>(order: &'a Value, number: &str) -> Option<&'a Value> {
    order["fulfillments"].as_array()?.iter().find(|f| f["metadata"]["ferry_shipment"].as_str() == Some(number) && f["canceled_at"].is_null())
}

async fn write_one(m: &Medusa, s: &Shipment) -> Result<(String, WriteAction), CallError> {
    let Some(order) = order_by_number(m, &s.order_number, ORDER_FIELDS).await? else {
        // Not there yet (read lag, another region): worth another try later.
        return Err(CallError::Rejected { status: 0, kind: "order_number".into(), message: format!("no Medusa order {:?}", s.order_number) });
    };
    let oid = order["id"].as_str().unwrap_or_default().to_owned();
    if let Some(f) = existing_fulfillment(&order, &s.number) {
        let fid = f["id"].as_str().unwrap_or_default().to_owned();
        if f["shipped_at"].is_string() {
            return Ok((fid, WriteAction::Unchanged));
        }
        ship(m, &oid, f, s).await?;
        return Ok((fid, WriteAction::Updated));
    }
    let items = fulfil_items(&order, s).map_err(|f| CallError::Rejected { status: 400, kind: f.field.unwrap_or_default(), message: f.message })?;
    let body = json!({"items": items, "metadata": {"ferry_shipment": s.number}, "no_notification": true});
    m.rest.post(&format!("/admin/orders/{oid}/fulfillments"), &body).await?;
    // Find it again by its metadata (the answer is the order; this also proves the marker is stored).
    let order = order_by_number(m, &s.order_number, ORDER_FIELDS).await?.unwrap_or_default();
    let f = existing_fulfillment(&order, &s.number)
        .cloned()
        .ok_or_else(|| CallError::Connector(ConnectorError::permanent(m.endpoint(), format!("fulfilment of shipment {} not found on order {} after creating it", s.number, s.order_number))))?;
    ship(m, &oid, &f, s).await?;
    Ok((f["id"].as_str().unwrap_or_default().to_owned(), WriteAction::Created))
}

/// Marks the fulfilment shipped with the shipment's tracking label.
async fn ship(m: &Medusa, oid: &str, f: &Value, s: &Shipment) -> Result<(), CallError> {
    let fid = f["id"].as_str().unwrap_or_default();
    let items: Vec<Value> = f["items"].as_array().into_iter().flatten().map(|i| json!({"id": i["line_item_id"], "quantity": i["quantity"]})).collect();
    let mut body = json!({"items": items, "no_notification": true});
    if s.tracking_code.is_some() || s.tracking_url.is_some() {
        let tracking = s.tracking_code.clone().unwrap_or_default();
        let url = s.tracking_url.clone().unwrap_or_default();
        body["labels"] = json!([{"tracking_number": tracking, "tracking_url": url, "label_url": url}]);
    }
    m.rest.post(&format!("/admin/orders/{oid}/fulfillments/{fid}/shipments"), &body).await?;
    Ok(())
}

/// The shipment's lines as order items `{id, quantity}` (SKU → the order's item), or every item's
/// unfulfilled rest when the shipment lists no lines.
fn fulfil_items(order: &Value, s: &Shipment) -> Result<Vec<Value>, RecordFailure> {
    let items = order["items"].as_array().cloned().unwrap_or_default();
    let open = |i: &Value| {
        let qty = super::decimal(&i["quantity"]).unwrap_or_default();
        let done = super::decimal(&i["detail"]["fulfilled_quantity"]).unwrap_or_default();
        qty - done
    };
    if s.lines.is_empty() {
        let all: Vec<Value> = items.iter().filter(|i| open(i) > Decimal::ZERO).map(|i| json!({"id": i["id"], "quantity": open(i).to_i64()})).collect();
        if all.is_empty() {
            return Err(RecordFailure::permanent(Some("lines".into()), format!("order {} has nothing left to fulfil", s.order_number)));
        }
        return Ok(all);
    }
    let mut out = Vec::new();
    for (n, l) in s.lines.iter().enumerate() {
        let item = items
            .iter()
            .find(|i| i["variant_sku"].as_str() == Some(l.sku.as_str()))
            .ok_or_else(|| RecordFailure::permanent(Some(format!("lines[{n}].sku")), format!("{:?} is not on order {}", l.sku, s.order_number)))?;
        let qty = l.quantity.to_i64().filter(|_| l.quantity.fract().is_zero()).ok_or_else(|| RecordFailure::permanent(Some(format!("lines[{n}].quantity")), "not a whole number of units"))?;
        if l.quantity > open(item) {
            return Err(RecordFailure::permanent(Some(format!("lines[{n}].quantity")), format!("{} of {} to ship but {} left unfulfilled", l.quantity, l.sku, open(item))));
        }
        out.push(json!({"id": item["id"], "quantity": qty}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::ShipmentLine;

    fn order() -> Value {
        json!({"id": "order_1", "display_id": 7, "items": [
            {"id": "ordli_1", "variant_sku": "A-1", "quantity": 2, "detail": {"fulfilled_quantity": 0}},
            {"id": "ordli_2", "variant_sku": "B-2", "quantity": 1, "detail": {"fulfilled_quantity": 1}}
        ], "fulfillments": [{"id": "ful_1", "canceled_at": null, "shipped_at": null, "metadata": {"ferry_shipment": "SH-1"}, "items": []},
                            {"id": "ful_0", "canceled_at": "2026-01-01T00:00:00Z", "metadata": {"ferry_shipment": "SH-2"}}]})
    }

    #[test]
    fn a_shipment_is_found_by_its_number_unless_cancelled() {
        assert_eq!(existing_fulfillment(&order(), "SH-1").unwrap()["id"], "ful_1");
        assert!(existing_fulfillment(&order(), "SH-2").is_none(), "a cancelled fulfilment does not count");
        assert!(existing_fulfillment(&order(), "SH-3").is_none());
    }

    #[test]
    fn lines_map_to_order_items_and_no_lines_ship_the_rest() {
        let mut s = Shipment { number: "SH-3".into(), order_number: "7".into(), ..Default::default() };
        assert_eq!(fulfil_items(&order(), &s).unwrap(), vec![json!({"id": "ordli_1", "quantity": 2})]);
        s.lines = vec![ShipmentLine { sku: "A-1".into(), quantity: Decimal::ONE }];
        assert_eq!(fulfil_items(&order(), &s).unwrap(), vec![json!({"id": "ordli_1", "quantity": 1})]);
        s.lines = vec![ShipmentLine { sku: "B-2".into(), quantity: Decimal::ONE }];
        assert_eq!(fulfil_items(&order(), &s).unwrap_err().field.as_deref(), Some("lines[0].quantity"));
        s.lines = vec![ShipmentLine { sku: "Z".into(), quantity: Decimal::ONE }];
        assert_eq!(fulfil_items(&order(), &s).unwrap_err().field.as_deref(), Some("lines[0].sku"));
    }
}
