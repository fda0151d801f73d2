//! Walking the chain: recompute every hash in seq order, page by page, and
//! report the first entry that does not verify.
//!
//! The walk runs in one read transaction (a snapshot on both engines), so
//! concurrent appends neither show up half-way nor look like tampering.

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::chain::{self, Entry, GENESIS};
use crate::{Backend, Result, Store, StoreError, VerifyFailure, VerifyReport, sql};

/// Rows fetched per page.
const PAGE: i64 = 1000;

/// Walks the whole chain.
pub(crate) async fn verify(store: &Store) -> Result<VerifyReport> {
    let mut tx = match store.backend {
        Backend::Sqlite => store.pool.begin().await?,
        Backend::Postgres => {
            store
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?
        }
    };
    let head = sqlx::query("SELECT seq, hash FROM event_head WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt("event_head row is missing".into()))?;
    let recorded_seq: i64 = sql::get(&head, "seq")?;
    let recorded_hash: String = sql::get(&head, "hash")?;

    let mut walk = Walk {
        checked: 0,
        last_seq: 0,
        last_hash: GENESIS.to_string(),
    };
    loop {
        let page = sqlx::query(AssertSqlSafe(format!(
            "SELECT seq, id, time, event_type, subject, actor, payload, prev_hash, hash \
             FROM events WHERE seq > $1 ORDER BY seq LIMIT {PAGE}"
        )))
        .bind(walk.last_seq)
        .fetch_all(&mut *tx)
        .await?;
        for row in &page {
            if let Err(failure) = walk.step(row)? {
                return Ok(walk.report(Some(failure)));
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    tx.commit().await?;

    let failure = if walk.last_seq < recorded_seq {
        Some(VerifyFailure {
            seq: walk.last_seq + 1,
            id: None,
            reason: format!(
                "truncated: the log ends at entry {} but the head records entry {recorded_seq}; entries {}..={recorded_seq} are missing",
                walk.last_seq,
                walk.last_seq + 1
            ),
        })
    } else if walk.last_seq > recorded_seq {
        Some(VerifyFailure {
            seq: recorded_seq + 1,
            id: None,
            reason: format!(
                "entries after the recorded head (entry {recorded_seq}) exist: inserted outside the store"
            ),
        })
    } else if walk.last_hash != recorded_hash {
        Some(VerifyFailure {
            seq: walk.last_seq,
            id: None,
            reason: format!(
                "the head records hash {recorded_hash} for entry {}: the last entry was rewritten",
                walk.last_seq
            ),
        })
    } else {
        None
    };
    Ok(walk.report(failure))
}

/// Progress of the walk: everything up to `last_seq` verified.
struct Walk {
    checked: i64,
    last_seq: i64,
    last_hash: String,
}

impl Walk {
    /// Checks the next row: `Ok(Err(_))` is a broken chain, `Err(_)` a row
    /// whose seq cannot even be read.
    fn step(&mut self, row: &AnyRow) -> Result<std::result::Result<(), VerifyFailure>> {
        let seq: i64 = sql::get(row, "seq")?;
        let expected = self.last_seq + 1;
        let id: Option<String> = sql::get(row, "id").ok();
        let fail = |seq: i64, id: Option<String>, reason: String| {
            Ok(Err(VerifyFailure { seq, id, reason }))
        };
        if seq != expected {
            return fail(
                expected,
                None,
                format!("gap: entry {expected} missing (next entry is {seq})"),
            );
        }
        let fields = (|| -> Result<_> {
            Ok((
                sql::get::<String>(row, "id")?,
                sql::get::<String>(row, "time")?,
                sql::get::<String>(row, "event_type")?,
                sql::get::<String>(row, "subject")?,
                sql::get::<String>(row, "actor")?,
                sql::get::<String>(row, "payload")?,
                sql::get::<String>(row, "prev_hash")?,
                sql::get::<String>(row, "hash")?,
            ))
        })();
        let (id, time, event_type, subject, actor, payload, prev_hash, hash) = match fields {
            Ok(f) => f,
            Err(e) => return fail(seq, id, format!("unreadable entry: {e}")),
        };
        if prev_hash != self.last_hash {
            let reason = if self.last_seq == 0 {
                "prev_hash of the first entry is not the genesis hash".to_string()
            } else {
                format!("prev_hash does not match entry {}", self.last_seq)
            };
            return fail(seq, Some(id), reason);
        }
        let payload_json = match serde_json::from_str::<serde_json::Value>(&payload) {
            Ok(p) => chain::canonical_json(&p),
            Err(e) => {
                return fail(
                    seq,
                    Some(id),
                    format!("payload is not valid JSON ({e}): entry was edited"),
                );
            }
        };
        let entry = Entry {
            seq,
            id: &id,
            time: &time,
            event_type: &event_type,
            subject: &subject,
            actor: &actor,
            payload_json: &payload_json,
        };
        if chain::hash(&prev_hash, &entry).as_deref() != Some(hash.as_str()) {
            return fail(seq, Some(id), "hash mismatch: entry was edited".to_string());
        }
        self.checked += 1;
        self.last_seq = seq;
        self.last_hash = hash;
        Ok(Ok(()))
    }

    fn report(self, failure: Option<VerifyFailure>) -> VerifyReport {
        VerifyReport {
            ok: failure.is_none(),
            checked: self.checked,
            head_seq: self.last_seq,
            head_hash: self.last_hash,
            failure,
        }
    }
}
