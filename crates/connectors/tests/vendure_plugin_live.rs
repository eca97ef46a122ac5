//! Ferry's Vendure plugin (`@ferry/vendure-plugin`, integrations/vendure-plugin) in the live peer, which
//! installs it from the tarball `npm pack` builds from the repo (scripts/peers/vendure/up.sh):
//! - its events arrive signed, with a delivery id, in the wire format `webhook_signals` reads;
//! - a delivery that fails while Ferry is down is sent again, with the same id, once Ferry is up;
//! - its promotion action `ferry_variant_fixed_price` prices a B2B customer's units exactly to the cent,
//!   in a channel whose prices exclude tax and in one whose prices include it.
//!
//! The delivery tests listen on the peer's webhook port (18301, fixed at the peer's start): they share the
//! nextest group `webhook-port-18301` with the other tests listening there (.config/nextest.toml).
#![cfg(feature = "vendure")]

mod support;

use ferry_connectors::vendure::{Options, Vendure, webhook_signals};
use ferry_engine::{Connector, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Record, Stream};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Api, Buyer, place_order, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

fn connector_with(extra: Value) -> Vendure {
    let peer = support::vendure();
    let mut options = json!({"url": peer.base_url, "username": peer.username, "password": peer.password});
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    Vendure::new(serde_json::from_value::<Options>(options).unwrap(), "test").unwrap()
}

fn record(stream: Stream, v: Value) -> WriteRecord {
    let record = Record::parse(stream, v, "test").unwrap();
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

/// The target id of a record written (created or updated); panics naming the failure.
fn written(o: &WriteOutcome) -> String {
    match &o.result {
        Ok(w) => {
            assert!(matches!(w.action, WriteAction::Created | WriteAction::Updated | WriteAction::Unchanged), "{}: {:?}", o.key, w.action);
            w.target_id.clone()
        }
        Err(f) => panic!("{} failed: {f:?}", o.key),
    }
}

// ---- a webhook receiver standing in for `ferry serve` ------------------------------------------------

/// One POST as the plugin sent it.
#[derive(Clone, Debug)]
struct Delivery {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_default()
    }
    fn mentions(&self, text: &str) -> bool {
        String::from_utf8_lossy(&self.body).contains(text)
    }
}

/// Listens on the peer's webhook port, answers each POST with `status(delivery)` and reports it. Reading
/// one request per connection and closing it keeps this small; the plugin reconnects as needed.
async fn listen(status: impl Fn(&Delivery) -> u16 + Send + Sync + 'static) -> UnboundedReceiver<Delivery> {
    let port = support::webhook_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("webhook test port {port} free: {e}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let status = Arc::new(status);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (tx, status) = (tx.clone(), status.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let headers: HashMap<String, String> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned())))
                        .collect();
                    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let delivery = Delivery { headers, body: buf[end + 4..end + 4 + len].to_vec() };
                    let code = status(&delivery);
                    let reply = format!("HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                    let _ = tx.send(delivery);
                    return;
                }
            });
        }
    });
    rx
}

/// The next delivery `wanted` accepts (other tests' events share the server), or a panic naming `what`.
async fn next_delivery(rx: &mut UnboundedReceiver<Delivery>, deadline: Instant, what: &str, wanted: impl Fn(&Delivery) -> bool) -> Delivery {
    loop {
        let d = tokio::time::timeout_at(deadline, rx.recv()).await.unwrap_or_else(|_| panic!("no webhook {what} in time")).expect("listener running");
        if wanted(&d) {
            return d;
        }
    }
}

/// Signed as `ferry serve` verifies it (crates/server/src/webhook.rs), with a fresh timestamp, a UUID
/// delivery id and the event type in `X-Ferry-Event`.
fn assert_signed(d: &Delivery) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(support::WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(&d.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(d.header("x-ferry-signature"), format!("sha256={expected}"), "{d:?}");
    let ts: i64 = d.header("x-ferry-timestamp").parse().unwrap_or_else(|_| panic!("X-Ferry-Timestamp: {d:?}"));
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60, "timestamp {ts} is not now: {d:?}");
    let id = d.header("x-ferry-delivery");
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert!(groups == [8, 4, 4, 4, 12] && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "X-Ferry-Delivery is a UUID: {id:?}");
    assert_eq!(d.header("x-ferry-event"), d.json()["type"].as_str().unwrap_or_default(), "{d:?}");
    assert_eq!(d.header("content-type"), "application/json");
}

/// Which event of a type a test waits for.
type EventMatch<'a> = Box<dyn Fn(&Value) -> bool + 'a>;

/// An id as text: events carry Vendure's ids as the database gives them (numbers on SQL), GraphQL as strings.
fn id_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

#[tokio::test]
async fn the_plugin_posts_signed_events_that_name_their_records() {
    let mut rx = listen(|_| 204).await;
    let v = connector_with(json!({}));
    let u = unique();
    let sku = format!("PLUG-{u}");
    let variant = written(
        &v.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Plugged", "price": {"amount": "20", "currency": "AUD", "tax_inclusive": false}}))])
            .await
            .unwrap()[0],
    );
    written(&v.write(Stream::Stock, vec![record(Stream::Stock, json!({"sku": sku, "on_hand": "10"}))]).await.unwrap()[0]);
    let email = format!("plug-{u}@example.test");
    let group = format!("Plugin trade {u}");
    let customer = json!({"code": format!("PLUG-{u}"), "email": email, "first_name": "Ada", "last_name": "Plug", "group": group});
    written(&v.write(Stream::Customers, vec![record(Stream::Customers, customer)]).await.unwrap()[0]);
    let guest = format!("guest-{u}@example.test");
    let code = place_order(&[(variant, 2)], Buyer::Guest { email: &guest, first_name: "Gus", last_name: "Guest" }, None).await;
    // One of the two units cancelled: the order stays, its line changes.
    let admin = Api::admin().await;
    let order = admin.ok("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { id lines { id } } } }", json!({"c": code})).await;
    let order = &order["orders"]["items"][0];
    admin
        .ok(
            "mutation($i:CancelOrderInput!){ cancelOrder(input:$i){ ... on Order { state } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"orderId": order["id"], "lines": [{"orderLineId": order["lines"][0]["id"], "quantity": 1}], "reason": "plugin test"}}),
        )
        .await;

    // Each kind of event, signed, naming this test's records; the connector reads what it needs from them.
    let states = ["PaymentAuthorized", "PaymentSettled", "Cancelled"].map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wanted: Vec<(&str, EventMatch)> = vec![
        ("variant.created", Box::new(|e: &Value| e["skus"].as_array().is_some_and(|s| s.iter().any(|s| s == sku.as_str())))),
        ("stock.movement", Box::new(|e: &Value| e["movements"].as_array().is_some_and(|m| m.iter().any(|m| m["sku"] == sku.as_str())))),
        ("customer.created", Box::new(|e: &Value| e["email"] == email.as_str())),
        ("customer_group.assigned", Box::new(|e: &Value| e["group"] == group.as_str())),
        ("order.state", Box::new(|e: &Value| e["code"] == code.as_str() && e["to"] == "PaymentSettled")),
        ("order.cancelled", Box::new(|e: &Value| e["code"] == code.as_str() && id_text(&e["lineId"]) == id_text(&order["lines"][0]["id"]))),
    ];
    let mut ids = HashSet::new();
    while !wanted.is_empty() {
        let d = next_delivery(&mut rx, deadline, &format!("of {:?}", wanted.iter().map(|w| w.0).collect::<Vec<_>>()), |_| true).await;
        let event = d.json();
        let Some(i) = wanted.iter().position(|(kind, matches)| event["type"] == *kind && matches(&event)) else { continue };
        let (kind, _) = wanted.remove(i);
        assert_signed(&d);
        assert!(ids.insert(d.header("x-ferry-delivery").to_owned()), "one delivery id per event: {d:?}");
        assert!(event["at"].as_str().is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok()), "{event}");
        let signals = webhook_signals(&event, &states);
        match kind {
            "variant.created" => assert_eq!(signals, vec![(Stream::Products, vec![sku.clone()])], "{event}"),
            "order.state" | "order.cancelled" => assert_eq!(signals, vec![(Stream::Orders, vec![code.clone()])], "{event}"),
            _ => assert!(signals.is_empty(), "{event}"),
        }
    }
}

#[tokio::test]
async fn a_delivery_is_retried_while_ferry_is_down_and_arrives_once_it_is_up() {
    let v = connector_with(json!({}));
    // Ferry is down: nothing listens on the webhook port (binding it proves it is free; the tests that
    // listen there never run at the same time).
    drop(std::net::TcpListener::bind(("127.0.0.1", support::webhook_port())).expect("webhook port free"));
    let sku = format!("DOWN-{}", unique());
    v.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Sent while Ferry was down"}))]).await.unwrap();
    // Several attempts are refused meanwhile (the peer retries after 0.25 s, 0.5 s, 1 s, 2 s …).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let up_at = chrono::Utc::now();

    // Ferry comes up, and fails the first attempt it sees (a 503, as while it restarts): the plugin
    // must send the same delivery again.
    let failed_once = Arc::new(AtomicBool::new(false));
    let is_ours = {
        let sku = sku.clone();
        move |d: &Delivery| d.json()["type"] == "variant.created" && d.mentions(&sku)
    };
    let mut rx = listen({
        let (failed_once, is_ours) = (failed_once.clone(), is_ours.clone());
        move |d| if is_ours(d) && !failed_once.swap(true, Ordering::SeqCst) { 503 } else { 204 }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = next_delivery(&mut rx, deadline, "for the variant created while Ferry was down", &is_ours).await;
    assert_signed(&first);
    let at = chrono::DateTime::parse_from_rfc3339(first.json()["at"].as_str().unwrap()).unwrap();
    assert!(at < up_at, "the event ({at}) happened while Ferry was down (up at {up_at})");
    let id = first.header("x-ferry-delivery").to_owned();
    let again = next_delivery(&mut rx, deadline, "sent again after a 503", |d| d.header("x-ferry-delivery") == id).await;
    assert_signed(&again);
    assert_eq!(again.body, first.body, "the same event, byte for byte");
    let ts = |d: &Delivery| d.header("x-ferry-timestamp").parse::<i64>().unwrap();
    assert!(ts(&again) >= ts(&first), "each attempt is stamped when it is sent");
}

// ---- the fixed-price promotion action -----------------------------------------------------------------

/// A channel whose prices include tax (GST 10 %, AUD, zone Australia), created once in the shared peer,
/// with the default stock location, so the connector can write stock there.
const GROSS_CHANNEL: &str = "ferry-plugin-gross";

async fn gross_channel() -> Api {
    let admin = Api::admin().await;
    let data = admin.ok("{ channels { items { id code } } zones { items { id name } } stockLocations { items { id } } }", json!({})).await;
    let channel = data["channels"]["items"].as_array().unwrap().iter().find(|c| c["code"] == GROSS_CHANNEL).map(|c| c["id"].clone());
    let channel = match channel {
        Some(id) => id,
        None => {
            let zone = data["zones"]["items"].as_array().unwrap().iter().find(|z| z["name"] == "Australia").unwrap()["id"].clone();
            let created = admin
                .ok(
                    "mutation($i:CreateChannelInput!){ createChannel(input:$i){ ... on Channel { id } ... on ErrorResult { errorCode message } } }",
                    json!({"i": {"code": GROSS_CHANNEL, "token": GROSS_CHANNEL, "defaultLanguageCode": "en", "pricesIncludeTax": true,
                                 "defaultCurrencyCode": "AUD", "availableCurrencyCodes": ["AUD"], "defaultTaxZoneId": zone, "defaultShippingZoneId": zone}}),
                )
                .await;
            created["createChannel"]["id"].clone()
        }
    };
    let location = data["stockLocations"]["items"][0]["id"].clone();
    admin
        .ok("mutation($c:ID!,$l:ID!){ assignStockLocationsToChannel(input:{channelId:$c, stockLocationIds:[$l]}){ id } }", json!({"c": channel, "l": location}))
        .await;
    admin.in_channel(GROSS_CHANNEL)
}

/// What a draft order for `customer` with `quantity` of `variant` costs, line by line, in minor units:
/// `(discountedUnitPrice, discountedUnitPriceWithTax, discountedLinePrice, discountedLinePriceWithTax)`.
async fn draft_order_line(admin: &Api, customer: &str, variant: &str, quantity: i64) -> (i64, i64, i64, i64) {
    let order = admin.ok("mutation { createDraftOrder { id } }", json!({})).await["createDraftOrder"]["id"].clone();
    admin
        .ok(
            "mutation($o:ID!,$c:ID!){ setCustomerForDraftOrder(orderId:$o, customerId:$c){ ... on Order { id } ... on ErrorResult { errorCode message } } }",
            json!({"o": order, "c": customer}),
        )
        .await;
    let data = admin
        .ok(
            "mutation($o:ID!,$v:ID!,$q:Int!){ addItemToDraftOrder(orderId:$o, input:{productVariantId:$v, quantity:$q}){
                ... on Order { lines { discountedUnitPrice discountedUnitPriceWithTax discountedLinePrice discountedLinePriceWithTax } }
                ... on ErrorResult { errorCode message } } }",
            json!({"o": order, "v": variant, "q": quantity}),
        )
        .await;
    let line = &data["addItemToDraftOrder"]["lines"][0];
    let n = |f: &str| line[f].as_i64().unwrap_or_else(|| panic!("{f} in {line}"));
    (n("discountedUnitPrice"), n("discountedUnitPriceWithTax"), n("discountedLinePrice"), n("discountedLinePriceWithTax"))
}

/// Writes through the connector (in the channel of `channel_token`, when given): a product at `list`,
/// stock, a trade customer in a group, a retail customer, and the group's price-list entry `price`.
/// Returns (variant id, trade customer id, retail customer id).
async fn b2b_setup(channel_token: Option<&str>, list: Value, price: Value) -> (String, String, String) {
    let v = connector_with(channel_token.map_or(json!({}), |t| json!({"channel_token": t})));
    let u = unique();
    let sku = format!("B2B-{u}");
    let group = format!("Trade {u}");
    let variant = written(&v.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Trade priced", "price": list}))]).await.unwrap()[0]);
    written(&v.write(Stream::Stock, vec![record(Stream::Stock, json!({"sku": sku, "on_hand": "100"}))]).await.unwrap()[0]);
    let out = v
        .write(Stream::Customers, vec![
            record(Stream::Customers, json!({"code": format!("T-{u}"), "email": format!("trade-{u}@example.test"), "first_name": "Tia", "last_name": "Trade", "group": group})),
            record(Stream::Customers, json!({"code": format!("R-{u}"), "email": format!("retail-{u}@example.test"), "first_name": "Rae", "last_name": "Retail"})),
        ])
        .await
        .unwrap();
    let entry = json!({"price_list": "TRADE", "sku": sku, "applies_to": {"kind": "customer_group", "code": group}, "price": price});
    written(&v.write(Stream::Prices, vec![record(Stream::Prices, entry)]).await.unwrap()[0]);
    (variant, written(&out[0]), written(&out[1]))
}

#[tokio::test]
async fn the_fixed_price_action_prices_trade_units_to_the_cent_where_prices_exclude_tax() {
    // The peer's default channel: prices exclude GST. 49.99 list, 37.13 trade (no percentage gives it).
    let admin = Api::admin().await;
    let (variant, trade, retail) = b2b_setup(
        None,
        json!({"amount": "49.99", "currency": "AUD", "tax_inclusive": false}),
        json!({"amount": "37.13", "currency": "AUD", "tax_inclusive": false}),
    )
    .await;
    // 37.13 net, 40.84 with GST (37.13 × 1.1 = 40.843); three units 111.39 net, whose GST Vendure rounds
    // once on the line: 111.39 × 1.1 = 122.529 → 122.53.
    assert_eq!(draft_order_line(&admin, &trade, &variant, 3).await, (3713, 4084, 11139, 12253));
    assert_eq!(draft_order_line(&admin, &retail, &variant, 3).await, (4999, 5499, 14997, 16497), "no trade price outside the group");

    // The price list quoted with GST: the connector converts 40.84 to the channel's net 37.13 and the
    // customer pays 40.84 again, to the cent.
    let (variant, trade, _) = b2b_setup(
        None,
        json!({"amount": "49.99", "currency": "AUD", "tax_inclusive": false}),
        json!({"amount": "40.84", "currency": "AUD", "tax_inclusive": true}),
    )
    .await;
    assert_eq!(draft_order_line(&admin, &trade, &variant, 1).await, (3713, 4084, 3713, 4084));
}

#[tokio::test]
async fn the_fixed_price_action_prices_trade_units_to_the_cent_where_prices_include_tax() {
    let admin = gross_channel().await;
    // 54.99 list with GST, 40.85 trade with GST: the trade customer pays exactly 40.85 a unit.
    let (variant, trade, retail) = b2b_setup(
        Some(GROSS_CHANNEL),
        json!({"amount": "54.99", "currency": "AUD", "tax_inclusive": true}),
        json!({"amount": "40.85", "currency": "AUD", "tax_inclusive": true}),
    )
    .await;
    // 40.85 / 1.1 = 37.136… net; three units 122.55 with GST.
    assert_eq!(draft_order_line(&admin, &trade, &variant, 3).await, (3714, 4085, 11141, 12255));
    assert_eq!(draft_order_line(&admin, &retail, &variant, 3).await, (4999, 5499, 14997, 16497), "no trade price outside the group");
}

/// The plugin's own unit tests (integrations/vendure-plugin/test: backoff, Retry-After, retries and
/// give-up against a local receiver, the queue bound, the fixed-price arithmetic, option checks), run by
/// `node --test` on the package the peer installed from its tarball.
#[test]
fn the_plugins_unit_tests_pass_on_the_installed_package() {
    support::vendure();
    let installed = ferry_testkit::peers_dir().join("vendure/node_modules/@ferry/vendure-plugin");
    assert!(installed.join("dist/index.js").is_file(), "the peer installed no plugin at {} (a peer started before the plugin existed? down.sh and up.sh it)", installed.display());
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integrations/vendure-plugin/test/plugin.test.js");
    let out = std::process::Command::new("node").arg("--test").arg(&tests).env("FERRY_VENDURE_PLUGIN", &installed).output().expect("node runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    let count = |what: &str| report.lines().find_map(|l| l.strip_prefix(what).and_then(|n| n.trim().parse::<u32>().ok()));
    assert_eq!(count("# fail "), Some(0), "{report}");
    assert!(count("# pass ").is_some_and(|n| n >= 10), "{report}");
}

/// The plugin ships with Ferry: same version, and it declares the Vendure range the connector is tested in.
#[test]
fn the_plugin_is_versioned_with_ferry_and_declares_vendure_3() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integrations/vendure-plugin");
    let package: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    assert_eq!(package["name"], "@ferry/vendure-plugin");
    assert_eq!(package["version"], env!("CARGO_PKG_VERSION"), "integrations/vendure-plugin/package.json follows the workspace version");
    assert_eq!(package["peerDependencies"]["@vendure/core"], "^3.0.0");
    assert_eq!(package["scripts"]["prepack"], "npm run build", "npm pack compiles the TypeScript");
    let plugin = std::fs::read_to_string(dir.join("src/plugin.ts")).unwrap();
    assert!(plugin.contains("compatibility: '^3.0.0'"), "Vendure checks the range at start");
}
