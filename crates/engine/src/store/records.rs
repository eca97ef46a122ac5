//! Canonical records kept in the state store for the records API and the `api` connector: a website
//! pushes orders here for a flow to carry to the ERP, and pulls products a flow wrote here.

use super::StoreResult;
use crate::connector::WriteAction;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One validated record to store: its key, content hash and canonical JSON.
#[derive(Clone, Debug)]
pub struct RecordPut {
    pub key: String,
    pub hash: String,
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredRecord {
    pub key: String,
    /// Change number; pulls page by it.
    pub seq: i64,
    #[serde(skip)]
    pub hash: String,
    pub payload: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default)]
pub struct RecordQuery {
    /// Only changes after this change number (the previous page's cursor).
    pub after_seq: Option<i64>,
    /// Only records changed at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only these keys.
    pub keys: Option<Vec<String>>,
    pub limit: i64,
}

#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Upserts in one transaction; one action per input, in order (`Unchanged` when the hash is equal:
    /// nothing is rewritten and the change number stays, so pullers do not see it again).
    async fn put_records(&self, collection: &str, stream: &str, records: Vec<RecordPut>, now: DateTime<Utc>) -> StoreResult<Vec<WriteAction>>;
    /// In change order.
    async fn get_records(&self, collection: &str, stream: &str, query: &RecordQuery) -> StoreResult<Vec<StoredRecord>>;
    /// Removes records; returns the keys that existed.
    async fn delete_records(&self, collection: &str, stream: &str, keys: &[String]) -> StoreResult<Vec<String>>;
}
