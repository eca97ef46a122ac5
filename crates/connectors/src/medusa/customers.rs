//! Customers: found by e-mail (Medusa cannot search metadata; the ERP's customer code is kept in
//! `metadata.ferry_code` and checked, so an e-mail that belongs to another code fails the record instead
//! of merging two customers); every address (matched by `metadata.ferry_key`, else by street + postcode)
//! with the default shipping / billing flags; the customer group (found by name, created when missing)
//! as a membership. Fields that already match are not sent.

use super::Medusa;
use super::rest::CallError;
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Address, Customer, Record};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const CUSTOMER_FIELDS: &str = "id,email,first_name,last_name,company_name,phone,metadata,*addresses,*groups";

pub(crate) async fn write(m: &Medusa, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let mut items = Vec::new();
    for rec in batch {
        let Record::Customer(c) = rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a customer record")));
            continue;
        };
        if c.email.is_none() {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(Some("email".into()), "Medusa customers need an e-mail address")));
            continue;
        }
        if let Some((i, _)) = c.addresses.iter().enumerate().find(|(_, a)| a.country.as_deref().is_none_or(|c| c.len() != 2)) {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(Some(format!("addresses[{i}].country")), "Medusa addresses need a two-letter country code")));
            continue;
        }
        items.push((rec.key, c));
    }
    if items.is_empty() {
        return Ok(outcomes);
    }
    let emails: Vec<String> = items.iter().filter_map(|(_, c)| c.email.as_ref().map(|e| e.to_lowercase())).collect();
    let existing = find_by_email(m, &emails).await?;
    for (key, c) in items {
        let found = existing.get(&c.email.as_deref().unwrap_or_default().to_lowercase());
        outcomes.push(match write_one(m, &c, found).await {
            Ok((id, action)) => WriteOutcome::ok(key, id, action),
            Err(CallError::Connector(e)) => return Err(e),
            Err(e) => WriteOutcome::failed(key, e.for_record(None)),
        });
    }
    Ok(outcomes)
}

/// Why a customer could not be written: Medusa's refusal, or a record-level conflict.
fn conflict(field: &str, message: String) -> CallError {
    CallError::Rejected { status: 409, kind: format!("conflict on {field}"), message }
}

async fn write_one(m: &Medusa, c: &Customer, found: Option<&Value>) -> Result<(String, WriteAction), CallError> {
    let want = customer_input(c);
    let (id, mut action, current) = match found {
        Some(e) => {
            if let Some(other) = e["metadata"]["ferry_code"].as_str().filter(|o| *o != c.code) {
                return Err(conflict("email", format!("{} already belongs to Medusa customer {} with code {other}", c.email.as_deref().unwrap_or(""), e["id"].as_str().unwrap_or("?"))));
            }
            let id = e["id"].as_str().unwrap_or_default().to_owned();
            let mut diff = Map::new();
            for k in ["first_name", "last_name", "company_name", "phone"] {
                if e[k].as_str().unwrap_or_default() != want[k].as_str().unwrap_or_default() {
                    diff.insert(k.into(), want[k].clone());
                }
            }
            let have_meta = e["metadata"].as_object().cloned().unwrap_or_default();
            if want["metadata"].as_object().into_iter().flatten().any(|(k, v)| have_meta.get(k) != Some(v)) {
                let mut all = have_meta;
                all.extend(want["metadata"].as_object().cloned().unwrap_or_default());
                diff.insert("metadata".into(), Value::Object(all));
            }
            let action = if diff.is_empty() {
                WriteAction::Unchanged
            } else {
                m.rest.post(&format!("/admin/customers/{id}"), &Value::Object(diff)).await?;
                WriteAction::Updated
            };
            (id, action, e.clone())
        }
        None => {
            let answer = m.rest.post(&format!("/admin/customers?fields={CUSTOMER_FIELDS}"), &want).await?;
            let created = answer["customer"].clone();
            (created["id"].as_str().unwrap_or_default().to_owned(), WriteAction::Created, created)
        }
    };
    let mut touched = false;
    for a in &c.addresses {
        let input = address_input(c, a);
        let have = current["addresses"].as_array().into_iter().flatten().find(|h| {
            match &a.key {
                Some(k) if h["metadata"]["ferry_key"].as_str() == Some(k.as_str()) => true,
                _ => h["address_1"] == input["address_1"] && h["postal_code"] == input["postal_code"],
            }
        });
        match have {
            Some(h) if address_same(h, &input) => {}
            Some(h) => {
                let aid = h["id"].as_str().unwrap_or_default();
                m.rest.post(&format!("/admin/customers/{id}/addresses/{aid}"), &input).await?;
                touched = true;
            }
            None => {
                m.rest.post(&format!("/admin/customers/{id}/addresses"), &input).await?;
                touched = true;
            }
        }
    }
    if let Some(group) = &c.group {
        let in_group = current["groups"].as_array().into_iter().flatten().any(|g| g["name"].as_str() == Some(group.as_str()));
        if !in_group {
            let gid = customer_group(m, group).await?;
            m.rest.post(&format!("/admin/customer-groups/{gid}/customers"), &json!({"add": [id]})).await?;
            touched = true;
        }
    }
    if touched && action == WriteAction::Unchanged {
        action = WriteAction::Updated;
    }
    Ok((id, action))
}

async fn find_by_email(m: &Medusa, emails: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in emails.chunks(100) {
        let mut query: Vec<(&str, String)> = chunk.iter().map(|e| ("email[]", e.clone())).collect();
        query.push(("fields", CUSTOMER_FIELDS.into()));
        query.push(("limit", chunk.len().to_string()));
        let data = m.rest.get("/admin/customers", &query).await?;
        for c in data["customers"].as_array().into_iter().flatten() {
            if let Some(e) = c["email"].as_str() {
                out.insert(e.to_lowercase(), c.clone());
            }
        }
    }
    Ok(out)
}

fn customer_input(c: &Customer) -> Value {
    let mut metadata = Map::new();
    metadata.insert("ferry_code".into(), json!(c.code));
    if let Some(t) = &c.tax_id {
        metadata.insert("tax_id".into(), json!(t));
    }
    json!({
        "email": c.email.as_deref().map(str::to_lowercase),
        "first_name": c.first_name.clone().unwrap_or_default(),
        "last_name": c.last_name.clone().unwrap_or_default(),
        "company_name": c.company.clone().unwrap_or_default(),
        "phone": c.phone.clone().unwrap_or_default(),
        "metadata": Value::Object(metadata),
    })
}

/// A canonical address as Medusa's: the name split at its first space, two street lines, lower-case
/// country code (Medusa's form).
fn address_input(c: &Customer, a: &Address) -> Value {
    let name = a.name.clone().unwrap_or_else(|| [c.first_name.clone(), c.last_name.clone()].into_iter().flatten().collect::<Vec<_>>().join(" "));
    let (first, last) = name.split_once(' ').map(|(f, l)| (f.to_owned(), l.to_owned())).unwrap_or((name.clone(), String::new()));
    let mut input = json!({
        "first_name": first,
        "last_name": last,
        "company": a.company.clone().unwrap_or_default(),
        "address_1": a.street.first().cloned().unwrap_or_default(),
        "address_2": a.street.get(1..).map(|s| s.join(", ")).unwrap_or_default(),
        "city": a.city.clone().unwrap_or_default(),
        "province": a.region.clone().unwrap_or_default(),
        "postal_code": a.postcode.clone().unwrap_or_default(),
        "country_code": a.country.as_deref().map(str::to_lowercase),
        "phone": a.phone.clone().unwrap_or_default(),
        "is_default_shipping": a.default_delivery,
        "is_default_billing": a.default_billing,
    });
    if let Some(k) = &a.key {
        input["metadata"] = json!({"ferry_key": k});
    }
    input
}

fn address_same(have: &Value, want: &Value) -> bool {
    want.as_object().into_iter().flatten().all(|(k, w)| match k.as_str() {
        "metadata" => have["metadata"]["ferry_key"] == w["ferry_key"],
        _ if w.is_string() => have[k].as_str().unwrap_or_default() == w.as_str().unwrap_or_default(),
        _ => have[k] == *w,
    })
}

/// The id of the customer group named `name`, created when missing (cached).
pub(crate) async fn customer_group(m: &Medusa, name: &str) -> Result<String, CallError> {
    if let Some(id) = m.customer_groups.lock().await.get(name) {
        return Ok(id.clone());
    }
    let data = m.rest.get("/admin/customer-groups", &[("name", name.to_owned()), ("fields", "id,name".into())]).await?;
    let found = data["customer_groups"].as_array().into_iter().flatten().find(|g| g["name"].as_str() == Some(name)).and_then(|g| g["id"].as_str()).map(str::to_owned);
    let id = match found {
        Some(id) => id,
        None => m.rest.post("/admin/customer-groups", &json!({"name": name})).await?["customer_group"]["id"].as_str().unwrap_or_default().to_owned(),
    };
    m.customer_groups.lock().await.insert(name.to_owned(), id.clone());
    Ok(id)
}

/// The Medusa id of the customer whose `metadata.ferry_code` is `code`. Medusa cannot filter on metadata,
/// so the customers are paged through (ids and metadata only) and kept; a code not seen reloads once.
pub(crate) async fn customer_id_by_code(m: &Medusa, code: &str) -> Result<Option<String>, ConnectorError> {
    if let Some(id) = m.customer_codes.lock().await.get(code) {
        return Ok(Some(id.clone()));
    }
    let mut all = HashMap::new();
    let mut offset = 0usize;
    loop {
        let page = m.rest.get("/admin/customers", &[("fields", "id,metadata".into()), ("limit", "500".into()), ("offset", offset.to_string())]).await?;
        let list = page["customers"].as_array().cloned().unwrap_or_default();
        for c in &list {
            if let (Some(code), Some(id)) = (c["metadata"]["ferry_code"].as_str(), c["id"].as_str()) {
                all.insert(code.to_owned(), id.to_owned());
            }
        }
        offset += list.len();
        if list.len() < 500 {
            break;
        }
    }
    let found = all.get(code).cloned();
    *m.customer_codes.lock().await = all;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_the_name_and_compare_as_medusa_answers_them() {
        let c = Customer { code: "C1".into(), email: Some("A@x.test".into()), ..Default::default() };
        let a = Address {
            key: Some("home".into()),
            name: Some("Ann Lee Smith".into()),
            street: vec!["1 Main St".into(), "Unit 2".into()],
            city: Some("Sydney".into()),
            postcode: Some("2000".into()),
            country: Some("AU".into()),
            default_delivery: true,
            ..Default::default()
        };
        let input = address_input(&c, &a);
        assert_eq!((input["first_name"].as_str(), input["last_name"].as_str()), (Some("Ann"), Some("Lee Smith")));
        assert_eq!(input["country_code"], "au");
        // As GET /admin/customers answers (null for empty text).
        let have = json!({"id": "cuaddr_1", "first_name": "Ann", "last_name": "Lee Smith", "company": null, "address_1": "1 Main St", "address_2": "Unit 2",
            "city": "Sydney", "province": null, "postal_code": "2000", "country_code": "au", "phone": null, "is_default_shipping": true, "is_default_billing": false,
            "metadata": {"ferry_key": "home"}});
        assert!(address_same(&have, &input));
        let mut moved = have.clone();
        moved["postal_code"] = json!("2001");
        assert!(!address_same(&moved, &input));
        assert_eq!(customer_input(&c)["email"], "a@x.test");
    }
}
