//! The durable job queue: every sync `ferry serve` runs — scheduled, webhook-triggered, manual or a
//! reconcile — is a row in the state store before anything runs, so no job is lost across a restart or a
//! `kill -9`.
//!
//! Life of a job:
//! ```text
//! enqueue ──► queued ──claim (lease)──► running ──complete──► succeeded
//!               ▲                          │  │
//!               │  fail (transient,        │  └─fail (permanent / out of attempts)──► failed
//!               │  backoff + jitter)       │
//!               └──────────────────────────┤  release (graceful shutdown)
//!               └── lease expired (worker killed): claimable again, attempt counted
//! ```
//!
//! A worker claims a job with a lease (`lease_holder`, `lease_until`) and renews it with [`JobQueue::heartbeat`]
//! while the run goes. A worker that dies stops renewing; once the lease has passed, any worker claims the
//! job again. Running a job twice is safe because a run is idempotent (content hashes, cross-reference,
//! `find_by_key` for create-once streams): what the dead worker committed is found unchanged.
//!
//! `dedupe_key` is UNIQUE: a schedule firing is enqueued as `schedule:<flow>:<fire instant>`, so several
//! schedulers (or a restarted one) enqueue each firing exactly once.
//!
//! ## PostgreSQL (many workers on several machines)
//! The same table and trait map onto PostgreSQL; the claim becomes one statement that lets concurrent
//! workers skip each other's rows instead of blocking:
//! ```sql
//! UPDATE jobs SET status = 'running', lease_holder = $1, lease_until = $2, attempts = attempts + 1,
//!        started_at = $3, updated_at = $3
//! WHERE id = (
//!     SELECT id FROM jobs j
//!     WHERE ((j.status = 'queued' AND j.run_after <= $3) OR (j.status = 'running' AND j.lease_until < $3))
//!       AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.flow = j.flow AND r.status = 'running'
//!                       AND r.lease_until >= $3 AND r.id <> j.id)
//!     ORDER BY j.run_after, j.id
//!     FOR UPDATE SKIP LOCKED
//!     LIMIT 1)
//! RETURNING *;
//! ```
//! (the one-running-job-per-flow rule is then backed by the engine's flow lease, `flow_locks`, which a run
//! takes anyway). Enqueue is `INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`. SQLite has one
//! writer at a time, so there the claim's sub-select and update are already atomic.

use super::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The instant a dedupe key under `prefix` ends with (see [`JobQueue::latest_dedupe_run_after`]).
pub fn instant_of_key(prefix: &str, key: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(key.strip_prefix(prefix)?).ok().map(|t| t.with_timezone(&Utc))
}

/// Why a job exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A firing of the flow's `schedule`.
    Scheduled,
    /// A verified webhook named changed records (targeted: `keys`).
    Webhook,
    /// Triggered through the API (or CLI).
    Manual,
    /// A full re-read that reconciles records missing from the source, and catches lost webhooks.
    Reconcile,
    /// Replay of parked failures.
    Retry,
}

impl JobKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobKind::Scheduled => "scheduled",
            JobKind::Webhook => "webhook",
            JobKind::Manual => "manual",
            JobKind::Reconcile => "reconcile",
            JobKind::Retry => "retry",
        }
    }
    pub fn parse(s: &str) -> Option<JobKind> {
        [JobKind::Scheduled, JobKind::Webhook, JobKind::Manual, JobKind::Reconcile, JobKind::Retry].into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    /// Failed permanently or out of attempts; waits for a person.
    Failed,
}

impl JobStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<JobStatus> {
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed].into_iter().find(|k| k.as_str() == s)
    }
}

/// How to run the job's flow (the parts of `RunOptions` a job carries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
    /// Replay these parked failures (empty with `replay_all` false: no replay-only run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replay_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay_all: bool,
}

#[derive(Clone, Debug)]
pub struct NewJob {
    pub flow: String,
    pub kind: JobKind,
    /// Only these source keys (targeted sync); `None` runs the whole flow.
    pub keys: Option<Vec<String>>,
    pub options: JobOptions,
    /// Not before this instant.
    pub run_after: DateTime<Utc>,
    /// Enqueue at most once per dedupe key, ever (UNIQUE).
    pub dedupe_key: Option<String>,
    pub max_attempts: u32,
}

impl NewJob {
    pub fn new(flow: impl Into<String>, kind: JobKind, now: DateTime<Utc>) -> Self {
        NewJob { flow: flow.into(), kind, keys: None, options: JobOptions::default(), run_after: now, dedupe_key: None, max_attempts: 5 }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: i64,
    pub flow: String,
    pub kind: JobKind,
    pub keys: Option<Vec<String>>,
    pub options: JobOptions,
    pub status: JobStatus,
    /// Claims so far (a claim after an expired lease counts too).
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_after: DateTime<Utc>,
    pub lease_holder: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub dedupe_key: Option<String>,
    /// The engine run of the last attempt.
    pub run_id: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Result of [`JobQueue::enqueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: i64,
    /// False when the dedupe key already existed (the existing job's id is returned).
    pub created: bool,
}

/// Jobs per status, for `/metrics` and `/readyz`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub queued: i64,
    /// Of the queued ones, those whose `run_after` has come.
    pub due: i64,
    pub running: i64,
    pub failed: i64,
}

#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub flow: Option<String>,
    pub status: Option<JobStatus>,
    pub limit: i64,
}

/// Backoff of failed jobs: 30 s, 1 min, 2 min … up to 1 h, with jitter.
pub const JOB_BACKOFF: crate::backoff::Backoff = crate::backoff::Backoff { base: Duration::from_secs(30), max: Duration::from_secs(3600) };

/// The queue. Every time is passed in (`now`) so tests drive the clock.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job; with a dedupe key that exists already, adds nothing and returns that job's id.
    async fn enqueue(&self, job: NewJob) -> StoreResult<Enqueued>;
    /// Takes the next due job (queued and `run_after <= now`, or running with an expired lease) whose
    /// flow has no other live running job, leases it to `holder` until `now + lease`, counts an attempt.
    async fn claim(&self, holder: &str, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Job>>;
    /// Coalescing: takes up to `max_jobs` more due, queued webhook jobs of `flow` (targeted syncs that
    /// name keys and carry no other option) into `holder`'s lease, so one run carries them all — a burst
    /// of webhooks for one flow costs one run, not one each. Each job keeps its own row, attempts and
    /// outcome; a holder that dies leaves them all to expire and be claimed again, like any job.
    async fn claim_targeted(&self, flow: &str, holder: &str, lease: Duration, now: DateTime<Utc>, max_jobs: usize) -> StoreResult<Vec<Job>>;
    /// Extends the lease; false when the job is no longer ours (lease expired and taken by another).
    async fn heartbeat(&self, id: i64, holder: &str, lease: Duration, now: DateTime<Utc>) -> StoreResult<bool>;
    /// The run finished (records that failed are parked by the engine; the job itself succeeded).
    async fn complete(&self, id: i64, holder: &str, run_id: Option<i64>, now: DateTime<Utc>) -> StoreResult<bool>;
    /// The attempt failed. `retry_at` Some → queued again for then; None → failed for good.
    async fn fail(&self, id: i64, holder: &str, run_id: Option<i64>, error: &str, retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Gives a claimed job back without it counting as an attempt (graceful shutdown).
    async fn release(&self, id: i64, holder: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Queues a failed job again now (attempts start over).
    async fn requeue(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn job(&self, id: i64) -> StoreResult<Option<Job>>;
    /// Newest first.
    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>>;
    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth>;
    /// The latest instant for which a job with a dedupe key starting with `prefix` exists (the scheduler's
    /// "fired up to here" mark, kept in the queue itself so a restart neither repeats nor loses a firing).
    /// The instant is the one the key ends with (`schedule:<flow>:<RFC 3339 instant>`), not the job's
    /// `run_after`, which a retry moves on: a firing retried past the next one must not hide it.
    async fn latest_dedupe_run_after(&self, prefix: &str) -> StoreResult<Option<DateTime<Utc>>>;
}
