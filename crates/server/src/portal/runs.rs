//! The portal's CI pages: a service's runs, one run (job graph, steps,
//! artifacts, tests, log), and the run's live log stream for the page.
//!
//! The stream is served here as well as under `/api` because portal pages
//! are readable without signing in, and `EventSource` cannot send a bearer
//! token: `/runs/{id}/stream` is the same stream as
//! `/api/v1/runs/{id}/logs/stream`, public like the page that shows the
//! same log lines.

use super::{PageResult, Viewer, html, run_pages, valid_name};
use crate::api::stream::{self, StreamQuery};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use pave_model::{EntityRef, Kind};

/// Runs listed on a service's page.
pub const SERVICE_PAGE_RUNS: i64 = 20;
/// Runs listed on a service's run list.
const ALL_RUNS: i64 = 10_000;
/// Log lines rendered into a run page (the rest: `pave logs`, or the API).
pub const PAGE_LOG_LINES: i64 = 10_000;

/// `/services/{name}/runs`: every run of a service, newest first.
pub async fn service_runs_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> PageResult {
    valid_name(&name)?;
    let key = EntityRef::new(Kind::Component, "default", &name).key();
    if state.store.get_entity(&key).await?.is_none() {
        return Err(ApiError::not_found(format!("no service named `{name}`")).into());
    }
    let runs = state.store.list_runs(&key, Some(ALL_RUNS)).await?;
    html(run_pages::service_runs(viewer.as_ref(), &name, &runs))
}

/// `/runs/{id}`: one run with its jobs and the log so far.
pub async fn run_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    let run = state
        .store
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let jobs = state.store.list_jobs(&id).await?;
    let lines = state.store.read_logs(&id, 0, Some(PAGE_LOG_LINES)).await?;
    html(run_pages::run(viewer.as_ref(), &run, &jobs, &lines))
}

/// `/runs/{id}/stream`: the run's log as Server-Sent Events, for the run page.
pub async fn run_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let after = stream::start_after(&query, &headers)?;
    Ok(stream::open(state, id, after)
        .await?
        .keep_alive(stream::keep_alive())
        .into_response())
}
