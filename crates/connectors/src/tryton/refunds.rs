//! An imported order's refunds → Tryton, each exactly once per shop refund id (option `refunds`):
//!
//! - `credit_note` (default): an `account.invoice` of type `out` for the sale's (invoice) party and
//!   invoice address, with negative lines: each refunded product at its net unit price with its customer
//!   taxes (so GST is on the credit note's lines), shipping on the freight product, and a tax-free
//!   adjustment line (the discount product, no taxes) for any rest, so that Tryton's total is exactly
//!   −refund.total. `reference` = `<order number>/<refund id>`: searched before creating, so a refund is
//!   found, not created twice. Left in draft, like the invoices Tryton makes from sales.
//! - `return_sale`: a `sale.sale` with the same negative lines, `web_shop` + `web_id` = `<order
//!   number>/<refund id>` (unique per shop, so Tryton itself refuses a second one), moved to
//!   `order_state` after its total is checked.
//! - `ignore`: nothing is booked.
//!
//! An RPC create runs no on_change: every required field is set here (company, currency, receivable
//! account from the party or the account configuration, revenue journal, revenue account from the
//! product's accounting category or the configuration's default, units, taxes).
//! When Tryton's tax on what was created differs from the refund's, the refund is still booked (its
//! total is exact) with a note on the document and a warning returned: nothing silent.

use super::rpc::{self, RpcError, as_decimal, as_text, dec, dotted};
use super::{RefundBooking, Tryton};
use ferry_engine::RecordFailure;
use ferry_model::{Order, Refund};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// What one `book_refunds` call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BookedRefunds {
    /// Refunds booked by this call (those found in Tryton already are not counted).
    pub booked: usize,
    /// Differences Tryton and the shop disagree on (also written as notes on the documents).
    pub warnings: Vec<String>,
}

/// How a refund is found again in Tryton.
pub fn refund_reference(order_number: &str, refund_id: &str) -> String {
    format!("{order_number}/{refund_id}")
}

/// A product as a refund line needs it.
#[derive(Clone, Debug)]
struct RefundProduct {
    id: i64,
    unit: i64,
    taxes: Vec<i64>,
    revenue_account: Option<i64>,
}

/// The document an imported order became, which its refunds are booked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BookedAs {
    Sale(i64),
    Invoice(i64),
}

/// The sale (or invoice) a refund is booked against.
struct SaleInfo {
    party: i64,
    invoice_address: i64,
    shipment_address: Option<i64>,
    currency: i64,
    payment_term: Option<i64>,
    warehouse: Option<i64>,
}

/// One line to book: quantity (positive: the line is written negative), net unit price, description.
struct Booking {
    product: RefundProduct,
    quantity: Decimal,
    unit_price: Decimal,
    taxed: bool,
    description: String,
}

impl Tryton {
    /// Books the order's refunds that are not in Tryton yet against its sale `sale_id`; returns how many
    /// were booked now and any tax disagreement. Calling it again books nothing twice.
    pub async fn book_refunds(&self, order: &Order, sale_id: i64) -> Result<BookedRefunds, RecordFailure> {
        self.book_refunds_against(order, BookedAs::Sale(sale_id)).await
    }

    /// [`Self::book_refunds`] against the document the order became: a sale, or a customer invoice
    /// (`orders_as = "invoice"`; the credit note then takes the invoice's party, address and terms).
    pub(super) async fn book_refunds_against(&self, order: &Order, booked_as: BookedAs) -> Result<BookedRefunds, RecordFailure> {
        let mode = self.opts.refunds;
        if order.refunds.is_empty() || mode == RefundBooking::Ignore {
            return Ok(BookedRefunds::default());
        }
        let setup = self.order_setup().await.map_err(|e| RecordFailure { field: Some("refunds".into()), message: e.to_string(), retryable: e.is_transient() })?;
        let web_shop = setup.web_shop;
        let refs: Vec<String> = order.refunds.iter().map(|r| refund_reference(&order.number, &r.id)).collect();
        let existing = self.existing_refunds(mode, web_shop, &refs).await.map_err(|e| e.to_record_failure(Some("refunds".into())))?;
        let mut result = BookedRefunds::default();
        // A credit note found in draft is checked again: a run stopped between creating it and fixing
        // its adjustment must not leave its total off.
        for (reference, id) in &existing {
            if mode == RefundBooking::CreditNote
                && let Some(r) = order.refunds.iter().find(|r| refund_reference(&order.number, &r.id) == *reference)
            {
                self.settle_credit_note(*id, r, order, &mut result.warnings).await?;
            }
        }
        let todo: Vec<(usize, &Refund)> = order.refunds.iter().enumerate().filter(|(i, _)| !existing.contains_key(&refs[*i])).collect();
        if todo.is_empty() {
            return Ok(result);
        }
        let sale = self.sale_info(booked_as).await?;
        let mut codes: Vec<String> = todo.iter().flat_map(|(_, r)| r.lines.iter().map(|l| l.sku.clone())).collect::<HashSet<_>>().into_iter().collect();
        codes.push(self.opts.freight_product.clone());
        codes.push(self.opts.discount_product.clone());
        let products = self.refund_products(&codes).await.map_err(|e| e.to_record_failure(Some("refunds".into())))?;
        let company = self.rpc.context().await.ok().and_then(|c| c.get("company").and_then(Value::as_i64)).ok_or_else(|| RecordFailure::permanent(Some("refunds".into()), "the Tryton user has no current company"))?;
        for (i, refund) in todo {
            let bookings = self.bookings(order, i, refund, &products)?;
            let reference = &refs[i];
            match mode {
                RefundBooking::CreditNote => {
                    let id = self.create_credit_note(order, refund, reference, &sale, company, &bookings).await?;
                    self.settle_credit_note(id, refund, order, &mut result.warnings).await?;
                }
                RefundBooking::ReturnSale => {
                    self.create_return_sale(order, refund, reference, web_shop, &sale, &bookings, &mut result.warnings).await?;
                }
                RefundBooking::Ignore => unreachable!("returned above"),
            }
            result.booked += 1;
        }
        Ok(result)
    }

    /// Reference → id of the refunds already booked.
    async fn existing_refunds(&self, mode: RefundBooking, web_shop: i64, refs: &[String]) -> Result<HashMap<String, i64>, RpcError> {
        let (model, domain, field) = match mode {
            RefundBooking::CreditNote => ("account.invoice", json!([["type", "=", "out"], ["reference", "in", refs]]), "reference"),
            _ => ("sale.sale", json!([["web_shop", "=", web_shop], ["web_id", "in", refs]]), "web_id"),
        };
        let rows = self.rpc.search_read(model, domain, 0, None, Value::Null, &[field], &Self::all_records()).await?;
        Ok(rows.into_iter().filter_map(|r| Some((as_text(r.get(field))?, r.get("id")?.as_i64()?))).collect())
    }

    async fn sale_info(&self, booked_as: BookedAs) -> Result<SaleInfo, RecordFailure> {
        let fail = |e: RpcError| e.to_record_failure(None);
        let (model, sale_id, fields): (&str, i64, &[&str]) = match booked_as {
            BookedAs::Sale(id) => ("sale.sale", id, &["party", "invoice_party", "invoice_address", "shipment_address", "currency", "payment_term", "warehouse"]),
            BookedAs::Invoice(id) => ("account.invoice", id, &["party", "invoice_address", "currency", "payment_term"]),
        };
        let rows = self.rpc.read(model, &[sale_id], fields, &Self::all_records()).await.map_err(fail)?;
        let row = rows.first().ok_or_else(|| RecordFailure::permanent(None, format!("{model} {sale_id} is not in Tryton")))?;
        let id = |f: &str| row.get(f).and_then(Value::as_i64);
        Ok(SaleInfo {
            party: id("invoice_party").or(id("party")).ok_or_else(|| RecordFailure::permanent(None, format!("{model} {sale_id} has no party")))?,
            invoice_address: id("invoice_address").ok_or_else(|| RecordFailure::permanent(None, format!("{model} {sale_id} has no invoice address")))?,
            shipment_address: id("shipment_address"),
            currency: id("currency").ok_or_else(|| RecordFailure::permanent(None, format!("{model} {sale_id} has no currency")))?,
            payment_term: id("payment_term"),
            warehouse: id("warehouse"),
        })
    }

    /// Product code → what a refund line needs (unknown codes are absent).
    async fn refund_products(&self, codes: &[String]) -> Result<HashMap<String, RefundProduct>, RpcError> {
        let fields = ["code", "sale_uom", "default_uom", "account_category.customer_taxes_used", "account_category.account_revenue"];
        let rows = self.rpc.search_read("product.product", json!([["code", "in", codes]]), 0, None, Value::Null, &fields, &Self::all_records()).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let code = as_text(r.get("code"))?;
                let unit = r.get("sale_uom").and_then(Value::as_i64).or_else(|| r.get("default_uom").and_then(Value::as_i64))?;
                let product = RefundProduct {
                    id: r.get("id")?.as_i64()?,
                    unit,
                    taxes: super::id_list(dotted(r, "account_category.customer_taxes_used")),
                    revenue_account: dotted(r, "account_category.account_revenue").and_then(Value::as_i64),
                };
                Some((code, product))
            })
            .collect())
    }

    /// The refund's lines as Tryton lines (net unit prices, positive quantities); the adjustment comes later.
    fn bookings(&self, order: &Order, i: usize, refund: &Refund, products: &HashMap<String, RefundProduct>) -> Result<Vec<Booking>, RecordFailure> {
        let pit = order.prices_include_tax;
        let net = |amount: Decimal, tax: Decimal| if pit { amount - tax } else { amount };
        let mut out = Vec::new();
        for (j, l) in refund.lines.iter().enumerate() {
            if l.quantity.is_zero() {
                continue;
            }
            let product = products
                .get(&l.sku)
                .cloned()
                .ok_or_else(|| RecordFailure::permanent(Some(format!("refunds[{i}].lines[{j}].sku")), format!("no product with code {:?} in Tryton", l.sku)))?;
            out.push(Booking {
                product,
                quantity: l.quantity,
                unit_price: (net(l.amount, l.tax) / l.quantity).round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero),
                taxed: true,
                description: format!("Refund {}: {}", refund.id, l.sku),
            });
        }
        if !refund.shipping.is_zero() {
            let freight = products.get(&self.opts.freight_product).cloned().ok_or_else(|| {
                RecordFailure::permanent(Some(format!("refunds[{i}].shipping")), format!("freight_product {:?} is not in Tryton", self.opts.freight_product))
            })?;
            out.push(Booking {
                product: freight,
                quantity: Decimal::ONE,
                unit_price: net(refund.shipping, refund.shipping_tax),
                taxed: true,
                description: format!("Refund {}: shipping", refund.id),
            });
        }
        Ok(out)
    }

    /// The tax-free line that makes the total exact: the discount product without taxes.
    fn adjustment(&self, products_discount: &RefundProduct, amount: Decimal, refund: &Refund) -> Booking {
        Booking {
            product: products_discount.clone(),
            quantity: Decimal::ONE,
            unit_price: amount,
            taxed: false,
            description: format!("Refund {}: adjustment", refund.id),
        }
    }

    async fn create_credit_note(&self, order: &Order, refund: &Refund, reference: &str, sale: &SaleInfo, company: i64, bookings: &[Booking]) -> Result<i64, RecordFailure> {
        let fail = |e: RpcError| e.to_record_failure(Some("refunds".into()));
        let none = Map::new();
        let party = self.rpc.read("party.party", &[sale.party], &["account_receivable"], &none).await.map_err(fail)?;
        let config = self.rpc.read("account.configuration", &[1], &["default_account_receivable", "default_category_account_revenue"], &none).await.map_err(fail)?;
        let conf = |f: &str| config.first().and_then(|c| c.get(f)).and_then(Value::as_i64);
        let receivable = party.first().and_then(|p| p.get("account_receivable")).and_then(Value::as_i64).or(conf("default_account_receivable")).ok_or_else(|| {
            RecordFailure::permanent(Some("refunds".into()), format!("party {} has no receivable account and the account configuration no default", sale.party))
        })?;
        let journal = *self.rpc.search("account.journal", json!([["type", "=", "revenue"]]), 0, Some(1), json!([["id", "ASC"]]), &none).await.map_err(fail)?.first().ok_or_else(|| {
            RecordFailure::permanent(Some("refunds".into()), "no revenue journal (account.journal of type revenue) for credit notes")
        })?;
        let default_revenue = conf("default_category_account_revenue");
        let expected_adjustment = expected_adjustment(refund, bookings);
        let discount = self.discount_product().await?;
        let mut all: Vec<&Booking> = bookings.iter().collect();
        let adjustment = (!expected_adjustment.is_zero()).then(|| self.adjustment(&discount, expected_adjustment, refund));
        all.extend(adjustment.as_ref());
        let mut lines = Vec::new();
        for b in all {
            let account = b.product.revenue_account.or(default_revenue).ok_or_else(|| {
                RecordFailure::permanent(Some("refunds".into()), format!("product {} has no revenue account (accounting category) and the configuration no default", b.product.id))
            })?;
            lines.push(json!({
                "type": "line", "company": company, "currency": sale.currency, "invoice_type": "out",
                "product": b.product.id, "description": b.description, "account": account,
                "quantity": number(-b.quantity), "unit": b.product.unit, "unit_price": dec(b.unit_price),
                "taxes": [["add", if b.taxed { b.product.taxes.clone() } else { vec![] }]],
            }));
        }
        let mut vals = json!({
            "type": "out", "company": company, "party": sale.party, "invoice_address": sale.invoice_address,
            "currency": sale.currency, "account": receivable, "journal": journal, "reference": reference,
            "description": description(order, refund),
            "lines": [["create", lines]],
        });
        if let Some(pt) = sale.payment_term {
            vals["payment_term"] = json!(pt);
        }
        let ids = self.rpc.create("account.invoice", vec![vals], &none).await.map_err(fail)?;
        Ok(ids[0])
    }

    /// The discount product (for the adjustment line).
    async fn discount_product(&self) -> Result<RefundProduct, RecordFailure> {
        let code = self.opts.discount_product.clone();
        self.refund_products(std::slice::from_ref(&code))
            .await
            .map_err(|e| e.to_record_failure(Some("refunds".into())))?
            .remove(&code)
            .ok_or_else(|| RecordFailure::permanent(Some("refunds".into()), format!("discount_product {code:?} is not in Tryton")))
    }

    /// Makes a draft credit note's total exactly −refund.total (through its tax-free adjustment line) and
    /// notes a tax that differs from the refund's.
    async fn settle_credit_note(&self, id: i64, refund: &Refund, order: &Order, warnings: &mut Vec<String>) -> Result<(), RecordFailure> {
        let fail = |e: RpcError| e.to_record_failure(Some("refunds".into()));
        let none = Map::new();
        let rows = self.rpc.read("account.invoice", &[id], &["state", "total_amount", "lines", "company", "currency"], &none).await.map_err(fail)?;
        let Some(row) = rows.first() else { return Ok(()) };
        if as_text(row.get("state")).as_deref() != Some("draft") {
            return Ok(()); // posted or cancelled: the accountant's now
        }
        let total = row.get("total_amount").and_then(as_decimal).unwrap_or_default();
        let off = -refund.total - total;
        if !off.is_zero() {
            let lines = self.rpc.read("account.invoice.line", &super::id_list(row.get("lines")), &["description", "unit_price"], &none).await.map_err(fail)?;
            let marker = format!("Refund {}: adjustment", refund.id);
            match lines.iter().find(|l| as_text(l.get("description")).as_deref() == Some(marker.as_str())) {
                // quantity −1: a lower unit price raises the total
                Some(l) => {
                    let price = l.get("unit_price").and_then(as_decimal).unwrap_or_default() - off;
                    let line_id = l.get("id").and_then(Value::as_i64).unwrap_or_default();
                    self.rpc.write("account.invoice.line", &[line_id], json!({"unit_price": dec(price)}), &none).await.map_err(fail)?;
                }
                None => {
                    let discount = self.discount_product().await?;
                    let b = self.adjustment(&discount, -off, refund);
                    let config = self.rpc.read("account.configuration", &[1], &["default_category_account_revenue"], &none).await.map_err(fail)?;
                    let account = b.product.revenue_account.or(config.first().and_then(|c| c.get("default_category_account_revenue")).and_then(Value::as_i64));
                    let line = json!({"type": "line", "company": row.get("company"), "currency": row.get("currency"), "invoice_type": "out", "product": b.product.id, "description": b.description, "account": account,
                        "quantity": -1, "unit": b.product.unit, "unit_price": dec(b.unit_price)});
                    self.rpc.write("account.invoice", &[id], json!({"lines": [["create", [line]]]}), &none).await.map_err(fail)?;
                }
            }
        }
        let tax = self.rpc.read("account.invoice", &[id], &["tax_amount"], &none).await.map_err(fail)?.first().and_then(|r| r.get("tax_amount")).and_then(as_decimal).unwrap_or_default();
        if tax != -refund.tax {
            let message = format!("Ferry: Tryton computes tax {tax} on the credit note for refund {} of web order {}, the shop refunded {} tax.", refund.id, order.number, refund.tax);
            // A note once per document: a second check of the same draft must not add it again.
            let resource = format!("account.invoice,{id}");
            let noted = self.rpc.search("ir.note", json!([["resource", "=", resource], ["message", "=", message]]), 0, Some(1), Value::Null, &none).await.map_err(fail)?;
            if noted.is_empty() {
                self.rpc.create("ir.note", vec![json!({"resource": resource, "message": message})], &none).await.map_err(fail)?;
                warnings.push(message);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_return_sale(&self, order: &Order, refund: &Refund, reference: &str, web_shop: i64, sale: &SaleInfo, bookings: &[Booking], warnings: &mut Vec<String>) -> Result<(), RecordFailure> {
        let fail = |e: RpcError| e.to_record_failure(Some("refunds".into()));
        let none = Map::new();
        let line = |b: &Booking| {
            json!({"type": "line", "product": b.product.id, "description": b.description, "quantity": number(-b.quantity),
                "unit": b.product.unit, "unit_price": dec(b.unit_price), "taxes": [["add", if b.taxed { b.product.taxes.clone() } else { vec![] }]]})
        };
        let mut lines: Vec<Value> = bookings.iter().map(line).collect();
        let expected_adjustment = expected_adjustment(refund, bookings);
        let discount = self.discount_product().await?;
        if !expected_adjustment.is_zero() {
            lines.push(line(&self.adjustment(&discount, expected_adjustment, refund)));
        }
        let mut vals = json!({
            "party": sale.party, "invoice_address": sale.invoice_address, "currency": sale.currency,
            "web_shop": web_shop, "web_id": reference, "reference": reference, "description": description(order, refund),
            "sale_date": rpc::date(refund.refunded_at.unwrap_or(order.placed_at).date_naive()),
            "lines": [["create", lines]],
        });
        for (field, v) in [("shipment_address", sale.shipment_address), ("payment_term", sale.payment_term), ("warehouse", sale.warehouse)] {
            if let Some(id) = v {
                vals[field] = json!(id);
            }
        }
        let id = self.rpc.create("sale.sale", vec![vals], &none).await.map_err(fail)?[0];
        // Total exact before quoting (lines can only change in draft).
        let row = self.rpc.read("sale.sale", &[id], &["total_amount", "tax_amount"], &none).await.map_err(fail)?;
        let total = row.first().and_then(|r| r.get("total_amount")).and_then(as_decimal).unwrap_or_default();
        let off = -refund.total - total;
        if !off.is_zero() {
            let b = self.adjustment(&discount, -off, refund);
            self.rpc.write("sale.sale", &[id], json!({"lines": [["create", [line(&b)]]]}), &none).await.map_err(fail)?;
        }
        let tax = self.rpc.read("sale.sale", &[id], &["tax_amount"], &none).await.map_err(fail)?.first().and_then(|r| r.get("tax_amount")).and_then(as_decimal).unwrap_or_default();
        if tax != -refund.tax {
            let message = format!("Ferry: Tryton computes tax {tax} on the return sale for refund {} of web order {}, the shop refunded {} tax.", refund.id, order.number, refund.tax);
            self.rpc.create("ir.note", vec![json!({"resource": format!("sale.sale,{id}"), "message": message})], &none).await.map_err(fail)?;
            warnings.push(message);
        }
        let steps: &[&str] = match self.opts.order_state {
            super::OrderState::Draft => &[],
            super::OrderState::Quotation => &["quote"],
            super::OrderState::Confirmed => &["quote", "confirm"],
        };
        for step in steps {
            self.rpc.button("sale.sale", step, &[id], &none).await.map_err(fail)?;
        }
        Ok(())
    }
}

/// What the booked lines leave of the refund's total, before Tryton's rounding: total − net lines − tax.
fn expected_adjustment(refund: &Refund, bookings: &[Booking]) -> Decimal {
    let net: Decimal = bookings.iter().map(|b| (b.quantity * b.unit_price).round_dp(2)).sum();
    refund.total - net - refund.tax
}

fn description(order: &Order, refund: &Refund) -> String {
    match &refund.reason {
        Some(reason) => format!("Refund {} of web order {} ({reason})", refund.id, order.number),
        None => format!("Refund {} of web order {}", refund.id, order.number),
    }
}

/// A quantity for a Float field: an exact JSON number.
fn number(d: Decimal) -> Value {
    Value::from_str(&d.normalize().to_string()).unwrap_or(json!(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn product() -> RefundProduct {
        RefundProduct { id: 1, unit: 1, taxes: vec![1], revenue_account: Some(9) }
    }

    fn refund(total: &str, tax: &str) -> Refund {
        Refund { id: "R1".into(), refunded_at: None, reason: None, lines: vec![], shipping: Decimal::ZERO, shipping_tax: Decimal::ZERO, adjustment: Decimal::ZERO, tax: d(tax), total: d(total) }
    }

    #[test]
    fn the_adjustment_is_what_lines_and_tax_leave_of_the_total() {
        let line = Booking { product: product(), quantity: d("1"), unit_price: d("33.33"), taxed: true, description: String::new() };
        let ship = Booking { product: product(), quantity: d("1"), unit_price: d("9.95"), taxed: true, description: String::new() };
        assert_eq!(expected_adjustment(&refund("47.61", "4.33"), &[line, ship]), d("0"));
        let three = Booking { product: product(), quantity: d("3"), unit_price: d("22.2233"), taxed: true, description: String::new() };
        // 3 × 22.2233 = 66.6699 → 66.67 on the line; a 70.00 refund with 6.67 tax leaves −3.34.
        assert_eq!(expected_adjustment(&refund("70.00", "6.67"), &[three]), d("-3.34"));
    }

    fn order(prices_include_tax: bool, refunds: serde_json::Value) -> Order {
        let (unit, total, tax) = if prices_include_tax { ("36.66", "73.32", "6.67") } else { ("33.33", "66.66", "6.67") };
        let o = json!({"number": "W-1", "placed_at": "2026-12-02T10:00:00Z", "currency": "AUD", "prices_include_tax": prices_include_tax,
            "lines": [{"sku": "A", "quantity": "2", "unit_price": unit, "total": total, "taxes": [{"name": "GST", "amount": tax}]}],
            "totals": {"subtotal": total, "tax": tax, "total": if prices_include_tax { "73.32" } else { "73.33" }},
            "refunds": refunds});
        match ferry_model::Record::parse(ferry_model::Stream::Orders, o, "test").unwrap_or_else(|e| panic!("{e}")) {
            ferry_model::Record::Order(o) => o,
            _ => unreachable!(),
        }
    }

    fn connector() -> Tryton {
        let opts = serde_json::from_value(json!({"url": "http://127.0.0.1:9", "database": "t", "password": "p"})).unwrap();
        Tryton::new(opts, "test").unwrap()
    }

    #[test]
    fn refund_lines_book_net_unit_prices_in_either_tax_mode() {
        let t = connector();
        let products: HashMap<String, RefundProduct> = [("A".to_owned(), product()), ("FREIGHT".to_owned(), product())].into();
        // Prices with tax: 36.66 back for one unit (3.33 GST in it), 10.95 shipping (1.00 GST).
        let o = order(true, json!([{"id": "1", "lines": [{"sku": "A", "quantity": "1", "amount": "36.66", "tax": "3.33"}],
            "shipping": "10.95", "shipping_tax": "1.00", "tax": "4.33", "total": "47.61"}]));
        let b = t.bookings(&o, 0, &o.refunds[0], &products).unwrap();
        assert_eq!(b.iter().map(|b| (b.quantity, b.unit_price)).collect::<Vec<_>>(), vec![(d("1"), d("33.33")), (d("1"), d("9.95"))]);
        assert_eq!(expected_adjustment(&o.refunds[0], &b), d("0"));
        // Prices without tax: the amounts are net already; two units at 66.66 → 33.33 each.
        let o = order(false, json!([{"id": "1", "lines": [{"sku": "A", "quantity": "2", "amount": "66.66", "tax": "6.67"}], "tax": "6.67", "total": "73.33"}]));
        let b = t.bookings(&o, 0, &o.refunds[0], &products).unwrap();
        assert_eq!(b.iter().map(|b| (b.quantity, b.unit_price)).collect::<Vec<_>>(), vec![(d("2"), d("33.33"))]);
        // A SKU Tryton does not know fails on its field.
        let o = order(false, json!([{"id": "1", "lines": [{"sku": "A", "quantity": "1", "amount": "33.33", "tax": "3.33"}], "tax": "3.33", "total": "36.66"}]));
        let err = t.bookings(&o, 0, &o.refunds[0], &HashMap::new()).err().unwrap();
        assert_eq!(err.field.as_deref(), Some("refunds[0].lines[0].sku"));
    }

    #[test]
    fn the_reference_names_order_and_refund() {
        assert_eq!(refund_reference("WEB-1001", "7"), "WEB-1001/7");
    }
}
