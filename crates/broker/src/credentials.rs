//! Loaded credentials and the fetcher that turns a cache key into an IMS token request, including
//! switching between two client secrets during rotation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use imsgate_ims::token::parse_token_response;
use imsgate_ims::{
    AccessToken, ClientCredentialsRequest, ExpiresInUnit, ImsEndpoints, ImsError, ImsErrorKind,
    SecretString,
};
use parking_lot::Mutex;

use crate::cache::{Fetcher, TokenKey};
use crate::clock::SharedClock;
use crate::config::CredentialConfig;
use crate::ims_client::ImsClient;

/// A credential with its secrets loaded.
#[derive(Debug)]
pub struct Credential {
    pub config: CredentialConfig,
    secrets: Vec<SecretString>,
    /// Index of the secret that last worked; tried first.
    active: AtomicUsize,
    /// When each secret last succeeded, for `doctor`.
    last_success: Mutex<Vec<Option<SystemTime>>>,
}

impl Credential {
    pub fn new(config: CredentialConfig, secrets: Vec<SecretString>) -> Self {
        let n = secrets.len();
        Self {
            config,
            secrets,
            active: AtomicUsize::new(0),
            last_success: Mutex::new(vec![None; n]),
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
                Err(e) => problems.push(format!("credentials.{name}.client_secrets[{i}]: {e}")),
            }
        }
        out.insert(name.clone(), Arc::new(Credential::new(c.clone(), secrets)));
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
    async fn client_credentials(
        &self,
        cred: &Credential,
        key: &TokenKey,
    ) -> Result<AccessToken, ImsError> {
        let n = cred.secrets.len();
        let first = cred.active_secret() % n.max(1);
        let mut last_err = ImsError::invalid_response("credential has no secret");
        // Try the preferred secret, then the other one only if IMS refused the client: during
        // rotation exactly one of them may be valid.
        for i in (0..n).map(|k| (first + k) % n) {
            let req = ClientCredentialsRequest {
                client_id: &cred.config.client_id,
                client_secret: &cred.secrets[i],
                scopes: &key.scopes,
                org_id: key.org_id.as_deref(),
            }
            .to_http(&self.endpoints.token);
            let resp = self.client.send("token", req).await?;
            match parse_token_response(&resp, self.clock.now(), ExpiresInUnit::Seconds) {
                Ok(token) => {
                    if i != first {
                        tracing::warn!(credential = %cred.config.name, secret_index = i, "switched to the other client secret after invalid_client");
                    }
                    cred.active.store(i, Ordering::Relaxed);
                    cred.last_success.lock()[i] = Some(token.issued_at);
                    self.record(cred, i, true).await;
                    return Ok(token);
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
            self.client_credentials(cred, key).await
        })
    }
}
