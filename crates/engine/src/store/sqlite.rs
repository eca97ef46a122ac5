//! The embedded default state store: one SQLite file (WAL), via sqlx.

use crate::store::{now};
use super::*;
use crate::backoff::Backoff;
use chrono::{SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;

mod dashboard;
mod alerts;
mod jobs;
mod records;
mod retention;
mod secrets;

pub struct SqliteStore {
    pool: SqlitePool,
    pub(super) location: String,
}


impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let location = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| StoreError { location: location.clone(), message: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| err(&e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives a killed process (the case that matters for exactly-once);
            // a power cut may lose the last commit, which find_by_key and hashes heal on the next run.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30))
            // An 8 MiB page cache per connection (SQLite's default is 2 MiB): batch upserts into a large
            // cross-reference otherwise re-read the same B-tree pages through syscalls; larger caches
            // bought no measurable speed and cost memory (the 1M-record target is < 200 MB).
            .pragma("cache_size", "-8192")
            .pragma("temp_store", "memory")
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(|e| err(&e))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| err(&e))?;
        Ok(SqliteStore { pool, location })
    }

    /// The pool (for `ferry state migrate`).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn err(&self, context: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError { location: self.location.clone(), message: format!("{context}: {e}") }
    }
}

/// The columns [`run_row`] reads, in its order.
pub(super) const RUN_COLUMNS: &str = "id, flow, mode, started_at, finished_at, status, read, created, updated, unchanged, failed,
                    retired, skipped, error, resumed, warned, warnings";

/// A `runs` row selected with [`RUN_COLUMNS`].
pub(super) fn run_row(r: &sqlx::sqlite::SqliteRow) -> RunRow {
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

/// Rows per multi-row INSERT: 7 parameters a row stays far below SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 1000;

fn keys_json(keys: &[String]) -> String {
    serde_json::to_string(keys).expect("strings serialise")
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn lock_flow(&self, flow: &str, holder: &str, lease: chrono::Duration) -> StoreResult<()> {
        let now_t = Utc::now();
        let expires = (now_t + lease).to_rfc3339_opts(SecondsFormat::Micros, true);
        // Take the lock when free, expired, or already ours (a heartbeat renews it).
        let taken = sqlx::query(
            "INSERT INTO flow_locks (flow, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (flow) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE flow_locks.holder = excluded.holder OR flow_locks.expires_at < ?4",
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
        let row = sqlx::query("SELECT holder, expires_at FROM flow_locks WHERE flow = ?1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("lock flow", e))?;
        let (other, until): (String, String) = row.map(|r| (r.get(0), r.get(1))).unwrap_or_default();
        Err(self.err(&format!("flow {flow}"), format!("is already running in {other} (lease until {until})")))
    }

    async fn unlock_flow(&self, flow: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM flow_locks WHERE flow = ?1 AND holder = ?2")
            .bind(flow)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("unlock flow", e))?;
        Ok(())
    }

    async fn lock_holder(&self, flow: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT holder FROM flow_locks WHERE flow = ?1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("read flow lock", e))
    }

    async fn begin_run(&self, flow: &str, mode: &str) -> StoreResult<i64> {
        let id = sqlx::query(
            "INSERT INTO runs (flow, mode, started_at, status, holder)
             VALUES (?1, ?2, ?3, 'running', (SELECT holder FROM flow_locks WHERE flow = ?1))",
        )
            .bind(flow)
            .bind(mode)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("begin run", e))?
            .last_insert_rowid();
        Ok(id)
    }

    async fn interrupt_stale_runs(&self, flow: Option<&str>, holder_gone: &(dyn for<'h> Fn(&'h str) -> bool + Send + Sync)) -> StoreResult<u64> {
        let rows = sqlx::query(
            "SELECT r.id, r.holder, l.holder, l.expires_at FROM runs r LEFT JOIN flow_locks l ON l.flow = r.flow
             WHERE r.status = 'running' AND (?1 IS NULL OR r.flow = ?1)",
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
            interrupted += sqlx::query("UPDATE runs SET status = 'interrupted', finished_at = ?2, error = ?3 WHERE id = ?1 AND status = 'running'")
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
        sqlx::query("UPDATE runs SET finished_at = ?2, status = ?3, error = ?4 WHERE id = ?1")
            .bind(run_id)
            .bind(now())
            .bind(status)
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("finish run", e))?;
        Ok(())
    }

    async fn set_run_warnings(&self, run_id: i64, warnings: &[String]) -> StoreResult<()> {
        if warnings.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(warnings).expect("strings serialise");
        sqlx::query("UPDATE runs SET warnings = ?2 WHERE id = ?1")
            .bind(run_id)
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("store run warnings", e))?;
        Ok(())
    }

    async fn runs(&self, flow: Option<&str>, limit: i64) -> StoreResult<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT id, flow, mode, started_at, finished_at, status, read, created, updated, unchanged, failed,
                    retired, skipped, error, resumed, warned, warnings
             FROM runs WHERE ?1 IS NULL OR flow = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(flow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("list runs", e))?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn run_records(&self, run_id: i64) -> StoreResult<Vec<RunRecord>> {
        let rows = sqlx::query("SELECT key, outcome, target_id, field, message, changes FROM run_records WHERE run_id = ?1 ORDER BY rowid")
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
        let row = sqlx::query("SELECT value FROM checkpoints WHERE flow = ?1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("read checkpoint", e))?;
        row.map(|r| serde_json::from_str(r.get::<&str, _>(0)).map_err(|e| self.err("decode checkpoint", e))).transpose()
    }

    async fn reset_checkpoint(&self, flow: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM checkpoints WHERE flow = ?1")
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
        // One query per batch: the keys travel as one JSON array parameter, and the answer comes back as
        // one JSON value (sqlx hands SQLite rows over one at a time through a channel: 1,000 rows per
        // batch cost more than the look-up itself).
        let json: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(key, target_id, hash)) FROM xref
             WHERE flow = ?1 AND key IN (SELECT value FROM json_each(?2))",
        )
        .bind(flow)
        .bind(keys_json(keys))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err("look up cross-reference", e))?;
        let rows: Vec<(String, String, String)> =
            serde_json::from_str(json.as_deref().unwrap_or("[]")).map_err(|e| self.err("decode cross-reference", e))?;
        Ok(rows.into_iter().map(|(key, target_id, hash)| (key, XrefEntry { target_id, hash })).collect())
    }

    async fn payloads(&self, flow: &str, keys: &[String]) -> StoreResult<HashMap<String, serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT key, payload FROM xref WHERE flow = ?1 AND payload IS NOT NULL AND key IN (SELECT value FROM json_each(?2))",
        )
        .bind(flow)
        .bind(keys_json(keys))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("read payloads", e))?;
        rows.into_iter()
            .map(|r| {
                let payload: &str = r.get(1);
                Ok((r.get(0), serde_json::from_str(payload).map_err(|e| self.err("decode payload", e))?))
            })
            .collect()
    }

    async fn source_hash_page(&self, flow: &str, after: &str, limit: i64) -> StoreResult<Vec<(String, String)>> {
        // Read from the covering index (flow, key, source_hash) alone; one JSON value per page (see `lookup`).
        let json: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(key, source_hash)) FROM
               (SELECT key, source_hash FROM xref WHERE flow = ?1 AND key > ?2 AND source_hash IS NOT NULL ORDER BY key LIMIT ?3)",
        )
        .bind(flow)
        .bind(after)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err("page source hashes", e))?;
        serde_json::from_str(json.as_deref().unwrap_or("[]")).map_err(|e| self.err("decode source hashes", e))
    }

    async fn xref_keys_page(&self, flow: &str, after: &str, limit: i64) -> StoreResult<Vec<String>> {
        let json: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(key) FROM (SELECT key FROM xref WHERE flow = ?1 AND key > ?2 ORDER BY key LIMIT ?3)",
        )
        .bind(flow)
        .bind(after)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err("page cross-reference", e))?;
        serde_json::from_str(json.as_deref().unwrap_or("[]")).map_err(|e| self.err("decode cross-reference", e))
    }

    async fn xref_find(&self, key: &str) -> StoreResult<Vec<XrefRow>> {
        let rows = sqlx::query("SELECT flow, key, target_id, hash, synced_at, payload FROM xref WHERE key = ?1 OR target_id = ?1 ORDER BY flow")
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
        let mut tx = self.pool.begin().await.map_err(|e| self.err("begin batch", e))?;
        // Rows travel as bound parameters of one multi-row statement per chunk (JSON parameters made
        // SQLite parse every row's text once per column).
        for rows in batch.synced.chunks(ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO xref (flow, key, target_id, hash, payload, synced_at, source_hash) ");
            insert.push_values(rows, |mut row, s| {
                row.push_bind(flow)
                    .push_bind(&s.key)
                    .push_bind(&s.target_id)
                    .push_bind(&s.hash)
                    .push_bind(&s.payload)
                    .push_bind(&at)
                    .push_bind(&s.source_hash);
            });
            insert.push(
                " ON CONFLICT (flow, key) DO UPDATE SET target_id = excluded.target_id, hash = excluded.hash,
                     payload = excluded.payload, synced_at = excluded.synced_at, source_hash = excluded.source_hash",
            );
            insert.build().execute(&mut *tx).await.map_err(|e| self.err("record cross-reference", e))?;
        }
        if !batch.forgotten.is_empty() {
            sqlx::query("DELETE FROM xref WHERE flow = ?1 AND key IN (SELECT value FROM json_each(?2))")
                .bind(flow)
                .bind(keys_json(&batch.forgotten))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err("forget cross-reference", e))?;
        }
        if !batch.resolved.is_empty() {
            sqlx::query("DELETE FROM failures WHERE flow = ?1 AND key IN (SELECT value FROM json_each(?2))")
                .bind(flow)
                .bind(keys_json(&batch.resolved))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err("resolve failures", e))?;
        }
        for f in &batch.failed {
            let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM failures WHERE flow = ?1 AND key = ?2")
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)
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
        for rows in batch.outcomes.chunks(ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO run_records (run_id, key, outcome, target_id, field, message, changes) ");
            insert.push_values(rows, |mut row, o| {
                row.push_bind(run_id)
                    .push_bind(&o.key)
                    .push_bind(o.outcome)
                    .push_bind(&o.target_id)
                    .push_bind(&o.field)
                    .push_bind(&o.message)
                    .push_bind(o.changes.as_ref().map(|c| c.to_string()));
            });
            insert.build().execute(&mut *tx).await.map_err(|e| self.err("record run outcomes", e))?;
        }
        if let Some(cp) = &batch.checkpoint {
            sqlx::query(
                "INSERT INTO checkpoints (flow, value, updated_at) VALUES (?1, ?2, ?3)
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
                "UPDATE runs SET read = read + ?2, created = created + ?3, updated = updated + ?4,
                     unchanged = unchanged + ?5, failed = failed + ?6, retired = retired + ?7, skipped = skipped + ?8,
                     resumed = resumed + ?9, warned = warned + ?10
                 WHERE id = ?1",
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
             WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR (retryable = 1 AND next_retry_at <= ?2))
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
                    next_retry_at, source FROM failures WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err("read failure", e))?;
        row.map(|r| self.failure_row(r)).transpose()
    }

    async fn drop_failures(&self, flow: Option<&str>, ids: &[i64]) -> StoreResult<u64> {
        let ids_json = serde_json::to_string(ids).expect("ids serialise");
        let n = sqlx::query(
            "DELETE FROM failures WHERE (?1 IS NULL OR flow = ?1) AND (?2 = '[]' OR id IN (SELECT value FROM json_each(?2)))",
        )
        .bind(flow)
        .bind(ids_json)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err("drop failures", e))?
        .rows_affected();
        Ok(n)
    }
}

impl SqliteStore {
    fn failure_row(&self, r: sqlx::sqlite::SqliteRow) -> StoreResult<Failure> {
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
}

#[cfg(test)]
impl super::suite::Hooks for SqliteStore {
    async fn dropped_reason(&self, key: &str) -> Option<(String, String)> {
        sqlx::query_as("SELECT reason, dropped_by FROM dropped_failures WHERE key = ?1").bind(key).fetch_optional(&self.pool).await.unwrap()
    }
    async fn backdate_run(&self, id: i64, started_at: DateTime<Utc>) {
        sqlx::query("UPDATE runs SET started_at = ?1 WHERE id = ?2")
            .bind(started_at.to_rfc3339_opts(SecondsFormat::Micros, true))
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}
