//! Records API for website developers: push canonical records (batch upsert, each validated, one outcome
//! per record) and pull them with cursor paging. Pushed records trigger a targeted sync of every enabled
//! flow whose source is an `api` connection of the same collection and stream.

use crate::auth::require;
use crate::error::ApiError;
use crate::Server;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use ferry_engine::connector::WriteAction;
use ferry_engine::hash::fingerprint;
use ferry_engine::store::jobs::{JobKind, NewJob};
use ferry_engine::store::keys::Scope;
use ferry_engine::store::records::{RecordPut, RecordQuery};
use ferry_model::{Record, Stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub const MAX_PUSH: usize = 5000;

fn stream(s: &str) -> Result<Stream, ApiError> {
    s.parse::<Stream>().map_err(|m| ApiError::new(StatusCode::NOT_FOUND, "unknown_stream", m).field("stream"))
}

#[derive(Deserialize)]
pub struct CollectionQuery {
    collection: Option<String>,
}

pub async fn push(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Path(stream_name): Path<String>,
    Query(q): Query<CollectionQuery>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (state, _) = require(&server, &headers, Scope::Write).await?;
    let stream = stream(&stream_name)?;
    let collection = q.collection.unwrap_or_else(|| "default".into());
    let body: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    let items = match body {
        Value::Array(items) => items,
        Value::Object(mut o) if o.get("records").is_some_and(Value::is_array) => match o.remove("records") {
            Some(Value::Array(items)) => items,
            _ => unreachable!("checked above"),
        },
        _ => return Err(ApiError::invalid("body must be a JSON array of records, or {\"records\": [...]}")),
    };
    if items.len() > MAX_PUSH {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_records", format!("{} records; at most {MAX_PUSH} per request", items.len())));
    }
    let mut outcomes: Vec<Value> = Vec::with_capacity(items.len());
    let mut puts = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let position = format!("records[{i}]");
        match Record::parse(stream, item, &position) {
            Ok(mut record) => {
                let key = record.key();
                let fp = fingerprint(&mut record);
                slots.push(outcomes.len());
                outcomes.push(json!({"index": i, "key": key}));
                puts.push(RecordPut { key, hash: fp.hash, payload: record.to_value() });
            }
            Err(e) => outcomes.push(json!({
                "index": i, "key": e.record, "status": "invalid",
                "errors": e.errors.iter().map(|f| json!({"field": f.field, "message": f.message})).collect::<Vec<_>>(),
            })),
        }
    }
    let keys: Vec<String> = puts.iter().map(|p| p.key.clone()).collect();
    let actions = state.store.put_records(&collection, stream.as_str(), puts, state.clock.now()).await?;
    let mut changed = Vec::new();
    for ((slot, action), key) in slots.into_iter().zip(actions).zip(keys) {
        outcomes[slot]["status"] = json!(action);
        if action != WriteAction::Unchanged {
            changed.push(key);
        }
    }
    let rejected = outcomes.iter().filter(|o| o["status"] == "invalid").count();
    // Flows that read this collection's stream carry the changes on (targeted: just these keys).
    let mut jobs = Vec::new();
    if !changed.is_empty() {
        changed.sort();
        changed.dedup();
        for (flow, conf) in &state.workspace.config.flows {
            let Some(conn) = state.workspace.config.connections.get(&conf.source) else { continue };
            let conn_collection = conn.options.get("collection").and_then(|v| v.as_str()).unwrap_or("default");
            if conf.enabled && conf.stream == stream && conn.kind == "api" && conn_collection == collection {
                let mut job = NewJob::new(flow.clone(), JobKind::Webhook, state.clock.now());
                job.keys = Some(changed.clone());
                jobs.push(state.store.enqueue(job).await?.id);
            }
        }
        if !jobs.is_empty() {
            state.wake.notify_waiters();
        }
    }
    Ok(Json(json!({"accepted": outcomes.len() - rejected, "rejected": rejected, "records": outcomes, "jobs": jobs})))
}

#[derive(Deserialize)]
pub struct PullQuery {
    collection: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

pub async fn pull(State(server): State<Arc<Server>>, headers: HeaderMap, Path(stream_name): Path<String>, Query(q): Query<PullQuery>) -> Result<Json<Value>, ApiError> {
    let (state, _) = require(&server, &headers, Scope::Read).await?;
    let stream = stream(&stream_name)?;
    let collection = q.collection.unwrap_or_else(|| "default".into());
    let since = q
        .since
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| ApiError::invalid(format!("since {s:?}: not an RFC 3339 time ({e})")).field("since"))
        })
        .transpose()?;
    let after_seq = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::invalid(format!("cursor {c:?}: pass back a next_cursor from an earlier page")).field("cursor")))
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit: between 1 and 1000").field("limit"));
    }
    let rows = state.store.get_records(&collection, stream.as_str(), &RecordQuery { after_seq, since, keys: None, limit }).await?;
    let has_more = rows.len() as i64 == limit;
    // The cursor also works for polling: pass it back later to get only what changed since.
    let next_cursor = rows.last().map(|r| r.seq).or(after_seq).map(|s| s.to_string());
    let records: Vec<Value> = rows.into_iter().map(|r| json!({"key": r.key, "updated_at": r.updated_at, "record": r.payload})).collect();
    Ok(Json(json!({"stream": stream, "collection": collection, "records": records, "next_cursor": next_cursor, "has_more": has_more})))
}
