//! One store, whichever backend `[state]` names: [`Store`] is every store trait at once, and
//! [`open_store`] opens SQLite (`path`, `sqlite://…`, the default) or PostgreSQL (`postgres://…`).

use super::*;
use crate::config::StateLocation;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything a state store does, so the server and the CLI hold one `Arc<dyn Store>` and hand out the
/// narrower traits (`Arc<dyn RecordStore>` to the `api` connector, `&dyn StateStore` to runs).
#[async_trait]
pub trait Store: StateStore + JobQueue + RecordStore + KeyStore + RetentionStore + SecretStore + DeliveryLog + AlertStore + DashboardStore {
    /// Which backend: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Where the store is (file, or URL without password and schema), for messages.
    fn location(&self) -> String;
    /// Whether run `id` exists (the API answers 404 for an unknown run, not an empty list).
    async fn run_exists(&self, id: i64) -> StoreResult<bool>;
    /// Changes whenever any process may have made a job claimable (PostgreSQL `LISTEN/NOTIFY`). `None`
    /// when only this process enqueues (SQLite), whose own wake-ups suffice.
    fn job_signal(&self) -> Option<watch::Receiver<u64>>;
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    fn location(&self) -> String {
        self.location.clone()
    }
    async fn run_exists(&self, id: i64) -> StoreResult<bool> {
        SqliteStore::run_exists(self, id).await
    }
    fn job_signal(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

#[async_trait]
impl Store for postgres::PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn location(&self) -> String {
        self.location.clone()
    }
    async fn run_exists(&self, id: i64) -> StoreResult<bool> {
        postgres::PgStore::run_exists(self, id).await
    }
    fn job_signal(&self) -> Option<watch::Receiver<u64>> {
        Some(postgres::PgStore::job_signal(self))
    }
}

/// Opens (creating and migrating as needed) the store at `location`.
pub async fn open_store(location: &StateLocation) -> StoreResult<Arc<dyn Store>> {
    Ok(match location {
        StateLocation::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        StateLocation::Postgres { url, schema, max_connections } => Arc::new(postgres::PgStore::open(url, schema, *max_connections).await?),
    })
}

/// Opens the store a config's `[state]` names.
pub async fn open_configured(config: &crate::Config) -> StoreResult<Arc<dyn Store>> {
    let location = config.state_location().map_err(|message| StoreError { location: "[state]".into(), message })?;
    open_store(&location).await
}
