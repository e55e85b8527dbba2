//! A tower layer recording request latency by route template and status.
//!
//! Hand-rolled rather than `axum::middleware::from_fn` because this wraps every request on the hot
//! path, and `from_fn` boxes a future and clones a boxed service per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tokio::time::Instant;

use crate::metrics::{Metrics, RouteLabels};

#[derive(Clone, Debug)]
pub struct MetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for MetricsService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| static_route(p.as_str()))
            .unwrap_or("unmatched");
        MetricsFuture {
            inner: self.inner.call(req),
            started: Instant::now(),
            route,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        route: &'static str,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &result {
            this.metrics
                .http
                .get_or_create(&RouteLabels {
                    route: this.route,
                    status: resp.status().as_u16(),
                })
                .observe(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}

/// Route templates as static labels, so recording a metric allocates nothing. Unknown templates
/// share one label, which keeps label cardinality bounded whatever routes are added.
fn static_route(path: &str) -> &'static str {
    match path {
        "/api/client-token" => "/api/client-token",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/api/connections" => "/api/connections",
        "/api/connections/{account_id}" => "/api/connections/{account_id}",
        "/api/orgs/{org_id}/token" => "/api/orgs/{org_id}/token",
        "/connect/{ticket}" => "/connect/{ticket}",
        "/consent/callback" => "/consent/callback",
        "/admin" => "/admin",
        "/api/user-logins" => "/api/user-logins",
        "/api/users/{user}/token" => "/api/users/{user}/token",
        "/login/{ticket}" => "/login/{ticket}",
        "/user/callback" => "/user/callback",
        _ => "other",
    }
}
