//! customers: `party.party` with its addresses (`party.address`, invoice/delivery flags), e-mail and
//! phone contact mechanisms, customer payment term, sale price list and categories (→ `group`).
//!
//! The change window covers the party and its addresses and contact mechanisms (they have their own
//! `write_date`). Archived parties are read as `active = false`.

use super::rpc::{self, as_bool, as_datetime, as_text, dotted};
use super::{Page, Tryton, Window, item, window_domain};
use ferry_engine::ConnectorError;
use ferry_model::Stream;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

const FIELDS: &[&str] = &[
    "code",
    "name",
    "active",
    "last_modified_at",
    "addresses",
    "contact_mechanisms",
    "categories",
    "customer_payment_term.name",
    "sale_price_list.name",
    "tax_identifier.code",
];

const ADDRESS_FIELDS: &[&str] =
    &["party_name", "street", "city", "postal_code", "subdivision.name", "country.code", "invoice", "delivery", "active", "last_modified_at"];

impl Tryton {
    pub(super) async fn customer_page(&self, w: &Window) -> Result<Page, ConnectorError> {
        let ctx = Self::all_records();
        let changed = w.changed_since.map(|t| {
            let t = rpc::datetime(t);
            json!(["OR", ["last_modified_at", ">=", t], ["addresses.last_modified_at", ">=", t], ["contact_mechanisms.last_modified_at", ">=", t]])
        });
        let domain = window_domain(w, vec![], "code", changed);
        let ids = self.rpc.search("party.party", json!(domain), 0, Some(self.opts.page_size), json!([["id", "ASC"]]), &ctx).await?;
        let fields = self.fields_with_custom(Stream::Customers, FIELDS);
        let parties = self.rpc.read("party.party", &ids, &fields, &ctx).await?;
        // one read each for all addresses, contact mechanisms and categories of the page
        let address_ids: Vec<i64> = parties.iter().flat_map(|p| super::id_list(p.get("addresses"))).collect();
        let mech_ids: Vec<i64> = parties.iter().flat_map(|p| super::id_list(p.get("contact_mechanisms"))).collect();
        let cat_ids: Vec<i64> = parties.iter().flat_map(|p| super::id_list(p.get("categories"))).collect::<HashSet<_>>().into_iter().collect();
        let addresses = super::by_id(self.rpc.read("party.address", &address_ids, ADDRESS_FIELDS, &Map::new()).await?);
        let mechs = super::by_id(self.rpc.read("party.contact_mechanism", &mech_ids, &["type", "value", "active"], &Map::new()).await?);
        let cats: HashMap<i64, String> = self
            .rpc
            .read("party.category", &cat_ids, &["name"], &ctx)
            .await?
            .into_iter()
            .filter_map(|r| Some((r.get("id")?.as_i64()?, as_text(r.get("name"))?)))
            .collect();
        let mut items = Vec::with_capacity(parties.len());
        for p in &parties {
            let id = p.get("id").and_then(Value::as_i64).unwrap_or_default();
            let position = format!("party.party id {id}");
            let Some(code) = as_text(p.get("code")) else {
                items.push(super::invalid(Stream::Customers, position, None, Value::Object(p.clone()), "code", "party has no code"));
                continue;
            };
            let mut data = json!({"code": code, "active": p.get("active").is_none_or(as_bool)});
            let o = data.as_object_mut().expect("object");
            if let Some(n) = as_text(p.get("name")) {
                o.insert("company".into(), json!(n));
            }
            let mechanisms: Vec<&Map<String, Value>> =
                super::id_list(p.get("contact_mechanisms")).iter().filter_map(|m| mechs.get(m)).filter(|m| m.get("active").is_none_or(as_bool)).collect();
            let first = |types: &[&str]| {
                mechanisms.iter().find(|m| m.get("type").and_then(Value::as_str).is_some_and(|t| types.contains(&t))).and_then(|m| as_text(m.get("value")))
            };
            if let Some(e) = first(&["email"]) {
                o.insert("email".into(), json!(e));
            }
            if let Some(ph) = first(&["phone", "mobile"]) {
                o.insert("phone".into(), json!(ph));
            }
            if let Some(t) = as_text(dotted(p, "tax_identifier.code")) {
                o.insert("tax_id".into(), json!(t));
            }
            let mut groups: Vec<&String> = super::id_list(p.get("categories")).iter().filter_map(|c| cats.get(c)).collect();
            groups.sort();
            if let Some(g) = groups.first() {
                o.insert("group".into(), json!(g));
            }
            if let Some(pl) = as_text(dotted(p, "sale_price_list.name")) {
                o.insert("price_list".into(), json!(pl));
            }
            if let Some(pt) = as_text(dotted(p, "customer_payment_term.name")) {
                o.insert("payment_terms".into(), json!(pt));
            }
            let mut updated = p.get("last_modified_at").and_then(as_datetime);
            let mut out = Vec::new();
            let (mut billing_seen, mut delivery_seen) = (false, false);
            for aid in super::id_list(p.get("addresses")) {
                let Some(a) = addresses.get(&aid) else { continue };
                if !a.get("active").is_none_or(as_bool) {
                    continue;
                }
                updated = updated.max(a.get("last_modified_at").and_then(as_datetime));
                let invoice = a.get("invoice").is_some_and(as_bool);
                let delivery = a.get("delivery").is_some_and(as_bool);
                let mut addr = json!({
                    "key": aid.to_string(),
                    "billing": invoice,
                    "delivery": delivery,
                    "default_billing": invoice && !billing_seen,
                    "default_delivery": delivery && !delivery_seen,
                });
                billing_seen |= invoice;
                delivery_seen |= delivery;
                let ao = addr.as_object_mut().expect("object");
                if let Some(n) = as_text(a.get("party_name")) {
                    ao.insert("name".into(), json!(n));
                }
                if let Some(s) = as_text(a.get("street")) {
                    ao.insert("street".into(), json!(s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>()));
                }
                for (src, dst) in [("city", "city"), ("postal_code", "postcode"), ("subdivision.name", "region"), ("country.code", "country")] {
                    if let Some(v) = as_text(dotted(a, src)) {
                        ao.insert(dst.into(), json!(v));
                    }
                }
                out.push(addr);
            }
            if !out.is_empty() {
                o.insert("addresses".into(), Value::Array(out));
            }
            if let Some(u) = updated {
                o.insert("updated_at".into(), json!(u));
            }
            let custom = self.custom(Stream::Customers, p);
            if !custom.is_empty() {
                o.insert("custom".into(), Value::Object(custom));
            }
            items.push(item(Stream::Customers, position, data));
        }
        Ok(Page { next_after: (ids.len() == self.opts.page_size).then(|| ids.last().copied()).flatten(), items })
    }
}
