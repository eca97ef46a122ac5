//! Tryton's JSON-RPC: login, the `Session` header, the user context as the last parameter of every model
//! call, Tryton's encoding of decimals and datetimes, and errors (which arrive with HTTP 200 as
//! `{"error": [kind, [message, description, ...]]}`).
//!
//! Endpoint: `POST <url>/<database>/rpc/`. A session that expired (HTTP 401 on a model call) is renewed
//! by logging in again once. Transport problems (connect, timeout, HTTP 5xx/429) are `Transient`; reads,
//! searches and login are sent again inside the client (see [`crate::retry`]), honouring `Retry-After`.

use crate::retry::{Idempotency, RequestRetry, TransientCause, retry_after_of, status_message};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use ferry_engine::{ConnectorError, ErrorKind, RecordFailure};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What went wrong with one RPC call, naming the endpoint and the `model.method` called.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{endpoint} {call}: {message}")]
pub struct RpcError {
    pub kind: RpcErrorKind,
    pub endpoint: String,
    /// e.g. `model.sale.sale.create`.
    pub call: String,
    pub message: String,
    /// The server's `Retry-After` (capped), when it sent one.
    pub retry_after: Option<Duration>,
    /// For transient errors: whether Tryton may have acted on the request.
    cause: TransientCause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcErrorKind {
    /// Connection refused/reset, timeout, HTTP 5xx or 429: trying again later may help. For a write the
    /// outcome is unknown (the request may have been applied).
    Transient,
    /// Login refused or the session could not be renewed.
    Auth,
    /// Tryton refused the data (`UserError`, `UserWarning`, `AccessError`, a domain/required violation).
    User,
    /// Anything else (an unexpected server exception, a response that is not JSON-RPC).
    Server,
}

impl RpcError {
    /// An error Ferry finds in an answer (not one Tryton reported), e.g. a `create` that answered no id.
    pub fn new(kind: RpcErrorKind, endpoint: &str, call: &str, message: impl Into<String>) -> RpcError {
        RpcError { kind, endpoint: ferry_engine::secrets::redact_url_credentials(endpoint), call: call.to_owned(), message: message.into(), retry_after: None, cause: TransientCause::Unknown }
    }

    pub fn is_transient(&self) -> bool {
        self.kind == RpcErrorKind::Transient
    }

    pub fn to_connector_error(&self) -> ConnectorError {
        let kind = match self.kind {
            RpcErrorKind::Transient => ErrorKind::Transient,
            RpcErrorKind::Auth => ErrorKind::Auth,
            RpcErrorKind::User | RpcErrorKind::Server => ErrorKind::Permanent,
        };
        ConnectorError::new(kind, format!("tryton {}", self.endpoint), format!("{}: {}", self.call, self.message)).with_retry_after(self.retry_after)
    }

    /// This error as one record's failure (`field` names the order field when known).
    pub fn to_record_failure(&self, field: Option<String>) -> RecordFailure {
        let message = format!("tryton {} {}: {}", self.endpoint, self.call, self.message);
        RecordFailure { field, message, retryable: self.is_transient() }
    }
}

impl From<RpcError> for ConnectorError {
    fn from(e: RpcError) -> Self {
        e.to_connector_error()
    }
}

struct Session {
    header: String,
    context: Map<String, Value>,
}

/// Time spent waiting on Tryton (for the benchmark's split between Tryton and Ferry's own work).
#[derive(Default)]
pub struct RpcStats {
    pub calls: AtomicU64,
    pub wait_nanos: AtomicU64,
}

impl RpcStats {
    pub fn snapshot(&self) -> (u64, Duration) {
        (self.calls.load(Ordering::Relaxed), Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)))
    }
}

/// A logged-in JSON-RPC client for one Tryton database.
pub struct Rpc {
    http: reqwest::Client,
    /// `<url>/<database>/rpc/`
    endpoint: String,
    username: String,
    password: String,
    session: Mutex<Option<Session>>,
    next_id: AtomicU64,
    retry: RequestRetry,
    pub stats: RpcStats,
}

impl Rpc {
    pub fn new(url: &str, database: &str, username: &str, password: &str, timeout: Duration) -> Result<Self, ConnectorError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .build()
            .map_err(|e| ConnectorError::config(format!("tryton {url}"), format!("HTTP client: {e}")))?;
        Ok(Rpc {
            http,
            endpoint: format!("{}/{}/rpc/", url.trim_end_matches('/'), database),
            username: username.to_owned(),
            password: password.to_owned(),
            session: Mutex::new(None),
            next_id: AtomicU64::new(1),
            retry: RequestRetry::DEFAULT,
            stats: RpcStats::default(),
        })
    }

    /// Another per-request retry policy (tests use a fast one).
    pub fn with_retry(mut self, retry: RequestRetry) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn err(&self, kind: RpcErrorKind, call: &str, message: impl Into<String>) -> RpcError {
        // Errors reach logs, the store and the API: never with credentials written into the URL.
        RpcError {
            kind,
            endpoint: ferry_engine::secrets::redact_url_credentials(&self.endpoint),
            call: call.to_owned(),
            message: ferry_engine::secrets::redact_url_credentials(&message.into()),
            retry_after: None,
            cause: TransientCause::Unknown,
        }
    }

    /// One call, sent again after a transient failure when that is safe (see [`crate::retry`]):
    /// `Ok(Err(status))` for an HTTP 401/403 the caller may want to handle.
    async fn post(&self, method: &str, params: &Value, auth: Option<&str>) -> Result<Result<Value, u16>, RpcError> {
        let idempotency = idempotency_of(method);
        let mut attempt = 1;
        loop {
            match self.post_once(method, params, auth).await {
                Err(e) if e.is_transient() && self.retry.should_retry(attempt, idempotency, e.cause) => {
                    let delay = self.retry.delay(attempt, e.retry_after);
                    tracing::warn!(endpoint = %ferry_engine::secrets::redact_url_credentials(&self.endpoint), call = method, attempt, ?delay, error = %e.message, "transient failure; sending the call again");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(mut e) if e.is_transient() && attempt > 1 => {
                    e.message = format!("{} (after {attempt} attempts)", e.message);
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// One HTTP round trip. `Ok(Err(status))` for an HTTP 401/403 the caller may want to handle.
    async fn post_once(&self, method: &str, params: &Value, auth: Option<&str>) -> Result<Result<Value, u16>, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"id": id, "method": method, "params": params});
        let mut req = self.http.post(&self.endpoint).json(&body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let started = Instant::now();
        let result = async {
            let resp = req.send().await.map_err(|e| {
                // a connection that could not be opened carried nothing: safe to send again
                let cause = if e.is_connect() { TransientCause::NotSent } else { TransientCause::Unknown };
                RpcError { cause, ..self.err(RpcErrorKind::Transient, method, transport_message(&e)) }
            })?;
            let status = resp.status().as_u16();
            let retry_after = retry_after_of(resp.headers());
            let text = resp.text().await.map_err(|e| self.err(RpcErrorKind::Transient, method, transport_message(&e)))?;
            Ok::<_, RpcError>((status, retry_after, text))
        }
        .await;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats.wait_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let (status, retry_after, text) = result?;
        match status {
            401 | 403 => return Ok(Err(status)),
            429 => {
                // Tryton itself answers 429 only to throttle logins; elsewhere it comes from a proxy in front.
                let why = if method == LOGIN { " (login attempts throttled)" } else { "" };
                let message = format!("{}{why}", status_message(status, retry_after));
                return Err(RpcError { retry_after, cause: TransientCause::Refused, ..self.err(RpcErrorKind::Transient, method, message) });
            }
            s if s >= 500 => {
                let message = format!("{}: {}", status_message(s, retry_after), snippet(&text));
                return Err(RpcError { retry_after, ..self.err(RpcErrorKind::Transient, method, message) });
            }
            s if s != 200 => return Err(self.err(RpcErrorKind::Server, method, format!("{}: {}", status_message(s, None), snippet(&text)))),
            _ => {}
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| self.err(RpcErrorKind::Server, method, format!("response is not JSON ({e}): {}", snippet(&text))))?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(self.fault(method, error));
        }
        match value.get("result") {
            Some(r) => Ok(Ok(r.clone())),
            None => Err(self.err(RpcErrorKind::Server, method, format!("response has neither result nor error: {}", snippet(&text)))),
        }
    }

    fn fault(&self, call: &str, error: &Value) -> RpcError {
        let (kind, message) = classify_fault(error);
        self.err(kind, call, message)
    }

    async fn login(&self) -> Result<Session, RpcError> {
        let call = LOGIN;
        let params = json!([self.username, {"password": self.password}, "en"]);
        let result = match self.post(call, &params, None).await? {
            Ok(r) => r,
            Err(status) => {
                return Err(self.err(RpcErrorKind::Auth, call, format!("HTTP {status}: login refused for user {:?}", self.username)));
            }
        };
        let user_id = result.get(0).and_then(Value::as_i64);
        let session = result.get(1).and_then(Value::as_str);
        let (Some(user_id), Some(session)) = (user_id, session) else {
            return Err(self.err(RpcErrorKind::Auth, call, format!("unexpected login answer {}", snippet(&result.to_string()))));
        };
        let header = format!("Session {}", base64(format!("{}:{}:{}", self.username, user_id, session).as_bytes()));
        // The user's preferences are the context every model call needs (company, language...).
        let prefs_call = "model.res.user.get_preferences";
        let context = match self.post(prefs_call, &json!([true, {}]), Some(&header)).await? {
            Ok(Value::Object(m)) => m,
            Ok(other) => return Err(self.err(RpcErrorKind::Server, prefs_call, format!("unexpected preferences {other}"))),
            Err(status) => return Err(self.err(RpcErrorKind::Auth, prefs_call, format!("HTTP {status} right after login"))),
        };
        Ok(Session { header, context })
    }

    async fn session(&self, renew: bool) -> Result<(String, Map<String, Value>), RpcError> {
        let mut guard = self.session.lock().await;
        if renew || guard.is_none() {
            *guard = Some(self.login().await?);
        }
        let s = guard.as_ref().expect("just set");
        Ok((s.header.clone(), s.context.clone()))
    }

    /// The session context (user preferences), logging in when needed.
    pub async fn context(&self) -> Result<Map<String, Value>, RpcError> {
        Ok(self.session(false).await?.1)
    }

    /// Calls `model.<model>.<method>` with `args` followed by the session context merged with `extra`.
    pub async fn call(&self, model: &str, method: &str, args: Vec<Value>, extra: &Map<String, Value>) -> Result<Value, RpcError> {
        self.call_named(&format!("model.{model}.{method}"), args, extra).await
    }

    /// Runs a wizard to its end: `create`, then `execute` each `(state, data)` in turn (the data of the
    /// views before it), then `delete`. `extra` is the context (`active_model`, `active_id`, `active_ids`).
    pub async fn wizard(&self, wizard: &str, steps: &[(&str, Value)], extra: &Map<String, Value>) -> Result<(), RpcError> {
        let session = self.call_named(&format!("wizard.{wizard}.create"), vec![], extra).await?;
        let id = session.get(0).cloned().unwrap_or(Value::Null);
        let mut result = Ok(());
        for (state, data) in steps {
            if let Err(e) = self.call_named(&format!("wizard.{wizard}.execute"), vec![id.clone(), data.clone(), json!(state)], extra).await {
                result = Err(e);
                break;
            }
        }
        // the session is Tryton's to forget whatever happened
        let _ = self.call_named(&format!("wizard.{wizard}.delete"), vec![id], extra).await;
        result
    }

    async fn call_named(&self, name: &str, args: Vec<Value>, extra: &Map<String, Value>) -> Result<Value, RpcError> {
        let name = name.to_owned();
        for attempt in 0..2 {
            let (header, mut ctx) = self.session(attempt > 0).await?;
            for (k, v) in extra {
                ctx.insert(k.clone(), v.clone());
            }
            let mut params = args.clone();
            params.push(Value::Object(ctx));
            match self.post(&name, &Value::Array(params), Some(&header)).await? {
                Ok(v) => return Ok(v),
                Err(401) if attempt == 0 => {
                    tracing::info!(endpoint = %ferry_engine::secrets::redact_url_credentials(&self.endpoint), call = %name, "session expired; logging in again");
                    continue;
                }
                Err(status) => return Err(self.err(RpcErrorKind::Auth, &name, format!("HTTP {status}: not allowed"))),
            }
        }
        unreachable!("the loop returns")
    }

    pub async fn search(&self, model: &str, domain: Value, offset: usize, limit: Option<usize>, order: Value, extra: &Map<String, Value>) -> Result<Vec<i64>, RpcError> {
        let v = self.call(model, "search", vec![domain, json!(offset), json!(limit), order], extra).await?;
        ids_of(&v).ok_or_else(|| self.err(RpcErrorKind::Server, &format!("model.{model}.search"), format!("expected a list of ids, got {}", snippet(&v.to_string()))))
    }

    pub async fn read(&self, model: &str, ids: &[i64], fields: &[&str], extra: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, RpcError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let v = self.call(model, "read", vec![json!(ids), json!(fields)], extra).await?;
        rows_of(v).ok_or_else(|| self.err(RpcErrorKind::Server, &format!("model.{model}.read"), "expected a list of records"))
    }

    #[allow(clippy::too_many_arguments)] // Tryton's own parameter list, in its order
    pub async fn search_read(&self, model: &str, domain: Value, offset: usize, limit: Option<usize>, order: Value, fields: &[&str], extra: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, RpcError> {
        let v = self.call(model, "search_read", vec![domain, json!(offset), json!(limit), order, json!(fields)], extra).await?;
        rows_of(v).ok_or_else(|| self.err(RpcErrorKind::Server, &format!("model.{model}.search_read"), "expected a list of records"))
    }

    pub async fn create(&self, model: &str, values: Vec<Value>, extra: &Map<String, Value>) -> Result<Vec<i64>, RpcError> {
        let v = self.call(model, "create", vec![Value::Array(values)], extra).await?;
        ids_of(&v).ok_or_else(|| self.err(RpcErrorKind::Server, &format!("model.{model}.create"), "expected a list of ids"))
    }

    pub async fn write(&self, model: &str, ids: &[i64], values: Value, extra: &Map<String, Value>) -> Result<(), RpcError> {
        self.call(model, "write", vec![json!(ids), values], extra).await.map(|_| ())
    }

    pub async fn delete(&self, model: &str, ids: &[i64], extra: &Map<String, Value>) -> Result<(), RpcError> {
        self.call(model, "delete", vec![json!(ids)], extra).await.map(|_| ())
    }

    /// A workflow transition or button (`quote`, `confirm`, `do`...).
    pub async fn button(&self, model: &str, method: &str, ids: &[i64], extra: &Map<String, Value>) -> Result<Value, RpcError> {
        self.call(model, method, vec![json!(ids)], extra).await
    }
}

const LOGIN: &str = "common.db.login";

/// Whether a call can be sent twice without harm: Tryton's read-only model methods, login, and opening or
/// closing a wizard session. Anything else (create, write, delete, workflow buttons, a wizard's `execute`,
/// unknown methods) is treated as a write.
fn idempotency_of(call: &str) -> Idempotency {
    let method = call.rsplit('.').next().unwrap_or(call);
    match method {
        "search" | "read" | "search_read" | "search_count" | "fields_get" | "default_get" | "get_preferences" | "login" => Idempotency::Safe,
        // a wizard session holds nothing until `execute`; a second one, or deleting one twice, is harmless
        "create" | "delete" if call.starts_with("wizard.") => Idempotency::Safe,
        _ => Idempotency::Unsafe,
    }
}

/// Tryton's error shapes: `["UserError", [message, description, domain]]`, `["UserWarning", [name,
/// message, description]]`, `["AccessError", [...]]`, `["ConcurrencyException", msg]`, or a traceback
/// string → the kind of error and its message (public for the fuzz targets in `fuzz/`).
pub fn classify_fault(error: &Value) -> (RpcErrorKind, String) {
    let (kind_name, detail) = match error {
        Value::Array(a) => (a.first().and_then(Value::as_str).unwrap_or("Error").to_owned(), a.get(1).cloned().unwrap_or(Value::Null)),
        Value::String(s) => (s.lines().last().unwrap_or(s).to_owned(), Value::Null),
        other => ("Error".to_owned(), other.clone()),
    };
    let texts: Vec<String> = match &detail {
        Value::Array(parts) => parts.iter().filter_map(|p| p.as_str()).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    };
    let kind = match kind_name.as_str() {
        "UserError" | "UserWarning" | "AccessError" | "DomainValidationError" | "RequiredValidationError"
        | "SizeValidationError" | "SelectionValidationError" | "ForeignKeyError" | "SQLConstraintError"
        | "ConcurrencyException" => RpcErrorKind::User,
        k if k.contains("DatabaseOperationalError") || k.contains("database is locked") => RpcErrorKind::Transient,
        _ => RpcErrorKind::Server,
    };
    // a Python exception that is not one of Tryton's named errors arrives as its bare text
    let named = kind_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let kind_name = if named { kind_name } else { format!("server exception {kind_name}") };
    let message = if texts.is_empty() { kind_name.clone() } else { format!("{kind_name}: {}", texts.join(" — ")) };
    (kind, message)
}

fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    // reqwest's Display hides the cause (connection refused, reset...): walk the chain
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn snippet(s: &str) -> String {
    let s = s.trim();
    if s.len() > 300 { format!("{}…", &s[..s.floor_char_boundary(300)]) } else { s.to_owned() }
}

fn ids_of(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(Value::as_i64).collect()
}

fn rows_of(v: Value) -> Option<Vec<Map<String, Value>>> {
    match v {
        Value::Array(a) => a
            .into_iter()
            .map(|r| match r {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Standard base64 with padding (the `Session` header); small enough not to need a crate.
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------- Tryton's value encoding

/// `Decimal` as Tryton expects it (floats are refused for Numeric fields).
pub fn dec(d: Decimal) -> Value {
    json!({"__class__": "Decimal", "decimal": d.normalize().to_string()})
}

/// A naive-UTC `datetime` as Tryton stores `write_date`/`create_date`.
pub fn datetime(t: DateTime<Utc>) -> Value {
    json!({"__class__": "datetime", "year": t.year(), "month": t.month(), "day": t.day(),
        "hour": t.hour(), "minute": t.minute(), "second": t.second(), "microsecond": t.nanosecond() / 1000})
}

pub fn date(d: NaiveDate) -> Value {
    json!({"__class__": "date", "year": d.year(), "month": d.month(), "day": d.day()})
}

/// A decimal from Tryton: `{"__class__":"Decimal",...}`, a JSON number (Float fields) or a numeric string.
pub fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Object(m) if m.get("__class__").and_then(Value::as_str) == Some("Decimal") => {
            Decimal::from_str(m.get("decimal")?.as_str()?).ok()
        }
        Value::Number(n) => {
            let s = n.to_string();
            Decimal::from_str(&s).or_else(|_| Decimal::from_scientific(&s)).ok()
        }
        Value::String(s) => Decimal::from_str(s).ok(),
        _ => None,
    }
}

pub fn as_datetime(v: &Value) -> Option<DateTime<Utc>> {
    let m = v.as_object()?;
    if m.get("__class__").and_then(Value::as_str) != Some("datetime") {
        return None;
    }
    let g = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
    Utc.with_ymd_and_hms(g("year") as i32, g("month"), g("day"), g("hour"), g("minute"), g("second"))
        .single()
        // checked: a date at the end of chrono's range plus the microseconds would overflow
        .and_then(|t| t.checked_add_signed(chrono::Duration::microseconds(i64::from(g("microsecond")))))
}

pub fn as_date(v: &Value) -> Option<NaiveDate> {
    let m = v.as_object()?;
    if m.get("__class__").and_then(Value::as_str) != Some("date") {
        return None;
    }
    let g = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
    NaiveDate::from_ymd_opt(g("year") as i32, g("month"), g("day"))
}

/// Booleans come back as 0/1 from SQLite.
pub fn as_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    }
}

/// A non-empty string (Tryton sends `null` or `""` for empty Char fields).
pub fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Any Tryton value made plain JSON for `custom` (Decimal → string, datetime → RFC 3339, date → ISO).
pub fn plain(v: &Value) -> Value {
    if let Some(d) = as_decimal(v).filter(|_| v.is_object()) {
        return Value::String(d.normalize().to_string());
    }
    if let Some(t) = as_datetime(v) {
        return Value::String(t.to_rfc3339());
    }
    if let Some(d) = as_date(v) {
        return Value::String(d.to_string());
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(plain).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        other => other.clone(),
    }
}

/// A dotted field as read back: `template.name` arrives as `{"template.": {"name": ...}}`.
pub fn dotted<'a>(row: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => row.get(path),
        Some((head, rest)) => dotted(row.get(&format!("{head}."))?.as_object()?, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datetime at the end of chrono's range plus its microseconds used to overflow (a panic).
    #[test]
    fn datetimes_at_the_limit_are_none_not_a_panic() {
        let v = json!({"__class__": "datetime", "year": 262142, "month": 12, "day": 31, "hour": 23, "minute": 59, "second": 59, "microsecond": u32::MAX});
        assert_eq!(as_datetime(&v), None);
        assert_eq!(as_datetime(&json!({"__class__": "datetime", "year": u64::MAX})), None);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"admin:1:abc123"), "YWRtaW46MTphYmMxMjM=");
    }

    #[test]
    fn decimals_round_trip_through_trytons_encoding() {
        let d = Decimal::from_str("19.90").unwrap();
        assert_eq!(dec(d), json!({"__class__": "Decimal", "decimal": "19.9"}));
        assert_eq!(as_decimal(&dec(d)), Some(d));
        let n: Value = serde_json::from_str("10.5").unwrap();
        assert_eq!(as_decimal(&n), Some(Decimal::from_str("10.5").unwrap()));
        assert_eq!(as_decimal(&Value::Null), None);
    }

    #[test]
    fn datetimes_are_naive_utc() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 15, 4, 5).unwrap();
        let v = datetime(t);
        assert_eq!(v["hour"], 15);
        assert_eq!(as_datetime(&v), Some(t));
        assert_eq!(plain(&v), json!("2026-11-23T15:04:05+00:00"));
    }

    #[test]
    fn dotted_fields_read_back_under_a_trailing_dot() {
        let row: Map<String, Value> = serde_json::from_value(json!({"template.": {"category.": {"name": "Tools"}}})).unwrap();
        assert_eq!(dotted(&row, "template.category.name"), Some(&json!("Tools")));
        assert_eq!(dotted(&row, "template.code"), None);
    }

    #[test]
    fn only_reads_and_login_are_idempotent() {
        for call in ["common.db.login", "model.product.product.search", "model.sale.sale.search_read", "model.party.party.read", "model.res.user.get_preferences"] {
            assert_eq!(idempotency_of(call), Idempotency::Safe, "{call}");
        }
        assert_eq!(idempotency_of("wizard.account.invoice.pay.create"), Idempotency::Safe, "a wizard session is not a write");
        for call in ["model.sale.sale.create", "model.sale.sale.quote", "model.sale.sale.confirm", "model.product.product.write", "model.party.party.delete", "model.stock.move.do", "wizard.account.invoice.pay.execute"] {
            assert_eq!(idempotency_of(call), Idempotency::Unsafe, "{call}");
        }
    }

    #[test]
    fn sqlite_booleans_are_numbers() {
        assert!(as_bool(&json!(1)));
        assert!(!as_bool(&json!(0)));
        assert!(as_bool(&json!(true)));
    }
}
