//! REST API v1: flows, jobs, runs, failures, cross-reference, connections; health, readiness, metrics,
//! the OpenAPI document and its offline docs page.

use crate::auth::require;
use crate::error::ApiError;
use crate::{AppState, Server};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use ferry_engine::store::jobs::{JobFilter, JobKind, JobOptions, JobStatus, NewJob};
use ferry_engine::store::keys::Scope;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type S = State<Arc<Server>>;
type ApiResult = Result<Json<Value>, ApiError>;

pub const OPENAPI: &str = include_str!("openapi.json");
const DOCS: &str = include_str!("docs.html");

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when every workspace's state store answers. Unauthenticated, so it names nothing: no
/// workspace, flow or connection, only the status and the queue counts of all workspaces together.
pub async fn readyz(State(server): S) -> Result<Json<Value>, ApiError> {
    let mut total = ferry_engine::store::jobs::QueueDepth::default();
    for state in server.workspaces.values() {
        let d = state.store.queue_depth(state.clock.now()).await?;
        total.queued += d.queued;
        total.due += d.due;
        total.running += d.running;
        total.failed += d.failed;
    }
    Ok(Json(json!({"status": "ready", "queue": total})))
}

/// Prometheus metrics. They name flows and connections, so they need a key: the operator's
/// `FERRY_METRICS_TOKEN` gets every workspace (labelled `workspace` when serving several), a workspace's
/// API key (any scope) gets that workspace's alone.
pub async fn metrics(State(server): S, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let shown: Vec<Arc<AppState>> = match crate::auth::metrics_viewer(&server, &headers).await? {
        crate::auth::MetricsViewer::Operator => server.workspaces.values().cloned().collect(),
        crate::auth::MetricsViewer::Workspace(state) => vec![state],
    };
    let mut parts = Vec::new();
    for state in &shown {
        let depth = state.store.queue_depth(state.clock.now()).await?;
        parts.push((server.multi.then_some(state.name.as_str()), &state.metrics, depth));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render_all(&parts)))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn docs() -> Html<&'static str> {
    Html(DOCS)
}

fn flow_conf<'a>(state: &'a AppState, flow: &str) -> Result<&'a ferry_engine::FlowConfig, ApiError> {
    state
        .workspace
        .config
        .flows
        .get(flow)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_flow", format!("no flow named {flow:?}")).field("flow"))
}

fn flow_json(name: &str, f: &ferry_engine::FlowConfig) -> Value {
    json!({"name": name, "source": f.source, "target": f.target, "stream": f.stream, "enabled": f.enabled,
           "description": f.description, "schedule": f.schedule, "schedule_timezone": f.schedule_timezone})
}

pub async fn flows(State(server): S, headers: HeaderMap) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let mut out = Vec::new();
    for (name, f) in &state.workspace.config.flows {
        let mut v = flow_json(name, f);
        v["last_run"] = json!(state.store.runs(Some(name), 1).await?.into_iter().next());
        v["open_failures"] = json!(state.store.failures(Some(name), None).await?.len());
        out.push(v);
    }
    Ok(Json(json!({"flows": out})))
}

pub async fn flow_status(State(server): S, headers: HeaderMap, Path(flow): Path<String>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let f = flow_conf(&state, &flow)?;
    let mut v = flow_json(&flow, f);
    v["runs"] = json!(state.store.runs(Some(&flow), 10).await?);
    v["open_failures"] = json!(state.store.failures(Some(&flow), None).await?.len());
    v["jobs"] = json!(state.store.jobs(&JobFilter { flow: Some(flow.clone()), status: None, limit: 10 }).await?);
    v["lease_holder"] = json!(state.store.lock_holder(&flow).await?);
    if let Some(s) = state.schedules.get(&flow) {
        v["next_scheduled"] = json!(s.next_after(state.clock.now()));
    }
    Ok(Json(v))
}

/// The next firings of a flow's schedule, in its time zone and in UTC. `from` (default now): RFC 3339, or a
/// local date-time in the schedule's zone; `count` 1–1000 (default 10).
pub async fn flow_schedule(
    State(server): S,
    headers: HeaderMap,
    Path(flow): Path<String>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let f = flow_conf(&state, &flow)?;
    if let Some(unknown) = query.keys().find(|k| !matches!(k.as_str(), "from" | "count")) {
        return Err(ApiError::invalid(format!("unknown query parameter {unknown:?} (from, count)")).field(unknown.clone()));
    }
    let count = match query.get("count") {
        None => 10,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("count: {c:?} is not a number from 1 to 1000")).field("count"))?,
    };
    let Some(expr) = &f.schedule else {
        return Ok(Json(json!({"flow": flow, "schedule": null, "timezone": f.schedule_timezone, "enabled": f.enabled, "firings": []})));
    };
    let schedule = ferry_engine::schedule::CronSchedule::parse(expr, f.schedule_timezone.as_deref()).map_err(ApiError::internal)?;
    let from = match query.get("from") {
        None => state.clock.now(),
        Some(t) => schedule.parse_instant(t).map_err(|e| ApiError::invalid(format!("from: {e}")).field("from"))?,
    };
    let firings: Vec<_> = schedule.upcoming(from, count).into_iter().map(|t| schedule.firing(t)).collect();
    Ok(Json(json!({"flow": flow, "schedule": expr, "timezone": schedule.timezone().name(), "enabled": f.enabled, "firings": firings})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(default)]
    full: bool,
    keys: Option<Vec<String>>,
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

pub async fn trigger(State(server): S, headers: HeaderMap, Path(flow): Path<String>, body: axum::body::Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (state, _) = require(&server, &headers, Scope::Write).await?;
    flow_conf(&state, &flow)?;
    let body: TriggerBody = json_body(&body)?;
    if body.keys.as_ref().is_some_and(|k| k.is_empty()) {
        return Err(ApiError::invalid("keys: name at least one key, or leave keys out to run the whole flow").field("keys"));
    }
    let mut job = NewJob::new(flow.clone(), if body.full { JobKind::Reconcile } else { JobKind::Manual }, state.clock.now());
    job.keys = body.keys;
    job.options = JobOptions { full: body.full, ..Default::default() };
    let e = state.store.enqueue(job).await?;
    state.wake.notify_waiters();
    let job = state.store.job(e.id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job": job}))))
}

/// `limit` of a listing: 1..=1000 (the OpenAPI document's range), 50 when absent.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=1000 => Ok(n),
        n => Err(ApiError::invalid(format!("limit {n}: between 1 and 1000")).field("limit")),
    }
}

#[derive(Deserialize)]
pub struct JobsQuery {
    flow: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
}

pub async fn jobs(State(server): S, headers: HeaderMap, Query(q): Query<JobsQuery>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let status = q
        .status
        .as_deref()
        .map(|s| JobStatus::parse(s).ok_or_else(|| ApiError::invalid(format!("status {s:?}: one of queued, running, succeeded, failed")).field("status")))
        .transpose()?;
    let jobs = state.store.jobs(&JobFilter { flow: q.flow, status, limit: page_limit(q.limit)? }).await?;
    Ok(Json(json!({"jobs": jobs})))
}

pub async fn job(State(server): S, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let job = state.store.job(id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    Ok(Json(json!({"job": job})))
}

#[derive(Deserialize)]
pub struct RunsQuery {
    flow: Option<String>,
    limit: Option<i64>,
}

pub async fn runs(State(server): S, headers: HeaderMap, Query(q): Query<RunsQuery>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let runs = state.store.runs(q.flow.as_deref(), page_limit(q.limit)?).await?;
    Ok(Json(json!({"runs": runs})))
}

pub async fn run_records(State(server): S, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    if !state.store.run_exists(id).await? {
        return Err(ApiError::not_found(format!("no run {id}")).field("id"));
    }
    let records = state.store.run_records(id).await?;
    Ok(Json(json!({"run": id, "records": records})))
}

#[derive(Deserialize)]
pub struct FailuresQuery {
    flow: Option<String>,
}

pub async fn failures(State(server): S, headers: HeaderMap, Query(q): Query<FailuresQuery>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    Ok(Json(json!({"failures": state.store.failures(q.flow.as_deref(), None).await?})))
}

/// Replays one parked failure as a job (after the data or mapping was fixed).
pub async fn retry_failure(State(server): S, headers: HeaderMap, Path(id): Path<i64>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (state, _) = require(&server, &headers, Scope::Write).await?;
    let f = state.store.failure(id).await?.ok_or_else(|| ApiError::not_found(format!("no failure {id}")))?;
    let mut job = NewJob::new(f.flow.clone(), JobKind::Retry, state.clock.now());
    job.options = JobOptions { replay_ids: vec![id], ..Default::default() };
    let e = state.store.enqueue(job).await?;
    state.wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(json!({"job": state.store.job(e.id).await?}))))
}

pub async fn drop_failure(State(server): S, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Write).await?;
    let f = state.store.failure(id).await?.ok_or_else(|| ApiError::not_found(format!("no failure {id}")))?;
    let n = state.store.drop_failures(Some(&f.flow), &[id]).await?;
    Ok(Json(json!({"dropped": n})))
}

pub async fn xref(State(server): S, headers: HeaderMap, Path(key): Path<String>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let rows = state.store.xref_find(&key).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("{key:?} is not a source key or target id of any flow")));
    }
    Ok(Json(json!({"xref": rows})))
}

/// A connection's check, with its options as the API may show them: secrets (passwords, tokens, the
/// webhook secret, credentials in URLs) never leave the server, not even inside a connector's message.
pub(crate) async fn check_one(state: &AppState, name: &str) -> Value {
    let Some(conf) = state.workspace.config.connections.get(name) else {
        return json!({"name": name, "ok": false});
    };
    let mut secrets = ferry_engine::config::secret_values(&conf.options);
    secrets.extend(state.resolved_secrets.iter().cloned());
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    if let Some(s) = state.secrets.get(name) {
        secrets.push(s.expose().to_owned());
    }
    let options = ferry_engine::config::redacted_options(&conf.options);
    let error = |e: ferry_engine::ConnectorError| json!({"kind": e.kind, "endpoint": e.endpoint, "message": e.message});
    let mut v = match state.workspace.connection(name) {
        Ok(c) => match c.check().await {
            Ok(r) => json!({"name": name, "type": conf.kind, "options": options, "ok": r.ok, "details": r.details}),
            Err(e) => json!({"name": name, "type": conf.kind, "options": options, "ok": false, "error": error(e)}),
        },
        Err(e) => json!({"name": name, "type": conf.kind, "options": options, "ok": false, "error": error(e)}),
    };
    v["webhook_secret"] = json!(state.secrets.contains_key(name));
    // Connectors' details and errors may quote a configured value; scrub secrets out of every string.
    scrub_json(&mut v, &secrets);
    v
}

fn scrub_json(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) => *s = ferry_engine::config::scrub(s, secrets),
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_json(x, secrets)),
        Value::Object(o) => o.values_mut().for_each(|x| scrub_json(x, secrets)),
        _ => {}
    }
}

/// Checks every connection (admin: it touches every external system).
pub async fn connections(State(server): S, headers: HeaderMap) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Admin).await?;
    let mut out = Vec::new();
    for name in state.workspace.config.connections.keys() {
        out.push(check_one(&state, name).await);
    }
    Ok(Json(json!({"connections": out})))
}

pub async fn check_connection(State(server): S, headers: HeaderMap, Path(name): Path<String>) -> ApiResult {
    let (state, _) = require(&server, &headers, Scope::Admin).await?;
    if !state.workspace.config.connections.contains_key(&name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {name:?}")));
    }
    Ok(Json(check_one(&state, &name).await))
}
