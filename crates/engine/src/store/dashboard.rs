//! Read queries (and the few writes) of the operator's dashboard (`crates/server/src/dashboard`).
//!
//! Every listing is a page: keyset pagination on an indexed column (`before`/`after` an id), never an
//! OFFSET and never a whole table, so a page costs the same with a million run records as with ten.
//! The SQL of the SQLite implementation (`sqlite/dashboard.rs`) is kept plain so a PostgreSQL store can
//! follow it statement by statement.

use super::keys::ApiKey;
use super::{Failure, RunRow, StoreResult, XrefRow};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

/// Queued and running jobs of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowQueue {
    pub queued: i64,
    pub running: i64,
}

/// One per-record outcome of a run, with its position in the run (the page cursor) and the field-level
/// changes of a written record.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecordRow {
    pub seq: i64,
    pub key: String,
    pub outcome: String,
    pub target_id: Option<String>,
    pub field: Option<String>,
    pub message: Option<String>,
    pub changes: Option<serde_json::Value>,
}

/// Open failures sharing flow, stage and field: one problem, usually one fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureGroup {
    pub flow: String,
    pub stage: String,
    /// `""` when the failures name no field.
    pub field: String,
    pub count: i64,
    /// The message of the group's oldest failure (messages name their record, so they differ a little).
    pub sample_message: String,
    pub last_failed_at: String,
}

/// A group of failures, as the console names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupKey {
    pub flow: String,
    pub stage: String,
    pub field: String,
}

/// A run that touched a key, and what it did to it.
#[derive(Clone, Debug, Serialize)]
pub struct KeyRun {
    pub run_id: i64,
    pub flow: String,
    pub started_at: String,
    pub status: String,
    pub outcome: String,
    pub target_id: Option<String>,
    pub message: Option<String>,
}

/// A webhook delivery, as answered.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookLogEntry {
    pub id: i64,
    pub connection: String,
    pub received_at: String,
    pub status: i64,
    /// enqueued | ignored | duplicate | rejected | failed
    pub outcome: String,
    pub code: Option<String>,
    pub message: Option<String>,
    pub delivery_id: Option<String>,
    pub jobs: Vec<i64>,
    pub bytes: i64,
}

/// A delivery to log.
#[derive(Clone, Debug)]
pub struct NewWebhookLog {
    pub connection: String,
    pub received_at: DateTime<Utc>,
    pub status: u16,
    pub outcome: &'static str,
    pub code: Option<String>,
    pub message: Option<String>,
    pub delivery_id: Option<String>,
    pub jobs: Vec<i64>,
    pub bytes: usize,
}

/// Rows the webhook log keeps (the newest).
pub const WEBHOOK_LOG_KEEP: i64 = 10_000;

#[async_trait]
pub trait DashboardStore: Send + Sync {
    /// The newest run of each of `flows` (flows that never ran are missing from the map).
    async fn last_runs(&self, flows: &[String]) -> StoreResult<HashMap<String, RunRow>>;
    /// Open failures per flow (flows without any are missing).
    async fn open_failures_by_flow(&self) -> StoreResult<HashMap<String, i64>>;
    /// Queued and running jobs per flow (flows with none are missing).
    async fn queue_by_flow(&self) -> StoreResult<HashMap<String, FlowQueue>>;
    /// A flow's runs, newest first, older than run `before` (all when `None`).
    async fn runs_page(&self, flow: &str, before: Option<i64>, limit: i64) -> StoreResult<Vec<RunRow>>;
    async fn run(&self, id: i64) -> StoreResult<Option<RunRow>>;
    /// A run's per-record outcomes in the order they were committed, after position `after`.
    async fn run_records_page(&self, run_id: i64, after: Option<i64>, limit: i64) -> StoreResult<Vec<RunRecordRow>>;

    /// Open failures grouped by (flow, stage, field), largest group first.
    async fn failure_groups(&self, limit: i64) -> StoreResult<Vec<FailureGroup>>;
    /// A group's failures by id, after id `after`.
    async fn failures_page(&self, group: &GroupKey, after: Option<i64>, limit: i64) -> StoreResult<Vec<Failure>>;
    /// Replaces a parked failure's payload (the record as the source produced it) with a corrected one;
    /// the next replay reads this. False when there is no such failure.
    async fn set_failure_source(&self, id: i64, source: &serde_json::Value) -> StoreResult<bool>;
    /// Drops a parked failure, keeping it with `reason` and who dropped it in `dropped_failures`; false
    /// when there is no such failure.
    async fn drop_failure_with_reason(&self, id: i64, reason: &str, by: &str, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Where `key` is, in each of `flows`: as the flow's source key, or as a target id.
    async fn find_record(&self, flows: &[String], key: &str) -> StoreResult<Vec<XrefRow>>;
    /// Open failures of `key` in each of `flows`.
    async fn failures_of_key(&self, flows: &[String], key: &str) -> StoreResult<Vec<Failure>>;
    /// Runs whose per-record outcomes name `key`, newest first.
    async fn runs_touching(&self, key: &str, limit: i64) -> StoreResult<Vec<KeyRun>>;

    /// Logs a delivery (and forgets those beyond the newest [`WEBHOOK_LOG_KEEP`]).
    async fn log_webhook(&self, entry: NewWebhookLog) -> StoreResult<()>;
    /// Deliveries, newest first, older than `before`; of one connection or all.
    async fn webhook_log_page(&self, connection: Option<&str>, before: Option<i64>, limit: i64) -> StoreResult<Vec<WebhookLogEntry>>;

    /// A key by its public id (revoked ones too, marked).
    async fn api_key(&self, id: &str) -> StoreResult<Option<ApiKey>>;
    /// Keys by id, after id `after`.
    async fn keys_page(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<ApiKey>>;
}
