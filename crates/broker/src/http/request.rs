//! Reading what a request carries, after the caller is authenticated: a JSON body (415 for another
//! content type, 413 over the cap, 408 when it arrives too slowly) and path parameters, each
//! refusal shaped as `{error, error_description}`.
//!
//! Handlers take the raw `Request` and a `Result<Path<_>, _>` rather than `Json`/`Path`
//! extractors, because extractors run before the handler's body: an unauthenticated caller would
//! learn about a malformed path or body before being told to authenticate.

use std::error::Error as _;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, Path, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::edge::BodyTimedOut;
use super::error::ApiError;

/// The body of `req` as JSON of type `T`. `shape` describes the expected object for the message.
pub async fn read_json<T: DeserializeOwned>(req: Request, shape: &str) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with `Content-Type: application/json`",
        ));
    }
    let body = Bytes::from_request(req, &()).await.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the body must be JSON {shape} ({})", json_problem(&e)),
        )
    })
}

/// `application/json`, or any `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn body_error(e: BytesRejection) -> ApiError {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<BodyTimedOut>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            );
        }
        source = s.source();
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "the request body is larger than the server accepts",
        );
    }
    ApiError::bad_request("invalid_request", "the request body could not be read")
}

/// Which part of a JSON body was wrong, without echoing it.
pub fn json_problem(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "malformed JSON",
        Category::Data => "missing, unknown or mistyped fields",
    }
}

/// A path parameter, or the JSON refusal of one that is not valid (for example not UTF-8).
pub fn path_param<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    match path {
        Ok(Path(v)) => Ok(v),
        Err(_) => Err(ApiError::bad_request(
            "invalid_request",
            "a path parameter is not valid (it must be UTF-8 and of the expected form)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let cases: &[(Option<&str>, bool)] = &[
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON"), true),
            (Some("application/merge-patch+json"), true),
            (Some("text/plain"), false),
            (Some("application/x-www-form-urlencoded"), false),
            (Some("application/jsonx"), false),
            (Some("application/+json"), false),
            (Some("json"), false),
            (Some(""), false),
            (None, false),
        ];
        for (ct, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            assert_eq!(is_json(&h), *want, "{ct:?}");
        }
    }
}
