//! orders → `account.invoice` (type out), when the connection's `orders_as = "invoice"`: for businesses
//! that keep their books in Tryton without its sales module in the loop. Exactly once, like sales:
//!
//! - the invoice carries `reference` = the order number; `find_by_key` searches customer invoices by it
//!   (Tryton has no unique web id on invoices, so the look-up before create is what keeps it single);
//! - the party, addresses, lines, freight, discounts and the unit prices that make Tryton's GST the
//!   shop's to the cent are the sale's (orders.rs `prepare`, amounts.rs), turned into invoice lines with
//!   the product's revenue account;
//! - created in draft, its amounts checked against the shop's while it can still be deleted, then moved
//!   to `invoices.state` (`validate_invoice`, `post`); once posted, each shop payment is recorded with
//!   Tryton's pay wizard (`account.invoice.pay`: a move in the payment method's journal reconciled with
//!   the invoice, which then shows paid), once per payment: the move's description names the order and
//!   the payment, and payments whose description is on the invoice already are not paid again;
//! - an invoice found again (a lost answer, a crash between create, post and pay) is read and carried on
//!   from its state; refunds become credit notes (refunds.rs) against the invoice's party.

use super::orders::{Draft, Expected, amounts_verdict, created_id};
use super::refunds::BookedAs;
use super::rpc::{self, as_decimal, as_text, dec};
use super::sale_state::{content_changes, describe_changes};
use super::{InvoiceDate, InvoiceState, Tryton};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Order, OrderStatus, Payment, Record};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// Looked up once per connection: what writing invoices needs besides what sales need.
#[derive(Clone, Debug)]
pub(crate) struct InvoiceSetup {
    pub company: i64,
    /// The revenue journal of the invoices.
    pub journal: i64,
    pub default_receivable: Option<i64>,
    pub default_revenue: Option<i64>,
    /// Payment method name → `account.invoice.payment.method` id, for every name the options use.
    pub payment_methods: HashMap<String, i64>,
}

/// What is read to place an invoice in its life and to pay it.
const INVOICE_FIELDS: &[&str] = &["state", "lines", "party", "currency", "company", "account", "invoice_date", "amount_to_pay", "payment_lines", "number"];

/// An invoice's state as Tryton names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InvoiceStage {
    Draft,
    Validated,
    Posted,
    Paid,
    Cancelled,
}

impl InvoiceStage {
    pub fn parse(row: &Map<String, Value>) -> Option<InvoiceStage> {
        Some(match as_text(row.get("state"))?.as_str() {
            "draft" => InvoiceStage::Draft,
            "validated" => InvoiceStage::Validated,
            "posted" => InvoiceStage::Posted,
            "paid" => InvoiceStage::Paid,
            "cancelled" => InvoiceStage::Cancelled,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            InvoiceStage::Draft => "draft",
            InvoiceStage::Validated => "validated",
            InvoiceStage::Posted => "posted",
            InvoiceStage::Paid => "paid",
            InvoiceStage::Cancelled => "cancelled",
        }
    }

    /// The buttons that take an invoice from here to the configured state (`post` works from draft too).
    /// An invoice at or past it, or cancelled in Tryton, needs none.
    pub fn steps_to(self, end: InvoiceState) -> &'static [&'static str] {
        match (self, end) {
            (InvoiceStage::Draft, InvoiceState::Validated) => &["validate_invoice"],
            (InvoiceStage::Draft | InvoiceStage::Validated, InvoiceState::Posted) => &["post"],
            _ => &[],
        }
    }

    /// Ferry may still rewrite or cancel it: nothing is in the books yet.
    pub fn is_editable(self) -> bool {
        matches!(self, InvoiceStage::Draft | InvoiceStage::Validated)
    }

    /// Posted or paid: payments can be (or were) recorded against it.
    pub fn is_booked(self) -> bool {
        matches!(self, InvoiceStage::Posted | InvoiceStage::Paid)
    }
}

/// An order whose invoice Tryton has (from the cross-reference, or found by its reference).
struct Known {
    key: String,
    order: Order,
    id: i64,
    previous: Option<Value>,
}

/// An editable invoice to rewrite with its order's new values.
struct Rewrite {
    key: String,
    order: Order,
    id: i64,
    stage: InvoiceStage,
    lines: Vec<i64>,
}

/// An invoice to take on to the configured state and pay.
struct Step {
    key: String,
    order: Order,
    id: i64,
    stage: InvoiceStage,
    /// The outcome when nothing was left to do / when Ferry moved it on.
    done: WriteAction,
    moved: WriteAction,
    /// Tryton had it as the order's before this call (never deleted when a step fails).
    imported: bool,
    /// The amounts plan of an invoice written in this call.
    expected: Option<Expected>,
}

/// The shop payments that are money received: those without a status, and those whose status is not
/// one of a payment that did not (or no longer does) bring money in.
pub(super) fn received(payments: &[Payment]) -> Vec<(usize, &Payment)> {
    const NOT_RECEIVED: &[&str] = &["authorized", "authorised", "pending", "declined", "failed", "error", "cancelled", "canceled", "voided", "refunded"];
    payments.iter().enumerate().filter(|(_, p)| !p.status.as_deref().is_some_and(|s| NOT_RECEIVED.contains(&s.to_lowercase().as_str()))).collect()
}

/// The description of the move recording shop payment `i` of an order: how it is recognised later.
pub(super) fn payment_marker(number: &str, i: usize, p: &Payment) -> String {
    match &p.reference {
        Some(r) => format!("Web order {number}: payment {} ({}, {r})", i + 1, p.method),
        None => format!("Web order {number}: payment {} ({})", i + 1, p.method),
    }
}

impl Tryton {
    pub(super) async fn invoice_setup(&self) -> Result<&InvoiceSetup, ConnectorError> {
        self.invoice_setup.get_or_try_init(|| self.load_invoice_setup()).await
    }

    async fn load_invoice_setup(&self) -> Result<InvoiceSetup, ConnectorError> {
        let none = Map::new();
        let endpoint = self.endpoint();
        let opts = &self.opts.invoices;
        let company = self.rpc.context().await?.get("company").and_then(Value::as_i64).ok_or_else(|| ConnectorError::config(&endpoint, "the Tryton user has no current company"))?;
        let domain = match &opts.journal {
            Some(name) => json!([["type", "=", "revenue"], ["name", "=", name]]),
            None => json!([["type", "=", "revenue"]]),
        };
        let journal = *self.rpc.search("account.journal", domain, 0, Some(1), json!([["id", "ASC"]]), &none).await?.first().ok_or_else(|| {
            ConnectorError::config(&endpoint, format!("invoices.journal: no account.journal of type revenue{}", opts.journal.as_ref().map(|n| format!(" named {n:?}")).unwrap_or_default()))
        })?;
        let config = self.rpc.read("account.configuration", &[1], &["default_account_receivable", "default_category_account_revenue"], &none).await?;
        let conf = |f: &str| config.first().and_then(|c| c.get(f)).and_then(Value::as_i64);
        let names: Vec<&String> = opts.payment_method.iter().chain(opts.payment_methods.values()).collect();
        let mut payment_methods = HashMap::new();
        if !names.is_empty() {
            let rows = self.rpc.search_read("account.invoice.payment.method", json!([["name", "in", names], ["company", "=", company]]), 0, None, Value::Null, &["name"], &none).await?;
            payment_methods = rows.into_iter().filter_map(|r| Some((as_text(r.get("name"))?, r.get("id")?.as_i64()?))).collect();
            if let Some(missing) = names.iter().find(|n| !payment_methods.contains_key(n.as_str())) {
                return Err(ConnectorError::config(&endpoint, format!("invoices.payment_method: no account.invoice.payment.method named {missing:?}")));
            }
        }
        Ok(InvoiceSetup { company, journal, default_receivable: conf("default_account_receivable"), default_revenue: conf("default_category_account_revenue"), payment_methods })
    }

    /// Order number → invoice id, for the numbers Tryton has a customer invoice for (by `reference`). When
    /// a person made another with the same reference, the first one not cancelled is the order's.
    pub(super) async fn find_invoices(&self, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let mut found: HashMap<String, (i64, bool)> = HashMap::new();
        for chunk in keys.chunks(500) {
            let rows = self
                .rpc
                .search_read("account.invoice", json!([["type", "=", "out"], ["reference", "in", chunk]]), 0, None, json!([["id", "ASC"]]), &["reference", "state"], &Map::new())
                .await?;
            for r in rows {
                let (Some(k), Some(id)) = (as_text(r.get("reference")), r.get("id").and_then(Value::as_i64)) else { continue };
                let cancelled = as_text(r.get("state")).as_deref() == Some("cancelled");
                match found.get(&k) {
                    Some((_, false)) => {}
                    Some((_, true)) if cancelled => {}
                    _ => {
                        found.insert(k, (id, cancelled));
                    }
                }
            }
        }
        Ok(found.into_iter().map(|(k, (id, _))| (k, id.to_string())).collect())
    }

    /// Writes a batch of orders as customer invoices (see the module's comment). A transient failure once
    /// Tryton may have acted ends the call as a whole: the engine finds what exists and resumes it.
    pub(super) async fn write_invoices(&self, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let setup = self.order_setup().await?.clone();
        let inv = self.invoice_setup().await?.clone();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut new_orders = Vec::new();
        let mut known = Vec::new();
        for w in batch {
            match (w.target_id, w.record) {
                (None, Record::Order(o)) => new_orders.push((w.key, o)),
                (Some(id), Record::Order(order)) => match id.parse::<i64>() {
                    Ok(id) => known.push(Known { key: w.key, order, id, previous: w.previous }),
                    Err(_) => outcomes.push(WriteOutcome::failed(w.key, RecordFailure::permanent(None, format!("target id {id:?} is not an account.invoice id")))),
                },
                (_, other) => outcomes.push(WriteOutcome::failed(w.key, RecordFailure::permanent(None, format!("expected an order, got a {} record", other.stream())))),
            }
        }

        let mut steps = Vec::new();
        let mut rewrites = Vec::new();
        let mut refunds: Vec<(String, Order, i64)> = Vec::new();
        self.place_invoices(known, &mut steps, &mut rewrites, &mut refunds, &mut outcomes).await?;

        if !new_orders.is_empty() || !rewrites.is_empty() {
            let mut all: Vec<(String, Order)> = new_orders.clone();
            all.extend(rewrites.iter().map(|r| (r.key.clone(), r.order.clone())));
            let skus: Vec<String> = all.iter().flat_map(|(_, o)| o.lines.iter().map(|l| l.sku.clone())).collect::<HashSet<_>>().into_iter().collect();
            let products = self.product_infos(&skus).await?;
            let mut parties = self.match_parties(&all).await?;
            let mut sales: Vec<(String, Order, Value, Expected, Option<Rewrite>)> = Vec::new();
            for (key, order) in new_orders {
                match self.prepare(&key, &order, &setup, &products, &mut parties).await {
                    Ok((vals, expected)) => sales.push((key, order, vals, expected, None)),
                    Err(f) => outcomes.push(WriteOutcome::failed(key, f)),
                }
            }
            for r in rewrites {
                match self.prepare(&r.key, &r.order, &setup, &products, &mut parties).await {
                    Ok((vals, expected)) => sales.push((r.key.clone(), r.order.clone(), vals, expected, Some(r))),
                    Err(f) => outcomes.push(WriteOutcome::failed(r.key, f)),
                }
            }
            let accounts = self.accounts_for(sales.iter().map(|s| &s.2)).await?;
            let mut pending = Vec::new();
            for (key, order, sale, expected, rewrite) in sales {
                match invoice_values(&sale, &order, &inv, self.opts.invoices.invoice_date, &accounts) {
                    Err(f) => outcomes.push(WriteOutcome::failed(key, f)),
                    Ok(vals) => match rewrite {
                        None => pending.push((key, order, vals, expected)),
                        Some(r) => self.rewrite_invoice(r, vals, expected, &mut steps, &mut outcomes).await?,
                    },
                }
            }
            self.create_invoices(pending, &mut steps, &mut outcomes).await?;
        }

        // orders that arrive with refunds already are credited once their invoice stands
        refunds.extend(steps.iter().filter(|s| s.expected.is_some() && !s.imported && !s.order.refunds.is_empty()).map(|s| (s.key.clone(), s.order.clone(), s.id)));
        self.advance_invoices(steps, &inv, &mut outcomes).await?;
        self.book_invoice_refunds(refunds, &mut outcomes).await;
        Ok(outcomes)
    }

    /// Reads the known invoices' states and sorts each order: cancel, rewrite, carry on, or fail with what
    /// a person must do.
    async fn place_invoices(&self, known: Vec<Known>, steps: &mut Vec<Step>, rewrites: &mut Vec<Rewrite>, refunds: &mut Vec<(String, Order, i64)>, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if known.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = known.iter().map(|k| k.id).collect();
        let rows = super::by_id(self.rpc.read("account.invoice", &ids, &["state", "lines", "number"], &Map::new()).await?);
        let mut cancel = Vec::new();
        for k in known {
            let number = k.order.number.clone();
            let row = rows.get(&k.id);
            let Some(stage) = row.and_then(InvoiceStage::parse) else {
                let msg = format!("account.invoice {} of order {number} is no longer in Tryton (deleted there?): not created again; check it and drop or replay this record", k.id);
                outcomes.push(WriteOutcome::failed(k.key, RecordFailure::permanent(None, msg)));
                continue;
            };
            let named = || format!("account.invoice {}{}", k.id, row.and_then(|r| as_text(r.get("number"))).map(|n| format!(" ({n})")).unwrap_or_default());
            if k.order.status == OrderStatus::Cancelled {
                match stage {
                    InvoiceStage::Cancelled => outcomes.push(WriteOutcome::ok(k.key, k.id.to_string(), WriteAction::Unchanged)),
                    s if s.is_editable() => cancel.push(k),
                    s => {
                        let msg = format!("order {number} was cancelled in the shop after {} was {}: it needs a credit note in Tryton", named(), s.name());
                        outcomes.push(WriteOutcome::failed(k.key, RecordFailure::permanent(Some("status".into()), msg)));
                    }
                }
                continue;
            }
            let changes = match &k.previous {
                Some(previous) => content_changes(previous, &serde_json::to_value(&k.order).unwrap_or_default()),
                None => Vec::new(),
            };
            if !changes.is_empty() {
                if stage.is_editable() {
                    rewrites.push(Rewrite { key: k.key, order: k.order, id: k.id, stage, lines: super::id_list(row.and_then(|r| r.get("lines"))) });
                } else {
                    let msg = format!("order {number} changed in the shop after {} was {}: {}", named(), stage.name(), describe_changes(&changes));
                    outcomes.push(WriteOutcome::failed(k.key, RecordFailure::permanent(changes.first().map(|c| c.path.clone()), msg)));
                }
                continue;
            }
            let refunds_changed = match &k.previous {
                Some(previous) => previous.get("refunds") != serde_json::to_value(&k.order.refunds).ok().filter(|r| r.as_array().is_some_and(|a| !a.is_empty())).as_ref(),
                None => !k.order.refunds.is_empty(),
            };
            if refunds_changed && !k.order.refunds.is_empty() && stage != InvoiceStage::Cancelled {
                refunds.push((k.key.clone(), k.order.clone(), k.id));
            }
            let done = if k.previous.is_none() { WriteAction::Resumed } else { WriteAction::Unchanged };
            steps.push(Step { key: k.key, order: k.order, id: k.id, stage, done, moved: WriteAction::Resumed, imported: k.previous.is_some(), expected: None });
        }
        for k in cancel {
            outcomes.push(match self.rpc.button("account.invoice", "cancel", &[k.id], &Map::new()).await {
                Ok(_) => WriteOutcome::ok(k.key, k.id.to_string(), WriteAction::Updated),
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(e) => WriteOutcome::failed(k.key, e.to_record_failure(Some("status".into()))),
            });
        }
        Ok(())
    }

    /// Receivable accounts of the parties and revenue accounts of the products the sale values name.
    async fn accounts_for<'a>(&self, sales: impl Iterator<Item = &'a Value>) -> Result<Accounts, ConnectorError> {
        let none = Map::new();
        let mut parties = HashSet::new();
        let mut products = HashSet::new();
        for s in sales {
            parties.extend(s.get("party").and_then(Value::as_i64));
            products.extend(sale_lines(s).iter().filter_map(|l| l.get("product").and_then(Value::as_i64)));
        }
        let parties: Vec<i64> = parties.into_iter().collect();
        let products: Vec<i64> = products.into_iter().collect();
        let receivable = self.rpc.read("party.party", &parties, &["account_receivable"], &none).await?;
        let revenue = self.rpc.read("product.product", &products, &["account_category.account_revenue"], &Self::all_records()).await?;
        Ok(Accounts {
            receivable: receivable.iter().filter_map(|r| Some((r.get("id")?.as_i64()?, r.get("account_receivable").and_then(Value::as_i64)))).collect(),
            revenue: revenue.iter().filter_map(|r| Some((r.get("id")?.as_i64()?, rpc::dotted(r, "account_category.account_revenue").and_then(Value::as_i64)))).collect(),
        })
    }

    /// Creates the new invoices (the batch in one call; one by one if Tryton refuses it). An order whose
    /// create Tryton refuses but which has an invoice already (an earlier attempt) is carried on instead.
    async fn create_invoices(&self, pending: Vec<(String, Order, Value, Expected)>, steps: &mut Vec<Step>, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if pending.is_empty() {
            return Ok(());
        }
        let none = Map::new();
        let created: Vec<((String, Order, Value, Expected), i64)> = match self.rpc.create("account.invoice", pending.iter().map(|p| p.2.clone()).collect(), &none).await {
            Ok(ids) if ids.len() == pending.len() => pending.into_iter().zip(ids).collect(),
            Ok(ids) => return Err(ConnectorError::permanent(self.endpoint(), format!("account.invoice.create returned {} ids for {} invoices", ids.len(), pending.len()))),
            // Unknown whether Tryton committed: the engine finds the invoices by reference before trying again.
            Err(e) if e.is_transient() => return Err(e.to_connector_error()),
            Err(_) => {
                let mut created = Vec::new();
                for p in pending {
                    match self.rpc.create("account.invoice", vec![p.2.clone()], &none).await {
                        Ok(ids) => match created_id(&ids, self.rpc.endpoint(), "account.invoice") {
                            Ok(id) => created.push((p, id)),
                            Err(e) => outcomes.push(WriteOutcome::failed(p.0, e.to_record_failure(None))),
                        },
                        Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                        Err(e) => match self.find_invoices(std::slice::from_ref(&p.1.number)).await?.get(&p.1.number).and_then(|id| id.parse::<i64>().ok()) {
                            Some(id) => {
                                let stage = self.rpc.read("account.invoice", &[id], &["state"], &none).await?.first().and_then(InvoiceStage::parse).unwrap_or(InvoiceStage::Draft);
                                steps.push(Step { key: p.0, order: p.1, id, stage, done: WriteAction::Resumed, moved: WriteAction::Resumed, imported: false, expected: None });
                            }
                            None => outcomes.push(WriteOutcome::failed(p.0, e.to_record_failure(None))),
                        },
                    }
                }
                created
            }
        };
        for ((key, order, _, expected), id) in created {
            steps.push(Step { key, order, id, stage: InvoiceStage::Draft, done: WriteAction::Created, moved: WriteAction::Created, imported: false, expected: Some(expected) });
        }
        Ok(())
    }

    /// Rewrites an editable invoice with the order's new values (a validated one goes back to draft).
    async fn rewrite_invoice(&self, r: Rewrite, mut vals: Value, expected: Expected, steps: &mut Vec<Step>, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        let none = Map::new();
        if r.stage == InvoiceStage::Validated {
            match self.rpc.button("account.invoice", "draft", &[r.id], &none).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(e) => {
                    outcomes.push(WriteOutcome::failed(r.key, e.to_record_failure(None)));
                    return Ok(());
                }
            }
        }
        let lines = sale_lines(&vals).to_vec();
        vals["lines"] = json!([["delete", r.lines], ["create", lines]]);
        if let Some(map) = vals.as_object_mut() {
            for identity in ["type", "company", "reference"] {
                map.remove(identity);
            }
        }
        match self.rpc.write("account.invoice", &[r.id], vals, &none).await {
            Ok(()) => steps.push(Step { key: r.key, order: r.order, id: r.id, stage: InvoiceStage::Draft, done: WriteAction::Updated, moved: WriteAction::Updated, imported: true, expected: Some(expected) }),
            Err(e) if e.is_transient() => return Err(e.to_connector_error()),
            Err(e) => outcomes.push(WriteOutcome::failed(r.key, e.to_record_failure(None))),
        }
        Ok(())
    }

    /// Checks the amounts of invoices in draft, presses the buttons to the configured state, then records
    /// the shop's payments on posted invoices. An invoice never imported that cannot get there is deleted
    /// again (back to draft first); an imported one stays as it is and its order fails with Tryton's reason.
    async fn advance_invoices(&self, steps: Vec<Step>, inv: &InvoiceSetup, outcomes: &mut Vec<WriteOutcome>) -> Result<(), ConnectorError> {
        if steps.is_empty() {
            return Ok(());
        }
        let none = Map::new();
        let drafts: Vec<i64> = steps.iter().filter(|s| s.stage == InvoiceStage::Draft).map(|s| s.id).collect();
        let checks = self.check_invoice_amounts(&steps, &drafts).await?;
        let mut live: Vec<(Step, Option<String>, bool)> = Vec::with_capacity(steps.len());
        let mut drop_ids = Vec::new();
        for s in steps {
            match checks.get(&s.id) {
                Some(Err(f)) => {
                    if !s.imported {
                        drop_ids.push(s.id);
                    }
                    outcomes.push(WriteOutcome::failed(s.key, f.clone()));
                }
                Some(Ok(warning)) => live.push((s, warning.clone(), true)),
                None => live.push((s, None, false)),
            }
        }
        if !drop_ids.is_empty() {
            // A failed delete leaves a draft the next attempt finds, checks again and deletes.
            self.rpc.delete("account.invoice", &drop_ids, &none).await?;
        }

        let end = self.opts.invoices.state;
        for button in ["validate_invoice", "post"] {
            let ids: Vec<i64> = live.iter().filter(|(s, _, _)| s.stage.steps_to(end).contains(&button)).map(|(s, _, _)| s.id).collect();
            if ids.is_empty() {
                continue;
            }
            match self.rpc.button("account.invoice", button, &ids, &none).await {
                Ok(_) => {
                    live.iter_mut().filter(|(s, _, _)| ids.contains(&s.id)).for_each(|(_, _, moved)| *moved = true);
                    continue;
                }
                // The engine finds these invoices and carries them on from where they stand.
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(_) => {}
            }
            let mut ok = Vec::with_capacity(live.len());
            for (s, warning, moved) in live {
                if !ids.contains(&s.id) {
                    ok.push((s, warning, moved));
                    continue;
                }
                match self.rpc.button("account.invoice", button, &[s.id], &none).await {
                    Ok(_) => ok.push((s, warning, true)),
                    Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                    // Tryton refuses the button on an invoice past it: an earlier attempt whose answer was
                    // lost (still running when this one read the state) got there first
                    Err(_) if self.invoice_stage(s.id).await?.is_some_and(|now| now.steps_to(end).is_empty() && now != InvoiceStage::Cancelled) => ok.push((s, warning, true)),
                    Err(e) => {
                        if !s.imported {
                            let _ = self.rpc.button("account.invoice", "draft", &[s.id], &none).await;
                            let _ = self.rpc.delete("account.invoice", &[s.id], &none).await;
                        }
                        let tail = if s.imported { "" } else { "; the invoice was deleted again" };
                        let f = e.to_record_failure(None);
                        outcomes.push(WriteOutcome::failed(s.key, RecordFailure { message: format!("{}: {}{tail}", button.replace('_', " "), f.message), ..f }));
                    }
                }
            }
            live = ok;
        }

        for (s, warning, moved) in live {
            let booked = end == InvoiceState::Posted && (s.stage.is_booked() || s.stage.steps_to(end).contains(&"post"));
            let paid = match s.stage {
                // cancelled in Tryton by a person: nothing to pay or note
                InvoiceStage::Cancelled => Ok(Ok((false, None))),
                _ if booked => self.record_payments(&s, inv).await,
                _ => self.note_payments(&s).await.map(|()| Ok((false, None))),
            };
            let paid = match paid {
                Ok(paid) => paid,
                // The invoice stands; only its payment is in doubt. This order alone is retried later (found by
                // its reference, its recorded payments recognised), while the rest of the batch is done: a
                // batch of 50 makes 200 payment calls, too many to retry all-or-nothing on a flaky network.
                Err(e) if e.is_transient() => Err(RecordFailure {
                    field: Some("payments".into()),
                    message: format!("account.invoice {} stands, its payment not yet: {e}", s.id),
                    retryable: true,
                }),
                Err(e) => return Err(e),
            };
            let outcome = match paid {
                Err(f) => WriteOutcome::failed(s.key, f),
                Ok((paid_now, payment_warning)) => {
                    let action = if moved || paid_now { s.moved } else { s.done };
                    let warnings: Vec<String> = [warning, payment_warning.map(|w| format!("order {}: {w}", s.order.number))].into_iter().flatten().collect();
                    if warnings.is_empty() { WriteOutcome::ok(s.key, s.id.to_string(), action) } else { WriteOutcome::warned(s.key, s.id.to_string(), action, warnings.join("; ")) }
                }
            };
            outcomes.push(outcome);
        }
        Ok(())
    }

    /// Where an invoice stands now (`None`: not in Tryton).
    async fn invoice_stage(&self, id: i64) -> Result<Option<InvoiceStage>, ConnectorError> {
        Ok(self.rpc.read("account.invoice", &[id], &["state"], &Map::new()).await?.first().and_then(InvoiceStage::parse))
    }

    /// Tryton's amounts for the invoices in draft against what they must be (as for sales, orders.rs
    /// `check_amounts`): `Err` = the order fails, `Ok(Some(warning))` = accepted with a note, `Ok(None)` = agrees.
    async fn check_invoice_amounts(&self, steps: &[Step], drafts: &[i64]) -> Result<HashMap<i64, Result<Option<String>, RecordFailure>>, ConnectorError> {
        let mut out = HashMap::new();
        if drafts.is_empty() {
            return Ok(out);
        }
        let none = Map::new();
        let rounding = self.order_setup().await?.rounding;
        let amounts = super::by_id(self.rpc.read("account.invoice", drafts, &["tax_amount", "total_amount"], &none).await?);
        let resources: Vec<String> = drafts.iter().map(|id| format!("account.invoice,{id}")).collect();
        let noted: HashSet<String> = self
            .rpc
            .search_read("ir.note", json!([["resource", "in", resources], ["message", "like", "Ferry:%"]]), 0, None, Value::Null, &["resource"], &none)
            .await?
            .into_iter()
            .filter_map(|r| as_text(r.get("resource")))
            .collect();
        let mut notes = Vec::new();
        for s in steps.iter().filter(|s| drafts.contains(&s.id)) {
            let resource = format!("account.invoice,{}", s.id);
            let get = |f: &str| amounts.get(&s.id).and_then(|r| r.get(f)).and_then(as_decimal).unwrap_or_default();
            let draft = Draft { resource: &resource, order: &s.order, expected: s.expected.as_ref(), imported: s.imported, noted: noted.contains(&resource) };
            let verdict = amounts_verdict(&self.opts, rounding, &draft, get("tax_amount"), get("total_amount"));
            if let Ok(Some(note)) = &verdict
                && !noted.contains(&resource)
            {
                notes.push(json!({"resource": resource, "message": format!("Ferry: {note}.")}));
            }
            out.insert(s.id, verdict.map(|w| w.map(|w| format!("order {}: {w}", s.order.number))));
        }
        if !notes.is_empty() {
            self.rpc.create("ir.note", notes, &none).await?;
        }
        Ok(out)
    }

    /// Records the shop's payments on a posted invoice with Tryton's pay wizard, each once (see
    /// [`payment_marker`]). Returns whether a payment was recorded now and a warning when the shop's
    /// payments do not settle the invoice (it then stays posted with the rest to pay). A posted invoice
    /// without a configured payment method gets the payments as a note instead.
    async fn record_payments(&self, s: &Step, inv: &InvoiceSetup) -> Result<Result<(bool, Option<String>), RecordFailure>, ConnectorError> {
        let none = Map::new();
        let payments = received(&s.order.payments);
        if payments.is_empty() {
            return Ok(Ok((false, None)));
        }
        if inv.payment_methods.is_empty() {
            self.note_payments(s).await?;
            return Ok(Ok((false, None)));
        }
        let row = self.rpc.read("account.invoice", &[s.id], INVOICE_FIELDS, &none).await?.into_iter().next();
        let Some(row) = row else {
            return Ok(Err(RecordFailure::permanent(None, format!("account.invoice {} is no longer in Tryton", s.id))));
        };
        if InvoiceStage::parse(&row) == Some(InvoiceStage::Paid) {
            return Ok(Ok((false, None))); // settled: by Ferry's payments, or by a person in Tryton
        }
        let id_of = |f: &str| row.get(f).and_then(Value::as_i64);
        let mut to_pay = row.get("amount_to_pay").and_then(as_decimal).unwrap_or_default();
        let recorded: HashSet<String> = self
            .rpc
            .read("account.move.line", &super::id_list(row.get("payment_lines")), &["move.description"], &none)
            .await?
            .iter()
            .filter_map(|l| as_text(rpc::dotted(l, "move.description")))
            .collect();
        let date = row.get("invoice_date").cloned().filter(|d| !d.is_null()).unwrap_or_else(|| rpc::date(chrono::Utc::now().date_naive()));
        let party = id_of("party");
        let mut paid_now = false;
        let mut warnings = Vec::new();
        let mut context = Map::new();
        context.insert("active_model".into(), json!("account.invoice"));
        context.insert("active_id".into(), json!(s.id));
        context.insert("active_ids".into(), json!([s.id]));
        for (i, p) in payments {
            let marker = payment_marker(&s.order.number, i, p);
            if recorded.contains(&marker) {
                continue;
            }
            let field = format!("payments[{i}]");
            let method_name = self.opts.invoices.payment_methods.get(&p.method).or(self.opts.invoices.payment_method.as_ref());
            let Some(method) = method_name.and_then(|n| inv.payment_methods.get(n)) else {
                return Ok(Err(RecordFailure::permanent(Some(format!("{field}.method")), format!("no Tryton payment method for shop payment method {:?} (invoices.payment_methods, invoices.payment_method)", p.method))));
            };
            let amount = p.amount.min(to_pay);
            if amount <= Decimal::ZERO {
                warnings.push(format!("payment {} of {} is more than the invoice has left to pay; not recorded", i + 1, p.amount));
                continue;
            }
            let start = json!({"payee": party, "payees": [party], "amount": dec(amount), "currency": id_of("currency"), "description": marker,
                "company": id_of("company"), "invoice_account": id_of("account"), "payment_method": method, "date": date});
            let mut steps = vec![("choice", json!({"start": start}))];
            if amount < to_pay {
                // less than what is left: Tryton asks how to treat the rest; a partial payment keeps it open
                let ask = json!({"type": "partial", "amount": dec(amount), "currency": id_of("currency"), "company": id_of("company"), "invoice": s.id, "lines": [], "lines_to_pay": [], "payment_lines": []});
                steps.push(("pay", json!({"start": start, "ask": ask})));
            }
            match self.rpc.wizard("account.invoice.pay", &steps, &context).await {
                Ok(()) => {
                    paid_now = true;
                    to_pay -= amount;
                    if amount < p.amount {
                        warnings.push(format!("payment {} of {} is more than the invoice had left to pay; {amount} recorded", i + 1, p.amount));
                    }
                }
                Err(e) if e.is_transient() => return Err(e.to_connector_error()),
                Err(e) => return Ok(Err(e.to_record_failure(Some(field)))),
            }
        }
        if !to_pay.is_zero() {
            warnings.push(format!("the shop's payments leave {to_pay} to pay on account.invoice {}", s.id));
        }
        Ok(Ok((paid_now, (!warnings.is_empty()).then(|| warnings.join("; ")))))
    }

    /// The shop's payments as a note on an invoice that cannot be paid in Tryton yet (draft or validated,
    /// or no payment method configured), once.
    async fn note_payments(&self, s: &Step) -> Result<(), ConnectorError> {
        let payments = received(&s.order.payments);
        if payments.is_empty() {
            return Ok(());
        }
        let none = Map::new();
        let resource = format!("account.invoice,{}", s.id);
        let noted = self.rpc.search("ir.note", json!([["resource", "=", resource], ["message", "like", "Ferry payments:%"]]), 0, Some(1), Value::Null, &none).await?;
        if !noted.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = payments.iter().map(|(_, p)| format!("{} {} {}{}", p.amount, s.order.currency, p.method, p.reference.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())).collect();
        let message = format!("Ferry payments: web order {} was paid in the shop: {}. Record the payment once the invoice is posted.", s.order.number, list.join(", "));
        self.rpc.create("ir.note", vec![json!({"resource": resource, "message": message})], &none).await?;
        Ok(())
    }

    /// Refunds of invoiced orders as credit notes against the invoice's party (refunds.rs), once each.
    async fn book_invoice_refunds(&self, refunds: Vec<(String, Order, i64)>, outcomes: &mut [WriteOutcome]) {
        for (key, order, invoice) in refunds {
            let Some(outcome) = outcomes.iter_mut().find(|o| o.key == key && o.result.is_ok()) else { continue };
            match self.book_refunds_against(&order, BookedAs::Invoice(invoice)).await {
                Ok(booked) => {
                    if let Ok(w) = &mut outcome.result {
                        if booked.booked > 0 && matches!(w.action, WriteAction::Unchanged) {
                            w.action = WriteAction::Updated;
                        }
                        if !booked.warnings.is_empty() {
                            w.warning = Some([w.warning.take()].into_iter().flatten().chain(booked.warnings).collect::<Vec<_>>().join("; "));
                        }
                    }
                }
                Err(f) => outcome.result = Err(f),
            }
        }
    }
}

/// Accounts an invoice's header and lines need.
struct Accounts {
    /// party id → its receivable account (none: the configuration's default)
    receivable: HashMap<i64, Option<i64>>,
    /// product id → its accounting category's revenue account
    revenue: HashMap<i64, Option<i64>>,
}

/// The line values inside a sale's `lines: [["create", [...]]]`.
fn sale_lines(sale: &Value) -> &[Value] {
    sale.pointer("/lines/0/1").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// A sale's values (orders.rs `prepare`) as a customer invoice's: the same party, invoice address,
/// currency, payment term, description and lines (each with its revenue account), `reference` = the order
/// number, dated the sale's date unless Tryton is to date it when posting.
fn invoice_values(sale: &Value, order: &Order, inv: &InvoiceSetup, dating: InvoiceDate, accounts: &Accounts) -> Result<Value, RecordFailure> {
    let party = sale.get("party").and_then(Value::as_i64).ok_or_else(|| RecordFailure::permanent(Some("customer".into()), "no party for the invoice"))?;
    let receivable = accounts.receivable.get(&party).copied().flatten().or(inv.default_receivable).ok_or_else(|| {
        RecordFailure::permanent(Some("customer".into()), format!("party {party} has no receivable account and the account configuration no default"))
    })?;
    let currency = sale.get("currency").cloned().unwrap_or(Value::Null);
    let mut lines = Vec::new();
    for l in sale_lines(sale) {
        let mut l = l.clone();
        let product = l.get("product").and_then(Value::as_i64).unwrap_or_default();
        let account = accounts.revenue.get(&product).copied().flatten().or(inv.default_revenue).ok_or_else(|| {
            let what = l.get("description").and_then(Value::as_str).map(|d| format!(" ({d})")).unwrap_or_default();
            RecordFailure::permanent(Some("lines".into()), format!("product.product {product}{what} has no revenue account (accounting category) and the account configuration no default"))
        })?;
        l["invoice_type"] = json!("out");
        l["company"] = json!(inv.company);
        l["currency"] = currency.clone();
        l["account"] = json!(account);
        lines.push(l);
    }
    let mut v = json!({
        "type": "out",
        "company": inv.company,
        "party": party,
        "invoice_address": sale.get("invoice_address"),
        "currency": currency,
        "account": receivable,
        "journal": inv.journal,
        "reference": order.number,
        "description": sale.get("description"),
        "lines": [["create", lines]],
    });
    if dating == InvoiceDate::Order {
        v["invoice_date"] = sale.get("sale_date").cloned().unwrap_or(Value::Null);
    }
    for f in ["payment_term", "comment"] {
        if let Some(x) = sale.get(f) {
            v[f] = x.clone();
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(method: &str, amount: &str, status: Option<&str>, reference: Option<&str>) -> Payment {
        Payment { method: method.into(), amount: amount.parse().unwrap(), reference: reference.map(Into::into), status: status.map(Into::into) }
    }

    #[test]
    fn only_money_received_is_recorded_as_paid() {
        let ps = vec![
            payment("card", "10", Some("settled"), None),
            payment("card", "5", Some("Declined"), None),
            payment("bank", "3", None, None),
            payment("card", "2", Some("authorized"), None),
            payment("card", "1", Some("refunded"), None),
        ];
        let got: Vec<usize> = received(&ps).into_iter().map(|(i, _)| i).collect();
        assert_eq!(got, [0, 2], "settled and status-less payments count; declined, authorised-only and refunded ones do not");
    }

    #[test]
    fn a_payment_marker_names_the_order_the_payment_and_its_reference() {
        assert_eq!(payment_marker("W-1", 0, &payment("card", "1", None, Some("ch_9"))), "Web order W-1: payment 1 (card, ch_9)");
        assert_eq!(payment_marker("W-1", 1, &payment("bank", "1", None, None)), "Web order W-1: payment 2 (bank)");
    }

    #[test]
    fn invoice_steps_lead_to_the_configured_state_and_never_back() {
        assert_eq!(InvoiceStage::Draft.steps_to(InvoiceState::Posted), ["post"]);
        assert_eq!(InvoiceStage::Validated.steps_to(InvoiceState::Posted), ["post"]);
        assert_eq!(InvoiceStage::Draft.steps_to(InvoiceState::Validated), ["validate_invoice"]);
        assert!(InvoiceStage::Draft.steps_to(InvoiceState::Draft).is_empty());
        assert!(InvoiceStage::Posted.steps_to(InvoiceState::Validated).is_empty(), "an invoice ahead of the setting is left alone");
        assert!(InvoiceStage::Cancelled.steps_to(InvoiceState::Posted).is_empty(), "an invoice cancelled in Tryton stays cancelled");
        assert!(InvoiceStage::Validated.is_editable() && !InvoiceStage::Posted.is_editable());
        let row = |s: &str| json!({"state": s}).as_object().cloned().unwrap();
        assert_eq!(InvoiceStage::parse(&row("paid")), Some(InvoiceStage::Paid));
        assert_eq!(InvoiceStage::parse(&row("weird")), None);
    }

    #[test]
    fn sale_values_become_invoice_values_with_accounts_and_the_order_number() {
        let order = match Record::parse(
            ferry_model::Stream::Orders,
            json!({"number": "W-7", "placed_at": "2026-12-02T10:00:00Z", "currency": "AUD", "prices_include_tax": false,
                "lines": [{"sku": "A", "quantity": "1", "unit_price": "10", "total": "10"}], "totals": {"subtotal": "10", "tax": "1", "total": "11"}}),
            "t",
        )
        .unwrap()
        {
            Record::Order(o) => o,
            _ => unreachable!(),
        };
        let sale = json!({"party": 5, "invoice_address": 9, "shipment_address": 9, "web_shop": 1, "web_id": "W-7", "currency": 3, "sale_date": {"__class__": "date", "year": 2026, "month": 12, "day": 2},
            "description": "Web order W-7", "payment_term": 4, "warehouse": 2,
            "lines": [["create", [{"type": "line", "product": 40, "quantity": 1, "unit": 1, "unit_price": dec(Decimal::TEN), "taxes": [["add", [1]]]}]]]});
        let inv = InvoiceSetup { company: 1, journal: 7, default_receivable: Some(100), default_revenue: Some(200), payment_methods: HashMap::new() };
        let accounts = Accounts { receivable: [(5, None)].into(), revenue: [(40, Some(300))].into() };
        let v = invoice_values(&sale, &order, &inv, InvoiceDate::Order, &accounts).unwrap();
        assert_eq!((v["type"].as_str(), v["reference"].as_str(), v["account"].as_i64(), v["journal"].as_i64()), (Some("out"), Some("W-7"), Some(100), Some(7)));
        assert_eq!(v["invoice_date"], sale["sale_date"]);
        assert!(v.get("web_id").is_none() && v.get("warehouse").is_none() && v.get("shipment_address").is_none());
        let line = &v["lines"][0][1][0];
        assert_eq!((line["account"].as_i64(), line["invoice_type"].as_str(), line["company"].as_i64()), (Some(300), Some("out"), Some(1)));
        let undated = invoice_values(&sale, &order, &inv, InvoiceDate::Posting, &accounts).unwrap();
        assert!(undated.get("invoice_date").is_none(), "Tryton dates it when posting");
        let no_accounts = InvoiceSetup { default_receivable: None, ..inv };
        assert_eq!(invoice_values(&sale, &order, &no_accounts, InvoiceDate::Order, &accounts).unwrap_err().field.as_deref(), Some("customer"));
    }
}
