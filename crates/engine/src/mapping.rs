//! Per-flow mapping: turns a source record (a CSV row, an API object) into a canonical-shaped JSON value
//! for the flow's target stream, configured in the flow's TOML without recompiling Ferry.
//!
//! ```toml
//! [flows.erp_products.mapping]
//! filter = '.Active != "0"'
//! drop = ["InternalNote"]
//! unmapped = "custom"
//!
//! [flows.erp_products.mapping.rename]
//! ItemCode = "sku"
//! Description = "name"
//! SellPrice = "price.amount"          # quote dotted keys: `price.amount = …` unquoted is a nested TOML table
//!
//! [flows.erp_products.mapping.compute]
//! categories = '.Category | split("|") | map(split(">") | map(trim))'
//!
//! [flows.erp_products.mapping.custom]
//! warranty_years = '.Warranty | tonumber? // null'
//!
//! [flows.erp_products.mapping.defaults]
//! "price.tax_inclusive" = true
//!
//! [flows.erp_products.mapping.set]
//! "price.currency" = "AUD"
//! ```
//!
//! Steps, in this order:
//! 1. `filter`, `compute` and `custom` are evaluated on the ORIGINAL source record (so they can read fields
//!    that `drop`/`rename` remove).
//! 2. Starting from the source record: `drop` removes top-level fields; `rename` moves top-level source
//!    fields (literal names, so CSV headers containing dots work) to target paths; computed values are
//!    written; custom values go to `custom.<name>`; `defaults` fill paths that are absent, null or "";
//!    `set` writes constants; finally top-level fields unknown to the target stream are kept, dropped, or
//!    moved into `custom` (`unmapped`).
//!
//! Paths are dotted with optional indices: `price.amount`, `media[0].url`, `custom.warranty`; intermediate
//! objects and arrays are created as needed. Writing through a value that is neither object nor array
//! (e.g. `price.amount` when `price` is the string "19.90") is a path conflict error.
//!
//! jq expressions (jaq, a jq clone) must yield exactly one value. `null` leaves the field unwritten; no
//! value at all (`empty`, a failed `select`) and several values are errors naming the field: collect
//! several values with `[ … ]`, and write `(…) // null` for "nothing means absent". `filter` keeps the
//! record when its value is neither `false` nor `null`; a filter yielding no value skips the record.
//!
//! Numbers: Ferry's JSON keeps numbers as their exact text, and jaq does too as long as no arithmetic
//! touches them: an integer literal becomes an integer (machine-size or big, exact), any other number
//! (`19.90`, `1e3`) is kept as its original text and written back verbatim. Arithmetic (`+ - * / %`),
//! comparisons and math functions convert such decimals to f64, so sums can drift
//! (`0.1 + 0.2` gives 0.30000000000000004). Integer `+ - * %` stay exact. Keep money and quantities as
//! strings in jq (CSV fields already are) and let the canonical model parse them as decimals; `tonumber`
//! on "19.90" keeps the text too. NaN and infinities cannot be written to JSON and are errors.
//!
//! Cost (release build, one core, a 10-field CSV row): an identity mapping is skipped (`is_identity`);
//! rename/drop/defaults/set cost about 1.5 µs a record; the first jq expression adds one conversion of
//! the record to jaq values (about 2.5 µs), and each expression its own run time (a field access well
//! under 1 µs, a split/map/trim category expression about 15 µs). jaq spends about half its time in
//! malloc/free. A `Mapping` is `Send + Sync` and cheap to clone, so records can be mapped on every core.
//!
//! The jq standard library is available except `env`/`$ENV` (so a mapping cannot copy a credential from
//! the environment into synced data); `halt` is reported as an error instead of ending the process.

use ferry_model::{FieldError, Stream};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data::JustLut};
use jaq_json::{Num, Val};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// The `[flows.<name>.mapping]` table of a flow.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// source field → target path ("ItemCode" = "sku", "SellPrice" = "price.amount").
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// target path → jq expression evaluated on the ORIGINAL source record.
    #[serde(default)]
    pub compute: BTreeMap<String, String>,
    /// custom field name → jq expression on the original source record; result goes to custom.<name>.
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    /// target path → value, used when the path is absent, null or "".
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
    /// target path → constant value, always set.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// source fields to remove.
    #[serde(default)]
    pub drop: Vec<String>,
    /// jq expression on the original record; records for which it is false/null are skipped.
    #[serde(default)]
    pub filter: Option<String>,
    /// what to do with top-level fields that are not fields of the target stream: keep (then validation
    /// rejects them, naming them), drop, or move into custom.<field>.
    #[serde(default)]
    pub unmapped: Unmapped,
}

/// Treatment of top-level fields the target stream does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Leave them; record validation then rejects the record and names them.
    #[default]
    Keep,
    /// Remove them.
    Drop,
    /// Move each into `custom.<field>` (an explicitly mapped `custom.<field>` wins).
    Custom,
}

/// A configuration problem found while compiling a mapping, e.g.
/// `compute.categories: jq syntax error at line 1, column 9: expected term, found ")"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mapping option {option}: {message}")]
pub struct MappingError {
    /// The option and key at fault: `compute.categories`, `rename.ItemCode`, `filter`.
    pub option: String,
    pub message: String,
}

impl MappingError {
    fn new(option: impl Into<String>, message: impl Into<String>) -> Self {
        MappingError { option: option.into(), message: message.into() }
    }
}

/// A compiled mapping: cheap to clone and share between tasks (everything lives behind one `Arc`).
#[derive(Clone)]
pub struct Mapping {
    inner: Arc<Inner>,
}

struct Inner {
    target: Stream,
    identity: bool,
    /// Some expression needs the source as a jq value.
    uses_jq: bool,
    filter: Option<Jq>,
    drop: Vec<String>,
    rename: Vec<(String, Path)>,
    compute: Vec<(Path, Jq)>,
    custom: Vec<(Path, Jq)>,
    defaults: Vec<(Path, Value)>,
    set: Vec<(Path, Value)>,
    unmapped: Unmapped,
    /// Top-level field names of the target stream's schema (a B-tree: a few short memcmps per lookup
    /// beat SipHash for field names).
    known: BTreeSet<String>,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Mapping")
            .field("target", &i.target)
            .field("identity", &i.identity)
            .field("filter", &i.filter.as_ref().map(|j| &j.option))
            .field("drop", &i.drop)
            .field("rename", &i.rename.iter().map(|(s, p)| (s, &p.text)).collect::<Vec<_>>())
            .field("compute", &i.compute.iter().map(|(p, _)| &p.text).collect::<Vec<_>>())
            .field("custom", &i.custom.iter().map(|(p, _)| &p.text).collect::<Vec<_>>())
            .field("defaults", &i.defaults)
            .field("set", &i.set)
            .field("unmapped", &i.unmapped)
            .finish()
    }
}

impl Mapping {
    /// Compiles all jq expressions once; errors name the option and path ("compute.categories: jq syntax error at …").
    pub fn compile(config: &MappingConfig, target: Stream) -> Result<Mapping, MappingError> {
        let known: BTreeSet<String> = match target.json_schema().get("properties") {
            Some(Value::Object(props)) => props.keys().cloned().collect(),
            _ => BTreeSet::new(),
        };
        let field_list = || known.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
        // A target path must start at a field of the stream: a typo would otherwise only show up as a
        // validation failure on every single record.
        let target_path = |option: String, text: &str| -> Result<Path, MappingError> {
            let path = Path::parse(text).map_err(|m| MappingError::new(option.clone(), m))?;
            let top = path.top();
            if !known.is_empty() && !known.contains(top) {
                return Err(MappingError::new(option, format!("{top:?} is not a field of {target} records (fields: {})", field_list())));
            }
            Ok(path)
        };

        let filter = config.filter.as_deref().map(|code| Jq::compile("filter".into(), code)).transpose()?;

        let mut rename = Vec::with_capacity(config.rename.len());
        let mut rename_targets: BTreeMap<&str, &str> = BTreeMap::new();
        for (source, to) in &config.rename {
            let option = format!("rename.{source}");
            let path = target_path(option.clone(), to)?;
            if let Some(other) = rename_targets.insert(to.as_str(), source.as_str()) {
                return Err(MappingError::new(option, format!("{other:?} is renamed to {to:?} as well; a target takes one source")));
            }
            rename.push((source.clone(), path));
        }

        let mut compute = Vec::with_capacity(config.compute.len());
        for (to, code) in &config.compute {
            let option = format!("compute.{to}");
            let path = target_path(option.clone(), to)?;
            compute.push((path, Jq::compile(option, code)?));
        }

        let mut custom = Vec::with_capacity(config.custom.len());
        for (name, code) in &config.custom {
            let option = format!("custom.{name}");
            if name.is_empty() {
                return Err(MappingError::new(option, "custom field name is empty"));
            }
            if !known.is_empty() && !known.contains("custom") {
                return Err(MappingError::new(option, format!("{target} records have no custom field")));
            }
            // The name is a literal key inside `custom`, dots and all.
            let path = Path { text: format!("custom.{name}"), segs: vec![Seg::Key("custom".into()), Seg::Key(name.clone())] };
            custom.push((path, Jq::compile(option, code)?));
        }

        let mut defaults = Vec::with_capacity(config.defaults.len());
        for (to, value) in &config.defaults {
            defaults.push((target_path(format!("defaults.{to}"), to)?, toml_datetimes_as_strings(value.clone())));
        }
        let mut set = Vec::with_capacity(config.set.len());
        for (to, value) in &config.set {
            set.push((target_path(format!("set.{to}"), to)?, toml_datetimes_as_strings(value.clone())));
        }
        for (i, name) in config.drop.iter().enumerate() {
            if name.is_empty() {
                return Err(MappingError::new(format!("drop[{i}]"), "field name is empty"));
            }
        }

        let identity = filter.is_none()
            && config.drop.is_empty()
            && rename.is_empty()
            && compute.is_empty()
            && custom.is_empty()
            && defaults.is_empty()
            && set.is_empty()
            && config.unmapped == Unmapped::Keep;
        let uses_jq = filter.is_some() || !compute.is_empty() || !custom.is_empty();
        Ok(Mapping {
            inner: Arc::new(Inner {
                target,
                identity,
                uses_jq,
                filter,
                drop: config.drop.clone(),
                rename,
                compute,
                custom,
                defaults,
                set,
                unmapped: config.unmapped,
                known,
            }),
        })
    }

    /// The stream this mapping produces records for.
    pub fn target(&self) -> Stream {
        self.inner.target
    }

    /// True when the mapping changes nothing (fast path: the engine skips it).
    pub fn is_identity(&self) -> bool {
        self.inner.identity
    }

    /// Ok(None) when `filter` rejects the record. Errors name the target field and say what went wrong
    /// (a jq runtime error, a jq expression yielding no value, a path conflict).
    pub fn apply(&self, source: Value) -> Result<Option<Value>, FieldError> {
        let m = &*self.inner;
        if m.identity {
            return Ok(Some(source));
        }
        let Value::Object(mut record) = source else {
            return Err(FieldError::new("", format!("mapping needs a JSON object as source record, got {}", kind(&source))));
        };

        // 1. Everything jq sees is the original record.
        let mut computed: Vec<Option<Value>> = Vec::new();
        let mut customs: Vec<Option<Value>> = Vec::new();
        if m.uses_jq {
            let input = object_to_val(&record);
            if let Some(filter) = &m.filter
                && !filter.keeps(&input)?
            {
                return Ok(None);
            }
            computed.reserve_exact(m.compute.len());
            for (path, jq) in &m.compute {
                computed.push(jq.one(&input, &path.text)?);
            }
            customs.reserve_exact(m.custom.len());
            for (path, jq) in &m.custom {
                customs.push(jq.one(&input, &path.text)?);
            }
        }

        // 2. Reshape.
        for name in &m.drop {
            record.remove(name);
        }
        if !m.rename.is_empty() {
            // Take every source first so that swaps (a→b, b→a) and a→a.b work.
            let taken: Vec<Option<Value>> = m.rename.iter().map(|(source, _)| record.remove(source)).collect();
            for ((_, path), value) in m.rename.iter().zip(taken) {
                if let Some(value) = value {
                    path.set(&mut record, value)?;
                }
            }
        }
        for ((path, _), value) in m.compute.iter().zip(computed) {
            if let Some(value) = value {
                path.set(&mut record, value)?;
            }
        }
        for ((path, _), value) in m.custom.iter().zip(customs) {
            if let Some(value) = value {
                path.set(&mut record, value)?;
            }
        }
        for (path, value) in &m.defaults {
            let missing = match path.get(&record) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if missing {
                path.set(&mut record, value.clone())?;
            }
        }
        for (path, value) in &m.set {
            path.set(&mut record, value.clone())?;
        }

        // 3. Fields the target stream does not have.
        match m.unmapped {
            Unmapped::Keep => {}
            Unmapped::Drop => record.retain(|k, _| m.known.contains(k)),
            Unmapped::Custom => {
                let extra: Vec<String> = record.keys().filter(|k| !m.known.contains(*k)).cloned().collect();
                if !extra.is_empty() {
                    let custom = match record.entry("custom").or_insert_with(|| Value::Object(Map::new())) {
                        v @ Value::Null => {
                            *v = Value::Object(Map::new());
                            v
                        }
                        v => v,
                    };
                    if !custom.is_object() {
                        return Err(FieldError::new(
                            "custom",
                            format!("cannot move unmapped fields into custom: custom is {}, not an object", kind(custom)),
                        ));
                    }
                    let mut moved = Vec::with_capacity(extra.len());
                    for key in extra {
                        if let Some(value) = record.remove(&key) {
                            moved.push((key, value));
                        }
                    }
                    let Some(Value::Object(custom)) = record.get_mut("custom") else { unreachable!("checked above") };
                    for (key, value) in moved {
                        // An explicit `custom.<name>` mapping wins over the raw field of the same name.
                        custom.entry(key).or_insert(value);
                    }
                }
            }
        }
        Ok(Some(Value::Object(record)))
    }
}

/// One compiled jq expression and the option it came from.
struct Jq {
    option: String,
    filter: jaq_core::Filter<JustLut<Val>>,
}

impl Jq {
    fn compile(option: String, code: &str) -> Result<Jq, MappingError> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        // `env` would let a mapping copy secrets from Ferry's environment into records sent to a peer.
        let funs = jaq_core::funs().chain(jaq_std::funs().filter(|(name, ..)| *name != "env")).chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| MappingError::new(option.clone(), load_errors(code, errors)))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| MappingError::new(option.clone(), compile_errors(code, errors)))?;
        Ok(Jq { option, filter })
    }

    /// Runs the expression; yields at most the first two results (enough to tell "one" from "several").
    fn run<'a>(&'a self, input: &Val) -> impl Iterator<Item = Result<Val, String>> + 'a {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter.id.run((ctx, input.clone())).take(2).map(|x| {
            x.map_err(|exn| match exn.get_err() {
                Ok(error) => error_text(error),
                Err(_) => "the expression halted (halt/halt_error are not allowed in a mapping)".to_owned(),
            })
        })
    }

    /// Evaluates a `compute`/`custom` expression: exactly one value; `null` → `None`.
    fn one(&self, input: &Val, field: &str) -> Result<Option<Value>, FieldError> {
        let mut out = self.run(input);
        let first = match out.next() {
            None => {
                return Err(FieldError::new(
                    field,
                    format!("jq expression of {} yielded no value (write `(…) // null` to leave the field absent)", self.option),
                ));
            }
            Some(Err(e)) => {
                return Err(FieldError::new(field, format!("jq expression of {} failed: {e}", self.option)));
            }
            Some(Ok(v)) => v,
        };
        match out.next() {
            None => {}
            Some(Err(e)) => {
                return Err(FieldError::new(field, format!("jq expression of {} failed: {e}", self.option)));
            }
            Some(Ok(_)) => {
                return Err(FieldError::new(
                    field,
                    format!(
                        "jq expression of {} yielded more than one value (wrap it in [ … ] to collect them into an array)",
                        self.option
                    ),
                ));
            }
        }
        if matches!(first, Val::Null) {
            return Ok(None);
        }
        val_to_json(first).map(Some).map_err(|e| FieldError::new(field, format!("jq expression of {} yielded {e}", self.option)))
    }

    /// Evaluates the filter: no value → skip; one value → its truthiness; several → error.
    fn keeps(&self, input: &Val) -> Result<bool, FieldError> {
        use jaq_core::ValT;
        let fail = |m: String| FieldError::new("", format!("mapping filter: {m}"));
        let mut out = self.run(input);
        let keep = match out.next() {
            None => return Ok(false),
            Some(Err(e)) => return Err(fail(format!("jq expression failed: {e}"))),
            Some(Ok(v)) => v.as_bool(),
        };
        match out.next() {
            None => Ok(keep),
            Some(Err(e)) => Err(fail(format!("jq expression failed: {e}"))),
            Some(Ok(_)) => Err(fail("jq expression yielded more than one value; it must yield one boolean".into())),
        }
    }
}

/// A jq runtime error as text; `error("msg")` shows as `msg`, not as the JSON string `"msg"`.
fn error_text(error: jaq_core::Error<Val>) -> String {
    match error.into_val() {
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
        other => other.to_string(),
    }
}

/// Line and column (1-based, in characters) of `part`, a slice of `code`.
fn position(code: &str, part: &str) -> String {
    let start = code.as_ptr().addr();
    let at = part.as_ptr().addr();
    if at < start || at > start + code.len() {
        return "in the standard library".to_owned();
    }
    let before = &code[..at - start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("at line {line}, column {column}")
}

fn load_errors(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut out = Vec::new();
    for (_file, error) in errors {
        match error {
            Error::Io(items) => {
                for (path, message) in items {
                    out.push(format!("cannot load module {path:?}: {message}"));
                }
            }
            Error::Lex(items) => {
                for (expected, at) in items {
                    out.push(format!("jq syntax error {}: expected {}", position(code, at), expected.as_str()));
                }
            }
            Error::Parse(items) => {
                for (expected, found) in items {
                    // `found` is a slice of `code` (empty at the end), so it also gives the position.
                    let what = if found.is_empty() { "end of expression".to_owned() } else { format!("{found:?}") };
                    out.push(format!("jq syntax error {}: expected {}, found {what}", position(code, found), expected.as_str()));
                }
            }
        }
    }
    out.join("; ")
}

fn compile_errors(code: &str, errors: jaq_core::compile::Errors<&str, ()>) -> String {
    use jaq_core::compile::Undefined;
    let mut out = Vec::new();
    for (_file, items) in errors {
        for (name, undefined) in items {
            let what = match undefined {
                Undefined::Filter(arity) => format!("undefined filter {name}/{arity}"),
                other => format!("undefined {} {name}", other.as_str()),
            };
            out.push(format!("jq error {}: {what}", position(code, name)));
        }
    }
    out.join("; ")
}

/// A target path: `price.amount`, `media[0].url`.
#[derive(Clone, Debug)]
struct Path {
    text: String,
    segs: Vec<Seg>,
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl Path {
    fn parse(text: &str) -> Result<Path, String> {
        let bad = |why: &str| format!("invalid path {text:?}: {why} (paths look like price.amount or media[0].url)");
        let mut segs = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() {
                return Err(bad(if segs.is_empty() { "must start with a field name" } else { "empty segment" }));
            }
            if key.contains(']') {
                return Err(bad("unmatched ]"));
            }
            segs.push(Seg::Key(key.to_owned()));
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(|| bad("unclosed ["))?;
                let index = rest[1..close].parse::<usize>().map_err(|_| bad("an index must be a number such as [0]"))?;
                segs.push(Seg::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad("an index must be followed by . or ["));
                }
            }
        }
        Ok(Path { text: text.to_owned(), segs })
    }

    fn top(&self) -> &str {
        match &self.segs[0] {
            Seg::Key(k) => k,
            Seg::Index(_) => unreachable!("paths start with a key"),
        }
    }

    fn get<'v>(&self, record: &'v Map<String, Value>) -> Option<&'v Value> {
        let mut segs = self.segs.iter();
        let mut current = match segs.next()? {
            Seg::Key(k) => record.get(k)?,
            Seg::Index(_) => return None,
        };
        for seg in segs {
            current = match (seg, current) {
                (Seg::Key(k), Value::Object(o)) => o.get(k)?,
                (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// Writes `value` at the path, creating objects/arrays on the way (arrays padded with null).
    fn set(&self, record: &mut Map<String, Value>, value: Value) -> Result<(), FieldError> {
        let (first, rest) = self.segs.split_first().expect("paths are never empty");
        let Seg::Key(first) = first else { unreachable!("paths start with a key") };
        if rest.is_empty() {
            record.insert(first.clone(), value);
            return Ok(());
        }
        // `entry` allocates the key; look it up first, as the field usually exists after the first write.
        if !record.contains_key(first) {
            record.insert(first.clone(), Value::Null);
        }
        let mut slot = record.get_mut(first).expect("inserted above");
        for (prefix_len, seg) in (1..).zip(rest) {
            if slot.is_null() {
                *slot = match seg {
                    Seg::Key(_) => Value::Object(Map::new()),
                    Seg::Index(_) => Value::Array(Vec::new()),
                };
            }
            slot = match (seg, slot) {
                (Seg::Key(k), Value::Object(o)) => {
                    if !o.contains_key(k) {
                        o.insert(k.clone(), Value::Null);
                    }
                    o.get_mut(k).expect("inserted above")
                }
                (Seg::Index(i), Value::Array(a)) => {
                    if a.len() <= *i {
                        a.resize(*i + 1, Value::Null);
                    }
                    &mut a[*i]
                }
                (seg, other) => {
                    let want = if matches!(seg, Seg::Key(_)) { "an object" } else { "an array" };
                    return Err(FieldError::new(
                        self.text.as_str(),
                        format!("path conflict: {} is {}, not {want}", self.prefix(prefix_len), kind(other)),
                    ));
                }
            };
        }
        *slot = value;
        Ok(())
    }

    /// The path text of the first `n` segments, for messages.
    fn prefix(&self, n: usize) -> String {
        let mut out = String::new();
        for seg in &self.segs[..n] {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// TOML dates/times reach `serde_json::Value` as `{"$__toml_private_datetime": "…"}`; in a mapping
/// constant they mean the string.
fn toml_datetimes_as_strings(value: Value) -> Value {
    const FIELD: &str = "$__toml_private_datetime";
    match value {
        Value::Object(o) if o.len() == 1 && matches!(o.get(FIELD), Some(Value::String(_))) => {
            o.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null)
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, toml_datetimes_as_strings(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(toml_datetimes_as_strings).collect()),
        other => other,
    }
}

// ---- serde_json::Value ⇄ jaq Val, keeping numbers as their exact text ----

fn object_to_val(o: &Map<String, Value>) -> Val {
    Val::obj(o.iter().map(|(k, v)| (Val::from(k.clone()), json_to_val(v))).collect())
}

fn json_to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        // `from_num` keeps integers exact and anything else as its original text (Num::Dec).
        Value::Number(n) => <Val as jaq_core::ValT>::from_num(n.as_str()).unwrap_or(Val::Null),
        Value::String(s) => Val::from(s.clone()),
        Value::Array(a) => a.iter().map(json_to_val).collect(),
        Value::Object(o) => object_to_val(o),
    }
}

fn val_to_json(v: Val) -> Result<Value, String> {
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(b),
        Val::Num(n) => Value::Number(num_to_json(&n)?),
        Val::TStr(b) | Val::BStr(b) => Value::String(bytes_to_string(&b)),
        Val::Arr(a) => Value::Array(std::rc::Rc::unwrap_or_clone(a).into_iter().map(val_to_json).collect::<Result<_, _>>()?),
        Val::Obj(o) => {
            let mut map = Map::new();
            for (k, v) in std::rc::Rc::unwrap_or_clone(o) {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => bytes_to_string(&b),
                    other => return Err(format!("an object key {other} that is not a string")),
                };
                map.insert(key, val_to_json(v)?);
            }
            Value::Object(map)
        }
    })
}

fn bytes_to_string(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn num_to_json(n: &Num) -> Result<serde_json::Number, String> {
    match n {
        Num::Int(i) => Ok(serde_json::Number::from(*i as i64)),
        Num::Float(f) if !f.is_finite() => Err(format!("{n}, which is not a JSON number")),
        // Int → exact; Dec → the original text; Float → shortest round-trip text (ryu).
        _ => n.to_string().parse::<serde_json::Number>().map_err(|_| format!("{n}, which is not a JSON number")),
    }
}

#[cfg(test)]
mod tests;
