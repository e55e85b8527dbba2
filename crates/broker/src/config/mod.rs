//! The TOML configuration: strict parsing (unknown keys are errors), every problem reported at
//! once, and validation into ready-to-use values. Secrets appear only as references.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imsgate_ims::{ImsEndpoints, ScopeSet};
use serde::Deserialize;
use url::Url;

use crate::secrets::SecretRef;

mod consent;
mod keystore;
mod listen;
mod service_account;
mod unknown;
mod user_login;

pub use consent::{
    ADOBE_CONSENT_URL, CALLBACK_PATH, ConsentConfig, InternalApiConfig, StorageConfig,
    WebAppConfig, redirect_rules,
};
pub use listen::{ListenAddr, TlsFiles};
pub use service_account::{KeyConfig, ServiceAccountConfig};
pub use user_login::{USER_CALLBACK_PATH, UserLoginConfig};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub ims: ImsConfig,
    pub credentials: BTreeMap<String, CredentialConfig>,
    pub client_token: Option<ClientTokenConfig>,
    pub refresh: RefreshConfig,
    pub consent: Option<ConsentConfig>,
    pub internal_api: Option<InternalApiConfig>,
    pub storage: Option<StorageConfig>,
    /// The encrypted keystore, when `[keystore]` is present.
    pub keystore: Option<std::sync::Arc<crate::keystore::KeystoreLocation>>,
    /// User sign-in (OAuth authorization code), when `[user_login]` is present.
    pub user_login: Option<UserLoginConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The public listener (every route unless `admin_listen` is set).
    pub listen: ListenAddr,
    /// The operator listener: when set, operator routes are served only here.
    pub admin_listen: Option<ListenAddr>,
    /// TLS for both listeners; plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// Requests larger than this are refused before any work is done.
    pub max_body_bytes: usize,
    /// Open connections at most; at the cap the longest-idle one is closed to make room.
    pub max_connections: usize,
    /// Time allowed to send a request's headers (from connect, or from the previous response).
    pub header_timeout: Duration,
    /// Time allowed to send a request's body.
    pub body_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` and `X-Request-Id` are believed; none by default.
    pub trusted_proxies: crate::trusted_proxies::TrustedProxies,
    /// One `imsgate::access` INFO line per request (default on).
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct ImsConfig {
    pub endpoints: ImsEndpoints,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub name: String,
    pub kind: CredentialKind,
    pub client_id: String,
    /// One secret, or two while rotating (the first is tried first).
    pub client_secrets: Vec<SecretRef>,
    /// Written as `client_secret = "…"` rather than a `client_secrets` list; messages name the
    /// key as written.
    pub single_secret: bool,
    pub scopes: ScopeSet,
    /// Redirect settings; present exactly for `enterprise_web_app` credentials.
    pub web_app: Option<WebAppConfig>,
    /// Present exactly for `service_account` credentials.
    pub service_account: Option<ServiceAccountConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    OAuthServerToServer,
    EnterpriseWebApp,
    /// Service Account (JWT): retired by Adobe, still served, with a warning.
    ServiceAccount,
    /// API key only: the client id is sent as `x-api-key`; there is no secret and no token.
    ApiKey,
    /// User OAuth (authorization code with PKCE): tokens act for a signed-in Adobe user.
    OAuthWebApp,
}

impl CredentialConfig {
    /// The key secret `i` was written under, for messages.
    pub fn secret_key(&self, i: usize) -> String {
        secret_key(self.single_secret, i)
    }
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuthServerToServer => "oauth_server_to_server",
            Self::EnterpriseWebApp => "enterprise_web_app",
            Self::ServiceAccount => "service_account",
            Self::ApiKey => "api_key",
            Self::OAuthWebApp => "oauth_web_app",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientTokenConfig {
    pub credential: String,
    pub token_id_namespace: uuid::Uuid,
    pub allowed_origins: Vec<String>,
    pub caller_auth: CallerAuthConfig,
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone)]
pub struct CallerAuthConfig {
    pub issuer: String,
    pub audience: String,
    pub key: CallerKeyConfig,
    pub leeway: Duration,
    /// Caller tokens living longer than this are refused, so a leaked one cannot be used for long.
    pub max_lifetime: Duration,
}

#[derive(Debug, Clone)]
pub enum CallerKeyConfig {
    Hs256 {
        secret: SecretRef,
    },
    Jwks {
        url: Url,
        algorithms: Vec<CallerAlgorithm>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerAlgorithm {
    Rs256,
    Es256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_user_per_minute: u32,
    pub per_user_per_day: u32,
    pub global_per_minute: u32,
    pub global_per_day: u32,
}

impl Default for RateLimitConfig {
    /// A browser session needs a token every few minutes; 10/minute and 500/day per user leaves
    /// room for reloads and several tabs while stopping a script hammering the endpoint.
    fn default() -> Self {
        Self {
            per_user_per_minute: 10,
            per_user_per_day: 500,
            global_per_minute: 3000,
            global_per_day: 1_000_000,
        }
    }
}

/// Tuning for refresh-ahead, retry and caller waits. The defaults suit IMS; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshConfig {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The backoff cap while a key has no token to serve, so callers are refused: short, so a
    /// recovering IMS is noticed within seconds.
    pub backoff_max_without_token: Duration,
    /// The longest an API caller waits for an IMS request in flight before it is answered 503
    /// with `Retry-After`; the request carries on in the background.
    pub caller_wait: Duration,
}

impl RefreshConfig {
    /// The default caller wait; shortened to the IMS request timeout when that is shorter.
    pub const DEFAULT_CALLER_WAIT: Duration = Duration::from_secs(2);
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_max_without_token: Duration::from_secs(4),
            caller_wait: Self::DEFAULT_CALLER_WAIT,
        }
    }
}

// ---- raw, as written in the file ----

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    ims: RawIms,
    #[serde(default)]
    credentials: BTreeMap<String, RawCredential>,
    client_token: Option<RawClientToken>,
    #[serde(default)]
    refresh: RawRefresh,
    consent: Option<consent::RawConsent>,
    internal_api: Option<consent::RawInternalApi>,
    storage: Option<consent::RawStorage>,
    keystore: Option<keystore::RawKeystore>,
    user_login: Option<user_login::RawUserLogin>,
}

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_check_interval_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    keepalive_timeout_ms: Option<u64>,
    max_header_bytes: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    access_log: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawIms {
    base_url: Option<String>,
    token_url: Option<String>,
    jwt_exchange_url: Option<String>,
    jwks_url: Option<String>,
    validate_url: Option<String>,
    authorize_url: Option<String>,
    revoke_url: Option<String>,
    discovery_url: Option<String>,
    request_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawCredential {
    #[serde(rename = "type")]
    kind: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secrets: Option<Vec<String>>,
    scopes: Option<Scopes>,
    default_redirect_uri: Option<String>,
    redirect_uri_patterns: Option<Vec<String>>,
    org_id: Option<String>,
    technical_account_id: Option<String>,
    metascopes: Option<Vec<String>>,
    keys: Option<Vec<service_account::RawKey>>,
    audience_base: Option<String>,
    certificate_warning_days: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Joined(String),
}

#[derive(Deserialize)]
struct RawClientToken {
    credential: Option<String>,
    token_id_namespace: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    caller_auth: Option<RawCallerAuth>,
    #[serde(default)]
    rate_limit: RawRateLimit,
}

#[derive(Deserialize)]
struct RawCallerAuth {
    issuer: Option<String>,
    audience: Option<String>,
    hs256_secret: Option<String>,
    jwks_url: Option<String>,
    algorithms: Option<Vec<String>>,
    leeway_seconds: Option<u64>,
    max_lifetime_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawRateLimit {
    per_user_per_minute: Option<u32>,
    per_user_per_day: Option<u32>,
    global_per_minute: Option<u32>,
    global_per_day: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawRefresh {
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    backoff_max_without_token_ms: Option<u64>,
    caller_wait_ms: Option<u64>,
}

/// Every problem found in a config file, each naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(p: String) -> Self {
        Self { problems: vec![p] }
    }
}

impl Config {
    /// Reads and validates a config file. Relative secret paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(format!(
                "{}: cannot read config file ({}); pass an existing file with --config",
                path.display(),
                e.kind()
            ))
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse_checked(&text, &base, true).map_err(|mut e| {
            for p in &mut e.problems {
                *p = format!("{}: {p}", path.display());
            }
            e
        })
    }

    /// Parses TOML text. Unknown keys anywhere are collected and reported together with every
    /// validation problem.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::parse_checked(text, base_dir, false)
    }

    /// Like [`Config::parse`]; with `check_secrets`, a config with problems also has its secret
    /// references loaded, so an unreadable secret is reported in the same run as a typo.
    fn parse_checked(
        text: &str,
        base_dir: &Path,
        check_secrets: bool,
    ) -> Result<Self, ConfigError> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::one(toml_message(&e)))?;
        if toml::de::DeTable::parse(text).is_ok_and(|t| t.get_ref().is_empty()) {
            return Err(ConfigError::one(
                "the configuration file is empty; see docs/configuration.md for a minimal example"
                    .to_owned(),
            ));
        }
        // serde_ignored sees unknown keys before `deny_unknown_fields` would stop at the first.
        let raw: Result<RawConfig, _> = serde_ignored::deserialize(de, |path| {
            unknown.push(unknown::message(text, &path));
        });
        let raw = raw.map_err(|e| ConfigError::one(toml_message(&e)))?;
        // Unknown keys come first (a typo there is often the cause of what validation reports).
        let check = match (check_secrets, unknown.is_empty()) {
            (false, _) => SecretCheck::Never,
            (true, true) => SecretCheck::IfProblems,
            (true, false) => SecretCheck::Always,
        };
        match validate(raw, base_dir, check) {
            Ok(_) if !unknown.is_empty() => Err(ConfigError { problems: unknown }),
            Ok(config) => Ok(config),
            Err(mut e) => {
                unknown.append(&mut e.problems);
                Err(ConfigError { problems: unknown })
            }
        }
    }
}

fn toml_message(e: &toml::de::Error) -> String {
    // toml's message spans several lines with a caret diagram; keep it but make the first line
    // self-contained.
    let msg = e.to_string();
    msg.trim_end().replace('\n', "\n  ")
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, at: &str, what: impl std::fmt::Display) {
        self.0.push(format!("{at}: {what}"));
    }
}

fn parse_url(p: &mut Problems, at: &str, s: &str) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            p.push(at, format!("{s:?} must be an absolute http(s) URL"));
            None
        }
        Err(e) => {
            p.push(at, format!("{s:?} is not a URL ({e})"));
            None
        }
    }
}

fn parse_secret(p: &mut Problems, at: &str, s: &str, base: &Path) -> Option<SecretRef> {
    match SecretRef::parse(s) {
        Ok(r) => Some(r.relative_to(base)),
        Err(e) => {
            p.push(at, e);
            None
        }
    }
}

/// `[server]` limits: each has a default and a range that keeps the service usable.
fn validate_server(p: &mut Problems, raw: &RawServer, base: &Path) -> ServerConfig {
    fn ranged<T: PartialOrd + Copy + std::fmt::Display>(
        p: &mut Problems,
        key: &str,
        value: Option<T>,
        default: T,
        min: T,
        max: T,
        unit: &str,
    ) -> T {
        match value {
            None => default,
            Some(v) if v < min || v > max => {
                p.push(
                    key,
                    format!("{v} is out of range; use {min} to {max}{unit} (default {default})"),
                );
                default
            }
            Some(v) => v,
        }
    }
    let ms = Duration::from_millis;
    ServerConfig {
        listen: listen::listen_addr(p, "server.listen", raw.listen.as_deref(), "127.0.0.1:8080"),
        admin_listen: raw
            .admin_listen
            .as_deref()
            .map(|a| listen::listen_addr(p, "server.admin_listen", Some(a), "127.0.0.1:9090")),
        tls: listen::tls_files(
            p,
            raw.tls_cert.as_deref(),
            raw.tls_key.as_deref(),
            raw.tls_check_interval_ms,
            base,
        ),
        max_body_bytes: ranged(
            p,
            "server.max_body_bytes",
            raw.max_body_bytes,
            64 * 1024,
            1024,
            16 * 1024 * 1024,
            " bytes",
        ),
        max_connections: ranged(
            p,
            "server.max_connections",
            raw.max_connections,
            10_000,
            1,
            1_000_000,
            "",
        ),
        header_timeout: ms(ranged(
            p,
            "server.header_timeout_ms",
            raw.header_timeout_ms,
            10_000,
            100,
            300_000,
            " ms",
        )),
        body_timeout: ms(ranged(
            p,
            "server.body_timeout_ms",
            raw.body_timeout_ms,
            10_000,
            100,
            300_000,
            " ms",
        )),
        keepalive_timeout: ms(ranged(
            p,
            "server.keepalive_timeout_ms",
            raw.keepalive_timeout_ms,
            30_000,
            100,
            3_600_000,
            " ms",
        )),
        // hyper's read buffer cannot be smaller than 8 KiB.
        max_header_bytes: ranged(
            p,
            "server.max_header_bytes",
            raw.max_header_bytes,
            16 * 1024,
            8 * 1024,
            1024 * 1024,
            " bytes",
        ),
        trusted_proxies: crate::trusted_proxies::TrustedProxies::parse(
            raw.trusted_proxies.as_deref().unwrap_or_default(),
        )
        .unwrap_or_else(|problems| {
            for (i, e) in problems {
                p.push(&format!("server.trusted_proxies[{i}]"), e);
            }
            Default::default()
        }),
        access_log: raw.access_log.unwrap_or(true),
    }
}

/// Whether `validate` loads secret references (it never does for a config with no problems:
/// `serve` and `doctor` load them then).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SecretCheck {
    Never,
    IfProblems,
    Always,
}

fn validate(raw: RawConfig, base: &Path, check: SecretCheck) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    let mut server = validate_server(&mut p, &raw.server, base);

    let ims_base = raw.ims.base_url.clone();
    let ims = validate_ims(&mut p, raw.ims);
    let development_mode = raw
        .consent
        .as_ref()
        .is_some_and(consent::RawConsent::development_mode)
        || raw
            .user_login
            .as_ref()
            .is_some_and(user_login::RawUserLogin::development_mode);

    // Names are checked against what was declared, so one broken credential is reported once
    // rather than again by everything that refers to it.
    let declared: Vec<String> = raw.credentials.keys().cloned().collect();
    let mut credentials = BTreeMap::new();
    for (name, c) in raw.credentials {
        let at = format!("credentials.{name}");
        if let Some(c) = validate_credential(&mut p, &at, &name, c, base, development_mode) {
            credentials.insert(name, c);
        }
    }

    let client_token = raw
        .client_token
        .and_then(|ct| validate_client_token(&mut p, ct, &declared, base));

    if let Some(ct) = &client_token
        && let Some(c) = credentials.get(&ct.credential)
    {
        match c.kind {
            CredentialKind::ApiKey => p.push(
                "client_token.credential",
                "an api_key credential has no token to hand out; name an oauth_server_to_server credential",
            ),
            CredentialKind::OAuthWebApp => p.push(
                "client_token.credential",
                "an oauth_web_app credential has tokens only for signed-in users; name an oauth_server_to_server credential",
            ),
            _ => {}
        }
    }
    let ims_base = Url::parse(
        ims_base
            .as_deref()
            .unwrap_or(imsgate_ims::endpoints::PRODUCTION_BASE),
    )
    .ok();
    let consent_wanted = raw.consent.is_some() || raw.user_login.is_some();
    let consent = raw.consent.and_then(|c| {
        consent::validate_consent(&mut p, c, &credentials, &declared, ims_base.as_ref())
    });
    let user_login = raw.user_login.and_then(|u| {
        user_login::validate(&mut p, u, &credentials, &declared, ims_base.as_ref(), base)
    });
    let internal_api =
        consent::validate_internal_api(&mut p, raw.internal_api, consent_wanted, base);
    let storage = consent::validate_storage(raw.storage, consent_wanted, base);
    let keystore_location = keystore::validate(&mut p, raw.keystore, base);
    let mut client_token = client_token;
    let mut internal_api = internal_api;
    {
        let mut refs: Vec<(String, &mut SecretRef)> = Vec::new();
        for (name, c) in credentials.iter_mut() {
            let single = c.single_secret;
            for (i, r) in c.client_secrets.iter_mut().enumerate() {
                refs.push((format!("credentials.{name}.{}", secret_key(single, i)), r));
            }
            if let Some(sa) = c.service_account.as_mut() {
                for (i, k) in sa.keys.iter_mut().enumerate() {
                    refs.push((
                        format!("credentials.{name}.keys[{i}].private_key"),
                        &mut k.private_key,
                    ));
                }
            }
        }
        if let Some(ct) = client_token.as_mut()
            && let CallerKeyConfig::Hs256 { secret } = &mut ct.caller_auth.key
        {
            refs.push(("client_token.caller_auth.hs256_secret".into(), secret));
        }
        if let Some(api) = internal_api.as_mut() {
            refs.push(("internal_api.api_key".into(), &mut api.api_key));
        }
        if let Some(tls) = server.tls.as_mut() {
            refs.push(("server.tls_key".into(), &mut tls.key));
        }
        keystore::attach(&mut p, keystore_location.as_ref(), refs.into_iter());
    }
    // `serve` loads secrets only from a valid config; when this one already has problems, load
    // them now so an unreadable or too-open secret is reported in the same run, not the next.
    if check == SecretCheck::Always || check == SecretCheck::IfProblems && !p.0.is_empty() {
        secret_problems(
            &mut p,
            &credentials,
            client_token.as_ref(),
            internal_api.as_ref(),
        );
    }

    let refresh = validate_refresh(&mut p, &raw.refresh, ims.as_ref());

    if !p.0.is_empty() {
        return Err(ConfigError { problems: p.0 });
    }
    Ok(Config {
        server,
        ims: ims.expect("endpoints are present when there are no problems"),
        credentials,
        client_token,
        refresh,
        consent,
        internal_api,
        storage,
        keystore: keystore_location,
        user_login,
    })
}

/// The key a secret was written under: `client_secret` for one, `client_secrets[i]` for a list.
fn secret_key(single: bool, i: usize) -> String {
    if single {
        "client_secret".to_owned()
    } else {
        format!("client_secrets[{i}]")
    }
}

fn secret_problems(
    p: &mut Problems,
    credentials: &BTreeMap<String, CredentialConfig>,
    client_token: Option<&ClientTokenConfig>,
    internal_api: Option<&InternalApiConfig>,
) {
    for (name, c) in credentials {
        for (i, r) in c.client_secrets.iter().enumerate() {
            if let Err(e) = r.load() {
                p.push(&format!("credentials.{name}.{}", c.secret_key(i)), e);
            }
        }
        for (i, k) in c
            .service_account
            .iter()
            .flat_map(|sa| sa.keys.iter().enumerate())
        {
            if let Err(e) = k.private_key.load() {
                p.push(&format!("credentials.{name}.keys[{i}].private_key"), e);
            }
        }
    }
    if let Some(ct) = client_token
        && let CallerKeyConfig::Hs256 { secret } = &ct.caller_auth.key
        && let Err(e) = secret.load()
    {
        p.push("client_token.caller_auth.hs256_secret", e);
    }
    if let Some(api) = internal_api
        && let Err(e) = api.api_key.load()
    {
        p.push("internal_api.api_key", e);
    }
}

fn validate_refresh(p: &mut Problems, raw: &RawRefresh, ims: Option<&ImsConfig>) -> RefreshConfig {
    let d = RefreshConfig::default();
    let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
    let request_timeout = ims.map_or(Duration::MAX, |i| i.request_timeout);
    let refresh = RefreshConfig {
        backoff_initial: ms(raw.backoff_initial_ms, d.backoff_initial),
        backoff_max: ms(raw.backoff_max_ms, d.backoff_max),
        backoff_max_without_token: ms(
            raw.backoff_max_without_token_ms,
            d.backoff_max_without_token,
        ),
        // A caller never waits longer than the request it waits for, so the default follows a
        // shorter request timeout; an explicit value longer than it is a mistake.
        caller_wait: ms(raw.caller_wait_ms, d.caller_wait.min(request_timeout)),
    };
    if refresh.backoff_initial.is_zero() || refresh.backoff_initial > refresh.backoff_max {
        p.push(
            "refresh",
            "backoff_initial_ms must be positive and at most backoff_max_ms",
        );
    }
    if refresh.backoff_max_without_token.is_zero() {
        p.push(
            "refresh.backoff_max_without_token_ms",
            "must be positive (default 4000)",
        );
    }
    if refresh.caller_wait.is_zero() || refresh.caller_wait > request_timeout {
        p.push(
            "refresh.caller_wait_ms",
            format!(
                "must be between 1 and ims.request_timeout_ms ({} ms); a caller never needs to wait longer than the IMS request (default 2000)",
                request_timeout.as_millis()
            ),
        );
    }
    refresh
}

fn validate_ims(p: &mut Problems, raw: RawIms) -> Option<ImsConfig> {
    let base = raw
        .base_url
        .as_deref()
        .unwrap_or(imsgate_ims::endpoints::PRODUCTION_BASE);
    let base = parse_url(p, "ims.base_url", base)?;
    let mut endpoints = match ImsEndpoints::from_base(&base) {
        Ok(e) => e,
        Err(e) => {
            p.push("ims.base_url", e);
            return None;
        }
    };
    let overrides: [(&str, Option<String>, &mut Url); 7] = [
        ("ims.token_url", raw.token_url, &mut endpoints.token),
        (
            "ims.jwt_exchange_url",
            raw.jwt_exchange_url,
            &mut endpoints.jwt_exchange,
        ),
        ("ims.jwks_url", raw.jwks_url, &mut endpoints.jwks),
        (
            "ims.validate_url",
            raw.validate_url,
            &mut endpoints.validate,
        ),
        (
            "ims.authorize_url",
            raw.authorize_url,
            &mut endpoints.authorize,
        ),
        ("ims.revoke_url", raw.revoke_url, &mut endpoints.revoke),
        (
            "ims.discovery_url",
            raw.discovery_url,
            &mut endpoints.discovery,
        ),
    ];
    for (at, value, slot) in overrides {
        if let Some(v) = value
            && let Some(u) = parse_url(p, at, &v)
        {
            *slot = u;
        }
    }
    let request_timeout = Duration::from_millis(raw.request_timeout_ms.unwrap_or(10_000));
    let connect_timeout = Duration::from_millis(raw.connect_timeout_ms.unwrap_or(3_000));
    if request_timeout.is_zero() || connect_timeout.is_zero() {
        p.push("ims", "timeouts must be positive");
    }
    Some(ImsConfig {
        endpoints,
        request_timeout,
        connect_timeout,
    })
}

fn validate_credential(
    p: &mut Problems,
    at: &str,
    name: &str,
    c: RawCredential,
    base: &Path,
    development_mode: bool,
) -> Option<CredentialConfig> {
    let kind = match c.kind.as_str() {
        "oauth_server_to_server" => Some(CredentialKind::OAuthServerToServer),
        "enterprise_web_app" => Some(CredentialKind::EnterpriseWebApp),
        "service_account" => Some(CredentialKind::ServiceAccount),
        "api_key" => Some(CredentialKind::ApiKey),
        "oauth_web_app" => Some(CredentialKind::OAuthWebApp),
        other => {
            p.push(
                &format!("{at}.type"),
                format!("unknown credential type {other:?}; supported: \"oauth_server_to_server\", \"enterprise_web_app\", \"service_account\", \"api_key\", \"oauth_web_app\""),
            );
            None
        }
    };
    let raw_sa = service_account::RawServiceAccount {
        org_id: c.org_id,
        technical_account_id: c.technical_account_id,
        metascopes: c.metascopes,
        keys: c.keys,
        audience_base: c.audience_base,
        certificate_warning_days: c.certificate_warning_days,
    };
    let mut service_account = None;
    if kind == Some(CredentialKind::ServiceAccount) {
        service_account = service_account::validate(p, at, raw_sa, base);
    } else if raw_sa.any_set() {
        p.push(
            at,
            "org_id, technical_account_id, metascopes, keys, audience_base and certificate_warning_days apply to service_account credentials only",
        );
    }
    let mut web_app = None;
    match kind {
        Some(CredentialKind::EnterpriseWebApp | CredentialKind::OAuthWebApp) => {
            web_app = consent::validate_web_app(
                p,
                at,
                c.default_redirect_uri,
                c.redirect_uri_patterns,
                development_mode,
            );
        }
        _ if c.default_redirect_uri.is_some() || c.redirect_uri_patterns.is_some() => {
            p.push(
                at,
                "default_redirect_uri and redirect_uri_patterns apply to enterprise_web_app and oauth_web_app credentials only",
            );
        }
        _ => {}
    }
    let client_id = c.client_id.filter(|s| !s.trim().is_empty());
    if client_id.is_none() {
        p.push(at, "client_id is required");
    }
    let api_key = kind == Some(CredentialKind::ApiKey);
    let single = c.client_secret.is_some() && c.client_secrets.is_none();
    let refs: Vec<String> = match (c.client_secret, c.client_secrets) {
        (Some(_), _) | (_, Some(_)) if api_key => {
            p.push(
                at,
                "an api_key credential has no secret: remove client_secret (use oauth_server_to_server for a credential with one)",
            );
            Vec::new()
        }
        (None, None) if api_key => Vec::new(),
        (Some(one), None) => vec![one],
        (None, Some(many)) if many.is_empty() => {
            p.push(
                &format!("{at}.client_secrets"),
                "must list one or two secret references",
            );
            Vec::new()
        }
        (None, Some(many)) => many,
        (Some(_), Some(_)) => {
            p.push(at, "set client_secret or client_secrets, not both");
            Vec::new()
        }
        (None, None) => {
            p.push(
                at,
                "client_secret is required (a reference such as \"file:/etc/imsgate/secret\")",
            );
            Vec::new()
        }
    };
    if refs.len() > 2 {
        p.push(
            &format!("{at}.client_secrets"),
            "at most two secrets (IMS allows two during rotation)",
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, r) in refs.iter().enumerate() {
        if !seen.insert(r.as_str()) {
            p.push(
                &format!("{at}.client_secrets[{i}]"),
                "lists the same secret reference twice; during rotation list the old and the new secret",
            );
        }
    }
    let secrets: Vec<SecretRef> = refs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| parse_secret(p, &format!("{at}.{}", secret_key(single, i)), r, base))
        .collect();
    if api_key && c.scopes.is_some() {
        p.push(
            &format!("{at}.scopes"),
            "an api_key credential has no token, so scopes do not apply: remove scopes (use oauth_server_to_server for a credential with a token)",
        );
    }
    let scopes = match c.scopes {
        Some(Scopes::List(v)) => ScopeSet::new(v),
        Some(Scopes::Joined(s)) => ScopeSet::parse(&s),
        // A service account's access is its metascopes; they also tell its cache entries apart.
        None => match &service_account {
            Some(sa) => ScopeSet::new(sa.metascopes.iter().map(String::as_str)),
            None => ScopeSet::new::<_, &str>([]),
        },
    };
    if scopes.is_empty()
        && !matches!(
            kind,
            Some(CredentialKind::ServiceAccount | CredentialKind::ApiKey)
        )
    {
        p.push(
            at,
            "scopes must list at least one scope, e.g. [\"openid\", \"AdobeID\", \"firefly_api\"]",
        );
    }
    if matches!(
        kind,
        Some(CredentialKind::EnterpriseWebApp | CredentialKind::OAuthWebApp)
    ) && web_app.is_none()
    {
        return None;
    }
    if kind == Some(CredentialKind::ServiceAccount) && service_account.is_none() {
        return None;
    }
    Some(CredentialConfig {
        name: name.to_owned(),
        kind: kind?,
        client_id: client_id?,
        client_secrets: secrets,
        single_secret: single,
        scopes,
        web_app,
        service_account,
    })
}

fn validate_client_token(
    p: &mut Problems,
    ct: RawClientToken,
    declared: &[String],
    base: &Path,
) -> Option<ClientTokenConfig> {
    let at = "client_token";
    let credential = match ct.credential {
        Some(c) if declared.contains(&c) => Some(c),
        Some(c) => {
            p.push(
                &format!("{at}.credential"),
                format!(
                    "no credential named {c:?} under [credentials] (known: {})",
                    known_names(declared.iter())
                ),
            );
            None
        }
        None => {
            p.push(
                at,
                "credential is required: the name of a [credentials.NAME] table",
            );
            None
        }
    };
    let namespace = match ct.token_id_namespace.as_deref().map(uuid::Uuid::parse_str) {
        Some(Ok(u)) if !u.is_nil() => Some(u),
        Some(_) => {
            p.push(
                &format!("{at}.token_id_namespace"),
                "must be a UUID (generate one with `uuidgen`)",
            );
            None
        }
        None => {
            p.push(at, "token_id_namespace is required: a UUID private to this deployment (generate one with `uuidgen`)");
            None
        }
    };
    for (i, o) in ct.allowed_origins.iter().enumerate() {
        if !valid_origin(o) {
            p.push(
                &format!("{at}.allowed_origins[{i}]"),
                format!("{o:?} must be an origin like \"https://app.example.com\" (scheme, host, optional port, no path)"),
            );
        }
    }
    let caller_auth = match ct.caller_auth {
        Some(ca) => validate_caller_auth(p, ca, base),
        None => {
            p.push(
                at,
                "[client_token.caller_auth] is required: callers must authenticate",
            );
            None
        }
    };
    let d = RateLimitConfig::default();
    let rate_limit = RateLimitConfig {
        per_user_per_minute: ct
            .rate_limit
            .per_user_per_minute
            .unwrap_or(d.per_user_per_minute),
        per_user_per_day: ct.rate_limit.per_user_per_day.unwrap_or(d.per_user_per_day),
        global_per_minute: ct
            .rate_limit
            .global_per_minute
            .unwrap_or(d.global_per_minute),
        global_per_day: ct.rate_limit.global_per_day.unwrap_or(d.global_per_day),
    };
    for (name, v) in [
        ("per_user_per_minute", rate_limit.per_user_per_minute),
        ("per_user_per_day", rate_limit.per_user_per_day),
        ("global_per_minute", rate_limit.global_per_minute),
        ("global_per_day", rate_limit.global_per_day),
    ] {
        if v == 0 {
            p.push(&format!("{at}.rate_limit.{name}"), "must be at least 1");
        }
    }
    Some(ClientTokenConfig {
        credential: credential?,
        token_id_namespace: namespace?,
        allowed_origins: ct.allowed_origins,
        caller_auth: caller_auth?,
        rate_limit,
    })
}

fn valid_origin(o: &str) -> bool {
    match Url::parse(o) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && !o.ends_with('/')
        }
        Err(_) => false,
    }
}

fn validate_caller_auth(
    p: &mut Problems,
    ca: RawCallerAuth,
    base: &Path,
) -> Option<CallerAuthConfig> {
    let at = "client_token.caller_auth";
    let issuer = ca.issuer.filter(|s| !s.is_empty());
    if issuer.is_none() {
        p.push(
            at,
            "issuer is required (the `iss` your backend puts in caller tokens)",
        );
    }
    let audience = ca.audience.filter(|s| !s.is_empty());
    if audience.is_none() {
        p.push(
            at,
            "audience is required (the `aud` your backend puts in caller tokens)",
        );
    }
    let key = match (ca.hs256_secret, ca.jwks_url) {
        (Some(s), None) => {
            if ca.algorithms.is_some() {
                p.push(
                    at,
                    "algorithms applies to jwks_url only; hs256_secret always means HS256",
                );
            }
            parse_secret(p, &format!("{at}.hs256_secret"), &s, base)
                .map(|secret| CallerKeyConfig::Hs256 { secret })
        }
        (None, Some(u)) => {
            let url = parse_url(p, &format!("{at}.jwks_url"), &u);
            let mut algorithms = Vec::new();
            for (i, a) in ca
                .algorithms
                .unwrap_or_else(|| vec!["RS256".into()])
                .iter()
                .enumerate()
            {
                match a.as_str() {
                    "RS256" => algorithms.push(CallerAlgorithm::Rs256),
                    "ES256" => algorithms.push(CallerAlgorithm::Es256),
                    other => p.push(
                        &format!("{at}.algorithms[{i}]"),
                        format!("{other:?} is not allowed; use \"RS256\" and/or \"ES256\""),
                    ),
                }
            }
            if algorithms.is_empty() {
                p.push(
                    &format!("{at}.algorithms"),
                    "must list at least one algorithm",
                );
            }
            url.map(|url| CallerKeyConfig::Jwks { url, algorithms })
        }
        (Some(_), Some(_)) => {
            p.push(at, "set hs256_secret or jwks_url, not both");
            None
        }
        (None, None) => {
            p.push(at, "set hs256_secret (a secret reference) or jwks_url");
            None
        }
    };
    let leeway = Duration::from_secs(ca.leeway_seconds.unwrap_or(30));
    if leeway > Duration::from_secs(300) {
        p.push(&format!("{at}.leeway_seconds"), "at most 300");
    }
    let max_lifetime = Duration::from_secs(ca.max_lifetime_seconds.unwrap_or(3600));
    Some(CallerAuthConfig {
        issuer: issuer?,
        audience: audience?,
        key: key?,
        leeway,
        max_lifetime,
    })
}

/// The default config path used when `--config` is omitted.
pub fn default_path() -> PathBuf {
    PathBuf::from("imsgate.toml")
}

/// Names for a "known: a, b" list; "none" when there are none.
pub fn known_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
