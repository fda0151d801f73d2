//! Service secrets: set, list (names and times only), delete.
//!
//! Values are sealed by the store under the server key before they are
//! written; no answer of this API, no event and no error message contains a
//! value. Jobs of the service's runs receive the values in their claim (see
//! `runs::agents`), and the runner masks them in every log line.

use super::runs::{authorize, service};
use crate::auth::{Auth, Developer, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, CiConfig};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use pave_store::secrets::{MAX_SECRET_VALUE, check_secret_name};
use pave_store::{SecretKey, SecretRow};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path as FsPath;
use std::sync::Arc;

/// The data-dir file holding the secret key when `PAVE_SECRET_KEY` is unset.
pub const KEY_FILE: &str = "secret-key";

/// Optional namespace of the service (default `default`).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct NamespaceQuery {
    pub namespace: Option<String>,
}

/// The value to store. Sent as JSON `{"value": "..."}`; never echoed.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecretRequest {
    /// The secret value (at most 64 KiB).
    pub value: String,
}

/// A secret as the API shows it: never its value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretView {
    /// `[A-Z_][A-Z0-9_]*`.
    pub name: String,
    /// Service name.
    pub service: String,
    pub created_at: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<SecretRow> for SecretView {
    fn from(r: SecretRow) -> SecretView {
        SecretView {
            service: crate::views::ref_name(&r.service_key).to_string(),
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        }
    }
}

/// The CI configuration, or 503 when this server runs without a data dir.
pub(crate) fn ci(state: &AppState) -> ApiResult<&Arc<CiConfig>> {
    state.ci.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "this server has no data directory for secrets, webhooks and artifacts",
        )
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    check_secret_name(name).map_err(|rule| ApiError::invalid("invalid_name", rule))
}

/// Create or replace a service secret.
///
/// The body is `{"value": "..."}`. Answers the secret's name and times;
/// appends `dev.pave.secret.set.0.1.0` naming the service and the secret.
#[utoipa::path(put, path = "/api/v1/services/{name}/secrets/{secret}", tag = "secrets",
    security(("bearer" = [])), request_body = SetSecretRequest,
    params(("name" = String, Path, description = "service name"),
           ("secret" = String, Path, description = "secret name, [A-Z_][A-Z0-9_]*"), NamespaceQuery),
    responses((status = 200, body = SecretView), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 503, description = "secrets are not configured", body = crate::error::ErrorBody)))]
pub async fn set_secret(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<NamespaceQuery>,
    body: Bytes,
) -> ApiResult<Json<SecretView>> {
    check_name(&secret)?;
    // Parsed here rather than with `ApiJson`, whose error messages may
    // quote the offending input: the value must never be echoed.
    let req: SetSecretRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::invalid(
            "invalid_body",
            "expected a JSON body {\"value\": \"<string>\"}",
        )
    })?;
    if req.value.len() > MAX_SECRET_VALUE {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("a secret value may be at most {MAX_SECRET_VALUE} bytes"),
        ));
    }
    let ci = ci(&state)?;
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    authorize(&auth.principal, &row)?;
    let stored = state
        .store
        .set_secret(
            &ci.secret_key,
            &row.key,
            &secret,
            &req.value,
            &auth.principal.actor(),
        )
        .await?;
    Ok(Json(stored.into()))
}

/// List a service's secrets: names and times, never values.
#[utoipa::path(get, path = "/api/v1/services/{name}/secrets", tag = "secrets",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"), NamespaceQuery),
    responses((status = 200, body = [SecretView]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_secrets(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<Vec<SecretView>>> {
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    let list = state.store.list_secrets(&row.key).await?;
    Ok(Json(list.into_iter().map(SecretView::from).collect()))
}

/// Delete a service secret; appends `dev.pave.secret.deleted.0.1.0`.
#[utoipa::path(delete, path = "/api/v1/services/{name}/secrets/{secret}", tag = "secrets",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"),
           ("secret" = String, Path, description = "secret name"), NamespaceQuery),
    responses((status = 204, description = "deleted"), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn delete_secret(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<StatusCode> {
    check_name(&secret)?;
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    authorize(&auth.principal, &row)?;
    if state
        .store
        .delete_secret(&row.key, &secret, &auth.principal.actor())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "service `{}` has no secret `{secret}`",
            row.name
        )))
    }
}

/// The secret key: `PAVE_SECRET_KEY` (hex or base64 of 32 bytes) when set,
/// else `DATA/secret-key`, created with a random key (mode 0600) on first
/// start. Returns the key and a line saying where it came from.
pub fn load_key(data_dir: &FsPath, env: Option<String>) -> Result<(SecretKey, String), String> {
    if let Some(text) = env {
        let key = SecretKey::parse(&text).map_err(|e| format!("PAVE_SECRET_KEY: {e}"))?;
        let note = format!("secret key from PAVE_SECRET_KEY (id {})", key.id());
        return Ok((key, note));
    }
    let path = data_dir.join(KEY_FILE);
    let fresh = SecretKey::generate().map_err(|e| e.to_string())?;
    let (text, created) = read_or_create_private(&path, &format!("{}\n", fresh.to_hex()))?;
    let key = SecretKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((
        key.clone(),
        format!(
            "secret key {} {} (id {}; servers sharing a database need the same key)",
            if created { "written to" } else { "in" },
            path.display(),
            key.id()
        ),
    ))
}

/// Reads `path`, or creates it with `content` (mode 0600, atomically: a
/// racing creator's file wins and is read back). True when created.
pub(crate) fn read_or_create_private(
    path: &FsPath,
    content: &str,
) -> Result<(String, bool), String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text, false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail("reading", e)),
        Err(_) => {}
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail("creating the directory of", e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    // hard_link fails when another process created the file first.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((content.to_string(), true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)
            .map(|t| (t, false))
            .map_err(|e| fail("reading", e)),
        Err(e) => Err(fail("creating", e)),
    }
}
