//! Appending to and reading the event log.
//!
//! Append runs inside the caller's transaction: it bumps and locks the
//! one-row `event_head` (`UPDATE ... RETURNING` takes the row lock on
//! PostgreSQL until commit, serializing appenders across servers), chains
//! the hashes in memory, inserts the rows in multi-row statements, and
//! stores the new head hash.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};

use crate::chain::{self, Entry};
use crate::sql::AnyQuery;
use crate::{Backend, EventQuery, EventRow, NewEvent, Result, StoreError, sql, time, ulid};

const COLUMNS: &str = "seq, id, time, event_type, subject, actor, payload, prev_hash, hash";

/// Default and maximum page size of `list`.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 10_000;

/// An event ready to append: its payload already in canonical JSON.
pub(crate) struct Pending {
    pub event_type: String,
    pub subject: String,
    pub actor: String,
    pub payload_json: String,
}

impl Pending {
    /// Prepares a caller's event.
    pub(crate) fn from_event(ev: &NewEvent) -> Pending {
        Pending {
            event_type: ev.event_type.clone(),
            subject: ev.subject.clone(),
            actor: ev.actor.clone(),
            payload_json: chain::canonical_json(&ev.payload),
        }
    }
}

/// What appending assigned to one event.
pub(crate) struct Appended {
    pub seq: i64,
    pub id: String,
    pub time: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Appended {
    /// The stored row, given the event it was made from.
    pub(crate) fn into_row(self, ev: &NewEvent) -> EventRow {
        EventRow {
            seq: self.seq,
            id: self.id,
            time: self.time,
            event_type: ev.event_type.clone(),
            subject: ev.subject.clone(),
            actor: ev.actor.clone(),
            payload: ev.payload.clone(),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

/// Locks the head row without appending, so that a transaction which must
/// read state before it knows its events is serialized with all appenders.
pub(crate) async fn lock_head(conn: &mut AnyConnection) -> Result<()> {
    let locked = sqlx::query("UPDATE event_head SET seq = seq WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    if locked.rows_affected() != 1 {
        return Err(StoreError::Corrupt("event_head row is missing".into()));
    }
    Ok(())
}

/// Positions reserved at the end of the log, linked one by one.
pub(crate) struct Chain {
    next_seq: i64,
    end_seq: i64,
    prev_hash: String,
    time: String,
}

/// Reserves `n` positions: bumps the head (taking its row lock until the
/// transaction ends) and returns the chain to link the events into.
pub(crate) async fn reserve(conn: &mut AnyConnection, n: usize) -> Result<Chain> {
    let n = i64::try_from(n).map_err(|_| StoreError::Conflict("too many events".into()))?;
    let head = sqlx::query("UPDATE event_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("event_head row is missing".into()))?;
    let last: i64 = sql::get(&head, "seq")?;
    Ok(Chain {
        next_seq: last - n + 1,
        end_seq: last,
        prev_hash: sql::get(&head, "hash")?,
        // Taken after the lock, so times follow seq order.
        time: time::now(),
    })
}

impl Chain {
    /// Links `ev` as the next entry.
    fn link(&mut self, ev: &Pending) -> Result<Appended> {
        if self.next_seq > self.end_seq {
            return Err(StoreError::Conflict("more events than reserved".into()));
        }
        let id = ulid::new()?;
        let entry = Entry {
            seq: self.next_seq,
            id: &id,
            time: &self.time,
            event_type: &ev.event_type,
            subject: &ev.subject,
            actor: &ev.actor,
            payload_json: &ev.payload_json,
        };
        let hash = chain::hash(&self.prev_hash, &entry).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "event hash `{}` is not 64 hex digits",
                self.prev_hash
            ))
        })?;
        let appended = Appended {
            seq: self.next_seq,
            id,
            time: self.time.clone(),
            prev_hash: std::mem::replace(&mut self.prev_hash, hash.clone()),
            hash,
        };
        self.next_seq += 1;
        Ok(appended)
    }

    /// Links `events` and returns the statement inserting them (at most
    /// `rows_per_chunk(9)` events).
    pub(crate) fn insert(
        &mut self,
        backend: Backend,
        events: Vec<Pending>,
    ) -> Result<(AnyQuery, Vec<Appended>)> {
        let text = format!(
            "INSERT INTO events ({COLUMNS}) VALUES {}",
            sql::values(backend, events.len(), 9)
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        let mut appended = Vec::with_capacity(events.len());
        for ev in events {
            let a = self.link(&ev)?;
            q = q
                .bind(a.seq)
                .bind(a.id.clone())
                .bind(a.time.clone())
                .bind(ev.event_type)
                .bind(ev.subject)
                .bind(ev.actor)
                .bind(ev.payload_json)
                .bind(a.prev_hash.clone())
                .bind(a.hash.clone());
            appended.push(a);
        }
        Ok((q, appended))
    }

    /// Stores the new head hash; every reserved position must be linked.
    pub(crate) async fn finish(self, conn: &mut AnyConnection) -> Result<()> {
        if self.next_seq != self.end_seq + 1 {
            return Err(StoreError::Conflict("fewer events than reserved".into()));
        }
        sqlx::query("UPDATE event_head SET hash = $1 WHERE id = 1")
            .bind(self.prev_hash)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Events per insert statement.
pub(crate) fn rows_per_insert() -> usize {
    sql::rows_per_chunk(9)
}

/// Appends `events` in order inside the transaction that owns `conn`.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    backend: Backend,
    events: Vec<Pending>,
) -> Result<Vec<Appended>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut chain = reserve(conn, events.len()).await?;
    let mut appended = Vec::with_capacity(events.len());
    let mut events = events.into_iter();
    loop {
        let chunk: Vec<Pending> = events.by_ref().take(rows_per_insert()).collect();
        if chunk.is_empty() {
            break;
        }
        let (q, rows) = chain.insert(backend, chunk)?;
        q.execute(&mut *conn).await?;
        appended.extend(rows);
    }
    chain.finish(conn).await?;
    Ok(appended)
}

/// Events matching `query`, in seq order.
pub(crate) async fn list(pool: &AnyPool, query: &EventQuery) -> Result<Vec<EventRow>> {
    let mut text = format!("SELECT {COLUMNS} FROM events WHERE 1 = 1");
    let mut n = 0;
    let mut arg = |text: &mut String, clause: &str| {
        n += 1;
        text.push_str(&clause.replace('?', &format!("${n}")));
    };
    let since = match &query.since {
        Some(s) => Some(time::normalize(s, "since")?),
        None => None,
    };
    if since.is_some() {
        arg(&mut text, " AND time >= ?");
    }
    if query.subject.is_some() {
        arg(&mut text, " AND subject = ?");
    }
    if query.after_seq.is_some() {
        arg(&mut text, " AND seq > ?");
    }
    arg(&mut text, " ORDER BY seq LIMIT ?");

    let mut q = sqlx::query(AssertSqlSafe(text));
    if let Some(s) = since {
        q = q.bind(s);
    }
    if let Some(s) = &query.subject {
        q = q.bind(s.clone());
    }
    if let Some(a) = query.after_seq {
        q = q.bind(a);
    }
    q = q.bind(query.limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT));
    q.fetch_all(pool).await?.iter().map(from_row).collect()
}

/// Decodes an `events` row.
fn from_row(row: &AnyRow) -> Result<EventRow> {
    let seq: i64 = sql::get(row, "seq")?;
    let payload: String = sql::get(row, "payload")?;
    Ok(EventRow {
        seq,
        id: sql::get(row, "id")?,
        time: sql::get(row, "time")?,
        event_type: sql::get(row, "event_type")?,
        subject: sql::get(row, "subject")?,
        actor: sql::get(row, "actor")?,
        payload: sql::json(&payload, &format!("payload of event {seq}"))?,
        prev_hash: sql::get(row, "prev_hash")?,
        hash: sql::get(row, "hash")?,
    })
}
