//! The whole loop, end to end, through the ENGINE (config → workspace → `sync`), against the live Tryton
//! (127.0.0.1:18000) and the live Vendure (127.0.0.1:18300) of the other live tests:
//!
//! - products, prices, stock and customers flow Tryton → Vendure;
//! - a price changed in Tryton reaches the shop on the next run, nothing else is rewritten;
//! - a web order placed through Vendure's Shop API becomes one confirmed Tryton sale, exactly once (synced
//!   twice, and again from an empty state store as after a crash between Tryton's commit and Ferry's);
//! - Tryton's shipment of it becomes a Vendure fulfilment with its tracking code;
//! - the stock it consumed is what the shop shows afterwards.
//!
//! Both servers are shared with other tests and never reset: every record here carries a random suffix,
//! each flow's mapping `filter` keeps only this test's records, and the Tryton-sourced flows start from a
//! checkpoint at the test's start (an incremental run, as after a deployment's initial load) instead of
//! reading the thousands of records other tests and benchmarks left behind.
#![cfg(all(feature = "tryton", feature = "vendure"))]

mod support;

use chrono::{DateTime, Utc};
use ferry_connectors::tryton::Tryton;
use ferry_engine::store::BatchCommit;
use ferry_engine::{Config, RunOptions, RunReport, Workspace, holder_id, run::NoProgress};
use serde_json::{Value, json};
use std::path::Path;
use support::{Api, Buyer, Setup, dec, none, place_order, tryton, uniq};

/// The example config (examples/tryton-vendure/ferry.toml) with absolute URLs, the test peers'
/// credentials, and filters that keep only records whose SKU starts with `prefix` (customers: whose
/// name starts with `customer`; prices: of the price list `list`).
fn config(state: &Path, prefix: &str, customer: &str, list: &str) -> Config {
    let peer = support::vendure();
    let text = format!(
        r#"
[state]
path = "{state}"

[connections.erp]
type = "tryton"
url = "http://127.0.0.1:{tryton_port}"
database = "tryton"
username = "admin"
password = "{tryton_password}"
warehouse = "WH"
order_state = "confirmed"
b2c_party = "Web sales (B2C)"
freight_product = "FREIGHT"
discount_product = "DISCOUNT"
[connections.erp.customers]
by_code = true
by_email = true
create_customers = false

[connections.shop]
type = "vendure"
url = "{shop}"
username = "{shop_user}"
password = "{shop_password}"
stock_locations = {{ WH = "Default Stock Location" }}
stock_quantity = "available"

{flows}"#,
        state = state.display(),
        tryton_port = support::port(),
        tryton_password = support::PASSWORD,
        shop = peer.base_url,
        shop_user = peer.username,
        shop_password = peer.password,
        flows = support::loop_flows(prefix, customer, list, r#"compute = { tax_class = '{"Goods": "GST"}[.tax_class // ""] // null' }"#),
    );
    Config::parse(&text, state.parent().unwrap().to_owned()).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

/// One test's view of the loop: its own suffix, state store and workspace.
struct Loop {
    u: String,
    prefix: String,
    customer: String,
    list: String,
    dir: tempfile::TempDir,
    ws: Workspace,
    since: DateTime<Utc>,
    /// A connector used to set up data in Tryton (not the workspace's).
    erp: Tryton,
}

impl Loop {
    async fn new() -> Loop {
        let erp = tryton(json!({}));
        support::vendure();
        let u = uniq();
        let since = Utc::now() - chrono::Duration::seconds(1);
        let dir = tempfile::tempdir().unwrap();
        let (prefix, customer, list) = (format!("LOOP-{u}-"), format!("Loop customer {u}"), format!("Loop list {u}"));
        let ws = Loop::workspace(&dir.path().join("state.db"), &prefix, &customer, &list, since).await;
        Loop { u, prefix, customer, list, dir, ws, since, erp }
    }

    /// A workspace on the state store at `path`; the Tryton-sourced flows start at `since`.
    async fn workspace(path: &Path, prefix: &str, customer: &str, list: &str, since: DateTime<Utc>) -> Workspace {
        let ws = Workspace::open(config(path, prefix, customer, list), ferry_connectors::registry()).await.unwrap();
        for flow in support::LOOP_ERP_FLOWS {
            let store = ws.store();
            let run = store.begin_run(flow, "seed").await.unwrap();
            let commit = BatchCommit { checkpoint: Some(json!({"since": since})), ..Default::default() };
            store.commit_batch(flow, run, commit).await.unwrap();
            store.finish_run(run, "ok", None).await.unwrap();
        }
        ws
    }

    fn sku(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs one flow incrementally (or for `keys` only); the run must complete.
    async fn sync_in(ws: &Workspace, flow: &str, keys: Option<Vec<String>>) -> RunReport {
        let options = RunOptions { holder: holder_id(), keys, ..Default::default() };
        let report = ws.sync(flow, &options, &NoProgress).await.unwrap_or_else(|e| panic!("sync {flow}: {e}"));
        assert!(report.aborted.is_none(), "sync {flow} aborted: {report:#?}");
        assert!(report.failures.is_empty(), "sync {flow}: failures {:#?}", report.failures);
        report
    }

    async fn sync(&self, flow: &str) -> RunReport {
        Loop::sync_in(&self.ws, flow, None).await
    }

    fn setup(&self) -> Setup<'_> {
        Setup(&self.erp)
    }
}

/// Vendure variants whose SKU contains `part`, by SKU.
async fn variants(admin: &Api, part: &str) -> std::collections::HashMap<String, Value> {
    let data = admin
        .ok(
            "query($s:String!){ productVariants(options:{filter:{sku:{contains:$s}}, take:100}){ items { id sku name price enabled stockOnHand stockAllocated
               stockLevels { stockLocation { name } stockOnHand stockAllocated } product { id name } } } }",
            json!({"s": part}),
        )
        .await;
    data["productVariants"]["items"].as_array().unwrap().iter().map(|v| (v["sku"].as_str().unwrap().to_owned(), v.clone())).collect()
}

/// stockOnHand / stockAllocated of a variant at Vendure's default location (where `WH` is mapped).
fn level(variant: &Value) -> (i64, i64) {
    let l = variant["stockLevels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["stockLocation"]["name"] == "Default Stock Location")
        .unwrap_or_else(|| panic!("no level at the default location: {variant}"));
    (l["stockOnHand"].as_i64().unwrap(), l["stockAllocated"].as_i64().unwrap())
}

#[tokio::test]
async fn catalogue_customers_prices_and_stock_flow_from_tryton_to_vendure_and_a_price_change_is_the_only_write() {
    let lp = Loop::new().await;
    let s = lp.setup();
    let rpc = lp.erp.rpc();
    let u = &lp.u;

    // ---- the ERP: a tee in two sizes (one template, two variants) and a mug, with stock
    let tee = s.product(&lp.sku("TEE"), &format!("Loop tee {u}"), "29.90", "11", &[], &["-S", "-M"]).await;
    let mug = s.product(&lp.sku("MUG"), &format!("Loop mug {u}"), "12.50", "4", &[], &[""]).await[0];
    s.stock(tee[0], 10).await;
    s.stock(mug, 5).await;
    let (tee_s, tee_m, mug_sku) = (lp.sku("TEE-S"), lp.sku("TEE-M"), lp.sku("MUG"));
    // a B2B customer with its own price list: 10 % off the small tee
    let au = s.id("country.country", json!([["code", "=", "AU"]])).await;
    let email = format!("loop-{u}@example.test").to_lowercase();
    let party = rpc
        .create(
            "party.party",
            vec![json!({
                "name": lp.customer, "code": format!("LOOPC-{u}"),
                "contact_mechanisms": [["create", [{"type": "email", "value": email}]]],
                "addresses": [["create", [{"street": "3 Loop Rd", "city": "Newcastle", "postal_code": "2300", "country": au, "invoice": true, "delivery": true}]]],
            })],
            &none(),
        )
        .await
        .unwrap()[0];
    let code = s.read_one("party.party", party, &["code"]).await["code"].as_str().unwrap().to_owned();
    let list = rpc
        .create(
            "product.price_list",
            vec![json!({"name": lp.list, "price": "list_price", "lines": [["create", [{"product": tee[0], "formula": "unit_price * Decimal('0.9')"}]]]})],
            &none(),
        )
        .await
        .unwrap()[0];
    rpc.write("party.party", &[party], json!({"sale_price_list": list}), &none()).await.unwrap();

    // ---- ERP → shop, each flow once
    let products = lp.sync("products").await;
    assert_eq!((products.counts.created, products.counts.updated), (3, 0), "{products:#?}");
    let customers = lp.sync("customers").await;
    assert_eq!(customers.counts.created + customers.counts.updated, 1, "{customers:#?}");
    // A new or changed price list re-prices every product, so its incremental run would read all of the
    // shared server's ~10,000 products: this run asks for the test's SKU only (a targeted sync).
    let prices = Loop::sync_in(&lp.ws, "prices", Some(vec![tee_s.clone()])).await;
    assert_eq!(prices.counts.created + prices.counts.updated, 1, "{prices:#?}");
    let stock = lp.sync("stock").await;
    assert!(stock.counts.read >= 3 && stock.counts.failed == 0, "{stock:#?}");

    // ---- what the shop has now
    let admin = Api::admin().await;
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!(vs.len(), 3, "{vs:#?}");
    assert_eq!((vs[&tee_s]["price"].as_i64(), vs[&tee_m]["price"].as_i64(), vs[&mug_sku]["price"].as_i64()), (Some(2990), Some(2990), Some(1250)));
    assert!(vs.values().all(|v| v["enabled"] == true));
    assert_eq!(vs[&tee_s]["product"]["id"], vs[&tee_m]["product"]["id"], "two variants of one Vendure product");
    assert_eq!(vs[&tee_s]["product"]["name"], format!("Loop tee {u}"));
    assert_eq!((level(&vs[&tee_s]).0, level(&vs[&tee_m]).0, level(&vs[&mug_sku]).0), (10, 0, 5));

    let data = admin
        .ok(
            "query($e:String!){ customers(options:{filter:{emailAddress:{eq:$e}}}){ items { id firstName lastName customFields { ferryCode company }
               addresses { streetLine1 city postalCode country { code } } } } }",
            json!({"e": email}),
        )
        .await;
    let c = &data["customers"]["items"][0];
    assert_eq!(c["customFields"]["ferryCode"], code.as_str(), "{data}");
    assert_eq!(c["customFields"]["company"], lp.customer.as_str());
    assert_eq!((c["addresses"][0]["streetLine1"].as_str(), c["addresses"][0]["postalCode"].as_str()), (Some("3 Loop Rd"), Some("2300")));

    let promo = format!("ferry:{}/{tee_s}/1", lp.list);
    let data = admin.ok("query($n:String!){ promotions(options:{filter:{name:{eq:$n}}}){ items { name enabled conditions { code args { name value } } actions { code args { name value } } } } }", json!({"n": promo})).await;
    let p = &data["promotions"]["items"][0];
    assert_eq!(p["enabled"], true, "{data}");
    assert_eq!(p["conditions"][0]["code"], "customer_group");
    assert_eq!(p["actions"][0]["code"], "ferry_variant_fixed_price");
    // the customer's price: 29.90 × 0.9 = 26.91, net like the channel's prices
    let args: Vec<&Value> = p["actions"][0]["args"].as_array().unwrap().iter().collect();
    assert!(args.iter().any(|a| a["name"] == "variantId" && a["value"] == vs[&tee_s]["id"]), "{p}");
    assert!(args.iter().any(|a| a["value"] == "2691"), "{p}");

    // ---- the ERP changes one price: the next run writes that one record and nothing else
    let mug_template = s.read_one("product.product", mug, &["template"]).await["template"].as_i64().unwrap();
    rpc.write("product.template", &[mug_template], json!({"list_price": dec("13.90")}), &none()).await.unwrap();
    let next = lp.sync("products").await;
    assert_eq!((next.counts.updated, next.counts.created, next.counts.failed, next.counts.retired), (1, 0, 0, 0), "{next:#?}");
    assert_eq!(next.counts.read, next.counts.updated + next.counts.unchanged + next.counts.skipped, "{next:#?}");
    let written = lp.ws.store().run_records(next.run_id.unwrap()).await.unwrap();
    assert_eq!(written.iter().map(|r| (r.key.as_str(), r.outcome)).collect::<Vec<_>>(), vec![(mug_sku.as_str(), "updated")], "only the mug was written");
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!((vs[&tee_s]["price"].as_i64(), vs[&tee_m]["price"].as_i64(), vs[&mug_sku]["price"].as_i64()), (Some(2990), Some(2990), Some(1390)));
    // the same three SKUs asked for explicitly: all unchanged, no write
    let again = Loop::sync_in(&lp.ws, "products", Some(vec![tee_s.clone(), tee_m.clone(), mug_sku.clone()])).await;
    assert_eq!((again.counts.read, again.counts.unchanged, again.counts.written()), (3, 3, 0), "{again:#?}");
}

#[tokio::test]
async fn a_web_order_becomes_one_tryton_sale_whose_shipment_and_stock_come_back_to_the_shop() {
    let lp = Loop::new().await;
    let s = lp.setup();
    let rpc = lp.erp.rpc();
    let u = &lp.u;
    let (a, b) = (lp.sku("A"), lp.sku("B"));
    let pa = s.product(&a, &format!("Loop spade {u}"), "20", "8", &[], &[""]).await[0];
    let pb = s.product(&b, &format!("Loop rake {u}"), "15", "6", &[], &[""]).await[0];
    s.stock(pa, 10).await;
    s.stock(pb, 5).await;
    lp.sync("products").await;
    lp.sync("stock").await;
    let admin = Api::admin().await;
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!((level(&vs[&a]), level(&vs[&b])), ((10, 0), (5, 0)));

    // ---- a guest buys 2 spades and a rake online with a 10 % coupon (shipping: standard, 9.95 + GST)
    let coupon = format!("LOOP{u}").to_uppercase();
    admin
        .ok(
            "mutation($i:CreatePromotionInput!){ createPromotion(input:$i){ ... on Promotion { id } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"enabled": true, "couponCode": coupon, "conditions": [],
                   "actions": [{"code": "order_percentage_discount", "arguments": [{"name": "discount", "value": "10"}]}],
                   "translations": [{"languageCode": "en", "name": format!("Loop ten off {u}")}]}}),
        )
        .await;
    let email = format!("guest-{u}@example.test").to_lowercase();
    let number = place_order(
        &[(vs[&a]["id"].as_str().unwrap().to_owned(), 2), (vs[&b]["id"].as_str().unwrap().to_owned(), 1)],
        Buyer::Guest { email: &email, first_name: "Gus", last_name: "Guest" },
        Some(&coupon),
    )
    .await;
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!((level(&vs[&a]), level(&vs[&b])), ((10, 2), (5, 1)), "Vendure allocates the sold stock");

    // ---- orders: shop → ERP, a confirmed sale for the B2C party with freight and discount lines
    let first = lp.sync("orders").await;
    assert_eq!((first.counts.created, first.counts.failed), (1, 0), "{first:#?}");
    let sales = |number: String| async move {
        rpc.search_read("sale.sale", json!([["web_id", "=", number]]), 0, None, Value::Null, &["state", "party.name", "reference", "lines", "total_amount"], &none())
            .await
            .unwrap()
    };
    let found = sales(number.clone()).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let sale = &found[0];
    assert!(["confirmed", "processing"].contains(&sale["state"].as_str().unwrap()), "{sale:?}");
    assert_eq!(sale["party."]["name"], "Web sales (B2C)", "a guest's order goes to the B2C party");
    assert_eq!(sale["reference"], number.as_str());
    let line_ids: Vec<i64> = sale["lines"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let lines = rpc.read("sale.line", &line_ids, &["product.code", "quantity", "unit_price"], &none()).await.unwrap();
    let qty = |code: &str| lines.iter().filter(|l| l["product."]["code"] == code).map(|l| l["quantity"].as_f64().unwrap()).sum::<f64>();
    assert_eq!((qty(&a), qty(&b), qty("FREIGHT")), (2.0, 1.0, 1.0), "{lines:#?}");
    assert!(lines.iter().any(|l| l["product."]["code"] == "DISCOUNT"), "the coupon is a discount line: {lines:#?}");
    // Tryton's total equals what the shopper paid
    let paid = admin.ok("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { totalWithTax } } }", json!({"c": number})).await;
    let paid_cents = paid["orders"]["items"][0]["totalWithTax"].as_i64().unwrap();
    let tryton_total: rust_decimal::Decimal = sale["total_amount"]["decimal"].as_str().unwrap().parse().unwrap();
    assert_eq!(tryton_total * rust_decimal::Decimal::from(100), rust_decimal::Decimal::from(paid_cents), "{sale:?}");

    // Tryton's forecast now counts the sale; the shop keeps showing 8 spades and 4 rakes for sale (its
    // own allocation is not subtracted a second time)
    lp.sync("stock").await;
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!((level(&vs[&a]), level(&vs[&b])), ((10, 2), (5, 1)), "saleable = Tryton's available");

    // ---- exactly once: synced again, and from an empty state store (a crash after Tryton committed the
    // sale and before Ferry committed its cross-reference loses exactly that state)
    let second = lp.sync("orders").await;
    assert_eq!((second.counts.created, second.counts.failed), (0, 0), "{second:#?}");
    let crashed = Loop::workspace(&lp.dir.path().join("after-crash.db"), &lp.prefix, &lp.customer, &lp.list, lp.since).await;
    let healed = Loop::sync_in(&crashed, "orders", None).await;
    assert_eq!((healed.counts.created, healed.counts.resumed, healed.counts.failed), (0, 1, 0), "found by key, resumed, not created again: {healed:#?}");
    assert_eq!(sales(number.clone()).await.len(), 1, "still one sale for {number}");
    let xref = crashed.store().xref_find(&number).await.unwrap();
    assert_eq!(xref.len(), 1, "the healed run recorded the cross-reference: {xref:?}");

    // ---- the warehouse ships it in Tryton; the shipment comes back as a fulfilment with its tracking code
    let tracking = format!("TRK{u}");
    let sale_id = sale["id"].as_i64().unwrap();
    let (_, shipment) = s.ship_sale(sale_id, &tracking).await;
    // A stock sync between Tryton's shipping and the fulfilment reaching the shop (schedules run flows
    // independently): the shop's saleable stock stays right...
    lp.sync("stock").await;
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!((level(&vs[&a]), level(&vs[&b])), ((10, 2), (5, 1)), "saleable = Tryton's available");
    let shipped = lp.sync("shipments").await;
    assert_eq!((shipped.counts.created, shipped.counts.failed), (1, 0), "{shipped:#?}");
    let data = admin
        .ok(
            "query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { state fulfillments { state method trackingCode customFields { ferryShipmentNumber } } } } }",
            json!({"c": number}),
        )
        .await;
    let order = &data["orders"]["items"][0];
    assert_eq!(order["state"], "Shipped", "{data}");
    let f = &order["fulfillments"][0];
    assert_eq!((f["state"].as_str(), f["trackingCode"].as_str()), (Some("Shipped"), Some(tracking.as_str())), "{data}");
    assert_eq!(f["customFields"]["ferryShipmentNumber"], shipment.as_str());
    assert_eq!(f["method"], "Courier Co");
    let again = lp.sync("shipments").await;
    assert_eq!(again.counts.created, 0, "{again:#?}");

    // ---- ...and after the fulfilment took the shipped units off in Vendure, the stock sold online, as
    // Tryton now counts it, is what the shop shows (not taken off twice)
    let stock = lp.sync("stock").await;
    assert_eq!(stock.counts.failed, 0, "{stock:#?}");
    let wh = s.id("stock.location", json!([["code", "=", "WH"]])).await;
    let ctx = serde_json::Map::from_iter([("locations".to_owned(), json!([wh]))]);
    let quantities = rpc.read("product.product", &[pa, pb], &["quantity"], &ctx).await.unwrap();
    let on_hand = |p: i64| quantities.iter().find(|r| r["id"] == p).unwrap()["quantity"].as_f64().unwrap() as i64;
    assert_eq!((on_hand(pa), on_hand(pb)), (8, 4), "Tryton shipped 2 + 1");
    let vs = variants(&admin, &lp.prefix).await;
    assert_eq!((level(&vs[&a]), level(&vs[&b])), ((8, 0), (4, 0)), "the shop shows Tryton's stock, nothing left allocated");
}
