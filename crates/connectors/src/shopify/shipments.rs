//! Shipments → Shopify fulfillments, exactly once.
//!
//! The order is found by name (= canonical `order_number`, e.g. `#1001`). Before anything is created the
//! shipment number is reserved on the order: the tag `ferry-shipment:<number>` (searchable: `find_by_key`
//! finds the order by it) and the metafield `<namespace>.shipment_<number>` = `pending@<time>`. Then
//! `fulfillmentCreate` (the shipment's lines allocated over the order's open fulfillment orders; no lines
//! = everything not yet fulfilled; tracking company/number/url; the buyer notified per `notify_customer`),
//! and the metafield becomes the fulfillment's id.
//!
//! A retry after a crash finds the metafield: an id is the fulfillment (done); `pending@T` claims the
//! fulfillment created at or after T that no other shipment claims (the create went through, the
//! record of it did not), or creates it when there is none.

use super::Shopify;
use super::client::{doc, user_errors};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Record, Shipment};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

pub(crate) fn tag(number: &str) -> String {
    format!("ferry-shipment:{number}")
}

/// The metafield key of a shipment number (Shopify keys: letters, digits, `-`, `_`; up to 64).
pub(crate) fn metafield_key(number: &str) -> String {
    super::products::metafield_key(&format!("shipment_{number}"))
}

pub(crate) async fn write(s: &Shopify, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    for r in batch {
        let Record::Shipment(sh) = &r.record else {
            outcomes.push(WriteOutcome::failed(r.key, RecordFailure::permanent(None, "not a shipment record")));
            continue;
        };
        outcomes.push(match write_one(s, sh).await? {
            Ok((id, action)) => WriteOutcome::ok(r.key, id, action),
            Err(f) => WriteOutcome::failed(r.key, f),
        });
    }
    Ok(outcomes)
}

async fn order(s: &Shopify, query: String) -> Result<Option<Value>, ConnectorError> {
    let data = s.client.query(doc::FULFILLMENT_ORDERS, json!({"query": query, "namespace": s.options.metafield_namespace})).await?;
    Ok(data.pointer("/orders/nodes/0").filter(|o| !o.is_null()).cloned())
}

fn metafields(order: &Value) -> HashMap<String, String> {
    order
        .pointer("/metafields/nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["key"].as_str()?.to_owned(), m["value"].as_str()?.to_owned())))
        .collect()
}

/// The fulfillment a shipment already is on this order, if any (see the module comment).
pub(crate) fn existing(order: &Value, number: &str) -> Option<String> {
    let marks = metafields(order);
    let mine = marks.get(&metafield_key(number))?;
    let Some(since) = mine.strip_prefix("pending@") else {
        return Some(mine.clone());
    };
    let claimed: BTreeSet<&str> = marks.values().map(String::as_str).collect();
    let since = chrono::DateTime::parse_from_rfc3339(since).ok()?;
    order["fulfillments"]
        .as_array()?
        .iter()
        .filter(|f| f["status"].as_str() != Some("CANCELLED"))
        .filter(|f| f["createdAt"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).is_some_and(|t| t >= since))
        .filter_map(|f| f["id"].as_str())
        .find(|id| !claimed.contains(id))
        .map(str::to_owned)
}

async fn write_one(s: &Shopify, sh: &Shipment) -> Result<Result<(String, WriteAction), RecordFailure>, ConnectorError> {
    let query = super::orders::keys_query(std::slice::from_ref(&sh.order_number), &s.options.order_prefix);
    let Some(order) = order(s, query).await? else {
        return Ok(Err(RecordFailure { field: Some("order_number".into()), message: format!("no Shopify order named {:?}", sh.order_number), retryable: true }));
    };
    let order_id = order["id"].as_str().unwrap_or_default().to_owned();
    let key = metafield_key(&sh.number);
    if let Some(id) = existing(&order, &sh.number) {
        // A claimed pending mark: record the id now.
        if metafields(&order).get(&key).is_some_and(|v| v.starts_with("pending@")) {
            set_mark(s, &order_id, &key, &id).await?;
            return Ok(Ok((id, WriteAction::Resumed)));
        }
        return Ok(Ok((id, WriteAction::Unchanged)));
    }
    let line_items = match allocate(&order, sh) {
        Ok(l) => l,
        Err(f) => return Ok(Err(f)),
    };
    // Reserve: the tag for find_by_key, the pending mark for a retry.
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match s.client.call(doc::TAGS_ADD, json!({"id": order_id, "tags": [tag(&sh.number)]})).await {
        Ok(d) => {
            if let Some(f) = user_errors(&d["tagsAdd"]) {
                return Ok(Err(RecordFailure { field: Some("number".into()), ..f }));
            }
        }
        Err(e) => return Ok(Err(e.for_record(Some("number")))),
    }
    if !metafields(&order).contains_key(&key) {
        set_mark(s, &order_id, &key, &format!("pending@{stamp}")).await?;
    }
    let mut fulfillment = json!({"lineItemsByFulfillmentOrder": line_items, "notifyCustomer": s.options.notify_customer});
    let mut tracking = serde_json::Map::new();
    if let Some(c) = sh.carrier.as_ref().or(sh.service.as_ref()) {
        tracking.insert("company".into(), json!(c));
    }
    if let Some(n) = &sh.tracking_code {
        tracking.insert("number".into(), json!(n));
    }
    if let Some(u) = &sh.tracking_url {
        tracking.insert("url".into(), json!(u));
    }
    if !tracking.is_empty() {
        fulfillment["trackingInfo"] = Value::Object(tracking);
    }
    let data = match s.client.call(doc::FULFILLMENT_CREATE, json!({"fulfillment": fulfillment, "message": format!("Shipment {}", sh.number)})).await {
        Ok(d) => d,
        Err(e) => return Ok(Err(e.for_record(None))),
    };
    let payload = &data["fulfillmentCreate"];
    if let Some(f) = user_errors(payload) {
        return Ok(Err(f));
    }
    let Some(id) = payload.pointer("/fulfillment/id").and_then(Value::as_str).map(str::to_owned) else {
        return Ok(Err(RecordFailure::transient("fulfillmentCreate answered without a fulfillment")));
    };
    set_mark(s, &order_id, &key, &id).await?;
    Ok(Ok((id, WriteAction::Created)))
}

async fn set_mark(s: &Shopify, order_id: &str, key: &str, value: &str) -> Result<(), ConnectorError> {
    let metafield = json!({"ownerId": order_id, "namespace": s.options.metafield_namespace, "key": key, "type": "single_line_text_field", "value": value});
    let data = s.client.query(doc::METAFIELDS_SET, json!({"metafields": [metafield]})).await?;
    if let Some(f) = user_errors(&data["metafieldsSet"]) {
        return Err(ConnectorError::permanent(s.endpoint(), format!("order {order_id}: recording {key}: {}", f.message)));
    }
    Ok(())
}

/// The shipment's lines over the order's open fulfillment orders (pure): `lineItemsByFulfillmentOrder`.
/// No lines: every open fulfillment order whole.
pub(crate) fn allocate(order: &Value, sh: &Shipment) -> Result<Vec<Value>, RecordFailure> {
    let open: Vec<&Value> = order
        .pointer("/fulfillmentOrders/nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|fo| matches!(fo["status"].as_str(), Some("OPEN" | "IN_PROGRESS" | "SCHEDULED")))
        .collect();
    if sh.lines.is_empty() {
        if open.is_empty() {
            return Err(RecordFailure::permanent(Some("lines".into()), format!("order {} has nothing left to fulfil", sh.order_number)));
        }
        return Ok(open.iter().map(|fo| json!({"fulfillmentOrderId": fo["id"]})).collect());
    }
    // remaining per fulfillment order line
    let mut remaining: Vec<(String, String, String, i64)> = Vec::new(); // fo id, fo line id, sku, remaining
    for fo in &open {
        for l in fo.pointer("/lineItems/nodes").and_then(Value::as_array).into_iter().flatten() {
            let sku = l["sku"].as_str().or_else(|| l.pointer("/lineItem/sku").and_then(Value::as_str)).unwrap_or_default();
            remaining.push((fo["id"].as_str().unwrap_or_default().to_owned(), l["id"].as_str().unwrap_or_default().to_owned(), sku.to_owned(), l["remainingQuantity"].as_i64().unwrap_or(0)));
        }
    }
    let mut take: Vec<(String, String, i64)> = Vec::new();
    for (i, line) in sh.lines.iter().enumerate() {
        let mut want = line.quantity.to_i64().filter(|_| line.quantity.fract().is_zero()).ok_or_else(|| {
            RecordFailure::permanent(Some(format!("lines[{i}].quantity")), format!("{} is not a whole number of units", line.quantity))
        })?;
        for r in remaining.iter_mut().filter(|r| r.2 == line.sku) {
            let n = want.min(r.3);
            if n > 0 {
                take.push((r.0.clone(), r.1.clone(), n));
                r.3 -= n;
                want -= n;
            }
        }
        if want > 0 {
            return Err(RecordFailure::permanent(
                Some(format!("lines[{i}].quantity")),
                format!("{} more of {} than order {} has left to fulfil", want, line.sku, sh.order_number),
            ));
        }
    }
    let mut by_fo: Vec<(String, Vec<Value>)> = Vec::new();
    for (fo, line, n) in take {
        match by_fo.iter_mut().find(|(id, _)| *id == fo) {
            Some((_, lines)) => lines.push(json!({"id": line, "quantity": n})),
            None => by_fo.push((fo, vec![json!({"id": line, "quantity": n})])),
        }
    }
    Ok(by_fo.into_iter().map(|(fo, lines)| json!({"fulfillmentOrderId": fo, "fulfillmentOrderLineItems": lines})).collect())
}

pub(crate) async fn find_by_key(s: &Shopify, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
    let mut out = HashMap::new();
    for k in keys {
        let query = format!("tag:'{}'", tag(k).replace(['\'', '\\'], ""));
        if let Some(order) = order(s, query).await?
            && let Some(id) = existing(&order, k)
        {
            out.insert(k.clone(), id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Stream;

    fn shipment(v: Value) -> Shipment {
        match Record::parse(Stream::Shipments, v, "t").unwrap() {
            Record::Shipment(s) => s,
            _ => unreachable!(),
        }
    }

    fn order() -> Value {
        json!({"id": "gid://shopify/Order/1", "name": "#1001",
            "metafields": {"nodes": []}, "fulfillments": [],
            "fulfillmentOrders": {"nodes": [
                {"id": "gid://shopify/FulfillmentOrder/1", "status": "OPEN", "lineItems": {"nodes": [
                    {"id": "gid://shopify/FulfillmentOrderLineItem/1", "sku": "A", "remainingQuantity": 2},
                    {"id": "gid://shopify/FulfillmentOrderLineItem/2", "sku": "B", "remainingQuantity": 1}]}},
                {"id": "gid://shopify/FulfillmentOrder/2", "status": "OPEN", "lineItems": {"nodes": [
                    {"id": "gid://shopify/FulfillmentOrderLineItem/3", "sku": "A", "remainingQuantity": 3}]}},
                {"id": "gid://shopify/FulfillmentOrder/3", "status": "CLOSED", "lineItems": {"nodes": [
                    {"id": "gid://shopify/FulfillmentOrderLineItem/4", "sku": "A", "remainingQuantity": 9}]}}
            ]}})
    }

    #[test]
    fn lines_are_allocated_over_open_fulfillment_orders() {
        let sh = shipment(json!({"number": "SH-1", "order_number": "#1001", "lines": [{"sku": "A", "quantity": "4"}, {"sku": "B", "quantity": "1"}]}));
        let alloc = allocate(&order(), &sh).unwrap();
        assert_eq!(alloc, vec![
            json!({"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/1", "fulfillmentOrderLineItems": [{"id": "gid://shopify/FulfillmentOrderLineItem/1", "quantity": 2}, {"id": "gid://shopify/FulfillmentOrderLineItem/2", "quantity": 1}]}),
            json!({"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/2", "fulfillmentOrderLineItems": [{"id": "gid://shopify/FulfillmentOrderLineItem/3", "quantity": 2}]}),
        ]);
        let too_many = shipment(json!({"number": "SH-1", "order_number": "#1001", "lines": [{"sku": "A", "quantity": "6"}]}));
        assert_eq!(allocate(&order(), &too_many).unwrap_err().field.as_deref(), Some("lines[0].quantity"), "the closed fulfillment order does not count");
        let whole = shipment(json!({"number": "SH-1", "order_number": "#1001"}));
        assert_eq!(allocate(&order(), &whole).unwrap().len(), 2);
    }

    #[test]
    fn a_recorded_or_claimable_fulfillment_is_found_and_others_are_not_claimed_twice() {
        let mut o = order();
        assert_eq!(existing(&o, "SH-1"), None);
        o["metafields"]["nodes"] = json!([{"key": "shipment_sh-1", "value": "gid://shopify/Fulfillment/5"}]);
        assert_eq!(existing(&o, "SH-1").as_deref(), Some("gid://shopify/Fulfillment/5"));
        // SH-2 reserved at 10:00; a fulfillment from 09:00 and SH-1's are not its own, the one from 10:00:02 is
        o["metafields"]["nodes"] = json!([
            {"key": "shipment_sh-1", "value": "gid://shopify/Fulfillment/5"},
            {"key": "shipment_sh-2", "value": "pending@2026-12-03T10:00:00Z"}]);
        o["fulfillments"] = json!([
            {"id": "gid://shopify/Fulfillment/4", "status": "SUCCESS", "createdAt": "2026-12-03T09:00:00Z"},
            {"id": "gid://shopify/Fulfillment/5", "status": "SUCCESS", "createdAt": "2026-12-03T10:00:01Z"}]);
        assert_eq!(existing(&o, "SH-2"), None, "nothing to claim: it must be created");
        o["fulfillments"].as_array_mut().unwrap().push(json!({"id": "gid://shopify/Fulfillment/6", "status": "SUCCESS", "createdAt": "2026-12-03T10:00:02Z"}));
        assert_eq!(existing(&o, "SH-2").as_deref(), Some("gid://shopify/Fulfillment/6"));
        assert_eq!(metafield_key("SH 1/2"), "shipment_sh_1_2");
    }
}
