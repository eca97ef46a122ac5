//! What the state store can forget: old runs with their per-record outcomes, finished jobs, pushed
//! records every consuming flow has read, and the log of prunes itself. Open failures (parked records,
//! failed jobs waiting for a person) are never removed here. See [`crate::retention`] for the policy.

use super::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Which runs may go: older than `older_than`, or beyond the newest `keep_per_flow` of their flow.
/// A run still running and the newest run of each flow always stay.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunsPrune {
    pub older_than: Option<DateTime<Utc>>,
    pub keep_per_flow: Option<u32>,
}

/// Pushed records of one collection/stream that every flow reading them has passed.
#[derive(Clone, Debug)]
pub struct RecordsPrune {
    pub collection: String,
    pub stream: String,
    /// Only records whose change number is at or below this (the smallest checkpoint of the flows that
    /// read the collection's stream).
    pub up_to_seq: i64,
    /// Only records unchanged since before this instant.
    pub changed_before: DateTime<Utc>,
    /// Keys never removed (records with an open failure in a consuming flow).
    pub keep_keys: Vec<String>,
}

/// Counts removed (or, in a dry run, that would be).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunsPruned {
    pub runs: u64,
    pub run_records: u64,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    async fn prune_runs(&self, rule: RunsPrune, dry_run: bool) -> StoreResult<RunsPruned>;
    /// Succeeded jobs finished before `finished_before`, except the newest job of each flow and kind
    /// (the scheduler's mark of its last firing). Failed jobs wait for a person and stay.
    async fn prune_jobs(&self, finished_before: DateTime<Utc>, dry_run: bool) -> StoreResult<u64>;
    async fn prune_records(&self, rule: &RecordsPrune, dry_run: bool) -> StoreResult<u64>;
    /// Remembers a finished prune (its report as JSON).
    async fn log_prune(&self, started_at: DateTime<Utc>, finished_at: DateTime<Utc>, report: &serde_json::Value) -> StoreResult<()>;
    /// When the last prune that changed something (not a dry run) started.
    async fn last_prune(&self) -> StoreResult<Option<DateTime<Utc>>>;
}
