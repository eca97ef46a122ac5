//! Importing orders into the live Tryton (scripts/peers/tryton/up.sh, port 18000) through the engine,
//! with the project's fault proxy failing a share of every RPC call transiently (502, 429 with
//! Retry-After, a timeout, or the answer dropped after Tryton acted). Measures how many runs it takes to
//! converge (the first sync, then `ferry failures retry` passes for what was parked), the time, and checks
//! that every order ends as exactly one sale in the configured state.
//!
//!     cargo bench -p ferry-connectors --features tryton,jsonl --bench tryton_faults
//!     FERRY_BENCH_ORDERS=200 FERRY_BENCH_FAULT_SHARE=0.1 cargo bench … (defaults: 1000 orders, 10 %)

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
    let share: f64 = env("FERRY_BENCH_FAULT_SHARE", 0.1);
    let erp = support::tryton(json!({}));
    let u = uniq();
    let skus: Vec<String> = (0..5).map(|i| format!("FLT-{u}-{i}")).collect();
    for sku in &skus {
        Setup(&erp).product(sku, &format!("Fault bench {sku}"), "10", "4", &[], &[""]).await;
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    let mut text = String::new();
    for n in 0..orders {
        let sku = &skus[n % skus.len()];
        let qty = 1 + n % 3;
        let net = d(&qty.to_string()) * d("10.05");
        let tax = (net * d("0.1")).round_dp(2);
        let order = json!({
            "number": format!("FB-{u}-{n:05}"), "placed_at": Utc::now(), "status": "confirmed", "currency": "AUD", "prices_include_tax": false,
            "lines": [{"sku": sku, "quantity": qty.to_string(), "unit_price": "10.05", "total": net.to_string()}],
            "totals": {"subtotal": net.to_string(), "tax": tax.to_string(), "total": (net + tax).to_string()},
            "billing_address": {"name": "Bench Buyer", "street": ["1 Bench St"], "city": "Sydney", "postcode": "2000", "country": "AU"},
        });
        text.push_str(&format!("{order}\n"));
    }
    std::fs::write(dir.path().join("web/orders.jsonl"), text).unwrap();

    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", support::port()));
    proxy.set_hold(Duration::from_secs(8));
    let kinds = [Fault::Status(502), Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) }, Fault::Timeout, Fault::DropAfterForward];
    proxy.set_random(share, &kinds, 20261202);
    let config = support::web_orders_into_tryton_toml(&proxy.url(), "order_state = \"confirmed\"\ntimeout_seconds = 5", "batch_size = 50");
    let ws = Workspace::open(Config::parse(&config, dir.path().to_owned()).unwrap(), ferry_connectors::registry()).await.unwrap();

    println!("{orders} orders into Tryton, {:.0} % of RPC calls failing transiently ({})", share * 100.0, kinds.iter().map(Fault::label).collect::<Vec<_>>().join(", "));
    let started = Instant::now();
    let mut runs = 0;
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    loop {
        runs += 1;
        // The first run reads the orders; later ones replay what was parked (`ferry failures retry orders`).
        let replay = if runs == 1 { Replay::Due } else { Replay::AllOnly };
        let t = Instant::now();
        let report = ws.sync("orders", &RunOptions { holder: holder_id(), replay, ..Default::default() }, &NoProgress).await.unwrap();
        let c = report.counts;
        for (k, v) in [("created", c.created), ("resumed", c.resumed), ("unchanged", c.unchanged), ("failed", c.failed)] {
            *totals.entry(k).or_default() += v;
        }
        println!(
            "run {runs}: {:.1} s, created {}, resumed {}, unchanged {}, failed {}{}",
            t.elapsed().as_secs_f64(),
            c.created,
            c.resumed,
            c.unchanged,
            c.failed,
            report.aborted.as_ref().map(|a| format!(", aborted: {a}")).unwrap_or_default()
        );
        let open = ws.store().failures(Some("orders"), None).await.unwrap().len();
        if report.aborted.is_none() && open == 0 {
            break;
        }
        assert!(runs < 20, "did not converge in 20 runs");
    }
    let wall = started.elapsed();
    let stats = proxy.stats();
    proxy.clear();

    // The outcome, read straight from Tryton: one sale per order, each confirmed (processing).
    let rows = erp
        .rpc()
        .search_read("sale.sale", json!([["web_id", "like", format!("FB-{u}-%")]]), 0, None, Value::Null, &["web_id", "state"], &none())
        .await
        .unwrap();
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        per_order.entry(r["web_id"].as_str().unwrap().to_owned()).or_default().push(r["state"].as_str().unwrap().to_owned());
    }
    let twice = per_order.values().filter(|s| s.len() > 1).count();
    let behind = per_order.values().flatten().filter(|s| !matches!(s.as_str(), "confirmed" | "processing")).count();
    println!(
        "converged in {runs} run(s), {:.1} s ({:.1} orders/s); proxy: {} requests, {} faults {:?}",
        wall.as_secs_f64(),
        orders as f64 / wall.as_secs_f64(),
        stats.requests,
        stats.faults,
        stats.faults_by_kind
    );
    println!("totals over the runs: {totals:?}");
    println!("Tryton: {} orders with a sale, {} with more than one, {} sales not confirmed", per_order.len(), twice, behind);
    assert_eq!((per_order.len(), twice, behind), (orders, 0, 0), "every order exactly once, confirmed");
}
