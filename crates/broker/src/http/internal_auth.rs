//! Authentication of the partner's own backend (the internal API) and of the admin page.
//!
//! Both use the internal API key, compared in constant time. The API takes it as a Bearer token;
//! the admin page as the password of HTTP Basic, so a browser can prompt for it.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
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

/// Requires HTTP Basic with the internal API key as the password (any user name).
pub fn require_basic(headers: &HeaderMap, key: &SecretString) -> Result<(), ApiError> {
    let ok = credentials(headers, "basic")
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| {
            let password = pair.split_once(':').map_or("", |(_, p)| p);
            key.ct_eq_str(password)
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError {
            www_authenticate: Some("Basic realm=\"imsgate admin\", charset=\"UTF-8\""),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in with the internal API key as the password",
            )
        })
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

    #[test]
    fn basic_table() {
        let key = SecretString::new("k3y");
        let enc = |s: &str| format!("Basic {}", STANDARD.encode(s));
        for (value, ok) in [
            (enc("admin:k3y"), true),
            (enc(":k3y"), true),
            (enc("admin:k3"), false),
            (enc("k3y"), false),
            ("Basic !!!".to_owned(), false),
            ("Bearer k3y".to_owned(), false),
        ] {
            assert_eq!(
                require_basic(&headers(&[&value]), &key).is_ok(),
                ok,
                "{value}"
            );
        }
    }
}
