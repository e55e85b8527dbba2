//! Authentication of the partner's own backend (the internal API): the internal API key as a
//! Bearer token, compared in constant time. (The operator console signs in with the same key
//! through its own throttled form: `admin_auth.rs`.)

use axum::http::{HeaderMap, StatusCode, header};
use imsgate_ims::SecretString;

use super::error::ApiError;

/// Requires `Authorization: Bearer <internal API key>` (scheme case-insensitive).
pub fn require_bearer(headers: &HeaderMap, key: &SecretString) -> Result<(), ApiError> {
    let presented = credentials(headers, "bearer");
    match presented {
        Some(p) if key.ct_eq_str(p.trim()) => Ok(()),
        _ => Err(ApiError {
            www_authenticate: Some("Bearer realm=\"imsgate-internal\""),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the internal API key is required as `Authorization: Bearer <key>`",
            )
        }),
    }
}

fn credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    // Two Authorization headers are ambiguous; refuse rather than pick one.
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_table() {
        let key = SecretString::new("k3y-internal");
        for (values, ok) in [
            (vec!["Bearer k3y-internal"], true),
            (vec!["bearer k3y-internal"], true),
            (vec!["BEARER k3y-internal"], true),
            (vec!["Bearer k3y-interna"], false),
            (vec!["Bearer k3y-internal2"], false),
            (vec!["Basic k3y-internal"], false),
            (vec!["k3y-internal"], false),
            (vec![], false),
            (vec!["Bearer k3y-internal", "Bearer k3y-internal"], false),
        ] {
            assert_eq!(
                require_bearer(&headers(&values), &key).is_ok(),
                ok,
                "{values:?}"
            );
        }
        let err = require_bearer(&headers(&[]), &key).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
    }
}
