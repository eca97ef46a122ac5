//! Orders: read incrementally (`updated_at:>='checkpoint − overlap'`, sorted by UPDATED_AT, Relay cursor
//! paging), by name for webhook signals, or all at once through a bulk operation (JSONL) for a full read.
//!
//! Shopify's order → canonical order, amounts in the shop currency (`shopMoney`), decimal strings
//! (never floats):
//! - `taxesIncluded` is the canonical `prices_include_tax`;
//! - a line's `unit_price` is `originalUnitPriceSet`, its `discount` the allocations of discounts that
//!   apply to the line itself (allocation method EACH or ONE); discounts spread across the order
//!   (allocation method ACROSS, e.g. "10 % off the order" or a coupon on the subtotal) are the order's
//!   `discounts`, one per discount application, coupon codes as `kind = coupon`;
//! - shipping is each shipping line's `discountedPriceSet` (shipping discounts already off) with its taxes;
//! - tax lines are Shopify's per line and per shipping line (`priceSet`, rate as a fraction);
//! - totals: subtotal = Σ line totals, shipping = Σ shipping, discount = Σ order discounts, tax =
//!   `totalTaxSet`, total = `totalPriceSet` (the original total: refunds are listed, not subtracted).
//!   [`Record::parse`] reconciles them to the cent; an order that does not add up is `Invalid`, naming the
//!   order and field;
//! - payments are the successful SALE / CAPTURE transactions (an AUTHORIZATION only when nothing was
//!   captured), refunds one per Shopify refund (lines, shipping, tax; what Shopify gave back beyond lines
//!   and shipping is the `adjustment`).

use super::Shopify;
use super::client::doc;
use ferry_engine::{ConnectorError, ReadItem, ReadRequest, SourceRecord};
use ferry_model::{Currency, Record, Stream};
use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The search for a set of order keys: `#1001` by name (`prefix` — the `order_prefix` option — taken off
/// first), a bare number or GID by id.
pub fn keys_query(keys: &[String], prefix: &str) -> String {
    keys.iter()
        .map(|k| {
            let k = k.strip_prefix(prefix).filter(|_| !prefix.is_empty()).unwrap_or(k);
            let id = k.rsplit('/').next().unwrap_or(k);
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                format!("id:{id}")
            } else {
                // names carry no spaces or quotes; quote anyway so a `#` or `-` stays one term
                format!("name:\"{}\"", k.replace(['"', '\\'], ""))
            }
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The search of an incremental read: orders updated at or after `since` (already minus the overlap).
pub fn since_query(since: Option<&str>) -> String {
    match since {
        Some(t) => format!("updated_at:>='{t}'"),
        None => String::new(),
    }
}

struct Page {
    after: Option<String>,
    query: String,
    done: bool,
    /// The latest `updatedAt` read so far (the checkpoint).
    latest: Option<String>,
}

pub(crate) fn read(s: &Shopify, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
    let checkpoint = request.checkpoint.as_ref().and_then(|c| c.get("updated_at")).and_then(Value::as_str).map(str::to_owned);
    if request.keys.is_none() && checkpoint.is_none() && s.options.bulk_full_read {
        return bulk_read(s);
    }
    let since = checkpoint.as_deref().and_then(|c| {
        chrono::DateTime::parse_from_rfc3339(c)
            .ok()
            .map(|t| (t.with_timezone(&chrono::Utc) - chrono::Duration::seconds(s.options.overlap_seconds)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    });
    let keys = request.keys.clone();
    let query = match &keys {
        Some(k) => keys_query(k, &s.options.order_prefix),
        None => since_query(since.as_deref()),
    };
    let state = Page { after: None, query, done: keys.as_ref().is_some_and(|k| k.is_empty()), latest: checkpoint };
    futures::stream::unfold(state, move |mut st| {
        let by_keys = keys.is_some();
        async move {
            if st.done {
                return None;
            }
            let vars = json!({"first": s.options.page_size.clamp(1, 250), "lines": s.options.lines_per_order.clamp(1, 250), "after": st.after, "query": st.query});
            let data = match s.client.query(doc::ORDERS, vars).await {
                Ok(d) => d,
                Err(e) => {
                    st.done = true;
                    return Some((vec![Err(e)], st));
                }
            };
            let mut out = Vec::new();
            for o in data.pointer("/orders/nodes").and_then(Value::as_array).into_iter().flatten() {
                let mut o = o.clone();
                if let Err(e) = rest_of_lines(s, &mut o).await {
                    st.done = true;
                    out.push(Err(e));
                    return Some((out, st));
                }
                let o = &o;
                if let Some(u) = o["updatedAt"].as_str()
                    && st.latest.as_deref().is_none_or(|l| later(u, l))
                {
                    st.latest = Some(u.to_owned());
                }
                if let Some((field, message)) = truncated(o, s.options.lines_per_order) {
                    out.push(Ok(invalid(o, field, message)));
                    continue;
                }
                out.push(Ok(prefixed(translate(o), &s.options.order_prefix)));
            }
            let page = data.pointer("/orders/pageInfo");
            st.after = page.and_then(|p| p["endCursor"].as_str()).map(str::to_owned);
            st.done = page.and_then(|p| p["hasNextPage"].as_bool()) != Some(true) || st.after.is_none();
            // A checkpoint after each page: the sort is by UPDATED_AT, so every order up to here is read.
            if !by_keys && let Some(l) = &st.latest {
                out.push(Ok(ReadItem::Checkpoint(json!({"updated_at": l}))));
            }
            Some((out, st))
        }
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

/// An order with more lines than the Orders query read per order: the rest, 50 a request.
async fn rest_of_lines(s: &Shopify, o: &mut Value) -> Result<(), ConnectorError> {
    let mut page = o.pointer("/lineItems/pageInfo").cloned().unwrap_or(Value::Null);
    while page["hasNextPage"] == json!(true) {
        let data = s.client.query(doc::ORDER_LINES, json!({"id": o["id"], "after": page["endCursor"]})).await?;
        let more = data.pointer("/order/lineItems/nodes").and_then(Value::as_array).cloned().unwrap_or_default();
        if let Some(nodes) = o.pointer_mut("/lineItems/nodes").and_then(Value::as_array_mut) {
            nodes.extend(more);
        }
        page = data.pointer("/order/lineItems/pageInfo").cloned().unwrap_or(Value::Null);
    }
    if let Some(p) = o.pointer_mut("/lineItems/pageInfo") {
        *p = json!({"hasNextPage": false});
    }
    Ok(())
}

/// Lists the Orders query bounds (to keep its cost under Shopify's 1,000 points) that an order fills:
/// it may have more than was read, so it is not translated from a partial answer. (Lines beyond the
/// page are read by [`rest_of_lines`] first.)
fn truncated(o: &Value, lines: usize) -> Option<(&'static str, String)> {
    if o.pointer("/lineItems/pageInfo/hasNextPage") == Some(&json!(true)) {
        return Some(("lines", format!("has more than the {lines} lines read")));
    }
    let full = |field: &str, limit: usize| o[field].as_array().is_some_and(|a| a.len() >= limit);
    if full("refunds", 5) {
        return Some(("refunds", "has 5 or more refunds, more than one page reads: read it in a full (bulk) read".to_owned()));
    }
    if full("transactions", 10) {
        return Some(("payments", "has 10 or more transactions, more than one page reads: read it in a full (bulk) read".to_owned()));
    }
    None
}

/// Whether RFC 3339 time `a` is later than `b` (unparsable times compare as text).
fn later(a: &str, b: &str) -> bool {
    match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
}

/// A full read: one bulk operation over every order (JSONL), reassembled and translated.
fn bulk_read(s: &Shopify) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
    futures::stream::once(async move {
        let lines = match s.run_bulk_query(doc::BULK_ORDERS.text).await {
            Ok(l) => l,
            Err(e) => return vec![Err(e)],
        };
        let orders = match assemble_bulk(&lines) {
            Ok(o) => o,
            Err(e) => return vec![Err(ConnectorError::permanent(s.client.endpoint.clone(), format!("bulk result: {e}")))],
        };
        let mut latest: Option<String> = None;
        let mut out = Vec::with_capacity(orders.len() + 1);
        for o in &orders {
            if let Some(u) = o["updatedAt"].as_str()
                && latest.as_deref().is_none_or(|l| later(u, l))
            {
                latest = Some(u.to_owned());
            }
            out.push(Ok(prefixed(translate(o), &s.options.order_prefix)));
        }
        if let Some(l) = latest {
            out.push(Ok(ReadItem::Checkpoint(json!({"updated_at": l}))));
        }
        out
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

/// The JSONL of a bulk query → orders shaped like the paged query's (connections as `{nodes: […]}`):
/// child rows carry `__parentId` and are told apart by `__typename`. Line items and discount applications
/// are children of the order; refund lines and refund shipping of a refund (inline in its order's row).
/// The bulk document reads the order's `shippingLine` (bulk queries allow five connections): it becomes
/// the one shipping line.
pub fn assemble_bulk(jsonl: &str) -> Result<Vec<Value>, String> {
    let mut orders: Vec<Value> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    // refund id → (order index, refund index)
    let mut refunds: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (n, line) in jsonl.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        match row.get("__parentId").and_then(Value::as_str).map(str::to_owned) {
            None => {
                let id = row["id"].as_str().ok_or_else(|| format!("line {}: a top-level row without id", n + 1))?.to_owned();
                let at = orders.len();
                index.insert(id, at);
                let mut o = row;
                for c in ["lineItems", "discountApplications"] {
                    o[c] = json!({"nodes": []});
                }
                let shipping = o.as_object_mut().and_then(|m| m.remove("shippingLine")).filter(|s| !s.is_null());
                o["shippingLines"] = json!({"nodes": shipping.into_iter().collect::<Vec<_>>()});
                for (j, r) in o["refunds"].as_array_mut().into_iter().flatten().enumerate() {
                    if let Some(rid) = r["id"].as_str() {
                        refunds.insert(rid.to_owned(), (at, j));
                    }
                    r["refundLineItems"] = json!({"nodes": []});
                    r["refundShippingLines"] = json!({"nodes": []});
                }
                orders.push(o);
            }
            Some(parent) => {
                let typename = row["__typename"].as_str().unwrap_or_default().to_owned();
                let mut child = row;
                if let Some(m) = child.as_object_mut() {
                    m.remove("__parentId");
                }
                let target = match typename.as_str() {
                    "RefundLineItem" | "RefundShippingLine" => {
                        let (o, r) = *refunds.get(&parent).ok_or_else(|| format!("line {}: refund {parent} not read before its child", n + 1))?;
                        let connection = if typename == "RefundLineItem" { "refundLineItems" } else { "refundShippingLines" };
                        &mut orders[o]["refunds"][r][connection]["nodes"]
                    }
                    t => {
                        let at = *index.get(&parent).ok_or_else(|| format!("line {}: parent {parent} not read before its child", n + 1))?;
                        let connection = match t {
                            "LineItem" => "lineItems",
                            t if t.ends_with("Application") => "discountApplications",
                            other => return Err(format!("line {}: child row of unknown type {other:?}", n + 1)),
                        };
                        &mut orders[at][connection]["nodes"]
                    }
                };
                target.as_array_mut().expect("set with the parent").push(child);
            }
        }
    }
    Ok(orders)
}

fn name_of(o: &Value) -> String {
    o["name"].as_str().unwrap_or("?").to_owned()
}

fn invalid(o: &Value, field: &str, message: String) -> ReadItem {
    let name = name_of(o);
    ReadItem::Invalid { position: format!("shopify order {name}"), key: Some(name), raw: o.clone(), field: field.to_owned(), message }
}

/// The canonical order number carries `prefix` (the `order_prefix` option: several shops into one ERP,
/// whose `#1001`s would otherwise be one order).
pub fn prefixed(item: ReadItem, prefix: &str) -> ReadItem {
    if prefix.is_empty() {
        return item;
    }
    match item {
        ReadItem::Record(mut r) => {
            if let Some(n) = r.data["number"].as_str() {
                r.data["number"] = json!(format!("{prefix}{n}"));
            }
            ReadItem::Record(r)
        }
        ReadItem::Invalid { position, key, raw, field, message } => ReadItem::Invalid { position, key: key.map(|k| format!("{prefix}{k}")), raw, field, message },
        other => other,
    }
}

/// One Shopify order → a canonical order record, or `Invalid` naming the order and field.
pub fn translate(o: &Value) -> ReadItem {
    let position = format!("shopify order {}", name_of(o));
    match canonical(o) {
        Err((field, message)) => invalid(o, &field, message),
        Ok(value) => match Record::parse(Stream::Orders, value.clone(), &position) {
            Ok(_) => ReadItem::Record(SourceRecord { position, data: value }),
            Err(e) => {
                let field = e.errors.first().map(|f| f.field.clone()).unwrap_or_default();
                invalid(o, &field, e.to_string())
            }
        },
    }
}

type Bad = (String, String);

/// A discount application: (allocated across the order?, canonical kind, code, title).
type Application = (bool, &'static str, Option<String>, Option<String>);

/// `{shopMoney {amount}}` → the amount (a decimal string in Shopify's answers).
fn money(v: &Value, field: &str) -> Result<Decimal, Bad> {
    let amount = v.pointer("/shopMoney/amount").unwrap_or(&Value::Null);
    let text = match amount {
        Value::String(s) => s.clone(),
        // a number is accepted as its JSON text, never through f64
        Value::Number(n) => n.to_string(),
        _ => return Err((field.to_owned(), format!("missing amount: {v}"))),
    };
    Decimal::from_str(&text).map_err(|e| (field.to_owned(), format!("{text:?} is not an amount: {e}")))
}

fn opt_money(v: &Value, field: &str) -> Result<Decimal, Bad> {
    if v.is_null() { Ok(Decimal::ZERO) } else { money(v, field) }
}

/// Shopify's tax lines → canonical ones (rate as a fraction, from its decimal text).
fn taxes(v: &Value, field: &str) -> Result<Vec<Value>, Bad> {
    let mut out = Vec::new();
    for (i, t) in v.as_array().into_iter().flatten().enumerate() {
        let amount = money(&t["priceSet"], &format!("{field}[{i}].amount"))?;
        let rate = match &t["rate"] {
            Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
            _ => None,
        };
        let mut tax = json!({"name": t["title"].as_str().unwrap_or("Tax"), "amount": amount.to_string()});
        if let Some(r) = rate {
            tax["rate"] = json!(r.normalize().to_string());
        }
        out.push(tax);
    }
    Ok(out)
}

fn nodes(v: &Value) -> impl Iterator<Item = &Value> {
    v["nodes"].as_array().into_iter().flatten()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn address(a: &Value) -> Option<Value> {
    if !a.is_object() {
        return None;
    }
    let name = [text(&a["firstName"]), text(&a["lastName"])].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let street: Vec<String> = [text(&a["address1"]), text(&a["address2"])].into_iter().flatten().collect();
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k.into(), json!(v));
        }
    };
    put("name", Some(name).filter(|n| !n.is_empty()));
    put("company", text(&a["company"]));
    put("city", text(&a["city"]));
    put("region", text(&a["provinceCode"]));
    put("postcode", text(&a["zip"]));
    put("country", text(&a["countryCodeV2"]));
    put("phone", text(&a["phone"]));
    if !street.is_empty() {
        out.insert("street".into(), json!(street));
    }
    Some(Value::Object(out))
}

/// Shopify's statuses → the canonical one: cancelled first, then money given back, then shipping, then paid.
fn status(o: &Value) -> &'static str {
    if !o["cancelledAt"].is_null() {
        return "cancelled";
    }
    match o["displayFinancialStatus"].as_str().unwrap_or_default() {
        "REFUNDED" => return "refunded",
        "PARTIALLY_REFUNDED" => return "partially_refunded",
        _ => {}
    }
    match o["displayFulfillmentStatus"].as_str().unwrap_or_default() {
        "FULFILLED" => return if o["closed"] == json!(true) { "completed" } else { "shipped" },
        "PARTIALLY_FULFILLED" => return "partially_shipped",
        _ => {}
    }
    match o["displayFinancialStatus"].as_str().unwrap_or_default() {
        "PAID" | "AUTHORIZED" | "PARTIALLY_PAID" => "confirmed",
        _ => "pending",
    }
}

fn canonical(o: &Value) -> Result<Value, Bad> {
    let name = text(&o["name"]).ok_or_else(|| ("number".to_owned(), "order has no name".to_owned()))?;
    let currency = Currency::parse(o["currencyCode"].as_str().unwrap_or_default()).map_err(|e| ("currency".to_owned(), e))?;
    let placed_at = text(&o["processedAt"]).or_else(|| text(&o["createdAt"])).ok_or_else(|| ("placed_at".to_owned(), "no processedAt".to_owned()))?;
    let pit = o["taxesIncluded"] == json!(true);

    // Discount applications by index.
    let mut apps: BTreeMap<i64, Application> = BTreeMap::new();
    for a in nodes(&o["discountApplications"]) {
        let index = a["index"].as_i64().unwrap_or(-1);
        let across = a["allocationMethod"].as_str() == Some("ACROSS") && a["targetType"].as_str() != Some("SHIPPING_LINE");
        let code = text(&a["code"]);
        let kind = if code.is_some() { "coupon" } else { "promotion" };
        let title = text(&a["title"]).or_else(|| text(&a["description"])).or_else(|| code.clone());
        apps.insert(index, (across, kind, code, title));
    }
    let mut order_discounts: BTreeMap<i64, Decimal> = BTreeMap::new();

    let mut lines = Vec::new();
    for (i, l) in nodes(&o["lineItems"]).enumerate() {
        let f = |n: &str| format!("lines[{i}].{n}");
        let sku = text(&l["sku"]).ok_or_else(|| (f("sku"), format!("line {:?} has no SKU", l["name"].as_str().unwrap_or("?"))))?;
        let qty = Decimal::from(l["quantity"].as_i64().ok_or_else(|| (f("quantity"), "missing quantity".to_owned()))?);
        let unit = money(&l["originalUnitPriceSet"], &f("unit_price"))?;
        let mut discount = Decimal::ZERO;
        for (j, d) in l["discountAllocations"].as_array().into_iter().flatten().enumerate() {
            let amount = money(&d["allocatedAmountSet"], &format!("lines[{i}].discounts[{j}]"))?;
            let index = d.pointer("/discountApplication/index").and_then(Value::as_i64).unwrap_or(-1);
            match apps.get(&index) {
                Some((true, ..)) => *order_discounts.entry(index).or_default() += amount,
                _ => discount += amount,
            }
        }
        let line_taxes = taxes(&l["taxLines"], &f("taxes"))?;
        let total = qty.checked_mul(unit).and_then(|g| g.checked_sub(discount)).ok_or_else(|| (f("total"), format!("{qty} × {unit} is out of range")))?;
        lines.push(json!({
            "sku": sku, "name": text(&l["name"]), "quantity": qty.to_string(), "unit_price": unit.to_string(),
            "discount": discount.to_string(), "taxes": line_taxes, "total": total.to_string(),
        }));
    }
    let mut shipping = Vec::new();
    for (i, sl) in nodes(&o["shippingLines"]).enumerate() {
        let amount = money(&sl["discountedPriceSet"], &format!("shipping[{i}].amount"))?;
        shipping.push(json!({
            "method": text(&sl["title"]).or_else(|| text(&sl["code"])).unwrap_or_else(|| "Shipping".into()),
            "carrier": text(&sl["carrierIdentifier"]).or_else(|| text(&sl["source"])),
            "amount": amount.to_string(),
            "taxes": taxes(&sl["taxLines"], &format!("shipping[{i}].taxes"))?,
        }));
    }
    let discounts: Vec<Value> = order_discounts
        .iter()
        .map(|(index, amount)| {
            let (_, kind, code, title) = apps.get(index).cloned().unwrap_or((true, "promotion", None, None));
            json!({"kind": kind, "code": code, "description": title, "amount": amount.to_string()})
        })
        .collect();
    let sum = |v: &[Value], k: &str| -> Decimal { v.iter().filter_map(|x| x[k].as_str().and_then(|a| Decimal::from_str(a).ok())).sum() };
    let subtotal = sum(&lines, "total");
    let ship_total = sum(&shipping, "amount");
    let discount_total = sum(&discounts, "amount");
    let tax = opt_money(&o["totalTaxSet"], "totals.tax")?;
    let total = money(&o["totalPriceSet"], "totals.total")?;

    // Payments: captured money; an authorisation only when nothing was captured.
    let tx: Vec<&Value> = o["transactions"].as_array().into_iter().flatten().filter(|t| t["status"].as_str() == Some("SUCCESS")).collect();
    let captured = tx.iter().any(|t| matches!(t["kind"].as_str(), Some("SALE" | "CAPTURE")));
    let mut payments = Vec::new();
    for (i, t) in tx.iter().enumerate() {
        let status = match t["kind"].as_str() {
            Some("SALE" | "CAPTURE") => "settled",
            Some("AUTHORIZATION") if !captured => "authorized",
            _ => continue,
        };
        payments.push(json!({
            "method": text(&t["gateway"]).unwrap_or_else(|| "unknown".into()),
            "amount": money(&t["amountSet"], &format!("payments[{i}].amount"))?.to_string(),
            "reference": text(&t["id"]),
            "status": status,
        }));
    }

    let mut refunds = Vec::new();
    for (i, r) in o["refunds"].as_array().into_iter().flatten().enumerate() {
        let f = |n: &str| format!("refunds[{i}].{n}");
        let mut rlines = Vec::new();
        let (mut parts, mut rtax) = (Decimal::ZERO, Decimal::ZERO);
        for (j, rl) in nodes(&r["refundLineItems"]).enumerate() {
            let sku = text(&rl.pointer("/lineItem/sku").cloned().unwrap_or(Value::Null)).ok_or_else(|| (format!("refunds[{i}].lines[{j}].sku"), "refunded line has no SKU".to_owned()))?;
            let amount = money(&rl["subtotalSet"], &format!("refunds[{i}].lines[{j}].amount"))?;
            let ltax = money(&rl["totalTaxSet"], &format!("refunds[{i}].lines[{j}].tax"))?;
            parts += amount;
            rtax += ltax;
            rlines.push(json!({"sku": sku, "quantity": rl["quantity"].as_i64().unwrap_or(0).to_string(), "amount": amount.to_string(), "tax": ltax.to_string()}));
        }
        let (mut ship, mut ship_tax) = (Decimal::ZERO, Decimal::ZERO);
        for s in nodes(&r["refundShippingLines"]) {
            ship += money(&s["subtotalAmountSet"], &f("shipping"))?;
            ship_tax += money(&s["taxAmountSet"], &f("shipping_tax"))?;
        }
        // A shipping refund's subtotal excludes tax; in a tax-inclusive order the canonical amount includes it.
        if pit {
            ship += ship_tax;
        }
        parts += ship;
        rtax += ship_tax;
        let rtotal = money(&r["totalRefundedSet"], &f("total"))?;
        let expected = if pit { parts } else { parts + rtax };
        refunds.push(json!({
            "id": text(&r["id"]).unwrap_or_default(),
            "refunded_at": text(&r["createdAt"]),
            "reason": text(&r["note"]),
            "lines": rlines,
            "shipping": ship.to_string(),
            "shipping_tax": ship_tax.to_string(),
            "adjustment": (rtotal - expected).to_string(),
            "tax": rtax.to_string(),
            "total": rtotal.to_string(),
        }));
    }

    let customer = &o["customer"];
    let billing = address(&o["billingAddress"]);
    let mut order = json!({
        "number": name,
        "placed_at": placed_at,
        "status": status(o),
        "customer": {
            "guest": customer.is_null(),
            "email": text(&o["email"]).or_else(|| text(&customer["email"])),
            "first_name": text(&customer["firstName"]).or_else(|| text(&o.pointer("/billingAddress/firstName").cloned().unwrap_or(Value::Null))),
            "last_name": text(&customer["lastName"]).or_else(|| text(&o.pointer("/billingAddress/lastName").cloned().unwrap_or(Value::Null))),
            "company": billing.as_ref().and_then(|b| text(&b["company"])),
            "phone": text(&o["phone"]).or_else(|| text(&customer["phone"])),
        },
        "customer_reference": text(&o["poNumber"]),
        "currency": currency.code(),
        "prices_include_tax": pit,
        "lines": lines,
        "shipping": shipping,
        "discounts": discounts,
        "coupons": o["discountCodes"].as_array().cloned().unwrap_or_default(),
        "payments": payments,
        "totals": {
            "subtotal": subtotal.to_string(), "shipping": ship_total.to_string(), "discount": discount_total.to_string(),
            "tax": tax.to_string(), "total": total.to_string(),
        },
        "billing_address": billing,
        "shipping_address": address(&o["shippingAddress"]),
        "notes": text(&o["note"]),
        "cancelled_at": text(&o["cancelledAt"]),
        "refunds": refunds,
        "updated_at": text(&o["updatedAt"]),
        "custom": {"shopify_id": o["id"], "cancel_reason": o["cancelReason"]},
    });
    strip_nulls(&mut order);
    Ok(order)
}

/// Drops null members (the canonical model treats absent and null alike, but `deny_unknown_fields`
/// structures are cleaner without them).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Order;

    fn m(a: &str) -> Value {
        json!({"shopMoney": {"amount": a}})
    }
    fn tax(a: &str) -> Value {
        json!([{"title": "GST", "rate": 0.1, "ratePercentage": 10.0, "priceSet": m(a)}])
    }

    /// An order as the Orders query answers it: 2 × A at 20.00 with a line promotion of 2.00, 1 × B at 5.00,
    /// a 10 % coupon across the order (4.30: 3.80 on A, 0.50 on B), shipping 10.00, GST 10 % added on top.
    fn order() -> Value {
        json!({
            "id": "gid://shopify/Order/1", "name": "#1001", "processedAt": "2026-12-01T10:00:00Z", "createdAt": "2026-12-01T10:00:00Z",
            "updatedAt": "2026-12-01T10:05:00Z", "cancelledAt": null, "closed": false, "currencyCode": "AUD", "taxesIncluded": false,
            "email": "ann@example.test", "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "UNFULFILLED",
            "discountCodes": ["TENOFF"], "poNumber": "PO-7",
            "customer": {"id": "gid://shopify/Customer/3", "email": "ann@example.test", "firstName": "Ann", "lastName": "Lee", "tags": []},
            "billingAddress": {"firstName": "Ann", "lastName": "Lee", "company": "Lee Pty", "address1": "1 Main St", "city": "Sydney", "provinceCode": "NSW", "zip": "2000", "countryCodeV2": "AU"},
            "shippingAddress": {"firstName": "Ann", "lastName": "Lee", "address1": "1 Main St", "city": "Sydney", "zip": "2000", "countryCodeV2": "AU"},
            "totalTaxSet": m("4.67"), "totalPriceSet": m("51.37"),
            "discountApplications": {"nodes": [
                {"__typename": "AutomaticDiscountApplication", "index": 0, "allocationMethod": "EACH", "targetType": "LINE_ITEM", "title": "2 off A", "value": {"amount": "1.00"}},
                {"__typename": "DiscountCodeApplication", "index": 1, "allocationMethod": "ACROSS", "targetType": "LINE_ITEM", "code": "TENOFF", "value": {"percentage": 10.0}}
            ]},
            "lineItems": {"pageInfo": {"hasNextPage": false}, "nodes": [
                {"sku": "A", "name": "Thing A", "quantity": 2, "originalUnitPriceSet": m("20.00"),
                 "discountAllocations": [{"allocatedAmountSet": m("2.00"), "discountApplication": {"index": 0}}, {"allocatedAmountSet": m("3.80"), "discountApplication": {"index": 1}}],
                 "taxLines": tax("3.42")},
                {"sku": "B", "name": "Thing B", "quantity": 1, "originalUnitPriceSet": m("5.00"),
                 "discountAllocations": [{"allocatedAmountSet": m("0.50"), "discountApplication": {"index": 1}}], "taxLines": tax("0.45")}
            ]},
            "shippingLines": {"nodes": [{"title": "Standard", "code": "std", "originalPriceSet": m("8.00"), "discountedPriceSet": m("8.00"), "taxLines": tax("0.80")}]},
            "transactions": [
                {"id": "gid://shopify/OrderTransaction/9", "kind": "SALE", "status": "SUCCESS", "gateway": "manual", "amountSet": m("51.37")},
                {"id": "gid://shopify/OrderTransaction/8", "kind": "SALE", "status": "FAILURE", "gateway": "manual", "amountSet": m("51.37")}
            ],
            "refunds": []
        })
    }

    fn record(item: ReadItem) -> Order {
        match item {
            ReadItem::Record(r) => match Record::parse(Stream::Orders, r.data, "t").unwrap() {
                Record::Order(o) => o,
                _ => unreachable!(),
            },
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn an_order_with_line_and_order_discounts_reconciles_to_the_cent() {
        let o = record(translate(&order()));
        assert_eq!(o.number, "#1001");
        assert!(!o.prices_include_tax);
        assert_eq!(o.lines[0].discount, Decimal::from_str("2.00").unwrap(), "the line's own promotion");
        assert_eq!(o.lines[0].total, Decimal::from_str("38.00").unwrap());
        assert_eq!(o.discounts.len(), 1);
        assert_eq!(o.discounts[0].code.as_deref(), Some("TENOFF"));
        assert_eq!(o.discounts[0].amount, Decimal::from_str("4.30").unwrap(), "the coupon, as allocated over both lines");
        assert_eq!(o.totals.subtotal, Decimal::from_str("43.00").unwrap());
        assert_eq!(o.totals.shipping, Decimal::from_str("8.00").unwrap());
        assert_eq!(o.totals.tax, Decimal::from_str("4.67").unwrap());
        assert_eq!(o.totals.total, Decimal::from_str("51.37").unwrap());
        assert!(o.reconcile().is_empty());
        assert_eq!(o.coupons, vec!["TENOFF".to_owned()]);
        assert_eq!(o.payments.len(), 1, "the failed attempt is not a payment");
        assert_eq!(o.status.as_str(), "confirmed");
        assert_eq!(o.customer.guest, Some(false));
        assert_eq!(o.customer.company.as_deref(), Some("Lee Pty"));
        assert_eq!(o.billing_address.as_ref().unwrap().country.as_deref(), Some("AU"));
        assert_eq!(o.customer_reference.as_deref(), Some("PO-7"));
    }

    #[test]
    fn an_order_that_does_not_add_up_is_invalid_naming_the_field() {
        let mut o = order();
        o["totalPriceSet"] = m("51.38");
        match translate(&o) {
            ReadItem::Invalid { key, field, message, .. } => {
                assert_eq!(key.as_deref(), Some("#1001"));
                assert_eq!(field, "totals.total", "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut o = order();
        o["lineItems"]["nodes"][1]["sku"] = Value::Null;
        match translate(&o) {
            ReadItem::Invalid { field, .. } => assert_eq!(field, "lines[1].sku"),
            other => panic!("{other:?}"),
        }
        let mut o = order();
        o["lineItems"]["nodes"][0]["originalUnitPriceSet"] = m("twenty");
        match translate(&o) {
            ReadItem::Invalid { field, .. } => assert_eq!(field, "lines[0].unit_price"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cancellation_and_refunds_are_read() {
        let mut o = order();
        o["cancelledAt"] = json!("2026-12-02T09:00:00Z");
        o["cancelReason"] = json!("CUSTOMER");
        o["displayFinancialStatus"] = json!("PARTIALLY_REFUNDED");
        // one B back (5.00 − 0.50 coupon = 4.50 + 0.45 GST) and the shipping (8.00 + 0.80)
        o["refunds"] = json!([{
            "id": "gid://shopify/Refund/5", "createdAt": "2026-12-02T09:00:00Z", "note": "damaged", "totalRefundedSet": m("13.75"),
            "refundLineItems": {"nodes": [{"quantity": 1, "lineItem": {"id": "gid://shopify/LineItem/2", "sku": "B"}, "subtotalSet": m("4.50"), "totalTaxSet": m("0.45")}]},
            "refundShippingLines": {"nodes": [{"subtotalAmountSet": m("8.00"), "taxAmountSet": m("0.80")}]},
            "orderAdjustments": {"nodes": []}
        }]);
        let c = record(translate(&o));
        assert_eq!(c.status.as_str(), "cancelled");
        assert!(c.cancelled_at.is_some());
        let r = &c.refunds[0];
        assert_eq!(r.id, "gid://shopify/Refund/5");
        assert_eq!((r.shipping, r.shipping_tax, r.tax), (Decimal::from_str("8.00").unwrap(), Decimal::from_str("0.80").unwrap(), Decimal::from_str("1.25").unwrap()));
        assert_eq!(r.adjustment, Decimal::ZERO);
        assert_eq!(r.total, Decimal::from_str("13.75").unwrap());
    }

    #[test]
    fn a_tax_inclusive_order_reconciles_without_adding_tax() {
        let mut o = order();
        o["taxesIncluded"] = json!(true);
        // totals as Shopify gives them when prices include GST: tax contained, total = parts
        o["totalPriceSet"] = m("46.70");
        let c = record(translate(&o));
        assert!(c.prices_include_tax);
        assert_eq!(c.totals.total, Decimal::from_str("46.70").unwrap());
    }

    #[test]
    fn order_keys_search_by_name_or_id() {
        assert_eq!(keys_query(&["#1001".into(), "42".into(), "gid://shopify/Order/43".into()], ""), "name:\"#1001\" OR id:42 OR id:43");
        assert_eq!(keys_query(&["EU-#1001".into(), "#1002".into()], "EU-"), "name:\"#1001\" OR name:\"#1002\"");
        let item = prefixed(translate(&order()), "EU-");
        assert_eq!(record(item).number, "EU-#1001");
        assert_eq!(since_query(Some("2026-12-01T10:00:00Z")), "updated_at:>='2026-12-01T10:00:00Z'");
        assert_eq!(since_query(None), "");
    }

    #[test]
    fn bulk_rows_are_reassembled_into_orders() {
        let mut parent = order();
        let lines = parent["lineItems"]["nodes"].as_array().unwrap().clone();
        let apps = parent["discountApplications"]["nodes"].as_array().unwrap().clone();
        parent["shippingLine"] = parent["shippingLines"]["nodes"][0].clone();
        for k in ["lineItems", "shippingLines", "discountApplications"] {
            parent.as_object_mut().unwrap().remove(k);
        }
        // a refund of one B, its line and shipping as child rows of the refund
        parent["refunds"] = json!([{"id": "gid://shopify/Refund/5", "createdAt": "2026-12-02T09:00:00Z", "totalRefundedSet": m("4.95")}]);
        let mut jsonl = vec![parent.to_string()];
        for mut row in lines {
            row["__typename"] = json!("LineItem");
            row["__parentId"] = json!("gid://shopify/Order/1");
            jsonl.push(row.to_string());
        }
        for mut a in apps {
            a["__parentId"] = json!("gid://shopify/Order/1");
            jsonl.push(a.to_string());
        }
        jsonl.push(json!({"__typename": "RefundLineItem", "__parentId": "gid://shopify/Refund/5", "quantity": 1, "lineItem": {"id": "x", "sku": "B"}, "subtotalSet": m("4.50"), "totalTaxSet": m("0.45")}).to_string());
        let orders = assemble_bulk(&jsonl.join("\n")).unwrap();
        assert_eq!(orders.len(), 1);
        let c = record(translate(&orders[0]));
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.shipping.len(), 1);
        assert_eq!(c.totals.total, Decimal::from_str("51.37").unwrap());
        assert_eq!(c.refunds[0].lines[0].sku, "B");
        assert_eq!(c.refunds[0].total, Decimal::from_str("4.95").unwrap());
        assert!(assemble_bulk("{\"id\":\"x\"}\n{\"__parentId\":\"nope\",\"__typename\":\"LineItem\"}").unwrap_err().contains("parent nope"));
        assert!(assemble_bulk("{\"id\":\"x\"}\n{\"__parentId\":\"x\",\"__typename\":\"Fulfillment\"}").unwrap_err().contains("unknown type"));
    }
}
