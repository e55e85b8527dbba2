//! The HTTP surface (axum): routes, CORS, metrics middleware and JSON fallbacks. This is the only
//! layer that knows status codes.

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
use audience::Routes;
use error::ApiError;

/// Every route on one listener.
pub fn router(state: Arc<AppState>) -> Router {
    finish(routes(&state).into_one(), &state)
}

/// (public listener, operator listener), for `[server] admin_listen`.
pub fn split_routers(state: Arc<AppState>) -> (Router, Router) {
    let (public, operator) = routes(&state).into_split();
    (finish(public, &state), finish(operator, &state))
}

/// Every route with its audience (see `audience`): `route` is for operators, `public` for
/// browsers and the partner's web app.
fn routes(state: &Arc<AppState>) -> Routes {
    let mut routes = Routes::new()
        .everywhere("/healthz", get(ops::healthz))
        .everywhere("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .map(|r| {
            r.method_not_allowed_fallback(method_not_allowed)
                .with_state(state.clone())
        });
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
        routes = routes.merge(
            Routes::new()
                // The fallback is set on the route itself, inside the CORS layer, so preflight
                // requests reach CORS instead of a router-wide 405.
                .public(
                    "/api/client-token",
                    get(client_token::client_token).fallback(method_not_allowed),
                )
                .map(|r| r.layer(cors.clone()).with_state(ct.clone())),
        );
    }
    if let Some(cs) = &state.consent {
        routes = routes.merge(
            Routes::new()
                .route(
                    "/api/connections",
                    post(consent::start).get(connections::list),
                )
                .route(
                    "/api/connections/{account_id}",
                    get(connections::get).delete(connections::delete),
                )
                .route("/api/orgs/{org_id}/token", post(connections::org_token))
                .public("/connect/{ticket}", get(consent::open))
                .public(crate::config::CALLBACK_PATH, get(consent::callback))
                .map(|r| {
                    r.method_not_allowed_fallback(method_not_allowed)
                        .with_state(cs.clone())
                }),
        );
    }
    if let Some(ul) = &state.user_login {
        routes = routes.merge(
            Routes::new()
                .route("/api/user-logins", post(user_login::start))
                .route(
                    "/api/users/{user}/token",
                    post(user_login::token).delete(user_login::revoke),
                )
                .public("/login/{ticket}", get(user_login::open))
                .public(crate::config::USER_CALLBACK_PATH, get(user_login::callback))
                .map(|r| {
                    r.method_not_allowed_fallback(method_not_allowed)
                        .with_state(ul.clone())
                }),
        );
    }
    if let Some(console) = &state.console {
        routes = routes.merge(
            Routes::new()
                .route("/admin", get(console::page))
                .route("/admin/login", post(console::login))
                .route("/admin/logout", post(console::logout))
                .route("/admin/unlink", post(console::unlink))
                .route("/admin/revoke-sign-in", post(console::revoke_sign_in))
                .route("/admin/refresh", post(console::refresh))
                .map(|r| {
                    r.method_not_allowed_fallback(method_not_allowed)
                        .with_state(console.clone())
                }),
        );
    }
    routes
}

/// The fallbacks and layers every listener's router gets.
fn finish(router: Router, state: &AppState) -> Router {
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(edge::EdgeLayer {
            max_body_bytes: state.max_body_bytes as u64,
            body_timeout: state.body_timeout,
        })
        .layer(metrics_layer::MetricsLayer(state.metrics.clone()))
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
