//! The emulator's HTTP surface: IMS endpoints plus the `/__admin` API (the consent page lives in
//! `consent_page.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::EmulatorClient;
use crate::consent::{IdTokenOptions, IssuerForm, OrgClaim};
use crate::faults::{Endpoint, Fault};
use crate::server::State;

pub(crate) type St = AxState<Arc<State>>;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/ims/token/v3", post(token))
        .route("/ims/keys", get(keys))
        .route("/ims/.well-known/openid-configuration", get(discovery))
        .route("/ims/validate_token/v1", post(validate))
        .route(
            "/ims/userinfo/v2",
            get(userinfo).options(userinfo_preflight),
        )
        .route("/ims/revoke", post(revoke))
        .route(
            "/ims/authorize/v2",
            get(crate::authorize_page::authorize_page)
                .post(crate::authorize_page::authorize_decision),
        )
        .route("/ims/exchange/jwt", post(crate::jwt_exchange::exchange))
        .route("/ims/exchange/jwt/", post(crate::jwt_exchange::exchange))
        .route("/ims/exchange/v1/jwt", post(crate::jwt_exchange::exchange))
        .route(
            "/consent",
            get(crate::consent_page::consent_page).post(crate::consent_page::consent_decision),
        )
        .route("/__admin/faults", axum::routing::delete(clear_all_faults))
        .route(
            "/__admin/faults/{endpoint}",
            put(set_fault).delete(clear_fault),
        )
        .route("/__admin/counters", get(counters))
        .route("/__admin/counters/reset", post(reset_counters))
        .route("/__admin/keys/rotate", post(rotate_keys))
        .route("/__admin/consents", get(list_consents).post(grant_consent))
        .route(
            "/__admin/consents/{client_id}/{org_id}",
            axum::routing::delete(revoke_consent),
        )
        .route(
            "/__admin/id-token",
            get(id_token_options).put(set_id_token_options),
        )
        .with_state(state)
}

#[allow(clippy::disallowed_methods)]
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// IMS attaches an `x-debug-id` to every response; support asks for it.
pub(crate) fn with_debug_id(mut resp: Response) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-debug-id", v);
    }
    resp
}

pub(crate) fn ims_error(status: StatusCode, error: &str, description: &str) -> Response {
    with_debug_id(
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

/// Counts the request and applies any scripted fault. `Some` means the fault decided the answer.
pub(crate) async fn apply_fault(state: &State, endpoint: Endpoint) -> Option<Response> {
    let fault = state.faults.on_request(endpoint)?;
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    if fault.drop_connection {
        // A body that fails on first poll makes the server abort the connection mid-response.
        let stream = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("emulated dropped connection"))
        });
        return Some(Response::new(Body::from_stream(stream)));
    }
    let status = fault.status?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(fault.body.unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(ra) = fault
        .retry_after
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, ra);
    }
    Some(with_debug_id(resp))
}

/// Client credentials from HTTP Basic (`client_secret_basic`, each part form-encoded as RFC 6749
/// §2.3.1 requires) or the form (`client_secret_post`). A form `client_id` that disagrees with
/// Basic is refused as ambiguous.
fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    {
        let decoded = STANDARD.decode(basic.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unform = |s: &str| -> String {
            url::form_urlencoded::parse(format!("v={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let (id, secret) = (unform(id), unform(secret));
        if form.get("client_id").is_some_and(|f| *f != id) {
            return None;
        }
        return Some((id, secret));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

/// Finds the client and checks its secret (either of two during rotation), in constant time.
pub(crate) fn authenticate<'a>(
    state: &'a State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<&'a EmulatorClient, Box<Response>> {
    let Some((client_id, secret)) = client_auth(headers, form) else {
        return Err(Box::new(ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "missing client_id parameter",
        )));
    };
    let Some(client) = state.client(&client_id) else {
        return Err(Box::new(ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client_id parameter",
        )));
    };
    let secret_ok = client.client_secrets.iter().fold(false, |ok, s| {
        ok | bool::from(s.as_bytes().ct_eq(secret.as_bytes()))
    });
    if !secret_ok {
        return Err(Box::new(ims_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client_secret parameter",
        )));
    }
    Ok(client)
}

async fn token(AxState(state): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = apply_fault(&state, Endpoint::Token).await {
        return resp;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed form body",
        );
    };
    let grant = match form.get("grant_type").map(String::as_str) {
        Some(g @ ("client_credentials" | "authorization_code" | "refresh_token")) => g,
        Some(_) => {
            return ims_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "unsupported grant_type",
            );
        }
        None => {
            return ims_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "missing grant_type parameter",
            );
        }
    };
    let client = match authenticate(&state, &headers, &form) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    match grant {
        "authorization_code" => crate::user_grants::authorization_code(&state, client, &form),
        "refresh_token" => crate::user_grants::refresh_token(&state, client, &form),
        _ => client_credentials(&state, client, &form),
    }
}

fn client_credentials(
    state: &State,
    client: &EmulatorClient,
    form: &HashMap<String, String>,
) -> Response {
    let Some(scope) = form.get("scope").filter(|s| !s.trim().is_empty()) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope parameter is missing",
        );
    };
    let requested: Vec<&str> = scope
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = requested
        .iter()
        .find(|s| !client.scopes.iter().any(|a| a == *s))
    {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("invalid scope ({bad})"),
        );
    }
    // An org-scoped request (Enterprise Web App) is granted only for orgs whose admin consented
    // (or that are configured as consented); the token then acts as the technical account that
    // consent created in that org.
    let (org_id, user_id) = match form.get("org_id").map(String::as_str) {
        None => (client.org_id.clone(), client.technical_account.clone()),
        Some(org) => match state.consents.get(&client.client_id, org) {
            Some(account) => (org.to_owned(), account),
            None => {
                return ims_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_org",
                    "the organization has not granted access to this client",
                );
            }
        },
    };
    let jwt = mint_access_token(state, client, &user_id, &org_id, &requested.join(","), None);
    token_json(json!({
        "access_token": jwt,
        "token_type": "bearer",
        "expires_in": client.token_lifetime_secs,
    }))
}

/// An access token as IMS issues them: a JWT whose claims carry `created_at` and `expires_in` in
/// milliseconds, as strings.
fn mint_access_token(
    state: &State,
    client: &EmulatorClient,
    user_id: &str,
    org_id: &str,
    scope: &str,
    family: Option<&str>,
) -> String {
    let lifetime_ms = client.token_lifetime_secs * 1000;
    let mut claims = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "access_token",
        "client_id": client.client_id,
        "user_id": user_id,
        "org_id": org_id,
        "as": "ims-na1",
        "created_at": now_ms().to_string(),
        "expires_in": lifetime_ms.to_string(),
        "scope": scope,
    });
    if let Some(f) = family {
        claims["family"] = f.into();
    }
    state
        .signing_key()
        .sign(json!({"typ": "JWT", "itt": "at"}), &claims)
}

fn token_json(body: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_debug_id(resp)
}

/// The answer to a user grant: an access token for the user, and the refresh token and id_token
/// when the grant earned them.
pub(crate) fn user_token_response(
    state: &State,
    client: &EmulatorClient,
    user_id: &str,
    scopes: &[String],
    family: &str,
    refresh_token: Option<String>,
    id_token: Option<String>,
) -> Response {
    let jwt = mint_access_token(
        state,
        client,
        user_id,
        &client.org_id,
        &scopes.join(","),
        Some(family),
    );
    let mut body = json!({
        "access_token": jwt,
        "token_type": "bearer",
        "expires_in": client.token_lifetime_secs,
    });
    if let Some(r) = refresh_token {
        body["refresh_token"] = r.into();
    }
    if let Some(t) = id_token {
        body["id_token"] = t.into();
    }
    token_json(body)
}

/// `POST /ims/revoke` (RFC 7009): 200 with an empty body, also for tokens it does not know.
async fn revoke(AxState(state): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = apply_fault(&state, Endpoint::Revoke).await {
        return resp;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed form body",
        );
    };
    let client = match authenticate(&state, &headers, &form) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing token parameter",
        );
    };
    if !state.user_grants.revoke_refresh(&client.client_id, token)
        && let Ok(claims) = verify_access_token(&state, token)
        && claims.get("client_id").and_then(|v| v.as_str()) == Some(client.client_id.as_str())
        && let Some(id) = claims.get("id").and_then(|v| v.as_str())
    {
        state.user_grants.revoke_access(id);
    }
    with_debug_id(StatusCode::OK.into_response())
}

async fn keys(AxState(state): St) -> Response {
    if let Some(resp) = apply_fault(&state, Endpoint::Keys).await {
        return resp;
    }
    if let Some(body) = state.published_jwks.read().clone() {
        let mut resp = body.into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        return with_debug_id(resp);
    }
    let keys: Vec<_> = state.keys.read().iter().map(|k| k.jwk()).collect();
    with_debug_id(Json(json!({ "keys": keys })).into_response())
}

async fn discovery(AxState(state): St) -> Response {
    if let Some(resp) = apply_fault(&state, Endpoint::Discovery).await {
        return resp;
    }
    let b = &state.base_url;
    with_debug_id(
        Json(json!({
            "issuer": state.issuer,
            "authorization_endpoint": format!("{b}/ims/authorize/v2"),
            "token_endpoint": format!("{b}/ims/token/v3"),
            "userinfo_endpoint": format!("{b}/ims/userinfo/v2"),
            "revocation_endpoint": format!("{b}/ims/revoke"),
            "jwks_uri": format!("{b}/ims/keys"),
            "response_types_supported": ["code", "token", "id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }))
        .into_response(),
    )
}

/// Verifies an access token this emulator issued: signature under a published key, and expiry.
pub(crate) fn verify_access_token(
    state: &State,
    token: &str,
) -> Result<serde_json::Value, &'static str> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed");
    };
    let header: serde_json::Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed")?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("RS256") {
        return Err("bad_signature");
    }
    let kid = header
        .get("kid")
        .and_then(|v| v.as_str())
        .ok_or("bad_signature")?;
    let key = state
        .keys
        .read()
        .iter()
        .find(|k| k.kid == kid)
        .cloned()
        .ok_or("bad_signature")?;
    let sig = B64.decode(s).map_err(|_| "malformed")?;
    let public = key.public_key_der();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public.as_slice())
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "bad_signature")?;
    let claims: serde_json::Value = B64
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed")?;
    let num = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(created), Some(lifetime)) = (num("created_at"), num("expires_in")) else {
        return Err("malformed");
    };
    if now_ms() >= created + lifetime {
        return Err("expired");
    }
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str());
    if state.user_grants.is_revoked(text("id"), text("family")) {
        return Err("revoked");
    }
    Ok(claims)
}

async fn validate(AxState(state): St, body: Bytes) -> Response {
    if let Some(resp) = apply_fault(&state, Endpoint::Validate).await {
        return resp;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed form body",
        );
    };
    let (Some(client_id), Some(token)) = (form.get("client_id"), form.get("token")) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and token are required",
        );
    };
    let body = match verify_access_token(&state, token) {
        Ok(claims)
            if claims.get("client_id").and_then(|v| v.as_str()) == Some(client_id.as_str()) =>
        {
            json!({"valid": true, "token": claims, "user": {}})
        }
        Ok(_) => json!({"valid": false, "reason": "client_id_mismatch"}),
        Err(reason) => json!({"valid": false, "reason": reason}),
    };
    with_debug_id(Json(body).into_response())
}

/// Browsers call this with a bearer token and no cookies, so any origin may; that is how a demo
/// page proves the client token it got from imsgate is accepted.
fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("authorization"),
    );
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET"),
    );
    resp
}

async fn userinfo_preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

/// `GET /ims/userinfo/v2` with `Authorization: Bearer <access token>`: who the token is for.
async fn userinfo(AxState(state): St, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let resp = match token.map(|t| verify_access_token(&state, t)) {
        Some(Ok(claims)) => with_debug_id(
            Json(json!({
                "sub": claims.get("user_id").cloned().unwrap_or_default(),
                "client_id": claims.get("client_id").cloned().unwrap_or_default(),
                "as": "ims-na1",
            }))
            .into_response(),
        ),
        Some(Err(reason)) => ims_error(StatusCode::UNAUTHORIZED, "invalid_token", reason),
        None => ims_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a bearer access token is required",
        ),
    };
    cors(resp)
}

fn parse_endpoint(name: &str) -> Option<Endpoint> {
    Endpoint::ALL.into_iter().find(|e| e.as_str() == name)
}

fn unknown_endpoint() -> Response {
    ims_error(
        StatusCode::NOT_FOUND,
        "unknown_endpoint",
        "endpoint must be one of token, keys, discovery, validate, consent, jwt_exchange",
    )
}

async fn set_fault(AxState(state): St, Path(name): Path<String>, body: Bytes) -> Response {
    let Some(endpoint) = parse_endpoint(&name) else {
        return unknown_endpoint();
    };
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            state.faults.set(endpoint, fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => ims_error(StatusCode::BAD_REQUEST, "invalid_fault", &e.to_string()),
    }
}

async fn clear_fault(AxState(state): St, Path(name): Path<String>) -> Response {
    match parse_endpoint(&name) {
        Some(e) => {
            state.faults.clear(Some(e));
            StatusCode::NO_CONTENT.into_response()
        }
        None => unknown_endpoint(),
    }
}

async fn clear_all_faults(AxState(state): St) -> StatusCode {
    state.faults.clear(None);
    StatusCode::NO_CONTENT
}

async fn counters(AxState(state): St) -> Json<HashMap<&'static str, u64>> {
    Json(state.faults.counts())
}

async fn reset_counters(AxState(state): St) -> StatusCode {
    state.faults.reset_counts();
    StatusCode::NO_CONTENT
}

async fn rotate_keys(AxState(state): St) -> Json<serde_json::Value> {
    Json(json!({"kid": state.rotate_keys()}))
}

async fn list_consents(AxState(state): St) -> Response {
    Json(state.consents.list()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    client_id: String,
    org_id: String,
}

async fn grant_consent(AxState(state): St, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<GrantRequest>(&body) {
        Ok(r) => r,
        Err(e) => return ims_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    if req.org_id.is_empty() {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "org_id must not be empty",
        );
    }
    match state
        .consents
        .grant(&state.config, &req.client_id, &req.org_id)
    {
        Some(account) => (
            StatusCode::CREATED,
            Json(crate::consent::Consent {
                client_id: req.client_id,
                org_id: req.org_id,
                technical_account: account,
            }),
        )
            .into_response(),
        None => ims_error(
            StatusCode::NOT_FOUND,
            "unknown_client",
            "no emulated client has this client_id",
        ),
    }
}

async fn revoke_consent(
    AxState(state): St,
    Path((client_id, org_id)): Path<(String, String)>,
) -> Response {
    if state.consents.revoke(&client_id, &org_id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ims_error(
            StatusCode::NOT_FOUND,
            "unknown_consent",
            "this org has not consented to this client",
        )
    }
}

async fn id_token_options(AxState(state): St) -> Response {
    let o = state.consents.options();
    Json(json!({
        "org_claim": o.org_claim,
        "issuer_form": o.issuer_form,
        "issuer": state.id_token_issuer(),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IdTokenOptionsUpdate {
    #[serde(default)]
    org_claim: Option<OrgClaim>,
    #[serde(default)]
    issuer_form: Option<IssuerForm>,
}

async fn set_id_token_options(AxState(state): St, body: Bytes) -> Response {
    let update = match serde_json::from_slice::<IdTokenOptionsUpdate>(&body) {
        Ok(u) => u,
        Err(e) => {
            return ims_error(
                StatusCode::BAD_REQUEST,
                "invalid_id_token_options",
                &e.to_string(),
            );
        }
    };
    state.consents.update_options(|o: &mut IdTokenOptions| {
        if let Some(c) = update.org_claim {
            o.org_claim = c;
        }
        if let Some(f) = update.issuer_form {
            o.issuer_form = f;
        }
    });
    StatusCode::NO_CONTENT.into_response()
}
