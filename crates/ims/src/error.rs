//! Typed IMS errors that keep what operators need: code, description, `x-debug-id`, `Retry-After`.

use std::time::{Duration, SystemTime};

use crate::http::HttpResponse;
use crate::retry_after;

/// What kind of failure this is, which decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImsErrorKind {
    /// The credential itself was refused (`invalid_client`, `unauthorized_client`, ...).
    InvalidClient,
    /// The scopes asked for are not allowed for this credential.
    InvalidScope,
    /// The request was refused for another client-side reason; retrying unchanged will not help.
    Rejected,
    /// IMS asked us to slow down (429).
    RateLimited,
    /// IMS failed or is unavailable (5xx).
    Unavailable,
    /// IMS answered with something that is not a valid token response.
    InvalidResponse,
    /// The request never got an answer (connection refused or dropped, timeout).
    Transport,
}

impl ImsErrorKind {
    /// Whether trying the same request later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::Unavailable | Self::Transport | Self::InvalidResponse
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidClient => "invalid_client",
            Self::InvalidScope => "invalid_scope",
            Self::Rejected => "rejected",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::InvalidResponse => "invalid_response",
            Self::Transport => "transport",
        }
    }
}

/// An error from IMS or from talking to it. Never carries a secret: descriptions come from IMS's
/// error body, which does not echo credentials, and are length-capped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", self.plain(), self.debug_suffix())]
pub struct ImsError {
    pub kind: ImsErrorKind,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// IMS's `error` code.
    pub error: Option<String>,
    /// IMS's `error_description`.
    pub description: Option<String>,
    /// IMS's `x-debug-id` header, which Adobe support asks for.
    pub debug_id: Option<String>,
    /// How long IMS asked us to wait.
    pub retry_after: Option<Duration>,
}

/// Longest IMS-provided text kept, so a hostile body cannot flood logs.
const MAX_TEXT: usize = 256;

fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    if s.chars().count() > MAX_TEXT {
        out.push('…');
    }
    out
}

impl ImsError {
    pub fn new(kind: ImsErrorKind) -> Self {
        Self {
            kind,
            status: None,
            error: None,
            description: None,
            debug_id: None,
            retry_after: None,
        }
    }

    pub fn transport(description: impl AsRef<str>) -> Self {
        Self {
            description: Some(clip(description.as_ref())),
            ..Self::new(ImsErrorKind::Transport)
        }
    }

    pub fn invalid_response(description: impl AsRef<str>) -> Self {
        Self {
            description: Some(clip(description.as_ref())),
            ..Self::new(ImsErrorKind::InvalidResponse)
        }
    }

    /// The error in plain words for operators: what happened, then IMS's own code and text.
    /// A transport error's description already says what failed and where.
    fn plain(&self) -> String {
        let what = match self.kind {
            ImsErrorKind::InvalidClient => "IMS refused the client id or client secret",
            ImsErrorKind::InvalidScope => "IMS refused the requested scopes",
            ImsErrorKind::Rejected => "IMS refused the request",
            ImsErrorKind::RateLimited => "IMS is rate-limiting this client",
            ImsErrorKind::Unavailable => "IMS is unavailable",
            ImsErrorKind::InvalidResponse => "IMS sent an unusable response",
            ImsErrorKind::Transport => return self.summary(),
        };
        format!("{what} ({})", self.summary())
    }

    fn summary(&self) -> String {
        match (&self.error, &self.description, self.status) {
            (Some(e), Some(d), _) => format!("{e}: {d}"),
            (Some(e), None, _) => e.clone(),
            (None, Some(d), _) => d.clone(),
            (None, None, Some(s)) => format!("HTTP {s}"),
            (None, None, None) => "no details".to_owned(),
        }
    }

    fn debug_suffix(&self) -> String {
        self.debug_id
            .as_ref()
            .map(|id| format!(" (x-debug-id {id})"))
            .unwrap_or_default()
    }

    /// Builds the error for a response that is not a success, or a 200 that carries an error body.
    pub fn from_response(resp: &HttpResponse, now: SystemTime) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Option<serde_json::Value>,
            error_description: Option<serde_json::Value>,
        }
        let body: Option<Body> = serde_json::from_slice(&resp.body).ok();
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(clip(&s)),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(clip(&other.to_string())),
        };
        let (error, description) = match body {
            Some(b) => (text(b.error), text(b.error_description)),
            None => (None, None),
        };
        let kind = classify(resp.status, error.as_deref());
        Self {
            kind,
            status: Some(resp.status),
            error,
            description,
            debug_id: resp.header("x-debug-id").map(clip),
            retry_after: resp
                .header("retry-after")
                .and_then(|v| retry_after::parse(v, now)),
        }
    }
}

fn classify(status: u16, error: Option<&str>) -> ImsErrorKind {
    match status {
        429 => return ImsErrorKind::RateLimited,
        500..=599 => return ImsErrorKind::Unavailable,
        _ => {}
    }
    match error {
        Some("invalid_client" | "unauthorized_client" | "invalid_client_secret") => {
            ImsErrorKind::InvalidClient
        }
        Some("invalid_scope") => ImsErrorKind::InvalidScope,
        Some("server_error" | "internal_error" | "temporarily_unavailable") => {
            ImsErrorKind::Unavailable
        }
        Some(_) => ImsErrorKind::Rejected,
        // A 2xx with no usable body, or a 4xx with an empty one.
        None if (200..300).contains(&status) => ImsErrorKind::InvalidResponse,
        None => ImsErrorKind::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classification_table() {
        let now = SystemTime::UNIX_EPOCH;
        let cases: &[(u16, &str, ImsErrorKind, Option<&str>)] = &[
            (
                400,
                r#"{"error":"invalid_client","error_description":"invalid client_id parameter"}"#,
                ImsErrorKind::InvalidClient,
                Some("invalid_client"),
            ),
            (
                401,
                r#"{"error":"invalid_client"}"#,
                ImsErrorKind::InvalidClient,
                Some("invalid_client"),
            ),
            (
                400,
                r#"{"error":"invalid_scope","error_description":"invalid scope"}"#,
                ImsErrorKind::InvalidScope,
                Some("invalid_scope"),
            ),
            (
                400,
                r#"{"error":"bad_request"}"#,
                ImsErrorKind::Rejected,
                Some("bad_request"),
            ),
            (
                429,
                r#"{"error":"too_many_requests"}"#,
                ImsErrorKind::RateLimited,
                Some("too_many_requests"),
            ),
            (
                500,
                r#"{"error":"internal_error","error_description":"Please try again later"}"#,
                ImsErrorKind::Unavailable,
                Some("internal_error"),
            ),
            (
                503,
                "<html>bad gateway</html>",
                ImsErrorKind::Unavailable,
                None,
            ),
            (
                200,
                r#"{"error":"invalid_client"}"#,
                ImsErrorKind::InvalidClient,
                Some("invalid_client"),
            ),
            (200, "not json", ImsErrorKind::InvalidResponse, None),
            (404, "", ImsErrorKind::Rejected, None),
            (400, r#"{"error":17}"#, ImsErrorKind::Rejected, Some("17")),
        ];
        for (status, body, kind, code) in cases {
            let e = ImsError::from_response(&resp(*status, &[], body), now);
            assert_eq!(e.kind, *kind, "status {status} body {body}");
            assert_eq!(e.error.as_deref(), *code, "status {status} body {body}");
            assert_eq!(e.status, Some(*status));
        }
    }

    #[test]
    fn keeps_debug_id_and_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let e = ImsError::from_response(
            &resp(
                429,
                &[("X-Debug-Id", "abc-123"), ("Retry-After", "12")],
                r#"{"error":"too_many_requests","error_description":"slow down"}"#,
            ),
            now,
        );
        assert_eq!(e.debug_id.as_deref(), Some("abc-123"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(12)));
        let shown = e.to_string();
        assert!(
            shown.contains("abc-123") && shown.contains("slow down"),
            "{shown}"
        );
        assert!(e.kind.is_retryable());
    }

    /// Operators read these in logs and CLI output: plain words and IMS's code, never a Rust
    /// enum name.
    #[test]
    fn display_is_plain_words_table() {
        let now = SystemTime::UNIX_EPOCH;
        let cases: &[(u16, &str, &str)] = &[
            (
                401,
                r#"{"error":"invalid_client","error_description":"invalid client_secret parameter"}"#,
                "IMS refused the client id or client secret (invalid_client: invalid client_secret parameter)",
            ),
            (
                400,
                r#"{"error":"invalid_scope"}"#,
                "IMS refused the requested scopes (invalid_scope)",
            ),
            (400, "", "IMS refused the request (HTTP 400)"),
            (429, "", "IMS is rate-limiting this client (HTTP 429)"),
            (503, "", "IMS is unavailable (HTTP 503)"),
            (200, "{}", "IMS sent an unusable response (HTTP 200)"),
        ];
        for (status, body, want) in cases {
            let e = ImsError::from_response(&resp(*status, &[], body), now);
            assert_eq!(e.to_string(), *want);
        }
        let t =
            ImsError::transport("cannot reach IMS at https://x/ims/token/v3: connection refused");
        assert_eq!(
            t.to_string(),
            "cannot reach IMS at https://x/ims/token/v3: connection refused"
        );
    }

    #[test]
    fn hostile_text_is_clipped_and_stripped() {
        let long = "x".repeat(10_000);
        let body = format!(r#"{{"error":"bad\u0007\n{long}"}}"#);
        let e = ImsError::from_response(&resp(400, &[], &body), SystemTime::UNIX_EPOCH);
        let code = e.error.unwrap();
        assert!(code.chars().count() <= MAX_TEXT + 1);
        assert!(!code.contains('\n') && !code.contains('\u{7}'));
    }
}
