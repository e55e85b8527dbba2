//! Starting the emulator on a socket and the handle tests use to script and inspect it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::EmulatorConfig;
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
    pub(crate) faults: FaultBook,
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
    /// dropped.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<RunningEmulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let issuer = self
            .config
            .issuer
            .clone()
            .unwrap_or_else(|| base_url.clone());
        let state = Arc::new(State {
            config: self.config,
            issuer,
            base_url: base_url.clone(),
            keys: RwLock::new(Vec::new()),
            key_serial: AtomicU64::new(0),
            faults: FaultBook::default(),
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
