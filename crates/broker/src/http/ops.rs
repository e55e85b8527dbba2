//! Operational endpoints: liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::openapi::schemas::{ErrorBody, Status};
use crate::clock::Clock;
use crate::service::AppState;

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "ops",
    responses((status = 200, description = "The process is up", body = Status)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: every token the configured endpoints hand out can be served now without waiting on
/// IMS. A node that cannot issue client tokens should not take traffic.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Every configured token can be served now", body = Status),
        (status = 503, description = "`not_ready`: no servable token yet", body = ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds before asking again"))),
    ))]
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let mut not_ready = Vec::new();
    if let Some(ct) = &st.client_token
        && ct.token.peek().is_none()
    {
        not_ready.push("client_token");
    }
    if not_ready.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": "not_ready",
                "error_description": format!("no servable token yet for: {}", not_ready.join(", ")),
            })),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "ops",
    responses((status = 200, description = "Metrics in the OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    // Link counts are read at scrape time so the gauge is right after restarts and unlinks.
    if let Some(store) = st.store.clone() {
        let counts = tokio::task::spawn_blocking(move || store.count_links_blocking()).await;
        if let Ok(Ok(counts)) = counts {
            for (status, n) in counts {
                st.metrics
                    .links
                    .get_or_create(&crate::metrics::StatusLabels {
                        status: status.as_str(),
                    })
                    .set(n as i64);
            }
        }
    }
    let now = crate::clock::unix_ms(crate::clock::SystemClock.now()) / 1000;
    for (name, cred) in &st.credentials {
        if let Some(keys) = &cred.signing {
            let left = keys
                .last_valid_expiry(now)
                .map_or(0, |t| t.saturating_sub(now));
            st.metrics
                .certificate_expiry
                .get_or_create(&crate::metrics::CredentialLabels {
                    credential: name.clone(),
                })
                .set(i64::try_from(left).unwrap_or(i64::MAX));
        }
    }
    let mut resp = st.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
