//! Stock: canonical `sku@location` levels → Medusa inventory levels (`stocked_quantity` of the SKU's
//! inventory item at the stock location).
//!
//! Inventory items are found by SKU (Medusa creates one per variant that manages inventory, with the
//! variant's SKU). Levels that already match are not written; the rest go out in one
//! `POST /admin/inventory-items/location-levels/batch` per batch (`create` for a location the item is not
//! stocked at yet, `update` otherwise). With `stock_quantity = "available"` the level's reservations are
//! added back, as for Vendure (docs/connectors/medusa.md).

use super::rest::CallError;
use super::{Medusa, StockQuantity, decimal, unchanged};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::Record;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::HashMap;

pub(crate) async fn write(m: &Medusa, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let mut wanted = Vec::new(); // (key, sku, location, quantity)
    for rec in batch {
        let Record::Stock(s) = &rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a stock record")));
            continue;
        };
        let (field, qty) = match m.options.stock_quantity {
            StockQuantity::OnHand => ("on_hand", s.on_hand),
            StockQuantity::Available => (if s.available.is_some() { "available" } else { "on_hand" }, s.available_or_on_hand()),
        };
        match (qty.fract().is_zero(), qty.to_i64()) {
            (true, Some(n)) => wanted.push((rec.key.clone(), s.sku.clone(), s.location.clone(), n)),
            _ => outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(Some(field.into()), format!("{qty} is not a whole number of units")))),
        }
    }
    if wanted.is_empty() {
        return Ok(outcomes);
    }
    let skus: Vec<String> = wanted.iter().map(|w| w.1.clone()).collect();
    let items = inventory_items(m, &skus).await?;
    let (mut create, mut update, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for (key, sku, location, qty) in wanted {
        let Some(item) = items.get(&sku) else {
            outcomes.push(WriteOutcome::failed(
                key,
                RecordFailure { field: Some("sku".into()), message: format!("no Medusa inventory item with SKU {sku:?} (write the product first)"), retryable: true },
            ));
            continue;
        };
        let location_id = match m.stock_location(&location).await {
            Ok(id) => id,
            Err(f) => {
                outcomes.push(WriteOutcome::failed(key, f));
                continue;
            }
        };
        let item_id = item["id"].as_str().unwrap_or_default().to_owned();
        let level = item["location_levels"].as_array().into_iter().flatten().find(|l| l["location_id"].as_str() == Some(location_id.as_str()));
        let reserved = level.and_then(|l| decimal(&l["reserved_quantity"])).unwrap_or_default();
        let target = match m.options.stock_quantity {
            StockQuantity::OnHand => Decimal::from(qty),
            StockQuantity::Available => Decimal::from(qty) + reserved,
        };
        let entry = json!({"inventory_item_id": item_id, "location_id": location_id, "stocked_quantity": super::products::money_json(target)});
        match level {
            Some(l) if decimal(&l["stocked_quantity"]) == Some(target) => {
                outcomes.push(unchanged(&key, &format!("{item_id}@{location_id}")));
                continue;
            }
            Some(_) => update.push(entry),
            None => create.push(entry),
        }
        keys.push((key, format!("{item_id}@{location_id}"), level.is_none()));
    }
    if keys.is_empty() {
        return Ok(outcomes);
    }
    let body = json!({"create": create, "update": update});
    match m.rest.post("/admin/inventory-items/location-levels/batch", &body).await {
        Ok(_) => {
            for (key, id, new) in keys {
                outcomes.push(WriteOutcome::ok(key, id, if new { WriteAction::Created } else { WriteAction::Updated }));
            }
        }
        Err(CallError::Connector(e)) => return Err(e),
        Err(_) => {
            // One bad level fails the batch: one request per level finds it.
            for ((key, id, new), entry) in keys.into_iter().zip(create.iter().chain(update.iter())) {
                let body = if new { json!({"create": [entry]}) } else { json!({"update": [entry]}) };
                outcomes.push(match m.rest.post("/admin/inventory-items/location-levels/batch", &body).await {
                    Ok(_) => WriteOutcome::ok(key, id, if new { WriteAction::Created } else { WriteAction::Updated }),
                    Err(CallError::Connector(e)) => return Err(e),
                    Err(e) => WriteOutcome::failed(key, e.for_record(Some("location"))),
                });
            }
        }
    }
    Ok(outcomes)
}

/// Inventory items by SKU with their location levels.
async fn inventory_items(m: &Medusa, skus: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    let mut unique: Vec<&String> = skus.iter().collect();
    unique.sort();
    unique.dedup();
    for chunk in unique.chunks(100) {
        let mut query: Vec<(&str, String)> = chunk.iter().map(|s| ("sku[]", (*s).clone())).collect();
        query.push(("fields", "id,sku,*location_levels".into()));
        query.push(("limit", chunk.len().to_string()));
        let data = m.rest.get("/admin/inventory-items", &query).await?;
        for item in data["inventory_items"].as_array().into_iter().flatten() {
            if let Some(sku) = item["sku"].as_str() {
                out.insert(sku.to_owned(), item.clone());
            }
        }
    }
    Ok(out)
}
