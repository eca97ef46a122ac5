//! Vendure (3.x) shop connector over the Admin GraphQL API.
//!
//! Streams: products, stock, customers, prices (written), orders (read incrementally), shipments
//! (written once). See `docs/connectors/vendure.md` for the field mapping and the options.
//!
//! Files: [`gql`] (HTTP / GraphQL / auth / error mapping), [`products`], [`stock`], [`customers`],
//! [`prices`], [`orders`], [`shipments`]. Shared lookups (channel, tax rates, SKUs) live here.

pub mod gql;
mod customers;
mod orders;
mod prices;
mod products;
mod shipments;
mod stock;

/// Vendure's order answer → canonical order (public for the fuzz targets in `fuzz/`).
pub use orders::translate as translate_order;

use async_trait::async_trait;
use ferry_engine::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest,
    RecordFailure, StreamCapability, WriteMode, WriteOutcome, WriteRecord,
};
use ferry_engine::connector::parse_options;
use ferry_model::{Currency, Price, Stream};
use futures::stream::BoxStream;
use gql::Gql;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

pub struct VendureFactory;

impl ConnectorFactory for VendureFactory {
    fn name(&self) -> &'static str {
        "vendure"
    }
    fn env_secrets(&self) -> &'static [(&'static str, &'static str)] {
        &[("password", "password_env")]
    }
    fn summary(&self) -> &'static str {
        "Vendure 3.x shop (Admin GraphQL API): products, prices, stock, customers out; orders in; shipments back"
    }
    fn build(&self, options: &Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let options: Options = parse_options(options, ctx)?;
        Ok(Arc::new(Vendure::new(options, &ctx.connection)?))
    }
}

/// Which canonical stock quantity becomes Vendure's `stockOnHand`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockQuantity {
    /// `on_hand`: Vendure then subtracts its own allocations (unshipped orders) to get saleable stock.
    #[default]
    OnHand,
    /// `available` (falls back to `on_hand`): for ERPs that already subtract open orders / reservations;
    /// Vendure's own allocation is added back so it is not subtracted twice.
    Available,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Base URL of the Vendure server, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    #[serde(default = "default_admin_path")]
    pub admin_api_path: String,
    #[serde(default = "default_username")]
    pub username: String,
    /// The administrator's password; prefer `password_env`.
    pub password: Option<String>,
    /// Environment variable holding the password (used when `password` is absent).
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// Channel token (`vendure-token` header) for a non-default channel.
    pub channel_token: Option<String>,
    /// Language code of names and descriptions written.
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default)]
    pub stock_quantity: StockQuantity,
    /// Canonical stock location → Vendure stock location name. Unmapped locations use their own code as
    /// the name; `default` maps to the channel's first stock location.
    #[serde(default)]
    pub stock_locations: BTreeMap<String, String>,
    /// Order states that are read (past the cart stage).
    #[serde(default = "default_order_states")]
    pub order_states: Vec<String>,
    /// Incremental reads re-read this many seconds before the checkpoint (late commits, 1 s precision).
    #[serde(default = "default_overlap")]
    pub overlap_seconds: i64,
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Facet whose values hold the category paths.
    #[serde(default = "default_category_facet")]
    pub category_facet: String,
    /// Fulfilment handler: `ferry-fulfillment` (stores the shipment number, needed by find_by_key) as
    /// declared by Ferry's plugin (integrations/vendure-plugin), or `manual-fulfillment`.
    #[serde(default = "default_fulfillment_handler")]
    pub fulfillment_handler: String,
}

fn default_admin_path() -> String {
    "admin-api".into()
}
fn default_username() -> String {
    "superadmin".into()
}
fn default_password_env() -> String {
    "VENDURE_ADMIN_PASSWORD".into()
}
fn default_language() -> String {
    "en".into()
}
fn default_order_states() -> Vec<String> {
    ["PaymentAuthorized", "PaymentSettled", "PartiallyShipped", "Shipped", "PartiallyDelivered", "Delivered", "Cancelled"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_overlap() -> i64 {
    120
}
fn default_page_size() -> usize {
    50
}
fn default_timeout() -> u64 {
    60
}
fn default_category_facet() -> String {
    "category".into()
}
fn default_fulfillment_handler() -> String {
    "ferry-fulfillment".into()
}

/// The active channel's money settings and the tax rates that apply in its default tax zone.
#[derive(Clone, Debug)]
pub struct Channel {
    pub code: String,
    pub currency: Currency,
    pub prices_include_tax: bool,
    pub default_tax_zone: Option<String>,
    /// Tax category name → (id, rate as a fraction) in the default tax zone.
    pub tax_categories: HashMap<String, (String, Decimal)>,
    pub default_tax_category: Option<String>,
}

impl Channel {
    /// The tax category (id, rate) for a canonical `tax_class` (by name, case-insensitive), or the default.
    pub fn tax_category(&self, class: Option<&str>) -> Result<(Option<String>, Decimal), RecordFailure> {
        if let Some(class) = class {
            return self
                .tax_categories
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(class))
                .map(|(_, (id, rate))| (Some(id.clone()), *rate))
                .ok_or_else(|| {
                    let known = self.tax_categories.keys().cloned().collect::<Vec<_>>().join(", ");
                    RecordFailure::permanent(Some("tax_class".into()), format!("no Vendure tax category named {class:?} (known: {known})"))
                });
        }
        let rate = self.default_tax_category.as_ref().and_then(|n| self.tax_categories.get(n)).map(|(_, r)| *r).unwrap_or_default();
        Ok((None, rate))
    }

    /// A canonical price as integer minor units in the channel's tax mode. Converts between net and
    /// gross with `rate` when the flags differ (rounded to the cent, commercial rounding); otherwise the
    /// amount must already be exact in minor units (no silent rounding of 19.995).
    pub fn to_minor(&self, price: &Price, rate: Decimal, field: &str) -> Result<i64, RecordFailure> {
        let out_of_range = |amount: Decimal, rate: Decimal| {
            RecordFailure::permanent(Some(format!("{field}.amount")), format!("{amount} at tax rate {rate} is out of range"))
        };
        if price.currency != self.currency {
            return Err(RecordFailure::permanent(
                Some(format!("{field}.currency")),
                format!("price is in {} but Vendure channel {} sells in {}", price.currency, self.code, self.currency),
            ));
        }
        let amount = match (price.tax_inclusive, self.prices_include_tax) {
            (a, b) if a == b => {
                if price.amount.normalize().scale() > self.currency.minor_units() {
                    return Err(RecordFailure::permanent(
                        Some(format!("{field}.amount")),
                        format!("{} has more decimals than {} allows", price.amount, self.currency),
                    ));
                }
                price.amount
            }
            (true, false) => price.net(rate).ok_or_else(|| out_of_range(price.amount, rate))?,
            (false, true) => price.gross(rate).ok_or_else(|| out_of_range(price.amount, rate))?,
            _ => unreachable!(),
        };
        self.currency
            .to_minor(amount)
            .ok_or_else(|| RecordFailure::permanent(Some(format!("{field}.amount")), format!("{amount} is out of range")))
    }
}

pub struct Vendure {
    pub(crate) options: Options,
    pub(crate) gql: Gql,
    channel: OnceCell<Channel>,
    /// Caches of ids that rarely change: facet values by code, customer groups by name, stock locations.
    pub(crate) facet_values: Mutex<HashMap<String, String>>,
    pub(crate) customer_groups: Mutex<HashMap<String, String>>,
    pub(crate) stock_locations: Mutex<Option<HashMap<String, String>>>,
}

impl Vendure {
    pub fn new(options: Options, connection: &str) -> Result<Self, ConnectorError> {
        let endpoint = format!("{}/{}", options.url.trim_end_matches('/'), options.admin_api_path.trim_matches('/'));
        let password = match &options.password {
            Some(p) => p.clone(),
            None => std::env::var(&options.password_env).map_err(|_| {
                ConnectorError::config(
                    format!("connection {connection}"),
                    format!("no password: set option `password` or the environment variable {}", options.password_env),
                )
            })?,
        };
        let gql = Gql::new(endpoint, options.username.clone(), password, options.channel_token.clone(), Duration::from_secs(options.timeout_seconds))?;
        Ok(Vendure {
            options,
            gql,
            channel: OnceCell::new(),
            facet_values: Mutex::new(HashMap::new()),
            customer_groups: Mutex::new(HashMap::new()),
            stock_locations: Mutex::new(None),
        })
    }

    /// API calls (HTTP requests) made so far.
    pub fn api_calls(&self) -> u64 {
        self.gql.calls()
    }

    /// Requests and time per GraphQL operation so far.
    pub fn api_timings(&self) -> Vec<(String, u64, Duration)> {
        self.gql.timings()
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.gql.endpoint
    }

    pub(crate) async fn channel(&self) -> Result<&Channel, ConnectorError> {
        self.channel.get_or_try_init(|| self.load_channel()).await
    }

    async fn load_channel(&self) -> Result<Channel, ConnectorError> {
        let data = self
            .gql
            .query(
                "{ activeChannel { code defaultCurrencyCode pricesIncludeTax defaultTaxZone { id name } }
                   taxRates(options:{take:1000}) { items { enabled value category { id name isDefault } zone { id } } } }",
                json!({}),
            )
            .await?;
        let ch = &data["activeChannel"];
        let currency_code = ch["defaultCurrencyCode"].as_str().unwrap_or_default();
        let currency = Currency::parse(currency_code).map_err(|e| ConnectorError::permanent(self.endpoint(), format!("channel currency: {e}")))?;
        let zone = ch.pointer("/defaultTaxZone/id").and_then(Value::as_str).map(str::to_owned);
        let mut tax_categories = HashMap::new();
        let mut default_tax_category = None;
        for r in data.pointer("/taxRates/items").and_then(Value::as_array).into_iter().flatten() {
            if r["enabled"] != json!(true) || r.pointer("/zone/id").and_then(Value::as_str) != zone.as_deref() {
                continue;
            }
            let name = r.pointer("/category/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let id = r.pointer("/category/id").and_then(Value::as_str).unwrap_or_default().to_owned();
            // Vendure keeps rates as a float percentage (10 → 10 %); read its decimal text, not via f64 maths.
            let pct = Decimal::from_str_exact(&r["value"].to_string()).unwrap_or_default();
            if r.pointer("/category/isDefault") == Some(&json!(true)) {
                default_tax_category = Some(name.clone());
            }
            tax_categories.insert(name, (id, pct / Decimal::ONE_HUNDRED));
        }
        Ok(Channel {
            code: ch["code"].as_str().unwrap_or_default().to_owned(),
            currency,
            prices_include_tax: ch["pricesIncludeTax"] == json!(true),
            default_tax_zone: ch.pointer("/defaultTaxZone/name").and_then(Value::as_str).map(str::to_owned),
            tax_categories,
            default_tax_category,
        })
    }

    /// The Vendure id of the variant with this SKU.
    pub async fn variant_id(&self, sku: &str) -> Result<Option<String>, ConnectorError> {
        let found = self.variants_by_sku(&[sku.to_owned()], "").await?;
        Ok(found.get(sku).and_then(|v| v["id"].as_str()).map(str::to_owned))
    }

    /// Variants by SKU: sku → variant JSON with the fields in `selection`.
    pub(crate) async fn variants_by_sku(&self, skus: &[String], selection: &str) -> Result<HashMap<String, Value>, ConnectorError> {
        let mut out = HashMap::new();
        for chunk in skus.chunks(100) {
            let q = format!(
                "query($s:[String!]!,$n:Int!){{ productVariants(options:{{filter:{{sku:{{in:$s}}}},take:$n}}){{ items {{ id sku {selection} }} }} }}"
            );
            let data = self.gql.query(&q, json!({"s": chunk, "n": chunk.len()})).await?;
            for v in data.pointer("/productVariants/items").and_then(Value::as_array).into_iter().flatten() {
                if let Some(sku) = v["sku"].as_str() {
                    out.insert(sku.to_owned(), v.clone());
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Connector for Vendure {
    fn describe(&self) -> Description {
        let cap = |stream, read, write, find_by_key| StreamCapability { stream, read, write, find_by_key, retire: Vec::new() };
        Description {
            name: "vendure",
            summary: "Vendure 3.x shop (Admin GraphQL API)",
            config_schema: json!({
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "description": "Base URL, e.g. http://127.0.0.1:3000"},
                    "admin_api_path": {"type": "string", "default": "admin-api"},
                    "username": {"type": "string", "default": "superadmin"},
                    "password": {"type": "string"},
                    "password_env": {"type": "string", "default": "VENDURE_ADMIN_PASSWORD"},
                    "channel_token": {"type": "string"},
                    "language": {"type": "string", "default": "en"},
                    "stock_quantity": {"enum": ["on_hand", "available"], "default": "on_hand"},
                    "stock_locations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "order_states": {"type": "array", "items": {"type": "string"}},
                    "overlap_seconds": {"type": "integer", "default": 120},
                    "page_size": {"type": "integer", "default": 50},
                    "timeout_seconds": {"type": "integer", "default": 60},
                    "category_facet": {"type": "string", "default": "category"},
                    "fulfillment_handler": {"type": "string", "default": "ferry-fulfillment"}
                }
            }),
            streams: vec![
                cap(Stream::Products, None, Some(WriteMode::Upsert), false),
                cap(Stream::Prices, None, Some(WriteMode::Upsert), false),
                cap(Stream::Stock, None, Some(WriteMode::Upsert), false),
                cap(Stream::Customers, None, Some(WriteMode::Upsert), false),
                cap(Stream::Orders, Some(ReadMode::Incremental), None, false),
                cap(Stream::Shipments, None, Some(WriteMode::CreateOnce), true),
            ],
            batch_size: 100,
            webhooks: true,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.gql.login().await?;
        let me = self.gql.query("{ me { identifier } }", json!({})).await?;
        let ch = self.channel().await?;
        let mut details = vec![
            format!("logged in to {} as {}", self.endpoint(), me.pointer("/me/identifier").and_then(Value::as_str).unwrap_or("?")),
            format!(
                "channel {}: currency {}, prices {} tax, default tax zone {}",
                ch.code,
                ch.currency,
                if ch.prices_include_tax { "include" } else { "exclude" },
                ch.default_tax_zone.as_deref().unwrap_or("(none)")
            ),
        ];
        let mut cats: Vec<_> = ch.tax_categories.iter().map(|(n, (_, r))| format!("{n} {}%", (r * Decimal::ONE_HUNDRED).normalize())).collect();
        cats.sort();
        details.push(format!("tax rates in the default zone: {}", if cats.is_empty() { "none".into() } else { cats.join(", ") }));
        Ok(CheckReport { ok: true, details })
    }

    /// The administrator's permissions in the connection's channel (`me.channels`), against what writing
    /// `stream` takes.
    async fn check_write(&self, stream: Stream) -> Result<Vec<String>, ConnectorError> {
        let needed = write_permissions(stream);
        if needed.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.gql.query("{ me { identifier channels { code token permissions } } }", json!({})).await?;
        let channels = me.pointer("/me/channels").and_then(Value::as_array).cloned().unwrap_or_default();
        let token = self.options.channel_token.as_deref();
        let channel = channels
            .iter()
            .find(|c| match token {
                Some(t) => c["token"].as_str() == Some(t),
                None => c["code"].as_str() == Some("__default_channel__"),
            })
            .or(channels.first());
        let granted: Vec<&str> = channel.and_then(|c| c["permissions"].as_array()).into_iter().flatten().filter_map(Value::as_str).collect();
        let user = me.pointer("/me/identifier").and_then(Value::as_str).unwrap_or("?");
        let missing = missing_permissions(&granted, needed);
        if !missing.is_empty() {
            return Err(ConnectorError::new(
                ferry_engine::ErrorKind::Auth,
                self.endpoint(),
                format!("administrator {user} may not write {stream}: needs {} in the channel", missing.join(", ")),
            ));
        }
        Ok(vec![format!("administrator {user} may write {stream}")])
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        match request.stream() {
            Stream::Orders => orders::read(self, request),
            other => {
                let endpoint = self.endpoint().to_owned();
                Box::pin(futures::stream::once(async move { Err(ConnectorError::config(endpoint, format!("vendure cannot read stream {other}"))) }))
            }
        }
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match stream {
            Stream::Products => products::write(self, batch).await,
            Stream::Stock => stock::write(self, batch).await,
            Stream::Customers => customers::write(self, batch).await,
            Stream::Prices => prices::write(self, batch).await,
            Stream::Shipments => shipments::write(self, batch).await,
            Stream::Orders => Err(ConnectorError::config(self.endpoint(), "vendure does not take orders as writes (orders are read)")),
        }
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        match stream {
            Stream::Shipments => shipments::find_by_key(self, keys).await,
            other => Err(ConnectorError::config(self.endpoint(), format!("vendure cannot look up {other} by key"))),
        }
    }

    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        webhook_signals(body, &self.options.order_states)
    }
}

/// What an event of Ferry's Vendure plugin (`@ferry/vendure-plugin`, integrations/vendure-plugin) names:
/// - `order.state` `{code, from, to}` → the order `code`, once it reaches a state orders are read in
///   (`order_states`: a cart moving through AddingItems / ArrangingPayment is not an order yet);
/// - `order.refund` `{code, refundId, …}` and `order.updated` `{code}` → the order `code`: Vendure 3.7
///   does not move an order's `updatedAt` when it is refunded or modified, so an incremental read cannot
///   see those changes; these events (or a `--full` read) bring them;
/// - `order.cancelled` `{code, lineId}` → the order `code`: units of a line were cancelled
///   (the order's lines change; a whole order cancelled is also an `order.state` to Cancelled);
/// - `variant.created|updated|deleted` `{skus}` → those products (the SKU is the product key).
///
/// `customer.*` events carry an email, but a customer's key is the ERP's customer code, so they name no
/// record; they, `product.*`, `stock.movement` and anything unknown signal nothing (the scheduled
/// reconcile still covers them). Vendure is read only for orders, so only order signals start syncs.
pub fn webhook_signals(body: &Value, order_states: &[String]) -> Vec<(Stream, Vec<String>)> {
    let kind = body["type"].as_str().unwrap_or_default();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    };
    match kind {
        "order.state" => {
            let placed = body["to"].as_str().is_some_and(|to| order_states.iter().any(|s| s == to));
            match body["code"].as_str().filter(|c| !c.is_empty()) {
                Some(code) if placed => vec![(Stream::Orders, vec![code.to_owned()])],
                _ => Vec::new(),
            }
        }
        "order.refund" | "order.updated" | "order.cancelled" => match body["code"].as_str().filter(|c| !c.is_empty()) {
            Some(code) => vec![(Stream::Orders, vec![code.to_owned()])],
            None => Vec::new(),
        },
        k if k.starts_with("variant.") => {
            let skus = strings(&body["skus"]);
            if skus.is_empty() { Vec::new() } else { vec![(Stream::Products, skus)] }
        }
        _ => Vec::new(),
    }
}

/// A URL-safe slug: lower-case ASCII letters and digits, other runs become one `-`.
pub(crate) fn slug(s: &str) -> String {
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

/// Minor units (as Vendure's JSON gives them) → decimal amount.
pub(crate) fn money(c: Currency, v: &Value) -> Option<Decimal> {
    v.as_i64().map(|m| c.from_minor(m))
}

/// What writing a stream takes in Vendure: each entry is satisfied by any one of its permissions
/// (Vendure has both the catalogue-wide and the product permissions).
fn write_permissions(stream: Stream) -> &'static [&'static [&'static str]] {
    match stream {
        Stream::Products => &[&["CreateCatalog", "CreateProduct"], &["UpdateCatalog", "UpdateProduct"]],
        Stream::Stock => &[&["UpdateCatalog", "UpdateProduct"]],
        Stream::Customers => &[&["CreateCustomer"], &["UpdateCustomer"]],
        Stream::Prices => &[&["CreatePromotion"], &["UpdatePromotion"]],
        Stream::Shipments => &[&["UpdateOrder"]],
        Stream::Orders => &[],
    }
}

/// The entries of `needed` that `granted` satisfies with none of their permissions (SuperAdmin has all).
fn missing_permissions(granted: &[&str], needed: &[&[&str]]) -> Vec<String> {
    if granted.contains(&"SuperAdmin") {
        return Vec::new();
    }
    needed.iter().filter(|any| !any.iter().any(|p| granted.contains(p))).map(|any| any.join(" or ")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_permissions_are_checked_per_stream_and_superadmin_has_all() {
        use super::{missing_permissions, write_permissions};
        use ferry_model::Stream;
        assert!(missing_permissions(&["SuperAdmin"], write_permissions(Stream::Prices)).is_empty());
        assert!(missing_permissions(&["UpdateProduct", "CreateProduct"], write_permissions(Stream::Products)).is_empty());
        assert_eq!(missing_permissions(&["ReadCatalog", "UpdateCatalog"], write_permissions(Stream::Products)), ["CreateCatalog or CreateProduct"]);
        assert_eq!(missing_permissions(&["ReadOrder"], write_permissions(Stream::Shipments)), ["UpdateOrder"]);
        assert!(write_permissions(Stream::Orders).is_empty(), "Vendure's orders are read, not written");
    }

    #[test]
    fn webhook_events_name_placed_orders_and_variant_skus() {
        use super::webhook_signals;
        use ferry_model::Stream;
        use serde_json::json;
        let states = super::default_order_states();
        let paid = json!({"type": "order.state", "at": "2026-01-01T00:00:00Z", "id": 7, "code": "ABC123", "from": "ArrangingPayment", "to": "PaymentSettled"});
        assert_eq!(webhook_signals(&paid, &states), vec![(Stream::Orders, vec!["ABC123".to_owned()])]);
        let cart = json!({"type": "order.state", "code": "ABC123", "from": "AddingItems", "to": "ArrangingPayment"});
        assert!(webhook_signals(&cart, &states).is_empty(), "a cart is not an order yet");
        let no_code = json!({"type": "order.state", "to": "PaymentSettled"});
        assert!(webhook_signals(&no_code, &states).is_empty());
        // As the plugin sends them (integrations/vendure-plugin/src/events.ts).
        let refund = json!({"type": "order.refund", "at": "2026-12-02T16:48:10.470Z", "id": 2, "code": "YNLWH4R6PBTWJLPZ", "refundId": 2, "from": "Pending", "to": "Settled"});
        assert_eq!(webhook_signals(&refund, &states), vec![(Stream::Orders, vec!["YNLWH4R6PBTWJLPZ".to_owned()])]);
        let modified = json!({"type": "order.updated", "at": "2026-12-02T16:48:10.470Z", "id": 2, "code": "YNLWH4R6PBTWJLPZ"});
        assert_eq!(webhook_signals(&modified, &states), vec![(Stream::Orders, vec!["YNLWH4R6PBTWJLPZ".to_owned()])]);
        assert!(webhook_signals(&json!({"type": "order.refund", "code": ""}), &states).is_empty());
        let line_cancelled = json!({"type": "order.cancelled", "at": "2026-12-03T07:35:19.032Z", "id": 4, "code": "K3J9QX", "lineId": 11});
        assert_eq!(webhook_signals(&line_cancelled, &states), vec![(Stream::Orders, vec!["K3J9QX".to_owned()])]);
        let variants = json!({"type": "variant.updated", "ids": ["1", "2"], "skus": ["A-1", "", "B-2"]});
        assert_eq!(webhook_signals(&variants, &states), vec![(Stream::Products, vec!["A-1".to_owned(), "B-2".to_owned()])]);
        for other in [
            json!({"type": "customer.updated", "id": 3, "email": "a@example.test"}),
            json!({"type": "stock.movement", "movements": []}),
            json!({"type": "product.updated", "id": 1}),
            json!({"type": "customer_group.assigned", "group": "Trade", "ids": [3]}),
            json!({"nothing": true}),
        ] {
            assert!(webhook_signals(&other, &states).is_empty(), "{other}");
        }
    }

    use super::*;

    fn channel(pit: bool) -> Channel {
        let mut tax_categories = HashMap::new();
        tax_categories.insert("GST".to_owned(), ("1".to_owned(), Decimal::new(10, 2)));
        Channel {
            code: "default".into(),
            currency: Currency::parse("AUD").unwrap(),
            prices_include_tax: pit,
            default_tax_zone: Some("Australia".into()),
            tax_categories,
            default_tax_category: Some("GST".into()),
        }
    }

    fn price(amount: &str, incl: bool) -> Price {
        Price { amount: amount.parse().unwrap(), currency: Currency::parse("AUD").unwrap(), tax_inclusive: incl }
    }

    #[test]
    fn prices_become_exact_minor_units_in_the_channel_tax_mode() {
        let rate = Decimal::new(10, 2);
        assert_eq!(channel(false).to_minor(&price("19.99", false), rate, "price").unwrap(), 1999);
        assert_eq!(channel(false).to_minor(&price("21.99", true), rate, "price").unwrap(), 1999);
        assert_eq!(channel(true).to_minor(&price("19.99", false), rate, "price").unwrap(), 2199);
        assert_eq!(channel(true).to_minor(&price("10", true), rate, "price").unwrap(), 1000);
        let e = channel(false).to_minor(&price("19.995", false), rate, "price").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("price.amount"));
        let mut p = price("1", false);
        p.currency = Currency::parse("EUR").unwrap();
        assert_eq!(channel(false).to_minor(&p, rate, "price").unwrap_err().field.as_deref(), Some("price.currency"));
    }

    #[test]
    fn tax_classes_resolve_by_name() {
        let ch = channel(false);
        assert_eq!(ch.tax_category(Some("gst")).unwrap(), (Some("1".into()), Decimal::new(10, 2)));
        assert_eq!(ch.tax_category(None).unwrap().1, Decimal::new(10, 2));
        assert_eq!(ch.tax_category(Some("reduced")).unwrap_err().field.as_deref(), Some("tax_class"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_error_naming_the_endpoint() {
        // Port 9 (discard) has no listener here: the connection is refused.
        let options: Options = serde_json::from_value(json!({"url": "http://127.0.0.1:9", "password": "x", "timeout_seconds": 5})).unwrap();
        let v = Vendure::new(options, "test").unwrap();
        let err = v.check().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.endpoint, "http://127.0.0.1:9/admin-api");
    }

    #[test]
    fn a_missing_password_is_a_config_error_naming_the_variable() {
        let options: Options = serde_json::from_value(json!({"url": "http://x", "password_env": "FERRY_TEST_SURELY_UNSET_PW"})).unwrap();
        let err = Vendure::new(options, "shop").err().unwrap();
        assert_eq!(err.kind, ferry_engine::ErrorKind::Config);
        assert!(err.message.contains("FERRY_TEST_SURELY_UNSET_PW"), "{err}");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Garden / Tools & Spades"), "garden-tools-spades");
        assert_eq!(slug("--T-Shirt (Blue)--"), "t-shirt-blue");
    }
}
