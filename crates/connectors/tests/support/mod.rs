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

#[cfg(feature = "shopify")]
pub use shopify::*;
#[cfg(feature = "tryton")]
pub use tryton::*;
#[cfg(feature = "vendure")]
pub use vendure::*;
