//! Shared test harness: an in-process emulator on 127.0.0.1:0 and a broker wired to it over real
//! HTTP, configured through the same TOML path production uses.
#![allow(dead_code)]

pub mod consent;
pub mod jwt;
pub mod logs;
pub mod tls;
pub mod tools;
pub mod user_login;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use imsgate_broker::Broker;
use imsgate_broker::clock::{Clock, SystemClock, unix_ms};
use imsgate_broker::config::Config;
use imsgate_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "imsgate-test";
pub const CLIENT_SECRET: &str = "emulated-client-secret-7f3a9c1e";
pub const CALLER_KEY: &str = "caller-hs256-shared-key-0123456789abcdef";
pub const ISSUER: &str = "https://partner.test";
pub const AUDIENCE: &str = "imsgate";
pub const NAMESPACE: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

pub struct Options {
    pub lifetime_secs: u64,
    pub per_user_per_minute: u32,
    pub global_per_minute: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub request_timeout_ms: u64,
    /// Use the emulator's JWKS for caller tokens (RS256) instead of the HS256 shared key.
    pub caller_jwks: bool,
    /// Use this JWKS URL and algorithm list for caller tokens instead.
    pub caller_jwks_url: Option<(String, &'static str)>,
    /// The whole `[client_token.caller_auth]` table body instead (issuer and audience included).
    pub caller_auth: Option<String>,
    /// Secret the broker is configured with (may differ from the emulator's to provoke errors).
    pub broker_secret: String,
    /// Extra `[server]` lines.
    pub extra_server: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lifetime_secs: 300,
            per_user_per_minute: 10_000,
            global_per_minute: 100_000,
            backoff_initial_ms: 200,
            backoff_max_ms: 1000,
            request_timeout_ms: 2000,
            caller_jwks: false,
            caller_jwks_url: None,
            caller_auth: None,
            broker_secret: CLIENT_SECRET.to_owned(),
            extra_server: String::new(),
        }
    }
}

pub struct Harness {
    pub emulator: RunningEmulator,
    pub broker: Broker,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn write_secret(dir: &std::path::Path, name: &str, value: &str) {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub async fn start_emulator(lifetime_secs: u64) -> RunningEmulator {
    Emulator::new(EmulatorConfig {
        issuer: None,
        clients: vec![EmulatorClient::new(
            CLIENT_ID,
            CLIENT_SECRET,
            &["openid", "AdobeID", "firefly_api", "ff_apis"],
            lifetime_secs,
        )],
        ..EmulatorConfig::default()
    })
    .start("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

pub fn config_text(emulator_url: &str, o: &Options) -> String {
    let caller = if let Some(table) = &o.caller_auth {
        table.clone()
    } else if let Some((url, algs)) = &o.caller_jwks_url {
        format!("jwks_url = \"{url}\"\nalgorithms = {algs}")
    } else if o.caller_jwks {
        format!("jwks_url = \"{emulator_url}/ims/keys\"\nalgorithms = [\"RS256\"]")
    } else {
        "hs256_secret = \"file:caller.key\"".to_owned()
    };
    let caller = if o.caller_auth.is_some() {
        caller
    } else {
        format!("issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n{caller}")
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra_server}

[ims]
base_url = "{emulator_url}"
request_timeout_ms = {timeout}
connect_timeout_ms = 1000

[credentials.entitlement]
type = "oauth_server_to_server"
client_id = "{CLIENT_ID}"
client_secret = "file:client.secret"
scopes = ["openid", "AdobeID", "firefly_api", "ff_apis"]

[client_token]
credential = "entitlement"
token_id_namespace = "{NAMESPACE}"
allowed_origins = ["https://app.partner.test"]

[client_token.caller_auth]
{caller}

[client_token.rate_limit]
per_user_per_minute = {pupm}
per_user_per_day = 1000000
global_per_minute = {gpm}
global_per_day = 10000000

[refresh]
backoff_initial_ms = {bi}
backoff_max_ms = {bm}
"#,
        timeout = o.request_timeout_ms,
        pupm = o.per_user_per_minute,
        gpm = o.global_per_minute,
        bi = o.backoff_initial_ms,
        bm = o.backoff_max_ms,
        extra_server = o.extra_server,
    )
}

impl Harness {
    pub async fn start(o: Options) -> Self {
        let emulator = start_emulator(o.lifetime_secs).await;
        Self::start_with(emulator, o).await
    }

    pub async fn start_with(emulator: RunningEmulator, o: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_secret(dir.path(), "client.secret", &o.broker_secret);
        write_secret(dir.path(), "caller.key", CALLER_KEY);
        let text = config_text(emulator.base_url(), &o);
        let config = Config::parse(&text, dir.path()).unwrap();
        let broker = Broker::build(config, Arc::new(SystemClock)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let b = broker.clone();
        let server = tokio::spawn(async move {
            let _ = b.serve(listener, std::future::pending()).await;
        });
        Self {
            emulator,
            broker,
            url,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            dir,
            server,
        }
    }

    pub async fn client_token(&self, caller: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/client-token", self.url))
            .header("Authorization", format!("Bearer {caller}"))
            .send()
            .await
            .unwrap()
    }

    /// Waits until the broker reports ready (its first token is cached).
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            let r = self
                .http
                .get(format!("{}/readyz", self.url))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("broker never became ready");
    }

    /// Asks the emulator whether it accepts an access token.
    pub async fn emulator_accepts(&self, token: &str) -> bool {
        let r: Value = self
            .http
            .post(format!(
                "{}/ims/validate_token/v1",
                self.emulator.base_url()
            ))
            .form(&[
                ("type", "access_token"),
                ("client_id", CLIENT_ID),
                ("token", token),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["valid"] == json!(true)
    }
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}

pub fn now_ms() -> u64 {
    unix_ms(SystemClock.now())
}

/// Standard valid caller claims for `sub`.
pub fn claims(sub: &str) -> Value {
    let now = now_secs();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600})
}

pub fn hs256(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

pub fn caller(sub: &str) -> String {
    hs256(&claims(sub), CALLER_KEY)
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
