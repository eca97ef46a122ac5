//! Web orders into the live Tryton (scripts/peers/tryton/up.sh, port 18000) as posted and paid customer
//! invoices (`orders_as = "invoice"`), through the engine from a JSONL folder: the time per order of
//! create → amounts check → post → pay, and a check that every order ends as exactly one paid invoice.
//! Optionally with the project's fault proxy failing a share of the calls, as benches/tryton_faults.rs.
//!
//!     cargo bench -p ferry-connectors --features tryton,jsonl --bench tryton_invoices
//!     FERRY_BENCH_ORDERS=200 FERRY_BENCH_FAULT_SHARE=0.1 cargo bench … (defaults: 1000 orders, no faults)

#[path = "../tests/support/mod.rs"]
mod support;

use chrono::Utc;
use ferry_engine::{Config, Replay, RunOptions, Workspace, holder_id, run::NoProgress};
use ferry_testkit::{Fault, FaultProxy, RetryAfter};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{Setup, d, none, uniq};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let orders: usize = env("FERRY_BENCH_ORDERS", 1000);
    let share: f64 = env("FERRY_BENCH_FAULT_SHARE", 0.0);
    let batch: usize = env("FERRY_BENCH_BATCH", 50);
    let erp = support::tryton(json!({}));
    let u = uniq();
    let skus: Vec<String> = (0..5).map(|i| format!("IB-{u}-{i}")).collect();
    for sku in &skus {
        Setup(&erp).product(sku, &format!("Invoice bench {sku}"), "10", "4", &[], &[""]).await;
    }
    // the bench's own payment method on the cash journal and the chart's cash account
    let method = format!("Bench card {u}");
    let journal = Setup(&erp).id("account.journal", json!([["type", "=", "cash"]])).await;
    let cash = Setup(&erp).id("account.account", json!([["code", "=", "1.1.1"]])).await;
    let company = erp.rpc().context().await.unwrap()["company"].clone();
    erp.rpc()
        .create("account.invoice.payment.method", vec![json!({"name": method, "company": company, "journal": journal, "credit_account": cash, "debit_account": cash})], &none())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    let mut text = String::new();
    for n in 0..orders {
        let sku = &skus[n % skus.len()];
        let qty = 1 + n % 3;
        let net = d(&qty.to_string()) * d("10.05");
        let freight = d("7.50");
        let tax = ((net * d("0.1")).round_dp(2)) + d("0.75");
        let total = net + freight + tax;
        let order = json!({
            "number": format!("IB-{u}-{n:05}"), "placed_at": Utc::now(), "status": "confirmed", "currency": "AUD", "prices_include_tax": false,
            "lines": [{"sku": sku, "quantity": qty.to_string(), "unit_price": "10.05", "total": net.to_string()}],
            "shipping": [{"method": "Standard", "amount": freight.to_string()}],
            "payments": [{"method": "card", "amount": total.to_string(), "reference": format!("ch_{n}"), "status": "settled"}],
            "totals": {"subtotal": net.to_string(), "shipping": freight.to_string(), "tax": tax.to_string(), "total": total.to_string()},
            "billing_address": {"name": "Bench Buyer", "street": ["1 Bench St"], "city": "Sydney", "postcode": "2000", "country": "AU"},
        });
        text.push_str(&format!("{order}\n"));
    }
    std::fs::write(dir.path().join("web/orders.jsonl"), text).unwrap();

    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
    proxy.set_hold(Duration::from_secs(25));
    let kinds = [Fault::Status(502), Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) }, Fault::Timeout, Fault::DropAfterForward];
    if share > 0.0 {
        proxy.set_random(share, &kinds, 20261203);
    }
    // Posting a batch of 50 takes Tryton (SQLite, a loaded machine) several seconds: the connector's default
    // timeout, and a shorter one only with faults (a `Timeout` fault then costs seconds, not a minute)
    let timeout = if share > 0.0 { 20 } else { 60 };
    let erp_options = format!("orders_as = \"invoice\"\ntimeout_seconds = {timeout}\n[connections.erp.invoices]\nstate = \"posted\"\npayment_method = \"{method}\"\n");
    let config = support::web_orders_into_tryton_toml(&proxy.url(), &erp_options, &format!("batch_size = {batch}"));
    let ws = Workspace::open(Config::parse(&config, dir.path().to_owned()).unwrap(), ferry_connectors::registry()).await.unwrap();

    println!("{orders} orders into Tryton as posted and paid invoices, batches of {batch}, {:.0} % of RPC calls failing transiently", share * 100.0);
    let started = Instant::now();
    let mut runs = 0;
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut aborted = false;
    loop {
        runs += 1;
        // The first run reads the orders, as does one after a run that aborted (its checkpoint stayed
        // before the batch it gave up on); otherwise replay what was parked (`ferry failures retry orders`).
        let replay = if runs == 1 || aborted { Replay::Due } else { Replay::AllOnly };
        let t = Instant::now();
        let report = ws.sync("orders", &RunOptions { holder: holder_id(), replay, ..Default::default() }, &NoProgress).await.unwrap();
        let c = report.counts;
        for (k, v) in [("created", c.created), ("resumed", c.resumed), ("unchanged", c.unchanged), ("failed", c.failed)] {
            *totals.entry(k).or_default() += v;
        }
        println!(
            "run {runs}: {:.1} s, created {}, resumed {}, failed {}{}",
            t.elapsed().as_secs_f64(),
            c.created,
            c.resumed,
            c.failed,
            report.aborted.as_ref().map(|a| format!(", aborted: {a}")).unwrap_or_default()
        );
        aborted = report.aborted.is_some();
        let open = ws.store().failures(Some("orders"), None).await.unwrap();
        if report.aborted.is_none() && open.is_empty() {
            break;
        }
        if share == 0.0 {
            panic!("failures without faults: {:#?}", open.iter().take(3).collect::<Vec<_>>());
        }
        assert!(runs < 20, "did not converge in 20 runs");
    }
    let wall = started.elapsed();
    let stats = proxy.stats();
    proxy.clear();

    // The outcome, read straight from Tryton: one invoice per order, each paid once.
    let rows = erp
        .rpc()
        .search_read("account.invoice", json!([["type", "=", "out"], ["reference", "like", format!("IB-{u}-%")]]), 0, None, Value::Null, &["reference", "state", "payment_lines"], &none())
        .await
        .unwrap();
    let mut per_order: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    for r in &rows {
        let paid_lines = r["payment_lines"].as_array().map(Vec::len).unwrap_or_default();
        per_order.entry(r["reference"].as_str().unwrap().to_owned()).or_default().push((r["state"].as_str().unwrap().to_owned(), paid_lines));
    }
    let twice = per_order.values().filter(|s| s.len() > 1).count();
    let unpaid = per_order.values().flatten().filter(|(s, n)| s != "paid" || *n != 1).count();
    println!(
        "done in {runs} run(s), {:.1} s: {:.1} orders/s, {:.0} ms per order; proxy: {} requests ({:.1} per order), {} faults",
        wall.as_secs_f64(),
        orders as f64 / wall.as_secs_f64(),
        wall.as_secs_f64() * 1000.0 / orders as f64,
        stats.requests,
        stats.requests as f64 / orders as f64,
        stats.faults
    );
    println!("totals over the runs: {totals:?}");
    println!("Tryton: {} orders with an invoice, {} with more than one, {} not paid exactly once", per_order.len(), twice, unpaid);
    assert_eq!((per_order.len(), twice, unpaid), (orders, 0, 0), "every order exactly one invoice, posted and paid once");
}
