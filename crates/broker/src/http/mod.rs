//! The HTTP surface (axum): routes, CORS, metrics middleware and JSON fallbacks. This is the only
//! layer that knows status codes.

pub mod access;
pub mod audience;
pub mod bind;
pub mod client_token;
pub mod connections;
pub mod consent;
pub mod console;
pub mod edge;
pub mod error;
pub mod html;
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
use utoipa_axum::routes;

use crate::service::AppState;
use audience::{Routes, Split};
use error::ApiError;

/// Every route on one listener.
pub fn router(state: Arc<AppState>) -> Router {
    let (split, _) = documented(state.clone());
    finish(split.into_one(), &state)
}

/// (public listener, operator listener), for `[server] admin_listen`.
pub fn split_routers(state: Arc<AppState>) -> (Router, Router) {
    let (split, _) = documented(state.clone());
    let (public, operator) = split.into_split();
    (finish(public, &state), finish(operator, &state))
}

/// Every route this configuration serves, with its audience, and the OpenAPI document of all of
/// them, from the same declarations: each handler's `#[utoipa::path]` gives both its axum route
/// and its operation (see `openapi`). Register routes here only through `Routes` with
/// `routes!(...)`.
pub fn documented(state: Arc<AppState>) -> (Split, utoipa::openapi::OpenApi) {
    let mut api = Routes::new()
        .everywhere(routes!(ops::healthz))
        .everywhere(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .map(|r| r.with_state(state.clone()));
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
            Routes::new()
                .public((schemas, paths, method_router.fallback(method_not_allowed)))
                .map(|r| r.layer(cors.clone()).with_state(ct.clone())),
        );
    }
    if let Some(cs) = &state.consent {
        api = api.merge(
            Routes::new()
                .routes(routes!(consent::start, connections::list))
                .routes(routes!(connections::get, connections::delete))
                .routes(routes!(connections::org_token))
                .public(routes!(consent::open))
                .public(routes!(consent::callback))
                .map(|r| r.with_state(cs.clone())),
        );
    }
    if let Some(ul) = &state.user_login {
        api = api.merge(
            Routes::new()
                .routes(routes!(user_login::start))
                .routes(routes!(user_login::token, user_login::revoke))
                .public(routes!(user_login::open))
                .public(routes!(user_login::callback))
                .map(|r| r.with_state(ul.clone())),
        );
    }
    if let Some(console) = &state.console {
        api = api.merge(
            Routes::new()
                .routes(routes!(console::page))
                .routes(routes!(console::login))
                .routes(routes!(console::logout))
                .routes(routes!(console::unlink))
                .routes(routes!(console::revoke_sign_in))
                .routes(routes!(console::refresh))
                .map(|r| r.with_state(console.clone())),
        );
    }
    // The document is an operator route: it tells which features this instance has enabled.
    let served = openapi::Served::default();
    let api = api.merge(
        Routes::new()
            .routes(routes!(openapi::document))
            .map(|r| r.with_state(served.clone())),
    );
    let (split, doc) = api.into_parts(openapi::ApiDoc::openapi());
    served.set(&doc);
    (split, doc)
}

/// The fallbacks and layers every listener's router gets.
fn finish(router: Router, state: &AppState) -> Router {
    router
        // Only replaces fallbacks not set explicitly (`/api/client-token` sets its own inside CORS).
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(edge::EdgeLayer {
            max_body_bytes: state.max_body_bytes as u64,
            body_timeout: state.body_timeout,
        })
        .layer(metrics_layer::MetricsLayer(state.metrics.clone()))
        .layer(state.access.clone())
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

pub use crate::clock::rfc3339;
