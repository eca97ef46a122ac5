//! `POST /hooks/{connection}` for a connection whose connector signs the Shopify way
//! (`Connector::webhook_auth` = `WebhookAuth::Shopify`): `X-Shopify-Hmac-Sha256` is checked on the raw
//! body, `X-Ferry-Signature` is not accepted in its place, and a delivery repeated with the same
//! `X-Shopify-Webhook-Id` (Shopify's retries) starts no second job.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use ferry_engine::Config;
use ferry_engine::connector::*;
use ferry_engine::schedule::SystemClock;
use ferry_engine::store::jobs::JobFilter;
use ferry_model::Stream;
use ferry_server::{AppState, Server, router_for, webhook};
use futures::stream::BoxStream;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;
use tower::ServiceExt;

/// A shop whose webhooks are signed like Shopify's and name orders by `name`.
struct Shopish;

#[async_trait]
impl Connector for Shopish {
    fn describe(&self) -> Description {
        Description {
            name: "shopish",
            summary: "test shop",
            config_schema: json!({}),
            streams: vec![StreamCapability { stream: Stream::Orders, read: Some(ReadMode::Incremental), write: None, find_by_key: false, retire: vec![] }],
            batch_size: 10,
            webhooks: true,
        }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport { ok: true, details: vec![] })
    }
    fn read(&self, _: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        Box::pin(futures::stream::empty())
    }
    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        body["name"].as_str().map(|n| vec![(Stream::Orders, vec![n.to_owned()])]).unwrap_or_default()
    }
    fn webhook_auth(&self) -> WebhookAuth {
        WebhookAuth::Shopify
    }
}

struct ShopishFactory;
impl ConnectorFactory for ShopishFactory {
    fn name(&self) -> &'static str {
        "shopish"
    }
    fn summary(&self) -> &'static str {
        "test"
    }
    fn build(&self, _: &Value, _: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(Shopish))
    }
}

const CONFIG: &str = r#"
[connections.shop]
type = "shopish"
webhook_secret = "shpss_app_secret"
[connections.out]
type = "api"
collection = "out"
[flows.orders]
source = "shop"
target = "out"
stream = "orders"
"#;

fn shopify_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn delivery(body: &[u8], hmac: &str, id: &str) -> Request<Body> {
    Request::post("/hooks/shop")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-hmac-sha256", hmac)
        .header("x-shopify-webhook-id", id)
        .header("x-shopify-shop-domain", "ferry-test.myshopify.com")
        .body(Body::from(body.to_vec()))
        .unwrap()
}

async fn send(server: &Arc<Server>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router_for(server.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn shopify_signed_deliveries_are_verified_and_a_retried_webhook_id_starts_no_second_job() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(CONFIG, dir.path().to_path_buf()).unwrap();
    let state = AppState::open_with(config, Arc::new(SystemClock), |r| {
        r.register(Box::new(ShopishFactory));
    })
    .await
    .unwrap();
    let server = Server::single(state);
    let state = server.default_workspace().unwrap().clone();
    let jobs = || async { state.store.jobs(&JobFilter { limit: 100, ..Default::default() }).await.unwrap().len() };

    let body = br##"{"id":820982911946154508,"name":"#1001","order_number":1001,"line_items":[]}"##;
    let good = shopify_hmac("shpss_app_secret", body);
    let (status, first) = send(&server, delivery(body, &good, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["jobs"][0]["keys"], json!(["#1001"]));
    let first_job = first["jobs"][0]["job"].as_i64().unwrap();

    // Shopify retries with the same webhook id: acknowledged, no new job
    let (status, again) = send(&server, delivery(body, &good, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, json!({"jobs": [], "duplicate": true, "delivery": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "first_jobs": [first_job]}));
    assert_eq!(jobs().await, 1);

    // wrong secret, a body changed after signing, or Ferry's own signature: refused, nothing enqueued
    let (status, e) = send(&server, delivery(body, &shopify_hmac("other", body), "id-2")).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_signature")));
    let (status, _) = send(&server, delivery(br##"{"name":"#1002","order_number":1002,"line_items":[]}"##, &good, "id-3")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let ferry_signed = Request::post("/hooks/shop")
        .header("x-ferry-signature", webhook::sign("shpss_app_secret", body))
        .header("x-ferry-timestamp", chrono::Utc::now().timestamp().to_string())
        .body(Body::from(body.to_vec()))
        .unwrap();
    assert_eq!(send(&server, ferry_signed).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(jobs().await, 1, "nothing enqueued for refused deliveries");

    // another event (another id) is a delivery of its own
    let (status, _) = send(&server, delivery(body, &good, "c0ffee00-0000-4000-8000-000000000001")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(jobs().await, 2);
}
