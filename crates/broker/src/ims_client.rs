//! Sends the protocol crate's requests over HTTP (reqwest + rustls) and records IMS metrics.

use std::sync::Arc;
use std::time::Duration;

use imsgate_ims::{HttpRequest, HttpResponse, ImsError};

use crate::config::ImsConfig;
use crate::metrics::{ImsLabels, Metrics};

/// Largest IMS response body read; a token response is a few KiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A small HTTP client for IMS.
#[derive(Debug, Clone)]
pub struct ImsClient {
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    /// (connect, request) timeouts, named in timeout errors.
    timeouts: (Duration, Duration),
}

impl ImsClient {
    pub fn new(config: &ImsConfig, metrics: Arc<Metrics>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("imsgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            metrics,
            timeouts: (config.connect_timeout, config.request_timeout),
        })
    }

    /// Sends `req`. A transport failure becomes an `ImsError` of kind `Transport`; any HTTP
    /// response, whatever its status, is returned for the protocol crate to judge.
    /// `credential` (its config name) labels the metric.
    pub async fn send(
        &self,
        endpoint: &'static str,
        credential: &str,
        req: HttpRequest,
    ) -> Result<HttpResponse, ImsError> {
        let started = tokio::time::Instant::now();
        let result = self.send_inner(req).await;
        let outcome = match &result {
            Ok(r) if (200..300).contains(&r.status) => "ok",
            Ok(r) if r.status == 429 => "rate_limited",
            Ok(r) if r.status >= 500 => "server_error",
            Ok(_) => "client_error",
            Err(_) => "transport_error",
        };
        self.metrics
            .ims
            .get_or_create(&ImsLabels {
                endpoint,
                outcome,
                credential: credential.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn send_inner(&self, req: HttpRequest) -> Result<HttpResponse, ImsError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| ImsError::transport("bad method"))?;
        let url = req.url.clone();
        let describe = |e: reqwest::Error| describe(&e, &url, self.timeouts);
        let mut builder = self.http.request(method, req.url);
        for (k, v) in req.headers {
            builder = builder.header(k, v);
        }
        let mut resp = builder.body(req.body).send().await.map_err(describe)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ImsError::invalid_response("response body too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// A transport error naming the URL (without its query) and the cause (DNS, refused, TLS,
/// timeout), never a body.
fn describe(e: &reqwest::Error, url: &url::Url, timeouts: (Duration, Duration)) -> ImsError {
    ImsError::transport(crate::net_error::describe("IMS", e, url, timeouts))
}
