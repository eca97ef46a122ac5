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

/// Takes `record` mutably only to leave `updated_at` out of the canonical form without copying the record;
/// it is put back before returning.
pub fn fingerprint(record: &mut Record) -> Fingerprint {
    let updated_at = record.replace_updated_at(None);
    let canonical = serde_json::to_string(&*record).expect("canonical records always serialise");
    record.replace_updated_at(updated_at);
    let hash = hex128(digest128(&blake3::hash(canonical.as_bytes())));
    Fingerprint { hash, canonical }
}

/// The first 128 bits of a BLAKE3 digest: what Ferry keeps of a hash.
pub(crate) fn digest128(digest: &blake3::Hash) -> u128 {
    u128::from_be_bytes(digest.as_bytes()[..16].try_into().expect("16 of 32 bytes"))
}

/// A 128-bit hash as stored: 32 lowercase hex characters.
pub(crate) fn hex128(hash: u128) -> String {
    format!("{hash:032x}")
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
        let mut a = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.90","currency":"AUD","tax_inclusive":true},
                               "updated_at":"2026-01-01T00:00:00Z"}));
        let mut b = product(json!({"name":"Spade","sku":"A","price":{"currency":"aud","tax_inclusive":true,"amount":19.9},
                               "updated_at":"2026-11-01T00:00:00Z"}));
        assert_eq!(fingerprint(&mut a).hash, fingerprint(&mut b).hash);
        assert_eq!(fingerprint(&mut a).hash.len(), 32);
        // The record keeps its timestamp.
        assert_eq!(a.updated_at().map(|t| t.to_rfc3339()), Some("2026-01-01T00:00:00+00:00".into()));
    }

    #[test]
    fn any_content_change_changes_the_hash() {
        let mut a = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.90","currency":"AUD","tax_inclusive":true}}));
        let mut b = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.91","currency":"AUD","tax_inclusive":true}}));
        let mut c = product(json!({"sku":"A","name":"Spade","price":{"amount":"19.90","currency":"AUD","tax_inclusive":false}}));
        let ha = fingerprint(&mut a).hash;
        assert_ne!(ha, fingerprint(&mut b).hash);
        assert_ne!(ha, fingerprint(&mut c).hash);
    }
}
