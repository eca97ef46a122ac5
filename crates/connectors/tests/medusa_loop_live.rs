//! The whole loop Tryton ⇄ Medusa through the ENGINE (config → workspace → `sync`), against the live
//! Tryton (127.0.0.1:18000) and the live Medusa 2 (127.0.0.1:18500) of the other live tests:
//!
//! - products, prices, stock and customers flow Tryton → Medusa; a price changed in Tryton is the only
//!   write of the next run;
//! - an order placed through Medusa's Store API becomes one Tryton sale, exactly once (synced twice, and
//!   again from an empty state store as after a crash);
//! - Tryton's shipment of it becomes a Medusa fulfilment, shipped, with its tracking number.
//!
//! Both servers are shared and never reset: every record carries a random suffix, each flow's mapping
//! `filter` keeps only this test's records, and the Tryton-sourced flows start from a checkpoint at the
//! test's start (as in loop_live.rs).
#![cfg(all(feature = "tryton", feature = "medusa"))]

mod support;

use chrono::{DateTime, Utc};
use ferry_connectors::tryton::Tryton;
use ferry_engine::store::BatchCommit;
use ferry_engine::{Config, RunOptions, RunReport, Workspace, holder_id, run::NoProgress};
use serde_json::{Value, json};
use std::path::Path;
use support::{MedusaAdmin, Setup, dec, medusa, none, place_medusa_order, tryton, uniq};

/// examples/tryton-medusa/ferry.toml with the test peers' addresses and credentials, and filters that
/// keep only this test's records.
fn config(state: &Path, prefix: &str, customer: &str, list: &str) -> Config {
    let peer = medusa();
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
type = "medusa"
base_url = "{shop}"
api_key = "{key}"
sales_channel = "Ferry Webshop"
stock_locations = {{ WH = "Sydney warehouse" }}
stock_quantity = "available"

{flows}"#,
        state = state.display(),
        tryton_port = support::port(),
        tryton_password = support::PASSWORD,
        shop = peer.base_url,
        key = peer.api_key,
        flows = support::loop_flows(prefix, customer, list, ""),
    );
    Config::parse(&text, state.parent().unwrap().to_owned()).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

struct Loop {
    u: String,
    prefix: String,
    customer: String,
    list: String,
    dir: tempfile::TempDir,
    ws: Workspace,
    since: DateTime<Utc>,
    erp: Tryton,
}

impl Loop {
    async fn new() -> Loop {
        let erp = tryton(json!({}));
        medusa();
        let u = uniq();
        let since = Utc::now() - chrono::Duration::seconds(1);
        let dir = tempfile::tempdir().unwrap();
        let (prefix, customer, list) = (format!("MLOOP-{u}-"), format!("Medusa loop customer {u}"), format!("Medusa loop list {u}"));
        let ws = Loop::workspace(&dir.path().join("state.db"), &prefix, &customer, &list, since).await;
        Loop { u, prefix, customer, list, dir, ws, since, erp }
    }

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

/// Medusa variants of the test (SKU starting with `prefix`) with their AUD price and Sydney stock.
async fn variants(admin: &MedusaAdmin, skus: &[&str]) -> std::collections::HashMap<String, (Value, Value, String)> {
    let mut out = std::collections::HashMap::new();
    for sku in skus {
        let v = admin.get(&format!("/admin/product-variants?sku={sku}&fields=id,sku,product_id,*prices")).await;
        let Some(v) = v["variants"].as_array().and_then(|l| l.first()).cloned() else { continue };
        let price = v["prices"].as_array().unwrap().iter().find(|p| p["currency_code"] == "aud").map(|p| p["amount"].clone()).unwrap_or(Value::Null);
        let item = admin.get(&format!("/admin/inventory-items?sku={sku}&fields=id,*location_levels")).await;
        let stocked = item["inventory_items"][0]["location_levels"][0]["stocked_quantity"].clone();
        out.insert(sku.to_string(), (price, stocked, v["product_id"].as_str().unwrap_or_default().to_owned()));
    }
    out
}

#[tokio::test]
async fn catalogue_customers_prices_and_stock_flow_from_tryton_to_medusa_and_a_price_change_is_the_only_write() {
    let lp = Loop::new().await;
    let s = lp.setup();
    let rpc = lp.erp.rpc();
    let u = &lp.u;
    let tee = s.product(&lp.sku("TEE"), &format!("Loop tee {u}"), "29.90", "11", &[], &["-S", "-M"]).await;
    let mug = s.product(&lp.sku("MUG"), &format!("Loop mug {u}"), "12.50", "4", &[], &[""]).await[0];
    s.stock(tee[0], 10).await;
    s.stock(mug, 5).await;
    let (tee_s, tee_m, mug_sku) = (lp.sku("TEE-S"), lp.sku("TEE-M"), lp.sku("MUG"));
    let au = s.id("country.country", json!([["code", "=", "AU"]])).await;
    let email = format!("mloop-{u}@example.test").to_lowercase();
    let party = rpc
        .create(
            "party.party",
            vec![json!({
                "name": lp.customer, "code": format!("MLOOPC-{u}"),
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

    let products = lp.sync("products").await;
    assert_eq!((products.counts.created, products.counts.updated), (3, 0), "{products:#?}");
    let customers = lp.sync("customers").await;
    assert_eq!(customers.counts.created + customers.counts.updated, 1, "{customers:#?}");
    let prices = Loop::sync_in(&lp.ws, "prices", Some(vec![tee_s.clone()])).await;
    assert_eq!(prices.counts.created + prices.counts.updated, 1, "{prices:#?}");
    let stock = lp.sync("stock").await;
    assert!(stock.counts.read >= 3 && stock.counts.failed == 0, "{stock:#?}");

    let admin = MedusaAdmin::new();
    let vs = variants(&admin, &[&tee_s, &tee_m, &mug_sku]).await;
    assert_eq!(vs.len(), 3, "{vs:#?}");
    assert_eq!((&vs[&tee_s].0, &vs[&tee_m].0, &vs[&mug_sku].0), (&json!(29.9), &json!(29.9), &json!(12.5)), "major units");
    assert_eq!(vs[&tee_s].2, vs[&tee_m].2, "two variants of one Medusa product");
    assert_eq!((&vs[&tee_s].1, &vs[&tee_m].1, &vs[&mug_sku].1), (&json!(10), &json!(0), &json!(5)));

    let found = admin.get(&format!("/admin/customers?email={email}&fields=id,company_name,metadata,*addresses")).await;
    let c = &found["customers"][0];
    assert_eq!(c["metadata"]["ferry_code"], code.as_str(), "{found}");
    assert_eq!(c["addresses"][0]["postal_code"], "2300");

    let pl = admin.get(&format!("/admin/price-lists?q=ferry:{}&fields=id,title,prices.amount,prices.min_quantity,prices.price_set.variant.id", lp.list)).await;
    let pl = &pl["price_lists"][0];
    assert!(pl["title"].as_str().unwrap().starts_with(&format!("ferry:{}", lp.list)), "{pl}");
    assert_eq!(pl["prices"][0]["amount"], json!(26.91), "29.90 × 0.9: {pl}");

    // ---- the ERP changes one price: the next run writes that record and nothing else
    let mug_template = s.read_one("product.product", mug, &["template"]).await["template"].as_i64().unwrap();
    rpc.write("product.template", &[mug_template], json!({"list_price": dec("13.90")}), &none()).await.unwrap();
    let next = lp.sync("products").await;
    assert_eq!((next.counts.updated, next.counts.created, next.counts.failed, next.counts.retired), (1, 0, 0, 0), "{next:#?}");
    let written = lp.ws.store().run_records(next.run_id.unwrap()).await.unwrap();
    assert_eq!(written.iter().map(|r| (r.key.as_str(), r.outcome)).collect::<Vec<_>>(), vec![(mug_sku.as_str(), "updated")], "only the mug was written");
    let vs = variants(&admin, &[&tee_s, &mug_sku]).await;
    assert_eq!((&vs[&tee_s].0, &vs[&mug_sku].0), (&json!(29.9), &json!(13.9)));
    let again = Loop::sync_in(&lp.ws, "products", Some(vec![tee_s.clone(), tee_m.clone(), mug_sku.clone()])).await;
    assert_eq!((again.counts.read, again.counts.unchanged, again.counts.written()), (3, 3, 0), "{again:#?}");
}

#[tokio::test]
async fn a_medusa_order_becomes_one_tryton_sale_whose_shipment_comes_back_as_a_fulfilment_with_tracking() {
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

    let email = format!("guest-{u}@example.test").to_lowercase();
    let placed = place_medusa_order(&[(&a, 2), (&b, 1)], &email);
    let id = placed["id"].as_str().unwrap().to_owned();

    let first = lp.sync("orders").await;
    assert_eq!((first.counts.created, first.counts.failed), (1, 0), "{first:#?}");
    let sales = |number: String| async move {
        rpc.search_read("sale.sale", json!([["web_id", "=", number]]), 0, None, Value::Null, &["state", "party.name", "reference", "lines", "total_amount"], &none())
            .await
            .unwrap()
    };
    let found = sales(id.clone()).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let sale = &found[0];
    assert!(["confirmed", "processing"].contains(&sale["state"].as_str().unwrap()), "{sale:?}");
    assert_eq!(sale["party."]["name"], "Web sales (B2C)");
    let line_ids: Vec<i64> = sale["lines"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let lines = rpc.read("sale.line", &line_ids, &["product.code", "quantity", "unit_price"], &none()).await.unwrap();
    let qty = |code: &str| lines.iter().filter(|l| l["product."]["code"] == code).map(|l| l["quantity"].as_f64().unwrap()).sum::<f64>();
    assert_eq!((qty(&a), qty(&b), qty("FREIGHT")), (2.0, 1.0, 1.0), "{lines:#?}");
    // 2 × 20 + 15 + 9.95 shipping, GST 10 %: Medusa's 70.345 is 70.35 to the cent (Tryton rounds its taxes per line).
    let tryton_total: rust_decimal::Decimal = sale["total_amount"]["decimal"].as_str().unwrap().parse().unwrap();
    let medusa_total = rust_decimal::Decimal::from_str_exact(&placed["total"].to_string()).unwrap();
    assert!((tryton_total - medusa_total).abs() <= rust_decimal::Decimal::new(1, 2), "Tryton {tryton_total} vs Medusa {medusa_total}");

    // ---- exactly once: synced again, and from an empty state store
    let second = lp.sync("orders").await;
    assert_eq!((second.counts.created, second.counts.failed), (0, 0), "{second:#?}");
    let crashed = Loop::workspace(&lp.dir.path().join("after-crash.db"), &lp.prefix, &lp.customer, &lp.list, lp.since).await;
    let healed = Loop::sync_in(&crashed, "orders", None).await;
    assert_eq!((healed.counts.created, healed.counts.failed), (0, 0), "found by key, not created again: {healed:#?}");
    assert_eq!(sales(id.clone()).await.len(), 1, "still one sale for {id}");

    // ---- shipped in Tryton → a Medusa fulfilment, shipped, with the tracking number; once
    let tracking = format!("TRK{u}");
    let (_, shipment) = s.ship_sale(sale["id"].as_i64().unwrap(), &tracking).await;
    let shipped = lp.sync("shipments").await;
    assert_eq!((shipped.counts.created, shipped.counts.failed), (1, 0), "{shipped:#?}");
    let admin = MedusaAdmin::new();
    let o = admin.get(&format!("/admin/orders/{id}?fields=id,fulfillment_status,*fulfillments,*fulfillments.labels")).await;
    let fulfillments = o["order"]["fulfillments"].as_array().unwrap();
    assert_eq!(fulfillments.len(), 1, "{o}");
    assert_eq!(fulfillments[0]["metadata"]["ferry_shipment"], shipment.as_str());
    assert_eq!(fulfillments[0]["labels"][0]["tracking_number"], tracking.as_str());
    assert_eq!(o["order"]["fulfillment_status"], "shipped");
    let again = lp.sync("shipments").await;
    assert_eq!(again.counts.created, 0, "{again:#?}");
    let o = admin.get(&format!("/admin/orders/{id}?fields=id,*fulfillments")).await;
    assert_eq!(o["order"]["fulfillments"].as_array().unwrap().len(), 1, "still one fulfilment");
}
