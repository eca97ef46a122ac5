//! Customers: found by `customFields.ferryCode` (the ERP's customer code), else by e-mail; every
//! address (matched by `customFields.ferryKey`, else by street + postcode) with the default shipping /
//! billing flags; the customer group (created when missing) as a membership.
//!
//! Creates, updates and address writes of a whole batch go out as aliased mutations (a handful of
//! requests per batch); `createCustomer` answers with an `ErrorResult` union (e.g.
//! `EMAIL_ADDRESS_CONFLICT_ERROR`), which fails only that record.

use super::Vendure;
use super::gql::{CallError, error_result};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Address, Customer, Record};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

const CUSTOMER_FIELDS: &str = "id emailAddress firstName lastName phoneNumber customFields { ferryCode taxId company } groups { id name } \
    addresses { id fullName company streetLine1 streetLine2 city province postalCode country { code } phoneNumber \
    defaultShippingAddress defaultBillingAddress customFields { ferryKey } }";

struct Item {
    key: String,
    c: Customer,
    existing: Option<Value>,
    id: Option<String>,
    action: WriteAction,
    failure: Option<RecordFailure>,
}

pub(crate) async fn write(v: &Vendure, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    let mut items = Vec::new();
    for rec in batch {
        let Record::Customer(c) = rec.record else {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(None, "not a customer record")));
            continue;
        };
        if c.email.is_none() {
            outcomes.push(WriteOutcome::failed(rec.key, RecordFailure::permanent(Some("email".into()), "Vendure customers need an e-mail address")));
            continue;
        }
        if let Some(f) = address_problem(&c) {
            outcomes.push(WriteOutcome::failed(rec.key, f));
            continue;
        }
        items.push(Item { key: rec.key, c, existing: None, id: None, action: WriteAction::Unchanged, failure: None });
    }
    if items.is_empty() {
        return Ok(outcomes);
    }

    // ---- find ---------------------------------------------------------------------------------------
    let codes: Vec<&str> = items.iter().map(|i| i.c.code.as_str()).collect();
    let by_code = find(v, "ferryCode", &codes).await?;
    let emails: Vec<&str> = items.iter().filter(|i| !by_code.contains_key(&i.c.code)).filter_map(|i| i.c.email.as_deref()).collect();
    let by_email = if emails.is_empty() { HashMap::new() } else { find(v, "emailAddress", &emails).await? };
    for it in &mut items {
        if let Some(c) = by_code.get(&it.c.code) {
            it.existing = Some(c.clone());
        } else if let Some(c) = it.c.email.as_ref().and_then(|e| by_email.get(&e.to_lowercase())) {
            match c.pointer("/customFields/ferryCode").and_then(Value::as_str) {
                Some(other) if other != it.c.code => {
                    it.failure = Some(RecordFailure::permanent(
                        Some("email".into()),
                        format!("{} already belongs to Vendure customer {} with code {other}", it.c.email.as_deref().unwrap_or(""), c["id"].as_str().unwrap_or("?")),
                    ));
                }
                _ => it.existing = Some(c.clone()),
            }
        }
        it.id = it.existing.as_ref().and_then(|e| e["id"].as_str()).map(str::to_owned);
    }

    // ---- create / update the customer ---------------------------------------------------------------
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if it.failure.is_some() {
            continue;
        }
        let input = customer_input(&it.c);
        match &it.existing {
            None => creates.push((i, input)),
            Some(e) => {
                let same = e["emailAddress"].as_str().map(str::to_lowercase) == it.c.email.as_ref().map(|s| s.to_lowercase())
                    && e["firstName"] == input["firstName"]
                    && e["lastName"] == input["lastName"]
                    && e["phoneNumber"].as_str().unwrap_or_default() == input["phoneNumber"].as_str().unwrap_or_default()
                    && ["ferryCode", "taxId", "company"].iter().all(|k| e["customFields"][k] == input["customFields"][k]);
                if !same {
                    let mut u = input;
                    u["id"] = e["id"].clone();
                    updates.push((i, u));
                }
            }
        }
    }
    let fields: Vec<String> = (0..creates.len())
        .map(|k| format!("createCustomer(input:$v{k}){{ __typename ... on Customer {{ id }} ... on ErrorResult {{ errorCode message }} }}"))
        .collect();
    let inputs: Vec<Value> = creates.iter().map(|(_, x)| x.clone()).collect();
    for ((i, _), r) in creates.iter().zip(v.gql.batch("CreateCustomerInput!", &fields, &inputs).await) {
        let it = &mut items[*i];
        match r {
            Ok(res) => match error_result(&res, Some("email")) {
                Some(f) => it.failure = Some(f),
                None => {
                    it.id = res["id"].as_str().map(str::to_owned);
                    it.action = WriteAction::Created;
                }
            },
            Err(CallError::Connector(e)) => return Err(e),
            Err(e) => it.failure = Some(e.for_record(None)),
        }
    }
    let fields: Vec<String> = (0..updates.len())
        .map(|k| format!("updateCustomer(input:$v{k}){{ __typename ... on Customer {{ id }} ... on ErrorResult {{ errorCode message }} }}"))
        .collect();
    let inputs: Vec<Value> = updates.iter().map(|(_, x)| x.clone()).collect();
    for ((i, _), r) in updates.iter().zip(v.gql.batch("UpdateCustomerInput!", &fields, &inputs).await) {
        let it = &mut items[*i];
        match r {
            Ok(res) => match error_result(&res, Some("email")) {
                Some(f) => it.failure = Some(f),
                None => it.action = WriteAction::Updated,
            },
            Err(CallError::Connector(e)) => return Err(e),
            Err(e) => it.failure = Some(e.for_record(None)),
        }
    }

    // ---- addresses ----------------------------------------------------------------------------------
    // (item index, address index, customer id for a create / None for an update, input)
    let mut addr_writes: Vec<(usize, usize, Option<String>, Value)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let (Some(id), None) = (&it.id, &it.failure) else { continue };
        let have: Vec<Value> = it.existing.as_ref().and_then(|e| e["addresses"].as_array().cloned()).unwrap_or_default();
        for (ai, a) in it.c.addresses.iter().enumerate() {
            let input = address_input(&it.c, a);
            let found = have.iter().find(|h| match &a.key {
                Some(k) => h.pointer("/customFields/ferryKey").and_then(Value::as_str) == Some(k.as_str()),
                None => h["streetLine1"] == input["streetLine1"] && h["postalCode"] == input["postalCode"],
            });
            match found {
                None => addr_writes.push((i, ai, Some(id.clone()), input)),
                Some(h) if !address_same(h, &input) => {
                    let mut u = input;
                    u["id"] = h["id"].clone();
                    addr_writes.push((i, ai, None, u));
                }
                Some(_) => {}
            }
        }
    }
    // Create and update inputs differ in type: two aliased requests.
    for create in [true, false] {
        let pick: Vec<&(usize, usize, Option<String>, Value)> = addr_writes.iter().filter(|w| w.2.is_some() == create).collect();
        if pick.is_empty() {
            continue;
        }
        let fields: Vec<String> = pick
            .iter()
            .enumerate()
            .map(|(n, w)| match &w.2 {
                Some(cid) => format!("createCustomerAddress(customerId:{}, input:$v{n}){{ id }}", serde_json::to_string(cid).unwrap_or_default()),
                None => format!("updateCustomerAddress(input:$v{n}){{ id }}"),
            })
            .collect();
        let vars: Vec<Value> = pick.iter().map(|w| w.3.clone()).collect();
        let ty = if create { "CreateAddressInput!" } else { "UpdateAddressInput!" };
        for (w, r) in pick.iter().zip(v.gql.batch(ty, &fields, &vars).await) {
            let (i, ai) = (w.0, w.1);
            let it = &mut items[i];
            match r {
                Ok(_) => {
                    if it.action == WriteAction::Unchanged {
                        it.action = WriteAction::Updated;
                    }
                }
                Err(CallError::Connector(e)) => return Err(e),
                Err(e) => {
                    it.failure.get_or_insert(e.for_record(Some(&format!("addresses[{ai}]"))));
                }
            }
        }
    }

    // ---- customer groups ------------------------------------------------------------------------------
    let mut joins: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        let (Some(_), None, Some(group)) = (&it.id, &it.failure, &it.c.group) else { continue };
        let member = it.existing.as_ref().is_some_and(|e| e["groups"].as_array().into_iter().flatten().any(|g| g["name"].as_str() == Some(group.as_str())));
        if !member {
            joins.entry(group.clone()).or_default().push(i);
        }
    }
    for (group, members) in joins {
        let gid = match customer_group(v, &group).await {
            Ok(id) => id,
            Err(f) => {
                for i in members {
                    items[i].failure.get_or_insert(f.clone());
                }
                continue;
            }
        };
        let ids: Vec<String> = members.iter().filter_map(|i| items[*i].id.clone()).collect();
        let r = v.gql.call("mutation($g:ID!,$c:[ID!]!){ addCustomersToGroup(customerGroupId:$g, customerIds:$c){ id } }", json!({"g": gid, "c": ids})).await;
        for i in members {
            let it = &mut items[i];
            match &r {
                Ok(_) => {
                    if it.action == WriteAction::Unchanged {
                        it.action = WriteAction::Updated;
                    }
                }
                Err(CallError::Connector(e)) => return Err(e.clone()),
                Err(e) => {
                    it.failure.get_or_insert(e.for_record(Some("group")));
                }
            }
        }
    }

    for it in items {
        outcomes.push(match (it.failure, it.id) {
            (Some(f), _) => WriteOutcome::failed(it.key, f),
            (None, Some(id)) => WriteOutcome::ok(it.key, id, it.action),
            (None, None) => WriteOutcome::failed(it.key, RecordFailure::transient("customer was neither found nor created")),
        });
    }
    Ok(outcomes)
}

/// Customers by a filterable field (`ferryCode` or `emailAddress`), keyed by that field's value
/// (e-mails lower-cased).
async fn find(v: &Vendure, field: &str, values: &[&str]) -> Result<HashMap<String, Value>, ConnectorError> {
    let mut out = HashMap::new();
    for chunk in values.chunks(100) {
        let q = format!("query($v:[String!]!,$n:Int!){{ customers(options:{{filter:{{{field}:{{in:$v}}}},take:$n}}){{ items {{ {CUSTOMER_FIELDS} }} }} }}");
        let data = v.gql.query(&q, json!({"v": chunk, "n": chunk.len()})).await?;
        for c in data.pointer("/customers/items").and_then(Value::as_array).into_iter().flatten() {
            let k = if field == "emailAddress" {
                c["emailAddress"].as_str().map(str::to_lowercase)
            } else {
                c.pointer("/customFields/ferryCode").and_then(Value::as_str).map(str::to_owned)
            };
            if let Some(k) = k {
                out.insert(k, c.clone());
            }
        }
    }
    Ok(out)
}

fn customer_input(c: &Customer) -> Value {
    // Vendure requires first and last names; B2B accounts often only have a company.
    let first = c.first_name.clone().or_else(|| c.company.clone()).unwrap_or_else(|| c.code.clone());
    json!({
        "emailAddress": c.email,
        "firstName": first,
        "lastName": c.last_name.clone().unwrap_or_default(),
        "phoneNumber": c.phone.clone().unwrap_or_default(),
        "customFields": {"ferryCode": c.code, "taxId": c.tax_id, "company": c.company},
    })
}

fn address_problem(c: &Customer) -> Option<RecordFailure> {
    for (i, a) in c.addresses.iter().enumerate() {
        if a.street.first().is_none_or(|s| s.trim().is_empty()) {
            return Some(RecordFailure::permanent(Some(format!("addresses[{i}].street")), "Vendure needs a street line"));
        }
        if a.country.is_none() {
            return Some(RecordFailure::permanent(Some(format!("addresses[{i}].country")), "Vendure needs a country code"));
        }
    }
    None
}

fn address_input(c: &Customer, a: &Address) -> Value {
    let full_name = a.name.clone().unwrap_or_else(|| {
        [c.first_name.as_deref(), c.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ")
    });
    json!({
        "fullName": full_name,
        "company": a.company.clone().unwrap_or_default(),
        "streetLine1": a.street.first().cloned().unwrap_or_default(),
        "streetLine2": a.street[1.min(a.street.len())..].join(", "),
        "city": a.city.clone().unwrap_or_default(),
        "province": a.region.clone().unwrap_or_default(),
        "postalCode": a.postcode.clone().unwrap_or_default(),
        "countryCode": a.country,
        "phoneNumber": a.phone.clone().unwrap_or_default(),
        "defaultShippingAddress": a.default_delivery,
        "defaultBillingAddress": a.default_billing,
        "customFields": {"ferryKey": a.key},
    })
}

fn address_same(have: &Value, want: &Value) -> bool {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    ["fullName", "company", "streetLine1", "streetLine2", "city", "province", "postalCode", "phoneNumber"].iter().all(|k| s(&have[k]) == s(&want[k]))
        && have.pointer("/country/code") == want.get("countryCode")
        && have["defaultShippingAddress"] == want["defaultShippingAddress"]
        && have["defaultBillingAddress"] == want["defaultBillingAddress"]
        && have.pointer("/customFields/ferryKey") == want.pointer("/customFields/ferryKey")
}

/// The id of the customer group named `name`, created when missing.
pub(crate) async fn customer_group(v: &Vendure, name: &str) -> Result<String, RecordFailure> {
    let mut cache = v.customer_groups.lock().await;
    if let Some(id) = cache.get(name) {
        return Ok(id.clone());
    }
    let data = v
        .gql
        .call("query($n:String!){ customerGroups(options:{filter:{name:{eq:$n}},take:1}){ items { id } } }", json!({"n": name}))
        .await
        .map_err(|e| e.for_record(Some("group")))?;
    let id = match data.pointer("/customerGroups/items/0/id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => v
            .gql
            .call("mutation($i:CreateCustomerGroupInput!){ createCustomerGroup(input:$i){ id } }", json!({"i": {"name": name}}))
            .await
            .map_err(|e| e.for_record(Some("group")))?
            .pointer("/createCustomerGroup/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    cache.insert(name.to_owned(), id.clone());
    Ok(id)
}
