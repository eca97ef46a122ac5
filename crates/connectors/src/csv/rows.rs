//! Reading export files: header names are field paths (`price.amount` → `{"price":{"amount":…}}`), empty
//! cells are left out, values stay text except decimal-comma numbers, which become dot decimals.

use crate::fileio::{Emitter, io_error};
use ferry_engine::{ConnectorError, ReadItem, SourceRecord};
use ferry_model::Stream;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

const READ_BUFFER: usize = 256 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How one file's columns become fields.
#[derive(Debug)]
pub(crate) struct Layout {
    /// One per column; `None` for columns without a header name (a trailing delimiter), which are ignored.
    columns: Vec<Option<Column>>,
}

#[derive(Debug)]
struct Column {
    header: String,
    path: Vec<String>,
    /// Never converted (codes, barcodes, sizes written `3,5`).
    text: bool,
}

impl Layout {
    /// Builds the layout from the header row: renames through `renames` (header → field path), then splits
    /// paths at dots. Rejects paths that collide (`price` and `price.amount`), since one cell would have
    /// to be both a value and an object.
    pub(crate) fn new(headers: &[String], renames: &HashMap<String, String>, text_columns: &HashSet<String>) -> Result<Layout, String> {
        let mut columns = Vec::with_capacity(headers.len());
        let mut seen: Vec<(String, &str)> = Vec::new();
        for header in headers {
            let header = header.trim();
            if header.is_empty() {
                columns.push(None);
                continue;
            }
            let path_text = renames.get(header).map(String::as_str).unwrap_or(header).trim();
            let path: Vec<String> = path_text.split('.').map(|s| s.trim().to_owned()).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("column {header:?} maps to {path_text:?}, which has an empty part"));
            }
            let joined = path.join(".");
            for (other, other_header) in &seen {
                let clash = *other == joined
                    || other.strip_prefix(joined.as_str()).is_some_and(|r| r.starts_with('.'))
                    || joined.strip_prefix(other.as_str()).is_some_and(|r| r.starts_with('.'));
                if clash {
                    return Err(format!("columns {other_header:?} ({other}) and {header:?} ({joined}) cannot both be fields"));
                }
            }
            seen.push((joined, header));
            let text = text_columns.contains(header) || text_columns.contains(path_text);
            columns.push(Some(Column { header: header.to_owned(), path, text }));
        }
        if seen.is_empty() {
            return Err("the header row names no columns".into());
        }
        Ok(Layout { columns })
    }

    pub(crate) fn width(&self) -> usize {
        self.columns.len()
    }

    /// Turns one row into a JSON object. Errors name the column.
    pub(crate) fn row(&self, cells: &csv::ByteRecord, decimal_comma: bool) -> Result<Value, (String, String)> {
        let mut object = Map::new();
        for (column, cell) in self.columns.iter().zip(cells.iter()) {
            let Some(column) = column else { continue };
            let text = std::str::from_utf8(cell).map_err(|e| {
                (column.header.clone(), format!("column {:?} is not valid UTF-8 (at byte {})", column.header, e.valid_up_to()))
            })?;
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let value = match decimal_comma && !column.text {
                true => decimal_comma_to_dot(text).unwrap_or_else(|| text.to_owned()),
                false => text.to_owned(),
            };
            insert_path(&mut object, &column.path, Value::String(value));
        }
        Ok(Value::Object(object))
    }

    /// The row as `{header: text}` (invalid UTF-8 replaced), to park with an invalid row.
    pub(crate) fn raw(&self, cells: &csv::ByteRecord) -> Value {
        let mut raw = Map::new();
        for (i, cell) in cells.iter().enumerate() {
            let name = match self.columns.get(i) {
                Some(Some(c)) => c.header.clone(),
                _ => format!("column {}", i + 1),
            };
            raw.insert(name, Value::String(String::from_utf8_lossy(cell).into_owned()));
        }
        Value::Object(raw)
    }
}

fn insert_path(object: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("paths have at least one part");
    let mut current = object;
    for part in parents {
        current = current
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("Layout::new rejects a path that is a prefix of another");
    }
    current.insert(last.clone(), value);
}

/// `1.234,50` → `1234.50`, `-3,5` → `-3.5`: a number written with a decimal comma and optional `.`
/// thousands separators, in dot form. Anything else (text, `1,2,3`, `12,5 kg`, `1.23,4`) → `None`.
/// Digits after the comma are kept as written (trailing zeros carry precision: `12,50`).
pub fn decimal_comma_to_dot(text: &str) -> Option<String> {
    let (sign, body) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (int, frac) = body.split_once(',')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(frac) {
        return None;
    }
    let int = if int.contains('.') {
        let mut groups = int.split('.');
        let first = groups.next().expect("split yields at least one part");
        if !digits(first) || first.len() > 3 {
            return None;
        }
        let mut joined = first.to_owned();
        for group in groups {
            if group.len() != 3 || !digits(group) {
                return None;
            }
            joined.push_str(group);
        }
        joined
    } else if digits(int) {
        int.to_owned()
    } else {
        return None;
    };
    Some(format!("{sign}{int}.{frac}"))
}

/// Delimiters tried when a header looks split by the wrong one.
const CANDIDATE_DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

fn show_delimiter(d: u8) -> String {
    match d {
        b'\t' => "\\t".into(),
        d => (d as char).to_string(),
    }
}

/// When the header row has one column, or none of the `expected` header names (the connection's
/// `columns` renames), the delimiter that would split it (into the most expected names, else the most
/// columns), with a sentence saying so. A file read with the wrong delimiter otherwise parks every row
/// with "missing field" and no hint why.
pub(crate) fn delimiter_hint(label: &str, headers: &[String], delimiter: u8, expected: &[&str]) -> Option<String> {
    let named: Vec<&str> = headers.iter().map(|h| h.trim()).filter(|h| !h.is_empty()).collect();
    let one_column = named.len() == 1;
    let none_expected = !expected.is_empty() && !named.iter().any(|h| expected.contains(h));
    if !one_column && !none_expected {
        return None;
    }
    let line = headers.join(&(delimiter as char).to_string());
    let (best, columns, _) = CANDIDATE_DELIMITERS
        .into_iter()
        .filter(|&d| d != delimiter)
        .filter_map(|d| {
            let cells: Vec<&str> = line.split(d as char).map(str::trim).collect();
            let hits = cells.iter().filter(|c| expected.contains(c)).count();
            let score = if expected.is_empty() { cells.len() } else { hits };
            (cells.len() > 1 && score > 0).then_some((d, cells.len(), score))
        })
        .max_by_key(|&(_, _, score)| score)?;
    let what = if one_column {
        format!("has one column ({line:?})")
    } else {
        format!("names none of the mapped columns ({}): {line:?}", expected.join(", "))
    };
    Some(format!(
        "{label}: the header row read with delimiter {:?} {what}; with {:?} it has {columns} columns: set delimiter = {:?}",
        show_delimiter(delimiter),
        show_delimiter(best),
        show_delimiter(best)
    ))
}

/// The header row of a file (cells as text, invalid UTF-8 replaced); `None` for an empty file.
pub(crate) fn read_header(path: &Path, delimiter: u8) -> std::io::Result<Option<Vec<String>>> {
    let mut reader = open_counted(path, delimiter)?;
    let mut cells = csv::ByteRecord::new();
    match reader.read_byte_record(&mut cells) {
        Ok(false) => Ok(None),
        Ok(true) => Ok(Some(cells.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect())),
        Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
    }
}

/// How to read one stream's file.
pub(crate) struct TableRead<'a> {
    pub(crate) path: &'a Path,
    /// File name for positions (`products.csv line 17`).
    pub(crate) label: &'a str,
    pub(crate) stream: Stream,
    pub(crate) delimiter: u8,
    pub(crate) decimal_comma: bool,
    pub(crate) renames: &'a HashMap<String, String>,
    pub(crate) text_columns: &'a HashSet<String>,
    /// A targeted read: rows whose key (when the row's fields name one) is not listed are skipped.
    pub(crate) only: Option<&'a HashSet<String>>,
}

/// Opens a CSV file for reading with the BOM (if any) already skipped.
pub(crate) fn open_csv(path: &Path, delimiter: u8) -> std::io::Result<csv::Reader<BufReader<File>>> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    if reader.fill_buf()?.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    Ok(csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(reader))
}

/// Counts physical lines the way an editor does (`\n`, `\r\n` and a lone `\r` each end one, in any mix,
/// inside quoted fields too) as the CSV parser pulls bytes through, so a record's position can name the
/// line it starts on. The csv crate's own line count ends lines at `\n` only, and its record positions
/// point at the blank lines and terminators before a record.
pub(crate) struct LineCounter<R> {
    inner: R,
    /// Bytes handed to the parser so far.
    offset: u64,
    /// Line breaks read but not yet passed by a record: (first byte, byte after), in file order.
    breaks: VecDeque<(u64, u64)>,
    /// Breaks passed (the line before the next break is `passed + 1`).
    passed: u64,
    last_was_cr: bool,
}

impl<R: Read> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter { inner, offset: 0, breaks: VecDeque::new(), passed: 0, last_was_cr: false }
    }

    /// The 1-based line of the first content byte at or after `byte`, where the parser says a record
    /// starts: line breaks before it, and those it skipped as blank lines, are counted.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut at = byte;
        while let Some(&(start, end)) = self.breaks.front() {
            if start > at {
                break;
            }
            self.breaks.pop_front();
            self.passed += 1;
            at = at.max(end);
        }
        self.passed + 1
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for i in memchr::memchr2_iter(b'\r', b'\n', &buf[..n]) {
            let at = self.offset + i as u64;
            let cr_before = if i == 0 { self.last_was_cr } else { buf[i - 1] == b'\r' };
            match buf[i] {
                // The `\n` of a `\r\n` joins the break its `\r` began (unless a record passed it already).
                b'\n' if cr_before => {
                    if let Some(last) = self.breaks.back_mut().filter(|b| b.1 == at) {
                        last.1 = at + 1;
                    }
                }
                _ => self.breaks.push_back((at, at + 1)),
            }
        }
        if n > 0 {
            self.last_was_cr = buf[n - 1] == b'\r';
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Opens a CSV file for reading with the BOM skipped and physical lines counted.
fn open_counted(path: &Path, delimiter: u8) -> std::io::Result<csv::Reader<LineCounter<BufReader<File>>>> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    if reader.fill_buf()?.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    Ok(csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(LineCounter::new(reader)))
}

/// Reads the header row and every data row, emitting records and invalid rows.
pub(crate) fn read_table(t: TableRead<'_>, em: &mut Emitter) -> Result<(), ConnectorError> {
    let endpoint = || t.path.display().to_string();
    let csv_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(e) => io_error(t.path, "read", &e),
        other => ConnectorError::permanent(endpoint(), format!("cannot read: {other:?}")),
    };
    // A missing file is an error, not an empty snapshot: an empty snapshot would retire every record.
    let mut reader = open_counted(t.path, t.delimiter).map_err(|e| io_error(t.path, "open", &e))?;
    let mut cells = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut cells).map_err(csv_err)? {
        return Err(ConnectorError::config(endpoint(), "file is empty: expected a header row"));
    }
    let headers = cells
        .iter()
        .enumerate()
        .map(|(i, h)| {
            String::from_utf8(h.to_vec())
                .map_err(|_| ConnectorError::config(endpoint(), format!("header of column {} is not valid UTF-8", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let layout = Layout::new(&headers, t.renames, t.text_columns)
        .map_err(|m| ConnectorError::config(endpoint(), format!("header row: {m}")))?;
    let expected: Vec<&str> = t.renames.keys().map(String::as_str).collect();
    if let Some(hint) = delimiter_hint(t.label, &headers, t.delimiter, &expected)
        && !em.emit(Ok(ReadItem::Warning(hint)))
    {
        return Ok(());
    }

    while reader.read_byte_record(&mut cells).map_err(csv_err)? {
        // Positions name the line an editor shows, whatever the file's line endings.
        let start = cells.position().map(|p| p.byte()).unwrap_or(0);
        let line = reader.get_mut().line_at(start);
        let position = format!("{} line {line}", t.label);
        let item = if cells.len() != layout.width() {
            ReadItem::Invalid {
                position: position.clone(),
                key: None,
                raw: layout.raw(&cells),
                field: String::new(),
                message: format!("{position} has {} fields but the header has {}", cells.len(), layout.width()),
            }
        } else {
            match layout.row(&cells, t.decimal_comma) {
                Ok(data) => {
                    // Rows that do not name a key in canonical fields (raw ERP headers, mapped later by the
                    // flow) cannot be filtered here and are passed on.
                    if let Some(only) = t.only
                        && crate::rawkey::record_key(t.stream, &data).is_some_and(|key| !only.contains(&key))
                    {
                        continue;
                    }
                    ReadItem::Record(SourceRecord { position, data })
                }
                Err((field, message)) => ReadItem::Invalid {
                    position: position.clone(),
                    key: None,
                    raw: layout.raw(&cells),
                    field,
                    message: format!("{position}: {message}"),
                },
            }
        };
        if !em.emit(Ok(item)) {
            break;
        }
    }
    Ok(())
}
