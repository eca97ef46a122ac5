//! Shopify connector against the project's Shopify emulator (scripts/peers/shopify/up.sh): what a sync
//! costs in requests and in **calculated query cost points**, the figures Shopify's rate limit is made of.
//!
//!     cargo bench --profile dev -p ferry-connectors --features shopify --bench shopify
//!
//! (the `bench` profile works too; its thin-LTO build takes much longer, and the times are the emulator's.)
//!
//! `FERRY_BENCH_SHOPIFY_BATCH` sets the products flow's batch size (default 50; 1000 takes the bulk mutation
//! path). The emulator is the benchmark's own: `FERRY_BENCH_SHOPIFY_PORT` (default 18450) in
//! `FERRY_BENCH_SHOPIFY_DIR` (default `<peers dir>/shopify-bench`), reset at the start (its shop then
//! holds only the benchmark's products and orders). Its leaky bucket is made large (1,000,000 points,
//! restored at 1,000,000/s) so that emulated throttling does not dominate the times; the points spent are
//! what a real shop's bucket would be charged, and the table converts them into the time they take at the
//! Standard plan's documented restore rate (100 points/s). Stop it with
//! `scripts/peers/shopify/down.sh DIR`.
//!
//! 1. pushes FERRY_BENCH_PRODUCTS (default 10,000) products (groups of 4 colour variants, 20 categories)
//!    through the engine: a flow from a JSONL folder to the shop, so batches, hashes and state are the
//!    engine's;
//! 2. changes the price of 1 % of them in the file and syncs again: the engine's hash check hands the
//!    connector only those;
//! 3. places FERRY_BENCH_ORDERS (default 10,000) orders through the emulator's `POST /_emulator/orders`
//!    (not timed as connector work), then reads them all twice through the connector: a full read (one
//!    bulk operation, JSONL) and an incremental read (paged `orders` query from a checkpoint before them).
//!
//! Prints records/s, requests, points, points per record, the Standard-plan time, the time per GraphQL
//! operation, and the load average (1 min) before and after each phase (the machine may be shared).

use ferry_connectors::jsonl::JsonlFactory;
use ferry_connectors::shopify::client::OperationUsage;
use ferry_connectors::shopify::{Options, Shopify};
use ferry_engine::{BuildContext, Config, Connector, ConnectorError, ConnectorFactory, ReadItem, ReadRequest, Registry, RunOptions, Workspace, holder_id, run::NoProgress};
use ferry_model::Stream;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "ferry-test-token";
/// Shopify's documented restore rate of the Standard plan (points per second).
const STANDARD_RESTORE_RATE: f64 = 100.0;
/// The emulator's bucket during the benchmark: large enough never to throttle.
const BENCH_BUCKET: u64 = 1_000_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The 1-minute load average (Linux), or NaN.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
}

/// Starts (or finds running) the benchmark's emulator; returns its base URL.
fn emulator_up(dir: &Path, port: u16) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/shopify/up.sh");
    eprintln!("  starting / finding the Shopify emulator in {} on port {port} ...", dir.display());
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg(port.to_string())
        .env("SHOPIFY_ACCESS_TOKEN", TOKEN)
        .env("SHOPIFY_BUCKET_MAX", BENCH_BUCKET.to_string())
        .env("SHOPIFY_RESTORE_RATE", BENCH_BUCKET.to_string())
        .env_remove("SHOPIFY_WEBHOOK_URL")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed:\n{}{}", script.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    format!("http://127.0.0.1:{port}")
}

/// A test control of the emulator (`/_emulator/...`): POST `body`.
async fn control(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Result<Value, String> {
    let url = format!("{base}{path}");
    let resp = http.post(&url).json(&body).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}: {v}"));
    }
    Ok(v)
}

fn product_line(i: usize, price_cents: i64) -> Value {
    let colors = ["Red", "Blue", "Green", "Black"];
    json!({
        "sku": format!("BS-{i:05}"),
        "group": format!("BS-G{:05}", i / 4),
        "name": format!("Bench item {i} {}", colors[i % 4]),
        "description": "Benchmark product",
        "options": {"Color": colors[i % 4]},
        "categories": [["Bench", format!("Category {}", i % 20)]],
        "media": [{"kind": "image", "url": format!("https://cdn.example.test/bench/{i}.jpg")}],
        "price": {"amount": format!("{}.{:02}", price_cents / 100, price_cents % 100), "currency": "AUD", "tax_inclusive": false},
    })
}

fn price_cents(i: usize) -> i64 {
    1000 + (i as i64 % 9000)
}

/// `products.jsonl` in `dir`: every product, those with `i % 100 == 0` at `bump` cents more.
fn write_products(dir: &Path, n: usize, bump: i64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("products.jsonl")).unwrap());
    for i in 0..n {
        let extra = if i % 100 == 0 { bump } else { 0 };
        writeln!(f, "{}", product_line(i, price_cents(i) + extra)).unwrap();
    }
    f.flush().unwrap();
}

/// The registry's `shopify` type, except that it keeps the connector it builds so the benchmark can read
/// its usage counters.
struct KeptShopify(Arc<Mutex<Option<Arc<Shopify>>>>);

impl ConnectorFactory for KeptShopify {
    fn name(&self) -> &'static str {
        "shopify"
    }
    fn summary(&self) -> &'static str {
        "Shopify (kept for the benchmark)"
    }
    fn build(&self, options: &Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let options: Options = serde_json::from_value(options.clone()).map_err(|e| ConnectorError::config(&ctx.connection, e.to_string()))?;
        let shop = Arc::new(Shopify::new(options, &ctx.connection)?);
        *self.0.lock().unwrap() = Some(shop.clone());
        Ok(shop)
    }
}

struct Phase {
    name: String,
    records: usize,
    elapsed: Duration,
    requests: u64,
    throttled: u64,
    points: u64,
    failures: u64,
    ops: Vec<(&'static str, OperationUsage)>,
    load: (f64, f64),
}

fn diff_ops(before: &[(&'static str, OperationUsage)], after: &[(&'static str, OperationUsage)]) -> Vec<(&'static str, OperationUsage)> {
    let b: BTreeMap<&str, OperationUsage> = before.iter().copied().collect();
    let mut out: Vec<_> = after
        .iter()
        .map(|(k, u)| {
            let p = b.get(k).copied().unwrap_or_default();
            (*k, OperationUsage { requests: u.requests - p.requests, points: u.points - p.points, elapsed: u.elapsed - p.elapsed })
        })
        .filter(|(_, u)| u.requests > 0)
        .collect();
    out.sort_by_key(|(_, u)| std::cmp::Reverse(u.points));
    out
}

/// Runs `work` and measures the connector's usage over it.
async fn measure<F: std::future::Future<Output = (usize, u64)>>(shop: &Shopify, name: String, work: F) -> Phase {
    let (usage0, ops0) = (shop.api_usage(), shop.api_usage_by_operation());
    let load0 = load_average();
    let started = Instant::now();
    let (records, failures) = work.await;
    let elapsed = started.elapsed();
    let usage = shop.api_usage();
    Phase {
        name,
        records,
        elapsed,
        requests: usage.0 - usage0.0,
        throttled: usage.1 - usage0.1,
        points: usage.2 - usage0.2,
        failures,
        ops: diff_ops(&ops0, &shop.api_usage_by_operation()),
        load: (load0, load_average()),
    }
}

#[tokio::main]
async fn main() {
    let n_products = env_usize("FERRY_BENCH_PRODUCTS", 10_000);
    let n_orders = env_usize("FERRY_BENCH_ORDERS", 10_000);
    let port: u16 = std::env::var("FERRY_BENCH_SHOPIFY_PORT").ok().filter(|s| !s.is_empty()).map(|p| p.parse().expect("FERRY_BENCH_SHOPIFY_PORT is a port number")).unwrap_or(18450);
    let dir = std::env::var_os("FERRY_BENCH_SHOPIFY_DIR").filter(|s| !s.is_empty()).map(PathBuf::from).unwrap_or_else(|| ferry_testkit::peers_dir().join("shopify-bench"));
    let base = emulator_up(&dir, port);
    let http = reqwest::Client::new();
    // The shop is the benchmark's own: start from the seed, with a bucket that never throttles (the
    // environment above only applies when up.sh starts the emulator, not when it already ran).
    control(&http, &base, "/_emulator/reset", json!({})).await.expect("reset");
    control(&http, &base, "/_emulator/bucket", json!({"max": BENCH_BUCKET, "restoreRate": BENCH_BUCKET, "available": BENCH_BUCKET})).await.expect("bucket");

    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    let config = format!(
        r#"
[state]
path = "{state}"

[connections.files]
type = "jsonl"
path = "{files}"

[connections.shop]
type = "shopify"
shop = "ferry-test.myshopify.com"
base_url = "{base}"
access_token = "{TOKEN}"
bulk_poll_seconds = 1

[flows.products]
source = "files"
target = "shop"
stream = "products"
batch_size = {batch}
"#,
        // The flow's batch size (the engine's default 50, or e.g. 1000: batches of 200+ products take the
        // connector's bulk mutation path).
        batch = env_usize("FERRY_BENCH_SHOPIFY_BATCH", 50),
        state = work.path().join("state.db").display(),
        files = files.display(),
    );
    let config = Config::parse(&config, work.path().to_owned()).expect("benchmark config");
    let kept = Arc::new(Mutex::new(None));
    let mut registry = Registry::default();
    registry.register(Box::new(JsonlFactory));
    registry.register(Box::new(KeptShopify(kept.clone())));
    let ws = Workspace::open(config, registry).await.expect("workspace");
    ws.connection("shop").expect("shop connection");
    let shop: Arc<Shopify> = kept.lock().unwrap().clone().expect("the shop connector was built");
    shop.check().await.expect("shopify check");

    let sync = |label: &'static str| {
        let ws = &ws;
        async move {
            let options = RunOptions { holder: holder_id(), ..Default::default() };
            let report = ws.sync("products", &options, &NoProgress).await.unwrap_or_else(|e| panic!("sync products ({label}): {e}"));
            if let Some(why) = &report.aborted {
                panic!("sync products ({label}) aborted: {why}");
            }
            for f in report.failures.iter().take(3) {
                eprintln!("  failure: {f:?}");
            }
            let c = &report.counts;
            eprintln!("  {label}: read {} created {} updated {} unchanged {} failed {}", c.read, c.created, c.updated, c.unchanged, c.failed);
            ((c.created + c.updated) as usize, c.failed)
        }
    };

    let mut phases = Vec::new();
    // 1. every product new
    write_products(&files, n_products, 0);
    eprintln!("  pushing {n_products} products through the engine ...");
    phases.push(measure(&shop, format!("push {n_products} new products"), sync("push")).await);
    // 2. 1 % with a new price: the engine's hashes pick them out
    write_products(&files, n_products, 1);
    phases.push(measure(&shop, "re-sync, 1 % changed (new price)".into(), sync("re-sync")).await);

    // 3. orders
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    eprintln!("  placing {n_orders} orders through POST /_emulator/orders ...");
    let placing = Instant::now();
    let results: Vec<Result<Value, String>> = futures::stream::iter(0..n_orders)
        .map(|k| {
            let (http, base) = (http.clone(), base.clone());
            // two lines of products of different groups, shipping: an ordinary web order
            let (a, b) = ((k * 7) % n_products.max(1), (k * 13 + 5) % n_products.max(1));
            let body = json!({
                "email": format!("bench-{}@example.test", k % 500),
                "lines": [{"sku": format!("BS-{a:05}"), "quantity": 1 + k % 3}, {"sku": format!("BS-{b:05}"), "quantity": 1}],
                "shipping": {"title": "Standard", "price": "9.95"},
                "tax_rate": "0.10",
            });
            async move { control(&http, &base, "/_emulator/orders", body).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let placed = n_orders - bad.len();
    eprintln!("  placed {placed} orders in {:.1?} ({} failed{})", placing.elapsed(), bad.len(), bad.first().map(|e| format!(": {e}")).unwrap_or_default());

    let read = |checkpoint: Option<Value>| {
        let shop = &shop;
        async move {
            let items: Vec<ReadItem> = shop.read(ReadRequest { stream: Some(Stream::Orders), checkpoint, keys: None }).map(|r| r.expect("order read")).collect().await;
            let orders: Vec<&str> = items
                .iter()
                .filter_map(|i| match i {
                    ReadItem::Record(r) => r.data["number"].as_str(),
                    _ => None,
                })
                .collect();
            let invalid = items.iter().filter(|i| matches!(i, ReadItem::Invalid { .. })).count();
            let distinct = orders.iter().collect::<std::collections::BTreeSet<_>>().len();
            if distinct != orders.len() || orders.len() != placed {
                eprintln!("  WARNING: the read returned {} orders, {distinct} distinct, {placed} placed", orders.len());
            }
            (orders.len(), invalid as u64)
        }
    };
    eprintln!("  full read (bulk operation) ...");
    phases.push(measure(&shop, format!("read {placed} orders: full (bulk)"), read(None)).await);
    eprintln!("  incremental read (paged) ...");
    phases.push(measure(&shop, format!("read {placed} orders: incremental (paged)"), read(Some(json!({"updated_at": since.to_rfc3339()})))).await);

    println!(
        "\nShopify connector benchmark (the project's Shopify emulator, {base}; bucket {BENCH_BUCKET} points; Standard plan = {STANDARD_RESTORE_RATE} points/s restore)"
    );
    println!(
        "{:<44} {:>7} {:>8} {:>9} {:>8} {:>9} {:>9} {:>10} {:>11} {:>6} {:>5} {:>12}",
        "phase", "records", "seconds", "records/s", "requests", "req/rec", "points", "points/rec", "Standard s", "thrott", "fail", "load"
    );
    for p in &phases {
        let r = p.records.max(1) as f64;
        println!(
            "{:<44} {:>7} {:>8.1} {:>9.1} {:>8} {:>9.3} {:>9} {:>10.2} {:>11.1} {:>6} {:>5} {:>6.2}/{:.2}",
            p.name,
            p.records,
            p.elapsed.as_secs_f64(),
            p.records as f64 / p.elapsed.as_secs_f64(),
            p.requests,
            p.requests as f64 / r,
            p.points,
            p.points as f64 / r,
            p.points as f64 / STANDARD_RESTORE_RATE,
            p.throttled,
            p.failures,
            p.load.0,
            p.load.1
        );
    }
    for p in &phases {
        println!("\n{}: per GraphQL operation (requests, points, seconds in requests, share of the time)", p.name);
        let total: f64 = p.ops.iter().map(|(_, u)| u.elapsed.as_secs_f64()).sum();
        for (op, u) in &p.ops {
            println!("  {op:<24} {:>7} {:>9} {:>9.2} {:>6.1}%", u.requests, u.points, u.elapsed.as_secs_f64(), 100.0 * u.elapsed.as_secs_f64() / total.max(1e-9));
        }
    }
}
