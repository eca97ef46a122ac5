//! Writing orders for an ERP that imports CSV: one row per order line, order fields repeated on each row.
//! The file is append-only and created-once per order: an order already in the file is never written
//! again, so the ERP can never import it twice.

use crate::fileio::{self, io_error};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Currency, Order, Record};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The columns, in file order. `columns.orders` may rename any of them in the header.
pub const ORDER_COLUMNS: [&str; 28] = [
    "order_number",
    "placed_at",
    "status",
    "customer_code",
    "customer_email",
    "customer_name",
    "company",
    "currency",
    "prices_include_tax",
    "line_no",
    "sku",
    "description",
    "quantity",
    "unit_price",
    "line_discount",
    "line_tax",
    "line_total",
    "shipping",
    "order_discount",
    "order_tax",
    "order_total",
    "coupons",
    "ship_to_name",
    "ship_to_street",
    "ship_to_city",
    "ship_to_postcode",
    "ship_to_country",
    "notes",
];

/// How numbers and names are written.
#[derive(Clone, Debug)]
pub(crate) struct OrderFormat {
    pub(crate) delimiter: u8,
    pub(crate) decimal_comma: bool,
    /// Header per column (renamed or canonical), in [`ORDER_COLUMNS`] order.
    pub(crate) headers: Vec<String>,
    /// Prefix text that a spreadsheet would run as a formula with `'` (option `escape_formulas`).
    pub(crate) escape_formulas: bool,
}

/// First characters that make a spreadsheet (and many ERP importers built on one) read a cell as a
/// formula: `=`, `+`, `-`, `@`, tab and carriage return (OWASP's list for CSV injection).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text` made safe to open in a spreadsheet: a value starting like a formula gets a leading `'`, which
/// spreadsheets show as text and do not evaluate. Only shop-entered text is escaped; numbers and dates
/// Ferry formats itself (a negative discount is `-5.00`) are left as they are.
pub(crate) fn escape_formula(text: String) -> String {
    if text.starts_with(FORMULA_STARTS) { format!("'{text}") } else { text }
}

/// The value an escaped cell was written from (for reading order numbers back from the file).
pub(crate) fn unescape_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

impl OrderFormat {
    pub(crate) fn new(delimiter: u8, decimal_comma: bool, renames: &HashMap<String, String>, escape_formulas: bool) -> Self {
        let headers = ORDER_COLUMNS.iter().map(|c| renames.get(*c).cloned().unwrap_or_else(|| (*c).to_owned())).collect();
        OrderFormat { delimiter, decimal_comma, headers, escape_formulas }
    }

    /// Shop-entered text as one line, escaped against formula injection when configured.
    fn text(&self, s: &str) -> String {
        let line = one_line(s);
        if self.escape_formulas { escape_formula(line) } else { line }
    }

    fn number(&self, text: String) -> String {
        if self.decimal_comma { text.replace('.', ",") } else { text }
    }

    /// A quantity: normalised (`2`, `1.5`).
    fn quantity(&self, d: Decimal) -> String {
        self.number(d.normalize().to_string())
    }

    /// An amount: at least the currency's minor digits (`50.00`), never rounded (unit prices may carry
    /// more digits than the currency).
    fn money(&self, d: Decimal, currency: Currency) -> String {
        let mut d = d.normalize();
        if d.scale() < currency.minor_units() {
            d.rescale(currency.minor_units());
        }
        self.number(d.to_string())
    }

    /// The rows of one order, in [`ORDER_COLUMNS`] order; fails naming the field when a line's tax does
    /// not add up within `Decimal`'s range.
    pub(crate) fn rows(&self, o: &Order) -> Result<Vec<Vec<String>>, RecordFailure> {
        let c = o.currency;
        let opt = |s: &Option<String>| s.as_deref().map(|s| self.text(s)).unwrap_or_default();
        let name = [&o.customer.first_name, &o.customer.last_name]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let company = o.customer.company.clone().or_else(|| o.billing_address.as_ref().and_then(|a| a.company.clone()));
        let status = serde_json::to_value(o.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let ship = o.shipping_address.clone().unwrap_or_default();
        o.lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let line_tax = line.taxes.iter().try_fold(Decimal::ZERO, |sum, t| sum.checked_add(t.amount)).ok_or_else(|| {
                    RecordFailure::permanent(Some(format!("lines[{i}].taxes")), "the line's taxes add up beyond the range of a decimal")
                })?;
                Ok(vec![
                    self.text(&o.number),
                    o.placed_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    status.clone(),
                    opt(&o.customer.code),
                    opt(&o.customer.email),
                    self.text(&name),
                    opt(&company),
                    c.code().to_owned(),
                    o.prices_include_tax.to_string(),
                    (i + 1).to_string(),
                    self.text(&line.sku),
                    opt(&line.name),
                    self.quantity(line.quantity),
                    self.money(line.unit_price, c),
                    self.money(line.discount, c),
                    self.money(line_tax, c),
                    self.money(line.total, c),
                    self.money(o.totals.shipping, c),
                    self.money(o.totals.discount, c),
                    self.money(o.totals.tax, c),
                    self.money(o.totals.total, c),
                    self.text(&o.coupons.join("|")),
                    opt(&ship.name),
                    self.text(&ship.street.join(", ")),
                    opt(&ship.city),
                    opt(&ship.postcode),
                    opt(&ship.country),
                    opt(&o.notes),
                ])
            })
            .collect()
    }

    /// Serialises rows (and the header, when asked) to CSV bytes.
    fn encode(&self, header: bool, rows: &[Vec<String>]) -> std::io::Result<Vec<u8>> {
        let mut w = csv::WriterBuilder::new().delimiter(self.delimiter).from_writer(Vec::new());
        if header {
            w.write_record(&self.headers)?;
        }
        for row in rows {
            w.write_record(row)?;
        }
        w.into_inner().map_err(|e| e.into_error())
    }
}

/// Every row is one physical line: a line break inside a value becomes a space. Legacy importers often
/// cannot read quoted multi-line cells, and it keeps crash repair (cut back to the last newline) exact.
fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r']) { s.replace("\r\n", " ").replace(['\r', '\n'], " ") } else { s.to_owned() }
}

/// The append side of the orders file.
pub(crate) struct OrdersSink {
    pub(crate) path: PathBuf,
    pub(crate) format: OrderFormat,
    file: Option<File>,
    /// Order numbers in the file; built on first need, kept up to date as orders are appended.
    keys: Option<HashSet<Box<str>>>,
}

impl OrdersSink {
    pub(crate) fn new(path: PathBuf, format: OrderFormat) -> Self {
        OrdersSink { path, format, file: None, keys: None }
    }

    fn endpoint(&self) -> String {
        self.path.display().to_string()
    }

    /// Opens for appending (repairing a torn last line), writing the header into a new or empty file and
    /// refusing a file whose header differs from the configured columns.
    fn open(&mut self) -> Result<&mut File, ConnectorError> {
        if self.file.is_none() {
            let folder = self.path.parent().expect("the orders file lives in a folder");
            if !folder.is_dir() {
                return Err(ConnectorError::config(folder.display().to_string(), "folder does not exist"));
            }
            let (mut file, empty) = fileio::open_for_append(&self.path).map_err(|e| io_error(&self.path, "open for appending", &e))?;
            if empty {
                let header = self.format.encode(true, &[]).map_err(|e| io_error(&self.path, "encode header", &e))?;
                file.write_all(&header).map_err(|e| io_error(&self.path, "write header", &e))?;
            } else {
                let found = self.read_header()?;
                if found != self.format.headers {
                    return Err(ConnectorError::config(
                        self.endpoint(),
                        format!(
                            "the file's header ({}) differs from the configured columns ({}); move the file away or fix `columns.orders`",
                            found.join(","),
                            self.format.headers.join(",")
                        ),
                    ));
                }
            }
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn read_header(&self) -> Result<Vec<String>, ConnectorError> {
        let mut reader = super::rows::open_csv(&self.path, self.format.delimiter).map_err(|e| io_error(&self.path, "open", &e))?;
        let mut header = csv::StringRecord::new();
        reader.read_record(&mut header).map_err(|e| ConnectorError::permanent(self.endpoint(), format!("cannot read header: {e}")))?;
        Ok(header.iter().map(|h| h.trim().to_owned()).collect())
    }

    /// Order numbers already in the file, from the order-number column of complete lines only (a torn
    /// last line could hold a cut-off number that matches a different order).
    fn keys(&mut self) -> Result<&mut HashSet<Box<str>>, ConnectorError> {
        if self.keys.is_none() {
            let keys = if self.path.exists() { self.scan_keys()? } else { HashSet::new() };
            self.keys = Some(keys);
        }
        Ok(self.keys.as_mut().expect("loaded above"))
    }

    fn scan_keys(&self) -> Result<HashSet<Box<str>>, ConnectorError> {
        let err = |action: &str, e: std::io::Error| io_error(&self.path, action, &e);
        let mut file = File::open(&self.path).map_err(|e| err("open", e))?;
        let complete = fileio::complete_len(&mut file).map_err(|e| err("read", e))?;
        let file = File::open(&self.path).map_err(|e| err("open", e))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.format.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(std::io::BufReader::with_capacity(256 * 1024, file.take(complete)));
        let mut record = csv::ByteRecord::new();
        let mut keys = HashSet::new();
        let read = |reader: &mut csv::Reader<_>, record: &mut csv::ByteRecord| {
            reader.read_byte_record(record).map_err(|e| ConnectorError::permanent(self.endpoint(), format!("cannot read: {e}")))
        };
        if !read(&mut reader, &mut record)? {
            return Ok(keys);
        }
        let wanted = &self.format.headers[0];
        let strip_bom = |b: &[u8]| b.strip_prefix(b"\xEF\xBB\xBF").map(<[u8]>::to_vec).unwrap_or_else(|| b.to_vec());
        let column = record
            .iter()
            .position(|h| String::from_utf8_lossy(&strip_bom(h)).trim() == wanted.as_str())
            .ok_or_else(|| ConnectorError::config(self.endpoint(), format!("the file has no {wanted:?} column")))?;
        while read(&mut reader, &mut record)? {
            if let Some(cell) = record.get(column) {
                let key = String::from_utf8_lossy(cell);
                let key = key.trim();
                let key = if self.format.escape_formulas { unescape_formula(key) } else { key };
                if !key.is_empty() {
                    keys.insert(Box::from(key));
                }
            }
        }
        Ok(keys)
    }

    /// Forgets the open file and the key set: the file was replaced (a fresh copy of a remote file).
    pub(crate) fn reset(&mut self) {
        self.file = None;
        self.keys = None;
    }

    pub(crate) fn find(&mut self, wanted: Vec<String>) -> Result<HashMap<String, String>, ConnectorError> {
        let present = self.keys()?;
        Ok(wanted.into_iter().filter(|k| present.contains(k.as_str())).map(|k| (k.clone(), k)).collect())
    }

    /// Appends the orders not yet in the file; one write and one fsync for the whole batch.
    pub(crate) fn write(&mut self, batch: Vec<WriteRecord>, fsync: bool) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let result = self.try_write(batch, fsync);
        if result.is_err() {
            // Reopen and rescan next time: the file holds what it holds, whatever this call got to write.
            self.file = None;
            self.keys = None;
        }
        result
    }

    fn try_write(&mut self, batch: Vec<WriteRecord>, fsync: bool) -> Result<Vec<WriteOutcome>, ConnectorError> {
        self.open()?;
        self.keys()?;
        let keys = self.keys.as_mut().expect("loaded above");
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rows = Vec::new();
        for wr in batch {
            let Record::Order(order) = &wr.record else {
                let msg = format!("is a {} record; the CSV connector writes orders only", wr.record.stream());
                outcomes.push(WriteOutcome::failed(wr.key, RecordFailure::permanent(None, msg)));
                continue;
            };
            let number = order.number.clone();
            // Already written (found in the file, or the engine holds a cross-reference): an import file
            // cannot express an update, and writing the order again would import it twice.
            if wr.previous.is_some() {
                // Changed in the shop after it was exported (cancelled, edited, refunded): never silent.
                let warning = format!(
                    "order {number} changed in the shop after it was written to {} (now {}): an import file cannot carry changes; apply them in the business system",
                    self.path.display(),
                    order.status.as_str()
                );
                outcomes.push(WriteOutcome::warned(wr.key, number, WriteAction::Unchanged, warning));
                continue;
            }
            if wr.target_id.is_some() || keys.contains(number.as_str()) {
                outcomes.push(WriteOutcome::ok(wr.key, number, WriteAction::Unchanged));
                continue;
            }
            match self.format.rows(order) {
                Ok(order_rows) => rows.extend(order_rows),
                Err(failure) => {
                    outcomes.push(WriteOutcome::failed(wr.key, failure));
                    continue;
                }
            }
            keys.insert(number.as_str().into());
            outcomes.push(WriteOutcome::ok(wr.key, number, WriteAction::Created));
        }
        if !rows.is_empty() {
            let bytes = self.format.encode(false, &rows).map_err(|e| io_error(&self.path, "encode orders", &e))?;
            let path = self.path.clone();
            let file = self.file.as_mut().expect("opened above");
            file.write_all(&bytes).map_err(|e| io_error(&path, "write orders", &e))?;
            if fsync {
                file.sync_data().map_err(|e| io_error(&path, "fsync", &e))?;
            }
        } else if fsync && let Some(file) = self.file.as_mut() {
            // A new file's header must be durable too.
            file.sync_data().map_err(|e| io_error(&self.path, "fsync", &e))?;
        }
        Ok(outcomes)
    }
}
