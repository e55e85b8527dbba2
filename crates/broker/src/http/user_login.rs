//! User sign-in over HTTP: `POST /api/user-logins`, `GET /login/{ticket}`, `GET /user/callback`,
//! and the internal user-token API (`POST` to get, `DELETE` to revoke
//! `/api/users/{user}/token`).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::consent::{flow_error, json_response, named_cookie, redirect};
use super::error::ApiError;
use super::html::{self, Flow};
use super::internal_auth::require_bearer;
use super::openapi::schemas::{ErrorBody, LoginStarted, Revoked, UserToken};
use super::request::{path_param, read_json};
use crate::consent::is_account_id;
use crate::user_login::{LOGIN_COOKIE, UserLoginService, VaultError};

/// State behind the sign-in flow and the user-token API.
#[derive(Debug)]
pub struct UserLoginState {
    pub service: UserLoginService,
    pub internal_key: imsgate_ims::SecretString,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StartUserLogin)]
struct StartRequest {
    /// Your id for the user (1 to 128 of `A-Z a-z 0-9 . _ - @ : +`).
    #[schema(pattern = r"^[A-Za-z0-9._\-@:+]{1,128}$")]
    user: String,
    /// Where the browser goes back after sign-in; its origin must be allowed.
    #[schema(format = "uri", max_length = 2048)]
    return_to: String,
}

/// `POST /api/user-logins` (internal): a one-time login URL for one of the partner's users.
#[utoipa::path(post, operation_id = "start_user_login", path = "/api/user-logins", tag = "user-login",
    security(("internal_key" = [])),
    request_body(content = StartRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "A one-time login URL", body = LoginStarted),
        (status = 400, description = "`invalid_user`, `invalid_return_to` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 408, description = "`request_timeout`: the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "`request_too_large`: the body is above `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 429, description = "`too_many_open_links`: too many open links for this user",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
        (status = 503, description = "`open_links_capacity_reached`: the flow is at capacity",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn start(
    State(st): State<Arc<UserLoginState>>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let req: StartRequest = read_json(req, "{\"user\": ..., \"return_to\": ...}").await?;
    let started = st
        .service
        .start(&req.user, &req.return_to)
        .await
        .map_err(|e| match e {
            crate::consent::FlowError::BadAccountId => invalid_user(),
            other => flow_error(other),
        })?;
    let body = json!({
        "login_url": started.login_url.as_str(),
        "expires_at": super::rfc3339(started.expires_at_ms),
        "expires_at_ms": started.expires_at_ms,
    });
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `GET /login/{ticket}` (browser): consumes the ticket, sets the session cookie, and sends the
/// browser to IMS's sign-in page.
#[utoipa::path(get, operation_id = "open_login_link", path = "/login/{ticket}", tag = "user-login",
    params(("ticket" = String, Path, description = "The one-time ticket from `login_url`")),
    responses(
        (status = 303, description = "To IMS's sign-in page, with the session cookie set",
         headers(("Location" = String), ("Set-Cookie" = String, description = "`__Host-imsgate-login`"))),
        (status = 400, description = "`invalid_request`: the ticket is not valid UTF-8",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 410, description = "`login_link_unusable`: unknown, expired or already used",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`",
         content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn open(
    State(st): State<Arc<UserLoginState>>,
    headers: HeaderMap,
    ticket: Result<Path<String>, PathRejection>,
) -> Response {
    open_inner(&st, ticket)
        .await
        .unwrap_or_else(|e| html::negotiate(&headers, Flow::SignIn, e))
}

async fn open_inner(
    st: &UserLoginState,
    ticket: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let ticket = path_param(ticket)?;
    let opened = st.service.open(&ticket).await.map_err(|e| match e {
        crate::consent::FlowError::TicketUnusable => ApiError::new(
            StatusCode::GONE,
            "login_link_unusable",
            "this login link is unknown, expired or already used; ask the application for a new one",
        ),
        other => flow_error(other),
    })?;
    let cookie = format!(
        "{LOGIN_COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        opened.session_id,
        opened.max_age.as_secs()
    );
    let mut resp = redirect(opened.authorize_url.as_str());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /user/callback` (browser, redirected by IMS).
#[utoipa::path(get, operation_id = "user_callback", path = crate::config::USER_CALLBACK_PATH, tag = "user-login",
    params(
        ("state" = Option<String>, Query, description = "Set by IMS"),
        ("code" = Option<String>, Query, description = "Set by IMS"),
        ("error" = Option<String>, Query, description = "Set by IMS when sign-in failed"),
        ("__Host-imsgate-login" = Option<String>, Cookie, description = "The sign-in session"),
    ),
    responses(
        (status = 303, description = "Back to `return_to` with `result` and `code`",
         headers(("Location" = String))),
        (status = 400, description = "`invalid_session`: no usable sign-in session",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`",
         content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn callback(
    State(st): State<Arc<UserLoginState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = named_cookie(&headers, LOGIN_COOKIE);
    let outcome = st
        .service
        .callback(session.as_deref(), query.as_deref().unwrap_or(""))
        .await;
    let mut resp = match outcome {
        Ok(r) => redirect(r.location.as_str()),
        Err(e) => html::negotiate(&headers, Flow::SignIn, flow_error(e)),
    };
    let h = resp.headers_mut();
    // The callback URL carries the code and state.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The session is spent either way; tell the browser to forget it.
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-imsgate-login=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
        ),
    );
    resp
}

fn invalid_user() -> ApiError {
    ApiError::bad_request(
        "invalid_user",
        "user must be 1 to 128 characters from A-Z a-z 0-9 and . _ - @ : +",
    )
}

fn check_user(user: &str) -> Result<(), ApiError> {
    if is_account_id(user) {
        Ok(())
    } else {
        Err(invalid_user())
    }
}

pub(crate) fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::NotSignedIn => {
            ApiError::new(StatusCode::NOT_FOUND, "not_signed_in", e.to_string())
        }
        VaultError::LoginRequired(_) => {
            ApiError::new(StatusCode::CONFLICT, "login_required", e.to_string())
        }
        VaultError::Unavailable { retry_after, .. } => ApiError::unavailable(retry_after),
        VaultError::Storage(err) => {
            tracing::error!(error = %err, "storage failed");
            ApiError::internal()
        }
        VaultError::Seal(err) => {
            tracing::error!(error = %err, "a stored user token could not be opened");
            ApiError::internal()
        }
    }
}

/// `POST /api/users/{user}/token` (internal): the user's current access token, refreshed ahead
/// of expiry.
#[utoipa::path(post, operation_id = "get_user_token", path = "/api/users/{user}/token", tag = "user-login",
    security(("internal_key" = [])),
    params(("user" = String, Path, description = "Your id for the user",
         pattern = r"^[A-Za-z0-9._\-@:+]{1,128}$"),),
    responses(
        (status = 200, description = "The user's current access token", body = UserToken),
        (status = 400, description = "`invalid_user` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 404, description = "`not_signed_in`: the user has not signed in", body = ErrorBody),
        (status = 409, description = "`login_required`: IMS refused the grant; the user must sign in again", body = ErrorBody),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`: IMS is failing",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn token(
    State(st): State<Arc<UserLoginState>>,
    headers: HeaderMap,
    user: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let user = path_param(user)?;
    check_user(&user)?;
    let t = st.service.vault.token(&user).await.map_err(vault_error)?;
    let now = crate::clock::unix_ms(st.service.clock.now());
    let body = json!({
        "access_token": t.access_token.expose(),
        "token_type": "bearer",
        "expires_in": t.expires_at_ms.saturating_sub(now) / 1000,
        "expires_at_ms": t.expires_at_ms,
        "ims_user_id": t.ims_user_id,
        "scope": t.scopes,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `DELETE /api/users/{user}/token` (internal): forgets the user's grant and revokes its tokens
/// at IMS.
#[utoipa::path(delete, operation_id = "revoke_user_token", path = "/api/users/{user}/token", tag = "user-login",
    security(("internal_key" = [])),
    params(("user" = String, Path, description = "Your id for the user",
         pattern = r"^[A-Za-z0-9._\-@:+]{1,128}$"),),
    responses(
        (status = 200, description = "The grant is forgotten", body = Revoked),
        (status = 400, description = "`invalid_user` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 404, description = "`not_signed_in`: nothing to revoke", body = ErrorBody),
        (status = 409, description = "`login_required`", body = ErrorBody),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn revoke(
    State(st): State<Arc<UserLoginState>>,
    headers: HeaderMap,
    user: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let user = path_param(user)?;
    check_user(&user)?;
    match st.service.vault.revoke(&user).await.map_err(vault_error)? {
        Some(r) => Ok(json_response(
            StatusCode::OK,
            &json!({"revoked": true, "revoked_at_ims": r.at_ims}),
        )),
        None => Err(vault_error(VaultError::NotSignedIn)),
    }
}
