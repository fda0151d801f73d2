//! The REST API under `/api/v1`, and its OpenAPI document generated from the
//! same handler annotations that register the routes.

pub mod apply;
pub mod audit;
pub mod catalog;
pub mod health;
pub mod tokens;

use crate::state::AppState;
use axum::Json;
use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted (an apply of a large catalog).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Pave API", description = "The one API that the Pave CLI, portal and agents use."),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every API route, with the OpenAPI document describing exactly them.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(apply::apply))
        .routes(routes!(catalog::list_services))
        .routes(routes!(catalog::get_service))
        .routes(routes!(catalog::list_teams))
        .routes(routes!(catalog::get_team))
        .routes(routes!(catalog::list_entities))
        .routes(routes!(catalog::get_entity, catalog::delete_entity))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(tokens::whoami))
        .routes(routes!(audit::list_events))
        .routes(routes!(audit::verify))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let served = doc.clone();
    let router = router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = served.clone();
                async move { Json(doc) }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    (router, doc)
}
