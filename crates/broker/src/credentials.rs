//! Loaded credentials and the fetcher that turns a cache key into an IMS token request, including
//! switching between two client secrets during rotation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use imsgate_ims::service_account::{AssertionClaims, JwtExchangeRequest};
use imsgate_ims::token::parse_token_response;
use imsgate_ims::{
    AccessToken, ClientCredentialsRequest, ExpiresInUnit, HttpRequest, HttpResponse, ImsEndpoints,
    ImsError, ImsErrorKind, SecretString,
};
use parking_lot::Mutex;

use crate::cache::{Fetcher, TokenKey};
use crate::clock::SharedClock;
use crate::config::{CredentialConfig, CredentialKind};
use crate::ims_client::ImsClient;
use crate::service_account::SigningKeys;

/// A secret's success is stored at most this often (its first success always).
const SECRET_USAGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A credential with its secrets loaded.
#[derive(Debug)]
pub struct Credential {
    pub config: CredentialConfig,
    secrets: Vec<SecretString>,
    /// Index of the secret that last worked; tried first.
    active: AtomicUsize,
    /// When each secret last succeeded, for `doctor`.
    last_success: Mutex<Vec<Option<SystemTime>>>,
    /// Keys and certificates of a service account.
    pub signing: Option<SigningKeys>,
}

impl Credential {
    pub fn new(config: CredentialConfig, secrets: Vec<SecretString>) -> Self {
        let n = secrets.len();
        Self {
            config,
            secrets,
            active: AtomicUsize::new(0),
            last_success: Mutex::new(vec![None; n]),
            signing: None,
        }
    }

    /// Index of the secret currently preferred.
    pub fn active_secret(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn last_success(&self) -> Vec<Option<SystemTime>> {
        self.last_success.lock().clone()
    }
}

/// Loads every credential's secrets, reporting every failure at once.
pub fn load_all(
    configs: &BTreeMap<String, CredentialConfig>,
) -> Result<HashMap<String, Arc<Credential>>, Vec<String>> {
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (name, c) in configs {
        let mut secrets = Vec::new();
        for (i, r) in c.client_secrets.iter().enumerate() {
            match r.load() {
                Ok(s) => secrets.push(s),
                Err(e) => problems.push(format!("credentials.{name}.{}: {e}", c.secret_key(i))),
            }
        }
        let mut cred = Credential::new(c.clone(), secrets);
        if let Some(sa) = &c.service_account {
            match SigningKeys::load(&format!("credentials.{name}"), sa) {
                Ok(keys) => cred.signing = Some(keys),
                Err(p) => problems.extend(p),
            }
        }
        out.insert(name.clone(), Arc::new(cred));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Fetches tokens from IMS over HTTP.
#[derive(Debug)]
pub struct ImsFetcher {
    pub client: ImsClient,
    pub endpoints: ImsEndpoints,
    pub credentials: HashMap<String, Arc<Credential>>,
    pub clock: SharedClock,
    /// Where secret usage is recorded for `doctor`, when storage is configured.
    pub store: Option<crate::storage::Store>,
}

impl ImsFetcher {
    /// Sends the request `build` makes for a secret: the preferred secret first, then the other
    /// one only if IMS refused the client (during rotation exactly one of them may be valid).
    async fn with_secrets(
        &self,
        cred: &Credential,
        endpoint: &'static str,
        unit: ExpiresInUnit,
        only: Option<usize>,
        build: impl Fn(&SecretString) -> HttpRequest,
    ) -> Result<AccessToken, ImsError> {
        let now = self.clock.now();
        let parse = |resp: &HttpResponse| parse_token_response(resp, now, unit);
        match only {
            // A probe of one secret (`doctor --online`): no fallback, nothing recorded.
            Some(i) => {
                let secret = cred
                    .secrets
                    .get(i)
                    .ok_or_else(|| ImsError::invalid_response("no such secret"))?;
                let resp = self
                    .client
                    .send(endpoint, &cred.config.name, build(secret))
                    .await?;
                parse(&resp)
            }
            None => self.send_with_secrets(cred, endpoint, build, parse).await,
        }
    }

    /// Asks IMS for a token with exactly the secret at `index`, for `doctor --online`: the
    /// other secret is not tried, the preferred one is not changed and nothing is stored.
    pub async fn probe_secret(
        &self,
        cred: &Credential,
        scopes: &imsgate_ims::ScopeSet,
        index: usize,
    ) -> Result<AccessToken, ImsError> {
        match cred.config.kind {
            CredentialKind::ServiceAccount => self.service_account(cred, Some(index)).await,
            _ => {
                let key = TokenKey {
                    credential: Arc::from(cred.config.name.as_str()),
                    org_id: None,
                    scopes: scopes.clone(),
                };
                self.client_credentials(cred, &key, Some(index)).await
            }
        }
    }

    /// Like [`ImsFetcher::with_secrets`] with the caller's own response parser.
    pub async fn send_with_secrets<T>(
        &self,
        cred: &Credential,
        endpoint: &'static str,
        build: impl Fn(&SecretString) -> HttpRequest,
        parse: impl Fn(&HttpResponse) -> Result<T, ImsError>,
    ) -> Result<T, ImsError> {
        let n = cred.secrets.len();
        let first = cred.active_secret() % n.max(1);
        let mut last_err = ImsError::invalid_response("credential has no secret");
        for i in (0..n).map(|k| (first + k) % n) {
            let resp = self
                .client
                .send(endpoint, &cred.config.name, build(&cred.secrets[i]))
                .await?;
            match parse(&resp) {
                Ok(value) => {
                    if i != first {
                        tracing::warn!(credential = %cred.config.name, secret_index = i, "switched to the other client secret after invalid_client");
                    }
                    cred.active.store(i, Ordering::Relaxed);
                    let now = self.clock.now();
                    let previous = cred.last_success.lock()[i].replace(now);
                    // `doctor` needs to know roughly when each secret last worked. A write per
                    // IMS answer would put an fsync in front of every token, and of every
                    // user's rotated refresh token, which exists nowhere else until stored.
                    if previous.is_none_or(|p| {
                        now.duration_since(p).unwrap_or_default() >= SECRET_USAGE_INTERVAL
                    }) {
                        self.record(cred, i, true).await;
                    }
                    return Ok(value);
                }
                Err(e) if e.kind == ImsErrorKind::InvalidClient => {
                    self.record(cred, i, false).await;
                    last_err = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    async fn client_credentials(
        &self,
        cred: &Credential,
        key: &TokenKey,
        only: Option<usize>,
    ) -> Result<AccessToken, ImsError> {
        self.with_secrets(cred, "token", ExpiresInUnit::Seconds, only, |secret| {
            ClientCredentialsRequest {
                client_id: &cred.config.client_id,
                client_secret: secret,
                scopes: &key.scopes,
                org_id: key.org_id.as_deref(),
            }
            .to_http(&self.endpoints.token)
        })
        .await
    }

    /// A Service Account token: a fresh assertion signed with the key whose certificate is valid
    /// now and expires last, exchanged at the JWT endpoint (which answers in milliseconds).
    async fn service_account(
        &self,
        cred: &Credential,
        only: Option<usize>,
    ) -> Result<AccessToken, ImsError> {
        let (Some(sa), Some(keys)) = (&cred.config.service_account, &cred.signing) else {
            return Err(ImsError::invalid_response("service account without keys"));
        };
        let now = crate::clock::unix_ms(self.clock.now()) / 1000;
        let Some(signing) = keys.signing(now) else {
            // Retrying cannot help until the operator uploads a valid certificate.
            let mut e = ImsError::new(ImsErrorKind::Rejected);
            e.description = Some(
                "no certificate of this service account is valid now; see `imsgate doctor`".into(),
            );
            return Err(e);
        };
        let base = sa
            .audience_base
            .clone()
            .unwrap_or_else(|| self.endpoints.token.origin().ascii_serialization());
        let claims = AssertionClaims {
            org_id: &sa.org_id,
            technical_account_id: &sa.technical_account_id,
            client_id: &cred.config.client_id,
            ims_base: &base,
            metascopes: &sa.metascopes,
        }
        .to_json(now);
        let assertion = signing.key.sign(&claims);
        self.with_secrets(
            cred,
            "jwt_exchange",
            ExpiresInUnit::Milliseconds,
            only,
            |secret| {
                JwtExchangeRequest {
                    client_id: &cred.config.client_id,
                    client_secret: secret,
                    assertion: &assertion,
                }
                .to_http(&self.endpoints.jwt_exchange)
            },
        )
        .await
    }
}

impl ImsFetcher {
    /// Records which secret worked, for `doctor`. IMS requests are rare (one per refresh), so
    /// the write is awaited: a one-shot `imsgate token` must not exit before it lands.
    async fn record(&self, cred: &Credential, index: usize, success: bool) {
        let Some(store) = &self.store else {
            return;
        };
        let secret_ref = cred.config.client_secrets[index].to_string();
        let now = crate::clock::unix_ms(self.clock.now());
        if let Err(e) = store
            .record_secret_result(cred.config.name.clone(), secret_ref, success, now)
            .await
        {
            tracing::warn!(error = %e, "could not record client secret usage");
        }
    }
}

impl Fetcher for ImsFetcher {
    fn fetch<'a>(
        &'a self,
        key: &'a TokenKey,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken, ImsError>> + Send + 'a>> {
        Box::pin(async move {
            let Some(cred) = self.credentials.get(&*key.credential) else {
                return Err(ImsError::invalid_response("unknown credential"));
            };
            match cred.config.kind {
                CredentialKind::ServiceAccount => self.service_account(cred, None).await,
                CredentialKind::ApiKey => {
                    let mut e = ImsError::new(ImsErrorKind::Rejected);
                    e.description = Some("an api_key credential has no token".into());
                    Err(e)
                }
                CredentialKind::OAuthWebApp => {
                    // User tokens come from a user's sign-in, through `user_login`, never from
                    // the client's own credentials.
                    let mut e = ImsError::new(ImsErrorKind::Rejected);
                    e.description = Some(
                        "an oauth_web_app credential has tokens only for signed-in users".into(),
                    );
                    Err(e)
                }
                _ => self.client_credentials(cred, key, None).await,
            }
        })
    }
}
