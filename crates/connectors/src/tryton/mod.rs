//! Tryton ERP (8.x) over JSON-RPC: the authority for products, prices, stock and B2B customers; shop
//! orders become sales (`sale.sale` with `web_shop` + `web_id`, unique per shop, so each order is
//! created once and can be found again); done customer shipments flow back with tracking.
//!
//! Where things are:
//! - `rpc.rs`: the JSON-RPC client (login, session, context, encoding, errors);
//! - `options.rs`: the connection's options;
//! - `products.rs`, `prices.rs`, `stock.rs`, `customers.rs`, `shipments.rs`: one stream read each;
//! - `orders.rs`: writing orders as sales, and finding them by order number;
//! - `sale_state.rs`: where a sale stands and how an order's create → quote → confirm is resumed;
//! - `refunds.rs`: booking an order's refunds (credit note or return sale), once per shop refund id;
//! - `invoices.rs`: orders written as customer invoices instead (`orders_as = "invoice"`), paid;
//! - this file: the factory, the connector, shared look-ups and the paging/checkpoint loop.
//!
//! Reads are incremental by `write_date` (Tryton's `last_modified_at`) with an overlap window. A run
//! pages by id inside the window `[since − overlap, run start)` and checkpoints after every page
//! (`{"since", "until", "after_id"}`); the last checkpoint is `{"since": run start}`.

mod amounts;
mod customers;
mod dates;
mod invoices;
mod options;
mod orders;
mod prices;
mod products;
mod refunds;
pub mod rpc;
mod sale_state;
mod shipments;
mod stock;

pub use options::{
    CustomerMatching, InvoiceDate, InvoiceOptions, InvoiceState, LineDiscounts, LoyaltyHandling, OnTaxMismatch, Options, OrderState, OrdersAs, RefundBooking, StockStatusRules,
    TaxRoundingOption,
};
pub use refunds::BookedRefunds;
use ferry_engine::ErrorKind;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_engine::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ReadItem, ReadMode, ReadRequest,
    SourceRecord, StreamCapability, WriteMode, WriteOutcome, WriteRecord, connector::parse_options,
};
use ferry_model::{Currency, Record, Stream};
use futures::StreamExt;
use futures::stream::BoxStream;
use rpc::{Rpc, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

pub struct TrytonFactory;

impl ConnectorFactory for TrytonFactory {
    fn name(&self) -> &'static str {
        "tryton"
    }
    fn env_secrets(&self) -> &'static [(&'static str, &'static str)] {
        &[("password", "password_env")]
    }

    fn summary(&self) -> &'static str {
        "Tryton ERP over JSON-RPC: products, prices, stock, customers and shipments out; orders in as sales"
    }

    fn build(&self, options: &Value, ctx: &BuildContext) -> Result<Arc<dyn Connector>, ConnectorError> {
        let mut opts: Options = parse_options(options, ctx)?;
        if opts.timezone.is_none() {
            opts.timezone = ctx.timezone.clone(); // `[defaults] timezone`
        }
        Ok(Arc::new(Tryton::new(opts, &ctx.connection)?))
    }
}

/// A connection to one Tryton database.
pub struct Tryton {
    opts: Options,
    /// The business's time zone: sale dates and the day prices are read for.
    tz: chrono_tz::Tz,
    rpc: Rpc,
    base: OnceCell<Base>,
    order_setup: OnceCell<orders::OrderSetup>,
    invoice_setup: OnceCell<invoices::InvoiceSetup>,
    /// Parties that have a sale price list, with when they were scanned (see prices.rs).
    price_list_users: tokio::sync::Mutex<Option<PriceListUsers>>,
}

/// When the parties with a sale price list were scanned, and those parties.
type PriceListUsers = (std::time::Instant, Vec<Map<String, Value>>);

/// Looked up once per connection: what every read needs.
#[derive(Clone, Debug)]
struct Base {
    currency: Currency,
    /// warehouse code → `stock.location` id
    warehouses: BTreeMap<String, i64>,
}

impl Tryton {
    pub fn new(opts: Options, connection: &str) -> Result<Self, ConnectorError> {
        let password = match &opts.password {
            Some(p) => p.clone(),
            None => std::env::var(&opts.password_env).map_err(|_| {
                ConnectorError::config(
                    format!("connection {connection}"),
                    format!("option password is not set and environment variable {} is empty", opts.password_env),
                )
            })?,
        };
        if opts.page_size == 0 || opts.batch_size == 0 {
            return Err(ConnectorError::config(format!("connection {connection}"), "page_size and batch_size must be at least 1"));
        }
        let tz = dates::parse_timezone(opts.timezone.as_deref()).map_err(|e| ConnectorError::config(format!("connection {connection}"), e))?;
        let rpc = Rpc::new(&opts.url, &opts.database, &opts.username, &password, Duration::from_secs(opts.timeout_seconds))?;
        if opts.orders_as == OrdersAs::Invoice && opts.refunds == RefundBooking::ReturnSale {
            return Err(ConnectorError::config(format!("connection {connection}"), "refunds = \"return_sale\" needs orders as sales: with orders_as = \"invoice\" refunds are credit notes"));
        }
        Ok(Tryton { opts, tz, rpc, base: OnceCell::new(), order_setup: OnceCell::new(), invoice_setup: OnceCell::new(), price_list_users: Default::default() })
    }

    /// The JSON-RPC client (tests and the benchmark use it to set up data and measure time in Tryton).
    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn endpoint(&self) -> String {
        format!("tryton {}", self.rpc.endpoint())
    }

    async fn base(&self) -> Result<&Base, ConnectorError> {
        self.base
            .get_or_try_init(|| async {
                let ctx = self.rpc.context().await?;
                let company = ctx.get("company").and_then(Value::as_i64).ok_or_else(|| {
                    ConnectorError::config(self.endpoint(), format!("user {:?} has no current company", self.opts.username))
                })?;
                let rows = self.rpc.read("company.company", &[company], &["currency.code"], &Map::new()).await?;
                let code = rows.first().and_then(|r| rpc::dotted(r, "currency.code")).and_then(Value::as_str).unwrap_or("");
                let currency = Currency::parse(code).map_err(|e| ConnectorError::config(self.endpoint(), format!("company currency: {e}")))?;
                let mut codes = self.opts.stock_warehouses();
                codes.push(self.opts.warehouse.clone());
                let found = self
                    .rpc
                    .search_read("stock.location", json!([["type", "=", "warehouse"], ["code", "in", codes]]), 0, None, Value::Null, &["code"], &Map::new())
                    .await?;
                let warehouses: BTreeMap<String, i64> = found
                    .iter()
                    .filter_map(|r| Some((r.get("code")?.as_str()?.to_owned(), r.get("id")?.as_i64()?)))
                    .collect();
                if let Some(missing) = codes.iter().find(|c| !warehouses.contains_key(*c)) {
                    return Err(ConnectorError::config(self.endpoint(), format!("no warehouse with code {missing:?} (stock.location, type warehouse)")));
                }
                Ok(Base { currency, warehouses })
            })
            .await
    }

    /// Context extra that also shows archived records.
    fn all_records() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("active_test".into(), Value::Bool(false));
        m
    }

    /// Copies the configured `custom_fields` of `stream` from a row (dotted paths allowed).
    fn custom(&self, stream: Stream, row: &Map<String, Value>) -> Map<String, Value> {
        let mut custom = Map::new();
        for f in self.opts.custom_fields(stream) {
            if let Some(v) = rpc::dotted(row, f) {
                custom.insert(f.clone(), rpc::plain(v));
            }
        }
        custom
    }

    /// Field list for a read: the stream's own fields plus its custom fields.
    fn fields_with_custom<'a>(&'a self, stream: Stream, fields: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = fields.to_vec();
        for f in self.opts.custom_fields(stream) {
            if !all.contains(&f.as_str()) {
                all.push(f);
            }
        }
        all
    }
}

/// A record translated to canonical JSON, validated the way the engine will, or named as invalid.
fn item(stream: Stream, position: String, data: Value) -> ReadItem {
    match Record::parse(stream, data.clone(), &position) {
        Ok(_) => ReadItem::Record(SourceRecord { position, data }),
        Err(e) => ReadItem::Invalid {
            key: ferry_model::key_hint(stream, &data),
            field: e.field().to_owned(),
            message: e.to_string(),
            position,
            raw: data,
        },
    }
}

fn invalid(stream: Stream, position: String, key: Option<String>, raw: Value, field: &str, message: impl Into<String>) -> ReadItem {
    let _ = stream;
    ReadItem::Invalid { position, key, raw, field: field.to_owned(), message: message.into() }
}

/// Where a read is: the change window and the last id done inside it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// Records changed at or after this (minus the overlap) are read; `None` reads everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// When this run started (becomes the next run's `since`); present while a run is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_id: Option<i64>,
}

/// What one page of a stream read needs to know.
pub(crate) struct Window {
    /// `since − overlap`, or `None` for a full read.
    pub changed_since: Option<DateTime<Utc>>,
    /// Targeted read: only these natural keys.
    pub keys: Option<Vec<String>>,
    pub after_id: i64,
}

/// One page: translated items and the last source id covered (`None` when the stream is exhausted).
pub(crate) struct Page {
    pub items: Vec<ReadItem>,
    pub next_after: Option<i64>,
}

impl Tryton {
    async fn page(&self, stream: Stream, w: &Window) -> Result<Page, ConnectorError> {
        match stream {
            Stream::Products => self.product_page(w).await,
            Stream::Prices => self.price_page(w).await,
            Stream::Stock => self.stock_page(w).await,
            Stream::Customers => self.customer_page(w).await,
            Stream::Shipments => self.shipment_page(w).await,
            Stream::Orders => Err(ConnectorError::config(self.endpoint(), "the orders stream is written to Tryton, not read")),
        }
    }
}

enum ReadState {
    Next { cursor: Cursor, until: DateTime<Utc> },
    Done,
}

#[async_trait]
impl Connector for Tryton {
    fn describe(&self) -> Description {
        let read = |stream| StreamCapability { stream, read: Some(ReadMode::Incremental), write: None, find_by_key: false, retire: vec![] };
        Description {
            name: "tryton",
            summary: TrytonFactory.summary(),
            config_schema: schemars::schema_for!(Options).to_value(),
            streams: vec![
                read(Stream::Products),
                read(Stream::Prices),
                read(Stream::Stock),
                read(Stream::Customers),
                read(Stream::Shipments),
                StreamCapability { stream: Stream::Orders, read: None, write: Some(WriteMode::CreateOnce), find_by_key: true, retire: vec![] },
            ],
            batch_size: self.opts.batch_size,
            webhooks: false,
        }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let mut details = vec![format!("logged in to {} as {}", self.rpc.endpoint(), self.opts.username)];
        let base = self.base().await?;
        details.push(format!("company currency {}", base.currency));
        details.push(format!("warehouses {:?}", base.warehouses));
        let setup = self.order_setup().await?;
        details.push(format!(
            "orders: web.shop {}, B2C party {}, freight product {}, discount product {}",
            setup.web_shop, setup.b2c_party, self.opts.freight_product, self.opts.discount_product
        ));
        if self.opts.orders_as == OrdersAs::Invoice {
            let inv = self.invoice_setup().await?;
            details.push(format!(
                "orders as customer invoices ({:?}): journal {}, payment methods {:?}",
                self.opts.invoices.state, inv.journal, inv.payment_methods
            ));
        }
        Ok(CheckReport { ok: true, details })
    }

    /// Orders are the one stream written to Tryton: the user's access rights (`ir.model.access`) on every
    /// model writing a sale touches, as this connection's options use them.
    async fn check_write(&self, stream: Stream) -> Result<Vec<String>, ConnectorError> {
        if stream != Stream::Orders {
            return Ok(Vec::new());
        }
        let mut needed: Vec<(&str, &[&str])> = match self.opts.orders_as {
            OrdersAs::Sale => vec![("sale.sale", &["read", "create", "write", "delete"]), ("sale.line", &["create", "delete"])],
            OrdersAs::Invoice => vec![("account.invoice", &["read", "create", "write", "delete"]), ("account.invoice.line", &["create", "delete"]), ("account.move", &["create"])],
        };
        needed.extend([("party.address", &["create"][..]), ("ir.note", &["create"][..])]);
        if self.opts.customers.create_customers {
            needed.push(("party.party", &["create"]));
        }
        if self.opts.refunds == RefundBooking::CreditNote && self.opts.orders_as == OrdersAs::Sale {
            needed.push(("account.invoice", &["create", "write"]));
        }
        let models: Vec<&str> = needed.iter().map(|(m, _)| *m).collect();
        let access = self.rpc.call("ir.model.access", "get_access", vec![json!(models)], &Map::new()).await?;
        let missing = missing_access(&access, &needed);
        if !missing.is_empty() {
            return Err(ConnectorError::new(
                ErrorKind::Auth,
                self.endpoint(),
                format!("user {} may not write orders: no {} (Tryton's access rights, ir.model.access)", self.opts.username, missing.join(", ")),
            ));
        }
        Ok(vec![format!("user {} may {}", self.opts.username, needed.iter().map(|(m, p)| format!("{} {m}", p.join("/"))).collect::<Vec<_>>().join(", "))])
    }

    fn read(&self, request: ReadRequest) -> BoxStream<'_, Result<ReadItem, ConnectorError>> {
        let stream = request.stream();
        let keys = request.keys.clone();
        let start = match request.checkpoint.clone() {
            None | Some(Value::Null) => Ok(Cursor::default()),
            Some(v) => serde_json::from_value::<Cursor>(v.clone())
                .map_err(|e| ConnectorError::config(self.endpoint(), format!("checkpoint {v} of stream {stream} is not a Tryton cursor: {e}"))),
        };
        let overlap = chrono::Duration::seconds(i64::from(self.opts.overlap_seconds));
        let now = Utc::now();
        let first = match start {
            Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
            Ok(cursor) => {
                // resuming a run keeps its window; a new run reads up to now
                let until = cursor.until.unwrap_or(now);
                ReadState::Next { cursor, until }
            }
        };
        futures::stream::unfold(first, move |state| {
            let keys = keys.clone();
            async move {
                let ReadState::Next { cursor, until } = state else { return None };
                let w = Window {
                    changed_since: if keys.is_some() { None } else { cursor.since.map(|s| s - overlap) },
                    keys: keys.clone(),
                    after_id: cursor.after_id.unwrap_or(0),
                };
                match self.page(stream, &w).await {
                    Err(e) => Some((vec![Err(e)], ReadState::Done)),
                    Ok(page) => {
                        let mut items: Vec<Result<ReadItem, ConnectorError>> = page.items.into_iter().map(Ok).collect();
                        let targeted = keys.is_some();
                        match page.next_after {
                            Some(after) => {
                                let next = Cursor { since: cursor.since, until: Some(until), after_id: Some(after) };
                                if !targeted {
                                    items.push(Ok(ReadItem::Checkpoint(serde_json::to_value(&next).expect("cursor serialises"))));
                                }
                                Some((items, ReadState::Next { cursor: next, until }))
                            }
                            None => {
                                if !targeted {
                                    let done = Cursor { since: Some(until), until: None, after_id: None };
                                    items.push(Ok(ReadItem::Checkpoint(serde_json::to_value(&done).expect("cursor serialises"))));
                                }
                                Some((items, ReadState::Done))
                            }
                        }
                    }
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    async fn write(&self, stream: Stream, batch: Vec<WriteRecord>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match stream {
            Stream::Orders if self.opts.orders_as == OrdersAs::Invoice => self.write_invoices(batch).await,
            Stream::Orders => self.write_orders(batch).await,
            other => Err(ConnectorError::config(self.endpoint(), format!("stream {other} is read from Tryton, not written"))),
        }
    }

    async fn find_by_key(&self, stream: Stream, keys: &[String]) -> Result<HashMap<String, String>, ConnectorError> {
        match stream {
            Stream::Orders if self.opts.orders_as == OrdersAs::Invoice => self.find_invoices(keys).await,
            Stream::Orders => self.find_orders(keys).await,
            other => Err(ConnectorError::config(self.endpoint(), format!("cannot look up {other} by key"))),
        }
    }
}

/// `[..., ["id", ">", after], <window or keys>]` and the page limit, shared by the stream reads.
pub(crate) fn window_domain(w: &Window, mut domain: Vec<Value>, key_field: &str, changed: Option<Value>) -> Vec<Value> {
    domain.push(json!(["id", ">", w.after_id]));
    if let Some(keys) = &w.keys {
        domain.push(json!([key_field, "in", keys]));
    } else if let Some(c) = changed {
        domain.push(c);
    }
    domain
}

impl From<&RpcError> for ConnectorError {
    fn from(e: &RpcError) -> Self {
        e.to_connector_error()
    }
}

/// Groups rows by id.
pub(crate) fn by_id(rows: Vec<Map<String, Value>>) -> HashMap<i64, Map<String, Value>> {
    rows.into_iter().filter_map(|r| Some((r.get("id")?.as_i64()?, r))).collect()
}

/// `"create sale.sale"` for every permission in `needed` that `get_access`'s answer does not grant
/// (an answer without the model or permission grants nothing).
fn missing_access(access: &Value, needed: &[(&str, &[&str])]) -> Vec<String> {
    needed
        .iter()
        .flat_map(|(model, perms)| perms.iter().filter(move |p| access.pointer(&format!("/{model}/{p}")).and_then(Value::as_bool) != Some(true)).map(move |p| format!("{p} {model}")))
        .collect()
}

/// Ids listed in a one2many/many2many field.
pub(crate) fn id_list(v: Option<&Value>) -> Vec<i64> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_access_names_each_model_and_permission_not_granted() {
        let access = json!({"sale.sale": {"read": true, "create": true, "write": false, "delete": true}, "ir.note": {"create": true}});
        let needed: Vec<(&str, &[&str])> = vec![("sale.sale", &["read", "create", "write"]), ("ir.note", &["create"]), ("party.address", &["create"])];
        assert_eq!(missing_access(&access, &needed), ["write sale.sale", "create party.address"]);
        assert!(missing_access(&access, &needed[1..2]).is_empty());
    }
}
