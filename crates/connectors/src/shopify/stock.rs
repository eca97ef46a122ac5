//! Stock: the `available` quantity of each SKU's inventory item at the mapped location, all levels of a
//! location in one `inventorySetQuantities` call.
//!
//! Each quantity is guarded by `changeFromQuantity`, the quantity read just before: when an order took
//! stock in between, Shopify refuses the set (`CHANGE_FROM_QUANTITY_STALE`) instead of overwriting the
//! sale; the connector then reads again and sets once more (the ERP's figure is the truth, but only a
//! figure set against what the shop really had). An item not yet stocked at the location is activated
//! there first. A level already at the figure is `Unchanged` and not sent.

use super::Shopify;
use super::client::doc;
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::Record;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// One level to set.
#[derive(Clone, Debug)]
struct Level {
    key: String,
    sku: String,
    item: String,
    quantity: i64,
}

pub(crate) async fn write(s: &Shopify, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let mut wanted: Vec<(String, String, String, Decimal)> = Vec::new(); // key, sku, location, quantity
    for r in batch {
        match r.record {
            Record::Stock(l) => wanted.push((r.key, l.sku.clone(), l.location.clone(), l.available_or_on_hand())),
            _ => outcomes.push(WriteOutcome::failed(r.key, RecordFailure::permanent(None, "not a stock record"))),
        }
    }
    let skus: Vec<String> = wanted.iter().map(|(_, s, _, _)| s.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let variants = s.variants_by_sku(&skus).await?;
    let mut by_location: BTreeMap<String, Vec<Level>> = BTreeMap::new();
    for (key, sku, location, qty) in wanted {
        let Some(item) = variants.get(&sku).and_then(|v| v.pointer("/inventoryItem/id")).and_then(Value::as_str) else {
            // retryable: the product may be written by the same run's products stream later
            outcomes.push(WriteOutcome::failed(key, RecordFailure { field: Some("sku".into()), message: format!("no Shopify variant with SKU {sku:?}"), retryable: true }));
            continue;
        };
        let quantity = match whole(qty) {
            Ok(q) => q,
            Err(f) => {
                outcomes.push(WriteOutcome::failed(key, f));
                continue;
            }
        };
        let location_id = match s.location_id(&location).await? {
            Ok(id) => id,
            Err(message) => {
                outcomes.push(WriteOutcome::failed(key, RecordFailure::permanent(Some("location".into()), message)));
                continue;
            }
        };
        by_location.entry(location_id).or_default().push(Level { key, sku, item: item.to_owned(), quantity });
    }
    for (location, levels) in by_location {
        outcomes.extend(set_levels(s, &location, levels).await?);
    }
    Ok(outcomes)
}

/// A canonical quantity as Shopify's whole number (negative is allowed: oversold).
fn whole(q: Decimal) -> Result<i64, RecordFailure> {
    if q.fract() != Decimal::ZERO {
        return Err(RecordFailure::permanent(Some("on_hand".into()), format!("{q} is not a whole number of units (Shopify counts units)")));
    }
    q.to_i64().filter(|n| n.abs() <= 1_000_000_000).ok_or_else(|| RecordFailure::permanent(Some("on_hand".into()), format!("{q} is out of Shopify's range")))
}

/// Current `available` per inventory item at a location; `None` for an item not stocked there.
async fn current(s: &Shopify, location: &str, items: &[String]) -> Result<HashMap<String, Option<i64>>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in items.chunks(100) {
        let data = s.client.query(doc::INVENTORY_LEVELS, json!({"ids": chunk, "locationId": location})).await?;
        for n in data["nodes"].as_array().into_iter().flatten() {
            let Some(id) = n["id"].as_str() else { continue };
            let level = &n["inventoryLevel"];
            let available = if level.is_null() {
                None
            } else {
                Some(level["quantities"].as_array().into_iter().flatten().find(|q| q["name"] == "available").and_then(|q| q["quantity"].as_i64()).unwrap_or(0))
            };
            out.insert(id.to_owned(), available);
        }
    }
    Ok(out)
}

async fn set_levels(s: &Shopify, location: &str, levels: Vec<Level>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let target = |l: &Level| format!("{}@{location}", l.item);
    let mut outcomes = Vec::new();
    let mut pending = levels;
    // One re-read and re-send for quantities that changed under us; a second change fails the level (retryable).
    for attempt in 1..=2 {
        if pending.is_empty() {
            break;
        }
        let items: Vec<String> = pending.iter().map(|l| l.item.clone()).collect();
        let now = current(s, location, &items).await?;
        let mut to_set = Vec::new();
        for l in pending.drain(..) {
            match now.get(&l.item).copied().flatten() {
                Some(q) if q == l.quantity => outcomes.push(WriteOutcome::ok(l.key.clone(), target(&l), WriteAction::Unchanged)),
                Some(q) => to_set.push((l, q)),
                None => {
                    let data = s.client.call(doc::INVENTORY_ACTIVATE, json!({"inventoryItemId": l.item, "locationId": location})).await;
                    match data.map(|d| super::client::user_errors(&d["inventoryActivate"])) {
                        Ok(None) => to_set.push((l, 0)),
                        Ok(Some(f)) => outcomes.push(WriteOutcome::failed(l.key.clone(), RecordFailure { field: Some("location".into()), ..f })),
                        Err(e) => outcomes.push(WriteOutcome::failed(l.key.clone(), e.for_record(Some("location")))),
                    }
                }
            }
        }
        if to_set.is_empty() {
            break;
        }
        let quantities: Vec<Value> = to_set
            .iter()
            .map(|(l, from)| json!({"inventoryItemId": l.item, "locationId": location, "quantity": l.quantity, "changeFromQuantity": from}))
            .collect();
        let input = json!({"name": "available", "reason": "correction", "referenceDocumentUri": "ferry://stock", "quantities": quantities});
        let data = match s.client.call(doc::INVENTORY_SET_QUANTITIES, json!({"input": input})).await {
            Ok(d) => d,
            Err(e) => {
                let f = e.for_record(Some("on_hand"));
                outcomes.extend(to_set.into_iter().map(|(l, _)| WriteOutcome::failed(l.key, f.clone())));
                break;
            }
        };
        let errors = data.pointer("/inventorySetQuantities/userErrors").and_then(Value::as_array).cloned().unwrap_or_default();
        let (failed, stale) = classify(&errors, to_set.len());
        for (i, (l, _)) in to_set.into_iter().enumerate() {
            if stale.contains(&i) && attempt == 1 {
                pending.push(l);
            } else if let Some(f) = failed.get(&i).or(failed.get(&usize::MAX)) {
                outcomes.push(WriteOutcome::failed(l.key.clone(), RecordFailure { message: format!("{} ({} at {location})", f.message, l.sku), ..f.clone() }));
            } else if stale.contains(&i) {
                outcomes.push(WriteOutcome::failed(l.key.clone(), RecordFailure::transient(format!("{}: the quantity at {location} changed twice while being set", l.sku))));
            } else {
                outcomes.push(WriteOutcome::ok(l.key.clone(), target(&l), WriteAction::Updated));
            }
        }
    }
    Ok(outcomes)
}

/// userErrors of inventorySetQuantities → (failure per quantity index, usize::MAX for errors naming no
/// index; the indexes whose changeFromQuantity was stale).
fn classify(errors: &[Value], n: usize) -> (HashMap<usize, RecordFailure>, Vec<usize>) {
    let mut failed = HashMap::new();
    let mut stale = Vec::new();
    for e in errors {
        // field: ["input", "quantities", "3", "changeFromQuantity"]
        let path: Vec<String> = e["field"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_owned).or_else(|| p.as_u64().map(|n| n.to_string()))).collect();
        let index = path.iter().position(|p| p == "quantities").and_then(|i| path.get(i + 1)).and_then(|s| s.parse::<usize>().ok()).filter(|i| *i < n);
        let code = e["code"].as_str().unwrap_or_default();
        if matches!(code, "CHANGE_FROM_QUANTITY_STALE" | "COMPARE_QUANTITY_STALE") {
            match index {
                Some(i) => stale.push(i),
                None => stale.extend(0..n),
            }
            continue;
        }
        let f = RecordFailure::permanent(Some("on_hand".into()), format!("{code}: {}", e["message"].as_str().unwrap_or("refused")));
        failed.insert(index.unwrap_or(usize::MAX), f);
    }
    (failed, stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Shopify answering each request with the next canned body (operation name checked),
    /// recording the requests' variables: the compare-and-set retry without a race to arrange.
    async fn canned(answers: Vec<(&'static str, Value)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for (operation, answer) in answers {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let body = loop {
                    let mut chunk = [0u8; 4096];
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())).unwrap_or(0);
                        if body.len() >= len {
                            break body.to_owned();
                        }
                    }
                };
                let request: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(request["operationName"], operation, "{request}");
                log.lock().unwrap().push(request["variables"].clone());
                let mut answer = answer;
                answer["extensions"] = json!({"cost": {"requestedQueryCost": 10, "actualQueryCost": 10, "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}}});
                let text = answer.to_string();
                let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len());
                sock.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (base, seen)
    }

    fn level(available: i64) -> Value {
        json!({"data": {"nodes": [{"id": "gid://shopify/InventoryItem/1", "sku": "A", "inventoryLevel": {"id": "L1", "quantities": [{"name": "available", "quantity": available}]}}]}})
    }

    #[tokio::test]
    async fn a_quantity_changed_under_the_set_is_read_again_and_set_against_the_new_figure() {
        let stale = json!({"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": [
            {"field": ["input", "quantities", "0", "changeFromQuantity"], "message": "The quantity changed", "code": "CHANGE_FROM_QUANTITY_STALE"}]}}});
        let done = json!({"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": "g", "changes": []}, "userErrors": []}}});
        let (base, seen) = canned(vec![("InventoryLevels", level(5)), ("InventorySetQuantities", stale), ("InventoryLevels", level(3)), ("InventorySetQuantities", done)]).await;
        let options: super::super::Options = serde_json::from_value(json!({"shop": "x", "base_url": base, "access_token": "t"})).unwrap();
        let s = Shopify::new(options, "shop").unwrap();
        let levels = vec![Level { key: "A/WH".into(), sku: "A".into(), item: "gid://shopify/InventoryItem/1".into(), quantity: 12 }];
        let out = set_levels(&s, "gid://shopify/Location/1", levels).await.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].result.as_ref().unwrap().action, WriteAction::Updated, "{out:?}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen[1]["input"]["quantities"][0]["changeFromQuantity"], 5);
        assert_eq!(seen[3]["input"]["quantities"][0]["changeFromQuantity"], 3, "set against what the shop had after the sale");
        assert_eq!(seen[3]["input"]["quantities"][0]["quantity"], 12);
    }

    #[test]
    fn quantities_are_whole_units() {
        assert_eq!(whole(Decimal::new(50, 1)).unwrap(), 5);
        assert_eq!(whole(Decimal::from(-2)).unwrap(), -2);
        assert_eq!(whole(Decimal::new(55, 1)).unwrap_err().field.as_deref(), Some("on_hand"));
    }

    #[test]
    fn user_errors_are_told_apart_by_index_and_staleness() {
        let errors = vec![
            json!({"field": ["input", "quantities", "1", "changeFromQuantity"], "message": "The specified compare quantity does not match", "code": "CHANGE_FROM_QUANTITY_STALE"}),
            json!({"field": ["input", "quantities", "2", "quantity"], "message": "too high", "code": "INVALID_QUANTITY_TOO_HIGH"}),
        ];
        let (failed, stale) = classify(&errors, 3);
        assert_eq!(stale, vec![1]);
        assert!(failed[&2].message.starts_with("INVALID_QUANTITY_TOO_HIGH"));
        assert!(!failed.contains_key(&0));
        let (failed, _) = classify(&[json!({"field": ["input", "reason"], "message": "bad reason", "code": "INVALID_REASON"})], 3);
        assert!(failed.contains_key(&usize::MAX), "an error naming no quantity concerns them all");
    }
}
