//! The REST API under `/api/v1`, and its OpenAPI document generated from the
//! same handler annotations that register the routes.

pub mod apply;
pub mod artifacts;
pub mod audit;
pub mod catalog;
pub mod deployments;
pub mod environments;
pub mod health;
pub mod hooks;
pub mod local_runs;
pub mod pipeline_templates;
pub mod runs;
pub mod secrets;
pub mod service_repository;
pub mod stream;
pub mod tests;
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
    modifiers(&BearerScheme),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

/// Documents the error answers every operation can give, in the one error
/// shape, so clients (and schema-driven fuzzers) know every status they may see.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, false),
            ];
            for (op, has_body) in ops {
                let Some(op) = op.as_mut() else { continue };
                let mut wanted = vec![("400", "the request could not be read")];
                if op.security.is_some() {
                    wanted.push(("401", "missing, unknown or revoked token"));
                    wanted.push(("403", "the token's role or team does not allow this"));
                }
                if path.contains('{') {
                    wanted.push(("404", "no such resource"));
                }
                if has_body {
                    wanted.push(("413", "request body too large"));
                    wanted.push(("415", "the body is not JSON"));
                    wanted.push(("422", "the body is well-formed but invalid"));
                }
                wanted.push(("500", "internal error (details in the server log)"));
                for (status, description) in wanted {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

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
        .routes(routes!(runs::create_run, runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::run_logs))
        .routes(routes!(stream::stream_logs))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(local_runs::create_local_run))
        .routes(routes!(service_repository::set_repository))
        .routes(routes!(runs::agents::claim))
        .routes(routes!(runs::agents::heartbeat))
        .routes(routes!(runs::agents::append_logs))
        .routes(routes!(runs::agents::complete))
        .routes(routes!(runs::agents::release))
        .routes(routes!(tests::list_flaky))
        .routes(routes!(tests::run_tests))
        .routes(routes!(
            tests::quarantine,
            tests::unquarantine,
            tests::list_quarantine
        ))
        .routes(routes!(secrets::list_secrets))
        .routes(routes!(secrets::set_secret, secrets::delete_secret))
        .routes(routes!(hooks::github))
        .routes(routes!(hooks::gitlab))
        .routes(routes!(artifacts::upload, artifacts::download))
        .routes(routes!(artifacts::run_artifacts))
        .routes(routes!(
            pipeline_templates::publish,
            pipeline_templates::list
        ))
        .routes(routes!(pipeline_templates::show))
        .routes(routes!(
            deployments::create_deployment,
            deployments::list_deployments
        ))
        .routes(routes!(deployments::get_deployment))
        .routes(routes!(deployments::control))
        .routes(routes!(deployments::promote))
        .routes(routes!(deployments::rollback))
        .routes(routes!(
            environments::list_environments,
            environments::create_environment
        ))
        .routes(routes!(environments::service_releases))
        .routes(routes!(environments::service_logs))
        .routes(routes!(environments::deployment_metrics))
        .routes(routes!(environments::prometheus_metrics))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    ErrorResponses.modify(&mut doc);
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
