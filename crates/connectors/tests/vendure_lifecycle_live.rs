//! Orders cancelled and refunded in a real Vendure 3.7.3 (scripts/peers/vendure/up.sh, port 18300), read
//! back by the connector as the order's lifecycle: status, `cancelled_at`, refunds with their GST.
#![cfg(feature = "vendure")]

mod support;

use ferry_connectors::vendure::{Options, Vendure};
use ferry_engine::{Connector, ReadItem, ReadRequest, WriteRecord};
use ferry_model::{Order, OrderStatus, Record, Stream};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use support::{Api, Buyer, place_order, unique};

fn connector() -> Vendure {
    let peer = support::vendure();
    let options = json!({"url": peer.base_url, "username": peer.username, "password": peer.password});
    Vendure::new(serde_json::from_value::<Options>(options).unwrap(), "test").unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Two products (33.33 and 12.50 net, GST 10 %) in stock; returns (sku A, variant A, sku B, variant B).
async fn catalogue(v: &Vendure, u: &str) -> (String, String, String, String) {
    let (a, b) = (format!("LC-{u}-A"), format!("LC-{u}-B"));
    let product = |sku: &str, name: &str, price: &str| {
        let record = Record::parse(Stream::Products, json!({"sku": sku, "name": name, "price": {"amount": price, "currency": "AUD", "tax_inclusive": false}}), "test").unwrap();
        WriteRecord { key: record.key(), target_id: None, record, previous: None }
    };
    let out = v.write(Stream::Products, vec![product(&a, "Spade", "33.33"), product(&b, "Rake", "12.50")]).await.unwrap();
    let id = |sku: &str| out.iter().find(|o| o.key == sku).unwrap().result.clone().unwrap().target_id;
    let (va, vb) = (id(&a), id(&b));
    let stock = |sku: &str| {
        let record = Record::parse(Stream::Stock, json!({"sku": sku, "on_hand": "100"}), "test").unwrap();
        WriteRecord { key: record.key(), target_id: None, record, previous: None }
    };
    v.write(Stream::Stock, vec![stock(&a), stock(&b)]).await.unwrap();
    (a, va, b, vb)
}

async fn read_order(v: &Vendure, number: &str) -> Order {
    let items: Vec<ReadItem> = v.read(ReadRequest { stream: Some(Stream::Orders), checkpoint: None, keys: Some(vec![number.to_owned()]) }).map(|r| r.unwrap()).collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let ReadItem::Record(src) = &items[0] else { panic!("the order does not translate: {:?}", items[0]) };
    match Record::parse(Stream::Orders, src.data.clone(), &src.position).unwrap() {
        Record::Order(o) => o,
        _ => unreachable!(),
    }
}

async fn order_ids(admin: &Api, number: &str) -> Value {
    let data = admin.ok("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { id lines { id productVariant { sku } } payments { id } } } }", json!({"c": number})).await;
    data["orders"]["items"][0].clone()
}

#[tokio::test]
async fn an_order_cancelled_after_it_was_paid_reads_as_cancelled_with_when_and_what() {
    let v = connector();
    let u = unique();
    let admin = Api::admin().await;
    let (a, va, b, vb) = catalogue(&v, &u).await;
    let email = format!("cancel-{u}@example.test");
    let number = place_order(&[(va, 2), (vb, 1)], Buyer::Guest { email: &email, first_name: "Can", last_name: "Cel" }, None).await;
    let placed = read_order(&v, &number).await;
    assert_eq!(placed.status, OrderStatus::Confirmed);
    assert_eq!(placed.cancelled_at, None);
    let since = chrono::Utc::now() - chrono::Duration::seconds(2);

    let ids = order_ids(&admin, &number).await;
    admin
        .ok("mutation($i:CancelOrderInput!){ cancelOrder(input:$i){ ... on Order { state } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"orderId": ids["id"], "reason": "customer changed their mind"}}))
        .await;
    let o = read_order(&v, &number).await;
    assert_eq!(o.status, OrderStatus::Cancelled);
    let at = o.cancelled_at.expect("cancelled_at");
    // Vendure's history keeps whole seconds on sql.js: the cancellation may read up to a second before
    // the placement's millisecond time.
    assert!(at >= placed.placed_at - chrono::Duration::seconds(1) && at <= chrono::Utc::now() + chrono::Duration::seconds(5), "{at} after {}", placed.placed_at);
    // Vendure zeroes a cancelled order's lines; the canonical order keeps what was cancelled.
    let qty = |sku: &str| o.lines.iter().find(|l| l.sku == sku).map(|l| l.quantity);
    assert_eq!((qty(&a), qty(&b)), (Some(d("2")), Some(d("1"))));
    assert_eq!(o.totals.total, placed.totals.total, "what was cancelled, as it was paid");
    assert!(o.refunds.is_empty());

    // A cancellation moves the order's updatedAt: the incremental read brings it.
    let items: Vec<ReadItem> = v
        .read(ReadRequest { stream: Some(Stream::Orders), checkpoint: Some(json!({"updated_at": since.to_rfc3339()})), keys: None })
        .map(|r| r.unwrap())
        .collect()
        .await;
    let seen = items.iter().any(|i| matches!(i, ReadItem::Record(r) if r.data["number"] == number.as_str() && r.data["status"] == "cancelled"));
    assert!(seen, "the cancelled order {number} in the incremental read (Cancelled is among the states read by default)");
}

#[tokio::test]
async fn a_refund_of_one_unit_and_the_shipping_reads_with_its_amounts_and_gst_to_the_cent() {
    let v = connector();
    let u = unique();
    let admin = Api::admin().await;
    let (a, va, b, vb) = catalogue(&v, &u).await;
    let email = format!("refund-{u}@example.test");
    let number = place_order(&[(va, 2), (vb, 1)], Buyer::Guest { email: &email, first_name: "Re", last_name: "Fund" }, None).await;
    let placed = read_order(&v, &number).await;
    // 66.66 + 12.50 + 9.95 shipping, GST per line 6.67 + 1.25 + 1.00 = 8.92: 98.03.
    assert_eq!(placed.totals.total, d("98.03"));

    // Vendure 3.7 refunds units through an order modification: one A off, refunded with the shipping.
    let ids = order_ids(&admin, &number).await;
    let line_a = ids["lines"].as_array().unwrap().iter().find(|l| l["productVariant"]["sku"] == a.as_str()).unwrap()["id"].clone();
    let state = |s: &str| format!("mutation($id:ID!){{ transitionOrderToState(id:$id, state:\"{s}\"){{ ... on Order {{ state }} ... on OrderStateTransitionError {{ errorCode message transitionError }} }} }}");
    admin.ok(&state("Modifying"), json!({"id": ids["id"]})).await;
    admin
        .ok("mutation($i:ModifyOrderInput!){ modifyOrder(input:$i){ ... on Order { state } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"dryRun": false, "orderId": ids["id"], "adjustOrderLines": [{"orderLineId": line_a, "quantity": 1}],
                   "refund": {"paymentId": ids["payments"][0]["id"], "amount": 3666 + 1095, "reason": "arrived broken"}, "note": "return"}}))
        .await;
    // Back to PaymentSettled where Vendure allows it: with the refund settled at once (the peer's payment
    // handler), the shipping refunded but still charged leaves the total uncovered and the order stays
    // Modifying. What Ferry reads is the same either way.
    admin.raw(&state("PaymentSettled"), json!({"id": ids["id"]})).await;

    let o = read_order(&v, &number).await;
    assert_eq!(o.status, OrderStatus::PartiallyRefunded);
    assert_eq!(o.refunds.len(), 1, "{:?}", o.refunds);
    let r = &o.refunds[0];
    assert_eq!(r.reason.as_deref(), Some("arrived broken"));
    assert!(r.refunded_at.is_some());
    assert_eq!(r.lines.len(), 1);
    assert_eq!((r.lines[0].sku.as_str(), r.lines[0].quantity, r.lines[0].amount, r.lines[0].tax), (a.as_str(), d("1"), d("33.33"), d("3.33")));
    assert_eq!((r.shipping, r.shipping_tax, r.adjustment), (d("9.95"), d("1.00"), d("0")));
    assert_eq!((r.tax, r.total), (d("4.33"), d("47.61")));
    // The refunded unit stays on the order (the refund accounts for it), so the order is what was paid.
    let qty = |sku: &str| o.lines.iter().find(|l| l.sku == sku).map(|l| l.quantity);
    assert_eq!((qty(&a), qty(&b)), (Some(d("2")), Some(d("1"))));
    assert_eq!(o.totals, placed.totals);
}

#[tokio::test]
async fn a_partial_cancellation_without_refund_reads_as_a_lower_quantity() {
    let v = connector();
    let u = unique();
    let admin = Api::admin().await;
    let (a, va, b, vb) = catalogue(&v, &u).await;
    let email = format!("partial-{u}@example.test");
    let number = place_order(&[(va, 2), (vb, 1)], Buyer::Guest { email: &email, first_name: "Part", last_name: "Ial" }, None).await;
    let ids = order_ids(&admin, &number).await;
    let line_a = ids["lines"].as_array().unwrap().iter().find(|l| l["productVariant"]["sku"] == a.as_str()).unwrap()["id"].clone();
    admin
        .ok("mutation($i:CancelOrderInput!){ cancelOrder(input:$i){ ... on Order { state } ... on ErrorResult { errorCode message } } }",
            json!({"i": {"orderId": ids["id"], "lines": [{"orderLineId": line_a, "quantity": 1}], "reason": "out of stock"}}))
        .await;
    let o = read_order(&v, &number).await;
    assert_eq!(o.status, OrderStatus::Confirmed, "still a live order");
    assert_eq!(o.cancelled_at, None);
    let qty = |sku: &str| o.lines.iter().find(|l| l.sku == sku).map(|l| l.quantity);
    assert_eq!((qty(&a), qty(&b)), (Some(d("1")), Some(d("1"))));
    // 33.33 + 12.50 + 9.95 = 55.78 net, GST 3.33 + 1.25 + 1.00 = 5.58.
    assert_eq!((o.totals.subtotal, o.totals.tax, o.totals.total), (d("45.83"), d("5.58"), d("61.36")));
    assert!(o.refunds.is_empty());
}
