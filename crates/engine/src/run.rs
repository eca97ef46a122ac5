//! One run of one flow: read → map → validate → hash → compare → write changed → commit.
//!
//! The order of a batch is what makes Ferry safe to kill at any instant:
//! 1. look the batch's keys up in the cross-reference; equal hash → unchanged, no write;
//! 2. for create-once streams (orders), ask the target for keys Ferry has no record of (`find_by_key`):
//!    a previous run may have created them and died before committing;
//! 3. write the changed records; each record's outcome is its own;
//! 4. commit cross-reference + hashes + parked failures + checkpoint in one transaction.
//!
//! A crash before 4 repeats 1–3 on the next run: upserts are rewritten with the same content, and
//! create-once records are found in step 2 instead of created twice.
//!
//! Batches overlap for speed without changing that: batch N+1 is hashed, mapped and validated while N is
//! written, and N is committed while N+1 is looked up and written (N's results standing in for the
//! store's until then), so at most two batches are written and not yet committed.

use crate::backoff::Backoff;
use crate::carried_counts::CarriedCounts;
use crate::config::{FlowConfig, OnMissing};
use crate::connector::*;
use crate::create_once;
use crate::diff::{FieldChange, diff};
use crate::duplicates::{Duplicate, Duplicates, OnDuplicate};
use crate::hash::{digest128, fingerprint, hex128};
use crate::isolate;
use crate::lease;
use crate::retire_guard;
use crate::targeted::KeySelection;
use crate::mapping::Mapping;
use crate::store::{BatchCommit, Counts, NewFailure, RunRecord, Stage, StateStore, Synced, XrefEntry};
use ferry_model::{Record, Stream, key_hint};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hash stored for records retired by deactivation: never equal to a real hash, so a record that
/// comes back is written again.
const RETIRED_HASH: &str = "retired";

/// Everything a run of one flow needs.
pub struct Flow {
    pub name: String,
    pub config: FlowConfig,
    pub source: Arc<dyn Connector>,
    pub target: Arc<dyn Connector>,
    pub mapping: Mapping,
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Ignore the checkpoint: re-read everything and reconcile records missing from the source.
    pub full: bool,
    /// Compute and report what would be written; write nothing, commit nothing.
    pub dry_run: bool,
    /// Only these canonical keys, as records have them after mapping (targeted sync, e.g. `--key` or a
    /// webhook; see `targeted`).
    pub keys: Option<Vec<String>>,
    pub replay: Replay,
    /// Retire even when more than `max_retire_share` of the records would go.
    pub force_retire: bool,
    /// Who runs (host:pid), for the flow lease.
    pub holder: String,
    /// Let a complete read that found no records at all retire what Ferry synced before (an empty or
    /// header-only export otherwise stops the run: see `reconcile_missing`).
    pub allow_empty_source: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Replay {
    /// Replay parked retryable failures whose retry time has come, then read the source.
    #[default]
    Due,
    /// Replay every parked failure of the flow (after a fix), and do not read the source.
    AllOnly,
    /// Replay these failures only, and do not read the source.
    IdsOnly(Vec<i64>),
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub flow: String,
    pub run_id: Option<i64>,
    pub dry_run: bool,
    pub counts: Counts,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
    /// Failures of this run (first 50), for the summary.
    pub failures: Vec<FailureLine>,
    /// With `dry_run`: the planned writes (first 200), with field-level changes.
    pub planned: Vec<PlannedChange>,
    pub warnings: Vec<String>,
    /// Keys read more than once in this run (first 50), with both positions.
    pub duplicates: Vec<Duplicate>,
    /// Set when the run stopped early (endpoint down…); committed work stays committed.
    pub aborted: Option<String>,
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FailureLine {
    pub key: String,
    pub stage: Stage,
    pub field: Option<String>,
    pub message: String,
    pub retryable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlannedChange {
    pub key: String,
    pub action: &'static str,
    pub changes: Vec<FieldChange>,
}

/// Receives progress while a run goes (the CLI draws a progress bar from it).
pub trait Progress: Send + Sync {
    fn update(&self, counts: &Counts);
}

pub struct NoProgress;
impl Progress for NoProgress {
    fn update(&self, _: &Counts) {}
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("flow {flow}: {message}")]
    Setup { flow: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

const MAX_LISTED: usize = 50;
const MAX_PLANNED: usize = 200;
/// Per-record outcomes a run keeps for written records (failures and retirements are always kept; the
/// counts are always complete). A first load of a million records would otherwise add a million rows.
pub const MAX_WRITES_LISTED: usize = 1000;
const BATCH_ATTEMPTS: u32 = 5;

/// A source record as read, with the hash of its raw content under this flow's mapping (computed while
/// the batch is prepared, off the reading task).
struct Raw {
    position: String,
    data: serde_json::Value,
    source_hash: Option<u128>,
    /// `data` as JSON text, kept from hashing for records that are transformed: what a parked failure
    /// keeps for replay, without a deep copy of `data` (which the mapping consumes).
    source_json: Option<String>,
}

/// A record mapped, validated and fingerprinted, ready to compare and write.
struct Pending {
    key: String,
    record: Record,
    hash: String,
    canonical: String,
    source_hash: u128,
    /// The record as the source produced it (JSON text): what a parked failure keeps for replay.
    source: String,
    /// Where the source had it (`products.csv line 17`).
    position: String,
}

/// Records read but not yet prepared, with what the batch commits besides them (read counts, rows
/// the source marked invalid, the checkpoint).
struct Batch {
    raw: Vec<Raw>,
    commit: BatchCommit,
}

impl Batch {
    fn new() -> Self {
        Batch { raw: Vec::new(), commit: BatchCommit::default() }
    }
    fn len(&self) -> usize {
        self.raw.len() + self.commit.failed.len()
    }
}

/// A batch after its CPU-bound preparation, records in read order.
struct Prepared {
    items: Vec<Prepared_>,
    commit: BatchCommit,
}

enum Prepared_ {
    /// Raw content synced before (same source hash) for the key with this key hash. Kept raw: if the key
    /// was already seen earlier in this run, its cross-reference may have changed since the hash was
    /// looked up, and the record is transformed after all.
    Known { key_hash: u64, raw: Raw },
    Transformed(Transformed),
}

/// Source hash → key hash of everything the flow synced, sorted: loaded once for a complete read so
/// that recognising an unchanged record costs a binary search instead of a database look-up
/// (24 bytes a record: 24 MB at a million).
struct SourceIndex(Vec<(u128, u64)>);

impl SourceIndex {
    fn get(&self, source_hash: u128) -> Option<u64> {
        self.0.binary_search_by_key(&source_hash, |e| e.0).ok().map(|i| self.0[i].1)
    }
}

/// A batch being prepared on the blocking pool while the previous one is written.
type InFlight = tokio::task::JoinHandle<Prepared>;

struct Runner<'a> {
    flow: &'a Flow,
    store: &'a dyn StateStore,
    options: &'a RunOptions,
    progress: &'a dyn Progress,
    stream: Stream,
    write_mode: WriteMode,
    batch_size: usize,
    run_id: i64,
    /// Keys with a parked failure (by key hash): resolved when the key is written or found unchanged.
    open_failures: HashMap<u64, String>,
    /// Key hashes of every record this run has taken in, with where the source read each first (keys read
    /// twice are reported).
    seen: Duplicates,
    report: RunReport,
    /// Identifies the flow's mapping and model version: the same raw record under the same mapping always
    /// maps to the same canonical record, so an unchanged source hash means an unchanged record.
    mapping_id: [u8; 32],
    /// Loaded for complete reads; without it every record is mapped and compared by its canonical hash.
    source_index: Option<Arc<SourceIndex>>,
    /// The batch being prepared while the previous one is written and committed.
    in_flight: Option<InFlight>,
    /// Written records listed in the run's outcomes so far (up to `MAX_WRITES_LISTED`).
    listed_writes: usize,
    /// The batch written to the target last, committed while the next one is written.
    unsaved: Option<BatchCommit>,
    /// Counts of batches that changed nothing, waiting for a commit (see `carried_counts`).
    carried: CarriedCounts,
    /// A targeted run's keys (canonical, after mapping).
    selection: Option<KeySelection>,
    /// Records of a targeted run that failed before their key was known, left alone (not parked).
    unattributed_failures: u64,
    /// Items the source's read produced (records and invalid rows; replays not counted): an empty
    /// complete read never retires anything by itself.
    source_items: u64,
    /// Set once replays are done and the source is being read.
    reading: bool,
}

pub async fn run_flow(flow: &Flow, store: &dyn StateStore, options: &RunOptions, progress: &dyn Progress) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let stream = flow.config.stream;
    let setup = |message: String| RunError::Setup { flow: flow.name.clone(), message };
    let source_desc = flow.source.describe();
    let target_desc = flow.target.describe();
    let read_mode = source_desc
        .stream(stream)
        .and_then(|s| s.read)
        .ok_or_else(|| setup(format!("source {} cannot read {stream}", source_desc.name)))?;
    let target_cap = target_desc
        .stream(stream)
        .filter(|s| s.write.is_some())
        .ok_or_else(|| setup(format!("target {} cannot write {stream}", target_desc.name)))?
        .clone();
    let write_mode = target_cap.write.expect("filtered above");
    if write_mode == WriteMode::CreateOnce && !target_cap.find_by_key {
        return Err(setup(format!("target {} writes {stream} create-once but cannot find them by key", target_desc.name)));
    }

    let mode = if options.dry_run {
        "dry_run"
    } else if options.replay != Replay::Due {
        "retry"
    } else if options.keys.is_some() {
        "targeted"
    } else if options.full {
        "full"
    } else {
        "incremental"
    };
    let mut runner = Runner {
        flow,
        store,
        options,
        progress,
        stream,
        write_mode,
        batch_size: flow.config.batch_size.unwrap_or(target_desc.batch_size).max(1),
        run_id: 0,
        open_failures: HashMap::new(),
        seen: Duplicates::default(),
        report: RunReport { flow: flow.name.clone(), dry_run: options.dry_run, ..Default::default() },
        mapping_id: mapping_id(&flow.config),
        source_index: None,
        in_flight: None,
        listed_writes: 0,
        unsaved: None,
        carried: CarriedCounts::default(),
        selection: options.keys.as_deref().map(|keys| KeySelection::new(keys, &flow.config.mapping, stream)),
        unattributed_failures: 0,
        source_items: 0,
        reading: false,
    };

    if !options.dry_run {
        lease::take_lease(store, &flow.name, &options.holder).await?;
        runner.run_id = store.begin_run(&flow.name, mode).await?;
        runner.report.run_id = Some(runner.run_id);
    }
    let mut outcome = if options.dry_run {
        runner.run(read_mode, &target_cap).await
    } else {
        lease::renewing(store, &flow.name, &options.holder, runner.run(read_mode, &target_cap)).await
    };
    // A run that stopped early still commits the batch it had written.
    if let Err(e) = runner.save().await {
        outcome = outcome.and(Err(e));
    }
    if let Err(message) = &outcome {
        // Warn, not error: the report carries it to whoever prints (CLI) or logs (serve's worker) it, once.
        tracing::warn!(flow = %flow.name, error = %message, "run aborted");
        runner.report.aborted = Some(message.clone());
    }
    let listed = runner.report.duplicates.len() as u64;
    if runner.seen.count > listed {
        runner.report.warnings.push(format!("{} records had a key read before in this run ({listed} listed)", runner.seen.count));
    }
    runner.report.duration = started.elapsed();
    if !options.dry_run {
        store.set_run_warnings(runner.run_id, &runner.report.warnings).await?;
        let status = match (&runner.report.aborted, runner.report.counts.failed) {
            (Some(_), _) => "aborted",
            (None, 0) => "ok",
            (None, _) => "failed_records",
        };
        store.finish_run(runner.run_id, status, runner.report.aborted.as_deref()).await?;
        store.unlock_flow(&flow.name, &options.holder).await?;
    }
    Ok(runner.report)
}

impl Runner<'_> {
    async fn run(&mut self, read_mode: ReadMode, target_cap: &StreamCapability) -> Result<(), String> {
        let store_err = |e: crate::store::StoreError| e.to_string();
        let parked = self.store.failures(Some(&self.flow.name), None).await.map_err(store_err)?;
        self.open_failures = parked.iter().map(|f| (key_hash(&f.key), f.key.clone())).collect();

        // 1. Replay parked failures (due ones before a normal run; all or some on request).
        let now = chrono::Utc::now();
        let replays: Vec<_> = parked
            .into_iter()
            .filter(|f| match &self.options.replay {
                Replay::Due => {
                    f.retryable
                        && f.next_retry_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).is_some_and(|t| t <= now)
                }
                Replay::AllOnly => true,
                Replay::IdsOnly(ids) => ids.contains(&f.id),
            })
            .filter(|f| self.options.keys.as_ref().is_none_or(|k| k.contains(&f.key)))
            .collect();
        let mut batch = Batch::new();
        let mut retires = Vec::new();
        for f in replays {
            if f.stage == Stage::Retire.as_str() {
                // A retirement is replayed by retiring again, not by writing its payload. A normal run leaves
                // it to its complete read, which finds the record missing again (behind the retire guards).
                if self.options.replay != Replay::Due {
                    retires.push(f);
                }
                continue;
            }
            let position = f.position.clone().unwrap_or_else(|| f.key.clone());
            self.add(&mut batch, SourceRecord { position, data: f.source }).await?;
        }
        self.submit(&mut batch, None).await?;
        self.drain().await?;
        if self.options.replay != Replay::Due {
            return self.replay_retires(retires, target_cap).await;
        }

        // 2. Read the source from the checkpoint.
        self.reading = true;
        let checkpoint = if self.options.full || self.options.keys.is_some() {
            None
        } else {
            self.store.checkpoint(&self.flow.name).await.map_err(store_err)?
        };
        let complete = self.options.keys.is_none() && (read_mode == ReadMode::Snapshot || self.options.full);
        if complete {
            self.source_index = Some(Arc::new(self.load_source_index().await?));
        }
        let request = ReadRequest { stream: Some(self.stream), checkpoint, keys: self.selection.as_ref().and_then(KeySelection::source_keys) };
        let mut items = self.flow.source.read(request);
        while let Some(item) = items.next().await {
            match item {
                Ok(ReadItem::Record(record)) => {
                    self.source_items += 1;
                    self.add(&mut batch, record).await?
                }
                Ok(ReadItem::Checkpoint(cp)) => {
                    // Records so far get committed or parked with this checkpoint: it never skips any.
                    self.submit(&mut batch, Some(cp)).await?;
                }
                Ok(ReadItem::Invalid { position, key, raw, field, message }) => {
                    self.source_items += 1;
                    self.report.counts.read += 1;
                    batch.commit.counts.read += 1;
                    let unattributed = key.is_none();
                    let key = key.unwrap_or_else(|| unkeyed_failure_key(&position, raw.to_string().as_bytes()));
                    if !self.selected(&key, None) {
                        self.unattributed_failures += u64::from(unattributed);
                        self.report.counts.skipped += 1;
                        batch.commit.counts.skipped += 1;
                        continue;
                    }
                    self.mark_seen(&key);
                    self.park(&mut batch.commit, key, Some(position), Stage::Read, Some(field), message, false, raw);
                    self.submit_if_full(&mut batch).await?;
                }
                Ok(ReadItem::Warning(message)) => {
                    tracing::warn!(flow = %self.flow.name, "{message}");
                    self.report.warnings.push(message);
                }
                Err(e) => {
                    // Keep what was read before the error; the checkpoint stays where the last one was.
                    drop(items);
                    self.submit(&mut batch, None).await?;
                    self.drain().await?;
                    return Err(format!("reading {} from {}: {e}", self.stream, self.flow.config.source));
                }
            }
        }
        drop(items);
        self.submit(&mut batch, None).await?;
        self.drain().await?;
        if self.unattributed_failures > 0 {
            self.report.warnings.push(format!(
                "{} record(s) failed before their key was known and were left alone (not parked): they may or may not be \
                 the selected key(s); a run without --key parks them with the reason",
                self.unattributed_failures
            ));
        }

        // 3. Records that disappeared from a complete read.
        if complete {
            self.reconcile_missing(target_cap).await?;
        }
        Ok(())
    }

    /// Whether a record with this canonical key (and SKU, when known) is part of the run (every record,
    /// unless targeted).
    fn selected(&self, key: &str, sku: Option<&str>) -> bool {
        self.selection.as_ref().is_none_or(|s| s.selects(key, sku))
    }

    fn mark_seen(&mut self, key: &str) {
        self.seen.mark(key_hash(key));
    }

    /// The open failure of `key`, if any, is resolved by this batch.
    fn resolve(&mut self, commit: &mut BatchCommit, key: &str) {
        if self.open_failures.remove(&key_hash(key)).is_some() {
            commit.resolved.push(key.to_owned());
        }
    }

    /// Every source hash the flow has synced, for a complete read.
    async fn load_source_index(&self) -> Result<SourceIndex, String> {
        const PAGE: i64 = 50_000;
        let mut entries = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.source_hash_page(&self.flow.name, &after, PAGE).await.map_err(|e| e.to_string())?;
            let Some(last) = page.iter().map(|(key, _)| key).max() else { break };
            after = last.clone();
            let full = page.len() as i64 == PAGE;
            entries.extend(page.into_iter().filter_map(|(key, h)| Some((u128::from_str_radix(&h, 16).ok()?, key_hash(&key)))));
            if !full {
                break;
            }
        }
        entries.sort_unstable_by_key(|e| e.0);
        Ok(SourceIndex(entries))
    }

    /// Takes one source record into the batch; hashing, mapping and validation happen when the batch is
    /// prepared, mapping only for records whose raw content Ferry has not synced before.
    async fn add(&mut self, batch: &mut Batch, source: SourceRecord) -> Result<(), String> {
        self.report.counts.read += 1;
        batch.commit.counts.read += 1;
        batch.raw.push(Raw { position: source.position, data: source.data, source_hash: None, source_json: None });
        self.submit_if_full(batch).await
    }

    async fn submit_if_full(&mut self, batch: &mut Batch) -> Result<(), String> {
        if batch.len() >= self.batch_size { self.submit(batch, None).await } else { Ok(()) }
    }

    /// Starts preparing `batch` (with `checkpoint` to commit after it) on the blocking pool, then writes
    /// the batch prepared before it. So batch N+1 is hashed, mapped and validated on other threads while
    /// batch N is looked up and written (see `apply` for how N's look-up sees N-1's uncommitted results).
    async fn submit(&mut self, batch: &mut Batch, checkpoint: Option<serde_json::Value>) -> Result<(), String> {
        let mut current = std::mem::replace(batch, Batch::new());
        current.commit.checkpoint = checkpoint;
        if current.raw.is_empty() && current.commit.is_empty() {
            return Ok(());
        }
        // Without a loaded index (incremental and targeted reads: few records), every record is mapped and
        // compared by its canonical hash.
        let (mapping, stream, mapping_id, index) = (self.flow.mapping.clone(), self.stream, self.mapping_id, self.source_index.clone());
        let next = tokio::task::spawn_blocking(move || prepare(&mapping, stream, &mapping_id, index.as_deref(), current));
        if let Some(previous) = self.in_flight.replace(next) {
            let prepared = previous.await.map_err(|e| format!("preparing a batch: {e}"))?;
            self.apply(prepared).await?;
        }
        Ok(())
    }

    /// Writes and commits the batch still in preparation, if any.
    async fn drain(&mut self) -> Result<(), String> {
        if let Some(last) = self.in_flight.take() {
            let prepared = last.await.map_err(|e| format!("preparing a batch: {e}"))?;
            self.apply(prepared).await?;
        }
        self.save().await
    }

    /// Records what `transform` made of one record: a record ready to compare, or a parked failure.
    fn take(&mut self, commit: &mut BatchCommit, transformed: Transformed) -> Option<Pending> {
        match transformed {
            Transformed::Ready(p) if !self.selected(&p.key, record_sku(&p.record)) => {
                self.report.counts.skipped += 1;
                commit.counts.skipped += 1;
                None
            }
            Transformed::Ready(p) => {
                self.mark_seen(&p.key);
                Some(*p)
            }
            // Another record's failure is not this run's business; one without a key might be the selected one.
            Transformed::Failed { key, position, .. } if !self.selected(&key, None) => {
                self.unattributed_failures += u64::from(key == position);
                self.report.counts.skipped += 1;
                commit.counts.skipped += 1;
                None
            }
            Transformed::Skipped => {
                self.report.counts.skipped += 1;
                commit.counts.skipped += 1;
                None
            }
            Transformed::Failed { key, position, stage, field, message, data } => {
                self.mark_seen(&key);
                self.park(commit, key, Some(position), stage, field, message, false, data);
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn park(
        &mut self,
        commit: &mut BatchCommit,
        key: String,
        position: Option<String>,
        stage: Stage,
        field: Option<String>,
        message: String,
        retryable: bool,
        source: serde_json::Value,
    ) {
        // A failure carries its field whenever its message names one (a connector quoting serde).
        let field = field.filter(|f| !f.is_empty()).or_else(|| ferry_model::named_field(&message).map(str::to_owned));
        tracing::warn!(flow = %self.flow.name, record = %key, stage = stage.as_str(), field = field.as_deref().unwrap_or(""), %message, "record failed");
        self.report.counts.failed += 1;
        commit.counts.failed += 1;
        if self.report.failures.len() < MAX_LISTED {
            self.report.failures.push(FailureLine { key: key.clone(), stage, field: field.clone(), message: message.clone(), retryable });
        }
        commit.outcomes.push(RunRecord {
            key: key.clone(),
            outcome: "failed",
            target_id: None,
            field: field.clone(),
            message: Some(message.clone()),
            changes: None,
        });
        commit.failed.push(NewFailure { key, position, stage, field, message, retryable, source });
    }

    /// Create-once records (see `create_once`): keys without a cross-reference are looked up in the target
    /// (found → resumed there); records not in the target are created only in a status the flow imports;
    /// records changed since they were written carry what the target last received.
    async fn prepare_create_once(&mut self, to_write: Vec<ToWrite>, commit: &mut BatchCommit) -> Result<Vec<ToWrite>, String> {
        let flow = self.flow.name.clone();
        let unknown: Vec<String> = to_write.iter().filter(|w| w.target_id.is_none()).map(|w| w.pending.key.clone()).collect();
        let found = if unknown.is_empty() {
            HashMap::new()
        } else {
            let (target, stream) = (self.flow.target.clone(), self.stream);
            with_retry(&format!("find {stream} by key"), || target.find_by_key(stream, &unknown)).await?
        };
        let changed: Vec<String> = to_write.iter().filter(|w| w.target_id.is_some()).map(|w| w.pending.key.clone()).collect();
        let mut previous = if changed.is_empty() { HashMap::new() } else { self.store.payloads(&flow, &changed).await.map_err(|e| e.to_string())? };
        let mut out = Vec::with_capacity(to_write.len());
        for mut w in to_write {
            if w.target_id.is_some() {
                w.previous = previous.remove(&w.pending.key);
            } else if let Some(existing) = found.get(&w.pending.key) {
                tracing::info!(flow = %flow, record = %w.pending.key, target_id = %existing, "already in the target: resumed there, not created again");
                w.target_id = Some(existing.clone());
                w.found = true;
            } else if let Some(why) = self.flow.config.orders.refuses_to_create(&w.pending.record) {
                self.report.counts.skipped += 1;
                commit.counts.skipped += 1;
                self.resolve(commit, &w.pending.key);
                commit.outcomes.push(RunRecord {
                    key: w.pending.key,
                    outcome: "skipped",
                    target_id: None,
                    field: Some("status".into()),
                    message: Some(why),
                    changes: None,
                });
                continue;
            }
            out.push(w);
        }
        Ok(out)
    }

    fn count_unchanged(&mut self, commit: &mut BatchCommit) {
        self.report.counts.unchanged += 1;
        commit.counts.unchanged += 1;
    }

    /// Compares, writes and commits one prepared batch (and the checkpoint that came with it).
    async fn apply(&mut self, prepared: Prepared) -> Result<(), String> {
        let Prepared { items, mut commit } = prepared;

        // 1. Raw content synced before under this mapping: unchanged, without having been mapped again. The
        // same key twice in a run (overlap windows, appended files): the later version wins.
        let mut pending: Vec<Pending> = Vec::with_capacity(items.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for item in items {
            let transformed = match item {
                Prepared_::Known { key_hash, raw } => {
                    if !self.seen.contains(key_hash) {
                        if self.reading {
                            // The key's first read (a later one is transformed and checked below).
                            self.seen.note(key_hash, &raw.position);
                        } else {
                            self.seen.mark(key_hash);
                        }
                        self.count_unchanged(&mut commit);
                        if let Some(key) = self.open_failures.remove(&key_hash) {
                            commit.resolved.push(key);
                        }
                        continue;
                    }
                    // Seen before in this run: what was looked up may be stale.
                    transform(&self.flow.mapping, self.stream, &self.mapping_id, raw)
                }
                Prepared_::Transformed(t) => t,
            };
            if let Some(p) = self.take(&mut commit, transformed) {
                let Some(p) = self.check_duplicate(&mut commit, p) else { continue };
                match index.get(&p.key) {
                    Some(&i) => {
                        pending[i] = p;
                        self.report.counts.skipped += 1;
                        commit.counts.skipped += 1;
                    }
                    None => {
                        index.insert(p.key.clone(), pending.len());
                        pending.push(p);
                    }
                }
            }
        }

        // The previous batch, written to the target, is committed while this one is looked up and written
        // (the commit of a batch took about half of a run's time). Its results are newer than what the
        // store shows until then, so they override the look-up. A kill before either commit leaves both
        // batches to be written again (upserts) or found in the target (create-once), as for one batch.
        let (store, flow_def, run_id) = (self.store, self.flow, self.run_id);
        let unsaved = self.unsaved.take();
        let recent: HashMap<String, XrefEntry> = unsaved
            .iter()
            .flat_map(|c| &c.synced)
            .filter(|s| index.contains_key(&s.key))
            .map(|s| (s.key.clone(), XrefEntry { target_id: s.target_id.clone(), hash: s.hash.clone() }))
            .collect();
        let save_previous = async move {
            match unsaved {
                Some(c) => store.commit_batch(&flow_def.name, run_id, c).await.map_err(|e| e.to_string()),
                None => Ok(()),
            }
        };
        let (saved, written) = tokio::join!(save_previous, self.write_batch(pending, recent, commit));
        saved?;
        self.unsaved = self.carried.hold(written?, std::time::Instant::now());
        self.progress.update(&self.report.counts);
        Ok(())
    }

    /// A key read before in this run at another position is reported; with `on_duplicate = "fail"` this
    /// later record is parked instead of taken (`None`).
    fn check_duplicate(&mut self, commit: &mut BatchCommit, p: Pending) -> Option<Pending> {
        if !self.reading {
            return Some(p);
        }
        let Some(first) = self.seen.note(key_hash(&p.key), &p.position) else { return Some(p) };
        let duplicate = Duplicate { key: p.key.clone(), first, again: p.position.clone() };
        let policy = self.flow.config.on_duplicate;
        let message = duplicate.message(policy);
        tracing::warn!(flow = %self.flow.name, record = %p.key, "{message}");
        if self.report.duplicates.len() < MAX_LISTED {
            self.report.warnings.push(message.clone());
        }
        if self.report.duplicates.len() < MAX_LISTED {
            self.report.duplicates.push(duplicate);
        }
        match policy {
            OnDuplicate::Warn => {
                commit.outcomes.push(RunRecord { key: p.key.clone(), outcome: "duplicate", target_id: None, field: None, message: Some(message), changes: None });
                Some(p)
            }
            OnDuplicate::Fail => {
                // Its own failure key: the first record of this key is written and must not resolve it.
                let key = format!("{} (duplicate at {})", p.key, p.position);
                self.park(commit, key, Some(p.position), Stage::Read, None, message, false, source_value(&p.source));
                None
            }
        }
    }

    /// Commits the batch written last, if not yet committed.
    async fn save(&mut self) -> Result<(), String> {
        if let Some(commit) = self.carried.release(self.unsaved.take()) {
            self.store.commit_batch(&self.flow.name, self.run_id, commit).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Compares a batch with what the target last received (`recent`: results not committed yet), writes
    /// what changed and returns what to commit (nothing for a dry run).
    async fn write_batch(
        &mut self,
        pending: Vec<Pending>,
        recent: HashMap<String, XrefEntry>,
        mut commit: BatchCommit,
    ) -> Result<Option<BatchCommit>, String> {
        let flow = &self.flow.name;
        let keys: Vec<String> = pending.iter().map(|p| p.key.clone()).collect();
        let mut known = if keys.is_empty() { HashMap::new() } else { self.store.lookup(flow, &keys).await.map_err(|e| e.to_string())? };
        known.extend(recent);

        let mut to_write: Vec<ToWrite> = Vec::new();
        for p in pending {
            match known.get(&p.key) {
                Some(x) if x.hash == p.hash => {
                    self.count_unchanged(&mut commit);
                    self.resolve(&mut commit, &p.key);
                    // The source changed in ways the target does not see: remember the new raw content
                    // so the next run skips it early (state only; the target gets no write).
                    if !self.options.dry_run {
                        commit.synced.push(Synced {
                            key: p.key,
                            target_id: x.target_id.clone(),
                            hash: p.hash,
                            payload: p.canonical,
                            source_hash: Some(hex128(p.source_hash)),
                        });
                    }
                }
                other => {
                    let target_id = other.map(|x| x.target_id.clone());
                    to_write.push(ToWrite { pending: p, target_id, previous: None, found: false });
                }
            }
        }

        if self.write_mode == WriteMode::CreateOnce {
            to_write = self.prepare_create_once(to_write, &mut commit).await?;
        }

        if self.options.dry_run {
            self.plan(&to_write).await?;
            return Ok(None);
        }

        for chunk in chunks(to_write, self.batch_size) {
            let mut by_key: HashMap<String, Written_> = HashMap::with_capacity(chunk.len());
            let mut records: Vec<WriteRecord> = Vec::with_capacity(chunk.len());
            // Found in the target without a cross-reference: whatever the connector had to do (drive it on, or
            // only confirm it is done), the record's interrupted write was resumed.
            let mut found: HashSet<String> = HashSet::new();
            let mut before = self.listed_before(&chunk).await?;
            for ToWrite { pending: p, target_id, previous, found: was_found } in chunk {
                if was_found {
                    found.insert(p.key.clone());
                }
                if let Some(previous) = &previous
                    && self.listed_writes < MAX_WRITES_LISTED
                {
                    before.insert(p.key.clone(), previous.clone());
                }
                by_key.insert(p.key.clone(), Written_ { hash: p.hash, canonical: p.canonical, source_hash: p.source_hash, source: p.source });
                records.push(WriteRecord { key: p.key, target_id, record: p.record, previous });
            }
            let outcomes = self.write_with_retry(records, &by_key).await?;
            let mut answered = HashSet::new();
            for outcome in outcomes {
                let Some(sent) = by_key.remove(&outcome.key) else {
                    tracing::warn!(flow = %flow, record = %outcome.key, "target reported an outcome for a record it was not sent");
                    continue;
                };
                answered.insert(outcome.key.clone());
                match outcome.result {
                    Ok(mut written) => {
                        if found.contains(&outcome.key) && written.action == WriteAction::Unchanged {
                            written.action = WriteAction::Resumed;
                        }
                        let label = match written.action {
                            WriteAction::Created => {
                                commit.counts.created += 1;
                                self.report.counts.created += 1;
                                "created"
                            }
                            WriteAction::Updated | WriteAction::Retired => {
                                commit.counts.updated += 1;
                                self.report.counts.updated += 1;
                                "updated"
                            }
                            WriteAction::Unchanged => {
                                self.count_unchanged(&mut commit);
                                "unchanged"
                            }
                            WriteAction::Resumed => {
                                commit.counts.resumed += 1;
                                self.report.counts.resumed += 1;
                                "resumed"
                            }
                        };
                        if let Some(warning) = &written.warning {
                            tracing::warn!(flow = %flow, record = %outcome.key, %warning, "written with a warning");
                            commit.counts.warned += 1;
                            self.report.counts.warned += 1;
                            if self.report.warnings.len() < MAX_LISTED {
                                self.report.warnings.push(format!("{}: {warning}", outcome.key));
                            }
                        }
                        self.resolve(&mut commit, &outcome.key);
                        // Warnings are always listed, like failures.
                        if self.listed_writes < MAX_WRITES_LISTED || written.warning.is_some() {
                            self.listed_writes += 1;
                            let changes = matches!(label, "created" | "updated")
                                .then(|| crate::written_changes::changes(before.get(&outcome.key), &sent.canonical))
                                .flatten();
                            commit.outcomes.push(RunRecord {
                                key: outcome.key.clone(),
                                outcome: label,
                                target_id: Some(written.target_id.clone()),
                                field: None,
                                message: written.warning.clone(),
                                changes,
                            });
                        }
                        commit.synced.push(Synced {
                            key: outcome.key,
                            target_id: written.target_id,
                            hash: sent.hash,
                            payload: sent.canonical,
                            source_hash: Some(hex128(sent.source_hash)),
                        });
                    }
                    Err(failure) => {
                        self.park(&mut commit, outcome.key, None, Stage::Write, failure.field, failure.message, failure.retryable, source_value(&sent.source));
                    }
                }
            }
            // Whatever the target did not answer for: parked, retried later (never assumed written).
            for (key, sent) in by_key {
                if !answered.contains(&key) {
                    let message = format!("target {} returned no outcome for this record", self.flow.config.target);
                    self.park(&mut commit, key, None, Stage::Write, None, message, true, source_value(&sent.source));
                }
            }
        }
        Ok(Some(commit))
    }

    /// What the target last acknowledged of the records of `chunk` this run will list (while fewer than
    /// `MAX_WRITES_LISTED` are), so their outcomes carry field-level changes. Create-once records bring
    /// theirs along (`previous`); found and new records have none.
    async fn listed_before(&self, chunk: &[ToWrite]) -> Result<HashMap<String, serde_json::Value>, String> {
        let room = MAX_WRITES_LISTED.saturating_sub(self.listed_writes);
        let keys: Vec<String> =
            chunk.iter().filter(|w| w.target_id.is_some() && w.previous.is_none() && !w.found).map(|w| w.pending.key.clone()).take(room).collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.store.payloads(&self.flow.name, &keys).await.map_err(|e| e.to_string())
    }

    async fn plan(&mut self, to_write: &[ToWrite]) -> Result<(), String> {
        let changed: Vec<String> = to_write.iter().filter(|w| w.target_id.is_some() && !w.found).map(|w| w.pending.key.clone()).collect();
        let before = if changed.is_empty() {
            HashMap::new()
        } else {
            self.store.payloads(&self.flow.name, &changed).await.map_err(|e| e.to_string())?
        };
        for ToWrite { pending: p, target_id, found, .. } in to_write {
            let (action, changes) = match target_id {
                None => {
                    self.report.counts.created += 1;
                    ("create", Vec::new())
                }
                // In the target already, unknown to Ferry: the connector checks its state and resumes it.
                Some(_) if *found => {
                    self.report.counts.resumed += 1;
                    ("resume", Vec::new())
                }
                Some(_) => {
                    self.report.counts.updated += 1;
                    let new: serde_json::Value = serde_json::from_str(&p.canonical).unwrap_or_default();
                    let changes = before.get(&p.key).map(|old| diff(old, &new)).unwrap_or_default();
                    ("update", changes)
                }
            };
            if self.report.planned.len() < MAX_PLANNED {
                self.report.planned.push(PlannedChange { key: p.key.clone(), action, changes });
            }
        }
        Ok(())
    }

    /// Writes a batch through `with_retry`. The batch is moved into the first call (no copy on the happy
    /// path) and rebuilt from the canonical JSON kept in `sent` only when a retry needs it again.
    /// Create-once streams, a lost answer: the retry first asks the target for the records sent without a
    /// target id (the lost call may have created them) and resumes those instead of creating them again.
    ///
    /// A panic in the connector's `write` does not end the run: the batch is written again one record at
    /// a time, and the record that panics is parked with the panic's message (`isolate`).
    async fn write_with_retry(&self, records: Vec<WriteRecord>, sent: &HashMap<String, Written_>) -> Result<Vec<WriteOutcome>, String> {
        let ids: Vec<Resend> = records.iter().map(|w| (w.key.clone(), w.target_id.clone(), w.previous.clone())).collect();
        let mut batch = Some(records);
        let stream = self.stream;
        let target = self.flow.target.clone();
        let create_once = self.write_mode == WriteMode::CreateOnce;
        let ids_ref = &ids;
        let written = with_retry(&format!("write {stream}"), || {
            let first = batch.take();
            let target = target.clone();
            async move {
                let records = match first {
                    Some(records) => records,
                    None => {
                        let mut records = rebuild(stream, ids_ref, sent)?;
                        if create_once {
                            let found = create_once::find_existing(&target, stream, &records).await?;
                            create_once::adopt(&mut records, &found);
                        }
                        records
                    }
                };
                isolate::write_catching(target.as_ref(), stream, records).await
            }
        })
        .await?;
        match written {
            Ok(outcomes) => Ok(outcomes),
            Err(panic) => {
                let records = rebuild(stream, &ids, sent).map_err(|e| e.to_string())?;
                let name = &self.flow.config.target;
                with_retry(&format!("write {stream} one by one"), || {
                    isolate::write_one_by_one(target.as_ref(), name, stream, self.write_mode, records.clone(), &panic)
                })
                .await
            }
        }
    }

    /// After a complete read: records in the cross-reference that the source no longer has. Guarded twice
    /// (`retire_guard`): a read that found nothing retires nothing unless `allow_empty_source`, and no run
    /// retires more than `max_retire_share` of the live records, however few there are.
    async fn reconcile_missing(&mut self, target_cap: &StreamCapability) -> Result<(), String> {
        let flow = self.flow.name.clone();
        let mut missing = Vec::new();
        let mut total = 0u64;
        let mut already_retired = 0u64;
        let mut candidates = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.xref_keys_page(&flow, &after, 10_000).await.map_err(|e| e.to_string())?;
            let Some(last) = page.iter().max() else { break };
            after = last.clone();
            total += page.len() as u64;
            candidates.extend(page.into_iter().filter(|key| !self.seen.contains(key_hash(key))));
        }
        // Only the keys not seen need their target id (and whether they were retired already).
        for keys in candidates.chunks(10_000) {
            let entries = self.store.lookup(&flow, keys).await.map_err(|e| e.to_string())?;
            for key in keys {
                match entries.get(key) {
                    Some(e) if e.hash == RETIRED_HASH => already_retired += 1,
                    Some(e) => missing.push((key.clone(), e.target_id.clone())),
                    None => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mode = match self.flow.config.on_missing {
            OnMissing::Ignore => {
                self.report.warnings.push(format!(
                    "{} record(s) are no longer in the source and were left in the target (on_missing = \"ignore\")",
                    missing.len()
                ));
                return Ok(());
            }
            OnMissing::Deactivate => RetireMode::Deactivate,
            OnMissing::Delete => RetireMode::Delete,
        };
        let guard = retire_guard::RetireGuard {
            share: self.flow.config.max_retire_share.unwrap_or(retire_guard::DEFAULT_SHARE),
            force: self.options.force_retire,
            allow_empty_source: self.options.allow_empty_source,
        };
        let live = total - already_retired;
        match guard.check(self.source_items, missing.len() as u64, live) {
            retire_guard::Verdict::Retire => {}
            retire_guard::Verdict::EmptySource => {
                let source = &self.flow.config.source;
                let place = self.flow.source.location(self.stream).map(|l| format!(" ({l})")).unwrap_or_default();
                return Err(format!(
                    "source {source}{place} has no {} records at all (empty, or a header only): refusing to retire the {} \
                     record(s) synced from it before (on_missing = {:?}). If the source really is empty now, run again with \
                     --allow-empty-source.",
                    self.stream,
                    missing.len(),
                    self.flow.config.on_missing
                ));
            }
            retire_guard::Verdict::TooMany { limit } => {
                self.report.warnings.push(format!(
                    "{} of {live} records are missing from the source: more than max_retire_share = {share} allows ({limit}), so \
                     none were retired (a truncated export?). Run again with --force-retire if this is intended.",
                    missing.len(),
                    share = guard.share,
                ));
                return Ok(());
            }
        }
        if !target_cap.retire.contains(&mode) {
            self.report.warnings.push(format!(
                "{} record(s) are no longer in the source, but target {} cannot {mode:?} {}",
                missing.len(),
                self.flow.config.target,
                self.stream
            ));
            return Ok(());
        }
        self.retire(missing, mode).await
    }

    /// Retires `(key, target id)` pairs in batches and commits each batch. A record the target refuses is
    /// parked at the retire stage with its target id and mode, and `ferry failures retry` retires it again.
    async fn retire(&mut self, items: Vec<(String, String)>, mode: RetireMode) -> Result<(), String> {
        let flow = self.flow.name.clone();
        for chunk in items.chunks(self.batch_size) {
            if self.options.dry_run {
                for (key, _) in chunk {
                    self.report.counts.retired += 1;
                    if self.report.planned.len() < MAX_PLANNED {
                        let action = if mode == RetireMode::Delete { "delete" } else { "deactivate" };
                        self.report.planned.push(PlannedChange { key: key.clone(), action, changes: Vec::new() });
                    }
                }
                continue;
            }
            let target = self.flow.target.clone();
            let stream = self.stream;
            let items = chunk.to_vec();
            let target_ids: HashMap<String, String> = chunk.iter().cloned().collect();
            let outcomes = with_retry(&format!("retire {stream}"), || target.retire(stream, items.clone(), mode)).await?;
            let mut commit = BatchCommit::default();
            for o in outcomes {
                match o.result {
                    Ok(w) => {
                        commit.counts.retired += 1;
                        self.report.counts.retired += 1;
                        self.resolve(&mut commit, &o.key);
                        commit.outcomes.push(RunRecord {
                            key: o.key.clone(),
                            outcome: "retired",
                            target_id: Some(w.target_id.clone()),
                            field: None,
                            message: None,
                            changes: None,
                        });
                        if mode == RetireMode::Delete {
                            commit.forgotten.push(o.key);
                        } else {
                            commit.synced.push(Synced {
                                key: o.key,
                                target_id: w.target_id,
                                hash: RETIRED_HASH.into(),
                                payload: "null".into(),
                                source_hash: None,
                            });
                        }
                    }
                    Err(f) => {
                        let payload = retire_guard::retire_payload(&o.key, target_ids.get(&o.key).map(String::as_str), mode);
                        self.park(&mut commit, o.key, None, Stage::Retire, f.field, f.message, f.retryable, payload);
                    }
                }
            }
            self.store.commit_batch(&flow, self.run_id, commit).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Replays parked retire failures (`ferry failures retry`): each record still in the cross-reference
    /// and not retired is retired again, with the flow's current policy; the others need nothing more.
    async fn replay_retires(&mut self, failures: Vec<crate::store::Failure>, target_cap: &StreamCapability) -> Result<(), String> {
        if failures.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = failures.iter().map(|f| f.key.clone()).collect();
        let entries = self.store.lookup(&self.flow.name, &keys).await.map_err(|e| e.to_string())?;
        let mut settled = BatchCommit::default();
        let mut to_retire = Vec::new();
        for key in keys {
            match entries.get(&key) {
                Some(e) if e.hash != RETIRED_HASH => to_retire.push((key, e.target_id.clone())),
                // Deleted or deactivated since, or written back: nothing left to retire.
                _ => self.resolve(&mut settled, &key),
            }
        }
        if !self.options.dry_run && !settled.is_empty() {
            self.store.commit_batch(&self.flow.name, self.run_id, settled).await.map_err(|e| e.to_string())?;
        }
        let mode = match self.flow.config.on_missing {
            OnMissing::Ignore => {
                self.report.warnings.push(format!(
                    "{} parked retirement(s) not retried: on_missing is now \"ignore\" (drop them with `ferry failures drop`)",
                    to_retire.len()
                ));
                return Ok(());
            }
            OnMissing::Deactivate => RetireMode::Deactivate,
            OnMissing::Delete => RetireMode::Delete,
        };
        if !target_cap.retire.contains(&mode) {
            return Err(format!("target {} cannot {mode:?} {}", self.flow.config.target, self.stream));
        }
        self.retire(to_retire, mode).await
    }
}

/// The SKU of a price or stock record (whose keys are composite), for targeted runs naming SKUs.
fn record_sku(record: &Record) -> Option<&str> {
    match record {
        Record::Price(p) => Some(&p.sku),
        Record::Stock(s) => Some(&s.sku),
        _ => None,
    }
}

/// One record after mapping and validation.
enum Transformed {
    Ready(Box<Pending>),
    /// The mapping's filter left it out.
    Skipped,
    Failed { key: String, position: String, stage: Stage, field: Option<String>, message: String, data: serde_json::Value },
}

/// Maps, validates and fingerprints one raw record. Pure: safe to run on several threads at once.
fn transform(mapping: &Mapping, stream: Stream, mapping_id: &[u8; 32], raw: Raw) -> Transformed {
    let Raw { position, data, source_hash, source_json } = raw;
    let (source_hash, source) = match (source_hash, source_json) {
        (Some(hash), Some(json)) => (hash, json),
        _ => with_source_fingerprint(mapping_id, &data, |hash, json| (hash, String::from_utf8_lossy(json).into_owned())),
    };
    // A panic in the mapping or the model parks this record alone (see `isolate`).
    let panicked = |stage: Stage, message: String, source: &str, position: String| {
        let data = source_value(source);
        let key = key_hint(stream, &data).unwrap_or_else(|| position.clone());
        let message = format!("Ferry panicked while {}ing this record: {message}", if stage == Stage::Map { "mapp" } else { "validat" });
        Transformed::Failed { key, position, stage, field: None, message, data }
    };
    let mapped = match isolate::catch(|| mapping.apply(data)) {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return Transformed::Skipped,
        Ok(Err(e)) => {
            let data = source_value(&source);
            let key = key_hint(stream, &data).unwrap_or_else(|| unkeyed_failure_key(&position, source.as_bytes()));
            let field = (!e.field.is_empty()).then_some(e.field.clone());
            return Transformed::Failed { key, position, stage: Stage::Map, field, message: e.to_string(), data };
        }
        Err(panic) => return panicked(Stage::Map, panic, &source, position),
    };
    let parsed = isolate::catch(|| {
        Record::parse(stream, mapped, &position).map(|mut record| {
            let fp = fingerprint(&mut record);
            (record, fp)
        })
    });
    match parsed {
        Ok(Ok((record, fp))) => {
            let key = record.key();
            Transformed::Ready(Box::new(Pending { key, record, hash: fp.hash, canonical: fp.canonical, source_hash, source, position }))
        }
        Ok(Err(e)) => {
            let field = Some(e.field().to_owned()).filter(|f| !f.is_empty());
            // Without a key, the record is named by its position: that and its content identify the failure.
            let key = if e.record == position { unkeyed_failure_key(&position, source.as_bytes()) } else { e.record.clone() };
            Transformed::Failed { key, position, stage: Stage::Validate, field, message: e.to_string(), data: source_value(&source) }
        }
        Err(panic) => panicked(Stage::Validate, panic, &source, position),
    }
}

/// A source record back from the JSON text kept for it (always valid: it was serialised from a value).
fn source_value(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}

/// Prepares a batch: hashes each raw record, recognises the ones synced before (with the index of a
/// complete read) and transforms the rest; on every core, keeping read order.
fn prepare(mapping: &Mapping, stream: Stream, mapping_id: &[u8; 32], index: Option<&SourceIndex>, batch: Batch) -> Prepared {
    let Batch { raw, commit } = batch;
    let items = par_map(raw, |mut raw| {
        let known = with_source_fingerprint(mapping_id, &raw.data, |hash, json| {
            raw.source_hash = Some(hash);
            let known = index.and_then(|i| i.get(hash));
            if known.is_none() {
                raw.source_json = Some(String::from_utf8_lossy(json).into_owned());
            }
            known
        });
        match known {
            Some(key_hash) => Prepared_::Known { key_hash, raw },
            None => Prepared_::Transformed(transform(mapping, stream, mapping_id, raw)),
        }
    });
    Prepared { items, commit }
}

/// `f` over `items`, split across the machine's cores for large batches; results keep input order.
fn par_map<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    if threads < 2 || items.len() < 256 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts.into_iter().map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<_>>())).collect();
        // `f` catches the panics of a record's preparation itself (`transform`); a thread that still
        // panicked re-raises it here, and the batch's task reports it as the run's error.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// A changed or new record on its way to the target.
struct ToWrite {
    pending: Pending,
    /// From the cross-reference, or found in the target by key.
    target_id: Option<String>,
    /// Create-once records changed since they were written: what the target last acknowledged.
    previous: Option<serde_json::Value>,
    /// Found in the target by key (Ferry had no cross-reference): to be resumed.
    found: bool,
}

/// What was sent for one record, kept until the target answers.
struct Written_ {
    hash: String,
    canonical: String,
    source_hash: u128,
    source: String,
}

/// What a retry re-sends of one record besides its content: key, target id, previous payload.
type Resend = (String, Option<String>, Option<serde_json::Value>);

/// The batch of a retried write, from the canonical JSON of what was sent.
fn rebuild(stream: Stream, ids: &[Resend], sent: &HashMap<String, Written_>) -> Result<Vec<WriteRecord>, ConnectorError> {
    ids.iter()
        .map(|(key, target_id, previous)| {
            let fail = |e: String| ConnectorError::permanent("ferry", format!("rebuilding {key} for a retry: {e}"));
            let value = serde_json::from_str(&sent[key].canonical).map_err(|e| fail(e.to_string()))?;
            let record = Record::parse(stream, value, key).map_err(|e| fail(e.to_string()))?;
            Ok(WriteRecord { key: key.clone(), target_id: target_id.clone(), record, previous: previous.clone() })
        })
        .collect()
}

/// Identifies what turns raw records into canonical ones for this flow: the mapping, the stream and the
/// model's version.
fn mapping_id(config: &FlowConfig) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(&ferry_model::CANONICAL_REVISION.to_le_bytes());
    h.update(config.stream.as_str().as_bytes());
    h.update(serde_json::to_string(&config.mapping).unwrap_or_default().as_bytes());
    *h.finalize().as_bytes()
}

/// Hash of a raw source record under a mapping (the first 128 bits of a BLAKE3 digest), handed to `then`
/// with the record's JSON text.
fn with_source_fingerprint<R>(mapping_id: &[u8; 32], data: &serde_json::Value, then: impl FnOnce(u128, &[u8]) -> R) -> R {
    thread_local! {
        // Serialised into one reusable buffer and hashed in one call: BLAKE3 fed many small writes
        // (one per token) cost more than the serialisation.
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        buffer.extend_from_slice(mapping_id);
        serde_json::to_writer(&mut *buffer, data).expect("serialising to memory never fails");
        let digest = blake3::hash(buffer);
        then(digest128(&digest), &buffer[mapping_id.len()..])
    })
}


/// What identifies a failed record that has no key: its position and a hash of its content. Two bad rows
/// are never one failure (a miscounted line, or another row moved to that line since, must not merge them
/// or hand one the other's payload), and the same bad row read again is the same failure (its attempts
/// grow).
fn unkeyed_failure_key(position: &str, content: &[u8]) -> String {
    let digest = blake3::hash(content);
    format!("{position} #{}", &hex128(digest128(&digest))[..12])
}

/// 64-bit hash of a key, for the set of keys a complete read has seen (8 bytes a key instead of the key).
fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn chunks<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(size).collect());
    }
    out
}

/// Retries a whole call on transient errors with backoff and jitter; anything else ends the run.
async fn with_retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < BATCH_ATTEMPTS => {
                // the endpoint's own Retry-After, when longer than our backoff
                let delay = Backoff::BATCH.delay(attempt).max(e.retry_after.unwrap_or_default());
                tracing::warn!(error = %e, attempt, ?delay, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(format!("{what}: {e} (after {attempt} attempt(s))")),
        }
    }
}
