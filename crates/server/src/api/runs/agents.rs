//! The agent protocol: claim a job (long-poll, lease), heartbeat, stream
//! log lines, report the result. Every call after the claim carries the
//! lease token; a token that is no longer current (the lease expired and
//! another agent claimed the job, or the job already completed) answers 409.
//!
//! Claiming needs an agent token (`Auth<Agent>`: the claim carries the
//! service's secrets). Heartbeat, logs and report also admit developer
//! tokens (`Auth<JobRunner>`), because `pave run` reports its local jobs
//! through them; the lease token decides which job a caller may touch.

use super::scheduler::{PlanScheduler, needs_context, pave_context};
use super::{JobView, RunView};
use crate::auth::{Agent, Auth, JobRunner};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pave_pipeline::expr::{NeedContext, PaveContext};
use pave_store::{ClaimedJob, JobReport, NewLogLine};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Default lease; agents heartbeat well within it.
const DEFAULT_LEASE_SECONDS: u64 = 30;
/// Longest lease an agent may ask for.
const MAX_LEASE_SECONDS: u64 = 600;
/// Longest long-poll.
const MAX_WAIT_SECONDS: u64 = 30;
/// How often a waiting claim looks at the store (other servers' changes).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Most log lines per request, and longest line.
const MAX_LINES: usize = 5_000;
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Wakes long-polling claims in this process when jobs may have been queued.
static WAKE: Notify = Notify::const_new();

/// Tells waiting claims to look again (a run was created or advanced).
pub fn wake() {
    WAKE.notify_waiters();
}

/// Ask for a job.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The agent's name (shown on the job), e.g. `build-3`.
    pub agent: String,
    /// Hold the request up to this many seconds (0-30) until a job is runnable.
    #[serde(default)]
    pub wait_seconds: u64,
    /// Lease length (1-600, default 30); heartbeat before it ends.
    #[serde(default)]
    pub lease_seconds: Option<u64>,
    /// Claim up to this many jobs at once (1-100, one lease each); the
    /// answer is then a `ClaimBatch`. Without it, one job (`ClaimResponse`).
    #[serde(default)]
    pub max_jobs: Option<usize>,
}

/// Jobs claimed with `max_jobs`: at least one, at most `max_jobs`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClaimBatch {
    pub jobs: Vec<ClaimResponse>,
}

/// One job, or a batch when the claim asked for `max_jobs`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ClaimAnswer {
    One(Box<ClaimResponse>),
    Batch(ClaimBatch),
}

/// A claimed job: everything an agent needs to run it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClaimResponse {
    /// The job's id (for heartbeat, logs, complete).
    pub job_id: String,
    pub run_id: String,
    /// Instance key, e.g. `test (py=3.12)`.
    pub key: String,
    /// 1 on the first claim; more when a lost agent's job was re-queued.
    pub attempt: i64,
    /// Present this with every later call about the job.
    pub lease_token: String,
    pub lease_expires_at: String,
    /// The planned job (`pave_pipeline::plan::PlannedJob`).
    #[schema(value_type = Object)]
    pub job: Value,
    /// The pipeline-level `env` and `defaults`.
    #[schema(value_type = Object)]
    pub pipeline: Value,
    /// The `pave` context: `service`, `sha`, `ref`, `run_id`.
    #[schema(value_type = Object)]
    pub pave: PaveContext,
    /// `needs.<job id>`: `{result, outputs}` of each job it needs.
    #[schema(value_type = Object)]
    pub needs: BTreeMap<String, NeedContext>,
    /// The service's quarantined test ids: a `junit:` step whose only
    /// failing tests are among them does not fail the job.
    pub quarantined: Vec<String>,
    /// The service's secrets by name (`secrets.NAME`); the runner masks
    /// them in every log line. The one answer that carries secret values.
    #[schema(value_type = Object)]
    pub secrets: BTreeMap<String, String>,
    /// Where to check the run's commit out from (the service's
    /// `pave.dev/repository`), so agents need no catalog access.
    pub repository: Option<String>,
}

/// Keep the lease.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub lease_token: String,
    /// New lease length from now (1-600, default 30).
    #[serde(default)]
    pub lease_seconds: Option<u64>,
}

/// The lease was extended.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HeartbeatResponse {
    pub lease_expires_at: String,
    /// The run was cancelled: stop the job and complete it as `cancelled`.
    pub cancel_requested: bool,
}

/// Which stream a line came from.
#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    System,
}

/// One log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLineInput {
    /// The step (label or index); may be empty.
    #[serde(default)]
    pub step: String,
    pub stream: Stream,
    pub text: String,
}

/// Log lines of a held job.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsRequest {
    pub lease_token: String,
    pub lines: Vec<LogLineInput>,
}

/// Where the lines landed in the run's log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogsResponse {
    pub last_seq: i64,
}

/// How a job ended.
#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportedOutcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

/// The final report of a held job.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub lease_token: String,
    /// The job's outcome before `continue-on-error` (the server applies it).
    pub outcome: ReportedOutcome,
    /// The job's outputs (`jobs.<id>.outputs`, resolved).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Step results and anything else to keep (durations, cache hits ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub result: Value,
}

/// The job and its run after the report.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CompleteResponse {
    pub job: JobView,
    pub run: RunView,
}

fn lease(seconds: Option<u64>) -> ApiResult<Duration> {
    let s = seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
    if !(1..=MAX_LEASE_SECONDS).contains(&s) {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("lease_seconds must be between 1 and {MAX_LEASE_SECONDS}"),
        ));
    }
    Ok(Duration::from_secs(s))
}

/// Claim the next runnable job, or up to `max_jobs` of them (long-poll).
///
/// 200 with the job (a batch with `max_jobs`), or 204 when none became
/// runnable within `wait_seconds` (or the server is shutting down).
#[utoipa::path(post, path = "/api/v1/agents/claim", tag = "agents", security(("bearer" = [])),
    request_body = ClaimRequest,
    responses((status = 200, body = ClaimAnswer), (status = 204, description = "no job within the wait"),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn claim(
    auth: Auth<Agent>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Response> {
    let agent = req.agent.trim();
    if agent.is_empty() || agent.len() > 128 || agent.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_body",
            "agent must be 1-128 characters without control characters",
        ));
    }
    if req.wait_seconds > MAX_WAIT_SECONDS {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("wait_seconds must be at most {MAX_WAIT_SECONDS}"),
        ));
    }
    if req
        .max_jobs
        .is_some_and(|n| !(1..=pave_store::MAX_CLAIM_BATCH).contains(&n))
    {
        return Err(ApiError::invalid(
            "invalid_body",
            format!(
                "max_jobs must be between 1 and {}",
                pave_store::MAX_CLAIM_BATCH
            ),
        ));
    }
    let lease = lease(req.lease_seconds)?;
    let actor = auth.principal.actor();
    let deadline = Instant::now() + Duration::from_secs(req.wait_seconds);
    let max = req.max_jobs.unwrap_or(1);
    loop {
        let notified = WAKE.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let claimed = state
            .store
            .claim_jobs(agent, &actor, lease, max, &PlanScheduler)
            .await?;
        if !claimed.is_empty() {
            let mut jobs = Vec::with_capacity(claimed.len());
            for c in claimed {
                jobs.push(claim_response(&state, c).await?);
            }
            let answer = match (req.max_jobs, jobs.pop()) {
                (None, Some(one)) if jobs.is_empty() => ClaimAnswer::One(Box::new(one)),
                (_, last) => {
                    jobs.extend(last);
                    ClaimAnswer::Batch(ClaimBatch { jobs })
                }
            };
            return Ok(Json(answer).into_response());
        }
        let now = Instant::now();
        // A shutting-down server answers at once, so it can drain.
        if now >= deadline || state.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let nap = POLL_INTERVAL.min(deadline - now);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

async fn claim_response(state: &AppState, c: ClaimedJob) -> ApiResult<ClaimResponse> {
    let needs_ids: Vec<String> = c
        .job
        .spec
        .get("needs")
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default();
    // Only the rows of the jobs it needs: a claim stays O(1) in the run's size.
    let needs = if needs_ids.is_empty() {
        BTreeMap::new()
    } else {
        let jobs = state.store.list_needed_jobs(&c.run.id, &c.job.key).await?;
        needs_context(&jobs, &needs_ids).map_err(ApiError::internal)?
    };
    let secrets = match &state.ci {
        Some(ci) => {
            state
                .store
                .secret_values(&ci.secret_key, &c.run.service_key)
                .await?
        }
        None => BTreeMap::new(),
    };
    let quarantined = crate::api::tests::quarantined_ids(state, &c.run.service_key).await?;
    let repository = state
        .store
        .get_entity(&c.run.service_key)
        .await?
        .and_then(|row| crate::views::annotation(&row, crate::api::apply::REPOSITORY_ANNOTATION));
    let mut pipeline = serde_json::Map::new();
    for key in ["name", "env", "defaults"] {
        pipeline.insert(
            key.into(),
            c.pipeline.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(ClaimResponse {
        job_id: c.job.id,
        run_id: c.run.id.clone(),
        key: c.job.key,
        attempt: c.job.attempt,
        lease_token: c.lease_token,
        lease_expires_at: c.job.lease_expires_at.unwrap_or_default(),
        job: c.job.spec,
        pipeline: Value::Object(pipeline),
        pave: pave_context(&c.run),
        needs,
        quarantined,
        secrets,
        repository,
    })
}

/// Extend the lease of a held job; says whether the run was cancelled.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/heartbeat", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")), request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse),
              (status = 409, description = "the lease is lost: stop the job", body = crate::error::ErrorBody)))]
pub async fn heartbeat(
    _auth: Auth<JobRunner>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let lease = lease(req.lease_seconds)?;
    let beat = state.store.heartbeat(&id, &req.lease_token, lease).await?;
    Ok(Json(HeartbeatResponse {
        lease_expires_at: beat.lease_expires_at,
        cancel_requested: beat.cancel_requested,
    }))
}

/// Append log lines of a held job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/logs", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")), request_body = LogsRequest,
    responses((status = 200, body = LogsResponse),
              (status = 409, description = "the lease is lost", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn append_logs(
    _auth: Auth<JobRunner>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LogsRequest>,
) -> ApiResult<Json<LogsResponse>> {
    if req.lines.len() > MAX_LINES {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("at most {MAX_LINES} lines per request"),
        ));
    }
    if req
        .lines
        .iter()
        .any(|l| l.text.len() > MAX_LINE_BYTES || l.step.len() > 256)
    {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("a line is longer than {MAX_LINE_BYTES} bytes (or its step than 256)"),
        ));
    }
    let lines: Vec<NewLogLine> = req
        .lines
        .into_iter()
        .map(|l| NewLogLine {
            step: l.step,
            stream: match l.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
                Stream::System => "system",
            }
            .into(),
            text: l.text,
        })
        .collect();
    let last_seq = state
        .store
        .append_logs(&id, &req.lease_token, &lines)
        .await?;
    Ok(Json(LogsResponse { last_seq }))
}

/// Report a held job's result; the run advances. A late or second report answers 409.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/complete", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")), request_body = CompleteRequest,
    responses((status = 200, body = CompleteResponse),
              (status = 409, description = "late or duplicate report", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn complete(
    auth: Auth<JobRunner>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> ApiResult<Json<CompleteResponse>> {
    let outcome = match req.outcome {
        ReportedOutcome::Success => "success",
        ReportedOutcome::Failure => "failure",
        ReportedOutcome::Cancelled => "cancelled",
        ReportedOutcome::Skipped => "skipped",
    };
    // Malformed test cases are refused before anything changes.
    pave_store::reported_tests(&req.result).map_err(|e| match e {
        pave_store::StoreError::Conflict(m) => ApiError::invalid("invalid_body", m),
        other => ApiError::internal(other),
    })?;
    let report = JobReport {
        job_id: id,
        lease_token: req.lease_token,
        outcome: outcome.into(),
        outputs: serde_json::to_value(&req.outputs).map_err(ApiError::internal)?,
        result: req.result,
        actor: auth.principal.actor(),
    };
    let done = state.store.complete_job(&report, &PlanScheduler).await?;
    if done.queued > 0 {
        wake();
    }
    Ok(Json(CompleteResponse {
        job: done.job.into(),
        run: done.run.into(),
    }))
}

/// Hand back a held job.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub lease_token: String,
}

/// Hand back a held job the agent stopped without finishing (it is shutting
/// down): the job is queued again at once, and the next claim is a new
/// attempt. A job whose run asked it to stop ends `cancelled` instead.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/release", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")), request_body = ReleaseRequest,
    responses((status = 200, body = JobView),
              (status = 409, description = "the lease is lost", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn release(
    auth: Auth<JobRunner>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> ApiResult<Json<JobView>> {
    let job = state
        .store
        .release_job(
            &id,
            &req.lease_token,
            &auth.principal.actor(),
            &PlanScheduler,
        )
        .await?;
    wake();
    Ok(Json(job.into()))
}
