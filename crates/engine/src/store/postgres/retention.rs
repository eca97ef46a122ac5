//! [`RetentionStore`] on PostgreSQL.

use crate::store::{ts};
use super::PgStore;
use crate::store::StoreResult;
use crate::store::retention::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};


/// The runs a rule removes: never one still running, never the newest of its flow. `$1`: the age cutoff
/// or NULL; `$2`: how many to keep per flow or NULL.
const DOOMED_RUNS: &str = "WITH ranked AS (
        SELECT id, status, started_at, ROW_NUMBER() OVER (PARTITION BY flow ORDER BY id DESC) AS newest
        FROM runs
    ),
    doomed AS (
        SELECT id FROM ranked
        WHERE status <> 'running' AND newest > 1
          AND (($1::text IS NOT NULL AND started_at < $1) OR ($2::bigint IS NOT NULL AND newest > $2))
    )";

#[async_trait]
impl RetentionStore for PgStore {
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
        let filter = "FROM jobs WHERE status = 'succeeded' AND finished_at < $1
                      AND id NOT IN (SELECT MAX(id) FROM jobs GROUP BY flow, kind)";
        let sql = if dry_run { format!("SELECT COUNT(*) {filter}") } else { format!("DELETE {filter} RETURNING 1::bigint") };
        let rows: Vec<i64> = sqlx::query_scalar(&sql).bind(ts(finished_before)).fetch_all(&self.pool).await.map_err(|e| self.err("prune jobs", e))?;
        Ok(if dry_run { rows.first().copied().unwrap_or(0) as u64 } else { rows.len() as u64 })
    }

    async fn prune_records(&self, rule: &RecordsPrune, dry_run: bool) -> StoreResult<u64> {
        let filter = "FROM api_records WHERE collection = $1 AND stream = $2 AND seq <= $3 AND updated_at < $4
                      AND key <> ALL($5)";
        let sql = if dry_run { format!("SELECT COUNT(*) {filter}") } else { format!("DELETE {filter} RETURNING 1::bigint") };
        let rows: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(&rule.collection)
            .bind(&rule.stream)
            .bind(rule.up_to_seq)
            .bind(ts(rule.changed_before))
            .bind(&rule.keep_keys)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(&format!("prune records {}/{}", rule.collection, rule.stream), e))?;
        Ok(if dry_run { rows.first().copied().unwrap_or(0) as u64 } else { rows.len() as u64 })
    }

    async fn log_prune(&self, started_at: DateTime<Utc>, finished_at: DateTime<Utc>, report: &serde_json::Value) -> StoreResult<()> {
        sqlx::query("INSERT INTO prunes (started_at, finished_at, report) VALUES ($1, $2, $3)")
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
