//! Validation errors that always name the record and the field.

use std::fmt;

/// One problem with one field, e.g. `lines[2].quantity: must not be negative (got -1)`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// Path of the field inside the record (`price.amount`, `lines[0].sku`); empty for the whole record.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A record that failed to parse or validate: which stream, which record, which fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    pub stream: &'static str,
    /// The record's key when it could be read, else a position such as `line 17`.
    pub record: String,
    pub errors: Vec<FieldError>,
}

impl RecordError {
    /// The first offending field, for one-line summaries.
    pub fn field(&self) -> &str {
        self.errors.first().map(|e| e.field.as_str()).unwrap_or("")
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.stream, self.record)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
