//! The consent flow over HTTP: `POST /api/connections`, `GET /connect/{ticket}` and the callback.
//!
//! Browser-facing responses carry `Referrer-Policy: no-referrer` (the callback URL holds the
//! id_token and state) and `Cache-Control: no-store`.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::html::{self, Flow};
use super::internal_auth::require_bearer;
use super::openapi::schemas::{ConnectStarted, ErrorBody};
use super::request::{path_param, read_json};
use crate::consent::{FlowError, SESSION_COOKIE};
use crate::service::ConsentState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StartConnection)]
struct StartRequest {
    /// Your id for the signed-in account (1 to 128 of `A-Z a-z 0-9 . _ - @ : +`).
    #[schema(pattern = r"^[A-Za-z0-9._\-@:+]{1,128}$")]
    account_id: String,
    /// Where the browser goes back after consent; its origin must be in `[consent] return_to`.
    #[schema(format = "uri", max_length = 2048)]
    return_to: String,
}

/// `POST /api/connections` (internal): a one-time connect URL for an account.
#[utoipa::path(post, operation_id = "start_connection", path = "/api/connections", tag = "consent",
    security(("internal_key" = [])),
    request_body(content = StartRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "A one-time connect URL", body = ConnectStarted),
        (status = 400, description = "`invalid_account_id`, `invalid_return_to` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 408, description = "`request_timeout`: the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "`request_too_large`: the body is above `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 429, description = "`too_many_open_links`: too many open links for this account",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
        (status = 503, description = "`open_links_capacity_reached`: the flow is at capacity",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn start(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let req: StartRequest = read_json(req, "{\"account_id\": ..., \"return_to\": ...}").await?;
    let started = st
        .service
        .start(&req.account_id, &req.return_to)
        .await
        .map_err(flow_error)?;
    let body = serde_json::json!({
        "connect_url": started.connect_url.as_str(),
        "expires_at": super::rfc3339(started.expires_at_ms),
        "expires_at_ms": started.expires_at_ms,
    });
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `GET /connect/{ticket}` (browser): consumes the ticket, sets the session cookie, and sends
/// the browser to the consent page.
#[utoipa::path(get, operation_id = "open_connect_link", path = "/connect/{ticket}", tag = "consent",
    params(("ticket" = String, Path, description = "The one-time ticket from `connect_url`")),
    responses(
        (status = 303, description = "To Adobe's consent page, with the session cookie set",
         headers(("Location" = String), ("Set-Cookie" = String, description = "`__Host-imsgate-consent`"))),
        (status = 400, description = "`invalid_request`: the ticket is not valid UTF-8",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 410, description = "`connect_link_unusable`: unknown, expired or already used",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`",
         content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn open(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
    ticket: Result<Path<String>, PathRejection>,
) -> Response {
    open_inner(&st, ticket)
        .await
        .unwrap_or_else(|e| html::negotiate(&headers, Flow::Consent, e))
}

async fn open_inner(
    st: &ConsentState,
    ticket: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let ticket = path_param(ticket)?;
    let opened = st.service.open(&ticket).await.map_err(flow_error)?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        opened.session_id,
        opened.max_age.as_secs()
    );
    let mut resp = redirect(opened.consent_url.as_str());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /consent/callback` (browser, redirected by IMS).
#[utoipa::path(get, operation_id = "consent_callback", path = crate::config::CALLBACK_PATH, tag = "consent",
    params(
        ("state" = Option<String>, Query, description = "Set by IMS"),
        ("admin_consent" = Option<String>, Query, description = "Set by IMS"),
        ("id_token" = Option<String>, Query, description = "Set by IMS"),
        ("error" = Option<String>, Query, description = "Set by IMS when consent failed"),
        ("__Host-imsgate-consent" = Option<String>, Cookie, description = "The consent session"),
    ),
    responses(
        (status = 303, description = "Back to `return_to` with `result` and `code`",
         headers(("Location" = String))),
        (status = 400, description = "`invalid_session`: no usable consent session",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`",
         content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn callback(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = session_cookie(&headers);
    let outcome = st
        .service
        .callback(session.as_deref(), query.as_deref().unwrap_or(""))
        .await;
    let mut resp = match outcome {
        Ok(r) => {
            if let Some(org) = r.linked_org {
                st.cache.reset(&crate::cache::TokenKey {
                    credential: st.credential.clone(),
                    org_id: Some(Arc::from(org.as_str())),
                    scopes: st.service.scopes.clone(),
                });
            }
            redirect(r.location.as_str())
        }
        Err(e) => html::negotiate(&headers, Flow::Consent, flow_error(e)),
    };
    let h = resp.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The session is spent either way; tell the browser to forget it.
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-imsgate-consent=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
        ),
    );
    resp
}

/// The session cookie's value; `None` when absent or present more than once (ambiguous).
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, SESSION_COOKIE)
}

/// A cookie's value; `None` when absent or present more than once (ambiguous).
pub(super) fn named_cookie(headers: &HeaderMap, cookie: &str) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((name, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if name == cookie && found.replace(v.to_owned()).is_some() {
                return None;
            }
        }
    }
    found
}

pub(super) fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// serde's message without the echoed input.
pub(super) fn flow_error(e: FlowError) -> ApiError {
    match e {
        FlowError::BadAccountId => ApiError::bad_request("invalid_account_id", e.to_string()),
        FlowError::BadReturnTo(_) => ApiError::bad_request("invalid_return_to", e.to_string()),
        FlowError::TicketUnusable => {
            ApiError::new(StatusCode::GONE, "connect_link_unusable", e.to_string())
        }
        FlowError::NoSession => ApiError::bad_request("invalid_session", e.to_string()),
        // 429: this caller asked too often for one account or user; it can slow down.
        FlowError::TooManyOpenTickets { retry_after, .. } => ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_open_links",
                e.to_string(),
            )
        },
        // 503: the flow as a whole is at capacity, which no single request caused.
        FlowError::TicketCapacity { retry_after, .. } => ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "open_links_capacity_reached",
                e.to_string(),
            )
        },
        FlowError::Sealing => {
            tracing::error!("sealing a sign-in session failed");
            ApiError::internal()
        }
        FlowError::Storage(err) => {
            tracing::error!(error = %err, "storage failed");
            ApiError::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_table() {
        let sid = "a".repeat(43);
        for (cookies, want) in [
            (vec![format!("{SESSION_COOKIE}={sid}")], Some(sid.clone())),
            (
                vec![format!("x=1; {SESSION_COOKIE}={sid}; y=2")],
                Some(sid.clone()),
            ),
            (
                vec!["x=1".to_owned(), format!("{SESSION_COOKIE}={sid}")],
                Some(sid.clone()),
            ),
            // Without the prefix it is a different cookie, which any subdomain could set.
            (vec![format!("imsgate-consent={sid}")], None),
            (
                vec![format!("{SESSION_COOKIE}={sid}; {SESSION_COOKIE}=other")],
                None,
            ),
            (vec![], None),
        ] {
            let mut h = HeaderMap::new();
            for c in &cookies {
                h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
            }
            assert_eq!(session_cookie(&h), want, "{cookies:?}");
        }
    }
}
