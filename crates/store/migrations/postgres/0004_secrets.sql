-- Service secrets, sealed by the server (ChaCha20-Poly1305 under the server
-- key; see crates/store/src/secrets.rs): the database never holds a value in
-- the clear. And the webhook deliveries already handled, so a redelivered
-- push creates nothing new.

CREATE TABLE secrets (
    service_key TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    -- v1:<key id>:<nonce hex>:<ciphertext hex>
    sealed      TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (service_key, name)
);

CREATE TABLE webhook_deliveries (
    provider    TEXT COLLATE "C" NOT NULL,
    delivery_id TEXT COLLATE "C" NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);
