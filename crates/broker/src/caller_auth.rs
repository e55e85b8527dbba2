//! Verifies the caller token the partner's backend gives its signed-in users: HS256 with a shared
//! secret, or RS256/ES256 through a JWKS URL; exact algorithm allow-list, issuer and audience
//! checked, `sub` and `exp` required, read only from the `Authorization` header.

use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::clock::SharedClock;
use crate::config::{CallerAlgorithm, CallerAuthConfig, CallerKeyConfig};
use crate::jwks::JwksCache;
use crate::verified::{Verified, VerifiedCache};

/// Caller tokens larger than this are refused before any parsing.
pub const MAX_CALLER_TOKEN_BYTES: usize = 4096;
/// Longest accepted `sub`.
const MAX_SUB_BYTES: usize = 256;

/// Why a caller token was refused. The reason is a metric label and a log field; the caller sees a
/// uniform `invalid_token` so refusals do not teach an attacker which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    NotBearer,
    TooLarge,
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Claims,
    Expired,
    TooLongLived,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NotBearer => "not_bearer",
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Claims => "claims",
            Self::Expired => "expired",
            Self::TooLongLived => "too_long_lived",
        }
    }
}

/// An authenticated caller. The `sub` itself is not kept: nothing downstream needs the partner's
/// user id, so nothing can leak it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// `tokenId`: a UUIDv5 of `sub` under the deployment's private namespace, stable per user,
    /// lowercase and hyphenated when rendered; the partner's user id cannot be read back from it.
    /// Computed once per caller token, not per request.
    pub token_id: uuid::Uuid,
}

enum Keys {
    Hs256(DecodingKey),
    Jwks {
        cache: JwksCache,
        algorithms: Vec<Algorithm>,
    },
}

pub struct CallerVerifier {
    keys: Keys,
    validation: Validation,
    leeway: Duration,
    max_lifetime: Duration,
    clock: SharedClock,
    verified: VerifiedCache,
    token_id_namespace: uuid::Uuid,
}

impl std::fmt::Debug for CallerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerVerifier").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    nbf: Option<u64>,
}

impl CallerVerifier {
    /// Builds the verifier, loading the shared secret if one is configured.
    pub fn new(
        config: &CallerAuthConfig,
        token_id_namespace: uuid::Uuid,
        clock: SharedClock,
        http_timeout: Duration,
    ) -> Result<Self, String> {
        let (keys, algorithms) = match &config.key {
            CallerKeyConfig::Hs256 { secret } => {
                let secret = secret
                    .load()
                    .map_err(|e| format!("client_token.caller_auth.hs256_secret: {e}"))?;
                if secret.expose().len() < 32 {
                    return Err("client_token.caller_auth.hs256_secret: the shared secret must be at least 32 bytes (e.g. `openssl rand -base64 48`)".into());
                }
                (
                    Keys::Hs256(DecodingKey::from_secret(secret.expose().as_bytes())),
                    vec![Algorithm::HS256],
                )
            }
            CallerKeyConfig::Jwks { url, algorithms } => {
                let algorithms: Vec<Algorithm> = algorithms
                    .iter()
                    .map(|a| match a {
                        CallerAlgorithm::Rs256 => Algorithm::RS256,
                        CallerAlgorithm::Es256 => Algorithm::ES256,
                    })
                    .collect();
                let cache = JwksCache::new(url.clone(), http_timeout)?;
                (
                    Keys::Jwks {
                        cache,
                        algorithms: algorithms.clone(),
                    },
                    algorithms,
                )
            }
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        // Time checks use the injected clock below, so the library's own are off.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Ok(Self {
            keys,
            validation,
            leeway: config.leeway,
            max_lifetime: config.max_lifetime,
            clock,
            verified: VerifiedCache::default(),
            token_id_namespace,
        })
    }

    /// Authenticates the request from its `Authorization` header only.
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<Caller, AuthFailure> {
        let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let value = values.next().ok_or(AuthFailure::Missing)?;
        if values.next().is_some() {
            return Err(AuthFailure::Malformed);
        }
        let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
        let token = bearer(value).ok_or(AuthFailure::NotBearer)?;
        self.verify(token).await
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        if token.len() > MAX_CALLER_TOKEN_BYTES {
            return Err(AuthFailure::TooLarge);
        }
        let now = crate::clock::unix_ms(self.clock.now()) / 1000;
        let leeway = self.leeway.as_secs();
        if let Some(hit) = self.verified.get(token, now, leeway) {
            return Ok(hit.caller);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthFailure::Algorithm);
        }
        let data = match &self.keys {
            Keys::Hs256(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            Keys::Jwks { cache, algorithms } => {
                debug_assert!(algorithms.contains(&header.alg));
                let kid = header.kid.as_deref().ok_or(AuthFailure::UnknownKey)?;
                let key = cache.key(kid).await.ok_or(AuthFailure::UnknownKey)?;
                if key.family != header.alg.family() {
                    return Err(AuthFailure::Algorithm);
                }
                jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation)
            }
        };
        let claims = data.map_err(classify)?.claims;
        if claims.exp.saturating_add(leeway) <= now {
            return Err(AuthFailure::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + leeway)
            || claims.iat.is_some_and(|iat| iat > now + leeway)
        {
            return Err(AuthFailure::Claims);
        }
        // A caller token valid for hours is a standing credential; refuse ones that outlive the
        // configured maximum from now.
        if claims.exp > now + self.max_lifetime.as_secs() + leeway {
            return Err(AuthFailure::TooLongLived);
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_BYTES {
            return Err(AuthFailure::Claims);
        }
        let caller = Caller {
            token_id: uuid::Uuid::new_v5(&self.token_id_namespace, claims.sub.as_bytes()),
        };
        self.verified.insert(
            token,
            Verified {
                caller,
                exp: claims.exp,
            },
            now,
        );
        Ok(caller)
    }
}

fn classify(e: jsonwebtoken::errors::Error) -> AuthFailure {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthFailure::Signature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthFailure::Algorithm,
        K::ExpiredSignature => AuthFailure::Expired,
        K::InvalidIssuer
        | K::InvalidAudience
        | K::InvalidSubject
        | K::MissingRequiredClaim(_)
        | K::ImmatureSignature => AuthFailure::Claims,
        K::Json(_) => AuthFailure::Claims,
        _ => AuthFailure::Malformed,
    }
}

/// Extracts the token from `Bearer <token>`, the scheme matched case-insensitively (RFC 7235).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Bearer   abc", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("Bearer a b", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(bearer(input), *want, "{input:?}");
        }
    }
}
