//! `GET /api/client-token`: a short-lived IMS token for the browser's `ClientAuthProvider`.
//!
//! This is the hot path: with a cached token it verifies the caller, checks two rate limits and
//! serialises a small struct, touching no lock that other requests wait on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::ApiError;
use crate::service::ClientTokenState;

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    client_access_token: &'a str,
    token_expiry_timestamp_ms: u64,
    token_id: uuid::fmt::Hyphenated,
}

/// `tokenId`: a UUIDv5 of the caller's `sub` under the deployment's private namespace, stable per
/// user, lowercase and hyphenated; the partner's internal user id cannot be read back from it.
pub fn token_id(namespace: &Uuid, sub: &str) -> Uuid {
    Uuid::new_v5(namespace, sub.as_bytes())
}

pub async fn client_token(
    State(st): State<Arc<ClientTokenState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = match st.verifier.verify_headers(&headers).await {
        Ok(c) => c,
        Err(reason) => {
            st.metrics.caller_auth_failure(reason.as_str());
            tracing::debug!(reason = reason.as_str(), "caller token refused");
            return Err(ApiError::invalid_token());
        }
    };
    let id = token_id(&st.namespace, &caller.sub);
    if let Err(limited) = st.limits.check(&id) {
        st.metrics.rate_limited(limited.limit.as_str());
        return Err(ApiError::rate_limited(limited.retry_after));
    }
    let cached = st
        .token
        .get()
        .await
        .map_err(|e| ApiError::unavailable(e.retry_after))?;
    let body = serde_json::to_vec(&Body {
        client_access_token: cached.token.secret.expose(),
        token_expiry_timestamp_ms: cached.token.expires_at_unix_ms(),
        token_id: id.hyphenated(),
    })
    .map_err(|_| ApiError::unavailable(std::time::Duration::from_secs(1)))?;
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
