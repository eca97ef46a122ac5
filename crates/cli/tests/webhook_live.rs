//! Live end to end: an order placed in the real Vendure (scripts/peers/vendure, port 18300) becomes one
//! sale in the real Tryton (scripts/peers/tryton, port 18000) through the real `ferry serve`: Vendure's
//! webhook plugin POSTs the signed `order.state` event to http://127.0.0.1:18301/hooks/shop, the server
//! verifies it, the Vendure connector names the order, a targeted job re-reads it and writes the sale.
//!
//! Port 18301 is fixed by the Vendure peer's start (scripts/test.sh): this test and the connector's
//! `webhook_plugin_posts_signed_product_events` share the nextest group `webhook-port-18301`.

#[path = "../../connectors/tests/support/tryton.rs"]
#[allow(dead_code)]
mod tryton_support;
#[path = "../../connectors/tests/support/vendure.rs"]
#[allow(dead_code)]
mod vendure_support;

use ferry_connectors::vendure::{Options as VendureOptions, Vendure};
use ferry_engine::{Connector, WriteRecord};
use ferry_model::{Record, Stream};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tryton_support::{Setup, none};

/// A GraphQL client of Vendure's Shop API keeping the session's bearer token (a guest's cart).
struct Shop {
    http: reqwest::Client,
    url: String,
    token: std::sync::Mutex<Option<String>>,
}

impl Shop {
    fn new(url: &str) -> Shop {
        // Below Node's 5 s keep-alive timeout, so a pooled connection is never one the server is closing.
        let http = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(4)).build().unwrap();
        Shop { http, url: url.to_owned(), token: std::sync::Mutex::new(None) }
    }

    /// `data`, asserting no GraphQL error and no ErrorResult.
    async fn ok(&self, q: &str, vars: Value) -> Value {
        let mut req = self.http.post(&self.url).json(&json!({"query": q, "variables": vars}));
        if let Some(t) = self.token.lock().unwrap().clone() {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        if let Some(t) = resp.headers().get("vendure-auth-token") {
            *self.token.lock().unwrap() = Some(t.to_str().unwrap().to_owned());
        }
        let body: Value = resp.json().await.unwrap();
        assert!(body.get("errors").is_none() && !body.to_string().contains("\"errorCode\""), "{q}\n→ {body}");
        body["data"].clone()
    }
}

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
async fn a_vendure_order_becomes_exactly_one_tryton_sale_through_ferry_serve_webhooks() {
    order_becomes_one_sale_through_webhooks(None).await;
}

/// The same through a deployment of two nodes on one PostgreSQL store: the node the webhooks reach runs no
/// jobs (`workers = 0`), so the sale is written by the other node, woken by the queue's NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_accepted_by_one_node_becomes_the_sale_another_node_writes() {
    let scratch = ferry_engine::store::postgres::ScratchSchema::new("webhook_nodes");
    order_becomes_one_sale_through_webhooks(Some(&scratch)).await;
}

/// Places an order in Vendure and waits for its one Tryton sale. `postgres`: two nodes on this store
/// (the webhook's receiver without workers, and a worker node); `None`: one node on SQLite.
async fn order_becomes_one_sale_through_webhooks(postgres: Option<&ferry_engine::store::postgres::ScratchSchema>) {
    let vendure = vendure_support::vendure();
    let tryton = tryton_support::tryton(json!({}));
    let u = vendure_support::unique().to_uppercase();
    let sku = format!("WH-{u}");

    // The same article in the ERP (with stock) and in the shop.
    let setup = Setup(&tryton);
    let pid = setup.product(&sku, "Webhook widget", "20", "8", &[], &[""]).await[0];
    setup.stock(pid, 50).await;
    let shop_admin = Vendure::new(
        serde_json::from_value::<VendureOptions>(json!({"url": vendure.base_url, "username": vendure.username, "password": vendure.password})).unwrap(),
        "setup",
    )
    .unwrap();
    let rec = |stream, v: Value| {
        let record = Record::parse(stream, v, "test").unwrap();
        WriteRecord { key: record.key(), target_id: None, record, previous: None }
    };
    let out = shop_admin
        .write(Stream::Products, vec![rec(Stream::Products, json!({"sku": sku, "name": "Webhook widget", "price": {"amount": "20", "currency": "AUD", "tax_inclusive": false}}))])
        .await
        .unwrap();
    let variant = out[0].result.as_ref().unwrap().target_id.clone();
    shop_admin.write(Stream::Stock, vec![rec(Stream::Stock, json!({"sku": sku, "on_hand": "50"}))]).await.unwrap();

    // ferry serve where the Vendure peer posts its webhooks (and, on PostgreSQL, a second node that works).
    let dir = tempfile::tempdir().unwrap();
    let state = match postgres {
        Some(pg) => format!("[state]\nurl = \"{}\"\nschema = \"{}\"\n", pg.url, pg.schema),
        None => "[state]\npath = \"state.db\"\n".to_owned(),
    };
    let server = |port: u16, workers: u32| format!("[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = {workers}\npoll_millis = 100\n");
    let config = dir.path().join("ferry.toml");
    let common = format!(
            r#"
[connections.shop]
type = "vendure"
url = "{vurl}"
username = "{vuser}"
password = "{vpass}"
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
# Only this test's order: the peer's plugin retries deliveries no one took (for 20 s), so when this server
# comes up it also hears of other tests' recent orders, whose sales are theirs to create.
filter = 'any(.lines[]; .sku == "{sku}")'
"#,
            vurl = vendure.base_url,
            vuser = vendure.username,
            vpass = vendure.password,
            secret = vendure_support::WEBHOOK_SECRET,
            tport = tryton_support::port(),
            tpass = tryton_support::PASSWORD,
            sku = sku,
        );
    let receiver_workers = if postgres.is_some() { 0 } else { 2 };
    std::fs::write(&config, format!("{state}{}{common}", server(vendure_support::webhook_port(), receiver_workers))).unwrap();
    assert_eq!(vendure_support::WEBHOOK_PATH, "/hooks/shop", "the peer posts to the route of the connection named shop");
    let ferry = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ferry")).env_remove("FERRY_CONFIG").arg("--config").arg(&config).args(args).output().unwrap();
    let key = ferry(&["keys", "create", "--scope", "read,write"]);
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let token = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let serve = |config: &Path, log: &Path| {
        Serve(
            Command::new(env!("CARGO_BIN_EXE_ferry"))
                .env_remove("FERRY_CONFIG")
                .env("FERRY_LOG", "info")
                .arg("--config")
                .arg(config)
                .arg("serve")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let log = dir.path().join("serve.log");
    let _server = serve(&config, &log);
    let base = format!("http://127.0.0.1:{}", vendure_support::webhook_port());
    // The node that runs the jobs (the receiver itself on SQLite).
    let (worker_base, _worker) = match postgres {
        Some(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let worker_config = dir.path().join("worker.toml");
            std::fs::write(&worker_config, format!("{state}{}{common}", server(port, 2))).unwrap();
            (format!("http://127.0.0.1:{port}"), Some(serve(&worker_config, &dir.path().join("worker.log"))))
        }
        None => (base.clone(), None),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in [&base, &worker_base] {
        while get(&format!("{node}/healthz"), None).await.0 != 200 {
            assert!(Instant::now() < deadline, "ferry serve did not come up on {node} (port taken?):\n{}", log_tail(&log));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A guest checks out in the shop.
    let shop = Shop::new(&vendure.shop_api);
    let order_fields = "... on Order { code state } ... on ErrorResult { errorCode message }";
    let cart = shop.ok(&format!("mutation($v:ID!){{ addItemToOrder(productVariantId:$v, quantity:2){{ {order_fields} }} }}"), json!({"v": variant})).await;
    let code = cart["addItemToOrder"]["code"].as_str().unwrap().to_owned();
    let email = format!("guest-{}@example.test", u.to_lowercase());
    shop.ok(
        &format!("mutation($i:CreateCustomerInput!){{ setCustomerForOrder(input:$i){{ {order_fields} }} }}"),
        json!({"i": {"emailAddress": email, "firstName": "Web", "lastName": "Guest"}}),
    )
    .await;
    let addr = json!({"fullName": "Web Guest", "streetLine1": "1 Hook St", "city": "Sydney", "province": "NSW", "postalCode": "2000", "countryCode": "AU"});
    shop.ok(&format!("mutation($i:CreateAddressInput!){{ setOrderShippingAddress(input:$i){{ {order_fields} }} }}"), json!({"i": addr})).await;
    shop.ok(&format!("mutation($i:CreateAddressInput!){{ setOrderBillingAddress(input:$i){{ {order_fields} }} }}"), json!({"i": addr})).await;
    let methods = shop.ok("{ eligibleShippingMethods { id code } }", json!({})).await;
    let method = methods["eligibleShippingMethods"].as_array().unwrap().iter().find(|m| m["code"] == "standard").unwrap()["id"].clone();
    shop.ok(&format!("mutation($s:[ID!]!){{ setOrderShippingMethod(shippingMethodId:$s){{ {order_fields} }} }}"), json!({"s": [method]})).await;
    shop.ok("mutation{ transitionOrderToState(state:\"ArrangingPayment\"){ ... on Order { state } ... on OrderStateTransitionError { errorCode message transitionError } } }", json!({}))
        .await;
    assert!(sales_with_reference(&tryton, &code).await.is_empty(), "no sale before payment");
    let paid_at = Instant::now();
    let paid = shop.ok(&format!("mutation{{ addPaymentToOrder(input:{{method:\"test-pay\", metadata:{{}}}}){{ {order_fields} }} }}"), json!({})).await;
    assert_eq!(paid["addPaymentToOrder"]["state"], "PaymentSettled", "{paid}");
    let payment_took = paid_at.elapsed();

    // The sale appears in Tryton within seconds, with the order's code as its reference.
    let deadline = paid_at + Duration::from_secs(30);
    let sale = loop {
        let found = sales_with_reference(&tryton, &code).await;
        if let Some(id) = found.first() {
            break *id;
        }
        assert!(Instant::now() < deadline, "no sale {code} in Tryton 30 s after payment; server log:\n{}", log_tail(&log));
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let latency = paid_at.elapsed();
    println!("payment_to_sale_ms={}", latency.as_millis());

    let s = setup.read_one("sale.sale", sale, &["reference", "state", "lines", "total_amount"]).await;
    assert_eq!(s["reference"], code.as_str());
    assert!(s["lines"].as_array().unwrap().len() >= 2, "the article and the freight: {s:?}");

    // A delivery repeated (webhooks come twice) changes nothing: still one sale.
    let body = json!({"type": "order.state", "at": "2026-01-01T00:00:00Z", "code": code, "from": "ArrangingPayment", "to": "PaymentSettled"}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("{base}{}", vendure_support::WEBHOOK_PATH))
        .header("content-type", "application/json")
        .header("x-ferry-signature", ferry_server::webhook::sign(vendure_support::WEBHOOK_SECRET, body.as_bytes()))
        .header("x-ferry-timestamp", chrono_now().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, jobs) = get(&format!("{base}/api/v1/jobs?flow=orders&limit=1000"), Some(&token)).await;
        let jobs: Value = serde_json::from_str(&jobs).unwrap();
        let mine: Vec<&Value> = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["keys"] == json!([code])).collect();
        if mine.len() >= 2 && mine.iter().all(|j| j["status"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "the repeated delivery's job did not finish: {mine:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sales_with_reference(&tryton, &code).await, vec![sale], "exactly one sale for order {code}");
    if postgres.is_some() {
        // Every job of this order ran on the worker node: the receiver has no workers.
        let (_, jobs) = get(&format!("{base}/api/v1/jobs?flow=orders&limit=1000"), Some(&token)).await;
        let jobs: Value = serde_json::from_str(&jobs).unwrap();
        let mine: Vec<&Value> = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["keys"] == json!([code])).collect();
        assert!(mine.len() >= 2 && mine.iter().all(|j| j["status"] == "succeeded"), "{mine:?}");
    }
    // The webhook → target metric is kept by the node that ran the job.
    let (_, metrics) = get(&format!("{worker_base}/metrics"), Some(&token)).await;
    let metric = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(f64::NAN);
    let (sum, count) = (metric("ferry_webhook_to_target_seconds_sum"), metric("ferry_webhook_to_target_seconds_count"));
    eprintln!(
        "order {code}: payment call {payment_took:?}; payment → sale {sale} visible in Tryton after {latency:?}; \
         ferry webhook → job done (server metric, incl. the Vendure read and Tryton write): {:.0} ms mean over {count} webhook job(s)",
        1000.0 * sum / count
    );
    let (status, xref) = get(&format!("{base}/api/v1/xref/{code}"), Some(&token)).await;
    assert_eq!(status, 200, "{xref}");
    let xref: Value = serde_json::from_str(&xref).unwrap();
    assert_eq!(xref["xref"][0]["target_id"], sale.to_string(), "{xref}");
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

