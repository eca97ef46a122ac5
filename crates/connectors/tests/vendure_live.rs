//! The Vendure connector against a real Vendure 3.7.3 (scripts/peers/vendure/up.sh, port 18300).
//! Every test makes its own uniquely named data; the server is shared and never reset.
#![cfg(feature = "vendure")]

mod support;

use ferry_connectors::vendure::{Options, Vendure};
use ferry_engine::{Connector, ReadItem, ReadRequest, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Order, Record, Stream};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::{Api, Buyer, place_order, unique};

fn connector() -> Vendure {
    connector_with(json!({}))
}

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

fn by_key(outcomes: Vec<WriteOutcome>) -> HashMap<String, WriteOutcome> {
    outcomes.into_iter().map(|o| (o.key.clone(), o)).collect()
}

fn action(o: &WriteOutcome) -> WriteAction {
    match &o.result {
        Ok(w) => w.action,
        Err(f) => panic!("{} failed: {f:?}", o.key),
    }
}

fn product(sku: &str, group: &str, color: &str, price: &str) -> Value {
    json!({
        "sku": sku, "group": group, "name": format!("Tee {color}"), "description": "Organic cotton tee",
        "custom": {"group_name": format!("Tee {group}")},
        "options": {"Color": color, "Size": "M"},
        "categories": [["Clothing", "Tees"]],
        "media": [
            {"kind": "image", "url": format!("https://cdn.example.test/{sku}.jpg")},
            {"kind": "document", "url": "https://cdn.example.test/care.pdf"},
            {"kind": "video", "url": "https://video.example.test/tee"}
        ],
        "barcode": format!("93{}", sku.len()),
        "weight": {"value": "0.2", "unit": "kg"},
        "price": {"amount": price, "currency": "AUD", "tax_inclusive": false}
    })
}

#[tokio::test]
async fn check_reports_login_and_channel_money_settings() {
    let report = connector().check().await.unwrap();
    assert!(report.ok);
    let text = report.details.join("\n");
    assert!(text.contains("logged in to"), "{text}");
    assert!(text.contains("currency AUD"), "{text}");
    assert!(text.contains("GST 10%"), "{text}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_naming_the_endpoint() {
    let v = connector_with(json!({"password": "nope"}));
    let err = v.check().await.unwrap_err();
    assert_eq!(err.kind, ferry_engine::ErrorKind::Auth, "{err}");
    assert!(err.endpoint.ends_with("/admin-api"), "{err}");
}

#[tokio::test]
async fn products_with_variants_then_one_price_change_touches_only_that_variant() {
    let v = connector();
    let u = unique();
    let group = format!("TEE-{u}");
    let skus: Vec<String> = ["BLU", "RED", "GRN"].iter().map(|c| format!("{group}-{c}")).collect();
    let colors = ["Blue", "Red", "Green"];
    let batch: Vec<WriteRecord> =
        skus.iter().zip(colors).map(|(s, c)| record(Stream::Products, product(s, &group, c, "19.99"))).collect();
    let out = by_key(v.write(Stream::Products, batch.clone()).await.unwrap());
    for s in &skus {
        assert_eq!(action(&out[s]), WriteAction::Created, "{s}");
    }

    let admin = Api::admin().await;
    let q = "query($g:String!){ products(options:{filter:{ferryGroup:{eq:$g}}}){ items { id name enabled
        customFields { imageUrls documentUrls videoUrls } facetValues { code facet { code } }
        optionGroups { code options { code } }
        variants { id sku price priceWithTax currencyCode enabled updatedAt options { code } customFields { barcode weightGrams } } } } }";
    let data = admin.ok(q, json!({"g": group})).await;
    let items = data["products"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one product for the group: {data}");
    let p = &items[0];
    assert_eq!(p["name"], format!("Tee {group}"));
    assert_eq!(p["variants"].as_array().unwrap().len(), 3);
    assert_eq!(p["customFields"]["imageUrls"].as_array().unwrap().len(), 3);
    assert_eq!(p["customFields"]["documentUrls"], json!(["https://cdn.example.test/care.pdf"]));
    assert_eq!(p["customFields"]["videoUrls"], json!(["https://video.example.test/tee"]));
    let facet_codes: Vec<&str> = p["facetValues"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert!(facet_codes.contains(&"clothing") && facet_codes.contains(&"clothing_tees"), "{facet_codes:?}");
    let mut groups: Vec<&str> = p["optionGroups"].as_array().unwrap().iter().map(|g| g["code"].as_str().unwrap()).collect();
    groups.sort();
    assert_eq!(groups, ["color", "size"]);
    for var in p["variants"].as_array().unwrap() {
        assert_eq!(var["price"], 1999, "net AUD cents");
        assert_eq!(var["priceWithTax"], 2199, "GST 10 % on top");
        assert_eq!(var["currencyCode"], "AUD");
        assert_eq!(var["options"].as_array().unwrap().len(), 2);
        assert_eq!(var["customFields"]["weightGrams"], 200);
    }
    let before: HashMap<String, Value> = p["variants"].as_array().unwrap().iter().map(|x| (x["sku"].as_str().unwrap().to_owned(), x.clone())).collect();

    // The same batch again: nothing to write, no variant touched.
    let calls = v.api_calls();
    let again = by_key(v.write(Stream::Products, batch).await.unwrap());
    assert!(again.values().all(|o| action(o) == WriteAction::Unchanged));
    assert!(v.api_calls() - calls <= 2, "an unchanged batch costs only the look-ups ({} calls)", v.api_calls() - calls);

    // One price changes (tax-inclusive input converted to the channel's net price), one is discontinued.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // updatedAt has 1 s precision
    let mut changed = product(&skus[1], &group, "Red", "27.49");
    changed["price"] = json!({"amount": "27.49", "currency": "AUD", "tax_inclusive": true});
    let mut gone = product(&skus[2], &group, "Green", "19.99");
    gone["status"] = json!("discontinued");
    let out = by_key(
        v.write(Stream::Products, vec![
            record(Stream::Products, product(&skus[0], &group, "Blue", "19.99")),
            record(Stream::Products, changed),
            record(Stream::Products, gone),
        ])
        .await
        .unwrap(),
    );
    assert_eq!(action(&out[&skus[0]]), WriteAction::Unchanged);
    assert_eq!(action(&out[&skus[1]]), WriteAction::Updated);
    assert_eq!(action(&out[&skus[2]]), WriteAction::Updated);
    let data = admin.ok(q, json!({"g": group})).await;
    let after: HashMap<String, Value> =
        data["products"]["items"][0]["variants"].as_array().unwrap().iter().map(|x| (x["sku"].as_str().unwrap().to_owned(), x.clone())).collect();
    assert_eq!(after[&skus[1]]["price"], 2499, "27.49 incl. GST = 24.99 net");
    assert_eq!(after[&skus[1]]["priceWithTax"], 2749);
    assert_eq!(after[&skus[2]]["enabled"], false);
    assert_eq!(after[&skus[0]]["updatedAt"], before[&skus[0]]["updatedAt"], "untouched variant");
    assert_eq!(after[&skus[0]]["price"], 1999);
    assert_eq!(data["products"]["items"][0]["enabled"], true, "other variants still sell");
    assert_eq!(data["products"]["items"][0]["customFields"]["imageUrls"].as_array().unwrap().len(), 3, "a partial batch keeps the group's other media");
}

#[tokio::test]
async fn a_bad_record_fails_alone_with_its_field() {
    let v = connector();
    let u = unique();
    let good = format!("SOLO-{u}");
    let mut bad = product(&format!("BAD-{u}"), &format!("BADG-{u}"), "Blue", "1");
    bad["price"] = json!({"amount": "12.345", "currency": "AUD", "tax_inclusive": false});
    let mut eur = product(&format!("EUR-{u}"), &format!("EURG-{u}"), "Blue", "1");
    eur["price"]["currency"] = json!("EUR");
    let out = by_key(
        v.write(Stream::Products, vec![
            record(Stream::Products, json!({"sku": good, "name": "Solo", "price": {"amount": "5", "currency": "AUD", "tax_inclusive": false}})),
            record(Stream::Products, bad),
            record(Stream::Products, eur),
        ])
        .await
        .unwrap(),
    );
    assert_eq!(action(&out[&good]), WriteAction::Created);
    let f = out[&format!("BAD-{u}")].result.clone().unwrap_err();
    assert_eq!(f.field.as_deref(), Some("price.amount"), "{f:?}");
    let f = out[&format!("EUR-{u}")].result.clone().unwrap_err();
    assert_eq!(f.field.as_deref(), Some("price.currency"), "{f:?}");
}

#[tokio::test]
async fn stock_on_hand_is_set_per_sku_and_location() {
    let v = connector();
    let u = unique();
    let skus = [format!("STK-{u}-1"), format!("STK-{u}-2")];
    for s in &skus {
        let out = v.write(Stream::Products, vec![record(Stream::Products, json!({"sku": s, "name": s}))]).await.unwrap();
        action(&out[0]);
    }
    let batch = vec![
        record(Stream::Stock, json!({"sku": skus[0], "on_hand": "17", "available": "12"})),
        record(Stream::Stock, json!({"sku": skus[1], "on_hand": "3"})),
        record(Stream::Stock, json!({"sku": skus[1], "location": format!("Warehouse {u}"), "on_hand": "40"})),
        record(Stream::Stock, json!({"sku": format!("NOPE-{u}"), "on_hand": "1"})),
        record(Stream::Stock, json!({"sku": skus[0], "location": "half", "on_hand": "1.5"})),
    ];
    let out = by_key(v.write(Stream::Stock, batch.clone()).await.unwrap());
    assert_eq!(action(&out[&format!("{}@default", skus[0])]), WriteAction::Updated);
    assert_eq!(action(&out[&format!("{}@Warehouse {u}", skus[1])]), WriteAction::Updated);
    assert_eq!(out[&format!("NOPE-{u}@default")].result.clone().unwrap_err().field.as_deref(), Some("sku"));
    assert_eq!(out[&format!("{}@half", skus[0])].result.clone().unwrap_err().field.as_deref(), Some("on_hand"));

    let admin = Api::admin().await;
    let data = admin
        .ok("query($s:[String!]!){ productVariants(options:{filter:{sku:{in:$s}}}){ items { sku stockOnHand stockLevels { stockOnHand stockLocation { name } } } } }", json!({"s": skus}))
        .await;
    let got: HashMap<String, Value> = data["productVariants"]["items"].as_array().unwrap().iter().map(|x| (x["sku"].as_str().unwrap().to_owned(), x.clone())).collect();
    assert_eq!(got[&skus[0]]["stockOnHand"], 17, "stock_quantity = on_hand by default");
    let levels = got[&skus[1]]["stockLevels"].as_array().unwrap();
    assert!(levels.iter().any(|l| l["stockLocation"]["name"] == format!("Warehouse {u}") && l["stockOnHand"] == 40), "{levels:?}");
    assert!(levels.iter().any(|l| l["stockOnHand"] == 3), "{levels:?}");

    // Same levels again: no write.
    let again = by_key(v.write(Stream::Stock, batch[..3].to_vec()).await.unwrap());
    assert!(again.values().all(|o| action(o) == WriteAction::Unchanged));

    // stock_quantity = available puts the available quantity into stockOnHand.
    let va = connector_with(json!({"stock_quantity": "available"}));
    let out = va.write(Stream::Stock, vec![batch[0].clone()]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Updated);
    let data = admin.ok("query($s:String!){ productVariants(options:{filter:{sku:{eq:$s}}}){ items { stockOnHand } } }", json!({"s": skus[0]})).await;
    assert_eq!(data["productVariants"]["items"][0]["stockOnHand"], 12);
}

fn customer(code: &str, email: &str, group: &str) -> Value {
    json!({
        "code": code, "email": email, "first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Pty Ltd",
        "tax_id": "51 824 753 556", "phone": "+61 2 9000 0000", "group": group,
        "addresses": [
            {"key": "HQ", "name": "Ada Lovelace", "company": "Analytical Pty Ltd", "street": ["1 George St", "Level 3"], "city": "Sydney",
             "region": "NSW", "postcode": "2000", "country": "AU", "billing": true, "default_billing": true},
            {"key": "WH", "name": "Goods In", "street": ["7 Dock Rd"], "city": "Port Botany", "region": "NSW", "postcode": "2036",
             "country": "AU", "delivery": true, "default_delivery": true}
        ]
    })
}

#[tokio::test]
async fn customers_with_two_delivery_addresses_and_a_group() {
    let v = connector();
    let u = unique();
    let code = format!("C-{u}");
    let email = format!("ada-{u}@example.test");
    let group = format!("Trade {u}");
    let out = v.write(Stream::Customers, vec![record(Stream::Customers, customer(&code, &email, &group))]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Created);

    let admin = Api::admin().await;
    let q = "query($c:String!){ customers(options:{filter:{ferryCode:{eq:$c}}}){ items { id emailAddress firstName lastName phoneNumber
        customFields { ferryCode taxId company } groups { name }
        addresses { fullName streetLine1 streetLine2 city province postalCode country { code } defaultShippingAddress defaultBillingAddress customFields { ferryKey } } } } }";
    let data = admin.ok(q, json!({"c": code})).await;
    let c = &data["customers"]["items"][0];
    assert_eq!(c["emailAddress"], email);
    assert_eq!(c["customFields"]["taxId"], "51 824 753 556");
    assert_eq!(c["groups"], json!([{"name": group}]));
    let addrs = c["addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), 2);
    let hq = addrs.iter().find(|a| a["customFields"]["ferryKey"] == "HQ").unwrap();
    let wh = addrs.iter().find(|a| a["customFields"]["ferryKey"] == "WH").unwrap();
    assert_eq!((hq["defaultBillingAddress"].clone(), hq["defaultShippingAddress"].clone()), (json!(true), json!(false)));
    assert_eq!((wh["defaultBillingAddress"].clone(), wh["defaultShippingAddress"].clone()), (json!(false), json!(true)));
    assert_eq!(hq["streetLine2"], "Level 3");
    assert_eq!(wh["country"]["code"], "AU");

    // Unchanged on a re-sync; a changed address is updated in place (no third address).
    let again = v.write(Stream::Customers, vec![record(Stream::Customers, customer(&code, &email, &group))]).await.unwrap();
    assert_eq!(action(&again[0]), WriteAction::Unchanged);
    let mut moved = customer(&code, &email, &group);
    moved["addresses"][1]["street"] = json!(["9 Dock Rd"]);
    let out = v.write(Stream::Customers, vec![record(Stream::Customers, moved)]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Updated);
    let data = admin.ok(q, json!({"c": code})).await;
    let addrs = data["customers"]["items"][0]["addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().any(|a| a["streetLine1"] == "9 Dock Rd"));
}

#[tokio::test]
async fn an_error_result_fails_only_its_record() {
    // Two new customers with one e-mail in one batch: Vendure answers the second createCustomer with
    // an EMAIL_ADDRESS_CONFLICT_ERROR union (HTTP 200); only that record fails.
    let v = connector();
    let u = unique();
    let email = format!("dup-{u}@example.test");
    let out = by_key(
        v.write(Stream::Customers, vec![
            record(Stream::Customers, json!({"code": format!("D1-{u}"), "email": email, "first_name": "A", "last_name": "One"})),
            record(Stream::Customers, json!({"code": format!("D2-{u}"), "email": email, "first_name": "B", "last_name": "Two"})),
            record(Stream::Customers, json!({"code": format!("D3-{u}"), "email": format!("ok-{u}@example.test"), "first_name": "C", "last_name": "Three"})),
        ])
        .await
        .unwrap(),
    );
    assert_eq!(action(&out[&format!("D1-{u}")]), WriteAction::Created);
    assert_eq!(action(&out[&format!("D3-{u}")]), WriteAction::Created);
    let f = out[&format!("D2-{u}")].result.clone().unwrap_err();
    assert_eq!(f.field.as_deref(), Some("email"));
    assert!(f.message.contains("EMAIL_ADDRESS_CONFLICT_ERROR"), "{f:?}");
    assert!(!f.retryable);
}

#[tokio::test]
async fn group_price_becomes_a_promotion_and_quantity_breaks_fail_clearly() {
    let v = connector();
    let u = unique();
    let sku = format!("GP-{u}");
    action(&v.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Group priced", "price": {"amount": "50", "currency": "AUD", "tax_inclusive": false}}))]).await.unwrap()[0]);
    let group = format!("Wholesale {u}");
    let entry = json!({"price_list": "WHOLESALE", "sku": sku, "applies_to": {"kind": "customer_group", "code": group},
                       "price": {"amount": "44", "currency": "AUD", "tax_inclusive": true}, "valid_to": "2099-12-31"});
    let brk = json!({"price_list": "WHOLESALE", "sku": sku, "applies_to": {"kind": "customer_group", "code": group}, "min_quantity": "10",
                     "price": {"amount": "35", "currency": "AUD", "tax_inclusive": false}});
    let out = by_key(v.write(Stream::Prices, vec![record(Stream::Prices, entry.clone()), record(Stream::Prices, brk)]).await.unwrap());
    let key = format!("WHOLESALE/{sku}/1");
    assert_eq!(action(&out[&key]), WriteAction::Created);
    let f = out[&format!("WHOLESALE/{sku}/10")].result.clone().unwrap_err();
    assert_eq!(f.field.as_deref(), Some("min_quantity"));

    let admin = Api::admin().await;
    let data = admin
        .ok("query($n:String!){ promotions(options:{filter:{name:{eq:$n}}}){ items { enabled endsAt conditions { code args { name value } } actions { code args { name value } } } } customerGroups(options:{filter:{name:{eq:\"x\"}}}){ totalItems } }",
            json!({"n": format!("ferry:{key}")}))
        .await;
    let p = &data["promotions"]["items"][0];
    assert_eq!(p["conditions"][0]["code"], "customer_group");
    assert_eq!(p["actions"][0]["code"], "ferry_variant_fixed_price");
    let price_arg = p["actions"][0]["args"].as_array().unwrap().iter().find(|a| a["name"] == "price").unwrap();
    assert_eq!(price_arg["value"], "4000", "44.00 incl. GST = 40.00 net, the channel's tax mode");
    assert!(p["endsAt"].as_str().unwrap().starts_with("2100-01-01"), "valid_to is inclusive");
    // Idempotent.
    let again = v.write(Stream::Prices, vec![record(Stream::Prices, entry)]).await.unwrap();
    assert_eq!(action(&again[0]), WriteAction::Unchanged);
}

async fn read_all(v: &Vendure, request: ReadRequest) -> Vec<ReadItem> {
    v.read(request).map(|r| r.unwrap()).collect().await
}

#[tokio::test]
async fn shop_order_reads_back_reconciled_and_a_shipment_goes_back_as_shipped() {
    let v = connector();
    let u = unique();
    let admin = Api::admin().await;
    // Catalogue and customer from the "ERP".
    let skus = [format!("ORD-{u}-A"), format!("ORD-{u}-B")];
    let out = v
        .write(Stream::Products, vec![
            record(Stream::Products, json!({"sku": skus[0], "name": "Spade", "price": {"amount": "33.33", "currency": "AUD", "tax_inclusive": false}})),
            record(Stream::Products, json!({"sku": skus[1], "name": "Rake", "price": {"amount": "12.5", "currency": "AUD", "tax_inclusive": false}})),
        ])
        .await
        .unwrap();
    let ids: HashMap<String, String> = out.iter().map(|o| (o.key.clone(), o.result.clone().unwrap().target_id)).collect();
    let stock: Vec<WriteRecord> = skus.iter().map(|s| record(Stream::Stock, json!({"sku": s, "on_hand": "100"}))).collect();
    v.write(Stream::Stock, stock).await.unwrap();
    let code = format!("C-{u}");
    let email = format!("buyer-{u}@example.test");
    // A shopper with a login (Vendure's Admin API cannot set a password later), then the ERP's sync of
    // that customer finds it by its code and completes it.
    admin
        .ok("mutation($i:CreateCustomerInput!){ createCustomer(input:$i, password:\"secret123\"){ ... on Customer { id } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"emailAddress": email, "firstName": "Ada", "lastName": "Lovelace", "customFields": {"ferryCode": code}}}))
        .await;
    let out = v.write(Stream::Customers, vec![record(Stream::Customers, customer(&code, &email, &format!("Trade {u}")))]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Updated);
    // A 10 % coupon (order-level, so Vendure prorates it over the lines).
    let coupon = format!("TENOFF{u}").to_uppercase();
    admin
        .ok("mutation($i:CreatePromotionInput!){ createPromotion(input:$i){ ... on Promotion { id } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"enabled": true, "couponCode": coupon, "conditions": [],
                   "actions": [{"code": "order_percentage_discount", "arguments": [{"name": "discount", "value": "10"}]}],
                   "translations": [{"languageCode": "en", "name": format!("Ten off {u}")}]}}))
        .await;

    let since = chrono::Utc::now() - chrono::Duration::seconds(2);
    let number = place_order(&[(ids[&skus[0]].clone(), 3), (ids[&skus[1]].clone(), 1)], Buyer::Customer(&email), Some(&coupon)).await;

    // Targeted read by order code.
    let items = read_all(&v, ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: Some(vec![number.clone()]) }).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let ReadItem::Record(src) = &items[0] else { panic!("{:?}", items[0]) };
    let Record::Order(o) = Record::parse(Stream::Orders, src.data.clone(), &src.position).unwrap() else { unreachable!() };
    check_order(&o, &number, &skus, &code, &email, &coupon);
    assert_eq!(o.customer.guest, Some(false), "a registered customer (logged in at checkout)");

    // Incremental read from a checkpoint: the order is there, followed by a checkpoint.
    let items = read_all(&v, ReadRequest { stream: Some(Stream::Orders), checkpoint: Some(json!({"updated_at": since.to_rfc3339()})), keys: None }).await;
    assert!(items.iter().any(|i| matches!(i, ReadItem::Record(r) if r.data["number"] == number.as_str())), "order {number} in the incremental read");
    assert!(matches!(items.last(), Some(ReadItem::Checkpoint(c)) if c["updated_at"].is_string()), "{:?}", items.last());
    assert!(!items.iter().any(|i| matches!(i, ReadItem::Invalid { .. })), "every order translates: {items:?}");

    // Shipment back: a fulfilment with carrier and tracking code, Shipped.
    let ship_no = format!("SH-{u}");
    let shipment = record(Stream::Shipments, json!({"number": ship_no, "order_number": number, "carrier": "Australia Post",
        "tracking_code": format!("AP{u}"), "tracking_url": "https://auspost.example.test/track"}));
    let out = v.write(Stream::Shipments, vec![shipment.clone()]).await.unwrap();
    assert_eq!(action(&out[0]), WriteAction::Created);
    let fid = out[0].result.clone().unwrap().target_id;
    let data = admin
        .ok("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { state fulfillments { id state method trackingCode customFields { ferryShipmentNumber trackingUrl } } } } }", json!({"c": number}))
        .await;
    let ord = &data["orders"]["items"][0];
    assert_eq!(ord["state"], "Shipped");
    let f = &ord["fulfillments"][0];
    assert_eq!(f["id"], fid.as_str());
    assert_eq!(f["state"], "Shipped");
    assert_eq!(f["method"], "Australia Post");
    assert_eq!(f["trackingCode"], format!("AP{u}"));
    assert_eq!(f["customFields"]["ferryShipmentNumber"], ship_no.as_str());

    // Exactly once: find_by_key finds it, writing it again does not add a second fulfilment.
    let found = v.find_by_key(Stream::Shipments, &[ship_no.clone(), format!("SH-NONE-{u}")]).await.unwrap();
    assert_eq!(found.get(&ship_no), Some(&fid));
    assert_eq!(found.len(), 1);
    let again = v.write(Stream::Shipments, vec![shipment]).await.unwrap();
    assert_eq!(action(&again[0]), WriteAction::Unchanged);
    // A second shipment for an order with nothing left to ship fails alone.
    let extra = record(Stream::Shipments, json!({"number": format!("SH2-{u}"), "order_number": number, "lines": [{"sku": skus[0], "quantity": "1"}]}));
    let out = v.write(Stream::Shipments, vec![extra]).await.unwrap();
    let fail = out[0].result.clone().unwrap_err();
    assert_eq!(fail.field.as_deref(), Some("lines"), "{fail:?}");
    let data = admin.ok("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { fulfillments { id state } } } }", json!({"c": number})).await;
    let live: Vec<&Value> = data["orders"]["items"][0]["fulfillments"].as_array().unwrap().iter().filter(|f| f["state"] != "Cancelled").collect();
    assert_eq!(live.len(), 1, "{data}");
}

fn check_order(o: &Order, number: &str, skus: &[String], code: &str, email: &str, coupon: &str) {
    use rust_decimal::Decimal;
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    assert_eq!(o.number, number);
    assert_eq!(o.currency.code(), "AUD");
    assert!(!o.prices_include_tax);
    assert_eq!(o.status, ferry_model::OrderStatus::Confirmed);
    assert_eq!(o.customer.code.as_deref(), Some(code), "customer code from the ferryCode custom field");
    assert_eq!(o.customer.email.as_deref(), Some(email));
    assert_eq!(o.lines.len(), 2);
    let a = o.lines.iter().find(|l| l.sku == skus[0]).unwrap();
    assert_eq!((a.quantity, a.unit_price, a.total), (d("3"), d("33.33"), d("99.99")));
    assert_eq!(a.taxes[0].rate, Some(d("0.1")));
    let b = o.lines.iter().find(|l| l.sku == skus[1]).unwrap();
    assert_eq!((b.quantity, b.unit_price), (d("1"), d("12.5")));
    // 10 % coupon on 112.49 net = 11.25 off (Vendure rounds per line: accept its cents, but they must reconcile).
    assert_eq!(o.coupons, vec![coupon.to_owned()]);
    assert_eq!(o.discounts.len(), 1);
    assert!(o.totals.discount >= d("11.24") && o.totals.discount <= d("11.26"), "{:?}", o.totals);
    assert_eq!(o.totals.shipping, d("9.95"));
    assert_eq!(o.shipping[0].method, "standard");
    assert_eq!(o.shipping[0].taxes[0].amount, d("1"), "GST on 9.95 rounds to 1.00");
    assert_eq!(o.payments.len(), 1);
    assert_eq!(o.payments[0].amount, o.totals.total);
    assert_eq!(o.payments[0].status.as_deref(), Some("settled"));
    assert!(o.reconcile().is_empty(), "{:?}", o.reconcile());
    // Total = (112.49 − discount + 9.95) × 1.1, to the cent as Vendure computed it.
    let expected_tax = o.totals.tax;
    assert_eq!(o.totals.total, o.totals.subtotal + o.totals.shipping - o.totals.discount + expected_tax);
    assert_eq!(o.shipping_address.as_ref().unwrap().postcode.as_deref(), Some("2036"));
    assert_eq!(o.billing_address.as_ref().unwrap().country.as_deref(), Some("AU"));
}

#[tokio::test]
async fn webhook_plugin_posts_signed_product_events() {
    use hmac::{Hmac, Mac};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let v = connector();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", support::webhook_port())).await.expect("webhook test port 18301 free");
    let sku = format!("HOOK-{}", unique());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(HashMap<String, String>, Vec<u8>)>();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let tx = tx.clone();
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
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    let _ = sock.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
                    let _ = tx.send((headers, body));
                    return;
                }
            });
        }
    });
    action(&v.write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Hooked"}))]).await.unwrap()[0]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (headers, body) = tokio::time::timeout_at(deadline, rx.recv()).await.expect("a webhook POST naming the SKU within 15 s").unwrap();
        let text = String::from_utf8_lossy(&body);
        if !text.contains(&sku) {
            continue; // other tests' events share the server
        }
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert!(event["type"] == "variant.created" || event["type"] == "product.created", "{event}");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(support::WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(&body);
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(headers.get("x-ferry-signature"), Some(&format!("sha256={expected}")), "{headers:?}");
        let ts: i64 = headers["x-ferry-timestamp"].parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        break;
    }
}

/// An order that changes while a long incremental read goes on moves to the end of the `updatedAt` order;
/// the orders after it must not slip past the read (offset paging skipped the one at the page boundary).
#[tokio::test]
async fn an_order_changed_during_a_paged_read_does_not_make_the_read_skip_another() {
    let v = connector_with(json!({"page_size": 1}));
    let u = unique();
    let admin = Api::admin().await;
    let sku = format!("PAGE-{u}");
    let out = v
        .write(Stream::Products, vec![record(Stream::Products, json!({"sku": sku, "name": "Trowel", "price": {"amount": "9", "currency": "AUD", "tax_inclusive": false}}))])
        .await
        .unwrap();
    let variant = out[0].result.clone().unwrap().target_id;
    v.write(Stream::Stock, vec![record(Stream::Stock, json!({"sku": sku, "on_hand": "100"}))]).await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::seconds(2);
    let mut ours = Vec::new();
    for i in 0..3 {
        let email = format!("pager-{i}-{u}@example.test");
        ours.push(place_order(&[(variant.clone(), 1)], Buyer::Guest { email: &email, first_name: "Page", last_name: "Turner" }, None).await);
    }

    let request = ReadRequest { stream: Some(Stream::Orders), checkpoint: Some(json!({"updated_at": since.to_rfc3339()})), keys: None };
    let mut items = v.read(request);
    let mut numbers = Vec::new();
    while let Some(item) = items.next().await {
        let ReadItem::Record(r) = item.unwrap() else { continue };
        let number = r.data["number"].as_str().unwrap().to_owned();
        if ours.contains(&number) {
            assert_eq!(r.data["customer"]["guest"], true, "{number} was a guest checkout");
        }
        if numbers.is_empty() {
            // The first order read changes now (as a shop does when an order is paid, shipped, noted).
            let data = admin.ok("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { id } } }", json!({"c": number})).await;
            let id = data["orders"]["items"][0]["id"].clone();
            admin
                .ok("mutation($i:UpdateOrderInput!){ setOrderCustomFields(input:$i){ ... on Order { id } } }",
                    json!({"i": {"id": id, "customFields": {"ferryShipments": format!(";touched-{u};")}}}))
                .await;
        }
        numbers.push(number);
    }
    for number in &ours {
        assert!(numbers.contains(number), "order {number} missing from the read: {numbers:?}");
    }
}
