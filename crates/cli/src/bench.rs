//! `ferry bench`: generated catalogue, CSV export → JSONL shop, first sync and unchanged re-sync.
//! Measures records/s and the process's peak resident memory (VmHWM). Results go to docs/benchmarks.md.

use anyhow::{Context, Result};
use ferry_engine::run::NoProgress;
use ferry_engine::{Config, RunOptions, Workspace, holder_id};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Number of products to generate.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Work folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Keep the state store and target of an earlier run in `--dir` (with the same `--records`), so that
    /// both phases are unchanged re-syncs: for profiling the re-sync path alone.
    #[arg(long, requires = "dir")]
    keep_state: bool,
    /// The state store: `postgres://…` measures on PostgreSQL (schema `ferry_bench`, emptied first unless
    /// `--keep-state`); default SQLite in the work folder.
    #[arg(long)]
    state_url: Option<String>,
}

/// The PostgreSQL schema `ferry bench --state-url` uses.
const BENCH_SCHEMA: &str = "ferry_bench";

const CONFIG: &str = r#"
[state]
STATE

[connections.erp]
type = "csv"
path = "erp"

[connections.shop]
type = "jsonl"
path = "shop"

[flows.products]
source = "erp"
target = "shop"
stream = "products"
batch_size = BATCH

[flows.products.mapping]
rename = { "ItemCode" = "sku", "Description" = "name", "LongDescription" = "description", "SellPrice" = "price.amount", "RRP" = "rrp.amount", "Brand" = "brand", "Barcode" = "barcode" }
set = { "price.currency" = "AUD", "price.tax_inclusive" = true, "rrp.currency" = "AUD", "rrp.tax_inclusive" = true }
"#;

/// CPU seconds (user + system) this process has used so far, all threads.
fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15 (after the parenthesised command name), in clock ticks (100 Hz).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

pub async fn run(args: BenchArgs, json: bool) -> Result<ExitCode> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let erp = dir.join("erp");
    std::fs::create_dir_all(&erp)?;
    if !args.keep_state {
        let _ = std::fs::remove_dir_all(dir.join("shop"));
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    let t = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(erp.join("products.csv"))?);
    writeln!(out, "ItemCode,Description,LongDescription,SellPrice,RRP,Brand,Barcode")?;
    for i in 0..args.records {
        writeln!(
            out,
            "SKU-{i:07},Product number {i},A sturdy item for everyday use in home and garden (model {i}),{}.{:02},{}.{:02},Brand {},93{i:011}",
            10 + i % 490,
            i % 100,
            15 + i % 490,
            (i * 7) % 100,
            i % 50
        )?;
    }
    out.flush()?;
    drop(out);
    eprintln!("generated {} products in {:.1}s", args.records, t.elapsed().as_secs_f64());
    let state = match &args.state_url {
        Some(url) => {
            if !args.keep_state {
                ferry_engine::PgStore::open(url, BENCH_SCHEMA, 2).await?.drop_schema().await?;
            }
            format!("url = \"{url}\"\nschema = \"{BENCH_SCHEMA}\"")
        }
        None => "path = \"state.db\"".to_owned(),
    };
    std::fs::write(dir.join("ferry.toml"), CONFIG.replace("BATCH", &args.batch_size.to_string()).replace("STATE", &state))?;

    let config = Config::load(&dir.join("ferry.toml")).context("bench config")?;
    let ws = Workspace::open(config, ferry_connectors::registry()).await?;
    let options = RunOptions { holder: holder_id(), ..Default::default() };
    let mut rows = Vec::new();
    let mut phases = Vec::new();
    for phase in ["full sync (all new)", "re-sync, nothing changed"] {
        let t = Instant::now();
        let cpu = cpu_seconds();
        let report = ws.sync("products", &options, &NoProgress).await?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        anyhow::ensure!(report.counts.failed == 0 && report.aborted.is_none(), "bench run failed: {:?}", report.failures.first());
        let written = report.counts.created + report.counts.updated;
        phases.push(serde_json::json!({"phase": phase, "read": report.counts.read, "written": written, "seconds": secs,
            "cpu_seconds": cpu, "records_per_second": report.counts.read as f64 / secs, "peak_rss_mb": peak_rss_mb()}));
        rows.push(format!(
            "| {phase} | {} | {} | {:.2} s | {:.2} s | {:.0} records/s | {:.0} MB |",
            report.counts.read,
            written,
            secs,
            cpu,
            report.counts.read as f64 / secs,
            peak_rss_mb()
        ));
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&serde_json::json!({"records": args.records, "phases": phases}))?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("| phase | read | written | time | CPU time (all threads) | throughput | peak RSS so far |");
    out!("|---|---|---|---|---|---|---|");
    for r in rows {
        out!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}
