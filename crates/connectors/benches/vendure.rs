//! Vendure connector throughput against the live peer (scripts/peers/vendure/up.sh, port 18300).
//!
//!     cargo bench -p ferry-connectors --features vendure --bench vendure
//!
//! 1. pushes FERRY_BENCH_PRODUCTS (default 10,000) new SKUs (groups of 4 colour variants, 20 categories)
//!    in batches of the connector's batch size;
//! 2. re-syncs with 1 % of them changed (new price): what the engine sends after its hash check;
//! 3. makes sure FERRY_BENCH_ORDERS (default 1,000) paid orders exist (placing the missing ones through
//!    the Shop API, not timed as connector work) and reads them all through the connector.
//!
//! Prints records/s, API calls per record and the time per GraphQL operation.

#[path = "../tests/support/mod.rs"]
mod support;

use ferry_connectors::vendure::{Options, Vendure};
use ferry_engine::{Connector, ReadItem, ReadRequest, WriteRecord};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn product(run: &str, i: usize, price_cents: i64) -> WriteRecord {
    let colors = ["Red", "Blue", "Green", "Black"];
    let v = json!({
        "sku": format!("B{run}-{i:05}"),
        "group": format!("B{run}-G{:05}", i / 4),
        "name": format!("Bench item {i} {}", colors[i % 4]),
        "description": "Benchmark product",
        "options": {"Color": colors[i % 4]},
        "categories": [["Bench", format!("Category {}", i % 20)]],
        "media": [{"kind": "image", "url": format!("https://cdn.example.test/{run}/{i}.jpg")}],
        "price": {"amount": format!("{}.{:02}", price_cents / 100, price_cents % 100), "currency": "AUD", "tax_inclusive": false},
    });
    let record = Record::parse(Stream::Products, v, "bench").unwrap();
    WriteRecord { key: record.key(), target_id: None, record }
}

struct Phase {
    name: &'static str,
    records: usize,
    elapsed: Duration,
    calls: u64,
    failures: usize,
    ops: Vec<(String, u64, Duration)>,
}

fn diff_ops(before: &[(String, u64, Duration)], after: &[(String, u64, Duration)]) -> Vec<(String, u64, Duration)> {
    let b: BTreeMap<&str, (u64, Duration)> = before.iter().map(|(k, n, d)| (k.as_str(), (*n, *d))).collect();
    let mut out: Vec<_> = after
        .iter()
        .map(|(k, n, d)| {
            let (bn, bd) = b.get(k.as_str()).copied().unwrap_or_default();
            (k.clone(), n - bn, *d - bd)
        })
        .filter(|(_, n, _)| *n > 0)
        .collect();
    out.sort_by_key(|o| std::cmp::Reverse(o.2));
    out
}

async fn write_all(v: &Vendure, name: &'static str, records: Vec<WriteRecord>) -> Phase {
    let batch = v.describe().batch_size;
    let (calls0, ops0) = (v.api_calls(), v.api_timings());
    let started = Instant::now();
    let mut failures = 0;
    let n = records.len();
    for (k, chunk) in records.chunks(batch).enumerate() {
        let out = v.write(Stream::Products, chunk.to_vec()).await.expect("batch write");
        for o in &out {
            if let Err(f) = &o.result {
                failures += 1;
                if failures <= 3 {
                    eprintln!("  failure {}: {f:?}", o.key);
                }
            }
        }
        if k % 10 == 9 {
            eprintln!("  {name}: {} / {n} in {:.1?}", (k + 1) * batch, started.elapsed());
        }
    }
    Phase { name, records: n, elapsed: started.elapsed(), calls: v.api_calls() - calls0, failures, ops: diff_ops(&ops0, &v.api_timings()) }
}

/// Shop API: one guest order of `qty` × variant, paid with the test method.
async fn place_order(http: &reqwest::Client, shop: &str, variant: &str, email: &str) -> Result<(), String> {
    let mut token: Option<String> = None;
    let steps: Vec<(String, Value)> = vec![
        ("mutation($v:ID!){ addItemToOrder(productVariantId:$v, quantity:2){ ... on Order { id } ... on ErrorResult { errorCode message } } }".into(), json!({"v": variant})),
        ("mutation($i:CreateCustomerInput!){ setCustomerForOrder(input:$i){ ... on Order { id } ... on ErrorResult { errorCode message } } }".into(),
         json!({"i": {"emailAddress": email, "firstName": "Bench", "lastName": "Buyer"}})),
        ("mutation($i:CreateAddressInput!){ setOrderShippingAddress(input:$i){ ... on Order { id } ... on ErrorResult { errorCode message } } }".into(),
         json!({"i": {"fullName": "Bench Buyer", "streetLine1": "1 Test St", "city": "Sydney", "postalCode": "2000", "countryCode": "AU"}})),
        ("mutation{ setOrderShippingMethod(shippingMethodId:[\"1\"]){ ... on Order { id } ... on ErrorResult { errorCode message } } }".into(), json!({})),
        ("mutation{ transitionOrderToState(state:\"ArrangingPayment\"){ ... on Order { id } ... on ErrorResult { errorCode message } } }".into(), json!({})),
        ("mutation{ addPaymentToOrder(input:{method:\"test-pay\", metadata:{}}){ ... on Order { id } ... on ErrorResult { errorCode message } } }".into(), json!({})),
    ];
    for (q, vars) in steps {
        let mut req = http.post(shop).json(&json!({"query": q, "variables": vars}));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if let Some(t) = resp.headers().get("vendure-auth-token") {
            token = Some(t.to_str().unwrap_or_default().to_owned());
        }
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if body.get("errors").is_some() || body.to_string().contains("errorCode") {
            return Err(format!("{q}: {body}"));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let n_products = env_usize("FERRY_BENCH_PRODUCTS", 10_000);
    let n_orders = env_usize("FERRY_BENCH_ORDERS", 1_000);
    let peer = support::vendure();
    let options: Options = serde_json::from_value(json!({"url": peer.base_url, "password": peer.password})).unwrap();
    let v = Vendure::new(options, "bench").unwrap();
    v.check().await.expect("vendure check");
    let run = support::unique();
    let mut phases = Vec::new();

    // 1. full push
    let records: Vec<WriteRecord> = (0..n_products).map(|i| product(&run, i, 1000 + (i as i64 % 9000))).collect();
    phases.push(write_all(&v, "push new products", records).await);

    // 2. 1 % changed: the engine's hash check hands the connector only these.
    let changed: Vec<WriteRecord> = (0..n_products).step_by(100).map(|i| product(&run, i, 1000 + (i as i64 % 9000) + 1)).collect();
    phases.push(write_all(&v, "re-sync 1 % changed", changed).await);

    // 3. orders
    let existing = count_orders(&v).await;
    if existing < n_orders {
        let missing = n_orders - existing;
        eprintln!("  placing {missing} orders through the Shop API ({existing} exist) ...");
        let sku = format!("B{run}-00000");
        let stock = Record::parse(Stream::Stock, json!({"sku": sku, "on_hand": "1000000"}), "bench").unwrap();
        v.write(Stream::Stock, vec![WriteRecord { key: stock.key(), target_id: None, record: stock }]).await.unwrap();
        let variant = v.variant_id(&sku).await.expect("variant look-up").expect("the bench variant exists");
        let http = reqwest::Client::new();
        let started = Instant::now();
        let results: Vec<Result<(), String>> = futures::stream::iter(0..missing)
            .map(|k| {
                let (http, shop, variant) = (http.clone(), peer.shop_api.clone(), variant.clone());
                let email = format!("bench-{run}-{k}@example.test");
                async move { place_order(&http, &shop, &variant, &email).await }
            })
            .buffer_unordered(6)
            .collect()
            .await;
        let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        eprintln!("  placed {} orders in {:.1?} ({} failed{})", missing - bad.len(), started.elapsed(), bad.len(), bad.first().map(|e| format!(": {e}")).unwrap_or_default());
    }
    let (calls0, ops0) = (v.api_calls(), v.api_timings());
    let started = Instant::now();
    let items: Vec<ReadItem> = v.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: None }).map(|r| r.expect("order read")).collect().await;
    let orders = items.iter().filter(|i| matches!(i, ReadItem::Record(_))).count();
    let invalid = items.iter().filter(|i| matches!(i, ReadItem::Invalid { .. })).count();
    phases.push(Phase { name: "read all orders", records: orders, elapsed: started.elapsed(), calls: v.api_calls() - calls0, failures: invalid, ops: diff_ops(&ops0, &v.api_timings()) });

    println!("\nVendure connector benchmark (run {run}; Vendure 3.7.3 on sql.js, 127.0.0.1)");
    println!("{:<24} {:>8} {:>10} {:>10} {:>8} {:>12} {:>9}", "phase", "records", "seconds", "records/s", "calls", "calls/record", "failures");
    for p in &phases {
        println!(
            "{:<24} {:>8} {:>10.1} {:>10.1} {:>8} {:>12.3} {:>9}",
            p.name,
            p.records,
            p.elapsed.as_secs_f64(),
            p.records as f64 / p.elapsed.as_secs_f64(),
            p.calls,
            p.calls as f64 / p.records.max(1) as f64,
            p.failures
        );
    }
    for p in &phases {
        println!("\n{}: time per GraphQL operation (requests, seconds, share)", p.name);
        let total: f64 = p.ops.iter().map(|o| o.2.as_secs_f64()).sum();
        for (op, n, d) in &p.ops {
            println!("  {op:<28} {n:>6} {:>9.2} {:>6.1}%", d.as_secs_f64(), 100.0 * d.as_secs_f64() / total.max(1e-9));
        }
    }
}

async fn count_orders(v: &Vendure) -> usize {
    let items: Vec<ReadItem> = v.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: None }).map(|r| r.expect("order read")).collect().await;
    items.iter().filter(|i| !matches!(i, ReadItem::Checkpoint(_))).count()
}
