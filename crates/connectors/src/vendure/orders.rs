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
//!
//! The order's lifecycle comes along (docs/connectors/vendure.md, *Order lifecycle*): `cancelled_at` from
//! the history, `refunds` from the payments' refunds (not failed) in the order's tax mode, and units that
//! a modification refunded stay on the lines (the refund accounts for them).

use super::{Vendure, money};
use ferry_engine::{ConnectorError, ReadItem, ReadRequest, SourceRecord};
use ferry_model::{Currency, Record, Stream};
use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

const ORDER_FIELDS: &str = r#"id code state orderPlacedAt updatedAt currencyCode couponCodes
  customer { id emailAddress firstName lastName phoneNumber user { id } customFields { ferryCode taxId company } }
  shippingAddress { fullName company streetLine1 streetLine2 city province postalCode countryCode phoneNumber }
  billingAddress { fullName company streetLine1 streetLine2 city province postalCode countryCode phoneNumber }
  lines { id quantity orderPlacedQuantity productVariant { sku name } unitPrice unitPriceWithTax
          discountedUnitPrice discountedUnitPriceWithTax proratedUnitPrice proratedUnitPriceWithTax
          discountedLinePrice discountedLinePriceWithTax proratedLinePrice proratedLinePriceWithTax taxLines { description taxRate } }
  shippingLines { shippingMethod { code name } discountedPrice discountedPriceWithTax }
  promotions { name couponCode }
  subTotal subTotalWithTax shipping shippingWithTax total totalWithTax
  payments { method amount state transactionId
             refunds { id total items shipping adjustment reason state createdAt lines { orderLineId quantity } } }
  modifications { lines { orderLineId quantity } refund { id } }
  history(options: { take: 50, sort: { createdAt: DESC }, filter: { type: { in: ["ORDER_STATE_TRANSITION", "ORDER_CANCELLATION"] } } }) {
    items { type createdAt data } }"#;

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

    let life = Lifecycle::of(o);
    let mut lines = Vec::new();
    let mut line_sum = Decimal::ZERO;
    // Units put back on the lines (see `Lifecycle::extra_units`): their prorated price and tax.
    let (mut extra_prorated, mut extra_tax) = (Decimal::ZERO, Decimal::ZERO);
    for (i, l) in o["lines"].as_array().into_iter().flatten().enumerate() {
        let f = |name: &str| format!("lines[{i}].{name}");
        let current = l["quantity"].as_i64().ok_or_else(|| (f("quantity"), "missing".to_owned()))?;
        let extra = life.extra_units(l);
        // Checked: both counts are whatever Vendure answered.
        let units = current.checked_add(extra).ok_or_else(|| (f("quantity"), format!("{current} + {extra} units is out of range")))?;
        if units <= 0 {
            continue; // cancelled entirely, nothing refunded on it: no longer part of the order
        }
        let sku = l.pointer("/productVariant/sku").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| (f("sku"), "line without a SKU".to_owned()))?;
        let qty = Decimal::from(units);
        let extra = Decimal::from(extra);
        let out_of_range = |field: &str| (f(field), "amount out of range".to_owned());
        // Units put back (refunded through a modification) at a unit price, checked.
        let put_back = |unit: Decimal, field: &str| extra.checked_mul(unit).ok_or_else(|| out_of_range(field));
        let unit = if pit { m(&l["unitPriceWithTax"], &f("unit_price"))? } else { m(&l["unitPrice"], &f("unit_price"))? };
        let line_price = |with_tax: &str, without: &str, field: &str| if pit { m(&l[with_tax], &f(field)) } else { m(&l[without], &f(field)) };
        // Absent unit prices (older answers) only matter when units are put back.
        let unit_prorated = if extra.is_zero() { Decimal::ZERO } else { line_price("proratedUnitPriceWithTax", "proratedUnitPrice", "total")? };
        let unit_discounted = if extra.is_zero() { Decimal::ZERO } else { line_price("discountedUnitPriceWithTax", "discountedUnitPrice", "total")? };
        let total = line_price("discountedLinePriceWithTax", "discountedLinePrice", "total")?
            .checked_add(put_back(unit_discounted, "total")?)
            .ok_or_else(|| out_of_range("total"))?;
        // Tax actually charged on the line (after prorated order-level discounts).
        let charged = m(&l["proratedLinePriceWithTax"], &f("taxes"))? - m(&l["proratedLinePrice"], &f("taxes"))?;
        let tax = if extra.is_zero() {
            charged
        } else {
            // Vendure taxes a line as a whole, rounded: do the same for the line with its units put back.
            let prorated = line_price("proratedLinePriceWithTax", "proratedLinePrice", "total")?.checked_add(put_back(unit_prorated, "total")?).ok_or_else(|| out_of_range("total"))?;
            line_tax(c, prorated, tax_rate(l), pit)
        };
        extra_prorated = put_back(unit_prorated, "total")?.checked_add(extra_prorated).ok_or_else(|| out_of_range("total"))?;
        extra_tax = tax.checked_sub(charged).and_then(|t| t.checked_add(extra_tax)).ok_or_else(|| out_of_range("taxes"))?;
        line_sum = line_sum.checked_add(total).ok_or_else(|| out_of_range("total"))?;
        // Checked: quantity and price are whatever Vendure answered; out of range fails this order only.
        let discount = qty.checked_mul(unit).and_then(|gross| gross.checked_sub(total)).ok_or_else(|| (f("quantity"), format!("{qty} × {unit} is out of range")))?;
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
    let sub = if pit { m(&o["subTotalWithTax"], "totals.subtotal")? } else { m(&o["subTotal"], "totals.subtotal")? } + extra_prorated;
    let vendure_total = m(&o["totalWithTax"], "totals.total")?;
    let tax = vendure_total - m(&o["total"], "totals.tax")? + extra_tax;
    let total = vendure_total + extra_prorated + if pit { Decimal::ZERO } else { extra_tax };
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
    let refunds = refunds(o, c, pit)?;
    let state = o["state"].as_str().unwrap_or_default();
    let refunded: Decimal = refunds.iter().map(|r| r.gross).sum();
    let status = match state {
        "Cancelled" => "cancelled",
        _ if !refunds.is_empty() && refunded >= total => "refunded",
        _ if !refunds.is_empty() => "partially_refunded",
        other => status(other),
    };
    let cancelled_at = (state == "Cancelled").then(|| life.cancelled_at.clone().unwrap_or_else(|| o["updatedAt"].clone()));
    let cust = &o["customer"];
    let mut value = json!({
        "number": o["code"],
        "placed_at": placed_at,
        "status": status,
        "customer": {
            "code": cust.pointer("/customFields/ferryCode"),
            // a guest checkout creates a customer without a user account (and an unverified e-mail)
            "guest": cust.is_object().then(|| cust["user"].is_null()),
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
        "cancelled_at": cancelled_at,
        "refunds": refunds.into_iter().map(|r| r.value).collect::<Vec<_>>(),
        "updated_at": o["updatedAt"],
        "custom": {"vendure_id": o["id"], "vendure_state": o["state"]},
    });
    strip_nulls(&mut value);
    Ok(value)
}

/// The line's tax rate as a fraction (its tax lines added up).
fn tax_rate(line: &Value) -> Decimal {
    let pct: Decimal = line["taxLines"].as_array().into_iter().flatten().map(|t| Decimal::from_str_exact(&t["taxRate"].to_string()).unwrap_or_default()).sum();
    pct / Decimal::ONE_HUNDRED
}

/// Tax on a line priced `amount` (with tax when `pit`), rounded to the minor unit half away from zero
/// as Vendure's default money strategy (`Math.round`) does.
fn line_tax(c: Currency, amount: Decimal, rate: Decimal, pit: bool) -> Decimal {
    let round = |x: Decimal| x.round_dp_with_strategy(c.minor_units(), rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    if pit { amount - round(amount / (Decimal::ONE + rate)) } else { round(amount * rate) }
}

/// What the order's history, modifications and refunds say about its lines and cancellation.
struct Lifecycle {
    /// When the order moved to Cancelled (its history), if it did.
    cancelled_at: Option<Value>,
    /// Order line id → units taken off the line by modifications that came with a refund (not failed):
    /// Vendure 3.7 refunds units only that way (`modifyOrder` lowers the quantity and refunds). They stay
    /// on the canonical line, because the refund accounts for them: showing them both as a lower quantity
    /// and as refunded would take them off the books twice.
    refunded_units: HashMap<String, i64>,
    /// Order line id → quantity the line had when the whole order was cancelled. Vendure sets every line
    /// of a cancelled order to 0; the canonical order keeps what was cancelled (a sale needs lines).
    cancelled_units: HashMap<String, i64>,
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Lifecycle {
    fn of(o: &Value) -> Self {
        // Newest first (the query sorts the history by createdAt DESC).
        let history: Vec<&Value> = o.pointer("/history/items").and_then(Value::as_array).into_iter().flatten().collect();
        let cancelled = o["state"] == "Cancelled";
        let cancelled_at = history
            .iter()
            .find(|h| h["type"] == "ORDER_STATE_TRANSITION" && h.pointer("/data/to").and_then(Value::as_str) == Some("Cancelled"))
            .map(|h| h["createdAt"].clone());
        let live_refunds: HashSet<String> = o["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["refunds"].as_array().into_iter().flatten())
            .filter(|r| r["state"] != "Failed")
            .filter_map(|r| id_of(&r["id"]))
            .collect();
        let mut refunded_units = HashMap::new();
        for modification in o["modifications"].as_array().into_iter().flatten() {
            if !modification.pointer("/refund/id").and_then(id_of).is_some_and(|id| live_refunds.contains(&id)) {
                continue; // an edit, not a refund: the lower quantity stands
            }
            for l in modification["lines"].as_array().into_iter().flatten() {
                if let (Some(id), Some(delta)) = (id_of(&l["orderLineId"]), l["quantity"].as_i64())
                    && delta < 0
                {
                    *refunded_units.entry(id).or_default() -= delta;
                }
            }
        }
        let all_zero = o["lines"].as_array().into_iter().flatten().all(|l| l["quantity"].as_i64() == Some(0));
        let mut cancelled_units = HashMap::new();
        if cancelled && all_zero {
            // The newest cancellation is the one that emptied the order.
            if let Some(h) = history.iter().find(|h| h["type"] == "ORDER_CANCELLATION") {
                for l in h.pointer("/data/lines").and_then(Value::as_array).into_iter().flatten() {
                    if let (Some(id), Some(q)) = (id_of(&l["orderLineId"]), l["quantity"].as_i64()) {
                        *cancelled_units.entry(id).or_default() += q;
                    }
                }
            } else {
                // No history to read: the quantities as placed.
                for l in o["lines"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(q)) = (id_of(&l["id"]), l["orderPlacedQuantity"].as_i64()) {
                        cancelled_units.insert(id, q);
                    }
                }
            }
        }
        Lifecycle { cancelled_at, refunded_units, cancelled_units }
    }

    /// Units of this order line the canonical order keeps beyond Vendure's current `quantity`.
    fn extra_units(&self, line: &Value) -> i64 {
        let id = id_of(&line["id"]).unwrap_or_default();
        self.refunded_units.get(&id).copied().unwrap_or(0) + self.cancelled_units.get(&id).copied().unwrap_or(0)
    }
}

struct CanonicalRefund {
    value: Value,
    /// What the buyer got back (Vendure's `total`, always with tax).
    gross: Decimal,
}

/// The order's refunds that were not refused (`Pending` or `Settled`: Vendure counts both against the
/// payment), each as a canonical refund in the order's tax mode:
/// - lines by the order's line ids → SKUs; amount = quantity × the line's prorated unit price (with or
///   without tax), tax = quantity × (prorated unit price with tax − without), as Vendure prices a refund;
/// - shipping = Vendure's `shipping` (with tax) or, when that is 0 and the rest of the refund equals the
///   order's whole shipping charge, that rest (Vendure 3.7's `refundOrder` takes only an amount); its tax
///   in proportion to the order's shipping lines;
/// - adjustment = the rest of `total`, tax-free (goodwill, Vendure's rounding of line vs unit prices).
fn refunds(o: &Value, c: Currency, pit: bool) -> Result<Vec<CanonicalRefund>, Bad> {
    let minor = |v: &Value, field: &str| money(c, v).ok_or_else(|| (field.to_owned(), format!("missing or not an integer amount: {v}")));
    let order_lines: HashMap<String, &Value> = o["lines"].as_array().into_iter().flatten().filter_map(|l| Some((id_of(&l["id"])?, l))).collect();
    let (mut ship_gross, mut ship_net) = (Decimal::ZERO, Decimal::ZERO);
    for (i, s) in o["shippingLines"].as_array().into_iter().flatten().enumerate() {
        ship_gross += minor(&s["discountedPriceWithTax"], &format!("shipping[{i}].amount"))?;
        ship_net += minor(&s["discountedPrice"], &format!("shipping[{i}].amount"))?;
    }
    let mut out = Vec::new();
    let all = o["payments"].as_array().into_iter().flatten().flat_map(|p| p["refunds"].as_array().into_iter().flatten());
    for (i, r) in all.filter(|r| r["state"] != "Failed").enumerate() {
        let f = |name: &str| format!("refunds[{i}].{name}");
        let id = id_of(&r["id"]).ok_or_else(|| (f("id"), "refund without an id".to_owned()))?;
        let total = minor(&r["total"], &f("total"))?;
        // SKU → (quantity, amount, tax), in the order of first appearance.
        let mut by_sku: Vec<(String, Decimal, Decimal, Decimal)> = Vec::new();
        let (mut lines_gross, mut lines_tax) = (Decimal::ZERO, Decimal::ZERO);
        for (j, rl) in r["lines"].as_array().into_iter().flatten().enumerate() {
            let fl = |name: &str| format!("refunds[{i}].lines[{j}].{name}");
            let line_id = id_of(&rl["orderLineId"]).unwrap_or_default();
            let line = order_lines.get(&line_id).ok_or_else(|| (fl("sku"), format!("order line {line_id} is not on the order")))?;
            let sku = line.pointer("/productVariant/sku").and_then(Value::as_str).unwrap_or_default().to_owned();
            let qty = Decimal::from(rl["quantity"].as_i64().ok_or_else(|| (fl("quantity"), "missing".to_owned()))?);
            let with_tax = minor(&line["proratedUnitPriceWithTax"], &fl("amount"))?;
            let without = minor(&line["proratedUnitPrice"], &fl("amount"))?;
            let (amount, tax) = (qty * if pit { with_tax } else { without }, qty * (with_tax - without));
            lines_gross += qty * with_tax;
            lines_tax += tax;
            match by_sku.iter_mut().find(|(s, ..)| *s == sku) {
                Some(entry) => {
                    entry.1 += qty;
                    entry.2 += amount;
                    entry.3 += tax;
                }
                None => by_sku.push((sku, qty, amount, tax)),
            }
        }
        let shipping_given = minor(&r["shipping"], &f("shipping")).unwrap_or_default();
        let shipping_gross = if !shipping_given.is_zero() {
            shipping_given
        } else if !ship_gross.is_zero() && total - lines_gross == ship_gross {
            ship_gross
        } else {
            Decimal::ZERO
        };
        let shipping_tax = if shipping_gross == ship_gross {
            ship_gross - ship_net
        } else if ship_gross.is_zero() {
            Decimal::ZERO
        } else {
            c.round(shipping_gross * (ship_gross - ship_net) / ship_gross)
        };
        let adjustment = total - lines_gross - shipping_gross;
        let lines: Vec<Value> = by_sku
            .into_iter()
            .map(|(sku, qty, amount, tax)| json!({"sku": sku, "quantity": qty.to_string(), "amount": amount.to_string(), "tax": tax.to_string()}))
            .collect();
        out.push(CanonicalRefund {
            gross: total,
            value: json!({
                "id": id,
                "refunded_at": r["createdAt"],
                "reason": non_empty(&r["reason"]),
                "lines": lines,
                "shipping": (if pit { shipping_gross } else { shipping_gross - shipping_tax }).to_string(),
                "shipping_tax": shipping_tax.to_string(),
                "adjustment": adjustment.to_string(),
                "tax": (lines_tax + shipping_tax).to_string(),
                "total": total.to_string(),
            }),
        });
    }
    Ok(out)
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

    /// Real answers of the Vendure 3.7 peer (Admin API, `ORDER_FIELDS`), in a net-price (GST added) channel:
    /// 2 × A at 33.33 + 1 × B at 12.50 + shipping 9.95, 10 % GST, paid 98.03; then `modifyOrder` took one A
    /// off with a refund of one A and the shipping (36.66 + 10.95 = 47.61).
    const REFUNDED: &str = include_str!("testdata/order-line-and-shipping-refunded.json");
    /// The same order fully cancelled with `cancelOrder` (Vendure sets every line to 0).
    const CANCELLED: &str = include_str!("testdata/order-cancelled.json");

    fn order_of(raw: &Value, pit: bool) -> ferry_model::Order {
        match translate(raw, pit) {
            ReadItem::Record(r) => match Record::parse(Stream::Orders, r.data, "test").unwrap() {
                Record::Order(o) => o,
                other => panic!("{other:?}"),
            },
            other => panic!("expected a valid order, got {other:?}"),
        }
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_refund_of_a_line_and_shipping_reads_with_its_gst_and_keeps_the_refunded_unit_on_the_order() {
        let raw: Value = serde_json::from_str(REFUNDED).unwrap();
        let o = order_of(&raw, false);
        assert_eq!(o.status, ferry_model::OrderStatus::PartiallyRefunded);
        assert_eq!(o.cancelled_at, None);
        // The unit the refund gave back stays on the line: the refund accounts for it (not an edit too).
        let a = o.lines.iter().find(|l| l.sku.ends_with("-A")).unwrap();
        assert_eq!((a.quantity, a.total), (d("2"), d("66.66")));
        assert_eq!(a.taxes.iter().map(|t| t.amount).sum::<Decimal>(), d("6.67"), "Vendure's GST on the whole line, rounded once");
        assert_eq!((o.totals.subtotal, o.totals.tax, o.totals.total), (d("79.16"), d("8.92"), d("98.03")), "the order as placed and paid");
        assert_eq!(o.totals.total, o.payments[0].amount);
        assert_eq!(o.refunds.len(), 1);
        let r = &o.refunds[0];
        assert_eq!(r.id, "2");
        assert_eq!(r.reason.as_deref(), Some("one broken, shipping back"));
        assert_eq!(r.refunded_at.unwrap().to_rfc3339(), "2026-12-02T16:36:57+00:00");
        assert_eq!(r.lines.len(), 1);
        assert!(r.lines[0].sku.ends_with("-A"));
        assert_eq!((r.lines[0].quantity, r.lines[0].amount, r.lines[0].tax), (d("1"), d("33.33"), d("3.33")));
        // Vendure 3.7 refunds only an amount: the rest equal to the order's shipping charge is its shipping.
        assert_eq!((r.shipping, r.shipping_tax, r.adjustment), (d("9.95"), d("1.00"), d("0")));
        assert_eq!((r.tax, r.total), (d("4.33"), d("47.61")));
    }

    #[test]
    fn in_a_tax_inclusive_channel_refund_amounts_include_their_gst() {
        let raw: Value = serde_json::from_str(REFUNDED).unwrap();
        let o = order_of(&raw, true);
        let r = &o.refunds[0];
        assert_eq!((r.lines[0].amount, r.lines[0].tax), (d("36.66"), d("3.33")));
        assert_eq!((r.shipping, r.shipping_tax, r.adjustment, r.tax, r.total), (d("10.95"), d("1.00"), d("0"), d("4.33"), d("47.61")));
    }

    #[test]
    fn a_failed_refund_is_not_read_and_its_modification_is_an_edit() {
        let mut raw: Value = serde_json::from_str(REFUNDED).unwrap();
        raw["payments"][0]["refunds"][0]["state"] = json!("Failed");
        let o = order_of(&raw, false);
        assert!(o.refunds.is_empty());
        assert_eq!(o.status, ferry_model::OrderStatus::Confirmed);
        let a = o.lines.iter().find(|l| l.sku.ends_with("-A")).unwrap();
        assert_eq!(a.quantity, d("1"), "without a refund the lower quantity is a change of the order");
        assert_eq!(o.totals.total, d("61.36"));
    }

    #[test]
    fn a_goodwill_refund_is_a_tax_free_adjustment_and_a_full_one_makes_the_order_refunded() {
        let mut raw: Value = serde_json::from_str(REFUNDED).unwrap();
        raw["modifications"] = json!([]);
        raw["payments"][0]["refunds"] = json!([{"id": "7", "total": 500, "items": 0, "shipping": 0, "adjustment": 0, "reason": "", "state": "Settled",
            "createdAt": "2026-12-03T01:00:00.000Z", "lines": []}]);
        let o = order_of(&raw, false);
        let r = &o.refunds[0];
        assert!(r.lines.is_empty());
        assert_eq!((r.adjustment, r.tax, r.total, r.reason.as_deref()), (d("5.00"), d("0"), d("5.00"), None));
        assert_eq!(o.status, ferry_model::OrderStatus::PartiallyRefunded);
        raw["payments"][0]["refunds"][0]["total"] = json!(6136);
        assert_eq!(order_of(&raw, false).status, ferry_model::OrderStatus::Refunded);
    }

    #[test]
    fn a_refund_naming_a_line_the_order_does_not_have_is_invalid_and_named() {
        let mut raw: Value = serde_json::from_str(REFUNDED).unwrap();
        raw["payments"][0]["refunds"][0]["lines"][0]["orderLineId"] = json!("999");
        match translate(&raw, false) {
            ReadItem::Invalid { field, message, .. } => {
                assert_eq!(field, "refunds[0].lines[0].sku");
                assert!(message.contains("999"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_cancelled_order_keeps_the_lines_it_was_cancelled_with_and_when() {
        let raw: Value = serde_json::from_str(CANCELLED).unwrap();
        let o = order_of(&raw, false);
        assert_eq!(o.status, ferry_model::OrderStatus::Cancelled);
        assert_eq!(o.cancelled_at.unwrap().to_rfc3339(), "2026-12-02T16:29:42+00:00", "the history's transition to Cancelled");
        let qty: Vec<Decimal> = o.lines.iter().map(|l| l.quantity).collect();
        assert_eq!(qty, vec![d("2"), d("1")]);
        assert_eq!(o.totals.total, d("98.03"), "what was cancelled, as it was paid");
        assert!(o.refunds.is_empty());
        // Without the history (e.g. an older Vendure or a trimmed answer): updatedAt, and the lines as placed.
        let mut bare = raw.clone();
        bare["history"] = json!({"items": []});
        bare["updatedAt"] = json!("2026-12-02T17:00:00.000Z");
        let o = order_of(&bare, false);
        assert_eq!(o.cancelled_at.unwrap().to_rfc3339(), "2026-12-02T17:00:00+00:00");
        assert_eq!(o.lines.iter().map(|l| l.quantity).collect::<Vec<_>>(), vec![d("2"), d("1")]);
    }

    #[test]
    fn a_partial_cancellation_without_refund_shows_as_a_lower_quantity() {
        let mut raw: Value = serde_json::from_str(REFUNDED).unwrap();
        raw["modifications"] = json!([]);
        raw["payments"][0]["refunds"] = json!([]);
        let o = order_of(&raw, false);
        assert_eq!(o.status, ferry_model::OrderStatus::Confirmed);
        assert_eq!(o.lines.iter().find(|l| l.sku.ends_with("-A")).unwrap().quantity, d("1"));
        // A line cancelled to 0 without refund leaves the order.
        raw["lines"][1]["quantity"] = json!(0);
        for k in ["discountedLinePrice", "discountedLinePriceWithTax", "proratedLinePrice", "proratedLinePriceWithTax"] {
            raw["lines"][1][k] = json!(0);
        }
        raw["subTotal"] = json!(3333);
        raw["subTotalWithTax"] = json!(3666);
        raw["total"] = json!(4328);
        raw["totalWithTax"] = json!(4761);
        let o = order_of(&raw, false);
        assert_eq!(o.lines.len(), 1);
    }

    /// Vendure's tax on a net amount (minor units, 10 %), rounded as `Math.round`.
    fn gst(net: i64) -> i64 {
        (net * 10 + 50).div_euclid(100)
    }

    /// The refunded fixture re-priced: A at `pa` × `qa` (of which `r` refunded through a modification),
    /// B at `pb` × 1, shipping 9.95 (+1.00) refunded or not, plus `goodwill` — as Vendure 3.7 reports it.
    fn vendure_order(pa: i64, qa: i64, r: i64, pb: i64, ship_back: bool, goodwill: i64) -> Value {
        let mut o: Value = serde_json::from_str(REFUNDED).unwrap();
        let now = qa - r;
        let line = |l: &mut Value, unit: i64, qty: i64| {
            let (gross_unit, net, gross) = (unit + gst(unit), unit * qty, unit * qty + gst(unit * qty));
            for (k, v) in [("unitPrice", unit), ("discountedUnitPrice", unit), ("proratedUnitPrice", unit)] {
                l[k] = json!(v);
            }
            for (k, v) in [("unitPriceWithTax", gross_unit), ("discountedUnitPriceWithTax", gross_unit), ("proratedUnitPriceWithTax", gross_unit)] {
                l[k] = json!(v);
            }
            for k in ["discountedLinePrice", "proratedLinePrice"] {
                l[k] = json!(net);
            }
            for k in ["discountedLinePriceWithTax", "proratedLinePriceWithTax"] {
                l[k] = json!(gross);
            }
            l["quantity"] = json!(qty);
            (net, gross)
        };
        let (na, ga) = line(&mut o["lines"][0], pa, now);
        o["lines"][0]["orderPlacedQuantity"] = json!(qa);
        let (nb, gb) = line(&mut o["lines"][1], pb, 1);
        o["subTotal"] = json!(na + nb);
        o["subTotalWithTax"] = json!(ga + gb);
        o["total"] = json!(na + nb + 995);
        o["totalWithTax"] = json!(ga + gb + 1095);
        let paid = pa * qa + gst(pa * qa) + gb + 1095;
        o["payments"][0]["amount"] = json!(paid);
        let refund_total = r * (pa + gst(pa)) + if ship_back { 1095 } else { 0 } + goodwill;
        if refund_total == 0 {
            o["payments"][0]["refunds"] = json!([]);
            o["modifications"] = json!([]);
        } else {
            let refund = &mut o["payments"][0]["refunds"][0];
            refund["total"] = json!(refund_total);
            refund["lines"] = if r > 0 { json!([{"orderLineId": "13", "quantity": r}]) } else { json!([]) };
            o["modifications"][0]["lines"] = if r > 0 { json!([{"orderLineId": "13", "quantity": -r}]) } else { json!([]) };
        }
        o
    }

    proptest::proptest! {
        /// Whatever is refunded, the order reads as it was paid, and the refund adds up to what was given
        /// back with the GST its units and shipping carried.
        #[test]
        fn refunds_read_exactly_and_the_order_stays_as_paid(pa in 1i64..200_000, qa in 1i64..6, r_share in 0u32..=100, pb in 1i64..50_000, ship_back: bool, goodwill in 0i64..2_000) {
            let r = qa * i64::from(r_share) / 100;
            let raw = vendure_order(pa, qa, r, pb, ship_back, goodwill);
            let o = order_of(&raw, false);
            let c = Currency::parse("AUD").unwrap();
            let paid = c.from_minor(pa * qa + gst(pa * qa) + pb + gst(pb) + 1095);
            proptest::prop_assert_eq!(o.totals.total, paid);
            proptest::prop_assert_eq!(o.lines[0].quantity, Decimal::from(qa));
            let refund_total = r * (pa + gst(pa)) + if ship_back { 1095 } else { 0 } + goodwill;
            if refund_total == 0 {
                proptest::prop_assert!(o.refunds.is_empty());
                proptest::prop_assert_eq!(o.status, ferry_model::OrderStatus::Confirmed);
            } else {
                let f = &o.refunds[0];
                proptest::prop_assert_eq!(f.total, c.from_minor(refund_total));
                let lines: Decimal = f.lines.iter().map(|l| l.amount).sum();
                let line_tax: Decimal = f.lines.iter().map(|l| l.tax).sum();
                proptest::prop_assert_eq!(lines + f.shipping + f.adjustment + f.tax, f.total);
                proptest::prop_assert_eq!(line_tax, c.from_minor(r * gst(pa)));
                proptest::prop_assert_eq!(f.tax, line_tax + f.shipping_tax);
                if ship_back && goodwill == 0 {
                    proptest::prop_assert_eq!((f.shipping, f.shipping_tax), (Decimal::new(995, 2), Decimal::ONE));
                }
                let status = if f.total >= paid { ferry_model::OrderStatus::Refunded } else { ferry_model::OrderStatus::PartiallyRefunded };
                proptest::prop_assert_eq!(o.status, status);
            }
        }
    }

    #[test]
    fn a_customer_without_a_user_account_is_a_guest() {
        let order = |user: Value| {
            json!({"id": "1", "code": "G1", "state": "PaymentSettled", "orderPlacedAt": "2026-04-04T13:30:00Z", "currencyCode": "AUD",
                "customer": {"id": "9", "emailAddress": "jo@example.com", "user": user},
                "lines": [{"quantity": 1, "productVariant": {"sku": "S"}, "unitPrice": 1000, "unitPriceWithTax": 1100,
                    "discountedLinePrice": 1000, "discountedLinePriceWithTax": 1100, "proratedLinePrice": 1000, "proratedLinePriceWithTax": 1100,
                    "taxLines": [{"description": "GST", "taxRate": 10}]}],
                "shippingLines": [], "subTotal": 1000, "subTotalWithTax": 1100, "total": 1000, "totalWithTax": 1100})
        };
        assert_eq!(canonical(&order(Value::Null), false).unwrap()["customer"]["guest"], true);
        assert_eq!(canonical(&order(json!({"id": "3"})), false).unwrap()["customer"]["guest"], false);
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
