//! A sale's amounts as Tryton 8.2 computes them, and the unit prices that make Tryton agree with the shop.
//!
//! Tryton (modules `sale` and `account`, `TaxableMixin._get_taxes`):
//! - a line's amount is `round(quantity × unit_price)`; `untaxed_amount` is the sum of line amounts and
//!   `total_amount = untaxed_amount + tax_amount`;
//! - taxes are computed on the *unrounded* `unit_price × rate × quantity`, lines grouped by their taxes and
//!   the sign of `unit_price × quantity` (refund-like negative lines form their own group);
//! - `account.configuration.tax_rounding = document` rounds each tax once per group, `line` once per line;
//!   rounding is the currency's, half to even, and the cents lost rounding several taxes together are
//!   given back one by one (`_round_taxes`).
//!
//! A shop (Vendure) rounds tax per line, half up. To agree, [`plan`] keeps every line amount the shop
//! meant (to the cent) and moves unit prices inside the slack their 4 decimals give (`114.6501` is still
//! an amount of `114.65`, but its 10 % tax is `11.47` where `114.65` gives `11.46` half to even) until
//! [`predict`] — Tryton's own rules — gives the shop's tax. What cannot be met that way is reported as a
//! tax difference, and a tax-free adjustment makes Tryton's total the shop's total regardless.

use ferry_model::Order;
use rust_decimal::{Decimal, RoundingStrategy};

/// Tryton's `account.configuration.tax_rounding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaxRounding {
    Document,
    Line,
}

impl TaxRounding {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaxRounding::Document => "document",
            TaxRounding::Line => "line",
        }
    }
}

/// One `account.tax` of a line. Only percentage taxes are modelled (`rate`); a line whose taxes include
/// anything else is predicted without them and the amounts Tryton reports are checked afterwards.
#[derive(Clone, Debug, PartialEq)]
pub struct Tax {
    pub id: i64,
    pub rate: Decimal,
    pub sequence: Option<i64>,
}

/// A sale line as Tryton sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SaleLine {
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub taxes: Vec<Tax>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amounts {
    pub untaxed: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
}

/// Tryton's unit price digits (`product.price_decimal`, default 4).
pub const PRICE_DIGITS: u32 = 4;

fn round(x: Decimal, digits: u32) -> Decimal {
    x.round_dp_with_strategy(digits, RoundingStrategy::MidpointNearestEven)
}

/// `Tax.sort_taxes`: taxes without a sequence first, then by sequence, then by id.
fn sorted(taxes: &[Tax]) -> Vec<&Tax> {
    let mut t: Vec<&Tax> = taxes.iter().collect();
    t.sort_by_key(|t| (t.sequence.is_some(), t.sequence.unwrap_or(0), t.id));
    t
}

/// `TaxableMixin._round_taxes`: round each tax, then give the cents the rounding created or lost back,
/// one unit at a time, cycling over the non-zero taxes.
fn round_taxes(amounts: &mut [Decimal], digits: u32) {
    let unit = Decimal::new(1, digits);
    let mut remainder = Decimal::ZERO;
    for a in amounts.iter_mut() {
        let r = round(*a, digits);
        remainder += r - *a;
        *a = r;
    }
    let mut remainder = round(remainder, digits);
    if remainder.abs() < unit || amounts.iter().all(|a| a.is_zero()) {
        return;
    }
    let offset = if remainder.is_sign_negative() { -unit } else { unit };
    'outer: loop {
        for a in amounts.iter_mut() {
            if !a.is_zero() {
                *a -= offset;
                remainder -= offset;
                if remainder.abs() < unit {
                    break 'outer;
                }
            }
        }
    }
}

/// Tryton's `untaxed_amount`, `tax_amount` and `total_amount` of a sale with these lines, in a currency of
/// `digits` decimals.
pub fn predict(lines: &[SaleLine], rounding: TaxRounding, digits: u32) -> Amounts {
    let untaxed: Decimal = lines.iter().map(|l| round(l.quantity * l.unit_price, digits)).sum();
    // group key: the line's taxes and the sign of its base, in order of first appearance
    type Group<'a> = ((Vec<i64>, bool), Vec<&'a SaleLine>);
    let mut groups: Vec<Group> = Vec::new();
    for l in lines {
        let mut ids: Vec<i64> = l.taxes.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        let key = (ids, l.unit_price * l.quantity >= Decimal::ZERO);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(l),
            None => groups.push((key, vec![l])),
        }
    }
    let mut tax = Decimal::ZERO;
    for (_, group) in &groups {
        let taxes = sorted(&group[0].taxes);
        let mut sums = vec![Decimal::ZERO; taxes.len()];
        for l in group {
            let mut amounts: Vec<Decimal> = taxes.iter().map(|t| l.unit_price * t.rate * l.quantity).collect();
            if rounding == TaxRounding::Line {
                round_taxes(&mut amounts, digits);
            }
            sums.iter_mut().zip(amounts).for_each(|(s, a)| *s += a);
        }
        if rounding == TaxRounding::Document {
            round_taxes(&mut sums, digits);
        }
        tax += sums.iter().copied().sum::<Decimal>();
    }
    Amounts { untaxed, tax, total: untaxed + tax }
}

/// A sale line to write: the amount (net of tax, to the cent, signed) the shop means it to have.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub quantity: Decimal,
    pub amount: Decimal,
    pub taxes: Vec<Tax>,
}

/// The unit prices to write, and what Tryton will then compute.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// One per wanted line, at most [`PRICE_DIGITS`] decimals.
    pub unit_prices: Vec<Decimal>,
    /// A tax-free line (quantity 1) that makes Tryton's total the shop's; zero when none is needed.
    pub adjustment: Decimal,
    /// Tryton's amounts with these prices and the adjustment.
    pub amounts: Amounts,
    /// Tryton's tax − the shop's tax (zero when they agree).
    pub tax_difference: Decimal,
}

/// Unit prices (4 decimals) whose line amount is `amount`, as a range: the one closest to amount/quantity
/// and the lowest and highest that still round to `amount`. `None` when no 4-decimal price gives it (a
/// quantity too large for the slack).
fn price_range(w: &Wanted, digits: u32) -> (Decimal, Option<(Decimal, Decimal)>) {
    let center = round(w.amount / w.quantity, PRICE_DIGITS);
    let step = Decimal::new(1, PRICE_DIGITS);
    let half = Decimal::new(5, digits + 1);
    let gives = |u: Decimal| round(u * w.quantity, digits) == w.amount;
    let (a, b) = ((w.amount - half) / w.quantity, (w.amount + half) / w.quantity);
    let (mut lo, mut hi) = (a.min(b), a.max(b));
    // never across zero: a free line stays free of negative prices, a discount stays a discount
    if w.amount >= Decimal::ZERO {
        lo = lo.max(Decimal::ZERO);
    }
    if w.amount <= Decimal::ZERO {
        hi = hi.min(Decimal::ZERO);
    }
    let mut low = lo.round_dp_with_strategy(PRICE_DIGITS, RoundingStrategy::ToPositiveInfinity);
    let mut high = hi.round_dp_with_strategy(PRICE_DIGITS, RoundingStrategy::ToNegativeInfinity);
    // the bounds themselves may be ties that round the other way
    while low <= high && !gives(low) {
        low += step;
    }
    while high >= low && !gives(high) {
        high -= step;
    }
    if low > high { (center, None) } else { (center.clamp(low, high), Some((low, high))) }
}

/// Chooses unit prices so that Tryton's amounts agree with the shop's `tax` and `total` where the 4-decimal
/// slack allows, and a tax-free adjustment for the rest of the total.
pub fn plan(wanted: &[Wanted], shop_tax: Decimal, shop_total: Decimal, rounding: TaxRounding, digits: u32) -> Plan {
    let ranges: Vec<(Decimal, Option<(Decimal, Decimal)>)> = wanted.iter().map(|w| price_range(w, digits)).collect();
    let mut lines: Vec<SaleLine> =
        wanted.iter().zip(&ranges).map(|(w, (c, _))| SaleLine { quantity: w.quantity, unit_price: *c, taxes: w.taxes.clone() }).collect();
    let raw_tax = |lines: &[SaleLine]| -> Decimal { lines.iter().map(|l| l.taxes.iter().map(|t| l.unit_price * t.rate * l.quantity).sum::<Decimal>()).sum() };
    // What is minimised: the tax difference; while there is one, how far the unrounded tax is from the
    // shop's (moving toward it crosses a rounding boundary sooner); then how far prices moved.
    let score = |lines: &[SaleLine], j: usize| -> (Decimal, Decimal, Decimal) {
        let off = (predict(lines, rounding, digits).tax - shop_tax).abs();
        let pull = if off.is_zero() { Decimal::ZERO } else { (raw_tax(lines) - shop_tax).abs() };
        (off, pull, (lines[j].unit_price - ranges[j].0).abs())
    };
    let half = Decimal::new(5, digits + 1);
    let step = Decimal::new(1, PRICE_DIGITS);
    // every 4-decimal price of a line's range for ordinary orders; for very large ones only the ends,
    // the centre and the prices aimed at the shop's tax and the rounding boundaries around it
    let exhaustive = wanted.len() <= 60;
    for _pass in 0..3 {
        if predict(&lines, rounding, digits).tax == shop_tax {
            break;
        }
        let mut moved = false;
        for j in 0..lines.len() {
            let (center, Some((low, high))) = ranges[j] else { continue };
            let rate: Decimal = lines[j].taxes.iter().map(|t| t.rate).sum();
            if rate.is_zero() {
                continue;
            }
            let current = lines[j].unit_price;
            let candidates: Vec<Decimal> = if exhaustive && (high - low) / step <= Decimal::from(200) {
                let mut all = Vec::new();
                let mut u = low;
                while u <= high {
                    all.push(u);
                    u += step;
                }
                all
            } else {
                let gap = shop_tax - raw_tax(&lines);
                let mut some = vec![low, high, center];
                for target in [gap - half, gap, gap + half] {
                    let aim = (current + target / (rate * lines[j].quantity)).clamp(low, high);
                    let down = aim.round_dp_with_strategy(PRICE_DIGITS, RoundingStrategy::ToNegativeInfinity).clamp(low, high);
                    some.extend([down, (down + step).min(high)]);
                }
                some
            };
            let mut best = (score(&lines, j), current);
            for u in candidates {
                lines[j].unit_price = u;
                let s = score(&lines, j);
                if s < best.0 {
                    best = (s, u);
                }
            }
            moved |= best.1 != current;
            lines[j].unit_price = best.1;
        }
        if !moved {
            break;
        }
    }
    let before = predict(&lines, rounding, digits);
    let adjustment = shop_total - before.total;
    if !adjustment.is_zero() {
        lines.push(SaleLine { quantity: Decimal::ONE, unit_price: adjustment, taxes: vec![] });
    }
    let amounts = predict(&lines, rounding, digits);
    Plan { unit_prices: lines.iter().take(wanted.len()).map(|l| l.unit_price).collect(), adjustment, amounts, tax_difference: amounts.tax - shop_tax }
}

/// Which part of the order a sale line stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Line(usize),
    /// `lines[i].discount`, on the line's taxes.
    LineDiscount(usize),
    Shipping(usize),
    Discount(usize),
}

/// The sale lines an order becomes, each with the net amount the shop meant: prices that exclude tax are
/// taken as they are; tax-inclusive ones lose the tax the shop says it charged (each line's and each
/// shipping's `taxes`) or, where the shop does not say, their rate's share. The amounts then add up to
/// the shop's `total − tax`; any cent left over goes to the order discount (whose tax the shop spread
/// over the lines) or else the largest line.
/// `line_taxes[i]` are the taxes of `lines[i]`, `freight` of shipping, `discount_taxes[i]` of `discounts[i]`.
/// A line's own discount is a sale line of its own (`discount_in_price = false`), or taken off the line's
/// unit price, so that the sale line is the amount the shop taxed.
pub fn wanted_lines(o: &Order, line_taxes: &[Vec<Tax>], freight: &[Tax], discount_taxes: &[Vec<Tax>], discount_in_price: bool) -> Vec<(Part, Wanted)> {
    let c = o.currency;
    let digits = c.minor_units();
    let cents = |x: Decimal| round(x, digits);
    let rate = |taxes: &[Tax]| taxes.iter().map(|t| t.rate).sum::<Decimal>();
    let net = |gross: Decimal, taxes: &[Tax]| if o.prices_include_tax { cents(gross / (Decimal::ONE + rate(taxes))) } else { cents(gross) };
    let shop_split = o.prices_include_tax && o.discounts.is_empty();
    let mut out = Vec::new();
    for (i, l) in o.lines.iter().enumerate() {
        let taxes = &line_taxes[i];
        let full = net(l.quantity * l.unit_price, taxes);
        let after_discount = if shop_split && !l.taxes.is_empty() {
            cents(l.total - l.taxes.iter().map(|t| t.amount).sum::<Decimal>())
        } else {
            net(l.total, taxes)
        };
        if l.discount.is_zero() || discount_in_price {
            out.push((Part::Line(i), Wanted { quantity: l.quantity, amount: after_discount, taxes: taxes.clone() }));
        } else {
            out.push((Part::Line(i), Wanted { quantity: l.quantity, amount: full, taxes: taxes.clone() }));
            out.push((Part::LineDiscount(i), Wanted { quantity: Decimal::ONE, amount: after_discount - full, taxes: taxes.clone() }));
        }
    }
    for (i, s) in o.shipping.iter().enumerate() {
        let amount = if o.prices_include_tax && !s.taxes.is_empty() { cents(s.amount - s.taxes.iter().map(|t| t.amount).sum::<Decimal>()) } else { net(s.amount, freight) };
        out.push((Part::Shipping(i), Wanted { quantity: Decimal::ONE, amount, taxes: freight.to_vec() }));
    }
    for (i, d) in o.discounts.iter().enumerate() {
        out.push((Part::Discount(i), Wanted { quantity: Decimal::ONE, amount: -net(d.amount, &discount_taxes[i]), taxes: discount_taxes[i].clone() }));
    }
    let untaxed = cents(o.totals.total - o.totals.tax);
    let left = untaxed - out.iter().map(|(_, w)| w.amount).sum::<Decimal>();
    if !left.is_zero() {
        let target = out.iter().rposition(|(p, _)| matches!(p, Part::Discount(_))).or_else(|| {
            out.iter().enumerate().filter(|(_, (_, w))| w.quantity == Decimal::ONE).max_by_key(|(_, (_, w))| w.amount.abs()).map(|(k, _)| k)
        });
        match target {
            Some(k) => out[k].1.amount += left,
            // only multi-unit lines: a line of its own keeps their amounts whole
            None => out.push((Part::LineDiscount(0), Wanted { quantity: Decimal::ONE, amount: left, taxes: line_taxes.first().cloned().unwrap_or_default() })),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::{Record, Stream};
    use proptest::prelude::*;
    use serde_json::json;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
    fn gst() -> Vec<Tax> {
        vec![Tax { id: 1, rate: d("0.1"), sequence: None }]
    }
    fn line(q: &str, u: &str, taxes: Vec<Tax>) -> SaleLine {
        SaleLine { quantity: d(q), unit_price: d(u), taxes }
    }
    fn want(q: &str, amount: &str, taxes: Vec<Tax>) -> Wanted {
        Wanted { quantity: d(q), amount: d(amount), taxes }
    }

    #[test]
    fn tryton_rounds_half_to_even_where_the_shop_rounds_half_up() {
        // the order: untaxed 114.65, the shop charged 11.47 GST, Tryton computes 11.465 → 11.46
        let p = predict(&[line("1", "114.65", gst())], TaxRounding::Document, 2);
        assert_eq!((p.untaxed, p.tax, p.total), (d("114.65"), d("11.46"), d("126.11")));
        // a hundredth of a cent more on the unit price: still 114.65, but 11.47 tax
        let plan = plan(&[want("1", "114.65", gst())], d("11.47"), d("126.12"), TaxRounding::Document, 2);
        assert_eq!(plan.unit_prices, vec![d("114.6501")]);
        assert_eq!((plan.amounts.untaxed, plan.amounts.tax, plan.amounts.total), (d("114.65"), d("11.47"), d("126.12")));
        assert_eq!((plan.adjustment, plan.tax_difference), (Decimal::ZERO, Decimal::ZERO));
    }

    #[test]
    fn document_rounding_sums_before_rounding_line_rounding_after() {
        let lines = [line("1", "10.04", gst()), line("1", "10.04", gst())];
        assert_eq!(predict(&lines, TaxRounding::Document, 2).tax, d("2.01"), "2.008 once");
        assert_eq!(predict(&lines, TaxRounding::Line, 2).tax, d("2.00"), "1.004 twice");
        // tax is computed on the unrounded unit price × quantity, amounts on the rounded product
        let thirds = [line("3", "3.3333", gst())];
        assert_eq!(predict(&thirds, TaxRounding::Line, 2), Amounts { untaxed: d("10.00"), tax: d("1.00"), total: d("11.00") });
    }

    #[test]
    fn negative_lines_are_rounded_in_a_group_of_their_own() {
        // together 1.002 would give 1.00; apart 1.006 → 1.01 and −0.004 → 0.00
        let lines = [line("1", "10.06", gst()), line("1", "-0.04", gst())];
        assert_eq!(predict(&lines, TaxRounding::Document, 2).tax, d("1.01"));
    }

    #[test]
    fn two_taxes_on_a_line_give_back_the_cent_their_rounding_added() {
        let two = vec![Tax { id: 1, rate: d("0.1"), sequence: None }, Tax { id: 2, rate: d("0.05"), sequence: None }];
        // 0.015 → 0.02 and 0.0075 → 0.01 is 0.03 for 0.0225: one cent is taken back from the first tax
        assert_eq!(predict(&[line("1", "0.15", two)], TaxRounding::Line, 2).tax, d("0.02"));
    }

    #[test]
    fn a_difference_prices_cannot_absorb_stays_visible_and_the_total_is_the_shops() {
        // the shop charged no tax on a product Tryton taxes at 10 %
        let plan = plan(&[want("1", "50", gst())], d("0"), d("50"), TaxRounding::Document, 2);
        assert_eq!(plan.tax_difference, d("5"));
        assert_eq!(plan.adjustment, d("-5"));
        assert_eq!(plan.amounts.total, d("50"));
    }

    #[test]
    fn prices_move_only_inside_their_amount_and_never_change_sign() {
        let free = price_range(&want("1", "0", gst()), 2).1.unwrap();
        assert_eq!(free, (d("0"), d("0")), "a free line stays at 0");
        let (center, range) = price_range(&want("3", "10.00", gst()), 2);
        assert_eq!((center, range), (d("3.3333"), Some((d("3.3317"), d("3.335")))));
        // a quantity too large for 4 decimals to hit the amount: the closest price, no range
        assert_eq!(price_range(&want("300", "10.01", gst()), 2), (d("0.0334"), None));
        let discount = price_range(&want("1", "-5", gst()), 2).1.unwrap();
        assert!(discount.1 <= Decimal::ZERO && discount.0 == d("-5.005"), "{discount:?}");
    }

    #[test]
    fn a_tie_spread_over_several_lines_is_broken_the_shops_way() {
        // shop, per line half up: 5.735 → 5.74 and 5.73 = 11.47; Tryton per document: 11.465 → 11.46
        let ws = [want("1", "57.35", gst()), want("1", "57.30", gst())];
        let plan = plan(&ws, d("11.47"), d("126.12"), TaxRounding::Document, 2);
        assert_eq!((plan.tax_difference, plan.adjustment), (Decimal::ZERO, Decimal::ZERO), "{plan:?}");
    }

    #[test]
    fn per_line_rounding_in_tryton_meets_a_shop_that_rounds_each_line() {
        // shop: 3 × (0.105 → 0.11) = 0.33. Tryton per document: 0.315 → 0.32 at best (each price can move
        // the tax by less than 0.0005), so a cent remains, visible, and the total is still the shop's
        let ws = [want("1", "1.05", gst()), want("1", "1.05", gst()), want("1", "1.05", gst())];
        let by_document = plan(&ws, d("0.33"), d("3.48"), TaxRounding::Document, 2);
        assert_eq!((by_document.tax_difference, by_document.adjustment, by_document.amounts.total), (d("-0.01"), d("0.01"), d("3.48")));
        // Tryton per line: each 0.105 is a tie (half to even: 0.10) that 1.0501 breaks the shop's way
        let by_line = plan(&ws, d("0.33"), d("3.48"), TaxRounding::Line, 2);
        assert_eq!((by_line.tax_difference, by_line.adjustment), (Decimal::ZERO, Decimal::ZERO), "{by_line:?}");
        assert!(by_line.unit_prices.iter().all(|u| round(*u, 2) == d("1.05")), "{by_line:?}");
    }

    #[test]
    fn tax_inclusive_lines_keep_the_shops_own_split() {
        let o = order(&[(3, 1999, 10, 0)], Some(995), 0, true);
        let ws = wanted_lines(&o, &[gst()], &gst(), &[], false);
        // 59.97 gross, the shop says 5.45 tax: 54.52 net; freight 9.95 with 0.90 tax: 9.05 net
        assert_eq!(ws.iter().map(|(_, w)| w.amount).collect::<Vec<_>>(), vec![d("54.52"), d("9.05")]);
        let plan = plan(&ws.into_iter().map(|(_, w)| w).collect::<Vec<_>>(), o.totals.tax, o.totals.total, TaxRounding::Line, 2);
        assert_eq!((plan.amounts.tax, plan.amounts.total), (o.totals.tax, o.totals.total));
    }

    // ---- generated shop orders, rounded the way Vendure rounds (per line, half up, integer cents)

    fn half_up(num: i64, den: i64) -> i64 {
        // round(num / den), half away from zero, for non-negative num
        (2 * num + den) / (2 * den)
    }

    /// `lines`: (quantity, unit price in cents, rate %, line discount in cents); `coupon` in cents, spread
    /// over the lines by their totals; shipping taxed at 10 %.
    fn order(lines: &[(i64, i64, i64, i64)], shipping: Option<i64>, coupon: i64, inclusive: bool) -> Order {
        let tax_of = |amount: i64, pct: i64| if inclusive { amount - half_up(amount * 100, 100 + pct) } else { half_up(amount * pct, 100) };
        let totals: Vec<i64> = lines.iter().map(|(q, u, _, disc)| q * u - (*disc).min(q * u)).collect();
        let subtotal: i64 = totals.iter().sum();
        let coupon = coupon.min(subtotal);
        let mut left = coupon;
        let mut tax = 0;
        let mut ls = Vec::new();
        for (i, ((q, u, pct, _), total)) in lines.iter().zip(&totals).enumerate() {
            let share = if i + 1 == lines.len() { left } else if subtotal == 0 { 0 } else { half_up(coupon * total, subtotal).min(left) };
            left -= share;
            let line_tax = tax_of(total - share, *pct);
            tax += line_tax;
            let cents = |x: i64| Decimal::new(x, 2).to_string();
            let mut l = json!({"sku": format!("SKU{i}"), "quantity": q.to_string(), "unit_price": cents(*u), "discount": cents(q * u - total), "total": cents(*total)});
            if *pct > 0 {
                l["taxes"] = json!([{"name": "GST", "rate": format!("0.{pct:02}"), "amount": cents(line_tax)}]);
            }
            ls.push(l);
        }
        let ship = shipping.unwrap_or(0);
        let ship_tax = tax_of(ship, 10);
        tax += ship_tax;
        let total = subtotal + ship - coupon + if inclusive { 0 } else { tax };
        let c = |x: i64| Decimal::new(x, 2).to_string();
        let mut o = json!({
            "number": "P-1", "placed_at": "2026-04-04T13:30:00Z", "currency": "AUD", "prices_include_tax": inclusive,
            "lines": ls,
            "totals": {"subtotal": c(subtotal), "shipping": c(ship), "discount": c(coupon), "tax": c(tax), "total": c(total)},
        });
        if shipping.is_some() {
            o["shipping"] = json!([{"method": "std", "amount": c(ship), "taxes": [{"name": "GST", "amount": c(ship_tax)}]}]);
        }
        if coupon > 0 {
            o["discounts"] = json!([{"kind": "coupon", "code": "SAVE", "amount": c(coupon)}]);
        }
        match Record::parse(Stream::Orders, o, "generated").unwrap_or_else(|e| panic!("{e}")) {
            Record::Order(o) => o,
            _ => unreachable!(),
        }
    }

    fn taxes_of(pct: i64) -> Vec<Tax> {
        if pct == 0 { vec![] } else { vec![Tax { id: pct, rate: Decimal::new(pct, 2), sequence: None }] }
    }

    /// The plan for an order as the connector makes it: product taxes by rate, freight and discounts at GST.
    fn plan_for(o: &Order, lines: &[(i64, i64, i64, i64)], rounding: TaxRounding) -> (Vec<(Part, Wanted)>, Plan) {
        plan_with(o, lines, rounding, false)
    }

    fn plan_with(o: &Order, lines: &[(i64, i64, i64, i64)], rounding: TaxRounding, discount_in_price: bool) -> (Vec<(Part, Wanted)>, Plan) {
        let line_taxes: Vec<Vec<Tax>> = lines.iter().map(|l| taxes_of(l.2)).collect();
        let ws = wanted_lines(o, &line_taxes, &gst(), &vec![gst(); o.discounts.len()], discount_in_price);
        let p = plan(&ws.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(), o.totals.tax, o.totals.total, rounding, 2);
        (ws, p)
    }

    fn arb_line() -> impl Strategy<Value = (i64, i64, i64, i64)> {
        (1i64..=12, 1i64..=30_000, prop_oneof![4 => Just(10i64), 1 => Just(0i64)], prop_oneof![3 => Just(0i64), 1 => 1i64..=2_000])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Whatever the order: Tryton's total is the shop's, prices have 4 decimals, the amounts the plan
        /// predicts are the lines' own, and moving prices never makes the tax difference worse.
        #[test]
        fn tryton_total_is_always_the_shops(
            lines in prop::collection::vec(arb_line(), 1..6),
            shipping in prop::option::of(0i64..=3_000),
            coupon in prop_oneof![2 => Just(0i64), 1 => 1i64..=5_000],
            inclusive in any::<bool>(),
            line_rounding in any::<bool>(),
        ) {
            let rounding = if line_rounding { TaxRounding::Line } else { TaxRounding::Document };
            let o = order(&lines, shipping, coupon, inclusive);
            let (ws, p) = plan_for(&o, &lines, rounding);
            prop_assert_eq!(p.amounts.total, o.totals.total);
            prop_assert_eq!(p.amounts.tax - o.totals.tax, p.tax_difference);
            prop_assert!(p.unit_prices.iter().all(|u| u.scale() <= PRICE_DIGITS));
            let mut sale: Vec<SaleLine> = ws.iter().zip(&p.unit_prices).map(|((_, w), u)| SaleLine { quantity: w.quantity, unit_price: *u, taxes: w.taxes.clone() }).collect();
            if !p.adjustment.is_zero() {
                sale.push(SaleLine { quantity: Decimal::ONE, unit_price: p.adjustment, taxes: vec![] });
            }
            prop_assert_eq!(predict(&sale, rounding, 2), p.amounts);
            // every line keeps the amount the shop meant (quantities up to 12 leave room in 4 decimals)
            for ((_, w), u) in ws.iter().zip(&p.unit_prices) {
                prop_assert_eq!(round(w.quantity * u, 2), w.amount);
            }
            let naive: Vec<SaleLine> = ws.iter().map(|(_, w)| SaleLine { quantity: w.quantity, unit_price: round(w.amount / w.quantity, 4), taxes: w.taxes.clone() }).collect();
            prop_assert!(p.tax_difference.abs() <= (predict(&naive, rounding, 2).tax - o.totals.tax).abs());
        }

        /// With Tryton rounding per line and line discounts in the price, an order without an order-wide
        /// coupon agrees to the cent on tax: each sale line is the amount the shop taxed, and 4 decimals are
        /// enough to break every tie the shop's way. (A coupon is a sale line of its own, rounded on its
        /// own, while the shop spread it over the lines: there a cent can remain, and is reported.)
        #[test]
        fn line_rounding_agrees_with_the_shop_on_every_line(
            lines in prop::collection::vec(arb_line(), 1..6),
            shipping in prop::option::of(0i64..=3_000),
            inclusive in any::<bool>(),
        ) {
            let o = order(&lines, shipping, 0, inclusive);
            let (_, p) = plan_with(&o, &lines, TaxRounding::Line, true);
            prop_assert_eq!(p.tax_difference, Decimal::ZERO, "{:?}", p);
            prop_assert_eq!(p.adjustment, Decimal::ZERO);
        }
    }

    /// The share of orders whose Tryton tax differs from the shop's, as docs/connectors/tryton.md reports it:
    /// 10,000 generated Vendure-rounded orders (seeded: the same every run), for each of Tryton's rounding
    /// settings, with the prices as the order has them (amount ÷ quantity), as planned, and as planned with
    /// line discounts in the price. A measurement, not a check (it asserts only that planning never does
    /// worse): `cargo test -p ferry-connectors --features tryton --lib mismatch_rates -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement for the docs; run with --ignored --nocapture"]
    fn mismatch_rates_over_generated_orders() {
        use rand::{Rng, SeedableRng};
        const ORDERS: usize = 10_000;
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261202);
        let mut orders = Vec::with_capacity(ORDERS);
        for _ in 0..ORDERS {
            // 1–4 lines, quantities 1–7, odd-cent prices up to 200.00, a line discount on a quarter of them
            let lines: Vec<(i64, i64, i64, i64)> = (0..rng.random_range(1..=4))
                .map(|_| {
                    let (q, u) = (rng.random_range(1..=7), rng.random_range(1..=20_000));
                    let discount = if rng.random_bool(0.25) { rng.random_range(1..=(q * u / 4).max(1)) } else { 0 };
                    (q, u, 10, discount)
                })
                .collect();
            let shipping = rng.random_bool(0.7).then(|| rng.random_range(500..=3_000));
            let coupon = if rng.random_bool(0.3) { rng.random_range(100..=5_000) } else { 0 };
            let inclusive = rng.random_bool(0.5);
            orders.push((order(&lines, shipping, coupon, inclusive), lines));
        }
        println!("orders whose Tryton tax differs from the shop's, of {ORDERS} generated:");
        println!("| Tryton's `tax_rounding` | prices as they are | planned prices | planned, `line_discounts = \"in_price\"` |");
        for rounding in [TaxRounding::Document, TaxRounding::Line] {
            let (mut naive_off, mut planned_off, mut in_price_off) = (0, 0, 0);
            for (o, lines) in &orders {
                let (ws, p) = plan_with(o, lines, rounding, false);
                let naive: Vec<SaleLine> = ws.iter().map(|(_, w)| SaleLine { quantity: w.quantity, unit_price: round(w.amount / w.quantity, 4), taxes: w.taxes.clone() }).collect();
                let naive_diff = predict(&naive, rounding, 2).tax - o.totals.tax;
                assert!(p.tax_difference.abs() <= naive_diff.abs(), "planning never does worse");
                naive_off += usize::from(!naive_diff.is_zero());
                planned_off += usize::from(!p.tax_difference.is_zero());
                in_price_off += usize::from(!plan_with(o, lines, rounding, true).1.tax_difference.is_zero());
            }
            let pct = |n: usize| format!("{:.1} %", 100.0 * n as f64 / ORDERS as f64);
            println!("| `{}` | {} | {} | {} |", rounding.as_str(), pct(naive_off), pct(planned_off), pct(in_price_off));
        }
    }
}
