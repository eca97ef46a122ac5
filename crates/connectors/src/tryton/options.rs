//! The connection's options (`[connections.<name>]` with `type = "tryton"`). See docs/connectors/tryton.md.

use ferry_model::Stream;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Server URL without the database, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// Database name (the `<db>` of `/<db>/rpc/`).
    pub database: String,
    #[serde(default = "default_username")]
    pub username: String,
    /// The password itself; prefer `password_env`.
    #[serde(default)]
    pub password: Option<String>,
    /// Environment variable holding the password (default `TRYTON_PASSWORD`).
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// Code of the warehouse (`stock.location`, type warehouse) orders ship from. Default `WH`.
    #[serde(default = "default_warehouse")]
    pub warehouse: String,
    /// Warehouses whose stock is read (default: `[warehouse]`).
    #[serde(default)]
    pub stock_warehouses: Vec<String>,
    /// The business's time zone (IANA, e.g. `Australia/Sydney`): the date of a sale placed at 23:30 local,
    /// and the day price lists are read for. Default: `[defaults] timezone`, else UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Name of the `web.shop` orders are attached to (default: the shop selling from `warehouse`).
    #[serde(default)]
    pub web_shop: Option<String>,
    /// What a web order becomes in Tryton: a sale (`sale.sale`, default) or a customer invoice
    /// (`account.invoice`, type out, with the shop's payment recorded; see `invoices`). Chosen per flow by
    /// the connection the flow writes to: two connections may point at one Tryton.
    #[serde(default)]
    pub orders_as: OrdersAs,
    /// Orders written as invoices (`orders_as = "invoice"`): their state, journal and payments.
    #[serde(default)]
    pub invoices: InvoiceOptions,
    /// State a written sale is left in.
    #[serde(default)]
    pub order_state: OrderState,
    /// How an order's buyer becomes a Tryton party.
    #[serde(default)]
    pub customers: CustomerMatching,
    /// Party (name, or numeric id) that orders without a known customer are booked to.
    #[serde(default = "default_b2c")]
    pub b2c_party: String,
    /// Payment term (name) for sales whose party has none.
    #[serde(default)]
    pub payment_term: Option<String>,
    /// Product code of the freight (shipping) service product.
    #[serde(default = "default_freight")]
    pub freight_product: String,
    /// Product code of the discount product used for coupons, promotions and line discounts.
    #[serde(default = "default_discount")]
    pub discount_product: String,
    /// What to do with loyalty points and loyalty discounts.
    #[serde(default)]
    pub loyalty: LoyaltyHandling,
    /// How refunds of an imported order are booked (once per shop refund id): a credit note (default),
    /// a return sale, or not at all.
    #[serde(default)]
    pub refunds: RefundBooking,
    /// Largest difference between Tryton's computed tax and the order's `totals.tax` accepted whatever
    /// `on_tax_mismatch` says (always with a note on the sale and a run warning, never silently).
    #[serde(default = "default_tax_tolerance")]
    pub tax_tolerance: Decimal,
    /// What to do when Tryton's tax differs from the shop's by more than `tax_tolerance`.
    #[serde(default)]
    pub on_tax_mismatch: OnTaxMismatch,
    /// Largest accepted difference between Tryton's `total_amount` and the order's `totals.total` after the
    /// sale is written (the connector plans a rounding line so there is none; this catches what it could
    /// not predict, such as non-percentage taxes). Default 0.
    #[serde(default)]
    pub total_tolerance: Decimal,
    /// Tryton's tax rounding (`account.configuration.tax_rounding`): `detect` reads and follows it;
    /// `line` or `document` set it (for the whole company) when it differs.
    #[serde(default)]
    pub tax_rounding: TaxRoundingOption,
    /// A line's own discount (`lines[i].discount`): `separate` — a `discount_product` line "Discount on
    /// SKU" — or `in_price` — taken off the line's unit price, so the sale line is the amount the shop
    /// taxed and Tryton's tax can agree line by line.
    #[serde(default)]
    pub line_discounts: LineDiscounts,
    /// Product code of the tax-free line that makes Tryton's total the shop's when a tax difference is
    /// accepted (default: `discount_product`).
    #[serde(default)]
    pub adjustment_product: Option<String>,
    /// Stock status thresholds and how end-of-line / discontinued are derived.
    #[serde(default)]
    pub stock_status: StockStatusRules,
    /// Re-read this many seconds before the checkpoint (clock skew, late commits).
    #[serde(default = "default_overlap")]
    pub overlap_seconds: u32,
    /// Records per search/read page (one checkpoint per page).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Orders per `write` call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// HTTP timeout per call, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Tryton field names copied into `custom`, per stream, e.g. `products = ["template.weight"]`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Vec<String>>")]
    pub custom_fields: BTreeMap<Stream, Vec<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Created and left in draft for a person to review.
    Draft,
    /// Quoted (`quote`): prices and taxes fixed.
    #[default]
    Quotation,
    /// Quoted and confirmed: Tryton creates the shipment and invoice.
    Confirmed,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrdersAs {
    /// A sale (`sale.sale`), moved to `order_state`.
    #[default]
    Sale,
    /// A customer invoice (`account.invoice`, type out), moved to `invoices.state`, the shop's payments
    /// recorded against it once posted.
    Invoice,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceOptions {
    /// State a written invoice is left in.
    #[serde(default)]
    pub state: InvoiceState,
    /// `account.invoice.payment.method` (name) the shop's payments are recorded with (Tryton's pay
    /// wizard: a move in the method's journal, reconciled with the invoice, which then shows paid).
    /// Payments can only be recorded on a posted invoice; unset, or for draft and validated invoices,
    /// they are written as a note on the invoice instead.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// A payment method per shop payment method (`payments[].method` → method name); others use
    /// `payment_method`.
    #[serde(default)]
    pub payment_methods: BTreeMap<String, String>,
    /// Revenue journal (`account.journal` name) of the invoices; default: the first journal of type revenue.
    #[serde(default)]
    pub journal: Option<String>,
    /// The invoice date: the order's date in the business's time zone (`order`), or left for Tryton to
    /// set to the day it is posted (`posting`; Tryton numbers invoices in date order and refuses to post
    /// one dated before an invoice already numbered).
    #[serde(default)]
    pub invoice_date: InvoiceDate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceState {
    /// Created and left in draft for the accountant to check and post.
    Draft,
    /// Validated (`validate_invoice`): amounts and taxes fixed, not yet numbered or in the books.
    Validated,
    /// Posted (`post`): numbered, its move in the books, the shop's payments recorded.
    #[default]
    Posted,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceDate {
    #[default]
    Order,
    Posting,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerMatching {
    /// Match `customer.code` against `party.party.code` first.
    #[serde(default = "yes")]
    pub by_code: bool,
    /// Then match `customer.email` against the e-mail contact mechanisms of parties that are customers
    /// (see `customer_category`). Opt-in: an e-mail typed at checkout proves nothing.
    #[serde(default)]
    pub by_email: bool,
    /// Match guests' e-mails too (`customer.guest` true or unknown); by default only registered shop
    /// accounts (`guest = false`), whose e-mail the shop verified, are matched by e-mail.
    #[serde(default)]
    pub match_guests: bool,
    /// A party is a customer (may be matched by e-mail) when it is in this `party.category` (name).
    /// Default: when it has a sale that is not cancelled.
    #[serde(default)]
    pub customer_category: Option<String>,
    /// Create a party for an unmatched buyer who gave an e-mail (else the order goes to `b2c_party`).
    #[serde(default)]
    pub create_customers: bool,
}

impl Default for CustomerMatching {
    fn default() -> Self {
        CustomerMatching { by_code: true, by_email: false, match_guests: false, customer_category: None, create_customers: false }
    }
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoyaltyHandling {
    /// Product code for loyalty discounts (`discounts[].kind = loyalty`); default: `discount_product`.
    #[serde(default)]
    pub product: Option<String>,
    /// Write points used/earned as a note on the sale.
    #[serde(default = "yes")]
    pub note: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundBooking {
    /// An `account.invoice` of type out for the sale's party with negative lines (GST on its lines),
    /// `reference` = `<order number>/<refund id>`, left in draft for the accountant to post.
    #[default]
    CreditNote,
    /// A sale with negative quantities (`web_id` = `<order number>/<refund id>`), moved to `order_state`:
    /// Tryton then expects the goods back (return shipment) and credits them.
    ReturnSale,
    /// Refunds are not booked (the order's other changes still are).
    Ignore,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTaxMismatch {
    /// Refuse the order (the sale is deleted again) with a failure on `totals.tax`.
    #[default]
    Fail,
    /// Keep the sale and attach a note saying by how much the tax differs.
    Note,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineDiscounts {
    /// A sale line of the discount product per discounted line (visible as a discount in Tryton).
    #[default]
    Separate,
    /// The discount taken off the line's unit price (the description names it).
    InPrice,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxRoundingOption {
    /// Follow Tryton's setting (read once per connection).
    #[default]
    Detect,
    /// Make Tryton round tax per line, as shops (Vendure) do: taxes then agree line by line.
    Line,
    /// Make Tryton round tax once per sale.
    Document,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockStatusRules {
    /// Available quantity at or below which the status is `low` (above zero).
    #[serde(default = "default_low")]
    pub low_stock: Decimal,
    /// An archived (inactive) product is `discontinued`.
    #[serde(default = "yes")]
    pub inactive_is_discontinued: bool,
    /// A boolean field of `product.product` (dotted paths allowed, e.g. `template.end_of_line`) that marks
    /// end-of-line products: `end_of_line` while stock lasts, then `discontinued`.
    #[serde(default)]
    pub end_of_line_field: Option<String>,
    /// A product category name that marks end-of-line products (same effect as `end_of_line_field`).
    #[serde(default)]
    pub end_of_line_category: Option<String>,
}

impl Default for StockStatusRules {
    fn default() -> Self {
        StockStatusRules { low_stock: default_low(), inactive_is_discontinued: true, end_of_line_field: None, end_of_line_category: None }
    }
}

fn yes() -> bool {
    true
}
fn default_username() -> String {
    "admin".into()
}
fn default_password_env() -> String {
    "TRYTON_PASSWORD".into()
}
fn default_warehouse() -> String {
    "WH".into()
}
fn default_b2c() -> String {
    "Web sales (B2C)".into()
}
fn default_freight() -> String {
    "FREIGHT".into()
}
fn default_discount() -> String {
    "DISCOUNT".into()
}
fn default_tax_tolerance() -> Decimal {
    Decimal::new(1, 2)
}
fn default_overlap() -> u32 {
    120
}
fn default_page_size() -> usize {
    200
}
fn default_batch_size() -> usize {
    50
}
fn default_timeout() -> u64 {
    60
}
fn default_low() -> Decimal {
    Decimal::from(5)
}

impl Options {
    pub fn custom_fields(&self, stream: Stream) -> &[String] {
        self.custom_fields.get(&stream).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn stock_warehouses(&self) -> Vec<String> {
        if self.stock_warehouses.is_empty() { vec![self.warehouse.clone()] } else { self.stock_warehouses.clone() }
    }
}
