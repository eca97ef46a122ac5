//! Medusa 2 Admin API client: JSON over HTTP.
//!
//! - Auth: a secret API key (`sk_…`) sent as HTTP Basic with the key as username and no password, or an
//!   admin user's JWT from `POST /auth/user/emailpass` sent as a bearer token (logged in again once when
//!   an answer is 401, the token having expired).
//! - Failures kept apart as in the Vendure client: transport / HTTP 5xx / 429 → [`ConnectorError`]
//!   (Transient) naming the endpoint, sent again inside the client when safe (GET always, POST / DELETE only
//!   when Medusa certainly did not act on them, see [`crate::retry`]); 401/403 → `Auth`; other 4xx →
//!   [`CallError::Rejected`] with Medusa's `{type, message}`, usually one record's bad input.

use crate::retry::{Idempotency, RequestRetry, TransientCause, retry_after_of, status_message};
use ferry_engine::{ConnectorError, ErrorKind, RecordFailure};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::RwLock;

/// How the client proves who it is.
#[derive(Clone, Debug)]
pub enum Auth {
    /// A secret API key (Settings → Secret API Keys).
    ApiKey(String),
    /// An admin user's e-mail and password, exchanged for a JWT.
    User { email: String, password: String },
}

#[derive(Clone, Debug)]
pub enum CallError {
    /// The call as a whole failed (network, 5xx, 429, auth).
    Connector(ConnectorError),
    /// Medusa refused the input (HTTP 4xx other than auth): `type` and `message` of its answer.
    Rejected { status: u16, kind: String, message: String },
}

impl CallError {
    /// The failure of one record caused by this call: refused input needs a person (a 404 of something
    /// not yet there may pass), transport problems are retryable.
    pub fn for_record(&self, field: Option<&str>) -> RecordFailure {
        match self {
            CallError::Connector(e) => RecordFailure { field: field.map(str::to_owned), message: e.to_string(), retryable: e.is_transient() },
            CallError::Rejected { status, kind, message } => RecordFailure {
                field: field.map(str::to_owned),
                message: format!("Medusa refused it (HTTP {status} {kind}): {message}"),
                retryable: *status == 409,
            },
        }
    }

    pub fn into_connector(self, endpoint: &str) -> ConnectorError {
        match self {
            CallError::Connector(e) => e,
            CallError::Rejected { status, kind, message } => ConnectorError::permanent(endpoint, format!("HTTP {status} {kind}: {message}")),
        }
    }
}

impl From<ConnectorError> for CallError {
    fn from(e: ConnectorError) -> Self {
        CallError::Connector(e)
    }
}

pub struct Rest {
    http: reqwest::Client,
    /// Base URL without the trailing slash, also the endpoint named in errors.
    pub base: String,
    auth: Auth,
    token: RwLock<Option<String>>,
    calls: AtomicU64,
    retry: RequestRetry,
}

impl Rest {
    pub fn new(base: &str, auth: Auth, timeout: Duration) -> Result<Self, ConnectorError> {
        let base = base.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            // Node closes idle keep-alive connections after 5 s: drop ours first (see the Vendure client).
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| ConnectorError::config(&base, format!("HTTP client: {e}")))?;
        Ok(Rest { http, base, auth, token: RwLock::new(None), calls: AtomicU64::new(0), retry: RequestRetry::DEFAULT })
    }

    /// Another per-request retry policy (tests use a fast one).
    pub fn with_retry(mut self, retry: RequestRetry) -> Self {
        self.retry = retry;
        self
    }

    /// HTTP requests sent so far (login included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Exchanges the user's e-mail and password for a JWT (nothing to do with an API key).
    pub async fn login(&self) -> Result<(), ConnectorError> {
        let Auth::User { email, password } = &self.auth else { return Ok(()) };
        let url = format!("{}/auth/user/emailpass", self.base);
        let body = json!({"email": email, "password": password});
        let answer = self.send(Method::POST, &url, Some(&body), None, Idempotency::Safe).await;
        let token = match answer {
            Ok(v) => v["token"].as_str().map(str::to_owned),
            Err(CallError::Rejected { message, .. }) => {
                return Err(ConnectorError::new(ErrorKind::Auth, &self.base, format!("login as {email:?} refused: {message}")));
            }
            Err(CallError::Connector(e)) => return Err(e),
        };
        let token = token.ok_or_else(|| ConnectorError::new(ErrorKind::Auth, &self.base, "login answered without a token"))?;
        *self.token.write().await = Some(token);
        Ok(())
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ConnectorError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| ConnectorError::config(&self.base, format!("URL {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.call(Method::GET, url.as_str(), None).await.map_err(|e| e.into_connector(&format!("{}{path}", self.base)))
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(Method::POST, &format!("{}{path}", self.base), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CallError> {
        self.call(Method::DELETE, &format!("{}{path}", self.base), None).await
    }

    async fn call(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let idempotency = if method == Method::GET { Idempotency::Safe } else { Idempotency::Unsafe };
        let mut relogged = false;
        loop {
            let header = match &self.auth {
                Auth::ApiKey(key) => Credential::Basic(key.clone()),
                Auth::User { .. } => {
                    if self.token.read().await.is_none() {
                        self.login().await?;
                    }
                    Credential::Bearer(self.token.read().await.clone().unwrap_or_default())
                }
            };
            match self.send(method.clone(), url, body, Some(&header), idempotency).await {
                Err(CallError::Connector(e)) if e.kind == ErrorKind::Auth && matches!(self.auth, Auth::User { .. }) && !relogged => {
                    relogged = true;
                    *self.token.write().await = None;
                }
                other => return other,
            }
        }
    }

    /// One request, sent again after a transient failure when that is safe (see [`crate::retry`]).
    async fn send(&self, method: Method, url: &str, body: Option<&Value>, auth: Option<&Credential>, idempotency: Idempotency) -> Result<Value, CallError> {
        let mut attempt = 1;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match self.send_once(method.clone(), url, body, auth).await {
                Ok(v) => return Ok(v),
                Err(Failure::Transient(e, cause)) if self.retry.should_retry(attempt, idempotency, cause) => {
                    let delay = self.retry.delay(attempt, e.retry_after);
                    tracing::warn!(endpoint = %url, attempt, ?delay, error = %e.message, "transient failure; sending the request again");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(Failure::Transient(mut e, _)) => {
                    if attempt > 1 {
                        e.message = format!("{} (after {attempt} attempts)", e.message);
                    }
                    return Err(CallError::Connector(e));
                }
                Err(Failure::Other(e)) => return Err(e),
            }
        }
    }

    async fn send_once(&self, method: Method, url: &str, body: Option<&Value>, auth: Option<&Credential>) -> Result<Value, Failure> {
        let endpoint = endpoint_of(url);
        let mut req = self.http.request(method.clone(), url);
        req = match auth {
            // Medusa reads a secret API key as the Basic username with an empty password.
            Some(Credential::Basic(key)) => req.basic_auth(key, None::<&str>),
            Some(Credential::Bearer(token)) => req.bearer_auth(token),
            None => req,
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let cause = if e.is_connect() { TransientCause::NotSent } else { TransientCause::Unknown };
            Failure::Transient(ConnectorError::transient(&endpoint, format!("{method} request failed: {}", transport_message(&e))), cause)
        })?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            let retry_after = retry_after_of(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let cause = if status == 429 { TransientCause::Refused } else { TransientCause::Unknown };
            return Err(Failure::Transient(
                ConnectorError::transient(&endpoint, format!("{method}: {}: {}", status_message(status, retry_after), truncate(&text, 300))).with_retry_after(retry_after),
                cause,
            ));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Transient(ConnectorError::transient(&endpoint, format!("reading the answer: {}", transport_message(&e))), TransientCause::Unknown))?;
        let parsed: Option<Value> = if text.trim().is_empty() { Some(Value::Null) } else { serde_json::from_str(&text).ok() };
        if status == 401 || status == 403 {
            return Err(Failure::Other(CallError::Connector(ConnectorError::new(ErrorKind::Auth, &endpoint, format!("{method}: {}: {}", status_message(status, None), truncate(&text, 300))))));
        }
        if !(200..300).contains(&status) {
            let (kind, message) = match &parsed {
                Some(v) => (v["type"].as_str().unwrap_or("error").to_owned(), v["message"].as_str().map(str::to_owned).unwrap_or_else(|| truncate(&text, 300))),
                None => ("error".to_owned(), truncate(&text, 300)),
            };
            return Err(Failure::Other(CallError::Rejected { status, kind, message: format!("{message} ({method} {endpoint})") }));
        }
        parsed.ok_or_else(|| Failure::Other(CallError::Connector(ConnectorError::permanent(&endpoint, format!("HTTP {status}: answer is not JSON: {}", truncate(&text, 300))))))
    }
}

/// What one request carries in its Authorization header.
enum Credential {
    Basic(String),
    Bearer(String),
}

enum Failure {
    Transient(ConnectorError, TransientCause),
    Other(CallError),
}

/// The URL without its query (errors name the route, not a long `fields=` list).
fn endpoint_of(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_input_fails_the_record_and_names_medusa_s_message() {
        let e = CallError::Rejected { status: 400, kind: "invalid_data".into(), message: "Invalid request: Field 'title' is required".into() };
        let f = e.for_record(Some("name"));
        assert_eq!(f.field.as_deref(), Some("name"));
        assert!(f.message.contains("invalid_data") && f.message.contains("'title' is required"), "{}", f.message);
        assert!(!f.retryable);
        assert_eq!(endpoint_of("http://x/admin/orders?fields=*items"), "http://x/admin/orders");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_error_naming_the_route() {
        let rest = Rest::new("http://127.0.0.1:9/", Auth::ApiKey("sk".into()), Duration::from_secs(5))
            .unwrap()
            .with_retry(RequestRetry { attempts: 1, backoff: ferry_engine::backoff::Backoff { base: Duration::from_millis(1), max: Duration::from_millis(1) } });
        let err = rest.get("/admin/regions", &[("limit", "1".into())]).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.endpoint, "http://127.0.0.1:9/admin/regions");
    }
}
