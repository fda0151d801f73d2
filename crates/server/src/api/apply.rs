//! `POST /api/v1/apply`: register teams and services from `pave.yaml` and
//! Backstage descriptors. All-or-nothing: every file is parsed, planned and
//! authorized before one store transaction writes anything.

use crate::auth::{Auth, Developer, Principal};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use pave_catalog::{PlannedEntity, plan_import};
use pave_model::{Entity, EntityRef, Kind, ParsedEntity, SpecError, SpecErrors, parse_file};
use pave_store::{ApplyOutcome, EntityInput, EntityRow, RelationRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Files to apply.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The files' paths (as the user named them, for error messages) and contents.
    pub files: Vec<ApplyFile>,
    /// Validate and report what would change, without writing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One file of an apply.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyFile {
    pub path: String,
    pub content: String,
    /// The git repository holding this file, when it is a `pave.yaml`: the
    /// service's source, recorded as `pave.dev/repository*` annotations.
    #[serde(default)]
    pub repository: Option<RepositoryInfo>,
}

/// Where a service's source lives.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryInfo {
    /// Clone URL (the `origin` remote) or an absolute local path.
    pub url: String,
    /// Path of the `pave.yaml` inside the repository.
    pub path: String,
    /// The branch runs default to.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// Annotation naming a service's repository (URL or local path).
pub const REPOSITORY_ANNOTATION: &str = "pave.dev/repository";
/// Annotation with the `pave.yaml` path inside that repository.
pub const REPOSITORY_PATH_ANNOTATION: &str = "pave.dev/repository-path";
/// Annotation with the repository's default branch.
pub const DEFAULT_BRANCH_ANNOTATION: &str = "pave.dev/default-branch";

impl RepositoryInfo {
    fn validate(&self, file: &str) -> Result<(), SpecError> {
        let bad = |what: &str| SpecError::new(file, 0, 0, format!("repository {what}"));
        if self.url.trim().is_empty()
            || self.url.len() > 2048
            || self.url.chars().any(char::is_control)
        {
            return Err(bad("url must be 1-2048 printable characters"));
        }
        if self.path.len() > 1024 || self.path.chars().any(char::is_control) {
            return Err(bad("path must be at most 1024 printable characters"));
        }
        if let Some(branch) = &self.default_branch
            && (branch.is_empty()
                || branch.len() > 255
                || branch.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(bad("default_branch is not a valid branch name"));
        }
        Ok(())
    }
}

/// Parses one file and records its repository on the service it defines.
fn parse_one(file: ApplyFile) -> Result<Vec<ParsedEntity>, SpecErrors> {
    let mut parsed = parse_file(&file.path, &file.content)?;
    if let Some(repo) = &file.repository {
        repo.validate(&file.path)?;
        for p in parsed.iter_mut().filter(|p| from_pave_yaml(&p.entity)) {
            let annotations = &mut p.entity.metadata.annotations;
            annotations.insert(REPOSITORY_ANNOTATION.into(), repo.url.clone());
            annotations.insert(REPOSITORY_PATH_ANNOTATION.into(), repo.path.clone());
            if let Some(branch) = &repo.default_branch {
                annotations.insert(DEFAULT_BRANCH_ANNOTATION.into(), branch.clone());
            }
        }
    }
    Ok(parsed)
}

/// What an apply changed (or would change, for a dry run), as entity keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApplyResponse {
    pub dry_run: bool,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Owner teams named by a `pave.yaml` that did not exist and were created.
    pub implied_teams: Vec<String>,
}

/// Register or update catalog entities from files.
#[utoipa::path(post, path = "/api/v1/apply", tag = "catalog", request_body = ApplyRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "applied", body = ApplyResponse),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 422, description = "a spec error; details list file, line, column", body = crate::error::ErrorBody)))]
pub async fn apply(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<Json<ApplyResponse>> {
    if req.files.is_empty() {
        return Err(ApiError::invalid("invalid_body", "no files to apply"));
    }
    let started = std::time::Instant::now();
    let dry_run = req.dry_run;
    // Parsing and planning are CPU-bound: keep them off the async workers.
    let plan = blocking(move || parse_and_plan(req.files)).await??;
    let parsed_at = started.elapsed();
    let keys: Vec<String> = plan.iter().map(|p| p.entity_ref.key()).collect();
    let existing: HashMap<String, EntityRow> = state
        .store
        .get_entities(&keys)
        .await?
        .into_iter()
        .map(|row| (row.key.clone(), row))
        .collect();
    let fetched_at = started.elapsed();
    let implied = implied_teams(&state, &plan, &existing).await?;
    authorize(&auth.principal, &plan, &implied, &existing)?;

    let authorized_at = started.elapsed();
    let implied_teams = implied.iter().map(|r| r.name.clone()).collect();
    let mut inputs = blocking(move || {
        pave_model::par::par_map(plan, PARALLEL_FROM, |p| entity_input(&p))
            .into_iter()
            .collect::<ApiResult<Vec<EntityInput>>>()
    })
    .await??;
    inputs.extend(implied.iter().map(implied_team_input));

    let checked_at = started.elapsed();
    let outcome = if dry_run {
        predict(&inputs, &existing)
    } else {
        state
            .store
            .apply_entities(&inputs, &auth.principal.actor())
            .await?
    };
    tracing::debug!(
        entities = inputs.len(),
        parse_plan_ms = parsed_at.as_millis() as u64,
        fetch_ms = (fetched_at - parsed_at).as_millis() as u64,
        authorize_ms = (authorized_at - fetched_at).as_millis() as u64,
        inputs_ms = (checked_at - authorized_at).as_millis() as u64,
        store_ms = (started.elapsed() - checked_at).as_millis() as u64,
        "apply"
    );
    Ok(Json(ApplyResponse {
        dry_run,
        created: outcome.created,
        updated: outcome.updated,
        unchanged: outcome.unchanged,
        implied_teams,
    }))
}

/// Batches at least this large are spread over the cores.
const PARALLEL_FROM: usize = 64;

/// Runs CPU-bound work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

fn parse_and_plan(files: Vec<ApplyFile>) -> ApiResult<Vec<PlannedEntity>> {
    let results = pave_model::par::par_map(files, 2, parse_one);
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for result in results {
        match result {
            Ok(entities) => parsed.extend(entities),
            Err(SpecErrors(errs)) => errors.extend(errs),
        }
    }
    if !errors.is_empty() {
        return Err(spec_error(errors));
    }
    plan_import(parsed)
        .map(|plan| plan.entities)
        .map_err(|SpecErrors(errs)| spec_error(errs))
}

/// 422 with every located error in `details.errors`.
fn spec_error(errors: Vec<SpecError>) -> ApiError {
    let message = match errors.as_slice() {
        [one] => one.to_string(),
        [first, ..] => format!("{first} (and {} more)", errors.len() - 1),
        [] => "invalid spec".to_string(),
    };
    ApiError::invalid("invalid_spec", message).with_details(serde_json::json!({ "errors": errors }))
}

/// Owner teams that `pave.yaml` services name but nobody defined: Pave creates
/// them so that `pave apply -f pave.yaml` works on an empty catalog.
async fn implied_teams(
    state: &AppState,
    plan: &[PlannedEntity],
    existing: &HashMap<String, EntityRow>,
) -> ApiResult<Vec<EntityRef>> {
    let in_batch: BTreeSet<String> = plan.iter().map(|p| p.entity_ref.key()).collect();
    let wanted: BTreeSet<EntityRef> = plan
        .iter()
        .filter(|p| from_pave_yaml(&p.parsed.entity))
        .filter_map(|p| p.owner.clone())
        .filter(|o| {
            o.kind == Kind::Group
                && !in_batch.contains(&o.key())
                && !existing.contains_key(&o.key())
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = wanted.iter().map(EntityRef::key).collect();
    let found: BTreeSet<String> = state
        .store
        .get_entities(&keys)
        .await?
        .into_iter()
        .map(|r| r.key)
        .collect();
    Ok(wanted
        .into_iter()
        .filter(|w| !found.contains(&w.key()))
        .collect())
}

fn from_pave_yaml(entity: &Entity) -> bool {
    entity
        .metadata
        .annotations
        .get("pave.dev/source")
        .is_some_and(|s| s == "pave.yaml")
}

/// The team a change to this entity belongs to, for team-scoped tokens.
fn owning_team(entity_ref: &EntityRef, owner: Option<&EntityRef>) -> Option<String> {
    match owner {
        Some(o) if o.kind == Kind::Group => Some(o.name.clone()),
        Some(_) => None,
        None if entity_ref.kind == Kind::Group => Some(entity_ref.name.clone()),
        None => None,
    }
}

fn authorize(
    principal: &Principal,
    plan: &[PlannedEntity],
    implied: &[EntityRef],
    existing: &HashMap<String, EntityRow>,
) -> ApiResult<()> {
    let mut denied = Vec::new();
    for p in plan {
        let new_team = owning_team(&p.entity_ref, p.owner.as_ref());
        let old_team = existing.get(&p.entity_ref.key()).map(|row| {
            row.owner_key
                .as_deref()
                .map(|k| crate::views::ref_name(k).to_string())
                .or_else(|| (row.kind == "Group").then(|| row.name.clone()))
        });
        let allowed = principal.may_change_team(new_team.as_deref())
            && old_team.is_none_or(|old| principal.may_change_team(old.as_deref()));
        if !allowed {
            denied.push(format!(
                "{} ({}:{}): owned by {}",
                p.entity_ref,
                p.parsed.file,
                p.parsed.line,
                new_team.as_deref().unwrap_or("no team")
            ));
        }
    }
    for team in implied {
        if !principal.may_change_team(Some(&team.name)) {
            denied.push(format!("{team}: creating another team"));
        }
    }
    if denied.is_empty() {
        return Ok(());
    }
    let team = principal.team.as_deref().unwrap_or("-");
    Err(ApiError::forbidden(format!(
        "your token may change only team `{team}`'s entities; refused: {}",
        denied.join("; ")
    ))
    .with_details(serde_json::json!({ "refused": denied })))
}

fn relation_rows(p: &PlannedEntity) -> Vec<RelationRow> {
    p.relations
        .iter()
        .map(|r| RelationRow {
            source_key: r.source.key(),
            rel_type: r.rel_type.to_string(),
            target_key: r.target.key(),
        })
        .collect()
}

fn entity_input(p: &PlannedEntity) -> ApiResult<EntityInput> {
    let document = serde_json::to_value(&p.parsed.entity).map_err(ApiError::internal)?;
    Ok(EntityInput {
        key: p.entity_ref.key(),
        kind: p.entity_ref.kind.as_str().to_string(),
        namespace: p.entity_ref.namespace.clone(),
        name: p.entity_ref.name.clone(),
        owner_key: p.owner.as_ref().map(EntityRef::key),
        document,
        origin: Some(format!(
            "{}:{}:{}",
            p.parsed.file, p.parsed.line, p.parsed.column
        )),
        relations: relation_rows(p),
    })
}

fn implied_team_input(team: &EntityRef) -> EntityInput {
    EntityInput {
        key: team.key(),
        kind: Kind::Group.as_str().to_string(),
        namespace: team.namespace.clone(),
        name: team.name.clone(),
        owner_key: None,
        document: serde_json::json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Group",
            "metadata": {
                "name": team.name,
                "namespace": team.namespace,
                "annotations": { "pave.dev/source": "implied-by-owner" }
            },
            "spec": { "type": "team", "children": [] }
        }),
        origin: None,
        relations: Vec::new(),
    }
}

/// What an apply would do, without writing (dry run).
fn predict(inputs: &[EntityInput], existing: &HashMap<String, EntityRow>) -> ApplyOutcome {
    let mut outcome = ApplyOutcome::default();
    for input in inputs {
        match existing.get(&input.key) {
            None => outcome.created.push(input.key.clone()),
            Some(row) if row.document == input.document => {
                outcome.unchanged.push(input.key.clone())
            }
            Some(_) => outcome.updated.push(input.key.clone()),
        }
    }
    outcome
}
