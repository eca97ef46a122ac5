//! Ferry's connectors, one module (folder) each, each behind a Cargo feature.
//! A new connector is one folder plus one line in [`registry`].

use ferry_engine::Registry;

#[cfg(feature = "vendure")]
pub mod vendure;

/// Every connector this build was compiled with.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::default();
    // one line per connector:
    #[cfg(feature = "vendure")]
    registry.register(Box::new(vendure::VendureFactory));
    registry
}
