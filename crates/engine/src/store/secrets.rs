//! Stored connection secrets (ciphertext only: see [`crate::secrets`]) and seen webhook deliveries.

use super::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One encrypted secret as stored.
#[derive(Clone)]
pub struct SealedSecret {
    pub name: String,
    /// Which master key sealed it (a hash of the key, never the key).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret").field("name", &self.name).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// What `ferry secrets list` shows: never a value.
#[derive(Clone, Debug, Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub key_id: String,
    pub created_at: String,
    pub updated_at: String,
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces the named secret.
    async fn put_secret(&self, secret: SealedSecret) -> StoreResult<()>;
    async fn get_secret(&self, name: &str) -> StoreResult<Option<SealedSecret>>;
    async fn list_secrets(&self) -> StoreResult<Vec<SecretInfo>>;
    async fn all_secrets(&self) -> StoreResult<Vec<SealedSecret>>;
    async fn delete_secret(&self, name: &str) -> StoreResult<bool>;
    /// Replaces every secret's ciphertext in one transaction (rotation: all or nothing).
    async fn reseal_all(&self, secrets: Vec<SealedSecret>) -> StoreResult<()>;
}

/// The first delivery of a webhook id within a window (a retried delivery gets no second job).
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// The job ids enqueued for `(connection, delivery_id)` if it was seen after `since`.
    async fn seen_delivery(&self, connection: &str, delivery_id: &str, since: DateTime<Utc>) -> StoreResult<Option<Vec<i64>>>;
    /// Claims a delivery before its jobs are enqueued: `false` when it was claimed already (a concurrent or
    /// earlier delivery of the same id). Claims older than the window must be forgotten first.
    async fn claim_delivery(&self, connection: &str, delivery_id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Records the jobs a claimed delivery enqueued (shown to its duplicates).
    async fn set_delivery_jobs(&self, connection: &str, delivery_id: &str, jobs: &[i64]) -> StoreResult<()>;
    /// Gives a claim back (its jobs could not be enqueued: the sender's retry must not count as a duplicate).
    async fn release_delivery(&self, connection: &str, delivery_id: &str) -> StoreResult<()>;
    /// Forgets deliveries received before `before`.
    async fn forget_deliveries(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}
