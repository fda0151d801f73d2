//! Changing the repository a service builds from: the `pave.dev/repository*`
//! annotations of its stored descriptor, rewritten in one transaction with
//! the entity's `updated` event (as an apply that changed it would append).

use serde_json::{Map, Value, json};

use crate::{EntityRow, NewEvent, Result, Store, StoreError, events, sql, time};

const UPDATED: &str = "dev.pave.catalog.entity.updated.0.1.0";
/// Annotation naming a service's repository (URL or local path).
pub const REPOSITORY: &str = "pave.dev/repository";
/// Annotation with the `pave.yaml` path inside that repository.
pub const REPOSITORY_PATH: &str = "pave.dev/repository-path";
/// Annotation with the repository's default branch.
pub const DEFAULT_BRANCH: &str = "pave.dev/default-branch";

/// Where a service's source lives (already validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRepository {
    /// Clone URL or absolute local path.
    pub url: String,
    /// Path of `pave.yaml` inside the repository.
    pub path: String,
    /// The branch runs default to; `None` removes a previous one (it named
    /// a branch of the old repository).
    pub default_branch: Option<String>,
}

/// Rewrites the annotations of the entity `key`; returns the entity and
/// whether anything changed (no event when nothing did). `NotFound` when
/// there is no such entity.
pub(crate) async fn set(
    store: &Store,
    key: &str,
    repo: &ServiceRepository,
    actor: &str,
) -> Result<(EntityRow, bool)> {
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    events::lock_head(conn).await?;
    let row = sqlx::query(
        "SELECT key, kind, namespace, name, owner_key, document, origin, generation, \
         created_at, updated_at FROM entities WHERE key = $1",
    )
    .bind(key.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("entity `{key}`")))?;
    let text: String = sql::get(&row, "document")?;
    let mut entity = EntityRow {
        key: sql::get(&row, "key")?,
        kind: sql::get(&row, "kind")?,
        namespace: sql::get(&row, "namespace")?,
        name: sql::get(&row, "name")?,
        owner_key: sql::get(&row, "owner_key")?,
        document: sql::json(&text, &format!("document of {key}"))?,
        origin: sql::get(&row, "origin")?,
        generation: sql::get(&row, "generation")?,
        created_at: sql::get(&row, "created_at")?,
        updated_at: sql::get(&row, "updated_at")?,
    };
    let before = entity.document.clone();
    annotate(&mut entity.document, repo)?;
    if entity.document == before {
        tx.rollback().await?;
        return Ok((entity, false));
    }
    entity.generation += 1;
    entity.updated_at = time::now();
    let document = serde_json::to_string(&entity.document)
        .map_err(|e| StoreError::Conflict(format!("document: {e}")))?;
    sqlx::query(
        "UPDATE entities SET document = $1, generation = $2, updated_at = $3 WHERE key = $4",
    )
    .bind(document)
    .bind(entity.generation)
    .bind(entity.updated_at.clone())
    .bind(key.to_string())
    .execute(&mut *conn)
    .await?;
    tx.append_event(&NewEvent {
        event_type: UPDATED.to_string(),
        subject: entity.key.clone(),
        actor: actor.to_string(),
        payload: json!({
            "document": entity.document,
            "generation": entity.generation,
            "key": entity.key,
            "kind": entity.kind,
            "origin": entity.origin,
            "changed": "repository",
        }),
    })
    .await?;
    tx.commit().await?;
    Ok((entity, true))
}

/// Sets the repository annotations in `metadata.annotations`.
fn annotate(document: &mut Value, repo: &ServiceRepository) -> Result<()> {
    let corrupt = || StoreError::Corrupt("stored descriptor has no metadata object".into());
    let metadata = document
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(corrupt)?;
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    let Some(annotations) = annotations.as_object_mut() else {
        return Err(corrupt());
    };
    annotations.insert(REPOSITORY.into(), Value::String(repo.url.clone()));
    annotations.insert(REPOSITORY_PATH.into(), Value::String(repo.path.clone()));
    match &repo.default_branch {
        Some(branch) => {
            annotations.insert(DEFAULT_BRANCH.into(), Value::String(branch.clone()));
        }
        None => {
            annotations.remove(DEFAULT_BRANCH);
        }
    }
    Ok(())
}
