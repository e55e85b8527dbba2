//! JWK sets read strictly, and the one rule deciding whether a key may verify a token.
//!
//! Every JWT imsgate verifies (caller tokens, consent id_tokens, sign-in id_tokens) gets its key
//! through [`KeyUse::permits`]: RFC 7517 §4.2–4.4 and RFC 8725 §3.1 say a key is used only for its
//! stated use and with one algorithm, so a key marked for encryption, or for another algorithm, is
//! never a candidate, whatever its `kid`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::strict_json::{self, StrictJsonError};

/// Why a key set was refused as a whole. The previous good set stays in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is not a JSON object with a `keys` array")]
    Malformed,
    #[error("the key set repeats a JSON key")]
    DuplicateJsonKey,
    /// Two keys share a `kid`: which one a token means is ambiguous, so neither is trusted.
    #[error("the key set lists the same kid twice")]
    DuplicateKid,
}

impl JwksError {
    /// A short, stable identifier for metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::DuplicateJsonKey => "duplicate_json_key",
            Self::DuplicateKid => "duplicate_kid",
        }
    }
}

/// Why a key with the right `kid` may not verify a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("the key's type does not match the token's algorithm")]
    KeyType,
    #[error("the key is not for signatures (`use`)")]
    Use,
    #[error("the key's `key_ops` do not include verify")]
    Operations,
    #[error("the key is bound to another algorithm (`alg`)")]
    Algorithm,
}

/// What a JWK says about how it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// `kty`, as published.
    pub kty: String,
    /// `use`, if present.
    pub use_: Option<String>,
    /// `key_ops`, if present.
    pub key_ops: Option<Vec<String>>,
    /// `alg`, if present.
    pub alg: Option<String>,
}

/// The `kty` an algorithm's keys have (RFC 7518 §6.1); `None` for algorithms without keys.
pub fn kty_for(alg: &str) -> Option<&'static str> {
    match alg.get(..2)? {
        "RS" | "PS" => Some("RSA"),
        "ES" => Some("EC"),
        "HS" => Some("oct"),
        _ if alg == "EdDSA" => Some("OKP"),
        _ => None,
    }
}

impl KeyUse {
    /// The key-selection rule: `kty` matches `alg`'s family, `use` (when present) is `sig`,
    /// `key_ops` (when present) contains `verify`, and `alg` (when present) equals the token's.
    /// `alg` is the token header's, already checked against the verifier's allow-list.
    pub fn permits(&self, alg: &str) -> Result<(), KeyRefusal> {
        if kty_for(alg) != Some(self.kty.as_str()) {
            return Err(KeyRefusal::KeyType);
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyRefusal::Use);
        }
        if self
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
        {
            return Err(KeyRefusal::Operations);
        }
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return Err(KeyRefusal::Algorithm);
        }
        Ok(())
    }
}

/// The key material of a JWK this crate's users can verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Base64url `n` and `e`.
    Rsa { n: String, e: String },
    /// Base64url `x` and `y` on `crv`.
    Ec { crv: String, x: String, y: String },
}

/// One key of a set, with its `kid`, its use metadata and its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: String,
    pub usage: KeyUse,
    pub material: KeyMaterial,
}

/// Parses a JWK set strictly: duplicate JSON keys anywhere and duplicate `kid`s refuse the whole
/// set. Keys without a `kid`, of a type no verifier here uses, with malformed use metadata, or
/// that can never verify anything (`use` other than `sig`, `key_ops` without `verify`) are left
/// out; they could never be selected anyway.
pub fn parse_set(bytes: &[u8]) -> Result<Vec<Jwk>, JwksError> {
    let set = strict_json::parse_object(bytes).map_err(|e| match e {
        StrictJsonError::DuplicateKey => JwksError::DuplicateJsonKey,
        _ => JwksError::Malformed,
    })?;
    let Some(Value::Array(items)) = set.get("keys") else {
        return Err(JwksError::Malformed);
    };
    let mut kids = HashSet::new();
    let mut keys = Vec::new();
    for item in items {
        let Value::Object(jwk) = item else {
            continue;
        };
        // Duplicates count over every listed kid, usable or not: a set that names one kid twice
        // is ambiguous whichever entry would be chosen.
        let Some(Value::String(kid)) = jwk.get("kid") else {
            continue;
        };
        if !kids.insert(kid.clone()) {
            return Err(JwksError::DuplicateKid);
        }
        if let Some(key) = one_key(kid, jwk) {
            keys.push(key);
        }
    }
    Ok(keys)
}

fn one_key(kid: &str, jwk: &Map<String, Value>) -> Option<Jwk> {
    let text = |name: &str| match jwk.get(name) {
        Some(Value::String(s)) => Some(Some(s.clone())),
        None => Some(None),
        // Present with the wrong type: the key's meaning is unclear, so it is not used.
        Some(_) => None,
    };
    let kty = text("kty")??;
    let use_ = text("use")?;
    let alg = text("alg")?;
    let key_ops = match jwk.get("key_ops") {
        None => None,
        Some(Value::Array(ops)) => Some(
            ops.iter()
                .map(|o| o.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
        ),
        Some(_) => return None,
    };
    let usage = KeyUse {
        kty,
        use_,
        key_ops,
        alg,
    };
    // A key that cannot verify under any algorithm is dropped here rather than kept as a
    // candidate the rule then refuses each time.
    if usage.use_.as_deref().is_some_and(|u| u != "sig")
        || usage
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return None;
    }
    let material = match usage.kty.as_str() {
        "RSA" => KeyMaterial::Rsa {
            n: text("n")??,
            e: text("e")??,
        },
        "EC" => KeyMaterial::Ec {
            crv: text("crv")??,
            x: text("x")??,
            y: text("y")??,
        },
        _ => return None,
    };
    Some(Jwk {
        kid: kid.to_owned(),
        usage,
        material,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(kty: &str, use_: Option<&str>, ops: Option<&[&str]>, alg: Option<&str>) -> KeyUse {
        KeyUse {
            kty: kty.into(),
            use_: use_.map(Into::into),
            key_ops: ops.map(|o| o.iter().map(|s| (*s).to_owned()).collect()),
            alg: alg.map(Into::into),
        }
    }

    #[test]
    fn the_selection_rule() {
        use KeyRefusal::*;
        let rows: &[(KeyUse, &str, Result<(), KeyRefusal>)] = &[
            (usage("RSA", None, None, None), "RS256", Ok(())),
            (
                usage("RSA", Some("sig"), Some(&["verify"]), Some("RS256")),
                "RS256",
                Ok(()),
            ),
            (
                usage("EC", Some("sig"), None, Some("ES256")),
                "ES256",
                Ok(()),
            ),
            (
                usage("RSA", None, Some(&["sign", "verify"]), None),
                "RS256",
                Ok(()),
            ),
            (usage("EC", None, None, None), "RS256", Err(KeyType)),
            (usage("RSA", None, None, None), "ES256", Err(KeyType)),
            (usage("oct", None, None, None), "RS256", Err(KeyType)),
            (usage("RSA", None, None, None), "none", Err(KeyType)),
            (usage("RSA", Some("enc"), None, None), "RS256", Err(Use)),
            (usage("RSA", Some("SIG"), None, None), "RS256", Err(Use)),
            (
                usage("RSA", None, Some(&["encrypt", "wrapKey"]), None),
                "RS256",
                Err(Operations),
            ),
            (
                usage("RSA", None, Some(&[]), None),
                "RS256",
                Err(Operations),
            ),
            (
                usage("RSA", None, None, Some("RS512")),
                "RS256",
                Err(Algorithm),
            ),
            (
                usage("RSA", None, None, Some("RSA-OAEP")),
                "RS256",
                Err(Algorithm),
            ),
            (
                usage("EC", None, None, Some("RS256")),
                "ES256",
                Err(Algorithm),
            ),
        ];
        for (u, alg, want) in rows {
            assert_eq!(u.permits(alg), *want, "{u:?} for {alg}");
        }
    }

    #[test]
    fn sets_are_read_strictly() {
        let rsa = r#"{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}"#;
        let keys = parse_set(format!(r#"{{"keys":[{rsa}]}}"#).as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "a");
        let rows: &[(&str, Result<usize, JwksError>)] = &[
            (r#"{"keys":[]}"#, Ok(0)),
            ("[]", Err(JwksError::Malformed)),
            (r#"{"keys":{}}"#, Err(JwksError::Malformed)),
            (r#"{"keys":[],"keys":[]}"#, Err(JwksError::DuplicateJsonKey)),
            (
                r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","n":"AQAB","e":"AQAB"}]}"#,
                Err(JwksError::DuplicateJsonKey),
            ),
            (
                r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"a","n":"AQAC","e":"AQAB"}]}"#,
                Err(JwksError::DuplicateKid),
            ),
            // An encryption key sharing the signing key's kid still makes the kid ambiguous.
            (
                r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"},{"kty":"RSA","use":"enc","kid":"a","n":"AQAC","e":"AQAB"}]}"#,
                Err(JwksError::DuplicateKid),
            ),
            // Keys that can never verify, or whose metadata is malformed, are left out.
            (
                r#"{"keys":[{"kty":"RSA","use":"enc","kid":"a","n":"AQAB","e":"AQAB"}]}"#,
                Ok(0),
            ),
            (
                r#"{"keys":[{"kty":"RSA","key_ops":["encrypt"],"kid":"a","n":"AQAB","e":"AQAB"}]}"#,
                Ok(0),
            ),
            (
                r#"{"keys":[{"kty":"RSA","key_ops":"verify","kid":"a","n":"AQAB","e":"AQAB"}]}"#,
                Ok(0),
            ),
            (
                r#"{"keys":[{"kty":"RSA","use":1,"kid":"a","n":"AQAB","e":"AQAB"}]}"#,
                Ok(0),
            ),
            (r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#, Ok(0)),
            (r#"{"keys":[{"kty":"oct","kid":"a","k":"AQAB"}]}"#, Ok(0)),
            (r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB"}]}"#, Ok(0)),
            (
                r#"{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"AA","y":"AA"},{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}"#,
                Ok(2),
            ),
        ];
        for (text, want) in rows {
            assert_eq!(parse_set(text.as_bytes()).map(|k| k.len()), *want, "{text}");
        }
    }
}
