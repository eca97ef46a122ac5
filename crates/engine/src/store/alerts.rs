//! What alert rules read from the state store, and the alerts' own state (open alerts and the messages
//! sent about them), kept in the store so that a restarted server neither repeats nor forgets a message.
//! The logic is in [`crate::alerts`]; `ferry serve` drives it (`crates/server/src/alerts.rs`).

use super::StoreResult;
use crate::alerts::AlertState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// A finished run, as the flow-failed rule reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunBrief {
    pub id: i64,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// One flow's runs, as far as alerts care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowHealth {
    /// The newest run that is not running any more.
    pub last_finished: Option<RunBrief>,
    /// When the newest run that completed (ok or failed_records) finished.
    pub last_success_at: Option<DateTime<Utc>>,
}

/// The job that has waited longest among those due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingJob {
    pub id: i64,
    pub flow: String,
    pub run_after: DateTime<Utc>,
    /// How many jobs are due (queued, run_after passed).
    pub due: i64,
}

/// Webhook deliveries to one connection rejected in one minute, with one code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejections {
    pub connection: String,
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    /// invalid_signature | stale_timestamp | no_webhook_secret
    pub code: String,
    pub count: u64,
}

/// An instant read back from the alert tables: a time that does not parse names what was read and where.
pub(crate) fn stored_time(location: &str, what: &str, text: &str) -> StoreResult<DateTime<Utc>> {
    super::parse_ts(text).ok_or_else(|| super::StoreError { location: location.to_owned(), message: format!("{what}: stored time {text:?} is not RFC 3339") })
}

pub(crate) fn stored_time_opt(location: &str, what: &str, text: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    text.map(|t| stored_time(location, what, &t)).transpose()
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    // ---- readings ----

    /// Runs of each named flow (flows without runs get a default `FlowHealth`).
    async fn flow_health(&self, flows: &[String]) -> StoreResult<BTreeMap<String, FlowHealth>>;
    /// Open failures per flow (flows without any are absent).
    async fn open_failure_counts(&self) -> StoreResult<BTreeMap<String, u64>>;
    /// The due job that has waited longest (`run_after <= now`), if any.
    async fn oldest_due_job(&self, now: DateTime<Utc>) -> StoreResult<Option<WaitingJob>>;
    /// Adds rejected webhook deliveries (counted per connection, minute and code).
    async fn add_rejections(&self, rejections: &[Rejections]) -> StoreResult<()>;
    /// Rejections counted in minutes starting at or after `since`.
    async fn rejections_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Rejections>>;
    /// Forgets rejections counted in minutes before `before`.
    async fn forget_rejections(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// When alerting began on this store: `now` on the first call, the same instant ever after (a flow
    /// that never ran is counted from here, across restarts).
    async fn watching_since(&self, now: DateTime<Utc>) -> StoreResult<DateTime<Utc>>;

    // ---- alert state ----

    /// Open alerts, and resolved ones whose "resolved" message some channel still owes.
    async fn active_alerts(&self) -> StoreResult<Vec<AlertState>>;
    /// Opens an alert; `None` when one is open for this rule and subject already (another server did it).
    async fn open_alert(&self, rule: &str, subject: &str, message: &str, now: DateTime<Utc>) -> StoreResult<Option<i64>>;
    async fn resolve_alert(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    /// Records that a channel was told an alert fired (`resolved` false) or was resolved (true).
    async fn record_delivery(&self, id: i64, channel: &str, resolved: bool, now: DateTime<Utc>) -> StoreResult<()>;
    /// The last "fired" message per (rule, subject, channel) sent at or after `since`: the cool-down.
    async fn last_fired(&self, since: DateTime<Utc>) -> StoreResult<HashMap<(String, String, String), DateTime<Utc>>>;
    /// Forgets alerts resolved before `before`, with their deliveries.
    async fn forget_alerts(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}
