//! The Medusa connector against a real Medusa 2.21.2 (scripts/peers/medusa/up.sh, port 18500).
//! Every test makes its own uniquely named data; the server is shared and never reset.
#![cfg(feature = "medusa")]

mod support;

use ferry_connectors::medusa::{Medusa, Options};
use ferry_engine::{Connector, ReadItem, ReadRequest, RetireMode, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Order, Record, Stream};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::{MedusaAdmin, medusa, place_medusa_order, unique};

fn connector() -> Medusa {
    connector_with(json!({}))
}

fn connector_with(extra: Value) -> Medusa {
    let peer = medusa();
    let mut options = json!({"base_url": peer.base_url, "api_key": peer.api_key, "sales_channel": "Ferry Webshop", "stock_locations": {"SYD": "Sydney warehouse"}});
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    Medusa::new(serde_json::from_value::<Options>(options).unwrap(), "test").unwrap()
}

fn record(stream: Stream, v: Value) -> WriteRecord {
    let record = Record::parse(stream, v, "test").unwrap();
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

fn by_key(outcomes: Vec<WriteOutcome>) -> HashMap<String, WriteOutcome> {
    outcomes.into_iter().map(|o| (o.key.clone(), o)).collect()
}

fn action(o: &WriteOutcome) -> WriteAction {
    match &o.result {
        Ok(w) => w.action,
        Err(f) => panic!("{} failed: {f:?}", o.key),
    }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn product(sku: &str, group: &str, color: &str, price: &str) -> Value {
    json!({
        "sku": sku, "group": group, "name": format!("Tee {color}"), "description": "Organic cotton tee",
        "custom": {"group_name": format!("Tee {group}"), "fabric": "cotton"},
        "brand": "Acme",
        "options": {"Color": color, "Size": "M"},
        "categories": [["Clothing", format!("Tees {group}")]],
        "media": [{"kind": "image", "url": format!("https://cdn.example.test/{sku}.jpg")}],
        "barcode": format!("BC-{sku}"),
        "weight": {"value": "0.2", "unit": "kg"},
        "price": {"amount": price, "currency": "AUD", "tax_inclusive": false}
    })
}

/// Writes a simple product (no options) with stock at Sydney, so the Store API can sell it.
async fn sellable(m: &Medusa, sku: &str, price: &str, stock: i64) {
    let p = json!({"sku": sku, "name": format!("Mug {sku}"), "price": {"amount": price, "currency": "AUD", "tax_inclusive": false}});
    let out = m.write(Stream::Products, vec![record(Stream::Products, p)]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Created);
    let s = json!({"sku": sku, "location": "SYD", "on_hand": stock.to_string()});
    let out = m.write(Stream::Stock, vec![record(Stream::Stock, s)]).await.unwrap();
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
}

async fn read_orders(m: &Medusa, keys: Option<Vec<String>>) -> Vec<ReadItem> {
    let request = ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys };
    m.read(request).map(|r| r.unwrap()).collect().await
}

fn order_of(items: &[ReadItem], id: &str) -> Order {
    let data = items
        .iter()
        .find_map(|i| match i {
            ReadItem::Record(r) if r.data["number"] == id => Some(r.data.clone()),
            ReadItem::Invalid { key: Some(k), message, field, .. } if k == id => panic!("order {id} invalid at {field}: {message}"),
            _ => None,
        })
        .unwrap_or_else(|| panic!("order {id} not read"));
    match Record::parse(Stream::Orders, data, "test").unwrap() {
        Record::Order(o) => o,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn check_reports_the_region_and_its_money_settings() {
    let report = connector().check().await.unwrap();
    let text = report.details.join("\n");
    assert!(text.contains("region Australia"), "{text}");
    assert!(text.contains("currency AUD, prices exclude tax, default tax rate 10%"), "{text}");
}

#[tokio::test]
async fn a_wrong_api_key_is_an_auth_error_naming_the_endpoint() {
    let err = connector_with(json!({"api_key": "sk_wrong"})).check().await.unwrap_err();
    assert_eq!(err.kind, ferry_engine::ErrorKind::Auth, "{err}");
    assert!(err.endpoint.contains("/admin/regions"), "{err}");
}

#[tokio::test]
async fn the_admin_user_login_works_instead_of_a_key() {
    let peer = medusa();
    let options = json!({"base_url": peer.base_url, "email": "admin@ferry.test", "password": "ferry-admin", "api_key_env": "FERRY_TEST_SURELY_UNSET_KEY"});
    let m = Medusa::new(serde_json::from_value::<Options>(options).unwrap(), "test").unwrap();
    assert!(m.check().await.unwrap().ok);
}

#[tokio::test]
async fn products_with_variants_categories_images_and_prices_then_a_price_change_touches_one_variant() {
    let m = connector();
    let admin = MedusaAdmin::new();
    let g = format!("TEE-{}", unique());
    let (red, blue) = (format!("{g}-RED"), format!("{g}-BLUE"));
    let batch = vec![record(Stream::Products, product(&red, &g, "Red", "19.99")), record(Stream::Products, product(&blue, &g, "Blue", "21.50"))];
    let out = by_key(m.write(Stream::Products, batch.clone()).await.unwrap());
    assert_eq!(action(&out[&red]), WriteAction::Created);
    assert_eq!(action(&out[&blue]), WriteAction::Created);

    let handle = g.to_lowercase();
    let found = admin.get(&format!("/admin/products?handle={handle}&fields=id,title,status,subtitle,metadata,*categories,categories.parent_category.name,*images,*options,*options.values,*variants,*variants.prices,*variants.options,variants.options.option.title")).await;
    let p = &found["products"][0];
    assert_eq!(p["title"], format!("Tee {g}"));
    assert_eq!(p["status"], "published");
    assert_eq!(p["metadata"]["brand"], "Acme");
    assert_eq!(p["metadata"]["fabric"], "cotton");
    assert_eq!(p["categories"][0]["name"], format!("Tees {g}"));
    assert_eq!(p["categories"][0]["parent_category"]["name"], "Clothing");
    let urls: Vec<&str> = p["images"].as_array().unwrap().iter().map(|i| i["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    let variant = |sku: &str| p["variants"].as_array().unwrap().iter().find(|v| v["sku"] == sku).unwrap().clone();
    let price_of = |v: &Value| v["prices"].as_array().unwrap().iter().find(|x| x["currency_code"] == "aud").map(|x| x["amount"].clone()).unwrap();
    // Medusa 2 keeps major units: 19.99 is 19.99, not 1999.
    assert_eq!(price_of(&variant(&red)), json!(19.99));
    assert_eq!(price_of(&variant(&blue)), json!(21.5));
    assert_eq!(variant(&red)["weight"], json!(200));
    let mut opts: Vec<String> = variant(&red)["options"].as_array().unwrap().iter().map(|o| format!("{}={}", o["option"]["title"].as_str().unwrap(), o["value"].as_str().unwrap())).collect();
    opts.sort();
    assert_eq!(opts, ["Color=Red", "Size=M"]);

    // The same batch again: nothing to write.
    let out = by_key(m.write(Stream::Products, batch).await.unwrap());
    assert_eq!(action(&out[&red]), WriteAction::Unchanged);
    assert_eq!(action(&out[&blue]), WriteAction::Unchanged);

    // One price changes: that variant only.
    let out = by_key(m.write(Stream::Products, vec![record(Stream::Products, product(&red, &g, "Red", "18.00")), record(Stream::Products, product(&blue, &g, "Blue", "21.50"))]).await.unwrap());
    assert_eq!(action(&out[&red]), WriteAction::Updated);
    assert_eq!(action(&out[&blue]), WriteAction::Unchanged);
    let again = admin.get(&format!("/admin/product-variants?sku={red}&fields=id,*prices")).await;
    assert_eq!(again["variants"][0]["prices"].as_array().unwrap().iter().find(|x| x["currency_code"] == "aud").unwrap()["amount"], json!(18));

    // A third colour joins the existing product (a new option value).
    let green = format!("{g}-GREEN");
    let out = by_key(m.write(Stream::Products, vec![record(Stream::Products, product(&green, &g, "Green", "20"))]).await.unwrap());
    assert_eq!(action(&out[&green]), WriteAction::Created);
    let found = admin.get(&format!("/admin/products?handle={handle}&fields=id,*variants,*images,*categories")).await;
    assert_eq!(found["products"][0]["variants"].as_array().unwrap().len(), 3);
    // A batch holding one variant (what the engine sends when one record changed) adds that variant's
    // picture and keeps the other variants' pictures and categories.
    let images = found["products"][0]["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "red's and blue's images kept, green's added: {images:?}");
    assert_eq!(found["products"][0]["categories"].as_array().unwrap().len(), 1, "the category stays");
}

#[tokio::test]
async fn a_bad_price_fails_its_record_and_the_rest_of_the_batch_is_written() {
    let m = connector();
    let (good, bad) = (format!("OK-{}", unique()), format!("BAD-{}", unique()));
    let mut wrong = json!({"sku": bad, "name": "Bad", "price": {"amount": "5", "currency": "EUR", "tax_inclusive": false}});
    let out = by_key(m.write(Stream::Products, vec![record(Stream::Products, json!({"sku": good, "name": "Good", "price": {"amount": "5", "currency": "AUD", "tax_inclusive": false}})), record(Stream::Products, wrong.take())]).await.unwrap());
    assert_eq!(action(&out[&good]), WriteAction::Created);
    let f = out[&bad].result.as_ref().unwrap_err();
    assert_eq!(f.field.as_deref(), Some("price.currency"), "{f:?}");
}

#[tokio::test]
async fn products_retire_to_draft_or_are_deleted() {
    let m = connector();
    let admin = MedusaAdmin::new();
    let (a, b) = (format!("RET-{}", unique()), format!("DEL-{}", unique()));
    for sku in [&a, &b] {
        let out = m.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Old", "price": {"amount": "3", "currency": "AUD", "tax_inclusive": false}}))]).await.unwrap();
        assert_eq!(action(&out[0]), WriteAction::Created);
    }
    let out = m.retire(Stream::Products, vec![(a.clone(), String::new())], RetireMode::Deactivate).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Retired);
    let p = admin.get(&format!("/admin/products?handle={}&fields=id,status", a.to_lowercase())).await;
    assert_eq!(p["products"][0]["status"], "draft");
    let out = m.retire(Stream::Products, vec![(b.clone(), String::new())], RetireMode::Delete).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Retired);
    let p = admin.get(&format!("/admin/products?handle={}&fields=id", b.to_lowercase())).await;
    assert_eq!(p["count"], 0);
}

#[tokio::test]
async fn stock_levels_are_batched_per_location_and_unchanged_levels_are_not_written() {
    let m = connector();
    let admin = MedusaAdmin::new();
    let (a, b) = (format!("STK-{}", unique()), format!("STK-{}", unique()));
    for sku in [&a, &b] {
        m.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Stocked", "price": {"amount": "3", "currency": "AUD", "tax_inclusive": false}}))]).await.unwrap();
    }
    let levels = |qa: &str, qb: &str| vec![record(Stream::Stock, json!({"sku": a, "location": "SYD", "on_hand": qa})), record(Stream::Stock, json!({"sku": b, "location": "SYD", "on_hand": qb}))];
    let out = by_key(m.write(Stream::Stock, levels("7", "0")).await.unwrap());
    assert_eq!(action(&out[&format!("{a}@SYD")]), WriteAction::Created);
    let out = by_key(m.write(Stream::Stock, levels("7", "12")).await.unwrap());
    assert_eq!(action(&out[&format!("{a}@SYD")]), WriteAction::Unchanged);
    assert_eq!(action(&out[&format!("{b}@SYD")]), WriteAction::Updated);
    let item = admin.get(&format!("/admin/inventory-items?sku={b}&fields=id,*location_levels")).await;
    assert_eq!(item["inventory_items"][0]["location_levels"][0]["stocked_quantity"], json!(12));
    let out = m.write(Stream::Stock, vec![record(Stream::Stock, json!({"sku": a, "location": "MEL", "on_hand": "1"}))]).await.unwrap();
    assert_eq!(out[0].result.as_ref().unwrap_err().field.as_deref(), Some("location"));
}

#[tokio::test]
async fn customers_with_addresses_and_groups_are_created_then_left_alone() {
    let m = connector();
    let admin = MedusaAdmin::new();
    let code = format!("C-{}", unique());
    let email = format!("{}@example.test", code.to_lowercase());
    let c = json!({"code": code, "email": email, "first_name": "Ann", "last_name": "Lee", "company": "Lee Pty", "group": "Trade",
        "addresses": [{"key": "home", "name": "Ann Lee", "street": ["1 Main St"], "city": "Sydney", "region": "NSW", "postcode": "2000", "country": "AU", "default_delivery": true, "default_billing": true}]});
    let out = m.write(Stream::Customers, vec![record(Stream::Customers, c.clone())]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Created);
    let found = admin.get(&format!("/admin/customers?email={email}&fields=id,company_name,metadata,*addresses,*groups")).await;
    let cust = &found["customers"][0];
    assert_eq!(cust["metadata"]["ferry_code"], code);
    assert_eq!(cust["company_name"], "Lee Pty");
    assert_eq!(cust["groups"][0]["name"], "Trade");
    assert_eq!(cust["addresses"][0]["postal_code"], "2000");
    assert_eq!(cust["addresses"][0]["country_code"], "au");
    let out = m.write(Stream::Customers, vec![record(Stream::Customers, c)]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Unchanged);
}

#[tokio::test]
async fn group_prices_with_quantity_breaks_become_one_price_list() {
    let m = connector();
    let admin = MedusaAdmin::new();
    let sku = format!("PL-{}", unique());
    m.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Listed", "price": {"amount": "20", "currency": "AUD", "tax_inclusive": false}}))]).await.unwrap();
    let list = format!("Trade-{}", unique());
    let entry = |min: &str, amount: &str| record(Stream::Prices, json!({"price_list": list, "sku": sku, "applies_to": {"kind": "customer_group", "code": "Trade"}, "min_quantity": min, "price": {"amount": amount, "currency": "AUD", "tax_inclusive": false}}));
    let out = m.write(Stream::Prices, vec![entry("1", "18"), entry("10", "16.50")]).await.unwrap();
    for o in &out {
        assert_eq!(action(o), WriteAction::Created);
    }
    let found = admin.get(&format!("/admin/price-lists?q=ferry:{list}&fields=id,title,type,status,price_list_rules.value,price_list_rules.attribute,prices.id,prices.amount,prices.min_quantity,prices.max_quantity")).await;
    let pl = &found["price_lists"][0];
    assert_eq!(pl["title"], format!("ferry:{list}:group:Trade"));
    assert_eq!(pl["type"], "override");
    let mut ranges: Vec<(Value, Value, Value)> = pl["prices"].as_array().unwrap().iter().map(|p| (p["min_quantity"].clone(), p["max_quantity"].clone(), p["amount"].clone())).collect();
    ranges.sort_by_key(|r| r.0.as_i64());
    assert_eq!(ranges, [(json!(1), json!(9), json!(18)), (json!(10), json!(null), json!(16.5))]);
    assert!(pl["rules"]["customer.groups.id"].as_array().is_some_and(|g| g.len() == 1), "{}", pl["rules"]);
    let out = m.write(Stream::Prices, vec![entry("1", "18"), entry("10", "16.50")]).await.unwrap();
    for o in &out {
        assert_eq!(action(o), WriteAction::Unchanged);
    }
}

#[tokio::test]
async fn an_order_placed_in_the_store_is_read_reconciled_to_the_cent_and_shipped_once_with_tracking() {
    let m = connector();
    let sku = format!("ORD-{}", unique());
    sellable(&m, &sku, "25", 10).await;
    let placed = place_medusa_order(&[(&sku, 2)], &format!("{}@example.test", sku.to_lowercase()));
    let id = placed["id"].as_str().unwrap().to_owned();

    let items = read_orders(&m, Some(vec![id.clone()])).await;
    let order = order_of(&items, &id);
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].sku, sku);
    assert_eq!((order.lines[0].quantity, order.lines[0].unit_price), (d("2"), d("25")));
    assert!(!order.prices_include_tax);
    // 2 × 25.00 + shipping 9.95, GST 10 %: Medusa does not round (tax 5.995, total 65.945); the
    // canonical order carries them to the cent.
    assert_eq!(order.totals.subtotal, d("50"));
    assert_eq!(order.totals.shipping, d("9.95"));
    assert_eq!(order.totals.tax, d("6.00"));
    assert_eq!(order.totals.total, d("65.95"));
    assert_eq!(order.custom["medusa_total"], "65.945");
    assert!(order.reconcile().is_empty());

    // An incremental read from before the order finds it too, and leaves a checkpoint.
    let since = json!({"updated_at": (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339()});
    let all: Vec<ReadItem> = m.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: Some(since), keys: None }).map(|r| r.unwrap()).collect().await;
    order_of(&all, &id);
    assert!(all.iter().any(|i| matches!(i, ReadItem::Checkpoint(_))));

    let shipment = json!({"number": format!("SH-{sku}"), "order_number": id, "carrier": "AusPost", "tracking_code": "TRK123", "tracking_url": "https://track.example.test/TRK123"});
    let out = m.write(Stream::Shipments, vec![record(Stream::Shipments, shipment.clone())]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Created);
    let out = m.write(Stream::Shipments, vec![record(Stream::Shipments, shipment)]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Unchanged, "a shipment is written once");
    let admin = MedusaAdmin::new();
    let o = admin.get(&format!("/admin/orders/{id}?fields=id,fulfillment_status,*fulfillments,*fulfillments.labels")).await;
    let fulfillments = o["order"]["fulfillments"].as_array().unwrap();
    assert_eq!(fulfillments.len(), 1);
    assert_eq!(fulfillments[0]["labels"][0]["tracking_number"], "TRK123");
    assert!(fulfillments[0]["shipped_at"].is_string());
    assert_eq!(o["order"]["fulfillment_status"], "shipped");
}

/// examples/tryton-medusa/ferry.toml is a valid configuration whose shop connection builds (no server
/// needed; the API key, from the environment in the example, is given here).
#[test]
fn the_example_config_parses_and_its_shop_connection_builds() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/tryton-medusa");
    let text = std::fs::read_to_string(root.join("ferry.toml")).unwrap();
    let config = ferry_engine::Config::parse(&text, root.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.flows.len(), 6);
    let shop = &config.connections["shop"];
    assert_eq!(shop.kind, "medusa");
    let mut options = serde_json::to_value(&shop.options).unwrap();
    options["api_key"] = json!("sk_example");
    let built = ferry_connectors::registry().build("medusa", &options, &ferry_engine::BuildContext::new("shop", &root));
    assert!(built.is_ok(), "{:?}", built.err());
}

#[tokio::test]
async fn a_cancelled_order_is_read_as_cancelled_with_its_time() {
    let m = connector();
    let sku = format!("CXL-{}", unique());
    sellable(&m, &sku, "12.50", 5).await;
    let placed = place_medusa_order(&[(&sku, 1)], &format!("{}@example.test", sku.to_lowercase()));
    let id = placed["id"].as_str().unwrap().to_owned();
    let before = order_of(&read_orders(&m, Some(vec![id.clone()])).await, &id);
    assert_eq!(before.status.as_str(), "confirmed", "an authorised payment is a confirmed order");
    assert!(before.cancelled_at.is_none());
    MedusaAdmin::new().post(&format!("/admin/orders/{id}/cancel"), json!({})).await;
    let after = order_of(&read_orders(&m, Some(vec![id.clone()])).await, &id);
    assert_eq!(after.status.as_str(), "cancelled");
    assert!(after.cancelled_at.is_some());
    assert_eq!(after.lines[0].sku, sku, "the lines stay for the ERP to cancel its sale");
}

#[tokio::test]
async fn an_incremental_read_in_small_pages_reads_every_order_once_and_checkpoints_the_last() {
    let m = connector_with(json!({"page_size": 2, "overlap_seconds": 0}));
    let sku = format!("PGE-{}", unique());
    sellable(&m, &sku, "5", 20).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(2);
    let ids: Vec<String> = (0..3).map(|i| place_medusa_order(&[(&sku, 1)], &format!("p{i}-{}@example.test", sku.to_lowercase()))["id"].as_str().unwrap().to_owned()).collect();
    let request = ReadRequest { stream: Some(Stream::Orders), checkpoint: Some(json!({"updated_at": since.to_rfc3339()})), keys: None };
    let items: Vec<ReadItem> = m.read(request).map(|r| r.unwrap()).collect().await;
    for id in &ids {
        let n = items.iter().filter(|i| matches!(i, ReadItem::Record(r) if r.data["number"] == id.as_str())).count();
        assert_eq!(n, 1, "order {id} read {n} times");
    }
    let last = items.iter().rev().find_map(|i| match i {
        ReadItem::Checkpoint(c) => Some(c["updated_at"].as_str().unwrap().to_owned()),
        _ => None,
    });
    let last = chrono::DateTime::parse_from_rfc3339(&last.expect("a checkpoint")).unwrap();
    let newest = order_of(&items, &ids[2]).updated_at.unwrap();
    assert!(last >= newest, "the checkpoint {last} is at or after the newest order read ({newest})");
}

/// Medusa refunds an amount of a captured payment: read back as one canonical refund of that amount
/// (a tax-free adjustment: Medusa does not say which lines), the order partially refunded, still to the cent.
#[tokio::test]
async fn a_refund_of_a_captured_payment_is_read_as_a_refund_of_its_amount() {
    let m = connector();
    let sku = format!("RFD-{}", unique());
    sellable(&m, &sku, "25.00", 5).await;
    let placed = place_medusa_order(&[(&sku, 2)], &format!("{}@example.test", sku.to_lowercase()));
    let id = placed["id"].as_str().unwrap().to_owned();
    let admin = MedusaAdmin::new();
    let found = admin.get(&format!("/admin/orders/{id}?fields=id,*payment_collections,*payment_collections.payments")).await;
    let payment = found["order"]["payment_collections"][0]["payments"][0]["id"].as_str().expect("the order's payment").to_owned();
    admin.post(&format!("/admin/payments/{payment}/capture"), json!({})).await;
    admin.post(&format!("/admin/payments/{payment}/refund"), json!({"amount": 10.5, "note": "one mug chipped"})).await;

    let order = order_of(&read_orders(&m, Some(vec![id.clone()])).await, &id);
    assert_eq!(order.refunds.len(), 1, "{order:#?}");
    assert_eq!(order.refunds[0].total, d("10.50"));
    assert_eq!(order.refunds[0].adjustment, d("10.50"));
    assert!(order.refunds[0].lines.is_empty(), "an amount, not lines: {:?}", order.refunds[0]);
    assert_eq!(order.status.as_str(), "partially_refunded");
    // the order itself still adds up: 2 × 25.00 + 9.95 shipping, GST 10 % rounded to the cent
    assert_eq!(order.totals.total, d("65.95"));
}
