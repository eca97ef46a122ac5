//! File plumbing shared by the file connectors (csv, jsonl): crash-safe appends, line reading that
//! ignores a torn last line, and running blocking file reads off the async runtime as a bounded stream.

use ferry_engine::{ConnectorError, ErrorKind, ReadItem};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::path::Path;
use tokio::sync::mpsc;

/// Records per message between the reading thread and the stream: amortises channel overhead.
const CHUNK: usize = 256;
/// Chunks in flight: bounds memory to `CHUNK * IN_FLIGHT` records however large the file. A few batches'
/// worth (4,096 records), so that the file is read on while the engine writes and commits a batch.
const IN_FLIGHT: usize = 16;

pub(crate) type Item = Result<ReadItem, ConnectorError>;

/// Maps an IO error on `path` to a connector error that names the file.
pub(crate) fn io_error(path: &Path, action: &str, e: &io::Error) -> ConnectorError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::NotADirectory => ErrorKind::Config,
        io::ErrorKind::StorageFull | io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::InvalidData => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    };
    ConnectorError::new(kind, path.display().to_string(), format!("cannot {action}: {e}"))
}

/// Length of the file up to and including its last `'\n'`: the part made of complete lines.
pub(crate) fn complete_len(file: &mut File) -> io::Result<u64> {
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Cuts a file back to just after its last `'\n'`. A process killed in the middle of an append (kill -9,
/// power loss) can leave a partial last line; appending after it would glue the next record onto it.
/// Returns how many bytes were removed; leaves the file positioned at its end.
pub(crate) fn truncate_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let keep = complete_len(file)?;
    if keep < len {
        file.set_len(keep)?;
    }
    file.seek(SeekFrom::End(0))?;
    Ok(len - keep)
}

/// Opens `path` for appending after repairing a torn tail. Returns the file (positioned at its end) and
/// whether it is empty (new, or held only a torn line), so callers know to write a header.
/// Whether `file` is still the file at `path` (it was not replaced by a rename). Not knowable off Unix:
/// assumed so.
#[cfg(feature = "jsonl")]
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

pub(crate) fn open_for_append(path: &Path) -> io::Result<(File, bool)> {
    let existed = path.exists();
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let removed = truncate_torn_tail(&mut file)?;
    if removed > 0 {
        tracing::warn!(file = %path.display(), bytes = removed, "removed a torn (partial) last line left by an interrupted write");
        file.sync_data()?;
    }
    if !existed {
        sync_parent(path)?;
    }
    let empty = file.metadata()?.len() == 0;
    Ok((file, empty))
}

/// Makes a newly created file's directory entry durable, so an fsync'ed file cannot vanish in a crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// What a last line without `'\n'` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "jsonl"), allow(dead_code))] // used by jsonl only
pub(crate) enum LastLine {
    /// Reading a file as a source: the last line is a record whether or not a newline ends it (exports
    /// and editors often leave it off). Dropping it would lose the record, and in a snapshot read with
    /// `on_missing` retire it.
    Record,
    /// Reading a file Ferry appends to for its own state (what the target holds): a line without `'\n'`
    /// is an append cut short by a crash, which the next append cuts off (`open_for_append`), so it must
    /// not count as written. Skipped with a warning.
    Torn,
}

/// Reads lines with their 1-based line numbers, reusing one buffer; the last line per [`LastLine`].
#[cfg_attr(not(feature = "jsonl"), allow(dead_code))] // used by jsonl only
pub(crate) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    line: u64,
    name: String,
    last_line: LastLine,
}

#[cfg_attr(not(feature = "jsonl"), allow(dead_code))] // used by jsonl only
impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R, name: impl Into<String>, last_line: LastLine) -> Self {
        Lines { reader, buf: Vec::with_capacity(4096), line: 0, name: name.into(), last_line }
    }

    /// The next complete line without its terminator (`\n` or `\r\n`), or `None` at the end.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut end = self.buf.len();
        if self.buf.last() == Some(&b'\n') {
            end -= 1;
        } else if self.last_line == LastLine::Torn {
            tracing::warn!(file = %self.name, line = self.line, bytes = n, "skipping a last line without newline (torn or still being written)");
            return Ok(None);
        }
        if end > 0 && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        Ok(Some((self.line, &self.buf[..end])))
    }
}

/// Collects read items on a blocking thread and hands them to the async side in chunks.
pub(crate) struct Emitter {
    tx: mpsc::Sender<Vec<Item>>,
    buf: Vec<Item>,
}

impl Emitter {
    /// Queues an item; `false` means the reader of the stream went away and the caller should stop.
    pub(crate) fn emit(&mut self, item: Item) -> bool {
        self.buf.push(item);
        if self.buf.len() >= CHUNK { self.flush() } else { true }
    }

    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).is_ok()
    }
}

/// Runs a blocking reader on tokio's blocking pool and exposes what it emits as a stream. The reader
/// starts on first poll; back-pressure keeps at most a few chunks in memory. An error returned by the
/// reader ends the stream as its last item; a panic is reported too, never mistaken for a short file
/// (for a snapshot, missing records would read as deletions).
pub(crate) fn blocking_stream<F>(endpoint: String, read: F) -> BoxStream<'static, Item>
where
    F: FnOnce(&mut Emitter) -> Result<(), ConnectorError> + Send + 'static,
{
    let start = futures::stream::once(async move {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let task = tokio::task::spawn_blocking(move || {
            let mut emitter = Emitter { tx, buf: Vec::with_capacity(CHUNK) };
            if let Err(e) = read(&mut emitter) {
                emitter.buf.push(Err(e));
            }
            emitter.flush();
        });
        futures::stream::unfold((rx, Some(task)), move |(mut rx, task)| {
            let endpoint = endpoint.clone();
            async move {
                if let Some(chunk) = rx.recv().await {
                    return Some((chunk, (rx, task)));
                }
                match task?.await {
                    Ok(()) => None,
                    Err(e) => {
                        let err = ConnectorError::permanent(endpoint, format!("the file reader stopped unexpectedly: {e}"));
                        Some((vec![Err(err)], (rx, None)))
                    }
                }
            }
        })
    });
    Box::pin(start.flatten().flat_map(futures::stream::iter))
}

/// Runs blocking file work on tokio's blocking pool, naming the file if the task itself fails.
pub(crate) async fn run_blocking<T, F>(endpoint: &Path, work: F) -> Result<T, ConnectorError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ConnectorError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(ConnectorError::permanent(endpoint.display().to_string(), format!("file task failed: {e}"))),
    }
}

/// Checks that `dir` exists and is writable (by creating and removing a probe file), or, when it does not
/// exist and `create` is set, that its nearest existing ancestor is.
pub(crate) fn check_writable_dir(dir: &Path, create: bool) -> Result<String, String> {
    if dir.is_dir() {
        probe_write(dir)?;
        return Ok(format!("folder {} exists and is writable", dir.display()));
    }
    if dir.exists() {
        return Err(format!("{} exists but is not a folder", dir.display()));
    }
    if !create {
        return Err(format!("folder {} does not exist (and create = false)", dir.display()));
    }
    let mut ancestor = dir.parent();
    while let Some(a) = ancestor {
        let a = if a.as_os_str().is_empty() { Path::new(".") } else { a };
        if a.is_dir() {
            probe_write(a)?;
            return Ok(format!("folder {} will be created (in writable {})", dir.display(), a.display()));
        }
        ancestor = a.parent();
    }
    Err(format!("no existing parent folder for {}", dir.display()))
}

fn probe_write(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".ferry-check-{}", std::process::id()));
    File::create(&probe).map_err(|e| format!("folder {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_torn_last_line_is_cut_back_to_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let (mut file, empty) = open_for_append(&path).unwrap();
        assert!(!empty);
        file.write_all(b"{\"a\":3}\n").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }

    #[test]
    fn a_file_holding_only_a_torn_line_becomes_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        // longer than one backwards read chunk, so the search crosses chunk boundaries
        std::fs::write(&path, vec![b'x'; 200_000]).unwrap();
        let (_, empty) = open_for_append(&path).unwrap();
        assert!(empty);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_final_line_without_newline_is_a_line_of_an_input_and_torn_in_an_append_log() {
        let data: &[u8] = b"one\r\ntwo\nthree\r";
        let mut lines = Lines::new(data, "mem", LastLine::Record);
        assert_eq!(lines.next_line().unwrap(), Some((1, &b"one"[..])));
        assert_eq!(lines.next_line().unwrap(), Some((2, &b"two"[..])));
        assert_eq!(lines.next_line().unwrap(), Some((3, &b"three"[..])));
        assert_eq!(lines.next_line().unwrap(), None);
        let mut lines = Lines::new(data, "mem", LastLine::Torn);
        assert_eq!(lines.next_line().unwrap(), Some((1, &b"one"[..])));
        assert_eq!(lines.next_line().unwrap(), Some((2, &b"two"[..])));
        assert_eq!(lines.next_line().unwrap(), None);
    }
}
