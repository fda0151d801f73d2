//! The web portal: server-rendered HTML (no JavaScript build step). Pages are
//! readable without signing in; signing in with a token opens a cookie
//! session, needed for the portal's mutating actions.

mod deploy_pages;
mod layout;
mod pages;
mod run_pages;
mod runs;

use crate::auth::{
    Principal, SESSION_COOKIE, authenticate, hash_secret, new_secret, session_cookie,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{group_relations, service_summary, services_per_owner, team_summary};
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use pave_model::{EntityRef, Kind};
use pave_store::EntityFilter;
use serde::Deserialize;

/// How long a portal session lasts.
const SESSION_HOURS: i64 = 12;

/// Portal routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(services_page))
        .route("/services/{name}", get(service_page))
        .route("/services/{name}/runs", get(runs::service_runs_page))
        .route("/runs/{id}", get(runs::run_page))
        .route("/runs/{id}/stream", get(runs::run_stream))
        .route("/deployments", get(deploy_pages::deployments_page))
        .route("/deployments/{id}", get(deploy_pages::deployment_page))
        .route(
            "/deployments/{id}/state",
            get(deploy_pages::deployment_state),
        )
        .route("/teams", get(teams_page))
        .route("/teams/{name}", get(team_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// The signed-in principal, if any (a bad or expired session is just "not signed in").
pub struct Viewer(Option<Principal>);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Viewer(authenticate(parts, state).await.ok().flatten()))
    }
}

/// A portal error: an HTML page with the right status.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<pave_store::StoreError> for PageError {
    fn from(e: pave_store::StoreError) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        (
            status,
            Html(layout::error_page(status, &self.0.message).into_string()),
        )
            .into_response()
    }
}

type PageResult = Result<Response, PageError>;

fn html(markup: maud::Markup) -> PageResult {
    Ok(Html(markup.into_string()).into_response())
}

/// `?q=` search on list pages.
#[derive(Deserialize)]
pub struct SearchQuery {
    pub q: Option<String>,
}

async fn services_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Query(search): Query<SearchQuery>,
) -> PageResult {
    let rows = state
        .store
        .list_entities(&EntityFilter {
            kind: Some("Component".into()),
            ..EntityFilter::default()
        })
        .await?;
    let needle = search.q.as_deref().unwrap_or("").trim().to_lowercase();
    let services: Vec<_> = rows
        .iter()
        .map(service_summary)
        .filter(|s| {
            needle.is_empty()
                || s.name.to_lowercase().contains(&needle)
                || s.owner
                    .as_deref()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&needle)
                || s.system
                    .as_deref()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&needle)
                || s.description
                    .as_deref()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&needle)
        })
        .collect();
    html(pages::services(
        viewer.as_ref(),
        &services,
        &needle,
        rows.len(),
    ))
}

fn valid_name(name: &str) -> Result<(), PageError> {
    pave_model::entity_name_rule(name).map_err(|rule| {
        PageError(ApiError::bad_request(format!(
            "invalid name `{name}`: {rule}"
        )))
    })
}

async fn service_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> PageResult {
    valid_name(&name)?;
    let key = EntityRef::new(Kind::Component, "default", &name).key();
    let row = state
        .store
        .get_entity(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no service named `{name}`")))?;
    let relations = group_relations(&state.store.relations_of(&key).await?);
    let runs = state
        .store
        .list_runs(&key, Some(runs::SERVICE_PAGE_RUNS))
        .await?;
    let deployments = deploy_pages::running_where_section(&state, &key, &name).await?;
    html(pages::service(
        viewer.as_ref(),
        &row,
        &relations,
        &runs,
        deployments,
    ))
}

async fn teams_page(Viewer(viewer): Viewer, State(state): State<AppState>) -> PageResult {
    let groups = state
        .store
        .list_entities(&EntityFilter {
            kind: Some("Group".into()),
            ..EntityFilter::default()
        })
        .await?;
    let components = state
        .store
        .list_entities(&EntityFilter {
            kind: Some("Component".into()),
            ..EntityFilter::default()
        })
        .await?;
    let counts = services_per_owner(&components);
    let teams: Vec<_> = groups
        .iter()
        .map(|g| team_summary(g, counts.get(&g.key).copied().unwrap_or(0)))
        .collect();
    html(pages::teams(viewer.as_ref(), &teams))
}

async fn team_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> PageResult {
    valid_name(&name)?;
    let key = EntityRef::new(Kind::Group, "default", &name).key();
    let row = state
        .store
        .get_entity(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no team named `{name}`")))?;
    let owned = state
        .store
        .list_entities(&EntityFilter {
            kind: Some("Component".into()),
            owner_key: Some(key.clone()),
            ..EntityFilter::default()
        })
        .await?;
    let services: Vec<_> = owned.iter().map(service_summary).collect();
    let relations = group_relations(&state.store.relations_of(&key).await?);
    html(pages::team(
        viewer.as_ref(),
        &team_summary(&row, services.len()),
        &services,
        &relations,
    ))
}

async fn login_page(Viewer(viewer): Viewer) -> PageResult {
    html(pages::login(viewer.as_ref(), None))
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    pub token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> PageResult {
    let token = state
        .store
        .find_token(&hash_secret(form.token.trim()))
        .await?;
    let Some(token) = token else {
        let page = pages::login(None, Some("That token is unknown or revoked."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response());
    };
    let session = new_secret()?;
    let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    state
        .store
        .create_session(
            &hash_secret(&session),
            &token.id,
            &expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_HOURS * 3600
    );
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(response)
}

async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> PageResult {
    if let Some(session) = session_cookie(&headers) {
        state.store.delete_session(&hash_secret(&session)).await?;
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pave_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(response)
}
