//! The HTTP surface (axum): routes, CORS, metrics middleware and JSON fallbacks. This is the only
//! layer that knows status codes.

pub mod admin_page;
pub mod client_token;
pub mod connections;
pub mod consent;
pub mod edge;
pub mod error;
pub mod internal_auth;
pub mod metrics_layer;
pub mod openapi;
pub mod ops;
pub mod request;
pub mod server;
pub mod user_login;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::AppState;
use error::ApiError;

pub fn router(state: Arc<AppState>) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let edge = edge::EdgeLayer {
        max_body_bytes: max_body_bytes as u64,
        body_timeout: state.body_timeout,
    };
    let metrics = metrics_layer::MetricsLayer(state.metrics.clone());
    let (router, _) = documented(state);
    router
        // Only replaces fallbacks not set explicitly (`/api/client-token` sets its own inside CORS).
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(edge)
        .layer(metrics)
}

/// Every route this configuration serves and its OpenAPI document, from the same declarations:
/// each handler's `#[utoipa::path]` gives both its axum route and its operation (see `openapi`).
/// Register routes here only with `.routes(routes!(...))`.
pub fn documented(state: Arc<AppState>) -> (Router, utoipa::openapi::OpenApi) {
    let mut api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .with_state(state.clone());
    if let Some(ct) = &state.client_token {
        let origins: Arc<[HeaderValue]> = ct
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        // CORS only for configured origins; others get no CORS headers and the browser blocks them.
        // A predicate over a shared list rather than `AllowOrigin::list`: axum clones the layer's
        // service per request, and cloning a shared list is a reference-count bump.
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origins.iter().any(|o| o == origin)
            }))
            .allow_methods([Method::GET])
            .allow_headers([header::AUTHORIZATION])
            .max_age(Duration::from_secs(600))
            // No `Vary`: the token response is `no-store` and preflights are not stored by shared
            // caches, so it protects nothing, and its list would be cloned on every request.
            .vary([]);
        // The fallback is set on the route itself, inside the CORS layer, so preflight requests
        // reach CORS instead of a router-wide 405.
        let (schemas, paths, method_router) = routes!(client_token::client_token);
        api = api.merge(
            OpenApiRouter::new()
                .routes((schemas, paths, method_router.fallback(method_not_allowed)))
                .layer(cors)
                .with_state(ct.clone()),
        );
    }
    if let Some(cs) = &state.consent {
        api = api.merge(
            OpenApiRouter::new()
                .routes(routes!(consent::start, connections::list))
                .routes(routes!(connections::get, connections::delete))
                .routes(routes!(connections::org_token))
                .routes(routes!(consent::open))
                .routes(routes!(consent::callback))
                .routes(routes!(admin_page::page))
                .with_state(cs.clone()),
        );
    }
    if let Some(ul) = &state.user_login {
        api = api.merge(
            OpenApiRouter::new()
                .routes(routes!(user_login::start))
                .routes(routes!(user_login::token, user_login::revoke))
                .routes(routes!(user_login::open))
                .routes(routes!(user_login::callback))
                .with_state(ul.clone()),
        );
    }
    let served = openapi::Served::default();
    let (router, doc) = api
        .merge(
            OpenApiRouter::new()
                .routes(routes!(openapi::document))
                .with_state(served.clone()),
        )
        .split_for_parts();
    served.set(&doc);
    (router, doc)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this endpoint",
    )
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp, for JSON and pages.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
