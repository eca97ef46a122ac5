//! Medusa connector throughput against a live Medusa 2 peer of the benchmark's own
//! (scripts/peers/medusa/up.sh), on its own port, folder and PostgreSQL database:
//!
//!     cargo bench -p ferry-connectors --features medusa --bench medusa
//!     scripts/peers/medusa/down.sh target/peers/medusa-bench --wipe      # afterwards: stop, drop the database
//!
//! - `FERRY_BENCH_MEDUSA_PORT` (default 18550), `FERRY_BENCH_MEDUSA_DIR` (default `<peers dir>/medusa-bench`),
//!   `FERRY_BENCH_MEDUSA_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/ferry_medusa_bench`, created
//!   when missing). The peer is started without `WEBHOOK_URL`, so no event goes to the tests' webhook port.
//! - `FERRY_BENCH_PRODUCTS` (default 10,000), `FERRY_BENCH_ORDERS` (default 1,000): smaller for a quick trial.
//!
//! 1. pushes FERRY_BENCH_PRODUCTS new SKUs (groups of 4 colour variants, 20 categories) in batches of the
//!    connector's batch size;
//! 2. re-syncs with 1 % of them changed (new price): what the engine sends after its hash check;
//! 3. makes sure FERRY_BENCH_ORDERS orders exist — placing the missing ones through the Store API directly
//!    (cart with 2 lines, shipping method, payment collection and session, complete: 5 requests an order,
//!    several orders at a time; not timed as connector work) — and reads them all through the connector.
//!
//! Prints records/s, API calls (the connector's own counter) per record, the load average (1 min) before
//! and after each phase, and where the time went: CPU seconds of the Medusa server (its process tree), of
//! the PostgreSQL backends serving its database, and of this process (Ferry), against the wall time.

use ferry_connectors::medusa::{Medusa, Options};
use ferry_engine::{Connector, ReadItem, ReadRequest, WriteRecord};
use ferry_model::{Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

fn product(run: &str, i: usize, price_cents: i64) -> WriteRecord {
    let colors = ["Red", "Blue", "Green", "Black"];
    let v = json!({
        "sku": format!("M{run}-{i:05}"),
        "group": format!("M{run}-G{:05}", i / 4),
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

/// The 1-minute load average (Linux), or NaN.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
}

/// `(parent pid, utime + stime in clock ticks)` of a process, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it start past the last ')'.
    let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some((rest.get(1)?.parse().ok()?, rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?))
}

/// CPU ticks of `root` and all its descendants (Medusa may run its server in a child process).
fn tree_ticks(root: u32) -> u64 {
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| proc_stat(pid).map(|(ppid, t)| (pid, ppid, t)))
        .collect();
    let mut tree = vec![root];
    let mut total = 0;
    while let Some(p) = tree.pop() {
        for (pid, ppid, t) in &all {
            if *pid == p {
                total += t;
            }
            if *ppid == p {
                tree.push(*pid);
            }
        }
    }
    total
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf").arg("CLK_TCK").output().ok().and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok()).unwrap_or(100.0)
}

/// Where a phase's time went: CPU ticks of the Medusa server, of each PostgreSQL backend connected to its
/// database (by pid: Medusa keeps a pool), and of this process.
struct CpuSample {
    medusa: u64,
    postgres: HashMap<u32, u64>,
    ferry: u64,
}

struct Meter {
    medusa_pid: u32,
    database_url: String,
}

impl Meter {
    fn sample(&self) -> CpuSample {
        let out = Command::new("psql")
            .arg(&self.database_url)
            .args(["-tAc", "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"])
            .output();
        let postgres = out
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse::<u32>().ok()).filter_map(|pid| Some((pid, proc_stat(pid)?.1))).collect())
            .unwrap_or_default();
        CpuSample { medusa: tree_ticks(self.medusa_pid), postgres, ferry: proc_stat(std::process::id()).map(|s| s.1).unwrap_or_default() }
    }
}

/// CPU seconds between two samples: (Medusa, PostgreSQL, Ferry). A backend that ended within the phase is
/// missed (Medusa's pool keeps its connections; the count is a lower bound for PostgreSQL).
fn cpu_seconds(before: &CpuSample, after: &CpuSample, hz: f64) -> (f64, f64, f64) {
    let pg: u64 = after.postgres.iter().map(|(pid, t)| t.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0))).sum();
    ((after.medusa.saturating_sub(before.medusa)) as f64 / hz, pg as f64 / hz, (after.ferry.saturating_sub(before.ferry)) as f64 / hz)
}

struct Phase {
    name: &'static str,
    records: usize,
    elapsed: Duration,
    calls: u64,
    failures: usize,
    /// CPU seconds of Medusa, its PostgreSQL backends and Ferry during the phase.
    cpu: (f64, f64, f64),
    /// 1-minute load average at the start and at the end of the phase.
    load: (f64, f64),
}

struct Bench<'a> {
    connector: &'a Medusa,
    meter: &'a Meter,
    hz: f64,
}

impl Bench<'_> {
    async fn write_all(&self, name: &'static str, records: Vec<WriteRecord>) -> Phase {
        let m = self.connector;
        let batch = m.describe().batch_size;
        let (calls0, cpu0, load0) = (m.api_calls(), self.meter.sample(), load_average());
        let started = Instant::now();
        let mut failures = 0;
        let n = records.len();
        for (k, chunk) in records.chunks(batch).enumerate() {
            let out = m.write(Stream::Products, chunk.to_vec()).await.expect("batch write");
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
        let cpu = cpu_seconds(&cpu0, &self.meter.sample(), self.hz);
        Phase { name, records: n, elapsed, calls: m.api_calls() - calls0, failures, cpu, load: (load0, load_average()) }
    }

    async fn read_orders(&self) -> (Phase, usize) {
        let m = self.connector;
        let (calls0, cpu0, load0) = (m.api_calls(), self.meter.sample(), load_average());
        let started = Instant::now();
        let items: Vec<ReadItem> = m.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: None }).map(|r| r.expect("order read")).collect().await;
        let elapsed = started.elapsed();
        let cpu = cpu_seconds(&cpu0, &self.meter.sample(), self.hz);
        let orders = items.iter().filter(|i| matches!(i, ReadItem::Record(_))).count();
        let invalid: Vec<&ReadItem> = items.iter().filter(|i| matches!(i, ReadItem::Invalid { .. })).collect();
        if let Some(ReadItem::Invalid { key, field, message, .. }) = invalid.first() {
            eprintln!("  {} invalid orders, e.g. {key:?} field {field}: {message}", invalid.len());
        }
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
        let phase = Phase { name: "read all orders", records: orders, elapsed, calls: m.api_calls() - calls0, failures: invalid.len(), cpu, load: (load0, load_average()) };
        (phase, distinct)
    }
}

struct Peer {
    dir: PathBuf,
    base_url: String,
    api_key: String,
    seed: Value,
    database_url: String,
}

/// Starts (or finds running) the benchmark's own Medusa; panics with up.sh's output when it cannot.
fn peer() -> Peer {
    let port: u16 = env_string("FERRY_BENCH_MEDUSA_PORT").map(|p| p.parse().expect("FERRY_BENCH_MEDUSA_PORT is a port number")).unwrap_or(18550);
    let dir = env_string("FERRY_BENCH_MEDUSA_DIR").map(PathBuf::from).unwrap_or_else(|| ferry_testkit::peers_dir().join("medusa-bench"));
    let database_url = env_string("FERRY_BENCH_MEDUSA_DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/ferry_medusa_bench".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/medusa/up.sh");
    eprintln!("  starting / finding the Medusa peer in {} on port {port} ...", dir.display());
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(port.to_string())
        .env("DATABASE_URL", &database_url)
        .env_remove("WEBHOOK_URL")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed:\n{}{}", script.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
    let api_key = read("admin-api-key").trim().to_owned();
    let seed: Value = serde_json::from_str(&read("seed.json")).expect("seed.json is JSON");
    Peer { dir, base_url: format!("http://127.0.0.1:{port}"), api_key, seed, database_url }
}

fn medusa_pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("medusa.pid")).ok().and_then(|s| s.trim().parse().ok()).expect("medusa.pid of the running peer")
}

/// The bench variants' ids by SKU, through the Admin API (not the connector: not measured).
async fn variant_ids(http: &reqwest::Client, peer: &Peer, skus: &[String]) -> Vec<String> {
    let mut url = reqwest::Url::parse(&format!("{}/admin/product-variants", peer.base_url)).unwrap();
    url.query_pairs_mut().append_pair("fields", "id,sku").append_pair("limit", "100");
    for s in skus {
        url.query_pairs_mut().append_pair("sku[]", s);
    }
    let body: Value = http.get(url).basic_auth(&peer.api_key, Some("")).send().await.expect("GET variants").json().await.expect("variants JSON");
    let by_sku: HashMap<&str, &str> = body["variants"].as_array().into_iter().flatten().filter_map(|v| Some((v["sku"].as_str()?, v["id"].as_str()?))).collect();
    skus.iter().map(|s| by_sku.get(s.as_str()).unwrap_or_else(|| panic!("variant {s} not found: {body}")).to_string()).collect()
}

/// One guest order through the Store API, as a checkout makes it: a cart with two lines and the shipping
/// address, the seeded shipping option, a payment collection and a session with Medusa's system provider
/// (authorises at once), then complete. 5 requests.
async fn place_order(http: &reqwest::Client, peer: &Peer, variants: &[String; 2], email: &str) -> Result<String, String> {
    let key = peer.seed["publishable_api_key"].as_str().unwrap_or_default();
    let store = |path: String, body: Value| {
        let req = http.post(format!("{}{path}", peer.base_url)).header("x-publishable-api-key", key).json(&body);
        async move {
            let resp = req.send().await.map_err(|e| format!("POST {path}: {e}"))?;
            let status = resp.status();
            let answer: Value = resp.json().await.map_err(|e| format!("POST {path}: {e}"))?;
            if !status.is_success() {
                return Err(format!("POST {path}: HTTP {status}: {answer}"));
            }
            Ok(answer)
        }
    };
    let cart = store(
        "/store/carts".into(),
        json!({
            "region_id": peer.seed["region_id"], "email": email,
            "items": [{"variant_id": variants[0], "quantity": 2}, {"variant_id": variants[1], "quantity": 1}],
            "shipping_address": {"first_name": "Bench", "last_name": "Buyer", "address_1": "1 Test St", "city": "Sydney", "province": "NSW",
                                  "postal_code": "2000", "country_code": "au", "phone": "0400 000 000"},
        }),
    )
    .await?;
    let cart_id = cart["cart"]["id"].as_str().ok_or("cart without id")?.to_owned();
    store(format!("/store/carts/{cart_id}/shipping-methods"), json!({"option_id": peer.seed["shipping_option_id"]})).await?;
    let pc = store("/store/payment-collections".into(), json!({"cart_id": cart_id})).await?;
    let pc_id = pc["payment_collection"]["id"].as_str().ok_or("payment collection without id")?.to_owned();
    store(format!("/store/payment-collections/{pc_id}/payment-sessions"), json!({"provider_id": "pp_system_default"})).await?;
    let done = store(format!("/store/carts/{cart_id}/complete"), json!({})).await?;
    if done["type"] != "order" {
        return Err(format!("complete cart {cart_id}: {done}"));
    }
    Ok(done["order"]["id"].as_str().unwrap_or_default().to_owned())
}

async fn count_orders(m: &Medusa) -> usize {
    let items: Vec<ReadItem> = m.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: None }).map(|r| r.expect("order read")).collect().await;
    items.iter().filter(|i| !matches!(i, ReadItem::Checkpoint(_))).count()
}

#[tokio::main]
async fn main() {
    let n_products = env_usize("FERRY_BENCH_PRODUCTS", 10_000);
    let n_orders = env_usize("FERRY_BENCH_ORDERS", 1_000);
    let order_concurrency = env_usize("FERRY_BENCH_ORDER_CONCURRENCY", 4).max(1);
    let peer = peer();
    let meter = Meter { medusa_pid: medusa_pid(&peer.dir), database_url: peer.database_url.clone() };
    let options: Options = serde_json::from_value(json!({"base_url": peer.base_url, "api_key": peer.api_key})).unwrap();
    let m = Medusa::new(options, "bench").unwrap();
    m.check().await.expect("medusa check");
    let bench = Bench { connector: &m, meter: &meter, hz: clock_ticks() };
    let run = {
        use rand::Rng;
        format!("{:X}", rand::rng().random::<u64>() & 0xff_ffff_ffff)
    };
    let mut phases = Vec::new();

    // 1. full push
    let records: Vec<WriteRecord> = (0..n_products).map(|i| product(&run, i, 1000 + (i as i64 % 9000))).collect();
    phases.push(bench.write_all("push new products", records).await);

    // 2. 1 % changed: the engine's hash check hands the connector only these.
    let changed: Vec<WriteRecord> = (0..n_products).step_by(100).map(|i| product(&run, i, 1000 + (i as i64 % 9000) + 1)).collect();
    phases.push(bench.write_all("re-sync 1 % changed", changed).await);

    // 3. orders
    let existing = count_orders(&m).await;
    let mut placing = None;
    if existing < n_orders {
        let missing = n_orders - existing;
        eprintln!("  placing {missing} orders through the Store API ({existing} exist, {order_concurrency} at a time) ...");
        let skus = [format!("M{run}-00000"), format!("M{run}-00001")];
        let stock: Vec<WriteRecord> = skus
            .iter()
            .map(|sku| {
                let r = Record::parse(Stream::Stock, json!({"sku": sku, "on_hand": "1000000"}), "bench").unwrap();
                WriteRecord { key: r.key(), target_id: None, record: r, previous: None }
            })
            .collect();
        for o in m.write(Stream::Stock, stock).await.expect("stock write") {
            o.result.unwrap_or_else(|f| panic!("stock for {}: {f:?}", o.key));
        }
        let http = reqwest::Client::new();
        let ids = variant_ids(&http, &peer, &skus).await;
        let variants = [ids[0].clone(), ids[1].clone()];
        let (cpu0, load0) = (meter.sample(), load_average());
        let started = Instant::now();
        let results: Vec<Result<String, String>> = futures::stream::iter(0..missing)
            .map(|k| {
                let (http, peer, variants) = (&http, &peer, &variants);
                let email = format!("bench-{run}-{k}@example.test");
                async move { place_order(http, peer, variants, &email).await }
            })
            .buffer_unordered(order_concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed();
        let cpu = cpu_seconds(&cpu0, &meter.sample(), bench.hz);
        let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        eprintln!("  placed {} orders in {elapsed:.1?} ({} failed{})", missing - bad.len(), bad.len(), bad.first().map(|e| format!(": {e}")).unwrap_or_default());
        placing = Some((missing - bad.len(), elapsed, cpu, (load0, load_average())));
    }
    let (read, distinct) = bench.read_orders().await;
    phases.push(read);

    println!("\nMedusa connector benchmark (run {run}; Medusa 2.21.2 on PostgreSQL, {})", peer.base_url);
    println!(
        "{:<22} {:>7} {:>8} {:>9} {:>6} {:>12} {:>8} {:>12} {:>27}",
        "phase", "records", "seconds", "records/s", "calls", "calls/record", "failures", "load bef/aft", "CPU s Medusa / PG / Ferry"
    );
    for p in &phases {
        println!(
            "{:<22} {:>7} {:>8.1} {:>9.1} {:>6} {:>12.3} {:>8} {:>6.2}/{:<5.2} {:>10.1} / {:>5.1} / {:>5.1}",
            p.name,
            p.records,
            p.elapsed.as_secs_f64(),
            p.records as f64 / p.elapsed.as_secs_f64(),
            p.calls,
            p.calls as f64 / p.records.max(1) as f64,
            p.failures,
            p.load.0,
            p.load.1,
            p.cpu.0,
            p.cpu.1,
            p.cpu.2
        );
    }
    println!("read all orders: {distinct} distinct order numbers");
    if let Some((placed, elapsed, cpu, load)) = placing {
        println!(
            "not connector work: placed {placed} orders through the Store API (5 requests each, {order_concurrency} at a time) in {:.1} s = {:.2} orders/s; CPU s Medusa / PG / bench {:.1} / {:.1} / {:.1}; load {:.2}/{:.2}",
            elapsed.as_secs_f64(),
            placed as f64 / elapsed.as_secs_f64(),
            cpu.0,
            cpu.1,
            cpu.2,
            load.0,
            load.1
        );
    }
}
