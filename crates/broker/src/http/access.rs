//! Request ids, the client address and the access log: a tower layer around every route.
//!
//! Each request gets an id: the `X-Request-Id` a trusted proxy sent (when it is 1 to 128 visible
//! ASCII characters), or a fresh random UUID. The id is returned in every response's
//! `x-request-id` and carried by a `request` span (at INFO), so every log line of the request
//! names it. When the access log is on, one INFO line per request goes to the `imsgate::access`
//! target: method, route template (never the raw path, which holds tickets and ids), status,
//! duration, request id, client address (after the `trusted_proxies` rule) and, on
//! `/api/client-token`, the verified caller's `tokenId`. Nothing else from the request is logged.
//!
//! Hand-rolled like `metrics_layer` because it wraps every request on the hot path.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::trusted_proxies::TrustedProxies;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Longest request id accepted from a proxy; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The TCP peer of the connection a request came on (set by `http::server`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address as the trusted-proxy rule reads it: the TCP peer, or for a trusted
/// proxy the right-most untrusted `X-Forwarded-For` entry. Set on every request this layer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub std::net::IpAddr);

/// The request's id, in the request's extensions for handlers that want it.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// A verified caller's `tokenId`, put in the response's extensions by `/api/client-token` so the
/// access log can name the caller without seeing the caller's token.
#[derive(Debug, Clone, Copy)]
pub struct CallerTokenId(pub Uuid);

#[derive(Clone, Debug)]
pub struct AccessLayer {
    trusted: Arc<TrustedProxies>,
    log: bool,
}

impl AccessLayer {
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            trusted: Arc::new(server.trusted_proxies.clone()),
            log: server.access_log,
        }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            trusted: self.trusted.clone(),
            log: self.log,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccessService<S> {
    inner: S,
    trusted: Arc<TrustedProxies>,
    log: bool,
}

/// What the log line needs from the request, kept until the response.
struct Pending {
    method: Method,
    route: Option<MatchedPath>,
    client: Option<IpAddr>,
}

/// A proxy's request id is kept only if it is short visible ASCII: it ends up in logs and in a
/// response header, so nothing that could break a log line or a header is taken.
fn acceptable(id: &HeaderValue) -> bool {
    let b = id.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| (0x21..=0x7e).contains(c))
}

fn generate() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

impl<S> tower::Service<Request> for AccessService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AccessFuture<tracing::instrument::Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        let from_proxy = peer.is_some_and(|ip| self.trusted.contains(ip));
        let id = from_proxy
            .then(|| req.headers().get(&X_REQUEST_ID))
            .flatten()
            .filter(|v| acceptable(v))
            .cloned()
            .unwrap_or_else(generate);
        // The client's address after the trusted-proxy rule, for the access log and for
        // handlers that count per client (the console's sign-in throttle).
        let client = peer.map(|ip| {
            if from_proxy {
                self.trusted.client_ip(
                    ip,
                    req.headers()
                        .get_all(&X_FORWARDED_FOR)
                        .iter()
                        .map(|v| v.as_bytes()),
                )
            } else {
                ip
            }
        });
        if let Some(ip) = client {
            req.extensions_mut().insert(ClientIp(ip));
        }
        let pending = (self.log
            && tracing::enabled!(target: "imsgate::access", tracing::Level::INFO))
        .then(|| Pending {
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            client,
        });
        // Acceptable ids and generated ones are visible ASCII, so `to_str` cannot fail.
        let span = tracing::info_span!("request", request_id = id.to_str().unwrap_or("-"));
        req.extensions_mut().insert(RequestId(id.clone()));
        AccessFuture {
            inner: self.inner.call(req).instrument(span),
            started: Instant::now(),
            id: Some(id),
            pending,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct AccessFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        id: Option<HeaderValue>,
        pending: Option<Pending>,
    }
}

impl<F, E> Future for AccessFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &mut result {
            let id = this.id.take().unwrap_or_else(generate);
            if let Some(p) = this.pending.take() {
                log_line(&p, resp, &id, this.started.elapsed());
            }
            resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(result)
    }
}

fn log_line(p: &Pending, resp: &Response, id: &HeaderValue, elapsed: std::time::Duration) {
    let route = p.route.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    let status = resp.status().as_u16();
    let duration_ms = elapsed.as_micros() as f64 / 1000.0;
    let request_id = id.to_str().unwrap_or("-");
    let client_ip = p.client.map(tracing::field::display);
    match resp.extensions().get::<CallerTokenId>() {
        Some(t) => tracing::info!(
            target: "imsgate::access",
            method = %p.method,
            route,
            status,
            duration_ms,
            request_id,
            client_ip,
            token_id = %t.0,
            "request"
        ),
        None => tracing::info!(
            target: "imsgate::access",
            method = %p.method,
            route,
            status,
            duration_ms,
            request_id,
            client_ip,
            "request"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_request_ids_are_short_visible_ascii() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN);
        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for (id, ok) in [
            (&b"0f1e2d3c4b5a69788796a5b4c3d2e1f0"[..], true),
            (b"req-42_x.y:z/=+", true),
            (long.as_bytes(), true),
            (too_long.as_bytes(), false),
            (b"", false),
            (b"has space", false),
            (b"tab\there", false),
            ("caf\u{e9}".as_bytes(), false),
        ] {
            let v = HeaderValue::from_bytes(id).unwrap();
            assert_eq!(acceptable(&v), ok, "{id:?}");
        }
        let g = generate();
        assert!(acceptable(&g));
        assert_eq!(
            Uuid::parse_str(g.to_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
    }
}
