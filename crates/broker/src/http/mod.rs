//! The HTTP surface (axum): routes, CORS, metrics middleware and JSON fallbacks. This is the only
//! layer that knows status codes.

pub mod client_token;
pub mod error;
pub mod ops;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::metrics::{Metrics, RouteLabels};
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
        let origins: Vec<HeaderValue> = ct
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        // CORS only for configured origins; others get no CORS headers and the browser blocks them.
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET])
            .allow_headers([header::AUTHORIZATION])
            .max_age(Duration::from_secs(600));
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
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.metrics.clone(), track))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
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

/// Route templates as static labels, so recording a metric allocates nothing.
fn static_route(path: &str) -> &'static str {
    match path {
        "/api/client-token" => "/api/client-token",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Records latency by route template (never the raw path, which could be unbounded) and status.
async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| static_route(p.as_str()))
        .unwrap_or("unmatched");
    let resp = next.run(req).await;
    metrics
        .http
        .get_or_create(&RouteLabels {
            route,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}
