//! [`RetentionStore`] on the embedded SQLite store (migration 0009).

use crate::store::{ts};
use super::SqliteStore;
use crate::store::StoreResult;
use crate::store::retention::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};


/// The runs a rule removes: never one still running, never the newest of its flow (what `ferry status`
/// shows). `?1`: the age cutoff or NULL; `?2`: how many to keep per flow or NULL.
const DOOMED_RUNS: &str = "WITH ranked AS (
        SELECT id, status, started_at, ROW_NUMBER() OVER (PARTITION BY flow ORDER BY id DESC) AS newest
        FROM runs
    ),
    doomed AS (
        SELECT id FROM ranked
        WHERE status <> 'running' AND newest > 1
          AND ((?1 IS NOT NULL AND started_at < ?1) OR (?2 IS NOT NULL AND newest > ?2))
    )";

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn prune_runs(&self, rule: RunsPrune, dry_run: bool) -> StoreResult<RunsPruned> {
        let cutoff = rule.older_than.map(ts);
        let keep = rule.keep_per_flow.map(i64::from);
        let err = |e| self.err("prune runs", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let count = |what: &str| format!("{DOOMED_RUNS} SELECT COUNT(*) FROM {what}");
        let runs: i64 = sqlx::query_scalar(&count("doomed")).bind(&cutoff).bind(keep).fetch_one(&mut *tx).await.map_err(err)?;
        let run_records: i64 = sqlx::query_scalar(&count("run_records WHERE run_id IN (SELECT id FROM doomed)"))
            .bind(&cutoff)
            .bind(keep)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        if !dry_run && runs > 0 {
            // Outcomes first (not left to ON DELETE CASCADE: it only acts with foreign keys enabled).
            for what in ["run_records WHERE run_id", "runs WHERE id"] {
                sqlx::query(&format!("{DOOMED_RUNS} DELETE FROM {what} IN (SELECT id FROM doomed)"))
                    .bind(&cutoff)
                    .bind(keep)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
        }
        Ok(RunsPruned { runs: runs as u64, run_records: run_records as u64 })
    }

    async fn prune_jobs(&self, finished_before: DateTime<Utc>, dry_run: bool) -> StoreResult<u64> {
        let filter = "FROM jobs WHERE status = 'succeeded' AND finished_at < ?1
                      AND id NOT IN (SELECT MAX(id) FROM jobs GROUP BY flow, kind)";
        let sql = if dry_run { format!("SELECT COUNT(*) {filter}") } else { format!("DELETE {filter} RETURNING 1") };
        let rows: Vec<i64> = sqlx::query_scalar(&sql).bind(ts(finished_before)).fetch_all(&self.pool).await.map_err(|e| self.err("prune jobs", e))?;
        Ok(if dry_run { rows.first().copied().unwrap_or(0) as u64 } else { rows.len() as u64 })
    }

    async fn prune_records(&self, rule: &RecordsPrune, dry_run: bool) -> StoreResult<u64> {
        let filter = "FROM api_records WHERE collection = ?1 AND stream = ?2 AND seq <= ?3 AND updated_at < ?4
                      AND key NOT IN (SELECT value FROM json_each(?5))";
        let sql = if dry_run { format!("SELECT COUNT(*) {filter}") } else { format!("DELETE {filter} RETURNING 1") };
        let keep = serde_json::to_string(&rule.keep_keys).expect("strings serialise");
        let rows: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(&rule.collection)
            .bind(&rule.stream)
            .bind(rule.up_to_seq)
            .bind(ts(rule.changed_before))
            .bind(keep)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(&format!("prune records {}/{}", rule.collection, rule.stream), e))?;
        Ok(if dry_run { rows.first().copied().unwrap_or(0) as u64 } else { rows.len() as u64 })
    }

    async fn log_prune(&self, started_at: DateTime<Utc>, finished_at: DateTime<Utc>, report: &serde_json::Value) -> StoreResult<()> {
        sqlx::query("INSERT INTO prunes (started_at, finished_at, report) VALUES (?1, ?2, ?3)")
            .bind(ts(started_at))
            .bind(ts(finished_at))
            .bind(report.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("log prune", e))?;
        Ok(())
    }

    async fn last_prune(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let last: Option<String> = sqlx::query_scalar("SELECT MAX(started_at) FROM prunes").fetch_one(&self.pool).await.map_err(|e| self.err("last prune", e))?;
        Ok(last.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::{JobKind, JobQueue, NewJob};
    use crate::store::records::{RecordPut, RecordQuery, RecordStore};
    use crate::store::{BatchCommit, NewFailure, RunRecord, Stage, StateStore};
    use chrono::{Duration, TimeZone};

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state.db")).await.unwrap();
        (dir, s)
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap()
    }

    /// A finished run of `flow` started on March `d`, with `records` per-record outcomes.
    async fn run(s: &SqliteStore, flow: &str, d: u32, status: &str, records: usize) -> i64 {
        let id = s.begin_run(flow, "incremental").await.unwrap();
        let outcomes = (0..records).map(|i| RunRecord { key: format!("K{i}"), outcome: "created", target_id: None, field: None, message: None, changes: None }).collect();
        s.commit_batch(flow, id, BatchCommit { outcomes, ..Default::default() }).await.unwrap();
        if status != "running" {
            s.finish_run(id, status, None).await.unwrap();
        }
        sqlx::query("UPDATE runs SET started_at = ?1 WHERE id = ?2").bind(ts(day(d))).bind(id).execute(&s.pool).await.unwrap();
        id
    }

    async fn run_ids(s: &SqliteStore) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM runs ORDER BY id").fetch_all(&s.pool).await.unwrap()
    }

    #[tokio::test]
    async fn old_runs_go_with_their_records_but_not_the_newest_of_a_flow_or_a_running_one() {
        let (_d, s) = store().await;
        let old = run(&s, "products", 1, "ok", 3).await;
        let running = run(&s, "products", 2, "running", 1).await;
        let recent = run(&s, "products", 20, "failed_records", 2).await;
        let only = run(&s, "stock", 1, "ok", 1).await; // old, but the newest of its flow
        let rule = RunsPrune { older_than: Some(day(10)), keep_per_flow: None };

        let dry = s.prune_runs(rule, true).await.unwrap();
        assert_eq!(dry, RunsPruned { runs: 1, run_records: 3 });
        assert_eq!(run_ids(&s).await, [old, running, recent, only], "a dry run removes nothing");

        assert_eq!(s.prune_runs(rule, false).await.unwrap(), dry);
        assert_eq!(run_ids(&s).await, [running, recent, only]);
        assert!(s.run_records(old).await.unwrap().is_empty());
        assert_eq!(s.run_records(recent).await.unwrap().len(), 2);
        assert_eq!(s.prune_runs(rule, false).await.unwrap(), RunsPruned::default(), "nothing left to prune");
    }

    #[tokio::test]
    async fn runs_beyond_the_count_go_whatever_their_age() {
        let (_d, s) = store().await;
        let mut ids = Vec::new();
        for d in 20..26 {
            ids.push(run(&s, "products", d, "ok", 1).await);
        }
        let other = run(&s, "stock", 20, "ok", 0).await;
        let pruned = s.prune_runs(RunsPrune { older_than: None, keep_per_flow: Some(2) }, false).await.unwrap();
        assert_eq!(pruned, RunsPruned { runs: 4, run_records: 4 });
        assert_eq!(run_ids(&s).await, [ids[4], ids[5], other]);
        // no rule at all prunes nothing
        assert_eq!(s.prune_runs(RunsPrune::default(), false).await.unwrap(), RunsPruned::default());
    }

    /// A job of `flow` enqueued, claimed and finished (succeeded or failed) on March `d`.
    async fn finish(s: &SqliteStore, flow: &str, kind: JobKind, d: u32, ok: bool) -> i64 {
        let lease = std::time::Duration::from_secs(60);
        let id = s.enqueue(NewJob::new(flow, kind, day(d))).await.unwrap().id;
        assert_eq!(s.claim("w", lease, day(d)).await.unwrap().unwrap().id, id);
        if ok {
            s.complete(id, "w", None, day(d)).await.unwrap();
        } else {
            s.fail(id, "w", None, "boom", None, day(d)).await.unwrap();
        }
        id
    }

    #[tokio::test]
    async fn succeeded_jobs_go_after_their_age_but_failed_ones_and_each_flows_newest_stay() {
        let (_d, s) = store().await;
        let old_ok = finish(&s, "products", JobKind::Scheduled, 1, true).await;
        let old_failed = finish(&s, "products", JobKind::Scheduled, 2, false).await;
        let newest_scheduled = finish(&s, "products", JobKind::Scheduled, 3, true).await;
        let old_webhook = finish(&s, "products", JobKind::Webhook, 1, true).await;
        let newest_webhook = finish(&s, "products", JobKind::Webhook, 2, true).await;
        let recent = finish(&s, "stock", JobKind::Manual, 20, true).await;

        assert_eq!(s.prune_jobs(day(10), true).await.unwrap(), 2);
        assert_eq!(s.prune_jobs(day(10), false).await.unwrap(), 2);
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY id").fetch_all(&s.pool).await.unwrap();
        assert_eq!(left, [old_failed, newest_scheduled, newest_webhook, recent]);
        assert!(!left.contains(&old_ok) && !left.contains(&old_webhook));
    }

    #[tokio::test]
    async fn pushed_records_go_once_read_and_old_unless_a_failure_holds_them() {
        let (_d, s) = store().await;
        let put = |k: &str| RecordPut { key: k.into(), hash: k.into(), payload: serde_json::json!({"number": k}) };
        s.put_records("web", "orders", vec![put("A"), put("B"), put("C")], day(1)).await.unwrap();
        s.put_records("web", "orders", vec![put("D")], day(20)).await.unwrap();
        s.put_records("other", "orders", vec![put("A")], day(1)).await.unwrap();
        let all = s.get_records("web", "orders", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap();
        let seq = |k: &str| all.iter().find(|r| r.key == k).unwrap().seq;
        // the consuming flow has read up to C; B has an open failure
        s.commit_batch(
            "orders",
            s.begin_run("orders", "incremental").await.unwrap(),
            BatchCommit {
                failed: vec![NewFailure { key: "B".into(), position: None, stage: Stage::Write, field: None, message: "refused".into(), retryable: false, source: serde_json::json!({}) }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let rule = RecordsPrune {
            collection: "web".into(),
            stream: "orders".into(),
            up_to_seq: seq("C").max(seq("D")),
            changed_before: day(10),
            keep_keys: vec!["B".into()],
        };
        assert_eq!(s.prune_records(&rule, true).await.unwrap(), 2);
        assert_eq!(s.prune_records(&rule, false).await.unwrap(), 2);
        let left: Vec<String> = s.get_records("web", "orders", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(left, ["B", "D"], "B has an open failure, D is recent");
        assert_eq!(s.get_records("other", "orders", &RecordQuery { limit: 10, ..Default::default() }).await.unwrap().len(), 1, "other collections untouched");
        // not read yet: nothing goes
        let unread = RecordsPrune { up_to_seq: 0, keep_keys: vec![], ..rule };
        assert_eq!(s.prune_records(&unread, false).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_last_prune_is_remembered() {
        let (_d, s) = store().await;
        assert_eq!(s.last_prune().await.unwrap(), None);
        s.log_prune(day(1), day(1) + Duration::seconds(3), &serde_json::json!({"runs": 1})).await.unwrap();
        s.log_prune(day(2), day(2) + Duration::seconds(3), &serde_json::json!({"runs": 0})).await.unwrap();
        assert_eq!(s.last_prune().await.unwrap(), Some(day(2)));
    }
}
