//! `POST /hooks/{connection}`: verify the signature, ask the connection's connector which records
//! changed, enqueue a targeted sync for each enabled flow reading them, answer 202 at once.
//!
//! Signature: `X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the connection's secret,
//! and `X-Ferry-Timestamp: <unix seconds>` within 5 minutes of now. (The timestamp is not part of the
//! signed bytes in this protocol, so it bounds clock-skewed senders rather than replays; a replayed
//! delivery can only cause a re-fetch of current state, which is idempotent.)
//!
//! A connector whose system signs its own way says so ([`ferry_engine::WebhookAuth`]): Shopify sends
//! `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>` under the app's secret (the connection's
//! `webhook_secret`) and names each event by `X-Shopify-Webhook-Id` (the same on every retry), which is
//! deduplicated like `X-Ferry-Delivery`. Shopify's headers carry no timestamp that bounds retries (it
//! retries for hours with the same event), so there is no age check: a replay within the dedup window is
//! a duplicate, and any replay only re-fetches current state.

use crate::error::ApiError;
use crate::{AppState, Server};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use ferry_engine::WebhookAuth;
use ferry_engine::store::jobs::{JobKind, NewJob};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Instant;

pub const MAX_AGE_SECONDS: i64 = 300;

/// `sha256=<hex>` for `body` under `secret` (what a sender puts in `X-Ferry-Signature`).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks signature and timestamp; the error says which, never echoing the secret.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now: chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let signature = header("x-ferry-signature")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "missing X-Ferry-Signature header"))?;
    let hex_sig = signature
        .strip_prefix("sha256=")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "X-Ferry-Signature must be sha256=<hex>"))?;
    let given = hex::decode(hex_sig).map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "X-Ferry-Signature is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&given).map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "signature does not match the body"))?;
    let ts: i64 = header("x-ferry-timestamp")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "stale_timestamp", "missing X-Ferry-Timestamp header"))?
        .parse()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "stale_timestamp", "X-Ferry-Timestamp must be unix seconds"))?;
    // Positive: the timestamp is in the past.
    let age = now.timestamp().saturating_sub(ts);
    if age > MAX_AGE_SECONDS {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "stale_timestamp", format!("timestamp is {age} s old (limit {MAX_AGE_SECONDS} s)")));
    }
    if age < -MAX_AGE_SECONDS {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "stale_timestamp",
            format!("timestamp is {} s in the future (limit {MAX_AGE_SECONDS} s; is the sender's clock right?)", age.unsigned_abs()),
        ));
    }
    Ok(())
}

/// Checks Shopify's `X-Shopify-Hmac-Sha256` (base64 of the HMAC-SHA256 of the raw body under `secret`).
pub fn verify_shopify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let given = headers
        .get("x-shopify-hmac-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "missing X-Shopify-Hmac-Sha256 header"))?;
    use base64::Engine as _;
    let given = base64::engine::general_purpose::STANDARD
        .decode(given)
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "X-Shopify-Hmac-Sha256 is not base64"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "signature does not match the body"))
}

/// Verifies a delivery by the connection's scheme.
pub fn verify_by(auth: WebhookAuth, secret: &str, headers: &HeaderMap, body: &[u8], now: chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
    match auth {
        WebhookAuth::Ferry => verify(secret, headers, body, now),
        WebhookAuth::Shopify => verify_shopify(secret, headers, body),
    }
}

/// `POST /hooks/{connection}`: the config's own workspace (a server of several workspaces wants
/// `/hooks/{workspace}/{connection}`).
pub async fn receive_default(State(server): State<Arc<Server>>, Path(connection): Path<String>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(state) = server.default_workspace() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_workspace",
            format!("this server has several workspaces: post to /hooks/{{workspace}}/{connection}"),
        ));
    };
    receive_in(state, connection, headers, body).await
}

/// `POST /hooks/{workspace}/{connection}`. The connection's secret is the workspace's own, so a sender
/// of one workspace cannot trigger another's flows.
pub async fn receive(
    State(server): State<Arc<Server>>,
    Path((workspace, connection)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(state) = server.workspace(&workspace) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_workspace", format!("no workspace named {workspace:?}")).field("workspace"));
    };
    receive_in(state, connection, headers, body).await
}

/// Header naming a delivery: a repeat within `[server] webhook_dedup_window_seconds` gets no new job.
pub const DELIVERY_HEADER: &str = "x-ferry-delivery";

/// Answers a delivery and logs it (the dashboard's webhook log), accepted or refused and why. Deliveries
/// to unknown connections are not logged: anyone can send those.
async fn receive_in(state: &AppState, connection: String, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let received_at = state.clock.now();
    let bytes = body.len();
    let delivery = [DELIVERY_HEADER, WebhookAuth::Shopify.delivery_header()]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().chars().take(200).collect::<String>());
    let known = state.workspace.config.connections.contains_key(&connection);
    let result = answer(state, connection.clone(), headers, body).await;
    if known {
        let entry = match &result {
            Ok((status, Json(v))) => ferry_engine::store::dashboard::NewWebhookLog {
                connection,
                received_at,
                status: status.as_u16(),
                outcome: if v["duplicate"] == true {
                    "duplicate"
                } else if v["jobs"].as_array().is_some_and(|j| !j.is_empty()) {
                    "enqueued"
                } else {
                    "ignored"
                },
                code: None,
                message: v["note"].as_str().map(str::to_owned),
                delivery_id: delivery,
                jobs: v["jobs"].as_array().map(|a| a.iter().filter_map(|j| j["job"].as_i64()).collect()).unwrap_or_default(),
                bytes,
            },
            Err(e) => ferry_engine::store::dashboard::NewWebhookLog {
                connection,
                received_at,
                status: e.status.as_u16(),
                outcome: if e.status == StatusCode::UNAUTHORIZED { "rejected" } else { "failed" },
                code: Some(e.body.code.to_owned()),
                message: Some(e.body.message.clone()),
                delivery_id: delivery,
                jobs: Vec::new(),
                bytes,
            },
        };
        // The log is for people; a delivery's answer never depends on it.
        if let Err(e) = state.store.log_webhook(entry).await {
            tracing::warn!(error = %e, "could not log the webhook delivery");
        }
    }
    result
}

async fn answer(state: &AppState, connection: String, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let arrived = Instant::now();
    if !state.workspace.config.connections.contains_key(&connection) {
        // One series for every unknown name: unauthenticated callers must not grow the metrics.
        state.metrics.webhook("(unknown)", "unknown_connection");
        tracing::warn!(connection, "webhook for an unknown connection");
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {connection:?}")));
    }
    let env = crate::secret_env_name(state.env_workspace.as_deref(), &connection);
    let Some(secret) = state.secrets.get(&connection) else {
        state.metrics.webhook(&connection, "no_secret");
        state.webhook_rejected(&connection, "no_webhook_secret");
        tracing::warn!(connection, env = %env, "webhook refused: the connection has no webhook secret");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no_webhook_secret",
            format!("connection {connection} has no webhook_secret (option or env {env})"),
        ));
    };
    let connector = state.workspace.connection(&connection).map_err(|e| ApiError::internal(e.to_string()))?;
    let auth = connector.webhook_auth();
    if let Err(e) = verify_by(auth, secret.expose(), &headers, &body, state.clock.now()) {
        state.metrics.webhook(&connection, "rejected");
        state.webhook_rejected(&connection, e.body.code);
        tracing::warn!(connection, code = e.body.code, reason = %e.body.message, bytes = body.len(), "webhook rejected; nothing enqueued");
        return Err(e);
    }
    let payload: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    let description = connector.describe();
    if !description.webhooks {
        // Accepted (the sender did nothing wrong and should not retry) but there is nothing to re-fetch:
        // this type reads whole files or pushed records, not single records a webhook could name.
        state.metrics.webhook(&connection, "ignored");
        tracing::info!(workspace = %state.name, connection, kind = description.name, "webhook to a connection without webhook support; nothing enqueued");
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "jobs": [],
                "note": format!(
                    "connection {connection} is of type {} which has no targeted sync: a webhook starts nothing; its flows run on their schedule or a trigger",
                    description.name
                ),
            })),
        ));
    }
    let now = state.clock.now();
    let delivery = delivery_id(&headers, auth.delivery_header())?;
    if let Some(id) = &delivery {
        let window = chrono::Duration::from_std(state.settings.webhook_dedup_window).unwrap_or(chrono::Duration::MAX);
        let since = now.checked_sub_signed(window).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        state.store.forget_deliveries(since).await?;
        if !state.store.claim_delivery(&connection, id, now).await? {
            let first = state.store.seen_delivery(&connection, id, since).await?.unwrap_or_default();
            state.metrics.webhook(&connection, "duplicate");
            tracing::info!(workspace = %state.name, connection, delivery = %id, "repeated webhook delivery acknowledged; no new job");
            return Ok((StatusCode::OK, Json(serde_json::json!({"jobs": [], "duplicate": true, "delivery": id, "first_jobs": first}))));
        }
    }
    let enqueued = enqueue_signals(state, &connection, connector.webhook_signals(&payload), arrived, now).await;
    let jobs = match enqueued {
        Ok(jobs) => jobs,
        Err(e) => {
            if let Some(id) = &delivery {
                // The sender will retry: that retry must not be taken for a duplicate.
                let _ = state.store.release_delivery(&connection, id).await;
            }
            return Err(e);
        }
    };
    if let Some(id) = &delivery {
        let ids: Vec<i64> = jobs.iter().filter_map(|j| j["job"].as_i64()).collect();
        state.store.set_delivery_jobs(&connection, id, &ids).await?;
    }
    state.metrics.webhook(&connection, if jobs.is_empty() { "ignored" } else { "enqueued" });
    tracing::info!(workspace = %state.name, connection, jobs = jobs.len(), "webhook accepted");
    if jobs.is_empty() {
        let note = format!("the event names no record that an enabled flow reads from connection {connection}: nothing enqueued");
        return Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "jobs": jobs, "note": note }))));
    }
    state.wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "jobs": jobs }))))
}

/// The delivery id (`X-Ferry-Delivery`, or the scheme's own header), when sent: 1–200 visible ASCII
/// characters.
fn delivery_id(headers: &HeaderMap, header: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header) else { return Ok(None) };
    let id = v.to_str().map(str::trim).unwrap_or_default();
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(format!("{header}: 1 to 200 visible ASCII characters")).field(header.to_owned()));
    }
    Ok(Some(id.to_owned()))
}

async fn enqueue_signals(
    state: &AppState,
    connection: &str,
    signals: Vec<(ferry_model::Stream, Vec<String>)>,
    arrived: Instant,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut jobs = Vec::new();
    for (stream, keys) in signals {
        if keys.is_empty() {
            continue;
        }
        for (flow, conf) in &state.workspace.config.flows {
            if !conf.enabled || conf.source != connection || conf.stream != stream {
                continue;
            }
            let mut job = NewJob::new(flow.clone(), JobKind::Webhook, now);
            job.keys = Some(keys.clone());
            let e = state.store.enqueue(job).await?;
            state.webhook_arrivals.lock().expect("arrivals lock").insert(e.id, arrived);
            jobs.push(serde_json::json!({"job": e.id, "flow": flow, "stream": stream, "keys": keys}));
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(sig: Option<&str>, ts: Option<i64>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(s) = sig {
            h.insert("x-ferry-signature", s.parse().unwrap());
        }
        if let Some(t) = ts {
            h.insert("x-ferry-timestamp", t.to_string().parse().unwrap());
        }
        h
    }

    #[test]
    fn good_bad_missing_and_stale_signatures() {
        let now = chrono::Utc::now();
        let body = br#"{"type":"variant.updated","skus":["A"]}"#;
        let good = sign("s3cret", body);
        assert!(verify("s3cret", &headers(Some(&good), Some(now.timestamp())), body, now).is_ok());
        let code = |r: Result<(), ApiError>| r.unwrap_err().body.code;
        assert_eq!(code(verify("other", &headers(Some(&good), Some(now.timestamp())), body, now)), "invalid_signature");
        assert_eq!(code(verify("s3cret", &headers(Some(&good), Some(now.timestamp())), b"{}", now)), "invalid_signature");
        assert_eq!(code(verify("s3cret", &headers(None, Some(now.timestamp())), body, now)), "invalid_signature");
        assert_eq!(code(verify("s3cret", &headers(Some("sha256=zz"), Some(now.timestamp())), body, now)), "invalid_signature");
        assert_eq!(code(verify("s3cret", &headers(Some(&good), None), body, now)), "stale_timestamp");
        assert_eq!(code(verify("s3cret", &headers(Some(&good), Some(now.timestamp() - 301)), body, now)), "stale_timestamp");
        assert!(verify("s3cret", &headers(Some(&good), Some(now.timestamp() - 299)), body, now).is_ok());
    }

    /// Shopify's example: the header is base64(HMAC-SHA256(secret, raw body)).
    fn shopify_sign(secret: &str, body: &[u8]) -> String {
        use base64::Engine as _;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn shopify_signatures_are_checked_on_the_raw_body() {
        let now = chrono::Utc::now();
        let body = br##"{"id":820982911946154508,"name":"#1001","order_number":1001,"line_items":[]}"##;
        let mut h = HeaderMap::new();
        h.insert("x-shopify-hmac-sha256", shopify_sign("shpss_secret", body).parse().unwrap());
        h.insert("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".parse().unwrap());
        assert!(verify_by(WebhookAuth::Shopify, "shpss_secret", &h, body, now).is_ok());
        let code = |r: Result<(), ApiError>| r.unwrap_err().body.code;
        assert_eq!(code(verify_by(WebhookAuth::Shopify, "other", &h, body, now)), "invalid_signature");
        // the same JSON re-serialised is not the body that was signed
        assert_eq!(code(verify_by(WebhookAuth::Shopify, "shpss_secret", &h, br#"{"id": 820982911946154508}"#, now)), "invalid_signature");
        let mut bad = h.clone();
        bad.insert("x-shopify-hmac-sha256", "not base64!".parse().unwrap());
        assert_eq!(code(verify_by(WebhookAuth::Shopify, "shpss_secret", &bad, body, now)), "invalid_signature");
        assert_eq!(code(verify_by(WebhookAuth::Shopify, "shpss_secret", &HeaderMap::new(), body, now)), "invalid_signature");
        // a Ferry-signed delivery does not pass as Shopify's, nor the other way round
        assert_eq!(code(verify_by(WebhookAuth::Ferry, "shpss_secret", &h, body, now)), "invalid_signature");
        let ferry = headers(Some(&sign("shpss_secret", body)), Some(now.timestamp()));
        assert_eq!(code(verify_by(WebhookAuth::Shopify, "shpss_secret", &ferry, body, now)), "invalid_signature");
        // the delivery is named by X-Shopify-Webhook-Id
        assert_eq!(delivery_id(&h, WebhookAuth::Shopify.delivery_header()).unwrap().as_deref(), Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"));
        assert_eq!(delivery_id(&h, WebhookAuth::Ferry.delivery_header()).unwrap(), None);
    }

    #[test]
    fn a_stale_timestamp_is_old_and_a_future_one_is_ahead() {
        let now = chrono::Utc::now();
        let body = b"{}";
        let good = sign("k", body);
        let message = |ts: i64| verify("k", &headers(Some(&good), Some(ts)), body, now).unwrap_err().body.message;
        assert_eq!(message(now.timestamp() - 600), "timestamp is 600 s old (limit 300 s)");
        assert!(message(now.timestamp() + 600).starts_with("timestamp is 600 s in the future"), "{}", message(now.timestamp() + 600));
        assert!(message(i64::MIN).contains("s old"), "no overflow on an absurd timestamp");
    }
}
