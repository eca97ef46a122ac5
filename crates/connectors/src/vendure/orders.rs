//! Orders: read incrementally (`updatedAt` ≥ checkpoint − overlap, sorted by `updatedAt`, paged by the last
//! `updatedAt` read, only states past the cart: option `order_states`) or by order code, as canonical Orders.
//!
//! Vendure keeps money as integer minor units; amounts convert exactly. The channel's
//! `pricesIncludeTax` decides the canonical tax mode (orders do not expose it). Vendure folds order-level discounts into
//! `proratedLinePrice`; canonically they are the order's `discounts` instead:
//! line total = discountedLinePrice (line-level promotions only), order discount = Σ line totals −
//! subTotal, shipping = discountedPrice, tax = totalWithTax − total, total = totalWithTax. Every order is
//! validated with `Record::parse` (totals reconcile to the cent); one that does not translate becomes a
//! `ReadItem::Invalid` naming the order code and field.

use super::{Vendure, money};
use ferry_engine::{ConnectorError, ReadItem, ReadRequest, SourceRecord};
use ferry_model::{Currency, Record, Stream};
use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const ORDER_FIELDS: &str = "id code state orderPlacedAt updatedAt currencyCode couponCodes
  customer { id emailAddress firstName lastName phoneNumber customFields { ferryCode taxId company } }
  shippingAddress { fullName company streetLine1 streetLine2 city province postalCode countryCode phoneNumber }
  billingAddress { fullName company streetLine1 streetLine2 city province postalCode countryCode phoneNumber }
  lines { id quantity productVariant { sku name } unitPrice unitPriceWithTax discountedLinePrice discountedLinePriceWithTax
          proratedLinePrice proratedLinePriceWithTax taxLines { description taxRate } }
  shippingLines { shippingMethod { code name } discountedPrice discountedPriceWithTax }
  promotions { name couponCode }
  subTotal subTotalWithTax shipping shippingWithTax total totalWithTax
  payments { method amount state transactionId }";

/// Keyset paging over `updatedAt`: each page asks for orders updated at or after the last one read, so an
/// order that changes while a long read goes on moves to the end of the list and is read there, instead
/// of shifting every later order back by one (with `skip` paging, the order at the page boundary was
/// skipped and the checkpoint moved past it).
struct Page {
    since: Option<String>,
    /// `updatedAt` of the last order read, and the ids read with exactly that time (read again by the
    /// next page's "at or after" filter, and dropped there).
    cursor: Option<String>,
    read_at_cursor: std::collections::HashSet<String>,
    /// Only when a whole page held orders already read at the cursor (more orders with one `updatedAt`
    /// than a page): step over them.
    skip: usize,
    done: bool,
}

/// One millisecond before an RFC 3339 time: Vendure's `after` is strict, and times travel in milliseconds.
fn just_before(time: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(time).ok()?;
    Some((t - chrono::Duration::milliseconds(1)).with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

pub(crate) fn read(v: &Vendure, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
    let since = request.checkpoint.as_ref().and_then(|c| c.get("updated_at")).and_then(Value::as_str).and_then(|s| {
        chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| (t.with_timezone(&chrono::Utc) - chrono::Duration::seconds(v.options.overlap_seconds)).to_rfc3339())
    });
    let keys = request.keys.clone();
    let state = Page { since, cursor: None, read_at_cursor: Default::default(), skip: 0, done: false };
    futures::stream::unfold(state, move |mut st| {
        let keys = keys.clone();
        async move {
            if st.done {
                return None;
            }
            let take = v.options.page_size.clamp(1, 100);
            let mut filter = serde_json::Map::new();
            match &keys {
                Some(k) => {
                    filter.insert("code".into(), json!({"in": k}));
                }
                None => {
                    filter.insert("state".into(), json!({"in": v.options.order_states}));
                    // A cart cancelled before checkout is Cancelled too, but was never an order.
                    filter.insert("orderPlacedAt".into(), json!({"isNull": false}));
                    let from_cursor = st.cursor.as_deref().and_then(just_before);
                    if let Some(after) = from_cursor.as_ref().or(st.since.as_ref()) {
                        filter.insert("updatedAt".into(), json!({"after": after}));
                    }
                }
            }
            let options = json!({"filter": filter, "sort": {"updatedAt": "ASC"}, "skip": st.skip, "take": take});
            let q = format!("query($o:OrderListOptions){{ orders(options:$o){{ totalItems items {{ {ORDER_FIELDS} }} }} }}");
            // Vendure does not expose the tax mode on the order: it is the channel's.
            let pit = match v.channel().await {
                Ok(ch) => ch.prices_include_tax,
                Err(e) => {
                    st.done = true;
                    return Some((vec![Err(e)], st));
                }
            };
            let data = match v.gql.query(&q, json!({"o": options})).await {
                Ok(d) => d,
                Err(e) => {
                    st.done = true;
                    return Some((vec![Err(e)], st));
                }
            };
            let items = data.pointer("/orders/items").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut out: Vec<Result<ReadItem, ConnectorError>> = Vec::with_capacity(items.len() + 1);
            let mut fresh = 0;
            for o in &items {
                let (id, updated) = (o["id"].as_str().unwrap_or_default(), o["updatedAt"].as_str().unwrap_or_default());
                if st.cursor.as_deref() == Some(updated) && st.read_at_cursor.contains(id) {
                    continue; // read on the previous page
                }
                if st.cursor.as_deref() != Some(updated) {
                    st.cursor = Some(updated.to_owned());
                    st.read_at_cursor.clear();
                }
                st.read_at_cursor.insert(id.to_owned());
                fresh += 1;
                out.push(Ok(translate(o, pit)));
            }
            // A short page is the last; a full page of orders already read steps over them.
            st.done = items.len() < take;
            st.skip = if fresh == 0 { st.read_at_cursor.len() } else { 0 };
            if keys.is_none()
                && let Some(last) = &st.cursor
            {
                out.push(Ok(ReadItem::Checkpoint(json!({"updated_at": last}))));
            }
            Some((out, st))
        }
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

/// One Vendure order → a canonical order record, or `Invalid` naming the order and field.
pub fn translate(o: &Value, prices_include_tax: bool) -> ReadItem {
    let code = o["code"].as_str().unwrap_or("?").to_owned();
    let position = format!("vendure order {code}");
    let invalid = |field: &str, message: String| ReadItem::Invalid {
        position: position.clone(),
        key: Some(code.clone()),
        raw: o.clone(),
        field: field.to_owned(),
        message,
    };
    match canonical(o, prices_include_tax) {
        Err((field, message)) => invalid(&field, message),
        Ok(value) => match Record::parse(Stream::Orders, value.clone(), &position) {
            Ok(_) => ReadItem::Record(SourceRecord { position, data: value }),
            Err(e) => {
                let field = e.errors.first().map(|f| f.field.clone()).unwrap_or_default();
                invalid(&field, e.to_string())
            }
        },
    }
}

type Bad = (String, String);

fn canonical(o: &Value, pit: bool) -> Result<Value, Bad> {
    let c = Currency::parse(o["currencyCode"].as_str().unwrap_or_default()).map_err(|e| ("currency".to_owned(), e))?;
    let m = |v: &Value, field: &str| money(c, v).ok_or_else(|| (field.to_owned(), format!("missing or not an integer amount: {v}")));
    let placed_at = o["orderPlacedAt"].as_str().ok_or_else(|| ("placed_at".to_owned(), "order has no orderPlacedAt (still a cart?)".to_owned()))?;

    let mut lines = Vec::new();
    let mut line_sum = Decimal::ZERO;
    for (i, l) in o["lines"].as_array().into_iter().flatten().enumerate() {
        let f = |name: &str| format!("lines[{i}].{name}");
        let sku = l.pointer("/productVariant/sku").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| (f("sku"), "line without a SKU".to_owned()))?;
        let qty = Decimal::from(l["quantity"].as_i64().ok_or_else(|| (f("quantity"), "missing".to_owned()))?);
        let unit = if pit { m(&l["unitPriceWithTax"], &f("unit_price"))? } else { m(&l["unitPrice"], &f("unit_price"))? };
        let total = if pit { m(&l["discountedLinePriceWithTax"], &f("total"))? } else { m(&l["discountedLinePrice"], &f("total"))? };
        // Tax actually charged on the line (after prorated order-level discounts).
        let tax = m(&l["proratedLinePriceWithTax"], &f("taxes"))? - m(&l["proratedLinePrice"], &f("taxes"))?;
        line_sum += total;
        // Checked: quantity and price are whatever Vendure answered; out of range fails this order only.
        let discount = qty.checked_mul(unit).map(|gross| gross - total).ok_or_else(|| (f("quantity"), format!("{qty} × {unit} is out of range")))?;
        lines.push(json!({
            "sku": sku,
            "name": l.pointer("/productVariant/name"),
            "quantity": qty.to_string(),
            "unit_price": unit.to_string(),
            "discount": discount.to_string(),
            "taxes": split_tax(c, tax, l["taxLines"].as_array().cloned().unwrap_or_default()),
            "total": total.to_string(),
        }));
    }
    let mut shipping = Vec::new();
    let mut ship_sum = Decimal::ZERO;
    for (i, s) in o["shippingLines"].as_array().into_iter().flatten().enumerate() {
        let f = |name: &str| format!("shipping[{i}].{name}");
        let net = m(&s["discountedPrice"], &f("amount"))?;
        let gross = m(&s["discountedPriceWithTax"], &f("amount"))?;
        let amount = if pit { gross } else { net };
        ship_sum += amount;
        let mut line = json!({
            "method": s.pointer("/shippingMethod/code").and_then(Value::as_str).unwrap_or("shipping"),
            "carrier": s.pointer("/shippingMethod/name"),
            "amount": amount.to_string(),
        });
        if gross != net {
            line["taxes"] = json!([{"name": "shipping tax", "amount": (gross - net).to_string()}]);
        }
        shipping.push(line);
    }
    let sub = if pit { m(&o["subTotalWithTax"], "totals.subtotal")? } else { m(&o["subTotal"], "totals.subtotal")? };
    let total = m(&o["totalWithTax"], "totals.total")?;
    let tax = total - m(&o["total"], "totals.tax")?;
    let discount = line_sum - sub;
    let coupons: Vec<String> = o["couponCodes"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_owned)).collect();
    let mut discounts = Vec::new();
    if !discount.is_zero() {
        let names: Vec<&str> = o["promotions"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
        discounts.push(json!({
            "kind": if coupons.is_empty() { "promotion" } else { "coupon" },
            "code": coupons.first(),
            "description": if names.is_empty() { None } else { Some(names.join(", ")) },
            "amount": discount.to_string(),
        }));
    }
    let payments: Vec<Value> = o["payments"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            Ok(json!({
                "method": p["method"],
                "amount": m(&p["amount"], &format!("payments[{i}].amount"))?.to_string(),
                "reference": p["transactionId"],
                "status": p["state"].as_str().map(str::to_lowercase),
            }))
        })
        .collect::<Result<_, Bad>>()?;
    let cust = &o["customer"];
    let mut value = json!({
        "number": o["code"],
        "placed_at": placed_at,
        "status": status(o["state"].as_str().unwrap_or_default()),
        "customer": {
            "code": cust.pointer("/customFields/ferryCode"),
            "email": cust["emailAddress"],
            "first_name": cust["firstName"],
            "last_name": cust["lastName"],
            "company": cust.pointer("/customFields/company"),
            "tax_id": cust.pointer("/customFields/taxId"),
            "phone": non_empty(&cust["phoneNumber"]),
        },
        "currency": c.code(),
        "prices_include_tax": pit,
        "lines": lines,
        "shipping": shipping,
        "discounts": discounts,
        "coupons": coupons,
        "payments": payments,
        "totals": {
            "subtotal": line_sum.to_string(),
            "shipping": ship_sum.to_string(),
            "discount": discount.to_string(),
            "tax": tax.to_string(),
            "total": total.to_string(),
        },
        "billing_address": address(&o["billingAddress"]),
        "shipping_address": address(&o["shippingAddress"]),
        "updated_at": o["updatedAt"],
        "custom": {"vendure_id": o["id"], "vendure_state": o["state"]},
    });
    strip_nulls(&mut value);
    Ok(value)
}

/// The line's tax split over its tax lines by rate (the last takes the rounding remainder).
fn split_tax(c: Currency, tax: Decimal, tax_lines: Vec<Value>) -> Vec<Value> {
    let rates: Vec<(String, Decimal)> = tax_lines
        .iter()
        .map(|t| {
            let pct = Decimal::from_str_exact(&t["taxRate"].to_string()).unwrap_or_default();
            (t["description"].as_str().unwrap_or("tax").to_owned(), pct / Decimal::ONE_HUNDRED)
        })
        .collect();
    if rates.is_empty() {
        return if tax.is_zero() { vec![] } else { vec![json!({"name": "tax", "amount": tax.to_string()})] };
    }
    // Checked: the rates are whatever Vendure answered; a share out of range leaves the rest to the last line.
    let sum = rates.iter().try_fold(Decimal::ZERO, |acc, (_, r)| acc.checked_add(*r)).unwrap_or_default();
    let mut left = tax;
    let n = rates.len();
    rates
        .into_iter()
        .enumerate()
        .map(|(i, (name, rate))| {
            let share = tax.checked_mul(rate).and_then(|t| t.checked_div(sum)).map(|a| c.round(a));
            let amount = match share {
                Some(a) if i + 1 < n && !sum.is_zero() => a,
                _ => left,
            };
            // An absurd share cannot panic here; the tax lines then fail to add up and validation names them.
            left = left.checked_sub(amount).unwrap_or_default();
            json!({"name": name, "rate": rate.normalize().to_string(), "amount": amount.to_string()})
        })
        .collect()
}

fn status(state: &str) -> &'static str {
    match state {
        "PaymentAuthorized" | "PaymentSettled" => "confirmed",
        "PartiallyShipped" => "partially_shipped",
        "Shipped" => "shipped",
        "PartiallyDelivered" | "Delivered" => "completed",
        "Cancelled" => "cancelled",
        "Modifying" | "ArrangingAdditionalPayment" => "processing",
        _ => "pending",
    }
}

fn non_empty(v: &Value) -> Value {
    match v.as_str() {
        Some("") => Value::Null,
        _ => v.clone(),
    }
}

fn address(a: &Value) -> Value {
    if !a.is_object() || a["streetLine1"].as_str().unwrap_or_default().is_empty() && a["fullName"].as_str().unwrap_or_default().is_empty() {
        return Value::Null;
    }
    let street: Vec<&str> = [a["streetLine1"].as_str(), a["streetLine2"].as_str()].into_iter().flatten().filter(|s| !s.is_empty()).collect();
    json!({
        "name": non_empty(&a["fullName"]),
        "company": non_empty(&a["company"]),
        "street": street,
        "city": non_empty(&a["city"]),
        "region": non_empty(&a["province"]),
        "postcode": non_empty(&a["postalCode"]),
        "country": non_empty(&a["countryCode"]).as_str().map(str::to_uppercase),
        "phone": non_empty(&a["phoneNumber"]),
    })
}

/// The canonical form leaves absent options out.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_splits_keep_every_cent() {
        let c = Currency::parse("AUD").unwrap();
        let lines = vec![json!({"description": "GST", "taxRate": 10}), json!({"description": "Levy", "taxRate": 5})];
        let split = split_tax(c, Decimal::new(1001, 2), lines);
        let sum: Decimal = split.iter().map(|t| t["amount"].as_str().unwrap().parse::<Decimal>().unwrap()).sum();
        assert_eq!(sum, Decimal::new(1001, 2));
        assert_eq!(split[0]["rate"], "0.1");
    }

    /// Vendure's answer is outside data: amounts whose product leaves `Decimal`'s range, or absurd tax
    /// rates, fail that order (naming the field), never panic.
    #[test]
    fn amounts_out_of_range_are_invalid_not_a_panic() {
        let line = json!({"productVariant": {"sku": "S"}, "quantity": i64::MAX, "unitPrice": i64::MAX, "discountedLinePrice": 0,
                          "proratedLinePriceWithTax": 0, "proratedLinePrice": 0});
        let o = json!({"code": "BIG", "currencyCode": "AUD", "orderPlacedAt": "2026-11-20T10:00:00Z", "lines": [line],
                       "subTotal": 0, "totalWithTax": 0, "total": 0});
        match translate(&o, false) {
            ReadItem::Invalid { field, message, .. } => assert_eq!(field, "lines[0].quantity", "{message}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let c = Currency::parse("AUD").unwrap();
        let absurd = vec![json!({"taxRate": 7.9e27}), json!({"taxRate": -7.9e27}), json!({"taxRate": 1})];
        let split = split_tax(c, Decimal::new(i64::MAX, 2), absurd);
        assert_eq!(split.len(), 3);
    }

    #[test]
    fn an_order_without_placement_is_invalid_and_named() {
        let o = json!({"code": "ABC", "currencyCode": "AUD", "lines": []});
        match translate(&o, false) {
            ReadItem::Invalid { key, field, .. } => {
                assert_eq!(key.as_deref(), Some("ABC"));
                assert_eq!(field, "placed_at");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
