//! JSON Schema helpers and the published schema of the whole model (`ferry schema`, `docs/model.schema.json`).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

/// Schema stand-in for decimals: a string like "19.90" (or an exact JSON number on input).
pub struct DecimalString;

impl JsonSchema for DecimalString {
    fn schema_name() -> Cow<'static, str> {
        "Decimal".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "number"],
            "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
            "description": "Exact decimal. Written as a normalised string (\"19.9\"); read from a string or an exact JSON number. Never a float."
        })
    }
}

/// The JSON Schema of every stream's record type, keyed by stream name.
pub fn model_schema() -> serde_json::Value {
    let mut streams = serde_json::Map::new();
    for stream in crate::Stream::ALL {
        streams.insert(stream.as_str().to_owned(), stream.json_schema());
    }
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Ferry canonical commerce model",
        "description": "One schema per stream. Every record has a stable key, `updated_at` and a `custom` map.",
        "streams": streams,
    })
}
