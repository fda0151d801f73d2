//! Write transactions.
//!
//! SQLite allows one writer at a time. A deferred transaction that reads
//! first and writes later can fail with SQLITE_BUSY when another connection
//! wrote in between (busy_timeout does not help there), so every write
//! transaction starts with `BEGIN IMMEDIATE`, which takes the write lock up
//! front and waits for it under busy_timeout (this also covers other
//! processes on the same file). Inside one process, writers additionally
//! queue on an async mutex before taking a pooled connection: waiting is
//! FIFO and cheap instead of SQLite's sleep-and-retry busy handler, and idle
//! waiters do not hold connections that readers need.
//!
//! PostgreSQL needs neither: appenders serialize on the `event_head` row
//! lock, which is held until commit, so several servers stay linear.

use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::{Backend, EventRow, NewEvent, Result, Store, StoreError, events};

/// A write transaction: its state changes and appended events commit
/// together or not at all. Dropping it without `commit` rolls back.
pub struct StoreTx {
    // Field order matters: `tx` drops (and rolls back) before the gate opens.
    tx: Transaction<'static, Any>,
    backend: Backend,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl StoreTx {
    pub(crate) async fn begin(store: &Store) -> Result<StoreTx> {
        match store.backend {
            Backend::Sqlite => {
                let gate = store.write_gate.clone().lock_owned().await;
                let tx = store.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(StoreTx {
                    tx,
                    backend: store.backend,
                    _gate: Some(gate),
                })
            }
            Backend::Postgres => {
                let tx = store.pool.begin().await?;
                Ok(StoreTx {
                    tx,
                    backend: store.backend,
                    _gate: None,
                })
            }
        }
    }

    /// The engine this transaction runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying connection, for statements of store modules built on
    /// this transaction (SQL must use `$N` placeholders and suit both engines).
    pub fn connection(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends one event to the log inside this transaction.
    pub async fn append_event(&mut self, event: &NewEvent) -> Result<EventRow> {
        self.append_events(std::slice::from_ref(event))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("append returned no event".into()))
    }

    /// Appends several events, in order, inside this transaction.
    pub async fn append_events(&mut self, events: &[NewEvent]) -> Result<Vec<EventRow>> {
        let pending = events.iter().map(events::Pending::from_event).collect();
        let appended = self.append_pending(pending).await?;
        Ok(appended
            .into_iter()
            .zip(events)
            .map(|(a, ev)| a.into_row(ev))
            .collect())
    }

    /// Appends prepared events (payloads already canonical JSON).
    pub(crate) async fn append_pending(
        &mut self,
        events: Vec<events::Pending>,
    ) -> Result<Vec<events::Appended>> {
        events::append(&mut self.tx, self.backend, events).await
    }

    /// Commits the state changes and events.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Rolls back everything done in this transaction.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}
