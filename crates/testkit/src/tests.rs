//! The proxy against a tiny local axum server that counts what reaches it.

use super::*;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use std::sync::atomic::{AtomicU64, Ordering};

/// An upstream that counts the requests it served and echoes each body with a header.
async fn upstream() -> (String, Arc<AtomicU64>) {
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let app = Router::new().route(
        "/{*path}",
        post(move |headers: HeaderMap, body: String| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                ([("x-upstream", "yes".to_owned()), ("x-seen-auth", auth)], format!("echo:{body}"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, served)
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

async fn send(proxy: &FaultProxy, body: &str) -> Result<reqwest::Response, reqwest::Error> {
    client(Duration::from_secs(5)).post(format!("{}/db/rpc/", proxy.url())).body(body.to_owned()).send().await
}

#[tokio::test]
async fn forwards_method_path_headers_and_body_and_relays_the_answer() {
    let (up, served) = upstream().await;
    let proxy = FaultProxy::start(&up);
    let answer = client(Duration::from_secs(5))
        .post(format!("{}/db/rpc/?x=1", proxy.url()))
        .header("authorization", "Session abc")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-upstream"], "yes");
    assert_eq!(answer.headers()["x-seen-auth"], "Session abc");
    assert_eq!(answer.text().await.unwrap(), "echo:hello");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let stats = proxy.stats();
    assert_eq!((stats.requests, stats.forwarded, stats.faults), (1, 1, 0));
}

#[tokio::test]
async fn a_status_fault_answers_without_reaching_upstream() {
    let (up, served) = upstream().await;
    let proxy = FaultProxy::start(&up);
    proxy.fail_matching("boom", Fault::Status(502), 1);
    assert_eq!(send(&proxy, "boom").await.unwrap().status(), 502);
    assert_eq!(served.load(Ordering::SeqCst), 0, "a 502 fault is not forwarded");
    // the rule is used up: the next one passes
    assert_eq!(send(&proxy, "boom").await.unwrap().status(), 200);
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let stats = proxy.stats();
    assert_eq!(stats.faults_by_kind.get("status-502"), Some(&1));
    assert_eq!((stats.seen("boom"), stats.faulted("boom")), (2, 1));
}

#[tokio::test]
async fn too_many_requests_carries_retry_after_in_seconds_or_as_an_http_date() {
    let (up, _) = upstream().await;
    let proxy = FaultProxy::start(&up);
    proxy.fail_matching("secs", Fault::TooManyRequests { retry_after: RetryAfter::Seconds(2) }, 1);
    proxy.fail_matching("date", Fault::TooManyRequests { retry_after: RetryAfter::DateIn(Duration::from_secs(3)) }, 1);
    let a = send(&proxy, "secs").await.unwrap();
    assert_eq!(a.status(), 429);
    assert_eq!(a.headers()["retry-after"], "2");
    let b = send(&proxy, "date").await.unwrap();
    assert_eq!(b.status(), 429);
    let at = httpdate::parse_http_date(b.headers()["retry-after"].to_str().unwrap()).unwrap();
    let ahead = at.duration_since(SystemTime::now()).unwrap();
    assert!(ahead > Duration::from_secs(2) && ahead <= Duration::from_secs(5), "{ahead:?}");
}

#[tokio::test]
async fn matching_rules_only_take_requests_containing_the_needle_and_count_down() {
    let (up, served) = upstream().await;
    let proxy = FaultProxy::start(&up);
    proxy.fail_matching("model.sale.sale.quote", Fault::Status(503), 2);
    proxy.watch("model.sale.sale.read");
    assert_eq!(send(&proxy, r#"{"method":"model.sale.sale.read"}"#).await.unwrap().status(), 200);
    assert_eq!(send(&proxy, r#"{"method":"model.sale.sale.quote"}"#).await.unwrap().status(), 503);
    assert_eq!(send(&proxy, r#"{"method":"model.sale.sale.quote"}"#).await.unwrap().status(), 503);
    assert_eq!(send(&proxy, r#"{"method":"model.sale.sale.quote"}"#).await.unwrap().status(), 200);
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let stats = proxy.stats();
    assert_eq!(stats.needles["model.sale.sale.quote"], NeedleStats { seen: 3, faulted: 2 });
    assert_eq!(stats.needles["model.sale.sale.read"], NeedleStats { seen: 1, faulted: 0 });
}

#[tokio::test]
async fn drop_after_forward_lets_upstream_do_the_work_and_loses_the_answer() {
    let (up, served) = upstream().await;
    let proxy = FaultProxy::start(&up);
    proxy.fail_matching("create", Fault::DropAfterForward, 1);
    let err = send(&proxy, "create").await.expect_err("the answer must be lost");
    assert!(!err.is_timeout(), "dropped, not timed out: {err:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1, "upstream applied the request");
    assert_eq!(proxy.stats().forwarded, 1);
    // the proxy itself keeps working
    assert_eq!(send(&proxy, "create").await.unwrap().text().await.unwrap(), "echo:create");
}

#[tokio::test]
async fn timeout_holds_the_request_past_the_clients_timeout_without_forwarding() {
    let (up, served) = upstream().await;
    let proxy = FaultProxy::start(&up);
    proxy.fail_matching("slow", Fault::Timeout, 1);
    let started = std::time::Instant::now();
    let err = client(Duration::from_millis(300)).post(proxy.url()).body("slow").send().await.expect_err("held");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(served.load(Ordering::SeqCst), 0);
    // with a short hold the connection is dropped instead
    proxy.fail_matching("slow", Fault::Timeout, 1);
    proxy.set_hold(Duration::from_millis(100));
    let err = client(Duration::from_secs(5)).post(proxy.url()).body("slow").send().await.expect_err("dropped");
    assert!(!err.is_timeout(), "{err:?}");
}

/// Statuses of 200 requests with 30 % random faults and a seed.
async fn random_run(up: &str, seed: u64) -> (Vec<u16>, ProxyStats) {
    let proxy = FaultProxy::start(up);
    proxy.set_random(0.3, &[Fault::Status(502), Fault::Status(503), Fault::TooManyRequests { retry_after: RetryAfter::Seconds(1) }], seed);
    let mut statuses = Vec::new();
    for i in 0..200 {
        statuses.push(send(&proxy, &format!("r{i}")).await.unwrap().status().as_u16());
    }
    (statuses, proxy.stats())
}

#[tokio::test]
async fn random_faults_hit_about_their_share_and_repeat_with_the_same_seed() {
    let (up, _) = upstream().await;
    let (first, stats) = random_run(&up, 7).await;
    let (again, _) = random_run(&up, 7).await;
    let (other, _) = random_run(&up, 8).await;
    assert_eq!(first, again, "same seed, same faults");
    assert_ne!(first, other, "another seed, other faults");
    let failed = first.iter().filter(|s| **s != 200).count() as u64;
    assert_eq!(failed, stats.faults);
    assert!((35..=85).contains(&failed), "30 % of 200 requests, got {failed}");
    assert!(stats.faults_by_kind.len() == 3, "all three kinds drawn: {:?}", stats.faults_by_kind);
    assert_eq!(stats.forwarded, 200 - failed);
}

#[tokio::test]
async fn clear_removes_rules_and_random_faults_but_keeps_counting() {
    let (up, _) = upstream().await;
    let proxy = FaultProxy::start(&up);
    proxy.set_random(1.0, &[Fault::Status(500)], 1);
    proxy.fail_matching("x", Fault::Status(502), 5);
    assert_eq!(send(&proxy, "x").await.unwrap().status(), 502);
    assert_eq!(send(&proxy, "y").await.unwrap().status(), 500);
    proxy.clear();
    assert_eq!(send(&proxy, "x").await.unwrap().status(), 200);
    assert_eq!(send(&proxy, "y").await.unwrap().status(), 200);
    let stats = proxy.stats();
    assert_eq!((stats.requests, stats.faults), (4, 2));
}

#[test]
fn works_from_a_sync_test_and_stops_listening_when_dropped() {
    // the upstream needs a runtime of its own; the proxy does not
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (up, _) = runtime.block_on(upstream());
    let proxy = FaultProxy::start(&up);
    let url = proxy.url();
    let blocking = || std::net::TcpStream::connect(url.trim_start_matches("http://"));
    assert!(blocking().is_ok());
    drop(proxy);
    assert!(blocking().is_err(), "nothing listens after drop");
}
