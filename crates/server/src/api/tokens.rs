//! API tokens: create (shown once), list, revoke; and `whoami`.

use crate::auth::{Admin, Auth, Role, Viewer, hash_secret, new_secret};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pave_store::{NewToken, TokenRow};
use serde::{Deserialize, Serialize};

/// A token to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label, e.g. `ci-bot` or `alice-laptop`.
    pub name: String,
    pub role: Role,
    /// Limit the token to one team's entities.
    pub team: Option<String>,
}

/// A token as listed (never with its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub team: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

/// A freshly created token, with its secret: shown this once, stored only hashed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
}

/// Who the caller is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
}

impl From<TokenRow> for TokenView {
    fn from(row: TokenRow) -> TokenView {
        TokenView {
            id: row.id,
            name: row.name,
            role: row.role,
            team: row.team,
            created_at: row.created_at,
            created_by: row.created_by,
            revoked_at: row.revoked_at,
        }
    }
}

/// Create a token. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = CreateToken,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = 403, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_token(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_token_name",
            "token name must be 1-100 printable characters",
        ));
    }
    if req.role == Role::Agent && req.team.is_some() {
        return Err(ApiError::invalid(
            "invalid_team",
            "agent tokens claim jobs of every team; they cannot be team-scoped",
        ));
    }
    if let Some(team) = &req.team {
        pave_model::entity_name_rule(team).map_err(|rule| {
            ApiError::invalid(
                "invalid_team",
                format!("team `{team}` is not a valid name: {rule}"),
            )
        })?;
    }
    let secret = new_secret()?;
    let row = state
        .store
        .create_token(
            &NewToken {
                name: name.to_string(),
                role: req.role.as_str().to_string(),
                team: req.team.clone(),
                secret_hash: hash_secret(&secret),
            },
            &auth.principal.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: row.into(),
            secret,
        }),
    ))
}

/// List tokens (without secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = [TokenView]), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_tokens(
    _auth: Auth<Admin>,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let rows = state.store.list_tokens().await?;
    Ok(Json(rows.into_iter().map(TokenView::from).collect()))
}

/// Revoke a token; its sessions end too.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_token(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let revoked = state
        .store
        .revoke_token(&id, &auth.principal.actor())
        .await?;
    state.tokens.clear();
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no live token with id `{id}`")))
    }
}

/// The token making this call.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = crate::error::ErrorBody)))]
pub async fn whoami(auth: Auth<Viewer>) -> Json<WhoAmI> {
    let p = auth.principal;
    Json(WhoAmI {
        token_id: p.token_id,
        name: p.name,
        role: p.role,
        team: p.team,
    })
}
