//! [`SecretStore`] and [`DeliveryLog`] on PostgreSQL.

use crate::store::{ts};
use super::PgStore;
use crate::store::StoreResult;
use crate::store::secrets::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;


fn sealed(r: &sqlx::postgres::PgRow) -> SealedSecret {
    SealedSecret { name: r.get(0), key_id: r.get(1), nonce: r.get(2), ciphertext: r.get(3) }
}

#[async_trait]
impl SecretStore for PgStore {
    async fn put_secret(&self, s: SealedSecret) -> StoreResult<()> {
        let now = ts(Utc::now());
        sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO UPDATE SET key_id = $2, nonce = $3, ciphertext = $4, updated_at = $5",
        )
        .bind(&s.name)
        .bind(&s.key_id)
        .bind(&s.nonce)
        .bind(&s.ciphertext)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(&format!("store secret {}", s.name), e))?;
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> StoreResult<Option<SealedSecret>> {
        let row = sqlx::query("SELECT name, key_id, nonce, ciphertext FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(&format!("read secret {name}"), e))?;
        Ok(row.as_ref().map(sealed))
    }

    async fn list_secrets(&self) -> StoreResult<Vec<SecretInfo>> {
        let rows = sqlx::query("SELECT name, key_id, created_at, updated_at FROM secrets ORDER BY name COLLATE \"C\"")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("list secrets", e))?;
        Ok(rows.iter().map(|r| SecretInfo { name: r.get(0), key_id: r.get(1), created_at: r.get(2), updated_at: r.get(3) }).collect())
    }

    async fn all_secrets(&self) -> StoreResult<Vec<SealedSecret>> {
        let rows = sqlx::query("SELECT name, key_id, nonce, ciphertext FROM secrets ORDER BY name COLLATE \"C\"")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("read secrets", e))?;
        Ok(rows.iter().map(sealed).collect())
    }

    async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("delete secret {name}"), e))?
            .rows_affected();
        Ok(n == 1)
    }

    async fn reseal_all(&self, secrets: Vec<SealedSecret>) -> StoreResult<()> {
        let err = |e: sqlx::Error| self.err("re-encrypt secrets", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let now = ts(Utc::now());
        for s in secrets {
            let n = sqlx::query("UPDATE secrets SET key_id = $2, nonce = $3, ciphertext = $4, updated_at = $5 WHERE name = $1")
                .bind(&s.name)
                .bind(&s.key_id)
                .bind(&s.nonce)
                .bind(&s.ciphertext)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
            if n != 1 {
                return Err(self.err("re-encrypt secrets", format!("secret {} vanished during the rotation; nothing changed", s.name)));
            }
        }
        tx.commit().await.map_err(err)
    }
}

#[async_trait]
impl DeliveryLog for PgStore {
    async fn seen_delivery(&self, connection: &str, delivery_id: &str, since: DateTime<Utc>) -> StoreResult<Option<Vec<i64>>> {
        let err = |e: sqlx::Error| self.err(&format!("look up webhook delivery {delivery_id:?} of {connection}"), e);
        let jobs: Option<String> = sqlx::query_scalar("SELECT jobs FROM webhook_deliveries WHERE connection = $1 AND delivery_id = $2 AND received_at >= $3")
            .bind(connection)
            .bind(delivery_id)
            .bind(ts(since))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(jobs.map(|j| serde_json::from_str(&j).unwrap_or_default()))
    }

    async fn claim_delivery(&self, connection: &str, delivery_id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let err = |e: sqlx::Error| self.err(&format!("remember webhook delivery {delivery_id:?} of {connection}"), e);
        // Two nodes receiving the same delivery at once: the primary key lets exactly one insert.
        let n = sqlx::query(
            "INSERT INTO webhook_deliveries (connection, delivery_id, received_at, jobs) VALUES ($1, $2, $3, '[]')
             ON CONFLICT (connection, delivery_id) DO NOTHING",
        )
        .bind(connection)
        .bind(delivery_id)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn set_delivery_jobs(&self, connection: &str, delivery_id: &str, jobs: &[i64]) -> StoreResult<()> {
        sqlx::query("UPDATE webhook_deliveries SET jobs = $3 WHERE connection = $1 AND delivery_id = $2")
            .bind(connection)
            .bind(delivery_id)
            .bind(serde_json::to_string(jobs).expect("ids serialise"))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("remember the jobs of webhook delivery {delivery_id:?}"), e))?;
        Ok(())
    }

    async fn release_delivery(&self, connection: &str, delivery_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE connection = $1 AND delivery_id = $2")
            .bind(connection)
            .bind(delivery_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(&format!("release webhook delivery {delivery_id:?}"), e))?;
        Ok(())
    }

    async fn forget_deliveries(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1")
            .bind(ts(before))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("forget old webhook deliveries", e))?
            .rows_affected())
    }
}
