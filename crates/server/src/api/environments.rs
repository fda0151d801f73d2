//! Environments (the promotion path), what runs where, instance logs, the
//! traffic metrics behind a deployment's analysis, and the Prometheus
//! exposition of the edge proxy's counters.

use super::deployments::controller;
use super::runs::service;
use crate::auth::{Admin, Auth, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use pave_deploy::controller::{Phase, host_for};
use serde::{Deserialize, Serialize};

/// An environment on the promotion path.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EnvironmentView {
    pub name: String,
    /// Order on the promotion path (1 = first).
    pub position: i64,
    /// How instances run (`process`).
    pub runtime: String,
    pub description: String,
}

/// A new environment.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Insert after this environment (default: at the end of the path).
    pub after: Option<String>,
}

/// What runs where: a service's stable release in one environment.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReleaseView {
    pub service: String,
    pub env: String,
    pub deployment_id: String,
    pub digest: String,
    pub sha: Option<String>,
    /// When it became stable there.
    pub since: String,
    /// Where the edge proxy serves it (Host header).
    pub host: String,
    /// Running instances of the release.
    pub instances: usize,
}

/// One line of an instance's output.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceLogView {
    pub instance: String,
    pub line: String,
}

/// Which logs.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    pub env: String,
    /// Last N lines (default 100, max 5000).
    pub lines: Option<usize>,
}

/// Per-second traffic of one release.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    pub unix_s: u64,
    pub requests: u64,
    pub errors_5xx: u64,
    /// 95th percentile latency in milliseconds.
    pub p95_ms: Option<f64>,
}

/// The traffic of a deployment's releases over its life.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeploymentMetrics {
    /// The new release.
    pub canary: Vec<SeriesPoint>,
    /// The release it replaces.
    pub stable: Vec<SeriesPoint>,
}

/// The promotion path.
#[utoipa::path(get, path = "/api/v1/environments", tag = "deployments", security(("bearer" = [])),
    responses((status = 200, body = [EnvironmentView])))]
pub async fn list_environments(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<EnvironmentView>>> {
    let rows = state.store.list_environments().await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| EnvironmentView {
                name: e.name,
                position: e.position,
                runtime: e.runtime,
                description: e.description,
            })
            .collect(),
    ))
}

/// Add an environment to the promotion path.
#[utoipa::path(post, path = "/api/v1/environments", tag = "deployments", security(("bearer" = [])),
    request_body = NewEnvironment,
    responses((status = 201, body = EnvironmentView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_environment(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewEnvironment>,
) -> ApiResult<(StatusCode, Json<EnvironmentView>)> {
    pave_model::entity_name_rule(&req.name).map_err(|rule| {
        ApiError::bad_request(format!("invalid environment name `{}`: {rule}", req.name))
    })?;
    if req.description.len() > 1024 {
        return Err(ApiError::bad_request(
            "description is longer than 1024 bytes",
        ));
    }
    let e = state
        .store
        .create_environment(
            &req.name,
            &req.description,
            req.after.as_deref(),
            &auth.principal.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnvironmentView {
            name: e.name,
            position: e.position,
            runtime: e.runtime,
            description: e.description,
        }),
    ))
}

/// What runs where for a service.
#[utoipa::path(get, path = "/api/v1/services/{name}/releases", tag = "deployments", security(("bearer" = [])),
    params(("name" = String, Path, description = "service name")),
    responses((status = 200, body = [ReleaseView]), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn service_releases(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<ReleaseView>>> {
    let svc = service(&state, None, &name).await?;
    let running = state
        .deploy
        .as_ref()
        .map(|c| c.runtime().list())
        .unwrap_or_default();
    let rows = state.store.env_releases(Some(&svc.key)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| ReleaseView {
                instances: running
                    .iter()
                    .filter(|i| i.spec.release == r.deployment_id)
                    .count(),
                host: host_for(&svc.name, &r.env),
                service: svc.name.clone(),
                env: r.env,
                deployment_id: r.deployment_id,
                digest: r.digest,
                sha: r.sha,
                since: r.since,
            })
            .collect(),
    ))
}

/// The latest output of a service's instances in one environment.
#[utoipa::path(get, path = "/api/v1/services/{name}/logs", tag = "deployments", security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"), LogsQuery),
    responses((status = 200, body = [InstanceLogView]), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn service_logs(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Vec<InstanceLogView>>> {
    let svc = service(&state, None, &name).await?;
    let controller = controller(&state)?;
    let lines = q.lines.unwrap_or(100).clamp(1, 5000);
    let out = controller
        .runtime()
        .tail_logs(&svc.name, &q.env, lines)
        .await;
    Ok(Json(
        out.into_iter()
            .map(|l| InstanceLogView {
                instance: l.instance.as_str().to_string(),
                line: l.line,
            })
            .collect(),
    ))
}

/// Per-second traffic of a deployment's new and stable releases.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/metrics", tag = "deployments", security(("bearer" = [])),
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 200, body = DeploymentMetrics), (status = 404, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn deployment_metrics(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeploymentMetrics>> {
    let controller = controller(&state)?;
    let d = state
        .store
        .get_deployment(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment `{id}`")))?;
    Ok(Json(series_of(controller, &d)))
}

/// The edge proxy's counters in the Prometheus text format (public, for scrapers).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn prometheus_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    if let Some(c) = &state.deploy {
        c.metrics().render_prometheus(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Per-second traffic of a deployment's new release and the stable one it
/// replaces, over the deployment's life (API and portal alike).
pub(crate) fn series_of(
    controller: &pave_deploy::controller::DeployController,
    d: &pave_store::DeploymentRow,
) -> DeploymentMetrics {
    let phase = Phase::from_json(&d.phase);
    let from =
        chrono::DateTime::parse_from_rfc3339(&d.created_at).map_or(0, |t| t.timestamp() as u64);
    let to = d
        .finished_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(u64::MAX, |t| t.timestamp() as u64 + 2);
    let series = |release: &str| -> Vec<SeriesPoint> {
        controller
            .metrics()
            .seconds(release, from, to)
            .into_iter()
            .map(|s| SeriesPoint {
                unix_s: s.unix_s,
                requests: s.requests,
                errors_5xx: s.status_classes[4],
                p95_ms: s.latency.quantile(0.95).map(|d| d.as_secs_f64() * 1000.0),
            })
            .collect()
    };
    DeploymentMetrics {
        canary: series(&d.id),
        stable: phase.stable_id.as_deref().map(series).unwrap_or_default(),
    }
}
