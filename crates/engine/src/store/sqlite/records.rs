//! [`RecordStore`] and [`KeyStore`] on the embedded SQLite store (migrations 0003, 0004).

use crate::store::{ts, parse_ts};
use super::SqliteStore;
use crate::connector::WriteAction;
use crate::store::StoreResult;
use crate::store::keys::*;
use crate::store::records::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;



/// A key's `last_used_at` is rewritten at most this often.
const LAST_USED_PRECISION_SECONDS: i64 = 60;

#[async_trait]
impl RecordStore for SqliteStore {
    async fn put_records(&self, collection: &str, stream: &str, records: Vec<RecordPut>, now: DateTime<Utc>) -> StoreResult<Vec<WriteAction>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let at = ts(now);
        let err = |e: sqlx::Error| self.err(&format!("store {stream} records of collection {collection}"), e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        // First statement writes: takes SQLite's write lock before anything is read (see 0003_records.sql).
        let base: i64 = sqlx::query_scalar("UPDATE api_record_seq SET value = value + ?1 WHERE id = 1 RETURNING value - ?1")
            .bind(records.len() as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        let rows = sqlx::query("SELECT key, hash FROM api_records WHERE collection = ?1 AND stream = ?2 AND key IN (SELECT value FROM json_each(?3))")
            .bind(collection)
            .bind(stream)
            .bind(serde_json::to_string(&keys).expect("strings serialise"))
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        let mut current: HashMap<String, String> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut actions = Vec::with_capacity(records.len());
        let mut changed: HashMap<&str, (i64, &RecordPut)> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let action = match current.get(&r.key) {
                None => WriteAction::Created,
                Some(h) if *h == r.hash => WriteAction::Unchanged,
                Some(_) => WriteAction::Updated,
            };
            if action != WriteAction::Unchanged {
                // A key twice in one push: the later version wins, with the later change number.
                changed.insert(r.key.as_str(), (base + i as i64 + 1, r));
                current.insert(r.key.clone(), r.hash.clone());
            }
            actions.push(action);
        }
        if !changed.is_empty() {
            let rows: Vec<serde_json::Value> =
                changed.values().map(|(seq, r)| serde_json::json!([r.key, seq, r.hash, r.payload.to_string()])).collect();
            sqlx::query(
                "INSERT INTO api_records (collection, stream, key, seq, hash, payload, updated_at)
                 SELECT ?1, ?2, value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?4 FROM json_each(?3) WHERE true
                 ON CONFLICT (collection, stream, key) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
                     payload = excluded.payload, updated_at = excluded.updated_at",
            )
            .bind(collection)
            .bind(stream)
            .bind(serde_json::Value::Array(rows).to_string())
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(actions)
    }

    async fn get_records(&self, collection: &str, stream: &str, query: &RecordQuery) -> StoreResult<Vec<StoredRecord>> {
        let keys = query.keys.as_ref().map(|k| serde_json::to_string(k).expect("strings serialise"));
        let rows = sqlx::query(
            "SELECT key, seq, hash, payload, updated_at FROM api_records
             WHERE collection = ?1 AND stream = ?2 AND (?3 IS NULL OR seq > ?3) AND (?4 IS NULL OR updated_at >= ?4)
               AND (?5 IS NULL OR key IN (SELECT value FROM json_each(?5)))
             ORDER BY seq LIMIT ?6",
        )
        .bind(collection)
        .bind(stream)
        .bind(query.after_seq)
        .bind(query.since.map(ts))
        .bind(keys)
        .bind(if query.limit > 0 { query.limit } else { 100 })
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(&format!("read {stream} records of collection {collection}"), e))?;
        rows.into_iter()
            .map(|r| {
                let key: String = r.get(0);
                Ok(StoredRecord {
                    payload: serde_json::from_str(r.get::<&str, _>(3)).map_err(|e| self.err(&format!("decode {stream} record {key}"), e))?,
                    key,
                    seq: r.get(1),
                    hash: r.get(2),
                    updated_at: parse_ts(r.get::<&str, _>(4)).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn delete_records(&self, collection: &str, stream: &str, keys: &[String]) -> StoreResult<Vec<String>> {
        sqlx::query_scalar("DELETE FROM api_records WHERE collection = ?1 AND stream = ?2 AND key IN (SELECT value FROM json_each(?3)) RETURNING key")
            .bind(collection)
            .bind(stream)
            .bind(serde_json::to_string(keys).expect("strings serialise"))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(&format!("delete {stream} records of collection {collection}"), e))
    }
}

pub(super) fn key_row(r: sqlx::sqlite::SqliteRow) -> ApiKey {
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
impl KeyStore for SqliteStore {
    async fn create_key(&self, name: &str, scopes: &[Scope]) -> StoreResult<(ApiKey, String)> {
        let (id, token, hash) = new_token();
        let scopes_text = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        let now = Utc::now();
        sqlx::query("INSERT INTO api_keys (id, hash, name, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
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
        // A read first: an unknown token (every workspace but one is asked about each request's token, and
        // anyone can send a bad one) must cost no write and so never wait for or take the write lock.
        let row = sqlx::query("SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL")
            .bind(token_hash(token))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("verify API key", e))?;
        let Some(key) = row.map(key_row) else { return Ok(None) };
        // `last_used_at` is for people ("is this key still used?"): minute precision is plenty, and a busy
        // client then costs one write a minute, not one per request.
        let now = Utc::now();
        if key.last_used_at.is_none_or(|at| now - at >= chrono::Duration::seconds(LAST_USED_PRECISION_SECONDS)) {
            sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
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
        let n = sqlx::query("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
            .bind(id)
            .bind(ts(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("revoke API key", e))?
            .rows_affected();
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, hash: &str) -> RecordPut {
        RecordPut { key: key.into(), hash: hash.into(), payload: serde_json::json!({"sku": key, "h": hash}) }
    }

    #[tokio::test]
    async fn upserts_report_their_action_and_pages_follow_change_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state.db")).await.unwrap();
        let now = Utc::now();
        let a = s.put_records("default", "products", vec![put("A", "1"), put("B", "1"), put("C", "1")], now).await.unwrap();
        assert_eq!(a, [WriteAction::Created; 3]);
        let b = s.put_records("default", "products", vec![put("A", "1"), put("B", "2")], now).await.unwrap();
        assert_eq!(b, [WriteAction::Unchanged, WriteAction::Updated]);
        // Other collections and streams are separate.
        s.put_records("other", "products", vec![put("A", "9")], now).await.unwrap();

        let page1 = s.get_records("default", "products", &RecordQuery { limit: 2, ..Default::default() }).await.unwrap();
        assert_eq!(page1.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["A", "C"]);
        let page2 = s
            .get_records("default", "products", &RecordQuery { after_seq: Some(page1[1].seq), limit: 2, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(page2.iter().map(|r| (r.key.as_str(), r.payload["h"].as_str().unwrap())).collect::<Vec<_>>(), [("B", "2")]);
        assert_eq!(s.delete_records("default", "products", &["B".into(), "Z".into()]).await.unwrap(), ["B"]);
    }

    #[tokio::test]
    async fn keys_are_stored_hashed_verified_by_token_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state.db")).await.unwrap();
        let (key, token) = s.create_key("shop frontend", &[Scope::Read, Scope::Write]).await.unwrap();
        let stored: String = sqlx::query_scalar("SELECT hash FROM api_keys").fetch_one(&s.pool).await.unwrap();
        assert_ne!(stored, token);
        assert!(!stored.contains(&token[token.len() - 64..]));
        let found = s.verify_key(&token).await.unwrap().unwrap();
        assert_eq!(found.id, key.id);
        assert!(found.allows(Scope::Write) && !found.allows(Scope::Admin));
        assert!(s.verify_key(&format!("{token}x")).await.unwrap().is_none());
        assert!(s.revoke_key(&key.id).await.unwrap());
        assert!(s.verify_key(&token).await.unwrap().is_none());
    }
}
