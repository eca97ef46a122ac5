//! [`AlertStore`] on PostgreSQL (migration 0002): the SQLite queries with `$n` parameters.

use crate::store::{ts};
use super::PgStore;
use crate::alerts::{AlertState, Delivery};
use crate::store::StoreResult;
use crate::store::alerts::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};


/// Open alerts, and resolved ones some channel still owes a "resolved" message.
const ACTIVE: &str = "a.resolved_at IS NULL OR EXISTS (
        SELECT 1 FROM alert_deliveries p WHERE p.alert_id = a.id AND p.fired_at IS NOT NULL AND p.resolved_at IS NULL)";

#[async_trait]
impl AlertStore for PgStore {
    async fn flow_health(&self, flows: &[String]) -> StoreResult<BTreeMap<String, FlowHealth>> {
        let mut out = BTreeMap::new();
        for flow in flows {
            let what = format!("read the runs of flow {flow}");
            let err = |e| self.err(&what, e);
            // Both walk the (flow, id) index backwards and stop at the first match.
            let last = sqlx::query(
                "SELECT id, status, started_at, finished_at, error FROM runs WHERE flow = $1 AND status <> 'running' ORDER BY id DESC LIMIT 1",
            )
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
            let last_finished = match last {
                Some(r) => Some(RunBrief {
                    id: r.get(0),
                    status: r.get(1),
                    started_at: stored_time(&self.location, &what, r.get(2))?,
                    finished_at: stored_time_opt(&self.location, &what, r.get(3))?,
                    error: r.get(4),
                }),
                None => None,
            };
            let success: Option<String> = sqlx::query_scalar(
                "SELECT COALESCE(finished_at, started_at) FROM runs WHERE flow = $1 AND status IN ('ok', 'failed_records') ORDER BY id DESC LIMIT 1",
            )
            .bind(flow)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
            out.insert(flow.clone(), FlowHealth { last_finished, last_success_at: stored_time_opt(&self.location, &what, success)? });
        }
        Ok(out)
    }

    async fn open_failure_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        let rows = sqlx::query("SELECT flow, COUNT(*) FROM failures GROUP BY flow")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("count open failures", e))?;
        Ok(rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1).max(0) as u64)).collect())
    }

    async fn oldest_due_job(&self, now: DateTime<Utc>) -> StoreResult<Option<WaitingJob>> {
        let what = "read the queue's oldest due job";
        let err = |e| self.err(what, e);
        let due: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND run_after <= $1")
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        if due == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT id, flow, run_after FROM jobs WHERE status = 'queued' AND run_after <= $1 ORDER BY run_after, id LIMIT 1")
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            Some(r) => Ok(Some(WaitingJob { id: r.get(0), flow: r.get(1), run_after: stored_time(&self.location, what, r.get(2))?, due })),
            None => Ok(None),
        }
    }

    async fn add_rejections(&self, rejections: &[Rejections]) -> StoreResult<()> {
        if rejections.is_empty() {
            return Ok(());
        }
        let err = |e| self.err("count rejected webhook deliveries", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        for x in rejections {
            sqlx::query(
                "INSERT INTO webhook_rejections (connection, minute, code, count) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (connection, minute, code) DO UPDATE SET count = webhook_rejections.count + excluded.count",
            )
            .bind(&x.connection)
            .bind(ts(x.minute))
            .bind(&x.code)
            .bind(x.count as i64)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn rejections_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Rejections>> {
        let what = "read rejected webhook deliveries";
        let rows = sqlx::query("SELECT connection, minute, code, count FROM webhook_rejections WHERE minute >= $1 ORDER BY minute, connection, code")
            .bind(ts(since))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(what, e))?;
        rows.iter()
            .map(|r| Ok(Rejections { connection: r.get(0), minute: stored_time(&self.location, what, r.get(1))?, code: r.get(2), count: r.get::<i64, _>(3).max(0) as u64 }))
            .collect()
    }

    async fn forget_rejections(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM webhook_rejections WHERE minute < $1")
            .bind(ts(before))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("forget old webhook rejections", e))?
            .rows_affected())
    }

    async fn watching_since(&self, now: DateTime<Utc>) -> StoreResult<DateTime<Utc>> {
        let what = "read when alerting began";
        sqlx::query("INSERT INTO alert_watch (id, since) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(what, e))?;
        let since: String = sqlx::query_scalar("SELECT since FROM alert_watch WHERE id = 1").fetch_one(&self.pool).await.map_err(|e| self.err(what, e))?;
        stored_time(&self.location, what, &since)
    }

    async fn active_alerts(&self) -> StoreResult<Vec<AlertState>> {
        let what = "read open alerts";
        let err = |e| self.err(what, e);
        let rows = sqlx::query(&format!("SELECT a.id, a.rule, a.subject, a.message, a.opened_at, a.resolved_at FROM alerts a WHERE {ACTIVE} ORDER BY a.id"))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut alerts = Vec::with_capacity(rows.len());
        for r in &rows {
            alerts.push(AlertState {
                id: r.get(0),
                rule: r.get(1),
                subject: r.get(2),
                message: r.get(3),
                opened_at: stored_time(&self.location, what, r.get(4))?,
                resolved_at: stored_time_opt(&self.location, what, r.get(5))?,
                deliveries: BTreeMap::new(),
            });
        }
        let rows = sqlx::query(&format!(
            "SELECT d.alert_id, d.channel, d.fired_at, d.resolved_at FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id WHERE {ACTIVE}"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        for r in &rows {
            let id: i64 = r.get(0);
            let delivery = Delivery { fired_at: stored_time_opt(&self.location, what, r.get(2))?, resolved_at: stored_time_opt(&self.location, what, r.get(3))? };
            if let Some(a) = alerts.iter_mut().find(|a| a.id == id) {
                a.deliveries.insert(r.get(1), delivery);
            }
        }
        Ok(alerts)
    }

    async fn open_alert(&self, rule: &str, subject: &str, message: &str, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("INSERT INTO alerts (rule, subject, message, opened_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id")
            .bind(rule)
            .bind(subject)
            .bind(message)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(&format!("open alert {rule} ({subject})"), e))
    }

    async fn resolve_alert(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE alerts SET resolved_at = $2 WHERE id = $1 AND resolved_at IS NULL")
            .bind(id)
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("resolve alert {id}"), e))?;
        Ok(())
    }

    async fn record_delivery(&self, id: i64, channel: &str, resolved: bool, now: DateTime<Utc>) -> StoreResult<()> {
        let sql = if resolved {
            "UPDATE alert_deliveries SET resolved_at = $3 WHERE alert_id = $1 AND channel = $2"
        } else {
            "INSERT INTO alert_deliveries (alert_id, channel, fired_at) VALUES ($1, $2, $3)
             ON CONFLICT (alert_id, channel) DO UPDATE SET fired_at = excluded.fired_at"
        };
        sqlx::query(sql)
            .bind(id)
            .bind(channel)
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("record the message of alert {id} to channel {channel}"), e))?;
        Ok(())
    }

    async fn last_fired(&self, since: DateTime<Utc>) -> StoreResult<HashMap<(String, String, String), DateTime<Utc>>> {
        let what = "read the last alert messages";
        let rows = sqlx::query(
            "SELECT a.rule, a.subject, d.channel, MAX(d.fired_at) FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE d.fired_at >= $1 GROUP BY a.rule, a.subject, d.channel",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(what, e))?;
        rows.iter().map(|r| Ok(((r.get(0), r.get(1), r.get(2)), stored_time(&self.location, what, r.get(3))?))).collect()
    }

    async fn forget_alerts(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let err = |e| self.err("forget old alerts", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("DELETE FROM alert_deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE resolved_at < $1)")
            .bind(ts(before))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let n = sqlx::query("DELETE FROM alerts WHERE resolved_at < $1").bind(ts(before)).execute(&mut *tx).await.map_err(err)?.rows_affected();
        tx.commit().await.map_err(err)?;
        Ok(n)
    }
}
