//! Medusa 2 shop connector over the Admin REST API.
//!
//! Streams: products (with variants, options, nested categories, images, metadata, prices in the
//! region's currency), prices (price lists per customer group, with quantity breaks), stock (inventory
//! levels per stock location), customers (with addresses and groups) written; orders read incrementally;
//! shipments written once as fulfilments with tracking. See `docs/connectors/medusa.md`.
//!
//! Money: Medusa 2 keeps amounts in major units as decimals (`19.99` is 19.99, not cents), read here
//! from the JSON number's text, never through float arithmetic.
//!
//! Files: [`rest`] (HTTP / auth / error mapping), [`products`], [`prices`], [`stock`], [`customers`],
//! [`orders`], [`shipments`]. Shared lookups (region, sales channel, stock locations, variants by SKU)
//! live here.

pub mod rest;
mod customers;
mod orders;
mod prices;
mod products;
mod shipments;
mod stock;

pub use orders::translate as translate_order;

use async_trait::async_trait;
use ferry_engine::connector::parse_options;
use ferry_engine::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest, RecordFailure,
    RetireMode, StreamCapability, WriteAction, WriteMode, WriteOutcome, WriteRecord,
};
use ferry_model::{Currency, Price, Stream};
use futures::stream::BoxStream;
use rest::{Auth, Rest};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

pub struct MedusaFactory;

impl ConnectorFactory for MedusaFactory {
    fn name(&self) -> &'static str {
        "medusa"
    }
    fn env_secrets(&self) -> &'static [(&'static str, &'static str)] {
        &[("api_key", "api_key_env"), ("password", "password_env")]
    }
    fn summary(&self) -> &'static str {
        "Medusa 2 shop (Admin REST API): products, price lists, stock, customers out; orders in; fulfilments back"
    }
    fn build(&self, options: &Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let options: Options = parse_options(options, ctx)?;
        Ok(Arc::new(Medusa::new(options, &ctx.connection)?))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Base URL of the Medusa server, e.g. `http://127.0.0.1:9000`.
    pub base_url: String,
    /// A secret API key (`sk_…`); prefer `api_key_env`.
    pub api_key: Option<String>,
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    /// Instead of an API key: an admin user's e-mail, with `password` / `password_env` (JWT login).
    pub email: Option<String>,
    pub password: Option<String>,
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// Region (name or id) whose currency prices are written in and read; default: the only / first region.
    pub region: Option<String>,
    /// Sales channel (name or id) new products are published to; default: the first one.
    pub sales_channel: Option<String>,
    /// Shipping profile (name or id) of new products; default: the `default` profile.
    pub shipping_profile: Option<String>,
    /// Canonical stock location → Medusa stock location name. Unmapped locations use their own code as
    /// the name; `default` maps to the first stock location.
    #[serde(default)]
    pub stock_locations: BTreeMap<String, String>,
    /// Which canonical quantity becomes the level's `stocked_quantity`: `on_hand` (Medusa subtracts its
    /// own reservations for unshipped orders) or `available` (the ERP already subtracts open orders: Medusa's
    /// reservation at the location is added back so it is not subtracted twice).
    #[serde(default)]
    pub stock_quantity: StockQuantity,
    /// Incremental reads re-read this many seconds before the checkpoint.
    #[serde(default = "default_overlap")]
    pub overlap_seconds: i64,
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockQuantity {
    #[default]
    OnHand,
    Available,
}

fn default_api_key_env() -> String {
    "MEDUSA_API_KEY".into()
}
fn default_password_env() -> String {
    "MEDUSA_ADMIN_PASSWORD".into()
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

/// The region prices are written in: its currency, whether its prices include tax (Medusa's price
/// preference for the region / currency) and the default tax rate of its country.
#[derive(Clone, Debug)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub currency: Currency,
    pub prices_include_tax: bool,
    /// The default tax rate of the region's first country, as a fraction (0.1 for 10 %).
    pub tax_rate: Decimal,
}

impl Region {
    /// A canonical price as a Medusa amount (major units) in the region's tax mode, converted with the
    /// region's rate when the tax modes differ (rounded to the cent); otherwise exact (no silent rounding
    /// of 19.995).
    pub fn amount(&self, price: &Price, field: &str) -> Result<Decimal, RecordFailure> {
        if price.currency != self.currency {
            return Err(RecordFailure::permanent(
                Some(format!("{field}.currency")),
                format!("price is in {} but Medusa region {} sells in {}", price.currency, self.name, self.currency),
            ));
        }
        let out_of_range = || RecordFailure::permanent(Some(format!("{field}.amount")), format!("{} at tax rate {} is out of range", price.amount, self.tax_rate));
        let amount = match (price.tax_inclusive, self.prices_include_tax) {
            (a, b) if a == b => {
                if price.amount.normalize().scale() > self.currency.minor_units() {
                    return Err(RecordFailure::permanent(Some(format!("{field}.amount")), format!("{} has more decimals than {} allows", price.amount, self.currency)));
                }
                price.amount
            }
            (true, false) => price.net(self.tax_rate).ok_or_else(out_of_range)?,
            (false, true) => price.gross(self.tax_rate).ok_or_else(out_of_range)?,
            _ => unreachable!(),
        };
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(RecordFailure::permanent(Some(format!("{field}.amount")), "must not be negative"));
        }
        Ok(amount.normalize())
    }
}

pub struct Medusa {
    pub(crate) options: Options,
    pub(crate) rest: Rest,
    region: OnceCell<Region>,
    sales_channel: OnceCell<String>,
    shipping_profile: OnceCell<String>,
    /// Stock location name → id (loaded once).
    stock_locations: OnceCell<Vec<(String, String)>>,
    /// Caches of ids that rarely change: categories by handle, customer groups by name.
    pub(crate) categories: Mutex<HashMap<String, String>>,
    pub(crate) customer_groups: Mutex<HashMap<String, String>>,
    /// Customer code (`metadata.ferry_code`) → Medusa customer id, for customer-specific prices.
    pub(crate) customer_codes: Mutex<HashMap<String, String>>,
}

impl Medusa {
    pub fn new(options: Options, connection: &str) -> Result<Self, ConnectorError> {
        let secret = |given: &Option<String>, env: &str| given.clone().or_else(|| std::env::var(env).ok().filter(|s| !s.is_empty()));
        let auth = match (secret(&options.api_key, &options.api_key_env), &options.email) {
            (Some(key), _) => Auth::ApiKey(key),
            (None, Some(email)) => {
                let password = secret(&options.password, &options.password_env).ok_or_else(|| {
                    ConnectorError::config(format!("connection {connection}"), format!("no password for {email}: set option `password` or the environment variable {}", options.password_env))
                })?;
                Auth::User { email: email.clone(), password }
            }
            (None, None) => {
                return Err(ConnectorError::config(
                    format!("connection {connection}"),
                    format!("no credentials: set option `api_key`, the environment variable {} (a secret API key), or `email` and a password", options.api_key_env),
                ));
            }
        };
        let rest = Rest::new(&options.base_url, auth, Duration::from_secs(options.timeout_seconds))?;
        Ok(Medusa {
            options,
            rest,
            region: OnceCell::new(),
            sales_channel: OnceCell::new(),
            shipping_profile: OnceCell::new(),
            stock_locations: OnceCell::new(),
            categories: Mutex::new(HashMap::new()),
            customer_groups: Mutex::new(HashMap::new()),
            customer_codes: Mutex::new(HashMap::new()),
        })
    }

    /// API calls (HTTP requests) made so far.
    pub fn api_calls(&self) -> u64 {
        self.rest.calls()
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.rest.base
    }

    pub(crate) async fn region(&self) -> Result<&Region, ConnectorError> {
        self.region.get_or_try_init(|| self.load_region()).await
    }

    async fn load_region(&self) -> Result<Region, ConnectorError> {
        let data = self.rest.get("/admin/regions", &[("fields", "id,name,currency_code,automatic_taxes,*countries".into()), ("limit", "100".into())]).await?;
        let regions = data["regions"].as_array().cloned().unwrap_or_default();
        let region = match &self.options.region {
            Some(want) => regions.iter().find(|r| r["id"].as_str() == Some(want) || r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(want))),
            None => regions.first(),
        }
        .ok_or_else(|| {
            let names: Vec<&str> = regions.iter().filter_map(|r| r["name"].as_str()).collect();
            ConnectorError::config(self.endpoint(), format!("no Medusa region {:?} (regions: {})", self.options.region.as_deref().unwrap_or("(any)"), names.join(", ")))
        })?
        .clone();
        let id = region["id"].as_str().unwrap_or_default().to_owned();
        let currency_code = region["currency_code"].as_str().unwrap_or_default().to_uppercase();
        let currency = Currency::parse(&currency_code).map_err(|e| ConnectorError::permanent(self.endpoint(), format!("region currency: {e}")))?;
        // Price preferences: by region first, then by currency; none means prices exclude tax.
        let prefs = self.rest.get("/admin/price-preferences", &[("limit", "100".into())]).await?;
        let pref = |attribute: &str, value: &str| {
            prefs["price_preferences"].as_array().into_iter().flatten().find(|p| p["attribute"] == attribute && p["value"].as_str().is_some_and(|v| v.eq_ignore_ascii_case(value))).map(|p| p["is_tax_inclusive"] == json!(true))
        };
        let prices_include_tax = pref("region_id", &id).or_else(|| pref("currency_code", &currency_code)).unwrap_or(false);
        let country = region.pointer("/countries/0/iso_2").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut tax_rate = Decimal::ZERO;
        if !country.is_empty() {
            let tr = self.rest.get("/admin/tax-regions", &[("country_code", country.clone()), ("fields", "id,country_code,province_code,*tax_rates".into())]).await?;
            let default = tr["tax_regions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["province_code"].is_null())
                .flat_map(|r| r["tax_rates"].as_array().into_iter().flatten())
                .find(|t| t["is_default"] == json!(true));
            if let Some(t) = default {
                tax_rate = decimal(&t["rate"]).unwrap_or_default() / Decimal::ONE_HUNDRED;
            }
        }
        Ok(Region { id, name: region["name"].as_str().unwrap_or_default().to_owned(), currency, prices_include_tax, tax_rate })
    }

    pub(crate) async fn sales_channel(&self) -> Result<&String, ConnectorError> {
        self.sales_channel
            .get_or_try_init(|| async {
                let data = self.rest.get("/admin/sales-channels", &[("fields", "id,name".into()), ("limit", "100".into())]).await?;
                let list = data["sales_channels"].as_array().cloned().unwrap_or_default();
                pick(&list, self.options.sales_channel.as_deref(), "name").ok_or_else(|| ConnectorError::config(self.endpoint(), format!("no Medusa sales channel {:?}", self.options.sales_channel.as_deref().unwrap_or("(any)"))))
            })
            .await
    }

    pub(crate) async fn shipping_profile(&self) -> Result<&String, ConnectorError> {
        self.shipping_profile
            .get_or_try_init(|| async {
                let data = self.rest.get("/admin/shipping-profiles", &[("fields", "id,name,type".into()), ("limit", "100".into())]).await?;
                let list = data["shipping_profiles"].as_array().cloned().unwrap_or_default();
                let found = match &self.options.shipping_profile {
                    Some(_) => pick(&list, self.options.shipping_profile.as_deref(), "name"),
                    None => list.iter().find(|p| p["type"] == "default").or(list.first()).and_then(|p| p["id"].as_str()).map(str::to_owned),
                };
                found.ok_or_else(|| ConnectorError::config(self.endpoint(), format!("no Medusa shipping profile {:?}", self.options.shipping_profile.as_deref().unwrap_or("default"))))
            })
            .await
    }

    /// The Medusa stock location id for a canonical location code.
    pub(crate) async fn stock_location(&self, location: &str) -> Result<String, RecordFailure> {
        let list = self
            .stock_locations
            .get_or_try_init(|| async {
                let data = self.rest.get("/admin/stock-locations", &[("fields", "id,name".into()), ("limit", "100".into())]).await?;
                Ok::<_, ConnectorError>(
                    data["stock_locations"].as_array().into_iter().flatten().filter_map(|l| Some((l["name"].as_str()?.to_owned(), l["id"].as_str()?.to_owned()))).collect(),
                )
            })
            .await
            .map_err(|e| RecordFailure { field: Some("location".into()), message: e.to_string(), retryable: e.is_transient() })?;
        let name = self.options.stock_locations.get(location).map(String::as_str);
        let found = match name {
            Some(n) => list.iter().find(|(ln, id)| ln == n || id == n),
            None if location == "default" => list.first(),
            None => list.iter().find(|(ln, _)| ln.eq_ignore_ascii_case(location)),
        };
        found.map(|(_, id)| id.clone()).ok_or_else(|| {
            let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
            RecordFailure::permanent(Some("location".into()), format!("no Medusa stock location for {location:?} (locations: {}; map it in option stock_locations)", names.join(", ")))
        })
    }

    /// Variants by SKU with the given extra `fields` (Medusa's field selection syntax).
    pub(crate) async fn variants_by_sku(&self, skus: &[String], fields: &str) -> Result<HashMap<String, Value>, ConnectorError> {
        let mut out = HashMap::new();
        let mut unique: Vec<&String> = skus.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut query: Vec<(&str, String)> = chunk.iter().map(|s| ("sku[]", (*s).clone())).collect();
            query.push(("fields", format!("id,sku,product_id{}{fields}", if fields.is_empty() { "" } else { "," })));
            query.push(("limit", chunk.len().to_string()));
            let data = self.rest.get("/admin/product-variants", &query).await?;
            for v in data["variants"].as_array().into_iter().flatten() {
                if let Some(sku) = v["sku"].as_str() {
                    out.insert(sku.to_owned(), v.clone());
                }
            }
        }
        Ok(out)
    }
}

/// The id of the entry named or identified `want` (by `name_field` or `id`), or the first.
fn pick(list: &[Value], want: Option<&str>, name_field: &str) -> Option<String> {
    match want {
        Some(w) => list.iter().find(|x| x["id"].as_str() == Some(w) || x[name_field].as_str().is_some_and(|n| n.eq_ignore_ascii_case(w))),
        None => list.first(),
    }
    .and_then(|x| x["id"].as_str())
    .map(str::to_owned)
}

#[async_trait]
impl Connector for Medusa {
    fn describe(&self) -> Description {
        let cap = |stream, read, write, find_by_key, retire: Vec<RetireMode>| StreamCapability { stream, read, write, find_by_key, retire };
        Description {
            name: "medusa",
            summary: MedusaFactory.summary(),
            config_schema: json!({
                "type": "object",
                "required": ["base_url"],
                "properties": {
                    "base_url": {"type": "string", "description": "The Medusa server, e.g. http://127.0.0.1:9000"},
                    "api_key": {"type": "string", "description": "A secret API key (sk_…)"},
                    "api_key_env": {"type": "string", "default": "MEDUSA_API_KEY"},
                    "email": {"type": "string", "description": "An admin user instead of an API key"},
                    "password": {"type": "string"},
                    "password_env": {"type": "string", "default": "MEDUSA_ADMIN_PASSWORD"},
                    "region": {"type": "string", "description": "Region name or id (default: the first)"},
                    "sales_channel": {"type": "string", "description": "Sales channel name or id (default: the first)"},
                    "shipping_profile": {"type": "string", "description": "Shipping profile name or id (default: type default)"},
                    "stock_locations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "stock_quantity": {"enum": ["on_hand", "available"], "default": "on_hand"},
                    "overlap_seconds": {"type": "integer", "default": 120},
                    "page_size": {"type": "integer", "default": 50},
                    "timeout_seconds": {"type": "integer", "default": 60}
                }
            }),
            streams: vec![
                cap(Stream::Products, None, Some(WriteMode::Upsert), false, vec![RetireMode::Deactivate, RetireMode::Delete]),
                cap(Stream::Prices, None, Some(WriteMode::Upsert), false, vec![RetireMode::Delete]),
                cap(Stream::Stock, None, Some(WriteMode::Upsert), false, vec![]),
                cap(Stream::Customers, None, Some(WriteMode::Upsert), false, vec![]),
                cap(Stream::Orders, Some(ReadMode::Incremental), None, false, vec![]),
                cap(Stream::Shipments, None, Some(WriteMode::CreateOnce), true, vec![]),
            ],
            batch_size: 100,
            webhooks: true,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.rest.login().await?;
        let r = self.region().await?;
        let mut details = vec![format!(
            "region {} ({}): currency {}, prices {} tax, default tax rate {}%",
            r.name,
            r.id,
            r.currency,
            if r.prices_include_tax { "include" } else { "exclude" },
            (r.tax_rate * Decimal::ONE_HUNDRED).normalize()
        )];
        details.insert(0, format!("connected to {}", self.endpoint()));
        details.push(format!("sales channel {}", self.sales_channel().await?));
        Ok(CheckReport { ok: true, details })
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        match request.stream() {
            Stream::Orders => orders::read(self, request),
            other => {
                let endpoint = self.endpoint().to_owned();
                Box::pin(futures::stream::once(async move { Err(ConnectorError::config(endpoint, format!("medusa cannot read stream {other}"))) }))
            }
        }
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match stream {
            Stream::Products => products::write(self, batch).await,
            Stream::Prices => prices::write(self, batch).await,
            Stream::Stock => stock::write(self, batch).await,
            Stream::Customers => customers::write(self, batch).await,
            Stream::Shipments => shipments::write(self, batch).await,
            Stream::Orders => Err(ConnectorError::config(self.endpoint(), "medusa does not take orders as writes (orders are read)")),
        }
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        match stream {
            // Medusa cannot search fulfilments by a number: `write` looks at the order's fulfilments
            // (their metadata holds the shipment number) before creating one, which keeps it exactly once.
            Stream::Shipments => {
                let _ = keys;
                Ok(HashMap::new())
            }
            other => Err(ConnectorError::config(self.endpoint(), format!("medusa cannot look up {other} by key"))),
        }
    }

    async fn retire(&self, stream: Stream, items: Vec<(String, String)>, mode: RetireMode) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match stream {
            Stream::Products => products::retire(self, items, mode).await,
            Stream::Prices => prices::retire(self, items).await,
            other => Err(ConnectorError::config(self.endpoint(), format!("medusa cannot retire {other}"))),
        }
    }

    fn webhook_signals(&self, body: &Value) -> Vec<(Stream, Vec<String>)> {
        webhook_signals(body)
    }
}

/// What an event of the Medusa subscriber (scripts/peers/medusa: it POSTs `{event, data}` for Medusa's
/// events, signed) names: `order.*` events → the order (`data.id`, an `order_…` id, which the orders read
/// accepts as a key); `product-variant.*` / `product.*` and anything else → nothing (Medusa is read only
/// for orders; the scheduled reconcile covers the rest).
pub fn webhook_signals(body: &Value) -> Vec<(Stream, Vec<String>)> {
    let name = body["event"].as_str().or_else(|| body["name"].as_str()).or_else(|| body["type"].as_str()).unwrap_or_default();
    if !name.starts_with("order.") {
        return Vec::new();
    }
    let data = &body["data"];
    let ids: Vec<String> = match (&data["id"], &data["order_id"]) {
        (Value::String(id), _) if id.starts_with("order_") => vec![id.clone()],
        (_, Value::String(id)) if !id.is_empty() => vec![id.clone()],
        (Value::Array(ids), _) => ids.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() { Vec::new() } else { vec![(Stream::Orders, ids)] }
}

/// A Medusa amount (JSON number or numeric string; Medusa 2 answers major units) as an exact decimal.
pub(crate) fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => {
            let text = n.to_string();
            Decimal::from_str_exact(&text).ok().or_else(|| Decimal::from_scientific(&text).ok())
        }
        Value::String(s) => Decimal::from_str_exact(s).ok(),
        // `raw_amount`-style objects: `{value: "19.99", precision: 20}`
        Value::Object(o) => o.get("value").and_then(decimal),
        _ => None,
    }
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

/// Outcome of a record that needed no change.
pub(crate) fn unchanged(key: &str, id: &str) -> WriteOutcome {
    WriteOutcome::ok(key, id, WriteAction::Unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(pit: bool) -> Region {
        Region { id: "reg_1".into(), name: "Australia".into(), currency: Currency::parse("AUD").unwrap(), prices_include_tax: pit, tax_rate: Decimal::new(10, 2) }
    }

    fn price(amount: &str, incl: bool) -> Price {
        Price { amount: amount.parse().unwrap(), currency: Currency::parse("AUD").unwrap(), tax_inclusive: incl }
    }

    #[test]
    fn prices_become_major_unit_amounts_in_the_region_tax_mode() {
        assert_eq!(region(false).amount(&price("19.99", false), "price").unwrap(), Decimal::new(1999, 2));
        assert_eq!(region(false).amount(&price("21.99", true), "price").unwrap(), Decimal::new(1999, 2));
        assert_eq!(region(true).amount(&price("19.99", false), "price").unwrap(), Decimal::new(2199, 2));
        assert_eq!(region(true).amount(&price("10.00", true), "price").unwrap().to_string(), "10");
        let e = region(false).amount(&price("19.995", false), "price").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("price.amount"));
        let mut p = price("1", false);
        p.currency = Currency::parse("EUR").unwrap();
        assert_eq!(region(false).amount(&p, "price").unwrap_err().field.as_deref(), Some("price.currency"));
    }

    #[test]
    fn amounts_are_read_exactly_from_numbers_strings_and_raw_values() {
        assert_eq!(decimal(&json!(19.99)), Some(Decimal::new(1999, 2)));
        assert_eq!(decimal(&json!(21.989)), Some(Decimal::new(21989, 3)));
        assert_eq!(decimal(&json!(10)), Some(Decimal::from(10)));
        assert_eq!(decimal(&json!("2.5")), Some(Decimal::new(25, 1)));
        assert_eq!(decimal(&json!({"value": "1.999", "precision": 20})), Some(Decimal::new(1999, 3)));
        assert_eq!(decimal(&json!(null)), None);
    }

    #[test]
    fn webhook_events_name_orders_by_id() {
        let placed = json!({"event": "order.placed", "data": {"id": "order_01ABC"}});
        assert_eq!(webhook_signals(&placed), vec![(Stream::Orders, vec!["order_01ABC".to_owned()])]);
        let fulfilled = json!({"event": "order.fulfillment_created", "data": {"order_id": "order_01ABC", "fulfillment_id": "ful_1"}});
        assert_eq!(webhook_signals(&fulfilled), vec![(Stream::Orders, vec!["order_01ABC".to_owned()])]);
        // As the peer's subscriber sends them (scripts/peers/medusa/ferry-webhooks.js, seen live).
        let live = json!({"event": "order.placed", "data": {"id": "order_01M8Y30P2HK74BBZA2TM2DB3CG"}, "id": "6c1d3f0e-6a53-4a0e-9d4f-4f5e8b1e2a10", "occurred_at": "2026-12-03T13:55:01.120Z"});
        assert_eq!(webhook_signals(&live), vec![(Stream::Orders, vec!["order_01M8Y30P2HK74BBZA2TM2DB3CG".to_owned()])]);
        let canceled = json!({"event": "order.canceled", "data": {"id": "order_01ABC"}, "id": "d1", "occurred_at": "2026-12-03T13:55:01.120Z"});
        assert_eq!(webhook_signals(&canceled), vec![(Stream::Orders, vec!["order_01ABC".to_owned()])]);
        for other in [
            json!({"event": "product.updated", "data": {"id": "prod_1"}}),
            // a shipment names the fulfilment only, a payment its payment: no order to re-read
            json!({"event": "shipment.created", "data": {"id": "ful_1"}}),
            json!({"event": "payment.captured", "data": {"id": "pay_1"}}),
            json!({"event": "inventory.inventory-level.updated", "data": {"id": "ilev_1"}}),
            json!({"event": "order.placed", "data": {}}),
            json!({"x": 1}),
        ] {
            assert!(webhook_signals(&other).is_empty(), "{other}");
        }
    }

    #[test]
    fn missing_credentials_are_a_config_error_naming_the_variable() {
        let options: Options = serde_json::from_value(json!({"base_url": "http://x", "api_key_env": "FERRY_TEST_SURELY_UNSET_MEDUSA_KEY"})).unwrap();
        let err = Medusa::new(options, "shop").err().unwrap();
        assert_eq!(err.kind, ferry_engine::ErrorKind::Config);
        assert!(err.message.contains("FERRY_TEST_SURELY_UNSET_MEDUSA_KEY"), "{err}");
    }

    #[test]
    fn handles() {
        assert_eq!(handle("Garden / Tools & Spades"), "garden-tools-spades");
        assert_eq!(handle("--T-Shirt (Blue)--"), "t-shirt-blue");
    }
}
