//! API keys: `Authorization: Bearer <token>`; each endpoint names the scope it needs.
//!
//! A key is stored in exactly one workspace's state store, so the key alone decides which workspace a
//! request acts on: handlers get that workspace's state and nothing else, and no URL names another.

use crate::{AppState, Server, error::ApiError};
use axum::http::HeaderMap;
use ferry_engine::store::keys::{ApiKey, Scope};
use std::sync::Arc;

/// The key's workspace and the key, when the key is valid and has `scope`.
pub async fn require(server: &Server, headers: &HeaderMap, scope: Scope) -> Result<(Arc<AppState>, ApiKey), ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("send an API key as `Authorization: Bearer <key>` (create one with `ferry keys create`)"))?;
    let (state, key) = key_of(server, token).await?;
    if !key.allows(scope) {
        tracing::warn!(key_id = %key.id, workspace = %state.name, needed = scope.as_str(), "rejected API request: missing scope");
        return Err(ApiError::forbidden(format!("this key lacks the {} scope", scope.as_str())));
    }
    Ok((state, key))
}

/// The workspace a valid, unrevoked token belongs to, and its key (401 otherwise).
pub async fn key_of(server: &Server, token: &str) -> Result<(Arc<AppState>, ApiKey), ApiError> {
    // The token itself is never logged; its public id part is, when it has the shape of one.
    let id = token.strip_prefix("fy_").and_then(|t| t.split('_').next()).unwrap_or("?");
    let mut found: Option<(Arc<AppState>, ApiKey)> = None;
    for state in server.workspaces.values() {
        if let Some(key) = state.store.verify_key(token).await? {
            if let Some((other, _)) = &found {
                // Only a copied state file can do this; refusing beats guessing a tenant.
                tracing::error!(key_id = id, a = %other.name, b = %state.name, "API key exists in two workspaces (copied state file?); refused");
                return Err(ApiError::unauthorized("unknown or revoked API key"));
            }
            found = Some((state.clone(), key));
        }
    }
    let Some((state, key)) = found else {
        tracing::warn!(key_id = id, "rejected API request: unknown or revoked key");
        return Err(ApiError::unauthorized("unknown or revoked API key"));
    };
    Ok((state, key))
}

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Runs before an API handler reads its body: a request without a known key is answered 401 before a
/// byte of its body is buffered (the handler checks the scope afterwards).
pub async fn known_key_first(
    axum::extract::State(server): axum::extract::State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    require(&server, request.headers(), Scope::Read).await.map(|_| ()).or_else(|e| if e.status == axum::http::StatusCode::FORBIDDEN { Ok(()) } else { Err(e) })?;
    Ok(next.run(request).await)
}

/// `/metrics` callers: the operator's `FERRY_METRICS_TOKEN` sees every workspace; a workspace's API key
/// (any scope) sees that workspace alone. Anyone else sees nothing: metrics name flows and connections.
pub enum MetricsViewer {
    Operator,
    Workspace(Arc<AppState>),
}

pub async fn metrics_viewer(server: &Server, headers: &HeaderMap) -> Result<MetricsViewer, ApiError> {
    if let (Some(expected), Some(given)) = (&server.settings.metrics_token, bearer(headers)) {
        use subtle_eq::ct_eq;
        if ct_eq(expected.expose().as_bytes(), given.as_bytes()) {
            return Ok(MetricsViewer::Operator);
        }
    }
    if bearer(headers).is_none() {
        return Err(ApiError::unauthorized(format!(
            "metrics name workspaces' flows: send `Authorization: Bearer <{}>` or a workspace's API key",
            crate::METRICS_TOKEN_ENV
        )));
    }
    let (state, _) = require(server, headers, Scope::Read).await?;
    Ok(MetricsViewer::Workspace(state))
}

mod subtle_eq {
    /// Compares without an early exit, so the time taken tells nothing about where two tokens differ.
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        // Hashing first makes the lengths equal (and the length of the secret unobservable).
        let (a, b) = (Sha256::digest(a), Sha256::digest(b));
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
