//! Orders into the real Tryton (scripts/peers/tryton, port 18000) through Ferry's engine and the real
//! `ferry` binary, with the project's fault proxy (ferry-testkit) between them: a sale always reaches its
//! configured state whatever call fails or whenever Ferry is killed, and an order cancelled or edited in
//! the shop follows it into Tryton.

#[path = "../../connectors/tests/support/tryton.rs"]
#[allow(dead_code)]
mod tryton_support;

use chrono::Utc;
use ferry_engine::{Config, RunOptions, RunReport, Workspace, holder_id, run::NoProgress};
use ferry_testkit::{Fault, FaultProxy};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tryton_support::{Setup, d, none, tryton, uniq};

/// One test's Tryton product, order file, proxy and state store.
struct Rig {
    u: String,
    sku: String,
    dir: tempfile::TempDir,
    proxy: FaultProxy,
    erp: ferry_connectors::tryton::Tryton,
    order_state: &'static str,
}

impl Rig {
    async fn new(order_state: &'static str) -> Rig {
        let erp = tryton(json!({}));
        let u = uniq();
        let sku = format!("LIFE-{u}");
        Setup(&erp).product(&sku, &format!("Lifecycle {u}"), "10", "4", &[], &[""]).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("web")).unwrap();
        let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", tryton_support::port()));
        let rig = Rig { u, sku, dir, proxy, erp, order_state };
        std::fs::write(rig.config_path(), rig.config_text()).unwrap();
        rig
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("ferry.toml")
    }

    fn config_text(&self) -> String {
        tryton_support::web_orders_into_tryton_toml(&self.proxy.url(), &format!("order_state = \"{}\"", self.order_state), "")
    }

    async fn workspace(&self) -> Workspace {
        let config = Config::parse(&self.config_text(), self.dir.path().to_owned()).unwrap();
        Workspace::open(config, ferry_connectors::registry()).await.unwrap()
    }

    fn number(&self, n: u32) -> String {
        format!("LC-{}-{n}", self.u)
    }

    /// A tax-exclusive order of `qty` × the rig's product at 10.00, GST 10 %.
    fn order(&self, n: u32, qty: &str, status: &str) -> Value {
        let net = d(qty) * d("10");
        let tax = (net * d("0.1")).round_dp(2);
        json!({
            "number": self.number(n), "placed_at": Utc::now(), "status": status, "currency": "AUD", "prices_include_tax": false,
            "lines": [{"sku": self.sku, "quantity": qty, "unit_price": "10", "total": net.to_string()}],
            "totals": {"subtotal": net.to_string(), "tax": tax.to_string(), "total": (net + tax).to_string()},
            "billing_address": {"name": "Jo Buyer", "street": ["1 Test St"], "city": "Sydney", "postcode": "2000", "country": "AU"},
        })
    }

    fn write_orders(&self, orders: &[Value]) {
        let text: String = orders.iter().map(|o| format!("{o}\n")).collect();
        std::fs::write(self.dir.path().join("web/orders.jsonl"), text).unwrap();
    }

    async fn sync(&self, ws: &Workspace) -> RunReport {
        let options = RunOptions { holder: holder_id(), ..Default::default() };
        let report = ws.sync("orders", &options, &NoProgress).await.unwrap();
        assert!(report.aborted.is_none(), "aborted: {report:#?}");
        report
    }

    /// `(id, state)` of every sale with the order's web id (there must never be two).
    async fn sales(&self, n: u32) -> Vec<(i64, String)> {
        let rows = self.erp.rpc().search_read("sale.sale", json!([["web_id", "=", self.number(n)]]), 0, None, Value::Null, &["state"], &none()).await.unwrap();
        rows.iter().map(|r| (r["id"].as_i64().unwrap(), r["state"].as_str().unwrap().to_owned())).collect()
    }

    async fn the_sale(&self, n: u32) -> (i64, String) {
        let sales = self.sales(n).await;
        assert_eq!(sales.len(), 1, "exactly one sale for order {}: {sales:?}", self.number(n));
        sales[0].clone()
    }
}

/// The state a sale reaches for `order_state` (Tryton processes a confirmed sale at once).
fn reached(order_state: &str, state: &str) -> bool {
    match order_state {
        "confirmed" => matches!(state, "confirmed" | "processing"),
        other => state == other,
    }
}

// ---------------------------------------------------------------- a fault after each step

async fn fault_after(needle: &str, fault: Fault) {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "2", "confirmed")]);
    rig.proxy.fail_matching(needle, fault.clone(), 1);
    let ws = rig.workspace().await;
    let report = rig.sync(&ws).await;
    assert_eq!(rig.proxy.stats().faulted(needle), 1, "the fault on {needle} was injected");
    let (_, state) = rig.the_sale(1).await;
    assert!(reached("confirmed", &state), "{fault:?} on {needle}: sale left {state}");
    assert_eq!((report.counts.failed, report.counts.created, report.counts.resumed), (0, 0, 1), "{fault:?} on {needle}: {:?}", report.counts);

    // And the next run has nothing left to do.
    let again = rig.sync(&ws).await;
    assert_eq!((again.counts.unchanged, again.counts.resumed, again.counts.created), (1, 0, 0));
}

#[tokio::test]
async fn an_answer_lost_after_create_resumes_the_sale_to_confirmed() {
    fault_after("model.sale.sale.create", Fault::DropAfterForward).await;
}

#[tokio::test]
async fn a_502_on_quote_leaves_no_sale_in_draft() {
    fault_after("model.sale.sale.quote", Fault::Status(502)).await;
}

#[tokio::test]
async fn an_answer_lost_after_quote_resumes_the_sale_to_confirmed() {
    fault_after("model.sale.sale.quote", Fault::DropAfterForward).await;
}

#[tokio::test]
async fn an_answer_lost_after_confirm_is_found_confirmed_and_counted_resumed() {
    fault_after("model.sale.sale.confirm", Fault::DropAfterForward).await;
}

// ---------------------------------------------------------------- kill -9 after each step

/// Runs `ferry sync orders`, kills it with SIGKILL as soon as the proxy applies `fault` to the call
/// `at` (the steps before it done in Tryton, nothing committed by Ferry), then syncs again to completion.
async fn kill_at(at: &str, fault: Fault) {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "1", "confirmed"), rig.order(2, "3", "confirmed")]);
    rig.proxy.set_hold(Duration::from_secs(120));
    rig.proxy.fail_matching(at, fault, 1);
    let mut child = ferry(&rig.config_path(), &["sync", "orders"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.proxy.stats().faulted(at) == 0 {
        assert!(Instant::now() < deadline, "ferry never reached {at}");
        assert!(child.try_wait().unwrap().is_none(), "ferry ended before reaching {at}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    rig.proxy.clear();

    let out = ferry(&rig.config_path(), &["--json", "sync", "orders"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    for n in [1, 2] {
        let (_, state) = rig.the_sale(n).await;
        assert!(reached("confirmed", &state), "killed at {at}: order {n} left {state}");
    }
    assert_eq!(report["counts"]["resumed"], json!(2), "killed at {at}: {report:#}");
}

fn ferry(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env_remove("FERRY_CONFIG").arg("--config").arg(config).args(args);
    c
}

#[tokio::test]
async fn killed_after_create_the_next_run_takes_the_sales_to_confirmed() {
    // quote is held: the sales exist in draft when Ferry dies
    kill_at("model.sale.sale.quote", Fault::Timeout).await;
}

#[tokio::test]
async fn killed_after_quote_the_next_run_takes_the_sales_to_confirmed() {
    kill_at("model.sale.sale.confirm", Fault::Timeout).await;
}

#[tokio::test]
async fn killed_after_confirm_the_next_run_records_the_sales_as_resumed() {
    // confirm is applied and its answer lost; Ferry is killed while it backs off to retry, before it
    // committed anything
    kill_at("model.sale.sale.confirm", Fault::DropAfterForward).await;
}

// ---------------------------------------------------------------- the order's life after import

#[tokio::test]
async fn an_order_cancelled_before_import_creates_no_sale() {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "1", "cancelled"), rig.order(2, "1", "confirmed")]);
    let ws = rig.workspace().await;
    let report = rig.sync(&ws).await;
    assert_eq!((report.counts.created, report.counts.skipped), (1, 1));
    assert!(rig.sales(1).await.is_empty(), "no sale for a cancelled order");
}

async fn cancelled_after_import(order_state: &'static str) {
    let rig = Rig::new(order_state).await;
    rig.write_orders(&[rig.order(1, "1", "confirmed")]);
    let ws = rig.workspace().await;
    rig.sync(&ws).await;
    rig.write_orders(&[rig.order(1, "1", "cancelled")]);
    let report = rig.sync(&ws).await;
    assert_eq!((report.counts.updated, report.counts.failed), (1, 0), "{report:#?}");
    assert_eq!(rig.the_sale(1).await.1, "cancelled");
}

#[tokio::test]
async fn an_order_cancelled_after_import_cancels_its_draft_sale() {
    cancelled_after_import("draft").await;
}

#[tokio::test]
async fn an_order_cancelled_after_import_cancels_its_quoted_sale() {
    cancelled_after_import("quotation").await;
}

#[tokio::test]
async fn an_order_edited_while_its_sale_is_a_quotation_rewrites_the_lines() {
    let rig = Rig::new("quotation").await;
    rig.write_orders(&[rig.order(1, "2", "confirmed")]);
    let ws = rig.workspace().await;
    rig.sync(&ws).await;
    rig.write_orders(&[rig.order(1, "5", "confirmed")]);
    let report = rig.sync(&ws).await;
    assert_eq!((report.counts.updated, report.counts.failed), (1, 0), "{report:#?}");
    let (id, state) = rig.the_sale(1).await;
    assert_eq!(state, "quotation", "moved on again after the rewrite");
    let sale = rig.erp.rpc().read("sale.sale", &[id], &["lines", "total_amount"], &none()).await.unwrap().remove(0);
    let lines = rig.erp.rpc().read("sale.line", &tryton_support_ids(&sale["lines"]), &["quantity", "product.code"], &none()).await.unwrap();
    let goods: Vec<&serde_json::Map<String, Value>> = lines.iter().filter(|l| l.get("product.").and_then(|p| p.get("code")) == Some(&json!(rig.sku))).collect();
    assert_eq!(goods.len(), 1, "{lines:?}");
    assert_eq!(goods[0]["quantity"].as_f64(), Some(5.0));
}

#[tokio::test]
async fn an_order_edited_after_tryton_began_processing_is_parked_with_the_change() {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "2", "confirmed")]);
    let ws = rig.workspace().await;
    rig.sync(&ws).await;
    assert_eq!(rig.the_sale(1).await.1, "processing");
    rig.write_orders(&[rig.order(1, "1", "confirmed")]);
    let report = rig.sync(&ws).await;
    assert_eq!(report.counts.failed, 1, "{report:#?}");
    let f = &report.failures[0];
    assert_eq!(f.field.as_deref(), Some("lines[0].quantity"));
    assert!(f.message.contains("processing") && f.message.contains("lines[0].quantity: \"2\" → \"1\""), "{}", f.message);
    assert!(!f.retryable);
}

fn tryton_support_ids(v: &Value) -> Vec<i64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_partial_refund_becomes_one_credit_note_with_its_gst_even_when_synced_twice() {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "2", "confirmed")]);
    let ws = rig.workspace().await;
    rig.sync(&ws).await;
    let mut refunded = rig.order(1, "2", "partially_refunded");
    refunded["refunds"] = json!([{"id": "R1", "reason": "one arrived broken", "lines": [{"sku": rig.sku, "quantity": "1", "amount": "10", "tax": "1"}], "tax": "1", "total": "11"}]);
    rig.write_orders(&[refunded]);
    let report = rig.sync(&ws).await;
    assert_eq!((report.counts.updated, report.counts.failed), (1, 0), "{report:#?}");

    // Ferry loses its state and syncs the order again: the sale is found, the credit note too.
    std::fs::remove_file(rig.dir.path().join("state.db")).unwrap();
    let fresh = rig.workspace().await;
    let again = rig.sync(&fresh).await;
    assert_eq!((again.counts.resumed, again.counts.failed), (1, 0), "{again:#?}");

    let reference = format!("{}/R1", rig.number(1));
    let notes = rig.erp.rpc().search_read("account.invoice", json!([["reference", "=", reference], ["type", "=", "out"]]), 0, None, Value::Null, &["total_amount", "tax_amount"], &none()).await.unwrap();
    assert_eq!(notes.len(), 1, "one credit note for refund R1: {notes:?}");
    let amount = |f: &str| ferry_connectors::tryton::rpc::as_decimal(&notes[0][f]).unwrap();
    assert_eq!((amount("total_amount"), amount("tax_amount")), (d("-11"), d("-1")));
}


#[tokio::test]
async fn an_order_cancelled_while_tryton_processes_its_sale_cancels_its_shipment_and_invoice() {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "2", "confirmed")]);
    let ws = rig.workspace().await;
    rig.sync(&ws).await;
    let (id, state) = rig.the_sale(1).await;
    assert_eq!(state, "processing", "Tryton processes a confirmed sale at once");
    rig.write_orders(&[rig.order(1, "2", "cancelled")]);
    let report = rig.sync(&ws).await;
    assert_eq!((report.counts.updated, report.counts.failed), (1, 0), "{report:#?}");

    let rpc = rig.erp.rpc();
    let sale = rpc.read("sale.sale", &[id], &["shipments", "invoices", "state"], &none()).await.unwrap().remove(0);
    let shipments = record_states(&rig, "stock.shipment.out", &sale["shipments"]).await;
    assert!(!shipments.is_empty() && shipments.iter().all(|s| s == "cancelled"), "{shipments:?}");
    let invoices = record_states(&rig, "account.invoice", &sale["invoices"]).await;
    assert!(invoices.iter().all(|s| s == "cancelled"), "{invoices:?}");
    let notes = rpc.search("ir.note", json!([["resource", "=", format!("sale.sale,{id}")], ["message", "like", "%cancelled in the shop%"]]), 0, None, Value::Null, &none()).await.unwrap();
    assert_eq!(notes.len(), 1);
    // Synced again: nothing more to do — also after Ferry lost its state (the sale is found settled).
    let again = rig.sync(&ws).await;
    assert_eq!((again.counts.unchanged, again.counts.failed), (1, 0), "{again:#?}");
    std::fs::remove_file(rig.dir.path().join("state.db")).unwrap();
    let fresh = rig.sync(&rig.workspace().await).await;
    assert_eq!((fresh.counts.resumed, fresh.counts.failed), (1, 0), "{fresh:#?}");
    let notes = rpc.search("ir.note", json!([["resource", "=", format!("sale.sale,{id}")], ["message", "like", "%cancelled in the shop%"]]), 0, None, Value::Null, &none()).await.unwrap();
    assert_eq!(notes.len(), 1, "noted once");
    // Tryton's way: with its moves and invoices ignored the sale completes, nothing delivered or invoiced.
    assert_eq!(rig.the_sale(1).await.1, "done");
}

#[tokio::test]
async fn an_order_cancelled_after_its_goods_left_is_parked_as_needing_a_return() {
    let rig = Rig::new("confirmed").await;
    rig.write_orders(&[rig.order(1, "1", "confirmed")]);
    let ws = rig.workspace().await;
    rig.sync(&ws).await;
    let (id, _) = rig.the_sale(1).await;
    let product = Setup(&rig.erp).id("product.product", json!([["code", "=", rig.sku]])).await;
    Setup(&rig.erp).stock(product, 5).await;
    Setup(&rig.erp).ship_sale(id, &format!("TRK-{}", rig.u)).await;
    rig.write_orders(&[rig.order(1, "1", "cancelled")]);
    let report = rig.sync(&ws).await;
    assert_eq!(report.counts.failed, 1, "{report:#?}");
    let f = &report.failures[0];
    assert_eq!(f.field.as_deref(), Some("status"));
    assert!(f.message.contains("needs a return") && f.message.contains("is done"), "{}", f.message);
    assert!(!f.retryable);
}

/// The `state` of each record listed in a one2many field.
async fn record_states(rig: &Rig, model: &str, ids: &Value) -> Vec<String> {
    let ids = tryton_support_ids(ids);
    if ids.is_empty() {
        return vec![];
    }
    let rows = rig.erp.rpc().read(model, &ids, &["state"], &none()).await.unwrap();
    rows.iter().map(|r| r["state"].as_str().unwrap_or_default().to_owned()).collect()
}
