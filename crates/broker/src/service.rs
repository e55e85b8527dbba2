//! Wiring: builds the broker from a validated config and serves it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::cache::{TokenCache, TokenHandle, TokenKey, Unavailable};
use crate::caller_auth::CallerVerifier;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::credentials::{self, Credential, ImsFetcher};
use crate::ims_client::ImsClient;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;

/// State behind `/api/client-token`.
#[derive(Debug)]
pub struct ClientTokenState {
    pub verifier: CallerVerifier,
    pub limits: RateLimits,
    pub token: TokenHandle,
    pub metrics: Arc<Metrics>,
    pub allowed_origins: Vec<String>,
    /// The response prefix for the current token (see `http::client_token`).
    pub rendered: arc_swap::ArcSwapOption<crate::http::client_token::RenderedPrefix>,
}

/// State shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub cache: TokenCache,
    pub credentials: HashMap<String, Arc<Credential>>,
    pub client_token: Option<Arc<ClientTokenState>>,
    pub max_body_bytes: usize,
}

/// A built broker, ready to serve.
#[derive(Debug, Clone)]
pub struct Broker {
    pub state: Arc<AppState>,
    pub config: Arc<Config>,
}

impl Broker {
    /// Loads secrets and builds every component, reporting every problem at once. Must run inside
    /// a tokio runtime: it starts the background refresher for the client-token credential.
    pub fn build(config: Config, clock: SharedClock) -> Result<Self, Vec<String>> {
        let metrics = Arc::new(Metrics::new());
        let mut problems = Vec::new();
        let credentials = credentials::load_all(&config.credentials).unwrap_or_else(|p| {
            problems.extend(p);
            HashMap::new()
        });
        let client = ImsClient::new(&config.ims, metrics.clone()).map_err(|e| vec![e])?;
        let verifier = config.client_token.as_ref().map(|ct| {
            CallerVerifier::new(
                &ct.caller_auth,
                ct.token_id_namespace,
                clock.clone(),
                config.ims.request_timeout,
            )
        });
        let verifier = match verifier {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                problems.push(e);
                None
            }
            None => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let fetcher = Arc::new(ImsFetcher {
            client,
            endpoints: config.ims.endpoints.clone(),
            credentials: credentials.clone(),
            clock: clock.clone(),
        });
        let cache = TokenCache::new(fetcher, clock, config.refresh, metrics.clone());
        let client_token = match (&config.client_token, verifier) {
            (Some(ct), Some(verifier)) => {
                let cred = &config.credentials[&ct.credential];
                let key = TokenKey {
                    credential: Arc::from(ct.credential.as_str()),
                    org_id: None,
                    scopes: cred.scopes.clone(),
                };
                let limits = RateLimits::new(&ct.rate_limit);
                Some(Arc::new(ClientTokenState {
                    verifier,
                    limits,
                    token: cache.pinned(key),
                    metrics: metrics.clone(),
                    allowed_origins: ct.allowed_origins.clone(),
                    rendered: arc_swap::ArcSwapOption::empty(),
                }))
            }
            _ => None,
        };
        if let Some(ct) = &client_token {
            spawn_eviction(Arc::downgrade(ct));
        }
        Ok(Self {
            state: Arc::new(AppState {
                metrics,
                cache,
                credentials,
                client_token,
                max_body_bytes: config.server.max_body_bytes,
            }),
            config: Arc::new(config),
        })
    }

    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    /// A token for a configured credential with its configured scopes, from the shared cache.
    pub async fn token(
        &self,
        credential: &str,
    ) -> Result<Arc<crate::cache::CachedToken>, TokenError> {
        let cred = self
            .config
            .credentials
            .get(credential)
            .ok_or_else(|| TokenError::UnknownCredential(credential.to_owned()))?;
        let key = TokenKey {
            credential: Arc::from(credential),
            org_id: None,
            scopes: cred.scopes.clone(),
        };
        self.state
            .cache
            .get(key)
            .await
            .map_err(TokenError::Unavailable)
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no credential named {0:?} in the config")]
    UnknownCredential(String),
    #[error("{}", .0.cause)]
    Unavailable(Unavailable),
}

/// Evicts idle per-user rate-limit state every minute while the endpoint exists.
fn spawn_eviction(ct: std::sync::Weak<ClientTokenState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(ct) = ct.upgrade() else { return };
            ct.limits.evict_idle();
        }
    });
}
