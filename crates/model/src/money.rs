//! Money: a decimal amount, always with its ISO 4217 currency and an explicit tax-inclusive flag.

use rust_decimal::{Decimal, RoundingStrategy};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Active ISO 4217 codes (2024 list) with their minor units; anything else is rejected at parse time.
const ISO_4217: &str = "AED2 AFN2 ALL2 AMD2 ANG2 AOA2 ARS2 AUD2 AWG2 AZN2 BAM2 BBD2 BDT2 BGN2 BHD3 BIF0 \
BMD2 BND2 BOB2 BRL2 BSD2 BTN2 BWP2 BYN2 BZD2 CAD2 CDF2 CHF2 CLF4 CLP0 CNY2 COP2 CRC2 CUP2 CVE2 CZK2 \
DJF0 DKK2 DOP2 DZD2 EGP2 ERN2 ETB2 EUR2 FJD2 FKP2 GBP2 GEL2 GHS2 GIP2 GMD2 GNF0 GTQ2 GYD2 HKD2 HNL2 \
HTG2 HUF2 IDR2 ILS2 INR2 IQD3 IRR2 ISK0 JMD2 JOD3 JPY0 KES2 KGS2 KHR2 KMF0 KPW2 KRW0 KWD3 KYD2 KZT2 \
LAK2 LBP2 LKR2 LRD2 LSL2 LYD3 MAD2 MDL2 MGA2 MKD2 MMK2 MNT2 MOP2 MRU2 MUR2 MVR2 MWK2 MXN2 MYR2 MZN2 \
NAD2 NGN2 NIO2 NOK2 NPR2 NZD2 OMR3 PAB2 PEN2 PGK2 PHP2 PKR2 PLN2 PYG0 QAR2 RON2 RSD2 RUB2 RWF0 SAR2 \
SBD2 SCR2 SDG2 SEK2 SGD2 SHP2 SLE2 SOS2 SRD2 SSP2 STN2 SVC2 SYP2 SZL2 THB2 TJS2 TMT2 TND3 TOP2 TRY2 \
TTD2 TWD2 TZS2 UAH2 UGX0 USD2 UYU2 UYW4 UZS2 VES2 VND0 VUV0 WST2 XAF0 XCD2 XCG2 XOF0 XPF0 YER2 ZAR2 \
ZMW2 ZWG2";

/// An ISO 4217 currency code, validated on construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(into = "String")]
#[schemars(with = "String", description = "ISO 4217 alphabetic code, e.g. AUD")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, String> {
        let upper = code.trim().to_ascii_uppercase();
        if upper.len() == 3 && ISO_4217.split_whitespace().any(|e| e.starts_with(&upper)) {
            let b = upper.as_bytes();
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(format!("unknown currency {code:?} (expected an ISO 4217 code such as AUD, EUR, USD)"))
        }
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }

    /// Digits after the decimal point in this currency (2 for AUD, 0 for JPY, 3 for KWD).
    pub fn minor_units(&self) -> u32 {
        let entry = ISO_4217.split_whitespace().find(|e| e.starts_with(self.code())).expect("validated code");
        u32::from(entry.as_bytes()[3] - b'0')
    }

    /// Rounds to the currency's minor unit, half away from zero (commercial rounding).
    pub fn round(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor_units(), RoundingStrategy::MidpointAwayFromZero)
    }

    /// Converts integer minor units (as Vendure and Stripe store money) to a decimal amount.
    pub fn from_minor(&self, minor: i64) -> Decimal {
        Decimal::new(minor, self.minor_units())
    }

    /// Converts an amount to integer minor units, rounding first; `None` when it does not fit an `i64`
    /// (amounts come from outside: an overflow must be an error, never a panic).
    pub fn to_minor(&self, amount: Decimal) -> Option<i64> {
        let scaled = self.round(amount).checked_mul(Decimal::from(10i64.pow(self.minor_units())))?;
        i64::try_from(scaled.trunc()).ok()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in a currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }
}

/// A price: money plus whether the amount already includes tax (GST/VAT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(with = "crate::decimal")]
    #[schemars(with = "crate::schema::DecimalString")]
    pub amount: Decimal,
    pub currency: Currency,
    /// True when `amount` includes tax. Always explicit: guessing it is how books stop agreeing.
    pub tax_inclusive: bool,
}

impl Price {
    /// The amount without tax at `rate` (0.10 for 10 % GST), rounded to the currency; `None` when the
    /// result leaves `Decimal`'s range or the rate is -100 % (the rate comes from another system).
    pub fn net(&self, rate: Decimal) -> Option<Decimal> {
        if self.tax_inclusive {
            Some(self.currency.round(self.amount.checked_div(Decimal::ONE.checked_add(rate)?)?))
        } else {
            Some(self.amount)
        }
    }

    /// The amount with tax at `rate`, rounded to the currency; `None` when the result leaves `Decimal`'s
    /// range.
    pub fn gross(&self, rate: Decimal) -> Option<Decimal> {
        if self.tax_inclusive {
            Some(self.amount)
        } else {
            Some(self.currency.round(self.amount.checked_mul(Decimal::ONE.checked_add(rate)?)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn aud() -> Currency {
        Currency::parse("AUD").unwrap()
    }

    #[test]
    fn currencies_validate_and_know_their_minor_units() {
        assert_eq!(Currency::parse("aud").unwrap().code(), "AUD");
        assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_units(), 3);
        assert!(Currency::parse("XXQ").unwrap_err().contains("XXQ"));
        assert!(Currency::parse("AU").is_err());
    }

    #[test]
    fn rounding_is_commercial() {
        assert_eq!(aud().round(Decimal::new(1005, 3)), Decimal::new(101, 2));
        assert_eq!(aud().round(Decimal::new(-1005, 3)), Decimal::new(-101, 2));
        assert_eq!(aud().to_minor(Decimal::new(1999, 2)), Some(1999));
        assert_eq!(aud().from_minor(1999), Decimal::new(1999, 2));
    }

    #[test]
    fn net_and_gross() {
        let p = Price { amount: Decimal::new(1100, 2), currency: aud(), tax_inclusive: true };
        assert_eq!(p.net(Decimal::new(10, 2)), Some(Decimal::new(1000, 2)));
        let p = Price { amount: Decimal::new(6300, 2), currency: aud(), tax_inclusive: false };
        assert_eq!(p.gross(Decimal::new(10, 2)), Some(Decimal::new(6930, 2)));
    }

    /// Amounts and rates come from files and other systems: the extremes are `None`, never a panic.
    #[test]
    fn conversions_at_the_limits_are_none_not_panics() {
        assert_eq!(aud().to_minor(Decimal::MAX), None);
        assert_eq!(aud().to_minor(Decimal::MIN), None);
        let p = Price { amount: Decimal::MAX, currency: aud(), tax_inclusive: false };
        assert_eq!(p.gross(Decimal::new(10, 2)), None);
        assert_eq!(p.gross(Decimal::MAX), None);
        let p = Price { amount: Decimal::new(1100, 2), currency: aud(), tax_inclusive: true };
        assert_eq!(p.net(-Decimal::ONE), None, "a -100 % rate divides by zero");
        assert_eq!(p.net(Decimal::MAX), None);
    }

    proptest! {
        /// Minor-unit round trip is exact for every amount already at currency precision.
        #[test]
        fn minor_units_round_trip(minor in -1_000_000_000_000i64..1_000_000_000_000i64) {
            let c = aud();
            prop_assert_eq!(c.to_minor(c.from_minor(minor)), Some(minor));
        }

        /// Rounding never moves an amount by more than half a minor unit, and is idempotent.
        #[test]
        fn rounding_is_bounded_and_idempotent(units in -10_000_000_000i64..10_000_000_000i64, scale in 0u32..8) {
            let c = aud();
            let x = Decimal::new(units, scale);
            let r = c.round(x);
            prop_assert!((r - x).abs() <= Decimal::new(5, 3));
            prop_assert_eq!(c.round(r), r);
        }

        /// Summing rounded line totals and rounding the sum agree when lines are at currency precision.
        #[test]
        fn sums_of_cents_are_exact(lines in proptest::collection::vec(0i64..10_000_000, 0..50)) {
            let c = aud();
            let total: Decimal = lines.iter().map(|&m| c.from_minor(m)).sum();
            prop_assert_eq!(c.to_minor(total), Some(lines.iter().sum::<i64>()));
        }

        /// A tax-exclusive price grossed up and a tax-inclusive price netted down stay within a cent.
        #[test]
        fn net_gross_round_trip_within_a_cent(minor in 0i64..100_000_000, rate_pct in 0i64..30) {
            let c = aud();
            let rate = Decimal::new(rate_pct, 2);
            let net = Price { amount: c.from_minor(minor), currency: c, tax_inclusive: false };
            let gross = Price { amount: net.gross(rate).unwrap(), currency: c, tax_inclusive: true };
            prop_assert!((gross.net(rate).unwrap() - net.amount).abs() <= Decimal::new(1, 2));
        }
    }
}
