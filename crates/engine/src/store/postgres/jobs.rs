//! [`JobQueue`] on PostgreSQL: many workers in many processes claim from one table.
//!
//! A claim is one short transaction: the first due job no other worker holds (`FOR UPDATE SKIP LOCKED`:
//! concurrent claimers pass over each other's rows instead of queueing behind them), then a
//! transaction-level advisory lock on the job's flow and a second look for a live running job of that flow.
//! Without the flow lock, two workers could each claim a different job of one flow in the same instant
//! (neither sees the other's uncommitted claim); the second run would only fail on the flow lease and
//! spend an attempt. A flow whose lock is taken is skipped for this claim, not waited for.
//!
//! Idle workers wait on `LISTEN ferry_jobs.<schema>` (a trigger on `jobs` notifies, migration 0001), so a
//! job enqueued by any process starts within milliseconds; polling stays as the fallback.

use crate::store::{ts};
use super::PgStore;
use crate::store::StoreResult;
use crate::store::jobs::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use std::time::Duration;
use tokio::sync::watch;


fn plus(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

const COLUMNS: &str = "id, flow, kind, keys, options, status, attempts, max_attempts, run_after, lease_holder, lease_until,
    dedupe_key, run_id, error, created_at, updated_at, started_at, finished_at";

impl PgStore {
    fn job_row(&self, r: PgRow) -> StoreResult<Job> {
        let time = |i: usize| -> StoreResult<Option<DateTime<Utc>>> {
            r.get::<Option<String>, _>(i)
                .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| self.err("decode job time", e)))
                .transpose()
        };
        let kind: String = r.get(2);
        let status: String = r.get(5);
        Ok(Job {
            id: r.get(0),
            flow: r.get(1),
            kind: JobKind::parse(&kind).ok_or_else(|| self.err("decode job", format!("unknown kind {kind:?}")))?,
            keys: r.get::<Option<String>, _>(3).map(|k| serde_json::from_str(&k)).transpose().map_err(|e| self.err("decode job keys", e))?,
            options: serde_json::from_str(r.get::<&str, _>(4)).map_err(|e| self.err("decode job options", e))?,
            status: JobStatus::parse(&status).ok_or_else(|| self.err("decode job", format!("unknown status {status:?}")))?,
            attempts: r.get::<i64, _>(6) as u32,
            max_attempts: r.get::<i64, _>(7) as u32,
            run_after: time(8)?.unwrap_or_default(),
            lease_holder: r.get(9),
            lease_until: time(10)?,
            dedupe_key: r.get(11),
            run_id: r.get(12),
            error: r.get(13),
            created_at: time(14)?.unwrap_or_default(),
            updated_at: time(15)?.unwrap_or_default(),
            started_at: time(16)?,
            finished_at: time(17)?,
        })
    }

    /// The notification channel of this store's schema (the trigger's `'ferry_jobs.' || TG_TABLE_SCHEMA`).
    pub fn job_channel(&self) -> String {
        format!("ferry_jobs.{}", self.schema)
    }

    /// Counts the job notifications of this schema, from any process: a worker that saw value N and
    /// found no job waits for a change, so a notification between its claim and its wait is not lost. The
    /// first call starts one listening task on a connection of its own, which listens again after a lost
    /// connection and ends once the store and every receiver are gone.
    pub fn job_signal(&self) -> watch::Receiver<u64> {
        self.signal
            .get_or_init(|| {
                let (tx, rx) = watch::channel(0);
                tokio::spawn(listen(self.options.clone(), self.job_channel(), tx));
                rx
            })
            .clone()
    }
}

async fn listen(options: PgConnectOptions, channel: String, tx: watch::Sender<u64>) {
    loop {
        let listening = async {
            let pool = PgPoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None).connect_lazy_with(options.clone());
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            // What was enqueued while nobody listened is found by the next claim.
            tx.send_modify(|n| *n += 1);
            loop {
                listener.recv().await?;
                tx.send_modify(|n| *n += 1);
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = tx.closed() => return,
            r = listening => if let Err(e) = r {
                tracing::warn!(channel = %channel, error = %e, "job notifications lost; listening again in 1s (workers poll meanwhile)");
            },
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Enqueued> {
        let now = ts(Utc::now());
        let keys = job.keys.as_ref().map(|k| serde_json::to_string(k).expect("strings serialise"));
        let options = serde_json::to_string(&job.options).expect("options serialise");
        // A concurrent insert of the same dedupe key makes this one wait for it and then do nothing.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (flow, kind, keys, options, status, max_attempts, run_after, dedupe_key, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $8)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&job.flow)
        .bind(job.kind.as_str())
        .bind(keys)
        .bind(options)
        .bind(job.max_attempts.max(1) as i64)
        .bind(ts(job.run_after))
        .bind(&job.dedupe_key)
        .bind(&now)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(&format!("enqueue job of flow {}", job.flow), e))?;
        if let Some(id) = inserted {
            return Ok(Enqueued { id, created: true });
        }
        let id: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1")
            .bind(&job.dedupe_key)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err("enqueue job (existing dedupe key)", e))?;
        Ok(Enqueued { id, created: false })
    }

    async fn claim(&self, holder: &str, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Job>> {
        let err = |e: sqlx::Error| self.err("claim job", e);
        let at = ts(now);
        // Flows found busy in this claim (another worker is claiming or running them): not offered again.
        let mut busy_flows: Vec<String> = Vec::new();
        loop {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let candidate: Option<(i64, String)> = sqlx::query_as(
                "SELECT j.id, j.flow FROM jobs j
                 WHERE ((j.status = 'queued' AND j.run_after <= $1) OR (j.status = 'running' AND j.lease_until < $1))
                   AND NOT (j.flow = ANY($2))
                   AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.flow = j.flow AND r.status = 'running'
                                   AND r.lease_until >= $1 AND r.id <> j.id)
                 ORDER BY j.run_after, j.id
                 LIMIT 1
                 FOR UPDATE OF j SKIP LOCKED",
            )
            .bind(&at)
            .bind(&busy_flows)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            // Roll back explicitly: a transaction merely dropped is rolled back only when its connection
            // is next used, and would hold its locks (the candidate's row) until then.
            let Some((id, flow)) = candidate else {
                tx.rollback().await.map_err(err)?;
                return Ok(None);
            };
            // Two statements, not one: a statement sees the data as of its start, so the look for a running
            // job must start after the lock is held to see a claim committed just before.
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended('ferry.claim.' || current_schema() || '.' || $1, 0))")
                .bind(&flow)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
            let flow_free = locked
                && !sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM jobs WHERE flow = $1 AND status = 'running' AND lease_until >= $2 AND id <> $3)")
                    .bind(&flow)
                    .bind(&at)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
            if !flow_free {
                tx.rollback().await.map_err(err)?;
                busy_flows.push(flow);
                continue;
            }
            let row = sqlx::query(&format!(
                "UPDATE jobs SET status = 'running', lease_holder = $2, lease_until = $3, attempts = attempts + 1,
                        started_at = $4, updated_at = $4, error = NULL
                 WHERE id = $1 RETURNING {COLUMNS}"
            ))
            .bind(id)
            .bind(holder)
            .bind(ts(plus(now, lease)))
            .bind(&at)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            return self.job_row(row).map(Some);
        }
    }

    async fn claim_targeted(&self, flow: &str, holder: &str, lease: Duration, now: DateTime<Utc>, max_jobs: usize) -> StoreResult<Vec<Job>> {
        if max_jobs == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', lease_holder = $2, lease_until = $3, attempts = attempts + 1,
                    started_at = $4, updated_at = $4, error = NULL
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE flow = $1 AND status = 'queued' AND run_after <= $4 AND kind = 'webhook'
                   AND keys IS NOT NULL AND options = '{{}}'
                 ORDER BY run_after, id LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        ))
        .bind(flow)
        .bind(holder)
        .bind(ts(plus(now, lease)))
        .bind(ts(now))
        .bind(max_jobs as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(&format!("claim targeted jobs of flow {flow}"), e))?;
        let mut jobs = rows.into_iter().map(|r| self.job_row(r)).collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn heartbeat(&self, id: i64, holder: &str, lease: Duration, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE jobs SET lease_until = $3, updated_at = $4 WHERE id = $1 AND status = 'running' AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .bind(ts(plus(now, lease)))
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("heartbeat job {id}"), e))?
            .rows_affected();
        Ok(n == 1)
    }

    async fn complete(&self, id: i64, holder: &str, run_id: Option<i64>, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', lease_holder = NULL, lease_until = NULL, run_id = $3, error = NULL,
                    finished_at = $4, updated_at = $4
             WHERE id = $1 AND status = 'running' AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .bind(run_id)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(&format!("complete job {id}"), e))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn fail(&self, id: i64, holder: &str, run_id: Option<i64>, error: &str, retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET status = CASE WHEN $4::text IS NULL THEN 'failed' ELSE 'queued' END,
                    run_after = COALESCE($4, run_after), lease_holder = NULL, lease_until = NULL, run_id = $5,
                    error = $3, updated_at = $6, finished_at = CASE WHEN $4::text IS NULL THEN $6 ELSE NULL END
             WHERE id = $1 AND status = 'running' AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .bind(error)
        .bind(retry_at.map(ts))
        .bind(run_id)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(&format!("fail job {id}"), e))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn release(&self, id: i64, holder: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = GREATEST(attempts - 1, 0), lease_holder = NULL, lease_until = NULL,
                    run_after = $3, updated_at = $3
             WHERE id = $1 AND status = 'running' AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(&format!("release job {id}"), e))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn requeue(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_after = $2, updated_at = $2, finished_at = NULL
             WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(&format!("requeue job {id}"), e))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn job(&self, id: i64) -> StoreResult<Option<Job>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(&format!("read job {id}"), e))?;
        row.map(|r| self.job_row(r)).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR flow = $1) AND ($2::text IS NULL OR status = $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(&filter.flow)
        .bind(filter.status.map(|s| s.as_str()))
        .bind(if filter.limit > 0 { filter.limit } else { 100 })
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("list jobs", e))?;
        rows.into_iter().map(|r| self.job_row(r)).collect()
    }

    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth> {
        let r = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'queued'), COUNT(*) FILTER (WHERE status = 'queued' AND run_after <= $1),
                    COUNT(*) FILTER (WHERE status = 'running'), COUNT(*) FILTER (WHERE status = 'failed')
             FROM jobs WHERE status IN ('queued', 'running', 'failed')",
        )
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err("queue depth", e))?;
        Ok(QueueDepth { queued: r.get(0), due: r.get(1), running: r.get(2), failed: r.get(3) })
    }

    async fn latest_dedupe_run_after(&self, prefix: &str) -> StoreResult<Option<DateTime<Utc>>> {
        // Range scan on the UNIQUE (bytewise-collated) index, as on SQLite.
        let upper = format!("{prefix}\u{10FFFF}");
        // Keys end with their fixed-width instant: the greatest key names the latest firing.
        let key: Option<String> = sqlx::query_scalar("SELECT MAX(dedupe_key) FROM jobs WHERE dedupe_key >= $1 AND dedupe_key < $2")
            .bind(prefix)
            .bind(upper)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err("read schedule mark", e))?;
        key.map(|k| instant_of_key(prefix, &k).ok_or_else(|| self.err("decode schedule mark", format!("dedupe key {k:?} does not end with an RFC 3339 instant"))))
            .transpose()
    }
}
