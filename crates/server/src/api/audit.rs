//! The audit trail: read the event log and verify its hash chain.

use crate::auth::{Auth, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use pave_store::{EventQuery, EventRow, VerifyReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Filters for reading the log.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// RFC 3339 time; only events at or after it.
    pub since: Option<String>,
    /// Exact subject, e.g. `component:default/hello`.
    pub subject: Option<String>,
    /// Only events after this sequence number (for paging).
    pub after: Option<i64>,
    /// At most this many (default 100, max 10000).
    pub limit: Option<i64>,
}

/// One event of the log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub id: String,
    pub time: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    pub actor: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Result of verifying the chain.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyView {
    pub ok: bool,
    pub checked: i64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first entry that does not verify.
    #[schema(value_type = Option<Object>)]
    pub failure: Option<Value>,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> EventView {
        EventView {
            seq: e.seq,
            id: e.id,
            time: e.time,
            event_type: e.event_type,
            subject: e.subject,
            actor: e.actor,
            payload: e.payload,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Read the event log in order.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(EventsQuery),
    responses((status = 200, body = [EventView]), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_events(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<EventView>>> {
    let since = match &q.since {
        Some(s) => Some(normalize_time(s)?),
        None => None,
    };
    if let Some(limit) = q.limit
        && !(1..=10_000).contains(&limit)
    {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    let rows = state
        .store
        .list_events(&EventQuery {
            since,
            subject: q.subject.clone(),
            after_seq: q.after,
            limit: q.limit,
        })
        .await?;
    Ok(Json(rows.into_iter().map(EventView::from).collect()))
}

/// Parses RFC 3339 and renders it the way the store writes times, so
/// lexical comparison in the store is correct.
fn normalize_time(s: &str) -> ApiResult<String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .map_err(|e| ApiError::bad_request(format!("since: `{s}` is not an RFC 3339 time ({e})")))
}

/// Walk the whole hash chain; report the first entry that does not verify.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyView)))]
pub async fn verify(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
) -> ApiResult<Json<VerifyView>> {
    let report: VerifyReport = state.store.verify_chain().await?;
    Ok(Json(VerifyView {
        ok: report.ok,
        checked: report.checked,
        head_seq: report.head_seq,
        head_hash: report.head_hash,
        failure: report
            .failure
            .map(|f| serde_json::to_value(f).unwrap_or(Value::Null)),
    }))
}
