//! What no request can do to the server: make it buffer a large unauthenticated body, hold it forever,
//! swamp it, make it write for a bad token, or read one workspace's names off /metrics; and every
//! error answer, whoever produced it, has the one JSON shape.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_engine::Config;
use ferry_engine::connector::*;
use ferry_engine::schedule::SystemClock;
use ferry_engine::store::jobs::JobFilter;
use ferry_engine::store::keys::Scope;
use ferry_model::Stream;
use ferry_server::{AppState, Server, router_for, webhook};
use futures::stream::BoxStream;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// A source whose `check` takes as long as its `delay_ms` option, and whose webhooks name SKUs.
struct Slow {
    delay: Duration,
}

#[async_trait]
impl Connector for Slow {
    fn describe(&self) -> Description {
        Description {
            name: "slow",
            summary: "test source",
            config_schema: json!({}),
            streams: vec![StreamCapability { stream: Stream::Products, read: Some(ReadMode::Snapshot), write: None, find_by_key: false, retire: vec![] }],
            batch_size: 10,
            webhooks: true,
        }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        tokio::time::sleep(self.delay).await;
        Ok(CheckReport { ok: true, details: vec![] })
    }
    fn read(&self, _: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        Box::pin(futures::stream::empty())
    }
    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        let skus = body["skus"].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
        vec![(Stream::Products, skus)]
    }
}

struct SlowFactory;
impl ConnectorFactory for SlowFactory {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn summary(&self) -> &'static str {
        "test"
    }
    fn build(&self, options: &Value, _: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(Slow { delay: Duration::from_millis(options["delay_ms"].as_u64().unwrap_or(0)) }))
    }
}

fn register(r: &mut ferry_engine::Registry) {
    r.register(Box::new(SlowFactory));
}

const WORKSPACE: &str = r#"
[connections.shop]
type = "slow"
delay_ms = 3000
webhook_secret = "hook-secret"
[connections.out]
type = "api"
collection = "out"
[connections.feed]
type = "api"
collection = "in"
webhook_secret = "feed-secret"
[flows.products]
source = "shop"
target = "out"
stream = "products"
"#;

async fn single(server_settings: &str) -> (tempfile::TempDir, Arc<Server>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&format!("[server]\n{server_settings}\n{WORKSPACE}"), dir.path().to_path_buf()).unwrap();
    let state = AppState::open_with(config, Arc::new(SystemClock), register).await.unwrap();
    let (_, key) = state.store.create_key("admin", &[Scope::Admin]).await.unwrap();
    (dir, Server::single(state), key)
}

async fn send(server: &Arc<Server>, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    send_to(router_for(server.clone()), req).await
}

async fn send_to(router: axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = router.oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

fn get(uri: &str, key: Option<&str>) -> Request<Body> {
    let mut r = Request::get(uri);
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    r.body(Body::empty()).unwrap()
}

/// The one error shape, with exactly these keys and the expected code.
fn assert_error_shape(status: StatusCode, body: &Value, code: &str) {
    let e = body["error"].as_object().unwrap_or_else(|| panic!("{status}: not the error shape: {body}"));
    assert_eq!(e.keys().map(String::as_str).collect::<Vec<_>>(), ["code", "field", "message"], "{body}");
    assert_eq!(e["code"], code, "{status}: {body}");
    assert!(ferry_server::error::CODES.contains(&code), "{code} is not a documented code");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

fn signed(path: &str, body: &[u8], secret: &str, delivery: Option<&str>) -> Request<Body> {
    let mut r = Request::post(path)
        .header("x-ferry-signature", webhook::sign(secret, body))
        .header("x-ferry-timestamp", chrono::Utc::now().timestamp().to_string());
    if let Some(d) = delivery {
        r = r.header("x-ferry-delivery", d);
    }
    r.body(Body::from(body.to_vec())).unwrap()
}

#[tokio::test]
async fn a_webhook_body_over_the_cap_is_refused_with_413_before_it_is_read_past_the_cap() {
    let (_dir, server, _) = single("webhook_max_bytes = 4096").await;
    // Declared too large: refused without reading it.
    let big = vec![b' '; 5000];
    let (status, _, body) = send(&server, signed("/hooks/shop", &big, "hook-secret", None)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(status, &body, "body_too_large");

    // Streamed without a length (chunked): the server stops pulling soon after the cap, not at 64 MiB.
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks = futures::stream::iter(0..1024).map(move |_| {
        counter.fetch_add(65536, Ordering::SeqCst);
        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 65536]))
    });
    use futures::StreamExt;
    let req = Request::post("/hooks/shop").header("x-ferry-signature", "sha256=00").header("x-ferry-timestamp", "0").body(Body::from_stream(chunks)).unwrap();
    let (status, _, body) = send(&server, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(status, &body, "body_too_large");
    assert!(pulled.load(Ordering::SeqCst) <= 2 * 65536, "read {} bytes of a body capped at 4096", pulled.load(Ordering::SeqCst));
    let state = server.default_workspace().unwrap();
    assert!(state.store.jobs(&JobFilter { limit: 10, ..Default::default() }).await.unwrap().is_empty());

    // Within the cap, it is an ordinary webhook.
    let (status, _, body) = send(&server, signed("/hooks/shop", br#"{"skus":["A-1"]}"#, "hook-secret", None)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn an_api_body_is_not_read_for_a_request_without_a_known_key() {
    let (_dir, server, _) = single("").await;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    use futures::StreamExt;
    let chunks = futures::stream::iter(0..256).map(move |_| {
        counter.fetch_add(65536, Ordering::SeqCst);
        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 65536]))
    });
    let req = Request::post("/api/v1/records/products").header("authorization", "Bearer fy_nope_nope").body(Body::from_stream(chunks)).unwrap();
    let (status, _, body) = send(&server, req).await;
    assert_error_shape(status, &body, "unauthorized");
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "the body of an unauthenticated request was read");
}

#[tokio::test]
async fn a_slow_request_times_out_with_408_and_a_full_server_answers_503() {
    let (_dir, server, key) = single("request_timeout_seconds = 1\nmax_concurrent_requests = 1").await;
    let check = || Request::post("/api/v1/connections/shop/check").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
    let started = Instant::now();
    let (status, _, body) = send(&server, check()).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_error_shape(status, &body, "timeout");
    assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());

    // One slot (shared by every clone of the router, as for each connection of `ferry serve`): while the
    // slow check holds it, the next request is refused at once with Retry-After.
    let router = router_for(server.clone());
    let busy = tokio::spawn({
        let router = router.clone();
        let req = check();
        async move { send_to(router, req).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, headers, body) = send_to(router.clone(), get("/healthz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error_shape(status, &body, "overloaded");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(busy.await.unwrap(), StatusCode::REQUEST_TIMEOUT);
    // The slot is free again.
    assert_eq!(send_to(router, get("/healthz", None)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_error_answer_has_the_one_shape_and_unknown_ids_are_404() {
    let (_dir, server, key) = single("").await;
    let k = Some(key.as_str());
    for (req, status, code) in [
        (get("/nowhere", None), StatusCode::NOT_FOUND, "not_found"),
        (get("/hooks/shop", None), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Request::delete("/api/v1/flows").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (get("/api/v1/jobs/null,null", k), StatusCode::BAD_REQUEST, "invalid_request"),
        (get("/api/v1/jobs/99999999999999999999", k), StatusCode::BAD_REQUEST, "invalid_request"),
        (get("/api/v1/jobs?limit=abc", k), StatusCode::BAD_REQUEST, "invalid_request"),
        (get("/api/v1/jobs?limit=0", k), StatusCode::BAD_REQUEST, "invalid_request"),
        (get("/api/v1/runs?limit=1001", k), StatusCode::BAD_REQUEST, "invalid_request"),
        (get("/api/v1/jobs/424242", k), StatusCode::NOT_FOUND, "not_found"),
        (get("/api/v1/runs/424242/records", k), StatusCode::NOT_FOUND, "not_found"),
        (get("/api/v1/flows/nope", k), StatusCode::NOT_FOUND, "unknown_flow"),
        (get("/api/v1/flows", None), StatusCode::UNAUTHORIZED, "unauthorized"),
        (get("/metrics", None), StatusCode::UNAUTHORIZED, "unauthorized"),
    ] {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, headers, body) = send(&server, req).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{what}");
        assert_error_shape(got, &body, code);
        if got == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key("allow"), "{what}: 405 keeps its Allow header");
        }
    }
}

#[tokio::test]
async fn readyz_names_nothing_and_metrics_need_a_key() {
    let (_dir, server, key) = single("").await;
    let (status, _, body) = send(&server, get("/readyz", None)).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.to_string();
    for name in ["shop", "products", "feed", "default"] {
        assert!(!text.contains(name), "/readyz names {name}: {text}");
    }
    let (status, headers, body) = send(&server, get("/metrics", Some(&key))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(body.as_str().unwrap().contains("ferry_queue_jobs"));
}

/// Holds SQLite's write lock on a store file until dropped.
async fn write_lock(path: &Path) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.unwrap();
    conn
}

#[tokio::test]
async fn a_bad_token_writes_nothing_and_one_workspace_locked_does_not_stop_another() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("acme")).unwrap();
    std::fs::create_dir_all(dir.path().join("beta")).unwrap();
    for ws in ["acme", "beta"] {
        std::fs::write(dir.path().join(ws).join("ferry.toml"), format!("[state]\npath = \"{ws}.db\"\n{WORKSPACE}")).unwrap();
    }
    let top = Config::parse("[server]\nworkspaces = { acme = \"acme/ferry.toml\", beta = \"beta/ferry.toml\" }\n", dir.path().to_path_buf()).unwrap();
    let server = Server::open_with(top, Arc::new(SystemClock), register).await.unwrap();
    let (_, acme_key) = server.workspace("acme").unwrap().store.create_key("r", &[Scope::Read]).await.unwrap();
    let (_, beta_key) = server.workspace("beta").unwrap().store.create_key("r", &[Scope::Read]).await.unwrap();
    // Each key's first use records it (a write, once a minute at most); do that before the lock.
    for k in [&acme_key, &beta_key] {
        assert_eq!(send(&server, get("/api/v1/flows", Some(k))).await.0, StatusCode::OK);
    }

    // Someone holds beta's write lock (a long sync's commit, say). A bad token is checked against every
    // workspace: had it written (the old `UPDATE … last_used_at`), it would wait for the lock 30 s.
    let lock = write_lock(&dir.path().join("beta/beta.db")).await;
    let started = Instant::now();
    let (status, _, body) = send(&server, get("/api/v1/flows", Some("fy_0123456789abcdef_bad"))).await;
    assert_error_shape(status, &body, "unauthorized");
    let (status, _, body) = send(&server, get("/api/v1/flows", Some(&acme_key))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = send(&server, get("/api/v1/flows", Some(&beta_key))).await;
    assert_eq!(status, StatusCode::OK, "a read of a locked workspace still answers");
    assert!(started.elapsed() < Duration::from_secs(5), "requests waited for another workspace's write lock: {:?}", started.elapsed());
    drop(lock);
}

#[tokio::test]
async fn a_repeated_delivery_id_gets_no_second_job_and_a_connection_without_webhooks_says_so() {
    let (_dir, server, _) = single("").await;
    let state = server.default_workspace().unwrap().clone();
    let jobs = || async { state.store.jobs(&JobFilter { limit: 100, ..Default::default() }).await.unwrap().len() };
    let body = br#"{"skus":["A-1"]}"#;
    let (status, _, first) = send(&server, signed("/hooks/shop", body, "hook-secret", Some("d-1"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first_job = first["jobs"][0]["job"].as_i64().unwrap();
    let (status, _, again) = send(&server, signed("/hooks/shop", body, "hook-secret", Some("d-1"))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, json!({"jobs": [], "duplicate": true, "delivery": "d-1", "first_jobs": [first_job]}));
    assert_eq!(jobs().await, 1, "no second job for a repeated delivery");
    // Another id, or no id at all: each is a delivery of its own.
    assert_eq!(send(&server, signed("/hooks/shop", body, "hook-secret", Some("d-2"))).await.0, StatusCode::ACCEPTED);
    assert_eq!(send(&server, signed("/hooks/shop", body, "hook-secret", None)).await.0, StatusCode::ACCEPTED);
    assert_eq!(jobs().await, 3);
    // A badly signed repeat is refused before dedup; a malformed id is a 400.
    let (status, _, body_) = send(&server, signed("/hooks/shop", body, "wrong", Some("d-1"))).await;
    assert_error_shape(status, &body_, "invalid_signature");
    let (status, _, body_) = send(&server, signed("/hooks/shop", body, "hook-secret", Some("has space"))).await;
    assert_error_shape(status, &body_, "invalid_request");

    // `api` connections (like csv and jsonl) have no targeted sync: 202 with a note, nothing enqueued.
    let (status, _, answer) = send(&server, signed("/hooks/feed", body, "feed-secret", None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["jobs"], json!([]));
    assert!(answer["note"].as_str().unwrap().contains("type api which has no targeted sync"), "{answer}");
    assert_eq!(jobs().await, 3);
}

#[tokio::test]
async fn a_delivery_id_is_forgotten_after_the_dedup_window() {
    let (_dir, server, _) = single("webhook_dedup_window_seconds = 1").await;
    let body = br#"{"skus":["A-1"]}"#;
    assert_eq!(send(&server, signed("/hooks/shop", body, "hook-secret", Some("d-9"))).await.0, StatusCode::ACCEPTED);
    assert_eq!(send(&server, signed("/hooks/shop", body, "hook-secret", Some("d-9"))).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(&server, signed("/hooks/shop", body, "hook-secret", Some("d-9"))).await.0, StatusCode::ACCEPTED, "a new delivery after the window");
}
