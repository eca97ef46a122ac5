//! `type = "api"`: the records a website developer pushes through `ferry serve`'s records API
//! (`POST /api/v1/records/{stream}`), or that a flow writes for them to pull (`GET …`). Reads and writes
//! the state store's `api_records` table, so a flow can carry pushed orders to the ERP, and products a
//! flow writes can be pulled.
//!
//! Options: `collection` (default `"default"`) separates independent record sets; the records API takes
//! the same name as `?collection=`.
//!
//! Reads are incremental by change number (`{"seq": n}` checkpoints after each page). A targeted read
//! (keys from a push or webhook) emits no checkpoint: it must not move the flow's cursor past records it
//! did not read.

use async_trait::async_trait;
use ferry_engine::connector::*;
use ferry_engine::hash::fingerprint;
use ferry_engine::store::records::{RecordPut, RecordQuery, RecordStore};
use ferry_model::Stream;
use futures::stream::BoxStream;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

const PAGE: i64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_collection")]
    collection: String,
}

fn default_collection() -> String {
    "default".into()
}

/// Builds `api` connections on a given record store (the server's / CLI's state store).
pub const NAME: &str = "api";
pub const SUMMARY: &str = "records pushed and pulled through ferry serve's records API (/api/v1/records/{stream})";

pub struct ApiFactory {
    store: Arc<dyn RecordStore>,
}

impl ApiFactory {
    pub fn new(store: Arc<dyn RecordStore>) -> Self {
        ApiFactory { store }
    }
}

impl ConnectorFactory for ApiFactory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn summary(&self) -> &'static str {
        SUMMARY
    }
    fn build(&self, options: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let o: Options = parse_options(options, ctx)?;
        Ok(Arc::new(ApiConnector { store: self.store.clone(), collection: o.collection, connection: ctx.connection.clone() }))
    }
}

pub struct ApiConnector {
    store: Arc<dyn RecordStore>,
    collection: String,
    connection: String,
}

impl ApiConnector {
    pub fn collection(&self) -> &str {
        &self.collection
    }
    fn endpoint(&self, stream: Stream) -> String {
        format!("api connection {} (collection {}, {stream})", self.connection, self.collection)
    }
    fn store_error(&self, stream: Stream, e: impl std::fmt::Display) -> ConnectorError {
        // The state store is local: a failure is a lock or disk hiccup more often than not.
        ConnectorError::transient(self.endpoint(stream), e.to_string())
    }
}

#[async_trait]
impl Connector for ApiConnector {
    fn describe(&self) -> Description {
        Description {
            name: "api",
            summary: "records pushed and pulled through ferry serve's records API",
            config_schema: serde_json::json!({
                "type": "object",
                "properties": {"collection": {"type": "string", "default": "default",
                    "description": "separates independent record sets; the records API's ?collection="}},
                "additionalProperties": false
            }),
            streams: Stream::ALL
                .into_iter()
                .map(|stream| StreamCapability {
                    stream,
                    read: Some(ReadMode::Incremental),
                    write: Some(WriteMode::Upsert),
                    find_by_key: true,
                    retire: vec![RetireMode::Delete],
                })
                .collect(),
            batch_size: PAGE as usize,
            webhooks: false,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let q = RecordQuery { limit: 1, ..Default::default() };
        self.store.get_records(&self.collection, "products", &q).await.map_err(|e| self.store_error(Stream::Products, e))?;
        Ok(CheckReport { ok: true, details: vec![format!("record store readable (collection {})", self.collection)] })
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let stream = request.stream();
        let start = request.checkpoint.as_ref().and_then(|c| c.get("seq")).and_then(|s| s.as_i64());
        let keys = request.keys.clone();
        let state = (Some(start), Vec::<ReadItem>::new());
        Box::pin(futures::stream::unfold(state, move |(mut after, mut buffered)| {
            let keys = keys.clone();
            async move {
                loop {
                    if let Some(item) = buffered.pop() {
                        return Some((Ok(item), (after, buffered)));
                    }
                    let cursor = after?;
                    let q = RecordQuery { after_seq: cursor, keys: keys.clone(), limit: PAGE, ..Default::default() };
                    let page = match self.store.get_records(&self.collection, stream.as_str(), &q).await {
                        Ok(p) => p,
                        Err(e) => return Some((Err(self.store_error(stream, e)), (None, Vec::new()))),
                    };
                    let last = page.last().map(|r| r.seq);
                    let full = page.len() as i64 == PAGE;
                    let mut items: Vec<ReadItem> = page
                        .into_iter()
                        .map(|r| ReadItem::Record(SourceRecord { position: format!("{} {stream} {} (seq {})", self.collection, r.key, r.seq), data: r.payload }))
                        .collect();
                    if let (Some(seq), None) = (last, &keys) {
                        items.push(ReadItem::Checkpoint(serde_json::json!({ "seq": seq })));
                    }
                    after = if full { Some(last) } else { None };
                    items.reverse();
                    buffered = items;
                    if buffered.is_empty() {
                        return None;
                    }
                }
            }
        }))
    }

    async fn write(&self, stream: Stream, mut batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let puts: Vec<RecordPut> = batch
            .iter_mut()
            .map(|w| RecordPut { key: w.key.clone(), hash: fingerprint(&mut w.record).hash, payload: w.record.to_value() })
            .collect();
        let actions = self
            .store
            .put_records(&self.collection, stream.as_str(), puts, chrono::Utc::now())
            .await
            .map_err(|e| self.store_error(stream, e))?;
        Ok(batch.into_iter().zip(actions).map(|(w, a)| WriteOutcome::ok(w.key.clone(), w.key, a)).collect())
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let q = RecordQuery { keys: Some(keys.to_vec()), limit: keys.len().max(1) as i64, ..Default::default() };
        let found = self.store.get_records(&self.collection, stream.as_str(), &q).await.map_err(|e| self.store_error(stream, e))?;
        Ok(found.into_iter().map(|r| (r.key.clone(), r.key)).collect())
    }

    async fn retire(&self, stream: Stream, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
        if mode != RetireMode::Delete {
            return Err(ConnectorError::config(self.endpoint(stream), "records can only be deleted (on_missing = \"delete\")"));
        }
        let ids: Vec<String> = items.iter().map(|(_, id)| id.clone()).collect();
        self.store.delete_records(&self.collection, stream.as_str(), &ids).await.map_err(|e| self.store_error(stream, e))?;
        // Deleting a record that is already gone leaves the same state: retired either way.
        Ok(items.into_iter().map(|(key, id)| WriteOutcome::ok(key, id, WriteAction::Retired)).collect())
    }
}
