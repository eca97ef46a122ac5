//! Defence in depth against panics: one record that makes a mapping, the model or a connector panic is
//! parked with the panic's message, and the rest of its batch carries on.
//!
//! Ferry's own code returns errors for bad data (checked arithmetic, no indexing into outside data); this
//! is for the bug that slipped through. Without it, a panic while preparing a batch (on the blocking pool)
//! or inside a connector's `write` ended the whole run on every attempt, so the good records around the
//! bad one were never delivered.

use crate::connector::{Connector, ConnectorError, RecordFailure, WriteMode, WriteOutcome, WriteRecord};
use ferry_model::Stream;
use futures::FutureExt;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The text of a panic's payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `f`, turning a panic into `Err(message)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // Unwind safety: what `f` touches is either consumed by it or only read (a compiled mapping), and a
    // record whose preparation panicked is parked, never used.
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// A connector's `write`, with a panic reported as `Ok(Err(message))` instead of unwinding into the run.
pub async fn write_catching(target: &dyn Connector, stream: Stream, batch: Vec<WriteRecord>) -> Result<Result<Vec<WriteOutcome>, String>, ConnectorError> {
    match AssertUnwindSafe(target.write(stream, batch)).catch_unwind().await {
        Ok(result) => result.map(Ok),
        Err(p) => Ok(Err(panic_message(p.as_ref()))),
    }
}

/// After a batch write panicked: writes the records one at a time so the one that panics is parked alone
/// (permanent: the same record would panic again) and the others get their own outcomes.
///
/// A create-once batch may have been partly created before the panic, so its keys are looked up in the
/// target first: those found are resumed, never created a second time.
pub async fn write_one_by_one(
    target: &dyn Connector,
    target_name: &str,
    stream: Stream,
    mode: WriteMode,
    records: Vec<WriteRecord>,
    batch_panic: &str,
) -> Result<Vec<WriteOutcome>, ConnectorError> {
    tracing::error!(target = target_name, %stream, panic = batch_panic, records = records.len(), "the connector panicked writing a batch; writing its records one at a time");
    let mut outcomes = Vec::with_capacity(records.len());
    let mut found = std::collections::HashMap::new();
    if mode == WriteMode::CreateOnce {
        let unknown: Vec<String> = records.iter().filter(|r| r.target_id.is_none()).map(|r| r.key.clone()).collect();
        if !unknown.is_empty() {
            found = match AssertUnwindSafe(target.find_by_key(stream, &unknown)).catch_unwind().await {
                Ok(result) => result?,
                // Without knowing what the batch created, none of it may be created again: all retried later.
                Err(p) => {
                    let message = format!("target {target_name} panicked writing, then looking up this batch: {}", panic_message(p.as_ref()));
                    return Ok(records.into_iter().map(|r| WriteOutcome::failed(r.key, RecordFailure::transient(message.clone()))).collect());
                }
            };
        }
    }
    let mut records = records;
    // found in the target: resumed there (see create_once), never created again
    crate::create_once::adopt(&mut records, &found);
    for record in records {
        let key = record.key.clone();
        match write_catching(target, stream, vec![record]).await? {
            Ok(mut answer) => outcomes.append(&mut answer),
            Err(message) => {
                let message = format!("target {target_name} panicked writing this record: {message}");
                outcomes.push(WriteOutcome::failed(key, RecordFailure::permanent(None, message)));
            }
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_messages() {
        assert_eq!(catch(|| 7), Ok(7));
        let err = catch(|| -> u8 { panic!("decimal overflow at lines[0]") }).unwrap_err();
        assert_eq!(err, "decimal overflow at lines[0]");
        let owned = catch(|| -> u8 { panic!("{} {}", "with", "format") }).unwrap_err();
        assert_eq!(owned, "with format");
    }
}
