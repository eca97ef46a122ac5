//! Web orders as customer invoices in a real Tryton 8.2 (scripts/peers/tryton/up.sh, 127.0.0.1:18000),
//! `orders_as = "invoice"`: draft, validated or posted; posted ones paid with the shop's payment through
//! Tryton's pay wizard; amounts to the cent with GST, freight and a coupon; exactly once when the create's
//! answer is lost (the project's fault proxy) and when Ferry dies between create and post; refunds as
//! credit notes against the invoice.
#![cfg(all(feature = "tryton", feature = "jsonl"))]

mod support;

use chrono::Utc;
use ferry_connectors::tryton::Tryton;
use ferry_engine::{Config, Connector, RunOptions, RunReport, WriteAction, WriteRecord, Workspace, holder_id, run::NoProgress};
use ferry_model::{Record, Stream};
use ferry_testkit::{Fault, FaultProxy};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Setup, d, none, tryton, uniq};

/// Two products with GST (the "Goods" category): `A` at 21.00 and `B` at 3.35.
async fn products(t: &Tryton, u: &str) -> (String, String) {
    let s = Setup(t);
    let (a, b) = (format!("INV-A-{u}"), format!("INV-B-{u}"));
    s.product(&a, "Invoiced A", "21", "7", &[], &[""]).await;
    s.product(&b, "Invoiced B", "3.35", "1", &[], &[""]).await;
    (a, b)
}

/// A payment method of the test's own on the cash journal and the chart's cash account (1.1.1), so the
/// test needs nothing beyond the peer's standard master data.
async fn payment_method(t: &Tryton, u: &str) -> String {
    let name = format!("Web card {u}");
    let s = Setup(t);
    let journal = s.id("account.journal", json!([["type", "=", "cash"]])).await;
    let cash = s.id("account.account", json!([["code", "=", "1.1.1"]])).await;
    let company = t.rpc().context().await.unwrap()["company"].clone();
    t.rpc()
        .create("account.invoice.payment.method", vec![json!({"name": name, "company": company, "journal": journal, "credit_account": cash, "debit_account": cash})], &none())
        .await
        .unwrap();
    name
}

/// 2 × A at 21.00 and 3 × B at 3.35, freight 10.00, a 5.00 coupon, GST 10 % rounded per line half up as
/// shops do: 4.20 + 1.01 (1.005 rounded up) + 1.00 − 0.50 = 5.71; net 57.05, total 62.76, paid by card.
/// (Tryton rounding per document and half to even gets 5.70 unless B's unit price is planned.)
fn order_json(number: &str, a: &str, b: &str) -> Value {
    json!({
        "number": number, "placed_at": Utc::now(), "status": "confirmed", "currency": "AUD", "prices_include_tax": false,
        "customer": {"email": format!("inv-{number}@example.test"), "first_name": "Invo", "last_name": "Ice", "guest": true},
        "lines": [
            {"sku": a, "quantity": "2", "unit_price": "21.00", "total": "42.00"},
            {"sku": b, "quantity": "3", "unit_price": "3.35", "total": "10.05"},
        ],
        "shipping": [{"method": "Standard", "carrier": "Courier Co", "amount": "10.00"}],
        "discounts": [{"kind": "coupon", "code": "SAVE5", "amount": "5.00"}],
        "coupons": ["SAVE5"],
        "payments": [{"method": "card", "amount": "62.76", "reference": format!("ch_{number}"), "status": "settled"}],
        "totals": {"subtotal": "52.05", "shipping": "10.00", "discount": "5.00", "tax": "5.71", "total": "62.76"},
        "billing_address": {"name": "Invo Ice", "street": ["7 Ledger Lane"], "city": "Sydney", "postcode": "2000", "country": "AU"},
    })
}

fn record(v: Value) -> Record {
    Record::parse(Stream::Orders, v, "test").unwrap_or_else(|e| panic!("{e}"))
}

/// What the engine keeps as the order Tryton last received (`WriteRecord::previous`).
fn previous(v: Value) -> Value {
    match record(v) {
        Record::Order(o) => serde_json::to_value(o).unwrap(),
        _ => unreachable!(),
    }
}

fn new(record: Record) -> WriteRecord {
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

fn amount(v: &Value) -> Decimal {
    d(v["decimal"].as_str().unwrap_or_else(|| panic!("not a Decimal: {v}")))
}

/// The customer invoices whose reference is `reference`.
async fn invoices(t: &Tryton, reference: &str) -> Vec<Map<String, Value>> {
    t.rpc()
        .search_read(
            "account.invoice",
            json!([["type", "=", "out"], ["reference", "=", reference]]),
            0,
            None,
            json!([["id", "ASC"]]),
            &["state", "party", "number", "untaxed_amount", "tax_amount", "total_amount", "amount_to_pay", "lines", "payment_lines", "invoice_date"],
            &none(),
        )
        .await
        .unwrap()
}

async fn the_invoice(t: &Tryton, reference: &str) -> Map<String, Value> {
    let mut found = invoices(t, reference).await;
    assert_eq!(found.len(), 1, "exactly one invoice for {reference}: {found:?}");
    found.remove(0)
}

fn connector(state: &str, payment_method: Option<&str>) -> Tryton {
    let mut invoices = json!({"state": state});
    if let Some(pm) = payment_method {
        invoices["payment_method"] = json!(pm);
    }
    tryton(json!({"orders_as": "invoice", "invoices": invoices}))
}

#[tokio::test]
async fn an_order_becomes_a_posted_invoice_paid_by_the_shop_with_gst_freight_and_coupon_to_the_cent() {
    let u = uniq();
    let t = connector("posted", None);
    let (a, b) = products(&t, &u).await;
    let pm = payment_method(&t, &u).await;
    let t = connector("posted", Some(&pm));
    let number = format!("IP-{u}");
    let out = t.write(Stream::Orders, vec![new(record(order_json(&number, &a, &b)))]).await.unwrap();
    let written = out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(written.action, WriteAction::Created);
    assert_eq!(written.warning, None, "Tryton agrees with the shop: nothing to warn about");

    let inv = the_invoice(&t, &number).await;
    assert_eq!(written.target_id, inv["id"].to_string());
    assert_eq!(inv["state"], "paid", "posted, and the shop's payment recorded: {inv:?}");
    assert!(inv["number"].as_str().is_some_and(|n| !n.is_empty()), "numbered when posted");
    assert_eq!((amount(&inv["untaxed_amount"]), amount(&inv["tax_amount"]), amount(&inv["total_amount"])), (d("57.05"), d("5.71"), d("62.76")));
    assert_eq!(amount(&inv["amount_to_pay"]), d("0"));
    let b2c = Setup(&t).id("party.party", json!([["name", "=", "Web sales (B2C)"]])).await;
    assert_eq!(inv["party"].as_i64(), Some(b2c), "a guest's order is booked to the B2C party");

    let ids: Vec<i64> = inv["lines"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    let lines = t.rpc().read("account.invoice.line", &ids, &["product.code", "quantity", "unit_price", "taxes", "amount", "account"], &none()).await.unwrap();
    let by_code = |code: &str| lines.iter().find(|l| l["product."]["code"] == code).unwrap_or_else(|| panic!("no {code} line: {lines:?}"));
    assert_eq!(lines.len(), 4, "A, B, freight and the coupon; no rounding line: {lines:?}");
    assert_eq!(amount(&by_code(&a)["amount"]), d("42"));
    let b_line = by_code(&b);
    assert_eq!(amount(&b_line["amount"]), d("10.05"), "B keeps the shop's amount");
    // Rounding per document (Tryton's default), naive prices would give 6.205 → 5.70 of GST: a price is planned
    let rounding = t.rpc().read("account.configuration", &[1], &["tax_rounding"], &none()).await.unwrap()[0]["tax_rounding"].clone();
    if rounding == "document" {
        let naive = [(a.as_str(), "21"), (b.as_str(), "3.35"), ("FREIGHT", "10"), ("DISCOUNT", "-5")];
        assert!(naive.iter().any(|(code, price)| amount(&by_code(code)["unit_price"]) != d(price)), "a unit price is planned so Tryton's GST rounds as the shop's did: {lines:?}");
    }
    assert_eq!(amount(&by_code("FREIGHT")["amount"]), d("10"));
    assert_eq!(amount(&by_code("DISCOUNT")["amount"]), d("-5"));
    assert!(lines.iter().all(|l| l["taxes"].as_array().unwrap().len() == 1), "GST on every line");

    // the payment: one move in the cash journal, named after the order and the shop's charge
    let payment_lines = t.rpc().read("account.move.line", &inv["payment_lines"].as_array().unwrap().iter().filter_map(Value::as_i64).collect::<Vec<_>>(), &["credit", "move.description", "move.journal.type"], &none()).await.unwrap();
    assert_eq!(payment_lines.len(), 1, "{payment_lines:?}");
    assert_eq!(amount(&payment_lines[0]["credit"]), d("62.76"));
    assert_eq!(payment_lines[0]["move."]["description"], format!("Web order {number}: payment 1 (card, ch_{number})"));
    assert_eq!(payment_lines[0]["move."]["journal."]["type"], "cash");

    // written again (found by its reference): nothing new, nothing paid twice
    let found = t.find_by_key(Stream::Orders, std::slice::from_ref(&number)).await.unwrap();
    assert_eq!(found.get(&number), Some(&written.target_id));
    let rec = record(order_json(&number, &a, &b));
    let again = t.write(Stream::Orders, vec![WriteRecord { key: number.clone(), target_id: found.get(&number).cloned(), record: rec, previous: None }]).await.unwrap();
    assert_eq!(again[0].result.as_ref().unwrap().action, WriteAction::Resumed);
    let inv = the_invoice(&t, &number).await;
    assert_eq!(inv["payment_lines"].as_array().unwrap().len(), 1, "paid once");
}

#[tokio::test]
async fn split_payments_are_each_recorded_once_and_a_declined_one_not_at_all() {
    let u = uniq();
    let t = connector("posted", None);
    let (a, b) = products(&t, &u).await;
    let pm = payment_method(&t, &u).await;
    let t = connector("posted", Some(&pm));
    let number = format!("IS-{u}");
    let mut o = order_json(&number, &a, &b);
    o["payments"] = json!([
        {"method": "gift_card", "amount": "20.00", "reference": "GC-1"},
        {"method": "card", "amount": "42.76", "reference": "ch_declined", "status": "declined"},
        {"method": "card", "amount": "42.76", "reference": "ch_ok", "status": "settled"},
    ]);
    let out = t.write(Stream::Orders, vec![new(record(o.clone()))]).await.unwrap();
    let written = out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(written.warning, None, "{written:?}");
    let inv = the_invoice(&t, &number).await;
    assert_eq!(inv["state"], "paid", "20.00 + 42.76 settle 62.76: {inv:?}");
    let ids: Vec<i64> = inv["payment_lines"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    let mut paid: Vec<(String, Decimal)> = t
        .rpc()
        .read("account.move.line", &ids, &["credit", "move.description"], &none())
        .await
        .unwrap()
        .iter()
        .map(|l| (l["move."]["description"].as_str().unwrap().to_owned(), amount(&l["credit"])))
        .collect();
    paid.sort();
    assert_eq!(
        paid,
        [(format!("Web order {number}: payment 1 (gift_card, GC-1)"), d("20")), (format!("Web order {number}: payment 3 (card, ch_ok)"), d("42.76"))],
        "the declined charge is not money received"
    );
    // resumed: both found on the invoice, neither recorded again
    t.write(Stream::Orders, vec![WriteRecord { key: number.clone(), target_id: Some(written.target_id.clone()), record: record(o), previous: None }]).await.unwrap();
    assert_eq!(the_invoice(&t, &number).await["payment_lines"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn draft_and_validated_invoices_stay_there_with_the_shops_payment_noted() {
    let u = uniq();
    let t = connector("draft", None);
    let (a, b) = products(&t, &u).await;
    let pm = payment_method(&t, &u).await;
    for state in ["draft", "validated"] {
        let t = connector(state, Some(&pm));
        let number = format!("IV-{u}-{state}");
        let out = t.write(Stream::Orders, vec![new(record(order_json(&number, &a, &b)))]).await.unwrap();
        let written = out[0].result.as_ref().unwrap_or_else(|f| panic!("{state}: {f:?}"));
        assert_eq!(written.action, WriteAction::Created);
        let inv = the_invoice(&t, &number).await;
        assert_eq!(inv["state"], state);
        assert_eq!((amount(&inv["tax_amount"]), amount(&inv["total_amount"])), (d("5.71"), d("62.76")), "{state}");
        assert!(inv["payment_lines"].as_array().unwrap().is_empty(), "Tryton pays only posted invoices");
        let notes = t.rpc().search_read("ir.note", json!([["resource", "=", format!("account.invoice,{}", inv["id"])]]), 0, None, Value::Null, &["message"], &none()).await.unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0]["message"].as_str().unwrap().contains("62.76 AUD card"), "{notes:?}");
        // resumed after a lost answer: left where it is, the note not written twice
        let again = t.write(Stream::Orders, vec![WriteRecord { key: number.clone(), target_id: Some(written.target_id.clone()), record: record(order_json(&number, &a, &b)), previous: None }]).await.unwrap();
        assert!(again[0].result.is_ok(), "{again:?}");
        assert_eq!(the_invoice(&t, &number).await["state"], state);
        let notes = t.rpc().search("ir.note", json!([["resource", "=", format!("account.invoice,{}", inv["id"])]]), 0, None, Value::Null, &none()).await.unwrap();
        assert_eq!(notes.len(), 1);
    }
}

#[tokio::test]
async fn a_refund_becomes_a_credit_note_against_the_invoice_once() {
    let u = uniq();
    let t = connector("posted", None);
    let (a, b) = products(&t, &u).await;
    let pm = payment_method(&t, &u).await;
    let t = connector("posted", Some(&pm));
    let number = format!("IR-{u}");
    let first = order_json(&number, &a, &b);
    let out = t.write(Stream::Orders, vec![new(record(first.clone()))]).await.unwrap();
    let id = out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}")).target_id.clone();

    // the shop refunds one A (21.00 + 2.10 GST)
    let mut refunded = first.clone();
    refunded["status"] = json!("partially_refunded");
    refunded["refunds"] = json!([{"id": "r1", "reason": "scratched", "lines": [{"sku": a, "quantity": "1", "amount": "21.00", "tax": "2.10"}], "tax": "2.10", "total": "23.10"}]);
    let previous = previous(first.clone());
    for attempt in 0..2 {
        let w = WriteRecord { key: number.clone(), target_id: Some(id.clone()), record: record(refunded.clone()), previous: Some(previous.clone()) };
        let out = t.write(Stream::Orders, vec![w]).await.unwrap();
        let written = out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}"));
        if attempt == 0 {
            assert_eq!(written.action, WriteAction::Updated, "the refund was booked");
        }
    }
    let cn = the_invoice(&t, &format!("{number}/r1")).await;
    assert_eq!((amount(&cn["total_amount"]), amount(&cn["tax_amount"])), (d("-23.10"), d("-2.10")));
    let inv = the_invoice(&t, &number).await;
    assert_eq!(cn["party"], inv["party"], "credited to the invoice's party");
    assert_eq!(inv["state"], "paid", "the invoice itself is untouched");
}

#[tokio::test]
async fn an_order_cancelled_after_import_cancels_its_draft_invoice_and_a_posted_one_is_parked() {
    let u = uniq();
    let t = connector("draft", None);
    let (a, b) = products(&t, &u).await;
    for (state, cancellable) in [("draft", true), ("posted", false)] {
        let t = connector(state, None);
        let number = format!("IC-{u}-{state}");
        let placed = order_json(&number, &a, &b);
        let out = t.write(Stream::Orders, vec![new(record(placed.clone()))]).await.unwrap();
        let id = out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}")).target_id.clone();
        let mut cancelled = placed.clone();
        cancelled["status"] = json!("cancelled");
        let previous = previous(placed);
        let out = t.write(Stream::Orders, vec![WriteRecord { key: number.clone(), target_id: Some(id), record: record(cancelled), previous: Some(previous) }]).await.unwrap();
        let inv = the_invoice(&t, &number).await;
        if cancellable {
            assert_eq!(out[0].result.as_ref().unwrap().action, WriteAction::Updated);
            assert_eq!(inv["state"], "cancelled");
        } else {
            let f = out[0].result.as_ref().unwrap_err();
            assert_eq!(f.field.as_deref(), Some("status"));
            assert!(f.message.contains("credit note") && f.message.contains("posted"), "{}", f.message);
            assert_eq!(inv["state"], "posted", "left for the accountant");
        }
    }
}

#[tokio::test]
async fn an_order_edited_while_its_invoice_is_draft_rewrites_it_and_a_posted_one_is_parked_with_the_change() {
    let u = uniq();
    let t = connector("draft", None);
    let (a, b) = products(&t, &u).await;
    // a known B2B customer, matched by its code
    let party = t.rpc().create("party.party", vec![json!({"name": format!("Invoice buyer {u}"), "code": format!("IB2B-{u}")})], &none()).await.unwrap()[0];
    for (state, editable) in [("draft", true), ("posted", false)] {
        let t = connector(state, None);
        let number = format!("IE-{u}-{state}");
        let mut placed = order_json(&number, &a, &b);
        placed["customer"] = json!({"code": format!("IB2B-{u}"), "guest": false});
        let out = t.write(Stream::Orders, vec![new(record(placed.clone()))]).await.unwrap();
        let id = out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}")).target_id.clone();
        assert_eq!(the_invoice(&t, &number).await["party"].as_i64(), Some(party), "matched by customer code");
        // one A fewer: 21.00 net and 2.10 GST less
        let mut edited = placed.clone();
        edited["lines"][0] = json!({"sku": a, "quantity": "1", "unit_price": "21.00", "total": "21.00"});
        edited["totals"] = json!({"subtotal": "31.05", "shipping": "10.00", "discount": "5.00", "tax": "3.61", "total": "39.66"});
        edited["payments"] = json!([]);
        let out = t.write(Stream::Orders, vec![WriteRecord { key: number.clone(), target_id: Some(id), record: record(edited), previous: Some(previous(placed)) }]).await.unwrap();
        let inv = the_invoice(&t, &number).await;
        if editable {
            assert_eq!(out[0].result.as_ref().unwrap_or_else(|f| panic!("{f:?}")).action, WriteAction::Updated);
            assert_eq!((inv["state"].as_str(), amount(&inv["tax_amount"]), amount(&inv["total_amount"])), (Some("draft"), d("3.61"), d("39.66")), "rewritten: {inv:?}");
            assert_eq!(inv["lines"].as_array().unwrap().len(), 4, "the lines replaced, not added to");
        } else {
            let f = out[0].result.as_ref().unwrap_err();
            assert_eq!(f.field.as_deref(), Some("lines[0].quantity"));
            assert!(f.message.contains("posted") && f.message.contains("\"2\" → \"1\""), "{}", f.message);
            assert_eq!((inv["state"].as_str(), amount(&inv["total_amount"])), (Some("posted"), d("62.76")), "left as posted");
        }
    }
}

#[tokio::test]
async fn check_reads_the_invoice_setup_and_asks_for_the_rights_invoices_need() {
    let u = uniq();
    let pm = payment_method(&connector("posted", None), &u).await;
    let t = connector("posted", Some(&pm));
    let report = t.check().await.unwrap();
    let invoices = report.details.iter().find(|d| d.starts_with("orders as customer invoices")).unwrap_or_else(|| panic!("{report:?}"));
    assert!(invoices.contains(&pm), "{invoices}");
    let rights = t.check_write(Stream::Orders).await.unwrap();
    assert!(rights[0].contains("account.invoice") && rights[0].contains("account.move") && !rights[0].contains("sale.sale"), "{rights:?}");
    // a payment method Tryton does not have is named
    let wrong = connector("posted", Some(&format!("No such method {u}")));
    let err = wrong.check().await.unwrap_err();
    assert!(err.to_string().contains(&format!("No such method {u}")), "{err}");
}

// ------------------------------------------------------------------ through the engine, with faults

/// A JSONL "shop" of orders, a Tryton connection through a fault proxy writing them as posted, paid
/// invoices, and the state store, all in one temp folder.
struct Rig {
    u: String,
    a: String,
    b: String,
    dir: tempfile::TempDir,
    proxy: FaultProxy,
    erp: Tryton,
}

impl Rig {
    async fn new() -> Rig {
        let u = uniq();
        let erp = connector("posted", None);
        let (a, b) = products(&erp, &u).await;
        let pm = payment_method(&erp, &u).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("web")).unwrap();
        let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
        let erp_options = format!("orders_as = \"invoice\"\ntimeout_seconds = 30\n[connections.erp.invoices]\nstate = \"posted\"\npayment_method = \"{pm}\"\n");
        let text = support::web_orders_into_tryton_toml(&proxy.url(), &erp_options, "");
        std::fs::write(dir.path().join("ferry.toml"), &text).unwrap();
        Rig { u, a, b, dir, proxy, erp }
    }

    fn number(&self, n: u32) -> String {
        format!("IE-{}-{n}", self.u)
    }

    fn write_orders(&self, numbers: &[u32]) {
        let text: String = numbers.iter().map(|n| format!("{}\n", order_json(&self.number(*n), &self.a, &self.b))).collect();
        std::fs::write(self.dir.path().join("web/orders.jsonl"), text).unwrap();
    }

    async fn workspace(&self) -> Workspace {
        let text = std::fs::read_to_string(self.dir.path().join("ferry.toml")).unwrap();
        Workspace::open(Config::parse(&text, self.dir.path().to_owned()).unwrap(), ferry_connectors::registry()).await.unwrap()
    }

    async fn sync(&self, ws: &Workspace, holder: String) -> RunReport {
        ws.sync("orders", &RunOptions { holder, ..Default::default() }, &NoProgress).await.unwrap()
    }

    /// Every order of `numbers` is exactly one invoice, posted and paid once.
    async fn assert_paid_once(&self, numbers: &[u32]) {
        for n in numbers {
            let inv = the_invoice(&self.erp, &self.number(*n)).await;
            assert_eq!(inv["state"], "paid", "order {n}: {inv:?}");
            assert_eq!(inv["payment_lines"].as_array().unwrap().len(), 1, "order {n} paid once");
            assert_eq!(amount(&inv["total_amount"]), d("62.76"));
        }
    }
}

#[tokio::test]
async fn exactly_one_invoice_when_the_answer_to_its_create_is_lost() {
    let rig = Rig::new().await;
    rig.write_orders(&[1, 2]);
    let ws = rig.workspace().await;
    // Tryton creates both invoices and the answer never arrives: the engine looks them up and carries them on
    rig.proxy.fail_matching("model.account.invoice.create", Fault::DropAfterForward, 1);
    let report = rig.sync(&ws, holder_id()).await;
    assert_eq!(rig.proxy.stats().faulted("model.account.invoice.create"), 1, "the fault was met");
    assert_eq!((report.counts.failed, report.counts.created + report.counts.resumed), (0, 2), "{report:#?}");
    assert_eq!(report.counts.resumed, 2, "found by their reference, not created again: {report:#?}");
    rig.assert_paid_once(&[1, 2]).await;
    // and the next run has nothing to do
    let again = rig.sync(&ws, holder_id()).await;
    assert_eq!((again.counts.created, again.counts.resumed, again.counts.failed), (0, 0, 0), "{again:#?}");
    rig.assert_paid_once(&[1, 2]).await;
}

#[tokio::test]
async fn a_payment_whose_answer_is_lost_is_recorded_once_and_the_rest_of_the_batch_goes_on() {
    let rig = Rig::new().await;
    rig.write_orders(&[1, 2]);
    let ws = rig.workspace().await;
    // Tryton records the first payment and the answer never arrives
    let pay = "wizard.account.invoice.pay.execute";
    rig.proxy.fail_matching(pay, Fault::DropAfterForward, 1);
    let report = rig.sync(&ws, holder_id()).await;
    assert_eq!(rig.proxy.stats().faulted(pay), 1);
    assert!(report.aborted.is_none(), "{report:#?}");
    assert_eq!((report.counts.created, report.counts.failed), (1, 1), "only the order whose payment is in doubt waits: {report:#?}");
    let parked = ws.store().failures(Some("orders"), None).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].retryable, "{parked:?}");
    // `ferry failures retry orders`: found by its reference, its payment recognised on the invoice
    let retry = ws.sync("orders", &RunOptions { holder: holder_id(), replay: ferry_engine::Replay::AllOnly, ..Default::default() }, &NoProgress).await.unwrap();
    assert_eq!((retry.counts.resumed, retry.counts.failed), (1, 0), "{retry:#?}");
    rig.assert_paid_once(&[1, 2]).await;
}

#[tokio::test]
async fn killed_between_create_and_post_the_next_run_posts_and_pays_each_invoice_once() {
    let rig = Rig::new().await;
    rig.write_orders(&[1, 2]);
    let ws = Arc::new(rig.workspace().await);
    // `post` is held at the proxy, never reaching Tryton: the invoices exist in draft when the run dies.
    rig.proxy.set_hold(Duration::from_secs(120));
    rig.proxy.fail_matching("model.account.invoice.post", Fault::Timeout, 1);
    // The dying run holds the flow's lease as a process of this host that no longer exists (as after
    // `kill -9`), so the next run takes it over at once.
    let host = holder_id().rsplit_once(':').map(|(h, _)| h.to_owned()).unwrap();
    let dead = format!("{host}:4000000000");
    let run = {
        let ws = ws.clone();
        tokio::spawn(async move { ws.sync("orders", &RunOptions { holder: dead, ..Default::default() }, &NoProgress).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.proxy.stats().faulted("model.account.invoice.post") == 0 {
        assert!(Instant::now() < deadline && !run.is_finished(), "the run never reached post");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.abort(); // the kill: nothing after `create` happens, nothing is committed by Ferry
    let _ = run.await;
    rig.proxy.clear();
    let drafts = invoices(&rig.erp, &rig.number(1)).await;
    assert_eq!((drafts.len(), drafts[0]["state"].as_str()), (1, Some("draft")), "left in draft by the kill");

    let report = rig.sync(&ws, holder_id()).await;
    assert_eq!((report.counts.created, report.counts.resumed, report.counts.failed), (0, 2, 0), "{report:#?}");
    rig.assert_paid_once(&[1, 2]).await;
}

// ------------------------------------------------------------------ the example

/// examples/tryton-invoices: its connection's options are the connector's (orders as posted invoices, paid
/// with "Web shop") and its sample order is a valid canonical order whose payment settles it.
#[test]
fn the_example_config_writes_orders_as_posted_paid_invoices() {
    use ferry_connectors::tryton::{InvoiceState, Options, OrdersAs};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tryton-invoices");
    let config = Config::load(&dir.join("ferry.toml")).unwrap_or_else(|e| panic!("{e}"));
    let books = &config.connections["books"];
    assert_eq!(books.kind, "tryton");
    let mut options = ferry_engine::config::toml_to_json(&books.options);
    options["password"] = json!("unused");
    let opts: Options = serde_json::from_value(options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((opts.orders_as, opts.invoices.state, opts.invoices.payment_method.as_deref()), (OrdersAs::Invoice, InvoiceState::Posted, Some("Web shop")));
    assert_eq!(config.flows["orders"].target, "books");
    let line = std::fs::read_to_string(dir.join("in/orders.jsonl")).unwrap();
    let Record::Order(o) = record(serde_json::from_str(line.lines().next().unwrap()).unwrap()) else { unreachable!() };
    assert_eq!(o.payments.iter().map(|p| p.amount).sum::<Decimal>(), o.totals.total, "the sample payment settles the invoice");
}
