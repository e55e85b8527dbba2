//! Service Account (JWT) credentials: the signed assertion IMS expects and its exchange request.
//!
//! Adobe retired these credentials (end of life announced for 30 June 2025; they stopped working
//! by 1 March 2026 and were converted to OAuth Server-to-Server). imsgate still speaks the
//! protocol because integrations and the seeds describe it, and warns users to migrate.
//!
//! The exchange answers `expires_in` in **milliseconds**, unlike `/ims/token/v3`; parse its
//! response with [`crate::ExpiresInUnit::Milliseconds`].

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value, json};
use url::Url;

use crate::http::HttpRequest;
use crate::secret::SecretString;

/// How long an assertion is valid: IMS wants "a few minutes"; Adobe's own client uses 5.
pub const ASSERTION_LIFETIME_SECS: u64 = 300;

/// What the assertion asserts.
#[derive(Debug, Clone, Copy)]
pub struct AssertionClaims<'a> {
    /// `<org>@AdobeOrg`.
    pub org_id: &'a str,
    /// `<id>@techacct.adobe.com`.
    pub technical_account_id: &'a str,
    pub client_id: &'a str,
    /// The IMS base the audience and metascope claims are built from, e.g.
    /// `https://ims-na1.adobelogin.com` (no trailing slash).
    pub ims_base: &'a str,
    /// Metascopes such as `ent_dataservices_sdk`.
    pub metascopes: &'a [String],
}

impl AssertionClaims<'_> {
    /// The claims exactly as IMS documents them, expiring `ASSERTION_LIFETIME_SECS` after `now`.
    pub fn to_json(&self, now_unix: u64) -> Value {
        let base = self.ims_base.trim_end_matches('/');
        let mut claims = Map::new();
        claims.insert("exp".into(), json!(now_unix + ASSERTION_LIFETIME_SECS));
        claims.insert("iss".into(), json!(self.org_id));
        claims.insert("sub".into(), json!(self.technical_account_id));
        claims.insert("aud".into(), json!(format!("{base}/c/{}", self.client_id)));
        for m in self.metascopes {
            claims.insert(format!("{base}/s/{m}"), Value::Bool(true));
        }
        Value::Object(claims)
    }
}

/// Why a private key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the private key is not PEM (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)"
    )]
    NotPem,
    #[error("the private key is not an RSA key of 2048 bits or more")]
    NotRsa,
}

/// An RS256 signing key loaded from PEM (PKCS#8 or PKCS#1).
pub struct AssertionKey {
    key: RsaKeyPair,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AssertionKey(<{} bits, redacted>)",
            self.key.public_modulus_len() * 8
        )
    }
}

impl AssertionKey {
    pub fn from_pem(pem: &SecretString) -> Result<Self, KeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem.expose().as_bytes()).map_err(|_| KeyError::NotPem)?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(KeyError::NotRsa),
        }
        .map_err(|_| KeyError::NotRsa)?;
        if key.public_modulus_len() < 256 {
            return Err(KeyError::NotRsa);
        }
        Ok(Self { key })
    }

    /// The public key in PKCS#1 DER, to match against a certificate.
    pub fn public_key_der(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        self.key.public_key().as_ref().to_vec()
    }

    /// A compact RS256 JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> SecretString {
        let header = B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let input = format!("{header}.{}", B64.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        // Signing with a valid key into a correctly sized buffer only fails if the RNG is broken.
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing with a valid key");
        SecretString::new(format!("{input}.{}", B64.encode(sig)))
    }
}

/// The exchange: `POST /ims/exchange/jwt` with `client_id`, `client_secret`, `jwt_token`.
#[derive(Debug, Clone)]
pub struct JwtExchangeRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub assertion: &'a SecretString,
}

impl JwtExchangeRequest<'_> {
    pub fn to_http(&self, exchange_url: &Url) -> HttpRequest {
        let fields = [
            ("client_id", self.client_id),
            ("client_secret", self.client_secret.expose()),
            ("jwt_token", self.assertion.expose()),
        ];
        // Encoding plain string pairs cannot fail.
        let body = serde_urlencoded::to_string(fields).unwrap_or_default();
        HttpRequest {
            method: "POST",
            url: exchange_url.clone(),
            headers: vec![
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_owned(),
                ),
                ("accept", "application/json".to_owned()),
            ],
            body: body.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests;
