//! `ferry serve` in process: the router through `tower::ServiceExt::oneshot`, the queue's workers and the
//! scheduler driven by a manual clock, and once over a real 127.0.0.1 socket with graceful shutdown.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry_engine::connector::*;
use ferry_engine::schedule::{Clock, ManualClock};
use ferry_engine::store::jobs::{JobFilter, JobKind, JobStatus, NewJob};
use ferry_engine::store::keys::Scope;
use ferry_engine::{Config, RunOptions};
use ferry_model::Stream;
use ferry_server::{AppState, router, scheduler, webhook, worker};
use futures::stream::BoxStream;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// A connector for these tests only: it reads products from a fixed list and interprets webhook
/// bodies shaped like `{"skus": [...]}`. (The Vendure connector implements the real payloads.)
struct HookSource;

#[async_trait]
impl Connector for HookSource {
    fn describe(&self) -> Description {
        Description {
            name: "hooktest",
            summary: "test source with webhooks",
            config_schema: json!({}),
            streams: vec![StreamCapability { stream: Stream::Products, read: Some(ReadMode::Snapshot), write: None, find_by_key: false, retire: vec![] }],
            batch_size: 10,
            webhooks: true,
        }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport { ok: true, details: vec!["fine".into()] })
    }
    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let keys = request.keys.unwrap_or_else(|| vec!["H-1".into(), "H-2".into()]);
        Box::pin(futures::stream::iter(keys.into_iter().map(|sku| {
            Ok(ReadItem::Record(SourceRecord { position: sku.clone(), data: product(&sku, "5") }))
        })))
    }
    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        let skus = body["skus"].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
        vec![(Stream::Products, skus)]
    }
}

struct HookFactory;
impl ConnectorFactory for HookFactory {
    fn name(&self) -> &'static str {
        "hooktest"
    }
    fn summary(&self) -> &'static str {
        "test"
    }
    fn build(&self, _: &Value, _: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(HookSource))
    }
}

fn product(sku: &str, price: &str) -> Value {
    json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": price, "currency": "AUD", "tax_inclusive": true}})
}

const CONFIG: &str = r#"
[connections.web]
type = "api"
collection = "in"
[connections.shop]
type = "api"
collection = "out"
[connections.hooks]
type = "hooktest"
webhook_secret = "hook-secret"

[flows.products]
source = "web"
target = "shop"
stream = "products"

[flows.hooked]
source = "hooks"
target = "shop"
stream = "products"

[flows.nightly]
source = "web"
target = "shop"
stream = "stock"
schedule = "30 2 * * *"
schedule_timezone = "Australia/Sydney"
"#;

struct Rig {
    dir: tempfile::TempDir,
    state: Arc<AppState>,
    clock: Arc<ManualClock>,
    read: String,
    write: String,
    admin: String,
}

async fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<AppState> {
    let config = Config::parse(CONFIG, dir.to_path_buf()).unwrap();
    AppState::open_with(config, clock, |r| {
        r.register(Box::new(HookFactory));
    })
    .await
    .unwrap()
}

async fn rig_at(now: DateTime<Utc>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let state = open(dir.path(), clock.clone()).await;
    let (_, read) = state.store.create_key("reader", &[Scope::Read]).await.unwrap();
    let (_, write) = state.store.create_key("writer", &[Scope::Read, Scope::Write]).await.unwrap();
    let (_, admin) = state.store.create_key("admin", &[Scope::Admin]).await.unwrap();
    Rig { dir, state, clock, read, write, admin }
}

async fn rig() -> Rig {
    rig_at(Utc::now()).await
}

async fn call(state: &Arc<AppState>, method: &str, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// Claims and runs every due job, like a worker would.
async fn drain(state: &Arc<AppState>) -> usize {
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let mut n = 0;
    while let Some(job) = state.store.claim("test-worker", state.settings.lease, state.clock.now()).await.unwrap() {
        worker::execute(state, "test-worker", job, &mut rx).await;
        n += 1;
    }
    n
}

#[tokio::test]
async fn records_push_pull_round_trip_with_a_validation_error_naming_record_and_field() {
    let r = rig().await;
    let batch = json!([product("A-1", "10.50"), {"sku": "A-2", "name": "Broken", "price": {"amount": "ten", "currency": "AUD", "tax_inclusive": true}}, product("A-3", "7")]);
    let (status, body) = call(&r.state, "POST", "/api/v1/records/products?collection=out", Some(&r.write), Some(batch)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["accepted"].as_u64(), body["rejected"].as_u64()), (Some(2), Some(1)));
    assert_eq!(body["records"][0]["status"], "created");
    let bad = &body["records"][1];
    assert_eq!((bad["index"].as_u64(), bad["key"].as_str(), bad["status"].as_str()), (Some(1), Some("A-2"), Some("invalid")));
    assert_eq!(bad["errors"][0]["field"], "price.amount", "{bad}");

    // The same push again changes nothing.
    let (_, again) = call(&r.state, "POST", "/api/v1/records/products?collection=out", Some(&r.write), Some(json!([product("A-1", "10.50")]))).await;
    assert_eq!(again["records"][0]["status"], "unchanged");

    // Pull page by page with the cursor.
    let (status, page1) = call(&r.state, "GET", "/api/v1/records/products?collection=out&limit=1", Some(&r.read), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page1["records"][0]["key"], "A-1");
    assert_eq!(page1["records"][0]["record"]["price"]["amount"], "10.5");
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = call(&r.state, "GET", &format!("/api/v1/records/products?collection=out&limit=1&cursor={cursor}"), Some(&r.read), None).await;
    assert_eq!(page2["records"][0]["key"], "A-3");
    let cursor = page2["next_cursor"].as_str().unwrap();
    let (_, page3) = call(&r.state, "GET", &format!("/api/v1/records/products?collection=out&limit=1&cursor={cursor}"), Some(&r.read), None).await;
    assert_eq!(page3["records"].as_array().unwrap().len(), 0);
    // An update shows up after the last cursor (polling).
    call(&r.state, "POST", "/api/v1/records/products?collection=out", Some(&r.write), Some(json!([product("A-1", "11")]))).await;
    let (_, page4) = call(&r.state, "GET", &format!("/api/v1/records/products?collection=out&cursor={cursor}"), Some(&r.read), None).await;
    assert_eq!(page4["records"][0]["key"], "A-1");
    // since filters by change time.
    let future = (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, none) = call(&r.state, "GET", &format!("/api/v1/records/products?collection=out&since={future}"), Some(&r.read), None).await;
    assert_eq!(none["records"].as_array().unwrap().len(), 0);

    let (status, err) = call(&r.state, "GET", "/api/v1/records/widgets", Some(&r.read), None).await;
    assert_eq!((status, err["error"]["code"].as_str(), err["error"]["field"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_stream"), Some("stream")));
    let (status, err) = call(&r.state, "GET", "/api/v1/records/products?limit=0", Some(&r.read), None).await;
    assert_eq!((status, err["error"]["code"].as_str(), err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request"), Some("limit")));
}

#[tokio::test]
async fn keys_need_the_right_scope_and_errors_share_one_shape() {
    let r = rig().await;
    let (status, body) = call(&r.state, "GET", "/api/v1/flows", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    assert!(body["error"]["message"].is_string() && body["error"].get("field").is_some());
    let (status, _) = call(&r.state, "GET", "/api/v1/flows", Some("fy_0000_nope"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&r.state, "POST", "/api/v1/records/products", Some(&r.read), Some(json!([]))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, _) = call(&r.state, "GET", "/api/v1/connections", Some(&r.write), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Admin implies read.
    let (status, flows) = call(&r.state, "GET", "/api/v1/flows", Some(&r.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flows["flows"].as_array().unwrap().len(), 3);
    let (status, conns) = call(&r.state, "GET", "/api/v1/connections", Some(&r.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(conns["connections"].as_array().unwrap().iter().all(|c| c["ok"] == true), "{conns}");
    let (status, body) = call(&r.state, "GET", "/api/v1/flows/nope", Some(&r.read), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_flow")));
}

fn signed(connection: &str, body: &Value, secret: &str, ts: i64) -> Request<Body> {
    let raw = body.to_string();
    Request::post(format!("/hooks/{connection}"))
        .header("x-ferry-signature", webhook::sign(secret, raw.as_bytes()))
        .header("x-ferry-timestamp", ts.to_string())
        .body(Body::from(raw))
        .unwrap()
}

#[tokio::test]
async fn webhooks_enqueue_a_targeted_sync_only_when_signed() {
    let r = rig().await;
    let now = r.clock.now().timestamp();
    let body = json!({"skus": ["H-2"]});
    let jobs = || async { r.state.store.jobs(&JobFilter::default()).await.unwrap() };

    for (req, code) in [
        (signed("hooks", &body, "wrong-secret", now), "invalid_signature"),
        (signed("hooks", &body, "hook-secret", now - 301), "stale_timestamp"),
        (Request::post("/hooks/hooks").header("x-ferry-timestamp", now.to_string()).body(Body::from(body.to_string())).unwrap(), "invalid_signature"),
        (signed("shop", &body, "hook-secret", now), "no_webhook_secret"),
    ] {
        let resp = router(r.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["error"]["code"], code);
        assert!(jobs().await.is_empty(), "a rejected webhook must not enqueue anything");
    }

    let resp = router(r.state.clone()).oneshot(signed("hooks", &body, "hook-secret", now)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let queued = jobs().await;
    assert_eq!(queued.len(), 1);
    assert_eq!((queued[0].flow.as_str(), queued[0].kind, queued[0].keys.clone()), ("hooked", JobKind::Webhook, Some(vec!["H-2".to_string()])));

    // The worker runs it: only H-2 reaches the target, and the latency is measured.
    assert_eq!(drain(&r.state).await, 1);
    let (_, out) = call(&r.state, "GET", "/api/v1/records/products?collection=out", Some(&r.read), None).await;
    let keys: Vec<&str> = out["records"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["H-2"]);
    let (status, _) = call(&r.state, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "metrics name flows: not without a key");
    let (_, metrics) = call(&r.state, "GET", "/metrics", Some(&r.read), None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("ferry_webhook_to_target_seconds_count 1"), "{text}");
    assert!(text.contains("ferry_records_synced_total{flow=\"hooked\"} 1"), "{text}");
    assert!(text.contains("ferry_webhooks_total{connection=\"hooks\",outcome=\"rejected\"} 3"), "{text}");
}

#[tokio::test]
async fn pushed_records_flow_through_a_job_and_runs_show_per_record_outcomes() {
    let r = rig().await;
    let (_, pushed) = call(&r.state, "POST", "/api/v1/records/products?collection=in", Some(&r.write), Some(json!([product("P-1", "3"), product("P-2", "4")]))).await;
    assert_eq!(pushed["jobs"].as_array().unwrap().len(), 1, "{pushed}");
    assert_eq!(drain(&r.state).await, 1);
    let (_, out) = call(&r.state, "GET", "/api/v1/records/products?collection=out", Some(&r.read), None).await;
    assert_eq!(out["records"].as_array().unwrap().len(), 2);

    let (_, runs) = call(&r.state, "GET", "/api/v1/runs?flow=products", Some(&r.read), None).await;
    let run = &runs["runs"][0];
    assert_eq!((run["mode"].as_str(), run["counts"]["created"].as_u64()), (Some("targeted"), Some(2)));
    let (_, recs) = call(&r.state, "GET", &format!("/api/v1/runs/{}/records", run["id"]), Some(&r.read), None).await;
    let outcomes: Vec<(&str, &str)> = recs["records"].as_array().unwrap().iter().map(|x| (x["key"].as_str().unwrap(), x["outcome"].as_str().unwrap())).collect();
    assert_eq!(outcomes, [("P-1", "created"), ("P-2", "created")]);

    // Manual trigger: a job, run by a worker; nothing changed, nothing written.
    let (status, trig) = call(&r.state, "POST", "/api/v1/flows/products/trigger", Some(&r.write), Some(json!({"full": true}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(trig["job"]["kind"], "reconcile");
    drain(&r.state).await;
    let (_, job) = call(&r.state, "GET", &format!("/api/v1/jobs/{}", trig["job"]["id"]), Some(&r.read), None).await;
    assert_eq!(job["job"]["status"], "succeeded");
    let (_, status_v) = call(&r.state, "GET", "/api/v1/flows/products", Some(&r.read), None).await;
    assert_eq!(status_v["runs"][0]["counts"]["unchanged"], 2);
    let (_, xref) = call(&r.state, "GET", "/api/v1/xref/P-1", Some(&r.read), None).await;
    assert_eq!(xref["xref"][0]["flow"], "products");
}

#[tokio::test]
async fn failures_are_listed_retried_as_jobs_and_dropped() {
    let r = rig().await;
    // Park two failures through the engine's own commit path (as a run that met bad data would).
    let flow = "products";
    let run = r.state.store.begin_run(flow, "incremental").await.unwrap();
    let mut batch = ferry_engine::store::BatchCommit::default();
    batch.failed.push(ferry_engine::store::NewFailure {
        key: "BAD-2".into(),
        position: None,
        stage: ferry_engine::store::Stage::Write,
        field: None,
        message: "refused".into(),
        retryable: false,
        source: product("BAD-2", "1"),
    });
    batch.failed.push(ferry_engine::store::NewFailure {
        key: "BAD-1".into(),
        position: Some("in products BAD-1".into()),
        stage: ferry_engine::store::Stage::Validate,
        field: Some("price.amount".into()),
        message: "not a decimal".into(),
        retryable: false,
        source: product("BAD-1", "1"),
    });
    r.state.store.commit_batch(flow, run, batch).await.unwrap();
    r.state.store.finish_run(run, "failed_records", None).await.unwrap();

    let (_, list) = call(&r.state, "GET", "/api/v1/failures?flow=products", Some(&r.read), None).await;
    let id = list["failures"][1]["id"].as_i64().unwrap();
    let other = list["failures"][0]["id"].as_i64().unwrap();
    assert_eq!(list["failures"][1]["field"], "price.amount");
    let (status, body) = call(&r.state, "DELETE", &format!("/api/v1/failures/{other}"), Some(&r.write), None).await;
    assert_eq!((status, body["dropped"].as_u64()), (StatusCode::OK, Some(1)));
    // The payload is fine now (the "fix"): retry replays it through a job.
    let (status, job) = call(&r.state, "POST", &format!("/api/v1/failures/{id}/retry"), Some(&r.write), None).await;
    assert_eq!((status, job["job"]["kind"].as_str()), (StatusCode::ACCEPTED, Some("retry")));
    drain(&r.state).await;
    let (_, list) = call(&r.state, "GET", "/api/v1/failures", Some(&r.read), None).await;
    assert_eq!(list["failures"].as_array().unwrap().len(), 0, "{list}");
    let (_, out) = call(&r.state, "GET", "/api/v1/records/products?collection=out", Some(&r.read), None).await;
    assert_eq!(out["records"][0]["key"], "BAD-1");

    let (status, body) = call(&r.state, "DELETE", &format!("/api/v1/failures/{id}"), Some(&r.write), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn a_job_whose_worker_died_is_rerun_after_its_lease_without_duplicating_effects() {
    let r = rig().await;
    let items: Vec<Value> = (0..20).map(|i| product(&format!("K-{i:02}"), "1")).collect();
    call(&r.state, "POST", "/api/v1/records/products?collection=in", Some(&r.write), Some(Value::Array(items))).await;
    let pushed = r.state.store.jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(pushed.len(), 1);

    // A worker claims the job, gets through half of it (committed batches), and dies: no completion,
    // no heartbeat, its flow lease left behind (as after kill -9).
    let dead = r.state.store.claim("dead-worker", r.state.settings.lease, r.clock.now()).await.unwrap().unwrap();
    let half: Vec<String> = (0..10).map(|i| format!("K-{i:02}")).collect();
    let partial = r
        .state
        .workspace
        .sync("products", &RunOptions { keys: Some(half), holder: "dead-host:1".into(), ..Default::default() }, &ferry_engine::run::NoProgress)
        .await
        .unwrap();
    assert_eq!(partial.counts.created, 10);
    r.state.store.lock_flow("products", "dead-host:1", chrono::Duration::minutes(10)).await.unwrap();

    // Before the lease ends nobody else runs it.
    assert!(r.state.store.claim("w2", r.state.settings.lease, r.clock.now()).await.unwrap().is_none());
    // After the job lease (60 s) and the dead holder's flow lease (10 min) have passed, a worker re-runs it.
    r.clock.advance(Duration::minutes(11));
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let job = r.state.store.claim("w2", r.state.settings.lease, r.clock.now()).await.unwrap().unwrap();
    assert_eq!((job.id, job.attempts), (dead.id, 2));
    // The engine's flow lease uses the wall clock; release the dead holder's as its expiry would.
    r.state.store.unlock_flow("products", "dead-host:1").await.unwrap();
    worker::execute(&r.state, "w2", job, &mut rx).await;

    let done = r.state.store.job(dead.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let rerun = r.state.store.runs(Some("products"), 1).await.unwrap().remove(0);
    // What the dead worker committed is found unchanged; only the rest is written.
    assert_eq!((rerun.counts.created, rerun.counts.unchanged), (10, 10));
    let (_, out) = call(&r.state, "GET", "/api/v1/records/products?collection=out&limit=100", Some(&r.read), None).await;
    assert_eq!(out["records"].as_array().unwrap().len(), 20);
    // The dead worker's late completion is refused.
    assert!(!r.state.store.complete(dead.id, "dead-worker", None, r.clock.now()).await.unwrap());
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_backoff_and_a_setup_error_fails_for_good() {
    let r = rig().await;
    // Another holder (alive: this process) holds the flow lease: the run cannot start, a transient error.
    let me = ferry_engine::holder_id();
    let other = format!("{}:{}", me.rsplit_once(':').unwrap().0, std::process::id());
    r.state.store.lock_flow("products", &format!("{other}-x"), chrono::Duration::minutes(10)).await.unwrap();
    let id = r.state.store.enqueue(NewJob::new("products", JobKind::Manual, r.clock.now())).await.unwrap().id;
    drain(&r.state).await;
    let j = r.state.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    let delay = j.run_after - r.clock.now();
    assert!(delay >= Duration::seconds(15) && delay <= Duration::seconds(30), "{delay:?}");
    assert!(j.error.as_deref().unwrap().contains("already running"), "{:?}", j.error);

    // A job for a flow that cannot be set up (unknown flow) fails at once, naming the flow.
    let id = r.state.store.enqueue(NewJob::new("gone", JobKind::Manual, r.clock.now())).await.unwrap().id;
    drain(&r.state).await;
    let j = r.state.store.job(id).await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(j.error.as_deref().unwrap().contains("gone"));
}

#[tokio::test]
async fn schedules_enqueue_each_firing_once_across_dst_and_restarts() {
    // Sydney, spring forward on 2026-10-04 (02:00 AEST -> 03:00 AEDT): 02:30 does not exist that day.
    let start = Utc.with_ymd_and_hms(2026, 10, 2, 12, 0, 0).unwrap(); // 22:00 AEST Oct 2
    let r = rig_at(start).await;
    assert!(scheduler::tick(&r.state).await.unwrap().is_empty(), "nothing due before the first firing");

    r.clock.set(Utc.with_ymd_and_hms(2026, 10, 2, 16, 30, 0).unwrap()); // 02:30 AEST Oct 3
    let first = scheduler::tick(&r.state).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].1.created);
    // The same instant again (a second tick): nothing more is due; and whoever enqueues that firing
    // again (a second server racing this one) gets the existing job through the dedupe key.
    assert!(scheduler::tick(&r.state).await.unwrap().is_empty());
    let fired = Utc.with_ymd_and_hms(2026, 10, 2, 16, 30, 0).unwrap();
    let mut again = NewJob::new("nightly", JobKind::Scheduled, fired);
    again.dedupe_key = Some(ferry_engine::schedule::firing_key("nightly", fired));
    let e = r.state.store.enqueue(again).await.unwrap();
    assert_eq!((e.created, e.id), (false, first[0].1.id));

    // A restart over the same state store, then the DST day: one firing at 03:00 AEDT (16:00 UTC Oct 3).
    let restarted = open(r.dir.path(), r.clock.clone()).await;
    r.clock.set(Utc.with_ymd_and_hms(2026, 10, 3, 16, 10, 0).unwrap());
    let dst = scheduler::tick(&restarted).await.unwrap();
    assert!(dst[0].1.created);
    // Next day, 02:30 AEDT = 15:30 UTC Oct 4.
    r.clock.set(Utc.with_ymd_and_hms(2026, 10, 4, 15, 30, 0).unwrap());
    scheduler::tick(&restarted).await.unwrap();

    let mut jobs = restarted.store.jobs(&JobFilter { flow: Some("nightly".into()), ..Default::default() }).await.unwrap();
    jobs.reverse();
    let at: Vec<String> = jobs.iter().map(|j| j.run_after.to_rfc3339()).collect();
    assert_eq!(at, ["2026-10-02T16:30:00+00:00", "2026-10-03T16:00:00+00:00", "2026-10-04T15:30:00+00:00"]);
    assert!(jobs.iter().all(|j| j.kind == JobKind::Scheduled && j.dedupe_key.as_deref().unwrap().starts_with("schedule:nightly:")));
}

#[tokio::test]
async fn a_flows_schedule_lists_its_next_firings_in_local_time_and_utc() {
    let r = rig().await;
    // nightly: 02:30 Australia/Sydney. From local midnight of the day the clocks go back.
    let (status, body) = call(&r.state, "GET", "/api/v1/flows/nightly/schedule?from=2026-04-05&count=2", Some(&r.read), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["schedule"].as_str(), body["timezone"].as_str()), (Some("30 2 * * *"), Some("Australia/Sydney")));
    assert_eq!(body["firings"][0], json!({"local": "2026-04-05T02:30:00+11:00", "zone": "AEDT", "utc": "2026-04-04T15:30:00Z"}));
    assert_eq!(body["firings"][1], json!({"local": "2026-04-06T02:30:00+10:00", "zone": "AEST", "utc": "2026-04-05T16:30:00Z"}));
    for (query, field) in [("count=0", "count"), ("count=x", "count"), ("from=soon", "from"), ("limit=3", "limit")] {
        let (status, body) = call(&r.state, "GET", &format!("/api/v1/flows/nightly/schedule?{query}"), Some(&r.read), None).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}: {body}");
    }
    let (status, body) = call(&r.state, "GET", "/api/v1/flows/products/schedule", Some(&r.read), None).await;
    assert_eq!((status, body["schedule"].clone(), body["firings"].clone()), (StatusCode::OK, Value::Null, json!([])));
    let (status, _) = call(&r.state, "GET", "/api/v1/flows/nope/schedule", Some(&r.read), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn openapi_documents_every_route_and_error_code_and_the_docs_page_is_offline() {
    let r = rig().await;
    let (status, doc) = call(&r.state, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{workspace}", "default").replace("{connection}", "hooks").replace("{flow}", "products").replace("{id}", "1").replace("{key}", "x")
                .replace("{name}", "web").replace("{stream}", "products");
            let (_, body) = call(&r.state, &method.to_uppercase(), &uri, None, None).await;
            assert!(!body.to_string().contains("no such endpoint"), "{method} {path} is documented but not routed");
            documented += 1;
        }
    }
    assert_eq!(documented, 23);
    let codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
        .as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes, ferry_server::error::CODES);
    let (_, page) = call(&r.state, "GET", "/api/docs", None, None).await;
    let html = page.as_str().unwrap();
    assert!(html.contains("/api/openapi.json") && !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
    let (status, body) = call(&r.state, "GET", "/api/v2/nothing", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn serves_over_a_socket_and_shuts_down_gracefully() {
    let r = rig().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ferry_server::serve(r.state.clone(), listener, async move {
        let _ = rx.await;
    }));
    // A pushed record becomes a job that the server's own workers run.
    call(&r.state, "POST", "/api/v1/records/products?collection=in", Some(&r.write), Some(json!([product("S-1", "2")]))).await;
    let mut done = false;
    for _ in 0..100 {
        if r.state.store.jobs(&JobFilter { status: Some(JobStatus::Succeeded), ..Default::default() }).await.unwrap().len() == 1 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(done, "the server's workers ran the job");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("\"ok\""), "{resp}");
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server).await.expect("shut down in time").unwrap().unwrap();
}

#[tokio::test]
async fn a_burst_of_webhooks_for_one_flow_is_carried_by_one_run_and_each_job_keeps_its_outcome() {
    let r = rig().await;
    let now = r.clock.now().timestamp();
    for sku in ["B-1", "B-2", "B-3", "B-2"] {
        let resp = router(r.state.clone()).oneshot(signed("hooks", &json!({"skus": [sku]}), "hook-secret", now)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    // A whole-flow job of the same flow is not merged into a targeted run.
    r.state.store.enqueue(NewJob::new("hooked", JobKind::Manual, r.clock.now())).await.unwrap();
    assert_eq!(drain(&r.state).await, 2, "one claim carried the four webhook jobs, one ran the manual job");
    let jobs = r.state.store.jobs(&JobFilter::default()).await.unwrap();
    let hooks: Vec<_> = jobs.iter().filter(|j| j.kind == JobKind::Webhook).collect();
    assert_eq!(hooks.len(), 4);
    assert!(hooks.iter().all(|j| j.status == JobStatus::Succeeded && j.attempts == 1 && j.run_id == hooks[0].run_id), "{hooks:?}");
    let runs = r.state.store.runs(Some("hooked"), 10).await.unwrap();
    let targeted = runs.iter().find(|run| Some(run.id) == hooks[0].run_id).unwrap();
    assert_eq!((targeted.counts.read, targeted.counts.created), (3, 3), "B-2 twice is read once");
    assert_eq!(runs.len(), 2);
}

/// The defect: an order whose quantity × price overflows a decimal, pushed through the records API,
/// made validation panic and the connection was dropped with no answer. It is now an invalid record
/// naming its field, and the server keeps answering.
#[tokio::test]
async fn an_order_whose_amounts_overflow_is_an_invalid_record_not_a_dropped_connection() {
    let r = rig().await;
    let order = json!({"number": "WEB-9", "placed_at": "2026-11-20T10:00:00Z", "currency": "AUD", "prices_include_tax": true,
        "lines": [{"sku": "A", "quantity": "79228162514264337593543950335", "unit_price": "2", "total": "2"}],
        "totals": {"subtotal": "2", "total": "2"}});
    let (status, body) = call(&r.state, "POST", "/api/v1/records/orders?collection=in", Some(&r.write), Some(json!([order]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = &body["records"][0];
    assert_eq!((outcome["key"].as_str(), outcome["status"].as_str()), (Some("WEB-9"), Some("invalid")), "{body}");
    assert_eq!(outcome["errors"][0]["field"], "lines[0].total", "{body}");
    let (status, _) = call(&r.state, "GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Defence in depth: whatever panic is left in a handler is answered with the API's error shape and
/// status 500 (the layer `router` installs), and the server answers the next request.
#[tokio::test]
async fn a_panicking_handler_is_answered_with_the_error_shape_and_status_500() {
    let app = axum::Router::new()
        .route("/boom", axum::routing::get(|| async { if std::hint::black_box(true) { panic!("a bug in a handler") } }))
        .route("/fine", axum::routing::get(|| async { "fine" }))
        .layer(ferry_server::error::catch_panic_layer());
    let resp = app.clone().oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().contains("a bug"), "the panic's text is logged, not sent: {body}");
    let resp = app.oneshot(Request::builder().uri("/fine").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
