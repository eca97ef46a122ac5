//! The Shopify connector against the project's Shopify emulator (scripts/peers/shopify: the Admin GraphQL
//! API 2026-10, every document validated against Shopify's official schema, executed with Shopify's
//! documented semantics): every stream, the rate budget, webhook payloads, and the loop
//! Tryton → Shopify → Tryton through the engine.
//!
//! The emulator is shared by the test processes and never reset here: each test uses its own SKUs,
//! e-mails and orders (random suffix).
#![cfg(all(feature = "tryton", feature = "shopify"))]

mod support;

use ferry_connectors::shopify::Shopify;
use ferry_engine::{Connector, ReadItem, ReadRequest, RetireMode, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Order, Record, Stream};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use support::{emulator, emulator_state, order_number, shopify, uniq};

fn rec(stream: Stream, v: Value) -> WriteRecord {
    let record = Record::parse(stream, v, "test").unwrap_or_else(|e| panic!("{e}"));
    WriteRecord { key: record.key(), target_id: None, record, previous: None }
}

fn ok(outcomes: &[WriteOutcome]) -> Vec<(String, WriteAction)> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(w) => (o.key.clone(), w.action),
            Err(f) => panic!("{} failed: {f:?}", o.key),
        })
        .collect()
}

fn first_id(outcomes: &[WriteOutcome]) -> String {
    outcomes[0].result.as_ref().unwrap().target_id.clone()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn tee(sku: &str, group: &str, size: &str, price: &str) -> Value {
    json!({
        "sku": sku, "group": group, "name": format!("Tee {group}"), "description": "<p>Organic cotton</p>", "brand": "Acme",
        "options": {"Size": size}, "status": "active",
        "price": {"amount": price, "currency": "AUD", "tax_inclusive": false}, "rrp": {"amount": "39.90", "currency": "AUD", "tax_inclusive": false},
        "categories": [["Clothing", "Tops"]],
        "media": [{"kind": "image", "url": format!("https://cdn.example.test/{group}.jpg"), "title": "Front"},
                  {"kind": "document", "url": format!("https://cdn.example.test/{group}-care.pdf")},
                  {"kind": "video", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"}],
        "custom": {"tags": ["organic"], "fabric_gsm": 180, "origin": "Australia"}
    })
}

/// Writes a one-variant product so orders can be placed for `sku`.
async fn product(shop: &Shopify, sku: &str, price: &str) {
    let p = json!({"sku": sku, "name": format!("Item {sku}"), "price": {"amount": price, "currency": "AUD", "tax_inclusive": false}});
    ok(&shop.write(Stream::Products, vec![rec(Stream::Products, p)]).await.unwrap());
}

/// Orders read for `keys` (names or ids), by name.
async fn read_orders(shop: &Shopify, keys: Vec<String>) -> Vec<ReadItem> {
    let request = ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: Some(keys) };
    shop.read(request).map(|r| r.unwrap()).collect().await
}

fn order_of(item: &ReadItem) -> Order {
    match item {
        ReadItem::Record(r) => match Record::parse(Stream::Orders, r.data.clone(), "t").unwrap() {
            Record::Order(o) => o,
            _ => unreachable!(),
        },
        other => panic!("not an order: {other:?}"),
    }
}

#[tokio::test]
async fn products_with_variants_media_categories_and_custom_fields_are_one_shopify_product_each() {
    let shop = shopify(json!({}));
    let u = uniq();
    let group = format!("TEE-{u}");
    let (s, m, l) = (format!("{group}-S"), format!("{group}-M"), format!("{group}-L"));
    let batch = vec![rec(Stream::Products, tee(&s, &group, "S", "29.90")), rec(Stream::Products, tee(&m, &group, "M", "29.90"))];
    let first = ok(&shop.write(Stream::Products, batch).await.unwrap());
    assert_eq!(first, vec![(s.clone(), WriteAction::Created), (m.clone(), WriteAction::Created)]);

    let state = emulator_state().await;
    let handle = group.to_lowercase();
    let p = &state["products"][&handle];
    assert_eq!(p["status"], "ACTIVE", "{p}");
    assert_eq!((p["vendor"].as_str(), p["descriptionHtml"].as_str()), (Some("Acme"), Some("<p>Organic cotton</p>")));
    assert_eq!(p["tags"], json!(["organic"]));
    let variants = p["variants"].as_array().unwrap();
    assert_eq!(variants.iter().map(|v| v["sku"].as_str().unwrap()).collect::<Vec<_>>(), vec![s.as_str(), m.as_str()]);
    assert!(variants.iter().all(|v| v["price"] == "29.90" && v["compareAtPrice"] == "39.90"), "{variants:?}");
    let kinds: Vec<&str> = p["files"].as_array().unwrap().iter().map(|f| f["contentType"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["IMAGE", "FILE", "EXTERNAL_VIDEO"], "images, the PDF as a file, the video link");
    let collections = &state["collections"];
    let tops = collections.as_array().unwrap().iter().find(|c| c["title"] == "Clothing > Tops").unwrap_or_else(|| panic!("{collections}"));
    assert!(p["collections"].as_array().unwrap().iter().any(|c| *c == tops["id"] || *c == tops["handle"]), "{p} in {tops}");
    let mf = variants[0]["metafields"].as_array().unwrap();
    assert!(mf.contains(&json!({"namespace": "ferry", "key": "fabric_gsm", "type": "number_integer", "value": "180"})), "custom fields as variant metafields: {mf:?}");
    assert!(mf.contains(&json!({"namespace": "ferry", "key": "origin", "type": "single_line_text_field", "value": "Australia"})), "{mf:?}");
    let defs: Vec<String> = state["metafieldDefinitions"].as_array().unwrap().iter().filter(|d| d["namespace"] == "ferry").map(|d| format!("{}:{}", d["key"].as_str().unwrap(), d["type"].as_str().unwrap_or_default())).collect();
    assert!(defs.iter().any(|d| d.starts_with("fabric_gsm:number_integer")), "{defs:?}");
    assert!(defs.iter().any(|d| d.starts_with("origin:single_line_text_field")), "{defs:?}");

    // One more size alone: the two already there are kept (productSet replaces the variant list).
    let again = ok(&shop.write(Stream::Products, vec![rec(Stream::Products, tee(&l, &group, "L", "31.90"))]).await.unwrap());
    assert_eq!(again, vec![(l.clone(), WriteAction::Updated)]);
    let state = emulator_state().await;
    let skus: Vec<&str> = state["products"][&handle]["variants"].as_array().unwrap().iter().map(|v| v["sku"].as_str().unwrap()).collect();
    assert_eq!(skus.len(), 3, "{skus:?}");

    // Discontinued (every variant) → ARCHIVED; retire archives once every variant of the product goes.
    let retired = shop.retire(Stream::Products, vec![(s.clone(), "x".into())], RetireMode::Deactivate).await.unwrap();
    let w = retired[0].result.as_ref().unwrap();
    assert_eq!(w.action, WriteAction::Unchanged, "siblings still sold: {w:?}");
    assert!(w.warning.as_deref().unwrap_or_default().contains("still sells"), "{w:?}");
    let items = [&s, &m, &l].iter().map(|k| ((*k).clone(), "x".to_owned())).collect();
    let retired = shop.retire(Stream::Products, items, RetireMode::Deactivate).await.unwrap();
    assert!(retired.iter().all(|o| o.result.as_ref().is_ok_and(|w| w.action == WriteAction::Retired)), "{retired:?}");
    assert_eq!(emulator_state().await["products"][&handle]["status"], "ARCHIVED");
}

#[tokio::test]
async fn a_bad_product_fails_alone_naming_the_field() {
    let shop = shopify(json!({}));
    let u = uniq();
    let good = json!({"sku": format!("OK-{u}"), "name": "Fine", "price": {"amount": "5", "currency": "AUD", "tax_inclusive": false}});
    let euro = json!({"sku": format!("EUR-{u}"), "name": "Euro", "price": {"amount": "5", "currency": "EUR", "tax_inclusive": false}});
    let out = shop.write(Stream::Products, vec![rec(Stream::Products, good), rec(Stream::Products, euro)]).await.unwrap();
    assert!(out[0].result.is_ok(), "{out:?}");
    let f = out[1].result.as_ref().unwrap_err();
    assert_eq!(f.field.as_deref(), Some("price.currency"), "{f:?}");
    assert!(!f.retryable);
}

#[tokio::test]
async fn stock_is_set_per_mapped_location_and_an_unchanged_level_is_not_sent() {
    let shop = shopify(json!({"locations": {"STORE": "Sydney store"}}));
    let u = uniq();
    let sku = format!("STK-{u}");
    product(&shop, &sku, "10").await;
    let level = |loc: &str, q: &str| rec(Stream::Stock, json!({"sku": sku, "location": loc, "on_hand": q}));
    let out = ok(&shop.write(Stream::Stock, vec![level("WH", "12"), level("STORE", "3")]).await.unwrap());
    assert!(out.iter().all(|(_, a)| *a == WriteAction::Updated), "{out:?}");
    let levels = |state: &Value| -> Vec<(String, i64)> {
        state["inventoryLevels"].as_array().unwrap().iter().filter(|l| l["sku"] == sku.as_str()).map(|l| (l["location"].as_str().unwrap().to_owned(), l["available"].as_i64().unwrap())).collect()
    };
    let mut got = levels(&emulator_state().await);
    got.sort();
    assert_eq!(got, vec![("Main warehouse".to_owned(), 12), ("Sydney store".to_owned(), 3)], "WH → the first location, STORE → mapped");
    let again = ok(&shop.write(Stream::Stock, vec![level("WH", "12")]).await.unwrap());
    assert_eq!(again[0].1, WriteAction::Unchanged);

    // A sale on the shop takes 2; the ERP's next figure (9) is set against what the shop really has.
    emulator("/_emulator/orders", json!({"email": format!("stk-{u}@example.test"), "lines": [{"sku": sku, "quantity": 2}]})).await;
    let after = ok(&shop.write(Stream::Stock, vec![level("WH", "9")]).await.unwrap());
    assert_eq!(after[0].1, WriteAction::Updated);
    assert!(levels(&emulator_state().await).contains(&("Main warehouse".to_owned(), 9)));
    let bad = shop.write(Stream::Stock, vec![rec(Stream::Stock, json!({"sku": sku, "location": "WH", "on_hand": "1.5"}))]).await.unwrap();
    assert_eq!(bad[0].result.as_ref().unwrap_err().field.as_deref(), Some("on_hand"));
    let unknown = shop.write(Stream::Stock, vec![rec(Stream::Stock, json!({"sku": format!("NOPE-{u}"), "location": "WH", "on_hand": "1"}))]).await.unwrap();
    assert_eq!(unknown[0].result.as_ref().unwrap_err().field.as_deref(), Some("sku"));
}

#[tokio::test]
async fn trade_customers_become_companies_with_their_price_list_catalog() {
    let shop = shopify(json!({"trade_groups": ["Trade"]}));
    let u = uniq();
    let (a, b) = (format!("PL-{u}-A"), format!("PL-{u}-B"));
    product(&shop, &a, "20").await;
    product(&shop, &b, "30").await;
    let list = format!("TRADE-{u}");
    let price = |sku: &str, min: &str, amount: &str| rec(Stream::Prices, json!({"price_list": list, "sku": sku, "min_quantity": min, "price": {"amount": amount, "currency": "AUD", "tax_inclusive": false}}));
    let out = ok(&shop.write(Stream::Prices, vec![price(&a, "1", "18.00"), price(&a, "10", "16.50"), price(&b, "1", "27")]).await.unwrap());
    assert_eq!(out.len(), 3);
    // a changed break replaces the old one at the same quantity
    ok(&shop.write(Stream::Prices, vec![price(&a, "10", "16.00")]).await.unwrap());

    let email = format!("buyer-{u}@example.test").to_lowercase();
    let code = format!("C-{u}");
    let customer = json!({"code": code, "email": email, "first_name": "Bea", "last_name": "Buyer", "company": format!("Buyer Pty {u}"), "group": "Trade",
        "price_list": list, "tax_id": "51 824 753 556",
        "addresses": [{"street": ["9 Trade St"], "city": "Perth", "region": "WA", "postcode": "6000", "country": "AU", "billing": true, "delivery": true, "default_billing": true}]});
    let shop_first = shop.write(Stream::Customers, vec![rec(Stream::Customers, customer.clone())]).await.unwrap();
    let first = ok(&shop_first);
    assert_eq!(first[0].1, WriteAction::Created);
    let mut known = rec(Stream::Customers, customer);
    known.target_id = Some(first_id(&shop_first));
    let second = ok(&shop.write(Stream::Customers, vec![known]).await.unwrap());
    assert_eq!(second[0].1, WriteAction::Updated);

    let state = emulator_state().await;
    let c = state["customers"].as_array().unwrap().iter().find(|c| c["email"] == email.as_str()).unwrap_or_else(|| panic!("{}", state["customers"]));
    assert!(c["tags"].as_array().unwrap().contains(&json!(format!("ferry:{code}"))) && c["tags"].as_array().unwrap().contains(&json!("Trade")), "{c}");
    assert_eq!(c["addresses"][0]["city"], "Perth", "{c}");
    let companies: Vec<&Value> = state["companies"].as_array().unwrap().iter().filter(|co| co["externalId"] == code.as_str()).collect();
    assert_eq!(companies.len(), 1, "one company, also after the second write: {companies:?}");
    let company = companies[0];
    assert!(company["contacts"].as_array().unwrap().contains(&c["id"]), "the customer is its contact: {company}");
    let pl = state["priceLists"].as_array().unwrap().iter().find(|p| p["name"] == list.as_str()).unwrap_or_else(|| panic!("{}", state["priceLists"]));
    let text = pl.to_string();
    assert!(text.contains("18.00") && text.contains("16.00") && !text.contains("16.50") && text.contains("27.00"), "{pl}");
    let catalog = state["catalogs"].as_array().unwrap().iter().find(|c| c["title"] == list.as_str()).unwrap_or_else(|| panic!("{}", state["catalogs"]));
    let location = &company["locations"][0];
    assert!(catalog["companyLocationIds"].as_array().unwrap().contains(location), "the company location buys from the catalog: {catalog} / {company}");
}

#[tokio::test]
async fn orders_are_read_reconciled_to_the_cent_with_cancellation_and_refunds() {
    let shop = shopify(json!({}));
    let u = uniq();
    let (a, b) = (format!("ORD-{u}-A"), format!("ORD-{u}-B"));
    product(&shop, &a, "20").await;
    product(&shop, &b, "5").await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(2);
    let email = format!("ann-{u}@example.test").to_lowercase();
    let placed = emulator(
        "/_emulator/orders",
        json!({"email": email, "customer": {"first_name": "Ann", "last_name": "Lee", "email": email},
               "lines": [{"sku": a, "quantity": 2}, {"sku": b, "quantity": 1}], "discount_code": {"code": "TENOFF", "percentage": "10"},
               "shipping": {"title": "Standard", "price": "8.00"}, "tax_rate": "0.10",
               "shipping_address": {"first_name": "Ann", "last_name": "Lee", "address1": "1 Main St", "city": "Sydney", "zip": "2000", "country_code": "AU", "province_code": "NSW"}}),
    )
    .await;
    let name = placed["name"].as_str().unwrap().to_owned();
    let items = read_orders(&shop, vec![name.clone()]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let o = order_of(&items[0]);
    assert_eq!(o.number, name);
    assert!(o.reconcile().is_empty());
    assert_eq!(o.totals.total, d(placed["totalPrice"].as_str().unwrap()), "the shopper's total, to the cent");
    assert_eq!(o.totals.tax, d(placed["totalTax"].as_str().unwrap()));
    assert_eq!(o.coupons, vec!["TENOFF".to_owned()]);
    assert_eq!(o.lines.len(), 2);
    assert!(o.discounts.iter().map(|x| x.amount).sum::<Decimal>() + o.lines.iter().map(|l| l.discount).sum::<Decimal>() > Decimal::ZERO, "{o:#?}");
    assert_eq!(o.shipping[0].amount, d("8.00"));
    assert_eq!(o.customer.email.as_deref(), Some(email.as_str()));
    assert_eq!(o.shipping_address.as_ref().and_then(|a| a.country.as_deref()), Some("AU"));
    assert_eq!(o.payments.iter().map(|p| p.amount).sum::<Decimal>(), o.totals.total, "paid in full");

    // Incremental: the order is read from a checkpoint before it, and the checkpoint moves to its update.
    let request = ReadRequest { stream: Some(Stream::Orders), checkpoint: Some(json!({"updated_at": since.to_rfc3339()})), keys: None };
    let items: Vec<ReadItem> = shop.read(request).map(|r| r.unwrap()).collect().await;
    assert!(items.iter().any(|i| matches!(i, ReadItem::Record(r) if r.data["number"] == name.as_str())), "incremental read finds {name}");
    let checkpoint = items.iter().rev().find_map(|i| if let ReadItem::Checkpoint(c) = i { Some(c.clone()) } else { None }).expect("a checkpoint");
    assert!(checkpoint["updated_at"].as_str().unwrap() >= since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_str(), "{checkpoint}");

    // One B back with the shipping, then the order cancelled: read again, both show.
    let n = order_number(placed["id"].as_str().unwrap());
    emulator(&format!("/_emulator/orders/{n}/refund"), json!({"lines": [{"sku": b, "quantity": 1}], "shipping": true, "note": "damaged"})).await;
    emulator(&format!("/_emulator/orders/{n}/cancel"), json!({"reason": "customer", "refund": false})).await;
    let o = order_of(&read_orders(&shop, vec![name.clone()]).await[0]);
    assert_eq!(o.status.as_str(), "cancelled");
    assert!(o.cancelled_at.is_some());
    assert_eq!(o.refunds.len(), 1, "{o:#?}");
    let r = &o.refunds[0];
    assert_eq!((r.lines[0].sku.as_str(), r.lines[0].quantity), (b.as_str(), Decimal::ONE));
    assert_eq!(r.shipping, d("8.00"));
    assert_eq!(r.adjustment, Decimal::ZERO, "lines + shipping + tax are the whole refund: {r:?}");
    // the refund webhook names the order by id: read by id, the same order
    let by_id = read_orders(&shop, vec![n.to_string()]).await;
    assert_eq!(order_of(&by_id[0]).number, name);
}

#[tokio::test]
async fn an_order_with_more_lines_than_a_page_reads_is_read_whole() {
    let shop = shopify(json!({"lines_per_order": 2}));
    let u = uniq();
    let skus: Vec<String> = (1..=5).map(|i| format!("LONG-{u}-{i}")).collect();
    for (i, sku) in skus.iter().enumerate() {
        product(&shop, sku, &format!("{}.25", i + 1)).await;
    }
    let lines: Vec<Value> = skus.iter().map(|s| json!({"sku": s, "quantity": 2})).collect();
    let placed = emulator("/_emulator/orders", json!({"email": format!("long-{u}@example.test"), "lines": lines, "discount_code": {"code": "FIVE", "percentage": "5"}})).await;
    let o = order_of(&read_orders(&shop, vec![placed["name"].as_str().unwrap().to_owned()]).await[0]);
    assert_eq!(o.lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>(), skus, "all five lines, in order");
    assert_eq!(o.totals.total, d(placed["totalPrice"].as_str().unwrap()));
}

#[tokio::test]
async fn a_full_read_is_one_bulk_operation_and_finds_the_same_orders() {
    let shop = shopify(json!({}));
    let u = uniq();
    let sku = format!("BULK-{u}");
    product(&shop, &sku, "12.34").await;
    let placed = emulator("/_emulator/orders", json!({"email": format!("bulk-{u}@example.test"), "lines": [{"sku": sku, "quantity": 3}], "shipping": {"title": "Express", "price": "15"}})).await;
    let name = placed["name"].as_str().unwrap();
    let request = ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: None };
    let items: Vec<ReadItem> = shop.read(request).map(|r| r.unwrap()).collect().await;
    let found: Vec<&ReadItem> = items.iter().filter(|i| matches!(i, ReadItem::Record(r) if r.data["number"] == name)).collect();
    assert_eq!(found.len(), 1, "{name} once in the bulk result");
    let bulk = order_of(found[0]);
    let paged = order_of(&read_orders(&shop, vec![name.to_owned()]).await[0]);
    assert_eq!(bulk.lines, paged.lines);
    assert_eq!(bulk.totals, paged.totals);
    assert_eq!(bulk.totals.total, d(placed["totalPrice"].as_str().unwrap()));
    assert!(items.iter().all(|i| !matches!(i, ReadItem::Invalid { .. })), "every order of the shop reconciles: {:?}", items.iter().filter(|i| matches!(i, ReadItem::Invalid { .. })).collect::<Vec<_>>());
    assert!(matches!(items.last(), Some(ReadItem::Checkpoint(_))));
    assert!(emulator_state().await["bulkOperations"].as_array().unwrap().iter().any(|b| b["status"] == "COMPLETED"));
}

#[tokio::test]
async fn a_shipment_becomes_one_fulfillment_with_tracking_however_often_it_is_written() {
    let shop = shopify(json!({}));
    let u = uniq();
    let (a, b) = (format!("SHP-{u}-A"), format!("SHP-{u}-B"));
    product(&shop, &a, "20").await;
    product(&shop, &b, "5").await;
    let placed = emulator("/_emulator/orders", json!({"email": format!("shp-{u}@example.test"), "lines": [{"sku": a, "quantity": 2}, {"sku": b, "quantity": 1}]})).await;
    let name = placed["name"].as_str().unwrap().to_owned();
    let number = format!("SH-{u}");
    let shipment = json!({"number": number, "order_number": name, "carrier": "Australia Post", "tracking_code": format!("AP{u}"),
        "tracking_url": format!("https://auspost.com.au/track/AP{u}"), "lines": [{"sku": a, "quantity": "2"}]});
    assert!(shop.find_by_key(Stream::Shipments, std::slice::from_ref(&number)).await.unwrap().is_empty());
    let first = shop.write(Stream::Shipments, vec![rec(Stream::Shipments, shipment.clone())]).await.unwrap();
    let w = first[0].result.as_ref().unwrap();
    assert_eq!(w.action, WriteAction::Created);
    let found = shop.find_by_key(Stream::Shipments, std::slice::from_ref(&number)).await.unwrap();
    assert_eq!(found.get(&number), Some(&w.target_id), "found by its number");
    let second = shop.write(Stream::Shipments, vec![rec(Stream::Shipments, shipment)]).await.unwrap();
    assert_eq!(second[0].result.as_ref().unwrap(), &ferry_engine::Written { target_id: w.target_id.clone(), action: WriteAction::Unchanged, warning: None });

    let state = emulator_state().await;
    let fulfillments: Vec<&Value> = state["fulfillments"].as_array().unwrap().iter().filter(|f| f.to_string().contains(&format!("AP{u}"))).collect();
    assert_eq!(fulfillments.len(), 1, "exactly one fulfillment: {fulfillments:?}");
    let f = fulfillments[0].to_string();
    assert!(f.contains("Australia Post") && f.contains(&format!("https://auspost.com.au/track/AP{u}")), "{f}");
    // the rest of the order later: B only is left
    let rest = json!({"number": format!("SH-{u}-2"), "order_number": name, "tracking_code": format!("AP{u}-2")});
    let w2 = shop.write(Stream::Shipments, vec![rec(Stream::Shipments, rest)]).await.unwrap();
    assert!(w2[0].result.is_ok(), "{w2:?}");
    let too_many = json!({"number": format!("SH-{u}-3"), "order_number": name, "lines": [{"sku": a, "quantity": "1"}]});
    let w3 = shop.write(Stream::Shipments, vec![rec(Stream::Shipments, too_many)]).await.unwrap();
    assert!(w3[0].result.as_ref().unwrap_err().field.as_deref().is_some_and(|f| f == "lines[0].quantity" || f == "lines"), "{w3:?}");
    let unknown = json!({"number": format!("SH-{u}-4"), "order_number": format!("#NOPE{u}")});
    let w4 = shop.write(Stream::Shipments, vec![rec(Stream::Shipments, unknown)]).await.unwrap();
    let f4 = w4[0].result.as_ref().unwrap_err();
    assert_eq!((f4.field.as_deref(), f4.retryable), (Some("order_number"), true));
}

#[tokio::test]
async fn a_drained_bucket_is_waited_for_and_the_answers_budget_is_followed() {
    // An emulator of this test's own: draining the shared one's bucket would slow every other test.
    let base = support::shopify_private_up();
    let shop = Shopify::new(support::shopify_options(json!({"base_url": base})), "shop").unwrap();
    let u = uniq();
    let sku = format!("BUD-{u}");
    let p = json!({"sku": sku, "name": "Budget", "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}});
    ok(&shop.write(Stream::Products, vec![rec(Stream::Products, p)]).await.unwrap());
    let placed = support::emulator_at(&base, "/_emulator/orders", json!({"email": format!("bud-{u}@example.test"), "lines": [{"sku": sku, "quantity": 1}]})).await;
    // Another app used the whole bucket: the Orders query (hundreds of points requested) is THROTTLED,
    // waits for the restore and is sent again, and the read completes.
    let drained = support::emulator_at(&base, "/_emulator/bucket", json!({"available": 0, "restoreRate": 100, "max": 2000})).await;
    assert_eq!(drained["currentlyAvailable"].as_f64().map(|a| a < 1.0), Some(true), "{drained}");
    let items = read_orders(&shop, vec![placed["name"].as_str().unwrap().to_owned()]).await;
    assert_eq!(order_of(&items[0]).number, placed["name"].as_str().unwrap());
    let (calls, throttled, spent) = shop.api_usage();
    assert!(throttled >= 1, "the drained bucket answered THROTTLED first ({calls} calls)");
    assert!(spent > 0);
    // From then on the connector paces by the answers' throttle status: the bucket is still low, and the
    // next reads (each requesting most of what is left) wait before sending instead of being refused.
    let before = shop.api_usage().1;
    for _ in 0..3 {
        let items = read_orders(&shop, vec![placed["name"].as_str().unwrap().to_owned()]).await;
        assert_eq!(items.len(), 1);
    }
    assert_eq!(shop.api_usage().1, before, "paced, not throttled");
}

#[tokio::test]
async fn the_emulators_webhook_payloads_name_the_order_and_products() {
    let shop = shopify(json!({}));
    // Nothing listens there: the emulator records the signed deliveries (and their failure) all the same.
    let u = uniq();
    let uri = format!("http://127.0.0.1:9/hooks/shop-{u}");
    let ids = shop.subscribe_webhooks(&uri).await.unwrap();
    assert_eq!(ids.len(), ferry_connectors::shopify::WEBHOOK_TOPICS.len());
    assert!(shop.subscribe_webhooks(&uri).await.unwrap().is_empty(), "subscribing again creates nothing and is no error");
    let sku = format!("HOOK-{u}");
    product(&shop, &sku, "9").await;
    product(&shop, &sku, "9.50").await; // an update: products/update
    let placed = emulator("/_emulator/orders", json!({"email": format!("hook-{u}@example.test"), "lines": [{"sku": sku, "quantity": 1}]})).await;
    let name = placed["name"].as_str().unwrap();
    let n = order_number(placed["id"].as_str().unwrap());
    emulator(&format!("/_emulator/orders/{n}/refund"), json!({"lines": [{"sku": sku, "quantity": 1}]})).await;
    let deliveries = emulator("/_emulator/webhooks", Value::Null).await;
    let mine: Vec<&Value> = deliveries.as_array().unwrap().iter().filter(|d| d["body"].to_string().contains(&sku) || d["body"]["name"] == name || d["body"]["order_id"] == json!(n)).collect();
    let topics: Vec<&str> = mine.iter().map(|d| d["topic"].as_str().unwrap()).collect();
    for (topic, want) in [("orders/create", (Stream::Orders, name.to_owned())), ("refunds/create", (Stream::Orders, n.to_string())), ("products/update", (Stream::Products, sku.clone()))] {
        let Some(d) = mine.iter().find(|d| d["topic"] == topic) else {
            panic!("no {topic} delivery among {topics:?}");
        };
        let signals = shop.webhook_signals(&d["body"]);
        assert!(signals.iter().any(|(s, keys)| *s == want.0 && keys.contains(&want.1)), "{topic}: {signals:?} from {}", d["body"]);
    }
}

// ------------------------------------------------------------------------------------------------
// The loop Tryton → Shopify → Tryton through the ENGINE (config → workspace → sync), as loop_live.rs does
// for Vendure: the example config's flows (examples/tryton-shopify/ferry.toml) with the test peers.

mod engine_loop {
    use super::*;
    use chrono::{DateTime, Utc};
    use ferry_connectors::tryton::Tryton;
    use ferry_engine::store::BatchCommit;
    use ferry_engine::{Config, RunOptions, RunReport, Workspace, holder_id, run::NoProgress};
    use std::path::Path;
    use support::{Setup, none, tryton};

    fn config(state: &Path, prefix: &str, customer: &str, list: &str) -> Config {
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

{shop}
[connections.shop.locations]
WH = "Main warehouse"

{flows}"#,
            state = state.display(),
            tryton_port = support::port(),
            tryton_password = support::PASSWORD,
            shop = support::shopify_connection_toml("shop", &format!("order_prefix = \"{prefix}\"")),
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
            let u = uniq();
            let since = Utc::now() - chrono::Duration::seconds(1);
            let dir = tempfile::tempdir().unwrap();
            let (prefix, customer, list) = (format!("SLOOP-{u}-"), format!("Sloop customer {u}"), format!("Sloop list {u}"));
            let ws = Loop::workspace(&dir.path().join("state.db"), &prefix, &customer, &list, since).await;
            Loop { u, prefix, customer, list, dir, ws, since, erp }
        }

        /// Every flow starts from `since`: the shared peers hold other tests' records.
        async fn workspace(path: &Path, prefix: &str, customer: &str, list: &str, since: DateTime<Utc>) -> Workspace {
            let ws = Workspace::open(config(path, prefix, customer, list), ferry_connectors::registry()).await.unwrap();
            for flow in ["products", "customers", "prices", "stock", "shipments", "orders"] {
                let store = ws.store();
                let run = store.begin_run(flow, "seed").await.unwrap();
                let checkpoint = if flow == "orders" { json!({"updated_at": since.to_rfc3339()}) } else { json!({"since": since}) };
                store.commit_batch(flow, run, BatchCommit { checkpoint: Some(checkpoint), ..Default::default() }).await.unwrap();
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
    }

    fn available(state: &Value, sku: &str) -> i64 {
        state["inventoryLevels"].as_array().unwrap().iter().find(|l| l["sku"] == sku && l["location"] == "Main warehouse").and_then(|l| l["available"].as_i64()).unwrap_or_else(|| panic!("no level of {sku}"))
    }

    fn variant<'a>(state: &'a Value, sku: &str) -> &'a Value {
        state["products"].as_object().unwrap().values().flat_map(|p| p["variants"].as_array().unwrap()).find(|v| v["sku"] == sku).unwrap_or_else(|| panic!("no variant {sku}"))
    }

    #[tokio::test]
    async fn tryton_catalogue_goes_to_shopify_and_a_shopify_order_comes_back_once_and_is_fulfilled_with_tracking() {
        let lp = Loop::new().await;
        let s = Setup(&lp.erp);
        let rpc = lp.erp.rpc();
        let u = &lp.u;

        // ---- the ERP: a tee in two sizes, a mug; stock; a B2B customer with its own price list
        let tee = s.product(&lp.sku("TEE"), &format!("Sloop tee {u}"), "29.90", "11", &[], &["-S", "-M"]).await;
        let mug = s.product(&lp.sku("MUG"), &format!("Sloop mug {u}"), "12.50", "4", &[], &[""]).await[0];
        s.stock(tee[0], 10).await;
        s.stock(mug, 5).await;
        let (tee_s, tee_m, mug_sku) = (lp.sku("TEE-S"), lp.sku("TEE-M"), lp.sku("MUG"));
        let au = s.id("country.country", json!([["code", "=", "AU"]])).await;
        let email = format!("sloop-{u}@example.test").to_lowercase();
        let party = rpc
            .create(
                "party.party",
                vec![json!({
                    "name": lp.customer, "code": format!("SLOOPC-{u}"),
                    "contact_mechanisms": [["create", [{"type": "email", "value": email}]]],
                    "addresses": [["create", [{"street": "3 Loop Rd", "city": "Newcastle", "postal_code": "2300", "country": au, "invoice": true, "delivery": true}]]],
                })],
                &none(),
            )
            .await
            .unwrap()[0];
        let list = rpc
            .create("product.price_list", vec![json!({"name": lp.list, "price": "list_price", "lines": [["create", [{"product": tee[0], "formula": "unit_price * Decimal('0.9')"}]]]})], &none())
            .await
            .unwrap()[0];
        rpc.write("party.party", &[party], json!({"sale_price_list": list}), &none()).await.unwrap();

        // ---- ERP → shop
        let products = lp.sync("products").await;
        assert_eq!((products.counts.created, products.counts.failed), (3, 0), "{products:#?}");
        let customers = lp.sync("customers").await;
        assert_eq!(customers.counts.created + customers.counts.updated, 1, "{customers:#?}");
        let prices = Loop::sync_in(&lp.ws, "prices", Some(vec![tee_s.clone()])).await;
        assert_eq!(prices.counts.created + prices.counts.updated, 1, "{prices:#?}");
        let stock = lp.sync("stock").await;
        assert!(stock.counts.read >= 3 && stock.counts.failed == 0, "{stock:#?}");

        let state = emulator_state().await;
        assert_eq!((variant(&state, &tee_s)["price"].as_str(), variant(&state, &mug_sku)["price"].as_str()), (Some("29.90"), Some("12.50")));
        let tee_product = state["products"].as_object().unwrap().values().find(|p| p["variants"].as_array().unwrap().iter().any(|v| v["sku"] == tee_s.as_str())).unwrap();
        assert!(tee_product["variants"].as_array().unwrap().iter().any(|v| v["sku"] == tee_m.as_str()), "one product, two variants: {tee_product}");
        assert_eq!((available(&state, &tee_s), available(&state, &tee_m), available(&state, &mug_sku)), (10, 0, 5));
        assert!(state["customers"].as_array().unwrap().iter().any(|c| c["email"] == email.as_str()), "the B2B customer is on the shop");
        let pl = state["priceLists"].as_array().unwrap().iter().find(|p| p["name"] == lp.list.as_str()).unwrap_or_else(|| panic!("{}", state["priceLists"]));
        assert!(pl.to_string().contains("26.91"), "29.90 × 0.9 for the customer's list: {pl}");

        // ---- a guest buys 2 small tees and a mug with a 10 % coupon and standard shipping
        let guest = format!("guest-{u}@example.test").to_lowercase();
        let placed = emulator(
            "/_emulator/orders",
            json!({"email": guest, "lines": [{"sku": tee_s, "quantity": 2}, {"sku": mug_sku, "quantity": 1}],
                   "discount_code": {"code": format!("SLOOP{u}"), "percentage": "10"}, "shipping": {"title": "Standard", "price": "9.95"}, "tax_rate": "0.10",
                   "shipping_address": {"first_name": "Gus", "last_name": "Guest", "address1": "1 Beach Rd", "city": "Manly", "zip": "2095", "country_code": "AU", "province_code": "NSW"}}),
        )
        .await;
        // the emulator's names restart at #1001 with it; the shared Tryton keeps its sales: the prefix
        // keeps this test's orders its own (as it keeps two shops' #1001 apart)
        let name = format!("{}{}", lp.prefix, placed["name"].as_str().unwrap());
        let first = lp.sync("orders").await;
        assert_eq!((first.counts.created, first.counts.failed), (1, 0), "{first:#?}");
        let sales = |number: String| async move {
            rpc.search_read("sale.sale", json!([["web_id", "=", number]]), 0, None, Value::Null, &["state", "party.name", "reference", "total_amount"], &none()).await.unwrap()
        };
        let found = sales(name.clone()).await;
        assert_eq!(found.len(), 1, "{found:#?}");
        let sale = &found[0];
        assert_eq!(sale["party."]["name"], "Web sales (B2C)");
        let total: Decimal = sale["total_amount"]["decimal"].as_str().unwrap().parse().unwrap();
        assert_eq!(total, d(placed["totalPrice"].as_str().unwrap()), "Tryton's total is what the shopper paid: {sale:?}");

        // exactly once: again, and from an empty state store (a crash after Tryton committed)
        let second = lp.sync("orders").await;
        assert_eq!(second.counts.created, 0, "{second:#?}");
        let crashed = Loop::workspace(&lp.dir.path().join("after-crash.db"), &lp.prefix, &lp.customer, &lp.list, lp.since).await;
        let healed = Loop::sync_in(&crashed, "orders", None).await;
        assert_eq!((healed.counts.created, healed.counts.failed), (0, 0), "{healed:#?}");
        assert_eq!(sales(name.clone()).await.len(), 1, "still one sale for {name}");

        // ---- shipped in Tryton → a fulfillment with the tracking number on the shop, once
        let tracking = format!("TRK{u}");
        let (_, shipment) = s.ship_sale(sale["id"].as_i64().unwrap(), &tracking).await;
        let shipped = lp.sync("shipments").await;
        assert_eq!((shipped.counts.created, shipped.counts.failed), (1, 0), "{shipped:#?}");
        let again = lp.sync("shipments").await;
        assert_eq!(again.counts.created, 0, "{again:#?}");
        let state = emulator_state().await;
        let fulfillments: Vec<&Value> = state["fulfillments"].as_array().unwrap().iter().filter(|f| f.to_string().contains(&tracking)).collect();
        assert_eq!(fulfillments.len(), 1, "one fulfillment for shipment {shipment}: {fulfillments:?}");
        let order = state["orders"].as_array().unwrap().iter().find(|o| o["name"] == placed["name"]).unwrap();
        assert_eq!(order["fulfillmentStatus"], "FULFILLED", "{order}");

        // ---- a second order is cancelled with a refund on the shop after it was imported: Tryton's
        // sale follows (cancelled while it is only confirmed)
        let placed2 = emulator("/_emulator/orders", json!({"email": guest, "lines": [{"sku": tee_m, "quantity": 1}], "tax_rate": "0.10"})).await;
        let name2 = format!("{}{}", lp.prefix, placed2["name"].as_str().unwrap());
        let imported = lp.sync("orders").await;
        assert_eq!(imported.counts.created, 1, "{imported:#?}");
        let n2 = order_number(placed2["id"].as_str().unwrap());
        emulator(&format!("/_emulator/orders/{n2}/cancel"), json!({"reason": "customer", "refund": true})).await;
        let after = lp.sync("orders").await;
        assert_eq!(after.counts.failed, 0, "{after:#?}");
        assert!(after.counts.updated + after.counts.resumed >= 1, "the cancellation was applied: {after:#?}");
        // Tryton cancels a confirmed sale; one it is already processing completes with its shipment
        // cancelled and nothing delivered (the Tryton connector's documented way)
        let sale2 = sales(name2.clone()).await;
        assert_eq!(sale2.len(), 1, "{sale2:?}");
        let id2 = sale2[0]["id"].as_i64().unwrap();
        let shipments = rpc.read("sale.sale", &[id2], &["shipments"], &none()).await.unwrap()[0]["shipments"].as_array().cloned().unwrap_or_default();
        let shipment_ids: Vec<i64> = shipments.iter().filter_map(Value::as_i64).collect();
        let states: Vec<Value> = if shipment_ids.is_empty() { vec![] } else { rpc.read("stock.shipment.out", &shipment_ids, &["state"], &none()).await.unwrap().into_iter().map(|r| r["state"].clone()).collect() };
        match sale2[0]["state"].as_str() {
            Some("cancelled") => {}
            Some("done") => assert!(states.iter().all(|s| s == "cancelled"), "done with nothing delivered: {states:?}"),
            other => panic!("the cancelled order's sale is {other:?}: {sale2:?}"),
        }
    }
}

/// A batch of at least `bulk_write_threshold` products goes as one bulk mutation (staged JSONL upload,
/// bulkOperationRunMutation, result JSONL): every product lands with its variants and prices, a bad record
/// fails alone naming its field, a product already on the shop keeps its other variants, the same batch
/// again changes nothing, and the batch costs a fraction of the points one productSet per product costs.
#[tokio::test]
async fn a_large_products_batch_is_one_bulk_mutation_and_is_idempotent() {
    let shop = shopify(json!({"bulk_write_threshold": 100}));
    let u = uniq();
    // 250 Shopify products; every fifth has two sizes (300 records), and one record is priced in euros.
    let mut records = Vec::new();
    for i in 0..250 {
        let group = format!("BULK-{u}-{i:03}");
        let sizes: &[&str] = if i % 5 == 0 { &["S", "M"] } else { &["S"] };
        for size in sizes {
            let currency = if i == 17 { "EUR" } else { "AUD" };
            records.push(json!({"sku": format!("{group}-{size}"), "group": group, "name": format!("Bulk {i}"), "brand": "Acme", "status": "active",
                "options": {"Size": size}, "price": {"amount": format!("{}.{:02}", 10 + i, i % 100), "currency": currency, "tax_inclusive": false},
                "rrp": {"amount": "99.95", "currency": "AUD", "tax_inclusive": false}}));
        }
    }
    let bad_sku = format!("BULK-{u}-017-S");
    // Product 001 is on the shop already with another size, written one productSet at a time: the bulk
    // batch (size S only) must find it and keep that variant.
    let one_by_one = shopify(json!({"bulk_write_threshold": 0}));
    let xl_sku = format!("BULK-{u}-001-XL");
    let mut xl = records.iter().find(|r| r["sku"] == format!("BULK-{u}-001-S").as_str()).unwrap().clone();
    xl["sku"] = json!(xl_sku);
    xl["options"] = json!({"Size": "XL"});
    let xl_id = first_id(&one_by_one.write(Stream::Products, vec![rec(Stream::Products, xl)]).await.unwrap());
    let batch = || records.iter().map(|r| rec(Stream::Products, r.clone())).collect::<Vec<_>>();
    let bulk_ops_before = emulator_state().await["bulkOperations"].as_array().map(|b| b.iter().filter(|b| b["type"] == "MUTATION").count()).unwrap_or(0);
    let (_, _, spent_before) = shop.api_usage();

    let first = shop.write(Stream::Products, batch()).await.unwrap();
    let spent_bulk = shop.api_usage().2 - spent_before;
    assert_eq!(first.len(), 300);
    let mut ids = std::collections::HashMap::new();
    for o in &first {
        if o.key == bad_sku {
            let f = o.result.as_ref().unwrap_err();
            assert_eq!(f.field.as_deref(), Some("price.currency"), "{f:?}");
            assert!(!f.retryable);
            continue;
        }
        let w = o.result.as_ref().unwrap_or_else(|f| panic!("{} failed: {f:?}", o.key));
        let expected = if o.key.starts_with(&format!("BULK-{u}-001-")) { WriteAction::Updated } else { WriteAction::Created };
        assert_eq!(w.action, expected, "{}", o.key);
        ids.insert(o.key.clone(), w.target_id.clone());
    }
    assert_eq!(ids.len(), 299);
    let state = emulator_state().await;
    let mutations: Vec<&Value> = state["bulkOperations"].as_array().unwrap().iter().filter(|b| b["type"] == "MUTATION").collect();
    assert_eq!(mutations.len(), bulk_ops_before + 1, "one bulk mutation for the batch");
    assert_eq!(mutations.last().unwrap()["status"], "COMPLETED");
    for i in 0..250 {
        let handle = format!("bulk-{}-{i:03}", u.to_lowercase());
        let p = &state["products"][&handle];
        if i == 17 {
            assert!(p.is_null(), "the euro-priced product is not written: {p}");
            continue;
        }
        assert_eq!((p["title"].as_str(), p["vendor"].as_str(), p["status"].as_str()), (Some(format!("Bulk {i}").as_str()), Some("Acme"), Some("ACTIVE")), "{p}");
        let variants = p["variants"].as_array().unwrap_or_else(|| panic!("{handle}: {p}"));
        if i == 1 {
            assert_eq!(variants.len(), 2, "the XL already there is kept: {p}");
            assert!(variants.iter().any(|v| v["sku"] == xl_sku.as_str() && v["id"] == xl_id.as_str()), "{p}");
            continue;
        }
        assert_eq!(variants.len(), if i % 5 == 0 { 2 } else { 1 }, "{p}");
        for v in variants {
            let sku = v["sku"].as_str().unwrap();
            assert_eq!(v["id"].as_str(), ids.get(sku).map(String::as_str), "{sku}: the outcome's id is the variant's");
            assert_eq!(d(v["price"].as_str().unwrap()), d(&format!("{}.{:02}", 10 + i, i % 100)), "{sku}");
            assert_eq!(d(v["compareAtPrice"].as_str().unwrap()), d("99.95"), "{sku}");
        }
    }

    // The same batch again: every product updated in place (same variant ids), nothing duplicated.
    let (_, _, before) = shop.api_usage();
    let again = shop.write(Stream::Products, batch()).await.unwrap();
    let spent_again = shop.api_usage().2 - before;
    for o in &again {
        if o.key == bad_sku {
            assert!(o.result.is_err());
            continue;
        }
        let w = o.result.as_ref().unwrap_or_else(|f| panic!("{} failed: {f:?}", o.key));
        assert_eq!((w.action, Some(&w.target_id)), (WriteAction::Updated, ids.get(&o.key)), "{}", o.key);
    }
    let state = emulator_state().await;
    let ours = state["products"].as_object().unwrap().keys().filter(|h| h.starts_with(&format!("bulk-{}-", u.to_lowercase()))).count();
    assert_eq!(ours, 249);

    // What the bulk path saves: one productSet call per product costs at least 10 points (a mutation)
    // plus its payload; the bulk batch, lookups by handle included, costs far less per product.
    let small = shopify(json!({"bulk_write_threshold": 0}));
    let singles: Vec<WriteRecord> = (0..10).map(|i| rec(Stream::Products, json!({"sku": format!("ONE-{u}-{i}"), "name": "One", "price": {"amount": "5", "currency": "AUD", "tax_inclusive": false}}))).collect();
    let (_, _, before) = small.api_usage();
    ok(&small.write(Stream::Products, singles).await.unwrap());
    let per_product_single = (small.api_usage().2 - before) as f64 / 10.0;
    let per_product_bulk = spent_bulk as f64 / 249.0;
    let per_product_again = spent_again as f64 / 249.0;
    eprintln!("points per product: {per_product_bulk:.1} in the bulk batch ({spent_bulk} for 249 new), {per_product_again:.1} again ({spent_again}, the lookups find them), {per_product_single:.1} one productSet each");
    assert!(per_product_single >= 10.0, "{per_product_single}");
    // a handful of calls for the whole batch (staged upload, bulk query and mutation, polls), not a call each
    assert!(per_product_bulk < 1.0, "bulk {per_product_bulk:.1} vs single {per_product_single:.1} points per product");
    assert!(per_product_again < 1.0, "bulk again {per_product_again:.1} vs single {per_product_single:.1} points per product");
}
