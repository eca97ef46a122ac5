//! `ferry bench-dashboard`: how long each dashboard page takes to render for a large workspace — by
//! default 100 flows and 1,000,000 run records (per-record outcomes, with field-level changes), plus
//! cross-references, open failures, a webhook log and keys — measured over a real 127.0.0.1 socket
//! against the same code `ferry serve` runs, signed in as a browser is (session cookie). Each page is
//! requested `--requests` times one after another; p50 / p99 / max of the whole request (server render
//! + local HTTP) are printed as a Markdown table for docs/benchmarks.md.

use anyhow::{Context, Result, ensure};
use ferry_engine::store::dashboard::NewWebhookLog;
use ferry_engine::store::keys::Scope;
use ferry_engine::store::{BatchCommit, Counts, NewFailure, RunRecord, Stage, Synced};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchDashboardArgs {
    /// Flows in the workspace.
    #[arg(long, default_value_t = 100)]
    flows: usize,
    /// Per-record run outcomes in the state store (spread over runs of `--records-per-run`).
    #[arg(long, default_value_t = 1_000_000)]
    run_records: usize,
    /// Records listed per run.
    #[arg(long, default_value_t = 500)]
    records_per_run: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Work folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn flow_name(f: usize) -> String {
    format!("flow-{f:03}")
}

fn config(flows: usize) -> String {
    let mut c = String::from("[defaults]\ntimezone = \"Australia/Sydney\"\n[state]\npath = \"state.db\"\n[server]\nworkers = 1\n");
    c.push_str("[connections.web]\ntype = \"api\"\ncollection = \"in\"\n[connections.shop]\ntype = \"api\"\ncollection = \"out\"\n");
    for f in 0..flows {
        let schedule = if f % 2 == 0 { format!("schedule = \"{} * * * *\"\n", f % 60) } else { String::new() };
        c.push_str(&format!("[flows.{}]\nsource = \"web\"\ntarget = \"shop\"\nstream = \"products\"\n{schedule}", flow_name(f)));
    }
    c
}

/// Fills the store: runs with their per-record outcomes and changes, the cross-reference, failures in
/// two groups per flow, webhook deliveries and keys.
async fn seed(store: &dyn ferry_engine::store::Store, args: &BenchDashboardArgs) -> Result<(i64, usize)> {
    let runs_per_flow = args.run_records.div_ceil(args.flows * args.records_per_run).max(1);
    let mut sample_run = 0;
    let mut written = 0;
    let started = Instant::now();
    for round in 0..runs_per_flow {
        for f in 0..args.flows {
            if written >= args.run_records {
                break;
            }
            let flow = flow_name(f);
            let run = store.begin_run(&flow, "incremental").await?;
            let n = args.records_per_run.min(args.run_records - written);
            let outcomes: Vec<RunRecord> = (0..n)
                .map(|i| RunRecord {
                    key: format!("F{f:03}-K{:06}", round * args.records_per_run + i),
                    outcome: if round == 0 { "created" } else { "updated" },
                    target_id: Some(format!("T{f:03}-{i}")),
                    field: None,
                    message: None,
                    changes: Some(json!([{"path": "price.amount", "old": format!("{}.95", i % 90), "new": format!("{}.95", i % 90 + 1)}])),
                })
                .collect();
            let synced: Vec<Synced> = if round == 0 {
                (0..n)
                    .map(|i| Synced {
                        key: format!("F{f:03}-K{i:06}"),
                        target_id: format!("T{f:03}-{i}"),
                        hash: format!("{:032x}", i),
                        payload: json!({"sku": format!("F{f:03}-K{i:06}"), "price": {"amount": "9.95", "currency": "AUD"}}).to_string(),
                        source_hash: None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let failed: Vec<NewFailure> = if round == 0 {
                (0..10)
                    .map(|i| NewFailure {
                        key: format!("F{f:03}-BAD{i}"),
                        position: Some(format!("products.csv line {}", i + 2)),
                        stage: Stage::Validate,
                        field: Some(if i % 2 == 0 { "price.amount" } else { "name" }.into()),
                        message: format!("F{f:03}-BAD{i}: invalid value"),
                        retryable: false,
                        source: json!({"sku": format!("F{f:03}-BAD{i}"), "price": "abc"}),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let counts = Counts { read: n as u64, created: if round == 0 { n as u64 } else { 0 }, updated: if round == 0 { 0 } else { n as u64 }, ..Default::default() };
            store.commit_batch(&flow, run, BatchCommit { synced, failed, outcomes, counts, ..Default::default() }).await?;
            store.finish_run(run, "ok", None).await?;
            written += n;
            if f == args.flows / 2 {
                sample_run = run;
            }
        }
    }
    for i in 0..2000 {
        store
            .log_webhook(NewWebhookLog {
                connection: if i % 3 == 0 { "web".into() } else { "shop".into() },
                received_at: chrono::Utc::now(),
                status: if i % 10 == 0 { 401 } else { 202 },
                outcome: if i % 10 == 0 { "rejected" } else { "enqueued" },
                code: (i % 10 == 0).then(|| "invalid_signature".into()),
                message: (i % 10 == 0).then(|| "signature does not match the body".into()),
                delivery_id: Some(format!("d-{i}")),
                jobs: vec![i],
                bytes: 120,
            })
            .await?;
    }
    for i in 0..60 {
        store.create_key(&format!("key {i}"), &[Scope::Read]).await?;
    }
    eprintln!("seeded {written} run records in {} runs in {:.1?}", runs_per_flow * args.flows, started.elapsed());
    Ok((sample_run, written))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

pub async fn run(args: BenchDashboardArgs) -> Result<ExitCode> {
    ensure!(args.flows >= 1 && args.records_per_run >= 1 && args.requests >= 1, "--flows, --records-per-run and --requests: at least 1");
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
    std::fs::write(dir.join("ferry.toml"), config(args.flows))?;
    let config = ferry_engine::Config::load(&dir.join("ferry.toml")).context("bench config")?;
    let server = ferry_server::Server::open(config, Arc::new(ferry_engine::schedule::SystemClock)).await?;
    let state = server.workspaces.values().next().expect("one workspace").clone();
    let (sample_run, written) = seed(state.store.as_ref(), &args).await?;
    let (_, token) = state.store.create_key("bench", &[Scope::Admin]).await?;
    let failure = state.store.failures(Some(&flow_name(args.flows / 2)), None).await?.first().map(|f| f.id).unwrap_or(1);
    let records = state.store.run_records_page(sample_run, None, 100).await?;
    let older_run = state.store.runs_page(&flow_name(args.flows / 2), None, 10).await?.last().map(|r| r.id).unwrap_or(0);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(ferry_server::serve_all(server.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    // Sign in as a browser does: the form's token cookie and field, then the session cookie.
    let form = http.get(format!("{base}/signin")).send().await?;
    let pre = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("ferry_signin="))
        .and_then(|c| c.split(';').next())
        .context("sign-in token cookie")?
        .to_owned();
    let signed = http.post(format!("{base}/signin")).header("cookie", format!("ferry_signin={pre}")).form(&[("csrf", pre.as_str()), ("key", token.as_str())]).send().await?;
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("ferry_session="))
        .and_then(|c| c.split(';').next())
        .context("session cookie")?
        .to_owned();
    let mid = flow_name(args.flows / 2);
    let key = format!("F{:03}-K000042", args.flows / 2);
    let pages = vec![
        ("overview", "/".to_owned()),
        ("flow (chart + 50 runs)", format!("/flows/{mid}")),
        ("flow, older runs", format!("/flows/{mid}?before={older_run}")),
        ("run (100 records with changes)", format!("/runs/{sample_run}")),
        ("run, next page", format!("/runs/{sample_run}?after={}", records.last().map(|r| r.seq).unwrap_or(0))),
        ("failures (groups)", "/failures".to_owned()),
        ("failure group", format!("/failures/group?flow={mid}&stage=validate&field=price.amount")),
        ("failure (payload editor)", format!("/failures/{failure}")),
        ("find a record", format!("/find?q={key}")),
        ("connections", "/connections".to_owned()),
        ("schedules", "/schedules".to_owned()),
        ("webhook log", "/webhooks".to_owned()),
        ("API keys", "/keys".to_owned()),
    ];
    println!("| page | p50 | p99 | max | bytes |");
    println!("|---|---:|---:|---:|---:|");
    let mut worst = Duration::ZERO;
    for (name, path) in &pages {
        let get = || http.get(format!("{base}{path}")).header("cookie", format!("ferry_session={session}")).send();
        for _ in 0..5 {
            let r = get().await?;
            ensure!(r.status() == 200, "{path}: {}", r.status());
            r.bytes().await?;
        }
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for _ in 0..args.requests {
            let t = Instant::now();
            let r = get().await?;
            let body = r.bytes().await?;
            times.push(t.elapsed());
            bytes = body.len();
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        worst = worst.max(p99);
        println!(
            "| {name} (`{}`) | {:.1} ms | {:.1} ms | {:.1} ms | {bytes} |",
            path.split('?').next().unwrap_or(path),
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    println!("\n{} flows, {written} run records, {} requests per page; worst p99 {:.1} ms", args.flows, args.requests, worst.as_secs_f64() * 1e3);
    let _ = stop.send(());
    let _ = serving.await;
    Ok(ExitCode::SUCCESS)
}
