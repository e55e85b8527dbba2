//! `GET /api/client-token`: a short-lived IMS token for the browser's `ClientAuthProvider`.
//!
//! This is the hot path: with a cached token it verifies the caller, checks two rate limits and
//! serialises a small struct, touching no lock that other requests wait on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::access::CallerTokenId;
use super::error::ApiError;
use super::openapi::schemas::{ClientToken, ErrorBody};
use crate::cache::CachedToken;
use crate::service::ClientTokenState;

/// The response body up to the `tokenId` value, rendered once per IMS token rather than once per
/// request: the token is large and identical for every caller until it is refreshed.
#[derive(Debug)]
pub struct RenderedPrefix {
    token: Arc<CachedToken>,
    prefix: Vec<u8>,
}

fn render_prefix(token: Arc<CachedToken>) -> Arc<RenderedPrefix> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Head<'a> {
        client_access_token: &'a str,
        token_expiry_timestamp_ms: u64,
    }
    let mut prefix = serde_json::to_vec(&Head {
        client_access_token: token.token.secret.expose(),
        token_expiry_timestamp_ms: token.token.expires_at_unix_ms(),
    })
    .unwrap_or_default();
    // Replace the closing brace with the start of the last member.
    prefix.pop();
    prefix.extend_from_slice(br#","tokenId":""#);
    Arc::new(RenderedPrefix { token, prefix })
}

#[utoipa::path(get, operation_id = "get_client_token", path = "/api/client-token", tag = "client-token",
    security(("caller_token" = [])),
    responses(
        (status = 200, description = "A token for the Express Embed SDK",
         body = ClientToken,
         headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, description = "`invalid_token`: missing or unacceptable caller token",
         body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"`"))),
        (status = 429, description = "`rate_limited`: a per-user or global budget is spent",
         body = ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds before a retry can succeed"))),
        (status = 503, description = "`temporarily_unavailable`: no valid IMS token can be served now",
         body = ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds before the next IMS attempt"))),
    ))]
pub async fn client_token(
    State(st): State<Arc<ClientTokenState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = match st.verifier.verify_headers(&headers).await {
        Ok(c) => c,
        Err(reason) => {
            st.verifier.log_refusal(reason, &st.metrics);
            return Err(ApiError::invalid_token(reason.description()));
        }
    };
    let id = caller.token_id;
    if let Err(limited) = st.limits.check(&id) {
        st.metrics.rate_limited(limited.limit.as_str());
        let mut resp = ApiError::rate_limited(limited.retry_after).into_response();
        resp.extensions_mut().insert(CallerTokenId(id));
        return Ok(resp);
    }
    if let Some(guard) = st.token.cached()
        && let Some(cached) = guard.as_ref()
    {
        return Ok(respond(&st, cached, id));
    }
    match st.token.get().await {
        Ok(cached) => Ok(respond(&st, &cached, id)),
        Err(e) => {
            let mut resp = ApiError::unavailable(e.retry_after).into_response();
            resp.extensions_mut().insert(CallerTokenId(id));
            Ok(resp)
        }
    }
}

fn respond(st: &ClientTokenState, cached: &Arc<CachedToken>, id: Uuid) -> Response {
    let rendered = st.rendered.load();
    let fresh;
    let prefix = match rendered.as_ref() {
        Some(r) if Arc::ptr_eq(&r.token, cached) => &r.prefix,
        _ => {
            fresh = render_prefix(cached.clone());
            st.rendered.store(Some(fresh.clone()));
            &fresh.prefix
        }
    };
    let mut body = Vec::with_capacity(prefix.len() + 38);
    body.extend_from_slice(prefix);
    body.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    body.extend_from_slice(b"\"}");
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp.extensions_mut().insert(CallerTokenId(id));
    resp
}
