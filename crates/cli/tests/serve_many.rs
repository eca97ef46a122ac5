//! Many workers, one queue: three real `ferry serve` processes share one PostgreSQL state store. Records
//! pushed to one node and 1,000 triggered jobs spread over all three run once each, one of the processes
//! is `kill -9`ed twice (its jobs run again after their lease, their records not duplicated), no flow ever
//! runs twice at once, every schedule firing is enqueued once however many schedulers run, and a job
//! enqueued by another process wakes idle workers through LISTEN/NOTIFY instead of their (long) poll.

#[path = "support/serve_proc.rs"]
mod serve_proc;

use chrono::{DateTime, Utc};
use ferry_engine::store::postgres::ScratchSchema;
use ferry_engine::store::{JobQueue, PgStore};
use ferry_model::Stream;
use serde_json::{Value, json};
use serve_proc::{Server, free_port, http};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

const FLOWS: [&str; 4] = ["f1", "f2", "f3", "f4"];
const PRODUCTS: usize = 12_000;
const TRIGGERS: usize = 1_000;

fn product(i: usize) -> Value {
    json!({"sku": format!("P-{i:05}"), "name": format!("Product {i}"),
           "price": {"amount": format!("{}.{}", 1 + i % 90, 1 + i % 9), "currency": "AUD", "tax_inclusive": true}})
}

fn config(scratch: &ScratchSchema) -> String {
    let mut c = format!(
        "[state]\nurl = \"{}\"\nschema = \"{}\"\n\
         [server]\nworkers = 2\nlease_seconds = 5\n# A long poll: only LISTEN/NOTIFY can wake idle workers quickly.\npoll_millis = 5000\n\
         [connections.web]\ntype = \"api\"\ncollection = \"web\"\n",
        scratch.url, scratch.schema
    );
    for f in FLOWS {
        c.push_str(&format!(
            "[connections.shop_{f}]\ntype = \"jsonl\"\npath = \"shop_{f}\"\n\
             [flows.{f}]\nsource = \"web\"\ntarget = \"shop_{f}\"\nstream = \"products\"\nbatch_size = 500\nschedule = \"* * * * *\"\nschedule_timezone = \"UTC\"\n"
        ));
    }
    c
}

fn pid_of(server: &Server) -> u32 {
    server.child.id()
}

/// Waits until a job leased by `pid`'s workers is running (so the kill lands mid-job), at most `wait`.
fn running_job_of(port: u16, token: &str, pid: u32, wait: Duration) -> Option<i64> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let (_, r) = http(port, "GET", "/api/v1/jobs?status=running&limit=100", Some(token), None).unwrap();
        let mine = r["jobs"].as_array().unwrap().iter().find(|j| j["lease_holder"].as_str().is_some_and(|h| h.contains(&format!(":{pid}/"))));
        if let Some(j) = mine {
            return j["id"].as_i64();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// id, flow, status, attempts, dedupe_key, kind.
type JobRow = (i64, String, String, i64, Option<String>, String);

#[derive(Debug, sqlx::FromRow)]
struct RunRow {
    id: i64,
    flow: String,
    started_at: String,
    finished_at: Option<String>,
    status: String,
}

#[test]
fn three_ferry_serve_processes_on_one_postgres_run_every_job_once_through_two_kill_9s() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = ScratchSchema::new("serve_many");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("ferry.toml");
    std::fs::write(&cfg, config(&scratch)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_remove("FERRY_CONFIG")
        .arg("--config")
        .arg(&cfg)
        .args(["keys", "create", "--scope", "read,write", "--name", "test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let test_started = Utc::now();
    let log = |n: &str| d.join(format!("serve-{n}.log"));
    let a = Server::start(&cfg, free_port(), &log("a"));
    let mut b = Server::start(&cfg, free_port(), &log("b"));
    let c = Server::start(&cfg, free_port(), &log("c"));
    let mut kills: Vec<(u32, DateTime<Utc>, Option<i64>)> = Vec::new();

    // 12,000 products pushed to node A: each push enqueues one job per flow (3 × 4 jobs of 4,000 records).
    let mut pushed_jobs = Vec::new();
    for chunk in (0..PRODUCTS).collect::<Vec<_>>().chunks(4_000) {
        let batch = Value::Array(chunk.iter().map(|i| product(*i)).collect());
        let (status, r) = http(a.port, "POST", "/api/v1/records/products?collection=web", Some(&token), Some(&batch)).unwrap();
        assert_eq!((status, r["accepted"].as_u64()), (200, Some(chunk.len() as u64)), "{r}");
        pushed_jobs.extend(r["jobs"].as_array().unwrap().iter().map(|j| j.as_i64().unwrap()));
    }
    assert_eq!(pushed_jobs.len(), 12);

    // Kill B mid-job (it holds a lease), then start it again.
    let held = running_job_of(a.port, &token, pid_of(&b), Duration::from_secs(60));
    let pid = pid_of(&b);
    b.kill_9();
    kills.push((pid, Utc::now(), held));
    b = Server::start(&cfg, free_port(), &log("b"));

    // 1,000 triggers spread over the three nodes; B is killed again halfway.
    let mut triggered = Vec::new();
    for i in 0..TRIGGERS {
        if i == TRIGGERS / 2 {
            let held = running_job_of(a.port, &token, pid_of(&b), Duration::from_secs(10));
            let pid = pid_of(&b);
            b.kill_9();
            kills.push((pid, Utc::now(), held));
            b = Server::start(&cfg, free_port(), &log("b"));
        }
        let node = [&a, &b, &c][i % 3];
        let (status, r) = http(node.port, "POST", &format!("/api/v1/flows/{}/trigger", FLOWS[i % 4]), Some(&token), Some(&json!({}))).unwrap();
        assert_eq!(status, 202, "{r}");
        triggered.push(r["job"]["id"].as_i64().unwrap());
    }
    eprintln!("kills (pid, at, job held): {kills:?}");

    let store = rt.block_on(PgStore::open(&scratch.url, &scratch.schema, 2)).unwrap();
    let pool = store.pool().clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open: i64 = rt.block_on(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status <> 'succeeded'").fetch_one(&pool)).unwrap();
        if open == 0 {
            break;
        }
        let failed: Vec<(i64, Option<String>)> =
            rt.block_on(sqlx::query_as("SELECT id, error FROM jobs WHERE status = 'failed'").fetch_all(&pool)).unwrap();
        assert!(failed.is_empty(), "jobs failed: {failed:?}");
        assert!(Instant::now() < deadline, "{open} jobs not done within 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A job enqueued by another process (this test) is started by an idle worker within a moment, not at
    // its next 5-second poll: LISTEN/NOTIFY woke it.
    std::thread::sleep(Duration::from_millis(500));
    let enqueued_at = Instant::now();
    let id = rt.block_on(store.enqueue(ferry_engine::store::jobs::NewJob::new("f1", ferry_engine::store::jobs::JobKind::Manual, Utc::now()))).unwrap().id;
    let woken = loop {
        let job = rt.block_on(store.job(id)).unwrap().unwrap();
        if job.started_at.is_some() {
            break enqueued_at.elapsed();
        }
        assert!(enqueued_at.elapsed() < Duration::from_secs(10), "the job was never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("a job enqueued elsewhere started after {woken:?}");
    assert!(woken < Duration::from_millis(1_500), "started after {woken:?}: woken by a poll, not by NOTIFY");
    let checked_at = Utc::now();
    std::thread::sleep(Duration::from_secs(1));

    // Every job ran to success once: each triggered and pushed job exists once and succeeded; the jobs
    // whose worker was killed mid-run were claimed again.
    let jobs: Vec<JobRow> =
        rt.block_on(sqlx::query_as("SELECT id, flow, status, attempts, dedupe_key, kind FROM jobs ORDER BY id").fetch_all(&pool)).unwrap();
    let by_id: BTreeMap<i64, &JobRow> = jobs.iter().map(|j| (j.0, j)).collect();
    let again: Vec<_> = jobs.iter().filter(|j| j.3 > 1).map(|j| (j.0, &j.1, &j.5, j.3)).collect();
    eprintln!("{} jobs, {} claimed more than once: {again:?}", jobs.len(), again.len());
    let distinct: BTreeSet<i64> = triggered.iter().chain(&pushed_jobs).copied().collect();
    assert_eq!(distinct.len(), TRIGGERS + 12, "each trigger and push enqueued a job of its own");
    for id in &distinct {
        let j = by_id.get(id).unwrap_or_else(|| panic!("job {id} missing"));
        assert_eq!(j.2, "succeeded", "job {id}: {j:?}");
    }
    // A job seen running just before a kill may have finished before the kill landed (short jobs): only
    // a job still unfinished at the kill must have been claimed again.
    let mut landed = 0;
    for (pid, killed_at, held) in &kills {
        let Some(id) = held else { continue };
        let finished_at: Option<String> =
            rt.block_on(sqlx::query_scalar("SELECT finished_at FROM jobs WHERE id = $1").bind(id).fetch_one(&pool)).unwrap();
        let finished_before_kill = by_id[id].3 == 1
            && finished_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).is_some_and(|t| t < *killed_at);
        if finished_before_kill {
            continue;
        }
        landed += 1;
        assert!(by_id[id].3 >= 2, "job {id}, running in the killed process {pid}, was not claimed again: {:?} (finished {finished_at:?})", by_id[id]);
    }
    assert!(landed > 0, "at least one kill landed mid-job: {kills:?}");

    // Every schedule firing once: per flow, one job per minute boundary passed since the servers started.
    let mut firings: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.5 == "scheduled") {
        firings.entry(FLOWS.iter().find(|f| **f == j.1).unwrap()).or_default().push(j.4.clone().unwrap());
    }
    let mut boundaries = Vec::new();
    let mut m = test_started.timestamp() / 60 * 60 + 60;
    while m <= checked_at.timestamp() - 2 {
        boundaries.push(m);
        m += 60;
    }
    for f in FLOWS {
        let keys = firings.get(f).cloned().unwrap_or_default();
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "flow {f}: a firing enqueued twice: {keys:?}");
        assert!(keys.len() >= boundaries.len(), "flow {f}: firings {keys:?} for the minute boundaries {boundaries:?}");
    }

    // No flow ever ran twice at once: its runs do not overlap (a killed run ends when it was killed).
    let runs: Vec<RunRow> = rt.block_on(sqlx::query_as("SELECT id, flow, started_at, finished_at, status FROM runs ORDER BY flow, started_at").fetch_all(&pool)).unwrap();
    let kill_times: Vec<String> = kills.iter().map(|(_, at, _)| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).collect();
    for f in FLOWS {
        let mine: Vec<&RunRow> = runs.iter().filter(|r| r.flow == f).collect();
        assert!(mine.len() > TRIGGERS / 4, "flow {f}: {} runs", mine.len());
        for pair in mine.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let prev_end = if prev.status == "interrupted" {
                // Killed: it ended at the first kill after it started.
                kill_times.iter().find(|k| **k > prev.started_at).cloned().unwrap_or_else(|| panic!("interrupted run {prev:?} without a kill"))
            } else {
                prev.finished_at.clone().unwrap_or_else(|| panic!("run {prev:?} never finished"))
            };
            assert!(prev_end <= next.started_at, "flow {f}: run {} started at {} while run {} ran until {prev_end}", next.id, next.started_at, prev.id);
        }
    }

    // Every product once in each flow's shop and cross-reference.
    for f in FLOWS {
        let shop = ferry_connectors::jsonl::materialize(&d.join(format!("shop_{f}/products.jsonl")), Stream::Products).unwrap();
        assert_eq!(shop.len(), PRODUCTS, "flow {f}");
        let xref: i64 = rt.block_on(sqlx::query_scalar("SELECT COUNT(*) FROM xref WHERE flow = $1").bind(f).fetch_one(&pool)).unwrap();
        assert_eq!(xref as usize, PRODUCTS, "flow {f}");
    }
    drop((a, b, c));
}
