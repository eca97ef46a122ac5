//! products: `product.product` (one per SKU) with its `product.template` (name, list price, categories).
//!
//! A template change (name, price) does not touch the variant's `write_date`, so the change window is
//! `last_modified_at >= T OR template.last_modified_at >= T`. Archived products are read too
//! (`active_test: false`) and become `status = discontinued`.
//!
//! Variants of one template share `group` and, as the model requires, differ by `options`: Tryton
//! without the attribute modules names a variant only by its `suffix_code`, so a template with several
//! variants gives each the option `Variant` = its suffix (without leading separators), or its code when
//! the suffix is empty. A shop cannot hold two variants of one product with the same (empty) options.

use super::rpc::{self, as_bool, as_datetime, as_decimal, as_text, dotted};
use super::{Page, Tryton, Window, item, window_domain};
use chrono::{DateTime, Utc};
use ferry_engine::{ConnectorError, ReadItem};
use ferry_model::Stream;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

const FIELDS: &[&str] = &[
    "code",
    "suffix_code",
    "active",
    "description",
    "cost_price",
    "last_modified_at",
    "template",
    "template.code",
    "template.name",
    "template.products",
    "template.list_price",
    "template.categories",
    "account_category.name",
    "template.last_modified_at",
];

impl Tryton {
    pub(super) async fn product_page(&self, w: &Window) -> Result<Page, ConnectorError> {
        let base = self.base().await?.clone();
        let changed = w.changed_since.map(|t| {
            json!(["OR", ["last_modified_at", ">=", rpc::datetime(t)], ["template.last_modified_at", ">=", rpc::datetime(t)]])
        });
        let domain = window_domain(w, vec![], "code", changed);
        let ctx = Self::all_records();
        let ids = self.rpc.search("product.product", json!(domain), 0, Some(self.opts.page_size), json!([["id", "ASC"]]), &ctx).await?;
        let fields = self.fields_with_custom(Stream::Products, FIELDS);
        let rows = self.rpc.read("product.product", &ids, &fields, &ctx).await?;
        let paths = self.category_paths(&rows).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(self.product_item(row, &paths, base.currency));
        }
        Ok(Page { next_after: (ids.len() == self.opts.page_size).then(|| ids.last().copied()).flatten(), items })
    }

    fn product_item(&self, row: &Map<String, Value>, paths: &HashMap<i64, Vec<String>>, currency: ferry_model::Currency) -> ReadItem {
        let id = row.get("id").and_then(Value::as_i64).unwrap_or_default();
        let position = format!("product.product id {id}");
        let raw = Value::Object(row.clone());
        let Some(sku) = as_text(row.get("code")) else {
            return super::invalid(Stream::Products, position, None, raw, "code", "product has no code (SKU): set the template code / variant suffix");
        };
        let Some(name) = as_text(dotted(row, "template.name")) else {
            return super::invalid(Stream::Products, position, Some(sku), raw, "template.name", "template has no name");
        };
        let price = match dotted(row, "template.list_price") {
            None | Some(Value::Null) => None,
            Some(v) => match as_decimal(v) {
                Some(d) => Some(json!({"amount": d.normalize().to_string(), "currency": currency, "tax_inclusive": false})),
                None => return super::invalid(Stream::Products, position, Some(sku), raw, "template.list_price", format!("not a decimal: {v}")),
            },
        };
        let cost = row.get("cost_price").and_then(as_decimal).map(|d| json!({"amount": d.normalize().to_string(), "currency": currency, "tax_inclusive": false}));
        let categories: Vec<Vec<String>> = super::id_list(dotted(row, "template.categories")).into_iter().filter_map(|c| paths.get(&c).cloned()).collect();
        let updated: Option<DateTime<Utc>> = [row.get("last_modified_at"), dotted(row, "template.last_modified_at")]
            .into_iter()
            .flatten()
            .filter_map(as_datetime)
            .max();
        let active = row.get("active").is_none_or(as_bool);
        let mut data = json!({
            "sku": sku,
            "name": name,
            "status": if active { "active" } else { "discontinued" },
        });
        let o = data.as_object_mut().expect("object");
        if let Some(g) = as_text(dotted(row, "template.code")) {
            o.insert("group".into(), json!(g));
        }
        if let Some(d) = as_text(row.get("description")) {
            o.insert("description".into(), json!(d));
        }
        if !categories.is_empty() {
            o.insert("categories".into(), json!(categories));
        }
        if super::id_list(dotted(row, "template.products")).len() > 1 {
            let suffix = as_text(row.get("suffix_code")).map(|s| s.trim_start_matches(['-', '_', '.', '/', ' ']).to_owned()).filter(|s| !s.is_empty());
            o.insert("options".into(), json!({"Variant": suffix.unwrap_or_else(|| sku.clone())}));
        }
        if let Some(t) = as_text(dotted(row, "account_category.name")) {
            o.insert("tax_class".into(), json!(t));
        }
        if let Some(p) = price {
            o.insert("price".into(), p);
        }
        if let Some(c) = cost {
            o.insert("cost".into(), c);
        }
        if let Some(u) = updated {
            o.insert("updated_at".into(), json!(u));
        }
        let custom = self.custom(Stream::Products, row);
        if !custom.is_empty() {
            o.insert("custom".into(), Value::Object(custom));
        }
        item(Stream::Products, position, data)
    }

    /// Category id → path from the root (`["Garden", "Tools", "Spades"]`), fetching parents level by level
    /// (one read per level, not per category).
    pub(super) async fn category_paths(&self, rows: &[Map<String, Value>]) -> Result<HashMap<i64, Vec<String>>, ConnectorError> {
        let wanted: HashSet<i64> = rows.iter().flat_map(|r| super::id_list(dotted(r, "template.categories"))).collect();
        let mut known: HashMap<i64, (String, Option<i64>)> = HashMap::new();
        let mut todo: Vec<i64> = wanted.iter().copied().collect();
        let ctx = Self::all_records();
        while !todo.is_empty() {
            let found = self.rpc.read("product.category", &todo, &["name", "parent"], &ctx).await?;
            todo.clear();
            for r in found {
                let id = r.get("id").and_then(Value::as_i64).unwrap_or_default();
                let parent = r.get("parent").and_then(Value::as_i64);
                let name = as_text(r.get("name")).unwrap_or_else(|| format!("category {id}"));
                if let Some(p) = parent
                    && !known.contains_key(&p)
                    && !todo.contains(&p)
                {
                    todo.push(p);
                }
                known.insert(id, (name, parent));
            }
            todo.retain(|id| !known.contains_key(id));
        }
        let mut paths = HashMap::new();
        for id in wanted {
            let mut path = Vec::new();
            let mut cur = Some(id);
            let mut guard = 0;
            while let Some(c) = cur {
                let Some((name, parent)) = known.get(&c) else { break };
                path.push(name.clone());
                cur = *parent;
                guard += 1;
                if guard > 64 {
                    break; // a parent loop cannot happen in Tryton (it checks recursion); stay safe anyway
                }
            }
            path.reverse();
            paths.insert(id, path);
        }
        Ok(paths)
    }
}
