//! Customers: `customerSet` identified by e-mail (a Shopify customer needs one here), with names, phone,
//! addresses (replacing the stored ones), and tags: the customer group as a tag, and `ferry:<code>`
//! carrying the ERP's customer code (orders read back name the buyer by it).
//!
//! Trade customers (a company name, and a group listed in `trade_groups` when that is set) are also a
//! B2B company: found by `externalId` = the customer code or created with one location (the billing and
//! delivery addresses, tax id as tax registration), the customer assigned as its contact. A customer
//! with a `price_list` gives that company location the price list's catalog (see `prices`).

use super::Shopify;
use super::client::{doc, user_errors};
use ferry_engine::{ConnectorError, RecordFailure, WriteAction, WriteOutcome, WriteRecord};
use ferry_model::{Address, Customer, Record};
use serde_json::{Value, json};

pub(crate) async fn write(s: &Shopify, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
    let mut outcomes = Vec::new();
    for r in batch {
        let Record::Customer(c) = r.record else {
            outcomes.push(WriteOutcome::failed(r.key, RecordFailure::permanent(None, "not a customer record")));
            continue;
        };
        let outcome = match write_one(s, &c, r.target_id.as_deref()).await {
            Ok((id, action)) => WriteOutcome::ok(r.key, id, action),
            Err(Failed::Record(f)) => WriteOutcome::failed(r.key, f),
            Err(Failed::Call(e)) => return Err(e),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

enum Failed {
    Record(RecordFailure),
    Call(ConnectorError),
}

impl From<ConnectorError> for Failed {
    fn from(e: ConnectorError) -> Self {
        Failed::Call(e)
    }
}

fn mailing_address(a: &Address) -> Value {
    let (first, last) = split_name(a.name.as_deref());
    let mut v = json!({
        "firstName": first, "lastName": last, "company": a.company,
        "address1": a.street.first(), "address2": (a.street.len() > 1).then(|| a.street[1..].join(", ")),
        "city": a.city, "zip": a.postcode, "countryCode": a.country, "phone": a.phone,
    });
    if let Some(r) = a.region.as_deref().filter(|r| r.len() <= 3 && r.chars().all(|c| c.is_ascii_alphanumeric())) {
        v["provinceCode"] = json!(r.to_ascii_uppercase());
    }
    strip_nulls(v)
}

fn company_address(a: &Address) -> Value {
    let (first, last) = split_name(a.name.as_deref());
    let mut v = json!({
        "firstName": first, "lastName": last, "address1": a.street.first(), "address2": (a.street.len() > 1).then(|| a.street[1..].join(", ")),
        "city": a.city, "zip": a.postcode, "countryCode": a.country, "phone": a.phone,
    });
    if let Some(r) = a.region.as_deref().filter(|r| r.len() <= 3) {
        v["zoneCode"] = json!(r.to_ascii_uppercase());
    }
    strip_nulls(v)
}

fn split_name(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => (None, None),
        Some(n) => match n.rsplit_once(' ') {
            Some((f, l)) => (Some(f.to_owned()), Some(l.to_owned())),
            None => (None, Some(n.to_owned())),
        },
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// The customerSet input of a canonical customer (pure).
pub(crate) fn customer_input(c: &Customer) -> Result<Value, RecordFailure> {
    let email = c.email.as_deref().filter(|e| !e.trim().is_empty()).ok_or_else(|| RecordFailure::permanent(Some("email".into()), "Shopify customers are matched by e-mail: this customer has none"))?;
    let mut tags = vec![format!("ferry:{}", c.code)];
    if let Some(g) = &c.group {
        tags.push(g.clone());
    }
    if !c.active {
        tags.push("ferry:inactive".into());
    }
    let addresses: Vec<Value> = c.addresses.iter().map(mailing_address).collect();
    let mut input = json!({"email": email, "tags": tags, "addresses": addresses});
    for (k, v) in [("firstName", &c.first_name), ("lastName", &c.last_name), ("phone", &c.phone)] {
        if let Some(v) = v {
            input[k] = json!(v);
        }
    }
    Ok(input)
}

fn is_trade(s: &Shopify, c: &Customer) -> bool {
    s.options.companies
        && c.company.as_deref().is_some_and(|n| !n.trim().is_empty())
        && (s.options.trade_groups.is_empty() || c.group.as_ref().is_some_and(|g| s.options.trade_groups.iter().any(|t| t.eq_ignore_ascii_case(g))))
}

/// The customer to set: the one written before (its id, so a changed e-mail address updates it), else
/// the one with this e-mail address (created when there is none).
fn identifier(target_id: Option<&str>, input: &Value) -> Value {
    match target_id.filter(|t| t.starts_with("gid://shopify/Customer/")) {
        Some(id) => json!({"id": id}),
        None => json!({"email": input["email"]}),
    }
}

async fn write_one(s: &Shopify, c: &Customer, target_id: Option<&str>) -> Result<(String, WriteAction), Failed> {
    let input = customer_input(c).map_err(Failed::Record)?;
    let known = target_id.is_some();
    let data = s.client.call(doc::CUSTOMER_SET, json!({"identifier": identifier(target_id, &input), "input": input})).await.map_err(|e| Failed::Record(e.for_record(None)))?;
    let payload = &data["customerSet"];
    if let Some(f) = user_errors(payload) {
        return Err(Failed::Record(f));
    }
    let customer_id = payload.pointer("/customer/id").and_then(Value::as_str).ok_or_else(|| Failed::Record(RecordFailure::permanent(None, "customerSet answered without a customer")))?.to_owned();
    if is_trade(s, c) {
        company(s, c, &customer_id).await?;
    }
    Ok((customer_id, if known { WriteAction::Updated } else { WriteAction::Created }))
}

/// The trade customer's company (found by external id or created) with the customer as a contact, and
/// the customer's price list catalog on the company location.
async fn company(s: &Shopify, c: &Customer, customer_id: &str) -> Result<(), Failed> {
    let query = format!("external_id:\"{}\"", c.code.replace(['"', '\\'], ""));
    let data = s.client.query(doc::COMPANY_BY_EXTERNAL_ID, json!({"query": query})).await?;
    let found = data.pointer("/companies/nodes/0").filter(|c| !c.is_null()).cloned();
    let (company_id, location_id, contacts) = match found {
        Some(co) => (
            co["id"].as_str().unwrap_or_default().to_owned(),
            co.pointer("/locations/nodes/0/id").and_then(Value::as_str).map(str::to_owned),
            co.pointer("/contacts/nodes").and_then(Value::as_array).cloned().unwrap_or_default(),
        ),
        None => {
            let billing = c.addresses.iter().find(|a| a.default_billing).or_else(|| c.addresses.iter().find(|a| a.billing)).or(c.addresses.first());
            let shipping = c.addresses.iter().find(|a| a.default_delivery).or_else(|| c.addresses.iter().find(|a| a.delivery)).or(billing);
            let mut location = json!({"name": c.company, "externalId": c.code});
            if let Some(b) = billing {
                location["billingAddress"] = company_address(b);
            }
            if let Some(sh) = shipping {
                location["shippingAddress"] = company_address(sh);
            }
            if let Some(t) = &c.tax_id {
                location["taxRegistrationId"] = json!(t);
            }
            let input = json!({"company": {"name": c.company, "externalId": c.code}, "companyLocation": location});
            let data = s.client.call(doc::COMPANY_CREATE, json!({"input": input})).await.map_err(|e| Failed::Record(e.for_record(Some("company"))))?;
            let payload = &data["companyCreate"];
            if let Some(f) = user_errors(payload) {
                return Err(Failed::Record(RecordFailure { field: Some("company".into()), ..f }));
            }
            (
                payload.pointer("/company/id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                payload.pointer("/company/locations/nodes/0/id").and_then(Value::as_str).map(str::to_owned),
                Vec::new(),
            )
        }
    };
    if !contacts.iter().any(|k| k.pointer("/customer/id").and_then(Value::as_str) == Some(customer_id)) {
        let data = s.client.call(doc::COMPANY_ASSIGN_CUSTOMER_AS_CONTACT, json!({"companyId": company_id, "customerId": customer_id})).await.map_err(|e| Failed::Record(e.for_record(Some("company"))))?;
        if let Some(f) = user_errors(&data["companyAssignCustomerAsContact"]) {
            return Err(Failed::Record(RecordFailure { field: Some("company".into()), ..f }));
        }
    }
    if let (Some(list), Some(location)) = (&c.price_list, location_id) {
        let catalog = super::prices::catalog_for(s, list).await?;
        let data = s
            .client
            .call(doc::CATALOG_CONTEXT_UPDATE, json!({"catalogId": catalog.catalog_id, "contextsToAdd": {"companyLocationIds": [location]}}))
            .await
            .map_err(|e| Failed::Record(e.for_record(Some("price_list"))))?;
        if let Some(f) = user_errors(&data["catalogContextUpdate"]) {
            // already assigned is fine
            if !f.message.to_ascii_lowercase().contains("already") {
                return Err(Failed::Record(RecordFailure { field: Some("price_list".into()), ..f }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Stream;

    fn customer(v: Value) -> Customer {
        match Record::parse(Stream::Customers, v, "t").unwrap() {
            Record::Customer(c) => c,
            _ => unreachable!(),
        }
    }

    #[test]
    fn customers_become_customer_set_inputs_with_group_tags_and_addresses() {
        let c = customer(json!({
            "code": "C-1", "email": "ann@example.test", "first_name": "Ann", "last_name": "Lee", "group": "Trade",
            "addresses": [{"name": "Ann Lee", "street": ["1 Main St", "Level 2", "Suite 3"], "city": "Sydney", "region": "nsw", "postcode": "2000", "country": "AU"}]
        }));
        let input = customer_input(&c).unwrap();
        assert_eq!(input["email"], "ann@example.test");
        assert_eq!(input["tags"], json!(["ferry:C-1", "Trade"]));
        assert_eq!(input["addresses"][0], json!({"firstName": "Ann", "lastName": "Lee", "address1": "1 Main St", "address2": "Level 2, Suite 3", "city": "Sydney", "zip": "2000", "countryCode": "AU", "provinceCode": "NSW"}));
        let no_email = customer(json!({"code": "C-2"}));
        assert_eq!(customer_input(&no_email).unwrap_err().field.as_deref(), Some("email"));
    }

    #[test]
    fn a_customer_written_before_is_set_by_id_so_a_new_email_updates_it() {
        let input = json!({"email": "new@example.test"});
        assert_eq!(identifier(Some("gid://shopify/Customer/7"), &input), json!({"id": "gid://shopify/Customer/7"}));
        assert_eq!(identifier(None, &input), json!({"email": "new@example.test"}));
        assert_eq!(identifier(Some("x"), &input), json!({"email": "new@example.test"}), "not a Shopify id (found by key elsewhere)");
    }

    #[test]
    fn names_split_at_the_last_space() {
        assert_eq!(split_name(Some("Mary Ann Lee")), (Some("Mary Ann".into()), Some("Lee".into())));
        assert_eq!(split_name(Some("Cher")), (None, Some("Cher".into())));
        assert_eq!(split_name(Some("  ")), (None, None));
    }
}
