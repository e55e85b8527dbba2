//! Claim shapes shared by every JWT imsgate verifies: string claims, NumericDates and the audience
//! rule, each checked for its JSON type before its value is compared.

use serde_json::{Map, Value};

/// Why a claim was refused. Carries the claim's name only, never its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the `{0}` claim is missing")]
    Missing(&'static str),
    #[error("the `{0}` claim has the wrong type or form")]
    Bad(&'static str),
    #[error("the token is not addressed to this audience")]
    WrongAudience,
    #[error("the token's authorized party (`azp`) is not this audience")]
    WrongAuthorizedParty,
}

/// A claim that must be a JSON string (RFC 7519 §4.1.1: `iss` is a string, so an array is
/// refused, not searched).
pub fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, ClaimError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ClaimError::Bad(name)),
        None => Err(ClaimError::Missing(name)),
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number; fractions are allowed and truncated.
/// Strings, booleans and negative numbers are refused.
pub fn time_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                Ok(Some(f as u64))
            }
            _ => Err(ClaimError::Bad(name)),
        },
        Some(_) => Err(ClaimError::Bad(name)),
    }
}

/// The audience rule, the same for caller tokens and id_tokens (OIDC Core §3.1.3.7): `aud` is a
/// string or an array of strings and contains `expected`; when the array names anyone else,
/// `azp` must be present and equal `expected`; an `azp` naming someone else is refused even with
/// a single audience.
pub fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), ClaimError> {
    let mut found = false;
    let mut others = false;
    match claims.get("aud") {
        Some(Value::String(a)) => found = a == expected,
        Some(Value::Array(items)) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::String(a) if a == expected => found = true,
                    Value::String(_) => others = true,
                    _ => return Err(ClaimError::Bad("aud")),
                }
            }
        }
        Some(_) => return Err(ClaimError::Bad("aud")),
        None => return Err(ClaimError::Missing("aud")),
    }
    if !found {
        return Err(ClaimError::WrongAudience);
    }
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == expected => Ok(()),
        Some(_) => Err(ClaimError::WrongAuthorizedParty),
        None if others => Err(ClaimError::WrongAuthorizedParty),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn audience_table() {
        use ClaimError::*;
        let rows: Vec<(Value, Result<(), ClaimError>)> = vec![
            (json!({"aud": "me"}), Ok(())),
            (json!({"aud": ["me"]}), Ok(())),
            (json!({"aud": ["me", "me"]}), Ok(())),
            (json!({"aud": ["me", "other"], "azp": "me"}), Ok(())),
            (json!({"aud": "me", "azp": "me"}), Ok(())),
            (json!({"aud": ["me", "other"]}), Err(WrongAuthorizedParty)),
            (
                json!({"aud": "me", "azp": "other"}),
                Err(WrongAuthorizedParty),
            ),
            (
                json!({"aud": "me", "azp": ["me"]}),
                Err(WrongAuthorizedParty),
            ),
            (json!({"aud": "other"}), Err(WrongAudience)),
            (json!({"aud": ["a", "b"], "azp": "me"}), Err(WrongAudience)),
            (json!({"aud": "ME"}), Err(WrongAudience)),
            (json!({"aud": []}), Err(Bad("aud"))),
            (json!({"aud": ["me", 1]}), Err(Bad("aud"))),
            (json!({"aud": 1}), Err(Bad("aud"))),
            (json!({"aud": null}), Err(Bad("aud"))),
            (json!({"aud": {"me": true}}), Err(Bad("aud"))),
            (json!({}), Err(Missing("aud"))),
        ];
        for (claims, want) in rows {
            assert_eq!(check_audience(&obj(claims.clone()), "me"), want, "{claims}");
        }
    }

    #[test]
    fn shapes_table() {
        let c = obj(json!({
            "s": "x", "arr": ["x"], "n": 5, "f": 5.5, "neg": -1, "str": "5", "b": true, "nul": null,
        }));
        assert_eq!(string_claim(&c, "s"), Ok("x"));
        assert_eq!(string_claim(&c, "arr"), Err(ClaimError::Bad("arr")));
        assert_eq!(string_claim(&c, "n"), Err(ClaimError::Bad("n")));
        assert_eq!(string_claim(&c, "gone"), Err(ClaimError::Missing("gone")));
        assert_eq!(time_claim(&c, "n"), Ok(Some(5)));
        assert_eq!(time_claim(&c, "f"), Ok(Some(5)));
        assert_eq!(time_claim(&c, "gone"), Ok(None));
        for bad in ["neg", "str", "b", "nul", "arr", "s"] {
            assert_eq!(time_claim(&c, bad), Err(ClaimError::Bad(bad)), "{bad}");
        }
    }
}
