//! Vendure connector throughput against a live peer (scripts/peers/vendure/up.sh).
//!
//!     cargo bench -p ferry-connectors --features vendure --bench vendure
//!
//! By default it uses the tests' peer (sql.js, port 18300, `<target dir>/peers/vendure`). To bench
//! against a peer of its own, e.g. on PostgreSQL:
//!
//!     FERRY_BENCH_VENDURE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/ferry_vendure_bench \
//!     FERRY_BENCH_VENDURE_PORT=18500 cargo bench -p ferry-connectors --features vendure --bench vendure
//!
//! - `FERRY_BENCH_VENDURE_DATABASE_URL`: start (or reuse) a peer on PostgreSQL (up.sh's `DATABASE_URL`;
//!   the database is created when missing);
//! - `FERRY_BENCH_VENDURE_PORT` (default 18500) and `FERRY_BENCH_VENDURE_DIR` (default
//!   `<target dir>/peers/vendure-pg`, or `vendure-bench` on sql.js): where that peer runs. Setting any
//!   of the three selects a peer of the benchmark's own, started without `WEBHOOK_URL` (so no event
//!   goes to the tests' webhook port). Stop it with `scripts/peers/vendure/down.sh DIR [--wipe]`.
//!
//! 1. pushes FERRY_BENCH_PRODUCTS (default 10,000) new SKUs (groups of 4 colour variants, 20 categories)
//!    in batches of the connector's batch size;
//! 2. re-syncs with 1 % of them changed (new price): what the engine sends after its hash check;
//! 3. makes sure FERRY_BENCH_ORDERS (default 1,000) paid orders exist (placing the missing ones through
//!    the Shop API, not timed as connector work) and reads them all through the connector.
//!
//! Prints records/s, API calls per record, the time per GraphQL operation and the load average (1 min)
//! before and after each phase (the machine may be shared).

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
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

struct Phase {
    name: &'static str,
    records: usize,
    elapsed: Duration,
    calls: u64,
    failures: usize,
    ops: Vec<(String, u64, Duration)>,
    /// 1-minute load average at the start and at the end of the phase.
    load: (f64, f64),
}

/// The 1-minute load average (Linux), or NaN.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
}

/// The peer to measure: the tests' own (sql.js, 18300) unless a FERRY_BENCH_VENDURE_* variable asks for
/// one of the benchmark's own. Returns the peer and a label of its database.
fn peer() -> (support::VendurePeer, String) {
    let db = std::env::var("FERRY_BENCH_VENDURE_DATABASE_URL").ok().filter(|s| !s.is_empty());
    let port = std::env::var("FERRY_BENCH_VENDURE_PORT").ok().filter(|s| !s.is_empty());
    let dir = std::env::var_os("FERRY_BENCH_VENDURE_DIR").filter(|s| !s.is_empty());
    if db.is_none() && port.is_none() && dir.is_none() {
        let p = support::vendure();
        let peer = support::VendurePeer {
            base_url: p.base_url.clone(),
            admin_api: p.admin_api.clone(),
            shop_api: p.shop_api.clone(),
            username: p.username.clone(),
            password: p.password.clone(),
        };
        return (peer, "sql.js (the tests' peer)".into());
    }
    let port: u16 = port.map(|p| p.parse().expect("FERRY_BENCH_VENDURE_PORT is a port number")).unwrap_or(18500);
    let dir = dir.map(std::path::PathBuf::from).unwrap_or_else(|| support::vendure_peer_dir(if db.is_some() { "vendure-pg" } else { "vendure-bench" }));
    eprintln!("  starting / finding the Vendure peer in {} on port {port} ...", dir.display());
    let peer = support::start_vendure(&dir, port, db.as_deref(), None);
    let label = match &db {
        // Only the database name: the URL may hold a password.
        Some(url) => format!("PostgreSQL (database {})", url.split('?').next().unwrap_or_default().rsplit('/').next().unwrap_or_default()),
        None => "sql.js".into(),
    };
    (peer, label)
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
    let load0 = load_average();
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
            eprintln!("  {name}: {} / {n} in {:.1?} (load {:.2})", (k + 1) * batch, started.elapsed(), load_average());
        }
    }
    let elapsed = started.elapsed();
    Phase { name, records: n, elapsed, calls: v.api_calls() - calls0, failures, ops: diff_ops(&ops0, &v.api_timings()), load: (load0, load_average()) }
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
    let (peer, backend) = peer();
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
        v.write(Stream::Stock, vec![WriteRecord { key: stock.key(), target_id: None, record: stock, previous: None }]).await.unwrap();
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
    let load0 = load_average();
    let started = Instant::now();
    let items: Vec<ReadItem> = v.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: None }).map(|r| r.expect("order read")).collect().await;
    let elapsed = started.elapsed();
    let orders = items.iter().filter(|i| matches!(i, ReadItem::Record(_))).count();
    let invalid = items.iter().filter(|i| matches!(i, ReadItem::Invalid { .. })).count();
    // A paged read must hand over every order exactly once.
    let distinct = items
        .iter()
        .filter_map(|i| match i {
            ReadItem::Record(r) => r.data["number"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct != orders {
        eprintln!("  WARNING: the order read returned {orders} records but only {distinct} distinct order numbers");
    }
    phases.push(Phase { name: "read all orders", records: orders, elapsed, calls: v.api_calls() - calls0, failures: invalid, ops: diff_ops(&ops0, &v.api_timings()), load: (load0, load_average()) });

    println!("\nVendure connector benchmark (run {run}; Vendure 3.7.3 on {backend}, {})", peer.base_url);
    println!(
        "{:<24} {:>8} {:>10} {:>10} {:>8} {:>12} {:>9} {:>12}",
        "phase", "records", "seconds", "records/s", "calls", "calls/record", "failures", "load before/after"
    );
    for p in &phases {
        println!(
            "{:<24} {:>8} {:>10.1} {:>10.1} {:>8} {:>12.3} {:>9} {:>8.2}/{:.2}",
            p.name,
            p.records,
            p.elapsed.as_secs_f64(),
            p.records as f64 / p.elapsed.as_secs_f64(),
            p.calls,
            p.calls as f64 / p.records.max(1) as f64,
            p.failures,
            p.load.0,
            p.load.1
        );
    }
    println!("read all orders: {distinct} distinct order numbers");
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
