//! Deployments over HTTP: start one (by artifact digest, run, or the newest
//! green run), promote the release live in the previous environment, roll
//! back, read progress and analysis, and steer a running one (abort, pause,
//! resume, promote a step). The deploy controller does the work; handlers
//! validate, record, and wake it.

use super::runs::{authorize, service};
use crate::auth::{Auth, Developer, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use pave_deploy::controller::{Command, DeployController, DeploymentSpec, Phase};
use pave_store::{DeploymentLogRow, DeploymentRow, EntityRow, NewDeployment, RunRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What to deploy where.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Service name.
    pub service: String,
    /// Environment name.
    pub env: String,
    /// An artifact digest (`sha256:<hex>`) produced by one of the service's runs.
    pub artifact: Option<String>,
    /// A run id; its artifact is deployed.
    pub run: Option<String>,
    /// Which of the run's artifacts, when it has several.
    pub artifact_name: Option<String>,
}

/// Promote what runs in the previous environment.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub service: String,
    /// Target environment; the source is the one before it on the promotion path.
    pub to: String,
}

/// Roll back an environment to its previous good release.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub service: String,
    pub env: String,
}

/// A deployment as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeploymentView {
    pub id: String,
    pub service: String,
    pub env: String,
    pub number: i64,
    /// deploy | promote | rollback
    pub kind: String,
    pub digest: String,
    pub artifact: String,
    pub run_id: Option<String>,
    pub sha: Option<String>,
    pub strategy: String,
    /// pending | progressing | paused | succeeded | failed | rolled_back | aborted
    pub status: String,
    /// Where the controller is (start, wait-healthy, rolling, preview, steps, finish).
    pub stage: String,
    /// Canary step index.
    pub step: usize,
    /// Share of traffic on the new release.
    pub weight: u32,
    pub reason: Option<String>,
    pub actor: String,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

impl From<&DeploymentRow> for DeploymentView {
    fn from(d: &DeploymentRow) -> Self {
        let phase = Phase::from_json(&d.phase);
        let stage = serde_json::to_value(&phase.stage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        DeploymentView {
            id: d.id.clone(),
            service: crate::views::ref_name(&d.service_key).to_string(),
            env: d.env.clone(),
            number: d.number,
            kind: d.kind.clone(),
            digest: d.digest.clone(),
            artifact: d.artifact.clone(),
            run_id: d.run_id.clone(),
            sha: d.sha.clone(),
            strategy: d.strategy.clone(),
            status: d.status.clone(),
            stage,
            step: phase.step,
            weight: phase.weight,
            reason: d.reason.clone(),
            actor: d.actor.clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
            finished_at: d.finished_at.clone(),
        }
    }
}

/// One line of a deployment's log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeploymentLogView {
    pub seq: i64,
    pub time: String,
    /// step | analysis | decision | instance | note
    pub kind: String,
    pub message: String,
    /// Structured values (weights, analysis checks with their values).
    pub data: Value,
}

impl From<DeploymentLogRow> for DeploymentLogView {
    fn from(l: DeploymentLogRow) -> Self {
        DeploymentLogView {
            seq: l.seq,
            time: l.time,
            kind: l.kind,
            message: l.message,
            data: l.data,
        }
    }
}

/// A deployment with its log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeploymentDetail {
    pub deployment: DeploymentView,
    pub log: Vec<DeploymentLogView>,
}

/// Filters for the deployment list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    pub service: Option<String>,
    pub env: Option<String>,
    /// At most this many (default 50, max 500).
    pub limit: Option<i64>,
}

/// Log lines after this sequence number.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct DetailQuery {
    pub after: Option<i64>,
}

pub(crate) fn controller(state: &AppState) -> ApiResult<&DeployController> {
    state.deploy.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "deployments_disabled",
            "this server runs no deploy controller",
        )
    })
}

/// The artifacts a run's jobs reported: (name, digest).
async fn run_artifacts(state: &AppState, run: &RunRow) -> ApiResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for job in state.store.list_jobs(&run.id).await? {
        for a in job
            .result
            .get("artifacts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(n), Some(d)) = (
                a.get("name").and_then(Value::as_str),
                a.get("digest").and_then(Value::as_str),
            ) {
                out.push((n.to_string(), d.to_string()));
            }
        }
    }
    Ok(out)
}

/// Picks the run's artifact: by name, or the only one.
fn pick(
    run: &RunRow,
    list: &[(String, String)],
    name: Option<&str>,
) -> ApiResult<(String, String)> {
    let names = || {
        list.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(want) => list
            .iter()
            .find(|(n, _)| n == want)
            .cloned()
            .ok_or_else(|| {
                ApiError::invalid(
                    "unknown_artifact",
                    format!(
                        "run #{} has no artifact `{want}` (it has: {})",
                        run.number,
                        names()
                    ),
                )
            }),
        None => match list {
            [] => Err(ApiError::invalid(
                "no_artifact",
                format!(
                    "run #{} ({}) produced no artifact to deploy; add `artifacts:` to a job",
                    run.number, run.id
                ),
            )),
            [one] => Ok(one.clone()),
            _ => Err(ApiError::invalid(
                "ambiguous_artifact",
                format!(
                    "run #{} produced several artifacts ({}); name one with artifact_name",
                    run.number,
                    names()
                ),
            )),
        },
    }
}

/// The deploy section recorded with a run's plan.
fn deploy_spec_of(run: &RunRow) -> ApiResult<pave_model::DeploySpec> {
    let spec = run.plan.get("deploy").filter(|v| !v.is_null()).ok_or_else(|| {
        ApiError::invalid(
            "no_deploy_section",
            format!("pave.yaml at {} has no `deploy` section (run: and health:); nothing says how to start the service", short(&run.sha)),
        )
    })?;
    serde_json::from_value(spec.clone()).map_err(ApiError::internal)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Resolves what a deploy request names into a deployment to create.
async fn resolve(
    state: &AppState,
    svc: &EntityRow,
    req: &DeployRequest,
    actor: String,
) -> ApiResult<NewDeployment> {
    let ci = state
        .ci
        .as_ref()
        .ok_or_else(|| ApiError::internal("no artifact store"))?;
    let runs = state.store.list_runs(&svc.key, Some(500)).await?;
    let (run, (name, digest)) = match (&req.run, &req.artifact) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either an artifact digest or a run, not both",
            ));
        }
        (Some(run_id), None) => {
            let run = state
                .store
                .get_run(run_id)
                .await?
                .filter(|r| r.service_key == svc.key)
                .ok_or_else(|| {
                    ApiError::not_found(format!("no run `{run_id}` of service `{}`", svc.name))
                })?;
            if run.outcome.as_deref() != Some("success") {
                return Err(ApiError::invalid(
                    "run_not_green",
                    format!(
                        "run #{} is {} ({}); only a successful run's artifact can be deployed",
                        run.number,
                        run.status,
                        run.outcome.as_deref().unwrap_or("unfinished")
                    ),
                ));
            }
            let list = run_artifacts(state, &run).await?;
            let picked = pick(&run, &list, req.artifact_name.as_deref())?;
            (run, picked)
        }
        (None, Some(digest)) => {
            pave_pipeline::artifacts::parse_digest(digest)
                .map_err(|e| ApiError::invalid("invalid_digest", e.to_string()))?;
            let mut found = None;
            for r in runs
                .iter()
                .filter(|r| r.outcome.as_deref() == Some("success"))
            {
                let full = state
                    .store
                    .get_run(&r.id)
                    .await?
                    .ok_or_else(|| ApiError::internal("run vanished"))?;
                if let Some(hit) = run_artifacts(state, &full)
                    .await?
                    .into_iter()
                    .find(|(_, d)| d == digest)
                {
                    found = Some((full, hit));
                    break;
                }
            }
            found.ok_or_else(|| {
                ApiError::not_found(format!(
                    "no successful run of `{}` produced artifact {digest}",
                    svc.name
                ))
            })?
        }
        (None, None) => {
            let branch = svc_branch(svc);
            let newest = runs
                .iter()
                .find(|r| r.outcome.as_deref() == Some("success") && ref_is_branch(&r.git_ref, &branch))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "no_green_run",
                        format!("`{}` has no successful run of its default branch `{branch}`; run its pipeline first (`pave trigger {}`), or name --run / --artifact", svc.name, svc.name),
                    )
                })?;
            let run = state
                .store
                .get_run(&newest.id)
                .await?
                .ok_or_else(|| ApiError::internal("run vanished"))?;
            let list = run_artifacts(state, &run).await?;
            let picked = pick(&run, &list, req.artifact_name.as_deref())?;
            (run, picked)
        }
    };
    if !ci.artifacts.contains(&digest) {
        return Err(ApiError::invalid(
            "artifact_missing",
            format!(
                "artifact {digest} ({name}) of run #{} was never uploaded to this server",
                run.number
            ),
        ));
    }
    let deploy = deploy_spec_of(&run)?;
    let strategy = deploy.strategy_for(&req.env).name().to_string();
    let spec = DeploymentSpec {
        deploy,
        service: svc.name.clone(),
    };
    Ok(NewDeployment {
        service_key: svc.key.clone(),
        env: req.env.clone(),
        kind: "deploy".into(),
        digest,
        artifact: name,
        run_id: Some(run.id.clone()),
        sha: Some(run.sha.clone()),
        strategy,
        spec: serde_json::to_value(&spec).map_err(ApiError::internal)?,
        previous_id: None,
        actor,
    })
}

fn svc_branch(svc: &EntityRow) -> String {
    svc.document
        .pointer("/metadata/annotations/pave.dev~1default-branch")
        .and_then(Value::as_str)
        .unwrap_or("main")
        .to_string()
}

fn ref_is_branch(git_ref: &str, branch: &str) -> bool {
    git_ref == branch || git_ref.strip_prefix("refs/heads/") == Some(branch)
}

async fn known_env(state: &AppState, env: &str) -> ApiResult<()> {
    let envs = state.store.list_environments().await?;
    if envs.iter().any(|e| e.name == env) {
        return Ok(());
    }
    let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
    Err(ApiError::not_found(format!(
        "no environment `{env}` (environments: {})",
        names.join(", ")
    )))
}

async fn create(
    state: &AppState,
    new: NewDeployment,
) -> ApiResult<(StatusCode, Json<DeploymentView>)> {
    let controller = controller(state)?;
    let row = state.store.create_deployment(&new).await?;
    controller.wake();
    Ok((StatusCode::CREATED, Json(DeploymentView::from(&row))))
}

/// Deploy an artifact to an environment.
#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])),
    request_body = DeployRequest,
    responses((status = 201, body = DeploymentView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "a deployment of the service to that environment is in progress", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn create_deployment(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DeployRequest>,
) -> ApiResult<(StatusCode, Json<DeploymentView>)> {
    controller(&state)?;
    let svc = service(&state, None, &req.service).await?;
    authorize(&auth.principal, &svc)?;
    known_env(&state, &req.env).await?;
    let new = resolve(&state, &svc, &req, auth.principal.actor()).await?;
    create(&state, new).await
}

/// Deploy to `to` exactly the release that is live in the environment before it.
#[utoipa::path(post, path = "/api/v1/promotions", tag = "deployments", security(("bearer" = [])),
    request_body = PromoteRequest,
    responses((status = 201, body = DeploymentView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn promote(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PromoteRequest>,
) -> ApiResult<(StatusCode, Json<DeploymentView>)> {
    controller(&state)?;
    let svc = service(&state, None, &req.service).await?;
    authorize(&auth.principal, &svc)?;
    let envs = state.store.list_environments().await?;
    let pos = envs
        .iter()
        .position(|e| e.name == req.to)
        .ok_or_else(|| ApiError::not_found(format!("no environment `{}`", req.to)))?;
    let Some(from) = pos.checked_sub(1).map(|p| &envs[p]) else {
        return Err(ApiError::invalid(
            "first_environment",
            format!(
                "`{}` is the first environment on the promotion path; deploy to it with `pave deploy`",
                req.to
            ),
        ));
    };
    let live = state
        .store
        .env_releases(Some(&svc.key))
        .await?
        .into_iter()
        .find(|r| r.env == from.name)
        .ok_or_else(|| {
            ApiError::invalid(
                "nothing_to_promote",
                format!(
                    "nothing of `{}` runs in `{}` yet; deploy there first",
                    svc.name, from.name
                ),
            )
        })?;
    let source = state
        .store
        .get_deployment(&live.deployment_id)
        .await?
        .ok_or_else(|| ApiError::internal("live deployment vanished"))?;
    let mut spec: DeploymentSpec =
        serde_json::from_value(source.spec.clone()).map_err(ApiError::internal)?;
    spec.service = svc.name.clone();
    let strategy = spec.deploy.strategy_for(&req.to).name().to_string();
    create(
        &state,
        NewDeployment {
            service_key: svc.key.clone(),
            env: req.to.clone(),
            kind: "promote".into(),
            digest: source.digest.clone(),
            artifact: source.artifact.clone(),
            run_id: source.run_id.clone(),
            sha: source.sha.clone(),
            strategy,
            spec: serde_json::to_value(&spec).map_err(ApiError::internal)?,
            previous_id: Some(source.id.clone()),
            actor: auth.principal.actor(),
        },
    )
    .await
}

/// Roll an environment back to its previous good release.
#[utoipa::path(post, path = "/api/v1/rollbacks", tag = "deployments", security(("bearer" = [])),
    request_body = RollbackRequest,
    responses((status = 201, body = DeploymentView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn rollback(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<(StatusCode, Json<DeploymentView>)> {
    controller(&state)?;
    let svc = service(&state, None, &req.service).await?;
    authorize(&auth.principal, &svc)?;
    known_env(&state, &req.env).await?;
    let live = state
        .store
        .env_releases(Some(&svc.key))
        .await?
        .into_iter()
        .find(|r| r.env == req.env)
        .ok_or_else(|| {
            ApiError::invalid(
                "nothing_deployed",
                format!("nothing of `{}` runs in `{}`", svc.name, req.env),
            )
        })?;
    let target = state
        .store
        .previous_good_deployment(&svc.key, &req.env, &live.digest)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "no_previous_release",
                format!(
                    "`{}` has no earlier good release in `{}` to roll back to",
                    svc.name, req.env
                ),
            )
        })?;
    create(
        &state,
        NewDeployment {
            service_key: svc.key.clone(),
            env: req.env.clone(),
            kind: "rollback".into(),
            digest: target.digest.clone(),
            artifact: target.artifact.clone(),
            run_id: target.run_id.clone(),
            sha: target.sha.clone(),
            strategy: "rolling".into(),
            spec: target.spec.clone(),
            previous_id: Some(live.deployment_id.clone()),
            actor: auth.principal.actor(),
        },
    )
    .await
}

/// Deployments, newest first.
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = [DeploymentView]), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_deployments(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<DeploymentView>>> {
    let key = match &q.service {
        Some(name) => Some(service(&state, None, name).await?.key),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = state
        .store
        .list_deployments(key.as_deref(), q.env.as_deref(), limit)
        .await?;
    Ok(Json(rows.iter().map(DeploymentView::from).collect()))
}

/// One deployment with its log (steps, analysis values, decisions).
#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, description = "deployment id"), DetailQuery),
    responses((status = 200, body = DeploymentDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_deployment(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> ApiResult<Json<DeploymentDetail>> {
    let d = state
        .store
        .get_deployment(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment `{id}`")))?;
    let log = state
        .store
        .deployment_log(&id, q.after.unwrap_or(0))
        .await?;
    Ok(Json(DeploymentDetail {
        deployment: DeploymentView::from(&d),
        log: log.into_iter().map(DeploymentLogView::from).collect(),
    }))
}

/// Steer a running deployment: `abort` (all traffic back to stable),
/// `pause`, `resume`, or `promote-step` (end the current pause or analysis).
#[utoipa::path(post, path = "/api/v1/deployments/{id}/{action}", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, description = "deployment id"),
           ("action" = String, Path, description = "abort | pause | resume | promote-step")),
    responses((status = 200, body = DeploymentView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the deployment already ended or is not in that state", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn control(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Json<DeploymentView>> {
    let controller = controller(&state)?;
    let actor = auth.principal.actor();
    let cmd = match action.as_str() {
        "abort" => Command::Abort { actor },
        "pause" => Command::Pause { actor },
        "resume" => Command::Resume { actor },
        "promote-step" => Command::PromoteStep { actor },
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action `{other}` (expected abort, pause, resume or promote-step)"
            )));
        }
    };
    let d = state
        .store
        .get_deployment(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment `{id}`")))?;
    if let Some(row) = state.store.get_entity(&d.service_key).await? {
        authorize(&auth.principal, &row)?;
    }
    use pave_deploy::controller::ControlError;
    match controller.command(&id, cmd).await {
        Ok(row) => Ok(Json(DeploymentView::from(&row))),
        Err(ControlError::NotFound(m)) => Err(ApiError::not_found(format!("no deployment `{m}`"))),
        Err(ControlError::Refused(m)) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", m)),
        Err(ControlError::Store(e)) => Err(e.into()),
    }
}
