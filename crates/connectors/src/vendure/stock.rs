//! Stock: canonical `sku@location` levels → Vendure `stockOnHand` per stock location.
//!
//! Option `stock_quantity` chooses the canonical quantity: `on_hand` (Vendure subtracts its own
//! allocations for unshipped orders to get saleable stock) or `available` (the ERP already subtracts
//! open orders, web orders it imported included). With `available`, Vendure's own allocation at the
//! location is added back (`stockOnHand = available + stockAllocated`), so saleable stock
//! (`stockOnHand − stockAllocated`) equals the ERP's available at each write, and Vendure's own movements
//! afterwards (a new order allocates, a fulfilment takes from both) keep it right: a web order the ERP
//! already counts is not subtracted twice, and a fulfilment that reaches Vendure after the ERP's stock
//! was synced does not take the shipped units off a second time. Levels that already match are not
//! written; the rest go out in one `updateProductVariants` call per batch.

use super::gql::CallError;
use super::{StockQuantity, Vendure};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::Record;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::HashMap;

pub(crate) async fn write(v: &Vendure, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let mut wanted = Vec::new(); // (key, sku, location name, quantity)
    for rec in batch {
        let Record::Stock(s) = &rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a stock record")));
            continue;
        };
        let (field, qty) = match v.options.stock_quantity {
            StockQuantity::OnHand => ("on_hand", s.on_hand),
            StockQuantity::Available => (if s.available.is_some() { "available" } else { "on_hand" }, s.available_or_on_hand()),
        };
        // Vendure counts whole units.
        match (qty.fract().is_zero(), qty.to_i64()) {
            (true, Some(n)) => wanted.push((rec.key.clone(), s.sku.clone(), s.location.clone(), n)),
            _ => outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(Some(field.into()), format!("{qty} is not a whole number of units")))),
        }
    }
    if wanted.is_empty() {
        return Ok(outcomes);
    }
    let skus: Vec<String> = wanted.iter().map(|w| w.1.clone()).collect();
    let variants = v.variants_by_sku(&skus, "stockLevels { stockLocationId stockOnHand stockAllocated }").await?;
    let mut updates: HashMap<String, Vec<(String, i64, String)>> = HashMap::new(); // variant id -> [(location id, qty, key)]
    let mut order = Vec::new();
    for (key, sku, location, qty) in wanted {
        let Some(variant) = variants.get(&sku) else {
            outcomes.push(WriteOutcome::failed(key, RecordFailure::permanent(Some("sku".into()), format!("no Vendure variant with SKU {sku:?} (write the product first)"))));
            continue;
        };
        let location_id = match stock_location(v, &location).await {
            Ok(id) => id,
            Err(f) => {
                outcomes.push(WriteOutcome::failed(key, f));
                continue;
            }
        };
        let vid = variant["id"].as_str().unwrap_or_default().to_owned();
        let level = variant["stockLevels"].as_array().into_iter().flatten().find(|l| l["stockLocationId"].as_str() == Some(location_id.as_str()));
        let current = level.and_then(|l| l["stockOnHand"].as_i64());
        let qty = match v.options.stock_quantity {
            StockQuantity::OnHand => qty,
            StockQuantity::Available => qty + level.and_then(|l| l["stockAllocated"].as_i64()).unwrap_or(0),
        };
        if current == Some(qty) {
            outcomes.push(WriteOutcome::ok(key, vid, WriteAction::Unchanged));
            continue;
        }
        if !updates.contains_key(&vid) {
            order.push(vid.clone());
        }
        updates.entry(vid).or_default().push((location_id, qty, key));
    }
    if order.is_empty() {
        return Ok(outcomes);
    }
    let inputs: Vec<Value> = order
        .iter()
        .map(|vid| {
            let levels: Vec<Value> = updates[vid].iter().map(|(loc, qty, _)| json!({"stockLocationId": loc, "stockOnHand": qty})).collect();
            json!({"id": vid, "stockLevels": levels})
        })
        .collect();
    let results: Vec<Result<(), CallError>> =
        match v.gql.call("mutation($i:[UpdateProductVariantInput!]!){ updateProductVariants(input:$i){ id } }", json!({"i": inputs})).await {
            Ok(_) => order.iter().map(|_| Ok(())).collect(),
            Err(CallError::Connector(e)) => return Err(e),
            Err(_) => {
                let fields: Vec<String> = (0..inputs.len()).map(|k| format!("updateProductVariants(input:[$v{k}]){{ id }}")).collect();
                v.gql.batch("UpdateProductVariantInput!", &fields, &inputs).await.into_iter().map(|r| r.map(|_| ())).collect()
            }
        };
    for (vid, r) in order.iter().zip(results) {
        for (_, _, key) in &updates[vid] {
            outcomes.push(match &r {
                Ok(()) => WriteOutcome::ok(key, vid, WriteAction::Updated),
                Err(e) => WriteOutcome::failed(key, e.for_record(Some("on_hand"))),
            });
        }
    }
    Ok(outcomes)
}

/// The Vendure stock location id for a canonical location: `stock_locations` maps codes to names;
/// `default` (unmapped) is the channel's first location; other names are created when missing.
async fn stock_location(v: &Vendure, location: &str) -> Result<String, RecordFailure> {
    let mut cache = v.stock_locations.lock().await;
    if cache.is_none() {
        let data = v
            .gql
            .query("{ stockLocations(options:{take:1000, sort:{id:ASC}}){ items { id name } } }", json!({}))
            .await
            .map_err(|e| RecordFailure { field: Some("location".into()), message: e.to_string(), retryable: e.is_transient() })?;
        let mut map = HashMap::new();
        for (i, l) in data.pointer("/stockLocations/items").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let id = l["id"].as_str().unwrap_or_default().to_owned();
            if i == 0 {
                map.insert("\u{0}default".to_owned(), id.clone());
            }
            map.insert(l["name"].as_str().unwrap_or_default().to_owned(), id);
        }
        *cache = Some(map);
    }
    let map = cache.as_mut().expect("loaded above");
    let name = match v.options.stock_locations.get(location) {
        Some(n) => n.clone(),
        None if location == "default" => {
            return map.get("\u{0}default").cloned().ok_or_else(|| RecordFailure::permanent(Some("location".into()), "Vendure has no stock location"));
        }
        None => location.to_owned(),
    };
    if let Some(id) = map.get(&name) {
        return Ok(id.clone());
    }
    let data = v
        .gql
        .call("mutation($i:CreateStockLocationInput!){ createStockLocation(input:$i){ id } }", json!({"i": {"name": name}}))
        .await
        .map_err(|e| e.for_record(Some("location")))?;
    let id = data.pointer("/createStockLocation/id").and_then(Value::as_str).unwrap_or_default().to_owned();
    map.insert(name, id.clone());
    Ok(id)
}
