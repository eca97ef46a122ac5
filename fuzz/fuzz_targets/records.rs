//! Canonical record parsing and validation, for every stream: any JSON either parses into a valid
//! record or is an error naming the record and field; never a panic. A valid record's canonical form
//! parses again into the same record (same key, same hash), and its key read from raw JSON
//! (`key_hint`, used for tombstones and failures) is the record's key.
#![no_main]
use ferry_engine::hash::fingerprint;
use ferry_model::{Record, Stream, key_hint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else { return };
    let stream = Stream::ALL[pick as usize % Stream::ALL.len()];
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else { return };
    let hint = key_hint(stream, &value);
    match Record::parse(stream, value, "fuzz") {
        Ok(mut record) => {
            let key = record.key();
            assert_eq!(hint.as_deref(), Some(key.as_str()), "key_hint agrees with Record::key");
            let first = fingerprint(&mut record);
            let canonical: serde_json::Value = serde_json::from_str(&first.canonical).expect("canonical JSON is JSON");
            let mut again = Record::parse(stream, canonical, "again").expect("a valid record's canonical form is valid");
            assert_eq!(again.key(), key);
            assert_eq!(fingerprint(&mut again).hash, first.hash, "the canonical form is a fixed point");
        }
        Err(e) => {
            // Errors name the record: its key when readable, else the position.
            assert!(!e.record.is_empty());
            let _ = e.to_string();
        }
    }
});
