//! Change detection by content hash.
//!
//! The hash covers the mapped, validated record in its canonical JSON form (stable field order, sorted
//! maps, normalised decimals) without `updated_at`: a source that merely touches a timestamp has not
//! changed anything a target needs to hear about. Equal hash → no write.

use ferry_model::Record;

/// A 128-bit BLAKE3 digest, hex encoded (32 chars), as stored in the cross-reference.
pub type Hash = String;

/// Canonical bytes and hash of a record.
pub struct Fingerprint {
    pub hash: Hash,
    /// The canonical JSON (without `updated_at`), kept as the last synced payload for diffs.
    pub canonical: String,
}

pub fn fingerprint(record: &Record) -> Fingerprint {
    let canonical = canonical_json(record);
    let hash = hex16(blake3::hash(canonical.as_bytes()).as_bytes());
    Fingerprint { hash, canonical }
}

/// The first 16 bytes of a digest as 32 lowercase hex characters.
pub(crate) fn hex16(digest: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

fn canonical_json(record: &Record) -> String {
    let mut record = record.clone();
    match &mut record {
        Record::Product(r) => r.updated_at = None,
        Record::Price(r) => r.updated_at = None,
        Record::Stock(r) => r.updated_at = None,
        Record::Customer(r) => r.updated_at = None,
        Record::Order(r) => r.updated_at = None,
        Record::Shipment(r) => r.updated_at = None,
    }
    serde_json::to_string(&record).expect("canonical records always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Stream;
    use serde_json::json;

    fn product(v: serde_json::Value) -> Record {
        Record::parse(Stream::Products, v, "test").unwrap()
    }

    #[test]
    fn equal_content_equal_hash_whatever_the_input_form() {
        let a = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.90","currency":"AUD","tax_inclusive":true},
                               "updated_at":"2026-01-01T00:00:00Z"}));
        let b = product(json!({"name":"Spade","sku":"A","price":{"currency":"aud","tax_inclusive":true,"amount":19.9},
                               "updated_at":"2026-11-01T00:00:00Z"}));
        assert_eq!(fingerprint(&a).hash, fingerprint(&b).hash);
        assert_eq!(fingerprint(&a).hash.len(), 32);
    }

    #[test]
    fn any_content_change_changes_the_hash() {
        let a = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.90","currency":"AUD","tax_inclusive":true}}));
        let b = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.91","currency":"AUD","tax_inclusive":true}}));
        let c = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.90","currency":"AUD","tax_inclusive":false}}));
        let ha = fingerprint(&a).hash;
        assert_ne!(ha, fingerprint(&b).hash);
        assert_ne!(ha, fingerprint(&c).hash);
    }
}
