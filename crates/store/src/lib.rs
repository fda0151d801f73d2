//! Persistence for Pave: SQLite (embedded default) or PostgreSQL, schema
//! migrations, and the hash-chained event log. Every state change and its
//! event are written in one transaction.
//!
//! This crate knows rows, not HTTP. Keys of entities are the lowercase
//! `kind:namespace/name` strings produced by `pave_model::EntityRef::key`.
//!
//! Both engines are driven through `sqlx::AnyPool` with one set of SQL
//! (placeholders `$N`); times are TEXT (RFC 3339 UTC, milliseconds) and JSON
//! is TEXT on both, so only the DDL differs per engine (`migrations/`).

pub mod types;

mod catalog;
mod chain;
mod db;
mod events;
mod sql;
mod time;
mod tokens;
mod tx;
mod ulid;
mod verify;

pub use tx::StoreTx;
pub use types::*;

use std::sync::Arc;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (one machine).
    Sqlite,
    /// PostgreSQL server (many stateless servers on one database).
    Postgres,
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// `Store::open` got a URL that is neither SQLite nor PostgreSQL.
    #[error("unsupported database url `{0}` (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored value is not what the store wrote (bad JSON, wrong type, missing row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The thing an operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The input clashes with stored state or is malformed (duplicate secret, bad time).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: sqlx::AnyPool,
    backend: Backend,
    /// SQLite only: serializes this process's write transactions (see `tx.rs`).
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs migrations.
    /// `sqlite:///abs/path/pave.db` or `sqlite://rel/path.db`, `postgres://user@host:port/db`.
    pub async fn open(url: &str) -> Result<Store> {
        let (pool, backend) = db::connect(url).await?;
        db::migrate(&pool, backend).await?;
        Ok(Store {
            pool,
            backend,
            write_gate: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap liveness check of the database (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The sequence number of the newest event: every state change appends
    /// one, so this is a cheap global "has anything changed?" counter, valid
    /// across servers sharing the database.
    pub async fn head_seq(&self) -> Result<i64> {
        let row = sqlx::query("SELECT seq FROM event_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        sql::get(&row, "seq")
    }

    /// Closes the pool, waiting for connections to finish (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Starts a write transaction in which callers change state and append
    /// events atomically; dropping it without `commit` rolls back.
    ///
    /// While a `StoreTx` is open, do not call other writing `Store` methods
    /// from the same task: they wait for this transaction's lock.
    pub async fn begin(&self) -> Result<StoreTx> {
        tx::StoreTx::begin(self).await
    }

    // ---- catalog ----------------------------------------------------------

    /// Creates or updates entities (with the relations each one produces) in
    /// one transaction, appending one event per created/updated entity.
    /// Entities whose document is unchanged are left alone (no event).
    pub async fn apply_entities(&self, items: &[EntityInput], actor: &str) -> Result<ApplyOutcome> {
        catalog::apply(self, items, actor).await
    }

    /// One entity by key.
    pub async fn get_entity(&self, key: &str) -> Result<Option<EntityRow>> {
        let mut rows = catalog::get_many(&self.pool, self.backend, &[key.to_string()]).await?;
        Ok(rows.pop())
    }

    /// Entities for many keys at once (missing keys are simply absent).
    pub async fn get_entities(&self, keys: &[String]) -> Result<Vec<EntityRow>> {
        catalog::get_many(&self.pool, self.backend, keys).await
    }

    /// Entities matching the filter, ordered by kind, namespace, name.
    pub async fn list_entities(&self, filter: &EntityFilter) -> Result<Vec<EntityRow>> {
        catalog::list(&self.pool, filter).await
    }

    /// Relations whose source is `key` (both directions are stored explicitly).
    pub async fn relations_of(&self, key: &str) -> Result<Vec<RelationRow>> {
        catalog::relations_of(&self.pool, key).await
    }

    /// Deletes an entity and the relations it produced; appends an event. False when absent.
    pub async fn delete_entity(&self, key: &str, actor: &str) -> Result<bool> {
        catalog::delete(self, key, actor).await
    }

    // ---- tokens and sessions ---------------------------------------------

    /// Stores a new token (only its hash) and appends `dev.pave.token.created`.
    pub async fn create_token(&self, token: &NewToken, actor: &str) -> Result<TokenRow> {
        tokens::create(self, token, actor).await
    }

    /// The live (not revoked) token with this secret hash.
    pub async fn find_token(&self, secret_hash: &str) -> Result<Option<TokenRow>> {
        tokens::find(&self.pool, secret_hash).await
    }

    /// All tokens, newest first, revoked included.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        tokens::list(&self.pool).await
    }

    /// Revokes a token (and its sessions); appends `dev.pave.token.revoked`. False when absent or already revoked.
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool> {
        tokens::revoke(self, id, actor).await
    }

    /// Stores a portal session (hash of the cookie value) for a token.
    ///
    /// `expires_at` is any RFC 3339 time (stored normalized to UTC);
    /// `NotFound` when the token does not exist or is revoked.
    pub async fn create_session(
        &self,
        session_hash: &str,
        token_id: &str,
        expires_at: &str,
    ) -> Result<()> {
        tokens::create_session(self, session_hash, token_id, expires_at).await
    }

    /// The token behind a live session (not expired, token not revoked).
    pub async fn find_session(&self, session_hash: &str) -> Result<Option<TokenRow>> {
        tokens::find_session(&self.pool, session_hash).await
    }

    /// Ends a session.
    pub async fn delete_session(&self, session_hash: &str) -> Result<()> {
        tokens::delete_session(self, session_hash).await
    }

    // ---- event log --------------------------------------------------------

    /// Appends one event in its own transaction.
    pub async fn append_event(&self, event: &NewEvent) -> Result<EventRow> {
        let mut tx = self.begin().await?;
        let row = tx.append_event(event).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Reads events in log order.
    pub async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRow>> {
        events::list(&self.pool, query).await
    }

    /// Walks the whole chain and reports the first entry that does not verify.
    pub async fn verify_chain(&self) -> Result<VerifyReport> {
        verify::verify(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The server runs these futures on a multi-threaded runtime.
    #[allow(dead_code, clippy::let_underscore_future)]
    async fn futures_are_send(store: Store) {
        assert_send(&store);
        assert_send(&store.apply_entities(&[], "a"));
        assert_send(&store.delete_entity("k", "a"));
        assert_send(&store.list_entities(&EntityFilter::default()));
        assert_send(&store.create_token(
            &NewToken {
                name: String::new(),
                role: String::new(),
                team: None,
                secret_hash: String::new(),
            },
            "a",
        ));
        assert_send(&store.revoke_token("id", "a"));
        assert_send(&store.create_session("s", "t", "e"));
        assert_send(&store.find_session("s"));
        assert_send(&store.append_event(&NewEvent {
            event_type: String::new(),
            subject: String::new(),
            actor: String::new(),
            payload: serde_json::Value::Null,
        }));
        assert_send(&store.verify_chain());
        assert_send(&store.begin());
        let Ok(mut tx) = store.begin().await else {
            return;
        };
        assert_send(&tx);
        let ev = NewEvent {
            event_type: String::new(),
            subject: String::new(),
            actor: String::new(),
            payload: serde_json::Value::Null,
        };
        assert_send(&tx.append_event(&ev));
    }
}
