//! Prometheus metrics. One registry per broker instance, so tests running several stay apart.
//!
//! Invariant: no label value is ever a secret, a token or a caller identity.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImsLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
    /// The credential's name from the config (a bounded set, never a secret).
    pub credential: String,
}

/// A token kind of a credential: `client` (the credential's own token) or `org` (org-scoped
/// tokens, all orgs together: org ids are unbounded, so never a label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub credential: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwksFetchLabels {
    /// `ims` (IMS's keys, for id_tokens) or `caller` (the caller-token key set).
    pub source: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsentLabels {
    pub result: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// The credential's name from the config (never a secret).
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// All of imsgate's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub ims: Family<ImsLabels, Histogram, fn() -> Histogram>,
    pub cache: Family<EventLabels, Counter>,
    pub rate_limited: Family<LimitLabels, Counter>,
    pub caller_auth_failures: Family<ReasonLabels, Counter>,
    pub consent_callbacks: Family<ConsentLabels, Counter>,
    pub revocations: Counter,
    pub links: Family<StatusLabels, Gauge>,
    pub certificate_expiry: Family<CredentialLabels, Gauge>,
    pub user_login_callbacks: Family<ConsentLabels, Counter>,
    pub user_token_refreshes: Family<ResultLabels, Counter>,
    /// Open HTTP connections.
    pub connections: Gauge,
    /// Connections the server closed itself, by reason.
    pub connections_closed: Family<ReasonLabels, Counter>,
    pub jwks_load_failures: Family<ReasonLabels, Counter>,
    pub jwks_fetches: Family<JwksFetchLabels, Counter>,
    /// Expiry (unix seconds) of the token last obtained, per credential and kind.
    pub token_expiry: Family<TokenLabels, Gauge>,
    /// When a token was last obtained from IMS (unix seconds), per credential and kind.
    pub token_last_refresh: Family<TokenLabels, Gauge>,
    pub build_info: Family<BuildLabels, Gauge>,
    /// Unprefixed process metrics (`process_*`), read at scrape time where the OS allows.
    process: Registry,
    pub tls: crate::tls::TlsMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("imsgate");
        let http = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let ims = Family::<ImsLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let cache = Family::<EventLabels, Counter>::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        let caller_auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            http.clone(),
        );
        registry.register(
            "ims_request_duration_seconds",
            "Requests to IMS by endpoint and outcome",
            ims.clone(),
        );
        registry.register(
            "token_cache_events",
            "Token cache hits, misses and background refreshes",
            cache.clone(),
        );
        registry.register(
            "rate_limit_rejections",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "caller_auth_failures",
            "Caller tokens refused, by reason",
            caller_auth_failures.clone(),
        );
        let consent_callbacks = Family::<ConsentLabels, Counter>::default();
        let revocations = Counter::default();
        let links = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "consent_callbacks",
            "Consent callbacks by result and code",
            consent_callbacks.clone(),
        );
        registry.register(
            "consent_revocations_detected",
            "Orgs marked needs_reauthorization after IMS refused their tokens",
            revocations.clone(),
        );
        registry.register(
            "links",
            "Account-org links by status (as of the last scrape)",
            links.clone(),
        );
        let certificate_expiry = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "service_account_certificate_expiry_seconds",
            "Seconds until the last valid certificate of a service account expires (0 when none is valid)",
            certificate_expiry.clone(),
        );
        let user_login_callbacks = Family::<ConsentLabels, Counter>::default();
        registry.register(
            "user_login_callbacks",
            "User sign-in callbacks by result and code",
            user_login_callbacks.clone(),
        );
        let user_token_refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "user_token_refreshes",
            "User token refreshes with a refresh token, by result",
            user_token_refreshes.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "http_connections",
            "Open HTTP connections",
            connections.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "Connections closed by the server: header_timeout, idle_timeout, or evicted to make room at the cap",
            connections_closed.clone(),
        );
        let jwks_load_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "jwks_load_failures",
            "Key sets not loaded (fetch failed, malformed, duplicate kid); the previous keys stay",
            jwks_load_failures.clone(),
        );
        let jwks_fetches = Family::<JwksFetchLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "Key set fetches by source (ims, caller) and outcome (ok, or why the set was not loaded)",
            jwks_fetches.clone(),
        );
        let token_expiry = Family::<TokenLabels, Gauge>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "Expiry (unix seconds) of the token last obtained, by credential and kind (client, org)",
            token_expiry.clone(),
        );
        let token_last_refresh = Family::<TokenLabels, Gauge>::default();
        registry.register(
            "token_last_refresh_timestamp_seconds",
            "When a token was last obtained from IMS (unix seconds), by credential and kind (client, org)",
            token_last_refresh.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels say which build is running",
            build_info.clone(),
        );
        let mut process = Registry::default();
        process.register_collector(Box::new(crate::process_metrics::ProcessCollector::new()));
        let tls = crate::tls::TlsMetrics::register(&mut registry);
        let metrics = Self {
            process,
            jwks_fetches,
            token_expiry,
            token_last_refresh,
            build_info,
            tls,
            registry,
            connections,
            connections_closed,
            jwks_load_failures,
            user_login_callbacks,
            user_token_refreshes,
            certificate_expiry,
            consent_callbacks,
            revocations,
            links,
            http,
            ims,
            cache,
            rate_limited,
            caller_auth_failures,
        };
        metrics.set_build_info(
            env!("CARGO_PKG_VERSION"),
            option_env!("IMSGATE_GIT_COMMIT").unwrap_or("unknown"),
        );
        metrics
    }

    /// Names the running build in `imsgate_build_info`. The binary calls this with its own
    /// version and git commit (set at its build); the default is this crate's version and the
    /// commit this crate was built with, if any.
    pub fn set_build_info(&self, version: &str, commit: &str) {
        self.build_info.clear();
        self.build_info
            .get_or_create(&BuildLabels {
                version: version.to_owned(),
                commit: commit.to_owned(),
            })
            .set(1);
    }

    /// A token was obtained from IMS: its expiry and the time, for the credential and kind.
    pub fn token_obtained(
        &self,
        credential: &str,
        org: bool,
        expires_at: std::time::SystemTime,
        now: std::time::SystemTime,
    ) {
        let labels = TokenLabels {
            credential: credential.to_owned(),
            kind: if org { "org" } else { "client" },
        };
        let secs = |t| i64::try_from(crate::clock::unix_ms(t) / 1000).unwrap_or(i64::MAX);
        self.token_expiry
            .get_or_create(&labels)
            .set(secs(expires_at));
        self.token_last_refresh
            .get_or_create(&labels)
            .set(secs(now));
    }

    pub fn jwks_fetch(&self, source: &'static str, outcome: &'static str) {
        self.jwks_fetches
            .get_or_create(&JwksFetchLabels { source, outcome })
            .inc();
    }

    pub fn cache_event(&self, event: &'static str) {
        self.cache.get_or_create(&EventLabels { event }).inc();
    }

    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    pub fn caller_auth_failure(&self, reason: &'static str) {
        self.caller_auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn jwks_load_failure(&self, reason: &'static str) {
        self.jwks_load_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn consent_callback(&self, result: &'static str, code: &'static str) {
        self.consent_callbacks
            .get_or_create(&ConsentLabels { result, code })
            .inc();
    }

    pub fn user_login_callback(&self, result: &'static str, code: &'static str) {
        self.user_login_callbacks
            .get_or_create(&ConsentLabels { result, code })
            .inc();
    }

    pub fn user_token_refresh(&self, result: &'static str) {
        self.user_token_refreshes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        out
    }
}
