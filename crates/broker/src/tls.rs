//! Native TLS for the listeners (rustls on aws-lc-rs): the certificate chain and private key
//! loaded and checked, then served through a resolver whose pair is swapped on reload (SIGHUP or
//! a change of the files), so open connections carry on and new handshakes get the new pair.
//!
//! TLS 1.2 and 1.3 only; ALPN offers `h2` and `http/1.1`. A pair that fails to load on reload is
//! refused with an error log and `imsgate_tls_reloads_total{outcome="failure"}`; the old pair
//! stays in service.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::clock::SharedClock;
use crate::config::TlsFiles;

/// A certificate expiring sooner than this is worth a warning at load.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// The TLS metrics, registered with the broker's other metrics.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    /// Reloads by outcome (`success`, `failure`).
    pub reloads: Family<OutcomeLabels, Counter>,
    /// The served certificate's not-after, unix seconds (0 without TLS).
    pub not_after: Gauge,
}

impl TlsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        // Both outcomes exist from the start (at 0), so alerts and dashboards see the series
        // before the first reload.
        for outcome in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "tls_reloads",
            "Certificate reloads (SIGHUP or a change of the files) by outcome; a failed one keeps the previous certificate",
            m.reloads.clone(),
        );
        registry.register(
            "tls_certificate_not_after_seconds",
            "Expiry (unix seconds) of the certificate the listeners serve; 0 without TLS",
            m.not_after.clone(),
        );
        m
    }
}

/// What a loaded pair says about itself, for logs and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// SHA-256 of the server certificate (DER), hex.
    pub sha256: String,
}

/// A checked pair, ready to serve.
struct LoadedPair {
    key: Arc<CertifiedKey>,
    summary: CertSummary,
    /// Warnings found while loading (expired, not yet valid, expiring soon).
    warnings: Vec<String>,
}

/// Serves the current pair to every handshake.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The listeners' TLS: a fixed rustls configuration whose certificate can be swapped.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    resolver: Arc<Resolver>,
    config: Arc<rustls::ServerConfig>,
    current: ArcSwap<CertSummary>,
    metrics: TlsMetrics,
    clock: SharedClock,
    /// Digest of the files' contents when last looked at (loaded or refused), so a change is
    /// acted on once, and a broken pair is reported once rather than at every check.
    seen: Mutex<[u8; 32]>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks the pair as `serve` would, without serving it (for `imsgate doctor`): its
/// summary and warnings, or the problem that would stop `serve`. Reads files only.
pub fn check(files: &TlsFiles, clock: &SharedClock) -> Result<(CertSummary, Vec<String>), String> {
    load_pair(files, clock).map(|(pair, _)| (pair.summary, pair.warnings))
}

impl Tls {
    /// Loads and checks the pair. Problems are prefixed with the config key they concern.
    pub fn load(
        files: &TlsFiles,
        metrics: TlsMetrics,
        clock: SharedClock,
    ) -> Result<Arc<Self>, Vec<String>> {
        let (pair, digest) = load_pair(files, &clock).map_err(|e| vec![e])?;
        for w in &pair.warnings {
            tracing::warn!("{w}");
        }
        let resolver = Arc::new(Resolver(ArcSwap::new(pair.key)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| vec![format!("server.tls_cert: cannot set up TLS ({e})")])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        metrics.not_after.set(pair.summary.not_after as i64);
        tracing::info!(
            subject = %pair.summary.subject,
            not_after = %crate::clock::rfc3339(pair.summary.not_after * 1000),
            sha256 = %pair.summary.sha256,
            "TLS certificate loaded"
        );
        Ok(Arc::new(Self {
            files: files.clone(),
            resolver,
            config: Arc::new(config),
            current: ArcSwap::from_pointee(pair.summary),
            metrics,
            clock,
            seen: Mutex::new(digest),
        }))
    }

    /// The rustls configuration every TLS listener uses.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// The certificate being served now.
    pub fn current(&self) -> Arc<CertSummary> {
        self.current.load_full()
    }

    /// Loads the pair again and swaps it in; on failure keeps the current one. `trigger` says why
    /// (for the log).
    pub fn reload(&self, trigger: &'static str) -> Result<Arc<CertSummary>, String> {
        let now = crate::clock::unix_ms(self.clock.now()) / 1000;
        let valid = |c: &CertSummary| c.not_before <= now && now < c.not_after;
        // At start an expired certificate is only warned about (better served than nothing);
        // on reload it would replace one that works, so a pair outside its validity window is
        // refused while the served one is inside its own.
        let result = load_pair(&self.files, &self.clock).and_then(|(pair, digest)| {
            if !valid(&pair.summary) && valid(&self.current.load()) {
                Err(format!(
                    "server.tls_cert: the new certificate is not valid now (valid {} to {}); keeping the served one",
                    crate::clock::rfc3339(pair.summary.not_before * 1000),
                    crate::clock::rfc3339(pair.summary.not_after * 1000),
                ))
            } else {
                Ok((pair, digest))
            }
        });
        match result {
            Ok((pair, digest)) => {
                *self.seen.lock() = digest;
                for w in &pair.warnings {
                    tracing::warn!("{w}");
                }
                self.resolver.0.store(pair.key);
                self.metrics.not_after.set(pair.summary.not_after as i64);
                self.metrics
                    .reloads
                    .get_or_create(&OutcomeLabels { outcome: "success" })
                    .inc();
                let summary = Arc::new(pair.summary);
                self.current.store(summary.clone());
                tracing::info!(
                    trigger,
                    subject = %summary.subject,
                    not_after = %crate::clock::rfc3339(summary.not_after * 1000),
                    sha256 = %summary.sha256,
                    "TLS certificate reloaded; new connections get it, open ones carry on"
                );
                Ok(summary)
            }
            Err(e) => {
                if let Some(d) = digest_files(&self.files) {
                    *self.seen.lock() = d;
                }
                self.metrics
                    .reloads
                    .get_or_create(&OutcomeLabels { outcome: "failure" })
                    .inc();
                tracing::error!(
                    trigger,
                    error = %e,
                    "TLS certificate reload refused; still serving the previous certificate"
                );
                Err(e)
            }
        }
    }

    /// Reloads if the files' contents changed since they were last looked at.
    pub fn check_files(&self) {
        let Some(now) = digest_files(&self.files) else {
            return;
        };
        if *self.seen.lock() != now {
            let _ = self.reload("files changed");
        }
    }

    /// Checks the files every `check_interval` while `self` lives.
    pub fn spawn_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.files.check_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(tls) = weak.upgrade() else { return };
                // File and keystore reads block briefly; keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || tls.check_files()).await;
            }
        })
    }
}

/// SHA-256 over the certificate file and the key's value, or `None` when either cannot be read
/// (a reload then reports why).
fn digest_files(files: &TlsFiles) -> Option<[u8; 32]> {
    let cert = std::fs::read(&files.cert).ok()?;
    let key = files.key.load().ok()?;
    Some(digest_of(&cert, key.expose()))
}

fn digest_of(cert: &[u8], key: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&(cert.len() as u64).to_be_bytes());
    ctx.update(cert);
    ctx.update(key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn load_pair(files: &TlsFiles, clock: &SharedClock) -> Result<(LoadedPair, [u8; 32]), String> {
    let path = files.cert.display();
    let pem = std::fs::read(&files.cert).map_err(|e| {
        format!(
            "server.tls_cert: cannot read {path} ({}); give the path of a readable PEM certificate chain",
            e.kind()
        )
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_cert: {path} is not a valid PEM file ({e})"))?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert: {path} holds no certificate (expected -----BEGIN CERTIFICATE-----, the server certificate first, then intermediates)"
        ));
    }
    let info = imsgate_ims::certificate::parse_der(&chain[0])
        .map_err(|e| format!("server.tls_cert: the first certificate in {path}: {e}"))?;
    let secret = files
        .key
        .load()
        .map_err(|e| format!("server.tls_key: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(secret.expose().as_bytes()).map_err(|_| {
        format!(
            "server.tls_key: {} holds no PEM private key (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
            files.key
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            format!(
                "server.tls_key: {} cannot be used for TLS ({e}); use an RSA, ECDSA P-256/P-384 or Ed25519 key",
                files.key
            )
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(format!(
                "server.tls_key: the private key {} does not match the certificate in {path}; install the key the certificate was issued for",
                files.key
            ));
        }
    }
    let digest = digest_of(&pem, secret.expose());
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &certified.cert[0]);
    let sha256: String = sha256.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let now = crate::clock::unix_ms(clock.now()) / 1000;
    let mut warnings = Vec::new();
    let date = |s: u64| crate::clock::rfc3339(s * 1000);
    if now >= info.not_after {
        warnings.push(format!(
            "server.tls_cert: the certificate in {path} expired at {}; clients will refuse it: install a new one (it is picked up on SIGHUP or when the file changes)",
            date(info.not_after)
        ));
    } else if now < info.not_before {
        warnings.push(format!(
            "server.tls_cert: the certificate in {path} is not valid until {}; clients will refuse it until then",
            date(info.not_before)
        ));
    } else if info.not_after - now < EXPIRY_WARNING.as_secs() {
        warnings.push(format!(
            "server.tls_cert: the certificate in {path} expires at {}; renew it soon",
            date(info.not_after)
        ));
    }
    Ok((
        LoadedPair {
            key: Arc::new(certified),
            summary: CertSummary {
                subject: info.subject,
                not_before: info.not_before,
                not_after: info.not_after,
                sha256,
            },
            warnings,
        },
        digest,
    ))
}
