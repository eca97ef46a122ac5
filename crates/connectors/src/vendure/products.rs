//! Products: canonical records are one per SKU; Vendure has products with variants.
//!
//! A batch is written in a fixed number of requests whatever its size (aliased mutations and Vendure's
//! list mutations): look up variants by SKU and products by `customFields.ferryGroup`; create missing
//! products; create missing option groups / options; update products whose fields differ; create new
//! variants (`createProductVariants`) and update changed ones (`updateProductVariants`), sending only
//! the fields that differ and nothing at all for a variant that already matches.
//! Category paths become values of one facet (see docs/connectors/vendure.md for why facets).

use super::gql::{CallError, error_result};
use super::{Vendure, slug};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{MediaKind, Product, ProductStatus, Record};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const VARIANT_FIELDS: &str = "name enabled price currencyCode product { id } taxCategory { id } options { id groupId } \
    customFields { barcode weightGrams } translations { languageCode name }";
const PRODUCT_FIELDS: &str = "id enabled name description slug \
    customFields { ferryGroup brand imageUrls documentUrls videoUrls shortDescription } \
    facetValues { id facet { code } } optionGroups { id code options { id code } } \
    translations { languageCode name description }";

/// One record ready to write.
struct Prep {
    key: String,
    product: Product,
    /// The product this SKU belongs to: `group`, or the SKU itself for a product without variants.
    group: String,
    price: Option<i64>,
    tax_category: Option<String>,
}

pub(crate) async fn write(v: &Vendure, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let ch = v.channel().await?.clone();
    let mut outcomes = Vec::new();
    let mut preps = Vec::new();
    for rec in batch {
        let Record::Product(p) = rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a product record")));
            continue;
        };
        let prepared = (|| {
            let (tax_category, rate) = ch.tax_category(p.tax_class.as_deref())?;
            let price = p.price.as_ref().map(|pr| ch.to_minor(pr, rate, "price")).transpose()?;
            Ok::<_, RecordFailure>((tax_category, price))
        })();
        match prepared {
            Ok((tax_category, price)) => {
                let group = p.group.clone().unwrap_or_else(|| p.sku.clone());
                preps.push(Prep { key: rec.key, product: p, group, price, tax_category });
            }
            Err(f) => outcomes.push(WriteOutcome::failed(rec.key, f)),
        }
    }
    if preps.is_empty() {
        return Ok(outcomes);
    }

    // ---- what exists ------------------------------------------------------------------------------
    let skus: Vec<String> = preps.iter().map(|p| p.product.sku.clone()).collect();
    let variants = v.variants_by_sku(&skus, VARIANT_FIELDS).await?;
    let groups: Vec<String> = preps.iter().map(|p| p.group.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut products = products_by_group(v, &groups).await?;
    // Variants that exist under a product Ferry did not create (no ferryGroup): adopt that product.
    let orphan_ids: Vec<String> = preps
        .iter()
        .filter(|p| !products.contains_key(&p.group))
        .filter_map(|p| variants.get(&p.product.sku)?.pointer("/product/id")?.as_str().map(str::to_owned))
        .collect();
    if !orphan_ids.is_empty() {
        let by_id = products_by_ids(v, &orphan_ids).await?;
        for p in &preps {
            if products.contains_key(&p.group) {
                continue;
            }
            if let Some(pid) = variants.get(&p.product.sku).and_then(|x| x.pointer("/product/id")).and_then(Value::as_str)
                && let Some(prod) = by_id.get(pid)
            {
                products.insert(p.group.clone(), prod.clone());
            }
        }
    }

    // Records grouped by product, in batch order.
    let mut by_group: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in preps.iter().enumerate() {
        by_group.entry(p.group.clone()).or_default().push(i);
    }
    let mut failed: HashMap<usize, RecordFailure> = HashMap::new();
    let fail_group = |failed: &mut HashMap<usize, RecordFailure>, idx: &[usize], f: RecordFailure| {
        for i in idx {
            failed.entry(*i).or_insert_with(|| f.clone());
        }
    };

    // ---- categories -> facet values -----------------------------------------------------------------
    let mut facet_ids_by_record: HashMap<usize, Vec<String>> = HashMap::new();
    let all_paths: BTreeSet<Vec<String>> = preps.iter().flat_map(|p| p.product.categories.iter().flat_map(|path| prefixes(path))).collect();
    if !all_paths.is_empty() {
        let ids = ensure_category_values(v, &all_paths).await?;
        for (i, p) in preps.iter().enumerate() {
            let mut list = Vec::new();
            for path in &p.product.categories {
                for prefix in prefixes(path) {
                    match ids.get(&facet_code(&prefix)) {
                        Some(id) if !list.contains(id) => list.push(id.clone()),
                        Some(_) => {}
                        None => {
                            failed.insert(i, RecordFailure::permanent(Some("categories".into()), format!("facet value for {prefix:?} could not be created")));
                        }
                    }
                }
            }
            facet_ids_by_record.insert(i, list);
        }
    }

    // ---- create missing products (one request) --------------------------------------------------
    let new_groups: Vec<&String> = by_group.keys().filter(|g| !products.contains_key(*g)).collect();
    if !new_groups.is_empty() {
        let inputs: Vec<Value> = new_groups
            .iter()
            .map(|g| {
                let idx = &by_group[*g];
                let mut input = product_input(v, &preps, idx, &facet_ids_by_record, None);
                let name = input["translations"][0]["name"].as_str().unwrap_or_default().to_owned();
                for t in input["translations"].as_array_mut().into_iter().flatten() {
                    t["slug"] = json!(slug(&format!("{name} {g}")));
                }
                input
            })
            .collect();
        let fields: Vec<String> = (0..inputs.len()).map(|i| format!("createProduct(input:$v{i}){{ {PRODUCT_FIELDS} }}")).collect();
        let results = v.gql.batch("CreateProductInput!", &fields, &inputs).await;
        for (g, r) in new_groups.iter().zip(results) {
            match r {
                Ok(prod) => {
                    products.insert((*g).clone(), prod);
                }
                Err(e) => fail_group(&mut failed, &by_group[*g], e.for_record(Some("group"))),
            }
        }
    }

    // ---- option groups and options ------------------------------------------------------------------
    ensure_options(v, &preps, &by_group, &mut products, &mut failed).await?;

    // ---- update products whose fields differ (one list mutation) ----------------------------------
    let mut updates = Vec::new();
    let mut update_groups = Vec::new();
    for (g, idx) in &by_group {
        let Some(existing) = products.get(g) else { continue };
        if idx.iter().all(|i| failed.contains_key(i)) {
            continue;
        }
        let id = existing["id"].as_str().unwrap_or_default().to_owned();
        let target = product_input(v, &preps, idx, &facet_ids_by_record, Some(existing));
        if let Some(diff) = product_diff(v, existing, &target) {
            let mut input = diff;
            input["id"] = json!(id);
            updates.push(input);
            update_groups.push(g.clone());
        }
    }
    if !updates.is_empty() {
        match v.gql.call("mutation($i:[UpdateProductInput!]!){ updateProducts(input:$i){ id } }", json!({"i": updates})).await {
            Ok(_) => {}
            Err(CallError::Connector(e)) => return Err(e),
            Err(_) => {
                // One bad input fails the whole list: repeat one by one to find it.
                let fields: Vec<String> = (0..updates.len()).map(|i| format!("updateProduct(input:$v{i}){{ id }}")).collect();
                for (g, r) in update_groups.iter().zip(v.gql.batch("UpdateProductInput!", &fields, &updates).await) {
                    if let Err(e) = r {
                        fail_group(&mut failed, &by_group[g], e.for_record(None));
                    }
                }
            }
        }
    }

    // ---- variants ------------------------------------------------------------------------------------
    let mut creates: Vec<(usize, Value)> = Vec::new();
    let mut changes: Vec<(usize, Value)> = Vec::new();
    for (i, p) in preps.iter().enumerate() {
        if failed.contains_key(&i) {
            continue;
        }
        let Some(product) = products.get(&p.group) else { continue };
        let option_ids = match option_ids(product, &p.product.options) {
            Ok(ids) => ids,
            Err(f) => {
                failed.insert(i, f);
                continue;
            }
        };
        match variants.get(&p.product.sku) {
            None => {
                let mut input = json!({
                    "productId": product["id"],
                    "sku": p.product.sku,
                    "enabled": p.product.status == ProductStatus::Active,
                    "translations": variant_translations(v, &p.product),
                    "optionIds": option_ids,
                    "customFields": variant_custom(&p.product),
                });
                if let Some(price) = p.price {
                    input["price"] = json!(price);
                }
                if let Some(tc) = &p.tax_category {
                    input["taxCategoryId"] = json!(tc);
                }
                creates.push((i, input));
            }
            Some(existing) => {
                if let Some(diff) = variant_diff(v, existing, p, &option_ids) {
                    changes.push((i, diff));
                } else {
                    outcomes.push(WriteOutcome::ok(&p.key, existing["id"].as_str().unwrap_or_default(), WriteAction::Unchanged));
                }
            }
        }
    }
    let mut done: Vec<(usize, String, WriteAction)> = Vec::new();
    for (list, mutation, var_type, action) in [
        (&creates, "createProductVariants", "CreateProductVariantInput!", WriteAction::Created),
        (&changes, "updateProductVariants", "UpdateProductVariantInput!", WriteAction::Updated),
    ] {
        if list.is_empty() {
            continue;
        }
        let inputs: Vec<Value> = list.iter().map(|(_, x)| x.clone()).collect();
        let q = format!("mutation($i:[{var_type}]!){{ {mutation}(input:$i){{ id sku }} }}");
        match v.gql.call(&q, json!({"i": inputs})).await {
            Ok(data) => {
                for ((i, _), res) in list.iter().zip(data[mutation].as_array().cloned().unwrap_or_default()) {
                    done.push((*i, res["id"].as_str().unwrap_or_default().to_owned(), action));
                }
            }
            Err(CallError::Connector(e)) => return Err(e),
            Err(_) => {
                // Vendure runs a list mutation in one transaction: isolate the bad record(s), one request
                // each. Not one aliased request: the mutation's result is non-null, so one alias's error
                // nulls the whole `data` and the others' outcomes (committed or not) would be lost.
                for (i, input) in list {
                    match v.gql.call(&q, json!({"i": [input]})).await {
                        Ok(data) => done.push((*i, data[mutation][0]["id"].as_str().unwrap_or_default().to_owned(), action)),
                        // (a retry of the whole write finds the variants created so far by SKU)
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
        outcomes.push(WriteOutcome::ok(&preps[i].key, id, action));
    }
    for (i, f) in failed {
        outcomes.push(WriteOutcome::failed(&preps[i].key, f));
    }
    Ok(outcomes)
}

async fn products_by_group(v: &Vendure, groups: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in groups.chunks(100) {
        let q = format!("query($g:[String!]!,$n:Int!){{ products(options:{{filter:{{ferryGroup:{{in:$g}}}},take:$n}}){{ items {{ {PRODUCT_FIELDS} }} }} }}");
        let data = v.gql.query(&q, json!({"g": chunk, "n": chunk.len()})).await?;
        for p in data.pointer("/products/items").and_then(Value::as_array).into_iter().flatten() {
            if let Some(g) = p.pointer("/customFields/ferryGroup").and_then(Value::as_str) {
                out.insert(g.to_owned(), p.clone());
            }
        }
    }
    Ok(out)
}

async fn products_by_ids(v: &Vendure, ids: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
    let q = format!("query($i:[String!]!,$n:Int!){{ products(options:{{filter:{{id:{{in:$i}}}},take:$n}}){{ items {{ {PRODUCT_FIELDS} }} }} }}");
    let data = v.gql.query(&q, json!({"i": ids, "n": ids.len()})).await?;
    Ok(data
        .pointer("/products/items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?.to_owned(), p.clone())))
        .collect())
}

/// The product-level input for a group's records (`translations`, `enabled`, `facetValueIds`,
/// `customFields`). The first record of the group in the batch speaks for the product; media and
/// categories are the union of the group's records.
fn product_input(v: &Vendure, preps: &[Prep], idx: &[usize], facets: &HashMap<usize, Vec<String>>, existing: Option<&Value>) -> Value {
    let first = &preps[idx[0]].product;
    let name = first.custom.get("group_name").and_then(Value::as_str).unwrap_or(&first.name).to_owned();
    let mut translations = vec![json!({"languageCode": v.options.language, "name": name, "description": first.description.clone().unwrap_or_default()})];
    for (lang, t) in &first.translations {
        if lang == &v.options.language {
            continue;
        }
        translations.push(json!({"languageCode": lang, "name": t.name.clone().unwrap_or_else(|| name.clone()), "description": t.description.clone().unwrap_or_default()}));
    }
    // A batch may hold only some variants of a grouped product (the engine sends changed records
    // only), so for an existing grouped product media and categories are added to what it has, never
    // replaced; a product without `group` is exactly its one record and is replaced.
    let additive = existing.is_some() && preps[idx[0]].product.group.is_some();
    let mut media: Vec<(MediaKind, Vec<String>)> = Vec::new();
    if additive && let Some(e) = existing {
        for (kind, field) in [(MediaKind::Image, "imageUrls"), (MediaKind::Document, "documentUrls"), (MediaKind::Video, "videoUrls")] {
            let have: Vec<String> = e["customFields"][field].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(str::to_owned)).collect();
            media.push((kind, have));
        }
    }
    for i in idx {
        for m in &preps[*i].product.media {
            let pos = match media.iter().position(|(k, _)| *k == m.kind) {
                Some(p) => p,
                None => {
                    media.push((m.kind, Vec::new()));
                    media.len() - 1
                }
            };
            let list = &mut media[pos].1;
            if !list.contains(&m.url) {
                list.push(m.url.clone());
            }
        }
    }
    let urls = |k: MediaKind| media.iter().find(|(x, _)| *x == k).map(|(_, l)| l.clone()).unwrap_or_default();
    // Facet values of other facets (set by the merchant) are kept; the category facet is Ferry's.
    let mut facet_ids: Vec<String> = existing
        .and_then(|e| e["facetValues"].as_array())
        .into_iter()
        .flatten()
        .filter(|fv| additive || fv.pointer("/facet/code").and_then(Value::as_str) != Some(v.options.category_facet.as_str()))
        .filter_map(|fv| fv["id"].as_str().map(str::to_owned))
        .collect();
    for i in idx {
        for id in facets.get(i).into_iter().flatten() {
            if !facet_ids.contains(id) {
                facet_ids.push(id.clone());
            }
        }
    }
    // A product is on sale while any of its variants is; a batch of only discontinued variants does not
    // switch off a product that other (unchanged) variants keep selling.
    let any_active = idx.iter().any(|i| preps[*i].product.status == ProductStatus::Active);
    let whole_product = preps[idx[0]].product.group.is_none();
    let enabled = if any_active || whole_product || existing.is_none() {
        any_active
    } else {
        existing.and_then(|e| e["enabled"].as_bool()).unwrap_or(true)
    };
    json!({
        "enabled": enabled,
        "translations": translations,
        "facetValueIds": facet_ids,
        "customFields": {
            "ferryGroup": preps[idx[0]].group,
            "brand": first.brand,
            "shortDescription": first.short_description,
            "imageUrls": urls(MediaKind::Image),
            "documentUrls": urls(MediaKind::Document),
            "videoUrls": urls(MediaKind::Video),
        },
    })
}

/// Only the product fields that differ from `existing`; `None` when nothing does.
fn product_diff(v: &Vendure, existing: &Value, target: &Value) -> Option<Value> {
    let mut diff = serde_json::Map::new();
    if existing["enabled"] != target["enabled"] {
        diff.insert("enabled".into(), target["enabled"].clone());
    }
    let lang = v.options.language.as_str();
    let translations_differ = target["translations"].as_array().into_iter().flatten().any(|t| {
        let have = existing["translations"].as_array().into_iter().flatten().find(|e| e["languageCode"] == t["languageCode"]);
        match have {
            None => true,
            Some(e) => e["name"] != t["name"] || e["description"].as_str().unwrap_or_default() != t["description"].as_str().unwrap_or_default(),
        }
    });
    if translations_differ {
        diff.insert("translations".into(), target["translations"].clone());
    }
    let have: BTreeSet<&str> = existing["facetValues"].as_array().into_iter().flatten().filter_map(|f| f["id"].as_str()).collect();
    let want: BTreeSet<&str> = target["facetValueIds"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if have != want {
        diff.insert("facetValueIds".into(), target["facetValueIds"].clone());
    }
    let mut cf = serde_json::Map::new();
    for (k, want) in target["customFields"].as_object().into_iter().flatten() {
        let have = &existing["customFields"][k];
        let same = match (have, want) {
            (Value::Null, Value::Array(a)) => a.is_empty(),
            (Value::Array(a), Value::Null) => a.is_empty(),
            _ => have == want,
        };
        if !same {
            cf.insert(k.clone(), want.clone());
        }
    }
    if !cf.is_empty() {
        diff.insert("customFields".into(), Value::Object(cf));
    }
    let _ = lang;
    if diff.is_empty() { None } else { Some(Value::Object(diff)) }
}

fn variant_translations(v: &Vendure, p: &Product) -> Value {
    let mut t = vec![json!({"languageCode": v.options.language, "name": p.name})];
    for (lang, tr) in &p.translations {
        if lang != &v.options.language
            && let Some(n) = &tr.name
        {
            t.push(json!({"languageCode": lang, "name": n}));
        }
    }
    Value::Array(t)
}

fn variant_custom(p: &Product) -> Value {
    json!({"barcode": p.barcode, "weightGrams": weight_grams(p)})
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

/// The variant update with only the fields that differ; `None` when the variant already matches.
fn variant_diff(v: &Vendure, existing: &Value, p: &Prep, option_ids: &[String]) -> Option<Value> {
    let mut diff = serde_json::Map::new();
    let enabled = p.product.status == ProductStatus::Active;
    if existing["enabled"].as_bool() != Some(enabled) {
        diff.insert("enabled".into(), json!(enabled));
    }
    if let Some(price) = p.price
        && existing["price"].as_i64() != Some(price)
    {
        diff.insert("price".into(), json!(price));
    }
    let want_t = variant_translations(v, &p.product);
    let t_differ = want_t.as_array().into_iter().flatten().any(|t| {
        !existing["translations"].as_array().into_iter().flatten().any(|e| e["languageCode"] == t["languageCode"] && e["name"] == t["name"])
    });
    if t_differ {
        diff.insert("translations".into(), want_t);
    }
    if let Some(tc) = &p.tax_category
        && existing.pointer("/taxCategory/id").and_then(Value::as_str) != Some(tc.as_str())
    {
        diff.insert("taxCategoryId".into(), json!(tc));
    }
    if !p.product.options.is_empty() {
        let have: BTreeSet<&str> = existing["options"].as_array().into_iter().flatten().filter_map(|o| o["id"].as_str()).collect();
        let want: BTreeSet<&str> = option_ids.iter().map(String::as_str).collect();
        if have != want {
            diff.insert("optionIds".into(), json!(option_ids));
        }
    }
    let cf = variant_custom(&p.product);
    if existing["customFields"]["barcode"] != cf["barcode"] || existing["customFields"]["weightGrams"] != cf["weightGrams"] {
        diff.insert("customFields".into(), cf);
    }
    if diff.is_empty() {
        return None;
    }
    diff.insert("id".into(), existing["id"].clone());
    Some(Value::Object(diff))
}

fn option_code(s: &str) -> String {
    let c = slug(s);
    if c.is_empty() { s.bytes().map(|b| format!("{b:02x}")).collect() } else { c }
}

/// Option ids of a record's `options` on `product` (every option must exist by now).
fn option_ids(product: &Value, options: &BTreeMap<String, String>) -> Result<Vec<String>, RecordFailure> {
    let mut ids = Vec::new();
    for (name, value) in options {
        let group = product["optionGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["code"].as_str() == Some(option_code(name).as_str()))
            .ok_or_else(|| RecordFailure::permanent(Some(format!("options.{name}")), format!("option group {name:?} missing on the product")))?;
        let opt = group["options"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["code"].as_str() == Some(option_code(value).as_str()))
            .ok_or_else(|| RecordFailure::permanent(Some(format!("options.{name}")), format!("option {value:?} missing in group {name:?}")))?;
        ids.push(opt["id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(ids)
}

/// Creates missing option groups (attached to their product) and missing option values; updates
/// `products` in place so [`option_ids`] finds them.
async fn ensure_options(
    v: &Vendure,
    preps: &[Prep],
    by_group: &BTreeMap<String, Vec<usize>>,
    products: &mut HashMap<String, Value>,
    failed: &mut HashMap<usize, RecordFailure>,
) -> Result<(), ConnectorError> {
    let lang = v.options.language.clone();
    // (group, option name) -> values wanted
    let mut new_groups: Vec<(String, String, BTreeSet<String>)> = Vec::new();
    let mut new_values: Vec<(String, String, String, String)> = Vec::new(); // (group, option name, group id, value)
    for (g, idx) in by_group {
        let Some(prod) = products.get(g) else { continue };
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for i in idx {
            for (name, value) in &preps[*i].product.options {
                wanted.entry(name.clone()).or_default().insert(value.clone());
            }
        }
        for (name, values) in wanted {
            let existing = prod["optionGroups"].as_array().into_iter().flatten().find(|og| og["code"].as_str() == Some(option_code(&name).as_str()));
            match existing {
                None => new_groups.push((g.clone(), name, values)),
                Some(og) => {
                    for val in values {
                        let have = og["options"].as_array().into_iter().flatten().any(|o| o["code"].as_str() == Some(option_code(&val).as_str()));
                        if !have {
                            new_values.push((g.clone(), name.clone(), og["id"].as_str().unwrap_or_default().to_owned(), val));
                        }
                    }
                }
            }
        }
    }
    let fail = |failed: &mut HashMap<usize, RecordFailure>, g: &str, name: &str, e: &CallError| {
        for i in &by_group[g] {
            if preps[*i].product.options.contains_key(name) {
                failed.entry(*i).or_insert_with(|| e.for_record(Some(&format!("options.{name}"))));
            }
        }
    };
    if !new_groups.is_empty() {
        let inputs: Vec<Value> = new_groups
            .iter()
            .map(|(_, name, values)| {
                json!({
                    "code": option_code(name),
                    "translations": [{"languageCode": lang, "name": name}],
                    "options": values.iter().map(|val| json!({"code": option_code(val), "translations": [{"languageCode": lang, "name": val}]})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let fields: Vec<String> = (0..inputs.len()).map(|i| format!("createProductOptionGroup(input:$v{i}){{ id code options {{ id code }} }}")).collect();
        let created = v.gql.batch("CreateProductOptionGroupInput!", &fields, &inputs).await;
        let mut attach = Vec::new();
        for ((g, name, _), r) in new_groups.iter().zip(created) {
            match r {
                Ok(og) => attach.push((g.clone(), name.clone(), og)),
                Err(CallError::Connector(e)) => return Err(e),
                Err(e) => fail(failed, g, name, &e),
            }
        }
        // addOptionGroupToProduct takes two IDs: pass them as one variable object each via literals.
        let fields: Vec<String> = attach
            .iter()
            .enumerate()
            .map(|(i, (g, _, _))| {
                format!(
                    "addOptionGroupToProduct(productId:{}, optionGroupId:$v{i}){{ id }}",
                    serde_json::to_string(products[g]["id"].as_str().unwrap_or_default()).unwrap_or_default()
                )
            })
            .collect();
        let vars: Vec<Value> = attach.iter().map(|(_, _, og)| og["id"].clone()).collect();
        for ((g, name, og), r) in attach.into_iter().zip(v.gql.batch("ID!", &fields, &vars).await) {
            match r {
                Ok(_) => {
                    if let Some(list) = products.get_mut(&g).and_then(|p| p["optionGroups"].as_array_mut()) {
                        list.push(og);
                    }
                }
                Err(CallError::Connector(e)) => return Err(e),
                Err(e) => fail(failed, &g, &name, &e),
            }
        }
    }
    if !new_values.is_empty() {
        let inputs: Vec<Value> = new_values
            .iter()
            .map(|(_, _, gid, val)| json!({"productOptionGroupId": gid, "code": option_code(val), "translations": [{"languageCode": lang, "name": val}]}))
            .collect();
        let fields: Vec<String> = (0..inputs.len()).map(|i| format!("createProductOption(input:$v{i}){{ id code groupId }}")).collect();
        for ((g, name, gid, _), r) in new_values.iter().zip(v.gql.batch("CreateProductOptionInput!", &fields, &inputs).await) {
            match r {
                Ok(opt) => {
                    if let Some(og) = products
                        .get_mut(g)
                        .and_then(|p| p["optionGroups"].as_array_mut())
                        .and_then(|l| l.iter_mut().find(|og| og["id"].as_str() == Some(gid.as_str())))
                        && let Some(opts) = og["options"].as_array_mut()
                    {
                        opts.push(opt);
                    }
                }
                Err(CallError::Connector(e)) => return Err(e),
                Err(e) => fail(failed, g, name, &e),
            }
        }
    }
    Ok(())
}

/// `["Garden","Tools"]` → `[["Garden"], ["Garden","Tools"]]`: a product is in every ancestor category.
fn prefixes(path: &[String]) -> Vec<Vec<String>> {
    (1..=path.len()).map(|n| path[..n].to_vec()).collect()
}

/// Facet value code of a category path: slugs of the levels joined by `_` (slugs never contain `_`).
fn facet_code(path: &[String]) -> String {
    path.iter().map(|s| option_code(s)).collect::<Vec<_>>().join("_")
}

/// Facet value ids by code for the given paths, creating the facet and missing values.
async fn ensure_category_values(v: &Vendure, paths: &BTreeSet<Vec<String>>) -> Result<HashMap<String, String>, ConnectorError> {
    let mut cache = v.facet_values.lock().await;
    let facet_key = format!("\u{0}facet:{}", v.options.category_facet);
    if !cache.contains_key(&facet_key) {
        let data = v
            .gql
            .query(
                "query($c:String!){ facets(options:{filter:{code:{eq:$c}},take:1}){ items { id valueList(options:{take:1000}) { items { id code } } } } }",
                json!({"c": v.options.category_facet}),
            )
            .await?;
        let facet = data.pointer("/facets/items/0").cloned();
        let facet_id = match facet {
            Some(f) => {
                for fv in f.pointer("/valueList/items").and_then(Value::as_array).into_iter().flatten() {
                    cache.insert(fv["code"].as_str().unwrap_or_default().to_owned(), fv["id"].as_str().unwrap_or_default().to_owned());
                }
                f["id"].as_str().unwrap_or_default().to_owned()
            }
            None => {
                let data = v
                    .gql
                    .query(
                        "mutation($i:CreateFacetInput!){ createFacet(input:$i){ id } }",
                        json!({"i": {"code": v.options.category_facet, "isPrivate": false, "translations": [{"languageCode": v.options.language, "name": "Category"}]}}),
                    )
                    .await?;
                data.pointer("/createFacet/id").and_then(Value::as_str).unwrap_or_default().to_owned()
            }
        };
        cache.insert(facet_key.clone(), facet_id);
    }
    let facet_id = cache[&facet_key].clone();
    let missing: Vec<&Vec<String>> = paths.iter().filter(|p| !cache.contains_key(&facet_code(p))).collect();
    if !missing.is_empty() {
        let inputs: Vec<Value> = missing
            .iter()
            .map(|p| json!({"facetId": facet_id, "code": facet_code(p), "translations": [{"languageCode": v.options.language, "name": p.join(" > ")}]}))
            .collect();
        let data = v.gql.query("mutation($i:[CreateFacetValueInput!]!){ createFacetValues(input:$i){ id code } }", json!({"i": inputs})).await?;
        for fv in data["createFacetValues"].as_array().into_iter().flatten() {
            cache.insert(fv["code"].as_str().unwrap_or_default().to_owned(), fv["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(cache.iter().filter(|(k, _)| !k.starts_with('\u{0}')).map(|(k, v)| (k.clone(), v.clone())).collect())
}

#[allow(dead_code)]
fn first_error(v: &Value) -> Option<RecordFailure> {
    error_result(v, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_paths_make_facet_codes_for_every_level() {
        let path = vec!["Garden".to_owned(), "Hand Tools".to_owned()];
        let codes: Vec<String> = prefixes(&path).iter().map(|p| facet_code(p)).collect();
        assert_eq!(codes, ["garden", "garden_hand-tools"]);
    }

    #[test]
    fn weights_become_grams() {
        let mut p = Product { sku: "A".into(), name: "A".into(), ..Default::default() };
        p.weight = Some(ferry_model::Weight { value: Decimal::new(15, 1), unit: "kg".into() });
        assert_eq!(weight_grams(&p), Some(1500));
        p.weight = Some(ferry_model::Weight { value: Decimal::ONE, unit: "lb".into() });
        assert_eq!(weight_grams(&p), Some(454));
    }
}
