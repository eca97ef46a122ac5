//! prices: the sale price lists (`product.price_list` and its lines) as `PriceListEntry`s.
//!
//! A Tryton price-list line is a formula (`unit_price * 0.9`, `Decimal('12.50')`) for a product, a
//! category or everything, from a quantity on. Rather than re-implement the formulas, Ferry asks Tryton
//! for the result: `product.product.sale_price_uom` read with the context `price_list` + `quantity`, once
//! per quantity break and page of products. A break whose price equals the previous break is dropped.
//!
//! `applies_to`: the parties whose sale price list it is (`party.party.sale_price_list`): one party →
//! that customer; several sharing a category → that category as customer group; otherwise everyone.
//! Incremental: products changed since T, or every product when a price list or line changed since T.

use super::rpc::{self, as_bool, as_datetime, as_decimal, as_text, dotted};
use super::{Page, Tryton, Window, item};
use chrono::{DateTime, Utc};
use ferry_engine::ConnectorError;
use ferry_model::Stream;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

struct List {
    id: i64,
    name: String,
    tax_included: bool,
    applies_to: Value,
    updated: Option<DateTime<Utc>>,
    lines: Vec<Line>,
}

struct Line {
    product: Option<i64>,
    category: Option<i64>,
    quantity: Option<Decimal>,
}

impl Tryton {
    pub(super) async fn price_page(&self, w: &Window) -> Result<Page, ConnectorError> {
        let base = self.base().await?.clone();
        let lists = self.price_lists().await?;
        let mut domain = vec![json!(["salable", "=", true]), json!(["id", ">", w.after_id])];
        if let Some(keys) = &w.keys {
            // keys are `list/sku/min_quantity` or plain SKUs
            let skus: Vec<&str> = keys.iter().map(|k| k.split('/').nth(1).unwrap_or(k)).collect();
            domain.push(json!(["code", "in", skus]));
        } else if let Some(t) = w.changed_since {
            let lists_changed = lists.iter().any(|l| l.updated.is_some_and(|u| u >= t));
            if !lists_changed {
                domain.push(json!(["OR", ["last_modified_at", ">=", rpc::datetime(t)], ["template.last_modified_at", ">=", rpc::datetime(t)]]));
            }
        }
        let ids = self.rpc.search("product.product", json!(domain), 0, Some(self.opts.page_size), json!([["id", "ASC"]]), &Map::new()).await?;
        let products = self.rpc.read("product.product", &ids, &["code", "template.categories", "last_modified_at", "template.last_modified_at"], &Map::new()).await?;
        // every category of a product and its ancestors: a line for a parent category matches too
        let paths = self.category_ancestors(&products).await?;
        let mut items = Vec::new();
        for list in &lists {
            // quantity break (as text, for a stable map key) → products that some line of this list matches
            let mut wanted: BTreeMap<Decimal, BTreeSet<i64>> = BTreeMap::new();
            for p in &products {
                let pid = p.get("id").and_then(Value::as_i64).unwrap_or_default();
                let cats = paths.get(&pid).cloned().unwrap_or_default();
                for line in &list.lines {
                    let matches = line.product.is_none_or(|x| x == pid) && line.category.is_none_or(|c| cats.contains(&c));
                    if matches {
                        wanted.entry(line.quantity.unwrap_or(Decimal::ZERO)).or_default().insert(pid);
                    }
                }
            }
            let mut prices: BTreeMap<i64, Vec<(Decimal, Decimal)>> = BTreeMap::new();
            for (qty, pids) in &wanted {
                let mut ctx = Map::new();
                ctx.insert("price_list".into(), json!(list.id));
                ctx.insert("quantity".into(), json!(qty.to_string().parse::<f64>().unwrap_or(0.0)));
                // the price in effect today on the business's calendar (price lists with validity dates,
                // module product_price_list_dates, judge them on the context's `date`)
                ctx.insert("date".into(), rpc::date(super::dates::local_date(Utc::now(), self.tz)));
                let pids: Vec<i64> = pids.iter().copied().collect();
                for row in self.rpc.read("product.product", &pids, &["sale_price_uom"], &ctx).await? {
                    let pid = row.get("id").and_then(Value::as_i64).unwrap_or_default();
                    if let Some(price) = row.get("sale_price_uom").and_then(as_decimal) {
                        prices.entry(pid).or_default().push((*qty, price));
                    }
                }
            }
            for p in &products {
                let pid = p.get("id").and_then(Value::as_i64).unwrap_or_default();
                let Some(breaks) = prices.get(&pid) else { continue };
                let position = format!("product.price_list id {} ({}) × product.product id {pid}", list.id, list.name);
                let Some(sku) = as_text(p.get("code")) else {
                    items.push(super::invalid(Stream::Prices, position, None, Value::Object(p.clone()), "code", "product has no code (SKU)"));
                    continue;
                };
                let updated = [p.get("last_modified_at"), dotted(p, "template.last_modified_at")].into_iter().flatten().filter_map(as_datetime).chain(list.updated).max();
                let mut last: Option<Decimal> = None;
                for (qty, price) in breaks {
                    if last == Some(*price) {
                        continue; // not a real break: same price as the smaller quantity
                    }
                    last = Some(*price);
                    let mut data = json!({
                        "price_list": list.name,
                        "sku": sku,
                        "applies_to": list.applies_to,
                        "min_quantity": (*qty).max(Decimal::ONE).normalize().to_string(),
                        "price": {"amount": price.normalize().to_string(), "currency": base.currency, "tax_inclusive": list.tax_included},
                    });
                    if let Some(u) = updated {
                        data["updated_at"] = json!(u);
                    }
                    items.push(item(Stream::Prices, position.clone(), data));
                }
            }
        }
        Ok(Page { next_after: (ids.len() == self.opts.page_size).then(|| ids.last().copied()).flatten(), items })
    }

    /// All active price lists with their lines and who uses them (three reads).
    async fn price_lists(&self) -> Result<Vec<List>, ConnectorError> {
        let lists = self.rpc.search_read("product.price_list", json!([]), 0, None, json!([["id", "ASC"]]), &["name", "tax_included", "lines", "last_modified_at"], &Map::new()).await?;
        let line_ids: Vec<i64> = lists.iter().flat_map(|l| super::id_list(l.get("lines"))).collect();
        let lines = super::by_id(self.rpc.read("product.price_list.line", &line_ids, &["product", "category", "quantity", "last_modified_at"], &Map::new()).await?);
        let users = self.price_list_users().await?;
        let cat_ids: Vec<i64> = users.iter().flat_map(|u| super::id_list(u.get("categories"))).collect::<HashSet<_>>().into_iter().collect();
        let cat_names: HashMap<i64, String> = self
            .rpc
            .read("party.category", &cat_ids, &["name"], &Map::new())
            .await?
            .into_iter()
            .filter_map(|r| Some((r.get("id")?.as_i64()?, as_text(r.get("name"))?)))
            .collect();
        let mut out = Vec::new();
        for l in &lists {
            let id = l.get("id").and_then(Value::as_i64).unwrap_or_default();
            let mut updated = l.get("last_modified_at").and_then(as_datetime);
            let mut ls = Vec::new();
            for lid in super::id_list(l.get("lines")) {
                let Some(line) = lines.get(&lid) else { continue };
                updated = updated.max(line.get("last_modified_at").and_then(as_datetime));
                ls.push(Line {
                    product: line.get("product").and_then(Value::as_i64),
                    category: line.get("category").and_then(Value::as_i64),
                    quantity: line.get("quantity").and_then(as_decimal),
                });
            }
            let parties: Vec<&Map<String, Value>> = users.iter().filter(|u| u.get("sale_price_list").and_then(Value::as_i64) == Some(id)).collect();
            let applies_to = applies_to(&parties, &cat_names);
            out.push(List { id, name: as_text(l.get("name")).unwrap_or_else(|| format!("price list {id}")), tax_included: l.get("tax_included").is_some_and(as_bool), applies_to, updated, lines: ls });
        }
        Ok(out)
    }

    /// Parties with a sale price list (`sale_price_list` is a company-dependent MultiValue Tryton cannot
    /// search on, and its table model is not exposed over RPC): all parties are scanned, 1,000 per
    /// call, and the answer is kept for a minute so a paged read scans once.
    async fn price_list_users(&self) -> Result<Vec<Map<String, Value>>, ConnectorError> {
        let mut cache = self.price_list_users.lock().await;
        if let Some((at, users)) = cache.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(60)
        {
            return Ok(users.clone());
        }
        let mut users = Vec::new();
        let mut after = 0i64;
        loop {
            let rows = self
                .rpc
                .search_read("party.party", json!([["id", ">", after]]), 0, Some(1000), json!([["id", "ASC"]]), &["sale_price_list", "code", "categories"], &Map::new())
                .await?;
            let last = rows.last().and_then(|r| r.get("id")).and_then(Value::as_i64);
            let full = rows.len() == 1000;
            users.extend(rows.into_iter().filter(|r| r.get("sale_price_list").is_some_and(|v| v.is_i64())));
            match last {
                Some(l) if full => after = l,
                _ => break,
            }
        }
        *cache = Some((std::time::Instant::now(), users.clone()));
        Ok(users)
    }

    /// product id → its categories and all their ancestors.
    async fn category_ancestors(&self, products: &[Map<String, Value>]) -> Result<HashMap<i64, HashSet<i64>>, ConnectorError> {
        let mut parent: HashMap<i64, Option<i64>> = HashMap::new();
        let mut todo: Vec<i64> = products.iter().flat_map(|p| super::id_list(dotted(p, "template.categories"))).collect::<HashSet<_>>().into_iter().collect();
        while !todo.is_empty() {
            let rows = self.rpc.read("product.category", &todo, &["parent"], &Self::all_records()).await?;
            todo.clear();
            for r in rows {
                let id = r.get("id").and_then(Value::as_i64).unwrap_or_default();
                let p = r.get("parent").and_then(Value::as_i64);
                parent.insert(id, p);
                if let Some(p) = p
                    && !parent.contains_key(&p)
                    && !todo.contains(&p)
                {
                    todo.push(p);
                }
            }
        }
        let mut out = HashMap::new();
        for p in products {
            let pid = p.get("id").and_then(Value::as_i64).unwrap_or_default();
            let mut all = HashSet::new();
            for c in super::id_list(dotted(p, "template.categories")) {
                let mut cur = Some(c);
                while let Some(x) = cur {
                    if !all.insert(x) {
                        break;
                    }
                    cur = parent.get(&x).copied().flatten();
                }
            }
            out.insert(pid, all);
        }
        Ok(out)
    }
}

/// One party → that customer; several sharing a category → the alphabetically first shared category;
/// none or nothing shared → everyone given the list.
fn applies_to(parties: &[&Map<String, Value>], cat_names: &HashMap<i64, String>) -> Value {
    match parties {
        [] => json!({"kind": "all"}),
        [one] => match as_text(one.get("code")) {
            Some(code) => json!({"kind": "customer", "code": code}),
            None => json!({"kind": "all"}),
        },
        many => {
            let mut shared: Option<HashSet<i64>> = None;
            for p in many {
                let cats: HashSet<i64> = super::id_list(p.get("categories")).into_iter().collect();
                shared = Some(match shared {
                    None => cats,
                    Some(s) => s.intersection(&cats).copied().collect(),
                });
            }
            let mut names: Vec<&String> = shared.unwrap_or_default().iter().filter_map(|c| cat_names.get(c)).collect();
            names.sort();
            match names.first() {
                Some(n) => json!({"kind": "customer_group", "code": n}),
                None => json!({"kind": "all"}),
            }
        }
    }
}
