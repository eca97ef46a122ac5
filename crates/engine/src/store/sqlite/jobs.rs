//! [`JobQueue`] on the embedded SQLite store (migration 0002_jobs.sql).

use crate::store::{ts};
use super::SqliteStore;
use crate::store::StoreResult;
use crate::store::jobs::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::time::Duration;


fn plus(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

const COLUMNS: &str = "id, flow, kind, keys, options, status, attempts, max_attempts, run_after, lease_holder, lease_until,
    dedupe_key, run_id, error, created_at, updated_at, started_at, finished_at";

impl SqliteStore {
    fn job_row(&self, r: SqliteRow) -> StoreResult<Job> {
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
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Enqueued> {
        let now = ts(Utc::now());
        let keys = job.keys.as_ref().map(|k| serde_json::to_string(k).expect("strings serialise"));
        let options = serde_json::to_string(&job.options).expect("options serialise");
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (flow, kind, keys, options, status, max_attempts, run_after, dedupe_key, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?8)
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
        let id: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = ?1")
            .bind(&job.dedupe_key)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err("enqueue job (existing dedupe key)", e))?;
        Ok(Enqueued { id, created: false })
    }

    async fn claim(&self, holder: &str, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Job>> {
        // One statement: SQLite runs one writer at a time, so the sub-select and the update cannot
        // interleave with another worker's claim. A flow with a live running job is skipped (its run holds
        // the flow lease; a second would only fail on it).
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', lease_holder = ?1, lease_until = ?2, attempts = attempts + 1,
                    started_at = ?3, updated_at = ?3, error = NULL
             WHERE id = (
                 SELECT j.id FROM jobs j
                 WHERE ((j.status = 'queued' AND j.run_after <= ?3) OR (j.status = 'running' AND j.lease_until < ?3))
                   AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.flow = j.flow AND r.status = 'running'
                                   AND r.lease_until >= ?3 AND r.id <> j.id)
                 ORDER BY j.run_after, j.id LIMIT 1)
             RETURNING {COLUMNS}"
        ))
        .bind(holder)
        .bind(ts(plus(now, lease)))
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err("claim job", e))?;
        row.map(|r| self.job_row(r)).transpose()
    }

    async fn claim_targeted(&self, flow: &str, holder: &str, lease: Duration, now: DateTime<Utc>, max_jobs: usize) -> StoreResult<Vec<Job>> {
        if max_jobs == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', lease_holder = ?2, lease_until = ?3, attempts = attempts + 1,
                    started_at = ?4, updated_at = ?4, error = NULL
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE flow = ?1 AND status = 'queued' AND run_after <= ?4 AND kind = 'webhook'
                   AND keys IS NOT NULL AND options = '{{}}'
                 ORDER BY run_after, id LIMIT ?5)
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
        let n = sqlx::query("UPDATE jobs SET lease_until = ?3, updated_at = ?4 WHERE id = ?1 AND status = 'running' AND lease_holder = ?2")
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
            "UPDATE jobs SET status = 'succeeded', lease_holder = NULL, lease_until = NULL, run_id = ?3, error = NULL,
                    finished_at = ?4, updated_at = ?4
             WHERE id = ?1 AND status = 'running' AND lease_holder = ?2",
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
            "UPDATE jobs SET status = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'queued' END,
                    run_after = COALESCE(?4, run_after), lease_holder = NULL, lease_until = NULL, run_id = ?5,
                    error = ?3, updated_at = ?6, finished_at = CASE WHEN ?4 IS NULL THEN ?6 ELSE NULL END
             WHERE id = ?1 AND status = 'running' AND lease_holder = ?2",
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
            "UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0), lease_holder = NULL, lease_until = NULL,
                    run_after = ?3, updated_at = ?3
             WHERE id = ?1 AND status = 'running' AND lease_holder = ?2",
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
            "UPDATE jobs SET status = 'queued', attempts = 0, run_after = ?2, updated_at = ?2, finished_at = NULL
             WHERE id = ?1 AND status = 'failed'",
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
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(&format!("read job {id}"), e))?;
        row.map(|r| self.job_row(r)).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3"
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
            "SELECT COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'queued' AND run_after <= ?1), 0),
                    COALESCE(SUM(status = 'running'), 0), COALESCE(SUM(status = 'failed'), 0)
             FROM jobs WHERE status IN ('queued', 'running', 'failed')",
        )
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err("queue depth", e))?;
        Ok(QueueDepth { queued: r.get(0), due: r.get(1), running: r.get(2), failed: r.get(3) })
    }

    async fn latest_dedupe_run_after(&self, prefix: &str) -> StoreResult<Option<DateTime<Utc>>> {
        // Range scan on the UNIQUE index instead of LIKE (no escaping of `_`/`%` in flow names).
        let upper = format!("{prefix}\u{10FFFF}");
        // Keys end with their fixed-width instant: the greatest key names the latest firing.
        let key: Option<String> = sqlx::query_scalar("SELECT MAX(dedupe_key) FROM jobs WHERE dedupe_key >= ?1 AND dedupe_key < ?2")
            .bind(prefix)
            .bind(upper)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err("read schedule mark", e))?;
        key.map(|k| instant_of_key(prefix, &k).ok_or_else(|| self.err("decode schedule mark", format!("dedupe key {k:?} does not end with an RFC 3339 instant"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state.db")).await.unwrap();
        (dir, s)
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }
    const LEASE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn dedupe_key_enqueues_once() {
        let (_d, s) = store().await;
        let mut job = NewJob::new("products", JobKind::Scheduled, t0());
        job.dedupe_key = Some("schedule:products:2026-03-01T12:00:00Z".into());
        let a = s.enqueue(job.clone()).await.unwrap();
        let b = s.enqueue(job).await.unwrap();
        assert!(a.created && !b.created);
        assert_eq!(a.id, b.id);
        assert_eq!(s.jobs(&JobFilter::default()).await.unwrap().len(), 1);
        assert_eq!(s.latest_dedupe_run_after("schedule:products:").await.unwrap(), Some(t0()));
        assert_eq!(s.latest_dedupe_run_after("schedule:product:").await.unwrap(), None);
    }

    #[tokio::test]
    async fn targeted_jobs_of_the_claimed_flow_coalesce_into_one_lease_and_others_do_not() {
        let (_d, s) = store().await;
        let hook = |key: &str| {
            let mut j = NewJob::new("products", JobKind::Webhook, t0());
            j.keys = Some(vec![key.into()]);
            j
        };
        for k in ["A", "B", "C", "D"] {
            s.enqueue(hook(k)).await.unwrap();
        }
        s.enqueue(NewJob::new("products", JobKind::Manual, t0())).await.unwrap(); // whole flow: not merged
        let mut later = hook("LATER");
        later.run_after = t0() + chrono::Duration::seconds(30);
        s.enqueue(later).await.unwrap(); // not due
        let mut other = hook("X");
        other.flow = "stock".into();
        s.enqueue(other).await.unwrap(); // another flow
        let first = s.claim("w1", LEASE, t0()).await.unwrap().unwrap();
        assert_eq!(first.keys, Some(vec!["A".to_string()]));
        let more = s.claim_targeted("products", "w1", LEASE, t0(), 2).await.unwrap();
        assert_eq!(more.iter().map(|j| j.keys.clone().unwrap()[0].clone()).collect::<Vec<_>>(), ["B", "C"]);
        assert!(more.iter().all(|j| j.status == JobStatus::Running && j.lease_holder.as_deref() == Some("w1") && j.attempts == 1));
        let rest = s.claim_targeted("products", "w1", LEASE, t0(), 100).await.unwrap();
        assert_eq!(rest.iter().map(|j| j.keys.clone().unwrap()[0].clone()).collect::<Vec<_>>(), ["D"]);
        // The flow is busy: another worker gets the other flow's job, not the manual one.
        assert_eq!(s.claim("w2", LEASE, t0()).await.unwrap().unwrap().flow, "stock");
        assert!(s.claim("w2", LEASE, t0()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn claim_respects_run_after_and_one_running_job_per_flow() {
        let (_d, s) = store().await;
        let mut later = NewJob::new("stock", JobKind::Manual, t0() + chrono::Duration::seconds(30));
        later.keys = Some(vec!["SKU-1".into()]);
        s.enqueue(later).await.unwrap();
        s.enqueue(NewJob::new("products", JobKind::Manual, t0())).await.unwrap();
        s.enqueue(NewJob::new("products", JobKind::Webhook, t0())).await.unwrap();

        let first = s.claim("w1", LEASE, t0()).await.unwrap().unwrap();
        assert_eq!((first.flow.as_str(), first.attempts, first.status), ("products", 1, JobStatus::Running));
        // The second products job waits for the first; the stock job is not due yet.
        assert!(s.claim("w2", LEASE, t0()).await.unwrap().is_none());
        let stock = s.claim("w2", LEASE, t0() + chrono::Duration::seconds(30)).await.unwrap().unwrap();
        assert_eq!(stock.keys, Some(vec!["SKU-1".to_string()]));
        assert!(s.complete(first.id, "w1", Some(7), t0()).await.unwrap());
        let second = s.claim("w2", LEASE, t0()).await.unwrap().unwrap();
        assert_eq!(second.kind, JobKind::Webhook);
        let done = s.job(first.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.run_id), (JobStatus::Succeeded, Some(7)));
    }

    #[tokio::test]
    async fn an_expired_lease_is_claimed_again_and_the_dead_worker_can_no_longer_finish_it() {
        let (_d, s) = store().await;
        let id = s.enqueue(NewJob::new("orders", JobKind::Manual, t0())).await.unwrap().id;
        let a = s.claim("dead-worker", LEASE, t0()).await.unwrap().unwrap();
        assert!(s.heartbeat(id, "dead-worker", LEASE, t0() + chrono::Duration::seconds(30)).await.unwrap());
        // Lease runs until t0+90s; before that nobody else gets it.
        assert!(s.claim("w2", LEASE, t0() + chrono::Duration::seconds(89)).await.unwrap().is_none());
        let b = s.claim("w2", LEASE, t0() + chrono::Duration::seconds(91)).await.unwrap().unwrap();
        assert_eq!((a.id, b.id, b.attempts), (id, id, 2));
        // The old holder's late heartbeat or completion is refused: the job is w2's now.
        assert!(!s.heartbeat(id, "dead-worker", LEASE, t0() + chrono::Duration::seconds(92)).await.unwrap());
        assert!(!s.complete(id, "dead-worker", None, t0() + chrono::Duration::seconds(92)).await.unwrap());
        assert!(s.complete(id, "w2", None, t0() + chrono::Duration::seconds(93)).await.unwrap());
    }

    #[tokio::test]
    async fn fail_with_retry_requeues_and_without_fails_for_good_and_release_does_not_count() {
        let (_d, s) = store().await;
        let id = s.enqueue(NewJob::new("orders", JobKind::Manual, t0())).await.unwrap().id;
        s.claim("w", LEASE, t0()).await.unwrap().unwrap();
        let retry_at = t0() + chrono::Duration::seconds(30);
        assert!(s.fail(id, "w", Some(3), "tryton: connection refused", Some(retry_at), t0()).await.unwrap());
        let j = s.job(id).await.unwrap().unwrap();
        assert_eq!((j.status, j.run_after, j.error.as_deref()), (JobStatus::Queued, retry_at, Some("tryton: connection refused")));
        assert!(s.claim("w", LEASE, t0()).await.unwrap().is_none());
        let j = s.claim("w", LEASE, retry_at).await.unwrap().unwrap();
        assert_eq!(j.attempts, 2);
        assert!(s.release(id, "w", retry_at).await.unwrap());
        assert_eq!(s.job(id).await.unwrap().unwrap().attempts, 1);
        s.claim("w", LEASE, retry_at).await.unwrap().unwrap();
        assert!(s.fail(id, "w", None, "bad mapping", None, retry_at).await.unwrap());
        let depth = s.queue_depth(retry_at).await.unwrap();
        assert_eq!(depth, QueueDepth { queued: 0, due: 0, running: 0, failed: 1 });
        assert!(s.requeue(id, retry_at).await.unwrap());
        assert_eq!(s.queue_depth(retry_at).await.unwrap().due, 1);
    }
}
