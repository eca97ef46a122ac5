//! Price-list entries → Shopify B2B catalogs and price lists.
//!
//! - A canonical price list (`price_list`, e.g. `TRADE`) is a Shopify price list of that name in the
//!   shop's currency (parent adjustment 0 %: variants without a fixed price keep their own), attached to a
//!   catalog of the same title, created on first use. Who buys from it is the catalog's context: the
//!   company locations of customers whose `price_list` names it (see `customers`). `applies_to` (all, a
//!   group, one customer) therefore does not change where the entry goes: the list's name carries it.
//! - `min_quantity` 1 → the variant's fixed price; `min_quantity` N > 1 → a quantity price break from N
//!   units (Shopify requires the variant to have a fixed price in the list for that). All of a list's
//!   entries in a batch go in one `quantityPricingByVariantUpdate`; an existing break at the same minimum
//!   quantity is replaced by id, other breaks of the variant are kept.
//! - Prices are written in the shop's currency and tax mode (the shop's base prices' mode).
//! - Shopify price lists have no validity dates: an entry whose `valid_from`/`valid_to` excludes today
//!   fails naming the field; one valid today is written with a warning.

use super::Shopify;
use super::client::{doc, user_errors};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{PriceListEntry, Record};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// A price list and its catalog.
#[derive(Clone, Debug)]
pub(crate) struct Catalog {
    pub price_list_id: String,
    pub catalog_id: String,
}

/// The price list and catalog named `name`, created when missing.
pub(crate) async fn catalog_for(s: &Shopify, name: &str) -> Result<Catalog, ConnectorError> {
    if let Some(c) = s.price_lists.lock().await.get(name) {
        return Ok(c.clone());
    }
    let mut after: Option<String> = None;
    let mut found = None;
    'pages: loop {
        let data = s.client.query(doc::PRICE_LISTS, json!({"first": 100, "after": after})).await?;
        for p in data.pointer("/priceLists/nodes").and_then(Value::as_array).into_iter().flatten() {
            if p["name"].as_str() == Some(name) {
                found = Some((p["id"].as_str().unwrap_or_default().to_owned(), p.pointer("/catalog/id").and_then(Value::as_str).map(str::to_owned)));
                break 'pages;
            }
        }
        let page = data.pointer("/priceLists/pageInfo").cloned().unwrap_or(Value::Null);
        after = page["endCursor"].as_str().map(str::to_owned);
        if page["hasNextPage"] != json!(true) || after.is_none() {
            break;
        }
    }
    let currency = s.shop().await?.currency;
    let fail = |what: &str, m: String| ConnectorError::permanent(s.endpoint(), format!("price list {name:?}: {what}: {m}"));
    let (price_list_id, catalog_id) = match found {
        Some((pl, Some(cat))) => (pl, cat),
        other => {
            let catalog = s.client.query(doc::CATALOG_CREATE, json!({"input": {"title": name, "status": "ACTIVE", "context": {"companyLocationIds": []}}})).await?;
            let payload = &catalog["catalogCreate"];
            if let Some(f) = user_errors(payload) {
                return Err(fail("catalogCreate", f.message));
            }
            let catalog_id = payload.pointer("/catalog/id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let pl = match other {
                Some((pl, None)) => pl,
                _ => {
                    let input = json!({"name": name, "currency": currency.code(), "catalogId": catalog_id, "parent": {"adjustment": {"type": "PERCENTAGE_DECREASE", "value": 0.0}}});
                    let data = s.client.query(doc::PRICE_LIST_CREATE, json!({"input": input})).await?;
                    let payload = &data["priceListCreate"];
                    if let Some(f) = user_errors(payload) {
                        return Err(fail("priceListCreate", f.message));
                    }
                    payload.pointer("/priceList/id").and_then(Value::as_str).unwrap_or_default().to_owned()
                }
            };
            (pl, catalog_id)
        }
    };
    let c = Catalog { price_list_id, catalog_id };
    s.price_lists.lock().await.insert(name.to_owned(), c.clone());
    Ok(c)
}

pub(crate) async fn write(s: &Shopify, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let shop = s.shop().await?.clone();
    let today = chrono::Utc::now().date_naive();
    let mut outcomes = Vec::new();
    let mut lists: BTreeMap<String, Vec<(String, PriceListEntry, Option<String>)>> = BTreeMap::new();
    for r in batch {
        let Record::Price(p) = r.record else {
            outcomes.push(WriteOutcome::failed(r.key, RecordFailure::permanent(None, "not a price-list entry")));
            continue;
        };
        match check_entry(&p, shop.currency, shop.taxes_included, today) {
            Ok(warning) => lists.entry(p.price_list.clone()).or_default().push((r.key, p, warning)),
            Err(f) => outcomes.push(WriteOutcome::failed(r.key, f)),
        }
    }
    for (name, entries) in lists {
        let catalog = catalog_for(s, &name).await?;
        let skus: Vec<String> = entries.iter().map(|(_, p, _)| p.sku.clone()).collect();
        let variants = s.variants_by_sku(&skus).await?;
        let mut ready = Vec::new();
        for (key, p, w) in entries {
            match variants.get(&p.sku).and_then(|v| v["id"].as_str()) {
                Some(id) => ready.push((key, p, w, id.to_owned())),
                None => outcomes.push(WriteOutcome::failed(key, RecordFailure { field: Some("sku".into()), message: format!("no Shopify variant with SKU {:?}", p.sku), retryable: true })),
            }
        }
        if ready.is_empty() {
            continue;
        }
        let mut variant_ids: Vec<&str> = ready.iter().map(|(_, _, _, id)| id.as_str()).collect();
        variant_ids.sort_unstable();
        variant_ids.dedup();
        let mut existing_prices = Vec::new();
        // 25 variants a query: prices(first: 25) × breaks(first: 10) stays well under the query cost limit
        for chunk in variant_ids.chunks(25) {
            let ids_query = chunk.iter().map(|id| format!("variant_id:{}", id.rsplit('/').next().unwrap_or(id))).collect::<Vec<_>>().join(" OR ");
            let data = s.client.query(doc::PRICE_LIST_PRICES, json!({"id": catalog.price_list_id, "query": ids_query})).await?;
            existing_prices.extend(data.pointer("/priceList/prices/nodes").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        let mut breaks: HashMap<(String, i64), String> = HashMap::new();
        for p in &existing_prices {
            let variant = p.pointer("/variant/id").and_then(Value::as_str).unwrap_or_default();
            for b in p.pointer("/quantityPriceBreaks/nodes").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(id), Some(min)) = (b["id"].as_str(), b["minimumQuantity"].as_i64()) {
                    breaks.insert((variant.to_owned(), min), id.to_owned());
                }
            }
        }
        let input = pricing_input(shop.currency.code(), &ready.iter().map(|(_, p, _, id)| (p, id.as_str())).collect::<Vec<_>>(), &breaks);
        let data = s.client.call(doc::QUANTITY_PRICING_BY_VARIANT_UPDATE, json!({"priceListId": catalog.price_list_id, "input": input})).await;
        let failure = match data {
            Ok(d) => user_errors(&d["quantityPricingByVariantUpdate"]),
            Err(e) => Some(e.for_record(Some("price"))),
        };
        for (key, _, warning, id) in ready {
            outcomes.push(match (&failure, warning) {
                (Some(f), _) => WriteOutcome::failed(key, f.clone()),
                (None, Some(w)) => WriteOutcome::warned(key, format!("{}#{id}", catalog.price_list_id), WriteAction::Updated, w),
                (None, None) => WriteOutcome::ok(key, format!("{}#{id}", catalog.price_list_id), WriteAction::Updated),
            });
        }
    }
    Ok(outcomes)
}

/// Whether Shopify can hold this entry: currency, tax mode, whole minimum quantity, dates (a warning when
/// dates are given but hold today).
fn check_entry(p: &PriceListEntry, currency: ferry_model::Currency, taxes_included: bool, today: chrono::NaiveDate) -> Result<Option<String>, RecordFailure> {
    if p.price.currency != currency {
        return Err(RecordFailure::permanent(Some("price.currency".into()), format!("price is in {} but the shop sells in {currency}", p.price.currency)));
    }
    if p.price.tax_inclusive != taxes_included {
        return Err(RecordFailure::permanent(
            Some("price.tax_inclusive".into()),
            format!("the shop's prices {} tax: price-list prices must too", if taxes_included { "include" } else { "exclude" }),
        ));
    }
    if p.min_quantity.fract() != Decimal::ZERO || p.min_quantity.to_i64().is_none() {
        return Err(RecordFailure::permanent(Some("min_quantity".into()), format!("{} is not a whole number of units", p.min_quantity)));
    }
    if p.price.amount.normalize().scale() > currency.minor_units() {
        return Err(RecordFailure::permanent(Some("price.amount".into()), format!("{} has more decimals than {currency} allows", p.price.amount)));
    }
    if let Some(from) = p.valid_from.filter(|f| *f > today) {
        return Err(RecordFailure::permanent(Some("valid_from".into()), format!("Shopify price lists have no validity dates: this price starts {from} (write it then)")));
    }
    if let Some(to) = p.valid_to.filter(|t| *t < today) {
        return Err(RecordFailure::permanent(Some("valid_to".into()), format!("Shopify price lists have no validity dates: this price ended {to}")));
    }
    Ok((p.valid_from.is_some() || p.valid_to.is_some()).then(|| format!("{}: Shopify price lists have no validity dates; the price stands until changed", p.key())))
}

/// The quantityPricingByVariantUpdate input (pure): fixed prices for `min_quantity` 1, breaks above,
/// an existing break at the same minimum replaced by its id.
fn pricing_input(currency: &str, entries: &[(&PriceListEntry, &str)], existing_breaks: &HashMap<(String, i64), String>) -> Value {
    let money = |a: Decimal| json!({"amount": a.normalize().to_string(), "currencyCode": currency});
    let mut prices = Vec::new();
    let mut breaks = Vec::new();
    let mut delete = Vec::new();
    for (p, variant) in entries {
        let min = p.min_quantity.to_i64().unwrap_or(1);
        if min <= 1 {
            prices.push(json!({"variantId": variant, "price": money(p.price.amount)}));
        } else {
            if let Some(id) = existing_breaks.get(&((*variant).to_owned(), min)) {
                delete.push(json!(id));
            }
            breaks.push(json!({"variantId": variant, "minimumQuantity": min, "price": money(p.price.amount)}));
        }
    }
    json!({
        "pricesToAdd": prices, "pricesToDeleteByVariantId": [],
        "quantityPriceBreaksToAdd": breaks, "quantityPriceBreaksToDelete": delete,
        "quantityRulesToAdd": [], "quantityRulesToDeleteByVariantId": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::{Currency, Stream};

    fn entry(v: Value) -> PriceListEntry {
        match Record::parse(Stream::Prices, v, "t").unwrap() {
            Record::Price(p) => p,
            _ => unreachable!(),
        }
    }

    #[test]
    fn fixed_prices_and_quantity_breaks_replace_breaks_at_the_same_minimum() {
        let base = entry(json!({"price_list": "TRADE", "sku": "A", "price": {"amount": "9.50", "currency": "AUD", "tax_inclusive": false}}));
        let ten = entry(json!({"price_list": "TRADE", "sku": "A", "min_quantity": "10", "price": {"amount": "8.00", "currency": "AUD", "tax_inclusive": false}}));
        let mut existing = HashMap::new();
        existing.insert(("gid://shopify/ProductVariant/1".to_owned(), 10), "gid://shopify/QuantityPriceBreak/7".to_owned());
        existing.insert(("gid://shopify/ProductVariant/1".to_owned(), 50), "gid://shopify/QuantityPriceBreak/8".to_owned());
        let v = "gid://shopify/ProductVariant/1";
        let input = pricing_input("AUD", &[(&base, v), (&ten, v)], &existing);
        assert_eq!(input["pricesToAdd"], json!([{"variantId": v, "price": {"amount": "9.5", "currencyCode": "AUD"}}]));
        assert_eq!(input["quantityPriceBreaksToAdd"], json!([{"variantId": v, "minimumQuantity": 10, "price": {"amount": "8", "currencyCode": "AUD"}}]));
        assert_eq!(input["quantityPriceBreaksToDelete"], json!(["gid://shopify/QuantityPriceBreak/7"]), "the break at 50 is kept");
    }

    #[test]
    fn entries_shopify_cannot_hold_fail_naming_the_field() {
        let aud = Currency::parse("AUD").unwrap();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let ok = entry(json!({"price_list": "T", "sku": "A", "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}}));
        assert_eq!(check_entry(&ok, aud, false, today).unwrap(), None);
        assert_eq!(check_entry(&ok, aud, true, today).unwrap_err().field.as_deref(), Some("price.tax_inclusive"));
        let later = entry(json!({"price_list": "T", "sku": "A", "valid_from": "2027-01-01", "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}}));
        assert_eq!(check_entry(&later, aud, false, today).unwrap_err().field.as_deref(), Some("valid_from"));
        let now = entry(json!({"price_list": "T", "sku": "A", "valid_to": "2026-12-31", "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}}));
        assert!(check_entry(&now, aud, false, today).unwrap().is_some(), "valid today: written with a warning");
        let frac = entry(json!({"price_list": "T", "sku": "A", "min_quantity": "2.5", "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}}));
        assert_eq!(check_entry(&frac, aud, false, today).unwrap_err().field.as_deref(), Some("min_quantity"));
    }
}
