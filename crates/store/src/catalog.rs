//! Catalog entities and the relations they produce.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};

use crate::chain::{canonical_json, write_str};
use crate::events::Pending;
use crate::sql::AnyQuery;
use crate::{
    ApplyOutcome, Backend, EntityFilter, EntityInput, EntityRow, NewEvent, RelationRow, Result,
    Store, StoreError, events, sql, time,
};

const ENTITY_COLUMNS: &str =
    "key, kind, namespace, name, owner_key, document, origin, generation, created_at, updated_at";
const CREATED: &str = "dev.pave.catalog.entity.created.0.1.0";
const UPDATED: &str = "dev.pave.catalog.entity.updated.0.1.0";
const DELETED: &str = "dev.pave.catalog.entity.deleted.0.1.0";

/// An entity of the batch that will be written.
struct Change<'a> {
    item: &'a EntityInput,
    document: String,
    generation: i64,
    created: bool,
}

/// Creates/updates a batch in one transaction (see `Store::apply_entities`).
pub(crate) async fn apply(
    store: &Store,
    items: &[EntityInput],
    actor: &str,
) -> Result<ApplyOutcome> {
    let mut seen = HashSet::with_capacity(items.len());
    if let Some(dup) = items.iter().find(|i| !seen.insert(i.key.as_str())) {
        return Err(StoreError::Conflict(format!(
            "entity `{}` appears twice in one apply",
            dup.key
        )));
    }
    if items.is_empty() {
        return Ok(ApplyOutcome::default());
    }
    let documents: Vec<String> = items.iter().map(|i| canonical_json(&i.document)).collect();

    let backend = store.backend;
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    // Lock the log head first: on PostgreSQL this serializes concurrent
    // applies, so the generations read below cannot go stale before commit.
    events::lock_head(conn).await?;
    let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
    let existing = stored_documents(conn, backend, &keys).await?;

    let mut outcome = ApplyOutcome::default();
    let mut changes = Vec::new();
    for (item, document) in items.iter().zip(documents) {
        match existing.get(&item.key) {
            None => {
                outcome.created.push(item.key.clone());
                changes.push(Change {
                    item,
                    document,
                    generation: 1,
                    created: true,
                });
            }
            Some((generation, stored)) => {
                let same = *stored == document
                    || sql::json(stored, "stored document").ok().as_ref() == Some(&item.document);
                if same {
                    outcome.unchanged.push(item.key.clone());
                } else {
                    outcome.updated.push(item.key.clone());
                    changes.push(Change {
                        item,
                        document,
                        generation: generation + 1,
                        created: false,
                    });
                }
            }
        }
    }
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok(outcome);
    }

    // Relations the updated entities produced before are replaced.
    let updated: Vec<String> = changes
        .iter()
        .filter(|c| !c.created)
        .map(|c| c.item.key.clone())
        .collect();
    for chunk in updated.chunks(sql::MAX_BINDS) {
        let text = format!(
            "DELETE FROM relations WHERE source_key IN ({})",
            sql::list(backend, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for key in chunk {
            q = q.bind(key.clone());
        }
        q.execute(&mut *conn).await?;
    }

    // Entities, relations and events as multi-row inserts, each statement
    // built while the previous one executes.
    let now = time::now();
    let relations = produced_relations(&changes);
    let mut chain = events::reserve(conn, changes.len()).await?;
    let entity_inserts = changes
        .chunks(sql::rows_per_chunk(10))
        .map(|c| Ok(upsert_entities(backend, c, &now)));
    let relation_inserts = relations
        .chunks(sql::rows_per_chunk(4))
        .map(|c| Ok(insert_relations(backend, c)));
    let event_inserts = changes.chunks(events::rows_per_insert()).map(|c| {
        let pending = c.iter().map(|change| change_event(change, actor)).collect();
        chain.insert(backend, pending).map(|(q, _)| q)
    });
    sql::execute_all(
        conn,
        entity_inserts.chain(relation_inserts).chain(event_inserts),
    )
    .await?;
    chain.finish(conn).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The created/updated event of a change. Its payload is
/// `{"document","generation","key","kind","origin"}`, written directly as
/// canonical JSON around the already canonical document text.
fn change_event(c: &Change<'_>, actor: &str) -> Pending {
    let mut payload = String::with_capacity(c.document.len() + 128);
    payload.push_str("{\"document\":");
    payload.push_str(&c.document);
    payload.push_str(&format!(",\"generation\":{},\"key\":", c.generation));
    write_str(&mut payload, &c.item.key);
    payload.push_str(",\"kind\":");
    write_str(&mut payload, &c.item.kind);
    payload.push_str(",\"origin\":");
    match &c.item.origin {
        Some(origin) => write_str(&mut payload, origin),
        None => payload.push_str("null"),
    }
    payload.push('}');
    Pending {
        event_type: if c.created { CREATED } else { UPDATED }.to_string(),
        subject: c.item.key.clone(),
        actor: actor.to_string(),
        payload_json: payload,
    }
}

/// `key -> (generation, document text)` for the stored entities among `keys`.
async fn stored_documents(
    conn: &mut AnyConnection,
    backend: Backend,
    keys: &[String],
) -> Result<HashMap<String, (i64, String)>> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(sql::MAX_BINDS) {
        let text = format!(
            "SELECT key, generation, document FROM entities WHERE key IN ({})",
            sql::list(backend, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for key in chunk {
            q = q.bind(key.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.insert(
                sql::get(&row, "key")?,
                (sql::get(&row, "generation")?, sql::get(&row, "document")?),
            );
        }
    }
    Ok(out)
}

/// The statement upserting a chunk of changed entities.
fn upsert_entities(backend: Backend, changes: &[Change<'_>], now: &str) -> AnyQuery {
    let text = format!(
        "INSERT INTO entities ({ENTITY_COLUMNS}) VALUES {} ON CONFLICT (key) DO UPDATE SET \
         kind = excluded.kind, namespace = excluded.namespace, name = excluded.name, \
         owner_key = excluded.owner_key, document = excluded.document, origin = excluded.origin, \
         generation = excluded.generation, updated_at = excluded.updated_at",
        sql::values(backend, changes.len(), 10)
    );
    let mut q = sqlx::query(AssertSqlSafe(text));
    for c in changes {
        let i = c.item;
        q = q
            .bind(i.key.clone())
            .bind(i.kind.clone())
            .bind(i.namespace.clone())
            .bind(i.name.clone())
            .bind(i.owner_key.clone())
            .bind(c.document.clone())
            .bind(i.origin.clone())
            .bind(c.generation)
            .bind(now.to_string())
            .bind(now.to_string());
    }
    q
}

/// The reverse name of a Backstage relation (`ownedBy` <-> `ownerOf`, ...).
pub(crate) fn reverse_of(rel_type: &str) -> Option<&'static str> {
    const PAIRS: [(&str, &str); 7] = [
        ("ownedBy", "ownerOf"),
        ("partOf", "hasPart"),
        ("dependsOn", "dependencyOf"),
        ("providesApi", "apiProvidedBy"),
        ("consumesApi", "apiConsumedBy"),
        ("childOf", "parentOf"),
        ("memberOf", "hasMember"),
    ];
    PAIRS.iter().find_map(|&(a, b)| {
        if a == rel_type {
            Some(b)
        } else if b == rel_type {
            Some(a)
        } else {
            None
        }
    })
}

/// One stored relation: as declared by its producer, with its reverse name.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct StoredRelation<'a> {
    source_key: &'a str,
    rel_type: &'a str,
    target_key: &'a str,
    reverse_type: Option<&'a str>,
}

/// The relations the changes produce, each once from its producer's side:
/// a row pointing at the producer (`group ownerOf me`) is turned around
/// (`me ownedBy group`); rows not touching the producer are ignored.
fn produced_relations<'a>(changes: &'a [Change<'a>]) -> Vec<StoredRelation<'a>> {
    changes
        .iter()
        .flat_map(|c| {
            let key = c.item.key.as_str();
            let unique: BTreeSet<StoredRelation<'a>> = c
                .item
                .relations
                .iter()
                .filter_map(|r| {
                    if r.source_key == key {
                        Some(StoredRelation {
                            source_key: key,
                            rel_type: &r.rel_type,
                            target_key: &r.target_key,
                            reverse_type: reverse_of(&r.rel_type),
                        })
                    } else if r.target_key == key {
                        let forward = reverse_of(&r.rel_type)?;
                        Some(StoredRelation {
                            source_key: key,
                            rel_type: forward,
                            target_key: &r.source_key,
                            reverse_type: Some(&r.rel_type),
                        })
                    } else {
                        None
                    }
                })
                .collect();
            unique
        })
        .collect()
}

/// The statement inserting a chunk of relations.
fn insert_relations(backend: Backend, rows: &[StoredRelation<'_>]) -> AnyQuery {
    let text = format!(
        "INSERT INTO relations (source_key, rel_type, target_key, reverse_type) VALUES {}",
        sql::values(backend, rows.len(), 4)
    );
    let mut q = sqlx::query(AssertSqlSafe(text));
    for r in rows {
        q = q
            .bind(r.source_key.to_string())
            .bind(r.rel_type.to_string())
            .bind(r.target_key.to_string())
            .bind(r.reverse_type.map(str::to_string));
    }
    q
}

/// Entities for `keys`, in the order of `keys` (missing ones skipped).
pub(crate) async fn get_many(
    pool: &AnyPool,
    backend: Backend,
    keys: &[String],
) -> Result<Vec<EntityRow>> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(sql::MAX_BINDS) {
        let text = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE key IN ({})",
            sql::list(backend, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for key in chunk {
            q = q.bind(key.clone());
        }
        for row in q.fetch_all(pool).await? {
            let entity = from_row(&row)?;
            found.insert(entity.key.clone(), entity);
        }
    }
    Ok(keys.iter().filter_map(|k| found.remove(k)).collect())
}

/// Entities matching `filter`, ordered by kind, namespace, name.
pub(crate) async fn list(pool: &AnyPool, filter: &EntityFilter) -> Result<Vec<EntityRow>> {
    let mut text = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let mut push = |text: &mut String, clause: &str, value: &str| {
        binds.push(value.to_string());
        text.push_str(&clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(kind) = &filter.kind {
        push(&mut text, " AND lower(kind) = lower(?)", kind);
    }
    if let Some(ns) = &filter.namespace {
        push(&mut text, " AND namespace = ?", ns);
    }
    if let Some(owner) = &filter.owner_key {
        push(&mut text, " AND owner_key = ?", owner);
    }
    text.push_str(" ORDER BY kind, namespace, name");
    if filter.limit.is_some() {
        text.push_str(&format!(" LIMIT ${}", binds.len() + 1));
    }
    let mut q = sqlx::query(AssertSqlSafe(text));
    for b in binds {
        q = q.bind(b);
    }
    if let Some(limit) = filter.limit {
        q = q.bind(limit.max(0));
    }
    q.fetch_all(pool).await?.iter().map(from_row).collect()
}

/// Relations with source `key`: those it declared and the reverse of those
/// declared towards it by others; deduplicated, sorted.
pub(crate) async fn relations_of(pool: &AnyPool, key: &str) -> Result<Vec<RelationRow>> {
    let rows = sqlx::query(
        "SELECT source_key, rel_type, target_key FROM relations WHERE source_key = $1 \
         UNION \
         SELECT target_key AS source_key, reverse_type AS rel_type, source_key AS target_key \
         FROM relations WHERE target_key = $1 AND reverse_type IS NOT NULL \
         ORDER BY rel_type, target_key",
    )
    .bind(key.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RelationRow {
                source_key: sql::get(row, "source_key")?,
                rel_type: sql::get(row, "rel_type")?,
                target_key: sql::get(row, "target_key")?,
            })
        })
        .collect()
}

/// Deletes an entity and the relations it produced, with its event.
pub(crate) async fn delete(store: &Store, key: &str, actor: &str) -> Result<bool> {
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    sqlx::query("DELETE FROM relations WHERE source_key = $1")
        .bind(key.to_string())
        .execute(&mut *conn)
        .await?;
    let Some(row) =
        sqlx::query("DELETE FROM entities WHERE key = $1 RETURNING kind, generation, origin")
            .bind(key.to_string())
            .fetch_optional(&mut *conn)
            .await?
    else {
        tx.rollback().await?;
        return Ok(false);
    };
    let kind: String = sql::get(&row, "kind")?;
    let generation: i64 = sql::get(&row, "generation")?;
    let origin: Option<String> = sql::get(&row, "origin")?;
    tx.append_event(&NewEvent {
        event_type: DELETED.to_string(),
        subject: key.to_string(),
        actor: actor.to_string(),
        payload: json!({ "key": key, "kind": kind, "generation": generation, "origin": origin }),
    })
    .await?;
    tx.commit().await?;
    Ok(true)
}

fn from_row(row: &AnyRow) -> Result<EntityRow> {
    let key: String = sql::get(row, "key")?;
    let document: String = sql::get(row, "document")?;
    let document: Value = sql::json(&document, &format!("document of `{key}`"))?;
    Ok(EntityRow {
        kind: sql::get(row, "kind")?,
        namespace: sql::get(row, "namespace")?,
        name: sql::get(row, "name")?,
        owner_key: sql::get(row, "owner_key")?,
        document,
        origin: sql::get(row, "origin")?,
        generation: sql::get(row, "generation")?,
        created_at: sql::get(row, "created_at")?,
        updated_at: sql::get(row, "updated_at")?,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_event_payload_is_canonical_json() {
        let item = EntityInput {
            key: "component:default/a\"b".into(),
            kind: "Component".into(),
            namespace: "default".into(),
            name: "a".into(),
            owner_key: None,
            document: json!({ "z": 1, "a": [{ "y": "\n", "b": null }] }),
            origin: None,
            relations: vec![],
        };
        for origin in [None, Some("catalog/x.yaml:1:1".to_string())] {
            let item = EntityInput {
                origin,
                ..item.clone()
            };
            let change = Change {
                item: &item,
                document: canonical_json(&item.document),
                generation: 7,
                created: false,
            };
            let expected = canonical_json(&json!({
                "key": item.key, "kind": item.kind, "generation": 7, "origin": item.origin, "document": item.document,
            }));
            assert_eq!(change_event(&change, "me").payload_json, expected);
        }
    }
}
