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
    pub workers: usize,
    /// How long a job's lease lasts without a heartbeat (a killed worker's job is claimable after it).
    pub lease: Duration,
    /// How long in-flight jobs may take to finish on shutdown before going back to the queue.
    pub shutdown_grace: Duration,
    /// How often idle workers and the scheduler look for work.
    pub poll: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            workers: 2,
            lease: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }
}

impl ServerSettings {
    /// Reads `[server]`: `listen`, `workers`, `lease_seconds`, `shutdown_grace_seconds`.
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
                other => return Err(format!("[server] {other}: unknown setting (listen, workers, lease_seconds, shutdown_grace_seconds)")),
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
    pub async fn open_with(mut config: Config, clock: Arc<dyn Clock>, extra: impl FnOnce(&mut ferry_engine::Registry)) -> anyhow::Result<Arc<AppState>> {
        let settings = ServerSettings::from_config(&config).map_err(anyhow::Error::msg)?;
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

/// Every route. (openapi.json documents the same set; `tests/api.rs` checks they agree.)
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/docs", get(api::docs))
        .route("/hooks/{connection}", post(webhook::receive))
        .route("/api/v1/flows", get(api::flows))
        .route("/api/v1/flows/{flow}", get(api::flow_status))
        .route("/api/v1/flows/{flow}/trigger", post(api::trigger))
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
        .with_state(state)
}

/// Runs the HTTP server, the scheduler and the workers until `shutdown` resolves; then stops taking
/// work, lets in-flight jobs finish within the grace period, and gives the rest back to the queue.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..state.settings.workers {
        tasks.push(tokio::spawn(worker::run(state.clone(), i, stop_rx.clone())));
    }
    tasks.push(tokio::spawn(scheduler::run(state.clone(), stop_rx.clone())));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, workers = state.settings.workers, "ferry serve listening");
    let mut http_stop = stop_rx.clone();
    let http = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        });
    let http = tokio::spawn(async move { http.await });
    shutdown.await;
    tracing::info!("shutting down: no new jobs; in-flight jobs get {:?} to finish", state.settings.shutdown_grace);
    let _ = stop_tx.send(true);
    state.wake.notify_waiters();
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
