//! Authentication (bearer tokens and portal sessions) and role-based authorization.
//!
//! Human roles are ordered: viewer < developer < approver < admin. The
//! `agent` role stands apart: it may only claim jobs and report them (the
//! agent protocol and artifact uploads), and no human role may claim jobs
//! (claims carry the service's secrets). A handler states what it needs by
//! taking an `Auth<R>` argument first; the extractor answers 401 for
//! missing/bad credentials and 403 for a role that `R` does not allow,
//! before the body is even read.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use pave_store::TokenRow;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::marker::PhantomData;

/// Name of the portal session cookie.
pub const SESSION_COOKIE: &str = "pave_session";

/// A token's role. Deliberately not `Ord`: `agent` is outside the human
/// order, so "at least" questions go through [`Role::includes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Developer,
    Approver,
    Admin,
    /// A machine that runs jobs: the agent protocol and artifact uploads only.
    Agent,
}

impl Role {
    /// Every role: the human ones weakest first, then `agent`.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Developer,
        Role::Approver,
        Role::Admin,
        Role::Agent,
    ];

    /// The role's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// True for the roles of people (everything but `agent`).
    pub fn is_human(self) -> bool {
        self != Role::Agent
    }

    /// True when a token with this role may do what `required` may: a human
    /// role includes the human roles below it; `agent` only itself.
    pub fn includes(self, required: Role) -> bool {
        match (self.human_rank(), required.human_rank()) {
            (Some(mine), Some(needed)) => mine >= needed,
            _ => self == required,
        }
    }

    /// Position in viewer < developer < approver < admin; `None` for `agent`.
    fn human_rank(self) -> Option<u8> {
        match self {
            Role::Viewer => Some(0),
            Role::Developer => Some(1),
            Role::Approver => Some(2),
            Role::Admin => Some(3),
            Role::Agent => None,
        }
    }

    /// Parses a lowercase role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Who is calling: the token behind the request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    /// A team-scoped token may change only that team's entities.
    pub team: Option<String>,
}

impl Principal {
    /// The actor string recorded in events: `token:<id>(<name>)`.
    pub fn actor(&self) -> String {
        format!("token:{}({})", self.token_id, self.name)
    }

    /// True when this principal may change entities owned by `owner_team`
    /// (a Group name). Admins and unscoped tokens may change any team's.
    pub fn may_change_team(&self, owner_team: Option<&str>) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        match (&self.team, owner_team) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine.eq_ignore_ascii_case(theirs),
            (Some(_), None) => false,
        }
    }

    fn from_row(row: TokenRow) -> Result<Principal, ApiError> {
        let role = Role::parse(&row.role).ok_or_else(|| {
            ApiError::internal(format!("token {} has unknown role {}", row.id, row.role))
        })?;
        Ok(Principal {
            token_id: row.id,
            name: row.name,
            role,
            team: row.team,
        })
    }
}

/// A new random secret: `pave_` + 64 hex characters (32 random bytes).
pub fn new_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(format!("pave_{}", hex(&bytes)))
}

/// Lowercase hex sha256 of a secret: what the store keeps.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Finds the principal behind a request: `Authorization: Bearer`, else the session cookie.
/// `Ok(None)` means no credentials were presented.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let secret = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthenticated("expected `Authorization: Bearer <token>`"))?
            .trim();
        let row = state
            .tokens
            .lookup(&state.store, &hash_secret(secret))
            .await?;
        return match row {
            Some(row) => Principal::from_row(row).map(Some),
            None => Err(ApiError::unauthenticated("unknown or revoked token")),
        };
    }
    if let Some(session) = session_cookie(&parts.headers) {
        return match state.store.find_session(&hash_secret(&session)).await? {
            Some(row) => Principal::from_row(row).map(Some),
            None => Ok(None),
        };
    }
    Ok(None)
}

/// The session cookie's value, if present.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Which roles a handler admits; see `Auth`.
pub trait MinRole: Send + Sync + 'static {
    /// The role named in a refusal ("this needs the ... role").
    const ROLE: Role;

    /// True when a token with `role` may call the handler.
    fn admits(role: Role) -> bool {
        role.includes(Self::ROLE)
    }
}

/// Marker: any human token (not an agent's).
pub struct Viewer;
/// Marker: developer or above.
pub struct Developer;
/// Marker: approver or above.
pub struct Approver;
/// Marker: admin only.
pub struct Admin;
/// Marker: agent tokens only (claiming jobs: the claim carries secrets).
pub struct Agent;
/// Marker: an agent, or a developer or above: the calls about a job held
/// under a lease token (heartbeat, logs, report) and artifact uploads,
/// which agents make for claimed jobs and `pave run` for its local ones.
/// The lease token, not the role, decides which job a caller may touch.
pub struct JobRunner;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Developer {
    const ROLE: Role = Role::Developer;
}
impl MinRole for Approver {
    const ROLE: Role = Role::Approver;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl MinRole for Agent {
    const ROLE: Role = Role::Agent;
}
impl MinRole for JobRunner {
    const ROLE: Role = Role::Agent;

    fn admits(role: Role) -> bool {
        role == Role::Agent || role.includes(Role::Developer)
    }
}

/// Extractor: an authenticated principal holding at least role `R`.
pub struct Auth<R: MinRole> {
    pub principal: Principal,
    _role: PhantomData<R>,
}

impl<R: MinRole> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state).await?.ok_or_else(|| {
            ApiError::unauthenticated("this endpoint needs a token (Authorization: Bearer <token>)")
        })?;
        if !R::admits(principal.role) {
            return Err(ApiError::forbidden(refusal::<R>(principal.role)));
        }
        Ok(Auth {
            principal,
            _role: PhantomData,
        })
    }
}

/// Why a token with `role` may not call a handler that admits `R`.
fn refusal<R: MinRole>(role: Role) -> String {
    if role == Role::Agent {
        return "agent tokens may only claim and report jobs (and upload their artifacts)".into();
    }
    if R::admits(Role::Agent) && R::admits(Role::Developer) {
        return format!(
            "this needs an agent token or the developer role; your token has {}",
            role.as_str()
        );
    }
    if R::admits(Role::Agent) {
        return format!(
            "only agent tokens may claim jobs; your token has the {} role \
             (create one with `pave token create --role agent`)",
            role.as_str()
        );
    }
    format!(
        "this needs the {} role; your token has {}",
        R::ROLE.as_str(),
        role.as_str()
    )
}
