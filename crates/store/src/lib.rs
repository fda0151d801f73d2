//! Persistence for Pave: SQLite (embedded default) or PostgreSQL, schema
//! migrations, and the hash-chained event log. Every state change and its
//! event are written in one transaction.
//!
//! This crate knows rows, not HTTP. Keys of entities are the lowercase
//! `kind:namespace/name` strings produced by `pave_model::EntityRef::key`.

pub mod types;

pub use types::*;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database url `{0}` (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    // filled in by the store implementation
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs migrations.
    /// `sqlite:///abs/path/pave.db` or `sqlite://rel/path.db`, `postgres://user@host:port/db`.
    pub async fn open(url: &str) -> Result<Store> {
        let _ = url;
        todo!()
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        todo!()
    }

    /// Cheap liveness check of the database (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        todo!()
    }

    /// Closes the pool, waiting for connections to finish (graceful shutdown).
    pub async fn close(&self) {
        todo!()
    }

    // ---- catalog ----------------------------------------------------------

    /// Creates or updates entities (with the relations each one produces) in
    /// one transaction, appending one event per created/updated entity.
    /// Entities whose document is unchanged are left alone (no event).
    pub async fn apply_entities(&self, items: &[EntityInput], actor: &str) -> Result<ApplyOutcome> {
        let _ = (items, actor);
        todo!()
    }

    /// One entity by key.
    pub async fn get_entity(&self, key: &str) -> Result<Option<EntityRow>> {
        let _ = key;
        todo!()
    }

    /// Entities for many keys at once (missing keys are simply absent).
    pub async fn get_entities(&self, keys: &[String]) -> Result<Vec<EntityRow>> {
        let _ = keys;
        todo!()
    }

    /// Entities matching the filter, ordered by kind, namespace, name.
    pub async fn list_entities(&self, filter: &EntityFilter) -> Result<Vec<EntityRow>> {
        let _ = filter;
        todo!()
    }

    /// Relations whose source is `key` (both directions are stored explicitly).
    pub async fn relations_of(&self, key: &str) -> Result<Vec<RelationRow>> {
        let _ = key;
        todo!()
    }

    /// Deletes an entity and the relations it produced; appends an event. False when absent.
    pub async fn delete_entity(&self, key: &str, actor: &str) -> Result<bool> {
        let _ = (key, actor);
        todo!()
    }

    // ---- tokens and sessions ---------------------------------------------

    /// Stores a new token (only its hash) and appends `dev.pave.token.created`.
    pub async fn create_token(&self, token: &NewToken, actor: &str) -> Result<TokenRow> {
        let _ = (token, actor);
        todo!()
    }

    /// The live (not revoked) token with this secret hash.
    pub async fn find_token(&self, secret_hash: &str) -> Result<Option<TokenRow>> {
        let _ = secret_hash;
        todo!()
    }

    /// All tokens, newest first, revoked included.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        todo!()
    }

    /// Revokes a token (and its sessions); appends `dev.pave.token.revoked`. False when absent or already revoked.
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool> {
        let _ = (id, actor);
        todo!()
    }

    /// Stores a portal session (hash of the cookie value) for a token.
    pub async fn create_session(&self, session_hash: &str, token_id: &str, expires_at: &str) -> Result<()> {
        let _ = (session_hash, token_id, expires_at);
        todo!()
    }

    /// The token behind a live session (not expired, token not revoked).
    pub async fn find_session(&self, session_hash: &str) -> Result<Option<TokenRow>> {
        let _ = session_hash;
        todo!()
    }

    /// Ends a session.
    pub async fn delete_session(&self, session_hash: &str) -> Result<()> {
        let _ = session_hash;
        todo!()
    }

    // ---- event log --------------------------------------------------------

    /// Appends one event in its own transaction.
    pub async fn append_event(&self, event: &NewEvent) -> Result<EventRow> {
        let _ = event;
        todo!()
    }

    /// Reads events in log order.
    pub async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRow>> {
        let _ = query;
        todo!()
    }

    /// Walks the whole chain and reports the first entry that does not verify.
    pub async fn verify_chain(&self) -> Result<VerifyReport> {
        todo!()
    }
}
