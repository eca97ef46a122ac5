//! Ferry's connectors, one module (folder) each, each behind a Cargo feature.
//! A new connector is one folder plus one line in [`registry`].

use ferry_engine::Registry;

#[cfg(feature = "api")]
pub mod api;

/// Every connector this build was compiled with.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::default();
    // one line per connector:
    registry
}

/// [`registry`] plus the connectors that live on the state store itself (`api`: the records API's
/// records), which need the opened store.
#[cfg(feature = "api")]
pub fn registry_with_store(store: std::sync::Arc<dyn ferry_engine::store::RecordStore>) -> Registry {
    let mut registry = registry();
    registry.register(Box::new(api::ApiFactory::new(store)));
    registry
}
