//! Shipments → Vendure fulfilments (written once).
//!
//! The order is found by its code (= canonical `order_number`). The shipment number is stored twice so
//! a retry never fulfils twice: on the fulfilment itself (`customFields.ferryShipmentNumber`, set in
//! the same insert by the `ferry-fulfillment` handler) and, written *before* the fulfilment, in the
//! order's `customFields.ferryShipments` (`;SH-1;SH-2;`), which `find_by_key` searches because Vendure
//! has no query over fulfilments. `write` also looks at the order's fulfilments before adding one.
//! Then `addFulfillmentToOrder` (carrier → method, tracking code, shipment lines; no lines = everything
//! not yet fulfilled) and `transitionFulfillmentToState(Shipped)`. Error results
//! (`ITEMS_ALREADY_FULFILLED_ERROR`, `INSUFFICIENT_STOCK_ON_HAND_ERROR`, …) fail only that shipment.

use super::Vendure;
use super::gql::error_result;
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Record, Shipment};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::HashMap;

const ORDER_FIELDS: &str = "id code state customFields { ferryShipments } lines { id quantity productVariant { sku } } \
    fulfillments { id state method trackingCode customFields { ferryShipmentNumber } lines { orderLineId quantity } }";

pub(crate) async fn write(v: &Vendure, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    // Shipments one by one: each is a small chain of dependent calls on its own order.
    for rec in batch {
        let Record::Shipment(s) = &rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a shipment record")));
            continue;
        };
        outcomes.push(match write_one(v, s).await? {
            Ok((id, action)) => WriteOutcome::ok(rec.key, id, action),
            Err(f) => WriteOutcome::failed(rec.key, f),
        });
    }
    Ok(outcomes)
}

async fn order_by_code(v: &Vendure, code: &str) -> Result<Option<Value>, ConnectorError> {
    let q = format!("query($c:String!){{ orders(options:{{filter:{{code:{{eq:$c}}}},take:1}}){{ items {{ {ORDER_FIELDS} }} }} }}");
    Ok(v.gql.query(&q, json!({"c": code})).await?.pointer("/orders/items/0").cloned())
}

fn existing_fulfillment<'a>(order: &'a Value, number: &str) -> Option<&'a Value> {
    order["fulfillments"]
        .as_array()?
        .iter()
        .find(|f| f.pointer("/customFields/ferryShipmentNumber").and_then(Value::as_str) == Some(number) && f["state"] != "Cancelled")
}

async fn write_one(v: &Vendure, s: &Shipment) -> Result<Result<(String, WriteAction), RecordFailure>, ConnectorError> {
    let Some(order) = order_by_code(v, &s.order_number).await? else {
        // The order may not have reached this channel yet: worth another try later.
        return Ok(Err(RecordFailure { field: Some("order_number".into()), message: format!("no Vendure order with code {:?}", s.order_number), retryable: true }));
    };
    if let Some(f) = existing_fulfillment(&order, &s.number) {
        let id = f["id"].as_str().unwrap_or_default().to_owned();
        return Ok(match ship(v, &id, f["state"].as_str().unwrap_or_default()).await? {
            Ok(true) => Ok((id, WriteAction::Updated)),
            Ok(false) => Ok((id, WriteAction::Unchanged)),
            Err(e) => Err(e),
        });
    }
    let lines = match fulfil_lines(&order, s) {
        Ok(l) => l,
        Err(f) => return Ok(Err(f)),
    };
    // Reserve the number on the order first: find_by_key's index, written before the fulfilment exists.
    let marker = format!(";{};", s.number);
    let current = order.pointer("/customFields/ferryShipments").and_then(Value::as_str).unwrap_or("");
    if !current.contains(&marker) {
        let next = if current.is_empty() { marker.clone() } else { format!("{current}{};", s.number) };
        if let Err(e) = v
            .gql
            .call("mutation($i:UpdateOrderInput!){ setOrderCustomFields(input:$i){ id } }", json!({"i": {"id": order["id"], "customFields": {"ferryShipments": next}}}))
            .await
        {
            return Ok(Err(e.for_record(Some("number"))));
        }
    }
    let mut args = vec![json!({"name": "method", "value": s.carrier.clone().or_else(|| s.service.clone()).unwrap_or_default()}), json!({"name": "trackingCode", "value": s.tracking_code.clone().unwrap_or_default()})];
    if v.options.fulfillment_handler == "ferry-fulfillment" {
        args.push(json!({"name": "shipmentNumber", "value": s.number}));
        args.push(json!({"name": "trackingUrl", "value": s.tracking_url.clone().unwrap_or_default()}));
    }
    let input = json!({"lines": lines, "handler": {"code": v.options.fulfillment_handler, "arguments": args}});
    let res = v
        .gql
        .call(
            "mutation($i:FulfillOrderInput!){ addFulfillmentToOrder(input:$i){ __typename ... on Fulfillment { id state } ... on ErrorResult { errorCode message } } }",
            json!({"i": input}),
        )
        .await;
    let f = match res {
        Ok(d) => d["addFulfillmentToOrder"].clone(),
        Err(e) => return Ok(Err(e.for_record(Some("lines")))),
    };
    if let Some(fail) = error_result(&f, Some("lines")) {
        return Ok(Err(fail));
    }
    let id = f["id"].as_str().unwrap_or_default().to_owned();
    Ok(match ship(v, &id, f["state"].as_str().unwrap_or_default()).await? {
        Ok(_) => Ok((id, WriteAction::Created)),
        Err(e) => Err(e),
    })
}

/// Moves a fulfilment to Shipped (from Pending); `Ok(false)` when it already is Shipped or later.
async fn ship(v: &Vendure, id: &str, state: &str) -> Result<Result<bool, RecordFailure>, ConnectorError> {
    if matches!(state, "Shipped" | "Delivered") {
        return Ok(Ok(false));
    }
    let r = v
        .gql
        .call(
            "mutation($id:ID!){ transitionFulfillmentToState(id:$id, state:\"Shipped\"){ __typename ... on Fulfillment { id state } ... on ErrorResult { errorCode message } } }",
            json!({"id": id}),
        )
        .await;
    Ok(match r {
        // The fulfilment exists; a retry finds it and only repeats the transition.
        Ok(d) => match error_result(&d["transitionFulfillmentToState"], Some("shipped_at")) {
            Some(mut f) => {
                f.retryable = true;
                Err(f)
            }
            None => Ok(true),
        },
        Err(e) => {
            let mut f = e.for_record(Some("shipped_at"));
            f.retryable = true;
            Err(f)
        }
    })
}

/// `[{orderLineId, quantity}]` for the shipment: its lines by SKU, or everything not yet fulfilled.
fn fulfil_lines(order: &Value, s: &Shipment) -> Result<Vec<Value>, RecordFailure> {
    let mut fulfilled: HashMap<String, i64> = HashMap::new();
    for f in order["fulfillments"].as_array().into_iter().flatten().filter(|f| f["state"] != "Cancelled") {
        for l in f["lines"].as_array().into_iter().flatten() {
            *fulfilled.entry(l["orderLineId"].as_str().unwrap_or_default().to_owned()).or_default() += l["quantity"].as_i64().unwrap_or(0);
        }
    }
    let order_lines: Vec<&Value> = order["lines"].as_array().into_iter().flatten().collect();
    let open = |l: &Value| l["quantity"].as_i64().unwrap_or(0) - fulfilled.get(l["id"].as_str().unwrap_or_default()).copied().unwrap_or(0);
    if s.lines.is_empty() {
        let all: Vec<Value> = order_lines.iter().filter(|l| open(l) > 0).map(|l| json!({"orderLineId": l["id"], "quantity": open(l)})).collect();
        if all.is_empty() {
            return Err(RecordFailure::permanent(Some("lines".into()), format!("order {} has nothing left to fulfil", s.order_number)));
        }
        return Ok(all);
    }
    let mut out = Vec::new();
    for (i, sl) in s.lines.iter().enumerate() {
        let qty = match (sl.quantity.fract().is_zero(), sl.quantity.to_i64()) {
            (true, Some(q)) => q,
            _ => return Err(RecordFailure::permanent(Some(format!("lines[{i}].quantity")), format!("{} is not a whole number", sl.quantity))),
        };
        let Some(line) = order_lines.iter().find(|l| l.pointer("/productVariant/sku").and_then(Value::as_str) == Some(sl.sku.as_str())) else {
            return Err(RecordFailure::permanent(Some(format!("lines[{i}].sku")), format!("order {} has no line with SKU {:?}", s.order_number, sl.sku)));
        };
        // Vendure itself rejects over-fulfilment (ITEMS_ALREADY_FULFILLED / quantity errors): let it say so.
        out.push(json!({"orderLineId": line["id"], "quantity": qty}));
    }
    Ok(out)
}

/// Shipment number → fulfilment id, via the order's `ferryShipments` index (one request for all keys).
pub(crate) async fn find_by_key(v: &Vendure, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(50) {
        let body: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, k)| {
                format!(
                    "q{i}: orders(options:{{filter:{{ferryShipments:{{contains:{}}}}},take:5}}){{ items {{ fulfillments {{ id state customFields {{ ferryShipmentNumber }} }} }} }}",
                    serde_json::to_string(&format!(";{k};")).unwrap_or_default()
                )
            })
            .collect();
        let data = v.gql.query(&format!("{{ {} }}", body.join("\n")), json!({})).await?;
        for (i, k) in chunk.iter().enumerate() {
            let found = data[format!("q{i}")]["items"].as_array().into_iter().flatten().find_map(|o| existing_fulfillment(o, k).and_then(|f| f["id"].as_str()));
            if let Some(id) = found {
                out.insert(k.clone(), id.to_owned());
            }
        }
    }
    Ok(out)
}
