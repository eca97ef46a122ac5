//! Price-list entries → Vendure promotions.
//!
//! Vendure has no price lists: a variant has one price per channel and currency. Its native way to
//! give a customer group a different price is a promotion with the built-in `customer_group`
//! condition. The built-in actions only discount by a percentage (not exact to the cent), so Ferry's
//! Vendure plugin (integrations/vendure-plugin) adds the action `ferry_variant_fixed_price` (variant
//! id + target unit price in minor units, in the channel's tax mode), which discounts each unit of that
//! variant down to the target.
//!
//! One promotion per entry, named `ferry:<price_list>/<sku>/<min_quantity>` (the entry's key):
//! - `applies_to = customer_group(G)` → condition `customer_group` with group G (created when missing);
//! - `applies_to = customer(C)` → a group `customer:C` holding just that customer (found by ferryCode);
//! - `applies_to = all` → condition `minimum_order_amount` 0 (a sale price for everyone);
//! - `valid_from` / `valid_to` → `startsAt` / `endsAt` (UTC days, `valid_to` inclusive).
//!
//! Not representable: quantity breaks (`min_quantity` > 1). Vendure applies every eligible promotion
//! and each discounts from the undiscounted unit price, so a break promotion would stack on top of the
//! base group price. Those entries fail with a RecordFailure naming `min_quantity`.

use super::customers::customer_group;
use super::gql::{CallError, error_result};
use super::Vendure;
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{PriceScope, Record};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashMap;

pub(crate) const ACTION: &str = "ferry_variant_fixed_price";

pub(crate) async fn write(v: &Vendure, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let ch = v.channel().await?.clone();
    let mut outcomes = Vec::new();
    let mut entries = Vec::new();
    for rec in batch {
        let Record::Price(p) = rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a price-list entry")));
            continue;
        };
        if p.min_quantity != Decimal::ONE {
            outcomes.push(WriteOutcome::failed(
                rec.key,
                RecordFailure::permanent(
                    Some("min_quantity".into()),
                    format!("quantity breaks (from {} units) are not representable in Vendure: its promotions stack, so a break price cannot replace the group price", p.min_quantity.normalize()),
                ),
            ));
            continue;
        }
        entries.push((rec.key, p));
    }
    if entries.is_empty() {
        return Ok(outcomes);
    }
    let skus: Vec<String> = entries.iter().map(|(_, p)| p.sku.clone()).collect();
    let variants = v.variants_by_sku(&skus, "taxCategory { name }").await?;
    let names: Vec<String> = entries.iter().map(|(k, _)| promo_name(k)).collect();
    let existing = promotions_by_name(v, &names).await?;

    let mut creates: Vec<(String, Value)> = Vec::new();
    let mut updates: Vec<(String, Value)> = Vec::new();
    for (key, p) in entries {
        let prepared = async {
            let variant = variants
                .get(&p.sku)
                .ok_or_else(|| RecordFailure { field: Some("sku".into()), message: format!("no Vendure variant with SKU {:?} (write the product first)", p.sku), retryable: true })?;
            let (_, rate) = ch.tax_category(variant.pointer("/taxCategory/name").and_then(Value::as_str))?;
            let minor = ch.to_minor(&p.price, rate, "price")?;
            let condition = match &p.applies_to {
                PriceScope::All => json!({"code": "minimum_order_amount", "arguments": [{"name": "amount", "value": "0"}, {"name": "taxInclusive", "value": "false"}]}),
                PriceScope::CustomerGroup(g) => {
                    let gid = customer_group(v, g).await.map_err(|f| RecordFailure { field: Some("applies_to".into()), ..f })?;
                    json!({"code": "customer_group", "arguments": [{"name": "customerGroupId", "value": gid}]})
                }
                PriceScope::Customer(code) => {
                    let gid = single_customer_group(v, code).await?;
                    json!({"code": "customer_group", "arguments": [{"name": "customerGroupId", "value": gid}]})
                }
            };
            let action = json!({"code": ACTION, "arguments": [{"name": "variantId", "value": variant["id"]}, {"name": "price", "value": minor.to_string()}]});
            Ok::<_, RecordFailure>(json!({
                "enabled": true,
                "startsAt": p.valid_from.map(|d| format!("{d}T00:00:00.000Z")),
                "endsAt": p.valid_to.and_then(|d| d.succ_opt()).map(|d| format!("{d}T00:00:00.000Z")),
                "conditions": [condition],
                "actions": [action],
                "translations": [{"languageCode": v.options.language, "name": promo_name(&key), "description": format!("Ferry price list {} for {}", p.price_list, p.sku)}],
            }))
        }
        .await;
        let input = match prepared {
            Ok(i) => i,
            Err(f) => {
                outcomes.push(WriteOutcome::failed(key, f));
                continue;
            }
        };
        match existing.get(&promo_name(&key)) {
            None => creates.push((key, input)),
            Some(e) if same(e, &input) => outcomes.push(WriteOutcome::ok(&key, e["id"].as_str().unwrap_or_default(), WriteAction::Unchanged)),
            Some(e) => {
                let mut u = input;
                u["id"] = e["id"].clone();
                updates.push((key, u));
            }
        }
    }
    for (list, mutation, ty, action) in [
        (&creates, "createPromotion", "CreatePromotionInput!", WriteAction::Created),
        (&updates, "updatePromotion", "UpdatePromotionInput!", WriteAction::Updated),
    ] {
        let fields: Vec<String> = (0..list.len())
            .map(|k| format!("{mutation}(input:$v{k}){{ __typename ... on Promotion {{ id }} ... on ErrorResult {{ errorCode message }} }}"))
            .collect();
        let vars: Vec<Value> = list.iter().map(|(_, x)| x.clone()).collect();
        for ((key, _), r) in list.iter().zip(v.gql.batch(ty, &fields, &vars).await) {
            outcomes.push(match r {
                Ok(res) => match error_result(&res, None) {
                    Some(f) => WriteOutcome::failed(key, f),
                    None => WriteOutcome::ok(key, res["id"].as_str().unwrap_or_default(), action),
                },
                Err(CallError::Connector(e)) => return Err(e),
                Err(e) => WriteOutcome::failed(key, e.for_record(None)),
            });
        }
    }
    Ok(outcomes)
}

pub(crate) fn promo_name(key: &str) -> String {
    format!("ferry:{key}")
}

async fn promotions_by_name(v: &Vendure, names: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in names.chunks(100) {
        let data = v
            .gql
            .query(
                "query($n:[String!]!,$t:Int!){ promotions(options:{filter:{name:{in:$n}},take:$t}){ items { id name enabled startsAt endsAt \
                 conditions { code args { name value } } actions { code args { name value } } } } }",
                json!({"n": chunk, "t": chunk.len()}),
            )
            .await?;
        for p in data.pointer("/promotions/items").and_then(Value::as_array).into_iter().flatten() {
            out.insert(p["name"].as_str().unwrap_or_default().to_owned(), p.clone());
        }
    }
    Ok(out)
}

/// Does the existing promotion already say what `input` says?
fn same(existing: &Value, input: &Value) -> bool {
    let ops = |list: &Value, arg_key: &str| -> Vec<(String, Vec<(String, String)>)> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|op| {
                let mut args: Vec<(String, String)> = op[arg_key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| (a["name"].as_str().unwrap_or_default().to_owned(), a["value"].as_str().map(str::to_owned).unwrap_or_else(|| a["value"].to_string())))
                    .collect();
                args.sort();
                (op["code"].as_str().unwrap_or_default().to_owned(), args)
            })
            .collect()
    };
    let day = |v: &Value| v.as_str().map(|s| s.get(..10).unwrap_or(s).to_owned());
    existing["enabled"] == input["enabled"]
        && day(&existing["startsAt"]) == day(&input["startsAt"])
        && day(&existing["endsAt"]) == day(&input["endsAt"])
        && ops(&existing["conditions"], "args") == ops(&input["conditions"], "arguments")
        && ops(&existing["actions"], "args") == ops(&input["actions"], "arguments")
}

/// A group `customer:<code>` holding the one customer with that ferryCode.
async fn single_customer_group(v: &Vendure, code: &str) -> Result<String, RecordFailure> {
    let data = v
        .gql
        .call("query($c:String!){ customers(options:{filter:{ferryCode:{eq:$c}},take:1}){ items { id groups { name } } } }", json!({"c": code}))
        .await
        .map_err(|e| e.for_record(Some("applies_to")))?;
    let customer = data.pointer("/customers/items/0").cloned().ok_or_else(|| RecordFailure {
        field: Some("applies_to".into()),
        message: format!("no Vendure customer with code {code:?} yet (sync customers first)"),
        retryable: true,
    })?;
    let name = format!("customer:{code}");
    let gid = customer_group(v, &name).await.map_err(|f| RecordFailure { field: Some("applies_to".into()), ..f })?;
    let member = customer["groups"].as_array().into_iter().flatten().any(|g| g["name"].as_str() == Some(name.as_str()));
    if !member {
        v.gql
            .call("mutation($g:ID!,$c:[ID!]!){ addCustomersToGroup(customerGroupId:$g, customerIds:$c){ id } }", json!({"g": gid, "c": [customer["id"]]}))
            .await
            .map_err(|e| e.for_record(Some("applies_to")))?;
    }
    Ok(gid)
}
