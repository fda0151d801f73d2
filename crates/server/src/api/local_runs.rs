//! `POST /api/v1/runs/local`: record a run that `pave run` executes on the
//! caller's machine. The server parses and plans the same `pave.yaml` text
//! (so the record has the same jobs and outcome rules as any run), stores
//! the run with `executor = local` and every job already leased to the
//! caller, and answers one lease token per job. The caller then ships logs,
//! heartbeats and reports through the agent calls; agents never claim these
//! jobs, and a job whose lease runs out ends `failure` ("local runner
//! lost") through the reaper started by `serve`.

use super::pipeline_templates::resolve_for;
use super::runs::scheduler::PlanScheduler;
use super::runs::{JobView, RunView, authorize, check_text, plan_run, service};
use crate::auth::{Auth, Developer};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pave_pipeline::plan::{PlannedJob, RunPlan};
use pave_store::{NewJob, NewLocalRun, NewRun};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// Largest `pave.yaml` accepted for a run.
const MAX_PAVE_YAML: usize = 1024 * 1024;
/// Default lease of a local job; `pave run` heartbeats well within it.
const DEFAULT_LEASE_SECONDS: u64 = 30;
/// Shortest and longest lease a client may ask for.
const LEASE_RANGE: std::ops::RangeInclusive<u64> = 2..=600;
/// How often the reaper looks for local jobs whose client is gone.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// A run executed by the caller, to record.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLocalRunRequest {
    /// The service (its `pave.yaml` must name it).
    pub service: String,
    /// The service's namespace (default `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The checked-out ref (`refs/heads/main`); may be empty.
    #[serde(default, rename = "ref")]
    pub git_ref: String,
    /// The checked-out commit (the base of the tree when `dirty`).
    pub sha: String,
    /// The working tree had uncommitted changes.
    #[serde(default)]
    pub dirty: bool,
    /// The text of the `pave.yaml` that runs, as the client read it.
    pub pave_yaml: String,
    /// The file's name for error messages (default `pave.yaml`).
    #[serde(default)]
    pub file: Option<String>,
    /// Run only these job ids (and what they need), as `pave run --job`.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// The machine it runs on, shown as the jobs' agent (`local:<host>`).
    pub host: String,
    /// Each job's lease (2-600 s, default 30); heartbeat before it ends.
    #[serde(default)]
    pub lease_seconds: Option<u64>,
}

/// A job of a local run with the lease token its client holds.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LocalJobView {
    #[serde(flatten)]
    pub job: JobView,
    /// Present with every heartbeat, log and report of this job.
    pub lease_token: String,
}

/// The recorded run and its leased jobs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LocalRunCreated {
    #[serde(flatten)]
    pub run: RunView,
    /// Always `local`.
    pub executor: String,
    pub dirty: bool,
    pub jobs: Vec<LocalJobView>,
}

/// Record a run executed by the caller (`pave run`).
///
/// The server plans the sent `pave.yaml` like a triggered run; every job
/// starts `running`, leased to the caller, and is never given to an agent.
/// Report each job through `/jobs/{id}/heartbeat|logs|complete` with its
/// lease token; a job whose lease expires ends `failure`.
#[utoipa::path(post, path = "/api/v1/runs/local", tag = "runs",
    security(("bearer" = [])), request_body = CreateLocalRunRequest,
    responses((status = 201, description = "run recorded; jobs leased to the caller", body = LocalRunCreated),
              (status = 400, description = "invalid service name", body = crate::error::ErrorBody),
              (status = 403, description = "the token may not act on this service's team", body = crate::error::ErrorBody),
              (status = 404, description = "no such service", body = crate::error::ErrorBody),
              (status = 422, description = "invalid body or pipeline; details list file, line, column", body = crate::error::ErrorBody)))]
pub async fn create_local_run(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateLocalRunRequest>,
) -> ApiResult<(StatusCode, Json<LocalRunCreated>)> {
    check_text("sha", &req.sha, true)?;
    check_text("ref", &req.git_ref, false)?;
    check_text("host", &req.host, true)?;
    if req.host.len() > 128 {
        return Err(ApiError::invalid(
            "invalid_body",
            "`host` must be at most 128 characters",
        ));
    }
    if req.pave_yaml.len() > MAX_PAVE_YAML {
        return Err(ApiError::invalid(
            "invalid_body",
            "pave_yaml is larger than 1 MiB",
        ));
    }
    if req.jobs.len() > 1000 || req.jobs.iter().any(|j| j.len() > 256) {
        return Err(ApiError::invalid(
            "invalid_body",
            "`jobs` lists at most 1000 job ids of at most 256 characters",
        ));
    }
    let lease = req.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
    if !LEASE_RANGE.contains(&lease) {
        return Err(ApiError::invalid(
            "invalid_body",
            format!(
                "lease_seconds must be between {} and {}",
                LEASE_RANGE.start(),
                LEASE_RANGE.end()
            ),
        ));
    }
    let file = req.file.clone().unwrap_or_else(|| "pave.yaml".into());
    check_text("file", &file, true)?;
    let row = service(&state, req.namespace.as_deref(), &req.service).await?;
    authorize(&auth.principal, &row)?;

    let service_name = row.name.clone();
    let (text, selected) = (req.pave_yaml, req.jobs);
    let templates = resolve_for(&state, &file, &text).await?;
    let (plan, jobs) = tokio::task::spawn_blocking(move || {
        let (plan, jobs) = plan_run(&file, &text, &service_name, &templates)?;
        select(plan, jobs, &selected)
    })
    .await
    .map_err(ApiError::internal)??;
    let new = NewLocalRun {
        run: NewRun {
            service_key: row.key.clone(),
            git_ref: req.git_ref,
            sha: req.sha,
            plan,
            trigger: "local".into(),
            actor: auth.principal.actor(),
            jobs,
        },
        dirty: req.dirty,
        holder: format!("local:{}", req.host.trim()),
        lease: Duration::from_secs(lease),
    };
    let created = state.store.create_local_run(&new).await?;
    Ok((
        StatusCode::CREATED,
        Json(LocalRunCreated {
            run: created.run.into(),
            executor: "local".into(),
            dirty: req.dirty,
            jobs: created
                .jobs
                .into_iter()
                .map(|l| LocalJobView {
                    job: l.job.into(),
                    lease_token: l.lease_token,
                })
                .collect(),
        }),
    ))
}

/// Keeps the jobs `ids` names and everything they need (all when empty),
/// in the stored plan and the job list alike; 422 for an unknown job id.
fn select(plan: Value, jobs: Vec<NewJob>, ids: &[String]) -> ApiResult<(Value, Vec<NewJob>)> {
    if ids.is_empty() {
        return Ok((plan, jobs));
    }
    let planned = jobs
        .iter()
        .map(|j| serde_json::from_value::<PlannedJob>(j.spec.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let kept = pave_pipeline::local::select_jobs(&RunPlan { jobs: planned }, ids)
        .map_err(|e| ApiError::invalid("unknown_job", e))?;
    let keys: HashSet<String> = kept.jobs.into_iter().map(|j| j.key).collect();
    let mut plan = plan;
    if let Some(Value::Array(list)) = plan.get_mut("jobs") {
        list.retain(|j| {
            j.get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| keys.contains(k))
        });
    }
    let jobs = jobs.into_iter().filter(|j| keys.contains(&j.key)).collect();
    Ok((plan, jobs))
}

/// Ends local jobs whose client stopped heartbeating, every second, for
/// as long as the server runs (every server does this; the store makes
/// each expiry happen once).
pub async fn reap_lost_local_jobs(state: AppState) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store.expire_lost_local_jobs(&PlanScheduler).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "local jobs ended: their `pave run` is gone"),
            Err(e) => tracing::warn!(error = %e, "expiring lost local jobs failed"),
        }
    }
}
