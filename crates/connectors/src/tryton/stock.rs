//! stock: per goods product and warehouse, `quantity` → `on_hand` and `forecast_quantity` → `available`
//! (read with the context `locations = [warehouse]`), status from the configured thresholds.
//!
//! Stock changes never touch the product: the change window is "products with a `stock.move` changed
//! since T" (any state: a confirmed sale changes the forecast) plus products changed themselves
//! (archiving makes them discontinued).

use super::rpc::{self, as_bool, as_decimal, as_text, dotted};
use super::{Page, Tryton, Window, item};
use ferry_engine::ConnectorError;
use ferry_model::Stream;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

impl Tryton {
    pub(super) async fn stock_page(&self, w: &Window) -> Result<Page, ConnectorError> {
        let base = self.base().await?.clone();
        let ctx = Self::all_records();
        let mut domain = vec![json!(["type", "=", "goods"]), json!(["id", ">", w.after_id])];
        if let Some(keys) = &w.keys {
            // keys are `sku@location` or plain SKUs
            let skus: Vec<&str> = keys.iter().map(|k| k.split_once('@').map_or(k.as_str(), |(s, _)| s)).collect();
            domain.push(json!(["code", "in", skus]));
        } else if let Some(t) = w.changed_since {
            let moved = self.products_moved_since(t).await?;
            domain.push(json!(["OR",
                ["id", "in", moved],
                ["last_modified_at", ">=", rpc::datetime(t)],
                ["template.last_modified_at", ">=", rpc::datetime(t)]]));
        }
        let ids = self.rpc.search("product.product", json!(domain), 0, Some(self.opts.page_size), json!([["id", "ASC"]]), &ctx).await?;
        let rules = &self.opts.stock_status;
        let mut fields: Vec<&str> = vec!["code", "active", "template.categories", "last_modified_at"];
        if let Some(f) = &rules.end_of_line_field {
            fields.push(f);
        }
        let fields = self.fields_with_custom(Stream::Stock, &fields);
        let products = self.rpc.read("product.product", &ids, &fields, &ctx).await?;
        let eol_category = match &rules.end_of_line_category {
            Some(name) => self.rpc.search("product.category", json!([["name", "=", name]]), 0, None, Value::Null, &ctx).await?,
            None => vec![],
        };
        let mut items = Vec::new();
        for (code, wh_id) in &base.warehouses {
            if !self.opts.stock_warehouses().contains(code) {
                continue;
            }
            let mut wctx = ctx.clone();
            wctx.insert("locations".into(), json!([wh_id]));
            wctx.insert("with_childs".into(), json!(true));
            let qty = super::by_id(self.rpc.read("product.product", &ids, &["quantity", "forecast_quantity"], &wctx).await?);
            for p in &products {
                let id = p.get("id").and_then(Value::as_i64).unwrap_or_default();
                let position = format!("product.product id {id} in warehouse {code}");
                let raw = Value::Object(p.clone());
                let Some(sku) = as_text(p.get("code")) else {
                    items.push(super::invalid(Stream::Stock, position, None, raw, "code", "product has no code (SKU)"));
                    continue;
                };
                let q = qty.get(&id);
                let (Some(on_hand), Some(available)) = (
                    q.and_then(|r| r.get("quantity")).and_then(as_decimal),
                    q.and_then(|r| r.get("forecast_quantity")).and_then(as_decimal),
                ) else {
                    items.push(super::invalid(Stream::Stock, position, Some(format!("{sku}@{code}")), raw, "quantity", "quantity/forecast_quantity not readable"));
                    continue;
                };
                let active = p.get("active").is_none_or(as_bool);
                let eol = rules.end_of_line_field.as_deref().and_then(|f| dotted(p, f)).is_some_and(as_bool)
                    || super::id_list(dotted(p, "template.categories")).iter().any(|c| eol_category.contains(c));
                let status = stock_status(active, eol, available, rules);
                let mut data = json!({
                    "sku": sku,
                    "location": code,
                    "on_hand": on_hand.normalize().to_string(),
                    "available": available.normalize().to_string(),
                    "status": status,
                });
                let custom = self.custom(Stream::Stock, p);
                if !custom.is_empty() {
                    data["custom"] = Value::Object(custom);
                }
                items.push(item(Stream::Stock, position, data));
            }
        }
        Ok(Page { next_after: (ids.len() == self.opts.page_size).then(|| ids.last().copied()).flatten(), items })
    }

    /// Products of every `stock.move` written since `t` (one search_read per 5,000 moves).
    async fn products_moved_since(&self, t: chrono::DateTime<chrono::Utc>) -> Result<Vec<i64>, ConnectorError> {
        let mut products = BTreeSet::new();
        let mut after = 0i64;
        loop {
            let rows = self
                .rpc
                .search_read(
                    "stock.move",
                    json!([["last_modified_at", ">=", rpc::datetime(t)], ["id", ">", after]]),
                    0,
                    Some(5000),
                    json!([["id", "ASC"]]),
                    &["product"],
                    &Map::new(),
                )
                .await?;
            for r in &rows {
                if let Some(p) = r.get("product").and_then(Value::as_i64) {
                    products.insert(p);
                }
            }
            match rows.last().and_then(|r| r.get("id")).and_then(Value::as_i64) {
                Some(last) if rows.len() == 5000 => after = last,
                _ => break,
            }
        }
        Ok(products.into_iter().collect())
    }
}

/// inactive → discontinued; end-of-line → end_of_line while available, then discontinued;
/// nothing available → temporarily_out; at or below `low_stock` → low; else in_stock.
pub(crate) fn stock_status(active: bool, end_of_line: bool, available: Decimal, rules: &super::StockStatusRules) -> &'static str {
    if !active && rules.inactive_is_discontinued {
        "discontinued"
    } else if end_of_line {
        if available > Decimal::ZERO { "end_of_line" } else { "discontinued" }
    } else if available <= Decimal::ZERO {
        "temporarily_out"
    } else if available <= rules.low_stock {
        "low"
    } else {
        "in_stock"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tryton::StockStatusRules;

    #[test]
    fn status_follows_the_thresholds() {
        let r = StockStatusRules::default();
        assert_eq!(stock_status(true, false, Decimal::from(10), &r), "in_stock");
        assert_eq!(stock_status(true, false, Decimal::from(5), &r), "low");
        assert_eq!(stock_status(true, false, Decimal::ZERO, &r), "temporarily_out");
        assert_eq!(stock_status(true, false, Decimal::from(-2), &r), "temporarily_out");
        assert_eq!(stock_status(false, false, Decimal::from(10), &r), "discontinued");
        assert_eq!(stock_status(true, true, Decimal::from(3), &r), "end_of_line");
        assert_eq!(stock_status(true, true, Decimal::ZERO, &r), "discontinued");
    }
}
