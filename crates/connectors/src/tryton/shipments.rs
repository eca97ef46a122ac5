//! shipments: done customer shipments (`stock.shipment.out`, state `done`) with the shop's order number
//! (the sale's `web_id`, else its `reference`, found through the moves' origin `sale.line,<id>`), the
//! carrier (`carrier.party.name`, service = the carrier's product) and the tracking reference
//! (`shipping_reference` of the stock_package_shipping module; tracking URLs exist only on its packages).

use super::rpc::{self, as_date, as_datetime, as_decimal, as_text, dotted};
use super::{Page, Tryton, Window, item, window_domain};
use chrono::{NaiveTime, TimeZone, Utc};
use ferry_engine::ConnectorError;
use ferry_model::Stream;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const FIELDS: &[&str] = &[
    "number",
    "reference",
    "effective_date",
    "last_modified_at",
    "outgoing_moves",
    "carrier.party.name",
    "carrier.carrier_product.name",
    "shipping_reference",
];

impl Tryton {
    pub(super) async fn shipment_page(&self, w: &Window) -> Result<Page, ConnectorError> {
        let changed = w.changed_since.map(|t| json!(["last_modified_at", ">=", rpc::datetime(t)]));
        let domain = window_domain(w, vec![json!(["state", "=", "done"])], "number", changed);
        let ids = self.rpc.search("stock.shipment.out", json!(domain), 0, Some(self.opts.page_size), json!([["id", "ASC"]]), &Map::new()).await?;
        let fields = self.fields_with_custom(Stream::Shipments, FIELDS);
        let shipments = self.rpc.read("stock.shipment.out", &ids, &fields, &Map::new()).await?;
        let move_ids: Vec<i64> = shipments.iter().flat_map(|s| super::id_list(s.get("outgoing_moves"))).collect();
        let moves = super::by_id(self.rpc.read("stock.move", &move_ids, &["product.code", "quantity", "origin", "state"], &Map::new()).await?);
        let sale_line_ids: Vec<i64> = moves.values().filter_map(|m| sale_line_of(m.get("origin"))).collect();
        let sale_lines = super::by_id(self.rpc.read("sale.line", &sale_line_ids, &["sale.web_id", "sale.reference", "sale.number"], &Map::new()).await?);
        let mut items = Vec::with_capacity(shipments.len());
        for s in &shipments {
            let id = s.get("id").and_then(Value::as_i64).unwrap_or_default();
            let position = format!("stock.shipment.out id {id}");
            let raw = Value::Object(s.clone());
            let Some(number) = as_text(s.get("number")) else {
                items.push(super::invalid(Stream::Shipments, position, None, raw, "number", "shipment has no number"));
                continue;
            };
            let mut lines: BTreeMap<String, rust_decimal::Decimal> = BTreeMap::new();
            let mut order_number = None;
            for mid in super::id_list(s.get("outgoing_moves")) {
                let Some(m) = moves.get(&mid) else { continue };
                if m.get("state").and_then(Value::as_str) == Some("cancelled") {
                    continue;
                }
                if order_number.is_none()
                    && let Some(sl) = sale_line_of(m.get("origin")).and_then(|l| sale_lines.get(&l))
                {
                    order_number = as_text(dotted(sl, "sale.web_id")).or_else(|| as_text(dotted(sl, "sale.reference"))).or_else(|| as_text(dotted(sl, "sale.number")));
                }
                let (Some(sku), Some(q)) = (as_text(dotted(m, "product.code")), m.get("quantity").and_then(as_decimal)) else { continue };
                *lines.entry(sku).or_default() += q;
            }
            let Some(order_number) = order_number.or_else(|| as_text(s.get("reference"))) else {
                items.push(super::invalid(Stream::Shipments, position, Some(number), raw, "outgoing_moves.origin", "no sale (and no reference) links this shipment to an order"));
                continue;
            };
            let mut data = json!({
                "number": number,
                "order_number": order_number,
                "lines": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q.normalize().to_string()})).collect::<Vec<_>>(),
            });
            let o = data.as_object_mut().expect("object");
            for (src, dst) in [("carrier.party.name", "carrier"), ("carrier.carrier_product.name", "service"), ("shipping_reference", "tracking_code")] {
                if let Some(v) = as_text(dotted(s, src)) {
                    o.insert(dst.into(), json!(v));
                }
            }
            if let Some(d) = s.get("effective_date").and_then(as_date) {
                o.insert("shipped_at".into(), json!(Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))));
            }
            if let Some(u) = s.get("last_modified_at").and_then(as_datetime) {
                o.insert("updated_at".into(), json!(u));
            }
            let custom = self.custom(Stream::Shipments, s);
            if !custom.is_empty() {
                o.insert("custom".into(), Value::Object(custom));
            }
            items.push(item(Stream::Shipments, position, data));
        }
        Ok(Page { next_after: (ids.len() == self.opts.page_size).then(|| ids.last().copied()).flatten(), items })
    }
}

/// `"sale.line,42"` → 42.
fn sale_line_of(origin: Option<&Value>) -> Option<i64> {
    origin?.as_str()?.strip_prefix("sale.line,")?.parse().ok()
}
