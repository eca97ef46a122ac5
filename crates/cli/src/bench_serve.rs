//! `ferry bench-serve`: the server's own costs, measured over a real 127.0.0.1 socket against the same
//! code `ferry serve` runs (`Server` + `serve_all`), in one process with its client.
//!
//! 0. Job queue throughput: `--jobs` jobs of flows with nothing to read, drained by `--workers` workers.
//! 1. Records API push throughput into the state store (SQLite, or PostgreSQL with `--state-url`): batches POSTed one after another to a
//!    collection no flow reads (only the store is measured), then the same again (all unchanged).
//! 2. Webhook → job → target: signed webhooks at a fixed rate, each naming one new SKU of a local source
//!    (the `bench` connector, in memory: no external system's latency), synced into a JSONL target (fsync
//!    on). Latency of each event = its job's `finished_at − created_at` in the queue (enqueued by the
//!    webhook handler, completed after the target's write and Ferry's commit); the HTTP answer time is
//!    reported beside it. Results go to docs/benchmarks.md.

use anyhow::{Context, Result, ensure};
use async_trait::async_trait;
use ferry_engine::connector::*;
use ferry_engine::store::jobs::{JobFilter, JobKind, JobStatus};
use ferry_engine::store::keys::Scope;
use ferry_model::Stream;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchServeArgs {
    /// Records pushed through the records API.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records per push request (at most 5000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Webhook events per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of webhook traffic.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Work folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The state store: `postgres://…` measures on PostgreSQL (in a schema of its own, dropped afterwards);
    /// default SQLite in the work folder.
    #[arg(long)]
    state_url: Option<String>,
    /// Workers of the server (`[server] workers`).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs for the queue throughput phase (spread over 8 flows with nothing to read: the queue's and a
    /// run's own cost).
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
}

/// Flows of the queue phase.
const IDLE_FLOWS: usize = 8;

const SECRET: &str = "bench-webhook-secret";

const CONFIG: &str = r#"
[state]
STATE

[server]
workers = WORKERS

[connections.idle]
type = "api"
collection = "idle"

[connections.idle_shop]
type = "jsonl"
path = "idle"

[connections.web]
type = "api"
collection = "bench"

[connections.hooks]
type = "bench"
webhook_secret = "bench-webhook-secret"

[connections.shop]
type = "jsonl"
path = "shop"

[flows.hooked]
source = "hooks"
target = "shop"
stream = "products"
"#;

fn product(sku: &str, i: usize) -> Value {
    json!({"sku": sku, "name": format!("Product number {i}"), "description": "A sturdy item for everyday use in home and garden",
           "brand": format!("Brand {}", i % 50), "barcode": format!("93{i:011}"),
           "price": {"amount": format!("{}.{:02}", 10 + i % 490, i % 100), "currency": "AUD", "tax_inclusive": true}})
}

/// A local source for the webhook phase: any SKU it is asked for exists (generated), so a job's time is
/// Ferry's own. Webhook bodies: `{"skus": [...]}`.
struct BenchSource;

#[async_trait]
impl Connector for BenchSource {
    fn describe(&self) -> Description {
        Description {
            name: "bench",
            summary: "generated products for ferry bench-serve",
            config_schema: json!({}),
            streams: vec![StreamCapability { stream: Stream::Products, read: Some(ReadMode::Snapshot), write: None, find_by_key: false, retire: vec![] }],
            batch_size: 100,
            webhooks: true,
        }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport { ok: true, details: vec!["generated data".into()] })
    }
    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let keys = request.keys.unwrap_or_default();
        Box::pin(futures::stream::iter(keys.into_iter().map(|sku| {
            let i = sku.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            Ok(ReadItem::Record(SourceRecord { position: sku.clone(), data: product(&sku, i) }))
        })))
    }
    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        let skus = body["skus"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect();
        vec![(Stream::Products, skus)]
    }
}

struct BenchFactory;

impl ConnectorFactory for BenchFactory {
    fn name(&self) -> &'static str {
        "bench"
    }
    fn summary(&self) -> &'static str {
        "generated products for ferry bench-serve"
    }
    fn build(&self, _: &Value, _: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(BenchSource))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores ({cpu})")
}

pub async fn run(args: BenchServeArgs) -> Result<ExitCode> {
    ensure!((1..=ferry_server::records::MAX_PUSH).contains(&args.batch), "--batch: 1 to {}", ferry_server::records::MAX_PUSH);
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    std::fs::create_dir_all(dir.join("shop"))?;
    let schema = format!("bench_{}", std::process::id());
    let state = match &args.state_url {
        Some(url) => {
            // A fresh schema: drop what an interrupted earlier run may have left.
            let old = ferry_engine::PgStore::open(url, &schema, 2).await?;
            old.drop_schema().await?;
            format!("url = \"{url}\"\nschema = \"{schema}\"")
        }
        None => "path = \"state.db\"".to_owned(),
    };
    let mut config_text = CONFIG.replace("STATE", &state).replace("WORKERS", &args.workers.max(1).to_string());
    for i in 1..=IDLE_FLOWS {
        config_text.push_str(&format!("\n[flows.idle{i}]\nsource = \"idle\"\ntarget = \"idle_shop\"\nstream = \"products\"\n"));
    }
    std::fs::write(dir.join("ferry.toml"), config_text)?;
    let config = ferry_engine::Config::load(&dir.join("ferry.toml")).context("bench config")?;
    let server = ferry_server::Server::open_with(config, Arc::new(ferry_engine::schedule::SystemClock), |r| {
        r.register(Box::new(BenchFactory));
    })
    .await?;
    let state = server.workspaces.values().next().expect("one workspace").clone();
    let (_, token) = state.store.create_key("bench", &[Scope::Read, Scope::Write]).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(ferry_server::serve_all(server.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let started = chrono::Utc::now();
    let mut rows = Vec::new();
    let backend = format!("{} store, {} worker(s)", state.store.backend(), args.workers.max(1));

    // 0. Queue throughput: jobs of flows with nothing to read (claim, lease, run bookkeeping, complete).
    let t = Instant::now();
    for i in 0..args.jobs {
        let job = ferry_engine::store::jobs::NewJob::new(format!("idle{}", i % IDLE_FLOWS + 1), JobKind::Manual, chrono::Utc::now());
        state.store.enqueue(job).await?;
    }
    state.wake.notify_waiters();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let depth = state.store.queue_depth(chrono::Utc::now()).await?;
        ensure!(depth.failed == 0, "a queue-phase job failed");
        if depth.queued == 0 && depth.running == 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "queue phase not drained in 600 s: {depth:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    rows.push(format!(
        "| job queue ({backend}): {} jobs over {IDLE_FLOWS} flows, nothing to read | enqueued, claimed, run, completed | {secs:.2} s | **{:.0} jobs/s** |",
        args.jobs,
        args.jobs as f64 / secs
    ));
    eprintln!("{}", rows.last().expect("queue phase"));

    // 1. Push throughput: bodies serialised up front, so the client's JSON work is not timed.
    let bodies: Vec<String> = (0..args.records)
        .collect::<Vec<_>>()
        .chunks(args.batch)
        .map(|c| Value::Array(c.iter().map(|i| product(&format!("PUSH-{i:07}"), *i)).collect()).to_string())
        .collect();
    let mb = bodies.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    for phase in ["push, all new", "push again, all unchanged"] {
        let t = Instant::now();
        let mut counted = 0u64;
        for body in &bodies {
            let resp = http
                .post(format!("{base}/api/v1/records/products?collection=bench"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            ensure!(resp.status().is_success(), "push answered {}", resp.status());
            let v: Value = resp.json().await?;
            counted += v["accepted"].as_u64().unwrap_or(0);
        }
        let secs = t.elapsed().as_secs_f64();
        ensure!(counted == args.records as u64, "accepted {counted} of {}", args.records);
        rows.push(format!(
            "| records API ({backend}): {phase} | {} records in {} requests of {} ({mb:.0} MB JSON) | {secs:.2} s | **{:.0} records/s** |",
            args.records,
            bodies.len(),
            args.batch,
            args.records as f64 / secs
        ));
        eprintln!("{}", rows.last().expect("pushed"));
    }

    // 2. Webhooks at a fixed rate, each naming one new SKU.
    let events = (args.rate * args.seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(events);
    let t = Instant::now();
    for i in 0..events {
        tick.tick().await;
        let body = json!({"skus": [format!("HOOK-{i:07}")]}).to_string();
        let (http, url) = (http.clone(), format!("{base}/hooks/hooks"));
        sends.push(tokio::spawn(async move {
            let sent = Instant::now();
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-ferry-signature", ferry_server::webhook::sign(SECRET, body.as_bytes()))
                .header("x-ferry-timestamp", chrono::Utc::now().timestamp().to_string())
                .body(body)
                .send()
                .await;
            (resp.map(|r| r.status().as_u16()).unwrap_or(0), sent.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let sending = t.elapsed().as_secs_f64();
    let mut answer_ms = Vec::with_capacity(events);
    for s in sends {
        let (status, ms) = s.await?;
        ensure!(status == 202, "a webhook was answered {status}");
        answer_ms.push(ms);
    }
    // Wait for the queue to drain.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let depth = state.store.queue_depth(chrono::Utc::now()).await?;
        if depth.queued == 0 && depth.running == 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "queue not drained in 600 s: {depth:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = t.elapsed().as_secs_f64();
    let jobs = state.store.jobs(&JobFilter { flow: Some("hooked".into()), status: None, limit: events as i64 * 2 }).await?;
    let mut latency_ms = Vec::with_capacity(jobs.len());
    let mut keys = 0;
    for j in &jobs {
        ensure!(j.kind == JobKind::Webhook && j.status == JobStatus::Succeeded, "job {} {:?} {:?}: {:?}", j.id, j.kind, j.status, j.error);
        keys += j.keys.as_ref().map(Vec::len).unwrap_or(0);
        let done = j.finished_at.context("finished job without finished_at")?;
        latency_ms.push((done - j.created_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
    }
    ensure!(keys == events, "{keys} keys in jobs for {events} events");
    let written = ferry_connectors::jsonl::materialize(&dir.join("shop/products.jsonl"), Stream::Products)?;
    ensure!(written.len() == events, "the JSONL target holds {} of {events} products", written.len());
    latency_ms.sort_by(f64::total_cmp);
    answer_ms.sort_by(f64::total_cmp);
    let ms = |v: &[f64], p: f64| format!("{:.1}", percentile(v, p));
    rows.push(format!(
        "| webhook → job → JSONL target ({backend}), {} events/s for {} s | {events} events, {} jobs, all written once; queue drained {:.1} s after the first event (sending took {sending:.1} s) | p50 **{} ms**, p90 {} ms, p99 **{} ms**, max {} ms (HTTP 202 answer p50 {} ms, p99 {} ms) |",
        args.rate,
        args.seconds,
        jobs.len(),
        drained,
        ms(&latency_ms, 50.0),
        ms(&latency_ms, 90.0),
        ms(&latency_ms, 99.0),
        ms(&latency_ms, 100.0),
        ms(&answer_ms, 50.0),
        ms(&answer_ms, 99.0),
    ));
    eprintln!("{}", rows.last().expect("webhooks"));

    let _ = stop.send(());
    serving.await??;
    if let Some(url) = &args.state_url {
        ferry_engine::PgStore::open(url, &schema, 2).await?.drop_schema().await?;
    }
    out!(
        "`ferry bench-serve --records {} --batch {} --rate {} --seconds {} --workers {} --jobs {}{}` on {}, {} (build: {})",
        args.records,
        args.batch,
        args.rate,
        args.seconds,
        args.workers,
        args.jobs,
        if args.state_url.is_some() { " --state-url postgres://…" } else { "" },
        machine(),
        started.format("%Y-%m-%d"),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    out!("");
    out!("| what | work | time / latency | result |");
    out!("|---|---|---|---|");
    for r in rows {
        out!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}
