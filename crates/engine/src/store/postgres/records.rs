//! [`RecordStore`] on PostgreSQL (the records API's pushed and pulled canonical records).

use crate::store::{ts, parse_ts};
use super::PgStore;
use crate::connector::WriteAction;
use crate::store::StoreResult;
use crate::store::records::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;



#[async_trait]
impl RecordStore for PgStore {
    async fn put_records(&self, collection: &str, stream: &str, records: Vec<RecordPut>, now: DateTime<Utc>) -> StoreResult<Vec<WriteAction>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let at = ts(now);
        let err = |e: sqlx::Error| self.err(&format!("store {stream} records of collection {collection}"), e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Taking change numbers first locks the counter's row: concurrent pushes (from any process) are
        // serialised before they read anything, and change numbers commit in order, so a puller paging
        // by `seq` never skips a number that commits later.
        let base: i64 = sqlx::query_scalar("UPDATE api_record_seq SET value = value + $1 WHERE id = 1 RETURNING value - $1")
            .bind(records.len() as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        let rows = sqlx::query("SELECT key, hash FROM api_records WHERE collection = $1 AND stream = $2 AND key = ANY($3)")
            .bind(collection)
            .bind(stream)
            .bind(&keys)
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
            let rows: Vec<&(i64, &RecordPut)> = changed.values().collect();
            sqlx::query(
                "INSERT INTO api_records (collection, stream, key, seq, hash, payload, updated_at)
                 SELECT $1, $2, k, s, h, p, $7 FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::text[]) AS u (k, s, h, p)
                 ON CONFLICT (collection, stream, key) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
                     payload = excluded.payload, updated_at = excluded.updated_at",
            )
            .bind(collection)
            .bind(stream)
            .bind(rows.iter().map(|(_, r)| r.key.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(seq, _)| *seq).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.hash.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.payload.to_string()).collect::<Vec<_>>())
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(actions)
    }

    async fn get_records(&self, collection: &str, stream: &str, query: &RecordQuery) -> StoreResult<Vec<StoredRecord>> {
        let rows = sqlx::query(
            "SELECT key, seq, hash, payload, updated_at FROM api_records
             WHERE collection = $1 AND stream = $2 AND ($3::bigint IS NULL OR seq > $3) AND ($4::text IS NULL OR updated_at >= $4)
               AND ($5::text[] IS NULL OR key = ANY($5))
             ORDER BY seq LIMIT $6",
        )
        .bind(collection)
        .bind(stream)
        .bind(query.after_seq)
        .bind(query.since.map(ts))
        .bind(query.keys.as_deref())
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
        sqlx::query_scalar("DELETE FROM api_records WHERE collection = $1 AND stream = $2 AND key = ANY($3) RETURNING key")
            .bind(collection)
            .bind(stream)
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(&format!("delete {stream} records of collection {collection}"), e))
    }
}
