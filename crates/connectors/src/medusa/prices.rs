//! Price-list entries → Medusa price lists and their prices.
//!
//! One Medusa price list per canonical price list and scope, titled `ferry:<price_list>:<scope>` (scope
//! `all` or `group:<name>`; a validity window adds `:<from>..<to>`, as Medusa keeps validity on the
//! list), of type `override` (the list price replaces the variant's price, not only when lower), status
//! `active`, and for a customer-group scope the rule `customer.groups.id = [<group id>]` (the group is
//! created when missing). A customer's own prices (`applies_to = customer(C)`) use a group
//! `customer:C` holding just that customer (found by `metadata.ferry_code`).
//!
//! Quantity breaks: the prices of one variant in one list get `min_quantity` from the entry and
//! `max_quantity` = the next break's minimum − 1 (the last break open), so exactly one row applies to any
//! quantity. Every row of a batch goes out in one `POST /admin/price-lists/{id}/prices/batch` per list
//! (`create` / `update`), only rows whose amount or range differ. The target id is `<list id>/<price id>`,
//! which `retire` deletes.

use super::customers::customer_group;
use super::products::money_json;
use super::rest::CallError;
use super::{Medusa, decimal, unchanged};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{PriceListEntry, PriceScope, Record};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// A price list with its prices; `prices.price_set.variant.id` is what makes Medusa answer each price's
/// `variant_id` (`*prices` alone leaves it out).
const PRICE_LIST_FIELDS: &str = "id,title,status,prices.id,prices.amount,prices.currency_code,prices.min_quantity,prices.max_quantity,prices.price_set.variant.id";

/// A price list's validity window: first and last day (ISO dates), either open.
type Validity = (Option<String>, Option<String>);

struct Entry {
    key: String,
    variant_id: String,
    min: i64,
    amount: Decimal,
}

pub(crate) async fn write(m: &Medusa, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let region = m.region().await?.clone();
    let currency = region.currency.code().to_lowercase();
    let mut outcomes = Vec::new();
    let mut entries: Vec<(String, PriceListEntry)> = Vec::new();
    for rec in batch {
        let Record::Price(p) = rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a price-list entry")));
            continue;
        };
        entries.push((rec.key, p));
    }
    if entries.is_empty() {
        return Ok(outcomes);
    }
    let skus: Vec<String> = entries.iter().map(|(_, p)| p.sku.clone()).collect();
    let variants = m.variants_by_sku(&skus, "").await?;
    // list title → (scope rule group name, validity, entries)
    let mut lists: BTreeMap<String, (Option<String>, Validity, Vec<Entry>)> = BTreeMap::new();
    for (key, p) in entries {
        let prepared = (|| {
            let variant = variants.get(&p.sku).ok_or_else(|| RecordFailure { field: Some("sku".into()), message: format!("no Medusa variant with SKU {:?} (write the product first)", p.sku), retryable: true })?;
            let min = match (p.min_quantity.fract().is_zero(), p.min_quantity.to_i64()) {
                (true, Some(n)) if n >= 1 => n,
                _ => return Err(RecordFailure::permanent(Some("min_quantity".into()), format!("{} is not a whole number of units ≥ 1", p.min_quantity))),
            };
            let amount = region.amount(&p.price, "price")?;
            let group = match &p.applies_to {
                PriceScope::All => None,
                PriceScope::CustomerGroup(g) => Some(g.clone()),
                PriceScope::Customer(c) => Some(format!("customer:{c}")),
            };
            let scope_customer = match &p.applies_to {
                PriceScope::Customer(c) => Some(c.clone()),
                _ => None,
            };
            Ok((Entry { key: key.clone(), variant_id: variant["id"].as_str().unwrap_or_default().to_owned(), min, amount }, group, scope_customer))
        })();
        match prepared {
            Ok((entry, group, scope_customer)) => {
                if let Some(code) = scope_customer {
                    // A customer's own prices: a group `customer:<code>` holding just that customer.
                    if let Err(f) = single_customer_group(m, &code).await {
                        outcomes.push(WriteOutcome::failed(key, f));
                        continue;
                    }
                }
                let validity = (p.valid_from.map(|d| d.to_string()), p.valid_to.map(|d| d.to_string()));
                let title = list_title(&p.price_list, group.as_deref(), &validity);
                lists.entry(title).or_insert_with(|| (group, validity, Vec::new())).2.push(entry);
            }
            Err(f) => outcomes.push(WriteOutcome::failed(key, f)),
        }
    }
    if lists.is_empty() {
        return Ok(outcomes);
    }
    let existing = price_lists(m).await?;
    for (title, (group, validity, entries)) in lists {
        let list = match existing.get(&title) {
            Some(l) => l.clone(),
            None => match create_list(m, &title, group.as_deref(), &validity).await {
                Ok(l) => l,
                Err(CallError::Connector(e)) => return Err(e),
                Err(e) => {
                    for en in entries {
                        outcomes.push(WriteOutcome::failed(en.key, e.for_record(Some("price_list"))));
                    }
                    continue;
                }
            },
        };
        let list_id = list["id"].as_str().unwrap_or_default().to_owned();
        let (create, update, keep) = plan(&list, &entries, &currency);
        for (key, price_id) in keep {
            outcomes.push(unchanged(&key, &format!("{list_id}/{price_id}")));
        }
        if create.is_empty() && update.is_empty() {
            continue;
        }
        let body = json!({
            "create": create.iter().map(|(_, row)| row.clone()).collect::<Vec<_>>(),
            "update": update.iter().map(|(_, row)| row.clone()).collect::<Vec<_>>(),
        });
        match m.rest.post(&format!("/admin/price-lists/{list_id}/prices/batch"), &body).await {
            Ok(answer) => {
                for (key, row) in &create {
                    let id = answer["created"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["variant_id"] == row["variant_id"] && decimal(&p["min_quantity"]) == decimal(&row["min_quantity"]))
                        .and_then(|p| p["id"].as_str())
                        .unwrap_or_default();
                    if let Some(key) = key {
                        outcomes.push(WriteOutcome::ok(key, format!("{list_id}/{id}"), WriteAction::Created));
                    }
                }
                for (key, row) in &update {
                    if let Some(key) = key {
                        outcomes.push(WriteOutcome::ok(key, format!("{list_id}/{}", row["id"].as_str().unwrap_or_default()), WriteAction::Updated));
                    }
                }
            }
            Err(CallError::Connector(e)) => return Err(e),
            Err(e) => {
                for (key, _) in create.iter().chain(update.iter()) {
                    if let Some(key) = key {
                        outcomes.push(WriteOutcome::failed(key, e.for_record(Some("price"))));
                    }
                }
            }
        }
    }
    Ok(outcomes)
}

/// Makes sure the group `customer:<code>` exists and holds the customer whose `metadata.ferry_code` is
/// `code` (Medusa cannot filter customers by metadata: they are paged through once and cached).
async fn single_customer_group(m: &Medusa, code: &str) -> Result<(), RecordFailure> {
    let as_failure = |e: CallError| RecordFailure { field: Some("applies_to".into()), ..e.for_record(None) };
    let id = match super::customers::customer_id_by_code(m, code).await.map_err(|e| as_failure(CallError::Connector(e)))? {
        Some(id) => id,
        None => {
            return Err(RecordFailure { field: Some("applies_to".into()), message: format!("no Medusa customer with code {code:?} (write the customer first)"), retryable: true });
        }
    };
    let gid = customer_group(m, &format!("customer:{code}")).await.map_err(as_failure)?;
    let members = m.rest.get(&format!("/admin/customer-groups/{gid}"), &[("fields", "id,customers.id".into())]).await.map_err(|e| as_failure(CallError::Connector(e)))?;
    let inside = members["customer_group"]["customers"].as_array().into_iter().flatten().any(|c| c["id"].as_str() == Some(id.as_str()));
    if !inside {
        m.rest.post(&format!("/admin/customer-groups/{gid}/customers"), &json!({"add": [id]})).await.map_err(as_failure)?;
    }
    Ok(())
}

fn list_title(price_list: &str, group: Option<&str>, validity: &Validity) -> String {
    let scope = match group {
        Some(g) => format!("group:{g}"),
        None => "all".into(),
    };
    let mut title = format!("ferry:{price_list}:{scope}");
    if validity.0.is_some() || validity.1.is_some() {
        title.push_str(&format!(":{}..{}", validity.0.as_deref().unwrap_or(""), validity.1.as_deref().unwrap_or("")));
    }
    title
}

/// Rows to create and update (each with the record key it writes, `None` for a neighbour whose range
/// moved) and the records already matching (key, price id). `max_quantity` follows from the breaks of
/// each variant: the existing rows in the list and this batch's entries together.
#[allow(clippy::type_complexity)]
fn plan(list: &Value, entries: &[Entry], currency: &str) -> (Vec<(Option<String>, Value)>, Vec<(Option<String>, Value)>, Vec<(String, String)>) {
    // variant → min → (existing row, wanted amount, record key)
    let mut table: BTreeMap<String, BTreeMap<i64, (Option<Value>, Option<Decimal>, Option<String>)>> = BTreeMap::new();
    let touched: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.variant_id.as_str()).collect();
    for row in list["prices"].as_array().into_iter().flatten() {
        let Some(vid) = row["variant_id"].as_str() else { continue };
        if !touched.contains(vid) || row["currency_code"].as_str() != Some(currency) {
            continue;
        }
        let min = decimal(&row["min_quantity"]).and_then(|d| d.to_i64()).unwrap_or(1);
        table.entry(vid.to_owned()).or_default().insert(min, (Some(row.clone()), None, None));
    }
    for e in entries {
        let slot = table.entry(e.variant_id.clone()).or_default().entry(e.min).or_insert((None, None, None));
        slot.1 = Some(e.amount);
        slot.2 = Some(e.key.clone());
    }
    let (mut create, mut update, mut keep) = (Vec::new(), Vec::new(), Vec::new());
    for (vid, breaks) in table {
        let mins: Vec<i64> = breaks.keys().copied().collect();
        for (n, (min, (row, amount, key))) in breaks.into_iter().enumerate() {
            let max = mins.get(n + 1).map(|next| next - 1);
            let amount = amount.or_else(|| row.as_ref().and_then(|r| decimal(&r["amount"]))).unwrap_or_default();
            let wanted = json!({"variant_id": vid, "currency_code": currency, "amount": money_json(amount), "min_quantity": min, "max_quantity": max});
            match row {
                None => create.push((key, wanted)),
                Some(r) => {
                    let same = decimal(&r["amount"]) == Some(amount) && decimal(&r["max_quantity"]).and_then(|d| d.to_i64()) == max;
                    let id = r["id"].as_str().unwrap_or_default().to_owned();
                    if same {
                        if let Some(k) = key {
                            keep.push((k, id));
                        }
                    } else {
                        let mut w = wanted;
                        w["id"] = json!(id);
                        update.push((key, w));
                    }
                }
            }
        }
    }
    (create, update, keep)
}

/// Ferry's price lists (title `ferry:…`) with their prices, by title.
async fn price_lists(m: &Medusa) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    let mut offset = 0;
    loop {
        let data = m
            .rest
            .get("/admin/price-lists", &[("q", "ferry:".into()), ("fields", PRICE_LIST_FIELDS.into()), ("limit", "100".into()), ("offset", offset.to_string())])
            .await?;
        let page = data["price_lists"].as_array().cloned().unwrap_or_default();
        for l in &page {
            if let Some(t) = l["title"].as_str().filter(|t| t.starts_with("ferry:")) {
                out.insert(t.to_owned(), l.clone());
            }
        }
        offset += page.len();
        if page.len() < 100 || offset >= data["count"].as_u64().unwrap_or(0) as usize {
            return Ok(out);
        }
    }
}

async fn create_list(m: &Medusa, title: &str, group: Option<&str>, validity: &Validity) -> Result<Value, CallError> {
    let mut body = json!({"title": title, "description": "Written by Ferry", "type": "override", "status": "active"});
    if let Some(g) = group {
        body["rules"] = json!({"customer.groups.id": [customer_group(m, g).await?]});
    }
    if let Some(from) = &validity.0 {
        body["starts_at"] = json!(format!("{from}T00:00:00Z"));
    }
    if let Some(to) = &validity.1 {
        body["ends_at"] = json!(format!("{to}T23:59:59Z"));
    }
    let mut list = m.rest.post("/admin/price-lists", &body).await?["price_list"].clone();
    if !list["prices"].is_array() {
        list["prices"] = json!([]);
    }
    Ok(list)
}

/// Deletes price rows (`<list id>/<price id>` target ids), one batch call per list.
pub(crate) async fn retire(m: &Medusa, items: Vec<(String, String)>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut by_list: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for (key, target) in items {
        match target.split_once('/') {
            Some((list, price)) => by_list.entry(list.to_owned()).or_default().push((key, price.to_owned())),
            None => outcomes.push(WriteOutcome::failed(key, RecordFailure::permanent(None, format!("target id {target:?} is not <price list id>/<price id>")))),
        }
    }
    for (list, rows) in by_list {
        let ids: Vec<&String> = rows.iter().map(|(_, p)| p).collect();
        match m.rest.post(&format!("/admin/price-lists/{list}/prices/batch"), &json!({"delete": ids})).await {
            Ok(_) => outcomes.extend(rows.into_iter().map(|(k, p)| WriteOutcome::ok(k, format!("{list}/{p}"), WriteAction::Retired))),
            Err(CallError::Connector(e)) => return Err(e),
            Err(e) => outcomes.extend(rows.into_iter().map(|(k, _)| WriteOutcome::failed(k, e.for_record(None)))),
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, vid: &str, min: i64, amount: &str) -> Entry {
        Entry { key: key.into(), variant_id: vid.into(), min, amount: amount.parse().unwrap() }
    }

    #[test]
    fn quantity_breaks_get_ranges_that_do_not_overlap() {
        let list = json!({"id": "plist_1", "prices": []});
        let (create, update, keep) = plan(&list, &[entry("k1", "v1", 1, "18"), entry("k10", "v1", 10, "16.5"), entry("k50", "v1", 50, "15")], "aud");
        assert!(update.is_empty() && keep.is_empty());
        let ranges: Vec<(i64, Option<i64>)> = create.iter().map(|(_, r)| (r["min_quantity"].as_i64().unwrap(), r["max_quantity"].as_i64())).collect();
        assert_eq!(ranges, [(1, Some(9)), (10, Some(49)), (50, None)]);
        assert_eq!(create[1].1["amount"], json!(16.5));
    }

    #[test]
    fn a_new_break_closes_the_open_range_of_the_one_before_and_equal_rows_are_kept() {
        // As GET /admin/price-lists answers its prices.
        let list = json!({"id": "plist_1", "prices": [
            {"id": "price_a", "variant_id": "v1", "currency_code": "aud", "amount": 18, "min_quantity": 1, "max_quantity": null},
            {"id": "price_b", "variant_id": "v2", "currency_code": "aud", "amount": 7, "min_quantity": 1, "max_quantity": null}
        ]});
        let (create, update, keep) = plan(&list, &[entry("k1", "v1", 1, "18"), entry("k10", "v1", 10, "16")], "aud");
        assert_eq!(keep, Vec::<(String, String)>::new(), "the 1+ row's range changes");
        assert_eq!(update.len(), 1);
        assert_eq!(update[0].0.as_deref(), Some("k1"));
        assert_eq!(update[0].1["max_quantity"], json!(9));
        assert_eq!(create.len(), 1);
        let (create, update, keep) = plan(&list, &[entry("k2", "v2", 1, "7")], "aud");
        assert!(create.is_empty() && update.is_empty());
        assert_eq!(keep, [("k2".to_owned(), "price_b".to_owned())]);
    }

    #[test]
    fn list_titles_name_list_scope_and_validity() {
        assert_eq!(list_title("Trade", Some("Trade"), &(None, None)), "ferry:Trade:group:Trade");
        assert_eq!(list_title("Sale", None, &(Some("2026-01-01".into()), None)), "ferry:Sale:all:2026-01-01..");
    }
}
