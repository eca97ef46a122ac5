//! `ferry`: run flows, inspect state, replay failures.

/// `println!` that ends the process quietly (exit status 141, as a shell reports SIGPIPE) when stdout is
/// a pipe that was closed (`ferry status | head`), instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

/// mimalloc instead of glibc's malloc: see crates/cli/Cargo.toml and docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alerts;
mod bench;
mod bench_dashboard;
mod bench_serve;
mod output;
mod remote;
mod secrets;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ferry_engine::run::Replay;
use ferry_engine::{Config, RunOptions, Workspace, holder_id};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Ferry: keep a business system and a web shop in sync.", long_about = None)]
struct Cli {
    /// Config file.
    #[arg(short, long, global = true, env = "FERRY_CONFIG", default_value = "ferry.toml")]
    config: PathBuf,
    /// A workspace of the config's `[server.workspaces]`: commands act on that workspace's config and
    /// state store (its keys, flows, failures…).
    #[arg(short, long, global = true, env = "FERRY_WORKSPACE")]
    workspace: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "FERRY_LOG_FORMAT")]
    log_format: LogFormat,
    /// Print results as JSON (every command that prints results; `bench-serve` prints its table only).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented example config (CSV export → JSONL shop) to start from.
    Init {
        /// Where to write it.
        #[arg(default_value = "ferry.toml")]
        path: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Test every connection (or one) without changing anything.
    Check { connection: Option<String> },
    /// Run a flow (or all enabled flows with --all).
    Sync {
        flow: Option<String>,
        #[arg(long, conflicts_with = "flow")]
        all: bool,
        /// Re-read everything from the start and reconcile records missing from the source.
        #[arg(long)]
        full: bool,
        /// Show what would be written, field by field; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only these records, by canonical key (after the flow's mapping: the SKU, customer code or
        /// order number the record has in Ferry's model), e.g. one SKU or one order number.
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Retire records missing from the source even beyond the flow's max_retire_share.
        #[arg(long)]
        force_retire: bool,
        /// Let a complete read that found no records at all (an empty or header-only export) retire the
        /// records synced before; without it such a run stops with an error naming the source.
        #[arg(long)]
        allow_empty_source: bool,
        /// Trigger the flow on a running `ferry serve` (its queue runs it) instead of running it here.
        #[arg(long, env = "FERRY_SERVER", requires = "flow")]
        server: Option<String>,
        /// With --server: the API key (scope write), by default from env FERRY_API_KEY.
        #[arg(long, env = "FERRY_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// With --server: seconds to wait for the job's outcome (0: return once it is queued).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Last runs per flow and open failures.
    Status { flow: Option<String> },
    /// Records that failed: list, retry after a fix, or drop.
    Failures {
        #[command(subcommand)]
        action: FailuresAction,
    },
    /// Where a record went: source key or target id → flows, target ids, last sync.
    Xref { key: String },
    /// Forget old runs, finished jobs and pushed records, and compact JSONL targets, as `[retention]`
    /// says (`ferry serve` does it by itself once a day).
    Prune {
        /// Count what would go; remove and rewrite nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Connector types in this build, with their streams and options.
    Describe { connector: Option<String> },
    /// When a flow's schedule fires next, in its time zone and in UTC.
    Schedule {
        flow: String,
        /// Start after this time: RFC 3339 (2026-04-05T00:00:00Z) or a local date-time in the schedule's
        /// zone (2026-04-05T00:00, 2026-04-05). Default: now.
        #[arg(long)]
        from: Option<String>,
        /// How many firings.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
        count: u16,
    },
    /// The JSON Schema of the canonical model.
    Schema,
    /// Measure sync speed and memory on generated data (CSV → JSONL).
    Bench(bench::BenchArgs),
    /// Measure the server: records API push throughput and webhook → job → target latency.
    BenchServe(bench_serve::BenchServeArgs),
    /// Measure the dashboard: each page's render time for a large workspace (100 flows, 1M run records).
    BenchDashboard(bench_dashboard::BenchDashboardArgs),
    /// Run schedules, webhooks, the job queue's workers and the REST API until SIGTERM / ctrl-c.
    Serve {
        /// Listen address (default: `[server] listen`, else 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// API keys of `ferry serve`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Connection secrets, encrypted in the state store under the master key (FERRY_MASTER_KEY_FILE).
    Secrets {
        #[command(subcommand)]
        action: secrets::SecretsAction,
    },
    /// Alerts of `ferry serve` ([alerts]): the open ones, or a test message to each channel.
    Alerts {
        #[command(subcommand)]
        action: alerts::AlertsAction,
    },
    /// The state store itself: move it to another backend.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Copy this workspace's SQLite state store (cross-references, hashes, checkpoints, failures, runs,
    /// jobs, schedules' marks, pushed records, API keys, secrets) into an empty PostgreSQL schema; then
    /// point `[state] url` at it. Stop every `ferry serve` on the SQLite file first.
    Migrate {
        /// postgres://USER@HOST:PORT/DATABASE
        #[arg(long)]
        to: String,
        /// The schema to fill (created if needed; must hold no state yet). Default: `ferry`.
        #[arg(long)]
        schema: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; its token is printed once and stored only as a hash.
    Create {
        /// Comma-separated: read, write, admin.
        #[arg(long, default_value = "read")]
        scope: String,
        #[arg(long, default_value = "api key")]
        name: String,
    },
    List,
    Revoke { id: String },
}

#[derive(Subcommand)]
enum FailuresAction {
    List { flow: Option<String> },
    /// Replay parked records now (all of a flow, or some by id).
    Retry {
        flow: String,
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Forget parked records (by id, or --all of a flow).
    Drop {
        flow: String,
        #[arg(long = "id")]
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

/// Exit codes (README "Exit codes"): distinct, so scripts can tell a typo from a bad record.
mod exit {
    /// Some records failed (listed, parked for replay); the rest were synced.
    pub const RECORDS_FAILED: u8 = 2;
    /// The run could not complete (endpoint down, bad config, nothing to do with `sync --all`).
    pub const FAILED: u8 = 1;
    /// The command line was wrong (sysexits EX_USAGE; clap's own code, 2, would read as "records failed").
    pub const USAGE: u8 = 64;
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are answers, not errors.
            return if e.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::from(exit::FAILED)
        }
    }
}

/// An error and its causes on one line, each said once: errors that already quote their source
/// (`cannot read config x: No such file…`) are not followed by it again, and empty contexts are left out.
fn causes(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Colour only for a person at a terminal, and never with `NO_COLOR` set (https://no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat) {
    // Failed records are listed in each run's summary and kept by `ferry failures`; FERRY_LOG=warn logs
    // each one as it happens too (and FERRY_LOG=info every run's progress).
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| "error".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour_on_stderr());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Opens the flow's source stream the way a sync does and takes its first item: the file or endpoint a
/// sync would read answers, and a source warning (a CSV header split by the wrong delimiter) fails it.
async fn check_flow_source(ws: &Workspace, name: &str) -> Result<ferry_engine::CheckReport, ferry_engine::ConnectorError> {
    use ferry_engine::{CheckReport, ReadItem, ReadRequest};
    use futures::StreamExt;
    let flow = ws.flow(name).map_err(|e| ferry_engine::ConnectorError::config(format!("flow {name}"), e.to_string()))?;
    let stream = flow.config.stream;
    let what = format!("reads {stream} from {}", flow.config.source);
    let mut items = flow.source.read(ReadRequest { stream: Some(stream), checkpoint: None, keys: None });
    Ok(match items.next().await {
        None => CheckReport { ok: true, details: vec![format!("{what}: no records yet")] },
        Some(Ok(ReadItem::Warning(w))) => CheckReport { ok: false, details: vec![format!("{what}: {w}")] },
        Some(Ok(_)) => CheckReport { ok: true, details: vec![format!("{what}: readable")] },
        Some(Err(e)) => CheckReport { ok: false, details: vec![format!("{what}: {e}")] },
    })
}

/// Whether the flow's target may write its stream (access rights, permissions), changing nothing.
async fn check_flow_target(ws: &Workspace, name: &str) -> Result<ferry_engine::CheckReport, ferry_engine::ConnectorError> {
    let flow = ws.flow(name).map_err(|e| ferry_engine::ConnectorError::config(format!("flow {name}"), e.to_string()))?;
    let stream = flow.config.stream;
    let what = format!("writes {stream} to {}", flow.config.target);
    Ok(match flow.target.check_write(stream).await {
        Ok(details) if details.is_empty() => ferry_engine::CheckReport { ok: true, details: vec![format!("{what}: checked with the connection")] },
        Ok(details) => ferry_engine::CheckReport { ok: true, details: details.into_iter().map(|d| format!("{what}: {d}")).collect() },
        Err(e) => ferry_engine::CheckReport { ok: false, details: vec![format!("{what}: {e}")] },
    })
}

/// A server config listing workspaces has no state of its own: a command must name a workspace.
fn one_workspace(config: &Config, path: &Path) -> Result<()> {
    if let Some(ws) = config.server.as_ref().and_then(|s| s.get("workspaces")).and_then(|w| w.as_table()) {
        bail!(
            "{} serves several workspaces; name one with --workspace ({})",
            path.display(),
            ws.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

async fn open(config_path: &Path, workspace: Option<&str>) -> Result<Workspace> {
    Ok(open_with_store(config_path, workspace).await?.0)
}

/// The workspace and its state store (for the store's parts a `Workspace` does not expose).
async fn open_with_store(config_path: &Path, workspace: Option<&str>) -> Result<(Workspace, std::sync::Arc<dyn ferry_engine::Store>)> {
    let mut config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) if !config_path.exists() => bail!("{e} (run `ferry init` to write an example config)"),
        Err(e) => return Err(e.into()),
    };
    one_workspace(&config, config_path)?;
    let store = ferry_engine::store::open_configured(&config).await?;
    let registry = ferry_connectors::registry_with_store(store.clone());
    // `{ secret = "NAME" }` options and the workspace's env variables, as `ferry serve` resolves them.
    for warning in ferry_server::prepare_config(&mut config, workspace, store.as_ref(), &registry).await?.warnings {
        eprintln!("warning: {warning}");
    }
    // `webhook_secret` belongs to `ferry serve`, not to connectors; `api` connections live on the store.
    ferry_server::take_webhook_secrets(&mut config, workspace);
    Ok((Workspace::with_store(config, registry, store.clone()), store))
}

/// The config file commands act on: `--config` itself, or with `--workspace NAME` the file that
/// `[server.workspaces]` names for it.
fn workspace_config(cli: &Cli) -> Result<PathBuf> {
    let Some(name) = &cli.workspace else { return Ok(cli.config.clone()) };
    let top = Config::load(&cli.config)?;
    let settings = ferry_server::ServerSettings::from_config(&top).map_err(anyhow::Error::msg)?;
    match settings.workspaces.get(name) {
        Some(path) => Ok(path.clone()),
        None if settings.workspaces.is_empty() => {
            bail!("--workspace {name}: {} has no [server.workspaces]", cli.config.display())
        }
        None => bail!(
            "--workspace {name}: not in [server.workspaces] of {} (workspaces: {})",
            cli.config.display(),
            settings.workspaces.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

async fn run(mut cli: Cli) -> Result<ExitCode> {
    if !matches!(cli.command, Command::Serve { .. }) {
        cli.config = workspace_config(&cli)?;
    } else if cli.workspace.is_some() {
        bail!("ferry serve runs every workspace of [server.workspaces]; --workspace is for the other commands");
    }
    match cli.command {
        Command::Init { path, force } => {
            if path.exists() && !force {
                bail!("{} exists; pass --force to overwrite", path.display());
            }
            std::fs::write(&path, include_str!("../../../examples/quickstart/ferry.toml"))
                .with_context(|| format!("writing {}", path.display()))?;
            if cli.json {
                out!("{}", serde_json::json!({"written": path}));
            } else {
                out!("wrote {}: edit the connections and mappings, then `ferry check` and `ferry sync --all`", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            out!("{}", serde_json::to_string_pretty(&ferry_model::schema::model_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { connector } => {
            output::describe(&ferry_connectors::types(), connector.as_deref(), cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { flow, from, count } => {
            let config = Config::load(&cli.config)?;
            one_workspace(&config, &cli.config)?;
            let f = config.flow(&flow).map_err(anyhow::Error::msg)?;
            let Some(expr) = &f.schedule else { bail!("flow {flow} has no schedule (set `schedule` in [flows.{flow}])") };
            let schedule = ferry_engine::schedule::CronSchedule::parse(expr, f.schedule_timezone.as_deref()).map_err(anyhow::Error::msg)?;
            let from = match from {
                Some(t) => schedule.parse_instant(&t).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
                None => chrono::Utc::now(),
            };
            let firings: Vec<_> = schedule.upcoming(from, count.into()).into_iter().map(|t| schedule.firing(t)).collect();
            output::schedule(&flow, &schedule, f.enabled, &firings, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(args, cli.json).await,
        Command::BenchServe(args) => bench_serve::run(args).await,
        Command::BenchDashboard(args) => bench_dashboard::run(args).await,
        Command::Serve { listen } => {
            let config = Config::load(&cli.config)?;
            let server = ferry_server::Server::open(config, std::sync::Arc::new(ferry_engine::schedule::SystemClock)).await?;
            let addr = listen.unwrap_or(server.settings.listen);
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            let names: Vec<&str> = server.workspaces.keys().map(String::as_str).collect();
            eprintln!(
                "ferry serve: listening on http://{addr} (dashboard at /, API docs at /api/docs), workspaces: {}; SIGTERM or ctrl-c to stop",
                names.join(", ")
            );
            ferry_server::serve_all(server, listener, ferry_server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::State { action: StateAction::Migrate { to, schema } } => {
            let config = Config::load(&cli.config)?;
            one_workspace(&config, &cli.config)?;
            let ferry_engine::config::StateLocation::Sqlite(path) = config.state_location().map_err(anyhow::Error::msg)? else {
                bail!("{}: [state] is not a SQLite store; `ferry state migrate` copies a SQLite store into PostgreSQL", cli.config.display());
            };
            if !path.exists() {
                bail!("state store {} does not exist: nothing to migrate", path.display());
            }
            let target = ferry_engine::config::StateLocation::parse(&to, schema.as_deref(), Some(4), &config.base_dir).map_err(anyhow::Error::msg)?;
            let ferry_engine::config::StateLocation::Postgres { url, schema, max_connections } = &target else {
                bail!("--to: {} is not a postgres:// URL", ferry_engine::store::postgres::redact_url(&to));
            };
            let from = ferry_engine::SqliteStore::open(&path).await?;
            let into = ferry_engine::PgStore::open(url, schema, *max_connections).await?;
            let report = ferry_engine::store::copy::copy_sqlite_to_postgres(&from, &into).await?;
            if cli.json {
                out!("{}", serde_json::json!({"from": path, "to": target.describe(), "tables": report.tables}));
            } else {
                for (table, rows) in &report.tables {
                    out!("{table:<20} {rows:>9} rows");
                }
                eprintln!(
                    "copied {} into {}; now set [state] url = \"{}\" and schema = \"{schema}\" in {}",
                    path.display(),
                    target.describe(),
                    ferry_engine::store::postgres::redact_url(url),
                    cli.config.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { action } => {
            use ferry_engine::store::keys::Scope;
            let config = Config::load(&cli.config)?;
            one_workspace(&config, &cli.config)?;
            let store = ferry_engine::store::open_configured(&config).await?;
            match action {
                KeysAction::Create { scope, name } => {
                    let scopes = Scope::parse_list(&scope).map_err(anyhow::Error::msg)?;
                    let (key, token) = store.create_key(&name, &scopes).await?;
                    if cli.json {
                        out!("{}", serde_json::json!({"key": key, "token": token}));
                    } else {
                        out!("{token}");
                        let ws = cli.workspace.as_deref().map(|w| format!(" in workspace {w}")).unwrap_or_default();
                        eprintln!("key {} ({}){ws} created; the token above is shown only now", key.id, scope);
                    }
                }
                KeysAction::List => {
                    let keys = store.list_keys().await?;
                    if cli.json {
                        out!("{}", serde_json::to_string_pretty(&keys)?);
                    } else {
                        for k in keys {
                            let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                            out!("{}  {:<20} {:<18} {}", k.id, k.name, scopes.join(","), if k.revoked { "revoked" } else { "active" });
                        }
                    }
                }
                KeysAction::Revoke { id } => {
                    if !store.revoke_key(&id).await? {
                        bail!("no active key {id} (see `ferry keys list`)");
                    }
                    if cli.json {
                        out!("{}", serde_json::json!({"revoked": id}));
                    } else {
                        out!("revoked key {id}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets { action } => secrets::run(&cli.config, action, cli.json).await,
        Command::Alerts { action } => alerts::run(&cli.config, cli.workspace.as_deref(), action, cli.json).await,
        Command::Check { connection } => {
            let ws = open(&cli.config, cli.workspace.as_deref()).await?;
            let names: Vec<String> = match connection {
                Some(c) => vec![c],
                None => ws.config.connections.keys().cloned().collect(),
            };
            let mut results = Vec::new();
            for name in &names {
                let result = match ws.connection(name) {
                    Ok(c) => c.check().await,
                    Err(e) => Err(e),
                };
                results.push((name.clone(), result));
            }
            // A connection can be fine while a flow's stream on it is not (its file missing or unreadable):
            // each enabled flow reading from a checked connection opens its stream as a sync would.
            for (flow, f) in &ws.config.flows {
                if f.enabled && names.contains(&f.source) {
                    results.push((format!("flow {flow}"), check_flow_source(&ws, flow).await));
                }
                // …and each enabled flow writing to one asks whether it may (rights in the ERP or shop).
                if f.enabled && names.contains(&f.target) {
                    results.push((format!("flow {flow} target"), check_flow_target(&ws, flow).await));
                }
            }
            let ok = output::check(&results, cli.json)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(exit::FAILED) })
        }
        Command::Sync { flow: Some(flow), server: Some(server), api_key, full, dry_run, keys, wait, .. } => {
            if dry_run {
                bail!("--dry-run runs here, not on a server: drop --server (and FERRY_SERVER) to see the planned changes");
            }
            let token = api_key.context("--server needs an API key: --api-key or env FERRY_API_KEY (create one with `ferry keys create --scope write`)")?;
            remote::sync(remote::Trigger {
                server: &server,
                token: &token,
                flow: &flow,
                keys: (!keys.is_empty()).then_some(keys),
                full,
                wait: (wait > 0).then(|| std::time::Duration::from_secs(wait)),
                json: cli.json,
            })
            .await
        }
        Command::Sync { flow, all, full, dry_run, keys, force_retire, allow_empty_source, .. } => {
            let ws = open(&cli.config, cli.workspace.as_deref()).await?;
            let flows: Vec<String> = match (flow, all) {
                (Some(f), _) => vec![f],
                (None, true) => {
                    let enabled: Vec<String> = ws.config.flows.iter().filter(|(_, f)| f.enabled).map(|(n, _)| n.clone()).collect();
                    if enabled.is_empty() {
                        bail!(
                            "nothing to sync: {} has no enabled flows ({} flow(s) in all; add a [flows.NAME] section or set enabled = true)",
                            cli.config.display(),
                            ws.config.flows.len()
                        );
                    }
                    enabled
                }
                (None, false) => bail!(
                    "name a flow or pass --all; flows: {}",
                    ws.config.flows.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            let options = RunOptions {
                full,
                dry_run,
                keys: (!keys.is_empty()).then_some(keys),
                force_retire,
                allow_empty_source,
                holder: holder_id(),
                ..Default::default()
            };
            let mut worst = ExitCode::SUCCESS;
            for name in flows {
                let progress = output::ProgressBar::new(&name);
                let report = ws.sync(&name, &options, &progress).await;
                progress.finish();
                let report = report?;
                output::report(&report, cli.json)?;
                if report.aborted.is_some() {
                    worst = ExitCode::from(exit::FAILED);
                } else if report.counts.failed > 0 && worst == ExitCode::SUCCESS {
                    worst = ExitCode::from(exit::RECORDS_FAILED);
                }
            }
            Ok(worst)
        }
        Command::Status { flow } => {
            let ws = open(&cli.config, cli.workspace.as_deref()).await?;
            // A run whose process died (kill -9) shows as interrupted, not as running forever.
            ferry_engine::lease::interrupt_stale_runs(ws.store(), flow.as_deref()).await?;
            output::status(&ws, flow.as_deref(), cli.json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Failures { action } => {
            let ws = open(&cli.config, cli.workspace.as_deref()).await?;
            match action {
                FailuresAction::List { flow } => {
                    let failures = ws.store().failures(flow.as_deref(), None).await?;
                    output::failures(&failures, cli.json)?;
                    Ok(ExitCode::SUCCESS)
                }
                FailuresAction::Retry { flow, ids } => {
                    let replay = if ids.is_empty() { Replay::AllOnly } else { Replay::IdsOnly(ids) };
                    let options = RunOptions { replay, holder: holder_id(), ..Default::default() };
                    let progress = output::ProgressBar::new(&flow);
                    let report = ws.sync(&flow, &options, &progress).await;
                    progress.finish();
                    let report = report?;
                    output::report(&report, cli.json)?;
                    Ok(if report.counts.failed > 0 { ExitCode::from(exit::RECORDS_FAILED) } else { ExitCode::SUCCESS })
                }
                FailuresAction::Drop { flow, ids, all } => {
                    if ids.is_empty() && !all {
                        bail!("name failures with --id N (see `ferry failures list {flow}`), or pass --all");
                    }
                    let n = ws.store().drop_failures(Some(&flow), &ids).await?;
                    if cli.json {
                        out!("{}", serde_json::json!({"flow": flow, "dropped": n}));
                    } else {
                        out!("dropped {n} failure(s) of flow {flow}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Prune { dry_run } => {
            let (ws, store) = open_with_store(&cli.config, cli.workspace.as_deref()).await?;
            let report = ferry_engine::retention::prune(&ws, store.as_ref(), chrono::Utc::now(), &ferry_engine::retention::holder(), dry_run).await?;
            output::prune(&report, cli.json)?;
            Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Xref { key } => {
            let ws = open(&cli.config, cli.workspace.as_deref()).await?;
            let rows = ws.store().xref_find(&key).await?;
            if rows.is_empty() {
                bail!("{key:?} is not a source key or target id of any flow");
            }
            output::xref(&rows, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
