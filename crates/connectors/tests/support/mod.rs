//! Live peers for the integration tests, started through the project's own scripts under scripts/peers/
//! (once per test process; the scripts serialise concurrent callers with a flock).
#![allow(dead_code, unused_imports)]

#[cfg(feature = "shopify")]
pub mod shopify;
pub mod sshd;
#[cfg(feature = "tryton")]
pub mod tryton;
#[cfg(feature = "vendure")]
pub mod vendure;
#[cfg(feature = "medusa")]
pub mod medusa;

#[cfg(feature = "shopify")]
pub use shopify::*;
#[cfg(feature = "tryton")]
pub use tryton::*;
#[cfg(feature = "vendure")]
pub use vendure::*;
#[cfg(all(feature = "medusa", not(feature = "vendure")))]
pub use medusa::*;
#[cfg(all(feature = "medusa", feature = "vendure"))]
pub use medusa::{MedusaAdmin, MedusaPeer, medusa, medusa_port, medusa_webhook_port, place_medusa_order, MEDUSA_WEBHOOK_PATH, MEDUSA_WEBHOOK_SECRET};

/// The ERP → shop flows of a Tryton ⇄ shop loop test (`erp` and `shop` connections), run in this order.
pub const LOOP_ERP_FLOWS: [&str; 5] = ["products", "customers", "prices", "stock", "shipments"];

/// The flows of a Tryton ⇄ shop loop test, each limited to one test's own records (SKU `prefix`, customer
/// company `customer`, price list `list`) so tests share the peers: products, customers, prices, stock and
/// shipments from `erp` to `shop`, orders back. `products_mapping` adds lines to the products mapping
/// (e.g. a `compute`).
pub fn loop_flows(prefix: &str, customer: &str, list: &str, products_mapping: &str) -> String {
    let sku = format!(r#"filter = '.sku | startswith("{prefix}")'"#);
    let order_lines = format!(r#"filter = 'any(.lines[]; .sku | startswith("{prefix}"))'"#);
    let flow = |name: &str, source: &str, target: &str, mapping: &str| {
        format!("[flows.{name}]\nsource = \"{source}\"\ntarget = \"{target}\"\nstream = \"{name}\"\n[flows.{name}.mapping]\n{mapping}\n\n")
    };
    [
        flow("products", "erp", "shop", format!("{sku}\n{products_mapping}").trim_end()),
        flow("customers", "erp", "shop", &format!(r#"filter = '(.company // "") | startswith("{customer}")'"#)),
        flow("prices", "erp", "shop", &format!(r#"filter = '.price_list == "{list}" and (.sku | startswith("{prefix}"))'"#)),
        flow("stock", "erp", "shop", &sku),
        flow("orders", "shop", "erp", &order_lines),
        flow("shipments", "erp", "shop", &order_lines),
    ]
    .concat()
}
