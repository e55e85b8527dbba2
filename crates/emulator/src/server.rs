//! Starting the emulator on a socket and the handle tests use to script and inspect it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{EmulatorConfig, full_match_regex};
use crate::consent::{Consent, ConsentBook, IdTokenOptions, IssuerForm, OrgClaim};
use crate::faults::{Endpoint, Fault, FaultBook};
use crate::keys::SigningKey;

/// Shared emulator state.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    pub(crate) issuer: String,
    pub(crate) base_url: String,
    /// Newest key first; the previous key stays published for a rotation cycle.
    pub(crate) keys: RwLock<Vec<Arc<SigningKey>>>,
    key_serial: AtomicU64,
    /// When set, `/ims/keys` serves exactly this text instead of the signing keys (hostile or
    /// malformed key sets for relying-party tests).
    pub(crate) published_jwks: RwLock<Option<String>>,
    pub(crate) faults: FaultBook,
    pub(crate) consents: ConsentBook,
    /// Each client's `redirect_uri_patterns`, compiled once, by client id.
    pub(crate) redirect_patterns: HashMap<String, Vec<regex::Regex>>,
    pub(crate) user_grants: crate::user_grants::UserGrants,
}

impl State {
    pub(crate) fn signing_key(&self) -> Arc<SigningKey> {
        self.keys.read()[0].clone()
    }

    pub(crate) fn rotate_keys(&self) -> String {
        let n = self.key_serial.fetch_add(1, Ordering::SeqCst) + 1;
        let key = Arc::new(SigningKey::generate(format!("ims_na1-key-at-{n}")));
        let kid = key.kid.clone();
        let mut keys = self.keys.write();
        keys.insert(0, key);
        // Publish the current and the previous key only, as IMS does after a rotation settles.
        keys.truncate(2);
        kid
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&crate::config::EmulatorClient> {
        self.config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
    }

    /// The `iss` id_tokens carry under the current options.
    pub(crate) fn id_token_issuer(&self) -> String {
        self.consents.options().issuer_form.issuer(&self.issuer)
    }

    /// An id_token for a user's sign-in, signed with the current key.
    pub(crate) fn issue_user_id_token(
        &self,
        client_id: &str,
        user_id: &str,
        nonce: Option<&str>,
    ) -> String {
        let now = crate::routes::now_ms() / 1000;
        let user = self
            .config
            .sign_in_users()
            .into_iter()
            .find(|u| u.user_id == user_id);
        let mut claims = serde_json::json!({
            "iss": self.id_token_issuer(),
            "sub": user_id,
            "aud": client_id,
            "iat": now,
            "exp": now + 3600,
            "as": "ims-na1",
            "type": "id_token",
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        if let Some(u) = user {
            claims["email"] = u.email.into();
            claims["name"] = u.name.into();
        }
        self.signing_key()
            .sign(serde_json::json!({"typ": "JWT"}), &claims)
    }

    /// An id_token as the consent page issues it, signed with the current key.
    pub(crate) fn issue_id_token(
        &self,
        client_id: &str,
        org_id: &str,
        technical_account: &str,
        nonce: Option<&str>,
    ) -> String {
        let claims = crate::consent::id_token_claims(
            self.consents.options(),
            &self.issuer,
            client_id,
            org_id,
            technical_account,
            nonce,
            crate::routes::now_ms() / 1000,
        );
        self.signing_key()
            .sign(serde_json::json!({"typ": "JWT"}), &claims)
    }
}

/// An emulator that has not been bound yet.
#[derive(Debug)]
pub struct Emulator {
    config: EmulatorConfig,
}

impl Emulator {
    pub fn new(config: EmulatorConfig) -> Self {
        Self { config }
    }

    /// Binds `addr` (use port 0 in tests) and serves until the returned handle is shut down or
    /// dropped. A config that fails [`EmulatorConfig::validate`] is refused with
    /// `ErrorKind::InvalidInput`, naming every problem.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<RunningEmulator> {
        self.config.validate().map_err(|problems| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, problems.join("; "))
        })?;
        let mut redirect_patterns = HashMap::new();
        for c in &self.config.clients {
            let compiled = c
                .redirect_uri_patterns
                .iter()
                .filter_map(|p| full_match_regex(p).ok())
                .collect::<Vec<_>>();
            // With duplicate client ids the first client answers everywhere, so its patterns win.
            redirect_patterns
                .entry(c.client_id.clone())
                .or_insert(compiled);
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let issuer = self
            .config
            .issuer
            .clone()
            .unwrap_or_else(|| base_url.clone());
        let consents = ConsentBook::new(&self.config);
        let state = Arc::new(State {
            config: self.config,
            issuer,
            base_url: base_url.clone(),
            keys: RwLock::new(Vec::new()),
            key_serial: AtomicU64::new(0),
            published_jwks: RwLock::new(None),
            faults: FaultBook::default(),
            consents,
            redirect_patterns,
            user_grants: Default::default(),
        });
        state.rotate_keys();
        let app = crate::routes::router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "emulator server stopped");
            }
        });
        Ok(RunningEmulator {
            addr,
            base_url,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    pub addr: SocketAddr,
    base_url: String,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningEmulator {
    /// `http://127.0.0.1:PORT`, the base URL to configure as `ims.base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.state.faults.set(endpoint, fault);
    }

    pub fn clear_faults(&self) {
        self.state.faults.clear(None);
    }

    /// Requests received by `endpoint`, faulted ones included.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.state.faults.count(endpoint)
    }

    pub fn reset_counts(&self) {
        self.state.faults.reset_counts();
    }

    /// Publishes a new signing key and returns its `kid`.
    pub fn rotate_keys(&self) -> String {
        self.state.rotate_keys()
    }

    /// Serves `jwks` (any text, valid JSON or not) at `/ims/keys` instead of the signing keys, or
    /// the signing keys again with `None`. Tests use it to publish hostile key sets: encryption
    /// keys, keys bound to other algorithms, duplicate kids, keys they hold the private half of.
    pub fn set_published_jwks(&self, jwks: Option<String>) {
        *self.state.published_jwks.write() = jwks;
    }

    /// Signs a JWT with the emulator's current key (published in its JWKS). Tests use this to
    /// build tokens a relying party must accept or, with altered headers, must refuse.
    pub fn sign(&self, header: serde_json::Value, claims: &serde_json::Value) -> String {
        self.state.signing_key().sign(header, claims)
    }

    /// Signs raw JSON segments as given, for malformed-token tests (duplicate keys and the like).
    pub fn sign_segments(&self, header_json: &str, claims_json: &str) -> String {
        self.state
            .signing_key()
            .sign_segments(header_json, claims_json)
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        self.state.signing_key().kid.clone()
    }

    /// Records that `org_id` consented to `client_id`, as the consent page's Allow does, and
    /// returns the technical account; `None` for an unknown client or an empty org id. Any org
    /// may be granted here, not only those the consent page offers.
    pub fn grant_consent(&self, client_id: &str, org_id: &str) -> Option<String> {
        self.state
            .consents
            .grant(&self.state.config, client_id, org_id)
    }

    /// Revokes a consent, as a customer admin does in the Admin Console: new org-scoped token
    /// requests fail, tokens already issued keep working. `false` if there was no such consent.
    pub fn revoke_consent(&self, client_id: &str, org_id: &str) -> bool {
        self.state.consents.revoke(client_id, org_id)
    }

    /// Every consent, ordered by client then org.
    pub fn consents(&self) -> Vec<Consent> {
        self.state.consents.list()
    }

    /// Shapes the id_tokens issued from now on.
    pub fn set_id_token_options(&self, org_claim: OrgClaim, issuer_form: IssuerForm) {
        self.state.consents.set_options(IdTokenOptions {
            org_claim,
            issuer_form,
        });
    }

    pub fn id_token_options(&self) -> IdTokenOptions {
        self.state.consents.options()
    }

    /// The `iss` id_tokens carry under the current options.
    pub fn id_token_issuer(&self) -> String {
        self.state.id_token_issuer()
    }

    /// An id_token exactly as the consent page's Allow would issue it now (current key and
    /// options; `sub` is the consent's technical account, or the one consent would create).
    /// Records no consent (use [`Self::grant_consent`]) and accepts any client id, so tests can
    /// also build tokens for the wrong audience.
    pub fn issue_id_token(&self, client_id: &str, org_id: &str, nonce: Option<&str>) -> String {
        let account = self
            .state
            .consents
            .get(client_id, org_id)
            .unwrap_or_else(|| {
                crate::consent::technical_account_for(&self.state.config, client_id, org_id)
            });
        self.state
            .issue_id_token(client_id, org_id, &account, nonce)
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Graceful shutdown would wait for idle keep-alive connections; an emulator going away
        // should look like IMS going away, so the task is aborted.
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
