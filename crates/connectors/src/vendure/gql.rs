//! Vendure Admin API client: GraphQL over HTTP with a bearer token.
//!
//! - Login is `mutation login(...)`; Vendure returns the session token in the `vendure-auth-token`
//!   response header (bearer token method). A call answered with `FORBIDDEN` after the token expired logs
//!   in again once and repeats the call.
//! - Three kinds of failure, kept apart because the engine treats them differently:
//!   transport / HTTP 5xx / 429 → [`ConnectorError`] (Transient) naming the endpoint: queries and login
//!   are sent again inside the client (see [`crate::retry`], `Retry-After` honoured), mutations only when
//!   Vendure certainly did not act on them, otherwise the engine retries the whole call; GraphQL `errors` → [`CallError::Graphql`] (usually one record's bad input); and mutation
//!   results that come back as HTTP 200 union types carrying an `errorCode` (`ErrorResult`), which
//!   [`error_result`] turns into that record's [`RecordFailure`].

use crate::retry::{Idempotency, RequestRetry, TransientCause, retry_after_of, status_message};
use ferry_engine::{ConnectorError, ErrorKind, RecordFailure};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::RwLock;

/// One GraphQL error as Vendure reports it.
#[derive(Clone, Debug)]
pub struct GqlError {
    pub message: String,
    /// `extensions.code`, e.g. `USER_INPUT_ERROR`, `FORBIDDEN`, `ENTITY_NOT_FOUND`.
    pub code: Option<String>,
    /// The response path, e.g. `["c3", "createCustomer"]` for an aliased field.
    pub path: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum CallError {
    /// The call as a whole failed (network, 5xx, 429, login refused).
    Connector(ConnectorError),
    /// The server answered with GraphQL errors; `data` holds what did succeed (aliased fields).
    Graphql { errors: Vec<GqlError>, data: Value },
}

impl CallError {
    /// The failure of one record caused by this call (GraphQL errors are the record's input; transport
    /// problems are retryable).
    pub fn for_record(&self, field: Option<&str>) -> RecordFailure {
        match self {
            CallError::Connector(e) => RecordFailure {
                field: field.map(str::to_owned),
                message: e.to_string(),
                retryable: e.is_transient(),
            },
            CallError::Graphql { errors, .. } => {
                let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                // Locks and internal errors of the server can pass; input errors need a person.
                let retryable = errors.iter().all(|e| e.code.as_deref() == Some("INTERNAL_SERVER_ERROR"));
                RecordFailure { field: field.map(str::to_owned), message, retryable }
            }
        }
    }

    /// Errors whose path starts at `alias` (for aliased multi-field mutations).
    pub fn errors_at(&self, alias: &str) -> Vec<GqlError> {
        match self {
            CallError::Graphql { errors, .. } => errors.iter().filter(|e| e.path.first().map(String::as_str) == Some(alias)).cloned().collect(),
            CallError::Connector(_) => Vec::new(),
        }
    }

    pub fn into_connector(self, endpoint: &str) -> ConnectorError {
        match self {
            CallError::Connector(e) => e,
            CallError::Graphql { errors, .. } => ConnectorError::permanent(
                endpoint,
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
            ),
        }
    }
}

impl std::fmt::Display for GqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path.join("."))?;
        }
        Ok(())
    }
}

impl From<ConnectorError> for CallError {
    fn from(e: ConnectorError) -> Self {
        CallError::Connector(e)
    }
}

/// If `value` is a Vendure `ErrorResult` (it has an `errorCode`), the record's failure. `field` names the
/// canonical field or input the mutation wrote, when known.
pub fn error_result(value: &Value, field: Option<&str>) -> Option<RecordFailure> {
    let code = value.get("errorCode")?.as_str()?;
    let message = value.get("message").and_then(Value::as_str).unwrap_or("");
    // Extra detail some error results carry (e.g. `transitionError`, `conflictingEmailAddress`).
    let detail = ["transitionError", "paymentErrorMessage", "fromState", "toState"]
        .iter()
        .filter_map(|k| value.get(*k).and_then(Value::as_str).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>();
    let mut text = format!("{code}: {message}");
    if !detail.is_empty() {
        text.push_str(&format!(" ({})", detail.join(", ")));
    }
    Some(RecordFailure { field: field.map(str::to_owned), message: text, retryable: false })
}

pub struct Gql {
    http: reqwest::Client,
    /// The Admin API URL, also the endpoint named in errors.
    pub endpoint: String,
    username: String,
    password: String,
    channel_token: Option<String>,
    token: RwLock<Option<String>>,
    calls: AtomicU64,
    retry: RequestRetry,
    /// Requests and time spent per operation (first field of the document), for "where the time goes".
    timings: std::sync::Mutex<std::collections::BTreeMap<String, (u64, Duration)>>,
}

impl Gql {
    pub fn new(endpoint: String, username: String, password: String, channel_token: Option<String>, timeout: Duration) -> Result<Self, ConnectorError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            // Node (Vendure) closes idle keep-alive connections after 5 s; reusing one it is closing
            // gives "connection reset". Drop ours first.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| ConnectorError::config(&endpoint, format!("HTTP client: {e}")))?;
        Ok(Gql { http, endpoint, username, password, channel_token, token: RwLock::new(None), calls: AtomicU64::new(0), retry: RequestRetry::DEFAULT, timings: Default::default() })
    }

    /// Another per-request retry policy (tests use a fast one).
    pub fn with_retry(mut self, retry: RequestRetry) -> Self {
        self.retry = retry;
        self
    }

    /// HTTP requests sent so far (login included): for the benchmark's "calls per record".
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Requests and total time per operation so far: `(operation, requests, time)`.
    pub fn timings(&self) -> Vec<(String, u64, Duration)> {
        self.timings.lock().map(|t| t.iter().map(|(k, (n, d))| (k.clone(), *n, *d)).collect()).unwrap_or_default()
    }

    /// Logs in and stores the token; `Auth` error when the credentials are refused.
    pub async fn login(&self) -> Result<(), ConnectorError> {
        let q = "mutation($u:String!,$p:String!){ login(username:$u,password:$p,rememberMe:true){ __typename ... on CurrentUser { id identifier } ... on ErrorResult { errorCode message } } }";
        // logging in twice does no harm
        let (body, token) = self.post(q, json!({"u": self.username, "p": self.password}), None, Idempotency::Safe).await?;
        let login = &body["data"]["login"];
        if let Some(f) = error_result(login, None) {
            return Err(ConnectorError::new(ErrorKind::Auth, &self.endpoint, format!("login as {:?} refused: {}", self.username, f.message)));
        }
        if let Some(errors) = body.get("errors") {
            return Err(ConnectorError::new(ErrorKind::Auth, &self.endpoint, format!("login as {:?} failed: {errors}", self.username)));
        }
        let token = token.ok_or_else(|| {
            ConnectorError::new(ErrorKind::Auth, &self.endpoint, "login answered without a vendure-auth-token header (is tokenMethod 'bearer' enabled?)")
        })?;
        *self.token.write().await = Some(token);
        Ok(())
    }

    /// Runs a query or mutation and returns `data`. GraphQL errors become [`CallError::Graphql`].
    pub async fn call(&self, query: &str, variables: Value) -> Result<Value, CallError> {
        let mut token = self.token.read().await.clone();
        if token.is_none() {
            self.login().await?;
            token = self.token.read().await.clone();
        }
        let mut relogged = false;
        let idempotency = idempotency_of(query);
        loop {
            let (body, _) = self.post(query, variables.clone(), token.as_deref(), idempotency).await?;
            let errors = parse_errors(&body);
            if !errors.is_empty() {
                // An expired or revoked session answers FORBIDDEN: log in again once.
                if !relogged && errors.iter().any(|e| e.code.as_deref() == Some("FORBIDDEN")) {
                    relogged = true;
                    self.login().await?;
                    token = self.token.read().await.clone();
                    continue;
                }
                return Err(CallError::Graphql { errors, data: body.get("data").cloned().unwrap_or(Value::Null) });
            }
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
    }

    /// Like [`Gql::call`] for reads: any error fails the whole call.
    pub async fn query(&self, query: &str, variables: Value) -> Result<Value, ConnectorError> {
        self.call(query, variables).await.map_err(|e| e.into_connector(&self.endpoint))
    }

    /// Many independent mutations in one HTTP request, as aliased fields `r0`, `r1`, …: `fields[i]` is the
    /// field call using the variable `$v{i}` of `var_type` (bound to `vars[i]`). Vendure runs each field
    /// in its own transaction, so one bad input fails only its own alias. One result per input, in order.
    pub async fn batch(&self, var_type: &str, fields: &[String], vars: &[Value]) -> Vec<Result<Value, CallError>> {
        if fields.is_empty() {
            return Vec::new();
        }
        let decls = (0..fields.len()).map(|i| format!("$v{i}:{var_type}")).collect::<Vec<_>>().join(",");
        let body = fields.iter().enumerate().map(|(i, f)| format!("{}: {f}", alias(i))).collect::<Vec<_>>().join("\n");
        let doc = format!("mutation({decls}) {{\n{body}\n}}");
        let mut variables = serde_json::Map::new();
        for (i, v) in vars.iter().enumerate() {
            variables.insert(format!("v{i}"), v.clone());
        }
        match self.call(&doc, Value::Object(variables)).await {
            Ok(data) => (0..fields.len()).map(|i| Ok(data[alias(i)].clone())).collect(),
            Err(CallError::Connector(e)) => (0..fields.len()).map(|_| Err(CallError::Connector(e.clone()))).collect(),
            Err(err @ CallError::Graphql { .. }) => {
                let data = match &err {
                    CallError::Graphql { data, .. } => data.clone(),
                    CallError::Connector(_) => Value::Null,
                };
                (0..fields.len())
                    .map(|i| {
                        let mine = err.errors_at(&alias(i));
                        if !mine.is_empty() {
                            Err(CallError::Graphql { errors: mine, data: Value::Null })
                        } else if data.get(alias(i)).is_some_and(|v| !v.is_null()) {
                            Ok(data[alias(i)].clone())
                        } else {
                            // An error without a path (document-level): it concerns every alias.
                            Err(err.clone())
                        }
                    })
                    .collect()
            }
        }
    }

    /// One request, sent again after a transient failure when that is safe (see [`crate::retry`]).
    async fn post(&self, query: &str, variables: Value, token: Option<&str>, idempotency: Idempotency) -> Result<(Value, Option<String>), ConnectorError> {
        let mut attempt = 1;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let result = self.post_inner(query, &variables, token).await;
            if let Ok(mut t) = self.timings.lock() {
                let e = t.entry(operation(query)).or_default();
                e.0 += 1;
                e.1 += started.elapsed();
            }
            match result {
                Ok(answer) => return Ok(answer),
                Err(Failure::Transient(e, cause)) if self.retry.should_retry(attempt, idempotency, cause) => {
                    let delay = self.retry.delay(attempt, e.retry_after);
                    tracing::warn!(endpoint = %self.endpoint, operation = %operation(query), attempt, ?delay, error = %e.message, "transient failure; sending the request again");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(Failure::Transient(mut e, _) | Failure::Other(mut e)) => {
                    if attempt > 1 {
                        e.message = format!("{} (after {attempt} attempts)", e.message);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// One HTTP round trip. A transient failure says whether Vendure may have acted on the request.
    async fn post_inner(&self, query: &str, variables: &Value, token: Option<&str>) -> Result<(Value, Option<String>), Failure> {
        let mut req = self.http.post(&self.endpoint).json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.channel_token {
            req = req.header("vendure-token", c);
        }
        let resp = req.send().await.map_err(|e| {
            // a connection that could not be opened carried nothing: safe to send again
            let cause = if e.is_connect() { TransientCause::NotSent } else { TransientCause::Unknown };
            Failure::Transient(ConnectorError::transient(&self.endpoint, format!("request failed: {}", transport_message(&e))), cause)
        })?;
        let status = resp.status();
        let token = resp.headers().get("vendure-auth-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if status.as_u16() == 429 || status.is_server_error() {
            let retry_after = retry_after_of(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let msg = format!("{}: {}", status_message(status.as_u16(), retry_after), truncate(&text, 300));
            // a 429 is a refusal: Vendure did not act on the request
            let cause = if status.as_u16() == 429 { TransientCause::Refused } else { TransientCause::Unknown };
            return Err(Failure::Transient(ConnectorError::transient(&self.endpoint, msg).with_retry_after(retry_after), cause));
        }
        let text = resp.text().await.map_err(|e| {
            Failure::Transient(ConnectorError::transient(&self.endpoint, format!("reading the answer: {}", transport_message(&e))), TransientCause::Unknown)
        })?;
        // GraphQL validation errors come with HTTP 400 and a normal errors body.
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Other(ConnectorError::permanent(&self.endpoint, format!("HTTP {status}: answer is not JSON ({e}): {}", truncate(&text, 300))))
        })?;
        if !status.is_success() && body.get("errors").is_none() {
            let kind = if status.as_u16() == 401 || status.as_u16() == 403 { ErrorKind::Auth } else { ErrorKind::Permanent };
            return Err(Failure::Other(ConnectorError::new(kind, &self.endpoint, format!("{}: {}", status_message(status.as_u16(), None), truncate(&text, 300)))));
        }
        Ok((body, token))
    }
}

/// A failed round trip: transient (with whether Vendure may have acted on it) or not.
enum Failure {
    Transient(ConnectorError, TransientCause),
    Other(ConnectorError),
}

/// Queries (and a document without an operation keyword, which is a query) can be sent twice; mutations not.
fn idempotency_of(document: &str) -> Idempotency {
    if document.trim_start().starts_with("mutation") { Idempotency::Unsafe } else { Idempotency::Safe }
}

/// reqwest's Display hides the cause (connection refused, reset…): walk the chain.
fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// `mutation … { r0: createProduct(…` → `createProduct`: the first field name after the first `{`.
fn operation(query: &str) -> String {
    let after = query.split_once('{').map(|(_, r)| r).unwrap_or(query);
    let mut field = after.trim_start();
    // Skip an alias (`r0: createProduct`).
    if let Some((head, rest)) = field.split_once(':')
        && !head.contains(['(', '{', ' '])
    {
        field = rest.trim_start();
    }
    field.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("?").to_owned()
}

/// The `errors` of a GraphQL answer (public for the fuzz targets in `fuzz/`).
pub fn parse_errors(body: &Value) -> Vec<GqlError> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errs| {
            errs.iter()
                .map(|e| GqlError {
                    message: e.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned(),
                    code: e.pointer("/extensions/code").and_then(Value::as_str).map(str::to_owned),
                    path: e
                        .get("path")
                        .and_then(Value::as_array)
                        .map(|p| p.iter().map(|s| s.as_str().map(str::to_owned).unwrap_or_else(|| s.to_string())).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Quotes a string for a GraphQL document (used only for aliases' literal keys; values go in variables).
pub fn alias(i: usize) -> String {
    format!("r{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_results_are_record_failures_naming_the_field() {
        let v = json!({"errorCode": "EMAIL_ADDRESS_CONFLICT_ERROR", "message": "The email address is not available."});
        let f = error_result(&v, Some("email")).unwrap();
        assert_eq!(f.field.as_deref(), Some("email"));
        assert!(f.message.starts_with("EMAIL_ADDRESS_CONFLICT_ERROR: The email"), "{}", f.message);
        assert!(!f.retryable);
        assert!(error_result(&json!({"id": "1"}), None).is_none());
    }

    #[test]
    fn operations_are_named_by_their_first_field() {
        assert_eq!(operation("mutation($v0:X!) {\nr0: createProduct(input:$v0){ id }\nr1: createProduct(input:$v1){ id }}"), "createProduct");
        assert_eq!(operation("query($s:[String!]!){ productVariants(options:{}){ items { id } } }"), "productVariants");
        assert_eq!(operation("{ activeChannel { code } }"), "activeChannel");
    }

    #[test]
    fn queries_are_idempotent_and_mutations_are_not() {
        assert_eq!(idempotency_of("query($s:[String!]!){ productVariants { items { id } } }"), Idempotency::Safe);
        assert_eq!(idempotency_of("{ activeChannel { code } }"), Idempotency::Safe);
        assert_eq!(idempotency_of("\n mutation($v0:X!) { r0: createProduct(input:$v0){ id } }"), Idempotency::Unsafe);
    }

    #[test]
    fn graphql_errors_keep_code_and_path() {
        let body = json!({"errors": [{"message": "bad", "path": ["r1", "createCustomer"], "extensions": {"code": "USER_INPUT_ERROR"}}], "data": {"r0": {"id": "1"}, "r1": null}});
        let errs = parse_errors(&body);
        assert_eq!(errs[0].to_string(), "USER_INPUT_ERROR: bad (at r1.createCustomer)");
        let e = CallError::Graphql { errors: errs, data: body["data"].clone() };
        assert_eq!(e.errors_at("r1").len(), 1);
        assert!(e.errors_at("r0").is_empty());
        assert!(!e.for_record(Some("sku")).retryable);
    }
}
