//! Values bound into staging tables: each canonical value is converted to the type of its column (read from
//! the server's catalogue), and checked against the column first, so a value the column cannot hold fails
//! its record naming field and column, instead of being rounded, cut or refused with a bare server error.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// What a column holds, as far as binding a value is concerned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// Text; `max_chars` for VARCHAR(n)/CHAR(n).
    Text { max_chars: Option<u64> },
    /// An integer of the given range (MySQL `tinyint(1)` booleans too: `true` is 1).
    Int { min: i64, max: i64 },
    /// NUMERIC/DECIMAL(precision, scale); `None` for an unconstrained PostgreSQL NUMERIC.
    Decimal { precision: Option<u32>, scale: Option<u32> },
    Float,
    Bool,
    /// An instant (PostgreSQL `timestamptz`, MySQL `TIMESTAMP`, stored in UTC).
    Instant,
    /// A wall-clock date-time without zone (PostgreSQL `timestamp`, MySQL `DATETIME`): written in the
    /// connection's time zone.
    LocalDateTime,
    Date,
    Json,
}

impl Kind {
    /// The kind of a column from `information_schema.columns` (`data_type`, and MySQL's `column_type`).
    pub(crate) fn from_catalog(data_type: &str, column_type: &str, max_chars: Option<u64>, precision: Option<u32>, scale: Option<u32>) -> Option<Kind> {
        let t = data_type.to_ascii_lowercase();
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        let int = |bits: u32| {
            if unsigned {
                Kind::Int { min: 0, max: if bits >= 64 { i64::MAX } else { (1i64 << bits) - 1 } }
            } else if bits >= 64 {
                Kind::Int { min: i64::MIN, max: i64::MAX }
            } else {
                Kind::Int { min: -(1i64 << (bits - 1)), max: (1i64 << (bits - 1)) - 1 }
            }
        };
        Some(match t.as_str() {
            "character varying" | "varchar" | "character" | "char" | "text" | "tinytext" | "mediumtext" | "longtext" | "citext" | "enum" | "set" => {
                Kind::Text { max_chars }
            }
            "smallint" => int(16),
            "integer" | "int" => int(32),
            "mediumint" => int(24),
            "bigint" => int(64),
            "tinyint" => int(8),
            "numeric" | "decimal" => Kind::Decimal { precision, scale },
            "real" | "double precision" | "float" | "double" => Kind::Float,
            "boolean" | "bool" => Kind::Bool,
            // MySQL's TIMESTAMP is stored in UTC (Ferry's sessions use time_zone '+00:00').
            "timestamp with time zone" | "timestamp" => Kind::Instant,
            "timestamp without time zone" | "datetime" => Kind::LocalDateTime,
            "date" => Kind::Date,
            "json" | "jsonb" => Kind::Json,
            _ => return None,
        })
    }
}

/// A value ready to bind, typed for its column (a NULL keeps its column's type: PostgreSQL refuses a NULL
/// of the wrong type).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SqlValue {
    Null(Kind),
    Text(String),
    Int(i64),
    Decimal(Decimal),
    Float(f64),
    Bool(bool),
    Instant(DateTime<Utc>),
    LocalDateTime(NaiveDateTime),
    Date(NaiveDate),
    Json(Value),
}

/// A column as the catalogue describes it.
#[derive(Clone, Debug)]
pub(crate) struct ColumnInfo {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) nullable: bool,
    /// The server fills it when no value is given (a default, an identity, a generated value).
    pub(crate) has_default: bool,
    /// The catalogue's type name when Ferry does not write that type (the column may still be left out).
    pub(crate) unsupported: Option<String>,
}

/// Text of a canonical value (strings as they are, numbers and booleans as written).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn decimal_of(v: &Value) -> Result<Decimal, String> {
    let text = text_of(v).ok_or_else(|| format!("{v} is not a number"))?;
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).map_err(|_| format!("{text:?} is not a number"))
}

fn instant_of(v: &Value) -> Result<DateTime<Utc>, String> {
    let text = text_of(v).ok_or_else(|| format!("{v} is not a date-time"))?;
    DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(|_| format!("{text:?} is not an RFC 3339 date-time"))
}

/// Converts one canonical value for `column`. `Err` says why, without naming the field (the caller does).
pub(crate) fn to_sql(value: &Value, column: &ColumnInfo, tz: Tz) -> Result<SqlValue, String> {
    if value.is_null() {
        if !column.nullable {
            return Err("is empty, and the column is NOT NULL".into());
        }
        return Ok(SqlValue::Null(column.kind.clone()));
    }
    Ok(match &column.kind {
        Kind::Text { max_chars } => {
            let text = match value {
                Value::Array(_) | Value::Object(_) => value.to_string(),
                other => text_of(other).expect("scalars have text"),
            };
            if let Some(max) = max_chars {
                let chars = text.chars().count() as u64;
                if chars > *max {
                    return Err(format!("is {chars} characters long, the column holds {max}"));
                }
            }
            SqlValue::Text(text)
        }
        Kind::Int { min, max } => {
            let n = match value {
                Value::Bool(b) => i64::from(*b),
                other => {
                    let d = decimal_of(other)?;
                    if !d.fract().is_zero() {
                        return Err(format!("{d} is not a whole number, the column holds integers"));
                    }
                    i64::try_from(d).map_err(|_| format!("{d} is out of the column's range {min}..={max}"))?
                }
            };
            if n < *min || n > *max {
                return Err(format!("{n} is out of the column's range {min}..={max}"));
            }
            SqlValue::Int(n)
        }
        Kind::Decimal { precision, scale } => {
            let d = decimal_of(value)?.normalize();
            if let Some(scale) = scale
                && d.scale() > *scale
            {
                // Servers round silently here (MySQL even in strict mode): never for money.
                return Err(format!("{d} has {} decimal places, the column holds {scale} (it would be rounded)", d.scale()));
            }
            if let Some(precision) = precision {
                let int_digits = d.trunc().abs().to_string().trim_start_matches('0').len() as u32;
                let allowed = precision.saturating_sub(scale.unwrap_or(0));
                if int_digits > allowed {
                    return Err(format!("{d} has {int_digits} digits before the decimal point, the column holds {allowed}"));
                }
            }
            SqlValue::Decimal(d)
        }
        Kind::Float => {
            let text = text_of(value).ok_or_else(|| format!("{value} is not a number"))?;
            SqlValue::Float(f64::from_str(&text).map_err(|_| format!("{text:?} is not a number"))?)
        }
        Kind::Bool => match value {
            Value::Bool(b) => SqlValue::Bool(*b),
            Value::String(s) if matches!(s.as_str(), "true" | "false") => SqlValue::Bool(s == "true"),
            other => return Err(format!("{other} is not true or false")),
        },
        Kind::Instant => SqlValue::Instant(instant_of(value)?),
        Kind::LocalDateTime => SqlValue::LocalDateTime(instant_of(value)?.with_timezone(&tz).naive_local()),
        Kind::Date => {
            let text = text_of(value).ok_or_else(|| format!("{value} is not a date"))?;
            match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
                Ok(d) => SqlValue::Date(d),
                // An instant becomes the business's date of it (an order placed 23:30 in Sydney).
                Err(_) => SqlValue::Date(instant_of(value).map_err(|_| format!("{text:?} is not a date"))?.with_timezone(&tz).date_naive()),
            }
        }
        Kind::Json => SqlValue::Json(value.clone()),
    })
}

/// A wall-clock time read from a column without zone, as the instant it is in `tz` (the earlier one when
/// the clock was turned back; in a skipped hour, as if the clock had not jumped yet).
pub(crate) fn local_to_instant(t: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => x.with_timezone(&Utc),
        chrono::LocalResult::None => tz.from_utc_datetime(&t).with_timezone(&Utc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(kind: Kind, nullable: bool) -> ColumnInfo {
        ColumnInfo { name: "c".into(), kind, nullable, has_default: false, unsupported: None }
    }

    #[test]
    fn catalogue_types_become_kinds() {
        assert_eq!(Kind::from_catalog("character varying", "", Some(20), None, None), Some(Kind::Text { max_chars: Some(20) }));
        assert_eq!(Kind::from_catalog("int", "int(10) unsigned", None, None, None), Some(Kind::Int { min: 0, max: u32::MAX as i64 }));
        assert_eq!(Kind::from_catalog("smallint", "smallint", None, None, None), Some(Kind::Int { min: -32768, max: 32767 }));
        assert_eq!(Kind::from_catalog("timestamp", "timestamp", None, None, None), Some(Kind::Instant));
        assert_eq!(Kind::from_catalog("timestamp with time zone", "", None, None, None), Some(Kind::Instant));
        assert_eq!(Kind::from_catalog("datetime", "datetime(3)", None, None, None), Some(Kind::LocalDateTime));
        assert_eq!(Kind::from_catalog("timestamp without time zone", "", None, None, None), Some(Kind::LocalDateTime));
        assert_eq!(Kind::from_catalog("decimal", "decimal(12,2)", None, Some(12), Some(2)), Some(Kind::Decimal { precision: Some(12), scale: Some(2) }));
        assert_eq!(Kind::from_catalog("geometry", "geometry", None, None, None), None);
    }

    #[test]
    fn money_that_a_column_would_round_or_overflow_is_refused_naming_why() {
        let c = col(Kind::Decimal { precision: Some(6), scale: Some(2) }, false);
        assert_eq!(to_sql(&json!("19.90"), &c, Tz::UTC).unwrap(), SqlValue::Decimal(Decimal::new(199, 1)));
        assert!(to_sql(&json!("19.905"), &c, Tz::UTC).unwrap_err().contains("3 decimal places, the column holds 2"));
        assert!(to_sql(&json!("12345.5"), &c, Tz::UTC).unwrap_err().contains("5 digits before the decimal point, the column holds 4"));
        assert!(to_sql(&json!("abc"), &c, Tz::UTC).unwrap_err().contains("not a number"));
    }

    proptest::proptest! {
        /// Money is never rounded on its way into a DECIMAL(p, s) column: a value is either refused, or
        /// bound exactly as it was, and it is bound exactly when it fits the column.
        #[test]
        fn decimals_are_bound_exactly_or_refused(mantissa in -10_000_000_000i64..10_000_000_000, scale in 0u32..8, precision in 1u32..16, col_scale in 0u32..6) {
            let col_scale = col_scale.min(precision);
            let d = Decimal::new(mantissa, scale);
            let c = col(Kind::Decimal { precision: Some(precision), scale: Some(col_scale) }, false);
            // Fits: no digits beyond the scale, and less than 10^(precision − scale) in size.
            let limit = Decimal::from_i128_with_scale(10i128.pow(precision - col_scale), 0);
            let fits = d.round_dp(col_scale) == d && d.abs() < limit;
            match to_sql(&json!(d.to_string()), &c, Tz::UTC) {
                Ok(SqlValue::Decimal(bound)) => {
                    proptest::prop_assert!(fits);
                    proptest::prop_assert_eq!(bound, d);
                }
                Ok(other) => proptest::prop_assert!(false, "bound as {:?}", other),
                Err(_) => proptest::prop_assert!(!fits),
            }
        }
    }

    #[test]
    fn text_longer_than_the_column_and_null_into_not_null_are_refused() {
        let c = col(Kind::Text { max_chars: Some(3) }, false);
        assert_eq!(to_sql(&json!("äöü"), &c, Tz::UTC).unwrap(), SqlValue::Text("äöü".into()));
        assert!(to_sql(&json!("abcd"), &c, Tz::UTC).unwrap_err().contains("4 characters long, the column holds 3"));
        assert!(to_sql(&Value::Null, &c, Tz::UTC).unwrap_err().contains("NOT NULL"));
        let nullable = col(Kind::Int { min: 0, max: 10 }, true);
        assert_eq!(to_sql(&Value::Null, &nullable, Tz::UTC).unwrap(), SqlValue::Null(Kind::Int { min: 0, max: 10 }));
    }

    #[test]
    fn integers_come_from_whole_numbers_and_booleans_only() {
        let c = col(Kind::Int { min: -128, max: 127 }, false);
        assert_eq!(to_sql(&json!("2.000"), &c, Tz::UTC).unwrap(), SqlValue::Int(2));
        assert_eq!(to_sql(&json!(true), &c, Tz::UTC).unwrap(), SqlValue::Int(1));
        assert!(to_sql(&json!("1.5"), &c, Tz::UTC).unwrap_err().contains("not a whole number"));
        assert!(to_sql(&json!(300), &c, Tz::UTC).unwrap_err().contains("out of the column's range"));
    }

    #[test]
    fn times_without_zone_are_written_and_read_on_the_connections_clock() {
        let sydney: Tz = "Australia/Sydney".parse().unwrap();
        let placed = json!("2026-03-02T13:30:00Z");
        let local = to_sql(&placed, &col(Kind::LocalDateTime, false), sydney).unwrap();
        let expected = NaiveDate::from_ymd_opt(2026, 3, 3).unwrap().and_hms_opt(0, 30, 0).unwrap();
        assert_eq!(local, SqlValue::LocalDateTime(expected));
        assert_eq!(to_sql(&placed, &col(Kind::Date, false), sydney).unwrap(), SqlValue::Date(NaiveDate::from_ymd_opt(2026, 3, 3).unwrap()));
        assert_eq!(local_to_instant(expected, sydney).to_rfc3339(), "2026-03-02T13:30:00+00:00");
    }
}
