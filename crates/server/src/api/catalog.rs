//! Catalog reads: services, teams and raw entities; entity deletion.

use crate::auth::{Auth, Developer, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::read_cache::cached_json;
use crate::state::AppState;
use crate::views::{
    LinkView, ServiceSummary, TeamSummary, group_relations, links, ref_name, service_summary,
    services_per_owner, team_summary,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use pave_model::{EntityRef, Kind};
use pave_store::{EntityFilter, EntityRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Optional namespace selector (default `default`).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct NamespaceQuery {
    pub namespace: Option<String>,
}

/// A service with everything its page shows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceDetail {
    #[serde(flatten)]
    pub summary: ServiceSummary,
    pub links: Vec<LinkView>,
    /// The service's source repository (URL or local path), when known.
    pub repository: Option<String>,
    /// Relation type → target entity keys.
    pub relations: BTreeMap<String, Vec<String>>,
    /// Where it was defined (`file:line:column`).
    pub origin: Option<String>,
    pub generation: i64,
    /// The full descriptor as stored.
    #[schema(value_type = Object)]
    pub document: Value,
}

/// A team with its services and relations.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TeamDetail {
    #[serde(flatten)]
    pub summary: TeamSummary,
    pub services_owned: Vec<ServiceSummary>,
    pub relations: BTreeMap<String, Vec<String>>,
    #[schema(value_type = Object)]
    pub document: Value,
}

/// Filters for the entity list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct EntityListQuery {
    /// Kind, case-insensitive (`component`, `group`, `api`, ...).
    pub kind: Option<String>,
    pub namespace: Option<String>,
    /// Owner team name or `group:ns/name` reference.
    pub owner: Option<String>,
}

/// An entity with its relations.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EntityView {
    pub key: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<String>,
    pub origin: Option<String>,
    pub generation: i64,
    pub created_at: String,
    pub updated_at: String,
    pub relations: BTreeMap<String, Vec<String>>,
    #[schema(value_type = Object)]
    pub document: Value,
}

fn namespace(q: &NamespaceQuery) -> &str {
    q.namespace.as_deref().unwrap_or("default")
}

fn key_of(kind: Kind, namespace: &str, name: &str) -> ApiResult<String> {
    for (part, value) in [("namespace", namespace), ("name", name)] {
        pave_model::entity_name_rule(value)
            .map_err(|rule| ApiError::bad_request(format!("invalid {part} `{value}`: {rule}")))?;
    }
    Ok(EntityRef::new(kind, namespace, name).key())
}

async fn load(state: &AppState, key: &str, what: &str) -> ApiResult<EntityRow> {
    state
        .store
        .get_entity(key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {what} `{key}` in the catalog")))
}

/// List services (catalog Components).
#[utoipa::path(get, path = "/api/v1/services", tag = "catalog", security(("bearer" = [])),
    params(NamespaceQuery),
    responses((status = 200, body = [ServiceSummary]), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_services(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Response> {
    let key = format!("services?{}", q.namespace.as_deref().unwrap_or(""));
    cached_json(&state, key, async {
        let rows = state
            .store
            .list_entities(&EntityFilter {
                kind: Some("Component".into()),
                namespace: q.namespace.clone(),
                ..EntityFilter::default()
            })
            .await?;
        Ok(rows.iter().map(service_summary).collect::<Vec<_>>())
    })
    .await
}

/// One service, with links and relations.
#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "catalog", security(("bearer" = [])),
    params(("name" = String, Path, description = "service name"), NamespaceQuery),
    responses((status = 200, body = ServiceDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_service(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<ServiceDetail>> {
    let key = key_of(Kind::Component, namespace(&q), &name)?;
    let row = load(&state, &key, "service").await?;
    let relations = state.store.relations_of(&key).await?;
    Ok(Json(ServiceDetail {
        summary: service_summary(&row),
        links: links(&row),
        repository: crate::views::annotation(&row, crate::api::apply::REPOSITORY_ANNOTATION),
        relations: group_relations(&relations),
        origin: row.origin,
        generation: row.generation,
        document: row.document,
    }))
}

/// List teams (catalog Groups) with how many services each owns.
#[utoipa::path(get, path = "/api/v1/teams", tag = "catalog", security(("bearer" = [])),
    params(NamespaceQuery),
    responses((status = 200, body = [TeamSummary]), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_teams(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Response> {
    let key = format!("teams?{}", q.namespace.as_deref().unwrap_or(""));
    cached_json(&state, key, async {
        let filter = |kind: &str| EntityFilter {
            kind: Some(kind.into()),
            namespace: q.namespace.clone(),
            ..EntityFilter::default()
        };
        let groups = state.store.list_entities(&filter("Group")).await?;
        let components = state.store.list_entities(&filter("Component")).await?;
        let counts = services_per_owner(&components);
        Ok(groups
            .iter()
            .map(|g| team_summary(g, counts.get(&g.key).copied().unwrap_or(0)))
            .collect::<Vec<_>>())
    })
    .await
}

/// One team, with the services it owns.
#[utoipa::path(get, path = "/api/v1/teams/{name}", tag = "catalog", security(("bearer" = [])),
    params(("name" = String, Path, description = "team name"), NamespaceQuery),
    responses((status = 200, body = TeamDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_team(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult<Json<TeamDetail>> {
    let key = key_of(Kind::Group, namespace(&q), &name)?;
    let row = load(&state, &key, "team").await?;
    let owned = state
        .store
        .list_entities(&EntityFilter {
            kind: Some("Component".into()),
            owner_key: Some(key.clone()),
            ..EntityFilter::default()
        })
        .await?;
    let relations = state.store.relations_of(&key).await?;
    Ok(Json(TeamDetail {
        summary: team_summary(&row, owned.len()),
        services_owned: owned.iter().map(service_summary).collect(),
        relations: group_relations(&relations),
        document: row.document,
    }))
}

fn entity_view(row: EntityRow, relations: BTreeMap<String, Vec<String>>) -> EntityView {
    EntityView {
        owner: row.owner_key.as_deref().map(|k| ref_name(k).to_string()),
        key: row.key,
        kind: row.kind,
        namespace: row.namespace,
        name: row.name,
        origin: row.origin,
        generation: row.generation,
        created_at: row.created_at,
        updated_at: row.updated_at,
        relations,
        document: row.document,
    }
}

/// List catalog entities of any kind.
#[utoipa::path(get, path = "/api/v1/entities", tag = "catalog", security(("bearer" = [])),
    params(EntityListQuery),
    responses((status = 200, body = [EntityView]), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_entities(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Query(q): Query<EntityListQuery>,
) -> ApiResult<Json<Vec<EntityView>>> {
    let kind = match &q.kind {
        Some(k) => Some(
            Kind::parse(k)
                .ok_or_else(|| ApiError::bad_request(format!("unknown kind `{k}`")))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let owner_key = match &q.owner {
        Some(o) => Some(
            EntityRef::parse(o, Kind::Group, q.namespace.as_deref().unwrap_or("default"))
                .map_err(|e| ApiError::bad_request(format!("owner: {e}")))?
                .key(),
        ),
        None => None,
    };
    let rows = state
        .store
        .list_entities(&EntityFilter {
            kind,
            namespace: q.namespace.clone(),
            owner_key,
            limit: None,
        })
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| entity_view(row, BTreeMap::new()))
            .collect(),
    ))
}

fn parse_kind(kind: &str) -> ApiResult<Kind> {
    Kind::parse(kind).ok_or_else(|| ApiError::bad_request(format!("unknown kind `{kind}`")))
}

/// One entity with its relations.
#[utoipa::path(get, path = "/api/v1/entities/{kind}/{namespace}/{name}", tag = "catalog",
    security(("bearer" = [])),
    params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EntityView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_entity(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> ApiResult<Json<EntityView>> {
    let key = key_of(parse_kind(&kind)?, &namespace, &name)?;
    let row = load(&state, &key, "entity").await?;
    let relations = state.store.relations_of(&key).await?;
    Ok(Json(entity_view(row, group_relations(&relations))))
}

/// Remove an entity (and the relations it produced) from the catalog.
#[utoipa::path(delete, path = "/api/v1/entities/{kind}/{namespace}/{name}", tag = "catalog",
    security(("bearer" = [])),
    params(("kind" = String, Path), ("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_entity(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> ApiResult<axum::http::StatusCode> {
    let kind = parse_kind(&kind)?;
    let key = key_of(kind, &namespace, &name)?;
    let row = load(&state, &key, "entity").await?;
    let team = match &row.owner_key {
        Some(owner) => Some(ref_name(owner).to_string()),
        None if kind == Kind::Group => Some(row.name.clone()),
        None => None,
    };
    if !auth.principal.may_change_team(team.as_deref()) {
        return Err(ApiError::forbidden(format!(
            "`{key}` belongs to team `{}`; your token may change only team `{}`'s entities",
            team.as_deref().unwrap_or("-"),
            auth.principal.team.as_deref().unwrap_or("-")
        )));
    }
    if state
        .store
        .delete_entity(&key, &auth.principal.actor())
        .await?
    {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no entity `{key}` in the catalog"
        )))
    }
}
