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
