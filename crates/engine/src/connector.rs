//! The connector contract: what every system Ferry talks to must provide.
//!
//! Modelled on the Airbyte/Singer protocol (describe, check, read a stream from a checkpoint as a stream
//! of records and checkpoints) but two-way: a connector can also write batches with a per-record outcome,
//! find records by their natural key (so create-once streams such as orders are never written twice), and
//! retire records that disappeared from the source.

use async_trait::async_trait;
use ferry_model::{Record, Stream};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How a system signs its webhook deliveries (the secret is the connection's `webhook_secret`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAuth {
    /// `X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the body>`, `X-Ferry-Timestamp`, `X-Ferry-Delivery`
    /// (Ferry's Vendure plugin, any sender following Ferry's protocol).
    #[default]
    Ferry,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>` under the app's secret, the
    /// delivery named by `X-Shopify-Webhook-Id` (the same id on every retry of one event).
    Shopify,
}

impl WebhookAuth {
    /// The header naming a delivery: a repeat of it within the dedup window starts no new job.
    pub fn delivery_header(self) -> &'static str {
        match self {
            WebhookAuth::Ferry => "x-ferry-delivery",
            WebhookAuth::Shopify => "x-shopify-webhook-id",
        }
    }
}

/// What a connector is and can do (`ferry describe`).
#[derive(Clone, Debug, Serialize)]
pub struct Description {
    /// Registry name used as `type = "..."` in the config.
    pub name: &'static str,
    pub summary: &'static str,
    /// JSON Schema of the connection's options.
    pub config_schema: serde_json::Value,
    pub streams: Vec<StreamCapability>,
    /// Preferred number of records per `write` call (the platform's batch limit).
    pub batch_size: usize,
    /// The connector's system can push change notifications (webhooks).
    pub webhooks: bool,
}

impl Description {
    pub fn stream(&self, stream: Stream) -> Option<&StreamCapability> {
        self.streams.iter().find(|s| s.stream == stream)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamCapability {
    pub stream: Stream,
    pub read: Option<ReadMode>,
    pub write: Option<WriteMode>,
    /// `find_by_key` works for this stream (required for `WriteMode::CreateOnce`).
    pub find_by_key: bool,
    /// Ways this connector can take a record away when it vanished from the source.
    pub retire: Vec<RetireMode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Every read returns the whole data set (a file export). Records missing from a complete read were
    /// deleted at the source.
    Snapshot,
    /// Reads resume from a checkpoint (a cursor such as `write_date`); a full read starts from nothing.
    Incremental,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Writing the same record again is harmless (products, stock, prices, customers).
    Upsert,
    /// Each record must be created exactly once (orders into an ERP), and a created record may have to be
    /// moved through states (a sale: draft → quotation → confirmed) that a crash can interrupt. The engine
    /// looks the natural key up with `find_by_key` before creating anything it has no cross-reference for;
    /// a record found there is handed to `write` with its target id, and the connector *resumes* it: it
    /// reads where the record stands and drives it on to the configured end state (`WriteAction::Resumed`),
    /// or answers `Unchanged` when it is there already. A record is reported written only once it has
    /// reached its end state, so a record the engine has a cross-reference and an equal hash for is done.
    /// When the record changed at the source after it was written (an order cancelled, edited, refunded),
    /// `write` gets it with its target id and `WriteRecord::previous`: the connector applies what the
    /// target's state allows, and fails the record with a clear message otherwise.
    CreateOnce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireMode {
    /// Disable / archive / mark discontinued, keeping history.
    Deactivate,
    Delete,
}

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct ReadRequest {
    pub stream: Option<Stream>,
    /// Where the previous run stopped; `None` reads from the beginning.
    pub checkpoint: Option<serde_json::Value>,
    /// Read only these records (by the source's natural key), e.g. the SKU a webhook named.
    pub keys: Option<Vec<String>>,
}

impl ReadRequest {
    pub fn stream(&self) -> Stream {
        self.stream.expect("the engine always names the stream")
    }
}

/// A record as the source produced it, before mapping. `position` names it when it has no usable key
/// (`products.csv line 17`, `product.product id 42`).
#[derive(Clone, Debug)]
pub struct SourceRecord {
    pub position: String,
    pub data: serde_json::Value,
}

#[derive(Clone, Debug)]
pub enum ReadItem {
    Record(SourceRecord),
    /// Everything before this item is covered: once those records are committed or parked, a run may
    /// resume from here. Opaque to the engine; stored as JSON.
    Checkpoint(serde_json::Value),
    /// A record the source could read but not translate (bad row, unreadable field). It is parked as a
    /// failure; the rest of the stream carries on.
    Invalid { position: String, key: Option<String>, raw: serde_json::Value, field: String, message: String },
    /// Something about the source as a whole a person should know (a header that looks split by the
    /// wrong delimiter): added to the run's warnings, once.
    Warning(String),
}

/// One record to write, with what Ferry already knows of it in the target.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub key: String,
    /// The target's id from the cross-reference (or found by `find_by_key`); `None` means create.
    pub target_id: Option<String>,
    pub record: Record,
    /// Create-once streams: the canonical record the target last acknowledged, when Ferry has it (`None` for
    /// a record found by key after a crash). Lets the connector see what changed since (status, lines…).
    pub previous: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteAction {
    Created,
    Updated,
    /// The target already held exactly this (it compared and skipped the write).
    Unchanged,
    Retired,
    /// A create-once record that a previous attempt created but left behind its end state (killed or failed
    /// after create, after quote…), driven on to it now.
    Resumed,
}

/// The outcome of one record of a batch: each record's outcome is its own.
#[derive(Clone, Debug)]
pub struct WriteOutcome {
    pub key: String,
    pub result: Result<Written, RecordFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub target_id: String,
    pub action: WriteAction,
    /// Written, but with something a person should know (e.g. the ERP's tax differs from the shop's by a
    /// cent and the policy accepted it): counted and listed as a warning of the run, never silent.
    pub warning: Option<String>,
}

/// Why one record failed: the field (when known), the endpoint's message, and whether trying again later
/// may help (timeouts, locks, rate limits) or a person must fix the data or mapping first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    pub field: Option<String>,
    pub message: String,
    pub retryable: bool,
}

impl RecordFailure {
    pub fn permanent(field: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        RecordFailure { field: field.into(), message: message.into(), retryable: false }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        RecordFailure { field: None, message: message.into(), retryable: true }
    }
}

impl WriteOutcome {
    pub fn ok(key: impl Into<String>, target_id: impl Into<String>, action: WriteAction) -> Self {
        WriteOutcome { key: key.into(), result: Ok(Written { target_id: target_id.into(), action, warning: None }) }
    }
    /// Written, with a warning for the run (see `Written::warning`).
    pub fn warned(key: impl Into<String>, target_id: impl Into<String>, action: WriteAction, warning: impl Into<String>) -> Self {
        WriteOutcome { key: key.into(), result: Ok(Written { target_id: target_id.into(), action, warning: Some(warning.into()) }) }
    }
    pub fn failed(key: impl Into<String>, failure: RecordFailure) -> Self {
        WriteOutcome { key: key.into(), result: Err(failure) }
    }
}

/// A failure of a whole call (endpoint down, login refused, bad config), as opposed to one record's.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{endpoint}: {message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    /// Which system / URL / file, e.g. `tryton http://127.0.0.1:8000/tryton`.
    pub endpoint: String,
    pub message: String,
    /// How long the endpoint asked to be left alone (`Retry-After`, capped by the connector), for the
    /// engine's retry of the whole call.
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Network errors, timeouts, HTTP 429/5xx: retried with backoff.
    Transient,
    /// Wrong credentials or permissions.
    Auth,
    /// The configuration is wrong (missing file, unknown option).
    Config,
    /// Anything else the endpoint refused.
    Permanent,
}

impl ConnectorError {
    /// Credentials inside URLs are redacted from both parts (a URL with a password must not reach a
    /// log, the store or an API answer through an error).
    pub fn new(kind: ErrorKind, endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        let redact = crate::secrets::redact_url_credentials;
        ConnectorError { kind, endpoint: redact(&endpoint.into()), message: redact(&message.into()), retry_after: None }
    }
    pub fn with_retry_after(mut self, retry_after: Option<std::time::Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
    pub fn transient(endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, endpoint, message)
    }
    pub fn config(endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, endpoint, message)
    }
    pub fn permanent(endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, endpoint, message)
    }
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

/// Result of `check`: what was verified, for `ferry check`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub details: Vec<String>,
}

/// A live connection to one system.
#[async_trait]
pub trait Connector: Send + Sync {
    fn describe(&self) -> Description;

    /// Verifies the connection (credentials, reachability, files present) without changing anything.
    async fn check(&self) -> Result<CheckReport, ConnectorError>;

    /// Reads a stream from a checkpoint: records interleaved with checkpoints, in order.
    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let stream = request.stream();
        let endpoint = self.describe().name;
        Box::pin(futures::stream::once(async move {
            Err(ConnectorError::config(endpoint, format!("cannot read stream {stream}")))
        }))
    }

    /// Writes a batch; returns one outcome per input record, in any order. An `Err` means the whole call
    /// failed (nothing is known to be written) and the engine retries or aborts the run.
    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let _ = batch;
        Err(ConnectorError::config(self.describe().name, format!("cannot write stream {stream}")))
    }

    /// Looks natural keys up in the target: key → target id, for those that exist.
    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let _ = keys;
        Err(ConnectorError::config(self.describe().name, format!("cannot look up {stream} by key")))
    }

    /// Whether this connection may write `stream`, found out without changing anything (the user's access
    /// rights in the target, a folder it can create files in): `ferry check` asks it for every enabled
    /// flow's target. `Ok` lists what was verified; `Err` names what is missing. The default verifies
    /// nothing beyond `check`.
    async fn check_write(&self, stream: Stream) -> Result<Vec<String>, ConnectorError> {
        let _ = stream;
        Ok(Vec::new())
    }

    /// Interprets a verified webhook body from this connection's system: which streams and records
    /// (source keys) changed. `ferry serve` enqueues a targeted sync for each enabled flow reading that
    /// stream from this connection. Webhooks are signals, not data: the sync re-reads the current state.
    fn webhook_signals(&self, body: &serde_json::Value) -> Vec<(Stream, Vec<String>)> {
        let _ = body;
        Vec::new()
    }

    /// How `ferry serve` authenticates this connection's webhook deliveries and which header names a
    /// delivery (for deduplication). Ferry's own signature unless the system signs its own way.
    fn webhook_auth(&self) -> WebhookAuth {
        WebhookAuth::Ferry
    }

    /// Where this connection reads `stream` from, for messages (a file's path); `None` when there is no
    /// single place to name (the engine then names the connection).
    fn location(&self, stream: Stream) -> Option<String> {
        let _ = stream;
        None
    }

    /// Takes records away that disappeared from the source (`(key, target_id)` pairs).
    async fn retire(&self, stream: Stream, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let _ = items;
        Err(ConnectorError::config(self.describe().name, format!("cannot {mode:?} records of {stream}")))
    }

    /// Rewrites an append-only target of `stream` keeping only its current state (retention's compaction,
    /// e.g. the latest line per key of a JSONL file), atomically. `None` when this connector keeps no
    /// history to compact; with `dry_run`, counts without rewriting.
    async fn compact(&self, stream: Stream, dry_run: bool) -> Result<Option<Compaction>, ConnectorError> {
        let _ = (stream, dry_run);
        Ok(None)
    }
}

/// What a compaction did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Compaction {
    /// The file (or other store) compacted.
    pub target: String,
    pub lines_before: u64,
    pub lines_after: u64,
}

/// Where a connector is being built: the config file's folder (relative paths resolve against it),
/// the connection's name (for messages and secrets from the environment) and the business's time zone.
#[derive(Clone, Debug)]
pub struct BuildContext {
    pub connection: String,
    pub base_dir: PathBuf,
    /// `[defaults] timezone` (IANA name): the business's wall clock, for connectors that turn instants into
    /// dates (a sale's date). A connection's own `timezone` option overrides it.
    pub timezone: Option<String>,
}

impl BuildContext {
    pub fn new(connection: impl Into<String>, base_dir: impl Into<PathBuf>) -> Self {
        BuildContext { connection: connection.into(), base_dir: base_dir.into(), timezone: None }
    }

    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() { p } else { self.base_dir.join(p) }
    }
}

/// Builds connectors of one type from their config table.
pub trait ConnectorFactory: Send + Sync {
    fn name(&self) -> &'static str;
    fn summary(&self) -> &'static str;
    fn build(&self, options: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError>;
    /// Secret options this connector can also read from an environment variable named by another option,
    /// as `(option, env_option)` pairs, e.g. `("password", "password_env")`. A server of several
    /// workspaces points `env_option` at the workspace's own variable (see [`crate::secrets::resolve`]).
    fn env_secrets(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// All connector types this binary was built with.
#[derive(Default)]
pub struct Registry {
    factories: Vec<Box<dyn ConnectorFactory>>,
}

impl Registry {
    pub fn register(&mut self, factory: Box<dyn ConnectorFactory>) -> &mut Self {
        self.factories.push(factory);
        self
    }

    pub fn get(&self, name: &str) -> Option<&dyn ConnectorFactory> {
        self.factories.iter().find(|f| f.name() == name).map(|f| f.as_ref())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }

    pub fn build(&self, kind: &str, options: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let factory = self.get(kind).ok_or_else(|| {
            ConnectorError::config(
                format!("connection {}", ctx.connection),
                format!("unknown connector type {kind:?}; this build knows {}", self.names().join(", ")),
            )
        })?;
        factory.build(options, ctx)
    }
}

/// Reads a connector's typed options, naming the connection and option on error.
pub fn parse_options<T: serde::de::DeserializeOwned>(options: &serde_json::Value, ctx: &BuildContext) -> Result<T, ConnectorError> {
    serde_path_to_error::deserialize(options.clone()).map_err(|e| {
        ConnectorError::config(format!("connection {}", ctx.connection), format!("option {}: {}", e.path(), e.inner()))
    })
}
