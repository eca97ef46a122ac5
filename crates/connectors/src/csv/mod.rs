//! `csv`: a folder of exports the way legacy ERPs produce them (products, prices, stock, customers,
//! shipments read as snapshots) and an orders file they can import (one row per order line).
//!
//! Options:
//! - `path`: the folder (relative to the config file), or a folder on an SFTP server,
//!   `sftp://user@host:port/dir`, with the options of [`crate::sftp`] (credentials, host key, pickup,
//!   archive).
//! - `delimiter`: one character, default `,` (`;` is common where the decimal separator is a comma).
//! - `decimal_comma`: read `1.234,50` as `1234.50` and write decimals with a comma. Default false.
//! - `files`: stream → file name, default `<stream>.csv`.
//! - `columns`: stream → {file header → field path} for read streams (`ItemCode = "sku"`); for `orders`,
//!   canonical column → header to write.
//! - `text_columns`: headers (or field paths) never converted, e.g. codes that look like `1,5`.
//! - `fsync`: fsync after every written batch, default true.
//! - `escape_formulas`: written text (names, addresses, notes, SKUs, order numbers…) starting with `=`,
//!   `+`, `-`, `@`, tab or CR gets a leading `'`, so a spreadsheet or an ERP importer built on one shows
//!   it instead of running it as a formula. Default true.
//!
//! Read values stay text (a header path names the field, empty cells are left out); turning text into
//! typed fields is the flow mapping's job.

mod orders;
mod rows;
#[cfg(test)]
mod tests;

pub use orders::ORDER_COLUMNS;
pub use rows::decimal_comma_to_dot;

use crate::fileio::{self, run_blocking};
use crate::sftp::{Mirror, RemoteFolder};
use async_trait::async_trait;
use ferry_engine::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest,
    StreamCapability, WriteMode, WriteOutcome, WriteRecord,
};
use ferry_engine::connector::parse_options;
use ferry_model::Stream;
use futures::stream::BoxStream;
use orders::{OrderFormat, OrdersSink};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::Mutex;

const NAME: &str = "csv";
const SUMMARY: &str = "A folder of CSV exports (products, prices, stock, customers, shipments) and an orders import file";
/// The streams read from export files.
const READ_STREAMS: [Stream; 5] = [Stream::Products, Stream::Prices, Stream::Stock, Stream::Customers, Stream::Shipments];

/// Registers as `type = "csv"`.
pub struct CsvFactory;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    path: String,
    #[serde(default = "default_delimiter")]
    delimiter: String,
    #[serde(default)]
    decimal_comma: bool,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    columns: BTreeMap<String, HashMap<String, String>>,
    #[serde(default)]
    text_columns: Vec<String>,
    #[serde(default = "yes")]
    fsync: bool,
    #[serde(default = "yes")]
    escape_formulas: bool,
}

fn default_delimiter() -> String {
    ",".into()
}

fn yes() -> bool {
    true
}

impl ConnectorFactory for CsvFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        SUMMARY
    }

    fn build(&self, options: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let (options, remote) = crate::remote::split(options, ctx)?;
        let o: Options = parse_options(&options, ctx)?;
        let endpoint = format!("connection {}", ctx.connection);
        let bad = |option: &str, msg: String| ConnectorError::config(endpoint.clone(), format!("option {option}: {msg}"));
        if o.path.trim().is_empty() {
            return Err(bad("path", "must name a folder".into()));
        }
        let delimiter = match o.delimiter.as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
            _ => return Err(bad("delimiter", format!("{:?} must be a single ASCII character such as \",\" or \";\"", o.delimiter))),
        };
        let stream = |option: &str, name: &str| Stream::from_str(name).map_err(|e| bad(&format!("{option}.{name}"), e));
        let mut files = HashMap::new();
        for (name, file) in o.files {
            let s = stream("files", &name)?;
            if file.trim().is_empty() || file.contains(['/', '\\']) {
                return Err(bad(&format!("files.{name}"), format!("{file:?} must be a file name inside the folder")));
            }
            files.insert(s, file);
        }
        let mut columns = HashMap::new();
        for (name, map) in o.columns {
            let s = stream("columns", &name)?;
            if s == Stream::Orders
                && let Some(unknown) = map.keys().find(|c| !ORDER_COLUMNS.contains(&c.as_str()))
            {
                return Err(bad("columns.orders", format!("{unknown:?} is not an order column; they are {}", ORDER_COLUMNS.join(", "))));
            }
            columns.insert(s, map);
        }
        let settings = Settings {
            folder: match &remote {
                Some(r) => r.mirror_path(""),
                None => ctx.resolve(&o.path),
            },
            delimiter,
            decimal_comma: o.decimal_comma,
            files,
            columns,
            text_columns: o.text_columns.into_iter().collect(),
            fsync: o.fsync,
            escape_formulas: o.escape_formulas,
        };
        Ok(Arc::new(CsvConnector::new(settings, remote)))
    }
}

struct Settings {
    folder: PathBuf,
    delimiter: u8,
    decimal_comma: bool,
    files: HashMap<Stream, String>,
    columns: HashMap<Stream, HashMap<String, String>>,
    text_columns: HashSet<String>,
    fsync: bool,
    /// Prefix written text that starts like a spreadsheet formula with `'`.
    escape_formulas: bool,
}

impl Settings {
    fn file_name(&self, stream: Stream) -> String {
        self.files.get(&stream).cloned().unwrap_or_else(|| format!("{stream}.csv"))
    }
}

/// Opens every file a sync would read (its header row, which it reports) and writes a probe where orders
/// would be written: a check that only looked at metadata said `ok` for files a sync then could not read.
fn check_folder(settings: &Settings) -> CheckReport {
    let folder = &settings.folder;
    let fail = |details: Vec<String>| CheckReport { ok: false, details };
    match std::fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return fail(vec![format!("{} is not a folder", folder.display())]),
        Err(e) => return fail(vec![format!("folder {}: {e}", folder.display())]),
    }
    if let Err(e) = std::fs::read_dir(folder) {
        return fail(vec![format!("folder {} cannot be listed: {e}", folder.display())]);
    }
    let mut ok = true;
    let mut details = vec![format!("folder {} readable", folder.display())];
    let no_renames = HashMap::new();
    for stream in READ_STREAMS {
        let name = settings.file_name(stream);
        let path = folder.join(&name);
        let line = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::symlink_metadata(&path) {
                // A link to nothing reads as "no file", and a sync would then fail on it.
                Ok(_) => Err(format!("{name} is a link to a file that does not exist")),
                Err(_) => Ok(format!("{name} not present (needed only by flows reading {stream})")),
            },
            Err(e) => Err(format!("{name}: {e}")),
            Ok(meta) if meta.is_dir() => Err(format!("{name} is a folder, not a file")),
            Ok(meta) => match rows::read_header(&path, settings.delimiter) {
                Err(e) => Err(format!("{name} cannot be read: {e}")),
                Ok(None) => Err(format!("{name} is empty: expected a header row")),
                Ok(Some(headers)) => {
                    let renames = settings.columns.get(&stream).unwrap_or(&no_renames);
                    let expected: Vec<&str> = renames.keys().map(String::as_str).collect();
                    match rows::delimiter_hint(&name, &headers, settings.delimiter, &expected) {
                        Some(hint) => Err(hint),
                        None => Ok(format!("{name} readable ({} bytes), header: {}", meta.len(), headers.join(" | "))),
                    }
                }
            },
        };
        match line {
            Ok(line) => details.push(format!("{stream}: {line}")),
            Err(problem) => {
                ok = false;
                details.push(format!("{stream}: {problem}"));
            }
        }
    }
    // Orders are appended to a file in the folder: the folder must take a new file, and an existing
    // orders file must open for appending.
    let orders = settings.file_name(Stream::Orders);
    let writable = fileio::check_writable_dir(folder, false).and_then(|_| {
        let path = folder.join(&orders);
        match path.exists() {
            true => std::fs::OpenOptions::new().append(true).open(&path).map(|_| format!("{orders} opens for appending")),
            false => Ok(format!("{orders} will be created (folder writable)")),
        }
        .map_err(|e| format!("{orders} cannot be opened for appending: {e}"))
    });
    match writable {
        Ok(line) => details.push(format!("orders: {line}")),
        Err(problem) => {
            ok = false;
            details.push(format!("orders: {problem}"));
        }
    }
    CheckReport { ok, details }
}

/// A connection to one folder of CSV files.
pub struct CsvConnector {
    settings: Arc<Settings>,
    /// Appends to the orders file: the local one, or the local copy of the remote one.
    orders: Arc<Mutex<OrdersSink>>,
    remote: Option<Remote>,
}

/// A folder on an SFTP server: files are read through local copies and the orders file is written to a
/// local copy published after every batch (see [`crate::sftp`]).
struct Remote {
    folder: Arc<RemoteFolder>,
    orders: Mutex<Mirror>,
}

impl CsvConnector {
    fn new(settings: Settings, remote: Option<Arc<RemoteFolder>>) -> Self {
        let no_renames = HashMap::new();
        let renames = settings.columns.get(&Stream::Orders).unwrap_or(&no_renames);
        let format = OrderFormat::new(settings.delimiter, settings.decimal_comma, renames, settings.escape_formulas);
        let orders_file = settings.file_name(Stream::Orders);
        let path = settings.folder.join(&orders_file);
        let remote = remote.map(|folder| Remote { orders: Mutex::new(Mirror::new(folder.clone(), &orders_file)), folder });
        CsvConnector { orders: Arc::new(Mutex::new(OrdersSink::new(path, format))), settings: Arc::new(settings), remote }
    }

    /// How messages name the folder.
    fn folder_label(&self) -> String {
        match &self.remote {
            Some(r) => r.folder.url(""),
            None => self.settings.folder.display().to_string(),
        }
    }

    fn not_supported(&self, stream: Stream, what: &str) -> ConnectorError {
        ConnectorError::config(
            format!("{NAME} {}", self.folder_label()),
            format!("cannot {what} stream {stream}: CSV reads products, prices, stock, customers, shipments and writes orders"),
        )
    }
}

#[async_trait]
impl Connector for CsvConnector {
    fn describe(&self) -> Description {
        // An archiving SFTP folder delivers changes (a missing file is "nothing new"); a folder holds exports.
        let read_mode = self.remote.as_ref().map_or(ReadMode::Snapshot, |r| r.folder.read_mode());
        let mut streams: Vec<StreamCapability> = READ_STREAMS
            .into_iter()
            .map(|stream| StreamCapability { stream, read: Some(read_mode), write: None, find_by_key: false, retire: vec![] })
            .collect();
        streams.push(StreamCapability {
            stream: Stream::Orders,
            read: None,
            write: Some(WriteMode::CreateOnce),
            find_by_key: true,
            retire: vec![],
        });
        Description {
            name: NAME,
            summary: SUMMARY,
            config_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "description": "Folder of CSV files; relative to the config file, or sftp://user@host:port/dir"},
                    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
                    "decimal_comma": {"type": "boolean", "default": false, "description": "Numbers use a decimal comma (1.234,50)"},
                    "files": {"type": "object", "additionalProperties": {"type": "string"}, "description": "stream → file name (default <stream>.csv)"},
                    "columns": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
                                "description": "stream → {header → field path}; for orders: {column → header}"},
                    "text_columns": {"type": "array", "items": {"type": "string"}, "description": "Headers never converted from decimal comma"},
                    "fsync": {"type": "boolean", "default": true},
                    "escape_formulas": {"type": "boolean", "default": true,
                                        "description": "Prefix written text starting with = + - @ tab or CR with ' (spreadsheet formula injection)"},
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
            streams,
            batch_size: 1000,
            webhooks: false,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        if let Some(remote) = &self.remote {
            let reads: Vec<String> = READ_STREAMS.into_iter().map(|s| self.settings.file_name(s)).collect();
            return Ok(remote.folder.check(&reads, true).await);
        }
        let settings = self.settings.clone();
        run_blocking(&self.settings.folder, move || Ok(check_folder(&settings))).await
    }

    fn location(&self, stream: Stream) -> Option<String> {
        if let Some(remote) = &self.remote {
            return Some(remote.folder.url(&self.settings.file_name(stream)));
        }
        Some(self.settings.folder.join(self.settings.file_name(stream)).display().to_string())
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let stream = request.stream();
        if !READ_STREAMS.contains(&stream) {
            let err = self.not_supported(stream, "read");
            return Box::pin(futures::stream::once(async move { Err(err) }));
        }
        let settings = self.settings.clone();
        let label = settings.file_name(stream);
        let path = settings.folder.join(&label);
        let only: Option<HashSet<String>> = request.keys.map(|k| k.into_iter().collect());
        let read_local = move |path: &std::path::Path, em: &mut fileio::Emitter| {
            let no_renames = HashMap::new();
            let table = rows::TableRead {
                path,
                label: &label,
                stream,
                delimiter: settings.delimiter,
                decimal_comma: settings.decimal_comma,
                renames: settings.columns.get(&stream).unwrap_or(&no_renames),
                text_columns: &settings.text_columns,
                only: only.as_ref(),
            };
            rows::read_table(table, em)
        };
        match &self.remote {
            Some(remote) => crate::remote::read(remote.folder.clone(), self.settings.file_name(stream), request.checkpoint, read_local),
            None => fileio::blocking_stream(path.display().to_string(), move |em| read_local(&path, em)),
        }
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        if stream != Stream::Orders {
            return Err(self.not_supported(stream, "write"));
        }
        let mut sink = self.orders.clone().lock_owned().await;
        let path = sink.path.clone();
        let Some(remote) = &self.remote else {
            let fsync = self.settings.fsync;
            return run_blocking(&path, move || sink.write(batch, fsync)).await;
        };
        let mut mirror = remote.orders.lock().await;
        // The local copy needs no fsync: the upload is fsynced on the server before it is renamed into place.
        crate::remote::write_through(&mut mirror, |replaced| {
            run_blocking(&path, move || {
                if replaced {
                    sink.reset();
                }
                sink.write(batch, false)
            })
        })
        .await
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        if stream != Stream::Orders {
            return Err(self.not_supported(stream, "look up"));
        }
        let mut sink = self.orders.clone().lock_owned().await;
        let keys = keys.to_vec();
        let path = sink.path.clone();
        let Some(remote) = &self.remote else {
            return run_blocking(&path, move || sink.find(keys)).await;
        };
        let mut mirror = remote.orders.lock().await;
        crate::remote::write_through(&mut mirror, |replaced| {
            run_blocking(&path, move || {
                if replaced {
                    sink.reset();
                }
                sink.find(keys)
            })
        })
        .await
    }
}
