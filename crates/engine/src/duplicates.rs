//! Keys read more than once in one run (the same SKU on two rows of an export). The later row wins, as it
//! always did, but no longer silently: each duplicate is named with the key and both positions in the run's
//! summary, its JSON, its records and `ferry status`. With `on_duplicate = "fail"` the later row is parked
//! instead (the first one is kept), so a person decides.
//!
//! Memory: a run reads up to millions of records, and this is also the run's set of keys seen (what a
//! complete read compares the cross-reference with to find records gone from the source), so each key costs
//! 16 bytes (its hash and its first position) where the set alone cost 8. The position is packed in
//! 8 bytes: positions end in a number (`products.csv line 17`, `product.product id 42`), so the text before
//! it is interned (few distinct prefixes) and the number stored beside its prefix's index. A position of
//! another shape is kept as its hash: equal positions are still recognised, but its text is lost and the
//! warning says "an earlier position".

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// What to do with a key read twice in one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// The later row wins; the run warns, naming the key and both positions.
    #[default]
    Warn,
    /// The first row is kept; the later one is parked as a failure naming both positions.
    Fail,
}

/// One key read twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub key: String,
    /// Where it was read first, when known.
    pub first: Option<String>,
    /// Where it was read again.
    pub again: String,
}

impl Duplicate {
    pub fn message(&self, policy: OnDuplicate) -> String {
        let first = self.first.as_deref().unwrap_or("an earlier position");
        let outcome = match policy {
            OnDuplicate::Warn => "the later one wins (on_duplicate = \"warn\")",
            OnDuplicate::Fail => "the first one was kept and this one parked (on_duplicate = \"fail\")",
        };
        format!("key {} read twice: at {first} and at {}; {outcome}", self.key, self.again)
    }
}

/// Distinct position prefixes interned at most; beyond, positions are kept as hashes.
const MAX_PREFIXES: usize = 4096;
const NUMBER_BITS: u32 = 40;
/// Set on a packed value that is a hash of the position, not (prefix, number).
const HASHED: u64 = 1 << 63;

/// Stands for "seen, position not known" (a replayed or failed record).
const NO_POSITION: u64 = u64::MAX;

/// The keys one run has taken in (by 64-bit key hash), with the position each was first read at.
#[derive(Default)]
pub struct Duplicates {
    /// Keys found read twice so far (each further read counts again).
    pub count: u64,
    first: HashMap<u64, u64>,
    prefixes: Vec<String>,
    prefix_ids: HashMap<String, u64>,
}

impl Duplicates {
    /// Notes that the key with `key_hash` was read at `position`. Returns the first position when the key
    /// was read before at another position (`Some(None)`: its text was not kept). Reading the same
    /// position again (a record that changed while a paged read went on) is not a duplicate in the data.
    pub fn note(&mut self, key_hash: u64, position: &str) -> Option<Option<String>> {
        let packed = self.pack(position);
        match self.first.insert(key_hash, packed) {
            None | Some(NO_POSITION) => None,
            Some(earlier) if earlier == packed => None,
            Some(earlier) => {
                // Keep the first position: a third read names the first, too.
                self.first.insert(key_hash, earlier);
                self.count += 1;
                Some(self.unpack(earlier))
            }
        }
    }

    /// Marks a key seen without a read position (replays, failures); `true` when it was not seen before.
    pub fn mark(&mut self, key_hash: u64) -> bool {
        match self.first.entry(key_hash) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(NO_POSITION);
                true
            }
        }
    }

    pub fn contains(&self, key_hash: u64) -> bool {
        self.first.contains_key(&key_hash)
    }

    fn pack(&mut self, position: &str) -> u64 {
        let digits = position.len() - position.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = position.split_at(position.len() - digits);
        let number = number.parse::<u64>().ok().filter(|n| *n < 1 << NUMBER_BITS);
        let id = match (number, self.prefix_ids.get(prefix)) {
            (Some(_), Some(&id)) => Some(id),
            (Some(_), None) if self.prefixes.len() < MAX_PREFIXES => {
                let id = self.prefixes.len() as u64;
                self.prefixes.push(prefix.to_owned());
                self.prefix_ids.insert(prefix.to_owned(), id);
                Some(id)
            }
            _ => None,
        };
        match (id, number) {
            (Some(id), Some(n)) => (id << NUMBER_BITS) | n,
            _ => {
                let mut h = DefaultHasher::new();
                position.hash(&mut h);
                (h.finish() | HASHED) & !1 // never NO_POSITION
            }
        }
    }

    fn unpack(&self, packed: u64) -> Option<String> {
        if packed & HASHED != 0 {
            return None;
        }
        let prefix = &self.prefixes[(packed >> NUMBER_BITS) as usize];
        Some(format!("{prefix}{}", packed & ((1 << NUMBER_BITS) - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_read_at_two_positions_names_the_first() {
        let mut d = Duplicates::default();
        assert_eq!(d.note(1, "products.csv line 2"), None);
        assert_eq!(d.note(2, "products.csv line 3"), None);
        assert_eq!(d.note(1, "products.csv line 7"), Some(Some("products.csv line 2".into())));
        // A third read still names the first.
        assert_eq!(d.note(1, "products.csv line 9"), Some(Some("products.csv line 2".into())));
    }

    #[test]
    fn a_key_marked_without_a_position_takes_its_first_read_position() {
        let mut d = Duplicates::default();
        assert!(d.mark(1));
        assert!(!d.mark(1) && d.contains(1) && !d.contains(2));
        assert_eq!(d.note(1, "products.csv line 5"), None);
        assert_eq!(d.note(1, "products.csv line 6"), Some(Some("products.csv line 5".into())));
    }

    #[test]
    fn the_same_position_read_again_is_not_a_duplicate() {
        let mut d = Duplicates::default();
        assert_eq!(d.note(1, "product.product id 42"), None);
        assert_eq!(d.note(1, "product.product id 42"), None);
    }

    #[test]
    fn positions_without_a_number_are_recognised_but_not_kept() {
        let mut d = Duplicates::default();
        assert_eq!(d.note(1, "vendure order ABC"), None);
        assert_eq!(d.note(1, "vendure order ABC"), None);
        assert_eq!(d.note(1, "vendure order XYZ"), Some(None));
        let dup = Duplicate { key: "K".into(), first: None, again: "vendure order XYZ".into() };
        assert!(dup.message(OnDuplicate::Warn).contains("an earlier position"));
    }
}
