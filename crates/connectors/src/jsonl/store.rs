//! The JSONL file format: one canonical record per line, appended; later lines win; tombstone lines
//! (`{"_ferry":"deleted","key":"…"}`) retire a key. Reading is two passes so memory grows with the number
//! of keys, never with the number of lines: pass one maps each key to its winning line, pass two emits
//! those lines.

use crate::fileio::{LastLine, Lines};
use crate::rawkey::{key_from, record_key};
use ferry_model::Stream;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

/// The marker field of tombstone lines.
pub(crate) const MARKER: &str = "_ferry";
pub(crate) const DELETED: &str = "deleted";
pub(crate) const DEACTIVATED: &str = "deactivated";

const READ_BUFFER: usize = 256 * 1024;

/// What the last word on a key was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Live,
    Deleted,
    /// Retired by deactivation: the last version is still served, marked inactive.
    Deactivated,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    /// Line of the last full version (0: none seen).
    pub(crate) line: u64,
    pub(crate) state: State,
}

/// Streams whose records can say "inactive"; for the others a deactivation is a deletion.
pub(crate) fn can_deactivate(stream: Stream) -> bool {
    matches!(stream, Stream::Products | Stream::Customers)
}

/// Marks a record's JSON inactive the way its model says it (products: discontinued; customers: inactive).
pub(crate) fn deactivate(stream: Stream, value: &mut Value) {
    if let Value::Object(map) = value {
        match stream {
            Stream::Products => {
                map.insert("status".into(), Value::String("discontinued".into()));
            }
            Stream::Customers => {
                map.insert("active".into(), Value::Bool(false));
            }
            _ => {}
        }
    }
}

/// Only the top-level fields a key or tombstone is made of; everything else is skipped unparsed, which
/// keeps the first pass cheap.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "_ferry")]
    marker: Option<String>,
    key: Option<Value>,
    sku: Option<Value>,
    location: Option<Value>,
    price_list: Option<Value>,
    min_quantity: Option<Value>,
    code: Option<Value>,
    number: Option<Value>,
}

impl Probe {
    fn get(&self, field: &str) -> Option<&Value> {
        match field {
            "sku" => self.sku.as_ref(),
            "location" => self.location.as_ref(),
            "price_list" => self.price_list.as_ref(),
            "min_quantity" => self.min_quantity.as_ref(),
            "code" => self.code.as_ref(),
            "number" => self.number.as_ref(),
            _ => None,
        }
    }
}

/// A line that could not be used, for `ReadItem::Invalid`.
pub(crate) struct BadLine {
    pub(crate) line: u64,
    pub(crate) key: Option<String>,
    pub(crate) raw: Value,
    pub(crate) message: String,
}

/// What one line of the file says.
enum Line {
    Blank,
    Record(String),
    Tombstone { key: String, deactivate: bool },
    Bad { key: Option<String>, message: String },
}

fn classify(stream: Stream, bytes: &[u8]) -> Line {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    let probe: Probe = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(e) => {
            let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
            let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let message = match (is_json, is_object) {
                (false, _) => format!("is not JSON: {e}"),
                (true, false) => "is JSON but not an object (a record or tombstone)".to_owned(),
                (true, true) => format!("cannot be read as a record: {e}"),
            };
            return Line::Bad { key: None, message };
        }
    };
    match probe.marker.as_deref() {
        None => match key_from(stream, |f| probe.get(f)) {
            Some(key) => Line::Record(key),
            None => Line::Bad { key: None, message: format!("has no key ({})", stream.key_fields().join(", ")) },
        },
        Some(marker @ (DELETED | DEACTIVATED)) => match probe.key {
            Some(Value::String(key)) if !key.is_empty() => Line::Tombstone { key, deactivate: marker == DEACTIVATED },
            _ => Line::Bad { key: None, message: format!("is a {marker} tombstone without a \"key\"") },
        },
        Some(other) => Line::Bad {
            key: probe.key.and_then(|k| k.as_str().map(str::to_owned)),
            message: format!("has an unknown {MARKER} marker {other:?} (expected \"{DELETED}\" or \"{DEACTIVATED}\")"),
        },
    }
}

fn open_lines(path: &Path, last_line: LastLine) -> io::Result<Lines<BufReader<File>>> {
    let file = File::open(path)?;
    Ok(Lines::new(BufReader::with_capacity(READ_BUFFER, file), path.display().to_string(), last_line))
}

/// Pass one: key → its last version and state. With `only`, other keys are not even kept. Unusable lines
/// go to `bad`; it returns `false` to stop early (the reader went away). `last_line`: whether a last line
/// without newline is read (a source file) or is a torn append (the target's own state).
pub(crate) fn scan(
    path: &Path,
    stream: Stream,
    only: Option<&HashSet<String>>,
    last_line: LastLine,
    bad: &mut dyn FnMut(BadLine) -> bool,
) -> io::Result<HashMap<Box<str>, Entry>> {
    let mut entries: HashMap<Box<str>, Entry> = HashMap::new();
    let mut lines = open_lines(path, last_line)?;
    let wanted = |key: &str| only.is_none_or(|o| o.contains(key));
    while let Some((n, bytes)) = lines.next_line()? {
        match classify(stream, bytes) {
            Line::Blank => {}
            Line::Record(key) if wanted(&key) => {
                let entry = Entry { line: n, state: State::Live };
                match entries.get_mut(key.as_str()) {
                    Some(e) => *e = entry,
                    None => {
                        entries.insert(key.into_boxed_str(), entry);
                    }
                }
            }
            Line::Record(_) => {}
            Line::Tombstone { key, deactivate } if wanted(&key) => {
                let state = if deactivate && can_deactivate(stream) { State::Deactivated } else { State::Deleted };
                match entries.get_mut(key.as_str()) {
                    Some(e) => e.state = state,
                    // A tombstone for a key never written: nothing to serve, but remember it is gone.
                    None => {
                        entries.insert(key.into_boxed_str(), Entry { line: 0, state: State::Deleted });
                    }
                }
            }
            Line::Tombstone { .. } => {}
            Line::Bad { key, message } => {
                // A targeted read only reports problems it can attribute to a requested key.
                if only.is_none() || key.as_deref().is_some_and(wanted) {
                    let raw = Value::String(String::from_utf8_lossy(bytes).into_owned());
                    if !bad(BadLine { line: n, key, raw, message }) {
                        break;
                    }
                }
            }
        }
    }
    Ok(entries)
}

/// The keys present in the file's current state (what `find_by_key` can find).
pub(crate) fn live_keys(path: &Path, stream: Stream) -> io::Result<HashSet<Box<str>>> {
    if !path.exists() {
        return Ok(HashSet::new());
    }
    let entries = scan(path, stream, None, LastLine::Torn, &mut |_| true)?;
    Ok(entries.into_iter().filter(|(_, e)| e.line > 0 && e.state != State::Deleted).map(|(k, _)| k).collect())
}

/// The winning lines in file order, with whether each is served deactivated.
pub(crate) fn winners(entries: HashMap<Box<str>, Entry>) -> Vec<(u64, bool)> {
    let mut lines: Vec<(u64, bool)> = entries
        .into_values()
        .filter(|e| e.line > 0 && e.state != State::Deleted)
        .map(|e| (e.line, e.state == State::Deactivated))
        .collect();
    lines.sort_unstable();
    lines
}

/// Pass two: reads the winning lines in order and hands each (line, JSON) to `emit`, deactivated where
/// needed. `emit` returns `false` to stop.
pub(crate) fn emit_winners(
    path: &Path,
    stream: Stream,
    winners: &[(u64, bool)],
    emit: &mut dyn FnMut(u64, Result<Value, BadLine>) -> bool,
) -> io::Result<()> {
    let mut next = winners.iter().peekable();
    // The winners come from `scan`: a last line without newline is only among them if scan read it.
    let mut lines = open_lines(path, LastLine::Record)?;
    while let Some(&&(want, deactivated)) = next.peek() {
        let Some((n, bytes)) = lines.next_line()? else { break };
        if n != want {
            continue;
        }
        next.next();
        let item = match serde_json::from_slice::<Value>(bytes) {
            Ok(mut value) => {
                if deactivated {
                    deactivate(stream, &mut value);
                }
                Ok(value)
            }
            // Only if the file was rewritten between the passes.
            Err(e) => Err(BadLine {
                line: n,
                key: None,
                raw: Value::String(String::from_utf8_lossy(bytes).into_owned()),
                message: format!("is not JSON: {e}"),
            }),
        };
        if !emit(n, item) {
            break;
        }
    }
    Ok(())
}

/// Lines of a file before and after [`compact`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Compacted {
    pub(crate) lines_before: u64,
    pub(crate) lines_after: u64,
}

/// Rewrites the file to its current state: the winning line of every key verbatim (followed by a fresh
/// deactivation tombstone where one applies), unusable lines verbatim (a person should still see them);
/// superseded versions, deleted keys and blank lines go. The new file is written beside the old one,
/// fsynced and renamed over it, so a crash leaves one whole file or the other. Nothing is rewritten
/// when nothing would go, or with `dry_run`.
pub(crate) fn compact(path: &Path, stream: Stream, dry_run: bool) -> io::Result<Compacted> {
    let mut bad_lines = HashSet::new();
    let entries = scan(path, stream, None, LastLine::Torn, &mut |bad| {
        bad_lines.insert(bad.line);
        true
    })?;
    // line → the key to re-tombstone after it (deactivated winners), or None
    let mut keep: BTreeMap<u64, Option<Box<str>>> = bad_lines.into_iter().map(|n| (n, None)).collect();
    for (key, e) in entries {
        if e.line > 0 && e.state != State::Deleted {
            keep.insert(e.line, (e.state == State::Deactivated).then_some(key));
        }
    }
    let lines_after = keep.len() as u64 + keep.values().filter(|k| k.is_some()).count() as u64;
    let mut lines_before = 0;
    let mut lines = open_lines(path, LastLine::Torn)?;
    while lines.next_line()?.is_some() {
        lines_before += 1;
    }
    let counts = Compacted { lines_before, lines_after };
    if dry_run || lines_after >= lines_before {
        return Ok(counts);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("stream.jsonl");
    let temp = path.with_file_name(format!(".{name}.compacting-{}", std::process::id()));
    let written = (|| {
        let mut out = io::BufWriter::with_capacity(READ_BUFFER, File::create(&temp)?);
        let mut lines = open_lines(path, LastLine::Torn)?;
        while let Some((n, bytes)) = lines.next_line()? {
            let Some(tombstone) = keep.get(&n) else { continue };
            out.write_all(bytes)?;
            out.write_all(b"\n")?;
            if let Some(key) = tombstone {
                let quoted = serde_json::to_string(key).map_err(io::Error::from)?;
                writeln!(out, "{{\"{MARKER}\":\"{DEACTIVATED}\",\"key\":{quoted}}}")?;
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // the rename itself is durable once the folder is
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            File::open(folder)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| counts)
}

/// The file's current state: the last version of every key, tombstones applied (deactivated products and
/// customers are served inactive). Lines that are not records are ignored.
/// The file's current state as its writer left it: the last version of every key, tombstones applied
/// (deactivated products and customers are served inactive). Lines that are not records, and a torn last
/// line, are ignored.
pub fn materialize(file: &Path, stream: Stream) -> io::Result<BTreeMap<String, Value>> {
    let entries = scan(file, stream, None, LastLine::Torn, &mut |_| true)?;
    let winners = winners(entries);
    let mut state = BTreeMap::new();
    emit_winners(file, stream, &winners, &mut |_, item| {
        if let Ok(value) = item
            && let Some(key) = record_key(stream, &value)
        {
            state.insert(key, value);
        }
        true
    })?;
    Ok(state)
}
