//! Shopify shop connector over the Admin GraphQL API (version 2026-10 by default, configurable).
//!
//! Streams: products, prices (B2B price lists), stock (per location), customers (and trade customers as
//! companies) written; orders read (incrementally, or in one bulk operation for a full read); shipments
//! written once as fulfillments. See `docs/connectors/shopify.md` for the mapping and the options.
//!
//! Files: [`client`] (HTTP, token, rate budget, errors; every document is a file in `graphql/`),
//! [`budget`] (the leaky-bucket arithmetic), [`products`], [`stock`], [`customers`], [`prices`],
//! [`orders`], [`shipments`].

pub mod budget;
pub mod client;
mod customers;
pub mod orders;
mod prices;
mod products;
mod shipments;
mod stock;

pub use orders::translate as translate_order;

use async_trait::async_trait;
use budget::Plan;
use client::{Client, doc};
use ferry_engine::connector::parse_options;
use ferry_engine::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest, RetireMode,
    StreamCapability, WebhookAuth, WriteMode, WriteOutcome, WriteRecord,
};
use ferry_model::{Currency, Stream};
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

pub struct ShopifyFactory;

impl ConnectorFactory for ShopifyFactory {
    fn name(&self) -> &'static str {
        "shopify"
    }
    fn env_secrets(&self) -> &'static [(&'static str, &'static str)] {
        &[("access_token", "access_token_env")]
    }
    fn summary(&self) -> &'static str {
        "Shopify shop (Admin GraphQL API 2026-10): products, prices, stock, customers out; orders in; fulfillments back"
    }
    fn build(&self, options: &Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let options: Options = parse_options(options, ctx)?;
        Ok(Arc::new(Shopify::new(options, &ctx.connection)?))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The shop's domain, e.g. `example.myshopify.com`.
    pub shop: String,
    /// Where the Admin API is served; default `https://{shop}` (tests point it at the emulator).
    pub base_url: Option<String>,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The Admin API access token of the custom app; prefer `access_token_env`.
    pub access_token: Option<String>,
    #[serde(default = "default_token_env")]
    pub access_token_env: String,
    /// The shop's plan: the rate budget's first guess (the first answer's throttle status replaces it).
    #[serde(default)]
    pub plan: Plan,
    /// Share of the bucket kept free (for other apps' share of nothing, and estimates that were low).
    #[serde(default = "default_reserve")]
    pub budget_reserve: f64,
    /// Canonical stock location → Shopify location name; `default` (and any unmapped location) maps to
    /// `default_location`, or the shop's first location.
    #[serde(default)]
    pub locations: BTreeMap<String, String>,
    pub default_location: Option<String>,
    /// Incremental reads re-read this many seconds before the checkpoint (Shopify's search index lags
    /// behind writes by a few seconds).
    #[serde(default = "default_overlap")]
    pub overlap_seconds: i64,
    /// Orders per page. The requested (worst-case) cost of the Orders query is about 210 + 10 × lines
    /// points per order, and Shopify refuses a single query above 1,000 points: 2 orders with 20 lines
    /// each fit. (The actual cost, what the bucket is charged, is far lower for small orders.) An order
    /// with more lines has the rest read 50 at a time.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    #[serde(default = "default_lines")]
    pub lines_per_order: usize,
    /// A full read (no checkpoint) runs one bulk operation instead of paging.
    #[serde(default = "default_true")]
    pub bulk_full_read: bool,
    /// Put before each order's name to make the canonical order number (`EU-` → `EU-#1001`), for several
    /// shops feeding one ERP (every shop's names start at #1001).
    #[serde(default)]
    pub order_prefix: String,
    /// Shopify e-mails the buyer when a fulfillment is created.
    #[serde(default)]
    pub notify_customer: bool,
    /// Namespace of the metafields Ferry writes (custom fields, shipment numbers on orders).
    #[serde(default = "default_namespace")]
    pub metafield_namespace: String,
    /// Customer groups whose customers are trade (B2B) customers: written as a company with the person
    /// as its contact. Empty: every customer with a company name.
    #[serde(default)]
    pub trade_groups: Vec<String>,
    /// Write B2B customers as companies at all (needs Shopify Plus / B2B).
    #[serde(default = "default_true")]
    pub companies: bool,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Seconds between polls of a bulk operation.
    #[serde(default = "default_bulk_poll")]
    pub bulk_poll_seconds: u64,
    /// A products write batch of at least this many Shopify products (one per group) is written with one
    /// bulk mutation (`bulkOperationRunMutation` of productSet) instead of one productSet per product:
    /// a few points of the rate budget for the whole batch instead of about 20 per product. 0: never.
    /// Takes effect when the flow's `batch_size` is at least this large (the connector's default is 50).
    #[serde(default = "default_bulk_write_threshold")]
    pub bulk_write_threshold: usize,
}

fn default_api_version() -> String {
    "2026-10".into()
}
fn default_token_env() -> String {
    "SHOPIFY_ACCESS_TOKEN".into()
}
fn default_reserve() -> f64 {
    0.1
}
fn default_overlap() -> i64 {
    300
}
fn default_page_size() -> usize {
    2
}
fn default_lines() -> usize {
    20
}
fn default_true() -> bool {
    true
}
fn default_namespace() -> String {
    "ferry".into()
}
fn default_timeout() -> u64 {
    60
}
fn default_bulk_poll() -> u64 {
    2
}
fn default_bulk_write_threshold() -> usize {
    200
}

/// What the shop says about itself (read once).
#[derive(Clone, Debug)]
pub struct ShopInfo {
    pub name: String,
    pub currency: Currency,
    pub domain: String,
    pub taxes_included: bool,
}

pub struct Shopify {
    pub(crate) options: Options,
    pub(crate) client: Client,
    shop: OnceCell<ShopInfo>,
    /// Location name → id.
    locations: OnceCell<Vec<(String, String)>>,
    /// Caches of ids that rarely change: collections by title, declared metafield keys.
    pub(crate) collections: Mutex<HashMap<String, String>>,
    pub(crate) metafield_keys: Mutex<Option<std::collections::HashSet<String>>>,
    /// Price list name → its price list and catalog.
    pub(crate) price_lists: Mutex<HashMap<String, prices::Catalog>>,
}

impl Shopify {
    pub fn new(options: Options, connection: &str) -> Result<Self, ConnectorError> {
        let base = options.base_url.clone().unwrap_or_else(|| format!("https://{}", options.shop));
        let endpoint = format!("{}/admin/api/{}/graphql.json", base.trim_end_matches('/'), options.api_version);
        let token = match &options.access_token {
            Some(t) => t.clone(),
            None => std::env::var(&options.access_token_env).map_err(|_| {
                ConnectorError::config(
                    format!("connection {connection}"),
                    format!("no access token: set option `access_token` or the environment variable {}", options.access_token_env),
                )
            })?,
        };
        let client = Client::new(endpoint, token, options.plan, options.budget_reserve, Duration::from_secs(options.timeout_seconds))?;
        Ok(Shopify {
            options,
            client,
            shop: OnceCell::new(),
            locations: OnceCell::new(),
            collections: Mutex::new(HashMap::new()),
            metafield_keys: Mutex::new(None),
            price_lists: Mutex::new(HashMap::new()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.client.endpoint
    }

    /// HTTP requests so far, `THROTTLED` answers so far, query-cost points spent.
    pub fn api_usage(&self) -> (u64, u64, u64) {
        (self.client.calls(), self.client.throttled(), self.client.points_spent())
    }

    /// Requests, query-cost points and request time per GraphQL operation so far (benchmarks).
    pub fn api_usage_by_operation(&self) -> Vec<(&'static str, client::OperationUsage)> {
        self.client.usage_by_operation()
    }

    pub(crate) async fn shop(&self) -> Result<&ShopInfo, ConnectorError> {
        self.shop
            .get_or_try_init(|| async {
                let data = self.client.query(doc::SHOP, json!({})).await?;
                let s = &data["shop"];
                let currency = Currency::parse(s["currencyCode"].as_str().unwrap_or_default())
                    .map_err(|e| ConnectorError::permanent(self.endpoint(), format!("shop currency: {e}")))?;
                Ok(ShopInfo {
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    currency,
                    domain: s["myshopifyDomain"].as_str().unwrap_or_default().to_owned(),
                    taxes_included: s["taxesIncluded"] == json!(true),
                })
            })
            .await
    }

    /// The shop's active locations, (name, id), in Shopify's order.
    pub(crate) async fn locations(&self) -> Result<&Vec<(String, String)>, ConnectorError> {
        self.locations
            .get_or_try_init(|| async {
                let mut out = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let data = self.client.query(doc::LOCATIONS, json!({"first": 100, "after": after})).await?;
                    for l in data.pointer("/locations/nodes").and_then(Value::as_array).into_iter().flatten() {
                        if l["isActive"] != json!(false) {
                            out.push((l["name"].as_str().unwrap_or_default().to_owned(), l["id"].as_str().unwrap_or_default().to_owned()));
                        }
                    }
                    let page = data.pointer("/locations/pageInfo").cloned().unwrap_or(Value::Null);
                    after = page["endCursor"].as_str().map(str::to_owned);
                    if page["hasNextPage"] != json!(true) || after.is_none() {
                        break;
                    }
                }
                Ok(out)
            })
            .await
    }

    /// The Shopify location id of a canonical location (see [`Options::locations`]).
    pub(crate) async fn location_id(&self, canonical: &str) -> Result<Result<String, String>, ConnectorError> {
        let locations = self.locations().await?;
        let wanted = self.options.locations.get(canonical).or(self.options.default_location.as_ref());
        Ok(match wanted {
            Some(name) => locations.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, id)| id.clone()).ok_or_else(|| {
                let known = locations.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
                format!("no Shopify location named {name:?} (for stock location {canonical:?}; the shop has: {known})")
            }),
            None => locations.first().map(|(_, id)| id.clone()).ok_or_else(|| "the shop has no active location".to_owned()),
        })
    }

    /// Variants by SKU: sku → variant JSON (id, price, inventoryItem {id}, product {id handle}).
    pub(crate) async fn variants_by_sku(&self, skus: &[String]) -> Result<HashMap<String, Value>, ConnectorError> {
        let mut out = HashMap::new();
        for chunk in skus.chunks(50) {
            let query = chunk.iter().map(|s| format!("sku:\"{}\"", s.replace(['"', '\\'], ""))).collect::<Vec<_>>().join(" OR ");
            let data = self.client.query(doc::VARIANTS_BY_SKU, json!({"query": query, "first": 2 * chunk.len()})).await?;
            for v in data.pointer("/productVariants/nodes").and_then(Value::as_array).into_iter().flatten() {
                // the search matches terms; keep exact SKUs only
                if let Some(sku) = v["sku"].as_str()
                    && chunk.iter().any(|s| s == sku)
                {
                    out.insert(sku.to_owned(), v.clone());
                }
            }
        }
        Ok(out)
    }

    /// Subscribes `uri` (Ferry's `POST /hooks/{connection}`) to the topics [`webhook_signals`] reads
    /// (JSON payloads, signed with the app's secret). Returns the ids of the subscriptions created (a topic
    /// already subscribed for `uri` is left as it is).
    pub async fn subscribe_webhooks(&self, uri: &str) -> Result<Vec<String>, ConnectorError> {
        let mut ids = Vec::new();
        for topic in WEBHOOK_TOPICS {
            let data = self.client.query(doc::WEBHOOK_SUBSCRIPTION_CREATE, json!({"topic": topic, "webhookSubscription": {"uri": uri, "format": "JSON"}})).await?;
            let payload = &data["webhookSubscriptionCreate"];
            // "Address for this topic has already been taken": subscribed before
            if let Some(f) = client::user_errors(payload).filter(|f| !f.message.contains("already been taken")) {
                return Err(ConnectorError::permanent(self.endpoint(), format!("webhook subscription {topic}: {}", f.message)));
            }
            ids.extend(payload.pointer("/webhookSubscription/id").and_then(Value::as_str).map(str::to_owned));
        }
        Ok(ids)
    }

    /// Runs a bulk query (`text` is the document) and returns its JSONL result. Shopify runs one bulk
    /// query per app and shop at a time: while another runs, this one waits its turn.
    pub(crate) async fn run_bulk_query(&self, text: &str) -> Result<String, ConnectorError> {
        let mut waited = 0u64;
        let payload = loop {
            let data = self.client.query(doc::BULK_OPERATION_RUN_QUERY, json!({"query": text})).await?;
            let payload = data["bulkOperationRunQuery"].clone();
            let busy = payload["userErrors"].as_array().into_iter().flatten().any(|e| e["code"] == "OPERATION_IN_PROGRESS");
            if busy && waited < 600 {
                let pause = self.options.bulk_poll_seconds.max(1);
                tokio::time::sleep(Duration::from_secs(pause)).await;
                waited += pause;
                continue;
            }
            if let Some(f) = client::user_errors(&payload) {
                return Err(ConnectorError::permanent(self.endpoint(), format!("bulk operation refused: {}", f.message)));
            }
            break payload;
        };
        let id = payload.pointer("/bulkOperation/id").and_then(Value::as_str).ok_or_else(|| ConnectorError::permanent(self.endpoint(), "bulk operation started without an id"))?.to_owned();
        self.bulk_result(&id).await
    }

    /// Runs `mutation` (a document's text) once per line of `jsonl` (its variables, one JSON object a
    /// line) as a bulk mutation: staged upload of the file, `bulkOperationRunMutation`, polling; returns
    /// the result JSONL (one line per input line, with `__lineNumber`). Waits while another bulk mutation
    /// of the app runs (Shopify runs a limited number at a time).
    pub(crate) async fn run_bulk_mutation(&self, mutation: &str, jsonl: String) -> Result<String, ConnectorError> {
        let staged_path = self.stage_upload(jsonl).await?;
        let mut waited = 0u64;
        let payload = loop {
            let variables = json!({"mutation": mutation, "stagedUploadPath": staged_path, "clientIdentifier": "ferry-products"});
            let data = self.client.query(doc::BULK_OPERATION_RUN_MUTATION, variables).await?;
            let payload = data["bulkOperationRunMutation"].clone();
            let busy = payload["userErrors"].as_array().into_iter().flatten().any(|e| matches!(e["code"].as_str(), Some("OPERATION_IN_PROGRESS" | "LIMIT_REACHED")));
            if busy && waited < 600 {
                let pause = self.options.bulk_poll_seconds.max(1);
                tokio::time::sleep(Duration::from_secs(pause)).await;
                waited += pause;
                continue;
            }
            if let Some(f) = client::user_errors(&payload) {
                return Err(ConnectorError::permanent(self.endpoint(), format!("bulk mutation refused: {}{}", f.field.map(|f| format!("{f}: ")).unwrap_or_default(), f.message)));
            }
            break payload;
        };
        let id = payload.pointer("/bulkOperation/id").and_then(Value::as_str).ok_or_else(|| ConnectorError::permanent(self.endpoint(), "bulk mutation started without an id"))?.to_owned();
        self.bulk_result(&id).await
    }

    /// Uploads a bulk mutation's variables (JSONL) to a staged upload target, as a multipart form POST of
    /// the target's parameters and then the file (what Shopify's targets, S3-like, expect); returns the
    /// `stagedUploadPath` (the `key` parameter).
    async fn stage_upload(&self, jsonl: String) -> Result<String, ConnectorError> {
        let input = json!([{"resource": "BULK_MUTATION_VARIABLES", "filename": "ferry-products.jsonl", "mimeType": "text/jsonl", "httpMethod": "POST"}]);
        let data = self.client.query(doc::STAGED_UPLOADS_CREATE, json!({"input": input})).await?;
        let payload = &data["stagedUploadsCreate"];
        if let Some(f) = client::user_errors(payload) {
            return Err(ConnectorError::permanent(self.endpoint(), format!("staged upload refused: {}", f.message)));
        }
        let target = payload.pointer("/stagedTargets/0").filter(|t| !t.is_null()).ok_or_else(|| ConnectorError::permanent(self.endpoint(), "stagedUploadsCreate gave no target"))?;
        let url = target["url"].as_str().ok_or_else(|| ConnectorError::permanent(self.endpoint(), "staged upload target without a url"))?.to_owned();
        let parameters: Vec<(String, String)> = target["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["value"].as_str()?.to_owned())))
            .collect();
        let key = parameters.iter().find(|(n, _)| n == "key").map(|(_, v)| v.clone()).ok_or_else(|| ConnectorError::permanent(&url, "staged upload target without a `key` parameter"))?;
        let boundary = format!("ferry-{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default());
        let body = multipart_form(&boundary, &parameters, "ferry-products.jsonl", "text/jsonl", jsonl.as_bytes());
        let resp = reqwest::Client::new()
            .post(&url)
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .timeout(Duration::from_secs(self.options.timeout_seconds.max(60)))
            .body(body)
            .send()
            .await
            .map_err(|e| ConnectorError::transient(&url, format!("staged upload: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let e = format!("staged upload: HTTP {status}: {}", text.chars().take(300).collect::<String>());
            return Err(if status.is_server_error() { ConnectorError::transient(&url, e) } else { ConnectorError::permanent(&url, e) });
        }
        Ok(key)
    }

    /// Polls bulk operation `id` until it ends; its result JSONL (empty when it produced no objects).
    async fn bulk_result(&self, id: &str) -> Result<String, ConnectorError> {
        loop {
            let data = self.client.query(doc::BULK_OPERATION, json!({"id": id})).await?;
            let op = &data["node"];
            match op["status"].as_str().unwrap_or_default() {
                "COMPLETED" => {
                    let Some(url) = op["url"].as_str() else {
                        return Ok(String::new()); // no objects: Shopify gives no file
                    };
                    return self.download(url).await;
                }
                "CREATED" | "RUNNING" => tokio::time::sleep(Duration::from_secs(self.options.bulk_poll_seconds.max(1))).await,
                other => {
                    let code = op["errorCode"].as_str().unwrap_or("no error code");
                    let message = format!("bulk operation {id} ended {other} ({code})");
                    // Shopify's INTERNAL_SERVER_ERROR and TIMEOUT (and a cancelled or expired run) may pass
                    // when run again — a product write's productSet by handle is safe to repeat; a token
                    // without the scope will not.
                    return Err(if code == "ACCESS_DENIED" { ConnectorError::permanent(self.endpoint(), message) } else { ConnectorError::transient(self.endpoint(), message) });
                }
            }
        }
    }

    async fn download(&self, url: &str) -> Result<String, ConnectorError> {
        let resp = reqwest::get(url).await.map_err(|e| ConnectorError::transient(url, format!("bulk result download: {e}")))?;
        if !resp.status().is_success() {
            return Err(ConnectorError::transient(url, format!("bulk result download: HTTP {}", resp.status())));
        }
        resp.text().await.map_err(|e| ConnectorError::transient(url, format!("bulk result download: {e}")))
    }
}

#[async_trait]
impl Connector for Shopify {
    fn describe(&self) -> Description {
        let cap = |stream, read, write, find_by_key, retire: Vec<RetireMode>| StreamCapability { stream, read, write, find_by_key, retire };
        Description {
            name: "shopify",
            summary: "Shopify shop (Admin GraphQL API)",
            config_schema: json!({
                "type": "object",
                "required": ["shop"],
                "properties": {
                    "shop": {"type": "string", "description": "e.g. example.myshopify.com"},
                    "base_url": {"type": "string", "description": "default https://{shop}"},
                    "api_version": {"type": "string", "default": "2026-10"},
                    "access_token": {"type": "string"},
                    "access_token_env": {"type": "string", "default": "SHOPIFY_ACCESS_TOKEN"},
                    "plan": {"enum": ["standard", "advanced", "plus", "enterprise"], "default": "standard"},
                    "budget_reserve": {"type": "number", "default": 0.1},
                    "locations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "default_location": {"type": "string"},
                    "overlap_seconds": {"type": "integer", "default": 300},
                    "page_size": {"type": "integer", "default": 2},
                    "lines_per_order": {"type": "integer", "default": 20},
                    "bulk_full_read": {"type": "boolean", "default": true},
                    "order_prefix": {"type": "string", "default": ""},
                    "notify_customer": {"type": "boolean", "default": false},
                    "metafield_namespace": {"type": "string", "default": "ferry"},
                    "trade_groups": {"type": "array", "items": {"type": "string"}},
                    "companies": {"type": "boolean", "default": true},
                    "timeout_seconds": {"type": "integer", "default": 60},
                    "bulk_poll_seconds": {"type": "integer", "default": 2},
                    "bulk_write_threshold": {"type": "integer", "default": 200, "description": "products per write batch from which productSet runs as one bulk mutation; 0 never"}
                }
            }),
            streams: vec![
                cap(Stream::Products, None, Some(WriteMode::Upsert), false, vec![RetireMode::Deactivate]),
                cap(Stream::Prices, None, Some(WriteMode::Upsert), false, Vec::new()),
                cap(Stream::Stock, None, Some(WriteMode::Upsert), false, Vec::new()),
                cap(Stream::Customers, None, Some(WriteMode::Upsert), false, Vec::new()),
                cap(Stream::Orders, Some(ReadMode::Incremental), None, false, Vec::new()),
                cap(Stream::Shipments, None, Some(WriteMode::CreateOnce), true, Vec::new()),
            ],
            // productSet and customerSet take one record per call; stock goes in one call per batch
            batch_size: 50,
            webhooks: true,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let shop = self.shop().await?;
        let locations = self.locations().await?;
        let (_, _, spent) = self.api_usage();
        Ok(CheckReport {
            ok: true,
            details: vec![
                format!("shop {} ({}) at {}: currency {}, prices {} tax", shop.name, shop.domain, self.endpoint(), shop.currency, if shop.taxes_included { "include" } else { "exclude" }),
                format!("locations: {}", locations.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")),
                format!("rate budget: plan {:?}, {spent} points spent so far", self.options.plan),
            ],
        })
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        match request.stream() {
            Stream::Orders => orders::read(self, request),
            other => {
                let endpoint = self.endpoint().to_owned();
                Box::pin(futures::stream::once(async move { Err(ConnectorError::config(endpoint, format!("shopify cannot read stream {other}"))) }))
            }
        }
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let keys: Vec<String> = batch.iter().map(|r| r.key.clone()).collect();
        let outcomes = match stream {
            Stream::Products => products::write(self, batch).await,
            Stream::Stock => stock::write(self, batch).await,
            Stream::Customers => customers::write(self, batch).await,
            Stream::Prices => prices::write(self, batch).await,
            Stream::Shipments => shipments::write(self, batch).await,
            Stream::Orders => Err(ConnectorError::config(self.endpoint(), "shopify does not take orders as writes (orders are read)")),
        }?;
        Ok(in_batch_order(&keys, outcomes))
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        match stream {
            Stream::Shipments => shipments::find_by_key(self, keys).await,
            other => Err(ConnectorError::config(self.endpoint(), format!("shopify cannot look up {other} by key"))),
        }
    }

    async fn retire(&self, stream: Stream, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match (stream, mode) {
            (Stream::Products, RetireMode::Deactivate) => products::retire(self, items).await,
            _ => Err(ConnectorError::config(self.endpoint(), format!("shopify cannot retire {stream} by {mode:?}"))),
        }
    }

    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        let prefix = &self.options.order_prefix;
        let mut signals = webhook_signals(body);
        // names get the prefix; a bare id (refunds) is searched as is
        for (stream, keys) in &mut signals {
            if *stream == Stream::Orders && !prefix.is_empty() {
                keys.iter_mut().filter(|k| !k.bytes().all(|b| b.is_ascii_digit())).for_each(|k| *k = format!("{prefix}{k}"));
            }
        }
        signals
    }

    /// Shopify signs with `X-Shopify-Hmac-Sha256` and names deliveries by `X-Shopify-Webhook-Id`.
    fn webhook_auth(&self) -> WebhookAuth {
        WebhookAuth::Shopify
    }
}

/// The webhook topics whose payloads name records (see [`webhook_signals`]).
pub const WEBHOOK_TOPICS: [&str; 5] = ["ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_CANCELLED", "REFUNDS_CREATE", "PRODUCTS_UPDATE"];

/// What one of Shopify's webhook payloads (REST-shaped JSON; the topic is a header, so it is told apart
/// by its shape) names:
/// - an order (orders/create, orders/updated, orders/cancelled): `name` (`#1001`, the canonical order
///   number) → that order;
/// - a refund (refunds/create): `order_id` → that order, by id (the order read searches `id:N`);
/// - a product (products/update): the SKUs of its `variants` → those products.
///
/// Anything else (fulfillments, customers…) signals nothing; the scheduled read still covers it.
pub fn webhook_signals(body: &Value) -> Vec<(Stream, Vec<String>)> {
    let is_order = body.get("line_items").is_some() && body.get("order_number").is_some();
    if is_order && let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) {
        return vec![(Stream::Orders, vec![name.to_owned()])];
    }
    if body.get("refund_line_items").is_some() || body.get("transactions").is_some() && body.get("order_id").is_some() {
        let id = match &body["order_id"] {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        return id.map(|id| vec![(Stream::Orders, vec![id])]).unwrap_or_default();
    }
    if let Some(variants) = body.get("variants").and_then(Value::as_array)
        && body.get("handle").is_some()
    {
        let skus: Vec<String> = variants.iter().filter_map(|v| v["sku"].as_str()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if !skus.is_empty() {
            return vec![(Stream::Products, skus)];
        }
    }
    Vec::new()
}

/// Outcomes in the order of the batch's keys (writes group records by product, location or price list).
pub(crate) fn in_batch_order(keys: &[String], mut outcomes: Vec<WriteOutcome>) -> Vec<WriteOutcome> {
    let position: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).rev().collect();
    outcomes.sort_by_key(|o| position.get(o.key.as_str()).copied().unwrap_or(usize::MAX));
    outcomes
}

/// A `multipart/form-data` body: the fields in order, then the file (S3-style POST policies want the
/// file last).
fn multipart_form(boundary: &str, fields: &[(String, String)], filename: &str, content_type: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// A URL-safe handle: lower-case ASCII letters and digits, other runs become one `-`.
pub(crate) fn handle(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_payloads_name_orders_refunds_and_products() {
        let order = json!({"id": 820982911946154508u64, "admin_graphql_api_id": "gid://shopify/Order/820982911946154508", "name": "#1001", "order_number": 1001, "line_items": []});
        assert_eq!(webhook_signals(&order), vec![(Stream::Orders, vec!["#1001".to_owned()])]);
        let refund = json!({"id": 5, "order_id": 820982911946154508u64, "refund_line_items": [], "transactions": []});
        assert_eq!(webhook_signals(&refund), vec![(Stream::Orders, vec!["820982911946154508".to_owned()])]);
        let product = json!({"id": 1, "handle": "tee", "variants": [{"sku": "TEE-S"}, {"sku": ""}, {"sku": "TEE-M"}]});
        assert_eq!(webhook_signals(&product), vec![(Stream::Products, vec!["TEE-S".to_owned(), "TEE-M".to_owned()])]);
        for other in [json!({"id": 1, "tracking_number": "X", "order_id": 3}), json!({"email": "a@b.c", "addresses": []}), json!({})] {
            assert!(webhook_signals(&other).is_empty(), "{other}");
        }
    }

    #[test]
    fn deliveries_are_verified_the_shopify_way() {
        let options: Options = serde_json::from_value(json!({"shop": "x.myshopify.com", "access_token": "t"})).unwrap();
        let s = Shopify::new(options, "shop").unwrap();
        assert_eq!(s.webhook_auth(), WebhookAuth::Shopify);
        assert_eq!(s.webhook_auth().delivery_header(), "x-shopify-webhook-id");
    }

    #[test]
    fn a_missing_token_is_a_config_error_naming_the_variable() {
        let options: Options = serde_json::from_value(json!({"shop": "x.myshopify.com", "access_token_env": "FERRY_TEST_SURELY_UNSET_TOKEN"})).unwrap();
        let err = Shopify::new(options, "shop").err().unwrap();
        assert_eq!(err.kind, ferry_engine::ErrorKind::Config);
        assert!(err.message.contains("FERRY_TEST_SURELY_UNSET_TOKEN"), "{err}");
    }

    #[test]
    fn the_endpoint_is_the_versioned_admin_api() {
        let options: Options = serde_json::from_value(json!({"shop": "x.myshopify.com", "access_token": "t"})).unwrap();
        assert_eq!(Shopify::new(options, "shop").unwrap().endpoint(), "https://x.myshopify.com/admin/api/2026-10/graphql.json");
        let options: Options = serde_json::from_value(json!({"shop": "x.myshopify.com", "access_token": "t", "base_url": "http://127.0.0.1:18400/", "api_version": "2026-07"})).unwrap();
        assert_eq!(Shopify::new(options, "shop").unwrap().endpoint(), "http://127.0.0.1:18400/admin/api/2026-07/graphql.json");
    }

    #[tokio::test]
    async fn an_unreachable_shop_is_a_transient_error_naming_the_endpoint() {
        let options: Options = serde_json::from_value(json!({"shop": "x", "base_url": "http://127.0.0.1:9", "access_token": "t", "timeout_seconds": 5})).unwrap();
        let s = Shopify::new(options, "test").unwrap();
        let err = s.check().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.endpoint, "http://127.0.0.1:9/admin/api/2026-10/graphql.json");
    }

    #[test]
    fn the_staged_upload_form_has_the_fields_then_the_file() {
        let fields = vec![("key".to_owned(), "tmp/1/f.jsonl".to_owned()), ("Content-Type".to_owned(), "text/jsonl".to_owned())];
        let body = String::from_utf8(multipart_form("B", &fields, "f.jsonl", "text/jsonl", b"{\"a\":1}\n")).unwrap();
        assert_eq!(
            body,
            "--B\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\ntmp/1/f.jsonl\r\n--B\r\nContent-Disposition: form-data; name=\"Content-Type\"\r\n\r\ntext/jsonl\r\n\
             --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.jsonl\"\r\nContent-Type: text/jsonl\r\n\r\n{\"a\":1}\n\r\n--B--\r\n"
        );
    }

    #[test]
    fn handles() {
        assert_eq!(handle("Garden / Tools & Spades"), "garden-tools-spades");
        assert_eq!(handle("--T-Shirt (Blue)--"), "t-shirt-blue");
    }
}
