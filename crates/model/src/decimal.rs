//! Serde helpers for decimals.
//!
//! Canonical form: a JSON string holding the normalised decimal (`"19.9"`, never `19.900` and never a
//! float), so two equal amounts always serialise — and hash — identically. Input may be a string or a
//! JSON number; numbers are read exactly (serde_json's `arbitrary_precision`), never through `f64`.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.normalize().to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    rust_decimal::serde::arbitrary_precision::deserialize(d)
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Decimal);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "crate::decimal")]
        v: Decimal,
    }

    #[test]
    fn reads_numbers_exactly_and_writes_normalised_strings() {
        let h: Holder = serde_json::from_str(r#"{"v": 0.1}"#).unwrap();
        assert_eq!(h.v.to_string(), "0.1");
        let h: Holder = serde_json::from_str(r#"{"v": "19.900"}"#).unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"v":"19.9"}"#);
        let h: Holder = serde_json::from_str(r#"{"v": 12345678901234567890.123456789}"#).unwrap();
        assert_eq!(h.v.to_string(), "12345678901234567890.123456789");
    }

    #[test]
    fn rejects_text_that_is_not_a_number() {
        let err = serde_json::from_str::<Holder>(r#"{"v": "12,5"}"#).unwrap_err();
        assert!(err.to_string().contains("12,5") || err.to_string().contains("invalid"), "{err}");
    }
}
