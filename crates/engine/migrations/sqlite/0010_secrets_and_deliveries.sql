-- Connection secrets encrypted at rest (`ferry secrets set`), and the webhook deliveries already seen.
--
-- A secret is XChaCha20-Poly1305 ciphertext under the operator's master key (FERRY_MASTER_KEY or
-- FERRY_MASTER_KEY_FILE, never in this file); the secret's name is the AEAD's associated data, so a
-- ciphertext copied to another name does not decrypt. `key_id` names the master key (a hash of it, not
-- the key) so a wrong key is reported as such instead of as "corrupt".
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL,      -- 24 random bytes
    ciphertext BLOB NOT NULL,      -- value + 16-byte tag
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A webhook delivery id (`X-Ferry-Delivery`) seen within the dedup window is acknowledged without a
-- second job. Rows older than the window are deleted as new deliveries arrive.
CREATE TABLE webhook_deliveries (
    connection  TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    jobs        TEXT NOT NULL,     -- JSON array of the job ids the first delivery enqueued
    PRIMARY KEY (connection, delivery_id)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
