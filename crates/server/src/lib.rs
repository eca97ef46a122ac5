//! `ferry serve`: one process that runs flows on their schedules, turns verified webhooks and records
//! pushed through the API into targeted syncs, and answers the REST API — all through the durable job
//! queue in the state store, so nothing is lost to a restart or a `kill -9`.
//!
//! ```text
//! scheduler ─┐
//! webhooks  ─┼─► JobQueue (state store) ─► workers ─► Workspace::sync / run_flow
//! API       ─┘
//! ```

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod records;
pub mod scheduler;
pub mod webhook;
pub mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use ferry_engine::schedule::{Clock, SystemClock};
use ferry_engine::store::SqliteStore;
use ferry_engine::{Config, Workspace};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use error::ApiError;

/// A webhook secret: never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[server]` settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Workers per workspace.
    pub workers: usize,
    /// How long a job's lease lasts without a heartbeat (a killed worker's job is claimable after it).
    pub lease: Duration,
    /// How long in-flight jobs may take to finish on shutdown before going back to the queue.
    pub shutdown_grace: Duration,
    /// How often idle workers and the scheduler look for work.
    pub poll: Duration,
    /// `[server.workspaces]`: workspace name → its config file (resolved against the server config's
    /// folder). Empty: the config itself is the one workspace, named `default`.
    pub workspaces: BTreeMap<String, PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            workers: 2,
            lease: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            workspaces: BTreeMap::new(),
        }
    }
}

/// The workspace a single config file is served as.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Workspace names appear in URLs and metric labels: lowercase letters, digits, `-`, `_`.
pub fn valid_workspace_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl ServerSettings {
    /// Reads `[server]`: `listen`, `workers`, `lease_seconds`, `shutdown_grace_seconds`, `poll_millis`,
    /// `workspaces`.
    pub fn from_config(config: &Config) -> Result<ServerSettings, String> {
        let mut s = ServerSettings::default();
        let Some(table) = &config.server else { return Ok(s) };
        for (k, v) in table {
            let bad = || format!("[server] {k}: unexpected value {v}");
            match k.as_str() {
                "listen" => s.listen = v.as_str().ok_or_else(bad)?.parse().map_err(|e| format!("[server] listen: {e}"))?,
                "workers" => s.workers = v.as_integer().filter(|n| *n >= 1).ok_or_else(bad)? as usize,
                "lease_seconds" => s.lease = Duration::from_secs(v.as_integer().filter(|n| *n >= 5).ok_or_else(bad)? as u64),
                "shutdown_grace_seconds" => s.shutdown_grace = Duration::from_secs(v.as_integer().filter(|n| *n >= 0).ok_or_else(bad)? as u64),
                "poll_millis" => s.poll = Duration::from_millis(v.as_integer().filter(|n| *n >= 10).ok_or_else(bad)? as u64),
                "workspaces" => {
                    let t = v.as_table().ok_or_else(|| "[server] workspaces: a table of name = \"path/to/workspace.toml\"".to_string())?;
                    for (name, path) in t {
                        if !valid_workspace_name(name) {
                            return Err(format!("[server.workspaces] {name:?}: a workspace name is lowercase letters, digits, - and _"));
                        }
                        let path = path.as_str().ok_or_else(|| format!("[server.workspaces] {name}: the path of the workspace's config file"))?;
                        let p = PathBuf::from(path);
                        s.workspaces.insert(name.clone(), if p.is_absolute() { p } else { config.base_dir.join(p) });
                    }
                }
                other => {
                    return Err(format!(
                        "[server] {other}: unknown setting (listen, workers, lease_seconds, shutdown_grace_seconds, poll_millis, workspaces)"
                    ));
                }
            }
        }
        Ok(s)
    }
}

/// Takes `webhook_secret` out of every connection's options (connectors never see it, and a connector
/// that rejects unknown options keeps working), falling back to env `FERRY_WEBHOOK_SECRET_<CONNECTION>`.
pub fn take_webhook_secrets(config: &mut Config) -> HashMap<String, Secret> {
    let mut secrets = HashMap::new();
    for (name, conn) in config.connections.iter_mut() {
        let from_config = conn.options.remove("webhook_secret").and_then(|v| v.as_str().map(str::to_owned));
        let from_env = std::env::var(secret_env_name(name)).ok();
        if let Some(s) = from_config.or(from_env).filter(|s| !s.is_empty()) {
            secrets.insert(name.clone(), Secret(s));
        }
    }
    secrets
}

/// `shop-eu` → `FERRY_WEBHOOK_SECRET_SHOP_EU`.
pub fn secret_env_name(connection: &str) -> String {
    let upper: String = connection.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("FERRY_WEBHOOK_SECRET_{upper}")
}

/// Everything the handlers, scheduler and workers share.
pub struct AppState {
    /// The workspace's name (`default` for a single config file).
    pub name: String,
    pub workspace: Workspace,
    pub store: Arc<SqliteStore>,
    pub clock: Arc<dyn Clock>,
    pub settings: ServerSettings,
    pub secrets: HashMap<String, Secret>,
    pub metrics: metrics::Metrics,
    /// When a webhook-triggered job was enqueued (job id → arrival), for the latency metric.
    pub webhook_arrivals: Mutex<HashMap<i64, Instant>>,
    /// Parsed schedules, by flow.
    pub schedules: BTreeMap<String, ferry_engine::schedule::CronSchedule>,
    /// When this server started (the scheduler's first mark: it does not fire the past).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Wakes idle workers when a job is enqueued.
    pub wake: tokio::sync::Notify,
}

impl AppState {
    /// Opens the state store, registers connectors (including `api` on that store) and parses schedules.
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<AppState>> {
        Self::open_with(config, clock, |_| {}).await
    }

    /// As [`AppState::open`], with extra connector types registered (tests register their own).
    pub async fn open_with(config: Config, clock: Arc<dyn Clock>, extra: impl FnOnce(&mut ferry_engine::Registry)) -> anyhow::Result<Arc<AppState>> {
        let settings = ServerSettings::from_config(&config).map_err(anyhow::Error::msg)?;
        if !settings.workspaces.is_empty() {
            anyhow::bail!("this config lists [server.workspaces]: open it with Server::open");
        }
        Self::open_workspace(DEFAULT_WORKSPACE, config, settings, clock, extra).await
    }

    /// One workspace: its own state store (runs, cross-reference, failures, jobs, records, API keys),
    /// connections and flows, under the server's settings.
    pub async fn open_workspace(
        name: &str,
        mut config: Config,
        settings: ServerSettings,
        clock: Arc<dyn Clock>,
        extra: impl FnOnce(&mut ferry_engine::Registry),
    ) -> anyhow::Result<Arc<AppState>> {
        let secrets = take_webhook_secrets(&mut config);
        let store = Arc::new(SqliteStore::open(&config.state_path()).await?);
        let mut registry = ferry_connectors::registry_with_store(store.clone());
        extra(&mut registry);
        let mut schedules = BTreeMap::new();
        for (name, flow) in &config.flows {
            if let (Some(expr), true) = (&flow.schedule, flow.enabled) {
                let s = ferry_engine::schedule::CronSchedule::parse(expr, flow.schedule_timezone.as_deref())
                    .map_err(|e| anyhow::anyhow!("flows.{name}.{e}"))?;
                schedules.insert(name.clone(), s);
            }
        }
        let workspace = Workspace::with_store(config, registry, store.clone());
        let started_at = clock.now();
        Ok(Arc::new(AppState {
            name: name.to_owned(),
            workspace,
            store,
            clock,
            settings,
            secrets,
            metrics: metrics::Metrics::default(),
            webhook_arrivals: Mutex::new(HashMap::new()),
            schedules,
            started_at,
            wake: tokio::sync::Notify::new(),
        }))
    }

    pub async fn open_default(config: Config) -> anyhow::Result<Arc<AppState>> {
        Self::open(config, Arc::new(SystemClock)).await
    }
}

/// Every workspace the server answers for. A request's API key decides its workspace (a key lives in
/// one workspace's store), so no request can name, read or change another workspace's data.
pub struct Server {
    pub workspaces: BTreeMap<String, Arc<AppState>>,
    /// Served from `[server.workspaces]` (metrics carry a `workspace` label; webhooks name the workspace).
    pub multi: bool,
    pub settings: ServerSettings,
}

impl Server {
    /// One config file served as the workspace `default` (`/hooks/{connection}` reaches it).
    pub fn single(state: Arc<AppState>) -> Arc<Server> {
        let settings = state.settings.clone();
        Arc::new(Server { workspaces: BTreeMap::from([(state.name.clone(), state)]), multi: false, settings })
    }

    /// Opens what `config` describes: itself as the one workspace, or each workspace of
    /// `[server.workspaces]`, each with its own state store file.
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Server>> {
        Self::open_with(config, clock, |_| {}).await
    }

    /// As [`Server::open`], with extra connector types registered in every workspace.
    pub async fn open_with(config: Config, clock: Arc<dyn Clock>, extra: impl Fn(&mut ferry_engine::Registry)) -> anyhow::Result<Arc<Server>> {
        let settings = ServerSettings::from_config(&config).map_err(anyhow::Error::msg)?;
        if settings.workspaces.is_empty() {
            return Ok(Self::single(AppState::open_workspace(DEFAULT_WORKSPACE, config, settings, clock, extra).await?));
        }
        if !config.connections.is_empty() || !config.flows.is_empty() {
            anyhow::bail!(
                "a server config with [server.workspaces] holds no connections or flows of its own: put them in a workspace's file"
            );
        }
        let mut workspaces = BTreeMap::new();
        let mut stores: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (name, path) in &settings.workspaces {
            let ws_config = Config::load(path).map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
            if ws_config.server.is_some() {
                anyhow::bail!("workspace {name} ({}): [server] settings belong to the server config, not a workspace's", path.display());
            }
            let state = AppState::open_workspace(name, ws_config, settings.clone(), clock.clone(), &extra).await?;
            // Separate store files are what keeps workspaces apart: two sharing one would share keys and data.
            let store_path = state.workspace.config.state_path();
            let canonical = std::fs::canonicalize(&store_path).unwrap_or(store_path.clone());
            if let Some(other) = stores.insert(canonical, name.clone()) {
                anyhow::bail!(
                    "workspaces {other} and {name} use the same state store {}: give each its own [state] path",
                    store_path.display()
                );
            }
            workspaces.insert(name.clone(), state);
        }
        Ok(Arc::new(Server { workspaces, multi: true, settings }))
    }

    pub fn workspace(&self, name: &str) -> Option<&Arc<AppState>> {
        self.workspaces.get(name)
    }

    /// The workspace `/hooks/{connection}` reaches: the config's own, when not serving several.
    pub fn default_workspace(&self) -> Option<&Arc<AppState>> {
        if self.multi { None } else { self.workspaces.values().next() }
    }
}

/// Every route of a single-workspace server. (openapi.json documents the same set; `tests/api.rs` checks they agree.)
pub fn router(state: Arc<AppState>) -> Router {
    router_for(Server::single(state))
}

/// Every route.
pub fn router_for(server: Arc<Server>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/docs", get(api::docs))
        .route("/hooks/{connection}", post(webhook::receive_default))
        .route("/hooks/{workspace}/{connection}", post(webhook::receive))
        .route("/api/v1/flows", get(api::flows))
        .route("/api/v1/flows/{flow}", get(api::flow_status))
        .route("/api/v1/flows/{flow}/trigger", post(api::trigger))
        .route("/api/v1/flows/{flow}/schedule", get(api::flow_schedule))
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/jobs/{id}", get(api::job))
        .route("/api/v1/runs", get(api::runs))
        .route("/api/v1/runs/{id}/records", get(api::run_records))
        .route("/api/v1/failures", get(api::failures))
        .route("/api/v1/failures/{id}/retry", post(api::retry_failure))
        .route("/api/v1/failures/{id}", delete(api::drop_failure))
        .route("/api/v1/xref/{key}", get(api::xref))
        .route("/api/v1/connections", get(api::connections))
        .route("/api/v1/connections/{name}/check", post(api::check_connection))
        .route("/api/v1/records/{stream}", post(records::push).get(records::pull))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/docs") })
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(server)
}

/// Serves one workspace (see [`serve_all`]).
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    serve_all(Server::single(state), listener, shutdown).await
}

/// Runs the HTTP server, and each workspace's scheduler and workers, until `shutdown` resolves; then stops
/// taking work, lets in-flight jobs finish within the grace period, and gives the rest back to the queue.
pub async fn serve_all(server: Arc<Server>, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for state in server.workspaces.values() {
        for i in 0..state.settings.workers {
            tasks.push(tokio::spawn(worker::run(state.clone(), i, stop_rx.clone())));
        }
        tasks.push(tokio::spawn(scheduler::run(state.clone(), stop_rx.clone())));
    }
    let addr = listener.local_addr()?;
    let names: Vec<&str> = server.workspaces.keys().map(String::as_str).collect();
    tracing::info!(%addr, workers = server.settings.workers, workspaces = ?names, "ferry serve listening");
    let mut http_stop = stop_rx.clone();
    let http = axum::serve(listener, router_for(server.clone()))
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        });
    let http = tokio::spawn(async move { http.await });
    shutdown.await;
    tracing::info!("shutting down: no new jobs; in-flight jobs get {:?} to finish", server.settings.shutdown_grace);
    let _ = stop_tx.send(true);
    for state in server.workspaces.values() {
        state.wake.notify_waiters();
    }
    for t in tasks {
        let _ = t.await;
    }
    http.await??;
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
