//! Shopify Admin GraphQL client: `POST {base}/admin/api/{version}/graphql.json` with the
//! `X-Shopify-Access-Token` header, every document one of the files in `graphql/` ([`Op`]).
//!
//! - The rate budget ([`super::budget`]): each request first waits until the bucket holds its estimated
//!   cost plus a reserve; every answer's `extensions.cost` updates the budget; a `THROTTLED` answer (the
//!   request did not run, so even a mutation may be sent again) waits for the cost to be restored and
//!   sends again, a bounded number of times.
//! - Transport failures, HTTP 5xx and 429 follow [`crate::retry`]: queries are sent again, mutations only
//!   when Shopify certainly did not act on them; otherwise the engine retries the record.
//! - GraphQL `errors` → [`CallError::Graphql`]; a mutation's `userErrors` → that record's failure
//!   ([`user_errors`]).

use super::budget::{Budget, Cost, Plan, is_throttled};
use crate::retry::{Idempotency, RequestRetry, TransientCause, retry_after_of, status_message};
use ferry_engine::{ConnectorError, ErrorKind, RecordFailure};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One GraphQL document of the connector (a file in `graphql/`), named by its operation.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub name: &'static str,
    pub text: &'static str,
}

impl Op {
    pub fn is_mutation(&self) -> bool {
        self.text.lines().any(|l| l.starts_with("mutation "))
    }
}

macro_rules! ops {
    ($($konst:ident = $file:literal),* $(,)?) => {
        $(pub const $konst: Op = Op { name: $file, text: include_str!(concat!("graphql/", $file, ".graphql")) };)*
        /// Every document, for the tests.
        #[cfg(test)]
        pub const ALL: &[Op] = &[$($konst),*];
    };
}

/// The documents, by operation name.
pub mod doc {
    use super::Op;
    ops! {
        SHOP = "Shop",
        LOCATIONS = "Locations",
        VARIANTS_BY_SKU = "VariantsBySku",
        PRODUCT_BY_HANDLE = "ProductByHandle",
        PRODUCT_SET = "ProductSet",
        PRODUCT_ARCHIVE = "ProductArchive",
        COLLECTIONS = "Collections",
        COLLECTION_CREATE = "CollectionCreate",
        METAFIELD_DEFINITIONS = "MetafieldDefinitions",
        METAFIELD_DEFINITION_CREATE = "MetafieldDefinitionCreate",
        METAFIELDS_SET = "MetafieldsSet",
        INVENTORY_LEVELS = "InventoryLevels",
        INVENTORY_ACTIVATE = "InventoryActivate",
        INVENTORY_SET_QUANTITIES = "InventorySetQuantities",
        CUSTOMER_SET = "CustomerSet",
        COMPANY_BY_EXTERNAL_ID = "CompanyByExternalId",
        COMPANY_CREATE = "CompanyCreate",
        COMPANY_ASSIGN_CUSTOMER_AS_CONTACT = "CompanyAssignCustomerAsContact",
        PRICE_LISTS = "PriceLists",
        CATALOG_CREATE = "CatalogCreate",
        PRICE_LIST_CREATE = "PriceListCreate",
        QUANTITY_PRICING_BY_VARIANT_UPDATE = "QuantityPricingByVariantUpdate",
        CATALOG_CONTEXT_UPDATE = "CatalogContextUpdate",
        PRICE_LIST_PRICES = "PriceListPrices",
        TAGS_ADD = "TagsAdd",
        ORDERS = "Orders",
        ORDER_LINES = "OrderLines",
        BULK_ORDERS = "BulkOrders",
        BULK_OPERATION_RUN_QUERY = "BulkOperationRunQuery",
        BULK_OPERATION = "BulkOperation",
        STAGED_UPLOADS_CREATE = "StagedUploadsCreate",
        BULK_OPERATION_RUN_MUTATION = "BulkOperationRunMutation",
        BULK_PRODUCTS_BY_HANDLE = "BulkProductsByHandle",
        FULFILLMENT_ORDERS = "FulfillmentOrders",
        FULFILLMENT_CREATE = "FulfillmentCreate",
        WEBHOOK_SUBSCRIPTION_CREATE = "WebhookSubscriptionCreate",
    }
}

/// One GraphQL error as Shopify reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct GqlError {
    pub message: String,
    pub code: Option<String>,
    pub path: Vec<String>,
}

impl std::fmt::Display for GqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path.join("."))?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub enum CallError {
    /// The call as a whole failed (network, 5xx, 429, token refused, throttled too long).
    Connector(ConnectorError),
    /// Shopify answered with GraphQL errors (a document or input problem).
    Graphql { errors: Vec<GqlError>, data: Value },
}

impl From<ConnectorError> for CallError {
    fn from(e: ConnectorError) -> Self {
        CallError::Connector(e)
    }
}

impl CallError {
    /// This call's failure as one record's.
    pub fn for_record(&self, field: Option<&str>) -> RecordFailure {
        match self {
            CallError::Connector(e) => RecordFailure { field: field.map(str::to_owned), message: e.to_string(), retryable: e.is_transient() },
            CallError::Graphql { errors, .. } => {
                let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
                let retryable = errors.iter().all(|e| matches!(e.code.as_deref(), Some("INTERNAL_SERVER_ERROR" | "THROTTLED")));
                RecordFailure { field: field.map(str::to_owned), message, retryable }
            }
        }
    }

    pub fn into_connector(self, endpoint: &str) -> ConnectorError {
        match self {
            CallError::Connector(e) => e,
            CallError::Graphql { errors, .. } => {
                ConnectorError::permanent(endpoint, errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
            }
        }
    }
}

/// A mutation payload's `userErrors` as the record's failure (field = Shopify's input path), or `None`.
pub fn user_errors(payload: &Value) -> Option<RecordFailure> {
    let errors = payload["userErrors"].as_array().filter(|e| !e.is_empty())?;
    let field = errors[0]["field"].as_array().map(|p| p.iter().map(|s| s.as_str().map(str::to_owned).unwrap_or_else(|| s.to_string())).collect::<Vec<_>>().join("."));
    let message = errors
        .iter()
        .map(|e| {
            let msg = e["message"].as_str().unwrap_or("error");
            match e["code"].as_str() {
                Some(code) => format!("{code}: {msg}"),
                None => msg.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(RecordFailure { field, message, retryable: false })
}

/// How many `THROTTLED` answers one request waits through before the call fails (transient).
const MAX_THROTTLED: u32 = 10;

pub struct Client {
    http: reqwest::Client,
    /// The GraphQL URL, also the endpoint named in errors.
    pub endpoint: String,
    token: String,
    budget: Mutex<Budget>,
    retry: RequestRetry,
    calls: AtomicU64,
    throttled: AtomicU64,
    /// Sum of `actualQueryCost` of the answers so far (for "where the budget goes").
    spent: AtomicU64,
    /// The same per operation, with requests and time (benchmarks: which documents the points go to).
    by_operation: std::sync::Mutex<std::collections::BTreeMap<&'static str, OperationUsage>>,
}

/// What one operation (GraphQL document) used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperationUsage {
    /// HTTP requests, resent ones and `THROTTLED` answers included.
    pub requests: u64,
    /// Sum of `actualQueryCost`.
    pub points: u64,
    /// Time spent in requests (pacing waits excluded).
    pub elapsed: Duration,
}

impl Client {
    pub fn new(endpoint: String, token: String, plan: Plan, reserve_fraction: f64, timeout: Duration) -> Result<Self, ConnectorError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            // Node servers (the emulator) close idle keep-alive connections after 5 s.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| ConnectorError::config(&endpoint, format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            endpoint,
            token,
            budget: Mutex::new(Budget::new(plan, reserve_fraction, Instant::now())),
            retry: RequestRetry::DEFAULT,
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            spent: AtomicU64::new(0),
            by_operation: Default::default(),
        })
    }

    /// Another per-request retry policy (tests use a fast one).
    pub fn with_retry(mut self, retry: RequestRetry) -> Self {
        self.retry = retry;
        self
    }

    /// HTTP requests sent so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// `THROTTLED` answers so far (0 in a well-paced run).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Query-cost points spent so far.
    pub fn points_spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }

    /// Requests, points and time per operation so far, by operation name.
    pub fn usage_by_operation(&self) -> Vec<(&'static str, OperationUsage)> {
        self.by_operation.lock().expect("usage lock").iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Runs `op` and returns `data`. GraphQL errors become [`CallError::Graphql`].
    pub async fn call(&self, op: Op, variables: Value) -> Result<Value, CallError> {
        let idempotency = if op.is_mutation() { Idempotency::Unsafe } else { Idempotency::Safe };
        let mut throttled = 0;
        loop {
            self.pace(op).await;
            let (mut sent, started) = (0, Instant::now());
            let body = self.post(op, &variables, idempotency, &mut sent).await;
            let points = body.as_ref().ok().and_then(Cost::of).and_then(|c| c.actual).map(|a| a.round() as u64).unwrap_or(0);
            {
                let mut usage = self.by_operation.lock().expect("usage lock");
                let u = usage.entry(op.name).or_default();
                u.requests += sent;
                u.points += points;
                u.elapsed += started.elapsed();
            }
            let body = body?;
            let cost = Cost::of(&body);
            if let Some(cost) = &cost {
                self.budget.lock().await.observe(op.name, cost, Instant::now());
                self.spent.fetch_add(points, Ordering::Relaxed);
            }
            if is_throttled(&body) {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                throttled += 1;
                let wait = cost.as_ref().map(Budget::throttled_wait).unwrap_or(Duration::from_secs(1));
                if throttled > MAX_THROTTLED {
                    return Err(CallError::Connector(
                        ConnectorError::transient(&self.endpoint, format!("{}: throttled {throttled} times in a row", op.name)).with_retry_after(Some(wait)),
                    ));
                }
                tracing::info!(endpoint = %self.endpoint, operation = op.name, ?wait, "throttled by Shopify; waiting for the bucket to restore");
                tokio::time::sleep(wait).await;
                continue;
            }
            let errors = parse_errors(&body);
            if !errors.is_empty() {
                return Err(CallError::Graphql { errors, data: body.get("data").cloned().unwrap_or(Value::Null) });
            }
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
    }

    /// Like [`Client::call`] for reads: any error fails the whole call.
    pub async fn query(&self, op: Op, variables: Value) -> Result<Value, ConnectorError> {
        self.call(op, variables).await.map_err(|e| e.into_connector(&self.endpoint))
    }

    /// Waits until the bucket holds the operation's estimated cost plus the reserve, then takes it.
    async fn pace(&self, op: Op) {
        loop {
            let wait = {
                let mut budget = self.budget.lock().await;
                let now = Instant::now();
                let cost = budget.estimate(op.name);
                let wait = budget.wait_for(cost, now);
                if wait.is_zero() {
                    budget.spend(cost, now);
                    return;
                }
                wait
            };
            tracing::debug!(operation = op.name, ?wait, "pacing to Shopify's rate budget");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request, sent again after a transient failure when that is safe (see [`crate::retry`]).
    /// `sent` counts the requests sent.
    async fn post(&self, op: Op, variables: &Value, idempotency: Idempotency, sent: &mut u64) -> Result<Value, ConnectorError> {
        let mut attempt = 1;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            *sent += 1;
            match self.post_once(op, variables).await {
                Ok(body) => return Ok(body),
                Err(Failure::Transient(e, cause)) if self.retry.should_retry(attempt, idempotency, cause) => {
                    let delay = self.retry.delay(attempt, e.retry_after);
                    tracing::warn!(endpoint = %self.endpoint, operation = op.name, attempt, ?delay, error = %e.message, "transient failure; sending the request again");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(Failure::Transient(mut e, _) | Failure::Other(mut e)) => {
                    e.message = format!("{}: {}", op.name, e.message);
                    if attempt > 1 {
                        e.message = format!("{} (after {attempt} attempts)", e.message);
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn post_once(&self, op: Op, variables: &Value) -> Result<Value, Failure> {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("X-Shopify-Access-Token", &self.token)
            .json(&json!({"query": op.text, "operationName": op.name, "variables": variables}))
            .send()
            .await
            .map_err(|e| {
                let cause = if e.is_connect() { TransientCause::NotSent } else { TransientCause::Unknown };
                Failure::Transient(ConnectorError::transient(&self.endpoint, format!("request failed: {}", transport_message(&e))), cause)
            })?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let retry_after = retry_after_of(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let msg = format!("{}: {}", status_message(status.as_u16(), retry_after), truncate(&text, 300));
            let cause = if status.as_u16() == 429 { TransientCause::Refused } else { TransientCause::Unknown };
            return Err(Failure::Transient(ConnectorError::transient(&self.endpoint, msg).with_retry_after(retry_after), cause));
        }
        let text = resp.text().await.map_err(|e| {
            Failure::Transient(ConnectorError::transient(&self.endpoint, format!("reading the answer: {}", transport_message(&e))), TransientCause::Unknown)
        })?;
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(Failure::Other(ConnectorError::new(
                ErrorKind::Auth,
                &self.endpoint,
                format!("{}: access token refused: {}", status_message(status.as_u16(), None), truncate(&text, 300)),
            )));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Other(ConnectorError::permanent(&self.endpoint, format!("HTTP {status}: answer is not JSON ({e}): {}", truncate(&text, 300))))
        })?;
        if !status.is_success() && body.get("errors").is_none() {
            return Err(Failure::Other(ConnectorError::permanent(&self.endpoint, format!("{}: {}", status_message(status.as_u16(), None), truncate(&text, 300)))));
        }
        Ok(body)
    }
}

enum Failure {
    Transient(ConnectorError, TransientCause),
    Other(ConnectorError),
}

fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// The `errors` of a GraphQL answer. Shopify sends a plain string for some (`"errors": "[API] Invalid API
/// key…"` with HTTP 401), an array of objects otherwise.
pub fn parse_errors(body: &Value) -> Vec<GqlError> {
    match body.get("errors") {
        Some(Value::String(s)) => vec![GqlError { message: s.clone(), code: None, path: Vec::new() }],
        Some(Value::Array(errs)) => errs
            .iter()
            .map(|e| GqlError {
                message: e.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned(),
                code: e.pointer("/extensions/code").and_then(Value::as_str).map(str::to_owned),
                path: e
                    .get("path")
                    .and_then(Value::as_array)
                    .map(|p| p.iter().map(|s| s.as_str().map(str::to_owned).unwrap_or_else(|| s.to_string())).collect())
                    .unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_is_one_named_operation_and_mutations_are_known() {
        for op in doc::ALL {
            let heads: Vec<&str> = op.text.lines().filter(|l| l.starts_with("query ") || l.starts_with("mutation ")).collect();
            assert_eq!(heads.len(), 1, "{}", op.name);
            assert!(heads[0].split([' ', '(', '{']).nth(1) == Some(op.name), "{}: {}", op.name, heads[0]);
        }
        assert!(doc::PRODUCT_SET.is_mutation());
        assert!(doc::FULFILLMENT_CREATE.is_mutation());
        assert!(!doc::ORDERS.is_mutation());
        assert!(!doc::BULK_ORDERS.is_mutation());
    }

    #[test]
    fn user_errors_name_the_input_field() {
        let payload = json!({"userErrors": [{"field": ["input", "variants", "0", "price"], "message": "Price must be positive", "code": "INVALID_INPUT"}]});
        let f = user_errors(&payload).unwrap();
        assert_eq!(f.field.as_deref(), Some("input.variants.0.price"));
        assert_eq!(f.message, "INVALID_INPUT: Price must be positive");
        assert!(!f.retryable);
        assert!(user_errors(&json!({"userErrors": []})).is_none());
        let f = user_errors(&json!({"userErrors": [{"field": null, "message": "Fulfillment order not found"}]})).unwrap();
        assert_eq!((f.field, f.message.as_str()), (None, "Fulfillment order not found"));
    }

    #[test]
    fn errors_as_a_string_or_a_list() {
        let e = parse_errors(&json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}));
        assert_eq!(e.len(), 1);
        let e = parse_errors(&json!({"errors": [{"message": "Field 'x' doesn't exist on type 'Shop'", "path": ["query Shop", "shop", "x"], "extensions": {"code": "undefinedField"}}]}));
        assert_eq!(e[0].to_string(), "undefinedField: Field 'x' doesn't exist on type 'Shop' (at query Shop.shop.x)");
        assert!(!CallError::Graphql { errors: e, data: Value::Null }.for_record(None).retryable);
    }
}
