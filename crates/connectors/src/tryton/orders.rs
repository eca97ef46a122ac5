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
//! to the configured state. A transport failure never reports an order as created. Sales found again
//! (after a crash or a lost answer) are resumed from the state they are in, and orders cancelled or
//! edited after import are applied to their sale where its state allows (sale_state.rs).

use super::amounts::{self, Part, Tax, TaxRounding};
use super::rpc::{self, RpcError, as_decimal, as_text, dec, dotted};
use super::sale_state::{SALE_FIELDS, SaleState, content_changes, describe_changes};
use super::{LineDiscounts, OnTaxMismatch, Options, TaxRoundingOption, Tryton};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Address, DiscountKind, Order, OrderStatus, Record};
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
pub(super) struct Expected {
    /// Tryton's `tax_amount` as predicted (the shop's tax, or it plus an accepted difference).
    pub tax: Decimal,
    /// The shop's total: Tryton's `total_amount` must be it (within `total_tolerance`).
    pub total: Decimal,
    /// An accepted difference: noted on the sale and reported as the outcome's warning.
    pub note: Option<String>,
}

/// A draft sale or invoice whose amounts Tryton just computed, to hold against the shop's.
pub(super) struct Draft<'a> {
    /// `sale.sale,7` or `account.invoice,7`.
    pub resource: &'a str,
    pub order: &'a Order,
    /// What the price planning predicted; `None` for a draft resumed from an earlier attempt.
    pub expected: Option<&'a Expected>,
    /// Tryton already held the draft before this attempt (it is left in draft, not deleted, on a mismatch).
    pub imported: bool,
    /// An earlier attempt already noted an accepted difference on it.
    pub noted: bool,
}

/// Whether Tryton's `tax` and `total` of a draft agree with the shop's: `Ok` with the note to keep (an
/// accepted difference), or the failure `on_tax_mismatch = "fail"` asks for, naming `totals.tax` or
/// `totals.total`.
pub(super) fn amounts_verdict(opts: &Options, rounding: TaxRounding, d: &Draft, tax: Decimal, total: Decimal) -> Result<Option<String>, RecordFailure> {
    let (want_tax, want_total, planned_note) = match d.expected {
        Some(e) => (e.tax, e.total, e.note.clone()),
        None => (d.order.totals.tax, d.order.totals.total, None),
    };
    let total_off = (total - want_total).abs() > opts.total_tolerance;
    // a resumed draft whose difference an earlier attempt accepted (and noted) keeps it
    let tax_off = tax != want_tax && !(d.expected.is_none() && d.noted && (tax - want_tax).abs() <= opts.tax_tolerance);
    if !tax_off && !total_off {
        return Ok(planned_note);
    }
    let (model, id) = d.resource.split_once(',').unwrap_or((d.resource, ""));
    let msg = format!(
        "Tryton computes tax {tax} and total {total} on {model} {id} but the shop charged tax {} and total {} (tax_rounding {}, total_tolerance {})",
        d.order.totals.tax,
        d.order.totals.total,
        rounding.as_str(),
        opts.total_tolerance
    );
    match opts.on_tax_mismatch {
        OnTaxMismatch::Fail => {
            let field = if tax_off { "totals.tax" } else { "totals.total" };
            let tail = if d.imported { "left in draft" } else { "deleted again" };
            Err(RecordFailure::permanent(Some(field.into()), format!("{msg}; {model} {id} {tail}")))
        }
        OnTaxMismatch::Note => Ok(Some([planned_note, Some(msg)].into_iter().flatten().collect::<Vec<_>>().join("; "))),
    }
}

/// An order whose sale Tryton has (from the cross-reference, or found by its web id).
struct Existing {
    key: String,
    order: Order,
    id: i64,
    /// What Tryton last received, when Ferry knows (`None`: found after an interrupted write).
    previous: Option<Value>,
}

/// An editable sale to rewrite with its order's new values.
struct Rewrite {
    key: String,
    order: Order,
    id: i64,
    state: SaleState,
    /// The sale's current lines, replaced by the order's.
    lines: Vec<i64>,
}

/// A sale to take on to the configured state.
struct Advance {
    key: String,
    order: Order,
    id: i64,
    state: SaleState,
    /// The outcome when the sale is at its end state already / when Ferry moved it.
    done: WriteAction,
    moved: WriteAction,
    /// Tryton had this sale as the order's before this call (never deleted when a step fails).
    imported: bool,
    /// The amounts plan of a sale written in this call (none for a sale found as it was).
    expected: Option<Expected>,
}

/// What a batch's known sales need.
#[derive(Default)]
struct Plan {
    cancel: Vec<(Existing, SaleState)>,
    rewrite: Vec<Rewrite>,
    advance: Vec<Advance>,
    /// Imported orders with refunds to book: (key, order, sale id).
    refunds: Vec<(String, Order, i64)>,
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
    pub(super) async fn product_infos(&self, codes: &[String]) -> Result<HashMap<String, ProductInfo>, ConnectorError> {
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

    /// Writes a batch of orders. New ones are created as sales and moved on to the configured state. Sales
    /// found by key or known already are resumed, cancelled or rewritten as the order and the sale's state
    /// call for (sale_state.rs). A transient failure once Tryton may have acted ends the call as a whole:
    /// the engine then finds what exists and resumes it, so nothing is created twice or left behind.
    pub(super) async fn write_orders(&self, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let setup = self.order_setup().await?.clone();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut new_orders = Vec::new();
        let mut existing = Vec::new();
        for w in batch {
            match (w.target_id, w.record) {
                (None, Record::Order(o)) => new_orders.push((w.key, o)),
                (Some(id), Record::Order(order)) => match id.parse::<i64>() {
                    Ok(id) => existing.push(Existing { key: w.key, order, id, previous: w.previous }),
                    Err(_) => outcomes.push(WriteOutcome::failed(w.key, RecordFailure::permanent(None, format!("target id {id:?} is not a sale.sale id")))),
                },
                (_, other) => outcomes.push(WriteOutcome::failed(w.key, RecordFailure::permanent(None, format!("expected an order, got a {} record", other.stream())))),
            }
        }

        // --- sales Tryton has already: where they stand decides what the order's news mean
        let mut plan = Plan::default();
        self.place_existing(existing, &mut plan, &mut outcomes).await?;
        self.cancel_sales(std::mem::take(&mut plan.cancel), &mut outcomes).await?;

        // --- new sales and rewritten ones: look-ups for the whole batch, then each sale's values
        let rewrites = std::mem::take(&mut plan.rewrite);
        let mut all: Vec<(String, Order)> = new_orders.clone();
        all.extend(rewrites.iter().map(|e| (e.key.clone(), e.order.clone())));
        if !all.is_empty() {
            let skus: Vec<String> = all.iter().flat_map(|(_, o)| o.lines.iter().map(|l| l.sku.clone())).collect::<HashSet<_>>().into_iter().collect();
            let products = self.product_infos(&skus).await?;
            let mut parties = self.match_parties(&all).await?;
            let mut pending = Vec::new();
            for (key, order) in new_orders {
                match self.prepare(&key, &order, &setup, &products, &mut parties).await {
                    Ok((vals, expected)) => pending.push(Pending { key, order, vals, expected }),
                    Err(f) => outcomes.push(WriteOutcome::failed(key, f)),
                }
            }
            self.create_sales(pending, &mut plan, &mut outcomes).await?;
            for e in rewrites {
                match self.prepare(&e.key, &e.order, &setup, &products, &mut parties).await {
                    Ok((vals, expected)) => self.rewrite_sale(e, vals, expected, &mut plan, &mut outcomes).await?,
                    Err(f) => outcomes.push(WriteOutcome::failed(e.key, f)),
                }
            }
        }

        // --- every sale in play: amounts checked while in draft, then on to the configured state
        self.advance(plan.advance, &mut outcomes).await?;
        self.book_new_refunds(plan.refunds, &mut outcomes).await;
        Ok(outcomes)
    }

    /// Refunds of imported orders, once their sale is where it should be: booked once per shop refund id
    /// (refunds.rs). The order's outcome says so: `updated` when something was booked, the failure when
    /// booking failed (the sale itself stays as it is).
    async fn book_new_refunds(&self, refunds: Vec<(String, Order, i64)>, outcomes: &mut [WriteOutcome]) {
        for (key, order, sale) in refunds {
            let Some(outcome) = outcomes.iter_mut().find(|o| o.key == key && o.result.is_ok()) else { continue };
            match self.book_refunds(&order, sale).await {
                Ok(booked) => {
                    if let Ok(w) = &mut outcome.result {
                        if booked.booked > 0 && matches!(w.action, WriteAction::Unchanged) {
                            w.action = WriteAction::Updated;
                        }
                        if !booked.warnings.is_empty() {
                            let all = [w.warning.take()].into_iter().flatten().chain(booked.warnings).collect::<Vec<_>>().join("; ");
                            w.warning = Some(all);
                        }
                    }
                }
                Err(f) => outcome.result = Err(f),
            }
        }
    }

    /// Reads the known sales' states and sorts each order: cancel, rewrite, resume, or fail with what a
    /// person must do.
    async fn place_existing(&self, existing: Vec<Existing>, plan: &mut Plan, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if existing.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = existing.iter().map(|e| e.id).collect();
        let rows = super::by_id(self.rpc.read("sale.sale", &ids, SALE_FIELDS, &Self::all_records()).await?);
        for e in existing {
            let number = e.order.number.clone();
            let Some(state) = rows.get(&e.id).and_then(SaleState::parse) else {
                let msg = format!("sale.sale {} of order {number} is no longer in Tryton (deleted there?): not created again; check the sale and drop or replay this record", e.id);
                outcomes.push(WriteOutcome::failed(e.key, RecordFailure::permanent(None, msg)));
                continue;
            };
            if e.order.status == OrderStatus::Cancelled {
                match state {
                    SaleState::Cancelled => outcomes.push(WriteOutcome::ok(e.key, e.id.to_string(), WriteAction::Unchanged)),
                    s => plan.cancel.push((e, s)),
                }
                continue;
            }
            let changes = match &e.previous {
                Some(previous) => content_changes(previous, &serde_json::to_value(&e.order).unwrap_or_default()),
                None => Vec::new(),
            };
            if !changes.is_empty() {
                if state.is_editable() {
                    plan.rewrite.push(Rewrite { key: e.key, order: e.order, id: e.id, state, lines: super::id_list(rows.get(&e.id).and_then(|r| r.get("lines"))) });
                } else {
                    let msg = format!(
                        "order {number} changed in the shop after Tryton began processing sale.sale {} ({}): {}",
                        e.id,
                        state.name(),
                        describe_changes(&changes)
                    );
                    outcomes.push(WriteOutcome::failed(e.key, RecordFailure::permanent(changes.first().map(|c| c.path.clone()), msg)));
                }
                continue;
            }
            // Refunds not seen before (or a sale found without what it had) are booked once the sale is at its
            // end state; a sale cancelled in Tryton was never invoiced, so it needs no credit note.
            let refunds_changed = match &e.previous {
                Some(previous) => previous.get("refunds") != serde_json::to_value(&e.order.refunds).ok().filter(|r| r.as_array().is_some_and(|a| !a.is_empty())).as_ref(),
                None => !e.order.refunds.is_empty(),
            };
            if refunds_changed && !e.order.refunds.is_empty() && state != SaleState::Cancelled {
                plan.refunds.push((e.key.clone(), e.order.clone(), e.id));
            }
            // Found after an interrupted write (no `previous`), or known with no change to the sale: carried on
            // to the configured state if it is behind (checked again if still in draft).
            let done = if e.previous.is_none() { WriteAction::Resumed } else { WriteAction::Unchanged };
            plan.advance.push(Advance { key: e.key, order: e.order, id: e.id, state, done, moved: WriteAction::Resumed, imported: e.previous.is_some(), expected: None });
        }
        Ok(())
    }

    /// Cancels sales whose order was cancelled in the shop: a confirmed sale goes back to draft first.
    async fn cancel_sales(&self, cancel: Vec<(Existing, SaleState)>, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        for (e, state) in cancel {
            if !state.is_editable() {
                let outcome = match self.cancel_processing(e.id, &e.order.number, state).await? {
                    Ok(action) => WriteOutcome::ok(e.key, e.id.to_string(), action),
                    Err(f) => WriteOutcome::failed(e.key, f),
                };
                outcomes.push(outcome);
                continue;
            }
            let steps: &[&str] = if state == SaleState::Confirmed { &["draft", "cancel"] } else { &["cancel"] };
            let mut failed = None;
            for step in steps {
                match self.rpc.button("sale.sale", step, &[e.id], &Map::new()).await {
                    Ok(_) => {}
                    Err(err) if err.is_transient() => return Err(err.to_connector_error()),
                    Err(err) => {
                        failed = Some(err.to_record_failure(Some("status".into())));
                        break;
                    }
                }
            }
            outcomes.push(match failed {
                None => WriteOutcome::ok(e.key, e.id.to_string(), WriteAction::Updated),
                Some(f) => WriteOutcome::failed(e.key, f),
            });
        }
        Ok(())
    }

    /// Tryton has no cancel for a sale it is processing. While nothing has left the warehouse and no
    /// invoice is validated, Ferry cancels the sale's shipments and draft invoices and tells Tryton's
    /// exception wizards to ignore them, so the sale completes with nothing delivered or invoiced, and notes
    /// why on it. Once goods or an invoice went out, the order needs a return or credit note: the record
    /// fails with what was found.
    /// A sale found `done` with nothing delivered or invoiced was settled so already (by an earlier run whose
    /// state Ferry lost): `unchanged`.
    async fn cancel_processing(&self, id: i64, number: &str, state: SaleState) -> Result<Result<WriteAction, RecordFailure>, ConnectorError> {
        let none = Map::new();
        let sale = self.rpc.read("sale.sale", &[id], &["shipments", "invoices", "moves"], &Self::all_records()).await?;
        let field = |f: &str| super::id_list(sale.first().and_then(|r| r.get(f)));
        let states = |rows: Vec<Map<String, Value>>| -> Vec<(i64, String)> {
            rows.into_iter().filter_map(|r| Some((r.get("id")?.as_i64()?, as_text(r.get("state"))?))).collect()
        };
        let (shipments, invoices, moves) = (field("shipments"), field("invoices"), field("moves"));
        let shipments = if shipments.is_empty() { vec![] } else { states(self.rpc.read("stock.shipment.out", &shipments, &["state"], &none).await?) };
        let invoices = if invoices.is_empty() { vec![] } else { states(self.rpc.read("account.invoice", &invoices, &["state"], &none).await?) };
        let mut started: Vec<String> = shipments
            .iter()
            .filter(|(_, s)| !matches!(s.as_str(), "draft" | "waiting" | "assigned" | "cancelled"))
            .map(|(i, s)| format!("shipment {i} is {s}"))
            .collect();
        started.extend(invoices.iter().filter(|(_, s)| !matches!(s.as_str(), "draft" | "cancelled")).map(|(i, s)| format!("invoice {i} is {s}")));
        if !started.is_empty() {
            let msg = format!(
                "order {number} was cancelled in the shop after Tryton began fulfilling it (sale.sale {id}: {}): it needs a return or credit note in Tryton",
                started.join(", ")
            );
            return Ok(Err(RecordFailure::permanent(Some("status".into()), msg)));
        }
        if state == SaleState::Done {
            return Ok(Ok(WriteAction::Unchanged));
        }
        let open = |rows: &[(i64, String)]| -> Vec<i64> { rows.iter().filter(|(_, s)| s != "cancelled").map(|(i, _)| *i).collect() };
        let step = |r: Result<Value, RpcError>| -> Result<Result<WriteAction, RecordFailure>, ConnectorError> {
            match r {
                Ok(_) => Ok(Ok(WriteAction::Updated)),
                Err(e) if e.is_transient() => Err(e.to_connector_error()),
                Err(e) => Ok(Err(e.to_record_failure(Some("status".into())))),
            }
        };
        for (model, ids) in [("stock.shipment.out", open(&shipments)), ("account.invoice", open(&invoices))] {
            if !ids.is_empty()
                && let Err(f) = step(self.rpc.button(model, "cancel", &ids, &none).await)?
            {
                return Ok(Err(f));
            }
        }
        // Tryton's own way to settle a sale whose moves and invoices were cancelled: ignore them.
        let mut context = Map::new();
        context.insert("active_model".into(), json!("sale.sale"));
        context.insert("active_id".into(), json!(id));
        context.insert("active_ids".into(), json!([id]));
        let cancelled_moves: Vec<i64> = if moves.is_empty() {
            vec![]
        } else {
            states(self.rpc.read("stock.move", &moves, &["state"], &none).await?).into_iter().filter(|(_, s)| s == "cancelled").map(|(i, _)| i).collect()
        };
        let invoice_ids: Vec<i64> = invoices.iter().map(|(i, _)| *i).collect();
        let wizards = [
            ("sale.handle.shipment.exception", cancelled_moves, "moves"),
            ("sale.handle.invoice.exception", invoice_ids, "invoices"),
        ];
        for (wizard, ids, what) in wizards {
            if ids.is_empty() {
                continue;
            }
            let ask = json!({"ask": {format!("recreate_{what}"): [], format!("ignore_{what}"): ids, format!("domain_{what}"): ids}});
            if let Err(f) = step(self.rpc.wizard(wizard, &[("handle", ask)], &context).await.map(|()| Value::Null))? {
                return Ok(Err(f));
            }
        }
        // once, also when an earlier attempt got this far and died
        let resource = format!("sale.sale,{id}");
        let noted = self.rpc.search("ir.note", json!([["resource", "=", resource], ["message", "like", "Ferry: order % was cancelled in the shop%"]]), 0, Some(1), Value::Null, &none).await?;
        if !noted.is_empty() {
            return Ok(Ok(WriteAction::Updated));
        }
        let note = json!({"resource": resource, "message": format!("Ferry: order {number} was cancelled in the shop; its shipment and invoice were cancelled in Tryton.")});
        step(self.rpc.create("ir.note", vec![note], &none).await.map(|_| Value::Null))
    }

    /// Creates the new sales (the batch in one call; one by one if Tryton refuses it, to keep outcomes
    /// apart). A sale refused because its web id exists already is found and resumed instead.
    async fn create_sales(&self, pending: Vec<Pending>, plan: &mut Plan, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if pending.is_empty() {
            return Ok(());
        }
        let all_vals: Vec<Value> = pending.iter().map(|p| p.vals.clone()).collect();
        let created: Vec<(Pending, i64)> = match self.rpc.create("sale.sale", all_vals, &Map::new()).await {
            Ok(ids) if ids.len() == pending.len() => pending.into_iter().zip(ids).collect(),
            Ok(ids) => {
                return Err(ConnectorError::permanent(self.endpoint(), format!("sale.sale.create returned {} ids for {} sales", ids.len(), pending.len())));
            }
            // Unknown whether Tryton committed: the engine finds the sales by key before trying again.
            Err(e) if e.is_transient() => return Err(e.to_connector_error()),
            Err(_) => {
                let mut created = Vec::new();
                for p in pending {
                    match self.rpc.create("sale.sale", vec![p.vals.clone()], &Map::new()).await {
                        Ok(ids) => match ids.first() {
                            Some(&id) => created.push((p, id)),
                            None => outcomes.push(WriteOutcome::failed(p.key, RecordFailure::transient("sale.sale.create answered no id"))),
                        },
                        Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                        Err(e) => match self.find_orders(std::slice::from_ref(&p.order.number)).await?.get(&p.order.number).and_then(|id| id.parse::<i64>().ok()) {
                            // the web id is taken: an earlier attempt created it; carry that sale on
                            Some(id) => {
                                let rows = self.rpc.read("sale.sale", &[id], SALE_FIELDS, &Self::all_records()).await?;
                                let state = rows.first().and_then(SaleState::parse).unwrap_or(SaleState::Draft);
                                plan.advance.push(Advance { key: p.key, order: p.order, id, state, done: WriteAction::Resumed, moved: WriteAction::Resumed, imported: false, expected: None });
                            }
                            None => outcomes.push(WriteOutcome::failed(p.key, e.to_record_failure(None))),
                        },
                    }
                }
                created
            }
        };
        for (p, id) in created {
            plan.advance.push(Advance { key: p.key, order: p.order, id, state: SaleState::Draft, done: WriteAction::Created, moved: WriteAction::Created, imported: false, expected: Some(p.expected) });
        }
        Ok(())
    }

    /// Rewrites an editable sale with the order's new values (back to draft first), then lets it be moved
    /// on again.
    async fn rewrite_sale(&self, r: Rewrite, mut vals: Value, expected: Expected, plan: &mut Plan, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if r.state != SaleState::Draft {
            match self.rpc.button("sale.sale", "draft", &[r.id], &Map::new()).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(e) => {
                    outcomes.push(WriteOutcome::failed(r.key, e.to_record_failure(None)));
                    return Ok(());
                }
            }
        }
        if let Some(lines) = vals.get("lines").and_then(|l| l.pointer("/0/1")).cloned() {
            vals["lines"] = json!([["delete", r.lines], ["create", lines]]);
        }
        if let Some(map) = vals.as_object_mut() {
            // the sale's identity stays as it is
            map.remove("web_shop");
            map.remove("web_id");
        }
        match self.rpc.write("sale.sale", &[r.id], vals, &Map::new()).await {
            Ok(()) => plan.advance.push(Advance { key: r.key, order: r.order, id: r.id, state: SaleState::Draft, done: WriteAction::Updated, moved: WriteAction::Updated, imported: true, expected: Some(expected) }),
            Err(e) if e.is_transient() => return Err(e.to_connector_error()),
            Err(e) => outcomes.push(WriteOutcome::failed(r.key, e.to_record_failure(None))),
        }
        Ok(())
    }

    /// Checks the amounts of sales still in draft, then presses the buttons that take every sale to the
    /// configured state. A sale that was never imported and cannot get there is deleted again (nothing
    /// half-done is left behind); an imported one is left as it is and its order fails with Tryton's reason.
    async fn advance(&self, items: Vec<Advance>, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if items.is_empty() {
            return Ok(());
        }
        let drafts: Vec<i64> = items.iter().filter(|a| a.state == SaleState::Draft).map(|a| a.id).collect();
        let checks = self.check_amounts(&items, &drafts).await?;
        let mut live = Vec::with_capacity(items.len());
        let mut drop_ids = Vec::new();
        for a in items {
            match checks.get(&a.id) {
                Some(Err(f)) => {
                    if !a.imported {
                        drop_ids.push(a.id);
                    }
                    outcomes.push(WriteOutcome::failed(a.key, f.clone()));
                }
                Some(Ok(warning)) => live.push((a, warning.clone())),
                None => live.push((a, None)),
            }
        }
        if !drop_ids.is_empty() {
            // A failed delete leaves a draft the next attempt finds, checks again and deletes.
            self.rpc.delete("sale.sale", &drop_ids, &Map::new()).await?;
        }

        let end = self.opts.order_state;
        for step in ["quote", "confirm"] {
            let ids: Vec<i64> = live.iter().filter(|(a, _)| a.state.steps_to(end).contains(&step)).map(|(a, _)| a.id).collect();
            if ids.is_empty() {
                continue;
            }
            match self.rpc.button("sale.sale", step, &ids, &Map::new()).await {
                Ok(_) => continue,
                // The engine finds these sales and resumes them from where they stand.
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(_) => {}
            }
            let mut ok = Vec::with_capacity(live.len());
            for (a, warning) in live {
                if !ids.contains(&a.id) {
                    ok.push((a, warning));
                    continue;
                }
                match self.rpc.button("sale.sale", step, &[a.id], &Map::new()).await {
                    Ok(_) => ok.push((a, warning)),
                    Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                    Err(e) => {
                        if !a.imported {
                            let _ = self.rpc.button("sale.sale", "draft", &[a.id], &Map::new()).await;
                            let _ = self.rpc.delete("sale.sale", &[a.id], &Map::new()).await;
                        }
                        outcomes.push(WriteOutcome::failed(a.key, e.to_record_failure(None)));
                    }
                }
            }
            live = ok;
        }
        for (a, warning) in live {
            let action = if a.state.steps_to(end).is_empty() && a.state != SaleState::Draft { a.done } else { a.moved };
            outcomes.push(match warning {
                Some(w) => WriteOutcome::warned(a.key, a.id.to_string(), action, w),
                None => WriteOutcome::ok(a.key, a.id.to_string(), action),
            });
        }
        Ok(())
    }

    /// Tryton's amounts for the sales in draft against what they must be. A sale Ferry just wrote has its
    /// plan (amounts.rs): Tryton's tax must be the planned one and its total the shop's. A sale found in
    /// draft after an interruption is held to the order: the shop's total, and the shop's tax unless an
    /// earlier attempt accepted and noted a difference. Per sale: `Err` = the order fails (policy `fail`),
    /// `Ok(Some(warning))` = accepted with a note on the sale (policy `note`, or an accepted plan),
    /// `Ok(None)` = agrees.
    async fn check_amounts(&self, items: &[Advance], drafts: &[i64]) -> Result<HashMap<i64, Result<Option<String>, RecordFailure>>, ConnectorError> {
        let mut out = HashMap::new();
        if drafts.is_empty() {
            return Ok(out);
        }
        let rounding = self.order_setup().await?.rounding;
        let amounts = super::by_id(self.rpc.read("sale.sale", drafts, &["tax_amount", "untaxed_amount", "total_amount"], &Map::new()).await?);
        // Notes from an earlier attempt on a resumed sale are not added twice.
        let resources: Vec<String> = drafts.iter().map(|id| format!("sale.sale,{id}")).collect();
        let noted: HashSet<String> = self
            .rpc
            .search_read("ir.note", json!([["resource", "in", resources], ["message", "like", "Ferry:%"]]), 0, None, Value::Null, &["resource"], &Map::new())
            .await?
            .into_iter()
            .filter_map(|r| as_text(r.get("resource")))
            .collect();
        let mut notes: Vec<Value> = Vec::new();
        for a in items.iter().filter(|a| drafts.contains(&a.id)) {
            let resource = format!("sale.sale,{}", a.id);
            let get = |f: &str| amounts.get(&a.id).and_then(|r| r.get(f)).and_then(as_decimal).unwrap_or_default();
            let draft = Draft { resource: &resource, order: &a.order, expected: a.expected.as_ref(), imported: a.imported, noted: noted.contains(&resource) };
            let verdict = amounts_verdict(&self.opts, rounding, &draft, get("tax_amount"), get("total_amount"));
            if let Ok(Some(note)) = &verdict
                && !noted.contains(&resource)
            {
                notes.push(json!({"resource": resource, "message": format!("Ferry: {note}.")}));
            }
            if verdict.is_ok()
                && !a.imported
                && self.opts.loyalty.note
                && !noted.contains(&resource)
                && let Some(l) = &a.order.loyalty
                && (!l.points_used.is_zero() || !l.points_earned.is_zero())
            {
                notes.push(json!({"resource": resource,
                    "message": format!("Ferry: loyalty: {} points used, {} points earned (shop order {}).", l.points_used.normalize(), l.points_earned.normalize(), a.order.number)}));
            }
            out.insert(a.id, verdict.map(|w| w.map(|w| format!("order {}: {w}", a.order.number))));
        }
        if !notes.is_empty() {
            self.rpc.create("ir.note", notes, &Map::new()).await?;
        }
        Ok(out)
    }

    /// Parties by code and by e-mail for every buyer of the batch. E-mail matching is opt-in
    /// (`customers.by_email`), for registered shop accounts only unless `customers.match_guests`, and only
    /// against parties that are customers ([`Self::customer_parties`]); an e-mail shared by several
    /// customers matches none.
    pub(super) async fn match_parties(&self, orders: &[(String, Order)]) -> Result<Parties, ConnectorError> {
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
    pub(super) async fn prepare(&self, key: &str, o: &Order, setup: &OrderSetup, products: &HashMap<String, ProductInfo>, parties: &mut Parties) -> Result<(Value, Expected), RecordFailure> {
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
                Ok(ids) => return created_id(&ids, self.rpc.endpoint(), "party.party"),
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
        let id = created_id(&ids, self.rpc.endpoint(), "party.address").map_err(|e| e.to_record_failure(Some(field.into())))?;
        row.insert("id".into(), json!(id));
        if let Some(c) = &a.country {
            row.insert("country.".into(), json!({"code": c}));
        }
        existing.push(row);
        Ok(id)
    }
}

#[derive(Default)]
pub(super) struct Parties {
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

/// The one id a `create` of one record answers; an empty answer is an error, not a panic.
pub(super) fn created_id(ids: &[i64], endpoint: &str, model: &str) -> Result<i64, RpcError> {
    ids.first().copied().ok_or_else(|| RpcError::new(rpc::RpcErrorKind::Server, endpoint, &format!("model.{model}.create"), "answered no id for the record created"))
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

    /// Ids from Tryton: a missing one is an error, not a panic.
    #[test]
    fn an_empty_create_answer_is_an_error() {
        let e = created_id(&[], "http://tryton", "sale.sale").unwrap_err();
        assert!(e.message.contains("no id") && e.call == "model.sale.sale.create", "{e:?}");
        assert_eq!(created_id(&[7], "http://tryton", "sale.sale").unwrap(), 7);
    }

    /// The verdict sales and invoices share: agreement, an accepted difference kept on resume, and a
    /// mismatch failed on the field that is off or noted, as `on_tax_mismatch` says.
    #[test]
    fn a_drafts_amounts_are_held_against_the_shops() {
        let order: Order = Record::parse(
            ferry_model::Stream::Orders,
            json!({"number": "W-1", "placed_at": "2026-04-04T13:30:00Z", "currency": "AUD", "prices_include_tax": false,
                   "lines": [{"sku": "A", "quantity": "1", "unit_price": "114.65", "total": "114.65"}],
                   "totals": {"subtotal": "114.65", "tax": "11.47", "total": "126.12"}}),
            "test",
        )
        .map(|r| match r {
            Record::Order(o) => o,
            other => panic!("{other:?}"),
        })
        .unwrap();
        let opts = |mode: &str| -> Options {
            serde_json::from_value(json!({"url": "http://127.0.0.1:9", "database": "t", "password": "p", "on_tax_mismatch": mode})).unwrap()
        };
        let d = |x: &str| Decimal::from_str(x).unwrap();
        let draft = |expected, imported, noted| Draft { resource: "sale.sale,7", order: &order, expected, imported, noted };
        let verdict = |mode: &str, draft: &Draft, tax, total| amounts_verdict(&opts(mode), TaxRounding::Document, draft, d(tax), d(total));

        assert_eq!(verdict("fail", &draft(None, false, false), "11.47", "126.12"), Ok(None), "Tryton agrees");
        let planned = Expected { tax: d("11.46"), total: d("126.12"), note: Some("GST 0.01 under".into()) };
        assert_eq!(verdict("fail", &draft(Some(&planned), false, false), "11.46", "126.12"), Ok(Some("GST 0.01 under".into())), "as planned");

        let e = verdict("fail", &draft(None, false, false), "11.46", "126.11").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("totals.tax"));
        assert!(e.message.contains("on sale.sale 7") && e.message.ends_with("sale.sale 7 deleted again"), "{}", e.message);
        let e = verdict("fail", &draft(None, true, false), "11.47", "127.12").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("totals.total"));
        assert!(e.message.ends_with("sale.sale 7 left in draft"), "{}", e.message);

        let noted = verdict("fail", &draft(None, true, true), "11.46", "126.12");
        assert_eq!(noted, Ok(None), "a resumed draft keeps the difference an earlier attempt accepted and noted");
        let note = verdict("note", &draft(Some(&planned), false, false), "11.45", "126.12").unwrap().unwrap();
        assert!(note.starts_with("GST 0.01 under; Tryton computes tax 11.45"), "{note}");
    }

    #[test]
    fn quantities_are_exact_json_numbers() {
        assert_eq!(number(Decimal::from_str("2.50").unwrap()).to_string(), "2.5");
        assert_eq!(number(Decimal::from(3)).to_string(), "3");
    }
}
