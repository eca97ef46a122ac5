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
    "method_not_allowed",
    "timeout",
    "body_too_large",
    "unsupported_media_type",
    "overloaded",
];

/// Gives every error answer the one shape: axum's own rejections (a path or query value that does not
/// parse, a body over the limit, a missing content type) and the router's 404/405 are plain text or
/// empty; they become `{"error": {…}}` with a stable code, keeping the status and headers (`Allow`).
pub async fn error_shape(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // The dashboard's error pages are HTML for people, not API answers.
    let is_html = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || is_html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
    let (code, fallback) = status_code_default(status);
    let message = if text.is_empty() { fallback.to_owned() } else { text };
    let shaped = ApiError::new(status, code, message).into_response();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    let (_, body) = shaped.into_parts();
    Response::from_parts(parts, body)
}

/// The code and message for an error status that came without a body of ours.
fn status_code_default(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("invalid_request", "the request is malformed"),
        401 => ("unauthorized", "authentication required"),
        403 => ("forbidden", "not allowed"),
        404 => ("not_found", "no such resource"),
        405 => ("method_not_allowed", "this endpoint does not take that method"),
        408 => ("timeout", "the request took too long"),
        413 => ("body_too_large", "the request body is over the limit"),
        415 => ("unsupported_media_type", "send the body as application/json"),
        422 => ("invalid_request", "the request body does not have the expected shape"),
        503 => ("overloaded", "the server is busy; retry shortly"),
        s if s >= 500 => ("internal", "internal error"),
        _ => ("invalid_request", "the request was refused"),
    }
}

/// The answer when a limit stops a request: the timeout (408) or the concurrency limit (503).
pub fn limit_error(e: tower::BoxError) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!("request timed out");
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took longer than the server's request_timeout_seconds").into_response()
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        tracing::warn!("request refused: max_concurrent_requests reached");
        let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the server is handling max_concurrent_requests already; retry shortly")
            .into_response();
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        r
    } else {
        tracing::error!(error = %e, "request failed in a middleware");
        ApiError::internal("internal error").into_response()
    }
}
