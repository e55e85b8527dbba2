//! The operator console at `/admin`: sign-in with the internal API key (a `__Host-` session
//! cookie), the linked orgs, users' sign-ins, each credential's health and the rate-limit
//! rejections, and the actions (unlink, revoke a sign-in, force a refresh, sign out).
//!
//! Invariant: every POST but the sign-in itself needs a live session, a same-origin request
//! (`Sec-Fetch-Site`/`Origin`) and the session's CSRF token, compared in constant time. The
//! actions call the same service methods the JSON API uses.

mod render;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::consent::{flow_error, named_cookie, redirect};
use super::error::ApiError;
use super::html::{self, Flow};
use super::openapi::schemas::{ConsoleActionForm, ConsoleLoginForm, ErrorBody};
use crate::admin_auth::{AdminAuth, SESSION_LIFETIME, Session, SignInError};
use crate::cache::{TokenCache, TokenKey};
use crate::clock::SharedClock;
use crate::config::CredentialKind;
use crate::consent::is_account_id;
use crate::credentials::Credential;
use crate::metrics::Metrics;
use crate::service::{ClientTokenState, ConsentState};

pub use render::PAGE_SIZE;

/// The console's session cookie: host-only, HTTPS-only, never sent cross-site.
pub const COOKIE: &str = "__Host-imsgate-admin";

/// Everything the console shows and acts on. Sections for absent features are left out.
#[derive(Debug)]
pub struct ConsoleState {
    pub auth: AdminAuth,
    pub cache: TokenCache,
    pub credentials: HashMap<String, Arc<Credential>>,
    pub consent: Option<Arc<ConsentState>>,
    pub user_login: Option<Arc<super::user_login::UserLoginState>>,
    pub client_token: Option<Arc<ClientTokenState>>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

/// The client address the sign-in throttle counts against: the one the access layer read under
/// the trusted-proxy rule (so operators behind nginx are told apart), else the TCP peer.
pub fn client_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<super::access::ClientIp>()
        .map(|c| c.0)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip())
        })
}

/// A form or query string as a map; the first value of a repeated name counts.
fn fields(raw: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

fn session_of(st: &ConsoleState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = named_cookie(headers, COOKIE)?;
    let s = st.auth.session(&id)?;
    Some((id, s))
}

/// Whether the request comes from a page of this same origin. Browsers send `Sec-Fetch-Site` and
/// `Origin` on form posts; a client sending neither (curl) still needs the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in to the console at /admin with the internal API key",
    )
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_refused",
        "this form did not come from the console page of this session; reload the console and try again",
    )
}

/// The checks every action passes before it runs.
fn guard(
    st: &ConsoleState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, Session), ApiError> {
    let (id, session) = session_of(st, headers).ok_or_else(unauthorized)?;
    if !same_origin(headers) {
        return Err(csrf_refused());
    }
    let token = form.get("csrf").map(String::as_str).unwrap_or("");
    if !AdminAuth::csrf_ok(&session, token) {
        return Err(csrf_refused());
    }
    Ok((id, session))
}

/// A console page. Unlike the flow pages (`no-referrer`, their URLs carry codes and state), the
/// console's forms need `same-origin`: under `no-referrer` a browser sends `Origin: null` with a
/// form post, and the same-origin check could not tell the console from a sandboxed foreign frame.
fn page_response(body_title: &str, body: &str, status: StatusCode) -> Response {
    let mut resp = html::page(status, body_title, body);
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// An error as a console page (same referrer policy as the console) or as JSON.
fn fail(headers: &HeaderMap, err: ApiError) -> Response {
    let mut resp = html::negotiate(headers, Flow::Admin, err);
    if html::wants_html(headers) {
        resp.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    resp
}

/// `GET /admin`: the console, or the sign-in form.
#[utoipa::path(get, operation_id = "console_page", path = "/admin", tag = "console",
    security((), ("console_session" = [])),
    params(
        ("q" = Option<String>, Query, description = "Linked orgs whose account or org id contains this"),
        ("offset" = Option<String>, Query, description = "Linked orgs: rows to skip"),
        ("users_q" = Option<String>, Query, description = "Sign-ins whose user or Adobe id contains this"),
        ("users_offset" = Option<String>, Query, description = "Sign-ins: rows to skip"),
        ("limit" = Option<String>, Query, description = "Rows per page, 1 to 100 (default 20)"),
        ("notice" = Option<String>, Query, description = "The outcome of the last action, shown once"),
        ("subject" = Option<String>, Query, description = "What the last action was about"),
    ),
    responses(
        (status = 200, description = "The console (with a session), or the sign-in form (a browser without one)",
         content_type = "text/html", body = String),
        (status = 401, description = "`unauthorized`: an API client without a console session", body = ErrorBody),
        (status = 500, description = "`internal_error`: storage failed", content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn page(
    State(st): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((_, session)) = session_of(&st, &headers) else {
        if html::wants_html(&headers) {
            return page_response(
                "imsgate console: sign in",
                &render::login(None),
                StatusCode::OK,
            );
        }
        return unauthorized().into_response();
    };
    let q = fields(query.as_deref().unwrap_or("").as_bytes());
    match render::console(&st, &session, &q).await {
        Ok(body) => page_response("imsgate console", &body, StatusCode::OK),
        Err(e) => fail(&headers, e),
    }
}

/// `POST /admin/login`: the password form.
#[utoipa::path(post, operation_id = "console_login", path = "/admin/login", tag = "console",
    request_body(content = ConsoleLoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to the console, with the session cookie set",
         headers(("Location" = String), ("Set-Cookie" = String, description = "`__Host-imsgate-admin`"))),
        (status = 401, description = "`unauthorized`: the password is wrong", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`csrf_refused`: a cross-site request", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "`too_many_attempts`: too many wrong passwords",
         content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn login(
    State(st): State<Arc<ConsoleState>>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(&headers) {
        return fail(&headers, csrf_refused());
    }
    let form = fields(&body);
    let password = form.get("password").map(String::as_str).unwrap_or("");
    match st.auth.sign_in(client_ip(&extensions), password) {
        Ok((id, _)) => {
            let mut resp = redirect("/admin");
            let cookie = format!(
                "{COOKIE}={id}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
                SESSION_LIFETIME.as_secs()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(SignInError::WrongPassword) => {
            tracing::warn!(
                client = ?client_ip(&extensions),
                "console sign-in refused: wrong password"
            );
            if html::wants_html(&headers) {
                page_response(
                    "imsgate console: sign in",
                    &render::login(Some(
                        "That password is wrong. The password is the internal API key.",
                    )),
                    StatusCode::UNAUTHORIZED,
                )
            } else {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the password is wrong; it is the internal API key",
                )
                .into_response()
            }
        }
        Err(SignInError::Throttled {
            retry_after,
            global,
        }) => {
            tracing::warn!(client = ?client_ip(&extensions), global, "console sign-in throttled");
            let err = ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    if global {
                        "too many wrong passwords were tried from everywhere; sign-in is paused"
                    } else {
                        "too many wrong passwords were tried from this address; sign-in is paused"
                    },
                )
            };
            fail(&headers, err)
        }
    }
}

/// `POST /admin/logout`.
#[utoipa::path(post, operation_id = "console_logout", path = "/admin/logout", tag = "console",
    security(("console_session" = [])),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out: to the sign-in form, the cookie cleared",
         headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "`unauthorized`: no console session (sign in first)", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`csrf_refused`: a cross-site request or a wrong CSRF token", content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn logout(
    State(st): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = fields(&body);
    match guard(&st, &headers, &form) {
        Ok((id, _)) => {
            st.auth.sign_out(&id);
            let mut resp = redirect("/admin");
            resp.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "__Host-imsgate-admin=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict",
                ),
            );
            resp
        }
        Err(e) => fail(&headers, e),
    }
}

/// Back to the console with a notice (post/redirect/get, so a reload does not repeat it).
fn done(notice: &str, subject: &str) -> Response {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .append_pair("subject", subject)
        .finish();
    redirect(&format!("/admin?{q}"))
}

fn not_here(what: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("this broker has no {what}"),
    )
}

/// `POST /admin/unlink`: unlinks an account, as `DELETE /api/connections/{account_id}` does.
#[utoipa::path(post, operation_id = "console_unlink", path = "/admin/unlink", tag = "console",
    security(("console_session" = [])),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Unlinked: back to the console with a notice", headers(("Location" = String))),
        (status = 400, description = "`invalid_account_id`", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "`unauthorized`: no console session (sign in first)", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`csrf_refused`: a cross-site request or a wrong CSRF token", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "`not_linked`, or `not_found`: this broker has no linked orgs", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`: storage failed", content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn unlink(
    State(st): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = fields(&body);
    let run = async {
        guard(&st, &headers, &form)?;
        let consent = st.consent.as_ref().ok_or_else(|| not_here("linked orgs"))?;
        let account = form.get("account_id").map(String::as_str).unwrap_or("");
        match consent.service.unlink(account).await.map_err(flow_error)? {
            Some(_) => {
                tracing::info!(account_id = account, "unlinked from the console");
                Ok(done("unlinked", account))
            }
            None => Err(super::connections::not_linked()),
        }
    };
    run.await.unwrap_or_else(|e| fail(&headers, e))
}

/// `POST /admin/revoke-sign-in`: forgets a user's grant and revokes it at IMS, as
/// `DELETE /api/users/{user}/token` does.
#[utoipa::path(post, operation_id = "console_revoke_sign_in", path = "/admin/revoke-sign-in", tag = "console",
    security(("console_session" = [])),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Revoked: back to the console with a notice", headers(("Location" = String))),
        (status = 400, description = "`invalid_user`", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "`unauthorized`: no console session (sign in first)", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`csrf_refused`: a cross-site request or a wrong CSRF token", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "`not_signed_in`, or `not_found`: this broker has no user sign-in", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 409, description = "`login_required`", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "`temporarily_unavailable`: IMS cannot be reached now", content((ErrorBody = "application/json"), (String = "text/html")),
         headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn revoke_sign_in(
    State(st): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = fields(&body);
    let run = async {
        guard(&st, &headers, &form)?;
        let ul = st
            .user_login
            .as_ref()
            .ok_or_else(|| not_here("user sign-ins"))?;
        let user = form.get("user").map(String::as_str).unwrap_or("");
        if !is_account_id(user) {
            return Err(ApiError::bad_request(
                "invalid_user",
                "user must be 1 to 128 characters from A-Z a-z 0-9 and . _ - @ : +",
            ));
        }
        match ul
            .service
            .vault
            .revoke(user)
            .await
            .map_err(super::user_login::vault_error)?
        {
            Some(r) => {
                tracing::info!(
                    user,
                    revoked_at_ims = r.at_ims,
                    "sign-in revoked from the console"
                );
                Ok(done(
                    if r.at_ims {
                        "revoked"
                    } else {
                        "revoked_locally"
                    },
                    user,
                ))
            }
            None => Err(super::user_login::vault_error(
                crate::user_login::VaultError::NotSignedIn,
            )),
        }
    };
    run.await.unwrap_or_else(|e| fail(&headers, e))
}

/// The cache key a refresh form names: one the cache holds, or a configured credential's own.
fn refresh_key(st: &ConsoleState, credential: &str, org: Option<&str>) -> Option<TokenKey> {
    if let Some(h) = st
        .cache
        .health()
        .into_iter()
        .find(|h| &*h.key.credential == credential && h.key.org_id.as_deref() == org)
    {
        return Some(h.key);
    }
    let c = st.credentials.get(credential)?;
    match (org, c.config.kind) {
        (None, CredentialKind::OAuthServerToServer | CredentialKind::ServiceAccount) => {
            Some(TokenKey {
                credential: Arc::from(credential),
                org_id: None,
                scopes: c.config.scopes.clone(),
            })
        }
        _ => None,
    }
}

/// `POST /admin/refresh`: fetches a new token for a credential (or an org's token) now, through
/// the cache's single flight.
#[utoipa::path(post, operation_id = "console_refresh", path = "/admin/refresh", tag = "console",
    security(("console_session" = [])),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to the console with `notice=refreshed` or `refresh_failed`",
         headers(("Location" = String))),
        (status = 401, description = "`unauthorized`: no console session (sign in first)", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`csrf_refused`: a cross-site request or a wrong CSRF token", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "`unknown_token`: no such credential or org token; `not_linked`: the org is not linked", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 409, description = "`needs_reauthorization`: IMS refused this org's tokens; an admin of the org must consent again", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 500, description = "`internal_error`: storage failed", content((ErrorBody = "application/json"), (String = "text/html"))),
    ))]
pub async fn refresh(
    State(st): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = fields(&body);
    let run = async {
        guard(&st, &headers, &form)?;
        let credential = form.get("credential").map(String::as_str).unwrap_or("");
        let org = form
            .get("org")
            .map(String::as_str)
            .filter(|o| !o.is_empty());
        let key = refresh_key(&st, credential, org).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_token",
                "no such credential or org token; reload the console",
            )
        })?;
        let subject = match org {
            Some(o) => format!("{credential} / {o}"),
            None => credential.to_owned(),
        };
        // An org's token follows the org-token rules: only a linked org is fetched, and IMS
        // refusing it marks the links `needs_reauthorization`, as `POST /api/orgs/{org}/token`.
        let org_rules = match org {
            Some(o) => {
                let consent = st.consent.as_ref().ok_or_else(|| not_here("linked orgs"))?;
                super::connections::require_linked(consent, o).await?;
                Some((consent, o))
            }
            None => None,
        };
        match st.cache.force_refresh(key.clone()).await {
            Ok(crate::cache::Forced::Fetched(_)) => {
                tracing::info!(
                    credential,
                    org = org.unwrap_or(""),
                    "token refreshed from the console"
                );
                Ok(done("refreshed", &subject))
            }
            Ok(crate::cache::Forced::Recent(_)) => Ok(done("recently_refreshed", &subject)),
            Err(u) => {
                tracing::warn!(credential, org = org.unwrap_or(""), error = %u.cause, "a forced refresh failed");
                if let Some((consent, o)) = org_rules
                    && u.cause.kind == imsgate_ims::ImsErrorKind::Rejected
                {
                    super::connections::org_refused(consent, o.to_owned(), &key, &u.cause).await;
                    return Ok(done("org_refused", &subject));
                }
                Ok(done("refresh_failed", &subject))
            }
        }
    };
    run.await.unwrap_or_else(|e: ApiError| fail(&headers, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_table() {
        for (site, origin, host, ok) in [
            (None, None, Some("broker.test"), true),
            (
                Some("same-origin"),
                Some("https://broker.test"),
                Some("broker.test"),
                true,
            ),
            (
                Some("same-origin"),
                Some("http://127.0.0.1:8080"),
                Some("127.0.0.1:8080"),
                true,
            ),
            (None, Some("https://BROKER.test"), Some("broker.test"), true),
            (
                Some("cross-site"),
                Some("https://evil.test"),
                Some("broker.test"),
                false,
            ),
            (
                Some("same-site"),
                Some("https://a.broker.test"),
                Some("broker.test"),
                false,
            ),
            (Some("none"), None, Some("broker.test"), false),
            (None, Some("https://evil.test"), Some("broker.test"), false),
            (None, Some("null"), Some("broker.test"), false),
            (None, Some("https://broker.test"), None, false),
            (
                None,
                Some("https://broker.test.evil.test"),
                Some("broker.test"),
                false,
            ),
        ] {
            let mut h = HeaderMap::new();
            if let Some(s) = site {
                h.insert("sec-fetch-site", HeaderValue::from_static(s));
            }
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            if let Some(x) = host {
                h.insert(header::HOST, HeaderValue::from_static(x));
            }
            assert_eq!(same_origin(&h), ok, "{site:?} {origin:?} {host:?}");
        }
    }

    #[test]
    fn repeated_fields_keep_the_first() {
        let f = fields(b"csrf=a&csrf=b&user=x%40y");
        assert_eq!(f["csrf"], "a");
        assert_eq!(f["user"], "x@y");
    }
}
