//! Live end to end: an order placed through the real Medusa 2 Store API (scripts/peers/medusa, port
//! 18500) becomes one sale in the real Tryton (scripts/peers/tryton, port 18000) through the real
//! `ferry serve`: the peer's subscriber POSTs the signed `order.placed` event to
//! http://127.0.0.1:18501/hooks/shop, the server verifies it, the Medusa connector names the order, a
//! targeted job re-reads it and writes the sale. A repeated delivery changes nothing.
//!
//! Port 18501 is fixed by the Medusa peer's start (its WEBHOOK_URL).

#[path = "../../connectors/tests/support/tryton.rs"]
#[allow(dead_code)]
mod tryton_support;
#[path = "../../connectors/tests/support/medusa.rs"]
#[allow(dead_code)]
mod medusa_support;

use ferry_connectors::medusa::{Medusa, Options as MedusaOptions};
use ferry_engine::{Connector, WriteRecord};
use ferry_model::{Record, Stream};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tryton_support::{Setup, none};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

async fn sales_with_reference(t: &ferry_connectors::tryton::Tryton, reference: &str) -> Vec<i64> {
    t.rpc().search("sale.sale", json!([["reference", "=", reference]]), 0, None, Value::Null, &none()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medusa_order_becomes_exactly_one_tryton_sale_through_ferry_serve_webhooks() {
    let peer = medusa_support::medusa();
    let tryton = tryton_support::tryton(json!({}));
    let sku = format!("MWH-{}", medusa_support::unique());

    // The same article in the ERP (with stock) and in the shop (with stock at the sales channel's location).
    let setup = Setup(&tryton);
    let pid = setup.product(&sku, "Webhook mug", "20", "8", &[], &[""]).await[0];
    setup.stock(pid, 50).await;
    let options = json!({"base_url": peer.base_url, "api_key": peer.api_key, "sales_channel": "Ferry Webshop", "stock_locations": {"default": "Sydney warehouse"}});
    let shop_admin = Medusa::new(serde_json::from_value::<MedusaOptions>(options).unwrap(), "setup").unwrap();
    let rec = |stream, v: Value| {
        let record = Record::parse(stream, v, "test").unwrap();
        WriteRecord { key: record.key(), target_id: None, record, previous: None }
    };
    let out = shop_admin
        .write(Stream::Products, vec![rec(Stream::Products, json!({"sku": sku, "name": "Webhook mug", "price": {"amount": "20", "currency": "AUD", "tax_inclusive": false}}))])
        .await
        .unwrap();
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
    let out = shop_admin.write(Stream::Stock, vec![rec(Stream::Stock, json!({"sku": sku, "on_hand": "50"}))]).await.unwrap();
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);

    // ferry serve where the Medusa peer posts its webhooks.
    let dir = tempfile::tempdir().unwrap();
    let port = medusa_support::medusa_webhook_port();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[state]
path = "state.db"
[server]
listen = "127.0.0.1:{port}"
workers = 2
poll_millis = 100
[connections.shop]
type = "medusa"
base_url = "{murl}"
api_key = "{mkey}"
webhook_secret = "{secret}"
[connections.erp]
type = "tryton"
url = "http://127.0.0.1:{tport}"
database = "tryton"
username = "admin"
password = "{tpass}"
[flows.orders]
source = "shop"
target = "erp"
stream = "orders"
[flows.orders.mapping]
# Only this test's order (the subscriber retries deliveries no one took, so other tests' orders come too).
filter = 'any(.lines[]; .sku == "{sku}")'
"#,
            murl = peer.base_url,
            mkey = peer.api_key,
            secret = medusa_support::MEDUSA_WEBHOOK_SECRET,
            tport = tryton_support::port(),
            tpass = tryton_support::PASSWORD,
        ),
    )
    .unwrap();
    assert_eq!(medusa_support::MEDUSA_WEBHOOK_PATH, "/hooks/shop", "the peer posts to the route of the connection named shop");
    let ferry = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ferry")).env_remove("FERRY_CONFIG").arg("--config").arg(&config).args(args).output().unwrap();
    let key = ferry(&["keys", "create", "--scope", "read,write"]);
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let token = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let log = dir.path().join("serve.log");
    let _server = Serve(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .env_remove("FERRY_CONFIG")
            .env("FERRY_LOG", "info")
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("{base}/healthz"), None).await.0 != 200 {
        assert!(Instant::now() < deadline, "ferry serve did not come up on {base} (port taken?):\n{}", log_tail(&log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A guest checks out through the Store API; Medusa's subscriber signs and posts `order.placed`.
    let placed_at = Instant::now();
    let order = tokio::task::spawn_blocking({
        let sku = sku.clone();
        move || medusa_support::place_medusa_order(&[(&sku, 2)], &format!("guest-{}@example.test", sku.to_lowercase()))
    })
    .await
    .unwrap();
    let id = order["id"].as_str().unwrap().to_owned();

    let deadline = placed_at + Duration::from_secs(60);
    let sale = loop {
        if let Some(found) = sales_with_reference(&tryton, &id).await.first() {
            break *found;
        }
        assert!(Instant::now() < deadline, "no sale {id} in Tryton 60 s after checkout; server log:\n{}", log_tail(&log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("order {id}: checkout → sale {sale} visible in Tryton after {:?}", placed_at.elapsed());
    let s = Setup(&tryton).read_one("sale.sale", sale, &["reference", "lines"]).await;
    assert_eq!(s["reference"], id.as_str());
    assert!(s["lines"].as_array().unwrap().len() >= 2, "the article and the freight: {s:?}");

    // A delivery repeated (webhooks can come twice) changes nothing: still one sale.
    let body = json!({"event": "order.placed", "data": {"id": id}, "id": "repeat-1", "occurred_at": "2026-01-01T00:00:00Z"}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("{base}{}", medusa_support::MEDUSA_WEBHOOK_PATH))
        .header("content-type", "application/json")
        .header("x-ferry-signature", ferry_server::webhook::sign(medusa_support::MEDUSA_WEBHOOK_SECRET, body.as_bytes()))
        .header("x-ferry-timestamp", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, jobs) = get(&format!("{base}/api/v1/jobs?flow=orders&limit=1000"), Some(&token)).await;
        let jobs: Value = serde_json::from_str(&jobs).unwrap();
        let mine: Vec<&Value> = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["keys"] == json!([id])).collect();
        if mine.len() >= 2 && mine.iter().all(|j| j["status"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "the repeated delivery's job did not finish: {mine:?}\n{}", log_tail(&log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sales_with_reference(&tryton, &id).await, vec![sale], "exactly one sale for order {id}");
}
