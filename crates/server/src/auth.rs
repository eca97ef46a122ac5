//! API keys: `Authorization: Bearer <token>`; each endpoint names the scope it needs.
//!
//! A key is stored in exactly one workspace's state store, so the key alone decides which workspace a
//! request acts on: handlers get that workspace's state and nothing else, and no URL names another.

use crate::{AppState, Server, error::ApiError};
use axum::http::HeaderMap;
use ferry_engine::store::KeyStore;
use ferry_engine::store::keys::{ApiKey, Scope};
use std::sync::Arc;

/// The key's workspace and the key, when the key is valid and has `scope`.
pub async fn require(server: &Server, headers: &HeaderMap, scope: Scope) -> Result<(Arc<AppState>, ApiKey), ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("send an API key as `Authorization: Bearer <key>` (create one with `ferry keys create`)"))?;
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
    if !key.allows(scope) {
        tracing::warn!(key_id = %key.id, workspace = %state.name, needed = scope.as_str(), "rejected API request: missing scope");
        return Err(ApiError::forbidden(format!("this key lacks the {} scope", scope.as_str())));
    }
    Ok((state, key))
}
