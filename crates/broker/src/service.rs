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

/// State behind the consent flow, the connections API and the admin page.
#[derive(Debug)]
pub struct ConsentState {
    pub service: crate::consent::ConsentService,
    pub internal_key: imsgate_ims::SecretString,
    pub cache: TokenCache,
    /// The enterprise_web_app credential's name, the first part of org token keys.
    pub credential: Arc<str>,
    pub metrics: Arc<Metrics>,
}

/// State shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub cache: TokenCache,
    pub credentials: HashMap<String, Arc<Credential>>,
    pub client_token: Option<Arc<ClientTokenState>>,
    pub consent: Option<Arc<ConsentState>>,
    pub user_login: Option<Arc<crate::http::user_login::UserLoginState>>,
    /// The operator console, whenever `[internal_api]` is configured.
    pub console: Option<Arc<crate::http::console::ConsoleState>>,
    pub store: Option<crate::storage::Store>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// Request ids, client addresses and the access log (`http::access`).
    pub access: crate::http::access::AccessLayer,
}

/// A built broker, ready to serve.
#[derive(Debug, Clone)]
pub struct Broker {
    pub state: Arc<AppState>,
    pub config: Arc<Config>,
    /// The listeners' TLS, when `[server] tls_cert` is set.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// The bound sockets (see `Broker::bind`).
#[derive(Debug)]
pub struct Listeners {
    /// `[server] listen`: every address it resolved to.
    pub public: Vec<TcpListener>,
    /// `[server] admin_listen`, when set: operator routes are served only here.
    pub admin: Vec<TcpListener>,
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
                metrics.clone(),
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
        let store = match &config.storage {
            Some(s) => match crate::storage::Store::open(&s.sqlite_path) {
                Ok(store) => Some(store),
                Err(e) => {
                    problems.push(format!("storage.sqlite_path: {e}"));
                    None
                }
            },
            None => None,
        };
        let internal_key = match &config.internal_api {
            Some(api) => load_internal_key(api).map_err(|e| problems.push(e)).ok(),
            None => None,
        };
        let tls = match &config.server.tls {
            Some(files) => crate::tls::Tls::load(files, metrics.tls.clone(), clock.clone())
                .map_err(|e| problems.extend(e))
                .ok(),
            None => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let now = crate::clock::unix_ms(clock.now()) / 1000;
        for (name, cred) in &credentials {
            if let Some(keys) = &cred.signing {
                tracing::warn!(credential = %name, "{}", crate::service_account::DEPRECATION);
                if let Some(w) = keys.expiry_warning(now) {
                    tracing::warn!(credential = %name, "{w}");
                }
            }
        }
        let sealer = match &config.user_login {
            Some(ul) => match crate::sealed::Sealer::load(&ul.token_encryption_keys) {
                Ok(s) => Some(s),
                Err(errors) => {
                    for e in errors {
                        problems.push(format!("user_login.token_encryption_keys: {e}"));
                    }
                    None
                }
            },
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
            store: store.clone(),
        });
        let cache = TokenCache::new(
            fetcher.clone(),
            clock.clone(),
            config.refresh,
            metrics.clone(),
        );
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
        // One JWKS cache for both browser flows: the same IMS keys, fetched once.
        let jwks = if config.consent.is_some() || config.user_login.is_some() {
            Some(Arc::new(
                crate::jwks::JwksCache::new(
                    config.ims.endpoints.jwks.clone(),
                    config.ims.request_timeout,
                    metrics.clone(),
                    crate::jwks::JwksSource::Ims,
                )
                .map_err(|e| vec![e])?,
            ))
        } else {
            None
        };
        let console_key = internal_key.clone();
        let consent = match (&config.consent, &store, internal_key.clone(), jwks.clone()) {
            (Some(cc), Some(store), Some(internal_key), Some(jwks)) => {
                let cred = &config.credentials[&cc.credential];
                // Sent explicitly whenever a pattern allows it; left out only when the callback is
                // the default redirect URI and no pattern matches it, since IMS checks an explicit
                // `redirect_uri` against the patterns alone.
                let matches = cred
                    .web_app
                    .as_ref()
                    .and_then(|w| crate::config::redirect_rules(w, cc.development_mode).ok())
                    .is_some_and(|r| r.matches_pattern(cc.callback_url.as_str()));
                let redirect_uri = matches.then(|| cc.callback_url.to_string());
                let service = crate::consent::ConsentService {
                    redirect_uri,
                    config: cc.clone(),
                    client_id: cred.client_id.clone(),
                    scopes: cred.scopes.clone(),
                    store: store.clone(),
                    jwks,
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                };
                Some(Arc::new(ConsentState {
                    service,
                    internal_key,
                    cache: cache.clone(),
                    credential: Arc::from(cc.credential.as_str()),
                    metrics: metrics.clone(),
                }))
            }
            _ => None,
        };
        let user_login = match (&config.user_login, &store, internal_key, sealer, jwks) {
            (Some(ul), Some(store), Some(internal_key), Some(sealer), Some(jwks)) => {
                let credential = credentials[&ul.credential].clone();
                let vault = Arc::new(crate::user_login::UserTokenVault::new(
                    credential.clone(),
                    fetcher.clone(),
                    store.clone(),
                    sealer,
                    clock.clone(),
                    ul.token_auth,
                    ul.refresh_token_lifetime,
                    config.refresh,
                    metrics.clone(),
                ));
                spawn_user_token_eviction(Arc::downgrade(&vault));
                let service = crate::user_login::UserLoginService {
                    config: ul.clone(),
                    scopes: credential.config.scopes.clone(),
                    credential,
                    store: store.clone(),
                    jwks,
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    fetcher: fetcher.clone(),
                    vault,
                };
                Some(Arc::new(crate::http::user_login::UserLoginState {
                    service,
                    internal_key,
                }))
            }
            _ => None,
        };
        let console = console_key.map(|key| {
            Arc::new(crate::http::console::ConsoleState {
                auth: crate::admin_auth::AdminAuth::new(key),
                cache: cache.clone(),
                credentials: credentials.clone(),
                consent: consent.clone(),
                user_login: user_login.clone(),
                client_token: client_token.clone(),
                metrics: metrics.clone(),
                clock: clock.clone(),
            })
        });
        if let Some(store) = &store {
            spawn_purge(store.clone(), clock.clone());
            crate::consent::spawn_purge(store.clone(), clock.clone());
        }
        Ok(Self {
            state: Arc::new(AppState {
                metrics,
                cache,
                credentials,
                client_token,
                consent,
                user_login,
                console,
                store,
                max_body_bytes: config.server.max_body_bytes,
                body_timeout: config.server.body_timeout,
                access: crate::http::access::AccessLayer::new(&config.server),
            }),
            config: Arc::new(config),
            tls,
        })
    }

    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    /// A token for a configured credential with its configured scopes, from the shared cache.
    /// Waits for IMS until the request ends (at most the IMS request timeout) rather than the
    /// caller wait of the HTTP API: this serves `imsgate token` and scripts, which would only
    /// retry.
    pub async fn token(
        &self,
        credential: &str,
    ) -> Result<Arc<crate::cache::CachedToken>, TokenError> {
        let cred = self.config.credentials.get(credential).ok_or_else(|| {
            TokenError::UnknownCredential {
                name: credential.to_owned(),
                known: crate::config::known_names(self.config.credentials.keys()),
            }
        })?;
        match cred.kind {
            crate::config::CredentialKind::ApiKey => {
                return Err(TokenError::NoToken(credential.to_owned()));
            }
            crate::config::CredentialKind::OAuthWebApp => {
                return Err(TokenError::UserOnly(credential.to_owned()));
            }
            _ => {}
        }
        let key = TokenKey {
            credential: Arc::from(credential),
            org_id: None,
            scopes: cred.scopes.clone(),
        };
        self.state
            .cache
            .get_waiting(key)
            .await
            .map_err(TokenError::Unavailable)
    }

    /// Serves on `listener` (over TLS when configured) until `shutdown` resolves: every route, or
    /// with `[server] admin_listen` configured only the public ones (bind both with `bind`).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_listeners(
            Listeners {
                public: vec![listener],
                admin: Vec::new(),
            },
            shutdown,
        )
        .await
    }

    /// Binds `[server] listen` and, when set, `admin_listen` (host names resolved now).
    pub async fn bind(&self) -> Result<Listeners, Vec<String>> {
        let server = &self.config.server;
        let public = crate::http::bind::bind(&server.listen, "server.listen")
            .await
            .map_err(|e| vec![e])?;
        let admin = match &server.admin_listen {
            Some(a) => crate::http::bind::bind(a, "server.admin_listen")
                .await
                .map_err(|e| vec![e])?,
            None => Vec::new(),
        };
        Ok(Listeners { public, admin })
    }

    /// Serves until `shutdown` resolves: without admin listeners every route on the public ones;
    /// with them, public routes on the public listeners and operator routes on the admin ones.
    /// TLS, when configured, applies to all, and its files are watched while serving.
    pub async fn serve_listeners(
        &self,
        listeners: Listeners,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut bound = Vec::new();
        // With `admin_listen` configured, the public listeners never get operator routes, even
        // when no admin listener was passed in (`serve`): those routes then go unserved.
        if listeners.admin.is_empty() && self.config.server.admin_listen.is_none() {
            let router = self.router();
            bound.extend(listeners.public.into_iter().map(|l| (l, router.clone())));
        } else {
            let (public, operator) = crate::http::split_routers(self.state.clone());
            bound.extend(listeners.public.into_iter().map(|l| (l, public.clone())));
            bound.extend(listeners.admin.into_iter().map(|l| (l, operator.clone())));
        }
        let watch = self.tls.as_ref().map(|t| t.spawn_watch());
        let served = crate::http::server::serve(
            bound,
            self.tls.as_ref().map(|t| t.server_config()),
            crate::http::server::ConnLimits::from_config(&self.config.server),
            self.state.metrics.clone(),
            shutdown,
        )
        .await;
        if let Some(w) = watch {
            w.abort();
        }
        served
    }

    /// Reloads the TLS certificate and key (SIGHUP), logging what happened; with no TLS
    /// configured, logs that there is nothing to reload.
    pub fn reload(&self, trigger: &'static str) {
        match &self.tls {
            Some(tls) => {
                let _ = tls.reload(trigger);
            }
            None => tracing::info!(
                trigger,
                "reload requested; no TLS is configured, so there is nothing to reload"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no credential named {name:?} (known: {known})")]
    UnknownCredential { name: String, known: String },
    #[error(
        "credential {0:?} is an api_key credential: it has no token; send its client id as the x-api-key header"
    )]
    NoToken(String),
    #[error(
        "credential {0:?} is an oauth_web_app credential: its tokens belong to signed-in users; get one with POST /api/users/USER/token"
    )]
    UserOnly(String),
    #[error("{}", .0.cause)]
    Unavailable(Unavailable),
}

/// The internal API key, refused when too short to resist guessing.
pub(crate) fn load_internal_key(
    api: &crate::config::InternalApiConfig,
) -> Result<imsgate_ims::SecretString, String> {
    match api.api_key.load() {
        Ok(k) if k.expose().len() >= 32 => Ok(k),
        Ok(_) => Err("internal_api.api_key: the key must be at least 32 characters (generate one with `openssl rand -base64 32`)".into()),
        Err(e) => Err(format!("internal_api.api_key: {e}")),
    }
}

/// Hourly: deletes user grants that can no longer yield a token. (Expired tickets and sessions
/// go every minute, in `consent::spawn_purge`.)
fn spawn_purge(store: crate::storage::Store, clock: SharedClock) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = crate::clock::unix_ms(clock.now());
            if let Err(e) = store.purge_dead_user_grants(now).await {
                tracing::warn!(error = %e, "could not purge ended user grants");
            }
        }
    });
}

/// Every minute, writes grants whose write-back failed, then drops the in-memory tokens of users
/// idle for ten minutes (they stay in SQLite).
fn spawn_user_token_eviction(vault: std::sync::Weak<crate::user_login::UserTokenVault>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(vault) = vault.upgrade() else { return };
            vault.save_unsaved().await;
            vault.evict_idle(Duration::from_secs(600));
        }
    });
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
