//! Verifies the caller token the partner's backend gives its signed-in users: HS256 with a shared
//! secret, or RS256/ES256 through a JWKS URL, read only from the `Authorization` header.
//!
//! Each token is checked against exactly the algorithm its header names, once that name is on the
//! exact allow-list, with a key the one key-selection rule permits for it (`jwks.rs`); the header
//! and claims are parsed strictly (duplicate JSON keys refused), a header naming extensions
//! (`crit`) is refused, the signature is checked before any claim is read, and claim shapes come
//! before values: `iss` and `sub` strings, `aud` by the audience rule of
//! `imsgate_ims::claims::check_audience`, NumericDates.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use imsgate_ims::claims::{check_audience, string_claim, time_claim};
use imsgate_ims::strict_json;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::clock::SharedClock;
use crate::config::{CallerAlgorithm, CallerAuthConfig, CallerKeyConfig};
use crate::jwks::{JwksCache, KeyError};
use crate::metrics::Metrics;
use crate::verified::{Verified, VerifiedCache};

/// Caller tokens larger than this are refused before any parsing.
pub const MAX_CALLER_TOKEN_BYTES: usize = 4096;
/// Longest accepted `sub`.
const MAX_SUB_BYTES: usize = 256;

/// Why a caller token was refused. The reason is a metric label; the description tells the caller
/// (the partner's developers) which check failed, in plain words. Neither ever carries the token,
/// a part of it, or any value taken from it: only claim names, which come from this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    NotBearer,
    TooLarge,
    Malformed(Malformation),
    Algorithm,
    /// The header names JWS extensions (`crit`, or `b64`/`zip`, which change what is signed).
    Critical,
    /// A key set is configured but the header names no `kid`.
    MissingKid,
    UnknownKey,
    /// The key with the token's `kid` may not verify its algorithm (`use`, `key_ops`, `alg`, `kty`).
    KeyUse,
    Signature,
    MissingClaim(&'static str),
    /// A claim of the wrong JSON type or form (an `iss` array, an `exp` string, an empty `aud`).
    BadClaim(&'static str),
    Issuer,
    Audience,
    /// `azp` names another party, or `aud` names others and `azp` is absent.
    AuthorizedParty,
    Expired,
    /// `nbf` or `iat` (the claim named) is in the future.
    NotYetValid(&'static str),
    TooLongLived,
    /// `sub` is empty or too long.
    Subject,
}

/// Which part of the request or token could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// More than one `Authorization` header, or one that is not visible ASCII.
    AuthorizationHeader,
    /// Not three dot-separated parts.
    Parts,
    Header,
    Claims,
    /// The signature part is not base64url (or not of the algorithm's form).
    SignatureEncoding,
    /// The `kid` header is not a string.
    Kid,
}

impl AuthFailure {
    /// The metric label: a fixed, small set.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NotBearer => "not_bearer",
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::Algorithm => "algorithm",
            Self::Critical => "crit",
            Self::MissingKid => "missing_kid",
            Self::UnknownKey => "unknown_key",
            Self::KeyUse => "key_use",
            Self::Signature => "signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::BadClaim(_) => "claim_type",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::AuthorizedParty => "azp",
            Self::Expired => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::TooLongLived => "too_long_lived",
            Self::Subject => "sub",
        }
    }

    /// The 401's `error_description`: which check failed, in plain words. Built only from fixed
    /// text and claim names chosen by this code, so it cannot echo anything an attacker sent.
    pub fn description(self) -> std::borrow::Cow<'static, str> {
        use Malformation as M;
        let fixed = match self {
            Self::Missing => {
                "no caller token: send it in the Authorization header as `Bearer <token>`"
            }
            Self::NotBearer => {
                "the Authorization header is not `Bearer <token>` (one token, no other scheme)"
            }
            Self::TooLarge => "the caller token is larger than 4096 bytes",
            Self::Malformed(M::AuthorizationHeader) => {
                "the Authorization header is repeated or is not plain ASCII text"
            }
            Self::Malformed(M::Parts) => {
                "the caller token is malformed: a JWT is three base64url parts separated by dots"
            }
            Self::Malformed(M::Header) => {
                "the caller token's header is malformed: not a base64url JSON object without repeated keys"
            }
            Self::Malformed(M::Claims) => {
                "the caller token's claims are malformed: not a base64url JSON object without repeated keys"
            }
            Self::Malformed(M::SignatureEncoding) => {
                "the caller token's signature is malformed: not base64url of the algorithm's form"
            }
            Self::Malformed(M::Kid) => "the caller token's `kid` header is not a string",
            Self::Algorithm => {
                "the caller token's algorithm (`alg` header) is missing or not allowed here"
            }
            Self::Critical => {
                "the caller token's header names a JWS extension (`crit`, `b64` or `zip`); none is supported"
            }
            Self::MissingKid => "the caller token's header has no `kid` naming its signing key",
            Self::UnknownKey => "the caller token's signing key (`kid`) is unknown",
            Self::KeyUse => {
                "the caller token's signing key (`kid`) may not verify its algorithm (the key's `use`, `key_ops`, `alg` or type)"
            }
            Self::Signature => "the caller token's signature is invalid",
            Self::Issuer => "the caller token's issuer (`iss`) is wrong",
            Self::Audience => "the caller token's audience (`aud`) is wrong",
            Self::AuthorizedParty => {
                "the caller token's authorized party (`azp`) is wrong or missing (required when `aud` names others too)"
            }
            Self::Expired => "the caller token has expired (`exp`)",
            Self::TooLongLived => {
                "the caller token's lifetime is too long: `exp` is further ahead than the configured maximum"
            }
            Self::Subject => "the caller token's subject (`sub`) is empty or longer than 256 bytes",
            Self::MissingClaim(claim) => {
                return format!("the caller token has no `{claim}` claim").into();
            }
            Self::BadClaim(claim) => {
                return format!("the caller token's `{claim}` claim has the wrong type or form")
                    .into();
            }
            Self::NotYetValid(claim) => {
                return format!("the caller token is not valid yet (`{claim}` is in the future)")
                    .into();
            }
        };
        fixed.into()
    }

    /// The claim or header field the failed check read, for the DEBUG log.
    fn field(self) -> Option<&'static str> {
        match self {
            Self::Algorithm => Some("alg"),
            Self::Critical => Some("crit"),
            Self::MissingKid
            | Self::UnknownKey
            | Self::KeyUse
            | Self::Malformed(Malformation::Kid) => Some("kid"),
            Self::MissingClaim(c) | Self::BadClaim(c) | Self::NotYetValid(c) => Some(c),
            Self::Issuer => Some("iss"),
            Self::Audience => Some("aud"),
            Self::AuthorizedParty => Some("azp"),
            Self::Expired | Self::TooLongLived => Some("exp"),
            Self::Subject => Some("sub"),
            _ => None,
        }
    }
}

impl From<imsgate_ims::claims::ClaimError> for AuthFailure {
    fn from(e: imsgate_ims::claims::ClaimError) -> Self {
        use imsgate_ims::claims::ClaimError;
        match e {
            ClaimError::Missing(c) => Self::MissingClaim(c),
            ClaimError::Bad(c) => Self::BadClaim(c),
            ClaimError::WrongAudience => Self::Audience,
            ClaimError::WrongAuthorizedParty => Self::AuthorizedParty,
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
    /// Boxed: the cache is large and built once.
    Jwks(Box<JwksCache>),
}

pub struct CallerVerifier {
    keys: Keys,
    /// The exact allow-list, as `(header name, algorithm)`.
    algorithms: Vec<(&'static str, Algorithm)>,
    issuer: String,
    audience: String,
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

impl CallerVerifier {
    /// Builds the verifier, loading the shared secret if one is configured.
    pub fn new(
        config: &CallerAuthConfig,
        token_id_namespace: uuid::Uuid,
        clock: SharedClock,
        http_timeout: Duration,
        metrics: Arc<Metrics>,
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
                    vec![("HS256", Algorithm::HS256)],
                )
            }
            CallerKeyConfig::Jwks { url, algorithms } => {
                let algorithms = algorithms
                    .iter()
                    .map(|a| match a {
                        CallerAlgorithm::Rs256 => ("RS256", Algorithm::RS256),
                        CallerAlgorithm::Es256 => ("ES256", Algorithm::ES256),
                    })
                    .collect();
                let cache = JwksCache::new(
                    url.clone(),
                    http_timeout,
                    metrics,
                    crate::jwks::JwksSource::Caller,
                )?;
                (Keys::Jwks(Box::new(cache)), algorithms)
            }
        };
        Ok(Self {
            keys,
            algorithms,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
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
        let bad_header = AuthFailure::Malformed(Malformation::AuthorizationHeader);
        if values.next().is_some() {
            return Err(bad_header);
        }
        let value = value.to_str().map_err(|_| bad_header)?;
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
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Malformed(Malformation::Parts));
        };
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let header = decode_object(header, Malformation::Header)?;
        // Exact, case-sensitive names from the allow-list; the token is then checked against that
        // one algorithm only, so an allow-list mixing key families works and confusion cannot.
        let (alg_name, alg) = match header.get("alg") {
            Some(Value::String(a)) => *self
                .algorithms
                .iter()
                .find(|(name, _)| *name == a.as_str())
                .ok_or(AuthFailure::Algorithm)?,
            _ => return Err(AuthFailure::Algorithm),
        };
        // No JWS extension is understood, so a token naming any must be refused (RFC 7515
        // §4.1.11); `b64` and `zip` change what the signature covers.
        if ["crit", "b64", "zip"]
            .iter()
            .any(|k| header.contains_key(*k))
        {
            return Err(AuthFailure::Critical);
        }
        let jwks_key;
        let key = match &self.keys {
            Keys::Hs256(key) => key,
            Keys::Jwks(cache) => {
                let kid = match header.get("kid") {
                    Some(Value::String(kid)) => kid,
                    Some(_) => return Err(AuthFailure::Malformed(Malformation::Kid)),
                    None => return Err(AuthFailure::MissingKid),
                };
                jwks_key = cache.key_for(kid, alg_name).await.map_err(|e| match e {
                    KeyError::Unknown => AuthFailure::UnknownKey,
                    KeyError::NotUsable(_) => AuthFailure::KeyUse,
                })?;
                &*jwks_key.key
            }
        };
        match jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), key, alg) {
            Ok(true) => {}
            Ok(false) => return Err(AuthFailure::Signature),
            Err(_) => return Err(AuthFailure::Malformed(Malformation::SignatureEncoding)),
        }
        let claims = decode_object(payload, Malformation::Claims)?;
        let checked = self.check_claims(&claims, now)?;
        let caller = Caller {
            token_id: uuid::Uuid::new_v5(&self.token_id_namespace, checked.sub.as_bytes()),
        };
        self.verified.insert(
            token,
            Verified {
                caller,
                exp: checked.exp,
            },
            now,
        );
        Ok(caller)
    }

    /// Records a refusal: the metric, and a DEBUG line naming the field the failed check read and,
    /// where it is configuration, the value expected. Never the token or anything taken from it.
    pub fn log_refusal(&self, failure: AuthFailure, metrics: &Metrics) {
        metrics.caller_auth_failure(failure.as_str());
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let expected = match failure {
            AuthFailure::Issuer => self.issuer.clone(),
            AuthFailure::Audience | AuthFailure::AuthorizedParty => self.audience.clone(),
            AuthFailure::Algorithm | AuthFailure::KeyUse => self
                .algorithms
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", "),
            AuthFailure::Expired => format!("exp + {} s leeway after now", self.leeway.as_secs()),
            AuthFailure::NotYetValid(_) => {
                format!("not after now + {} s leeway", self.leeway.as_secs())
            }
            AuthFailure::TooLongLived => format!(
                "exp at most {} s (+{} s leeway) from now",
                self.max_lifetime.as_secs(),
                self.leeway.as_secs()
            ),
            AuthFailure::Subject => format!("1 to {MAX_SUB_BYTES} bytes"),
            _ => String::new(),
        };
        tracing::debug!(
            reason = failure.as_str(),
            field = failure.field().unwrap_or(""),
            expected = %expected,
            "caller token refused: {}",
            failure.description()
        );
    }

    /// Shapes first (strings, the audience rule, NumericDates), then values.
    fn check_claims<'c>(
        &self,
        claims: &'c Map<String, Value>,
        now: u64,
    ) -> Result<CheckedClaims<'c>, AuthFailure> {
        let iss = string_claim(claims, "iss")?;
        let sub = string_claim(claims, "sub")?;
        let exp = time_claim(claims, "exp")?.ok_or(AuthFailure::MissingClaim("exp"))?;
        let iat = time_claim(claims, "iat")?;
        let nbf = time_claim(claims, "nbf")?;
        check_audience(claims, &self.audience)?;
        if iss != self.issuer {
            return Err(AuthFailure::Issuer);
        }
        let leeway = self.leeway.as_secs();
        if exp.saturating_add(leeway) <= now {
            return Err(AuthFailure::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(AuthFailure::NotYetValid("nbf"));
        }
        if iat.is_some_and(|iat| iat > now + leeway) {
            return Err(AuthFailure::NotYetValid("iat"));
        }
        // A caller token valid for hours is a standing credential; refuse ones that outlive the
        // configured maximum from now.
        if exp > now + self.max_lifetime.as_secs() + leeway {
            return Err(AuthFailure::TooLongLived);
        }
        if sub.is_empty() || sub.len() > MAX_SUB_BYTES {
            return Err(AuthFailure::Subject);
        }
        Ok(CheckedClaims { sub, exp })
    }
}

struct CheckedClaims<'c> {
    sub: &'c str,
    exp: u64,
}

/// A base64url segment holding one JSON object, duplicate keys refused at any depth.
fn decode_object(segment: &str, part: Malformation) -> Result<Map<String, Value>, AuthFailure> {
    let bytes = B64
        .decode(segment)
        .map_err(|_| AuthFailure::Malformed(part))?;
    strict_json::parse_object(&bytes).map_err(|_| AuthFailure::Malformed(part))
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
