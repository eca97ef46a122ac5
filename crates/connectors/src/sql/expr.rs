//! What a staging-table column is filled with (`columns = { order_ref = "number", … }`): a field path of the
//! canonical record, or one of a few forms for what legacy tables need.
//!
//! - `number`, `customer.email`, `shipping_address.street[0]`: a field (absent → NULL);
//! - `$key`: the record's key; `$index`: the 1-based position of a child row (line number);
//! - `$parent.PATH`: a field of the record a child row belongs to (`$parent.currency` on a line);
//! - `sum(PATH)` with `[]` for "each": `sum(taxes[].amount)` adds the line's tax amounts (decimal, exact);
//! - `{ value = … }` in the config: a constant.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;

/// A column's value as written in the config: an expression, or `{ value = constant }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ColumnSpec {
    Expr(String),
    Const { value: Value },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seg {
    Field(String),
    At(usize),
    Each,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Path(Vec<Seg>),
    Parent(Vec<Seg>),
    Sum(Vec<Seg>),
    Key,
    Index,
    Const(Value),
}

/// Where an expression is evaluated: the row's own object (the record, or one element of a child array),
/// the record it belongs to, its key and (for child rows) its position.
pub(crate) struct Scope<'a> {
    pub(crate) row: &'a Value,
    pub(crate) record: &'a Value,
    pub(crate) key: &'a str,
    pub(crate) index: Option<usize>,
}

fn parse_path(text: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("{text:?}: {part:?} is not a field name"));
        }
        segs.push(Seg::Field(name.to_owned()));
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']').ok_or_else(|| format!("{text:?}: unclosed ["))?;
            let index = &inner[..close];
            segs.push(if index.is_empty() {
                Seg::Each
            } else {
                Seg::At(index.parse().map_err(|_| format!("{text:?}: [{index}] is not an index"))?)
            });
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("{text:?}: unexpected {rest:?}"));
        }
    }
    Ok(segs)
}

impl Expr {
    pub(crate) fn parse(spec: &ColumnSpec) -> Result<Expr, String> {
        let text = match spec {
            ColumnSpec::Const { value } => return Ok(Expr::Const(value.clone())),
            ColumnSpec::Expr(text) => text.trim(),
        };
        let each = |segs: &[Seg]| segs.contains(&Seg::Each);
        match text {
            "$key" => Ok(Expr::Key),
            "$index" => Ok(Expr::Index),
            _ if text.starts_with("$parent.") => {
                let segs = parse_path(&text["$parent.".len()..])?;
                if each(&segs) {
                    return Err(format!("{text:?}: [] (each) is only allowed inside sum(…)"));
                }
                Ok(Expr::Parent(segs))
            }
            _ if text.starts_with("sum(") && text.ends_with(')') => Ok(Expr::Sum(parse_path(&text[4..text.len() - 1])?)),
            _ if text.starts_with('$') => Err(format!("{text:?} is not one of $key, $index, $parent.FIELD")),
            _ => {
                let segs = parse_path(text)?;
                if each(&segs) {
                    return Err(format!("{text:?}: [] (each) is only allowed inside sum(…)"));
                }
                Ok(Expr::Path(segs))
            }
        }
    }

    /// Index in child rows only.
    pub(crate) fn needs_index(&self) -> bool {
        matches!(self, Expr::Index)
    }

    /// The expression as the config writes it (for messages: the field a value comes from).
    pub(crate) fn describe(&self) -> String {
        let path = |segs: &[Seg]| {
            let mut out = String::new();
            for seg in segs {
                match seg {
                    Seg::Field(name) => {
                        if !out.is_empty() {
                            out.push('.');
                        }
                        out.push_str(name);
                    }
                    Seg::At(i) => out.push_str(&format!("[{i}]")),
                    Seg::Each => out.push_str("[]"),
                }
            }
            out
        };
        match self {
            Expr::Path(segs) => path(segs),
            Expr::Parent(segs) => format!("$parent.{}", path(segs)),
            Expr::Sum(segs) => format!("sum({})", path(segs)),
            Expr::Key => "$key".into(),
            Expr::Index => "$index".into(),
            Expr::Const(v) => format!("constant {v}"),
        }
    }

    /// The value, `Null` when absent. `Err` when a sum meets something that is not a number.
    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Result<Value, String> {
        Ok(match self {
            Expr::Const(v) => v.clone(),
            Expr::Key => Value::String(scope.key.to_owned()),
            Expr::Index => scope.index.map(|i| Value::from(i as u64)).unwrap_or(Value::Null),
            Expr::Path(segs) => first(scope.row, segs),
            Expr::Parent(segs) => first(scope.record, segs),
            Expr::Sum(segs) => {
                let mut found = Vec::new();
                collect(scope.row, segs, &mut found);
                let mut sum = Decimal::ZERO;
                for v in found {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Null => continue,
                        other => return Err(format!("adds {other}, which is not a number")),
                    };
                    let d = Decimal::from_str(&text).map_err(|_| format!("adds {text:?}, which is not a number"))?;
                    sum = sum.checked_add(d).ok_or("adds up beyond the range of a decimal")?;
                }
                Value::String(sum.normalize().to_string())
            }
        })
    }
}

fn first(value: &Value, segs: &[Seg]) -> Value {
    let mut current = value;
    for seg in segs {
        let next = match seg {
            Seg::Field(name) => current.get(name),
            Seg::At(i) => current.get(*i),
            Seg::Each => None,
        };
        match next {
            Some(v) => current = v,
            None => return Value::Null,
        }
    }
    current.clone()
}

fn collect<'a>(value: &'a Value, segs: &[Seg], out: &mut Vec<&'a Value>) {
    let Some((seg, rest)) = segs.split_first() else {
        out.push(value);
        return;
    };
    match seg {
        Seg::Field(name) => {
            if let Some(v) = value.get(name) {
                collect(v, rest, out)
            }
        }
        Seg::At(i) => {
            if let Some(v) = value.get(*i) {
                collect(v, rest, out)
            }
        }
        Seg::Each => {
            if let Value::Array(items) = value {
                for v in items {
                    collect(v, rest, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expr(text: &str) -> Expr {
        Expr::parse(&ColumnSpec::Expr(text.into())).unwrap()
    }

    #[test]
    fn paths_keys_parents_and_sums_evaluate_against_the_canonical_record() {
        let record = json!({"number": "WEB-1", "currency": "AUD", "shipping_address": {"street": ["1 Main St", "Unit 2"]},
            "lines": [{"sku": "A", "taxes": [{"amount": "1.10"}, {"amount": "0.05"}]}]});
        let line = &record["lines"][0];
        let scope = Scope { row: line, record: &record, key: "WEB-1", index: Some(1) };
        assert_eq!(expr("sku").eval(&scope).unwrap(), json!("A"));
        assert_eq!(expr("sum(taxes[].amount)").eval(&scope).unwrap(), json!("1.15"));
        assert_eq!(expr("$parent.currency").eval(&scope).unwrap(), json!("AUD"));
        assert_eq!(expr("$index").eval(&scope).unwrap(), json!(1));
        assert_eq!(expr("$key").eval(&scope).unwrap(), json!("WEB-1"));
        let header = Scope { row: &record, record: &record, key: "WEB-1", index: None };
        assert_eq!(expr("shipping_address.street[1]").eval(&header).unwrap(), json!("Unit 2"));
        assert_eq!(expr("customer.email").eval(&header).unwrap(), Value::Null);
        assert_eq!(expr("sum(lines[].discount)").eval(&header).unwrap(), json!("0"));
        let constant = Expr::parse(&ColumnSpec::Const { value: json!("WEB") }).unwrap();
        assert_eq!(constant.eval(&header).unwrap(), json!("WEB"));
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_reason() {
        let err = |t: &str| Expr::parse(&ColumnSpec::Expr(t.into())).unwrap_err();
        assert!(err("lines[].sku").contains("only allowed inside sum"));
        assert!(err("$nope").contains("$key, $index"));
        assert!(err("a..b").contains("not a field name"));
        assert!(err("a[x]").contains("not an index"));
        assert!(err("a; DROP TABLE t").contains("not a field name"));
    }
}
