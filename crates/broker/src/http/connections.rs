//! Links after consent (internal API): read, list, unlink, and org-scoped tokens.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use imsgate_ims::ImsErrorKind;
use serde_json::{Value, json};

use super::consent::{flow_error, json_response};
use super::error::ApiError;
use super::internal_auth::require_bearer;
use super::openapi::schemas::{Connections, ErrorBody, Link as LinkBody, OrgToken};
use super::request::path_param;
use crate::cache::TokenKey;
use crate::clock::unix_ms;
use crate::consent::{FlowError, is_account_id, is_org_id};
use crate::service::ConsentState;
use crate::storage::{Link, LinkStatus};

pub(super) fn link_json(link: &Link) -> Value {
    let ts = |ms: u64| Value::String(super::rfc3339(ms));
    json!({
        "account_id": link.account_id,
        "status": link.status.as_str(),
        "org_id": link.org_id,
        "technical_account": link.technical_account,
        "linked_at": ts(link.linked_at_ms),
        "updated_at": ts(link.updated_at_ms),
        "unlinked_at": link.unlinked_at_ms.map(ts),
    })
}

fn account(id: &str) -> Result<(), ApiError> {
    if is_account_id(id) {
        Ok(())
    } else {
        Err(flow_error(FlowError::BadAccountId))
    }
}

/// `GET /api/connections/{account_id}`. An account never linked reads as `unlinked`.
#[utoipa::path(get, operation_id = "get_connection", path = "/api/connections/{account_id}", tag = "consent",
    security(("internal_key" = [])),
    params(("account_id" = String, Path, description = "Your id for the account",
         pattern = r"^[A-Za-z0-9._\-@:+]{1,128}$"),),
    responses(
        (status = 200, description = "The account's link", body = LinkBody),
        (status = 400, description = "`invalid_account_id` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
    ))]
pub async fn get(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
    account_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let account_id = path_param(account_id)?;
    account(&account_id)?;
    let link = st
        .service
        .store
        .get_link(account_id.clone())
        .await
        .map_err(|e| flow_error(e.into()))?;
    let body = match link {
        Some(l) => link_json(&l),
        None => json!({
            "account_id": account_id,
            "status": LinkStatus::Unlinked.as_str(),
            "org_id": null,
            "technical_account": null,
            "linked_at": null,
            "updated_at": null,
            "unlinked_at": null,
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /api/connections`: every link, most recently changed first.
#[utoipa::path(get, operation_id = "list_connections", path = "/api/connections", tag = "consent",
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "Every link", body = Connections),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
    ))]
pub async fn list(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let links = st
        .service
        .store
        .list_links()
        .await
        .map_err(|e| flow_error(e.into()))?;
    let items: Vec<Value> = links.iter().map(link_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "connections": items }),
    ))
}

/// `DELETE /api/connections/{account_id}`: unlinks; 404 if the account was never linked.
#[utoipa::path(delete, operation_id = "delete_connection", path = "/api/connections/{account_id}", tag = "consent",
    security(("internal_key" = [])),
    params(("account_id" = String, Path, description = "Your id for the account",
         pattern = r"^[A-Za-z0-9._\-@:+]{1,128}$"),),
    responses(
        (status = 200, description = "The link, now unlinked", body = LinkBody),
        (status = 400, description = "`invalid_account_id` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 404, description = "`not_linked`: never linked", body = ErrorBody),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
    ))]
pub async fn delete(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
    account_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let account_id = path_param(account_id)?;
    match st.service.unlink(&account_id).await.map_err(flow_error)? {
        Some(link) => Ok(json_response(StatusCode::OK, &link_json(&link))),
        None => Err(not_linked()),
    }
}

/// `POST /api/orgs/{org_id}/token`: an org-scoped access token from the shared cache.
///
/// Only orgs with a live link get one. When IMS refuses the org (consent revoked), every link to
/// it is marked `needs_reauthorization` and the cache entry is reset, so no further request goes
/// to IMS for that org until a new consent restores the link.
#[utoipa::path(post, operation_id = "get_org_token", path = "/api/orgs/{org_id}/token", tag = "consent",
    security(("internal_key" = [])),
    params(("org_id" = String, Path, description = "The IMS org id, `0123ABCD@AdobeOrg`",
        pattern = r"^[A-Za-z0-9@._\-+]{1,256}$")),
    responses(
        (status = 200, description = "An org-scoped access token", body = OrgToken),
        (status = 400, description = "`invalid_org_id` or `invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the internal API key is missing or wrong", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"imsgate-internal\"`"))),
        (status = 404, description = "`not_linked`: no account is linked to this org", body = ErrorBody),
        (status = 409, description = "`needs_reauthorization`: IMS no longer issues tokens for this org", body = ErrorBody),
        (status = 500, description = "`internal_error`: storage failed", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`: IMS is failing",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn org_token(
    State(st): State<Arc<ConsentState>>,
    headers: HeaderMap,
    org_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_bearer(&headers, &st.internal_key)?;
    let org_id = path_param(org_id)?;
    if !is_org_id(&org_id) {
        return Err(ApiError::bad_request(
            "invalid_org_id",
            "org_id must look like 0123ABCD@AdobeOrg",
        ));
    }
    require_linked(&st, &org_id).await?;
    let key = TokenKey {
        credential: st.credential.clone(),
        org_id: Some(Arc::from(org_id.as_str())),
        scopes: st.service.scopes.clone(),
    };
    match st.cache.get(key.clone()).await {
        Ok(cached) => {
            let t = &cached.token;
            let now = unix_ms(st.service.clock.now());
            let body = json!({
                "access_token": t.secret.expose(),
                "token_type": "bearer",
                "expires_in": t.expires_at_unix_ms().saturating_sub(now) / 1000,
                "expires_at_ms": t.expires_at_unix_ms(),
                "org_id": org_id,
            });
            Ok(json_response(StatusCode::OK, &body))
        }
        // IMS refusing an org this client holds a consent for is how revocation shows.
        Err(u) if u.cause.kind == ImsErrorKind::Rejected => {
            Err(org_refused(&st, org_id, &key, &u.cause).await)
        }
        Err(u) => Err(ApiError::unavailable(u.retry_after)),
    }
}

/// Org-scoped tokens are fetched only for an org whose link is `linked`: once IMS refused it
/// (`needs_reauthorization`) or it was unlinked, IMS is not asked again until a new consent.
pub(super) async fn require_linked(st: &ConsentState, org_id: &str) -> Result<(), ApiError> {
    let status = st
        .service
        .store
        .org_status(org_id.to_owned())
        .await
        .map_err(|e| flow_error(e.into()))?;
    match status {
        Some(LinkStatus::Linked) => Ok(()),
        Some(LinkStatus::NeedsReauthorization) => Err(needs_reauthorization()),
        Some(LinkStatus::Unlinked) | None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_linked",
            "no account is linked to this org; an admin of the org must consent first",
        )),
    }
}

/// IMS refused an org's token: every link of the org is marked `needs_reauthorization` and its
/// cache entry reset, so no further IMS request is made for it until a new consent.
pub(super) async fn org_refused(
    st: &ConsentState,
    org_id: String,
    key: &TokenKey,
    cause: &imsgate_ims::ImsError,
) -> ApiError {
    let now = unix_ms(st.service.clock.now());
    match st
        .service
        .store
        .mark_needs_reauthorization(org_id, now)
        .await
    {
        Ok(n) if n > 0 => {
            st.metrics.revocations.inc();
            tracing::warn!(
                links = n,
                debug_id = cause.debug_id.as_deref().unwrap_or(""),
                "IMS refused an org-scoped token; links marked needs_reauthorization"
            );
        }
        Ok(_) => {}
        Err(e) => return flow_error(e.into()),
    }
    st.cache.reset(key);
    needs_reauthorization()
}

pub(super) fn not_linked() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_linked",
        "this account has never been linked",
    )
}

fn needs_reauthorization() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "needs_reauthorization",
        "IMS no longer issues tokens for this org (consent revoked?); an admin of the org must connect again",
    )
}
