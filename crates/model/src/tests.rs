use super::*;
use serde_json::json;

fn order_json() -> serde_json::Value {
    json!({
        "number": "WEB-1001",
        "placed_at": "2026-11-20T10:00:00Z",
        "currency": "AUD",
        "prices_include_tax": false,
        "customer": {"email": "jo@example.com"},
        "lines": [
            {"sku": "SPADE-1", "quantity": "2", "unit_price": "25.00", "total": "50.00",
             "taxes": [{"name": "GST", "rate": "0.10", "amount": "5.00"}]},
            {"sku": "RAKE-1", "quantity": 1, "unit_price": 13.5, "discount": "0.50", "total": "13.00",
             "taxes": [{"name": "GST", "rate": "0.10", "amount": "1.30"}]}
        ],
        "shipping": [{"method": "Standard", "amount": "10.00", "taxes": [{"name": "GST", "amount": "1.00"}]}],
        "discounts": [{"kind": "coupon", "code": "SAVE5", "amount": "5.00"}],
        "coupons": ["SAVE5"],
        "totals": {"subtotal": "63.00", "shipping": "10.00", "discount": "5.00", "tax": "7.30", "total": "75.30"}
    })
}

#[test]
fn a_consistent_order_parses_and_reconciles() {
    let r = Record::parse(Stream::Orders, order_json(), "line 1").unwrap();
    assert_eq!(r.key(), "WEB-1001");
    let Record::Order(o) = r else { panic!() };
    assert_eq!(o.lines[1].unit_price.to_string(), "13.5");
    assert!(o.reconcile().is_empty());
}

#[test]
fn a_total_off_by_a_cent_is_flagged_with_the_field() {
    let mut v = order_json();
    v["totals"]["total"] = json!("75.31");
    let err = Record::parse(Stream::Orders, v, "line 1").unwrap_err();
    assert_eq!(err.record, "WEB-1001");
    assert_eq!(err.field(), "totals.total");
    assert!(err.to_string().contains("off by 0.01"), "{err}");
}

#[test]
fn a_negative_quantity_names_the_line() {
    let mut v = order_json();
    v["lines"][1]["quantity"] = json!("-1");
    let err = Record::parse(Stream::Orders, v, "line 1").unwrap_err();
    assert!(err.errors.iter().any(|e| e.field == "lines[1].quantity" && e.message.contains("positive")), "{err}");
}

#[test]
fn an_unknown_currency_names_the_field() {
    let mut v = order_json();
    v["currency"] = json!("AUX");
    let err = Record::parse(Stream::Orders, v, "line 1").unwrap_err();
    assert_eq!(err.field(), "currency");
    assert!(err.to_string().contains("AUX"));
}

#[test]
fn a_product_with_a_bad_price_names_record_and_field() {
    let v = json!({"sku": "SPADE-1", "name": "Spade", "price": {"amount": "abc", "currency": "AUD", "tax_inclusive": true}});
    let err = Record::parse(Stream::Products, v, "line 7").unwrap_err();
    assert_eq!(err.record, "SPADE-1");
    assert_eq!(err.field(), "price.amount");
}

#[test]
fn a_record_without_key_is_named_by_position() {
    let err = Record::parse(Stream::Products, json!({"name": "x"}), "products.csv line 7").unwrap_err();
    assert_eq!(err.record, "products.csv line 7");
    assert!(err.to_string().contains("sku"), "{err}");
}

#[test]
fn unknown_fields_are_rejected_so_typos_surface() {
    let err = Record::parse(Stream::Products, json!({"sku": "A", "name": "x", "prize": 1}), "l").unwrap_err();
    assert!(err.to_string().contains("prize"), "{err}");
}

#[test]
fn canonical_form_is_stable_and_normalised() {
    let a = json!({"sku": "A", "name": "x", "price": {"amount": "19.90", "currency": "aud", "tax_inclusive": true},
                   "custom": {"b": 1, "a": 2}});
    let b = json!({"custom": {"a": 2, "b": 1}, "price": {"tax_inclusive": true, "currency": "AUD", "amount": 19.9},
                   "name": "x", "sku": "A"});
    let ra = Record::parse(Stream::Products, a, "").unwrap();
    let rb = Record::parse(Stream::Products, b, "").unwrap();
    assert_eq!(serde_json::to_string(&ra).unwrap(), serde_json::to_string(&rb).unwrap());
    assert!(serde_json::to_string(&ra).unwrap().contains(r#""amount":"19.9""#));
}

#[test]
fn keys_of_composite_streams() {
    let s = Record::parse(Stream::Stock, json!({"sku": "A", "location": "WH", "on_hand": 3}), "").unwrap();
    assert_eq!(s.key(), "A@WH");
    let p = Record::parse(
        Stream::Prices,
        json!({"price_list": "TRADE", "sku": "A", "min_quantity": "10.0",
               "applies_to": {"kind": "customer_group", "code": "trade"},
               "price": {"amount": "9", "currency": "AUD", "tax_inclusive": false}}),
        "",
    )
    .unwrap();
    assert_eq!(p.key(), "TRADE/A/10");
}

#[test]
fn customers_with_several_delivery_addresses() {
    let c = json!({"code": "C1", "email": "buyer@trade.example", "addresses": [
        {"key": "hq", "street": ["1 Main St"], "city": "Sydney", "country": "AU", "billing": true, "default_billing": true},
        {"key": "store-2", "street": ["2 Side St"], "city": "Parramatta", "country": "AU", "delivery": true, "default_delivery": true},
        {"key": "store-3", "street": ["3 Back Rd"], "city": "Penrith", "country": "Australia", "delivery": true}
    ]});
    let err = Record::parse(Stream::Customers, c, "").unwrap_err();
    assert_eq!(err.field(), "addresses[2].country");
}

#[test]
fn the_schema_covers_every_stream() {
    let s = schema::model_schema();
    for stream in Stream::ALL {
        assert!(s["streams"][stream.as_str()]["properties"].is_object(), "{stream}");
    }
    assert_eq!(s["streams"]["products"]["properties"]["sku"]["type"], "string");
}

#[test]
fn key_hints_from_raw_json_match_record_keys() {
    for (stream, v) in [
        (Stream::Stock, json!({"sku": "A", "location": "WH", "on_hand": "3"})),
        (Stream::Stock, json!({"sku": "A", "on_hand": "3"})),
        (Stream::Prices, json!({"price_list": "T", "sku": "A", "min_quantity": "10.0",
                                "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}})),
        (Stream::Prices, json!({"price_list": "T", "sku": "A", "price": {"amount": "1", "currency": "AUD", "tax_inclusive": false}})),
    ] {
        let record = Record::parse(stream, v.clone(), "").unwrap();
        assert_eq!(key_hint(stream, &v), Some(record.key()));
    }
}

/// Found by hand, kept as a regression test: a quantity at `Decimal::MAX` made `Order::reconcile` panic on
/// the multiplication, which stopped the whole flow on every run. Now it is a validation error naming the
/// record and the line.
#[test]
fn an_order_whose_amounts_overflow_is_a_validation_error_not_a_panic() {
    let mut v = order_json();
    v["lines"][0]["quantity"] = json!("79228162514264337593543950335");
    let err = Record::parse(Stream::Orders, v, "line 1").unwrap_err();
    assert_eq!(err.record, "WEB-1001");
    assert_eq!(err.field(), "lines[0].total");
    assert!(err.to_string().contains("out of range"), "{err}");

    // Sums overflow too: two line totals near the limit.
    let mut v = order_json();
    for line in v["lines"].as_array_mut().unwrap() {
        line["quantity"] = json!("1");
        line["unit_price"] = json!("50000000000000000000000000000");
        line["discount"] = json!("0");
        line["total"] = json!("50000000000000000000000000000");
    }
    let err = Record::parse(Stream::Orders, v, "line 1").unwrap_err();
    assert!(err.errors.iter().any(|e| e.field == "totals.subtotal" && e.message.contains("out of range")), "{err}");
}

#[test]
fn a_missing_field_is_named_as_the_failure_field() {
    let err = Record::parse(Stream::Products, json!({"name": "Spade"}), "products.csv line 2").unwrap_err();
    assert_eq!(err.field(), "sku", "{err}");
    assert!(err.to_string().contains("missing field `sku`"), "{err}");
    // Nested: the path of the object that lacks it, then the field.
    let v = json!({"sku": "S-1", "name": "Spade", "price": {"currency": "AUD", "tax_inclusive": true}});
    let err = Record::parse(Stream::Products, v, "line 3").unwrap_err();
    assert_eq!(err.field(), "price.amount", "{err}");
    let err = Record::parse(Stream::Products, json!({"sku": "S-1", "name": "Spade", "colour": "red"}), "line 4").unwrap_err();
    assert_eq!(err.field(), "colour", "{err}");
}

fn stock(extra: serde_json::Value) -> StockLevel {
    let mut v = json!({"sku": "S-1", "location": "MAIN"});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    match Record::parse(Stream::Stock, v, "line 1").unwrap() {
        Record::Stock(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn stock_without_a_status_gets_the_one_its_quantities_imply() {
    assert_eq!(stock(json!({"on_hand": "0"})).status, StockStatus::TemporarilyOut);
    assert_eq!(stock(json!({"on_hand": "-3"})).status, StockStatus::TemporarilyOut);
    // Available, not on hand, decides: all of it reserved.
    assert_eq!(stock(json!({"on_hand": "4", "available": "0"})).status, StockStatus::TemporarilyOut);
    assert_eq!(stock(json!({"on_hand": "12"})).status, StockStatus::InStock);
    // Without a threshold nothing is `low`; with one, at or below it is.
    assert_eq!(stock(json!({"on_hand": "1"})).status, StockStatus::InStock);
    assert_eq!(stock(json!({"on_hand": "5", "low_stock_threshold": "5"})).status, StockStatus::Low);
    assert_eq!(stock(json!({"on_hand": "6", "low_stock_threshold": "5"})).status, StockStatus::InStock);
    // A status the source states is kept, whatever the quantities.
    assert_eq!(stock(json!({"on_hand": "0", "status": "backorder"})).status, StockStatus::Backorder);
    assert_eq!(stock(json!({"on_hand": "40", "status": "discontinued"})).status, StockStatus::Discontinued);
}

#[test]
fn a_negative_low_stock_threshold_is_refused() {
    let err = Record::parse(Stream::Stock, json!({"sku": "S-1", "on_hand": "3", "low_stock_threshold": "-1"}), "line 1").unwrap_err();
    assert_eq!(err.field(), "low_stock_threshold");
}
