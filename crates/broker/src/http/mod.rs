//! The HTTP surface (axum): routes, CORS, metrics middleware and JSON fallbacks. This is the only
//! layer that knows status codes.

pub mod access;
pub mod admin_page;
pub mod client_token;
pub mod connections;
pub mod consent;
pub mod edge;
pub mod error;
pub mod internal_auth;
pub mod metrics_layer;
pub mod ops;
pub mod request;
pub mod server;
pub mod user_login;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::service::AppState;
use error::ApiError;

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .method_not_allowed_fallback(method_not_allowed)
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
        router = router.merge(
            Router::new()
                // The fallback is set on the route itself, inside the CORS layer, so preflight
                // requests reach CORS instead of a router-wide 405.
                .route(
                    "/api/client-token",
                    get(client_token::client_token).fallback(method_not_allowed),
                )
                .layer(cors)
                .with_state(ct.clone()),
        );
    }
    if let Some(cs) = &state.consent {
        router = router.merge(
            Router::new()
                .route(
                    "/api/connections",
                    post(consent::start).get(connections::list),
                )
                .route(
                    "/api/connections/{account_id}",
                    get(connections::get).delete(connections::delete),
                )
                .route("/api/orgs/{org_id}/token", post(connections::org_token))
                .route("/connect/{ticket}", get(consent::open))
                .route(crate::config::CALLBACK_PATH, get(consent::callback))
                .route("/admin", get(admin_page::page))
                .method_not_allowed_fallback(method_not_allowed)
                .with_state(cs.clone()),
        );
    }
    if let Some(ul) = &state.user_login {
        router = router.merge(
            Router::new()
                .route("/api/user-logins", post(user_login::start))
                .route(
                    "/api/users/{user}/token",
                    post(user_login::token).delete(user_login::revoke),
                )
                .route("/login/{ticket}", get(user_login::open))
                .route(crate::config::USER_CALLBACK_PATH, get(user_login::callback))
                .method_not_allowed_fallback(method_not_allowed)
                .with_state(ul.clone()),
        );
    }
    router
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

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp, for JSON and pages.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
