//! The API's one error shape: `{"error": {"code": "…", "message": "…", "field": …}}`.
//!
//! Codes are stable (clients switch on them); messages are for people and may change.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody { code, message: message.into(), field: None } }
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }
    /// Missing or unknown API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// The key lacks the scope.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// Malformed request (bad JSON, bad parameter).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.body }))).into_response()
    }
}

impl From<ferry_engine::store::StoreError> for ApiError {
    fn from(e: ferry_engine::store::StoreError) -> Self {
        tracing::error!(error = %e, "state store error");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
    }
}

/// Answers a panic in a handler with the API's error shape and status 500, and keeps the server up
/// (tower-http's catch-panic layer: without it the connection was dropped with no answer at all). The
/// panic's message is logged, not sent: it may quote data of another request.
pub fn catch_panic_layer() -> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send + 'static>) -> Response> {
    tower_http::catch_panic::CatchPanicLayer::custom(panic_response as fn(Box<dyn std::any::Any + Send + 'static>) -> Response)
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = ferry_engine::isolate::panic_message(payload.as_ref());
    tracing::error!(panic = %message, "a request handler panicked; answered 500");
    ApiError::internal("the server hit an internal error handling this request (it is logged); the request may be retried").into_response()
}

/// Every error code the API answers with (documented in openapi.json; a test keeps the two in step).
pub const CODES: &[&str] = &[
    "unauthorized",
    "forbidden",
    "not_found",
    "invalid_request",
    "internal",
    "store_unavailable",
    "unknown_flow",
    "unknown_stream",
    "unknown_connection",
    "unknown_workspace",
    "invalid_signature",
    "stale_timestamp",
    "no_webhook_secret",
    "too_many_records",
];
