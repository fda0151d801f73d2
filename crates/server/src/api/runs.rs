//! Pipeline runs: trigger a run of a service's pipeline (parsed and planned
//! here, nothing queued when it is invalid), list and read runs with their
//! jobs, read logs from an offset, cancel. The agent protocol is in `agents`.

pub mod agents;
pub mod scheduler;

use super::pipeline_templates::{ResolvedTemplates, resolve_for};
use crate::auth::{Auth, Developer, Principal, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use crate::views::ref_name;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use pave_model::{EntityRef, Kind, SpecError, SpecErrors, parse_pave_yaml};
use pave_pipeline::plan::plan;
use pave_store::{EntityRow, JobRow, LogLineRow, NewJob, NewRun, RunRow};
use scheduler::PlanScheduler;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Largest `pave.yaml` accepted for a run.
const MAX_PAVE_YAML: usize = 1024 * 1024;

/// A run to start.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRunRequest {
    /// The git ref built (`refs/heads/main`); may be empty.
    #[serde(default, rename = "ref")]
    pub git_ref: String,
    /// The commit built.
    pub sha: String,
    /// The text of `pave.yaml` at that commit, as the client read it.
    pub pave_yaml: String,
    /// The file's name for error messages (default `pave.yaml`).
    #[serde(default)]
    pub file: Option<String>,
}

/// Optional namespace of the service (default `default`).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct RunListQuery {
    pub namespace: Option<String>,
    /// At most this many runs, newest first (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Where to start reading a run's log.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// Only lines with a greater seq (default 0: from the start).
    pub after: Option<i64>,
    /// At most this many lines (default 1000, max 10000).
    pub limit: Option<i64>,
}

/// A run as lists show it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    /// Service name.
    pub service: String,
    pub service_key: String,
    /// 1, 2, 3 ... per service.
    pub number: i64,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    /// `queued`, `running` or `finished`.
    pub status: String,
    /// `success`, `failure`, `cancelled` or `skipped` once finished.
    pub outcome: Option<String>,
    pub trigger: String,
    pub actor: String,
    pub cancel_requested: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A job of a run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    /// Instance key, e.g. `test (py=3.12)`.
    pub key: String,
    pub job_id: String,
    pub name: String,
    /// Keys of the jobs it waits for.
    pub needs: Vec<String>,
    /// `waiting`, `queued`, `running`, `finished` or `skipped`.
    pub status: String,
    pub outcome: Option<String>,
    /// Why it was skipped (or failed without running).
    pub reason: Option<String>,
    pub attempt: i64,
    /// The agent that holds (or held) it.
    pub agent: Option<String>,
    pub cancel_requested: bool,
    pub lease_expires_at: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[schema(value_type = Object)]
    pub outputs: Value,
    /// The agent's report (step results, durations, cache hits).
    #[schema(value_type = Object)]
    pub result: Value,
}

/// A run with its jobs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    /// `agent` (run by agents) or `local` (run by `pave run` and recorded here).
    pub executor: String,
    /// A local run of a working tree with uncommitted changes (its `sha` is the base).
    pub dirty: bool,
    pub jobs: Vec<JobView>,
}

/// A page of a run's log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLineView>,
    /// Pass as `after` to read on.
    pub last_seq: i64,
    /// The run has finished (no new lines will come once read to the end).
    pub finished: bool,
}

/// One log line.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogLineView {
    pub seq: i64,
    pub job_id: String,
    pub attempt: i64,
    pub step: String,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub text: String,
    pub time: String,
}

impl From<RunRow> for RunView {
    fn from(r: RunRow) -> RunView {
        RunView {
            service: ref_name(&r.service_key).to_string(),
            id: r.id,
            service_key: r.service_key,
            number: r.number,
            git_ref: r.git_ref,
            sha: r.sha,
            status: r.status,
            outcome: r.outcome,
            trigger: r.trigger,
            actor: r.actor,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

impl From<JobRow> for JobView {
    fn from(j: JobRow) -> JobView {
        JobView {
            id: j.id,
            key: j.key,
            job_id: j.job_id,
            name: j.name,
            needs: j.needs,
            status: j.status,
            outcome: j.outcome,
            reason: j.reason,
            attempt: j.attempt,
            agent: j.lease_owner,
            cancel_requested: j.cancel_requested,
            lease_expires_at: j.lease_expires_at,
            queued_at: j.queued_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            outputs: j.outputs,
            result: j.result,
        }
    }
}

impl From<LogLineRow> for LogLineView {
    fn from(l: LogLineRow) -> LogLineView {
        LogLineView {
            seq: l.seq,
            job_id: l.job_id,
            attempt: l.attempt,
            step: l.step,
            stream: l.stream,
            text: l.text,
            time: l.time,
        }
    }
}

/// The catalog row of a service, or 404.
pub(crate) async fn service(
    state: &AppState,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<EntityRow> {
    let namespace = namespace.unwrap_or("default");
    for (part, value) in [("namespace", namespace), ("name", name)] {
        pave_model::entity_name_rule(value)
            .map_err(|rule| ApiError::bad_request(format!("invalid {part} `{value}`: {rule}")))?;
    }
    let key = EntityRef::new(Kind::Component, namespace, name).key();
    state
        .store
        .get_entity(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no service `{key}` in the catalog")))
}

/// 403 unless the principal may change the service's team.
pub(crate) fn authorize(principal: &Principal, service: &EntityRow) -> ApiResult<()> {
    let team = service.owner_key.as_deref().map(ref_name);
    if principal.may_change_team(team) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "your token may act only on team `{}`'s services; `{}` is owned by {}",
        principal.team.as_deref().unwrap_or("-"),
        service.name,
        team.unwrap_or("no team")
    )))
}

/// 422 with every located error in `details.errors` (the shape apply uses).
fn spec_error(errors: Vec<SpecError>) -> ApiError {
    let message = match errors.as_slice() {
        [one] => one.to_string(),
        [first, ..] => format!("{first} (and {} more)", errors.len() - 1),
        [] => "invalid pipeline".to_string(),
    };
    ApiError::invalid("invalid_spec", message).with_details(json!({ "errors": errors }))
}

/// Checks a short identifier-like field (sha, ref).
pub(crate) fn check_text(what: &str, value: &str, required: bool) -> ApiResult<()> {
    if required && value.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("`{what}` must not be empty"),
        ));
    }
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("`{what}` must be at most 256 characters without control characters"),
        ));
    }
    Ok(())
}

/// Parses `pave.yaml`, checks it names `service`, expands its `uses:` jobs
/// with `templates` (looked up by `pipeline_templates::resolve_for`), and
/// plans its pipeline into the run's jobs and stored plan.
pub(crate) fn plan_run(
    file: &str,
    text: &str,
    service: &str,
    templates: &ResolvedTemplates,
) -> ApiResult<(Value, Vec<NewJob>)> {
    let doc = parse_pave_yaml(file, text).map_err(|SpecErrors(errs)| spec_error(errs))?;
    let located = |message: String| spec_error(vec![SpecError::new(file, 0, 0, message)]);
    let named = &doc.service.entity.metadata.name;
    if named != service {
        return Err(spec_error(vec![SpecError::new(
            file,
            doc.service.line,
            doc.service.column,
            format!("this pave.yaml describes service `{named}`, not `{service}`"),
        )]));
    }
    let pipeline = doc
        .pipeline
        .ok_or_else(|| located("pave.yaml has no `pipeline` section to run".into()))?;
    let pipeline = templates
        .expand(file, text, &pipeline)
        .map_err(|SpecErrors(errs)| spec_error(errs))?;
    let run_plan = plan(&pipeline).map_err(|e| located(e.to_string()))?;
    let jobs = run_plan
        .jobs
        .iter()
        .map(|j| {
            Ok(NewJob {
                key: j.key.clone(),
                job_id: j.job_id.clone(),
                name: j.name.clone(),
                needs: j.depends_on.clone(),
                spec: serde_json::to_value(j).map_err(ApiError::internal)?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let stored = json!({
        "name": pipeline.name,
        "env": pipeline.env,
        "defaults": pipeline.defaults,
        "jobs": run_plan.jobs,
        // Kept with the run so a deployment of its artifact starts it the
        // way pave.yaml said at this commit.
        "deploy": doc.deploy,
    });
    Ok((stored, jobs))
}

/// Plans `text` (the service's `file` at `sha`) and creates the run: the
/// one path by which runs start, for `POST /services/{name}/runs` and push
/// webhooks alike. An invalid pipeline answers 422 and queues nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_run(
    state: &AppState,
    row: &EntityRow,
    git_ref: String,
    sha: String,
    file: String,
    text: String,
    trigger: &str,
    actor: String,
) -> ApiResult<RunRow> {
    check_text("sha", &sha, true)?;
    check_text("ref", &git_ref, false)?;
    check_text("file", &file, true)?;
    if text.len() > MAX_PAVE_YAML {
        return Err(ApiError::invalid(
            "invalid_body",
            "pave_yaml is larger than 1 MiB",
        ));
    }
    let service_name = row.name.clone();
    let templates = resolve_for(state, &file, &text).await?;
    let (plan, jobs) =
        tokio::task::spawn_blocking(move || plan_run(&file, &text, &service_name, &templates))
            .await
            .map_err(ApiError::internal)??;
    let new = NewRun {
        service_key: row.key.clone(),
        git_ref,
        sha,
        plan,
        trigger: trigger.into(),
        actor,
        jobs,
    };
    let run = state.store.create_run(&new, &PlanScheduler).await?;
    agents::wake();
    Ok(run)
}

/// Start a run of a service's pipeline.
///
/// The client sends the `pave.yaml` text at the commit; the server parses
/// and plans it. An invalid pipeline answers 422 with located errors and
/// queues nothing. Jobs that need nothing are queued; the rest wait.
#[utoipa::path(post, path = "/api/v1/services/{name}/runs", tag = "runs",
    security(("bearer" = [])), request_body = CreateRunRequest,
    params(("name" = String, Path, description = "service name"), RunListQuery),
    responses((status = 201, description = "run created", body = RunDetail),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 422, description = "invalid pipeline; details list file, line, column", body = crate::error::ErrorBody)))]
pub async fn create_run(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RunListQuery>,
    ApiJson(req): ApiJson<CreateRunRequest>,
) -> ApiResult<(StatusCode, Json<RunDetail>)> {
    check_text("sha", &req.sha, true)?;
    check_text("ref", &req.git_ref, false)?;
    if req.pave_yaml.len() > MAX_PAVE_YAML {
        return Err(ApiError::invalid(
            "invalid_body",
            "pave_yaml is larger than 1 MiB",
        ));
    }
    let file = req.file.clone().unwrap_or_else(|| "pave.yaml".into());
    check_text("file", &file, true)?;
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    authorize(&auth.principal, &row)?;
    let run = start_run(
        &state,
        &row,
        req.git_ref,
        req.sha,
        file,
        req.pave_yaml,
        "api",
        auth.principal.actor(),
    )
    .await?;
    let jobs = state.store.list_jobs(&run.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(RunDetail {
            run: run.into(),
            executor: "agent".into(),
            dirty: false,
            jobs: jobs.into_iter().map(JobView::from).collect(),
        }),
    ))
}

/// List a service's runs, newest first.
#[utoipa::path(get, path = "/api/v1/services/{name}/runs", tag = "runs",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"), RunListQuery),
    responses((status = 200, body = [RunView]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_runs(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RunListQuery>,
) -> ApiResult<Json<Vec<RunView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    let runs = state.store.list_runs(&row.key, Some(limit)).await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}

/// The run, or 404.
async fn load_run(state: &AppState, id: &str) -> ApiResult<RunRow> {
    state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))
}

/// One run with its jobs and their step results.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = RunDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_run(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    let run = load_run(&state, &id).await?;
    let jobs = state.store.list_jobs(&id).await?;
    let execution = state.store.run_execution(&id).await?;
    Ok(Json(RunDetail {
        run: run.into(),
        executor: execution
            .as_ref()
            .map_or_else(|| "agent".into(), |e| e.executor.clone()),
        dirty: execution.is_some_and(|e| e.dirty),
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

/// A run's log lines after an offset (all jobs, in order).
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "run id"), LogQuery),
    responses((status = 200, body = LogPage), (status = 404, body = crate::error::ErrorBody)))]
pub async fn run_logs(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<LogPage>> {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000);
    if after < 0 || !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(
            "after must be >= 0 and limit between 1 and 10000",
        ));
    }
    // Read the status first: a finished run has all its lines already.
    let run = load_run(&state, &id).await?;
    let lines = state.store.read_logs(&id, after, Some(limit)).await?;
    let last_seq = lines.last().map_or(after, |l| l.seq);
    Ok(Json(LogPage {
        finished: run.status == "finished",
        lines: lines.into_iter().map(LogLineView::from).collect(),
        last_seq,
    }))
}

/// Cancel a run: pending jobs end `cancelled`, running ones are told to stop.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = RunView), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the run has already finished", body = crate::error::ErrorBody)))]
pub async fn cancel_run(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = load_run(&state, &id).await?;
    if let Some(row) = state.store.get_entity(&run.service_key).await? {
        authorize(&auth.principal, &row)?;
    } else if auth.principal.team.is_some() && auth.principal.role != crate::auth::Role::Admin {
        return Err(ApiError::forbidden(
            "the run's service is gone; only unscoped tokens may cancel it",
        ));
    }
    let run = state.store.cancel_run(&id, &auth.principal.actor()).await?;
    Ok(Json(run.into()))
}
