//! [`DashboardStore`] on PostgreSQL (migration 0003): the SQLite statements with `$n` parameters, text
//! arrays (`ANY`, `unnest`) where SQLite reads a JSON array, and `seq` where SQLite pages by rowid.

use crate::store::{ts};
use super::keys::key_row;
use super::{PgStore, RUN_COLUMNS, run_row};
use crate::store::dashboard::*;
use crate::store::keys::ApiKey;
use crate::store::{Failure, RunRow, StoreResult, XrefRow};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;


const FAILURE_COLUMNS: &str =
    "id, flow, key, position, stage, field, message, retryable, attempts, first_failed_at, last_failed_at, next_retry_at, source";

#[async_trait]
impl DashboardStore for PgStore {
    async fn last_runs(&self, flows: &[String]) -> StoreResult<HashMap<String, RunRow>> {
        // One statement; per flow, MAX(id) is one probe of `runs_by_flow (flow, id)`, never a scan.
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN
               (SELECT (SELECT MAX(id) FROM runs r WHERE r.flow = f.value) FROM unnest($1::text[]) AS f(value))"
        );
        let rows = sqlx::query(&sql)
            .bind(flows)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("read last runs", e))?;
        Ok(rows.iter().map(run_row).map(|r| (r.flow.clone(), r)).collect())
    }

    async fn open_failures_by_flow(&self) -> StoreResult<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT flow, COUNT(*) FROM failures GROUP BY flow")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("count failures", e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn queue_by_flow(&self) -> StoreResult<HashMap<String, FlowQueue>> {
        // `jobs_claim (status, …)`: only queued and running rows are visited, not the finished history.
        let rows = sqlx::query(
            "SELECT flow, SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END)
             FROM jobs WHERE status IN ('queued', 'running') GROUP BY flow",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("count queued jobs", e))?;
        Ok(rows.iter().map(|r| (r.get(0), FlowQueue { queued: r.get(1), running: r.get(2) })).collect())
    }

    async fn runs_page(&self, flow: &str, before: Option<i64>, limit: i64) -> StoreResult<Vec<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE flow = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
        let rows = sqlx::query(&sql)
            .bind(flow)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("page runs", e))?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn run(&self, id: i64) -> StoreResult<Option<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.map_err(|e| self.err("read run", e))?;
        Ok(row.as_ref().map(run_row))
    }

    async fn run_records_page(&self, run_id: i64, after: Option<i64>, limit: i64) -> StoreResult<Vec<RunRecordRow>> {
        // seq (an identity column) is the commit order.
        let rows = sqlx::query(
            "SELECT seq, key, outcome, target_id, field, message, changes FROM run_records
             WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("page run records", e))?;
        Ok(rows
            .iter()
            .map(|r| RunRecordRow {
                seq: r.get(0),
                key: r.get(1),
                outcome: r.get(2),
                target_id: r.get(3),
                field: r.get(4),
                message: r.get(5),
                changes: r.get::<Option<&str>, _>(6).and_then(|c| serde_json::from_str(c).ok()),
            })
            .collect())
    }

    async fn failure_groups(&self, limit: i64) -> StoreResult<Vec<FailureGroup>> {
        // The group's oldest failure (its smallest id) gives the sample message, joined in one statement.
        let rows = sqlx::query(
            "SELECT g.flow, g.stage, g.field, g.n, f.message, g.last_failed_at FROM
               (SELECT flow, stage, COALESCE(field, '') AS field, COUNT(*) AS n, MIN(id) AS first_id, MAX(last_failed_at) AS last_failed_at
                FROM failures GROUP BY flow, stage, COALESCE(field, '') ORDER BY COUNT(*) DESC, flow, stage LIMIT $1) g
             JOIN failures f ON f.id = g.first_id
             ORDER BY g.n DESC, g.flow, g.stage",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("group failures", e))?;
        Ok(rows
            .iter()
            .map(|r| FailureGroup { flow: r.get(0), stage: r.get(1), field: r.get(2), count: r.get(3), sample_message: r.get(4), last_failed_at: r.get(5) })
            .collect())
    }

    async fn failures_page(&self, group: &GroupKey, after: Option<i64>, limit: i64) -> StoreResult<Vec<Failure>> {
        let sql = format!(
            "SELECT {FAILURE_COLUMNS} FROM failures WHERE flow = $1 AND stage = $2 AND COALESCE(field, '') = $3 AND id > $4 ORDER BY id LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(&group.flow)
            .bind(&group.stage)
            .bind(&group.field)
            .bind(after.unwrap_or(0))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("page failures", e))?;
        rows.into_iter().map(|r| self.failure_row(r)).collect()
    }

    async fn set_failure_source(&self, id: i64, source: &serde_json::Value) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE failures SET source = $2 WHERE id = $1")
            .bind(id)
            .bind(source.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("edit failure {id}"), e))?
            .rows_affected();
        Ok(n == 1)
    }

    async fn drop_failure_with_reason(&self, id: i64, reason: &str, by: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let err = |e: sqlx::Error| self.err(&format!("drop failure {id}"), e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The delete first: it takes the write lock, and a failure dropped twice at once is kept once.
        let row = sqlx::query("DELETE FROM failures WHERE id = $1 RETURNING flow, key, stage, field, message, source")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let Some(r) = row else { return Ok(false) };
        sqlx::query(
            "INSERT INTO dropped_failures (failure_id, flow, key, stage, field, message, source, reason, dropped_by, dropped_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(r.get::<String, _>(0))
        .bind(r.get::<String, _>(1))
        .bind(r.get::<String, _>(2))
        .bind(r.get::<Option<String>, _>(3))
        .bind(r.get::<String, _>(4))
        .bind(r.get::<String, _>(5))
        .bind(reason)
        .bind(by)
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn find_record(&self, flows: &[String], key: &str) -> StoreResult<Vec<XrefRow>> {
        let mut out = Vec::new();
        let decode = |r: &sqlx::postgres::PgRow| XrefRow {
            flow: r.get(0),
            key: r.get(1),
            target_id: r.get(2),
            hash: r.get(3),
            synced_at: r.get(4),
            payload: r.get::<Option<&str>, _>(5).and_then(|p| serde_json::from_str(p).ok()),
        };
        // By source key: one probe of the (flow, key) index per flow, in one statement.
        let rows = sqlx::query(
            "SELECT flow, key, target_id, hash, synced_at, payload FROM xref
             WHERE key = $1 AND flow = ANY($2) ORDER BY flow",
        )
        .bind(key)
        .bind(flows)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("find record", e))?;
        out.extend(rows.iter().map(decode));
        // By target id (`xref_by_target`); a record whose key and target id are equal is listed once.
        let rows = sqlx::query("SELECT flow, key, target_id, hash, synced_at, payload FROM xref WHERE target_id = $1 AND key <> $1 ORDER BY flow LIMIT 100")
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("find record by target id", e))?;
        out.extend(rows.iter().map(decode));
        Ok(out)
    }

    async fn failures_of_key(&self, flows: &[String], key: &str) -> StoreResult<Vec<Failure>> {
        let sql = format!("SELECT {FAILURE_COLUMNS} FROM failures WHERE key = $1 AND flow = ANY($2) ORDER BY flow");
        let rows = sqlx::query(&sql)
            .bind(key)
            .bind(flows)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("find failures", e))?;
        rows.into_iter().map(|r| self.failure_row(r)).collect()
    }

    async fn runs_touching(&self, key: &str, limit: i64) -> StoreResult<Vec<KeyRun>> {
        let rows = sqlx::query(
            "SELECT rr.run_id, r.flow, r.started_at, r.status, rr.outcome, rr.target_id, rr.message
             FROM run_records rr JOIN runs r ON r.id = rr.run_id
             WHERE rr.key = $1 ORDER BY rr.run_id DESC LIMIT $2",
        )
        .bind(key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("find runs of a record", e))?;
        Ok(rows
            .iter()
            .map(|r| KeyRun {
                run_id: r.get(0),
                flow: r.get(1),
                started_at: r.get(2),
                status: r.get(3),
                outcome: r.get(4),
                target_id: r.get(5),
                message: r.get(6),
            })
            .collect())
    }

    async fn log_webhook(&self, e: NewWebhookLog) -> StoreResult<()> {
        let err = |x: sqlx::Error| self.err("log webhook", x);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_log (connection, received_at, status, outcome, code, message, delivery_id, jobs, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&e.connection)
        .bind(ts(e.received_at))
        .bind(e.status as i64)
        .bind(e.outcome)
        .bind(&e.code)
        .bind(&e.message)
        .bind(&e.delivery_id)
        .bind(serde_json::to_string(&e.jobs).expect("ids serialise"))
        .bind(e.bytes as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        // Every hundredth delivery trims the log to its newest rows (a range delete on the primary key).
        if id % 100 == 0 {
            sqlx::query("DELETE FROM webhook_log WHERE id <= $1").bind(id - WEBHOOK_LOG_KEEP).execute(&self.pool).await.map_err(err)?;
        }
        Ok(())
    }

    async fn webhook_log_page(&self, connection: Option<&str>, before: Option<i64>, limit: i64) -> StoreResult<Vec<WebhookLogEntry>> {
        let rows = sqlx::query(
            "SELECT id, connection, received_at, status, outcome, code, message, delivery_id, jobs, bytes FROM webhook_log
             WHERE ($1::text IS NULL OR connection = $1) AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(connection)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("page webhook log", e))?;
        Ok(rows
            .iter()
            .map(|r| WebhookLogEntry {
                id: r.get(0),
                connection: r.get(1),
                received_at: r.get(2),
                status: r.get(3),
                outcome: r.get(4),
                code: r.get(5),
                message: r.get(6),
                delivery_id: r.get(7),
                jobs: serde_json::from_str(r.get::<&str, _>(8)).unwrap_or_default(),
                bytes: r.get(9),
            })
            .collect())
    }

    async fn api_key(&self, id: &str) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query("SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("read API key", e))?;
        Ok(row.map(key_row))
    }

    async fn keys_page(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("page API keys", e))?;
        Ok(rows.into_iter().map(key_row).collect())
    }
}
