//! The durable state store: runs, checkpoints, ID cross-reference with content hashes, parked failures.
//!
//! Behind a trait so the engine does not care whether it is the embedded SQLite (default) or a shared
//! PostgreSQL for many workers. Every method that changes state after a target acknowledged a batch goes
//! through [`StateStore::commit_batch`], one transaction: cross-reference + hashes + failures + checkpoint
//! move together or not at all.

pub mod dashboard;
pub mod alerts;
pub mod backend;
pub mod copy;
pub mod jobs;
pub mod keys;
pub mod postgres;
pub mod records;
pub mod retention;
pub mod secrets;
pub mod sqlite;
#[cfg(test)]
mod suite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

pub use dashboard::DashboardStore;
pub use alerts::AlertStore;
pub use jobs::JobQueue;
pub use keys::KeyStore;
pub use records::RecordStore;
pub use retention::RetentionStore;
pub use secrets::{DeliveryLog, SecretStore};
pub use backend::{Store, open_configured, open_store};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// How every store writes an instant: RFC 3339 UTC with microseconds, fixed width, so that text order is
/// time order (both backends compare and sort these strings).
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// [`ts`] of the current instant.
pub(crate) fn now() -> String {
    ts(Utc::now())
}

/// An instant a store wrote with [`ts`].
pub(crate) fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[derive(Debug, thiserror::Error)]
#[error("state store {location}: {message}")]
pub struct StoreError {
    pub location: String,
    pub message: String,
}

/// What the cross-reference holds for one source key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XrefEntry {
    pub target_id: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct XrefRow {
    pub flow: String,
    pub key: String,
    pub target_id: String,
    pub hash: String,
    pub synced_at: String,
    pub payload: Option<serde_json::Value>,
}

/// A record written (or found) in the target, to remember.
#[derive(Clone, Debug)]
pub struct Synced {
    pub key: String,
    pub target_id: String,
    pub hash: String,
    pub payload: String,
    /// Hash of the raw source record under the flow's mapping (see `run.rs`), when there was one.
    pub source_hash: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NewFailure {
    pub key: String,
    pub position: Option<String>,
    pub stage: Stage,
    pub field: Option<String>,
    pub message: String,
    pub retryable: bool,
    pub source: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Read,
    Map,
    Validate,
    Write,
    Retire,
}

impl Stage {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Map => "map",
            Stage::Validate => "validate",
            Stage::Write => "write",
            Stage::Retire => "retire",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub id: i64,
    pub flow: String,
    pub key: String,
    pub position: Option<String>,
    pub stage: String,
    pub field: Option<String>,
    pub message: String,
    pub retryable: bool,
    pub attempts: i64,
    pub first_failed_at: String,
    pub last_failed_at: String,
    pub next_retry_at: Option<String>,
    pub source: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub key: String,
    /// created | updated | unchanged | retired | failed | duplicate (a key read again, with both positions).
    pub outcome: &'static str,
    pub target_id: Option<String>,
    pub field: Option<String>,
    pub message: Option<String>,
    /// A written record's field-level changes (`[{path, old, new}]`; a created record's fields all new),
    /// kept for the records a run lists (see `run::MAX_WRITES_LISTED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<serde_json::Value>,
}

/// Counters of a run (also the per-batch deltas added to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub retired: u64,
    /// Filtered out by the mapping, or not to be created (an order in a status the flow does not import).
    pub skipped: u64,
    /// Create-once records found in the target behind their end state and driven on to it.
    pub resumed: u64,
    /// Written with a warning a person should read (e.g. an accepted tax difference).
    pub warned: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.failed += o.failed;
        self.retired += o.retired;
        self.skipped += o.skipped;
        self.resumed += o.resumed;
        self.warned += o.warned;
    }
    pub fn written(&self) -> u64 {
        self.created + self.updated + self.retired
    }
}

/// Everything a batch changes, committed in one transaction.
#[derive(Debug, Default)]
pub struct BatchCommit {
    pub synced: Vec<Synced>,
    /// Keys whose open failures are resolved (written or found unchanged).
    pub resolved: Vec<String>,
    pub failed: Vec<NewFailure>,
    /// Keys removed from the cross-reference (deleted in the target).
    pub forgotten: Vec<String>,
    pub outcomes: Vec<RunRecord>,
    pub checkpoint: Option<serde_json::Value>,
    pub counts: Counts,
}

impl BatchCommit {
    pub fn is_empty(&self) -> bool {
        self.synced.is_empty()
            && self.resolved.is_empty()
            && self.failed.is_empty()
            && self.forgotten.is_empty()
            && self.outcomes.is_empty()
            && self.checkpoint.is_none()
            && self.counts == Counts::default()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub flow: String,
    pub mode: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub counts: Counts,
    pub error: Option<String>,
    /// What the run warned about (keys read twice, records left in the target, a suspicious header…).
    pub warnings: Vec<String>,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Takes the flow's lease (one run per flow at a time); fails naming the current holder.
    async fn lock_flow(&self, flow: &str, holder: &str, lease: chrono::Duration) -> StoreResult<()>;
    async fn unlock_flow(&self, flow: &str, holder: &str) -> StoreResult<()>;
    /// Who holds the flow's lease, if anyone.
    async fn lock_holder(&self, flow: &str) -> StoreResult<Option<String>>;

    /// Starts a run row (`running`), recording the flow's lease holder as the run's holder.
    async fn begin_run(&self, flow: &str, mode: &str) -> StoreResult<i64>;
    /// Marks `running` runs as `interrupted` when their flow's lease is gone, expired, held by another
    /// holder, or held by a process `holder_gone` says no longer exists; returns how many.
    async fn interrupt_stale_runs(&self, flow: Option<&str>, holder_gone: &(dyn for<'h> Fn(&'h str) -> bool + Send + Sync)) -> StoreResult<u64>;
    async fn finish_run(&self, run_id: i64, status: &str, error: Option<&str>) -> StoreResult<()>;
    /// Keeps a run's warnings with it (shown by `ferry status`).
    async fn set_run_warnings(&self, run_id: i64, warnings: &[String]) -> StoreResult<()>;
    async fn runs(&self, flow: Option<&str>, limit: i64) -> StoreResult<Vec<RunRow>>;
    async fn run_records(&self, run_id: i64) -> StoreResult<Vec<RunRecord>>;

    async fn checkpoint(&self, flow: &str) -> StoreResult<Option<serde_json::Value>>;
    async fn reset_checkpoint(&self, flow: &str) -> StoreResult<()>;

    /// Cross-reference entries for the given keys (absent keys are simply missing from the map).
    async fn lookup(&self, flow: &str, keys: &[String]) -> StoreResult<HashMap<String, XrefEntry>>;
    /// Last synced canonical payloads, for diffs.
    async fn payloads(&self, flow: &str, keys: &[String]) -> StoreResult<HashMap<String, serde_json::Value>>;
    /// A page of the flow's raw-content hashes in key order after the key `after` (`""` for the first page):
    /// (key, source hash). A complete read loads them all up front, so that records whose raw content was
    /// synced before skip mapping.
    async fn source_hash_page(&self, flow: &str, after: &str, limit: i64) -> StoreResult<Vec<(String, String)>>;
    /// A page of the flow's keys in key order after `after` (`""` for the first page), for reconciling
    /// deletions; `lookup` gives the details of the few that are missing.
    async fn xref_keys_page(&self, flow: &str, after: &str, limit: i64) -> StoreResult<Vec<String>>;
    /// Where a key (source key or target id) appears, across flows.
    async fn xref_find(&self, key: &str) -> StoreResult<Vec<XrefRow>>;

    async fn commit_batch(&self, flow: &str, run_id: i64, batch: BatchCommit) -> StoreResult<()>;

    /// Open failures; `due_before` keeps retryable ones whose retry time has come.
    async fn failures(&self, flow: Option<&str>, due_before: Option<DateTime<Utc>>) -> StoreResult<Vec<Failure>>;
    async fn failure(&self, id: i64) -> StoreResult<Option<Failure>>;
    async fn drop_failures(&self, flow: Option<&str>, ids: &[i64]) -> StoreResult<u64>;
}
