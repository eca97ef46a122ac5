//! orders → `sale.sale`: where a shop order becomes a Tryton sale, exactly once.
//!
//! The sale carries `web_shop` + `web_id` = the order number (unique per shop: Tryton refuses a second
//! create) and `reference` = the order number; `find_by_key` searches `web_shop` + `web_id`.
//! Per order: the buyer is matched (party code, then e-mail), created, or booked to the B2C party;
//! invoice/delivery addresses are found on the party or created; lines by product code (an unknown
//! SKU fails that order alone, naming `lines[i].sku`); each line gets the product's customer taxes
//! (an RPC create runs no on_change); freight, discounts and loyalty become lines of the configured
//! service products. The sales of a batch are created in one call (one by one if Tryton refuses the
//! batch, to find the culprit), Tryton's tax is compared with `totals.tax`, then the sales are moved
//! to the configured state. A transport failure never reports an order as created.

use super::amounts::{self, Part, Tax, TaxRounding};
use super::rpc::{self, RpcError, as_decimal, as_text, dec, dotted};
use super::{LineDiscounts, OnTaxMismatch, OrderState, TaxRoundingOption, Tryton};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Address, DiscountKind, Order, Record};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// Looked up once per connection: what writing orders needs.
#[derive(Clone, Debug)]
pub(crate) struct OrderSetup {
    pub web_shop: i64,
    pub b2c_party: i64,
    pub warehouse: i64,
    pub freight: ProductInfo,
    pub discount: ProductInfo,
    pub loyalty: ProductInfo,
    /// Tax-free line making Tryton's total the shop's when a tax difference is accepted.
    pub adjustment: ProductInfo,
    /// Tryton's `account.configuration.tax_rounding` (after applying the `tax_rounding` option).
    pub rounding: TaxRounding,
    pub payment_term: Option<i64>,
    pub countries: HashMap<String, i64>,
    pub currencies: HashMap<String, i64>,
}

#[derive(Clone, Debug)]
pub(crate) struct ProductInfo {
    pub id: i64,
    pub unit: i64,
    pub taxes: Vec<i64>,
    /// The percentage taxes among `taxes`, for predicting Tryton's tax (amounts.rs).
    pub tax_rates: Vec<Tax>,
}

/// One order on its way into Tryton.
struct Pending {
    key: String,
    order: Order,
    vals: Value,
    expected: Expected,
}

/// What Tryton should report for a sale once created, and the accepted difference to note on it.
#[derive(Clone, Debug)]
struct Expected {
    /// Tryton's `tax_amount` as predicted (the shop's tax, or it plus an accepted difference).
    tax: Decimal,
    /// The shop's total: Tryton's `total_amount` must be it (within `total_tolerance`).
    total: Decimal,
    /// An accepted difference: noted on the sale and reported as the outcome's warning.
    note: Option<String>,
}

// taxes live on the accounting category (account_product): `account_category.customer_taxes_used`
const PRODUCT_FIELDS: &[&str] = &["code", "sale_uom", "default_uom", "account_category.customer_taxes_used", "salable"];

impl Tryton {
    pub(super) async fn order_setup(&self) -> Result<&OrderSetup, ConnectorError> {
        self.order_setup.get_or_try_init(|| self.load_order_setup()).await
    }

    async fn load_order_setup(&self) -> Result<OrderSetup, ConnectorError> {
        let base = self.base().await?.clone();
        let endpoint = self.endpoint();
        let none = Map::new();
        let warehouse = base.warehouses[&self.opts.warehouse];
        let shops = match &self.opts.web_shop {
            Some(name) => self.rpc.search("web.shop", json!([["name", "=", name]]), 0, Some(1), Value::Null, &none).await?,
            None => self.rpc.search("web.shop", json!([["warehouses", "=", warehouse]]), 0, Some(1), json!([["id", "ASC"]]), &none).await?,
        };
        let web_shop = *shops.first().ok_or_else(|| {
            ConnectorError::config(&endpoint, format!("no web.shop {} (web_shop option, or a shop selling from warehouse {})", self.opts.web_shop.as_deref().unwrap_or(""), self.opts.warehouse))
        })?;
        let b2c_party = match self.opts.b2c_party.parse::<i64>() {
            Ok(id) => id,
            Err(_) => *self
                .rpc
                .search("party.party", json!([["name", "=", self.opts.b2c_party]]), 0, Some(1), json!([["id", "ASC"]]), &none)
                .await?
                .first()
                .ok_or_else(|| ConnectorError::config(&endpoint, format!("b2c_party: no party named {:?}", self.opts.b2c_party)))?,
        };
        let mut codes = vec![self.opts.freight_product.clone(), self.opts.discount_product.clone()];
        if let Some(l) = &self.opts.loyalty.product {
            codes.push(l.clone());
        }
        if let Some(a) = &self.opts.adjustment_product {
            codes.push(a.clone());
        }
        let infos = self.product_infos(&codes).await?;
        let get = |option: &str, code: &str| {
            infos.get(code).cloned().ok_or_else(|| ConnectorError::config(&endpoint, format!("{option}: no salable product with code {code:?}")))
        };
        let freight = get("freight_product", &self.opts.freight_product)?;
        let discount = get("discount_product", &self.opts.discount_product)?;
        let loyalty = match &self.opts.loyalty.product {
            Some(code) => get("loyalty.product", code)?,
            None => discount.clone(),
        };
        let adjustment = match &self.opts.adjustment_product {
            Some(code) => get("adjustment_product", code)?,
            None => discount.clone(),
        };
        let rounding = self.tax_rounding().await?;
        let payment_term = match &self.opts.payment_term {
            Some(name) => Some(
                *self
                    .rpc
                    .search("account.invoice.payment_term", json!([["name", "=", name]]), 0, Some(1), Value::Null, &none)
                    .await?
                    .first()
                    .ok_or_else(|| ConnectorError::config(&endpoint, format!("payment_term: no payment term named {name:?}")))?,
            ),
            None => None,
        };
        let pairs = |rows: Vec<Map<String, Value>>| -> HashMap<String, i64> {
            rows.into_iter().filter_map(|r| Some((r.get("code")?.as_str()?.to_owned(), r.get("id")?.as_i64()?))).collect()
        };
        let countries = pairs(self.rpc.search_read("country.country", json!([]), 0, None, Value::Null, &["code"], &none).await?);
        let currencies = pairs(self.rpc.search_read("currency.currency", json!([]), 0, None, Value::Null, &["code"], &none).await?);
        Ok(OrderSetup { web_shop, b2c_party, warehouse, freight, discount, loyalty, adjustment, rounding, payment_term, countries, currencies })
    }

    /// Tryton's tax rounding (`account.configuration` 1, company-dependent), set first when the
    /// `tax_rounding` option asks for `line` or `document` and Tryton has the other.
    async fn tax_rounding(&self) -> Result<TaxRounding, ConnectorError> {
        let none = Map::new();
        let read = |rows: Vec<Map<String, Value>>| match rows.first().and_then(|r| r.get("tax_rounding")).and_then(Value::as_str) {
            Some("line") => Ok(TaxRounding::Line),
            Some("document") | None => Ok(TaxRounding::Document),
            Some(other) => Err(ConnectorError::config(self.endpoint(), format!("account.configuration.tax_rounding is {other:?}: Ferry knows document and line"))),
        };
        let current = read(self.rpc.read("account.configuration", &[1], &["tax_rounding"], &none).await?)?;
        let wanted = match self.opts.tax_rounding {
            TaxRoundingOption::Detect => return Ok(current),
            TaxRoundingOption::Line => TaxRounding::Line,
            TaxRoundingOption::Document => TaxRounding::Document,
        };
        if wanted != current {
            self.rpc.write("account.configuration", &[1], json!({"tax_rounding": wanted.as_str()}), &none).await?;
            tracing::info!(endpoint = %self.endpoint(), rounding = wanted.as_str(), "set Tryton's tax rounding (option tax_rounding)");
        }
        Ok(wanted)
    }

    /// Product code → id, sale unit, customer taxes and their rate; codes Tryton does not know are absent.
    async fn product_infos(&self, codes: &[String]) -> Result<HashMap<String, ProductInfo>, ConnectorError> {
        let none = Map::new();
        let rows = self.rpc.search_read("product.product", json!([["code", "in", codes]]), 0, None, Value::Null, PRODUCT_FIELDS, &none).await?;
        let tax_ids: Vec<i64> = rows.iter().flat_map(|r| super::id_list(dotted(r, "account_category.customer_taxes_used"))).collect::<HashSet<_>>().into_iter().collect();
        let rates: HashMap<i64, Tax> = self
            .rpc
            .read("account.tax", &tax_ids, &["type", "rate", "sequence"], &none)
            .await?
            .into_iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("percentage"))
            .filter_map(|t| {
                let id = t.get("id")?.as_i64()?;
                Some((id, Tax { id, rate: t.get("rate").and_then(as_decimal)?, sequence: t.get("sequence").and_then(Value::as_i64) }))
            })
            .collect();
        let mut out = HashMap::new();
        for r in rows {
            let (Some(code), Some(id)) = (as_text(r.get("code")), r.get("id").and_then(Value::as_i64)) else { continue };
            if !r.get("salable").is_some_and(rpc::as_bool) {
                continue;
            }
            let unit = r.get("sale_uom").and_then(Value::as_i64).or_else(|| r.get("default_uom").and_then(Value::as_i64)).unwrap_or_default();
            let taxes = super::id_list(dotted(&r, "account_category.customer_taxes_used"));
            let tax_rates = taxes.iter().filter_map(|t| rates.get(t).cloned()).collect();
            out.insert(code, ProductInfo { id, unit, taxes, tax_rates });
        }
        Ok(out)
    }

    /// Order number → sale id, for the numbers that exist in Tryton (searched by web shop + web id).
    pub(super) async fn find_orders(&self, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let setup = self.order_setup().await?;
        let mut found = HashMap::new();
        for chunk in keys.chunks(500) {
            let rows = self
                .rpc
                .search_read("sale.sale", json!([["web_shop", "=", setup.web_shop], ["web_id", "in", chunk]]), 0, None, Value::Null, &["web_id"], &Self::all_records())
                .await?;
            for r in rows {
                if let (Some(k), Some(id)) = (as_text(r.get("web_id")), r.get("id").and_then(Value::as_i64)) {
                    found.insert(k, id.to_string());
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn write_orders(&self, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let setup = self.order_setup().await?.clone();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut orders = Vec::new();
        for w in batch {
            match (w.target_id, w.record) {
                // create-once: a sale Ferry already knows is never written again
                (Some(id), _) => outcomes.push(WriteOutcome::ok(w.key, id, WriteAction::Unchanged)),
                (None, Record::Order(o)) => orders.push((w.key, o)),
                (None, other) => outcomes.push(WriteOutcome::failed(w.key, RecordFailure::permanent(None, format!("expected an order, got a {} record", other.stream())))),
            }
        }
        if orders.is_empty() {
            return Ok(outcomes);
        }

        // --- look-ups for the whole batch: products, parties by code and by e-mail, their addresses
        let skus: Vec<String> = orders.iter().flat_map(|(_, o)| o.lines.iter().map(|l| l.sku.clone())).collect::<HashSet<_>>().into_iter().collect();
        let products = self.product_infos(&skus).await?;
        let mut parties = self.match_parties(&orders).await?;

        let mut pending = Vec::new();
        for (key, order) in orders {
            match self.prepare(&key, &order, &setup, &products, &mut parties).await {
                Ok((vals, expected)) => pending.push(Pending { key, order, vals, expected }),
                Err(f) => outcomes.push(WriteOutcome::failed(key, f)),
            }
        }
        if pending.is_empty() {
            return Ok(outcomes);
        }

        // --- create: the whole batch in one call; if Tryton refuses it, one by one to keep outcomes apart
        let mut created: Vec<(Pending, i64)> = Vec::new();
        let all_vals: Vec<Value> = pending.iter().map(|p| p.vals.clone()).collect();
        match self.rpc.create("sale.sale", all_vals, &Map::new()).await {
            Ok(ids) if ids.len() == pending.len() => created.extend(pending.into_iter().zip(ids)),
            Ok(ids) => {
                return Err(ConnectorError::permanent(self.endpoint(), format!("sale.sale.create returned {} ids for {} sales", ids.len(), pending.len())));
            }
            Err(e) if e.is_transient() => {
                // unknown whether Tryton committed: never report as created; the retry finds it by key
                for p in pending {
                    outcomes.push(WriteOutcome::failed(p.key, e.to_record_failure(None)));
                }
                return Ok(outcomes);
            }
            Err(_) => {
                for p in pending {
                    match self.rpc.create("sale.sale", vec![p.vals.clone()], &Map::new()).await {
                        Ok(ids) => created.push((p, ids[0])),
                        Err(e) => outcomes.push(self.create_failure(p, e, &setup).await),
                    }
                }
            }
        }

        // --- Tryton's amounts against the plan: its total is the shop's, its tax the shop's or the accepted one
        let ids: Vec<i64> = created.iter().map(|(_, id)| *id).collect();
        let amounts = super::by_id(self.rpc.read("sale.sale", &ids, &["tax_amount", "untaxed_amount", "total_amount"], &Map::new()).await.map_err(|e| e.to_connector_error())?);
        let mut notes: Vec<Value> = Vec::new();
        let mut keep: Vec<(Pending, i64)> = Vec::new();
        let mut drop_ids = Vec::new();
        for (mut p, id) in created {
            let get = |f: &str| amounts.get(&id).and_then(|r| r.get(f)).and_then(as_decimal).unwrap_or_default();
            let (tax, total) = (get("tax_amount"), get("total_amount"));
            if tax != p.expected.tax || (total - p.expected.total).abs() > self.opts.total_tolerance {
                // Tryton did not compute what the plan predicted (a tax that is not a percentage, say)
                let msg = format!(
                    "Tryton computes tax {tax} and total {total} but the shop charged tax {} and total {} (tax_rounding {}, total_tolerance {})",
                    p.order.totals.tax, p.order.totals.total, setup.rounding.as_str(), self.opts.total_tolerance
                );
                match self.opts.on_tax_mismatch {
                    OnTaxMismatch::Fail => {
                        drop_ids.push(id);
                        let field = if tax != p.expected.tax { "totals.tax" } else { "totals.total" };
                        outcomes.push(WriteOutcome::failed(p.key, RecordFailure::permanent(Some(field.into()), format!("{msg}; sale.sale {id} deleted again"))));
                        continue;
                    }
                    OnTaxMismatch::Note => p.expected.note = Some([p.expected.note.take(), Some(msg)].into_iter().flatten().collect::<Vec<_>>().join("; ")),
                }
            }
            if let Some(n) = &p.expected.note {
                notes.push(json!({"resource": format!("sale.sale,{id}"), "message": format!("Ferry: {n}.")}));
            }
            if self.opts.loyalty.note
                && let Some(l) = &p.order.loyalty
                && (!l.points_used.is_zero() || !l.points_earned.is_zero())
            {
                notes.push(json!({"resource": format!("sale.sale,{id}"),
                    "message": format!("Loyalty: {} points used, {} points earned (shop order {}).", l.points_used.normalize(), l.points_earned.normalize(), p.order.number)}));
            }
            keep.push((p, id));
        }
        if !drop_ids.is_empty() {
            self.rpc.delete("sale.sale", &drop_ids, &Map::new()).await?;
        }
        if !notes.is_empty() {
            self.rpc.create("ir.note", notes, &Map::new()).await?;
        }

        // --- move to the configured state
        let steps: &[&str] = match self.opts.order_state {
            OrderState::Draft => &[],
            OrderState::Quotation => &["quote"],
            OrderState::Confirmed => &["quote", "confirm"],
        };
        let mut live = keep;
        for step in steps {
            let ids: Vec<i64> = live.iter().map(|(_, id)| *id).collect();
            match self.rpc.button("sale.sale", step, &ids, &Map::new()).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(_) => {
                    let mut ok = Vec::new();
                    for (p, id) in live {
                        match self.rpc.button("sale.sale", step, &[id], &Map::new()).await {
                            Ok(_) => ok.push((p, id)),
                            Err(e) => {
                                // leave nothing half-done behind: back to draft and delete
                                let _ = self.rpc.button("sale.sale", "draft", &[id], &Map::new()).await;
                                let _ = self.rpc.delete("sale.sale", &[id], &Map::new()).await;
                                outcomes.push(WriteOutcome::failed(p.key, e.to_record_failure(None)));
                            }
                        }
                    }
                    live = ok;
                }
            }
        }
        for (p, id) in live {
            let warning = p.expected.note.map(|n| format!("order {}: {n}", p.order.number));
            outcomes.push(WriteOutcome::ok(p.key, id.to_string(), WriteAction::Created).with_warning(warning));
        }
        Ok(outcomes)
    }

    /// A single create refused: when the order number already exists (unique web id per shop), the
    /// order is there — report the existing sale; otherwise the failure, permanent or transient.
    async fn create_failure(&self, p: Pending, e: RpcError, setup: &OrderSetup) -> WriteOutcome {
        if !e.is_transient()
            && let Ok(found) = self.find_orders(std::slice::from_ref(&p.order.number)).await
            && let Some(id) = found.get(&p.order.number)
        {
            let _ = setup;
            return WriteOutcome::ok(p.key, id.clone(), WriteAction::Unchanged);
        }
        WriteOutcome::failed(p.key, e.to_record_failure(None))
    }

    /// Parties by code and by e-mail for every buyer of the batch. E-mail matching is opt-in
    /// (`customers.by_email`), for registered shop accounts only unless `customers.match_guests`, and only
    /// against parties that are customers ([`Self::customer_parties`]); an e-mail shared by several
    /// customers matches none.
    async fn match_parties(&self, orders: &[(String, Order)]) -> Result<Parties, ConnectorError> {
        let none = Map::new();
        let mut parties = Parties::default();
        let codes: Vec<&String> = orders.iter().filter_map(|(_, o)| o.customer.code.as_ref()).collect();
        if self.opts.customers.by_code && !codes.is_empty() {
            for r in self.rpc.search_read("party.party", json!([["code", "in", codes]]), 0, None, Value::Null, &["code"], &none).await? {
                if let (Some(c), Some(id)) = (as_text(r.get("code")), r.get("id").and_then(Value::as_i64)) {
                    parties.by_code.insert(c, id);
                }
            }
        }
        let emails: Vec<String> = orders.iter().filter(|(_, o)| email_matchable(&o.customer, &self.opts.customers)).filter_map(|(_, o)| o.customer.email.as_ref()).map(|e| e.to_lowercase()).collect();
        if !emails.is_empty() {
            // e-mail addresses compare case-insensitively: `ilike` with the wildcards escaped
            let mut any: Vec<Value> = vec![json!("OR")];
            any.extend(emails.iter().map(|e| json!(["value", "ilike", e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")])));
            let rows = self
                .rpc
                .search_read("party.contact_mechanism", json!([["type", "=", "email"], any]), 0, None, json!([["id", "ASC"]]), &["value", "party"], &none)
                .await?;
            let found: Vec<(String, i64)> = rows.iter().filter_map(|r| Some((as_text(r.get("value"))?.to_lowercase(), r.get("party").and_then(Value::as_i64)?))).collect();
            let ids: Vec<i64> = found.iter().map(|(_, p)| *p).collect::<HashSet<_>>().into_iter().collect();
            let customers = self.customer_parties(&ids).await?;
            let mut per_email: HashMap<String, HashSet<i64>> = HashMap::new();
            for (email, party) in found {
                if customers.contains_key(&party) {
                    per_email.entry(email).or_default().insert(party);
                }
            }
            for (email, set) in per_email {
                if let [party] = set.into_iter().collect::<Vec<_>>()[..] {
                    parties.by_email.insert(email, party);
                }
            }
            parties.codes = customers;
        }
        Ok(parties)
    }

    /// Which of these parties are customers, with their codes: in `customers.customer_category` when it
    /// is set, else those with a sale that is not cancelled. Tryton 8.2 has no customer/supplier flag (one
    /// party can be both); history is what shows a party buys from the business.
    async fn customer_parties(&self, ids: &[i64]) -> Result<HashMap<i64, Option<String>>, ConnectorError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let none = Map::new();
        let customers: Vec<i64> = match &self.opts.customers.customer_category {
            Some(category) => self.rpc.search("party.party", json!([["id", "in", ids], ["categories.name", "=", category]]), 0, None, Value::Null, &none).await?,
            None => self
                .rpc
                .search_read("sale.sale", json!([["party", "in", ids], ["state", "!=", "cancelled"]]), 0, None, Value::Null, &["party"], &Self::all_records())
                .await?
                .iter()
                .filter_map(|r| r.get("party").and_then(Value::as_i64))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect(),
        };
        Ok(self.rpc.read("party.party", &customers, &["code"], &none).await?.into_iter().filter_map(|r| Some((r.get("id")?.as_i64()?, as_text(r.get("code"))))).collect())
    }

    /// Addresses of a party, for matching the order's.
    async fn party_addresses(&self, party: i64) -> Result<Vec<Map<String, Value>>, RpcError> {
        self.rpc
            .search_read("party.address", json!([["party", "=", party]]), 0, None, json!([["sequence", "ASC"], ["id", "ASC"]]), &["street", "city", "postal_code", "country.code", "invoice", "delivery"], &Map::new())
            .await
    }

    /// The sale's values and the amounts Tryton must then report, or why this order cannot become one.
    async fn prepare(&self, key: &str, o: &Order, setup: &OrderSetup, products: &HashMap<String, ProductInfo>, parties: &mut Parties) -> Result<(Value, Expected), RecordFailure> {
        let rpc_fail = |field: &str| {
            let field = field.to_owned();
            move |e: RpcError| e.to_record_failure(Some(field))
        };
        // lines first: an unknown SKU must fail before anything (a party, an address) is created
        let mut line_products = Vec::with_capacity(o.lines.len());
        for (i, l) in o.lines.iter().enumerate() {
            let Some(p) = products.get(&l.sku) else {
                return Err(RecordFailure::permanent(Some(format!("lines[{i}].sku")), format!("order {key}: no salable product with code {:?} in Tryton", l.sku)));
            };
            line_products.push(p);
        }
        let (lines, expected) = self.sale_lines(o, setup, &line_products)?;
        let currency = *setup.currencies.get(o.currency.code()).ok_or_else(|| RecordFailure::permanent(Some("currency".into()), format!("currency {} is not set up in Tryton", o.currency)))?;

        // the party: code, then e-mail, then created (if allowed), else the B2C party
        let c = &o.customer;
        let by_code = c.code.as_ref().and_then(|code| parties.by_code.get(code).map(|p| (*p, format!("customer {code} (matched by code)"))));
        let by_email = || {
            let p = *parties.by_email.get(&c.email.as_ref()?.to_lowercase())?;
            let code = parties.codes.get(&p).cloned().flatten().unwrap_or_else(|| format!("party id {p}"));
            Some((p, format!("customer {code} (matched by e-mail)")))
        };
        let matched = by_code.or_else(by_email);
        let party = match &matched {
            Some((p, _)) => *p,
            None if self.opts.customers.create_customers && (c.email.is_some() || c.code.is_some()) => self.create_party(o).await.map_err(rpc_fail("customer"))?,
            None => setup.b2c_party,
        };
        // a party's addresses and payment term are read once per batch (many web orders share the B2C party)
        let info = match parties.known.entry(party) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let addresses = self.party_addresses(party).await.map_err(rpc_fail("customer"))?;
                let payment_term = self.party_payment_term(party).await.map_err(rpc_fail("customer"))?;
                e.insert(PartyInfo { addresses, payment_term })
            }
        };
        let party_term = info.payment_term;
        let existing = &mut info.addresses;
        let invoice_address = self.address_for(party, existing, o.billing_address.as_ref(), true, setup, &o.customer).await?;
        let shipment_address = match &o.shipping_address {
            Some(_) => self.address_for(party, existing, o.shipping_address.as_ref(), false, setup, &o.customer).await?,
            None => invoice_address,
        };
        let mut comment = Vec::new();
        if let Some(n) = &o.notes {
            comment.push(n.clone());
        }
        if !o.coupons.is_empty() {
            comment.push(format!("Coupons: {}", o.coupons.join(", ")));
        }
        let mut vals = json!({
            "party": party,
            "invoice_address": invoice_address,
            "shipment_address": shipment_address,
            "web_shop": setup.web_shop,
            "web_id": o.number,
            "reference": o.number,
            "description": format!("Web order {}", o.number),
            "sale_date": rpc::date(super::dates::local_date(o.placed_at, self.tz)),
            "currency": currency,
            "warehouse": setup.warehouse,
            "lines": [["create", lines]],
        });
        if let Some(pt) = party_term.or(setup.payment_term) {
            vals["payment_term"] = json!(pt);
        }
        if !comment.is_empty() {
            vals["comment"] = json!(comment.join("\n"));
        }
        if let Some(r) = &o.customer_reference {
            vals["description"] = json!(format!("Web order {} (customer ref. {r})", o.number));
        }
        // which existing customer the order was booked to, and why, stays on the sale for a person to check
        if let Some((_, how)) = &matched {
            vals["description"] = json!(format!("{}; {how}", vals["description"].as_str().unwrap_or_default()));
        }
        Ok((vals, expected))
    }

    /// The sale lines, priced so Tryton's amounts agree with the shop's (amounts.rs), and what Tryton
    /// must report for them; a tax difference beyond `tax_tolerance` under `on_tax_mismatch = fail` fails
    /// the order before anything is created.
    fn sale_lines(&self, o: &Order, setup: &OrderSetup, line_products: &[&ProductInfo]) -> Result<(Vec<Value>, Expected), RecordFailure> {
        let discount_product = |k: DiscountKind| if k == DiscountKind::Loyalty { &setup.loyalty } else { &setup.discount };
        let line_taxes: Vec<Vec<Tax>> = line_products.iter().map(|p| p.tax_rates.clone()).collect();
        let discount_taxes: Vec<Vec<Tax>> = o.discounts.iter().map(|d| discount_product(d.kind).tax_rates.clone()).collect();
        let in_price = self.opts.line_discounts == LineDiscounts::InPrice;
        let wanted = amounts::wanted_lines(o, &line_taxes, &setup.freight.tax_rates, &discount_taxes, in_price);
        let plan = amounts::plan(&wanted.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(), o.totals.tax, o.totals.total, setup.rounding, o.currency.minor_units());
        let mut lines = Vec::with_capacity(wanted.len() + 1);
        for ((part, w), unit_price) in wanted.iter().zip(&plan.unit_prices) {
            lines.push(match *part {
                Part::Line(i) => {
                    let l = &o.lines[i];
                    let desc = match (&l.name, in_price && !l.discount.is_zero()) {
                        (name, true) => Some(format!("{} (discount {} included)", name.as_deref().unwrap_or(&l.sku), l.discount.normalize())),
                        (name, false) => name.clone(),
                    };
                    line(line_products[i], w.quantity, *unit_price, desc.as_deref())
                }
                Part::LineDiscount(i) => {
                    let mut v = line(&setup.discount, w.quantity, *unit_price, Some(&format!("Discount on {}", o.lines[i].sku)));
                    v["taxes"] = json!([["add", line_products[i].taxes]]); // the discounted line's taxes
                    v
                }
                Part::Shipping(i) => {
                    let s = &o.shipping[i];
                    let desc = match &s.carrier {
                        Some(c) => format!("{} ({c})", s.method),
                        None => s.method.clone(),
                    };
                    line(&setup.freight, w.quantity, *unit_price, Some(&desc))
                }
                Part::Discount(i) => {
                    let d = &o.discounts[i];
                    let desc = [Some(format!("{:?}", d.kind).to_lowercase()), d.code.clone(), d.description.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ");
                    line(discount_product(d.kind), w.quantity, *unit_price, Some(&desc))
                }
            });
        }
        let diff = plan.tax_difference;
        let mut note = None;
        if !diff.is_zero() {
            let msg = format!(
                "Tryton computes tax {} (rounding per {}) but the shop charged {} (difference {diff})",
                plan.amounts.tax,
                setup.rounding.as_str(),
                o.totals.tax
            );
            if diff.abs() > self.opts.tax_tolerance && self.opts.on_tax_mismatch == OnTaxMismatch::Fail {
                let hint = if setup.rounding == TaxRounding::Document { "; tax_rounding = \"line\" makes Tryton round per line as shops do" } else { "" };
                return Err(RecordFailure::permanent(Some("totals.tax".into()), format!("{msg}, more than tax_tolerance {}; no sale created{hint}", self.opts.tax_tolerance)));
            }
            note = Some(msg);
        }
        if !plan.adjustment.is_zero() {
            let mut v = line(&setup.adjustment, Decimal::ONE, plan.adjustment, Some(&format!("Rounding to the shop's total of order {}", o.number)));
            v.as_object_mut().expect("a line is an object").remove("taxes"); // tax-free
            lines.push(v);
            let msg = format!("a tax-free line of {} makes the sale's total the shop's {}", plan.adjustment, o.totals.total);
            note = Some(match note {
                Some(n) => format!("{n}; {msg}"),
                None => msg,
            });
        }
        Ok((lines, Expected { tax: plan.amounts.tax, total: o.totals.total, note }))
    }

    async fn party_payment_term(&self, party: i64) -> Result<Option<i64>, RpcError> {
        let rows = self.rpc.read("party.party", &[party], &["customer_payment_term"], &Map::new()).await?;
        Ok(rows.first().and_then(|r| r.get("customer_payment_term")).and_then(Value::as_i64))
    }

    async fn create_party(&self, o: &Order) -> Result<i64, RpcError> {
        let c = &o.customer;
        let person = [c.first_name.as_deref(), c.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let name = c.company.clone().or((!person.is_empty()).then_some(person)).or(c.email.clone()).unwrap_or_else(|| format!("Web customer {}", o.number));
        let mut mechs = Vec::new();
        if let Some(e) = &c.email {
            mechs.push(json!({"type": "email", "value": e}));
        }
        if let Some(p) = &c.phone {
            mechs.push(json!({"type": "phone", "value": p}));
        }
        let mut vals = json!({"name": name, "contact_mechanisms": [["create", mechs]]});
        if let Some(code) = &c.code {
            vals["code"] = json!(code);
        }
        // Without a code Tryton numbers the party from a sequence; on SQLite two concurrent creates can
        // draw the same number and one is refused as not unique: drawing again is safe.
        let mut attempt = 0;
        loop {
            match self.rpc.create("party.party", vec![vals.clone()], &Map::new()).await {
                Ok(ids) => return Ok(ids[0]),
                Err(e) if c.code.is_none() && attempt < 3 && e.message.contains("must be unique") => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The party's address equal to the order's (street, postcode, city, country), created when missing.
    async fn address_for(&self, party: i64, existing: &mut Vec<Map<String, Value>>, addr: Option<&Address>, invoice: bool, setup: &OrderSetup, buyer: &ferry_model::OrderCustomer) -> Result<i64, RecordFailure> {
        let field = if invoice { "billing_address" } else { "shipping_address" };
        let flag = if invoice { "invoice" } else { "delivery" };
        let Some(a) = addr else {
            // no address on the order: the party's flagged one, else its first
            return existing
                .iter()
                .find(|r| r.get(flag).is_some_and(rpc::as_bool))
                .or(existing.first())
                .and_then(|r| r.get("id").and_then(Value::as_i64))
                .ok_or_else(|| RecordFailure::permanent(Some(field.into()), "the order has no address and the Tryton party has none"));
        };
        let street = a.street.join("\n");
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let found = existing.iter().find(|r| {
            norm(&as_text(r.get("street")).unwrap_or_default()) == norm(&street)
                && norm(&as_text(r.get("postal_code")).unwrap_or_default()) == norm(a.postcode.as_deref().unwrap_or(""))
                && norm(&as_text(r.get("city")).unwrap_or_default()) == norm(a.city.as_deref().unwrap_or(""))
                && as_text(dotted(r, "country.code")) == a.country
        });
        if let Some(id) = found.and_then(|r| r.get("id").and_then(Value::as_i64)) {
            return Ok(id);
        }
        let mut vals = json!({"party": party, "street": street, "invoice": invoice, "delivery": !invoice});
        let person = [buyer.first_name.as_deref(), buyer.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
        if let Some(n) = a.name.clone().or((!person.is_empty()).then_some(person)) {
            vals["party_name"] = json!(n);
        }
        if let Some(c) = &a.city {
            vals["city"] = json!(c);
        }
        if let Some(p) = &a.postcode {
            vals["postal_code"] = json!(p);
        }
        if let Some(country) = &a.country {
            let id = setup.countries.get(country).ok_or_else(|| RecordFailure::permanent(Some(format!("{field}.country")), format!("country {country} is not set up in Tryton")))?;
            vals["country"] = json!(id);
        }
        let ids = self.rpc.create("party.address", vec![vals.clone()], &Map::new()).await.map_err(|e| e.to_record_failure(Some(field.into())))?;
        // remember it as read back, so the next order of the batch with this address reuses it
        let mut row = vals.as_object().cloned().unwrap_or_default();
        row.insert("id".into(), json!(ids[0]));
        if let Some(c) = &a.country {
            row.insert("country.".into(), json!({"code": c}));
        }
        existing.push(row);
        Ok(ids[0])
    }
}

#[derive(Default)]
struct Parties {
    by_code: HashMap<String, i64>,
    by_email: HashMap<String, i64>,
    /// customer party id → its code (for the parties e-mails matched)
    codes: HashMap<i64, Option<String>>,
    /// party id → its addresses and customer payment term, read once per batch
    known: HashMap<i64, PartyInfo>,
}

struct PartyInfo {
    addresses: Vec<Map<String, Value>>,
    payment_term: Option<i64>,
}

/// Whether this buyer may be matched to an existing party by e-mail: opted in, and a registered shop
/// account (the shop verified the address) unless guests are allowed too.
fn email_matchable(c: &ferry_model::OrderCustomer, m: &super::CustomerMatching) -> bool {
    m.by_email && c.email.is_some() && (c.guest == Some(false) || m.match_guests)
}

/// A sale line of `product` with its customer taxes.
fn line(p: &ProductInfo, quantity: Decimal, unit_price: Decimal, description: Option<&str>) -> Value {
    let mut v = json!({
        "type": "line",
        "product": p.id,
        "quantity": number(quantity),
        "unit": p.unit,
        "unit_price": dec(unit_price),
        "taxes": [["add", p.taxes]],
    });
    if let Some(d) = description {
        v["description"] = json!(d);
    }
    v
}

/// A quantity for a Float field: an exact JSON number (serde_json keeps the digits).
fn number(d: Decimal) -> Value {
    Value::from_str(&d.normalize().to_string()).unwrap_or(json!(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_buyers_are_matched_by_email_and_only_when_asked() {
        let buyer = |guest: Option<bool>| ferry_model::OrderCustomer { email: Some("jo@example.com".into()), guest, ..Default::default() };
        let default = super::super::CustomerMatching::default();
        assert!(!email_matchable(&buyer(Some(false)), &default), "opt-in");
        let on = super::super::CustomerMatching { by_email: true, ..Default::default() };
        assert!(email_matchable(&buyer(Some(false)), &on));
        assert!(!email_matchable(&buyer(Some(true)), &on), "a guest's e-mail is unverified");
        assert!(!email_matchable(&buyer(None), &on), "unknown counts as a guest");
        let guests = super::super::CustomerMatching { by_email: true, match_guests: true, ..Default::default() };
        assert!(email_matchable(&buyer(Some(true)), &guests) && email_matchable(&buyer(None), &guests));
        assert!(!email_matchable(&ferry_model::OrderCustomer { guest: Some(false), ..Default::default() }, &on), "no e-mail, nothing to match");
    }

    #[test]
    fn quantities_are_exact_json_numbers() {
        assert_eq!(number(Decimal::from_str("2.50").unwrap()).to_string(), "2.5");
        assert_eq!(number(Decimal::from(3)).to_string(), "3");
    }
}
