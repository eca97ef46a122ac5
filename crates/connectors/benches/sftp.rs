//! 100,000 products CSV read from a folder on the live OpenSSH server (scripts/peers/sshd, port 18302)
//! against the same file in a local folder: the connector's read alone, then a whole sync through the
//! engine into a local JSONL shop (first sync, then the unchanged re-sync).
//!
//!     cargo bench --profile dev -p ferry-connectors --features csv,jsonl --bench sftp
//!     FERRY_BENCH_PRODUCTS=20000 FERRY_BENCH_ROUNDS=5 cargo bench … (defaults: 100,000 products, 3 rounds)

#[path = "../tests/support/mod.rs"]
mod support;

use ferry_connectors::registry;
use ferry_engine::{BuildContext, Config, Connector, ReadItem, ReadRequest, RunOptions, Workspace, holder_id, run::NoProgress};
use ferry_model::Stream;
use futures::StreamExt;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::sshd;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn catalogue(n: usize) -> String {
    let mut csv = String::from("sku,name,price.amount,brand\n");
    for i in 0..n {
        csv.push_str(&format!("SKU{i:06},Product {i},{}.{:02},Brand {}\n", 1 + i % 300, i % 100, i % 7));
    }
    csv
}

async fn read_all(c: &dyn Connector) -> usize {
    let mut items = c.read(ReadRequest { stream: Some(Stream::Products), ..Default::default() });
    let mut n = 0;
    while let Some(item) = items.next().await {
        if let ReadItem::Record(_) = item.expect("read") {
            n += 1;
        }
    }
    n
}

/// One sync of the products flow; returns (time, records read, records written).
async fn sync(ws: &Workspace) -> (Duration, u64, u64) {
    let started = Instant::now();
    let options = RunOptions { holder: holder_id(), ..Default::default() };
    let report = ws.sync("products", &options, &NoProgress).await.expect("sync");
    assert!(report.aborted.is_none() && report.failures.is_empty(), "{report:#?}");
    (started.elapsed(), report.counts.read, report.counts.created + report.counts.updated)
}

async fn workspace(dir: &Path, erp: &str) -> Workspace {
    let config = format!(
        "[state]\npath = \"{state}/ferry.db\"\n[connections.erp]\ntype = \"csv\"\n{erp}\n[connections.shop]\ntype = \"jsonl\"\npath = \"{state}/shop\"\n\
         [flows.products]\nsource = \"erp\"\ntarget = \"shop\"\nstream = \"products\"\n[flows.products.mapping]\n\
         set = {{ \"price.currency\" = \"AUD\", \"price.tax_inclusive\" = true }}\n",
        state = dir.display()
    );
    Workspace::open(Config::parse(&config, dir.to_owned()).unwrap(), registry()).await.unwrap()
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0} rec/s", n as f64 / d.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let n: usize = env("FERRY_BENCH_PRODUCTS", 100_000);
    let rounds: usize = env("FERRY_BENCH_ROUNDS", 3);
    let text = catalogue(n);
    println!("{n} products, {:.1} MB of CSV, {rounds} rounds; load average {}", text.len() as f64 / 1e6, load());

    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(local.path().join("erp")).unwrap();
    std::fs::write(local.path().join("erp/products.csv"), &text).unwrap();
    let remote = sshd::folder("bench");
    remote.put("products.csv", &text);
    // pickup = "rename": no settle wait, so the transfer itself is measured (settle adds settle_seconds).
    let remote_toml = remote.toml("pickup = \"rename\"");
    let local_toml = format!("path = \"{}\"", local.path().join("erp").display());

    let ctx = BuildContext::new("bench", local.path());
    let local_source: Arc<dyn Connector> = registry().build("csv", &json!({"path": local.path().join("erp")}), &ctx).unwrap();
    let remote_source: Arc<dyn Connector> = registry().build("csv", &remote.options(json!({"pickup": "rename"})), &ctx).unwrap();

    println!("\n| source | phase | time (best of {rounds}) | records | throughput |\n|---|---|---:|---:|---:|");
    for (label, source) in [("local", &local_source), ("sftp", &remote_source)] {
        let mut best = Duration::MAX;
        for _ in 0..rounds {
            let started = Instant::now();
            assert_eq!(read_all(source.as_ref()).await, n);
            best = best.min(started.elapsed());
        }
        println!("| {label} | connector read | {:.2} s | {n} | {} |", best.as_secs_f64(), rate(n as u64, best));
    }
    for (label, erp) in [("local", &local_toml), ("sftp", &remote_toml)] {
        let (mut first, mut again) = (Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            let ws = workspace(dir.path(), erp).await;
            let (t, read, written) = sync(&ws).await;
            assert_eq!((read, written), (n as u64, n as u64));
            first = first.min(t);
            let (t, read, written) = sync(&ws).await;
            assert_eq!((read, written), (n as u64, 0));
            again = again.min(t);
        }
        println!("| {label} | first sync → JSONL | {:.2} s | {n} | {} |", first.as_secs_f64(), rate(n as u64, first));
        println!("| {label} | unchanged re-sync | {:.2} s | {n} | {} |", again.as_secs_f64(), rate(n as u64, again));
    }
    println!("\nload average after: {}", load());
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}
