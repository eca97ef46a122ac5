//! API keys: `Authorization: Bearer <token>`; each endpoint names the scope it needs.

use crate::{AppState, error::ApiError};
use axum::http::HeaderMap;
use ferry_engine::store::KeyStore;
use ferry_engine::store::keys::{ApiKey, Scope};

pub async fn require(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<ApiKey, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("send an API key as `Authorization: Bearer <key>` (create one with `ferry keys create`)"))?;
    let Some(key) = state.store.verify_key(token).await? else {
        // The token itself is never logged; its public id part is, when it has the shape of one.
        let id = token.strip_prefix("fy_").and_then(|t| t.split('_').next()).unwrap_or("?");
        tracing::warn!(key_id = id, "rejected API request: unknown or revoked key");
        return Err(ApiError::unauthorized("unknown or revoked API key"));
    };
    if !key.allows(scope) {
        tracing::warn!(key_id = %key.id, needed = scope.as_str(), "rejected API request: missing scope");
        return Err(ApiError::forbidden(format!("this key lacks the {} scope", scope.as_str())));
    }
    Ok(key)
}
