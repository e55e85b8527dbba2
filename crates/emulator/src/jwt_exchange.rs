//! `POST /ims/exchange/jwt` (also `/ims/exchange/jwt/` and `/ims/exchange/v1/jwt`): the retired
//! Service Account flow. The assertion is verified against the client's uploaded certificates,
//! with IMS's error bodies, and `expires_in` is answered in milliseconds as IMS does.

use std::collections::HashMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::faults::Endpoint;
use crate::routes::{St, apply_fault, ims_error, now_ms, with_debug_id};

pub(crate) async fn exchange(AxState(state): St, body: Bytes) -> Response {
    if let Some(resp) = apply_fault(&state, Endpoint::JwtExchange).await {
        return resp;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed form body",
        );
    };
    let (Some(client_id), Some(secret), Some(jwt)) = (
        form.get("client_id"),
        form.get("client_secret"),
        form.get("jwt_token"),
    ) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "client_id, client_secret and jwt_token are required",
        );
    };
    let Some(client) = state.client(client_id) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client_id parameter",
        );
    };
    let secret_ok = client
        .client_secrets
        .iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(secret.as_bytes())));
    if !secret_ok {
        return ims_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client_secret parameter",
        );
    }
    let claims = match verify(&state.issuer, client, jwt) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let lifetime_ms = client.token_lifetime_secs * 1000;
    let access = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "access_token",
        "client_id": client.client_id,
        "user_id": claims["sub"],
        "org_id": claims["iss"],
        "as": "ims-na1",
        "created_at": now_ms().to_string(),
        "expires_in": lifetime_ms.to_string(),
    });
    let token = state
        .signing_key()
        .sign(json!({"typ": "JWT", "itt": "at"}), &access);
    let mut resp = Json(json!({
        "token_type": "bearer",
        "access_token": token,
        "expires_in": lifetime_ms,
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_debug_id(resp)
}

fn bad_token(description: &str) -> Box<Response> {
    Box::new(ims_error(
        StatusCode::BAD_REQUEST,
        "invalid_token",
        description,
    ))
}

/// Checks the assertion as IMS does: signature by an uploaded certificate, expiry, audience,
/// subject and org, and metascopes within the binding.
fn verify(
    issuer: &str,
    client: &crate::config::EmulatorClient,
    jwt: &str,
) -> Result<Value, Box<Response>> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_token(
            "Could not match JWT signature to any of the bindings",
        ));
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_token("malformed JWT header"))?;
    if header["alg"] != "RS256" {
        return Err(bad_token("the JWT must be signed with RS256"));
    }
    let sig = B64
        .decode(sig)
        .map_err(|_| bad_token("malformed JWT signature"))?;
    let input = &jwt[..h.len() + 1 + c.len()];
    let signed_by_binding = client.certificates.iter().any(|pem| {
        imsgate_ims::certificate::parse_pem(pem.as_bytes()).is_ok_and(|cert| {
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &cert.public_key)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        })
    });
    if !signed_by_binding {
        return Err(Box::new(ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            "Could not match JWT signature to any of the bindings",
        )));
    }
    let claims: Value = B64
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_token("malformed JWT claims"))?;
    let now = now_ms() / 1000;
    match claims["exp"].as_u64() {
        Some(exp) if exp > now => {}
        Some(_) => return Err(bad_token("JWT token is expired")),
        None => return Err(bad_token("JWT exp is missing")),
    }
    let base = issuer.trim_end_matches('/');
    if claims["aud"] != json!(format!("{base}/c/{}", client.client_id)) {
        return Err(bad_token("JWT audience does not match the client"));
    }
    if claims["iss"] != json!(client.org_id) || claims["sub"] != json!(client.technical_account) {
        return Err(bad_token("JWT iss or sub does not match the binding"));
    }
    let prefix = format!("{base}/s/");
    let Some(map) = claims.as_object() else {
        return Err(bad_token("malformed JWT claims"));
    };
    let requested: Vec<&str> = map
        .iter()
        .filter(|(_, v)| **v == Value::Bool(true))
        .filter_map(|(k, _)| k.strip_prefix(&prefix))
        .collect();
    if requested.is_empty()
        || requested
            .iter()
            .any(|m| !client.metascopes.iter().any(|b| b == m))
    {
        return Err(Box::new(ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The metascopes in the JWT are not a subset of the metascopes in the binding.",
        )));
    }
    Ok(claims)
}
