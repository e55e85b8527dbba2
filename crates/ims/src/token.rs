//! Access tokens and token-response parsing, with expiry computed from a passed-in `now`.

use std::time::{Duration, SystemTime};

use crate::error::ImsError;
use crate::http::HttpResponse;
use crate::secret::SecretString;

/// The unit of `expires_in`: seconds for `/ims/token/v3`, milliseconds for the JWT exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiresInUnit {
    Seconds,
    Milliseconds,
}

/// Shortest lifetime we accept. Anything shorter cannot be cached or handed to a browser usefully.
pub const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// Longest lifetime we accept. IMS issues at most 24 hours; a week leaves room without trusting
/// absurd values (which usually mean a unit mix-up).
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// An IMS access token with the absolute times it was received and expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub secret: SecretString,
    pub token_type: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

impl AccessToken {
    pub fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.issued_at)
            .unwrap_or(Duration::ZERO)
    }

    /// Milliseconds since the Unix epoch at which the token expires.
    pub fn expires_at_unix_ms(&self) -> u64 {
        self.expires_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Parses a token endpoint response. A non-2xx status, or a 2xx carrying an `error`, becomes an
/// [`ImsError`]; a 2xx that is not a well-formed token becomes `InvalidResponse`.
pub fn parse_token_response(
    resp: &HttpResponse,
    now: SystemTime,
    unit: ExpiresInUnit,
) -> Result<AccessToken, ImsError> {
    if !(200..300).contains(&resp.status) {
        return Err(ImsError::from_response(resp, now));
    }
    let value: serde_json::Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(_) => {
            return Err(with_debug_id(
                ImsError::invalid_response("token response is not JSON"),
                resp,
            ));
        }
    };
    let Some(obj) = value.as_object() else {
        return Err(with_debug_id(
            ImsError::invalid_response("token response is not a JSON object"),
            resp,
        ));
    };
    if obj.contains_key("error") {
        // IMS has been seen answering 200 with an error body; treat it as the error it is.
        return Err(ImsError::from_response(resp, now));
    }
    let access_token = match obj.get("access_token") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => SecretString::new(s.clone()),
        _ => {
            return Err(with_debug_id(
                ImsError::invalid_response("token response has no access_token"),
                resp,
            ));
        }
    };
    let token_type = match obj.get("token_type") {
        Some(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
        None => "bearer".to_owned(),
        _ => {
            return Err(with_debug_id(
                ImsError::invalid_response("token_type is not a string"),
                resp,
            ));
        }
    };
    if token_type != "bearer" {
        return Err(with_debug_id(
            ImsError::invalid_response(format!("unsupported token_type {token_type:?}")),
            resp,
        ));
    }
    let lifetime = match obj.get("expires_in") {
        None => {
            return Err(with_debug_id(
                ImsError::invalid_response("token response has no expires_in"),
                resp,
            ));
        }
        Some(v) => lifetime_from(v, unit).ok_or_else(|| {
            with_debug_id(
                ImsError::invalid_response(format!("expires_in {v} is not a sensible lifetime")),
                resp,
            )
        })?,
    };
    Ok(AccessToken {
        secret: access_token,
        token_type,
        issued_at: now,
        expires_at: now + lifetime,
    })
}

fn with_debug_id(mut e: ImsError, resp: &HttpResponse) -> ImsError {
    e.status = Some(resp.status);
    e.debug_id = resp.header("x-debug-id").map(str::to_owned);
    e
}

/// Accepts a JSON number or a numeric string (both occur in the wild) and rejects lifetimes that are
/// zero, negative, fractional nonsense or beyond [`MAX_LIFETIME`].
fn lifetime_from(v: &serde_json::Value, unit: ExpiresInUnit) -> Option<Duration> {
    let n: u64 = match v {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let d = match unit {
        ExpiresInUnit::Seconds => Duration::from_secs(n),
        ExpiresInUnit::Milliseconds => Duration::from_millis(n),
    };
    (MIN_LIFETIME..=MAX_LIFETIME).contains(&d).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ImsErrorKind;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("x-debug-id".into(), "dbg-1".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parsing_table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        use ExpiresInUnit::*;
        // (status, body, unit, Ok(lifetime secs) | Err(kind))
        let cases: &[(u16, &str, ExpiresInUnit, Result<u64, ImsErrorKind>)] = &[
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":86399}"#,
                Seconds,
                Ok(86399),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"Bearer","expires_in":"300"}"#,
                Seconds,
                Ok(300),
            ),
            (
                200,
                r#"{"access_token":"t","expires_in":299}"#,
                Seconds,
                Ok(299),
            ),
            (
                200,
                r#"{"token_type":"bearer","access_token":"t","expires_in":86399000}"#,
                Milliseconds,
                Ok(86399),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer"}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":0}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":-5}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":1.5}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":86399993}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":1e308}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":null}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t","token_type":"mac","expires_in":60}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"","token_type":"bearer","expires_in":60}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":7,"expires_in":60}"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"["access_token"]"#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (
                200,
                r#"{"access_token":"t""#,
                Seconds,
                Err(ImsErrorKind::InvalidResponse),
            ),
            (200, "", Seconds, Err(ImsErrorKind::InvalidResponse)),
            (
                200,
                r#"{"error":"invalid_client","error_description":"bad"}"#,
                Seconds,
                Err(ImsErrorKind::InvalidClient),
            ),
            (
                400,
                r#"{"error":"invalid_scope"}"#,
                Seconds,
                Err(ImsErrorKind::InvalidScope),
            ),
            (
                401,
                r#"{"error":"invalid_client"}"#,
                Seconds,
                Err(ImsErrorKind::InvalidClient),
            ),
            (429, "", Seconds, Err(ImsErrorKind::RateLimited)),
            (502, "<html>", Seconds, Err(ImsErrorKind::Unavailable)),
        ];
        for (status, body, unit, want) in cases {
            let got = parse_token_response(&resp(*status, body), now, *unit);
            match (got, want) {
                (Ok(t), Ok(secs)) => {
                    assert_eq!(t.lifetime(), Duration::from_secs(*secs), "{body}");
                    assert_eq!(t.issued_at, now);
                    assert_eq!(t.expires_at_unix_ms(), (1_700_000_000 + secs) * 1000);
                    assert_eq!(t.secret.expose(), "t");
                }
                (Err(e), Err(kind)) => {
                    assert_eq!(e.kind, *kind, "{status} {body}");
                    assert_eq!(e.debug_id.as_deref(), Some("dbg-1"), "{status} {body}");
                }
                (got, want) => panic!("{status} {body}: got {got:?}, want {want:?}"),
            }
        }
    }
}
