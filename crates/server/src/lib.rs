//! The HTTP face of Pave: the REST API (with its OpenAPI document),
//! authentication and role-based authorization, and the server-rendered portal.

pub mod api;
pub mod auth;
pub mod error;
pub mod json;
pub mod portal;
pub mod read_cache;
pub mod repo;
pub mod state;
pub mod token_cache;
pub mod views;

pub use state::AppState;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::future::Future;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

/// The whole application: API, OpenAPI document, portal, and a JSON 404.
pub fn app(state: AppState) -> axum::Router {
    let (api, _doc) = api::router();
    api.merge(portal::router())
        .fallback(not_found)
        .with_state(state)
}

/// The OpenAPI document of the API (the same one served at `/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::router().1
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    error::ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains
/// in-flight requests (readiness turns 503 first) and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = state.draining.clone();
    // Local runs (`pave run`) whose client vanished end failed after their lease.
    let reaper = tokio::spawn(api::local_runs::reap_lost_local_jobs(state.clone()));
    let app = app(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
        })
        .await;
    reaper.abort();
    served
}
