//! Record keys read from raw JSON: the model's own rule, re-exported for the file connectors.
pub use ferry_model::{key_from, key_hint as record_key};
