//! [`KeyStore`] on PostgreSQL (API keys: only a SHA-256 of each token is stored).

use crate::store::{ts};
use super::PgStore;
use crate::store::parse_ts;
use crate::store::StoreResult;
use crate::store::keys::*;
use async_trait::async_trait;
use chrono::Utc;
use sqlx::Row;


/// A key's `last_used_at` is rewritten at most this often (as on SQLite).
const LAST_USED_PRECISION_SECONDS: i64 = 60;

pub(super) fn key_row(r: sqlx::postgres::PgRow) -> ApiKey {
    let scopes: String = r.get(2);
    ApiKey {
        id: r.get(0),
        name: r.get(1),
        scopes: scopes.split(',').filter_map(|s| Scope::parse(s).ok()).collect(),
        created_at: parse_ts(r.get::<&str, _>(3)).unwrap_or_default(),
        last_used_at: r.get::<Option<&str>, _>(4).and_then(parse_ts),
        revoked: r.get::<Option<&str>, _>(5).is_some(),
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_key(&self, name: &str, scopes: &[Scope]) -> StoreResult<(ApiKey, String)> {
        let (id, token, hash) = new_token();
        let scopes_text = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        let now = Utc::now();
        sqlx::query("INSERT INTO api_keys (id, hash, name, scopes, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(&hash)
            .bind(name)
            .bind(&scopes_text)
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("create API key", e))?;
        let key = ApiKey { id, name: name.to_owned(), scopes: scopes.to_vec(), created_at: now, last_used_at: None, revoked: false };
        Ok((key, token))
    }

    async fn verify_key(&self, token: &str) -> StoreResult<Option<ApiKey>> {
        // A read first: an unknown token costs no write (see the SQLite store).
        let row = sqlx::query("SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(token_hash(token))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("verify API key", e))?;
        let Some(key) = row.map(key_row) else { return Ok(None) };
        let now = Utc::now();
        if key.last_used_at.is_none_or(|at| now - at >= chrono::Duration::seconds(LAST_USED_PRECISION_SECONDS)) {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(&key.id)
                .bind(ts(now))
                .execute(&self.pool)
                .await
                .map_err(|e| self.err("record API key use", e))?;
        }
        Ok(Some(key))
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("list API keys", e))?;
        Ok(rows.into_iter().map(key_row).collect())
    }

    async fn revoke_key(&self, id: &str) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(ts(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("revoke API key", e))?
            .rows_affected();
        Ok(n == 1)
    }
}
