//! API tokens (stored as hashes) and portal sessions.

use serde_json::json;
use sqlx::AnyPool;
use sqlx::any::AnyRow;

use crate::{NewEvent, NewToken, Result, Store, StoreError, TokenRow, sql, time, ulid};

const CREATED: &str = "dev.pave.token.created.0.1.0";
const REVOKED: &str = "dev.pave.token.revoked.0.1.0";

/// Stores a token and appends its event (name, role, team: never the hash).
pub(crate) async fn create(store: &Store, token: &NewToken, actor: &str) -> Result<TokenRow> {
    let row = TokenRow {
        id: ulid::new()?,
        name: token.name.clone(),
        role: token.role.clone(),
        team: token.team.clone(),
        created_at: time::now(),
        created_by: actor.to_string(),
        revoked_at: None,
    };
    let mut tx = store.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO tokens (id, name, role, team, secret_hash, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(row.id.clone())
    .bind(row.name.clone())
    .bind(row.role.clone())
    .bind(row.team.clone())
    .bind(token.secret_hash.clone())
    .bind(row.created_at.clone())
    .bind(row.created_by.clone())
    .execute(tx.connection())
    .await;
    match inserted {
        Err(e) if sql::is_unique_violation(&e) => {
            return Err(StoreError::Conflict(
                "a token with this secret already exists".into(),
            ));
        }
        other => other?,
    };
    tx.append_event(&NewEvent {
        event_type: CREATED.to_string(),
        subject: format!("token:{}", row.id),
        actor: actor.to_string(),
        payload: json!({ "name": row.name, "role": row.role, "team": row.team }),
    })
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The live token with this secret hash.
pub(crate) async fn find(pool: &AnyPool, secret_hash: &str) -> Result<Option<TokenRow>> {
    sqlx::query(
        "SELECT id, name, role, team, created_at, created_by, revoked_at FROM tokens \
         WHERE secret_hash = $1 AND revoked_at IS NULL",
    )
    .bind(secret_hash.to_string())
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// All tokens, newest first.
pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<TokenRow>> {
    sqlx::query(
        "SELECT id, name, role, team, created_at, created_by, revoked_at FROM tokens \
         ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Revokes a live token, ends its sessions, appends the event.
pub(crate) async fn revoke(store: &Store, id: &str, actor: &str) -> Result<bool> {
    let mut tx = store.begin().await?;
    let Some(row) = sqlx::query(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING name, role, team",
    )
    .bind(time::now())
    .bind(id.to_string())
    .fetch_optional(tx.connection())
    .await?
    else {
        tx.rollback().await?;
        return Ok(false);
    };
    let name: String = sql::get(&row, "name")?;
    let role: String = sql::get(&row, "role")?;
    let team: Option<String> = sql::get(&row, "team")?;
    sqlx::query("DELETE FROM sessions WHERE token_id = $1")
        .bind(id.to_string())
        .execute(tx.connection())
        .await?;
    tx.append_event(&NewEvent {
        event_type: REVOKED.to_string(),
        subject: format!("token:{id}"),
        actor: actor.to_string(),
        payload: json!({ "name": name, "role": role, "team": team }),
    })
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Stores a session for a live token; `NotFound` when the token is absent or revoked.
pub(crate) async fn create_session(
    store: &Store,
    session_hash: &str,
    token_id: &str,
    expires_at: &str,
) -> Result<()> {
    let expires_at = time::normalize(expires_at, "session expiry")?;
    let mut tx = store.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO sessions (session_hash, token_id, expires_at, created_at) \
         SELECT $1, id, $2, $3 FROM tokens WHERE id = $4 AND revoked_at IS NULL",
    )
    .bind(session_hash.to_string())
    .bind(expires_at)
    .bind(time::now())
    .bind(token_id.to_string())
    .execute(tx.connection())
    .await;
    let inserted = match inserted {
        Err(e) if sql::is_unique_violation(&e) => {
            return Err(StoreError::Conflict("this session already exists".into()));
        }
        other => other?,
    };
    if inserted.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(StoreError::NotFound(format!("live token `{token_id}`")));
    }
    tx.commit().await?;
    Ok(())
}

/// The token behind an unexpired session of a live token.
pub(crate) async fn find_session(pool: &AnyPool, session_hash: &str) -> Result<Option<TokenRow>> {
    sqlx::query(
        "SELECT t.id, t.name, t.role, t.team, t.created_at, t.created_by, t.revoked_at \
         FROM sessions s JOIN tokens t ON t.id = s.token_id \
         WHERE s.session_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
    )
    .bind(session_hash.to_string())
    .bind(time::now())
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Deletes a session (absent is fine).
pub(crate) async fn delete_session(store: &Store, session_hash: &str) -> Result<()> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM sessions WHERE session_hash = $1")
        .bind(session_hash.to_string())
        .execute(tx.connection())
        .await?;
    tx.commit().await?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: sql::get(row, "id")?,
        name: sql::get(row, "name")?,
        role: sql::get(row, "role")?,
        team: sql::get(row, "team")?,
        created_at: sql::get(row, "created_at")?,
        created_by: sql::get(row, "created_by")?,
        revoked_at: sql::get(row, "revoked_at")?,
    })
}
