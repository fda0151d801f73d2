//! Test results and flaky tests: a run's test cases, flaky-test detection
//! over the recorded results, and the per-service test quarantine.
//!
//! A test is flaky when, within the window, it both passed and failed on
//! the same commit, or passed on retry (see
//! [`pave_pipeline::junit::detect_flaky`]). The window is each test's newest
//! `window` (default 200) non-skipped results of the last `days` (default
//! 30) days. Quarantined tests still run and are recorded; agents learn the
//! set with each claimed job, and a step whose only failures are quarantined
//! tests does not fail its job.

use crate::auth::{Auth, Developer, Principal, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use crate::views::ref_name;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use pave_model::{EntityRef, Kind};
use pave_pipeline::junit::{FlakyReason, TestObservation, TestStatus, detect_flaky};
use pave_store::{EntityRow, QuarantineRow, TestObservationRow, TestResultRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Default and largest look-back of flaky detection, in days.
const DEFAULT_DAYS: i64 = 30;
const MAX_DAYS: i64 = 365;
/// Default and largest number of newest results per test that count.
const DEFAULT_WINDOW: i64 = 200;
const MAX_WINDOW: i64 = 1_000;

/// Which flaky tests to list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct FlakyQuery {
    /// Only this service (default: every service).
    pub service: Option<String>,
    /// The service's namespace (default `default`).
    pub namespace: Option<String>,
    /// Look back this many days (1-365, default 30).
    pub days: Option<i64>,
    /// Count each test's newest this many results (1-1000, default 200).
    pub window: Option<i64>,
}

/// Why a test is considered flaky.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlakyReasonView {
    /// `passed_on_retry` or `mixed_on_commit`.
    pub kind: String,
    /// For `mixed_on_commit`: the commit it both passed and failed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
}

/// One run that shows the flakiness.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EvidenceView {
    pub run_id: String,
    /// The commit the run tested.
    pub sha: String,
    /// The test's result in that run: `passed`, `passed_on_retry`, `failed`
    /// or `error`.
    pub status: String,
    /// When it was recorded.
    pub time: String,
}

/// A flaky test with its evidence.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlakyTestView {
    /// Service name.
    pub service: String,
    pub service_key: String,
    /// `classname::name`.
    pub test_id: String,
    /// `failing / observations`: results in the window that failed or
    /// passed only after a failed attempt, over all its (non-skipped) results.
    pub flake_rate: f64,
    pub failing: u32,
    pub observations: u32,
    /// The newest evidence (RFC 3339).
    pub last_seen: String,
    /// The runs that show it, oldest first.
    pub evidence: Vec<EvidenceView>,
    pub reasons: Vec<FlakyReasonView>,
    /// Quarantined: it still runs but does not fail its job.
    pub quarantined: bool,
}

/// One test case result of a run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestCaseView {
    pub job_id: String,
    /// The job's instance key.
    pub job: String,
    pub attempt: i64,
    /// `classname::name`.
    pub test_id: String,
    pub suite: String,
    /// `passed`, `failed`, `error` or `skipped`.
    pub status: String,
    pub duration_ms: i64,
    /// The failure/error/skip message (at most 4 KiB).
    pub message: Option<String>,
    /// Failed attempts before a final pass.
    pub flaky_reruns: i64,
    /// Failed reruns after a failure.
    pub failed_reruns: i64,
    /// Quarantined now for the run's service.
    pub quarantined: bool,
}

/// Counts of a run's test cases.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct TestTotals {
    pub tests: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
    /// Passed after retries.
    pub flaky: usize,
}

/// A run's test results.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunTests {
    pub run_id: String,
    /// Service name.
    pub service: String,
    pub sha: String,
    pub totals: TestTotals,
    pub tests: Vec<TestCaseView>,
}

/// A test to quarantine.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    /// `classname::name`, as `pave tests flaky` and run test lists show it.
    pub test_id: String,
    /// Why (shown in lists and the event log).
    #[serde(default)]
    pub reason: String,
}

/// A test to release: the optional JSON body of DELETE.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnquarantineRequest {
    /// The quarantined test id.
    pub test_id: String,
}

/// The test to release, when not given in a body.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct TestIdQuery {
    /// The quarantined test id.
    pub test_id: Option<String>,
}

/// The namespace of a service path (default `default`).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct NamespaceQuery {
    pub namespace: Option<String>,
}

/// A quarantined test.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QuarantineView {
    /// Service name.
    pub service: String,
    pub service_key: String,
    pub test_id: String,
    pub reason: String,
    /// Who quarantined it.
    pub actor: String,
    pub time: String,
}

impl From<QuarantineRow> for QuarantineView {
    fn from(q: QuarantineRow) -> QuarantineView {
        QuarantineView {
            service: ref_name(&q.service_key).to_string(),
            service_key: q.service_key,
            test_id: q.test_id,
            reason: q.reason,
            actor: q.actor,
            time: q.time,
        }
    }
}

/// The catalog key of a service name, after checking the name.
fn service_key(namespace: Option<&str>, name: &str) -> ApiResult<String> {
    let namespace = namespace.unwrap_or("default");
    for (part, value) in [("namespace", namespace), ("name", name)] {
        pave_model::entity_name_rule(value)
            .map_err(|rule| ApiError::bad_request(format!("invalid {part} `{value}`: {rule}")))?;
    }
    Ok(EntityRef::new(Kind::Component, namespace, name).key())
}

/// The catalog row of a service, or 404.
async fn service(state: &AppState, namespace: Option<&str>, name: &str) -> ApiResult<EntityRow> {
    let key = service_key(namespace, name)?;
    state
        .store
        .get_entity(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no service `{key}` in the catalog")))
}

/// 403 unless the principal may change the service's team.
fn authorize(principal: &Principal, service: &EntityRow) -> ApiResult<()> {
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

fn parse_status(s: &str) -> Option<TestStatus> {
    match s {
        "passed" => Some(TestStatus::Passed),
        "failed" => Some(TestStatus::Failed),
        "error" => Some(TestStatus::Error),
        "skipped" => Some(TestStatus::Skipped),
        _ => None,
    }
}

fn millis(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// Runs flaky detection over the observations of each service.
fn flaky_views(
    observations: &[TestObservationRow],
    quarantined: &BTreeSet<(String, String)>,
    window: usize,
) -> Vec<FlakyTestView> {
    let mut by_service: BTreeMap<&str, Vec<&TestObservationRow>> = BTreeMap::new();
    for o in observations {
        by_service.entry(&o.service_key).or_default().push(o);
    }
    let mut out = Vec::new();
    for (service_key, rows) in by_service {
        let obs: Vec<TestObservation> = rows
            .iter()
            .filter_map(|o| {
                Some(TestObservation {
                    test_id: o.test_id.clone(),
                    commit: o.sha.clone(),
                    run_id: o.run_id.clone(),
                    status: parse_status(&o.status)?,
                    flaky_reruns: u32::try_from(o.flaky_reruns).unwrap_or(u32::MAX),
                    at_ms: millis(&o.time),
                })
            })
            .collect();
        for flaky in detect_flaky(&obs, window) {
            let mut evidence: Vec<EvidenceView> = Vec::new();
            for run_id in &flaky.evidence_run_ids {
                let in_run: Vec<&&TestObservationRow> = rows
                    .iter()
                    .filter(|o| &o.run_id == run_id && o.test_id == flaky.test_id)
                    .collect();
                let Some(first) = in_run.first() else {
                    continue;
                };
                let status = if let Some(bad) = in_run
                    .iter()
                    .find(|o| o.status == "failed" || o.status == "error")
                {
                    bad.status.clone()
                } else if in_run.iter().any(|o| o.flaky_reruns > 0) {
                    "passed_on_retry".to_string()
                } else {
                    "passed".to_string()
                };
                evidence.push(EvidenceView {
                    run_id: run_id.clone(),
                    sha: first.sha.clone(),
                    status,
                    time: in_run
                        .iter()
                        .map(|o| o.time.as_str())
                        .max()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            let last_seen = chrono::DateTime::from_timestamp_millis(flaky.last_seen_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
            out.push(FlakyTestView {
                service: ref_name(service_key).to_string(),
                service_key: service_key.to_string(),
                quarantined: quarantined
                    .contains(&(service_key.to_string(), flaky.test_id.clone())),
                test_id: flaky.test_id,
                flake_rate: flaky.flake_rate,
                failing: flaky.flaky_runs,
                observations: flaky.runs,
                last_seen,
                evidence,
                reasons: flaky
                    .reasons
                    .into_iter()
                    .map(|r| match r {
                        FlakyReason::PassedOnRetry => FlakyReasonView {
                            kind: "passed_on_retry".into(),
                            sha: None,
                        },
                        FlakyReason::MixedOnCommit { commit } => FlakyReasonView {
                            kind: "mixed_on_commit".into(),
                            sha: Some(commit),
                        },
                    })
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| {
        b.flake_rate
            .total_cmp(&a.flake_rate)
            .then_with(|| a.service_key.cmp(&b.service_key))
            .then_with(|| a.test_id.cmp(&b.test_id))
    });
    out
}

/// List flaky tests, most flaky first.
///
/// A test is flaky when it both passed and failed on one commit, or passed
/// on retry, within each test's newest `window` results of the last `days`.
#[utoipa::path(get, path = "/api/v1/tests/flaky", tag = "tests", security(("bearer" = [])),
    params(FlakyQuery),
    responses((status = 200, body = [FlakyTestView]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_flaky(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Query(q): Query<FlakyQuery>,
) -> ApiResult<Json<Vec<FlakyTestView>>> {
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    let window = q.window.unwrap_or(DEFAULT_WINDOW);
    if !(1..=MAX_DAYS).contains(&days) || !(1..=MAX_WINDOW).contains(&window) {
        return Err(ApiError::bad_request(format!(
            "days must be between 1 and {MAX_DAYS} and window between 1 and {MAX_WINDOW}"
        )));
    }
    let key = match &q.service {
        Some(name) => Some(service(&state, q.namespace.as_deref(), name).await?.key),
        None => None,
    };
    let since = (chrono::Utc::now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let observations = state
        .store
        .test_observations(key.as_deref(), &since, window)
        .await?;
    let quarantined: BTreeSet<(String, String)> = state
        .store
        .list_quarantined_tests(key.as_deref())
        .await?
        .into_iter()
        .map(|q| (q.service_key, q.test_id))
        .collect();
    let window = usize::try_from(window).unwrap_or(0);
    let views =
        tokio::task::spawn_blocking(move || flaky_views(&observations, &quarantined, window))
            .await
            .map_err(ApiError::internal)?;
    Ok(Json(views))
}

/// A run's test case results with totals.
#[utoipa::path(get, path = "/api/v1/runs/{id}/tests", tag = "tests", security(("bearer" = [])),
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = RunTests), (status = 404, body = crate::error::ErrorBody)))]
pub async fn run_tests(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunTests>> {
    let run = state
        .store
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let rows: Vec<TestResultRow> = state.store.list_run_tests(&id).await?;
    let quarantined: BTreeSet<String> = state
        .store
        .list_quarantined_tests(Some(&run.service_key))
        .await?
        .into_iter()
        .map(|q| q.test_id)
        .collect();
    let mut totals = TestTotals::default();
    let mut tests = Vec::with_capacity(rows.len());
    for r in rows {
        totals.tests += 1;
        match r.status.as_str() {
            "passed" if r.flaky_reruns > 0 => {
                totals.passed += 1;
                totals.flaky += 1;
            }
            "passed" => totals.passed += 1,
            "failed" => totals.failed += 1,
            "error" => totals.errors += 1,
            _ => totals.skipped += 1,
        }
        tests.push(TestCaseView {
            quarantined: quarantined.contains(&r.test_id),
            job_id: r.job_id,
            job: r.job_key,
            attempt: r.attempt,
            test_id: r.test_id,
            suite: r.suite,
            status: r.status,
            duration_ms: r.duration_ms,
            message: r.message,
            flaky_reruns: r.flaky_reruns,
            failed_reruns: r.failed_reruns,
        });
    }
    Ok(Json(RunTests {
        run_id: run.id,
        service: ref_name(&run.service_key).to_string(),
        sha: run.sha,
        totals,
        tests,
    }))
}

/// Quarantine a service's test: it still runs and is recorded, but no
/// longer fails its job. 409 when it is already quarantined.
#[utoipa::path(post, path = "/api/v1/services/{name}/tests/quarantine", tag = "tests",
    security(("bearer" = [])), request_body = QuarantineRequest,
    params(("name" = String, Path, description = "service name"), NamespaceQuery),
    responses((status = 201, body = QuarantineView), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "already quarantined", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)))]
pub async fn quarantine(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    ApiJson(req): ApiJson<QuarantineRequest>,
) -> ApiResult<(StatusCode, Json<QuarantineView>)> {
    check_test_id(&req.test_id)?;
    if req.reason.len() > 1024 || req.reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_body",
            "reason must be at most 1024 bytes without control characters",
        ));
    }
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    authorize(&auth.principal, &row)?;
    let added = state
        .store
        .quarantine_test(
            &row.key,
            req.test_id.trim(),
            req.reason.trim(),
            &auth.principal.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

fn check_test_id(test_id: &str) -> ApiResult<()> {
    let t = test_id.trim();
    if t.is_empty() || t.len() > 4096 || t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_body",
            "test_id must be 1-4096 bytes without control characters",
        ));
    }
    Ok(())
}

/// Release a quarantined test (`?test_id=` or a JSON body `{test_id}`).
#[utoipa::path(delete, path = "/api/v1/services/{name}/tests/quarantine", tag = "tests",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"), TestIdQuery, NamespaceQuery),
    request_body(content = Option<UnquarantineRequest>, description = "optional: the test id, instead of `?test_id=`"),
    responses((status = 204, description = "released"), (status = 403, body = crate::error::ErrorBody),
              (status = 404, description = "no such service or the test is not quarantined", body = crate::error::ErrorBody),
              (status = 422, description = "no or two different test ids", body = crate::error::ErrorBody)))]
pub async fn unquarantine(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    if let Some(other) = q.keys().find(|k| *k != "test_id" && *k != "namespace") {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{other}` (expected test_id, namespace)"
        )));
    }
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: UnquarantineRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid("invalid_body", format!("invalid JSON body: {e}")))?;
        Some(parsed.test_id)
    };
    let test_id = match (q.get("test_id"), from_body.as_ref()) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "invalid_body",
                "the query and the body name different test ids",
            ));
        }
        (Some(a), _) => a.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) => {
            return Err(ApiError::invalid(
                "invalid_body",
                "name the test: `?test_id=` or a body `{\"test_id\": ...}`",
            ));
        }
    };
    check_test_id(&test_id)?;
    let row = service(&state, q.get("namespace").map(String::as_str), &name).await?;
    authorize(&auth.principal, &row)?;
    let test_id = test_id.trim();
    if state
        .store
        .unquarantine_test(&row.key, test_id, &auth.principal.actor())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "test `{test_id}` of `{}` is not quarantined",
            row.name
        )))
    }
}

/// A service's quarantined tests.
#[utoipa::path(get, path = "/api/v1/services/{name}/tests/quarantine", tag = "tests",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"), NamespaceQuery),
    responses((status = 200, body = [QuarantineView]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_quarantine(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<Vec<QuarantineView>>> {
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    let list = state.store.list_quarantined_tests(Some(&row.key)).await?;
    Ok(Json(list.into_iter().map(QuarantineView::from).collect()))
}

/// The quarantined test ids of a service, for a claimed job.
pub async fn quarantined_ids(state: &AppState, service_key: &str) -> ApiResult<Vec<String>> {
    Ok(state
        .store
        .list_quarantined_tests(Some(service_key))
        .await?
        .into_iter()
        .map(|q| q.test_id)
        .collect())
}
