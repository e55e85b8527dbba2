//! What every request and response passes through before and after routing: a declared body above
//! the cap is refused at once (413, connection closed), a body gets a deadline for arriving in
//! full, and an error response written in plain text (by axum or an extractor's rejection) is
//! reshaped as JSON `{error, error_description}`.
//!
//! A hand-written tower layer, like `metrics_layer`, because it wraps the hot path: a bodiless
//! request whose response is not an error costs two header lookups and nothing else.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::error::ApiError;

/// Most bytes of a plain-text error kept as the JSON description.
const MAX_DESCRIPTION: usize = 300;

#[derive(Clone, Copy, Debug)]
pub struct EdgeLayer {
    pub max_body_bytes: u64,
    pub body_timeout: Duration,
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            config: *self,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    config: EdgeLayer,
}

impl<S> tower::Service<Request> for Edge<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.config.max_body_bytes) {
            return EdgeFuture::Ready {
                resp: Some(closing(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    format!(
                        "the request body may be at most {} bytes",
                        self.config.max_body_bytes
                    ),
                ))),
            };
        }
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        let has_body = declared.is_some_and(|n| n > 0) || chunked;
        let req = if has_body {
            let timeout = self.config.body_timeout;
            req.map(|b| Body::new(DeadlineBody::new(b, timeout)))
        } else {
            req
        };
        EdgeFuture::Inner {
            fut: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    #[project = EdgeProj]
    pub enum EdgeFuture<F, E> {
        Inner { #[pin] fut: F },
        Reshape { fut: Pin<Box<dyn Future<Output = Response> + Send>>, _e: std::marker::PhantomData<E> },
        Ready { resp: Option<Response> },
    }
}

impl<F, E> Future for EdgeFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                EdgeProj::Inner { fut } => {
                    let resp = match fut.poll(cx) {
                        Poll::Ready(Ok(resp)) => resp,
                        other => return other,
                    };
                    if !needs_reshaping(&resp) {
                        return Poll::Ready(Ok(resp));
                    }
                    self.set(EdgeFuture::Reshape {
                        fut: Box::pin(reshape(resp)),
                        _e: std::marker::PhantomData,
                    });
                }
                EdgeProj::Reshape { fut, .. } => return fut.as_mut().poll(cx).map(Ok),
                EdgeProj::Ready { resp } => {
                    return Poll::Ready(Ok(resp
                        .take()
                        .unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())));
                }
            }
        }
    }
}

/// The refusal, on a connection that cannot carry another request (its body is never read).
fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// An error response that is neither JSON nor one of the browser flows' HTML pages.
fn needs_reshaping(resp: &Response) -> bool {
    if !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return false;
    }
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !(ct.starts_with("application/json") || ct.starts_with("text/html"))
}

/// The error code a status gets when axum, not a handler, wrote the response.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "request_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        431 => "request_header_fields_too_large",
        503 => "temporarily_unavailable",
        s if s >= 500 => "internal_error",
        _ => "invalid_request",
    }
}

async fn reshape(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    let description = if status.is_server_error() {
        // Invariant: 5xx bodies carry fixed text only.
        "an internal error occurred; try again".to_owned()
    } else {
        let raw = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim();
        let mut end = text.len().min(MAX_DESCRIPTION);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_owned()
        } else {
            text[..end].to_owned()
        }
    };
    let mut out = ApiError::new(status, code_for(status), description).into_response();
    // Keep what the original answer said about the connection, the method and retrying.
    for name in [header::ALLOW, header::CONNECTION, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// Why reading a request body failed because it took too long.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

pin_project_lite::pin_project! {
    /// A request body that must arrive in full before a deadline.
    struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

impl DeadlineBody {
    fn new(inner: Body, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep(timeout),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
