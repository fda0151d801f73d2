-- Service secrets, sealed by the server (ChaCha20-Poly1305 under the server
-- key; see crates/store/src/secrets.rs): the database never holds a value in
-- the clear. And the webhook deliveries already handled, so a redelivered
-- push creates nothing new.

CREATE TABLE secrets (
    service_key TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- v1:<key id>:<nonce hex>:<ciphertext hex>
    sealed      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (service_key, name)
) WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, delivery_id)
) WITHOUT ROWID;
