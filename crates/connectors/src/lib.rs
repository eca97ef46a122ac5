//! Ferry's connectors, one module (folder) each, each behind a Cargo feature.
//! A new connector is one folder plus one line in [`registry`].

use ferry_engine::Registry;

#[cfg(any(feature = "csv", feature = "jsonl"))]
mod fileio;
#[cfg(any(feature = "csv", feature = "jsonl", feature = "sql"))]
mod rawkey;
#[cfg(any(feature = "csv", feature = "jsonl"))]
mod remote;
#[cfg(any(feature = "csv", feature = "jsonl"))]
mod sftp;

#[cfg(any(feature = "tryton", feature = "vendure", feature = "shopify", feature = "medusa"))]
pub mod retry;

#[cfg(feature = "csv")]
pub mod csv;
#[cfg(feature = "jsonl")]
pub mod jsonl;
#[cfg(feature = "tryton")]
pub mod tryton;
#[cfg(feature = "vendure")]
pub mod vendure;
#[cfg(feature = "shopify")]
pub mod shopify;
#[cfg(feature = "medusa")]
pub mod medusa;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "api")]
pub mod api;

/// Every connector this build was compiled with.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::default();
    // one line per connector:
    #[cfg(feature = "csv")]
    registry.register(Box::new(csv::CsvFactory));
    #[cfg(feature = "jsonl")]
    registry.register(Box::new(jsonl::JsonlFactory));
    #[cfg(feature = "tryton")]
    registry.register(Box::new(tryton::TrytonFactory));
    #[cfg(feature = "vendure")]
    registry.register(Box::new(vendure::VendureFactory));
    #[cfg(feature = "shopify")]
    registry.register(Box::new(shopify::ShopifyFactory));
    #[cfg(feature = "medusa")]
    registry.register(Box::new(medusa::MedusaFactory));
    #[cfg(feature = "sql")]
    registry.register(Box::new(sql::SqlFactory));
    registry
}

/// Name and summary of every connector type this build knows, those living on the state store (`api`)
/// included: what `ferry describe` lists.
pub fn types() -> Vec<(&'static str, &'static str)> {
    let registry = registry();
    #[allow(unused_mut)]
    let mut types: Vec<_> = registry.names().into_iter().filter_map(|n| registry.get(n).map(|f| (f.name(), f.summary()))).collect();
    #[cfg(feature = "api")]
    types.push((api::NAME, api::SUMMARY));
    types
}

/// [`registry`] plus the connectors that live on the state store itself (`api`: the records API's
/// records), which need the opened store.
#[cfg(feature = "api")]
pub fn registry_with_store(store: std::sync::Arc<dyn ferry_engine::store::RecordStore>) -> Registry {
    let mut registry = registry();
    registry.register(Box::new(api::ApiFactory::new(store)));
    registry
}
