//! Products: canonical records are one per SKU; Medusa has products (handle = the canonical `group`, or
//! the SKU for a product without variants) with variants, options and option values.
//!
//! A batch is written in a few requests whatever its size: variants by SKU and products by handle are
//! looked up (two GETs); missing categories are created (parents first); new products go out in one
//! `POST /admin/products/batch` (`create`, with their variants); products whose fields differ in the
//! same call's `update`; per existing product, its missing options are added and its new or changed
//! variants go out in one `POST /admin/products/{id}/variants/batch`. Only fields that differ are sent,
//! nothing at all for a variant that already matches.
//!
//! Mapping: name → variant `title` (the product `title` is `custom.group_name` or the first record's
//! name); status active → `published`, else `draft`; categories → Medusa product categories, nested,
//! found and created by handle (the product is put in the leaf of each path); media images → `images`
//! by URL; brand, short description and `custom` → `metadata`; price → the variant's price in the
//! region's currency and tax mode; weight → grams.

use super::{Medusa, decimal, handle, unchanged};
use super::rest::CallError;
use ferry_engine::{ConnectorError, RecordFailure, RetireMode, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{MediaKind, Product, ProductStatus, Record};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const VARIANT_FIELDS: &str = "title,barcode,weight,metadata,*prices,*options,options.option.title";
const PRODUCT_FIELDS: &str = "id,title,handle,status,description,subtitle,metadata,*options,*options.values,*categories,*images,*variants";
/// The option a product without options gets (Medusa requires every product to have one).
const DEFAULT_OPTION: (&str, &str) = ("Default", "Default");

struct Prep {
    key: String,
    product: Product,
    handle: String,
    amount: Option<Decimal>,
}

pub(crate) async fn write(m: &Medusa, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let region = m.region().await?.clone();
    let mut outcomes = Vec::new();
    let mut preps = Vec::new();
    for rec in batch {
        let Record::Product(p) = rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a product record")));
            continue;
        };
        match p.price.as_ref().map(|pr| region.amount(pr, "price")).transpose() {
            Ok(amount) => {
                let h = handle(p.group.as_deref().unwrap_or(&p.sku));
                if h.is_empty() {
                    outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(Some("group".into()), "gives an empty product handle (no letters or digits)")));
                    continue;
                }
                preps.push(Prep { key: rec.key, product: p, handle: h, amount });
            }
            Err(f) => outcomes.push(WriteOutcome::failed(rec.key, f)),
        }
    }
    if preps.is_empty() {
        return Ok(outcomes);
    }
    let currency = region.currency.code().to_lowercase();

    // ---- what exists ------------------------------------------------------------------------------
    let skus: Vec<String> = preps.iter().map(|p| p.product.sku.clone()).collect();
    let variants = m.variants_by_sku(&skus, VARIANT_FIELDS).await?;
    let handles: BTreeSet<String> = preps.iter().map(|p| p.handle.clone()).collect();
    let mut products = products_where(m, "handle[]", &handles.iter().cloned().collect::<Vec<_>>()).await?;
    // A variant that lives under a product with another handle (made by hand): adopt that product.
    let orphans: Vec<String> = preps
        .iter()
        .filter(|p| !products.contains_key(&p.handle))
        .filter_map(|p| variants.get(&p.product.sku)?["product_id"].as_str().map(str::to_owned))
        .collect();
    if !orphans.is_empty() {
        let by_id: HashMap<String, Value> = products_where(m, "id[]", &orphans).await?.into_values().map(|p| (p["id"].as_str().unwrap_or_default().to_owned(), p)).collect();
        for p in &preps {
            if let Some(prod) = variants.get(&p.product.sku).and_then(|v| v["product_id"].as_str()).and_then(|id| by_id.get(id))
                && !products.contains_key(&p.handle)
            {
                products.insert(p.handle.clone(), prod.clone());
            }
        }
    }
    let mut by_handle: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in preps.iter().enumerate() {
        by_handle.entry(p.handle.clone()).or_default().push(i);
    }
    let mut failed: HashMap<usize, RecordFailure> = HashMap::new();

    // ---- categories -------------------------------------------------------------------------------
    let paths: BTreeSet<Vec<String>> = preps.iter().flat_map(|p| p.product.categories.iter().cloned()).filter(|p| !p.is_empty()).collect();
    let category_ids = if paths.is_empty() { HashMap::new() } else { ensure_categories(m, &paths).await? };
    let categories_of = |i: usize| -> Result<Vec<String>, RecordFailure> {
        let mut ids: Vec<String> = Vec::new();
        for path in &preps[i].product.categories {
            let id = category_ids
                .get(&category_handle(path))
                .ok_or_else(|| RecordFailure::permanent(Some("categories".into()), format!("category {path:?} could not be created")))?;
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids.sort();
        Ok(ids)
    };

    // ---- new products and changed product fields: one batch call ----------------------------------
    let sales_channel = m.sales_channel().await?.clone();
    let shipping_profile = m.shipping_profile().await?.clone();
    let mut creates: Vec<(String, Value)> = Vec::new();
    let mut updates: Vec<(String, Value)> = Vec::new();
    for (h, idx) in &by_handle {
        let cats = idx.iter().map(|i| categories_of(*i)).collect::<Result<Vec<_>, _>>();
        let cats = match cats {
            Ok(lists) => lists.into_iter().flatten().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>(),
            Err(f) => {
                for i in idx {
                    failed.insert(*i, f.clone());
                }
                continue;
            }
        };
        let mut target = product_fields(&preps, idx, &cats);
        if let Some(existing) = products.get(h) {
            let skus: BTreeSet<&str> = idx.iter().map(|i| preps[*i].product.sku.as_str()).collect();
            keep_other_variants_media(existing, &mut target, &skus);
        }
        match products.get(h) {
            None => {
                let mut input = target;
                input["handle"] = json!(h);
                input["sales_channels"] = json!([{"id": sales_channel}]);
                input["shipping_profile_id"] = json!(shipping_profile);
                input["options"] = json!(wanted_options(&preps, idx).into_iter().map(|(t, vals)| json!({"title": t, "values": vals})).collect::<Vec<_>>());
                input["variants"] = json!(idx.iter().map(|i| variant_input(&preps[*i], &currency, None)).collect::<Vec<_>>());
                creates.push((h.clone(), input));
            }
            Some(existing) => {
                if let Some(mut diff) = product_diff(existing, &target) {
                    diff["id"] = existing["id"].clone();
                    updates.push((h.clone(), diff));
                }
            }
        }
    }
    let mut done: Vec<(usize, String, WriteAction)> = Vec::new();
    if !creates.is_empty() || !updates.is_empty() {
        let body = json!({"create": creates.iter().map(|(_, x)| x.clone()).collect::<Vec<_>>(), "update": updates.iter().map(|(_, x)| x.clone()).collect::<Vec<_>>()});
        match m.rest.post("/admin/products/batch", &body).await {
            Ok(answer) => {
                for created in answer["created"].as_array().into_iter().flatten() {
                    let h = created["handle"].as_str().unwrap_or_default().to_owned();
                    for i in by_handle.get(&h).into_iter().flatten() {
                        let vid = created["variants"].as_array().into_iter().flatten().find(|v| v["sku"].as_str() == Some(preps[*i].product.sku.as_str())).and_then(|v| v["id"].as_str());
                        done.push((*i, vid.unwrap_or_default().to_owned(), WriteAction::Created));
                    }
                }
            }
            Err(CallError::Connector(e)) => return Err(e),
            Err(_) => {
                // One bad input fails the whole batch (one workflow): repeat one by one to find it.
                for (h, input) in &creates {
                    match m.rest.post("/admin/products", input).await {
                        Ok(answer) => {
                            for i in &by_handle[h] {
                                let vid = answer["product"]["variants"].as_array().into_iter().flatten().find(|v| v["sku"].as_str() == Some(preps[*i].product.sku.as_str())).and_then(|v| v["id"].as_str());
                                done.push((*i, vid.unwrap_or_default().to_owned(), WriteAction::Created));
                            }
                        }
                        Err(CallError::Connector(e)) => return Err(e),
                        Err(e) => {
                            for i in &by_handle[h] {
                                failed.insert(*i, e.for_record(None));
                            }
                        }
                    }
                }
                for (h, input) in &updates {
                    let id = input["id"].as_str().unwrap_or_default();
                    let mut body = input.clone();
                    if let Some(o) = body.as_object_mut() {
                        o.remove("id");
                    }
                    match m.rest.post(&format!("/admin/products/{id}"), &body).await {
                        Ok(_) => {}
                        Err(CallError::Connector(e)) => return Err(e),
                        Err(e) => {
                            for i in &by_handle[h] {
                                failed.insert(*i, e.for_record(None));
                            }
                        }
                    }
                }
            }
        }
    }
    let created_handles: BTreeSet<&String> = creates.iter().map(|(h, _)| h).collect();
    let updated_handles: BTreeSet<&String> = updates.iter().map(|(h, _)| h).collect();

    // ---- variants of existing products: options first, then one batch per product ------------------
    for (h, idx) in &by_handle {
        if created_handles.contains(h) {
            continue;
        }
        let Some(product) = products.get(h).cloned() else { continue };
        let pid = product["id"].as_str().unwrap_or_default().to_owned();
        let live: Vec<usize> = idx.iter().copied().filter(|i| !failed.contains_key(i)).collect();
        if live.is_empty() {
            continue;
        }
        if let Err(e) = ensure_options(m, &pid, &product, &wanted_options(&preps, &live)).await {
            match e {
                CallError::Connector(e) => return Err(e),
                e => {
                    for i in &live {
                        failed.insert(*i, e.for_record(Some("options")));
                    }
                    continue;
                }
            }
        }
        let mut create = Vec::new();
        let mut update = Vec::new();
        for i in &live {
            let p = &preps[*i];
            match variants.get(&p.product.sku) {
                None => create.push((*i, variant_input(p, &currency, None))),
                Some(existing) => match variant_diff(p, existing, &currency) {
                    Some(diff) => update.push((*i, diff)),
                    None if updated_handles.contains(h) => done.push((*i, existing["id"].as_str().unwrap_or_default().to_owned(), WriteAction::Updated)),
                    None => outcomes.push(unchanged(&p.key, existing["id"].as_str().unwrap_or_default())),
                },
            }
        }
        if create.is_empty() && update.is_empty() {
            continue;
        }
        let body = json!({"create": create.iter().map(|(_, x)| x.clone()).collect::<Vec<_>>(), "update": update.iter().map(|(_, x)| x.clone()).collect::<Vec<_>>()});
        match m.rest.post(&format!("/admin/products/{pid}/variants/batch"), &body).await {
            Ok(answer) => {
                let id_of = |list: &str, sku: &str| {
                    answer[list].as_array().into_iter().flatten().find(|v| v["sku"].as_str() == Some(sku)).and_then(|v| v["id"].as_str()).map(str::to_owned)
                };
                for (i, _) in &create {
                    done.push((*i, id_of("created", &preps[*i].product.sku).unwrap_or_default(), WriteAction::Created));
                }
                for (i, input) in &update {
                    done.push((*i, input["id"].as_str().unwrap_or_default().to_owned(), WriteAction::Updated));
                }
            }
            Err(CallError::Connector(e)) => return Err(e),
            Err(_) => {
                // Isolate the bad record(s), one request each (a retry finds the variants created so far by SKU).
                for (i, input) in create.iter().chain(update.iter()) {
                    let (path, body, action) = match input["id"].as_str() {
                        Some(vid) => {
                            let mut b = input.clone();
                            b.as_object_mut().map(|o| o.remove("id"));
                            (format!("/admin/products/{pid}/variants/{vid}"), b, WriteAction::Updated)
                        }
                        None => (format!("/admin/products/{pid}/variants"), input.clone(), WriteAction::Created),
                    };
                    match m.rest.post(&path, &body).await {
                        Ok(answer) => {
                            let vid = input["id"].as_str().map(str::to_owned).or_else(|| {
                                answer["product"]["variants"].as_array().into_iter().flatten().find(|v| v["sku"].as_str() == Some(preps[*i].product.sku.as_str())).and_then(|v| v["id"].as_str()).map(str::to_owned)
                            });
                            done.push((*i, vid.unwrap_or_default(), action));
                        }
                        Err(CallError::Connector(e)) => return Err(e),
                        Err(e) => {
                            failed.insert(*i, e.for_record(None));
                        }
                    }
                }
            }
        }
    }
    for (i, id, action) in done {
        if !failed.contains_key(&i) {
            outcomes.push(WriteOutcome::ok(&preps[i].key, id, action));
        }
    }
    for (i, f) in failed {
        outcomes.push(WriteOutcome::failed(&preps[i].key, f));
    }
    Ok(outcomes)
}

/// Retires products by SKU. When every variant of a product is retired in this call, `Deactivate` sets
/// the product to `draft` (unpublished, kept) and `Delete` deletes it; a variant retired while others of
/// its product stay is deleted (Medusa has no unpublished variant).
pub(crate) async fn retire(m: &Medusa, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let skus: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let variants = m.variants_by_sku(&skus, "").await?;
    let product_ids: Vec<String> = variants.values().filter_map(|v| v["product_id"].as_str().map(str::to_owned)).collect::<BTreeSet<_>>().into_iter().collect();
    let products: HashMap<String, Value> = if product_ids.is_empty() {
        HashMap::new()
    } else {
        products_where(m, "id[]", &product_ids).await?.into_values().map(|p| (p["id"].as_str().unwrap_or_default().to_owned(), p)).collect()
    };
    let retiring: BTreeSet<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let mut handled_products = BTreeSet::new();
    for (key, target) in &items {
        let Some(variant) = variants.get(key) else {
            outcomes.push(WriteOutcome::ok(key, target, WriteAction::Unchanged)); // already gone
            continue;
        };
        let vid = variant["id"].as_str().unwrap_or_default();
        let pid = variant["product_id"].as_str().unwrap_or_default().to_owned();
        let product = products.get(&pid);
        let all_retired = product.is_some_and(|p| p["variants"].as_array().into_iter().flatten().all(|v| v["sku"].as_str().is_some_and(|s| retiring.contains(s))));
        let result = match (mode, all_retired) {
            (RetireMode::Deactivate, true) => {
                if handled_products.insert(pid.clone()) && product.is_some_and(|p| p["status"] != "draft") {
                    m.rest.post(&format!("/admin/products/{pid}"), &json!({"status": "draft"})).await.map(|_| WriteAction::Retired)
                } else {
                    Ok(WriteAction::Retired)
                }
            }
            (RetireMode::Delete, true) => {
                if handled_products.insert(pid.clone()) {
                    m.rest.delete(&format!("/admin/products/{pid}")).await.map(|_| WriteAction::Retired)
                } else {
                    Ok(WriteAction::Retired)
                }
            }
            (_, false) => m.rest.delete(&format!("/admin/products/{pid}/variants/{vid}")).await.map(|_| WriteAction::Retired),
        };
        outcomes.push(match result {
            Ok(action) => WriteOutcome::ok(key, vid, action),
            Err(CallError::Connector(e)) => return Err(e),
            Err(e) => WriteOutcome::failed(key, e.for_record(None)),
        });
    }
    Ok(outcomes)
}

/// Products whose `filter` (`handle[]` or `id[]`) is one of `values`, by handle.
async fn products_where(m: &Medusa, filter: &str, values: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in values.chunks(100) {
        let mut query: Vec<(&str, String)> = chunk.iter().map(|h| (filter, h.clone())).collect();
        query.push(("fields", format!("{PRODUCT_FIELDS},variants.sku")));
        query.push(("limit", chunk.len().to_string()));
        let data = m.rest.get("/admin/products", &query).await?;
        for p in data["products"].as_array().into_iter().flatten() {
            out.insert(p["handle"].as_str().unwrap_or_default().to_owned(), p.clone());
        }
    }
    Ok(out)
}

/// The product-level fields for a group's records: the first record speaks for the product; images are
/// the union of the group's records.
fn product_fields(preps: &[Prep], idx: &[usize], categories: &[String]) -> Value {
    let first = &preps[idx[0]].product;
    let title = first.custom.get("group_name").and_then(Value::as_str).unwrap_or(&first.name);
    let mut images: Vec<String> = Vec::new();
    for i in idx {
        for media in &preps[*i].product.media {
            if media.kind == MediaKind::Image && !images.contains(&media.url) {
                images.push(media.url.clone());
            }
        }
    }
    let active = idx.iter().any(|i| preps[*i].product.status == ProductStatus::Active);
    let mut metadata = Map::new();
    metadata.insert("ferry_group".into(), json!(first.group.clone().unwrap_or_else(|| first.sku.clone())));
    if let Some(b) = &first.brand {
        metadata.insert("brand".into(), json!(b));
    }
    for (k, v) in &first.custom {
        if k != "group_name" {
            metadata.insert(k.clone(), v.clone());
        }
    }
    json!({
        "title": title,
        "status": if active { "published" } else { "draft" },
        "description": first.description.clone().unwrap_or_default(),
        "subtitle": first.short_description.clone().unwrap_or_default(),
        "images": images.iter().map(|u| json!({"url": u})).collect::<Vec<_>>(),
        "categories": categories.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        "metadata": Value::Object(metadata),
    })
}

/// A batch holding only some of a product's variants (the engine sends only changed records: a new price
/// for one size) knows only their images and categories, so the product keeps those it has besides, lest
/// one size's price change strip the other sizes' pictures. A batch holding every variant the product
/// has sets them exactly (an image dropped in the ERP goes).
fn keep_other_variants_media(existing: &Value, target: &mut Value, batch_skus: &BTreeSet<&str>) {
    let variants = existing["variants"].as_array().into_iter().flatten();
    if variants.clone().all(|v| v["sku"].as_str().is_some_and(|sku| batch_skus.contains(sku))) {
        return;
    }
    for (field, id) in [("images", "url"), ("categories", "id")] {
        let mut kept: Vec<Value> = existing[field].as_array().into_iter().flatten().filter_map(|x| x[id].as_str()).map(|v| json!({ id: v })).collect();
        for wanted in target[field].as_array().into_iter().flatten() {
            if !kept.contains(wanted) {
                kept.push(wanted.clone());
            }
        }
        target[field] = Value::Array(kept);
    }
}

/// The update of an existing product with only the fields that differ; `None` when it matches.
fn product_diff(existing: &Value, target: &Value) -> Option<Value> {
    let mut diff = Map::new();
    for k in ["title", "status"] {
        if existing[k] != target[k] {
            diff.insert(k.into(), target[k].clone());
        }
    }
    for k in ["description", "subtitle"] {
        if existing[k].as_str().unwrap_or_default() != target[k].as_str().unwrap_or_default() {
            diff.insert(k.into(), target[k].clone());
        }
    }
    let urls = |v: &Value, f: &str| -> BTreeSet<String> { v[f].as_array().into_iter().flatten().filter_map(|x| x["url"].as_str().map(str::to_owned)).collect() };
    if urls(existing, "images") != urls(target, "images") {
        diff.insert("images".into(), target["images"].clone());
    }
    let ids = |v: &Value| -> BTreeSet<String> { v["categories"].as_array().into_iter().flatten().filter_map(|x| x["id"].as_str().map(str::to_owned)).collect() };
    if ids(existing) != ids(target) {
        diff.insert("categories".into(), target["categories"].clone());
    }
    // Metadata is merged by Medusa: send the keys that differ (others set by hand stay).
    let have = existing["metadata"].as_object().cloned().unwrap_or_default();
    let changed: Map<String, Value> = target["metadata"].as_object().into_iter().flatten().filter(|(k, v)| have.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !changed.is_empty() {
        let mut all = have;
        all.extend(changed);
        diff.insert("metadata".into(), Value::Object(all));
    }
    if diff.is_empty() { None } else { Some(Value::Object(diff)) }
}

/// Option title → values wanted by the group's records (the default option for records without options).
fn wanted_options(preps: &[Prep], idx: &[usize]) -> BTreeMap<String, BTreeSet<String>> {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in idx {
        for (name, value) in options_of(&preps[*i].product) {
            wanted.entry(name).or_default().insert(value);
        }
    }
    wanted
}

fn options_of(p: &Product) -> BTreeMap<String, String> {
    if p.options.is_empty() { BTreeMap::from([(DEFAULT_OPTION.0.to_owned(), DEFAULT_OPTION.1.to_owned())]) } else { p.options.clone() }
}

/// Adds missing options and option values to an existing product, in one
/// `POST /admin/products/{id}/options/batch` (`add` new options with their values, `update` existing
/// ones with the values they lack); nothing when every option and value is there.
async fn ensure_options(m: &Medusa, pid: &str, product: &Value, wanted: &BTreeMap<String, BTreeSet<String>>) -> Result<(), CallError> {
    let (mut add, mut update) = (Vec::new(), Vec::new());
    for (title, values) in wanted {
        match product["options"].as_array().into_iter().flatten().find(|o| o["title"].as_str() == Some(title.as_str())) {
            None => add.push(json!({"title": title, "values": values})),
            Some(o) => {
                let have: BTreeSet<String> = o["values"].as_array().into_iter().flatten().filter_map(|v| v["value"].as_str().map(str::to_owned)).collect();
                // (a string would be an existing value's id; `{value}` is a new value)
                let missing: Vec<Value> = values.difference(&have).map(|v| json!({"value": v})).collect();
                if !missing.is_empty() {
                    update.push(json!({"product_option_id": o["id"], "add": missing}));
                }
            }
        }
    }
    if add.is_empty() && update.is_empty() {
        return Ok(());
    }
    m.rest.post(&format!("/admin/products/{pid}/options/batch"), &json!({"add": add, "update": update})).await?;
    Ok(())
}

fn variant_metadata(p: &Product) -> Value {
    json!({"ferry_sku": p.sku})
}

/// A new variant (`existing_prices` = None) with its price in the region's currency.
fn variant_input(p: &Prep, currency: &str, existing_prices: Option<&Value>) -> Value {
    let mut input = json!({
        "title": p.product.name,
        "sku": p.product.sku,
        "options": options_of(&p.product),
        "manage_inventory": true,
        "metadata": variant_metadata(&p.product),
    });
    if let Some(b) = &p.product.barcode {
        input["barcode"] = json!(b);
    }
    if let Some(g) = weight_grams(&p.product) {
        input["weight"] = json!(g);
    }
    input["prices"] = prices_with(existing_prices, currency, p.amount);
    input
}

/// The variant's price list with the region currency's amount set (others kept, with their ids: Medusa
/// replaces a variant's prices with the list sent).
fn prices_with(existing: Option<&Value>, currency: &str, amount: Option<Decimal>) -> Value {
    let mut out: Vec<Value> = Vec::new();
    let mut set = false;
    for p in existing.and_then(Value::as_array).into_iter().flatten() {
        // Price-list prices and prices with rules (min_quantity, region) are not the variant's own price.
        if !p["price_list_id"].is_null() || p["min_quantity"].as_f64().is_some() {
            continue;
        }
        let mut entry = json!({"id": p["id"], "currency_code": p["currency_code"], "amount": p["amount"]});
        if p["currency_code"].as_str() == Some(currency)
            && let Some(a) = amount
        {
            entry["amount"] = money_json(a);
            set = true;
        }
        out.push(entry);
    }
    if !set && let Some(a) = amount {
        out.push(json!({"currency_code": currency, "amount": money_json(a)}));
    }
    Value::Array(out)
}

/// An exact decimal as a JSON number (Medusa's API validates amounts as numbers).
pub(crate) fn money_json(a: Decimal) -> Value {
    serde_json::from_str(&a.normalize().to_string()).unwrap_or(Value::Null)
}

/// The update of an existing variant with only what differs; `None` when it matches.
fn variant_diff(p: &Prep, existing: &Value, currency: &str) -> Option<Value> {
    let mut diff = Map::new();
    if existing["title"].as_str() != Some(p.product.name.as_str()) {
        diff.insert("title".into(), json!(p.product.name));
    }
    if existing["barcode"].as_str().filter(|s| !s.is_empty()) != p.product.barcode.as_deref() {
        diff.insert("barcode".into(), json!(p.product.barcode.clone().unwrap_or_default()));
    }
    let weight = weight_grams(&p.product);
    if weight.is_some() && existing["weight"].as_i64() != weight && decimal(&existing["weight"]).and_then(|w| w.to_i64()) != weight {
        diff.insert("weight".into(), json!(weight));
    }
    if let Some(amount) = p.amount {
        let have = existing["prices"].as_array().into_iter().flatten().find(|x| x["currency_code"].as_str() == Some(currency) && x["price_list_id"].is_null()).and_then(|x| decimal(&x["amount"]));
        if have != Some(amount) {
            diff.insert("prices".into(), prices_with(Some(&existing["prices"]), currency, Some(amount)));
        }
    }
    let have: BTreeMap<String, String> = existing["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| Some((o.pointer("/option/title")?.as_str()?.to_owned(), o["value"].as_str()?.to_owned())))
        .collect();
    if have != options_of(&p.product) {
        diff.insert("options".into(), json!(options_of(&p.product)));
    }
    if existing["metadata"]["ferry_sku"].as_str() != Some(p.product.sku.as_str()) {
        let mut meta = existing["metadata"].as_object().cloned().unwrap_or_default();
        meta.insert("ferry_sku".into(), json!(p.product.sku));
        diff.insert("metadata".into(), Value::Object(meta));
    }
    if diff.is_empty() {
        return None;
    }
    diff.insert("id".into(), existing["id"].clone());
    Some(Value::Object(diff))
}

fn weight_grams(p: &Product) -> Option<i64> {
    let w = p.weight.as_ref()?;
    let factor = match w.unit.as_str() {
        "kg" => Decimal::from(1000),
        "g" => Decimal::ONE,
        "lb" => Decimal::new(45359237, 5),
        "oz" => Decimal::new(28349523125, 9),
        _ => return None,
    };
    (w.value * factor).round().to_i64()
}

/// Handle of a category path: the levels' handles joined by `--` (a level's handle never holds `--`),
/// so `Garden > Hand Tools` and `Garden Hand > Tools` stay apart.
fn category_handle(path: &[String]) -> String {
    path.iter().map(|s| handle(s)).collect::<Vec<_>>().join("--")
}

/// Category ids by handle for every prefix of the given paths, creating missing ones parents first.
async fn ensure_categories(m: &Medusa, paths: &BTreeSet<Vec<String>>) -> Result<HashMap<String, String>, ConnectorError> {
    let mut cache = m.categories.lock().await;
    let all: BTreeSet<Vec<String>> = paths.iter().flat_map(|p| (1..=p.len()).map(|n| p[..n].to_vec())).collect();
    let unknown: Vec<String> = all.iter().map(|p| category_handle(p)).filter(|h| !cache.contains_key(h)).collect();
    for chunk in unknown.chunks(100) {
        let mut query: Vec<(&str, String)> = chunk.iter().map(|h| ("handle[]", h.clone())).collect();
        query.push(("fields", "id,handle".into()));
        query.push(("limit", chunk.len().to_string()));
        let data = m.rest.get("/admin/product-categories", &query).await?;
        for c in data["product_categories"].as_array().into_iter().flatten() {
            if let (Some(h), Some(id)) = (c["handle"].as_str(), c["id"].as_str()) {
                cache.insert(h.to_owned(), id.to_owned());
            }
        }
    }
    // BTreeSet order puts a parent before its children.
    for path in &all {
        let h = category_handle(path);
        if cache.contains_key(&h) {
            continue;
        }
        let parent = if path.len() > 1 { cache.get(&category_handle(&path[..path.len() - 1])).cloned() } else { None };
        let body = json!({"name": path.last(), "handle": h, "parent_category_id": parent, "is_active": true, "is_internal": false});
        let answer = m.rest.post("/admin/product-categories", &body).await.map_err(|e| e.into_connector(&format!("{}/admin/product-categories", m.endpoint())))?;
        if let Some(id) = answer.pointer("/product_category/id").and_then(Value::as_str) {
            cache.insert(h, id.to_owned());
        }
    }
    Ok(cache.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(sku: &str, name: &str, amount: Option<&str>) -> Prep {
        Prep { key: sku.into(), product: Product { sku: sku.into(), name: name.into(), ..Default::default() }, handle: handle(sku), amount: amount.map(|a| a.parse().unwrap()) }
    }

    #[test]
    fn category_handles_keep_levels_apart() {
        assert_eq!(category_handle(&["Garden".into(), "Hand Tools".into()]), "garden--hand-tools");
        assert_ne!(category_handle(&["Garden Hand".into(), "Tools".into()]), category_handle(&["Garden".into(), "Hand Tools".into()]));
    }

    #[test]
    fn a_variant_that_matches_needs_no_write_and_a_price_change_is_the_only_field_sent() {
        let existing = json!({
            "id": "variant_1", "sku": "A-1", "title": "Spade", "barcode": null, "weight": null, "metadata": {"ferry_sku": "A-1"},
            "prices": [{"id": "price_1", "currency_code": "aud", "amount": 19.99, "price_list_id": null, "min_quantity": null},
                       {"id": "price_2", "currency_code": "usd", "amount": 13, "min_quantity": null}],
            "options": [{"id": "optval_1", "value": "Default", "option": {"title": "Default"}}]
        });
        assert!(variant_diff(&prep("A-1", "Spade", Some("19.99")), &existing, "aud").is_none());
        let diff = variant_diff(&prep("A-1", "Spade", Some("21.50")), &existing, "aud").unwrap();
        let keys: Vec<&String> = diff.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "prices"]);
        assert_eq!(diff["prices"], json!([{"id": "price_1", "currency_code": "aud", "amount": 21.5}, {"id": "price_2", "currency_code": "usd", "amount": 13}]));
    }

    #[test]
    fn products_without_options_get_the_default_option() {
        let p = prep("A-1", "Spade", None);
        assert_eq!(options_of(&p.product), BTreeMap::from([("Default".to_owned(), "Default".to_owned())]));
        let input = variant_input(&p, "aud", None);
        assert_eq!(input["options"], json!({"Default": "Default"}));
        assert_eq!(input["prices"], json!([]));
    }

    #[test]
    fn product_diffs_send_only_what_differs_and_merge_metadata() {
        let existing = json!({"title": "Spade", "status": "published", "description": "", "subtitle": null, "images": [], "categories": [{"id": "pcat_1"}], "metadata": {"ferry_group": "A-1", "by_hand": 1}});
        let target = json!({"title": "Spade", "status": "published", "description": "", "subtitle": "", "images": [], "categories": [{"id": "pcat_1"}], "metadata": {"ferry_group": "A-1"}});
        assert!(product_diff(&existing, &target).is_none());
        let target = json!({"title": "Spade", "status": "draft", "description": "", "subtitle": "", "images": [{"url": "http://x/a.jpg"}], "categories": [{"id": "pcat_1"}], "metadata": {"ferry_group": "A-1", "brand": "Acme"}});
        let diff = product_diff(&existing, &target).unwrap();
        assert_eq!(diff["status"], "draft");
        assert_eq!(diff["images"], json!([{"url": "http://x/a.jpg"}]));
        assert_eq!(diff["metadata"], json!({"ferry_group": "A-1", "by_hand": 1, "brand": "Acme"}));
        assert!(diff.get("title").is_none());
    }

    #[test]
    fn a_batch_with_some_variants_keeps_the_others_images_and_categories() {
        let existing = json!({
            "images": [{"id": "img_1", "url": "http://x/s.jpg"}, {"id": "img_2", "url": "http://x/m.jpg"}],
            "categories": [{"id": "pcat_s"}, {"id": "pcat_m"}],
            "variants": [{"sku": "TEE-S"}, {"sku": "TEE-M"}],
        });
        let target = || json!({"images": [{"url": "http://x/s2.jpg"}], "categories": [{"id": "pcat_s"}]});
        // only TEE-S changed: the product keeps TEE-M's picture and category, and gains the new one
        let mut partial = target();
        keep_other_variants_media(&existing, &mut partial, &BTreeSet::from(["TEE-S"]));
        assert_eq!(partial["images"], json!([{"url": "http://x/s.jpg"}, {"url": "http://x/m.jpg"}, {"url": "http://x/s2.jpg"}]));
        assert_eq!(partial["categories"], json!([{"id": "pcat_s"}, {"id": "pcat_m"}]));
        assert!(product_diff(&existing, &partial).is_some_and(|d| d.get("categories").is_none()), "categories unchanged are not sent");
        // every variant in the batch: the ERP's list is the product's
        let mut whole = target();
        keep_other_variants_media(&existing, &mut whole, &BTreeSet::from(["TEE-S", "TEE-M"]));
        assert_eq!(whole, target());
    }

    #[test]
    fn weights_become_grams_and_money_stays_exact() {
        let mut p = Product { sku: "A".into(), name: "A".into(), ..Default::default() };
        p.weight = Some(ferry_model::Weight { value: Decimal::new(15, 1), unit: "kg".into() });
        assert_eq!(weight_grams(&p), Some(1500));
        assert_eq!(money_json(Decimal::new(1990, 2)), json!(19.9));
        assert_eq!(money_json(Decimal::new(10, 0)), json!(10));
    }
}
