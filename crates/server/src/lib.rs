//! `ferry serve`: one process that runs flows on their schedules, turns verified webhooks and records
//! pushed through the API into targeted syncs, and answers the REST API — all through the durable job
//! queue in the state store, so nothing is lost to a restart or a `kill -9`.
//!
//! ```text
//! scheduler ─┐
//! webhooks  ─┼─► JobQueue (state store) ─► workers ─► Workspace::sync / run_flow
//! API       ─┘
//! ```

pub mod alerts;
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod records;
pub mod retention;
pub mod scheduler;
pub mod webhook;
pub mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use ferry_engine::schedule::{Clock, SystemClock};
use ferry_engine::store::Store;
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
    /// Workers per workspace. 0: this node accepts webhooks and API calls and runs no jobs (the nodes
    /// sharing its PostgreSQL store run them).
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
    /// Largest webhook body read; a larger one is refused with 413 before more is buffered.
    pub webhook_max_bytes: usize,
    /// Largest body of an API request (records pushed in one call).
    pub api_max_bytes: usize,
    /// A request taking longer is answered 408 (and its work dropped).
    pub request_timeout: Duration,
    /// Requests handled at once; more are refused with 503 at once rather than queued.
    pub max_concurrent_requests: usize,
    /// A repeated webhook delivery id within this window gets no second job.
    pub webhook_dedup_window: Duration,
    /// Let workspaces' connector paths leave their folder (`[server] allow_paths_outside_workspace`).
    pub allow_paths_outside_workspace: bool,
    /// Bearer token for `/metrics` of every workspace (env `FERRY_METRICS_TOKEN`).
    pub metrics_token: Option<Secret>,
    /// The dashboard's admin password (env `FERRY_ADMIN_PASSWORD`): admin in every workspace. Without
    /// it, people sign in with API keys only.
    pub admin_password: Option<Secret>,
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
            webhook_max_bytes: 256 * 1024,
            api_max_bytes: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
            webhook_dedup_window: Duration::from_secs(24 * 3600),
            allow_paths_outside_workspace: false,
            metrics_token: None,
            admin_password: None,
        }
    }
}

/// Env variable holding the bearer token of `/metrics`.
pub const METRICS_TOKEN_ENV: &str = "FERRY_METRICS_TOKEN";

/// The workspace a single config file is served as.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Workspace names appear in URLs and metric labels: lowercase letters, digits, `-`, `_`.
pub fn valid_workspace_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl ServerSettings {
    /// Reads `[server]`: `listen`, `workers`, `lease_seconds`, `shutdown_grace_seconds`, `poll_millis`,
    /// `workspaces`, `webhook_max_bytes`, `api_max_bytes`, `request_timeout_seconds`,
    /// `max_concurrent_requests`, `webhook_dedup_window_seconds`, `allow_paths_outside_workspace`;
    /// and env `FERRY_METRICS_TOKEN` and `FERRY_ADMIN_PASSWORD`.
    pub fn from_config(config: &Config) -> Result<ServerSettings, String> {
        let mut s = ServerSettings {
            metrics_token: std::env::var(METRICS_TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()).map(Secret),
            admin_password: std::env::var(dashboard::session::ADMIN_PASSWORD_ENV).ok().filter(|t| !t.is_empty()).map(Secret),
            ..ServerSettings::default()
        };
        let Some(table) = &config.server else { return Ok(s) };
        for (k, v) in table {
            let bad = || format!("[server] {k}: unexpected value {v}");
            match k.as_str() {
                "listen" => s.listen = v.as_str().ok_or_else(bad)?.parse().map_err(|e| format!("[server] listen: {e}"))?,
                "workers" => s.workers = v.as_integer().filter(|n| *n >= 0).ok_or_else(bad)? as usize,
                "lease_seconds" => s.lease = Duration::from_secs(v.as_integer().filter(|n| *n >= 5).ok_or_else(bad)? as u64),
                "shutdown_grace_seconds" => s.shutdown_grace = Duration::from_secs(v.as_integer().filter(|n| *n >= 0).ok_or_else(bad)? as u64),
                "poll_millis" => s.poll = Duration::from_millis(v.as_integer().filter(|n| *n >= 10).ok_or_else(bad)? as u64),
                "webhook_max_bytes" => s.webhook_max_bytes = v.as_integer().filter(|n| (1..=16 << 20).contains(n)).ok_or_else(bad)? as usize,
                "api_max_bytes" => s.api_max_bytes = v.as_integer().filter(|n| (1024..=1 << 30).contains(n)).ok_or_else(bad)? as usize,
                "request_timeout_seconds" => s.request_timeout = Duration::from_secs(v.as_integer().filter(|n| *n >= 1).ok_or_else(bad)? as u64),
                "max_concurrent_requests" => s.max_concurrent_requests = v.as_integer().filter(|n| *n >= 1).ok_or_else(bad)? as usize,
                "webhook_dedup_window_seconds" => {
                    s.webhook_dedup_window = Duration::from_secs(v.as_integer().filter(|n| *n >= 0).ok_or_else(bad)? as u64)
                }
                "allow_paths_outside_workspace" => s.allow_paths_outside_workspace = v.as_bool().ok_or_else(bad)?,
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
                        "[server] {other}: unknown setting (listen, workers, lease_seconds, shutdown_grace_seconds, poll_millis, workspaces, \
                         webhook_max_bytes, api_max_bytes, request_timeout_seconds, max_concurrent_requests, webhook_dedup_window_seconds, \
                         allow_paths_outside_workspace)"
                    ));
                }
            }
        }
        Ok(s)
    }
}

/// Takes `webhook_secret` out of every connection's options (connectors never see it, and a connector
/// that rejects unknown options keeps working), falling back to the environment: in a workspace of a
/// server of several, `FERRY_WEBHOOK_SECRET_<WORKSPACE>_<CONNECTION>` only (two workspaces' connections
/// named alike must not share a secret); for a single config, `FERRY_WEBHOOK_SECRET_<CONNECTION>`.
pub fn take_webhook_secrets(config: &mut Config, workspace: Option<&str>) -> HashMap<String, Secret> {
    let mut secrets = HashMap::new();
    for (name, conn) in config.connections.iter_mut() {
        let from_config = conn.options.remove("webhook_secret").and_then(|v| v.as_str().map(str::to_owned));
        let from_env = std::env::var(secret_env_name(workspace, name)).ok();
        if workspace.is_some() && from_config.is_none() && from_env.is_none() && std::env::var(secret_env_name(None, name)).is_ok() {
            tracing::warn!(
                connection = %name,
                ignored = %secret_env_name(None, name),
                wanted = %secret_env_name(workspace, name),
                "process-wide webhook secret ignored: with several workspaces each has its own variable"
            );
        }
        if let Some(s) = from_config.or(from_env).filter(|s| !s.is_empty()) {
            secrets.insert(name.clone(), Secret(s));
        }
    }
    secrets
}

/// `(Some("acme"), "shop-eu")` → `FERRY_WEBHOOK_SECRET_ACME_SHOP_EU`; `(None, "shop-eu")` →
/// `FERRY_WEBHOOK_SECRET_SHOP_EU`.
pub fn secret_env_name(workspace: Option<&str>, connection: &str) -> String {
    ferry_engine::secrets::secret_env_name("webhook_secret", workspace, connection)
}

/// Makes a config ready to build connectors from: resolves `{ secret = "NAME" }` options from `store`
/// (under the master key of `FERRY_MASTER_KEY` / `FERRY_MASTER_KEY_FILE`) and secret options from the
/// workspace's environment variables. `workspace` is `Some` in a server of several workspaces (and for
/// `ferry --workspace NAME`). Returns what was resolved: the secret values now in the options (to scrub
/// from messages) and warnings for people (plain-text secrets in the config).
pub async fn prepare_config(
    config: &mut Config,
    workspace: Option<&str>,
    store: &dyn Store,
    registry: &ferry_engine::Registry,
) -> anyhow::Result<ferry_engine::secrets::Resolved> {
    let key = ferry_engine::secrets::MasterKey::from_env()?;
    let env_options = |kind: &str| registry.get(kind).map(|f| f.env_secrets()).unwrap_or(&[]);
    let scope = ferry_engine::secrets::SecretScope { workspace, env_options: &env_options };
    Ok(ferry_engine::secrets::resolve(config, store, key.as_ref(), &scope).await?)
}

/// Everything the handlers, scheduler and workers share.
pub struct AppState {
    /// The workspace's name (`default` for a single config file).
    pub name: String,
    pub workspace: Workspace,
    /// The workspace's state store (SQLite, or a schema of a shared PostgreSQL).
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: ServerSettings,
    pub secrets: HashMap<String, Secret>,
    /// Secret values resolved into connection options (from the store or the environment): scrubbed
    /// from anything the API shows.
    pub resolved_secrets: Vec<String>,
    /// The name this workspace's environment variables carry (`None` for a single config).
    pub env_workspace: Option<String>,
    pub metrics: metrics::Metrics,
    /// When a webhook-triggered job was enqueued (job id → arrival), for the latency metric.
    pub webhook_arrivals: Mutex<HashMap<i64, Instant>>,
    /// Parsed schedules, by flow.
    pub schedules: BTreeMap<String, ferry_engine::schedule::CronSchedule>,
    /// When this server started (the scheduler's first mark: it does not fire the past).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Wakes idle workers when a job is enqueued.
    pub wake: tokio::sync::Notify,
    /// `[alerts]` of this workspace, when it has rules.
    pub alerting: Option<alerts::Alerting>,
}

impl AppState {
    /// Counts a refused webhook delivery for the webhook_rejections alert rule (when one is configured).
    pub fn webhook_rejected(&self, connection: &str, code: &str) {
        if let Some(a) = &self.alerting {
            a.count_rejection(connection, code, self.clock.now());
        }
    }

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
        // A workspace of a server of several: its own env variable names, its files in its folder.
        let env_workspace = (!settings.workspaces.is_empty()).then(|| name.to_owned());
        if env_workspace.is_some() && !settings.allow_paths_outside_workspace {
            ferry_engine::secrets::confine_paths(&config).map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
        }
        let store = ferry_engine::store::open_configured(&config).await?;
        let mut registry = ferry_connectors::registry_with_store(store.clone());
        extra(&mut registry);
        let resolved = prepare_config(&mut config, env_workspace.as_deref(), store.as_ref(), &registry).await.map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
        for w in &resolved.warnings {
            tracing::warn!(workspace = name, "{w}");
        }
        let resolved_secrets = resolved.values.iter().map(|v| v.to_string()).collect();
        let secrets = take_webhook_secrets(&mut config, env_workspace.as_deref());
        let (alerting, alert_warnings) = alerts::Alerting::prepare(name, &config, store.as_ref()).await.map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
        for w in &alert_warnings {
            tracing::warn!(workspace = name, "{w}");
        }
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
            resolved_secrets,
            env_workspace,
            metrics: metrics::Metrics::default(),
            webhook_arrivals: Mutex::new(HashMap::new()),
            schedules,
            started_at,
            wake: tokio::sync::Notify::new(),
            alerting,
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
    /// The dashboard's sessions and last connection checks.
    pub dashboard: dashboard::Dashboard,
}

impl Server {
    /// One config file served as the workspace `default` (`/hooks/{connection}` reaches it).
    pub fn single(state: Arc<AppState>) -> Arc<Server> {
        let settings = state.settings.clone();
        Arc::new(Server { workspaces: BTreeMap::from([(state.name.clone(), state)]), multi: false, settings, dashboard: Default::default() })
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
        if !config.alerts.channels.is_empty() || !config.alerts.rules.is_empty() {
            anyhow::bail!("a server config with [server.workspaces] holds no [alerts] of its own: alerts are per workspace, in each workspace's file");
        }
        if !config.connections.is_empty() || !config.flows.is_empty() {
            anyhow::bail!(
                "a server config with [server.workspaces] holds no connections or flows of its own: put them in a workspace's file"
            );
        }
        let mut workspaces = BTreeMap::new();
        let mut stores: BTreeMap<String, String> = BTreeMap::new();
        for (name, path) in &settings.workspaces {
            let ws_config = Config::load(path).map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
            if ws_config.server.is_some() {
                anyhow::bail!("workspace {name} ({}): [server] settings belong to the server config, not a workspace's", path.display());
            }
            let state = AppState::open_workspace(name, ws_config, settings.clone(), clock.clone(), &extra).await?;
            // Separate stores are what keeps workspaces apart (a SQLite file, or a PostgreSQL schema each):
            // two sharing one would share keys and data.
            let location = state.workspace.config.state_location().map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
            let identity = match &location {
                ferry_engine::config::StateLocation::Sqlite(path) => std::fs::canonicalize(path).unwrap_or(path.clone()).display().to_string(),
                ferry_engine::config::StateLocation::Postgres { schema, .. } => format!("postgres schema {schema}"),
            };
            if let Some(other) = stores.insert(identity, name.clone()) {
                anyhow::bail!(
                    "workspaces {other} and {name} use the same state store {}: give each its own [state] path (SQLite) or schema (PostgreSQL)",
                    location.describe()
                );
            }
            workspaces.insert(name.clone(), state);
        }
        // A variable named by two workspaces' configs would hand one tenant's password to the other.
        let mut env_users: BTreeMap<String, String> = BTreeMap::new();
        for (name, path) in &settings.workspaces {
            let ws_config = Config::load(path).map_err(|e| anyhow::anyhow!("workspace {name}: {e}"))?;
            for (option, var) in ferry_engine::secrets::named_env_vars(&ws_config) {
                let here = format!("workspace {name} {option}");
                if let Some(other) = env_users.insert(var.clone(), here.clone()) {
                    anyhow::bail!("{other} and {here} both read the environment variable {var}: give each workspace its own");
                }
            }
        }
        Ok(Arc::new(Server { workspaces, multi: true, settings, dashboard: Default::default() }))
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

/// Every route, under the server's limits: a webhook body larger than `webhook_max_bytes` and an API
/// body larger than `api_max_bytes` are refused with 413 while being read (never buffered past the cap);
/// API bodies are read only after the key was checked; each request gets `request_timeout` (408 after)
/// and at most `max_concurrent_requests` run at once (503 beyond); every error answer, whoever produced
/// it (axum's extractors, the router, the limits), has the one JSON error shape.
pub fn router_for(server: Arc<Server>) -> Router {
    use axum::error_handling::HandleErrorLayer;
    use tower::ServiceBuilder;
    let settings = server.settings.clone();
    let hooks = Router::new()
        .route("/hooks/{connection}", post(webhook::receive_default))
        .route("/hooks/{workspace}/{connection}", post(webhook::receive))
        .layer(DefaultBodyLimit::max(settings.webhook_max_bytes));
    let api = Router::new()
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
        .route_layer(axum::middleware::from_fn_with_state(server.clone(), auth::known_key_first))
        .layer(DefaultBodyLimit::max(settings.api_max_bytes));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/docs", get(api::docs))
        .merge(hooks)
        .merge(api)
        .merge(dashboard::router())
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/docs") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method; see /api/docs")
        })
        // A panic in a handler answers 500 in the one error shape (the layers around the router) and the server stays up.
        .layer(error::catch_panic_layer())
        .with_state(server)
        .layer(
            ServiceBuilder::new()
                // Outermost: whatever answered with an error below, the client gets the one shape.
                .layer(axum::middleware::map_response(error::error_shape))
                .layer(HandleErrorLayer::new(|e: tower::BoxError| async move { error::limit_error(e) }))
                .load_shed()
                // One semaphore for the whole router (a plain concurrency limit would count per route).
                .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(tokio::sync::Semaphore::new(
                    settings.max_concurrent_requests,
                ))))
                .timeout(settings.request_timeout),
        )
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
        tasks.push(tokio::spawn(retention::run(state.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(alerts::run(state.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(mark_interrupted_runs(state.clone(), stop_rx.clone())));
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

/// At start and every minute: runs left `running` by a process that died (kill -9) are marked
/// `interrupted` once their lease expired or their process is gone (`ferry_engine::lease`).
async fn mark_interrupted_runs(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = ferry_engine::lease::interrupt_stale_runs(state.store.as_ref(), None).await {
            tracing::warn!(error = %e, "could not check for interrupted runs");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
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
