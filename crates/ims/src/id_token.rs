//! Strict verification of the id_token IMS returns after an admin consents.
//!
//! Adobe's samples check the signature and the nonce only. This module follows RFC 8725 and OIDC
//! Core instead: an exact algorithm allow-list (RS256), the signature checked before any claim is
//! read, keys only from the caller's key set (never from the header), no unknown `crit`, no
//! duplicate JSON keys, a size cap, and every claim the consent flow relies on checked, its JSON
//! type first (`crate::claims`). The key is chosen by the caller under the one rule of
//! [`crate::jwk::KeyUse::permits`] for [`ALG`]. A token issued (`iat`) longer ago than the flow's
//! maximum age is refused: IMS mints it on the redirect, so an old one is a replay.
//!
//! Verification is two steps so the caller can fetch keys in between: [`parse`] reads and vets the
//! header and yields the `kid`; [`UnverifiedIdToken::verify`] checks the signature with the key the
//! caller found for that `kid`, then the claims.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::claims::{self, ClaimError};
use crate::strict_json::{self, StrictJsonError};

/// The one algorithm IMS signs id_tokens with, and the only one accepted.
pub const ALG: &str = "RS256";

/// Longest id_token accepted. IMS's are around 1–2 KB; the cap bounds the work an attacker can
/// cause before the signature is checked.
pub const MAX_ID_TOKEN_LEN: usize = 8 * 1024;
/// Longest org id or technical account id accepted from a verified token.
const MAX_ID_LEN: usize = 256;

/// Why an id_token was refused. [`IdTokenError::code`] is stable text for metrics and redirects;
/// nothing here carries content from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the id_token is larger than {MAX_ID_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("the id_token is not a compact JWS")]
    Malformed,
    #[error("the id_token repeats a JSON key")]
    DuplicateKey,
    #[error("the id_token is not signed with RS256")]
    AlgorithmNotAllowed,
    #[error("the id_token header carries a key or key URL")]
    KeyInHeader,
    #[error("the id_token header names extensions (crit) that are not supported")]
    UnsupportedCritical,
    #[error("the id_token header has no kid")]
    MissingKid,
    #[error("no key in the issuer's key set matches the id_token's kid")]
    UnknownKid,
    #[error("the key named by the id_token's kid is not for RS256 signatures")]
    KeyNotUsable,
    #[error("the id_token signature does not verify")]
    BadSignature,
    #[error("the id_token's issuer is not an accepted IMS issuer")]
    WrongIssuer,
    #[error("the id_token is not addressed to this client")]
    WrongAudience,
    #[error("the id_token's authorized party is not this client")]
    WrongAuthorizedParty,
    #[error("the id_token has expired")]
    Expired,
    #[error("the id_token was issued in the future")]
    IssuedInFuture,
    #[error("the id_token was issued too long ago")]
    TooOld,
    #[error("the id_token is not valid yet")]
    NotYetValid,
    #[error("the id_token lacks a required claim")]
    MissingClaim(&'static str),
    #[error("an id_token claim has the wrong type or form")]
    BadClaim(&'static str),
    #[error("the id_token's nonce does not match the session")]
    NonceMismatch,
    #[error("the id_token carries org_id and orgId with different values")]
    OrgConflict,
}

impl IdTokenError {
    /// A short, stable identifier for metrics labels and the `code` of an error redirect.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooLarge => "id_token_too_large",
            Self::Malformed => "id_token_malformed",
            Self::DuplicateKey => "id_token_duplicate_key",
            Self::AlgorithmNotAllowed => "id_token_alg",
            Self::KeyInHeader => "id_token_header_key",
            Self::UnsupportedCritical => "id_token_crit",
            Self::MissingKid => "id_token_kid",
            Self::UnknownKid => "id_token_unknown_kid",
            Self::KeyNotUsable => "id_token_key_use",
            Self::BadSignature => "id_token_signature",
            Self::WrongIssuer => "id_token_issuer",
            Self::WrongAudience => "id_token_audience",
            Self::WrongAuthorizedParty => "id_token_azp",
            Self::Expired => "id_token_expired",
            Self::IssuedInFuture => "id_token_iat",
            Self::TooOld => "id_token_too_old",
            Self::NotYetValid => "id_token_nbf",
            Self::MissingClaim(_) => "id_token_missing_claim",
            Self::BadClaim(_) => "id_token_bad_claim",
            Self::NonceMismatch => "id_token_nonce",
            Self::OrgConflict => "id_token_org_conflict",
        }
    }
}

impl From<ClaimError> for IdTokenError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Missing(name) => Self::MissingClaim(name),
            ClaimError::Bad(name) => Self::BadClaim(name),
            ClaimError::WrongAudience => Self::WrongAudience,
            ClaimError::WrongAuthorizedParty => Self::WrongAuthorizedParty,
        }
    }
}

impl From<StrictJsonError> for IdTokenError {
    fn from(e: StrictJsonError) -> Self {
        match e {
            StrictJsonError::DuplicateKey => Self::DuplicateKey,
            StrictJsonError::NotAnObject | StrictJsonError::Malformed => Self::Malformed,
        }
    }
}

/// An RSA public key from the issuer's JWKS.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.n.len() * 8)
    }
}

impl RsaPublicKey {
    /// From a JWK's base64url `n` and `e`. Keys under 2048 bits are refused, as RFC 7518 requires.
    pub fn from_jwk_components(n: &str, e: &str) -> Option<Self> {
        let n = B64.decode(n).ok()?;
        let e = B64.decode(e).ok()?;
        let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
        if n.len() < 256 || e.is_empty() || e.len() > 8 {
            return None;
        }
        Some(Self { n, e })
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        RsaPublicKeyComponents {
            n: &self.n[..],
            e: &self.e[..],
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .is_ok()
    }
}

/// What the verified token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// Accepted `iss` values, compared exactly (IMS uses two spellings; configure both).
    pub issuers: &'a [String],
    /// This integration's client id: must be in `aud` (and be `azp` if there are others).
    pub client_id: &'a str,
    /// SHA-256 of the nonce sent to IMS: sessions store only this digest, and the id_token's
    /// `nonce` is compared by its digest, in constant time.
    pub nonce_sha256: [u8; 32],
    /// Clock skew tolerated on `exp`, `iat` and `nbf`.
    pub leeway_secs: u64,
    /// Oldest `iat` accepted, in seconds before `now` (plus the leeway).
    pub max_age_secs: u64,
}

/// What a verified id_token establishes: which org consented and its technical account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentIdentity {
    pub org_id: String,
    /// The technical account created in the customer's org (`sub`).
    pub technical_account: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// A token whose header passed the checks but whose signature has not been verified yet.
#[derive(Debug)]
pub struct UnverifiedIdToken<'a> {
    kid: String,
    signing_input: &'a str,
    payload: &'a str,
    signature: Vec<u8>,
}

/// Splits `token` and vets its header. Nothing from the claims is read here.
pub fn parse(token: &str) -> Result<UnverifiedIdToken<'_>, IdTokenError> {
    if token.len() > MAX_ID_TOKEN_LEN {
        return Err(IdTokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header = B64.decode(header).map_err(|_| IdTokenError::Malformed)?;
    let signature = B64.decode(signature).map_err(|_| IdTokenError::Malformed)?;
    let header = strict_json::parse_object(&header)?;
    let kid = vet_header(&header)?;
    Ok(UnverifiedIdToken {
        kid,
        signing_input,
        payload,
        signature,
    })
}

fn vet_header(header: &Map<String, Value>) -> Result<String, IdTokenError> {
    // Exact, case-sensitive match: `none`, `None`, `HS256` (keyed with the public key) and every
    // other algorithm fall out here.
    if header.get("alg").and_then(Value::as_str) != Some(ALG) {
        return Err(IdTokenError::AlgorithmNotAllowed);
    }
    // Embedded keys and key URLs are how attackers substitute their own key; IMS never sends them.
    if ["jwk", "jku", "x5c"]
        .iter()
        .any(|k| header.contains_key(*k))
    {
        return Err(IdTokenError::KeyInHeader);
    }
    // IMS puts its certificate's bare file name in `x5u` (for example `ims_na1-key-1.cer`). It is
    // never fetched; only a URL that could point elsewhere is refused.
    if let Some(x5u) = header.get("x5u") {
        match x5u.as_str() {
            Some(name) if !name.contains(':') && !name.contains('/') => {}
            _ => return Err(IdTokenError::KeyInHeader),
        }
    }
    // No JWS extension is understood, so any `crit` must be refused (RFC 7515 §4.1.11). `zip` only
    // exists for encrypted tokens and `b64` changes what is signed.
    if ["crit", "zip", "b64"]
        .iter()
        .any(|k| header.contains_key(*k))
    {
        return Err(IdTokenError::UnsupportedCritical);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(IdTokenError::BadClaim("typ")),
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_ID_LEN => Ok(kid.clone()),
        Some(_) => Err(IdTokenError::BadClaim("kid")),
        None => Err(IdTokenError::MissingKid),
    }
}

impl UnverifiedIdToken<'_> {
    /// The key id to look up in the issuer's JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The claims, read only after the signature verified with `key`; duplicate keys refused.
    fn signed_claims(&self, key: &RsaPublicKey) -> Result<Map<String, Value>, IdTokenError> {
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(IdTokenError::BadSignature);
        }
        let payload = B64
            .decode(self.payload)
            .map_err(|_| IdTokenError::Malformed)?;
        Ok(strict_json::parse_object(&payload)?)
    }

    /// Verifies the signature with `key`, then the claims against `expect` at `now` (Unix seconds).
    pub fn verify(
        &self,
        key: &RsaPublicKey,
        expect: &Expectations<'_>,
        now: u64,
    ) -> Result<ConsentIdentity, IdTokenError> {
        let claims = self.signed_claims(key)?;
        let (sub, issued_at, expires_at) = check_claims(&claims, expect, now)?;
        let org_id = org_claim(&claims)?;
        Ok(ConsentIdentity {
            org_id: org_id.to_owned(),
            technical_account: sub.to_owned(),
            issued_at,
            expires_at,
        })
    }

    /// Like [`UnverifiedIdToken::verify`] for a user's sign-in: the same signature and claim
    /// checks, yielding the user (`sub`) instead of an org.
    pub fn verify_user(
        &self,
        key: &RsaPublicKey,
        expect: &Expectations<'_>,
        now: u64,
    ) -> Result<UserIdentity, IdTokenError> {
        let claims = self.signed_claims(key)?;
        let (sub, issued_at, expires_at) = check_claims(&claims, expect, now)?;
        Ok(UserIdentity {
            user_id: sub.to_owned(),
            issued_at,
            expires_at,
        })
    }
}

/// What a verified sign-in id_token establishes: the IMS user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// The IMS user id (`sub`).
    pub user_id: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// SHA-256 of a nonce, as [`Expectations::nonce_sha256`] holds it.
pub fn nonce_digest(nonce: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, nonce.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The checks every id_token gets; yields `sub`, `iat` and `exp`.
fn check_claims<'c>(
    claims: &'c Map<String, Value>,
    expect: &Expectations<'_>,
    now: u64,
) -> Result<(&'c str, u64, u64), IdTokenError> {
    let iss = string_claim(claims, "iss")?;
    if !expect.issuers.iter().any(|i| i == iss) {
        return Err(IdTokenError::WrongIssuer);
    }
    check_audience(claims, expect.client_id)?;

    let leeway = expect.leeway_secs;
    let exp = time_claim(claims, "exp")?.ok_or(IdTokenError::MissingClaim("exp"))?;
    let iat = time_claim(claims, "iat")?.ok_or(IdTokenError::MissingClaim("iat"))?;
    if now > exp.saturating_add(leeway) {
        return Err(IdTokenError::Expired);
    }
    if iat > now.saturating_add(leeway) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if now
        > iat
            .saturating_add(expect.max_age_secs)
            .saturating_add(leeway)
    {
        return Err(IdTokenError::TooOld);
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(IdTokenError::NotYetValid);
    }

    let nonce = string_claim(claims, "nonce")?;
    if !bool::from(nonce_digest(nonce).ct_eq(&expect.nonce_sha256)) {
        return Err(IdTokenError::NonceMismatch);
    }

    let sub = string_claim(claims, "sub")?;
    if !is_identifier(sub) {
        return Err(IdTokenError::BadClaim("sub"));
    }
    Ok((sub, iat, exp))
}

fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, IdTokenError> {
    Ok(claims::string_claim(claims, name)?)
}

fn time_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, IdTokenError> {
    Ok(claims::time_claim(claims, name)?)
}

fn check_audience(claims: &Map<String, Value>, client_id: &str) -> Result<(), IdTokenError> {
    Ok(claims::check_audience(claims, client_id)?)
}

/// The org comes from `org_id` (Adobe's claims table) or `orgId` (all of Adobe's samples). Both
/// are accepted; both present with different values is an attack or a bug, and is refused.
fn org_claim(claims: &Map<String, Value>) -> Result<&str, IdTokenError> {
    let get = |name: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if is_identifier(s) => Ok(Some(s.as_str())),
        Some(_) => Err(IdTokenError::BadClaim(name)),
    };
    match (get("org_id")?, get("orgId")?) {
        (Some(a), Some(b)) if a != b => Err(IdTokenError::OrgConflict),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err(IdTokenError::MissingClaim("org_id")),
    }
}

/// Ids end up in storage, URLs, pages and logs, so only the characters IMS ids use are accepted
/// (`0123ABCD@AdobeOrg`, `0123ABCD@techacct.adobe.com`).
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-+".contains(&b))
}

#[cfg(test)]
mod tests;
