//! Products: one `productSet` per Shopify product (synchronous, identified by handle).
//!
//! - Canonical products with the same `group` are the variants of one Shopify product, handle =
//!   the group (or the SKU) made URL-safe; each canonical product is a variant found by SKU.
//! - `productSet` replaces the variant list: variants of the product that are not in the batch are sent
//!   again by id with their current options, so writing one SKU never deletes its siblings.
//! - options → product options and variant option values (no options: Shopify's `Title` / `Default Title`);
//!   description → descriptionHtml; brand → vendor; `custom.tags` (a list) → tags; categories → manual
//!   collections, one per category path (title `A > B > C`), created when missing; media → files: images
//!   as IMAGE, documents (PDF) as FILE, videos as EXTERNAL_VIDEO (a link to YouTube/Vimeo);
//!   other custom fields → variant metafields in the configured namespace, each declared once as a
//!   metafield definition of the type its value has;
//!   status: active → ACTIVE, draft → DRAFT, discontinued (every variant) → ARCHIVED.
//! - A batch of at least `bulk_write_threshold` products runs the same productSet as one bulk mutation
//!   (JSONL of the variables, staged upload, `bulkOperationRunMutation`, the result JSONL by line).
//! - price → price and rrp → compareAtPrice, in the shop's currency and tax mode (converted with the
//!   product's `custom.tax_rate` when the modes differ; otherwise the record fails naming the field).

use super::Shopify;
use super::client::{CallError, doc, parse_errors, user_errors};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{MediaKind, Price, Product, ProductStatus, Record};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

/// Custom fields with a meaning of their own (not written as metafields).
const RESERVED_CUSTOM: &[&str] = &["tags", "tax_rate", "product_type"];

pub(crate) async fn write(s: &Shopify, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let mut groups: BTreeMap<String, Vec<(String, Product)>> = BTreeMap::new();
    for r in batch {
        match r.record {
            Record::Product(p) => groups.entry(super::handle(p.group.as_deref().unwrap_or(&p.sku))).or_default().push((r.key, p)),
            _ => outcomes.push(WriteOutcome::failed(r.key, RecordFailure::permanent(None, "not a product record"))),
        }
    }
    let shop = s.shop().await?.clone();
    // Many products at once: one bulk mutation instead of a productSet call each (see `write_bulk`).
    let threshold = s.options.bulk_write_threshold;
    let bulk = threshold > 0 && groups.len() >= threshold;
    let mut prepared = Vec::new();
    let known = if bulk { existing_by_bulk_query(s, groups.keys().filter(|h| !h.is_empty())).await } else { HashMap::new() };
    for (handle, products) in groups {
        if handle.is_empty() {
            for (key, _) in products {
                outcomes.push(WriteOutcome::failed(key, RecordFailure::permanent(Some("group".into()), "the group (or SKU) has no letters or digits to make a handle of")));
            }
            continue;
        }
        let keys: Vec<String> = products.iter().map(|(k, _)| k.clone()).collect();
        let result = match prepare_group(s, &shop, &handle, &products, known.get(&handle).cloned()).await {
            Ok(set) if bulk => {
                prepared.push(set);
                continue;
            }
            Ok(set) => write_one(s, set).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(results) => outcomes.extend(results),
            Err(GroupError::Record(f)) => outcomes.extend(keys.into_iter().map(|k| WriteOutcome::failed(k, f.clone()))),
            Err(GroupError::Call(e)) => return Err(e),
        }
    }
    if !prepared.is_empty() {
        outcomes.extend(write_bulk(s, &prepared).await?);
    }
    Ok(outcomes)
}

enum GroupError {
    /// This product's input was refused: every variant in the batch fails with it.
    Record(RecordFailure),
    /// The shop could not be reached: the whole batch goes back to the engine.
    Call(ConnectorError),
}

impl From<ConnectorError> for GroupError {
    fn from(e: ConnectorError) -> Self {
        GroupError::Call(e)
    }
}

/// One Shopify product ready to be written: the productSet variables and the batch's records in it.
pub(crate) struct ProductSetCall {
    handle: String,
    /// The product was on the shop before (the outcome is Updated, else Created).
    existed: bool,
    /// (record key, SKU) of the batch's variants.
    variants: Vec<(String, String)>,
    /// `{"identifier": …, "input": …}`: the variables of ProductSet.graphql.
    variables: Value,
}

impl ProductSetCall {
    fn failed(&self, f: &RecordFailure) -> Vec<WriteOutcome> {
        self.variants.iter().map(|(key, _)| WriteOutcome::failed(key.clone(), f.clone())).collect()
    }

    /// The outcomes of a `productSet` payload: each variant's id by SKU, or the userErrors for all.
    fn outcomes(&self, payload: &Value) -> Vec<WriteOutcome> {
        if let Some(f) = user_errors(payload) {
            return self.failed(&f);
        }
        let by_sku: HashMap<&str, &str> = payload
            .pointer("/product/variants/nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["sku"].as_str()?, v["id"].as_str()?)))
            .collect();
        let action = if self.existed { WriteAction::Updated } else { WriteAction::Created };
        self.variants
            .iter()
            .map(|(key, sku)| match by_sku.get(sku.as_str()) {
                Some(id) => WriteOutcome::ok(key.clone(), *id, action),
                None => WriteOutcome::failed(key.clone(), RecordFailure::permanent(Some("sku".into()), format!("productSet answered without a variant with SKU {sku:?}"))),
            })
            .collect()
    }
}

/// Looks up the product by handle unless `found` already has it (its variants not in the batch are kept),
/// makes sure its collections and metafield definitions exist, and builds the productSet variables.
async fn prepare_group(s: &Shopify, shop: &super::ShopInfo, handle: &str, products: &[(String, Product)], found: Option<Value>) -> Result<ProductSetCall, GroupError> {
    let existing = match found {
        Some(p) => Some(p),
        None => s.client.query(doc::PRODUCT_BY_HANDLE, json!({"handle": handle})).await?.get("productByIdentifier").filter(|p| !p.is_null()).cloned(),
    };
    let mut collection_ids = Vec::new();
    for path in products.iter().flat_map(|(_, p)| &p.categories).collect::<BTreeSet<_>>() {
        collection_ids.push(collection_for(s, path).await?);
    }
    ensure_metafield_definitions(s, products).await?;
    let input = product_input(shop, handle, products, existing.as_ref(), &collection_ids, &s.options.metafield_namespace).map_err(GroupError::Record)?;
    Ok(ProductSetCall {
        handle: handle.to_owned(),
        existed: existing.is_some(),
        variants: products.iter().map(|(k, p)| (k.clone(), p.sku.clone())).collect(),
        variables: json!({"identifier": {"handle": handle}, "input": input}),
    })
}

async fn write_one(s: &Shopify, set: ProductSetCall) -> Result<Vec<WriteOutcome>, GroupError> {
    match s.client.call(doc::PRODUCT_SET, set.variables.clone()).await {
        Ok(data) => Ok(set.outcomes(&data["productSet"])),
        Err(e) => Err(GroupError::Record(e.for_record(None))),
    }
}

/// Writes the products as one bulk mutation: the ProductSet document runs once per line of a JSONL of
/// their variables. Shopify charges the few calls that start and poll it, not each productSet (about 20
/// points each, a product per call). Result lines carry `__lineNumber` (0-based line of the input).
async fn write_bulk(s: &Shopify, sets: &[ProductSetCall]) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let spent_before = s.client.points_spent();
    let result = s.run_bulk_mutation(doc::PRODUCT_SET.text, bulk_variables(sets)).await?;
    let outcomes = bulk_outcomes(sets, &result);
    tracing::info!(endpoint = %s.endpoint(), products = sets.len(), points = s.client.points_spent() - spent_before, "products written by one bulk mutation");
    Ok(outcomes)
}

/// The products among `handles` already on the shop, by handle, in ProductByHandle's shape, read with one
/// bulk query. A handle it does not return is looked up on its own (new products cost next to nothing
/// to look up; a product the search index has not caught up with yet is still found), and when the bulk
/// query fails every product is looked up on its own.
async fn existing_by_bulk_query<'a>(s: &Shopify, handles: impl Iterator<Item = &'a String>) -> HashMap<String, Value> {
    let search = handles.map(|h| format!("handle:'{h}'")).collect::<Vec<_>>().join(" OR ");
    let text = doc::BULK_PRODUCTS_BY_HANDLE.text.replacen("\"HANDLES\"", &serde_json::to_string(&search).unwrap_or_default(), 1);
    match s.run_bulk_query(&text).await {
        Ok(jsonl) => products_of_bulk(&jsonl),
        Err(e) => {
            tracing::warn!(endpoint = %s.endpoint(), error = %e, "bulk lookup of products by handle failed; looking them up one by one");
            HashMap::new()
        }
    }
}

/// Products and their variant rows (`__parentId`) of a bulk products result, as ProductByHandle gives them.
fn products_of_bulk(jsonl: &str) -> HashMap<String, Value> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut variants: Vec<(String, Value)> = Vec::new();
    for v in jsonl.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        match v["__parentId"].as_str() {
            Some(parent) => variants.push((parent.to_owned(), json!({"id": v["id"], "sku": v["sku"], "selectedOptions": v["selectedOptions"]}))),
            None => {
                if let Some(id) = v["id"].as_str() {
                    by_id.insert(id.to_owned(), json!({"id": v["id"], "handle": v["handle"], "status": v["status"], "variants": {"nodes": []}}));
                }
            }
        }
    }
    for (parent, variant) in variants {
        if let Some(nodes) = by_id.get_mut(&parent).and_then(|p| p.pointer_mut("/variants/nodes")).and_then(Value::as_array_mut) {
            nodes.push(variant);
        }
    }
    by_id.into_values().filter_map(|p| Some((p["handle"].as_str()?.to_owned(), p))).collect()
}

/// The bulk mutation's input: one line of ProductSet variables per product.
pub(crate) fn bulk_variables(sets: &[ProductSetCall]) -> String {
    let mut jsonl = String::new();
    for set in sets {
        // serde_json escapes control characters: one object is one line
        jsonl.push_str(&set.variables.to_string());
        jsonl.push('\n');
    }
    jsonl
}

/// Each product's outcomes from the bulk mutation's result JSONL (`{data, errors?, __lineNumber}` per
/// line). A product without a result line failed transiently (sent again by the engine; productSet by
/// handle is idempotent).
pub(crate) fn bulk_outcomes(sets: &[ProductSetCall], result: &str) -> Vec<WriteOutcome> {
    let mut answered = vec![false; sets.len()];
    let mut outcomes = Vec::new();
    for (position, line) in result.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            tracing::warn!(line, "bulk mutation result line is not JSON");
            continue;
        };
        let n = v["__lineNumber"].as_u64().map(|n| n as usize).unwrap_or(position);
        let Some(set) = sets.get(n).filter(|_| !answered[n]) else { continue };
        answered[n] = true;
        let errors = parse_errors(&v);
        if errors.is_empty() {
            outcomes.extend(set.outcomes(&v["data"]["productSet"]));
        } else {
            let f = CallError::Graphql { errors, data: v["data"].clone() }.for_record(None);
            outcomes.extend(set.failed(&f));
        }
    }
    for (set, _) in sets.iter().zip(&answered).filter(|(_, a)| !**a) {
        outcomes.extend(set.failed(&RecordFailure { field: None, message: format!("the bulk mutation's result has no line for product {}", set.handle), retryable: true }));
    }
    outcomes
}

/// A price as Shopify's `Money` (decimal string) in the shop's currency and tax mode.
fn shop_amount(shop: &super::ShopInfo, price: &Price, product: &Product, field: &str) -> Result<String, RecordFailure> {
    if price.currency != shop.currency {
        return Err(RecordFailure::permanent(Some(format!("{field}.currency")), format!("price is in {} but the shop sells in {}", price.currency, shop.currency)));
    }
    let amount = if price.tax_inclusive == shop.taxes_included {
        price.amount
    } else {
        let rate = tax_rate(product).ok_or_else(|| {
            RecordFailure::permanent(
                Some(format!("{field}.tax_inclusive")),
                format!(
                    "the shop's prices {} tax but this price {}: give `custom.tax_rate` (e.g. \"0.10\") to convert it",
                    if shop.taxes_included { "include" } else { "exclude" },
                    if price.tax_inclusive { "includes it" } else { "does not" }
                ),
            )
        })?;
        let converted = if shop.taxes_included { price.gross(rate) } else { price.net(rate) };
        converted.ok_or_else(|| RecordFailure::permanent(Some(format!("{field}.amount")), format!("{} at tax rate {rate} is out of range", price.amount)))?
    };
    if amount.normalize().scale() > shop.currency.minor_units() {
        return Err(RecordFailure::permanent(Some(format!("{field}.amount")), format!("{amount} has more decimals than {} allows", shop.currency)));
    }
    Ok(amount.normalize().to_string())
}

fn tax_rate(p: &Product) -> Option<Decimal> {
    match p.custom.get("tax_rate")? {
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

/// The metafield type of a custom value, as its definition declares it.
pub(crate) fn metafield_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "number_integer",
        Value::Number(_) => "number_decimal",
        Value::String(s) if s.contains('\n') => "multi_line_text_field",
        Value::String(_) => "single_line_text_field",
        _ => "json",
    }
}

fn metafield_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The metafield key of a custom field: Shopify allows 2–64 characters of letters, digits, `-` and `_`.
pub(crate) fn metafield_key(name: &str) -> String {
    let mut key: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' }).collect();
    key.truncate(64);
    while key.len() < 2 {
        key.push('_');
    }
    key
}

fn custom_fields(p: &Product) -> impl Iterator<Item = (&String, &Value)> {
    p.custom.iter().filter(|(k, v)| !RESERVED_CUSTOM.contains(&k.as_str()) && !v.is_null())
}

/// The productSet input of one product (pure: everything it needs is passed in).
pub(crate) fn product_input(
    shop: &super::ShopInfo,
    handle: &str,
    products: &[(String, Product)],
    existing: Option<&Value>,
    collection_ids: &[String],
    namespace: &str,
) -> Result<Value, RecordFailure> {
    let first = &products[0].1;
    // Option names in a stable order: those of the first variant, then any others.
    let mut option_names: Vec<String> = Vec::new();
    for (_, p) in products {
        for name in p.options.keys() {
            if !option_names.contains(name) {
                option_names.push(name.clone());
            }
        }
    }
    let mut option_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut push_value = |name: &str, value: &str| {
        let values = option_values.entry(name.to_owned()).or_default();
        if !values.iter().any(|v| v == value) {
            values.push(value.to_owned());
        }
    };
    let batch_skus: BTreeSet<&str> = products.iter().map(|(_, p)| p.sku.as_str()).collect();
    let mut variants = Vec::new();
    for (_, p) in products {
        if option_names.iter().any(|n| !p.options.contains_key(n)) {
            return Err(RecordFailure::permanent(
                Some("options".into()),
                format!("variant {} lacks option(s) {} that other variants of {handle} have", p.sku, option_names.iter().filter(|n| !p.options.contains_key(*n)).cloned().collect::<Vec<_>>().join(", ")),
            ));
        }
        let values: Vec<Value> = if option_names.is_empty() {
            push_value("Title", "Default Title");
            vec![json!({"optionName": "Title", "name": "Default Title"})]
        } else {
            option_names
                .iter()
                .map(|n| {
                    push_value(n, &p.options[n]);
                    json!({"optionName": n, "name": p.options[n]})
                })
                .collect()
        };
        let mut v = json!({"sku": p.sku, "optionValues": values, "inventoryItem": {"tracked": true, "sku": p.sku}, "taxable": true});
        if let Some(price) = &p.price {
            v["price"] = json!(shop_amount(shop, price, p, "price").map_err(|f| name_record(f, &p.sku))?);
        }
        if let Some(rrp) = &p.rrp {
            v["compareAtPrice"] = json!(shop_amount(shop, rrp, p, "rrp").map_err(|f| name_record(f, &p.sku))?);
        }
        if let Some(cost) = &p.cost {
            v["inventoryItem"]["cost"] = json!(cost.amount.normalize().to_string());
        }
        if let Some(b) = &p.barcode {
            v["barcode"] = json!(b);
        }
        if let Some(w) = &p.weight {
            let unit = match w.unit.as_str() {
                "kg" => "KILOGRAMS",
                "g" => "GRAMS",
                "lb" => "POUNDS",
                _ => "OUNCES",
            };
            // WeightInput.value is a Float in the schema; a weight is not money
            v["inventoryItem"]["measurement"] = json!({"weight": {"unit": unit, "value": w.value.to_f64().unwrap_or_default()}});
        }
        let metafields: Vec<Value> = custom_fields(p)
            .map(|(k, val)| json!({"namespace": namespace, "key": metafield_key(k), "type": metafield_type(val), "value": metafield_value(val)}))
            .collect();
        if !metafields.is_empty() {
            v["metafields"] = json!(metafields);
        }
        variants.push(v);
    }
    // Siblings already on the shop and not in this batch: kept, by id, with their options.
    for v in existing.and_then(|e| e.pointer("/variants/nodes")).and_then(Value::as_array).into_iter().flatten() {
        if v["sku"].as_str().is_some_and(|s| batch_skus.contains(s)) {
            continue;
        }
        let selected: Vec<Value> = v["selectedOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let (n, val) = (o["name"].as_str().unwrap_or_default(), o["value"].as_str().unwrap_or_default());
                push_value(n, val);
                json!({"optionName": n, "name": val})
            })
            .collect();
        variants.push(json!({"id": v["id"], "optionValues": selected}));
    }
    let product_options: Vec<Value> = option_values
        .iter()
        .map(|(name, values)| {
            let position = option_names.iter().position(|n| n == name).map(|i| i + 1).unwrap_or(option_names.len() + 1);
            json!({"name": name, "position": position, "values": values.iter().map(|v| json!({"name": v})).collect::<Vec<_>>()})
        })
        .collect();
    let status = if products.iter().all(|(_, p)| p.status == ProductStatus::Discontinued) {
        "ARCHIVED"
    } else if products.iter().all(|(_, p)| p.status == ProductStatus::Draft) {
        "DRAFT"
    } else {
        "ACTIVE"
    };
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for m in products.iter().flat_map(|(_, p)| &p.media) {
        if !seen.insert(m.url.clone()) {
            continue;
        }
        let content_type = match m.kind {
            MediaKind::Image => "IMAGE",
            MediaKind::Document => "FILE",
            MediaKind::Video => "EXTERNAL_VIDEO",
        };
        let mut f = json!({"originalSource": m.url, "contentType": content_type});
        if let Some(t) = &m.title {
            f["alt"] = json!(t);
        }
        files.push(f);
    }
    let tags: Vec<String> = products
        .iter()
        .flat_map(|(_, p)| p.custom.get("tags").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut input = json!({
        "handle": handle,
        "title": first.name,
        "status": status,
        "productOptions": product_options,
        "variants": variants,
        "collections": collection_ids,
        "tags": tags,
        "files": files,
    });
    if let Some(d) = &first.description {
        input["descriptionHtml"] = json!(d);
    }
    if let Some(b) = &first.brand {
        input["vendor"] = json!(b);
    }
    if let Some(t) = first.custom.get("product_type").and_then(Value::as_str) {
        input["productType"] = json!(t);
    }
    Ok(input)
}

fn name_record(mut f: RecordFailure, sku: &str) -> RecordFailure {
    f.message = format!("variant {sku}: {}", f.message);
    f
}

/// The manual collection of a category path (`A > B > C`), created when the shop has none by that title.
async fn collection_for(s: &Shopify, path: &[String]) -> Result<String, ConnectorError> {
    let title = path.join(" > ");
    if let Some(id) = s.collections.lock().await.get(&title) {
        return Ok(id.clone());
    }
    let data = s.client.query(doc::COLLECTIONS, json!({"query": format!("title:\"{}\"", title.replace(['"', '\\'], "")), "first": 10})).await?;
    let found = data.pointer("/collections/nodes").and_then(Value::as_array).into_iter().flatten().find(|c| c["title"].as_str() == Some(title.as_str())).and_then(|c| c["id"].as_str()).map(str::to_owned);
    let id = match found {
        Some(id) => id,
        None => {
            let data = s.client.query(doc::COLLECTION_CREATE, json!({"collection": {"title": title, "handle": super::handle(&title)}})).await?;
            let payload = &data["collectionCreate"];
            if let Some(f) = user_errors(payload) {
                return Err(ConnectorError::permanent(s.endpoint(), format!("collection {title:?}: {}", f.message)));
            }
            payload.pointer("/collection/id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| ConnectorError::permanent(s.endpoint(), format!("collection {title:?} created without an id")))?
        }
    };
    s.collections.lock().await.insert(title, id.clone());
    Ok(id)
}

/// Declares each custom field used by these products as a variant metafield definition (once).
async fn ensure_metafield_definitions(s: &Shopify, products: &[(String, Product)]) -> Result<(), ConnectorError> {
    let ns = &s.options.metafield_namespace;
    let mut known = s.metafield_keys.lock().await;
    if known.is_none() {
        let data = s.client.query(doc::METAFIELD_DEFINITIONS, json!({"ownerType": "PRODUCTVARIANT", "namespace": ns, "first": 250})).await?;
        *known = Some(data.pointer("/metafieldDefinitions/nodes").and_then(Value::as_array).into_iter().flatten().filter_map(|d| d["key"].as_str().map(str::to_owned)).collect());
    }
    let known = known.as_mut().expect("loaded above");
    for (_, p) in products {
        for (name, value) in custom_fields(p) {
            let key = metafield_key(name);
            if known.contains(&key) {
                continue;
            }
            let definition = json!({"name": name, "namespace": ns, "key": key, "type": metafield_type(value), "ownerType": "PRODUCTVARIANT"});
            let data = s.client.query(doc::METAFIELD_DEFINITION_CREATE, json!({"definition": definition})).await?;
            let payload = &data["metafieldDefinitionCreate"];
            // TAKEN: declared meanwhile (another run) — fine
            if let Some(f) = user_errors(payload).filter(|f| !f.message.contains("TAKEN")) {
                return Err(ConnectorError::permanent(s.endpoint(), format!("metafield definition {ns}.{key}: {}", f.message)));
            }
            known.insert(key);
        }
    }
    Ok(())
}

/// Retires SKUs: their product is ARCHIVED once every variant of it is retired (Shopify has no status
/// per variant); a SKU whose siblings are still sold is left as is, with a warning.
pub(crate) async fn retire(s: &Shopify, items: Vec<(String, String)>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let skus: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let variants = s.variants_by_sku(&skus).await?;
    let retiring: BTreeSet<&str> = skus.iter().map(String::as_str).collect();
    let mut outcomes = Vec::new();
    let mut archived: HashMap<String, Result<(), RecordFailure>> = HashMap::new();
    for (key, target) in &items {
        let Some(v) = variants.get(key) else {
            outcomes.push(WriteOutcome::ok(key.clone(), target.clone(), WriteAction::Unchanged));
            continue;
        };
        let product_id = v.pointer("/product/id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let handle = v.pointer("/product/handle").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !archived.contains_key(&product_id) {
            let product = s.client.query(doc::PRODUCT_BY_HANDLE, json!({"handle": handle})).await?;
            let siblings: Vec<String> = product.pointer("/productByIdentifier/variants/nodes").and_then(Value::as_array).into_iter().flatten().filter_map(|v| v["sku"].as_str().map(str::to_owned)).collect();
            let still_sold: Vec<&String> = siblings.iter().filter(|s| !retiring.contains(s.as_str())).collect();
            let result = if !still_sold.is_empty() {
                Err(RecordFailure { field: None, message: format!("product {handle} still sells {}", still_sold.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")), retryable: false })
            } else {
                let data = s.client.call(doc::PRODUCT_ARCHIVE, json!({"product": {"id": product_id, "status": "ARCHIVED"}})).await;
                match data {
                    Ok(d) => match user_errors(&d["productUpdate"]) {
                        Some(f) => Err(f),
                        None => Ok(()),
                    },
                    Err(e) => Err(e.for_record(None)),
                }
            };
            archived.insert(product_id.clone(), result);
        }
        match &archived[&product_id] {
            Ok(()) => outcomes.push(WriteOutcome::ok(key.clone(), target.clone(), WriteAction::Retired)),
            Err(f) if f.message.starts_with("product ") && f.message.contains("still sells") => outcomes.push(WriteOutcome::warned(
                key.clone(),
                target.clone(),
                WriteAction::Unchanged,
                format!("{key} not archived: {} (Shopify archives whole products)", f.message),
            )),
            Err(f) => outcomes.push(WriteOutcome::failed(key.clone(), f.clone())),
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::{Currency, Stream};

    fn shop(taxes_included: bool) -> super::super::ShopInfo {
        super::super::ShopInfo { name: "t".into(), currency: Currency::parse("AUD").unwrap(), domain: "t".into(), taxes_included }
    }

    fn product(v: Value) -> (String, Product) {
        match Record::parse(Stream::Products, v, "t").unwrap() {
            Record::Product(p) => (p.sku.clone(), p),
            _ => unreachable!(),
        }
    }

    fn tee(sku: &str, size: &str, status: &str) -> (String, Product) {
        product(json!({
            "sku": sku, "group": "TEE", "name": "Tee", "description": "<p>Soft</p>", "brand": "Acme", "status": status,
            "options": {"Size": size, "Colour": "Blue"},
            "price": {"amount": "20.00", "currency": "AUD", "tax_inclusive": false}, "rrp": {"amount": "25", "currency": "AUD", "tax_inclusive": false},
            "categories": [["Clothing", "Tops"]],
            "media": [{"kind": "image", "url": "https://x.test/tee.jpg", "title": "Tee"}, {"kind": "document", "url": "https://x.test/care.pdf"}, {"kind": "video", "url": "https://youtu.be/abc"}],
            "custom": {"tags": ["summer", "cotton"], "Fabric Weight": 180, "care": "wash cold"},
        }))
    }

    #[test]
    fn variants_options_media_and_custom_fields_become_one_product_set() {
        let products = vec![tee("TEE-S", "S", "active"), tee("TEE-M", "M", "active")];
        let input = product_input(&shop(false), "tee", &products, None, &["gid://shopify/Collection/1".into()], "ferry").unwrap();
        assert_eq!(input["handle"], "tee");
        assert_eq!(input["status"], "ACTIVE");
        assert_eq!(input["vendor"], "Acme");
        assert_eq!(input["descriptionHtml"], "<p>Soft</p>");
        assert_eq!(input["tags"], json!(["cotton", "summer"]));
        assert_eq!(input["collections"], json!(["gid://shopify/Collection/1"]));
        let v = &input["variants"][1];
        assert_eq!(v["sku"], "TEE-M");
        assert_eq!(v["price"], "20");
        assert_eq!(v["compareAtPrice"], "25");
        assert_eq!(v["optionValues"], json!([{"optionName": "Colour", "name": "Blue"}, {"optionName": "Size", "name": "M"}]));
        let sizes = input["productOptions"].as_array().unwrap().iter().find(|o| o["name"] == "Size").unwrap();
        assert_eq!(sizes["values"], json!([{"name": "S"}, {"name": "M"}]));
        let kinds: Vec<&str> = input["files"].as_array().unwrap().iter().map(|f| f["contentType"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["IMAGE", "FILE", "EXTERNAL_VIDEO"], "media once each, though both variants carry them");
        let mf = v["metafields"].as_array().unwrap();
        assert!(mf.contains(&json!({"namespace": "ferry", "key": "fabric_weight", "type": "number_integer", "value": "180"})), "{mf:?}");
        assert!(mf.contains(&json!({"namespace": "ferry", "key": "care", "type": "single_line_text_field", "value": "wash cold"})));
        assert_eq!(mf.len(), 2, "tags are not a metafield");
    }

    #[test]
    fn siblings_on_the_shop_are_kept_and_a_single_variant_gets_the_default_title() {
        let existing = json!({"id": "gid://shopify/Product/1", "variants": {"nodes": [
            {"id": "gid://shopify/ProductVariant/1", "sku": "TEE-S", "selectedOptions": [{"name": "Size", "value": "S"}, {"name": "Colour", "value": "Blue"}]},
            {"id": "gid://shopify/ProductVariant/2", "sku": "TEE-L", "selectedOptions": [{"name": "Size", "value": "L"}, {"name": "Colour", "value": "Blue"}]}
        ]}});
        let input = product_input(&shop(false), "tee", &[tee("TEE-S", "S", "active")], Some(&existing), &[], "ferry").unwrap();
        let variants = input["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[1], json!({"id": "gid://shopify/ProductVariant/2", "optionValues": [{"optionName": "Size", "name": "L"}, {"optionName": "Colour", "name": "Blue"}]}));
        let sizes = input["productOptions"].as_array().unwrap().iter().find(|o| o["name"] == "Size").unwrap();
        assert_eq!(sizes["values"], json!([{"name": "S"}, {"name": "L"}]));

        let single = product(json!({"sku": "MUG", "name": "Mug"}));
        let input = product_input(&shop(false), "mug", &[single], None, &[], "ferry").unwrap();
        assert_eq!(input["productOptions"], json!([{"name": "Title", "position": 1, "values": [{"name": "Default Title"}]}]));
        assert_eq!(input["variants"][0]["optionValues"], json!([{"optionName": "Title", "name": "Default Title"}]));
    }

    #[test]
    fn discontinued_is_archived_and_prices_follow_the_shops_tax_mode() {
        let input = product_input(&shop(false), "tee", &[tee("TEE-S", "S", "discontinued")], None, &[], "ferry").unwrap();
        assert_eq!(input["status"], "ARCHIVED");
        // a net price to a shop whose prices include tax needs a rate
        let e = product_input(&shop(true), "tee", &[tee("TEE-S", "S", "active")], None, &[], "ferry").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("price.tax_inclusive"));
        let mut with_rate = tee("TEE-S", "S", "active");
        with_rate.1.custom.insert("tax_rate".into(), json!("0.10"));
        let input = product_input(&shop(true), "tee", &[with_rate], None, &[], "ferry").unwrap();
        assert_eq!(input["variants"][0]["price"], "22");
        let mut eur = tee("TEE-S", "S", "active");
        eur.1.price.as_mut().unwrap().currency = Currency::parse("EUR").unwrap();
        assert_eq!(product_input(&shop(false), "tee", &[eur], None, &[], "ferry").unwrap_err().field.as_deref(), Some("price.currency"));
    }

    #[test]
    fn a_variant_missing_an_option_fails_naming_it() {
        let mut odd = tee("TEE-X", "XL", "active");
        odd.1.options.remove("Colour");
        let e = product_input(&shop(false), "tee", &[tee("TEE-S", "S", "active"), odd], None, &[], "ferry").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("options"));
        assert!(e.message.contains("TEE-X") && e.message.contains("Colour"), "{}", e.message);
    }

    fn set_call(handle: &str, skus: &[&str], existed: bool) -> ProductSetCall {
        let products: Vec<(String, Product)> = skus.iter().map(|sku| product(json!({"sku": sku, "group": handle, "name": "Mug", "options": {"Size": sku}}))).collect();
        let input = product_input(&shop(false), handle, &products, None, &[], "ferry").unwrap();
        ProductSetCall {
            handle: handle.into(),
            existed,
            variants: products.iter().map(|(k, p)| (k.clone(), p.sku.clone())).collect(),
            variables: json!({"identifier": {"handle": handle}, "input": input}),
        }
    }

    #[test]
    fn the_bulk_input_is_one_line_of_product_set_variables_per_product() {
        let mut odd = set_call("mug", &["MUG-1"], false);
        odd.variables["input"]["descriptionHtml"] = json!("<p>two\nlines</p>");
        let sets = vec![odd, set_call("cup", &["CUP-S", "CUP-L"], true)];
        let jsonl = bulk_variables(&sets);
        let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "a newline inside a value stays escaped: {jsonl}");
        assert!(jsonl.ends_with('\n'));
        assert_eq!(lines[0], sets[0].variables);
        assert_eq!(lines[1]["identifier"], json!({"handle": "cup"}));
        assert_eq!(lines[1]["input"]["variants"].as_array().unwrap().iter().map(|v| v["sku"].as_str().unwrap()).collect::<Vec<_>>(), ["CUP-S", "CUP-L"]);
        // exactly the variables ProductSet.graphql declares
        let mut keys: Vec<&String> = lines[1].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["identifier", "input"]);
        assert!(doc::PRODUCT_SET.text.contains("$identifier: ProductSetIdentifiers!, $input: ProductSetInput!"));
    }

    #[test]
    fn bulk_result_lines_map_to_each_products_records_by_line_number() {
        let sets = vec![set_call("mug", &["MUG-1"], false), set_call("cup", &["CUP-S", "CUP-L"], true), set_call("jug", &["JUG-1"], false), set_call("pot", &["POT-1"], false)];
        let variants = |pairs: &[(&str, &str)]| json!({"nodes": pairs.iter().map(|(sku, id)| json!({"id": id, "sku": sku})).collect::<Vec<_>>()});
        // out of order, as Shopify may write them; line 3 never came back
        let result = [
            json!({"data": {"productSet": {"product": {"id": "gid://shopify/Product/2", "variants": variants(&[("CUP-S", "gid://shopify/ProductVariant/21"), ("CUP-L", "gid://shopify/ProductVariant/22")])}, "userErrors": []}}, "__lineNumber": 1}),
            json!({"data": {"productSet": {"product": null, "userErrors": [{"field": ["input", "variants", "0", "price"], "message": "price: \"x\" is not a decimal amount", "code": "INVALID_VARIANT"}]}}, "__lineNumber": 0}),
            json!({"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}], "data": null, "__lineNumber": 2}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        let outcomes: HashMap<String, WriteOutcome> = bulk_outcomes(&sets, &result).into_iter().map(|o| (o.key.clone(), o)).collect();
        assert_eq!(outcomes.len(), 5);
        let w = outcomes["CUP-L"].result.as_ref().unwrap();
        assert_eq!((w.target_id.as_str(), w.action), ("gid://shopify/ProductVariant/22", WriteAction::Updated));
        assert_eq!(outcomes["CUP-S"].result.as_ref().unwrap().target_id, "gid://shopify/ProductVariant/21");
        let f = outcomes["MUG-1"].result.as_ref().unwrap_err();
        assert_eq!(f.field.as_deref(), Some("input.variants.0.price"));
        assert!(f.message.starts_with("INVALID_VARIANT: price") && !f.retryable, "{f:?}");
        let f = outcomes["JUG-1"].result.as_ref().unwrap_err();
        assert!(f.message.contains("Internal error") && f.retryable, "{f:?}");
        let f = outcomes["POT-1"].result.as_ref().unwrap_err();
        assert!(f.message.contains("no line for product pot") && f.retryable, "{f:?}");
    }

    #[test]
    fn a_bulk_products_result_is_reassembled_as_product_by_handle_gives_it() {
        let jsonl = [
            json!({"id": "gid://shopify/Product/1", "handle": "tee", "status": "ACTIVE"}),
            json!({"id": "gid://shopify/ProductVariant/11", "sku": "TEE-S", "selectedOptions": [{"name": "Size", "value": "S"}], "__parentId": "gid://shopify/Product/1"}),
            json!({"id": "gid://shopify/Product/2", "handle": "mug", "status": "DRAFT"}),
            json!({"id": "gid://shopify/ProductVariant/12", "sku": "TEE-L", "selectedOptions": [{"name": "Size", "value": "L"}], "__parentId": "gid://shopify/Product/1"}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        let found = products_of_bulk(&jsonl);
        assert_eq!(found.len(), 2);
        assert_eq!(found["mug"]["variants"]["nodes"], json!([]));
        let tee = &found["tee"];
        assert_eq!(tee["id"], "gid://shopify/Product/1");
        // what product_input needs of it: the siblings, by id, with their options
        let input = product_input(&shop(false), "tee", &[small_tee("TEE-S")], Some(tee), &[], "ferry").unwrap();
        assert_eq!(input["variants"][1], json!({"id": "gid://shopify/ProductVariant/12", "optionValues": [{"optionName": "Size", "name": "L"}]}));
    }

    fn small_tee(sku: &str) -> (String, Product) {
        product(json!({"sku": sku, "group": "tee", "name": "Tee", "options": {"Size": "S"}}))
    }

    #[test]
    fn metafield_keys_and_types() {
        assert_eq!(metafield_key("Fabric Weight"), "fabric_weight");
        assert_eq!(metafield_key("x"), "x_");
        assert_eq!(metafield_type(&json!(1.5)), "number_decimal");
        assert_eq!(metafield_type(&json!(true)), "boolean");
        assert_eq!(metafield_type(&json!({"a": 1})), "json");
        assert_eq!(metafield_type(&json!("a\nb")), "multi_line_text_field");
    }
}
