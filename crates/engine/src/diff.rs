//! Field-level differences between two JSON values, for `--dry-run` and run reports.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// `price.amount`, `addresses[1].city`.
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every leaf that differs between `old` and `new`; objects are compared key by key and arrays index by
/// index, so a changed price shows as `price.amount: "19.9" → "21"` rather than a whole new record.
pub fn diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    walk(String::new(), Some(old), Some(new), &mut changes);
    changes
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn walk(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (k, va) in a {
                walk(join(&path, k), Some(va), b.get(k), out);
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    walk(join(&path, k), None, Some(vb), out);
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange { path, old: a.cloned(), new: b.cloned() }),
    }
}

/// Applies changes to `old`; `apply(old, diff(old, new)) == new`. Used to prove the diff complete.
pub fn apply(old: &Value, changes: &[FieldChange]) -> Value {
    let mut value = old.clone();
    for change in changes {
        set_path(&mut value, &change.path, change.new.clone());
    }
    value
}

fn set_path(root: &mut Value, path: &str, new: Option<Value>) {
    let segments = parse_path(path);
    let Some((last, parents)) = segments.split_last() else {
        *root = new.unwrap_or(Value::Null);
        return;
    };
    let mut cur = root;
    for seg in parents {
        cur = match seg {
            Seg::Key(k) => cur.as_object_mut().expect("diff paths follow objects").entry(k.clone()).or_insert(Value::Null),
            Seg::Index(i) => &mut cur.as_array_mut().expect("diff paths follow arrays")[*i],
        };
    }
    match (last, new) {
        (Seg::Key(k), Some(v)) => {
            cur.as_object_mut().expect("object").insert(k.clone(), v);
        }
        (Seg::Key(k), None) => {
            cur.as_object_mut().expect("object").remove(k);
        }
        (Seg::Index(i), Some(v)) => {
            let arr = cur.as_array_mut().expect("array");
            if *i < arr.len() { arr[*i] = v } else { arr.push(v) }
        }
        (Seg::Index(i), None) => {
            // Removals come in ascending index order; truncating at the first keeps later ones valid.
            cur.as_array_mut().expect("array").truncate(*i);
        }
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_once('[').map(|(n, r)| (n, Some(r))).unwrap_or((part, None));
        if !name.is_empty() {
            segs.push(Seg::Key(name.to_owned()));
        }
        if let Some(rest) = rest {
            for idx in rest.split('[') {
                segs.push(Seg::Index(idx.trim_end_matches(']').parse().expect("numeric index")));
            }
        }
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn names_the_changed_leaf() {
        let old = json!({"sku":"A","price":{"amount":"19.9","currency":"AUD"},"categories":[["Garden","Tools"]]});
        let new = json!({"sku":"A","price":{"amount":"21","currency":"AUD"},"categories":[["Garden","Tools"]],"brand":"Acme"});
        let d = diff(&old, &new);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "price.amount");
        assert_eq!(d[0].old, Some(json!("19.9")));
        assert_eq!(d[1].path, "brand");
        assert_eq!(d[1].old, None);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), "[a-z0-9.]{0,6}".prop_map(Value::from)]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[a-e]", json_value(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn no_diff_with_itself(a in object()) {
            prop_assert!(diff(&a, &a).is_empty());
        }

        #[test]
        fn empty_diff_iff_equal(a in object(), b in object()) {
            prop_assert_eq!(diff(&a, &b).is_empty(), a == b);
        }

        #[test]
        fn applying_the_diff_gives_the_new_value(a in object(), b in object()) {
            prop_assert_eq!(apply(&a, &diff(&a, &b)), b);
        }
    }
}
