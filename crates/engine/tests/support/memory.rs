//! A connector that keeps its records in memory, with switches to make it fail. It is a test double of
//! the *contract* (to drive the engine into crashes and endpoint failures on demand), not a stand-in for
//! any real system: those are tested live in crates/connectors/tests.

use async_trait::async_trait;
use ferry_engine::connector::*;
use ferry_model::{Record, Stream};
use futures::stream::BoxStream;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

#[derive(Default)]
pub struct Faults {
    /// Keys the target refuses (permanently), naming this field.
    pub refuse: HashMap<String, String>,
    /// Keys the target refuses for now (retryable: a lock, a timeout).
    pub busy: HashSet<String>,
    /// The next N write calls fail as a whole with a transient error.
    pub transient_calls: u32,
    /// The `Retry-After` those transient errors carry.
    pub retry_after: Option<std::time::Duration>,
    /// Write calls fail as a whole (permanent) once this many records were stored: "endpoint died mid-batch".
    pub die_after: Option<usize>,
    /// Create-once: these keys are created, then the step that finishes them fails transiently (a sale
    /// created but not yet confirmed when the call broke off).
    pub stall_after_create: HashSet<String>,
    /// The next N write calls do their work and then lose the answer (a connection dropped after the
    /// endpoint answered).
    pub lose_answers: u32,
    /// Keys whose write makes the connector panic (after storing the records before it in the batch):
    /// a connector bug that must not stop the flow.
    pub panic_on: HashSet<String>,
    /// Keys the target refuses to retire (permanently).
    pub refuse_retire: HashSet<String>,
}

pub struct Memory {
    pub stream: Stream,
    pub read_mode: ReadMode,
    pub write_mode: WriteMode,
    pub source: Mutex<Vec<serde_json::Value>>,
    pub target: Mutex<BTreeMap<String, Record>>,
    pub write_calls: Mutex<u32>,
    pub records_written: Mutex<usize>,
    pub faults: Mutex<Faults>,
    pub retired: Mutex<Vec<(String, RetireMode)>>,
    /// Create-once records created but left short of their end state (like a sale still in draft).
    pub unfinished: Mutex<HashSet<String>>,
    /// `WriteRecord::previous` of every record written, by key (the last one).
    pub previous_seen: Mutex<HashMap<String, serde_json::Value>>,
    /// Emit a checkpoint (the index) after every N source records, for incremental reads.
    pub checkpoint_every: usize,
    /// The keys each read asked for (`ReadRequest::keys`).
    pub requested_keys: Mutex<Vec<Option<Vec<String>>>>,
}

impl Memory {
    pub fn new(stream: Stream, read_mode: ReadMode, write_mode: WriteMode) -> Self {
        Memory {
            stream,
            read_mode,
            write_mode,
            source: Mutex::new(Vec::new()),
            target: Mutex::new(BTreeMap::new()),
            write_calls: Mutex::new(0),
            records_written: Mutex::new(0),
            faults: Mutex::new(Faults::default()),
            retired: Mutex::new(Vec::new()),
            unfinished: Mutex::new(HashSet::new()),
            previous_seen: Mutex::new(HashMap::new()),
            checkpoint_every: 2,
            requested_keys: Mutex::new(Vec::new()),
        }
    }
    pub fn writes(&self) -> usize {
        *self.records_written.lock().unwrap()
    }
}

#[async_trait]
impl Connector for Memory {
    fn describe(&self) -> Description {
        Description {
            name: "memory",
            summary: "test double of the connector contract",
            config_schema: serde_json::json!({}),
            streams: vec![StreamCapability {
                stream: self.stream,
                read: Some(self.read_mode),
                write: Some(self.write_mode),
                find_by_key: true,
                retire: vec![RetireMode::Deactivate, RetireMode::Delete],
            }],
            batch_size: 3,
            webhooks: false,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport { ok: true, details: vec![] })
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        self.requested_keys.lock().unwrap().push(request.keys.clone());
        let records = self.source.lock().unwrap().clone();
        let start = request.checkpoint.and_then(|c| c.as_u64()).unwrap_or(0) as usize;
        let every = self.checkpoint_every;
        let incremental = self.read_mode == ReadMode::Incremental;
        let mut items = Vec::new();
        for (i, data) in records.into_iter().enumerate().skip(start) {
            items.push(Ok(ReadItem::Record(SourceRecord { position: format!("memory #{i}"), data })));
            if incremental && (i + 1) % every == 0 {
                items.push(Ok(ReadItem::Checkpoint(serde_json::json!(i + 1))));
            }
        }
        Box::pin(futures::stream::iter(items))
    }

    async fn write(&self, _stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        *self.write_calls.lock().unwrap() += 1;
        let mut faults = self.faults.lock().unwrap();
        if faults.transient_calls > 0 {
            faults.transient_calls -= 1;
            return Err(ConnectorError::transient("memory", "503 Service Unavailable").with_retry_after(faults.retry_after));
        }
        let mut target = self.target.lock().unwrap();
        let mut outcomes = Vec::new();
        for w in batch {
            if faults.panic_on.contains(&w.key) {
                // Locks released first, as a panicking connector's would be: the test checks the engine.
                drop(target);
                drop(faults);
                panic!("connector bug on {}", w.key);
            }
            if let Some(limit) = faults.die_after
                && *self.records_written.lock().unwrap() >= limit
            {
                return Err(ConnectorError::permanent("memory", "connection reset by peer"));
            }
            if faults.busy.contains(&w.key) {
                outcomes.push(WriteOutcome::failed(w.key, RecordFailure::transient("record locked by another user")));
                continue;
            }
            if let Some(field) = faults.refuse.get(&w.key) {
                // An empty field: the target names it only in its message, the way serde-based APIs do.
                let failure = match field.is_empty() {
                    true => RecordFailure::permanent(None, "400 Bad Request: missing field `name` at line 1 column 20"),
                    false => RecordFailure::permanent(Some(field.clone()), "refused by target"),
                };
                outcomes.push(WriteOutcome::failed(w.key, failure));
                continue;
            }
            let id = format!("id-{}", w.key);
            if let Some(previous) = &w.previous {
                self.previous_seen.lock().unwrap().insert(w.key.clone(), previous.clone());
            }
            if self.write_mode == WriteMode::CreateOnce && w.target_id.is_some() && w.previous.is_none() {
                // Found by key: resume it to its end state, or report it is there already.
                let resumed = self.unfinished.lock().unwrap().remove(&w.key);
                outcomes.push(WriteOutcome::ok(w.key, id, if resumed { WriteAction::Resumed } else { WriteAction::Unchanged }));
                continue;
            }
            if self.write_mode == WriteMode::CreateOnce && w.target_id.is_none() && target.contains_key(&w.key) {
                // Like a unique constraint: the target refuses a second record with this key.
                outcomes.push(WriteOutcome::failed(w.key, RecordFailure::permanent(Some("number".into()), "must be unique")));
                continue;
            }
            let existed = target.insert(w.key.clone(), w.record).is_some();
            *self.records_written.lock().unwrap() += 1;
            if faults.stall_after_create.remove(&w.key) {
                self.unfinished.lock().unwrap().insert(w.key.clone());
                outcomes.push(WriteOutcome::failed(w.key, RecordFailure::transient("502 Bad Gateway after create")));
                continue;
            }
            let action = if existed { WriteAction::Updated } else { WriteAction::Created };
            outcomes.push(WriteOutcome::ok(w.key.clone(), id, action));
        }
        if faults.lose_answers > 0 {
            faults.lose_answers -= 1;
            return Err(ConnectorError::transient("memory", "connection closed before the answer"));
        }
        Ok(outcomes)
    }

    async fn find_by_key(&self, _stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let target = self.target.lock().unwrap();
        let wanted: HashSet<&String> = keys.iter().collect();
        Ok(target.keys().filter(|k| wanted.contains(k)).map(|k| (k.clone(), format!("id-{k}"))).collect())
    }

    async fn retire(&self, _stream: Stream, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut retired = self.retired.lock().unwrap();
        let faults = self.faults.lock().unwrap();
        let refuse = &faults.refuse_retire;
        Ok(items
            .into_iter()
            .map(|(key, id)| {
                if refuse.contains(&key) {
                    return WriteOutcome::failed(key, RecordFailure::permanent(None, "record is referenced by open orders"));
                }
                retired.push((key.clone(), mode));
                WriteOutcome::ok(key, id, WriteAction::Retired)
            })
            .collect())
    }
}
