//! The shared state store: PostgreSQL, for many `ferry serve` processes on one or several machines and
//! many workspaces in one database (one schema each), via sqlx.
//!
//! Same tables, same text formats and the same behaviour as [`super::SqliteStore`] (the store test suite in
//! `store/suite.rs` runs against both); what differs is concurrency: several writers at once, so the job
//! claim skips rows other workers hold (`FOR UPDATE SKIP LOCKED`, see `postgres/jobs.rs`), and idle workers
//! are woken through `LISTEN/NOTIFY` instead of polling.

use crate::store::{now};
use super::*;
use crate::backoff::Backoff;
use chrono::{SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use std::str::FromStr;

/// A run writing at least this many cross-references refreshes `xref`'s statistics when it finishes.
const BULK_WRITE_ROWS: i64 = 10_000;

mod alerts;
mod dashboard;
mod jobs;
mod keys;
mod records;
mod retention;
mod secrets;

/// The default schema of a store whose `[state]` names none.
pub const DEFAULT_SCHEMA: &str = "ferry";

pub struct PgStore {
    pool: PgPool,
    schema: String,
    pub(super) location: String,
    /// How to connect (the job listener opens a connection of its own).
    options: PgConnectOptions,
    /// Counts `ferry_jobs.<schema>` notifications, once a worker asked for them (`job_signal`).
    signal: std::sync::OnceLock<tokio::sync::watch::Receiver<u64>>,
}


/// A schema name Ferry accepts: it is put into SQL and a channel name, so letters, digits and `_` only.
pub fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 48
        && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && !schema.starts_with("pg_")
}

impl PgStore {
    /// After a run that wrote many cross-references: fresh planner statistics and visibility map for
    /// `xref`, as PostgreSQL advises after a bulk load. Without them the next run's complete read plans its
    /// source-hash scan on stale estimates (a sort spilled to disk instead of an index-only scan: 3x slower)
    /// until autovacuum comes round (up to a minute or more). Best effort: a failure only costs speed.
    async fn refresh_xref_statistics(&self) {
        if let Err(e) = sqlx::query("VACUUM (ANALYZE) xref").execute(&self.pool).await {
            tracing::warn!(error = %e, "could not VACUUM (ANALYZE) the cross-reference after a bulk write; autovacuum will");
        }
    }

    /// Connects to `url`, creates `schema` if needed and applies the migrations in it (concurrent openers
    /// of the same schema wait for each other). `max_connections` bounds this store's pool.
    pub async fn open(url: &str, schema: &str, max_connections: u32) -> StoreResult<Self> {
        let base = PgConnectOptions::from_str(url).map_err(|e| StoreError { location: redact_url(url), message: e.to_string() })?;
        let location = format!(
            "postgres://{}@{}:{}/{} (schema {schema})",
            base.get_username(),
            base.get_host(),
            base.get_port(),
            base.get_database().unwrap_or("")
        );
        let err = |context: &str, e: &dyn std::fmt::Display| StoreError { location: location.clone(), message: format!("{context}: {e}") };
        if !valid_schema(schema) {
            return Err(err("schema", &format!("{schema:?} is not a schema name Ferry uses (lowercase letters, digits and _, not starting with a digit or pg_)")));
        }
        // Create the schema before any pooled connection puts it on its search_path; serialised by an
        // advisory lock, since `CREATE SCHEMA IF NOT EXISTS` races with itself.
        {
            let mut conn = base.clone().disable_statement_logging().connect().await.map_err(|e| err("connect", &e))?;
            let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(|e| err("create schema", &e))?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('ferry.create_schema', 0))")
                .execute(&mut *tx)
                .await
                .map_err(|e| err("create schema", &e))?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut *tx).await.map_err(|e| err("create schema", &e))?;
            tx.commit().await.map_err(|e| err("create schema", &e))?;
        }
        let options = base.options([("search_path", schema)]).application_name("ferry").disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(0)
            .idle_timeout(std::time::Duration::from_secs(60))
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| err("connect", &e))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| err("migrate", &e))?;
        Ok(PgStore { pool, schema: schema.to_owned(), location, options, signal: std::sync::OnceLock::new() })
    }

    /// The schema this store keeps its tables in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool (for `ferry state migrate` and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Drops this store's schema with everything in it (scratch schemas of tests).
    pub async fn drop_schema(&self) -> StoreResult<()> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("drop schema", e))?;
        self.pool.close().await;
        Ok(())
    }

    fn err(&self, context: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError { location: self.location.clone(), message: format!("{context}: {e}") }
    }
}

/// The PostgreSQL tests use: `FERRY_TEST_POSTGRES_URL`, by default the local server (trust auth).
pub fn test_url() -> String {
    std::env::var("FERRY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A uniquely named schema on [`test_url`] for one test (tests run in parallel, each in its own schema),
/// dropped with everything in it when this guard goes, even after a failed assertion.
pub struct ScratchSchema {
    pub url: String,
    pub schema: String,
}

impl ScratchSchema {
    pub fn new(prefix: &str) -> ScratchSchema {
        let tag: u64 = rand::random();
        let prefix: String = prefix.chars().filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').take(20).collect();
        ScratchSchema { url: test_url(), schema: format!("t_{prefix}_{}_{:012x}", std::process::id(), tag & 0xffff_ffff_ffff) }
    }

    /// A store in this schema.
    pub async fn open(&self) -> StoreResult<PgStore> {
        PgStore::open(&self.url, &self.schema, 4).await
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop may run inside a runtime that is shutting down: a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnectOptions::from_str(&url).ok()?.disable_statement_logging().connect().await.ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` (for messages).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Keeps the last of each key (a key twice in one `INSERT … ON CONFLICT DO UPDATE` is an error on
/// PostgreSQL, where SQLite applies both in order: the later wins either way).
fn last_per_key<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<&T> = items.iter().rev().filter(|i| seen.insert(key(i).to_owned())).collect();
    kept.reverse();
    kept
}

/// The columns of `runs` that [`run_row`] decodes, in its order.
pub(super) const RUN_COLUMNS: &str = "id, flow, mode, started_at, finished_at, status, read, created, updated, unchanged, failed,
    retired, skipped, error, resumed, warned, warnings";

/// A `runs` row selected with [`RUN_COLUMNS`].
pub(super) fn run_row(r: &sqlx::postgres::PgRow) -> RunRow {
    RunRow {
        id: r.get(0),
        flow: r.get(1),
        mode: r.get(2),
        started_at: r.get(3),
        finished_at: r.get(4),
        status: r.get(5),
        counts: Counts {
            read: r.get::<i64, _>(6) as u64,
            created: r.get::<i64, _>(7) as u64,
            updated: r.get::<i64, _>(8) as u64,
            unchanged: r.get::<i64, _>(9) as u64,
            failed: r.get::<i64, _>(10) as u64,
            retired: r.get::<i64, _>(11) as u64,
            skipped: r.get::<i64, _>(12) as u64,
            resumed: r.get::<i64, _>(14) as u64,
            warned: r.get::<i64, _>(15) as u64,
        },
        error: r.get(13),
        warnings: r.get::<Option<String>, _>(16).and_then(|w| serde_json::from_str(&w).ok()).unwrap_or_default(),
    }
}

#[async_trait]
impl StateStore for PgStore {
    async fn lock_flow(&self, flow: &str, holder: &str, lease: chrono::Duration) -> StoreResult<()> {
        let now_t = Utc::now();
        let expires = (now_t + lease).to_rfc3339_opts(SecondsFormat::Micros, true);
        // The conflicting row is locked by the upsert: of two processes taking a free or expired lease at
        // once, one updates and the other re-checks the WHERE against the winner's row and takes nothing.
        let taken = sqlx::query(
            "INSERT INTO flow_locks (flow, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (flow) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE flow_locks.holder = excluded.holder OR flow_locks.expires_at < $4",
        )
        .bind(flow)
        .bind(holder)
        .bind(&expires)
        .bind(now_t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err("lock flow", e))?
        .rows_affected();
        if taken == 1 {
            return Ok(());
        }
        let row = sqlx::query("SELECT holder, expires_at FROM flow_locks WHERE flow = $1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("lock flow", e))?;
        let (other, until): (String, String) = row.map(|r| (r.get(0), r.get(1))).unwrap_or_default();
        Err(self.err(&format!("flow {flow}"), format!("is already running in {other} (lease until {until})")))
    }

    async fn unlock_flow(&self, flow: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM flow_locks WHERE flow = $1 AND holder = $2")
            .bind(flow)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("unlock flow", e))?;
        Ok(())
    }

    async fn lock_holder(&self, flow: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT holder FROM flow_locks WHERE flow = $1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("read flow lock", e))
    }

    async fn begin_run(&self, flow: &str, mode: &str) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO runs (flow, mode, started_at, status, holder)
             VALUES ($1, $2, $3, 'running', (SELECT holder FROM flow_locks WHERE flow = $1)) RETURNING id",
        )
        .bind(flow)
        .bind(mode)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err("begin run", e))
    }

    async fn interrupt_stale_runs(&self, flow: Option<&str>, holder_gone: &(dyn for<'h> Fn(&'h str) -> bool + Send + Sync)) -> StoreResult<u64> {
        let rows = sqlx::query(
            "SELECT r.id, r.holder, l.holder, l.expires_at FROM runs r LEFT JOIN flow_locks l ON l.flow = r.flow
             WHERE r.status = 'running' AND ($1::text IS NULL OR r.flow = $1)",
        )
        .bind(flow)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("list running runs", e))?;
        let now_t = now();
        let mut interrupted = 0;
        for r in rows {
            let (id, run_holder, lock_holder, expires): (i64, Option<String>, Option<String>, Option<String>) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let why = match (&lock_holder, &expires) {
                (None, _) | (_, None) => Some("its flow's lease was released without the run finishing".to_owned()),
                (Some(lock), Some(until)) => {
                    if until.as_str() < now_t.as_str() {
                        Some(format!("its lease (held by {lock}) expired at {until}"))
                    } else if run_holder.as_ref().is_some_and(|h| h != lock) {
                        Some(format!("its flow's lease passed to {lock}"))
                    } else if holder_gone(lock) {
                        Some(format!("its process {lock} no longer exists"))
                    } else {
                        None
                    }
                }
            };
            let Some(why) = why else { continue };
            let holder = run_holder.as_deref().unwrap_or("an unknown process");
            let message = format!("interrupted: the run of {holder} stopped without finishing (killed?); {why}");
            interrupted += sqlx::query("UPDATE runs SET status = 'interrupted', finished_at = $2, error = $3 WHERE id = $1 AND status = 'running'")
                .bind(id)
                .bind(&now_t)
                .bind(message)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err("mark run interrupted", e))?
                .rows_affected();
        }
        Ok(interrupted)
    }

    async fn finish_run(&self, run_id: i64, status: &str, error: Option<&str>) -> StoreResult<()> {
        let written: Option<i64> =
            sqlx::query_scalar("UPDATE runs SET finished_at = $2, status = $3, error = $4 WHERE id = $1 RETURNING created + updated + retired")
                .bind(run_id)
                .bind(now())
                .bind(status)
                .bind(error)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err("finish run", e))?;
        if written.unwrap_or(0) >= BULK_WRITE_ROWS {
            self.refresh_xref_statistics().await;
        }
        Ok(())
    }

    async fn set_run_warnings(&self, run_id: i64, warnings: &[String]) -> StoreResult<()> {
        if warnings.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(warnings).expect("strings serialise");
        sqlx::query("UPDATE runs SET warnings = $2 WHERE id = $1")
            .bind(run_id)
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("store run warnings", e))?;
        Ok(())
    }

    async fn runs(&self, flow: Option<&str>, limit: i64) -> StoreResult<Vec<RunRow>> {
        let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE $1::text IS NULL OR flow = $1 ORDER BY id DESC LIMIT $2"))
        .bind(flow)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("list runs", e))?;
        Ok(rows
            .into_iter()
            .map(|r| run_row(&r))
            .collect())
    }

    async fn run_records(&self, run_id: i64) -> StoreResult<Vec<RunRecord>> {
        let rows = sqlx::query("SELECT key, outcome, target_id, field, message, changes FROM run_records WHERE run_id = $1 ORDER BY seq")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("list run records", e))?;
        Ok(rows
            .into_iter()
            .map(|r| RunRecord {
                key: r.get(0),
                outcome: match r.get::<String, _>(1).as_str() {
                    "created" => "created",
                    "updated" => "updated",
                    "retired" => "retired",
                    "failed" => "failed",
                    "resumed" => "resumed",
                    "skipped" => "skipped",
                    "duplicate" => "duplicate",
                    _ => "unchanged",
                },
                target_id: r.get(2),
                field: r.get(3),
                message: r.get(4),
                changes: r.get::<Option<&str>, _>(5).and_then(|c| serde_json::from_str(c).ok()),
            })
            .collect())
    }

    async fn checkpoint(&self, flow: &str) -> StoreResult<Option<serde_json::Value>> {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM checkpoints WHERE flow = $1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("read checkpoint", e))?;
        value.map(|v| serde_json::from_str(&v).map_err(|e| self.err("decode checkpoint", e))).transpose()
    }

    async fn reset_checkpoint(&self, flow: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM checkpoints WHERE flow = $1")
            .bind(flow)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("reset checkpoint", e))?;
        Ok(())
    }

    async fn lookup(&self, flow: &str, keys: &[String]) -> StoreResult<HashMap<String, XrefEntry>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String, String)> = sqlx::query_as("SELECT key, target_id, hash FROM xref WHERE flow = $1 AND key = ANY($2)")
            .bind(flow)
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("look up cross-reference", e))?;
        Ok(rows.into_iter().map(|(key, target_id, hash)| (key, XrefEntry { target_id, hash })).collect())
    }

    async fn payloads(&self, flow: &str, keys: &[String]) -> StoreResult<HashMap<String, serde_json::Value>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, payload FROM xref WHERE flow = $1 AND payload IS NOT NULL AND key = ANY($2)")
                .bind(flow)
                .bind(keys)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err("read payloads", e))?;
        rows.into_iter()
            .map(|(key, payload)| Ok((key, serde_json::from_str(&payload).map_err(|e| self.err("decode payload", e))?)))
            .collect()
    }

    async fn source_hash_page(&self, flow: &str, after: &str, limit: i64) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as("SELECT key, source_hash FROM xref WHERE flow = $1 AND key > $2 AND source_hash IS NOT NULL ORDER BY key LIMIT $3")
            .bind(flow)
            .bind(after)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("page source hashes", e))
    }

    async fn xref_keys_page(&self, flow: &str, after: &str, limit: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar("SELECT key FROM xref WHERE flow = $1 AND key > $2 ORDER BY key LIMIT $3")
            .bind(flow)
            .bind(after)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("page cross-reference", e))
    }

    async fn xref_find(&self, key: &str) -> StoreResult<Vec<XrefRow>> {
        let rows = sqlx::query("SELECT flow, key, target_id, hash, synced_at, payload FROM xref WHERE key = $1 OR target_id = $1 ORDER BY flow")
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("find cross-reference", e))?;
        Ok(rows
            .into_iter()
            .map(|r| XrefRow {
                flow: r.get(0),
                key: r.get(1),
                target_id: r.get(2),
                hash: r.get(3),
                synced_at: r.get(4),
                payload: r.get::<Option<&str>, _>(5).and_then(|p| serde_json::from_str(p).ok()),
            })
            .collect())
    }

    async fn commit_batch(&self, flow: &str, run_id: i64, batch: BatchCommit) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let at = now();
        // Durability as the SQLite store's (WAL, synchronous = NORMAL): a killed Ferry loses nothing, a
        // crash of the database server itself may lose the last batches' commits, which the next run heals
        // (content hashes, find_by_key) by writing those records once more. Not waiting for the WAL flush
        // of every batch is what keeps an unchanged re-sync within reach of SQLite's speed. The queue, keys,
        // secrets and deliveries stay fully durable (a lost enqueue would be a lost webhook).
        // Both in the transaction's first round trip (one simple query).
        let mut tx = self.pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await.map_err(|e| self.err("begin batch", e))?;
        if !batch.synced.is_empty() {
            // One statement for the whole batch: the rows travel as parallel arrays.
            let synced = last_per_key(&batch.synced, |s| &s.key);
            let col = |f: fn(&Synced) -> Option<&str>| synced.iter().map(|s| f(s)).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO xref (flow, key, target_id, hash, payload, synced_at, source_hash)
                 SELECT $1, k, t, h, p, $2, sh FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u (k, t, h, p, sh)
                 ON CONFLICT (flow, key) DO UPDATE SET target_id = excluded.target_id, hash = excluded.hash,
                     payload = excluded.payload, synced_at = excluded.synced_at, source_hash = excluded.source_hash",
            )
            .bind(flow)
            .bind(&at)
            .bind(col(|s| Some(s.key.as_str())))
            .bind(col(|s| Some(s.target_id.as_str())))
            .bind(col(|s| Some(s.hash.as_str())))
            .bind(col(|s| Some(s.payload.as_str())))
            .bind(col(|s| s.source_hash.as_deref()))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("record cross-reference", e))?;
        }
        if !batch.forgotten.is_empty() {
            sqlx::query("DELETE FROM xref WHERE flow = $1 AND key = ANY($2)")
                .bind(flow)
                .bind(&batch.forgotten)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err("forget cross-reference", e))?;
        }
        if !batch.resolved.is_empty() {
            sqlx::query("DELETE FROM failures WHERE flow = $1 AND key = ANY($2)")
                .bind(flow)
                .bind(&batch.resolved)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err("resolve failures", e))?;
        }
        for f in &batch.failed {
            let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM failures WHERE flow = $1 AND key = $2")
                .bind(flow)
                .bind(&f.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err("park failure", e))?
                .unwrap_or(0)
                + 1;
            let next_retry = f.retryable.then(|| {
                let delay = Backoff::PARKED.delay(attempts as u32);
                (Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default()).to_rfc3339_opts(SecondsFormat::Micros, true)
            });
            sqlx::query(
                "INSERT INTO failures (flow, key, position, stage, field, message, retryable, attempts, first_failed_at,
                                       last_failed_at, next_retry_at, source)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)
                 ON CONFLICT (flow, key) DO UPDATE SET position = excluded.position, stage = excluded.stage,
                     field = excluded.field, message = excluded.message, retryable = excluded.retryable,
                     attempts = excluded.attempts, last_failed_at = excluded.last_failed_at,
                     next_retry_at = excluded.next_retry_at, source = excluded.source",
            )
            .bind(flow)
            .bind(&f.key)
            .bind(&f.position)
            .bind(f.stage.as_str())
            .bind(&f.field)
            .bind(&f.message)
            .bind(f.retryable)
            .bind(attempts)
            .bind(&at)
            .bind(next_retry)
            .bind(f.source.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("park failure", e))?;
        }
        if !batch.outcomes.is_empty() {
            let o = &batch.outcomes;
            sqlx::query(
                "INSERT INTO run_records (run_id, key, outcome, target_id, field, message, changes)
                 SELECT $1, k, o, t, f, m, c FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                     WITH ORDINALITY AS u (k, o, t, f, m, c, n)
                 ORDER BY n",
            )
            .bind(run_id)
            .bind(o.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.outcome).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.target_id.as_deref()).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.field.as_deref()).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.message.as_deref()).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.changes.as_ref().map(|c| c.to_string())).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("record run outcomes", e))?;
        }
        if let Some(cp) = &batch.checkpoint {
            sqlx::query(
                "INSERT INTO checkpoints (flow, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (flow) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(flow)
            .bind(cp.to_string())
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("advance checkpoint", e))?;
        }
        let c = batch.counts;
        if c != Counts::default() {
            sqlx::query(
                "UPDATE runs SET read = read + $2, created = created + $3, updated = updated + $4,
                     unchanged = unchanged + $5, failed = failed + $6, retired = retired + $7, skipped = skipped + $8,
                     resumed = resumed + $9, warned = warned + $10
                 WHERE id = $1",
            )
            .bind(run_id)
            .bind(c.read as i64)
            .bind(c.created as i64)
            .bind(c.updated as i64)
            .bind(c.unchanged as i64)
            .bind(c.failed as i64)
            .bind(c.retired as i64)
            .bind(c.skipped as i64)
            .bind(c.resumed as i64)
            .bind(c.warned as i64)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("count run", e))?;
        }
        tx.commit().await.map_err(|e| self.err("commit batch", e))
    }

    async fn failures(&self, flow: Option<&str>, due_before: Option<DateTime<Utc>>) -> StoreResult<Vec<Failure>> {
        let due = due_before.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true));
        let rows = sqlx::query(
            "SELECT id, flow, key, position, stage, field, message, retryable, attempts, first_failed_at, last_failed_at,
                    next_retry_at, source
             FROM failures
             WHERE ($1::text IS NULL OR flow = $1) AND ($2::text IS NULL OR (retryable AND next_retry_at <= $2))
             ORDER BY id",
        )
        .bind(flow)
        .bind(due)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("list failures", e))?;
        rows.into_iter().map(|r| self.failure_row(r)).collect()
    }

    async fn failure(&self, id: i64) -> StoreResult<Option<Failure>> {
        let row = sqlx::query(
            "SELECT id, flow, key, position, stage, field, message, retryable, attempts, first_failed_at, last_failed_at,
                    next_retry_at, source FROM failures WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err("read failure", e))?;
        row.map(|r| self.failure_row(r)).transpose()
    }

    async fn drop_failures(&self, flow: Option<&str>, ids: &[i64]) -> StoreResult<u64> {
        let n = sqlx::query("DELETE FROM failures WHERE ($1::text IS NULL OR flow = $1) AND (cardinality($2::bigint[]) = 0 OR id = ANY($2))")
            .bind(flow)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("drop failures", e))?
            .rows_affected();
        Ok(n)
    }
}

impl PgStore {
    fn failure_row(&self, r: sqlx::postgres::PgRow) -> StoreResult<Failure> {
        Ok(Failure {
            id: r.get(0),
            flow: r.get(1),
            key: r.get(2),
            position: r.get(3),
            stage: r.get(4),
            field: r.get(5),
            message: r.get(6),
            retryable: r.get(7),
            attempts: r.get(8),
            first_failed_at: r.get(9),
            last_failed_at: r.get(10),
            next_retry_at: r.get(11),
            source: serde_json::from_str(r.get::<&str, _>(12)).map_err(|e| self.err("decode failure source", e))?,
        })
    }

    /// Whether run `id` exists (the API answers 404 for an unknown run, not an empty list).
    pub async fn run_exists(&self, id: i64) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(&format!("look up run {id}"), e))
    }
}

#[cfg(test)]
impl super::suite::Hooks for PgStore {
    async fn dropped_reason(&self, key: &str) -> Option<(String, String)> {
        sqlx::query_as("SELECT reason, dropped_by FROM dropped_failures WHERE key = $1").bind(key).fetch_optional(&self.pool).await.unwrap()
    }
    async fn backdate_run(&self, id: i64, started_at: DateTime<Utc>) {
        sqlx::query("UPDATE runs SET started_at = $1 WHERE id = $2")
            .bind(started_at.to_rfc3339_opts(SecondsFormat::Micros, true))
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(redact_url("postgres://ferry:s3cret@db:5432/ferry"), "postgres://ferry:***@db:5432/ferry");
        assert_eq!(redact_url("postgres://ferry@db/ferry"), "postgres://ferry@db/ferry");
        assert_eq!(redact_url("postgres://db/ferry"), "postgres://db/ferry");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("ferry") && valid_schema("ws_acme_2"));
        for bad in ["", "Acme", "a-b", "a;drop", "1abc", "pg_temp", "a b"] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn a_key_twice_in_one_upsert_keeps_the_later_row_in_order() {
        let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4)];
        let kept: Vec<_> = last_per_key(&rows, |r| r.0).into_iter().copied().collect();
        assert_eq!(kept, [("b", 2), ("a", 3), ("c", 4)]);
    }
}
