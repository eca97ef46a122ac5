//! `jsonl`: a folder of canonical JSON-lines files, one per stream (`products.jsonl`, `orders.jsonl`, …).
//!
//! Used as a quickstart target, for tests and benchmarks, and as a plain export any tool can read.
//! Writes append (so a write is one sequential IO, and a crash can only tear the last line); the file's
//! state is its last version per key with tombstones applied — see [`materialize`].
//!
//! Options: `path` (folder, relative to the config file, or `sftp://user@host:port/dir` with the options
//! of [`crate::sftp`]), `fsync` (default true: make every written batch durable before reporting it
//! written), `create` (default true: create the folder).

mod store;
#[cfg(test)]
mod tests;

pub use crate::rawkey::record_key;
pub use store::materialize;

use crate::fileio::{self, Emitter, io_error, run_blocking};
use crate::sftp::{Mirror, RemoteFolder};
use async_trait::async_trait;
use ferry_engine::{
    BuildContext, CheckReport, Compaction, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest,
    RecordFailure, RetireMode, SourceRecord, StreamCapability, WriteAction, WriteMode, WriteOutcome, WriteRecord,
};
use ferry_engine::connector::parse_options;
use ferry_model::Stream;
use futures::stream::BoxStream;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::BadLine;
use tokio::sync::Mutex;

const NAME: &str = "jsonl";
const WRITE_BUFFER: usize = 256 * 1024;

/// Registers as `type = "jsonl"`.
pub struct JsonlFactory;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    path: String,
    #[serde(default = "yes")]
    fsync: bool,
    #[serde(default = "yes")]
    create: bool,
}

fn yes() -> bool {
    true
}

impl ConnectorFactory for JsonlFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "A folder of canonical JSON-lines files, one per stream (read and write)"
    }

    fn build(&self, options: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let (options, remote) = crate::remote::split(options, ctx)?;
        let options: Options = parse_options(&options, ctx)?;
        if options.path.trim().is_empty() {
            return Err(ConnectorError::config(format!("connection {}", ctx.connection), "option path: must name a folder"));
        }
        Ok(Arc::new(match remote {
            // The local copies need no fsync: every upload is fsynced on the server before it is renamed into place.
            Some(folder) => JsonlConnector::remote(folder),
            None => JsonlConnector::new(ctx.resolve(&options.path), options.fsync, options.create),
        }))
    }
}

/// A connection to one folder of JSONL files.
pub struct JsonlConnector {
    folder: PathBuf,
    fsync: bool,
    create: bool,
    /// One appender per stream; the lock serialises writers of a file (reads open their own handle).
    sinks: HashMap<Stream, Arc<Mutex<Sink>>>,
    /// A folder on an SFTP server: `folder` then holds the local copies of its files.
    remote: Option<Remote>,
}

/// Reads go through local copies of the remote files; writes go to a local copy of each stream's file,
/// published after every batch (see [`crate::sftp`]).
struct Remote {
    folder: Arc<RemoteFolder>,
    mirrors: HashMap<Stream, Mutex<Mirror>>,
}

impl JsonlConnector {
    pub fn new(folder: PathBuf, fsync: bool, create: bool) -> Self {
        let sinks = Stream::ALL
            .into_iter()
            .map(|s| (s, Arc::new(Mutex::new(Sink { stream: s, path: file_path(&folder, s), writer: None, keys: None }))))
            .collect();
        JsonlConnector { folder, fsync, create, sinks, remote: None }
    }

    fn remote(folder: Arc<RemoteFolder>) -> Self {
        let mut connector = JsonlConnector::new(folder.mirror_path(""), false, true);
        let mirrors = Stream::ALL.into_iter().map(|s| (s, Mutex::new(Mirror::new(folder.clone(), &file_name(s))))).collect();
        connector.remote = Some(Remote { folder, mirrors });
        connector
    }

    /// Runs `work` on a stream's sink: directly for a local folder; for a remote one on the local copy,
    /// brought up to date first and published after (see [`crate::remote::write_through`]).
    async fn with_sink<T, F>(&self, stream: Stream, work: F) -> Result<T, ConnectorError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Sink) -> Result<T, ConnectorError> + Send + 'static,
    {
        let mut sink = self.sink(stream).lock_owned().await;
        let path = self.file(stream);
        let Some(remote) = &self.remote else {
            return run_blocking(&path, move || work(&mut sink)).await;
        };
        let mut mirror = remote.mirrors[&stream].lock().await;
        crate::remote::write_through(&mut mirror, |replaced| {
            run_blocking(&path, move || {
                if replaced {
                    sink.reset();
                }
                work(&mut sink)
            })
        })
        .await
    }

    pub fn file(&self, stream: Stream) -> PathBuf {
        file_path(&self.folder, stream)
    }

    fn sink(&self, stream: Stream) -> Arc<Mutex<Sink>> {
        self.sinks[&stream].clone()
    }
}

fn file_path(folder: &Path, stream: Stream) -> PathBuf {
    folder.join(file_name(stream))
}

fn file_name(stream: Stream) -> String {
    format!("{stream}.jsonl")
}

/// Orders and shipments are created once; everything else is simply overwritten by a newer version.
fn write_mode(stream: Stream) -> WriteMode {
    match stream {
        Stream::Orders | Stream::Shipments => WriteMode::CreateOnce,
        _ => WriteMode::Upsert,
    }
}

/// The append side of one stream's file.
struct Sink {
    stream: Stream,
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    /// Keys in the file's current state; built on first need (find_by_key, create-once writes), then kept
    /// up to date with every append so repeated look-ups do not rescan.
    keys: Option<HashSet<Box<str>>>,
}

impl Sink {
    fn err(&self, action: &str, e: &std::io::Error) -> ConnectorError {
        io_error(&self.path, action, e)
    }

    fn open(&mut self, create_folder: bool) -> Result<&mut BufWriter<File>, ConnectorError> {
        // Another process (`ferry prune` beside `ferry serve`) may have compacted the file: appending to
        // the handle of the replaced file would lose the records. Reopen (and rescan keys) when so.
        if let Some(w) = &self.writer
            && !fileio::same_file(w.get_ref(), &self.path)
        {
            self.reset();
        }
        if self.writer.is_none() {
            let folder = self.path.parent().expect("a stream file always lives in a folder");
            if !folder.is_dir() {
                if !create_folder {
                    return Err(ConnectorError::config(
                        folder.display().to_string(),
                        "folder does not exist (set create = true to create it)",
                    ));
                }
                std::fs::create_dir_all(folder).map_err(|e| io_error(folder, "create the folder", &e))?;
            }
            let (file, _) = fileio::open_for_append(&self.path).map_err(|e| self.err("open for appending", &e))?;
            self.writer = Some(BufWriter::with_capacity(WRITE_BUFFER, file));
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }

    fn keys(&mut self) -> Result<&mut HashSet<Box<str>>, ConnectorError> {
        if self.keys.is_none() {
            if let Some(w) = self.writer.as_mut() {
                w.flush().map_err(|e| io_error(&self.path, "flush", &e))?;
            }
            let keys = store::live_keys(&self.path, self.stream).map_err(|e| self.err("scan for keys", &e))?;
            self.keys = Some(keys);
        }
        Ok(self.keys.as_mut().expect("loaded above"))
    }

    /// Makes everything appended so far durable (when `fsync`) before outcomes are reported.
    fn commit(&mut self, fsync: bool) -> Result<(), ConnectorError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(|e| io_error(&self.path, "write", &e))?;
            if fsync {
                w.get_ref().sync_data().map_err(|e| io_error(&self.path, "fsync", &e))?;
            }
        }
        Ok(())
    }

    /// After a failed call: drop buffered bytes without writing them and forget the key set, so the next
    /// call reopens (repairing any torn line) and rescans what really reached the file.
    fn reset(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.into_parts();
        }
        self.keys = None;
    }

    fn write(&mut self, batch: Vec<WriteRecord>, fsync: bool, create_folder: bool) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let result = self.try_write(batch, fsync, create_folder);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn try_write(&mut self, batch: Vec<WriteRecord>, fsync: bool, create_folder: bool) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let stream = self.stream;
        let create_once = write_mode(stream) == WriteMode::CreateOnce;
        self.open(create_folder)?;
        if create_once {
            self.keys()?;
        }
        let Sink { writer, keys, path, .. } = self;
        let writer = writer.as_mut().expect("opened above");
        let mut outcomes = Vec::with_capacity(batch.len());
        for wr in batch {
            if wr.record.stream() != stream {
                let msg = format!("is a {} record; this is the {stream} file", wr.record.stream());
                outcomes.push(WriteOutcome::failed(wr.key, RecordFailure::permanent(None, msg)));
                continue;
            }
            let key = wr.record.key();
            // Create-once: a record already in the file is never appended again, even if the engine lost
            // its cross-reference (then it comes back found by key, without `previous`: a line in a file has
            // no state to resume). A record that changed since it was written is appended: the file is a feed
            // whose readers keep the last line of a key.
            if create_once && wr.previous.is_none() && keys.as_ref().is_some_and(|k| k.contains(key.as_str())) {
                outcomes.push(WriteOutcome::ok(wr.key, key, WriteAction::Unchanged));
                continue;
            }
            serde_json::to_writer(&mut *writer, &wr.record)
                .map_err(std::io::Error::from)
                .and_then(|()| writer.write_all(b"\n"))
                .map_err(|e| io_error(path, &format!("write {stream} {key}"), &e))?;
            if let Some(keys) = keys.as_mut() {
                keys.insert(key.as_str().into());
            }
            let action = if wr.target_id.is_some() { WriteAction::Updated } else { WriteAction::Created };
            outcomes.push(WriteOutcome::ok(wr.key, key, action));
        }
        self.commit(fsync)?;
        Ok(outcomes)
    }

    fn retire(&mut self, items: Vec<(String, String)>, mode: RetireMode, fsync: bool, create_folder: bool) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let result = self.try_retire(items, mode, fsync, create_folder);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn try_retire(&mut self, items: Vec<(String, String)>, mode: RetireMode, fsync: bool, create_folder: bool) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let stream = self.stream;
        let marker = match mode {
            RetireMode::Delete => store::DELETED,
            RetireMode::Deactivate => store::DEACTIVATED,
        };
        let gone = mode == RetireMode::Delete || !store::can_deactivate(stream);
        self.open(create_folder)?;
        let Sink { writer, keys, path, .. } = self;
        let writer = writer.as_mut().expect("opened above");
        let mut outcomes = Vec::with_capacity(items.len());
        for (key, target_id) in items {
            let quoted = serde_json::to_string(&target_id).expect("strings always serialise");
            writeln!(writer, "{{\"{}\":\"{marker}\",\"key\":{quoted}}}", store::MARKER)
                .map_err(|e| io_error(path, &format!("write tombstone for {stream} {target_id}"), &e))?;
            if gone && let Some(keys) = keys.as_mut() {
                keys.remove(target_id.as_str());
            }
            outcomes.push(WriteOutcome::ok(key, target_id, WriteAction::Retired));
        }
        self.commit(fsync)?;
        Ok(outcomes)
    }
}

fn invalid(label: &str, bad: BadLine) -> ReadItem {
    ReadItem::Invalid {
        position: format!("{label} line {}", bad.line),
        key: bad.key,
        raw: bad.raw,
        field: String::new(),
        message: format!("{label} line {} {}", bad.line, bad.message),
    }
}

/// Both passes of a read, on a blocking thread.
fn read_file(path: &Path, stream: Stream, only: Option<HashSet<String>>, em: &mut Emitter) -> Result<(), ConnectorError> {
    let label = format!("{stream}.jsonl");
    // A missing file is an error, not an empty snapshot: an empty snapshot would retire every record.
    if !path.is_file() {
        return Err(ConnectorError::config(path.display().to_string(), "file not found"));
    }
    let mut stopped = false;
    // As a source, a last line without newline is a record (exports often end that way).
    let entries = store::scan(path, stream, only.as_ref(), crate::fileio::LastLine::Record, &mut |bad| {
        stopped = !em.emit(Ok(invalid(&label, bad)));
        !stopped
    })
    .map_err(|e| io_error(path, "read", &e))?;
    if stopped {
        return Ok(());
    }
    let winners = store::winners(entries);
    store::emit_winners(path, stream, &winners, &mut |line, item| match item {
        Ok(data) => em.emit(Ok(ReadItem::Record(SourceRecord { position: format!("{label} line {line}"), data }))),
        Err(bad) => em.emit(Ok(invalid(&label, bad))),
    })
    .map_err(|e| io_error(path, "read", &e))
}

#[async_trait]
impl Connector for JsonlConnector {
    fn describe(&self) -> Description {
        let read_mode = self.remote.as_ref().map_or(ReadMode::Snapshot, |r| r.folder.read_mode());
        Description {
            name: NAME,
            summary: "A folder of canonical JSON-lines files, one per stream (read and write)",
            config_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "description": "Folder holding <stream>.jsonl files; relative to the config file, or sftp://user@host:port/dir"},
                    "fsync": {"type": "boolean", "default": true, "description": "fsync after every written batch"},
                    "create": {"type": "boolean", "default": true, "description": "create the folder if missing"},
                    "password": crate::sftp::option_schema("password"),
                    "private_key": crate::sftp::option_schema("private_key"),
                    "key_path": crate::sftp::option_schema("key_path"),
                    "passphrase": crate::sftp::option_schema("passphrase"),
                    "known_hosts_path": crate::sftp::option_schema("known_hosts_path"),
                    "host_key_fingerprint": crate::sftp::option_schema("host_key_fingerprint"),
                    "pickup": crate::sftp::option_schema("pickup"),
                    "settle_seconds": crate::sftp::option_schema("settle_seconds"),
                    "done_suffix": crate::sftp::option_schema("done_suffix"),
                    "archive": crate::sftp::option_schema("archive"),
                    "timeout_seconds": crate::sftp::option_schema("timeout_seconds")
                }
            }),
            streams: Stream::ALL
                .into_iter()
                .map(|stream| StreamCapability {
                    stream,
                    read: Some(read_mode),
                    write: Some(write_mode(stream)),
                    find_by_key: true,
                    retire: vec![RetireMode::Deactivate, RetireMode::Delete],
                })
                .collect(),
            batch_size: 1000,
            webhooks: false,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        if let Some(remote) = &self.remote {
            let files: Vec<String> = Stream::ALL.into_iter().map(file_name).collect();
            return Ok(remote.folder.check(&files, true).await);
        }
        let folder = self.folder.clone();
        let create = self.create;
        run_blocking(&self.folder, move || {
            Ok(match fileio::check_writable_dir(&folder, create) {
                Ok(msg) => {
                    // Every file a sync would read or append to is opened, as the sync will.
                    let mut details = vec![msg];
                    let mut ok = true;
                    for stream in Stream::ALL {
                        let path = file_path(&folder, stream);
                        let opened = std::fs::OpenOptions::new().read(true).append(true).open(&path);
                        match (opened, std::fs::symlink_metadata(&path)) {
                            (Ok(file), _) => {
                                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                                details.push(format!("{} readable and writable ({len} bytes)", path.display()));
                            }
                            (Err(e), Ok(_)) => {
                                ok = false;
                                details.push(format!("{} cannot be opened: {e}", path.display()));
                            }
                            (Err(_), Err(_)) => {}
                        }
                    }
                    CheckReport { ok, details }
                }
                Err(msg) => CheckReport { ok: false, details: vec![msg] },
            })
        })
        .await
    }

    fn location(&self, stream: Stream) -> Option<String> {
        if let Some(remote) = &self.remote {
            return Some(remote.folder.url(&file_name(stream)));
        }
        Some(file_path(&self.folder, stream).display().to_string())
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let stream = request.stream();
        let path = self.file(stream);
        let only = request.keys.map(|k| k.into_iter().collect::<HashSet<_>>());
        if let Some(remote) = &self.remote {
            return crate::remote::read(remote.folder.clone(), file_name(stream), request.checkpoint, move |local, em| {
                read_file(local, stream, only, em)
            });
        }
        fileio::blocking_stream(path.display().to_string(), move |em| read_file(&path, stream, only, em))
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let (fsync, create) = (self.fsync, self.create);
        self.with_sink(stream, move |sink| sink.write(batch, fsync, create)).await
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        let keys = keys.to_vec();
        self.with_sink(stream, move |sink| {
            let present = sink.keys()?;
            Ok(keys.into_iter().filter(|k| present.contains(k.as_str())).map(|k| (k.clone(), k)).collect())
        })
        .await
    }

    async fn retire(&self, stream: Stream, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let (fsync, create) = (self.fsync, self.create);
        self.with_sink(stream, move |sink| sink.retire(items, mode, fsync, create)).await
    }

    /// Keeps the latest line per key (see [`store::compact`]); writers of this connection wait, and the
    /// appender reopens the new file afterwards.
    async fn compact(&self, stream: Stream, dry_run: bool) -> Result<Option<Compaction>, ConnectorError> {
        let path = self.file(stream);
        let target = self.location(stream).unwrap_or_else(|| path.display().to_string());
        self.with_sink(stream, move |sink| {
            if !path.is_file() {
                return Ok(None);
            }
            sink.commit(true)?;
            let result = store::compact(&path, stream, dry_run).map_err(|e| io_error(&path, "compact", &e));
            if !dry_run {
                sink.reset();
            }
            let counts = result?;
            Ok(Some(Compaction { target, lines_before: counts.lines_before, lines_after: counts.lines_after }))
        })
        .await
    }
}
